"""Runs a script's main() under absl with the README's flag forms accepted.

absl reads `--do_eval False` as `--do_eval` (true) followed by a stray word
that it silently ignores. run() joins such a pair into `--do_eval=False`
before parsing, and rejects any word that is left over.
"""

import errno
import os
import sys

from absl import app
from absl import flags

_BOOL_WORDS = ("true", "false", "t", "f", "1", "0")


class InputError(ValueError):
  """Bad flags or input files: run() prints the message and exits with 1."""


# OSErrors that mean a path or the disk needs fixing, not a bug in the code.
EXPECTED_ERRNOS = (errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR,
                   errno.EISDIR, errno.EEXIST, errno.ENOSPC, errno.EDQUOT,
                   errno.EROFS)


def is_expected_os_error(error):
  """True for an OSError about a path or a full disk (see EXPECTED_ERRNOS)."""
  return isinstance(error, OSError) and error.errno in EXPECTED_ERRNOS


DISK_FULL_HINT = " (the disk is full: free space or write elsewhere)"


def os_error_message(error):
  """`<what went wrong>: <file>` for an OSError, e.g. a full disk."""
  what = error.strerror or str(error)
  if error.errno in (errno.ENOSPC, errno.EDQUOT):
    what += DISK_FULL_HINT
  files = [str(name) for name in (error.filename, error.filename2)
           if name is not None]
  return "%s: %s" % (what, " -> ".join(files)) if files else what


def tensorflow_file_error_message(error):
  """The message of a TensorFlow error about a path or a full disk, or None.

  TensorFlow's file writers (TFRecordWriter, GFile, checkpoints) raise their
  own errors, e.g. ResourceExhaustedError "<file>; No space left on device";
  they are recognised by the operating system's message for the errno.
  """
  tf_errors = sys.modules.get("tensorflow.python.framework.errors_impl")
  if tf_errors is None or not isinstance(error, tf_errors.OpError):
    return None
  message = error.message.strip()
  if not any(os.strerror(code) in message for code in EXPECTED_ERRNOS):
    return None
  if any(os.strerror(code) in message
         for code in (errno.ENOSPC, errno.EDQUOT)):
    message += DISK_FULL_HINT
  return message


def join_boolean_values(argv, flag_values=flags.FLAGS):
  """Returns argv with `--flag VALUE` pairs of boolean flags joined by '='."""
  joined = [argv[0]]
  i = 1
  while i < len(argv):
    word = argv[i]
    name = word.lstrip("-")
    is_bool = (word.startswith("-") and "=" not in word and name in flag_values
               and flag_values[name].boolean)
    if (is_bool and i + 1 < len(argv)
        and argv[i + 1].lower() in _BOOL_WORDS):
      joined.append("%s=%s" % (word, argv[i + 1]))
      i += 2
    else:
      joined.append(word)
      i += 1
  return joined


def _parse(argv):
  """absl flags parser that refuses positional arguments.

  A bad flag (an unknown name, a value of the wrong type or out of its
  choices, a required flag left out) ends the run with the suite's one
  "ERROR: ..." line, as an InputError would, not absl's two FATAL lines.
  """
  try:
    rest = flags.FLAGS(join_boolean_values(argv))
  except flags.Error as error:
    sys.exit("ERROR: %s (--helpshort lists the flags)" % error)
  if len(rest) > 1:
    sys.exit("ERROR: Unexpected argument(s): %s. Flags are written "
             "--name=value or --name value." % " ".join(rest[1:]))
  return rest


def _exit_on_input_error(main):
  """Wraps main so that an expected failure ends the run with one line."""

  def checked_main(argv):
    try:
      return main(argv)
    except InputError as error:
      sys.exit("ERROR: %s" % error)
    except OSError as error:
      if not is_expected_os_error(error):
        raise
      sys.exit("ERROR: %s" % os_error_message(error))
    except Exception as error:  # pylint: disable=broad-except
      message = tensorflow_file_error_message(error)
      if message is None:
        raise
      sys.exit("ERROR: %s" % message)

  return checked_main


def run(main):
  """Parses flags (README forms included) and runs main().

  An InputError raised by main(), or an OSError about a path or a full disk
  (permission denied, not a directory, no space left, ...), is printed as
  one "ERROR: ..." line and exits 1. Anything else is a bug: a traceback.
  """
  app.run(_exit_on_input_error(main), flags_parser=_parse)
