"""Stage I: WikiExtractor on the shipped sample dump, then extract_jsons.py."""

import bz2
import glob
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import CHILD_ENV, REPO, run_script

sys.path.insert(0, os.path.join(REPO, "extract_wikipedia_for_bert"))
sys.path.insert(0, os.path.join(REPO, "data"))
# pylint: disable=g-import-not-at-top,wrong-import-position
import make_sample_dump
from sentence_splitter import split_sentences
# pylint: enable=g-import-not-at-top,wrong-import-position

SAMPLE = os.path.join(REPO, "data", "sample",
                      "enwiki-sample-pages-articles.xml.bz2")
WRAPPER = os.path.join(REPO, "extract_wikipedia_for_bert",
                       "run_wikiextractor.sh")
EXTRACT_JSONS = "extract_wikipedia_for_bert/extract_jsons.py"

# Wiki markup and entities that must not survive extraction.
MARKUP = ["[[", "]]", "{{", "}}", "''", "<ref", "</", "/>", "==", "&amp;",
          "&nbsp;", "&ndash;", "&lt;", "&gt;", "&quot;", "|", "Category:",
          "File:", "thumb", "REDIRECT", "<!--", "http"]
# Sentences of the non-article pages (Template:, User talk:, ...).
NON_ARTICLE_TEXT = ["This page is not an article", "Thanks for your edits",
                    "This template shows", "This category lists",
                    "A photograph of the river"]


def run_wrapper(*args):
  """Runs run_wikiextractor.sh with the test's python."""
  env = dict(CHILD_ENV, PYTHON=sys.executable, PROCESSES="2")
  return subprocess.run(["bash", WRAPPER] + [str(a) for a in args], env=env,
                        capture_output=True, text=True, timeout=300)


def read_articles(path):
  """Returns the articles of a formatted text file as lists of lines."""
  with open(path, encoding="utf-8") as f:
    text = f.read()
  return [block.split("\n") for block in text.split("\n\n") if block]


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
  """The sample dump run through the wrapper, plain and compressed."""
  root = tmp_path_factory.mktemp("extract")
  plain = root / "plain"
  result = run_wrapper(SAMPLE, plain)
  assert result.returncode == 0, result.stderr[-4000:]
  compressed = root / "compressed"
  result = run_wrapper("--compress", "--bytes", "500K", SAMPLE, compressed)
  assert result.returncode == 0, result.stderr[-4000:]
  return root, plain, compressed


@pytest.fixture(scope="module")
def formatted(extracted):
  """extract_jsons.py output of the plain extraction with 1 and 2 workers."""
  root, plain, _ = extracted
  outputs = {}
  for workers in (1, 2):
    out = root / ("wiki_%d.txt" % workers)
    run_script(EXTRACT_JSONS, "--folder", plain, "--write_file", out,
               "--num_workers", workers)
    outputs[workers] = out
  return outputs


def json_records(folder):
  """All JSON records WikiExtractor wrote under `folder`."""
  records = []
  for path in sorted(glob.glob(os.path.join(str(folder), "*", "wiki_*"))):
    opener = bz2.open if path.endswith(".bz2") else open
    with opener(path, "rt", encoding="utf-8") as f:
      records += [json.loads(line) for line in f]
  return records


def test_wrapper_keeps_every_article_and_drops_other_pages(extracted):
  _, plain, compressed = extracted
  pages = list(make_sample_dump.generate_pages(make_sample_dump.DEFAULT_SEED))
  articles = [title for title, namespace, _, redirect in pages
              if namespace == 0 and not redirect]
  records = json_records(plain)
  titles = [r["title"] for r in records if r["text"].strip()]
  # Upstream 3.0.6 loses the last article of the dump (issue #284).
  assert titles == articles
  assert not [r for r in records if ":" in r["title"]]
  assert ([r["title"] for r in json_records(compressed)] ==
          [r["title"] for r in records])


def test_output_identical_for_one_and_two_workers(formatted):
  with open(formatted[1], "rb") as one, open(formatted[2], "rb") as two:
    assert one.read() == two.read()


