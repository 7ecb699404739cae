"""Runs a BERT teacher over pretraining records and stores its predictions.

Stage IV of the distillation suite. Each output record is the input record,
byte for byte, followed by the teacher's labels: at every masked position
either the top-k probabilities and their vocabulary ids (--truncation_factor
k > 0) or the whole distribution (k = 0), plus the teacher's next-sentence
distribution when the teacher has a next-sentence head. The student trainers
then never need the teacher in memory.

With --label_sampling and k > 0 the labels are instead k tokens drawn from
a proposal distribution q (the teacher's softmax at --proposal_temperature),
stored as their distinct ids with importance weights
  w_i = count_i * p_i / (k * q_i),
where p is the teacher's softmax at --label_temperature. Then E[w_i] = p_i
for every vocabulary id (w = 0 when not drawn): unlike the top-k, the sparse
target is an unbiased estimate of the whole distribution (random-sampling KD,
Anshumann et al., arXiv 2503.16870). Draws are seeded by --random_seed, the
rank and the record's index, so a rerun with the same flags and number of
processes writes the same labels.

The labels are serialized inside the TensorFlow graph and appended to the
raw input bytes (a serialized Example followed by a second one holding more
features parses as one Example with all of them), so Python only hands the
finished records to a writer thread.

Under horovodrun or mpirun every rank labels its share of the input files on
its own GPU and writes `<output_file>-<rank>-of-<size>`.
"""

import math
import os
import queue
import re
import threading
import time

from absl import flags
import tensorflow as tf

from bert_distillation import checkpoint_usage
from bert_distillation import command_line
from bert_distillation import distillation
import modeling
from bert_distillation import output_config
from bert_distillation import precision
from bert_distillation import record_format
from bert_distillation import temporary_files
from bert_distillation import xla_compile

tf1 = tf.compat.v1

flags.DEFINE_string(
    "bert_config_file", None,
    "The teacher's bert_config.json. Default: the bert_config.json in the "
    "folder of --init_checkpoint (a trainer's output_dir or a Google release "
    "folder stores one); when both exist they must agree.")

flags.DEFINE_string(
    "input_file", None,
    "Pretraining TFRecord files: a glob, or a comma-separated list of globs.")

flags.DEFINE_string(
    "output_file", None,
    "Where to write the distillation records. Under Horovod with N > 1 "
    "processes, rank r writes <output_file>-<r>-of-<N>.")

flags.DEFINE_integer(
    "truncation_factor", 0,
    "k: store the k most probable tokens (probabilities and ids) per masked "
    "position. 0 stores the whole distribution (vocab_size floats each).")

flags.DEFINE_string("init_checkpoint", None,
                    "The teacher's checkpoint, e.g. bert_model.ckpt.")

flags.DEFINE_integer("max_seq_length", 128,
                     "Sequence length of the input records.")

flags.DEFINE_integer("max_predictions_per_seq", 20,
                     "Masked positions per input record.")

flags.DEFINE_integer("batch_size", 32, "Sequences per teacher forward pass.")

flags.DEFINE_bool(
    "allow_random_teacher", False,
    "Label with randomly initialised weights when --init_checkpoint is not "
    "given (for tests). Without this flag a missing checkpoint is an error.")

flags.DEFINE_bool("use_xla", False, "Compile the teacher with XLA JIT.")

flags.DEFINE_bool(
    "label_sampling", False,
    "With --truncation_factor k > 0: store k tokens sampled from the teacher "
    "(at most k distinct ids, with importance weights whose expectation is "
    "the teacher's probability) instead of the top-k. The records then hold "
    "sampled_token_ids/sampled_token_weights; train on them with --kd_target "
    "sampled.")

flags.DEFINE_float(
    "label_temperature", 1.0,
    "With --label_sampling: the weights estimate the teacher's softmax at "
    "this temperature. It is stored in the records, and the trainer's "
    "--temperature must equal it.")

flags.DEFINE_float(
    "proposal_temperature", 1.0,
    "With --label_sampling: tokens are drawn from the teacher's softmax at "
    "this temperature (above 1 reaches further into the tail, at the cost "
    "of noisier weights).")

