"""The distillation losses and metrics: teacher targets, soft cross-entropies.

It also holds the estimator behind sampled labels (sampled_labels), which
produce_teacher_labels.py runs and the "sampled" target reads, so that the
two halves of that contract live and are tested together, and the
layer-wise losses of a teacher run in the graph
(bert_distillation/teacher_graph.py): hidden
states, attention distributions and MiniLMv2's Q-Q/K-K/V-V relations.

The trainers (network_distillation_*_truncated.py) build the student and call
compute_losses() for the training loss and eval_metric_ops() for evaluation.
Each loss has one implementation here; tests check them against numpy.
docs/losses.md gives the formulas.
"""

import collections
import math

import numpy as np
import tensorflow as tf

from bert_distillation import command_line
from bert_distillation import record_format

tf1 = tf.compat.v1


def tempered_distribution(probs, temperature):
  """Returns probs^(1/T) normalised over the last axis (zeros stay zero)."""
  tempered = tf.pow(probs, 1.0 / temperature)
  return tf.math.divide_no_nan(
      tempered, tf.reduce_sum(tempered, axis=-1, keepdims=True))


def log_rest_probability(scaled_logits, top_k_indices):
  """log of the softmax mass outside `top_k_indices`, per row.

  Computed as logsumexp over the other logits minus logsumexp over all, which
  stays accurate when the rest is small (1 - sum(top-k) would cancel).
  """
  rows = tf.shape(top_k_indices)[0]
  k = tf.shape(top_k_indices)[1]
  row_ids = tf.tile(tf.expand_dims(tf.range(rows), 1), [1, k])
  coordinates = tf.stack([row_ids, top_k_indices], axis=-1)
  in_top_k = tf.scatter_nd(coordinates, tf.ones_like(top_k_indices,
                                                     tf.float32),
                           tf.shape(scaled_logits)) > 0
  rest_logits = tf.where(in_top_k, tf.fill(tf.shape(scaled_logits), -1e9),
                         scaled_logits)
  log_rest = (tf.reduce_logsumexp(rest_logits, axis=-1) -
              tf.reduce_logsumexp(scaled_logits, axis=-1))
  # Only reachable when the top-k covers (nearly) the whole vocabulary.
  return tf.maximum(log_rest, np.log(1e-12))


@tf.custom_gradient
def gather_per_row(values, indices):
  """values[i, indices[i, j]] as [n, k]: tf.gather with batch_dims=1.

  Its gradient is the same values as TensorFlow's own, made dense by one
  scatter_nd instead of an IndexedSlices that the gradient sum turns into
  an UnsortedSegmentSum over n * vocab segments, which took 5% of a 4x256
  student's training step on CPU (bench/bench_train.py --profile).
  """
  rows = tf.shape(indices)[0]
  k = tf.shape(indices)[1]
  coordinates = tf.stack(
      [tf.tile(tf.expand_dims(tf.range(rows), 1), [1, k]), indices], axis=-1)

  def gradient(upstream):
    return tf.scatter_nd(coordinates, upstream, tf.shape(values)), None

  return tf.gather(values, indices, batch_dims=1), gradient


