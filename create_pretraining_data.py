# coding=utf-8
"""Creates masked-LM / next-sentence pretraining records from text files.

Input: every file in --input_dir holds plain text with one sentence per line
and a blank line between documents (what split_text.py writes). Input file
number i, in name order with numbers compared by value (wiki_2.txt before
wiki_10.txt), becomes
<output_dir>/<output_base_name>_<i>.tfrecord, in the pretraining schema of
bert_distillation/record_format.py.

The algorithm is the one of Google's BERT release: sentence-pair instances
cut at sentence boundaries, a random B segment half of the time, 15% of the
WordPiece tokens chosen for prediction, each on its own as in Google's
default (80% become [MASK], 10% stay, 10% become a random word), and
--dupe_factor passes over the data with different masks.

What differs from the original is how the work is done. Files are processed
independently on --num_workers processes, each seeded from --random_seed and
the file's name, so the output does not depend on the number of workers and
memory is bounded by the largest input file instead of the whole corpus.
A random B segment therefore comes from another document of the same file
(Google's drew it from all files), so give each file many documents.
Each sentence is tokenized once and kept as ids for all the passes.
"""

import array
import codecs
import gc
import importlib
import os
import random
import re
import time

from absl import flags
from absl import logging

from bert_distillation import command_line
from bert_distillation import temporary_files
import tokenization
from bert_distillation import worker_pool

# TensorFlow (record_format) takes seconds to import, so it is imported once
# the flags and inputs have been checked; see import_tensorflow().

FLAGS = flags.FLAGS

InputError = command_line.InputError

flags.DEFINE_string(
    "input_dir", None,
    "Folder of text files: one sentence per line, a blank line between "
    "documents. Every file in it (hidden files excluded) is read.")

flags.DEFINE_string(
    "output_dir", None,
    "Folder for the TFRecord files (created if missing).")

flags.DEFINE_string(
    "output_base_name", None,
    "Output files are named <output_base_name>_<i>.tfrecord, where i is the "
    "input file's position in name order, numbers compared by value: "
    "wiki_0.txt ... wiki_10.txt give _0 ... _10.")

flags.DEFINE_string("vocab_file", None,
                    "The vocabulary file that the BERT model was trained on.")

flags.DEFINE_bool(
    "do_lower_case", True,
    "Whether to lower case the input text. Should be True for uncased "
    "models and False for cased models.")

flags.DEFINE_integer("max_seq_length", 128, "Maximum sequence length.")

flags.DEFINE_integer("max_predictions_per_seq", 20,
                     "Maximum number of masked LM predictions per sequence.")

flags.DEFINE_integer("random_seed", 12345, "Random seed for data generation.")

flags.DEFINE_integer(
    "dupe_factor", 10,
    "Number of times to duplicate the input data (with different masks).")

flags.DEFINE_float("masked_lm_prob", 0.15, "Masked LM probability.")

flags.DEFINE_float(
    "short_seq_prob", 0.1,
    "Probability of creating sequences which are shorter than the "
    "maximum length.")

flags.DEFINE_integer(
    "num_workers", None,
    "Number of processes working on input files in parallel. Default: the "
    "number of CPUs available. The output is the same for any value.")

# BERT's position embeddings stop at 512.
MAX_SUPPORTED_SEQ_LENGTH = 512
MIN_SEQ_LENGTH = 8
SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[MASK]", "[UNK]")
# Tokenized words kept per worker; English text reuses few words very often.
WORD_CACHE_SIZE = 500000
# How often a worker reports progress while reading a file.
LOG_EVERY_DOCUMENTS = 20000
# Bytes read from the start of every input file to check that it is text.
TEXT_CHECK_BYTES = 1 << 16


