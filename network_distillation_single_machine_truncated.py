# coding=utf-8
"""Trains a student BERT on a teacher's stored labels (knowledge distillation).

The records come from produce_teacher_labels.py: the pretraining inputs plus
the teacher's top-k masked-LM probabilities (or the full distribution with
--truncation_factor 0) and its next-sentence probabilities. The student's
shape comes from --bert_config_file.

The loss is
  soft_label_weight * T^2 * CE(teacher target at T, student softmax at T)
  + hard_label_weight * CE(masked_lm_ids, student softmax)
  + the next-sentence loss (--nsp_loss hard | soft | none),
where T is --temperature and the teacher target is chosen by --kd_target.
The defaults (T 1, truncated top-k target, soft weight 1, hard weight 0, hard
next-sentence loss) are the original project's loss.

With --soft_label_weight 0 --hard_label_weight 1 and plain pretraining
records this is ordinary BERT pretraining.

With --teacher_config_file and --teacher_checkpoint the teacher runs in the
graph, frozen (bert_distillation/teacher_graph.py): the soft masked-LM loss
then uses its
exact full distribution at T, the records need no teacher labels, and the
layer-wise losses become available:
  + hidden_loss_weight * hidden-state loss (--hidden_loss cosine | mse,
    layer pairs from --hidden_layer_map, embeddings with embeddings)
  + attention_loss_weight * attention KL (the same layer pairs, per head)
  + relation_loss_weight * MiniLMv2's Q-Q, K-K, V-V relation KL (the
    student's last layer and --relation_teacher_layer, --relation_heads).
docs/losses.md gives the formulas.

network_distillation_distributed_truncated.py runs this same code under
Horovod; everything that differs between the two lives in a Distribution.

This script keeps the flags, the model_fn and the run loop. The losses and
metrics live in bert_distillation/distillation.py, the student's initialisation
from a teacher
in bert_distillation/student_init.py, the input pipeline and record checks in
bert_distillation/training_input.py, the hooks in
bert_distillation/training_hooks.py, and --use_xla's XLA
compilation in bert_distillation/xla_compile.py.
"""

import json
import math
import os

from absl import flags
import tensorflow as tf

from bert_distillation import checkpoint_usage
from bert_distillation import command_line
from bert_distillation import distillation
from bert_distillation import estimator_training
import modeling
import optimization
from bert_distillation import output_config
from bert_distillation import precision
from bert_distillation import record_format
from bert_distillation import student_init
from bert_distillation import teacher_graph
from bert_distillation import temporary_files
from bert_distillation import training_hooks
from bert_distillation import training_input
from bert_distillation import xla_compile

tf1 = tf.compat.v1

flags.DEFINE_string(
    "bert_config_file", None,
    "The config json file of the student BERT. This specifies the student's "
    "architecture.")

flags.DEFINE_string(
    "input_file", None,
    "Input TF example files with teacher labels (can be a glob or comma "
    "separated).")

flags.DEFINE_string(
    "output_dir", None,
    "The output directory where the model checkpoints will be written.")

flags.DEFINE_string(
    "init_checkpoint", None,
    "Initial checkpoint (usually from a pre-trained BERT model). Loaded by "
    "variable name, or by --init_layer_map.")

flags.DEFINE_integer(
    "truncation_factor", 10,
    "Number of top probable words the records hold per masked position "
    "(0 = the records hold the full distribution, masked_lm_probs).")

flags.DEFINE_integer(
    "max_seq_length", 128,
    "The maximum total input sequence length after WordPiece tokenization. "
    "Must match data generation.")

flags.DEFINE_integer(
    "max_predictions_per_seq", 20,
    "Maximum number of masked LM predictions per sequence. Must match data "
    "generation.")

flags.DEFINE_bool("do_train", False, "Whether to run training.")

flags.DEFINE_bool("do_eval", False, "Whether to run eval on the dev set.")

flags.DEFINE_integer("train_batch_size", 32, "Total batch size for training.")

flags.DEFINE_integer("eval_batch_size", 8, "Total batch size for eval.")

flags.DEFINE_float("learning_rate", 5e-5, "The initial learning rate for Adam.")

flags.DEFINE_integer("num_train_steps", 100000, "Number of training steps.")

flags.DEFINE_integer("num_warmup_steps", 10000, "Number of warmup steps.")

flags.DEFINE_integer("save_checkpoints_steps", 1000,
                     "How often to save the model checkpoint.")

flags.DEFINE_integer(
    "iterations_per_loop", 1000,
    "How many steps to make in each estimator call on a TPU in the original. "
    "Here (CPU/GPU) it sets how often the step rate and sequences/s are "
    "logged.")

flags.DEFINE_integer("max_eval_steps", 100, "Maximum number of eval steps.")

