# coding=utf-8
"""A student cut out of the teacher: layers, heads, neurons and channels.

The library behind prune_checkpoint.py. The student's bert_config.json may
ask for fewer layers, fewer attention heads (of the teacher's head size),
a smaller intermediate_size and a smaller hidden_size; every other key that
shapes a weight must equal the teacher's. Which units to keep is decided
by their importance, measured by running the teacher over a sample of the
user's data (Minitron, Muralidharan et al. 2024: activation-based scores,
one forward pass, no gradient), averaged over the real tokens (input_mask
1) of the sample:

  * a head: the mean L2 norm of its context vector (its slice of the
    attention output before the output dense layer);
  * an FFN neuron: the mean |activation| after the GELU;
  * a hidden channel: the mean |value| after LayerNorm, summed over every
    LayerNorm of the residual stream the student keeps (the embeddings',
    then the two of each kept layer);
  * a layer (without a layer map): Block Influence (Men et al. 2024,
    ShortGPT), 1 - cos(layer input, layer output) per token. The last layer
    is always kept (the pooler and the heads were trained on its output);
    the others by influence, and they keep the teacher's order.

Heads and neurons are chosen in each kept layer on its own; channels once,
for every embedding, LayerNorm, projection, pooler, masked-LM transform,
next-sentence head and classifier. Kept units stay in the teacher's order,
so a student with the teacher's own config is the teacher, bit for bit.
"""

import collections
import os
import random
import re
import shutil

import numpy as np
import tensorflow as tf

from bert_distillation import checkpoint_conversion
from bert_distillation import classifier_data
from bert_distillation import command_line
from bert_distillation import record_format
from bert_distillation import teacher_graph
from bert_distillation import temporary_files
from bert_distillation import training_input
import modeling
import tokenization

tf1 = tf.compat.v1

InputError = command_line.InputError

# Config keys that size a weight without being pruned: they must match.
SHARED_KEYS = ("vocab_size", "max_position_embeddings", "type_vocab_size",
               "hidden_act")

# The axes a weight can be pruned along.
HIDDEN, HEADS, NEURONS = "hidden", "heads", "neurons"

# What each axis of a variable indexes, by the end of its Google name (the
# first rule that matches wins); None: not pruned.
AXES = (
    (r"LayerNorm/(gamma|beta)$", (HIDDEN,)),
    (r"_embeddings$", (None, HIDDEN)),
    (r"attention/self/(query|key|value)/kernel$", (HIDDEN, HEADS)),
    (r"attention/self/(query|key|value)/bias$", (HEADS,)),
    (r"attention/output/dense/kernel$", (HEADS, HIDDEN)),
    (r"intermediate/dense/kernel$", (HIDDEN, NEURONS)),
    (r"intermediate/dense/bias$", (NEURONS,)),
    (r"layer_\d+/output/dense/kernel$", (NEURONS, HIDDEN)),
    (r"(pooler|transform)/dense/kernel$", (HIDDEN, HIDDEN)),
    (r"dense/bias$", (HIDDEN,)),
    (r"output_weights$", (None, HIDDEN)),
    (r"output_bias$", (None,)),
)

_LAYER = re.compile(r"^bert/encoder/layer_(\d+)/")

# The model inputs of a calibration sample.
INPUT_NAMES = ("input_ids", "input_mask", "segment_ids")
# What prune_checkpoint.py writes next to the checkpoint: what was kept.
REPORT_FILE = "pruning.json"

# Importance of every unit of the teacher (means over the sample's tokens):
# heads [layers, heads], neurons [layers, intermediate], channels
# [1 + 2 * layers, hidden] (the embeddings' LayerNorm, then each layer's
# attention and output LayerNorms), influence [layers], and the number of
# tokens they were measured on.
Importance = collections.namedtuple(
    "Importance", "heads neurons channels influence tokens")

# What the student keeps of the teacher: the teacher layer of each student
# layer, the heads and neurons kept in each student layer, and the hidden
# channels.
Selection = collections.namedtuple("Selection",
                                   "layer_map heads neurons channels")


def head_size(config):
  """The width of one attention head."""
  return config.hidden_size // config.num_attention_heads


