"""data/make_sample_task.py: held-out articles -> a sentence-classification task.

A small dump, WikiExtractor-style JSON and the text extract_jsons.py makes of
it; each sentence names its article, so every row's label can be checked.
"""

import bz2
import collections
import hashlib
import json
import re

from conftest import run_script

KINDS = (("person", "People from Tolm"), ("town", "Towns in Aland"),
         ("bird", "Birds of Velmaria"), ("plant", "Plants of Velmaria"))
NUM_ARTICLES = 60


def region_title():
  """A title whose MD5 puts it in test.tsv (bucket < 15)."""
  for number in range(1000):
    title = "Region %d" % number
    if int(hashlib.md5(title.encode()).hexdigest(), 16) % 100 < 15:
      return title
  raise AssertionError("no title in the test split")


def page_xml(title, text):
  """One <page> of a MediaWiki export."""
  return ("<page><title>%s</title><ns>0</ns><revision><text>%s</text>"
          "</revision></page>" % (title, text))


def make_inputs(tmp_path):
  """Writes the dump and the JSON; returns {title: (number, kind)}."""
  articles = {}
  for number in range(NUM_ARTICLES):
    kind, category = KINDS[number % len(KINDS)]
    articles["%s %d" % (kind.capitalize(), number)] = (number, kind, category)
  # The only region, in test: no training row has its label.
  articles[region_title()] = (NUM_ARTICLES, "region", "Regions of Velmaria")
  # A page whose categories name no kind.
  articles["Stray page"] = (NUM_ARTICLES + 1, None, "Velmarian weavers")
  pages, records = [], []
  for title, (number, kind, category) in articles.items():
    pages.append(page_xml(title, "Some text.\n[[Category:%s]]" % category))
    records.append({"id": str(number), "title": title, "text": (
        "%s opens the article number %d.\nDescription.\n"
        "Fact one of article %d is here. Fact two of article %d is here. "
        "Fact three of article %d is here." % (
            title, number, number, number, number))})
  pages.append(page_xml("Person 0 (person)", "#REDIRECT [[Person 0]]"))
  dump = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">'
          "%s</mediawiki>" % "".join(pages))
  with bz2.open(tmp_path / "dump.xml.bz2", "wt") as f:
    f.write(dump)
  (tmp_path / "extracted" / "AA").mkdir(parents=True)
  (tmp_path / "extracted" / "AA" / "wiki_00").write_text(
      "".join(json.dumps(record) + "\n" for record in records))
  (tmp_path / "heldout").mkdir()
  run_script("extract_wikipedia_for_bert/extract_jsons.py", "--folder",
             tmp_path / "extracted", "--write_file",
             tmp_path / "heldout" / "wiki.txt", "--num_workers", 1)
  return {title: (number, kind) for title, (number, kind, _) in
          articles.items()}


def task_command(tmp_path, *extra):
  """The make_sample_task.py arguments for the inputs of make_inputs."""
  return ["--dump", tmp_path / "dump.xml.bz2",
          "--extracted_folder", tmp_path / "extracted",
          "--text_dir", tmp_path / "heldout",
          "--output_dir", tmp_path / "task"] + list(extra)


def test_sentences_get_their_article_kind_split_by_article(tmp_path):
  articles = make_inputs(tmp_path)
  kind_of = {number: kind for number, kind in articles.values()}
  result = run_script("data/make_sample_task.py", *task_command(tmp_path))
  split_of = {}
  counts = collections.Counter()
  for split in ("train", "dev", "test"):
    lines = (tmp_path / "task" / (split + ".tsv")).read_text().splitlines()
    assert lines[0] == "text_a\tlabel"
    assert len(lines) > 1, split
    for line in lines[1:]:
      sentence, label = line.split("\t")
      # Neither the first sentence nor the section title is an example.
      match = re.fullmatch(r"Fact \w+ of article (\d+) is here\.", sentence)
      assert match, sentence
      number = int(match.group(1))
      assert label == kind_of[number], (sentence, label)
      assert split_of.setdefault(number, split) == split, number
      counts[number] += 1
  # Every article with a known kind gives its three facts, except the
  # region: its label is absent from train. The stray page gives none.
  assert counts == {number: 3 for number in range(NUM_ARTICLES)}
  assert "Skipped 3 test rows of a label absent from train" in result.stderr
  assert "Skipped 1 articles without a known title or category" in (
      result.stderr)


def test_bad_percentages_end_in_one_error_line(tmp_path):
  make_inputs(tmp_path)
  result = run_script("data/make_sample_task.py", *task_command(
      tmp_path, "--dev_percent", 60, "--test_percent", 50), check=False)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith(
      "ERROR: --dev_percent and --test_percent"), result.stderr
  assert "Traceback" not in result.stderr
