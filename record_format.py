"""The TFRecord schemas that pass data between stages, defined once.

Pretraining records (create_pretraining_data.py -> produce_teacher_labels.py)
hold the masked-LM and next-sentence inputs. Distillation records
(produce_teacher_labels.py -> trainers) hold the same features plus the
teacher's labels: top-k probabilities and indices when k > 0, or the whole
distribution when k = 0, and the teacher's next-sentence distribution (absent
when the teacher has no next-sentence head, e.g. one converted from Hugging
Face's BertForMaskedLM).
"""


import tensorflow as tf

TRUNCATED_PROBS = "truncated_masked_lm_probs"
TOP_K_INDICES = "top_k_indices"
FULL_PROBS = "masked_lm_probs"
NEXT_SENTENCE_PROBS = "next_sentence_probs"

SEQUENCE_FEATURES = ("input_ids", "input_mask", "segment_ids")
PREDICTION_FEATURES = ("masked_lm_positions", "masked_lm_ids")


def pretraining_feature_spec(max_seq_length, max_predictions_per_seq):
  """Returns the parsing spec of a pretraining record."""
  spec = {}
  for name in SEQUENCE_FEATURES:
    spec[name] = tf.io.FixedLenFeature([max_seq_length], tf.int64)
  for name in PREDICTION_FEATURES:
    spec[name] = tf.io.FixedLenFeature([max_predictions_per_seq], tf.int64)
  spec["masked_lm_weights"] = tf.io.FixedLenFeature(
      [max_predictions_per_seq], tf.float32)
  spec["next_sentence_labels"] = tf.io.FixedLenFeature([1], tf.int64)
  return spec


def teacher_label_spec(max_predictions_per_seq, truncation_factor, vocab_size,
                       with_next_sentence=True):
  """Returns the parsing spec of the teacher's labels alone.

  With truncation_factor k > 0 the labels are the top-k probabilities and
  their vocabulary indices; with k = 0 they are the whole distribution.
  with_next_sentence: whether the records hold next_sentence_probs.
  """
  spec = {}
  if with_next_sentence:
    spec[NEXT_SENTENCE_PROBS] = tf.io.FixedLenFeature([2], tf.float32)
  if truncation_factor > 0:
    width = max_predictions_per_seq * truncation_factor
    spec[TRUNCATED_PROBS] = tf.io.FixedLenFeature([width], tf.float32)
    spec[TOP_K_INDICES] = tf.io.FixedLenFeature([width], tf.int64)
  else:
    spec[FULL_PROBS] = tf.io.FixedLenFeature(
        [max_predictions_per_seq * vocab_size], tf.float32)
  return spec


def distillation_feature_spec(max_seq_length, max_predictions_per_seq,
                              truncation_factor, vocab_size):
  """Returns the parsing spec of a distillation record (inputs + labels)."""
  spec = pretraining_feature_spec(max_seq_length, max_predictions_per_seq)
  spec.update(teacher_label_spec(max_predictions_per_seq, truncation_factor,
                                 vocab_size))
  return spec


def int64_feature(values):
  """Wraps a sequence of integers as a tf.train.Feature."""
  return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def float_feature(values):
  """Wraps a sequence of floats as a tf.train.Feature."""
  return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def make_pretraining_example(input_ids, input_mask, segment_ids,
                             masked_lm_positions, masked_lm_ids,
                             masked_lm_weights, next_sentence_label):
  """Builds a pretraining tf.train.Example from already padded lists."""
  features = {
      "input_ids": int64_feature(input_ids),
      "input_mask": int64_feature(input_mask),
      "segment_ids": int64_feature(segment_ids),
      "masked_lm_positions": int64_feature(masked_lm_positions),
      "masked_lm_ids": int64_feature(masked_lm_ids),
      "masked_lm_weights": float_feature(masked_lm_weights),
      "next_sentence_labels": int64_feature([next_sentence_label]),
  }
  return tf.train.Example(features=tf.train.Features(feature=features))


def describe_record(path):
  """Returns {feature name: (kind, length)} for the first record in `path`.

  kind is "int64", "float" or "bytes". Used to check a file against the flags
  before a long run. Raises ValueError when the file holds no record.
  """
  for raw in tf.compat.v1.io.tf_record_iterator(path):
    example = tf.train.Example.FromString(raw)
    described = {}
    for name, feature in example.features.feature.items():
      kind = feature.WhichOneof("kind")
      values = getattr(feature, kind).value
      described[name] = (kind.replace("_list", ""), len(values))
    return described
  raise ValueError("%s holds no records" % path)


def expand_input_files(patterns):
  """Expands a comma-separated list of globs into a sorted list of files.

  Raises ValueError naming the patterns when nothing matches.
  """
  files = []
  for pattern in patterns.split(","):
    pattern = pattern.strip()
    if pattern:
      files.extend(tf.io.gfile.glob(pattern) if any(c in pattern for c in "*?[")
                   else [pattern] if tf.io.gfile.exists(pattern) else [])
  files = sorted(set(files))
  if not files:
    raise ValueError("No input files match %r" % patterns)
  return files
