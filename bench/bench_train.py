# coding=utf-8
"""Benchmarks student training on CPU; prints a table of sequences/s.

Students: 6 layers / hidden 768 (DistilBERT's shape) and 4 layers / hidden
256, both with BERT's 30,522-token vocab, --max_seq_length 128,
--max_predictions_per_seq 20 and top-10 teacher labels (random, written by
this script; the numbers do not depend on the label values).

Every setup runs once per --precisions value (default fp32 and bf16), and
a closing table gives the bf16/fp32 ratio of each student and setup, and the
fraction of the bf16 GEMM peak (measured in this process first, TensorFlow's
default threads) that the training step reaches, counting a step as 3x the
forward FLOPs.

Setups, all with the same global batch (--batch sequences per step):
  * one process, TensorFlow's default thread pools;
  * one process limited to 2 threads (TF_NUM_INTRAOP_THREADS=2,
    TF_NUM_INTEROP_THREADS=2, OMP_NUM_THREADS=2);
  * two Horovod processes (horovodrun --gloo on localhost) with 1 thread
    each, each on half the batch.

Each run is the real trainer script; the rate is its own measurement
(train_stats.json: the steps after the first two, so graph building and
warm-up are left out; global sequences per second).

With --profile it times nothing: for each student and precision it runs
bench/profile_step.py (the same trainer and flags, one process, default
threads), which traces --profile_steps steps after warm-up, and prints where
a step's op time goes: matmuls, casts, LayerNorm, softmax, GELU, dropout,
the optimizer, the input, data movement and other elementwise ops, and the
op types that take the most. Tracing slows a step down, so the shares
matter, not the milliseconds.

  .venv/bin/python bench/bench_train.py [--batch 8] [--timed_steps 3]
  .venv/bin/python bench/bench_train.py --quick   # smoke run: 4x256, 1 setup
  .venv/bin/python bench/bench_train.py --profile --batch 32
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from absl import flags
import numpy as np
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bert_distillation import command_line  # pylint: disable=g-import-not-at-top
import modeling  # pylint: disable=g-import-not-at-top
from bert_distillation import precision  # pylint: disable=g-import-not-at-top
from bert_distillation import record_format  # pylint: disable=g-import-not-at-top
import synthetic  # pylint: disable=g-import-not-at-top

flags.DEFINE_integer("batch", 8, "Global batch size (sequences per step).")
flags.DEFINE_integer("timed_steps", 3,
                     "Steps timed per run, after 2 warm-up steps.")
flags.DEFINE_string("students", "6x768,4x256",
                    "Comma list of LAYERSxHIDDEN students to measure.")
flags.DEFINE_string("work_dir", None,
                    "Scratch folder (default: a temporary one, deleted).")
flags.DEFINE_string("precisions", "fp32,bf16",
                    "Comma list of --precision values to measure.")
flags.DEFINE_bool(
    "quick", False,
    "Smoke run: the 4x256 student only, one process with default threads, "
    "2 timed steps.")
flags.DEFINE_integer("gemm_size", 2048, "n of the n x n x n peak matmuls.")
flags.DEFINE_integer(
    "setups", 3,
    "How many of the setups to run, in the order of the docstring (1 = one "
    "process with default threads only).")

flags.DEFINE_bool(
    "profile", False,
    "Instead of timing, profile one process per student and precision with "
    "bench/profile_step.py and print the time per kind of op.")
flags.DEFINE_integer("profile_steps", 2, "With --profile: steps traced.")
flags.DEFINE_bool("use_xla", False, "Pass --use_xla to the trainer.")

FLAGS = flags.FLAGS

VOCAB_SIZE = synthetic.BERT_VOCAB_SIZE
MAX_SEQ_LENGTH = 128
MAX_PREDICTIONS = 20
TOP_K = 10
WARMUP_STEPS = 2  # ThroughputHook's skip_steps.
VENV_BIN = os.path.dirname(sys.executable)


def write_records(path, num_records, seed=0):
  """Random distillation records of the full size (seq 128, top-10)."""
  rng = np.random.RandomState(seed)
  examples = synthetic.full_length_examples(
      num_records, VOCAB_SIZE, MAX_SEQ_LENGTH, MAX_PREDICTIONS, seed)
  with tf.io.TFRecordWriter(path) as writer:
    for example in examples:
      probs = np.sort(rng.dirichlet(np.ones(TOP_K)) * 0.9)[::-1]
      indices = np.concatenate([rng.choice(VOCAB_SIZE, TOP_K, replace=False)
                                for _ in range(MAX_PREDICTIONS)])
      feature = example.features.feature
      feature[record_format.TRUNCATED_PROBS].CopyFrom(
          record_format.float_feature(np.tile(probs, MAX_PREDICTIONS)))
      feature[record_format.TOP_K_INDICES].CopyFrom(
          record_format.int64_feature(indices))
      feature[record_format.NEXT_SENTENCE_PROBS].CopyFrom(
          record_format.float_feature([0.5, 0.5]))
      writer.write(example.SerializeToString())


def trainer_flags(config_path, input_file, output_dir, batch, steps,
                  precision_name):
  """The trainer's flags for a short run without evaluation."""
  return ["--bert_config_file", config_path, "--input_file", input_file,
          "--output_dir", output_dir, "--truncation_factor", str(TOP_K),
          "--max_seq_length", str(MAX_SEQ_LENGTH),
          "--max_predictions_per_seq", str(MAX_PREDICTIONS),
          "--do_train", "True", "--train_batch_size", str(batch),
          "--num_train_steps", str(steps), "--num_warmup_steps", "0",
          "--save_checkpoints_steps", "100000", "--iterations_per_loop", "1",
          "--precision", precision_name] + (
              ["--use_xla"] if FLAGS.use_xla else [])


