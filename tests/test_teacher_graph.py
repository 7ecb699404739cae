"""Tests for bert_distillation/teacher_graph.py: a frozen teacher in the
student's graph.

A tiny teacher checkpoint is written once; a tiny student learns to match
the teacher's last hidden state under tf.estimator, as the trainers do.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from bert_distillation import checkpoint_usage
from bert_distillation import command_line
import conftest
import modeling
from bert_distillation import teacher_graph

tf1 = tf.compat.v1

VOCAB_SIZE = 60
SEQ = 8
BATCH = 4


def config(**overrides):
  """A tiny BertConfig (2 layers x 32 unless overridden)."""
  return modeling.BertConfig.from_dict(
      conftest.tiny_config_dict(VOCAB_SIZE, **overrides))


def save_teacher(path, teacher_config, with_next_sentence=True,
                 training_state=False, seed=0):
  """Saves a random pretraining BERT (scope bert/, heads cls/) at path."""
  with tf.Graph().as_default():
    tf1.set_random_seed(seed)
    ids = tf.zeros([1, SEQ], tf.int32)
    model = modeling.BertModel(teacher_config, False, ids)
    modeling.masked_lm_logits(teacher_config, model.get_sequence_output(),
                              model.get_embedding_table(),
                              tf.zeros([1, 1], tf.int32))
    if with_next_sentence:
      modeling.next_sentence_logits(teacher_config, model.get_pooled_output())
    else:
      # As a BertForMaskedLM import: no pooler either.
      for var in tf1.global_variables("bert/pooler"):
        tf1.get_collection_ref(tf1.GraphKeys.GLOBAL_VARIABLES).remove(var)
    if training_state:
      tf1.train.get_or_create_global_step()
      tf1.get_variable("bert/embeddings/word_embeddings/adam_m",
                       [VOCAB_SIZE, teacher_config.hidden_size])
      tf1.get_variable("loss_scale/scale", [])
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      return tf1.train.Saver().save(session, path)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
  """(checkpoint prefix, folder) of a tiny teacher with training state."""
  folder = tmp_path_factory.mktemp("teacher")
  prefix = save_teacher(str(folder / "model.ckpt-7"), config(),
                        training_state=True)
  return prefix, str(folder)


def inputs():
  """Constant ids, mask (one padded row) and segments."""
  rng = np.random.RandomState(0)
  ids = rng.randint(5, VOCAB_SIZE, size=(BATCH, SEQ)).astype(np.int32)
  mask = np.ones((BATCH, SEQ), np.int32)
  mask[1, 5:] = 0
  return tf.constant(ids), tf.constant(mask), tf.zeros_like(ids)


def build_and_restore(teacher_config, checkpoint, **kwargs):
  """Builds the teacher's encoder (no heads) and restores it."""
  kwargs.setdefault("ignore_prefixes", ("cls/",))
  ids, mask, segments = inputs()
  teacher_graph.build_teacher(teacher_config, ids, mask, segments)
  return teacher_graph.restore_teacher(checkpoint, **kwargs)


def expect_input_error(function, *words):
  """Runs function; its InputError must be one line holding every word."""
  with pytest.raises(command_line.InputError) as caught:
    function()
  message = str(caught.value)
  assert "\n" not in message, message
  for word in words:
    assert word in message, (word, message)
  return message


# ---------------------------------------------------------------------------
# Frozen under tf.estimator: trained student, untouched teacher.


class TeacherValuesHook(tf1.train.SessionRunHook):
  """Records the teacher's variable values when a session ends."""

  def __init__(self, values):
    self.values = values

  def end(self, session):
    variables = teacher_graph.teacher_variables()
    self.values.update(zip([var.op.name for var in variables],
                           session.run(variables)))