def check_student_config(teacher, student, flag="--student_config_file"):
  """Raises InputError unless `student` can be cut out of `teacher`."""
  for key in SHARED_KEYS:
    if getattr(student, key) != getattr(teacher, key):
      raise InputError(
          "%s has %s %s but the teacher (--bert_config_file) has %s: pruning "
          "keeps it, set it to the teacher's" % (
              flag, key, getattr(student, key), getattr(teacher, key)))
  for key in ("num_hidden_layers", "num_attention_heads", "intermediate_size",
              "hidden_size"):
    if getattr(student, key) > getattr(teacher, key):
      raise InputError(
          "%s has %s %d, more than the teacher's %d (--bert_config_file): "
          "pruning can only remove" % (flag, key, getattr(student, key),
                                       getattr(teacher, key)))
  size = head_size(teacher)
  if (student.hidden_size % student.num_attention_heads or
      head_size(student) != size):
    if student.hidden_size % size == 0:
      fix = "set num_attention_heads to %d" % (student.hidden_size // size)
    else:
      fix = ("make hidden_size a multiple of %d (num_attention_heads = "
             "hidden_size / %d)" % (size, size))
    raise InputError(
        "%s: hidden_size %d with num_attention_heads %d gives heads of %s, "
        "but the teacher's heads are %d wide and pruning keeps whole heads: "
        "%s" % (flag, student.hidden_size, student.num_attention_heads,
                "%g" % (student.hidden_size / student.num_attention_heads),
                size, fix))


def check_layer_map(layer_map, teacher, student, flag="--layer_map"):
  """Raises InputError unless layer_map gives a teacher layer per student one."""
  if len(layer_map) != student.num_hidden_layers:
    raise InputError("%s has %d entries but the student has %d layers" % (
        flag, len(layer_map), student.num_hidden_layers))
  outside = [layer for layer in layer_map
             if not 0 <= layer < teacher.num_hidden_layers]
  if outside:
    raise InputError("%s names teacher layers %s, but the teacher has layers "
                     "0..%d" % (flag, outside, teacher.num_hidden_layers - 1))


# ---------------------------------------------------------------------------
# Measuring importance.


def _inner_tensors(graph, model_scope, layers):
  """Per layer: (head contexts, GELU outputs, attention LayerNorm output).

  Read off the graph that modeling.py builds (fp32: no casts between), as
  the inputs of the layer's dense matmuls; all are [batch * seq, width].
  """
  found = []
  for layer in range(layers):
    scope = "%s/encoder/layer_%d/" % (model_scope, layer)
    found.append(tuple(
        graph.get_operation_by_name(scope + name + "/MatMul").inputs[0]
        for name in ("attention/output/dense", "output/dense",
                     "intermediate/dense")))
  return found


def _importance_sums(graph, model, config, input_mask):
  """Graph tensors: per-batch sums over real tokens of every score."""
  mask = tf.reshape(tf.cast(input_mask, tf.float32), [-1, 1])
  hidden = [tf.reshape(model.get_embedding_output(), [-1, config.hidden_size])]
  hidden += [tf.reshape(layer, [-1, config.hidden_size])
             for layer in model.get_all_encoder_layers()]
  heads, neurons, channels, influence = [], [], [hidden[0]], []
  for layer, (context, activation, attention_norm) in enumerate(
      _inner_tensors(graph, "bert", config.num_hidden_layers)):
    context = tf.reshape(context, [-1, config.num_attention_heads,
                                   head_size(config)])
    heads.append(tf.norm(context, axis=-1))
    neurons.append(tf.abs(activation))
    channels += [attention_norm, hidden[layer + 1]]
    cosine = tf.reduce_sum(
        tf.nn.l2_normalize(hidden[layer], -1) *
        tf.nn.l2_normalize(hidden[layer + 1], -1), -1, keepdims=True)
    influence.append(1.0 - cosine)

  def token_sum(values):
    return tf.reduce_sum(values * mask, axis=0)

  return {
      "heads": tf.stack([token_sum(value) for value in heads]),
      "neurons": tf.stack([token_sum(value) for value in neurons]),
      "channels": tf.stack([token_sum(tf.abs(value)) for value in channels]),
      "influence": tf.concat([token_sum(value) for value in influence], 0),
      "tokens": tf.reduce_sum(mask),
  }


def measure_importance(config, tensors, arrays, batch_size):
  """The Importance of every unit of the teacher over `arrays`.

  Args:
    config: the teacher's BertConfig.
    tensors: {Google name: array} of the teacher (bert/... is used).
    arrays: {"input_ids", "input_mask", "segment_ids": int [n, seq]}.
    batch_size: sequences per forward pass.
  """
  seq_length = arrays["input_ids"].shape[1]
  with tf.Graph().as_default() as graph:
    inputs = {name: tf1.placeholder(tf.int32, [None, seq_length], name=name)
              for name in INPUT_NAMES}
    model = modeling.BertModel(
        config=config, is_training=False, input_ids=inputs["input_ids"],
        input_mask=inputs["input_mask"],
        token_type_ids=inputs["segment_ids"], scope="bert")
    sums = _importance_sums(graph, model, config, inputs["input_mask"])
    with tf1.Session() as session:
      for var in tf1.global_variables():
        var.load(tensors[var.op.name], session)
      totals = None
      for start in range(0, len(arrays["input_ids"]), batch_size):
        feed = {inputs[name]: arrays[name][start:start + batch_size]
                for name in inputs}
        batch = session.run(sums, feed)
        totals = batch if totals is None else {
            name: totals[name] + batch[name] for name in totals}
  tokens = max(float(totals.pop("tokens")), 1.0)
  return Importance(tokens=int(tokens), **{
      name: np.asarray(value, np.float64) / tokens
      for name, value in totals.items()})


# ---------------------------------------------------------------------------
# Choosing what to keep.


def top_units(scores, count):
  """The indices of the `count` highest scores, in ascending index order.

  Ties go to the lower index, so equal scores keep the teacher's order.
  """
  order = np.argsort(-np.asarray(scores), kind="stable")
  return sorted(int(index) for index in order[:count])


def choose_layers(influence, count):
  """The teacher layers to keep: the last one, then the most influential."""
  last = len(influence) - 1
  others = top_units(np.asarray(influence)[:last], count - 1)
  return others + [last]


def select(importance, student, layer_map=None):
  """The Selection that the student's config and the scores give."""
  if not layer_map:
    layer_map = choose_layers(importance.influence, student.num_hidden_layers)
  heads = [top_units(importance.heads[layer], student.num_attention_heads)
           for layer in layer_map]
  neurons = [top_units(importance.neurons[layer], student.intermediate_size)
             for layer in layer_map]
  # The embeddings' LayerNorm, and both LayerNorms of every kept layer.
  rows = [0] + [row for layer in layer_map
                for row in (1 + 2 * layer, 2 + 2 * layer)]
  channels = top_units(importance.channels[rows].sum(axis=0),
                       student.hidden_size)
  return Selection(list(layer_map), heads, neurons, channels)


# ---------------------------------------------------------------------------
# Cutting the weights.


def axes_of(name):
  """What each axis of variable `name` indexes (see AXES)."""
  for pattern, axes in AXES:
    if re.search(pattern, name):
      return axes
  raise ValueError("No pruning rule for variable %s" % name)


def head_columns(heads, size):
  """The columns of the kept heads in an attention projection."""
  return [head * size + offset for head in heads for offset in range(size)]


def cut(value, axes, indices):
  """`value` with each axis cut down to the indices of its kind."""
  for axis, kind in enumerate(axes):
    if kind is not None:
      value = np.take(value, indices[kind], axis=axis)
  return value


def prune_tensors(tensors, teacher, selection):
  """{Google name: array} of the student cut out of the teacher's tensors.

  Student layer i comes from teacher layer selection.layer_map[i]; every
  other variable (embeddings, pooler, heads, classifier) by name.
  """
  pruned = {}
  for name, value in tensors.items():
    match = _LAYER.match(name)
    if match:
      continue
    pruned[name] = cut(value, axes_of(name), {HIDDEN: selection.channels})
  for student_layer, teacher_layer in enumerate(selection.layer_map):
    indices = {
        HIDDEN: selection.channels,
        HEADS: head_columns(selection.heads[student_layer],
                            head_size(teacher)),
        NEURONS: selection.neurons[student_layer],
    }
    prefix = "bert/encoder/layer_%d/" % teacher_layer
    for name, value in tensors.items():
      if name.startswith(prefix):
        student_name = "bert/encoder/layer_%d/%s" % (student_layer,
                                                    name[len(prefix):])
        pruned[student_name] = cut(value, axes_of(name), indices)
  return pruned


# ---------------------------------------------------------------------------
# The calibration sample.


def _padded(rows, length):
  """int32 [len(rows), length]: the rows, zero-padded on the right."""
  array = np.zeros([len(rows), length], np.int32)
  for index, row in enumerate(rows):
    array[index, :len(row)] = row
  return array


def records_sample(input_file, count):
  """The first `count` records of --input_file (stage III), as arrays.

  Returns {input_ids, input_mask, segment_ids: int32 [n, seq]}; files of
  different max_seq_length are padded to the longest.
  """
  rows = {name: [] for name in INPUT_NAMES}
  for path in training_input.expand_files(input_file, "--input_file"):
    try:
      examples = record_format.first_examples(
          path, count - len(rows["input_ids"]))
    except ValueError as error:
      raise InputError("--input_file: %s" % error) from None
    for example in examples:
      feature = example.features.feature
      missing = [name for name in INPUT_NAMES if name not in feature]
      if missing:
        raise InputError(
            "--input_file %s: its records lack %s; pass stage III's "
            "pre-training records" % (path, ", ".join(missing)))
      for name in INPUT_NAMES:
        rows[name].append(list(feature[name].int64_list.value))
    if len(rows["input_ids"]) >= count:
      break
  if not rows["input_ids"]:
    raise InputError("--input_file %s holds no records" % input_file)
  length = max(len(row) for row in rows["input_ids"])
  return {name: _padded(values, length) for name, values in rows.items()}


def task_sample(task_name, data_dir, vocab_file, do_lower_case,
                max_seq_length, count, seed=0):
  """`count` examples of a run_classifier.py task's train.tsv, as arrays.

  Drawn at random with a fixed seed (task files are often sorted by label),
  and featurized as run_classifier.py does. Labels are not read.
  """
  task = classifier_data.get_task(task_name)
  path = classifier_data.split_path(task, data_dir, "train")
  examples = classifier_data.read_examples(task, "train", path,
                                           labelled=False)
  if len(examples) > count:
    examples = random.Random(seed).sample(examples, count)
  try:
    tokenizer = tokenization.FullTokenizer(vocab_file, do_lower_case)
  except (ValueError, tf.errors.OpError) as error:
    raise InputError("--vocab_file: %s" % error) from None
  arrays = classifier_data.features(examples, tokenizer, max_seq_length, [],
                                    task.regression)
  return {name: arrays[name] for name in INPUT_NAMES}


def check_sample(arrays, config, source):
  """Raises InputError when the sample does not fit the teacher's config."""
  length = arrays["input_ids"].shape[1]
  if length > config.max_position_embeddings:
    raise InputError("%s has sequences of %d tokens, more than the teacher's "
                     "max_position_embeddings %d" % (
                         source, length, config.max_position_embeddings))
  if arrays["input_ids"].max() >= config.vocab_size:
    raise InputError("%s holds token id %d, outside the teacher's vocab_size "
                     "%d: use the teacher's vocabulary" % (
                         source, arrays["input_ids"].max(),
                         config.vocab_size))


# ---------------------------------------------------------------------------
# Reading the teacher and writing the student.


def read_teacher(init_checkpoint, config):
  """(checkpoint prefix, {Google name: array}) of the teacher, checked.

  A classifier (output_weights, output_bias of run_classifier.py) must fit
  the config and the task.json next to it.
  """
  checkpoint = teacher_graph.resolve_checkpoint(init_checkpoint,
                                                "--init_checkpoint")
  tensors = checkpoint_conversion.model_variables(checkpoint)
  classifier = checkpoint_conversion.CLASSIFIER_NAMES
  if any(name in tensors for name in classifier):
    checkpoint_conversion.classifier_config(tensors, config, checkpoint)
  checkpoint_conversion.check_google_tensors(
      {name: value for name, value in tensors.items()
       if name not in classifier}, config,
      "--init_checkpoint %s (with --bert_config_file)" % checkpoint)
  return checkpoint, tensors


def check_output_dir(output_dir):
  """Raises InputError unless output_dir is new or an empty folder."""
  if os.path.exists(output_dir) and (not os.path.isdir(output_dir) or
                                     os.listdir(output_dir)):
    raise InputError("--output_dir %s already exists and is not an empty "
                     "folder: name a new one" % output_dir)


def write_student(output_dir, config, tensors, teacher_folder, report):
  """Writes the release folder: checkpoint, config, vocab.txt, task.json.

  vocab.txt and task.json are copied when the teacher's folder has them.
  Everything is written to a temporary folder renamed at the end.
  """
  temp_dir = checkpoint_conversion.temporary_folder(output_dir)
  try:
    vocab_file = os.path.join(teacher_folder, "vocab.txt")
    checkpoint_conversion.write_google(
        temp_dir, config.to_dict(), tensors,
        vocab_file if os.path.exists(vocab_file) else None)
    task_file = os.path.join(teacher_folder, classifier_data.TASK_FILE)
    if os.path.exists(task_file):
      shutil.copyfile(task_file,
                      os.path.join(temp_dir, classifier_data.TASK_FILE))
    checkpoint_conversion.write_json(os.path.join(temp_dir, REPORT_FILE),
                                     report)
    checkpoint_conversion.publish(temp_dir, output_dir)
  finally:
    temporary_files.discard(temp_dir)


def prune(teacher_config, checkpoint, tensors, student_config, arrays,
          layer_map, batch_size):
  """Measures the teacher on `arrays` and cuts the student out of it.

  Returns (student tensors, Selection, Importance).
  """
  importance = measure_importance(teacher_config, tensors, arrays, batch_size)
  selection = select(importance, student_config, layer_map)
  tf1.logging.info("Cut out of %s: teacher layers %s; heads %s", checkpoint,
                   selection.layer_map, selection.heads)
  return (prune_tensors(tensors, teacher_config, selection), selection,
          importance)
