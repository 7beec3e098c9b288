"""Tests for regan_tf.losses against values computed by hand."""

import math

import numpy as np
import pytest

from regan_tf import losses
from regan_tf.compat import keras, tf

REAL = [[2.0], [-0.5]]
FAKE = [[0.5], [-3.0]]


def _softplus(x: float) -> float:
  return math.log1p(math.exp(x))


@pytest.mark.parametrize("fn, args, expected", [
    # mean(relu(1 - [2, -0.5])) + mean(relu(1 + [0.5, -3])) = (0 + 1.5)/2 + (1.5 + 0)/2
    (losses.hinge_discriminator_loss, (REAL, FAKE), 1.5),
    (losses.hinge_generator_loss, (FAKE,), 1.25),  # -mean([0.5, -3])
    (losses.non_saturating_discriminator_loss, (REAL, FAKE),
     (_softplus(-2.0) + _softplus(0.5)) / 2 + (_softplus(0.5) + _softplus(-3.0)) / 2),
    (losses.non_saturating_generator_loss, (FAKE,), (_softplus(-0.5) + _softplus(3.0)) / 2),
    (losses.wasserstein_discriminator_loss, (REAL, FAKE), -1.25 - 0.75),
    (losses.wasserstein_generator_loss, (FAKE,), 1.25),
    (losses.drift_penalty, (REAL,), (4.0 + 0.25) / 2),
])
def test_hand_computed_values(fn, args, expected):
  value = fn(*[tf.constant(a) for a in args])
  assert value.dtype == tf.float32 and value.shape == ()
  np.testing.assert_allclose(value.numpy(), expected, rtol=1e-6)
  # Float16 logits (mixed precision) and rank-1 logits give the same float32 scalar.
  value16 = fn(*[tf.constant(np.ravel(a), tf.float16) for a in args])
  assert value16.dtype == tf.float32
  np.testing.assert_allclose(value16.numpy(), expected, rtol=1e-6)


def test_non_saturating_is_binary_cross_entropy():
  real, fake = tf.constant(REAL), tf.constant(FAKE)
  bce = keras.losses.BinaryCrossentropy(from_logits=True)
  expected = bce(tf.ones_like(real), real) + bce(tf.zeros_like(fake), fake)
  np.testing.assert_allclose(losses.non_saturating_discriminator_loss(real, fake).numpy(),
                             expected.numpy(), rtol=1e-6)
  np.testing.assert_allclose(losses.non_saturating_generator_loss(fake).numpy(),
                             bce(tf.ones_like(fake), fake).numpy(), rtol=1e-6)


def test_non_saturating_is_stable_for_large_logits():
  value = losses.non_saturating_discriminator_loss(tf.constant([[1e4]]), tf.constant([[-1e4]]))
  assert value.numpy() == 0.0


def _linear_critic(weight_norm: float) -> keras.Model:
  model = keras.Sequential([keras.Input((2, 2, 3)), keras.layers.Flatten(),
                            keras.layers.Dense(1, use_bias=False)])
  w = np.random.default_rng(0).normal(size=(12, 1))
  model.layers[-1].set_weights([weight_norm * w / np.linalg.norm(w)])
  return model


@pytest.mark.parametrize("weight_norm, expected", [(1.0, 0.0), (3.0, 4.0), (0.5, 0.25)])
def test_gradient_penalty_of_linear_critic(weight_norm, expected):
  # The input gradient of x -> w.x is w everywhere: penalty (||w|| - 1)^2.
  critic = _linear_critic(weight_norm)
  real, fake = tf.random.normal([4, 2, 2, 3]), tf.random.normal([4, 2, 2, 3])
  value = losses.gradient_penalty(critic, real, fake, seed=[0, 1])
  assert value.dtype == tf.float32 and value.shape == ()
  np.testing.assert_allclose(value.numpy(), expected, atol=1e-6)


def test_gradient_penalty_uses_per_example_norms():
  # critic(x) = sum(x^2) / 2 has input gradient x; with real == fake, x_hat = real,
  # so the penalty is mean over examples of (||real_i|| - 1)^2, not one global norm.
  def critic(x, training):
    return tf.reduce_sum(tf.square(x), axis=[1, 2, 3])[:, None] / 2

  real = np.zeros([2, 2, 2, 1], np.float32)
  real[0, 0, 0, 0] = 2.0
  real[1, 1, 1, 0] = 0.5
  value = losses.gradient_penalty(critic, tf.constant(real), tf.constant(real), seed=[0, 1])
  np.testing.assert_allclose(value.numpy(), ((2.0 - 1.0)**2 + (0.5 - 1.0)**2) / 2, rtol=1e-5)


def test_gradient_penalty_interpolates_per_example():
  seen = []

  def critic(x, training):
    seen.append(x.numpy())
    return tf.reduce_sum(x, axis=[1, 2, 3])[:, None]

  real = np.zeros([64, 2, 2, 3], np.float32)
  fake = np.ones([64, 2, 2, 3], np.float32)
  losses.gradient_penalty(critic, tf.constant(real), tf.constant(fake), seed=[0, 1])
  x_hat = seen[0]
  eps = x_hat[:, 0, 0, 0]
  # x_hat = real + eps * (fake - real): one eps per example, shared by its pixels,
  # drawn from [0, 1) and different across examples.
  np.testing.assert_allclose(x_hat, np.broadcast_to(eps[:, None, None, None], x_hat.shape))
  assert np.all((eps >= 0.0) & (eps < 1.0))
  assert len(np.unique(eps)) == 64


def test_gradient_penalty_epsilon_is_a_function_of_the_seed():
  seen = []

  def critic(x, training):
    seen.append(x.numpy()[:, 0, 0, 0])
    return tf.reduce_sum(x, axis=[1, 2, 3])[:, None]

  real, fake = tf.zeros([16, 2, 2, 1]), tf.ones([16, 2, 2, 1])
  for seed in ([3, 4], [3, 4], [3, 5]):
    losses.gradient_penalty(critic, real, fake, seed=tf.constant(seed, tf.int64))
  np.testing.assert_array_equal(seen[0], seen[1])   # same seed: same epsilons, call after call
  assert not np.allclose(seen[0], seen[2])


def test_gradient_penalty_is_differentiable_in_tf_function():
  critic = _linear_critic(2.0)
  real, fake = tf.random.normal([3, 2, 2, 3]), tf.random.normal([3, 2, 2, 3])

  @tf.function
  def penalty_and_grad():
    with tf.GradientTape() as tape:
      penalty = losses.gradient_penalty(critic, real, fake, seed=[0, 1])
    return penalty, tape.gradient(penalty, critic.trainable_variables)[0]

  penalty, grad = penalty_and_grad()
  np.testing.assert_allclose(penalty.numpy(), 1.0, atol=1e-5)
  # d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w|| = w for ||w|| = 2.
  np.testing.assert_allclose(grad.numpy(), critic.trainable_variables[0].numpy(), rtol=1e-4)


@pytest.mark.parametrize("name", ["hinge", "non_saturating", "wasserstein"])
def test_get_returns_the_pair(name):
  g_fn, d_fn = losses.get(name)
  assert g_fn is getattr(losses, f"{name}_generator_loss")
  assert d_fn is getattr(losses, f"{name}_discriminator_loss")


def test_get_unknown_name_lists_valid_names():
  with pytest.raises(ValueError, match=r"name='lsgan'.*hinge, non_saturating, wasserstein"):
    losses.get("lsgan")
  assert losses.names() == ("hinge", "non_saturating", "wasserstein")
