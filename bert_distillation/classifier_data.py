# coding=utf-8
"""The tasks of run_classifier.py: file layouts, examples, features, labels.

A task reads tab-separated files from --data_dir. The GLUE tasks read their
files as GLUE distributes them (the column layouts are in TASKS below);
`tsv` reads train.tsv, dev.tsv and test.tsv with a header row naming the
columns text_a, optional text_b, and label (any strings).

Files are UTF-8 (a byte order mark is dropped; lines end in \n, \r\n or
\r). Every row must have as many fields as the file's header (or as the
headerless CoLA layout), a GLUE header must name the columns read at their
places, a tsv header may name text_a, text_b and label once each, and labels
lose surrounding whitespace and must not be empty; anything else, a label
outside the task's label list, or a split without examples is one
InputError naming the file (and line). The label list of a task without a
fixed one (tsv) is the sorted set of train.tsv's labels; run_classifier.py
saves it in --output_dir (task.json) so that evaluation, prediction and a
resumed run use the same ids. A task.json counts only beside a checkpoint
(saved_task): task state without a model is not state.

Augmentation (augment_examples) follows Tang et al. (2019, "Distilling
Task-Specific Knowledge from BERT into Simple Neural Networks"): each word
becomes [MASK] with probability 0.1, then with probability 0.25 only a
random n-gram (n from 1 to 5) of the words is kept. Copies are unlabelled:
the teacher labels them.
"""

import codecs
import collections
import json
import math
import os
import random

import numpy as np
import tensorflow as tf

from bert_distillation import command_line

InputError = command_line.InputError

MASK_TOKEN = "[MASK]"
MASK_PROBABILITY = 0.1
NGRAM_PROBABILITY = 0.25
MAX_NGRAM = 5

TASK_FILE = "task.json"

# One split of a task's files: the file name, whether it has a header row,
# the columns of text_a, text_b and the label (None: absent; negative:
# counted from the end), the number of fields of a headerless row, and the
# names a GLUE header gives those three columns (checked; None for tsv).
Layout = collections.namedtuple(
    "Layout", "file_name header text_a text_b label fields names")

# A task: its layouts by split ("train", "dev", "test"), its fixed label
# list (None: taken from train.tsv), whether it is a regression, and the
# extra metrics of its evaluation (bert_distillation/classifier_metrics.py).
Task = collections.namedtuple("Task", "name layouts labels regression metrics")

# An example: its texts, its label (a string; None when unknown), whether
# the label is real (False for transfer and augmented examples, which the
# teacher labels), and where it comes from ("file:line").
Example = collections.namedtuple("Example",
                                 "text_a text_b label has_label source")


def _layouts(train, dev, test):
  return {"train": train, "dev": dev, "test": test}


def _glue_layout(file_name, text_a, text_b, label=None):
  """A GLUE file with a header; each column is (index, its header name)."""
  columns = [text_a, text_b, label]
  return Layout(file_name, True, *[column and column[0] for column in columns],
                fields=None, names=tuple(column and column[1]
                                         for column in columns))


def _glue_task(name, text_a, text_b, label, labels, test_a, test_b,
               dev_file="dev.tsv", test_file="test.tsv", regression=False,
               metrics=()):
  """A GLUE task whose files all have a header row."""
  return Task(name, _layouts(
      _glue_layout("train.tsv", text_a, text_b, label),
      _glue_layout(dev_file, text_a, text_b, label),
      _glue_layout(test_file, test_a, test_b)), labels, regression, metrics)


