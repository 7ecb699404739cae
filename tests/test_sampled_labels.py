"""Tests for sampled teacher labels (--label_sampling, --kd_target sampled).

The estimator: k tokens drawn per masked position from a proposal q, stored
as distinct ids with weights w_i = count_i * p_i / (k * q_i), so that
E[w] = p over the whole vocabulary. The tests check that statistically, the
loss and its gradient against numpy, the records and the trainer's checks,
and a 2-process Horovod run.
"""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

import conftest
from bert_distillation import distillation
from bert_distillation import record_format
from bert_distillation import training_input
from test_teacher_labels import PREDICTIONS
from test_teacher_labels import SCRIPT
from test_teacher_labels import SEQ_LENGTH
from test_teacher_labels import horovodrun
from test_teacher_labels import label_args
from test_teacher_labels import read_records
from test_teacher_labels import teacher  # pylint: disable=unused-import

tf1 = tf.compat.v1

K = 4
VOCAB = 40
DRAWS = 4000  # Independent sampled targets averaged by the tests.


def fixed_teacher_logits(seed=0):
  """One peaked teacher distribution over VOCAB tokens, as logits."""
  return np.random.RandomState(seed).normal(0, 2.0, VOCAB).astype(np.float32)


def softmax(logits, temperature=1.0):
  shifted = logits / temperature - (logits / temperature).max(-1,
                                                              keepdims=True)
  return np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)


def draw_targets(logits, draws, label_temperature=1.0,
                 proposal_temperature=1.0, first_seed=0, rank=0):
  """`draws` sampled labels of one distribution as (ids, weights) [draws, K].

  Each draw is a record of its own (its own seed), as in the labelling
  script.
  """
  sampling = distillation.Sampling(
      label_temperature, proposal_temperature, first_seed, rank)
  batch = np.tile(logits[None, None, :], [draws, 1, 1])
  ids, weights = distillation.sampled_labels(
      tf.constant(batch), K, sampling.record_seeds(tf.range(draws)),
      label_temperature, proposal_temperature)
  return ids.numpy()[:, 0], weights.numpy()[:, 0]


def dense(ids, weights):
  """Scatters [n, K] sparse targets into [n, VOCAB] (padding adds 0)."""
  out = np.zeros([ids.shape[0], VOCAB])
  np.add.at(out, (np.arange(ids.shape[0])[:, None], ids), weights)
  return out


@pytest.mark.parametrize("proposal_temperature", [1.0, 2.0])
def test_sampled_targets_average_to_the_full_distribution(
    proposal_temperature):
  """Mean of DRAWS targets -> p: every token within 5 standard errors.

  The standard error of each token's mean weight is estimated from the
  draws; with 40 tokens, a 5-se miss by chance has probability < 1e-4.
  The top-K target, the same for every draw, misses by the mass it drops.
  """
  logits = fixed_teacher_logits()
  p = softmax(logits)
  targets = dense(*draw_targets(logits, DRAWS,
                                proposal_temperature=proposal_temperature))
  mean = targets.mean(0)
  standard_error = targets.std(0, ddof=1) / np.sqrt(DRAWS)
  # Tokens never drawn have se 0: allow what one draw could have added.
  tolerance = 5 * standard_error + 1e-3 * p.max()
  assert np.all(np.abs(mean - p) <= tolerance), np.abs(mean - p) / tolerance
  assert np.abs(mean - p).max() < 0.01

  top_k = np.argsort(-p)[:K]
  top_k_target = np.zeros(VOCAB)
  top_k_target[top_k] = p[top_k]
  renormalized = top_k_target / top_k_target.sum()
  # The same test rejects the top-k targets, raw and renormalized.
  assert np.sum(np.abs(top_k_target - p) > tolerance) >= VOCAB // 2
  assert np.sum(np.abs(renormalized - p) > tolerance) >= VOCAB // 2
  # The tail the top-k drops is seen by sampling.
  tail = np.argsort(-p)[K:2 * K]
  assert np.all(mean[tail] > 0)


def test_sampled_target_estimates_the_label_temperature():
  """With --label_temperature T the average is softmax(logits / T)."""
  logits = fixed_teacher_logits(1)
  targets = dense(*draw_targets(logits, DRAWS, label_temperature=2.0))
  np.testing.assert_allclose(targets.mean(0), softmax(logits, 2.0),
                             atol=0.015)
  assert np.abs(targets.mean(0) - softmax(logits)).max() > 0.05


