# coding=utf-8
"""Trains a student BERT on a teacher's stored labels (knowledge distillation).

The records come from produce_teacher_labels.py: the pretraining inputs plus
the teacher's top-k masked-LM probabilities (or the full distribution with
--truncation_factor 0) and its next-sentence probabilities. The student's
shape comes from --bert_config_file.

The loss is
  soft_label_weight * T^2 * CE(teacher target at T, student softmax at T)
  + hard_label_weight * CE(masked_lm_ids, student softmax)
  + the next-sentence loss (--nsp_loss hard | soft | none),
where T is --temperature and the teacher target is chosen by --kd_target.
The defaults (T 1, truncated top-k target, soft weight 1, hard weight 0, hard
next-sentence loss) are the original project's loss.

With --soft_label_weight 0 --hard_label_weight 1 and plain pretraining
records this is ordinary BERT pretraining.

network_distillation_distributed_truncated.py runs this same code under
Horovod; everything that differs between the two lives in a Distribution.
"""

import hashlib
import json
import os
import re
import sys
import threading
import time

from absl import flags
import numpy as np
import tensorflow as tf

import command_line
import modeling
import optimization
import record_format

tf1 = tf.compat.v1

flags.DEFINE_string(
    "bert_config_file", None,
    "The config json file of the student BERT. This specifies the student's "
    "architecture.")

flags.DEFINE_string(
    "input_file", None,
    "Input TF example files with teacher labels (can be a glob or comma "
    "separated).")

flags.DEFINE_string(
    "output_dir", None,
    "The output directory where the model checkpoints will be written.")

flags.DEFINE_string(
    "init_checkpoint", None,
    "Initial checkpoint (usually from a pre-trained BERT model). Loaded by "
    "variable name, or by --init_layer_map.")

flags.DEFINE_integer(
    "truncation_factor", 10,
    "Number of top probable words the records hold per masked position "
    "(0 = the records hold the full distribution, masked_lm_probs).")

flags.DEFINE_integer(
    "max_seq_length", 128,
    "The maximum total input sequence length after WordPiece tokenization. "
    "Must match data generation.")

flags.DEFINE_integer(
    "max_predictions_per_seq", 20,
    "Maximum number of masked LM predictions per sequence. Must match data "
    "generation.")

flags.DEFINE_bool("do_train", False, "Whether to run training.")

flags.DEFINE_bool("do_eval", False, "Whether to run eval on the dev set.")

flags.DEFINE_integer("train_batch_size", 32, "Total batch size for training.")

flags.DEFINE_integer("eval_batch_size", 8, "Total batch size for eval.")

flags.DEFINE_float("learning_rate", 5e-5, "The initial learning rate for Adam.")

flags.DEFINE_integer("num_train_steps", 100000, "Number of training steps.")

flags.DEFINE_integer("num_warmup_steps", 10000, "Number of warmup steps.")

flags.DEFINE_integer("save_checkpoints_steps", 1000,
                     "How often to save the model checkpoint.")

flags.DEFINE_integer(
    "iterations_per_loop", 1000,
    "How many steps to make in each estimator call on a TPU in the original. "
    "Here (CPU/GPU) it sets how often the step rate and sequences/s are "
    "logged.")

flags.DEFINE_integer("max_eval_steps", 100, "Maximum number of eval steps.")

# New flags; their defaults keep the original behaviour.
flags.DEFINE_float(
    "temperature", 1.0,
    "Softmax temperature T of the teacher target and the student in the soft "
    "loss; the soft loss is scaled by T^2.")

flags.DEFINE_enum(
    "kd_target", "truncated", ["truncated", "renormalized", "residual"],
    "Teacher target built from the top-k labels: 'truncated' (the original's "
    "unnormalized top-k), 'renormalized' (top-k rescaled to sum to 1) or "
    "'residual' (top-k plus one bucket for the rest of the vocabulary).")

flags.DEFINE_float("soft_label_weight", 1.0,
                   "Weight of the soft (teacher) masked-LM loss.")

flags.DEFINE_float(
    "hard_label_weight", 0.0,
    "Weight of the usual masked-LM cross-entropy on masked_lm_ids.")

