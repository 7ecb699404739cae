"""Tests for modeling.py: Google's names, checkpoint loading, the maths."""

import json

import numpy as np
import pytest
import tensorflow as tf

import modeling
from conftest import tiny_config_dict

tf1 = tf.compat.v1

VOCAB_SIZE = 50
SEQ_LENGTH = 8
NUM_LAYERS = 2


def _config(**overrides):
  values = tiny_config_dict(VOCAB_SIZE, num_hidden_layers=NUM_LAYERS)
  values.update(overrides)
  return modeling.BertConfig.from_dict(values)


def _inputs(seed=0, batch_size=3, length=SEQ_LENGTH, num_real=(8, 5, 3)):
  """Random ids, a mask with `num_real` real tokens per row, segment ids."""
  rng = np.random.RandomState(seed)
  input_ids = rng.randint(1, VOCAB_SIZE, size=(batch_size, length))
  input_mask = np.zeros((batch_size, length), np.int32)
  segment_ids = np.zeros((batch_size, length), np.int32)
  for row, count in enumerate(num_real):
    input_mask[row, :count] = 1
    segment_ids[row, count // 2:count] = 1
    input_ids[row, count:] = 0
  return input_ids.astype(np.int32), input_mask, segment_ids


def _build(config, is_training, inputs, use_one_hot_embeddings=False,
           with_heads=False):
  """Builds a BertModel (and optionally the heads) on constant inputs.

  The scope is named so that a second model can reuse the variables.
  """
  input_ids, input_mask, segment_ids = [tf.constant(x) for x in inputs]
  model = modeling.BertModel(
      config=config, is_training=is_training, input_ids=input_ids,
      input_mask=input_mask, token_type_ids=segment_ids,
      use_one_hot_embeddings=use_one_hot_embeddings, scope="bert")
  outputs = {"sequence": model.get_sequence_output(),
             "pooled": model.get_pooled_output()}
  if with_heads:
    positions = tf.constant([[1, 2], [0, 3], [1, 1]], tf.int32)
    outputs["mlm"] = modeling.masked_lm_logits(
        config, model.get_sequence_output(), model.get_embedding_table(),
        positions)
    outputs["nsp"] = modeling.next_sentence_logits(
        config, model.get_pooled_output())
  return model, outputs


def _google_names(num_layers):
  """Google's checkpoint variable names for a BERT with its heads."""
  names = ["bert/embeddings/word_embeddings",
           "bert/embeddings/token_type_embeddings",
           "bert/embeddings/position_embeddings",
           "bert/embeddings/LayerNorm/beta", "bert/embeddings/LayerNorm/gamma",
           "bert/pooler/dense/kernel", "bert/pooler/dense/bias",
           "cls/predictions/transform/dense/kernel",
           "cls/predictions/transform/dense/bias",
           "cls/predictions/transform/LayerNorm/beta",
           "cls/predictions/transform/LayerNorm/gamma",
           "cls/predictions/output_bias",
           "cls/seq_relationship/output_weights",
           "cls/seq_relationship/output_bias"]
  for i in range(num_layers):
    prefix = "bert/encoder/layer_%d/" % i
    for part in ("query", "key", "value"):
      names += [prefix + "attention/self/%s/kernel" % part,
                prefix + "attention/self/%s/bias" % part]
    for part in ("attention/output/dense", "intermediate/dense",
                 "output/dense"):
      names += [prefix + part + "/kernel", prefix + part + "/bias"]
    for part in ("attention/output/LayerNorm", "output/LayerNorm"):
      names += [prefix + part + "/beta", prefix + part + "/gamma"]
  return names


def test_variable_names_and_shapes_match_google():
  config = _config()
  with tf.Graph().as_default():
    _build(config, False, _inputs(), with_heads=True)
    shapes = {v.op.name: v.shape.as_list() for v in tf1.global_variables()}
  assert sorted(shapes) == sorted(_google_names(NUM_LAYERS))
  hidden, inner = config.hidden_size, config.intermediate_size
  assert shapes["bert/embeddings/word_embeddings"] == [VOCAB_SIZE, hidden]
  assert shapes["bert/embeddings/position_embeddings"] == [
      config.max_position_embeddings, hidden]
  assert shapes["bert/embeddings/token_type_embeddings"] == [2, hidden]
  # Dense kernels are [in, out].
  assert shapes["bert/encoder/layer_1/intermediate/dense/kernel"] == [
      hidden, inner]
  assert shapes["bert/encoder/layer_1/output/dense/kernel"] == [inner, hidden]
  assert shapes["cls/seq_relationship/output_weights"] == [2, hidden]
  assert shapes["cls/predictions/output_bias"] == [VOCAB_SIZE]


def test_checkpoint_round_trip_by_name(tmp_path):
  config = _config()
  inputs = _inputs()
  checkpoint = str(tmp_path / "bert_model.ckpt")
  with tf.Graph().as_default():
    tf1.set_random_seed(1)
    _, outputs = _build(config, False, inputs, with_heads=True)
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      expected = sess.run(outputs)
      tf1.train.Saver().save(sess, checkpoint)

  with tf.Graph().as_default():
    tf1.set_random_seed(2)  # Different init: only loading can match.
    _, outputs = _build(config, False, inputs, with_heads=True)
    tvars = tf1.trainable_variables()
    assignment_map, initialized = modeling.get_assignment_map_from_checkpoint(
        tvars, checkpoint)
    assert sorted(assignment_map) == sorted(_google_names(NUM_LAYERS))
    assert all(v.name in initialized for v in tvars)
    tf1.train.init_from_checkpoint(checkpoint, assignment_map)
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      actual = sess.run(outputs)
  for key in expected:
    np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)


