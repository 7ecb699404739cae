# coding=utf-8
"""Converts BERT checkpoints between Google's format and Hugging Face's.

The library behind convert_checkpoint.py, the command line, whose docstring
describes both directions. Tests and other scripts call convert() without
defining the script's flags. Every tensor is copied bit for bit; dense
kernels are transposed (Google stores [in, out], Hugging Face [out, in]),
and hidden_act keeps its meaning rather than its name (see
GOOGLE_TO_HF_ACTIVATION). Tensors are read and written with safetensors'
numpy API, so PyTorch is not needed.
"""

import glob
import json
import os
import re
import shutil

from absl import logging
import numpy as np
import tensorflow as tf

from bert_distillation import classifier_data
from bert_distillation import checkpoint_usage
from bert_distillation import command_line
import modeling
from bert_distillation import output_config
from bert_distillation import temporary_files
import tokenization

tf1 = tf.compat.v1

FORMATS = ("huggingface", "google")


InputError = command_line.InputError

# The keys of bert_config.json, defined (and validated) once in modeling.py.
GOOGLE_CONFIG_KEYS = modeling.CONFIG_KEYS

# transformers' BertConfig defaults, used for keys a config.json leaves out.
HF_CONFIG_DEFAULTS = {
    "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
    "num_attention_heads": 12, "intermediate_size": 3072,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 512,
    "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12,
    "position_embedding_type": "absolute",
}

# Hugging Face hidden_act -> the bert_config.json name of the same function.
# "gelu_new", "gelu_pytorch_tanh" and "gelu_fast" are all the tanh form.
HF_TO_GOOGLE_ACTIVATION = {
    "gelu": "gelu_exact", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu",
    "gelu_fast": "gelu", "relu": "relu", "tanh": "tanh", "linear": "linear",
}
GOOGLE_TO_HF_ACTIVATION = {
    "gelu": "gelu_new", "gelu_exact": "gelu", "relu": "relu", "tanh": "tanh",
    "linear": "linear",
}

# Models often mistaken for BERT: their layouts and tokenizers differ.
OTHER_MODEL_TYPES = {
    "roberta": "RoBERTa", "xlm-roberta": "XLM-RoBERTa",
    "camembert": "CamemBERT", "distilbert": "DistilBERT", "albert": "ALBERT",
    "electra": "ELECTRA", "deberta": "DeBERTa", "deberta-v2": "DeBERTa-v2",
    "mobilebert": "MobileBERT", "megatron-bert": "Megatron-BERT",
}

# The optional parts of a checkpoint, by Google variable prefix.
HEADS = (("pooler", "bert/pooler/"),
         ("masked-LM head", "cls/predictions/"),
         ("next-sentence head", "cls/seq_relationship/"))
NEXT_SENTENCE_PREFIX = "cls/seq_relationship/"

# Google variable -> Hugging Face tensor, where the generic rule does not fit.
SPECIAL_HF_NAMES = {
    "cls/predictions/output_bias": "cls.predictions.bias",
    "cls/seq_relationship/output_weights": "cls.seq_relationship.weight",
    "cls/seq_relationship/output_bias": "cls.seq_relationship.bias",
    "output_weights": "classifier.weight",
    "output_bias": "classifier.bias",
}
# The classifier of a run_classifier.py model (top level, as in Google's
# script): BertForSequenceClassification's classifier.weight and .bias.
CLASSIFIER_NAMES = ("output_weights", "output_bias")
# Hugging Face buffers that some files hold; they are not weights.
HF_BUFFERS = ("bert.embeddings.position_ids", "bert.embeddings.token_type_ids")
HF_DECODER_WEIGHT = "cls.predictions.decoder.weight"
HF_DECODER_BIAS = "cls.predictions.decoder.bias"
HF_WORD_EMBEDDINGS = "bert.embeddings.word_embeddings.weight"

# Training state in a trainer's checkpoint: Adam's moments, the step, the
# loss scale of fp16 training and the variables that only layer-wise
# distillation trains (the hidden-state projection), which are not part of
# the model.
is_training_only = checkpoint_usage.is_training_only

# Files that make a folder hold a checkpoint (--overwrite replaces them).
CHECKPOINT_PATTERNS = ("*.safetensors", "*.safetensors.index.json",
                       "pytorch_model.bin*", "tf_model.h5", "*.index",
                       "*.data-?????-of-?????", "checkpoint")


