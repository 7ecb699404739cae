"""Tests for prune_checkpoint.py and bert_distillation/pruning.py.

A tiny random teacher (3 layers x 32, 4 heads of 8, intermediate 64) is
cut down and compared with the teacher itself: kept units must compute
what they computed in the teacher, and units zeroed on purpose must score
lowest.
"""

import copy
import json
import os
import random
import shutil

import numpy as np
import pytest
import tensorflow as tf

import conftest
from bert_distillation import checkpoint_conversion
from bert_distillation import pruning
import modeling
from test_bad_inputs import assert_one_error_line
from test_run_classifier import colour_row
from test_run_classifier import write_tsv
from test_teacher_labels import save_random_teacher

tf1 = tf.compat.v1

InputError = pruning.InputError
SEQ = 32
SAMPLE = 12


def teacher_config_dict(vocab_size):
  """The teacher's config: 3 layers x 32, 4 heads of 8, intermediate 64."""
  return conftest.tiny_config_dict(vocab_size, num_hidden_layers=3,
                                   num_attention_heads=4)


def write_json(path, value):
  """Writes a JSON file; returns its path."""
  with open(path, "w") as f:
    json.dump(value, f)
  return str(path)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, tiny_vocab):
  """A release folder with a random teacher and both heads, and a sample."""
  folder = tmp_path_factory.mktemp("prune")
  vocab_file, tokens = tiny_vocab
  release = folder / "teacher"
  release.mkdir()
  config_file = write_json(release / "bert_config.json",
                           teacher_config_dict(len(tokens)))
  save_random_teacher(config_file, str(release / "bert_model.ckpt"))
  shutil.copyfile(vocab_file, str(release / "vocab.txt"))
  records = str(folder / "records.tfrecord")
  conftest.write_random_pretraining_records(records, SAMPLE, len(tokens),
                                            max_seq_length=SEQ)
  config = modeling.BertConfig.from_json_file(config_file)
  checkpoint, tensors = pruning.read_teacher(str(release), config)
  return {"folder": folder, "release": str(release), "config_file": config_file,
          "config": config, "checkpoint": checkpoint, "tensors": tensors,
          "records": records, "vocab": vocab_file,
          "arrays": pruning.records_sample(records, SAMPLE)}


def student_config(teacher, **changes):
  """The teacher's BertConfig with some keys changed."""
  config = copy.deepcopy(teacher["config"])
  for key, value in changes.items():
    setattr(config, key, value)
  return config


def forward(config, tensors, arrays):
  """modeling.BertModel on the tensors: (sequence output, pooled output)."""
  with tf.Graph().as_default():
    model = modeling.BertModel(
        config=config, is_training=False,
        input_ids=tf.constant(arrays["input_ids"]),
        input_mask=tf.constant(arrays["input_mask"]),
        token_type_ids=tf.constant(arrays["segment_ids"]), scope="bert")
    with tf1.Session() as session:
      for var in tf1.global_variables():
        var.load(tensors[var.op.name], session)
      return session.run([model.get_sequence_output(),
                          model.get_pooled_output()])


def test_student_with_the_teacher_config_is_the_teacher(teacher, tmp_path):
  config = student_config(teacher)
  tensors, selection, _ = pruning.prune(
      teacher["config"], teacher["checkpoint"], teacher["tensors"], config,
      teacher["arrays"], [], 4)
  assert selection.layer_map == [0, 1, 2]
  output_dir = str(tmp_path / "student")
  pruning.write_student(output_dir, config, tensors, teacher["release"],
                        {"layer_map": selection.layer_map})
  assert sorted(os.listdir(output_dir)) == [
      "bert_config.json", "bert_model.ckpt.data-00000-of-00001",
      "bert_model.ckpt.index", pruning.REPORT_FILE, "vocab.txt"]
  written = checkpoint_conversion.model_variables(
      os.path.join(output_dir, "bert_model.ckpt"))
  assert sorted(written) == sorted(teacher["tensors"])
  expected = forward(teacher["config"], teacher["tensors"], teacher["arrays"])
  actual = forward(
      modeling.BertConfig.from_json_file(
          os.path.join(output_dir, "bert_config.json")), written,
      teacher["arrays"])
  for want, got in zip(expected, actual):
    np.testing.assert_array_equal(want, got)


