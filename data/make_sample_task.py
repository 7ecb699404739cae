# coding=utf-8
"""Writes the demo's downstream task: a sentence -> the kind of its article.

The sample dump's generator (data/make_sample_dump.py) files every article
under a category that says what it describes: a person, a town, a river, a
region, or a species of one of five groups (bird, fish, insect, amphibian,
plant). This script turns held-out articles into a 9-class `run_classifier.py
--task_name tsv` task:

- each article's title is found through WikiExtractor's JSON (--extracted_folder)
  and its label through the page's categories in the dump (--dump);
- every sentence of the article except the first (which names the kind
  outright, "... is a bird that lives along ...") and the section titles
  (under --min_words words, "Description.") is one example, labelled with
  the article's kind;
- the split is by article (the MD5 of the title): --test_percent and
  --dev_percent of the articles go to test.tsv and dev.tsv, the rest to
  train.tsv, so no article gives sentences to two splits.

Many sentences fit several kinds ("It is listed as rare." fits every species
group), so no model reaches 100%. The files have the header `text_a`,
`label`; test.tsv keeps its labels, which run_classifier.py ignores.

  .venv/bin/python data/make_sample_task.py \
      --dump data/sample/enwiki-sample-pages-articles.xml.bz2 \
      --extracted_folder demo_output/extracted \
      --text_dir demo_output/heldout_text --output_dir demo_output/task
"""

import bz2
import collections
import hashlib
import json
import os
import re
import sys
from xml.etree import ElementTree

from absl import flags
from absl import logging

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "extract_wikipedia_for_bert"))
# pylint: disable=g-import-not-at-top,wrong-import-position
from bert_distillation import command_line
import extract_jsons
from bert_distillation import temporary_files
# pylint: enable=g-import-not-at-top,wrong-import-position

flags.DEFINE_string("dump", None,
                    "The MediaWiki XML dump (bz2 or plain) that the articles "
                    "came from; its [[Category:...]] links give the labels.")
flags.DEFINE_string("extracted_folder", None,
                    "WikiExtractor's --json output of the same dump (gives "
                    "each article's title).")
flags.DEFINE_string("text_dir", None,
                    "Folder of text files, one sentence per line and a blank "
                    "line after each article (split_text.py's pieces): the "
                    "articles to make the task from.")
flags.DEFINE_string("output_dir", None,
                    "Where train.tsv, dev.tsv and test.tsv are written.")
flags.DEFINE_integer("dev_percent", 15, "Percent of the articles in dev.tsv.")
flags.DEFINE_integer("test_percent", 15,
                     "Percent of the articles in test.tsv.")
flags.DEFINE_integer("min_words", 4,
                     "Sentences of fewer words are section titles and are "
                     "left out.")

FLAGS = flags.FLAGS

InputError = command_line.InputError

# The categories make_sample_dump.py writes, by the start of their name
# ("Towns in Slansenland", "Birds of Velmaria"), and the label of each.
CATEGORY_LABELS = (
    ("People from ", "person"), ("Towns in ", "town"),
    ("Rivers of ", "river"), ("Regions of ", "region"),
    ("Birds of ", "bird"), ("Fishs of ", "fish"), ("Insects of ", "insect"),
    ("Amphibians of ", "amphibian"), ("Plants of ", "plant"),
)
SPLITS = ("train", "dev", "test")
CATEGORY_LINK = re.compile(r"\[\[\s*Category\s*:\s*([^\]|]+)")


def open_dump(path):
  """Opens the XML dump for reading, bz2-compressed or not."""
  with open(path, "rb") as probe:
    compressed = probe.read(3) == b"BZh"
  return bz2.open(path, "rb") if compressed else open(path, "rb")


def category_label(categories):
  """The label of the first category with a known name, or None."""
  for category in categories:
    for prefix, label in CATEGORY_LABELS:
      if category.strip().startswith(prefix):
        return label
  return None


def labels_by_title(dump_path):
  """{title: label} of every page of the dump whose categories give one."""
  labels = {}
  with open_dump(dump_path) as dump:
    for _, element in ElementTree.iterparse(dump):
      if not element.tag.endswith("}page") and element.tag != "page":
        continue
      title = element.findtext("{*}title") or element.findtext("title")
      text = (element.findtext("{*}revision/{*}text") or
              element.findtext("revision/text") or "")
      label = category_label(CATEGORY_LINK.findall(text))
      if title and label:
        labels[" ".join(title.split())] = label
      element.clear()
  return labels


