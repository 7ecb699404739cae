"""Tests of --precision: bf16/fp16 labels and training, loss scaling, checks.

The teacher here is small but shaped like BERT's layers (64 per attention
head, 4x intermediate) and its distributions are as peaked as a trained
BERT's: its weights are drawn at 2.5x BERT's initializer range and its word
embeddings scaled up, which puts the median top-1 probability at masked
positions near 0.5. With BERT's own random init every distribution is nearly
flat (top-1 about 1/vocab), so top-1 would be a coin toss among near-ties and
the comparison would measure nothing.
"""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import conftest
import modeling
import optimization
from bert_distillation import precision
from bert_distillation import record_format
from bert_distillation import xla_compile

sys.path.insert(0, os.path.join(conftest.REPO, "bench"))
import synthetic  # pylint: disable=g-import-not-at-top,wrong-import-position

tf1 = tf.compat.v1

TEACHER_SCRIPT = "produce_teacher_labels.py"
TRAINER_SCRIPT = "network_distillation_single_machine_truncated.py"
DISTRIBUTED_SCRIPT = "network_distillation_distributed_truncated.py"
VOCAB_SIZE = 1000
MAX_SEQ = 64
MAX_PRED = 10
TOP_K = 10
NUM_RECORDS = 96


def read_examples(path):
  """All records of a TFRecord file as tf.train.Example."""
  return [tf.train.Example.FromString(raw)
          for raw in tf1.io.tf_record_iterator(path)]


def float_column(examples, name, width):
  """A float feature of every example as an array [records * n, width]."""
  return np.array([list(e.features.feature[name].float_list.value)
                   for e in examples]).reshape(-1, width)


def int_column(examples, name, width):
  """An int64 feature of every example as an array [records * n, width]."""
  return np.array([list(e.features.feature[name].int64_list.value)
                   for e in examples]).reshape(-1, width)


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
  """A peaked teacher, its records, and its labels in fp32 and in bf16."""
  root = tmp_path_factory.mktemp("precision")
  d = {"root": root}
  teacher = dict(conftest.tiny_config_dict(
      VOCAB_SIZE, hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
      intermediate_size=512, max_position_embeddings=MAX_SEQ),
                 initializer_range=0.05)
  d["teacher_config"] = str(root / "teacher.json")
  with open(d["teacher_config"], "w") as f:
    json.dump(teacher, f)
  d["checkpoint"] = str(root / "teacher" / "model.ckpt")
  # Word embeddings x12: median top-1 probability about 0.5.
  synthetic.save_teacher_checkpoint(modeling.BertConfig.from_dict(teacher),
                                    d["checkpoint"], MAX_SEQ, MAX_PRED,
                                    embedding_scale=12.0)
  d["records"] = str(root / "plain.tfrecord")
  conftest.write_random_pretraining_records(d["records"], NUM_RECORDS,
                                            VOCAB_SIZE, MAX_SEQ, MAX_PRED,
                                            seed=5)
  for name in ("fp32", "bf16"):
    d[name] = str(root / ("labels_%s.tfrecord" % name))
    d[name + "_log"] = conftest.run_script(
        TEACHER_SCRIPT, "--bert_config_file", d["teacher_config"],
        "--init_checkpoint", d["checkpoint"], "--input_file", d["records"],
        "--output_file", d[name], "--truncation_factor", TOP_K,
        "--max_seq_length", MAX_SEQ, "--max_predictions_per_seq", MAX_PRED,
        "--batch_size", 32, "--precision", name).stderr
  d["student_config"] = str(root / "student.json")
  conftest.write_config(d["student_config"], vocab_size=VOCAB_SIZE,
                        num_hidden_layers=1, max_position_embeddings=MAX_SEQ)
  return d


def test_bf16_teacher_labels_agree_with_fp32(labels):
  fp32, bf16 = read_examples(labels["fp32"]), read_examples(labels["bf16"])
  assert len(fp32) == len(bf16) == NUM_RECORDS
  real = float_column(fp32, "masked_lm_weights", 1)[:, 0] > 0
  probs = {name: float_column(examples, record_format.TRUNCATED_PROBS,
                              TOP_K)[real]
           for name, examples in (("fp32", fp32), ("bf16", bf16))}
  ids = {name: int_column(examples, record_format.TOP_K_INDICES, TOP_K)[real]
         for name, examples in (("fp32", fp32), ("bf16", bf16))}
  # The distributions are peaked, as a trained BERT's are.
  assert np.median(probs["fp32"][:, 0]) > 0.3
  agreement = np.mean(ids["fp32"][:, 0] == ids["bf16"][:, 0])
  largest = np.abs(probs["fp32"] - probs["bf16"]).max()
  print("bf16 against fp32 at %d positions (median top-1 probability %.2f): "
        "top-1 agreement %.4f, largest probability difference %.4f" % (
            len(ids["fp32"]), np.median(probs["fp32"][:, 0]), agreement,
            largest))
  assert agreement >= 0.99, agreement
  # The stored top-k probabilities, rank by rank.
  assert largest <= 0.02
  # bf16 did change the computation (the flag is not ignored).
  assert not np.array_equal(probs["fp32"], probs["bf16"])
  next_sentence = {name: float_column(examples,
                                      record_format.NEXT_SENTENCE_PROBS, 2)
                   for name, examples in (("fp32", fp32), ("bf16", bf16))}
  assert np.abs(next_sentence["fp32"] - next_sentence["bf16"]).max() <= 0.02


