# coding=utf-8
"""Benchmarks produce_teacher_labels.py with a BERT-Base shaped teacher.

The teacher has BERT-Base's shape (12 layers, hidden 768, 12 heads,
intermediate 3072, vocab 30522) and random weights, saved as a checkpoint in
a temporary folder. Inputs are random full-length records (seq 128, 20
masked positions). Everything runs on the CPU.

A shared virtual machine's speed drifts by tens of percent from minute to
minute, so every measurement is repeated in --rounds rounds, and each round
runs all of them one after the other. Ratios then compare like with like:
the best run against the best run, and the median against the median. Rows:

  * float32 GEMM peak: a large tf.matmul, with the same thread settings as
    the script (produce_teacher_labels.session_config), 5 runs per round;
  * forward only: the teacher graph of the script (model, heads, top-k) on a
    batch held in the graph, no input pipeline, no serialization, no I/O;
    each timed run is one batch, after a warm-up batch;
  * forward only with XLA: the same graph compiled as --use_xla does;
  * forward + serialization: the same plus the in-graph encoding of the
    output records, still without I/O;
  * end to end: produce_teacher_labels.py itself for k = 10 and k = 100, the
    throughput it logs after its first batch (the first batch carries the
    one-off graph optimisation, as the warm-up batch does for forward only),
    the same per second of the process's CPU time (from its log), and the
    wall time of the whole process including start-up. Each run's figure
    is already a mean over its batches, so its best is closer to its median
    than a single batch's is: compare the medians;
  * bytes per output record (TFRecord framing included) for k = 10 and 100.

Each speed is also given per second of process CPU time over all rounds,
which other jobs on the machine disturb less than wall time. FLOPs per
sequence are computed from the config (a multiply-add is 2 FLOPs).

  .venv/bin/python bench/bench_teacher.py [--rounds 3]
"""

import contextlib
import os
import re
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
import command_line  # pylint: disable=g-import-not-at-top
import modeling  # pylint: disable=g-import-not-at-top
import produce_teacher_labels  # pylint: disable=g-import-not-at-top
import record_format  # pylint: disable=g-import-not-at-top
import synthetic  # pylint: disable=g-import-not-at-top

tf1 = tf.compat.v1

flags.DEFINE_integer("num_sequences", 128,
                     "Records labelled by each end-to-end run.")
flags.DEFINE_integer("rounds", 3,
                     "Rounds; each runs every measurement once.")
flags.DEFINE_integer("forward_batches", 3,
                     "Timed batches of each forward-only row per round "
                     "(after one warm-up batch).")
flags.DEFINE_integer("gemm_size", 4096, "n of the n x n x n peak matmul.")
flags.DEFINE_string("work_dir", None,
                    "Scratch folder (default: a temp folder, removed after).")

FLAGS = flags.FLAGS

SEQ_LENGTH = 128
PREDICTIONS = 20
BENCH_BATCH_SIZE = 32
TOP_KS = (10, 100)

BERT_BASE = synthetic.bert_config_dict(12, 768)

CHILD_ENV = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
                 PYTHONPATH=REPO)


def forward_flops(config, seq_length, predictions):
  """FLOPs of one sequence's teacher forward pass, heads included."""
  hidden, inner = config.hidden_size, config.intermediate_size
  per_layer = (2 * seq_length * hidden * 3 * hidden      # query, key, value
               + 2 * 2 * seq_length * seq_length * hidden  # scores, context
               + 2 * seq_length * hidden * hidden        # attention output
               + 2 * 2 * seq_length * hidden * inner)    # feed-forward
  heads = (2 * hidden * hidden + 2 * hidden * 2          # pooler, next sent.
           + predictions * (2 * hidden * hidden          # MLM transform
                            + 2 * hidden * config.vocab_size))
  return config.num_hidden_layers * per_layer + heads


def save_random_teacher(config, prefix):
  """Saves randomly initialised BERT + heads as a Google-format checkpoint."""
  with tf.Graph().as_default():
    input_ids = tf1.placeholder(tf.int32, [None, SEQ_LENGTH])
    positions = tf1.placeholder(tf.int32, [None, PREDICTIONS])
    modeling.pretraining_model(config, False, input_ids, positions)
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      tf1.train.Saver().save(sess, prefix)


def random_records(count, vocab_size, seed=0):
  """Serialized full-length pretraining records with random tokens."""
  return [example.SerializeToString() for example in
          synthetic.full_length_examples(count, vocab_size, SEQ_LENGTH,
                                         PREDICTIONS, seed)]


class Speeds(object):
  """The timed runs of one measurement, over every round.

  Each run does `work_per_run` units of work (FLOPs, sequences). Keeps the
  wall seconds of every run and the process CPU seconds of all of them.
  """

  def __init__(self, work_per_run):
    self.work_per_run = work_per_run
    self.seconds = []
    self.cpu_seconds = 0.0

  def add(self, seconds, cpu_seconds):
    """Adds one round's runs: a list of wall seconds and their CPU seconds."""
    self.seconds.extend(seconds)
    self.cpu_seconds += cpu_seconds

  def best(self):
    """Work per second of the fastest run."""
    return self.work_per_run / min(self.seconds)

  def median(self):
    """Work per second of the median run."""
    return self.work_per_run / float(np.median(self.seconds))

  def per_cpu_second(self):
    """Work per process CPU second over all runs."""
    return self.work_per_run * len(self.seconds) / self.cpu_seconds


