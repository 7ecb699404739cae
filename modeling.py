"""BERT in tf.compat.v1 graph style.

The public API and every variable name follow Google's release, so that
Google's `bert_model.ckpt` files load by name into these graphs. The
pretraining heads (masked LM and next sentence) live here too because the
teacher-label stage and the trainers both build them.

Mixed precision (`compute_type` tf.bfloat16 or tf.float16): the variables
stay float32 and are cast where a matmul reads them, so checkpoints and
optimizer state are float32 under the same names. The encoder's matmuls
(with their bias, GELU and dropout) run in the compute type; the embeddings,
the residual stream, every LayerNorm, the attention softmax, the pooler and
the next-sentence head stay float32, and so does every output of BertModel
and every logit. The masked-LM head's matmuls run in float32 unless
pretraining_model is given another mlm_head_type. With float32 no cast is
added: the graph is the original one.
"""

import collections
import copy
import difflib
import json
import math
import re

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1


class ConfigError(ValueError):
  """A bert_config.json (or dict) that does not describe a BertModel."""


# Every key of a bert_config.json. All are required in a file: a missing key
# would silently take a BERT-Base default.
_INT_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers",
             "num_attention_heads", "intermediate_size",
             "max_position_embeddings", "type_vocab_size")
_PROBABILITY_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob")
CONFIG_KEYS = _INT_KEYS + _PROBABILITY_KEYS + ("hidden_act",
                                               "initializer_range")
# Keys of Google's Chinese and multilingual releases that BertModel never
# used; accepted and ignored.
IGNORED_CONFIG_KEYS = ("directionality", "pooler_fc_size",
                       "pooler_num_attention_heads", "pooler_num_fc_layers",
                       "pooler_size_per_head", "pooler_type")


def _is_number(value):
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def config_problems(values):
  """Lists what is wrong with a dict of bert_config values ([] if nothing).

  Checks that every key is present and known, the types, and the ranges:
  positive sizes, hidden_size divisible by num_attention_heads, dropout
  probabilities in [0, 1), a positive initializer_range and a hidden_act
  that get_activation knows.
  """
  if not isinstance(values, dict):
    return ["it must hold a JSON object, not %s" % type(values).__name__]
  problems = []
  missing = [key for key in CONFIG_KEYS if key not in values]
  if missing:
    problems.append("missing key(s) %s" % ", ".join(missing))
  for key in sorted(values):
    if key in CONFIG_KEYS or key in IGNORED_CONFIG_KEYS:
      continue
    close = difflib.get_close_matches(key, CONFIG_KEYS, n=1)
    problems.append("unknown key %r%s" % (
        key, " (did you mean %r?)" % close[0] if close else ""))

  for key in _INT_KEYS:
    if key not in values:
      continue
    value = values[key]
    if not isinstance(value, int) or isinstance(value, bool):
      problems.append("%s must be an integer, got %r" % (key, value))
    elif value < 1:
      problems.append("%s must be at least 1, got %d" % (key, value))
  for key in _PROBABILITY_KEYS:
    value = values.get(key)
    if key in values and not (_is_number(value) and 0 <= value < 1):
      problems.append("%s must be a number in [0, 1), got %r" % (key, value))
  value = values.get("initializer_range")
  if "initializer_range" in values and not (_is_number(value) and value > 0):
    problems.append("initializer_range must be a positive number, got %r" %
                    value)
  value = values.get("hidden_act")
  if "hidden_act" in values and not (
      isinstance(value, str) and value.lower() in ACTIVATIONS):
    problems.append("hidden_act must be one of %s, got %r" % (
        ", ".join(sorted(ACTIVATIONS)), value))
  hidden, heads = values.get("hidden_size"), values.get("num_attention_heads")
  if (isinstance(hidden, int) and isinstance(heads, int) and heads > 0
      and hidden % heads):
    problems.append("hidden_size %d is not a multiple of num_attention_heads "
                    "%d" % (hidden, heads))
  return problems


