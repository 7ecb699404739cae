"""The faster training step against the original one, and the step profiler.

The step's speed-ups (the soft loss's gather gradient as one scatter_nd, the
one-pass AdamW update) must not change the numbers beyond float rounding:
a few steps of a tiny student are run both ways, in float32 and bfloat16.
"""

import json
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

import conftest
from bert_distillation import distillation
import modeling
import optimization
from bert_distillation import record_format

from conftest import REPO, run_script

sys.path.insert(0, os.path.join(REPO, "bench"))
import profile_step  # pylint: disable=g-import-not-at-top,wrong-import-position

tf1 = tf.compat.v1

VOCAB, SEQ, PREDICTIONS, TOP_K, BATCH = 97, 16, 4, 5, 3


def _config():
  return modeling.BertConfig(
      vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
      num_attention_heads=2, intermediate_size=64,
      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
      max_position_embeddings=SEQ)


def _batches(steps, seed=0):
  """Random features and top-k labels, one dict of arrays per step."""
  rng = np.random.RandomState(seed)
  batches = []
  for _ in range(steps):
    probs = rng.dirichlet(np.ones(TOP_K), BATCH * PREDICTIONS) * 0.9
    indices = np.stack([rng.choice(VOCAB, TOP_K, replace=False)
                        for _ in range(BATCH * PREDICTIONS)])
    batches.append({
        "input_ids": rng.randint(5, VOCAB, (BATCH, SEQ)),
        "positions": np.stack([rng.choice(SEQ, PREDICTIONS, replace=False)
                               for _ in range(BATCH)]),
        "masked_ids": rng.randint(5, VOCAB, BATCH * PREDICTIONS),
        "probs": probs.astype(np.float32),
        "indices": indices.astype(np.int32)})
  return batches


def _run_steps(compute_type, new_path, steps=4):
  """Per-step losses and the first step's gradients, one path or the other.

  new_path=False is the step as it was: tf.gather's own gradient in the
  soft loss and Google's chain of ops for AdamW.
  """
  batches = _batches(steps)
  with tf.Graph().as_default():
    tf1.set_random_seed(1)
    input_ids = tf1.placeholder(tf.int32, [BATCH, SEQ])
    positions = tf1.placeholder(tf.int32, [BATCH, PREDICTIONS])
    masked_ids = tf1.placeholder(tf.int32, [BATCH * PREDICTIONS])
    probs = tf1.placeholder(tf.float32, [BATCH * PREDICTIONS, TOP_K])
    indices = tf1.placeholder(tf.int32, [BATCH * PREDICTIONS, TOP_K])
    _, logits, _ = modeling.pretraining_model(
        _config(), True, input_ids, positions, with_next_sentence=False,
        compute_type=compute_type, mlm_head_type=compute_type)
    weights = tf.ones([BATCH * PREDICTIONS])
    gather = distillation.gather_per_row
    if not new_path:
      distillation.gather_per_row = lambda values, ids: tf.gather(
          values, ids, batch_dims=1)
    try:
      loss = distillation.masked_lm_soft_loss(logits, probs, indices,
                                              weights) + (
          distillation.weighted_mean(
              tf.nn.sparse_softmax_cross_entropy_with_logits(
                  labels=masked_ids, logits=logits), weights))
    finally:
      distillation.gather_per_row = gather
    # The pooler has no gradient without the next-sentence head.
    gradients = [tf.convert_to_tensor(grad) for grad in tf.gradients(
        loss, tf1.trainable_variables()) if grad is not None]
    train_op = optimization.create_optimizer(
        loss, 1e-3, 100, 0, False, fused=new_path)
    losses = []
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      first_gradients = None
      for batch in batches:
        feed = {input_ids: batch["input_ids"], positions: batch["positions"],
                masked_ids: batch["masked_ids"], probs: batch["probs"],
                indices: batch["indices"]}
        if first_gradients is None:
          first_gradients = sess.run(gradients, feed)
        value, _ = sess.run([loss, train_op], feed)
        losses.append(value)
  return np.array(losses), first_gradients


def test_new_step_equals_the_old_one_in_float32():
  """Same gradients bit for bit; losses apart only by AdamW's rounding."""
  old_losses, old_gradients = _run_steps(tf.float32, new_path=False)
  new_losses, new_gradients = _run_steps(tf.float32, new_path=True)
  for old, new in zip(old_gradients, new_gradients):
    np.testing.assert_array_equal(new, old)
  # Before any update the loss is the same computation; the two graphs may
  # still schedule its reductions on different threads, so allow one ulp.
  np.testing.assert_allclose(new_losses[0], old_losses[0], rtol=3e-7)
  np.testing.assert_allclose(new_losses, old_losses, rtol=1e-5)
  # It trained: the steps are not comparing a frozen model with itself.
  assert abs(new_losses[-1] - new_losses[0]) > 1e-3


def test_new_step_equals_the_old_one_in_bfloat16():
  old_losses, _ = _run_steps(tf.bfloat16, new_path=False)
  new_losses, _ = _run_steps(tf.bfloat16, new_path=True)
  np.testing.assert_allclose(new_losses, old_losses, rtol=1e-2)