def model_fn_for(teacher_config, checkpoint):
  """A student that learns the teacher's last hidden state (MSE)."""

  def model_fn(features, labels, mode):
    del features, labels
    ids, mask, segments = inputs()
    student = modeling.BertModel(config(), True, ids, mask, segments)
    teacher = teacher_graph.build_teacher(teacher_config, ids, mask, segments)
    teacher_graph.restore_teacher(checkpoint, ignore_prefixes=("cls/",))
    loss = tf.reduce_mean(tf.square(
        student.get_sequence_output() -
        tf.stop_gradient(teacher.get_sequence_output())))
    optimizer = tf1.train.AdamOptimizer(1e-2)
    train_op = optimizer.minimize(loss, tf1.train.get_global_step())
    return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)

  return model_fn


def train(estimator, steps, values):
  """Trains to `steps` with the hook that records the teacher."""
  estimator.train(lambda: tf.data.Dataset.from_tensors(({}, 0)).repeat(),
                  max_steps=steps, hooks=[TeacherValuesHook(values)])


def test_teacher_is_frozen_and_absent_from_the_student_checkpoint(
    teacher, tmp_path):
  prefix, folder = teacher
  out = str(tmp_path / "student")
  estimator = tf.estimator.Estimator(
      model_fn_for(config(), folder),
      config=tf.estimator.RunConfig(model_dir=out, save_checkpoints_steps=3,
                                    tf_random_seed=1))
  trained = {}
  train(estimator, 3, trained)
  reader = tf.train.load_checkpoint(prefix)
  assert len(trained) == len(checkpoint_usage.unused_variables(
      prefix, (), ignored_prefixes=("cls/",)))
  for name, value in trained.items():
    np.testing.assert_array_equal(
        value, reader.get_tensor(name[len("teacher/"):]), err_msg=name)

  student = tf.train.load_checkpoint(tf.train.latest_checkpoint(out))
  names = set(student.get_variable_to_shape_map())
  assert "bert/embeddings/word_embeddings" in names
  assert "bert/embeddings/word_embeddings/Adam" in names  # The student's.
  assert not [name for name in names if "teacher" in name], sorted(names)

  # The student did train.
  start = tf.train.load_checkpoint(os.path.join(out, "model.ckpt-0"))
  assert np.abs(student.get_tensor("bert/embeddings/word_embeddings") -
                start.get_tensor("bert/embeddings/word_embeddings")).max() > 0

  # Resuming restores the student and reloads the teacher.
  resumed = {}
  train(estimator, 5, resumed)
  assert tf.train.latest_checkpoint(out).endswith("model.ckpt-5")
  for name, value in resumed.items():
    np.testing.assert_array_equal(value, trained[name], err_msg=name)


def test_teacher_scope_variables_are_not_trainable_nor_global():
  with tf.Graph().as_default():
    with teacher_graph.teacher_scope():
      head = tf1.get_variable("output_weights", [2, 32])
    student = tf1.get_variable("output_weights", [2, 32])
    assert head.op.name == "teacher/output_weights"
    assert tf1.trainable_variables() == [student]
    assert tf1.global_variables() == [student]
    assert head in tf1.local_variables()
    assert teacher_graph.teacher_variables() == [head]
    grads = tf.gradients(tf.reduce_sum(head * student), [head, student])
    assert grads[1] is not None


# ---------------------------------------------------------------------------
# Restoring: folder or prefix; what does not fit.


def test_restore_from_folder_or_prefix(teacher):
  prefix, folder = teacher
  for given in (prefix, folder):
    with tf.Graph().as_default():
      assert build_and_restore(config(), given) == prefix


def test_not_a_checkpoint(tmp_path):
  empty = str(tmp_path / "empty")
  os.makedirs(empty)
  with tf.Graph().as_default():
    expect_input_error(lambda: build_and_restore(config(), empty),
                       "--teacher_checkpoint", empty, "without a checkpoint")
  with tf.Graph().as_default():
    expect_input_error(
        lambda: build_and_restore(config(), empty + "/model.ckpt"),
        "--teacher_checkpoint", "is not a checkpoint")


