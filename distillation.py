"""The distillation losses and metrics: teacher targets, soft cross-entropies.

The trainers (network_distillation_*_truncated.py) build the student and call
compute_losses() for the training loss and eval_metric_ops() for evaluation.
Each loss has one implementation here; tests check them against numpy.
"""

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
    teacher_probs: [n, k] top-k probabilities, or [n, vocab] (or [n, 2] for
      next sentence) full distributions when top_k_indices is None.
    top_k_indices: [n, k] int vocabulary ids of teacher_probs, or None.
    kd_target: "truncated" (t_i = p_i^(1/T) * sum(p) / sum(p^(1/T)), which
      is the stored p at T = 1), "renormalized" (t = normalise(p^(1/T))) or
      "residual" (k + 1 buckets: top-k and the rest of the vocabulary).
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
  if kd_target == "renormalized":
    target = tempered_distribution(teacher_probs, temperature)
  elif kd_target == "truncated":
    # Same shape as the tempered teacher but the original's (partial) mass.
    target = tempered_distribution(teacher_probs, temperature) * (
        tf.reduce_sum(teacher_probs, axis=-1, keepdims=True))
  else:
    raise ValueError("Unknown kd_target %r" % kd_target)
  return -tf.reduce_sum(target * log_student_top_k, axis=-1)


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


def teacher_labels(features, max_predictions_per_seq):
  """Returns (probs [batch*n, k or vocab], indices or None, nsp probs) or None.

  None when the records carry no teacher labels. The next-sentence probs are
  None when the teacher had no next-sentence head.
  """
  if record_format.TRUNCATED_PROBS in features:
    k = features[record_format.TRUNCATED_PROBS].shape[-1] // (
        max_predictions_per_seq)
    probs = tf.reshape(features[record_format.TRUNCATED_PROBS], [-1, k])
    indices = tf.reshape(features[record_format.TOP_K_INDICES], [-1, k])
  elif record_format.FULL_PROBS in features:
    width = features[record_format.FULL_PROBS].shape[-1] // (
        max_predictions_per_seq)
    probs = tf.reshape(features[record_format.FULL_PROBS], [-1, width])
    indices = None
  else:
    return None
  return probs, indices, features.get(record_format.NEXT_SENTENCE_PROBS)


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
    probs, indices, next_sentence_probs = labels
    losses["kd_loss"] = masked_lm_soft_loss(
        masked_lm_logits, probs, indices, weights, options.kd_target,
        options.temperature)
    if next_sentence_probs is not None:
      losses["next_sentence_soft_loss"] = options.temperature ** 2 * (
          tf.reduce_mean(soft_cross_entropy(
              next_sentence_logits, next_sentence_probs,
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
    probs, indices, _ = labels
    metrics["teacher_top1_agreement"] = tf1.metrics.accuracy(
        teacher_top1(probs, indices), predictions, weights=weights)
    metrics["kd_loss"] = tf1.metrics.mean(losses["kd_loss"],
                                          weights=tf.reduce_sum(weights))
  return metrics
