# coding=utf-8
"""Cuts a smaller student out of a teacher checkpoint: a release folder.

--student_config_file may ask for fewer layers, fewer attention heads (of
the teacher's head size), a smaller intermediate_size and a smaller
hidden_size. Which layers, heads, FFN neurons and hidden channels are kept
is decided by their importance, measured by running the teacher over a
sample of your data: stage III's records (--input_file) or a
run_classifier.py task's train.tsv (--task_name, --data_dir, --vocab_file).
The scores are in bert_distillation/pruning.py and docs/pruning.md.

The teacher (--init_checkpoint: a prefix or a folder) may be a pre-training
checkpoint (its masked-LM and next-sentence heads are cut too) or a
run_classifier.py --output_dir (its classifier is cut and its task.json
copied). --output_dir receives bert_model.ckpt.* in Google's variable
names, the student's bert_config.json, vocab.txt when the teacher's folder
has one, and pruning.json (what was kept); stage V and run_classifier.py
start from it with --init_checkpoint.
"""

import os

from absl import flags
import numpy as np

from bert_distillation import command_line
from bert_distillation import pruning
from bert_distillation import student_init
from bert_distillation import teacher_graph

flags.DEFINE_string("bert_config_file", None,
                    "The teacher's bert_config.json.")
flags.DEFINE_string(
    "init_checkpoint", None,
    "The teacher: a checkpoint prefix or a folder (a Google release, a "
    "stage-V or run_classifier.py --output_dir: its latest checkpoint).")
flags.DEFINE_string(
    "student_config_file", None,
    "The student's bert_config.json: at most the teacher's layers, heads, "
    "intermediate_size and hidden_size, heads as wide as the teacher's, "
    "every other key equal.")
flags.DEFINE_string("output_dir", None,
                    "The release folder to write; must be new or empty.")
flags.DEFINE_string(
    "input_file", None,
    "Calibration data: stage III's pre-training records (comma-separated "
    "globs). Or use --task_name.")
flags.DEFINE_string(
    "task_name", None,
    "Calibration data: a run_classifier.py task whose train.tsv in "
    "--data_dir is read (with --vocab_file). Or use --input_file.")
flags.DEFINE_string("data_dir", None, "With --task_name: the task's folder.")
flags.DEFINE_string("vocab_file", None,
                    "With --task_name: the teacher's vocab.txt.")
flags.DEFINE_integer("max_seq_length", 128,
                     "With --task_name: tokens per example, as in "
                     "run_classifier.py.")
flags.DEFINE_bool("do_lower_case", True,
                  "With --task_name: lower-case the text, as in "
                  "run_classifier.py.")
flags.DEFINE_string(
    "layer_map", "",
    "Comma-separated teacher layer for each student layer, e.g. '0,2,4,5'. "
    "Empty: the last layer and the most influential others (Block "
    "Influence), in the teacher's order.")
flags.DEFINE_integer(
    "num_calibration_examples", 256,
    "Sequences the teacher runs over to score its units: the first ones of "
    "--input_file, or a seeded random sample of train.tsv.")
flags.DEFINE_integer("batch_size", 32, "Sequences per teacher forward pass.")

FLAGS = flags.FLAGS

InputError = command_line.InputError


def check_flags():
  """Validates flag combinations; raises InputError."""
  if bool(FLAGS.input_file) == bool(FLAGS.task_name):
    raise InputError("Give the calibration data with either --input_file "
                     "(stage III records) or --task_name (with --data_dir and "
                     "--vocab_file), not both")
  if FLAGS.task_name and not (FLAGS.data_dir and FLAGS.vocab_file):
    raise InputError("--task_name needs --data_dir and --vocab_file")
  for name in ("num_calibration_examples", "batch_size", "max_seq_length"):
    if FLAGS[name].value < 1:
      raise InputError("--%s must be at least 1, got %d" % (
          name, FLAGS[name].value))


def calibration_sample(teacher_config):
  """The sequences the teacher is measured on, and where they come from."""
  if FLAGS.input_file:
    source = "--input_file %s" % FLAGS.input_file
    arrays = pruning.records_sample(FLAGS.input_file,
                                    FLAGS.num_calibration_examples)
  else:
    source = "--task_name %s train.tsv in %s" % (FLAGS.task_name,
                                                  FLAGS.data_dir)
    arrays = pruning.task_sample(
        FLAGS.task_name, FLAGS.data_dir, FLAGS.vocab_file, FLAGS.do_lower_case,
        FLAGS.max_seq_length, FLAGS.num_calibration_examples)
  pruning.check_sample(arrays, teacher_config, source)
  return arrays, source


def parameters(tensors):
  """The number of scalars in {name: array}."""
  return int(sum(np.size(value) for value in tensors.values()))


def main(_):
  check_flags()
  pruning.check_output_dir(FLAGS.output_dir)
  teacher_config = teacher_graph.load_teacher_config(FLAGS.bert_config_file,
                                                     "--bert_config_file")
  student_config = teacher_graph.load_teacher_config(
      FLAGS.student_config_file, "--student_config_file")
  pruning.check_student_config(teacher_config, student_config)
  layer_map = student_init.parse_layer_map(FLAGS.layer_map, "--layer_map")
  if layer_map:
    pruning.check_layer_map(layer_map, teacher_config, student_config)
  checkpoint, tensors = pruning.read_teacher(FLAGS.init_checkpoint,
                                             teacher_config)
  arrays, source = calibration_sample(teacher_config)
  student, selection, importance = pruning.prune(
      teacher_config, checkpoint, tensors, student_config, arrays, layer_map,
      FLAGS.batch_size)
  report = {
      "teacher": checkpoint, "calibration": source,
      "sequences": len(arrays["input_ids"]), "tokens": importance.tokens,
      "layer_map": selection.layer_map, "heads": selection.heads,
      "layer_influence": [round(float(value), 6)
                          for value in importance.influence],
  }
  pruning.write_student(FLAGS.output_dir, student_config, student,
                        os.path.dirname(checkpoint), report)
  print("Wrote %s: %d layers (teacher layers %s), %d heads of %d, "
        "intermediate_size %d, hidden_size %d; %d of the teacher's %d "
        "parameters, scored on %d tokens of %s." % (
            FLAGS.output_dir, student_config.num_hidden_layers,
            ",".join(str(layer) for layer in selection.layer_map),
            student_config.num_attention_heads,
            pruning.head_size(student_config),
            student_config.intermediate_size, student_config.hidden_size,
            parameters(student), parameters(tensors), importance.tokens,
            source))


if __name__ == "__main__":
  for name in ("bert_config_file", "init_checkpoint", "student_config_file",
               "output_dir"):
    flags.mark_flag_as_required(name)
  command_line.run(main)