def test_teacher_warns_only_when_the_cpu_lacks_bf16(labels):
  fast = precision.hardware_warning("bf16", precision.cpu_flags(), [])
  assert ("SLOW PRECISION" in labels["bf16_log"]) == (fast is not None)
  assert "SLOW PRECISION" not in labels["fp32_log"]


def checkpoint_variables(output_dir):
  """{name: dtype} of the latest checkpoint in output_dir."""
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(output_dir))
  return reader, reader.get_variable_to_dtype_map()


def fp32_model_variables(config_path):
  """{name: shape} of the student built in float32, heads included."""
  config = modeling.BertConfig.from_json_file(config_path)
  with tf.Graph().as_default():
    modeling.pretraining_model(
        config, True, tf1.placeholder(tf.int32, [None, MAX_SEQ]),
        tf1.placeholder(tf.int32, [None, MAX_PRED]))
    return {var.op.name: var.shape.as_list()
            for var in tf1.trainable_variables()}


def train_student(labels, output_dir, name, steps, *extra):
  """Trains the tiny student on the fp32 labels; returns the log."""
  return conftest.run_script(
      TRAINER_SCRIPT, "--bert_config_file", labels["student_config"],
      "--input_file", labels["fp32"], "--output_dir", output_dir,
      "--truncation_factor", TOP_K, "--max_seq_length", MAX_SEQ,
      "--max_predictions_per_seq", MAX_PRED, "--train_batch_size", 16,
      "--learning_rate", 1e-3, "--num_train_steps", steps,
      "--num_warmup_steps", 1, "--iterations_per_loop", 1,
      "--do_train", "True", "--precision", name, *extra).stderr


def assert_fp32_google_checkpoint(labels, output_dir):
  """Every model variable is in the checkpoint as finite float32."""
  reader, dtypes = checkpoint_variables(output_dir)
  shapes = reader.get_variable_to_shape_map()
  for name, shape in fp32_model_variables(labels["student_config"]).items():
    assert dtypes[name] == tf.float32, name
    assert shapes[name] == shape, name
    assert np.all(np.isfinite(reader.get_tensor(name))), name
  # The Adam moments too.
  for name, dtype in dtypes.items():
    if name.endswith(("adam_m", "adam_v")):
      assert dtype == tf.float32, name
  return reader


def test_fp16_training_without_nan_and_fp32_checkpoint(labels, tmp_path):
  output_dir = str(tmp_path / "fp16")
  log = train_student(labels, output_dir, "fp16", 6)
  losses = [float(loss) for loss in
            re.findall(r"loss = ([-\d.e+naif]+), step = \d+", log)]
  assert losses and np.all(np.isfinite(losses)), losses
  reader = assert_fp32_google_checkpoint(labels, output_dir)
  assert reader.get_tensor("global_step") == 6
  # Loss scaling ran: its state is in the checkpoint, still a power of 2.
  scale = reader.get_tensor("loss_scale/scale")
  assert scale >= 1 and np.log2(scale) == int(np.log2(scale))
  # The CPU has no fast float16: the trainer said so.
  assert "SLOW PRECISION: --precision fp16 on a CPU" in log
  with open(os.path.join(output_dir, "train_stats.json")) as f:
    assert json.load(f)["precision"] == "fp16"


def test_bf16_checkpoint_loads_into_an_fp32_model(labels, tmp_path):
  output_dir = str(tmp_path / "bf16")
  train_student(labels, output_dir, "bf16", 3)
  reader = assert_fp32_google_checkpoint(labels, output_dir)
  assert "loss_scale/scale" not in reader.get_variable_to_dtype_map()
  # An fp32 graph restores it by name, strictly.
  config = modeling.BertConfig.from_json_file(labels["student_config"])
  checkpoint = tf.train.latest_checkpoint(output_dir)
  with tf.Graph().as_default():
    modeling.pretraining_model(
        config, False, tf.zeros([2, MAX_SEQ], tf.int32),
        tf.zeros([2, MAX_PRED], tf.int32))
    loaded = modeling.init_from_checkpoint_strict(
        checkpoint, tf1.trainable_variables())
    pooler = [var for var in tf1.trainable_variables()
              if var.op.name == "bert/pooler/dense/kernel"]
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      kernel = session.run(pooler[0])
  assert len(loaded) == len(fp32_model_variables(labels["student_config"]))
  np.testing.assert_array_equal(
      kernel, reader.get_tensor("bert/pooler/dense/kernel"))


