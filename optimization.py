# coding=utf-8
"""BERT's optimizer: Adam with decoupled weight decay, warmup and linear decay.

create_optimizer() builds the train op used by the trainers. On one machine
it needs nothing but TensorFlow; with use_horovod=True it imports Horovod,
averages the gradients over all ranks and scales the learning rate by the
number of ranks. With a DynamicLossScale (for float16 training) it scales the
loss, and skips the update of any step whose gradients overflow. The AdamW
update of each variable is one pass of TensorFlow's Adam kernel (plus one for
the weight decay) instead of Google's chain of about ten elementwise ops;
the formula is the same (tests/test_optimization.py compares the two).
Reference variables (Google's tf.compat.v1 graphs after
disable_v2_behavior()) have no kernel of that kind and get Google's update.
"""

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

import re
import sys

import tensorflow as tf
from tensorflow.python.ops import resource_variable_ops

# Weight decay skips these variables (matched with re.search on the name).
EXCLUDE_FROM_WEIGHT_DECAY = ["LayerNorm", "layer_norm", "bias"]


def learning_rate_schedule(init_lr, global_step, num_train_steps,
                           num_warmup_steps):
  """Returns the learning rate at `global_step` as a float32 tensor.

  As in Google's BERT: the rate decays linearly from `init_lr` at step 0 to
  0 at `num_train_steps` (and stays 0 after). During the first
  `num_warmup_steps` steps it is replaced by a linear warmup
  init_lr * step / num_warmup_steps, so it starts at 0 and at step
  `num_warmup_steps` joins the decay line at
  init_lr * (1 - num_warmup_steps / num_train_steps).

  Args:
    init_lr: float, the peak learning rate.
    global_step: int tensor (or int), the current step.
    num_train_steps: int > 0, where the rate reaches 0.
    num_warmup_steps: int >= 0, the length of the warmup (0 = none).

  Raises:
    ValueError: if the step counts are out of range.
  """
  if num_train_steps <= 0:
    raise ValueError("num_train_steps must be positive, got %r." %
                     num_train_steps)
  if num_warmup_steps < 0:
    raise ValueError("num_warmup_steps must not be negative, got %r." %
                     num_warmup_steps)
  step = tf.cast(global_step, tf.float32)
  init_lr = tf.constant(init_lr, dtype=tf.float32)
  done = tf.minimum(step, float(num_train_steps)) / float(num_train_steps)
  learning_rate = init_lr * (1.0 - done)
  if num_warmup_steps:
    warmup_rate = init_lr * step / float(num_warmup_steps)
    learning_rate = tf.where(step < float(num_warmup_steps), warmup_rate,
                             learning_rate)
  return learning_rate


def peak_learning_rate(init_lr, num_train_steps, num_warmup_steps):
  """The highest rate learning_rate_schedule gives at steps 0..N-1.

  The rate of the last warmup step, (W - 1) / W of init_lr, or where the
  warmup joins the decay line at step W, whichever is higher; when the
  warmup lasts the whole run (W >= N) the last step's (N - 1) / W.
  """
  if not num_warmup_steps:
    return init_lr
  last_step = num_train_steps - 1
  warmup_peak = init_lr * min(num_warmup_steps - 1, last_step) / float(
      num_warmup_steps)
  if num_warmup_steps > last_step:
    return warmup_peak
  return max(warmup_peak,
             init_lr * (1.0 - num_warmup_steps / float(num_train_steps)))