def check_flags():
  """Raises InputError naming the flag when a setting cannot work."""
  if not 0.0 < FLAGS.masked_lm_prob < 1.0:
    raise InputError("--masked_lm_prob must be in (0, 1), got %r"
                     % FLAGS.masked_lm_prob)
  if not MIN_SEQ_LENGTH <= FLAGS.max_seq_length <= MAX_SUPPORTED_SEQ_LENGTH:
    raise InputError(
        "--max_seq_length must be between %d and %d (BERT's position "
        "embeddings), got %d" % (MIN_SEQ_LENGTH, MAX_SUPPORTED_SEQ_LENGTH,
                                 FLAGS.max_seq_length))
  if FLAGS.max_predictions_per_seq < 1:
    raise InputError("--max_predictions_per_seq must be at least 1, got %d"
                     % FLAGS.max_predictions_per_seq)
  if FLAGS.dupe_factor < 1:
    raise InputError("--dupe_factor must be at least 1, got %d"
                     % FLAGS.dupe_factor)
  if not 0.0 <= FLAGS.short_seq_prob <= 1.0:
    raise InputError("--short_seq_prob must be in [0, 1], got %r"
                     % FLAGS.short_seq_prob)
  if FLAGS.num_workers is not None and FLAGS.num_workers < 1:
    raise InputError("--num_workers must be at least 1, got %d"
                     % FLAGS.num_workers)


def natural_sort_key(name):
  """Sort key comparing the digit runs of a name by value (2 before 10)."""
  return [int(part) if part.isdigit() else part
          for part in re.split(r"(\d+)", name)]


def list_input_files(input_dir):
  """Returns the paths of the regular files in `input_dir`, in name order.

  Numbers in names count by value, so split_text.py's wiki_<N>.txt gives
  output number N. Raises InputError naming --input_dir when it is missing
  or holds no file.
  """
  if not os.path.exists(input_dir):
    raise InputError("--input_dir %s does not exist" % input_dir)
  if not os.path.isdir(input_dir):
    raise InputError("--input_dir %s is a file, not a folder of text files"
                     % input_dir)
  paths = []
  for name in sorted(os.listdir(input_dir), key=natural_sort_key):
    path = os.path.join(input_dir, name)
    if not name.startswith(".") and os.path.isfile(path):
      paths.append(path)
  if not paths:
    raise InputError("--input_dir %s holds no input files" % input_dir)
  return paths


def check_is_text(path):
  """Raises InputError unless the start of `path` is UTF-8 text.

  A binary file (a TFRecord, an archive) or text in another encoding would
  otherwise become instances of garbage tokens. The whole file is decoded
  strictly later, when it is read.
  """
  with open(path, "rb") as reader:
    head = reader.read(TEXT_CHECK_BYTES)
  if b"\0" in head:
    raise InputError(
        "%s in --input_dir is not a text file (it holds NUL bytes, at byte "
        "%d); remove it from the folder" % (path, head.index(b"\0")))
  try:
    # final=False: a character cut by the end of `head` is not an error.
    codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
  except UnicodeDecodeError as error:
    raise InputError(
        "%s in --input_dir is not UTF-8 text (byte %d); convert it to UTF-8 "
        "or remove it from the folder" % (path, error.start)) from None


def check_output_dir(input_dir, output_dir):
  """Raises InputError when --output_dir is --input_dir or not a folder.

  Records written into the input folder would be read back as text by the
  next run.
  """
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise InputError("--output_dir %s is a file, not a folder" % output_dir)
  if (os.path.isdir(output_dir) and
      os.path.samefile(input_dir, output_dir)):
    raise InputError(
        "--output_dir %s is the same folder as --input_dir: every file in "
        "--input_dir is read as text, so the records must go elsewhere"
        % output_dir)


def default_num_workers():
  """Returns the number of CPUs this process may run on."""
  if hasattr(os, "sched_getaffinity"):
    return len(os.sched_getaffinity(0))
  return os.cpu_count() or 1


def output_path(output_dir, output_base_name, file_index):
  """Returns the record file written for input file number `file_index`."""
  return os.path.join(output_dir,
                      "%s_%d.tfrecord" % (output_base_name, file_index))


def file_seed(random_seed, input_file):
  """Returns the seed of one input file: --random_seed and the file's name.

  A string seed is hashed with SHA-512 by `random`, so it is the same in
  every process and run (unlike hash()).
  """
  return "%d/%s" % (random_seed, os.path.basename(input_file))


