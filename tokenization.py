# coding=utf-8
"""WordPiece tokenization with the behaviour and API of Google's BERT release.

Text goes through two steps:
  1. BasicTokenizer: clean the text (drop control characters, map whitespace
     to spaces), put spaces around CJK ideographs, split on whitespace,
     optionally lower-case and strip accents, then split off punctuation.
  2. WordpieceTokenizer: greedy longest-match-first split of every word into
     vocabulary pieces, continuation pieces carrying a "##" prefix.

The tokenizer itself only needs "[UNK]" in the vocabulary (FullTokenizer
checks it when it loads the file); the stages that build model inputs call
check_special_tokens() for "[CLS]", "[SEP]" and "[MASK]".
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import collections
import re
import string
import unicodedata

from absl import logging

# A word longer than this many characters becomes the unknown token (Google's
# value; Hugging Face uses 100).
MAX_INPUT_CHARS_PER_WORD = 200

# How many distinct words WordpieceTokenizer remembers. Word frequencies in
# text are Zipfian, so a bounded cache catches most of the work on a corpus.
_WORD_CACHE_SIZE = 1 << 18

# Release names of Google's checkpoints, read from the folder that holds
# bert_model.ckpt. The patterns cover the listed releases (uncased_L-12_...,
# multi_cased_L-12_..., wwm_uncased_L-24_..., chinese_L-12_...) and the
# smaller ones named the same way (uncased_L-4_H-256_A-4).
_LOWER_CASE_MODEL = re.compile(r"^((wwm_)?uncased|multilingual|chinese)_L-")
_CASED_MODEL = re.compile(r"^(wwm_|multi_)?cased_L-")
_CHECKPOINT_FOLDER = re.compile(r"^.*?([A-Za-z0-9_-]+)/bert_model\.ckpt")

# ASCII characters that are neither letters, digits nor whitespace all count
# as punctuation, e.g. "$", "^" and "~", although Unicode calls some of them
# symbols.
_ASCII_PUNCTUATION = frozenset(string.punctuation)
_ASCII_PUNCTUATION_SPLIT = re.compile(
    "[%s]|[^%s]+" % (re.escape(string.punctuation),
                     re.escape(string.punctuation)))


def validate_case_matches_checkpoint(do_lower_case, init_checkpoint):
  """Warns when `do_lower_case` contradicts the casing of a known checkpoint.

  The casing is not stored in bert_config.json, so, like Google's release, we
  judge it from the name of the folder holding `bert_model.ckpt`, e.g.
  `uncased_L-12_H-768_A-12/bert_model.ckpt` wants lower-casing and
  `cased_L-12_H-768_A-12/bert_model.ckpt` does not. Unknown names pass.

  Args:
    do_lower_case: bool, the value of --do_lower_case.
    init_checkpoint: str or None, the value of --init_checkpoint.

  Returns:
    The warning message (also logged) when the two disagree, else None.
  """
  if not init_checkpoint:
    return None
  match = _CHECKPOINT_FOLDER.match(init_checkpoint)
  if match is None:
    return None
  model_name = match.group(1)
  if _LOWER_CASE_MODEL.match(model_name) and not do_lower_case:
    case_name, wanted_flag = "lowercased", "True"
  elif _CASED_MODEL.match(model_name) and do_lower_case:
    case_name, wanted_flag = "cased", "False"
  else:
    return None
  message = (
      "You passed --do_lower_case=%s with --init_checkpoint=%s, but `%s` "
      "looks like a %s model, so --do_lower_case=%s would match how it was "
      "pre-trained. Ignore this warning if the checkpoint is named misleadingly."
      % (bool(do_lower_case), init_checkpoint, model_name, case_name,
         wanted_flag))
  logging.warning(message)
  return message


def convert_to_unicode(text):
  """Returns `text` as str, decoding bytes as utf-8 (bad bytes are dropped)."""
  if isinstance(text, str):
    return text
  if isinstance(text, bytes):
    return text.decode("utf-8", "ignore")
  raise ValueError("Unsupported string type: %s" % type(text))


def printable_text(text):
  """Returns `text` as a str suitable for print() or logging."""
  return convert_to_unicode(text)


def load_vocab(vocab_file):
  """Reads a vocabulary file (one token per line) into an ordered dict.

  Each line's token (surrounding whitespace stripped) maps to its line number.

  Raises:
    ValueError: if the file is missing, unreadable, not utf-8 or empty.
  """
  try:
    lines = _read_lines(vocab_file)
  except (IOError, OSError, UnicodeDecodeError) as error:
    raise ValueError(
        "Cannot read the vocab file %r (check --vocab_file): %s" %
        (vocab_file, error))
  vocab = collections.OrderedDict()
  for index, line in enumerate(lines):
    vocab[line.strip()] = index
  if not vocab:
    raise ValueError("The vocab file %r (--vocab_file) is empty." % vocab_file)
  return vocab


def _read_lines(path):
  """Returns the lines of a local or remote (gs://, hdfs://) utf-8 file."""
  if "://" in path:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    with tf.io.gfile.GFile(path, "r") as reader:
      return reader.read().splitlines()
  # Split on "\n" only, as line-by-line reading does; str.splitlines() would
  # also break at characters such as U+2028 and shift the token ids.
  with open(path, "r", encoding="utf-8", newline="") as reader:
    text = reader.read()
  lines = text.split("\n")
  if lines and not lines[-1]:
    lines.pop()
  return lines


def convert_by_vocab(vocab, items):
  """Maps every item through `vocab`; a missing item raises KeyError."""
  return [vocab[item] for item in items]


def convert_tokens_to_ids(vocab, tokens):
  """Returns the ids of `tokens` in `vocab` (token -> id)."""
  return convert_by_vocab(vocab, tokens)


def convert_ids_to_tokens(inv_vocab, ids):
  """Returns the tokens of `ids` in `inv_vocab` (id -> token)."""
  return convert_by_vocab(inv_vocab, ids)


def whitespace_tokenize(text):
  """Strips `text` and splits it on whitespace."""
  return text.split()


def check_special_tokens(vocab, tokens=("[CLS]", "[SEP]", "[MASK]"),
                         vocab_file=None):
  """Raises ValueError naming every token of `tokens` missing from `vocab`."""
  missing = [token for token in tokens if token not in vocab]
  if missing:
    raise ValueError(
        "The vocabulary %slacks the special token(s) %s; add them to the file "
        "given by --vocab_file." % ("%s " % vocab_file if vocab_file else "",
                                    ", ".join(missing)))


class FullTokenizer(object):
  """Runs basic tokenization followed by WordPiece tokenization."""

  def __init__(self, vocab_file, do_lower_case=True):
    self.vocab = load_vocab(vocab_file)
    # Every word the vocab cannot spell becomes [UNK]: without it the first
    # such word would fail deep inside tokenization with a KeyError.
    check_special_tokens(self.vocab, ("[UNK]",), vocab_file)
    self.inv_vocab = {index: token for token, index in self.vocab.items()}
    self.basic_tokenizer = BasicTokenizer(do_lower_case=do_lower_case)
    self.wordpiece_tokenizer = WordpieceTokenizer(vocab=self.vocab)

  def tokenize(self, text):
    """Returns the WordPiece tokens of `text`."""
    split_tokens = []
    for token in self.basic_tokenizer.tokenize(text):
      # Basic tokens hold no whitespace, so skip WordPiece's own split.
      split_tokens.extend(self.wordpiece_tokenizer.tokenize_word(token))
    return split_tokens

  def convert_tokens_to_ids(self, tokens):
    """Returns the vocabulary ids of `tokens`."""
    return convert_by_vocab(self.vocab, tokens)

  def convert_ids_to_tokens(self, ids):
    """Returns the tokens of vocabulary ids `ids`."""
    return convert_by_vocab(self.inv_vocab, ids)


class BasicTokenizer(object):
  """Splits on whitespace and punctuation, with optional lower-casing."""

  def __init__(self, do_lower_case=True):
    """Lower-casing also strips accents, as in Google's uncased models."""
    self.do_lower_case = do_lower_case

  def tokenize(self, text):
    """Returns the basic tokens of `text`."""
    text = convert_to_unicode(text)
    # One pass drops control characters, maps whitespace to " " and puts
    # spaces around CJK ideographs; each of those is a per-character rule.
    text = text.translate(_CLEAN_TABLE)
    output_tokens = []
    for token in text.split():
      if self.do_lower_case:
        token = token.lower()
        if not token.isascii():
          token = _strip_accents(token)
      output_tokens.extend(_split_on_punctuation(token))
    return output_tokens

  def _run_strip_accents(self, text):
    """Strips accents from a piece of text."""
    return _strip_accents(text)

  def _run_split_on_punc(self, text):
    """Splits punctuation off a piece of text."""
    return _split_on_punctuation(text)

  def _tokenize_chinese_chars(self, text):
    """Adds whitespace around any CJK character."""
    return "".join(" %s " % char if _is_chinese_char(ord(char)) else char
                   for char in text)

  def _is_chinese_char(self, cp):
    """Checks whether code point `cp` is a CJK ideograph."""
    return _is_chinese_char(cp)

  def _clean_text(self, text):
    """Drops invalid and control characters and maps whitespace to " "."""
    output = []
    for char in text:
      if _is_dropped(char):
        continue
      output.append(" " if _is_whitespace(char) else char)
    return "".join(output)


class WordpieceTokenizer(object):
  """Greedy longest-match-first WordPiece tokenization."""

  def __init__(self, vocab, unk_token="[UNK]",
               max_input_chars_per_word=MAX_INPUT_CHARS_PER_WORD):
    """`vocab` is a dict (token -> id); it must not change afterwards."""
    self.vocab = vocab
    self.unk_token = unk_token
    self.max_input_chars_per_word = max_input_chars_per_word
    # No piece longer than the longest vocabulary entry can match, so the
    # search never needs to try longer substrings.
    self._max_piece_chars = max([len(token) for token in vocab] or [0])
    self._cache = {}

  def tokenize(self, text):
    """Returns the WordPiece tokens of already basic-tokenized `text`.

    For example, "unaffable" gives ["un", "##aff", "##able"] with a vocab
    holding those pieces. A word that cannot be covered by vocabulary pieces,
    or is longer than `max_input_chars_per_word`, becomes `unk_token`.
    """
    output_tokens = []
    for token in whitespace_tokenize(convert_to_unicode(text)):
      output_tokens.extend(self.tokenize_word(token))
    return output_tokens

  def tokenize_word(self, word):
    """Returns the pieces of one word (a string without whitespace)."""
    pieces = self._cache.get(word)
    if pieces is None:
      pieces = self._split_word(word)
      if len(self._cache) < _WORD_CACHE_SIZE:
        self._cache[word] = pieces
    return pieces

  def _split_word(self, word):
    """Greedy longest-match-first split of `word`; a tuple of pieces."""
    length = len(word)
    if length > self.max_input_chars_per_word:
      return (self.unk_token,)
    vocab = self.vocab
    pieces = []
    start = 0
    while start < length:
      end = min(length, start + self._max_piece_chars)
      piece = None
      while end > start:
        candidate = word[start:end]
        if start > 0:
          candidate = "##" + candidate
        if candidate in vocab:
          piece = candidate
          break
        end -= 1
      if piece is None:
        return (self.unk_token,)
      pieces.append(piece)
      start = end
    return tuple(pieces)


def _is_whitespace(char):
  """Checks whether `char` is a whitespace character."""
  # \t, \n and \r are control characters in Unicode, but separate words.
  if char in (" ", "\t", "\n", "\r"):
    return True
  return unicodedata.category(char) == "Zs"


def _is_control(char):
  """Checks whether `char` is a control or format character (dropped)."""
  if char in ("\t", "\n", "\r"):
    return False
  # Cf covers the zero-width and direction marks (U+200B, U+200D, U+FEFF...).
  return unicodedata.category(char) in ("Cc", "Cf")


def _is_punctuation(char):
  """Checks whether `char` is a punctuation character."""
  if char in _ASCII_PUNCTUATION:
    return True
  return unicodedata.category(char).startswith("P")


def _is_chinese_char(cp):
  """Checks whether code point `cp` is in a CJK Unified Ideographs block.

  Hangul, Hiragana and Katakana are not in these blocks; they are written
  with spaces or handled by WordPiece like any other script.
  """
  return ((0x4E00 <= cp <= 0x9FFF) or (0x3400 <= cp <= 0x4DBF) or
          (0x20000 <= cp <= 0x2A6DF) or (0x2A700 <= cp <= 0x2B73F) or
          (0x2B740 <= cp <= 0x2B81F) or (0x2B820 <= cp <= 0x2CEAF) or
          (0xF900 <= cp <= 0xFAFF) or (0x2F800 <= cp <= 0x2FA1F))


def _is_dropped(char):
  """Checks whether the cleaning step removes `char` entirely."""
  cp = ord(char)
  return cp == 0 or cp == 0xFFFD or _is_control(char)


class _CleanTable(dict):
  """str.translate table for cleaning, filled in one character at a time.

  Maps dropped characters to None, whitespace to " ", CJK ideographs to the
  ideograph between spaces and leaves everything else unchanged. Entries are
  computed on first sight, so the table only holds characters seen in text.
  """

  def __missing__(self, cp):
    char = chr(cp)
    if _is_dropped(char):
      value = None
    elif _is_whitespace(char):
      value = " "
    elif _is_chinese_char(cp):
      value = " %s " % char
    else:
      value = cp
    self[cp] = value
    return value


_CLEAN_TABLE = _CleanTable()


def _strip_accents(text):
  """Decomposes `text` (NFD) and drops the nonspacing marks (category Mn)."""
  text = unicodedata.normalize("NFD", text)
  return "".join(char for char in text if unicodedata.category(char) != "Mn")


def _split_on_punctuation(text):
  """Splits `text` into runs of non-punctuation and single punctuation marks."""
  if text.isascii():
    return _ASCII_PUNCTUATION_SPLIT.findall(text)
  output = []
  start_new_word = True
  for char in text:
    if _is_punctuation(char):
      output.append(char)
      start_new_word = True
    else:
      if start_new_word:
        output.append(char)
        start_new_word = False
      else:
        output[-1] += char
  return output
