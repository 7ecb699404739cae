# coding=utf-8
"""Converts BERT checkpoints between Google's format and Hugging Face's.

--from huggingface --to google: a Hugging Face BERT folder (config.json,
model.safetensors, vocab.txt) becomes a Google release folder
(bert_config.json, bert_model.ckpt.{index,data-00000-of-00001}, vocab.txt),
which produce_teacher_labels.py and the trainers' --init_checkpoint read as
they are.

--from google --to huggingface: a Google checkpoint (a release folder, a
trainer's --output_dir, or one model.ckpt-N) becomes a Hugging Face folder
(config.json, model.safetensors, vocab.txt, tokenizer_config.json) that
transformers' BertForPreTraining (or BertForMaskedLM) and AutoTokenizer load.
A run_classifier.py --output_dir becomes a BertForSequenceClassification
(classifier.weight and .bias from output_weights and output_bias; num_labels,
id2label and label2id from its task.json; problem_type "regression" for
sts-b).

Every tensor is copied bit for bit. Dense kernels are transposed: Google
stores them [in, out], Hugging Face [out, in]. The activation keeps its
meaning, not its name: Google's "gelu" is the tanh approximation, which
Hugging Face calls "gelu_new"; Hugging Face's "gelu" is the exact erf form,
which bert_config.json calls "gelu_exact".

A model without a next-sentence head (BertForMaskedLM) converts to a
checkpoint without cls/seq_relationship; a bare BertModel to one without any
head. PyTorch is not needed: tensors are read and written with safetensors'
numpy API. The conversion itself lives in
bert_distillation/checkpoint_conversion.py.

--from google --to saved_model / --to tflite [--quantize int8]: a
run_classifier.py --output_dir becomes a model to serve: a SavedModel that
takes raw text (tokenized in the graph) and returns probabilities, logits
and the predicted label, written to <output_dir>/1/ for TensorFlow Serving;
or a TFLite model of the token ids, fp32 or with int8 weights. With
--feature_extractor, any Google checkpoint (a stage-V student) exports its
sequence_output and pooled_output instead. See docs/serving.md and
bert_distillation/serving_export.py.
"""

from absl import flags

from bert_distillation import checkpoint_conversion
from bert_distillation import command_line
from bert_distillation import serving_export

FORMATS = checkpoint_conversion.FORMATS

flags.DEFINE_enum("from", None, FORMATS, "The format of --input_dir.")
flags.DEFINE_enum("to", None, FORMATS + serving_export.FORMATS,
                  "The format to write to --output_dir. saved_model and "
                  "tflite: a model to serve (--from google only).")
flags.DEFINE_string(
    "input_dir", None,
    "The checkpoint to convert. Hugging Face: a folder with config.json, "
    "model.safetensors and vocab.txt. Google: a release folder "
    "(bert_model.ckpt), a trainer's output_dir (its latest checkpoint) or "
    "one checkpoint such as output_dir/model.ckpt-300.")
flags.DEFINE_string("output_dir", None,
                    "The folder to write; created, or filled if it exists.")
flags.DEFINE_string(
    "bert_config_file", None,
    "--from google: the model's bert_config.json. Default: the one in the "
    "input folder (a release folder, or a trainer's output_dir, which "
    "stores the config it trained under); when both exist they must agree.")
flags.DEFINE_string(
    "vocab_file", None,
    "--from google: the model's vocab.txt, when the input folder has none.")
flags.DEFINE_bool(
    "do_lower_case", True,
    "--to huggingface: whether the tokenizer lower-cases (and strips "
    "accents), written to tokenizer_config.json; --to saved_model: whether "
    "the graph's tokenizer does. True for uncased models (as "
    "run_classifier.py's --do_lower_case).")
flags.DEFINE_bool("overwrite", False,
                  "Replace a checkpoint that --output_dir already holds.")
flags.DEFINE_integer(
    "max_seq_length", 128,
    "--to saved_model / tflite: the longest input, in WordPiece tokens with "
    "[CLS] and [SEP], that the export accepts; longer texts are cut as "
    "run_classifier.py cuts them.")
flags.DEFINE_string(
    "quantize", "none",
    "--to tflite: none (fp32) or int8 (dynamic range: int8 weights, float "
    "activations).")
flags.DEFINE_bool(
    "feature_extractor", False,
    "--to saved_model / tflite: export the encoder alone (sequence_output, "
    "pooled_output), e.g. a stage-V student; without it the input must be a "
    "run_classifier.py --output_dir (with task.json).")
flags.DEFINE_bool(
    "text_b", None,
    "--to saved_model: whether serving_default takes text_b as well. "
    "Default: the task's (the GLUE pair tasks take it; tsv tasks and "
    "feature extractors do not).")

FLAGS = flags.FLAGS


def main(_):
  if FLAGS.to in serving_export.FORMATS:
    if FLAGS["from"].value != "google":
      raise command_line.InputError(
          "--to %s exports a Google checkpoint: convert the model with --to "
          "google first, then export with --from google." % FLAGS.to)
    serving_export.export(
        FLAGS.to, FLAGS.input_dir, FLAGS.output_dir, FLAGS.bert_config_file,
        FLAGS.vocab_file, FLAGS.do_lower_case, FLAGS.max_seq_length,
        FLAGS.quantize, FLAGS.feature_extractor, FLAGS.text_b)
    print("Exported %s to %s (%s)." % (FLAGS.input_dir, FLAGS.output_dir,
                                        FLAGS.to))
    return
  checkpoint_conversion.convert(
      FLAGS["from"].value, FLAGS.to, FLAGS.input_dir, FLAGS.output_dir,
      FLAGS.bert_config_file, FLAGS.vocab_file, FLAGS.do_lower_case,
      FLAGS.overwrite)
  print("Converted %s (%s) to %s (%s)." % (FLAGS.input_dir, FLAGS["from"].value,
                                           FLAGS.output_dir, FLAGS.to))


if __name__ == "__main__":
  for name in ("from", "to", "input_dir", "output_dir"):
    flags.mark_flag_as_required(name)
  command_line.run(main)
