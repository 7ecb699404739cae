# coding=utf-8
"""Tests for create_pretraining_data.py on a small self-made corpus.

The corpus is random sentences over conftest's word list, plus a few words
that exercise the tokenizer (accents, punctuation, tabs, no-break spaces).
Each record is checked against the schema, against Google's layout of
[CLS] A [SEP] B [SEP], and against the source text tokenized line by line.
"""

import os
import random

import numpy as np
import pytest
import tensorflow as tf

from bert_distillation import record_format
import tokenization
from conftest import WORDS, run_script, write_vocab

SCRIPT = "create_pretraining_data.py"
MAX_SEQ_LENGTH = 64
MAX_PREDICTIONS = 20
DUPE_FACTOR = 3
NUM_FILES = 3
DOCUMENTS_PER_FILE = 120
# Words whose tokens the per-word cache must get exactly as whole lines do.
ODD_WORDS = ["Café", "naïve", "(north)", "x-ray", "river's", "$3", "EAST",
             "hill\tlake", "old\u00a0town", "tree;"]


def write_corpus(folder, num_files, documents_per_file, seed=0):
  """Writes text files of random documents; returns their paths."""
  rng = random.Random(seed)
  os.makedirs(folder, exist_ok=True)
  paths = []
  for file_index in range(num_files):
    path = os.path.join(folder, "part_%02d.txt" % file_index)
    with open(path, "w", encoding="utf-8") as f:
      for _ in range(documents_per_file):
        for _ in range(rng.randint(1, 12)):
          words = [rng.choice(WORDS) for _ in range(rng.randint(3, 20))]
          if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), rng.choice(ODD_WORDS))
          f.write(" ".join(words).capitalize() + ".\n")
        f.write("\n")
    paths.append(path)
  return paths


def run_create(input_dir, output_dir, vocab_file, *extra, check=True):
  """Runs the script with the test's sizes; returns the CompletedProcess."""
  return run_script(
      SCRIPT, "--input_dir", input_dir, "--output_dir", output_dir,
      "--output_base_name", "train", "--vocab_file", vocab_file,
      "--max_seq_length", MAX_SEQ_LENGTH,
      "--max_predictions_per_seq", MAX_PREDICTIONS,
      "--dupe_factor", DUPE_FACTOR, *extra, check=check)


def read_records(path):
  """Returns the records of a file as dicts of numpy arrays."""
  spec = record_format.pretraining_feature_spec(MAX_SEQ_LENGTH,
                                                MAX_PREDICTIONS)
  records = []
  for raw in tf.data.TFRecordDataset(path):
    parsed = tf.io.parse_single_example(raw, spec)
    records.append({name: value.numpy() for name, value in parsed.items()})
  return records


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  """Runs the script once with 1 worker and once with 2 on the same corpus."""
  root = tmp_path_factory.mktemp("pretraining")
  vocab_file = str(root / "vocab.txt")
  tokens = write_vocab(vocab_file)
  input_dir = str(root / "text")
  inputs = write_corpus(input_dir, NUM_FILES, DOCUMENTS_PER_FILE)
  outputs = {}
  for workers in (1, 2):
    output_dir = str(root / ("out_%d" % workers))
    result = run_create(input_dir, output_dir, vocab_file,
                        "--num_workers", workers)
    outputs[workers] = (output_dir, result)
  vocab = {token: index for index, token in enumerate(tokens)}
  records = []
  for index in range(NUM_FILES):
    records.extend(read_records(
        os.path.join(outputs[1][0], "train_%d.tfrecord" % index)))
  return dict(vocab_file=vocab_file, vocab=vocab, inputs=inputs,
              input_dir=input_dir, outputs=outputs, records=records,
              root=root)


def original_ids(record):
  """Returns the unmasked real tokens of a record (masks undone)."""
  length = int(record["input_mask"].sum())
  ids = record["input_ids"][:length].copy()
  count = int(record["masked_lm_weights"].sum())
  ids[record["masked_lm_positions"][:count]] = (
      record["masked_lm_ids"][:count])
  return ids


def split_segments(record):
  """Returns the original (A, B) token ids of a record."""
  ids = original_ids(record)
  num_a = int((record["segment_ids"][:len(ids)] == 0).sum())
  return ids[1:num_a - 1], ids[num_a:-1]


