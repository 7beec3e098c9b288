"""Tests for regan_tf.models.stylegan2 (StyleGAN2 config E, prunable by Re-GAN)."""

import math

import numpy as np
import pytest
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from regan_tf import losses
from regan_tf import export
from regan_tf.compat import keras, tf
from regan_tf.models import GAN, layers, stylegan2
from regan_tf.pruning import masks
from regan_tf.pruning.controller import ReganController
from regan_tf.pruning.schedule import ReganSchedule
from regan_tf.pruning.wrapper import ReganPruneWrapper, prune_generator, pruned_tensors, strip

from conftest import load_export_in_fresh_process

Z_DIM = 16
# 16x16; channels 16 at 4x4 and 8x8, 8 at 16x16; 2 mapping layers (S <= 32).
TINY = dict(image_size=16, channels=3, z_dim=Z_DIM, w_dim=16, channel_base=128, channel_max=16)
LRELU_GAIN = math.sqrt(2.0)


def _count(model: keras.Model) -> int:
  return int(sum(np.prod(w.shape) for w in model.trainable_weights))


# ------------------------------------------------------------ counts by hand


def _ch(r, base, cmax):
  return min(base // r, cmax)


def _g_params(size, c, z, w, layers, base, cmax) -> int:
  """Trainable G weights by hand, layer by layer as stylegan2-ada prints them."""

  def conv(cin, cout):  # 3x3 kernel + affine (w -> cin, bias) + bias + noise strength
    return 9 * cin * cout + (w * cin + cin) + cout + 1

  def torgb(cin):  # 1x1 kernel + affine + bias
    return cin * c + (w * cin + cin) + c

  total = z * w + w + (layers - 1) * (w * w + w)
  c4 = _ch(4, base, cmax)
  total += 16 * c4 + conv(c4, c4) + torgb(c4)
  r, cin = 8, c4
  while r <= size:
    cout = _ch(r, base, cmax)
    total += conv(cin, cout) + conv(cout, cout) + torgb(cout)
    cin, r = cout, 2 * r
  return total


def _d_params(size, c, base, cmax, resnet=True) -> int:
  total = c * _ch(size, base, cmax) + _ch(size, base, cmax)  # fromrgb
  r = size
  while r > 4:
    tmp, out = _ch(r, base, cmax), _ch(r // 2, base, cmax)
    total += 9 * tmp * tmp + tmp + 9 * tmp * out + out + (tmp * out if resnet else 0)
    r //= 2
  c4 = _ch(4, base, cmax)
  return total + 9 * (c4 + 1) * c4 + c4 + 16 * c4 * c4 + c4 + c4 + 1


@pytest.fixture(scope="module")
def tiny() -> GAN:
  keras.utils.set_random_seed(3)
  return stylegan2.build(**TINY)


def test_reference_parameter_counts_by_formula():
  # The numbers pinned in the module docstring.
  assert _g_params(32, 3, 512, 512, 2, 32768, 512) == 19_947_539  # ada 'cifar'
  assert _d_params(32, 3, 32768, 512) == 21_507_073
  assert _d_params(32, 3, 32768, 512, resnet=False) == 20_720_641
  assert _g_params(256, 3, 512, 512, 8, 32768, 512) == 30_034_338  # Re-GAN / rosinality
  assert _d_params(256, 3, 32768, 512) == 28_864_129
  assert _g_params(256, 3, 512, 512, 8, 16384, 512) == 24_767_458  # ada 'paper256'
  assert _d_params(256, 3, 16384, 512) == 24_001_089
  # Per-layer values stylegan2-ada-pytorch prints (mapping.fc0, b4.conv1, b4.torgb, b4 const).
  assert (512 * 512 + 512, 9 * 512 * 512 + 512 * 512 + 512 + 512 + 1) == (262_656, 2_622_465)
  assert 512 * 3 + 512 * 512 + 512 + 3 == 264_195


def test_cifar_config_parameter_counts():
  gan = stylegan2.build(image_size=32)  # about 5 s on 2 CPU cores
  assert (_count(gan.generator), _count(gan.discriminator)) == (19_947_539, 21_507_073)
  assert gan.z_dim == 512
  assert len(gan.generator.get_layer("mapping").layers) == 2 + 2 + 1  # input, pixel norm, 2 dense, w_avg


@pytest.mark.slow
@pytest.mark.parametrize("kwargs, counts", [
    (dict(), (30_034_338, 28_864_129)),
    (dict(channel_base=16384), (24_767_458, 24_001_089)),
])
def test_256_parameter_counts(kwargs, counts):
  gan = stylegan2.build(image_size=256, **kwargs)  # about 10 s each on 2 CPU cores
  assert (_count(gan.generator), _count(gan.discriminator)) == counts
  assert len(gan.generator.get_layer("mapping").layers) == 2 + 8 + 1


@pytest.mark.parametrize("architecture", ["resnet", "orig"])
def test_tiny_parameter_counts_match_formula(tiny, architecture):
  gan = tiny if architecture == "resnet" else stylegan2.build(**TINY, d_architecture=architecture)
  assert _count(gan.generator) == _g_params(16, 3, 16, 16, 2, 128, 16)
  assert _count(gan.discriminator) == _d_params(16, 3, 128, 16, resnet=architecture == "resnet")


# ------------------------------------------------------------ shapes, names


def test_training_output_is_linear_not_clamped(tiny):
  # Shapes, dtypes and the [-1, 1] range at inference: test_models_contract.py.
  z = tf.random.stateless_normal([4, Z_DIM], seed=(1, 2))
  train = tiny.generator(z, training=True)
  assert np.all(np.isfinite(train.numpy()))
  assert 0.1 < float(tf.math.reduce_std(train)) < 5.0  # linear output, not clamped in training


def test_inference_output_is_the_training_output_clipped():
  gan = stylegan2.build(**TINY, noise="const")
  z = tf.random.stateless_normal([2, Z_DIM], seed=(4, 2))
  raw = gan.generator(z, training=True).numpy()
  assert np.abs(raw).max() > 1.0  # otherwise the clip is not exercised
  np.testing.assert_allclose(gan.generator(z, training=False).numpy(), np.clip(raw, -1, 1),
                             atol=1e-6)


def test_w_avg_is_the_moving_average_of_training_ws_only(tiny):
  g = stylegan2.build(**TINY, w_avg_beta=0.9).generator
  mapping, _ = stylegan2.mapping_and_synthesis(g)
  w_avg = stylegan2.tracked_w_avg(g)
  assert not w_avg.trainable and np.all(w_avg.numpy() == 0)
  z1, z2 = (tf.random.stateless_normal([4, Z_DIM], seed=(s, 0)) for s in (1, 2))
  g(z1, training=False)
  assert np.all(w_avg.numpy() == 0)  # inference leaves it alone
  g(z1, training=True)
  mapping(z2, training=True)  # style mixing and path length call the mapping network directly
  mean1, mean2 = (np.mean(mapping(z, training=False).numpy(), axis=0) for z in (z1, z2))
  np.testing.assert_allclose(w_avg.numpy(), 0.9 * (0.1 * mean1) + 0.1 * mean2, rtol=1e-5, atol=1e-7)
  # Clones (the EMA model, the pruned generator) rebuild it with its beta.
  clone = keras.models.clone_model(g)
  layer = clone.get_layer("mapping").get_layer("mapping_w_avg")
  assert layer.beta == 0.9 and stylegan2.tracked_w_avg(clone) is layer.w_avg


def test_layer_names_and_structure(tiny):
  g = tiny.generator
  assert g._is_graph_network and tiny.discriminator._is_graph_network
  assert [layer.name for layer in g.layers] == ["z", "mapping", "broadcast_ws", "synthesis"]
  mapping, synthesis = stylegan2.mapping_and_synthesis(g)
  assert [layer.name for layer in mapping.layers[2:]] == ["mapping_dense0", "mapping_dense1", "mapping_w_avg"]
  names = [layer.name for layer in synthesis.layers]
  assert len(names) == len(set(names))
  expected = ["b4_const", "b4_conv", "b4_conv_affine", "b4_torgb", "b4_torgb_affine"]
  for r in (8, 16):
    expected += [f"b{r}_conv0", f"b{r}_conv0_affine", f"b{r}_conv1", f"b{r}_conv1_affine",
                 f"b{r}_torgb", f"b{r}_torgb_affine", f"b{r}_img_up", f"b{r}_img"]
  assert sorted(names) == sorted(["ws", "output_clip"] + expected)
  assert synthesis.input.shape == (None, stylegan2.num_ws(16), 16) == (None, 6, 16)
  # ws index of every style: b4 conv 0, b4 torgb 1, b8 conv0 1, conv1 2, torgb 3, ...
  indices = {n: synthesis.get_layer(n).latent_index for n in names if n.endswith("_affine")}
  assert indices == {"b4_conv_affine": 0, "b4_torgb_affine": 1, "b8_conv0_affine": 1,
                     "b8_conv1_affine": 2, "b8_torgb_affine": 3, "b16_conv0_affine": 3,
                     "b16_conv1_affine": 4, "b16_torgb_affine": 5}
  assert synthesis.get_layer("b8_conv0").up and not synthesis.get_layer("b8_conv1").up
  d_names = [layer.name for layer in tiny.discriminator.layers]
  for r in (16, 8):
    assert {f"b{r}_skip", f"b{r}_conv0", f"b{r}_conv1", f"b{r}_add"} <= set(d_names)
  assert {"b16_fromrgb", "b4_mbstd", "b4_conv", "b4_fc", "b4_out"} <= set(d_names)
  assert [n for n in d_names if n.endswith("_skip")] == ["b16_skip", "b8_skip"]


def test_mapping_and_synthesis_compose_to_the_generator(tiny):
  mapping, synthesis = stylegan2.mapping_and_synthesis(tiny.generator)
  z = tf.random.stateless_normal([3, Z_DIM], seed=(5, 5))
  w = mapping(z)
  ws = stylegan2.broadcast_w(w, stylegan2.num_ws(16))
  np.testing.assert_allclose(synthesis(ws, training=False).numpy(),
                             tiny.generator(z, training=False).numpy(), atol=1e-6)
  with pytest.raises(ValueError, match="mapping"):
    stylegan2.mapping_and_synthesis(tiny.discriminator)


def test_equalized_learning_rate_in_the_mapping(tiny):
  dense = tiny.generator.get_layer("mapping").get_layer("mapping_dense0")
  kernel = dense.kernel.numpy()
  assert abs(kernel.std() - 100.0) < 10.0  # stored ~ N(0, 1/0.01^2)
  x = tf.random.stateless_normal([2, 16], seed=(0, 3))
  pre = x.numpy() @ (kernel * 0.01 / math.sqrt(16)) + dense.bias.numpy() * 0.01
  expected = np.where(pre > 0, pre, 0.2 * pre) * LRELU_GAIN
  np.testing.assert_allclose(dense(x).numpy(), expected, rtol=1e-5, atol=1e-5)
  affine = tiny.generator.get_layer("synthesis").get_layer("b4_conv_affine")
  np.testing.assert_array_equal(affine.bias.numpy(), 1.0)


# ------------------------------------------------- modulation, resampling vs NumPy


def _np_blur_1d(x, axis, pad0, pad1, gain):
  taps = np.array([1.0, 3.0, 3.0, 1.0]) / 8.0 * gain
  pad = [(0, 0)] * x.ndim
  pad[axis] = (pad0, pad1)
  x = np.pad(x, pad)
  n = x.shape[axis] - 3
  return sum(t * np.take(x, np.arange(j, j + n), axis=axis) for j, t in enumerate(taps))


def _np_blur(x, pad0, pad1, gain=1.0):
  return _np_blur_1d(_np_blur_1d(x, 1, pad0, pad1, gain), 2, pad0, pad1, gain)


def _np_conv_same(x, w):
  """x [H, W, I], w [k, k, I, O] -> [H, W, O], cross-correlation with zero padding."""
  k = w.shape[0]
  xp = np.pad(x, [(k // 2, k // 2), (k // 2, k // 2), (0, 0)])
  h, wd = x.shape[:2]
  return sum(xp[a:a + h, b:b + wd] @ w[a, b] for a in range(k) for b in range(k))


def _np_conv_transpose_stride2(x, w):
  """Scatter form: out[2i + a, 2j + b] += x[i, j] @ w[a, b]; [H, W, I] -> [2H+k-2, ...]."""
  k = w.shape[0]
  h, wd = x.shape[:2]
  out = np.zeros((2 * h + k - 2, 2 * wd + k - 2, w.shape[-1]))
  for a in range(k):
    for b in range(k):
      out[a:a + 2 * h:2, b:b + 2 * wd:2] += x @ w[a, b]
  return out


def _lrelu(x):
  return np.where(x > 0, x, 0.2 * x) * LRELU_GAIN


@pytest.mark.parametrize("up", [False, True])
def test_demodulation_gives_unit_norm_and_the_layer_convolves_with_it(up):
  keras.utils.set_random_seed(7)
  layer = stylegan2.ModulatedConv2D(6, 3, up=up, noise="none")
  x = tf.random.stateless_normal([2, 4, 4, 5], seed=(1, 1))
  styles = tf.random.stateless_normal([2, 5], seed=(2, 2)) * 2.0 + 1.0
  out = layer([x, styles]).numpy()
  layer.bias.assign(tf.random.stateless_normal([6], seed=(3, 3)))
  out = layer([x, styles]).numpy()

  # Independent NumPy: W = kernel / sqrt(fan_in); W'_b = W * s_b (per input channel);
  # W''_b = W'_b / sqrt(sum over (kh, kw, in) of W'_b^2 + 1e-8).
  kernel = layer.kernel.numpy().astype(np.float64)
  weight = kernel / math.sqrt(5 * 9)
  s = styles.numpy().astype(np.float64)
  modulated = weight[None] * s[:, None, None, :, None]
  demod = modulated / np.sqrt(np.sum(modulated**2, axis=(1, 2, 3), keepdims=True) + 1e-8)
  np.testing.assert_allclose(np.sqrt(np.sum(demod**2, axis=(1, 2, 3))), 1.0, rtol=1e-6)
  np.testing.assert_allclose(layer.effective_kernel(styles).numpy(), demod, rtol=1e-4, atol=1e-6)
  for b in range(2):
    if up:
      y = _np_blur(_np_conv_transpose_stride2(x.numpy()[b], demod[b])[None], 1, 1, gain=2.0)[0]
    else:
      y = _np_conv_same(x.numpy()[b], demod[b])
    np.testing.assert_allclose(out[b], _lrelu(y + layer.bias.numpy()), rtol=1e-4, atol=1e-4)
  assert out.shape == ((2, 8, 8, 6) if up else (2, 4, 4, 6))


def test_to_rgb_is_modulated_without_demodulation():
  keras.utils.set_random_seed(8)
  layer = stylegan2.ToRGB(3)
  x = tf.random.stateless_normal([2, 4, 4, 5], seed=(1, 4))
  styles = tf.random.stateless_normal([2, 5], seed=(2, 4))
  layer([x, styles])
  layer.bias.assign([0.1, -0.2, 0.3])
  kernel = layer.kernel.numpy()[0, 0]
  expected = (x.numpy() * styles.numpy()[:, None, None, :] / math.sqrt(5)) @ kernel
  np.testing.assert_allclose(layer([x, styles]).numpy(), expected + [0.1, -0.2, 0.3],
                             rtol=1e-5, atol=1e-5)


def test_upsample_2d_matches_upfirdn():
  x = tf.random.stateless_normal([2, 5, 3, 4], seed=(6, 1))
  # upfirdn2d.upsample2d(x, [1, 3, 3, 1]): zero-stuff, pad (2, 1), filter with gain 4.
  stuffed = np.zeros((2, 10, 6, 4))
  stuffed[:, ::2, ::2] = x.numpy()
  expected = _np_blur(stuffed, 2, 1, gain=2.0)
  np.testing.assert_allclose(stylegan2.upsample_2d(x).numpy(), expected, rtol=1e-5, atol=1e-6)
  # A constant image stays constant away from the zero-padded border.
  ones = stylegan2.upsample_2d(tf.ones([1, 4, 4, 1])).numpy()[0, 1:-1, 1:-1, 0]
  np.testing.assert_allclose(ones, 1.0, rtol=1e-6)


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_downsampling_conv_matches_blur_then_strided_conv(kernel_size):
  keras.utils.set_random_seed(9)
  layer = layers.EqualizedConv2D(4, kernel_size, down=True, activation="lrelu", output_gain=0.5)
  x = tf.random.stateless_normal([2, 8, 8, 3], seed=(5, 1))
  out = layer(x).numpy()
  p = 2 + (kernel_size - 1)
  blurred = _np_blur(x.numpy(), (p + 1) // 2, p // 2)
  w = layer.kernel.numpy() / math.sqrt(3 * kernel_size**2)
  k = kernel_size
  y = sum(blurred[:, a:a + 8:2, b:b + 8:2] @ w[a, b] for a in range(k) for b in range(k))
  np.testing.assert_allclose(out, _lrelu(y + layer.bias.numpy()) * 0.5, rtol=1e-4, atol=1e-5)
  assert out.shape == (2, 4, 4, 4)


# ------------------------------------------------------------------- noise


def test_noise_is_deterministic_per_z_and_constant_at_inference():
  gan = stylegan2.build(**TINY)
  synthesis = gan.generator.get_layer("synthesis")
  convs = [layer for layer in synthesis.layers if isinstance(layer, stylegan2.ModulatedConv2D)]
  for layer in convs:
    layer.noise_strength.assign(1.0)
  z1 = tf.random.stateless_normal([2, Z_DIM], seed=(1, 1))
  z2 = tf.random.stateless_normal([2, Z_DIM], seed=(1, 2))
  g = gan.generator
  np.testing.assert_array_equal(g(z1, training=True).numpy(), g(z1, training=True).numpy())
  np.testing.assert_array_equal(g(z1, training=False).numpy(), g(z1, training=False).numpy())
  assert not np.allclose(g(z1, training=True).numpy(), g(z1, training=False).numpy())
  # Inference uses the constant buffers: the same noise image for every z.
  const = stylegan2.build(**TINY, noise="const")
  const.generator.set_weights(g.get_weights())
  np.testing.assert_allclose(const.generator(z2, training=False).numpy(),
                             g(z2, training=False).numpy(), atol=1e-6)
  # Training noise is fresh: with strengths 0 the training output changes.
  for layer in convs:
    layer.noise_strength.assign(0.0)
  assert not np.allclose(g(z2, training=True).numpy(),
                         const.generator(z2, training=True).numpy(), atol=1e-4)


# ----------------------------------------------------------------- pruning


def _connection_names(image_size=16, mapping_layers=2):
  names = [f"mapping/mapping_dense{i}/kernel" for i in range(mapping_layers)]
  names += ["synthesis/b4_conv_affine/kernel", "synthesis/b4_conv/kernel"]
  r = 8
  while r <= image_size:
    for conv in ("conv0", "conv1"):
      names += [f"synthesis/b{r}_{conv}_affine/kernel", f"synthesis/b{r}_{conv}/kernel"]
    r *= 2
  return names


def test_prune_generator_wraps_the_connections(tiny):
  pruned = prune_generator(tiny.generator, exclude=("torgb",))
  assert sorted(t.name for t in pruned_tensors(pruned)) == sorted(_connection_names())
  synthesis = pruned.get_layer("synthesis")
  wrapped = synthesis.get_layer("regan_prune_wrapper_b8_conv0")
  assert isinstance(wrapped, ReganPruneWrapper)
  assert isinstance(wrapped.layer, stylegan2.ModulatedConv2D)
  assert isinstance(synthesis.get_layer("b8_torgb"), stylegan2.ToRGB)  # excluded: dense
  assert isinstance(synthesis.get_layer("b8_torgb_affine"), stylegan2.StyleAffine)
  z = tf.random.stateless_normal([2, Z_DIM], seed=(3, 1))
  np.testing.assert_allclose(pruned(z, training=False).numpy(),
                             tiny.generator(z, training=False).numpy(), atol=1e-6)
  np.testing.assert_allclose(pruned(z, training=True).numpy(),
                             tiny.generator(z, training=True).numpy(), atol=1e-5)
  # Without exclude, to_rgb kernels (and their affines) are connections too.
  all_names = {t.name for t in pruned_tensors(prune_generator(tiny.generator))}
  assert {"synthesis/b8_torgb/kernel", "synthesis/b8_torgb_affine/kernel"} <= all_names


def test_prune_all_weights_exposes_every_trainable_generator_weight():
  gan = stylegan2.build(**TINY, prune_all_weights=True)
  pruned = prune_generator(gan.generator, exclude=("torgb",))
  names = {t.name for t in pruned_tensors(pruned)}
  assert {"synthesis/b4_const/const", "synthesis/b8_conv0/bias",
          "synthesis/b8_conv0/noise_strength", "synthesis/b8_conv0_affine/bias",
          "mapping/mapping_dense0/bias"} <= names
  assert not any("noise_const" in n or "torgb" in n for n in names)
  trainable = {v.ref() for v in pruned.trainable_variables}
  assert all(t.weight.ref() in trainable for t in pruned_tensors(pruned))


def _pruned_run(sparsity=0.3, z=None):
  keras.utils.set_random_seed(11)
  gan = stylegan2.build(**TINY)
  schedule = ReganSchedule(warmup=0, g=5, sparsity=sparsity)
  pruned = prune_generator(gan.generator, exclude=("torgb",))
  dense = None if z is None else pruned(z, training=False).numpy()
  controller = ReganController(pruned, schedule)
  controller.before_g_step(0)  # step 0 opens sparse phase 1: magnitude masks, weights zeroed
  return gan, pruned, controller, dense


def _assert_masked_zero(tensors, sparsity=0.3):
  for t in tensors:
    mask = t.mask.numpy()
    assert int((mask == 0).sum()) == masks.num_pruned(mask.size, sparsity), t.name
    np.testing.assert_array_equal(t.weight.numpy()[mask == 0], 0.0, err_msg=t.name)


def test_masked_connections_stay_zero_through_forward_and_optimizer_steps():
  z = tf.random.stateless_normal([4, Z_DIM], seed=(8, 8))
  gan, pruned, controller, dense = _pruned_run(z=z)
  tensors = pruned_tensors(pruned)
  _assert_masked_zero(tensors)
  # The layers read their (now masked) variables on every call, not a copy: the
  # output changes, and equals that of a fresh copy holding the masked weights.
  sparse = pruned(z, training=False).numpy()
  assert not np.allclose(sparse, dense, atol=1e-3)
  np.testing.assert_allclose(strip(pruned)(z, training=False).numpy(), sparse, atol=1e-6)
  before = [t.weight.numpy() for t in tensors]
  pruned(z, training=True)
  pruned(z, training=False)
  for t, b in zip(tensors, before):
    np.testing.assert_array_equal(t.weight.numpy(), b)  # forward passes write nothing

  optimizer = keras.optimizers.Adam(1e-2, beta_1=0.0, beta_2=0.99)
  variables = pruned.trainable_variables
  for step in range(2):
    with tf.GradientTape() as tape:
      logits = gan.discriminator(pruned(z, training=True), training=True)
      loss = tf.reduce_mean(tf.nn.softplus(-logits))
    grads = controller.mask_gradients(tape.gradient(loss, variables), variables)
    by_ref = {v.ref(): g for v, g in zip(variables, grads)}
    for t in tensors:
      np.testing.assert_array_equal(by_ref[t.weight.ref()].numpy()[t.mask.numpy() == 0], 0.0)
    optimizer.apply_gradients(zip(grads, variables))
    controller.apply_masks()
    _assert_masked_zero(tensors)
  for t, b in zip(tensors, before):  # the kept connections did train
    assert not np.array_equal(t.weight.numpy(), b), t.name


def test_penalty_gradients_respect_masks():
  gan, pruned, controller, _ = _pruned_run()
  tensors = pruned_tensors(pruned)
  _, synthesis = stylegan2.mapping_and_synthesis(pruned)
  mapping = pruned.get_layer("mapping")
  optimizer = keras.optimizers.Adam(1e-2, beta_1=0.0, beta_2=0.99)
  variables = pruned.trainable_variables
  z = tf.random.stateless_normal([4, Z_DIM], seed=(2, 9))
  with tf.GradientTape() as tape:
    ws = stylegan2.broadcast_w(mapping(z, training=True), stylegan2.num_ws(16))
    penalty, new_mean, lengths = losses.path_length_penalty(
        synthesis, ws, tf.constant(0.5), seed=tf.constant([1, 2]))
  grads = tape.gradient(penalty, variables)
  assert np.isfinite(penalty.numpy()) and lengths.shape == (4,)
  connection_grads = {v.ref(): g for v, g in zip(variables, grads)}
  assert all(connection_grads[t.weight.ref()] is not None for t in tensors)
  grads = controller.mask_gradients(grads, variables)
  optimizer.apply_gradients(zip(grads, variables))
  controller.apply_masks()
  _assert_masked_zero(tensors)

  # R1 is a D-only penalty: D's weights get finite gradients, G is untouched.
  reals = tf.random.stateless_uniform([4, 16, 16, 3], seed=(3, 3), minval=-1, maxval=1)
  d_vars = gan.discriminator.trainable_variables
  with tf.GradientTape() as tape:
    r1 = losses.r1_penalty(gan.discriminator, reals)
  d_grads = tape.gradient(r1, d_vars)
  assert np.isfinite(r1.numpy()) and r1.numpy() > 0
  # The input gradient does not depend on the last bias (the references add 0 * logits).
  missing = [v.name for v, g in zip(d_vars, d_grads) if g is None]
  assert missing == ["b4_out/bias:0"]
  assert all(np.all(np.isfinite(g.numpy())) for g in d_grads if g is not None)
  _assert_masked_zero(tensors)


def test_r1_penalty_of_a_linear_discriminator():
  images = keras.Input((4, 4, 2))
  logits = keras.layers.Dense(1, use_bias=False)(keras.layers.Flatten()(images))
  d = keras.Model(images, logits)
  a = d.layers[-1].kernel.numpy()
  reals = tf.random.stateless_normal([3, 4, 4, 2], seed=(1, 1))
  np.testing.assert_allclose(losses.r1_penalty(d, reals).numpy(), np.sum(a**2), rtol=1e-5)
  # With an augmentation x -> 2x the gradient w.r.t. the un-augmented reals doubles.
  np.testing.assert_allclose(losses.r1_penalty(d, reals, augment=lambda x: 2.0 * x).numpy(),
                             4 * np.sum(a**2), rtol=1e-5)


def test_path_length_penalty_of_a_linear_synthesis():
  n, w_dim, h, w, c = 3, 4, 2, 2, 1
  ws_in = keras.Input((n, w_dim))
  flat = keras.layers.Dense(h * w * c, use_bias=False)(keras.layers.Flatten()(ws_in))
  synthesis = keras.Model(ws_in, keras.layers.Reshape((h, w, c))(flat))
  m = synthesis.layers[2].kernel.numpy()  # [n * w_dim, h * w * c]
  ws = tf.random.stateless_normal([2, n, w_dim], seed=(4, 4))
  seed = tf.constant([7, 8])
  penalty, new_mean, lengths = losses.path_length_penalty(synthesis, ws, 1.0, seed, decay=0.5)
  y = (tf.random.stateless_normal([2, h, w, c], seed) / math.sqrt(h * w)).numpy()
  grads = (y.reshape(2, -1) @ m.T).reshape(2, n, w_dim)
  expected_lengths = np.sqrt(np.mean(np.sum(grads**2, axis=2), axis=1))
  np.testing.assert_allclose(lengths.numpy(), expected_lengths, rtol=1e-5)
  expected_mean = 1.0 + 0.5 * (expected_lengths.mean() - 1.0)
  np.testing.assert_allclose(new_mean.numpy(), expected_mean, rtol=1e-5)
  np.testing.assert_allclose(penalty.numpy(), np.mean((expected_lengths - expected_mean)**2),
                             rtol=1e-4)


def test_strip_exports_a_savedmodel_that_samples_in_a_fresh_process(tmp_path):
  gan = stylegan2.build(**TINY)
  pruned = prune_generator(gan.generator, exclude=("torgb",))
  for t in pruned_tensors(pruned):
    t.mask.assign(masks.magnitude_mask(t.weight, 0.3))  # weights not zeroed yet
  plain = strip(pruned)
  assert not any(isinstance(layer, pruning_wrapper.PruneLowMagnitude)
                 for model in (plain, *stylegan2.mapping_and_synthesis(plain))
                 for layer in model.layers)
  for t in pruned_tensors(pruned):
    *path, weight = t.name.split("/")
    layer = plain.get_layer(path[0]).get_layer(path[1])
    np.testing.assert_array_equal(getattr(layer, weight).numpy()[t.mask.numpy() == 0], 0.0)
  z = tf.random.stateless_normal([3, Z_DIM], seed=(6, 6)).numpy()
  expected = plain(z, training=False).numpy()
  np.testing.assert_allclose(expected, pruned(z, training=False).numpy(), atol=1e-6)
  path = str(tmp_path / "export")
  export.export_generator(plain, path, z_dim=Z_DIM)
  loaded = load_export_in_fresh_process(path, z)
  np.testing.assert_allclose(loaded.images, expected, atol=1e-5)
  assert loaded.images.shape == (3, 16, 16, 3)
  assert loaded.images.min() >= -1 and loaded.images.max() <= 1
  assert loaded.imported == []  # neither tf_keras, TFMOT nor regan_tf


# ------------------------------------------------------- cloning, XLA, mixing


def test_clone_model_and_registered_names(tiny):
  # keras.models.clone_model is how Re-GAN and the EMA copy the generator (the
  # config round trip of G and D: test_models_contract.py).
  clone = keras.models.clone_model(tiny.generator)
  clone.set_weights(tiny.generator.get_weights())
  z = tf.random.stateless_normal([2, Z_DIM], seed=(2, 2))
  np.testing.assert_allclose(clone(z, training=False).numpy(),
                             tiny.generator(z, training=False).numpy(), atol=1e-6)
  # StyleGAN2's own layers under a package of their own; those shared with ProGAN under regan_tf.
  name = keras.saving.get_registered_name(stylegan2.ModulatedConv2D)
  assert name == "regan_tf.stylegan2>ModulatedConv2D"
  assert keras.saving.get_registered_name(layers.PixelNorm) == "regan_tf>PixelNorm"


@pytest.mark.slow
def test_penalties_compile_under_xla(tiny):
  g, d = tiny.generator, tiny.discriminator  # second-order gradients: ~30 s to compile on 2 cores
  mapping, synthesis = stylegan2.mapping_and_synthesis(g)

  @tf.function(jit_compile=True)
  def grads(z, reals):
    with tf.GradientTape() as tape:
      ws = stylegan2.broadcast_w(mapping(z, training=True), 6)
      pl, _, _ = losses.path_length_penalty(synthesis, ws, 0.0, tf.constant([1, 1]))
      r1 = losses.r1_penalty(d, reals)
    return tape.gradient([pl, r1], g.trainable_variables + d.trainable_variables[:-1])

  out = grads(tf.random.normal([4, Z_DIM]), tf.random.normal([4, 16, 16, 3]))
  assert all(np.all(np.isfinite(x.numpy())) for x in out if x is not None)


def test_style_mixing_truncation_and_average_w(tiny):
  a = tf.zeros([2, 6, 3])
  b = tf.ones([2, 6, 3])
  mixed = stylegan2.mix_styles(a, b, 2).numpy()
  np.testing.assert_array_equal(mixed[:, :2], 0.0)
  np.testing.assert_array_equal(mixed[:, 2:], 1.0)
  per_example = stylegan2.mix_styles(a, b, tf.constant([1, 6])).numpy()
  np.testing.assert_array_equal(per_example[0, :, 0], [0, 1, 1, 1, 1, 1])
  np.testing.assert_array_equal(per_example[1, :, 0], 0.0)
  ws = tf.fill([1, 6, 3], 3.0)
  w_avg = tf.constant([1.0, 1.0, 1.0])
  np.testing.assert_allclose(stylegan2.truncate(ws, w_avg, 0.5).numpy(), 2.0)
  cut = stylegan2.truncate(ws, w_avg, 0.5, cutoff=2).numpy()
  np.testing.assert_allclose(cut[0, :, 0], [2, 2, 3, 3, 3, 3])
  mapping, _ = stylegan2.mapping_and_synthesis(tiny.generator)
  mean = stylegan2.average_w(mapping, z_dim=Z_DIM, num_samples=10, batch_size=4)
  z = tf.concat([tf.random.stateless_normal([4, Z_DIM], seed=[0, i]) for i in range(3)], 0)[:10]
  np.testing.assert_allclose(mean.numpy(), mapping(z).numpy().mean(0), rtol=1e-5, atol=1e-6)


def test_mixed_precision():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    gan = stylegan2.build(**TINY)
    images = gan.generator(tf.random.normal([2, Z_DIM]), training=True)
    logits = gan.discriminator(images, training=True)
    synthesis = gan.generator.get_layer("synthesis")
    assert synthesis.get_layer("b8_conv1").compute_dtype == "float16"
    assert synthesis.get_layer("b8_torgb").compute_dtype == "float32"
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert images.dtype == tf.float32 and logits.dtype == tf.float32
  assert np.all(np.isfinite(images.numpy())) and np.all(np.isfinite(logits.numpy()))


@pytest.mark.parametrize("kwargs, match", [
    (dict(image_size=48), "image_size=48"),
    (dict(image_size=4), "image_size=4"),
    (dict(mapping_layers=0), "mapping_layers=0"),
    (dict(mapping_lr_multiplier=0.0), "mapping_lr_multiplier=0.0"),
    (dict(channel_base=8), "channel_base=8"),
    (dict(d_architecture="skip"), "d_architecture='skip'"),
    (dict(noise="off"), "noise='off'"),
    (dict(mbstd_group_size=0), "mbstd_group_size=0"),
])
def test_rejects_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    stylegan2.build(**{**TINY, **kwargs})
