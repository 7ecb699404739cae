# coding=utf-8
"""Faults: killed workers, hangs, signals and the temporaries they leave.

Every child runs in its own process group with a timeout, and the whole group
is killed in a `finally`, so a failing test never leaves processes behind.
Inputs are tiny: a 2-worker run of create_pretraining_data.py takes seconds.
"""

import glob
import os
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import CHILD_ENV, REPO, write_vocab
from test_create_pretraining_data import write_corpus

from bert_distillation import temporary_files  # pylint: disable=g-bad-import-order

CREATE = os.path.join(REPO, "create_pretraining_data.py")
WRAPPER = os.path.join(REPO, "extract_wikipedia_for_bert",
                       "run_wikiextractor.sh")
SAMPLE_DUMP = os.path.join(REPO, "data", "sample",
                           "enwiki-sample-pages-articles.xml.bz2")
TIMEOUT = 120


def start(command, env=None):
  """Starts `command` in a new process group, output captured in files.

  Files, not pipes: a child that logs more than a pipe holds (64 KiB) while
  the test waits for something else would block on its next write.
  """
  output_files = (tempfile.TemporaryFile(mode="w+"),
                  tempfile.TemporaryFile(mode="w+"))
  process = subprocess.Popen(command, env=env or CHILD_ENV, cwd=REPO,
                             stdout=output_files[0], stderr=output_files[1],
                             text=True, start_new_session=True)
  process.output_files = output_files
  return process


def finish(process, timeout):
  """Waits for `process` to end; returns its (stdout, stderr)."""
  process.wait(timeout=timeout)
  output = []
  for output_file in process.output_files:
    output_file.seek(0)
    output.append(output_file.read())
    output_file.close()
  return tuple(output)


def kill_group(process):
  """Kills what is left of the process group of `process`."""
  try:
    os.killpg(process.pid, signal.SIGKILL)
  except ProcessLookupError:
    pass
  process.wait()


def children(pid):
  """PIDs of the child processes of `pid`."""
  found = []
  for task in glob.glob("/proc/%d/task/*/children" % pid):
    with open(task) as f:
      found += [int(child) for child in f.read().split()]
  return found


def wait_for(condition, timeout=TIMEOUT, what="a condition"):
  """Polls `condition()` until it returns something true; returns it."""
  deadline = time.time() + timeout
  while time.time() < deadline:
    value = condition()
    if value:
      return value
    time.sleep(0.05)
  raise AssertionError("timed out waiting for %s" % what)


def group_is_gone(pgid):
  """True when no process of the process group `pgid` is left."""
  try:
    os.killpg(pgid, 0)
  except ProcessLookupError:
    return True
  # Zombies of the group count as gone: they do not run.
  for stat in glob.glob("/proc/[0-9]*/stat"):
    try:
      with open(stat) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
      continue
    if int(fields[2]) == pgid and fields[0] != "Z":
      return False
  return True


@pytest.fixture(scope="module")
def pretraining_inputs(tmp_path_factory):
  """(vocab file, input folder) with two files that take seconds each."""
  root = tmp_path_factory.mktemp("faults")
  vocab_file = str(root / "vocab.txt")
  write_vocab(vocab_file)
  input_dir = str(root / "text")
  write_corpus(input_dir, 2, 300)
  return vocab_file, input_dir


def create_command(vocab_file, input_dir, output_dir, dupe_factor=40):
  """create_pretraining_data.py with 2 workers and a slow enough setting."""
  return [sys.executable, CREATE, "--input_dir", input_dir, "--output_dir",
          output_dir, "--output_base_name", "train", "--vocab_file",
          vocab_file, "--max_seq_length", "32", "--max_predictions_per_seq",
          "5", "--dupe_factor", str(dupe_factor), "--num_workers", "2"]


# --- hangs: a killed worker ------------------------------------------------


def cpu_seconds(pid):
  """User plus system CPU time used so far by process `pid`."""
  with open("/proc/%d/stat" % pid) as f:
    fields = f.read().rsplit(")", 1)[1].split()
  return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_killed_worker_ends_the_run_naming_it(pretraining_inputs, tmp_path):
  vocab_file, input_dir = pretraining_inputs
  output_dir = str(tmp_path / "out")
  # A dupe factor that keeps each worker busy for about a minute here: the
  # worker is killed long before it could finish, even on a fast machine.
  process = start(create_command(vocab_file, input_dir, output_dir,
                                 dupe_factor=2000))
  try:
    workers = wait_for(lambda: len(children(process.pid)) >= 2 and
                       children(process.pid), what="two workers")
    # Forked workers start at zero CPU time: this one is on its file.
    wait_for(lambda: cpu_seconds(workers[0]) >= 0.3,
             what="the first worker to start on its file")
    assert process.poll() is None, "the run ended before a worker was killed"
    os.kill(workers[0], signal.SIGKILL)  # What the out-of-memory killer does.
    _, stderr = finish(process, 60)
  finally:
    kill_group(process)
  assert process.returncode == 1, stderr[-3000:]
  error = stderr.strip().splitlines()[-1]
  assert error.startswith("ERROR: ") and "Traceback" not in stderr
  assert "worker process %d was killed by SIGKILL" % workers[0] in error
  assert input_dir in error and "--num_workers" in error
  # No temporary survives, and no worker is left running.
  assert [name for name in os.listdir(output_dir)
          if TEMPORARY_MARK in name] == []
  assert group_is_gone(process.pid)


