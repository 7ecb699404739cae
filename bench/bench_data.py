# coding=utf-8
"""Benchmarks the data stages; prints a table.

Rows:
  * create_pretraining_data.py: instances/s with 1 and 2 workers on 4 files,
    and peak memory for an input of 1x (one file) and 4x (four such files).
  * With --reference_dir: Google's original create_pretraining_data.py (and
    its tokenization.py, both in that folder; they are not part of this
    project) on the same text, same vocab and same settings, as one
    single-process run over the files, which is how it is used.
  * extract_wikipedia_for_bert/extract_jsons.py: sentences/s on synthetic
    WikiExtractor JSON files.

Every run is a fresh subprocess. Time is reported for the whole command and
for the data work alone (first to last log line, without the TensorFlow
import, which takes seconds on a busy machine). Memory is reported two ways:
the peak RSS of the largest single process (getrusage RUSAGE_CHILDREN,
measured by a small launcher) and the peak memory of the whole process tree,
sampled every 0.1 s, with the pages forked workers share counted once.

The text is synthetic (a deterministic Zipf-distributed made-up language with
a matching WordPiece vocab) unless --text_file and --vocab_file are given.
Google's code is not shipped; fetch create_pretraining_data.py and
tokenization.py from github.com/google-research/bert into a folder outside
the project and pass it as --reference_dir:

  .venv/bin/python bench/bench_data.py [--reference_dir /tmp/google_bert]
"""

import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from absl import flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bert_distillation import command_line  # pylint: disable=g-import-not-at-top

flags.DEFINE_string(
    "reference_dir", None,
    "Folder holding Google's original create_pretraining_data.py and "
    "tokenization.py (TF1 code, run through a small compatibility shim). "
    "Without it the comparison rows are left out.")
flags.DEFINE_integer("file_kb", 1024, "Size of one input file (the 1x input).")
flags.DEFINE_integer("dupe_factor", 5, "--dupe_factor of every run.")
flags.DEFINE_integer("max_seq_length", 128, "--max_seq_length of every run.")
flags.DEFINE_integer("max_predictions_per_seq", 20,
                     "--max_predictions_per_seq of every run.")
flags.DEFINE_string("text_file", None,
                    "Optional real text (one sentence per line, blank line "
                    "between documents) cut into the input files instead of "
                    "synthetic text. Needs --vocab_file.")
flags.DEFINE_string("vocab_file", None, "Vocab for --text_file.")
flags.DEFINE_integer("extract_kb", 4096,
                     "Size of the JSON input for extract_jsons.py.")
flags.DEFINE_string("work_dir", None,
                    "Scratch folder (default: a temp folder, removed after).")

FLAGS = flags.FLAGS

CHILD_ENV = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2",
                 PYTHONPATH=REPO)

# Runs a command and prints the peak RSS (KB) of its largest process: the
# launcher's RUSAGE_CHILDREN covers every waited-for descendant.
LAUNCHER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[1:])
sys.stderr.write("\\nPEAK_RSS_KB=%d\\n"
                 % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code)
"""

# Lets Google's TF1 script run on TensorFlow 2: tf.compat.v1 has the
# tf.flags, tf.gfile, tf.python_io, tf.logging and tf.app it uses.
GOOGLE_SHIM = """
import os, runpy, sys
import tensorflow.compat.v1 as tf
tf.disable_v2_behavior()
sys.modules["tensorflow"] = tf
reference_dir = sys.argv[1]
script = os.path.join(reference_dir, "create_pretraining_data.py")
sys.path.insert(0, reference_dir)  # its tokenization.py, not ours
sys.argv = [script] + sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SYLLABLES = ("ka ri to na me su lo ve da pi ren mor tal gan sel vik ost "
             "bar len dor fen hal ith un er an el or").split()
PUNCTUATION = list(".,;:!?'\"()-")


