"""Tests for the serving exports: SavedModel on raw text, TFLite fp32/int8.

One tiny classifier (the colour task of test_run_classifier.py, 5 steps)
is trained and predicted by run_classifier.py once; each export is
compared with its test_results.tsv, the in-graph tokenizer with
tokenization.FullTokenizer, and the SavedModel is loaded by a Python that
cannot import this repository.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import conftest
from bert_distillation import classifier_data
from bert_distillation import command_line
from bert_distillation import serving_export
import modeling
import tokenization
# The colour task of test_run_classifier.py (a module-scoped fixture).
from test_run_classifier import task  # pylint: disable=unused-import

tf1 = tf.compat.v1

SEQ = 16
LABELS = ["blue", "red"]
# Strings FullTokenizer treats specially: accents, CJK, punctuation, words
# not in the vocab, a word over 200 characters, a non-ASCII word over 100
# bytes, controls, odd whitespace, case folding, empty text.
HARD_STRINGS = [
    "Héllo, Wörld!", "naïve café ÀÉÎÕÜ", "日本語のテキスト 中文 㐀", "한국어",
    "don't stop -- (really)?! $5.00", "zzqx unknownword", "x" * 250,
    "é" * 150, "", "   ", "ß ﬁ Ａ İstanbul ΣΑΣ", "tab\there\u00a0nbsp\u2028line",
    "ctrl\x00\x07\u200bchars\ufffd", "the river " * 12, "émoji 😀 ok",
    "[CLS] [SEP]", "RED red Red",
]


def full_tokenizer_ids(tokenizer, text_a, text_b, max_seq_length):
  """(input_ids, segment_ids) of run_classifier.py's features."""
  example = classifier_data.Example(text_a, text_b, None, False, "test")
  return classifier_data.example_ids(example, tokenizer, max_seq_length)


def padded(rows):
  """int32 [n, longest] of lists of ids, zero-padded, and the mask."""
  width = max(len(row) for row in rows)
  ids = np.zeros([len(rows), width], np.int32)
  mask = np.zeros([len(rows), width], np.int32)
  for index, row in enumerate(rows):
    ids[index, :len(row)] = row
    mask[index, :len(row)] = 1
  return ids, mask


@pytest.fixture(scope="module")
def trained(task):  # pylint: disable=redefined-outer-name
  """The colour task's model after a few steps, its test predictions."""
  output_dir = str(task["folder"] / "serving_classifier")
  conftest.run_script(
      "run_classifier.py", "--task_name", "tsv", "--data_dir",
      task["data_dir"], "--vocab_file", task["vocab"], "--bert_config_file",
      task["config"], "--output_dir", output_dir, "--max_seq_length", SEQ,
      "--do_train", "--do_predict", "--num_train_steps", 5,
      "--train_batch_size", 8, "--learning_rate", "1e-3", "--random_seed", 1)
  return {"folder": task["folder"], "vocab": task["vocab"],
          "config": task["config"], "output_dir": output_dir,
          "test_texts": [text for text, _ in task["splits"]["test"]],
          "expected": np.loadtxt(os.path.join(output_dir,
                                              "test_results.tsv"))}


@pytest.fixture(scope="module")
def saved_model(trained):
  """The classifier exported as a SavedModel (taking text_a and text_b)."""
  output_dir = str(trained["folder"] / "saved_model")
  serving_export.export("saved_model", trained["output_dir"], output_dir,
                        vocab_file=trained["vocab"], max_seq_length=SEQ)
  return output_dir


def test_saved_model_reproduces_run_classifier_predictions(trained,
                                                           saved_model):
  with open(os.path.join(saved_model, serving_export.SERVING_FILE)) as f:
    description = json.load(f)
  assert description["inputs"] == ["text_a"]
  assert description["labels"] == LABELS
  assert sorted(os.listdir(saved_model)) == ["1", "serving.json", "vocab.txt"]
  model = tf.saved_model.load(os.path.join(saved_model, "1"))
  outputs = model.signatures["serving_default"](
      text_a=tf.constant(trained["test_texts"]))
  probabilities = outputs["probabilities"].numpy()
  np.testing.assert_allclose(probabilities, trained["expected"], atol=1e-5)
  np.testing.assert_allclose(tf.nn.softmax(outputs["logits"]).numpy(),
                             probabilities, atol=1e-6)
  assert [label.decode() for label in outputs["label"].numpy()] == [
      LABELS[index] for index in trained["expected"].argmax(axis=1)]

  # The ids signature, fed FullTokenizer's ids for the hard strings, gives
  # what the raw-text signature gives for the strings themselves.
  tokenizer = tokenization.FullTokenizer(trained["vocab"], True)
  rows = [full_tokenizer_ids(tokenizer, text, None, SEQ)[0]
          for text in HARD_STRINGS]
  ids, mask = padded(rows)
  by_ids = model.signatures[serving_export.IDS_SIGNATURE](
      input_ids=ids, input_mask=mask, segment_ids=np.zeros_like(ids))
  by_text = model.signatures["serving_default"](
      text_a=tf.constant(HARD_STRINGS))
  np.testing.assert_allclose(by_text["probabilities"].numpy(),
                             by_ids["probabilities"].numpy(), atol=1e-6)


