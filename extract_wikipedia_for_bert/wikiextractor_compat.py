# coding=utf-8
"""Runs WikiExtractor from the `wikiextractor` PyPI package (3.0.6) with fixes.

Takes the same arguments as `python -m wikiextractor.WikiExtractor`:

  python extract_wikipedia_for_bert/wikiextractor_compat.py DUMP.xml.bz2 \\
      --json -o extracted --processes 2 --bytes 100M

The installed package is not edited. Four small runtime patches fix bugs of
3.0.6 that break our use of it:

1. It does not import on Python 3.11. Two regular expressions in
   wikiextractor/extract.py put the global flag `(?i)` in the middle of the
   pattern. Python 3.6-3.10 accepted that (with a DeprecationWarning) and
   applied the flag to the whole pattern; Python 3.11 raises `re.error: global
   flags not at the start of the expression`. While wikiextractor is imported,
   re.compile moves such a flag to the start of its pattern, which is exactly
   what Python <= 3.10 did. Other patterns are compiled untouched and
   re.compile is restored right after the import.
2. The last article of the dump is missing from the output files (upstream
   issue #284): the writer runs in a child process that exits without closing
   its last file, so the file's write buffer is lost. We close it.
3. `--compress` crashes (str written to a binary bz2 file) and then hangs. We
   encode the text as UTF-8 before it reaches the bz2 file.
4. A damaged dump (a .bz2 cut short or with flipped bytes) makes it print an
   error and then wait forever for its child processes; a plain .xml dump
   cut short is extracted in part without a word. The dump is now read
   through CheckedDump, which turns a decompression error, text that is not
   UTF-8, or a missing final </mediawiki> into a DumpError naming the dump;
   the child processes are then stopped and we exit with status 1.

The BERT paper extracts "only the text passages and ignore[s] lists,
tables, and headers". Fixes 5 to 7 and 9 make the text hold
only that:

5. Section headings are dropped. 3.0.6 writes every heading as a one-word
   "sentence" ("History.", "Further reading.") unless Extractor.keepSections
   is False, which no command-line option sets.
6. An external link whose label holds an internal link,
   `[https://example.org The [[Guardian]] archive]`, ended at the first `]`
   and left an unmatched `[[`, after which every link of the article stayed
   raw (`... such as [[Nestor Makhno]] worked ...`). Its label may now hold
   whole `[[...]]` links, which the internal-link pass then replaces.
7. An unmatched `[[` that is left anyway (broken wikitext, a `<nowiki>[[`)
   spoils at most its own paragraph: internal links are replaced paragraph
   by paragraph (a link never spans a blank line).

What is left for extract_jsons.py to remove are the sentences around the
placeholders that WikiExtractor writes for <math> and <code> (formula_1,
codice_2), headings that are not `== ... ==` lines (`=A=`, `<h2>B</h2>`,
as in list articles) and any markup left by wikitext too broken to parse.

8. A dump from which WikiExtractor extracts no article (one without a
   <siteinfo> header, whose pages it skips while looking for the header; a
   dump of talk pages only) is an error naming the dump and what it holds,
   instead of a successful run that writes nothing.
9. An element it discards (<ref>, <references>, <small>, ...) whose opening
   tag holds a `/` in an attribute value, `<ref name="Ahmed Rashid/The
   Telegraph"></ref>`, was not recognised and stayed in the sentence; its
   opening tag may now hold quoted values with any character.

Fixes 2 to 9 are applied to version 3.0.6 only (the version pinned in
requirements.txt); later versions rewrote the code they patch.
"""

import bz2
import json
import multiprocessing
import os
import re
import sys

# The release whose writer process fixes 2 and 3 are written for.
PATCHED_VERSION = "3.0.6"

_INLINE_GLOBAL_FLAGS = re.compile(r"\(\?([aiLmsux]+)\)")


def compile_with_leading_flags(original_compile):
  """Wraps re.compile to accept global flags in the middle of a pattern."""

  def patched_compile(pattern, flags=0):
    try:
      return original_compile(pattern, flags)
    except re.error as error:
      if (not isinstance(pattern, str) or
          "global flags not at the start" not in str(error)):
        raise
      letters = "".join(_INLINE_GLOBAL_FLAGS.findall(pattern))
      moved = "(?%s)%s" % (letters, _INLINE_GLOBAL_FLAGS.sub("", pattern))
      return original_compile(moved, flags)

  return patched_compile