def test_no_markup_and_no_non_article_text(formatted):
  with open(formatted[2], encoding="utf-8") as f:
    text = f.read()
  for markup in MARKUP:
    assert markup not in text, markup
  for sentence in NON_ARTICLE_TEXT:
    assert sentence not in text
  # Entities became characters: the en dash of "(1741&ndash;1788)".
  assert re.search(r"\(\d{4}\u2013\d{4}\)", text)


def test_one_article_per_block_without_titles(extracted, formatted):
  _, plain, _ = extracted
  records = [r for r in json_records(plain) if r["text"].strip()]
  with open(formatted[2], encoding="utf-8") as f:
    text = f.read()
  assert text.endswith(".\n\n") and not text.startswith("\n")
  assert "\n\n\n" not in text
  articles = read_articles(formatted[2])
  assert len(articles) == len(records)
  titles = {r["title"] for r in records}
  for record, article in zip(records, articles):
    assert article[0] not in titles and article[0].rstrip(".") not in titles
    # The lead sentence names the article's subject ("Ostra (river)").
    assert record["title"].split(" (")[0].lower() in article[0].lower()


def test_one_sentence_per_line(formatted):
  lines = [line for line in open(formatted[2], encoding="utf-8")
           if line.strip()]
  # 26,603 sentences; the section headings are gone (wikiextractor_compat).
  assert len(lines) > 25000
  assert "History.\n" not in lines and "Early life.\n" not in lines
  for line in lines:
    line = line.rstrip("\n")
    assert line == line.strip()
    assert line[-1] in ".!?\"", line
    # Two sentences on one line ("... rich. St. Hild's ...") ...
    assert not re.search(r"[a-z0-9]{2}[.!?] [A-Z]", line), line
    # ... or one sentence cut after an abbreviation or inside a number.
    assert not re.search(r"\b(St|approx|Mt)\.$", line), line
    assert not re.match(r"[a-z0-9]", line), line


def test_bz2_input_gives_the_same_text(extracted, formatted, tmp_path):
  _, _, compressed = extracted
  assert glob.glob(os.path.join(str(compressed), "*", "wiki_*.bz2"))
  out = tmp_path / "from_bz2.txt"
  run_script(EXTRACT_JSONS, "--folder", compressed, "--write_file", out,
             "--num_workers", 2)
  with open(out, "rb") as a, open(formatted[1], "rb") as b:
    assert a.read() == b.read()


