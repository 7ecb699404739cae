"""Tests for the launchers: multinode_train.sh, cluster_helpers.sh, hosts and
the single-node mpirun command of docs/distributed.md.

Everything stays on this machine: hosts files name only localhost for the
real runs, dry runs never reach ssh or mpirun, and fake `curl`/`ip`/`id`
programs put first on PATH record or steer what the script would call.
"""

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

import conftest

REPO = conftest.REPO
LAUNCHER = os.path.join(REPO, "multinode_train.sh")
HELPERS = os.path.join(REPO, "cluster_helpers.sh")
TRAINER = "network_distillation_distributed_truncated.py"
MAX_SEQ_LENGTH = 32
MAX_PREDICTIONS = 5
TOP_K = 3
IS_ROOT = os.geteuid() == 0


def launcher_env(tmp_path, **overrides):
  """Child environment for the launcher, without the user's launcher vars."""
  env = dict(conftest.CHILD_ENV)
  for name in ("HOSTS", "PYTHON", "MPIRUN", "MPIRUN_ARGS", "INTERFACE",
               "EC2_DETECT_INTERFACE", "BERT_CONFIG_FILE", "INPUT_FILE",
               "OUTPUT_DIR", "TRUNCATION_FACTOR", "DO_TRAIN", "DO_EVAL",
               "NUM_TRAIN_STEPS", "NUM_WARMUP_STEPS", "TRAIN_BATCH_SIZE",
               "HOROVOD_FUSION_THRESHOLD", "CLUSTER_DRY_RUN", "SSH_OPTIONS"):
    env.pop(name, None)
  env.update({k: str(v) for k, v in overrides.items()})
  return env


def write_hosts(directory, text):
  """Writes a hosts file and returns its path."""
  path = os.path.join(str(directory), "hosts")
  with open(path, "w") as f:
    f.write(text)
  return path


def fake_program(bin_dir, name, body):
  """Writes an executable shell script `name` into bin_dir."""
  os.makedirs(bin_dir, exist_ok=True)
  path = os.path.join(bin_dir, name)
  with open(path, "w") as f:
    f.write("#!/bin/bash\n" + body + "\n")
  os.chmod(path, 0o755)
  return path


def run_launcher(args, env, timeout=60):
  """Runs multinode_train.sh with args; returns CompletedProcess."""
  return subprocess.run(["bash", LAUNCHER] + [str(a) for a in args], env=env,
                        cwd=REPO, capture_output=True, text=True,
                        timeout=timeout)


def dry_run_tokens(args, env):
  """Runs a dry run that must succeed; returns (tokens, stderr)."""
  result = run_launcher(["--dry-run"] + list(args), env)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 1, "a dry run prints one command line:\n" + result.stdout
  return shlex.split(lines[0]), result.stderr


def contains_run(tokens, run):
  """True when `run` appears in tokens as consecutive items."""
  return any(tokens[i:i + len(run)] == run
             for i in range(len(tokens) - len(run) + 1))


def trainer_flags(tokens):
  """Returns the trainer's flags as (name, value) pairs, in order."""
  start = [os.path.basename(t) for t in tokens].index(TRAINER) + 1
  rest = tokens[start:]
  pairs = []
  i = 0
  while i < len(rest):
    assert rest[i].startswith("--"), rest[i]
    if "=" in rest[i]:
      name, value = rest[i][2:].split("=", 1)
      i += 1
    else:
      name, value = rest[i][2:], rest[i + 1]
      i += 2
    pairs.append((name, value))
  return pairs


def last_values(pairs):
  """What absl sees: the last value of each flag."""
  return dict(pairs)


def route_interface():
  """The default route's device, as the script should find it, or None."""
  out = subprocess.run(["ip", "route", "show", "default"], capture_output=True,
                       text=True).stdout.split()
  return out[out.index("dev") + 1] if "dev" in out else None


# --- shellcheck -------------------------------------------------------------


