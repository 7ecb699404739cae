# coding=utf-8
"""Which variables of a checkpoint a model left unused, said in one line.

Variables load by name, so a teacher config with fewer layers than its
checkpoint loads without an error and labels with part of the teacher.
check_every_teacher_variable_used() stops such a run: every variable of the
teacher's encoder and heads must be used. A student may load part of a
bigger checkpoint on purpose; student_init logs what it left out with
unused_variables() and describe_names().

check_checkpoint_file() refuses a folder whose `checkpoint` file names a
checkpoint that is not there.
"""

import re

import tensorflow as tf

from bert_distillation import command_line

InputError = command_line.InputError

# What training adds to a checkpoint besides the model: Adam's moments, the
# step counter, the fp16 loss scale and stage V's hidden-state projection
# (distillation.DISTILLATION_SCOPE).
TRAINING_ONLY_SUFFIXES = ("/adam_m", "/adam_v")
TRAINING_ONLY_NAMES = ("global_step",)
TRAINING_ONLY_PREFIXES = ("loss_scale/", "distillation/")
# The scopes of BERT's encoder (and embeddings, pooler) and of its heads.
MODEL_SCOPES = ("bert/", "cls/")

_LAYER = re.compile(r"^(.*/encoder/)layer_(\d+)/(.*)$")


def is_training_only(name):
  """Whether a checkpoint variable is training state, not part of the model."""
  return (name.endswith(TRAINING_ONLY_SUFFIXES) or name in TRAINING_ONLY_NAMES
          or name.startswith(TRAINING_ONLY_PREFIXES))


def model_variable_names(checkpoint, scopes=MODEL_SCOPES):
  """The checkpoint's model variables (under `scopes`), training state left out."""
  return sorted(name for name, _ in tf.train.list_variables(checkpoint)
                if name.startswith(tuple(scopes)) and not is_training_only(name))


def unused_variables(checkpoint, used_names, scopes=MODEL_SCOPES,
                     ignored_prefixes=()):
  """The model variables of `checkpoint` not in `used_names`, sorted.

  used_names are checkpoint names (what was loaded, whatever the graph's own
  names are). Variables under ignored_prefixes are not reported.
  """
  used = set(used_names)
  return [name for name in model_variable_names(checkpoint, scopes)
          if name not in used and not name.startswith(tuple(ignored_prefixes))]


def encoder_layers(names):
  """The encoder layer numbers that `names` mention."""
  return sorted({int(match.group(2)) for match in map(_LAYER.match, names)
                 if match})


def _ranges(numbers):
  """[1, 2, 3, 5] -> ["1..3", "5"]."""
  parts, start = [], None
  for i, number in enumerate(numbers):
    if start is None:
      start = number
    if i + 1 == len(numbers) or numbers[i + 1] != number + 1:
      parts.append(str(start) if start == number else "%d..%d" % (start,
                                                                   number))
      start = None
  return parts


def describe_names(names, all_names):
  """A short list of `names`: whole encoder layers as `.../layer_1..3/*`.

  A layer counts as whole when every variable of it in all_names is among
  names; the variables of other layers and outside the encoder are listed.
  """
  names = set(names)
  by_layer = {}
  for name in all_names:
    match = _LAYER.match(name)
    if match:
      by_layer.setdefault((match.group(1), int(match.group(2))), set()).add(
          name)
  whole = {key for key, members in by_layer.items() if members <= names}
  listed = []
  for prefix in sorted({prefix for prefix, _ in whole}):
    layers = sorted(layer for p, layer in whole if p == prefix)
    listed += ["%slayer_%s/*" % (prefix, part) for part in _ranges(layers)]
  in_whole = set().union(*(by_layer[key] for key in whole)) if whole else set()
  listed += sorted(names - in_whole)
  return ", ".join(listed)


def check_checkpoint_file(folder, flag_name):
  """Raises InputError when folder's `checkpoint` file names a missing one.

  tf.train.latest_checkpoint logs an error for it and returns None, as if
  the folder held no checkpoint: a resume would start over or end in a
  traceback, an evaluation would say the folder holds none. Call this before
  it. A folder without that file passes.
  """
  if not tf.io.gfile.isdir(folder):
    return
  try:
    state = tf.train.get_checkpoint_state(folder)
  except (tf.errors.OpError, ValueError) as error:
    raise InputError("%s %s: its 'checkpoint' file cannot be read (%s). "
                     "Delete it to start again." % (flag_name, folder,
                                                    error)) from None
  if not state or not state.model_checkpoint_path:
    return
  # get_checkpoint_state has already put a relative name under folder.
  path = state.model_checkpoint_path
  if not tf.io.gfile.exists(path + ".index"):
    raise InputError(
        "%s %s: its 'checkpoint' file names %s, which is not there (no "
        "%s.index). Edit that file to name a checkpoint the folder holds, or "
        "delete it to start again." % (flag_name, folder, path, path))


def first_and_count(differences):
  """`<the first difference> (and N other variables)`: one line for errors.

  differences: one string per variable, e.g. "name: model [32], checkpoint
  [48]". A checkpoint of another width differs in every variable; the
  first one and the count say as much as forty lines.
  """
  differences = list(differences)
  others = len(differences) - 1
  if others < 1:
    return differences[0]
  return "%s (and %d other variable%s)" % (differences[0], others,
                                           "s" if others > 1 else "")


def check_every_teacher_variable_used(checkpoint, used_names,
                                      checkpoint_flag="--init_checkpoint",
                                      config_flag="--bert_config_file",
                                      ignored_prefixes=()):
  """Raises InputError when the teacher leaves checkpoint variables unused.

  A teacher must be the whole model of its checkpoint: a config with fewer
  layers (or without a head the checkpoint holds) would label with part of
  it. used_names are the checkpoint names the teacher loaded; variables
  under ignored_prefixes may stay unused (e.g. "bert/pooler/" when the
  teacher has no next-sentence head, the pooler's only reader). The message
  names the unused variables, whole layers as `layer_1..3/*`.
  """
  unused = unused_variables(checkpoint, used_names,
                            ignored_prefixes=ignored_prefixes)
  if not unused:
    return
  all_names = model_variable_names(checkpoint)
  hint = ""
  checkpoint_layers = encoder_layers(all_names)
  used_layers = encoder_layers(used_names)
  if len(used_layers) < len(checkpoint_layers):
    hint = (" The checkpoint has %d encoder layers, the config %d: set "
            "num_hidden_layers to %d." % (len(checkpoint_layers),
                                          len(used_layers),
                                          len(checkpoint_layers)))
  raise InputError(
      "%s %s holds %d variables that the teacher of %s does not use, so it "
      "would label with part of the teacher: %s.%s Give the config the "
      "checkpoint was trained with." % (
          checkpoint_flag, checkpoint, len(unused), config_flag,
          describe_names(unused, all_names), hint))
