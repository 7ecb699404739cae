"""Tests for optimization.py: schedule, AdamW, weight decay, global step."""

import os
import sys

import numpy as np
import pytest
import tensorflow as tf

import optimization


def _learning_rate(step, init_lr=1e-3, num_train_steps=100,
                   num_warmup_steps=10):
  """Evaluates the schedule at `step` in a graph, as the trainers use it."""
  with tf.Graph().as_default():
    rate = optimization.learning_rate_schedule(
        init_lr, tf.constant(step, dtype=tf.int64), num_train_steps,
        num_warmup_steps)
    with tf.compat.v1.Session() as sess:
      return sess.run(rate)


def test_learning_rate_schedule_values():
  init_lr = 1e-3
  # Warmup: from 0, linearly, over the first 10 steps.
  assert _learning_rate(0) == 0.0
  assert _learning_rate(5) == pytest.approx(0.5 * init_lr, rel=1e-6)
  assert _learning_rate(9) == pytest.approx(0.9 * init_lr, rel=1e-6)
  # From the end of warmup: Google's decay line init_lr * (1 - step / total).
  assert _learning_rate(10) == pytest.approx(0.9 * init_lr, rel=1e-6)
  assert _learning_rate(55) == pytest.approx(0.45 * init_lr, rel=1e-6)
  assert _learning_rate(100) == 0.0
  assert _learning_rate(250) == 0.0  # Stays at 0 after the last step.
  # Without warmup the rate starts at init_lr.
  assert _learning_rate(0, num_warmup_steps=0) == pytest.approx(init_lr)
  assert _learning_rate(50, num_warmup_steps=0) == pytest.approx(init_lr / 2)


@pytest.mark.parametrize("num_train_steps, num_warmup_steps", [
    (300, 10000), (40, 40), (40, 39), (40, 10), (40, 30), (40, 0), (1, 5)])
def test_peak_learning_rate_is_the_schedules_highest(num_train_steps,
                                                     num_warmup_steps):
  """What the trainers' warning quotes: the highest rate of steps 0..N-1."""
  with tf.Graph().as_default():
    rates = optimization.learning_rate_schedule(
        1e-3, tf.range(num_train_steps), num_train_steps, num_warmup_steps)
    with tf.compat.v1.Session() as sess:
      highest = sess.run(rates).max()
  assert optimization.peak_learning_rate(
      1e-3, num_train_steps, num_warmup_steps) == pytest.approx(highest,
                                                                rel=1e-5)


def test_learning_rate_schedule_rejects_bad_step_counts():
  with tf.Graph().as_default():
    step = tf.constant(0)
    with pytest.raises(ValueError, match="num_train_steps"):
      optimization.learning_rate_schedule(1e-3, step, 0, 0)
    with pytest.raises(ValueError, match="num_warmup_steps"):
      optimization.learning_rate_schedule(1e-3, step, 10, -1)


def test_regression_converges_and_global_step_counts(monkeypatch):
  # Importing Horovod now fails: the single-machine path must not need it.
  monkeypatch.setitem(sys.modules, "horovod", None)
  monkeypatch.setitem(sys.modules, "horovod.tensorflow", None)
  rng = np.random.RandomState(0)
  features = rng.randn(64, 4).astype(np.float32)
  true_weights = np.array([[1.5], [-2.0], [0.5], [3.0]], np.float32)
  labels = features.dot(true_weights) + 0.7
  num_steps = 300
  with tf.Graph().as_default():
    tf.compat.v1.set_random_seed(0)
    weights = tf.compat.v1.get_variable("dense/kernel", [4, 1])
    bias = tf.compat.v1.get_variable(
        "dense/bias", [1], initializer=tf.compat.v1.zeros_initializer())
    predictions = tf.matmul(features, weights) + bias
    loss = tf.reduce_mean(tf.square(predictions - labels))
    train_op = optimization.create_optimizer(
        loss, init_lr=0.1, num_train_steps=num_steps, num_warmup_steps=10,
        use_tpu=False)
    global_step = tf.compat.v1.train.get_global_step()
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      first_loss = sess.run(loss)
      for step in range(num_steps):
        assert sess.run(global_step) == step
        sess.run(train_op)
      assert sess.run(global_step) == num_steps
      final_loss, final_weights, final_bias = sess.run([loss, weights, bias])
  assert final_loss < 0.01 * first_loss
  # Weight decay 0.01 pulls the kernel slightly toward 0, so compare loosely.
  np.testing.assert_allclose(final_weights, true_weights, atol=0.1)
  np.testing.assert_allclose(final_bias, [0.7], atol=0.05)


