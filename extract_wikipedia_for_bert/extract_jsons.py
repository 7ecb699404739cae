# coding=utf-8
"""Turns WikiExtractor's JSON output into BERT pretraining text.

Reads every file under --folder (the `AA/wiki_00 ...` tree that WikiExtractor
writes with --json; plain or bz2-compressed) and writes --write_file with one
sentence per line and a blank line after each article, the input format of
create_pretraining_data.py.

- The title line (present in older WikiExtractor output) and blank lines are
  dropped; each paragraph is split into sentences by a rule-based splitter
  that needs no downloaded data (see README.md for the choice and its speed).
- Files are formatted by --num_workers processes. Each worker streams one file
  into a part file; the parts are appended to the output in sorted path order,
  so the output is the same for any number of workers and memory does not
  grow with the dump.
- A sentence that still holds wiki markup ([[, ]], {{, }}, {|, |}) or one of
  WikiExtractor's placeholders for <math> and <code> (formula_1, codice_2)
  is dropped and counted: it is not a text passage. So is a short line that
  no sentence ends (`A`, `Notes`): a heading of a form WikiExtractor keeps.
  (wikiextractor_compat.py already removes `== ... ==` headings, lists and
  tables.)
- A malformed JSON line is counted and skipped with a warning naming the file
  and the line number.
- The output is written to a temporary file and renamed when complete and
  holding at least one article, so a failed run keeps an earlier --write_file.
"""

import bz2
import html
import json
import os
import re
import shutil
import sys
import time

from absl import flags
from absl import logging

# The bert_distillation package lives at the repository root, one level up.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from bert_distillation import command_line
from bert_distillation import temporary_files
from bert_distillation import worker_pool
from sentence_splitter import split_sentences
# pylint: enable=g-import-not-at-top,wrong-import-position

flags.DEFINE_string(
    "folder", None,
    "The folder WikiExtractor wrote with --json (it holds AA/, AB/, ...).")
flags.DEFINE_string(
    "write_file", None,
    "The text file to write: one sentence per line, a blank line after each "
    "article.")
flags.DEFINE_integer(
    "num_workers", os.cpu_count() or 1,
    "Number of processes formatting files in parallel. The output does not "
    "depend on it.")
flags.DEFINE_integer(
    "min_sentence_chars", 0,
    "Drop sentences shorter than this many characters (e.g. 20 drops section "
    "titles such as 'History.' that an older WikiExtractor output holds; "
    "wikiextractor_compat.py writes none). 0 keeps every sentence, as the "
    "original did.")

FLAGS = flags.FLAGS

# Warnings about malformed lines printed per file; the rest are only counted.
MAX_WARNINGS_PER_FILE = 20

InputError = command_line.InputError

# What no text passage holds: wiki markup that WikiExtractor failed to parse
# (links, templates, tables) and its placeholders for <math> and <code>,
# also when glued to the next word (`formula_39photon`).
LEFTOVER_MARKUP = re.compile(
    r"\[\[|\]\]|\{\{|\}\}|\{\||\|\}|\b(?:formula|codice)_\d+")

# A line of at most this many words without a sentence's final punctuation
# is a heading or a label (`A`, `Notes`, `== C ==`), not a text passage.
HEADING_MAX_WORDS = 4
SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")

COUNT_NAMES = ("articles", "sentences", "markup", "headings", "malformed",
               "empty")


def is_text_passage(sentence):
  """False for a sentence holding leftover markup or a placeholder."""
  return not LEFTOVER_MARKUP.search(sentence)


def is_heading(line):
  """True for a short line that no sentence ends: a heading, not prose.

  WikiExtractor drops `== History ==` headings, but not the other forms of
  list articles (`=A=`, `<h2>B</h2>`, a bold `'''Notes'''` line): they come
  out as lines such as `A` or `Notes`. A title with a full stop (`History.`,
  an older WikiExtractor's) stays, for --min_sentence_chars to drop.
  """
  return (len(line.split()) <= HEADING_MAX_WORDS and
          not SENTENCE_END.search(line))


