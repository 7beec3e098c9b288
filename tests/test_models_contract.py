"""The contract every architecture of regan_tf.models keeps, checked for each at tiny widths.

What the trainer, Re-GAN and the export rely on, whatever the architecture: the
registry builds it by name; G maps z float32 [B, z_dim] to images float32
[B, S, S, C] in [-1, 1] and D maps images to logits float32 [B, 1]; TFMOT and
Re-GAN can wrap the whole generator; both networks survive a config round
trip; mixed precision computes in float16 but returns float32; one adversarial
step moves every weight; the gradients compile under XLA; bad common arguments
fail at once with a message naming them. Architecture-specific behaviour
(parameter counts against the references, layer layouts, fade-in, modulation,
...) is tested in tests/test_models_<name>.py.
"""

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from regan_tf import losses, models
from regan_tf.compat import keras, tf
from regan_tf.pruning.wrapper import prune_generator, pruned_tensors

# One tiny configuration per registered architecture (z_dim 8). A new architecture
# must add one here: test_every_registered_architecture_has_a_tiny_configuration.
TINY = {
    "autogan": dict(image_size=32, g_channels=8, d_channels=8),
    "dcgan": dict(image_size=16, g_base_channels=4, d_base_channels=4, upsampling="nearest"),
    "progan": dict(image_size=16, fmap_base=64, fmap_max=16),
    "sngan": dict(image_size=32, g_channels=8, d_channels=8),
    "stylegan2": dict(image_size=16, w_dim=8, channel_base=128, channel_max=16),
}
NAMES = sorted(TINY)
Z_DIM = 8
# Re-GAN keeps the output layers of these dense (as the references do).
EXCLUDE = {"progan": ("to_rgb",), "stylegan2": ("torgb",)}
# StyleGAN2's output is linear and clipped to [-1, 1] only at inference (training=False).
CLIPPED_AT_INFERENCE_ONLY = {"stylegan2"}


def _build(name: str, channels: int = 3) -> models.GAN:
  return models.build(name, channels=channels, z_dim=Z_DIM, **TINY[name])


def _z(batch: int = 4, seed: int = 0) -> tf.Tensor:
  return tf.random.stateless_normal([batch, Z_DIM], seed=(seed, 1))


def _reals(name: str, batch: int = 4, channels: int = 3) -> tf.Tensor:
  size = TINY[name]["image_size"]
  return tf.random.stateless_uniform([batch, size, size, channels], seed=(1, 2), minval=-1.0,
                                     maxval=1.0)


def _all_layers(model: keras.Model):
  """The layers of ``model`` and of its nested models, depth first."""
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      yield from _all_layers(layer)
    else:
      yield layer


# -------------------------------------------------------------------- registry


def test_every_registered_architecture_has_a_tiny_configuration():
  assert models.names() == ("autogan", "dcgan", "progan", "sngan", "stylegan2")
  assert tuple(NAMES) == models.names()


def test_registry_unknown_name_lists_valid_names():
  with pytest.raises(ValueError, match=r"name='biggan'.*autogan, dcgan, progan, sngan, stylegan2"):
    models.build("biggan", image_size=32, channels=3)


def test_registry_passes_architecture_kwargs_through():
  with pytest.raises(TypeError, match="g_channels"):
    models.build("dcgan", image_size=32, channels=3, g_channels=4)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("arg, value", [("channels", 0), ("z_dim", -1), ("image_size", 32.0)])
def test_rejects_bad_common_arguments_naming_them(name, arg, value):
  kwargs = {**TINY[name], "channels": 3, "z_dim": Z_DIM, arg: value}
  with pytest.raises(ValueError, match=f"{name}.build: {arg}={value!r}"):
    models.build(name, **kwargs)


# ------------------------------------------------------------ shapes and range


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_dtypes_and_range(name, channels):
  gan = _build(name, channels)
  size = TINY[name]["image_size"]
  assert isinstance(gan, models.GAN) and gan.z_dim == Z_DIM
  assert gan.generator.output_shape == (None, size, size, channels)
  assert gan.discriminator.output_shape == (None, 1)
  z = _z() * 3.0  # far into the tails: the range must still hold
  for training in (True, False):
    images = gan.generator(z, training=training)
    assert images.shape == (4, size, size, channels) and images.dtype == tf.float32
    if not training or name not in CLIPPED_AT_INFERENCE_ONLY:
      assert np.all(np.abs(images.numpy()) <= 1.0), training
    logits = gan.discriminator(images, training=training)
    assert logits.shape == (4, 1) and logits.dtype == tf.float32
    assert np.all(np.isfinite(logits.numpy()))


# --------------------------------------------------------------------- pruning


