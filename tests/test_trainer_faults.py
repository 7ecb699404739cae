"""Bad inputs and faults on the trainer side (issue 14).

Configs, input lists, damaged records and checkpoints, the state of
--output_dir, non-finite training, and the step watchdog during evaluation.
Every failure must end as one `ERROR: ...` line naming the file or flag
(exit status 1), never a traceback, and never leave a bad checkpoint behind.
The tiny records, configs and teacher come from test_distillation_trainer.
"""

import json
import os
import re
import shutil
import subprocess

from absl import flags
from absl.testing import flagsaver
import numpy as np
import pytest
import tensorflow as tf

from bert_distillation import checkpoint_conversion
import conftest
import modeling
import network_distillation_single_machine_truncated as trainer
from bert_distillation import record_format
from bert_distillation import student_init
from bert_distillation import training_input
# The module's shared tiny setup (a fixture and helpers, no tests).
from test_distillation_trainer import (  # pylint: disable=unused-import
    MAX_PRED, MAX_SEQ, SCRIPT, TOP_K, data, horovod_env, mpirun_command,
    read_eval_results, trainer_args)

LABELS_SCRIPT = "produce_teacher_labels.py"


def run_failing(script, *args, timeout=300):
  """Runs a script that must fail cleanly; returns its ERROR line."""
  result = conftest.run_script(script, *args, check=False, timeout=timeout)
  assert result.returncode == 1, result.stderr[-4000:]
  assert "Traceback" not in result.stderr, result.stderr[-4000:]
  errors = [line for line in result.stderr.splitlines()
            if line.startswith("ERROR")]
  assert len(errors) == 1, result.stderr[-4000:]
  return result.stderr[result.stderr.index(errors[0]):]


def write_json(path, values):
  with open(path, "w") as f:
    json.dump(values, f)
  return str(path)


def damage_record_file(source, path, truncate=False):
  """Copies a record file with its middle damaged; returns the record number.

  The first records stay intact, so only reading on finds the damage: a
  flipped byte inside a record, or (truncate) the file cut there.
  """
  with open(source, "rb") as f:
    raw = f.read()
  offsets, offset = [], 0
  while offset < len(raw):
    offsets.append(offset)
    offset += int(np.frombuffer(raw[offset:offset + 8], "<u8")[0]) + 16
  bad = len(offsets) // 2
  if truncate:
    damaged = raw[:offsets[bad] + 30]
  else:
    damaged = bytearray(raw)
    damaged[offsets[bad] + 20] ^= 0xFF
  with open(path, "wb") as f:
    f.write(bytes(damaged))
  return bad


