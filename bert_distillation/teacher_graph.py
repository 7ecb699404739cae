"""A frozen teacher BERT built in the student's graph.

Stage V's layer-wise distillation (network_distillation_*_truncated.py) and
task distillation (run_classifier.py) both run the teacher online, next to
the student. This module is their one implementation:

  * teacher_scope(): every variable created inside it is frozen. It is not
    trainable (no gradient, no optimizer slot) and it lives in
    LOCAL_VARIABLES, not GLOBAL_VARIABLES, so tf.estimator's default Saver
    never writes it to the student's checkpoints, and Horovod's
    BroadcastGlobalVariablesHook leaves it alone: each process reads it from
    the teacher's checkpoint itself. The estimator's local_init_op runs
    those reads, after every restore of the student, so a resumed run gets
    the teacher's weights again.
  * build_teacher(): a modeling.BertModel (is_training=False) in that scope.
  * restore_teacher(): points every teacher variable at the teacher's
    checkpoint (a prefix or a folder), with the scope stripped from the
    names; anything that does not fit is one InputError.
  * load_teacher(): the teacher's config and checkpoint from their flags;
    the config must be the one the checkpoint was trained under, when its
    folder stores one (output_config.check_config, as for a student's
    resume and convert_checkpoint.py).
  * check_teacher_matches_student(): the teacher and the student must share
    the vocabulary.

No gradient reaches a teacher variable (none is trainable); the losses also
put the teacher's tensors under tf.stop_gradient, so that no backward pass
is built through the teacher.
"""

import contextlib
import os

import tensorflow as tf

from bert_distillation import checkpoint_usage
from bert_distillation import command_line
import modeling
from bert_distillation import output_config

tf1 = tf.compat.v1

InputError = command_line.InputError

# The collection that holds every teacher variable (besides LOCAL_VARIABLES).
TEACHER_VARIABLES = "teacher_variables"

# The checkpoint of a Google release folder.
RELEASE_CHECKPOINT = "bert_model.ckpt"

# How many names an error line lists before "... and N more".
_SHOWN_NAMES = 8


def _frozen_getter(getter, *args, **kwargs):
  """A custom getter that makes the variable frozen (see teacher_scope)."""
  kwargs["trainable"] = False
  kwargs["collections"] = [tf1.GraphKeys.LOCAL_VARIABLES, TEACHER_VARIABLES]
  return getter(*args, **kwargs)


@contextlib.contextmanager
def teacher_scope(scope="teacher"):
  """Variable scope in which every new variable is a frozen teacher variable.

  Frozen: not trainable and kept out of GLOBAL_VARIABLES (hence out of the
  student's checkpoints, exports and Horovod broadcasts). Callers may build
  extra teacher parts here, e.g. a classifier head. Yields the scope.
  """
  with tf1.variable_scope(scope, custom_getter=_frozen_getter) as entered:
    yield entered


def build_teacher(teacher_config, input_ids, input_mask, token_type_ids,
                  compute_type=tf.float32, scope="teacher"):
  """Builds the teacher's BertModel (no dropout) inside teacher_scope(scope).

  Its variables are `<scope>/bert/...`; restore_teacher() loads them from
  `bert/...`. compute_type is the encoder's matmul type (--precision).
  """
  with teacher_scope(scope):
    return modeling.BertModel(
        config=teacher_config, is_training=False, input_ids=input_ids,
        input_mask=input_mask, token_type_ids=token_type_ids, scope="bert",
        compute_type=compute_type)


def teacher_variables(scope="teacher"):
  """The frozen variables created under `scope`, sorted by name."""
  prefix = scope + "/"
  return sorted((var for var in tf1.get_collection(TEACHER_VARIABLES)
                 if var.op.name.startswith(prefix)),
                key=lambda var: var.op.name)


def resolve_checkpoint(path, flag_name):
  """A checkpoint prefix from a prefix or a folder.

  A folder gives its latest checkpoint (a trainer's --output_dir) or its
  bert_model.ckpt (a Google release, a converted Hugging Face model, a
  prune_checkpoint.py output).

  Raises:
    InputError: naming flag_name, when path is neither, or a folder whose
      `checkpoint` file names a checkpoint that is not there.
  """
  if tf.io.gfile.isdir(path):
    checkpoint_usage.check_checkpoint_file(path, flag_name)
    latest = tf.train.latest_checkpoint(path)
    release = os.path.join(path, RELEASE_CHECKPOINT)
    if not latest and tf.io.gfile.exists(release + ".index"):
      return release
    if not latest:
      raise InputError("%s %s is a folder without a checkpoint (no "
                       "'checkpoint' file naming one, no %s)" % (
                           flag_name, path, RELEASE_CHECKPOINT))
    return latest
  if not tf.io.gfile.exists(path + ".index"):
    raise InputError("%s %s is not a checkpoint (no %s.index, nor a folder "
                     "holding one)" % (flag_name, path, path))
  return path


def _listed(names):
  """names joined by ', ', at most _SHOWN_NAMES of them."""
  names = list(names)
  shown = ", ".join(names[:_SHOWN_NAMES])
  if len(names) > _SHOWN_NAMES:
    shown += " ... and %d more" % (len(names) - _SHOWN_NAMES)
  return shown


