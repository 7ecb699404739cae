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
"""

from absl import flags

from bert_distillation import checkpoint_conversion
from bert_distillation import command_line

FORMATS = checkpoint_conversion.FORMATS

flags.DEFINE_enum("from", None, FORMATS, "The format of --input_dir.")
flags.DEFINE_enum("to", None, FORMATS, "The format to write to --output_dir.")
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
    "accents), written to tokenizer_config.json. True for uncased models.")
flags.DEFINE_bool("overwrite", False,
                  "Replace a checkpoint that --output_dir already holds.")

FLAGS = flags.FLAGS


def main(_):
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
