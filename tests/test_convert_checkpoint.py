"""Tests for convert_checkpoint.py (Google <-> Hugging Face), without PyTorch.

Hugging Face folders are written here from the layout that transformers'
BertForPreTraining saves (hf_layout below) with safetensors' numpy API, and
read back the same way. A numpy forward pass that reads tensors by their
Hugging Face names checks that an exported folder computes what the Google
checkpoint computed with modeling.py, for both GELU forms.
"""

import json
import math
import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file
from safetensors.numpy import save_file
import tensorflow as tf

import conftest
from bert_distillation import checkpoint_conversion
import modeling
from bert_distillation import record_format
from bert_distillation import student_init
from test_teacher_labels import save_random_teacher

tf1 = tf.compat.v1

InputError = checkpoint_conversion.InputError
SEQ_LENGTH = 32
PREDICTIONS = 5
NUM_RECORDS = 12
TOP_K = 4


# ---------------------------------------------------------------------------
# The Hugging Face side, written independently of convert_checkpoint.py.


def hf_layout(config, heads=("pooler", "masked_lm", "next_sentence")):
  """{tensor name: shape} of what transformers' save_pretrained writes.

  Written from transformers' src/transformers/models/bert/modeling_bert.py
  (huggingface/transformers on GitHub): BertEmbeddings holds three
  nn.Embedding tables and a LayerNorm; each BertLayer holds
  attention.self.{query,key,value}, attention.output.{dense,LayerNorm},
  intermediate.dense and output.{dense,LayerNorm}; BertPooler holds dense;
  BertPreTrainingHeads holds predictions.transform.{dense,LayerNorm},
  predictions.bias and seq_relationship = nn.Linear(hidden, 2). An
  nn.Linear(in, out) weight is [out, in]. The decoder weight and bias are
  tied to the word embeddings and predictions.bias (`_tied_weights_keys`)
  and are not saved. BertForMaskedLM has no pooler and no seq_relationship.
  """
  hidden = config["hidden_size"]
  inner = config["intermediate_size"]
  layout = {
      "bert.embeddings.word_embeddings.weight": [config["vocab_size"], hidden],
      "bert.embeddings.position_embeddings.weight": [
          config["max_position_embeddings"], hidden],
      "bert.embeddings.token_type_embeddings.weight": [
          config["type_vocab_size"], hidden],
      "bert.embeddings.LayerNorm.weight": [hidden],
      "bert.embeddings.LayerNorm.bias": [hidden],
  }

  def linear(name, inputs, outputs):
    layout[name + ".weight"] = [outputs, inputs]
    layout[name + ".bias"] = [outputs]

  def layer_norm(name):
    layout[name + ".weight"] = [hidden]
    layout[name + ".bias"] = [hidden]

  for i in range(config["num_hidden_layers"]):
    prefix = "bert.encoder.layer.%d." % i
    for part in ("query", "key", "value"):
      linear(prefix + "attention.self." + part, hidden, hidden)
    linear(prefix + "attention.output.dense", hidden, hidden)
    layer_norm(prefix + "attention.output.LayerNorm")
    linear(prefix + "intermediate.dense", hidden, inner)
    linear(prefix + "output.dense", inner, hidden)
    layer_norm(prefix + "output.LayerNorm")
  if "pooler" in heads:
    linear("bert.pooler.dense", hidden, hidden)
  if "masked_lm" in heads:
    linear("cls.predictions.transform.dense", hidden, hidden)
    layer_norm("cls.predictions.transform.LayerNorm")
    layout["cls.predictions.bias"] = [config["vocab_size"]]
  if "next_sentence" in heads:
    linear("cls.seq_relationship", hidden, 2)
  return layout


def hf_config_dict(vocab_size, hidden_act="gelu",
                   architecture="BertForPreTraining"):
  """A config.json as transformers writes it for a tiny BERT."""
  config = conftest.tiny_config_dict(vocab_size)
  config.update(
      hidden_act=hidden_act, architectures=[architecture], model_type="bert",
      layer_norm_eps=1e-12, pad_token_id=0, position_embedding_type="absolute",
      torch_dtype="float32", transformers_version="4.44.2", use_cache=True,
      classifier_dropout=None)
  return config


def random_hf_tensors(layout, seed):
  """Random float32 tensors for a layout, LayerNorm weights around 1."""
  rng = np.random.RandomState(seed)
  tensors = {}
  for name, shape in sorted(layout.items()):
    value = 0.3 * rng.normal(size=shape)
    if name.endswith("LayerNorm.weight"):
      value += 1.0
    tensors[name] = value.astype(np.float32)
  return tensors


