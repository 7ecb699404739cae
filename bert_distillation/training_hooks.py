"""SessionRunHooks of the trainers: watchdog, non-finite checks, throughput."""

import hashlib
import os
import sys
import threading
import time

import numpy as np
import tensorflow as tf

from bert_distillation import temporary_files

tf1 = tf.compat.v1

TIMEOUT_EXIT_STATUS = 3

# --step_timeout_secs of the distributed trainer: without a watchdog a frozen
# rank under mpirun hangs the job for ever.
DISTRIBUTED_STEP_TIMEOUT_SECS = 1800


class Watchdog(object):
  """Aborts the process when the run stops making progress.

  watch(seconds, message) starts a phase: from then on, if `seconds` pass
  without progress() (a finished step), a thread logs `message % waited`
  and calls os._exit, so that mpirun or horovodrun tear the job down
  instead of waiting forever for a hung rank or input. pause() stops
  watching until the next watch(). One thread serves the whole run.
  """

  def __init__(self):
    self._lock = threading.Lock()
    self._seconds = None
    self._message = ""
    self._last_progress = time.time()
    self._thread = None

  def watch(self, seconds, message):
    """Aborts unless progress() follows within `seconds` (and each time)."""
    with self._lock:
      self._seconds = seconds
      self._message = message
      self._last_progress = time.time()
      if self._thread is None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

  def progress(self):
    """Restarts the clock of the current phase."""
    self._last_progress = time.time()

  def pause(self):
    """Stops watching until the next watch()."""
    with self._lock:
      self._seconds = None

  def _run(self):
    """Checks a few times a second; exits the process on a stall."""
    while True:
      time.sleep(0.25)
      with self._lock:
        waited = time.time() - self._last_progress
        if self._seconds is None or waited <= self._seconds:
          continue
        message = self._message % waited
      tf1.logging.error(message)
      sys.stderr.write("ERROR: %s\n" % message)
      sys.stderr.flush()
      # os._exit skips atexit: remove this process's temporaries first.
      temporary_files.remove_registered()
      os._exit(TIMEOUT_EXIT_STATUS)  # pylint: disable=protected-access


class StepTimeoutHook(tf1.train.SessionRunHook):
  """Watches the steps of a session (training or evaluation) with a Watchdog.

  The clock starts when the session is ready, so it also covers a rank
  waiting in the initial broadcast, and restarts after every step. The
  first step of a session may take FIRST_STEP_FACTOR times as long: it also
  optimises the graph and waits for the slowest rank to start. When the
  session ends the watchdog pauses.
  """

  FIRST_STEP_FACTOR = 4

  def __init__(self, watchdog, timeout_secs, message):
    """`message` has one %.0f for the seconds waited."""
    self._watchdog = watchdog
    self._timeout_secs = timeout_secs
    self._message = message
    self._first_step = True

  def after_create_session(self, session, coord):
    self._first_step = True
    self._watchdog.watch(self._timeout_secs * self.FIRST_STEP_FACTOR,
                         self._message)

  def after_run(self, run_context, run_values):
    if self._first_step:
      self._first_step = False
      self._watchdog.watch(self._timeout_secs, self._message)
    else:
      self._watchdog.progress()

  def end(self, session):
    self._watchdog.pause()


class NonFiniteTrainingError(RuntimeError):
  """Training produced a NaN/Inf loss or weights; `step` says when."""

  def __init__(self, step, what):
    super(NonFiniteTrainingError, self).__init__(
        "%s at global step %d" % (what, step))
    self.step = step
    self.what = what


# model_fn adds the training loss here for NonFiniteLossHook.
LOSS_COLLECTION = "distillation_training_loss"