class SyntheticLanguage(object):
  """A made-up language: Zipf-distributed words built from syllables."""

  def __init__(self, num_words=6000, seed=0):
    rng = random.Random(seed)
    words = set()
    while len(words) < num_words:
      words.add("".join(rng.choice(SYLLABLES)
                        for _ in range(rng.choice((1, 2, 2, 3, 3, 3, 4)))))
    # As in real languages, the frequent words are the short ones.
    self.words = sorted(words)
    rng.shuffle(self.words)
    self.words.sort(key=len)
    weights = [1.0 / (rank + 1) for rank in range(num_words)]
    total = sum(weights)
    self.cumulative = []
    running = 0.0
    for weight in weights:
      running += weight / total
      self.cumulative.append(running)

  def sentence(self, rng):
    """Returns one sentence of 5-30 words."""
    words = rng.choices(self.words, cum_weights=self.cumulative,
                        k=rng.randint(5, 30))
    if rng.random() < 0.3:
      words[rng.randrange(len(words))] += ","
    if rng.random() < 0.1:
      words[rng.randrange(len(words))] = "(%s)" % rng.randint(1, 2024)
    return " ".join(words).capitalize() + rng.choice(".....!?")

  def document(self, rng):
    """Returns the sentences of one document (3-40 of them)."""
    return [self.sentence(rng) for _ in range(rng.randint(3, 40))]

  def write_vocab(self, path, num_whole_words=3000):
    """Writes a WordPiece vocab: frequent words whole, the rest in pieces."""
    tokens = list(SPECIAL_TOKENS) + self.words[:num_whole_words]
    tokens += SYLLABLES + ["##" + s for s in SYLLABLES]
    tokens += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens += ["##" + chr(c) for c in range(ord("a"), ord("z") + 1)]
    tokens += [str(d) for d in range(10)] + ["##%d" % d for d in range(10)]
    tokens += PUNCTUATION
    seen = set()
    with open(path, "w", encoding="utf-8") as f:
      for token in tokens:
        if token not in seen:
          seen.add(token)
          f.write(token + "\n")


def write_text_files(folder, num_files, file_bytes, seed):
  """Writes `num_files` synthetic text files of about `file_bytes` each."""
  os.makedirs(folder, exist_ok=True)
  language = SyntheticLanguage()
  for index in range(num_files):
    rng = random.Random("%d/%d" % (seed, index))
    with open(os.path.join(folder, "part_%d.txt" % index), "w") as f:
      size = 0
      while size < file_bytes:
        text = "\n".join(language.document(rng)) + "\n\n"
        f.write(text)
        size += len(text)
  return language


