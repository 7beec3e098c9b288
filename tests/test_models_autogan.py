"""Tests for regan_tf.models.autogan (AutoGAN's autogan_cifar10_a generator and its SN-GAN discriminator)."""

import json
import os

import numpy as np
import pytest

from regan_tf.compat import keras, tf
from regan_tf.models import GAN, autogan, layers

from conftest import REPO, load_export_in_fresh_process, run_python, run_two_replica_script

TINY = dict(g_channels=8, d_channels=8, z_dim=16)


def _count(model: keras.Model) -> int:
  return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def _g_params(z: int, g: int, c: int, bottom: int = 4) -> int:
  """Trainable generator weights by hand, read off the reference's layer shapes."""
  dense = z * bottom * bottom * g + bottom * bottom * g
  conv3 = 9 * g * g + g  # 6: conv1 and conv2 of the three cells
  conv1x1 = g * g + g  # 5: shortcuts of cells 1, 2; skips cell1->2, cell1->3, cell2->3
  return dense + 6 * conv3 + 5 * conv1x1 + 2 * g + 9 * g * c + c  # + output BN and conv


def _d_params(d: int, c: int) -> int:
  """Trainable discriminator weights by hand (final linear without bias)."""
  conv3 = 9 * d * d + d
  block1 = (9 * c * d + d) + conv3 + (c * d + d)
  block2 = 2 * conv3 + (d * d + d)
  return block1 + block2 + 2 * 2 * conv3 + d


@pytest.fixture(scope="module")
def tiny() -> GAN:
  return autogan.build(**TINY)


# ----------------------------------------------------------------------------
# Architecture
# ----------------------------------------------------------------------------


def test_reference_parameter_counts():
  # The AutoGAN paper and README give no parameter count; these are the reference
  # code's PyTorch parameters() counted from its layer shapes (see _g_params).
  gan = autogan.build()
  assert (_count(gan.generator), _count(gan.discriminator)) == (4_405_251, 1_053_824)
  assert (_g_params(128, 256, 3), _d_params(128, 3)) == (4_405_251, 1_053_824)
  assert gan.z_dim == 128
  assert gan.discriminator.get_layer("logits").use_bias is False


def test_tiny_parameter_counts_match_formula(tiny):
  assert _count(tiny.generator) == _g_params(16, 8, 3)
  assert _count(tiny.discriminator) == _d_params(8, 3)


@pytest.mark.parametrize("image_size, bottom", [(48, 6), (64, 8)])
def test_larger_image_sizes(image_size, bottom):
  gan = autogan.build(image_size=image_size, channels=1, **TINY)
  images = gan.generator(tf.random.normal([2, 16]))
  assert images.shape == (2, image_size, image_size, 1)
  assert gan.discriminator(images).shape == (2, 1)
  assert gan.generator.get_layer("reshape").output.shape[1] == bottom
  assert _count(gan.generator) == _g_params(16, 8, 1, bottom=bottom)


