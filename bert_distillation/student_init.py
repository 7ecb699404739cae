"""Initialises a student BERT from a (teacher) checkpoint, by name or by layer.

--init_layer_map "0,2,4,7,9,11" starts student layer i from teacher layer
map[i]; everything else (embeddings, pooler, heads) loads by name.
"""

import re

import tensorflow as tf

from bert_distillation import checkpoint_usage
from bert_distillation import command_line

tf1 = tf.compat.v1

InputError = command_line.InputError

# Names optimization.py gives the Adam moments of a variable.
OPTIMIZER_SLOT_SUFFIXES = ("/adam_m", "/adam_v")


def parse_layer_map(text, flag_name="--init_layer_map"):
  """Parses a layer map flag ("0,2,4") into a list of ints ([] if empty)."""
  if not text.strip():
    return []
  try:
    return [int(part) for part in text.split(",")]
  except ValueError:
    raise InputError("%s must be comma-separated integers, got %r" % (
        flag_name, text)) from None


def checkpoint_name_for(student_name, layer_map):
  """The checkpoint variable that initialises `student_name`."""
  match = re.match(r"^(.*/encoder/)layer_(\d+)(/.*)$", student_name)
  if not layer_map or not match:
    return student_name
  return "%slayer_%d%s" % (match.group(1), layer_map[int(match.group(2))],
                           match.group(3))


def init_student_from_checkpoint(tvars, init_checkpoint, layer_map=None,
                                 skip_mismatched=False):
  """Initialises the student's variables from a (teacher) checkpoint.

  Without layer_map, variables load by name (the original behaviour). With
  it, student layer i loads teacher layer layer_map[i]; other variables
  (embeddings, pooler, heads) load by name. Variables that the checkpoint
  lacks keep their random initialisation (and are logged).

  Returns {student variable name: checkpoint name} of what was loaded.

  Raises:
    InputError: on a shape mismatch (unless skip_mismatched), or a layer map
      that does not fit the student or the teacher.
  """
  checkpoint_shapes = dict(tf.train.list_variables(init_checkpoint))
  layer_map = layer_map or []
  if layer_map:
    student_layers = {int(m.group(1)) for m in (
        re.search(r"/encoder/layer_(\d+)/", var.name) for var in tvars) if m}
    teacher_layers = {int(m.group(1)) for m in (
        re.search(r"/encoder/layer_(\d+)/", name)
        for name in checkpoint_shapes) if m}
    if len(layer_map) != len(student_layers):
      raise InputError(
          "--init_layer_map has %d entries but the student (--bert_config_file)"
          " has %d layers" % (len(layer_map), len(student_layers)))
    unknown = sorted(set(layer_map) - teacher_layers)
    if unknown:
      raise InputError(
          "--init_layer_map names teacher layers %s, but --init_checkpoint %s "
          "has layers 0..%d" % (unknown, init_checkpoint,
                                max(teacher_layers or {-1})))

  loaded, missing, mismatched = {}, [], []
  for var in tvars:
    name = re.sub(r":\d+$", "", var.name)
    source = checkpoint_name_for(name, layer_map)
    if source not in checkpoint_shapes:
      missing.append(name)
    elif list(checkpoint_shapes[source]) != var.shape.as_list():
      mismatched.append("%s: student %s, checkpoint %s %s" % (
          name, var.shape.as_list(), source, list(checkpoint_shapes[source])))
    else:
      # One call per variable: a teacher layer may feed several students.
      tf1.train.init_from_checkpoint(init_checkpoint, {source: var})
      loaded[name] = source

  if mismatched and not skip_mismatched:
    raise InputError(
        "--init_checkpoint %s does not fit the student (--bert_config_file); "
        "shape mismatch: %s. Pass --init_skip_mismatched to leave these "
        "variables randomly initialised." % (
            init_checkpoint, checkpoint_usage.first_and_count(mismatched)))
  for name, source in sorted(loaded.items()):
    tf1.logging.info("  init %s <- %s", name, source)
  if mismatched:
    tf1.logging.warning("Shape mismatch, left random (--init_skip_mismatched)"
                        ":\n  %s", "\n  ".join(mismatched))
  if missing:
    tf1.logging.warning("Not in --init_checkpoint, left random: %s", missing)
  # Loading part of a bigger checkpoint may be meant (a smaller student),
  # but say which part was left out.
  scopes = sorted({name.split("/")[0] + "/" for name in loaded})
  unused = checkpoint_usage.unused_variables(init_checkpoint,
                                             loaded.values(), scopes)
  if unused:
    tf1.logging.warning(
        "Left out of the student, not loaded from --init_checkpoint %s (%d "
        "variables): %s", init_checkpoint, len(unused),
        checkpoint_usage.describe_names(
            unused, checkpoint_usage.model_variable_names(init_checkpoint,
                                                          scopes)))
  tf1.logging.info("Initialised %d of %d variables from %s", len(loaded),
                   len(tvars), init_checkpoint)
  return loaded


def checkpoint_differences(variables, checkpoint):
  """Lists how `checkpoint` differs from the model of `variables`.

  Compares names and shapes: a model variable the checkpoint lacks or holds
  in another shape (restoring would fail, or load the wrong thing), and a
  checkpoint variable under the model's scopes (e.g. "bert/", "cls/") that
  the model lacks (restoring would silently drop it). Adam slots that only
  the checkpoint holds (it was saved by training; evaluation has none) are
  ignored. Returns [] when the checkpoint fits.
  """
  checkpoint_shapes = dict(tf.train.list_variables(checkpoint))
  model_shapes = {re.sub(r":\d+$", "", var.name): var.shape.as_list()
                  for var in variables}
  differences, reported = [], set()
  for name, shape in sorted(model_shapes.items()):
    base = re.sub("(%s)$" % "|".join(OPTIMIZER_SLOT_SUFFIXES), "", name)
    if base in reported:
      continue  # The Adam slots of a variable already listed.
    if name not in checkpoint_shapes:
      differences.append("%s %s: not in the checkpoint" % (name, shape))
    elif list(checkpoint_shapes[name]) != shape:
      differences.append("%s: model %s, checkpoint %s" % (
          name, shape, list(checkpoint_shapes[name])))
    else:
      continue
    reported.add(name)
  scopes = {name.split("/")[0] for name in model_shapes if "/" in name}
  for name, shape in sorted(checkpoint_shapes.items()):
    if (name.split("/")[0] in scopes and name not in model_shapes
        and not name.endswith(OPTIMIZER_SLOT_SUFFIXES)):
      differences.append("%s %s: in the checkpoint, not in the model" % (
          name, list(shape)))
  return differences