TEMPORARY_MARK = temporary_files.TEMPORARY_MARK


# --- leftovers: signals and stale temporaries ------------------------------


def test_sigterm_removes_temporaries_and_stops_workers(pretraining_inputs,
                                                       tmp_path):
  vocab_file, input_dir = pretraining_inputs
  output_dir = str(tmp_path / "out")
  # Writing a file takes about 5 s here at this size; SIGTERM comes within
  # 0.05 s of the first temporary, before that file is complete.
  process = start(create_command(vocab_file, input_dir, output_dir,
                                 dupe_factor=400))

  def temporaries():
    if not os.path.isdir(output_dir):
      return []
    return [name for name in os.listdir(output_dir) if TEMPORARY_MARK in name]

  try:
    # Wait until a worker is writing its records under a temporary name.
    wait_for(temporaries, what="a temporary record file")
    os.kill(process.pid, signal.SIGTERM)
    _, stderr = finish(process, 60)
  finally:
    kill_group(process)
  assert process.returncode == -signal.SIGTERM, stderr[-3000:]
  assert "Stopped by SIGTERM" in stderr and "Traceback" not in stderr
  assert temporaries() == [] and glob.glob(output_dir + "/*.tfrecord") == []
  assert group_is_gone(process.pid)


def dead_pid():
  """The PID of a process that has ended."""
  process = subprocess.Popen(["true"])
  process.wait()
  return process.pid


def test_next_run_removes_stale_temporaries_of_its_own_outputs(
    pretraining_inputs, tmp_path):
  vocab_file, input_dir = pretraining_inputs
  output_dir = tmp_path / "out"
  output_dir.mkdir()
  # What a `kill -9` leaves: the temporary of a dead process.
  stale = output_dir / (".train_0.tfrecord%s%d" % (TEMPORARY_MARK, dead_pid()))
  stale.write_bytes(b"half a record file")
  # A live process's temporary, and another output's, are not ours to remove.
  live = output_dir / (".train_1.tfrecord%s%d" % (TEMPORARY_MARK, os.getpid()))
  live.write_bytes(b"being written")
  other = output_dir / (".eval_0.tfrecord%s%d" % (TEMPORARY_MARK, dead_pid()))
  other.write_bytes(b"another output's")
  process = start(create_command(vocab_file, input_dir, str(output_dir),
                                 dupe_factor=1))
  try:
    _, stderr = finish(process, TIMEOUT)
  finally:
    kill_group(process)
  assert process.returncode == 0, stderr[-3000:]
  assert not stale.exists() and str(stale) in stderr
  assert live.exists() and other.exists()


def test_temporary_files_helpers(tmp_path):
  path = str(tmp_path / "labels.tfrecord")
  temp = temporary_files.temporary_path(path)
  assert os.path.basename(temp) == ".labels.tfrecord.tmp-%d" % os.getpid()
  assert temporary_files.owner_pid(os.path.basename(temp),
                                   r"labels\.tfrecord") == os.getpid()
  assert temporary_files.owner_pid(".labels.tfrecord.tmp-12x",
                                   r"labels\.tfrecord") is None
  assert temporary_files.owner_pid(".other.tmp-12", r"labels\.tfrecord") is None
  assert temporary_files.process_is_alive(os.getpid())
  assert not temporary_files.process_is_alive(dead_pid())

  # A failed write keeps the earlier file and leaves no temporary.
  with open(path, "w") as f:
    f.write("good")

  def fail(writer):
    writer.write("half")
    raise OSError(28, "No space left on device")

  with pytest.raises(OSError):
    temporary_files.write_atomically(path, fail)
  assert open(path).read() == "good" and os.listdir(str(tmp_path)) == [
      "labels.tfrecord"]
  temporary_files.write_atomically(path, lambda writer: writer.write("new"))
  assert open(path).read() == "new"


# --- hangs: WikiExtractor on a damaged dump --------------------------------


def run_wrapper(dump, output_dir, timeout=TIMEOUT):
  """Runs run_wikiextractor.sh in its own process group; kills it after."""
  env = dict(CHILD_ENV, PYTHON=sys.executable, PROCESSES="2")
  process = start(["bash", WRAPPER, str(dump), str(output_dir)], env=env)
  try:
    stdout, stderr = finish(process, timeout)
  finally:
    kill_group(process)
  return process.returncode, stdout, stderr