flags.DEFINE_enum(
    "nsp_loss", "hard", ["hard", "soft", "none"],
    "Next-sentence loss: cross-entropy on next_sentence_labels ('hard'), on "
    "the teacher's next_sentence_probs at --temperature ('soft'), or none.")

flags.DEFINE_string(
    "init_layer_map", "",
    "Comma-separated teacher layer for each student layer, e.g. "
    "'0,2,4,7,9,11': student layer i starts from teacher layer map[i] of "
    "--init_checkpoint. Embeddings, pooler and heads are copied by name.")

flags.DEFINE_bool(
    "init_skip_mismatched", False,
    "Leave variables whose shape differs from --init_checkpoint at their "
    "random initialisation instead of failing.")

flags.DEFINE_string(
    "eval_input_file", "",
    "Held-out TF example files for --do_eval (glob or comma separated). "
    "Without it, evaluation uses the training files.")

flags.DEFINE_integer(
    "step_timeout_secs", 0,
    "Abort the process (exit status 3) when no training step finishes for "
    "this many seconds, e.g. when a Horovod peer hangs. 0 = off. Under "
    "Horovod with --eval_every_steps, make it longer than an evaluation: "
    "the other ranks wait for rank 0 to evaluate.")

flags.DEFINE_integer(
    "eval_every_steps", 0,
    "With --do_train and --do_eval: train in chunks of this many steps, "
    "evaluate after each chunk and append the metrics to "
    "output_dir/eval_history.jsonl. 0 = evaluate once at the end.")

FLAGS = flags.FLAGS

TIMEOUT_EXIT_STATUS = 3


InputError = command_line.InputError


class Distribution(object):
  """How this process takes part in training. The defaults: one process.

  The Horovod wrapper passes its own values. Attributes:
    size: number of processes training together.
    rank: this process's index; rank 0 is the chief.
    model_dir: where this process keeps checkpoints (None = --output_dir).
    use_horovod: average gradients over the processes.
    scale_learning_rate: with Horovod, multiply the learning rate by size.
    train_hooks: extra SessionRunHooks for training.
    session_config: a tf ConfigProto or None.
  """

  def __init__(self, size=1, rank=0, model_dir=None, use_horovod=False,
               scale_learning_rate=True, train_hooks=(), session_config=None):
    self.size = size
    self.rank = rank
    self.model_dir = model_dir
    self.use_horovod = use_horovod
    self.scale_learning_rate = scale_learning_rate
    self.train_hooks = list(train_hooks)
    self.session_config = session_config

  @property
  def is_chief(self):
    """Rank 0 loads --init_checkpoint, writes output_dir and evaluates."""
    return self.rank == 0

  def agree(self, value):
    """Returns rank 0's `value` on every rank (one process: `value`)."""
    return value


# ---------------------------------------------------------------------------
# Losses.


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

  None when the records carry no teacher labels.
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
  return probs, indices, features[record_format.NEXT_SENTENCE_PROBS]


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


# ---------------------------------------------------------------------------
# Student initialisation.


def parse_layer_map(text):
  """Parses --init_layer_map ("0,2,4") into a list of ints ([] if empty)."""
  if not text.strip():
    return []
  try:
    return [int(part) for part in text.split(",")]
  except ValueError:
    raise InputError("--init_layer_map must be comma-separated integers, got "
                     "%r" % text)


def checkpoint_name_for(student_name, layer_map):
  """The checkpoint variable that initialises `student_name`."""
  match = re.match(r"^(.*/encoder/)layer_(\d+)(/.*)$", student_name)
  if not layer_map or not match:
    return student_name
  return "%slayer_%d%s" % (match.group(1), layer_map[int(match.group(2))],
                           match.group(3))