def attention_block(tensors, layer, num_heads, size_per_head, arrays):
  """One layer's attention sublayer (self-attention, output, LayerNorm)."""
  batch, seq = arrays["input_ids"].shape
  hidden = tensors["bert/embeddings/LayerNorm/gamma"].shape[0]
  rng = np.random.RandomState(3)
  inputs = rng.normal(size=[batch * seq, hidden]).astype(np.float32)
  with tf.Graph().as_default():
    from_tensor = tf.constant(inputs)
    mask = modeling.create_attention_mask_from_input_mask(
        tf.constant(arrays["input_ids"]), tf.constant(arrays["input_mask"]))
    with tf1.variable_scope("bert/encoder/layer_%d/attention" % layer):
      with tf1.variable_scope("self"):
        context = modeling.attention_layer(
            from_tensor, from_tensor, mask, num_attention_heads=num_heads,
            size_per_head=size_per_head, batch_size=batch,
            from_seq_length=seq, to_seq_length=seq)
      with tf1.variable_scope("output"):
        output = modeling.layer_norm(
            modeling.dense(context, hidden, "dense") + from_tensor)
    with tf1.Session() as session:
      for var in tf1.global_variables():
        var.load(tensors[var.op.name], session)
      return session.run(output)


def test_dropping_heads_equals_masking_them_in_the_teacher(teacher):
  # Every channel and neuron kept; layer 1 keeps heads 0 and 2 of 4.
  selection = pruning.Selection([0, 1, 2], [[0, 1], [0, 2], [1, 3]],
                                [list(range(64))] * 3, list(range(32)))
  student = pruning.prune_tensors(teacher["tensors"], teacher["config"],
                                  selection)
  masked = dict(teacher["tensors"])
  name = "bert/encoder/layer_1/attention/output/dense/kernel"
  masked[name] = masked[name].copy()
  for head in (1, 3):
    masked[name][head * 8:(head + 1) * 8] = 0.0
  np.testing.assert_allclose(
      attention_block(student, 1, 2, 8, teacher["arrays"]),
      attention_block(masked, 1, 4, 8, teacher["arrays"]), atol=2e-6)


def test_dropping_neurons_equals_masking_them_in_the_teacher(teacher):
  kept = [sorted(random.Random(layer).sample(range(64), 40))
          for layer in range(3)]
  selection = pruning.Selection([0, 1, 2], [[0, 1, 2, 3]] * 3, kept,
                                list(range(32)))
  student = pruning.prune_tensors(teacher["tensors"], teacher["config"],
                                  selection)
  masked = dict(teacher["tensors"])
  for layer in range(3):
    name = "bert/encoder/layer_%d/output/dense/kernel" % layer
    masked[name] = masked[name].copy()
    masked[name][sorted(set(range(64)) - set(kept[layer]))] = 0.0
  expected = forward(teacher["config"], masked, teacher["arrays"])
  actual = forward(student_config(teacher, intermediate_size=40), student,
                   teacher["arrays"])
  for want, got in zip(expected, actual):
    np.testing.assert_allclose(want, got, atol=2e-5)