# ---------------------------------------------------------------------------
# The two layouts.


def google_variable_shapes(bert_config):
  """{name: shape} of every variable modeling.py builds, heads included."""
  with tf.Graph().as_default():
    input_ids = tf1.placeholder(tf.int32, [1, 2])
    positions = tf1.placeholder(tf.int32, [1, 1])
    modeling.pretraining_model(bert_config, False, input_ids, positions)
    return {var.op.name: var.shape.as_list()
            for var in tf1.global_variables()}


def hf_name_for(google_name):
  """Returns (Hugging Face tensor name, whether to transpose) of a variable.

  Dense kernels are [in, out] in Google's layout and [out, in] in Hugging
  Face's; LayerNorm's gamma and beta are weight and bias.
  """
  if google_name in SPECIAL_HF_NAMES:
    return SPECIAL_HF_NAMES[google_name], False
  parts = google_name.split("/")
  last = parts.pop()
  parts = [part.replace("layer_", "layer.") if part.startswith("layer_")
           else part for part in parts]
  if last.endswith("_embeddings"):
    return ".".join(parts + [last, "weight"]), False
  renamed = {"kernel": "weight", "gamma": "weight", "beta": "bias",
             "bias": "bias"}[last]
  return ".".join(parts + [renamed]), last == "kernel"


def check_google_tensors(tensors, bert_config, source):
  """Checks {Google name: array} against the config; raises InputError.

  Every tensor must be a BERT variable of the config's shape. The encoder
  and embeddings must be complete; each head is either whole or absent, and
  the next-sentence head needs the pooler.
  """
  expected = google_variable_shapes(bert_config)
  unknown = sorted(set(tensors) - set(expected))
  if unknown:
    raise InputError(
        "%s holds tensors that are not part of BERT: %s. Only BERT "
        "checkpoints (BertForPreTraining, BertForMaskedLM, BertModel) "
        "convert." % (source, ", ".join(unknown[:10])))
  mismatched = ["%s: %s, config says %s" % (name, list(value.shape),
                                            expected[name])
                for name, value in sorted(tensors.items())
                if list(value.shape) != expected[name]]
  if mismatched:
    raise InputError("%s does not match its config: %s" % (
        source, checkpoint_usage.first_and_count(mismatched)))
  optional = tuple(prefix for _, prefix in HEADS)
  missing = sorted(name for name in expected
                   if name not in tensors and not name.startswith(optional))
  if missing:
    raise InputError("%s lacks BERT tensors: %s" % (
        source, ", ".join(missing[:10])))
  for head, prefix in HEADS:
    names = [name for name in expected if name.startswith(prefix)]
    held = [name for name in names if name in tensors]
    if held and len(held) != len(names):
      raise InputError("%s holds part of the %s only: %s lacks %s" % (
          source, head, prefix,
          ", ".join(sorted(set(names) - set(held)))))
  if (has_prefix(tensors, NEXT_SENTENCE_PREFIX) and
      not has_prefix(tensors, "bert/pooler/")):
    raise InputError("%s has a next-sentence head but no pooler" % source)


def has_prefix(tensors, prefix):
  """Whether any name in `tensors` starts with `prefix`."""
  return any(name.startswith(prefix) for name in tensors)


def heads_held(tensors):
  """The names of the heads (and pooler) present, for the log."""
  return [head for head, prefix in HEADS if has_prefix(tensors, prefix)]


def vocab_size_of(vocab_file, flag_name):
  """The number of token ids in a vocab.txt (its number of lines)."""
  try:
    vocab = tokenization.load_vocab(vocab_file)
  except ValueError as error:
    raise InputError("%s: %s" % (flag_name, error)) from None
  return max(vocab.values()) + 1


def check_vocab(vocab_file, bert_config, flag_name):
  """Raises InputError unless the vocab has the config's vocab_size tokens."""
  size = vocab_size_of(vocab_file, flag_name)
  if size != bert_config.vocab_size:
    raise InputError(
        "%s %s holds %d tokens but the model's config says vocab_size %d: "
        "the vocab does not belong to this model." % (
            flag_name, vocab_file, size, bert_config.vocab_size))


# ---------------------------------------------------------------------------
# Reading a Hugging Face folder.