def _np_layer_norm(x, gamma, beta):
  mean = x.mean(axis=-1, keepdims=True)
  variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
  return (x - mean) / np.sqrt(variance + 1e-12) * gamma + beta


def _np_gelu(x):
  return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) *
                                  (x + 0.044715 * x ** 3)))


def _np_softmax(x):
  x = x - x.max(axis=-1, keepdims=True)
  e = np.exp(x)
  return e / e.sum(axis=-1, keepdims=True)


def _np_bert(w, config, input_ids, input_mask, segment_ids):
  """A float64 numpy BERT written from the paper and Google's conventions."""
  num_heads = config.num_attention_heads
  batch, length = input_ids.shape
  head = config.hidden_size // num_heads

  def dense(x, name):
    return x.dot(w[name + "/kernel"]) + w[name + "/bias"]

  x = (w["bert/embeddings/word_embeddings"][input_ids] +
       w["bert/embeddings/token_type_embeddings"][segment_ids] +
       w["bert/embeddings/position_embeddings"][:length][None])
  x = _np_layer_norm(x, w["bert/embeddings/LayerNorm/gamma"],
                     w["bert/embeddings/LayerNorm/beta"])
  adder = (1.0 - input_mask[:, None, None, :]) * -10000.0
  for i in range(config.num_hidden_layers):
    p = "bert/encoder/layer_%d/" % i

    def heads(t):
      return t.reshape(batch, length, num_heads, head).transpose(0, 2, 1, 3)
    q = heads(dense(x, p + "attention/self/query"))
    k = heads(dense(x, p + "attention/self/key"))
    v = heads(dense(x, p + "attention/self/value"))
    scores = np.einsum("bhqd,bhkd->bhqk", q, k) / np.sqrt(head) + adder
    context = np.einsum("bhqk,bhkd->bhqd", _np_softmax(scores), v)
    context = context.transpose(0, 2, 1, 3).reshape(batch, length, -1)
    attention = _np_layer_norm(
        dense(context, p + "attention/output/dense") + x,
        w[p + "attention/output/LayerNorm/gamma"],
        w[p + "attention/output/LayerNorm/beta"])
    inner = _np_gelu(dense(attention, p + "intermediate/dense"))
    x = _np_layer_norm(dense(inner, p + "output/dense") + attention,
                       w[p + "output/LayerNorm/gamma"],
                       w[p + "output/LayerNorm/beta"])
  pooled = np.tanh(dense(x[:, 0], "bert/pooler/dense"))
  return x, pooled