def titles_by_text(extracted_folder):
  """{article text as extract_jsons.py writes it: title} for every article."""
  titles = {}
  for path in extract_jsons.find_extracted_files(extracted_folder):
    with extract_jsons.open_extracted_file(path) as lines:
      for line in lines:
        if not line.strip():
          continue
        try:
          record = json.loads(line)
          sentences = extract_jsons.article_sentences(record)
        except (ValueError, TypeError, KeyError, AttributeError):
          continue  # extract_jsons.py skipped it too.
        if sentences:
          titles["\n".join(sentences)] = " ".join(str(record["title"]).split())
  return titles


def read_articles(text_dir):
  """Lists of sentences, one per article, of every file in text_dir."""
  articles = []
  for name in sorted(os.listdir(text_dir)):
    with open(os.path.join(text_dir, name), encoding="utf-8") as f:
      for block in f.read().split("\n\n"):
        sentences = [line for line in block.split("\n") if line.strip()]
        if sentences:
          articles.append(sentences)
  return articles


def article_split(title, dev_percent, test_percent):
  """train, dev or test for one article, from the MD5 of its title."""
  bucket = int(hashlib.md5(title.encode("utf-8")).hexdigest(), 16) % 100
  if bucket < test_percent:
    return "test"
  if bucket < test_percent + dev_percent:
    return "dev"
  return "train"


def task_rows(articles, titles, labels, dev_percent, test_percent, min_words):
  """{split: [(sentence, label)]} and counts of skipped articles and rows."""
  rows = {split: [] for split in SPLITS}
  skipped = collections.Counter()
  for sentences in articles:
    title = titles.get("\n".join(sentences))
    label = labels.get(title)
    if label is None:
      skipped["articles without a known title or category"] += 1
      continue
    split = article_split(title, dev_percent, test_percent)
    for sentence in sentences[1:]:
      if len(sentence.split()) >= min_words:
        rows[split].append((" ".join(sentence.split()), label))
  # A label that training never sees cannot be predicted (and
  # run_classifier.py rejects it): such dev and test rows are left out.
  known = {label for _, label in rows["train"]}
  for split in ("dev", "test"):
    kept = [row for row in rows[split] if row[1] in known]
    skipped["%s rows of a label absent from train" % split] += (
        len(rows[split]) - len(kept))
    rows[split] = kept
  return rows, skipped


def write_tsv(path, rows):
  """Writes a header (text_a, label) and the rows, atomically."""

  def write(out):
    out.write("text_a\tlabel\n")
    for sentence, label in rows:
      out.write("%s\t%s\n" % (sentence, label))

  temporary_files.write_atomically(path, write, opener=lambda name, mode: open(
      name, mode, encoding="utf-8"))


def check_flags():
  """Raises InputError naming the flag to fix."""
  if not os.path.isfile(FLAGS.dump):
    raise InputError("--dump %s is not a file" % FLAGS.dump)
  for name in ("extracted_folder", "text_dir"):
    if not os.path.isdir(FLAGS[name].value):
      raise InputError("--%s %s is not a directory" % (name,
                                                      FLAGS[name].value))
  if (FLAGS.dev_percent < 0 or FLAGS.test_percent < 0 or
      FLAGS.dev_percent + FLAGS.test_percent >= 100):
    raise InputError("--dev_percent and --test_percent must be >= 0 and "
                     "leave articles for training (sum under 100)")


def main(_):
  check_flags()
  labels = labels_by_title(FLAGS.dump)
  titles = titles_by_text(FLAGS.extracted_folder)
  articles = read_articles(FLAGS.text_dir)
  rows, skipped = task_rows(articles, titles, labels, FLAGS.dev_percent,
                            FLAGS.test_percent, FLAGS.min_words)
  for split in SPLITS:
    if not rows[split]:
      raise InputError(
          "No %s examples from the %d articles in --text_dir %s (categories "
          "known for %d pages of --dump): too few articles, or a dump that "
          "make_sample_dump.py did not write" % (
              split, len(articles), FLAGS.text_dir, len(labels)))
  os.makedirs(FLAGS.output_dir, exist_ok=True)
  for split in SPLITS:
    write_tsv(os.path.join(FLAGS.output_dir, split + ".tsv"), rows[split])
    logging.info("%s.tsv: %d sentences, %s", split, len(rows[split]),
                 dict(collections.Counter(label for _, label in rows[split])))
  for why, count in sorted(skipped.items()):
    if count:
      logging.info("Skipped %d %s", count, why)


if __name__ == "__main__":
  flags.mark_flags_as_required(["dump", "extracted_folder", "text_dir",
                                "output_dir"])
  command_line.run(main)