# New flags; their defaults keep the original behaviour.
flags.DEFINE_float(
    "temperature", 1.0,
    "Softmax temperature T of the teacher target and the student in the soft "
    "loss; the soft loss is scaled by T^2.")

flags.DEFINE_enum(
    "kd_target", "truncated", ["truncated", "renormalized", "residual",
                               "sampled"],
    "Teacher target built from the top-k labels: 'truncated' (the original's "
    "unnormalized top-k), 'renormalized' (top-k rescaled to sum to 1) or "
    "'residual' (top-k plus one bucket for the rest of the vocabulary). "
    "'sampled' is the one target for records labelled with --label_sampling "
    "(the importance weights as stored; --temperature must be the records' "
    "label temperature). Full distributions (k = 0) are used whole whatever "
    "this says.")

flags.DEFINE_float("soft_label_weight", 1.0,
                   "Weight of the soft (teacher) masked-LM loss.")

flags.DEFINE_float(
    "hard_label_weight", 0.0,
    "Weight of the usual masked-LM cross-entropy on masked_lm_ids.")

flags.DEFINE_enum(
    "nsp_loss", "hard", ["hard", "soft", "none"],
    "Next-sentence loss: cross-entropy on next_sentence_labels ('hard'), on "
    "the teacher's next_sentence_probs at --temperature ('soft'), or none.")

flags.DEFINE_string(
    "init_layer_map", "",
    "Comma-separated teacher layer for each student layer, e.g. "
    "'0,2,4,7,9,11': student layer i starts from teacher layer map[i] of "
    "--init_checkpoint. Embeddings, pooler and heads are copied by name.")

flags.DEFINE_bool(
    "init_skip_mismatched", False,
    "Leave variables whose shape differs from --init_checkpoint at their "
    "random initialisation instead of failing.")

flags.DEFINE_string(
    "eval_input_file", "",
    "Held-out TF example files for --do_eval (glob or comma separated). "
    "Without it, evaluation uses the training files. Held-out records may "
    "hold full distributions (--truncation_factor 0 labels) whatever "
    "--truncation_factor says; then evaluation also reports teacher_kl.")

flags.DEFINE_integer(
    "step_timeout_secs", 0,
    "Abort the process (exit status 3) when no training or evaluation step "
    "finishes for this many seconds, e.g. when a Horovod peer hangs. 0 = off "
    "(the default here; the distributed trainer's default is %d). The first "
    "step of a session may take %d times as long (graph optimisation, "
    "waiting for every rank); while rank 0 evaluates, the other ranks wait up "
    "to (--max_eval_steps + 1) times as long." % (
        training_hooks.DISTRIBUTED_STEP_TIMEOUT_SECS,
        training_hooks.StepTimeoutHook.FIRST_STEP_FACTOR))

flags.DEFINE_integer(
    "eval_every_steps", 0,
    "With --do_train and --do_eval: train in chunks of this many steps, "
    "evaluate after each chunk and append the metrics to "
    "output_dir/eval_history.jsonl. 0 = evaluate once at the end.")

flags.DEFINE_integer(
    "random_seed", None,
    "Graph-level seed of the student's initialisation, dropout and input "
    "shuffling (for repeatable runs, e.g. seeds in bench/bench_quality.py). "
    "Unset: a different run every time, as in the original.")

flags.DEFINE_enum("precision", "fp32", precision.PRECISIONS,
                  precision.FLAG_HELP)

flags.DEFINE_bool("use_xla", False, xla_compile.FLAG_HELP)

# The teacher in the graph (layer-wise distillation). Without these flags the
# teacher's labels come from the records, as in the original.
flags.DEFINE_string(
    "teacher_config_file", None,
    "bert_config.json of a teacher to run in the graph, frozen, next to the "
    "student (with --teacher_checkpoint). Its vocabulary must be the "
    "student's. The soft losses then use its exact outputs and the records "
    "need no teacher labels.")

flags.DEFINE_string(
    "teacher_checkpoint", None,
    "The teacher's checkpoint (a prefix such as bert_model.ckpt, or a folder: "
    "its latest checkpoint, e.g. a stage-V --output_dir). It is read by every "
    "process and never written to the student's checkpoints.")

flags.DEFINE_float(
    "hidden_loss_weight", 0.0,
    "Weight of the hidden-state loss between each student layer and its "
    "teacher layer (--hidden_layer_map), embeddings included. Needs "
    "--teacher_checkpoint.")

flags.DEFINE_enum(
    "hidden_loss", "cosine", list(distillation.HIDDEN_LOSSES),
    "The hidden-state loss: 'cosine' (1 - cosine similarity, DistilBERT) or "
    "'mse' (mean squared error, TinyBERT). When the widths differ, a learned "
    "linear projection maps the student's states to the teacher's width; it "
    "is trained with the student and left out of exports.")

