# coding=utf-8
"""Exports a trained model for serving: a SavedModel on raw text, TFLite.

The library behind `convert_checkpoint.py --from google --to saved_model` and
`--to tflite`. The input is a run_classifier.py --output_dir (bert_config.json,
task.json, its latest checkpoint) or, with feature_extractor=True, any Google
checkpoint (a stage-V student): the export then returns the encoder's
sequence_output and pooled_output instead of the classifier's outputs.

SavedModel (<output_dir>/1/, the version folder TensorFlow Serving reads):
  * serving_default: text_a (and text_b for a pair task), tf.string [batch]
    -> probabilities [batch, labels] (task.json's order), logits, label (the
    predicted label's name; the score for a regression). Tokenization runs
    in the graph (TextTokenizer: tensorflow_text ops, vocab.txt as an asset)
    and gives FullTokenizer's ids; texts are cut to max_seq_length as
    run_classifier.py cuts them, and a request is padded to its longest
    input only.
  * serving_ids: input_ids, input_mask, segment_ids, int32 [batch, length].
TFLite (<output_dir>/model.tflite): the ids signature only (TFLite has no
string ops), fp32 or with int8 weights (dynamic-range quantization).

Both write vocab.txt and serving.json (labels, lower-casing, max_seq_length,
inputs and outputs) next to the model, and, like every conversion, build in
a temporary folder that is renamed when complete.
"""

import json
import os
import shutil

from absl import logging
import tensorflow as tf
import tensorflow_text as tf_text
from tensorflow_text.python.ops import bert_tokenizer

from bert_distillation import checkpoint_conversion
from bert_distillation import classifier_data
from bert_distillation import classifier_model
from bert_distillation import command_line
from bert_distillation import temporary_files
import modeling
import tokenization

tf1 = tf.compat.v1

InputError = command_line.InputError

FORMATS = ("saved_model", "tflite")
QUANTIZE_CHOICES = ("none", "int8")
MODEL_VERSION = "1"
TFLITE_FILE = "model.tflite"
SERVING_FILE = "serving.json"
VOCAB_FILE = "vocab.txt"
DEFAULT_SIGNATURE = "serving_default"
IDS_SIGNATURE = "serving_ids"
ID_INPUTS = ("input_ids", "input_mask", "segment_ids")

# tokenization.WordpieceTokenizer's limit: a longer word is one [UNK].
MAX_CHARS_PER_WORD = 200
# UTF-8 needs at most 4 bytes a character: tensorflow_text's byte limit never
# cuts before the character limit above does.
MAX_BYTES_PER_WORD = 4 * MAX_CHARS_PER_WORD

# tokenization.BasicTokenizer in regular expressions (RE2). Characters it
# drops: NUL, U+FFFD and the control (Cc) and format (Cf) characters except
# tab, newline and carriage return.
DROPPED_CHARACTERS = (r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\p{Cf}"
                      r"\x{fffd}]")
# Characters it splits words at: what Python's str.split() and its
# _is_whitespace() call whitespace (after the drop above).
WHITESPACE = r"[\t\n\r \p{Zs}\x{2028}\x{2029}]"
# Then each punctuation character and CJK ideograph is a word of its own;
# tensorflow_text's BertTokenizer uses the same ranges as Google's.
WORD_DELIMITERS = bert_tokenizer._DELIM_REGEX_PATTERN  # pylint: disable=protected-access
KEPT_DELIMITERS = bert_tokenizer._KEEP_DELIM_NO_WHITESPACE_PATTERN  # pylint: disable=protected-access


# ---------------------------------------------------------------------------
# Tokenization in the graph.


