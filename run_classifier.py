# coding=utf-8
"""Fine-tunes a BERT (teacher or student) on a classification task.

Google's run_classifier.py flags and outputs: --task_name, --data_dir,
--vocab_file, --bert_config_file, --init_checkpoint, --do_train, --do_eval,
--do_predict, ...; a classifier on the pooled output (dropout 0.1 while
training) with the top-level variables output_weights [num_labels, hidden]
and output_bias [num_labels]; --do_eval writes eval_results.txt and
--do_predict test_results.tsv (one row of class probabilities, or the score
of a regression, per test example, in input order). The tasks and their
file layouts are in bert_distillation/classifier_data.py, the metrics in
bert_distillation/classifier_metrics.py.

Task distillation: with --teacher_config_file and --teacher_checkpoint (a
run_classifier.py --output_dir fine-tuned on the same task; its class order
from its task.json or --teacher_labels, mapped onto the student's) the
teacher runs frozen in the same graph (bert_distillation/teacher_graph.py)
and the loss is

  soft_label_weight * T^2 * CE(teacher softmax at T, student softmax at T)
  + hard_label_weight * CE(label, student softmax)

(for a regression, MSE to the teacher's score and to the label). The hard
term averages over the examples that have a label: --transfer_file rows and
the --augment_factor copies are labelled by the teacher only. Without a
teacher the loss is the usual cross-entropy, as in Google's script.

The teacher is run in the graph rather than cached: it is one
implementation shared with stage V's layer-wise distillation, needs no
labelling pass or label files, and the cost (one teacher forward per
training step) is small for teachers of a few layers.

run_classifier_distributed.py runs this same code under Horovod.
"""

import json
import math
import os

from absl import flags
import numpy as np
import tensorflow as tf

from bert_distillation import checkpoint_usage
from bert_distillation import classifier_data
from bert_distillation import classifier_metrics
from bert_distillation import classifier_model
from bert_distillation import command_line
from bert_distillation import distillation
from bert_distillation import estimator_training
import modeling
import optimization
from bert_distillation import output_config
from bert_distillation import precision
from bert_distillation import student_init
from bert_distillation import teacher_graph
from bert_distillation import temporary_files
import tokenization
from bert_distillation import training_hooks

tf1 = tf.compat.v1

# Google's flags, with Google's defaults.
flags.DEFINE_string(
    "data_dir", None,
    "The input data dir. Should contain the .tsv files of the task.")

flags.DEFINE_string(
    "bert_config_file", None,
    "The config json file of the BERT to fine-tune (the student when "
    "distilling). This specifies the model architecture.")

flags.DEFINE_string(
    "task_name", None,
    "The name of the task: %s (case-insensitive)." %
    ", ".join(classifier_data.TASK_NAMES))

flags.DEFINE_string("vocab_file", None,
                    "The vocabulary file that the BERT model was trained on.")

flags.DEFINE_string(
    "output_dir", None,
    "The output directory where the model checkpoints will be written.")

flags.DEFINE_string(
    "init_checkpoint", None,
    "Initial checkpoint: a Google release (folder or bert_model.ckpt), a "
    "converted Hugging Face model, a stage-V --output_dir or one "
    "model.ckpt-N. Loaded by variable name, or by --init_layer_map.")

flags.DEFINE_bool(
    "do_lower_case", True,
    "Whether to lower case the input text. Should be True for uncased "
    "models and False for cased models.")

flags.DEFINE_integer(
    "max_seq_length", 128,
    "The maximum total input sequence length after WordPiece tokenization. "
    "Sequences longer than this will be truncated, and sequences shorter "
    "than this will be padded.")

flags.DEFINE_bool("do_train", False, "Whether to run training.")

flags.DEFINE_bool("do_eval", False, "Whether to run eval on the dev set.")

flags.DEFINE_bool(
    "do_predict", False,
    "Whether to run the model in inference mode on the test set.")

flags.DEFINE_integer("train_batch_size", 32, "Total batch size for training.")

flags.DEFINE_integer("eval_batch_size", 8, "Total batch size for eval.")

flags.DEFINE_integer("predict_batch_size", 8, "Total batch size for predict.")

flags.DEFINE_float("learning_rate", 5e-5, "The initial learning rate for Adam.")