TASKS = {
    # sentence<TAB>label; test: index<TAB>sentence.
    "sst-2": _glue_task("sst-2", (0, "sentence"), None, (1, "label"),
                        ["0", "1"], (1, "sentence"), None),
    # No header in train/dev: source, label, original label, sentence; the
    # test file has a header, index<TAB>sentence.
    "cola": Task("cola", _layouts(
        Layout("train.tsv", False, 3, None, 1, 4, None),
        Layout("dev.tsv", False, 3, None, 1, 4, None),
        _glue_layout("test.tsv", (1, "sentence"), None)),
                 ["0", "1"], False, ("mcc",)),
    # Quality, #1 ID, #2 ID, #1 String, #2 String (test: index first).
    "mrpc": _glue_task("mrpc", (3, "#1 String"), (4, "#2 String"),
                       (0, "Quality"), ["0", "1"], (3, "#1 String"),
                       (4, "#2 String"), metrics=("f1",)),
    # Sentences in columns 8 and 9, the gold label last.
    "mnli": _glue_task("mnli", (8, "sentence1"), (9, "sentence2"),
                       (-1, "gold_label"),
                       ["contradiction", "entailment", "neutral"],
                       (8, "sentence1"), (9, "sentence2"),
                       dev_file="dev_matched.tsv",
                       test_file="test_matched.tsv"),
    # index, question, sentence, label.
    "qnli": _glue_task("qnli", (1, "question"), (2, "sentence"), (3, "label"),
                       ["entailment", "not_entailment"], (1, "question"),
                       (2, "sentence")),
    # index, sentence1, sentence2, label.
    "rte": _glue_task("rte", (1, "sentence1"), (2, "sentence2"), (3, "label"),
                      ["entailment", "not_entailment"], (1, "sentence1"),
                      (2, "sentence2")),
    # id, qid1, qid2, question1, question2, is_duplicate; test: id,
    # question1, question2.
    "qqp": _glue_task("qqp", (3, "question1"), (4, "question2"),
                      (5, "is_duplicate"), ["0", "1"], (1, "question1"),
                      (2, "question2"), metrics=("f1",)),
    # index, genre, filename, year, old_index, source1, source2, sentence1,
    # sentence2, score (test: no score).
    "sts-b": _glue_task("sts-b", (7, "sentence1"), (8, "sentence2"),
                        (-1, "score"), None, (7, "sentence1"),
                        (8, "sentence2"), regression=True,
                        metrics=("pearson", "spearman")),
    # A header names the columns (see tsv_layout).
    "tsv": Task("tsv", None, None, False, ()),
}

TASK_NAMES = sorted(TASKS)


def get_task(name):
  """The Task called `name` (case-insensitive); InputError if unknown."""
  task = TASKS.get(name.lower())
  if task is None:
    raise InputError("--task_name %s is not one of %s" % (
        name, ", ".join(TASK_NAMES)))
  return task


# ---------------------------------------------------------------------------
# Reading rows.


def read_rows(path):
  """[(line number, fields)] of a tab-separated UTF-8 file; blank lines skipped.

  A UTF-8 byte order mark at the start is dropped, and a line may end in
  \n, \r\n or \r alone (old Mac files), as with Python's universal
  newlines. Quotes are ordinary characters, as in Google's
  run_classifier.py (GLUE's files are not quoted).

  Raises:
    InputError: naming path:line for a line that is not UTF-8.
  """
  with tf.io.gfile.GFile(path, "rb") as reader:
    data = reader.read()
  if data.startswith(codecs.BOM_UTF8):
    data = data[len(codecs.BOM_UTF8):]
  lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
  rows = []
  for number, raw in enumerate(lines, start=1):
    try:
      line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
      raise InputError(
          "%s:%d: byte 0x%02x (column %d) is not UTF-8: save the file as "
          "UTF-8" % (path, number, raw[error.start], error.start + 1)) from None
    if line.strip():
      rows.append((number, line.split("\t")))
  return rows


def check_unique_columns(header, path, names):
  """Raises InputError (path:1) when a column of `names` is named twice."""
  for name in names:
    found = [index + 1 for index, column in enumerate(header)
             if column.strip() == name]
    if len(found) > 1:
      raise InputError(
          "%s:1: the header names column %s %d times (columns %s): keep one "
          "column of each name" % (path, name, len(found),
                                   ", ".join(str(index) for index in found)))