def timed_runs(sess, fetch, runs):
  """Runs `fetch` once to warm up, then `runs` times.

  Returns (wall seconds of each run, process CPU seconds of all runs).
  """
  sess.run(fetch)
  seconds = []
  cpu_start = time.process_time()
  for _ in range(runs):
    start = time.time()
    sess.run(fetch)
    seconds.append(time.time() - start)
  return seconds, time.process_time() - cpu_start


def measure_gemm(size, runs=5):
  """Times an n x n x n float32 tf.matmul; returns timed_runs' result."""
  with tf.Graph().as_default():
    left = tf.Variable(tf.random.normal([size, size]))
    right = tf.Variable(tf.random.normal([size, size]))
    # Reduce to a scalar so that fetching costs nothing.
    product = tf.reduce_sum(tf.matmul(left, right)[:1, :1])
    config = produce_teacher_labels.session_config(0, 1, False)
    with tf1.Session(config=config) as sess:
      sess.run(tf1.global_variables_initializer())
      return timed_runs(sess, product, runs)


def measure_forward(config, checkpoint, records, batches, serialize=False,
                    use_xla=False):
  """Times the script's teacher graph on a batch held in the graph.

  Each timed run is one batch of BENCH_BATCH_SIZE sequences. With
  serialize=True the output records are encoded too (still no I/O).
  use_xla compiles the teacher as --use_xla does. Returns timed_runs'
  result.
  """
  with tf.Graph().as_default():
    spec = record_format.pretraining_feature_spec(SEQ_LENGTH, PREDICTIONS)
    raw = tf.constant(records[:BENCH_BATCH_SIZE])
    features = tf.io.parse_example(raw, spec)
    scope = (tf.xla.experimental.jit_scope() if use_xla
             else contextlib.nullcontext())
    with scope:
      labels = produce_teacher_labels.teacher_labels(config, features,
                                                     TOP_KS[0])
    if serialize:
      fetch = produce_teacher_labels.encode_records(raw, labels)
    else:
      fetch = labels
    produce_teacher_labels.load_teacher(checkpoint)
    session_config = produce_teacher_labels.session_config(0, 1, use_xla)
    with tf1.Session(config=session_config) as sess:
      sess.run(tf1.global_variables_initializer())
      return timed_runs(sess, fetch, batches)


def run_end_to_end(work_dir, config_file, checkpoint, input_file, k):
  """Runs produce_teacher_labels.py; returns its throughput and output size."""
  output_file = os.path.join(work_dir, "labels-k%d.tfrecord" % k)
  command = [sys.executable, os.path.join(REPO, "produce_teacher_labels.py"),
             "--bert_config_file", config_file,
             "--init_checkpoint", checkpoint,
             "--input_file", input_file, "--output_file", output_file,
             "--truncation_factor", str(k),
             "--max_seq_length", str(SEQ_LENGTH),
             "--max_predictions_per_seq", str(PREDICTIONS),
             "--batch_size", str(BENCH_BATCH_SIZE)]
  start = time.time()
  result = subprocess.run(command, env=CHILD_ENV, capture_output=True,
                          text=True)
  wall = time.time() - start
  if result.returncode != 0:
    raise RuntimeError("produce_teacher_labels.py failed:\n%s" %
                       result.stderr[-4000:])
  match = re.search(r"Labelled (\d+) records, \d+ written in ([\d.]+) s: "
                    r"([\d.]+) sequences/s \(after the first batch: "
                    r"([\d.]+) sequences/s, ([\d.]+) per CPU second",
                    result.stderr)
  count = int(match.group(1))
  return dict(count=count, loop_seconds=float(match.group(2)),
              overall=float(match.group(3)), steady=float(match.group(4)),
              steady_per_cpu=float(match.group(5)), wall=wall,
              bytes_per_record=os.path.getsize(output_file) / count)


def percent(numerator, denominator, of):
  """'75% of peak'."""
  return "%.0f%% of %s" % (100.0 * numerator / denominator, of)


def median_run(runs, key):
  """The median over rounds of one end-to-end figure."""
  return float(np.median([run[key] for run in runs]))