class NonFiniteLossHook(tf1.train.SessionRunHook):
  """Stops training at the first step whose loss is NaN or infinite.

  It raises NonFiniteTrainingError from after_run. Passed to
  estimator.train it runs before the checkpoint saver's after_run, so the
  step's weights are not saved. (The estimator's own NanTensorHook misses
  an infinite loss and does not say which step.)
  """

  def begin(self):
    self._loss = tf1.get_collection(LOSS_COLLECTION)[0]
    self._step = tf1.train.get_global_step()

  def before_run(self, run_context):
    return tf1.train.SessionRunArgs([self._loss, self._step])

  def after_run(self, run_context, run_values):
    loss, step = run_values.results
    if not np.isfinite(loss):
      raise NonFiniteTrainingError(step, "the loss is %s" % loss)


class FiniteCheckpointListener(tf1.train.CheckpointSaverListener):
  """Refuses to save a checkpoint whose trainable weights are not finite.

  A NaN/Inf checkpoint would become the latest one, and every rerun would
  resume from it. Raises NonFiniteTrainingError instead of saving (also in
  the final save at the end of training).
  """

  def begin(self):
    self._all_finite = tf.reduce_all([
        tf.reduce_all(tf.math.is_finite(variable))
        for variable in tf1.trainable_variables()
        if variable.dtype.base_dtype.is_floating])

  def before_save(self, session, global_step_value):
    if not session.run(self._all_finite):
      raise NonFiniteTrainingError(global_step_value,
                                   "the weights are NaN or infinite")


class ThroughputHook(tf1.train.SessionRunHook):
  """Measures training sequences/s, leaving out each session's first steps.

  The clock starts after `skip_steps` steps of a session (graph optimisation
  and warm-up happen there) and stops at the session's last step; in between
  it covers everything (input, summaries, periodic checkpoints). Logs the
  rate every `every_n_steps` steps. Totals accumulate over several
  estimator.train calls; `seconds` is the wall time of the sessions.
  """

  def __init__(self, sequences_per_step, every_n_steps, skip_steps=2):
    self._sequences_per_step = sequences_per_step
    self._every_n_steps = max(1, every_n_steps)
    self._skip_steps = skip_steps
    self.steps = 0
    self.seconds = 0.0
    self.timed_steps = 0
    self.timed_seconds = 0.0

  def after_create_session(self, session, coord):
    self._session_start = time.time()
    self._session_steps = 0
    self._mark = None
    self._last_step_end = None

  def after_run(self, run_context, run_values):
    self._session_steps += 1
    self.steps += 1
    self._last_step_end = time.time()
    if self._session_steps == self._skip_steps:
      self._mark = self._last_step_end
    elif self._mark is not None and self.steps % self._every_n_steps == 0:
      tf1.logging.info("%.1f sequences/s", self._sequences_per_step * (
          self._session_steps - self._skip_steps) / (
              self._last_step_end - self._mark))

  def end(self, session):
    self.seconds += time.time() - self._session_start
    if self._mark is not None and self._session_steps > self._skip_steps:
      self.timed_steps += self._session_steps - self._skip_steps
      self.timed_seconds += self._last_step_end - self._mark

  def sequences_per_second(self):
    """The measured rate; falls back to all steps if too few were timed."""
    if self.timed_steps and self.timed_seconds > 0:
      return self._sequences_per_step * self.timed_steps / self.timed_seconds
    if self.seconds > 0:
      return self._sequences_per_step * self.steps / self.seconds
    return 0.0


class VariablesChecksumHook(tf1.train.SessionRunHook):
  """Logs a checksum of all global variables when training ends.

  Ranks of a Horovod job must end with identical variables; comparing the
  logged lines checks that.
  """

  def __init__(self, rank):
    self._rank = rank

  def begin(self):
    self._variables = sorted(tf1.global_variables(), key=lambda v: v.name)

  def end(self, session):
    values = session.run(self._variables)
    digest = hashlib.sha256()
    total = 0.0
    for value in values:
      value = np.asarray(value)
      digest.update(value.tobytes())
      total += float(np.sum(value, dtype=np.float64))
    tf1.logging.info("rank %d variables checksum: sha256=%s sum=%.10g",
                     self._rank, digest.hexdigest(), total)