def test_one_file_per_input_and_identical_for_any_worker_count(corpus):
  names = sorted(os.listdir(corpus["outputs"][1][0]))
  assert names == ["train_%d.tfrecord" % i for i in range(NUM_FILES)]
  for name in names:
    with open(os.path.join(corpus["outputs"][1][0], name), "rb") as f:
      one_worker = f.read()
    with open(os.path.join(corpus["outputs"][2][0], name), "rb") as f:
      two_workers = f.read()
    assert one_worker and one_worker == two_workers, name
  # Progress goes to the log.
  log = corpus["outputs"][2][1].stderr
  assert "[3/3 files]" in log and "instances/s" in log
  assert "Wrote %d instances" % len(corpus["records"]) in log


def test_records_follow_the_schema_and_layout(corpus):
  vocab = corpus["vocab"]
  cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
  assert len(corpus["records"]) > 1000
  lengths = []
  for record in corpus["records"]:
    length = int(record["input_mask"].sum())
    lengths.append(length)
    assert 5 <= length <= MAX_SEQ_LENGTH
    assert (record["input_mask"][:length] == 1).all()
    assert (record["input_mask"][length:] == 0).all()
    assert (record["input_ids"][length:] == 0).all()
    ids = original_ids(record)
    # [CLS] A [SEP] B [SEP]: segment 0 runs through the first [SEP].
    assert ids[0] == cls_id and ids[-1] == sep_id
    separators = np.flatnonzero(ids == sep_id)
    assert len(separators) == 2
    assert cls_id not in ids[1:]
    num_a = int((record["segment_ids"] == 0).sum()) - (MAX_SEQ_LENGTH - length)
    assert separators[0] == num_a - 1 and num_a >= 3
    assert (record["segment_ids"][:num_a] == 0).all()
    assert (record["segment_ids"][num_a:length] == 1).all()
    assert (record["segment_ids"][length:] == 0).all()
    assert length - num_a >= 2  # B holds at least one token
    assert record["next_sentence_labels"][0] in (0, 1)
  # Most sequences are filled; document ends and short_seq_prob (0.1) make
  # the others. Google's script gives 62% on text like this.
  assert np.mean(np.array(lengths) >= MAX_SEQ_LENGTH - 10) > 0.5


def test_masked_positions_follow_googles_rule(corpus):
  vocab = corpus["vocab"]
  cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
  for record in corpus["records"]:
    length = int(record["input_mask"].sum())
    count = int(record["masked_lm_weights"].sum())
    # The number of predictions is round(15% of the length), at least 1.
    assert count == min(MAX_PREDICTIONS, max(1, int(round(length * 0.15))))
    assert (record["masked_lm_weights"][:count] == 1.0).all()
    assert (record["masked_lm_weights"][count:] == 0.0).all()
    assert (record["masked_lm_positions"][count:] == 0).all()
    assert (record["masked_lm_ids"][count:] == 0).all()
    positions = record["masked_lm_positions"][:count]
    assert (np.diff(positions) > 0).all()
    assert positions[0] >= 1 and positions[-1] < length - 1
    # Never [CLS] or [SEP].
    originals = record["masked_lm_ids"][:count]
    assert cls_id not in originals and sep_id not in originals


def test_masking_rates(corpus):
  mask_id = corpus["vocab"]["[MASK]"]
  real_tokens = masked = as_mask = kept = 0
  for record in corpus["records"]:
    length = int(record["input_mask"].sum())
    count = int(record["masked_lm_weights"].sum())
    real_tokens += length - 3
    masked += count
    shown = record["input_ids"][record["masked_lm_positions"][:count]]
    as_mask += int((shown == mask_id).sum())
    kept += int((shown == record["masked_lm_ids"][:count]).sum())
  assert abs(masked / real_tokens - 0.15) < 0.02
  assert abs(as_mask / masked - 0.8) < 0.03
  # A random replacement equal to the original counts as kept; the
  # vocabulary has ~150 words, so that adds less than 0.1%.
  assert abs(kept / masked - 0.1) < 0.025
  assert abs((masked - as_mask - kept) / masked - 0.1) < 0.025
  # Outside the masked positions the input is the original text.
  for record in corpus["records"][:200]:
    count = int(record["masked_lm_weights"].sum())
    length = int(record["input_mask"].sum())
    unmasked = np.setdiff1d(np.arange(length),
                            record["masked_lm_positions"][:count])
    assert (record["input_ids"][unmasked] ==
            original_ids(record)[unmasked]).all()


def _document_strings(inputs, vocab_file):
  """Tokenizes the source text line by line; one id string per document."""
  tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case=True)
  documents = []
  for path in inputs:
    current = []
    with open(path, encoding="utf-8") as f:
      for line in f:
        line = line.strip()
        if not line:
          if current:
            documents.append("," + ",".join(current) + ",")
          current = []
          continue
        current.extend(str(i) for i in tokenizer.convert_tokens_to_ids(
            tokenizer.tokenize(line)))
  return documents


