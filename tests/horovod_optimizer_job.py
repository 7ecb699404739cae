"""One Horovod training step; run by tests/test_horovod_optimizer.py.

Every rank starts from its own random variables, broadcasts rank 0's, feeds
its own data, runs one create_optimizer(..., use_horovod=True) step and
saves what it saw to <output_dir>/rank_<rank>.npz: the variables before and
after the step and its local (unaveraged) gradients.

Usage: python horovod_optimizer_job.py OUTPUT_DIR
"""

import os
import sys

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import optimization  # pylint: disable=g-import-not-at-top

tf1 = tf.compat.v1

# Small enough to finish in seconds, with each kind of variable: decayed
# kernel, undecayed bias and LayerNorm, and an embedding table (sparse
# gradients, which Horovod gathers rather than sums).
INIT_LR = 0.01
NUM_TRAIN_STEPS = 10


def build_loss(rank):
  """A tiny regression whose inputs depend on the rank."""
  rng = np.random.RandomState(100 + rank)
  ids = tf.constant(rng.randint(0, 6, size=[8]), tf.int32)
  features = tf.constant(rng.randn(8, 3).astype(np.float32))
  labels = tf.constant(rng.randn(8, 1).astype(np.float32))
  # Different seeds per rank: only the broadcast makes them start equal.
  initializer = tf1.random_normal_initializer(seed=rank)
  table = tf1.get_variable("embeddings/word_embeddings", [6, 3],
                           initializer=initializer)
  kernel = tf1.get_variable("dense/kernel", [3, 1], initializer=initializer)
  bias = tf1.get_variable("dense/bias", [1], initializer=initializer)
  gamma = tf1.get_variable("LayerNorm/gamma", [3], initializer=initializer)
  hidden = (features + tf.gather(table, ids)) * gamma
  predictions = tf.matmul(hidden, kernel) + bias
  return tf.reduce_mean(tf.square(predictions - labels))


def main(output_dir):
  import horovod.tensorflow as hvd  # pylint: disable=g-import-not-at-top
  hvd.init()
  rank = hvd.rank()
  with tf.Graph().as_default():
    loss = build_loss(rank)
    tvars = tf1.trainable_variables()
    local_grads = [tf.convert_to_tensor(g) for g in tf.gradients(loss, tvars)]
    train_op = optimization.create_optimizer(
        loss, INIT_LR, NUM_TRAIN_STEPS, num_warmup_steps=0, use_tpu=False,
        use_horovod=True)
    broadcast = hvd.broadcast_global_variables(0)
    global_step = tf1.train.get_global_step()
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      sess.run(broadcast)
      before, grads = sess.run([tvars, local_grads])
      sess.run(train_op)
      after, step = sess.run([tvars, global_step])
  arrays = {"size": np.array(hvd.size()), "step": np.array(step)}
  for var, value_before, grad, value_after in zip(tvars, before, grads, after):
    name = var.op.name
    arrays["before/" + name] = value_before
    arrays["grad/" + name] = grad
    arrays["after/" + name] = value_after
  path = os.path.join(output_dir, "rank_%d.npz" % rank)
  np.savez(path + ".tmp.npz", **arrays)
  os.rename(path + ".tmp.npz", path)
  print("rank %d of %d done" % (rank, hvd.size()))


if __name__ == "__main__":
  main(sys.argv[1])
