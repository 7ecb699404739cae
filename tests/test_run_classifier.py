"""Tests for run_classifier.py: tasks, metrics, losses, training, export.

A tiny task: each sentence holds one colour word (red or blue) among
filler words, and the colour is the label; a 2-layer x 32 model learns it in
a few dozen steps. The files are written here; nothing is fetched.
"""

import hashlib
import json
import os
import random
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file
import tensorflow as tf

import conftest
from bert_distillation import checkpoint_conversion
from bert_distillation import classifier_data
from bert_distillation import classifier_metrics
from bert_distillation import classifier_model
from bert_distillation import teacher_graph
import tokenization
from test_convert_checkpoint import numpy_hf_forward

tf1 = tf.compat.v1

InputError = classifier_data.InputError
SEQ = 16
FILLER = "the a of in river town is was born on near founded by people".split()
TRAIN_STEPS = 60


def colour_row(rng):
  """(sentence, label): a colour word among filler words."""
  label = rng.choice(["red", "blue"])
  words = [rng.choice(FILLER) for _ in range(6)]
  words.insert(rng.randint(0, 6), label)
  return " ".join(words), label


def write_tsv(path, header, rows):
  """Writes a header row and rows, tab-separated."""
  with open(path, "w", encoding="utf-8") as f:
    for row in ([header] if header else []) + rows:
      f.write("\t".join(row) + "\n")


@pytest.fixture(scope="module")
def task(tmp_path_factory, tiny_vocab):
  """A tsv colour task: data_dir, vocab, config, and the test labels."""
  folder = tmp_path_factory.mktemp("colour")
  vocab_file, tokens = tiny_vocab
  config = str(folder / "bert_config.json")
  conftest.write_config(config, vocab_size=len(tokens))
  data_dir = folder / "data"
  data_dir.mkdir()
  rng = random.Random(0)
  splits = {}
  for split, count in (("train", 200), ("dev", 40), ("test", 24)):
    splits[split] = [colour_row(rng) for _ in range(count)]
    write_tsv(str(data_dir / ("%s.tsv" % split)), ["text_a", "label"],
              [list(row) for row in splits[split]])
  return {"folder": folder, "data_dir": str(data_dir), "vocab": vocab_file,
          "config": config, "splits": splits}


def classifier_args(task, output_dir, *extra, config=None):
  """run_classifier.py's arguments for the colour task."""
  return ["--task_name", "tsv", "--data_dir", task["data_dir"],
          "--vocab_file", task["vocab"],
          "--bert_config_file", config or task["config"],
          "--output_dir", output_dir, "--max_seq_length", SEQ,
          "--learning_rate", "1e-3", "--random_seed", "1",
          "--save_checkpoints_steps", "1000"] + list(extra)


@pytest.fixture(scope="module")
def teacher(task):
  """A model fine-tuned on the colour task, evaluated and predicted."""
  output_dir = str(task["folder"] / "teacher")
  conftest.run_script("run_classifier.py", *classifier_args(
      task, output_dir, "--do_train", "--do_eval", "--do_predict",
      "--num_train_steps", TRAIN_STEPS))
  return output_dir


def read_results(output_dir):
  """eval_results.txt as {key: float}."""
  results = {}
  with open(os.path.join(output_dir, "eval_results.txt")) as f:
    for line in f:
      key, value = line.split(" = ")
      results[key] = float(value)
  return results


# ---------------------------------------------------------------------------
# Task formats.