class BertConfig(object):
  """The hyperparameters of a BertModel, as in `bert_config.json`."""

  def __init__(self,
               vocab_size,
               hidden_size=768,
               num_hidden_layers=12,
               num_attention_heads=12,
               intermediate_size=3072,
               hidden_act="gelu",
               hidden_dropout_prob=0.1,
               attention_probs_dropout_prob=0.1,
               max_position_embeddings=512,
               type_vocab_size=16,
               initializer_range=0.02):
    self.vocab_size = vocab_size
    self.hidden_size = hidden_size
    self.num_hidden_layers = num_hidden_layers
    self.num_attention_heads = num_attention_heads
    self.intermediate_size = intermediate_size
    self.hidden_act = hidden_act
    self.hidden_dropout_prob = hidden_dropout_prob
    self.attention_probs_dropout_prob = attention_probs_dropout_prob
    self.max_position_embeddings = max_position_embeddings
    self.type_vocab_size = type_vocab_size
    self.initializer_range = initializer_range

  @classmethod
  def from_dict(cls, json_object):
    """Builds a BertConfig from a dict of parameters.

    Raises:
      ConfigError: listing every problem (config_problems) of the dict.
    """
    problems = config_problems(json_object)
    if problems:
      raise ConfigError("; ".join(problems))
    config = BertConfig(vocab_size=None)
    for key, value in json_object.items():
      if key not in IGNORED_CONFIG_KEYS:
        config.__dict__[key] = value
    return config

  @classmethod
  def from_json_file(cls, json_file):
    """Builds a BertConfig from a json file of parameters.

    Raises:
      ConfigError: naming the file, when it cannot be read, is not JSON or
        does not describe a BertModel.
    """
    try:
      with tf.io.gfile.GFile(json_file, "r") as reader:
        text = reader.read()
    except (tf.errors.OpError, IOError) as error:
      raise ConfigError("Cannot read BERT config %s: %s" % (json_file, error))
    try:
      return cls.from_dict(json.loads(text))
    except ValueError as error:  # ConfigError, or not JSON.
      raise ConfigError("BERT config %s: %s" % (json_file, error)) from None

  def to_dict(self):
    """Returns the parameters as a dict."""
    return copy.deepcopy(self.__dict__)

  def to_json_string(self):
    """Returns the parameters as a JSON string."""
    return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"


class BertModel(object):
  """BERT: embeddings, a Transformer encoder and a pooler.

  Variables are created under `scope` (default "bert") with Google's names.
  """

  def __init__(self,
               config,
               is_training,
               input_ids,
               input_mask=None,
               token_type_ids=None,
               use_one_hot_embeddings=False,
               scope=None,
               compute_type=tf.float32):
    """Builds the graph.

    Args:
      config: a BertConfig.
      is_training: dropout is applied only when True.
      input_ids: int32/int64 Tensor [batch_size, seq_length].
      input_mask: optional Tensor [batch_size, seq_length], 1 for real tokens.
      token_type_ids: optional Tensor [batch_size, seq_length].
      use_one_hot_embeddings: look up word embeddings by one-hot matmul (the
        TPU way) instead of a gather; the result is the same.
      scope: variable scope, "bert" by default.
      compute_type: tf.float32 (default), tf.bfloat16 or tf.float16: the
        type of the encoder's matmuls. The variables and every output are
        float32 whatever it is.
    """
    config = copy.deepcopy(config)
    if not is_training:
      config.hidden_dropout_prob = 0.0
      config.attention_probs_dropout_prob = 0.0

    assert_rank(input_ids, 2)
    if input_mask is None:
      input_mask = tf.ones_like(input_ids, dtype=tf.int32)
    if token_type_ids is None:
      token_type_ids = tf.zeros_like(input_ids, dtype=tf.int32)

    with tf1.variable_scope(scope, default_name="bert"):
      with tf1.variable_scope("embeddings"):
        (self.word_embedding_output,
         self.embedding_table) = embedding_lookup(
             input_ids=input_ids,
             vocab_size=config.vocab_size,
             embedding_size=config.hidden_size,
             initializer_range=config.initializer_range,
             word_embedding_name="word_embeddings",
             use_one_hot_embeddings=use_one_hot_embeddings)
        self.embedding_output = embedding_postprocessor(
            input_tensor=self.word_embedding_output,
            token_type_ids=token_type_ids,
            token_type_vocab_size=config.type_vocab_size,
            initializer_range=config.initializer_range,
            max_position_embeddings=config.max_position_embeddings,
            dropout_prob=config.hidden_dropout_prob)

      with tf1.variable_scope("encoder"):
        attention_mask = create_attention_mask_from_input_mask(
            input_ids, input_mask)
        self.attention_tensors = []
        self.all_encoder_layers = transformer_model(
            input_tensor=self.embedding_output,
            attention_mask=attention_mask,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size,
            intermediate_act_fn=get_activation(config.hidden_act),
            hidden_dropout_prob=config.hidden_dropout_prob,
            attention_probs_dropout_prob=config.attention_probs_dropout_prob,
            initializer_range=config.initializer_range,
            compute_type=compute_type,
            attention_tensors=self.attention_tensors)
      self.sequence_output = self.all_encoder_layers[-1]

      with tf1.variable_scope("pooler"):
        # The pooler sees only the first ([CLS]) token.
        first_token = tf.squeeze(self.sequence_output[:, 0:1, :], axis=1)
        self.pooled_output = dense(first_token, config.hidden_size, "dense",
                                   activation=tf.tanh,
                                   initializer_range=config.initializer_range)

  def get_pooled_output(self):
    """[batch_size, hidden_size]: the [CLS] token through dense + tanh."""
    return self.pooled_output

  def get_sequence_output(self):
    """[batch_size, seq_length, hidden_size]: the last encoder layer."""
    return self.sequence_output

  def get_all_encoder_layers(self):
    """A list of every encoder layer's output."""
    return self.all_encoder_layers

  def get_embedding_output(self):
    """The embeddings after LayerNorm and dropout, before the encoder."""
    return self.embedding_output

  def get_embedding_table(self):
    """[vocab_size, hidden_size]: the word embedding table."""
    return self.embedding_table

  def get_attention_tensors(self):
    """Per encoder layer, a dict of its self-attention's inner tensors.

    Keys "query", "key", "value" ([batch * seq, hidden], before the split
    into heads, in the compute type), "scores" and "probs" (float32
    [batch, heads, seq, seq]; probs before dropout). See attention_layer.
    """
    return self.attention_tensors