def write_hf_folder(folder, vocab_file, hidden_act="gelu",
                    heads=("pooler", "masked_lm", "next_sentence"),
                    architecture="BertForPreTraining", seed=0,
                    file_names=None, extra=None):
  """Writes a Hugging Face BERT folder; returns (config, tensors by HF name).

  file_names maps a canonical tensor name to the name stored in the file
  (old gamma/beta names, no "bert." prefix); extra(tensors) returns more
  tensors to store.
  """
  os.makedirs(folder, exist_ok=True)
  vocab_size = len(open(vocab_file, encoding="utf-8").read().splitlines())
  config = hf_config_dict(vocab_size, hidden_act, architecture)
  tensors = random_hf_tensors(hf_layout(config, heads), seed)
  stored = {(file_names or {}).get(name, name): value
            for name, value in tensors.items()}
  if extra:
    stored.update(extra(tensors))
  save_file(stored, os.path.join(folder, "model.safetensors"),
            metadata={"format": "pt"})
  with open(os.path.join(folder, "config.json"), "w") as f:
    json.dump(config, f)
  with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
    json.dump({"do_lower_case": True, "tokenizer_class": "BertTokenizer"}, f)
  shutil.copyfile(vocab_file, os.path.join(folder, "vocab.txt"))
  return config, tensors


def numpy_gelu_exact(x):
  """0.5 x (1 + erf(x / sqrt(2))), elementwise."""
  return 0.5 * x * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def numpy_gelu_tanh(x):
  """The tanh approximation of GELU."""
  return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) *
                                  (x + 0.044715 * x ** 3)))


# transformers' ACT2FN, for the names these tests use.
HF_ACTIVATIONS = {"gelu": numpy_gelu_exact, "gelu_new": numpy_gelu_tanh,
                  "gelu_pytorch_tanh": numpy_gelu_tanh}


def numpy_softmax(x):
  """Softmax over the last axis."""
  x = x - x.max(-1, keepdims=True)
  return np.exp(x) / np.exp(x).sum(-1, keepdims=True)


def numpy_hf_forward(tensors, hf_config, row, activation=None):
  """BertForPreTraining's forward pass on one record, reading HF names.

  Returns (last hidden state [seq, hidden], masked-LM logits at the masked
  positions [n, vocab] or None, next-sentence logits [2] or None).
  """
  t = {name: value.astype(np.float64) for name, value in tensors.items()}
  act = activation or HF_ACTIVATIONS[hf_config["hidden_act"]]

  def linear(x, name):
    return x @ t[name + ".weight"].T + t[name + ".bias"]

  def layer_norm(x, name):
    mean = x.mean(-1, keepdims=True)
    variance = ((x - mean) ** 2).mean(-1, keepdims=True)
    return ((x - mean) / np.sqrt(variance + hf_config["layer_norm_eps"]) *
            t[name + ".weight"] + t[name + ".bias"])

  ids = np.array(row["input_ids"])
  length = len(ids)
  x = (t["bert.embeddings.word_embeddings.weight"][ids] +
       t["bert.embeddings.position_embeddings.weight"][:length] +
       t["bert.embeddings.token_type_embeddings.weight"][
           np.array(row["segment_ids"])])
  x = layer_norm(x, "bert.embeddings.LayerNorm")
  heads = hf_config["num_attention_heads"]
  size = hf_config["hidden_size"] // heads
  # transformers adds a very negative number at padded keys; after the
  # softmax both that and -10000 give exactly 0 in float32.
  mask_add = (1.0 - np.array(row["input_mask"], np.float64)) * -10000.0
  for i in range(hf_config["num_hidden_layers"]):
    prefix = "bert.encoder.layer.%d." % i
    query, key, value = [
        linear(x, prefix + "attention.self." + part).reshape(
            length, heads, size).transpose(1, 0, 2)
        for part in ("query", "key", "value")]
    probs = numpy_softmax(query @ key.transpose(0, 2, 1) / math.sqrt(size) +
                          mask_add)
    context = (probs @ value).transpose(1, 0, 2).reshape(length, -1)
    attention = layer_norm(linear(context, prefix + "attention.output.dense")
                           + x, prefix + "attention.output.LayerNorm")
    inner = act(linear(attention, prefix + "intermediate.dense"))
    x = layer_norm(linear(inner, prefix + "output.dense") + attention,
                   prefix + "output.LayerNorm")
  logits = None
  if "cls.predictions.bias" in t:
    masked = x[np.array(row["masked_lm_positions"])]
    masked = layer_norm(act(linear(masked, "cls.predictions.transform.dense")),
                        "cls.predictions.transform.LayerNorm")
    logits = (masked @ t["bert.embeddings.word_embeddings.weight"].T +
              t["cls.predictions.bias"])
  next_sentence = None
  if "cls.seq_relationship.weight" in t:
    pooled = np.tanh(linear(x[0], "bert.pooler.dense"))
    next_sentence = linear(pooled, "cls.seq_relationship")
  return x, logits, next_sentence