def main(_):
  tf1.logging.set_verbosity(tf1.logging.WARN)
  work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="bench_teacher_")
  os.makedirs(work_dir, exist_ok=True)
  config = modeling.BertConfig.from_dict(BERT_BASE)
  flops = forward_flops(config, SEQ_LENGTH, PREDICTIONS)
  peak = Speeds(2.0 * FLAGS.gemm_size ** 3)
  forward = {name: Speeds(BENCH_BATCH_SIZE)
             for name in ("plain", "serialize", "xla")}
  end_to_end = {k: [] for k in TOP_KS}
  try:
    config_file = os.path.join(work_dir, "bert_config.json")
    with open(config_file, "w") as f:
      f.write(config.to_json_string())
    checkpoint = os.path.join(work_dir, "bert_model.ckpt")
    save_random_teacher(config, checkpoint)
    records = random_records(FLAGS.num_sequences, config.vocab_size)
    input_file = os.path.join(work_dir, "pretraining.tfrecord")
    with tf.io.TFRecordWriter(input_file) as writer:
      for record in records:
        writer.write(record)
    input_bytes = os.path.getsize(input_file) / len(records)

    load_before = os.getloadavg()[0]
    for round_index in range(FLAGS.rounds):
      print("round %d of %d" % (round_index + 1, FLAGS.rounds),
            file=sys.stderr, flush=True)
      peak.add(*measure_gemm(FLAGS.gemm_size))
      for name, speeds in forward.items():
        speeds.add(*measure_forward(
            config, checkpoint, records, FLAGS.forward_batches,
            serialize=name == "serialize", use_xla=name == "xla"))
      for k in TOP_KS:
        end_to_end[k].append(run_end_to_end(work_dir, config_file,
                                            checkpoint, input_file, k))
    load_after = os.getloadavg()[0]
  finally:
    if not FLAGS.work_dir:
      shutil.rmtree(work_dir, ignore_errors=True)

  threads = produce_teacher_labels.session_config(
      0, 1, False).intra_op_parallelism_threads
  print("\nTeacher labels, BERT-Base shape, seq %d, %d predictions, CPU, "
        "%d intra-op threads, batch %d, %d rounds" % (
            SEQ_LENGTH, PREDICTIONS, threads, BENCH_BATCH_SIZE, FLAGS.rounds))
  print("FLOPs per sequence (forward + heads at %d positions): %.2f GFLOP" %
        (PREDICTIONS, flops / 1e9))
  print("1-minute load average: %.1f before, %.1f after (%d cores)" % (
      load_before, load_after, os.cpu_count()))
  print("Ratios: best run against best run, median against median.\n")
  print("%-40s %13s %13s %13s %13s" % ("row", "best", "median",
                                        "best ratio", "median ratio"))

  def row(name, best, median, best_ratio="", median_ratio=""):
    print("%-40s %13s %13s %13s %13s" % (name, best, median, best_ratio,
                                         median_ratio))

  row("float32 GEMM peak (%d^3), GFLOP/s" % FLAGS.gemm_size,
      "%.1f" % (peak.best() / 1e9), "%.1f" % (peak.median() / 1e9))
  labels = {"plain": "forward only (model+heads+top-k)",
            "xla": "forward only, XLA (--use_xla)"}
  for name, label in labels.items():
    speeds = forward[name]
    row(label + ", seq/s", "%.2f" % speeds.best(), "%.2f" % speeds.median(),
        percent(speeds.best() * flops, peak.best(), "peak"),
        percent(speeds.median() * flops, peak.median(), "peak"))
  plain = forward["plain"]
  serialized = forward["serialize"]
  row("forward + serialization (k=10), seq/s", "%.2f" % serialized.best(),
      "%.2f" % serialized.median(),
      percent(serialized.best(), plain.best(), "fwd"),
      percent(serialized.median(), plain.median(), "fwd"))
  for k in TOP_KS:
    runs = end_to_end[k]
    best = max(run["steady"] for run in runs)
    median = median_run(runs, "steady")
    row("end to end k=%d, seq/s" % k, "%.2f" % best, "%.2f" % median,
        percent(best, plain.best(), "fwd"),
        percent(median, plain.median(), "fwd"))

  print("\nBy process CPU time, over all rounds:")
  print("%-40s %13s %13s" % ("row", "per CPU s", "ratio"))
  print("%-40s %13.1f" % ("float32 GEMM, GFLOP", peak.per_cpu_second() / 1e9))
  for name, label in labels.items():
    speeds = forward[name]
    print("%-40s %13.2f %13s" % (
        label + ", seq", speeds.per_cpu_second(),
        percent(speeds.per_cpu_second() * flops, peak.per_cpu_second(),
                "peak")))
  for k in TOP_KS:
    per_cpu = median_run(end_to_end[k], "steady_per_cpu")
    print("%-40s %13.2f %13s" % (
        "end to end k=%d (median), seq" % k, per_cpu,
        percent(per_cpu, plain.per_cpu_second(), "fwd")))

  print("\nEnd to end, medians over rounds:")
  for k in TOP_KS:
    runs = end_to_end[k]
    print("k=%d: %d records, whole loop %.2f seq/s, process wall time %.1f s,"
          " %.0f bytes per output record (input: %.0f)" % (
              k, runs[0]["count"], median_run(runs, "overall"),
              median_run(runs, "wall"), runs[0]["bytes_per_record"],
              input_bytes))


if __name__ == "__main__":
  command_line.run(main)
