# coding=utf-8
"""Temporary files and folders that do not outlive the run that made them.

Every stage writes an output under a temporary name and renames it when it is
complete, so that a file under the final name is always whole. This module
owns that pattern:

  * temporary_path(path) names the temporary of one output:
    `<folder>/.<name>.tmp-<pid>`. It is hidden (no glob for the output
    matches it) and holds the PID of the process that writes it.
  * register(path) / unregister(path): a registered temporary is removed
    when the process exits, including on SIGTERM, SIGINT and SIGHUP (the
    process then still dies of the signal, at once). Only the process that
    registered a path removes it, so forked workers and their parent each
    clean up their own.
  * remove_stale(folder, name_pattern): after a `kill -9` nothing can clean
    up, so the next run of the same command removes the temporaries of its
    own outputs (names matching `name_pattern`) whose process is dead.
  * write_atomically(path, write) and temporary_dir(prefix) use the above.
"""

import atexit
import multiprocessing
import os
import re
import shutil
import signal
import sys
import tempfile
import threading

from absl import logging

# The part of a temporary's name after the output's name. A folder made by
# temporary_dir() adds "-<random>" after the PID.
TEMPORARY_MARK = ".tmp-"
_PID_SUFFIX = r"\.tmp-(\d+)(?:-[A-Za-z0-9_]+)?"
CLEANUP_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP")
# How long a signalled process waits for each worker to clean up and end.
WORKER_STOP_SECONDS = 5.0

# (pid, path) of every registered temporary, in registration order.
_registered = []
# Re-entrant: the signal handler may run while this thread holds it.
_lock = threading.RLock()
_handlers_installed_by = None


def temporary_path(path, pid=None):
  """Returns the hidden temporary name of `path`: <folder>/.<name>.tmp-<pid>."""
  folder, name = os.path.split(path)
  return os.path.join(folder, ".%s%s%d" % (name, TEMPORARY_MARK,
                                           pid or os.getpid()))


def owner_pid(name, name_pattern):
  """The PID in a temporary's name if its output name matches, else None.

  `name_pattern` is a regular expression for the final output names (not
  the temporary's); it must match the whole name.
  """
  match = re.fullmatch(r"\.?(?:%s)%s" % (name_pattern, _PID_SUFFIX), name)
  return int(match.group(1)) if match else None


def process_is_alive(pid):
  """True when process `pid` exists on this machine and is not a zombie."""
  if pid == os.getpid():
    return True
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # It exists, under another user.
  try:
    with open("/proc/%d/stat" % pid) as stat:
      # The state follows the parenthesised command name; Z is a zombie.
      return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
  except (OSError, IndexError):
    return True


def _remove(path):
  """Removes a file or folder; True when something was removed."""
  try:
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    else:
      os.remove(path)
    return True
  except FileNotFoundError:
    return False


def _remove_entries(folder, why_stale):
  """Removes the entries of `folder` for which why_stale(name) gives a reason.

  Each removal is logged with its reason. Returns the removed paths.
  """
  removed = []
  try:
    names = sorted(os.listdir(folder))
  except (FileNotFoundError, NotADirectoryError):
    return removed
  for name in names:
    reason = why_stale(name)
    path = os.path.join(folder, name)
    if reason and _remove(path):
      logging.warning("Removed %s, %s", path, reason)
      removed.append(path)
  return removed


def remove_stale(folder, name_pattern):
  """Removes temporaries in `folder` of outputs matching `name_pattern`.

  Only temporaries whose writing process is dead are removed, so a run in
  progress keeps its own. Returns the removed paths; each one is logged.
  """

  def why_stale(name):
    pid = owner_pid(name, name_pattern)
    if pid is None or process_is_alive(pid):
      return None
    return ("left by process %d that no longer runs (an interrupted earlier "
            "run)" % pid)

  return _remove_entries(folder, why_stale)


# What TensorFlow's checkpoint saver writes before renaming: see below.
_TENSORFLOW_TEMPORARY = re.compile(
    r".+\.tmp[0-9a-f]{32}|.*model\.ckpt-\d+_temp(_[0-9a-f]{32})?")


def remove_tensorflow_temporaries(folder):
  """Removes what TensorFlow's checkpoint saver leaves after a failed write.

  Its atomic writes (the `checkpoint` file, `model.ckpt-N.meta`) go through
  `<name>.tmp<32 hex digits>` and the shards through `model.ckpt-N_temp/`,
  and a full disk leaves them behind. Their names hold no PID, so call this
  only where one process owns `folder` (the trainer's output_dir, before it
  starts). Returns the removed paths.
  """
  return _remove_entries(
      folder, lambda name: _TENSORFLOW_TEMPORARY.fullmatch(name) and
      "a temporary of an interrupted checkpoint write")


