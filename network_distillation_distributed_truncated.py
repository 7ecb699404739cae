# coding=utf-8
"""Distributed distillation with Horovod: the single-machine trainer, sharded.

Run one process per GPU (or per CPU share) with mpirun or horovodrun. It takes
every flag of network_distillation_single_machine_truncated.py, plus
--scale_learning_rate and --fp16_allreduce
 (bert_distillation/horovod_training.py, shared with
run_classifier_distributed.py). What Horovod changes:
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

from absl import flags

from bert_distillation import command_line
from bert_distillation import horovod_training
import network_distillation_single_machine_truncated as single
from bert_distillation import training_hooks

FLAGS = flags.FLAGS

# Under mpirun a frozen rank (e.g. SIGSTOP, a hung GPU) makes the others wait
# for ever, so here the step watchdog is on by default.
FLAGS.set_default("step_timeout_secs",
                  training_hooks.DISTRIBUTED_STEP_TIMEOUT_SECS)

# Scratch model_dir of rank N: <tmp>/distill_rankN.tmp-<pid>-<random>.
SCRATCH_PREFIX = "distill_rank"


def main(_):
  horovod_training.run_with_horovod(single.run, SCRATCH_PREFIX)


if __name__ == "__main__":
  flags.mark_flag_as_required("bert_config_file")
  flags.mark_flag_as_required("input_file")
  flags.mark_flag_as_required("output_dir")
  command_line.run(main)
