"""SessionRunHooks of the trainers: step watchdog, throughput, checksums."""

import hashlib
import os
import sys
import threading
import time

import numpy as np
import tensorflow as tf

import temporary_files

tf1 = tf.compat.v1

TIMEOUT_EXIT_STATUS = 3


class StepTimeoutHook(tf1.train.SessionRunHook):
  """Aborts the process when no training step finishes in time.

  A watchdog thread starts when the session is ready. If `timeout_secs` pass
  without a finished step (a hung input, or a Horovod peer that hangs
  instead of dying) it logs why and calls os._exit, so that mpirun or
  horovodrun tear the job down instead of waiting forever. The clock runs
  from session creation, so it also covers a rank waiting in the initial
  broadcast (e.g. for rank 0 to finish an --eval_every_steps evaluation).
  """

  def __init__(self, timeout_secs):
    self._timeout_secs = timeout_secs
    self._last_progress = time.time()
    self._stop = None

  def after_create_session(self, session, coord):
    self._last_progress = time.time()
    # A fresh event per session, so an old watchdog never wakes up again.
    self._stop = threading.Event()
    threading.Thread(target=self._watch, args=(self._stop,),
                     daemon=True).start()

  def after_run(self, run_context, run_values):
    self._last_progress = time.time()

  def end(self, session):
    if self._stop is not None:
      self._stop.set()

  def _watch(self, stop):
    """Checks a few times per timeout; exits the process on a stall."""
    while not stop.wait(min(1.0, self._timeout_secs / 4.0)):
      waited = time.time() - self._last_progress
      if waited > self._timeout_secs:
        message = ("No training step finished in %.0f s (--step_timeout_secs "
                   "%d): a worker or the input is stuck. Aborting; rerun the "
                   "same command to resume from the last checkpoint." % (
                       waited, self._timeout_secs))
        tf1.logging.error(message)
        sys.stderr.write("ERROR: %s\n" % message)
        sys.stderr.flush()
        # os._exit skips atexit: remove this process's temporaries first.
        temporary_files.remove_registered()
        os._exit(TIMEOUT_EXIT_STATUS)  # pylint: disable=protected-access


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