class IdTokenizer(object):
  """Turns a line of text into WordPiece ids, caching each word's ids.

  BERT's tokenizer never joins two space-separated words into one token,
  so tokenizing a line word by word gives the same ids as tokenizing it
  whole, and the frequent words are only tokenized once.
  """

  def __init__(self, tokenizer, cache_size=WORD_CACHE_SIZE):
    self.tokenizer = tokenizer
    self.cache_size = cache_size
    self.cache = {}

  def word_ids(self, word):
    """Returns the ids of one space-free word as a tuple."""
    ids = self.cache.get(word)
    if ids is None:
      ids = tuple(self.tokenizer.convert_tokens_to_ids(
          self.tokenizer.tokenize(word)))
      if len(self.cache) < self.cache_size:
        self.cache[word] = ids
    return ids

  def line_ids(self, line):
    """Returns the ids of a line of text as a list."""
    ids = []
    for word in line.split(" "):
      if word:
        ids.extend(self.word_ids(word))
    return ids


class LongLines(object):
  """Counts the lines of a file that no instance can hold whole.

  An instance holds at most max_tokens WordPiece tokens (--max_seq_length
  less [CLS] and two [SEP]); a longer line (e.g. a whole article on one
  line) is cut to fit, and the words beyond max_tokens are lost.
  """

  def __init__(self, max_tokens):
    self.max_tokens = max_tokens
    self.lines = 0  # Non-blank lines read.
    self.long_lines = 0
    self.long_line_words = 0
    self.cut_words = 0

  def add(self, line, ids, id_tokenizer):
    """Counts one non-blank line, given its ids."""
    self.lines += 1
    if len(ids) <= self.max_tokens:
      return
    words = [word for word in line.split(" ") if word]
    tokens, fitting = 0, 0
    for word in words:
      tokens += len(id_tokenizer.word_ids(word))
      if tokens > self.max_tokens:
        break
      fitting += 1
    self.long_lines += 1
    self.long_line_words += len(words)
    self.cut_words += len(words) - fitting

  def warning(self, input_file, max_seq_length):
    """The warning for input_file, or None when no line was too long."""
    if not self.long_lines:
      return None
    return ("%s: %d of its %d lines are longer than one instance holds (%d "
            "tokens at --max_seq_length %d): %d of their %d words do not fit "
            "and were cut. Put one sentence on each line." % (
                input_file, self.long_lines, self.lines, self.max_tokens,
                max_seq_length, self.cut_words, self.long_line_words))


def read_documents(input_file, id_tokenizer, long_lines=None):
  """Reads one text file into documents: lists of sentences of token ids.

  A blank line ends a document; lines that tokenize to nothing are dropped,
  and so are documents left without sentences. Each line is counted in
  `long_lines` (a LongLines) when given.
  """
  documents = []
  current = []
  with open(input_file, encoding="utf-8") as reader:
    for line in _decoded_lines(reader, input_file):
      line = line.strip()
      if not line:
        if current:
          documents.append(current)
          current = []
          if len(documents) % LOG_EVERY_DOCUMENTS == 0:
            logging.info("%s: read %d documents", input_file, len(documents))
        continue
      ids = id_tokenizer.line_ids(line)
      if long_lines is not None:
        long_lines.add(line, ids, id_tokenizer)
      if ids:
        current.append(ids)
  if current:
    documents.append(current)
  return documents


def _decoded_lines(reader, input_file):
  """Yields the lines of a text file; InputError naming it if not UTF-8."""
  line_number = 0
  try:
    for line_number, line in enumerate(reader, 1):
      yield line
  except UnicodeDecodeError as error:
    raise InputError("%s, after line %d, is not UTF-8 text (%s); convert it "
                     "to UTF-8 or remove it from --input_dir"
                     % (input_file, line_number, error.reason)) from None


def truncate_pair(tokens_a, tokens_b, max_num_tokens, rng):
  """Cuts the longer of two segments until they fit, from either end.

  Like Google's truncate_seq_pair: each removed token comes from the
  current longer segment (B on a tie), from its front or back with equal
  chance. Returns the two truncated lists.
  """
  length_a, length_b = len(tokens_a), len(tokens_b)
  while length_a + length_b > max_num_tokens:
    if length_a > length_b:
      length_a -= 1
    else:
      length_b -= 1
  return (_cut_ends(tokens_a, len(tokens_a) - length_a, rng),
          _cut_ends(tokens_b, len(tokens_b) - length_b, rng))


def _cut_ends(tokens, num_to_cut, rng):
  """Removes `num_to_cut` tokens, each from the front or back at random."""
  if not num_to_cut:
    return tokens
  # One coin flip per removed token; the count of heads is cut in front.
  from_front = bin(rng.getrandbits(num_to_cut)).count("1")
  return tokens[from_front:len(tokens) - (num_to_cut - from_front)]


