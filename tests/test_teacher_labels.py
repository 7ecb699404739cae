"""Tests for produce_teacher_labels.py with a tiny random teacher.

The teacher is saved as a Google-format checkpoint by the test; its labels
are checked against a numpy BERT forward pass computed here from the
checkpoint's weights.
"""

import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import conftest
import modeling
from bert_distillation import record_format

tf1 = tf.compat.v1

SCRIPT = "produce_teacher_labels.py"
VOCAB_SIZE = 97
SEQ_LENGTH = 32
PREDICTIONS = 5
NUM_RECORDS = 37  # Not a multiple of BATCH_SIZE: the last batch is partial.
BATCH_SIZE = 8
TOP_K = 5


def label_args(teacher, input_file, output_file, *extra):
  """Command-line arguments for a run on the tiny teacher."""
  return ["--bert_config_file", teacher["config_file"],
          "--init_checkpoint", teacher["checkpoint"],
          "--input_file", input_file, "--output_file", output_file,
          "--max_seq_length", SEQ_LENGTH,
          "--max_predictions_per_seq", PREDICTIONS,
          "--batch_size", BATCH_SIZE] + list(extra)


def read_records(path):
  """All serialized records of a TFRecord file, in order."""
  return list(tf1.io.tf_record_iterator(path))


def float_values(example, name):
  """A float feature of a tf.train.Example as a numpy array."""
  return np.array(example.features.feature[name].float_list.value)


def int_values(example, name):
  """An int64 feature of a tf.train.Example as a numpy array."""
  return np.array(example.features.feature[name].int64_list.value)


def save_random_teacher(config_file, prefix, seed=1, skip=()):
  """Saves random weights for BERT + both heads; returns {name: array}.

  The weights are larger than BERT's initializer so that the teacher's
  distributions are far from uniform, and biases and LayerNorm parameters
  are random too, so that the numpy check covers every parameter.
  Variables named in `skip` are left out of the checkpoint.
  """
  config = modeling.BertConfig.from_json_file(config_file)
  rng = np.random.RandomState(seed)
  with tf.Graph().as_default():
    input_ids = tf1.placeholder(tf.int32, [None, SEQ_LENGTH])
    positions = tf1.placeholder(tf.int32, [None, PREDICTIONS])
    modeling.pretraining_model(config, False, input_ids, positions)
    variables = tf1.global_variables()
    weights = {}
    for var in variables:
      name = var.op.name
      shape = var.shape.as_list()
      if name.endswith("gamma"):
        weights[name] = 1.0 + 0.2 * rng.normal(size=shape)
      else:
        weights[name] = 0.3 * rng.normal(size=shape)
    kept = [var for var in variables if var.op.name not in skip]
    with tf1.Session() as sess:
      for var in variables:
        var.load(weights[var.op.name].astype(np.float32), sess)
      tf1.train.Saver(var_list=kept).save(sess, prefix)
  return {name: value.astype(np.float32).astype(np.float64)
          for name, value in weights.items()}


def numpy_layer_norm(x, weights, prefix):
  """LayerNorm over the last axis with epsilon 1e-12, as BERT's."""
  mean = x.mean(-1, keepdims=True)
  variance = ((x - mean) ** 2).mean(-1, keepdims=True)
  return ((x - mean) / np.sqrt(variance + 1e-12) * weights[prefix + "/gamma"]
          + weights[prefix + "/beta"])


def numpy_dense(x, weights, prefix):
  """x @ kernel + bias of the dense layer named `prefix`."""
  return x @ weights[prefix + "/kernel"] + weights[prefix + "/bias"]


def numpy_gelu(x):
  """GELU, tanh approximation."""
  return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) *
                                  (x + 0.044715 * x ** 3)))


def numpy_softmax(x):
  """Softmax over the last axis."""
  x = x - x.max(-1, keepdims=True)
  return np.exp(x) / np.exp(x).sum(-1, keepdims=True)


