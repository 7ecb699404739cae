# coding=utf-8
"""The tasks of run_classifier.py: file layouts, examples, features, labels.

A task reads tab-separated files from --data_dir. The GLUE tasks read their
files as GLUE distributes them (the column layouts are in TASKS below);
`tsv` reads train.tsv, dev.tsv and test.tsv with a header row naming the
columns text_a, optional text_b, and label (any strings).

Every row must have as many fields as the file's header (or as the
headerless CoLA layout); a row that does not, a label outside the task's
label list, or a split without examples is one InputError naming the file
(and line). The label list of a task without a fixed one (tsv) is the sorted
set of train.tsv's labels; run_classifier.py saves it in --output_dir
(task.json) so that evaluation, prediction and a resumed run use the same
ids.

Augmentation (augment_examples) follows Tang et al. (2019, "Distilling
Task-Specific Knowledge from BERT into Simple Neural Networks"): each word
becomes [MASK] with probability 0.1, then with probability 0.25 only a
random n-gram (n from 1 to 5) of the words is kept. Copies are unlabelled:
the teacher labels them.
"""

import collections
import json
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
# counted from the end), and the number of fields of a headerless row.
Layout = collections.namedtuple(
    "Layout", "file_name header text_a text_b label fields")

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


def _glue_task(name, text_a, text_b, label, labels, test_a, test_b,
               dev_file="dev.tsv", test_file="test.tsv", regression=False,
               metrics=()):
  """A GLUE task whose files all have a header row."""
  return Task(name, _layouts(
      Layout("train.tsv", True, text_a, text_b, label, None),
      Layout(dev_file, True, text_a, text_b, label, None),
      Layout(test_file, True, test_a, test_b, None, None)),
              labels, regression, metrics)


TASKS = {
    # sentence<TAB>label; test: index<TAB>sentence.
    "sst-2": _glue_task("sst-2", 0, None, 1, ["0", "1"], 1, None),
    # No header in train/dev: source, label, original label, sentence; the
    # test file has a header, index<TAB>sentence.
    "cola": Task("cola", _layouts(
        Layout("train.tsv", False, 3, None, 1, 4),
        Layout("dev.tsv", False, 3, None, 1, 4),
        Layout("test.tsv", True, 1, None, None, None)),
                 ["0", "1"], False, ("mcc",)),
    # Quality, #1 ID, #2 ID, #1 String, #2 String (test: index first).
    "mrpc": _glue_task("mrpc", 3, 4, 0, ["0", "1"], 3, 4, metrics=("f1",)),
    # Sentences in columns 8 and 9, the gold label last.
    "mnli": _glue_task("mnli", 8, 9, -1,
                       ["contradiction", "entailment", "neutral"], 8, 9,
                       dev_file="dev_matched.tsv",
                       test_file="test_matched.tsv"),
    # index, question, sentence, label.
    "qnli": _glue_task("qnli", 1, 2, 3, ["entailment", "not_entailment"],
                       1, 2),
    # index, sentence1, sentence2, label.
    "rte": _glue_task("rte", 1, 2, 3, ["entailment", "not_entailment"], 1, 2),
    # id, qid1, qid2, question1, question2, is_duplicate; test: id,
    # question1, question2.
    "qqp": _glue_task("qqp", 3, 4, 5, ["0", "1"], 1, 2, metrics=("f1",)),
    # index, genre, filename, year, old_index, source1, source2, sentence1,
    # sentence2, score (test: no score).
    "sts-b": _glue_task("sts-b", 7, 8, -1, None, 7, 8, regression=True,
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
  """[(line number, fields)] of a tab-separated file; blank lines skipped.

  Quotes are ordinary characters, as in Google's run_classifier.py (GLUE's
  files are not quoted).
  """
  rows = []
  with tf.io.gfile.GFile(path, "r") as reader:
    for number, line in enumerate(reader, start=1):
      line = line.rstrip("\r\n")
      if line.strip():
        rows.append((number, line.split("\t")))
  return rows


def tsv_layout(header, path, file_name, needs_label):
  """The Layout of a `tsv` file, from its header row."""
  columns = {name: index for index, name in enumerate(header)}
  wanted = ["text_a"] + (["label"] if needs_label else [])
  missing = [name for name in wanted if name not in columns]
  if missing:
    raise InputError(
        "%s:1: the header names no %s column (--task_name tsv needs a header "
        "row with text_a, optional text_b and label; it has %s)" % (
            path, " or ".join(missing), ", ".join(header)))
  return Layout(file_name, True, columns["text_a"], columns.get("text_b"),
                columns.get("label"), None)


def layout_for(task, split, path, header, labelled):
  """The Layout of one split; for tsv, read from the header row."""
  if task.layouts is not None:
    return task.layouts[split]
  return tsv_layout(header, path, os.path.basename(path),
                    needs_label=labelled and split in ("train", "dev"))


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
      and path for a file without examples.
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
      label = row[layout.label]
    examples.append(Example(
        text_a=row[layout.text_a],
        text_b=row[layout.text_b] if layout.text_b is not None else None,
        label=label, has_label=label is not None, source=where))
  if not examples:
    raise InputError("%s holds no examples" % path)
  return examples


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

  For a regression task, a label that is not a number.
  """
  allowed = set(labels or ())
  for example in examples:
    if example.label is None:
      continue
    if task.regression:
      try:
        float(example.label)
      except ValueError:
        raise InputError("%s: label %r is not a number (--task_name %s is a "
                         "regression)" % (example.source, example.label,
                                          task.name)) from None
    elif example.label not in allowed:
      raise InputError("%s: label %r is not one of %s (%s)" % (
          example.source, example.label, ", ".join(labels), labels_from))


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


def task_description(task, labels):
  """What task.json holds: the task, its label list, regression or not."""
  return {"task_name": task.name, "labels": list(labels),
          "regression": task.regression}


def choose_labels(task, output_dir, train_examples):
  """The task's label list, and where it comes from (for error messages).

  A label list saved in output_dir (task.json) wins: a resumed run and a
  prediction use the ids the model was trained with. Else the task's fixed
  list, else the sorted labels of train_examples (None: not read).

  Raises:
    InputError: when task.json is of another task, or no list can be had.
  """
  saved = read_task_file(output_dir)
  if saved is not None:
    if saved.get("task_name") != task.name:
      raise InputError(
          "--output_dir %s holds a model of --task_name %s (task.json), not "
          "%s: use another --output_dir" % (output_dir,
                                            saved.get("task_name"), task.name))
    return saved["labels"], "the labels in %s" % os.path.join(output_dir,
                                                            TASK_FILE)
  if task.regression:
    return [], "a regression"
  if task.labels is not None:
    return list(task.labels), "the labels of --task_name %s" % task.name
  if train_examples is None:
    raise InputError(
        "--task_name %s takes its labels from train.tsv, but --output_dir %s "
        "has no %s and train.tsv was not read: run --do_train first, or "
        "point --output_dir at a trained model" % (task.name, output_dir,
                                                  TASK_FILE))
  return labels_in(train_examples), "the labels of train.tsv"


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
