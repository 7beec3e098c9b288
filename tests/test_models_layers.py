"""Tests for regan_tf.models.layers: upsampling, spectral norm, sum pooling, Karras et al. layers."""

import textwrap

import numpy as np
import pytest

from regan_tf.compat import keras, tf
from regan_tf.models import layers

from conftest import run_two_replica_script


@pytest.fixture
def mixed_precision():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy("float32")


# ---------------------------------------------------------------- NearestUpsample2D


@pytest.mark.parametrize("size", [1, 2, 3])
def test_nearest_upsample_equals_upsampling2d(size):
  x = tf.random.normal([2, 3, 5, 4])
  expected = keras.layers.UpSampling2D(size, interpolation="nearest")(x)
  np.testing.assert_array_equal(layers.NearestUpsample2D(size)(x).numpy(), expected.numpy())


def test_nearest_upsample_gradient_compiles_under_xla_on_cpu():
  layer = layers.NearestUpsample2D(2)
  x = tf.random.normal([2, 3, 4, 5])
  weights = tf.random.normal([2, 6, 8, 5])

  @tf.function(jit_compile=True)
  def grad(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = tf.reduce_sum(layer(x) * weights)
    return tape.gradient(y, x)

  # Each input pixel receives the sum of the weights of its 2x2 output block.
  expected = tf.reshape(weights, [2, 3, 2, 4, 2, 5]).numpy().sum(axis=(2, 4))
  np.testing.assert_allclose(grad(x).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_nearest_upsample_static_shape_in_functional_model():
  inputs = keras.Input(shape=(4, 6, 3))
  outputs = layers.NearestUpsample2D(2)(inputs)
  assert outputs.shape.as_list() == [None, 8, 12, 3]
  assert keras.Model(inputs, outputs)(tf.zeros([5, 4, 6, 3])).shape == (5, 8, 12, 3)


@pytest.mark.parametrize("size", [0, 2.0, True])
def test_nearest_upsample_rejects_bad_size(size):
  with pytest.raises(ValueError, match="size="):
    layers.NearestUpsample2D(size)


# ---------------------------------------------------------------- spectral norm


def test_spectral_norm_converges_to_largest_singular_value():
  rng = np.random.default_rng(0)
  w = rng.normal(size=(27, 8)).astype(np.float32)
  u = tf.constant(rng.normal(size=(1, 8)), tf.float32)
  sigma, u_next = layers.spectral_norm(tf.constant(w), u, power_iterations=100)
  np.testing.assert_allclose(sigma.numpy(), np.linalg.svd(w, compute_uv=False)[0], rtol=1e-4)
  assert u_next.shape == (1, 8)
  np.testing.assert_allclose(np.linalg.norm(u_next.numpy()), 1.0, rtol=1e-5)


def _with_spectral_gap(shape, seed):
  """A seeded matrix reshaped to ``shape`` whose top singular value is 3x the next.

  Power iteration converges like (s2/s1)^(2k); a random kernel can have s1 ~ s2
  and need thousands of iterations, which made these tests flaky.
  """
  rng = np.random.default_rng(seed)
  flat = rng.standard_normal((int(np.prod(shape[:-1])), shape[-1]))
  u, _, vt = np.linalg.svd(flat, full_matrices=False)
  singular = np.linspace(1.0, 0.5, len(vt))
  singular[0] = 3.0
  return ((u * singular) @ vt).reshape(shape).astype(np.float32)


def test_sn_conv_uses_kernel_over_largest_singular_value():
  layer = layers.SNConv2D(8, 3, padding="same", bias_initializer="random_normal")
  x = tf.random.stateless_normal([2, 5, 5, 4], seed=[3, 4])
  layer(x)  # build
  layer.kernel.assign(_with_spectral_gap(layer.kernel.shape, seed=0))
  kernel_before = layer.kernel.numpy()
  for _ in range(60):  # one power iteration per training call: u converges.
    layer(x, training=True)
  np.testing.assert_array_equal(layer.kernel.numpy(), kernel_before)  # W is never written.
  sigma = np.linalg.svd(kernel_before.reshape(-1, 8), compute_uv=False)[0]
  expected = tf.nn.conv2d(x, kernel_before / sigma, 1, "SAME") + layer.bias
  np.testing.assert_allclose(layer(x, training=False).numpy(), expected.numpy(),
                             rtol=1e-4, atol=1e-5)


def test_sn_dense_uses_kernel_over_largest_singular_value():
  layer = layers.SNDense(3, power_iterations=50)
  x = tf.random.stateless_normal([4, 6], seed=[5, 6])
  layer(x)  # build
  layer.kernel.assign(_with_spectral_gap(layer.kernel.shape, seed=1))
  out = layer(x, training=False)
  sigma = np.linalg.svd(layer.kernel.numpy(), compute_uv=False)[0]
  np.testing.assert_allclose(out.numpy(), (x @ (layer.kernel / sigma)).numpy(), rtol=1e-4,
                             atol=1e-5)


def test_sn_gradient_flows_through_sigma():
  layer = layers.SNConv2D(4, 3, use_bias=False)
  x = tf.random.stateless_normal([2, 6, 6, 3], seed=[1, 2])
  layer(x)  # build

  # y = |conv(x, W / sigma)|^2 / 2. With sigma a function of W (sigma = v^T W u is
  # linear in W), W / sigma(W) is invariant to scaling W, so grad . W = 0; with
  # sigma held constant y is homogeneous of degree 2 in W, so grad . W = 2y > 0.
  with tf.GradientTape() as tape:
    y = 0.5 * tf.reduce_sum(tf.square(layer(x, training=False)))
  grad_through_sigma = tape.gradient(y, layer.kernel).numpy()

  with tf.GradientTape() as tape:
    sigma, _ = layers.spectral_norm(tf.reshape(layer.kernel, [-1, 4]), layer.u)
    kernel = layer.kernel / tf.stop_gradient(sigma)
    y_const = 0.5 * tf.reduce_sum(tf.square(tf.nn.conv2d(x, kernel, 1, "VALID")))
  grad_const_sigma = tape.gradient(y_const, layer.kernel).numpy()

  np.testing.assert_allclose(y.numpy(), y_const.numpy(), rtol=1e-5)  # same forward pass
  w = layer.kernel.numpy()
  assert abs(np.sum(grad_through_sigma * w)) < 1e-4 * float(y)
  np.testing.assert_allclose(np.sum(grad_const_sigma * w), 2 * float(y), rtol=1e-4)


def test_sn_u_changes_only_when_training():
  layer = layers.SNDense(5)
  x = tf.random.normal([3, 7])
  layer(x)
  u0 = layer.u.numpy()
  layer(x, training=False)
  layer(x)  # training=None means inference
  np.testing.assert_array_equal(layer.u.numpy(), u0)
  layer(x, training=True)
  assert not np.allclose(layer.u.numpy(), u0)
  assert not layer.u.trainable
  assert layer.trainable_weights == [layer.kernel, layer.bias]


def test_sn_u_update_inside_tf_function_with_tensor_training_flag():
  layer = layers.SNConv2D(2, 1)
  x = tf.random.normal([1, 3, 3, 2])
  layer(x)
  u0 = layer.u.numpy()

  @tf.function
  def call(training):
    return layer(x, training=training)

  call(tf.constant(False))
  np.testing.assert_array_equal(layer.u.numpy(), u0)
  call(tf.constant(True))
  assert not np.allclose(layer.u.numpy(), u0)


def test_sn_conv_under_mixed_precision(mixed_precision):
  layer = layers.SNConv2D(4, 3)
  out = layer(tf.random.normal([2, 5, 5, 3]), training=True)
  assert out.dtype == tf.float16
  assert layer.kernel.dtype == tf.float32 and layer.u.dtype == tf.float32
  assert np.all(np.isfinite(out.numpy()))


def test_sn_training_step_compiles_under_xla():
  model = keras.Sequential([keras.Input((6, 6, 3)), layers.SNConv2D(4, 3, strides=2),
                            keras.layers.Flatten(), layers.SNDense(1)])
  x = tf.random.normal([2, 6, 6, 3])
  u0 = model.layers[0].u.numpy()

  @tf.function(jit_compile=True)
  def grads():
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(model(x, training=True))
    return tape.gradient(loss, model.trainable_variables)

  assert all(np.all(np.isfinite(g.numpy())) for g in grads())
  assert not np.allclose(model.layers[0].u.numpy(), u0)


@pytest.mark.parametrize("power_iterations", [0, -1, 1.5, True])
def test_sn_rejects_bad_power_iterations(power_iterations):
  with pytest.raises(ValueError, match="power_iterations="):
    layers.SNConv2D(4, 3, power_iterations=power_iterations)
  with pytest.raises(ValueError, match="power_iterations="):
    layers.SNDense(4, power_iterations=power_iterations)


def test_sn_conv_rejects_groups():
  with pytest.raises(ValueError, match="groups=2"):
    layers.SNConv2D(4, 3, groups=2)


@pytest.mark.parametrize("make_layer, input_shape", [
    (lambda: layers.SNConv2D(4, 3, strides=2, padding="same", power_iterations=2,
                             name="c"), [2, 6, 6, 3]),
    (lambda: layers.SNDense(4, use_bias=False, power_iterations=3, name="d"), [2, 5]),
    (lambda: layers.NearestUpsample2D(3, name="up"), [2, 2, 3, 4]),
    (lambda: layers.GlobalSumPooling2D(name="pool"), [2, 3, 3, 4]),
])
def test_config_round_trip(make_layer, input_shape):
  layer = make_layer()
  x = tf.random.normal(input_shape)
  out = layer(x)
  clone = type(layer).from_config(layer.get_config())
  assert clone.get_config() == layer.get_config()
  # Registered serializables: serialize -> deserialize finds our class by name.
  restored = keras.layers.deserialize(keras.layers.serialize(layer))
  assert type(restored) is type(layer)
  assert restored.get_config() == layer.get_config()
  restored(x)
  restored.set_weights(layer.get_weights())
  np.testing.assert_allclose(restored(x).numpy(), out.numpy(), rtol=1e-6)


def test_global_sum_pooling():
  x = np.arange(2 * 2 * 3 * 2, dtype=np.float32).reshape(2, 2, 3, 2)
  out = layers.GlobalSumPooling2D()(x)
  np.testing.assert_allclose(out.numpy(), x.sum(axis=(1, 2)))


# ---------------------------------------------------------------- MirroredStrategy

# Logical CPU devices must be configured before TensorFlow initializes its
# runtime, which this pytest process has already done, so this runs in a child.
_MIRRORED_CHECK = textwrap.dedent("""
    from regan_tf.models import layers

    strategy = two_replica_strategy()
    assert strategy.num_replicas_in_sync == 2
    with strategy.scope():
      model = keras.Sequential([keras.Input((6, 6, 3)), layers.SNConv2D(4, 3, name="conv"),
                                keras.layers.Flatten(), layers.SNDense(1, name="dense")])
      optimizer = keras.optimizers.SGD(0.1)
    conv = model.get_layer("conv")
    assert conv.u.aggregation == tf.VariableAggregation.ONLY_FIRST_REPLICA
    assert len(conv.u.values) == 2
    u0, kernel0 = conv.u.numpy(), conv.kernel.numpy()

    @tf.function
    def step(x):
      def replica_step(x):
        with tf.GradientTape() as tape:
          loss = tf.reduce_mean(model(x, training=True)) / strategy.num_replicas_in_sync
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss
      return strategy.run(replica_step, args=(x,))

    data = tf.data.Dataset.from_tensors(tf.random.normal([4, 6, 6, 3])).repeat(2)
    for x in strategy.experimental_distribute_dataset(data):
      step(x)
    for layer in (conv, model.get_layer("dense")):
      copies = [v.numpy() for v in layer.u.values]
      np.testing.assert_array_equal(copies[0], copies[1])
    assert not np.allclose(conv.u.numpy(), u0)
    assert not np.allclose(conv.kernel.numpy(), kernel0)
    print("MIRRORED_OK")
""")


def test_sn_layers_under_mirrored_strategy_on_two_cpu_devices():
  result = run_two_replica_script(_MIRRORED_CHECK, timeout=300)
  assert result.returncode == 0 and "MIRRORED_OK" in result.stdout, result.stderr[-3000:]


# ----------------------------------------------------------------------------
# The Karras et al. layers (ProGAN and StyleGAN2)
# ----------------------------------------------------------------------------


def test_equalized_dense_runtime_scale_against_numpy():
  rng = np.random.default_rng(0)
  layer = layers.EqualizedDense(6, gain=0.7)
  x = rng.normal(size=(3, 10)).astype(np.float32)
  layer(x)
  layer.bias.assign(rng.normal(size=6).astype(np.float32))
  w, b = layer.kernel.numpy(), layer.bias.numpy()
  assert layer.weight_scale == pytest.approx(0.7 / np.sqrt(10))
  np.testing.assert_allclose(layer(x).numpy(), x @ (w * 0.7 / np.sqrt(10)) + b, rtol=1e-5, atol=1e-6)
  # Per-channel bias after the reshape, as the generator's first layer.
  dense = layers.EqualizedDense(2 * 2 * 3, gain=np.sqrt(2), reshape=(2, 2, 3))
  y = dense(x).numpy()
  assert y.shape == (3, 2, 2, 3) and dense.bias.shape == (3,)
  np.testing.assert_allclose(
      y, (x @ (dense.kernel.numpy() * np.sqrt(2) / np.sqrt(10))).reshape(3, 2, 2, 3), rtol=1e-5,
      atol=1e-6)


def test_equalized_weights_are_unit_normal_with_zero_bias():
  layer = layers.EqualizedConv2D(64, 3)
  layer.build((None, 8, 8, 64))
  w = layer.kernel.numpy()
  assert abs(w.mean()) < 0.02 and abs(w.std() - 1.0) < 0.02  # 36,864 draws of N(0, 1)
  np.testing.assert_array_equal(layer.bias.numpy(), 0.0)


@pytest.mark.parametrize("kernel_size, gain", [(1, 1.0), (3, np.sqrt(2))])
def test_equalized_conv_runtime_scale_against_numpy(kernel_size, gain):
  rng = np.random.default_rng(1)
  layer = layers.EqualizedConv2D(5, kernel_size, gain=gain)
  x = rng.normal(size=(2, 6, 6, 4)).astype(np.float32)
  layer(x)
  fan_in = kernel_size * kernel_size * 4
  assert layer.weight_scale == pytest.approx(gain / np.sqrt(fan_in))
  # 'same' convolution written out in NumPy (cross-correlation, zero padding).
  w = layer.kernel.numpy() * gain / np.sqrt(fan_in)
  pad = kernel_size // 2
  xp = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
  expected = np.zeros((2, 6, 6, 5), np.float32)
  for i in range(kernel_size):
    for j in range(kernel_size):
      expected += np.einsum("bhwc,co->bhwo", xp[:, i:i + 6, j:j + 6, :], w[i, j])
  np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_equalized_layers_prunable_protocol_and_config_round_trip():
  for layer, shape in ((layers.EqualizedDense(4, gain=1.0, name="d"), (None, 3)),
                       (layers.EqualizedConv2D(4, 3, name="c"), (None, 5, 5, 2))):
    layer.build(shape)
    assert layer.get_prunable_weights() == [layer.kernel]
    copy = type(layer).from_config(layer.get_config())
    copy.build(shape)
    copy.set_weights(layer.get_weights())
    x = tf.random.normal([2, *shape[1:]])
    np.testing.assert_array_equal(copy(x).numpy(), layer(x).numpy())
    assert copy.weight_scale == layer.weight_scale


def test_pixel_norm_unit_mean_square_against_numpy():
  x = tf.random.normal([2, 3, 3, 7]) * 5.0
  y = layers.PixelNorm()(x).numpy()
  np.testing.assert_allclose(np.mean(y**2, axis=-1), 1.0, rtol=1e-5)
  xn = x.numpy()
  np.testing.assert_allclose(y, xn / np.sqrt(np.mean(xn**2, axis=-1, keepdims=True) + 1e-8),
                             rtol=1e-5)


def _np_minibatch_stddev(x: np.ndarray, group_size: int) -> np.ndarray:
  b = x.shape[0]
  g = min(group_size, b)
  m = b // g
  stat = np.zeros(b, np.float64)
  for k in range(m):
    members = x[k::m].astype(np.float64)  # group k holds examples k, k + m, k + 2m, ...
    stat[k::m] = np.sqrt(members.var(axis=0) + 1e-8).mean()
  extra = np.broadcast_to(stat[:, None, None, None], (*x.shape[:3], 1))
  return np.concatenate([x, extra], axis=-1)


@pytest.mark.parametrize("batch", [8, 2])
def test_minibatch_stddev_against_numpy(batch):
  x = tf.random.normal([batch, 4, 4, 3]) * tf.range(1.0, batch + 1.0)[:, None, None, None]
  y = layers.MinibatchStdDev(4)(x).numpy()
  assert y.shape == (batch, 4, 4, 4)
  np.testing.assert_array_equal(y[..., :3], x.numpy())
  np.testing.assert_allclose(y, _np_minibatch_stddev(x.numpy(), 4), rtol=1e-5)
  if batch == 8:  # the two groups differ: examples 0, 2, 4, 6 vs 1, 3, 5, 7
    assert y[0, 0, 0, 3] != y[1, 0, 0, 3] and y[0, 0, 0, 3] == y[2, 0, 0, 3]


def test_minibatch_stddev_rejects_indivisible_batch():
  with pytest.raises(ValueError, match="batch size 6 is not divisible"):
    layers.MinibatchStdDev(4)(tf.zeros([6, 4, 4, 2]))


def test_equalized_layers_reject_bad_arguments():
  with pytest.raises(ValueError, match="kernel_size=2"):
    layers.EqualizedConv2D(4, 2)
  with pytest.raises(ValueError, match="reshape"):
    layers.EqualizedDense(10, reshape=(2, 2, 3))


def test_minibatch_stddev_matches_numpy():
  x = tf.random.stateless_normal([8, 2, 3, 6], seed=(9, 9))
  out = layers.MinibatchStdDev(group_size=4, num_features=2)(x).numpy()
  y = x.numpy().reshape(4, 2, 2, 3, 2, 3)  # [G, n, H, W, F, c]: example b = g * n + i
  std = np.sqrt(((y - y.mean(0)) ** 2).mean(0) + 1e-8).mean(axis=(1, 2, 4))  # [n, F]
  expected = np.tile(std[:, None, None, :], (4, 2, 3, 1))
  np.testing.assert_allclose(out[..., :6], x.numpy())
  np.testing.assert_allclose(out[..., 6:], expected, rtol=1e-5)
  with pytest.raises(ValueError, match="divisible"):
    layers.MinibatchStdDev(group_size=4)(tf.zeros([6, 2, 2, 1]))
