# coding=utf-8
"""The tf.estimator machinery that the trainers share.

Stage V's distillation trainers and run_classifier.py train the same way:
one process or several under Horovod (a Distribution), rank 0 owning
--output_dir, resuming from its latest checkpoint, stopping with one
InputError when the loss or the weights stop being finite, and writing
their result files atomically. That logic lives here once; the scripts keep
their flags and model_fns.
"""

import contextlib
import json
import os

import tensorflow as tf

from bert_distillation import checkpoint_usage
from bert_distillation import command_line
from bert_distillation import distillation
import modeling
from bert_distillation import record_format
from bert_distillation import student_init
from bert_distillation import temporary_files
from bert_distillation import training_hooks
from bert_distillation import xla_compile

tf1 = tf.compat.v1

InputError = command_line.InputError


class Distribution(object):
  """How this process takes part in training. The defaults: one process.

  The Horovod wrappers (bert_distillation/horovod_training.py) pass their own
  values.
  Attributes:
    size: number of processes training together.
    rank: this process's index; rank 0 is the chief.
    model_dir: where this process keeps checkpoints (None = --output_dir).
    use_horovod: average gradients over the processes.
    scale_learning_rate: with Horovod, multiply the learning rate by size.
    fp16_allreduce: with Horovod, all-reduce the gradients in float16.
    train_hooks: extra SessionRunHooks for training.
    session_config: a tf ConfigProto or None.
  """

  def __init__(self, size=1, rank=0, model_dir=None, use_horovod=False,
               scale_learning_rate=True, fp16_allreduce=False, train_hooks=(),
               session_config=None):
    self.size = size
    self.rank = rank
    self.model_dir = model_dir
    self.use_horovod = use_horovod
    self.scale_learning_rate = scale_learning_rate
    self.fp16_allreduce = fp16_allreduce
    self.train_hooks = list(train_hooks)
    self.session_config = session_config

  @property
  def is_chief(self):
    """Rank 0 loads --init_checkpoint, writes output_dir and evaluates."""
    return self.rank == 0

  def agree(self, value):
    """Returns rank 0's `value` on every rank (one process: `value`)."""
    return value


def load_bert_config(bert_config_file, max_seq_length):
  """The model's BertConfig; InputError naming --bert_config_file.

  The config must take sequences of max_seq_length (--max_seq_length).
  """
  try:
    bert_config = modeling.BertConfig.from_json_file(bert_config_file)
  except modeling.ConfigError as error:
    raise InputError("--bert_config_file: %s" % error) from None
  if max_seq_length > bert_config.max_position_embeddings:
    raise InputError(
        "--max_seq_length %d exceeds max_position_embeddings %d of "
        "--bert_config_file" % (max_seq_length,
                                bert_config.max_position_embeddings))
  return bert_config


# ---------------------------------------------------------------------------
# Output files.


def write_atomically(path, text):
  """Writes text to path through a temporary file and a rename.

  tf.io.gfile, so that output_dir may be remote (gs://, hdfs://).
  """
  temporary_files.write_atomically(
      path, lambda writer: writer.write(text), opener=tf.io.gfile.GFile,
      replace=lambda source, target: tf.io.gfile.rename(source, target,
                                                          overwrite=True))


def write_eval_results(output_dir, results):
  """Writes output_dir/eval_results.txt as `name = value` lines."""
  lines = []
  tf1.logging.info("***** Eval results *****")
  for key in sorted(results):
    tf1.logging.info("  %s = %s", key, results[key])
    lines.append("%s = %s\n" % (key, results[key]))
  write_atomically(os.path.join(output_dir, "eval_results.txt"),
                   "".join(lines))


def write_train_stats(output_dir, params, throughput, processes,
                      precision_name):
  """Writes output_dir/train_stats.json (read by the demo's report)."""
  train_stats = {
      "params": params,
      "precision": precision_name,
      "train_seq_per_s": throughput.sequences_per_second(),
      "steps": throughput.steps,
      "seconds": throughput.seconds,
      "processes": processes,
  }
  tf1.logging.info("Training stats: %s", train_stats)
  write_atomically(os.path.join(output_dir, "train_stats.json"),
                   json.dumps(train_stats, indent=2) + "\n")


# ---------------------------------------------------------------------------
# Checkpoints of --output_dir.


def output_dir_checkpoint_message(problem, checkpoint):
  """The message for an unreadable checkpoint in --output_dir."""
  return ("--output_dir: %s. Delete %s.* and the 'checkpoint' file of "
          "--output_dir to start again, or edit that file to name an "
          "earlier checkpoint to resume from." % (problem, checkpoint))


