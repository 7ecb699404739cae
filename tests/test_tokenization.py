# coding=utf-8
"""Tests for tokenization.py: Google's WordPiece behaviour and API."""

import os

import pytest

import tokenization


def _write(path, tokens):
  with open(path, "w", encoding="utf-8") as f:
    f.write("".join(token + "\n" for token in tokens))
  return str(path)


@pytest.fixture
def vocab_file(tmp_path):
  tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "want", "##want",
            "##ed", "wa", "un", "runn", "##ing", ",", "low", "lowest", "cafe",
            "naive", "$", "^", "~", "5", "中", "国", "the", "The", "ab",
            "##ab", "##c"]
  return _write(tmp_path / "vocab.txt", tokens)


def test_full_tokenizer_wordpieces_and_ids(vocab_file):
  tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case=True)
  tokens = tokenizer.tokenize(u"UNwant\u00E9d,running")
  assert tokens == ["un", "##want", "##ed", ",", "runn", "##ing"]
  ids = tokenizer.convert_tokens_to_ids(tokens)
  assert ids == [9, 6, 7, 12, 10, 11]
  assert tokenizer.convert_ids_to_tokens(ids) == tokens
  assert tokenizer.vocab["[CLS]"] == 2 and tokenizer.inv_vocab[2] == "[CLS]"
  # Module-level helpers give the same mapping.
  assert tokenization.convert_tokens_to_ids(tokenizer.vocab, tokens) == ids
  assert tokenization.convert_ids_to_tokens(tokenizer.inv_vocab, ids) == tokens


def test_lower_case_strips_accents():
  basic = tokenization.BasicTokenizer(do_lower_case=True)
  assert basic.tokenize(u" \tHeLLo!how  \n Are yoU?  ") == [
      "hello", "!", "how", "are", "you", "?"]
  assert basic.tokenize(u"H\u00E9llo Caf\u00E9 na\u00EFve \u00C5ngstr\u00F6m") \
      == ["hello", "cafe", "naive", "angstrom"]
  # Decomposed input (e + combining acute) gives the same result.
  assert basic.tokenize(u"Cafe\u0301") == ["cafe"]


def test_cased_keeps_case_and_accents():
  basic = tokenization.BasicTokenizer(do_lower_case=False)
  assert basic.tokenize(u" \tHeLLo!how  \n Are yoU?  ") == [
      "HeLLo", "!", "how", "Are", "yoU", "?"]
  assert basic.tokenize(u"Caf\u00E9") == [u"Caf\u00E9"]


def test_case_handling_in_full_tokenizer(vocab_file):
  lower = tokenization.FullTokenizer(vocab_file, do_lower_case=True)
  cased = tokenization.FullTokenizer(vocab_file, do_lower_case=False)
  assert lower.tokenize("The CAFE") == ["the", "cafe"]
  assert cased.tokenize("The CAFE") == ["The", "[UNK]"]


def test_cjk_ideographs_are_single_tokens(vocab_file):
  basic = tokenization.BasicTokenizer()
  assert basic.tokenize(u"ah\u535A\u63A8zz") == [
      "ah", u"\u535A", u"\u63A8", "zz"]
  # Hangul and kana are not ideographs: they stay inside words.
  cased = tokenization.BasicTokenizer(do_lower_case=False)
  assert cased.tokenize(u"\uD55C\uAD6D\u3072\u3089") == [
      u"\uD55C\uAD6D\u3072\u3089"]
  tokenizer = tokenization.FullTokenizer(vocab_file)
  assert tokenizer.tokenize(u"中国the") == [u"中", u"国", "the"]


def test_punctuation_including_ascii_symbols(vocab_file):
  for char in u"$^~`-!.,@[]{}\u00BF\u3002":
    assert tokenization._is_punctuation(char), char
  for char in u"aA5 \u00E9\u4E2D":
    assert not tokenization._is_punctuation(char), char
  basic = tokenization.BasicTokenizer()
  assert basic.tokenize(u"$5^~a,b.\u00BFc\u3002") == [
      "$", "5", "^", "~", "a", ",", "b", ".", u"\u00BF", "c", u"\u3002"]
  tokenizer = tokenization.FullTokenizer(vocab_file)
  assert tokenizer.tokenize("$5^~") == ["$", "5", "^", "~"]


def test_control_and_zero_width_characters_are_dropped():
  for char in u"\x00\x07\x1b\x7f\u200b\u200d\u200e\ufeff":
    assert tokenization._is_control(char), repr(char)
  for char in u"\t\n\r A\u00A0":
    assert not tokenization._is_control(char), repr(char)
  for char in u" \t\n\r\u00A0\u2009\u3000":
    assert tokenization._is_whitespace(char), repr(char)
  for char in u"A-\u200b":
    assert not tokenization._is_whitespace(char), repr(char)
  basic = tokenization.BasicTokenizer()
  # Control and format characters vanish without splitting the word;
  # U+FFFD (replacement) and NUL are dropped too.
  assert basic.tokenize(u"ab\u200bc\x00d\ufeffe\u200df\x07g\ufffdh") == [
      "abcdefgh"]
  # Whitespace characters (no-break and ideographic space) do split.
  assert basic.tokenize(u"ab\u00A0cd\u3000ef\tgh") == ["ab", "cd", "ef", "gh"]