flags.DEFINE_float("num_train_epochs", 3.0,
                   "Total number of training epochs to perform.")

flags.DEFINE_float(
    "warmup_proportion", 0.1,
    "Proportion of training to perform linear learning rate warmup for. "
    "E.g., 0.1 = 10% of training.")

flags.DEFINE_integer("save_checkpoints_steps", 1000,
                     "How often to save the model checkpoint.")

flags.DEFINE_integer(
    "iterations_per_loop", 1000,
    "How many steps to make in each estimator call on a TPU in the original. "
    "Here (CPU/GPU) it sets how often the step rate and sequences/s are "
    "logged.")

# New flags; their defaults keep Google's behaviour.
flags.DEFINE_integer(
    "num_train_steps", 0,
    "Train for this many steps instead of --num_train_epochs (0: the "
    "steps of --num_train_epochs over the training examples, as Google's "
    "script). Lets students with different training sets (augmented, "
    "transfer) take the same steps.")

flags.DEFINE_string(
    "init_layer_map", "",
    "Comma-separated teacher layer for each student layer, e.g. '0,2,4': "
    "student layer i starts from layer map[i] of --init_checkpoint. "
    "Embeddings and pooler are copied by name.")

flags.DEFINE_bool(
    "init_skip_mismatched", False,
    "Leave variables whose shape differs from --init_checkpoint at their "
    "random initialisation instead of failing.")

flags.DEFINE_integer(
    "random_seed", None,
    "Graph-level seed of the initialisation, dropout and input shuffling, "
    "and the seed of --augment_factor's copies (0 when unset). Unset: a "
    "different run every time, as in the original.")

flags.DEFINE_enum("precision", "fp32", precision.PRECISIONS,
                  precision.FLAG_HELP)

flags.DEFINE_integer(
    "step_timeout_secs", 0,
    "Abort the process (exit status 3) when no training step finishes for "
    "this many seconds, e.g. when a Horovod peer hangs. 0 = off (the "
    "default here; run_classifier_distributed.py's default is %d)." %
    training_hooks.DISTRIBUTED_STEP_TIMEOUT_SECS)

flags.DEFINE_string(
    "teacher_config_file", None,
    "Task distillation: the bert_config.json of the teacher, a model "
    "fine-tuned on the same task with run_classifier.py.")

flags.DEFINE_string(
    "teacher_checkpoint", None,
    "Task distillation: the teacher's checkpoint, its run_classifier.py "
    "--output_dir (latest checkpoint) or one model.ckpt-N.")

flags.DEFINE_string(
    "teacher_labels", None,
    "Task distillation: the teacher's labels in its class-id order, "
    "comma-separated (e.g. 'red,blue'), for a --teacher_checkpoint without "
    "task.json. With one, they must agree. Mapped onto this run's order.")

flags.DEFINE_float(
    "temperature", 1.0,
    "Softmax temperature T of the teacher and the student in the soft loss; "
    "the soft loss is scaled by T^2.")

flags.DEFINE_float(
    "soft_label_weight", 1.0,
    "Weight of the soft loss against the teacher (cross-entropy on its "
    "class distribution; MSE on its score for a regression).")

flags.DEFINE_float(
    "hard_label_weight", 0.0,
    "With a teacher: weight of the usual loss on the task's labels "
    "(averaged over the examples that have one).")

flags.DEFINE_string(
    "transfer_file", None,
    "Task distillation: a file of extra training rows in the task's train "
    "layout (for tsv: a header with text_a, optional text_b); their labels "
    "are ignored and the teacher labels them.")

flags.DEFINE_integer(
    "augment_factor", 0,
    "Task distillation: add this many perturbed copies of each training "
    "example, labelled by the teacher (Tang et al. 2019: each word becomes "
    "[MASK] with p=0.1, then with p=0.25 a random 1-5-word n-gram is kept). "
    "Seeded by --random_seed.")

FLAGS = flags.FLAGS

InputError = command_line.InputError

# Flags that only task distillation uses.
TEACHER_ONLY_FLAGS = ("teacher_labels", "temperature", "soft_label_weight",
                      "hard_label_weight", "transfer_file", "augment_factor")

PREDICTIONS_FILE = "test_results.tsv"