flags.DEFINE_integer(
    "random_seed", 12345,
    "Seed of --label_sampling's draws (combined with the rank and the "
    "record's index).")

flags.DEFINE_enum("precision", "fp32", precision.PRECISIONS,
                  precision.FLAG_HELP)

FLAGS = flags.FLAGS

# Seed for --allow_random_teacher, so random labels are at least repeatable.
RANDOM_TEACHER_SEED = 12345

LOG_EVERY_SECONDS = 30

# The pooler only feeds the next-sentence head.
POOLER_SCOPE = "bert/pooler/"


InputError = command_line.InputError


def check_flags(bert_config):
  """Raises InputError when the flags cannot work with the teacher's config."""
  if not FLAGS.init_checkpoint and not FLAGS.allow_random_teacher:
    raise InputError(
        "--init_checkpoint is required: without it the teacher has random "
        "weights and its labels are noise. Pass --allow_random_teacher to do "
        "that on purpose (tests only).")
  if FLAGS.truncation_factor < 0 or (
      FLAGS.truncation_factor > bert_config.vocab_size):
    raise InputError(
        "--truncation_factor=%d must be between 0 (store the whole "
        "distribution) and the teacher's vocab_size (%d)." %
        (FLAGS.truncation_factor, bert_config.vocab_size))
  if FLAGS.label_sampling and FLAGS.truncation_factor == 0:
    raise InputError("--label_sampling needs --truncation_factor k > 0 (the "
                     "number of tokens drawn per masked position).")
  for name in ("label_temperature", "proposal_temperature"):
    if FLAGS[name].present and not FLAGS.label_sampling:
      raise InputError("--%s only applies with --label_sampling True (the "
                       "top-k and full labels are the teacher's softmax at "
                       "temperature 1)." % name)
    value = FLAGS[name].value
    if not (math.isfinite(value) and value > 0):
      raise InputError("--%s must be a positive finite number, got %s." % (
          name, value))
  if FLAGS.batch_size < 1:
    raise InputError("--batch_size must be at least 1.")
  if FLAGS.max_predictions_per_seq < 1:
    raise InputError("--max_predictions_per_seq must be at least 1.")
  if FLAGS.max_seq_length > bert_config.max_position_embeddings:
    raise InputError(
        "--max_seq_length=%d exceeds the teacher's max_position_embeddings "
        "(%d)." % (FLAGS.max_seq_length, bert_config.max_position_embeddings))


def flag_for_feature(name):
  """Names the flag that sets the length of an input feature."""
  if name in record_format.SEQUENCE_FEATURES:
    return "--max_seq_length"
  if name == "next_sentence_labels":
    return None
  return "--max_predictions_per_seq"


def check_input_files(input_files, max_seq_length, max_predictions_per_seq):
  """Checks the first record of every file against the flags.

  Raises InputError naming the flag to fix when a feature has another length,
  and when a file is not a pretraining record or already holds labels.
  """
  spec = record_format.pretraining_feature_spec(max_seq_length,
                                                max_predictions_per_seq)
  label_names = record_format.LABEL_FEATURES
  for path in input_files:
    if tf.io.gfile.stat(path).length == 0:
      raise InputError(
          "%s in --input_file holds no records (an empty file: was it "
          "written completely?); regenerate it or leave it out." % path)
    try:
      described = record_format.describe_record(path)
    except ValueError as error:  # Damaged, or not a record file.
      raise InputError("--input_file: %s" % error) from None
    labelled = [name for name in label_names if name in described]
    if labelled:
      raise InputError(
          "%s already holds teacher labels (%s); --input_file must be "
          "pretraining records." % (path, ", ".join(labelled)))
    for name, feature in sorted(spec.items()):
      if name not in described:
        raise InputError("%s is not a pretraining record: feature %s is "
                         "missing (check --input_file)." % (path, name))
      length = described[name][1]
      expected = feature.shape[0]
      if length != expected:
        flag = flag_for_feature(name)
        raise InputError(
            "%s: feature %s holds %d values, but %s=%d. Set %s=%d (the "
            "value create_pretraining_data.py used)." %
            (path, name, length, flag, expected, flag, length))


