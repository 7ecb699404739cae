# coding=utf-8
"""Measures what the teacher's labels are worth: a controlled distillation run.

On the demo's sample, vocab and teacher (run_demo.py), the same training
records are labelled three ways -- top-k, sampled (--label_sampling, the same
k and about the same bytes) and the full distribution -- and the held-out
records with the full distribution, so that every student is measured
against the whole teacher (teacher_kl is exact).

The same student is then trained for the same steps with: hard labels only;
KD on the top-k with --kd_target truncated, renormalized and residual; KD on
the sampled labels; KD on the full distribution. That set runs twice: from a
random start (the labels have to carry the knowledge) and from teacher
layers (--init_layer_map; "hard" is then the init-only student). Each run is
repeated for --seeds seeds (the student's initialisation, dropout and data
order, and a fresh draw of the sampled labels).

Prints a table of mean +- sd over seeds (held-out masked-LM accuracy,
teacher top-1 agreement, teacher_kl), the label bytes per record and the
issue's three targets, and writes it all to --output_json (rewritten after
every run, so a stopped run keeps what it measured).

  .venv/bin/python bench/bench_quality.py                  # full, ~40 min
  .venv/bin/python bench/bench_quality.py --demo_dir demo_output
  .venv/bin/python bench/bench_quality.py --quick          # smoke test

--demo_dir reuses a finished `make demo` (its records and teacher); without
it the demo's data and teacher stages run first under --work_dir.
"""

import json
import os
import shutil
import sys
import time

from absl import flags
import numpy as np
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import command_line  # pylint: disable=g-import-not-at-top
from bench_common import mean_sd  # pylint: disable=g-import-not-at-top
from bench_common import run_logged  # pylint: disable=g-import-not-at-top
import run_demo  # pylint: disable=g-import-not-at-top
import temporary_files  # pylint: disable=g-import-not-at-top

flags.DEFINE_bool("quick", False,
                  "Smoke test: the demo's --tiny models, a few steps, 2 "
                  "seeds. Checks the chain, not quality.")
flags.DEFINE_string("demo_dir", None,
                    "A finished run_demo.py output (records/, teacher/, "
                    "teacher_config.json, student_config.json) to reuse.")
flags.DEFINE_string("work_dir", os.path.join(REPO, "bench_quality_output"),
                    "Scratch folder for labels and students (replaced).")
flags.DEFINE_string("output_json", None,
                    "Where to write the results (default: "
                    "<work_dir>/bench_quality.json).")
flags.DEFINE_integer("seeds", 3, "Runs per student (--quick: 2).")
flags.DEFINE_integer("steps", 300, "Training steps of every student.")
flags.DEFINE_float("learning_rate", 3e-4, "Learning rate of every student.")
flags.DEFINE_integer("batch", 16, "Training batch of every student.")
flags.DEFINE_integer("train_records", 4000,
                     "Training records (the first ones of the demo's "
                     "training files): full distributions take "
                     "max_predictions x vocab floats each.")
flags.DEFINE_integer("top_k", 10, "k of the top-k and sampled labels.")
flags.DEFINE_float("soft_label_weight", 1.0, "Soft loss weight of KD runs.")
flags.DEFINE_float("hard_label_weight", 1.0, "Hard loss weight of KD runs.")
flags.DEFINE_string("kinds", ",".join(
    ["hard", "truncated", "renormalized", "residual", "sampled", "full"]),
                    "Comma list of the students to train (default: all).")
flags.DEFINE_string("starts", "scratch,init",
                    "Comma list: 'scratch' (random start), 'init' "
                    "(--init_layer_map from the teacher).")

FLAGS = flags.FLAGS

TRAINER = "network_distillation_single_machine_truncated.py"
METRICS = ("masked_lm_accuracy", "teacher_top1_agreement", "teacher_kl")
# Which training labels each student reads, and its trainer flags.
STUDENTS = {
    "hard": ("top_k", ["--soft_label_weight", 0, "--hard_label_weight", 1]),
    "truncated": ("top_k", ["--kd_target", "truncated"]),
    "renormalized": ("top_k", ["--kd_target", "renormalized"]),
    "residual": ("top_k", ["--kd_target", "residual"]),
    "sampled": ("sampled", ["--kd_target", "sampled"]),
    "full": ("full", []),
}
TOP_K_KINDS = ("truncated", "renormalized", "residual")


def label_bytes_per_record(labelled_path, plain_path, num_records):
  """The bytes the teacher's labels add to a record, on average.

  The labels are appended to each record, so the files differ by exactly
  the label bytes (TFRecord framing is the same for both).
  """
  return (os.path.getsize(labelled_path) - os.path.getsize(plain_path)) / (
      num_records)