@pytest.mark.parametrize("name", NAMES)
def test_whole_generator_prunable_by_tfmot(name):
  gan = _build(name)
  assert gan.generator._is_graph_network  # TFMOT clones Functional models only
  pruned = tfmot.sparsity.keras.prune_low_magnitude(gan.generator)
  # Every layer, weightless ones included (NearestUpsample2D, PixelNorm, ...), is wrapped.
  unwrapped = [layer.name for layer in _all_layers(pruned)
               if not isinstance(layer, (pruning_wrapper.PruneLowMagnitude, keras.layers.InputLayer))]
  assert not unwrapped
  wrapped = [layer for layer in _all_layers(pruned)
             if isinstance(layer, pruning_wrapper.PruneLowMagnitude) and layer.layer.weights]
  assert wrapped
  z = _z()
  images = pruned(z, training=False)
  assert images.dtype == tf.float32
  np.testing.assert_allclose(images.numpy(), gan.generator(z, training=False).numpy(), atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_generator_prunable_by_regan_wrapping(name):
  gan = _build(name)
  pruned = prune_generator(gan.generator, exclude=EXCLUDE.get(name, ()))
  tensors = pruned_tensors(pruned)
  # By default Re-GAN prunes connections (kernels) only, all of them outside the exclusions.
  assert tensors and all(t.name.endswith("/kernel") for t in tensors), [t.name for t in tensors]
  assert not any(p in t.name for p in EXCLUDE.get(name, ()) for t in tensors)
  assert all(np.all(t.mask.numpy() == 1.0) for t in tensors)  # dense until the first sparse phase
  z = _z()
  np.testing.assert_allclose(pruned(z, training=False).numpy(),
                             gan.generator(z, training=False).numpy(), atol=1e-5)


# ------------------------------------------------------------------ round trip


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip(name):
  gan = _build(name)
  for model, x in ((gan.generator, _z()), (gan.discriminator, _reals(name))):
    copy = keras.Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    np.testing.assert_allclose(copy(x, training=False).numpy(), model(x, training=False).numpy(),
                               rtol=1e-5, atol=1e-5, err_msg=model.name)


# ------------------------------------------------------------ mixed precision


@pytest.mark.parametrize("name", NAMES)
def test_mixed_precision_computes_in_float16_and_returns_float32(name):
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    gan = _build(name)
    images = gan.generator(_z(), training=True)
    logits = gan.discriminator(images, training=True)
  finally:
    keras.mixed_precision.set_global_policy("float32")
  for model in (gan.generator, gan.discriminator):
    assert any(layer.compute_dtype == "float16" for layer in _all_layers(model)), model.name
  assert images.dtype == tf.float32 and logits.dtype == tf.float32
  assert np.all(np.isfinite(images.numpy())) and np.all(np.isfinite(logits.numpy()))


# --------------------------------------------------------------------- training


@pytest.mark.parametrize("name", NAMES)
def test_one_adversarial_step_moves_every_weight(name):
  gan = _build(name)
  g, d = gan.generator, gan.discriminator
  g_loss_fn, d_loss_fn = losses.get("hinge")
  g_opt, d_opt = keras.optimizers.Adam(1e-3, 0.0, 0.9), keras.optimizers.Adam(1e-3, 0.0, 0.9)
  reals = _reals(name)
  variables = g.trainable_variables + d.trainable_variables
  before = [v.numpy() for v in variables]
  sn_u = [v for v in d.non_trainable_variables if "sn_u" in v.name]
  u_before = [v.numpy() for v in sn_u]

  fake = g(_z(seed=1), training=True)
  with tf.GradientTape() as tape:
    d_loss = d_loss_fn(d(reals, training=True), d(fake, training=True))
  d_opt.apply_gradients(zip(tape.gradient(d_loss, d.trainable_variables), d.trainable_variables))
  with tf.GradientTape() as tape:
    g_loss = g_loss_fn(d(g(_z(seed=2), training=True), training=True))
  grads = tape.gradient(g_loss, g.trainable_variables)
  assert all(x is not None for x in grads)  # every G weight is on a path to the images
  g_opt.apply_gradients(zip(grads, g.trainable_variables))

  assert np.isfinite(d_loss.numpy()) and np.isfinite(g_loss.numpy())
  unchanged = {v.name for v, b in zip(variables, before) if np.array_equal(v.numpy(), b)}
  # The hinge loss gives D's output bias zero gradient while every logit is in (-1, 1)
  # (d/db = -1 + 1); every other weight must move.
  last = d.layers[-1]
  allowed = {last.bias.name} if getattr(last, "bias", None) is not None else set()
  assert unchanged <= allowed, unchanged
  # Spectral norm's power-iteration vectors advance in training mode.
  assert all(not np.array_equal(v.numpy(), b) for v, b in zip(sn_u, u_before))


@pytest.mark.parametrize("name", NAMES)
def test_adversarial_gradients_compile_under_xla(name):
  gan = _build(name)
  g, d = gan.generator, gan.discriminator

  @tf.function(jit_compile=True)
  def grads(z):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.nn.softplus(-d(g(z, training=True), training=True)))
    return tape.gradient(loss, g.trainable_variables + d.trainable_variables)

  out = grads(_z())
  assert all(x is not None and np.all(np.isfinite(x.numpy())) for x in out)