def numpy_teacher(weights, config, row):
  """BERT forward for one record in float64: (mlm probs [n, V], ns probs)."""
  ids = np.array(row["input_ids"])
  mask = np.array(row["input_mask"], dtype=np.float64)
  hidden = (weights["bert/embeddings/word_embeddings"][ids]
            + weights["bert/embeddings/token_type_embeddings"][
                np.array(row["segment_ids"])]
            + weights["bert/embeddings/position_embeddings"][:len(ids)])
  hidden = numpy_layer_norm(hidden, weights, "bert/embeddings/LayerNorm")
  heads = config["num_attention_heads"]
  head_size = config["hidden_size"] // heads
  for layer in range(config["num_hidden_layers"]):
    prefix = "bert/encoder/layer_%d/" % layer

    def split(x):
      return x.reshape(len(ids), heads, head_size).transpose(1, 0, 2)

    query, key, value = [
        split(numpy_dense(hidden, weights, prefix + "attention/self/" + part))
        for part in ("query", "key", "value")]
    scores = query @ key.transpose(0, 2, 1) / np.sqrt(head_size)
    scores += (1.0 - mask)[None, None, :] * -10000.0
    context = (numpy_softmax(scores) @ value).transpose(1, 0, 2).reshape(
        len(ids), -1)
    attention = numpy_layer_norm(
        numpy_dense(context, weights, prefix + "attention/output/dense")
        + hidden, weights, prefix + "attention/output/LayerNorm")
    intermediate = numpy_gelu(
        numpy_dense(attention, weights, prefix + "intermediate/dense"))
    hidden = numpy_layer_norm(
        numpy_dense(intermediate, weights, prefix + "output/dense")
        + attention, weights, prefix + "output/LayerNorm")
  pooled = np.tanh(numpy_dense(hidden[0], weights, "bert/pooler/dense"))
  next_sentence = numpy_softmax(
      pooled @ weights["cls/seq_relationship/output_weights"].T
      + weights["cls/seq_relationship/output_bias"])
  masked = hidden[np.array(row["masked_lm_positions"])]
  masked = numpy_layer_norm(
      numpy_gelu(numpy_dense(masked, weights,
                             "cls/predictions/transform/dense")),
      weights, "cls/predictions/transform/LayerNorm")
  logits = (masked @ weights["bert/embeddings/word_embeddings"].T
            + weights["cls/predictions/output_bias"])
  return numpy_softmax(logits), next_sentence


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
  """A tiny teacher: config, checkpoint, numpy weights and input records."""
  folder = tmp_path_factory.mktemp("teacher")
  config_file = str(folder / "bert_config.json")
  config = conftest.write_config(config_file, vocab_size=VOCAB_SIZE)
  checkpoint = str(folder / "bert_model.ckpt")
  weights = save_random_teacher(config_file, checkpoint)
  partial_checkpoint = str(folder / "partial" / "bert_model.ckpt")
  save_random_teacher(config_file, partial_checkpoint,
                      skip=("cls/seq_relationship/output_bias",))
  input_file = str(folder / "input.tfrecord")
  rows = conftest.write_random_pretraining_records(
      input_file, NUM_RECORDS, VOCAB_SIZE, max_seq_length=SEQ_LENGTH,
      max_predictions_per_seq=PREDICTIONS)
  return dict(folder=folder, config_file=config_file, config=config,
              checkpoint=checkpoint, partial_checkpoint=partial_checkpoint,
              weights=weights, input_file=input_file, rows=rows)


def top_k_output_file(teacher):
  """Where the top_k_run fixture writes."""
  return str(teacher["folder"] / "top_k" / "labels.tfrecord")


@pytest.fixture(scope="module")
def top_k_run(teacher):
  """Output records and log of a run with --truncation_factor=TOP_K."""
  output_file = top_k_output_file(teacher)
  result = conftest.run_script(SCRIPT, *label_args(
      teacher, teacher["input_file"], output_file,
      "--truncation_factor", TOP_K))
  return dict(output_file=output_file, records=read_records(output_file),
              log=result.stdout + result.stderr)