def create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps, use_tpu,
                     use_horovod=False, scale_learning_rate=True,
                     loss_scale=None, fp16_allreduce=False, fused=True):
  """Returns the op that does one training step on `loss`.

  The step computes the gradients of all trainable variables (averaged over
  the Horovod ranks when `use_horovod`), clips them to a global norm of 1.0,
  applies AdamWeightDecayOptimizer with weight decay 0.01 (not on LayerNorm
  or bias variables) and then adds 1 to the global step.

  With `loss_scale` the gradients are computed on loss * scale and divided
  by the scale before clipping. When any of them is not finite the step
  changes no variable or moment (the global step still counts it, so a run
  always ends), and the scale is adjusted (see DynamicLossScale). Under
  Horovod every rank sees the same averaged gradients, so all ranks skip
  the same steps.

  Args:
    loss: scalar float tensor.
    init_lr: float, the peak learning rate (see learning_rate_schedule).
    num_train_steps: int, the step at which the learning rate reaches 0.
    num_warmup_steps: int, the length of the linear warmup.
    use_tpu: bool, wrap the optimizer in a CrossShardOptimizer.
    use_horovod: bool, average gradients over Horovod ranks. The caller must
      have called hvd.init() and broadcast the initial variables.
    scale_learning_rate: bool, with Horovod multiply `init_lr` by hvd.size()
      (the usual recipe). Pass False to keep `init_lr` as given.
    loss_scale: a DynamicLossScale, or None for no loss scaling.
    fp16_allreduce: with Horovod, send the gradients as float16 in the
      all-reduce (hvd.Compression.fp16): half the traffic, less precision.
      By default they are all-reduced in float32.
    fused: AdamWeightDecayOptimizer's one-pass update (the default); False
      gives Google's chain of elementwise ops (the same formula).
  """
  global_step = tf.compat.v1.train.get_or_create_global_step()
  hvd = None
  if use_horovod:
    import horovod.tensorflow as hvd  # pylint: disable=g-import-not-at-top
    if scale_learning_rate:
      init_lr *= hvd.size()

  learning_rate = learning_rate_schedule(init_lr, global_step, num_train_steps,
                                         num_warmup_steps)
  optimizer = AdamWeightDecayOptimizer(
      learning_rate=learning_rate,
      weight_decay_rate=0.01,
      beta_1=0.9,
      beta_2=0.999,
      epsilon=1e-6,
      exclude_from_weight_decay=EXCLUDE_FROM_WEIGHT_DECAY,
      fused=fused)
  if use_tpu:
    optimizer = tf.compat.v1.tpu.CrossShardOptimizer(optimizer)
  adamw = optimizer
  if hvd is not None:
    # Its compute_gradients() averages the gradients over the ranks.
    optimizer = hvd.DistributedOptimizer(
        optimizer, compression=(hvd.Compression.fp16 if fp16_allreduce
                                else hvd.Compression.none))

  tvars = tf.compat.v1.trainable_variables()
  scaled_loss = loss if loss_scale is None else loss_scale.scale_loss(loss)
  grads_and_vars = optimizer.compute_gradients(scaled_loss, tvars)
  # Embedding gradients arrive as IndexedSlices, whose norm TensorFlow takes
  # over the slices, counting a repeated token's rows separately. Made dense,
  # they are clipped by the true global norm; AdamW needs them dense anyway.
  with tf.name_scope("dense_gradients"):
    grads = [tf.convert_to_tensor(grad) if isinstance(grad, tf.IndexedSlices)
             else grad for grad, _ in grads_and_vars]
  if loss_scale is None:
    # Clipping the averaged gradients keeps every rank's update identical.
    grads, _ = tf.clip_by_global_norm(grads, clip_norm=1.0)
    update_op = optimizer.apply_gradients(
        zip(grads, tvars), global_step=global_step)
  else:
    grads = loss_scale.unscale(grads)
    finite = all_finite(grads)
    grads, _ = tf.clip_by_global_norm(grads, clip_norm=1.0)
    # Horovod's apply_gradients only delegates (the all-reduce happened in
    # compute_gradients), so the AdamW instance can be called directly.
    update_op = tf.group(
        adamw.apply_gradients(zip(grads, tvars), skip=tf.logical_not(finite)),
        loss_scale.update(finite))

  # The optimizer leaves the global step alone (as Google's does); count the
  # step once the update is done, so the learning rate of this step is read
  # before the increment.
  with tf.control_dependencies([update_op]):
    increment_op = global_step.assign_add(1)
  return tf.group(update_op, increment_op, name="train_op")


def all_finite(tensors):
  """A scalar bool tensor: no element of `tensors` (None ignored) is inf/NaN."""
  return tf.reduce_all([tf.reduce_all(tf.math.is_finite(tensor))
                        for tensor in tensors if tensor is not None])