@pytest.mark.parametrize("do_lower_case", [True, False])
def test_graph_tokenizer_gives_full_tokenizer_ids(trained, do_lower_case):
  tokenizer = tokenization.FullTokenizer(trained["vocab"], do_lower_case)
  graph_tokenizer = serving_export.TextTokenizer(trained["vocab"],
                                                 do_lower_case, SEQ)
  pairs = list(zip(HARD_STRINGS, reversed(HARD_STRINGS)))
  for text_b in (None, [b for _, b in pairs]):
    got = graph_tokenizer(tf.constant(HARD_STRINGS),
                          None if text_b is None else tf.constant(text_b))
    expected = [full_tokenizer_ids(tokenizer, text, None if text_b is None
                                   else text_b[index], SEQ)
                for index, text in enumerate(HARD_STRINGS)]
    # Padded to the longest input of the request, not to max_seq_length.
    assert got["input_ids"].shape[1] == max(len(ids) for ids, _ in expected)
    for index, (ids, segments) in enumerate(expected):
      length = int(got["input_mask"][index].numpy().sum())
      assert list(got["input_ids"][index].numpy()[:length]) == ids, (
          HARD_STRINGS[index])
      assert list(got["segment_ids"][index].numpy()[:length]) == segments
      assert not got["input_ids"][index].numpy()[length:].any()


def test_truncated_lengths_follow_truncate_pair():
  cases = [(a, b, limit) for a in range(0, 9) for b in range(0, 9)
           for limit in (3, 4, 7)]
  got_a, got_b = serving_export.truncated_lengths(
      tf.constant([a for a, _, _ in cases], tf.int64),
      tf.constant([b for _, b, _ in cases], tf.int64), 7)
  for index, (a, b, _) in enumerate(cases):
    tokens_a, tokens_b = list(range(a)), list(range(b))
    classifier_data.truncate_pair(tokens_a, tokens_b, 7)
    assert (int(got_a[index]), int(got_b[index])) == (len(tokens_a),
                                                      len(tokens_b))


def test_where_the_graph_tokenizer_differs(trained):
  # run_classifier.py keeps a word that is exactly [MASK] whole (its
  # augmentation writes it); FullTokenizer and the export split it.
  tokenizer = tokenization.FullTokenizer(trained["vocab"], True)
  graph_tokenizer = serving_export.TextTokenizer(trained["vocab"], True, SEQ)
  got = graph_tokenizer(tf.constant(["the [MASK] town"]))["input_ids"][0]
  ids = ([tokenizer.vocab["[CLS]"]] + tokenizer.convert_tokens_to_ids(
      tokenizer.tokenize("the [MASK] town")) + [tokenizer.vocab["[SEP]"]])
  assert list(got.numpy()) == ids
  assert ids != full_tokenizer_ids(tokenizer, "the [MASK] town", None, SEQ)[0]
  # Bytes that are not UTF-8: FullTokenizer drops them, the graph makes
  # their word [UNK].
  got = graph_tokenizer(tf.constant([b"the \xff river"]))["input_ids"][0]
  assert tokenizer.tokenize(b"the \xff river") == ["the", "river"]
  assert list(got.numpy()) == [tokenizer.vocab[token] for token in (
      "[CLS]", "the", "[UNK]", "river", "[SEP]")]


def _export_and_load(trained, output_dir, **options):
  """A SavedModel of the trained classifier, exported and loaded back."""
  serving_export.export("saved_model", trained["output_dir"], output_dir,
                        vocab_file=trained["vocab"], max_seq_length=SEQ,
                        **options)
  return tf.saved_model.load(os.path.join(output_dir, "1"))