# Flags without which the script cannot run (also for the Horovod wrapper).
REQUIRED_FLAGS = ("data_dir", "task_name", "vocab_file", "bert_config_file",
                  "output_dir")


# ---------------------------------------------------------------------------
# Model (the head and the losses are in bert_distillation/classifier_model.py).


def init_from_checkpoint(init_checkpoint, layer_map, skip_mismatched):
  """Loads the student from init_checkpoint; logs a pooler started fresh."""
  tvars = tf1.trainable_variables()
  loaded = student_init.init_student_from_checkpoint(
      tvars, init_checkpoint, layer_map, skip_mismatched)
  if not any(name.startswith("bert/pooler/") for name in loaded):
    tf1.logging.warning(
        "--init_checkpoint %s has no pooler (e.g. a BertForMaskedLM "
        "import): bert/pooler starts from random initialisation.",
        init_checkpoint)


def model_fn_builder(bert_config, num_outputs, regression, init_checkpoint,
                     layer_map, learning_rate, num_train_steps,
                     num_warmup_steps, distribution, stats, teacher=None):
  """Returns the Estimator model_fn; it records the parameter count in stats.

  teacher: None, or a dict with config, checkpoint, temperature,
  soft_weight and hard_weight (task distillation; training only).
  """

  def model_fn(features, labels, mode, params, config):
    """Builds the model and its train op or predictions."""
    # The labels travel in `features`; estimator_training.build_estimator
    # checks the graph against --output_dir's checkpoint (config.model_dir).
    del labels, params, config
    is_training = mode == tf.estimator.ModeKeys.TRAIN
    compute_type = precision.compute_type(FLAGS.precision)
    model = modeling.BertModel(
        config=bert_config, is_training=is_training,
        input_ids=features["input_ids"], input_mask=features["input_mask"],
        token_type_ids=features["segment_ids"], compute_type=compute_type)
    logits = classifier_model.classifier_logits(model.get_pooled_output(), num_outputs,
                               is_training, bert_config.initializer_range)
    stats["params"] = modeling.count_parameters(tf1.trainable_variables())
    # Under Horovod, rank 0 loads and BroadcastGlobalVariablesHook copies.
    if init_checkpoint and distribution.is_chief:
      init_from_checkpoint(init_checkpoint, layer_map,
                           FLAGS.init_skip_mismatched)

    if mode == tf.estimator.ModeKeys.PREDICT:
      predictions = {"logits": logits}
      if not regression:
        predictions["probabilities"] = tf.nn.softmax(logits, axis=-1)
      return tf.estimator.EstimatorSpec(mode, predictions=predictions)
    if not is_training:
      raise ValueError("Evaluation runs through predict: %s" % mode)

    teacher_output = None
    if teacher:
      teacher_output = classifier_model.teacher_logits(
          teacher["config"], features, num_outputs, compute_type,
          teacher["label_order"])
      # Every rank loads the teacher itself (its variables are local).
      teacher_graph.restore_teacher(teacher["checkpoint"])
    weights = {}
    if teacher:
      weights = {key: teacher[key] for key in ("temperature", "soft_weight",
                                               "hard_weight")}
    total, parts = classifier_model.classifier_loss(logits, features, regression,
                                   teacher_output, **weights)
    for name, value in parts.items():
      tf1.summary.scalar(name, value)
    tf1.add_to_collection(training_hooks.LOSS_COLLECTION, total)
    loss_scale = (optimization.DynamicLossScale()
                  if FLAGS.precision == "fp16" else None)
    train_op = optimization.create_optimizer(
        total, learning_rate, num_train_steps, num_warmup_steps, False,
        use_horovod=distribution.use_horovod,
        scale_learning_rate=distribution.scale_learning_rate,
        loss_scale=loss_scale, fp16_allreduce=distribution.fp16_allreduce)
    return tf.estimator.EstimatorSpec(mode, loss=total, train_op=train_op)

  return model_fn


# ---------------------------------------------------------------------------
# Input.


def train_input_fn_builder(arrays, batch_size, distribution):
  """Shuffled, repeated batches of this rank's shard of the examples."""

  def input_fn(params):
    del params
    dataset = tf.data.Dataset.from_tensor_slices(arrays)
    if distribution.size > 1:
      dataset = dataset.shard(distribution.size, distribution.rank)
    dataset = dataset.shuffle(len(arrays["input_ids"])).repeat()
    return dataset.batch(batch_size, drop_remainder=True)

  return input_fn