class TextTokenizer(tf.Module):
  """FullTokenizer and run_classifier.py's features, in TensorFlow ops.

  Call it with text_a (and text_b), tf.string [batch]; it returns int32
  input_ids, input_mask and segment_ids [batch, longest input], each row
  [CLS] a [SEP] (b [SEP]) cut to max_seq_length as
  classifier_data.example_ids cuts it.
  """

  def __init__(self, vocab_file, do_lower_case, max_seq_length):
    super().__init__()
    vocab = tokenization.load_vocab(vocab_file)
    self.cls_id = vocab["[CLS]"]
    self.sep_id = vocab["[SEP]"]
    self.do_lower_case = do_lower_case
    self.max_seq_length = max_seq_length
    table = tf.lookup.StaticVocabularyTable(
        tf.lookup.TextFileInitializer(
            vocab_file, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
            tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER),
        num_oov_buckets=1)
    self.wordpiece = tf_text.WordpieceTokenizer(
        table, suffix_indicator="##", max_bytes_per_word=MAX_BYTES_PER_WORD,
        token_out_type=tf.int64, unknown_token="[UNK]")

  def words(self, text):
    """BasicTokenizer: ragged [batch, words] of cleaned, split words."""
    text = tf.strings.regex_replace(text, DROPPED_CHARACTERS, "")
    text = tf.strings.regex_replace(text, WHITESPACE, " ")
    if self.do_lower_case:
      text = tf.strings.lower(text, encoding="utf-8")
      text = tf_text.normalize_utf8(text, "NFD")
      text = tf.strings.regex_replace(text, r"\p{Mn}", "")
    words = tf_text.regex_split(text, WORD_DELIMITERS, KEPT_DELIMITERS)
    too_long = tf.strings.length(words.flat_values,
                                 unit="UTF8_CHAR") > MAX_CHARS_PER_WORD
    return words.with_flat_values(
        tf.where(too_long, "[UNK]", words.flat_values))

  def token_ids(self, text):
    """WordPiece ids, int32 ragged [batch, tokens]."""
    pieces = self.wordpiece.tokenize(self.words(text))
    return tf.cast(pieces.merge_dims(1, 2), tf.int32)

  def __call__(self, text_a, text_b=None):
    tokens_a = self.token_ids(text_a)
    if text_b is None:
      tokens_a = tokens_a[:, :self.max_seq_length - 2]
      segments = [tokens_a]
    else:
      tokens_b = self.token_ids(text_b)
      length_a, length_b = truncated_lengths(
          tokens_a.row_lengths(), tokens_b.row_lengths(),
          self.max_seq_length - 3)
      segments = [keep_first(tokens_a, length_a),
                  keep_first(tokens_b, length_b)]
    input_ids, segment_ids = tf_text.combine_segments(
        segments, start_of_sequence_id=self.cls_id,
        end_of_segment_id=self.sep_id)
    input_mask = tf.ones_like(input_ids)
    return {"input_ids": input_ids.to_tensor(),
            "input_mask": input_mask.to_tensor(),
            "segment_ids": tf.cast(segment_ids, tf.int32).to_tensor()}


def truncated_lengths(length_a, length_b, max_length):
  """The lengths classifier_data.truncate_pair leaves, for whole batches.

  It shortens the longer list one token at a time (b on a tie), which
  leaves a with min(length_a, max(max_length - length_b, ceil(max / 2))).
  """
  half = (max_length + 1) // 2
  new_a = tf.minimum(length_a, tf.maximum(max_length - length_b,
                                          tf.cast(half, length_a.dtype)))
  new_b = tf.minimum(length_b, max_length - new_a)
  return new_a, new_b


def keep_first(tokens, lengths):
  """The first lengths[i] tokens of each row of a ragged [batch, tokens]."""
  positions = tf.ragged.range(tokens.row_lengths())
  return tf.ragged.boolean_mask(tokens,
                                positions < tf.expand_dims(lengths, 1))


# ---------------------------------------------------------------------------
# The model.


def encoder_function(bert_config, tensors, num_outputs):
  """modeling.py's graph as a function of the ids, holding the weights.

  A tf.compat.v1.wrap_function of int32 input_ids, input_mask, segment_ids
  [batch, length] returning {"logits"} (num_outputs classes: the
  classifier_model head) or, with num_outputs 0, {"sequence_output",
  "pooled_output"}. Its variables hold `tensors` ({Google name: array}).
  """

  def build(input_ids, input_mask, segment_ids):
    model = modeling.BertModel(
        config=bert_config, is_training=False, input_ids=input_ids,
        input_mask=input_mask, token_type_ids=segment_ids)
    if num_outputs:
      return {"logits": classifier_model.classifier_logits(
          model.get_pooled_output(), num_outputs, False,
          bert_config.initializer_range)}
    return {"sequence_output": model.get_sequence_output(),
            "pooled_output": model.get_pooled_output()}

  spec = tf.TensorSpec([None, None], tf.int32)
  function = tf1.wrap_function(build, [spec] * len(ID_INPUTS))
  for variable in function.variables:
    variable.assign(tensors[variable.name.split(":")[0]])
  return function


def outputs_for(logits, labels, regression):
  """probabilities, logits and label (name, or the score) from logits."""
  if regression:
    return {"probabilities": logits, "logits": logits, "label": logits[:, 0]}
  probabilities = tf.nn.softmax(logits, axis=-1)
  names = tf.constant(labels)
  return {"probabilities": probabilities, "logits": logits,
          "label": tf.gather(names, tf.argmax(logits, axis=-1))}