def test_horovod_fp16_with_fp16_allreduce(labels, tmp_path):
  """Two ranks, float16 compute and float16 all-reduce, stay in lockstep."""
  output_dir = str(tmp_path / "horovod")
  command = conftest.horovodrun_command(2, [
      os.path.join(conftest.REPO, DISTRIBUTED_SCRIPT),
      "--bert_config_file", labels["student_config"],
      "--input_file", labels["fp32"], "--output_dir", output_dir,
      "--truncation_factor", TOP_K, "--max_seq_length", MAX_SEQ,
      "--max_predictions_per_seq", MAX_PRED, "--train_batch_size", 8,
      "--learning_rate", 1e-3, "--num_train_steps", 4,
      "--num_warmup_steps", 0, "--do_train", "True",
      "--precision", "fp16", "--fp16_allreduce", "True"])
  env = dict(conftest.CHILD_ENV)
  env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
  result = subprocess.run(command, cwd=conftest.REPO, env=env,
                          capture_output=True, text=True, timeout=300)
  output = result.stdout + result.stderr
  assert result.returncode == 0, output[-6000:]
  sums = dict(re.findall(r"rank (\d+) variables checksum: sha256=(\w+)",
                         output))
  assert sorted(sums) == ["0", "1"] and sums["0"] == sums["1"], sums
  reader = assert_fp32_google_checkpoint(labels, output_dir)
  assert reader.get_tensor("global_step") == 2
  assert "loss_scale/scale" in reader.get_variable_to_dtype_map()


# ---------------------------------------------------------------------------
# Loss scaling, on a graph small enough to check every value.


@pytest.mark.parametrize("use_xla", [False, True])
def test_loss_scale_skips_an_overflowing_step_and_adapts(capfd, use_xla):
  """Also with the step compiled by XLA (--use_xla): it must skip the same."""
  with tf.Graph().as_default():
    weights = tf1.get_variable("weights", initializer=[1.0, 2.0, 3.0])
    inputs = tf1.placeholder(tf.float32, [3])
    loss_scale = optimization.DynamicLossScale(initial_scale=2.0 ** 10,
                                               growth_steps=2)
    with xla_compile.jit_scope(use_xla):
      loss = tf.reduce_sum(weights * inputs)
      train_op = optimization.create_optimizer(loss, 0.1, 100, 0, False,
                                               loss_scale=loss_scale)
    moments = [var for var in tf1.global_variables()
               if var.op.name.startswith("weights/adam_")]
    state = [weights, loss_scale.scale, loss_scale.skipped_steps,
             tf1.train.get_global_step()] + moments
    config = xla_compile.session_config(None, use_xla)
    with tf1.Session(config=config) as session:
      session.run(tf1.global_variables_initializer())
      run_metadata = tf1.RunMetadata()

      def step(values):
        before = session.run(state)
        session.run(train_op, {inputs: values}, options=tf1.RunOptions(
            output_partition_graphs=True), run_metadata=run_metadata)
        return before, session.run(state)

      # Two finite steps: updates applied, then the scale doubles.
      before, after = step([1.0, 1.0, 1.0])
      assert np.all(after[0] < before[0]) and after[1] == 2.0 ** 10
      before, after = step([1.0, 1.0, 1.0])
      assert after[1] == 2.0 ** 11 and after[2] == 0
      # An overflow: the scaled gradient is inf. Nothing moves, the scale
      # halves, the step is counted as skipped (and as a global step).
      capfd.readouterr()
      before, after = step([3e38, 1.0, 1.0])
      assert ("skipped a training step: the gradients overflowed (inf/NaN) "
              "at loss scale 2048 - the scale is now 1024 - skipped steps so "
              "far: 1" in capfd.readouterr().err)
      np.testing.assert_array_equal(after[0], before[0])
      for old, new in zip(before[4:], after[4:]):
        np.testing.assert_array_equal(old, new)
      assert after[1] == 2.0 ** 10 and after[2] == 1
      assert after[3] == before[3] + 1
      # Training goes on with finite gradients.
      before, after = step([1.0, 1.0, 1.0])
      assert np.all(after[0] < before[0]) and np.all(np.isfinite(after[0]))
      assert after[2] == 1
      # The step ran as XLA code exactly when asked to.
      assert conftest.xla_ran(run_metadata) == use_xla