def test_shellcheck_passes_on_every_shell_script():
  shellcheck = shutil.which("shellcheck")
  assert shellcheck, ("shellcheck is not installed; run `make setup` (as root "
                      "it installs it) or `apt-get install shellcheck`")
  scripts = []
  for path in glob.glob(os.path.join(REPO, "**", "*.sh"), recursive=True):
    relative = os.path.relpath(path, REPO)
    if not relative.split(os.sep)[0].startswith("."):  # skip .venv, .git
      scripts.append(relative)
  assert "multinode_train.sh" in scripts and "cluster_helpers.sh" in scripts
  result = subprocess.run([shellcheck, "-x"] + sorted(scripts), cwd=REPO,
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stdout + result.stderr


def test_shipped_hosts_file():
  with open(os.path.join(REPO, "hosts")) as f:
    assert f.read().split() == ["localhost", "slots=8"]
  for script in (LAUNCHER, HELPERS):
    assert os.access(script, os.X_OK), script + " is not executable"


# --- dry runs ---------------------------------------------------------------


def test_dry_run_prints_the_scale_recipe_and_defaults(tmp_path):
  hosts = write_hosts(tmp_path, "localhost slots=2\n")
  tokens, stderr = dry_run_tokens([2], launcher_env(tmp_path, HOSTS=hosts))

  assert tokens[:5] == ["mpirun", "-np", "2", "-hostfile", hosts]
  for run in (["-bind-to", "socket", "-map-by", "slot"],
              ["-mca", "plm_rsh_no_tree_spawn", "1"],
              ["-mca", "pml", "ob1"], ["-mca", "btl", "^openib"],
              ["-x", "HOROVOD_HIERARCHICAL_ALLREDUCE=1"],
              ["-x", "HOROVOD_FUSION_THRESHOLD=16777216"],
              ["-x", "LD_LIBRARY_PATH"], ["-x", "PATH"]):
    assert contains_run(tokens, run), (run, tokens)
  # Only this machine: loopback is the TCP path, not excluded.
  assert contains_run(tokens, ["-mca", "btl_tcp_if_include", "lo"])
  assert not any("btl_tcp_if_exclude" in t for t in tokens)
  interface = route_interface() or "lo"
  assert contains_run(tokens, ["-x", "NCCL_SOCKET_IFNAME=" + interface])
  assert "interface " + interface in stderr or "using lo" in stderr

  # The project's own python and trainer, no machine-specific paths.
  assert contains_run(tokens, [os.path.join(REPO, ".venv", "bin", "python"),
                               os.path.join(REPO, TRAINER)])
  joined = " ".join(tokens)
  for fragile in ("/home/ubuntu", "tensorflow_p36", "conda", "anaconda"):
    assert fragile not in joined

  assert last_values(trainer_flags(tokens)) == {
      "bert_config_file": os.path.join(
          REPO, "uncased_L-12_H-768_A-12", "bert_config.json"),
      "input_file": os.path.join(
          REPO, "data", "wiki_distill_dupe1_single_test.tfrecord"),
      "output_dir": os.path.join(REPO, "output_dir"),
      "truncation_factor": "10", "do_train": "True", "do_eval": "False",
      "num_train_steps": "2000", "num_warmup_steps": "1000",
      "train_batch_size": "128"}


def test_dry_run_overrides_from_environment_and_extra_flags(tmp_path):
  hosts = write_hosts(tmp_path, "# two boxes\nnode1 slots=4\n\nnode2 slots=4\n")
  env = launcher_env(tmp_path, HOSTS=hosts, PYTHON="/opt/env/bin/python",
                     MPIRUN="/opt/mpi/bin/mpirun", INTERFACE="ens5",
                     MPIRUN_ARGS="-x NCCL_DEBUG=INFO",
                     INPUT_FILE="data/a.tfrecord,data/b.tfrecord",
                     NUM_WARMUP_STEPS=40, TRAIN_BATCH_SIZE=16,
                     HOROVOD_FUSION_THRESHOLD=1048576)
  tokens, _ = dry_run_tokens(
      [8, "--num_train_steps", 77, "--do_eval=True", "--train_batch_size", 8,
       "--learning_rate", "1e-4"], env)

  assert tokens[:3] == ["/opt/mpi/bin/mpirun", "-np", "8"]
  assert contains_run(tokens, ["-x", "NCCL_SOCKET_IFNAME=ens5"])
  assert contains_run(tokens, ["-x", "NCCL_DEBUG=INFO"])
  assert contains_run(tokens, ["-x", "HOROVOD_FUSION_THRESHOLD=1048576"])
  # Several machines: the real network, never loopback or docker bridges.
  assert contains_run(tokens, ["-mca", "btl_tcp_if_exclude", "lo,docker0"])
  assert not any("btl_tcp_if_include" in t for t in tokens)
  assert contains_run(tokens, ["/opt/env/bin/python",
                               os.path.join(REPO, TRAINER)])

  pairs = trainer_flags(tokens)
  values = last_values(pairs)
  assert values["input_file"] == "data/a.tfrecord,data/b.tfrecord"
  assert values["num_warmup_steps"] == "40"
  assert values["num_train_steps"] == "77"
  assert values["do_eval"] == "True"
  assert values["train_batch_size"] == "8"
  assert values["learning_rate"] == "1e-4"
  # Defaults come first and the extra flags after them, so the extras win.
  names = [name for name, _ in pairs]
  assert names.index("num_train_steps") < len(names) - 1 - names[::-1].index(
      "num_train_steps")
  assert ("train_batch_size", "16") in pairs
  assert pairs.index(("train_batch_size", "16")) < pairs.index(
      ("train_batch_size", "8"))


@pytest.mark.parametrize("uid", [0, 1000])
def test_allow_run_as_root_only_for_root(tmp_path, uid):
  hosts = write_hosts(tmp_path, "localhost slots=2\n")
  # The real user first: the flag follows the test's own uid.
  tokens, _ = dry_run_tokens([1], launcher_env(tmp_path, HOSTS=hosts))
  assert ("--allow-run-as-root" in tokens) == IS_ROOT
  # Then a fake `id` that reports `uid`, to cover the other case too.
  bin_dir = str(tmp_path / "bin")
  fake_program(bin_dir, "id",
               '[ "$1" = -u ] && echo %d || exec /usr/bin/id "$@"' % uid)
  env = launcher_env(tmp_path, HOSTS=hosts)
  env["PATH"] = bin_dir + os.pathsep + env["PATH"]
  tokens, _ = dry_run_tokens([1], env)
  assert ("--allow-run-as-root" in tokens) == (uid == 0)


def test_interface_fallbacks_and_no_metadata_call(tmp_path):
  bin_dir = str(tmp_path / "bin")
  curl_log = tmp_path / "curl.log"
  fake_program(bin_dir, "curl", 'echo "$@" >> %s; exit 7' % curl_log)
  # A machine without a default route: `ip route` prints nothing.
  fake_program(bin_dir, "ip", "\n".join([
      'if [ "$1" = route ]; then exit 0; fi',
      'if [ "$1" = -o ]; then',
      '  echo "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536"',
      '  echo "2: ens9@if4: <BROADCAST,UP,LOWER_UP> mtu 1500"',
      "fi"]))
  local_hosts = write_hosts(tmp_path, "localhost slots=2\n127.0.0.1 slots=1\n")
  env = launcher_env(tmp_path, HOSTS=local_hosts)
  env["PATH"] = bin_dir + os.pathsep + env["PATH"]
  tokens, stderr = dry_run_tokens([3], env)
  assert contains_run(tokens, ["-x", "NCCL_SOCKET_IFNAME=lo"])
  assert "no default route" in stderr and "only this machine" in stderr

  remote_dir = tmp_path / "remote"
  remote_dir.mkdir()
  env["HOSTS"] = write_hosts(remote_dir, "10.0.0.1 slots=8\n10.0.0.2 slots=8\n")
  tokens, stderr = dry_run_tokens([16], env)
  assert contains_run(tokens, ["-x", "NCCL_SOCKET_IFNAME=ens9"])
  assert "no default route" in stderr and "INTERFACE" in stderr

  # INTERFACE wins over everything.
  env["INTERFACE"] = "eth7"
  tokens, _ = dry_run_tokens([16], env)
  assert contains_run(tokens, ["-x", "NCCL_SOCKET_IFNAME=eth7"])
  # Without EC2_DETECT_INTERFACE=1 the metadata service is never asked.
  assert not curl_log.exists()


def test_too_many_gpus_is_a_clear_error(tmp_path):
  hosts = write_hosts(tmp_path, "localhost slots=2\n")
  result = run_launcher([3], launcher_env(tmp_path, HOSTS=hosts))
  assert result.returncode != 0
  assert result.stdout == ""
  assert "TOTAL_GPUS=3" in result.stderr
  assert "2 slot(s) in " + hosts in result.stderr
  # The dry run checks too, so a bad command is never printed.
  result = run_launcher(["--dry-run", 3], launcher_env(tmp_path, HOSTS=hosts))
  assert result.returncode != 0 and result.stdout == ""
  assert "TOTAL_GPUS=3" in result.stderr


def test_bad_arguments_are_clear_errors(tmp_path):
  env = launcher_env(tmp_path, HOSTS=str(tmp_path / "missing"))
  result = run_launcher([2], env)
  assert result.returncode != 0
  assert "hosts file" in result.stderr and "HOSTS" in result.stderr
  result = run_launcher([], env)
  assert result.returncode != 0 and "usage:" in result.stderr
  result = run_launcher(["two"], env)
  assert result.returncode != 0 and "positive whole number" in result.stderr
  env["HOSTS"] = write_hosts(tmp_path, "localhost slots=2\n")
  env["PYTHON"] = str(tmp_path / "no-python")
  result = run_launcher([2], env)
  assert result.returncode != 0
  assert "PYTHON" in result.stderr and "no-python" in result.stderr


def test_cluster_helpers_dry_run(tmp_path):
  hosts = write_hosts(tmp_path, "# cluster\nlocalhost slots=2\n\n"
                      "10.0.0.5 slots=8\nworker3\n")
  env = launcher_env(tmp_path, CLUSTER_DRY_RUN=1)

  def helper(*args):
    result = subprocess.run(["bash", HELPERS] + list(args), env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return [shlex.split(line) for line in result.stdout.splitlines()]

  ssh_lines = helper("runclust", hosts, "cd /work && ls -l", "verbose")
  assert ssh_lines[0::2] == [["On", "localhost"], ["On", "10.0.0.5"],
                             ["On", "worker3"]]
  for line, host in zip(ssh_lines[1::2], ["localhost", "10.0.0.5", "worker3"]):
    assert line[:2] == ["ssh", "-n"]
    assert line[-2:] == [host, "cd /work && ls -l"]

  # copyclust skips this machine and copies the project to the same path.
  rsync_lines = helper("copyclust", hosts)
  assert [line[-1] for line in rsync_lines] == ["10.0.0.5:%s/" % REPO,
                                                "worker3:%s/" % REPO]
  assert all(line[0] == "rsync" and line[-2] == REPO + "/"
             for line in rsync_lines)
  assert helper("total_slots", hosts) == [["11"]]

  # Sourced from another script, as the README shows.
  result = subprocess.run(
      ["bash", "-c", '. "$0" && CLUSTER_DRY_RUN=1 runclust "$1" hostname',
       HELPERS, hosts], env=env, capture_output=True, text=True, timeout=30)
  assert result.returncode == 0, result.stderr
  assert len(result.stdout.splitlines()) == 3


# --- real runs on this machine (2 CPU processes over loopback) --------------


def write_distillation_records(path, num_records, vocab_size, seed=0):
  """Writes records with inputs and random top-k teacher labels."""
  import tensorflow as tf
  from bert_distillation import record_format
  rows = conftest.write_random_pretraining_records(
      path + ".plain", num_records, vocab_size, MAX_SEQ_LENGTH,
      MAX_PREDICTIONS, seed)
  rng = np.random.RandomState(seed)
  with tf.io.TFRecordWriter(path) as writer:
    for row in rows:
      example = record_format.make_pretraining_example(**row)
      logits = rng.normal(size=(MAX_PREDICTIONS, vocab_size))
      probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
      top = np.argsort(-probs, axis=1)[:, :TOP_K]
      feature = example.features.feature
      feature[record_format.TRUNCATED_PROBS].CopyFrom(
          record_format.float_feature(
              np.take_along_axis(probs, top, axis=1).ravel()))
      feature[record_format.TOP_K_INDICES].CopyFrom(
          record_format.int64_feature(top.ravel()))
      feature[record_format.NEXT_SENTENCE_PROBS].CopyFrom(
          record_format.float_feature([0.5, 0.5]))
      writer.write(example.SerializeToString())
  os.remove(path + ".plain")


@pytest.fixture(scope="module")
def training_inputs(tmp_path_factory, tiny_vocab):
  """(student config path, records path) for a tiny student."""
  if not os.path.exists(os.path.join(REPO, TRAINER)):
    pytest.fail(TRAINER + " is missing; the launcher has nothing to run")
  directory = tmp_path_factory.mktemp("launch_inputs")
  _, tokens = tiny_vocab
  config = str(directory / "student_config.json")
  conftest.write_config(config, vocab_size=len(tokens))
  records = str(directory / "distill.tfrecord")
  write_distillation_records(records, 32, len(tokens))
  return config, records


def small_run_flags(num_train_steps):
  """Trainer flags that keep a run to a few seconds."""
  return ["--max_seq_length", MAX_SEQ_LENGTH,
          "--max_predictions_per_seq", MAX_PREDICTIONS,
          "--num_train_steps", num_train_steps, "--num_warmup_steps", 2,
          "--learning_rate", "1e-3", "--save_checkpoints_steps", 1000,
          "--iterations_per_loop", 1000, "--max_eval_steps", 2]


def checkpoint_step(output_dir):
  """Global step of the latest checkpoint in output_dir, or None."""
  import tensorflow as tf
  latest = tf.train.latest_checkpoint(output_dir)
  if latest is None:
    return None
  return int(tf.train.load_variable(latest, "global_step"))


def assert_trained(result, output_dir, expected_step):
  """Two ranks trained and only rank 0 left a checkpoint at expected_step."""
  assert result.returncode == 0, "STDOUT:\n%s\nSTDERR:\n%s" % (
      result.stdout[-4000:], result.stderr[-8000:])
  log = result.stdout + result.stderr
  assert "rank 0 of 2" in log and "rank 1 of 2" in log, log[-4000:]
  assert checkpoint_step(output_dir) == expected_step, os.listdir(output_dir)
  assert not os.path.exists(os.path.join(output_dir, "1"))


def test_multinode_train_runs_two_processes_on_localhost(tmp_path,
                                                         training_inputs):
  config, records = training_inputs
  hosts = write_hosts(tmp_path, "localhost slots=2\n")
  output_dir = str(tmp_path / "output")
  env = launcher_env(tmp_path, HOSTS=hosts, BERT_CONFIG_FILE=config,
                     INPUT_FILE=records, OUTPUT_DIR=output_dir,
                     TRUNCATION_FACTOR=TOP_K, TRAIN_BATCH_SIZE=4,
                     TF_CPP_MIN_LOG_LEVEL=2)
  # 4 steps in total over 2 processes: 2 steps each (the default 2000 would
  # give 1000, so the checkpoint's step also proves the override took).
  result = run_launcher([2] + small_run_flags(4), env, timeout=600)
  assert_trained(result, output_dir, 2)


def readme_single_node_command(readme_text):
  """Returns the words of the docs' single-node `mpirun -np 8` command."""
  for block in re.findall(r"```[a-z]*\n(.*?)```", readme_text, re.S):
    if block.lstrip().startswith("mpirun -np 8") and TRAINER in block:
      return shlex.split(block.replace("\\\n", " "))
  return None


def test_documented_single_node_command_runs_with_two_processes(tmp_path,
                                                            training_inputs):
  readme = os.path.join(REPO, "docs", "distributed.md")
  assert os.path.exists(readme), readme + " is missing"
  with open(readme, encoding="utf-8") as f:
    readme_text = f.read()
  assert "horovodrun -np 8 -H localhost:8" in readme_text
  words = readme_single_node_command(readme_text)
  assert words, "no ```mpirun -np 8 ... %s``` block in %s" % (TRAINER, readme)
  assert contains_run(words, ["-np", "8"])
  assert contains_run(words, ["-H", "localhost:8"])
  assert contains_run(words, ["-bind-to", "none", "-map-by", "slot"])

  config, records = training_inputs
  output_dir = str(tmp_path / "output")
  replace = {"8": "2", "localhost:8": "localhost:2", "python": sys.executable}
  values = {"--bert_config_file": config, "--input_file": records,
            "--output_dir": output_dir, "--truncation_factor": str(TOP_K),
            "--eval_input_file": records}
  command = []
  for i, word in enumerate(words):
    if i > 0 and words[i - 1] in values:
      command.append(values[words[i - 1]])
    elif i > 0 and words[i - 1] in ("-np", "-H") or word == "python":
      command.append(replace[word])
    else:
      command.append(word)
  if IS_ROOT:
    command.insert(1, "--allow-run-as-root")
  command += [str(w) for w in small_run_flags(4)]
  command += ["--train_batch_size", "4"]
  result = subprocess.run(command, cwd=REPO, env=launcher_env(tmp_path),
                          capture_output=True, text=True, timeout=600)
  assert_trained(result, output_dir, 2)
