"""The whole pipeline, chained through each stage's script, with tiny sizes.

This is `make demo` scaled down (run_demo.py --tiny): it proves that each
stage reads what the previous one wrote, and that the report is complete.
"""

import json
import math
import os
import struct

from conftest import run_script
from bert_distillation import precision

STAGES = ("extract", "split", "create_pretraining_data", "teacher_pretraining",
          "teacher_labels", "teacher_eval", "distilled_student",
          "init_only_student", "scratch_student", "export_student",
          "distributed_distillation", "downstream_task", "downstream",
          "prune", "report")
MODELS = ("teacher", "distilled_student", "init_only_student",
          "scratch_student")
DOWNSTREAM_MODELS = MODELS + ("task_distilled_student",)
# Narrower than the teacher, task-distilled: pruned from it, or random.
NARROW_MODELS = ("pruned_student", "narrow_random_student")
DOWNSTREAM_KEYS = ("eval_accuracy", "eval_loss", "test_accuracy", "steps",
                   "params", "train_seq_per_s", "seconds", "init_checkpoint")
# The kinds of article that data/make_sample_dump.py writes.
ARTICLE_KINDS = {"person", "town", "river", "region", "bird", "fish",
                 "insect", "amphibian", "plant"}
MODEL_KEYS = ("params", "masked_lm_accuracy", "teacher_top1_agreement",
              "teacher_kl", "next_sentence_accuracy", "train_seq_per_s")


