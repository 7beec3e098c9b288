"""Tests for regan_tf.models.dcgan and the models.build registry."""

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from regan_tf import losses, models
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


def test_generator_prunable_by_tfmot():
  gan = dcgan.build(upsampling="nearest", **TINY)
  assert gan.generator._is_graph_network
  pruned = tfmot.sparsity.keras.prune_low_magnitude(gan.generator)
  wrapped = {type(l.layer) for l in pruned.layers
             if isinstance(l, pruning_wrapper.PruneLowMagnitude)}
  assert {keras.layers.Dense, keras.layers.Conv2D, layers.NearestUpsample2D} <= wrapped
  images = pruned(tf.random.normal([2, 8]), training=False)
  assert images.shape == (2, 32, 32, 3)


def test_discriminator_config_round_trip():
  d = dcgan.build(**TINY).discriminator
  clone = keras.Model.from_config(d.get_config())
  clone.set_weights(d.get_weights())
  x = tf.random.normal([2, 32, 32, 3])
  np.testing.assert_allclose(clone(x).numpy(), d(x).numpy(), rtol=1e-5)


def test_mixed_precision():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    gan = dcgan.build(**TINY)
    images = gan.generator(tf.random.normal([2, 8]), training=True)
    logits = gan.discriminator(images, training=True)
    assert gan.generator.get_layer("block1_conv").compute_dtype == "float16"
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert images.dtype == tf.float32 and logits.dtype == tf.float32


def test_one_training_step_changes_weights():
  gan = dcgan.build(**TINY)
  g, d = gan.generator, gan.discriminator
  g_loss_fn, d_loss_fn = losses.get("hinge")
  g_opt, d_opt = keras.optimizers.Adam(1e-3, 0.5), keras.optimizers.Adam(1e-3, 0.5)
  real = tf.random.uniform([4, 32, 32, 3], -1.0, 1.0)
  before = [v.numpy() for v in g.trainable_variables + d.trainable_variables]

  fake = g(tf.random.normal([4, 8]), training=True)
  with tf.GradientTape() as tape:
    d_loss = d_loss_fn(d(real, training=True), d(fake, training=True))
  d_opt.apply_gradients(zip(tape.gradient(d_loss, d.trainable_variables), d.trainable_variables))
  with tf.GradientTape() as tape:
    g_loss = g_loss_fn(d(g(tf.random.normal([4, 8]), training=True), training=True))
  g_opt.apply_gradients(zip(tape.gradient(g_loss, g.trainable_variables), g.trainable_variables))

  changed = {v.name for v, b in zip(g.trainable_variables + d.trainable_variables, before)
             if not np.array_equal(v.numpy(), b)}
  # Hinge loss has zero gradient for D's output bias while every logit is in (-1, 1)
  # (d/db = -1 + 1); everything else must move.
  unchanged = {v.name for v in g.trainable_variables + d.trainable_variables} - changed
  assert unchanged <= {"logits/bias:0"}, unchanged


@pytest.mark.parametrize("kwargs, match", [
    (dict(image_size=48), "image_size=48"),
    (dict(image_size=4), "image_size=4"),
    (dict(upsampling="bilinear"), "upsampling='bilinear'"),
    (dict(g_base_channels=0), "g_base_channels=0"),
    (dict(z_dim=-1), "z_dim=-1"),
    (dict(spectral_norm="yes"), "spectral_norm='yes'"),
])
def test_rejects_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    dcgan.build(**kwargs)


# ---------------------------------------------------------------- models.build registry


def test_registry_builds_each_architecture():
  assert models.names() == ("autogan", "dcgan", "progan", "sngan", "stylegan2")
  gan = models.build("dcgan", image_size=16, channels=3, z_dim=8, g_base_channels=4)
  assert isinstance(gan, models.GAN)
  assert gan.generator.output_shape == (None, 16, 16, 3)
  gan = models.build("sngan", image_size=32, channels=1, z_dim=8, g_channels=4, d_channels=4)
  assert gan.generator.output_shape == (None, 32, 32, 1)
  assert gan.discriminator.output_shape == (None, 1)


def test_registry_unknown_name_lists_valid_names():
  with pytest.raises(ValueError, match=r"name='biggan'.*autogan, dcgan, progan, sngan, stylegan2"):
    models.build("biggan", image_size=32, channels=3)


def test_registry_passes_architecture_kwargs_through():
  with pytest.raises(TypeError, match="g_channels"):
    models.build("dcgan", image_size=32, channels=3, g_channels=4)