# GLUE's headers as distributed (None: a headerless file, CoLA's train/dev:
# source, label, original label, sentence). The test writes a distinct
# value in every column, so only the right columns give the right texts.
GLUE_FILES = {
    "sst-2": (["sentence", "label"], ["sentence", "label"],
              ["index", "sentence"]),
    "cola": (None, None, ["index", "sentence"]),
    "mrpc": (["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],) * 2 +
            (["index", "#1 ID", "#2 ID", "#1 String", "#2 String"],),
    "mnli": (["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
              "sentence2_binary_parse", "sentence1_parse", "sentence2_parse",
              "sentence1", "sentence2", "label1", "gold_label"],
             ["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
              "sentence2_binary_parse", "sentence1_parse", "sentence2_parse",
              "sentence1", "sentence2", "label1", "label2", "label3",
              "label4", "label5", "gold_label"],
             ["index", "promptID", "pairID", "genre", "sentence1_binary_parse",
              "sentence2_binary_parse", "sentence1_parse", "sentence2_parse",
              "sentence1", "sentence2"]),
    "qnli": (["index", "question", "sentence", "label"],) * 2 +
            (["index", "question", "sentence"],),
    "rte": (["index", "sentence1", "sentence2", "label"],) * 2 +
           (["index", "sentence1", "sentence2"],),
    "qqp": (["id", "qid1", "qid2", "question1", "question2",
             "is_duplicate"],) * 2 + (["id", "question1", "question2"],),
    "sts-b": (["index", "genre", "filename", "year", "old_index", "source1",
               "source2", "sentence1", "sentence2", "score"],) * 2 +
             (["index", "genre", "filename", "year", "old_index", "source1",
               "source2", "sentence1", "sentence2"],),
}
TEXT_A = {"sentence", "#1 String", "sentence1", "question", "question1"}
TEXT_B = {"#2 String", "sentence2", "sentence", "question2"}
LABEL = {"label", "Quality", "gold_label", "is_duplicate", "score"}
GLUE_LABELS = {"mnli": ["contradiction", "entailment", "neutral"],
               "qnli": ["entailment", "not_entailment"],
               "rte": ["entailment", "not_entailment"], "sts-b": ["0.5", "4"]}
COLA_COLUMNS = ["source", "label", "original", "sentence"]


def glue_row(header, index, label, pair):
  """A row whose text columns say A<i> (and B<i>), the rest decoys."""
  row = []
  for name in header:
    if name in TEXT_A and not (pair and name == "sentence" and
                               "question" in header):
      row.append("A%d" % index)
    elif pair and name in TEXT_B:
      row.append("B%d" % index)
    elif name in LABEL:
      row.append(label)
    else:
      row.append("decoy %s %d" % (name, index))
  return row


@pytest.mark.parametrize("name", sorted(GLUE_FILES))
def test_glue_formats_read_the_right_columns(tmp_path, name):
  task = classifier_data.get_task(name)
  pair = task.layouts["train"].text_b is not None
  labels = GLUE_LABELS.get(name, ["0", "1"])
  for split, header in zip(("train", "dev", "test"), GLUE_FILES[name]):
    path = classifier_data.split_path(task, str(tmp_path), split)
    rows = [glue_row(header or COLA_COLUMNS, i, labels[i % len(labels)],
                     pair) for i in range(6)]
    write_tsv(path, header, rows)
    examples = classifier_data.read_examples(task, split, path,
                                             labelled=split != "test")
    assert [e.text_a for e in examples] == ["A%d" % i for i in range(6)]
    assert [e.text_b for e in examples] == (
        ["B%d" % i for i in range(6)] if pair else [None] * 6)
    expected = ([labels[i % len(labels)] for i in range(6)]
                if split != "test" else [None] * 6)
    assert [e.label for e in examples] == expected
    if split != "test":
      classifier_data.check_labels(examples, task, task.labels or labels,
                                   "test")


def test_tsv_format_reads_columns_by_header_name(tmp_path):
  task = classifier_data.get_task("TSV")
  path = str(tmp_path / "train.tsv")
  write_tsv(path, ["id", "label", "text_b", "text_a"],
            [["1", "yes", "second", "first"], ["2", "no", "b2", "a2"]])
  examples = classifier_data.read_examples(task, "train", path)
  assert [(e.text_a, e.text_b, e.label) for e in examples] == [
      ("first", "second", "yes"), ("a2", "b2", "no")]
  assert classifier_data.labels_in(examples) == ["no", "yes"]
  write_tsv(path, ["text_a"], [["only text"]])  # A transfer file.
  assert classifier_data.read_examples(
      task, "train", path, labelled=False)[0].label is None


@pytest.mark.parametrize("header, rows, split, message", [
    (["text_a", "label"], [["fine", "x"], ["one field"]], "train",
     "train.tsv:3: 1 tab-separated fields, expected 2"),
    (["text_a", "label"], [["fine", "x"], ["odd", "zebra"]], "dev",
     "dev.tsv:3: label 'zebra' is not one of x, y"),
    (["text_a", "label"], [], "train", "train.tsv holds no examples"),
    (["sentence", "label"], [["a", "b"]], "train",
     "train.tsv:1: the header names no text_a column"),
])
def test_bad_rows_name_file_and_line(tmp_path, header, rows, split, message):
  task = classifier_data.get_task("tsv")
  path = str(tmp_path / ("%s.tsv" % split))
  write_tsv(path, header, rows)
  with pytest.raises(InputError, match=message.replace("(", r"\(")):
    examples = classifier_data.read_examples(task, split, path)
    classifier_data.check_labels(examples, task, ["x", "y"], "train labels")


def test_script_reports_a_bad_row_in_one_line(task, tmp_path):
  data_dir = tmp_path / "data"
  shutil.copytree(task["data_dir"], str(data_dir))
  with open(str(data_dir / "dev.tsv"), "a") as f:
    f.write("a row\twith\tthree fields\n")
  args = classifier_args(task, str(tmp_path / "out"), "--do_eval",
                         "--init_checkpoint", str(tmp_path / "none"))
  args[args.index("--data_dir") + 1] = str(data_dir)
  # A missing --init_checkpoint is reported first; then the bad row, before
  # any training.
  result = conftest.run_script("run_classifier.py", *args, check=False)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith(
      "ERROR: --init_checkpoint")
  args[args.index("--init_checkpoint"):] = ["--do_train",
                                            "--num_train_steps", "1"]
  result = conftest.run_script("run_classifier.py", *args, check=False)
  last = result.stderr.strip().splitlines()[-1]
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert last == ("ERROR: %s:42: 3 tab-separated fields, expected 2 (the "
                  "header's of --task_name tsv)" % (data_dir / "dev.tsv"))


# ---------------------------------------------------------------------------
# Metrics and losses.


def test_metrics_match_their_formulas():
  labels = np.array([1, 1, 1, 0, 0, 0, 1, 0])
  predictions = np.array([1, 1, 0, 0, 1, 0, 1, 0])
  tp, fp, fn, tn = 3, 1, 1, 3
  assert classifier_metrics.accuracy(predictions, labels) == 6 / 8
  assert classifier_metrics.f1(predictions, labels) == pytest.approx(
      2 * (tp / (tp + fp)) * (tp / (tp + fn)) /
      (tp / (tp + fp) + tp / (tp + fn)))
  assert classifier_metrics.matthews(predictions, labels) == pytest.approx(
      (tp * tn - fp * fn) / np.sqrt(4.0 * 4 * 4 * 4))
  assert classifier_metrics.matthews(np.ones(4), [1, 0, 1, 0]) == 0.0
  x = np.array([0.1, 2.0, 2.0, 3.5, -1.0])
  y = np.array([1.0, 3.0, 1.5, 4.0, 0.0])
  assert classifier_metrics.pearson(x, y) == pytest.approx(
      np.corrcoef(x, y)[0, 1])
  # Ranks with the tie averaged: x -> 2, 3.5, 3.5, 5, 1; y -> 2, 4, 3, 5, 1.
  np.testing.assert_allclose(classifier_metrics.ranks(x),
                             [2, 3.5, 3.5, 5, 1])
  d = np.array([2, 3.5, 3.5, 5, 1]) - np.array([2, 4, 3, 5, 1])
  # With one tie, 1 - 6 sum d^2 / (n (n^2 - 1)) is close but not exact;
  # Pearson of the ranks is the definition.
  assert classifier_metrics.spearman(x, y) == pytest.approx(
      np.corrcoef([2, 3.5, 3.5, 5, 1], [2, 4, 3, 5, 1])[0, 1])
  assert abs(classifier_metrics.spearman(x, y) -
             (1 - 6 * np.sum(d ** 2) / (5 * 24))) < 0.01
  logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
  results = classifier_metrics.classification_metrics(logits, [0, 0, 1],
                                                      ("f1", "mcc"))
  log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  assert results["eval_loss"] == pytest.approx(
      -np.mean([log_p[0, 0], log_p[1, 0], log_p[2, 1]]))
  assert results["eval_accuracy"] == pytest.approx(1 / 3)
  assert set(results) == {"eval_accuracy", "eval_loss", "eval_f1", "eval_mcc"}


def numpy_softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_soft_loss_and_gradient_match_numpy(temperature):
  rng = np.random.RandomState(3)
  student = rng.randn(5, 3)
  teacher = rng.randn(5, 3) * 2
  label_ids = np.array([0, 2, 1, 1, 0])
  weights = np.array([1.0, 0.0, 1.0, 0.0, 1.0])  # Two teacher-only rows.
  soft_weight, hard_weight = 0.7, 0.3
  with tf.Graph().as_default():
    logits = tf.constant(student)
    total, _ = classifier_model.classifier_loss(
        tf.cast(logits, tf.float32),
        {"label_ids": tf.constant(label_ids),
         "label_weights": tf.constant(weights, tf.float32)},
        False, tf.constant(teacher, tf.float32), temperature, soft_weight,
        hard_weight)
    gradient = tf.gradients(total, logits)[0]
    with tf1.Session() as session:
      value, grad = session.run([total, gradient])
  t = temperature
  target = numpy_softmax(teacher / t)
  log_student_t = np.log(numpy_softmax(student / t))
  soft = -np.mean(np.sum(target * log_student_t, -1))
  log_student = np.log(numpy_softmax(student))
  hard = -np.sum(weights * log_student[np.arange(5), label_ids]) / weights.sum()
  assert value == pytest.approx(soft_weight * t * t * soft + hard_weight * hard,
                                rel=1e-5)
  one_hot = np.eye(3)[label_ids]
  expected = (soft_weight * t * (numpy_softmax(student / t) - target) / 5 +
              hard_weight * weights[:, None] *
              (numpy_softmax(student) - one_hot) / weights.sum())
  np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)


def test_regression_losses_are_squared_errors():
  with tf.Graph().as_default():
    total, parts = classifier_model.classifier_loss(
        tf.constant([[1.0], [3.0]]),
        {"label_ids": tf.constant([2.0, 0.0]),
         "label_weights": tf.constant([1.0, 0.0])},
        True, tf.constant([[0.0], [1.0]]), 3.0, 1.0, 2.0)
    with tf1.Session() as session:
      total, soft, hard = session.run([total, parts["soft_loss"],
                                       parts["hard_loss"]])
  assert soft == pytest.approx((1 + 4) / 2)   # No T^2 for a regression.
  assert hard == pytest.approx(1.0)           # Only the labelled row.
  assert total == pytest.approx(2.5 + 2 * 1.0)


def test_augmentation_is_seeded_and_follows_tang_et_al(tiny_vocab):
  words = ["w%d" % i for i in range(12)]
  examples = [classifier_data.Example(" ".join(words), None, "x", True,
                                      "f:%d" % i) for i in range(300)]
  copies = classifier_data.augment_examples(examples, 2, seed=7)
  assert copies == classifier_data.augment_examples(examples, 2, seed=7)
  assert copies != classifier_data.augment_examples(examples, 2, seed=8)
  assert len(copies) == 600 and not any(c.has_label for c in copies)
  masked = kept = short = 0
  for copy in copies:
    tokens = copy.text_a.split()
    masked += tokens.count(classifier_data.MASK_TOKEN)
    if len(tokens) < len(words):
      short += 1
      assert len(tokens) <= classifier_data.MAX_NGRAM
      first = next((i for i, w in enumerate(tokens) if w != "[MASK]"), None)
      if first is not None:  # A contiguous n-gram of the sentence.
        start = words.index(tokens[first]) - first
        assert all(w in ("[MASK]", words[start + i])
                   for i, w in enumerate(tokens))
    else:
      kept += len(tokens)
  assert 0.2 < short / 600 < 0.3
  assert 0.07 < masked / (kept + masked) < 0.13 or kept == 0
  tokenizer = tokenization.FullTokenizer(tiny_vocab[0], True)
  assert classifier_data.tokenize_text(tokenizer, "the [MASK] river") == [
      "the", "[MASK]", "river"]


# ---------------------------------------------------------------------------
# Training, prediction, resuming.


def test_fine_tuning_learns_the_task_and_predicts_in_order(task, teacher):
  results = read_results(teacher)
  assert results["eval_accuracy"] >= 0.9
  assert results["global_step"] == TRAIN_STEPS
  assert results["loss"] == results["eval_loss"]
  with open(os.path.join(teacher, "task.json")) as f:
    assert json.load(f) == {"task_name": "tsv", "labels": ["blue", "red"],
                            "regression": False, "pairs": False}
  probabilities = np.loadtxt(os.path.join(teacher, "test_results.tsv"))
  expected = [["blue", "red"].index(label)
              for _, label in task["splits"]["test"]]
  assert probabilities.shape == (24, 2)
  np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)
  assert (probabilities.argmax(1) == expected).mean() >= 0.9


