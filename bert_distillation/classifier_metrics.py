# coding=utf-8
"""Evaluation metrics of run_classifier.py, computed with numpy.

eval_results.txt holds Google's keys (eval_accuracy, eval_loss, global_step,
loss) and, where GLUE reports more, eval_f1 (MRPC, QQP: of class "1"),
eval_mcc (CoLA: Matthews correlation) and eval_pearson / eval_spearman
(STS-B, a regression, which has no accuracy).
"""

import numpy as np


def accuracy(predictions, labels):
  """The fraction of predictions equal to labels."""
  return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def confusion(predictions, labels, positive=1):
  """(true positives, false positives, false negatives, true negatives)."""
  predicted = np.asarray(predictions) == positive
  actual = np.asarray(labels) == positive
  return (int(np.sum(predicted & actual)), int(np.sum(predicted & ~actual)),
          int(np.sum(~predicted & actual)), int(np.sum(~predicted & ~actual)))


def f1(predictions, labels, positive=1):
  """F1 of the positive class: 2 tp / (2 tp + fp + fn); 0 without any."""
  tp, fp, fn, _ = confusion(predictions, labels, positive)
  return 2.0 * tp / (2 * tp + fp + fn) if tp else 0.0


def matthews(predictions, labels, positive=1):
  """Matthews correlation of a binary task; 0 when a margin is empty."""
  tp, fp, fn, tn = confusion(predictions, labels, positive)
  denominator = float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
  if denominator == 0:
    return 0.0
  return (tp * tn - fp * fn) / np.sqrt(denominator)


def pearson(x, y):
  """Pearson correlation of two sequences (0 when one is constant)."""
  x = np.asarray(x, np.float64) - np.mean(x)
  y = np.asarray(y, np.float64) - np.mean(y)
  denominator = np.sqrt(np.sum(x * x) * np.sum(y * y))
  return float(np.sum(x * y) / denominator) if denominator else 0.0


def ranks(values):
  """1-based ranks; tied values share the mean of their ranks."""
  values = np.asarray(values, np.float64)
  order = np.argsort(values, kind="stable")
  result = np.empty(len(values), np.float64)
  sorted_values = values[order]
  start = 0
  while start < len(values):
    end = start
    while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
      end += 1
    result[order[start:end + 1]] = (start + end) / 2.0 + 1.0
    start = end + 1
  return result


def spearman(x, y):
  """Spearman rank correlation: Pearson's of the (tie-averaged) ranks."""
  return pearson(ranks(x), ranks(y))


def classification_metrics(logits, label_ids, extra=()):
  """eval_accuracy, eval_loss (mean cross-entropy), and `extra` metrics.

  extra: names among "f1", "mcc" (binary tasks, class 1 positive).
  """
  logits = np.asarray(logits, np.float64)
  label_ids = np.asarray(label_ids)
  shifted = logits - logits.max(axis=-1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
  predictions = np.argmax(logits, axis=-1)
  loss = float(-np.mean(log_probs[np.arange(len(label_ids)), label_ids]))
  results = {"eval_accuracy": accuracy(predictions, label_ids),
             "eval_loss": loss}
  if "f1" in extra:
    results["eval_f1"] = f1(predictions, label_ids)
  if "mcc" in extra:
    results["eval_mcc"] = matthews(predictions, label_ids)
  return results


def regression_metrics(scores, targets):
  """eval_loss (mean squared error), eval_pearson and eval_spearman."""
  scores = np.asarray(scores, np.float64)
  targets = np.asarray(targets, np.float64)
  return {"eval_loss": float(np.mean((scores - targets) ** 2)),
          "eval_pearson": pearson(scores, targets),
          "eval_spearman": spearman(scores, targets)}