def test_sampled_ids_are_distinct_then_padding():
  logits = fixed_teacher_logits(2)
  ids, weights = draw_targets(logits, 200)
  for row_ids, row_weights in zip(ids, weights):
    used = row_weights > 0
    count = used.sum()
    assert 1 <= count <= K
    assert np.all(used[:count]) and not np.any(used[count:])
    assert len(set(row_ids[:count])) == count
    assert np.all(row_ids[count:] == 0)
  # q = p: the weights are counts / K and sum to 1 exactly.
  np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-6)
  assert set(np.round(weights[weights > 0] * K, 5)) <= {1.0, 2.0, 3.0, 4.0}


def test_draws_depend_on_seed_rank_and_record_only():
  logits = fixed_teacher_logits()
  again = draw_targets(logits, 50)
  np.testing.assert_array_equal(again[0], draw_targets(logits, 50)[0])
  other_seed = draw_targets(logits, 50, first_seed=1)[0]
  other_rank = draw_targets(logits, 50, rank=1)[0]
  assert not np.array_equal(again[0], other_seed)
  assert not np.array_equal(again[0], other_rank)
  # Records differ from each other (one seed per record).
  assert len({tuple(row) for row in again[0]}) > 5


# ---------------------------------------------------------------------------
# The loss.


def np_log_softmax(logits):
  shifted = logits - logits.max(-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_sampled_loss_and_gradient_match_numpy(temperature):
  rng = np.random.RandomState(4)
  student = rng.normal(0, 2, [6, VOCAB]).astype(np.float32)
  ids, weights = draw_targets(fixed_teacher_logits(3), 6,
                              label_temperature=temperature,
                              proposal_temperature=1.5)
  position_weights = np.array([1, 1, 0, 1, 1, 1], np.float32)
  with tf.Graph().as_default(), tf1.Session() as session:
    logits = tf.constant(student)
    loss = distillation.masked_lm_soft_loss(
        logits, tf.constant(weights), tf.constant(ids),
        tf.constant(position_weights), "sampled", temperature)
    gradient = tf.gradients(loss, logits)[0]
    loss, gradient = session.run([loss, gradient])
  log_q = np_log_softmax(student.astype(np.float64) / temperature)
  per_position = -(weights * np.take_along_axis(log_q, ids, 1)).sum(-1)
  scale = temperature ** 2 / (position_weights.sum() + 1e-5)
  np.testing.assert_allclose(
      loss, scale * (per_position * position_weights).sum(), rtol=1e-5)
  # d/dz of -sum_i w_i log softmax(z/T)_i = (softmax(z/T) sum(w) - w) / T.
  target = dense(ids, weights)
  expected = (np.exp(log_q) * target.sum(-1, keepdims=True) - target) / (
      temperature) * scale * position_weights[:, None]
  np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-7)


def test_sampled_loss_expectation_is_the_full_loss():
  """Averaged over draws, the sparse loss is the full-distribution loss."""
  teacher_logits = fixed_teacher_logits(5)
  student = np.random.RandomState(6).normal(0, 2, VOCAB).astype(np.float32)
  ids, weights = draw_targets(teacher_logits, DRAWS,
                              proposal_temperature=1.5)
  with tf.Graph().as_default(), tf1.Session() as session:
    students = tf.constant(np.tile(student[None], [DRAWS, 1]))
    sampled = session.run(distillation.soft_cross_entropy(
        students, tf.constant(weights), tf.constant(ids), "sampled"))
    full = session.run(distillation.soft_cross_entropy(
        students[:1], tf.constant(softmax(teacher_logits)[None])))[0]
    top_k = np.argsort(-teacher_logits)[None, :K]
    truncated = session.run(distillation.soft_cross_entropy(
        students[:1], tf.constant(softmax(teacher_logits)[top_k]),
        tf.constant(top_k), "truncated"))[0]
  standard_error = sampled.std(ddof=1) / np.sqrt(DRAWS)
  assert abs(sampled.mean() - full) < 5 * standard_error, (
      sampled.mean(), full, standard_error)
  assert abs(truncated - full) > 20 * standard_error