def test_weight_decay_skips_layer_norm_and_bias():
  names = ["bert/encoder/layer_0/output/dense/kernel",
           "bert/encoder/layer_0/output/dense/bias",
           "bert/encoder/layer_0/output/LayerNorm/gamma",
           "bert/encoder/layer_0/output/LayerNorm/beta",
           "student/layer_norm/scale",
           "bert/embeddings/word_embeddings"]
  decayed = {names[0], names[5]}
  with tf.Graph().as_default():
    variables = [tf.compat.v1.get_variable(
        name, [3], initializer=tf.compat.v1.ones_initializer())
                 for name in names]
    # A loss whose gradient is zero everywhere: only weight decay moves.
    loss = tf.add_n([tf.reduce_sum(v) * 0.0 for v in variables])
    train_op = optimization.create_optimizer(
        loss, init_lr=0.1, num_train_steps=10, num_warmup_steps=0,
        use_tpu=False)
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      sess.run(train_op)
      values = dict(zip(names, sess.run(variables)))
      step = sess.run(tf.compat.v1.train.get_global_step())
  assert step == 1
  for name in names:
    if name in decayed:
      # lr 0.1 * decay 0.01 * value 1.0
      np.testing.assert_allclose(values[name], 1.0 - 0.1 * 0.01, rtol=1e-6,
                                 err_msg=name)
    else:
      np.testing.assert_array_equal(values[name], 1.0, err_msg=name)


@pytest.mark.parametrize("fused", [True, False])
def test_adamw_update_matches_numpy_and_names_slots(fused):
  """Two apply_gradients steps against the formula (no bias correction)."""
  param0 = np.array([0.5, -1.0, 2.0], np.float32)
  grad = np.array([0.1, -0.3, 0.0], np.float32)
  lr, decay, beta_1, beta_2, eps = 0.01, 0.1, 0.8, 0.9, 1e-6
  with tf.Graph().as_default():
    param = tf.compat.v1.get_variable(
        "layer/kernel", initializer=tf.constant(param0))
    global_step = tf.compat.v1.train.get_or_create_global_step()
    optimizer = optimization.AdamWeightDecayOptimizer(
        learning_rate=lr, weight_decay_rate=decay, beta_1=beta_1,
        beta_2=beta_2, epsilon=eps, exclude_from_weight_decay=["bias"],
        fused=fused)
    assert isinstance(optimizer, tf.compat.v1.train.Optimizer)
    update = optimizer.apply_gradients([(tf.constant(grad), param)],
                                       global_step=global_step)
    slot_names = sorted(v.op.name for v in tf.compat.v1.global_variables())
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      sess.run(update)
      sess.run(update)
      result, step = sess.run([param, global_step])
  assert slot_names == ["global_step", "layer/kernel", "layer/kernel/adam_m",
                        "layer/kernel/adam_v"]
  assert step == 0  # apply_gradients leaves the global step alone.
  expected, m, v = param0.copy(), np.zeros(3), np.zeros(3)
  for _ in range(2):
    m = beta_1 * m + (1 - beta_1) * grad
    v = beta_2 * v + (1 - beta_2) * grad * grad
    expected = expected - lr * (m / (np.sqrt(v) + eps) + decay * expected)
  np.testing.assert_allclose(result, expected, rtol=1e-5)