def test_importance_ranks_a_unit_zeroed_on_purpose_last(teacher):
  tensors = {name: value.copy() for name, value in teacher["tensors"].items()}
  layer = "bert/encoder/layer_%d/"
  # Head 2 of layer 1: its values are zero, so is its context.
  tensors[layer % 1 + "attention/self/value/kernel"][:, 16:24] = 0.0
  tensors[layer % 1 + "attention/self/value/bias"][16:24] = 0.0
  # Neuron 5 of layer 0: its input is zero, GELU(0) = 0.
  tensors[layer % 0 + "intermediate/dense/kernel"][:, 5] = 0.0
  tensors[layer % 0 + "intermediate/dense/bias"][5] = 0.0
  # Channel 7: every LayerNorm outputs 0 there.
  for name in tensors:
    if name.startswith("bert/") and "LayerNorm" in name:
      tensors[name][7] = 0.0
  importance = pruning.measure_importance(teacher["config"], tensors,
                                          teacher["arrays"], 5)
  assert importance.tokens == int(teacher["arrays"]["input_mask"].sum())
  assert np.argmin(importance.heads[1]) == 2
  assert np.argmin(importance.neurons[0]) == 5
  assert np.argmin(importance.channels.sum(axis=0)) == 7
  assert importance.heads[1][2] < 1e-6 < importance.heads[1].max()
  selection = pruning.select(
      importance, student_config(teacher, num_hidden_layers=2,
                                 num_attention_heads=3, hidden_size=24,
                                 intermediate_size=60), [0, 1])
  assert selection.heads[1] == [0, 1, 3]
  assert 5 not in selection.neurons[0] and len(selection.neurons[0]) == 60
  assert 7 not in selection.channels and len(selection.channels) == 24


def test_importance_counts_only_real_tokens(teacher):
  arrays = {name: value[:4] for name, value in teacher["arrays"].items()}
  padded = {name: value.copy() for name, value in arrays.items()}
  # Random tokens where the mask is 0 must change nothing.
  padded["input_ids"][padded["input_mask"] == 0] = 7
  base = pruning.measure_importance(teacher["config"], teacher["tensors"],
                                    arrays, 4)
  other = pruning.measure_importance(teacher["config"], teacher["tensors"],
                                     padded, 4)
  for field in ("heads", "neurons", "channels", "influence"):
    np.testing.assert_allclose(getattr(base, field), getattr(other, field),
                               rtol=1e-5)


def test_layers_by_influence_keep_the_last_and_the_order():
  assert pruning.choose_layers([0.5, 0.1, 0.3, 0.2], 2) == [0, 3]
  assert pruning.choose_layers([0.1, 0.4, 0.3, 0.2, 0.0], 3) == [1, 2, 4]
  assert pruning.choose_layers([0.1, 0.2], 1) == [1]


@pytest.mark.parametrize("changes, message", [
    ({"num_attention_heads": 8, "hidden_size": 64},
     "num_attention_heads 8, more than the teacher's 4"),
    ({"hidden_size": 48}, "hidden_size 48, more than the teacher's 32"),
    ({"num_hidden_layers": 4}, "num_hidden_layers 4, more than"),
    ({"num_attention_heads": 3}, "set num_attention_heads to 4"),
    ({"hidden_size": 20, "num_attention_heads": 2},
     "make hidden_size a multiple of 8"),
    ({"vocab_size": 50}, "vocab_size 50 but the teacher"),
    ({"hidden_act": "relu"}, "hidden_act relu but the teacher"),
])
def test_bad_student_configs_name_the_problem(teacher, changes, message):
  with pytest.raises(InputError, match=message):
    pruning.check_student_config(teacher["config"],
                                 student_config(teacher, **changes))


def test_bad_layer_maps_and_output_dirs(teacher, tmp_path):
  student = student_config(teacher, num_hidden_layers=2)
  with pytest.raises(InputError, match="has 3 entries but the student has 2"):
    pruning.check_layer_map([0, 1, 2], teacher["config"], student)
  with pytest.raises(InputError, match=r"teacher layers \[3\]"):
    pruning.check_layer_map([0, 3], teacher["config"], student)
  (tmp_path / "full").mkdir()
  (tmp_path / "full" / "x").write_text("x")
  with pytest.raises(InputError, match="not an empty folder"):
    pruning.check_output_dir(str(tmp_path / "full"))
  (tmp_path / "empty").mkdir()
  pruning.check_output_dir(str(tmp_path / "empty"))


def test_script_reports_a_head_size_that_does_not_fit_in_one_line(teacher,
                                                                   tmp_path):
  config = teacher_config_dict(teacher["config"].vocab_size)
  config.update(hidden_size=24, num_attention_heads=2)
  result = conftest.run_script(
      "prune_checkpoint.py", "--bert_config_file", teacher["config_file"],
      "--init_checkpoint", teacher["release"], "--student_config_file",
      write_json(tmp_path / "student.json", config),
      "--output_dir", tmp_path / "out", "--input_file", teacher["records"],
      check=False)
  assert_one_error_line(
      result, "ERROR: --student_config_file: hidden_size 24 with "
      "num_attention_heads 2 gives heads of 12, but the teacher's heads are 8 "
      "wide and pruning keeps whole heads: set num_attention_heads to 3")
  assert not os.path.exists(tmp_path / "out")