def ordered_input_fn_builder(arrays, batch_size):
  """Every example once, in order (evaluation and prediction)."""

  def input_fn(params):
    del params
    return tf.data.Dataset.from_tensor_slices(arrays).batch(batch_size)

  return input_fn


def predicted_logits(estimator, arrays, batch_size):
  """[n, num_outputs] logits of the latest checkpoint, in input order."""
  with naming_damaged_checkpoints():
    outputs = [prediction["logits"] for prediction in estimator.predict(
        ordered_input_fn_builder(arrays, batch_size))]
  return np.array(outputs, np.float64)


def naming_damaged_checkpoints():
  """Names a truncated checkpoint the run reads, instead of a traceback.

  The checkpoints of --init_checkpoint, --teacher_checkpoint and
  --output_dir (estimator_training.naming_damaged_files); the flags were
  checked before anything runs.
  """
  init_checkpoint = None
  if FLAGS.init_checkpoint:
    init_checkpoint = teacher_graph.resolve_checkpoint(
        FLAGS.init_checkpoint, "--init_checkpoint")
  return estimator_training.naming_damaged_files(
      FLAGS.output_dir, (("--init_checkpoint", init_checkpoint),
                         ("--teacher_checkpoint", FLAGS.teacher_checkpoint)))


# ---------------------------------------------------------------------------
# Checks and files.


def check_flags():
  """Validates flag combinations; raises InputError."""
  if not (FLAGS.do_train or FLAGS.do_eval or FLAGS.do_predict):
    raise InputError("At least one of --do_train, --do_eval or --do_predict "
                     "must be True.")
  for name in ("learning_rate", "num_train_epochs", "warmup_proportion",
               "temperature", "soft_label_weight", "hard_label_weight"):
    if not math.isfinite(FLAGS[name].value):
      raise InputError("--%s must be a finite number, got %s" % (
          name, FLAGS[name].value))
  for name in ("train_batch_size", "eval_batch_size", "predict_batch_size",
               "save_checkpoints_steps", "iterations_per_loop"):
    if FLAGS[name].value < 1:
      raise InputError("--%s must be at least 1, got %d" % (
          name, FLAGS[name].value))
  if FLAGS.max_seq_length < 3:
    raise InputError("--max_seq_length must be at least 3 ([CLS] a [SEP]), "
                     "got %d" % FLAGS.max_seq_length)
  if FLAGS.learning_rate <= 0 or not 0 <= FLAGS.warmup_proportion <= 1:
    raise InputError("--learning_rate must be positive and "
                     "--warmup_proportion between 0 and 1")
  if (FLAGS.num_train_steps < 0 or FLAGS.augment_factor < 0 or
      FLAGS.step_timeout_secs < 0 or FLAGS.num_train_epochs < 0):
    raise InputError("--num_train_steps, --num_train_epochs, "
                     "--augment_factor and --step_timeout_secs must be >= 0")
  if bool(FLAGS.teacher_config_file) != bool(FLAGS.teacher_checkpoint):
    raise InputError("Task distillation needs both --teacher_config_file and "
                     "--teacher_checkpoint")
  if not FLAGS.teacher_checkpoint:
    given = ["--" + name for name in TEACHER_ONLY_FLAGS if FLAGS[name].present]
    if given:
      raise InputError("%s only apply to task distillation: pass "
                       "--teacher_config_file and --teacher_checkpoint" %
                       ", ".join(given))
  elif not FLAGS.do_train:
    raise InputError("--teacher_checkpoint is used in training: pass "
                     "--do_train True")
  if FLAGS.temperature <= 0:
    raise InputError("--temperature must be positive, got %g" %
                     FLAGS.temperature)
  if FLAGS.soft_label_weight < 0 or FLAGS.hard_label_weight < 0:
    raise InputError("--soft_label_weight and --hard_label_weight must not be "
                     "negative")
  if FLAGS.teacher_checkpoint:
    distillation.check_some_loss([
        ("--soft_label_weight 0", FLAGS.soft_label_weight > 0),
        ("--hard_label_weight 0", FLAGS.hard_label_weight > 0)])
  if FLAGS.init_layer_map and not FLAGS.init_checkpoint:
    raise InputError("--init_layer_map needs --init_checkpoint (the teacher)")
  if tf.io.gfile.exists(FLAGS.output_dir) and not tf.io.gfile.isdir(
      FLAGS.output_dir):
    raise InputError("--output_dir %s is a file, not a folder" %
                     FLAGS.output_dir)
  checkpoint_usage.check_checkpoint_file(FLAGS.output_dir, "--output_dir")