def init_student_from_checkpoint(tvars, init_checkpoint, layer_map=None,
                                 skip_mismatched=False):
  """Initialises the student's variables from a (teacher) checkpoint.

  Without layer_map, variables load by name (the original behaviour). With
  it, student layer i loads teacher layer layer_map[i]; other variables
  (embeddings, pooler, heads) load by name. Variables that the checkpoint
  lacks keep their random initialisation (and are logged).

  Returns {student variable name: checkpoint name} of what was loaded.

  Raises:
    InputError: on a shape mismatch (unless skip_mismatched), or a layer map
      that does not fit the student or the teacher.
  """
  checkpoint_shapes = dict(tf.train.list_variables(init_checkpoint))
  layer_map = layer_map or []
  if layer_map:
    student_layers = {int(m.group(1)) for m in (
        re.search(r"/encoder/layer_(\d+)/", var.name) for var in tvars) if m}
    teacher_layers = {int(m.group(1)) for m in (
        re.search(r"/encoder/layer_(\d+)/", name)
        for name in checkpoint_shapes) if m}
    if len(layer_map) != len(student_layers):
      raise InputError(
          "--init_layer_map has %d entries but the student (--bert_config_file)"
          " has %d layers" % (len(layer_map), len(student_layers)))
    unknown = sorted(set(layer_map) - teacher_layers)
    if unknown:
      raise InputError(
          "--init_layer_map names teacher layers %s, but --init_checkpoint %s "
          "has layers 0..%d" % (unknown, init_checkpoint,
                                max(teacher_layers or {-1})))

  loaded, missing, mismatched = {}, [], []
  for var in tvars:
    name = re.sub(r":\d+$", "", var.name)
    source = checkpoint_name_for(name, layer_map)
    if source not in checkpoint_shapes:
      missing.append(name)
    elif list(checkpoint_shapes[source]) != var.shape.as_list():
      mismatched.append("%s: student %s, checkpoint %s %s" % (
          name, var.shape.as_list(), source, list(checkpoint_shapes[source])))
    else:
      # One call per variable: a teacher layer may feed several students.
      tf1.train.init_from_checkpoint(init_checkpoint, {source: var})
      loaded[name] = source

  if mismatched and not skip_mismatched:
    raise InputError(
        "--init_checkpoint %s does not fit the student (--bert_config_file); "
        "shape mismatch:\n  %s\nPass --init_skip_mismatched to leave these "
        "variables randomly initialised." % (init_checkpoint,
                                             "\n  ".join(mismatched)))
  for name, source in sorted(loaded.items()):
    tf1.logging.info("  init %s <- %s", name, source)
  if mismatched:
    tf1.logging.warning("Shape mismatch, left random (--init_skip_mismatched)"
                        ":\n  %s", "\n  ".join(mismatched))
  if missing:
    tf1.logging.warning("Not in --init_checkpoint, left random: %s", missing)
  tf1.logging.info("Initialised %d of %d variables from %s", len(loaded),
                   len(tvars), init_checkpoint)
  return loaded


# ---------------------------------------------------------------------------
# Model and input.


def model_fn_builder(bert_config, options, init_checkpoint, layer_map,
                     skip_mismatched, learning_rate, num_train_steps,
                     num_warmup_steps, max_predictions_per_seq, distribution,
                     stats):
  """Returns the Estimator model_fn; it records the parameter count in stats."""

  def model_fn(features, labels, mode, params):
    """Builds the student and its loss, train op or metrics."""
    del labels, params  # The labels travel in `features`.
    is_training = mode == tf.estimator.ModeKeys.TRAIN
    _, masked_lm_logits, next_sentence_logits = modeling.pretraining_model(
        bert_config, is_training, features["input_ids"],
        features["masked_lm_positions"], input_mask=features["input_mask"],
        token_type_ids=features["segment_ids"])

    tvars = tf1.trainable_variables()
    stats["params"] = modeling.count_parameters(tvars)
    # Under Horovod, rank 0 loads and BroadcastGlobalVariablesHook copies.
    if init_checkpoint and distribution.is_chief:
      init_student_from_checkpoint(tvars, init_checkpoint, layer_map,
                                   skip_mismatched)

    # Training skips the teacher terms it does not use (they cost a vocab-
    # sized softmax pass); evaluation reports them whenever labels exist.
    losses = compute_losses(
        options, features, masked_lm_logits, next_sentence_logits,
        max_predictions_per_seq,
        with_teacher_terms=not is_training or options.needs_teacher_labels)

    if is_training:
      for name, value in losses.items():
        tf1.summary.scalar(name, value)
      train_op = optimization.create_optimizer(
          losses["total"], learning_rate, num_train_steps, num_warmup_steps,
          False, use_horovod=distribution.use_horovod,
          scale_learning_rate=distribution.scale_learning_rate)
      return tf.estimator.EstimatorSpec(mode, loss=losses["total"],
                                        train_op=train_op)
    if mode == tf.estimator.ModeKeys.EVAL:
      return tf.estimator.EstimatorSpec(
          mode, loss=losses["total"],
          eval_metric_ops=eval_metric_ops(
              features, masked_lm_logits, next_sentence_logits, losses,
              max_predictions_per_seq))
    raise ValueError("Only TRAIN and EVAL modes are supported: %s" % mode)

  return model_fn