def article_sentences(record, min_sentence_chars=0, counts=None):
  """Returns the sentences of one WikiExtractor JSON record, title dropped.

  Sentences that are not text passages (is_text_passage) are dropped and
  counted in counts["markup"], and heading lines (is_heading) in
  counts["headings"], when `counts` is given.
  """
  # WikiExtractor escapes &, < and > in the text (its --html-safe default).
  lines = html.unescape(record["text"]).split("\n")
  title = " ".join(str(record.get("title", "")).split())
  if lines and title and " ".join(lines[0].split()).rstrip(".") == title:
    lines = lines[1:]  # Older WikiExtractor versions start with the title.
  sentences = []
  for line in lines:
    line = " ".join(line.split())  # Also turns no-break spaces into spaces.
    if line and is_heading(line):
      if counts is not None:
        counts["headings"] += 1
      continue
    for sentence in split_sentences(line):
      if not is_text_passage(sentence):
        if counts is not None:
          counts["markup"] += 1
      elif len(sentence) >= min_sentence_chars:
        sentences.append(sentence)
  return sentences


def open_extracted_file(path):
  """Opens a WikiExtractor output file as text, bz2-compressed or not."""
  with open(path, "rb") as probe:
    compressed = probe.read(3) == b"BZh"
  if compressed:
    return bz2.open(path, "rt", encoding="utf-8", errors="replace")
  return open(path, "r", encoding="utf-8", errors="replace")