def check_ids(features, bert_config, max_seq_length):
  """Returns assertions that every id is in range for the teacher.

  An id >= vocab_size means the records were made with another vocab than
  the teacher's config; on a GPU the lookup would silently read garbage.
  """
  vocab_message = (
      "a token id is >= vocab_size=%d of --bert_config_file (or negative): "
      "the records were made with a vocab that does not match the "
      "teacher config" % bert_config.vocab_size)
  checks = []
  for name in ("input_ids", "masked_lm_ids"):
    checks.append(tf.debugging.assert_less(
        features[name], tf.constant(bert_config.vocab_size, tf.int64),
        message="%s: %s" % (name, vocab_message), summarize=5))
    checks.append(tf.debugging.assert_non_negative(
        features[name], message="%s: %s" % (name, vocab_message)))
  checks.append(tf.debugging.assert_less(
      features["segment_ids"],
      tf.constant(bert_config.type_vocab_size, tf.int64),
      message="segment_ids: an id is >= type_vocab_size=%d of "
      "--bert_config_file" % bert_config.type_vocab_size, summarize=5))
  checks.append(tf.debugging.assert_less(
      features["masked_lm_positions"], tf.constant(max_seq_length, tf.int64),
      message="masked_lm_positions: a position is >= --max_seq_length=%d" %
      max_seq_length, summarize=5))
  return checks


def input_dataset(input_files, bert_config, batch_size, max_seq_length,
                  max_predictions_per_seq, record_shard=None):
  """Batches of {"raw": serialized records, feature name: Tensor}, in order.

  The raw records are kept so that the output copies them byte for byte.
  "record_index" counts the records this process reads, from 0.
  record_shard=(num_shards, index) keeps every num_shards-th record.
  """
  spec = record_format.pretraining_feature_spec(max_seq_length,
                                                max_predictions_per_seq)

  def parse(record_indices, raw_records):
    features = tf.io.parse_example(raw_records, spec)
    with tf.control_dependencies(
        check_ids(features, bert_config, max_seq_length)):
      features = {name: tf.identity(value)
                  for name, value in features.items()}
    features["raw"] = raw_records
    features["record_index"] = record_indices
    return features

  # Files are read one after another so that the output keeps their order.
  dataset = tf.data.TFRecordDataset(input_files, buffer_size=8 << 20)
  if record_shard is not None:
    dataset = dataset.shard(*record_shard)
  dataset = dataset.enumerate()
  dataset = dataset.batch(batch_size)  # The last partial batch is kept.
  dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.prefetch(2)


def teacher_labels(bert_config, features, truncation_factor,
                   with_next_sentence=True, compute_type=tf.float32,
                   sampling=None):
  """Builds the teacher and returns its labels {feature name: [batch, n]}.

  The masked-LM head runs only at the masked positions. With k > 0 the top-k
  is taken on the device from the logits, and only those k probabilities are
  computed (exp(logit - logsumexp)), not the whole softmax. With `sampling`
  (a distillation.Sampling) k tokens are drawn instead
  (distillation.sampled_labels). A teacher without a next-sentence head
  (with_next_sentence=False) gives no next_sentence_probs. compute_type is
  the encoder's (see modeling.BertModel); the logits, the top-k and the
  probabilities are float32 whatever it is.
  """
  _, logits, next_sentence = modeling.pretraining_model(
      bert_config, False, features["input_ids"],
      features["masked_lm_positions"], input_mask=features["input_mask"],
      token_type_ids=features["segment_ids"],
      with_next_sentence=with_next_sentence, compute_type=compute_type)
  batch_size = tf.shape(features["input_ids"])[0]
  labels = {}
  if with_next_sentence:
    labels[record_format.NEXT_SENTENCE_PROBS] = tf.nn.softmax(next_sentence)
  if sampling is not None:
    positions = features["masked_lm_positions"].shape[-1]
    ids, weights = distillation.sampled_labels(
        tf.reshape(logits, [batch_size, positions, -1]), truncation_factor,
        sampling.record_seeds(features["record_index"]),
        sampling.label_temperature, sampling.proposal_temperature)
    labels[record_format.SAMPLED_IDS] = tf.reshape(ids, [batch_size, -1])
    labels[record_format.SAMPLED_WEIGHTS] = tf.reshape(weights,
                                                       [batch_size, -1])
    labels[record_format.SAMPLED_TEMPERATURE] = tf.fill(
        [batch_size, 1], tf.constant(sampling.label_temperature, tf.float32))
  elif truncation_factor > 0:
    top_logits, top_indices = tf.math.top_k(logits, k=truncation_factor,
                                            sorted=True)
    log_normalizer = tf.reduce_logsumexp(logits, axis=-1, keepdims=True)
    top_probs = tf.exp(top_logits - log_normalizer)
    labels[record_format.TRUNCATED_PROBS] = tf.reshape(top_probs,
                                                       [batch_size, -1])
    labels[record_format.TOP_K_INDICES] = tf.reshape(
        tf.cast(top_indices, tf.int64), [batch_size, -1])
  else:
    labels[record_format.FULL_PROBS] = tf.reshape(tf.nn.softmax(logits),
                                                  [batch_size, -1])
  return labels