def input_fn_builder(input_files, batch_size, max_seq_length,
                     max_predictions_per_seq, label_spec, is_training,
                     num_shards=1, shard_index=0):
  """Returns an input_fn reading (distillation or pretraining) records.

  label_spec is the teacher label parsing spec (record_format), or None to
  read the pretraining features only. Training shards the files by
  shard_index (or the records, when there are fewer files than shards),
  shuffles, and repeats whole epochs.
  """
  spec = record_format.pretraining_feature_spec(max_seq_length,
                                                max_predictions_per_seq)
  spec.update(label_spec or {})
  files = list(input_files)

  def decode(record):
    """Parses one record; int64 becomes int32 as the model expects."""
    example = tf.io.parse_single_example(record, spec)
    return {name: tf.cast(value, tf.int32) if value.dtype == tf.int64
            else value for name, value in example.items()}

  def input_fn(params):  # pylint: disable=unused-argument
    """The tf.data pipeline."""
    if not is_training:
      dataset = tf.data.TFRecordDataset(files)
    elif num_shards > 1 and len(files) < num_shards:
      # Fixed order on every rank, so the record shards are disjoint.
      tf1.logging.info("Shard %d of %d: every %d-th record of %d file(s)",
                       shard_index, num_shards, num_shards, len(files))
      dataset = tf.data.TFRecordDataset(files).shard(num_shards, shard_index)
    else:
      my_files = files[shard_index::num_shards]
      if num_shards > 1:
        tf1.logging.info("Shard %d of %d: files %s", shard_index, num_shards,
                         ", ".join(my_files))
      dataset = tf.data.Dataset.from_tensor_slices(my_files)
      dataset = dataset.shuffle(len(my_files))
      dataset = dataset.interleave(
          tf.data.TFRecordDataset, cycle_length=min(4, len(my_files)),
          num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    if is_training:
      # Shuffle before repeat: every epoch is seen whole before the next.
      dataset = dataset.shuffle(1000).repeat()
    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=is_training)
    return dataset.prefetch(tf.data.AUTOTUNE)

  return input_fn


# ---------------------------------------------------------------------------
# Input checks.


def expand_files(patterns, flag_name):
  """Expands a glob/comma list, or raises InputError naming the flag."""
  try:
    return record_format.expand_input_files(patterns or "")
  except ValueError:
    raise InputError("%s %r matches no files" % (flag_name, patterns))


def _first_examples(path, count):
  """The first `count` records of `path` as tf.train.Example."""
  examples = []
  for raw in tf1.io.tf_record_iterator(path):
    examples.append(tf.train.Example.FromString(raw))
    if len(examples) == count:
      break
  return examples


def _max_int(examples, name):
  """The largest value of int64 feature `name` over `examples`."""
  return max(max(example.features.feature[name].int64_list.value or [0])
             for example in examples)