def gelu(x):
  """GELU, the tanh approximation used by Google's BERT.

  0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))), computed by
  tf.nn.gelu(approximate=True): the same formula, which oneDNN can fuse
  into the preceding matmul on CPU.
  """
  return tf.nn.gelu(x, approximate=True)


def gelu_exact(x):
  """GELU in its exact form, 0.5 * x * (1 + erf(x / sqrt(2))).

  "gelu_exact" in bert_config.json. This is what Hugging Face's "gelu"
  computes; convert_checkpoint.py maps the names so that a converted model
  computes what it computed before.
  """
  return tf.nn.gelu(x, approximate=False)


# Activation names a config's hidden_act may use (lower case); None = linear.
ACTIVATIONS = {"linear": None, "relu": tf.nn.relu, "gelu": gelu,
               "gelu_exact": gelu_exact, "tanh": tf.tanh}


def get_activation(activation_string):
  """Maps an activation name from a config to a function (None = linear)."""
  if not isinstance(activation_string, str):
    return activation_string
  if not activation_string:
    return None
  name = activation_string.lower()
  if name not in ACTIVATIONS:
    raise ValueError("Unsupported activation: %s" % activation_string)
  return ACTIVATIONS[name]


def get_assignment_map_from_checkpoint(tvars, init_checkpoint):
  """Maps the graph's variables to checkpoint variables of the same name.

  Returns (assignment_map, initialized_variable_names), as Google's does;
  initialized_variable_names holds both `name` and `name:0` keys.
  """
  name_to_variable = collections.OrderedDict()
  for var in tvars:
    name = re.sub(r":\d+$", "", var.name)
    name_to_variable[name] = var

  assignment_map = collections.OrderedDict()
  initialized_variable_names = {}
  for name, _ in tf.train.list_variables(init_checkpoint):
    if name not in name_to_variable:
      continue
    assignment_map[name] = name
    initialized_variable_names[name] = 1
    initialized_variable_names[name + ":0"] = 1
  return assignment_map, initialized_variable_names


def init_from_checkpoint_strict(init_checkpoint, tvars=None):
  """Initialises every variable in `tvars` from the checkpoint, by name.

  Unlike a plain init_from_checkpoint, a variable that the checkpoint lacks
  or whose shape differs is an error (ValueError listing them). Returns the
  sorted list of loaded names.
  """
  if tvars is None:
    tvars = tf1.global_variables()
  checkpoint_shapes = dict(tf.train.list_variables(init_checkpoint))
  missing, mismatched, assignment_map = [], [], {}
  for var in tvars:
    name = re.sub(r":\d+$", "", var.name)
    if name not in checkpoint_shapes:
      missing.append(name)
    elif list(checkpoint_shapes[name]) != var.shape.as_list():
      mismatched.append("%s: graph %s, checkpoint %s" % (
          name, var.shape.as_list(), checkpoint_shapes[name]))
    else:
      assignment_map[name] = var
  if missing or mismatched:
    raise ValueError(
        "Checkpoint %s does not match the model.\nMissing: %s\nShape "
        "mismatch: %s" % (init_checkpoint, missing or "none",
                          mismatched or "none"))
  tf1.train.init_from_checkpoint(init_checkpoint, assignment_map)
  return sorted(assignment_map)