def encode_message(message_type, field_names, values):
  """Serializes one protobuf message per row of the [batch, n] `values`.

  Every row uses all n values of each field; message-typed fields take
  already serialized bytes.
  """
  sizes = [tf.fill([tf.shape(value)[0], 1], tf.shape(value)[1])
           for value in values]
  return tf.io.encode_proto(tf.concat(sizes, axis=1), values, field_names,
                            message_type)


def encode_records(raw_records, labels):
  """Returns the input records with the labels appended, serialized in-graph.

  The labels become a second tf.train.Example; protobuf merges repeated
  message fields and map entries, so the concatenation parses as one Example
  holding the input features (their bytes untouched) and the labels.
  """
  entries = []
  for name in sorted(labels):
    values = labels[name]
    if values.dtype == tf.int64:
      list_type, kind = "tensorflow.Int64List", "int64_list"
    else:
      list_type, kind = "tensorflow.FloatList", "float_list"
    value_list = encode_message(list_type, ["value"], [values])
    feature = encode_message("tensorflow.Feature", [kind],
                             [value_list[:, None]])
    key = tf.fill(tf.shape(feature[:, None]), name)
    entries.append(encode_message("tensorflow.Features.FeatureEntry",
                                  ["key", "value"], [key, feature[:, None]]))
  features = encode_message("tensorflow.Features", ["feature"],
                            [tf.stack(entries, axis=1)])
  example = encode_message("tensorflow.Example", ["features"],
                           [features[:, None]])
  return tf.strings.join([raw_records, example])


def teacher_has_next_sentence_head(init_checkpoint):
  """Whether the teacher checkpoint holds the next-sentence head.

  A checkpoint converted from Hugging Face's BertForMaskedLM has neither
  cls/seq_relationship nor the pooler that feeds it. A checkpoint without
  the masked-LM head (a bare BertModel) cannot label: InputError.
  """
  if not init_checkpoint:
    return True
  try:
    names = [name for name, _ in tf.train.list_variables(init_checkpoint)]
  except (tf.errors.OpError, ValueError) as error:
    raise InputError("--init_checkpoint: %s" % error) from None
  if not any(name.startswith("cls/predictions/") for name in names):
    raise InputError(
        "--init_checkpoint %s has no masked-LM head (cls/predictions), so it "
        "cannot label masked tokens; a bare BertModel is no teacher." %
        init_checkpoint)
  return any(name.startswith("cls/seq_relationship/") for name in names)


def load_teacher(init_checkpoint, with_next_sentence=True):
  """Points every variable's initializer at the checkpoint; logs them.

  A variable missing from the checkpoint, or of another shape, is an error.
  Without a checkpoint (--allow_random_teacher) the weights stay random.
  Without the next-sentence head the pooler, which only feeds that head, is
  not loaded either.
  """
  if not init_checkpoint:
    tf1.logging.warning("No --init_checkpoint: labelling with a RANDOM "
                        "teacher (--allow_random_teacher).")
    return []
  variables = tf1.global_variables()
  pooler = () if with_next_sentence else (POOLER_SCOPE,)
  variables = [var for var in variables
               if not var.op.name.startswith(pooler)]
  try:
    loaded = modeling.init_from_checkpoint_strict(init_checkpoint, variables)
  except (ValueError, tf.errors.OpError) as error:
    raise InputError("--init_checkpoint: %s" % error) from None
  # A config with fewer layers than the checkpoint loads without an error.
  checkpoint_usage.check_every_teacher_variable_used(
      init_checkpoint, loaded, ignored_prefixes=pooler)
  tf1.logging.info("Loaded %d variables from %s:", len(loaded),
                   init_checkpoint)
  for name in loaded:
    tf1.logging.info("  %s", name)
  return loaded


