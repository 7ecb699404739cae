# coding=utf-8
"""Measures what the teacher's labels are worth: a controlled distillation run.

On the demo's sample, vocab and teacher (run_demo.py), the same training
records are labelled three ways -- top-k, sampled (--label_sampling, the same
k and about the same bytes) and the full distribution -- and the held-out
records with the full distribution, so that every student is measured
against the whole teacher (teacher_kl is exact).

The same student is then trained for the same steps with one recipe each:
  stored labels: hard labels only; KD on the top-k with --kd_target
    truncated, renormalized and residual; KD on the sampled labels; KD on
    the full distribution;
  the teacher in the graph (--teacher_checkpoint, plain records): the soft
    loss on its exact distribution ("online", which must agree with "full"
    within noise), and that plus one layer-wise loss each: hidden states
    (cosine, MSE), attention, MiniLMv2 relations; "best" adds every
    layer-wise term whose recipe beat "online" at that start (the better
    of the two hidden losses), after those ran.
Students start from random weights (the labels have to carry the knowledge),
from teacher layers (--init_layer_map; "hard" is then the init-only
student), or cut out of the teacher by prune_checkpoint.py (--starts pruned,
for a student narrower than its teacher: --student_config_file
<demo_dir>/narrow_student_config.json). Each run is repeated for --seeds seeds (the student's
initialisation, dropout and data order, and a fresh draw of the sampled
labels). The runs of seed 0 also evaluate every --curve_every steps, which
gives the steps each recipe needs to reach the hard-label student's final
accuracy.

--measure timing trains each recipe once more for --timing_steps steps
without evaluation and records its seconds per training step: run it on an
idle machine (alone, it adds the timing to an earlier --output_json). The
quality runs (--measure quality) may share the machine.

Prints a table of mean +- sd over seeds (held-out masked-LM accuracy,
teacher top-1 agreement, teacher_kl), the label bytes per record, seconds
per step, the wall-clock training time to reach the hard-label student's
final accuracy and the issues' targets, and writes it all to --output_json
(rewritten after every run, so a stopped run keeps what it measured).

  .venv/bin/python bench/bench_quality.py --demo_dir demo_output  # ~60 min
  .venv/bin/python bench/bench_quality.py --recipes stored        # issue 11's
  .venv/bin/python bench/bench_quality.py --quick                 # smoke test
  .venv/bin/python bench/bench_quality.py --demo_dir demo_output \
      --student_config_file demo_output/narrow_student_config.json \
      --starts scratch,pruned       # a student of half the teacher's width

--demo_dir reuses a finished `make demo` (its records and teacher); without
it the demo's data and teacher stages run first under --work_dir.
"""

import json
import os
import shutil
import sys
import time

from absl import flags
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bert_distillation import command_line  # pylint: disable=g-import-not-at-top
import modeling  # pylint: disable=g-import-not-at-top
from bench_common import mean_sd  # pylint: disable=g-import-not-at-top
from bench_common import run_logged  # pylint: disable=g-import-not-at-top
import run_demo  # pylint: disable=g-import-not-at-top
from bert_distillation import temporary_files  # pylint: disable=g-import-not-at-top

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
flags.DEFINE_list(
    "recipes", [],
    "Comma list of the recipes to train at every start, or the groups "
    "'stored' (the six stored-label students) and 'layer' (the six with the "
    "teacher in the graph). Default: from a random start hard, residual, "
    "full and the layer group; from teacher layers hard, full, online and "
    "best.")
flags.DEFINE_alias("kinds", "recipes")
flags.DEFINE_string("starts", "scratch,init",
                    "Comma list: 'scratch' (random start), 'init' "
                    "(--init_layer_map from the teacher: the student as "
                    "wide as the teacher), 'pruned' (cut out of the "
                    "teacher by prune_checkpoint.py, importance measured "
                    "on the training records: any narrower student).")
flags.DEFINE_string("student_config_file", None,
                    "The student's bert_config.json (default: the demo's "
                    "student_config.json, as wide as its teacher; "
                    "<demo_dir>/narrow_student_config.json is a student "
                    "of half the teacher's width).")
flags.DEFINE_float("layer_loss_weight", 1.0,
                   "Weight of the layer-wise loss in each layer recipe.")
