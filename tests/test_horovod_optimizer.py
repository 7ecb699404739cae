"""Two-process Horovod runs of create_optimizer(..., use_horovod=True).

The same job (tests/horovod_optimizer_job.py) is launched with horovodrun
over Gloo and with OpenMPI's mpirun, on localhost only. After one step the
two ranks must hold identical variables, equal to a numpy AdamW step on the
averaged, clipped gradients with the learning rate scaled by 2.
"""

import os
import subprocess

import numpy as np

from conftest import CHILD_ENV
from conftest import REPO
from conftest import horovodrun_command
from conftest import mpirun_command

JOB = os.path.join(REPO, "tests", "horovod_optimizer_job.py")
TIMEOUT_SECONDS = 300
# Values from the job and from optimization.create_optimizer.
INIT_LR, NUM_TRAIN_STEPS = 0.01, 10
WEIGHT_DECAY, BETA_1, BETA_2, EPSILON = 0.01, 0.9, 0.999, 1e-6


def _run(command, output_dir):
  """Runs a launcher command; returns the two ranks' saved arrays."""
  result = subprocess.run(command, cwd=REPO, env=CHILD_ENV,
                          capture_output=True, text=True,
                          timeout=TIMEOUT_SECONDS)
  if result.returncode != 0:
    raise AssertionError("%s failed (%d):\nSTDOUT:\n%s\nSTDERR:\n%s" % (
        " ".join(command), result.returncode, result.stdout[-4000:],
        result.stderr[-8000:]))
  ranks = []
  for rank in range(2):
    with np.load(os.path.join(output_dir, "rank_%d.npz" % rank)) as data:
      ranks.append(dict(data))
  return ranks


def _expected_after(ranks):
  """One AdamW step (no bias correction) on the mean of the local grads."""
  names = sorted(key[len("grad/"):] for key in ranks[0]
                 if key.startswith("grad/"))
  grads = {name: (ranks[0]["grad/" + name] + ranks[1]["grad/" + name]) / 2.0
           for name in names}
  global_norm = np.sqrt(sum(np.sum(g.astype(np.float64) ** 2)
                            for g in grads.values()))
  scale = 1.0 / max(global_norm, 1.0)
  learning_rate = INIT_LR * 2  # Scaled by hvd.size(); step 0, no warmup.
  expected = {}
  scaled_grads = {}
  for name in names:
    grad = grads[name] * scale
    scaled_grads[name] = grad
    param = ranks[0]["before/" + name].astype(np.float64)
    m = (1 - BETA_1) * grad
    v = (1 - BETA_2) * grad * grad
    update = m / (np.sqrt(v) + EPSILON)
    if "LayerNorm" not in name and "bias" not in name:
      update += WEIGHT_DECAY * param
    expected[name] = param - learning_rate * update
  return expected, scaled_grads


def _check(ranks):
  assert int(ranks[0]["size"]) == 2 and int(ranks[1]["size"]) == 2
  assert int(ranks[0]["step"]) == 1 and int(ranks[1]["step"]) == 1
  expected, grads = _expected_after(ranks)
  for name, value in expected.items():
    # The broadcast made both ranks start from rank 0's values...
    np.testing.assert_array_equal(ranks[0]["before/" + name],
                                  ranks[1]["before/" + name], err_msg=name)
    # ...and their data differ, so only averaging keeps them equal.
    assert not np.allclose(ranks[0]["grad/" + name],
                           ranks[1]["grad/" + name]), name
    np.testing.assert_array_equal(ranks[0]["after/" + name],
                                  ranks[1]["after/" + name], err_msg=name)
    # Where the averaged gradient nearly cancels (|g| near epsilon / sqrt(1 -
    # beta_2)), m / (sqrt(v) + epsilon) turns float32's summation order of
    # the gathered embedding rows into visible differences: there the step
    # (about learning_rate * 3 elsewhere) is only checked to 1e-4.
    stable = np.abs(grads[name]) > 1e-4
    assert stable.any(), name
    after = ranks[0]["after/" + name]
    np.testing.assert_allclose(after[stable], value[stable], rtol=1e-5,
                               atol=1e-6, err_msg=name)
    np.testing.assert_allclose(after, value, atol=1e-4, err_msg=name)


def test_horovodrun_gloo_two_ranks(tmp_path):
  command = horovodrun_command(2, [JOB, tmp_path])
  _check(_run(command, str(tmp_path)))


def test_mpirun_two_ranks(tmp_path):
  command = mpirun_command(2, [JOB, tmp_path])
  _check(_run(command, str(tmp_path)))
