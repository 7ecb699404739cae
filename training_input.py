"""The trainers' input: the tf.data pipeline and cheap checks of the records.

check_input_files() reads the first records of the input files and compares
them with the flags, so that a mismatch is an error naming the flag before a
long run starts.
"""

import tensorflow as tf

import command_line
import record_format

tf1 = tf.compat.v1

InputError = command_line.InputError


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
                      needs_teacher_labels, needs_next_sentence_probs=False):
  """Checks the first records of files[0] against the flags.

  Returns True when the records hold teacher labels (then they match
  --truncation_factor and the student's vocab_size). With
  needs_next_sentence_probs (--nsp_loss soft) the labels must include the
  teacher's next-sentence probabilities.

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
  if (needs_next_sentence_probs and
      record_format.NEXT_SENTENCE_PROBS not in described):
    raise InputError(
        "--nsp_loss soft needs the teacher's %s, but %s (%s) holds none: its "
        "teacher had no next-sentence head (e.g. one converted from "
        "BertForMaskedLM). Use --nsp_loss hard or none." % (
            record_format.NEXT_SENTENCE_PROBS, path, flag_name))
  return True


def holds_next_sentence_probs(files):
  """Whether the records (judged by the first) hold next_sentence_probs."""
  return record_format.NEXT_SENTENCE_PROBS in record_format.describe_record(
      files[0])
