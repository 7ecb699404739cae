"""Tests for run_classifier.py's task data: no silent wrong result.

The readers and checks of bert_distillation/classifier_data.py are called
in-process on files written here; a subprocess runs the script only where
the behaviour is in its order of steps (what it writes before it fails).
"""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

import conftest
from bert_distillation import classifier_data
from bert_distillation import distillation

InputError = classifier_data.InputError
TSV = classifier_data.get_task("tsv")


def write_lines(path, lines, newline="\n", prefix=b""):
  """Writes lines joined by newline, UTF-8, after raw prefix bytes."""
  with open(path, "wb") as f:
    f.write(prefix + "".join(line + newline for line in lines).encode("utf-8"))
  return str(path)


def save_checkpoint(folder, names, step=1):
  """A checkpoint model.ckpt-<step> in folder holding small tensors `names`."""
  os.makedirs(str(folder), exist_ok=True)
  prefix = os.path.join(str(folder), "model.ckpt-%d" % step)
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=list(names),
                    shape_and_slices=[""] * len(names),
                    tensors=[np.zeros([2, 4], np.float32) for _ in names])
  with open(os.path.join(str(folder), "checkpoint"), "w") as f:
    f.write('model_checkpoint_path: "model.ckpt-%d"\n' % step)
  return prefix


PRETRAINING_NAMES = ["bert/embeddings/word_embeddings",
                     "cls/predictions/output_bias"]
CLASSIFIER_NAMES = ["bert/embeddings/word_embeddings", "output_weights"]


def write_task_json(folder, labels):
  os.makedirs(str(folder), exist_ok=True)
  with open(os.path.join(str(folder), "task.json"), "w") as f:
    json.dump({"task_name": "tsv", "labels": labels, "regression": False}, f)


# ---------------------------------------------------------------------------
# task.json without a checkpoint (stale state).


def test_a_task_json_without_a_checkpoint_is_not_trusted(tmp_path):
  train = write_lines(tmp_path / "train.tsv",
                      ["text_a\tlabel", "a\tred", "b\tblue"])
  examples = classifier_data.read_examples(TSV, "train", train)
  output_dir = tmp_path / "out"
  # A run stopped before its first checkpoint after reading a typo label.
  write_task_json(output_dir, ["blue", "rde", "red"])
  labels, _ = classifier_data.choose_labels(TSV, str(output_dir), examples)
  assert labels == ["blue", "red"]
  # Beside a checkpoint, task.json is the model's: other labels are refused.
  save_checkpoint(output_dir, CLASSIFIER_NAMES)
  with pytest.raises(InputError, match="trained on the labels blue, rde, red"
                     ".*train.tsv has blue, red"):
    classifier_data.choose_labels(TSV, str(output_dir), examples)


# ---------------------------------------------------------------------------
# Columns, labels, encodings of tsv files.


@pytest.mark.parametrize("header, column", [
    ("text_a\tlabel\ttext_a", "text_a"), ("text_a\tlabel\tlabel", "label")])
def test_a_duplicate_header_column_is_an_error(tmp_path, header, column):
  path = write_lines(tmp_path / "train.tsv", [header, "x\tblue\tzzz"])
  with pytest.raises(InputError, match=r"train.tsv:1: the header names column "
                     r"%s 2 times \(columns \d, 3\)" % column):
    classifier_data.read_examples(TSV, "train", path)


def test_labels_are_stripped_and_never_empty(tmp_path):
  path = write_lines(tmp_path / "train.tsv",
                     ["text_a\tlabel", "a\tred", "b\tred ", "c\t blue"])
  examples = classifier_data.read_examples(TSV, "train", path)
  assert classifier_data.labels_in(examples) == ["blue", "red"]
  write_lines(path, ["text_a\tlabel", "a\tred", "b\t  "])
  with pytest.raises(InputError, match="train.tsv:3: the label is empty"):
    classifier_data.read_examples(TSV, "train", path)


def test_dev_with_text_b_that_train_lacks_is_an_error(tmp_path):
  train = classifier_data.read_examples(TSV, "train", write_lines(
      tmp_path / "train.tsv", ["text_a\tlabel", "a\tred"]))
  dev = classifier_data.read_examples(TSV, "dev", write_lines(
      tmp_path / "dev.tsv", ["text_a\ttext_b\tlabel", "a\tb\tred"]))
  with pytest.raises(InputError, match="dev.tsv has a text_b column but "
                     ".*train.tsv has none"):
    classifier_data.check_same_texts(dev, False,
                                     classifier_data.source_file(train))
  with pytest.raises(InputError, match="train.tsv has no text_b column but "
                     "dev.tsv has one"):
    classifier_data.check_same_texts(train, True, "dev.tsv")
  classifier_data.check_same_texts(dev, True, "task.json")