def checkpoint_step(model_dir):
  """The global step of the latest checkpoint in model_dir (0 if none)."""
  latest = tf.train.latest_checkpoint(model_dir)
  if not latest:
    return 0
  try:
    return int(tf.train.load_checkpoint(latest).get_tensor("global_step"))
  except (tf.errors.OpError, IndexError, ValueError) as error:
    problem = (modeling.unreadable_checkpoint_problem(latest) or
               "checkpoint %s cannot be read (%s)" % (latest, error))
    raise InputError(output_dir_checkpoint_message(problem, latest)) from None


def unreadable_checkpoint_message(model_dir, checkpoints=()):
  """Names the first unreadable checkpoint a run reads, or returns None.

  checkpoints: (flag name, checkpoint prefix or folder) pairs that the run
  loads (--init_checkpoint, --teacher_checkpoint; None values are skipped),
  checked before model_dir's latest checkpoint (the one a resume or an
  evaluation restores).
  """
  for flag_name, path in checkpoints:
    if not path:
      continue
    prefix = (tf.train.latest_checkpoint(path) if tf.io.gfile.isdir(path)
              else path)
    problem = prefix and modeling.unreadable_checkpoint_problem(prefix)
    if problem:
      return "%s: %s. Copy it again." % (flag_name, problem)
  latest = tf.train.latest_checkpoint(model_dir)
  problem = latest and modeling.unreadable_checkpoint_problem(latest)
  if problem:
    return output_dir_checkpoint_message(problem, latest)
  return None


@contextlib.contextmanager
def naming_damaged_files(model_dir, checkpoints=(), input_files=(),
                         input_flag=None):
  """Turns TensorFlow's error for a damaged file into one naming the file.

  A DataLossError ("corrupted record at N") or OutOfRangeError ("Read less
  bytes than requested") names neither the file nor the flag. Reading the
  checkpoints (see unreadable_checkpoint_message) and the record files
  (input_files, of input_flag) again finds which one is damaged; the
  InputError names it, its flag and what to do. Other errors pass.
  """
  try:
    yield
  except (tf.errors.DataLossError, tf.errors.OutOfRangeError):
    message = unreadable_checkpoint_message(model_dir, checkpoints)
    if message:
      raise InputError(message) from None
    damage = input_files and record_format.find_damaged_record(input_files)
    if damage:
      raise InputError("%s: %s" % (input_flag, damage)) from None
    raise


# optimization.DynamicLossScale's variables: only fp16 training has them.
LOSS_SCALE_SCOPE = "loss_scale/"
# Stage V's hidden-state projection: only a hidden-state loss against a
# teacher of another width has it, in the teacher's width.
PROJECTION_SCOPE = distillation.DISTILLATION_SCOPE + "/"


def check_output_dir_checkpoint(variables, model_dir):
  """Raises InputError when model_dir's latest checkpoint is another model.

  The message is one line: the first variable that differs and how many
  others do. Differences only in variables that a flag other than
  --bert_config_file adds (fp16's loss scale, the hidden-state projection)
  name that flag.
  """
  latest = tf.train.latest_checkpoint(model_dir)
  if not latest:
    return
  differences = student_init.checkpoint_differences(variables, latest)
  if not differences:
    return
  where = "--output_dir %s holds checkpoint %s" % (model_dir,
                                                   os.path.basename(latest))
  if all(name.startswith(LOSS_SCALE_SCOPE) for name in differences):
    raise InputError(
        "%s, trained without fp16's loss scale (--precision fp32 or bf16), "
        "but --precision is fp16. Resume it with the --precision it was "
        "trained with, or use a new --output_dir." % where)
  shown = checkpoint_usage.first_and_count(differences)
  if all(name.startswith(PROJECTION_SCOPE) for name in differences):
    raise InputError(
        "%s, trained with other layer-loss flags: its hidden-state "
        "projection differs (%s). The projection exists with "
        "--hidden_loss_weight above 0 and a teacher of another width than "
        "the student, and maps to the teacher's hidden_size "
        "(--teacher_config_file). Resume with the --hidden_loss_weight and "
        "teacher it was trained with, or use a new --output_dir." % (
            where, shown))
  raise InputError(
      "%s of another model than --bert_config_file describes: %s. Use a new "
      "--output_dir, or the bert_config that checkpoint was trained with." % (
          where, shown))


def non_finite_message(error, model_dir, warmup_flag="--num_warmup_steps"):
  """The message for a NonFiniteTrainingError: what, when, how to go on."""
  latest = tf.train.latest_checkpoint(model_dir)
  if latest:
    resume = ("The latest checkpoint, %s, is from before that step; rerunning "
              "resumes from it, so first lower --learning_rate (or raise "
              "%s), or the run may diverge again." % (latest, warmup_flag))
  else:
    resume = ("No checkpoint was written before it; a rerun starts from the "
              "beginning, so first lower --learning_rate (or raise "
              "%s)." % warmup_flag)
  return ("Training diverged: %s. No checkpoint was written from that step. "
          "%s" % (error, resume))