def test_searched_cells(tiny):
  g, d = tiny.generator, tiny.discriminator
  assert g._is_graph_network and d._is_graph_network  # Functional models
  names = [layer.name for layer in g.layers]
  assert len(names) == len(set(names))
  # Up-sampling modes nearest / bilinear / nearest.
  assert isinstance(g.get_layer("cell1_up1"), layers.NearestUpsample2D)
  assert isinstance(g.get_layer("cell2_up1"), keras.layers.UpSampling2D)
  assert g.get_layer("cell2_up1").interpolation == "bilinear"
  assert isinstance(g.get_layer("cell3_up1"), layers.NearestUpsample2D)
  # Inner shortcuts in cells 1 and 2 only; skips cell1 -> 2, cell1 -> 3, cell2 -> 3.
  convs = sorted(l.name for l in g.layers if isinstance(l, keras.layers.Conv2D))
  assert convs == ["cell1_conv1", "cell1_conv2", "cell1_shortcut",
                   "cell2_conv1", "cell2_conv2", "cell2_shortcut", "cell2_skip1",
                   "cell3_conv1", "cell3_conv2", "cell3_skip1", "cell3_skip2", "output_conv"]
  assert g.get_layer("cell3_skip1_up").size == 4 and g.get_layer("cell3_skip2_up").size == 2
  # A cell's skip feature includes its own skip inputs (the reference's in-place `h +=`).
  assert g.get_layer("cell3_skip2").input is g.get_layer("cell2_skip_add").output
  assert g.get_layer("cell3_skip1").input is g.get_layer("cell1_conv1").output
  # No normalization inside the cells: the only BatchNorm is before the output conv.
  assert [l.name for l in g.layers if isinstance(l, keras.layers.BatchNormalization)] == [
      "output_bn"]
  # Spectral norm on every conv and dense layer of D; none in G.
  d_weighted = [layer for layer in d.layers if layer.trainable_weights]
  assert d_weighted and all(isinstance(layer, (layers.SNConv2D, layers.SNDense))
                            for layer in d_weighted)
  assert not any(isinstance(layer, (layers.SNConv2D, layers.SNDense)) for layer in g.layers)
  assert [l.name for l in d.layers if l.name.endswith("_shortcut")] == [
      "block1_shortcut", "block2_shortcut"]


def _reference_forward(g: keras.Model, z: tf.Tensor) -> tf.Tensor:
  """The reference's forward pass (PyTorch order), written with raw ops on ``g``'s weights.

  Upsamples *before* every 1x1 conv, adds each cell's skips into its conv1
  output and takes that sum as the cell's skip feature; BatchNorm in inference
  mode. ``g`` must be the default 32x32 layout.
  """
  def conv(x, name):
    kernel, bias = g.get_layer(name).get_weights()
    return tf.nn.conv2d(x, kernel, 1, "SAME") + bias

  def up(x, mode, size):
    return tf.image.resize(x, [size, size], method=mode)

  kernel, bias = g.get_layer("dense").get_weights()
  width = kernel.shape[1] // 16
  x = tf.reshape(tf.matmul(z, kernel) + bias, [-1, 4, 4, width])
  skips = []
  for i, (mode, shortcut) in enumerate(autogan.CELLS, start=1):
    size = 2 * x.shape[1]
    h = conv(up(tf.nn.relu(x), mode, size), f"cell{i}_conv1")
    for j, f in enumerate(skips, start=1):
      h = h + conv(up(f, mode, size), f"cell{i}_skip{j}")
    skips.append(h)
    out = conv(tf.nn.relu(h), f"cell{i}_conv2")
    if shortcut:
      out = out + conv(up(x, mode, size), f"cell{i}_shortcut")
    x = out
  gamma, beta, mean, var = g.get_layer("output_bn").get_weights()
  x = tf.nn.relu(gamma * (x - mean) / np.sqrt(var + 1e-5) + beta)
  return tf.tanh(conv(x, "output_conv"))


def test_generator_equals_reference_forward_pass(tiny):
  g = tiny.generator
  z = tf.random.normal([2, 16])
  np.testing.assert_allclose(g(z, training=False).numpy(), _reference_forward(g, z).numpy(),
                             rtol=1e-4, atol=1e-5)


def _torch_bilinear_1d(x: np.ndarray, axis: int, factor: int) -> np.ndarray:
  """PyTorch's F.interpolate(mode='bilinear', align_corners=False) along one axis, in NumPy."""
  n = x.shape[axis]
  src = np.maximum((np.arange(n * factor) + 0.5) / factor - 0.5, 0.0)
  i0 = np.floor(src).astype(int)
  i1 = np.minimum(i0 + 1, n - 1)
  lam = (src - i0).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
  return np.take(x, i0, axis=axis) * (1 - lam) + np.take(x, i1, axis=axis) * lam