# ---------------------------------------------------------------------------
# The Google side.


def read_checkpoint(prefix):
  """{name: array} of every variable in a TensorFlow checkpoint."""
  reader = tf.train.load_checkpoint(prefix)
  return {name: reader.get_tensor(name)
          for name in reader.get_variable_to_shape_map()}


def read_json(path):
  """A JSON file's content."""
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def write_google_folder(folder, vocab_file, hidden_act="gelu", seed=1):
  """A Google release folder with random weights (saved by tf1 Saver)."""
  os.makedirs(folder, exist_ok=True)
  vocab_size = len(open(vocab_file, encoding="utf-8").read().splitlines())
  config_file = os.path.join(folder, "bert_config.json")
  config = conftest.tiny_config_dict(vocab_size)
  config["hidden_act"] = hidden_act
  with open(config_file, "w") as f:
    json.dump(config, f)
  shutil.copyfile(vocab_file, os.path.join(folder, "vocab.txt"))
  save_random_teacher(config_file, os.path.join(folder, "bert_model.ckpt"),
                      seed=seed)
  return config


def tf_forward(config_file, checkpoint, rows):
  """modeling.py on the checkpoint: (sequence, masked-LM, NSP logits)."""
  config = modeling.BertConfig.from_json_file(config_file)

  def column(name):
    return tf.constant([row[name] for row in rows], tf.int32)

  with tf.Graph().as_default():
    model, mlm_logits, nsp_logits = modeling.pretraining_model(
        config, False, column("input_ids"), column("masked_lm_positions"),
        input_mask=column("input_mask"), token_type_ids=column("segment_ids"))
    modeling.init_from_checkpoint_strict(checkpoint)
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      return sess.run([model.get_sequence_output(), mlm_logits, nsp_logits])


@pytest.fixture(scope="module")
def rows(tmp_path_factory, tiny_vocab):
  """A few random pretraining records (as dicts) for forward passes."""
  path = str(tmp_path_factory.mktemp("rows") / "records.tfrecord")
  return conftest.write_random_pretraining_records(
      path, 3, len(tiny_vocab[1]), max_seq_length=SEQ_LENGTH,
      max_predictions_per_seq=PREDICTIONS)


def assert_same_forward(expected, actual_rows):
  """Compares numpy HF outputs with modeling.py's, row by row, to 1e-5."""
  sequence, mlm_logits, nsp_logits = actual_rows
  for i, (hidden, logits, next_sentence) in enumerate(expected):
    np.testing.assert_allclose(sequence[i], hidden, atol=1e-5)
    np.testing.assert_allclose(
        mlm_logits[i * PREDICTIONS:(i + 1) * PREDICTIONS], logits, atol=1e-5)
    np.testing.assert_allclose(nsp_logits[i], next_sentence, atol=1e-5)


# ---------------------------------------------------------------------------
# Round trips and layouts.


def round_trip(tmp_path, first, second):
  """Converts tmp_path/<first> to tmp_path/<second>, then back to .../back."""
  formats = {"google": "google", "hf": "huggingface"}
  checkpoint_conversion.convert(formats[first], formats[second],
                                str(tmp_path / first), str(tmp_path / second))
  checkpoint_conversion.convert(formats[second], formats[first],
                                str(tmp_path / second), str(tmp_path / "back"))


def assert_bit_identical(expected, actual):
  """Same names, and every tensor the same float32 bytes."""
  assert sorted(actual) == sorted(expected)
  for name, value in expected.items():
    assert actual[name].dtype == np.float32, name
    assert actual[name].tobytes() == value.tobytes(), name


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_exact"])
def test_google_to_huggingface_to_google_is_bit_identical(
    tmp_path, tiny_vocab, hidden_act):
  config = write_google_folder(str(tmp_path / "google"), tiny_vocab[0],
                               hidden_act)
  round_trip(tmp_path, "google", "hf")
  original = read_checkpoint(str(tmp_path / "google" / "bert_model.ckpt"))
  assert len(original) == 46  # 2 layers of 16, 14 others.
  assert_bit_identical(
      original, read_checkpoint(str(tmp_path / "back" / "bert_model.ckpt")))
  assert read_json(str(tmp_path / "back" / "bert_config.json")) == config
  assert (open(str(tmp_path / "back" / "vocab.txt")).read() ==
          open(tiny_vocab[0]).read())


@pytest.mark.parametrize("hidden_act,same_function_name", [
    ("gelu", "gelu"), ("gelu_pytorch_tanh", "gelu_new")])
