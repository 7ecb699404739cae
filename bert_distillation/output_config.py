# coding=utf-8
"""The bert_config.json that a folder of checkpoints was trained under.

A checkpoint holds variables, not the model's config: a student trained with
num_attention_heads 2 resumes without a word under a config that says 4 (the
shapes are the same), and silently becomes another model. So every run that
writes checkpoints stores its config as <output_dir>/bert_config.json, and a
run that resumes, evaluates or reads those checkpoints compares its config
with the stored one:

  * a key that changes what the model computes (COMPUTATION_KEYS: the sizes,
    num_attention_heads, hidden_act, ...) is an error naming both files and
    the keys that differ;
  * a key that only changes how training goes (TRAINING_ONLY_KEYS: the
    dropout probabilities and initializer_range, which only initialises
    variables that no checkpoint holds yet) is a warning.

The entry points:
  save_or_check_config(output_dir, config, flag_name, write): for a run that
    writes checkpoints into output_dir (the trainers, run_classifier.py).
  check_config(folder, config, flag_name): for a run that only reads them.
  config_for_checkpoint(checkpoint, config_file, flag_name): the config file
    a reader of a checkpoint should use (the stored one when none is given).
"""

import json
import os

import tensorflow as tf

from bert_distillation import command_line
import modeling
from bert_distillation import temporary_files

tf1 = tf.compat.v1

InputError = command_line.InputError

CONFIG_NAME = "bert_config.json"

# Keys that only change training, never the function a checkpoint computes.
TRAINING_ONLY_KEYS = ("hidden_dropout_prob", "attention_probs_dropout_prob",
                      "initializer_range")
COMPUTATION_KEYS = tuple(key for key in modeling.CONFIG_KEYS
                         if key not in TRAINING_ONLY_KEYS)


def stored_config_path(folder):
  """<folder>/bert_config.json, where the config of its checkpoints is kept."""
  return os.path.join(folder, CONFIG_NAME)


def checkpoint_folder(checkpoint):
  """The folder of a checkpoint prefix, or the checkpoint folder itself."""
  if tf.io.gfile.isdir(checkpoint):
    return checkpoint
  return os.path.dirname(checkpoint) or "."


def _as_config(config, flag_name):
  """A BertConfig from a path (read; InputError naming flag_name) or itself."""
  if not isinstance(config, str):
    return config
  try:
    return modeling.BertConfig.from_json_file(config)
  except modeling.ConfigError as error:
    raise InputError("%s: %s" % (flag_name, error)) from None


def _describe(config, flag_name):
  """How a message names the config: `--flag path` or `--flag`."""
  return "%s %s" % (flag_name, config) if isinstance(config, str) else flag_name


def config_differences(stored, given):
  """(computation, training_only) lists of "key: stored X, given Y"."""
  stored, given = stored.to_dict(), given.to_dict()
  computation, training_only = [], []
  for key in modeling.CONFIG_KEYS:
    if stored.get(key) != given.get(key):
      text = "%s: stored %r, given %r" % (key, stored.get(key),
                                          given.get(key))
      (training_only if key in TRAINING_ONLY_KEYS else computation).append(
          text)
  return computation, training_only


def check_config(folder, config, flag_name="--bert_config_file",
                 what="its checkpoints were trained under"):
  """Compares `config` with <folder>/bert_config.json, if the folder has one.

  `config` is a bert_config.json path or a modeling.BertConfig. A key of
  COMPUTATION_KEYS that differs raises InputError naming both files and the
  keys; TRAINING_ONLY_KEYS that differ are logged as a warning. Returns True
  when a stored config was there to compare with.
  """
  path = stored_config_path(folder)
  if not tf.io.gfile.exists(path):
    return False
  try:
    stored = modeling.BertConfig.from_json_file(path)
  except modeling.ConfigError as error:
    raise InputError("%s (the config %s): %s. Restore it, or delete it to "
                     "skip this check." % (path, what, error)) from None
  computation, training_only = config_differences(
      stored, _as_config(config, flag_name))
  if computation:
    raise InputError(
        "%s and %s (the config %s) differ in what the model computes: %s. "
        "Use the stored config, or another folder." % (
            _describe(config, flag_name), path, what,
            "; ".join(computation)))
  if training_only:
    tf1.logging.warning(
        "%s differs from %s (the config %s) only in keys that do not change "
        "what the model computes: %s.", _describe(config, flag_name), path,
        what, "; ".join(training_only))
  return True


def _write_config(path, config):
  """Writes config to path atomically (tf.io.gfile: path may be remote)."""
  text = json.dumps({key: config.to_dict()[key]
                     for key in modeling.CONFIG_KEYS}, indent=2,
                    sort_keys=True) + "\n"
  temporary_files.write_atomically(
      path, lambda writer: writer.write(text), opener=tf.io.gfile.GFile,
      replace=lambda source, target: tf.io.gfile.rename(source, target,
                                                          overwrite=True))


def save_or_check_config(output_dir, config, flag_name="--bert_config_file",
                         write=True):
  """Stores `config` in output_dir, or checks it against the stored one.

  Call it before a run reads or writes checkpoints in output_dir.
  `config` is a bert_config.json path or a modeling.BertConfig; flag_name
  names it in messages. When output_dir holds a checkpoint and a stored
  config, they are compared (check_config: an InputError for a key that
  changes the computation, a warning for a dropout probability). With
  write=True (the process that owns output_dir: rank 0 under Horovod) the
  config is stored as output_dir/bert_config.json when output_dir holds no
  checkpoint yet (a new run, or one that stopped before its first
  checkpoint). The other ranks pass write=False and only check. Checkpoints
  without a stored config (an older version's) get a warning.
  """
  latest = (tf.io.gfile.isdir(output_dir) and
            tf.train.latest_checkpoint(output_dir))
  if latest:
    if not check_config(output_dir, config, flag_name):
      # Only the checkpoint's shapes can be checked; storing this config
      # would vouch for what nobody checked.
      tf1.logging.warning(
          "%s holds checkpoint %s but no %s (written by an older version): "
          "its config cannot be checked, and none is stored.", output_dir,
          os.path.basename(latest), CONFIG_NAME)
    return
  if write:
    tf.io.gfile.makedirs(output_dir)
    _write_config(stored_config_path(output_dir),
                  _as_config(config, flag_name))


def config_for_checkpoint(checkpoint, config_file,
                          flag_name="--bert_config_file",
                          checkpoint_flag="--init_checkpoint"):
  """The config file to read `checkpoint` with; checks a given one.

  Without config_file, the one stored in the checkpoint's folder (a trainer's
  output_dir, a Google release folder); InputError when there is none. With
  config_file, it is checked against the stored one (check_config).
  """
  folder = checkpoint_folder(checkpoint)
  if not config_file:
    path = stored_config_path(folder)
    if not tf.io.gfile.exists(path):
      raise InputError(
          "%s is required: %s %s has no %s next to it." % (
              flag_name, checkpoint_flag, checkpoint, CONFIG_NAME))
    tf1.logging.info("Using %s, stored with %s %s", path, checkpoint_flag,
                     checkpoint)
    return path
  check_config(folder, config_file, flag_name,
               what="stored with %s %s" % (checkpoint_flag, checkpoint))
  return config_file
