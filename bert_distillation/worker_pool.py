# coding=utf-8
"""A process pool that notices when a worker dies.

multiprocessing.Pool quietly replaces a worker that is killed (by `kill -9`
or the out-of-memory killer) and waits forever for the task that worker had.
run_tasks() instead stops the other workers and raises WorkerDied naming the
process, how it ended and the task it was working on.

Workers are forked, so they share the modules (and data) the parent loaded.
"""

import multiprocessing
import os
import pickle
import queue
import signal
import traceback

# How often the parent checks its workers while no result arrives.
POLL_SECONDS = 0.5
# How long stopped workers get to clean up after SIGTERM before SIGKILL.
STOP_GRACE_SECONDS = 5.0


class WorkerDied(RuntimeError):
  """A worker process ended without finishing its task."""


class WorkerError(RuntimeError):
  """A task raised an exception that could not be sent back as itself."""


def describe_exit(exitcode):
  """Says how a process ended from its exit code, e.g. 'was killed by SIGKILL'."""
  if exitcode is not None and exitcode < 0:
    name = signal.Signals(-exitcode).name
    if -exitcode == signal.SIGKILL:
      name += " (the out-of-memory killer sends this)"
    return "was killed by %s" % name
  return "exited with status %s" % exitcode


def _sendable(error):
  """`error` if it survives pickling, else a WorkerError with its traceback."""
  try:
    pickle.loads(pickle.dumps(error))
    return error
  except Exception:  # pylint: disable=broad-except
    return WorkerError("".join(traceback.format_exception(error)))


def _worker(function, initializer, initargs, tasks, results):
  """Runs tasks until it reads None; reports each start, result or error."""
  try:
    if initializer is not None:
      initializer(*initargs)
  except Exception as error:  # pylint: disable=broad-except
    results.put(("failed", None, _sendable(error)))
    return
  while True:
    item = tasks.get()
    if item is None:
      return
    index, task = item
    results.put(("started", index, os.getpid()))
    try:
      result = function(task)
    except Exception as error:  # pylint: disable=broad-except
      results.put(("failed", index, _sendable(error)))
      return
    results.put(("done", index, result))


def _stop(workers, finished):
  """Ends the workers; unless they `finished`, SIGTERM first (they clean up).

  Any worker still alive after STOP_GRACE_SECONDS gets SIGKILL.
  """
  if not finished:
    for worker in workers:
      if worker.is_alive():
        worker.terminate()
  for worker in workers:
    worker.join(STOP_GRACE_SECONDS)
    if worker.is_alive():
      worker.kill()
      worker.join()


def run_tasks(function, tasks, num_workers, initializer=None, initargs=(),
              describe_task=repr):
  """Yields (index, function(tasks[index])) as workers finish, in any order.

  An exception in a task is raised here. A worker that dies raises
  WorkerDied naming its PID, how it ended and describe_task(task) of the
  task it held. The workers are stopped when the caller stops iterating.
  """
  context = multiprocessing.get_context("fork")
  task_queue = context.Queue()
  results = context.Queue()
  for index, task in enumerate(tasks):
    task_queue.put((index, task))
  for _ in range(num_workers):
    task_queue.put(None)
  workers = [context.Process(target=_worker, daemon=True,
                             args=(function, initializer, initargs,
                                   task_queue, results))
             for _ in range(num_workers)]
  for worker in workers:
    worker.start()
  running = {}  # worker PID -> index of its task
  finished = 0
  suspect = None
  try:
    while finished < len(tasks):
      try:
        kind, index, value = results.get(timeout=POLL_SECONDS)
      except queue.Empty:
        # A worker's last messages may still be on their way: a dead worker
        # counts only when a further poll brought nothing from it.
        death = _dead_worker(workers, running, tasks, describe_task)
        if death is not None and death == suspect:
          raise WorkerDied(death)
        suspect = death
        continue
      suspect = None
      if kind == "started":
        running[value] = index
      elif kind == "failed":
        raise value
      else:
        running = {pid: i for pid, i in running.items() if i != index}
        finished += 1
        yield index, value
  finally:
    # Finished workers read the final None and end by themselves.
    _stop(workers, finished=finished == len(tasks))
    task_queue.close()
    results.close()


def _dead_worker(workers, running, tasks, describe_task):
  """Describes a worker that ended before its tasks were done, or None."""
  for worker in workers:
    if worker.exitcode is None:
      continue
    index = running.get(worker.pid)
    if index is not None:
      return "worker process %d %s while working on %s" % (
          worker.pid, describe_exit(worker.exitcode),
          describe_task(tasks[index]))
    if worker.exitcode != 0:
      return "worker process %d %s before it took a task" % (
          worker.pid, describe_exit(worker.exitcode))
  if all(worker.exitcode is not None for worker in workers):
    return "every worker process ended, but some tasks have no result"
  return None