def unreadable_checkpoint_problem(checkpoint):
  """Reads every variable of a checkpoint; says what fails, or returns None.

  A truncated or damaged `.data` file fails only when a variable is read
  ("Read less bytes than requested"); the message names the checkpoint and
  the variable. Slow for big checkpoints: call it to explain a failure.
  """
  name = None
  try:
    reader = tf.train.load_checkpoint(checkpoint)
    for name in sorted(reader.get_variable_to_shape_map()):
      reader.get_tensor(name)
  except (tf.errors.OpError, IndexError, ValueError) as error:
    message = getattr(error, "message", None) or str(error)
    where = " at variable %s" % name if name else ""
    return ("checkpoint %s cannot be read%s (%s): its files are truncated or "
            "damaged" % (checkpoint, where, message))
  return None


def dropout(input_tensor, dropout_prob):
  """Applies dropout with drop probability `dropout_prob` (0 = identity)."""
  if dropout_prob is None or dropout_prob == 0.0:
    return input_tensor
  return tf.nn.dropout(input_tensor, rate=dropout_prob)


def layer_norm(input_tensor, name=None):
  """Layer normalisation over the last axis, epsilon 1e-12.

  Creates `<name>/beta` and `<name>/gamma` (name defaults to "LayerNorm").
  Computed in float32 (in 16 bits the variance of a wide row loses too
  much); the result has the input's type.
  """
  with tf1.variable_scope(name, default_name="LayerNorm"):
    depth = input_tensor.shape[-1]
    beta = tf1.get_variable("beta", [depth],
                            initializer=tf1.zeros_initializer())
    gamma = tf1.get_variable("gamma", [depth],
                             initializer=tf1.ones_initializer())
    values = tf.cast(input_tensor, tf.float32)
    mean, variance = tf.nn.moments(values, [-1], keepdims=True)
    output = tf.nn.batch_normalization(values, mean, variance, beta, gamma,
                                       variance_epsilon=1e-12)
    return tf.cast(output, input_tensor.dtype)


def layer_norm_and_dropout(input_tensor, dropout_prob, name=None):
  """LayerNorm followed by dropout."""
  return dropout(layer_norm(input_tensor, name), dropout_prob)


def create_initializer(initializer_range=0.02):
  """A truncated normal initializer with stddev `initializer_range`."""
  return tf1.truncated_normal_initializer(stddev=initializer_range)


def dense(input_tensor, units, name, activation=None, initializer_range=0.02):
  """A fully connected layer with `<name>/kernel` [in, out] and `<name>/bias`.

  Works on any rank; the kernel is applied to the last axis. The float32
  variables are cast to the input's type, so the layer computes in it.
  """
  with tf1.variable_scope(name):
    kernel = tf1.get_variable(
        "kernel", [input_tensor.shape[-1], units],
        initializer=create_initializer(initializer_range))
    bias = tf1.get_variable("bias", [units],
                            initializer=tf1.zeros_initializer())
    kernel = tf.cast(kernel, input_tensor.dtype)
    bias = tf.cast(bias, input_tensor.dtype)
    if input_tensor.shape.ndims == 2:
      output = tf.matmul(input_tensor, kernel)
    else:
      output = tf.tensordot(input_tensor, kernel, [[-1], [0]])
    output = tf.nn.bias_add(output, bias)
    return activation(output) if activation is not None else output


def embedding_lookup(input_ids,
                     vocab_size,
                     embedding_size=128,
                     initializer_range=0.02,
                     word_embedding_name="word_embeddings",
                     use_one_hot_embeddings=False):
  """Looks up word embeddings.

  Returns (output [batch_size, seq_length, embedding_size], table).
  """
  embedding_table = tf1.get_variable(
      word_embedding_name, [vocab_size, embedding_size],
      initializer=create_initializer(initializer_range))
  if use_one_hot_embeddings:
    one_hot = tf.one_hot(input_ids, depth=vocab_size)
    output = tf.tensordot(one_hot, embedding_table, [[-1], [0]])
  else:
    output = tf.gather(embedding_table, input_ids)
  return output, embedding_table


