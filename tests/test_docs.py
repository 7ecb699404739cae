"""Keeps the docs true: commands use real flags, named files exist.

Pure Python: the scripts' flags are read from their source (absl
`flags.DEFINE_*` and argparse `add_argument` calls, following imports of
project modules; the option patterns of the shell scripts), never by running
a script or importing TensorFlow.

Checked in README.md, docs/*.md and extract_wikipedia_for_bert/README.md:
  * every command in a fenced code block (lines joined at a trailing `\\`)
    or an inline code span that runs a project script uses only flags that
    script defines, and `make X` names a Makefile target;
  * every project file a doc names, every local link and every anchor exists;
  * a flag table (first column `--flag`) names only flags of its script, and
    a literal default agrees with the DEFINE default. The script is named by a
    `<!-- flags: path -->` comment right before the table, or by the section
    heading;
  * README.md is at most 3,000 words, and each docs/ file starts with the
    command a user runs.

Opt-outs: a fence tagged ```text, or `<!-- docs-test: skip -->` on the line
before a fence, is not read for commands.
"""

import ast
import functools
import glob
import os
import re
import shlex

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_WORD_LIMIT = 3000
SKIP_MARKER = "<!-- docs-test: skip -->"
FLAGS_MARKER = re.compile(r"<!--\s*flags:\s*(\S+)\s*-->")

# Parsed by absl itself, not defined by a DEFINE call: the help flags (added
# by app.run) and flagfile/undefok (special-cased by FlagValues).
ABSL_SPECIAL_FLAGS = {"help", "helpshort", "helpfull", "helpxml", "flagfile",
                      "undefok", "h", "?"}
# Files shown in the docs whose names live in other projects.
PROJECT_FILE_EXTENSIONS = (".py", ".sh", ".md", ".json", ".txt", ".bz2",
                           ".png", ".cfg", ".toml", ".yaml", ".yml")


def doc_files():
  """The documents under test, relative to the repository."""
  names = ["README.md", os.path.join("extract_wikipedia_for_bert", "README.md")]
  names += sorted(os.path.relpath(path, REPO)
                  for path in glob.glob(os.path.join(REPO, "docs", "*.md")))
  return names


def read(relative_path):
  """The text of a repository file."""
  with open(os.path.join(REPO, relative_path), encoding="utf-8") as handle:
    return handle.read()


# ---------------------------------------------------------------- markdown


def split_fences(text):
  """Returns (prose lines, fenced blocks) of a markdown text.

  Prose lines are (line number, text) outside fences; each block is a dict
  with its info string, first line number, lines and whether it is opted out.
  """
  prose, blocks = [], []
  block = None
  previous = ""
  for number, line in enumerate(text.splitlines(), 1):
    stripped = line.strip()
    if block is None and stripped.startswith("```"):
      block = {"lang": stripped[3:].strip().lower(), "line": number,
               "lines": [], "skip": previous.strip() == SKIP_MARKER}
      block["skip"] = block["skip"] or block["lang"] == "text"
    elif block is not None and stripped.startswith("```"):
      blocks.append(block)
      block = None
    elif block is not None:
      block["lines"].append(line)
    else:
      prose.append((number, line))
    if stripped:
      previous = line
  assert block is None, "unclosed code fence at line %d" % block["line"]
  return prose, blocks


def logical_lines(lines):
  """Joins lines that end with a backslash to the next one."""
  joined, current = [], ""
  for line in lines:
    if line.rstrip().endswith("\\"):
      current += line.rstrip()[:-1] + " "
    else:
      joined.append(current + line)
      current = ""
  if current:
    joined.append(current)
  return joined


def inline_spans(prose):
  """(line number, code) of every inline code span in prose lines."""
  spans = []
  for number, line in prose:
    for match in re.finditer(r"(`+)(.+?)\1", line):
      spans.append((number, match.group(2).strip()))
  return spans


def commands_of(line):
  """The simple commands of a shell line, each as a list of words."""
  lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
  lexer.whitespace_split = True
  lexer.commenters = "#"
  try:
    words = list(lexer)
  except ValueError:  # an unbalanced quote: not a shell command
    return []
  commands, current = [], []
  for word in words:
    if word and set(word) <= set(";&|()<>"):
      commands.append(current)
      current = []
    else:
      current.append(word)
  commands.append(current)
  return [command for command in commands if command]