def soft_cross_entropy(student_logits, teacher_probs, top_k_indices=None,
                       kd_target="truncated", temperature=1.0):
  """Per-row cross-entropy of the student at T against the teacher's target.

  Not yet scaled by T^2. The teacher's probabilities were stored at T = 1;
  p^(1/T) renormalised equals the teacher's softmax at T over the same set.

  Args:
    student_logits: [n, vocab] float logits.
    teacher_probs: [n, k] top-k probabilities or sampled importance weights,
      or [n, vocab] (or [n, 2] for next sentence) full distributions when
      top_k_indices is None.
    top_k_indices: [n, k] int vocabulary ids of teacher_probs, or None.
    kd_target: "truncated" (t_i = p_i^(1/T) * sum(p) / sum(p^(1/T)), which
      is the stored p at T = 1), "renormalized" (t = normalise(p^(1/T))),
      "residual" (k + 1 buckets: top-k and the rest of the vocabulary) or
      "sampled" (t = the stored weights as they are: they already estimate
      the teacher's softmax at the label temperature, which must be T).
      Ignored for full distributions, which are tempered and normalised.
    temperature: T > 0.

  Returns:
    [n] float losses.
  """
  teacher_probs = tf.stop_gradient(tf.cast(teacher_probs, tf.float32))
  scaled_logits = student_logits / temperature
  log_student = tf.nn.log_softmax(scaled_logits, axis=-1)
  if top_k_indices is None:
    target = tempered_distribution(teacher_probs, temperature)
    return -tf.reduce_sum(target * log_student, axis=-1)

  top_k_indices = tf.cast(top_k_indices, tf.int32)
  log_student_top_k = gather_per_row(log_student, top_k_indices)
  if kd_target == "residual":
    teacher_rest = tf.maximum(
        1.0 - tf.reduce_sum(teacher_probs, axis=-1, keepdims=True), 0.0)
    target = tempered_distribution(
        tf.concat([teacher_probs, teacher_rest], axis=-1), temperature)
    log_student_rest = log_rest_probability(scaled_logits, top_k_indices)
    log_student_buckets = tf.concat(
        [log_student_top_k, tf.expand_dims(log_student_rest, -1)], axis=-1)
    return -tf.reduce_sum(target * log_student_buckets, axis=-1)
  if kd_target == "sampled":
    # Unbiased: E[-sum_i w_i log s_i] = -sum_j p_j log s_j, the full loss.
    target = teacher_probs
  elif kd_target == "renormalized":
    target = tempered_distribution(teacher_probs, temperature)
  elif kd_target == "truncated":
    # Same shape as the tempered teacher but the original's (partial) mass.
    target = tempered_distribution(teacher_probs, temperature) * (
        tf.reduce_sum(teacher_probs, axis=-1, keepdims=True))
  else:
    raise ValueError("Unknown kd_target %r" % kd_target)
  return -tf.reduce_sum(target * log_student_top_k, axis=-1)


# Sampled teacher labels (random-sampling KD). produce_teacher_labels.py
# --label_sampling draws them; the "sampled" target above reads them.


class Sampling(object):
  """What --label_sampling needs: temperatures and per-record seeds."""

  def __init__(self, label_temperature, proposal_temperature, random_seed,
               rank):
    self.label_temperature = label_temperature
    self.proposal_temperature = proposal_temperature
    self.random_seed = random_seed
    self.rank = rank

  def record_seeds(self, record_index):
    """[batch, 2] int64 stateless seeds, one per record of this rank."""
    # Ranks count their records from 0; the rank in the high bits keeps
    # their streams apart.
    stream = tf.cast(record_index, tf.int64) + (self.rank << 40)
    first = tf.fill(tf.shape(stream), tf.constant(self.random_seed, tf.int64))
    return tf.stack([first, stream], axis=1)


def distinct_with_counts(samples):
  """Marks the first occurrence of each id in every row of [rows, k] samples.

  Returns (is_first [rows, k] bool, counts [rows, k] float): counts[r, j]
  is how often samples[r, j] occurs in row r.
  """
  k = samples.shape[-1]
  same = tf.equal(samples[:, :, None], samples[:, None, :])
  counts = tf.reduce_sum(tf.cast(same, tf.float32), axis=-1)
  # earlier[a, b]: slot b comes before slot a.
  earlier = tf.constant([[b < a for b in range(k)] for a in range(k)])
  is_first = tf.logical_not(tf.reduce_any(same & earlier, axis=-1))
  return is_first, counts


def sampled_labels(logits, num_samples, seeds, label_temperature,
                   proposal_temperature):
  """Draws teacher tokens and their importance weights.

  Args:
    logits: [batch, n, vocab] teacher logits at the masked positions.
    num_samples: k, draws per position (with replacement).
    seeds: [batch, 2] int64 stateless seeds, one per record.
    label_temperature: the weights estimate softmax(logits / this).
    proposal_temperature: tokens are drawn from softmax(logits / this).

  Returns:
    (ids, weights), each [batch, n, k]: the distinct drawn ids first, each
    with w = count * p / (k * q), then padding with id 0 and weight 0.
  """
  log_target = tf.nn.log_softmax(logits / label_temperature)
  log_proposal = tf.nn.log_softmax(logits / proposal_temperature)

  def draw(args):
    record_log_proposal, seed = args
    return tf.random.stateless_categorical(record_log_proposal, num_samples,
                                           seed, dtype=tf.int64)

  samples = tf.map_fn(draw, (log_proposal, seeds),
                      fn_output_signature=tf.TensorSpec(
                          [None, num_samples], tf.int64))
  shape = tf.shape(samples)
  samples = tf.reshape(samples, [-1, num_samples])
  log_target = tf.reshape(log_target, [tf.shape(samples)[0], -1])
  log_proposal = tf.reshape(log_proposal, tf.shape(log_target))
  is_first, counts = distinct_with_counts(samples)
  log_ratio = (tf.gather(log_target, samples, batch_dims=1) -
               tf.gather(log_proposal, samples, batch_dims=1))
  weights = tf.where(is_first, counts * tf.exp(log_ratio) / num_samples, 0.0)
  ids = tf.where(is_first, samples, tf.zeros_like(samples))
  # The distinct ids first, in the order drawn; padding after them.
  order = tf.argsort(tf.cast(tf.logical_not(is_first), tf.int32), axis=-1,
                     stable=True)
  ids = tf.gather(ids, order, batch_dims=1)
  weights = tf.gather(weights, order, batch_dims=1)
  return tf.reshape(ids, shape), tf.reshape(weights, shape)