def thread_env(threads):
  """The environment of a run: CPU only, optionally limited threads."""
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
             PYTHONPATH=REPO)
  env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
  if threads:
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
                 "OMP_NUM_THREADS"):
      env[name] = str(threads)
  return env


def run(command, env, output_dir):
  """Runs a training command; returns its train_stats.json."""
  start = time.time()
  result = subprocess.run(command, cwd=REPO, env=env, capture_output=True,
                          text=True)
  if result.returncode != 0:
    raise RuntimeError("%s failed:\n%s" % (" ".join(command),
                                           result.stderr[-4000:]))
  with open(os.path.join(output_dir, "train_stats.json")) as f:
    stats = json.load(f)
  stats["wall"] = time.time() - start
  return stats


def gemm_peaks(precisions):
  """{precision: median GFLOP/s of a square matmul}, default threads."""
  peaks = {}
  for name in precisions:
    seconds, _ = synthetic.measure_gemm(FLAGS.gemm_size,
                                        precision.compute_type(name))
    peaks[name] = 2.0 * FLAGS.gemm_size ** 3 / float(np.median(seconds)) / 1e9
  return peaks


def main(_):
  precisions = FLAGS.precisions.split(",")
  for name in precisions:
    if name not in precision.PRECISIONS:
      raise command_line.InputError("--precisions: unknown precision %r" %
                                    name)
  setups = [
      ("1 process, default threads", None, 1),
      ("1 process, 2 threads", 2, 1),
      ("2 Horovod processes x 1 thread", 1, 2),
  ]
  if not 1 <= FLAGS.setups <= len(setups):
    raise command_line.InputError("--setups must be 1 to %d" % len(setups))
  setups = setups[:FLAGS.setups]
  students = FLAGS.students
  if FLAGS.quick:
    setups = setups[:1]
    if FLAGS["students"].using_default_value:
      students = "4x256"
    if FLAGS["timed_steps"].using_default_value:
      FLAGS.timed_steps = 2
  work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="bench_train_")
  os.makedirs(work_dir, exist_ok=True)
  records = os.path.join(work_dir, "records.tfrecord")
  write_records(records, 4 * FLAGS.batch)
  if FLAGS.profile:
    try:
      profile(students, precisions, work_dir, records)
    finally:
      if not FLAGS.work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)
    return
  peaks = gemm_peaks(precisions)
  single = os.path.join(REPO,
                        "network_distillation_single_machine_truncated.py")
  distributed = os.path.join(REPO,
                             "network_distillation_distributed_truncated.py")
  steps = WARMUP_STEPS + FLAGS.timed_steps
  rows = []
  try:
    for student in students.split(","):
      layers, hidden = (int(x) for x in student.split("x"))
      config_path = os.path.join(work_dir, "student_%s.json" % student)
      with open(config_path, "w") as f:
        json.dump(synthetic.bert_config_dict(layers, hidden), f)
      for name, threads, processes in setups:
        for precision_name in precisions:
          output_dir = os.path.join(work_dir, "out_%s_%d_%s_%s" % (
              student, processes, threads, precision_name))
          shutil.rmtree(output_dir, ignore_errors=True)
          if processes == 1:
            command = [sys.executable, single] + trainer_flags(
                config_path, records, output_dir, FLAGS.batch, steps,
                precision_name)
          else:
            # Each rank: half the batch; the trainer divides the steps.
            command = [os.path.join(VENV_BIN, "horovodrun"), "-np", "2",
                       "-H", "localhost:2", "--gloo", sys.executable,
                       distributed] + trainer_flags(
                           config_path, records, output_dir,
                           FLAGS.batch // 2, steps * 2, precision_name)
          stats = run(command, thread_env(threads), output_dir)
          rows.append((student, stats["params"], name, precision_name,
                       stats["train_seq_per_s"], stats["wall"]))
          print("%-7s %-32s %-5s %8.2f seq/s  (run %.0f s)" % (
              student, name, precision_name, stats["train_seq_per_s"],
              stats["wall"]), flush=True)
  finally:
    if not FLAGS.work_dir:
      shutil.rmtree(work_dir, ignore_errors=True)

  print("\nStudent training on CPU (%d cores), seq %d, global batch %d, "
        "%d timed steps after %d warm-up steps; load average %.1f at the "
        "end:\n" % (os.cpu_count(), MAX_SEQ_LENGTH, FLAGS.batch,
                    FLAGS.timed_steps, WARMUP_STEPS, os.getloadavg()[0]))
  print("| student (layers x hidden) | parameters | setup | precision | "
        "sequences/s | % of its GEMM peak |")
  print("| --- | ---: | --- | --- | ---: | ---: |")
  rates = {}
  for student, params, name, precision_name, rate, _ in rows:
    rates[student, name, precision_name] = rate
    print("| %s | %.1fM | %s | %s | %.2f | %.0f%% |" % (
        student, params / 1e6, name, precision_name, rate,
        100.0 * rate * step_flops(student) / 1e9 / peaks[precision_name]))
  print("\nGEMM peaks (%d^3, this process, default threads): %s" % (
      FLAGS.gemm_size, ", ".join("%s %.1f GFLOP/s" % (name, peak)
                                 for name, peak in sorted(peaks.items()))))
  if "fp32" in precisions and "bf16" in precisions:
    print("\n| student | setup | bf16 / fp32 |")
    print("| --- | --- | ---: |")
    for student in students.split(","):
      for name, _, _ in setups:
        print("| %s | %s | %.2fx |" % (
            student, name, rates[student, name, "bf16"] /
            rates[student, name, "fp32"]))


KIND_LABELS = {
    "matmul": "matmuls (forward and backward)",
    "cast": "casts",
    "layer_norm": "LayerNorm",
    "softmax": "softmax (attention, vocabulary)",
    "gelu": "GELU",
    "dropout": "dropout",
    "optimizer": "optimizer (clip, AdamW, dense embedding gradient)",
    "input": "input (waiting for the next batch)",
    "data_movement": "data movement (transpose, gather, scatter, ...)",
    "other_elementwise": "other elementwise (add, mul, bias, sums, ...)",
    "bookkeeping": "bookkeeping (variable reads, shapes, ...)",
}


def profile(students, precisions, work_dir, records):
  """Runs profile_step.py per student and precision; prints the tables."""
  script = os.path.join(REPO, "bench", "profile_step.py")
  skip = 3
  steps = skip + FLAGS.profile_steps
  results = []
  for student in students.split(","):
    layers, hidden = (int(x) for x in student.split("x"))
    config_path = os.path.join(work_dir, "student_%s.json" % student)
    with open(config_path, "w") as f:
      json.dump(synthetic.bert_config_dict(layers, hidden), f)
    for precision_name in precisions:
      output_dir = os.path.join(work_dir, "profile_%s_%s" % (
          student, precision_name))
      shutil.rmtree(output_dir, ignore_errors=True)
      output = output_dir + ".json"
      command = [sys.executable, script, "--profile_output", output,
                 "--profile_skip_steps", str(skip),
                 "--profile_steps", str(FLAGS.profile_steps),
                 "--profile_timeline", output_dir + ".trace.json"
                 ] + trainer_flags(config_path, records, output_dir,
                                   FLAGS.batch, steps, precision_name)
      run(command, thread_env(None), output_dir)
      with open(output) as f:
        results.append((student, precision_name, json.load(f)))
      print("profiled %s %s" % (student, precision_name), flush=True)
  print_profile(results)
  return results


def print_profile(results):
  """Prints the share of op time per kind, and the top op types."""
  print("\nWall time of a training step by kind of op (bench/profile_step.py,"
        " batch %d, seq %d, %d traced steps after 3; an instant with two ops "
        "running is split between them; %d cores, "
        "load average %.1f at the end):\n" % (
            FLAGS.batch, MAX_SEQ_LENGTH, FLAGS.profile_steps,
            os.cpu_count(), os.getloadavg()[0]))
  header = ["%s %s" % (student, name) for student, name, _ in results]
  print("| kind | " + " | ".join(header) + " |")
  print("| --- |" + " ---: |" * len(results))
  kinds = list(results[0][2]["kinds_s"])
  totals = [sum(result["kinds_s"].values()) for _, _, result in results]
  for kind in kinds:
    cells = ["%.0f ms (%.0f%%)" % (1e3 * result["kinds_s"][kind],
                                  100.0 * result["kinds_s"][kind] / total)
             for (_, _, result), total in zip(results, totals)]
    print("| %s | %s |" % (KIND_LABELS.get(kind, kind), " | ".join(cells)))
  print("| **some op running** | %s |" % " | ".join(
      "%.0f ms" % (1e3 * total) for total in totals))
  print("| traced step, wall | %s |" % " | ".join(
      "%.0f ms" % (1e3 * result["traced_wall_s"])
      for _, _, result in results))
  cells = []
  for student, _, result in results:
    flops = FLAGS.batch * step_flops(student)
    cells.append("%.0f GFLOP/s" % (flops / result["kinds_s"]["matmul"] / 1e9))
  print("| step FLOPs / matmul time | %s |" % " | ".join(cells))
  cells = []
  for student, name, result in results:
    flops = FLAGS.batch * step_flops(student)
    cells.append("%.0f GFLOP/s" % (flops / result["traced_wall_s"] / 1e9))
  print("| step FLOPs / traced wall time | %s |" % " | ".join(cells))
  for student, name, result in results:
    total = sum(result["kinds_s"].values())
    top = list(result["op_types_s"].items())[:10]
    print("\n%s %s, top op types: %s" % (student, name, ", ".join(
        "%s %.0f%%" % (op_type, 100.0 * seconds / total)
        for op_type, seconds in top)))


def step_flops(student):
  """FLOPs of one training sequence: 3x the forward pass."""
  layers, hidden = (int(x) for x in student.split("x"))
  config = modeling.BertConfig.from_dict(
      synthetic.bert_config_dict(layers, hidden))
  return 3 * synthetic.forward_flops(config, MAX_SEQ_LENGTH, MAX_PREDICTIONS)


if __name__ == "__main__":
  command_line.run(main)