def embedding_postprocessor(input_tensor,
                            token_type_ids,
                            token_type_vocab_size=16,
                            initializer_range=0.02,
                            max_position_embeddings=512,
                            dropout_prob=0.1):
  """Adds token-type and position embeddings, then LayerNorm and dropout."""
  assert_rank(input_tensor, 3)
  seq_length = dimension(input_tensor, 1)
  width = dimension(input_tensor, 2)
  token_type_table = tf1.get_variable(
      "token_type_embeddings", [token_type_vocab_size, width],
      initializer=create_initializer(initializer_range))
  output = input_tensor + tf.gather(token_type_table, token_type_ids)

  position_table = tf1.get_variable(
      "position_embeddings", [max_position_embeddings, width],
      initializer=create_initializer(initializer_range))
  if isinstance(seq_length, int) and seq_length > max_position_embeddings:
    raise ValueError("Sequence length %d exceeds max_position_embeddings %d"
                     % (seq_length, max_position_embeddings))
  positions = tf.slice(position_table, [0, 0], [seq_length, -1])
  output += tf.expand_dims(positions, 0)
  return layer_norm_and_dropout(output, dropout_prob)


def create_attention_mask_from_input_mask(from_tensor, to_mask):
  """Returns a float mask [batch_size, from_seq_length, to_seq_length]."""
  batch_size, from_seq_length = get_shape_list(from_tensor)[:2]
  assert_rank(to_mask, 2)
  to_seq_length = dimension(to_mask, 1)
  to_mask = tf.cast(tf.reshape(to_mask, [batch_size, 1, to_seq_length]),
                    tf.float32)
  # Every query position sees the same keys, so broadcasting suffices.
  return tf.ones([batch_size, from_seq_length, 1], tf.float32) * to_mask


def attention_layer(from_tensor,
                    to_tensor,
                    attention_mask=None,
                    num_attention_heads=1,
                    size_per_head=512,
                    attention_probs_dropout_prob=0.0,
                    initializer_range=0.02,
                    batch_size=None,
                    from_seq_length=None,
                    to_seq_length=None,
                    tensors=None):
  """Multi-head scaled dot-product attention.

  Tensors are 2D [batch_size * seq_length, width] (the encoder keeps them
  flat so that dense layers are plain matmuls). Creates `query`, `key` and
  `value` dense layers. Returns [batch_size * from_seq_length,
  num_attention_heads * size_per_head].

  tensors: optional dict that receives the layer's inner tensors (for
  layer-wise distillation; references only, no op is added): "query",
  "key", "value" [batch_size * seq_length, width] in the input's type, and
  float32 "scores" (scaled, masked) and "probs" (softmax, before dropout)
  [batch_size, num_attention_heads, from_seq_length, to_seq_length].
  """
  def split_heads(tensor, seq_length):
    tensor = tf.reshape(tensor, [batch_size, seq_length, num_attention_heads,
                                 size_per_head])
    return tf.transpose(tensor, [0, 2, 1, 3])

  width = num_attention_heads * size_per_head
  query = dense(from_tensor, width, "query",
                initializer_range=initializer_range)
  key = dense(to_tensor, width, "key", initializer_range=initializer_range)
  value = dense(to_tensor, width, "value",
                initializer_range=initializer_range)

  query_2d, key_2d = query, key
  query = split_heads(query, from_seq_length)
  key = split_heads(key, to_seq_length)
  # The scores leave the compute type for the mask and the softmax.
  scores = tf.cast(tf.matmul(query, key, transpose_b=True), tf.float32)
  scores *= 1.0 / math.sqrt(float(size_per_head))
  if attention_mask is not None:
    # Masked keys get -10000 before the softmax, so they get ~0 weight.
    adder = (1.0 - tf.expand_dims(attention_mask, axis=1)) * -10000.0
    scores += adder
  float_probs = tf.nn.softmax(scores)
  if tensors is not None:
    tensors.update(query=query_2d, key=key_2d, value=value, scores=scores,
                   probs=float_probs)
  probs = tf.cast(float_probs, from_tensor.dtype)
  probs = dropout(probs, attention_probs_dropout_prob)

  context = tf.matmul(probs, split_heads(value, to_seq_length))
  context = tf.transpose(context, [0, 2, 1, 3])
  return tf.reshape(context, [batch_size * from_seq_length, width])