def test_resume_continues_from_the_checkpoint(task, teacher, tmp_path):
  output_dir = str(tmp_path / "resumed")
  shutil.copytree(teacher, output_dir)
  result = conftest.run_script("run_classifier.py", *classifier_args(
      task, output_dir, "--do_train", "--num_train_steps", TRAIN_STEPS + 10))
  assert "model.ckpt-%d" % TRAIN_STEPS in result.stderr  # Restored from it.
  assert tf.train.latest_checkpoint(output_dir).endswith(
      "model.ckpt-%d" % (TRAIN_STEPS + 10))


def strip_pooler(teacher, path):
  """Saves the teacher's encoder without pooler or classifier at path."""
  reader = tf.train.load_checkpoint(teacher)
  names = sorted(name for name in reader.get_variable_to_shape_map()
                 if name.startswith("bert/") and "adam" not in name
                 and not name.startswith("bert/pooler/"))
  tf.raw_ops.SaveV2(prefix=path, tensor_names=names,
                    shape_and_slices=[""] * len(names),
                    tensors=[reader.get_tensor(name) for name in names])


def test_task_distillation_with_transfer_and_augmentation(task, teacher,
                                                          tmp_path):
  student_config = str(tmp_path / "student.json")
  conftest.write_config(student_config, vocab_size=len(
      open(task["vocab"]).read().split()), num_hidden_layers=1)
  encoder = str(tmp_path / "encoder" / "bert_model.ckpt")
  strip_pooler(teacher, encoder)
  transfer = str(tmp_path / "transfer.tsv")
  write_tsv(transfer, ["text_a"], [["red river"], ["blue town"]])
  teacher_files = {name: hashlib.sha256(open(os.path.join(teacher, name),
                                             "rb").read()).hexdigest()
                   for name in os.listdir(teacher)}
  output_dir = str(tmp_path / "student")
  result = conftest.run_script("run_classifier.py", *classifier_args(
      task, output_dir, "--do_train", "--do_eval", "--num_train_steps", "40",
      "--init_checkpoint", os.path.dirname(encoder), "--init_layer_map", "1",
      "--teacher_config_file", task["config"], "--teacher_checkpoint",
      teacher, "--temperature", "2", "--hard_label_weight", "0.5",
      "--transfer_file", transfer, "--augment_factor", "1",
      config=student_config))
  assert "has no pooler" in result.stderr
  assert "200 from" in result.stderr and "202 unlabelled" in result.stderr
  assert "init bert/encoder/layer_0/output/dense/kernel <- " \
         "bert/encoder/layer_1/output/dense/kernel" in result.stderr
  assert read_results(output_dir)["eval_accuracy"] >= 0.75
  names = [name for name, _ in tf.train.list_variables(output_dir)]
  assert "output_weights" in names
  assert not [name for name in names if name.startswith("teacher")]
  assert teacher_files == {
      name: hashlib.sha256(open(os.path.join(teacher, name),
                                "rb").read()).hexdigest()
      for name in os.listdir(teacher)}


