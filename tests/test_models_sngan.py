"""Tests for regan_tf.models.sngan (the Re-GAN reference SN-GAN ResNet pair)."""

import numpy as np
import pytest

from regan_tf import losses
from regan_tf.compat import keras, tf
from regan_tf.models import GAN, layers, sngan

TINY = dict(g_channels=8, d_channels=8, z_dim=16)


def _count(model: keras.Model) -> int:
  return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _g_params(z: int, g: int, c: int) -> int:
  """Trainable generator weights by hand (bottom 4x4)."""
  dense = z * 16 * g + 16 * g
  block = 2 * (9 * g * g + g) + (g * g + g) + 2 * 2 * g  # 2 convs 3x3, 1x1 shortcut, 2 BNs
  return dense + 3 * block + 2 * g + 9 * g * c + c


def _d_params(d: int, c: int) -> int:
  """Trainable discriminator weights by hand (final linear without bias)."""
  conv3 = 9 * d * d + d
  block1 = (9 * c * d + d) + conv3 + (c * d + d)
  block2 = 2 * conv3 + (d * d + d)
  return block1 + block2 + 2 * 2 * conv3 + d


@pytest.fixture(scope="module")
def tiny() -> GAN:
  return sngan.build(**TINY)


def test_reference_parameter_counts():
  gan = sngan.build()
  assert (_count(gan.generator), _count(gan.discriminator)) == (4_276_739, 1_053_824)
  assert (_g_params(128, 256, 3), _d_params(128, 3)) == (4_276_739, 1_053_824)
  assert gan.z_dim == 128
  assert gan.discriminator.get_layer("logits").use_bias is False


def test_tiny_parameter_counts_match_formula(tiny):
  assert _count(tiny.generator) == _g_params(16, 8, 3)
  assert _count(tiny.discriminator) == _d_params(8, 3)


@pytest.mark.parametrize("image_size", [48, 64])
def test_larger_image_sizes(image_size):
  gan = sngan.build(image_size=image_size, channels=1, **TINY)
  images = gan.generator(tf.random.normal([2, 16]))
  assert images.shape == (2, image_size, image_size, 1)
  assert gan.discriminator(images).shape == (2, 1)


def test_architecture_layers(tiny):
  g, d = tiny.generator, tiny.discriminator
  assert g._is_graph_network and d._is_graph_network  # Functional models
  names = [layer.name for layer in g.layers]
  assert len(names) == len(set(names))
  for i in (1, 2, 3):
    for suffix in ("bn1", "conv1", "bn2", "conv2", "shortcut", "add"):
      assert f"block{i}_{suffix}" in names
  assert isinstance(g.get_layer("block1_up1"), layers.NearestUpsample2D)
  assert g.get_layer("block1_shortcut").kernel_size == (1, 1)
  # Spectral norm on every conv and dense layer of D; none in G.
  d_weighted = [layer for layer in d.layers if layer.trainable_weights]
  assert d_weighted and all(isinstance(layer, (layers.SNConv2D, layers.SNDense))
                            for layer in d_weighted)
  assert not any(isinstance(layer, (layers.SNConv2D, layers.SNDense)) for layer in g.layers)
  # Identity shortcuts in the two plain blocks: only blocks 1 and 2 have a shortcut conv.
  assert [l.name for l in d.layers if l.name.endswith("_shortcut")] == [
      "block1_shortcut", "block2_shortcut"]


def test_reference_initialization():
  gan = sngan.build(**TINY)
  residual = gan.generator.get_layer("block1_conv1").kernel_initializer
  shortcut = gan.generator.get_layer("block1_shortcut").kernel_initializer
  assert (residual.scale, residual.mode, residual.distribution) == (2.0, "fan_avg", "uniform")
  assert (shortcut.scale, shortcut.mode, shortcut.distribution) == (1.0, "fan_avg", "uniform")
  d_residual = gan.discriminator.get_layer("block3_conv2").kernel_initializer
  assert d_residual.scale == 2.0
  bn = gan.generator.get_layer("block1_bn1")
  assert (bn.momentum, bn.epsilon) == (0.9, 1e-5)


def test_shortcut_conv_at_low_resolution_equals_reference_order(tiny):
  """1x1 conv then upsample (ours) == upsample then 1x1 conv (the reference)."""
  conv = tiny.generator.get_layer("block2_shortcut")
  x = tf.random.normal([2, 8, 8, 8])
  up = layers.NearestUpsample2D(2)
  np.testing.assert_allclose(up(conv(x)).numpy(), conv(up(x)).numpy(), rtol=1e-5, atol=1e-6)
  pool = keras.layers.AveragePooling2D(2)
  d_conv = tiny.discriminator.get_layer("block2_shortcut")
  np.testing.assert_allclose(d_conv(pool(x)).numpy(), pool(d_conv(x)).numpy(), rtol=1e-5,
                             atol=1e-6)


def test_gradient_penalty_differentiable_through_discriminator(tiny):
  d = tiny.discriminator
  real, fake = tf.random.normal([2, 32, 32, 3]), tf.random.normal([2, 32, 32, 3])
  with tf.GradientTape() as tape:
    penalty = losses.gradient_penalty(d, real, fake, seed=[0, 1])
  grads = tape.gradient(penalty, d.trainable_variables)
  assert np.isfinite(penalty.numpy())
  assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in grads)


@pytest.mark.parametrize("kwargs, match", [
    (dict(image_size=16), "image_size=16"),
    (dict(g_channels=0), "g_channels=0"),
    (dict(d_channels=None), "d_channels=None"),
    (dict(power_iterations=0), "power_iterations=0"),
])
def test_rejects_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    sngan.build(**kwargs)
