# coding=utf-8
"""Benchmarks produce_teacher_labels.py with a BERT-Base shaped teacher.

The teacher has BERT-Base's shape (12 layers, hidden 768, 12 heads,
intermediate 3072, vocab 30522) and random weights, saved as a checkpoint in
a temporary folder; its word embeddings are scaled by --embedding_scale so
that its masked-LM distributions are peaked as a trained BERT's are (the
bf16-against-fp32 label comparison means nothing on flat ones). Inputs are
random full-length records (seq 128, 20 masked positions). Everything runs
on the CPU. Every --precisions value (default fp32 and bf16) gets its own
rows, and a closing summary gives the bf16/fp32 ratios, the fraction of the
bf16 matmul rate reached, and how well the bf16 labels agree with the fp32
ones.

A shared virtual machine's speed drifts by tens of percent from minute to
minute, so every measurement is repeated in --rounds rounds, and each round
runs all of them one after the other. Ratios then compare like with like:
the best run against the best run, and the median against the median. Rows:

  * GEMM peak, per precision: a large tf.matmul, with the same thread
    settings as the script (produce_teacher_labels.session_config), 5 runs
    per round;
  * forward only, per precision: the teacher graph of the script (model,
    heads, top-k) on a batch held in the graph, no input pipeline, no
    serialization, no I/O; each timed run is one batch, after a warm-up
    batch;
  * forward only with XLA (fp32): the same graph compiled as --use_xla does;
  * forward + serialization (fp32): the same plus the in-graph encoding of
    the output records, still without I/O;
  * end to end, per precision: produce_teacher_labels.py itself for k = 10
    and k = 100, the
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
  .venv/bin/python bench/bench_teacher.py --quick   # a smoke run, 2 layers
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
from bert_distillation import command_line  # pylint: disable=g-import-not-at-top
import modeling  # pylint: disable=g-import-not-at-top
from bert_distillation import precision  # pylint: disable=g-import-not-at-top
import produce_teacher_labels  # pylint: disable=g-import-not-at-top
from bert_distillation import record_format  # pylint: disable=g-import-not-at-top
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
flags.DEFINE_string("precisions", "fp32,bf16",
                    "Comma list of --precision values to measure.")
flags.DEFINE_float(
    "embedding_scale", 12.0,
    "Factor on the random teacher's word embeddings: makes its masked-LM "
    "distributions peaked (the summary prints their median top-1 "
    "probability) so that the bf16-vs-fp32 agreement means something.")
flags.DEFINE_integer("num_hidden_layers", 12,
                     "Teacher layers (BERT-Base: 12).")
flags.DEFINE_bool(
    "quick", False,
    "Smoke run: 2 layers, 64 sequences, 1 round, 1 timed batch, a 1024^3 "
    "GEMM and k=10 only. Its figures are not BERT-Base figures.")

FLAGS = flags.FLAGS

SEQ_LENGTH = 128
PREDICTIONS = 20
BENCH_BATCH_SIZE = 32
TOP_KS = (10, 100)

CHILD_ENV = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
                 PYTHONPATH=REPO)


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


def measure_gemm(size, precision_name):
  """The GEMM peak in one precision, with the script's thread settings."""
  return synthetic.measure_gemm(
      size, precision.compute_type(precision_name),
      produce_teacher_labels.session_config(0, 1, False))


def measure_forward(config, checkpoint, records, batches, serialize=False,
                    use_xla=False, precision_name="fp32"):
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
      labels = produce_teacher_labels.teacher_labels(
          config, features, TOP_KS[0],
          compute_type=precision.compute_type(precision_name))
    if serialize:
      fetch = produce_teacher_labels.encode_records(raw, labels)
    else:
      fetch = labels
    produce_teacher_labels.load_teacher(checkpoint)
    session_config = produce_teacher_labels.session_config(0, 1, use_xla)
    with tf1.Session(config=session_config) as sess:
      sess.run(tf1.global_variables_initializer())
      return synthetic.timed_runs(sess, fetch, batches)


def run_end_to_end(work_dir, config_file, checkpoint, input_file, k,
                   precision_name):
  """Runs produce_teacher_labels.py; returns its throughput and output size.

  The output stays in work_dir as labels-k<k>-<precision>.tfrecord.
  """
  output_file = os.path.join(work_dir, "labels-k%d-%s.tfrecord" % (
      k, precision_name))
  command = [sys.executable, os.path.join(REPO, "produce_teacher_labels.py"),
             "--bert_config_file", config_file,
             "--init_checkpoint", checkpoint,
             "--input_file", input_file, "--output_file", output_file,
             "--truncation_factor", str(k),
             "--max_seq_length", str(SEQ_LENGTH),
             "--max_predictions_per_seq", str(PREDICTIONS),
             "--batch_size", str(BENCH_BATCH_SIZE),
             "--precision", precision_name]
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