def check_input_files(files, flag_name, max_seq_length,
                      max_predictions_per_seq, truncation_factor, vocab_size,
                      needs_teacher_labels):
  """Checks the first records of files[0] against the flags.

  Returns True when the records hold teacher labels (then they match
  --truncation_factor and the student's vocab_size).

  Raises:
    InputError: with a message naming the flag to fix.
  """
  path = files[0]
  try:
    described = record_format.describe_record(path)
  except ValueError as error:
    raise InputError("%s: %s" % (flag_name, error))

  def length(name):
    return described.get(name, (None, None))[1]

  if "input_ids" not in described:
    raise InputError("%s: %s is not a pretraining/distillation record file "
                     "(no input_ids)" % (flag_name, path))
  if length("input_ids") != max_seq_length:
    raise InputError(
        "--max_seq_length is %d but %s holds sequences of length %d; pass "
        "--max_seq_length %d" % (max_seq_length, path, length("input_ids"),
                                 length("input_ids")))
  if length("masked_lm_positions") != max_predictions_per_seq:
    raise InputError(
        "--max_predictions_per_seq is %d but %s holds %d predictions per "
        "sequence; pass --max_predictions_per_seq %d" % (
            max_predictions_per_seq, path, length("masked_lm_positions"),
            length("masked_lm_positions")))

  if record_format.TRUNCATED_PROBS in described:
    held = length(record_format.TRUNCATED_PROBS) // max_predictions_per_seq
    holds = "top-%d teacher labels (truncation_factor %d)" % (held, held)
  elif record_format.FULL_PROBS in described:
    held = 0
    width = length(record_format.FULL_PROBS) // max_predictions_per_seq
    holds = ("full teacher distributions over %d tokens (truncation_factor 0)"
             % width)
  else:
    if needs_teacher_labels:
      raise InputError(
          "%s: %s holds no teacher labels; run produce_teacher_labels.py "
          "first (or train on hard labels only: --soft_label_weight 0 "
          "--nsp_loss hard|none)" % (flag_name, path))
    held = None

  examples = _first_examples(path, 32)
  largest = max(_max_int(examples, "input_ids"),
                _max_int(examples, "masked_lm_ids"))
  if largest >= vocab_size:
    raise InputError(
        "%s holds token id %d but the student's vocab_size "
        "(--bert_config_file) is %d" % (path, largest, vocab_size))
  if held is None:
    return False

  if held != truncation_factor:
    raise InputError("--truncation_factor is %d but %s holds %s; pass "
                     "--truncation_factor %d" % (truncation_factor, path,
                                                 holds, held))
  if held == 0 and width != vocab_size:
    raise InputError(
        "%s holds %s but the student's vocab_size (--bert_config_file) is %d;"
        " student and teacher must share the vocabulary" % (path, holds,
                                                            vocab_size))
  if held > 0:
    largest = _max_int(examples, record_format.TOP_K_INDICES)
    if largest >= vocab_size:
      raise InputError(
          "%s: the teacher labels hold token index %d but the student's "
          "vocab_size (--bert_config_file) is %d; student and teacher must "
          "share the vocabulary" % (path, largest, vocab_size))
  return True


# ---------------------------------------------------------------------------
# Hooks.


class StepTimeoutHook(tf1.train.SessionRunHook):
  """Aborts the process when no training step finishes in time.

  A watchdog thread starts when the session is ready. If `timeout_secs` pass
  without a finished step (a hung input, or a Horovod peer that hangs
  instead of dying) it logs why and calls os._exit, so that mpirun or
  horovodrun tear the job down instead of waiting forever. The clock runs
  from session creation, so it also covers a rank waiting in the initial
  broadcast (e.g. for rank 0 to finish an --eval_every_steps evaluation).
  """

  def __init__(self, timeout_secs):
    self._timeout_secs = timeout_secs
    self._last_progress = time.time()
    self._stop = None

  def after_create_session(self, session, coord):
    self._last_progress = time.time()
    # A fresh event per session, so an old watchdog never wakes up again.
    self._stop = threading.Event()
    threading.Thread(target=self._watch, args=(self._stop,),
                     daemon=True).start()

  def after_run(self, run_context, run_values):
    self._last_progress = time.time()

  def end(self, session):
    if self._stop is not None:
      self._stop.set()

  def _watch(self, stop):
    """Checks a few times per timeout; exits the process on a stall."""
    while not stop.wait(min(1.0, self._timeout_secs / 4.0)):
      waited = time.time() - self._last_progress
      if waited > self._timeout_secs:
        message = ("No training step finished in %.0f s (--step_timeout_secs "
                   "%d): a worker or the input is stuck. Aborting; rerun the "
                   "same command to resume from the last checkpoint." % (
                       waited, self._timeout_secs))
        tf1.logging.error(message)
        sys.stderr.write("ERROR: %s\n" % message)
        sys.stderr.flush()
        os._exit(TIMEOUT_EXIT_STATUS)  # pylint: disable=protected-access