def test_top_k_matches_numpy_teacher(teacher, top_k_run):
  assert len(top_k_run["records"]) == NUM_RECORDS
  for row, raw in zip(teacher["rows"], top_k_run["records"]):
    example = tf.train.Example.FromString(raw)
    probs = float_values(example, record_format.TRUNCATED_PROBS).reshape(
        PREDICTIONS, TOP_K)
    indices = int_values(example, record_format.TOP_K_INDICES).reshape(
        PREDICTIONS, TOP_K)
    expected, next_sentence = numpy_teacher(teacher["weights"],
                                            teacher["config"], row)
    expected_top = -np.sort(-expected, axis=-1)[:, :TOP_K]
    np.testing.assert_allclose(probs, expected_top, atol=1e-5)
    # Each stored id is the token whose probability was stored.
    np.testing.assert_allclose(
        probs, np.take_along_axis(expected, indices, axis=-1), atol=1e-5)
    assert np.all(np.diff(probs, axis=-1) <= 0), "not sorted, highest first"
    assert all(len(set(ids)) == TOP_K for ids in indices)
    np.testing.assert_allclose(
        float_values(example, record_format.NEXT_SENTENCE_PROBS),
        next_sentence, atol=1e-5)
  # The teacher is far from uniform, so the check above means something.
  assert expected_top[:, 0].mean() > 5.0 / VOCAB_SIZE


def test_inputs_copied_byte_for_byte_in_order(teacher, top_k_run):
  inputs = read_records(teacher["input_file"])
  outputs = top_k_run["records"]
  assert len(outputs) == len(inputs) == NUM_RECORDS
  assert NUM_RECORDS % BATCH_SIZE != 0
  for raw_input, raw_output in zip(inputs, outputs):
    assert raw_output.startswith(raw_input)
    parsed_input = tf.train.Example.FromString(raw_input)
    parsed_output = tf.train.Example.FromString(raw_output)
    for name, feature in parsed_input.features.feature.items():
      assert parsed_output.features.feature[name] == feature
    assert set(parsed_output.features.feature) == set(
        parsed_input.features.feature) | {
            record_format.TRUNCATED_PROBS, record_format.TOP_K_INDICES,
            record_format.NEXT_SENTENCE_PROBS}
  assert "Wrote %d records" % NUM_RECORDS in top_k_run["log"]


def test_trainer_schema_parses_output(teacher, top_k_run):
  spec = record_format.distillation_feature_spec(
      SEQ_LENGTH, PREDICTIONS, TOP_K, VOCAB_SIZE)
  parsed = tf.io.parse_example(tf.constant(top_k_run["records"]), spec)
  np.testing.assert_array_equal(
      parsed["input_ids"].numpy(),
      [row["input_ids"] for row in teacher["rows"]])
  assert parsed[record_format.TOP_K_INDICES].shape == (
      NUM_RECORDS, PREDICTIONS * TOP_K)
  np.testing.assert_allclose(
      parsed[record_format.NEXT_SENTENCE_PROBS].numpy().sum(-1), 1.0,
      atol=1e-6)


def test_log_shows_loaded_variables_and_progress(top_k_run):
  log = top_k_run["log"]
  assert "Loaded 46 variables from" in log  # 2 layers of 16, and 14 others.
  assert "bert/encoder/layer_1/output/dense/kernel" in log
  assert "cls/seq_relationship/output_weights" in log
  assert "sequences/s" in log and "%d written" % NUM_RECORDS in log
  assert "RANDOM" not in log


def test_full_distribution_rows_sum_to_one(teacher):
  output_file = str(teacher["folder"] / "full" / "labels.tfrecord")
  conftest.run_script(SCRIPT, *label_args(
      teacher, teacher["input_file"], output_file, "--truncation_factor", 0))
  records = read_records(output_file)
  assert len(records) == NUM_RECORDS
  for row, raw in zip(teacher["rows"], records):
    example = tf.train.Example.FromString(raw)
    assert record_format.TRUNCATED_PROBS not in example.features.feature
    probs = float_values(example, record_format.FULL_PROBS).reshape(
        PREDICTIONS, VOCAB_SIZE)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    expected, _ = numpy_teacher(teacher["weights"], teacher["config"], row)
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_xla_gives_the_same_labels(teacher, top_k_run):
  output_file = str(teacher["folder"] / "xla" / "labels.tfrecord")
  conftest.run_script(SCRIPT, *label_args(
      teacher, teacher["input_file"], output_file,
      "--truncation_factor", TOP_K, "--use_xla"))
  records = read_records(output_file)
  assert len(records) == NUM_RECORDS
  for raw, reference in zip(records, top_k_run["records"]):
    example = tf.train.Example.FromString(raw)
    reference = tf.train.Example.FromString(reference)
    for name in (record_format.TRUNCATED_PROBS,
                 record_format.NEXT_SENTENCE_PROBS):
      np.testing.assert_allclose(float_values(example, name),
                                 float_values(reference, name), atol=1e-5)