flags.DEFINE_list("measure", ["quality", "timing"],
                  "'quality' (the seeds x starts x recipes runs) and/or "
                  "'timing' (seconds per step, one run per recipe: run it "
                  "on an idle machine). Timing alone adds to the results "
                  "already in --output_json.")
flags.DEFINE_integer("timing_steps", 100,
                     "Training steps of each timing run (--quick: 6).")
flags.DEFINE_integer("curve_every", 75,
                     "Seed 0 evaluates every this many steps (the curve "
                     "that gives the time to reach the hard-label "
                     "student's accuracy); 0 = off. --quick: 2.")

FLAGS = flags.FLAGS

TRAINER = "network_distillation_single_machine_truncated.py"
METRICS = ("masked_lm_accuracy", "teacher_top1_agreement", "teacher_kl")
# The layer-wise terms; their weight is --layer_loss_weight.
LAYER_TERMS = {
    "hidden_cosine": ["--hidden_loss_weight", None, "--hidden_loss",
                      "cosine"],
    "hidden_mse": ["--hidden_loss_weight", None, "--hidden_loss", "mse"],
    "attention": ["--attention_loss_weight", None],
    "relation": ["--relation_loss_weight", None],
}
# Which training labels each student reads ("online": plain records, the
# teacher in the graph), and its trainer flags ("best" gets its terms when
# the others have run).
STUDENTS = {
    "hard": ("top_k", ["--soft_label_weight", 0, "--hard_label_weight", 1]),
    "truncated": ("top_k", ["--kd_target", "truncated"]),
    "renormalized": ("top_k", ["--kd_target", "renormalized"]),
    "residual": ("top_k", ["--kd_target", "residual"]),
    "sampled": ("sampled", ["--kd_target", "sampled"]),
    "full": ("full", []),
    "online": ("online", []),
}
STUDENTS.update((term, ("online", flags_)) for term, flags_ in
                LAYER_TERMS.items())
# Hidden MSE and relations together, at --layer_loss_weight each.
STUDENTS["mse_relation"] = ("online", LAYER_TERMS["hidden_mse"] +
                            LAYER_TERMS["relation"])
STUDENTS["best"] = ("online", [])
TOP_K_KINDS = ("truncated", "renormalized", "residual")
STORED_KD = TOP_K_KINDS + ("sampled", "full")
RECIPE_GROUPS = {
    "stored": ("hard",) + STORED_KD,
    "layer": ("online",) + tuple(LAYER_TERMS) + ("best",),
}
DEFAULT_RECIPES = {
    "scratch": ("hard", "residual", "full") + RECIPE_GROUPS["layer"],
    "init": ("hard", "full", "online", "best"),
    "pruned": ("hard", "full", "online", "best"),
}
STARTS = ("scratch", "init", "pruned")
# Names in the table.
RECIPE_TITLES = {"online": "online soft", "hidden_cosine": "+ hidden cosine",
                 "hidden_mse": "+ hidden MSE", "attention": "+ attention",
                 "relation": "+ relations",
                 "mse_relation": "+ hidden MSE + relations"}


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
      per_step = [run["seconds_per_step"] for run in student_runs
                  if run.get("seconds_per_step")]
      row["seconds_per_step"] = mean_sd(per_step)[0] if per_step else None
      curves = [run["curve"] for run in student_runs if run.get("curve")]
      row["curve"] = curves[0] if curves else None
      students[student] = row
  return summary


def best_of(summary_rows, candidates):
  """The candidate with the highest mean accuracy, or None if none ran."""
  present = [name for name in candidates if name in summary_rows]
  if not present:
    return None
  return max(present,
             key=lambda name: summary_rows[name]["masked_lm_accuracy"][0])


def beats(summary_rows, baseline, candidates):
  """Whether the best candidate beats the baseline by > 2 sd in accuracy.

  baseline is a student, or a tuple of students of which the best is the
  baseline. sd is the larger of the two students' seed sds. Returns a dict,
  or None when a needed student is missing.
  """
  if isinstance(baseline, tuple):
    baseline = best_of(summary_rows, baseline)
  best = best_of(summary_rows, candidates)
  if baseline not in summary_rows or best is None:
    return None
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