def summarize(runs):
  """{start: {student: {metric: [mean, sd], "seeds": n}}} over the runs."""
  summary = {}
  for run in runs:
    summary.setdefault(run["start"], {}).setdefault(run["student"], [])
    summary[run["start"]][run["student"]].append(run)
  for start, students in summary.items():
    for student, student_runs in students.items():
      row = {"seeds": len(student_runs)}
      for metric in METRICS:
        values = [run[metric] for run in student_runs
                  if run.get(metric) is not None]
        row[metric] = list(mean_sd(values)) if values else None
      row["seconds"] = mean_sd([run["seconds"] for run in student_runs])[0]
      students[student] = row
  return summary


def beats(summary_rows, baseline, candidates):
  """Whether the best candidate beats the baseline by > 2 sd in accuracy.

  sd is the larger of the two students' seed sds. Returns a dict, or None
  when a needed student is missing.
  """
  present = [name for name in candidates if name in summary_rows]
  if baseline not in summary_rows or not present:
    return None
  best = max(present,
             key=lambda name: summary_rows[name]["masked_lm_accuracy"][0])
  best_mean, best_sd = summary_rows[best]["masked_lm_accuracy"]
  base_mean, base_sd = summary_rows[baseline]["masked_lm_accuracy"]
  margin = best_mean - base_mean
  sd = max(best_sd, base_sd)
  return {"best": best, "baseline": baseline, "difference": margin,
          "sd": sd, "met": bool(margin > 2 * sd and
                                summary_rows[best]["seeds"] > 1)}


def gap_closed(summary_rows):
  """Fraction of the truncated-to-full teacher_kl gap that sampled closes."""
  try:
    truncated = summary_rows["truncated"]["teacher_kl"][0]
    sampled = summary_rows["sampled"]["teacher_kl"][0]
    full = summary_rows["full"]["teacher_kl"][0]
  except (KeyError, TypeError):
    return None
  fraction = (truncated - sampled) / (truncated - full)
  return {"truncated": truncated, "sampled": sampled, "full": full,
          "fraction": fraction, "met": bool(fraction >= 0.8)}


def evaluate_targets(summary):
  """The issue's three targets, measured (None when a student is missing)."""
  kd = list(TOP_K_KINDS) + ["sampled", "full"]
  scratch = summary.get("scratch", {})
  init = summary.get("init", {})
  return {
      "sampled_closes_80pct_of_kl_gap": gap_closed(scratch),
      "sampled_closes_80pct_of_kl_gap_with_init": gap_closed(init),
      "kd_beats_hard_by_2sd_without_init": beats(scratch, "hard", kd),
      "kd_beats_init_only_by_2sd": beats(init, "hard", kd),
  }


def format_metric(value, digits=4):
  """'mean ± sd' or '-'."""
  if value is None:
    return "-"
  return "%.*f ± %.*f" % (digits, value[0], digits, value[1])


