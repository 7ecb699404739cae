"""The quality benchmark's bookkeeping: mean +- sd over seeds and the targets.

bench/bench_quality.py defines flags that the trainer module also defines, so
it is imported in a child process, which prints what the test checks.
"""

import json
import subprocess
import sys

import conftest

DRIVER = """
import json, sys
sys.path.insert(0, "bench")
import bench_quality
runs = json.loads(sys.argv[1])
summary = bench_quality.summarize(runs)
targets = bench_quality.evaluate_targets(summary)
results = {"summary": summary, "targets": targets, "teacher": None,
           "label_bytes_per_record": {"top_k": 640.0, "sampled": 700.0,
                                      "full": 160000.0}}
print(json.dumps({"summary": summary, "targets": targets,
                  "table": bench_quality.format_table(results)}))
"""


def run(start, student, seed, accuracy, kl):
  return {"start": start, "student": student, "seed": seed, "seconds": 1.0,
          "masked_lm_accuracy": accuracy, "teacher_top1_agreement": 0.5,
          "teacher_kl": kl}


def bench_bookkeeping(runs):
  result = subprocess.run(
      [sys.executable, "-c", DRIVER, json.dumps(runs)], cwd=conftest.REPO,
      env=conftest.CHILD_ENV, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_summary_and_targets():
  runs = []
  for seed, noise in enumerate((-0.001, 0.0, 0.001)):
    runs += [run("scratch", "hard", seed, 0.15 + noise, 1.0),
             run("scratch", "truncated", seed, 0.16 + noise, 0.8 + noise),
             run("scratch", "sampled", seed, 0.17 + noise, 0.5 + noise),
             run("scratch", "full", seed, 0.151 + noise, 0.4 + noise),
             # With init, KD is within noise of init-only.
             run("init", "hard", seed, 0.25 + 10 * noise, 0.3),
             run("init", "full", seed, 0.252 - 10 * noise, 0.2)]
  out = bench_bookkeeping(runs)
  hard = out["summary"]["scratch"]["hard"]
  assert hard["seeds"] == 3
  assert abs(hard["masked_lm_accuracy"][0] - 0.15) < 1e-9
  assert abs(hard["masked_lm_accuracy"][1] - 0.001) < 1e-9  # sample sd
  targets = out["targets"]
  gap = targets["sampled_closes_80pct_of_kl_gap"]
  assert abs(gap["fraction"] - 0.75) < 1e-9 and not gap["met"]
  kd = targets["kd_beats_hard_by_2sd_without_init"]
  assert kd["best"] == "sampled" and kd["met"]
  assert abs(kd["difference"] - 0.02) < 1e-9
  init = targets["kd_beats_init_only_by_2sd"]
  assert init["best"] == "full" and not init["met"]
  # Students that were not run are "not measured", not a pass.
  assert targets["sampled_closes_80pct_of_kl_gap_with_init"] is None
  assert "init-only (hard)" in out["table"]
  assert "NOT MET" in out["table"] and "not measured" in out["table"]
