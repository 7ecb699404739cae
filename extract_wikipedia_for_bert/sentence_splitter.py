# coding=utf-8
"""A fast rule-based English sentence splitter that needs no downloaded data.

Written for the paragraphs WikiExtractor produces. README.md explains why it
is used instead of pysbd or blingfire and how fast it is.
"""

import re

# Words that end with a period but rarely end a sentence (lower case, without
# the period). "etc" is left out: before a capital it usually ends one.
ABBREVIATIONS = frozenset("""
    mr mrs ms messrs dr prof rev hon st mt mts ft gen col lt maj capt cpt
    sgt cmdr adm gov sen rep pres fr mme mlle
    no nos vol vols pp p ch chap sec fig figs ed eds op ibid
    approx ca c cf vs viz al dept est univ assn ave blvd rd nr
    jan feb mar apr jun jul aug sep sept oct nov dec
""".split())

# Abbreviations that often end a sentence too ("... born in the U.S. The
# next year ..."): a boundary when the next word is a common sentence opener.
ENDING_ABBREVIATIONS = frozenset("jr sr inc ltd co corp bros".split())
COMMON_OPENERS = frozenset("""
    The A An It He She They We I This That These Those There His Her Its
    Their In On At After During When While Since However But As
""".split())

# A run of sentence-final punctuation, optional closing quotes or brackets,
# then whitespace: a candidate sentence boundary.
_CANDIDATE_BOUNDARY = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019\u00bb)\]]*\s+")
# Dotted acronyms and Latin abbreviations: U.S, U.K, e.g, i.e, Ph.D, a.m.
_DOTTED_ACRONYM = re.compile(r"(?:[A-Za-z]{1,3}\.)+[A-Za-z]{1,3}")
_SENTENCE_OPENERS = "\"'(\u201c\u2018\u00ab["


def _starts_sentence(char):
  """True if `char` can begin a new sentence (not lower case, not a comma)."""
  if char.isdigit() or char in _SENTENCE_OPENERS:
    return True
  # Upper case, or a letter of a script without case (e.g. CJK, Arabic).
  return char.isalpha() and not char.islower()


def _is_abbreviation(token, next_word):
  """True if `token` (the word before a single period) is an abbreviation.

  An acronym such as "U.S." or a suffix such as "Jr." counts as the end of
  the sentence when `next_word` is a common sentence opener ("The", "He").
  """
  token = token.lstrip(_SENTENCE_OPENERS)
  if not token:
    return False
  lower = token.lower()
  if lower in ENDING_ABBREVIATIONS or _DOTTED_ACRONYM.fullmatch(token):
    return next_word not in COMMON_OPENERS
  if lower in ABBREVIATIONS:
    return True
  # An initial, as in "J. R. Tolkien" (but "5 m." ends a sentence).
  return len(token) == 1 and token.isupper()


def split_sentences(paragraph):
  """Splits one paragraph of plain text into a list of sentences.

  A boundary is sentence-final punctuation followed by whitespace and a
  character that can start a sentence (capital, digit, opening quote). A
  single period after an abbreviation ("St.", "approx."), an initial ("J.")
  or a dotted acronym ("U.S.") is not a boundary, unless the acronym is
  followed by a common sentence opener ("... in the U.S. The ..."). Decimal
  numbers ("3.5") contain no whitespace, so they are never split.
  """
  sentences = []
  start = 0
  for match in _CANDIDATE_BOUNDARY.finditer(paragraph):
    end = match.end()
    if end >= len(paragraph) or not _starts_sentence(paragraph[end]):
      continue
    punctuation = match.group(0).rstrip()
    if punctuation.startswith(".") and not punctuation.startswith(".."):
      word_start = max(paragraph.rfind(" ", start, match.start()) + 1, start)
      next_space = paragraph.find(" ", end)
      next_word = paragraph[end:next_space if next_space >= 0 else None]
      next_word = next_word.rstrip(",;:")
      if _is_abbreviation(paragraph[word_start:match.start()], next_word):
        continue
    sentence = paragraph[start:end].strip()
    if sentence:
      sentences.append(sentence)
    start = end
  rest = paragraph[start:].strip()
  if rest:
    sentences.append(rest)
  return sentences