def reordered_teacher(teacher, folder):
  """The teacher with its two classes swapped (red is class 0), no task.json."""
  reader = tf.train.load_checkpoint(teacher)
  names = sorted(reader.get_variable_to_shape_map())
  tensors = []
  for name in names:
    value = reader.get_tensor(name)
    if name.split("/")[0] in ("output_weights", "output_bias"):
      value = value[::-1]
    tensors.append(value)
  os.makedirs(folder)
  prefix = os.path.join(folder, "model.ckpt-%d" % TRAIN_STEPS)
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names,
                    shape_and_slices=[""] * len(names), tensors=tensors)
  with open(os.path.join(folder, "checkpoint"), "w") as f:
    f.write('model_checkpoint_path: "%s"\n' % os.path.basename(prefix))
  shutil.copy(os.path.join(teacher, "bert_config.json"), folder)
  return folder


def test_a_teacher_of_another_label_order_is_mapped(task, teacher, tmp_path):
  # The teacher's classes are red, blue; the student's (sorted) blue, red.
  reordered = reordered_teacher(teacher, str(tmp_path / "teacher"))
  encoder = str(tmp_path / "encoder" / "bert_model.ckpt")
  strip_pooler(teacher, encoder)
  output_dir = str(tmp_path / "student")
  conftest.run_script("run_classifier.py", *classifier_args(
      task, output_dir, "--do_train", "--do_eval", "--num_train_steps", "40",
      "--init_checkpoint", os.path.dirname(encoder),
      "--teacher_config_file", task["config"], "--teacher_checkpoint",
      reordered, "--teacher_labels", "red,blue"))
  # Soft labels only: an unmapped teacher would teach the inverse.
  assert read_results(output_dir)["eval_accuracy"] >= 0.75


