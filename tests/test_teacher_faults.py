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

from absl import flags
from absl.testing import flagsaver
import pytest
import tensorflow as tf

from bert_distillation import checkpoint_usage
from bert_distillation import command_line
from bert_distillation import estimator_training
from bert_distillation import teacher_graph
import conftest
import network_distillation_single_machine_truncated as trainer
# The shared fixtures and helpers of the trainer's and the classifier's tests.
from test_distillation_trainer import (  # pylint: disable=unused-import
    SCRIPT, data, trainer_args)
from test_run_classifier import (  # pylint: disable=unused-import
    classifier_args, task)
from test_trainer_faults import run_failing, truncate_data_file

CLASSIFIER = "run_classifier.py"

tf1 = tf.compat.v1


@pytest.fixture(scope="module")
def classifier_bf16(task):
  """A run_classifier.py --output_dir trained 1 step in bf16."""
  output_dir = str(task["folder"] / "bf16")
  conftest.run_script(CLASSIFIER, *classifier_args(
      task, output_dir, "--do_train", "--num_train_steps", 1,
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


def run_trainer(*argv):
  """Stage V's run() in this process, with trainer_args' command line."""
  with flagsaver.flagsaver():
    flags.FLAGS(command_line.join_boolean_values(["trainer"] + list(argv)))
    trainer.run(trainer.Distribution())


def test_stage_v_teacher_config_must_be_the_stored_one(data, tmp_path):
  teacher = copy_folder(data["teacher"], tmp_path / "teacher")
  with open(os.path.join(teacher, "bert_config.json"), "w") as f:
    json.dump(data["teacher_config"], f)
  wrong = other_heads_config(tmp_path / "wrong.json", data["teacher_config"])
  with pytest.raises(trainer.InputError) as caught:
    run_trainer(*trainer_args(
        data, str(tmp_path / "out"), "--do_train", "True", num_train_steps=2,
        input_file=data["plain.tfrecord"], teacher_config_file=wrong,
        teacher_checkpoint=teacher))
  error = str(caught.value)
  assert error.startswith(
      "--teacher_config_file %s and %s/bert_config.json (the config "
      "stored with --teacher_checkpoint %s) differ in what the model "
      "computes: num_attention_heads: stored 2, given 4; hidden_act: stored "
      "'gelu', given 'relu'." % (wrong, teacher, teacher)), error


def test_stage_v_names_a_truncated_teacher_checkpoint(data, tmp_path):
  # A prefix: the copied 'checkpoint' file names the original.
  teacher = os.path.join(copy_folder(data["teacher"], tmp_path / "teacher"),
                         "model.ckpt")
  truncate_data_file(teacher)
  with pytest.raises(trainer.InputError) as caught:
    run_trainer(*trainer_args(
        data, str(tmp_path / "out"), "--do_train", "True", num_train_steps=1,
        input_file=data["plain.tfrecord"],
        teacher_config_file=data["teacher_config.json"],
        teacher_checkpoint=teacher))
  error = str(caught.value)
  assert error.startswith(
      "--teacher_checkpoint: checkpoint %s cannot be read at "
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
  truncate_data_file(os.path.join(damaged, "model.ckpt-1"))
  prefix = os.path.join(damaged, "model.ckpt-1")
  # As the teacher.
  error = run_failing(CLASSIFIER, *classifier_args(
      task, str(tmp_path / "student"), "--do_train", "--num_train_steps", 2,
      "--teacher_config_file", task["config"], "--teacher_checkpoint",
      damaged))
  assert error.startswith("ERROR: --teacher_checkpoint: checkpoint %s cannot "
                          "be read at variable " % prefix), error
  # (--init_checkpoint is read in the same session setup, and named by the
  # same check: estimator_training.naming_damaged_files.)
  # As the --output_dir evaluated with --do_eval alone.
  error = run_failing(CLASSIFIER, *classifier_args(
      task, damaged, "--do_eval"))
  assert error.startswith("ERROR: --output_dir: checkpoint %s cannot be read"
                          % prefix), error

  # A bf16 output resumed in fp16: the precision, not a missing variable.
  error = run_failing(CLASSIFIER, *classifier_args(
      task, classifier_bf16, "--do_train", "--num_train_steps", 2,
      "--precision", "fp16"))
  assert error.startswith(
      "ERROR: --output_dir %s holds checkpoint model.ckpt-1, trained without "
      "fp16's loss scale (--precision fp32 or bf16), but --precision is "
      "fp16." % classifier_bf16), error


TEACHER = ["--teacher_config_file=t.json", "--teacher_checkpoint=t/"]


@pytest.mark.parametrize("extra, message", [
    (["--hidden_layer_map=1,3"], "--hidden_layer_map has no effect while "
     "--hidden_loss_weight and --attention_loss_weight are 0 (a layer loss "
     "needs the teacher in the graph"),
    (TEACHER + ["--hidden_layer_map=1,3", "--relation_loss_weight=1"],
     "--hidden_layer_map has no effect while --hidden_loss_weight and "
     "--attention_loss_weight are 0: give one of them a weight, or leave "
     "--hidden_layer_map out."),
    (TEACHER + ["--relation_heads=4", "--hidden_loss_weight=1"],
     "--relation_heads has no effect while --relation_loss_weight is 0: give "
     "that loss a weight"),
    (["--relation_teacher_layer=2"], "--relation_teacher_layer has no "
     "effect while --relation_loss_weight is 0 (a layer loss needs the "
     "teacher"),
    (TEACHER + ["--relation_teacher_layer=1", "--relation_loss_weight=0"],
     "--relation_teacher_layer has no effect while --relation_loss_weight "
     "is 0:"),
])
def test_layer_loss_settings_without_their_loss_are_errors(extra, message):
  """Each of these trained without the setting, and without a word."""
  with flagsaver.flagsaver():
    flags.FLAGS(["trainer", "--bert_config_file=c.json", "--input_file=x",
                 "--output_dir=out", "--do_train=True"] + extra)
    with pytest.raises(trainer.InputError) as caught:
      trainer.check_teacher_flags()
  assert message in str(caught.value)


def test_layer_loss_settings_with_their_loss_pass():
  with flagsaver.flagsaver():
    flags.FLAGS(["trainer", "--bert_config_file=c.json", "--input_file=x",
                 "--output_dir=out", "--do_train=True"] + TEACHER + [
                     "--hidden_layer_map=1,3", "--attention_loss_weight=1",
                     "--relation_heads=4", "--relation_teacher_layer=1",
                     "--relation_loss_weight=1", "--hidden_loss=mse",
                     "--hidden_loss_weight=1"])
    trainer.check_teacher_flags()


# ---------------------------------------------------------------------------
# Errors that blamed the wrong thing.


def save_variables(folder, shapes, step=1):
  """Saves zero variables of `shapes` ({name: shape}) as model.ckpt-<step>."""
  with tf.Graph().as_default():
    for name, shape in shapes.items():
      tf1.get_variable(name, shape, initializer=tf1.zeros_initializer())
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      tf1.train.Saver().save(session, os.path.join(str(folder), "model.ckpt"),
                             global_step=step)


def output_dir_error(folder, shapes):
  """check_output_dir_checkpoint's message for a model of `shapes`."""
  with tf.Graph().as_default():
    variables = [tf1.get_variable(name, shape)
                 for name, shape in shapes.items()]
    with pytest.raises(trainer.InputError) as caught:
      estimator_training.check_output_dir_checkpoint(variables, str(folder))
  return str(caught.value)


STUDENT = {"bert/embeddings/word_embeddings": [10, 32],
           "bert/encoder/layer_0/output/dense/kernel": [32, 32],
           "bert/encoder/layer_0/output/dense/bias": [32]}
PROJECTION = {"distillation/hidden_projection/kernel": [32, 48],
              "distillation/hidden_projection/bias": [48]}


def test_a_resume_with_other_layer_loss_flags_names_them(tmp_path):
  """Not --bert_config_file, whose student is the same."""
  with_projection = tmp_path / "projection"
  save_variables(with_projection, dict(STUDENT, **PROJECTION))
  without = tmp_path / "without"
  save_variables(without, STUDENT)
  wider = {"distillation/hidden_projection/kernel": [32, 64],
           "distillation/hidden_projection/bias": [64]}
  for folder, shapes, first in [
      (with_projection, dict(STUDENT, **wider), "distillation/hidden_"
       "projection/bias: model [64], checkpoint [48] (and 1 other variable)"),
      (without, dict(STUDENT, **PROJECTION), "distillation/hidden_projection"
       "/bias [48]: not in the checkpoint (and 1 other variable)")]:
    error = output_dir_error(folder, shapes)
    assert error.startswith(
        "--output_dir %s holds checkpoint model.ckpt-1, trained with other "
        "layer-loss flags: its hidden-state projection differs (%s)." % (
            folder, first)), error
    assert "--hidden_loss_weight" in error
    assert "--teacher_config_file" in error
    assert "--bert_config_file" not in error


def test_a_checkpoint_of_another_width_is_one_line(tmp_path):
  save_variables(tmp_path, STUDENT)
  error = output_dir_error(tmp_path, {
      name: [16 if size == 32 else size for size in shape]
      for name, shape in STUDENT.items()})
  assert error == (
      "--output_dir %s holds checkpoint model.ckpt-1 of another model than "
      "--bert_config_file describes: bert/embeddings/word_embeddings: model "
      "[10, 16], checkpoint [10, 32] (and 2 other variables). Use a new "
      "--output_dir, or the bert_config that checkpoint was trained with."
      % tmp_path)


def test_a_checkpoint_file_naming_a_missing_checkpoint_is_one_line(
    data, tmp_path):
  out = tmp_path / "out"
  save_variables(out, STUDENT, step=3)
  for suffix in (".index", ".data-00000-of-00001"):
    os.remove(str(out / ("model.ckpt-3" + suffix)))
  error = run_failing(SCRIPT, *trainer_args(data, str(out), "--do_eval",
                                            "True"))
  missing = str(out / "model.ckpt-3")
  assert error == (
      "ERROR: --output_dir %s: its 'checkpoint' file names %s, which is not "
      "there (no %s.index). Edit that file to name a checkpoint the folder "
      "holds, or delete it to start again.\n" % (out, missing, missing))
  # The same check for a checkpoint folder given to another flag.
  with pytest.raises(trainer.InputError, match="--teacher_checkpoint %s: its "
                     "'checkpoint' file names %s," % (out, missing)):
    teacher_graph.resolve_checkpoint(str(out), "--teacher_checkpoint")


def test_a_relative_folder_with_its_checkpoint_passes(tmp_path,
                                                    monkeypatch):
  # TensorFlow writes the names relative to the folder; make demo's folders
  # are relative to the checkout (demo_output/teacher).
  monkeypatch.chdir(tmp_path)
  save_variables("out", STUDENT, step=3)
  assert 'model_checkpoint_path: "model.ckpt-3"' in (
      tmp_path / "out" / "checkpoint").read_text()
  checkpoint_usage.check_checkpoint_file("out", "--output_dir")
  assert teacher_graph.resolve_checkpoint("out", "--teacher_checkpoint") == (
      os.path.join("out", "model.ckpt-3"))
  os.remove(str(tmp_path / "out" / "model.ckpt-3.index"))
  with pytest.raises(trainer.InputError, match=r"names out/model.ckpt-3, "):
    checkpoint_usage.check_checkpoint_file("out", "--output_dir")


# ---------------------------------------------------------------------------
# Interrupted runs.


def test_a_resumed_run_redoes_the_evaluation_a_kill_interrupted(data,
                                                                tmp_path):
  """A kill -9 during the evaluation at step 2 leaves step 2's checkpoint and
  no eval_history.jsonl entry for it (the file is written whole when the
  evaluation ends): the state a run trained to step 2 leaves."""
  out = str(tmp_path / "out")
  common = dict(eval_input_file=data["distill_eval.tfrecord"],
                eval_every_steps=2, max_eval_steps=1)
  run_trainer(*trainer_args(data, out, "--do_train", "True",
                            num_train_steps=2))
  assert trainer.checkpoint_step(out) == 2

  run_trainer(*trainer_args(data, out, "--do_train", "True", "--do_eval",
                            "True", num_train_steps=4, **common))
  with open(os.path.join(out, "eval_history.jsonl")) as f:
    assert [json.loads(line)["step"] for line in f] == [2, 4]