def agrees(summary_rows, first, second):
  """Whether two students agree within 2 sd in accuracy and teacher_kl.

  The cross-check of the online soft loss against stored full-distribution
  KD. Returns a dict, or None when one is missing.
  """
  if first not in summary_rows or second not in summary_rows:
    return None
  result = {"first": first, "second": second, "met": True}
  for metric in ("masked_lm_accuracy", "teacher_kl"):
    (first_mean, first_sd), (second_mean, second_sd) = (
        summary_rows[first][metric], summary_rows[second][metric])
    result[metric] = {"difference": first_mean - second_mean,
                      "sd": max(first_sd, second_sd)}
    result["met"] = result["met"] and bool(
        abs(first_mean - second_mean) <= 2 * max(first_sd, second_sd))
  return result


def evaluate_targets(summary):
  """The issues' targets, measured (None when a student is missing)."""
  kd = list(STORED_KD)
  layer = list(LAYER_TERMS) + ["mse_relation", "best"]
  scratch = summary.get("scratch", {})
  init = summary.get("init", {})
  pruned = summary.get("pruned", {})
  return {
      "sampled_closes_80pct_of_kl_gap": gap_closed(scratch),
      "sampled_closes_80pct_of_kl_gap_with_init": gap_closed(init),
      "kd_beats_hard_by_2sd_without_init": beats(scratch, "hard", kd),
      "kd_beats_init_only_by_2sd": beats(init, "hard", kd),
      "online_agrees_with_full_kd": agrees(scratch, "online", "full"),
      "online_agrees_with_full_kd_with_init": agrees(init, "online", "full"),
      "layer_beats_hard_by_2sd_without_init": beats(scratch, "hard", layer),
      "layer_beats_best_stored_kd_by_2sd_without_init": beats(
          scratch, tuple(kd), layer),
      "layer_beats_full_kd_by_2sd_with_init": beats(init, "full", layer),
      "layer_beats_best_stored_kd_by_2sd_pruned": beats(
          pruned, tuple(kd), layer),
  }


def best_terms(summary, start):
  """The layer-wise terms of the "best" recipe at `start`.

  Each term whose single recipe beat "online" in mean accuracy at that
  start (of the two hidden losses, the better); without those runs at this
  start, the choice made from a random start. [] when none helped.
  """
  rows = summary.get(start, {})
  if "online" not in rows or not any(term in rows for term in LAYER_TERMS):
    if start != "scratch" and "scratch" in summary:
      return best_terms(summary, "scratch")
    return []
  online = rows["online"]["masked_lm_accuracy"][0]
  better = [term for term in LAYER_TERMS if term in rows and
            rows[term]["masked_lm_accuracy"][0] > online]
  hidden = [term for term in better if term.startswith("hidden_")]
  if len(hidden) == 2:
    better.remove(min(hidden, key=lambda term:
                      rows[term]["masked_lm_accuracy"][0]))
  return better


def recipe_flags(recipe, terms=(), weight=1.0):
  """The trainer flags of a recipe; "best" is given its terms."""
  extra = list(STUDENTS[recipe][1])
  for term in terms if recipe == "best" else ():
    extra += LAYER_TERMS[term]
  return [weight if part is None else part for part in extra]


def steps_to_reach(curve, accuracy):
  """Steps (linearly interpolated) at which a curve reaches `accuracy`.

  curve is [[step, accuracy], ...] in order. Returns (steps, exact): exact
  is False when the first point already reaches it (an upper bound). None
  when the curve never does.
  """
  previous = None
  for step, value in curve:
    if value >= accuracy:
      if previous is None:
        return step, False
      (last_step, last_value) = previous
      return (last_step + (step - last_step) * (accuracy - last_value) /
              (value - last_value)), True
    previous = (step, value)
  return None


