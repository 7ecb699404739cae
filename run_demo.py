"""Runs the whole pipeline on the shipped sample dump (`make demo`).

Every stage is called through its own script with command-line flags, as a
user would call it, and each command line is printed before it runs. The
results go under --output_dir (demo_output/ by default), ending with
report.md, report.json and a plot of held-out masked-LM accuracy. The
distilled student is also exported to Hugging Face's layout in student_hf/.

The last stage uses the models on a task: data/make_sample_task.py turns the
held-out articles into a sentence -> kind-of-article task (task/), and
run_classifier.py fine-tunes the teacher and each student on it, then
task-distils the distilled student from the fine-tuned teacher (downstream/).
The fine-tuned teacher and the task-distilled student are then exported as
SavedModels on raw text (serving/) and their batch-1 latency is measured.

--tiny runs the same chain with tiny models and a few steps; the test suite
uses it to prove that the stages fit together.
"""

import json
import os
import shlex
import shutil
import subprocess
import sys
import time

from absl import flags

from bert_distillation import command_line
from bert_distillation import precision
from bert_distillation import serving_latency

REPO = os.path.dirname(os.path.abspath(__file__))

flags.DEFINE_string("output_dir", os.path.join(REPO, "demo_output"),
                    "Where every stage writes its files.")
flags.DEFINE_string("dump", os.path.join(
    REPO, "data", "sample", "enwiki-sample-pages-articles.xml.bz2"),
                    "The Wikipedia XML dump to start from.")
flags.DEFINE_string("vocab_file", os.path.join(REPO, "data", "sample",
                                               "vocab.txt"),
                    "WordPiece vocab learned from the sample "
                    "(see data/make_vocab.py).")
flags.DEFINE_bool("tiny", False,
                  "Tiny models and a few steps: checks the chain, not quality.")
flags.DEFINE_integer("num_workers", 2, "Processes for the data stages.")
flags.DEFINE_enum(
    "precision", "auto", ("auto",) + precision.PRECISIONS,
    "--precision of every model stage. auto: bf16 when the CPU has "
    "AVX512-BF16 or AMX-BF16, else fp32.")

FLAGS = flags.FLAGS

# Sizes for the real demo (about 15 minutes on 2 CPU cores) and --tiny.
# The layer-wise terms of the distilled student (weight 1 each), with the
# teacher in the graph: bench_quality.py's best recipe.
LAYER_RECIPE = ("--hidden_loss_weight", "1.0", "--hidden_loss", "mse",
                "--attention_loss_weight", "1.0",
                "--relation_loss_weight", "1.0")

SETTINGS = {
    "full": dict(
        split_number=5, max_seq_length=64, max_predictions_per_seq=10,
        dupe_factor=2,
        teacher=dict(hidden_size=256, num_hidden_layers=4,
                     num_attention_heads=4, intermediate_size=1024),
        # Half the teacher's depth, so it can start from teacher layers.
        student=dict(hidden_size=256, num_hidden_layers=2,
                     num_attention_heads=4, intermediate_size=1024),
        # 1e-3 left these post-LayerNorm models stuck at the unigram loss.
        teacher_steps=900, teacher_lr=3e-4, teacher_batch=32,
        student_steps=300, student_lr=3e-4, student_batch=32,
        eval_every_steps=75, max_eval_steps=50, horovod_steps=20,
        # The best recipe of bench/bench_quality.py (2026-12-02): layer init,
        # then the teacher in the graph: its full distribution, hidden states
        # (MSE), attention and relations, plus the hard labels. The stored
        # sampled labels still train the other students' records.
        init_layer_map="0,3", label_sampling=True, temperature=1.0,
        kd_target="sampled", soft_label_weight=1.0, hard_label_weight=1.0,
        nsp_loss="soft", layer_losses=LAYER_RECIPE,
        # The task's sentences are 12 word pieces long (median; 99.5% fit in
        # 24). Every model gets the same steps and batch; the task-distilled
        # student's loss weights are bench_downstream.py's.
        downstream=dict(max_seq_length=24, steps=150, batch=32,
                        learning_rate=2e-4, temperature=2.0,
                        soft_label_weight=1.0, hard_label_weight=0.5,
                        random_seed=1),
        # Narrower than the teacher (2 of its 4 heads of 64): cut out of the
        # fine-tuned teacher by prune_checkpoint.py, against a random twin.
        narrow_student=dict(hidden_size=128, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=512),
        calibration_examples=256),
    "tiny": dict(
        split_number=3, max_seq_length=32, max_predictions_per_seq=5,
        dupe_factor=1,
        teacher=dict(hidden_size=32, num_hidden_layers=2,
                     num_attention_heads=2, intermediate_size=64),
        student=dict(hidden_size=32, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=64),
        teacher_steps=6, teacher_lr=1e-3, teacher_batch=8,
        student_steps=6, student_lr=1e-3, student_batch=8,
        eval_every_steps=3, max_eval_steps=2, horovod_steps=2,
        init_layer_map="1", label_sampling=True, temperature=1.0,
        kd_target="sampled", soft_label_weight=1.0, hard_label_weight=1.0,
        nsp_loss="soft", layer_losses=LAYER_RECIPE,
        downstream=dict(max_seq_length=16, steps=4, batch=8,
                        learning_rate=1e-3, temperature=2.0,
                        soft_label_weight=1.0, hard_label_weight=0.5,
                        random_seed=1),
        narrow_student=dict(hidden_size=16, num_hidden_layers=1,
                            num_attention_heads=1, intermediate_size=32),
        calibration_examples=16),
}