# ---------------------------------------------------------------------------
# The estimator and the training loop.


def build_estimator(model_fn, distribution, output_dir, save_checkpoints_steps,
                    log_step_count_steps, random_seed, params=None,
                    use_xla=False):
  """The Estimator of this process; only rank 0 saves into output_dir.

  Its sessions use distribution.session_config, with XLA's JIT level set
  when use_xla (--use_xla; xla_compile.session_config). On rank 0, every
  graph model_fn builds is checked against the latest checkpoint of
  output_dir before the estimator restores it (checked_model_fn).
  """
  run_config = tf.estimator.RunConfig(
      model_dir=distribution.model_dir or output_dir,
      save_checkpoints_steps=(save_checkpoints_steps
                              if distribution.is_chief else None),
      save_summary_steps=100 if distribution.is_chief else None,
      log_step_count_steps=log_step_count_steps,
      keep_checkpoint_max=5,
      tf_random_seed=random_seed,
      session_config=xla_compile.session_config(
          distribution.session_config, use_xla))
  if distribution.is_chief:
    model_fn = checked_model_fn(model_fn)
  return tf.estimator.Estimator(model_fn=model_fn, config=run_config,
                                params=params)


def checked_model_fn(model_fn):
  """model_fn, then check_output_dir_checkpoint on all it built.

  After the whole graph is built, so that the optimizer's slots and fp16's
  loss scale are compared too (a bf16 checkpoint resumed with --precision
  fp16 is named as such, not a NotFoundError). Other ranks restore nothing:
  rank 0's weights are broadcast. model_fn takes all five arguments, as the
  trainers' do.
  """

  def checked(features, labels, mode, params, config):
    spec = model_fn(features, labels, mode, params, config)
    check_output_dir_checkpoint(tf1.global_variables(), config.model_dir)
    return spec

  return checked


def step_timeout_message(distribution, what, step_timeout_secs):
  """The watchdog's message when no `what` step finishes in time."""
  if distribution.size > 1:
    cause = "a rank (every step waits for all of them) or the input is stuck"
  else:
    cause = "the input is stuck, or one step takes longer than that"
  return ("No %s step finished in %%.0f s (--step_timeout_secs %d; the "
          "first step of a session gets %d times that): %s. Aborting; rerun "
          "the same command to resume from the last checkpoint." % (
              what, step_timeout_secs,
              training_hooks.StepTimeoutHook.FIRST_STEP_FACTOR, cause))


def train_to_step(estimator, input_fn, num_train_steps, hooks, distribution,
                  output_dir, every=0, after_chunk=None,
                  warmup_flag="--num_warmup_steps", chunk_done=None):
  """Trains to num_train_steps, resuming from rank 0's last checkpoint.

  With every > 0, trains in chunks ending at multiples of it and calls
  after_chunk() after each. chunk_done(step) (asked on rank 0) says whether
  after_chunk() finished after the chunk that ended at `step`: a run
  resumed from a checkpoint at a multiple of `every` calls after_chunk()
  first when it did not (the run was killed during it, e.g. during an
  evaluation). Returns False when there was nothing left to train (the
  checkpoint is already at num_train_steps), else True.

  Raises:
    InputError: when the loss or the weights become NaN or infinite; no
      checkpoint is written from that step on.
  """
  # Every rank must agree, or rank 0 would skip training that the others
  # start (and wait for it forever).
  step = distribution.agree(
      checkpoint_step(output_dir) if distribution.is_chief else 0)
  if step >= num_train_steps:
    tf1.logging.info("Already trained to step %d; nothing to train.", step)
    return False
  # Every rank must agree here too: after_chunk() may wait for all of them.
  if (every and after_chunk and chunk_done and step and step % every == 0
      and distribution.agree(not chunk_done(step)
                             if distribution.is_chief else False)):
    tf1.logging.info("What was due after step %d (its evaluation) was not "
                     "finished: the run stopped during it. Doing it now.",
                     step)
    after_chunk()
  hooks = [training_hooks.NonFiniteLossHook()] + list(hooks)
  # Only rank 0 saves checkpoints.
  listeners = ([training_hooks.FiniteCheckpointListener()]
               if distribution.is_chief else None)
  while step < num_train_steps:
    target = num_train_steps
    if every:
      target = min(num_train_steps, (step // every + 1) * every)
    tf1.logging.info("***** Training to step %d *****", target)
    try:
      estimator.train(
          input_fn=input_fn, max_steps=target, hooks=hooks,
          saving_listeners=listeners)
    except training_hooks.NonFiniteTrainingError as error:
      raise InputError(non_finite_message(
          error, distribution.model_dir or output_dir, warmup_flag)) from None
    step = target
    if every and after_chunk:
      after_chunk()
  return True