def _adamw_steps(fused, skips, seed=0):
  """Values of every variable and moment after steps of random gradients.

  A decayed kernel, an excluded bias and a sparse (gathered) embedding
  table; `skips` gives each step's `skip` (all None: no skip input).
  """
  rng = np.random.RandomState(seed)
  with tf.Graph().as_default():
    kernel = tf.compat.v1.get_variable(
        "layer/kernel", initializer=tf.constant(rng.randn(4, 3), tf.float32))
    bias = tf.compat.v1.get_variable(
        "layer/bias", initializer=tf.constant(rng.randn(3), tf.float32))
    table = tf.compat.v1.get_variable(
        "word_embeddings", initializer=tf.constant(rng.randn(6, 2),
                                                   tf.float32))
    kernel_grad = tf.compat.v1.placeholder(tf.float32, [4, 3])
    bias_grad = tf.compat.v1.placeholder(tf.float32, [3])
    table_grad = tf.IndexedSlices(
        tf.compat.v1.placeholder(tf.float32, [3, 2]),
        tf.constant([1, 4, 1]), tf.constant([6, 2]))
    skip = tf.compat.v1.placeholder(tf.bool, [])
    learning_rate = tf.compat.v1.placeholder(tf.float32, [])
    optimizer = optimization.AdamWeightDecayOptimizer(
        learning_rate=learning_rate, weight_decay_rate=0.01,
        epsilon=1e-6, exclude_from_weight_decay=["bias"], fused=fused)
    pairs = [(kernel_grad, kernel), (bias_grad, bias), (table_grad, table)]
    with_skip = any(value is not None for value in skips)
    update = optimizer.apply_gradients(pairs,
                                       skip=skip if with_skip else None)
    everything = sorted(tf.compat.v1.global_variables(),
                        key=lambda v: v.op.name)
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      for step, skip_value in enumerate(skips):
        feed = {kernel_grad: rng.randn(4, 3), bias_grad: rng.randn(3),
                table_grad.values: rng.randn(3, 2),
                learning_rate: 0.01 * (1 + step)}
        if with_skip:
          feed[skip] = bool(skip_value)
        sess.run(update, feed)
      return {v.op.name: value
              for v, value in zip(everything, sess.run(everything))}


def test_fused_adamw_equals_googles_chain_of_ops():
  """Fused and unfused updates: the same values up to float32 rounding.

  TensorFlow's Adam kernel computes m + (g - m)(1 - beta_1) and forms
  1 - beta_2 in float32 (0.00100005 for 0.999), so after several steps the
  two differ by float32 rounding of the constants, not bit for bit: by less
  than a thousandth of what the steps moved each variable.
  """
  start = _adamw_steps(True, [])
  unfused = _adamw_steps(False, [None] * 5)
  fused = _adamw_steps(True, [None] * 5)
  assert sorted(fused) == sorted(unfused) == [
      "layer/bias", "layer/bias/adam_m", "layer/bias/adam_v", "layer/kernel",
      "layer/kernel/adam_m", "layer/kernel/adam_v", "word_embeddings",
      "word_embeddings/adam_m", "word_embeddings/adam_v"]
  for name in unfused:
    moved = np.max(np.abs(unfused[name] - start[name]))
    assert moved > 1e-3, name
    assert np.max(np.abs(fused[name] - unfused[name])) < 1e-3 * moved, name
  # Rows 0, 2, 3 and 5 of the table got no gradient: only decay moved them.
  np.testing.assert_allclose(
      fused["word_embeddings"][[0, 2, 3, 5]],
      start["word_embeddings"][[0, 2, 3, 5]] *
      np.prod([1 - 0.01 * (1 + step) * 0.01 for step in range(5)]),
      rtol=1e-5)


@pytest.mark.parametrize("fused", [True, False])
def test_a_skipped_step_changes_nothing(fused):
  """skip=True (a float16 overflow) leaves variables and moments alone."""
  two_steps = _adamw_steps(fused, [False, False])
  with_skips = _adamw_steps(fused, [False, True, True])
  one_step = _adamw_steps(fused, [False])
  for name in one_step:
    np.testing.assert_array_equal(with_skips[name], one_step[name],
                                  err_msg=name)
  assert not np.array_equal(two_steps["layer/kernel"],
                            one_step["layer/kernel"])