class ServingModel(tf.Module):
  """What the SavedModel holds: the tokenizer, the encoder, its variables."""

  def __init__(self, encoder, tokenizer, task, text_b):
    super().__init__()
    self.encoder = encoder
    self.encoder_variables = list(encoder.variables)
    self.tokenizer = tokenizer
    self.task = task
    self.text_b = text_b

  def model_outputs(self, input_ids, input_mask, segment_ids):
    """The model's outputs for ids [batch, length]."""
    outputs = self.encoder(input_ids, input_mask, segment_ids)
    if self.task is None:
      return outputs
    return outputs_for(outputs["logits"], self.task["labels"],
                       self.task["regression"])

  def signatures(self):
    """{signature name: concrete function} for tf.saved_model.save."""
    ids_spec = tf.TensorSpec([None, None], tf.int32)
    text_spec = tf.TensorSpec([None], tf.string)

    @tf.function(input_signature=[ids_spec] * 3)
    def serving_ids(input_ids, input_mask, segment_ids):
      return self.model_outputs(input_ids, input_mask, segment_ids)

    if self.text_b:
      @tf.function(input_signature=[text_spec, text_spec])
      def serving_text(text_a, text_b):
        return self.model_outputs(**self.tokenizer(text_a, text_b))
    else:
      @tf.function(input_signature=[text_spec])
      def serving_text(text_a):
        return self.model_outputs(**self.tokenizer(text_a))

    return {DEFAULT_SIGNATURE: serving_text.get_concrete_function(),
            IDS_SIGNATURE: serving_ids.get_concrete_function()}


class IdsModel(tf.Module):
  """The ids signature alone, for the TFLite converter."""

  def __init__(self, encoder, task):
    super().__init__()
    self.encoder = encoder
    self.encoder_variables = list(encoder.variables)
    self.task = task

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)] * 3)
  def __call__(self, input_ids, input_mask, segment_ids):
    outputs = self.encoder(input_ids, input_mask, segment_ids)
    if self.task is None:
      return outputs
    logits = outputs["logits"]
    if self.task["regression"]:
      return {"probabilities": logits}
    return {"probabilities": tf.nn.softmax(logits, axis=-1)}


# ---------------------------------------------------------------------------
# Reading the input and writing the formats.


def read_model(input_dir, bert_config_file, vocab_file, feature_extractor):
  """(BertConfig, tensors, vocab path, task dict or None), checked.

  A classifier export needs a run_classifier.py --output_dir: a checkpoint
  with a classifier and a task.json next to it.
  """
  config, tensors, vocab_file = checkpoint_conversion.read_google(
      input_dir, bert_config_file, vocab_file)
  bert_config = modeling.BertConfig.from_dict(
      {key: config[key] for key in modeling.CONFIG_KEYS})
  if feature_extractor:
    return bert_config, tensors, vocab_file, None
  checkpoint = checkpoint_conversion.find_google_checkpoint(input_dir)
  task = classifier_data.read_task_file(os.path.dirname(checkpoint))
  if task is None or "classifier" not in config:
    raise InputError(
        "--input_dir %s has no %s%s: a classifier exports from a "
        "run_classifier.py --output_dir. To export the encoder alone (a "
        "stage-V student), pass --feature_extractor." % (
            input_dir, classifier_data.TASK_FILE,
            "" if task is None else " classifier (output_weights)"))
  return bert_config, tensors, vocab_file, task


def takes_text_b(task, text_b):
  """Whether serving_default takes text_b: the flag, else the task's files."""
  if text_b is not None:
    return text_b
  if task is None:
    return False
  layouts = classifier_data.get_task(task["task_name"]).layouts
  return layouts is not None and layouts["train"].text_b is not None


def write_vocab(vocab_file, path):
  """vocab.txt as tokenization.load_vocab reads it: one token per id."""
  vocab = tokenization.load_vocab(vocab_file)
  tokens = sorted(vocab, key=vocab.get)
  if [vocab[token] for token in tokens] != list(range(len(tokens))):
    raise InputError("--vocab_file %s repeats tokens; every line must be a "
                     "distinct token." % vocab_file)
  missing = [token for token in ("[CLS]", "[SEP]", "[UNK]")
             if token not in vocab]
  if missing:
    raise InputError("--vocab_file %s has no %s token." % (
        vocab_file, " or ".join(missing)))
  with open(path, "w", encoding="utf-8") as f:
    f.write("".join(token + "\n" for token in tokens))