def tsv_layout(header, path, file_name, needs_label):
  """The Layout of a `tsv` file, from its header row."""
  check_unique_columns(header, path, ("text_a", "text_b", "label"))
  columns = {name.strip(): index for index, name in enumerate(header)}
  wanted = ["text_a"] + (["label"] if needs_label else [])
  missing = [name for name in wanted if name not in columns]
  if missing:
    raise InputError(
        "%s:1: the header names no %s column (--task_name tsv needs a header "
        "row with text_a, optional text_b and label; it has %s)" % (
            path, " or ".join(missing), ", ".join(header)))
  return Layout(file_name, True, columns["text_a"], columns.get("text_b"),
                columns.get("label"), None, None)


def _column_description(index, name):
  """'#1 String' in column 4 / 'gold_label' in the last column."""
  if index < 0:
    return "%s in the last column" % name if index == -1 else (
        "%s in column %d from the end" % (name, -index))
  return "%s in column %d" % (name, index + 1)


def check_glue_header(task, layout, header, path, labelled):
  """Raises InputError unless a GLUE header names the columns read.

  GLUE's files are read by column position; a header that does not name
  the expected columns there means another file or another layout, which
  would give predictions (or training) on the wrong text.
  """
  read = [(layout.text_a, layout.names[0]), (layout.text_b, layout.names[1])]
  if labelled:
    read.append((layout.label, layout.names[2]))
  read = [(index, name) for index, name in read if name is not None]
  for index, name in read:
    position = index if index >= 0 else len(header) + index
    if not (0 <= position < len(header) and
            header[position].strip() == name):
      raise InputError(
          "%s:1: --task_name %s reads %s, but the header is: %s. Give the "
          "file as GLUE distributes it, or use --task_name tsv with a header "
          "naming text_a, text_b and label" % (
              path, task.name, ", ".join(_column_description(*column)
                                         for column in read),
              ", ".join(header)))


def layout_for(task, split, path, header, labelled):
  """The Layout of one split, checked against its header; for tsv, read
  from the header row."""
  if task.layouts is not None:
    layout = task.layouts[split]
    check_glue_header(task, layout, header, path, labelled)
    return layout
  return tsv_layout(header, path, os.path.basename(path),
                    needs_label=labelled and split in ("train", "dev"))


def read_label(row, layout, where):
  """The label of a row, without surrounding whitespace; never empty."""
  label = row[layout.label].strip()
  if not label:
    raise InputError("%s: the label is empty: every labelled row needs "
                     "one" % where)
  return label


def read_examples(task, split, path, labelled=True):
  """The examples of one split's file, in file order.

  Args:
    task: a Task.
    split: "train", "dev" or "test" (the layout to read).
    path: the file.
    labelled: whether the label column is read (False for a transfer file,
      whose labels are ignored).

  Raises:
    InputError: naming path:line for a row with the wrong number of fields,
      an empty label, a line that is not UTF-8 or a header without the
      columns the task reads, and path for a file without examples.
  """
  if not tf.io.gfile.exists(path):
    raise InputError("%s does not exist" % path)
  rows = read_rows(path)
  header = None
  layout = task.layouts[split] if task.layouts is not None else None
  if layout is None or layout.header:
    if not rows:
      raise InputError("%s is empty: it needs a header row and examples" %
                       path)
    header = rows.pop(0)[1]
    layout = layout_for(task, split, path, header, labelled)
  fields = len(header) if header is not None else layout.fields
  examples = []
  for number, row in rows:
    where = "%s:%d" % (path, number)
    if len(row) != fields:
      raise InputError(
          "%s: %d tab-separated fields, expected %d (%s of --task_name %s)" % (
              where, len(row), fields,
              "the header's" if header is not None else "the layout",
              task.name))
    label = None
    if labelled and layout.label is not None:
      label = read_label(row, layout, where)
    examples.append(Example(
        text_a=row[layout.text_a],
        text_b=row[layout.text_b] if layout.text_b is not None else None,
        label=label, has_label=label is not None, source=where))
  if not examples:
    raise InputError("%s holds no examples" % path)
  return examples


