"""The layer-wise distillation losses (bert_distillation/distillation.py)
against numpy.

Each loss and its gradient, on small random tensors with padding: the
gradients are compared with central differences of the numpy formulas.
"""

import numpy as np
import pytest
import tensorflow as tf

from bert_distillation import command_line
import conftest
from bert_distillation import distillation
import modeling

tf1 = tf.compat.v1

BATCH, SEQ = 2, 5
# Row 0 has 5 real tokens, row 1 has 3.
MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], np.float64)


def np_log_softmax(x):
  x = x - x.max(axis=-1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def np_real_token_mean(values):
  return (values * MASK).sum() / MASK.sum()


def np_hidden(student, teacher, kind, kernel=None, bias=None):
  if kernel is not None:
    student = student @ kernel + bias
  if kind == "cosine":
    per_token = 1.0 - (student * teacher).sum(-1) / (
        np.linalg.norm(student, axis=-1) * np.linalg.norm(teacher, axis=-1))
  else:
    per_token = ((student - teacher) ** 2).mean(-1)
  return np_real_token_mean(per_token)


def np_kl(student_scores, teacher_scores):
  """KL(teacher || student) per row; mean over heads and real queries."""
  log_teacher = np_log_softmax(teacher_scores)
  log_student = np_log_softmax(student_scores)
  per_row = (np.exp(log_teacher) * (log_teacher - log_student)).sum(-1)
  return np_real_token_mean(per_row.mean(axis=1))


def np_relation_scores(vectors, heads):
  """[batch * seq, width] -> [batch, heads, seq, seq], padded keys masked."""
  size = vectors.shape[-1] // heads
  split = vectors.reshape(BATCH, SEQ, heads, size).transpose(0, 2, 1, 3)
  scores = split @ split.transpose(0, 1, 3, 2) / np.sqrt(size)
  return scores + (1.0 - MASK[:, None, None, :]) * -10000.0


def np_relation(student, teacher, heads):
  return sum(np_kl(np_relation_scores(student[name], heads),
                   np_relation_scores(teacher[name], heads))
             for name in ("query", "key", "value"))


def masked_scores(rng, heads):
  """Random attention scores with -10000 at padded keys, as BertModel's."""
  scores = rng.normal(size=(BATCH, heads, SEQ, SEQ)) * 2.0
  return scores + (1.0 - MASK[:, None, None, :]) * -10000.0


def numeric_gradient(function, value, eps=1e-5):
  """Central differences of function (numpy, float64) at array value."""
  gradient = np.zeros_like(value)
  for index in np.ndindex(*value.shape):
    plus, minus = value.copy(), value.copy()
    plus[index] += eps
    minus[index] -= eps
    gradient[index] = (function(plus) - function(minus)) / (2 * eps)
  return gradient


def tf_loss_and_gradients(build, values):
  """Runs build(*placeholders) -> loss; returns (loss, gradients)."""
  with tf.Graph().as_default():
    inputs = [tf1.placeholder(tf.float32, value.shape) for value in values]
    loss = build(*inputs)
    gradients = tf.gradients(loss, inputs)
    fetched = [gradient for gradient in gradients if gradient is not None]
    with tf1.Session() as session:
      session.run(tf1.global_variables_initializer())
      loss, fetched = session.run([loss, fetched], dict(zip(inputs, values)))
  # None where no gradient flows (the teacher's side).
  fetched = iter(fetched)
  return loss, [None if gradient is None else next(fetched)
                for gradient in gradients]


def assert_matches(tf_result, np_function, values, atol=1e-4):
  """Loss and each gradient of tf_result against np_function(*values)."""
  loss, gradients = tf_result
  np.testing.assert_allclose(loss, np_function(*values), rtol=1e-4,
                             atol=1e-6)
  for position, gradient in enumerate(gradients):
    if gradient is None:
      continue

    def at(value, position=position):
      changed = list(values)
      changed[position] = value
      return np_function(*changed)

    expected = numeric_gradient(at, values[position])
    np.testing.assert_allclose(gradient, expected, rtol=1e-3, atol=atol)
    assert np.abs(expected).max() > 1e-4  # Not trivially zero.


@pytest.mark.parametrize("kind", ["cosine", "mse"])
def test_hidden_loss_matches_numpy(kind):
  rng = np.random.RandomState(0)
  student = rng.normal(size=(BATCH, SEQ, 4))
  teacher = rng.normal(size=(BATCH, SEQ, 4))
  mask = MASK
  assert_matches(tf_loss_and_gradients(
      lambda s, t: distillation.hidden_state_loss(s, t, mask, kind),
      [student, teacher]),
      lambda s, t: np_hidden(s, t, kind), [student, teacher])
  # Padding: the padded tokens' states do not count.
  changed = student.copy()
  changed[1, 3:] = 100.0
  with tf.Graph().as_default(), tf1.Session() as session:
    losses = session.run([distillation.hidden_state_loss(
        tf.constant(value, tf.float32), tf.constant(teacher, tf.float32),
        mask, kind) for value in (student, changed)])
  assert losses[0] == pytest.approx(losses[1], rel=1e-6)


@pytest.mark.parametrize("kind", ["cosine", "mse"])
def test_hidden_loss_with_projection_matches_numpy(kind):
  """A 3-wide student projected onto a 4-wide teacher (TinyBERT's W_h)."""
  rng = np.random.RandomState(1)
  student = rng.normal(size=(BATCH, SEQ, 3))
  teacher = rng.normal(size=(BATCH, SEQ, 4))
  kernel = rng.normal(size=(3, 4))
  bias = rng.normal(size=(4,))

  def build(s, t, k, b):
    projected = distillation.hidden_projection(s, 4)
    variables = {var.op.name: var for var in tf1.global_variables()}
    assert sorted(variables) == ["distillation/hidden_projection/bias",
                                 "distillation/hidden_projection/kernel"]
    # Evaluate at the given kernel and bias: projected = s @ k + b.
    projected = projected - tf.tensordot(
        s, variables["distillation/hidden_projection/kernel"], 1) - (
            variables["distillation/hidden_projection/bias"])
    return distillation.hidden_state_loss(projected + tf.tensordot(s, k, 1)
                                          + b, t, MASK, kind)

  assert_matches(tf_loss_and_gradients(build, [student, teacher, kernel,
                                               bias]),
                 lambda s, t, k, b: np_hidden(s, t, kind, k, b),
                 [student, teacher, kernel, bias])


def test_projection_is_the_variables_it_creates():
  rng = np.random.RandomState(2)
  student = rng.normal(size=(BATCH, SEQ, 3)).astype(np.float32)
  with tf.Graph().as_default(), tf1.Session() as session:
    projected = distillation.hidden_projection(tf.constant(student), 4)
    again = distillation.hidden_projection(tf.constant(student), 4)
    session.run(tf1.global_variables_initializer())
    kernel, bias = session.run(tf1.global_variables())  # In that order.
    assert len(tf1.trainable_variables()) == 2  # One shared projection.
    projected, again = session.run([projected, again])
  np.testing.assert_allclose(projected, student @ kernel + bias, atol=1e-6)
  np.testing.assert_array_equal(projected, again)


def test_attention_kl_matches_numpy_and_ignores_padding():
  rng = np.random.RandomState(3)
  student = masked_scores(rng, heads=2)
  teacher = masked_scores(rng, heads=2)
  mask = MASK
  # Only the real keys' gradients are checked by differences; the padded
  # keys' student scores get (next to) no gradient.
  loss, (gradient, _) = tf_loss_and_gradients(
      lambda s, t: distillation.attention_loss(s, t, mask),
      [student, teacher])
  np.testing.assert_allclose(loss, np_kl(student, teacher), rtol=1e-4)
  expected = numeric_gradient(lambda s: np_kl(s, teacher), student)
  np.testing.assert_allclose(gradient, expected, rtol=1e-3, atol=1e-5)
  assert np.abs(gradient[1, :, :3, :3]).max() > 1e-3
  assert np.abs(gradient[1, :, 3:, :]).max() == 0  # Padded queries.
  assert np.abs(gradient[1, :, :, 3:]).max() < 1e-6  # Padded keys.
  # Scores of padded queries do not change the loss.
  changed = student.copy()
  changed[1, :, 3:, :3] = rng.normal(size=(2, 2, 3)) * 5
  assert np_kl(changed, teacher) == pytest.approx(np_kl(student, teacher))
  with tf.Graph().as_default(), tf1.Session() as session:
    losses = session.run([distillation.attention_loss(
        tf.constant(value, tf.float32), tf.constant(teacher, tf.float32),
        mask) for value in (student, changed)])
  assert losses[0] == pytest.approx(losses[1], rel=1e-6)
  # KL is zero for equal distributions.
  with tf.Graph().as_default(), tf1.Session() as session:
    assert session.run(distillation.attention_loss(
        tf.constant(teacher), tf.constant(teacher), mask)) == pytest.approx(
            0.0, abs=1e-6)


def test_relation_loss_splits_heads_and_matches_numpy():
  """Student 6 wide (3 heads in its model), teacher 4 wide: 2 relations."""
  rng = np.random.RandomState(4)
  student = {name: rng.normal(size=(BATCH * SEQ, 6))
             for name in ("query", "key", "value")}
  teacher = {name: rng.normal(size=(BATCH * SEQ, 4))
             for name in ("query", "key", "value")}
  names = ("query", "key", "value")

  def build(sq, sk, sv, tq, tk, tv):
    return distillation.relation_loss(
        dict(zip(names, (sq, sk, sv))), dict(zip(names, (tq, tk, tv))),
        MASK, num_heads=2)

  def reference(sq, sk, sv, tq, tk, tv):
    return np_relation(dict(zip(names, (sq, sk, sv))),
                       dict(zip(names, (tq, tk, tv))), heads=2)

  values = [student[name] for name in names] + [teacher[name]
                                               for name in names]
  loss, gradients = tf_loss_and_gradients(build, values)
  assert gradients[3:] == [None, None, None]  # The teacher: stopped.
  assert_matches((loss, gradients[:3] + [None] * 3), reference, values,
                 atol=1e-4)
  # One relation head is not two: the split matters.
  assert not np.isclose(np_relation(student, teacher, 1), loss, rtol=1e-3)


def test_online_soft_loss_equals_the_stored_full_distribution_loss():
  """softmax(z / T) from logits == the stored softmax(z) tempered."""
  rng = np.random.RandomState(5)
  student = rng.normal(size=(6, 11)).astype(np.float32)
  teacher = (rng.normal(size=(6, 11)) * 3).astype(np.float32)
  with tf.Graph().as_default(), tf1.Session() as session:
    for temperature in (1.0, 2.0):
      online = distillation.soft_cross_entropy_from_logits(
          tf.constant(student), tf.constant(teacher), temperature)
      stored = distillation.soft_cross_entropy(
          tf.constant(student), tf.nn.softmax(teacher), None,
          temperature=temperature)
      online, stored = session.run([online, stored])
      np.testing.assert_allclose(online, stored, rtol=1e-5)
      target = np.exp(np_log_softmax(teacher / temperature))
      np.testing.assert_allclose(
          online, -(target * np_log_softmax(student / temperature)).sum(-1),
          rtol=1e-5)


# ---------------------------------------------------------------------------
# Layer maps and options.


def test_uniform_layer_map_is_tinybert_s():
  assert distillation.uniform_layer_map(4, 12) == [2, 5, 8, 11]
  assert distillation.uniform_layer_map(6, 12) == [1, 3, 5, 7, 9, 11]
  assert distillation.uniform_layer_map(2, 4) == [1, 3]
  assert distillation.uniform_layer_map(3, 3) == [0, 1, 2]
  assert distillation.uniform_layer_map(4, 2) == [0, 0, 0, 1]


@pytest.mark.parametrize("text,words", [
    ("1", ["--hidden_layer_map has 1 entries", "has 2 layers"]),
    ("0,1,2", ["has 3 entries"]),
    ("0,4", ["teacher layer(s) 4", "layers 0..3"]),
    ("-1,3", ["teacher layer(s) -1"]),
    ("1;3", ["comma-separated integers"]),
])
def test_layer_map_validation(text, words):
  with pytest.raises(command_line.InputError) as caught:
    distillation.parse_hidden_layer_map(text, 2, 4)
  for word in words:
    assert word in str(caught.value)
  assert distillation.parse_hidden_layer_map("3,0", 2, 4) == [3, 0]
  assert distillation.parse_hidden_layer_map("", 2, 4) == [1, 3]


def config(**overrides):
  return modeling.BertConfig.from_dict(conftest.tiny_config_dict(
      50, **overrides))


def test_layer_options_check_heads_and_relations():
  student, teacher = config(), config(hidden_size=48, num_attention_heads=3,
                                      num_hidden_layers=4)
  with pytest.raises(command_line.InputError) as caught:
    distillation.layer_loss_options(student, teacher,
                                    attention_loss_weight=1.0)
  message = str(caught.value)
  assert "2 heads" in message and "--relation_loss_weight" in message
  assert "\n" not in message
  options = distillation.layer_loss_options(
      student, teacher, relation_loss_weight=1.0, relation_heads=4)
  assert options.relation_teacher_layer == 3 and options.layer_map == [1, 3]
  with pytest.raises(command_line.InputError, match="does not divide the "
                     r"teacher \(--teacher_config_file\) hidden_size 48"):
    distillation.layer_loss_options(student, teacher, relation_loss_weight=1,
                                    relation_heads=32)
  with pytest.raises(command_line.InputError, match="--relation_heads 3 does "
                     r"not divide the student"):
    distillation.layer_loss_options(student, teacher, relation_loss_weight=1)
  with pytest.raises(command_line.InputError,
                     match="--relation_teacher_layer 4"):
    distillation.layer_loss_options(student, teacher,
                                    relation_teacher_layer=4)
  with pytest.raises(command_line.InputError, match="--hidden_loss_weight"):
    distillation.layer_loss_options(student, teacher,
                                    hidden_loss_weight=float("nan"))