def create_pairs_from_document(documents, document_index, max_seq_length,
                               short_seq_prob, rng):
  """Returns (tokens_a, tokens_b, is_random_next) pairs for one document.

  Google's recipe: gather sentences up to a target length (sometimes a short
  one), split them at a random sentence boundary into A and B, and half of
  the time (always when there is a single sentence) take B from a random
  other document instead, putting the unused sentences back.
  """
  document = documents[document_index]
  max_num_tokens = max_seq_length - 3  # [CLS], [SEP], [SEP]
  target_length = max_num_tokens
  if rng.random() < short_seq_prob:
    target_length = rng.randint(2, max_num_tokens)

  pairs = []
  chunk = []
  chunk_length = 0
  i = 0
  while i < len(document):
    chunk.append(document[i])
    chunk_length += len(document[i])
    if i == len(document) - 1 or chunk_length >= target_length:
      a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
      tokens_a = [token for sentence in chunk[:a_end] for token in sentence]
      if len(chunk) == 1 or rng.random() < 0.5:
        is_random_next = True
        tokens_b = random_segment(documents, document_index,
                                  target_length - len(tokens_a), rng)
        # The sentences after A were not used: start the next chunk there.
        i -= len(chunk) - a_end
      else:
        is_random_next = False
        tokens_b = [token for sentence in chunk[a_end:] for token in sentence]
      tokens_a, tokens_b = truncate_pair(tokens_a, tokens_b, max_num_tokens,
                                         rng)
      pairs.append((tokens_a, tokens_b, is_random_next))
      chunk = []
      chunk_length = 0
    i += 1
  return pairs


def random_segment(documents, document_index, target_length, rng):
  """Returns sentences from a random other document, about target_length long.

  As in Google's code, a few draws avoid the current document; with a single
  document in the file it is used anyway.
  """
  for _ in range(10):
    random_index = rng.randrange(len(documents))
    if random_index != document_index:
      break
  document = documents[random_index]
  tokens = []
  for sentence in document[rng.randrange(len(document)):]:
    tokens.extend(sentence)
    if len(tokens) >= target_length:
      break
  return tokens


class Masker(object):
  """Builds masked-LM inputs with Google's default masking, on ids.

  Each WordPiece is a candidate on its own (not whole-word masking); [CLS]
  and [SEP] never are.
  """

  def __init__(self, vocab, masked_lm_prob, max_predictions_per_seq):
    self.cls_id = vocab["[CLS]"]
    self.sep_id = vocab["[SEP]"]
    self.mask_id = vocab["[MASK]"]
    self.vocab_ids = list(vocab.values())
    self.masked_lm_prob = masked_lm_prob
    self.max_predictions_per_seq = max_predictions_per_seq

  def build(self, tokens_a, tokens_b, rng):
    """Returns (input_ids, num_a, masked_lm_positions, masked_lm_ids).

    input_ids is [CLS] A [SEP] B [SEP] with the masks applied and num_a is
    len(A) + 2, the length of segment 0. Positions are sorted; masked_lm_ids
    hold the original tokens.
    """
    input_ids = [self.cls_id] + tokens_a + [self.sep_id] + tokens_b
    input_ids.append(self.sep_id)
    num_a = len(tokens_a) + 2
    num_candidates = len(input_ids) - 3
    num_to_predict = min(self.max_predictions_per_seq, num_candidates,
                         max(1, int(round(len(input_ids) *
                                          self.masked_lm_prob))))
    # Candidate k is the k-th token that is not [CLS] or [SEP].
    positions = sorted(k + 1 if k < len(tokens_a) else k + 2
                       for k in rng.sample(range(num_candidates),
                                           num_to_predict))
    masked_lm_ids = [input_ids[position] for position in positions]
    for position in positions:
      draw = rng.random()
      if draw < 0.8:
        input_ids[position] = self.mask_id
      elif draw >= 0.9:  # 10% random word; the remaining 10% keep the token
        input_ids[position] = rng.choice(self.vocab_ids)
    return input_ids, num_a, positions, masked_lm_ids