def test_sparse_embedding_gradients_are_applied():
  """Gathered embeddings give IndexedSlices; only looked-up rows move."""
  with tf.Graph().as_default():
    table = tf.compat.v1.get_variable(
        "word_embeddings", [5, 2], initializer=tf.compat.v1.ones_initializer())
    loss = tf.reduce_sum(tf.gather(table, [1, 3, 3]))
    train_op = optimization.create_optimizer(
        loss, init_lr=0.1, num_train_steps=10, num_warmup_steps=0,
        use_tpu=False)
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      sess.run(train_op)
      result = sess.run(table)
  moved = np.abs(result - (1.0 - 0.1 * 0.01)) > 1e-6
  np.testing.assert_array_equal(moved.any(axis=1),
                                [False, True, False, True, False])
  assert (result[[1, 3]] < 0.95).all()


def test_gradients_clipped_by_true_global_norm():
  """A huge gradient elsewhere shrinks a small one below Adam's epsilon.

  The table's gradient comes from a gather that repeats one row, so the
  global norm must count that row's dense gradient (4e4), not its four
  separate slices (norm 2e4).
  """
  lr, small_grad, dense_norm = 0.1, 1e-3, 4e4
  with tf.Graph().as_default():
    table = tf.compat.v1.get_variable(
        "word_embeddings", [2, 1], initializer=tf.compat.v1.ones_initializer())
    gamma = tf.compat.v1.get_variable(
        "LayerNorm/gamma", [1], initializer=tf.compat.v1.ones_initializer())
    loss = (1e4 * tf.reduce_sum(tf.gather(table, [0, 0, 0, 0])) +
            small_grad * tf.reduce_sum(gamma))
    train_op = optimization.create_optimizer(
        loss, init_lr=lr, num_train_steps=10, num_warmup_steps=0,
        use_tpu=False)
    with tf.compat.v1.Session() as sess:
      sess.run(tf.compat.v1.global_variables_initializer())
      sess.run(train_op)
      moved = 1.0 - sess.run(gamma)[0]
  clipped = small_grad / dense_norm
  update = 0.1 * clipped / (np.sqrt(0.001) * clipped + 1e-6)
  np.testing.assert_allclose(moved, lr * update, rtol=2e-3)
  # Unclipped, Adam would have moved it by about lr * sqrt(1000) / 10.
  assert moved < 1e-3


# Google's scripts build their graphs after disable_v2_behavior(), where
# tf.get_variable makes reference variables. It is process-wide, so the
# steps run in a child process: the default (fused) update and Google's.
_REFERENCE_VARIABLE_STEPS = """
import sys
import numpy as np
import tensorflow as tf
tf.compat.v1.disable_v2_behavior()
sys.path.insert(0, %r)
import test_optimization
with tf.Graph().as_default():
  kind = type(tf.compat.v1.get_variable("probe", [1])).__name__
fused = test_optimization._adamw_steps(True, [None] * 3)
google = test_optimization._adamw_steps(False, [None] * 3)
skipped = test_optimization._adamw_steps(True, [False, True])
one_step = test_optimization._adamw_steps(True, [False])
print(kind)
print(all(np.array_equal(fused[name], google[name]) for name in google))
print(all(np.array_equal(skipped[name], one_step[name]) for name in one_step))
"""


def test_adamw_on_reference_variables_is_googles_update():
  """disable_v2_behavior()'s RefVariables get Google's update, not a crash."""
  import subprocess
  from conftest import CHILD_ENV
  here = os.path.dirname(os.path.abspath(__file__))
  result = subprocess.run(
      [sys.executable, "-c", _REFERENCE_VARIABLE_STEPS % here],
      env=CHILD_ENV, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.split() == ["RefVariable", "True", "True"]