class DynamicLossScale(object):
  """Dynamic loss scaling for float16 training, as NVIDIA's BERT does it.

  Small gradients flush to zero in float16, so the loss is multiplied by a
  large scale before backpropagation and the gradients divided by it after.
  If the scale is too large, a gradient overflows: that step's update is
  skipped and the scale halved (down to 1). After `growth_steps` finite steps
  in a row it is doubled. Each skipped step is logged (a WARNING line), and
  TensorBoard gets the summaries `loss_scale` and `skipped_steps`.

  Its state is three non-trainable variables, saved in the checkpoints:
  `loss_scale/scale` (float32), `loss_scale/good_steps` and
  `loss_scale/skipped_steps` (int64).
  """

  def __init__(self, initial_scale=2.0 ** 15, growth_steps=2000):
    """Creates the variables (call inside the graph being trained)."""
    self.growth_steps = growth_steps
    with tf.compat.v1.variable_scope("loss_scale"):
      self.scale = tf.compat.v1.get_variable(
          "scale", [], tf.float32, trainable=False,
          initializer=tf.compat.v1.constant_initializer(initial_scale))
      self.good_steps = tf.compat.v1.get_variable(
          "good_steps", [], tf.int64, trainable=False,
          initializer=tf.compat.v1.zeros_initializer())
      self.skipped_steps = tf.compat.v1.get_variable(
          "skipped_steps", [], tf.int64, trainable=False,
          initializer=tf.compat.v1.zeros_initializer())
    tf.compat.v1.summary.scalar("loss_scale", self.scale)
    tf.compat.v1.summary.scalar("skipped_steps", self.skipped_steps)

  def scale_loss(self, loss):
    """The loss to differentiate: float32 loss times the scale."""
    return tf.cast(loss, tf.float32) * self.scale

  def unscale(self, grads):
    """The true gradients: each one divided by the scale (None stays)."""
    inverse = 1.0 / self.scale
    return [None if grad is None else grad * tf.cast(inverse, grad.dtype)
            for grad in grads]

  def update(self, finite):
    """The op that adjusts the scale after a step (finite: scalar bool)."""
    good_steps = tf.where(finite, self.good_steps + 1,
                          tf.zeros_like(self.good_steps))
    grow = good_steps >= self.growth_steps
    scale = tf.where(finite,
                     tf.where(grow, self.scale * 2.0, self.scale),
                     tf.maximum(self.scale / 2.0, 1.0))
    good_steps = tf.where(grow, tf.zeros_like(good_steps), good_steps)
    skipped = self.skipped_steps + tf.cast(tf.logical_not(finite), tf.int64)
    # To stderr, which TF_CPP_MIN_LOG_LEVEL does not silence.
    log = tf.cond(finite, tf.no_op, lambda: tf.print(
        "WARNING: skipped a training step: the gradients overflowed "
        "(inf/NaN) at loss scale", self.scale, "- the scale is now", scale,
        "- skipped steps so far:", skipped, output_stream=sys.stderr))
    with tf.control_dependencies([log]):
      return tf.group(self.scale.assign(scale),
                      self.good_steps.assign(good_steps),
                      self.skipped_steps.assign(skipped))