def test_byte_order_mark_and_line_endings(tmp_path):
  lines = ["text_a\tlabel", "a\tred", "", "b\tblue"]
  expected = [("a", "red", ":2"), ("b", "blue", ":4")]
  for newline in ("\n", "\r\n", "\r"):
    path = write_lines(tmp_path / "train.tsv", lines, newline,
                       prefix=b"\xef\xbb\xbf")
    examples = classifier_data.read_examples(TSV, "train", path)
    assert [(e.text_a, e.label, e.source[-2:]) for e in examples] == expected


def test_a_byte_that_is_not_utf8_names_file_and_line(tmp_path):
  path = str(tmp_path / "train.tsv")
  with open(path, "wb") as f:
    f.write(b"text_a\tlabel\nfine\tred\ncaf\xe9\tblue\n")
  with pytest.raises(InputError, match=r"train.tsv:3: byte 0xe9 \(column 4\) "
                     "is not UTF-8"):
    classifier_data.read_examples(TSV, "train", path)


# ---------------------------------------------------------------------------
# A teacher's labels.


def test_a_teacher_without_task_json_needs_its_labels(tmp_path):
  with pytest.raises(InputError, match="has no task.json beside it.*"
                     "--teacher_labels blue,red"):
    classifier_data.teacher_labels(TSV, None, None, "teacher/model.ckpt-5",
                                   ["blue", "red"])
  assert classifier_data.teacher_labels(
      TSV, None, ["red", "blue"], "t", ["blue", "red"]) == ["red", "blue"]
  saved = {"task_name": "tsv", "labels": ["blue", "red"]}
  with pytest.raises(InputError, match="--teacher_labels red,blue differ"):
    classifier_data.teacher_labels(TSV, saved, ["red", "blue"], "t", [])
  # A GLUE task's teacher has the task's fixed order.
  sst = classifier_data.get_task("sst-2")
  assert classifier_data.teacher_labels(sst, None, None, "t", []) == ["0", "1"]
  # The student's class i is the teacher's class order[i].
  assert classifier_data.label_order(["red", "blue"], ["blue", "red"],
                                     "t") == [1, 0]
  assert classifier_data.label_order(["blue", "red"], ["blue", "red"],
                                     "t") is None
  with pytest.raises(InputError, match="labels blue, green"):
    classifier_data.label_order(["blue", "green"], ["blue", "red"], "t")
  with pytest.raises(InputError, match="distinct, non-empty"):
    classifier_data.parse_label_list("red,,blue", "--teacher_labels")


# ---------------------------------------------------------------------------
# Inputs that train or measure nothing.


def test_inputs_that_train_or_measure_nothing(tmp_path):
  examples = classifier_data.read_examples(TSV, "train", write_lines(
      tmp_path / "train.tsv", ["text_a\tlabel", "a\tred", "b\tred"]))
  with pytest.raises(InputError, match="every labelled example has the label "
                     "'red'"):
    classifier_data.check_label_variety(examples)
  with pytest.raises(InputError, match="--soft_label_weight 0 and "
                     "--hard_label_weight 0 leave no loss to train on"):
    distillation.check_some_loss([("--soft_label_weight 0", False),
                                  ("--hard_label_weight 0", False)])
  distillation.check_some_loss([("--soft_label_weight 0", False),
                                ("--hard_label_weight 1", True)])
  stsb = classifier_data.get_task("sts-b")
  for score in ("inf", "nan", "-Infinity"):
    example = classifier_data.Example("a", "b", score, True, "dev.tsv:7")
    with pytest.raises(InputError, match="dev.tsv:7: label '%s' is not a "
                       "finite number" % score):
      classifier_data.check_labels([example], stsb, [], "a regression")


def test_evaluation_without_a_trained_classifier_is_an_error(tmp_path):
  pretrained = save_checkpoint(tmp_path / "stage5", PRETRAINING_NAMES)
  output_dir = str(tmp_path / "out")
  with pytest.raises(InputError, match="holds no classifier.*would be random"):
    classifier_data.check_trained_classifier(output_dir, pretrained)
  with pytest.raises(InputError, match="holds none: train first"):
    classifier_data.check_trained_classifier(output_dir, None)
  fine_tuned = save_checkpoint(tmp_path / "classifier", CLASSIFIER_NAMES)
  classifier_data.check_trained_classifier(output_dir, fine_tuned)
  save_checkpoint(output_dir, CLASSIFIER_NAMES)
  classifier_data.check_trained_classifier(output_dir, pretrained)


# ---------------------------------------------------------------------------
# GLUE headers.