def test_bilinear_upsampling_matches_pytorch(tiny):
  x = np.random.default_rng(0).normal(size=(2, 5, 7, 3)).astype(np.float32)
  expected = _torch_bilinear_1d(_torch_bilinear_1d(x, 1, 2), 2, 2)
  got = tiny.generator.get_layer("cell2_up1")(x).numpy()
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("conv_name, up_name", [("cell2_skip1", "cell2_skip1_up"),
                                                ("cell2_shortcut", "cell2_shortcut_up"),
                                                ("cell3_skip1", "cell3_skip1_up")])
def test_one_by_one_conv_commutes_with_upsampling(tiny, conv_name, up_name):
  """1x1 conv then upsample (ours) == upsample then 1x1 conv (the reference)."""
  conv = tiny.generator.get_layer(conv_name)
  up = tiny.generator.get_layer(up_name)
  x = tf.random.normal([2, 8, 8, 8])
  np.testing.assert_allclose(up(conv(x)).numpy(), conv(up(x)).numpy(), rtol=1e-5, atol=1e-5)


def test_reference_initialization():
  gan = autogan.build(**TINY)
  g, d = gan.generator, gan.discriminator
  for layer in (g.get_layer("cell1_conv1"), g.get_layer("cell3_skip2"), d.get_layer("block3_conv2")):
    assert isinstance(layer.kernel_initializer, keras.initializers.GlorotUniform), layer.name
  for layer in (g.get_layer("dense"), d.get_layer("logits")):
    init = layer.kernel_initializer  # PyTorch's Linear default, U(+-1/sqrt(fan_in))
    assert (init.mode, init.distribution) == ("fan_in", "uniform"), layer.name
    assert init.scale == pytest.approx(1 / 3), layer.name
  # Conv biases: PyTorch's default U(+-1/sqrt(fan_in)), fan_in = 9 * 8 for cell1_conv1.
  bias = g.get_layer("cell1_conv1").bias.numpy()
  assert 0 < np.abs(bias).max() <= 1 / np.sqrt(72)
  assert g.get_layer("cell1_conv1").bias_initializer.maxval == pytest.approx(1 / np.sqrt(72))
  assert g.get_layer("dense").bias_initializer.maxval == pytest.approx(1 / np.sqrt(16))
  bn = g.get_layer("output_bn")
  assert (bn.momentum, bn.epsilon) == (0.9, 1e-5)
  assert (bn.gamma_initializer.mean, bn.gamma_initializer.stddev) == (1.0, 0.02)


@pytest.mark.parametrize("kwargs, match", [
    (dict(image_size=16), "image_size=16"),
    (dict(g_channels=0), "g_channels=0"),
    (dict(d_channels=None), "d_channels=None"),
    (dict(power_iterations=0), "power_iterations=0"),
])
def test_rejects_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    autogan.build(**kwargs)


# ----------------------------------------------------------------------------
# Training: Re-GAN on 2 logical CPU replicas, export, the smoke gin file
# ----------------------------------------------------------------------------

SPARSITY = 0.3