def load_tokenizer(bert_config):
  """The FullTokenizer of --vocab_file, checked against the config."""
  try:
    tokenizer = tokenization.FullTokenizer(FLAGS.vocab_file,
                                           FLAGS.do_lower_case)
  except (ValueError, tf.errors.OpError) as error:
    raise InputError("--vocab_file: %s" % error) from None
  if len(tokenizer.vocab) > bert_config.vocab_size:
    raise InputError(
        "--vocab_file %s has %d tokens but --bert_config_file has vocab_size "
        "%d: use the vocabulary the model was trained with" % (
            FLAGS.vocab_file, len(tokenizer.vocab), bert_config.vocab_size))
  missing = [token for token in ("[CLS]", "[SEP]") + (
      (classifier_data.MASK_TOKEN,) if FLAGS.augment_factor else ())
             if token not in tokenizer.vocab]
  if missing:
    raise InputError("--vocab_file %s has no %s token" % (
        FLAGS.vocab_file, " or ".join(missing)))
  return tokenizer


def load_teacher(bert_config, task, labels):
  """The teacher's settings for model_fn_builder, checked; or None."""
  if not FLAGS.teacher_checkpoint:
    return None
  teacher_config, checkpoint = teacher_graph.load_teacher(
      FLAGS.teacher_config_file, FLAGS.teacher_checkpoint)
  teacher_graph.check_teacher_matches_student(
      teacher_config, bert_config, max_seq_length=FLAGS.max_seq_length)
  names = dict(tf.train.list_variables(checkpoint))
  if "output_weights" not in names:
    raise InputError(
        "--teacher_checkpoint %s has no classifier (output_weights): the "
        "teacher must be a run_classifier.py --output_dir fine-tuned on "
        "--task_name %s" % (checkpoint, task.name))
  given = (classifier_data.parse_label_list(FLAGS.teacher_labels,
                                            "--teacher_labels")
           if FLAGS.teacher_labels else None)
  teacher_labels = classifier_data.teacher_labels(
      task, classifier_data.read_task_file(os.path.dirname(checkpoint)),
      given, checkpoint, labels)
  outputs = names["output_weights"][0]
  if outputs != (1 if task.regression else len(teacher_labels)):
    raise InputError(
        "--teacher_checkpoint %s has %d outputs, but its labels are %s" % (
            checkpoint, outputs, ", ".join(teacher_labels) or
            "a regression's one score"))
  return {"config": teacher_config, "checkpoint": checkpoint,
          "label_order": (None if task.regression else
                          classifier_data.label_order(teacher_labels, labels,
                                                      checkpoint)),
          "temperature": FLAGS.temperature,
          "soft_weight": FLAGS.soft_label_weight,
          "hard_weight": FLAGS.hard_label_weight}


def training_examples(task):
  """train.tsv's examples, then the transfer rows, then augmented copies.

  The texts of every file must match train.tsv's (text_b or not), and the
  training set must hold two labels or more and fit in the input graph.
  """
  path = classifier_data.split_path(task, FLAGS.data_dir, "train")
  examples = classifier_data.read_examples(task, "train", path)
  classifier_data.check_label_variety(examples)
  extra = []
  if FLAGS.transfer_file:
    extra += classifier_data.unlabelled(classifier_data.read_examples(
        task, "train", FLAGS.transfer_file, labelled=False))
    classifier_data.check_same_texts(extra, examples[0].text_b is not None,
                                     path)
  classifier_data.check_training_size(len(examples), len(extra),
                                      FLAGS.augment_factor,
                                      FLAGS.max_seq_length)
  if FLAGS.augment_factor:
    extra += classifier_data.augment_examples(
        examples, FLAGS.augment_factor, FLAGS.random_seed or 0)
  tf1.logging.info("Training examples: %d from %s, %d unlabelled (transfer "
                   "file and augmented copies)", len(examples), path,
                   len(extra))
  return examples, extra


