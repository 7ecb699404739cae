# coding=utf-8
"""Profiles training steps of the student trainer: time per kind of op.

Runs the real trainer (network_distillation_single_machine_truncated.py, with
its own flags) in this process, adding one hook: after --profile_skip_steps
untraced steps it traces --profile_steps steps (RunOptions FULL_TRACE) and
adds up the time of every op those steps ran, grouped by kind (op_kind()):
matmuls, casts, LayerNorm, softmax, GELU, dropout, the optimizer, the input,
data movement and the other elementwise ops. It writes the totals as JSON
(--profile_output) and, with --profile_timeline, the last traced step as a
Chrome trace (chrome://tracing or https://ui.perfetto.dev).

Two inter-op threads can run two ops at once; each instant of the step is
split evenly between the ops running in it, so the kinds add up to the time
the step had an op running. bench_train.py --profile runs this for each
student and precision and prints the table.

  .venv/bin/python bench/profile_step.py --profile_output profile.json \\
      <the trainer's flags, e.g. from bench_train.py>
"""

import collections
import json
import os
import re
import sys
import time

from absl import flags
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bert_distillation import command_line  # pylint: disable=g-import-not-at-top
from bert_distillation import estimator_training  # pylint: disable=g-import-not-at-top
import network_distillation_single_machine_truncated as trainer  # pylint: disable=g-import-not-at-top

flags.DEFINE_string("profile_output", None,
                    "JSON file for the per-kind op times of the traced steps.")
flags.DEFINE_integer("profile_skip_steps", 3,
                     "Untraced steps before the traced ones (warm-up).")
flags.DEFINE_integer("profile_steps", 2, "Steps to trace and add up.")
flags.DEFINE_string("profile_timeline", None,
                    "Optional Chrome trace (JSON) of the last traced step.")

FLAGS = flags.FLAGS
tf1 = tf.compat.v1

# The kinds, in the order of the table.
KINDS = ("matmul", "cast", "layer_norm", "softmax", "gelu", "dropout",
         "optimizer", "input", "data_movement", "other_elementwise",
         "bookkeeping")

_MATMUL = re.compile(r"^_?(Mkl)?(Fused)?(Batch)?MatMul|Einsum|^_MklFused"
                     r"(Batch)?MatMul|^_MklNativeFused(Batch)?MatMul|"
                     r"^_MklNative(Batch)?MatMul")
_CAST = ("Cast", "_MklCast")
_INPUT = ("IteratorGetNext", "IteratorGetNextSync", "IteratorV2",
          "MakeIterator", "OneShotIterator")
_DATA_MOVEMENT = ("Transpose", "_MklTranspose", "ConjugateTranspose",
                  "Reshape", "_MklReshape", "ConcatV2", "Concat", "Slice",
                  "StridedSlice", "StridedSliceGrad", "GatherV2", "Gather",
                  "ResourceGather", "GatherNd", "ScatterNd",
                  "UnsortedSegmentSum", "Tile", "Pack", "Unpack", "Split",
                  "SplitV", "Fill", "ZerosLike", "OnesLike", "ExpandDims",
                  "Squeeze", "BroadcastTo", "Pad", "OneHot", "Range")
_BOOKKEEPING = ("ReadVariableOp", "Identity", "IdentityN", "Const", "NoOp",
                "VarHandleOp", "_Recv", "_Send", "_Arg", "_Retval", "Shape",
                "ShapeN", "Size", "Rank", "BroadcastGradientArgs",
                "VarIsInitializedOp", "Switch", "Merge", "StopGradient",
                "_HostRecv", "_HostSend", "Enter", "Exit", "NextIteration")
# Name fragments of the optimizer's ops (optimization.py's name scopes).
_OPTIMIZER_NAMES = ("AdamWeightDecay", "clip_by_global_norm", "global_norm",
                    "train_op", "dense_gradients", "loss_scale")


def op_kind(node_name, op_type):
  """The kind (one of KINDS) of an op in a step trace.

  Matmuls and casts go by type wherever they are; the rest by the name scope
  of the model code that made them (their gradients keep it), then by type.
  """
  if op_type in _INPUT or node_name.startswith("IteratorGetNext"):
    return "input"
  if _MATMUL.search(op_type):
    return "matmul"
  if op_type in _CAST:
    return "cast"
  if op_type in ("ResourceApplyAdam", "ApplyAdam", "AssignVariableOp",
                 "AssignSubVariableOp", "AssignAddVariableOp") or any(
                     part in node_name for part in _OPTIMIZER_NAMES):
    return "optimizer"
  if "LayerNorm" in node_name:
    return "layer_norm"
  if "oftmax" in node_name or "oftmax" in op_type:
    return "softmax"
  if "Gelu" in node_name or "Gelu" in op_type:
    return "gelu"
  if "dropout" in node_name:
    return "dropout"
  if op_type in _DATA_MOVEMENT:
    return "data_movement"
  if op_type in _BOOKKEEPING:
    return "bookkeeping"
  return "other_elementwise"


