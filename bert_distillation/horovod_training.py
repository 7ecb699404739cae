# coding=utf-8
"""Runs a trainer's run(distribution) under Horovod, one process per rank.

The distributed wrappers (network_distillation_distributed_truncated.py,
run_classifier_distributed.py) are this module plus their docstring: it
defines --scale_learning_rate and --fp16_allreduce, and run_with_horovod()
does what Horovod changes for a tf.estimator trainer:
  * hvd.init(), one GPU per process (by local rank) when there are GPUs;
  * gradients averaged over the ranks (Distribution.use_horovod, in
    optimization.create_optimizer), optionally sent as float16;
  * rank 0's variables broadcast to all after it loads its checkpoint;
  * only rank 0 writes --output_dir; every other rank keeps its scratch
    model directory in a temporary directory (temporary_files: deleted at
    the end, on SIGTERM/SIGINT and on a --step_timeout_secs exit; one left
    by a `kill -9` is deleted by the next run).
"""

import sys
import tempfile

from absl import flags
import horovod.tensorflow as hvd
import tensorflow as tf

from bert_distillation import command_line
from bert_distillation import estimator_training
from bert_distillation import temporary_files

flags.DEFINE_bool(
    "scale_learning_rate", True,
    "Multiply --learning_rate by the number of Horovod ranks (the original's "
    "behaviour). False keeps --learning_rate as given.")

flags.DEFINE_bool(
    "fp16_allreduce", False,
    "Send the gradients through the Horovod all-reduce as float16 "
    "(hvd.Compression.fp16): half the network traffic, less precision. By "
    "default they are all-reduced in float32, whatever --precision is.")

FLAGS = flags.FLAGS


class HorovodDistribution(estimator_training.Distribution):
  """A Distribution whose ranks agree through a Horovod broadcast."""

  def agree(self, value):
    """Returns rank 0's `value` on every rank."""
    return hvd.broadcast_object(value, root_rank=0, name="agree")


def pinned_session_config():
  """A session config that gives this rank one GPU (by local rank), if any.

  The eager context is pinned too, so that it and the estimator's sessions
  map GPU:0 to the same physical device.
  """
  config = tf.compat.v1.ConfigProto()
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    tf.config.set_visible_devices(gpus[hvd.local_rank()], "GPU")
    config.gpu_options.allow_growth = True
    config.gpu_options.visible_device_list = str(hvd.local_rank())
  return config


def run_with_horovod(run, scratch_prefix):
  """Calls run(distribution) as this Horovod rank's part of the job.

  scratch_prefix names the scratch model_dir of rank N
  (<tmp>/<scratch_prefix>N.tmp-<pid>-<random>). An InputError ends the
  process with one "ERROR (rank N): ..." line.
  """
  hvd.init()
  rank = hvd.rank()
  tf.compat.v1.logging.info("Horovod rank %d of %d (local rank %d)", rank,
                            hvd.size(), hvd.local_rank())
  if not FLAGS.step_timeout_secs:
    tf.compat.v1.logging.warning(
        "--step_timeout_secs 0: if a rank hangs, the job waits for ever.")
  # Only rank 0 owns output_dir; the others need a model_dir of their own.
  scratch_dir = None
  if rank != 0:
    temporary_files.remove_stale(tempfile.gettempdir(), scratch_prefix + r"\d+")
    scratch_dir = temporary_files.temporary_dir(scratch_prefix + str(rank))
  if scratch_dir:
    tf.compat.v1.logging.info("Rank %d keeps its model_dir in %s (deleted at "
                              "the end)", rank, scratch_dir)
  distribution = HorovodDistribution(
      size=hvd.size(),
      rank=rank,
      model_dir=scratch_dir,
      use_horovod=True,
      scale_learning_rate=FLAGS.scale_learning_rate,
      fp16_allreduce=FLAGS.fp16_allreduce,
      train_hooks=[hvd.BroadcastGlobalVariablesHook(0)],
      session_config=pinned_session_config())
  try:
    run(distribution)
  except command_line.InputError as error:
    sys.exit("ERROR (rank %d): %s" % (rank, error))
  finally:
    if scratch_dir:
      # Close the cached summary writers first, or a late flush recreates
      # the directory after it is deleted.
      tf.compat.v1.summary.FileWriterCache.clear()
      temporary_files.discard(scratch_dir)