def test_matches_independent_numpy_reference():
  config = _config(num_hidden_layers=1)
  inputs = _inputs(seed=3)
  rng = np.random.RandomState(4)
  with tf.Graph().as_default():
    model, outputs = _build(config, False, inputs)
    variables = tf1.global_variables()
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      # Random values everywhere (LayerNorm and biases included), scaled so
      # activations stay O(1) and every part of the layer matters.
      weights = {}
      for var in variables:
        shape = var.shape.as_list()
        value = rng.randn(*shape) * (0.3 if len(shape) == 1 else
                                     1.0 / np.sqrt(shape[0]))
        if var.op.name.endswith("gamma"):
          value += 1.0
        var.load(value.astype(np.float32), sess)
        weights[var.op.name] = value.astype(np.float32).astype(np.float64)
      sequence, pooled, all_layers = sess.run(
          [outputs["sequence"], outputs["pooled"],
           model.get_all_encoder_layers()])
  assert len(all_layers) == 1
  expected_sequence, expected_pooled = _np_bert(
      weights, config, *[x.astype(np.int64) for x in inputs])
  input_mask = inputs[1].astype(bool)
  # Padded rows still get outputs; compare all of them, real ones above all.
  np.testing.assert_allclose(sequence[input_mask],
                             expected_sequence[input_mask], atol=1e-5)
  np.testing.assert_allclose(sequence, expected_sequence, atol=1e-5)
  np.testing.assert_allclose(pooled, expected_pooled, atol=1e-5)


def test_gelu_is_the_tanh_approximation():
  x = np.linspace(-5, 5, 41).astype(np.float32)
  with tf.Graph().as_default(), tf1.Session() as sess:
    actual = sess.run(modeling.gelu(tf.constant(x)))
  np.testing.assert_allclose(actual, _np_gelu(x.astype(np.float64)),
                             atol=1e-6)
  assert modeling.get_activation("gelu") is modeling.gelu
  assert modeling.get_activation("linear") is None


def test_padding_does_not_change_real_tokens():
  config = _config()
  input_ids, input_mask, segment_ids = _inputs(seed=5, num_real=(5, 5, 5))
  # Same real tokens, but other values in the padded positions.
  other_ids = input_ids.copy()
  other_ids[:, 5:] = np.arange(3 * 3).reshape(3, 3) + 7
  other_segments = segment_ids.copy()
  other_segments[:, 5:] = 1
  short = (input_ids[:, :5], input_mask[:, :5], segment_ids[:, :5])
  with tf.Graph().as_default():
    _, padded = _build(config, False, (input_ids, input_mask, segment_ids))
    with tf1.variable_scope(tf1.get_variable_scope(), reuse=True):
      _, changed = _build(config, False,
                          (other_ids, input_mask, other_segments))
      _, unpadded = _build(config, False, short)
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      padded, changed, unpadded = sess.run([padded, changed, unpadded])
  np.testing.assert_allclose(padded["sequence"][:, :5],
                             changed["sequence"][:, :5], atol=1e-6)
  np.testing.assert_allclose(padded["pooled"], changed["pooled"], atol=1e-6)
  np.testing.assert_allclose(padded["sequence"][:, :5], unpadded["sequence"],
                             atol=1e-5)
  np.testing.assert_allclose(padded["pooled"], unpadded["pooled"], atol=1e-5)
  # The padded positions themselves did change, so the inputs mattered.
  assert not np.allclose(padded["sequence"][:, 5:], changed["sequence"][:, 5:])


def test_dropout_only_when_training():
  config = _config(hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3)
  no_dropout = _config(hidden_dropout_prob=0.0,
                       attention_probs_dropout_prob=0.0)
  inputs = _inputs(seed=6)
  with tf.Graph().as_default():
    _, evaluating = _build(config, False, inputs)
    with tf1.variable_scope(tf1.get_variable_scope(), reuse=True):
      _, training = _build(config, True, inputs)
      _, training_without = _build(no_dropout, True, inputs)
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      eval_1, eval_2 = sess.run(evaluating), sess.run(evaluating)
      train_1, train_2 = sess.run(training), sess.run(training)
      plain = sess.run(training_without)
  np.testing.assert_array_equal(eval_1["sequence"], eval_2["sequence"])
  np.testing.assert_allclose(plain["sequence"], eval_1["sequence"], atol=1e-6)
  assert not np.allclose(train_1["sequence"], eval_1["sequence"], atol=1e-3)
  assert not np.allclose(train_1["sequence"], train_2["sequence"], atol=1e-3)
  # The caller's config is not modified by is_training=False.
  assert config.hidden_dropout_prob == 0.3


def test_one_hot_embeddings_equal_gather():
  config = _config()
  inputs = _inputs(seed=7)
  with tf.Graph().as_default():
    gather_model, gathered = _build(config, False, inputs)
    with tf1.variable_scope(tf1.get_variable_scope(), reuse=True):
      one_hot_model, one_hot = _build(config, False, inputs,
                                      use_one_hot_embeddings=True)
    # Reuse created no second set of variables (7 of the names are heads).
    assert len(tf1.global_variables()) == len(_google_names(NUM_LAYERS)) - 7
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      gathered, one_hot, gather_embeddings, one_hot_embeddings = sess.run(
          [gathered, one_hot, gather_model.get_embedding_output(),
           one_hot_model.get_embedding_output()])
  np.testing.assert_allclose(one_hot_embeddings, gather_embeddings, atol=1e-6)
  np.testing.assert_allclose(one_hot["sequence"], gathered["sequence"],
                             atol=1e-5)