def close_output_when_done(reduce_process):
  """Wraps reduce_process so the child process flushes its last file."""

  def patched_reduce_process(output_queue, output):
    try:
      reduce_process(output_queue, output)
    finally:
      if output is not sys.stdout:
        output.close()

  return patched_reduce_process


def encode_when_compressing(write):
  """Wraps OutputSplitter.write so bz2 output receives bytes, not str."""

  def patched_write(self, data):
    if self.compress and isinstance(data, str):
      data = data.encode("utf-8")
    return write(self, data)

  return patched_write


class DumpError(Exception):
  """The dump is damaged or incomplete, or holds no article."""


def external_link_pattern(url_protocols, url_class):
  """MediaWiki's bracketed external link, `[URL label]`.

  3.0.6's label stops at the first `]`; this one may also hold whole
  internal links (`[[...]]`) and single brackets, as labels do in real
  articles. Groups as in 3.0.6: 1 the URL, 2 its protocol, 3 the label.
  """
  protocols = "|".join(re.escape(protocol) for protocol in url_protocols)
  label = r"(?:\[\[[^\[\]\n]*\]\]|\[(?!\[)|[^\[\]\x00-\x08\x0a-\x1F])*?"
  return re.compile(r"\[((?i:(%s))%s+)\s*(%s)\]" % (protocols, url_class,
                                                     label), re.S | re.U)


def by_paragraph(replace_links):
  """Wraps replaceInternalLinks to work on one paragraph at a time."""

  def patched_replace_links(text):
    return "\n\n".join(replace_links(paragraph)
                        for paragraph in text.split("\n\n"))

  return patched_replace_links


# 3.0.6's opening tag of a discarded element, `<ref name=...>`: no `/`
# anywhere in it, so that `<ref name="x"/>` (self-closing) is not taken for
# one; and the same tag with quoted attribute values that may hold a `/`.
DISCARDED_OPEN_TAG_END = r"\b[^>/]*>"
QUOTED_OPEN_TAG_END = r"""\b(?:"[^"]*"|'[^']*'|[^>/"'])*>"""


def quoted_values_in_tags(drop_nested):
  """Wraps dropNested so that a discarded element's tag may quote a `/`."""

  def patched_drop_nested(text, open_delim, close_delim):
    if open_delim.endswith(DISCARDED_OPEN_TAG_END):
      open_delim = (open_delim[:-len(DISCARDED_OPEN_TAG_END)] +
                    QUOTED_OPEN_TAG_END)
    return drop_nested(text, open_delim, close_delim)

  return patched_drop_nested


# The last line of a complete MediaWiki XML dump.
DUMP_END = "</mediawiki>"
# Bytes at the end of an uncompressed dump searched for DUMP_END up front.
TAIL_BYTES = 4096


class CheckedDump(object):
  """The lines of a dump, raising DumpError when it is damaged or cut short.

  Iterating resumes where the last loop stopped (WikiExtractor reads the
  site info in a first loop and the pages in a second one). It counts the
  <page> elements and notes the end of <siteinfo>, for the error when no
  article is extracted; `opened` keeps every dump read in this process.
  """

  opened = []

  def __init__(self, path, lines):
    self.path = path
    self.pages = 0
    self.has_siteinfo = False
    self._file = lines
    self._lines = self._checked_lines()
    CheckedDump.opened.append(self)

  def __iter__(self):
    return self

  def __next__(self):
    return next(self._lines)

  def close(self):
    self._file.close()

  def _checked_lines(self):
    last_tag_line = ""
    try:
      for line in self._file:
        if "<" in line:
          last_tag_line = line
          if "<page>" in line:
            self.pages += 1
          elif "</siteinfo>" in line:
            self.has_siteinfo = True
        yield line
    except (EOFError, OSError, UnicodeDecodeError) as error:
      raise DumpError("the dump %s is damaged (%s: %s); download it again" %
                      (self.path, type(error).__name__, error)) from None
    if last_tag_line.strip() != DUMP_END:
      raise DumpError(missing_end_message(self.path))


def missing_end_message(path):
  """The error for a dump that does not end with </mediawiki>."""
  return ("the dump %s is incomplete or damaged: it does not end with %s "
          "(a download cut short?); download it again" % (path, DUMP_END))


