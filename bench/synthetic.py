# coding=utf-8
"""Synthetic inputs shared by the benchmarks: configs and full records.

The benchmarks time speed, not accuracy, so random tokens and random
weights are enough; every record is full length with every position used.
"""

import numpy as np

import record_format

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
