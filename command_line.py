"""Runs a script's main() under absl with the README's flag forms accepted.

absl reads `--do_eval False` as `--do_eval` (true) followed by a stray word
that it silently ignores. run() joins such a pair into `--do_eval=False`
before parsing, and rejects any word that is left over.
"""

import sys

from absl import app
from absl import flags

_BOOL_WORDS = ("true", "false", "t", "f", "1", "0")


class InputError(ValueError):
  """Bad flags or input files: run() prints the message and exits with 1."""


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
  """absl flags parser that refuses positional arguments."""
  try:
    rest = flags.FLAGS(join_boolean_values(argv))
  except flags.Error as error:
    sys.stderr.write("FATAL Flags parsing error: %s\n" % error)
    sys.stderr.write("Pass --helpshort or --helpfull to see help on flags.\n")
    sys.exit(1)
  if len(rest) > 1:
    sys.stderr.write(
        "FATAL Unexpected argument(s): %s. Flags are written --name=value or "
        "--name value.\n" % " ".join(rest[1:]))
    sys.exit(1)
  return rest


def _exit_on_input_error(main):
  """Wraps main so that an InputError ends the run with its message."""

  def checked_main(argv):
    try:
      return main(argv)
    except InputError as error:
      sys.exit("ERROR: %s" % error)

  return checked_main


def run(main):
  """Parses flags (README forms included) and runs main().

  An InputError raised by main() is printed as "ERROR: ..." and exits 1.
  """
  app.run(_exit_on_input_error(main), flags_parser=_parse)