def github_slug(heading):
  """The anchor GitHub gives a heading."""
  text = heading.strip().lower().replace("`", "")
  text = re.sub(r"[^\w\- ]", "", text)
  return text.replace(" ", "-")


@functools.lru_cache(maxsize=None)
def anchors_of(relative_path):
  """Every heading anchor of a markdown file (with GitHub's -1, -2 suffixes)."""
  prose, _ = split_fences(read(relative_path))
  anchors, seen = set(), {}
  for _, line in prose:
    match = re.match(r"#{1,6}\s+(.*)", line)
    if match:
      slug = github_slug(match.group(1))
      count = seen.get(slug, 0)
      anchors.add(slug if count == 0 else "%s-%d" % (slug, count))
      seen[slug] = count + 1
    for anchor in re.findall(r'<a\s+(?:id|name)="([^"]+)"', line):
      anchors.add(anchor)
  return anchors


# ------------------------------------------------------- a script's flags


class ScriptFlags:
  """The flags a script accepts: names, boolean names and literal defaults."""

  def __init__(self):
    self.names = set()
    self.booleans = set()
    self.defaults = {}  # name -> literal default (absent: not a literal)
    self.argparse = False

  def accepts(self, name):
    """True when --name (or absl's --noname of a boolean) is a flag."""
    if name in self.names:
      return True
    return (not self.argparse and name.startswith("no")
            and name[2:] in self.booleans)


def module_file(name, importer_dir):
  """The project file of an imported module, or None for a library.

  `name` is dotted: `modeling`, or `bert_distillation.record_format` for a
  module of the package.
  """
  relative = name.replace(".", os.sep)
  for folder in (importer_dir, REPO):
    candidate = os.path.join(folder, relative + ".py")
    if os.path.isfile(candidate):
      return candidate
  return None


def call_name(node):
  """`DEFINE_string` for flags.DEFINE_string(...) or DEFINE_string(...)."""
  func = node.func
  if isinstance(func, ast.Attribute):
    return func.attr
  if isinstance(func, ast.Name):
    return func.id
  return None


def literal(node):
  """The value of a literal AST node, or raises ValueError."""
  return ast.literal_eval(node)


