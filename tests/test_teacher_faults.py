"""Issue 26, the graph side: in-graph teachers and damaged checkpoints.

A teacher's config must be the one stored beside its checkpoint, and a
truncated checkpoint (a teacher, an --init_checkpoint, an --output_dir) or a
precision that does not fit the checkpoint ends as one `ERROR:` line, in
stage V and in run_classifier.py alike. The tiny records, teacher and task
come from test_distillation_trainer and test_run_classifier.
"""

import json
import os
import shutil

import pytest

import conftest
# The shared fixtures and helpers of the trainer's and the classifier's tests.
from test_distillation_trainer import (  # pylint: disable=unused-import
    SCRIPT, data, trainer_args)
from test_run_classifier import (  # pylint: disable=unused-import
    classifier_args, task)
from test_trainer_faults import run_failing, truncate_data_file

CLASSIFIER = "run_classifier.py"


@pytest.fixture(scope="module")
def classifier_bf16(task):
  """A run_classifier.py --output_dir trained 2 steps in bf16."""
  output_dir = str(task["folder"] / "bf16")
  conftest.run_script(CLASSIFIER, *classifier_args(
      task, output_dir, "--do_train", "--num_train_steps", 2,
      "--precision", "bf16"))
  return output_dir


def copy_folder(source, target):
  """Copies a checkpoint folder; returns the copy's path."""
  shutil.copytree(source, target)
  return str(target)


def other_heads_config(path, config):
  """Writes `config` with 4 heads and relu (the same variable shapes)."""
  with open(path, "w") as f:
    json.dump(dict(config, num_attention_heads=4, hidden_act="relu"), f)
  return str(path)


def test_stage_v_teacher_config_must_be_the_stored_one(data, tmp_path):
  teacher = copy_folder(data["teacher"], tmp_path / "teacher")
  with open(os.path.join(teacher, "bert_config.json"), "w") as f:
    json.dump(data["teacher_config"], f)
  wrong = other_heads_config(tmp_path / "wrong.json", data["teacher_config"])
  error = run_failing(SCRIPT, *trainer_args(
      data, str(tmp_path / "out"), "--do_train", "True", num_train_steps=2,
      input_file=data["plain.tfrecord"], teacher_config_file=wrong,
      teacher_checkpoint=teacher))
  assert error.startswith(
      "ERROR: --teacher_config_file %s and %s/bert_config.json (the config "
      "stored with --teacher_checkpoint %s) differ in what the model "
      "computes: num_attention_heads: stored 2, given 4; hidden_act: stored "
      "'gelu', given 'relu'." % (wrong, teacher, teacher)), error


def test_stage_v_names_a_truncated_teacher_checkpoint(data, tmp_path):
  # A prefix: the copied 'checkpoint' file names the original.
  teacher = os.path.join(copy_folder(data["teacher"], tmp_path / "teacher"),
                         "model.ckpt")
  truncate_data_file(teacher)
  error = run_failing(SCRIPT, *trainer_args(
      data, str(tmp_path / "out"), "--do_train", "True", num_train_steps=2,
      input_file=data["plain.tfrecord"],
      teacher_config_file=data["teacher_config.json"],
      teacher_checkpoint=teacher))
  assert error.startswith(
      "ERROR: --teacher_checkpoint: checkpoint %s cannot be read at "
      "variable " % teacher), error
  assert "Copy it again" in error


def test_classifier_teacher_config_must_be_the_stored_one(task,
                                                          classifier_bf16,
                                                          tmp_path):
  with open(task["config"]) as f:
    wrong = other_heads_config(tmp_path / "wrong.json", json.load(f))
  error = run_failing(CLASSIFIER, *classifier_args(
      task, str(tmp_path / "student"), "--do_train", "--num_train_steps", 2,
      "--teacher_config_file", wrong, "--teacher_checkpoint",
      classifier_bf16))
  assert error.startswith(
      "ERROR: --teacher_config_file %s and %s/bert_config.json (the config "
      "stored with --teacher_checkpoint %s) differ in what the model "
      "computes: num_attention_heads: stored 2, given 4; hidden_act: stored "
      "'gelu', given 'relu'." % (wrong, classifier_bf16, classifier_bf16)), (
          error)


def test_classifier_names_truncated_checkpoints_and_the_precision(
    task, classifier_bf16, tmp_path):
  """Each of these was an OutOfRangeError or NotFoundError traceback."""
  damaged = copy_folder(classifier_bf16, tmp_path / "damaged")
  truncate_data_file(os.path.join(damaged, "model.ckpt-2"))
  prefix = os.path.join(damaged, "model.ckpt-2")
  # As the teacher.
  error = run_failing(CLASSIFIER, *classifier_args(
      task, str(tmp_path / "student"), "--do_train", "--num_train_steps", 2,
      "--teacher_config_file", task["config"], "--teacher_checkpoint",
      damaged))
  assert error.startswith("ERROR: --teacher_checkpoint: checkpoint %s cannot "
                          "be read at variable " % prefix), error
  # As --init_checkpoint.
  error = run_failing(CLASSIFIER, *classifier_args(
      task, str(tmp_path / "initialised"), "--do_train", "--num_train_steps",
      2, "--init_checkpoint", damaged))
  assert error.startswith("ERROR: --init_checkpoint: checkpoint %s cannot "
                          "be read at variable " % prefix), error
  # As the --output_dir evaluated with --do_eval alone.
  error = run_failing(CLASSIFIER, *classifier_args(
      task, damaged, "--do_eval"))
  assert error.startswith("ERROR: --output_dir: checkpoint %s cannot be read"
                          % prefix), error

  # A bf16 output resumed in fp16: the precision, not a missing variable.
  error = run_failing(CLASSIFIER, *classifier_args(
      task, classifier_bf16, "--do_train", "--num_train_steps", 4,
      "--precision", "fp16"))
  assert error.startswith(
      "ERROR: --output_dir %s holds checkpoint model.ckpt-2, trained without "
      "fp16's loss scale (--precision fp32 or bf16), but --precision is "
      "fp16." % classifier_bf16), error
