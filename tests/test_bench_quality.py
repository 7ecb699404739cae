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
                                      "full": 160000.0},
           "timing": json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}}
results["best_terms"] = {start: bench_quality.best_terms(summary, start)
                         for start in summary}
print(json.dumps({"summary": summary, "targets": targets,
                  "best_terms": results["best_terms"],
                  "costs": bench_quality.costs(results),
                  "table": bench_quality.format_table(results)}))
"""


def run(start, student, seed, accuracy, kl, **extra):
  return dict({"start": start, "student": student, "seed": seed,
               "seconds": 1.0, "masked_lm_accuracy": accuracy,
               "teacher_top1_agreement": 0.5, "teacher_kl": kl}, **extra)


def bench_bookkeeping(runs, timing=None):
  result = subprocess.run(
      [sys.executable, "-c", DRIVER, json.dumps(runs)] + (
          [json.dumps(timing)] if timing is not None else []),
      cwd=conftest.REPO,
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


def test_layer_recipes_best_terms_costs_and_targets():
  runs = []
  for seed, noise in enumerate((-0.001, 0.0, 0.001)):
    curve = seed == 0
    runs += [
        run("scratch", "hard", seed, 0.15 + noise, 1.0,
            seconds_per_step=0.10,
            curve=[[100, 0.12], [200, 0.14], [300, 0.15]] if curve else None),
        run("scratch", "full", seed, 0.152 + noise, 0.70 + noise,
            seconds_per_step=0.12),
        run("scratch", "online", seed, 0.153 + noise, 0.701 + noise,
            seconds_per_step=0.20,
            curve=[[100, 0.13], [200, 0.17], [300, 0.18]] if curve else None),
        run("scratch", "hidden_cosine", seed, 0.16 + noise, 0.7),
        run("scratch", "hidden_mse", seed, 0.17 + noise, 0.7),
        run("scratch", "attention", seed, 0.14 + noise, 0.7),
        run("scratch", "relation", seed, 0.18 + noise, 0.6),
        run("scratch", "best", seed, 0.19 + noise, 0.6),
        run("init", "hard", seed, 0.24 + noise, 0.3),
        run("init", "full", seed, 0.25 + noise, 0.2),
        run("init", "online", seed, 0.25 + noise, 0.2,
            curve=[[100, 0.245], [200, 0.25]] if curve else None),
        run("init", "best", seed, 0.251 + noise, 0.2),
    ]
  # Timing runs (an idle machine) win over the quality runs' own.
  out = bench_bookkeeping(runs, timing={"online": 0.3, "full": 0.125})
  # Terms that beat online; of the hidden losses only the better (MSE).
  assert out["best_terms"]["scratch"] == ["hidden_mse", "relation"]
  # No single-term runs from teacher layers: the random start's choice.
  assert out["best_terms"]["init"] == ["hidden_mse", "relation"]
  targets = out["targets"]
  assert targets["layer_beats_hard_by_2sd_without_init"]["met"]
  stored = targets["layer_beats_best_stored_kd_by_2sd_without_init"]
  assert stored["baseline"] == "full" and stored["best"] == "best"
  assert abs(stored["difference"] - 0.038) < 1e-9 and stored["met"]
  assert not targets["layer_beats_full_kd_by_2sd_with_init"]["met"]
  assert targets["online_agrees_with_full_kd"]["met"]

  costs = out["costs"]["scratch"]
  assert costs["online"]["seconds_per_step"] == 0.3
  assert costs["online"]["timed"] and abs(
      costs["online"]["vs_stored_kd"] - 2.4) < 1e-9
  # Hard's final mean accuracy 0.15: online's curve passes it between
  # steps 100 (0.13) and 200 (0.17), at 150; 150 steps x 0.3 s.
  assert abs(costs["online"]["steps_to_hard"] - 150) < 1e-9
  assert abs(costs["online"]["seconds_to_hard"] - 45) < 1e-9
  # Busy: the quality runs' own seconds per step.
  assert abs(costs["hard"]["seconds_per_step"] - 0.10) < 1e-9
  assert not costs["hard"]["timed"]
  # Already above it at the first point: an upper bound.
  init = out["costs"]["init"]["online"]
  assert init["steps_to_hard"] == 100 and not init["exact"]
  table = out["table"]
  assert "best: online + hidden_mse + relation" in table
  assert "+ hidden MSE" in table and "teacher in graph" in table
  assert "≤ 100 / ≤ 30 s" in table and "150 / 45 s" in table
  assert "0.300 (2.40×)" in table and "0.100 (0.80×) busy" in table


PRUNED_DRIVER = """
import json, sys
sys.path.insert(0, "bench")
import bench_quality
from absl import flags
flags.FLAGS(["bench_quality"])
commands = []
def fake_run_logged(command, log):
  commands.append([str(part) for part in command])
  return 0.0