def launcher_size():
  """The number of processes that horovodrun/mpirun started (1 if none)."""
  for name in ("HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE"):
    if os.environ.get(name):
      return int(os.environ[name])
  return 1


def init_workers():
  """Returns (rank, size, local_rank, local_size) of this process.

  Horovod is imported and started only under a launcher, so a single
  process does not need it installed.
  """
  size = launcher_size()
  if size <= 1:
    return 0, 1, 0, 1
  try:
    import horovod.tensorflow as hvd  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise InputError("Started by a launcher with %d processes, but Horovod "
                     "cannot be imported: %s" % (size, error))
  hvd.init()
  return hvd.rank(), hvd.size(), hvd.local_rank(), hvd.local_size()


def shard_inputs(input_files, rank, size):
  """Returns (files, record_shard) for this rank.

  Ranks split the files when there are enough of them; otherwise every rank
  reads all files and keeps every size-th record (record_shard = (size,
  rank)). record_shard is None when no record split is needed.
  """
  if size == 1:
    return input_files, None
  if len(input_files) >= size:
    return input_files[rank::size], None
  return input_files, (size, rank)


def output_path_for_rank(output_file, rank, size):
  """`output_file` for one process, `<output_file>-<rank>-of-<size>` else."""
  if size == 1:
    return output_file
  return "%s-%d-of-%d" % (output_file, rank, size)


def check_output_is_not_input(output_path, input_files):
  """Raises InputError when the output would replace one of the inputs."""
  target = os.path.realpath(output_path)
  for path in input_files:
    if "://" not in path and os.path.realpath(path) == target:
      raise InputError(
          "--output_file %s is one of the --input_file files: writing it "
          "would replace those pretraining records with their labelled "
          "copy. Write the labels to another file." % output_path)


def check_output_path(output_path):
  """Raises InputError when `output_path` cannot be written, before any work.

  It must not be a directory, and its folder must be a writable directory
  (or not exist yet, in which case it is created).
  """
  if tf.io.gfile.isdir(output_path):
    raise InputError("--output_file %s is a directory; give the path of the "
                     "file to write." % output_path)
  folder = os.path.dirname(output_path)
  if not folder:
    folder = "."
  if tf.io.gfile.exists(folder) and not tf.io.gfile.isdir(folder):
    raise InputError("--output_file %s: %s is a file, not a directory." %
                     (output_path, folder))
  if "://" in folder:
    return  # Remote file systems are checked when the file is written.
  try:
    os.makedirs(folder, exist_ok=True)
  except OSError as error:
    raise InputError("--output_file %s: cannot create its folder: %s" %
                     (output_path, command_line.os_error_message(error)))
  if not os.access(folder, os.W_OK | os.X_OK):
    raise InputError("--output_file %s: the folder %s is not writable." %
                     (output_path, folder))


