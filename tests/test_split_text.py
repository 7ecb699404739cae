"""Stage II: split_text.py splits at article boundaries into equal pieces."""

import os
import random

import pytest

from conftest import run_script

SCRIPT = "split_text.py"


def make_articles(count, seed=0):
  """Articles (lists of sentences) of very different lengths."""
  rng = random.Random(seed)
  articles = []
  for i in range(count):
    sentences = rng.randint(1, 40)
    articles.append(["Article %d says fact %d about the Ostra river." % (i, j)
                     for j in range(sentences)])
  return articles


def write_messy_text(path, articles):
  """Writes articles with the blank-line variants real files contain.

  Leading blank lines, several blank lines or whitespace-only lines between
  articles, and no newline at the end of the file.
  """
  parts = ["\n\n"]
  for i, article in enumerate(articles):
    parts.append("\n".join(article))
    parts.append(["\n\n", "\n\n\n", "\n   \n", "\n\t\n\n"][i % 4])
  text = "".join(parts).rstrip("\n")
  with open(path, "w", encoding="utf-8") as f:
    f.write(text)


def read_pieces(folder, name_base, count):
  """Returns the article lists of pieces 0..count-1."""
  pieces = []
  for i in range(count):
    with open(os.path.join(str(folder), "%s_%d.txt" % (name_base, i)),
              encoding="utf-8") as f:
      text = f.read()
    assert text.endswith("\n\n") and "\n\n\n" not in text
    pieces.append([block.split("\n") for block in text.split("\n\n")
                   if block])
  return pieces


def article_bytes(article):
  """Size of an article as written: its lines plus the blank line."""
  return len(("\n".join(article) + "\n\n").encode("utf-8"))


@pytest.mark.parametrize("split_number", [1, 3, 7])
def test_union_of_pieces_is_the_input_article_for_article(tmp_path,
                                                          split_number):
  articles = make_articles(200)
  read_file = tmp_path / "wiki.txt"
  write_messy_text(read_file, articles)
  folder = tmp_path / "new" / "split_dir"  # Created by split_text.py.
  run_script(SCRIPT, "--read_file", read_file, "--split_number", split_number,
             "--folder", folder, "--name_base", "wiki_split")
  assert sorted(os.listdir(folder)) == sorted(
      "wiki_split_%d.txt" % i for i in range(split_number))
  pieces = read_pieces(folder, "wiki_split", split_number)
  assert [a for piece in pieces for a in piece] == articles
  # Pieces are roughly equal: each is off an equal share by less than the
  # largest article (every cut is at the article boundary nearest the share).
  share = sum(article_bytes(a) for a in articles) / float(split_number)
  largest = max(article_bytes(a) for a in articles)
  for piece in pieces:
    assert abs(sum(article_bytes(a) for a in piece) - share) < largest


def test_every_piece_gets_an_article_even_with_one_huge_article(tmp_path):
  articles = [["Huge sentence number %d." % j for j in range(2000)]]
  articles += [["Small article %d." % i] for i in range(4)]
  read_file = tmp_path / "wiki.txt"
  write_messy_text(read_file, articles)
  run_script(SCRIPT, "--read_file", read_file, "--split_number", 5,
             "--folder", tmp_path, "--name_base", "part_")
  pieces = read_pieces(tmp_path, "part", 5)  # "part_" gets no second "_".
  assert [len(piece) for piece in pieces] == [1, 1, 1, 1, 1]
  assert [a for piece in pieces for a in piece] == articles
  assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_split_number_equal_to_article_count(tmp_path):
  articles = make_articles(6, seed=3)
  read_file = tmp_path / "wiki.txt"
  write_messy_text(read_file, articles)
  run_script(SCRIPT, "--read_file", read_file, "--split_number", 6,
             "--folder", tmp_path / "out", "--name_base", "wiki")
  assert read_pieces(tmp_path / "out", "wiki", 6) == [[a] for a in articles]


def run_failing(tmp_path, read_file, split_number):
  """Runs split_text.py expecting failure; returns its stderr."""
  result = run_script(SCRIPT, "--read_file", read_file, "--split_number",
                      split_number, "--folder", tmp_path / "out",
                      "--name_base", "wiki", check=False)
  assert result.returncode != 0
  assert not os.path.exists(tmp_path / "out" / "wiki_0.txt")
  return result.stderr


def test_missing_file(tmp_path):
  stderr = run_failing(tmp_path, tmp_path / "nope.txt", 2)
  assert "--read_file %s does not exist" % (tmp_path / "nope.txt") in stderr


@pytest.mark.parametrize("content", ["", "\n\n  \n\t\n"])
def test_empty_file(tmp_path, content):
  read_file = tmp_path / "empty.txt"
  read_file.write_text(content)
  stderr = run_failing(tmp_path, read_file, 1)
  assert "holds no articles" in stderr


@pytest.mark.parametrize("split_number", [0, -3])
def test_split_number_below_one(tmp_path, split_number):
  read_file = tmp_path / "wiki.txt"
  write_messy_text(read_file, make_articles(3))
  stderr = run_failing(tmp_path, read_file, split_number)
  assert "--split_number must be at least 1, got %d" % split_number in stderr


def test_split_number_above_article_count(tmp_path):
  read_file = tmp_path / "wiki.txt"
  write_messy_text(read_file, make_articles(3))
  stderr = run_failing(tmp_path, read_file, 4)
  assert "--split_number 4 is larger than the number of articles" in stderr
  assert "(3)" in stderr


def test_stray_argument_is_an_error(tmp_path):
  read_file = tmp_path / "wiki.txt"
  write_messy_text(read_file, make_articles(3))
  result = run_script(SCRIPT, "--read_file", read_file, "--split_number", 2,
                      "--folder", tmp_path, "--name_base", "wiki", "extra",
                      check=False)
  assert result.returncode != 0 and "extra" in result.stderr