def model_reads_pairs(train_examples):
  """(whether the model reads text_b or None if unknown, what says so).

  The saved task.json says, when it does, and train.tsv (when read) must
  agree with it; the other files are checked against the answer.
  """
  pairs = (classifier_data.saved_task(FLAGS.output_dir) or {}).get("pairs")
  pairs_from = os.path.join(FLAGS.output_dir, classifier_data.TASK_FILE)
  if not train_examples:
    return pairs, pairs_from
  if pairs is not None:
    classifier_data.check_same_texts(train_examples, pairs, pairs_from)
  return (train_examples[0].text_b is not None,
          classifier_data.source_file(train_examples))


def write_task_file(output_dir, task, labels, pairs):
  """Saves the task, its label list and text_b or not (task.json)."""
  estimator_training.write_atomically(
      os.path.join(output_dir, classifier_data.TASK_FILE),
      json.dumps(classifier_data.task_description(task, labels, pairs),
                 indent=2) + "\n")


def write_predictions(output_dir, logits, regression):
  """test_results.tsv: class probabilities (or the score) per example."""
  if regression:
    rows = logits[:, :1]
  else:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    rows = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
  text = "".join("\t".join(str(float(value)) for value in row) + "\n"
                 for row in rows)
  estimator_training.write_atomically(
      os.path.join(output_dir, PREDICTIONS_FILE), text)


def evaluation_results(task, logits, arrays, global_step):
  """eval_results.txt's metrics for the dev logits."""
  if task.regression:
    results = classifier_metrics.regression_metrics(logits[:, 0],
                                                    arrays["label_ids"])
  else:
    results = classifier_metrics.classification_metrics(
        logits, arrays["label_ids"], task.metrics)
  # Google's `loss` is the mean loss over the evaluation batches.
  results["loss"] = results["eval_loss"]
  results["global_step"] = global_step
  return results


# ---------------------------------------------------------------------------
# The run.