def test_huggingface_to_google_to_huggingface_is_bit_identical(
    tmp_path, tiny_vocab, hidden_act, same_function_name):
  config, tensors = write_hf_folder(str(tmp_path / "hf"), tiny_vocab[0],
                                    hidden_act)
  round_trip(tmp_path, "hf", "google")
  assert_bit_identical(
      tensors, load_file(str(tmp_path / "back" / "model.safetensors")))
  back_config = read_json(str(tmp_path / "back" / "config.json"))
  for key in checkpoint_conversion.GOOGLE_CONFIG_KEYS + (
      "model_type", "architectures", "layer_norm_eps",
      "position_embedding_type", "pad_token_id"):
    expected = same_function_name if key == "hidden_act" else config[key]
    assert back_config[key] == expected, key


def test_huggingface_folder_has_the_bert_for_pretraining_layout(
    tmp_path, tiny_vocab):
  config = write_google_folder(str(tmp_path / "google"), tiny_vocab[0])
  checkpoint_conversion.convert("google", "huggingface",
                                str(tmp_path / "google"), str(tmp_path / "hf"),
                                do_lower_case=False)
  folder = tmp_path / "hf"
  assert sorted(os.listdir(str(folder))) == [
      "config.json", "model.safetensors", "tokenizer_config.json",
      "vocab.txt"]
  tensors = load_file(str(folder / "model.safetensors"))
  assert {name: list(value.shape) for name, value in tensors.items()} == (
      hf_layout(config))
  assert all(value.dtype == np.float32 for value in tensors.values())
  with open(str(folder / "model.safetensors"), "rb") as f:
    header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
  assert header["__metadata__"] == {"format": "pt"}
  hf_config = read_json(str(folder / "config.json"))
  assert hf_config["model_type"] == "bert"
  assert hf_config["architectures"] == ["BertForPreTraining"]
  assert hf_config["hidden_act"] == "gelu_new"  # Google's gelu: tanh form.
  assert hf_config["layer_norm_eps"] == 1e-12
  tokenizer = read_json(str(folder / "tokenizer_config.json"))
  assert tokenizer["tokenizer_class"] == "BertTokenizer"
  assert tokenizer["do_lower_case"] is False
  # Dense kernels are transposed, embeddings are not.
  google = read_checkpoint(str(tmp_path / "google" / "bert_model.ckpt"))
  np.testing.assert_array_equal(
      tensors["bert.encoder.layer.1.intermediate.dense.weight"],
      google["bert/encoder/layer_1/intermediate/dense/kernel"].T)
  np.testing.assert_array_equal(
      tensors["cls.seq_relationship.weight"],
      google["cls/seq_relationship/output_weights"])


# ---------------------------------------------------------------------------
# The same outputs before and after conversion.


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_exact"])
def test_export_computes_what_the_google_checkpoint_computes(
    tmp_path, tiny_vocab, rows, hidden_act):
  google = str(tmp_path / "google")
  write_google_folder(google, tiny_vocab[0], hidden_act)
  checkpoint_conversion.convert("google", "huggingface", google,
                                str(tmp_path / "hf"))
  hf_config = read_json(str(tmp_path / "hf" / "config.json"))
  tensors = load_file(str(tmp_path / "hf" / "model.safetensors"))
  expected = [numpy_hf_forward(tensors, hf_config, row) for row in rows]
  actual = tf_forward(os.path.join(google, "bert_config.json"),
                      os.path.join(google, "bert_model.ckpt"), rows)
  assert_same_forward(expected, actual)
  # The other GELU form gives visibly different logits, so the exported
  # hidden_act name is what made the outputs agree.
  other = (numpy_gelu_exact if hidden_act == "gelu" else numpy_gelu_tanh)
  _, wrong_logits, _ = numpy_hf_forward(tensors, hf_config, rows[0], other)
  assert np.abs(wrong_logits - expected[0][1]).max() > 1e-4


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new"])
def test_import_computes_what_the_huggingface_model_computes(
    tmp_path, tiny_vocab, rows, hidden_act):
  hf_config, tensors = write_hf_folder(str(tmp_path / "hf"), tiny_vocab[0],
                                       hidden_act)
  google = str(tmp_path / "google")
  checkpoint_conversion.convert("huggingface", "google", str(tmp_path / "hf"),
                                google)
  assert read_json(os.path.join(google, "bert_config.json"))[
      "hidden_act"] == {"gelu": "gelu_exact", "gelu_new": "gelu"}[hidden_act]
  expected = [numpy_hf_forward(tensors, hf_config, row) for row in rows]
  actual = tf_forward(os.path.join(google, "bert_config.json"),
                      os.path.join(google, "bert_model.ckpt"), rows)
  assert_same_forward(expected, actual)