def weighted_mean(values, weights):
  """sum(values * weights) / (sum(weights) + 1e-5), as Google's BERT does."""
  weights = tf.cast(weights, tf.float32)
  return tf.reduce_sum(values * weights) / (tf.reduce_sum(weights) + 1e-5)


def masked_lm_soft_loss(student_logits, teacher_probs, top_k_indices, weights,
                        kd_target="truncated", temperature=1.0):
  """The soft masked-LM loss: T^2 * weighted mean of soft_cross_entropy."""
  per_position = soft_cross_entropy(student_logits, teacher_probs,
                                    top_k_indices, kd_target, temperature)
  return temperature ** 2 * weighted_mean(per_position, weights)


def teacher_kl(student_logits, teacher_probs):
  """Per-row KL(teacher || student) at T = 1 from a full teacher distribution.

  Zero teacher probabilities contribute nothing (0 log 0 = 0).
  """
  teacher_probs = tf.cast(teacher_probs, tf.float32)
  log_student = tf.nn.log_softmax(student_logits, axis=-1)
  return tf.reduce_sum(tf.math.xlogy(teacher_probs, teacher_probs) -
                       teacher_probs * log_student, axis=-1)


def teacher_top1(teacher_probs, top_k_indices):
  """The teacher's most probable vocabulary id per row."""
  best = tf.argmax(teacher_probs, axis=-1, output_type=tf.int32)
  if top_k_indices is None:
    return best
  return tf.gather(tf.cast(top_k_indices, tf.int32), best, batch_dims=1)


def soft_cross_entropy_from_logits(student_logits, teacher_logits,
                                   temperature=1.0):
  """Per-row cross-entropy of the student at T against softmax(teacher / T).

  The teacher's exact full distribution, as a teacher run in the graph
  gives it (not yet scaled by T^2).
  """
  target = tf.nn.softmax(tf.stop_gradient(teacher_logits) / temperature)
  log_student = tf.nn.log_softmax(student_logits / temperature)
  return -tf.reduce_sum(target * log_student, axis=-1)


# ---------------------------------------------------------------------------
# Layer-wise distillation: the teacher runs in the graph
# (bert_distillation/teacher_graph.py).

# Variables that only layer-wise distillation trains (the hidden-state
# projection). They are saved with the student, so that a run resumes, but
# they are not part of it: exports and teachers leave them out.
DISTILLATION_SCOPE = "distillation"
HIDDEN_LOSSES = ("cosine", "mse")
LAYER_LOSS_NAMES = ("hidden_loss", "attention_loss", "relation_loss")


