"""A small DCGAN pair (Radford et al., "Unsupervised Representation Learning with
Deep Convolutional GANs", ICLR 2016), sized to train in minutes on a CPU.

Generator, for ``image_size = S = 4 * 2**n`` (n upsampling stages; 32 -> n = 3)::

    z [B, z_dim] -> dense -> reshape [4, 4, c0] -> bn0 -> relu0
      -> (n - 1) x (upsample x2 + conv -> bn -> relu)   widths c0/2, ..., g_base_channels
      -> output_conv: upsample x2 + conv (channels) -> output_tanh (float32)   [B, S, S, channels]

with ``c0 = g_base_channels * 2**(n - 1)`` (32x32 with 16: 4x4x64, 8x8x32, 16x16x16,
32x32x3). "upsample x2 + conv" is a ``Conv2DTranspose`` 4x4 stride 2
(``upsampling='transpose'``, the DCGAN way) or :class:`NearestUpsample2D` followed by
a 3x3 ``Conv2D`` (``upsampling='nearest'``). As in DCGAN, the last upsampling layer
emits the image directly: there is no full-resolution hidden layer, which keeps a
training iteration (batch 64, 32x32) at a few hundredths of a second on two CPU
cores. Layers feeding a BatchNormalization have no bias (the BN's offset replaces it).

Discriminator::

    images [B, S, S, channels] -> n x (conv 4x4 stride 2 -> LeakyReLU(0.2))
      widths d_base_channels, 2*d_base_channels, ... -> flatten -> logits Dense(1) float32

with spectral normalization (:class:`SNConv2D`, :class:`SNDense`) on every conv and
the dense layer unless ``spectral_norm=False``; the discriminator has no
BatchNormalization.

Initialization: weights N(0, 0.02) as in the DCGAN paper, biases zero; BatchNorm
uses PyTorch's defaults (momentum 0.1, i.e. Keras momentum 0.9; epsilon 1e-5)
like the Re-GAN reference.
"""

from __future__ import annotations

from regan_tf.compat import keras, tf
from regan_tf.models import GAN, check_builder_args, check_choice
from regan_tf.models import layers as gan_layers

__all__ = ["build"]

_UPSAMPLING = ("transpose", "nearest")
_STAGES = {4 * 2**n: n for n in range(1, 6)}  # image_size -> number of x2 stages from 4x4


def _init() -> keras.initializers.Initializer:
  return keras.initializers.RandomNormal(mean=0.0, stddev=0.02)


def _batch_norm(name: str) -> keras.layers.Layer:
  return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


def _upsample_conv(x: tf.Tensor, filters: int, upsampling: str, use_bias: bool,
                   prefix: str) -> tf.Tensor:
  """[B, H, W, C] -> [B, 2H, 2W, filters]; layers named ``{prefix}_conv`` (and ``_up``)."""
  if upsampling == "transpose":
    return keras.layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=use_bias,
                                        kernel_initializer=_init(), name=f"{prefix}_conv")(x)
  x = gan_layers.NearestUpsample2D(2, name=f"{prefix}_up")(x)
  return keras.layers.Conv2D(filters, 3, padding="same", use_bias=use_bias,
                             kernel_initializer=_init(), name=f"{prefix}_conv")(x)


def _generator(image_size: int, channels: int, z_dim: int, base: int,
               upsampling: str) -> keras.Model:
  stages = _STAGES[image_size]
  width = base * 2**(stages - 1)
  z = keras.Input(shape=(z_dim,), dtype="float32", name="z")
  x = keras.layers.Dense(4 * 4 * width, use_bias=False, kernel_initializer=_init(),
                         name="dense")(z)
  x = keras.layers.Reshape((4, 4, width), name="reshape")(x)
  x = _batch_norm("bn0")(x)
  x = keras.layers.ReLU(name="relu0")(x)
  for i in range(1, stages):
    width //= 2
    x = _upsample_conv(x, width, upsampling, use_bias=False, prefix=f"block{i}")
    x = _batch_norm(f"block{i}_bn")(x)
    x = keras.layers.ReLU(name=f"block{i}_relu")(x)
  x = _upsample_conv(x, channels, upsampling, use_bias=True, prefix="output")
  images = keras.layers.Activation("tanh", dtype="float32", name="output_tanh")(x)
  return keras.Model(z, images, name="generator")


def _discriminator(image_size: int, channels: int, base: int,
                   spectral_norm: bool) -> keras.Model:
  stages = _STAGES[image_size]
  conv = gan_layers.SNConv2D if spectral_norm else keras.layers.Conv2D
  dense = gan_layers.SNDense if spectral_norm else keras.layers.Dense
  images = keras.Input(shape=(image_size, image_size, channels), name="images")
  x = images
  for i in range(1, stages + 1):
    x = conv(base * 2**(i - 1), 4, strides=2, padding="same", kernel_initializer=_init(),
             name=f"block{i}_conv")(x)
    x = keras.layers.LeakyReLU(0.2, name=f"block{i}_lrelu")(x)
  x = keras.layers.Flatten(name="flatten")(x)
  logits = dense(1, kernel_initializer=_init(), dtype="float32", name="logits")(x)
  return keras.Model(images, logits, name="discriminator")


def build(*, image_size: int = 32, channels: int = 3, z_dim: int = 128,
          g_base_channels: int = 16, d_base_channels: int = 16,
          upsampling: str = "transpose", spectral_norm: bool = True) -> GAN:
  """Builds the DCGAN generator and discriminator.

  Args:
    image_size: S, one of 8, 16, 32, 64, 128.
    channels: image channels C.
    z_dim: latent size.
    g_base_channels: generator width at half resolution (S/2); it doubles at
      every lower resolution (32x32 with 16: 64 at 4x4, then 32, 16, then the
      image).
    d_base_channels: discriminator width after its first conv; doubles per stage.
    upsampling: 'transpose' (Conv2DTranspose 4x4 stride 2) or 'nearest'
      (NearestUpsample2D then Conv2D 3x3).
    spectral_norm: spectrally normalize every discriminator layer.

  Returns the :class:`regan_tf.models.GAN` every builder returns (images in
  [-1, 1], float32 logits); raises ValueError naming a bad argument.
  """
  check_builder_args(build, locals(), image_sizes=tuple(_STAGES),
                     resize_fix="Resize the data to one of these sizes (4 * 2**n).",
                     positive=("g_base_channels", "d_base_channels"))
  check_choice("dcgan.build", "upsampling", upsampling, _UPSAMPLING)
  if not isinstance(spectral_norm, bool):
    raise ValueError(f"dcgan.build: spectral_norm={spectral_norm!r} must be True or False.")
  return GAN(generator=_generator(image_size, channels, z_dim, g_base_channels, upsampling),
             discriminator=_discriminator(image_size, channels, d_base_channels, spectral_norm),
             z_dim=z_dim)