@pytest.fixture(scope="module")
def regan_run(tmp_path_factory) -> str:
  """A 2-step Re-GAN run on 2 CPU replicas: step 0 warm-up, step 1 sparse; exports at the end.

  ``cpu_devices`` must be set before TensorFlow initializes, hence a fresh process.
  """
  workdir = str(tmp_path_factory.mktemp("autogan_regan"))
  proc = run_two_replica_script(f"""
      r = trainer.train(**tiny_train_settings(
          {workdir!r}, **TWO_REPLICAS, n_critic=1, train_steps=2, z_dim=16, seed=1, export=True,
          dataset=functools.partial(data.load_digits, image_size=32, channels=3),
          model=functools.partial(models.autogan.build, g_channels=8, d_channels=8),
          pruning=functools.partial(pruning.build_controller, sparsity={SPARSITY}, warmup=1, g=2),
          ema=functools.partial(ema.GeneratorEMA, decay=0.9)))
      print('STEP', r.step, 'D_LOSS', r.metrics['d_loss'], 'G_LOSS', r.metrics['g_loss'])
      """, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "STEP 2" in proc.stdout, proc.stdout
  assert "MirroredStrategy with 2 replica(s)" in proc.stderr
  assert "sparse phase 1" in proc.stderr
  return workdir


def _floor_count(n: int) -> int:
  return int(np.floor(SPARSITY * n + 1e-6))


@pytest.mark.slow
def test_regan_on_two_replicas_keeps_masked_kernels_at_zero(regan_run):
  reader = tf.train.load_checkpoint(os.path.join(regan_run, "checkpoints"))
  names = reader.get_variable_to_shape_map()
  # One pruned weight per wrapped layer (kernels only): its mask is the wrapper's `mask`.
  masks = sorted(n for n in names if n.startswith("generator/")
                 and n.endswith("/mask/.ATTRIBUTES/VARIABLE_VALUE") and "OPTIMIZER_SLOT" not in n)
  # dense + 11 convs (6 in the cells' 3x3 pairs, 2 shortcuts, 3 skips) + output conv.
  assert len(masks) == 13
  for mask_name in masks:
    layer = mask_name[:-len("/mask/.ATTRIBUTES/VARIABLE_VALUE")]
    mask = reader.get_tensor(mask_name)
    kernel = reader.get_tensor(f"{layer}/layer/kernel/.ATTRIBUTES/VARIABLE_VALUE")
    assert mask.shape == kernel.shape, layer
    assert int((mask == 0).sum()) == _floor_count(mask.size), layer
    # One sparse G step ran after step 0's dense Adam update: the masked entries must still be exactly 0.
    assert np.all(kernel[mask == 0] == 0.0), layer
    assert np.all(kernel[mask == 1] != 0.0), layer


@pytest.mark.slow
def test_export_loads_and_samples_in_fresh_process(regan_run):
  export = os.path.join(regan_run, "export")
  meta = json.load(open(os.path.join(export, "regan_tf_export.json")))
  assert meta["method"] == "regan" and meta["ema"]
  loaded = load_export_in_fresh_process(export, np.random.default_rng(0).normal(size=(2, 16)))
  assert loaded.images.shape == (2, 32, 32, 3) and loaded.images.dtype == np.float32
  assert np.abs(loaded.images).max() <= 1.0
  kernels = {name: a for name, a in loaded.variables.items() if name.endswith("kernel:0")}
  assert len(kernels) == 13
  for name, a in kernels.items():  # the EMA generator, masked like G
    assert int((a == 0).sum()) == _floor_count(a.size), (name, int((a == 0).sum()), a.size)


@pytest.mark.slow
def test_smoke_gin_file_trains_through_the_entry_point(tmp_path, cifar_jpeg_subset):
  workdir = tmp_path / "run"
  bindings = [
      f"data.image_folder.path = '{cifar_jpeg_subset}'",
      "train.train_steps = 3",
      "train.batch_size = 8",
      "train.n_critic = 1",
      "train.z_dim = 16",
      "models.autogan.g_channels = 8",
      "models.autogan.d_channels = 8",
      "regan.warmup = 1",
      "regan.g = 1",
  ]
  args = ["-m", "regan_tf.train", f"--gin_file={os.path.join(REPO, 'gin', 'autogan_cifar_jpeg_smoke.gin')}",
          f"--workdir={workdir}"] + [f"--gin_bindings={b}" for b in bindings]
  proc = run_python(args, timeout=240)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "Done at step 3" in proc.stderr
  assert "sparse phase 1" in proc.stderr  # step 1 sparse, step 2 dense (regrown)
  assert os.path.exists(workdir / "export" / "saved_model.pb")
  assert "autogan.g_channels = 8" in open(workdir / "operative_config.gin").read()