bench_quality.run_logged = fake_run_logged
demo_dir, narrow = sys.argv[1], sys.argv[2]
bench = bench_quality.Bench({"max_seq_length": 16}, sys.argv[3], demo_dir, 10,
                            narrow)
first = bench.student_flags("pruned", "online", 0, ())
second = bench.student_flags("pruned", "hard", 1, ())
combined = bench_quality.recipe_flags("mse_relation", (), 0.1)
print(json.dumps({"commands": commands, "first": [str(f) for f in first[1]],
                  "second": [str(f) for f in second[1]],
                  "combined": [str(f) for f in combined]}))
"""


def fake_demo_dir(tmp_path):
  """A demo folder with configs and a (fake) teacher checkpoint; a narrow
  student config beside it."""
  demo = tmp_path / "demo"
  (demo / "teacher").mkdir(parents=True)
  conftest.write_config(str(demo / "teacher_config.json"), vocab_size=30,
                        hidden_size=32, num_attention_heads=2)
  conftest.write_config(str(demo / "student_config.json"), vocab_size=30,
                        hidden_size=32, num_attention_heads=2,
                        num_hidden_layers=1)
  narrow = tmp_path / "narrow_student_config.json"
  conftest.write_config(str(narrow), vocab_size=30, hidden_size=16,
                        num_attention_heads=1, num_hidden_layers=1,
                        intermediate_size=32)
  (demo / "teacher" / "model.ckpt-5.index").write_bytes(b"")
  (demo / "teacher" / "checkpoint").write_text(
      'model_checkpoint_path: "model.ckpt-5"\n')
  return demo, narrow


def test_pruned_start_prunes_once_and_starts_from_the_cut(tmp_path):
  demo, narrow = fake_demo_dir(tmp_path)
  result = subprocess.run(
      [sys.executable, "-c", PRUNED_DRIVER, str(demo), str(narrow),
       str(tmp_path / "work")], cwd=conftest.REPO, env=conftest.CHILD_ENV,
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  # One prune for both recipes, from the teacher to the narrow config.
  assert len(out["commands"]) == 1
  prune = out["commands"][0]
  assert prune[1].endswith("prune_checkpoint.py")
  assert prune[prune.index("--student_config_file") + 1] == str(narrow)
  assert prune[prune.index("--init_checkpoint") + 1].endswith("model.ckpt-5")
  assert prune[prune.index("--input_file") + 1].endswith(
      "train_plain.tfrecord")
  cut = str(tmp_path / "work" / "pruned_init" / "bert_model.ckpt")
  for recipe_flags in (out["first"], out["second"]):
    assert recipe_flags[recipe_flags.index("--init_checkpoint") + 1] == cut
    assert "--init_layer_map" not in recipe_flags
  # The combined recipe turns both terms on at the given weight.
  combined = out["combined"]
  assert combined[combined.index("--hidden_loss_weight") + 1] == "0.1"
  assert combined[combined.index("--hidden_loss") + 1] == "mse"
  assert combined[combined.index("--relation_loss_weight") + 1] == "0.1"


def test_init_start_with_a_narrower_student_is_an_error(tmp_path):
  demo, narrow = fake_demo_dir(tmp_path)
  result = conftest.run_script(
      "bench/bench_quality.py", "--demo_dir", str(demo),
      "--student_config_file", str(narrow), "--starts", "scratch,init",
      "--work_dir", str(tmp_path / "work"), check=False)
  assert result.returncode == 1, result.stderr[-2000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("ERROR: --starts init") and "--starts pruned" in last
  assert "hidden_size (16, --student_config_file)" in last
  assert "Traceback" not in result.stderr
