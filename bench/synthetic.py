# coding=utf-8
"""What the benchmarks share: configs, full records, FLOPs, the matmul peak.

The benchmarks time speed, not accuracy, so random tokens and random
weights are enough; every record is full length with every position used.
The one exception is the teacher whose bf16 labels are compared with its
fp32 labels: its word embeddings are scaled up (save_teacher_checkpoint) so
that its distributions are peaked like a trained BERT's, not flat.
"""

import time

import numpy as np
import tensorflow as tf

import modeling
from bert_distillation import record_format

tf1 = tf.compat.v1

BERT_VOCAB_SIZE = 30522
CLS_ID = 2
SEP_ID = 3
FIRST_WORD_ID = 5  # Ids below are the special tokens of the test vocabs.


def bert_config_dict(num_hidden_layers, hidden_size,
                     vocab_size=BERT_VOCAB_SIZE):
  """A bert_config with BERT-Base's proportions: 64 per head, 4x inner."""
  return {
      "vocab_size": vocab_size, "hidden_size": hidden_size,
      "num_hidden_layers": num_hidden_layers,
      "num_attention_heads": hidden_size // 64,
      "intermediate_size": 4 * hidden_size, "hidden_act": "gelu",
      "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
      "max_position_embeddings": 512, "type_vocab_size": 2,
      "initializer_range": 0.02,
  }


def full_length_examples(count, vocab_size, seq_length, predictions, seed=0):
  """Yields `count` pretraining tf.train.Examples with random tokens.

  Every sequence fills seq_length (two segments of equal length) and has
  `predictions` masked positions, all weighted 1.
  """
  rng = np.random.RandomState(seed)
  segment_ids = [0] * (seq_length // 2) + [1] * (seq_length - seq_length // 2)
  for _ in range(count):
    input_ids = rng.randint(FIRST_WORD_ID, vocab_size, size=seq_length)
    input_ids[0], input_ids[-1] = CLS_ID, SEP_ID
    positions = np.sort(rng.choice(np.arange(1, seq_length - 1), predictions,
                                   replace=False))
    yield record_format.make_pretraining_example(
        input_ids=input_ids, input_mask=[1] * seq_length,
        segment_ids=segment_ids, masked_lm_positions=positions,
        masked_lm_ids=input_ids[positions],
        masked_lm_weights=[1.0] * predictions,
        next_sentence_label=int(rng.randint(2)))


def save_teacher_checkpoint(config, prefix, seq_length, predictions,
                            embedding_scale=1.0, seed=3):
  """Saves random BERT + heads as a Google-format checkpoint.

  embedding_scale multiplies the word embeddings, which the masked-LM head
  shares: at 1 the distributions are nearly flat (top-1 about 1/vocab);
  larger values make them as peaked as a trained BERT's.
  """
  with tf.Graph().as_default():
    tf1.set_random_seed(seed)
    input_ids = tf1.placeholder(tf.int32, [None, seq_length])
    positions = tf1.placeholder(tf.int32, [None, predictions])
    model, _, _ = modeling.pretraining_model(config, False, input_ids,
                                             positions)
    table = model.get_embedding_table()
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      if embedding_scale != 1.0:
        sess.run(table.assign(table * embedding_scale))
      tf1.train.Saver().save(sess, prefix)


def forward_flops(config, seq_length, predictions):
  """FLOPs of one sequence's forward pass, heads included (multiply-add = 2).

  The masked-LM head runs at `predictions` positions. A training step costs
  about 3x this (the backward pass takes two matmuls per forward one).
  """
  hidden, inner = config.hidden_size, config.intermediate_size
  per_layer = (2 * seq_length * hidden * 3 * hidden      # query, key, value
               + 2 * 2 * seq_length * seq_length * hidden  # scores, context
               + 2 * seq_length * hidden * hidden        # attention output
               + 2 * 2 * seq_length * hidden * inner)    # feed-forward
  heads = (2 * hidden * hidden + 2 * hidden * 2          # pooler, next sent.
           + predictions * (2 * hidden * hidden          # MLM transform
                            + 2 * hidden * config.vocab_size))
  return config.num_hidden_layers * per_layer + heads


def timed_runs(sess, fetch, runs):
  """Runs `fetch` once to warm up, then `runs` times.

  Returns (wall seconds of each run, process CPU seconds of all runs).
  """
  sess.run(fetch)
  seconds = []
  cpu_start = time.process_time()
  for _ in range(runs):
    start = time.time()
    sess.run(fetch)
    seconds.append(time.time() - start)
  return seconds, time.process_time() - cpu_start


def measure_gemm(size, dtype=tf.float32, session_config=None, runs=5):
  """Times an n x n x n tf.matmul in `dtype`; returns timed_runs' result."""
  with tf.Graph().as_default():
    left = tf.Variable(tf.cast(tf.random.normal([size, size]), dtype))
    right = tf.Variable(tf.cast(tf.random.normal([size, size]), dtype))
    # Reduce to a scalar so that fetching costs nothing.
    product = tf.reduce_sum(tf.matmul(left, right)[:1, :1])
    with tf1.Session(config=session_config) as sess:
      sess.run(tf1.global_variables_initializer())
      return timed_runs(sess, product, runs)