def label_agreement(work_dir, k):
  """bf16 labels against fp32 labels of the end-to-end runs with this k.

  Returns (top-1 agreement, largest |difference| of the stored top-k
  probabilities rank by rank, median fp32 top-1 probability).
  """
  columns = {}
  for precision_name in ("fp32", "bf16"):
    path = os.path.join(work_dir, "labels-k%d-%s.tfrecord" % (
        k, precision_name))
    probs, ids = [], []
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
      feature = tf.train.Example.FromString(raw).features.feature
      probs.append(feature[record_format.TRUNCATED_PROBS].float_list.value)
      ids.append(feature[record_format.TOP_K_INDICES].int64_list.value)
    columns[precision_name] = (np.reshape(probs, [-1, k]),
                               np.reshape(ids, [-1, k]))
  fp32_probs, fp32_ids = columns["fp32"]
  bf16_probs, bf16_ids = columns["bf16"]
  return (float(np.mean(fp32_ids[:, 0] == bf16_ids[:, 0])),
          float(np.abs(fp32_probs - bf16_probs).max()),
          float(np.median(fp32_probs[:, 0])))


def apply_quick_flags():
  """--quick: a smoke run's sizes (flags given explicitly still apply)."""
  if not FLAGS.quick:
    return FLAGS.num_hidden_layers, TOP_KS
  quick = {"num_sequences": 64, "rounds": 1, "forward_batches": 1,
           "gemm_size": 1024, "num_hidden_layers": 2}
  for name, value in quick.items():
    if FLAGS[name].using_default_value:
      FLAGS[name].value = value
  return FLAGS.num_hidden_layers, TOP_KS[:1]


def main(_):
  tf1.logging.set_verbosity(tf1.logging.WARN)
  layers, top_ks = apply_quick_flags()
  precisions = FLAGS.precisions.split(",")
  for name in precisions:
    if name not in precision.PRECISIONS:
      raise command_line.InputError("--precisions: unknown precision %r" %
                                    name)
  work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="bench_teacher_")
  os.makedirs(work_dir, exist_ok=True)
  config = modeling.BertConfig.from_dict(synthetic.bert_config_dict(layers,
                                                                    768))
  flops = synthetic.forward_flops(config, SEQ_LENGTH, PREDICTIONS)
  peak = {name: Speeds(2.0 * FLAGS.gemm_size ** 3) for name in precisions}
  # (row name, precision): forward-only speeds.
  forward = {(name, "fp32"): Speeds(BENCH_BATCH_SIZE)
             for name in ("serialize", "xla")}
  forward.update({("plain", name): Speeds(BENCH_BATCH_SIZE)
                  for name in precisions})
  end_to_end = {(k, name): [] for k in top_ks for name in precisions}
  agreement = None
  try:
    config_file = os.path.join(work_dir, "bert_config.json")
    with open(config_file, "w") as f:
      f.write(config.to_json_string())
    checkpoint = os.path.join(work_dir, "bert_model.ckpt")
    synthetic.save_teacher_checkpoint(config, checkpoint, SEQ_LENGTH,
                                      PREDICTIONS, FLAGS.embedding_scale)
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
      for name in precisions:
        peak[name].add(*measure_gemm(FLAGS.gemm_size, name))
      for (row_name, name), speeds in forward.items():
        speeds.add(*measure_forward(
            config, checkpoint, records, FLAGS.forward_batches,
            serialize=row_name == "serialize", use_xla=row_name == "xla",
            precision_name=name))
      for k, name in end_to_end:
        end_to_end[k, name].append(run_end_to_end(
            work_dir, config_file, checkpoint, input_file, k, name))
    load_after = os.getloadavg()[0]
    if "fp32" in precisions and "bf16" in precisions:
      agreement = label_agreement(work_dir, TOP_KS[0])
  finally:
    if not FLAGS.work_dir:
      shutil.rmtree(work_dir, ignore_errors=True)

  threads = produce_teacher_labels.session_config(
      0, 1, False).intra_op_parallelism_threads
  print("\nTeacher labels, %d x 768 (BERT-Base%s), seq %d, %d predictions, "
        "CPU, %d intra-op threads, batch %d, %d rounds" % (
            layers, "" if layers == 12 else " width, NOT its depth",
            SEQ_LENGTH, PREDICTIONS, threads, BENCH_BATCH_SIZE,
            FLAGS.rounds))
  print("FLOPs per sequence (forward + heads at %d positions): %.2f GFLOP" %
        (PREDICTIONS, flops / 1e9))
  print("1-minute load average: %.1f before, %.1f after (%d cores)" % (
      load_before, load_after, os.cpu_count()))
  print("Ratios: best run against best run, median against median.\n")
  print("%-44s %11s %11s %18s %18s" % ("row", "best", "median",
                                        "best ratio", "median ratio"))

  def row(name, best, median, best_ratio="", median_ratio=""):
    print("%-44s %11s %11s %18s %18s" % (name, best, median, best_ratio,
                                         median_ratio))

  for name in precisions:
    row("%s GEMM peak (%d^3), GFLOP/s" % (name, FLAGS.gemm_size),
        "%.1f" % (peak[name].best() / 1e9),
        "%.1f" % (peak[name].median() / 1e9))
  labels = {("plain", name): "%s forward only (model+heads+top-k)" % name
            for name in precisions}
  labels["xla", "fp32"] = "fp32 forward only, XLA (--use_xla)"
  for key, label in labels.items():
    speeds, name = forward[key], key[1]
    row(label + ", seq/s", "%.2f" % speeds.best(), "%.2f" % speeds.median(),
        percent(speeds.best() * flops, peak[name].best(), name + " peak"),
        percent(speeds.median() * flops, peak[name].median(),
                name + " peak"))
  if ("plain", "fp32") in forward:
    plain = forward["plain", "fp32"]
    serialized = forward["serialize", "fp32"]
    row("fp32 forward + serialization (k=10), seq/s",
        "%.2f" % serialized.best(), "%.2f" % serialized.median(),
        percent(serialized.best(), plain.best(), "fwd"),
        percent(serialized.median(), plain.median(), "fwd"))
  for k, name in end_to_end:
    runs = end_to_end[k, name]
    best = max(run["steady"] for run in runs)
    median = median_run(runs, "steady")
    plain = forward["plain", name]
    row("%s end to end k=%d, seq/s" % (name, k), "%.2f" % best,
        "%.2f" % median, percent(best, plain.best(), "fwd"),
        percent(median, plain.median(), "fwd"))

  print("\nBy process CPU time, over all rounds:")
  print("%-44s %11s %18s" % ("row", "per CPU s", "ratio"))
  for name in precisions:
    print("%-44s %11.1f" % ("%s GEMM, GFLOP" % name,
                            peak[name].per_cpu_second() / 1e9))
  for key, label in labels.items():
    speeds, name = forward[key], key[1]
    print("%-44s %11.2f %18s" % (
        label + ", seq", speeds.per_cpu_second(),
        percent(speeds.per_cpu_second() * flops,
                peak[name].per_cpu_second(), name + " peak")))
  for k, name in end_to_end:
    per_cpu = median_run(end_to_end[k, name], "steady_per_cpu")
    print("%-44s %11.2f %18s" % (
        "%s end to end k=%d (median), seq" % (name, k), per_cpu,
        percent(per_cpu, forward["plain", name].per_cpu_second(), "fwd")))

  print("\nEnd to end, medians over rounds:")
  for k, name in end_to_end:
    runs = end_to_end[k, name]
    print("%s k=%d: %d records, whole loop %.2f seq/s, process wall time "
          "%.1f s, %.0f bytes per output record (input: %.0f)" % (
              name, k, runs[0]["count"], median_run(runs, "overall"),
              median_run(runs, "wall"), runs[0]["bytes_per_record"],
              input_bytes))
  if agreement is not None:
    print_precision_summary(peak, forward, end_to_end, flops, agreement)