def run(distribution):
  """Trains, evaluates and predicts as the flags say; this process's part."""
  tf1.logging.set_verbosity(tf1.logging.INFO)
  check_flags()
  precision.check_hardware(FLAGS.precision)
  task = classifier_data.get_task(FLAGS.task_name)
  bert_config = estimator_training.load_bert_config(FLAGS.bert_config_file,
                                                    FLAGS.max_seq_length)
  tokenizer = load_tokenizer(bert_config)
  layer_map = student_init.parse_layer_map(FLAGS.init_layer_map)
  init_checkpoint = (teacher_graph.resolve_checkpoint(FLAGS.init_checkpoint,
                                                      "--init_checkpoint")
                     if FLAGS.init_checkpoint else None)
  # Before anything is written into --output_dir.
  classifier_data.check_classifier_output_dir(FLAGS.output_dir)
  if not FLAGS.do_train:
    classifier_data.check_trained_classifier(FLAGS.output_dir,
                                             init_checkpoint)

  train_examples, extra_examples = (training_examples(task) if FLAGS.do_train
                                    else (None, []))
  labels, labels_from = classifier_data.choose_labels(
      task, FLAGS.output_dir, train_examples)
  pairs, pairs_from = model_reads_pairs(train_examples)
  teacher = load_teacher(bert_config, task, labels)
  num_outputs = 1 if task.regression else len(labels)

  def split_examples(split, labelled=True):
    examples = classifier_data.read_examples(
        task, split, classifier_data.split_path(task, FLAGS.data_dir, split),
        labelled=labelled)
    if pairs is not None:
      classifier_data.check_same_texts(examples, pairs, pairs_from)
    return examples

  def split_arrays(examples):
    classifier_data.check_labels(examples, task, labels, labels_from)
    return classifier_data.features(examples, tokenizer, FLAGS.max_seq_length,
                                    labels, task.regression)

  # Rank 0 evaluates and predicts; their files are checked before training.
  if FLAGS.do_eval and distribution.is_chief:
    dev_arrays = split_arrays(split_examples("dev"))
  if FLAGS.do_predict and distribution.is_chief:
    test_arrays = classifier_data.features(
        split_examples("test", labelled=False), tokenizer,
        FLAGS.max_seq_length, labels, task.regression)

  if distribution.is_chief:
    tf.io.gfile.makedirs(FLAGS.output_dir)
    temporary_files.remove_tensorflow_temporaries(FLAGS.output_dir)
    # A task.json without a checkpoint is from a run that stopped before
    # its first one: replaced, as the data may have been fixed since.
    if FLAGS.do_train and not classifier_data.latest_checkpoint(
        FLAGS.output_dir):
      write_task_file(FLAGS.output_dir, task, labels, pairs)
  # Every rank checks; only rank 0, and only when training, writes it.
  output_config.save_or_check_config(
      FLAGS.output_dir, FLAGS.bert_config_file, "--bert_config_file",
      write=distribution.is_chief and FLAGS.do_train)

  stats = {}
  num_train_steps = num_warmup_steps = 0
  if FLAGS.do_train:
    train_arrays = split_arrays(train_examples + extra_examples)
    # As in Google's script, unless --num_train_steps says otherwise; under
    # Horovod every process does its share, as in stage V.
    total_steps = FLAGS.num_train_steps or int(
        len(train_examples + extra_examples) / FLAGS.train_batch_size *
        FLAGS.num_train_epochs)
    num_train_steps = total_steps // distribution.size
    num_warmup_steps = int(num_train_steps * FLAGS.warmup_proportion)
    if num_train_steps < 1:
      raise InputError(
          "Training would take %d steps per process (%d examples, "
          "--train_batch_size %d, --num_train_epochs %g, %d processes): "
          "raise --num_train_epochs or set --num_train_steps" % (
              num_train_steps, len(train_examples + extra_examples),
              FLAGS.train_batch_size, FLAGS.num_train_epochs,
              distribution.size))
  model_fn = model_fn_builder(
      bert_config, num_outputs, task.regression, init_checkpoint, layer_map,
      FLAGS.learning_rate, num_train_steps, num_warmup_steps, distribution,
      stats, teacher)
  estimator = estimator_training.build_estimator(
      model_fn, distribution, FLAGS.output_dir, FLAGS.save_checkpoints_steps,
      FLAGS.iterations_per_loop, FLAGS.random_seed)

  if FLAGS.do_train:
    train(estimator, train_arrays, num_train_steps, distribution, stats)
  if not distribution.is_chief:
    return
  if FLAGS.do_eval:
    logits = predicted_logits(estimator, dev_arrays, FLAGS.eval_batch_size)
    estimator_training.write_eval_results(
        FLAGS.output_dir, evaluation_results(
            task, logits, dev_arrays,
            estimator_training.checkpoint_step(FLAGS.output_dir)))
  if FLAGS.do_predict:
    write_predictions(FLAGS.output_dir,
                      predicted_logits(estimator, test_arrays,
                                       FLAGS.predict_batch_size),
                      task.regression)


def train(estimator, train_arrays, num_train_steps, distribution, stats):
  """Trains (or resumes) to num_train_steps; rank 0 writes train_stats."""
  throughput = training_hooks.ThroughputHook(
      FLAGS.train_batch_size * distribution.size, FLAGS.iterations_per_loop)
  hooks = [throughput, training_hooks.VariablesChecksumHook(distribution.rank)]
  if FLAGS.step_timeout_secs:
    hooks.insert(0, training_hooks.StepTimeoutHook(
        training_hooks.Watchdog(), FLAGS.step_timeout_secs,
        estimator_training.step_timeout_message(
            distribution, "training", FLAGS.step_timeout_secs)))
  with naming_damaged_checkpoints():
    estimator_training.train_to_step(
        estimator, train_input_fn_builder(train_arrays, FLAGS.train_batch_size,
                                          distribution),
        num_train_steps, hooks + distribution.train_hooks, distribution,
        FLAGS.output_dir, warmup_flag="--warmup_proportion")
  if distribution.is_chief and throughput.steps:
    estimator_training.write_train_stats(
        FLAGS.output_dir, stats["params"], throughput, distribution.size,
        FLAGS.precision)


def main(_):
  run(estimator_training.Distribution())


if __name__ == "__main__":
  for name in REQUIRED_FLAGS:
    flags.mark_flag_as_required(name)
  command_line.run(main)
