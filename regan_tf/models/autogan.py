"""AutoGAN's searched CIFAR-10 generator with its SN-GAN discriminator.

Architecture of Gong et al., "AutoGAN: Neural Architecture Search for Generative
Adversarial Networks" (ICCV 2019; github.com/VITA-Group/AutoGAN, formerly
TAMU-VITA/AutoGAN): the published ``autogan_cifar10_a`` configuration
(``models/autogan_cifar10_a.py``, cells from ``models/building_blocks.py``),
which Re-GAN (Saxena et al., "Re-GAN: Data-Efficient GANs Training via
Architectural Reconfiguration", CVPR 2023; github.com/IntellicentAI-Lab/Re-GAN,
``AutoGAN/``) trains unchanged.

Generator (G = ``g_channels``, default 256; S = image_size, bottom width S/8)::

    z [B, z_dim] -> dense -> reshape [S/8, S/8, G]
      -> cell1 (nearest,  inner shortcut, no skip input)
      -> cell2 (bilinear, inner shortcut, skip input from cell1)
      -> cell3 (nearest,  no shortcut,    skip inputs from cell1 and cell2)
      -> output_bn -> output_relu -> output_conv 3x3 (channels) -> output_tanh (float32)

    cell i (input x, skip features f_j of the earlier cells j < i), all G channels:
      h      = relu1 -> up1 (the cell's mode, x2) -> conv1 3x3
      h      = skip_add(h, up(skip_j(f_j)) for each j)    # only cells with skip inputs
      f_i    = h                                          # this cell's skip feature
      out    = relu2 -> conv2 3x3
      out    = add(out, up(shortcut(x)))                  # only cells with a shortcut

``skip_j`` and ``shortcut`` are 1x1 convolutions with bias; ``up`` uses the
receiving cell's mode and scales the source to the cell's resolution (cell3
upsamples cell1's 8x8 feature by 4 and cell2's 16x16 feature by 2).

What the search chose, as the published code builds it: up-sampling modes
nearest / bilinear / nearest (the paper's search space also had a stride-2
deconvolution; the released ``Cell`` offers only nearest and bilinear and this
architecture uses none), no normalization inside the cells (BatchNorm appears
only before the output conv), an inner shortcut in cells 1 and 2 only, and dense
cross-cell skips (cell2 <- cell1, cell3 <- cell1, cell2).

Two details of the reference's forward pass that are easy to miss:

* A cell's skip feature is taken *after* its own skip inputs are added: the
  reference stores ``h_skip_out = h`` and then adds the skips with the in-place
  ``h += ...``, which mutates that same tensor. So cell3 receives cell2's conv1
  output plus cell1's contribution. We reproduce this (``cell2_skip_add`` feeds
  ``cell3_skip2``).
* Order of the 1x1 convolutions: the reference upsamples before each 1x1
  shortcut / skip conv; we apply the 1x1 conv at the source resolution and
  upsample after. Nearest and bilinear upsampling are per-channel linear maps
  whose weights sum to one at every output pixel, so they commute with a 1x1
  convolution, bias included; the outputs are identical (up to rounding) and the
  skip from cell1 into cell3 is 16x cheaper.

Discriminator (D = ``d_channels``, default 128), the SN-GAN ResNet that AutoGAN
pairs with this generator (``autogan_cifar10_a.Discriminator``), spectral
normalization on every conv and dense layer (:class:`SNConv2D`, :class:`SNDense`,
PyTorch semantics)::

    images
      -> block1 (optimized): conv1 3x3 -> relu1 -> conv2 3x3 -> avgpool2
                             shortcut = avgpool2 -> 1x1 conv
      -> block2 (down):      relu1 -> conv1 3x3 -> relu2 -> conv2 3x3 -> avgpool2
                             shortcut = avgpool2 -> 1x1 conv (reference: conv, then pool)
      -> block3, block4:     relu1 -> conv1 3x3 -> relu2 -> conv2 3x3, identity shortcut
      -> relu -> global SUM pooling -> logits Dense(1, no bias), float32

It is the same network as ``sngan``'s discriminator; only the initialization
differs (below), hence its own builder here.

Parameter counts (trainable weights; the reference's PyTorch ``parameters()``,
counted from the layer shapes in its code, are the same):

* G: 4,405,251 = dense 128*4096 + 4096 + 6 convs 3x3 256->256 with bias
  (6 x 590,080) + 5 convs 1x1 256->256 with bias (2 shortcuts + 3 skips,
  5 x 65,792) + output BN (512) + output conv 3x3 256->3 (6,915). That is
  128,512 more than ``sngan``'s G (4,276,739): two extra 1x1 convs, and no
  BatchNorm inside the cells.
* D: 1,053,824, as ``sngan``'s D (final linear without bias).

The AutoGAN paper and README publish FID/IS but no parameter count, so there is
no published number to compare with beyond the reference code itself.
Non-trainable state (BatchNorm moving statistics, spectral-norm ``u``) is not
counted; PyTorch keeps those as buffers.

Initialization follows the reference's training script (``train.py``,
``--init_type xavier_uniform``), which re-initializes only ``Conv2d`` weights
and ``BatchNorm2d`` affine parameters and leaves the rest at PyTorch's defaults:

* every conv kernel, in G and D, 1x1 included: Xavier-uniform, gain 1
  (``glorot_uniform``);
* conv biases, and the dense layers (G's ``dense``, D's ``logits``): PyTorch's
  ``Conv2d`` / ``Linear`` defaults, kernel and bias uniform in
  +-1/sqrt(fan_in) (``VarianceScaling(1/3, 'fan_in', 'uniform')`` for kernels);
* BatchNorm: gamma ~ N(1, 0.02), beta 0, PyTorch's momentum 0.1 (Keras 0.9) and
  epsilon 1e-5.

Layout differences that do not change the function class: the latent dense
output is reshaped channels-last ([S/8, S/8, G]) rather than PyTorch's
[G, S/8, S/8].

Upsampling layers and XLA: nearest upsampling uses
:class:`~regan_tf.models.layers.NearestUpsample2D` (``UpSampling2D``'s nearest
gradient, ``ResizeNearestNeighborGrad``, has no XLA CPU kernel). Bilinear uses
``keras.layers.UpSampling2D(interpolation='bilinear')`` directly: it resizes
with half-pixel centers, which equals PyTorch's ``F.interpolate(mode='bilinear',
align_corners=False)``, and its gradient (``ResizeBilinearGrad``) does compile
under XLA on CPU (checked with TensorFlow 2.21; ``tests/test_models_autogan.py``
compiles the generator's gradient with ``jit_compile=True``). Under mixed
precision the bilinear layer returns float32 (``tf.image.resize`` interpolates
in float32); the next layer casts back to float16, so only that layer's output
is wider.

Image sizes: 32 (CIFAR-10, bottom 4) is the reference. 48 (bottom 6) is the
reference's STL-10 transfer of the same cells (``exps/autogan_cifar10_a2stl10.sh``);
64 (bottom 8) has no reference numbers.
"""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple

