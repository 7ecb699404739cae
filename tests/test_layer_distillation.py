"""Stage V with the teacher in the graph: online soft loss, layer-wise losses.

Reuses test_distillation_trainer's tiny records, teacher and runners. A
second, wider teacher (4 layers x 48) makes the hidden-state loss go
through the learned projection.
"""

import json
import os
import re

import numpy as np
from absl.testing import flagsaver
import pytest
import tensorflow as tf

from bert_distillation import checkpoint_conversion
import conftest
import modeling
import network_distillation_single_machine_truncated as trainer
# The shared fixture and helpers of the trainer's tests.
from test_distillation_trainer import (  # pylint: disable=unused-import
    DISTRIBUTED, SCRIPT, assert_only_rank0_wrote, build_student, checksums,
    data, horovodrun_command, read_eval_results, run_launcher, trainer_args)
import test_launchers

tf1 = tf.compat.v1

LAYER_LOSSES = ("hidden_loss", "attention_loss", "relation_loss")


@pytest.fixture(scope="module")
def wide_teacher(tmp_path_factory, data):
  """(config path, checkpoint folder) of a 4 x 48 teacher with both heads."""
  root = tmp_path_factory.mktemp("wide_teacher")
  config = dict(conftest.tiny_config_dict(
      data["vocab_size"], hidden_size=48, num_hidden_layers=4,
      intermediate_size=96), initializer_range=0.5)
  config_path = str(root / "bert_config.json")
  with open(config_path, "w") as f:
    json.dump(config, f)
  with tf.Graph().as_default():
    tf1.set_random_seed(3)
    modeling.pretraining_model(
        modeling.BertConfig.from_dict(config), False,
        tf.zeros([1, 8], tf.int32), tf.zeros([1, 1], tf.int32))
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      tf1.train.Saver().save(session, str(root / "model.ckpt"))
  return config_path, str(root)


def online_args(data, output_dir, teacher, *extra, **overrides):
  """trainer_args on plain records (no labels) with the teacher in graph."""
  config_path, checkpoint = teacher
  overrides.setdefault("input_file", data["plain.tfrecord"])
  return trainer_args(data, output_dir, *extra, teacher_config_file=config_path,
                      teacher_checkpoint=checkpoint, **overrides)


def untrained_student(data, path):
  """Saves a randomly initialised student at path."""
  with tf.Graph().as_default():
    build_student(data["student_config"])
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      tf1.train.Saver().save(session, path)
  return path


def test_online_soft_loss_equals_the_stored_full_distribution_loss(data,
                                                                   tmp_path):
  """Same student, same records: labels from the graph == stored (k = 0)."""
  start = untrained_student(data, str(tmp_path / "start" / "model.ckpt"))
  common = dict(init_checkpoint=start, temperature=2.0, nsp_loss="soft",
                hard_label_weight=0.5)
  stored_dir, online_dir = str(tmp_path / "stored"), str(tmp_path / "online")
  conftest.run_script(SCRIPT, *trainer_args(
      data, stored_dir, "--do_eval", "True",
      input_file=data["full.tfrecord"], truncation_factor=0, **common))
  conftest.run_script(SCRIPT, *online_args(
      data, online_dir, (data["teacher_config.json"],
                         data["teacher_checkpoint"]), "--do_eval", "True",
      input_file=data["plain_eval.tfrecord"], **common))
  stored, online = (read_eval_results(stored_dir),
                    read_eval_results(online_dir))
  for name in ("kd_loss", "teacher_kl", "teacher_top1_agreement",
               "masked_lm_accuracy", "masked_lm_loss", "loss"):
    assert online[name] == pytest.approx(stored[name], rel=1e-4), name
  assert online["kd_loss"] > 0.1 and online["teacher_kl"] > 0.01


def copy_checkpoint(source_dir, step, target_dir):
  """A folder whose latest checkpoint is source_dir's model.ckpt-<step>."""
  os.makedirs(target_dir)
  for name in os.listdir(source_dir):
    if name.startswith("model.ckpt-%d." % step):
      with open(os.path.join(source_dir, name), "rb") as reader, open(
          os.path.join(target_dir, name), "wb") as writer:
        writer.write(reader.read())
  tf1.train.update_checkpoint_state(target_dir, "model.ckpt-%d" % step)