def png_size(path):
  """Returns (width, height) read from a PNG header."""
  with open(path, "rb") as f:
    header = f.read(24)
  assert header[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
  return struct.unpack(">II", header[16:24])


def tsv_rows(path):
  """The rows of a tab-separated file with a header, as dicts."""
  lines = path.read_text(encoding="utf-8").splitlines()
  header = lines[0].split("\t")
  return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def check_downstream(out, report, stdout):
  """The task files, and each downstream row against the run's own files."""
  for script in ("make_sample_task.py", "run_classifier.py"):
    assert script in stdout, script
  # The task-distilled student learns from the fine-tuned teacher.
  assert "--teacher_checkpoint %s" % (out / "downstream" / "teacher") in stdout
  splits = {split: tsv_rows(out / "task" / (split + ".tsv"))
            for split in ("train", "dev", "test")}
  assert (out / "task" / "train.tsv").read_text().startswith("text_a\tlabel\n")
  train_labels = {row["label"] for row in splits["train"]}
  assert len(train_labels) > 2 and train_labels <= ARTICLE_KINDS, train_labels
  for split in ("dev", "test"):
    assert splits[split] and {row["label"] for row in splits[split]} <= (
        train_labels), split
  task = report["downstream_task"]
  assert [task[split] for split in splits] == [
      len(rows) for rows in splits.values()]
  assert 0 < task["test_majority_accuracy"] < 1

  rows = report["downstream"]
  assert sorted(rows) == sorted(DOWNSTREAM_MODELS + NARROW_MODELS), sorted(
      rows)
  steps = report["settings"]["downstream"]["steps"]
  for name in DOWNSTREAM_MODELS + NARROW_MODELS:
    row = rows[name]
    assert set(DOWNSTREAM_KEYS) <= set(row), (name, row)
    assert 0.0 <= row["eval_accuracy"] <= 1.0, (name, row)
    assert row["steps"] == steps, (name, row)
    # test_accuracy is the argmax of test_results.tsv against test.tsv.
    model_dir = out / "downstream" / name
    labels = json.loads((model_dir / "task.json").read_text())["labels"]
    probabilities = [[float(value) for value in line.split("\t")] for line in
                     (model_dir / "test_results.tsv").read_text().splitlines()]
    assert len(probabilities) == len(splits["test"])
    hits = sum(labels[row.index(max(row))] == example["label"]
               for row, example in zip(probabilities, splits["test"]))
    assert abs(row["test_accuracy"] - hits / len(splits["test"])) < 1e-9
  assert rows["teacher"]["init_checkpoint"].startswith("teacher")
  assert rows["task_distilled_student"]["init_checkpoint"] == (
      "distilled_student")
  # Students keep their size on the task; the teacher in the task-distilled
  # student's graph is not counted.
  student_params = {rows[name]["params"] for name in DOWNSTREAM_MODELS[1:]}
  assert len(student_params) == 1
  assert student_params.pop() < rows["teacher"]["params"]
  # The narrow pair: one shape, narrower than the students; one starts
  # from the checkpoint pruned out of the fine-tuned teacher.
  assert rows["pruned_student"]["params"] == rows["narrow_random_student"][
      "params"] < rows["distilled_student"]["params"]
  assert rows["pruned_student"]["init_checkpoint"] == "pruned_student"
  assert rows["narrow_random_student"]["init_checkpoint"] == "random"
  assert "prune_checkpoint.py" in stdout
  assert (out / "pruned_student" / "task.json").exists()


def check_serving(out, report, markdown):
  """The fine-tuned teacher and task-distilled student, exported and timed."""
  test_sentences = len(tsv_rows(out / "task" / "test.tsv"))
  assert sorted(report["serving"]) == ["task_distilled_student", "teacher"]
  for name, row in report["serving"].items():
    assert sorted(os.listdir(out / "serving" / name)) == [
        "1", "serving.json", "vocab.txt"], name
    assert 0 < row["p50_ms"] <= row["p99_ms"], (name, row)
    assert row["requests"] == test_sentences
    assert "| %s | %.2f |" % (name, row["p50_ms"]) in markdown
  assert "## Serving: batch-1 latency" in markdown.split(
      "## Stage wall times")[0]
  assert {"serving_export", "serving_latency"} <= set(report["stages"])


def test_tiny_demo_runs_every_stage_and_reports(tmp_path):
  out = tmp_path / "demo"
  result = run_script("run_demo.py", "--tiny", "--output_dir", out,
                      timeout=900)
  # Each stage's command line is printed before it runs.
  for script in ("run_wikiextractor.sh", "extract_jsons.py", "split_text.py",
                 "create_pretraining_data.py", "produce_teacher_labels.py",
                 "network_distillation_single_machine_truncated.py",
                 "network_distillation_distributed_truncated.py"):
    assert "$ " in result.stdout and script in result.stdout, script

  report = json.loads((out / "report.json").read_text())
  assert set(STAGES) <= set(report["stages"]), report["stages"]
  assert all(seconds >= 0 for seconds in report["stages"].values())
  params = {}
  for model in MODELS:
    row = report[model]
    assert set(MODEL_KEYS) <= set(row), (model, row)
    for key in ("masked_lm_accuracy", "teacher_top1_agreement",
                "next_sentence_accuracy"):
      assert 0.0 <= row[key] <= 1.0, (model, key, row[key])
    assert row["train_seq_per_s"] > 0 and not math.isnan(
        row["train_seq_per_s"])
    params[model] = row["params"]
  # The teacher agrees with the labels it wrote itself; the held-out labels
  # are its whole distribution, so its teacher_kl is 0 and the students'
  # is not.
  assert report["teacher"]["teacher_top1_agreement"] > 0.95
  assert abs(report["teacher"]["teacher_kl"]) < 1e-4
  for model in MODELS[1:]:
    assert report[model]["teacher_kl"] > 1e-3, model
  # The init-only student starts like the distilled one, without labels.
  assert "--label_sampling True" in result.stdout
  assert params["init_only_student"] == params["distilled_student"]
  # The students share one shape, smaller than the teacher's.
  assert params["distilled_student"] == params["scratch_student"]
  assert params["distilled_student"] < params["teacher"]

  # The distilled student learns from the teacher in the graph, with the
  # layer-wise losses, and the report names that recipe.
  flags_used = report["distillation_flags"]
  teacher_checkpoint = flags_used[flags_used.index("--teacher_checkpoint") + 1]
  assert os.path.exists(teacher_checkpoint + ".index"), teacher_checkpoint
  assert os.path.dirname(teacher_checkpoint) == str(out / "teacher")
  for flag in ("--hidden_loss_weight", "--attention_loss_weight",
               "--relation_loss_weight"):
    assert float(flags_used[flags_used.index(flag) + 1]) > 0, flag
  assert "teacher in the graph" in report["distillation_recipe"]

  markdown = (out / "report.md").read_text()
  for model in MODELS:
    assert model in markdown
  assert "distilled minus init-only" in markdown
  assert "Distillation recipe: " + report["distillation_recipe"] in markdown
  check_downstream(out, report, result.stdout)
  check_serving(out, report, markdown)
  downstream_section = markdown.split("## Downstream task")[1].split(
      "## Stage wall times")[0]
  for model in DOWNSTREAM_MODELS + NARROW_MODELS:
    assert "| %s |" % model in downstream_section, model
  # Each comparison is weighed against the test set's noise.
  assert "- pruned_student minus narrow_random_student: " in (
      downstream_section)
  assert downstream_section.count("the noise.") == 4
  # bf16 where the CPU runs it fast, and the report says which.
  expected = ("fp32" if precision.hardware_warning(
      "bf16", precision.cpu_flags(), []) else "bf16")
  assert report["precision"] == expected
  assert "`--precision %s`" % expected in markdown
  assert "--precision %s" % expected in result.stdout
  width, height = png_size(out / "mlm_accuracy.png")
  assert width > 100 and height > 100

  # The held-out piece never reaches training.
  heldout = os.listdir(out / "heldout_text")
  assert len(heldout) == 1 and heldout[0] not in os.listdir(out / "text")
  # Horovod's rank 1 left nothing behind.
  assert not (out / "distributed_student" / "1").exists()
  # The distilled student exported for transformers.
  exported = sorted(os.listdir(out / "student_hf"))
  assert exported == ["config.json", "model.safetensors",
                      "tokenizer_config.json", "vocab.txt"]
  config = json.loads((out / "student_hf" / "config.json").read_text())
  assert config["architectures"] == ["BertForPreTraining"]
  assert config["num_hidden_layers"] == 1