def test_loss_scale_never_drops_below_one():
  with tf.Graph().as_default():
    weights = tf1.get_variable("weights", initializer=[1.0])
    loss = tf.reduce_sum(weights * float("inf"))
    loss_scale = optimization.DynamicLossScale(initial_scale=2.0)
    train_op = optimization.create_optimizer(loss, 0.1, 100, 0, False,
                                             loss_scale=loss_scale)
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      for _ in range(3):
        session.run(train_op)
      assert session.run(loss_scale.scale) == 1.0
      assert session.run(loss_scale.skipped_steps) == 3
      assert session.run(weights)[0] == 1.0


# ---------------------------------------------------------------------------
# The hardware check.


@pytest.mark.parametrize("precision_name, cpu_flags, gpus, expected", [
    ("fp32", set(), [], None),
    ("fp32", set(), [(6, 0)], None),
    ("bf16", {"avx512f", "avx512_bf16"}, [], None),
    ("bf16", {"avx512f", "amx_bf16", "amx_tile"}, [], None),
    ("bf16", {"avx2", "avx512f"}, [], "without AVX512-BF16 or AMX-BF16"),
    ("fp16", {"avx512_bf16", "amx_bf16"}, [], "fp16 on a CPU"),
    ("bf16", set(), [(8, 0)], None),
    ("bf16", set(), [(8, 0), (7, 0)], "compute capability 7.0"),
    ("bf16", set(), [(7, 5)], "Use --precision fp16"),
    ("fp16", set(), [(7, 0)], None),
    ("fp16", set(), [(6, 1)], "compute capability 6.1"),
])
def test_hardware_warning(precision_name, cpu_flags, gpus, expected):
  message = precision.hardware_warning(precision_name, cpu_flags, gpus)
  if expected is None:
    assert message is None
  else:
    assert expected in message
    # Every warning says what it costs or what to use instead.
    assert "slower" in message or "no speed-up" in message


def test_cpu_flags_read_from_cpuinfo(tmp_path):
  cpuinfo = tmp_path / "cpuinfo"
  cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n"
                     "processor\t: 1\nflags\t\t: fpu avx512f avx512_bf16\n")
  assert precision.cpu_flags(str(cpuinfo)) == {"fpu", "avx512f",
                                               "avx512_bf16"}
  assert precision.cpu_flags(str(tmp_path / "missing")) == set()


# ---------------------------------------------------------------------------
# No dead ops.


def unreachable_model_ops(graph, outputs):
  """Ops of `graph` that no output depends on (through inputs or control).

  The ops TensorFlow makes inside each variable's own name scope
  (initializer, IsInitialized, Read) are bookkeeping, not the model.
  """
  seen = set()
  stack = [output.op if isinstance(output, tf.Tensor) else output
           for output in outputs]
  while stack:
    op = stack.pop()
    if op.name in seen:
      continue
    seen.add(op.name)
    stack.extend(tensor.op for tensor in op.inputs)
    stack.extend(op.control_inputs)
  variable_scopes = tuple(var.op.name + "/" for var in tf1.global_variables())
  return sorted(op.name for op in graph.get_operations()
                if op.name not in seen
                and not op.name.startswith(variable_scopes))


@pytest.mark.parametrize("batch_size", [13, None])
@pytest.mark.parametrize("compute_type", [tf.float32, tf.bfloat16])
def test_every_model_op_is_reachable(batch_size, compute_type):
  config = modeling.BertConfig.from_dict(
      conftest.tiny_config_dict(99, num_hidden_layers=2))
  graph = tf.Graph()
  with graph.as_default():
    input_ids = tf1.placeholder(tf.int32, [batch_size, 7])
    input_mask = tf1.placeholder(tf.int32, [batch_size, 7])
    token_type_ids = tf1.placeholder(tf.int32, [batch_size, 7])
    positions = tf1.placeholder(tf.int32, [batch_size, 3])
    model, mlm_logits, nsp_logits = modeling.pretraining_model(
        config, True, input_ids, positions, input_mask, token_type_ids,
        compute_type=compute_type)
    outputs = [mlm_logits, nsp_logits, model.get_embedding_output(),
               model.get_pooled_output()] + model.get_all_encoder_layers()
    # Whatever the compute type, the model's outputs are float32.
    assert all(output.dtype == tf.float32 for output in outputs)
    outputs.append(tf1.global_variables_initializer())
    assert unreachable_model_ops(graph, outputs) == []
    # The check itself finds a dead op.
    tf.shape(input_ids, name="dead_shape")
    assert unreachable_model_ops(graph, outputs) == ["dead_shape"]