def cut_text_file(text_file, folder, num_files, file_bytes):
  """Cuts the first documents of a real text file into input files."""
  os.makedirs(folder, exist_ok=True)
  with open(text_file, encoding="utf-8", errors="ignore") as reader:
    for index in range(num_files):
      size = 0
      with open(os.path.join(folder, "part_%d.txt" % index), "w") as f:
        for line in reader:
          f.write(line)
          size += len(line)
          if size >= file_bytes and not line.strip():
            break
      if size < file_bytes:
        raise ValueError("--text_file is too small for %d files of %d KB"
                         % (num_files, file_bytes // 1024))


def tree_memory_kb(root_pid):
  """Returns the memory (KB) of a process tree, shared pages counted once.

  That is the RSS of the largest process plus the private memory (USS) of
  the others: forked workers share most of their pages (TensorFlow's code
  and data) with the parent. Unlike PSS, it does not shrink when unrelated
  processes on the machine map the same libraries.
  """
  children = {}
  for name in os.listdir("/proc"):
    if name.isdigit():
      try:
        with open("/proc/%s/stat" % name) as f:
          parent = int(f.read().rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(name))
      except (OSError, IndexError, ValueError):
        pass
  sizes = []  # (rss, uss) of every process in the tree
  stack = [root_pid]
  while stack:
    pid = stack.pop()
    stack.extend(children.get(pid, []))
    fields = {}
    try:
      with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
          parts = line.split()
          if len(parts) == 3 and parts[2] == "kB":
            fields[parts[0].rstrip(":")] = int(parts[1])
    except OSError:
      continue
    sizes.append((fields.get("Rss", 0), fields.get("Private_Clean", 0) +
                  fields.get("Private_Dirty", 0)))
  if not sizes:
    return 0
  sizes.sort(reverse=True)
  return sizes[0][0] + sum(uss for _, uss in sizes[1:])


def run_measured(command, cwd=None, env=None):
  """Runs `command` under the launcher; returns a dict of measurements.

  seconds: wall time; rss: peak RSS (KB) of its largest process; memory:
  peak of tree_memory_kb, sampled every 0.1 s; log: its stderr.
  """
  start = time.time()
  process = subprocess.Popen([sys.executable, "-c", LAUNCHER] + command,
                             env=env or CHILD_ENV, cwd=cwd or REPO,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
  peak = [0]

  def sample():
    while process.poll() is None:
      # The launcher itself is small; measure what it runs.
      for child in _children(process.pid):
        peak[0] = max(peak[0], tree_memory_kb(child))
      time.sleep(0.1)

  sampler = threading.Thread(target=sample, daemon=True)
  sampler.start()
  log = process.communicate()[1]
  seconds = time.time() - start
  sampler.join()
  if process.returncode != 0:
    raise RuntimeError("%s failed:\n%s" % (" ".join(command), log[-3000:]))
  rss = int(re.search(r"PEAK_RSS_KB=(\d+)", log).group(1))
  return dict(seconds=seconds, rss=rss, memory=peak[0], log=log)


def _children(pid):
  """Returns the ids of the direct children of process `pid`."""
  try:
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
      return [int(child) for child in f.read().split()]
  except OSError:
    return []


def logged_seconds(log):
  """Seconds between the first and last absl log lines of a run.

  Both scripts log their first line once TensorFlow is imported and the
  vocab is loaded, and their last when the records are written, so this is
  the data work alone, without the start-up.
  """
  stamps = re.findall(r"^[IWEF]\d{4} (\d\d):(\d\d):(\d\d\.\d+) ", log,
                      flags=re.MULTILINE)
  seconds = [3600 * int(h) + 60 * int(m) + float(s) for h, m, s in stamps]
  elapsed = seconds[-1] - seconds[0]
  return elapsed + 86400 if elapsed < 0 else elapsed


def common_flags(vocab_file):
  """Flags shared by our script and Google's."""
  return ["--vocab_file", vocab_file, "--do_lower_case", "True",
          "--max_seq_length", str(FLAGS.max_seq_length),
          "--max_predictions_per_seq", str(FLAGS.max_predictions_per_seq),
          "--dupe_factor", str(FLAGS.dupe_factor), "--random_seed", "12345"]


def run_ours(input_dir, output_dir, vocab_file, num_workers):
  """Runs create_pretraining_data.py; returns a result row."""
  shutil.rmtree(output_dir, ignore_errors=True)
  command = [os.path.join(REPO, "create_pretraining_data.py"),
             "--input_dir", input_dir, "--output_dir", output_dir,
             "--output_base_name", "bench",
             "--num_workers", str(num_workers)] + common_flags(vocab_file)
  result = run_measured([sys.executable] + command)
  result["instances"] = int(
      re.search(r"Wrote (\d+) instances", result["log"]).group(1))
  result["work_seconds"] = logged_seconds(result["log"])
  return result


def run_google(reference_dir, input_dir, output_file, vocab_file, work_dir):
  """Runs Google's create_pretraining_data.py on every file in input_dir."""
  shim = os.path.join(work_dir, "google_shim.py")
  with open(shim, "w") as f:
    f.write(GOOGLE_SHIM)
  input_files = ",".join(os.path.join(input_dir, name)
                         for name in sorted(os.listdir(input_dir)))
  command = [sys.executable, shim, reference_dir,
             "--input_file=" + input_files, "--output_file=" + output_file]
  command += common_flags(vocab_file)
  # Its imports must resolve to the reference folder, not this project.
  env = dict(CHILD_ENV)
  del env["PYTHONPATH"]
  result = run_measured(command, cwd=work_dir, env=env)
  result["instances"] = int(
      re.search(r"Wrote (\d+) total instances", result["log"]).group(1))
  result["work_seconds"] = logged_seconds(result["log"])
  os.remove(output_file)
  return result


def write_wikiextractor_json(folder, total_bytes, language):
  """Writes WikiExtractor --json style files (AA/wiki_00, ...)."""
  rng = random.Random(7)
  size, article, file_index = 0, 0, 0
  while size < total_bytes:
    subdir = os.path.join(folder, "AA")
    os.makedirs(subdir, exist_ok=True)
    with open(os.path.join(subdir, "wiki_%02d" % file_index), "w") as f:
      for _ in range(200):
        title = language.sentence(rng).split()[0]
        paragraphs = [" ".join(language.document(rng)[:8])
                      for _ in range(rng.randint(1, 4))]
        line = json.dumps({"id": str(article), "revid": str(article),
                           "url": "https://example.org/?curid=%d" % article,
                           "title": title,
                           "text": title + "\n\n" + "\n".join(paragraphs)})
        f.write(line + "\n")
        size += len(line) + 1
        article += 1
    file_index += 1


def run_extract(work_dir, language, num_workers):
  """Runs extract_jsons.py; returns a result dict, or a reason it could not."""
  script = os.path.join(REPO, "extract_wikipedia_for_bert", "extract_jsons.py")
  if not os.path.exists(script):
    return "extract_wikipedia_for_bert/extract_jsons.py does not exist yet"
  folder = os.path.join(work_dir, "extracted")
  if not os.path.isdir(folder):
    write_wikiextractor_json(folder, FLAGS.extract_kb * 1024, language)
  output = os.path.join(work_dir, "extracted.txt")
  result = run_measured([sys.executable, script, "--folder", folder,
                         "--write_file", output,
                         "--num_workers", str(num_workers)])
  with open(output, encoding="utf-8") as f:
    result["sentences"] = sum(1 for line in f if line.strip())
  os.remove(output)
  return result


def print_table(header, lines):
  """Prints an aligned Markdown table."""
  lines = [header, tuple("---" for _ in header)] + lines
  widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
  for line in lines:
    print("| " + " | ".join(cell.ljust(width)
                            for cell, width in zip(line, widths)) + " |")


def megabytes(kilobytes):
  return "%.0f" % (kilobytes / 1024.0)


def prepare_inputs(work_dir, language):
  """Writes the 1x and 4x inputs; returns (1x folder, 4x folder, vocab)."""
  file_bytes = FLAGS.file_kb * 1024
  one_dir = os.path.join(work_dir, "text_1x")
  four_dir = os.path.join(work_dir, "text_4x")
  if FLAGS.text_file:
    vocab_file = FLAGS.vocab_file
    cut_text_file(FLAGS.text_file, four_dir, 4, file_bytes)
  else:
    vocab_file = os.path.join(work_dir, "vocab.txt")
    language.write_vocab(vocab_file)
    write_text_files(four_dir, 4, file_bytes, seed=1)
  # The 1x input is the first of the 4x files.
  os.makedirs(one_dir, exist_ok=True)
  shutil.copy(os.path.join(four_dir, "part_0.txt"), one_dir)
  return one_dir, four_dir, vocab_file


def bench_create(work_dir, one_dir, four_dir, vocab_file):
  """Times ours (and Google's with --reference_dir); prints the table."""
  out_dir = os.path.join(work_dir, "records")
  rows = []
  for workers, text_dir, size in ((1, four_dir, "4x"), (2, four_dir, "4x"),
                                  (2, one_dir, "1x")):
    rows.append(("create_pretraining_data.py, %d worker%s" % (
        workers, "s" if workers > 1 else ""), size,
                 run_ours(text_dir, out_dir, vocab_file, workers)))
  if FLAGS.reference_dir:
    for text_dir, size in ((four_dir, "4x"), (one_dir, "1x")):
      rows.append(("Google's original, 1 process", size, run_google(
          FLAGS.reference_dir, text_dir,
          os.path.join(work_dir, "google.tfrecord"), vocab_file, work_dir)))
  baseline = run_measured([sys.executable, "-c", "import tensorflow"])

  header = ("run", "input", "instances", "seconds", "instances/s",
            "seconds after start-up", "instances/s after start-up",
            "peak RSS, largest process (MB)",
            "peak memory, all processes (MB)")
  lines = []
  for label, size, result in rows:
    lines.append((
        label, size, str(result["instances"]), "%.1f" % result["seconds"],
        "%.0f" % (result["instances"] / result["seconds"]),
        "%.1f" % result["work_seconds"],
        "%.0f" % (result["instances"] / result["work_seconds"]),
        megabytes(result["rss"]), megabytes(result["memory"])))
  lines.append(("`import tensorflow` alone", "-", "-",
                "%.1f" % baseline["seconds"], "-", "-", "-",
                megabytes(baseline["rss"]), megabytes(baseline["memory"])))
  print_table(header, lines)
  print("\n'seconds' is the wall time of the whole command; 'after start-up' "
        "runs from the first to the last log line (TensorFlow import and "
        "vocab loading excluded). 'All processes' counts pages that forked "
        "workers share once (RSS of the largest process + private memory of "
        "the others). The 1x input is one file, so one worker is busy.")
  if FLAGS.reference_dir:
    ours = {(label, size): result for label, size, result in rows}
    google = ours[("Google's original, 1 process", "4x")]
    for workers in ("1 worker", "2 workers"):
      mine = ours[("create_pretraining_data.py, %s" % workers, "4x")]
      print("Speed-up on 4x with %s: %.2fx whole command, %.2fx after "
            "start-up (goal: >= 2x)." % (
                workers, google["seconds"] / mine["seconds"],
                google["work_seconds"] / mine["work_seconds"]))
  else:
    print("(Google's original not measured: pass --reference_dir.)")


def bench_extract(work_dir, language):
  """Times extract_jsons.py with 1 and 2 workers; prints the table."""
  lines = []
  for workers in (1, 2):
    result = run_extract(work_dir, language, workers)
    if isinstance(result, str):
      print("extract_jsons.py: not measured: %s." % result)
      return
    lines.append(("extract_jsons.py, %d worker%s" % (
        workers, "s" if workers > 1 else ""), "%d KB JSON" % FLAGS.extract_kb,
                  str(result["sentences"]), "%.1f" % result["seconds"],
                  "%.0f" % (result["sentences"] / result["seconds"]),
                  megabytes(result["rss"]), megabytes(result["memory"])))
  print_table(("run", "input", "sentences", "seconds", "sentences/s",
               "peak RSS, largest process (MB)",
               "peak memory, all processes (MB)"), lines)


def main(_):
  if FLAGS.text_file and not FLAGS.vocab_file:
    raise ValueError("--text_file needs --vocab_file")
  if FLAGS.reference_dir and not os.path.exists(
      os.path.join(FLAGS.reference_dir, "create_pretraining_data.py")):
    raise ValueError("--reference_dir %s holds no create_pretraining_data.py"
                     % FLAGS.reference_dir)
  work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="bench_data_")
  os.makedirs(work_dir, exist_ok=True)
  language = SyntheticLanguage()
  one_dir, four_dir, vocab_file = prepare_inputs(work_dir, language)
  print("Input: %s text, 1x = 1 file of %d KB, 4x = 4 such files; "
        "dupe_factor=%d, max_seq_length=%d, max_predictions_per_seq=%d; "
        "%d CPUs, load average %.1f at start.\n" % (
            "real" if FLAGS.text_file else "synthetic", FLAGS.file_kb,
            FLAGS.dupe_factor, FLAGS.max_seq_length,
            FLAGS.max_predictions_per_seq, os.cpu_count(),
            os.getloadavg()[0]))
  bench_create(work_dir, one_dir, four_dir, vocab_file)
  print()
  bench_extract(work_dir, language)
  if not FLAGS.work_dir:
    shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
  command_line.run(main)
