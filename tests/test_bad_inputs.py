# coding=utf-8
"""Bad inputs: each ends as one `ERROR: ...` line naming the file or flag to
fix (exit 1, no traceback), and nothing good is lost or silently wrong.

Files, dumps, vocabularies, hosts files and directories; all tiny.
"""

import bz2
import os
import subprocess
import sys

import pytest

import conftest
from conftest import CHILD_ENV, REPO, run_script, write_vocab
from test_create_pretraining_data import write_corpus

CREATE = "create_pretraining_data.py"
LABELS = "produce_teacher_labels.py"
EXTRACT_JSONS = "extract_wikipedia_for_bert/extract_jsons.py"
WRAPPER = os.path.join(REPO, "extract_wikipedia_for_bert",
                       "run_wikiextractor.sh")
SAMPLE_DUMP = os.path.join(REPO, "data", "sample",
                           "enwiki-sample-pages-articles.xml.bz2")
LAUNCHER = os.path.join(REPO, "multinode_train.sh")


def assert_one_error_line(result, *expected):
  """Exit 1, no traceback, a last line `ERROR: ...` holding `expected`."""
  output = result.stdout + result.stderr
  assert result.returncode == 1, output[-3000:]
  assert "Traceback" not in output, output[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("ERROR: "), output[-3000:]
  for text in expected:
    assert str(text) in last, last
  return last


def create(input_dir, output_dir, vocab_file, *extra):
  """Runs create_pretraining_data.py (small settings); returns the result."""
  return run_script(CREATE, "--input_dir", input_dir, "--output_dir",
                    output_dir, "--output_base_name", "train", "--vocab_file",
                    vocab_file, "--max_seq_length", 32,
                    "--max_predictions_per_seq", 5, "--dupe_factor", 1,
                    "--num_workers", 1, *extra, check=False)


@pytest.fixture()
def corpus(tmp_path):
  """(vocab file, input folder with two small text files)."""
  vocab_file = str(tmp_path / "vocab.txt")
  write_vocab(vocab_file)
  input_dir = str(tmp_path / "text")
  write_corpus(input_dir, 2, 10)
  return vocab_file, input_dir


# --- data loss --------------------------------------------------------------


def test_extract_jsons_keeps_the_earlier_file_when_nothing_is_found(tmp_path):
  folder = tmp_path / "extracted" / "AA"
  folder.mkdir(parents=True)
  (folder / "wiki_00").write_text('{"id": "1", "text": "cut off\n' * 3)
  write_file = tmp_path / "wiki.txt"
  write_file.write_text("A good sentence.\n\n")
  result = run_script(EXTRACT_JSONS, "--folder", tmp_path / "extracted",
                      "--write_file", write_file, "--num_workers", 1,
                      check=False)
  assert_one_error_line(result, "No article text", "3 malformed lines",
                        str(write_file))
  assert write_file.read_text() == "A good sentence.\n\n"
  assert sorted(os.listdir(tmp_path)) == ["extracted", "wiki.txt"]


def test_output_dir_equal_to_input_dir_is_refused(corpus):
  vocab_file, input_dir = corpus
  before = sorted(os.listdir(input_dir))
  result = create(input_dir, input_dir + "/.", vocab_file)
  assert_one_error_line(result, "--output_dir", "--input_dir")
  assert sorted(os.listdir(input_dir)) == before


# --- silent wrong results ---------------------------------------------------


@pytest.mark.parametrize("kind", ["tfrecord", "latin1"])
def test_a_file_that_is_not_utf8_text_is_an_error_naming_it(corpus, tmp_path,
                                                            kind):
  vocab_file, input_dir = corpus
  if kind == "tfrecord":
    bad = os.path.join(input_dir, "old_output.tfrecord")
    conftest.write_random_pretraining_records(bad, 3, 60)
  else:
    bad = os.path.join(input_dir, "part_99.txt")
    with open(bad, "wb") as f:
      f.write("Caf\u00e9 na\u00efve river town.\n".encode("latin-1"))
  result = create(input_dir, str(tmp_path / "out"), vocab_file)
  assert_one_error_line(result, bad)
  assert not os.path.exists(str(tmp_path / "out")) or not os.listdir(
      str(tmp_path / "out"))


def test_stale_outputs_of_a_larger_earlier_run_are_removed(corpus, tmp_path):
  vocab_file, input_dir = corpus
  output_dir = str(tmp_path / "out")
  write_corpus(input_dir, 3, 10, seed=1)  # part_00 ... part_02.
  result = create(input_dir, output_dir, vocab_file)
  assert result.returncode == 0, result.stderr[-3000:]
  assert sorted(os.listdir(output_dir)) == [
      "train_0.tfrecord", "train_1.tfrecord", "train_2.tfrecord"]
  os.remove(os.path.join(input_dir, "part_02.txt"))
  unrelated = os.path.join(output_dir, "eval_2.tfrecord")
  open(unrelated, "w").close()
  result = create(input_dir, output_dir, vocab_file)
  assert result.returncode == 0, result.stderr[-3000:]
  # The documented glob train_* matches exactly this run's files.
  assert sorted(os.listdir(output_dir)) == [
      "eval_2.tfrecord", "train_0.tfrecord", "train_1.tfrecord"]
  assert os.path.join(output_dir, "train_2.tfrecord") in result.stderr


@pytest.fixture()
def random_teacher(tmp_path):
  """Flags for produce_teacher_labels.py with a tiny random teacher."""
  config_file = str(tmp_path / "bert_config.json")
  conftest.write_config(config_file, vocab_size=60)
  records = str(tmp_path / "records.tfrecord")
  conftest.write_random_pretraining_records(records, 4, 60)
  return ["--bert_config_file", config_file, "--allow_random_teacher",
          "--max_seq_length", 32, "--max_predictions_per_seq", 5,
          "--truncation_factor", 3], records


def test_empty_record_file_is_an_error_not_an_empty_output(random_teacher,
                                                           tmp_path):
  flags, records = random_teacher
  empty = str(tmp_path / "empty.tfrecord")
  open(empty, "w").close()
  output_file = str(tmp_path / "labels.tfrecord")
  result = run_script(LABELS, *flags, "--input_file",
                      "%s,%s" % (records, empty), "--output_file",
                      output_file, check=False)
  assert_one_error_line(result, empty, "no records")
  assert not os.path.exists(output_file)


def test_uncompressed_dump_cut_in_half_is_an_error(tmp_path):
  with bz2.open(SAMPLE_DUMP, "rb") as f:
    text = f.read()
  assert text.rstrip().endswith(b"</mediawiki>")
  dump = tmp_path / "cut-pages-articles.xml"
  dump.write_bytes(text[:len(text) // 2])
  env = dict(CHILD_ENV, PYTHON=sys.executable, PROCESSES="2")
  result = subprocess.run(["bash", WRAPPER, str(dump), str(tmp_path / "out")],
                          env=env, capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 1
  assert str(dump) in result.stderr and "</mediawiki>" in result.stderr
  assert "Done" not in result.stderr
  assert sorted(os.listdir(str(tmp_path))) == [dump.name]


@pytest.mark.parametrize("line, problem", [
    ("localhost slots=two", "whole number"),
    ("localhost:2", 'write "localhost slots=2"'),
    ("localhost slots=2\r", "CRLF"),
    ("localhost slot=2", "unknown field"),
])
def test_malformed_hosts_line_is_named_with_file_and_line(tmp_path, line,
                                                          problem):
  hosts = tmp_path / "hosts"
  hosts.write_bytes(("# two ranks here\n%s\n" % line).encode())
  env = dict(CHILD_ENV, HOSTS=str(hosts))
  result = subprocess.run(["bash", LAUNCHER, "--dry-run", "2"], env=env,
                          capture_output=True, text=True, timeout=60)
  assert result.returncode == 1 and result.stdout == ""
  assert "%s:2: " % hosts in result.stderr and problem in result.stderr
  assert "TOTAL_GPUS" not in result.stderr


# --- errors that name what to fix -------------------------------------------


def test_vocab_without_unk_names_the_vocab_file(corpus, tmp_path):
  _, input_dir = corpus
  vocab_file = str(tmp_path / "no_unk_vocab.txt")
  tokens = write_vocab(vocab_file)
  with open(vocab_file, "w") as f:
    f.write("\n".join(t for t in tokens if t != "[UNK]") + "\n")
  result = create(input_dir, str(tmp_path / "out"), vocab_file)
  assert_one_error_line(result, vocab_file, "[UNK]")
  assert "KeyError" not in result.stderr


def test_lines_too_long_for_an_instance_are_counted_per_file(tmp_path):
  """A whole article on one line became one short instance, silently."""
  vocab_file = str(tmp_path / "vocab.txt")
  write_vocab(vocab_file)
  input_dir = tmp_path / "text"
  input_dir.mkdir()
  words = conftest.WORDS
  huge = " ".join(words[i % len(words)] for i in range(2000))
  short = "the river is old and the town is new ."
  (input_dir / "long.txt").write_text(
      "%s\n%s\n\n%s\n%s\n%s\n" % (short, huge, short, short, huge))
  (input_dir / "fine.txt").write_text("%s\n%s\n\n%s\n" % (short, short,
                                                            short))
  result = create(str(input_dir), str(tmp_path / "out"), vocab_file)
  assert result.returncode == 0, result.stderr[-3000:]
  # One token per word; [CLS] and two [SEP] leave 29 of --max_seq_length 32.
  assert ("%s: 2 of its 5 lines are longer than one instance holds (29 "
          "tokens at --max_seq_length 32): 3942 of their 4000 words do not "
          "fit and were cut." % (input_dir / "long.txt")) in result.stderr
  assert result.stderr.count("longer than one instance holds") == 1


def test_flag_check_is_one_error_line_not_a_traceback(corpus, tmp_path):
  vocab_file, input_dir = corpus
  result = create(input_dir, str(tmp_path / "out"), vocab_file,
                  "--masked_lm_prob", 0)
  assert_one_error_line(result, "--masked_lm_prob")


def test_output_dir_under_a_file_is_one_error_line(corpus, tmp_path):
  vocab_file, input_dir = corpus
  a_file = tmp_path / "a_file"
  a_file.write_text("x")
  result = create(input_dir, str(a_file / "out"), vocab_file)
  assert_one_error_line(result, "Not a directory", str(a_file / "out"))


@pytest.mark.parametrize("errno_name, message", [
    ("ENOSPC", "No space left on device (the disk is full"),
    ("EACCES", "Permission denied"),
    ("EISDIR", "Is a directory"),
])
def test_command_line_turns_path_errors_into_one_line(tmp_path, errno_name,
                                                      message):
  program = (
      "import errno, os\n"
      "from bert_distillation import command_line\n"
      "def main(_):\n"
      "  code = getattr(errno, os.environ['ERRNO_NAME'])\n"
      "  raise OSError(code, os.strerror(code), '/data/out.tfrecord')\n"
      "command_line.run(main)\n")
  result = subprocess.run([sys.executable, "-c", program],
                          env=dict(CHILD_ENV, ERRNO_NAME=errno_name),
                          capture_output=True, text=True, timeout=60)
  assert_one_error_line(result, message, "/data/out.tfrecord")
  # A bug is still a traceback.
  result = subprocess.run([sys.executable, "-c", program],
                          env=dict(CHILD_ENV, ERRNO_NAME="EIO"),
                          capture_output=True, text=True, timeout=60)
  assert result.returncode == 1 and "Traceback" in result.stderr


@pytest.mark.parametrize("argv, message", [
    (["--output_dir", "out", "--augment_factor", "abc"],
     "flag --augment_factor=abc: invalid"),
    (["--output_dir", "out", "--precision", "fp8"],
     "flag --precision=fp8: value should be one of"),
    (["--output_dir", "out", "stray"], "Unexpected argument(s): stray"),
    ([], "--output_dir must have a value"),
])
def test_flag_parsing_errors_are_one_error_line(argv, message):
  """absl's own parsing errors end as the suite's one `ERROR:` line."""
  program = (
      "from absl import flags\n"
      "from bert_distillation import command_line\n"
      "flags.DEFINE_integer('augment_factor', 0, '')\n"
      "flags.DEFINE_enum('precision', 'fp32', ['fp32', 'fp16'], '')\n"
      "flags.DEFINE_string('output_dir', None, '')\n"
      "flags.mark_flag_as_required('output_dir')\n"
      "command_line.run(lambda argv: None)\n")
  result = subprocess.run([sys.executable, "-c", program] + argv,
                          env=CHILD_ENV, capture_output=True, text=True,
                          timeout=60)
  assert_one_error_line(result, message)
  assert "FATAL" not in result.stderr
  assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_tensorflow_full_disk_error_is_one_line():
  """TFRecordWriter and GFile raise TensorFlow errors, not OSError."""
  program = (
      "from bert_distillation import command_line\n"
      "import tensorflow as tf\n"
      "def main(_):\n"
      "  raise tf.errors.ResourceExhaustedError(\n"
      "      None, None, '/data/.train_0.tfrecord.tmp-7; No space left on "
      "device')\n"
      "command_line.run(main)\n")
  result = subprocess.run([sys.executable, "-c", program], env=CHILD_ENV,
                          capture_output=True, text=True, timeout=120)
  assert_one_error_line(result, "/data/.train_0.tfrecord.tmp-7",
                        "No space left on device (the disk is full")


def test_split_text_says_read_file_is_a_directory(tmp_path):
  result = run_script("split_text.py", "--read_file", tmp_path,
                      "--split_number", 2, "--folder", tmp_path / "out",
                      "--name_base", "wiki", check=False)
  assert_one_error_line(result, "--read_file %s is a directory" % tmp_path)


def test_output_file_that_is_a_directory_fails_before_labelling(
    random_teacher, tmp_path):
  flags, records = random_teacher
  output_file = tmp_path / "labels.tfrecord"
  output_file.mkdir()
  result = run_script(LABELS, *flags, "--input_file", records,
                      "--output_file", output_file, check=False)
  assert_one_error_line(result, "--output_file %s is a directory"
                        % output_file)
  # Nothing was built or run.
  assert "Loaded" not in result.stderr and "Labelled" not in result.stderr
  assert "RANDOM teacher" not in result.stderr


def test_labels_next_run_removes_a_killed_runs_temporary(random_teacher,
                                                         tmp_path):
  from bert_distillation import temporary_files  # pylint: disable=g-import-not-at-top
  flags, records = random_teacher
  output_file = tmp_path / "labels.tfrecord"
  process = subprocess.Popen(["true"])
  process.wait()
  stale = tmp_path / (".labels.tfrecord%s%d" % (temporary_files.TEMPORARY_MARK,
                                                process.pid))
  stale.write_bytes(b"33 MB of half-written labels")
  result = run_script(LABELS, *flags, "--input_file", records,
                      "--output_file", output_file)
  assert not stale.exists() and str(stale) in result.stderr
  assert output_file.exists()