def test_gelu_exact_is_the_erf_form():
  x = np.linspace(-5, 5, 41).astype(np.float32)
  with tf.Graph().as_default(), tf1.Session() as sess:
    exact = sess.run(modeling.get_activation("gelu_exact")(tf.constant(x)))
  np.testing.assert_allclose(exact, numpy_gelu_exact(x.astype(np.float64)),
                             atol=1e-6)
  assert np.abs(exact - numpy_gelu_tanh(x.astype(np.float64))).max() > 1e-4


# ---------------------------------------------------------------------------
# Other layouts: BertForMaskedLM, bare BertModel, older file conventions.


def test_import_reads_masked_lm_and_bare_model_layouts(tmp_path, tiny_vocab):
  # BertForMaskedLM saved the old way: gamma/beta names, the tied decoder
  # stored, and the position_ids buffer.
  layout = hf_layout(hf_config_dict(len(tiny_vocab[1])), ("masked_lm",))
  old_names = {name: name.replace("LayerNorm.weight", "LayerNorm.gamma")
                         .replace("LayerNorm.bias", "LayerNorm.beta")
               for name in layout}
  def tied_decoder_and_buffer(tensors):
    return {
        "cls.predictions.decoder.weight":
            tensors["bert.embeddings.word_embeddings.weight"],
        "cls.predictions.decoder.bias": tensors["cls.predictions.bias"],
        "bert.embeddings.position_ids": np.arange(64, dtype=np.int64)[None],
    }

  _, tensors = write_hf_folder(
      str(tmp_path / "mlm"), tiny_vocab[0], heads=("masked_lm",),
      architecture="BertForMaskedLM", file_names=old_names,
      extra=tied_decoder_and_buffer)
  checkpoint_conversion.convert("huggingface", "google", str(tmp_path / "mlm"),
                                str(tmp_path / "mlm_google"))
  names = set(read_checkpoint(str(tmp_path / "mlm_google" /
                                  "bert_model.ckpt")))
  assert "cls/predictions/output_bias" in names
  assert not any(name.startswith(("cls/seq_relationship", "bert/pooler"))
                 for name in names)
  assert len(names) == 46 - 4
  checkpoint_conversion.convert("google", "huggingface",
                                str(tmp_path / "mlm_google"),
                                str(tmp_path / "mlm_back"))
  assert read_json(str(tmp_path / "mlm_back" / "config.json"))[
      "architectures"] == ["BertForMaskedLM"]
  assert_bit_identical(
      tensors, load_file(str(tmp_path / "mlm_back" / "model.safetensors")))

  # A bare BertModel, saved without the "bert." prefix.
  bare_layout = hf_layout(hf_config_dict(len(tiny_vocab[1])), ("pooler",))
  _, bare = write_hf_folder(
      str(tmp_path / "bare"), tiny_vocab[0], heads=("pooler",),
      architecture="BertModel",
      file_names={name: name[len("bert."):] for name in bare_layout})
  checkpoint_conversion.convert("huggingface", "google", str(tmp_path / "bare"),
                                str(tmp_path / "bare_google"))
  google = read_checkpoint(str(tmp_path / "bare_google" / "bert_model.ckpt"))
  assert not any(name.startswith("cls/") for name in google)
  np.testing.assert_array_equal(google["bert/pooler/dense/kernel"],
                                bare["bert.pooler.dense.weight"].T)
  checkpoint_conversion.convert("google", "huggingface",
                                str(tmp_path / "bare_google"),
                                str(tmp_path / "bare_back"))
  assert read_json(str(tmp_path / "bare_back" / "config.json"))[
      "architectures"] == ["BertModel"]


def test_converted_checkpoint_initialises_a_student_by_name(tmp_path,
                                                            tiny_vocab):
  _, tensors = write_hf_folder(str(tmp_path / "hf"), tiny_vocab[0])
  checkpoint_conversion.convert("huggingface", "google", str(tmp_path / "hf"),
                                str(tmp_path / "google"))
  checkpoint = str(tmp_path / "google" / "bert_model.ckpt")
  config = modeling.BertConfig.from_json_file(
      str(tmp_path / "google" / "bert_config.json"))
  with tf.Graph().as_default():
    input_ids = tf1.placeholder(tf.int32, [None, SEQ_LENGTH])
    positions = tf1.placeholder(tf.int32, [None, PREDICTIONS])
    modeling.pretraining_model(config, True, input_ids, positions)
    variables = tf1.trainable_variables()
    loaded = student_init.init_student_from_checkpoint(variables, checkpoint)
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      values = dict(zip([v.op.name for v in variables], sess.run(variables)))
  assert len(loaded) == len(variables) == 46
  np.testing.assert_array_equal(
      values["bert/encoder/layer_0/attention/self/query/kernel"],
      tensors["bert.encoder.layer.0.attention.self.query.weight"].T)