STAGE_SECONDS = {}

# The report's rows, teacher first.
MODELS = ("teacher", "distilled_student", "init_only_student",
          "scratch_student")
# The downstream step's rows: each model fine-tuned, then the distilled
# student task-distilled from the fine-tuned teacher.
DOWNSTREAM_MODELS = MODELS + ("task_distilled_student",)
# Both task-distilled from the fine-tuned teacher, of one narrower shape.
NARROW_MODELS = ("pruned_student", "narrow_random_student")
# (a, b) pairs whose test accuracy difference the report weighs against
# the test set's noise.
COMPARISONS = (("distilled_student", "scratch_student"),
               ("task_distilled_student", "distilled_student"),
               ("pruned_student", "narrow_random_student"),
               ("teacher", "pruned_student"))
# z of a two-sided 95% normal interval.
Z_95 = 1.96
# The downstream models exported for serving and timed at batch 1.
SERVED_MODELS = ("teacher", "task_distilled_student")
SERVING_WARMUP = 5


def run_stage(stage, command, env=None):
  """Prints a command line, runs it, and adds its wall time to `stage`.

  Returns the command's wall time in seconds.
  """
  print("\n$ " + " ".join(shlex.quote(str(part)) for part in command),
        flush=True)
  start = time.time()
  subprocess.run([str(part) for part in command], check=True, cwd=REPO,
                 env=env)
  seconds = time.time() - start
  STAGE_SECONDS[stage] = STAGE_SECONDS.get(stage, 0.0) + seconds
  return seconds


def write_bert_config(path, vocab_size, shape, max_seq_length):
  """Writes a bert_config.json with the given shape."""
  config = dict(vocab_size=vocab_size, hidden_act="gelu",
                hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                max_position_embeddings=max(128, max_seq_length),
                type_vocab_size=2, initializer_range=0.02, **shape)
  with open(path, "w") as f:
    json.dump(config, f, indent=2)


def count_lines(path):
  """Counts the lines of a text file."""
  with open(path, encoding="utf-8") as f:
    return sum(1 for _ in f)


def read_eval_results(path):
  """Reads `name = value` lines from an eval_results.txt."""
  results = {}
  with open(path) as f:
    for line in f:
      name, _, value = line.partition("=")
      if value:
        results[name.strip()] = float(value)
  return results


def read_json(path):
  """Reads a JSON file."""
  with open(path) as f:
    return json.load(f)


def read_history(path):
  """Reads eval_history.jsonl into a list of dicts."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def trainer_command(script, settings, config, input_file, eval_file,
                    output_dir, steps, lr, batch, extra):
  """Builds a trainer command line."""
  return [sys.executable, script,
          "--bert_config_file", config,
          "--input_file", input_file,
          "--eval_input_file", eval_file,
          "--output_dir", output_dir,
          "--max_seq_length", settings["max_seq_length"],
          "--max_predictions_per_seq", settings["max_predictions_per_seq"],
          "--do_train", "True", "--do_eval", "True",
          "--train_batch_size", batch, "--eval_batch_size", 32,
          "--learning_rate", lr,
          "--num_train_steps", steps,
          "--num_warmup_steps", max(1, steps // 10),
          "--save_checkpoints_steps", steps,
          "--max_eval_steps", settings["max_eval_steps"],
          "--iterations_per_loop", max(1, steps // 10)] + extra


def copy_first_records(patterns, count, path):
  """Writes the first `count` records of the files matching `patterns`;
  returns how many there were."""
  import tensorflow as tf  # Only here: the demo itself runs scripts.
  from bert_distillation import record_format
  written = 0
  with tf.io.TFRecordWriter(path) as writer:
    for name in record_format.expand_input_files(patterns):
      for raw in tf.compat.v1.io.tf_record_iterator(name):
        if written == count:
          return written
        writer.write(raw)
        written += 1
  return written


def plot_history(path, histories):
  """Plots held-out masked-LM accuracy against step for each student."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  figure, axes = plt.subplots(figsize=(7, 4.5))
  for label, history in histories.items():
    steps = [row["step"] for row in history]
    accuracy = [row["masked_lm_accuracy"] for row in history]
    axes.plot(steps, accuracy, marker="o", label=label)
  axes.set_xlabel("training step")
  axes.set_ylabel("held-out masked-LM accuracy")
  axes.set_title("Students of one shape, same steps")
  axes.grid(True, alpha=0.3)
  axes.legend()
  figure.tight_layout()
  figure.savefig(path, dpi=110)
  plt.close(figure)