def test_teacher_variables_stay_frozen_while_the_student_trains(task,
                                                                 teacher):
  config = teacher_graph.load_teacher_config(task["config"])
  input_ids = np.random.RandomState(0).randint(5, 40, (4, SEQ))
  with tf.Graph().as_default():
    features = {"input_ids": tf.constant(input_ids),
                "input_mask": tf.ones((4, SEQ), tf.int32),
                "segment_ids": tf.zeros((4, SEQ), tf.int32),
                "label_ids": tf.constant([0, 1, 0, 1]),
                "label_weights": tf.ones([4])}
    teacher_output = classifier_model.teacher_logits(config, features, 2,
                                                   tf.float32)
    teacher_graph.restore_teacher(teacher)
    weights = tf1.get_variable("student_weights", [SEQ, 2])
    student = tf.matmul(tf.cast(features["input_ids"], tf.float32), weights)
    total, _ = classifier_model.classifier_loss(student, features, False,
                                              teacher_output, 2.0, 1.0, 0.5)
    step = tf1.train.GradientDescentOptimizer(1.0).minimize(total)
    frozen = teacher_graph.teacher_variables()
    assert not set(frozen) & set(tf1.trainable_variables())
    assert not set(frozen) & set(tf1.global_variables())
    with tf1.Session() as session:
      session.run([tf1.global_variables_initializer(),
                   tf1.local_variables_initializer()])
      for _ in range(3):
        session.run(step)
      values = session.run(frozen)
  reader = tf.train.load_checkpoint(teacher)
  for var, value in zip(frozen, values):
    np.testing.assert_array_equal(
        value, reader.get_tensor(var.op.name[len("teacher/"):]))