def test_bert_config_round_trip(tmp_path):
  values = tiny_config_dict(VOCAB_SIZE)
  config = modeling.BertConfig.from_dict(values)
  assert config.to_dict() == values
  assert json.loads(config.to_json_string()) == values
  path = tmp_path / "bert_config.json"
  path.write_text(config.to_json_string())
  loaded = modeling.BertConfig.from_json_file(str(path))
  assert loaded.to_dict() == values
  assert loaded.hidden_size == 32 and loaded.hidden_act == "gelu"
  with pytest.raises(ValueError, match="no_config.json"):
    modeling.BertConfig.from_json_file(str(tmp_path / "no_config.json"))


def test_shape_helpers():
  with tf.Graph().as_default():
    tensor = tf1.placeholder(tf.float32, [None, 4])
    shape = modeling.get_shape_list(tensor, expected_rank=2)
    assert shape[1] == 4 and isinstance(shape[0], tf.Tensor)
    with pytest.raises(ValueError):
      modeling.get_shape_list(tensor, expected_rank=3)
    initializer = modeling.create_initializer(0.5)
    variable = tf1.get_variable("v", [2000], initializer=initializer)
    normed = modeling.layer_norm(tf.constant([[1.0, 2.0, 3.0, 6.0]]))
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      values, normed = sess.run([variable, normed])
  # Truncated normal: within two standard deviations, spread about 0.44.
  assert np.abs(values).max() <= 1.0 and 0.35 < values.std() < 0.5
  np.testing.assert_allclose(normed.mean(), 0.0, atol=1e-6)
  np.testing.assert_allclose(normed.std(), 1.0, atol=1e-5)


def test_attention_tensors_are_the_layers_own_and_add_no_op():
  """get_attention_tensors: Q, K, V, scores and probs of every layer."""
  config = _config()
  input_ids, input_mask, segment_ids = _inputs()
  with tf.Graph().as_default() as graph:
    model, _ = _build(config, False, (input_ids, input_mask, segment_ids))
    layers = model.get_attention_tensors()
    variables = {var.op.name: var for var in tf1.global_variables()}
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      values, embeddings, kernel, bias = sess.run([
          layers, model.get_embedding_output(),
          variables["bert/encoder/layer_0/attention/self/value/kernel"],
          variables["bert/encoder/layer_0/attention/self/value/bias"]])
    op_count = len(graph.get_operations())
  with tf.Graph().as_default() as graph:
    modeling.transformer_model(
        tf.zeros([3, SEQ_LENGTH, config.hidden_size]),
        tf.ones([3, SEQ_LENGTH, SEQ_LENGTH]),
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size)
    without = len(graph.get_operations())
  with tf.Graph().as_default() as graph:
    collected = []
    modeling.transformer_model(
        tf.zeros([3, SEQ_LENGTH, config.hidden_size]),
        tf.ones([3, SEQ_LENGTH, SEQ_LENGTH]),
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        attention_tensors=collected)
    assert len(graph.get_operations()) == without  # References only.
  assert len(collected) == NUM_LAYERS and op_count > without

  heads = config.num_attention_heads
  size = config.hidden_size // heads
  assert len(values) == NUM_LAYERS
  for layer in values:
    assert sorted(layer) == ["key", "probs", "query", "scores", "value"]
    query, key = (layer[name].reshape(3, SEQ_LENGTH, heads, size).transpose(
        0, 2, 1, 3) for name in ("query", "key"))
    scores = query @ key.transpose(0, 1, 3, 2) / np.sqrt(size)
    scores += (1.0 - input_mask[:, None, None, :]) * -10000.0
    np.testing.assert_allclose(layer["scores"], scores, rtol=1e-4, atol=1e-4)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    np.testing.assert_allclose(layer["probs"], probs, atol=1e-5)
    # Padded keys get no weight.
    assert layer["probs"][2, :, :, 3:].max() < 1e-4
  # Layer 0's values come from the embeddings through its value layer.
  np.testing.assert_allclose(
      values[0]["value"],
      embeddings.reshape(-1, config.hidden_size) @ kernel + bias, atol=1e-5)