from regan_tf.compat import keras, tf
from regan_tf.models import GAN
from regan_tf.models import layers as gan_layers
from regan_tf.models import sngan

__all__ = ["CELLS", "build"]


# The searched cells of autogan_cifar10_a: (up-sampling mode, inner shortcut).
# Cell i takes skip inputs from every earlier cell (cell1: none, cell2: cell1,
# cell3: cell1 and cell2), as the published configuration does.
CELLS: Tuple[Tuple[str, bool], ...] = (
    ("nearest", True),
    ("bilinear", True),
    ("nearest", False),
)


# ----------------------------------------------------------------------------
# Initializers (PyTorch defaults and the reference's xavier_uniform)
# ----------------------------------------------------------------------------


def _xavier() -> keras.initializers.Initializer:
  """Xavier/Glorot uniform, gain 1: the reference's ``--init_type xavier_uniform`` for convs."""
  return keras.initializers.GlorotUniform()


def _torch_default_kernel() -> keras.initializers.Initializer:
  """PyTorch's default ``Linear`` weight init, U(+-1/sqrt(fan_in))."""
  return keras.initializers.VarianceScaling(scale=1.0 / 3.0, mode="fan_in",
                                            distribution="uniform")


def _torch_default_bias(fan_in: int) -> keras.initializers.Initializer:
  """PyTorch's default ``Conv2d``/``Linear`` bias init, U(+-1/sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)
  return keras.initializers.RandomUniform(-bound, bound)


def _conv(filters: int, kernel_size: int, fan_in_channels: int, name: str) -> keras.layers.Layer:
  return keras.layers.Conv2D(
      filters, kernel_size, padding="same", kernel_initializer=_xavier(),
      bias_initializer=_torch_default_bias(fan_in_channels * kernel_size * kernel_size),
      name=name)


def _batch_norm(name: str) -> keras.layers.Layer:
  return keras.layers.BatchNormalization(
      momentum=0.9, epsilon=1e-5,
      gamma_initializer=keras.initializers.RandomNormal(mean=1.0, stddev=0.02), name=name)


def _upsample(mode: str, factor: int, name: str) -> keras.layers.Layer:
  if mode == "nearest":
    return gan_layers.NearestUpsample2D(factor, name=name)
  return keras.layers.UpSampling2D(factor, interpolation="bilinear", name=name)


# ----------------------------------------------------------------------------
# Generator
# ----------------------------------------------------------------------------


def _cell(x: tf.Tensor, skips: Sequence[tf.Tensor], i: int, mode: str, shortcut: bool,
          width: int) -> Tuple[tf.Tensor, tf.Tensor]:
  """AutoGAN cell i: x [B, H, W, C] -> (skip feature, output), both [B, 2H, 2W, width]."""
  p = f"cell{i}_"
  in_channels = x.shape[-1]
  h = keras.layers.ReLU(name=p + "relu1")(x)
  h = _upsample(mode, 2, p + "up1")(h)
  h = _conv(width, 3, in_channels, p + "conv1")(h)
  if skips:
    target = h.shape[1]
    terms = [h]
    for j, f in enumerate(skips, start=1):
      s = _conv(width, 1, f.shape[-1], f"{p}skip{j}")(f)
      terms.append(_upsample(mode, target // f.shape[1], f"{p}skip{j}_up")(s))
    h = keras.layers.Add(name=p + "skip_add")(terms)
  skip_out = h  # after the skip inputs: the reference's in-place `h +=` (module docstring)
  out = keras.layers.ReLU(name=p + "relu2")(h)
  out = _conv(width, 3, width, p + "conv2")(out)
  if shortcut:
    s = _conv(width, 1, in_channels, p + "shortcut")(x)
    s = _upsample(mode, 2, p + "shortcut_up")(s)
    out = keras.layers.Add(name=p + "add")([out, s])
  return skip_out, out


def _generator(image_size: int, channels: int, z_dim: int, width: int) -> keras.Model:
  bottom = image_size // 2**len(CELLS)
  z = keras.Input(shape=(z_dim,), dtype="float32", name="z")
  x = keras.layers.Dense(bottom * bottom * width, kernel_initializer=_torch_default_kernel(),
                         bias_initializer=_torch_default_bias(z_dim), name="dense")(z)
  x = keras.layers.Reshape((bottom, bottom, width), name="reshape")(x)
  skips: List[tf.Tensor] = []
  for i, (mode, shortcut) in enumerate(CELLS, start=1):
    skip_out, x = _cell(x, skips, i, mode, shortcut, width)
    skips.append(skip_out)
  x = _batch_norm("output_bn")(x)
  x = keras.layers.ReLU(name="output_relu")(x)
  x = _conv(channels, 3, width, "output_conv")(x)
  images = keras.layers.Activation("tanh", dtype="float32", name="output_tanh")(x)
  return keras.Model(z, images, name="generator")


# ----------------------------------------------------------------------------
# Discriminator
# ----------------------------------------------------------------------------


def _discriminator(image_size: int, channels: int, width: int,
                   power_iterations: int) -> keras.Model:

  def conv(kernel_size: int, in_channels: int, name: str):
    return gan_layers.SNConv2D(
        width, kernel_size, padding="same", kernel_initializer=_xavier(),
        bias_initializer=_torch_default_bias(in_channels * kernel_size * kernel_size),
        power_iterations=power_iterations, name=name)

  logits = gan_layers.SNDense(1, use_bias=False, kernel_initializer=_torch_default_kernel(),
                              power_iterations=power_iterations, dtype="float32", name="logits")
  return sngan.resnet_discriminator(image_size, channels, width, conv, logits)


def build(*, image_size: int = 32, channels: int = 3, z_dim: int = 128,
          g_channels: int = 256, d_channels: int = 128, power_iterations: int = 1) -> GAN:
  """Builds AutoGAN's ``autogan_cifar10_a`` generator and its discriminator (defaults: the reference).

  Args:
    image_size: S; 32 (the reference, CIFAR-10), 48 (the reference's STL-10
      transfer) or 64.
    channels: image channels C.
    z_dim: latent size (reference 128).
    g_channels: generator width, every cell (reference gf_dim 256).
    d_channels: discriminator width, every block (reference df_dim 128).
    power_iterations: spectral-norm power-iteration steps per call (reference 1).

  Returns the :class:`regan_tf.models.GAN` every builder returns (images in
  [-1, 1], float32 logits); raises ValueError naming a bad argument.
  """
  # SN-GAN's arguments, checks and image sizes (AutoGAN keeps SN-GAN's discriminator and setup).
  return sngan.assemble(build, locals(), _generator, _discriminator)