def write_json_file(path, records_or_lines):
  """Writes records (dicts) or raw lines (str) as a WikiExtractor file."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    for item in records_or_lines:
      f.write((json.dumps(item) if isinstance(item, dict) else item) + "\n")


def record(title, text):
  """A WikiExtractor JSON record."""
  return {"id": "1", "revid": "1", "url": "u", "title": title, "text": text}


def test_malformed_line_is_skipped_with_file_and_line(tmp_path):
  folder = tmp_path / "extracted"
  bad_file = str(folder / "AA" / "wiki_01")
  write_json_file(str(folder / "AA" / "wiki_00"),
                  [record("Ostra", "Ostra is a river. It is long.")])
  write_json_file(bad_file, [
      record("Dornvik", "Dornvik is a town."),
      '{"id": "7", "title": "Broken", "text": "cut off',
      record("Brenna", "Brenna &amp; Sons made rope.\nHistory.\nIt grew."),
  ])
  out = tmp_path / "out.txt"
  result = run_script(EXTRACT_JSONS, "--folder", folder, "--write_file", out,
                      "--num_workers", 2)
  assert "%s:2: skipping malformed JSON line" % bad_file in result.stderr
  assert "1 malformed lines skipped" in result.stderr
  assert read_articles(out) == [
      ["Ostra is a river.", "It is long."], ["Dornvik is a town."],
      ["Brenna & Sons made rope.", "History.", "It grew."]]


def test_title_line_dropped_only_when_it_is_the_title(tmp_path):
  folder = tmp_path / "extracted"
  write_json_file(str(folder / "AA" / "wiki_00"), [
      record("Ostra", "Ostra\n\nOstra is a river. It is long."),
      record("Lake Fen", "Lake Fen.\nThe lake is deep."),
      record("Dornvik", "Dornvik is a town."),
      record("Empty", ""),
  ])
  out = tmp_path / "out.txt"
  run_script(EXTRACT_JSONS, "--folder", folder, "--write_file", out,
             "--min_sentence_chars", 0)
  assert read_articles(out) == [["Ostra is a river.", "It is long."],
                                ["The lake is deep."], ["Dornvik is a town."]]


def test_min_sentence_chars_drops_section_titles(tmp_path):
  folder = tmp_path / "extracted"
  write_json_file(str(folder / "AA" / "wiki_00"), [
      record("Ostra", "Ostra is a river.\nHistory.\nIt was named in 1200.")])
  out = tmp_path / "out.txt"
  run_script(EXTRACT_JSONS, "--folder", folder, "--write_file", out,
             "--min_sentence_chars", 12)
  assert read_articles(out) == [["Ostra is a river.", "It was named in 1200."]]


def test_clear_errors(tmp_path):
  out = tmp_path / "out.txt"
  result = run_script(EXTRACT_JSONS, "--folder", tmp_path / "missing",
                      "--write_file", out, check=False)
  assert result.returncode != 0 and "--folder" in result.stderr
  doc_folder = tmp_path / "doc"
  write_json_file(str(doc_folder / "AA" / "wiki_00"),
                  ['<doc id="1" url="u" title="Ostra">', "Ostra", "</doc>"])
  result = run_script(EXTRACT_JSONS, "--folder", doc_folder, "--write_file",
                      out, check=False)
  assert result.returncode != 0 and "--json" in result.stderr
  assert not os.path.exists(out)
  assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_wrapper_errors(tmp_path):
  result = run_wrapper(tmp_path / "missing.xml.bz2", tmp_path / "out")
  assert result.returncode != 0 and "not found" in result.stderr
  full = tmp_path / "full"
  (full / "AA").mkdir(parents=True)
  result = run_wrapper(SAMPLE, full)
  assert result.returncode != 0 and "not empty" in result.stderr
  result = run_wrapper("--processes", "0", SAMPLE, tmp_path / "out")
  assert result.returncode != 0 and "--processes" in result.stderr


@pytest.mark.parametrize("sentences", [
    ["Mt. Everest is the highest mountain.", "It is 8,849 m tall."],
    ["The U.S. Army was founded in 1775.", "It is large."],
    ["He was born in Washington, D.C. in 1950."],
    ["J. R. R. Tolkien wrote The Hobbit.", "It was published in 1937."],
    ["Dr. Smith arrived at 5 p.m. on Monday.", "He left early."],
    ["The population was approx. 3.5 million in 2010.", "It grew later."],
    ["\"Are you sure?\" she asked.", "He nodded."],
    ["He said \"Stop.\"", "Then he left."],
    ["The company (founded c. 1900) made boats.", "It closed in 1950."],
    ["Smith et al. (2004) described it.", "Later work agreed."],
    ["He joined No. 5 Squadron in 1940.", "He flew many missions."],
    ["It lies on the St. Lawrence River.", "Ships use it."],
    ["The team won...", "Then they lost."],
    ["Prof. Li and Mr. Chen met on Oct. 3.", "They talked."],
    ["He died in 1820 (aged 70).", "His son inherited the farm."],
    ["The river is 3.5 km long.", "It flows north."],
    ["It stands 562 m.", "Ships pass below."],
    ["She lived in the U.S.", "The next year she moved to Canada."],
    ["Why did it fail?", "Nobody knows!", "Perhaps the rain."],
])
def test_split_sentences(sentences):
  assert split_sentences(" ".join(sentences)) == sentences


def test_shipped_sample_is_what_the_generator_writes(tmp_path):
  out = tmp_path / "sample.xml.bz2"
  subprocess.run([sys.executable, os.path.join(REPO, "data",
                                               "make_sample_dump.py"),
                  "--output", str(out)], check=True, capture_output=True,
                 timeout=120)
  with open(out, "rb") as made, open(SAMPLE, "rb") as shipped:
    assert made.read() == shipped.read()
  assert os.path.getsize(SAMPLE) < 3 * 1024 * 1024


# ---------------------------------------------------------------------------
# Real Wikipedia markup (issue 20): a dump of our own with what the sample's
# generator never writes.

ANARCHISM = """{{Short description|Political philosophy and movement}}
{{Infobox ideology
| name = Anarchism
| image = [[File:Circle-A red.svg|100px]]
| caption = The [[circle-A]] symbol
}}
'''Anarchism''' is a [[political philosophy]] and [[Social movement|movement]] that is sceptical of all [[Authority|authority]].<ref name="McLaughlin">{{cite book |last=McLaughlin |title=Anarchism and Authority |year=2007 |page=59}}</ref> It calls for the abolition of the [[State (polity)|state]].