def costs(results):
  """{start: {recipe: seconds/step, its ratio to stored KD, time to hard}}.

  Seconds per step come from the timing runs when there are any (an idle
  machine), else from the quality runs themselves. The time to reach the
  hard-label student's final accuracy is the steps at which a recipe's
  seed-0 curve reaches the final accuracy of hard's seed-0 run (the same
  seed: a paired comparison; hard's mean without its curve), times seconds
  per step. The ratio is to "full" (else the first stored KD recipe that
  ran).
  """
  table = {}
  timing = results.get("timing", {})
  for start, rows in results["summary"].items():
    hard = rows.get("hard")
    per_start = {}
    for recipe, row in rows.items():
      per_step = timing.get(timing_key(start, recipe, results)) or row.get(
          "seconds_per_step")
      entry = {"seconds_per_step": per_step,
               "timed": timing_key(start, recipe, results) in timing}
      if hard and row.get("curve") and per_step:
        target = (hard["curve"][-1][1] if hard.get("curve") else
                  hard["masked_lm_accuracy"][0])
        reached = steps_to_reach(row["curve"], target)
        if reached:
          entry["steps_to_hard"] = reached[0]
          entry["exact"] = reached[1]
          entry["seconds_to_hard"] = reached[0] * per_step
      per_start[recipe] = entry
    reference = next((name for name in ("full",) + STORED_KD
                      if per_start.get(name, {}).get("seconds_per_step")),
                     None)
    for recipe, entry in per_start.items():
      if reference and entry["seconds_per_step"]:
        entry["vs_stored_kd"] = (entry["seconds_per_step"] /
                                 per_start[reference]["seconds_per_step"])
        entry["stored_kd"] = reference
    table[start] = per_start
  return table


def timing_key(start, recipe, results):
  """The timing entry of a recipe: its cost does not depend on the start,
  except "best", whose terms may."""
  if recipe != "best":
    return recipe
  return "best:" + "+".join(results.get("best_terms", {}).get(start, []))


def format_metric(value, digits=4):
  """'mean ± sd' or '-'."""
  if value is None:
    return "-"
  return "%.*f ± %.*f" % (digits, value[0], digits, value[1])


def format_cost(entry):
  """'seconds/step (x stored KD)' or '-'."""
  if not entry or not entry.get("seconds_per_step"):
    return "-"
  text = "%.3f" % entry["seconds_per_step"]
  if "vs_stored_kd" in entry:
    text += " (%.2f×)" % entry["vs_stored_kd"]
  return text + ("" if entry["timed"] else " busy")


def format_time_to_hard(entry):
  """'steps / seconds' to reach the hard student's accuracy, or '-'."""
  if not entry or "steps_to_hard" not in entry:
    return "not reached" if entry and entry.get("seconds_per_step") else "-"
  bound = "" if entry["exact"] else "≤ "
  return "%s%.0f / %s%.0f s" % (bound, entry["steps_to_hard"], bound,
                                entry["seconds_to_hard"])


def recipe_title(start, student, results):
  """The table's name of a recipe."""
  if (start, student) == ("init", "hard"):
    return "init-only (hard)"
  if student == "best":
    terms = results.get("best_terms", {}).get(start, [])
    return "best: online + %s" % (" + ".join(terms) or "nothing")
  return RECIPE_TITLES.get(student, student)