def source_file(examples):
  """The file the examples were read from (their source without :line)."""
  return examples[0].source.rsplit(":", 1)[0]


def check_same_texts(examples, pairs, reference):
  """Raises InputError when examples have text_b and the model not, or back.

  pairs: whether the model reads (or was trained on) text_b; reference:
  what says so, for the message (train.tsv, task.json).
  """
  has_b = examples[0].text_b is not None
  if has_b != pairs:
    raise InputError(
        "%s %s text_b column but %s %s: the model would read sentence pairs "
        "it was not trained on (or lose half of each pair). Give every file "
        "of the task a text_b column, or none." % (
            source_file(examples), "has a" if has_b else "has no", reference,
            "has none" if has_b else "has one"))


def split_path(task, data_dir, split):
  """The file of a split in data_dir (test.tsv etc.)."""
  file_name = (task.layouts[split].file_name if task.layouts is not None
               else "%s.tsv" % split)
  return os.path.join(data_dir, file_name)


# ---------------------------------------------------------------------------
# Labels.


def labels_in(examples):
  """The sorted distinct labels of examples (a tsv task's label list)."""
  return sorted({example.label for example in examples
                 if example.label is not None})


def check_labels(examples, task, labels, labels_from):
  """Raises InputError (file:line) for a label outside `labels`.

  For a regression task, a label that is not a finite number.
  """
  allowed = set(labels or ())
  for example in examples:
    if example.label is None:
      continue
    if task.regression:
      try:
        finite = math.isfinite(float(example.label))
      except ValueError:
        finite = None
      if not finite:
        raise InputError("%s: label %r is not a %s (--task_name %s is a "
                         "regression)" % (
                             example.source, example.label,
                             "number" if finite is None else "finite number",
                             task.name))
    elif example.label not in allowed:
      raise InputError("%s: label %r is not one of %s (%s)" % (
          example.source, example.label, ", ".join(labels), labels_from))


def check_label_variety(examples):
  """Raises InputError when the labelled examples hold one label only.

  A model trained on one class learns nothing (loss 0, accuracy 1.0); a
  regression on one score has no correlation to measure.
  """
  found = {example.label for example in examples if example.has_label}
  if len(found) == 1:
    raise InputError(
        "%s: every labelled example has the label %r: a model trained on "
        "one class learns nothing. The training file needs at least two "
        "labels." % (source_file(examples), found.pop()))


def read_task_file(output_dir):
  """The dict of output_dir/task.json, or None when there is none."""
  path = os.path.join(output_dir, TASK_FILE)
  if not tf.io.gfile.exists(path):
    return None
  try:
    with tf.io.gfile.GFile(path, "r") as reader:
      saved = json.loads(reader.read())
    saved["labels"] = [str(label) for label in saved["labels"]]
    return saved
  except (ValueError, KeyError, TypeError) as error:
    raise InputError("%s is damaged (%s): delete it to take the labels from "
                     "train.tsv again" % (path, error)) from None


def task_description(task, labels, pairs=None):
  """What task.json holds: the task, its label list, regression or not, and
  (when known) whether the model reads text_b."""
  description = {"task_name": task.name, "labels": list(labels),
                 "regression": task.regression}
  if pairs is not None:
    description["pairs"] = pairs
  return description


def latest_checkpoint(output_dir):
  """The latest checkpoint in output_dir, or None (also for no folder)."""
  if not tf.io.gfile.isdir(output_dir):
    return None
  return tf.train.latest_checkpoint(output_dir)


def saved_task(output_dir):
  """output_dir's task.json when a checkpoint stands beside it, else None.

  Task state without a model is not state: a task.json whose run stopped
  before its first checkpoint (a bad label, a kill) is replaced by the next
  training run, never trusted.
  """
  if not latest_checkpoint(output_dir):
    return None
  return read_task_file(output_dir)