flags.DEFINE_string(
    "hidden_layer_map", "",
    "Comma-separated teacher layer (0-based) that each student layer matches "
    "in the hidden-state and attention losses, e.g. '2,5,8,11'. Default: "
    "TinyBERT's uniform map, student layer i -> teacher layer "
    "(i + 1) * teacher_layers / student_layers - 1.")

flags.DEFINE_float(
    "attention_loss_weight", 0.0,
    "Weight of the KL divergence between the teacher's and the student's "
    "attention distributions of the mapped layers, per head, over real "
    "tokens. Student and teacher need the same number of heads.")

flags.DEFINE_float(
    "relation_loss_weight", 0.0,
    "Weight of MiniLMv2's relation loss: the KL divergences of the Q-Q, K-K "
    "and V-V self-relations of the student's last layer and "
    "--relation_teacher_layer, summed. Any head counts and widths.")

flags.DEFINE_integer(
    "relation_teacher_layer", -1,
    "The teacher layer (0-based) whose relations the student's last layer "
    "matches; -1 = the teacher's last layer.")

flags.DEFINE_integer(
    "relation_heads", 0,
    "Number of relation heads that both the student's and the teacher's "
    "queries, keys and values are split into; it must divide both hidden "
    "sizes. 0 = the teacher's num_attention_heads.")

FLAGS = flags.FLAGS

InputError = command_line.InputError


# One process, or several under Horovod (bert_distillation/horovod_training.py).
Distribution = estimator_training.Distribution


# ---------------------------------------------------------------------------
# Model.


class OnlineTeacher(object):
  """The teacher run in the graph: its config, checkpoint and heads.

  has_masked_lm / has_next_sentence: whether the checkpoint holds the
  masked-LM head (cls/predictions) / the next-sentence head
  (cls/seq_relationship); the graph builds the heads it has.
  """

  def __init__(self, config, checkpoint, has_masked_lm, has_next_sentence):
    self.config = config
    self.checkpoint = checkpoint
    self.has_masked_lm = has_masked_lm
    self.has_next_sentence = has_next_sentence


def build_online_teacher(teacher, options, features, student_model,
                         initializer_range, with_outputs, compute_type):
  """Builds the frozen teacher beside the student; returns its loss inputs.

  Returns (TeacherLabels or None, {layer loss name: scalar}). The teacher's
  heads are built when with_outputs (and the checkpoint has them); the
  encoder runs in compute_type (--precision), the masked-LM head in
  float32, as when labelling. restore_online_teacher() then points its
  variables at the checkpoint.
  """
  model = teacher_graph.build_teacher(
      teacher.config, features["input_ids"], features["input_mask"],
      features["segment_ids"], compute_type=compute_type)
  labels = None
  if with_outputs and teacher.has_masked_lm:
    with teacher_graph.teacher_scope():
      masked_lm_logits = modeling.masked_lm_logits(
          teacher.config, model.get_sequence_output(),
          model.get_embedding_table(), features["masked_lm_positions"])
      next_sentence_logits = None
      if teacher.has_next_sentence:
        next_sentence_logits = modeling.next_sentence_logits(
            teacher.config, model.get_pooled_output())
    labels = distillation.online_teacher_labels(masked_lm_logits,
                                                next_sentence_logits)
  layer_losses = {}
  if options.layer.enabled:
    layer_losses = distillation.layer_losses(
        options.layer, student_model, model, features["input_mask"],
        initializer_range)
  return labels, layer_losses


def restore_online_teacher(teacher, with_heads):
  """Makes the built teacher's variables load from its checkpoint.

  with_heads: build_online_teacher built the heads (it returned labels);
  otherwise the checkpoint's heads (cls/) are left unused.
  """
  ignored = ["cls/"]
  if with_heads:
    ignored = [] if teacher.has_next_sentence else ["cls/seq_relationship/"]
  # Only the next-sentence head reads the pooler (a BertForMaskedLM import
  # has neither).
  teacher_graph.restore_teacher(teacher.checkpoint,
                                ignore_prefixes=ignored,
                                optional_prefixes=("bert/pooler/",))