def session_config(local_rank, local_size, use_xla, distributed=False):
  """Threads for this process's share of the CPU, its own GPU, and XLA.

  With distributed=True (Horovod size > 1) the process sees only the GPU of
  its local rank.
  """
  try:
    cores = len(os.sched_getaffinity(0))
  except AttributeError:
    cores = os.cpu_count() or 1
  threads = max(1, cores // local_size)
  # One op at a time, each using every core: the teacher is a chain of big
  # matmuls, and more inter-op threads would only oversubscribe the cores.
  config = tf1.ConfigProto(intra_op_parallelism_threads=threads,
                           inter_op_parallelism_threads=1)
  config.gpu_options.allow_growth = True
  if distributed:
    config.gpu_options.visible_device_list = str(local_rank)
  return xla_compile.session_config(config, use_xla)


class RecordWriterThread(object):
  """Writes batches of serialized records to a TFRecord file in a thread.

  The session keeps running the teacher while earlier batches are written.
  A write error is kept and raised by the next put() or by close().
  """

  def __init__(self, path, max_pending_batches=8):
    self.path = path
    self.records_written = 0
    self._error = None
    self._queue = queue.Queue(maxsize=max_pending_batches)
    self._writer = tf.io.TFRecordWriter(path)
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()

  def _run(self):
    while True:
      batch = self._queue.get()
      if batch is None:
        return
      if self._error is not None:
        continue  # Drain, so that put() never blocks after a failure.
      try:
        for record in batch:
          self._writer.write(record)
        self.records_written += len(batch)
      except Exception as error:  # pylint: disable=broad-except
        self._error = error

  def _raise_error(self):
    # The writer's own error (e.g. a full disk) names the file; raising it
    # as it is lets command_line report it as one line.
    if self._error is not None:
      raise self._error

  def put(self, batch):
    """Queues a sequence of serialized records for writing."""
    self._raise_error()
    self._queue.put(batch)

  def close(self):
    """Writes what is queued, closes the file; raises a write error."""
    self._queue.put(None)
    self._thread.join()
    self._writer.close()
    self._raise_error()


def run_error_message(error):
  """Turns an error from the input pipeline into a message about the flags."""
  lines = [line.strip() for line in error.message.split("\n")]
  message = " ".join(line for line in lines if line and not line.startswith(
      ("Graph execution error", "[[")))
  if "Key: " in message or "Can't parse" in message:
    return ("A record does not match the flags (%s). Check --max_seq_length "
            "and --max_predictions_per_seq against the values "
            "create_pretraining_data.py used." % message)
  return message


def write_records(sess, records, output_path):
  """Runs the teacher over every batch and writes the records atomically.

  The file appears under `output_path` only once complete; until then it is
  written under a temporary name in the same folder (temporary_files), which
  is removed on an error, SIGTERM or SIGINT. Returns the count.
  """
  temp_path = temporary_files.register(
      temporary_files.temporary_path(output_path))
  writer = RecordWriterThread(temp_path)
  count = 0
  start = time.time()
  steady_start, steady_count, steady_cpu = None, 0, 0.0
  last_log = start
  try:
    while True:
      try:
        batch = sess.run(records)
      except tf.errors.OutOfRangeError:
        break
      except tf.errors.InvalidArgumentError as error:
        raise InputError(run_error_message(error)) from None
      writer.put(batch)
      count += len(batch)
      now = time.time()
      if steady_start is None:
        # The first batch includes one-off graph optimisation.
        steady_start, steady_count = now, count
        steady_cpu = time.process_time()
      if now - last_log >= LOG_EVERY_SECONDS:
        tf1.logging.info("Labelled %d records, %d written: %.1f "
                         "sequences/s", count, writer.records_written,
                         count / (now - start))
        last_log = now
    writer.close()
  except BaseException:
    try:
      writer.close()
    except Exception:  # pylint: disable=broad-except
      pass
    if tf.io.gfile.exists(temp_path):
      tf.io.gfile.remove(temp_path)
    temporary_files.unregister(temp_path)
    raise
  tf.io.gfile.rename(temp_path, output_path, overwrite=True)
  temporary_files.unregister(temp_path)
  elapsed = time.time() - start
  steady, steady_per_cpu = 0.0, 0.0
  if steady_start is not None and count > steady_count:
    steady = (count - steady_count) / (time.time() - steady_start)
    steady_per_cpu = (count - steady_count) / max(
        time.process_time() - steady_cpu, 1e-9)
  tf1.logging.info(
      "Labelled %d records, %d written in %.1f s: %.2f sequences/s "
      "(after the first batch: %.2f sequences/s, %.2f per CPU second)",
      count, writer.records_written, elapsed, count / max(elapsed, 1e-9),
      steady, steady_per_cpu)
  return count


def run_teacher(bert_config, input_files, record_shard, output_path,
                local_rank, local_size, distributed, with_next_sentence=True,
                sampling=None):
  """Builds the input pipeline and the teacher, and writes the labels."""
  with tf.Graph().as_default():
    if not FLAGS.init_checkpoint:
      tf1.set_random_seed(RANDOM_TEACHER_SEED)
    dataset = input_dataset(input_files, bert_config, FLAGS.batch_size,
                            FLAGS.max_seq_length,
                            FLAGS.max_predictions_per_seq, record_shard)
    features = tf1.data.make_one_shot_iterator(dataset).get_next()
    compute_type = precision.compute_type(FLAGS.precision)
    with xla_compile.jit_scope(FLAGS.use_xla):
      labels = teacher_labels(bert_config, features, FLAGS.truncation_factor,
                              with_next_sentence, compute_type, sampling)
    records = encode_records(features["raw"], labels)
    load_teacher(FLAGS.init_checkpoint, with_next_sentence)
    config = session_config(local_rank, local_size, FLAGS.use_xla,
                            distributed)
    with tf1.Session(config=config) as sess:
      try:
        sess.run(tf1.global_variables_initializer())
      except (tf.errors.DataLossError, tf.errors.OutOfRangeError) as error:
        problem = modeling.unreadable_checkpoint_problem(
            FLAGS.init_checkpoint) or error.message
        raise InputError("--init_checkpoint: %s. Copy it again." %
                         problem) from None
      try:
        return write_records(sess, records, output_path)
      except tf.errors.DataLossError:
        damage = record_format.find_damaged_record(input_files)
        if damage:
          raise InputError("--input_file: %s" % damage) from None
        raise


def label_records():
  """Labels the records that the flags name; returns this rank's count."""
  config_file = FLAGS.bert_config_file
  if FLAGS.init_checkpoint:
    config_file = output_config.config_for_checkpoint(FLAGS.init_checkpoint,
                                                      config_file)
  elif not config_file:
    raise InputError("--bert_config_file is required without "
                     "--init_checkpoint.")
  try:
    bert_config = modeling.BertConfig.from_json_file(config_file)
  except ValueError as error:
    raise InputError("--bert_config_file: %s" % error) from None
  check_flags(bert_config)
  precision.check_hardware(FLAGS.precision)
  try:
    input_files = record_format.expand_input_files(FLAGS.input_file)
  except ValueError as error:
    raise InputError("--input_file: %s" % error) from None
  check_input_files(input_files, FLAGS.max_seq_length,
                    FLAGS.max_predictions_per_seq)
  with_next_sentence = teacher_has_next_sentence_head(FLAGS.init_checkpoint)
  if not with_next_sentence:
    tf1.logging.warning(
        "The teacher has no next-sentence head (cls/seq_relationship; e.g. "
        "converted from BertForMaskedLM): the records get no %s. Train "
        "students on them with --nsp_loss hard or none.",
        record_format.NEXT_SENTENCE_PROBS)

  rank, size, local_rank, local_size = init_workers()
  files, record_shard = shard_inputs(input_files, rank, size)
  output_path = output_path_for_rank(FLAGS.output_file, rank, size)
  check_output_is_not_input(output_path, input_files)
  check_output_path(output_path)
  # Temporaries of this output left by a killed earlier run.
  temporary_files.remove_stale(os.path.dirname(output_path) or ".",
                               re.escape(os.path.basename(output_path)))
  tf1.logging.info("Rank %d of %d labels %d file(s)%s into %s", rank, size,
                   len(files), " (every %d-th record)" % size
                   if record_shard else "", output_path)

  sampling = None
  if FLAGS.label_sampling:
    sampling = distillation.Sampling(
        FLAGS.label_temperature, FLAGS.proposal_temperature,
        FLAGS.random_seed, rank)
  count = run_teacher(bert_config, files, record_shard, output_path,
                      local_rank, local_size, distributed=size > 1,
                      with_next_sentence=with_next_sentence,
                      sampling=sampling)
  print("Wrote %d records to %s" % (count, output_path))
  return count


def main(_):
  tf1.logging.set_verbosity(tf1.logging.INFO)
  label_records()


if __name__ == "__main__":
  flags.mark_flag_as_required("input_file")
  flags.mark_flag_as_required("output_file")
  command_line.run(main)
