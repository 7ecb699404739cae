# coding=utf-8
"""The classifier of run_classifier.py and its losses, fine-tuning and KD.

classifier_logits() is Google's head on the pooled output: dropout 0.1
while training, output_weights [num_labels, hidden] and output_bias
[num_labels] in the current variable scope (top level for the model,
teacher/ for a frozen teacher). classifier_loss() is the training loss:
the labels' cross-entropy (Google's) or, with a teacher,

  soft_weight * T^2 * CE(teacher softmax at T, student softmax at T)
  + hard_weight * CE(label, student softmax),

with squared errors instead for a regression (no T). The hard term averages
over the examples that have a label (label_weights 1).
"""

import tensorflow as tf

from bert_distillation import distillation
import modeling
from bert_distillation import teacher_graph

tf1 = tf.compat.v1

# Google's classifier dropout, on the pooled output while training.
CLASSIFIER_DROPOUT = 0.1


def classifier_logits(pooled_output, num_outputs, is_training,
                      initializer_range):
  """Google's classifier: logits = dropout(pooled) . output_weights^T + b.

  Variables output_weights [num_outputs, hidden] and output_bias
  [num_outputs], named in the current variable scope.
  """
  hidden_size = pooled_output.shape[-1]
  output_weights = tf1.get_variable(
      "output_weights", [num_outputs, hidden_size],
      initializer=tf1.truncated_normal_initializer(stddev=initializer_range))
  output_bias = tf1.get_variable("output_bias", [num_outputs],
                                 initializer=tf1.zeros_initializer())
  if is_training:
    pooled_output = modeling.dropout(pooled_output, CLASSIFIER_DROPOUT)
  logits = tf.matmul(pooled_output, output_weights, transpose_b=True)
  return tf.nn.bias_add(logits, output_bias)


def teacher_logits(teacher_config, features, num_outputs, compute_type,
                   label_order=None):
  """The frozen teacher's logits (no dropout), under tf.stop_gradient.

  label_order: the teacher's class id of each student class, when the two
  order their labels differently (classifier_data.label_order); the logits
  come out in the student's order.
  """
  teacher = teacher_graph.build_teacher(
      teacher_config, features["input_ids"], features["input_mask"],
      features["segment_ids"], compute_type=compute_type)
  with teacher_graph.teacher_scope():
    logits = classifier_logits(teacher.get_pooled_output(), num_outputs,
                               False, teacher_config.initializer_range)
  if label_order is not None:
    logits = tf.gather(logits, label_order, axis=-1)
  return tf.stop_gradient(logits)


def weighted_mean(values, weights):
  """sum(weights * values) / sum(weights); 0 when no weight is positive."""
  return tf.math.divide_no_nan(tf.reduce_sum(weights * values),
                               tf.reduce_sum(weights))


def hard_losses(logits, label_ids, regression):
  """Per-example loss on the labels: cross-entropy, or squared error."""
  if regression:
    return tf.square(logits[:, 0] - tf.cast(label_ids, tf.float32))
  log_probs = tf.nn.log_softmax(logits, axis=-1)
  return -tf.gather(log_probs, tf.cast(label_ids, tf.int32), batch_dims=1)


def soft_losses(logits, teacher_output, regression, temperature):
  """Per-example loss against the teacher, not yet scaled by T^2.

  Cross-entropy of the student's softmax at T against the teacher's softmax
  at T; for a regression, the squared error to the teacher's score.
  """
  if regression:
    return tf.square(logits[:, 0] - teacher_output[:, 0])
  return distillation.soft_cross_entropy(
      logits, tf.nn.softmax(teacher_output, axis=-1), temperature=temperature)


def classifier_loss(logits, features, regression, teacher_output=None,
                    temperature=1.0, soft_weight=1.0, hard_weight=0.0):
  """The training loss (see the module docstring); returns (total, parts).

  Without teacher_output, the mean loss on the labels (Google's).
  """
  hard = weighted_mean(hard_losses(logits, features["label_ids"], regression),
                       features["label_weights"])
  if teacher_output is None:
    return hard, {"hard_loss": hard}
  soft = tf.reduce_mean(soft_losses(logits, teacher_output, regression,
                                    temperature))
  scale = 1.0 if regression else temperature ** 2
  total = soft_weight * scale * soft + hard_weight * hard
  return total, {"hard_loss": hard, "soft_loss": soft}