def restore_teacher(teacher_checkpoint, scope="teacher",
                    flag_name="--teacher_checkpoint", ignore_prefixes=(),
                    optional_prefixes=()):
  """Makes every teacher variable load from the teacher's checkpoint.

  `<scope>/name` loads checkpoint variable `name`. The loads run when the
  estimator initialises its local variables, in every process (call this in
  the model_fn of every Horovod rank).

  Args:
    teacher_checkpoint: a checkpoint prefix, or a folder (its latest
      checkpoint): a Google release, an --output_dir of stage V or of
      run_classifier.py.
    scope: the teacher_scope the variables were built in.
    flag_name: the flag named in errors.
    ignore_prefixes: checkpoint variables under these prefixes may stay
      unused (e.g. a head the caller does not build).
    optional_prefixes: teacher variables under these (checkpoint) prefixes
      may be absent from the checkpoint, all of them at once: they keep
      their random initialisation and are not used (e.g. the pooler of a
      teacher converted from BertForMaskedLM, when no next-sentence head is
      built on it).

  Returns:
    The checkpoint prefix that was used.

  Raises:
    InputError: one line naming flag_name and the variables, for a teacher
      variable the checkpoint lacks or holds in another shape, and for
      checkpoint variables (encoder, heads) the teacher does not use.
  """
  checkpoint = resolve_checkpoint(teacher_checkpoint, flag_name)
  try:
    checkpoint_shapes = dict(tf.train.list_variables(checkpoint))
  except (tf.errors.OpError, ValueError) as error:
    problem = (modeling.unreadable_checkpoint_problem(checkpoint) or
               "checkpoint %s cannot be read (%s)" % (checkpoint, error))
    raise InputError("%s: %s" % (flag_name, problem)) from None

  prefix = scope + "/"
  variables = {var.op.name[len(prefix):]: var
               for var in teacher_variables(scope)}
  if not variables:
    raise ValueError("No teacher variables under %r: build the teacher "
                     "first" % scope)
  absent_optional = {
      start for start in optional_prefixes
      if not any(name.startswith(start) for name in checkpoint_shapes)}
  missing, mismatched, assignment_map = [], [], {}
  for name, var in sorted(variables.items()):
    if name not in checkpoint_shapes:
      if not name.startswith(tuple(absent_optional)):
        missing.append(name)
    elif list(checkpoint_shapes[name]) != var.shape.as_list():
      mismatched.append("%s (teacher %s, checkpoint %s)" % (
          name, var.shape.as_list(), list(checkpoint_shapes[name])))
    else:
      assignment_map[name] = var
  if missing or mismatched:
    problems = []
    if missing:
      problems.append("the checkpoint lacks %s" % _listed(missing))
    if mismatched:
      problems.append("shapes differ for %s" % _listed(mismatched))
    raise InputError(
        "%s %s does not fit the teacher's config (--teacher_config_file): "
        "%s" % (flag_name, checkpoint, "; ".join(problems)))
  checkpoint_usage.check_every_teacher_variable_used(
      checkpoint, assignment_map, checkpoint_flag=flag_name,
      config_flag="--teacher_config_file", ignored_prefixes=ignore_prefixes)
  tf1.train.init_from_checkpoint(checkpoint, assignment_map)
  left_random = sorted(set(variables) - set(assignment_map))
  if left_random:
    tf1.logging.info("Teacher variables not in %s (unused, left random): %s",
                     checkpoint, _listed(left_random))
  tf1.logging.info("Teacher: %d variables under %s/ load from %s",
                   len(assignment_map), scope, checkpoint)
  return checkpoint


def load_teacher_config(path, flag_name="--teacher_config_file"):
  """The teacher's BertConfig; InputError naming flag_name if it is bad."""
  try:
    return modeling.BertConfig.from_json_file(path)
  except modeling.ConfigError as error:
    raise InputError("%s: %s" % (flag_name, error)) from None


def load_teacher(config_file, checkpoint, config_flag="--teacher_config_file",
                 checkpoint_flag="--teacher_checkpoint"):
  """(BertConfig, checkpoint prefix) of the teacher; InputError if they differ.

  checkpoint is a prefix or a folder (resolve_checkpoint). A bert_config.json
  stored beside it (a trainer's --output_dir, a Google release) must agree
  with config_file in every key that changes what the model computes
  (heads, hidden_act, sizes, ...): the same check as a student's resume.
  Variables only give shapes, so a config with other heads or another
  activation would otherwise distil from a different network.
  """
  config = load_teacher_config(config_file, config_flag)
  prefix = resolve_checkpoint(checkpoint, checkpoint_flag)
  output_config.check_config(
      output_config.checkpoint_folder(checkpoint), config_file, config_flag,
      what="stored with %s %s" % (checkpoint_flag, checkpoint))
  return config, prefix


def check_teacher_matches_student(teacher_config, student_config,
                                  teacher_config_flag="--teacher_config_file",
                                  max_seq_length=None):
  """Raises InputError when the teacher cannot teach this student.

  Both must share the vocabulary (the same ids mean the same tokens), and
  the teacher must take sequences of max_seq_length when it is given.
  """
  if teacher_config.vocab_size != student_config.vocab_size:
    raise InputError(
        "%s has vocab_size %d but the student (--bert_config_file) has %d: "
        "teacher and student must share one vocabulary" % (
            teacher_config_flag, teacher_config.vocab_size,
            student_config.vocab_size))
  if (max_seq_length is not None and
      max_seq_length > teacher_config.max_position_embeddings):
    raise InputError(
        "--max_seq_length %d exceeds max_position_embeddings %d of %s" % (
            max_seq_length, teacher_config.max_position_embeddings,
            teacher_config_flag))