def test_gather_per_row_gradient_sums_repeated_ids():
  """Repeated ids in a row add up, as tf.gather's gradient does."""
  with tf.Graph().as_default():
    values = tf.constant(np.arange(12, dtype=np.float32).reshape(2, 6))
    ids = tf.constant([[1, 1, 4], [0, 5, 2]])
    upstream = tf.constant([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mine = distillation.gather_per_row(values, ids)
    theirs = tf.gather(values, ids, batch_dims=1)
    grad_mine = tf.gradients(mine, values, upstream)[0]
    grad_theirs = tf.convert_to_tensor(
        tf.gradients(theirs, values, upstream)[0])
    with tf1.Session() as sess:
      result = sess.run([mine, theirs, grad_mine, grad_theirs])
  np.testing.assert_array_equal(result[0], result[1])
  np.testing.assert_array_equal(result[2], result[3])
  assert result[2][0, 1] == 3.0


@pytest.mark.parametrize("name, op_type, kind", [
    ("bert/encoder/layer_0/intermediate/dense/BiasAdd", "_FusedMatMul",
     "matmul"),
    ("gradients/cls/predictions/MatMul_grad/MatMul_1", "MatMul", "matmul"),
    ("bert/encoder/layer_1/attention/self/MatMul", "BatchMatMulV2", "matmul"),
    ("bert/encoder/layer_0/attention/self/Cast", "Cast", "cast"),
    ("gradients/bert/encoder/layer_0/output/LayerNorm/moments/mean_grad/Sum",
     "Sum", "layer_norm"),
    ("bert/encoder/layer_0/attention/self/Softmax", "Softmax", "softmax"),
    ("gradients/LogSoftmax_grad/Exp", "Exp", "softmax"),
    ("bert/encoder/layer_0/intermediate/dense/Gelu/Tanh", "Tanh", "gelu"),
    ("bert/encoder/layer_0/output/dropout/random_uniform/RandomUniform",
     "RandomUniform", "dropout"),
    ("AdamWeightDecayOptimizer/ResourceApplyAdam", "ResourceApplyAdam",
     "optimizer"),
    ("clip_by_global_norm/mul_3", "Mul", "optimizer"),
    ("IteratorGetNext", "IteratorGetNext", "input"),
    ("bert/encoder/layer_0/attention/self/transpose", "Transpose",
     "data_movement"),
    ("bert/encoder/layer_0/attention/output/add", "AddV2",
     "other_elementwise"),
    ("bert/embeddings/ReadVariableOp", "ReadVariableOp", "bookkeeping"),
])
def test_op_kinds(name, op_type, kind):
  assert profile_step.op_kind(name, op_type) == kind


def test_wall_time_is_split_between_overlapping_ops():
  kinds, types = profile_step.split_wall_time([
      (0, 10, "matmul", "MatMul"), (5, 15, "gelu", "Tanh"),
      (20, 30, "matmul", "MatMul")])
  assert kinds == pytest.approx({"matmul": 17.5e-6, "gelu": 7.5e-6})
  assert types == pytest.approx({"MatMul": 17.5e-6, "Tanh": 7.5e-6})


@pytest.fixture(scope="module")
def tiny_distillation_inputs(tmp_path_factory):
  """A tiny student config and records with random top-3 labels."""
  root = tmp_path_factory.mktemp("profile_inputs")
  vocab_size, max_seq, max_pred, top_k = 50, 16, 3, 3
  conftest.write_config(str(root / "config.json"), vocab_size=vocab_size)
  plain = str(root / "plain.tfrecord")
  conftest.write_random_pretraining_records(plain, 16, vocab_size, max_seq,
                                            max_pred)
  rng = np.random.RandomState(0)
  records = str(root / "labels.tfrecord")
  with tf.io.TFRecordWriter(records) as writer:
    for serialized in tf.compat.v1.io.tf_record_iterator(plain):
      example = tf.train.Example.FromString(serialized)
      feature = example.features.feature
      feature[record_format.TRUNCATED_PROBS].CopyFrom(
          record_format.float_feature(np.tile([0.5, 0.3, 0.1], max_pred)))
      feature[record_format.TOP_K_INDICES].CopyFrom(
          record_format.int64_feature(np.concatenate([
              rng.choice(vocab_size, top_k, replace=False)
              for _ in range(max_pred)])))
      writer.write(example.SerializeToString())
  return {"config": root / "config.json", "records": records,
          "top_k": top_k, "max_seq_length": max_seq,
          "max_predictions_per_seq": max_pred}


def test_profile_step_traces_the_real_trainer(tiny_distillation_inputs,
                                              tmp_path):
  """A traced run of the trainer: every kind present, times add up."""
  inputs = tiny_distillation_inputs
  output = tmp_path / "profile.json"
  timeline = tmp_path / "trace.json"
  run_script(
      "bench/profile_step.py", "--profile_output", output,
      "--profile_skip_steps", 1, "--profile_steps", 1,
      "--profile_timeline", timeline,
      "--bert_config_file", inputs["config"], "--input_file",
      inputs["records"], "--output_dir", tmp_path / "out",
      "--truncation_factor", inputs["top_k"], "--max_seq_length",
      inputs["max_seq_length"], "--max_predictions_per_seq",
      inputs["max_predictions_per_seq"], "--do_train", "True",
      "--train_batch_size", 4, "--num_train_steps", 3,
      "--num_warmup_steps", 0)
  result = json.loads(output.read_text())
  assert result["traced_steps"] == 1
  kinds = result["kinds_s"]
  assert list(kinds) == list(profile_step.KINDS)
  for kind in ("matmul", "layer_norm", "softmax", "gelu", "optimizer"):
    assert kinds[kind] > 0, kind
  # Split wall time: never more than the step took.
  assert 0 < sum(kinds.values()) <= result["traced_wall_s"] * 1.05
  assert "traceEvents" in json.loads(timeline.read_text())
  result = run_script(
      "bench/profile_step.py", "--profile_output", output,
      "--profile_skip_steps", 3, "--profile_steps", 2,
      "--bert_config_file", inputs["config"], "--input_file",
      inputs["records"], "--output_dir", tmp_path / "out2",
      "--truncation_factor", inputs["top_k"], "--do_train", "True",
      "--num_train_steps", 4, check=False)
  assert result.returncode != 0
  assert "ERROR: --num_train_steps 4" in result.stderr