@pytest.mark.parametrize("damage", ["cut_in_half", "flipped_bytes"])
def test_damaged_bz2_dump_ends_with_an_error_naming_it(tmp_path, damage):
  with open(SAMPLE_DUMP, "rb") as f:
    data = bytearray(f.read())
  if damage == "cut_in_half":
    data = data[:len(data) // 2]
  else:
    for offset in range(len(data) // 3, len(data) // 3 + 64):
      data[offset] ^= 0xFF
  dump = tmp_path / "damaged-pages-articles.xml.bz2"
  dump.write_bytes(bytes(data))
  returncode, _, stderr = run_wrapper(dump, tmp_path / "extracted", timeout=90)
  assert returncode != 0
  assert str(dump) in stderr and "damaged" in stderr
  assert "Traceback" not in stderr
  # No half-filled output folder is left.
  assert not (tmp_path / "extracted").exists()
  assert not (tmp_path / "extracted.partial").exists()


# --- leftovers of the trainers ---------------------------------------------


def test_step_timeout_exit_removes_registered_temporaries(tmp_path):
  """The watchdog leaves by os._exit (no atexit); it cleans up first."""
  program = (
      "import sys, time\n"
      "from bert_distillation import temporary_files, training_hooks\n"
      "scratch = temporary_files.temporary_dir('distill_rank1', sys.argv[1])\n"
      "open(scratch + '/model.ckpt-1.index', 'w').close()\n"
      "training_hooks.Watchdog().watch(1, 'No training step finished in "
      "%.0f s')\n"
      "time.sleep(60)\n")
  process = start([sys.executable, "-c", program, str(tmp_path)])
  try:
    _, stderr = finish(process, TIMEOUT)
  finally:
    kill_group(process)
  from bert_distillation import training_hooks  # pylint: disable=g-import-not-at-top
  assert process.returncode == training_hooks.TIMEOUT_EXIT_STATUS, stderr
  assert "No training step finished" in stderr
  assert os.listdir(str(tmp_path)) == []


def test_distributed_rank_stopped_by_sigterm_leaves_no_scratch_dir(
    tmp_path, tiny_vocab):
  """Also: the next job removes what killed ranks and a full disk left."""
  import conftest  # pylint: disable=g-import-not-at-top
  import test_launchers  # pylint: disable=g-import-not-at-top
  _, tokens = tiny_vocab
  config = str(tmp_path / "student_config.json")
  conftest.write_config(config, vocab_size=len(tokens))
  records = str(tmp_path / "distill.tfrecord")
  test_launchers.write_distillation_records(records, 16, len(tokens))
  temp_dir = tmp_path / "tmp"
  temp_dir.mkdir()
  # A rank killed with -9 left its scratch model dir; another job runs.
  stale = temp_dir / ("distill_rank1%s%d-abc123" % (TEMPORARY_MARK,
                                                     dead_pid()))
  (stale / "model.ckpt-2.index").parent.mkdir()
  (stale / "model.ckpt-2.index").write_bytes(b"old")
  live = temp_dir / ("distill_rank1%s%d-def456" % (TEMPORARY_MARK,
                                                    os.getpid()))
  live.mkdir()
  # A full disk stopped TensorFlow's checkpoint writer half-way.
  output_dir = tmp_path / "output"
  output_dir.mkdir()
  meta_temp = output_dir / ("model.ckpt-0.meta.tmp" + "0123456789abcdef" * 2)
  meta_temp.write_bytes(b"half a graph")
  env = dict(CHILD_ENV, TMPDIR=str(temp_dir),
             PATH=os.path.dirname(sys.executable) + os.pathsep +
             os.environ.get("PATH", ""))
  # Enough steps that the job is still training when rank 1 is stopped.
  command = conftest.horovodrun_command(2, [
      os.path.join(REPO, "network_distillation_distributed_truncated.py"),
      "--bert_config_file", config, "--input_file", records,
      "--output_dir", str(output_dir), "--truncation_factor",
      str(test_launchers.TOP_K), "--do_train", "True", "--do_eval", "False",
      "--train_batch_size", "4"] + [
          str(flag) for flag in test_launchers.small_run_flags(100000)])

  def new_scratch_dir_pid():
    for name in os.listdir(str(temp_dir)):
      pid = temporary_files.owner_pid(name, r"distill_rank1")
      if pid and name not in (stale.name, live.name):
        return pid
    return None

  process = start(command, env=env)
  try:
    rank1_pid = wait_for(new_scratch_dir_pid, what="rank 1's scratch dir")
    wait_for(lambda: not meta_temp.exists(), what="rank 0's start")
    time.sleep(5)  # Into the training loop.
    os.kill(rank1_pid, signal.SIGTERM)
    stdout, stderr = finish(process, 120)
  finally:
    kill_group(process)
  output = stdout + stderr
  assert process.returncode != 0, output[-4000:]
  assert "Stopped by SIGTERM; removed %s" % temp_dir in output, output[-4000:]
  # Of the scratch dirs, only the live process's is left.
  assert [name for name in os.listdir(str(temp_dir))
          if name.startswith("distill_rank")] == [live.name]
  assert not meta_temp.exists()