def real_token_mean(values, input_mask):
  """Mean of per-token values [batch, seq] over the real tokens."""
  mask = tf.cast(input_mask, tf.float32)
  return tf.reduce_sum(values * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def hidden_projection(student_hidden, teacher_width, initializer_range=0.02):
  """TinyBERT's W_h: the student's states [..., width] to teacher_width.

  One projection (`distillation/hidden_projection/{kernel,bias}`), shared
  by every layer pair, trained with the student.
  """
  with tf1.variable_scope(DISTILLATION_SCOPE, reuse=tf1.AUTO_REUSE):
    with tf1.variable_scope("hidden_projection"):
      kernel = tf1.get_variable(
          "kernel", [student_hidden.shape[-1], teacher_width],
          initializer=tf1.truncated_normal_initializer(
              stddev=initializer_range))
      bias = tf1.get_variable("bias", [teacher_width],
                              initializer=tf1.zeros_initializer())
  return tf.tensordot(student_hidden, kernel, [[-1], [0]]) + bias


def hidden_state_loss(student_hidden, teacher_hidden, input_mask, kind):
  """Distance between hidden states [batch, seq, width], over real tokens.

  kind "cosine": mean of 1 - cos(student, teacher) per token (DistilBERT);
  "mse": mean of the squared difference over the width, per token
  (TinyBERT). The widths must match (project the student's first).
  """
  student_hidden = tf.cast(student_hidden, tf.float32)
  teacher_hidden = tf.stop_gradient(tf.cast(teacher_hidden, tf.float32))
  if kind == "cosine":
    per_token = 1.0 - tf.reduce_sum(
        tf.math.l2_normalize(student_hidden, axis=-1, epsilon=1e-12) *
        tf.math.l2_normalize(teacher_hidden, axis=-1, epsilon=1e-12),
        axis=-1)
  elif kind == "mse":
    per_token = tf.reduce_mean(tf.square(student_hidden - teacher_hidden),
                               axis=-1)
  else:
    raise ValueError("Unknown hidden loss %r" % kind)
  return real_token_mean(per_token, input_mask)


def distribution_kl(student_scores, teacher_scores, input_mask):
  """KL(teacher || student) of softmax rows over the last axis.

  Scores are [batch, heads, seq, seq] (query rows, key columns); masked
  keys already hold -10000, so they get no weight. Returns the mean over
  heads and real query tokens.
  """
  log_teacher = tf.nn.log_softmax(tf.stop_gradient(teacher_scores))
  log_student = tf.nn.log_softmax(student_scores)
  per_row = tf.reduce_sum(tf.exp(log_teacher) * (log_teacher - log_student),
                          axis=-1)
  return real_token_mean(tf.reduce_mean(per_row, axis=1), input_mask)


def attention_loss(student_scores, teacher_scores, input_mask):
  """Attention KL of one layer pair, per head, over real tokens.

  Both are the masked, scaled attention scores [batch, heads, seq, seq]
  (BertModel.get_attention_tensors()["scores"]); the head counts must match.
  """
  return distribution_kl(tf.cast(student_scores, tf.float32),
                         tf.cast(teacher_scores, tf.float32), input_mask)


def relation_scores(vectors, input_mask, num_heads):
  """MiniLMv2's self-relation scores of [batch, seq, width] vectors.

  The width is split into num_heads relation heads of size d; returns
  x_h x_h^T / sqrt(d) [batch, num_heads, seq, seq] with -10000 at padded
  keys, as in the model's own attention.
  """
  batch, seq, width = vectors.shape.as_list()
  size = width // num_heads
  vectors = tf.transpose(tf.reshape(tf.cast(vectors, tf.float32),
                                    [-1 if batch is None else batch, seq,
                                     num_heads, size]), [0, 2, 1, 3])
  scores = tf.matmul(vectors, vectors, transpose_b=True) / math.sqrt(size)
  adder = (1.0 - tf.cast(input_mask, tf.float32)[:, None, None, :]) * -10000.0
  return scores + adder


def relation_loss(student_layer, teacher_layer, input_mask, num_heads):
  """Sum of the Q-Q, K-K and V-V relation KLs of one layer pair (MiniLMv2).

  student_layer and teacher_layer are BertModel.get_attention_tensors()
  entries; their "query", "key" and "value" are [batch * seq, width].
  Each width is split into num_heads heads, so the head counts and the
  widths of student and teacher are free.
  """
  input_mask = tf.convert_to_tensor(input_mask)
  batch, seq = input_mask.shape.as_list()
  total = 0.0
  for name in ("query", "key", "value"):
    def relation(layer):
      vectors = layer[name]
      return relation_scores(
          tf.reshape(vectors, [-1 if batch is None else batch, seq,
                               vectors.shape[-1]]), input_mask, num_heads)
    total += distribution_kl(relation(student_layer),
                             relation(teacher_layer), input_mask)
  return total


def uniform_layer_map(student_layers, teacher_layers):
  """TinyBERT's uniform map: student layer i matches teacher layer g(i).

  0-based: g(i) = (i + 1) * teacher_layers // student_layers - 1, so a
  4-layer student of a 12-layer teacher matches layers 2, 5, 8, 11 (the
  last to the last). A deeper student maps to layer 0 at least.
  """
  return [max((i + 1) * teacher_layers // student_layers - 1, 0)
          for i in range(student_layers)]


def parse_hidden_layer_map(text, student_layers, teacher_layers,
                           flag_name="--hidden_layer_map"):
  """The layer map of --hidden_layer_map ("" = uniform_layer_map).

  Raises:
    command_line.InputError: for a map that is not comma-separated
      integers, has not one entry per student layer, or names a teacher
      layer that does not exist.
  """
  if not text.strip():
    return uniform_layer_map(student_layers, teacher_layers)
  try:
    layer_map = [int(part) for part in text.split(",")]
  except ValueError:
    raise command_line.InputError(
        "%s must be comma-separated integers (a teacher layer for each "
        "student layer), got %r" % (flag_name, text)) from None
  if len(layer_map) != student_layers:
    raise command_line.InputError(
        "%s has %d entries but the student (--bert_config_file) has %d "
        "layers: give one teacher layer per student layer" % (
            flag_name, len(layer_map), student_layers))
  outside = [layer for layer in layer_map
             if not 0 <= layer < teacher_layers]
  if outside:
    raise command_line.InputError(
        "%s names teacher layer(s) %s, but the teacher "
        "(--teacher_config_file) has layers 0..%d" % (
            flag_name, ", ".join(map(str, outside)), teacher_layers - 1))
  return layer_map


class LayerLossOptions(object):
  """The layer-wise loss flags, checked against both configs.

  layer_map: for each student layer, the teacher layer that its hidden
  states and attention match; relation_teacher_layer: the teacher layer
  whose relations the student's last layer matches; relation_heads: the
  relation heads both are split into.
  """

  def __init__(self, hidden_loss_weight=0.0, hidden_loss="cosine",
               layer_map=None, attention_loss_weight=0.0,
               relation_loss_weight=0.0, relation_teacher_layer=-1,
               relation_heads=0):
    self.hidden_loss_weight = hidden_loss_weight
    self.hidden_loss = hidden_loss
    self.layer_map = layer_map
    self.attention_loss_weight = attention_loss_weight
    self.relation_loss_weight = relation_loss_weight
    self.relation_teacher_layer = relation_teacher_layer
    self.relation_heads = relation_heads

  @property
  def enabled(self):
    """Whether any layer-wise loss is on."""
    return (self.hidden_loss_weight > 0 or self.attention_loss_weight > 0 or
            self.relation_loss_weight > 0)


def layer_loss_options(student_config, teacher_config, hidden_loss_weight=0.0,
                       hidden_loss="cosine", hidden_layer_map="",
                       attention_loss_weight=0.0, relation_loss_weight=0.0,
                       relation_teacher_layer=-1, relation_heads=0):
  """LayerLossOptions from the flags' values, checked against the configs.

  relation_teacher_layer -1 is the teacher's last layer; relation_heads 0
  is the teacher's num_attention_heads.

  Raises:
    command_line.InputError: naming the flag, for a bad layer map, head
      counts that differ under --attention_loss_weight (the relation loss
      has no such constraint), or relation heads that do not divide both
      widths.
  """
  InputError = command_line.InputError  # pylint: disable=invalid-name
  for name, value in (("hidden_loss_weight", hidden_loss_weight),
                      ("attention_loss_weight", attention_loss_weight),
                      ("relation_loss_weight", relation_loss_weight)):
    if not value >= 0 or math.isinf(value):
      raise InputError("--%s must be a finite number >= 0, got %r" % (
          name, value))
  teacher_layers = teacher_config.num_hidden_layers
  layer_map = parse_hidden_layer_map(
      hidden_layer_map, student_config.num_hidden_layers, teacher_layers)
  if (attention_loss_weight > 0 and student_config.num_attention_heads !=
      teacher_config.num_attention_heads):
    raise InputError(
        "--attention_loss_weight matches attention per head, but the student "
        "(--bert_config_file) has %d heads and the teacher "
        "(--teacher_config_file) %d. Use the relation loss instead "
        "(--relation_loss_weight, with --relation_heads), which works for "
        "any head counts." % (student_config.num_attention_heads,
                              teacher_config.num_attention_heads))
  if relation_teacher_layer == -1:
    relation_teacher_layer = teacher_layers - 1
  if not 0 <= relation_teacher_layer < teacher_layers:
    raise InputError(
        "--relation_teacher_layer %d: the teacher (--teacher_config_file) has "
        "layers 0..%d (-1 = the last)" % (relation_teacher_layer,
                                          teacher_layers - 1))
  relation_heads = relation_heads or teacher_config.num_attention_heads
  if relation_heads < 1:
    raise InputError("--relation_heads must be at least 1 (0 = the "
                     "teacher's head count), got %d" % relation_heads)
  if relation_loss_weight > 0:
    for what, width in (("student (--bert_config_file)",
                         student_config.hidden_size),
                        ("teacher (--teacher_config_file)",
                         teacher_config.hidden_size)):
      if width % relation_heads:
        raise InputError(
            "--relation_heads %d does not divide the %s hidden_size %d" % (
                relation_heads, what, width))
  return LayerLossOptions(hidden_loss_weight, hidden_loss, layer_map,
                          attention_loss_weight, relation_loss_weight,
                          relation_teacher_layer, relation_heads)


def layer_losses(options, student_model, teacher_model, input_mask,
                 initializer_range=0.02):
  """The layer-wise losses that options turns on, as a dict of scalars.

  hidden_loss: the mean over the pairs (embeddings, embeddings) and
  (student layer i, teacher layer layer_map[i]) of hidden_state_loss,
  through hidden_projection when the widths differ. attention_loss: the
  mean of attention_loss over the mapped layer pairs. relation_loss:
  relation_loss of (student's last layer, relation_teacher_layer).
  """
  losses = {}
  student_attention = student_model.get_attention_tensors()
  teacher_attention = teacher_model.get_attention_tensors()
  if options.hidden_loss_weight > 0:
    student_states = ([student_model.get_embedding_output()] +
                      student_model.get_all_encoder_layers())
    teacher_layers = teacher_model.get_all_encoder_layers()
    teacher_states = [teacher_model.get_embedding_output()] + [
        teacher_layers[layer] for layer in options.layer_map]
    teacher_width = teacher_states[0].shape[-1]
    if student_states[0].shape[-1] != teacher_width:
      student_states = [hidden_projection(state, teacher_width,
                                          initializer_range)
                        for state in student_states]
    losses["hidden_loss"] = tf.add_n([
        hidden_state_loss(student, teacher, input_mask, options.hidden_loss)
        for student, teacher in zip(student_states, teacher_states)]) / len(
            student_states)
  if options.attention_loss_weight > 0:
    losses["attention_loss"] = tf.add_n([
        attention_loss(student_attention[i]["scores"],
                       teacher_attention[layer]["scores"], input_mask)
        for i, layer in enumerate(options.layer_map)]) / len(
            options.layer_map)
  if options.relation_loss_weight > 0:
    losses["relation_loss"] = relation_loss(
        student_attention[-1],
        teacher_attention[options.relation_teacher_layer], input_mask,
        options.relation_heads)
  return losses


def weighted_layer_loss(options, losses):
  """The sum of the layer-wise losses in `losses` times their weights."""
  weights = {"hidden_loss": options.hidden_loss_weight,
             "attention_loss": options.attention_loss_weight,
             "relation_loss": options.relation_loss_weight}
  return tf.add_n([weights[name] * losses[name] for name in LAYER_LOSS_NAMES
                   if name in losses] or [tf.constant(0.0)])


def check_some_loss(settings):
  """Raises InputError when no loss term is on: the run would train nothing.

  settings: [(the flag as given, e.g. "--soft_label_weight 0", whether its
  term is on)], one per loss term of the trainer.
  """
  if any(active for _, active in settings):
    return
  given = [text for text, _ in settings]
  raise command_line.InputError(
      "%s and %s leave no loss to train on: the run would only copy its "
      "initial weights. Give one of them a weight." % (", ".join(given[:-1]),
                                                       given[-1]))


class LossOptions(object):
  """The loss flags: temperature, kd_target, weights and nsp_loss.

  online: the teacher runs in the graph (--teacher_checkpoint), so its
  labels come from there, not from the records; layer: its LayerLossOptions.
  """

  def __init__(self, temperature=1.0, kd_target="truncated",
               soft_label_weight=1.0, hard_label_weight=0.0, nsp_loss="hard",
               online=False, layer=None):
    self.temperature = temperature
    self.kd_target = kd_target
    self.soft_label_weight = soft_label_weight
    self.hard_label_weight = hard_label_weight
    self.nsp_loss = nsp_loss
    self.online = online
    self.layer = layer or LayerLossOptions()

  @property
  def uses_teacher_outputs(self):
    """Whether the training loss reads the teacher's output distributions."""
    return self.soft_label_weight > 0 or self.nsp_loss == "soft"

  @property
  def needs_teacher_labels(self):
    """Whether the training loss reads teacher labels from the records."""
    return self.uses_teacher_outputs and not self.online


# The kinds of teacher labels a record can hold (produce_teacher_labels.py).
TOP_K, SAMPLED, FULL = "top-k", "sampled", "full"

# probs: [batch*n, k or vocab] probabilities (sampled: importance weights);
# indices: [batch*n, k] vocabulary ids, None for full distributions;
# next_sentence_probs: None when the teacher had no next-sentence head;
# logits: [batch*n, vocab] the teacher's masked-LM logits when it runs in
# the graph (then probs is their softmax), None for stored labels.
TeacherLabels = collections.namedtuple(
    "TeacherLabels", ["kind", "probs", "indices", "next_sentence_probs",
                      "logits"], defaults=(None,))


def kd_target_error(label_kind, kd_target):
  """Why --kd_target cannot be used on labels of label_kind (None if it can).

  Sampled weights are only meaningful as they are ("sampled"); top-k
  probabilities need one of the top-k targets; a full distribution is
  always used whole, whatever --kd_target says.
  """
  if label_kind == SAMPLED and kd_target != "sampled":
    return ("the records hold sampled teacher labels (--label_sampling), "
            "which only --kd_target sampled reads correctly, not %r" %
            kd_target)
  if label_kind == TOP_K and kd_target == "sampled":
    return ("--kd_target sampled needs records labelled with --label_sampling,"
            " but the records hold top-k teacher labels; use --kd_target "
            "truncated, renormalized or residual")
  return None


def teacher_labels(features, max_predictions_per_seq):
  """Returns the records' TeacherLabels, or None when they carry none."""
  def per_position(name):
    values = features[name]
    width = values.shape[-1] // max_predictions_per_seq
    return tf.reshape(values, [-1, width])

  if record_format.TRUNCATED_PROBS in features:
    kind = TOP_K
    probs = per_position(record_format.TRUNCATED_PROBS)
    indices = per_position(record_format.TOP_K_INDICES)
  elif record_format.SAMPLED_WEIGHTS in features:
    kind = SAMPLED
    probs = per_position(record_format.SAMPLED_WEIGHTS)
    indices = per_position(record_format.SAMPLED_IDS)
  elif record_format.FULL_PROBS in features:
    kind = FULL
    probs = per_position(record_format.FULL_PROBS)
    indices = None
  else:
    return None
  return TeacherLabels(kind, probs, indices,
                       features.get(record_format.NEXT_SENTENCE_PROBS))


def online_teacher_labels(masked_lm_logits, next_sentence_logits=None):
  """TeacherLabels of a teacher run in the graph: its full distributions."""
  masked_lm_logits = tf.stop_gradient(masked_lm_logits)
  next_sentence_probs = None
  if next_sentence_logits is not None:
    next_sentence_probs = tf.nn.softmax(
        tf.stop_gradient(next_sentence_logits))
  return TeacherLabels(FULL, tf.nn.softmax(masked_lm_logits), None,
                       next_sentence_probs, logits=masked_lm_logits)


def compute_losses(options, features, masked_lm_logits, next_sentence_logits,
                   max_predictions_per_seq, with_teacher_terms, labels=None,
                   layer_loss_values=None):
  """Returns a dict of scalar losses, "total" being the one to minimise.

  Keys: masked_lm_loss (hard), next_sentence_loss (hard), kd_loss (when the
  teacher's labels are present and wanted), next_sentence_soft_loss
  (likewise), the layer-wise losses given in layer_loss_values
  (layer_losses()), total.

  labels: the TeacherLabels of a teacher in the graph
  (online_teacher_labels); None reads them from the records' features.
  """
  weights = tf.reshape(features["masked_lm_weights"], [-1])
  masked_lm_ids = tf.reshape(features["masked_lm_ids"], [-1])
  next_sentence_labels = tf.reshape(features["next_sentence_labels"], [-1])
  losses = {
      "masked_lm_loss": weighted_mean(
          tf.nn.sparse_softmax_cross_entropy_with_logits(
              labels=masked_lm_ids, logits=masked_lm_logits), weights),
      "next_sentence_loss": tf.reduce_mean(
          tf.nn.sparse_softmax_cross_entropy_with_logits(
              labels=next_sentence_labels, logits=next_sentence_logits)),
  }
  if labels is None:
    labels = teacher_labels(features, max_predictions_per_seq)
  if labels is not None and with_teacher_terms:
    error = kd_target_error(labels.kind, options.kd_target)
    if error:
      raise ValueError(error)
    if labels.logits is not None:
      losses["kd_loss"] = options.temperature ** 2 * weighted_mean(
          soft_cross_entropy_from_logits(masked_lm_logits, labels.logits,
                                         options.temperature), weights)
    else:
      losses["kd_loss"] = masked_lm_soft_loss(
          masked_lm_logits, labels.probs, labels.indices, weights,
          options.kd_target, options.temperature)
    if labels.next_sentence_probs is not None:
      losses["next_sentence_soft_loss"] = options.temperature ** 2 * (
          tf.reduce_mean(soft_cross_entropy(
              next_sentence_logits, labels.next_sentence_probs,
              temperature=options.temperature)))

  total = tf.constant(0.0)
  if options.soft_label_weight > 0:
    total += options.soft_label_weight * losses["kd_loss"]
  if options.hard_label_weight > 0:
    total += options.hard_label_weight * losses["masked_lm_loss"]
  if options.nsp_loss == "hard":
    total += losses["next_sentence_loss"]
  elif options.nsp_loss == "soft":
    total += losses["next_sentence_soft_loss"]
  if layer_loss_values:
    losses.update(layer_loss_values)
    total += weighted_layer_loss(options.layer, layer_loss_values)
  losses["total"] = total
  return losses


def eval_metric_ops(features, masked_lm_logits, next_sentence_logits, losses,
                    max_predictions_per_seq, labels=None):
  """The evaluation metric ops (README: "Reading TensorBoard and
  eval_results.txt").

  labels: as in compute_losses (None: the records' labels, if any).
  """
  weights = tf.reshape(features["masked_lm_weights"], [-1])
  predictions = tf.argmax(masked_lm_logits, axis=-1, output_type=tf.int32)
  masked_lm_ids = tf.cast(tf.reshape(features["masked_lm_ids"], [-1]),
                          tf.int32)
  next_sentence_labels = tf.reshape(features["next_sentence_labels"], [-1])
  batch = tf.shape(next_sentence_labels)[0]
  # Each batch's loss weighs by its masked positions (or sequences), so the
  # metric is the mean over the whole evaluation set.
  metrics = {
      "masked_lm_accuracy": tf1.metrics.accuracy(
          masked_lm_ids, predictions, weights=weights),
      "masked_lm_loss": tf1.metrics.mean(losses["masked_lm_loss"],
                                         weights=tf.reduce_sum(weights)),
      "next_sentence_accuracy": tf1.metrics.accuracy(
          next_sentence_labels,
          tf.argmax(next_sentence_logits, axis=-1)),
      "next_sentence_loss": tf1.metrics.mean(losses["next_sentence_loss"],
                                             weights=batch),
  }
  if labels is None:
    labels = teacher_labels(features, max_predictions_per_seq)
  real_tokens = tf.reduce_sum(tf.cast(features["input_mask"], tf.float32))
  for name in LAYER_LOSS_NAMES:
    if name in losses:
      # Each batch's loss is a mean over its real tokens.
      metrics[name] = tf1.metrics.mean(losses[name], weights=real_tokens)
  if labels is not None:
    metrics["kd_loss"] = tf1.metrics.mean(losses["kd_loss"],
                                          weights=tf.reduce_sum(weights))
  if labels is not None and labels.kind != SAMPLED:
    # The most weighted sampled token is not the teacher's top-1.
    metrics["teacher_top1_agreement"] = tf1.metrics.accuracy(
        teacher_top1(labels.probs, labels.indices), predictions,
        weights=weights)
  if labels is not None and labels.kind == FULL:
    # Exact only with the whole distribution, hence full labels only.
    metrics["teacher_kl"] = tf1.metrics.mean(
        teacher_kl(masked_lm_logits, labels.probs), weights=weights)
  return metrics