def test_teacher_kl_matches_numpy():
  rng = np.random.RandomState(7)
  student = rng.normal(0, 2, [5, VOCAB]).astype(np.float32)
  teacher_probs = softmax(rng.normal(0, 2, [5, VOCAB])).astype(np.float32)
  teacher_probs[0, :3] = 0.0  # 0 log 0 counts as 0.
  with tf.Graph().as_default(), tf1.Session() as session:
    kl = session.run(distillation.teacher_kl(tf.constant(student),
                                             tf.constant(teacher_probs)))
  p = teacher_probs.astype(np.float64)
  log_p = np.log(np.where(p > 0, p, 1.0))
  expected = (p * (log_p - np_log_softmax(student.astype(np.float64)))).sum(
      -1)
  np.testing.assert_allclose(kl, expected, rtol=1e-4, atol=1e-6)
  assert np.all(kl > 0)


# ---------------------------------------------------------------------------
# Records and the trainer's checks.


@pytest.fixture(scope="module")
def sampled_run(teacher, tmp_path_factory):
  """Sampled labels of the tiny teacher's records, written by the script."""
  folder = tmp_path_factory.mktemp("sampled")
  output_file = str(folder / "sampled.tfrecord")
  conftest.run_script(SCRIPT, *label_args(
      teacher, teacher["input_file"], output_file, "--truncation_factor", K,
      "--label_sampling", "True", "--random_seed", 7))
  return dict(folder=folder, output_file=output_file,
              records=read_records(output_file))


def test_sampled_records_round_trip_through_the_schema(teacher, sampled_run):
  vocab_size = teacher["config"]["vocab_size"]
  spec = record_format.distillation_feature_spec(
      SEQ_LENGTH, PREDICTIONS, K, vocab_size, sampled=True)
  inputs = read_records(teacher["input_file"])
  assert len(sampled_run["records"]) == len(inputs)
  for raw_input, raw in zip(inputs, sampled_run["records"]):
    assert raw.startswith(raw_input)
    example = tf.io.parse_single_example(raw, spec)
    ids = example[record_format.SAMPLED_IDS].numpy().reshape(PREDICTIONS, K)
    weights = example[record_format.SAMPLED_WEIGHTS].numpy().reshape(
        PREDICTIONS, K)
    assert example[record_format.SAMPLED_TEMPERATURE].numpy()[0] == 1.0
    assert np.all((ids >= 0) & (ids < vocab_size))
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
  described = record_format.describe_record(sampled_run["output_file"])
  # Nothing in them can be read as top-k labels.
  assert record_format.TRUNCATED_PROBS not in described
  assert record_format.TOP_K_INDICES not in described


def test_same_flags_give_the_same_labels_other_seed_others(teacher,
                                                           sampled_run):
  again = str(sampled_run["folder"] / "again.tfrecord")
  other = str(sampled_run["folder"] / "other_seed.tfrecord")
  common = ["--truncation_factor", K, "--label_sampling", "True"]
  conftest.run_script(SCRIPT, *label_args(
      teacher, teacher["input_file"], again, "--random_seed", 7, *common))
  conftest.run_script(SCRIPT, *label_args(
      teacher, teacher["input_file"], other, "--random_seed", 8, *common))
  assert read_records(again) == sampled_run["records"]
  assert read_records(other) != sampled_run["records"]


def test_label_sampling_needs_k(teacher, tmp_path):
  result = conftest.run_script(SCRIPT, *label_args(
      teacher, teacher["input_file"], str(tmp_path / "out.tfrecord"),
      "--truncation_factor", 0, "--label_sampling", "True"), check=False)
  assert result.returncode == 1
  assert "ERROR: --label_sampling needs --truncation_factor" in result.stderr


def check(path, vocab_size, **overrides):
  """training_input.check_input_files on sampled records of K tokens."""
  args = dict(max_seq_length=SEQ_LENGTH, max_predictions_per_seq=PREDICTIONS,
              truncation_factor=K, vocab_size=vocab_size,
              needs_teacher_labels=True, kd_target="sampled",
              temperature=1.0)
  args.update(overrides)
  return training_input.check_input_files([path], "--input_file", **args)