def read_json_file(path, what):
  """Reads a JSON object from `path`; raises InputError naming `what`."""
  try:
    with open(path, encoding="utf-8") as f:
      value = json.load(f)
  except (OSError, ValueError) as error:
    raise InputError("Cannot read %s %s: %s" % (what, path, error)) from None
  if not isinstance(value, dict):
    raise InputError("%s %s is not a JSON object" % (what, path))
  return value


def google_config_from_hf(hf_config, path):
  """bert_config.json's dict for a Hugging Face config.json dict.

  Raises InputError for a model that is not BERT or that modeling.py cannot
  compute exactly (another LayerNorm epsilon, relative positions, a decoder,
  an activation without an equivalent).
  """
  model_type = hf_config.get("model_type")
  architectures = hf_config.get("architectures") or []
  if model_type is None and not all(
      name.startswith("Bert") for name in architectures):
    model_type = ", ".join(architectures) or "unknown"
  if model_type is not None and model_type != "bert":
    known = OTHER_MODEL_TYPES.get(model_type)
    raise InputError(
        "%s: model_type %r%s is not BERT. This converter handles BERT only; "
        "RoBERTa, DistilBERT and the like have other layouts and "
        "tokenizers." % (path, model_type, " (%s)" % known if known else ""))
  values = dict(HF_CONFIG_DEFAULTS)
  values.update(hf_config)
  if values["layer_norm_eps"] != 1e-12:
    raise InputError("%s: layer_norm_eps %g; modeling.py computes "
                     "LayerNorm with 1e-12 only." % (path,
                                                     values["layer_norm_eps"]))
  if values["position_embedding_type"] != "absolute":
    raise InputError("%s: position_embedding_type %r; only \"absolute\" "
                     "exists in Google's BERT." % (
                         path, values["position_embedding_type"]))
  if values.get("is_decoder") or values.get("add_cross_attention"):
    raise InputError("%s: a BERT decoder (is_decoder / add_cross_attention) "
                     "does not convert; the teacher must be an encoder." %
                     path)
  activation = values["hidden_act"]
  if activation not in HF_TO_GOOGLE_ACTIVATION:
    raise InputError("%s: hidden_act %r has no equivalent in modeling.py "
                     "(supported: %s)." % (path, activation, ", ".join(
                         sorted(HF_TO_GOOGLE_ACTIVATION))))
  config = {key: values[key] for key in GOOGLE_CONFIG_KEYS}
  config["hidden_act"] = HF_TO_GOOGLE_ACTIVATION[activation]
  return config


def load_safetensors(paths):
  """{name: float32 array} of the safetensors files `paths`."""
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  tensors = {}
  for path in paths:
    try:
      loaded = load_file(path)
    except Exception as error:  # pylint: disable=broad-except
      # numpy has no bfloat16, and a damaged file fails in many ways.
      raise InputError("Cannot read %s: %s" % (path, error)) from None
    tensors.update(loaded)
  return tensors