def model_summary(model_dir):
  """Collects the report's figures for one trained model."""
  stats = read_json(os.path.join(model_dir, "train_stats.json"))
  results = read_eval_results(os.path.join(model_dir, "eval_results.txt"))
  return {
      "params": stats["params"],
      "masked_lm_accuracy": results.get("masked_lm_accuracy"),
      "teacher_top1_agreement": results.get("teacher_top1_agreement"),
      "teacher_kl": results.get("teacher_kl"),
      "next_sentence_accuracy": results.get("next_sentence_accuracy"),
      "train_seq_per_s": stats["train_seq_per_s"],
      "train_steps": stats["steps"],
  }


def demo_precision():
  """--precision, with auto resolved for this CPU."""
  if FLAGS.precision != "auto":
    return FLAGS.precision
  slow = precision.hardware_warning("bf16", precision.cpu_flags(), [])
  return "fp32" if slow else "bf16"


def distillation_recipe(settings):
  """The distilled student's recipe, in words, for the report."""
  start = "teacher layers %s" % settings["init_layer_map"]
  if settings["layer_losses"]:
    return ("%s, then the teacher in the graph: its full masked-LM "
            "distribution at T = %g, hidden states (MSE), attention and "
            "relations, plus the hard labels (bench_quality.py's best "
            "recipe)" % (start, settings["temperature"]))
  return "%s, then stored %s labels at T = %g plus the hard labels" % (
      start, settings["kd_target"], settings["temperature"])