# ---------------------------------------------------------------------------
# A teacher without a next-sentence head, through the pipeline.


@pytest.fixture(scope="module")
def masked_lm_teacher(tmp_path_factory, tiny_vocab):
  """A BertForMaskedLM converted to Google's format and its labels."""
  root = tmp_path_factory.mktemp("masked_lm_teacher")
  hf_config, tensors = write_hf_folder(
      str(root / "hf"), tiny_vocab[0], heads=("masked_lm",),
      architecture="BertForMaskedLM", seed=5)
  google = str(root / "google")
  conftest.run_script("convert_checkpoint.py", "--from", "huggingface",
                      "--to", "google", "--input_dir", str(root / "hf"),
                      "--output_dir", google)
  input_file = str(root / "records.tfrecord")
  rows = conftest.write_random_pretraining_records(
      input_file, NUM_RECORDS, len(tiny_vocab[1]), max_seq_length=SEQ_LENGTH,
      max_predictions_per_seq=PREDICTIONS)
  labels = str(root / "labels.tfrecord")
  result = conftest.run_script(
      "produce_teacher_labels.py",
      "--bert_config_file", os.path.join(google, "bert_config.json"),
      "--init_checkpoint", os.path.join(google, "bert_model.ckpt"),
      "--input_file", input_file, "--output_file", labels,
      "--truncation_factor", TOP_K, "--max_seq_length", SEQ_LENGTH,
      "--max_predictions_per_seq", PREDICTIONS, "--batch_size", 8)
  return dict(root=root, hf_config=hf_config, tensors=tensors, google=google,
              rows=rows, labels=labels, log=result.stdout + result.stderr)


def test_masked_lm_teacher_labels_without_next_sentence_probs(
    masked_lm_teacher):
  records = list(tf1.io.tf_record_iterator(masked_lm_teacher["labels"]))
  assert len(records) == NUM_RECORDS
  for row, raw in zip(masked_lm_teacher["rows"], records):
    feature = tf.train.Example.FromString(raw).features.feature
    assert record_format.NEXT_SENTENCE_PROBS not in feature
    probs = np.array(feature[record_format.TRUNCATED_PROBS].float_list.value)
    _, logits, next_sentence = numpy_hf_forward(
        masked_lm_teacher["tensors"], masked_lm_teacher["hf_config"], row)
    assert next_sentence is None
    expected = -np.sort(-numpy_softmax(logits), axis=-1)[:, :TOP_K]
    np.testing.assert_allclose(probs.reshape(PREDICTIONS, TOP_K), expected,
                               atol=1e-5)
  assert "no next-sentence head" in masked_lm_teacher["log"]
  assert "Loaded 42 variables" in masked_lm_teacher["log"]


def student_args(teacher, output_dir, *extra):
  """Trainer arguments for a 2-step run on the masked-LM teacher's labels."""
  return ["--bert_config_file",
          os.path.join(teacher["google"], "bert_config.json"),
          "--input_file", teacher["labels"], "--output_dir", output_dir,
          "--truncation_factor", TOP_K, "--max_seq_length", SEQ_LENGTH,
          "--max_predictions_per_seq", PREDICTIONS,
          "--train_batch_size", 4, "--eval_batch_size", 4,
          "--num_train_steps", 2, "--num_warmup_steps", 1,
          "--max_eval_steps", 1] + list(extra)


def test_trainer_refuses_soft_nsp_loss_without_next_sentence_probs(
    masked_lm_teacher):
  result = conftest.run_script(
      "network_distillation_single_machine_truncated.py",
      *student_args(masked_lm_teacher,
                    str(masked_lm_teacher["root"] / "refused"),
                    "--do_train", "True", "--nsp_loss", "soft"), check=False)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith(
      "ERROR: --nsp_loss soft needs the teacher's next_sentence_probs")
  assert "Traceback" not in result.stderr


