"""Shared helpers for the tests: tiny vocab, config, records, and a runner.

Everything is made here, on disk under pytest's tmp dirs; nothing is fetched.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# Keep child processes on the CPU, quiet and loopback-only.
CHILD_ENV = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
                 PYTHONPATH=REPO, AWS_EC2_METADATA_DISABLED="true")

HOROVODRUN = os.path.join(os.path.dirname(sys.executable), "horovodrun")
# What a launched rank needs from the environment (exported by mpirun -x).
LAUNCH_EXPORTS = ("PYTHONPATH", "CUDA_VISIBLE_DEVICES", "TF_CPP_MIN_LOG_LEVEL",
                  "AWS_EC2_METADATA_DISABLED", "PATH", "TMPDIR")

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ("the a of in river town is was born on near founded by people "
         "north south east west valley hill lake city village farmer smith "
         "weaver miller fisher species bird fish tree flower red blue green "
         "old new small large year years and to it has had one two three").split()


def run_script(script, *args, check=True, timeout=600, env=None, cwd=REPO):
  """Runs a project script with the venv's python; returns CompletedProcess."""
  cmd = [sys.executable, os.path.join(REPO, script)] + [str(a) for a in args]
  result = subprocess.run(cmd, cwd=cwd, env=env or CHILD_ENV, timeout=timeout,
                          capture_output=True, text=True)
  if check and result.returncode != 0:
    raise AssertionError("%s failed (%d):\nSTDOUT:\n%s\nSTDERR:\n%s" % (
        " ".join(cmd), result.returncode, result.stdout[-4000:],
        result.stderr[-8000:]))
  return result


def horovodrun_command(num_processes, program):
  """`horovodrun --gloo` on localhost running `program` ([script, args...])."""
  return [HOROVODRUN, "-np", str(num_processes), "-H",
          "localhost:%d" % num_processes, "--gloo", "--network-interface",
          "lo", sys.executable] + [str(part) for part in program]


def mpirun_command(num_processes, program, env=None):
  """Open MPI's mpirun on loopback running `program` ([script, args...])."""
  env = CHILD_ENV if env is None else env
  command = ["mpirun", "-np", str(num_processes), "-H",
             "localhost:%d" % num_processes, "-bind-to", "none",
             "-map-by", "slot",
             "--mca", "btl_tcp_if_include", "lo",
             "--mca", "oob_tcp_if_include", "lo",
             # Single-copy shared memory needs ptrace rights that containers
             # often lack.
             "--mca", "btl_vader_single_copy_mechanism", "none",
             # Waiting ranks yield instead of spinning: on 2 shared cores
             # the spinning made runs about 3x slower.
             "--mca", "mpi_yield_when_idle", "1"]
  if os.geteuid() == 0:
    command.append("--allow-run-as-root")
  for name in LAUNCH_EXPORTS:
    if name in env:
      command += ["-x", name]
  return command + [sys.executable] + [str(part) for part in program]


def write_vocab(path, extra_words=()):
  """Writes a small WordPiece vocab and returns its token list."""
  tokens = list(SPECIAL_TOKENS) + list(WORDS) + list(extra_words)
  tokens += ["##s", "##ed", "##ing", "##er", "##ly"]
  tokens += [chr(c) for c in range(ord("a"), ord("z") + 1)]
  tokens += list("0123456789.,;:!?'\"()-$^~")
  tokens += ["##" + chr(c) for c in range(ord("a"), ord("z") + 1)]
  tokens += ["##" + d for d in "0123456789"]
  seen, unique = set(), []
  for token in tokens:
    if token not in seen:
      seen.add(token)
      unique.append(token)
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(unique) + "\n")
  return unique


def tiny_config_dict(vocab_size, hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=64):
  """Returns a tiny bert_config dict."""
  return {
      "vocab_size": vocab_size, "hidden_size": hidden_size,
      "num_hidden_layers": num_hidden_layers,
      "num_attention_heads": num_attention_heads,
      "intermediate_size": intermediate_size, "hidden_act": "gelu",
      "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
      "max_position_embeddings": max_position_embeddings,
      "type_vocab_size": 2, "initializer_range": 0.02,
  }


def write_config(path, **kwargs):
  """Writes a tiny bert_config.json and returns its dict."""
  config = tiny_config_dict(**kwargs)
  with open(path, "w") as f:
    json.dump(config, f, indent=2)
  return config


def write_random_pretraining_records(path, num_records, vocab_size,
                                     max_seq_length=32,
                                     max_predictions_per_seq=5, seed=0):
  """Writes pretraining records with random tokens; returns them as dicts.

  Token ids avoid the 5 special ids; position 0 is [CLS] (id 2).
  """
  import tensorflow as tf
  from bert_distillation import record_format
  rng = np.random.RandomState(seed)
  rows = []
  with tf.io.TFRecordWriter(path) as writer:
    for _ in range(num_records):
      length = rng.randint(max_seq_length // 2, max_seq_length + 1)
      ids = rng.randint(5, vocab_size, size=length)
      ids[0] = 2
      ids[-1] = 3
      input_ids = list(ids) + [0] * (max_seq_length - length)
      input_mask = [1] * length + [0] * (max_seq_length - length)
      split = length // 2
      segment_ids = [0] * split + [1] * (length - split) + [0] * (
          max_seq_length - length)
      count = rng.randint(1, max_predictions_per_seq + 1)
      positions = sorted(rng.choice(np.arange(1, length - 1), count,
                                    replace=False))
      masked_ids = [int(input_ids[p]) for p in positions]
      pad = max_predictions_per_seq - count
      row = dict(
          input_ids=[int(x) for x in input_ids], input_mask=input_mask,
          segment_ids=segment_ids,
          masked_lm_positions=[int(p) for p in positions] + [0] * pad,
          masked_lm_ids=masked_ids + [0] * pad,
          masked_lm_weights=[1.0] * count + [0.0] * pad,
          next_sentence_label=int(rng.randint(0, 2)))
      for p in positions:
        input_ids[p] = 4
      row["input_ids"] = [int(x) for x in input_ids]
      writer.write(record_format.make_pretraining_example(
          **row).SerializeToString())
      rows.append(row)
  return rows


@pytest.fixture(scope="session")
def tiny_vocab(tmp_path_factory):
  """(path, tokens) of a small vocab shared by the whole session."""
  path = str(tmp_path_factory.mktemp("vocab") / "vocab.txt")
  return path, write_vocab(path)


def xla_ran(run_metadata):
  """Whether the session.run that filled run_metadata ran XLA code.

  The run needs RunOptions(output_partition_graphs=True): a compiled
  cluster shows up in its partition graphs as an _XlaRun op.
  """
  return any(node.op == "_XlaRun" for graph in run_metadata.partition_graphs
             for node in graph.node)
