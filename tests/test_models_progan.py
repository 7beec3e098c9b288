"""Tests for regan_tf.models.progan (progressive GAN: parameter counts, stages, fade-in, builder)."""

import functools
import json
import math

import numpy as np
import pytest
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from regan_tf import data, export, losses, models, pruning, trainer
from regan_tf.compat import keras, tf
from regan_tf.models import layers as gan_layers
from regan_tf.models import progan
from regan_tf.models.progan import stage_reals
from regan_tf.pruning import masks
from regan_tf.pruning.wrapper import ReganPruneWrapper, prune_generator, pruned_tensors, strip

from conftest import load_export_in_fresh_process, run_two_replica_script

# Widths nf(0..3) = 16, 16, 16, 8: the 16x16 blocks change width (16 -> 8).
TINY = dict(image_size=16, channels=3, z_dim=8, fmap_base=64, fmap_max=16)
Z = tf.random.stateless_normal([4, 8], seed=(0, 1))
X16 = tf.random.stateless_uniform([4, 16, 16, 3], seed=(0, 2), minval=-1.0, maxval=1.0)


def _tiny(**overrides) -> progan.ProGAN:
  return progan.build_progressive(**{**TINY, **overrides})


def _count(weights) -> int:
  return int(sum(np.prod(w.shape) for w in weights))


