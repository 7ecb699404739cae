"""The distillation losses and metrics: teacher targets, soft cross-entropies.

It also holds the estimator behind sampled labels (sampled_labels), which
produce_teacher_labels.py runs and the "sampled" target reads, so that the
two halves of that contract live and are tested together.

The trainers (network_distillation_*_truncated.py) build the student and call
compute_losses() for the training loss and eval_metric_ops() for evaluation.
Each loss has one implementation here; tests check them against numpy.
"""

import collections

import numpy as np
import tensorflow as tf

import record_format

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
  log_student_top_k = tf.gather(log_student, top_k_indices, batch_dims=1)
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


class LossOptions(object):
  """The loss flags: temperature, kd_target, weights and nsp_loss."""

  def __init__(self, temperature=1.0, kd_target="truncated",
               soft_label_weight=1.0, hard_label_weight=0.0, nsp_loss="hard"):
    self.temperature = temperature
    self.kd_target = kd_target
    self.soft_label_weight = soft_label_weight
    self.hard_label_weight = hard_label_weight
    self.nsp_loss = nsp_loss

  @property
  def needs_teacher_labels(self):
    """Whether the training loss reads the teacher's labels."""
    return self.soft_label_weight > 0 or self.nsp_loss == "soft"


# The kinds of teacher labels a record can hold (produce_teacher_labels.py).
TOP_K, SAMPLED, FULL = "top-k", "sampled", "full"

# probs: [batch*n, k or vocab] probabilities (sampled: importance weights);
# indices: [batch*n, k] vocabulary ids, None for full distributions;
# next_sentence_probs: None when the teacher had no next-sentence head.
TeacherLabels = collections.namedtuple(
    "TeacherLabels", ["kind", "probs", "indices", "next_sentence_probs"])


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


def compute_losses(options, features, masked_lm_logits, next_sentence_logits,
                   max_predictions_per_seq, with_teacher_terms):
  """Returns a dict of scalar losses, "total" being the one to minimise.

  Keys: masked_lm_loss (hard), next_sentence_loss (hard), kd_loss (when the
  teacher's labels are present and wanted), next_sentence_soft_loss
  (likewise), total.
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
  labels = teacher_labels(features, max_predictions_per_seq)
  if labels is not None and with_teacher_terms:
    error = kd_target_error(labels.kind, options.kd_target)
    if error:
      raise ValueError(error)
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
  losses["total"] = total
  return losses


def eval_metric_ops(features, masked_lm_logits, next_sentence_logits, losses,
                    max_predictions_per_seq):
  """The evaluation metric ops (README: "Reading TensorBoard and
  eval_results.txt")."""
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
  labels = teacher_labels(features, max_predictions_per_seq)
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