class ExampleSerializer(object):
  """Serializes instances by refilling one record_format example.

  Building a new tf.train.Example per instance costs about three times as
  much as overwriting the values of a template made by
  record_format.make_pretraining_example, which keeps that module the only
  definition of the schema.
  """

  def __init__(self, max_seq_length, max_predictions_per_seq):
    from bert_distillation import record_format  # pylint: disable=g-import-not-at-top
    self.max_seq_length = max_seq_length
    self.max_predictions_per_seq = max_predictions_per_seq
    self.example = record_format.make_pretraining_example(
        input_ids=[0] * max_seq_length, input_mask=[0] * max_seq_length,
        segment_ids=[0] * max_seq_length,
        masked_lm_positions=[0] * max_predictions_per_seq,
        masked_lm_ids=[0] * max_predictions_per_seq,
        masked_lm_weights=[0.0] * max_predictions_per_seq,
        next_sentence_label=0)
    self.fields = {}
    for name, feature in self.example.features.feature.items():
      self.fields[name] = getattr(feature, feature.WhichOneof("kind")).value

  def serialize(self, input_ids, num_a, masked_lm_positions, masked_lm_ids,
                is_random_next):
    """Returns the serialized, padded tf.train.Example of one instance."""
    length = len(input_ids)
    seq_padding = [0] * (self.max_seq_length - length)
    num_masked = len(masked_lm_positions)
    pred_padding = [0] * (self.max_predictions_per_seq - num_masked)
    fields = self.fields
    fields["input_ids"][:] = input_ids + seq_padding
    fields["input_mask"][:] = [1] * length + seq_padding
    fields["segment_ids"][:] = ([0] * num_a + [1] * (length - num_a) +
                                seq_padding)
    fields["masked_lm_positions"][:] = masked_lm_positions + pred_padding
    fields["masked_lm_ids"][:] = masked_lm_ids + pred_padding
    fields["masked_lm_weights"][:] = [1.0] * num_masked + [0.0] * len(
        pred_padding)
    fields["next_sentence_labels"][:] = [1 if is_random_next else 0]
    # Sorted map keys: the same bytes in every process.
    return self.example.SerializeToString(deterministic=True)


def pack_instance(input_ids, num_a, masked_lm_positions, masked_lm_ids,
                  is_random_next, typecode):
  """Packs an unpadded instance into bytes (about half a serialized one).

  A file's instances wait in memory until they are all made and shuffled;
  2- or 4-byte ids keep that memory small.
  """
  values = [len(input_ids), num_a, int(is_random_next),
            len(masked_lm_positions)]
  values += input_ids
  values += masked_lm_positions
  values += masked_lm_ids
  return array.array(typecode, values).tobytes()


def unpack_instance(packed, typecode):
  """Returns the arguments of ExampleSerializer.serialize from pack_instance."""
  values = array.array(typecode, packed).tolist()
  length, num_a, is_random_next, num_masked = values[:4]
  ids_end = 4 + length
  positions_end = ids_end + num_masked
  return (values[4:ids_end], num_a, values[ids_end:positions_end],
          values[positions_end:], is_random_next)


def id_typecode(largest_id):
  """Returns the array typecode that holds every id and position."""
  return "H" if max(largest_id, MAX_SUPPORTED_SEQ_LENGTH) < (1 << 16) else "I"


def create_file_instances(documents, config, masker, rng):
  """Returns the shuffled, packed instances of one file's documents."""
  typecode = config["typecode"]
  instances = []
  for pass_index in range(config["dupe_factor"]):
    for document_index in range(len(documents)):
      for tokens_a, tokens_b, is_random_next in create_pairs_from_document(
          documents, document_index, config["max_seq_length"],
          config["short_seq_prob"], rng):
        input_ids, num_a, positions, masked_lm_ids = masker.build(
            tokens_a, tokens_b, rng)
        instances.append(pack_instance(input_ids, num_a, positions,
                                       masked_lm_ids, is_random_next,
                                       typecode))
    logging.info("%s: pass %d/%d done, %d instances", config["name"],
                 pass_index + 1, config["dupe_factor"], len(instances))
  rng.shuffle(instances)
  return instances


