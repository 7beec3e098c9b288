"""The SN-GAN ResNet pair for 32x32 images, as the Re-GAN reference trains it.

Architecture of Miyato et al., "Spectral Normalization for Generative Adversarial
Networks" (ICLR 2018), its CIFAR-10 ResNet, in the form of the Re-GAN
reference implementation (Saxena et al., "Re-GAN: Data-Efficient GANs Training via
Architectural Reconfiguration", CVPR 2023; github.com/IntellicentAI-Lab/Re-GAN,
``model.py``: ``ResGenerator32`` / ``ResDiscriminator32``).

Generator (G = ``g_channels``, default 256; S = image_size, bottom width S/8)::

    z [B, z_dim] -> dense -> reshape [S/8, S/8, G]
      -> 3 x up-block, G channels:
           residual = bn1 -> relu1 -> up1 (nearest x2) -> conv1 3x3 -> bn2 -> relu2 -> conv2 3x3
           shortcut = 1x1 conv -> nearest x2
           add
      -> output_bn -> output_relu -> output_conv 3x3 (channels) -> output_tanh (float32)

Discriminator (D = ``d_channels``, default 128), spectral normalization on every
conv and dense layer (:class:`SNConv2D`, :class:`SNDense`, PyTorch semantics)::

    images
      -> block1 (optimized): conv1 3x3 -> relu1 -> conv2 3x3 -> avgpool2
                             shortcut = avgpool2 -> 1x1 conv
      -> block2 (down):      relu1 -> conv1 3x3 -> relu2 -> conv2 3x3 -> avgpool2
                             shortcut = avgpool2 -> 1x1 conv
      -> block3, block4:     relu1 -> conv1 3x3 -> relu2 -> conv2 3x3
                             shortcut = identity
      -> relu -> global SUM pooling -> logits Dense(1, no bias), float32

Shortcut order: the reference upsamples before the generator's 1x1 shortcut conv
and (in ``block2``) pools after the discriminator's. Nearest upsampling and 2x2
average pooling commute with a 1x1 convolution (bias included), so the outputs are
identical; we apply the 1x1 conv at the lower resolution, which is 4x cheaper.

Parameter counts (trainable weights; the reference's own count, PyTorch
``requires_grad`` parameters, is the same):

* G: 4,276,739 = dense 128*4096 + 4096 + 3 x (2 convs 3x3 256->256 with bias,
  1x1 shortcut with bias, 2 BatchNorms of 256) + output BN + conv 3x3 256->3.
* D: 1,053,824. The reference's final layer is ``nn.Linear(128, 1, bias=False)``,
  so there is no bias to count; a biased final layer would give 1,053,825. Every
  other conv has a bias. Non-trainable state (BatchNorm moving statistics,
  spectral-norm ``u`` vectors) is not counted; PyTorch keeps those as buffers.

Initialization follows the reference: Xavier-uniform with gain sqrt(2)
(``VarianceScaling(2.0, 'fan_avg', 'uniform')``) for the 3x3 convs of every
residual branch, gain 1 (``glorot_uniform``) for the 1x1 shortcuts, the first
dense layer, the output conv and the final dense layer; biases zero. BatchNorm
uses PyTorch's defaults (momentum 0.1, i.e. Keras momentum 0.9; epsilon 1e-5).
Layout differences that do not change the function class: the latent dense
output is reshaped channels-last ([S/8, S/8, G]) rather than PyTorch's [G, S/8, S/8].

Image sizes: 32 is the reference. 48 and 64 use the same blocks from a 6x6 or
8x8 bottom (like Mimicry's SNGAN-48 generator); they have no reference numbers.
"""

from __future__ import annotations

from typing import Any, Callable, Dict

from regan_tf.compat import keras, tf
from regan_tf.models import GAN, check_builder_args
from regan_tf.models import layers as gan_layers

__all__ = ["assemble", "build", "resnet_discriminator"]