def test_saved_model_pair_signature(trained, tmp_path):
  model = _export_and_load(trained, str(tmp_path / "pair"), text_b=True)
  signature = model.signatures["serving_default"]
  assert sorted(signature.structured_input_signature[1]) == ["text_a",
                                                             "text_b"]
  texts_b = list(reversed(trained["test_texts"]))
  by_text = signature(text_a=tf.constant(trained["test_texts"]),
                      text_b=tf.constant(texts_b))
  tokenizer = tokenization.FullTokenizer(trained["vocab"], True)
  rows = [full_tokenizer_ids(tokenizer, a, b, SEQ)
          for a, b in zip(trained["test_texts"], texts_b)]
  ids, mask = padded([row for row, _ in rows])
  segments, _ = padded([row for _, row in rows])
  by_ids = model.signatures[serving_export.IDS_SIGNATURE](
      input_ids=ids, input_mask=mask, segment_ids=segments)
  np.testing.assert_allclose(by_text["probabilities"].numpy(),
                             by_ids["probabilities"].numpy(), atol=1e-6)


LOAD_SCRIPT = """
import json, os, sys
import tensorflow as tf
import tensorflow_text  # registers the tokenizer's ops
assert "{repo}" not in [os.path.realpath(path or ".") for path in sys.path]
for name in ("modeling", "tokenization", "bert_distillation"):
  try:
    __import__(name)
  except ImportError:
    pass
  else:
    sys.exit("imported " + name)
model = tf.saved_model.load(sys.argv[1])
outputs = model.signatures["serving_default"](
    text_a=tf.constant(json.loads(sys.argv[2])))
print(json.dumps(outputs["probabilities"].numpy().tolist()))
"""


