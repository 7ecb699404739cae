# coding=utf-8
"""Distributed distillation with Horovod: the single-machine trainer, sharded.

Run one process per GPU (or per CPU share) with mpirun or horovodrun. It takes
every flag of network_distillation_single_machine_truncated.py, plus
--scale_learning_rate and --fp16_allreduce. What Horovod changes:
  * each rank reads its own shard of --input_file (whole files, or records
    when there are fewer files than ranks);
  * gradients are averaged over the ranks; rank 0's variables (after it reads
    --init_checkpoint or resumes from output_dir) are broadcast to all;
  * with --fp16_allreduce the gradients travel as float16;
  * --num_train_steps and --num_warmup_steps are divided by the number of
    ranks and the learning rate is multiplied by it (unless
    --scale_learning_rate False), as in the original;
  * --step_timeout_secs defaults to 1800: a rank that makes no progress for
    that long (a frozen peer, a stuck input) aborts the job;
  * only rank 0 writes output_dir (checkpoints, summaries, eval_results.txt)
    and evaluates. The other ranks keep their scratch model directory in a
    temporary directory outside output_dir (temporary_files: deleted at the
    end, on SIGTERM/SIGINT and on a --step_timeout_secs exit; one left by a
    `kill -9` is deleted by the next run).
"""

import sys
import tempfile

from absl import flags
import horovod.tensorflow as hvd
import tensorflow as tf

import command_line
import network_distillation_single_machine_truncated as single
import temporary_files
import training_hooks

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

# Under mpirun a frozen rank (e.g. SIGSTOP, a hung GPU) makes the others wait
# for ever, so here the step watchdog is on by default.
FLAGS.set_default("step_timeout_secs",
                  training_hooks.DISTRIBUTED_STEP_TIMEOUT_SECS)

# Scratch model_dir of rank N: <tmp>/distill_rankN.tmp-<pid>-<random>.
SCRATCH_PREFIX = "distill_rank"


class HorovodDistribution(single.Distribution):
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


def main(_):
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
    temporary_files.remove_stale(tempfile.gettempdir(), SCRATCH_PREFIX + r"\d+")
    scratch_dir = temporary_files.temporary_dir(SCRATCH_PREFIX + str(rank))
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
    single.run(distribution)
  except command_line.InputError as error:
    sys.exit("ERROR (rank %d): %s" % (rank, error))
  finally:
    if scratch_dir:
      # Close the cached summary writers first, or a late flush recreates
      # the directory after it is deleted.
      tf.compat.v1.summary.FileWriterCache.clear()
      temporary_files.discard(scratch_dir)


if __name__ == "__main__":
  flags.mark_flag_as_required("bert_config_file")
  flags.mark_flag_as_required("input_file")
  flags.mark_flag_as_required("output_dir")
  command_line.run(main)
