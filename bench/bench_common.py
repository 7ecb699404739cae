# coding=utf-8
"""Helpers that the benchmarks share: running a stage, summarising seeds."""

import os
import subprocess
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_logged(command, log_path):
  """Runs a command with its output in log_path; returns its wall time.

  Raises RuntimeError with the log's tail when it fails.
  """
  print("$ " + " ".join(str(part) for part in command), flush=True)
  start = time.time()
  with open(log_path, "w") as log:
    result = subprocess.run([str(part) for part in command], cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT)
  if result.returncode != 0:
    with open(log_path) as log:
      tail = log.read()[-3000:]
    raise RuntimeError("%s failed (exit %d); %s ends:\n%s" % (
        command[1], result.returncode, log_path, tail))
  return time.time() - start


def mean_sd(values):
  """(mean, sample sd) of a list; sd is 0 for a single value."""
  values = np.asarray(values, np.float64)
  sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
  return float(values.mean()), sd