def check_classifier_output_dir(output_dir):
  """Raises InputError when output_dir holds checkpoints without a classifier.

  A stage-V (pre-training) output folder has a checkpoint but no
  output_weights and no task.json: it is a starting point
  (--init_checkpoint), not a place to fine-tune into.
  """
  latest = latest_checkpoint(output_dir)
  if not latest:
    return
  names = dict(tf.train.list_variables(latest))
  if "output_weights" in names:
    return
  what = ("a stage-V (pre-training) output folder"
          if read_task_file(output_dir) is None else
          "not a run_classifier.py output")
  raise InputError(
      "--output_dir %s is %s: its checkpoint %s holds no classifier "
      "(output_weights). Pass it as --init_checkpoint and give a new "
      "--output_dir." % (output_dir, what, os.path.basename(latest)))


def check_trained_classifier(output_dir, init_checkpoint):
  """Raises InputError when evaluation without training has no classifier.

  Without --do_train the classifier is the latest checkpoint of output_dir,
  or one that init_checkpoint (a prefix, or None) holds; a pre-training
  checkpoint alone gives a random head, and its accuracy means nothing.
  """
  if latest_checkpoint(output_dir):
    return
  if not init_checkpoint:
    raise InputError(
        "--do_eval/--do_predict without --do_train use the latest checkpoint "
        "in --output_dir, but %s holds none: train first, or pass "
        "--init_checkpoint" % output_dir)
  if "output_weights" not in dict(tf.train.list_variables(init_checkpoint)):
    raise InputError(
        "--do_eval/--do_predict without --do_train: --output_dir %s holds no "
        "checkpoint and --init_checkpoint %s holds no classifier "
        "(output_weights), so the classifier would be random and its results "
        "mean nothing. Pass --do_train True, or point --output_dir at a "
        "trained model." % (output_dir, init_checkpoint))


def choose_labels(task, output_dir, train_examples):
  """The task's label list, and where it comes from (for error messages).

  A label list saved in output_dir (task.json beside a checkpoint) wins: a
  resumed run and a prediction use the ids the model was trained with. Else
  the task's fixed list, else the sorted labels of train_examples (None: not
  read).

  Raises:
    InputError: when task.json is of another task, train_examples' labels
      differ from the saved ones (a tsv task), or no list can be had.
  """
  saved = saved_task(output_dir)
  if saved is not None:
    path = os.path.join(output_dir, TASK_FILE)
    if saved.get("task_name") != task.name:
      raise InputError(
          "--output_dir %s holds a model of --task_name %s (task.json), not "
          "%s: use another --output_dir" % (output_dir,
                                            saved.get("task_name"), task.name))
    if (train_examples is not None and task.labels is None and
        not task.regression and
        labels_in(train_examples) != saved["labels"]):
      raise InputError(
          "--output_dir %s holds a model trained on the labels %s (%s), but "
          "%s has %s: train into a new --output_dir (or delete its "
          "checkpoints and %s)" % (
              output_dir, ", ".join(saved["labels"]), path,
              source_file(train_examples),
              ", ".join(labels_in(train_examples)), TASK_FILE))
    return saved["labels"], "the labels in %s" % path
  if task.regression:
    return [], "a regression"
  if task.labels is not None:
    return list(task.labels), "the labels of --task_name %s" % task.name
  if train_examples is None:
    raise InputError(
        "--task_name %s takes its labels from train.tsv, but --output_dir %s "
        "has no %s beside a checkpoint and train.tsv was not read: run "
        "--do_train first, or point --output_dir at a trained model" % (
            task.name, output_dir, TASK_FILE))
  return labels_in(train_examples), "the labels of train.tsv"


def parse_label_list(text, flag_name):
  """The labels of a comma-separated flag value; InputError if malformed."""
  labels = [label.strip() for label in text.split(",")]
  if "" in labels or len(set(labels)) != len(labels):
    raise InputError("%s %r must list distinct, non-empty labels separated "
                     "by commas" % (flag_name, text))
  return labels