def test_saved_model_loads_without_the_repository(trained, saved_model,
                                                  tmp_path):
  env = {key: value for key, value in conftest.CHILD_ENV.items()
         if key != "PYTHONPATH"}
  texts = trained["test_texts"][:4] + HARD_STRINGS[:4]
  result = subprocess.run(
      [sys.executable, "-I", "-c", LOAD_SCRIPT.format(repo=conftest.REPO),
       os.path.join(saved_model, "1"), json.dumps(texts)],
      cwd=str(tmp_path), env=env, capture_output=True, text=True,
      timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  probabilities = np.array(json.loads(result.stdout.strip().splitlines()[-1]))
  np.testing.assert_allclose(probabilities[:4], trained["expected"][:4],
                             atol=1e-5)
  model = tf.saved_model.load(os.path.join(saved_model, "1"))
  np.testing.assert_allclose(probabilities, model.signatures[
      "serving_default"](text_a=tf.constant(texts))["probabilities"].numpy(),
                             atol=1e-6)


def tflite_probabilities(path, vocab_file, texts):
  """The TFLite model's probabilities for each text, one at a time."""
  interpreter = tf.lite.Interpreter(model_path=path)
  assert interpreter.get_signature_list() == {"serving_default": {
      "inputs": ["input_ids", "input_mask", "segment_ids"],
      "outputs": ["probabilities"]}}
  runner = interpreter.get_signature_runner()
  tokenizer = tokenization.FullTokenizer(vocab_file, True)
  rows = []
  for text in texts:
    ids, segments = full_tokenizer_ids(tokenizer, text, None, SEQ)
    ids = np.array([ids], np.int32)
    rows.append(runner(input_ids=ids, input_mask=np.ones_like(ids),
                       segment_ids=np.array([segments], np.int32))[
                           "probabilities"][0])
  return np.array(rows)


@pytest.mark.parametrize("quantize,tolerance", [("none", 1e-5),
                                                ("int8", 0.05)])
def test_tflite_reproduces_run_classifier_predictions(trained, tmp_path,
                                                      quantize, tolerance):
  output_dir = str(tmp_path / "tflite")
  serving_export.export("tflite", trained["output_dir"], output_dir,
                        vocab_file=trained["vocab"], max_seq_length=SEQ,
                        quantize=quantize)
  probabilities = tflite_probabilities(
      os.path.join(output_dir, serving_export.TFLITE_FILE), trained["vocab"],
      trained["test_texts"])
  np.testing.assert_allclose(probabilities, trained["expected"],
                             atol=tolerance)
  with open(os.path.join(output_dir, serving_export.SERVING_FILE)) as f:
    assert json.load(f)["quantize"] == quantize


def test_feature_extractor_matches_the_encoder_graph(trained, tmp_path):
  model = _export_and_load(trained, str(tmp_path / "features"),
                           feature_extractor=True)
  texts = trained["test_texts"][:3] + ["the river"]
  outputs = model.signatures["serving_default"](text_a=tf.constant(texts))
  assert sorted(outputs) == ["pooled_output", "sequence_output"]
  tokenizer = tokenization.FullTokenizer(trained["vocab"], True)
  ids, mask = padded([full_tokenizer_ids(tokenizer, text, None, SEQ)[0]
                      for text in texts])
  # The training graph: modeling.BertModel restored from the checkpoint.
  with tf.Graph().as_default():
    bert = modeling.BertModel(
        modeling.BertConfig.from_json_file(trained["config"]), False,
        tf.constant(ids), tf.constant(mask), tf.zeros_like(ids))
    tf1.train.init_from_checkpoint(tf.train.latest_checkpoint(
        trained["output_dir"]), {"bert/": "bert/"})
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      sequence, pooled = session.run([bert.get_sequence_output(),
                                      bert.get_pooled_output()])
  np.testing.assert_allclose(outputs["pooled_output"].numpy(), pooled,
                             atol=1e-5)
  real = mask.astype(bool)
  np.testing.assert_allclose(outputs["sequence_output"].numpy()[real],
                             sequence[real], atol=1e-4)


def copy_without(folder, destination, name):
  """A copy of folder without the file `name`."""
  shutil.copytree(folder, destination)
  os.remove(os.path.join(destination, name))
  return str(destination)


def bad_config(trained, destination):
  """The classifier's folder with a bert_config.json of other sizes."""
  shutil.copytree(trained["output_dir"], destination)
  config = conftest.tiny_config_dict(vocab_size=len(tokenization.load_vocab(
      trained["vocab"])), hidden_size=48)
  with open(os.path.join(destination, "bert_config.json"), "w") as f:
    json.dump(config, f)
  return str(destination)


@pytest.mark.parametrize("case,message", [
    ("no_task", "has no task.json"),
    ("bad_config", "hidden_size 48|does not match its config"),
    ("quantize", "--quantize int4 is not one of none, int8"),
    ("saved_model_quantize", "applies to --to tflite only"),
    ("output_exists", "exists; an export writes a new folder"),
    ("long_sequence", "longer than the model's max_position_embeddings"),
])
def test_bad_inputs_are_one_error_and_leave_nothing(trained, tmp_path, case,
                                                    message):
  input_dir, output_dir = trained["output_dir"], tmp_path / "out"
  target, quantize, max_seq_length = "tflite", "none", SEQ
  if case == "no_task":
    input_dir = copy_without(input_dir, tmp_path / "in", "task.json")
  elif case == "bad_config":
    input_dir = bad_config(trained, tmp_path / "in")
  elif case == "quantize":
    quantize = "int4"
  elif case == "saved_model_quantize":
    target, quantize = "saved_model", "int8"
  elif case == "output_exists":
    output_dir.mkdir()
    (output_dir / "keep.txt").write_text("mine")
  elif case == "long_sequence":
    max_seq_length = 65
  before = sorted(os.listdir(tmp_path))
  with pytest.raises(command_line.InputError, match=message):
    serving_export.export(target, input_dir, str(output_dir),
                          vocab_file=trained["vocab"],
                          max_seq_length=max_seq_length, quantize=quantize)
  assert sorted(os.listdir(tmp_path)) == before
  if case == "output_exists":
    assert os.listdir(output_dir) == ["keep.txt"]


def test_script_reports_a_missing_task_in_one_line(trained, tmp_path):
  input_dir = copy_without(trained["output_dir"], tmp_path / "in",
                           "task.json")
  result = conftest.run_script(
      "convert_checkpoint.py", "--from", "google", "--to", "saved_model",
      "--input_dir", input_dir, "--output_dir", tmp_path / "out",
      "--vocab_file", trained["vocab"], check=False)
  assert result.returncode == 1
  errors = [line for line in result.stderr.splitlines()
            if line.startswith("ERROR")]
  assert len(errors) == 1 and "--feature_extractor" in errors[0]
  assert "Traceback" not in result.stderr
  assert sorted(os.listdir(tmp_path)) == ["in"]