def test_long_words(tmp_path):
  vocab_path = _write(tmp_path / "vocab.txt", ["[UNK]", "ab", "##ab", "##c"])
  tokenizer = tokenization.FullTokenizer(vocab_path)
  word_150 = "ab" * 75
  assert tokenizer.tokenize(word_150) == ["ab"] + ["##ab"] * 74
  word_200 = "ab" * 100
  assert len(tokenizer.tokenize(word_200)) == 100
  word_201 = "ab" * 100 + "c"
  assert tokenizer.tokenize(word_201) == ["[UNK]"]
  assert tokenizer.tokenize("x " + word_201 + " ab") == [
      "[UNK]", "[UNK]", "ab"]
  # A whole 150-character word in the vocab is one token.
  long_vocab = _write(tmp_path / "long.txt", ["[UNK]", "q" * 150])
  assert tokenization.FullTokenizer(long_vocab).tokenize("q" * 150) == [
      "q" * 150]


def test_wordpiece_greedy_longest_match_first():
  vocab = {token: i for i, token in enumerate(
      ["[UNK]", "want", "##want", "##ed", "wa", "un", "runn", "##ing",
       "##u", "##n"])}
  wordpiece = tokenization.WordpieceTokenizer(vocab=vocab)
  assert wordpiece.tokenize("") == []
  assert wordpiece.tokenize("unwanted running") == [
      "un", "##want", "##ed", "runn", "##ing"]
  # "wa" + "##n..." fails later; greedy does not backtrack: whole word UNK.
  assert wordpiece.tokenize("unwantedX running") == [
      "[UNK]", "runn", "##ing"]
  # Longest match first: "want" wins over "wa".
  assert wordpiece.tokenize("want") == ["want"]
  assert wordpiece.tokenize("wanun") == ["wa", "##n", "##u", "##n"]
  # A custom unknown token and limit are honoured.
  short = tokenization.WordpieceTokenizer(vocab, unk_token="<?>",
                                          max_input_chars_per_word=3)
  assert short.tokenize("want un") == ["<?>", "un"]
  # The per-word cache returns the same answer twice.
  assert wordpiece.tokenize("unwanted unwanted") == [
      "un", "##want", "##ed", "un", "##want", "##ed"]


def test_whitespace_and_unicode_helpers():
  assert tokenization.whitespace_tokenize(u" a  b\tc\n") == ["a", "b", "c"]
  assert tokenization.whitespace_tokenize(u"  ") == []
  assert tokenization.convert_to_unicode(b"caf\xc3\xa9") == u"caf\u00E9"
  assert tokenization.convert_to_unicode(u"x") == u"x"
  assert tokenization.printable_text(b"abc") == "abc"
  with pytest.raises(ValueError):
    tokenization.convert_to_unicode(5)


def test_load_vocab_order_and_line_endings(tmp_path):
  path = tmp_path / "vocab.txt"
  path.write_bytes(b"[UNK]\r\nfoo\n  bar \n\xe4\xb8\xad")
  vocab = tokenization.load_vocab(str(path))
  assert list(vocab.items()) == [("[UNK]", 0), ("foo", 1), ("bar", 2),
                                 (u"\u4E2D", 3)]


def test_missing_or_bad_vocab_is_a_clear_error(tmp_path):
  missing = str(tmp_path / "no_such_vocab.txt")
  with pytest.raises(ValueError, match="no_such_vocab.txt"):
    tokenization.FullTokenizer(missing)
  binary = tmp_path / "binary.txt"
  binary.write_bytes(b"\xff\xfe\xfa")
  with pytest.raises(ValueError, match="binary.txt"):
    tokenization.load_vocab(str(binary))
  empty = tmp_path / "empty.txt"
  empty.write_text("")
  with pytest.raises(ValueError, match="empty"):
    tokenization.load_vocab(str(empty))
  with pytest.raises(ValueError, match="vocab"):
    tokenization.load_vocab(str(tmp_path))  # A directory.


def test_check_special_tokens(tiny_vocab):
  path, _ = tiny_vocab
  vocab = tokenization.load_vocab(path)
  tokenization.check_special_tokens(vocab)  # All present: no error.
  del vocab["[MASK]"]
  del vocab["[SEP]"]
  with pytest.raises(ValueError) as error:
    tokenization.check_special_tokens(vocab)
  assert "[SEP]" in str(error.value) and "[MASK]" in str(error.value)
  assert "[CLS]" not in str(error.value)
  # A custom list is checked instead of the default one.
  tokenization.check_special_tokens({"[Y]": 1}, ("[Y]",))
  with pytest.raises(ValueError, match=r"\[X\]"):
    tokenization.check_special_tokens({"[Y]": 1}, ("[X]", "[Y]"))


def test_validate_case_matches_checkpoint(caplog):
  validate = tokenization.validate_case_matches_checkpoint
  uncased = os.path.join("models", "uncased_L-12_H-768_A-12", "bert_model.ckpt")
  cased = os.path.join("models", "cased_L-12_H-768_A-12", "bert_model.ckpt")
  multi_cased = "gs://b/multi_cased_L-12_H-768_A-12/bert_model.ckpt"
  small = "/m/uncased_L-4_H-256_A-4/bert_model.ckpt"
  assert validate(True, uncased) is None
  assert validate(False, cased) is None
  assert validate(False, multi_cased) is None
  assert validate(True, None) is None
  assert validate(False, "/my/own/model.ckpt-1000") is None
  assert validate(True, "/m/student/bert_model.ckpt") is None

  message = validate(False, uncased)
  assert "--do_lower_case=True" in message and "lowercased" in message
  message = validate(True, cased)
  assert "--do_lower_case=False" in message and "cased" in message
  assert validate(True, multi_cased) is not None
  assert validate(False, small) is not None
  assert validate(False, "/m/chinese_L-12_H-768_A-12/bert_model.ckpt")
  with caplog.at_level("WARNING"):
    validate(False, uncased)
  assert "uncased_L-12_H-768_A-12" in caplog.text