def write_records(instances, serializer, typecode, path):
  """Writes packed instances as tf.train.Examples to `path`.

  The file appears only when complete: it is written under a temporary name
  (temporary_files) and renamed. The temporary is removed on an error or a
  SIGTERM/SIGINT; one left by a `kill -9` is removed by the next run.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  temp_path = temporary_files.register(temporary_files.temporary_path(path))
  try:
    with tf.io.TFRecordWriter(temp_path) as writer:
      for packed in instances:
        writer.write(serializer.serialize(*unpack_instance(packed, typecode)))
    temporary_files.commit(temp_path, path)
  except BaseException:
    temporary_files.discard(temp_path)
    raise


# Per-process state of the workers, set once by init_worker.
_WORKER = {}


def init_worker(vocab_file, do_lower_case, config):
  """Loads the tokenizer and the helpers a worker uses for every file."""
  tokenizer = tokenization.FullTokenizer(vocab_file=vocab_file,
                                         do_lower_case=do_lower_case)
  _WORKER["id_tokenizer"] = IdTokenizer(tokenizer)
  _WORKER["masker"] = Masker(tokenizer.vocab, config["masked_lm_prob"],
                             config["max_predictions_per_seq"])
  _WORKER["serializer"] = ExampleSerializer(config["max_seq_length"],
                                            config["max_predictions_per_seq"])
  largest_id = max(tokenizer.vocab.values())
  _WORKER["config"] = dict(config, typecode=id_typecode(largest_id))


def process_file(task):
  """Turns one input file into one record file.

  Args:
    task: (file_index, input_file, output_file).

  Returns:
    (file_index, input_file, number of instances written, seconds, warning
    about lines too long for an instance or None). No file is written (0
    instances) when the input has no usable document.
  """
  file_index, input_file, output_file = task
  start = time.time()
  config = dict(_WORKER["config"], name=os.path.basename(input_file))
  # [CLS] A [SEP] B [SEP]
  long_lines = LongLines(config["max_seq_length"] - 3)
  documents = read_documents(input_file, _WORKER["id_tokenizer"], long_lines)
  warning = long_lines.warning(input_file, config["max_seq_length"])
  if not documents:
    return file_index, input_file, 0, time.time() - start, warning
  logging.info("%s: %d documents, %d sentences", config["name"],
               len(documents), sum(len(d) for d in documents))
  rng = random.Random(file_seed(config["random_seed"], input_file))
  instances = create_file_instances(documents, config, _WORKER["masker"], rng)
  del documents
  write_records(instances, _WORKER["serializer"], config["typecode"],
                output_file)
  return file_index, input_file, len(instances), time.time() - start, warning


def describe_task(task):
  """Names a task's files for an error message."""
  _, input_file, output_file = task
  return "%s (writing %s)" % (input_file, output_file)


def run_tasks(tasks, num_workers, vocab_file, do_lower_case, config):
  """Runs process_file on every task; yields results as files finish.

  A worker process that dies (e.g. killed by the out-of-memory killer) ends
  the run with worker_pool.WorkerDied naming the file it was working on.
  """
  init_args = (vocab_file, do_lower_case, config)
  if num_workers == 1:
    init_worker(*init_args)
    for task in tasks:
      yield process_file(task)
    return
  # Workers are forked: they inherit the imported modules instead of
  # importing again. Freezing the objects first keeps the workers' garbage
  # collector from writing to (and so copying) the memory pages they share
  # with us.
  gc.freeze()
  for _, result in worker_pool.run_tasks(
      process_file, tasks, num_workers, initializer=init_worker,
      initargs=init_args, describe_task=describe_task):
    yield result


def output_name_pattern(output_base_name):
  """Regular expression for the names of this script's output files."""
  return r"%s_\d+\.tfrecord" % re.escape(output_base_name)


def remove_stale_outputs(output_dir, output_base_name, written_paths):
  """Removes <output_base_name>_N.tfrecord files this run did not write.

  They come from an earlier run with more input files (or files that now
  hold no usable document); the documented glob <output_base_name>_*
  would otherwise mix them with this run's records. Returns their paths.
  """
  written = set(os.path.abspath(path) for path in written_paths)
  pattern = output_name_pattern(output_base_name)
  removed = []
  for name in sorted(os.listdir(output_dir), key=natural_sort_key):
    path = os.path.join(output_dir, name)
    if re.fullmatch(pattern, name) and os.path.abspath(path) not in written:
      os.remove(path)
      removed.append(path)
  if removed:
    logging.warning("Removed %d record file(s) of an earlier run that this "
                    "run did not write, so that %s_* matches only this "
                    "run's output: %s", len(removed), output_base_name,
                    ", ".join(removed))
  return removed


