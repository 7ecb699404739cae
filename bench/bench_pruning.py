# coding=utf-8
"""How much of the teacher a pruned student keeps before any training.

Cuts the student of --student_config_file out of the teacher three ways,
for each of several layer maps: by prune_checkpoint.py's importance scores
(measured on --num_calibration_examples sequences of --data_dir's
train.tsv), the first heads/neurons/channels, and random ones (--seeds
draws). Each student runs over --num_eval_examples other sequences of the
same file; the score is linear CKA (Kornblith et al. 2019) between its and
the teacher's mean-pooled last layer: 1 means the same representation up
to a rotation and scale, whatever the widths. No training, a few minutes.

  .venv/bin/python bench/bench_pruning.py --teacher_dir teacher_google \
      --student_config_file student_config.json --data_dir my_task
"""

import os
import random
import sys

from absl import flags
import numpy as np
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bert_distillation import command_line  # pylint: disable=g-import-not-at-top
from bert_distillation import pruning  # pylint: disable=g-import-not-at-top
import modeling  # pylint: disable=g-import-not-at-top
from bench_common import mean_sd  # pylint: disable=g-import-not-at-top

tf1 = tf.compat.v1

flags.DEFINE_string("teacher_dir", None,
                    "A Google release folder: bert_config.json, "
                    "bert_model.ckpt, vocab.txt.")
flags.DEFINE_string("student_config_file", None,
                    "The student's bert_config.json.")
flags.DEFINE_string("data_dir", None, "A tsv task folder (train.tsv).")
flags.DEFINE_string("layer_maps", "",
                    "Semicolon-separated layer maps to compare, e.g. "
                    "'0,1,4,5;0,2,4,5'. Empty: the one importance chooses.")
flags.DEFINE_integer("max_seq_length", 64, "Tokens per sequence.")
flags.DEFINE_integer("num_calibration_examples", 256,
                     "Sequences the importance is measured on.")
flags.DEFINE_integer("num_eval_examples", 512,
                     "Other sequences the students are compared on.")
flags.DEFINE_integer("seeds", 3, "Random selections per layer map.")

FLAGS = flags.FLAGS


def mean_pooled(config, tensors, arrays):
  """The last layer averaged over real tokens, [n, hidden]."""
  with tf.Graph().as_default():
    model = modeling.BertModel(
        config, False, tf.constant(arrays["input_ids"]),
        tf.constant(arrays["input_mask"]),
        tf.constant(arrays["segment_ids"]), scope="bert")
    with tf1.Session() as session:
      for var in tf1.global_variables():
        var.load(tensors[var.op.name], session)
      sequence = session.run(model.get_sequence_output())
  mask = arrays["input_mask"][..., None]
  return (sequence * mask).sum(1) / mask.sum(1)


def linear_cka(x, y):
  """Linear CKA of two representations of the same n examples."""
  x = x - x.mean(0)
  y = y - y.mean(0)
  return (np.linalg.norm(x.T @ y) ** 2 /
          (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def random_selection(layer_map, teacher, student, seed):
  """Heads, neurons and channels drawn at random."""
  rng = random.Random(seed)
  return pruning.Selection(
      layer_map,
      [sorted(rng.sample(range(teacher.num_attention_heads),
                         student.num_attention_heads)) for _ in layer_map],
      [sorted(rng.sample(range(teacher.intermediate_size),
                         student.intermediate_size)) for _ in layer_map],
      sorted(rng.sample(range(teacher.hidden_size), student.hidden_size)))


def main(_):
  teacher = modeling.BertConfig.from_json_file(
      os.path.join(FLAGS.teacher_dir, "bert_config.json"))
  student = modeling.BertConfig.from_json_file(FLAGS.student_config_file)
  pruning.check_student_config(teacher, student)
  _, tensors = pruning.read_teacher(FLAGS.teacher_dir, teacher)
  arrays = pruning.task_sample(
      "tsv", FLAGS.data_dir, os.path.join(FLAGS.teacher_dir, "vocab.txt"),
      True, FLAGS.max_seq_length, 10 ** 9)
  order = np.random.RandomState(0).permutation(len(arrays["input_ids"]))
  calibration = order[:FLAGS.num_calibration_examples]
  held_out = order[FLAGS.num_calibration_examples:][:FLAGS.num_eval_examples]
  importance = pruning.measure_importance(
      teacher, tensors, {k: v[calibration] for k, v in arrays.items()}, 32)
  held_out = {k: v[held_out] for k, v in arrays.items()}
  reference = mean_pooled(teacher, tensors, held_out)

  def score(selection):
    return linear_cka(reference, mean_pooled(
        student, pruning.prune_tensors(tensors, teacher, selection), held_out))

  layer_maps = [pruning.select(importance, student).layer_map]
  if FLAGS.layer_maps:
    layer_maps = [[int(layer) for layer in text.split(",")]
                  for text in FLAGS.layer_maps.split(";")]
  print("| layer map | importance | first units | random (mean ± sd) |")
  print("| --- | ---: | ---: | ---: |")
  for layer_map in layer_maps:
    first = pruning.Selection(
        layer_map, [list(range(student.num_attention_heads))] * len(layer_map),
        [list(range(student.intermediate_size))] * len(layer_map),
        list(range(student.hidden_size)))
    drawn = [score(random_selection(layer_map, teacher, student, seed))
             for seed in range(FLAGS.seeds)]
    print("| %s | %.4f | %.4f | %.4f ± %.4f |" % ((
        ",".join(map(str, layer_map)),
        score(pruning.select(importance, student, layer_map)), score(first))
        + mean_sd(drawn)))


if __name__ == "__main__":
  for name in ("teacher_dir", "student_config_file", "data_dir"):
    flags.mark_flag_as_required(name)
  command_line.run(main)
