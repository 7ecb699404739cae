"""Tests for the student trainers (single machine and Horovod).

A tiny random teacher (hidden 32) labels random records; the student is a
tiny BERT too. Losses are checked against numpy, the scripts are run as a
user would run them, and the Horovod runs use 2 CPU processes on localhost.
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

import conftest
import modeling
from bert_distillation import record_format
from bert_distillation import distillation
import network_distillation_single_machine_truncated as trainer
from bert_distillation import student_init
from bert_distillation import training_hooks
from bert_distillation import training_input

tf1 = tf.compat.v1

SCRIPT = "network_distillation_single_machine_truncated.py"
DISTRIBUTED = "network_distillation_distributed_truncated.py"
MAX_SEQ = 32
MAX_PRED = 5
TOP_K = 3
VENV_BIN = os.path.dirname(sys.executable)


# ---------------------------------------------------------------------------
# Data: records labelled by a tiny teacher.


def read_examples(path):
  """All records of a TFRecord file as tf.train.Example."""
  return [tf.train.Example.FromString(raw)
          for raw in tf1.io.tf_record_iterator(path)]


def int_column(examples, name):
  """An int64 feature of every example as an array [records, length]."""
  return np.array([list(e.features.feature[name].int64_list.value)
                   for e in examples])


def label_with_teacher(input_path, output_path, teacher_config,
                       truncation_factor, checkpoint_path=None, seed=0):
  """Runs a random-weight BERT teacher over the records and adds its labels.

  Writes the distillation record format (record_format) and, when
  checkpoint_path is given, saves the teacher there. Returns the number of
  records written.
  """
  examples = read_examples(input_path)
  graph = tf.Graph()
  with graph.as_default():
    tf1.set_random_seed(seed)
    config = modeling.BertConfig.from_dict(teacher_config)
    placeholders = {name: tf1.placeholder(tf.int32, [None, MAX_SEQ])
                    for name in ("input_ids", "input_mask", "segment_ids")}
    positions = tf1.placeholder(tf.int32, [None, MAX_PRED])
    _, mlm_logits, nsp_logits = modeling.pretraining_model(
        config, False, placeholders["input_ids"], positions,
        placeholders["input_mask"], placeholders["segment_ids"])
    probs = tf.nn.softmax(mlm_logits)
    next_sentence = tf.nn.softmax(nsp_logits)
    if truncation_factor:
      probs, indices = tf.nn.top_k(probs, truncation_factor)
    else:
      indices = tf.constant(0)
    feed = {placeholder: int_column(examples, name)
            for name, placeholder in placeholders.items()}
    feed[positions] = int_column(examples, "masked_lm_positions")
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      if checkpoint_path:
        tf1.train.Saver().save(session, checkpoint_path)
      probs, indices, next_sentence = session.run(
          [probs, indices, next_sentence], feed)

  with tf.io.TFRecordWriter(output_path) as writer:
    for i, example in enumerate(examples):
      feature = example.features.feature
      rows = slice(i * MAX_PRED, (i + 1) * MAX_PRED)
      if truncation_factor:
        feature[record_format.TRUNCATED_PROBS].CopyFrom(
            record_format.float_feature(probs[rows].reshape(-1)))
        feature[record_format.TOP_K_INDICES].CopyFrom(
            record_format.int64_feature(indices[rows].reshape(-1)))
      else:
        feature[record_format.FULL_PROBS].CopyFrom(
            record_format.float_feature(probs[rows].reshape(-1)))
      feature[record_format.NEXT_SENTENCE_PROBS].CopyFrom(
          record_format.float_feature(next_sentence[i]))
      writer.write(example.SerializeToString())
  return len(examples)


def write_full_mask_records(path, num_records, vocab_size, seed):
  """Pretraining records that all use every prediction slot (equal counts)."""
  rng = np.random.RandomState(seed)
  with tf.io.TFRecordWriter(path) as writer:
    for _ in range(num_records):
      ids = rng.randint(5, vocab_size, size=MAX_SEQ)
      ids[0], ids[-1] = 2, 3
      positions = sorted(rng.choice(np.arange(1, MAX_SEQ - 1), MAX_PRED,
                                    replace=False))
      masked_ids = [int(ids[p]) for p in positions]
      ids[positions] = 4
      writer.write(record_format.make_pretraining_example(
          [int(x) for x in ids], [1] * MAX_SEQ,
          [0] * (MAX_SEQ // 2) + [1] * (MAX_SEQ // 2),
          [int(p) for p in positions], masked_ids, [1.0] * MAX_PRED,
          int(rng.randint(0, 2))).SerializeToString())


def write_skewed_copy(input_path, output_path):
  """Copies records with masked_lm_ids mapped onto 5 tokens (10..14)."""
  with tf.io.TFRecordWriter(output_path) as writer:
    for example in read_examples(input_path):
      ids = example.features.feature["masked_lm_ids"].int64_list.value
      for i, token in enumerate(ids):
        ids[i] = 10 + token % 5
      writer.write(example.SerializeToString())


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_vocab):
  """Records, configs and a teacher checkpoint shared by this module."""
  root = tmp_path_factory.mktemp("distill_data")
  vocab_size = len(tiny_vocab[1])
  d = {"root": root, "vocab_size": vocab_size}

  def path(name):
    d[name] = str(root / name)
    return d[name]

  # The teacher's larger initializer_range gives peaked distributions.
  teacher = dict(conftest.tiny_config_dict(vocab_size), initializer_range=0.5)
  d["teacher_config"] = teacher
  with open(path("teacher_config.json"), "w") as f:
    json.dump(teacher, f)
  conftest.write_random_pretraining_records(
      path("plain.tfrecord"), 256, vocab_size, MAX_SEQ, MAX_PRED, seed=1)
  conftest.write_random_pretraining_records(
      path("plain_eval.tfrecord"), 64, vocab_size, MAX_SEQ, MAX_PRED, seed=2)
  label_with_teacher(d["plain.tfrecord"], path("distill.tfrecord"), teacher,
                     TOP_K, checkpoint_path=path("teacher") + "/model.ckpt")
  d["teacher_checkpoint"] = d["teacher"] + "/model.ckpt"
  label_with_teacher(d["plain_eval.tfrecord"], path("distill_eval.tfrecord"),
                     teacher, TOP_K)
  label_with_teacher(d["plain_eval.tfrecord"], path("full.tfrecord"),
                     teacher, 0)
  d["student_config"] = conftest.write_config(path("student.json"),
                                             vocab_size=vocab_size)
  # Masked tokens from a 5-token set: a hard-label signal worth learning.
  for name in ("plain", "plain_eval"):
    write_skewed_copy(d[name + ".tfrecord"], path(name + "_skewed.tfrecord"))
  no_dropout = dict(conftest.tiny_config_dict(vocab_size),
                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
  with open(path("student_no_dropout.json"), "w") as f:
    json.dump(no_dropout, f)
  return d


def trainer_args(data, output_dir, *extra, **overrides):
  """The trainer's command line for the tiny setup; flags override."""
  args = {
      "bert_config_file": data["student.json"],
      "input_file": data["distill.tfrecord"],
      "output_dir": output_dir,
      "truncation_factor": TOP_K,
      "max_seq_length": MAX_SEQ,
      "max_predictions_per_seq": MAX_PRED,
      "train_batch_size": 16,
      "eval_batch_size": 16,
      "learning_rate": 1e-3,
      "num_train_steps": 20,
      "num_warmup_steps": 2,
      "save_checkpoints_steps": 1000,
      "iterations_per_loop": 10,
  }
  args.update(overrides)
  flat = []
  for name, value in args.items():
    flat += ["--%s" % name, str(value)]
  return flat + list(extra)