def load_pytorch_bin(path):
  """{name: array} of a pytorch_model.bin, when PyTorch is installed."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    folder = os.path.dirname(path)
    raise InputError(
        "%s holds pytorch_model.bin only, which needs PyTorch to read. Get "
        "model.safetensors instead: `huggingface-cli download <model id> "
        "model.safetensors --local-dir %s` (most Hub models have it), or, "
        "where transformers and torch are installed, load the model and save "
        "it again with save_pretrained(%s, safe_serialization=True)." % (
            folder, folder, folder)) from None
  state = torch.load(path, map_location="cpu", weights_only=True)
  return {name: value.float().numpy() for name, value in state.items()}


def read_hf_tensors(folder):
  """{name: array} of the weights in a Hugging Face folder."""
  single = os.path.join(folder, "model.safetensors")
  index = os.path.join(folder, "model.safetensors.index.json")
  if os.path.exists(single):
    return load_safetensors([single])
  if os.path.exists(index):
    weight_map = read_json_file(index, "the safetensors index").get(
        "weight_map", {})
    files = sorted(set(weight_map.values()))
    return load_safetensors([os.path.join(folder, name) for name in files])
  if os.path.exists(os.path.join(folder, "pytorch_model.bin")):
    return load_pytorch_bin(os.path.join(folder, "pytorch_model.bin"))
  raise InputError("%s holds no model.safetensors (and no "
                   "pytorch_model.bin)." % folder)


def canonical_hf_names(tensors, source):
  """Renames Hugging Face tensors to BertForPreTraining's names.

  Adds the "bert." prefix that a bare BertModel's file lacks, renames old
  LayerNorm gamma/beta to weight/bias, drops position/token-type buffers,
  and checks that the decoder is tied to the word embeddings (the only
  form Google's layout can hold).
  """
  renamed = {}
  for name, value in tensors.items():
    if name.startswith(("embeddings.", "encoder.", "pooler.")):
      name = "bert." + name
    if name.endswith(".gamma"):
      name = name[:-len("gamma")] + "weight"
    elif name.endswith(".beta"):
      name = name[:-len("beta")] + "bias"
    if name not in HF_BUFFERS:
      renamed[name] = value
  decoder = renamed.pop(HF_DECODER_WEIGHT, None)
  if decoder is not None and (
      HF_WORD_EMBEDDINGS not in renamed or
      not np.array_equal(decoder, renamed[HF_WORD_EMBEDDINGS])):
    raise InputError(
        "%s: %s differs from the word embeddings. Google's BERT ties the "
        "masked-LM output layer to them, so an untied decoder cannot "
        "convert." % (source, HF_DECODER_WEIGHT))
  decoder_bias = renamed.pop(HF_DECODER_BIAS, None)
  if decoder_bias is not None:
    bias = renamed.setdefault("cls.predictions.bias", decoder_bias)
    if not np.array_equal(bias, decoder_bias):
      raise InputError("%s: %s differs from cls.predictions.bias" % (
          source, HF_DECODER_BIAS))
  return renamed


def read_huggingface(folder):
  """Reads a Hugging Face BERT folder.

  Returns (bert_config dict, {Google name: float32 array}, vocab path,
  tokenizer_config dict or {}).
  """
  config_path = os.path.join(folder, "config.json")
  if not os.path.exists(config_path):
    hint = ""
    if os.path.exists(os.path.join(folder, "bert_config.json")):
      hint = " It holds bert_config.json: convert it with --from google."
    raise InputError("--input_dir %s has no config.json; a Hugging Face "
                     "BERT folder holds config.json, model.safetensors and "
                     "vocab.txt.%s" % (folder, hint))
  config = google_config_from_hf(read_json_file(config_path, "config"),
                                 config_path)
  try:
    bert_config = modeling.BertConfig.from_dict(config)
  except ValueError as error:
    raise InputError("%s: %s" % (config_path, error)) from None
  vocab_file = os.path.join(folder, "vocab.txt")
  if not os.path.exists(vocab_file):
    raise InputError("--input_dir %s has no vocab.txt (the WordPiece vocab "
                     "is needed to build the records)." % folder)
  check_vocab(vocab_file, bert_config, "--input_dir")

  hf_tensors = canonical_hf_names(read_hf_tensors(folder), folder)
  expected = google_variable_shapes(bert_config)
  google_for_hf = {}
  for google_name in expected:
    hf_name, transpose = hf_name_for(google_name)
    google_for_hf[hf_name] = (google_name, transpose)
  unknown = sorted(set(hf_tensors) - set(google_for_hf))
  if unknown:
    raise InputError(
        "%s holds tensors that are not part of BERT's pretraining layout: "
        "%s. Only BertForPreTraining, BertForMaskedLM and BertModel "
        "checkpoints convert (a fine-tuned task head does not)." % (
            folder, ", ".join(unknown[:10])))
  tensors = {}
  for hf_name, value in hf_tensors.items():
    google_name, transpose = google_for_hf[hf_name]
    value = np.asarray(value, dtype=np.float32)
    tensors[google_name] = np.ascontiguousarray(value.T if transpose
                                                else value)
  check_google_tensors(tensors, bert_config, folder)

  tokenizer_path = os.path.join(folder, "tokenizer_config.json")
  tokenizer_config = {}
  if os.path.exists(tokenizer_path):
    tokenizer_config = read_json_file(tokenizer_path, "tokenizer config")
  return config, tensors, vocab_file, tokenizer_config


# ---------------------------------------------------------------------------
# Reading a Google checkpoint.


def find_google_checkpoint(path):
  """The checkpoint prefix that --input_dir names (a folder or a prefix)."""
  if tf.io.gfile.exists(path + ".index"):
    return path
  if not os.path.isdir(path):
    raise InputError("--input_dir %s is neither a folder nor a checkpoint "
                     "(no %s.index)." % (path, path))
  latest = tf.train.latest_checkpoint(path)
  if latest:
    return latest
  release = os.path.join(path, "bert_model.ckpt")
  if os.path.exists(release + ".index"):
    return release
  found = sorted(glob.glob(os.path.join(path, "*.index")))
  if len(found) == 1:
    return found[0][:-len(".index")]
  if not found:
    hint = ""
    if os.path.exists(os.path.join(path, "config.json")):
      hint = " It holds config.json: convert it with --from huggingface."
    raise InputError("--input_dir %s holds no TensorFlow checkpoint "
                     "(*.index).%s" % (path, hint))
  raise InputError("--input_dir %s holds several checkpoints (%s); name one, "
                   "e.g. --input_dir %s" % (
                       path, ", ".join(os.path.basename(name)
                                       for name in found),
                       found[-1][:-len(".index")]))


def model_variables(checkpoint):
  """{name: float32 array} of a Google checkpoint, optimizer state left out."""
  try:
    reader = tf.train.load_checkpoint(checkpoint)
    names = reader.get_variable_to_shape_map()
    tensors = {}
    skipped = 0
    for name in sorted(names):
      if is_training_only(name):
        skipped += 1
        continue
      tensors[name] = np.asarray(reader.get_tensor(name), dtype=np.float32)
  except (tf.errors.OpError, ValueError) as error:
    raise InputError("Cannot read checkpoint %s: %s" % (checkpoint,
                                                        error)) from None
  if skipped:
    logging.info("Left out %d optimizer/step variables of %s", skipped,
                 checkpoint)
  return tensors


def read_google(path, bert_config_file, vocab_file):
  """Reads a Google checkpoint; returns (config dict, tensors, vocab path)."""
  checkpoint = find_google_checkpoint(path)
  folder = os.path.dirname(checkpoint)
  if not bert_config_file:
    bert_config_file = output_config.stored_config_path(folder)
    if not os.path.exists(bert_config_file):
      raise InputError(
          "%s has no bert_config.json; pass the model's config with "
          "--bert_config_file (the config the checkpoint was trained "
          "with)." % folder)
  else:
    # A trainer's output_dir and a release folder store the true config.
    output_config.check_config(folder, bert_config_file,
                               what="stored with --input_dir %s" % path)
  if not vocab_file:
    vocab_file = os.path.join(folder, "vocab.txt")
    if not os.path.exists(vocab_file):
      raise InputError("%s has no vocab.txt; pass it with --vocab_file." %
                       folder)
  try:
    bert_config = modeling.BertConfig.from_json_file(bert_config_file)
  except ValueError as error:
    raise InputError("--bert_config_file: %s" % error) from None
  config = bert_config.to_dict()
  if bert_config.hidden_act not in GOOGLE_TO_HF_ACTIVATION:
    raise InputError("%s: hidden_act %r has no Hugging Face equivalent "
                     "(supported: %s)." % (bert_config_file,
                                           bert_config.hidden_act, ", ".join(
                                               sorted(GOOGLE_TO_HF_ACTIVATION))))
  check_vocab(vocab_file, bert_config, "--vocab_file")
  logging.info("Reading %s", checkpoint)
  tensors = model_variables(checkpoint)
  if any(name in tensors for name in CLASSIFIER_NAMES):
    config["classifier"] = classifier_config(tensors, bert_config, checkpoint)
  check_google_tensors({name: value for name, value in tensors.items()
                        if name not in CLASSIFIER_NAMES}, bert_config,
                       checkpoint)
  return config, tensors, vocab_file


def classifier_config(tensors, bert_config, checkpoint):
  """config.json's classifier keys for a run_classifier.py checkpoint.

  num_labels, id2label and label2id come from the task.json that
  run_classifier.py saves next to its checkpoints (LABEL_<i> without one);
  a regression (sts-b) gets problem_type "regression".
  """
  missing = [name for name in CLASSIFIER_NAMES if name not in tensors]
  if missing:
    raise InputError("%s holds half a classifier: it lacks %s" % (
        checkpoint, ", ".join(missing)))
  num_labels = tensors["output_weights"].shape[0]
  if (list(tensors["output_weights"].shape) !=
      [num_labels, bert_config.hidden_size] or
      list(tensors["output_bias"].shape) != [num_labels]):
    raise InputError(
        "%s: the classifier's output_weights %s and output_bias %s do not "
        "fit hidden_size %d" % (checkpoint,
                                list(tensors["output_weights"].shape),
                                list(tensors["output_bias"].shape),
                                bert_config.hidden_size))
  task = classifier_data.read_task_file(os.path.dirname(checkpoint))
  if task is None:
    logging.warning("No %s next to %s: the classes are named LABEL_0.."
                    "LABEL_%d.", classifier_data.TASK_FILE, checkpoint,
                    num_labels - 1)
    labels, regression = ["LABEL_%d" % i for i in range(num_labels)], False
  else:
    labels, regression = task["labels"], task["regression"]
  if regression:
    labels = ["LABEL_0"]
  if len(labels) != num_labels:
    raise InputError("%s has %d classes but its %s lists %d labels" % (
        checkpoint, num_labels, classifier_data.TASK_FILE, len(labels)))
  return {
      "num_labels": num_labels,
      "id2label": {str(index): label for index, label in enumerate(labels)},
      "label2id": {label: index for index, label in enumerate(labels)},
      "problem_type": ("regression" if regression
                       else "single_label_classification"),
  }


# ---------------------------------------------------------------------------
# Writing.


def write_json(path, value):
  """Writes a JSON object, indented, with a final newline."""
  with open(path, "w", encoding="utf-8") as f:
    json.dump(value, f, indent=2, sort_keys=True)
    f.write("\n")


def write_google(folder, config, tensors, vocab_file):
  """Writes bert_config.json, bert_model.ckpt.* and vocab.txt (if given)."""
  write_json(os.path.join(folder, "bert_config.json"),
             {key: config[key] for key in GOOGLE_CONFIG_KEYS})
  names = sorted(tensors)
  # SaveV2 writes variables under exactly these names, as Google's
  # releases hold them; no graph or object structure is involved.
  tf.raw_ops.SaveV2(prefix=os.path.join(folder, "bert_model.ckpt"),
                    tensor_names=names, shape_and_slices=[""] * len(names),
                    tensors=[tensors[name] for name in names])
  if vocab_file:
    shutil.copyfile(vocab_file, os.path.join(folder, "vocab.txt"))


def hf_architecture(tensors):
  """The transformers class whose layout the tensors fill."""
  if "output_weights" in tensors:
    return "BertForSequenceClassification"
  if has_prefix(tensors, NEXT_SENTENCE_PREFIX):
    return "BertForPreTraining"
  if has_prefix(tensors, "cls/predictions/"):
    return "BertForMaskedLM"
  return "BertModel"


def hf_config_for(config, tensors, pad_token_id):
  """config.json's dict for a bert_config dict and the tensors it holds."""
  hf_config = {key: config[key] for key in GOOGLE_CONFIG_KEYS}
  hf_config.update(
      architectures=[hf_architecture(tensors)], model_type="bert",
      hidden_act=GOOGLE_TO_HF_ACTIVATION[config["hidden_act"]],
      layer_norm_eps=1e-12, position_embedding_type="absolute",
      pad_token_id=pad_token_id, torch_dtype="float32")
  hf_config.update(config.get("classifier", {}))
  return hf_config


def tokenizer_config_for(do_lower_case, max_length):
  """tokenizer_config.json's dict for BERT's WordPiece tokenizer."""
  return {
      "tokenizer_class": "BertTokenizer", "do_lower_case": do_lower_case,
      "model_max_length": max_length, "unk_token": "[UNK]",
      "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
      "mask_token": "[MASK]", "tokenize_chinese_chars": True,
      "strip_accents": None,
  }


def write_huggingface(folder, config, tensors, vocab_file, do_lower_case):
  """Writes config.json, model.safetensors, vocab.txt, tokenizer_config.json.

  The decoder weight and bias are left out, as save_pretrained does: they
  are tied to the word embeddings and cls.predictions.bias.
  """
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  hf_tensors = {}
  for google_name, value in tensors.items():
    hf_name, transpose = hf_name_for(google_name)
    hf_tensors[hf_name] = np.ascontiguousarray(value.T if transpose
                                               else value)
  # transformers reads only files whose metadata names the "pt" format.
  save_file(hf_tensors, os.path.join(folder, "model.safetensors"),
            metadata={"format": "pt"})
  vocab = tokenization.load_vocab(vocab_file)
  write_json(os.path.join(folder, "config.json"),
             hf_config_for(config, tensors, vocab.get("[PAD]", 0)))
  write_json(os.path.join(folder, "tokenizer_config.json"),
             tokenizer_config_for(do_lower_case,
                                  config["max_position_embeddings"]))
  shutil.copyfile(vocab_file, os.path.join(folder, "vocab.txt"))


def checkpoint_files(folder):
  """The checkpoint files that `folder` holds (any format)."""
  found = set()
  for pattern in CHECKPOINT_PATTERNS:
    found.update(glob.glob(os.path.join(folder, pattern)))
  return sorted(found)


def check_output_dir(output_dir, input_path, overwrite):
  """Raises InputError when writing output_dir would lose data."""
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise InputError("--output_dir %s is a file, not a folder." % output_dir)
  input_folder = (input_path if os.path.isdir(input_path)
                  else os.path.dirname(input_path) or ".")
  if os.path.realpath(output_dir) == os.path.realpath(input_folder):
    raise InputError("--output_dir %s is the input folder; write the "
                     "conversion to another folder." % output_dir)
  existing = checkpoint_files(output_dir) if os.path.isdir(output_dir) else []
  if existing and not overwrite:
    raise InputError(
        "--output_dir %s already holds a checkpoint (%s); pass --overwrite to "
        "replace it." % (output_dir, ", ".join(
            os.path.basename(name) for name in existing)))


def temporary_folder(output_dir):
  """A fresh hidden folder next to output_dir, on the same file system.

  temporary_files removes it on an error or a signal; one that a killed
  earlier conversion left is removed here.
  """
  parent, name = os.path.split(os.path.abspath(output_dir))
  os.makedirs(parent, exist_ok=True)
  temporary_files.remove_stale(parent, re.escape(name))
  return temporary_files.temporary_dir("." + name, parent)


def publish(temp_dir, output_dir):
  """Moves the finished files into output_dir.

  A new output_dir is the renamed temporary folder. In an existing one, the
  old checkpoint files go first, then each new file is renamed in. The
  files and a new folder get the modes the umask gives (the temporary
  folder is private, 700, and safetensors writes 600).
  """
  temporary_files.follow_umask(temp_dir)
  if not os.path.exists(output_dir):
    os.rename(temp_dir, output_dir)
    return
  for path in checkpoint_files(output_dir):
    os.remove(path)
  for name in sorted(os.listdir(temp_dir)):
    os.replace(os.path.join(temp_dir, name), os.path.join(output_dir, name))
  os.rmdir(temp_dir)


def convert(source_format, target_format, input_dir, output_dir,
            bert_config_file=None, vocab_file=None, do_lower_case=True,
            overwrite=False):
  """Converts the checkpoint at input_dir into output_dir (see the flags).

  Returns the tensors written, under their Google names.
  """
  if source_format == target_format:
    raise InputError("--from and --to are both %s; nothing to convert." %
                     source_format)
  if not os.path.exists(input_dir) and not tf.io.gfile.exists(
      input_dir + ".index"):
    raise InputError("--input_dir %s does not exist." % input_dir)
  check_output_dir(output_dir, input_dir, overwrite)
  if source_format == "huggingface":
    if not os.path.isdir(input_dir):
      raise InputError("--input_dir %s is not a folder." % input_dir)
    config, tensors, vocab_file, tokenizer_config = read_huggingface(
        input_dir)
  else:
    config, tensors, vocab_file = read_google(input_dir, bert_config_file,
                                              vocab_file)

  temp_dir = temporary_folder(output_dir)
  try:
    if target_format == "google":
      write_google(temp_dir, config, tensors, vocab_file)
    else:
      write_huggingface(temp_dir, config, tensors, vocab_file, do_lower_case)
    publish(temp_dir, output_dir)
  finally:
    temporary_files.discard(temp_dir)

  logging.info("Wrote %d tensors to %s (%s format). Parts: embeddings, %d "
               "encoder layers%s.", len(tensors), output_dir, target_format,
               config["num_hidden_layers"],
               "".join(", " + head for head in heads_held(tensors)))
  if not has_prefix(tensors, NEXT_SENTENCE_PREFIX) and (
      "classifier" not in config):
    logging.warning(
        "The model has no next-sentence head (cls/seq_relationship). As a "
        "teacher, produce_teacher_labels.py stores no next_sentence_probs; "
        "train the student with --nsp_loss hard or none.")
  if source_format == "huggingface" and "do_lower_case" in tokenizer_config:
    logging.info("The tokenizer's do_lower_case is %s: pass --do_lower_case "
                 "%s to create_pretraining_data.py.",
                 tokenizer_config["do_lower_case"],
                 tokenizer_config["do_lower_case"])
  return tensors