_IMAGE_SIZES = (32, 48, 64)
_RESIZE_FIX = "Resize the data, or use name='dcgan', which supports 8 to 128."
_NUM_G_BLOCKS = 3


def _xavier(gain_squared: float) -> keras.initializers.Initializer:
  """Xavier/Glorot uniform with gain**2 = gain_squared (torch.nn.init.xavier_uniform_)."""
  return keras.initializers.VarianceScaling(scale=gain_squared, mode="fan_avg",
                                            distribution="uniform")


def _residual_init() -> keras.initializers.Initializer:
  return _xavier(2.0)


def _unit_init() -> keras.initializers.Initializer:
  return _xavier(1.0)


def _batch_norm(name: str) -> keras.layers.Layer:
  return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


def _g_block(x: tf.Tensor, width: int, i: int) -> tf.Tensor:
  """Generator up-block: [B, H, W, Cin] -> [B, 2H, 2W, width]."""
  p = f"block{i}_"
  h = _batch_norm(p + "bn1")(x)
  h = keras.layers.ReLU(name=p + "relu1")(h)
  h = gan_layers.NearestUpsample2D(2, name=p + "up1")(h)
  h = keras.layers.Conv2D(width, 3, padding="same", kernel_initializer=_residual_init(),
                          name=p + "conv1")(h)
  h = _batch_norm(p + "bn2")(h)
  h = keras.layers.ReLU(name=p + "relu2")(h)
  h = keras.layers.Conv2D(width, 3, padding="same", kernel_initializer=_residual_init(),
                          name=p + "conv2")(h)
  s = keras.layers.Conv2D(width, 1, kernel_initializer=_unit_init(), name=p + "shortcut")(x)
  s = gan_layers.NearestUpsample2D(2, name=p + "shortcut_up")(s)
  return keras.layers.Add(name=p + "add")([h, s])


def _generator(image_size: int, channels: int, z_dim: int, width: int) -> keras.Model:
  bottom = image_size // 2**_NUM_G_BLOCKS
  z = keras.Input(shape=(z_dim,), dtype="float32", name="z")
  x = keras.layers.Dense(bottom * bottom * width, kernel_initializer=_unit_init(),
                         name="dense")(z)
  x = keras.layers.Reshape((bottom, bottom, width), name="reshape")(x)
  for i in range(1, _NUM_G_BLOCKS + 1):
    x = _g_block(x, width, i)
  x = _batch_norm("output_bn")(x)
  x = keras.layers.ReLU(name="output_relu")(x)
  x = keras.layers.Conv2D(channels, 3, padding="same", kernel_initializer=_unit_init(),
                          name="output_conv")(x)
  images = keras.layers.Activation("tanh", dtype="float32", name="output_tanh")(x)
  return keras.Model(z, images, name="generator")


