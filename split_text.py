# coding=utf-8
"""Splits a one-sentence-per-line corpus into pieces at article boundaries.

Articles are separated by blank lines (the output of extract_jsons.py). The
pieces are `<name_base>_0.txt ... <name_base>_<split_number - 1>.txt` in
--folder and have roughly equal sizes in bytes; each article goes whole into
one piece, followed by one blank line.

The input is streamed twice, never held in memory: a first pass counts the
articles and their bytes, a second pass writes them. Pieces are written to
temporary files (temporary_files) and renamed when all are complete.
"""

import os
import re

from absl import flags
from absl import logging

from bert_distillation import command_line
from bert_distillation import temporary_files

flags.DEFINE_string("read_file", None, "The text file to split.")
flags.DEFINE_integer("split_number", None,
                     "The number of smaller text files to create.")
flags.DEFINE_string("folder", None,
                    "Where the pieces are written (created if missing).")
flags.DEFINE_string(
    "name_base", None,
    "Base name of the pieces: files are named <name_base>_<N>.txt with N "
    "from 0 to split_number - 1.")

FLAGS = flags.FLAGS

InputError = command_line.InputError

# Log progress every this many articles while writing.
LOG_EVERY_ARTICLES = 1000000


def read_articles(path):
  """Yields each article of `path` as a list of its lines (bytes).

  An article is a run of non-blank lines; lines holding only whitespace count
  as blank. A last line without a newline gets one.
  """
  article = []
  with open(path, "rb") as f:
    for line in f:
      if line.strip():
        if not line.endswith(b"\n"):
          line += b"\n"
        article.append(line)
      elif article:
        yield article
        article = []
  if article:
    yield article


def count_articles(path):
  """First pass: returns (number of articles, their total size in bytes)."""
  articles = 0
  total_bytes = 0
  for article in read_articles(path):
    articles += 1
    total_bytes += sum(len(line) for line in article)
  return articles, total_bytes


def piece_prefix(name_base):
  """What the name of every piece starts with: name_base and one "_"."""
  return name_base if name_base.endswith("_") else name_base + "_"


def piece_name(name_base, index):
  """The file name of piece `index`, as the original named it."""
  return "%s%d.txt" % (piece_prefix(name_base), index)


def write_pieces(path, folder, name_base, split_number, num_articles,
                 total_bytes):
  """Second pass: writes the pieces; returns a list of (articles, bytes).

  An article goes to the piece in which its middle byte falls, so each
  piece ends at the article boundary nearest to an equal share of the
  bytes. A piece never stays empty: when only as many articles remain as
  pieces still to fill, every remaining article starts a new piece.
  """
  share = total_bytes / float(split_number)
  final_paths = [os.path.join(folder, piece_name(name_base, i))
                 for i in range(split_number)]
  temp_paths = [temporary_files.register(temporary_files.temporary_path(p))
                for p in final_paths]
  sizes = [[0, 0] for _ in range(split_number)]
  piece = 0
  written_bytes = 0
  out = open(temp_paths[0], "wb")
  try:
    for done, article in enumerate(read_articles(path)):
      size = sum(len(line) for line in article)
      wanted = int((written_bytes + size / 2.0) / share)
      articles_left = num_articles - done
      pieces_after = split_number - 1 - piece
      if sizes[piece][0] and pieces_after and (
          wanted > piece or articles_left <= pieces_after):
        out.close()
        piece += 1
        out = open(temp_paths[piece], "wb")
      out.writelines(article)
      out.write(b"\n")
      written_bytes += size
      sizes[piece][0] += 1
      sizes[piece][1] += size + 1
      if (done + 1) % LOG_EVERY_ARTICLES == 0:
        logging.info("Wrote %d of %d articles", done + 1, num_articles)
    out.close()
    for temp_path, final_path in zip(temp_paths, final_paths):
      temporary_files.commit(temp_path, final_path)
  except BaseException:
    out.close()
    for temp_path in temp_paths:
      temporary_files.discard(temp_path)
    raise
  return [tuple(size) for size in sizes]


def check_flags():
  """Raises InputError naming the flag to fix when the flags are unusable."""
  if os.path.isdir(FLAGS.read_file):
    raise InputError("--read_file %s is a directory; give the text file to "
                     "split." % FLAGS.read_file)
  if not os.path.exists(FLAGS.read_file):
    raise InputError("--read_file %s does not exist." % FLAGS.read_file)
  if not os.path.isfile(FLAGS.read_file):
    raise InputError("--read_file %s is not a regular file." %
                     FLAGS.read_file)
  if os.path.exists(FLAGS.folder) and not os.path.isdir(FLAGS.folder):
    raise InputError("--folder %s is a file, not a directory." % FLAGS.folder)
  if FLAGS.split_number < 1:
    raise InputError("--split_number must be at least 1, got %d." %
                     FLAGS.split_number)


def warn_about_stale_pieces(folder, name_base, split_number):
  """Warns about pieces left in `folder` by an earlier, larger split."""
  index = split_number
  while os.path.exists(os.path.join(folder, piece_name(name_base, index))):
    index += 1
  if index > split_number:
    logging.warning(
        "%s already holds %s ... %s from an earlier run; they are not part "
        "of this split. Remove them before reading the folder.", folder,
        piece_name(name_base, split_number), piece_name(name_base, index - 1))


def main(_):
  check_flags()
  logging.info("Counting articles in %s", FLAGS.read_file)
  num_articles, total_bytes = count_articles(FLAGS.read_file)
  if num_articles == 0:
    raise InputError("--read_file %s holds no articles: it is empty or has "
                     "only blank lines." % FLAGS.read_file)
  if FLAGS.split_number > num_articles:
    raise InputError(
        "--split_number %d is larger than the number of articles in %s (%d);"
        " use --split_number %d or less, since an article is never cut." % (
            FLAGS.split_number, FLAGS.read_file, num_articles, num_articles))
  logging.info("%d articles, %d bytes; writing %d pieces of about %d bytes",
               num_articles, total_bytes, FLAGS.split_number,
               total_bytes // FLAGS.split_number)
  os.makedirs(FLAGS.folder, exist_ok=True)
  # Temporaries of pieces left by a killed earlier run.
  temporary_files.remove_stale(
      FLAGS.folder, re.escape(piece_prefix(FLAGS.name_base)) + r"\d+\.txt")
  sizes = write_pieces(FLAGS.read_file, FLAGS.folder, FLAGS.name_base,
                       FLAGS.split_number, num_articles, total_bytes)
  for index, (articles, size) in enumerate(sizes):
    logging.info("%s: %d articles, %d bytes",
                 os.path.join(FLAGS.folder,
                              piece_name(FLAGS.name_base, index)),
                 articles, size)
  warn_about_stale_pieces(FLAGS.folder, FLAGS.name_base, FLAGS.split_number)


if __name__ == "__main__":
  flags.mark_flag_as_required("read_file")
  flags.mark_flag_as_required("split_number")
  flags.mark_flag_as_required("folder")
  flags.mark_flag_as_required("name_base")
  command_line.run(main)