def test_layer_losses_train_resume_and_stay_out_of_exports(
    data, wide_teacher, tiny_vocab, tmp_path):
  out = str(tmp_path / "out")
  args = dict(eval_input_file=data["plain_eval.tfrecord"],
              hidden_loss_weight=1.0, hidden_loss="mse",
              attention_loss_weight=1.0, relation_loss_weight=1.0,
              relation_heads=4, hidden_layer_map="1,3", num_train_steps=20,
              save_checkpoints_steps=20, random_seed=1)
  conftest.run_script(SCRIPT, *online_args(
      data, out, wide_teacher, "--do_train", "True", **args))

  # The projection is trained and saved (for resuming), the teacher is not.
  reader = tf.train.load_checkpoint(os.path.join(out, "model.ckpt-20"))
  shapes = reader.get_variable_to_shape_map()
  assert shapes["distillation/hidden_projection/kernel"] == [32, 48]
  assert "distillation/hidden_projection/kernel/adam_m" in shapes
  assert not [name for name in shapes if "teacher" in name]
  start = tf.train.load_checkpoint(os.path.join(out, "model.ckpt-0"))
  assert not np.allclose(
      reader.get_tensor("distillation/hidden_projection/kernel"),
      start.get_tensor("distillation/hidden_projection/kernel"))

  # Exports leave the projection out.
  exported = str(tmp_path / "exported")
  conftest.run_script("convert_checkpoint.py", "--from", "google", "--to",
                      "huggingface", "--input_dir", out, "--output_dir",
                      exported, "--bert_config_file", data["student.json"],
                      "--vocab_file", tiny_vocab[0])
  names = set(checkpoint_conversion.load_safetensors(
      [os.path.join(exported, "model.safetensors")]))
  assert "bert.embeddings.word_embeddings.weight" in names
  assert not [name for name in names if "distillation" in name
              or "projection" in name], sorted(names)

  # Resume: restores student and projection, reads the teacher again.
  result = conftest.run_script(SCRIPT, *online_args(
      data, out, wide_teacher, "--do_train", "True", "--do_eval", "True",
      **dict(args, num_train_steps=30)))
  assert "Restoring parameters from" in result.stderr
  assert trainer.checkpoint_step(out) == 30
  after = read_eval_results(out)
  assert after["global_step"] == 30
  stats = json.load(open(os.path.join(out, "train_stats.json")))
  assert stats["steps"] == 10
  # The parameter count is the student's alone.
  with tf.Graph().as_default():
    assert stats["params"] == modeling.count_parameters(
        build_student(data["student_config"]))

  # Each term fell: the same evaluation of the step-0 checkpoint.
  before_dir = str(tmp_path / "before")
  copy_checkpoint(out, 0, before_dir)
  conftest.run_script(SCRIPT, *online_args(
      data, before_dir, wide_teacher, "--do_eval", "True", **args))
  before = read_eval_results(before_dir)
  for name in LAYER_LOSSES + ("kd_loss",):
    assert after[name] < before[name], (name, before, after)


def error_line(result):
  """The run's one ERROR line (and it must be the last line, alone)."""
  assert result.returncode == 1, result.stderr[-3000:]
  lines = [line for line in result.stderr.splitlines()
           if line.startswith("ERROR")]
  assert len(lines) == 1 and "Traceback" not in result.stderr, (
      result.stderr[-3000:])
  return lines[0]


@pytest.mark.parametrize("case", ["vocab", "heads"])
def test_teacher_mismatches_are_one_error_line(data, tmp_path, case):
  """The script's own output (the checks themselves: test_layer_losses.py
  and test_teacher_graph.py)."""
  config = dict(data["teacher_config"])
  extra = {}
  words = []
  if case == "vocab":
    config["vocab_size"] += 1
    words = ["--teacher_config_file", "vocab_size %d" % (
        data["vocab_size"] + 1), "one vocabulary"]
  elif case == "heads":
    config["num_attention_heads"] = 4  # Same shapes as the checkpoint.
    extra = dict(attention_loss_weight=1.0)
    words = ["--attention_loss_weight", "2 heads", "(--teacher_config_file) 4",
             "--relation_loss_weight"]
  config_path = str(tmp_path / "teacher.json")
  with open(config_path, "w") as f:
    json.dump(config, f)
  args = online_args(data, str(tmp_path / "out"),
                     (config_path, data["teacher_checkpoint"]),
                     "--do_train", "True", num_train_steps=2, **extra)
  line = error_line(conftest.run_script(SCRIPT, *args, check=False))
  for word in words:
    assert word in line, (word, line)


@pytest.mark.parametrize("flag", ["relation_loss_weight",
                                  "teacher_checkpoint"])
def test_teacher_flags_come_together(flag):
  with flagsaver.flagsaver(**{flag: 1.0 if flag.endswith("weight") else
                              "t/"}):
    with pytest.raises(trainer.InputError) as caught:
      trainer.check_teacher_flags()
  assert "--" + flag in str(caught.value)
  assert "--teacher_c" in str(caught.value).replace("--" + flag, "")


def test_horovod_two_ranks_bf16_read_the_teacher_each(data, wide_teacher,
                                                      tmp_path):
  """Soft weight 0: the teacher's heads are not built, nor restored."""
  out = str(tmp_path / "out")
  output = run_launcher(horovodrun_command(2, online_args(
      data, out, wide_teacher, "--do_train", "True", precision="bf16",
      hidden_loss_weight=1.0, relation_loss_weight=1.0, relation_heads=2,
      soft_label_weight=0.0, hard_label_weight=1.0, num_train_steps=4)),
                        str(tmp_path / "tmp"))
  sums = checksums(output)
  assert sorted(sums) == [0, 1] and sums[0] == sums[1], sums
  assert_only_rank0_wrote(out)
  for rank in (0, 1):
    assert re.search(r"\[%d\].*Teacher: \d+ variables under teacher/ load "
                     r"from" % rank, output), output[-3000:]
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(out))
  assert int(reader.get_tensor("global_step")) == 2
  assert "distillation/hidden_projection/kernel" in (
      reader.get_variable_to_shape_map())


def test_multinode_train_passes_the_teacher_flags_through(tmp_path):
  hosts = test_launchers.write_hosts(tmp_path, "localhost slots=2\n")
  flags = ["--teacher_config_file", "t/bert_config.json",
           "--teacher_checkpoint", "t/", "--hidden_loss_weight", "1",
           "--hidden_loss", "mse", "--hidden_layer_map", "1,3",
           "--attention_loss_weight", "0.5", "--relation_loss_weight", "2",
           "--relation_teacher_layer", "2", "--relation_heads", "8"]
  tokens, _ = test_launchers.dry_run_tokens(
      [2] + flags, test_launchers.launcher_env(tmp_path, HOSTS=hosts))
  values = test_launchers.last_values(test_launchers.trainer_flags(tokens))
  for name, value in zip(flags[::2], flags[1::2]):
    assert values[name[2:]] == value, name
  assert tokens[tokens.index(os.path.join(
      conftest.REPO, DISTRIBUTED)) + 1:][-len(flags):] == flags