def print_precision_summary(peak, forward, end_to_end, flops, agreement):
  """The bf16 figures the issue asks for, against fp32 in the same run."""
  k = TOP_KS[0]
  fp32_e2e = median_run(end_to_end[k, "fp32"], "steady")
  bf16_e2e = median_run(end_to_end[k, "bf16"], "steady")
  bf16_forward = forward["plain", "bf16"].median()
  print("\nbf16 against fp32 (medians, same run):")
  print("  bf16 GEMM peak / fp32 GEMM peak: %.2fx" % (
      peak["bf16"].median() / peak["fp32"].median()))
  print("  forward only, bf16 / fp32: %.2fx" % (
      bf16_forward / forward["plain", "fp32"].median()))
  print("  end to end k=%d, bf16 / fp32: %.2fx (issue's goal: >= 2.5x)" % (
      k, bf16_e2e / fp32_e2e))
  print("  the same per process CPU second (less disturbed by other jobs): "
        "GEMM %.2fx, forward only %.2fx, end to end %.2fx" % (
            peak["bf16"].per_cpu_second() / peak["fp32"].per_cpu_second(),
            forward["plain", "bf16"].per_cpu_second() /
            forward["plain", "fp32"].per_cpu_second(),
            median_run(end_to_end[k, "bf16"], "steady_per_cpu") /
            median_run(end_to_end[k, "fp32"], "steady_per_cpu")))
  print("  fraction of the bf16 GEMM peak reached: forward only %.0f%%, end "
        "to end %.0f%%" % (100.0 * bf16_forward * flops /
                           peak["bf16"].median(),
                           100.0 * bf16_e2e * flops / peak["bf16"].median()))
  top1, largest, median_top1 = agreement
  print("  bf16 labels against fp32 labels (k=%d, every masked position; "
        "median fp32 top-1 probability %.2f): top-1 id agrees at %.2f%%, "
        "largest |difference| of a stored probability %.4f (goals: >= 99%%, "
        "<= 0.02)" % (k, median_top1, 100.0 * top1, largest))


if __name__ == "__main__":
  command_line.run(main)