== History ==
=== Origins ===
[[File:Nestor Makhno 1921.jpg|thumb|upright=1.2|A caption with [[a link]] in it, and [[Ukraine|another one]], from [https://archive.example.org the [[Internet Archive]]].]]
Anarchists such as [[Nestor Makhno]] worked to build [[Free Territory|a free territory]] in [[Ukraine]].<ref>[https://example.org/makhno The ''[[Guardian]]'' on Makhno]</ref> Their army held the region for two years.

==== Later years ====
{| class="wikitable"
|+ Events
|-
! Year !! Event
|-
| 1921 || [[Kronstadt rebellion]]
|-
| 1936 || {{flagicon|ESP}} [[Spanish Revolution of 1936|Revolution in Spain]]
|}
* A list item with [[a link]] in it.
** A nested item.
# A numbered item.
; Term : A definition line.
Later writers like [[Emma Goldman]] spread the ideas across [[North America]]. She lived in [[New York City]] for years.

== Theory ==
The energy of the system is <math>E = \\sum_{i} m_i c^2</math> in the rest frame. It was first written down in 1905.
Programs print it with <code>print(energy)</code> on one line. The notation spread quickly after that.

== See also ==
* [[Libertarian socialism]]
* [[Outline of anarchism]]

== Further reading ==
* {{cite book |last=Woodcock |title=Anarchism |year=1962}}

== External links ==
* [https://example.org/anarchism Anarchism at Example]

[[Category:Anarchism| ]]
[[Category:Political ideologies]]"""

RIVER = """{{Use dmy dates|date=May 2021}}
The '''Ostra''' is a river in the north of [[Velmaria]].<ref>{{cite web |url=https://example.org/ostra |title=Ostra}}</ref> It rises on the [[Grey Fell]] and flows into the [[Amber Sea]].

== Course ==
{| class="wikitable"
! Town !! Bank
|-
| [[Dornvik]] ||
{| class="wikitable"
| left || right
|}
|}
The river passes [[Dornvik]], where a [[bridge]] of 1802 crosses it.
<gallery>
File:Ostra at Dornvik.jpg|The Ostra at [[Dornvik]]
File:Ostra bridge.jpg|The [[bridge]]
</gallery>
A writer called the river "the <nowiki>[[</nowiki>ribbon of the north". Fishermen still work its lower reaches.

=== Tributaries ===
The main tributary is the [[Sel (river)|Sel]], which joins it near the coast.

== References ==
{{Reflist}}"""

HEADING_TITLES = ["History", "Origins", "Later years", "Theory", "See also",
                  "Further reading", "External links", "Course",
                  "Tributaries", "References"]


def write_test_dump(path, with_siteinfo=True, pages=None):
  """A small pages-articles dump of real-looking markup (and a redirect).

  pages: (title, namespace, id, wikitext, redirect) tuples instead.
  """
  import random
  rng = random.Random(7)
  pages = pages or [
      ("Anarchism", 0, 10, ANARCHISM, None),
      ("Ostra", 0, 11, RIVER, None),
      ("Anarchist", 0, 12, "#REDIRECT [[Anarchism]]", "Anarchism")]
  with bz2.open(str(path), "wt", encoding="utf-8") as out:
    out.write(make_sample_dump.HEADER)
    if with_siteinfo:
      out.write(make_sample_dump.SITEINFO)
    for title, namespace, page_id, text, redirect in pages:
      out.write(make_sample_dump.page_xml(rng, title, namespace, page_id, text,
                                          redirect))
    out.write("</mediawiki>\n")


def test_real_markup_leaves_only_text_passages(tmp_path):
  dump = tmp_path / "enwiki-test-pages-articles.xml.bz2"
  write_test_dump(dump)
  result = run_wrapper(dump, tmp_path / "extracted")
  assert result.returncode == 0, result.stderr[-4000:]
  out = tmp_path / "wiki.txt"
  result = run_script(EXTRACT_JSONS, "--folder", tmp_path / "extracted",
                      "--write_file", out, "--num_workers", 1)
  text = out.read_text(encoding="utf-8")
  for markup in ["[[", "]]", "{{", "}}", "{|", "|}", "formula_", "codice_"]:
    assert markup not in text, (markup, text)
  lines = text.split("\n")
  for title in HEADING_TITLES:
    assert title not in lines and title + "." not in lines, (title, text)
  # Lists, tables, galleries, infoboxes and categories are gone too.
  for gone in ["A list item", "nested item", "numbered item", "definition",
               "Kronstadt", "Revolution in Spain", "Events", "Town", "left",
               "The Ostra at Dornvik", "circle-A", "Libertarian socialism",
               "Woodcock", "Political ideologies", "Anarchism at Example"]:
    assert gone not in text, (gone, text)
  # The sentences around the headings and the markup stay whole; those
  # holding a <math> or <code> placeholder, or broken markup, are dropped.
  assert read_articles(out) == [[
      "Anarchism is a political philosophy and movement that is sceptical "
      "of all authority.",
      "It calls for the abolition of the state.",
      "Anarchists such as Nestor Makhno worked to build a free territory in "
      "Ukraine.",
      "Their army held the region for two years.",
      "Later writers like Emma Goldman spread the ideas across North "
      "America.",
      "She lived in New York City for years.",
      "It was first written down in 1905.",
      "The notation spread quickly after that.",
  ], [
      "The Ostra is a river in the north of Velmaria.",
      "It rises on the Grey Fell and flows into the Amber Sea.",
      "The river passes Dornvik, where a bridge of 1802 crosses it.",
      "Fishermen still work its lower reaches.",
      "The main tributary is the Sel, which joins it near the coast.",
  ]]
  assert ("3 sentences dropped: they hold markup or a math/code "
          "placeholder" in result.stderr)


def test_a_dump_without_siteinfo_is_an_error(tmp_path):
  dump = tmp_path / "no-siteinfo.xml.bz2"
  write_test_dump(dump, with_siteinfo=False)
  result = run_wrapper(dump, tmp_path / "extracted")
  assert result.returncode == 1, result.stderr[-4000:]
  assert ("ERROR: WikiExtractor extracted no article from the dump %s: it "
          "holds 3 <page> elements but no <siteinfo> header" % dump) in (
              result.stderr), result.stderr[-4000:]
  assert "Done" not in result.stderr
  assert not os.path.exists(tmp_path / "extracted")
  assert not os.path.exists(tmp_path / "extracted.partial")


# What a real dump still left (issue 26): a list article's headings in forms
# other than `== ... ==`, a named reference whose name holds a slash, and a
# <math> placeholder glued to the next word.
LIST_ARTICLE = """This is a list of '''Velmarian writers'''.<ref name="Ahmed Rashid/The Telegraph"></ref> It is sorted by surname.<ref name='Fen/Ostra 1990'>{{cite web |title=Writers}}</ref>

=A=
* [[Ansel Brook]], poet

<h2>B</h2>
* [[Bera Holt]], novelist

'''Notes'''
The energy is <math>E = h \\nu</math>photon in that poem. Most wrote in the north.

Bibliography
* {{cite book |last=Holt |title=Writers |year=1990}}"""


def test_list_article_leftovers_are_removed(tmp_path):
  dump = tmp_path / "list.xml.bz2"
  write_test_dump(dump, pages=[("List of Velmarian writers", 0, 20,
                                LIST_ARTICLE, None)])
  result = run_wrapper(dump, tmp_path / "extracted")
  assert result.returncode == 0, result.stderr[-4000:]
  out = tmp_path / "wiki.txt"
  result = run_script(EXTRACT_JSONS, "--folder", tmp_path / "extracted",
                      "--write_file", out, "--num_workers", 1)
  assert read_articles(out) == [[
      "This is a list of Velmarian writers.",
      "It is sorted by surname.",
      "Most wrote in the north.",
  ]]
  assert "1 sentences dropped" in result.stderr
  assert "4 heading lines dropped" in result.stderr