def check_uncompressed_end(path):
  """Raises DumpError at once when an uncompressed dump lacks its end."""
  with open(path, "rb") as dump:
    dump.seek(max(0, os.path.getsize(path) - TAIL_BYTES))
    tail = dump.read()
  if tail.rstrip().endswith(DUMP_END.encode()):
    return
  raise DumpError(missing_end_message(path))


def open_checked(decode_open):
  """Wraps decode_open so that every dump is read through CheckedDump."""

  def patched_decode_open(filename, mode="rt", encoding="utf-8"):
    if os.path.splitext(filename)[1] not in (".bz2", ".gz"):
      check_uncompressed_end(filename)
    return CheckedDump(filename, decode_open(filename, mode, encoding))

  return patched_decode_open


def count_articles(folder):
  """The articles with text that WikiExtractor wrote under `folder`.

  JSON lines (--json) with a non-blank "text", or <doc> elements; output
  files may be bz2-compressed (--compress).
  """
  count = 0
  for root, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(root, name)
      opener = bz2.open if name.endswith(".bz2") else open
      with opener(path, "rt", encoding="utf-8") as lines:
        for line in lines:
          if line.startswith("<doc "):
            count += 1
          elif line.startswith("{"):
            count += bool(json.loads(line).get("text", "").strip())
  return count


def no_article_message(dump):
  """The error for a dump (a CheckedDump) from which nothing was extracted."""
  if not dump.pages:
    found = "it holds no <page> element (is it a pages-articles dump?)"
  elif not dump.has_siteinfo:
    found = ("it holds %d <page> elements but no <siteinfo> header, and "
             "WikiExtractor reads pages only after </siteinfo>; add the "
             "header of a real dump" % dump.pages)
  else:
    found = ("none of its %d <page> elements is an article with text (they "
             "are redirects, empty, or outside the main namespace)" %
             dump.pages)
  return "WikiExtractor extracted no article from the dump %s: %s" % (
      dump.path, found)


def check_articles_extracted(out_file):
  """Raises DumpError when process_dump wrote no article into out_file."""
  if out_file == "-" or not CheckedDump.opened:
    return
  if count_articles(out_file) == 0:
    raise DumpError(no_article_message(CheckedDump.opened[-1]))


def stop_children_on_error(process_dump):
  """Wraps process_dump so that an error stops its child processes.

  Otherwise the reduce process waits forever for pages that never come and
  the interpreter, which joins it at exit, never ends.
  """

  def patched_process_dump(input_file, template_file, out_file, *args,
                           **kwargs):
    try:
      result = process_dump(input_file, template_file, out_file, *args,
                            **kwargs)
      check_articles_extracted(out_file)
      return result
    except BaseException as error:
      for child in multiprocessing.active_children():
        child.kill()
        child.join()
      if isinstance(error, DumpError):
        sys.exit("ERROR: %s" % error)
      raise

  return patched_process_dump


def import_wikiextractor():
  """Imports wikiextractor.WikiExtractor with the fixes applied."""
  original_compile = re.compile
  re.compile = compile_with_leading_flags(original_compile)
  try:
    # pylint: disable-next=g-import-not-at-top
    from wikiextractor import WikiExtractor
  finally:
    re.compile = original_compile
  if WikiExtractor.__version__ != PATCHED_VERSION:
    return WikiExtractor
  # process_dump looks these up by name when it runs, so replacing the module
  # attributes is enough. Forked workers inherit the patched module.
  WikiExtractor.reduce_process = close_output_when_done(
      WikiExtractor.reduce_process)
  WikiExtractor.OutputSplitter.write = encode_when_compressing(
      WikiExtractor.OutputSplitter.write)
  WikiExtractor.decode_open = open_checked(WikiExtractor.decode_open)
  WikiExtractor.process_dump = stop_children_on_error(
      WikiExtractor.process_dump)
  # Text passages only (fixes 5 to 7 and 9).
  extract = sys.modules["wikiextractor.extract"]
  extract.Extractor.keepSections = False
  extract.ExtLinkBracketedRegex = external_link_pattern(
      extract.wgUrlProtocols, extract.EXT_LINK_URL_CLASS)
  extract.replaceInternalLinks = by_paragraph(extract.replaceInternalLinks)
  extract.dropNested = quoted_values_in_tags(extract.dropNested)
  return WikiExtractor


def main():
  """Runs WikiExtractor's command line (arguments come from sys.argv)."""
  wiki_extractor = import_wikiextractor()
  sys.argv[0] = "WikiExtractor.py"
  wiki_extractor.main()


if __name__ == "__main__":
  main()
