# coding=utf-8
"""run_classifier.py under Horovod: one process per GPU (or CPU share).

It takes every flag of run_classifier.py, plus --scale_learning_rate and
--fp16_allreduce (bert_distillation/horovod_training.py, as for the stage-V
 distributed
trainer). Each rank trains on its shard of the training examples; the
gradients are averaged over the ranks; the steps (from --num_train_epochs
or --num_train_steps) are divided by the number of ranks and the learning
rate is multiplied by it (unless --scale_learning_rate False);
--step_timeout_secs defaults to 1800. Only rank 0 writes --output_dir,
evaluates and predicts; each teacher is read by every rank from
--teacher_checkpoint.
"""

from absl import flags

from bert_distillation import command_line
from bert_distillation import horovod_training
import run_classifier
from bert_distillation import training_hooks

FLAGS = flags.FLAGS

# Under mpirun a frozen rank makes the others wait for ever: the step
# watchdog is on by default.
FLAGS.set_default("step_timeout_secs",
                  training_hooks.DISTRIBUTED_STEP_TIMEOUT_SECS)

# Scratch model_dir of rank N: <tmp>/classifier_rankN.tmp-<pid>-<random>.
SCRATCH_PREFIX = "classifier_rank"


def main(_):
  horovod_training.run_with_horovod(run_classifier.run, SCRATCH_PREFIX)


if __name__ == "__main__":
  for name in run_classifier.REQUIRED_FLAGS:
    flags.mark_flag_as_required(name)
  command_line.run(main)
