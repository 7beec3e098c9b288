"""Tests for regan_tf.models.dcgan (the contract all architectures keep: test_models_contract.py)."""

import numpy as np
import pytest

from regan_tf.compat import keras, tf
from regan_tf.models import dcgan, layers

TINY = dict(g_base_channels=4, d_base_channels=4, z_dim=8)


def _count(model: keras.Model) -> int:
  return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def test_default_parameter_counts():
  gan = dcgan.build()
  # G: dense 128 -> 4*4*64 (no bias); BNs over 64, 32, 16; transposed convs 4x4
  # 64->32->16 (no bias); output transposed conv 4x4 16->3 with bias.
  g = 128 * 16 * 64 + 2 * (64 + 32 + 16) + 16 * (64 * 32 + 32 * 16) + 16 * 16 * 3 + 3
  # D: convs 4x4 stride 2 3->16->32->64 with bias; dense 4*4*64 -> 1 with bias.
  d = (16 * 3 * 16 + 16) + (16 * 16 * 32 + 32) + (16 * 32 * 64 + 64) + (1024 + 1)
  assert (_count(gan.generator), _count(gan.discriminator)) == (g, d) == (173_027, 42_865)


def test_generator_layers():
  g = dcgan.build(**TINY).generator
  names = [layer.name for layer in g.layers]
  assert len(names) == len(set(names))
  assert names[1:5] == ["dense", "reshape", "bn0", "relu0"]
  assert [n for n in names if n.endswith("conv")] == ["block1_conv", "block2_conv", "output_conv"]
  assert g.get_layer("output_conv").filters == 3
  nearest = dcgan.build(upsampling="nearest", **TINY).generator
  assert isinstance(nearest.get_layer("output_up"), layers.NearestUpsample2D)


@pytest.mark.parametrize("image_size", [16, 32, 64])
@pytest.mark.parametrize("upsampling", ["transpose", "nearest"])
def test_shapes_dtypes_and_range(image_size, upsampling):
  gan = dcgan.build(image_size=image_size, channels=1, upsampling=upsampling, **TINY)
  images = gan.generator(tf.random.normal([2, 8]) * 3.0, training=True)
  assert images.shape == (2, image_size, image_size, 1) and images.dtype == tf.float32
  assert np.all(np.abs(images.numpy()) <= 1.0)
  logits = gan.discriminator(images, training=True)
  assert logits.shape == (2, 1) and logits.dtype == tf.float32
  assert gan.z_dim == 8


def test_spectral_norm_switch():
  with_sn = dcgan.build(**TINY).discriminator
  without = dcgan.build(spectral_norm=False, **TINY).discriminator
  assert isinstance(with_sn.get_layer("block1_conv"), layers.SNConv2D)
  assert isinstance(with_sn.get_layer("logits"), layers.SNDense)
  assert type(without.get_layer("block1_conv")) is keras.layers.Conv2D
  assert type(without.get_layer("logits")) is keras.layers.Dense
  assert _count(with_sn) == _count(without)


@pytest.mark.parametrize("kwargs, match", [
    (dict(image_size=48), "image_size=48"),
    (dict(image_size=4), "image_size=4"),
    (dict(upsampling="bilinear"), "upsampling='bilinear'"),
    (dict(g_base_channels=0), "g_base_channels=0"),
    (dict(spectral_norm="yes"), "spectral_norm='yes'"),
])
def test_rejects_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    dcgan.build(**kwargs)