def _np_pool(x: np.ndarray, f: int) -> np.ndarray:
  b, h, w, c = x.shape
  return x.reshape(b, h // f, f, w // f, f, c).mean(axis=(2, 4))


def _np_up(x: np.ndarray) -> np.ndarray:
  return x.repeat(2, axis=1).repeat(2, axis=2)


# ----------------------------------------------------------------------------
# Parameter counts: the reference formula (networks.py), written out by hand
# ----------------------------------------------------------------------------


def _nf(i, base, fmax):
  return min(base // 2**i, fmax)


def _g_params(size, z, c, base=8192, fmax=512, all_stages=False):
  n = lambda i: _nf(i, base, fmax)  # noqa: E731
  top = int(math.log2(size))
  total = z * 16 * n(1) + n(1) + 9 * n(1) * n(1) + n(1)  # dense to 4x4 (per-channel bias), conv
  for k in range(3, top + 1):
    f, f_in = n(k - 1), n(k - 2)
    total += 9 * f_in * f + f + 9 * f * f + f
  to_rgb = [c * n(k - 1) + c for k in range(2, top + 1)]
  return total + (sum(to_rgb) if all_stages else to_rgb[-1])


def _d_params(size, c, base=8192, fmax=512, all_stages=False):
  n = lambda i: _nf(i, base, fmax)  # noqa: E731
  top = int(math.log2(size))
  total = 9 * (n(1) + 1) * n(1) + n(1) + 16 * n(1) * n(0) + n(0) + n(0) + 1
  for k in range(3, top + 1):
    f, f_out = n(k - 1), n(k - 2)
    total += 9 * f * f + f + 9 * f * f_out + f_out
  from_rgb = [c * n(k - 1) + n(k - 1) for k in range(2, top + 1)]
  return total + (sum(from_rgb) if all_stages else from_rgb[-1])


def test_tiny_parameter_counts_match_reference_formula():
  p = _tiny()
  g, d = p.generator(2, fade=False), p.discriminator(2, fade=False)
  assert _count(g.trainable_weights) == _g_params(16, 8, 3, 64, 16)
  assert _count(d.trainable_weights) == _d_params(16, 3, 64, 16)
  assert _count(p.generator_variables) == _g_params(16, 8, 3, 64, 16, all_stages=True)
  assert _count(p.discriminator_variables) == _d_params(16, 3, 64, 16, all_stages=True)
  # The fading model adds exactly the previous resolution's to_rgb / from_rgb.
  assert _count(p.generator(2).trainable_weights) == _count(g.trainable_weights) + 16 * 3 + 3
  assert _count(p.discriminator(2).trainable_weights) == _count(d.trainable_weights) + 3 * 16 + 16


@pytest.mark.parametrize("size, g_final, d_final, g_all, d_all", [
    (32, 20_715_011, 20_720_641, 20_719_628, 20_726_785),
    (256, 23_036_995, 23_042_625, 23_044_309, 23_052_353),
])
def test_reference_parameter_counts(size, g_final, d_final, g_all, d_all):
  p = progan.build_progressive(image_size=size)
  top = p.num_stages - 1
  assert _count(p.generator(top, fade=False).trainable_weights) == g_final == _g_params(size, 512, 3)
  assert _count(p.discriminator(top, fade=False).trainable_weights) == d_final == _d_params(size, 3)
  assert _count(p.generator_variables) == g_all == _g_params(size, 512, 3, all_stages=True)
  assert _count(p.discriminator_variables) == d_all == _d_params(size, 3, all_stages=True)


def test_formula_gives_the_papers_23_1m_at_1024():
  # Karras et al. 2018, Table 2: 23.1M parameters for G and for D at 1024x1024.
  assert _g_params(1024, 512, 3, all_stages=True) == 23_079_115
  assert _d_params(1024, 3, all_stages=True) == 23_087_249
  for count in (_g_params(1024, 512, 3), _d_params(1024, 3), 23_079_115, 23_087_249):
    assert round(count / 1e6, 1) == 23.1
  # The Re-GAN port's 32x32 D (512 channels) has the reference count; its G one more 3x3 conv.
  assert _d_params(32, 3, all_stages=True) == 20_726_785
  assert _g_params(32, 512, 3, all_stages=True) + 9 * 512 * 512 + 512 == 23_079_436


# ----------------------------------------------------------------------------
# Stages and fade-in
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("fade", [True, False])
def test_shapes_per_stage(fade):
  p = _tiny()
  assert p.num_stages == 3
  for stage, r in enumerate((4, 8, 16)):
    p.alpha.assign(0.5)
    g, d = p.generator(stage, fade=fade), p.discriminator(stage, fade=fade)
    assert g._is_graph_network and d._is_graph_network
    images = g(Z)
    assert images.shape == (4, r, r, 3) and images.dtype == tf.float32
    assert np.all(np.isfinite(images.numpy())) and np.all(np.abs(images.numpy()) <= 1.0)
    logits = d(images)
    assert logits.shape == (4, 1) and logits.dtype == tf.float32
    assert np.all(np.isfinite(logits.numpy()))
    assert p.generator(stage, fade=fade) is g  # cached
    fading = fade and stage > 0
    assert any(isinstance(layer, progan.FadeIn) for layer in g.layers) == fading
    assert any(isinstance(layer, progan.FadeIn) for layer in d.layers) == fading


def test_generator_fade_in_endpoints_and_blend():
  p = _tiny(output_activation="linear")
  fading, plain, previous = p.generator(2), p.generator(2, fade=False), p.generator(1, fade=False)
  p.alpha.assign(0.0)
  start = fading(Z).numpy()
  np.testing.assert_allclose(start, _np_up(previous(Z).numpy()), rtol=1e-6, atol=1e-6)
  p.alpha.assign(1.0)
  end = fading(Z).numpy()
  np.testing.assert_allclose(end, plain(Z).numpy(), rtol=1e-6, atol=1e-6)
  assert not np.allclose(start, end, atol=1e-3)
  p.alpha.assign(0.3)
  a = np.float32(0.3)
  np.testing.assert_allclose(fading(Z).numpy(), (np.float32(1) - a) * start + a * end,
                             rtol=1e-6, atol=1e-6)


def test_tanh_output_is_tanh_of_the_linear_output():
  keras.utils.set_random_seed(5)
  linear = _tiny(output_activation="linear")
  keras.utils.set_random_seed(5)
  squashed = _tiny()
  for p in (linear, squashed):
    p.alpha.assign(0.4)
  np.testing.assert_allclose(squashed.generator(1)(Z).numpy(),
                             np.tanh(linear.generator(1)(Z).numpy()), rtol=1e-5, atol=1e-6)


def test_discriminator_fade_in_endpoints_and_blend():
  p = _tiny()
  fading, plain, previous = p.discriminator(2), p.discriminator(2, fade=False), p.discriminator(1, False)
  pooled = keras.layers.AveragePooling2D(2)(X16)
  p.alpha.assign(0.0)
  np.testing.assert_allclose(fading(X16).numpy(), previous(pooled).numpy(), rtol=1e-6, atol=1e-6)
  p.alpha.assign(1.0)
  np.testing.assert_allclose(fading(X16).numpy(), plain(X16).numpy(), rtol=1e-6, atol=1e-6)
  # In between, the features entering the 8x8 blocks are the exact blend of both branches.
  fade = fading.get_layer("fade_16")
  probe = keras.Model(fading.inputs, [fade.input[0], fade.input[1], fade.output])
  p.alpha.assign(0.3)
  skip, new, blended = (t.numpy() for t in probe(X16))
  a = np.float32(0.3)
  assert not np.allclose(skip, new, atol=1e-3)
  np.testing.assert_allclose(blended, (np.float32(1) - a) * skip + a * new, rtol=1e-6, atol=1e-6)
  p.alpha.assign(1.5)  # clipped to 1
  np.testing.assert_allclose(fading(X16).numpy(), plain(X16).numpy(), rtol=1e-6, atol=1e-6)


def test_stages_share_weights():
  p = _tiny()
  g1, g2 = p.generator(1, fade=False), p.generator(2)
  assert g1.get_layer("b8_conv0") is g2.get_layer("b8_conv0")
  before = g2(Z).numpy()
  g1.get_layer("b8_conv0").kernel.assign_add(tf.ones_like(g1.get_layer("b8_conv0").kernel))
  assert not np.allclose(g2(Z).numpy(), before, atol=1e-4)
  d1, d2 = p.discriminator(1), p.discriminator(2, fade=False)
  before = d2(X16).numpy()
  d1.get_layer("b4_dense").bias.assign_add(tf.ones_like(d1.get_layer("b4_dense").bias))
  assert not np.allclose(d2(X16).numpy(), before, atol=1e-4)


def test_alpha_is_shared_by_g_d_and_clones():
  p = _tiny()
  g, d = p.generator(1), p.discriminator(1)
  assert g.get_layer("fade_8").alpha is p.alpha is d.get_layer("fade_8").alpha
  assert not any(w is p.alpha for w in g.trainable_weights)
  assert any(w is p.alpha for w in g.non_trainable_weights)  # checkpointed with the model
  other = _tiny()
  assert other.alpha is not p.alpha
  clone = keras.models.clone_model(g)
  clone.set_weights(g.get_weights())
  for value in (0.25, 0.75):
    p.alpha.assign(value)
    np.testing.assert_array_equal(clone(Z).numpy(), g(Z).numpy())
  assert clone.get_layer("fade_8").alpha is p.alpha


def test_checkpoint_of_the_progan_restores_every_stage_and_alpha(tmp_path):
  keras.utils.set_random_seed(1)
  p = _tiny()
  p.generator(1), p.discriminator(2)  # cached models must not change what is saved
  p.alpha.assign(0.3)
  path = tf.train.Checkpoint(progan=p).save(str(tmp_path / "ckpt"))
  keras.utils.set_random_seed(2)
  q = _tiny()
  assert not np.allclose(q.generator(2)(Z).numpy(), p.generator(2)(Z).numpy())
  tf.train.Checkpoint(progan=q).restore(path).assert_existing_objects_matched()
  assert float(q.alpha.numpy()) == pytest.approx(0.3)
  for stage in range(3):
    np.testing.assert_array_equal(q.generator(stage)(Z).numpy(), p.generator(stage)(Z).numpy())
  np.testing.assert_array_equal(q.discriminator(2)(X16).numpy(), p.discriminator(2)(X16).numpy())
  assert len(p.trainable_variables) == len(p.generator_variables) + len(p.discriminator_variables)


def test_weights_do_not_depend_on_which_stage_is_built_first():
  keras.utils.set_random_seed(3)
  a = _tiny()
  keras.utils.set_random_seed(3)
  b = _tiny()
  a.generator(2), b.generator(0)  # models in a different order; the layers exist already
  for x, y in zip(a.generator_variables + a.discriminator_variables,
                  b.generator_variables + b.discriminator_variables):
    np.testing.assert_array_equal(x.numpy(), y.numpy())


# ----------------------------------------------------------------------------
# Real images per stage
# ----------------------------------------------------------------------------


def test_stage_reals_against_numpy():
  x = X16.numpy()
  np.testing.assert_allclose(stage_reals(X16, 0, 0.3).numpy(), _np_pool(x, 4), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stage_reals(X16, 1, 1.0).numpy(), _np_pool(x, 2), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stage_reals(X16, 1, 0.0).numpy(), _np_up(_np_pool(x, 4)), rtol=1e-5,
                             atol=1e-6)
  a = 0.25
  expected = (1 - a) * _np_up(_np_pool(x, 4)) + a * _np_pool(x, 2)
  np.testing.assert_allclose(stage_reals(X16, 1, tf.constant(a)).numpy(), expected, rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_array_equal(stage_reals(X16, 2, 1.0).numpy(), x)  # final stage, no fade
  expected = 0.5 * _np_up(_np_pool(x, 2)) + 0.5 * x
  np.testing.assert_allclose(stage_reals(X16, 2, 0.5).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_stage_reals_reads_the_alpha_variable_in_a_compiled_function():
  p = _tiny()
  fn = tf.function(lambda images: stage_reals(images, 2, p.alpha), jit_compile=True)
  p.alpha.assign(0.0)
  low = fn(X16).numpy()
  p.alpha.assign(1.0)
  np.testing.assert_allclose(fn(X16).numpy(), X16.numpy(), rtol=1e-6)
  assert not np.allclose(low, X16.numpy())
  assert fn.experimental_get_tracing_count() == 1


@pytest.mark.parametrize("images, stage, match", [
    (tf.zeros([2, 12, 12, 3]), 1, "power-of-two multiple"),
    (tf.zeros([2, 4, 4, 3]), 1, "power-of-two multiple"),
    (tf.zeros([2, 16, 16, 3], tf.uint8), 1, "uint8"),
    (tf.zeros([2, 16, 16, 3]), -1, "stage=-1"),
])
def test_stage_reals_rejects_bad_inputs(images, stage, match):
  with pytest.raises(ValueError, match=match):
    stage_reals(images, stage, 1.0)


# ----------------------------------------------------------------------------
# The builder, Re-GAN pruning, export, training
# ----------------------------------------------------------------------------


def test_build_returns_final_stage_without_fade_and_is_registered():
  gan = models.build("progan", image_size=16, channels=1, z_dim=8, fmap_base=64, fmap_max=16)
  assert "progan" in models.names() and gan.z_dim == 8
  assert gan.generator.output_shape == (None, 16, 16, 1)
  assert gan.discriminator.output_shape == (None, 1)
  names = [layer.name for layer in gan.generator.layers]
  assert len(names) == len(set(names)) and "to_rgb_16" in names and "to_rgb_8" not in names
  assert not any(isinstance(layer, progan.FadeIn)
                 for layer in gan.generator.layers + gan.discriminator.layers)
  assert isinstance(gan.generator.get_layer("b16_up"), gan_layers.NearestUpsample2D)
  assert gan.generator.get_layer("to_rgb_16").gain == 1.0
  assert gan.generator.get_layer("b4_dense").gain == pytest.approx(np.sqrt(2) / 4)
  assert gan.discriminator.get_layer("logits").gain == 1.0


def _set_magnitude_masks(pruned: keras.Model, sparsity: float):
  """Masks the smallest ``sparsity`` of every pruned kernel (what the controller's update does)."""
  tensors = pruned_tensors(pruned)
  for tensor in tensors:
    mask = masks.magnitude_mask(tensor.weight, sparsity)
    tensor.mask.assign(mask)
    tensor.weight.assign(tensor.weight * mask)  # the controller's apply_masks
  return tensors


def test_prune_generator_wraps_equalized_layers_and_masks_are_exact():
  gan = progan.build(**TINY)
  pruned = prune_generator(gan.generator, exclude=("to_rgb",))
  names = [t.name for t in pruned_tensors(pruned)]
  assert names == ["b4_dense/kernel", "b4_conv/kernel", "b8_conv0/kernel", "b8_conv1/kernel",
                   "b16_conv0/kernel", "b16_conv1/kernel"]
  wrapper = pruned.get_layer("regan_prune_wrapper_b8_conv1")
  assert isinstance(wrapper, ReganPruneWrapper)
  assert isinstance(wrapper.layer, gan_layers.EqualizedConv2D)
  assert not isinstance(pruned.get_layer("to_rgb_16"), pruning_wrapper.PruneLowMagnitude)
  np.testing.assert_array_equal(pruned(Z).numpy(), gan.generator(Z).numpy())

  dense_out = pruned(Z).numpy()
  tensors = _set_magnitude_masks(pruned, 0.3)
  out = pruned(Z).numpy()
  for tensor in tensors:
    w = tensor.weight.numpy()
    n = w.size
    assert int((w == 0).sum()) == masks.num_pruned(n, 0.3), tensor.name
    kept = np.abs(w[tensor.mask.numpy() == 1])
    assert int((tensor.mask.numpy() == 0).sum()) == masks.num_pruned(n, 0.3)
    # The smallest 30% by magnitude: every masked |w| was <= every kept |w|.
    layer = gan.generator.get_layer(tensor.name.split("/")[0])
    original = np.abs(layer.kernel.numpy())
    assert original[tensor.mask.numpy() == 0].max() <= kept.min()
  # The forward pass reads the masked variables: it equals the unpruned generator
  # with the same kernels zeroed, and differs from the dense output.
  assert not np.allclose(out, dense_out, atol=1e-4)
  for tensor in tensors:
    gan.generator.get_layer(tensor.name.split("/")[0]).kernel.assign(tensor.weight)
  np.testing.assert_allclose(gan.generator(Z).numpy(), out, rtol=1e-6, atol=1e-6)


def test_stripped_generator_exports_and_loads_in_a_fresh_process(tmp_path):
  gan = progan.build(**TINY)
  pruned = prune_generator(gan.generator, exclude=("to_rgb",))
  _set_magnitude_masks(pruned, 0.3)
  plain = strip(pruned)
  assert not any(isinstance(layer, pruning_wrapper.PruneLowMagnitude) for layer in plain.layers)
  export_dir = export.export_generator(plain, str(tmp_path / "export"), z_dim=8)
  loaded = load_export_in_fresh_process(export_dir, Z.numpy())
  assert loaded.images.shape == (4, 16, 16, 3)
  np.testing.assert_allclose(loaded.images, plain(Z).numpy(), atol=1e-5)
  # The exported zeros are the masks'.
  kernels = [a for name, a in loaded.variables.items() if "kernel" in name and "to_rgb" not in name]
  assert len(kernels) == 6
  assert [int((k == 0).sum()) for k in kernels] == [masks.num_pruned(k.size, 0.3) for k in kernels]


def test_wgan_gp_step_with_fade_compiles_under_xla():
  p = _tiny()
  g, d = p.generator(2), p.discriminator(2)
  p.alpha.assign(0.5)

  @tf.function(jit_compile=True)
  def grads(z, images):
    reals = stage_reals(images, 2, p.alpha)
    with tf.GradientTape() as tape:
      fake = g(z, training=True)
      real_logits, fake_logits = d(reals, training=True), d(fake, training=True)
      d_loss = (losses.wasserstein_discriminator_loss(real_logits, fake_logits)
                + 10.0 * losses.gradient_penalty(d, reals, fake, seed=[0, 1])
                + 0.001 * losses.drift_penalty(real_logits))
    d_grads = tape.gradient(d_loss, d.trainable_variables)
    with tf.GradientTape() as tape:
      g_loss = losses.wasserstein_generator_loss(d(g(z, training=True), training=True))
    return d_loss, d_grads, tape.gradient(g_loss, g.trainable_variables)

  d_loss, d_grads, g_grads = grads(Z, X16)
  assert np.isfinite(d_loss.numpy())
  assert len(d_grads) == len(d.trainable_variables) and len(g_grads) == len(g.trainable_variables)
  for grad in d_grads + g_grads:
    assert grad is not None and np.all(np.isfinite(grad.numpy()))
  assert np.any(g_grads[0].numpy() != 0)
  p.alpha.assign(0.9)  # a new alpha is read, not traced
  grads(Z, X16)
  assert grads.experimental_get_tracing_count() == 1


@pytest.mark.slow
def test_final_stage_trains_with_the_library_trainer_under_regan(tmp_path):
  """The existing trainer trains build()'s networks (WGAN-GP) and Re-GAN prunes the equalized kernels."""
  # warmup=1, g=2: step 0 dense, steps 1-2 sparse; the export is taken in the sparse phase.
  result = trainer.train(
      workdir=str(tmp_path), dataset=functools.partial(data.load_digits, image_size=16, channels=1),
      model=functools.partial(progan.build, fmap_base=32, fmap_max=16), z_dim=8, batch_size=8,
      n_critic=1, loss="wasserstein", gp_weight=10.0, train_steps=3, g_lr=1e-3, d_lr=1e-3,
      beta2=0.99, checkpoint_every=3, log_every=1, image_every=3, num_grid_images=4, seed=0,
      pruning=functools.partial(pruning.build_controller, sparsity=0.3, warmup=1, g=2,
                                exclude=("to_rgb",)))
  assert result.step == 3 and np.isfinite(result.metrics["d_loss"])
  assert result.metrics["flops/savings_percent"] > 0  # equalized layers count their own FLOPs
  meta = json.load(open(tmp_path / "export" / "regan_tf_export.json"))
  assert sorted(meta["sparsity"]["per_tensor"]) == sorted(
      f"{name}/kernel" for name in ("b4_dense", "b4_conv", "b8_conv0", "b8_conv1", "b16_conv0",
                                    "b16_conv1"))
  assert meta["sparsity"]["overall"] == pytest.approx(0.3, abs=0.01)


def test_alpha_under_mirrored_strategy_is_assigned_on_the_host_without_retracing():
  result = run_two_replica_script("""
      from regan_tf.models import progan
      dist = two_replica_strategy()
      with dist.scope():
        p = progan.build_progressive(image_size=16, z_dim=8, fmap_base=64, fmap_max=16)
        g = p.generator(2)

      @tf.function
      def step(z):
        return dist.run(lambda z: tf.reduce_mean(g(z)), args=(z,))

      z = tf.random.stateless_normal([4, 8], seed=(0, 1))
      means = []
      for alpha in (0.0, 0.5, 1.0):
        p.alpha.assign(alpha)  # host side, cross-replica context
        means.append([float(v.numpy()) for v in step(z).values])
      assert all(m[0] == m[1] for m in means), means  # both replicas read the same alpha
      assert len({m[0] for m in means}) == 3, means
      assert step.experimental_get_tracing_count() == 1
      print("OK")
      """, timeout=180)
  assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]


def test_mixed_precision_keeps_float32_outputs():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    p = _tiny()
    p.alpha.assign(0.5)
    images = p.generator(2)(Z)
    logits = p.discriminator(2)(images)
    assert p.generator(2).get_layer("b8_conv0").compute_dtype == "float16"
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert images.dtype == tf.float32 and logits.dtype == tf.float32
  assert np.all(np.isfinite(logits.numpy()))


@pytest.mark.parametrize("kwargs, match", [
    (dict(image_size=4), "image_size=4"),
    (dict(image_size=48), "image_size=48"),
    (dict(image_size=2048), "image_size=2048"),
    (dict(fmap_base=0), "fmap_base=0"),
    (dict(fmap_max=None), "fmap_max=None"),
    (dict(output_activation="sigmoid"), "output_activation='sigmoid'"),
    (dict(mbstd_group_size=1), "mbstd_group_size=1"),
])
def test_rejects_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    progan.build(**{**TINY, **kwargs})


def test_rejects_bad_stage_and_layer_arguments():
  p = _tiny()
  for stage in (3, -1, 1.0):
    with pytest.raises(ValueError, match="stages are 0"):
      p.generator(stage)


def test_without_minibatch_stddev():
  p = _tiny(mbstd_group_size=0)
  d = p.discriminator(2, fade=False)
  assert not any(isinstance(layer, gan_layers.MinibatchStdDev) for layer in d.layers)
  assert d(tf.zeros([3, 16, 16, 3])).shape == (3, 1)  # any batch size