def teacher_labels(task, saved, given, checkpoint, labels):
  """The teacher's labels in its class-id order (labels: this run's).

  From the teacher's task.json (`saved`, or None), or the user's list
  (`given`: --teacher_labels, or None); for a GLUE task, its fixed list.
  InputError when the two disagree, or when nothing tells the order.
  """
  if saved is not None and saved.get("task_name") != task.name:
    raise InputError(
        "--teacher_checkpoint %s was fine-tuned on --task_name %s, but this "
        "run has --task_name %s" % (checkpoint, saved.get("task_name"),
                                    task.name))
  if saved is not None and given is not None and saved["labels"] != given:
    raise InputError(
        "--teacher_labels %s differ from the labels of --teacher_checkpoint "
        "%s in its task.json, %s: leave --teacher_labels out" % (
            ",".join(given), checkpoint, ",".join(saved["labels"])))
  if saved is not None:
    return saved["labels"]
  if given is not None:
    return given
  if task.regression:
    return []
  if task.labels is not None:
    return list(task.labels)
  raise InputError(
      "--teacher_checkpoint %s has no %s beside it, so the order of its "
      "classes is unknown: pass --teacher_labels with its labels in class-id "
      "order (e.g. --teacher_labels %s if it was trained on this run's "
      "labels)" % (checkpoint, TASK_FILE, ",".join(labels)))


def label_order(teacher, student, checkpoint):
  """The teacher's class id of each student class; None when the same.

  InputError when the label sets differ: the teacher would teach classes
  the student does not have.
  """
  if teacher == list(student):
    return None
  if sorted(teacher) != sorted(student):
    raise InputError(
        "--teacher_checkpoint %s was fine-tuned on the labels %s, but this "
        "run has the labels %s: the teacher must know the same classes" % (
            checkpoint, ", ".join(teacher), ", ".join(student)))
  return [teacher.index(label) for label in student]


# Training features are constants of the input graph, and a TensorFlow graph
# holds at most 2 GB.
MAX_FEATURE_BYTES = 2 ** 31


def feature_bytes(count, max_seq_length):
  """Bytes of the feature arrays of `count` examples (see features())."""
  return count * (3 * 4 * max_seq_length + 8)