def model_fn_builder(bert_config, options, init_checkpoint, layer_map,
                     skip_mismatched, learning_rate, num_train_steps,
                     num_warmup_steps, max_predictions_per_seq, distribution,
                     stats, precision_name="fp32", teacher=None,
                     use_xla=False):
  """Returns the Estimator model_fn; it records the parameter count in stats.

  precision_name is a --precision value; fp16 training gets dynamic loss
  scaling. teacher: an OnlineTeacher to run in the graph, or None (labels
  from the records). use_xla (--use_xla): the student, the teacher, the
  losses and the training step are built in xla_compile.jit_scope().
  """

  def model_fn(features, labels, mode, params, config):
    """Builds the student and its loss, train op or metrics."""
    # The labels travel in `features`; estimator_training.build_estimator
    # checks the graph against --output_dir's checkpoint (config.model_dir).
    del labels, params, config
    is_training = mode == tf.estimator.ModeKeys.TRAIN
    compute_type = precision.compute_type(precision_name)
    # Training skips the teacher terms it does not use (they cost a vocab-
    # sized softmax pass); evaluation reports them whenever labels exist.
    with_teacher_terms = not is_training or options.uses_teacher_outputs
    online_labels, layer_losses = None, None
    with xla_compile.jit_scope(use_xla):
      # Evaluation keeps the masked-LM head in float32, as the teacher does
      # when it labels, so that the metrics compare like with like.
      student, masked_lm_logits, next_sentence_logits = (
          modeling.pretraining_model(
              bert_config, is_training, features["input_ids"],
              features["masked_lm_positions"],
              input_mask=features["input_mask"],
              token_type_ids=features["segment_ids"],
              compute_type=compute_type,
              mlm_head_type=compute_type if is_training else tf.float32))
      tvars = tf1.trainable_variables()
      if teacher is not None:
        online_labels, layer_losses = build_online_teacher(
            teacher, options, features, student,
            bert_config.initializer_range, with_teacher_terms, compute_type)
      losses = distillation.compute_losses(
          options, features, masked_lm_logits, next_sentence_logits,
          max_predictions_per_seq, with_teacher_terms=with_teacher_terms,
          labels=online_labels, layer_loss_values=layer_losses)

    # The checkpoint reads run once per session: outside the XLA scope.
    stats["params"] = modeling.count_parameters(tvars)
    # Under Horovod, rank 0 loads and BroadcastGlobalVariablesHook copies.
    if init_checkpoint and distribution.is_chief:
      student_init.init_student_from_checkpoint(tvars, init_checkpoint,
                                                layer_map, skip_mismatched)
    if teacher is not None:
      # Every rank builds and reads the teacher (it is not broadcast).
      restore_online_teacher(teacher, with_heads=online_labels is not None)

    if is_training:
      for name, value in losses.items():
        tf1.summary.scalar(name, value)
      tf1.add_to_collection(training_hooks.LOSS_COLLECTION, losses["total"])
      loss_scale = (optimization.DynamicLossScale()
                    if precision_name == "fp16" else None)
      # The training step is compiled too: XLA fuses the clipping, the AdamW
      # update and fp16's overflow check into a few passes over the weights.
      # Horovod's all-reduce has no XLA kernel and stays a TensorFlow op.
      with xla_compile.jit_scope(use_xla):
        train_op = optimization.create_optimizer(
            losses["total"], learning_rate, num_train_steps, num_warmup_steps,
            False, use_horovod=distribution.use_horovod,
            scale_learning_rate=distribution.scale_learning_rate,
            loss_scale=loss_scale, fp16_allreduce=distribution.fp16_allreduce)
      spec = tf.estimator.EstimatorSpec(mode, loss=losses["total"],
                                        train_op=train_op)
    elif mode == tf.estimator.ModeKeys.EVAL:
      spec = tf.estimator.EstimatorSpec(
          mode, loss=losses["total"],
          eval_metric_ops=distillation.eval_metric_ops(
              features, masked_lm_logits, next_sentence_logits, losses,
              max_predictions_per_seq, labels=online_labels))
    else:
      raise ValueError("Only TRAIN and EVAL modes are supported: %s" % mode)
    return spec

  return model_fn


# ---------------------------------------------------------------------------
# Output files.


write_atomically = estimator_training.write_atomically
write_eval_results = estimator_training.write_eval_results
checkpoint_step = estimator_training.checkpoint_step
output_dir_checkpoint_message = (
    estimator_training.output_dir_checkpoint_message)


def evaluated_steps(output_dir):
  """The steps that output_dir/eval_history.jsonl holds an evaluation of."""
  path = os.path.join(output_dir, "eval_history.jsonl")
  if not tf.io.gfile.exists(path):
    return set()
  with tf.io.gfile.GFile(path) as reader:
    return {json.loads(line)["step"] for line in reader if line.strip()}


