"""--use_xla (bert_distillation/xla_compile.py): the trainer compiles, and
nothing else changes.

A compiled run is compared with the same run without XLA: the same seed, no
dropout, the same records. XLA_FLAGS=--xla_dump_to makes XLA write every
module it compiles; the TensorFlow op names in them show what ran as XLA
code. Elsewhere: the fp16 loss scale's overflow skip under XLA in
test_precision.py, produce_teacher_labels.py --use_xla in
test_teacher_labels.py. The Horovod wrapper shares this trainer's run() and
model_fn; its own part, the session config, is checked here.
"""

import glob
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

import conftest
from bert_distillation import estimator_training
import modeling
import optimization
from bert_distillation import xla_compile
# The shared fixture and helpers of the trainer's tests.
from test_distillation_trainer import (  # pylint: disable=unused-import
    SCRIPT, build_student, data, logged_losses, read_eval_results,
    trainer_args)

tf1 = tf.compat.v1


@pytest.fixture(scope="module")
def student(data, tmp_path_factory):
  """(path, dict) of a 1-layer x 16 config without dropout (quick to compile)."""
  path = str(tmp_path_factory.mktemp("xla_student") / "bert_config.json")
  config = dict(conftest.tiny_config_dict(
      data["vocab_size"], hidden_size=16, num_hidden_layers=1,
      intermediate_size=32), hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0)
  with open(path, "w") as f:
    json.dump(config, f)
  return path, config


# ---------------------------------------------------------------------------
# The module.


def test_session_config_sets_the_jit_level_on_a_copy():
  assert xla_compile.session_config(None, False) is None
  config = tf1.ConfigProto(intra_op_parallelism_threads=3)
  config.gpu_options.visible_device_list = "1"
  assert xla_compile.session_config(config, False) is config
  compiled = xla_compile.session_config(config, True)
  assert (compiled.graph_options.optimizer_options.global_jit_level ==
          tf1.OptimizerOptions.ON_1)
  # The rest is kept (a Horovod rank's GPU), and the caller's proto is not
  # changed.
  assert compiled.intra_op_parallelism_threads == 3
  assert compiled.gpu_options.visible_device_list == "1"
  assert (config.graph_options.optimizer_options.global_jit_level ==
          tf1.OptimizerOptions.DEFAULT)
  assert (xla_compile.session_config(None, True).graph_options
          .optimizer_options.global_jit_level == tf1.OptimizerOptions.ON_1)


def unused_model_fn(features, labels, mode):
  """A model_fn for an Estimator that is never run."""
  raise AssertionError("not run: %s %s %s" % (features, labels, mode))


def test_estimator_sessions_get_the_distributions_config_with_xla(tmp_path):
  """build_estimator: a rank's pinned config (Horovod), plus XLA if asked."""
  pinned = tf1.ConfigProto()
  pinned.gpu_options.visible_device_list = "1"
  distribution = estimator_training.Distribution(session_config=pinned)
  for use_xla, level in ((False, tf1.OptimizerOptions.DEFAULT),
                         (True, tf1.OptimizerOptions.ON_1)):
    estimator = estimator_training.build_estimator(
        unused_model_fn, distribution, str(tmp_path), 10, 10, None,
        use_xla=use_xla)
    session_config = estimator.config.session_config
    assert session_config.gpu_options.visible_device_list == "1"
    assert (session_config.graph_options.optimizer_options.global_jit_level
            == level)


def marked_for_xla(op):
  """Whether jit_scope marked the op for compilation."""
  try:
    return op.get_attr("_XlaCompile")
  except ValueError:
    return False


@pytest.mark.parametrize("enabled", [False, True])
def test_jit_scope_marks_the_computation_not_the_variables(enabled):
  with tf.Graph().as_default() as graph:
    with xla_compile.jit_scope(enabled):
      weights = tf1.get_variable("weights", [4, 4])
      product = tf.matmul(tf.ones([2, 4]), weights)
      gradient = tf.gradients(tf.reduce_sum(product), weights)[0]
    # The gradient of a marked op is marked too.
    assert marked_for_xla(product.op) == enabled
    assert marked_for_xla(gradient.op) == enabled
    # The variable's initialiser and its read for the checkpoints are not
    # (each would be a compiled cluster of its own).
    own_ops = [op for op in graph.get_operations()
               if op.name.startswith("weights/")]
    assert own_ops and not any(marked_for_xla(op) for op in own_ops)


def bf16_training_losses(config_dict, use_xla, steps=4):
  """Losses of `steps` bf16 training steps of a student on fixed inputs."""
  rng = np.random.RandomState(0)
  batch, length, positions = 8, 16, 3
  ids = rng.randint(5, config_dict["vocab_size"], [batch, length])
  masked = rng.randint(1, length, [batch, positions])
  labels = rng.randint(5, config_dict["vocab_size"], [batch * positions])
  with tf.Graph().as_default():
    tf1.set_random_seed(1)
    with xla_compile.jit_scope(use_xla):
      _, logits, _ = modeling.pretraining_model(
          modeling.BertConfig.from_dict(config_dict), True,
          tf.constant(ids, tf.int32), tf.constant(masked, tf.int32),
          compute_type=tf.bfloat16, mlm_head_type=tf.bfloat16)
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels=tf.constant(labels, tf.int32), logits=logits))
      train_op = optimization.create_optimizer(loss, 1e-2, 100, 0, False)
    run_metadata = tf1.RunMetadata()
    with tf1.Session(
        config=xla_compile.session_config(None, use_xla)) as session:
      session.run(tf1.global_variables_initializer())
      losses = [session.run([loss, train_op], options=tf1.RunOptions(
          output_partition_graphs=True), run_metadata=run_metadata)[0]
                for _ in range(steps)]
  assert conftest.xla_ran(run_metadata) == use_xla
  return losses