class ThroughputHook(tf1.train.SessionRunHook):
  """Measures training sequences/s, leaving out each session's first steps.

  The clock starts after `skip_steps` steps of a session (graph optimisation
  and warm-up happen there) and stops at the session's last step; in between
  it covers everything (input, summaries, periodic checkpoints). Logs the
  rate every `every_n_steps` steps. Totals accumulate over several
  estimator.train calls; `seconds` is the wall time of the sessions.
  """

  def __init__(self, sequences_per_step, every_n_steps, skip_steps=2):
    self._sequences_per_step = sequences_per_step
    self._every_n_steps = max(1, every_n_steps)
    self._skip_steps = skip_steps
    self.steps = 0
    self.seconds = 0.0
    self.timed_steps = 0
    self.timed_seconds = 0.0

  def after_create_session(self, session, coord):
    self._session_start = time.time()
    self._session_steps = 0
    self._mark = None
    self._last_step_end = None

  def after_run(self, run_context, run_values):
    self._session_steps += 1
    self.steps += 1
    self._last_step_end = time.time()
    if self._session_steps == self._skip_steps:
      self._mark = self._last_step_end
    elif self._mark is not None and self.steps % self._every_n_steps == 0:
      tf1.logging.info("%.1f sequences/s", self._sequences_per_step * (
          self._session_steps - self._skip_steps) / (
              self._last_step_end - self._mark))

  def end(self, session):
    self.seconds += time.time() - self._session_start
    if self._mark is not None and self._session_steps > self._skip_steps:
      self.timed_steps += self._session_steps - self._skip_steps
      self.timed_seconds += self._last_step_end - self._mark

  def sequences_per_second(self):
    """The measured rate; falls back to all steps if too few were timed."""
    if self.timed_steps and self.timed_seconds > 0:
      return self._sequences_per_step * self.timed_steps / self.timed_seconds
    if self.seconds > 0:
      return self._sequences_per_step * self.steps / self.seconds
    return 0.0


class VariablesChecksumHook(tf1.train.SessionRunHook):
  """Logs a checksum of all global variables when training ends.

  Ranks of a Horovod job must end with identical variables; comparing the
  logged lines checks that.
  """

  def __init__(self, rank):
    self._rank = rank

  def begin(self):
    self._variables = sorted(tf1.global_variables(), key=lambda v: v.name)

  def end(self, session):
    values = session.run(self._variables)
    digest = hashlib.sha256()
    total = 0.0
    for value in values:
      value = np.asarray(value)
      digest.update(value.tobytes())
      total += float(np.sum(value, dtype=np.float64))
    tf1.logging.info("rank %d variables checksum: sha256=%s sum=%.10g",
                     self._rank, digest.hexdigest(), total)


# ---------------------------------------------------------------------------
# Output files.


def write_atomically(path, text):
  """Writes text to path through a temporary file and a rename."""
  temporary = path + ".tmp"
  with tf.io.gfile.GFile(temporary, "w") as writer:
    writer.write(text)
  tf.io.gfile.rename(temporary, path, overwrite=True)


def write_eval_results(output_dir, results):
  """Writes output_dir/eval_results.txt as `name = value` lines."""
  lines = []
  tf1.logging.info("***** Eval results *****")
  for key in sorted(results):
    tf1.logging.info("  %s = %s", key, results[key])
    lines.append("%s = %s\n" % (key, results[key]))
  write_atomically(os.path.join(output_dir, "eval_results.txt"),
                   "".join(lines))


def append_eval_history(output_dir, results):
  """Appends {"step": ..., metrics...} to output_dir/eval_history.jsonl."""
  path = os.path.join(output_dir, "eval_history.jsonl")
  previous = ""
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as reader:
      previous = reader.read()
  entry = {"step": int(results["global_step"])}
  entry.update({key: float(value) for key, value in results.items()
                if key != "global_step"})
  write_atomically(path, previous + json.dumps(entry, sort_keys=True) + "\n")