def transformer_model(input_tensor,
                      attention_mask=None,
                      hidden_size=768,
                      num_hidden_layers=12,
                      num_attention_heads=12,
                      intermediate_size=3072,
                      intermediate_act_fn=gelu,
                      hidden_dropout_prob=0.1,
                      attention_probs_dropout_prob=0.1,
                      initializer_range=0.02,
                      do_return_all_layers=True,
                      compute_type=tf.float32,
                      attention_tensors=None):
  """The Transformer encoder of "Attention is All You Need".

  Returns the list of every layer's output [batch, seq, hidden] (or only
  the last one when do_return_all_layers is False). The matmuls run in
  compute_type; the residual stream and the LayerNorms (hence the outputs)
  in float32, so that a 16-bit type rounds only what a matmul reads.
  attention_tensors: optional list that receives one dict per layer (see
  attention_layer's `tensors`).
  """
  if hidden_size % num_attention_heads != 0:
    raise ValueError("hidden_size (%d) is not a multiple of "
                     "num_attention_heads (%d)" % (hidden_size,
                                                   num_attention_heads))
  size_per_head = hidden_size // num_attention_heads
  batch_size, seq_length, input_width = get_shape_list(input_tensor,
                                                       expected_rank=3)
  if input_width != hidden_size:
    raise ValueError("Input width (%d) != hidden size (%d)" %
                     (input_width, hidden_size))

  layer_input = tf.cast(tf.reshape(input_tensor, [-1, hidden_size]),
                        tf.float32)
  all_layer_outputs = []
  for layer_idx in range(num_hidden_layers):
    with tf1.variable_scope("layer_%d" % layer_idx):
      with tf1.variable_scope("attention"):
        with tf1.variable_scope("self"):
          compute_input = tf.cast(layer_input, compute_type)
          layer_tensors = None if attention_tensors is None else {}
          attention_output = attention_layer(
              from_tensor=compute_input,
              to_tensor=compute_input,
              attention_mask=attention_mask,
              num_attention_heads=num_attention_heads,
              size_per_head=size_per_head,
              attention_probs_dropout_prob=attention_probs_dropout_prob,
              initializer_range=initializer_range,
              batch_size=batch_size,
              from_seq_length=seq_length,
              to_seq_length=seq_length,
              tensors=layer_tensors)
        with tf1.variable_scope("output"):
          attention_output = dense(attention_output, hidden_size, "dense",
                                   initializer_range=initializer_range)
          attention_output = dropout(attention_output, hidden_dropout_prob)
          attention_output = layer_norm(
              tf.cast(attention_output, tf.float32) + layer_input)

      with tf1.variable_scope("intermediate"):
        intermediate_output = dense(tf.cast(attention_output, compute_type),
                                    intermediate_size, "dense",
                                    activation=intermediate_act_fn,
                                    initializer_range=initializer_range)
      with tf1.variable_scope("output"):
        layer_output = dense(intermediate_output, hidden_size, "dense",
                             initializer_range=initializer_range)
        layer_output = dropout(layer_output, hidden_dropout_prob)
        layer_output = layer_norm(
            tf.cast(layer_output, tf.float32) + attention_output)
      layer_input = layer_output
      if attention_tensors is not None:
        attention_tensors.append(layer_tensors)
      all_layer_outputs.append(
          tf.reshape(layer_output, [batch_size, seq_length, hidden_size]))

  if do_return_all_layers:
    return all_layer_outputs
  return all_layer_outputs[-1]


def get_shape_list(tensor, expected_rank=None, name=None):
  """Returns the shape as a list: ints where static, scalar Tensors if not.

  A Shape op is added only when a dimension is unknown, so a fully static
  graph has none left unused.
  """
  if expected_rank is not None:
    assert_rank(tensor, expected_rank, name)
  shape = tensor.shape.as_list()
  if None not in shape:
    return shape
  dynamic = tf.shape(tensor)
  return [dim if dim is not None else dynamic[index]
          for index, dim in enumerate(shape)]


def dimension(tensor, index):
  """One dimension of the shape: an int if static, else a scalar Tensor."""
  static = tensor.shape.as_list()[index]
  return static if static is not None else tf.shape(tensor)[index]