def test_horovod_two_processes(task, tmp_path):
  output_dir = str(tmp_path / "horovod")
  command = conftest.horovodrun_command(2, [
      os.path.join(conftest.REPO, "run_classifier_distributed.py")] +
      classifier_args(task, output_dir, "--do_train", "--do_eval",
                      "--num_train_steps", "20", "--train_batch_size", "16"))
  import subprocess  # pylint: disable=g-import-not-at-top
  result = subprocess.run(command, cwd=conftest.REPO, env=conftest.CHILD_ENV,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-4000:]
  output = result.stdout + result.stderr
  # 20 steps over 2 ranks; one checksum per rank, and they agree.
  assert read_results(output_dir)["global_step"] == 10
  checksums = sorted(set(line.split("checksum:")[1].strip()
                         for line in output.splitlines()
                         if "variables checksum" in line))
  assert len(checksums) == 1, checksums


# ---------------------------------------------------------------------------
# Export to Hugging Face.


def test_export_is_a_sequence_classifier_that_reproduces_predictions(
    task, teacher, tmp_path):
  hf_dir = str(tmp_path / "hf")
  checkpoint_conversion.convert("google", "huggingface", teacher, hf_dir,
                                task["config"], task["vocab"])
  tensors = load_file(os.path.join(hf_dir, "model.safetensors"))
  with open(os.path.join(hf_dir, "config.json")) as f:
    hf_config = json.load(f)
  assert hf_config["architectures"] == ["BertForSequenceClassification"]
  assert hf_config["num_labels"] == 2
  assert hf_config["id2label"] == {"0": "blue", "1": "red"}
  assert hf_config["label2id"] == {"blue": 0, "red": 1}
  assert hf_config["problem_type"] == "single_label_classification"
  assert tensors["classifier.weight"].shape == (2, 32)
  assert tensors["classifier.bias"].shape == (2,)
  assert not [name for name in tensors if name.startswith("cls.")]
  assert "bert.pooler.dense.weight" in tensors
  tokenizer = tokenization.FullTokenizer(task["vocab"], True)
  test_examples = classifier_data.read_examples(
      classifier_data.get_task("tsv"), "test",
      os.path.join(task["data_dir"], "test.tsv"), labelled=False)
  arrays = classifier_data.features(test_examples, tokenizer, SEQ,
                                    ["blue", "red"], False)
  expected = np.loadtxt(os.path.join(teacher, "test_results.tsv"))
  for row in range(len(test_examples)):
    hidden, _, _ = numpy_hf_forward(tensors, hf_config, {
        "input_ids": arrays["input_ids"][row],
        "segment_ids": arrays["segment_ids"][row],
        "input_mask": arrays["input_mask"][row]})
    pooled = np.tanh(hidden[0] @ tensors["bert.pooler.dense.weight"].T +
                     tensors["bert.pooler.dense.bias"])
    logits = (pooled @ tensors["classifier.weight"].T +
              tensors["classifier.bias"])
    np.testing.assert_allclose(numpy_softmax(logits), expected[row],
                               atol=2e-5)