def read_eval_results(output_dir):
  """output_dir/eval_results.txt as {name: float}."""
  results = {}
  with open(os.path.join(output_dir, "eval_results.txt")) as f:
    for line in f:
      name, value = line.split(" = ")
      results[name] = float(value)
  return results


def logged_losses(log):
  """The estimator's `loss = X, step = N` log lines as [(step, loss)]."""
  return [(int(step), float(loss)) for loss, step in
          re.findall(r"loss = ([-\d.e]+), step = (\d+)", log)]


# ---------------------------------------------------------------------------
# Losses against numpy.


def np_log_softmax(logits):
  shifted = logits - logits.max(axis=-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def np_soft_loss(logits, probs, indices, kd_target, temperature):
  """The per-position soft loss, straight from the definitions."""
  log_q = np_log_softmax(logits / temperature)
  if indices is None:
    target = probs ** (1 / temperature)
    target /= target.sum(-1, keepdims=True)
    return -(target * log_q).sum(-1)
  log_q_top = np.take_along_axis(log_q, indices, axis=1)
  tempered = probs ** (1 / temperature)
  if kd_target == "truncated":
    target = tempered * probs.sum(-1, keepdims=True) / tempered.sum(
        -1, keepdims=True)
    return -(target * log_q_top).sum(-1)
  if kd_target == "renormalized":
    return -(tempered / tempered.sum(-1, keepdims=True) * log_q_top).sum(-1)
  buckets = np.concatenate([probs, 1 - probs.sum(-1, keepdims=True)], -1)
  target = buckets ** (1 / temperature)
  target /= target.sum(-1, keepdims=True)
  q_top = np.exp(log_q_top)
  student = np.concatenate([q_top, 1 - q_top.sum(-1, keepdims=True)], -1)
  return -(target * np.log(student)).sum(-1)


def fixed_batch(vocab_size=50, rows=6, k=4, seed=3):
  """Student logits, teacher logits/top-k and weights for the loss tests."""
  rng = np.random.RandomState(seed)
  student_logits = rng.normal(0, 2, (rows, vocab_size)).astype(np.float32)
  teacher_logits = rng.normal(0, 3, (rows, vocab_size)).astype(np.float32)
  teacher_probs = np.exp(np_log_softmax(teacher_logits)).astype(np.float32)
  indices = np.argsort(-teacher_probs, axis=1)[:, :k]
  top_probs = np.take_along_axis(teacher_probs, indices, axis=1)
  weights = np.array([1, 1, 0, 1, 1, 0], np.float32)[:rows]
  return student_logits, teacher_logits, teacher_probs, indices, top_probs, (
      weights)


def run_graph(fn):
  """Builds fn() in a fresh graph and returns its value."""
  with tf.Graph().as_default(), tf1.Session() as session:
    return session.run(fn())


@pytest.mark.parametrize("kd_target", ["truncated", "renormalized",
                                       "residual"])
@pytest.mark.parametrize("temperature", [1.0, 2.5, 0.5])
def test_top_k_soft_loss_matches_numpy(kd_target, temperature):
  logits, _, _, indices, top_probs, weights = fixed_batch()
  per_position, scalar = run_graph(lambda: (
      distillation.soft_cross_entropy(tf.constant(logits), tf.constant(top_probs),
                                 tf.constant(indices), kd_target,
                                 temperature),
      distillation.masked_lm_soft_loss(tf.constant(logits), tf.constant(top_probs),
                                  tf.constant(indices), tf.constant(weights),
                                  kd_target, temperature)))
  expected = np_soft_loss(logits.astype(np.float64), top_probs, indices,
                          kd_target, temperature)
  np.testing.assert_allclose(per_position, expected, rtol=1e-5, atol=1e-5)
  # Scaled by T^2 and averaged over the weighted positions.
  np.testing.assert_allclose(
      scalar, temperature ** 2 * (expected * weights).sum() / (
          weights.sum() + 1e-5), rtol=1e-5)


def test_truncated_default_is_the_original_loss():
  """At T = 1 the default is -sum_topk p log q with unnormalised p."""
  logits, _, _, indices, top_probs, _ = fixed_batch()
  loss = run_graph(lambda: distillation.soft_cross_entropy(
      tf.constant(logits), tf.constant(top_probs), tf.constant(indices)))
  log_q = np_log_softmax(logits.astype(np.float64))
  original = -(top_probs * np.take_along_axis(log_q, indices, 1)).sum(-1)
  np.testing.assert_allclose(loss, original, rtol=1e-5)
  assert top_probs.sum(-1).max() < 1.0  # The target really is unnormalised.


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_full_distribution_temperature_equals_teacher_softmax_at_t(
    temperature):
  """k = 0: normalise(p^(1/T)) is the teacher's softmax(u/T)."""
  logits, teacher_logits, teacher_probs, _, _, weights = fixed_batch()
  loss = run_graph(lambda: distillation.masked_lm_soft_loss(
      tf.constant(logits), tf.constant(teacher_probs), None,
      tf.constant(weights), temperature=temperature))
  target = np.exp(np_log_softmax(teacher_logits / temperature))
  per_position = -(target * np_log_softmax(logits / temperature)).sum(-1)
  expected = temperature ** 2 * (per_position * weights).sum() / (
      weights.sum() + 1e-5)
  np.testing.assert_allclose(loss, expected, rtol=1e-4)


def test_temperature_t_squared_keeps_gradients_comparable():
  """T^2 keeps the soft gradient's size comparable across temperatures."""
  logits, _, _, indices, top_probs, weights = fixed_batch()

  def gradient_norm(temperature):
    student = tf.constant(logits)
    loss = distillation.masked_lm_soft_loss(
        student, tf.constant(top_probs), tf.constant(indices),
        tf.constant(weights), "renormalized", temperature)
    return tf.norm(tf.gradients(loss, student)[0])

  norms = run_graph(lambda: [gradient_norm(t) for t in (1.0, 4.0)])
  # The gradient w.r.t. the logits carries 1/T; without the T^2 factor the
  # T=4 gradient here would be 16x smaller (0.06 against 0.37 at T=1).
  assert norms[1] > norms[0] / 4, norms


def test_residual_loss_is_finite_when_top_k_covers_almost_everything():
  logits = np.array([[10.0, 9.0, -30.0]], np.float32)
  probs = np.array([[0.6, 0.4]], np.float32)
  indices = np.array([[0, 1]])
  loss = run_graph(lambda: distillation.soft_cross_entropy(
      tf.constant(logits), tf.constant(probs), tf.constant(indices),
      "residual", 2.0))
  assert np.all(np.isfinite(loss))


def test_next_sentence_soft_loss_matches_numpy():
  rng = np.random.RandomState(0)
  logits = rng.normal(size=(4, 2)).astype(np.float32)
  probs = np.exp(np_log_softmax(rng.normal(size=(4, 2)))).astype(np.float32)
  loss = run_graph(lambda: distillation.soft_cross_entropy(
      tf.constant(logits), tf.constant(probs), temperature=2.0))
  np.testing.assert_allclose(loss, np_soft_loss(logits, probs, None, None,
                                                2.0), rtol=1e-5)


def test_loss_mix_follows_the_weights():
  """total = soft * kd + hard * mlm + nsp, with the parts computed once."""
  rng = np.random.RandomState(1)
  features = {
      "masked_lm_weights": np.ones([2, MAX_PRED], np.float32),
      "masked_lm_ids": rng.randint(0, 20, [2, MAX_PRED]).astype(np.int32),
      "next_sentence_labels": np.array([[0], [1]], np.int32),
      record_format.TRUNCATED_PROBS: np.full([2, MAX_PRED * 2], 0.3,
                                             np.float32),
      record_format.TOP_K_INDICES: rng.randint(0, 20, [2, MAX_PRED * 2]),
      record_format.NEXT_SENTENCE_PROBS: np.array([[0.8, 0.2], [0.3, 0.7]],
                                                  np.float32),
  }
  logits = rng.normal(size=(2 * MAX_PRED, 20)).astype(np.float32)
  nsp_logits = rng.normal(size=(2, 2)).astype(np.float32)

  def losses(options):
    tensors = {k: tf.constant(v) for k, v in features.items()}
    return distillation.compute_losses(options, tensors, tf.constant(logits),
                                  tf.constant(nsp_logits), MAX_PRED, True)

  mixed, soft_only, hard_nsp = run_graph(lambda: [
      losses(distillation.LossOptions(2.0, "renormalized", 0.7, 0.3, "soft")),
      losses(distillation.LossOptions(2.0, "renormalized", 1.0, 0.0, "none")),
      losses(distillation.LossOptions(1.0, "truncated", 0.0, 1.0, "hard"))])
  assert mixed["total"] == pytest.approx(
      0.7 * mixed["kd_loss"] + 0.3 * mixed["masked_lm_loss"] +
      mixed["next_sentence_soft_loss"], rel=1e-5)
  assert soft_only["total"] == pytest.approx(soft_only["kd_loss"], rel=1e-6)
  assert hard_nsp["total"] == pytest.approx(
      hard_nsp["masked_lm_loss"] + hard_nsp["next_sentence_loss"], rel=1e-6)


# ---------------------------------------------------------------------------
# Student initialisation.


def build_student(config_dict):
  """Builds a student graph in the default graph; returns its variables."""
  config = modeling.BertConfig.from_dict(config_dict)
  ids = tf.zeros([1, 8], tf.int32)
  modeling.pretraining_model(config, False, ids, tf.zeros([1, 2], tf.int32))
  return tf1.trainable_variables()


def initialised_values(config_dict, checkpoint, layer_map, **kwargs):
  """Student variable values after init_student_from_checkpoint."""
  with tf.Graph().as_default():
    tvars = build_student(config_dict)
    loaded = student_init.init_student_from_checkpoint(tvars, checkpoint,
                                                  layer_map, **kwargs)
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      values = dict(zip([v.name[:-2] for v in tvars], session.run(tvars)))
  return values, loaded


@pytest.fixture(scope="module")
def four_layer_teacher(tmp_path_factory, data):
  """A 4-layer teacher checkpoint and its values."""
  path = str(tmp_path_factory.mktemp("teacher4") / "model.ckpt")
  config = conftest.tiny_config_dict(data["vocab_size"], num_hidden_layers=4)
  with tf.Graph().as_default():
    build_student(config)
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      tf1.train.Saver().save(session, path)
  return path, tf.train.load_checkpoint(path)


def test_init_layer_map_copies_teacher_layers(data, four_layer_teacher):
  checkpoint, reader = four_layer_teacher
  student = conftest.tiny_config_dict(data["vocab_size"], num_hidden_layers=2)
  values, loaded = initialised_values(student, checkpoint, [3, 1])
  for name, value in values.items():
    source = name.replace("layer_0/", "layer_3/").replace("layer_1/",
                                                          "layer_1/")
    np.testing.assert_array_equal(value, reader.get_tensor(source), name)
    assert loaded[name] == source
  assert any("embeddings" in n for n in loaded)
  assert any(n.startswith("cls/") for n in loaded)
  assert any("pooler" in n for n in loaded)
  # The student's layer 0 differs from the teacher's layer 0.
  name = "bert/encoder/layer_0/attention/self/query/kernel"
  assert not np.array_equal(values[name], reader.get_tensor(name))


def test_init_by_name_without_map(data, four_layer_teacher):
  checkpoint, reader = four_layer_teacher
  student = conftest.tiny_config_dict(data["vocab_size"], num_hidden_layers=2)
  values, _ = initialised_values(student, checkpoint, [])
  name = "bert/encoder/layer_1/output/dense/kernel"
  np.testing.assert_array_equal(values[name], reader.get_tensor(name))


def test_init_shape_mismatch_is_a_clear_error(data, four_layer_teacher):
  checkpoint, reader = four_layer_teacher
  student = conftest.tiny_config_dict(data["vocab_size"], hidden_size=16,
                                      intermediate_size=32,
                                      num_hidden_layers=2)
  with pytest.raises(trainer.InputError) as error:
    initialised_values(student, checkpoint, [0, 2])
  message = str(error.value)
  assert "shape mismatch" in message and "--init_skip_mismatched" in message
  # One line: the first mismatch and how many others.
  assert "shape mismatch: bert/embeddings/word_embeddings: student [%d, 16]" % (
      data["vocab_size"]) in message
  assert re.search(r"\(and \d+ other variables\)\. Pass", message), message
  assert "\n" not in message

  values, loaded = initialised_values(student, checkpoint, [0, 2],
                                      skip_mismatched=True)
  # Shapes that agree are still copied (the output biases).
  assert sorted(loaded) == ["cls/predictions/output_bias",
                            "cls/seq_relationship/output_bias"]
  name = "cls/predictions/output_bias"
  np.testing.assert_array_equal(values[name], reader.get_tensor(name))


def test_init_layer_map_must_fit(data, four_layer_teacher):
  checkpoint, _ = four_layer_teacher
  student = conftest.tiny_config_dict(data["vocab_size"], num_hidden_layers=2)
  with pytest.raises(trainer.InputError, match="has 3 entries but the "
                     "student"):
    initialised_values(student, checkpoint, [0, 1, 2])
  with pytest.raises(trainer.InputError, match=r"teacher layers \[7\]"):
    initialised_values(student, checkpoint, [0, 7])


# ---------------------------------------------------------------------------
# Input checks.


def check(data, path, **overrides):
  """Runs check_input_files on one file with the tiny setup's flags."""
  args = dict(max_seq_length=MAX_SEQ, max_predictions_per_seq=MAX_PRED,
              truncation_factor=TOP_K, vocab_size=data["vocab_size"],
              needs_teacher_labels=True)
  args.update(overrides)
  return training_input.check_input_files([path], "--input_file", **args)


def test_input_checks_accept_good_files(data):
  assert check(data, data["distill.tfrecord"]) == distillation.TOP_K
  assert check(data, data["full.tfrecord"],
               truncation_factor=0) == distillation.FULL
  # Held-out records may carry the full distribution whatever k says.
  assert check(data, data["full.tfrecord"],
               accept_full=True) == distillation.FULL
  assert check(data, data["plain.tfrecord"],
               needs_teacher_labels=False) is None


@pytest.mark.parametrize("name, overrides, message", [
    ("plain.tfrecord", {}, "holds no teacher labels; run "
     "produce_teacher_labels.py first"),
    ("distill.tfrecord", {"truncation_factor": 10},
     "--truncation_factor is 10 but .* holds top-3 teacher labels "
     r"\(truncation_factor 3\); pass --truncation_factor 3"),
    ("full.tfrecord", {}, "holds full teacher distributions over "
     r"\d+ tokens \(truncation_factor 0\); pass --truncation_factor 0"),
    ("distill.tfrecord", {"truncation_factor": 0}, "holds top-3"),
    ("distill.tfrecord", {"max_seq_length": 128}, "--max_seq_length is 128 "
     "but .* holds sequences of length 32; pass --max_seq_length 32"),
    ("distill.tfrecord", {"max_predictions_per_seq": 20},
     "--max_predictions_per_seq is 20 but .* holds 5 predictions"),
    ("full.tfrecord", {"truncation_factor": 0, "vocab_size": 1000},
     r"full teacher distributions over \d+ tokens .* vocab_size "
     r"\(--bert_config_file\) is 1000"),
])
def test_input_check_errors(data, name, overrides, message):
  with pytest.raises(trainer.InputError, match=message):
    check(data, data[name], **overrides)


def test_teacher_index_beyond_student_vocab(data, tmp_path):
  """Token ids fit but a teacher label points past the student's vocab."""
  example = read_examples(data["distill.tfrecord"])[0]
  indices = example.features.feature[record_format.TOP_K_INDICES].int64_list
  indices.value[1] = data["vocab_size"] + 7
  path = str(tmp_path / "bad_index.tfrecord")
  with tf.io.TFRecordWriter(path) as writer:
    writer.write(example.SerializeToString())
  with pytest.raises(trainer.InputError, match="teacher labels hold token "
                     "index %d but the student's vocab_size" % (
                         data["vocab_size"] + 7)):
    check(data, path)
  with pytest.raises(trainer.InputError, match="holds token id"):
    check(data, data["distill.tfrecord"], vocab_size=20)


def test_empty_glob_and_empty_file(data, tmp_path):
  with pytest.raises(trainer.InputError, match="--input_file: .* matches no "
                     "files"):
    training_input.expand_files(str(tmp_path / "nothing*.tfrecord"), "--input_file")
  empty = str(tmp_path / "empty.tfrecord")
  open(empty, "w").close()
  with pytest.raises(trainer.InputError, match="holds no records"):
    check(data, empty)


def test_script_exits_with_the_input_error(data, tmp_path):
  """The script prints the message and exits 1, before building a model."""
  result = conftest.run_script(
      SCRIPT, *trainer_args(data, str(tmp_path / "out"), "--do_train", "True",
                            input_file=data["plain.tfrecord"]), check=False)
  assert result.returncode == 1
  assert "ERROR: --input_file:" in result.stderr
  assert "run produce_teacher_labels.py first" in result.stderr
  assert not os.path.exists(str(tmp_path / "out"))


# ---------------------------------------------------------------------------
# Flag forms.


def test_readme_boolean_forms_parse_as_written(data, tmp_path):
  """`--do_train False --do_eval False` are both read as False.

  (Had either been read as True, as plain absl does, this would run. The
  resume test runs `--do_train True --do_eval false`.)
  """
  out = str(tmp_path / "out")
  result = conftest.run_script(SCRIPT, *trainer_args(
      data, out, "--do_train", "False", "--do_eval", "False"), check=False)
  assert result.returncode == 1
  assert "At least one of --do_train or --do_eval" in result.stderr

  result = conftest.run_script(SCRIPT, *trainer_args(
      data, out, "--do_train", "True", "stray"), check=False)
  assert result.returncode != 0
  assert "Unexpected argument(s): stray" in result.stderr


# ---------------------------------------------------------------------------
# Training runs.


def test_distillation_lowers_loss_and_raises_agreement(data, tmp_path):
  out = str(tmp_path / "out")
  common = dict(eval_input_file=data["distill_eval.tfrecord"],
                temperature=2.0, kd_target="renormalized",
                hard_label_weight=0.0, num_train_steps=120,
                num_warmup_steps=10, save_checkpoints_steps=60)
  # Evaluating a randomly initialised checkpoint measures the untrained
  # student (eval-only needs a checkpoint).
  untrained = str(tmp_path / "untrained" / "model.ckpt")
  with tf.Graph().as_default():
    build_student(data["student_config"])
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      tf1.train.Saver().save(session, untrained)
  conftest.run_script(SCRIPT, *trainer_args(
      data, str(tmp_path / "untrained_eval"), "--do_eval", "True",
      init_checkpoint=untrained, **common))
  before = read_eval_results(str(tmp_path / "untrained_eval"))

  result = conftest.run_script(SCRIPT, *trainer_args(
      data, out, "--do_train", "True", "--do_eval", "True",
      eval_every_steps=60, **common))
  after = read_eval_results(out)
  assert after["global_step"] == 120
  assert after["kd_loss"] < before["kd_loss"] - 0.1, (before, after)
  assert after["teacher_top1_agreement"] > before[
      "teacher_top1_agreement"] + 0.2, (before, after)
  for name in ("masked_lm_accuracy", "masked_lm_loss", "next_sentence_loss",
               "next_sentence_accuracy", "loss"):
    assert name in after
  losses = logged_losses(result.stderr)
  assert losses[-1][1] < losses[0][1], losses

  history = [json.loads(line) for line in open(
      os.path.join(out, "eval_history.jsonl"))]
  assert [entry["step"] for entry in history] == [60, 120]
  assert history[-1]["kd_loss"] == pytest.approx(after["kd_loss"], rel=1e-5)

  stats = json.load(open(os.path.join(out, "train_stats.json")))
  assert stats["steps"] == 120 and stats["train_seq_per_s"] > 0
  with tf.Graph().as_default():
    assert stats["params"] == modeling.count_parameters(
        build_student(data["student_config"]))
  assert glob.glob(os.path.join(out, "eval", "events.out.tfevents.*"))


def test_hard_only_on_plain_records_skips_teacher_metrics(data, tmp_path):
  """The demo pre-trains its teacher this way: no teacher labels at all."""
  out = str(tmp_path / "out")
  result = conftest.run_script(SCRIPT, *trainer_args(
      data, out, "--do_train", "True", "--do_eval", "True",
      input_file=data["plain_skewed.tfrecord"],
      eval_input_file=data["plain_eval_skewed.tfrecord"], soft_label_weight=0,
      hard_label_weight=1, num_train_steps=40))
  results = read_eval_results(out)
  assert "teacher_top1_agreement" not in results and "kd_loss" not in results
  # Chance is log(vocab_size) ~ 5; the 5 masked tokens give log(5) ~ 1.6.
  assert results["masked_lm_loss"] < 3.0, results
  assert results["masked_lm_accuracy"] > 0.1, results
  losses = logged_losses(result.stderr)
  assert losses[-1][1] < losses[0][1], losses


def test_hard_only_on_labelled_records_with_layer_map(data, tmp_path):
  """The scratch baseline: hard labels, but teacher metrics still reported.

  Also runs --init_checkpoint with --init_layer_map from the command line:
  the step-0 checkpoint holds the teacher's layers swapped.
  """
  out = str(tmp_path / "out")
  conftest.run_script(SCRIPT, *trainer_args(
      data, out, "--do_train", "True", "--do_eval", "True",
      eval_input_file=data["distill_eval.tfrecord"], soft_label_weight=0,
      hard_label_weight=1, nsp_loss="none", num_train_steps=10,
      init_checkpoint=data["teacher_checkpoint"], init_layer_map="1,0"))
  results = read_eval_results(out)
  assert 0 <= results["teacher_top1_agreement"] <= 1
  assert results["kd_loss"] > 0
  teacher = tf.train.load_checkpoint(data["teacher_checkpoint"])
  student = tf.train.load_checkpoint(os.path.join(out, "model.ckpt-0"))
  for layer, source in ((0, 1), (1, 0)):
    name = "bert/encoder/layer_%d/intermediate/dense/kernel" % layer
    np.testing.assert_array_equal(
        student.get_tensor(name), teacher.get_tensor(name.replace(
            "layer_%d" % layer, "layer_%d" % source)))
  np.testing.assert_array_equal(
      student.get_tensor("bert/embeddings/word_embeddings"),
      teacher.get_tensor("bert/embeddings/word_embeddings"))


def test_resume_after_kill_9(data, tmp_path):
  out = str(tmp_path / "out")
  # `--do_eval false`, space-separated, must really turn evaluation off.
  args = trainer_args(data, out, "--do_train", "True", "--do_eval", "false",
                      num_train_steps=200, save_checkpoints_steps=10,
                      train_batch_size=8)
  command = [sys.executable, os.path.join(conftest.REPO, SCRIPT)] + args
  process = subprocess.Popen(command, cwd=conftest.REPO, env=conftest.CHILD_ENV,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
      if trainer.checkpoint_step(out) >= 10:
        break
      time.sleep(0.05)
    assert process.poll() is None, "training ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
  finally:
    if process.poll() is None:
      process.kill()
  killed_at = trainer.checkpoint_step(out)
  assert 10 <= killed_at < 200

  result = conftest.run_script(SCRIPT, *args)
  assert "Restoring parameters from" in result.stderr
  assert trainer.checkpoint_step(out) == 200
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(out))
  assert reader.get_tensor("bert/embeddings/word_embeddings").shape == (
      data["vocab_size"], 32)
  stats = json.load(open(os.path.join(out, "train_stats.json")))
  assert stats["steps"] == 200 - killed_at
  assert not os.path.exists(os.path.join(out, "eval_results.txt"))


def test_step_timeout_aborts_a_stuck_run(data, tmp_path):
  """A named pipe that no one writes to blocks the input for good."""
  good = str(tmp_path / "a_good.tfrecord")
  shutil.copy(data["distill.tfrecord"], good)
  stuck = str(tmp_path / "z_stuck.tfrecord")  # A pipe: not checked.
  os.mkfifo(stuck)
  start = time.time()
  result = conftest.run_script(SCRIPT, *trainer_args(
      data, str(tmp_path / "out"), "--do_train", "True",
      input_file="%s,%s" % (good, stuck),
      step_timeout_secs=3), check=False, timeout=120)
  assert result.returncode == training_hooks.TIMEOUT_EXIT_STATUS, result.stderr[-3000:]
  assert "No training step finished in" in result.stderr
  assert "--step_timeout_secs 3" in result.stderr
  assert time.time() - start < 110


# ---------------------------------------------------------------------------
# Horovod.


def horovod_env(temp_dir):
  """Child environment: the venv's launchers first on PATH, own TMPDIR."""
  env = dict(conftest.CHILD_ENV)
  env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
  env["TMPDIR"] = temp_dir
  return env


def mpirun_command(np_, script_args):
  """mpirun on loopback running the distributed trainer."""
  return conftest.mpirun_command(
      np_, [os.path.join(conftest.REPO, DISTRIBUTED)] + script_args,
      env=horovod_env("set"))


def horovodrun_command(np_, script_args):
  """horovodrun with Gloo on loopback running the distributed trainer."""
  return conftest.horovodrun_command(
      np_, [os.path.join(conftest.REPO, DISTRIBUTED)] + script_args)


def run_launcher(command, temp_dir):
  """Runs a launcher command; returns its combined output.

  The ranks' TMPDIR is temp_dir; afterwards it must hold no scratch model
  directory of a rank.
  """
  os.makedirs(temp_dir)
  result = subprocess.run(command, cwd=conftest.REPO,
                          env=horovod_env(temp_dir), capture_output=True,
                          text=True, timeout=300)
  output = result.stdout + result.stderr
  assert result.returncode == 0, output[-6000:]
  # Rank 1 did use a scratch dir there, and removed it.
  assert os.path.join(temp_dir, "distill_rank1.tmp-") in output
  assert not glob.glob(os.path.join(temp_dir, "distill_rank*")), (
      "a rank left its scratch model dir")
  return output


def checksums(output):
  """{rank: (sha256, sum)} from the ranks' checksum log lines."""
  return {int(rank): (digest, total) for rank, digest, total in re.findall(
      r"rank (\d+) variables checksum: sha256=(\w+) sum=(\S+)", output)}


def assert_only_rank0_wrote(output_dir):
  """output_dir holds one run's files: no rank dirs, one events file."""
  entries = set(os.listdir(output_dir))
  allowed = re.compile(r"^(checkpoint|bert_config\.json|graph\.pbtxt|eval|"
                       r"eval_results\.txt|"
                       r"eval_history\.jsonl|train_stats\.json|"
                       r"events\.out\.tfevents\..*|model\.ckpt-\d+\..*)$")
  assert all(allowed.match(e) for e in entries), entries
  assert len([e for e in entries if e.startswith("events.out")]) == 1, entries


@pytest.fixture(scope="module")
def half_batches(data, tmp_path_factory):
  """Two files of 4 records each, equal masked counts, and a start point."""
  root = tmp_path_factory.mktemp("halves")
  files = []
  for half in range(2):
    plain = str(root / ("plain_%d.tfrecord" % half))
    write_full_mask_records(plain, 4, data["vocab_size"], seed=10 + half)
    files.append(str(root / ("half_%d.tfrecord" % half)))
    label_with_teacher(plain, files[-1], data["teacher_config"], TOP_K)
  start = str(root / "start" / "model.ckpt")
  with open(data["student_no_dropout.json"]) as f:
    config = json.load(f)
  with tf.Graph().as_default():
    build_student(config)
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      tf1.train.Saver().save(session, start)
  return files, start


def test_horovodrun_two_ranks_equal_one_process_on_the_whole_batch(
    data, half_batches, tmp_path):
  """--scale_learning_rate False: 2 ranks x 4 records == 1 process x 8."""
  files, start = half_batches
  common = dict(bert_config_file=data["student_no_dropout.json"],
                init_checkpoint=start, num_warmup_steps=0,
                hard_label_weight=0.5, learning_rate=1e-3)
  single_dir = str(tmp_path / "single")
  conftest.run_script(SCRIPT, *trainer_args(
      data, single_dir, "--do_train", "True", input_file=",".join(files),
      train_batch_size=8, num_train_steps=1, **common))

  hvd_dir = str(tmp_path / "horovod")
  output = run_launcher(horovodrun_command(2, trainer_args(
      data, hvd_dir, "--do_train", "True", "--do_eval", "True",
      "--scale_learning_rate", "False", input_file=",".join(files),
      eval_input_file=data["distill_eval.tfrecord"], train_batch_size=4,
      num_train_steps=2, **common)), str(tmp_path / "tmp"))

  sums = checksums(output)
  assert sorted(sums) == [0, 1] and sums[0] == sums[1], sums
  assert_only_rank0_wrote(hvd_dir)
  assert os.path.exists(os.path.join(hvd_dir, "eval_results.txt"))
  # Both log handlers print it (INFO:tensorflow: and absl), rank 0 only.
  eval_lines = [line for line in output.splitlines()
                if "***** Eval results *****" in line]
  assert eval_lines and all(line.startswith("[0]") for line in eval_lines), (
      eval_lines)

  # Each rank read its own file; only rank 0 read --init_checkpoint.
  for rank in (0, 1):
    assert re.search(r"\[%d\].*Shard %d of 2: files %s\n" % (
        rank, rank, re.escape(files[rank])), output), output[-3000:]
  loaded = [line for line in output.splitlines() if "Initialised" in line]
  assert loaded and all(line.startswith("[0]") for line in loaded), loaded

  one = tf.train.load_checkpoint(os.path.join(single_dir, "model.ckpt-1"))
  two = tf.train.load_checkpoint(os.path.join(hvd_dir, "model.ckpt-1"))
  initial = tf.train.load_checkpoint(start)
  moved = 0.0
  for name in initial.get_variable_to_shape_map():
    np.testing.assert_allclose(two.get_tensor(name), one.get_tensor(name),
                               rtol=0, atol=1e-5, err_msg=name)
    moved = max(moved, np.abs(one.get_tensor(name) -
                              initial.get_tensor(name)).max())
  assert moved > 1e-4  # The step did change the weights.


def test_mpirun_two_ranks_share_records_of_one_file(data, tmp_path):
  """One input file, two ranks: records are sharded; steps are divided."""
  out = str(tmp_path / "out")
  output = run_launcher(mpirun_command(2, trainer_args(
      data, out, "--do_train", "True", "--do_eval", "True",
      eval_input_file=data["distill_eval.tfrecord"], eval_every_steps=2,
      num_train_steps=8, save_checkpoints_steps=2)), str(tmp_path / "tmp"))
  sums = checksums(output)
  assert sorted(sums) == [0, 1] and sums[0] == sums[1], sums
  assert trainer.checkpoint_step(out) == 4  # 8 steps over 2 ranks.
  # Rank 0 evaluated between chunks while rank 1 waited for it.
  history = [json.loads(line) for line in open(
      os.path.join(out, "eval_history.jsonl"))]
  assert [entry["step"] for entry in history] == [2, 4]
  for rank in (0, 1):
    assert "Shard %d of 2: every 2-th record of 1 file" % rank in output
  assert_only_rank0_wrote(out)
  stats = json.load(open(os.path.join(out, "train_stats.json")))
  assert stats["processes"] == 2
