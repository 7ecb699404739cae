"""The TFRecord schemas that pass data between stages, defined once.

Pretraining records (create_pretraining_data.py -> produce_teacher_labels.py)
hold the masked-LM and next-sentence inputs. Distillation records
(produce_teacher_labels.py -> trainers) hold the same features plus the
teacher's labels: top-k probabilities and indices when k > 0, or the whole
distribution when k = 0, or (--label_sampling) k sampled token ids with
importance weights; and the teacher's next-sentence distribution (absent
when the teacher has no next-sentence head, e.g. one converted from Hugging
Face's BertForMaskedLM).
"""

from google.protobuf import message
import tensorflow as tf

TRUNCATED_PROBS = "truncated_masked_lm_probs"
TOP_K_INDICES = "top_k_indices"
FULL_PROBS = "masked_lm_probs"
NEXT_SENTENCE_PROBS = "next_sentence_probs"
# Sampled labels (produce_teacher_labels.py --label_sampling) have names of
# their own: their weights are unbiased estimates of the teacher's
# probabilities, not probabilities, and must never be read as top-k labels.
SAMPLED_IDS = "sampled_token_ids"
SAMPLED_WEIGHTS = "sampled_token_weights"
SAMPLED_TEMPERATURE = "sampled_label_temperature"

# Every feature that marks a record as holding teacher labels.
LABEL_FEATURES = (TRUNCATED_PROBS, TOP_K_INDICES, FULL_PROBS, SAMPLED_IDS,
                  SAMPLED_WEIGHTS, SAMPLED_TEMPERATURE, NEXT_SENTENCE_PROBS)

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
                       sampled=False, with_next_sentence=True):
  """Returns the parsing spec of the teacher's labels alone.

  With truncation_factor k > 0 the labels are the top-k probabilities and
  their vocabulary indices, or with sampled=True k slots of sampled ids and
  importance weights plus the temperature they were drawn at; with k = 0
  they are the whole distribution.
  with_next_sentence: whether the records hold next_sentence_probs.
  """
  spec = {}
  if with_next_sentence:
    spec[NEXT_SENTENCE_PROBS] = tf.io.FixedLenFeature([2], tf.float32)
  if sampled:
    width = max_predictions_per_seq * truncation_factor
    spec[SAMPLED_IDS] = tf.io.FixedLenFeature([width], tf.int64)
    spec[SAMPLED_WEIGHTS] = tf.io.FixedLenFeature([width], tf.float32)
    spec[SAMPLED_TEMPERATURE] = tf.io.FixedLenFeature([1], tf.float32)
  elif truncation_factor > 0:
    width = max_predictions_per_seq * truncation_factor
    spec[TRUNCATED_PROBS] = tf.io.FixedLenFeature([width], tf.float32)
    spec[TOP_K_INDICES] = tf.io.FixedLenFeature([width], tf.int64)
  else:
    spec[FULL_PROBS] = tf.io.FixedLenFeature(
        [max_predictions_per_seq * vocab_size], tf.float32)
  return spec


def distillation_feature_spec(max_seq_length, max_predictions_per_seq,
                              truncation_factor, vocab_size, sampled=False):
  """Returns the parsing spec of a distillation record (inputs + labels)."""
  spec = pretraining_feature_spec(max_seq_length, max_predictions_per_seq)
  spec.update(teacher_label_spec(max_predictions_per_seq, truncation_factor,
                                 vocab_size, sampled))
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


class DamagedRecordError(ValueError):
  """A record that fails its CRC check or is cut short, and where it is."""

  def __init__(self, path, count, offset, reason):
    kind = ("truncated (the file ends inside it)" if "truncated" in reason
            else "corrupted (its checksum does not match)")
    super(DamagedRecordError, self).__init__(
        "%s is damaged: the record at byte offset %d (after %d good ones) "
        "is %s. Remove the file from the list or regenerate it." % (
            path, offset, count, kind))
    self.path = path
    self.count = count
    self.offset = offset


def _records(path):
  """Yields the serialized records of a TFRecord file, checking their CRCs.

  Raises DamagedRecordError at the first damaged record.
  """
  count, offset = 0, 0
  try:
    for raw in tf.compat.v1.io.tf_record_iterator(path):
      yield raw
      count += 1
      # A record is its length (8 bytes), the length's CRC (4), the data and
      # the data's CRC (4).
      offset += len(raw) + 16
  except tf.errors.DataLossError as error:
    raise DamagedRecordError(path, count, offset, error.message) from None


def find_damaged_record(paths):
  """Reads every record of every file; returns the first DamagedRecordError.

  Returns None when every file reads cleanly. Slow (it reads everything):
  call it after a tf.errors.DataLossError to say which file it came from.
  """
  for path in paths:
    try:
      for _ in _records(path):
        pass
    except DamagedRecordError as error:
      return error
  return None


def first_examples(path, count):
  """The first `count` records of `path` as tf.train.Example.

  Raises ValueError naming the file when one of them is damaged
  (DamagedRecordError) or is not a tf.train.Example.
  """
  examples = []
  for raw in _records(path):
    try:
      examples.append(tf.train.Example.FromString(raw))
    except message.DecodeError:
      raise ValueError("%s: record %d is not a tf.train.Example; is this a "
                       "record file of this suite?" % (
                           path, len(examples))) from None
    if len(examples) == count:
      break
  return examples


def describe_record(path):
  """Returns {feature name: (kind, length)} for the first record in `path`.

  kind is "int64", "float" or "bytes". Used to check a file against the flags
  before a long run. Raises ValueError when the file holds no record or its
  first record cannot be read.
  """
  examples = first_examples(path, 1)
  if not examples:
    raise ValueError("%s holds no records" % path)
  described = {}
  for name, feature in examples[0].features.feature.items():
    kind = feature.WhichOneof("kind")
    values = getattr(feature, kind).value
    described[name] = (kind.replace("_list", ""), len(values))
  return described


def expand_input_files(patterns):
  """Expands a comma-separated list of globs into a sorted list of files.

  Raises ValueError naming the first entry of the list (a file name or a
  glob) that matches no file: a misspelt name is never silently dropped.
  """
  files = []
  entries = [entry.strip() for entry in patterns.split(",") if entry.strip()]
  if not entries:
    raise ValueError("No input files given (%r)" % patterns)
  for entry in entries:
    if any(c in entry for c in "*?["):
      matches = tf.io.gfile.glob(entry)
    else:
      matches = [entry] if tf.io.gfile.exists(entry) else []
    if not matches:
      raise ValueError("%r matches no files" % entry)
    files.extend(matches)
  return sorted(set(files))