def test_student_of_a_masked_lm_teacher_trains_and_exports(
    masked_lm_teacher, tmp_path):
  teacher = masked_lm_teacher
  output_dir = str(tmp_path / "student")
  result = conftest.run_script(
      "network_distillation_single_machine_truncated.py",
      *student_args(teacher, output_dir, "--do_train", "True",
                    "--do_eval", "True", "--nsp_loss", "hard",
                    "--hard_label_weight", "1",
                    "--init_checkpoint",
                    os.path.join(teacher["google"], "bert_model.ckpt")))
  log = result.stdout + result.stderr
  assert "Initialised 42 of 46 variables" in log
  results = open(os.path.join(output_dir, "eval_results.txt")).read()
  assert "teacher_top1_agreement" in results and "kd_loss" in results

  # The trainer's output_dir (optimizer state included) exports to HF.
  checkpoint_conversion.convert(
      "google", "huggingface", output_dir, str(tmp_path / "student_hf"),
      bert_config_file=os.path.join(teacher["google"], "bert_config.json"),
      vocab_file=os.path.join(teacher["google"], "vocab.txt"))
  exported = load_file(str(tmp_path / "student_hf" / "model.safetensors"))
  trained = read_checkpoint(os.path.join(output_dir, "model.ckpt-2"))
  assert any(name.endswith("/adam_m") for name in trained)
  assert "global_step" in trained
  model_names = [name for name in trained
                 if not name.endswith(("/adam_m", "/adam_v"))
                 and name != "global_step"]
  assert len(exported) == len(model_names) == 46
  for name in model_names:
    hf_name, transpose = checkpoint_conversion.hf_name_for(name)
    expected = trained[name].T if transpose else trained[name]
    assert exported[hf_name].tobytes() == np.ascontiguousarray(
        expected).tobytes(), name


# ---------------------------------------------------------------------------
# Errors.


def bin_only_folder(folder, vocab_file):
  """An HF folder whose weights are in pytorch_model.bin only."""
  write_hf_folder(folder, vocab_file)
  os.remove(os.path.join(folder, "model.safetensors"))
  with open(os.path.join(folder, "pytorch_model.bin"), "wb") as f:
    f.write(b"PK\x03\x04 not read without torch")


def model_type_folder(model_type):
  """Returns a maker of an HF folder whose config says `model_type`."""
  def make(folder, vocab_file):
    write_hf_folder(folder, vocab_file)
    config = read_json(os.path.join(folder, "config.json"))
    config["model_type"] = model_type
    with open(os.path.join(folder, "config.json"), "w") as f:
      json.dump(config, f)
  return make


def short_vocab_folder(folder, vocab_file):
  """An HF folder whose vocab.txt lacks its last token."""
  write_hf_folder(folder, vocab_file)
  lines = open(vocab_file, encoding="utf-8").read().splitlines()
  with open(os.path.join(folder, "vocab.txt"), "w") as f:
    f.write("\n".join(lines[:-1]) + "\n")


def untied_decoder_folder(folder, vocab_file):
  """An HF folder whose stored decoder differs from the word embeddings."""
  write_hf_folder(folder, vocab_file, extra=lambda tensors: {
      "cls.predictions.decoder.weight":
          tensors["bert.embeddings.word_embeddings.weight"] + 1.0})


def task_head_folder(folder, vocab_file):
  """An HF folder of a fine-tuned classifier (BertForSequenceClassification)."""
  write_hf_folder(folder, vocab_file, heads=("pooler",),
                  extra=lambda tensors: {
                      "classifier.weight": np.zeros([2, 32], np.float32),
                      "classifier.bias": np.zeros([2], np.float32)})


def activation_folder(folder, vocab_file):
  """An HF folder whose hidden_act has no modeling.py equivalent."""
  write_hf_folder(folder, vocab_file, hidden_act="silu")


@pytest.mark.parametrize("make_folder,message", [
    (bin_only_folder, "holds pytorch_model.bin only, which needs PyTorch"),
    (model_type_folder("roberta"), "model_type 'roberta' (RoBERTa) is not "
     "BERT"),
    (model_type_folder("distilbert"), "model_type 'distilbert' (DistilBERT) "
     "is not BERT"),
    (short_vocab_folder, "holds 143 tokens but the model's config says "
     "vocab_size 144"),
    (untied_decoder_folder, "differs from the word embeddings"),
    (task_head_folder, "not part of BERT's pretraining layout: "
     "classifier.bias, classifier.weight"),
    (activation_folder, "hidden_act 'silu' has no equivalent"),
])
def test_import_errors(tmp_path, tiny_vocab, make_folder, message):
  assert len(tiny_vocab[1]) == 144
  folder = str(tmp_path / "hf")
  make_folder(folder, tiny_vocab[0])
  with pytest.raises(InputError, match=message.replace("(", r"\(").replace(
      ")", r"\)")):
    checkpoint_conversion.convert("huggingface", "google", folder,
                                  str(tmp_path / "out"))
  assert not os.path.exists(str(tmp_path / "out"))
  assert os.listdir(str(tmp_path)) == ["hf"]  # No temporary folder left.