@pytest.mark.parametrize("overrides,words", [
    (dict(hidden_size=64), ["shapes differ", "bert/embeddings/word_embeddings",
                            "teacher [60, 64], checkpoint [60, 32]"]),
    (dict(num_hidden_layers=3), ["the checkpoint lacks",
                                 "bert/encoder/layer_2/"]),
    (dict(num_hidden_layers=1), ["does not use", "bert/encoder/layer_1/"]),
])
def test_config_that_does_not_fit_is_one_error(teacher, overrides, words):
  prefix, _ = teacher
  with tf.Graph().as_default():
    message = expect_input_error(
        lambda: build_and_restore(config(**overrides), prefix,
                                  flag_name="--teacher_init"),
        "--teacher_init", prefix, *words)
  # Training state is never reported as unused.
  assert "adam_m" not in message and "global_step" not in message
  assert "loss_scale" not in message


def test_ignored_and_optional_prefixes(tmp_path):
  """A BertForMaskedLM import: no pooler, no next-sentence head."""
  masked_lm_only = save_teacher(str(tmp_path / "mlm.ckpt"), config(),
                                with_next_sentence=False)
  with tf.Graph().as_default():
    expect_input_error(lambda: build_and_restore(config(), masked_lm_only),
                       "the checkpoint lacks bert/pooler/dense/bias")
  with tf.Graph().as_default():
    build_and_restore(config(), masked_lm_only,
                      optional_prefixes=("bert/pooler/",))
  with tf.Graph().as_default():
    expect_input_error(
        lambda: build_and_restore(config(), masked_lm_only,
                                  ignore_prefixes=(),
                                  optional_prefixes=("bert/pooler/",)),
        "does not use", "cls/predictions/output_bias")

  # A full teacher: the head this caller does not build may be ignored.
  full = save_teacher(str(tmp_path / "full.ckpt"), config())
  with tf.Graph().as_default():
    ids, mask, segments = inputs()
    teacher_graph.build_teacher(config(), ids, mask, segments)
    expect_input_error(lambda: teacher_graph.restore_teacher(full),
                       "does not use", "cls/seq_relationship/output_bias")
    teacher_graph.restore_teacher(
        full, ignore_prefixes=("cls/predictions/", "cls/seq_relationship/"))


def test_restored_teacher_computes_the_checkpoint_model(teacher):
  """Same outputs as the original BertModel with the checkpoint loaded."""
  prefix, _ = teacher
  outputs = []
  for in_teacher_scope in (True, False):
    with tf.Graph().as_default():
      ids, mask, segments = inputs()
      if in_teacher_scope:
        model = teacher_graph.build_teacher(config(), ids, mask, segments)
        teacher_graph.restore_teacher(
            prefix, ignore_prefixes=("cls/",))
      else:
        model = modeling.BertModel(config(), False, ids, mask, segments)
        modeling.init_from_checkpoint_strict(prefix)
      with tf1.Session() as session:
        session.run([tf1.global_variables_initializer(),
                     tf1.local_variables_initializer()])
        outputs.append(session.run(model.get_sequence_output()))
  np.testing.assert_array_equal(outputs[0], outputs[1])


def test_vocabulary_mismatch_is_one_error(tmp_path):
  expect_input_error(
      lambda: teacher_graph.check_teacher_matches_student(
          config(), modeling.BertConfig.from_dict(
              conftest.tiny_config_dict(VOCAB_SIZE + 1)), "--teacher_config"),
      "--teacher_config", "vocab_size 60", "61", "one vocabulary")
  expect_input_error(
      lambda: teacher_graph.check_teacher_matches_student(
          config(max_position_embeddings=16), config(),
          max_seq_length=32),
      "--max_seq_length 32", "max_position_embeddings 16",
      "--teacher_config_file")
  teacher_graph.check_teacher_matches_student(config(hidden_size=64,
                                                     num_attention_heads=4),
                                              config())

  bad = str(tmp_path / "bad.json")
  with open(bad, "w") as f:
    json.dump({"vocab_size": 3}, f)
  expect_input_error(lambda: teacher_graph.load_teacher_config(bad),
                     "--teacher_config_file", "missing key")