def _id_string(ids):
  return "," + ",".join(str(i) for i in ids) + ","


def test_segments_are_source_text_and_labels_tell_real_from_random(corpus):
  documents = _document_strings(corpus["inputs"], corpus["vocab_file"])
  labels = []
  random_b_in_same_document = 0
  long_random_pairs = 0
  for record in corpus["records"]:
    tokens_a, tokens_b = split_segments(record)
    a_string, b_string = _id_string(tokens_a), _id_string(tokens_b)
    # masked_lm_ids restore the original tokens: A and B are runs of the
    # tokenized source text.
    a_documents = [d for d in documents if a_string in d]
    assert a_documents, "segment A is not in the source text"
    assert any(b_string in d for d in documents), "segment B is not either"
    label = int(record["next_sentence_labels"][0])
    labels.append(label)
    if label == 0:
      # The real next segment follows A in A's document.
      assert any(b_string in d[d.index(a_string) + len(a_string) - 1:]
                 for d in a_documents)
    elif len(tokens_a) >= 6 and len(tokens_b) >= 6:
      long_random_pairs += 1
      if any(b_string in d for d in a_documents):
        random_b_in_same_document += 1
  # About half random: Google's recipe also forces a random B when a chunk
  # holds a single sentence, which pushes the share above 0.5 on short
  # documents like these (Google's script gives 0.62 on such text).
  assert 0.5 < np.mean(labels) < 0.7
  assert long_random_pairs > 100
  assert random_b_in_same_document / long_random_pairs < 0.05


def test_a_file_without_documents_is_skipped_with_a_warning(tmp_path):
  vocab_file = str(tmp_path / "vocab.txt")
  write_vocab(vocab_file)
  input_dir = tmp_path / "text"
  input_dir.mkdir()
  (input_dir / "wiki_2.txt").write_text("\n\n   \n")
  os.rename(write_corpus(str(input_dir), 1, 20)[0],
            str(input_dir / "wiki_10.txt"))
  result = run_create(str(input_dir), str(tmp_path / "out"), vocab_file,
                      "--num_workers", 2)
  assert "wiki_2.txt" in result.stderr and "no usable document" in (
      result.stderr)
  # Numbers in names count by value: wiki_2 is file 0 and wiki_10 file 1.
  assert sorted(os.listdir(tmp_path / "out")) == ["train_1.tfrecord"]


@pytest.mark.parametrize("case", [
    "missing_dir", "empty_dir", "no_documents", "vocab_without_mask",
    "masked_lm_prob_0", "masked_lm_prob_1", "max_seq_length_7",
    "max_seq_length_513"])
def test_clear_errors(tmp_path, case):
  vocab_file = str(tmp_path / "vocab.txt")
  tokens = write_vocab(vocab_file)
  input_dir = tmp_path / "text"
  input_dir.mkdir()
  write_corpus(str(input_dir), 1, 5)
  extra = []
  if case == "missing_dir":
    input_dir = tmp_path / "no_such_folder"
    expected = "--input_dir %s does not exist" % input_dir
  elif case == "empty_dir":
    input_dir = tmp_path / "empty"
    input_dir.mkdir()
    expected = "holds no input files"
  elif case == "no_documents":
    input_dir = tmp_path / "blank"
    input_dir.mkdir()
    (input_dir / "blank.txt").write_text("\n\n")
    expected = "No instances were written"
  elif case == "vocab_without_mask":
    with open(vocab_file, "w") as f:
      f.write("\n".join(t for t in tokens if t != "[MASK]") + "\n")
    expected = "[MASK]"
  elif case.startswith("masked_lm_prob"):
    extra = ["--masked_lm_prob", case[-1]]
    expected = "--masked_lm_prob must be in (0, 1)"
  else:
    extra = ["--max_seq_length", case.split("_")[-1]]
    expected = "--max_seq_length must be between 8 and 512"
  result = run_script(
      SCRIPT, "--input_dir", input_dir, "--output_dir", tmp_path / "out",
      "--output_base_name", "train", "--vocab_file", vocab_file,
      "--num_workers", 1, *extra, check=False)
  assert result.returncode != 0
  assert expected in result.stderr
  if case == "vocab_without_mask":
    assert "--vocab_file" in result.stderr
  # Nothing half-written is left behind.
  out = tmp_path / "out"
  assert not out.exists() or not os.listdir(out)