def test_export_errors(tmp_path, tiny_vocab):
  google = str(tmp_path / "google")
  write_google_folder(google, tiny_vocab[0])
  short_vocab = str(tmp_path / "short_vocab.txt")
  with open(short_vocab, "w") as f:
    f.write("\n".join(tiny_vocab[1][:100]) + "\n")
  with pytest.raises(InputError, match="holds 100 tokens but the model's "
                     "config says vocab_size 144"):
    checkpoint_conversion.convert("google", "huggingface", google,
                                  str(tmp_path / "out"), vocab_file=short_vocab)
  os.makedirs(str(tmp_path / "trainer_dir"))
  shutil.copyfile(os.path.join(google, "bert_model.ckpt.index"),
                  str(tmp_path / "trainer_dir" / "model.ckpt-5.index"))
  with pytest.raises(InputError, match="has no bert_config.json; pass the "
                     "model's config with --bert_config_file"):
    checkpoint_conversion.convert("google", "huggingface",
                                  str(tmp_path / "trainer_dir"),
                                  str(tmp_path / "out"))
  with pytest.raises(InputError, match="is the input folder"):
    checkpoint_conversion.convert("google", "huggingface", google, google)
  assert not os.path.exists(str(tmp_path / "out"))


def test_output_with_a_checkpoint_needs_overwrite(tmp_path, tiny_vocab):
  write_hf_folder(str(tmp_path / "hf"), tiny_vocab[0], seed=1)
  google = str(tmp_path / "google")
  checkpoint_conversion.convert("huggingface", "google", str(tmp_path / "hf"),
                                google)
  before = read_checkpoint(os.path.join(google, "bert_model.ckpt"))
  write_hf_folder(str(tmp_path / "hf"), tiny_vocab[0], seed=2)
  with pytest.raises(InputError, match="already holds a checkpoint "
                     r"\(bert_model.ckpt.data-00000-of-00001, "
                     r"bert_model.ckpt.index\); pass --overwrite"):
    checkpoint_conversion.convert("huggingface", "google", str(tmp_path / "hf"),
                                  google)
  unchanged = read_checkpoint(os.path.join(google, "bert_model.ckpt"))
  assert all(np.array_equal(unchanged[name], value)
             for name, value in before.items())
  with open(os.path.join(google, "notes.txt"), "w") as f:
    f.write("kept")
  checkpoint_conversion.convert("huggingface", "google", str(tmp_path / "hf"),
                                google, overwrite=True)
  after = read_checkpoint(os.path.join(google, "bert_model.ckpt"))
  assert not np.array_equal(after["bert/pooler/dense/bias"],
                            before["bert/pooler/dense/bias"])
  assert open(os.path.join(google, "notes.txt")).read() == "kept"
  assert sorted(name for name in os.listdir(str(tmp_path))
                if name.startswith(".")) == []


def test_failed_write_leaves_no_output(tmp_path, tiny_vocab, monkeypatch):
  write_hf_folder(str(tmp_path / "hf"), tiny_vocab[0])

  def disk_full(*args, **kwargs):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(checkpoint_conversion.shutil, "copyfile", disk_full)
  with pytest.raises(OSError):
    checkpoint_conversion.convert("huggingface", "google", str(tmp_path / "hf"),
                                  str(tmp_path / "google"))
  assert os.listdir(str(tmp_path)) == ["hf"]


def test_command_line_error_is_one_line(tmp_path, tiny_vocab):
  model_type_folder("distilbert")(str(tmp_path / "hf"), tiny_vocab[0])
  result = conftest.run_script(
      "convert_checkpoint.py", "--from", "huggingface", "--to", "google",
      "--input_dir", str(tmp_path / "hf"), "--output_dir",
      str(tmp_path / "out"), check=False)
  assert result.returncode == 1
  assert "Traceback" not in result.stderr
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("ERROR: ") and "DistilBERT" in last


def test_outputs_follow_the_umask(tmp_path, tiny_vocab):
  """Not 700/600 (a temporary folder's, safetensors'): others may read."""
  write_google_folder(str(tmp_path / "google"), tiny_vocab[0], "gelu")
  old_mask = os.umask(0o027)
  try:
    checkpoint_conversion.convert("google", "huggingface",
                                  str(tmp_path / "google"),
                                  str(tmp_path / "hf"))
    # Into an existing folder, the files too.
    os.makedirs(str(tmp_path / "existing"))
    checkpoint_conversion.convert("huggingface", "google",
                                  str(tmp_path / "hf"),
                                  str(tmp_path / "existing"))
  finally:
    os.umask(old_mask)
  assert os.stat(str(tmp_path / "hf")).st_mode & 0o777 == 0o750
  for folder in ("hf", "existing"):
    names = os.listdir(str(tmp_path / folder))
    assert "bert_config.json" in names or "model.safetensors" in names
    for name in names:
      mode = os.stat(str(tmp_path / folder / name)).st_mode & 0o777
      assert mode == 0o640, (folder, name, oct(mode))