def write_train_stats(output_dir, params, throughput, processes):
  """Writes output_dir/train_stats.json (read by the demo's report)."""
  train_stats = {
      "params": params,
      "train_seq_per_s": throughput.sequences_per_second(),
      "steps": throughput.steps,
      "seconds": throughput.seconds,
      "processes": processes,
  }
  tf1.logging.info("Training stats: %s", train_stats)
  write_atomically(os.path.join(output_dir, "train_stats.json"),
                   json.dumps(train_stats, indent=2) + "\n")


def checkpoint_step(model_dir):
  """The global step of the latest checkpoint in model_dir (0 if none)."""
  latest = tf.train.latest_checkpoint(model_dir)
  if not latest:
    return 0
  return int(tf.train.load_checkpoint(latest).get_tensor("global_step"))


# ---------------------------------------------------------------------------
# The run.


def check_flags():
  """Validates flag combinations; raises InputError."""
  if not FLAGS.do_train and not FLAGS.do_eval:
    raise InputError("At least one of --do_train or --do_eval must be True.")
  if FLAGS.temperature <= 0:
    raise InputError("--temperature must be positive, got %g" %
                     FLAGS.temperature)
  if FLAGS.soft_label_weight < 0 or FLAGS.hard_label_weight < 0:
    raise InputError("--soft_label_weight and --hard_label_weight must not be "
                     "negative")
  if FLAGS.truncation_factor < 0:
    raise InputError("--truncation_factor must be >= 0")
  if FLAGS.step_timeout_secs < 0 or FLAGS.eval_every_steps < 0:
    raise InputError("--step_timeout_secs and --eval_every_steps must be >= 0")


def loss_options_from_flags():
  """LossOptions from the flags."""
  return LossOptions(FLAGS.temperature, FLAGS.kd_target,
                     FLAGS.soft_label_weight, FLAGS.hard_label_weight,
                     FLAGS.nsp_loss)


def checked_input(patterns, flag_name, bert_config, options):
  """Expands and checks input files; returns (files, label spec or None)."""
  files = expand_files(patterns, flag_name)
  has_labels = check_input_files(
      files, flag_name, FLAGS.max_seq_length, FLAGS.max_predictions_per_seq,
      FLAGS.truncation_factor, bert_config.vocab_size,
      options.needs_teacher_labels)
  if not has_labels:
    return files, None
  return files, record_format.teacher_label_spec(
      FLAGS.max_predictions_per_seq, FLAGS.truncation_factor,
      bert_config.vocab_size)


def build_estimator(model_fn, distribution):
  """The Estimator of this process; only rank 0 saves into --output_dir."""
  run_config = tf.estimator.RunConfig(
      model_dir=distribution.model_dir or FLAGS.output_dir,
      save_checkpoints_steps=(FLAGS.save_checkpoints_steps
                              if distribution.is_chief else None),
      save_summary_steps=100 if distribution.is_chief else None,
      log_step_count_steps=FLAGS.iterations_per_loop,
      keep_checkpoint_max=5,
      session_config=distribution.session_config)
  return tf.estimator.Estimator(model_fn=model_fn, config=run_config)