class AdamWeightDecayOptimizer(tf.compat.v1.train.Optimizer):
  """Adam with decoupled weight decay, as used to pre-train BERT.

  Like Google's version it has no bias correction of the moments, and the
  weight decay is added to the Adam update (not to the gradient), so it does
  not interact with the moment estimates. The moments are variables named
  `<variable>/adam_m` and `<variable>/adam_v`.
  """

  def __init__(self,
               learning_rate,
               weight_decay_rate=0.0,
               beta_1=0.9,
               beta_2=0.999,
               epsilon=1e-6,
               exclude_from_weight_decay=None,
               name="AdamWeightDecayOptimizer",
               fused=True):
    """Constructs the optimizer; `learning_rate` may be a float or tensor.

    fused: update each variable with TensorFlow's Adam kernel (one pass
    over it) instead of Google's chain of elementwise ops (about ten). The
    same formula; the results differ by float rounding only. The kernel
    takes resource variables only: reference variables (tf.get_variable
    after tf.compat.v1.disable_v2_behavior(), as in Google's scripts) get
    Google's update whatever fused says.
    """
    super(AdamWeightDecayOptimizer, self).__init__(False, name)
    self.learning_rate = learning_rate
    self.weight_decay_rate = weight_decay_rate
    self.beta_1 = beta_1
    self.beta_2 = beta_2
    self.epsilon = epsilon
    self.exclude_from_weight_decay = exclude_from_weight_decay
    self.fused = fused

  def apply_gradients(self, grads_and_vars, global_step=None, name=None,
                      skip=None):
    """Returns an op applying one AdamW update to every (gradient, variable).

    Pairs whose gradient is None are skipped. `global_step` is accepted for
    the Optimizer interface but not incremented; create_optimizer does that.
    `skip` (optional scalar bool tensor): when true, every variable and
    moment keeps its value (a step whose float16 gradients overflowed).
    """
    del global_step  # Counted by the caller, as in Google's BERT.
    with tf.name_scope(self._name):
      pairs = []
      for grad, param in grads_and_vars:
        if grad is None or param is None:
          continue
        if isinstance(grad, tf.IndexedSlices):
          # Embedding gradients arrive sparse; the moments are dense anyway.
          grad = tf.convert_to_tensor(grad)
        param_name = self._get_variable_name(param.name)
        pairs.append((grad, param, param_name,
                      self._moment(param, param_name + "/adam_m"),
                      self._moment(param, param_name + "/adam_v")))
      if not (self.fused and all(
          resource_variable_ops.is_resource_variable(var)
          for pair in pairs for var in (pair[1], pair[3], pair[4]))):
        return tf.group(*[self._unfused_update(skip, *pair)
                          for pair in pairs], name=name)
      if skip is None:
        return tf.group(*[self._fused_update(*pair) for pair in pairs],
                        name=name)
      # One branch per step, not a select per element.
      return tf.cond(skip, tf.no_op, lambda: tf.group(
          *[self._fused_update(*pair) for pair in pairs]), name=name)

  def _fused_update(self, grad, param, param_name, m, v):
    """The update in one pass per variable (the decay, if any, in another).

    TensorFlow's Adam kernel with both beta powers 0 has no bias correction
    and computes m, v and param - lr * m / (sqrt(v) + epsilon) element by
    element in one pass, so it is this optimizer's update without the decay.
    The decay lr * rate * param is taken from the old param first.
    """
    decay = None
    if self._do_use_weight_decay(param_name):
      decay = param.assign_sub(
          self.learning_rate * self.weight_decay_rate * param.read_value(),
          read_value=False)
    with tf.control_dependencies([decay] if decay is not None else []):
      zero = tf.constant(0.0, dtype=param.dtype.base_dtype)
      return tf.raw_ops.ResourceApplyAdam(
          var=param.handle, m=m.handle, v=v.handle, beta1_power=zero,
          beta2_power=zero,
          lr=tf.cast(self.learning_rate, param.dtype.base_dtype),
          beta1=tf.constant(self.beta_1, param.dtype.base_dtype),
          beta2=tf.constant(self.beta_2, param.dtype.base_dtype),
          epsilon=tf.constant(self.epsilon, param.dtype.base_dtype),
          grad=grad, use_locking=False)

  def _unfused_update(self, skip, grad, param, param_name, m, v):
    """The update as Google's BERT writes it: one op per term."""
    next_m = self.beta_1 * m + (1.0 - self.beta_1) * grad
    next_v = self.beta_2 * v + (1.0 - self.beta_2) * tf.square(grad)
    update = next_m / (tf.sqrt(next_v) + self.epsilon)
    if self._do_use_weight_decay(param_name):
      update += self.weight_decay_rate * param
    next_param = param - self.learning_rate * update
    if skip is not None:
      next_param = tf.where(skip, param, next_param)
      next_m = tf.where(skip, m, next_m)
      next_v = tf.where(skip, v, next_v)
    return tf.group(param.assign(next_param), m.assign(next_m),
                    v.assign(next_v))

  def _moment(self, param, moment_name):
    """Creates a zero-initialised, non-trainable slot shaped like `param`."""
    return tf.compat.v1.get_variable(
        name=moment_name,
        shape=param.shape.as_list(),
        dtype=param.dtype.base_dtype,
        trainable=False,
        initializer=tf.compat.v1.zeros_initializer())

  def _do_use_weight_decay(self, param_name):
    """Whether to apply weight decay to the variable named `param_name`."""
    if not self.weight_decay_rate:
      return False
    for pattern in self.exclude_from_weight_decay or ():
      if re.search(pattern, param_name) is not None:
        return False
    return True

  def _get_variable_name(self, param_name):
    """Returns the variable name without its ":0" output suffix."""
    match = re.match("^(.*):\\d+$", param_name)
    if match is not None:
      param_name = match.group(1)
    return param_name