def serving_description(target_format, task, text_b, do_lower_case,
                        max_seq_length, quantize):
  """serving.json: what a client needs to call the model."""
  if target_format == "saved_model":
    inputs = ["text_a"] + (["text_b"] if text_b else [])
  else:
    inputs = list(ID_INPUTS)
  if task is None:
    outputs = ["sequence_output", "pooled_output"]
  elif target_format == "saved_model":
    outputs = ["probabilities", "logits", "label"]
  else:
    outputs = ["probabilities"]
  return {"format": target_format, "inputs": inputs, "outputs": outputs,
          "labels": task["labels"] if task else None,
          "regression": task["regression"] if task else None,
          "task_name": task["task_name"] if task else None,
          "do_lower_case": do_lower_case, "max_seq_length": max_seq_length,
          "quantize": quantize}


def write_saved_model(folder, encoder, tokenizer, task, text_b):
  """Writes the SavedModel to folder/MODEL_VERSION."""
  model = ServingModel(encoder, tokenizer, task, text_b)
  tf.saved_model.save(model, os.path.join(folder, MODEL_VERSION),
                      signatures=model.signatures())


def tflite_model(encoder, task, quantize, scratch):
  """The TFLite flatbuffer (bytes) of the ids signature."""
  model = IdsModel(encoder, task)
  saved = os.path.join(scratch, "ids_model")
  tf.saved_model.save(model, saved, signatures={
      DEFAULT_SIGNATURE: model.__call__.get_concrete_function()})
  converter = tf.lite.TFLiteConverter.from_saved_model(saved)
  if quantize == "int8":
    # No representative dataset: dynamic range, int8 weights.
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  result = converter.convert()
  shutil.rmtree(saved)
  return result


def check_flags(target_format, quantize, input_dir, output_dir):
  """Raises InputError for flags the export cannot honour."""
  if target_format not in FORMATS:
    raise InputError("--to %s is not a serving format (%s)." % (
        target_format, ", ".join(FORMATS)))
  if quantize not in QUANTIZE_CHOICES:
    raise InputError("--quantize %s is not one of %s." % (
        quantize, ", ".join(QUANTIZE_CHOICES)))
  if quantize != "none" and target_format != "tflite":
    raise InputError("--quantize %s applies to --to tflite only." % quantize)
  if not os.path.exists(input_dir) and not tf.io.gfile.exists(
      input_dir + ".index"):
    raise InputError("--input_dir %s does not exist." % input_dir)
  if os.path.exists(output_dir):
    raise InputError("--output_dir %s exists; an export writes a new folder "
                     "(remove it, or choose another)." % output_dir)


def check_max_seq_length(max_seq_length, bert_config):
  """Raises InputError unless the model can take max_seq_length tokens."""
  if max_seq_length < 3:
    raise InputError("--max_seq_length %d: [CLS] and two [SEP] need at "
                     "least 3." % max_seq_length)
  if max_seq_length > bert_config.max_position_embeddings:
    raise InputError(
        "--max_seq_length %d is longer than the model's "
        "max_position_embeddings %d." % (max_seq_length,
                                         bert_config.max_position_embeddings))


def export(target_format, input_dir, output_dir, bert_config_file=None,
           vocab_file=None, do_lower_case=True, max_seq_length=128,
           quantize="none", feature_extractor=False, text_b=None):
  """Exports the model at input_dir to output_dir (see the module docstring).

  Returns serving.json's dict.
  """
  check_flags(target_format, quantize, input_dir, output_dir)
  bert_config, tensors, vocab_file, task = read_model(
      input_dir, bert_config_file, vocab_file, feature_extractor)
  check_max_seq_length(max_seq_length, bert_config)
  text_b = takes_text_b(task, text_b)
  description = serving_description(target_format, task, text_b,
                                    do_lower_case, max_seq_length, quantize)

  temp_dir = checkpoint_conversion.temporary_folder(output_dir)
  try:
    vocab_path = os.path.join(temp_dir, VOCAB_FILE)
    write_vocab(vocab_file, vocab_path)
    encoder = encoder_function(
        bert_config, tensors, len(task["labels"]) or 1 if task else 0)
    if target_format == "saved_model":
      tokenizer = TextTokenizer(vocab_path, do_lower_case, max_seq_length)
      write_saved_model(temp_dir, encoder, tokenizer, task, text_b)
    else:
      flatbuffer = tflite_model(encoder, task, quantize, temp_dir)
      with open(os.path.join(temp_dir, TFLITE_FILE), "wb") as f:
        f.write(flatbuffer)
    checkpoint_conversion.write_json(os.path.join(temp_dir, SERVING_FILE),
                                     description)
    checkpoint_conversion.publish(temp_dir, output_dir)
  finally:
    temporary_files.discard(temp_dir)
  logging.info("Wrote %s (%s) to %s", target_format,
               "features" if task is None else task["task_name"], output_dir)
  return description
