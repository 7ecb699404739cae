"""The trainers' input: the tf.data pipeline and cheap checks of the records.

check_input_files() reads the first records of every input file and compares
them with the flags, so that a mismatch is an error naming the flag before a
long run starts.
"""

import os
import stat

import tensorflow as tf

from bert_distillation import command_line
from bert_distillation import distillation
from bert_distillation import record_format

tf1 = tf.compat.v1

InputError = command_line.InputError

# Records per file whose token ids check_input_files compares with the vocab.
EXAMPLES_CHECKED = 8


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
  except ValueError as error:
    raise InputError("%s: %s" % (flag_name, error)) from None


def _max_int(examples, name):
  """The largest value of int64 feature `name` over `examples`."""
  return max(max(example.features.feature[name].int64_list.value or [0])
             for example in examples)


def check_input_files(files, flag_name, max_seq_length,
                      max_predictions_per_seq, truncation_factor, vocab_size,
                      needs_teacher_labels, needs_next_sentence_probs=False,
                      kd_target="truncated", temperature=1.0,
                      accept_full=False, labels_used=True):
  """Checks the first records of every file against the flags.

  Returns the kind of teacher labels the records hold (distillation.TOP_K,
  SAMPLED or FULL), or None when they hold none. Labels must match
  --truncation_factor (full distributions are also taken whatever it says
  when accept_full, as for held-out records), the student's vocab_size and
  --kd_target; sampled labels must have been drawn at --temperature. With
  needs_next_sentence_probs (--nsp_loss soft) the labels must include the
  teacher's next-sentence probabilities. With labels_used False (the
  teacher runs in the graph) the records' labels are not read: they are
  not checked and None is returned.

  Raises:
    InputError: with a message naming the flag to fix, also when some files
      hold teacher labels (or one kind of them) and others do not.
  """
  kinds = {}  # path -> (label kind or None, holds next_sentence_probs)
  for path in files:
    if _is_pipe(path):
      tf1.logging.info("%s is a pipe; not checked (that would consume it)",
                       path)
      continue
    kinds[path] = _check_input_file(
        path, flag_name, max_seq_length, max_predictions_per_seq,
        truncation_factor, vocab_size, needs_teacher_labels,
        needs_next_sentence_probs, kd_target, temperature, accept_full,
        labels_used)
  # One parsing spec reads every file, so they must hold the same features.
  for index, what in ((0, "teacher labels"),
                      (1, record_format.NEXT_SENTENCE_PROBS)):
    holding = sorted(path for path, kind in kinds.items() if kind[index])
    lacking = sorted(path for path, kind in kinds.items() if not kind[index])
    if holding and lacking:
      raise InputError("%s mixes files with %s (%s) and without (%s)" % (
          flag_name, what, holding[0], lacking[0]))
  label_kinds = {kind[0]: path for path, kind in sorted(kinds.items())}
  if len(label_kinds) > 1:
    raise InputError("%s mixes files with %s" % (flag_name, " and ".join(
        "%s teacher labels (%s)" % (kind, path)
        for kind, path in sorted(label_kinds.items()))))
  return next(iter(label_kinds), None)


def _is_pipe(path):
  """True for a named pipe or a character device (not for remote files)."""
  try:
    mode = os.stat(path).st_mode
  except OSError:
    return False
  return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def _check_input_file(path, flag_name, max_seq_length,
                      max_predictions_per_seq, truncation_factor, vocab_size,
                      needs_teacher_labels, needs_next_sentence_probs,
                      kd_target, temperature, accept_full, labels_used):
  """check_input_files() for one file: its first records against the flags.

  Returns (label kind or None, holds next_sentence_probs).
  """
  try:
    described = record_format.describe_record(path)
    examples = record_format.first_examples(path, EXAMPLES_CHECKED)
  except ValueError as error:
    raise InputError("%s: %s" % (flag_name, error)) from None

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
    kind, index_name = distillation.TOP_K, record_format.TOP_K_INDICES
    held = length(record_format.TRUNCATED_PROBS) // max_predictions_per_seq
    holds = "top-%d teacher labels (truncation_factor %d)" % (held, held)
  elif record_format.SAMPLED_WEIGHTS in described:
    kind, index_name = distillation.SAMPLED, record_format.SAMPLED_IDS
    held = length(record_format.SAMPLED_WEIGHTS) // max_predictions_per_seq
    holds = ("%d sampled teacher tokens per position (truncation_factor %d)"
             % (held, held))
  elif record_format.FULL_PROBS in described:
    kind = distillation.FULL
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

  largest = max(_max_int(examples, "input_ids"),
                _max_int(examples, "masked_lm_ids"))
  if largest >= vocab_size:
    raise InputError(
        "%s holds token id %d but the student's vocab_size "
        "(--bert_config_file) is %d" % (path, largest, vocab_size))
  with_next_sentence = record_format.NEXT_SENTENCE_PROBS in described
  if not labels_used:
    return None, False
  if held is None:
    return None, with_next_sentence

  if held != truncation_factor and not (accept_full and held == 0):
    raise InputError("--truncation_factor is %d but %s holds %s; pass "
                     "--truncation_factor %d" % (truncation_factor, path,
                                                 holds, held))
  if held == 0 and width != vocab_size:
    raise InputError(
        "%s holds %s but the student's vocab_size (--bert_config_file) is %d;"
        " student and teacher must share the vocabulary" % (path, holds,
                                                            vocab_size))
  if held > 0:
    largest = _max_int(examples, index_name)
    if largest >= vocab_size:
      raise InputError(
          "%s: the teacher labels hold token index %d but the student's "
          "vocab_size (--bert_config_file) is %d; student and teacher must "
          "share the vocabulary" % (path, largest, vocab_size))
  error = distillation.kd_target_error(kind, kd_target)
  if error:
    raise InputError("--kd_target %s: %s (%s)" % (kd_target, error, path))
  if kind == distillation.SAMPLED:
    label_temperature = examples[0].features.feature[
        record_format.SAMPLED_TEMPERATURE].float_list.value[0]
    if abs(label_temperature - temperature) > 1e-6 * label_temperature:
      raise InputError(
          "--temperature is %g but the sampled labels in %s estimate the "
          "teacher at temperature %g (produce_teacher_labels.py "
          "--label_temperature); pass --temperature %g" % (
              temperature, path, label_temperature, label_temperature))
  if (needs_next_sentence_probs and
      record_format.NEXT_SENTENCE_PROBS not in described):
    raise InputError(
        "--nsp_loss soft needs the teacher's %s, but %s (%s) holds none: its "
        "teacher had no next-sentence head (e.g. one converted from "
        "BertForMaskedLM). Use --nsp_loss hard or none." % (
            record_format.NEXT_SENTENCE_PROBS, path, flag_name))
  return kind, with_next_sentence


def holds_next_sentence_probs(files):
  """Whether the records (judged by the first) hold next_sentence_probs."""
  return record_format.NEXT_SENTENCE_PROBS in record_format.describe_record(
      files[0])