def append_eval_history(output_dir, results):
  """Appends {"step": ..., metrics...} to output_dir/eval_history.jsonl."""
  path = os.path.join(output_dir, "eval_history.jsonl")
  previous = ""
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as reader:
      previous = reader.read()
  entry = {"step": int(results["global_step"])}
  entry.update({key: float(value) for key, value in results.items()
                if key != "global_step"})
  write_atomically(path, previous + json.dumps(entry, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------
# Checkpoints and damaged files.


def checkpoint_flags():
  """The checkpoints the run loads besides --output_dir's, with their flags."""
  return (("--init_checkpoint", FLAGS.init_checkpoint),
          ("--teacher_checkpoint", FLAGS.teacher_checkpoint))


def naming_damaged_files(input_files, input_flag, model_dir):
  """estimator_training.naming_damaged_files for this run's checkpoints."""
  return estimator_training.naming_damaged_files(
      model_dir, checkpoint_flags(), input_files, input_flag)


# ---------------------------------------------------------------------------
# The run.


def check_flags():
  """Validates flag combinations; raises InputError."""
  if not FLAGS.do_train and not FLAGS.do_eval:
    raise InputError("At least one of --do_train or --do_eval must be True.")
  # NaN passes every comparison, and inf makes the losses NaN.
  for name in ("temperature", "learning_rate", "soft_label_weight",
               "hard_label_weight"):
    if not math.isfinite(FLAGS[name].value):
      raise InputError("--%s must be a finite number, got %s" % (
          name, FLAGS[name].value))
  if FLAGS.temperature <= 0:
    raise InputError("--temperature must be positive, got %g" %
                     FLAGS.temperature)
  if FLAGS.soft_label_weight < 0 or FLAGS.hard_label_weight < 0:
    raise InputError("--soft_label_weight and --hard_label_weight must not be "
                     "negative")
  if FLAGS.do_train:
    distillation.check_some_loss([
        ("--soft_label_weight 0", FLAGS.soft_label_weight > 0),
        ("--hard_label_weight 0", FLAGS.hard_label_weight > 0),
        ("--nsp_loss none", FLAGS.nsp_loss != "none")])
  if FLAGS.eval_every_steps and not (FLAGS.do_train and FLAGS.do_eval):
    raise InputError(
        "--eval_every_steps %d needs %s: it evaluates between chunks of "
        "training." % (FLAGS.eval_every_steps, " and ".join(
            "--%s True" % name for name in ("do_train", "do_eval")
            if not FLAGS[name].value)))
  if FLAGS.truncation_factor < 0:
    raise InputError("--truncation_factor must be >= 0")
  if FLAGS.step_timeout_secs < 0 or FLAGS.eval_every_steps < 0:
    raise InputError("--step_timeout_secs and --eval_every_steps must be >= 0")
  for name in ("train_batch_size", "eval_batch_size", "max_seq_length",
               "max_predictions_per_seq", "save_checkpoints_steps",
               "iterations_per_loop", "max_eval_steps"):
    if FLAGS[name].value < 1:
      raise InputError("--%s must be at least 1, got %d" % (
          name, FLAGS[name].value))
  if FLAGS.num_warmup_steps < 0 or FLAGS.learning_rate <= 0:
    raise InputError("--num_warmup_steps must be >= 0 and --learning_rate "
                     "positive")
  if FLAGS.init_checkpoint:
    teacher_graph.resolve_checkpoint(FLAGS.init_checkpoint,
                                     "--init_checkpoint")
  if tf.io.gfile.exists(FLAGS.output_dir) and not tf.io.gfile.isdir(
      FLAGS.output_dir):
    raise InputError("--output_dir %s is a file, not a folder" %
                     FLAGS.output_dir)
  checkpoint_usage.check_checkpoint_file(FLAGS.output_dir, "--output_dir")
  check_teacher_flags()


# Flags that only mean something with the teacher in the graph.
LAYER_LOSS_FLAGS = ("hidden_loss_weight", "attention_loss_weight",
                    "relation_loss_weight")
# Flags that shape layer losses, and the weights of the losses they shape:
# given while all those weights are 0 (as they must be without a teacher),
# they change nothing.
LAYER_LOSS_SETTINGS = (
    ("hidden_layer_map", ("hidden_loss_weight", "attention_loss_weight")),
    ("hidden_loss", ("hidden_loss_weight",)),
    ("relation_teacher_layer", ("relation_loss_weight",)),
    ("relation_heads", ("relation_loss_weight",)),
)


def check_teacher_flags():
  """The teacher-in-the-graph flags come together; raises InputError.

  A layer-loss weight needs the teacher, and a flag of LAYER_LOSS_SETTINGS
  given on the command line needs one of its weights above 0.
  """
  given = [name for name in ("teacher_config_file", "teacher_checkpoint")
           if FLAGS[name].value]
  if len(given) == 1:
    missing = ({"teacher_config_file", "teacher_checkpoint"} - set(given))
    raise InputError("--%s needs --%s (the teacher in the graph needs its "
                     "config and its checkpoint)" % (given[0],
                                                     missing.pop()))
  if not given:
    used = [name for name in LAYER_LOSS_FLAGS if FLAGS[name].value]
    if used:
      raise InputError(
          "--%s needs the teacher in the graph: pass --teacher_config_file "
          "and --teacher_checkpoint" % used[0])
  for name, weights in LAYER_LOSS_SETTINGS:
    if FLAGS[name].present and not any(FLAGS[w].value for w in weights):
      raise InputError(
          "--%s has no effect while %s %s 0%s: give %s a weight, or leave "
          "--%s out." % (
              name, " and ".join("--" + w for w in weights),
              "is" if len(weights) == 1 else "are",
              "" if given else " (a layer loss needs the teacher in the "
              "graph: --teacher_config_file and --teacher_checkpoint)",
              "that loss" if len(weights) == 1 else "one of them", name))


def online_teacher_from_flags(bert_config):
  """The OnlineTeacher of --teacher_config_file/--teacher_checkpoint, or None.

  Raises:
    InputError: for a teacher that cannot teach this student with these
      losses (vocabulary, sequence length, a head the losses need).
  """
  if not FLAGS.teacher_checkpoint:
    return None
  config, checkpoint = teacher_graph.load_teacher(FLAGS.teacher_config_file,
                                                  FLAGS.teacher_checkpoint)
  teacher_graph.check_teacher_matches_student(
      config, bert_config, "--teacher_config_file", FLAGS.max_seq_length)
  try:
    names = [name for name, _ in tf.train.list_variables(checkpoint)]
  except (tf.errors.OpError, ValueError) as error:
    raise InputError("--teacher_checkpoint: %s" % error) from None
  teacher = OnlineTeacher(
      config, checkpoint,
      has_masked_lm=any(name.startswith("cls/predictions/")
                        for name in names),
      has_next_sentence=any(name.startswith("cls/seq_relationship/")
                            for name in names))
  if FLAGS.soft_label_weight > 0 and not teacher.has_masked_lm:
    raise InputError(
        "--teacher_checkpoint %s has no masked-LM head (cls/predictions), so "
        "it gives no soft masked-LM targets: pass --soft_label_weight 0 and "
        "use the layer-wise losses" % checkpoint)
  if FLAGS.nsp_loss == "soft" and not teacher.has_next_sentence:
    raise InputError(
        "--nsp_loss soft needs the teacher's next-sentence head, but "
        "--teacher_checkpoint %s has none (cls/seq_relationship); use "
        "--nsp_loss hard or none" % checkpoint)
  tf1.logging.info("Teacher in the graph: %s (%d layers x %d); the records' "
                   "teacher labels, if any, are not read.", checkpoint,
                   config.num_hidden_layers, config.hidden_size)
  return teacher


def warn_about_warmup(num_train_steps, num_warmup_steps, distribution):
  """Warns when the warmup keeps the rate below --learning_rate all run.

  The steps are this process's share (divided by the number of processes);
  under Horovod the rate is multiplied by it, as in create_optimizer.
  """
  if num_warmup_steps < num_train_steps:
    return
  learning_rate = FLAGS.learning_rate
  if distribution.use_horovod and distribution.scale_learning_rate:
    learning_rate *= distribution.size
  peak = optimization.peak_learning_rate(learning_rate, num_train_steps,
                                         num_warmup_steps)
  tf1.logging.warning(
      "--num_warmup_steps %d is not below --num_train_steps %d: the learning "
      "rate rises for the whole run and peaks at %.3g, %.2g%% of the rate "
      "%.3g that --learning_rate asks for. Lower --num_warmup_steps (e.g. "
      "to a tenth of --num_train_steps) to reach it.",
      FLAGS.num_warmup_steps, FLAGS.num_train_steps, peak,
      100.0 * peak / learning_rate, learning_rate)


def loss_options_from_flags(bert_config=None, teacher=None):
  """LossOptions from the flags (with the layer-wise ones for a teacher)."""
  layer = None
  if teacher is not None:
    layer = distillation.layer_loss_options(
        bert_config, teacher.config, FLAGS.hidden_loss_weight,
        FLAGS.hidden_loss, FLAGS.hidden_layer_map,
        FLAGS.attention_loss_weight, FLAGS.relation_loss_weight,
        FLAGS.relation_teacher_layer, FLAGS.relation_heads)
  return distillation.LossOptions(FLAGS.temperature, FLAGS.kd_target,
                     FLAGS.soft_label_weight, FLAGS.hard_label_weight,
                     FLAGS.nsp_loss, online=teacher is not None, layer=layer)


def checked_input(patterns, flag_name, bert_config, options,
                  accept_full=False):
  """Expands and checks input files; returns (files, label spec or None).

  accept_full: take full-distribution labels whatever --truncation_factor
  says (held-out records labelled with k = 0 give the exact teacher_kl).
  """
  files = training_input.expand_files(patterns, flag_name)
  label_kind = training_input.check_input_files(
      files, flag_name, FLAGS.max_seq_length, FLAGS.max_predictions_per_seq,
      FLAGS.truncation_factor, bert_config.vocab_size,
      options.needs_teacher_labels,
      needs_next_sentence_probs=options.nsp_loss == "soft",
      kd_target=options.kd_target, temperature=options.temperature,
      accept_full=accept_full, labels_used=not options.online)
  if label_kind is None:
    return files, None
  return files, record_format.teacher_label_spec(
      FLAGS.max_predictions_per_seq,
      0 if label_kind == distillation.FULL else FLAGS.truncation_factor,
      bert_config.vocab_size, sampled=label_kind == distillation.SAMPLED,
      with_next_sentence=training_input.holds_next_sentence_probs(files))



def evaluation_round(evaluate, distribution, watchdog):
  """Rank 0 evaluates (evaluate() is None elsewhere); then the ranks meet.

  The other ranks wait for rank 0 at the meeting point, outside any training
  session, with the watchdog allowing each evaluation step as long as a
  training step; so a healthy evaluation never trips --step_timeout_secs.
  """
  if evaluate:
    evaluate()
    limit = FLAGS.step_timeout_secs
    message = ("After evaluating, rank 0 waited %%.0f s (--step_timeout_secs "
               "%d) for the other ranks: one is stuck. Aborting; rerun the "
               "same command to resume from the last checkpoint." % limit)
  else:
    limit = (FLAGS.max_eval_steps + 1) * FLAGS.step_timeout_secs
    message = ("Rank 0 did not finish its evaluation in %%.0f s ((--max_eval_"
               "steps + 1) x --step_timeout_secs = %d s): it is stuck. "
               "Aborting; rerun the same command to resume from the last "
               "checkpoint." % limit)
  if watchdog:
    watchdog.watch(limit, message)
  distribution.agree(None)
  if watchdog:
    watchdog.pause()


def train(estimator, input_fn, num_train_steps, hooks, distribution,
          watchdog=None, evaluate_every=0, evaluate=None):
  """Trains to num_train_steps, resuming from rank 0's last checkpoint.

  With evaluate_every > 0, trains in chunks ending at multiples of it and
  calls evaluate() after each (rank 0 passes it; the others pass None and
  wait for it); a resumed run first evaluates its checkpoint's step when
  that evaluation was due and eval_history.jsonl lacks it (a kill during
  it). Returns True when the last step was evaluated. The loop is
  estimator_training.train_to_step.

  Raises:
    InputError: when the loss or the weights become NaN or infinite; no
      checkpoint is written from that step on.
  """
  trained = estimator_training.train_to_step(
      estimator, input_fn, num_train_steps, hooks, distribution,
      FLAGS.output_dir, every=evaluate_every,
      after_chunk=lambda: evaluation_round(evaluate, distribution, watchdog),
      chunk_done=lambda step: step in evaluated_steps(FLAGS.output_dir))
  return bool(trained and evaluate_every and evaluate)


def run(distribution):
  """Trains and/or evaluates as the flags say; this process's part of it."""
  tf1.logging.set_verbosity(tf1.logging.INFO)
  check_flags()
  precision.check_hardware(FLAGS.precision)
  bert_config = estimator_training.load_bert_config(FLAGS.bert_config_file,
                                                    FLAGS.max_seq_length)
  teacher = online_teacher_from_flags(bert_config)
  options = loss_options_from_flags(bert_config, teacher)
  layer_map = student_init.parse_layer_map(FLAGS.init_layer_map)
  if layer_map and not FLAGS.init_checkpoint:
    raise InputError("--init_layer_map needs --init_checkpoint (the teacher)")

  train_files, train_label_spec = checked_input(
      FLAGS.input_file, "--input_file", bert_config, options)
  run_eval = FLAGS.do_eval and distribution.is_chief
  eval_flag = "--eval_input_file" if FLAGS.eval_input_file else "--input_file"
  if run_eval and FLAGS.eval_input_file:
    eval_files, eval_label_spec = checked_input(
        FLAGS.eval_input_file, "--eval_input_file", bert_config, options,
        accept_full=True)
  elif run_eval:
    tf1.logging.warning(
        "No --eval_input_file: evaluation uses the TRAINING files (%s), so "
        "its numbers do not measure generalisation.", FLAGS.input_file)
    eval_files, eval_label_spec = train_files, train_label_spec

  # As in the original: every process does its share of the steps.
  num_train_steps = FLAGS.num_train_steps // distribution.size
  num_warmup_steps = FLAGS.num_warmup_steps // distribution.size
  if FLAGS.do_train and num_train_steps < 1:
    raise InputError("--num_train_steps %d is less than one step per process "
                     "(%d processes)" % (FLAGS.num_train_steps,
                                         distribution.size))
  if FLAGS.do_train and distribution.is_chief:
    warn_about_warmup(num_train_steps, num_warmup_steps, distribution)
  if (FLAGS.do_eval and not FLAGS.do_train and not FLAGS.init_checkpoint
      and distribution.is_chief
      and not tf.train.latest_checkpoint(FLAGS.output_dir)):
    raise InputError(
        "--do_eval without --do_train evaluates the latest checkpoint in "
        "--output_dir, but %s holds none. Train first, point --output_dir at "
        "a trained model, or pass --init_checkpoint to evaluate that." %
        FLAGS.output_dir)
  if distribution.is_chief:
    tf.io.gfile.makedirs(FLAGS.output_dir)
    temporary_files.remove_tensorflow_temporaries(FLAGS.output_dir)
  # Every rank checks; only rank 0, and only when training, writes it.
  output_config.save_or_check_config(
      FLAGS.output_dir, FLAGS.bert_config_file, "--bert_config_file",
      write=distribution.is_chief and FLAGS.do_train)
  stats = {}
  model_fn = model_fn_builder(
      bert_config, options, FLAGS.init_checkpoint, layer_map,
      FLAGS.init_skip_mismatched, FLAGS.learning_rate, num_train_steps,
      num_warmup_steps, FLAGS.max_predictions_per_seq, distribution, stats,
      FLAGS.precision, teacher, FLAGS.use_xla)
  estimator = estimator_training.build_estimator(
      model_fn, distribution, FLAGS.output_dir, FLAGS.save_checkpoints_steps,
      FLAGS.iterations_per_loop, FLAGS.random_seed, use_xla=FLAGS.use_xla)

  watchdog = training_hooks.Watchdog() if FLAGS.step_timeout_secs else None

  def evaluate():
    """Evaluates the latest checkpoint; writes eval_results.txt."""
    hooks = []
    if watchdog:
      hooks.append(training_hooks.StepTimeoutHook(
          watchdog, FLAGS.step_timeout_secs,
          estimator_training.step_timeout_message(
              distribution, "evaluation", FLAGS.step_timeout_secs)))
    with naming_damaged_files(eval_files, eval_flag, FLAGS.output_dir):
      results = estimator.evaluate(
          input_fn=training_input.input_fn_builder(
              eval_files, FLAGS.eval_batch_size, FLAGS.max_seq_length,
              FLAGS.max_predictions_per_seq, eval_label_spec,
              is_training=False),
          steps=FLAGS.max_eval_steps, hooks=hooks)
    write_eval_results(FLAGS.output_dir, results)
    if FLAGS.do_train and FLAGS.eval_every_steps:
      append_eval_history(FLAGS.output_dir, results)

  evaluated = False
  if FLAGS.do_train:
    throughput = training_hooks.ThroughputHook(FLAGS.train_batch_size * distribution.size,
                                FLAGS.iterations_per_loop)
    hooks = [throughput, training_hooks.VariablesChecksumHook(distribution.rank)]
    if watchdog:
      # First, so that it also watches the other hooks' session setup.
      hooks.insert(0, training_hooks.StepTimeoutHook(
          watchdog, FLAGS.step_timeout_secs,
          estimator_training.step_timeout_message(
              distribution, "training", FLAGS.step_timeout_secs)))
    with naming_damaged_files(train_files, "--input_file",
                              distribution.model_dir or FLAGS.output_dir):
      evaluated = train(
          estimator,
          training_input.input_fn_builder(
              train_files, FLAGS.train_batch_size, FLAGS.max_seq_length,
              FLAGS.max_predictions_per_seq, train_label_spec,
              is_training=True, num_shards=distribution.size,
              shard_index=distribution.rank),
          num_train_steps, hooks + distribution.train_hooks, distribution,
          watchdog=watchdog,
          evaluate_every=FLAGS.eval_every_steps if FLAGS.do_eval else 0,
          evaluate=evaluate if run_eval else None)
    if distribution.is_chief and throughput.steps:
      estimator_training.write_train_stats(
          FLAGS.output_dir, stats["params"], throughput, distribution.size,
          FLAGS.precision)

  if run_eval and not evaluated:
    evaluate()


def main(_):
  run(Distribution())


if __name__ == "__main__":
  flags.mark_flag_as_required("bert_config_file")
  flags.mark_flag_as_required("input_file")
  flags.mark_flag_as_required("output_dir")
  command_line.run(main)