def op_type_of(node_stats):
  """The op type of a traced node: 'name = Type(inputs)' in its label."""
  label = node_stats.timeline_label
  match = re.match(r"^[^=]*=\s*([A-Za-z0-9_]+)\(", label)
  if match:
    return match.group(1)
  return label.split("(")[0].strip() or node_stats.node_name


def kind_times(step_stats):
  """{kind: seconds} and {op type: seconds} of the wall time of a step trace.

  Ops can run at once (two inter-op threads), each then getting a share of
  the cores, so every instant of the step is split evenly between the ops
  running in it: the seconds add up to the time at least one op ran, and an
  op slowed down by a neighbour is not counted twice.
  """
  intervals = []
  for device in step_stats.dev_stats:
    for node in device.node_stats:
      if node.node_name == "SOURCE":
        continue
      start = node.all_start_micros + node.op_start_rel_micros
      end = node.all_start_micros + node.op_end_rel_micros
      if end > start:
        op_type = op_type_of(node)
        intervals.append((start, end, op_kind(node.node_name, op_type),
                          op_type))
  return split_wall_time(intervals)


def split_wall_time(intervals):
  """Sweeps (start, end, kind, op type) intervals in microseconds.

  Returns ({kind: seconds}, {op type: seconds}), each instant divided
  evenly between the intervals open in it.
  """
  events = []
  for index, (start, end, _, _) in enumerate(intervals):
    events.append((start, 1, index))
    events.append((end, -1, index))
  events.sort()
  kinds = collections.defaultdict(float)
  types = collections.defaultdict(float)
  active = set()
  last = None
  for time_point, change, index in events:
    if active and time_point > last:
      share = (time_point - last) / 1e6 / len(active)
      for open_index in active:
        _, _, kind, op_type = intervals[open_index]
        kinds[kind] += share
        types[op_type] += share
    last = time_point
    if change > 0:
      active.add(index)
    else:
      active.discard(index)
  return dict(kinds), dict(types)


class TraceHook(tf1.train.SessionRunHook):
  """Traces steps skip+1 .. skip+count of a training session; keeps totals."""

  def __init__(self, skip_steps, count):
    self.skip_steps = skip_steps
    self.count = count
    self.steps = 0
    self.traced = 0
    self.kinds = collections.defaultdict(float)
    self.types = collections.defaultdict(float)
    self.wall = 0.0
    self.last_step_stats = None
    self._start = None

  def _tracing(self):
    return self.skip_steps <= self.steps < self.skip_steps + self.count

  def before_run(self, run_context):
    if not self._tracing():
      return None
    self._start = time.time()
    return tf1.train.SessionRunArgs(
        fetches=None, options=tf1.RunOptions(
            trace_level=tf1.RunOptions.FULL_TRACE))

  def after_run(self, run_context, run_values):
    if self._tracing():
      self.wall += time.time() - self._start
      kinds, types = kind_times(run_values.run_metadata.step_stats)
      for name, seconds in kinds.items():
        self.kinds[name] += seconds
      for name, seconds in types.items():
        self.types[name] += seconds
      self.last_step_stats = run_values.run_metadata.step_stats
      self.traced += 1
    self.steps += 1

  def summary(self):
    """Per traced step: seconds by kind and by op type, and wall time."""
    steps = max(self.traced, 1)
    return {
        "traced_steps": self.traced,
        "traced_wall_s": self.wall / steps,
        "kinds_s": {name: self.kinds.get(name, 0.0) / steps for name in KINDS},
        "op_types_s": {name: seconds / steps for name, seconds in sorted(
            self.types.items(), key=lambda item: -item[1])},
    }


def write_timeline(step_stats, path):
  """Writes a step trace as a Chrome trace file."""
  from tensorflow.python.client import timeline  # pylint: disable=g-import-not-at-top
  with open(path, "w") as f:
    f.write(timeline.Timeline(step_stats).generate_chrome_trace_format())


def main(_):
  if not FLAGS.profile_output:
    raise command_line.InputError("--profile_output is required")
  needed = FLAGS.profile_skip_steps + FLAGS.profile_steps
  if FLAGS.num_train_steps < needed:
    raise command_line.InputError(
        "--num_train_steps %d: the profile needs at least %d steps "
        "(--profile_skip_steps + --profile_steps)" % (FLAGS.num_train_steps,
                                                       needed))
  hook = TraceHook(FLAGS.profile_skip_steps, FLAGS.profile_steps)
  trainer.run(estimator_training.Distribution(train_hooks=[hook]))
  if not hook.traced:
    raise command_line.InputError("no step was traced")
  result = hook.summary()
  stats_path = os.path.join(FLAGS.output_dir, "train_stats.json")
  if os.path.exists(stats_path):
    with open(stats_path) as f:
      result["train_stats"] = json.load(f)
  with open(FLAGS.profile_output, "w") as f:
    json.dump(result, f, indent=1)
  if FLAGS.profile_timeline:
    write_timeline(hook.last_step_stats, FLAGS.profile_timeline)


if __name__ == "__main__":
  flags.mark_flag_as_required("bert_config_file")
  flags.mark_flag_as_required("input_file")
  flags.mark_flag_as_required("output_dir")
  command_line.run(main)