def truncate_data_file(checkpoint):
  """Cuts a checkpoint's .data file in half."""
  data_file = tf.io.gfile.glob(checkpoint + ".data-*")[0]
  with open(data_file, "rb") as f:
    raw = f.read()
  with open(data_file, "wb") as f:
    f.write(raw[:len(raw) // 2])


# ---------------------------------------------------------------------------
# Configs.


def test_config_file_problems_are_named(tmp_path, data):
  good = conftest.tiny_config_dict(data["vocab_size"])

  def error_for(values):
    path = write_json(tmp_path / "bert_config.json", values)
    with pytest.raises(modeling.ConfigError) as error:
      modeling.BertConfig.from_json_file(path)
    assert path in str(error.value)
    return str(error.value)

  missing = dict(good)
  del missing["num_hidden_layers"]
  assert "missing key(s) num_hidden_layers" in error_for(missing)
  assert ("unknown key 'num_hiden_layers' (did you mean "
          "'num_hidden_layers'?)" in error_for(
              dict(good, num_hiden_layers=4)))
  assert "hidden_size must be an integer, got '32'" in error_for(
      dict(good, hidden_size="32"))
  assert "num_hidden_layers must be at least 1, got 0" in error_for(
      dict(good, num_hidden_layers=0))
  assert "hidden_size 32 is not a multiple of num_attention_heads 3" in (
      error_for(dict(good, num_attention_heads=3)))
  assert "hidden_dropout_prob must be a number in [0, 1), got 1.0" in (
      error_for(dict(good, hidden_dropout_prob=1.0)))
  assert "initializer_range must be a positive number" in error_for(
      dict(good, initializer_range=True))
  message = error_for(dict(good, hidden_act="swish"))
  assert "hidden_act must be one of" in message
  assert all(name in message for name in modeling.ACTIVATIONS)
  assert "must hold a JSON object" in error_for([1, 2])
  path = tmp_path / "broken.json"
  path.write_text('{"vocab_size": 10,')
  with pytest.raises(modeling.ConfigError, match="broken.json"):
    modeling.BertConfig.from_json_file(str(path))

  # Google's multilingual and Chinese releases carry unused pooler keys.
  released = dict(good, directionality="bidi", pooler_type="first_token_"
                  "transform", pooler_fc_size=768, pooler_num_fc_layers=3,
                  pooler_num_attention_heads=12, pooler_size_per_head=128)
  loaded = modeling.BertConfig.from_json_file(
      write_json(tmp_path / "released.json", released))
  assert loaded.to_dict() == good
  # Google's modeling_test builds configs from keyword defaults.
  assert modeling.BertConfig(vocab_size=99, hidden_size=8).num_hidden_layers == 12


def test_trainer_names_a_config_without_num_hidden_layers(tmp_path, data):
  """Today this trains a 12-layer student without a word."""
  config = conftest.tiny_config_dict(data["vocab_size"])
  del config["num_hidden_layers"]
  path = write_json(tmp_path / "student.json", config)
  error = run_failing(SCRIPT, *trainer_args(
      data, str(tmp_path / "out"), "--do_train", "True",
      bert_config_file=path))
  assert error.startswith("ERROR: --bert_config_file: BERT config %s: "
                          "missing key(s) num_hidden_layers" % path), error


@pytest.mark.parametrize("flag, value, message", [
    ("train_batch_size", 0, "--train_batch_size must be at least 1, got 0"),
    ("save_checkpoints_steps", -5, "--save_checkpoints_steps must be at "
     "least 1"),
    ("learning_rate", 0, "--learning_rate positive"),
    ("init_checkpoint", "{tmp}/no_such.ckpt", "--init_checkpoint "
     "{tmp}/no_such.ckpt is not a checkpoint"),
    ("output_dir", "{tmp}/a_file", "--output_dir {tmp}/a_file is a file"),
])
def test_flag_checks_name_the_flag(tmp_path, flag, value, message):
  """Each of these used to end in a TensorFlow traceback."""
  (tmp_path / "a_file").write_text("x")
  argv = ["trainer", "--bert_config_file=c.json", "--input_file=x",
          "--output_dir=%s" % (tmp_path / "out"), "--do_train=True",
          "--%s=%s" % (flag, str(value).format(tmp=tmp_path))]
  with flagsaver.flagsaver():
    flags.FLAGS(argv)
    with pytest.raises(trainer.InputError,
                       match=re.escape(message.format(tmp=tmp_path))):
      trainer.check_flags()


@pytest.mark.parametrize("extra, message", [
    (["--temperature=nan"], "--temperature must be a finite number, got nan"),
    (["--temperature=inf"], "--temperature must be a finite number, got inf"),
    (["--learning_rate=nan"], "--learning_rate must be a finite number"),
    (["--soft_label_weight=0", "--nsp_loss=none"],
     "--soft_label_weight 0, --hard_label_weight 0 and --nsp_loss none leave "
     "no loss to train on"),
    (["--eval_every_steps=10"], "--eval_every_steps 10 needs --do_eval True"),
])
def test_flags_that_mean_nothing_are_errors(tmp_path, extra, message):
  """Each of these ran (NaN until divergence, loss 0, no evaluation)."""
  argv = ["trainer", "--bert_config_file=c.json", "--input_file=x",
          "--output_dir=%s" % (tmp_path / "out"), "--do_train=True"] + extra
  with flagsaver.flagsaver():
    flags.FLAGS(argv)
    with pytest.raises(trainer.InputError, match=re.escape(message)):
      trainer.check_flags()


# ---------------------------------------------------------------------------
# Input lists and checks of every file.


def test_a_list_entry_that_matches_nothing_is_named(tmp_path, data):
  typo = str(tmp_path / "distil.tfrecord")
  with pytest.raises(ValueError, match="'%s' matches no files" % typo):
    record_format.expand_input_files("%s,%s" % (data["distill.tfrecord"],
                                                typo))
  with pytest.raises(ValueError, match=r"'\S+/nothing\*' matches no files"):
    record_format.expand_input_files("%s, %s" % (
        data["distill.tfrecord"], tmp_path / "nothing*"))
  with pytest.raises(trainer.InputError, match="--eval_input_file: .*"
                     "distil.tfrecord' matches no files"):
    training_input.expand_files(typo + "," + data["distill.tfrecord"],
                                "--eval_input_file")
  assert record_format.expand_input_files(" %s , %s " % (
      data["distill.tfrecord"], data["distill_eval.tfrecord"])) == sorted([
          data["distill.tfrecord"], data["distill_eval.tfrecord"]])


def test_every_input_file_is_checked(tmp_path, data):
  def check(files, **overrides):
    args = dict(max_seq_length=MAX_SEQ, max_predictions_per_seq=MAX_PRED,
                truncation_factor=TOP_K, vocab_size=data["vocab_size"],
                needs_teacher_labels=False)
    args.update(overrides)
    return training_input.check_input_files(files, "--input_file", **args)

  longer = str(tmp_path / "z_longer.tfrecord")
  conftest.write_random_pretraining_records(longer, 4, data["vocab_size"],
                                            MAX_SEQ * 2, MAX_PRED)
  with pytest.raises(trainer.InputError, match="z_longer.tfrecord holds "
                     "sequences of length 64"):
    check([data["distill.tfrecord"], longer])
  with pytest.raises(trainer.InputError, match="mixes files with teacher "
                     "labels .*distill.tfrecord.* and without .*plain"):
    check([data["distill.tfrecord"], data["plain.tfrecord"]])
  damaged = str(tmp_path / "z_damaged.tfrecord")
  with open(data["distill.tfrecord"], "rb") as f:
    head = f.read(200)
  with open(damaged, "wb") as f:
    f.write(head)
  with pytest.raises(trainer.InputError, match="--input_file: .*"
                     "z_damaged.tfrecord is damaged: the record at byte "
                     r"offset 0 \(after 0 good ones\) is truncated"):
    check([data["distill.tfrecord"], damaged])


# ---------------------------------------------------------------------------
# Damaged records and checkpoints.


def test_damaged_training_and_eval_records_are_named(tmp_path, data):
  """The damage lies past the records checked before training starts."""
  damaged = str(tmp_path / "damaged.tfrecord")
  bad = damage_record_file(data["distill.tfrecord"], damaged)
  assert record_format.find_damaged_record(
      [data["distill.tfrecord"], damaged]).count == bad
  error = run_failing(SCRIPT, *trainer_args(
      data, str(tmp_path / "out"), "--do_train", "True",
      input_file=damaged, num_train_steps=12, train_batch_size=32))
  assert error.startswith(
      "ERROR: --input_file: %s is damaged: the record at byte offset" % (
          damaged)), error
  assert "(after %d good ones)" % bad in error
  assert "is corrupted (its checksum does not match). Remove the file" in error

  cut = str(tmp_path / "cut_eval.tfrecord")
  bad = damage_record_file(data["distill_eval.tfrecord"], cut, truncate=True)
  error = run_failing(SCRIPT, *trainer_args(
      data, str(tmp_path / "out2"), "--do_train", "True", "--do_eval", "True",
      eval_input_file=cut, num_train_steps=2))
  assert error.startswith("ERROR: --eval_input_file: %s is damaged: "
                          % cut), error
  assert "(after %d good ones)" % bad in error
  assert "is truncated" in error


def test_teacher_labels_name_damaged_records_and_checkpoint(tmp_path, data):
  def label_args(input_file, checkpoint):
    return ["--bert_config_file", data["teacher_config.json"],
            "--input_file", input_file, "--output_file",
            str(tmp_path / "labels.tfrecord"), "--init_checkpoint", checkpoint,
            "--truncation_factor", 3, "--max_seq_length", MAX_SEQ,
            "--max_predictions_per_seq", MAX_PRED, "--batch_size", 16]

  damaged = str(tmp_path / "damaged.tfrecord")
  bad = damage_record_file(data["plain.tfrecord"], damaged, truncate=True)
  error = run_failing(LABELS_SCRIPT, *label_args(damaged,
                                                 data["teacher_checkpoint"]))
  assert error.startswith("ERROR: --input_file: %s is damaged: " % damaged), (
      error)
  assert "(after %d good ones)" % bad in error

  checkpoint = str(tmp_path / "teacher" / "model.ckpt")
  shutil.copytree(os.path.dirname(data["teacher_checkpoint"]),
                  os.path.dirname(checkpoint))
  truncate_data_file(checkpoint)
  error = run_failing(LABELS_SCRIPT, *label_args(data["plain.tfrecord"],
                                                 checkpoint))
  assert error.startswith("ERROR: --init_checkpoint: checkpoint %s cannot be "
                          "read at variable " % checkpoint), error
  assert "Read less bytes than requested" in error
  assert not os.path.exists(str(tmp_path / "labels.tfrecord"))


def test_trainer_names_a_truncated_init_checkpoint(tmp_path, data):
  checkpoint = str(tmp_path / "teacher" / "model.ckpt")
  shutil.copytree(os.path.dirname(data["teacher_checkpoint"]),
                  os.path.dirname(checkpoint))
  truncate_data_file(checkpoint)
  error = run_failing(SCRIPT, *trainer_args(
      data, str(tmp_path / "out"), "--do_train", "True",
      init_checkpoint=checkpoint, num_train_steps=2))
  assert error.startswith("ERROR: --init_checkpoint: checkpoint %s cannot be "
                          "read" % checkpoint), error
  assert "Copy it again" in error


# ---------------------------------------------------------------------------
# The state of --output_dir.


def test_output_dir_state(tmp_path, data):
  out = str(tmp_path / "out")
  # Evaluating nothing is an error, not a random model's numbers.
  error = run_failing(SCRIPT, *trainer_args(data, out, "--do_eval", "True"))
  assert "--output_dir, but %s holds none" % out in error
  assert not os.path.exists(out)

  conftest.run_script(SCRIPT, *trainer_args(
      data, out, "--do_train", "True", num_train_steps=3))
  assert trainer.checkpoint_step(out) == 3

  # One layer fewer would resume (and silently drop layer 1); a wider
  # feed-forward layer would crash inside TensorFlow. The stored config
  # says so first.
  other = dict(conftest.tiny_config_dict(data["vocab_size"]),
               num_hidden_layers=1, intermediate_size=96)
  other_config = write_json(tmp_path / "other.json", other)
  error = run_failing(SCRIPT, *trainer_args(
      data, out, "--do_train", "True", bert_config_file=other_config,
      num_train_steps=6))
  assert error.startswith(
      "ERROR: --bert_config_file %s and %s/bert_config.json (the config its "
      "checkpoints were trained under) differ in what the model computes: "
      "num_hidden_layers: stored 2, given 1; intermediate_size: stored 64, "
      "given 96." % (other_config, out)), error
  # An output_dir without a stored config (an older run's) is compared by
  # the checkpoint's variables.
  os.remove(os.path.join(out, "bert_config.json"))
  error = run_failing(SCRIPT, *trainer_args(
      data, out, "--do_train", "True", bert_config_file=other_config,
      num_train_steps=6))
  # One line: the first difference and how many others (slots of listed
  # variables are not counted).
  assert error.startswith(
      "ERROR: --output_dir %s holds checkpoint model.ckpt-3 of another model "
      "than --bert_config_file describes: bert/encoder/layer_0/intermediate/"
      "dense/bias: model [96], checkpoint [64] (and " % out), error
  assert len(error.strip().splitlines()) == 1, error
  others = int(re.search(r"\(and (\d+) other variables\)", error).group(1))
  reader = tf.train.load_checkpoint(os.path.join(out, "model.ckpt-3"))
  layer_1 = [name for name in reader.get_variable_to_shape_map()
             if name.startswith("bert/encoder/layer_1/")
             and not name.endswith(("adam_m", "adam_v"))]
  # Layer 0's intermediate kernel and bias and output kernel (the first
  # listed is one of them), and every variable of layer 1.
  assert others == 3 + len(layer_1) - 1, error
  assert trainer.checkpoint_step(out) == 3

  # An fp16 run needs the loss-scale state that an fp32 (or bf16)
  # checkpoint lacks: that is --precision, not another model.
  error = run_failing(SCRIPT, *trainer_args(
      data, out, "--do_train", "True", "--precision", "fp16",
      num_train_steps=6))
  assert error.startswith(
      "ERROR: --output_dir %s holds checkpoint model.ckpt-3, trained without "
      "fp16's loss scale (--precision fp32 or bf16), but --precision is "
      "fp16. Resume it with the --precision it was trained with" % out), error
  assert "another model" not in error

  # A truncated checkpoint to resume from is named with its flag.
  truncate_data_file(os.path.join(out, "model.ckpt-3"))
  error = run_failing(SCRIPT, *trainer_args(
      data, out, "--do_train", "True", num_train_steps=6))
  assert error.startswith("ERROR: --output_dir: checkpoint %s cannot be read"
                          % os.path.join(out, "model.ckpt-3")), error


def test_a_resume_under_another_config_of_the_same_shapes(tmp_path, data,
                                                          tiny_vocab):
  """The stored bert_config.json tells a resume of another model (issue 20).

  The same shapes would resume silently; dropout only warns. The stored
  config also serves convert_checkpoint.py and --init_checkpoint DIR.
  """
  out = str(tmp_path / "out")
  conftest.run_script(SCRIPT, *trainer_args(
      data, out, "--do_train", "True", num_train_steps=3))
  stored = os.path.join(out, "bert_config.json")
  with open(stored) as f:
    assert json.load(f) == conftest.tiny_config_dict(data["vocab_size"])

  good = conftest.tiny_config_dict(data["vocab_size"])
  other = write_json(tmp_path / "other.json", dict(
      good, num_attention_heads=4, hidden_act="relu"))
  error = run_failing(SCRIPT, *trainer_args(
      data, out, "--do_train", "True", bert_config_file=other,
      num_train_steps=6))
  assert error == (
      "ERROR: --bert_config_file %s and %s (the config its checkpoints were "
      "trained under) differ in what the model computes: num_attention_heads:"
      " stored 2, given 4; hidden_act: stored 'gelu', given 'relu'. Use the "
      "stored config, or another folder.\n" % (other, stored)), error

  # Dropout does not change what the model computes: a warning. (And a
  # warmup longer than the run: the rate never reaches --learning_rate.)
  no_dropout = write_json(tmp_path / "no_dropout.json", dict(
      good, hidden_dropout_prob=0.0))
  result = conftest.run_script(SCRIPT, *trainer_args(
      data, out, "--do_train", "True", bert_config_file=no_dropout,
      num_train_steps=4, num_warmup_steps=10000))
  assert ("only in keys that do not change what the model computes: "
          "hidden_dropout_prob: stored 0.1, given 0.0." in result.stderr)
  assert ("--num_warmup_steps 10000 is not below --num_train_steps 4: the "
          "learning rate rises for the whole run and peaks at 3e-07, 0.03% of "
          "the rate 0.001" in result.stderr), result.stderr[-3000:]
  assert trainer.checkpoint_step(out) == 4
  with open(stored) as f:
    assert json.load(f) == good  # The config the checkpoints began with.

  # convert_checkpoint.py reads the stored config; a wrong one is refused.
  hf = str(tmp_path / "hf")
  with pytest.raises(trainer.InputError,
                     match="num_attention_heads: stored 2, given 4"):
    checkpoint_conversion.convert("google", "huggingface", out, hf,
                                  bert_config_file=other,
                                  vocab_file=tiny_vocab[0])
  assert not os.path.exists(hf)
  checkpoint_conversion.convert("google", "huggingface", out, hf,
                                vocab_file=tiny_vocab[0])
  with open(os.path.join(hf, "config.json")) as f:
    assert json.load(f)["num_attention_heads"] == 2

  # So does produce_teacher_labels.py --init_checkpoint DIR.
  labels = str(tmp_path / "labels.tfrecord")
  conftest.run_script(
      LABELS_SCRIPT, "--init_checkpoint", out, "--input_file",
      data["plain.tfrecord"], "--output_file", labels, "--max_seq_length",
      MAX_SEQ, "--max_predictions_per_seq", MAX_PRED, "--truncation_factor",
      TOP_K)
  assert sum(1 for _ in tf.compat.v1.io.tf_record_iterator(labels)) == 256


def test_a_student_logs_what_it_left_out_of_a_bigger_checkpoint(data, caplog):
  student = modeling.BertConfig.from_dict(dict(
      conftest.tiny_config_dict(data["vocab_size"]), num_hidden_layers=1))
  with tf.Graph().as_default():
    modeling.pretraining_model(
        student, False, tf.compat.v1.placeholder(tf.int32, [None, MAX_SEQ]),
        tf.compat.v1.placeholder(tf.int32, [None, MAX_PRED]))
    with caplog.at_level("WARNING", logger="tensorflow"):
      loaded = student_init.init_student_from_checkpoint(
          tf.compat.v1.trainable_variables(), data["teacher_checkpoint"])
  assert "bert/encoder/layer_1/output/dense/kernel" not in loaded.values()
  assert ("Left out of the student, not loaded from --init_checkpoint %s (16 "
          "variables): bert/encoder/layer_1/*" % data["teacher_checkpoint"]
          in caplog.text), caplog.text


# ---------------------------------------------------------------------------
# Non-finite training.


def test_a_diverging_run_writes_no_non_finite_checkpoint(tmp_path, data):
  out = str(tmp_path / "out")
  error = run_failing(SCRIPT, *trainer_args(
      data, out, "--do_train", "True", learning_rate=1e12,
      num_warmup_steps=0, num_train_steps=40, save_checkpoints_steps=1))
  assert error.startswith("ERROR: Training diverged: "), error
  assert "at global step" in error and "--learning_rate" in error
  checkpoints = tf.train.get_checkpoint_state(out).all_model_checkpoint_paths
  assert checkpoints, "not even the step-0 checkpoint was written"
  for checkpoint in checkpoints:
    reader = tf.train.load_checkpoint(checkpoint)
    for name in reader.get_variable_to_shape_map():
      assert np.all(np.isfinite(reader.get_tensor(name))), (checkpoint, name)
  assert "The latest checkpoint, %s," % tf.train.latest_checkpoint(out) in (
      error)


# ---------------------------------------------------------------------------
# The step watchdog under Horovod.


def test_distributed_trainer_has_a_step_timeout_by_default():
  result = conftest.run_script(
      "network_distillation_distributed_truncated.py", "--helpfull",
      check=False, timeout=120)
  help_text = result.stdout + result.stderr
  start = help_text.index("--step_timeout_secs: ")
  assert "(default: '1800')" in help_text[start:start + 1000]


def test_step_timeout_spares_a_healthy_evaluation(tmp_path, data):
  """Rank 0 evaluates for longer than --step_timeout_secs; rank 1 waits.

  Before, rank 1's watchdog ran while it waited for rank 0 in the next
  session's broadcast, and aborted the healthy job.
  """
  eval_files = []
  for copy in range(40):
    eval_files.append(str(tmp_path / ("eval_%02d.tfrecord" % copy)))
    shutil.copy(data["distill.tfrecord"], eval_files[-1])
  out = str(tmp_path / "out")
  os.makedirs(str(tmp_path / "tmp"))
  result = subprocess.run(mpirun_command(2, trainer_args(
      data, out, "--do_train", "True", "--do_eval", "True",
      eval_input_file=str(tmp_path / "eval_*.tfrecord"), eval_every_steps=2,
      num_train_steps=8, step_timeout_secs=8, eval_batch_size=64,
      max_eval_steps=160)), cwd=conftest.REPO,
                          env=horovod_env(str(tmp_path / "tmp")),
                          capture_output=True, text=True, timeout=400)
  output = result.stdout + result.stderr
  assert result.returncode == 0, output[-5000:]
  history = [json.loads(line) for line in open(
      os.path.join(out, "eval_history.jsonl"))]
  assert [entry["step"] for entry in history] == [2, 4]
  assert read_eval_results(out)["global_step"] == 4