# Runs label_records() once per argument list in one process, so that each error
# case does not pay for its own TensorFlow import.
ERROR_DRIVER = """
import json, sys
from absl import flags
import produce_teacher_labels
messages = []
for argv in json.loads(sys.argv[1]):
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["produce_teacher_labels.py"] + argv)
  try:
    produce_teacher_labels.label_records()
    messages.append("no error")
  except produce_teacher_labels.InputError as error:
    messages.append(str(error))
print(json.dumps(messages))
"""


def test_bad_input_gives_clear_errors(teacher, top_k_run, tmp_path):
  def args(*extra, input_file=teacher["input_file"]):
    return [str(arg) for arg in label_args(
        teacher, input_file, str(tmp_path / "labels.tfrecord"), *extra)]

  without_checkpoint = args()
  del without_checkpoint[2:4]
  partial_checkpoint = args()
  partial_checkpoint[3] = teacher["partial_checkpoint"]
  random_output = str(tmp_path / "random" / "labels.tfrecord")
  random_teacher = [str(arg) for arg in label_args(
      teacher, teacher["input_file"], random_output,
      "--allow_random_teacher")]
  del random_teacher[2:4]
  # A shorter record after good ones: caught while running, not up front.
  short_file = str(tmp_path / "inputs" / "short.tfrecord")
  os.makedirs(os.path.dirname(short_file))
  short_row = dict(teacher["rows"][0])
  for name in record_format.SEQUENCE_FEATURES:
    short_row[name] = short_row[name][:SEQ_LENGTH // 2]
  with tf.io.TFRecordWriter(short_file) as writer:
    for raw in read_records(teacher["input_file"])[:20]:
      writer.write(raw)
    writer.write(record_format.make_pretraining_example(
        **short_row).SerializeToString())
  cases = [
      (args("--truncation_factor", -1),
       "--truncation_factor=-1 must be between 0"),
      (args("--truncation_factor", VOCAB_SIZE + 1),
       "--truncation_factor=%d must be between 0" % (VOCAB_SIZE + 1)),
      (args("--max_seq_length", 48),
       "feature input_ids holds %d values, but --max_seq_length=48. Set "
       "--max_seq_length=%d" % (SEQ_LENGTH, SEQ_LENGTH)),
      (args("--max_predictions_per_seq", 7),
       "feature masked_lm_ids holds %d values, but --max_predictions_per_seq"
       "=7. Set --max_predictions_per_seq=%d" % (PREDICTIONS, PREDICTIONS)),
      (args(input_file=str(tmp_path / "nothing-*.tfrecord")),
       "nothing-*.tfrecord' matches no files"),
      (without_checkpoint, "--init_checkpoint is required"),
      (partial_checkpoint, "does not match the model"),
      (args(input_file=top_k_output_file(teacher)), "already holds teacher "
       "labels"),
      (args(input_file=short_file), "A record does not match the flags"),
      (random_teacher, "no error"),
  ] + reliability_cases(teacher, tmp_path)
  result = subprocess.run(
      [sys.executable, "-c", ERROR_DRIVER,
       json.dumps([argv for argv, _ in cases])],
      cwd=conftest.REPO, env=conftest.CHILD_ENV, capture_output=True,
      text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-4000:]
  messages = json.loads(result.stdout.strip().splitlines()[-1])
  for (_, expected), message in zip(cases, messages):
    assert expected in message
  assert "cls/seq_relationship/output_bias" in messages[6]
  assert "--allow_random_teacher" in messages[5]
  assert "--max_seq_length" in messages[8]
  assert len(read_records(random_output)) == NUM_RECORDS
  assert "RANDOM teacher" in result.stderr
  assert sorted(os.listdir(str(tmp_path))) == [
      "bare", "configs", "inputs", "random", "stored"], (
          "a failed run left a file")
  # Without --bert_config_file the config stored with the checkpoint.
  assert len(read_records(str(tmp_path / "stored" / "labels.tfrecord"))) == (
      NUM_RECORDS)


def reliability_cases(teacher, tmp_path):
  """(argv, expected message) of inputs that ran but meant nothing (issue 20).

  Writes the configs and a copy of the checkpoint without a stored config
  under tmp_path (bare/, configs/); a good run writes stored/.
  """
  configs = tmp_path / "configs"
  configs.mkdir()
  one_layer = str(configs / "one_layer.json")
  conftest.write_config(one_layer, vocab_size=VOCAB_SIZE, num_hidden_layers=1)
  four_heads = str(configs / "four_heads.json")
  conftest.write_config(four_heads, vocab_size=VOCAB_SIZE,
                        num_attention_heads=4)
  # The teacher's checkpoint in a folder that stores no bert_config.json.
  bare = tmp_path / "bare"
  bare.mkdir()
  for path in glob.glob(teacher["checkpoint"] + ".*"):
    shutil.copy(path, str(bare))
  bare_checkpoint = str(bare / os.path.basename(teacher["checkpoint"]))
  labels = str(tmp_path / "labels.tfrecord")

  def argv(*extra, config=None, checkpoint=teacher["checkpoint"],
           input_file=teacher["input_file"], output_file=labels):
    values = [str(arg) for arg in label_args(teacher, input_file, output_file,
                                             *extra)]
    values[3] = checkpoint
    if config is None:
      del values[0:2]
    else:
      values[1] = config
    return values

  return [
      # Two layers in the checkpoint, one in the config.
      (argv(config=one_layer, checkpoint=bare_checkpoint),
       "--init_checkpoint %s holds 16 variables that the teacher of "
       "--bert_config_file does not use, so it would label with part of the "
       "teacher: bert/encoder/layer_1/*. The checkpoint has 2 encoder "
       "layers, the config 1" % bare_checkpoint),
      # The same shapes, another model: the stored config tells.
      (argv(config=four_heads),
       "--bert_config_file %s and %s (the config stored with "
       "--init_checkpoint %s) differ in what the model computes: "
       "num_attention_heads: stored 2, given 4." % (
           four_heads, teacher["config_file"], teacher["checkpoint"])),
      (argv(config=None, checkpoint=bare_checkpoint),
       "--bert_config_file is required: --init_checkpoint %s has no "
       "bert_config.json next to it." % bare_checkpoint),
      (argv(config=None, output_file=str(tmp_path / "stored" /
                                         "labels.tfrecord")), "no error"),
      (argv("--label_temperature", 2, config=teacher["config_file"]),
       "--label_temperature only applies with --label_sampling True"),
      (argv("--truncation_factor", 3, "--label_sampling=True",
            "--proposal_temperature", "nan", config=teacher["config_file"]),
       "--proposal_temperature must be a positive finite number, got nan."),
      (argv(config=teacher["config_file"], output_file=teacher["input_file"]),
       "--output_file %s is one of the --input_file files" %
       teacher["input_file"]),
  ]


def test_command_line_error_exits_nonzero(teacher, tmp_path):
  args = label_args(teacher, teacher["input_file"],
                    str(tmp_path / "labels.tfrecord"))
  del args[2:4]  # Without --init_checkpoint.
  result = conftest.run_script(SCRIPT, *args, check=False)
  assert result.returncode != 0
  assert "--init_checkpoint is required" in result.stderr


def test_token_id_beyond_vocab_fails_and_keeps_old_output(teacher, tmp_path):
  """A bad id in a late batch: an error, and no half-written output."""
  input_file = str(tmp_path / "bad.tfrecord")
  records = read_records(teacher["input_file"])
  bad_row = dict(teacher["rows"][0])
  bad_row["input_ids"] = list(bad_row["input_ids"])
  bad_row["input_ids"][3] = VOCAB_SIZE
  bad = record_format.make_pretraining_example(**bad_row).SerializeToString()
  with tf.io.TFRecordWriter(input_file) as writer:
    for raw in records[:30] + [bad] + records[30:]:
      writer.write(raw)
  output_folder = tmp_path / "out"
  output_folder.mkdir()
  output_file = str(output_folder / "labels.tfrecord")
  with open(output_file, "wb") as f:
    f.write(b"old labels")
  result = conftest.run_script(SCRIPT, *label_args(
      teacher, input_file, output_file, "--truncation_factor", TOP_K),
                               check=False)
  assert result.returncode != 0
  assert "input_ids: a token id is >= vocab_size=%d" % VOCAB_SIZE in (
      result.stderr)
  assert "does not match the teacher config" in result.stderr
  # The failed run neither replaced the old file nor left a partial one.
  assert os.listdir(str(output_folder)) == ["labels.tfrecord"]
  with open(output_file, "rb") as f:
    assert f.read() == b"old labels"


def labels_by_input(paths):
  """{serialized input features: labels} over every record in `paths`.

  The input part of an output record is recovered by parsing it with the
  pretraining schema's feature names only.
  """
  input_names = set(record_format.pretraining_feature_spec(
      SEQ_LENGTH, PREDICTIONS))
  found = {}
  for path in paths:
    for raw in read_records(path):
      example = tf.train.Example.FromString(raw)
      key = tuple(example.features.feature[name].SerializeToString()
                  for name in sorted(input_names))
      assert key not in found, "a record was written twice"
      found[key] = (float_values(example, record_format.TRUNCATED_PROBS),
                    int_values(example, record_format.TOP_K_INDICES))
  return found


def horovodrun(args, num_processes=2):
  """Runs the script under `horovodrun --gloo` on localhost."""
  env = dict(conftest.CHILD_ENV)
  env["PATH"] = os.path.dirname(sys.executable) + ":" + env.get("PATH", "")
  command = conftest.horovodrun_command(
      num_processes, [os.path.join(conftest.REPO, SCRIPT)] + list(args))
  result = subprocess.run(command, cwd=conftest.REPO,
                          env=env, capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
  return result


def assert_same_labels(expected, actual):
  """Both hold the same inputs, with the same top-k labels for each."""
  assert sorted(expected) == sorted(actual)
  for key, (probs, indices) in expected.items():
    np.testing.assert_allclose(actual[key][0], probs, atol=1e-5)
    np.testing.assert_array_equal(actual[key][1], indices)


def test_horovod_shards_hold_the_single_process_records(teacher, tmp_path):
  """Three files over two ranks: each rank labels its own files."""
  for index, count in enumerate((11, 9, 14)):
    conftest.write_random_pretraining_records(
        str(tmp_path / ("part-%d.tfrecord" % index)), count, VOCAB_SIZE,
        max_seq_length=SEQ_LENGTH, max_predictions_per_seq=PREDICTIONS,
        seed=index + 1)
  pattern = str(tmp_path / "part-*.tfrecord")
  single = str(tmp_path / "single.tfrecord")
  conftest.run_script(SCRIPT, *label_args(teacher, pattern, single,
                                          "--truncation_factor", TOP_K))
  sharded = str(tmp_path / "labels.tfrecord")
  result = horovodrun(label_args(teacher, pattern, sharded,
                                 "--truncation_factor", TOP_K))
  shards = sorted(glob.glob(sharded + "-*-of-2"))
  assert shards == [sharded + "-0-of-2", sharded + "-1-of-2"]
  # Rank 0 has files 0 and 2 (25 records), rank 1 file 1 (9 records).
  assert [len(read_records(path)) for path in shards] == [25, 9]
  assert "Wrote 25 records" in result.stdout
  assert "Wrote 9 records" in result.stdout
  assert_same_labels(labels_by_input([single]), labels_by_input(shards))


def test_horovod_splits_records_when_files_are_few(teacher, top_k_run,
                                                   tmp_path):
  """One file over two ranks: each rank keeps every other record."""
  sharded = str(tmp_path / "labels.tfrecord")
  horovodrun(label_args(teacher, teacher["input_file"], sharded,
                        "--truncation_factor", TOP_K))
  shards = [sharded + "-0-of-2", sharded + "-1-of-2"]
  inputs = read_records(teacher["input_file"])
  for rank, path in enumerate(shards):
    records = read_records(path)
    assert len(records) == len(inputs[rank::2])
    for raw_input, raw_output in zip(inputs[rank::2], records):
      assert raw_output.startswith(raw_input)
  assert_same_labels(labels_by_input([top_k_run["output_file"]]),
                     labels_by_input(shards))