def remove_registered():
  """Removes every temporary this process registered; returns their paths.

  Safe to call from a signal handler or just before os._exit.
  """
  pid = os.getpid()
  with _lock:
    mine = [path for owner, path in _registered if owner == pid]
    _registered[:] = [(owner, path) for owner, path in _registered
                      if owner != pid]
  removed = []
  for path in reversed(mine):
    try:
      if _remove(path):
        removed.append(path)
    except OSError as error:
      sys.stderr.write("Could not remove temporary %s: %s\n" % (path, error))
  return removed


def _on_signal(signum, unused_frame):
  """Removes this process's temporaries, stops its workers, dies of signum.

  The process dies of the signal as it would have without this handler; it
  does not unwind by an exception, because a Horovod rank unwinding its
  training session waits for its peers and can hang the whole job.
  """
  removed = remove_registered()
  # Forked workers (worker_pool) remove their own temporaries on SIGTERM.
  workers = multiprocessing.active_children()
  for worker in workers:
    worker.terminate()
  for worker in workers:
    worker.join(WORKER_STOP_SECONDS)
  # Workers stopped by their parent stay quiet unless they had something to
  # clean up; the parent says why it stopped.
  if removed or multiprocessing.parent_process() is None:
    sys.stderr.write("Stopped by %s%s.\n" % (
        signal.Signals(signum).name,
        "; removed %s" % ", ".join(removed) if removed else ""))
    sys.stderr.flush()
  signal.signal(signum, signal.SIG_DFL)
  os.kill(os.getpid(), signum)


def install_cleanup():
  """Removes registered temporaries at exit and on SIGTERM/SIGINT/SIGHUP.

  Done once per process; signal handlers are set only where a signal
  handler can be set (the main thread) and where none but the default is.
  """
  global _handlers_installed_by
  if _handlers_installed_by == os.getpid():
    return
  _handlers_installed_by = os.getpid()
  atexit.register(remove_registered)
  if threading.current_thread() is not threading.main_thread():
    return
  for name in CLEANUP_SIGNALS:
    signum = getattr(signal, name)
    if signal.getsignal(signum) in (signal.SIG_DFL, signal.default_int_handler,
                                    _on_signal):
      signal.signal(signum, _on_signal)


def register(path):
  """Removes `path` (file or folder) if this process exits before unregister."""
  install_cleanup()
  with _lock:
    _registered.append((os.getpid(), path))
  return path


def unregister(path):
  """Forgets `path`: it was renamed to its final name or removed."""
  with _lock:
    _registered[:] = [(owner, registered) for owner, registered in _registered
                      if registered != path]


def commit(temp_path, path):
  """Renames a finished temporary to its final name and unregisters it."""
  os.replace(temp_path, path)
  unregister(temp_path)


def discard(temp_path):
  """Removes a temporary (if it exists) and unregisters it.

  A failure to remove it is logged, not raised: discard() runs while another
  error is being handled, and that error is the one to report.
  """
  try:
    _remove(temp_path)
  except OSError as error:
    logging.warning("Could not remove the temporary %s: %s", temp_path, error)
  unregister(temp_path)


def write_atomically(path, write, mode="w", opener=open, replace=os.replace):
  """Calls write(file) on a registered temporary, then renames it to `path`.

  On any failure (a full disk included) the temporary is removed and `path`
  keeps its earlier content. `opener` and `replace` may be TensorFlow's
  tf.io.gfile.GFile and rename, for remote file systems. Returns what
  write() returned.
  """
  temp_path = register(temporary_path(path))
  try:
    with opener(temp_path, mode) as writer:
      result = write(writer)
    replace(temp_path, path)
    unregister(temp_path)
  except BaseException:
    discard(temp_path)
    raise
  return result


def current_umask():
  """The process's umask (os.umask can only be read by setting it)."""
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


def follow_umask(folder):
  """Gives `folder` and everything in it the modes a new file would get.

  Folders become 777 and files 666, less the umask: what open() and
  os.makedirs() give, unlike a temporary_dir() (700) or a file that a
  library wrote privately. Call it on a finished temporary folder before
  publishing it as an output.
  """
  mask = current_umask()
  os.chmod(folder, 0o777 & ~mask)
  for root, dirs, files in os.walk(folder):
    for name in dirs:
      os.chmod(os.path.join(root, name), 0o777 & ~mask)
    for name in files:
      os.chmod(os.path.join(root, name), 0o666 & ~mask)


def temporary_dir(prefix, parent=None):
  """Makes a registered scratch folder named <prefix>.tmp-<pid>-<random>.

  It is removed when the process exits or is stopped by a signal; one left
  by a `kill -9` is removed by remove_stale(parent, prefix).
  """
  parent = parent or tempfile.gettempdir()
  path = tempfile.mkdtemp(prefix="%s%s%d-" % (prefix, TEMPORARY_MARK,
                                               os.getpid()), dir=parent)
  return register(path)