def resnet_discriminator(image_size: int, channels: int, width: int,
                         conv: Callable[[int, int, str], keras.layers.Layer],
                         logits: keras.layers.Layer) -> keras.Model:
  """SN-GAN's ResNet discriminator, images [B, S, S, C] -> logits float32 [B, 1].

  Four residual blocks of ``width`` channels (the first "optimized": no
  leading ReLU, its input is the image; the first two halve the resolution by
  2x2 average pooling, with a pooled 1x1 shortcut), ReLU, global *sum* pooling
  and ``logits``. AutoGAN's discriminator is this network with other
  initializers, hence the factories.

  Args:
    image_size, channels: the input images.
    width: channels of every block.
    conv: ``conv(kernel_size, in_channels, name)`` -> a spectrally normalized
      'same' conv with ``width`` filters (3x3 residual convs, 1x1 shortcuts).
    logits: the final layer, [B, width] -> [B, 1], float32.
  """

  def pool(name: str):
    return keras.layers.AveragePooling2D(2, name=name)

  images = keras.Input(shape=(image_size, image_size, channels), name="images")
  h = conv(3, channels, "block1_conv1")(images)
  h = keras.layers.ReLU(name="block1_relu1")(h)
  h = conv(3, width, "block1_conv2")(h)
  h = pool("block1_pool")(h)
  s = pool("block1_shortcut_pool")(images)
  s = conv(1, channels, "block1_shortcut")(s)
  x = keras.layers.Add(name="block1_add")([h, s])

  for i, down in ((2, True), (3, False), (4, False)):
    p = f"block{i}_"
    h = keras.layers.ReLU(name=p + "relu1")(x)
    h = conv(3, width, p + "conv1")(h)
    h = keras.layers.ReLU(name=p + "relu2")(h)
    h = conv(3, width, p + "conv2")(h)
    if down:
      h = pool(p + "pool")(h)
      s = pool(p + "shortcut_pool")(x)
      s = conv(1, width, p + "shortcut")(s)
    else:
      s = x  # same width, same resolution: identity shortcut
    x = keras.layers.Add(name=p + "add")([h, s])

  x = keras.layers.ReLU(name="relu")(x)
  # Summing the positions in float16 risks overflow; pool (and the last layer) in float32.
  x = gan_layers.GlobalSumPooling2D(dtype="float32", name="sum_pool")(x)
  return keras.Model(images, logits(x), name="discriminator")


def _discriminator(image_size: int, channels: int, width: int,
                   power_iterations: int) -> keras.Model:

  def conv(kernel_size: int, in_channels: int, name: str):
    del in_channels  # the reference's initializers do not depend on it
    # 3x3 residual convs: Xavier with gain sqrt(2); 1x1 shortcuts: gain 1.
    init = _residual_init() if kernel_size == 3 else _unit_init()
    return gan_layers.SNConv2D(width, kernel_size, padding="same", kernel_initializer=init,
                               power_iterations=power_iterations, name=name)

  logits = gan_layers.SNDense(1, use_bias=False, kernel_initializer=_unit_init(),
                              power_iterations=power_iterations, dtype="float32", name="logits")
  return resnet_discriminator(image_size, channels, width, conv, logits)


def build(*, image_size: int = 32, channels: int = 3, z_dim: int = 128,
          g_channels: int = 256, d_channels: int = 128, power_iterations: int = 1) -> GAN:
  """Builds the SN-GAN ResNet generator and discriminator (defaults: the reference).

  Args:
    image_size: S; 32 (the reference), 48 or 64.
    channels: image channels C.
    z_dim: latent size (reference 128).
    g_channels: generator width, every block (reference 256).
    d_channels: discriminator width, every block (reference 128).
    power_iterations: spectral-norm power-iteration steps per call (reference 1).

  Returns the :class:`regan_tf.models.GAN` every builder returns (images in
  [-1, 1], float32 logits); raises ValueError naming a bad argument.
  """
  return assemble(build, locals(), _generator, _discriminator)


def assemble(build: Callable[..., GAN], args: Dict[str, Any],
             generator: Callable[[int, int, int, int], keras.Model],
             discriminator: Callable[[int, int, int, int], keras.Model]) -> GAN:
  """Checks the arguments of an SN-GAN-shaped builder and builds its networks.

  SN-GAN's and AutoGAN's ``build`` take the same arguments (image_size,
  channels, z_dim, g_channels, d_channels, power_iterations) with the same
  rules; ``args`` is the builder's ``locals()``.
  ``generator(image_size, channels, z_dim, g_channels)`` and
  ``discriminator(image_size, channels, d_channels, power_iterations)`` make
  the networks.
  """
  check_builder_args(build, args, image_sizes=_IMAGE_SIZES, resize_fix=_RESIZE_FIX,
                     positive=("g_channels", "d_channels", "power_iterations"))
  size, channels = args["image_size"], args["channels"]
  return GAN(generator=generator(size, channels, args["z_dim"], args["g_channels"]),
             discriminator=discriminator(size, channels, args["d_channels"],
                                         args["power_iterations"]),
             z_dim=args["z_dim"])
