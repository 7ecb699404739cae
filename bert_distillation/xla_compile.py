# coding=utf-8
"""--use_xla: XLA JIT compilation of the model graph.

produce_teacher_labels.py and the distillation trainers share it. Two
switches, both off unless --use_xla:
  * jit_scope(): tf.xla.experimental.jit_scope() around the graph to compile.
    TensorFlow marks every op built inside it, and the gradients of those
    ops, for XLA and joins them into clusters that run as compiled, fused
    code. Ops without an XLA kernel (the input pipeline, summaries, prints,
    Horovod's all-reduce) stay ordinary TensorFlow ops, and so do stateful
    random ops (dropout masks): XLA would ignore their seeds. The ops that
    create a variable (its initialiser, its read for the checkpoints) are
    left out too: they run once or at a save, and compiling each of them
    would only cost time.
  * session_config(): the session's global_jit_level ON_1, XLA's
    auto-clustering, as NVIDIA's TensorFlow BERT sets for --use_xla. On a
    GPU it also compiles what it can outside the scope. On a CPU TensorFlow
    auto-clusters nothing unless TF_XLA_FLAGS=--tf_xla_cpu_global_jit is
    set, so there only the scope compiles.
"""

import contextlib

import tensorflow as tf

tf1 = tf.compat.v1

FLAG_HELP = (
    "XLA JIT compile of the model graph, as NVIDIA's TensorFlow BERT offers: "
    "the forward pass, the losses, their gradients and the optimizer update "
    "run as fused XLA clusters (and on a GPU the session auto-clusters the "
    "rest). The same results up to float rounding.")


def _uncompiled_variable(next_creator, **kwargs):
  """A variable creator that keeps the variable's own ops out of XLA."""
  with tf.xla.experimental.jit_scope(compile_ops=False):
    return next_creator(**kwargs)


@contextlib.contextmanager
def jit_scope(enabled):
  """tf.xla.experimental.jit_scope() when enabled, else nothing.

  Variables created inside are not compiled (see the module docstring).
  """
  if not enabled:
    yield
    return
  with tf.xla.experimental.jit_scope(), tf1.variable_creator_scope(
      _uncompiled_variable):
    yield


def session_config(config, enabled):
  """config with XLA's global_jit_level ON_1 when enabled.

  config: a tf.compat.v1.ConfigProto, or None (TensorFlow's defaults).
  Returns config itself when not enabled (None stays None, so the session
  is the same as without this call), else a copy (a new ConfigProto for
  None) with the JIT level set; the caller's proto is never changed.
  """
  if not enabled:
    return config
  compiled = tf1.ConfigProto()
  if config is not None:
    compiled.CopyFrom(config)
  compiled.graph_options.optimizer_options.global_jit_level = (
      tf1.OptimizerOptions.ON_1)
  return compiled