def write_report(out, settings, models, flags_used, precision_name,
                 downstream_task, downstream):
  """Writes report.json and report.md."""
  report = dict(models)
  report["downstream"] = downstream
  report["downstream_task"] = downstream_task
  report["precision"] = precision_name
  report["stages"] = {name: round(seconds, 1)
                      for name, seconds in STAGE_SECONDS.items()}
  report["settings"] = {
      key: value for key, value in settings.items()
      if key not in ("teacher", "student")}
  report["settings"]["teacher_shape"] = settings["teacher"]
  report["settings"]["student_shape"] = settings["student"]
  report["distillation_flags"] = flags_used
  report["distillation_recipe"] = distillation_recipe(settings)
  with open(os.path.join(out, "report.json"), "w") as f:
    json.dump(report, f, indent=2)

  lines = ["# Distillation demo report", "",
           "Held-out metrics are measured on the split kept back from "
           "training. Every model stage ran with `--precision %s`." %
           precision_name, "",
           "| model | params | masked-LM acc. | teacher top-1 agreement | "
           "teacher_kl | next-sentence acc. | train seq/s | steps |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for name in MODELS:
    row = models[name]
    lines.append("| %s | %s | %.4f | %.4f | %.4f | %.4f | %.1f | %d |" % (
        name, "{:,}".format(row["params"]), row["masked_lm_accuracy"],
        row["teacher_top1_agreement"] or 0.0, row["teacher_kl"] or 0.0,
        row["next_sentence_accuracy"], row["train_seq_per_s"],
        row["train_steps"]))
  distilled = models["distilled_student"]["masked_lm_accuracy"]
  lines += ["", "Held-out masked-LM accuracy, distilled minus scratch: "
            "%+.4f; distilled minus init-only (same layer init, hard labels "
            "only): %+.4f." % (
                distilled - models["scratch_student"]["masked_lm_accuracy"],
                distilled - models["init_only_student"][
                    "masked_lm_accuracy"]), "",
            "Distillation recipe: %s." % report["distillation_recipe"],
            "", "Distillation flags: `%s`" % " ".join(flags_used), ""]
  lines += downstream_markdown(settings, downstream_task, downstream)
  lines += ["## Stage wall times", "", "| stage | seconds |", "| --- | ---: |"]
  for name, seconds in STAGE_SECONDS.items():
    lines.append("| %s | %.1f |" % (name, seconds))
  lines += ["", "![held-out masked-LM accuracy](mlm_accuracy.png)", ""]
  with open(os.path.join(out, "report.md"), "w") as f:
    f.write("\n".join(lines))
  return report


def label_command(settings, teacher_config, teacher_checkpoint, input_file,
                  output_file, truncation_factor, extra=()):
  """Builds a produce_teacher_labels.py command line."""
  return [sys.executable, "produce_teacher_labels.py",
          "--bert_config_file", teacher_config,
          "--input_file", input_file,
          "--output_file", output_file,
          "--truncation_factor", truncation_factor,
          "--init_checkpoint", teacher_checkpoint,
          "--max_seq_length", settings["max_seq_length"],
          "--max_predictions_per_seq", settings["max_predictions_per_seq"]
         ] + list(extra)


def prepare_teacher(out, settings, dump, vocab_file, num_workers,
                    precision_flags=()):
  """Stages I-IV: records from the dump, and a teacher pre-trained on them.

  Writes under `out`: records/train_*.tfrecord, records/heldout_*.tfrecord
  (from the last text split, kept back), teacher_config.json,
  student_config.json and the teacher's checkpoints in teacher/. Returns the
  teacher checkpoint's path. bench/bench_quality.py uses it too.
  """
  py = sys.executable
  path = lambda *parts: os.path.join(out, *parts)
  vocab_size = count_lines(vocab_file)

  # I. Extract Wikipedia.
  run_stage("extract", ["bash", "extract_wikipedia_for_bert/run_wikiextractor.sh",
                        dump, path("extracted")])
  run_stage("extract", [py, "extract_wikipedia_for_bert/extract_jsons.py",
                        "--folder", path("extracted"),
                        "--write_file", path("wiki.txt"),
                        "--num_workers", num_workers])

  # II. Split, keeping the last piece back as held-out data.
  run_stage("split", [py, "split_text.py", "--read_file", path("wiki.txt"),
                      "--split_number", settings["split_number"],
                      "--folder", path("text"), "--name_base", "wiki"])
  pieces = sorted(os.listdir(path("text")))
  os.makedirs(path("heldout_text"))
  shutil.move(path("text", pieces[-1]), path("heldout_text", pieces[-1]))

  # III. Pretraining records.
  for name, text_dir in (("train", "text"), ("heldout", "heldout_text")):
    run_stage("create_pretraining_data", [
        py, "create_pretraining_data.py", "--input_dir", path(text_dir),
        "--output_dir", path("records"), "--output_base_name", name,
        "--vocab_file", vocab_file, "--do_lower_case", "True",
        "--max_seq_length", settings["max_seq_length"],
        "--max_predictions_per_seq", settings["max_predictions_per_seq"],
        "--dupe_factor", settings["dupe_factor"],
        "--num_workers", num_workers])

  # IV. Teacher: pre-trained here from scratch with hard labels only.
  teacher_config = path("teacher_config.json")
  student_config = path("student_config.json")
  write_bert_config(teacher_config, vocab_size, settings["teacher"],
                    settings["max_seq_length"])
  write_bert_config(student_config, vocab_size, settings["student"],
                    settings["max_seq_length"])
  run_stage("teacher_pretraining", trainer_command(
      "network_distillation_single_machine_truncated.py", settings,
      teacher_config, path("records", "train_*.tfrecord"),
      path("records", "heldout_*.tfrecord"), path("teacher"),
      settings["teacher_steps"], settings["teacher_lr"],
      settings["teacher_batch"],
      ["--soft_label_weight", 0, "--hard_label_weight", 1,
       "--nsp_loss", "hard"] + list(precision_flags)))
  return path("teacher", "model.ckpt-%d" % settings["teacher_steps"])


def classifier_command(settings, data_dir, vocab_file, config,
                       init_checkpoint, output_dir, extra=()):
  """Builds a run_classifier.py command line for the demo's task.

  init_checkpoint None: the model starts from random weights.
  """
  task = settings["downstream"]
  init = ["--init_checkpoint", init_checkpoint] if init_checkpoint else []
  return [sys.executable, "run_classifier.py", "--task_name", "tsv",
          "--data_dir", data_dir, "--vocab_file", vocab_file,
          "--do_lower_case", "True", "--bert_config_file", config] + init + [
          "--max_seq_length", task["max_seq_length"],
          "--do_train", "True", "--do_eval", "True", "--do_predict", "True",
          "--train_batch_size", task["batch"], "--eval_batch_size", 64,
          "--predict_batch_size", 64,
          "--learning_rate", task["learning_rate"],
          "--num_train_steps", task["steps"], "--warmup_proportion", 0.1,
          "--save_checkpoints_steps", task["steps"],
          "--iterations_per_loop", max(1, task["steps"] // 4),
          "--random_seed", task["random_seed"],
          "--output_dir", output_dir] + list(extra)


def run_downstream(out, settings, dump, vocab_file, teacher_checkpoint,
                   precision_flags):
  """Stage VIII: builds the task, fine-tunes every model, task-distils.

  Returns {model: (what it started from, wall seconds of its run)}.
  """
  path = lambda *parts: os.path.join(out, *parts)
  task = settings["downstream"]
  run_stage("downstream_task", [
      sys.executable, "data/make_sample_task.py", "--dump", dump,
      "--extracted_folder", path("extracted"),
      "--text_dir", path("heldout_text"), "--output_dir", path("task")])
  teacher_config = path("teacher_config.json")
  student_config = path("student_config.json")
  # (config, init checkpoint, extra flags) of each model.
  runs = {
      "teacher": (teacher_config, teacher_checkpoint, []),
      "distilled_student": (student_config, path("distilled_student"), []),
      "init_only_student": (student_config, path("init_only_student"), []),
      "scratch_student": (student_config, path("scratch_student"), []),
      # Runs after the teacher's fine-tuning, which it learns from.
      "task_distilled_student": (student_config, path("distilled_student"), [
          "--teacher_config_file", teacher_config,
          "--teacher_checkpoint", path("downstream", "teacher"),
          "--temperature", task["temperature"],
          "--soft_label_weight", task["soft_label_weight"],
          "--hard_label_weight", task["hard_label_weight"]]),
  }
  runs.update(narrow_runs(out, settings, vocab_file, runs[
      "task_distilled_student"][2]))
  done = {}

  def train(name):
    config, init_checkpoint, extra = runs[name]
    seconds = run_stage("downstream", classifier_command(
        settings, path("task"), vocab_file, config, init_checkpoint,
        path("downstream", name), extra + precision_flags))
    done[name] = (os.path.relpath(init_checkpoint, out) if init_checkpoint
                  else "random", seconds)

  for name in DOWNSTREAM_MODELS:
    train(name)
  # The narrow student is cut out of the teacher fine-tuned above, its
  # units scored on the task's training sentences.
  run_stage("prune", [
      sys.executable, "prune_checkpoint.py",
      "--bert_config_file", teacher_config,
      "--init_checkpoint", path("downstream", "teacher"),
      "--student_config_file", runs["pruned_student"][0],
      "--output_dir", path("pruned_student"), "--task_name", "tsv",
      "--data_dir", path("task"), "--vocab_file", vocab_file,
      "--max_seq_length", task["max_seq_length"],
      "--num_calibration_examples", settings["calibration_examples"]])
  for name in NARROW_MODELS:
    train(name)
  return done


def narrow_runs(out, settings, vocab_file, teacher_flags):
  """(config, init checkpoint, extra flags) of the narrow students.

  Writes their config; both learn from the fine-tuned teacher
  (teacher_flags), one from the pruned checkpoint, one from random weights.
  """
  config = os.path.join(out, "narrow_student_config.json")
  write_bert_config(config, count_lines(vocab_file),
                    settings["narrow_student"], settings["max_seq_length"])
  return {"pruned_student": (config, os.path.join(out, "pruned_student"),
                             teacher_flags),
          "narrow_random_student": (config, None, teacher_flags)}


def read_tsv_column(path, column):
  """The values of one named column of a tab-separated file with a header."""
  with open(path, encoding="utf-8") as f:
    header = f.readline().rstrip("\n").split("\t")
    index = header.index(column)
    return [line.rstrip("\n").split("\t")[index] for line in f
            if line.strip()]


def predicted_accuracy(test_file, model_dir):
  """Accuracy of a run's test_results.tsv against test_file's labels."""
  labels = read_json(os.path.join(model_dir, "task.json"))["labels"]
  with open(os.path.join(model_dir, "test_results.tsv")) as f:
    rows = [[float(value) for value in line.split("\t")] for line in f
            if line.strip()]
  predicted = [labels[row.index(max(row))] for row in rows]
  expected = read_tsv_column(test_file, "label")
  if len(predicted) != len(expected):
    raise ValueError("%s has %d rows for %d test examples" % (
        model_dir, len(predicted), len(expected)))
  return sum(p == e for p, e in zip(predicted, expected)) / len(expected)


def downstream_summary(out, runs):
  """The report's task description and one row per downstream model."""
  task_dir = os.path.join(out, "task")
  sizes = {split: len(read_tsv_column(os.path.join(task_dir, split + ".tsv"),
                                      "label"))
           for split in ("train", "dev", "test")}
  train_labels = read_tsv_column(os.path.join(task_dir, "train.tsv"), "label")
  majority = max(set(train_labels), key=train_labels.count)
  test_labels = read_tsv_column(os.path.join(task_dir, "test.tsv"), "label")
  task = dict(sizes, labels=sorted(set(train_labels)),
              majority_label=majority,
              test_majority_accuracy=test_labels.count(majority) /
              len(test_labels))
  rows = {}
  for name, (init_checkpoint, seconds) in runs.items():
    model_dir = os.path.join(out, "downstream", name)
    results = read_eval_results(os.path.join(model_dir, "eval_results.txt"))
    stats = read_json(os.path.join(model_dir, "train_stats.json"))
    rows[name] = {
        "eval_accuracy": results["eval_accuracy"],
        "eval_loss": results["eval_loss"],
        "test_accuracy": predicted_accuracy(
            os.path.join(task_dir, "test.tsv"), model_dir),
        "steps": int(results["global_step"]),
        "params": stats["params"],
        "train_seq_per_s": stats["train_seq_per_s"],
        "seconds": round(seconds, 1),
        "init_checkpoint": init_checkpoint,
    }
  return task, rows


def downstream_markdown(settings, task, rows):
  """The report.md section of the downstream step."""
  recipe = settings["downstream"]
  lines = [
      "## Downstream task: a sentence, the kind of its article", "",
      "`data/make_sample_task.py` made the task from the held-out articles: "
      "each sentence (but the first, which names the kind) is labelled with "
      "its article's kind (%s), split by article: %d train, %d dev, %d test "
      "sentences. Always answering `%s` scores %.4f on test." % (
          ", ".join(task["labels"]), task["train"], task["dev"],
          task["test"], task["majority_label"],
          task["test_majority_accuracy"]), "",
      "Each model was fine-tuned with `run_classifier.py` for %d steps, "
      "batch %d, `--max_seq_length %d`, `--learning_rate %g`; the "
      "task-distilled student starts from the distilled student and learns "
      "from the fine-tuned teacher (`--temperature %g --soft_label_weight %g "
      "--hard_label_weight %g`)." % (
          recipe["steps"], recipe["batch"], recipe["max_seq_length"],
          recipe["learning_rate"], recipe["temperature"],
          recipe["soft_label_weight"], recipe["hard_label_weight"]), "",
      "%s and %s, %s wide (`%s`), are task-distilled the same way from "
      "the fine-tuned teacher: the first starts from a checkpoint that "
      "`prune_checkpoint.py` cut out of that teacher (its units scored on "
      "the training sentences), its twin from random weights." % (
          NARROW_MODELS[0], NARROW_MODELS[1],
          settings["narrow_student"]["hidden_size"],
          json.dumps(settings["narrow_student"], sort_keys=True)), "",
      "| model | starts from | params | dev accuracy | test accuracy "
      "(95% interval) | steps | train seq/s | seconds |",
      "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for name, row in rows.items():
    lines.append("| %s | `%s` | %s | %.4f | %.4f ± %.4f | %d | %.1f | %.1f |"
                 % (name, row["init_checkpoint"], "{:,}".format(row["params"]),
                    row["eval_accuracy"], row["test_accuracy"],
                    binomial_half_width([row["test_accuracy"]], task["test"]),
                    row["steps"], row["train_seq_per_s"], row["seconds"]))
  lines += ["", "On %d test sentences an accuracy is known to ± %.4f at "
            "most (binomial, 95%%, normal approximation). A difference is "
            "beyond the noise when it exceeds 1.96 times the sd of the "
            "difference of two independent accuracies (conservative: the "
            "models share the test set):" % (
                task["test"], binomial_half_width([0.5], task["test"])), ""]
  for first, second in COMPARISONS:
    difference = rows[first]["test_accuracy"] - rows[second]["test_accuracy"]
    half_width = binomial_half_width(
        [rows[first]["test_accuracy"], rows[second]["test_accuracy"]],
        task["test"])
    lines.append("- %s minus %s: %+.4f ± %.4f, %s." % (
        first, second, difference, half_width,
        "beyond the noise" if abs(difference) > half_width
        else "within the noise"))
  return lines + [""]


def binomial_half_width(accuracies, count):
  """Half the 95% interval of one accuracy, or of a difference of several.

  Each accuracy is a binomial proportion over `count` examples; the
  variances of independent ones add.
  """
  variance = sum(p * (1.0 - p) / count for p in accuracies)
  return Z_95 * variance ** 0.5
def serve_downstream_models(out, settings, vocab_file):
  """Exports SERVED_MODELS as SavedModels; times each on the test sentences.

  Each test sentence is one request (batch 1, its own length, one thread)
  after SERVING_WARMUP untimed ones, in a process of its own. Returns
  {model: {p50_ms, p99_ms, size_mb, requests}}.
  """
  path = lambda *parts: os.path.join(out, *parts)
  texts_path = path("serving", "test_texts.json")
  os.makedirs(path("serving"))
  with open(texts_path, "w") as f:
    json.dump(read_tsv_column(path("task", "test.tsv"), "text_a"), f)
  served = {}
  for name in SERVED_MODELS:
    folder = path("serving", name)
    run_stage("serving_export", [
        sys.executable, "convert_checkpoint.py", "--from", "google",
        "--to", "saved_model", "--input_dir", path("downstream", name),
        "--vocab_file", vocab_file, "--do_lower_case", "True",
        "--max_seq_length", settings["downstream"]["max_seq_length"],
        "--output_dir", folder])
    start = time.time()
    measured = serving_latency.run_measurement(
        {"folder": folder, "format": "saved_model", "threads": 1,
         "texts": texts_path, "warmup": SERVING_WARMUP},
        folder + "_latency.log")
    STAGE_SECONDS["serving_latency"] = (
        STAGE_SECONDS.get("serving_latency", 0.0) + time.time() - start)
    size = sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(os.path.join(folder, "1"))
               for name in names)
    served[name] = {"p50_ms": measured["p50_ms"],
                    "p99_ms": measured["p99_ms"],
                    "size_mb": size / 1e6,
                    "requests": len(measured["probabilities"])}
  return served


def add_serving_report(out, served):
  """Adds the serving figures to report.json and a section to report.md."""
  with open(os.path.join(out, "report.json")) as f:
    report = json.load(f)
  report["serving"] = served
  with open(os.path.join(out, "report.json"), "w") as f:
    json.dump(report, f, indent=2)
  teacher = served["teacher"]["p50_ms"]
  lines = [
      "## Serving: batch-1 latency", "",
      "`convert_checkpoint.py --to saved_model` exported each model "
      "(serving/); every test sentence was sent alone (raw text, tokenized "
      "in the graph, 1 thread) after %d warm-up requests, in a process of "
      "its own (`bert_distillation/serving_latency.py`)." % SERVING_WARMUP,
      "", "| model | p50 ms | p99 ms | teacher p50 / p50 | SavedModel MB | "
      "requests |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
  for name, row in served.items():
    lines.append("| %s | %.2f | %.2f | %.2fx | %.1f | %d |" % (
        name, row["p50_ms"], row["p99_ms"], teacher / row["p50_ms"],
        row["size_mb"], row["requests"]))
  path = os.path.join(out, "report.md")
  with open(path) as f:
    markdown = f.read()
  marker = "## Stage wall times"
  markdown = markdown.replace(marker, "\n".join(lines) + "\n\n" + marker, 1)
  with open(path, "w") as f:
    f.write(markdown)


def main(_):
  settings = SETTINGS["tiny" if FLAGS.tiny else "full"]
  out = FLAGS.output_dir
  py = sys.executable
  if os.path.exists(out):
    shutil.rmtree(out)
  os.makedirs(out)
  path = lambda *parts: os.path.join(out, *parts)
  precision_name = demo_precision()
  precision_flags = ["--precision", precision_name]
  print("Precision: %s" % precision_name)
  teacher_checkpoint = prepare_teacher(out, settings, FLAGS.dump,
                                       FLAGS.vocab_file, FLAGS.num_workers,
                                       precision_flags)
  teacher_config = path("teacher_config.json")
  student_config = path("student_config.json")

  # V. Teacher labels: top-10, or 10 sampled tokens, for training; the
  # whole distribution for the held-out records that evaluation reads, so
  # that every student is measured against the whole teacher (teacher_kl).
  label_flags = ["--truncation_factor", "10"]
  if settings["label_sampling"]:
    label_flags += ["--kd_target", "sampled"]
  run_stage("teacher_labels", label_command(
      settings, teacher_config, teacher_checkpoint,
      path("records", "train_*.tfrecord"), path("labels", "train.tfrecord"),
      10, ["--label_sampling", settings["label_sampling"]] +
      precision_flags))
  copy_first_records(path("records", "heldout_*.tfrecord"),
                     settings["max_eval_steps"] * 32,
                     path("records", "heldout_eval.tfrecord"))
  run_stage("teacher_labels", label_command(
      settings, teacher_config, teacher_checkpoint,
      path("records", "heldout_eval.tfrecord"),
      path("labels", "heldout.tfrecord"), 0, precision_flags))

  # The teacher's own held-out figures, on the labelled records: its
  # agreement with its stored labels (and teacher_kl ~ 0) checks the
  # labelling stage.
  run_stage("teacher_eval", [
      py, "network_distillation_single_machine_truncated.py",
      "--bert_config_file", teacher_config,
      "--input_file", path("labels", "heldout.tfrecord"),
      "--eval_input_file", path("labels", "heldout.tfrecord"),
      "--output_dir", path("teacher"), "--do_train", "False",
      "--do_eval", "True", "--truncation_factor", 0,
      "--max_seq_length", settings["max_seq_length"],
      "--max_predictions_per_seq", settings["max_predictions_per_seq"],
      "--eval_batch_size", 32, "--max_eval_steps", settings["max_eval_steps"],
      "--soft_label_weight", 0, "--hard_label_weight", 1] + precision_flags)

  # VI. Students of one shape: distilled; the same layer init with hard
  # labels only (what the teacher's weights give without its labels); and
  # from scratch.
  init_flags = ["--init_checkpoint", teacher_checkpoint,
                "--init_layer_map", settings["init_layer_map"]]
  hard_only = ["--soft_label_weight", "0", "--hard_label_weight", "1",
               "--nsp_loss", "hard"]
  distill_flags = init_flags + [
      "--temperature", str(settings["temperature"]),
      "--soft_label_weight", str(settings["soft_label_weight"]),
      "--hard_label_weight", str(settings["hard_label_weight"]),
      "--nsp_loss", settings["nsp_loss"]]
  if settings["layer_losses"]:
    # The teacher runs in the graph; the records' stored labels are not read.
    distill_flags += ["--teacher_config_file", teacher_config,
                      "--teacher_checkpoint", teacher_checkpoint]
    distill_flags += list(settings["layer_losses"])
  else:
    distill_flags += ["--truncation_factor", "10",
                      "--kd_target", settings["kd_target"]]
  student_runs = {
      "distilled_student": distill_flags,
      "init_only_student": init_flags + label_flags + hard_only,
      "scratch_student": label_flags + hard_only,
  }
  for name, extra in student_runs.items():
    run_stage(name, trainer_command(
        "network_distillation_single_machine_truncated.py", settings,
        student_config, path("labels", "train.tfrecord"),
        path("labels", "heldout.tfrecord"), path(name),
        settings["student_steps"], settings["student_lr"],
        settings["student_batch"],
        extra + precision_flags +
        ["--eval_every_steps", settings["eval_every_steps"]]))

  # The distilled student in Hugging Face's layout, for transformers.
  run_stage("export_student", [
      py, "convert_checkpoint.py", "--from", "google", "--to", "huggingface",
      "--input_dir", path("distilled_student"),
      "--bert_config_file", student_config, "--vocab_file", FLAGS.vocab_file,
      "--do_lower_case", "True", "--output_dir", path("student_hf")])

  # VII. The same distillation, briefly, under Horovod on 2 CPU processes.
  run_stage("distributed_distillation", [
      os.path.join(os.path.dirname(py), "horovodrun"), "-np", 2,
      "-H", "localhost:2", "--gloo"] + trainer_command(
          "network_distillation_distributed_truncated.py", settings,
          student_config, path("labels", "train.tfrecord"),
          path("labels", "heldout.tfrecord"), path("distributed_student"),
          settings["horovod_steps"], settings["student_lr"],
          settings["student_batch"], distill_flags + precision_flags))

  # VIII. The models on a task built from the held-out articles.
  downstream_runs = run_downstream(out, settings, FLAGS.dump,
                                   FLAGS.vocab_file, teacher_checkpoint,
                                   precision_flags)

  # The fine-tuned teacher and the task-distilled student, served.
  served = serve_downstream_models(out, settings, FLAGS.vocab_file)

  # Report.
  start = time.time()
  models = {name: model_summary(path(name)) for name in MODELS}
  downstream_task, downstream = downstream_summary(out, downstream_runs)
  plot_history(path("mlm_accuracy.png"), {
      name.replace("_student", "").replace("_", "-"): read_history(
          path(name, "eval_history.jsonl")) for name in student_runs})
  STAGE_SECONDS["report"] = time.time() - start
  write_report(out, settings, models, distill_flags, precision_name,
               downstream_task, downstream)
  add_serving_report(out, served)
  print("\n" + open(path("report.md")).read())


if __name__ == "__main__":
  command_line.run(main)