def check_training_size(num_examples, num_extra, augment_factor,
                        max_seq_length):
  """Raises InputError when the training set would not fit in the graph.

  Checked before anything is built: the examples, the transfer rows, and
  augment_factor copies of each example.
  """
  total = num_examples * (1 + augment_factor) + num_extra
  if feature_bytes(total, max_seq_length) <= MAX_FEATURE_BYTES:
    return
  largest = max(0, (MAX_FEATURE_BYTES // feature_bytes(1, max_seq_length) -
                    num_examples - num_extra) // num_examples)
  size = ("%d training examples (%d examples x %d, and %d transfer rows), "
          "%.1f GB of features at --max_seq_length %d, over the %d GB a "
          "TensorFlow graph holds" % (
              total, num_examples, 1 + augment_factor, num_extra,
              feature_bytes(total, max_seq_length) / 1e9, max_seq_length,
              MAX_FEATURE_BYTES // 2 ** 30))
  if augment_factor and largest:
    raise InputError("--augment_factor %d would make %s: use "
                     "--augment_factor %d or less" % (augment_factor, size,
                                                      largest))
  raise InputError("--augment_factor %d, train.tsv and --transfer_file would "
                   "make %s: train on fewer examples, or a shorter "
                   "--max_seq_length" % (augment_factor, size))


# ---------------------------------------------------------------------------
# Features.


def tokenize_text(tokenizer, text):
  """WordPiece tokens of text; a word that is exactly [MASK] stays one token.

  BasicTokenizer splits on whitespace before anything else, so tokenizing
  word by word gives the same tokens as the whole text, and lets the
  augmentation's [MASK] words through unsplit.
  """
  if MASK_TOKEN not in text:
    return tokenizer.tokenize(text)
  tokens = []
  for word in text.split():
    if word == MASK_TOKEN:
      tokens.append(MASK_TOKEN)
    else:
      tokens.extend(tokenizer.tokenize(word))
  return tokens


def truncate_pair(tokens_a, tokens_b, max_length):
  """Shortens the longer list, one token at a time, to max_length in all."""
  while len(tokens_a) + len(tokens_b) > max_length:
    longer = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
    longer.pop()


def example_ids(example, tokenizer, max_seq_length):
  """(input_ids, segment_ids) of [CLS] a [SEP] (b [SEP]), unpadded."""
  tokens_a = tokenize_text(tokenizer, example.text_a)
  tokens_b = (tokenize_text(tokenizer, example.text_b)
              if example.text_b is not None else [])
  if example.text_b is not None:
    truncate_pair(tokens_a, tokens_b, max_seq_length - 3)
  else:
    tokens_a = tokens_a[:max_seq_length - 2]
  tokens = ["[CLS]"] + tokens_a + ["[SEP]"]
  segment_ids = [0] * len(tokens)
  if example.text_b is not None:
    tokens += tokens_b + ["[SEP]"]
    segment_ids += [1] * (len(tokens_b) + 1)
  return tokenizer.convert_tokens_to_ids(tokens), segment_ids


def features(examples, tokenizer, max_seq_length, labels, regression):
  """{name: numpy array} of the examples, in order, for the input_fn.

  input_ids, input_mask, segment_ids: int32 [n, max_seq_length]; label_ids
  (int32 class ids; float32 scores for a regression; 0 when unknown) and
  label_weights (1.0 for a real label, 0.0 for one the teacher gives).
  """
  count = len(examples)
  input_ids = np.zeros([count, max_seq_length], np.int32)
  input_mask = np.zeros([count, max_seq_length], np.int32)
  segment_ids = np.zeros([count, max_seq_length], np.int32)
  label_ids = np.zeros([count], np.float32 if regression else np.int32)
  label_weights = np.zeros([count], np.float32)
  label_index = {label: index for index, label in enumerate(labels)}
  for row, example in enumerate(examples):
    ids, segments = example_ids(example, tokenizer, max_seq_length)
    input_ids[row, :len(ids)] = ids
    input_mask[row, :len(ids)] = 1
    segment_ids[row, :len(ids)] = segments
    if example.has_label:
      label_ids[row] = (float(example.label) if regression
                        else label_index[example.label])
      label_weights[row] = 1.0
  return {"input_ids": input_ids, "input_mask": input_mask,
          "segment_ids": segment_ids, "label_ids": label_ids,
          "label_weights": label_weights}


# ---------------------------------------------------------------------------
# Augmentation (Tang et al. 2019).


def perturb_words(words, rng, mask_probability=MASK_PROBABILITY,
                  ngram_probability=NGRAM_PROBABILITY, max_ngram=MAX_NGRAM):
  """One perturbed copy of a list of words: masking, then n-gram sampling."""
  words = [MASK_TOKEN if rng.random() < mask_probability else word
           for word in words]
  if words and rng.random() < ngram_probability:
    length = min(rng.randint(1, max_ngram), len(words))
    start = rng.randint(0, len(words) - length)
    words = words[start:start + length]
  return words


def augment_examples(examples, factor, seed):
  """`factor` perturbed, unlabelled copies of each example, in order.

  The same seed gives the same copies. Each text of a pair is perturbed on
  its own.
  """
  rng = random.Random(seed)
  copies = []
  for example in examples:
    for copy in range(factor):
      text_b = example.text_b
      if text_b is not None:
        text_b = " ".join(perturb_words(text_b.split(), rng))
      copies.append(Example(
          text_a=" ".join(perturb_words(example.text_a.split(), rng)),
          text_b=text_b, label=None, has_label=False,
          source="%s (augmented copy %d)" % (example.source, copy + 1)))
  return copies


def unlabelled(examples):
  """The examples with their labels dropped (the teacher labels them)."""
  return [example._replace(label=None, has_label=False)
          for example in examples]
