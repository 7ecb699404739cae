# coding=utf-8
"""Batch-1 latency of an exported model, measured in a process of its own.

A client sends texts to an export of serving_export.py the way a server's
caller would: the SavedModel gets raw text (it tokenizes in its graph),
TFLite gets FullTokenizer's ids, made in Python. measure_one() warms it up,
times each text alone at its own length, optionally times batches, and
reads the process's peak resident memory; run_measurement() runs it in a
fresh Python (thread settings and memory are per process), as
`python -m bert_distillation.serving_latency '<spec json>'`.

Used by bench/bench_serving.py and run_demo.py.
"""

import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 32


def percentile_ms(seconds, q):
  """The q-th percentile of a list of seconds, in milliseconds."""
  return float(np.percentile(np.asarray(seconds) * 1000.0, q))


class SavedModelClient(object):
  """Raw text in, probabilities out, through the default signature."""

  def __init__(self, folder, threads):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import tensorflow_text  # pylint: disable=g-import-not-at-top,unused-import
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    self.tf = tf
    self.model = tf.saved_model.load(os.path.join(folder, "1"))
    self.signature = self.model.signatures["serving_default"]

  def __call__(self, texts):
    return self.signature(text_a=self.tf.constant(texts))[
        "probabilities"].numpy()


class TfliteClient(object):
  """FullTokenizer's ids in Python, the interpreter for the model."""

  def __init__(self, folder, threads):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from bert_distillation import classifier_data  # pylint: disable=g-import-not-at-top
    import tokenization  # pylint: disable=g-import-not-at-top
    with open(os.path.join(folder, "serving.json")) as f:
      description = json.load(f)
    self.tokenizer = tokenization.FullTokenizer(
        os.path.join(folder, "vocab.txt"), description["do_lower_case"])
    self.classifier_data = classifier_data
    self.max_seq_length = description["max_seq_length"]
    interpreter = tf.lite.Interpreter(
        model_path=os.path.join(folder, "model.tflite"), num_threads=threads)
    self.runner = interpreter.get_signature_runner()

  def __call__(self, texts):
    rows = [self.classifier_data.example_ids(
        self.classifier_data.Example(text, None, None, False, ""),
        self.tokenizer, self.max_seq_length)[0] for text in texts]
    width = max(len(row) for row in rows)
    ids = np.zeros([len(rows), width], np.int32)
    mask = np.zeros_like(ids)
    for index, row in enumerate(rows):
      ids[index, :len(row)] = row
      mask[index, :len(row)] = 1
    return self.runner(input_ids=ids, input_mask=mask,
                       segment_ids=np.zeros_like(ids))["probabilities"]


def measure_one(spec):
  """Latency, outputs, optional batch throughput and peak RSS of one export.

  spec: folder (an export), format ("saved_model" or a TFLite one), threads,
  texts (a JSON file of strings), warmup (untimed requests first), batch
  (whether to time batches of BATCH too).
  """
  with open(spec["texts"]) as f:
    texts = json.load(f)
  if spec["format"] == "saved_model":
    client = SavedModelClient(spec["folder"], spec["threads"])
  else:
    client = TfliteClient(spec["folder"], spec["threads"])
  for text in texts[:spec["warmup"]]:
    client([text])
  seconds, probabilities = [], []
  for text in texts:
    start = time.perf_counter()
    probabilities.append(client([text])[0])
    seconds.append(time.perf_counter() - start)
  result = {"p50_ms": percentile_ms(seconds, 50),
            "p99_ms": percentile_ms(seconds, 99),
            "probabilities": np.asarray(probabilities).tolist()}
  if spec.get("batch"):
    client(texts[:BATCH])
    start = time.perf_counter()
    for begin in range(0, len(texts), BATCH):
      client(texts[begin:begin + BATCH])
    result["batch_seq_per_s"] = len(texts) / (time.perf_counter() - start)
  # ru_maxrss is in KiB on Linux.
  result["peak_rss_mb"] = resource.getrusage(
      resource.RUSAGE_SELF).ru_maxrss / 1024.0
  return result


def run_measurement(spec, log_path):
  """measure_one(spec) in a fresh process; returns its result dict.

  Its stderr goes to log_path; a failure raises RuntimeError with the log's
  tail.
  """
  command = [sys.executable, "-m", "bert_distillation.serving_latency",
             json.dumps(spec)]
  print("$ measure %s (%s, %d thread(s))" % (spec["folder"], spec["format"],
                                             spec["threads"]), flush=True)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
  with open(log_path, "w") as log:
    completed = subprocess.run(command, cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=log,
                               text=True, check=False)
  if completed.returncode != 0:
    with open(log_path) as log:
      raise RuntimeError("Measuring %s failed; %s ends:\n%s" % (
          spec["folder"], log_path, log.read()[-3000:]))
  return json.loads(completed.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
  sys.path.insert(0, REPO)
  print(json.dumps(measure_one(json.loads(sys.argv[1]))))