@pytest.mark.parametrize("name, split, lines, labelled, expected", [
    # An SST-2 test file whose sentence is not in column 2.
    ("sst-2", "test", ["sentence\tindex", "a film\t0"], False,
     "sentence in column 2"),
    # Header and rows with too few columns.
    ("mrpc", "train", ["Quality\t#1 ID\t#1 String", "1\t2\ta"], True,
     "#1 String in column 4, #2 String in column 5, Quality in column 1"),
    ("mnli", "dev", ["sentence1\tgold_label", "a\tneutral"], True,
     "sentence1 in column 9, sentence2 in column 10, gold_label in the last "
     "column"),
    # A transfer file in MRPC's train layout: its label is not read.
    ("mrpc", "train", ["Quality\t#1 ID\t#1 String", "1\t2\ta"], False,
     "#1 String in column 4, #2 String in column 5, but"),
])
def test_glue_headers_must_name_the_columns_read(tmp_path, name, split, lines,
                                                 labelled, expected):
  task = classifier_data.get_task(name)
  path = write_lines(tmp_path / "file.tsv", lines)
  with pytest.raises(InputError, match="file.tsv:1: --task_name %s reads %s" % (
      name, expected)):
    classifier_data.read_examples(task, split, path, labelled=labelled)


def test_augmentation_is_bounded_before_anything_is_built():
  classifier_data.check_training_size(200, 2, 20, 128)
  with pytest.raises(InputError, match=r"--augment_factor 100000000 would "
                     r"make 20000000202 training examples.*use "
                     r"--augment_factor \d+ or less"):
    classifier_data.check_training_size(200, 2, 100000000, 128)


# ---------------------------------------------------------------------------
# A stage-V output folder as --output_dir.


def test_a_stage5_output_folder_is_not_an_output_dir(tmp_path):
  folder = tmp_path / "stage5"
  save_checkpoint(folder, PRETRAINING_NAMES)
  with pytest.raises(InputError, match="is a stage-V \\(pre-training\\) output "
                     "folder.*Pass it as --init_checkpoint"):
    classifier_data.check_classifier_output_dir(str(folder))
  classifier_data.check_classifier_output_dir(str(tmp_path / "new"))
  save_checkpoint(tmp_path / "classifier", CLASSIFIER_NAMES)
  classifier_data.check_classifier_output_dir(str(tmp_path / "classifier"))


# ---------------------------------------------------------------------------
# The script: what it writes.


@pytest.fixture(scope="module")
def colour_task(tmp_path_factory, tiny_vocab):
  """A tiny tsv task (data_dir, vocab, config)."""
  folder = tmp_path_factory.mktemp("task_data")
  config = str(folder / "bert_config.json")
  conftest.write_config(config, vocab_size=len(tiny_vocab[1]))
  data_dir = folder / "data"
  data_dir.mkdir()
  rows = ["text_a\tlabel"] + ["the %s river\t%s" % (colour, colour)
                              for colour in ("red", "blue") * 8]
  for split in ("train", "dev"):
    write_lines(data_dir / ("%s.tsv" % split), rows)
  return {"data_dir": str(data_dir), "vocab": tiny_vocab[0], "config": config}


def script_args(task, output_dir, *extra):
  return ["--task_name", "tsv", "--data_dir", task["data_dir"],
          "--vocab_file", task["vocab"], "--bert_config_file", task["config"],
          "--output_dir", output_dir, "--max_seq_length", "8",
          "--train_batch_size", "4", "--random_seed", "1"] + list(extra)


def test_script_task_json_pairs_and_refused_output_dir(
    colour_task, tmp_path):
  # A stage-V output folder: refused, and left as it was.
  stage5 = tmp_path / "stage5"
  save_checkpoint(stage5, PRETRAINING_NAMES)
  before = sorted(os.listdir(str(stage5)))
  result = conftest.run_script("run_classifier.py", *script_args(
      colour_task, str(stage5), "--do_train", "--num_train_steps", "1"),
                               check=False)
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert "is a stage-V (pre-training) output folder" in (
      result.stderr.strip().splitlines()[-1])
  assert sorted(os.listdir(str(stage5))) == before
  # A task.json left by a run that never reached a checkpoint.
  output_dir = tmp_path / "out"
  write_task_json(output_dir, ["blue", "rde", "red"])
  conftest.run_script("run_classifier.py", *script_args(
      colour_task, str(output_dir), "--do_train", "--num_train_steps", "1"))
  with open(str(output_dir / "task.json")) as f:
    assert json.load(f) == {"task_name": "tsv", "labels": ["blue", "red"],
                            "regression": False, "pairs": False}
  assert tf.train.list_variables(str(output_dir))
  # A dev.tsv with pairs, for a model trained on single sentences.
  data_dir = tmp_path / "pairs"
  shutil.copytree(colour_task["data_dir"], str(data_dir))
  write_lines(data_dir / "dev.tsv", ["text_a\ttext_b\tlabel", "red\triver\tred"])
  args = script_args(colour_task, str(output_dir), "--do_eval")
  args[args.index("--data_dir") + 1] = str(data_dir)
  result = conftest.run_script("run_classifier.py", *args, check=False)
  assert result.stderr.strip().splitlines()[-1] == (
      "ERROR: %s has a text_b column but %s has none: the model would read "
      "sentence pairs it was not trained on (or lose half of each pair). Give "
      "every file of the task a text_b column, or none." % (
          data_dir / "dev.tsv", output_dir / "task.json"))