def assert_rank(tensor, expected_rank, name=None):
  """Raises ValueError unless the tensor's rank is (one of) expected_rank."""
  expected = (set(expected_rank) if isinstance(expected_rank, (list, tuple))
              else {expected_rank})
  actual = tensor.shape.ndims
  if actual not in expected:
    raise ValueError("Tensor %s has rank %s, expected %s" % (
        name or tensor.name, actual, sorted(expected)))


def gather_indexes(sequence_tensor, positions):
  """Gathers [batch, seq, width] vectors at positions [batch, n].

  Returns [batch * n, width].
  """
  batch_size, seq_length, width = get_shape_list(sequence_tensor,
                                                 expected_rank=3)
  offsets = tf.reshape(tf.range(0, batch_size) * seq_length, [-1, 1])
  flat_positions = tf.reshape(tf.cast(positions, tf.int32) + offsets, [-1])
  flat_sequence = tf.reshape(sequence_tensor, [batch_size * seq_length, width])
  return tf.gather(flat_sequence, flat_positions)


def masked_lm_logits(bert_config, sequence_output, embedding_table,
                     positions, compute_type=tf.float32):
  """The masked-LM head, computed only at `positions`.

  Creates Google's `cls/predictions/...` variables; the output layer reuses
  the word embedding table. Returns float32 logits [batch * n, vocab_size];
  compute_type is the type of its matmuls.
  """
  hidden = tf.cast(gather_indexes(sequence_output, positions), compute_type)
  with tf1.variable_scope("cls/predictions"):
    with tf1.variable_scope("transform"):
      hidden = dense(hidden, bert_config.hidden_size, "dense",
                     activation=get_activation(bert_config.hidden_act),
                     initializer_range=bert_config.initializer_range)
      hidden = layer_norm(hidden)
    output_bias = tf1.get_variable("output_bias", [bert_config.vocab_size],
                                   initializer=tf1.zeros_initializer())
    logits = tf.matmul(hidden, tf.cast(embedding_table, compute_type),
                       transpose_b=True)
    return tf.nn.bias_add(tf.cast(logits, tf.float32), output_bias)


def next_sentence_logits(bert_config, pooled_output):
  """The next-sentence head (`cls/seq_relationship`): logits [batch, 2].

  Label 0 means B follows A; 1 means B is random.
  """
  with tf1.variable_scope("cls/seq_relationship"):
    output_weights = tf1.get_variable(
        "output_weights", [2, bert_config.hidden_size],
        initializer=create_initializer(bert_config.initializer_range))
    output_bias = tf1.get_variable("output_bias", [2],
                                   initializer=tf1.zeros_initializer())
    logits = tf.matmul(pooled_output, output_weights, transpose_b=True)
    return tf.nn.bias_add(logits, output_bias)


def pretraining_model(bert_config, is_training, input_ids, masked_lm_positions,
                      input_mask=None, token_type_ids=None,
                      with_next_sentence=True, compute_type=tf.float32,
                      mlm_head_type=tf.float32):
  """Builds BertModel with both pretraining heads, as in Google's checkpoints.

  Returns (model, masked-LM logits [batch * n, vocab_size] at
  `masked_lm_positions`, next-sentence logits [batch, 2]), all float32. With
  with_next_sentence=False (a teacher converted from BertForMaskedLM) the
  next-sentence head is not built and its logits are None. compute_type is
  the encoder's (see BertModel); mlm_head_type that of the masked-LM head's
  matmuls. The teacher keeps its head in float32, which keeps bf16 labels
  within 0.02 of fp32 ones (tests/test_precision.py); the trainers run it in
  the compute type, as it is a quarter of a small student's FLOPs (the
  vocabulary projection).
  """
  model = BertModel(config=bert_config, is_training=is_training,
                    input_ids=input_ids, input_mask=input_mask,
                    token_type_ids=token_type_ids, compute_type=compute_type)
  mlm_logits = masked_lm_logits(bert_config, model.get_sequence_output(),
                                model.get_embedding_table(),
                                masked_lm_positions, mlm_head_type)
  nsp_logits = None
  if with_next_sentence:
    nsp_logits = next_sentence_logits(bert_config, model.get_pooled_output())
  return model, mlm_logits, nsp_logits


def count_parameters(variables):
  """Returns the total number of scalars in `variables`."""
  return int(sum(np.prod(var.shape.as_list()) for var in variables))