def test_bf16_with_xla_stays_within_bf16_rounding(student):
  plain = bf16_training_losses(student[1], use_xla=False)
  compiled = bf16_training_losses(student[1], use_xla=True)
  assert np.all(np.isfinite(compiled))
  # bfloat16 keeps 8 significant bits: about 0.4% per rounding.
  np.testing.assert_allclose(compiled, plain, rtol=1e-2)
  # The steps did train (the comparison is not of a constant).
  assert plain[-1] < plain[0] - 0.01, plain


# ---------------------------------------------------------------------------
# The trainer.


def compiled_op_names(dump_dir):
  """The TensorFlow ops that XLA compiled, from its dumped HLO modules."""
  names = set()
  for path in glob.glob(os.path.join(dump_dir, "*before_optimizations.txt")):
    with open(path) as dump:
      names.update(re.findall(r'op_name="([^"]+)"', dump.read()))
  return names


def train(data, student, output_dir, use_xla, *extra, **flags):
  """Trains 6 steps (a loss logged at each); returns (log, compiled ops)."""
  dump_dir = output_dir + "_hlo"
  env = dict(conftest.CHILD_ENV, XLA_FLAGS="--xla_dump_to=" + dump_dir)
  flags = dict(dict(bert_config_file=student[0], num_train_steps=6,
                    iterations_per_loop=1, random_seed=3), **flags)
  result = conftest.run_script(SCRIPT, *trainer_args(
      data, output_dir, "--do_train", "True", "--use_xla", str(use_xla),
      *extra, **flags), env=env)
  return result.stderr, compiled_op_names(dump_dir)


def checkpoint_values(output_dir):
  """{name: value} of the latest checkpoint in output_dir."""
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(output_dir))
  return {name: reader.get_tensor(name)
          for name in reader.get_variable_to_shape_map()}


def test_xla_trains_like_without_it_and_its_checkpoint_loads_without(
    data, student, tmp_path):
  """fp32, the teacher in the graph, a layer loss, evaluation: all compiled."""
  common = dict(input_file=data["plain.tfrecord"],
                eval_input_file=data["plain_eval.tfrecord"],
                teacher_config_file=data["teacher_config.json"],
                teacher_checkpoint=data["teacher_checkpoint"],
                hidden_loss_weight=1.0, hard_label_weight=0.5)
  plain_dir, xla_dir = str(tmp_path / "plain"), str(tmp_path / "xla")
  plain_log, plain_compiled = train(data, student, plain_dir, False,
                                    "--do_eval", "True", **common)
  xla_log, xla_compiled = train(data, student, xla_dir, True, "--do_eval",
                                "True", **common)

  # Without the flag nothing is compiled; with it the student, the teacher,
  # the gradients and the optimizer's clipping ran as XLA code.
  assert not plain_compiled
  for prefix in ("bert/encoder/", "teacher/bert/encoder/", "gradients/bert/",
                 "clip_by_global_norm/"):
    assert any(name.startswith(prefix) for name in xla_compiled), prefix
  # The same run up to float rounding: every step's loss, the evaluation.
  losses, plain_losses = logged_losses(xla_log), logged_losses(plain_log)
  assert [step for step, _ in losses] == [step for step, _ in plain_losses]
  assert len(losses) >= 6, losses
  np.testing.assert_allclose([loss for _, loss in losses],
                             [loss for _, loss in plain_losses], rtol=1e-5)
  plain_results, xla_results = (read_eval_results(plain_dir),
                                read_eval_results(xla_dir))
  assert sorted(xla_results) == sorted(plain_results)
  for name, value in plain_results.items():
    assert xla_results[name] == pytest.approx(value, rel=1e-4, abs=1e-6), name

  # The same checkpoint: the same variables (Adam moments and the hidden
  # projection included, no teacher), the same values up to rounding.
  plain_values, xla_values = (checkpoint_values(plain_dir),
                              checkpoint_values(xla_dir))
  assert sorted(xla_values) == sorted(plain_values)
  assert not [name for name in xla_values if "teacher" in name]
  for name, value in plain_values.items():
    np.testing.assert_allclose(xla_values[name], value, rtol=1e-4, atol=1e-6,
                               err_msg=name)
  # An ordinary fp32 graph restores the student by name, strictly.
  with tf.Graph().as_default():
    tvars = build_student(student[1])
    loaded = modeling.init_from_checkpoint_strict(
        tf.train.latest_checkpoint(xla_dir), tvars)
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      kernel = session.run(tvars[0])
  assert len(loaded) == len(tvars)
  np.testing.assert_array_equal(kernel, xla_values[tvars[0].op.name])