def train(estimator, input_fn, num_train_steps, hooks, distribution,
          evaluate_every=0, evaluate=None):
  """Trains to num_train_steps, resuming from rank 0's last checkpoint.

  With evaluate_every > 0, trains in chunks ending at multiples of it and
  calls evaluate() after each (rank 0 passes it; the others pass None).
  Returns True when the last step was evaluated.
  """
  # Every rank must agree, or rank 0 would skip training that the others
  # start (and wait for it forever).
  step = distribution.agree(
      checkpoint_step(FLAGS.output_dir) if distribution.is_chief else 0)
  if step >= num_train_steps:
    tf1.logging.info("Already trained to step %d; nothing to train.", step)
    return False
  while step < num_train_steps:
    target = num_train_steps
    if evaluate_every:
      target = min(num_train_steps, (step // evaluate_every + 1) *
                   evaluate_every)
    tf1.logging.info("***** Training to step %d *****", target)
    estimator.train(input_fn=input_fn, max_steps=target, hooks=hooks)
    step = target
    if evaluate_every and evaluate:
      evaluate()
  return bool(evaluate_every and evaluate)


def run(distribution):
  """Trains and/or evaluates as the flags say; this process's part of it."""
  tf1.logging.set_verbosity(tf1.logging.INFO)
  check_flags()
  bert_config = modeling.BertConfig.from_json_file(FLAGS.bert_config_file)
  if FLAGS.max_seq_length > bert_config.max_position_embeddings:
    raise InputError(
        "--max_seq_length %d exceeds max_position_embeddings %d of "
        "--bert_config_file" % (FLAGS.max_seq_length,
                                bert_config.max_position_embeddings))
  options = loss_options_from_flags()
  layer_map = parse_layer_map(FLAGS.init_layer_map)
  if layer_map and not FLAGS.init_checkpoint:
    raise InputError("--init_layer_map needs --init_checkpoint (the teacher)")

  train_files, train_label_spec = checked_input(
      FLAGS.input_file, "--input_file", bert_config, options)
  run_eval = FLAGS.do_eval and distribution.is_chief
  if run_eval and FLAGS.eval_input_file:
    eval_files, eval_label_spec = checked_input(
        FLAGS.eval_input_file, "--eval_input_file", bert_config, options)
  elif run_eval:
    tf1.logging.warning(
        "No --eval_input_file: evaluation uses the TRAINING files (%s), so "
        "its numbers do not measure generalisation.", FLAGS.input_file)
    eval_files, eval_label_spec = train_files, train_label_spec

  # As in the original: every process does its share of the steps.
  num_train_steps = FLAGS.num_train_steps // distribution.size
  num_warmup_steps = FLAGS.num_warmup_steps // distribution.size
  if FLAGS.do_train and num_train_steps < 1:
    raise InputError("--num_train_steps %d is less than one step per process "
                     "(%d processes)" % (FLAGS.num_train_steps,
                                         distribution.size))
  if distribution.is_chief:
    tf.io.gfile.makedirs(FLAGS.output_dir)
  stats = {}
  model_fn = model_fn_builder(
      bert_config, options, FLAGS.init_checkpoint, layer_map,
      FLAGS.init_skip_mismatched, FLAGS.learning_rate, num_train_steps,
      num_warmup_steps, FLAGS.max_predictions_per_seq, distribution, stats)
  estimator = build_estimator(model_fn, distribution)

  def evaluate():
    """Evaluates the latest checkpoint; writes eval_results.txt."""
    results = estimator.evaluate(
        input_fn=input_fn_builder(
            eval_files, FLAGS.eval_batch_size, FLAGS.max_seq_length,
            FLAGS.max_predictions_per_seq, eval_label_spec,
            is_training=False),
        steps=FLAGS.max_eval_steps)
    write_eval_results(FLAGS.output_dir, results)
    if FLAGS.do_train and FLAGS.eval_every_steps:
      append_eval_history(FLAGS.output_dir, results)

  evaluated = False
  if FLAGS.do_train:
    throughput = ThroughputHook(FLAGS.train_batch_size * distribution.size,
                                FLAGS.iterations_per_loop)
    hooks = [throughput, VariablesChecksumHook(distribution.rank)]
    if FLAGS.step_timeout_secs:
      # First, so that it also watches the other hooks' session setup.
      hooks.insert(0, StepTimeoutHook(FLAGS.step_timeout_secs))
    evaluated = train(
        estimator,
        input_fn_builder(
            train_files, FLAGS.train_batch_size, FLAGS.max_seq_length,
            FLAGS.max_predictions_per_seq, train_label_spec,
            is_training=True, num_shards=distribution.size,
            shard_index=distribution.rank),
        num_train_steps, hooks + distribution.train_hooks, distribution,
        evaluate_every=FLAGS.eval_every_steps if FLAGS.do_eval else 0,
        evaluate=evaluate if run_eval else None)
    if distribution.is_chief and throughput.steps:
      write_train_stats(FLAGS.output_dir, stats["params"], throughput,
                        distribution.size)

  if run_eval and not evaluated:
    evaluate()


def main(_):
  run(Distribution())


if __name__ == "__main__":
  flags.mark_flag_as_required("bert_config_file")
  flags.mark_flag_as_required("input_file")
  flags.mark_flag_as_required("output_dir")
  command_line.run(main)