def format_table(results):
  """The results as a markdown table plus the targets, as text."""
  lines = ["| start | student | labels | label bytes/record | held-out "
           "masked-LM acc. | teacher top-1 agreement | teacher_kl | "
           "s/step (× stored KD) | steps / s to hard's acc. | seeds |",
           "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | "
           "---: |"]
  teacher = results.get("teacher")
  if teacher:
    lines.append("| - | teacher | - | - | %.4f | %.4f | %.4f | - | - | - |"
                 % (teacher["masked_lm_accuracy"],
                    teacher["teacher_top1_agreement"],
                    teacher["teacher_kl"]))
  cost_table = costs(results)
  for start in STARTS:
    for student, row in results["summary"].get(start, {}).items():
      labels = STUDENTS[student][0]
      label_bytes = results["label_bytes_per_record"].get(labels)
      entry = cost_table.get(start, {}).get(student)
      lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
          start, recipe_title(start, student, results),
          "teacher in graph" if labels == "online" else labels,
          "{:,.0f}".format(label_bytes) if label_bytes else "-",
          format_metric(row["masked_lm_accuracy"]),
          format_metric(row["teacher_top1_agreement"]),
          format_metric(row["teacher_kl"]), format_cost(entry),
          format_time_to_hard(entry), row["seeds"]))
  lines.append("")
  lines.append("s/step: from the timing runs (--measure timing), or "
               "'busy' from the quality runs; steps / s to hard's acc.: on "
               "the seed-0 curve, to the final accuracy of hard's seed-0 run "
               "at that start.")
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
    elif "first" in target:
      lines.append("- %s: %s (%s - %s: accuracy %+.4f, 2 sd = %.4f; "
                   "teacher_kl %+.4f, 2 sd = %.4f)" % (
                       name, "MET" if target["met"] else "NOT MET",
                       target["first"], target["second"],
                       target["masked_lm_accuracy"]["difference"],
                       2 * target["masked_lm_accuracy"]["sd"],
                       target["teacher_kl"]["difference"],
                       2 * target["teacher_kl"]["sd"]))
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

  def __init__(self, settings, work_dir, demo_dir, steps,
               student_config=None):
    self.settings = settings
    self.steps = steps
    self.work_dir = work_dir
    self.demo_dir = demo_dir
    self.teacher_config = os.path.join(demo_dir, "teacher_config.json")
    self.student_config = student_config or os.path.join(
        demo_dir, "student_config.json")
    if not os.path.exists(self.student_config):
      raise command_line.InputError(
          "--student_config_file %s does not exist" % self.student_config)
    self.pruned_checkpoint = None
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

  def shapes(self):
    """(teacher, student) as modeling.BertConfig."""
    return (modeling.BertConfig.from_json_file(self.teacher_config),
            modeling.BertConfig.from_json_file(self.student_config))

  def prune(self):
    """Cuts the student out of the teacher, once; returns its checkpoint.

    Importance is measured on the training records, the data the students
    learn from.
    """
    if not self.pruned_checkpoint:
      output_dir = self.path("pruned_init")
      run_logged([sys.executable, os.path.join(REPO, "prune_checkpoint.py"),
                  "--bert_config_file", self.teacher_config,
                  "--init_checkpoint", self.teacher_checkpoint,
                  "--student_config_file", self.student_config,
                  "--output_dir", output_dir,
                  "--input_file", self.path("labels", "train_plain.tfrecord"),
                  "--max_seq_length", self.settings["max_seq_length"]],
                 output_dir + ".log")
      self.pruned_checkpoint = os.path.join(output_dir, "bert_model.ckpt")
    return self.pruned_checkpoint

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

  def student_flags(self, start, student, seed, terms):
    """(training file, trainer flags) of one recipe at one start."""
    labels, _ = STUDENTS[student]
    if labels == "sampled":
      train_file = self.sampled_labels(seed)
    elif labels == "online":
      train_file = self.path("labels", "train_plain.tfrecord")
    else:
      train_file = self.path("labels", "train_%s.tfrecord" % labels)
    flags_used = ["--truncation_factor", 0 if labels == "full" else
                  FLAGS.top_k, "--nsp_loss", "hard", "--temperature", 1,
                  "--random_seed", seed]
    if student != "hard":
      flags_used += ["--soft_label_weight", FLAGS.soft_label_weight,
                     "--hard_label_weight", FLAGS.hard_label_weight]
    if labels == "online":
      flags_used += ["--teacher_config_file", self.teacher_config,
                     "--teacher_checkpoint", self.teacher_checkpoint]
    flags_used += recipe_flags(student, terms, FLAGS.layer_loss_weight)
    if start == "init":
      flags_used += ["--init_checkpoint", self.teacher_checkpoint,
                     "--init_layer_map", self.settings["init_layer_map"]]
    elif start == "pruned":
      flags_used += ["--init_checkpoint", self.prune()]
    return train_file, flags_used

  def train_student(self, start, student, seed, terms=(), curve_every=0):
    """Trains and evaluates one student; returns its result dict.

    With curve_every, it also evaluates every curve_every steps; the
    result's "curve" is [[step, held-out accuracy], ...].
    """
    train_file, flags_used = self.student_flags(start, student, seed, terms)
    if curve_every:
      flags_used += ["--eval_every_steps", curve_every]
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
    run = {"start": start, "student": student, "seed": seed,
           "seconds": round(seconds, 1),
           "seconds_per_step": self.seconds_per_step(output_dir)}
    if curve_every:
      with open(os.path.join(output_dir, "eval_history.jsonl")) as history:
        run["curve"] = [[entry["step"], entry["masked_lm_accuracy"]]
                        for entry in map(json.loads, history)]
    if student == "best":
      run["terms"] = list(terms)
    run.update({metric: results.get(metric) for metric in METRICS})
    # Checkpoints are not needed afterwards; the disk is.
    shutil.rmtree(output_dir)
    return run

  def seconds_per_step(self, output_dir):
    """Seconds per training step from a run's train_stats.json."""
    with open(os.path.join(output_dir, "train_stats.json")) as stats_file:
      stats = json.load(stats_file)
    return FLAGS.batch / stats["train_seq_per_s"]

  def time_recipe(self, start, student, terms, steps):
    """Trains one recipe for `steps` without evaluating; seconds/step."""
    train_file, flags_used = self.student_flags(start, student, 0, terms)
    os.makedirs(self.path("timing"), exist_ok=True)
    output_dir = self.path("timing", "%s_%s" % (start, student))
    command = run_demo.trainer_command(
        TRAINER, self.settings, self.student_config, train_file,
        self.path("labels", "heldout_full.tfrecord"), output_dir, steps,
        FLAGS.learning_rate, FLAGS.batch, flags_used)
    command[command.index("--do_eval") + 1] = "False"
    run_logged(command, output_dir + ".log")
    per_step = self.seconds_per_step(output_dir)
    shutil.rmtree(output_dir)
    return per_step