@pytest.mark.parametrize("overrides, message", [
    ({"kd_target": "residual"}, "--kd_target residual: the records hold "
     "sampled teacher labels .* only --kd_target sampled"),
    ({"kd_target": "truncated"}, "only --kd_target sampled"),
    ({"temperature": 2.0}, "--temperature is 2 but the sampled labels .* "
     "estimate the teacher at temperature 1 .* pass --temperature 1"),
    ({"truncation_factor": 10}, "holds 4 sampled teacher tokens per position"
     r" \(truncation_factor 4\); pass --truncation_factor 4"),
])
def test_trainer_rejects_flags_that_do_not_fit_sampled_records(
    teacher, sampled_run, overrides, message):
  vocab_size = teacher["config"]["vocab_size"]
  assert check(sampled_run["output_file"], vocab_size) == distillation.SAMPLED
  with pytest.raises(training_input.InputError, match=message):
    check(sampled_run["output_file"], vocab_size, **overrides)


def test_kd_target_sampled_on_top_k_records_is_an_error(teacher, tmp_path):
  top_k = str(tmp_path / "top_k.tfrecord")
  conftest.run_script(SCRIPT, *label_args(
      teacher, teacher["input_file"], top_k, "--truncation_factor", K))
  with pytest.raises(training_input.InputError,
                     match="--kd_target sampled needs records labelled with "
                     "--label_sampling"):
    check(top_k, teacher["config"]["vocab_size"])


def test_trainer_on_sampled_records(teacher, sampled_run, tmp_path):
  """Trains on sampled labels, evaluates on full ones: teacher_kl reported;
  the script ends a --kd_target mismatch with one ERROR line."""
  full = str(tmp_path / "full.tfrecord")
  conftest.run_script(SCRIPT, *label_args(
      teacher, teacher["input_file"], full, "--truncation_factor", 0))
  common = ["--bert_config_file", teacher["config_file"],
            "--input_file", sampled_run["output_file"],
            "--eval_input_file", full,
            "--max_seq_length", SEQ_LENGTH,
            "--max_predictions_per_seq", PREDICTIONS,
            "--truncation_factor", K, "--do_train", "True",
            "--do_eval", "True", "--train_batch_size", 8,
            "--eval_batch_size", 8, "--num_train_steps", 4,
            "--num_warmup_steps", 1, "--max_eval_steps", 2,
            "--hard_label_weight", 1]
  trainer = "network_distillation_single_machine_truncated.py"
  result = conftest.run_script(trainer, *common, "--kd_target", "residual",
                               "--output_dir", str(tmp_path / "bad"),
                               check=False)
  assert result.returncode == 1
  assert "ERROR: --kd_target residual: the records hold sampled" in (
      result.stderr)
  assert "Traceback" not in result.stderr
  output_dir = str(tmp_path / "student")
  conftest.run_script(trainer, *common, "--kd_target", "sampled",
                      "--output_dir", output_dir)
  with open(os.path.join(output_dir, "eval_results.txt")) as f:
    results = dict(line.strip().split(" = ") for line in f)
  assert float(results["teacher_kl"]) > 0
  assert 0 <= float(results["teacher_top1_agreement"]) <= 1
  assert float(results["kd_loss"]) > float(results["teacher_kl"])


# ---------------------------------------------------------------------------
# Horovod.


def test_label_sampling_under_horovod_loses_no_record(teacher, tmp_path):
  """Two ranks on one file: disjoint shards that together hold every input
  record once, each with valid sampled labels; the same run again writes
  the same shards."""
  sharded = str(tmp_path / "labels.tfrecord")
  args = label_args(teacher, teacher["input_file"], sharded,
                    "--truncation_factor", K, "--label_sampling", "True")
  horovodrun(args)
  shards = sorted(glob.glob(sharded + "-*-of-2"))
  assert shards == [sharded + "-0-of-2", sharded + "-1-of-2"]
  inputs = read_records(teacher["input_file"])
  outputs = [read_records(path) for path in shards]
  assert sum(len(records) for records in outputs) == len(inputs)
  for rank, records in enumerate(outputs):
    for raw_input, raw in zip(inputs[rank::2], records):
      assert raw.startswith(raw_input)
      example = tf.train.Example.FromString(raw)
      weights = example.features.feature[
          record_format.SAMPLED_WEIGHTS].float_list.value
      np.testing.assert_allclose(np.reshape(weights, [PREDICTIONS, K]).sum(
          -1), 1.0, rtol=1e-5)
  assert not glob.glob(str(tmp_path / ".*incomplete*"))
  first = outputs
  horovodrun(args)
  assert [read_records(path) for path in shards] == first
