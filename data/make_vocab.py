"""Learns the sample's WordPiece vocab with Hugging Face `tokenizers`.

A user of the real pipeline has BERT's vocab.txt; offline we do not, so the
project ships data/sample/vocab.txt, made by this command from the
extracted sample text:

  .venv/bin/python data/make_vocab.py --input_file demo_output/wiki.txt \
      --output_file data/sample/vocab.txt --vocab_size 4000

The special tokens come first, in Google's order of use ([PAD] is id 0).
The trainer breaks ties between equally frequent merges in an order that
changes from run to run, so a rerun gives a vocab that differs in a few
rare word pieces; the shipped file is the one the demo uses.
"""

import os
import sys

from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bert_distillation import command_line  # pylint: disable=g-import-not-at-top

flags.DEFINE_string("input_file", None, "Text, one sentence per line.")
flags.DEFINE_string("output_file", None, "Where to write vocab.txt.")
flags.DEFINE_integer("vocab_size", 4000, "Size of the vocabulary.")
flags.DEFINE_bool("do_lower_case", True, "Lower-case and strip accents.")
flags.mark_flags_as_required(["input_file", "output_file"])

FLAGS = flags.FLAGS
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_vocab(input_file, vocab_size, do_lower_case):
  """Trains a WordPiece vocab and returns its tokens in id order."""
  from tokenizers import BertWordPieceTokenizer
  tokenizer = BertWordPieceTokenizer(
      clean_text=True, handle_chinese_chars=True,
      strip_accents=do_lower_case, lowercase=do_lower_case)
  tokenizer.train([input_file], vocab_size=vocab_size, min_frequency=2,
                  special_tokens=SPECIAL_TOKENS, wordpieces_prefix="##",
                  show_progress=False)
  vocab = tokenizer.get_vocab()
  return sorted(vocab, key=vocab.get)


def main(_):
  tokens = train_vocab(FLAGS.input_file, FLAGS.vocab_size,
                       FLAGS.do_lower_case)
  with open(FLAGS.output_file, "w", encoding="utf-8") as f:
    f.write("\n".join(tokens) + "\n")
  print("Wrote %d tokens to %s" % (len(tokens), FLAGS.output_file))


if __name__ == "__main__":
  command_line.run(main)