def format_table(results):
  """The results as a markdown table plus the targets, as text."""
  lines = ["| start | student | labels | label bytes/record | held-out "
           "masked-LM acc. | teacher top-1 agreement | teacher_kl | seeds |",
           "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
  teacher = results.get("teacher")
  if teacher:
    lines.append("| - | teacher | - | - | %.4f | %.4f | %.4f | - |" % (
        teacher["masked_lm_accuracy"], teacher["teacher_top1_agreement"],
        teacher["teacher_kl"]))
  for start in ("scratch", "init"):
    for student, row in results["summary"].get(start, {}).items():
      labels = STUDENTS[student][0]
      label_bytes = results["label_bytes_per_record"].get(labels)
      lines.append("| %s | %s | %s | %s | %s | %s | %s | %d |" % (
          start, "init-only (hard)" if (start, student) == ("init", "hard")
          else student, labels,
          "{:,.0f}".format(label_bytes) if label_bytes else "-",
          format_metric(row["masked_lm_accuracy"]),
          format_metric(row["teacher_top1_agreement"]),
          format_metric(row["teacher_kl"]), row["seeds"]))
  lines.append("")
  for name, target in results["targets"].items():
    if target is None:
      lines.append("- %s: not measured" % name)
    elif "fraction" in target:
      lines.append("- %s: %s (truncated %.3f, sampled %.3f, full %.3f: "
                   "%.0f%% of the gap)" % (
                       name, "MET" if target["met"] else "NOT MET",
                       target["truncated"], target["sampled"],
                       target["full"], 100 * target["fraction"]))
    else:
      lines.append("- %s: %s (%s %+.4f over %s, 2 sd = %.4f)" % (
          name, "MET" if target["met"] else "NOT MET", target["best"],
          target["difference"], target["baseline"], 2 * target["sd"]))
  return "\n".join(lines)


def write_results(path, results):
  """Writes the results JSON through a temporary file."""
  temporary_files.write_atomically(
      path, lambda writer: json.dump(results, writer, indent=2))


class Bench(object):
  """The experiment's files and settings; one method per step."""

  def __init__(self, settings, work_dir, demo_dir, steps):
    self.settings = settings
    self.steps = steps
    self.work_dir = work_dir
    self.demo_dir = demo_dir
    self.teacher_config = os.path.join(demo_dir, "teacher_config.json")
    self.student_config = os.path.join(demo_dir, "student_config.json")
    self.teacher_checkpoint = tf.train.latest_checkpoint(
        os.path.join(demo_dir, "teacher"))
    if not self.teacher_checkpoint:
      raise command_line.InputError(
          "--demo_dir %s holds no teacher checkpoint in teacher/" % demo_dir)
    self.label_bytes = {}

  def path(self, *parts):
    return os.path.join(self.work_dir, *parts)

  def label(self, input_file, output_file, truncation_factor, extra=()):
    """Labels input_file with the teacher; returns the wall time."""
    return run_logged(run_demo.label_command(
        self.settings, self.teacher_config, self.teacher_checkpoint,
        input_file, output_file, truncation_factor, extra),
                      output_file + ".log")

  def prepare_records(self, train_records, eval_records):
    """Copies the record subsets and labels them; returns the counts."""
    os.makedirs(self.path("labels"))
    records = os.path.join(self.demo_dir, "records")
    counts = {}
    for name, count in (("train", train_records), ("heldout", eval_records)):
      counts[name] = run_demo.copy_first_records(
          os.path.join(records, name + "_*.tfrecord"), count,
          self.path("labels", name + "_plain.tfrecord"))
    k = FLAGS.top_k
    self.label(self.path("labels", "heldout_plain.tfrecord"),
               self.path("labels", "heldout_full.tfrecord"), 0)
    for labels, truncation_factor in (("top_k", k), ("full", 0)):
      self.label(self.path("labels", "train_plain.tfrecord"),
                 self.path("labels", "train_%s.tfrecord" % labels),
                 truncation_factor)
      self.label_bytes[labels] = label_bytes_per_record(
          self.path("labels", "train_%s.tfrecord" % labels),
          self.path("labels", "train_plain.tfrecord"), counts["train"])
    return counts

  def sampled_labels(self, seed):
    """Draws this seed's sampled labels (once per seed); returns the file."""
    path = self.path("labels", "train_sampled_seed%d.tfrecord" % seed)
    if not os.path.exists(path):
      self.label(self.path("labels", "train_plain.tfrecord"), path,
                 FLAGS.top_k, ["--label_sampling", "True",
                               "--random_seed", 1000 + seed])
      self.label_bytes["sampled"] = label_bytes_per_record(
          path, self.path("labels", "train_plain.tfrecord"),
          sum(1 for _ in tf.compat.v1.io.tf_record_iterator(path)))
    return path

  def evaluate_teacher(self):
    """The teacher's own held-out figures (teacher_kl ~ 0 checks labels)."""
    output_dir = self.path("teacher_eval")
    run_logged([sys.executable, TRAINER,
                "--bert_config_file", self.teacher_config,
                "--input_file", self.path("labels", "heldout_full.tfrecord"),
                "--eval_input_file",
                self.path("labels", "heldout_full.tfrecord"),
                "--init_checkpoint", self.teacher_checkpoint,
                "--output_dir", output_dir, "--do_train", "False",
                "--do_eval", "True", "--truncation_factor", 0,
                "--max_seq_length", self.settings["max_seq_length"],
                "--max_predictions_per_seq",
                self.settings["max_predictions_per_seq"],
                "--eval_batch_size", 32,
                "--max_eval_steps", self.settings["max_eval_steps"],
                "--soft_label_weight", 0, "--hard_label_weight", 1],
               output_dir + ".log")
    return run_demo.read_eval_results(
        os.path.join(output_dir, "eval_results.txt"))

  def train_student(self, start, student, seed):
    """Trains and evaluates one student; returns its result dict."""
    labels, extra = STUDENTS[student]
    if labels == "sampled":
      train_file = self.sampled_labels(seed)
    else:
      train_file = self.path("labels", "train_%s.tfrecord" % labels)
    flags_used = ["--truncation_factor", 0 if labels == "full" else
                  FLAGS.top_k, "--nsp_loss", "hard", "--temperature", 1,
                  "--random_seed", seed]
    if student != "hard":
      flags_used += ["--soft_label_weight", FLAGS.soft_label_weight,
                     "--hard_label_weight", FLAGS.hard_label_weight]
    flags_used += extra
    if start == "init":
      flags_used += ["--init_checkpoint", self.teacher_checkpoint,
                     "--init_layer_map", self.settings["init_layer_map"]]
    os.makedirs(self.path("students"), exist_ok=True)
    output_dir = self.path("students", "%s_%s_seed%d" % (start, student,
                                                         seed))
    seconds = run_logged(run_demo.trainer_command(
        TRAINER, self.settings, self.student_config, train_file,
        self.path("labels", "heldout_full.tfrecord"), output_dir,
        self.steps, FLAGS.learning_rate, FLAGS.batch, flags_used),
                         output_dir + ".log")
    results = run_demo.read_eval_results(
        os.path.join(output_dir, "eval_results.txt"))
    # Checkpoints are not needed afterwards; the disk is.
    shutil.rmtree(output_dir)
    run = {"start": start, "student": student, "seed": seed,
           "seconds": round(seconds, 1)}
    run.update({metric: results.get(metric) for metric in METRICS})
    return run


def main(_):
  settings = run_demo.SETTINGS["tiny" if FLAGS.quick else "full"]
  seeds = 2 if FLAGS.quick else FLAGS.seeds
  steps = settings["student_steps"] if FLAGS.quick else FLAGS.steps
  train_records = 64 if FLAGS.quick else FLAGS.train_records
  # Evaluation reads max_eval_steps batches of 32: label just those.
  eval_records = settings["max_eval_steps"] * 32
  kinds = [kind for kind in FLAGS.kinds.split(",") if kind]
  starts = [start for start in FLAGS.starts.split(",") if start]
  for kind in kinds:
    if kind not in STUDENTS:
      raise command_line.InputError("--kinds: unknown student %r (choose "
                                    "from %s)" % (kind, ", ".join(STUDENTS)))
  for start in starts:
    if start not in ("scratch", "init"):
      raise command_line.InputError("--starts: unknown start %r" % start)

  work_dir = os.path.abspath(FLAGS.work_dir)
  if os.path.exists(work_dir):
    shutil.rmtree(work_dir)
  os.makedirs(work_dir)
  output_json = FLAGS.output_json or os.path.join(work_dir,
                                                  "bench_quality.json")
  began = time.time()
  demo_dir = FLAGS.demo_dir
  if not demo_dir:
    demo_dir = os.path.join(work_dir, "demo")
    os.makedirs(demo_dir)
    run_demo.prepare_teacher(demo_dir, settings, FLAGS.dump,
                             FLAGS.vocab_file, FLAGS.num_workers)
  bench = Bench(settings, work_dir, os.path.abspath(demo_dir), steps)
  counts = bench.prepare_records(train_records, eval_records)
  results = {
      "settings": {
          "quick": FLAGS.quick, "seeds": seeds, "steps": steps,
          "learning_rate": FLAGS.learning_rate, "batch": FLAGS.batch,
          "top_k": FLAGS.top_k, "train_records": counts["train"],
          "heldout_records": counts["heldout"],
          "soft_label_weight": FLAGS.soft_label_weight,
          "hard_label_weight": FLAGS.hard_label_weight,
          "init_layer_map": settings["init_layer_map"],
          "student_shape": settings["student"],
          "teacher_shape": settings["teacher"],
          "teacher_checkpoint": bench.teacher_checkpoint},
      "label_bytes_per_record": bench.label_bytes,
      "teacher": None, "runs": [], "summary": {}, "targets": {},
      "complete": False}
  teacher = bench.evaluate_teacher()
  results["teacher"] = {metric: teacher.get(metric) for metric in METRICS}
  # Seeds outermost: a stopped run still has every student at some seeds.
  for seed in range(seeds):
    for start in starts:
      for student in kinds:
        results["runs"].append(bench.train_student(start, student, seed))
        results["summary"] = summarize(results["runs"])
        results["targets"] = evaluate_targets(results["summary"])
        results["wall_seconds"] = round(time.time() - began, 1)
        write_results(output_json, results)
  results["complete"] = True
  results["wall_seconds"] = round(time.time() - began, 1)
  write_results(output_json, results)
  print("\n" + format_table(results))
  print("\nWall time %.1f min; results in %s" % (
      results["wall_seconds"] / 60, output_json))


if __name__ == "__main__":
  command_line.run(main)