def test_fine_tuned_teacher_gives_a_student_run_classifier_distils(
    teacher, tmp_path):
  # A run_classifier.py-style teacher: no pre-training heads, a classifier
  # and task.json.
  fine_tuned = str(tmp_path / "fine_tuned")
  os.makedirs(fine_tuned)
  rng = np.random.RandomState(5)
  tensors = {name: value for name, value in teacher["tensors"].items()
             if not name.startswith("cls/")}
  tensors["output_weights"] = rng.normal(size=[2, 32]).astype(np.float32)
  tensors["output_bias"] = np.array([0.1, -0.1], np.float32)
  checkpoint_conversion.write_google(fine_tuned, teacher["config"].to_dict(),
                                     tensors, teacher["vocab"])
  write_json(os.path.join(fine_tuned, "task.json"),
             {"task_name": "tsv", "labels": ["blue", "red"],
              "regression": False})
  data_dir = tmp_path / "data"
  data_dir.mkdir()
  rows = random.Random(0)
  for split, count in (("train", 48), ("dev", 16)):
    write_tsv(str(data_dir / ("%s.tsv" % split)), ["text_a", "label"],
              [list(colour_row(rows)) for _ in range(count)])
  config = teacher_config_dict(teacher["config"].vocab_size)
  config.update(num_hidden_layers=2, hidden_size=16, num_attention_heads=2,
                intermediate_size=32)
  student_file = write_json(tmp_path / "student.json", config)
  pruned = str(tmp_path / "pruned")
  result = conftest.run_script(
      "prune_checkpoint.py", "--bert_config_file", teacher["config_file"],
      "--init_checkpoint", fine_tuned, "--student_config_file", student_file,
      "--output_dir", pruned, "--task_name", "tsv", "--data_dir", data_dir,
      "--vocab_file", teacher["vocab"], "--max_seq_length", 16,
      "--num_calibration_examples", 20, "--batch_size", 8)
  assert "Wrote %s: 2 layers" % pruned in result.stdout
  assert sorted(os.listdir(pruned)) == [
      "bert_config.json", "bert_model.ckpt.data-00000-of-00001",
      "bert_model.ckpt.index", pruning.REPORT_FILE, "task.json", "vocab.txt"]
  written = checkpoint_conversion.model_variables(
      os.path.join(pruned, "bert_model.ckpt"))
  assert written["output_weights"].shape == (2, 16)
  report = json.load(open(os.path.join(pruned, pruning.REPORT_FILE)))
  assert report["sequences"] == 20 and report["layer_map"][-1] == 2
  # The classifier's columns are the kept channels of the teacher's.
  channels = [np.flatnonzero(np.all(tensors["bert/embeddings/word_embeddings"]
                                    == column[:, None], axis=0))[0]
              for column in written["bert/embeddings/word_embeddings"].T]
  np.testing.assert_array_equal(written["output_weights"],
                                tensors["output_weights"][:, channels])

  output_dir = str(tmp_path / "student_task")
  result = conftest.run_script(
      "run_classifier.py", "--task_name", "tsv", "--data_dir", data_dir,
      "--vocab_file", os.path.join(pruned, "vocab.txt"),
      "--bert_config_file", os.path.join(pruned, "bert_config.json"),
      "--init_checkpoint", pruned, "--teacher_config_file",
      teacher["config_file"], "--teacher_checkpoint", fine_tuned,
      "--max_seq_length", 16, "--do_train", "--do_eval",
      "--num_train_steps", 3, "--train_batch_size", 8,
      "--output_dir", output_dir)
  assert "init output_weights <- output_weights" in result.stderr
  assert os.path.exists(os.path.join(output_dir, "eval_results.txt"))