def import_tensorflow():
  """Imports TensorFlow and record_format, which take a few seconds.

  Done after the quick checks, so that a bad flag fails at once, and before
  the workers are forked, so that they share the loaded modules.
  """
  importlib.import_module("bert_distillation.record_format")


def main(_):
  logging.set_verbosity(logging.INFO)
  check_flags()
  input_files = list_input_files(FLAGS.input_dir)
  check_output_dir(FLAGS.input_dir, FLAGS.output_dir)
  for path in input_files:
    check_is_text(path)
  try:
    tokenizer = tokenization.FullTokenizer(vocab_file=FLAGS.vocab_file,
                                           do_lower_case=FLAGS.do_lower_case)
    tokenization.check_special_tokens(tokenizer.vocab, SPECIAL_TOKENS,
                                      FLAGS.vocab_file)
  except ValueError as error:
    raise InputError(str(error)) from None
  del tokenizer
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  import_tensorflow()
  temporary_files.install_cleanup()
  name_pattern = output_name_pattern(FLAGS.output_base_name)
  temporary_files.remove_stale(FLAGS.output_dir, name_pattern)
  try:
    write_all_records(input_files)
  except worker_pool.WorkerDied as error:
    raise InputError(
        "A %s. Nothing was written for the files not yet finished; rerun "
        "with a smaller --num_workers if memory ran out." % error) from None
  finally:
    # Temporaries of workers that were killed (they cannot remove their own).
    temporary_files.remove_stale(FLAGS.output_dir, name_pattern)


def write_all_records(input_files):
  """Writes one record file per input file; logs progress and totals."""
  config = {
      "max_seq_length": FLAGS.max_seq_length,
      "max_predictions_per_seq": FLAGS.max_predictions_per_seq,
      "random_seed": FLAGS.random_seed,
      "dupe_factor": FLAGS.dupe_factor,
      "masked_lm_prob": FLAGS.masked_lm_prob,
      "short_seq_prob": FLAGS.short_seq_prob,
  }
  tasks = [(index, path,
            output_path(FLAGS.output_dir, FLAGS.output_base_name, index))
           for index, path in enumerate(input_files)]
  # Largest files first, so that no worker is left with a big one at the end.
  tasks.sort(key=lambda task: -os.path.getsize(task[1]))
  num_workers = min(FLAGS.num_workers or default_num_workers(), len(tasks))
  logging.info("%d input files, %d workers", len(tasks), num_workers)

  start = time.time()
  total_instances = 0
  written_paths = []
  for done, (file_index, input_file, num_instances, seconds,
             long_line_warning) in enumerate(
                 run_tasks(tasks, num_workers, FLAGS.vocab_file,
                           FLAGS.do_lower_case, config), 1):
    if long_line_warning:
      logging.warning(long_line_warning)
    if num_instances == 0:
      logging.warning("Skipped %s: it holds no usable document (text lines "
                      "separated by blank lines)", input_file)
      continue
    total_instances += num_instances
    written_paths.append(
        output_path(FLAGS.output_dir, FLAGS.output_base_name, file_index))
    elapsed = time.time() - start
    logging.info(
        "[%d/%d files] %s -> %s: %d instances in %.1fs; total %d instances, "
        "%.0f instances/s", done, len(tasks), input_file, written_paths[-1],
        num_instances, seconds, total_instances,
        total_instances / max(elapsed, 1e-9))
  if total_instances == 0:
    raise InputError("No instances were written: none of the %d files in "
                     "--input_dir %s holds a usable document"
                     % (len(tasks), FLAGS.input_dir))
  remove_stale_outputs(FLAGS.output_dir, FLAGS.output_base_name,
                       written_paths)
  logging.info("Wrote %d instances to %d files in %s (%.1fs)",
               total_instances, len(written_paths), FLAGS.output_dir,
               time.time() - start)


if __name__ == "__main__":
  flags.mark_flag_as_required("input_dir")
  flags.mark_flag_as_required("output_dir")
  flags.mark_flag_as_required("output_base_name")
  flags.mark_flag_as_required("vocab_file")
  command_line.run(main)