def format_file(path, out, min_sentence_chars=0):
  """Writes the sentences of every article in `path` to the file `out`.

  Returns a dict of counts (COUNT_NAMES: articles, sentences, sentences
  dropped for markup, malformed lines, empty pages) and a list of warning
  messages, each naming the file and the line.
  """
  counts = dict.fromkeys(COUNT_NAMES, 0)
  warnings = []
  with open_extracted_file(path) as lines:
    for line_number, line in enumerate(lines, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
        sentences = article_sentences(record, min_sentence_chars, counts)
      except (ValueError, TypeError, KeyError, AttributeError) as error:
        if line_number == 1 and line.lstrip().startswith("<doc"):
          raise InputError(
              "%s is in WikiExtractor's <doc> format, not JSON: run "
              "WikiExtractor with --json (see extract_wikipedia_for_bert/"
              "README.md)." % path)
        counts["malformed"] += 1
        if counts["malformed"] <= MAX_WARNINGS_PER_FILE:
          warnings.append("%s:%d: skipping malformed JSON line (%s: %s)" % (
              path, line_number, type(error).__name__, error))
        continue
      if not sentences:
        counts["empty"] += 1  # Redirects and pages with no prose.
        continue
      out.write("\n".join(sentences))
      out.write("\n\n")
      counts["articles"] += 1
      counts["sentences"] += len(sentences)
  if counts["malformed"] > MAX_WARNINGS_PER_FILE:
    warnings.append("%s: %d more malformed lines skipped" % (
        path, counts["malformed"] - MAX_WARNINGS_PER_FILE))
  return counts, warnings


def format_file_to_part(task):
  """Worker: formats one input file into its own part file."""
  path, part_path, min_sentence_chars = task
  with open(part_path, "w", encoding="utf-8") as out:
    counts, warnings = format_file(path, out, min_sentence_chars)
  return part_path, counts, warnings


def find_extracted_files(folder):
  """Returns every non-hidden file under `folder`, sorted by relative path."""
  found = []
  for root, dirs, files in os.walk(folder):
    dirs[:] = [d for d in dirs if not d.startswith(".")]
    for name in files:
      if not name.startswith("."):
        path = os.path.join(root, name)
        found.append((os.path.relpath(path, folder).split(os.sep), path))
  return [path for _, path in sorted(found)]


def formatted_parts(paths, part_dir, num_workers, min_sentence_chars):
  """Yields (part_path, counts, warnings) per input file, in input order."""
  tasks = [(path, os.path.join(part_dir, "part_%07d.txt" % i),
            min_sentence_chars) for i, path in enumerate(paths)]
  if num_workers == 1:
    for task in tasks:
      yield format_file_to_part(task)
    return
  # Workers finish in any order; hold results back until their turn.
  finished = {}
  next_index = 0
  for index, result in worker_pool.run_tasks(
      format_file_to_part, tasks, num_workers,
      describe_task=lambda task: task[0]):
    finished[index] = result
    while next_index in finished:
      yield finished.pop(next_index)
      next_index += 1


def append_parts(paths, out, part_dir, num_workers, min_sentence_chars):
  """Formats `paths` and appends them to the file `out`; returns the counts."""
  totals = dict.fromkeys(COUNT_NAMES, 0)
  start_time = time.time()
  parts = formatted_parts(paths, part_dir, num_workers, min_sentence_chars)
  for done, (part_path, counts, warnings) in enumerate(parts, 1):
    for warning in warnings:
      logging.warning(warning)
    with open(part_path, "r", encoding="utf-8") as part:
      shutil.copyfileobj(part, out, 1 << 20)
    os.remove(part_path)
    for key in totals:
      totals[key] += counts[key]
    elapsed = max(time.time() - start_time, 1e-6)
    logging.info(
        "Formatted %d/%d files: %d articles, %d sentences "
        "(%.0f articles/s, %.0f sentences/s)", done, len(paths),
        totals["articles"], totals["sentences"],
        totals["articles"] / elapsed, totals["sentences"] / elapsed)
  return totals


def write_text(paths, write_file, num_workers, min_sentence_chars):
  """Formats `paths` into `write_file` atomically; returns the total counts.

  Raises InputError, leaving an existing `write_file` as it was, when no
  article text is found. Temporaries left by a killed earlier run are
  removed first.
  """
  out_dir = os.path.dirname(os.path.abspath(write_file))
  os.makedirs(out_dir, exist_ok=True)
  name = os.path.basename(write_file)
  temporary_files.remove_stale(out_dir, re.escape(name) + r"(\.parts)?")
  part_dir = temporary_files.temporary_dir(".%s.parts" % name, out_dir)

  def write(out):
    totals = append_parts(paths, out, part_dir, num_workers,
                          min_sentence_chars)
    if totals["articles"] == 0:
      raise InputError(
          "No article text found under --folder %s (%d empty pages, %d "
          "malformed lines); %s was not written." % (
              FLAGS.folder, totals["empty"], totals["malformed"], write_file))
    return totals

  try:
    return temporary_files.write_atomically(write_file, write)
  except worker_pool.WorkerDied as error:
    raise InputError("A %s." % error) from None
  finally:
    temporary_files.discard(part_dir)


def check_flags():
  """Raises InputError with the flag to fix when the flags are unusable."""
  if not os.path.isdir(FLAGS.folder):
    raise InputError("--folder %s is not a directory; give the output folder "
                     "of WikiExtractor." % FLAGS.folder)
  if os.path.isdir(FLAGS.write_file):
    raise InputError("--write_file %s is a directory; give the path of the "
                     "text file to write." % FLAGS.write_file)
  if FLAGS.num_workers < 1:
    raise InputError("--num_workers must be at least 1, got %d." %
                     FLAGS.num_workers)
  if FLAGS.min_sentence_chars < 0:
    raise InputError("--min_sentence_chars must be >= 0, got %d." %
                     FLAGS.min_sentence_chars)


def main(_):
  check_flags()
  paths = find_extracted_files(FLAGS.folder)
  write_path = os.path.abspath(FLAGS.write_file)
  paths = [p for p in paths if os.path.abspath(p) != write_path]
  if not paths:
    raise InputError("--folder %s holds no files; run WikiExtractor with "
                     "--json first." % FLAGS.folder)
  num_workers = min(FLAGS.num_workers, len(paths))
  logging.info("Formatting %d files with %d workers into %s", len(paths),
               num_workers, FLAGS.write_file)
  totals = write_text(paths, FLAGS.write_file, num_workers,
                      FLAGS.min_sentence_chars)
  logging.info("Wrote %d articles, %d sentences to %s (%d empty pages and "
               "%d malformed lines skipped; %d sentences dropped: they hold "
               "markup or a math/code placeholder; %d heading lines dropped)",
               totals["articles"], totals["sentences"], FLAGS.write_file,
               totals["empty"], totals["malformed"], totals["markup"],
               totals["headings"])


if __name__ == "__main__":
  flags.mark_flag_as_required("folder")
  flags.mark_flag_as_required("write_file")
  command_line.run(main)