def shape_of(config):
  """The sizes of a BertConfig that tell students apart."""
  return {key: getattr(config, key) for key in (
      "hidden_size", "num_hidden_layers", "num_attention_heads",
      "intermediate_size")}


def recipes_for(start):
  """The recipes to train at `start` (--recipes, or DEFAULT_RECIPES)."""
  if not FLAGS.recipes:
    return list(DEFAULT_RECIPES[start])
  recipes = []
  for name in FLAGS.recipes:
    for recipe in RECIPE_GROUPS.get(name, (name,)):
      if recipe not in STUDENTS:
        raise command_line.InputError(
            "--recipes: unknown recipe %r (choose from %s, or the groups %s)"
            % (recipe, ", ".join(STUDENTS), ", ".join(RECIPE_GROUPS)))
      if recipe not in recipes:
        recipes.append(recipe)
  return recipes


def update(results, output_json, began):
  """Recomputes the summary, best terms and targets; writes the JSON."""
  results["summary"] = summarize(results["runs"])
  results["targets"] = evaluate_targets(results["summary"])
  results["costs"] = costs(results)
  results["wall_seconds"] = round(time.time() - began, 1)
  write_results(output_json, results)


def measure_quality(bench, results, plan, seeds, curve_every, output_json,
                    began):
  """The seeds x starts x recipes runs; "best" after the others."""
  # Seeds outermost: a stopped run still has every student at some seeds.
  for seed in range(seeds):
    for start, recipes in plan:
      for student in recipes:
        if student != "best":
          results["runs"].append(bench.train_student(
              start, student, seed,
              curve_every=curve_every if seed == 0 else 0))
          update(results, output_json, began)
  for start, recipes in plan:
    if "best" not in recipes:
      continue
    terms = best_terms(results["summary"], start)
    results["best_terms"][start] = terms
    if not terms:
      print("best at %s: no layer-wise term beat online; not run" % start)
      continue
    for seed in range(seeds):
      results["runs"].append(bench.train_student(
          start, "best", seed, terms,
          curve_every=curve_every if seed == 0 else 0))
      update(results, output_json, began)


def measure_timing(bench, results, plan, steps, output_json, began):
  """One timing run per distinct recipe (all from a random start)."""
  for start, recipes in plan:
    for student in recipes:
      key = timing_key(start, student, results)
      terms = results["best_terms"].get(start, [])
      if key in results["timing"] or (student == "best" and not terms):
        continue
      results["timing"][key] = bench.time_recipe("scratch", student, terms,
                                                 steps)
      update(results, output_json, began)


