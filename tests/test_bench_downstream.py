"""The downstream benchmark's split and targets (no data or teacher needed).

bench/bench_downstream.py defines flags that the trainers also define, so it
is imported in a child process, which prints what the test checks.
"""

import json
import subprocess
import sys

import conftest

DRIVER = """
import json, sys
sys.path.insert(0, "bench")
import bench_downstream
rows = json.loads(sys.argv[1])
train, test, plots = bench_downstream.split_corpus(rows)
summary = {"s3_finetune": {"accuracy": [0.80, 0.01]},
           "s3_distill": {"accuracy": [0.84, 0.01]},
           "s3_transfer": {"accuracy": [0.83, 0.02]}}
rates = {"teacher": {"fp32": 100.0}, "s3": {"fp32": 190.0}}
print(json.dumps({
    "train": train, "test": test, "plots": plots,
    "test_movies": sorted({r["movie_name"] for r in rows
                           if bench_downstream.is_test_movie(r["movie_name"])}),
    "targets": bench_downstream.targets(summary, 0.86, rates),
    "targets_untimed": bench_downstream.targets(summary, 0.86, {})}))
"""


def run_driver(rows):
  result = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(rows)],
                          cwd=conftest.REPO, env=conftest.CHILD_ENV,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_split_keeps_each_movie_on_one_side_and_plots_out_of_test():
  rows = []
  for movie in range(40):
    for review in range(3):
      rows.append({"category": ("fresh", "rotten")[review % 2],
                   "text": "review %d\tof\nmovie %d" % (review, movie),
                   "movie_name": "movie %d" % movie})
    rows.append({"category": "plot", "text": "plot of movie %d" % movie,
                 "movie_name": "movie %d" % movie})
  out = run_driver(rows)
  test_movies = {"movie %d" % int(text.split()[-1]) for text, _ in out["test"]}
  train_movies = {"movie %d" % int(text.split()[-1])
                  for text, _ in out["train"]}
  assert test_movies and train_movies
  assert not test_movies & train_movies
  assert test_movies == set(out["test_movies"])
  # A fifth of the movies, give or take the hash: not everything, not none.
  assert 2 <= len(test_movies) <= 16
  assert len(out["train"]) + len(out["test"]) == 120
  # Snippets are put on one line; plots only from training movies, unlabelled.
  assert all("\t" not in text and "\n" not in text
             for text, _ in out["train"] + out["test"])
  assert {label for _, label in out["plots"]} == {""}
  plot_movies = {"movie %d" % int(text.split()[-1]) for text, _ in out["plots"]}
  assert plot_movies == train_movies


def test_targets_pick_the_best_distilled_student_and_need_timing_for_speed():
  targets = run_driver([])["targets"]
  assert targets["best_distilled"] == "s3_distill"
  ratio, kept = targets["keeps_97_percent_of_teacher"]
  assert abs(ratio - 0.84 / 0.86) < 1e-9 and kept
  gap, beaten = targets["beats_finetuned_by_2_sd"]
  assert abs(gap - 0.04) < 1e-9 and beaten
  speedup, fast = targets["speedup_over_teacher_fp32"]
  assert abs(speedup - 1.9) < 1e-9 and fast
  assert "speedup_over_teacher_fp32" not in run_driver([])["targets_untimed"]