def collect_python_flags(path, flags, seen):
  """Adds the flags defined in path and in the project modules it imports."""
  path = os.path.realpath(path)
  if path in seen:
    return
  seen.add(path)
  with open(path, encoding="utf-8") as handle:
    tree = ast.parse(handle.read(), path)
  folder = os.path.dirname(path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        imported = module_file(alias.name, folder)
        if imported:
          collect_python_flags(imported, flags, seen)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      # `from bert_distillation import x` imports the module x of the package.
      candidates = [module_file(node.module, folder)] + [
          module_file(node.module + "." + alias.name, folder)
          for alias in node.names]
      for imported in candidates:
        if imported:
          collect_python_flags(imported, flags, seen)
    elif isinstance(node, ast.Call):
      name = call_name(node)
      if name and name.startswith("DEFINE"):
        add_absl_flag(node, name, flags)
      elif name == "add_argument":
        flags.argparse = True
        flags.names.add("help")
        flags.names.add("h")
        for argument in node.args:
          if isinstance(argument, ast.Constant) and isinstance(
              argument.value, str) and argument.value.startswith("-"):
            flags.names.add(argument.value.lstrip("-"))


def add_absl_flag(node, define, flags):
  """Records the flag of one absl DEFINE_* call (name and default)."""
  keywords = {keyword.arg: keyword.value for keyword in node.keywords}
  name_node = node.args[0] if node.args else keywords.get("name")
  if name_node is None:
    return
  try:
    name = literal(name_node)
  except ValueError:
    return
  if not isinstance(name, str):
    return
  flags.names.add(name)
  if "bool" in define.lower():
    flags.booleans.add(name)
  default_node = node.args[1] if len(node.args) > 1 else keywords.get(
      "default")
  if default_node is not None:
    try:
      flags.defaults[name] = literal(default_node)
    except ValueError:
      pass


@functools.lru_cache(maxsize=None)
def absl_builtin_flags():
  """Flags absl defines for every script (logging, app), read from its source."""
  import absl  # pylint: disable=g-import-not-at-top  (pure Python, no TF)
  flags = ScriptFlags()
  absl_dir = os.path.dirname(absl.__file__)
  for relative in ("app.py", os.path.join("logging", "__init__.py")):
    path = os.path.join(absl_dir, relative)
    collect_python_flags(path, flags, set())
    with open(path, encoding="utf-8") as handle:
      flags.names.update(re.findall(r"^\s+NAME = '(\w+)'", handle.read(),
                                    re.MULTILINE))
  flags.names |= ABSL_SPECIAL_FLAGS
  return frozenset(flags.names), frozenset(flags.booleans)


def collect_shell_flags(path, flags):
  """Adds the options a shell script's argument parsing accepts.

  Options are the `--name)` patterns of its case statements and the
  `== "--name"` tests. A script that hands "$@" to a Python script it names
  in an assignment (`trainer=$SCRIPT_DIR/x.py`) also accepts that script's
  flags.
  """
  with open(path, encoding="utf-8") as handle:
    text = handle.read()
  for line in text.splitlines():
    pattern = re.match(r"\s*([-\w|=*\s]+)\)", line)
    if pattern:
      for option in pattern.group(1).split("|"):
        option = option.strip().rstrip("*").rstrip("=")
        if re.fullmatch(r"--?[\w-]+", option):
          flags.names.add(option.lstrip("-"))
    for option in re.findall(r'==\s*"(--?[\w-]+)"', line):
      flags.names.add(option.lstrip("-"))
  passes_arguments = re.search(r'^\s*"\$@"\s*$', text, re.MULTILINE)
  targets = re.findall(r'^\s*\w+=\S*?([\w-]+\.py)"?\s*$', text, re.MULTILINE)
  if passes_arguments:
    for target in targets:
      target_path = os.path.join(os.path.dirname(path), target)
      if os.path.isfile(target_path):
        collect_python_flags(target_path, flags, set())
        names, booleans = absl_builtin_flags()
        flags.names |= names
        flags.booleans |= booleans


@functools.lru_cache(maxsize=None)
def flags_of(script):
  """The ScriptFlags of a project script, given relative to the repository."""
  path = os.path.join(REPO, script)
  flags = ScriptFlags()
  if script.endswith(".sh"):
    collect_shell_flags(path, flags)
  else:
    collect_python_flags(path, flags, set())
    if not flags.argparse:
      names, booleans = absl_builtin_flags()
      flags.names |= names
      flags.booleans |= booleans
  return flags


@functools.lru_cache(maxsize=None)
def make_targets():
  """The targets of the Makefile."""
  targets = set()
  for line in read("Makefile").splitlines():
    match = re.match(r"^([\w.$()/-][\w.$()/ -]*):(?!=)", line)
    if match:
      targets.update(match.group(1).split())
  return targets


@functools.lru_cache(maxsize=None)
def files_by_basename():
  """basename -> relative paths of every file in the repository."""
  found = {}
  for folder, dirs, files in os.walk(REPO):
    dirs[:] = [d for d in dirs if not d.startswith(".") and d not in (
        "__pycache__", "demo_output", "bench_quality_output")]
    for name in files:
      found.setdefault(name, []).append(
          os.path.relpath(os.path.join(folder, name), REPO))
  return found


# ------------------------------------------------------------ commands


PYTHON = re.compile(r"(.*/)?python(3(\.\d+)?)?$")
LAUNCHERS = ("horovodrun", "mpirun")


def resolve_script(word, doc, bare_name_ok):
  """The repository path of a script named in a command, or None."""
  word = word[2:] if word.startswith("./") else word
  for base in (REPO, os.path.join(REPO, os.path.dirname(doc))):
    candidate = os.path.normpath(os.path.join(base, word))
    if os.path.isfile(candidate):
      return os.path.relpath(candidate, REPO)
  if bare_name_ok and "/" not in word:
    matches = files_by_basename().get(word, [])
    if len(matches) == 1:
      return matches[0]
  return None


def invocation(words):
  """(script word, its arguments) of a command that runs a script, or None."""
  while words and re.match(r"^[A-Za-z_]\w*=", words[0]):
    words = words[1:]  # VAR=value prefixes
  if not words:
    return None
  if os.path.basename(words[0]) in LAUNCHERS:
    for index, word in enumerate(words):
      if PYTHON.match(word):
        words = words[index:]
        break
    else:
      return None
  first = words[0]
  if PYTHON.match(first) or first in ("bash", "sh"):
    if len(words) < 2 or words[1].startswith("-"):
      return None  # python -c / -m, bash -c
    return words[1], words[2:]
  if first.endswith((".sh", ".py")):
    return first, words[1:]
  return None


def command_errors(words, doc, where, inline):
  """What is wrong with one command: unknown flags, scripts or make targets."""
  if words[0] == "make":
    return ["%s: `make %s`: no such Makefile target" % (where, word)
            for word in words[1:]
            if "=" not in word and not word.startswith("-")
            and word not in make_targets()]
  found = invocation(words)
  if found is None:
    return []
  script_word, arguments = found
  if inline and not any(word.startswith("--") for word in arguments):
    return []  # a file named in prose, not a command
  if re.search(r"[<>$*{}]", script_word):
    return []  # a placeholder, not a path
  script = resolve_script(script_word, doc, bare_name_ok=inline)
  if script is None:
    if inline and "/" not in script_word:
      return []  # a bare name in prose that is not ours
    return ["%s: runs %s, which does not exist" % (where, script_word)]
  flags = flags_of(script)
  errors = []
  for argument in arguments:
    argument = argument.strip("[]")
    if not argument.startswith("--") or len(argument) == 2:
      continue
    name = argument[2:].split("=", 1)[0]
    if not flags.accepts(name):
      errors.append("%s: %s has no flag --%s" % (where, script, name))
  return errors


def doc_commands(doc):
  """(where, words, inline) of every command of a document."""
  prose, blocks = split_fences(read(doc))
  found = []
  for block in blocks:
    if block["skip"] or block["lang"] in ("json", "python", "py"):
      continue
    for line in logical_lines(block["lines"]):
      for words in commands_of(line):
        found.append(("%s:%d" % (doc, block["line"]), words, False))
  for number, span in inline_spans(prose):
    for words in commands_of(span):
      found.append(("%s:%d" % (doc, number), words, True))
  return found


@pytest.mark.parametrize("doc", doc_files())
def test_commands_use_only_flags_their_script_defines(doc):
  errors = []
  for where, words, inline in doc_commands(doc):
    errors += command_errors(words, doc, where, inline)
  assert not errors, "\n".join(errors)


# --------------------------------------------------------------- files


def named_paths(doc):
  """(where, path) of every project file a document names in code."""
  prose, blocks = split_fences(read(doc))
  pieces = [(number, span) for number, span in inline_spans(prose)]
  for block in blocks:
    if block["lang"] not in ("json", "python", "py"):
      pieces += [(block["line"], line) for line in block["lines"]]
  found = []
  for number, piece in pieces:
    for word in re.split(r"[\s=\"'`,;()]+", piece):
      word = word.rstrip(".:")
      if word:
        found.append(("%s:%d" % (doc, number), word))
  return found


def is_ignored_output(path):
  """Whether path lies in a folder .gitignore lists (a run's outputs).

  Such folders (demo_output/, a benchmark's work folder) exist only after a
  run, and then perhaps half written, so what a doc names in them is not
  checked.
  """
  with open(os.path.join(REPO, ".gitignore"), encoding="utf-8") as handle:
    folders = {line.strip().strip("/") for line in handle
               if line.strip().endswith("/")}
  top = os.path.relpath(path, REPO).split(os.sep)[0]
  return top in folders


def missing_file(word, doc):
  """An error message when word names a project file that does not exist."""
  path, _, test_name = word.partition("::")
  if re.search(r"[<>$*{}…\[\]|]", path) or "://" in path:
    return None
  if not path.endswith(PROJECT_FILE_EXTENSIONS):
    return None
  if not re.fullmatch(r"[\w./-]+", path):
    return None
  if "/" not in path:
    if not path.endswith((".py", ".sh")):
      return None
    if path in files_by_basename():
      return None
    return "names %s, which is in no folder of the project" % path
  for base in (REPO, os.path.join(REPO, os.path.dirname(doc))):
    candidate = os.path.normpath(os.path.join(base, path))
    parent = os.path.dirname(candidate)
    if os.path.isfile(candidate):
      if test_name:
        with open(candidate, encoding="utf-8") as handle:
          if not re.search(r"^def %s\(" % re.escape(test_name),
                           handle.read(), re.MULTILINE):
            return "names %s, which has no test %s" % (path, test_name)
      return None
    if os.path.isdir(parent) and parent.startswith(REPO + os.sep) and (
        not os.path.relpath(parent, REPO).startswith(".")) and (
            not is_ignored_output(candidate)):
      return "names %s, which does not exist" % path
  return None  # a file in a folder the user creates (outputs, downloads)


@pytest.mark.parametrize("doc", doc_files())
def test_named_project_files_exist(doc):
  errors = []
  for where, word in named_paths(doc):
    problem = missing_file(word, doc)
    if problem:
      errors.append("%s: %s" % (where, problem))
  assert not errors, "\n".join(errors)


@pytest.mark.parametrize("doc", doc_files())
def test_local_links_and_anchors_exist(doc):
  prose, _ = split_fences(read(doc))
  errors = []
  for number, line in prose:
    for target in re.findall(r"\]\(([^)\s]+)\)", line):
      if re.match(r"^[a-z]+:", target):
        continue
      path, _, anchor = target.partition("#")
      relative = os.path.normpath(os.path.join(os.path.dirname(doc), path)) \
          if path else doc
      where = "%s:%d: link %s" % (doc, number, target)
      if not os.path.exists(os.path.join(REPO, relative)):
        errors.append("%s: no file %s" % (where, relative))
      elif anchor and relative.endswith(".md") and (
          anchor not in anchors_of(relative)):
        errors.append("%s: %s has no heading #%s" % (where, relative, anchor))
  assert not errors, "\n".join(errors)


# ---------------------------------------------------------- flag tables


def tables(text):
  """(first line number, header cells, body rows, lines before) per table."""
  lines = text.splitlines()
  found = []
  index = 0
  in_fence = False
  while index < len(lines):
    if lines[index].strip().startswith("```"):
      in_fence = not in_fence
    if (not in_fence and lines[index].startswith("|")
        and index + 1 < len(lines)
        and re.match(r"^\|[\s:|-]+\|\s*$", lines[index + 1])):
      start = index
      header = split_row(lines[index])
      index += 2
      rows = []
      while index < len(lines) and lines[index].startswith("|"):
        rows.append(split_row(lines[index]))
        index += 1
      found.append((start + 1, header, rows, lines[:start]))
      continue
    index += 1
  return found


def split_row(line):
  """The cells of a markdown table row."""
  return [cell.strip() for cell in line.strip().strip("|").split("|")]


def table_script(before):
  """The script a flag table is about: the marker, else the section heading."""
  for line in reversed(before):
    if line.strip():
      marker = FLAGS_MARKER.search(line)
      if marker:
        return marker.group(1)
      break
  for line in reversed(before):
    if line.startswith("#"):
      names = re.findall(r"`([\w./-]+\.(?:py|sh))", line)
      return names[0] if names else None
  return None


def default_mismatch(cell, default):
  """A message when a literal default cell disagrees with the DEFINE default."""
  value = cell.replace("`", "").strip()
  if value in ("required", "(required)"):
    return None if default is None else "doc says required, DEFINE has %r" % (
        default,)
  if value == '""':
    return None if default == "" else "doc says \"\", DEFINE has %r" % (
        default,)
  if value in ("True", "False"):
    return None if default is (value == "True") else (
        "doc says %s, DEFINE has %r" % (value, default))
  if re.fullmatch(r"-?\d+(\.\d*)?([eE]-?\d+)?", value):
    if isinstance(default, (int, float)) and not isinstance(default, bool) \
        and float(value) == float(default):
      return None
    return "doc says %s, DEFINE has %r" % (value, default)
  if re.fullmatch(r"[\w.,-]+", value) and isinstance(default, str):
    return None if value == default else "doc says %s, DEFINE has %r" % (
        value, default)
  return None  # a description, not a literal


def flag_table_errors(doc):
  """What is wrong with the flag tables of a document."""
  errors = []
  for line, header, rows, before in tables(read(doc)):
    flag_rows = [row for row in rows if row[0].startswith("`--")]
    if not flag_rows:
      continue
    where = "%s:%d" % (doc, line)
    script = table_script(before)
    if script is None:
      errors.append("%s: flag table without a script: put "
                    "<!-- flags: path/to/script --> right before it" % where)
      continue
    if not os.path.isfile(os.path.join(REPO, script)):
      errors.append("%s: flag table of %s, which does not exist" % (
          where, script))
      continue
    flags = flags_of(script)
    lowered = [cell.lower() for cell in header]
    default_column = lowered.index("default") if "default" in lowered else None
    for row in flag_rows:
      names = re.findall(r"`--([\w-]+)", row[0])
      for name in names:
        if name not in flags.names:
          errors.append("%s: %s has no flag --%s" % (where, script, name))
        elif (default_column is not None and len(names) == 1
              and default_column < len(row) and name in flags.defaults
              and not script.endswith(".sh")):
          problem = default_mismatch(row[default_column],
                                     flags.defaults[name])
          if problem:
            errors.append("%s: --%s default: %s" % (where, name, problem))
  return errors


@pytest.mark.parametrize("doc", doc_files())
def test_flag_tables_match_the_script(doc):
  errors = flag_table_errors(doc)
  assert not errors, "\n".join(errors)


# -------------------------------------------------------------- shape


def test_readme_is_at_most_3000_words():
  words = len(read("README.md").split())
  assert words <= README_WORD_LIMIT, "README.md has %d words" % words


@pytest.mark.parametrize(
    "doc", [doc for doc in doc_files() if doc.startswith("docs" + os.sep)])
def test_each_docs_file_starts_with_a_command(doc):
  lines = [line for line in read(doc).splitlines() if line.strip()]
  assert lines[0].startswith("# "), "%s must start with a title" % doc
  assert lines[1].startswith("```"), (
      "%s: the first thing after the title must be the command a user runs, "
      "in a code fence" % doc)


# ------------------------------------------- the checker itself can fail


def test_checker_finds_a_misspelt_flag_and_a_missing_file():
  """The checks above are not vacuous: known-bad input is reported."""
  doc = "docs/stage-5-distill.md"
  bad = commands_of(".venv/bin/python network_distillation_single_machine_"
                    "truncated.py --bert_config_file c.json --kd_targt sampled "
                    "--nodo_eval --do_train=True")[0]
  errors = command_errors(bad, doc, "x", inline=False)
  assert errors == ["x: network_distillation_single_machine_truncated.py has "
                    "no flag --kd_targt"]
  launched = commands_of("horovodrun -np 2 -H localhost:2 python "
                         "network_distillation_distributed_truncated.py "
                         "--fp16_allreduce True --helpfull --logtostderr")[0]
  assert not command_errors(launched, doc, "x", inline=False)
  assert command_errors(
      ["./multinode_train.sh", "--dry-run", "8", "--dryrun"], doc, "x", False)
  assert not command_errors(
      ["./multinode_train.sh", "--dry-run", "8", "--precision", "bf16"], doc,
      "x", False)
  assert command_errors(["make", "demos"], doc, "x", False)
  assert missing_file("bench/bench_qualty.py", doc)
  assert missing_file("tests/test_docs.py::test_no_such_test", doc)
  assert not missing_file("tests/test_docs.py::test_readme_is_at_most_3000_words",
                          doc)
  assert default_mismatch("`128`", 64)
  assert default_mismatch("required", 5)
  assert not default_mismatch("5e-5", 5e-5)