def main(_):
  settings = run_demo.SETTINGS["tiny" if FLAGS.quick else "full"]
  seeds = 2 if FLAGS.quick else FLAGS.seeds
  steps = settings["student_steps"] if FLAGS.quick else FLAGS.steps
  timing_steps = settings["student_steps"] if FLAGS.quick else (
      FLAGS.timing_steps)
  curve_every = 2 if FLAGS.quick else FLAGS.curve_every
  train_records = 64 if FLAGS.quick else FLAGS.train_records
  # Evaluation reads max_eval_steps batches of 32: label just those.
  eval_records = settings["max_eval_steps"] * 32
  starts = [start for start in FLAGS.starts.split(",") if start]
  for start in starts:
    if start not in STARTS:
      raise command_line.InputError("--starts: unknown start %r (choose "
                                    "from %s)" % (start, ", ".join(STARTS)))
  plan = [(start, recipes_for(start)) for start in starts]
  measures = set(FLAGS.measure)
  if not measures or measures - {"quality", "timing"}:
    raise command_line.InputError("--measure: choose quality and/or timing, "
                                  "got %s" % ",".join(FLAGS.measure))

  work_dir = os.path.abspath(FLAGS.work_dir)
  output_json = os.path.abspath(FLAGS.output_json or os.path.join(
      work_dir, "bench_quality.json"))
  previous = None
  if "quality" not in measures:
    # Timing alone: add it to the quality results measured before.
    if not os.path.exists(output_json):
      raise command_line.InputError(
          "--measure timing alone adds to an earlier run's --output_json, "
          "but %s does not exist" % output_json)
    with open(output_json) as reader:
      previous = json.load(reader)
  if os.path.exists(work_dir):
    shutil.rmtree(work_dir)
  os.makedirs(work_dir)
  began = time.time()
  demo_dir = FLAGS.demo_dir
  if not demo_dir:
    demo_dir = os.path.join(work_dir, "demo")
    os.makedirs(demo_dir)
    run_demo.prepare_teacher(demo_dir, settings, FLAGS.dump,
                             FLAGS.vocab_file, FLAGS.num_workers)
  bench = Bench(settings, work_dir, os.path.abspath(demo_dir), steps,
                FLAGS.student_config_file and os.path.abspath(
                    FLAGS.student_config_file))
  teacher_shape, student_shape = bench.shapes()
  if ("init" in starts and student_shape.hidden_size !=
      teacher_shape.hidden_size):
    raise command_line.InputError(
        "--starts init copies teacher layers, which needs the student's "
        "hidden_size (%d, --student_config_file) to equal the teacher's "
        "(%d); start a narrower student with --starts pruned" % (
            student_shape.hidden_size, teacher_shape.hidden_size))
  counts = bench.prepare_records(train_records, eval_records)
  results = previous or {
      "settings": {
          "quick": FLAGS.quick, "seeds": seeds, "steps": steps,
          "learning_rate": FLAGS.learning_rate, "batch": FLAGS.batch,
          "top_k": FLAGS.top_k, "train_records": counts["train"],
          "heldout_records": counts["heldout"],
          "soft_label_weight": FLAGS.soft_label_weight,
          "hard_label_weight": FLAGS.hard_label_weight,
          "layer_loss_weight": FLAGS.layer_loss_weight,
          "curve_every": curve_every,
          "recipes": dict(plan),
          "init_layer_map": settings["init_layer_map"],
          "student_shape": shape_of(student_shape),
          "teacher_shape": shape_of(teacher_shape),
          "teacher_checkpoint": bench.teacher_checkpoint},
      "label_bytes_per_record": bench.label_bytes,
      "teacher": None, "runs": [], "summary": {}, "targets": {},
      "best_terms": {}, "timing": {}, "complete": False}
  results.setdefault("best_terms", {})
  results.setdefault("timing", {})
  if "quality" in measures:
    teacher = bench.evaluate_teacher()
    results["teacher"] = {metric: teacher.get(metric) for metric in METRICS}
    measure_quality(bench, results, plan, seeds, curve_every, output_json,
                    began)
  if "timing" in measures:
    results["settings"]["timing_steps"] = timing_steps
    measure_timing(bench, results, plan, timing_steps, output_json, began)
  results["complete"] = True
  update(results, output_json, began)
  print("\n" + format_table(results))
  print("\nWall time %.1f min; results in %s" % (
      results["wall_seconds"] / 60, output_json))


if __name__ == "__main__":
  command_line.run(main)
