"""StyleGAN2, config E (skip generator, residual discriminator), for Re-GAN.

Architecture of Karras et al., "Analyzing and Improving the Image Quality of
StyleGAN" (CVPR 2020), in the form of its two public PyTorch implementations:
NVlabs/stylegan2-ada-pytorch (``training/networks.py``; Karras et al., "Training
Generative Adversarial Networks with Limited Data", NeurIPS 2020), whose layer
names we use, and rosinality/stylegan2-pytorch (``model.py``), which Re-GAN
(Saxena et al., "Re-GAN: Data-Efficient GANs Training via Architectural
Reconfiguration", CVPR 2023; github.com/IntellicentAI-Lab/Re-GAN, ``StyleGAN2/``)
trains unchanged at 256x256 (``--size 256``, latent 512, 8 mapping layers,
``channel_multiplier=2``).

Channels: ``ch(r) = min(channel_base // r, channel_max)`` at resolution r (ada's
rule; rosinality's ``channel_multiplier=2`` table is ``channel_base=32768``).

Generator ``z [B, z_dim] -> images float32 [B, S, S, C]``, a Functional model
composed of two nested Functional models, so that a trainer can map and
synthesize separately (style mixing, truncation, path length)::

    generator:  z -> mapping -> w [B, w_dim] -> broadcast_ws -> ws [B, num_ws, w_dim]
                  -> synthesis -> images
    mapping:    z -> mapping_pixel_norm -> mapping_dense0 .. mapping_dense{L-1}
                (EqualizedDense w_dim, lr multiplier 0.01, leaky ReLU)
    synthesis:  ws -> b4_const [4, 4, ch(4)]
                  -> b4_conv (ModulatedConv2D 3x3, style from b4_conv_affine(ws[:, 0]))
                  -> b4_torgb (ToRGB, style b4_torgb_affine(ws[:, 1]))      = img
                for r = 8 .. S (block index i = log2(r) - 2):
                  -> b{r}_conv0 (3x3, upsampling x2; style ws[:, 2i - 1])
                  -> b{r}_conv1 (3x3;                style ws[:, 2i])
                  -> b{r}_torgb (1x1;                style ws[:, 2i + 1])
                  img = b{r}_img(b{r}_img_up(img) + b{r}_torgb)              (skip)
                -> output_clip (clips to [-1, 1] at inference only, see below)

``num_ws = 2 * log2(S) - 2`` (8 at 32x32, 14 at 256x256); a block's ToRGB and the
next block's first conv read the same w, as in both references.

Discriminator (``d_architecture='resnet'``, config E)::

    images -> b{S}_fromrgb (1x1, lrelu)
      for r = S .. 8:  b{r}_skip   = 1x1, no bias, FIR-downsampled x2, gain sqrt(1/2)
                       b{r}_conv0  = 3x3, lrelu
                       b{r}_conv1  = 3x3, FIR-downsampled x2, lrelu, gain sqrt(1/2)
                       b{r}_add    = b{r}_skip + b{r}_conv1
      -> b4_mbstd (minibatch stddev, group 4, 1 feature) -> b4_conv (3x3, lrelu)
      -> b4_flatten -> b4_fc (dense ch(4), lrelu) -> b4_out (dense 1): logits float32 [B, 1]

``d_architecture='orig'`` drops the skips and gains (stylegan2-ada's 'cifar'
config uses it).

Layers, all written by hand (Keras has no equalized learning rate or modulation):

* Equalized learning rate everywhere: weights are stored ~ N(0, 1) (the mapping's
  ~ N(0, 1/lr_multiplier^2)) and scaled at runtime by ``1/sqrt(fan_in)`` (times
  ``lr_multiplier``), so Adam's per-weight step sizes are uniform. The
  equalized dense and conv layers, ``PixelNorm`` and ``MinibatchStdDev`` are
  ProGAN's too and live in :mod:`regan_tf.models.layers`.
* :class:`ModulatedConv2D` is ada's ``SynthesisLayer``: modulation by the style
  (per input channel), convolution, demodulation (each output channel's
  per-sample weights get unit L2 norm over (kh, kw, in), epsilon 1e-8), noise
  with a learned per-layer strength, bias, leaky ReLU(0.2) * sqrt(2). It runs
  ada's non-fused form (scale the activations by the style before the shared
  convolution and by the demodulation coefficients after it), which equals the
  per-sample-weight convolution exactly and needs no grouped convolution.
* :class:`StyleAffine`: the style affine A of one layer, an equalized dense layer
  on ``ws[:, latent_index]``, bias initialised to 1.
* :class:`ToRGB`: modulated 1x1 conv without demodulation (style scaled by
  1/sqrt(in)), plus bias, float32.

Connections (what Re-GAN prunes)
--------------------------------
Every layer implements TFMOT's ``PrunableLayer`` protocol,
``get_prunable_weights()``, which :func:`regan_tf.pruning.prune_generator` honours.
The *connections* are the weight matrices that connect one unit to another:
the kernels of the mapping's dense layers, of every style affine (it connects w
to the style of each input channel), of every modulated conv and of every ToRGB.
Not connections: biases (including the affine's bias of 1, the style's resting
value), the noise strengths (one scalar gain per layer), the per-layer constant
noise buffers (non-trainable) and the learned constant input (an input, not a
connection). ``prune_all_weights=True`` makes every *trainable* generator weight
prunable instead, which is what Re-GAN's StyleGAN2 code does (``StyleGAN2/
regan.py`` masks every ``named_parameter`` whose name lacks ``to_rgb``); Re-GAN
keeps to_rgb dense, which ``prune_generator(..., exclude=('torgb',))`` reproduces
(the pattern matches ``b{r}_torgb`` and ``b{r}_torgb_affine``). The library's
``prune_biases_and_norms`` flag does not reach these layers: the protocol decides.
Layers without connections return ``[]`` (and get an empty wrapper, like
``NearestUpsample2D``). In a pruned clone every wrapped layer is renamed
``regan_prune_wrapper_<name>`` (TFMOT's naming); the nested ``mapping`` and
``synthesis`` models keep their names (:func:`mapping_and_synthesis`), and
:func:`broadcast_w` replaces the ``broadcast_ws`` layer. The discriminator's
layers implement the protocol too.
Every layer reads its variables in ``call`` (never a cached copy), so masks
written into them take effect at once, and has ``get_config`` for
``keras.models.clone_model`` (registered under the package ``regan_tf.stylegan2``;
the shared layers under ``regan_tf``).

Resampling (no simplification of the reference's FIR filter)
--------------------------------------------------------------
Upsampling in G is rosinality's: a transposed 3x3 convolution with stride 2
followed by the [1, 3, 3, 1] low-pass filter (padding 1, gain 4); the skip images
are upsampled by upfirdn2d's ``upsample2d`` with the same filter
(:func:`upsample_2d`: zero-stuff, pad (2, 1), filter, written as its two polyphase
components). D downsamples with the filter then a stride-2 conv (rosinality's
``ConvLayer(downsample=True)`` padding). The filter is separable and applied with
pads and four shifted slices per axis; everything, gradients and second-order
gradients included, compiles under XLA on CPU (``tf.nn.conv2d_transpose`` is
``Conv2DBackpropInput``).

Noise and determinism
---------------------
``noise='auto'`` (default): fresh N(0, 1) noise [B, H, W, 1] per layer while
training, and the layer's constant noise buffer (ada's ``noise_mode='const'``)
at inference, so sampling, evaluation and the exported SavedModel are
deterministic functions of z. (The references use random noise at inference
too; ``noise='random'`` does that, ``'const'`` and ``'none'`` are ada's other
modes.) The random noise is ``tf.random.stateless_normal`` seeded by the layer's
salt and the bit pattern of sums over the first and last example's
pre-noise activations: a training step is a deterministic function of the
weights and z, so the library's exact resume survives, with no RNG state
variable and XLA-friendly.

Output range
------------
StyleGAN2 has no output nonlinearity (no tanh); G learns the data range [-1, 1]
and is not clamped while training (``training=True``). ``output_clip`` clips to
[-1, 1] only at inference (``training`` False or None), so samples, evaluation
and exports honour the library's [-1, 1] contract without changing the
training-time function or its gradients.

Parameter counts (trainable weights; non-trainable noise buffers excluded, as
PyTorch keeps them as buffers). Unconditional, ``z_dim = w_dim = 512``:

* 32x32, stylegan2-ada's 'cifar' config (``channel_base=32768`` -> 512 channels at
  every resolution, 2 mapping layers; the default at image_size 32):
  G 19,947,539 = mapping 2 x 262,656 + const 8,192 + b4 conv 2,622,465 + b4 torgb
  264,195 + 3 blocks x (2 x 2,622,465 + 264,195).
  D 21,507,073 ('resnet') = b32_fromrgb 2,048 + 3 blocks x (2 x 2,359,808 + skip
  262,144) + b4_conv 2,364,416 (513 -> 512) + b4_fc 4,194,816 + b4_out 513;
  20,720,641 with ``d_architecture='orig'`` (what ada's 'cifar' config trains).
* 256x256, Re-GAN's run (rosinality, ``channel_multiplier=2`` =
  ``channel_base=32768``: 512 channels up to 64x64, 256 at 128, 128 at 256; 8
  mapping layers; the default at image_size 256): G 30,034,338, D 28,864,129.
* 256x256, stylegan2-ada's 'paper256' (``channel_base=16384``, 8 mapping layers):
  G 24,767,458, D 24,001,089.

No total is published in the papers; stylegan2-ada-pytorch prints per-layer
tables and our per-layer counts equal them (e.g. ``mapping.fc0`` 262,656;
``synthesis.b4.conv1`` 2,622,465 = 3x3 512->512 + affine 512x512 + 512 + bias 512
+ noise strength; ``b4.torgb`` 264,195; ``b4:0`` const 8,192; ``b128.conv0``
1,442,561 (512->256); D ``b64.skip`` 262,144, ``b64.conv0`` 2,359,808), and our
totals are the sums of those layers. We found no published total to compare the
sums with (the CIFAR G is ~20M, as commonly stated). rosinality's layers have the
same parameters as ada's (its FusedLeakyReLU bias is ada's conv bias).

Initialization: weights N(0, 1) (mapping N(0, 100^2), runtime x 0.01/sqrt(fan_in)),
biases 0 except the style affines' (1), noise strengths 0, constant input and
noise buffers N(0, 1).

Deviations from the references besides the inference noise and output clip
above (neither changes the training-time function): non-fused modulation
(exact); the running ``w_avg`` (ada's buffer, :class:`TrackAverageW` at the
end of the mapping network) is also updated by style mixing's second latent;
:func:`average_w` (rosinality's sampled ``mean_latent``) stands in for a
generator built with ``w_avg_beta=None``; no ``conv_clamp``
or fp16 channel tricks (ada's speed options); under mixed precision the
mapping, style affines, ToRGB, image path and D's 4x4 epilogue stay float32.
The minibatch-stddev group is 4 (rosinality; ada uses 32 for 'cifar' and 8 for
'paper256': ``mbstd_group_size``); the batch must be divisible by
``min(group, batch)``.

Not here (the trainer's job): lazy R1 every 16 D steps and path-length
regularization every 4 G steps with the lr/beta correction ``c = k / (k + 1)``,
style-mixing probability, the EMA; :func:`mix_styles`, :func:`truncate` and
:func:`average_w` are the pure pieces they need here, and the penalties
(``r1_penalty``, ``path_length_penalty``) live with the other losses in
``regan_tf.losses``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Sequence, Tuple, Union

from regan_tf.compat import keras, tf
from regan_tf.models import GAN, check_builder_args, check_choice, check_positive_int
# Shared with ProGAN (one implementation of the Karras et al. layers).
from regan_tf.models.layers import (FIR_TAPS, EqualizedConv2D, EqualizedDense, MinibatchStdDev,
                                    PixelNorm, PrunableLayerMixin, activate,
                                    check_odd_kernel_size, fir_blur_2d)

__all__ = [
    "BroadcastLatent",
    "ClipAtInference",
    "ConstantInput",
    "ModulatedConv2D",
    "StyleAffine",
    "ToRGB",
    "TrackAverageW",
    "UpsampleFIR",
    "average_w",
    "broadcast_w",
    "build",
    "mapping_and_synthesis",
    "mix_styles",
    "mixed_latents",
    "num_ws",
    "tracked_w_avg",
    "truncate",
    "upsample_2d",
]

# StyleGAN2's own layers; the equalized layers, PixelNorm and minibatch stddev
# it shares with ProGAN are registered under "regan_tf" (regan_tf.models.layers).
_PACKAGE = "regan_tf.stylegan2"
_DEMOD_EPS = 1e-8
_NOISE_MODES = ("auto", "random", "const", "none")
_D_ARCHITECTURES = ("resnet", "orig")
IMAGE_SIZES = tuple(2**k for k in range(3, 11))  # 8 .. 1024


def _register(cls):
  return keras.saving.register_keras_serializable(package=_PACKAGE)(cls)


def _check_int(owner: str, arg: str, value: Any, minimum: int) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f"{owner}: {arg}={value!r} must be an integer >= {minimum}.")


def _is_training(training: Any) -> Union[bool, tf.Tensor]:
  """``training`` as a Python bool where it is static, else a bool tensor."""
  if training is None:
    return False
  if isinstance(training, (bool, int)):
    return bool(training)
  value = tf.get_static_value(training)
  return bool(value) if value is not None else tf.cast(training, tf.bool)


def _select(training: Any, when_training: Callable[[], tf.Tensor],
            otherwise: Callable[[], tf.Tensor]) -> tf.Tensor:
  flag = _is_training(training)
  if isinstance(flag, bool):
    return when_training() if flag else otherwise()
  return tf.cond(flag, when_training, otherwise)


# ------------------------------------------------------------------ FIR filter


def _upsample_1d(x: tf.Tensor, axis: int) -> tf.Tensor:
  """upfirdn's x2 upsampling with [1, 3, 3, 1] along one axis, as two phases.

  Zero-stuffing, padding (2, 1) and filtering with [1, 3, 3, 1] / 4 gives
  ``out[2i] = x[i-1]/4 + 3 x[i]/4`` and ``out[2i+1] = 3 x[i]/4 + x[i+1]/4``
  (x zero outside), computed here without the multiplications by zero.
  """
  paddings = [[0, 0]] * x.shape.rank
  paddings[axis] = [1, 1]
  padded = tf.pad(x, paddings)

  def shifted(start: int) -> tf.Tensor:
    index = [slice(None)] * x.shape.rank
    index[axis] = slice(start, start - 2 if start < 2 else None)
    return padded[tuple(index)]

  quarter, three_quarters = tf.cast(0.25, x.dtype), tf.cast(0.75, x.dtype)
  even = quarter * shifted(0) + three_quarters * x
  odd = three_quarters * x + quarter * shifted(2)
  out = tf.stack([even, odd], axis=axis + 1)  # [..., n, 2, ...]
  shape = tf.unstack(tf.shape(x))
  shape[axis] = shape[axis] * 2
  out = tf.reshape(out, tf.stack(shape))
  static = x.shape.as_list()
  if static[axis] is not None:
    static[axis] *= 2
  out.set_shape(static)
  return out


def upsample_2d(x: tf.Tensor) -> tf.Tensor:
  """x2 upsampling of [B, H, W, C] with the [1, 3, 3, 1] filter -> [B, 2H, 2W, C].

  Equals stylegan2-ada's ``upfirdn2d.upsample2d(x, [1, 3, 3, 1])`` and
  rosinality's ``Upsample([1, 3, 3, 1])`` (zero padding at the border): bilinear
  interpolation with half-pixel centres in the interior.
  """
  return _upsample_1d(_upsample_1d(x, 1), 2)


# -------------------------------------------------------------------- layers


@_register
class StyleAffine(EqualizedDense):
  """The learned affine A of one synthesis layer: ``styles = A(ws[:, latent_index])``.

  An :class:`EqualizedDense` (bias initialised to 1, so styles start near 1)
  applied to one of the per-layer latents. Connections: ``kernel`` [w_dim, in]
  (it connects w to each input channel's scale); not: ``bias``.

  Args:
    units: the modulated layer's input channels.
    latent_index: which of the ``num_ws`` latents this layer reads.
    **kwargs: as :class:`EqualizedDense` (``bias_init`` defaults to 1).

  Input ws [B, num_ws, w_dim]; output styles [B, units].
  """

  def __init__(self, units: int, *, latent_index: int, bias_init: float = 1.0,
               **kwargs: Any):
    super().__init__(units, bias_init=bias_init, **kwargs)
    _check_int(type(self).__name__, "latent_index", latent_index, 0)
    self.latent_index = latent_index

  def build(self, input_shape):
    shape = tf.TensorShape(input_shape)
    if shape.rank != 3 or (shape[1] is not None and self.latent_index >= shape[1]):
      raise ValueError(f"{self.name}: expects ws [B, num_ws, w_dim] with num_ws > "
                       f"latent_index={self.latent_index}; got shape {shape}. Feed the "
                       "synthesis network's ws input.")
    super().build(input_shape)  # the kernel's fan-in is w_dim, the last axis

  def call(self, inputs: tf.Tensor) -> tf.Tensor:
    return self._dense(inputs[:, self.latent_index])

  def compute_output_shape(self, input_shape):
    return tf.TensorShape([tf.TensorShape(input_shape)[0], self.units])

  def forward_flops(self, input_shape, output_shape) -> int:
    """Per-image FLOPs of one latent's affine (the other ``num_ws - 1`` latents are not read)."""
    return super().forward_flops([input_shape[0], input_shape[-1]], output_shape)

  def get_config(self):
    return {**super().get_config(), "latent_index": self.latent_index}


@_register
class TrackAverageW(PrunableLayerMixin, keras.layers.Layer):
  """Identity on w [B, w_dim] that tracks the moving average of w while training.

  stylegan2-ada's ``w_avg`` buffer: on every training-mode call (``training``
  True), ``w_avg <- beta * w_avg + (1 - beta) * mean_over_batch(w)`` with
  ``beta = w_avg_beta`` (0.995 in the reference), starting from zeros. Every
  training-mode pass of the mapping network counts (D steps, G step, path
  length, and the second latent of style mixing, which ada skips: it is a draw
  of the same distribution, so only the averaging window changes).
  Inference calls read nothing and change nothing.

  ``w_avg`` [w_dim] is a non-trainable weight of the generator, so the run's
  checkpoint saves it, the generator EMA copies it (as ada copies buffers into
  G_ema), and the export holds it: :func:`truncate` pulls latents towards it.
  Under a distribution strategy it is mean-aggregated over replicas.
  """

  def __init__(self, beta: float = 0.995, **kwargs: Any):
    super().__init__(**kwargs)
    if (isinstance(beta, bool) or not isinstance(beta, (int, float))
        or not 0.0 <= beta < 1.0):
      raise ValueError(f"TrackAverageW: beta={beta!r} must be a number in [0, 1); pass 0.995 "
                       "(stylegan2-ada's w_avg_beta).")
    self.beta = float(beta)

  def build(self, input_shape):
    self.w_avg = self.add_weight(name="w_avg", shape=[int(input_shape[-1])], dtype="float32",
                                 initializer="zeros", trainable=False,
                                 aggregation=tf.VariableAggregation.MEAN)
    super().build(input_shape)

  def call(self, inputs: tf.Tensor, training: Any = None) -> tf.Tensor:
    def update() -> tf.Tensor:
      batch_mean = tf.stop_gradient(tf.reduce_mean(tf.cast(inputs, tf.float32), axis=0))
      new = self.beta * self.w_avg + (1.0 - self.beta) * batch_mean
      with tf.control_dependencies([self.w_avg.assign(new)]):
        return tf.identity(inputs)

    flag = _is_training(training)
    if isinstance(flag, bool):
      return update() if flag else inputs
    return tf.cond(flag, update, lambda: tf.identity(inputs))

  def compute_output_shape(self, input_shape):
    return tf.TensorShape(input_shape)

  def get_config(self):
    return {**super().get_config(), "beta": self.beta}


@_register
class BroadcastLatent(PrunableLayerMixin, keras.layers.Layer):
  """Repeats w [B, w_dim] into ws [B, num_ws, w_dim] (one latent per layer). No weights."""

  def __init__(self, num_ws: int, **kwargs: Any):
    super().__init__(**kwargs)
    _check_int(type(self).__name__, "num_ws", num_ws, 1)
    self.num_ws = num_ws

  def call(self, inputs: tf.Tensor) -> tf.Tensor:
    return broadcast_w(inputs, self.num_ws)

  def compute_output_shape(self, input_shape):
    shape = tf.TensorShape(input_shape)
    return tf.TensorShape([shape[0], self.num_ws, shape[1]])

  def get_config(self):
    return {**super().get_config(), "num_ws": self.num_ws}


@_register
class ConstantInput(PrunableLayerMixin, keras.layers.Layer):
  """The synthesis network's learned constant input, tiled over the batch.

  Weight ``const`` [size, size, channels] ~ N(0, 1): an input, not a connection
  (prunable only with ``prune_all``). Input: any tensor whose first axis is the
  batch (the ws); output [B, size, size, channels].
  """

  _other_trainable = ("const",)

  def __init__(self, channels: int, size: int = 4, *, prune_all: bool = False, **kwargs: Any):
    super().__init__(**kwargs)
    _check_int(type(self).__name__, "channels", channels, 1)
    _check_int(type(self).__name__, "size", size, 1)
    self.channels = channels
    self.size = size
    self.prune_all = bool(prune_all)

  def build(self, input_shape):
    self.const = self.add_weight("const", shape=(self.size, self.size, self.channels),
                                 initializer=keras.initializers.RandomNormal(0.0, 1.0))
    super().build(input_shape)

  def call(self, inputs: tf.Tensor) -> tf.Tensor:
    batch = tf.shape(inputs)[0]
    return tf.tile(tf.convert_to_tensor(self.const)[tf.newaxis], [batch, 1, 1, 1])

  def compute_output_shape(self, input_shape):
    return tf.TensorShape([tf.TensorShape(input_shape)[0], self.size, self.size, self.channels])

  def get_config(self):
    return {**super().get_config(), "channels": self.channels, "size": self.size,
            "prune_all": self.prune_all}


def _split_inputs(owner: Any, input_shape: Any) -> Tuple[tf.TensorShape, tf.TensorShape]:
  if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
    raise ValueError(f"{owner.name}: expects two inputs [x, styles]; got {input_shape!r}. "
                     "Call it as layer([x, styles]) with styles from a StyleAffine.")
  x_shape, s_shape = (tf.TensorShape(s) for s in input_shape)
  if x_shape.rank != 4 or s_shape.rank != 2:
    raise ValueError(f"{owner.name}: x must be [B, H, W, C] and styles [B, C]; got "
                     f"{x_shape} and {s_shape}.")
  if x_shape[-1] is not None and s_shape[-1] is not None and x_shape[-1] != s_shape[-1]:
    raise ValueError(f"{owner.name}: styles have {s_shape[-1]} channels but x has "
                     f"{x_shape[-1]}; the StyleAffine feeding this layer must have "
                     f"units={x_shape[-1]} (the layer's input channels).")
  return x_shape, s_shape


@_register
class ModulatedConv2D(PrunableLayerMixin, keras.layers.Layer):
  """StyleGAN2's modulated, demodulated convolution with noise, bias and activation.

  For styles ``s`` [B, in] and weight ``W = kernel / sqrt(in * k * k)``, each
  sample b convolves with its own weight

      W'_b[.., i, o] = W[.., i, o] * s[b, i]                    (modulation)
      W''_b[.., i, o] = W'_b[.., i, o] / sqrt(sum_{kh,kw,i} W'_b^2 + 1e-8)   (demodulation)

  computed without materializing W'': x * s, the shared convolution, then times
  the [B, out] demodulation coefficients (identical; :meth:`effective_kernel`
  returns W'' for inspection). With ``up=True`` the convolution is a transposed
  3x3 conv with stride 2 followed by the [1, 3, 3, 1] filter (rosinality's
  ``ModulatedConv2d(upsample=True)``). Then ``+ noise_strength * noise`` (noise
  [B, H, W, 1], see the module docstring for ``noise``), ``+ bias``, leaky
  ReLU(0.2) * sqrt(2).

  Connections: ``kernel`` [k, k, in, filters]. Not connections: ``bias``
  [filters], ``noise_strength`` [] (prunable only with ``prune_all``) and the
  non-trainable ``noise_const`` [H, W].

  Args:
    filters: output channels.
    kernel_size: odd kernel size (3 in StyleGAN2).
    up: upsample x2 (transposed conv + FIR).
    demodulate: apply weight demodulation.
    noise: 'auto' (random while training, constant buffer at inference),
      'random', 'const' or 'none'.
    noise_salt: mixed into the random-noise seed so layers draw different noise.
    prune_all: also expose bias and noise strength to pruning.

  Inputs [x [B, H, W, in], styles [B, in]]; output [B, H', W', filters], H' = 2H
  with ``up``.
  """

  _connections = ("kernel",)
  _other_trainable = ("bias", "noise_strength")

  def __init__(self, filters: int, kernel_size: int = 3, *, up: bool = False,
               demodulate: bool = True, noise: str = "auto", noise_salt: int = 0,
               prune_all: bool = False, **kwargs: Any):
    super().__init__(**kwargs)
    owner = type(self).__name__
    _check_int(owner, "filters", filters, 1)
    kernel_size = check_odd_kernel_size(owner, kernel_size)
    check_choice(owner, "noise", noise, _NOISE_MODES)
    _check_int(owner, "noise_salt", noise_salt, 0)
    self.filters = filters
    self.kernel_size = kernel_size
    self.up = bool(up)
    self.demodulate = bool(demodulate)
    self.noise = noise
    self.noise_salt = noise_salt
    self.prune_all = bool(prune_all)
    self.noise_strength = None
    self.noise_const = None

  def build(self, input_shape):
    x_shape, _ = _split_inputs(self, input_shape)
    fan_in = int(x_shape[-1]) * self.kernel_size**2
    self._gain = 1.0 / math.sqrt(fan_in)
    k = self.kernel_size
    self.kernel = self.add_weight("kernel", shape=(k, k, int(x_shape[-1]), self.filters),
                                  initializer=keras.initializers.RandomNormal(0.0, 1.0))
    self.bias = self.add_weight("bias", shape=(self.filters,), initializer="zeros")
    if self.noise != "none":
      if x_shape[1] is None or x_shape[2] is None:
        raise ValueError(f"{self.name}: noise={self.noise!r} needs a static spatial size "
                         f"(got {x_shape}); build with a fixed image size or noise='none'.")
      scale = 2 if self.up else 1
      self.noise_strength = self.add_weight("noise_strength", shape=(), initializer="zeros")
      self.noise_const = self.add_weight(
          "noise_const", shape=(int(x_shape[1]) * scale, int(x_shape[2]) * scale),
          initializer=keras.initializers.RandomNormal(0.0, 1.0), trainable=False)
    super().build(input_shape)

  def _styles32(self, styles: tf.Tensor) -> tf.Tensor:
    return tf.cast(styles, tf.float32)

  def demodulation(self, styles: tf.Tensor) -> tf.Tensor:
    """The demodulation coefficients [B, filters] (float32) for styles [B, in]."""
    weight = tf.cast(self.kernel, tf.float32) * self._gain
    s2 = tf.square(self._styles32(styles))
    return tf.math.rsqrt(tf.matmul(s2, tf.reduce_sum(tf.square(weight), axis=[0, 1]))
                         + _DEMOD_EPS)

  def effective_kernel(self, styles: tf.Tensor) -> tf.Tensor:
    """Per-sample weights [B, k, k, in, filters] (modulated, demodulated if set)."""
    weight = tf.cast(self.kernel, tf.float32) * self._gain
    w = weight[tf.newaxis] * self._styles32(styles)[:, tf.newaxis, tf.newaxis, :, tf.newaxis]
    if self.demodulate:
      w = w * self.demodulation(styles)[:, tf.newaxis, tf.newaxis, tf.newaxis, :]
    return w

  def _noise(self, y: tf.Tensor, training: Any) -> tf.Tensor:
    height, width = self.noise_const.shape

    def random_noise():
      # Seed: the salt and the bits of two sums of this batch's activations
      # (deterministic given weights and z; see the module docstring).
      y32 = tf.stop_gradient(tf.cast(y, tf.float32))
      first = tf.bitcast(tf.reduce_sum(y32[0]), tf.int32)
      last = tf.bitcast(tf.reduce_sum(y32[-1]), tf.int32)
      seed = tf.stack([tf.bitwise.bitwise_xor(first, tf.constant(self.noise_salt, tf.int32)),
                       last])
      shape = tf.stack([tf.shape(y)[0], height, width, 1])
      return tf.random.stateless_normal(shape, seed, dtype=tf.float32)

    def const_noise():
      return tf.convert_to_tensor(self.noise_const)[tf.newaxis, :, :, tf.newaxis]

    if self.noise == "random":
      noise = random_noise()
    elif self.noise == "const":
      noise = const_noise()
    else:
      noise = _select(training, random_noise,
                      lambda: tf.tile(const_noise(), [tf.shape(y)[0], 1, 1, 1]))
    return y + tf.cast(noise, y.dtype) * tf.cast(self.noise_strength, y.dtype)

  def call(self, inputs: Sequence[tf.Tensor], training: Any = None) -> tf.Tensor:
    x, styles = inputs
    dtype = x.dtype
    weight = self.kernel * tf.cast(self._gain, dtype)  # read the variable on every call
    x = x * tf.cast(styles, dtype)[:, tf.newaxis, tf.newaxis, :]
    if self.up:
      k = self.kernel_size
      # Static sizes where known, so that the output keeps a static shape.
      dynamic = tf.unstack(tf.shape(x))
      sizes = [d if d is not None else dynamic[i + 1] for i, d in enumerate(x.shape[1:3])]
      out_shape = tf.stack([tf.shape(x)[0], 2 * sizes[0] + k - 2, 2 * sizes[1] + k - 2,
                            self.filters])
      y = tf.nn.conv2d_transpose(x, tf.transpose(weight, [0, 1, 3, 2]), out_shape,
                                 strides=2, padding="VALID")
      # rosinality's Blur(pad=(p+1)//2 + 1, p//2 + 1), p = 4 - 2 - (k - 1), gain 4.
      p = len(FIR_TAPS) - 2 - (k - 1)
      y = fir_blur_2d(y, (p + 1) // 2 + 1, p // 2 + 1, axis_gain=2.0)
      y.set_shape(self.compute_output_shape([x.shape, styles.shape]))
    else:
      y = tf.nn.conv2d(x, weight, strides=1, padding="SAME")
    if self.demodulate:
      y = y * tf.cast(self.demodulation(styles), dtype)[:, tf.newaxis, tf.newaxis, :]
    if self.noise != "none":
      y = self._noise(y, training)
    y = y + tf.cast(self.bias, dtype)
    return activate(y, "lrelu")

  def compute_output_shape(self, input_shape):
    x_shape, _ = _split_inputs(self, input_shape)
    scale = lambda d: None if d is None else d * (2 if self.up else 1)  # noqa: E731
    return tf.TensorShape([x_shape[0], scale(x_shape[1]), scale(x_shape[2]), self.filters])

  def forward_flops(self, input_shape, output_shape) -> int:
    """Per-image FLOPs of the convolution (2 per multiply-add; ``regan_tf.flops``).

    Counted as the profiler counts the op that runs: a stride-1 conv per output
    position, the upsampling (transposed) conv per input position. Modulation,
    demodulation, noise and the FIR filter are not connections and not counted.
    """
    k, cin = self.kernel_size, int(input_shape[-1])
    positions = (int(input_shape[1]) * int(input_shape[2]) if self.up
                 else int(output_shape[1]) * int(output_shape[2]))
    return 2 * k * k * cin * self.filters * positions

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
            "up": self.up, "demodulate": self.demodulate, "noise": self.noise,
            "noise_salt": self.noise_salt, "prune_all": self.prune_all}


@_register
class ToRGB(PrunableLayerMixin, keras.layers.Layer):
  """Modulated 1x1 convolution to image channels, without demodulation, plus bias.

  ``y = conv1x1(x * s / sqrt(in), kernel) + bias`` (ada's ``ToRGBLayer``). The
  builder makes it float32 (it feeds the float32 image sum).

  Connections: ``kernel`` [1, 1, in, channels]. Not: ``bias`` [channels]
  (prunable only with ``prune_all``).

  Inputs [x [B, H, W, in], styles [B, in]]; output [B, H, W, channels].
  """

  _connections = ("kernel",)
  _other_trainable = ("bias",)

  def __init__(self, channels: int, *, prune_all: bool = False, **kwargs: Any):
    super().__init__(**kwargs)
    _check_int(type(self).__name__, "channels", channels, 1)
    self.channels = channels
    self.prune_all = bool(prune_all)

  def build(self, input_shape):
    x_shape, _ = _split_inputs(self, input_shape)
    self._gain = 1.0 / math.sqrt(int(x_shape[-1]))
    self.kernel = self.add_weight("kernel", shape=(1, 1, int(x_shape[-1]), self.channels),
                                  initializer=keras.initializers.RandomNormal(0.0, 1.0))
    self.bias = self.add_weight("bias", shape=(self.channels,), initializer="zeros")
    super().build(input_shape)

  def call(self, inputs: Sequence[tf.Tensor]) -> tf.Tensor:
    x, styles = inputs
    styles = tf.cast(styles, x.dtype) * tf.cast(self._gain, x.dtype)
    y = tf.nn.conv2d(x * styles[:, tf.newaxis, tf.newaxis, :], self.kernel, strides=1,
                     padding="VALID")
    return y + self.bias

  def compute_output_shape(self, input_shape):
    x_shape, _ = _split_inputs(self, input_shape)
    return x_shape[:-1].concatenate([self.channels])

  def forward_flops(self, input_shape, output_shape) -> int:
    """Per-image FLOPs of the 1x1 convolution (2 * in * channels per position)."""
    return 2 * int(input_shape[-1]) * self.channels * int(output_shape[1]) * int(output_shape[2])

  def get_config(self):
    return {**super().get_config(), "channels": self.channels, "prune_all": self.prune_all}


@_register
class UpsampleFIR(PrunableLayerMixin, keras.layers.Layer):
  """:func:`upsample_2d` as a layer (the skip generator's image upsampling). No weights."""

  def call(self, inputs: tf.Tensor) -> tf.Tensor:
    return upsample_2d(inputs)

  def compute_output_shape(self, input_shape):
    b, h, w, c = tf.TensorShape(input_shape).as_list()
    return tf.TensorShape([b, None if h is None else 2 * h, None if w is None else 2 * w, c])


@_register
class ClipAtInference(PrunableLayerMixin, keras.layers.Layer):
  """Identity while training; clips to [lo, hi] at inference (``training`` False/None).

  StyleGAN2's output is linear; the library promises images in [-1, 1] to the
  evaluator and the export, which call the generator with ``training=False``.
  """

  def __init__(self, lo: float = -1.0, hi: float = 1.0, **kwargs: Any):
    super().__init__(**kwargs)
    if not lo < hi:
      raise ValueError(f"ClipAtInference: lo={lo!r} must be < hi={hi!r}; pass lo=-1.0, hi=1.0.")
    self.lo, self.hi = float(lo), float(hi)

  def call(self, inputs: tf.Tensor, training: Any = None) -> tf.Tensor:
    return _select(training, lambda: tf.identity(inputs),
                   lambda: tf.clip_by_value(inputs, self.lo, self.hi))

  def compute_output_shape(self, input_shape):
    return tf.TensorShape(input_shape)

  def get_config(self):
    return {**super().get_config(), "lo": self.lo, "hi": self.hi}


# ------------------------------------------------------------------ networks


def num_ws(image_size: int) -> int:
  """Latents the synthesis network reads: ``2 * log2(image_size) - 2``."""
  return 2 * int(round(math.log2(image_size))) - 2


def _channels(resolution: int, channel_base: int, channel_max: int) -> int:
  return min(channel_base // resolution, channel_max)


def _mapping(z_dim: int, w_dim: int, num_layers: int, lr_multiplier: float,
             prune_all: bool, w_avg_beta: Optional[float]) -> keras.Model:
  z = keras.Input(shape=(z_dim,), dtype="float32", name="z")
  x = PixelNorm(dtype="float32", name="mapping_pixel_norm")(z)
  for i in range(num_layers):
    x = EqualizedDense(w_dim, activation="lrelu", lr_multiplier=lr_multiplier,
                       prune_all=prune_all, dtype="float32", name=f"mapping_dense{i}")(x)
  if w_avg_beta is not None:
    x = TrackAverageW(w_avg_beta, dtype="float32", name="mapping_w_avg")(x)
  return keras.Model(z, x, name="mapping")


def _synthesis(image_size: int, channels: int, w_dim: int, channel_base: int,
               channel_max: int, noise: str, prune_all: bool) -> keras.Model:
  ws = keras.Input(shape=(num_ws(image_size), w_dim), dtype="float32", name="ws")
  salt = iter(range(1 << 20))

  def affine(units: int, index: int, name: str) -> tf.Tensor:
    return StyleAffine(units, latent_index=index, prune_all=prune_all, dtype="float32",
                       name=name + "_affine")(ws)

  def conv(x: tf.Tensor, filters: int, index: int, name: str, up: bool = False) -> tf.Tensor:
    styles = affine(int(x.shape[-1]), index, name)
    return ModulatedConv2D(filters, 3, up=up, noise=noise, noise_salt=next(salt),
                           prune_all=prune_all, name=name)([x, styles])

  def to_rgb(x: tf.Tensor, index: int, name: str) -> tf.Tensor:
    styles = affine(int(x.shape[-1]), index, name)
    return ToRGB(channels, prune_all=prune_all, dtype="float32", name=name)([x, styles])

  width = _channels(4, channel_base, channel_max)
  x = ConstantInput(width, 4, prune_all=prune_all, name="b4_const")(ws)
  x = conv(x, width, 0, "b4_conv")
  image = to_rgb(x, 1, "b4_torgb")
  index = 1
  resolution = 8
  while resolution <= image_size:
    width = _channels(resolution, channel_base, channel_max)
    p = f"b{resolution}_"
    x = conv(x, width, index, p + "conv0", up=True)
    x = conv(x, width, index + 1, p + "conv1")
    rgb = to_rgb(x, index + 2, p + "torgb")
    image = UpsampleFIR(dtype="float32", name=p + "img_up")(image)
    image = keras.layers.Add(dtype="float32", name=p + "img")([image, rgb])
    index += 2
    resolution *= 2
  image = ClipAtInference(dtype="float32", name="output_clip")(image)
  return keras.Model(ws, image, name="synthesis")


def _generator(image_size: int, channels: int, z_dim: int, w_dim: int, mapping_layers: int,
               mapping_lr_multiplier: float, channel_base: int, channel_max: int, noise: str,
               prune_all: bool, w_avg_beta: Optional[float]) -> keras.Model:
  mapping = _mapping(z_dim, w_dim, mapping_layers, mapping_lr_multiplier, prune_all, w_avg_beta)
  synthesis = _synthesis(image_size, channels, w_dim, channel_base, channel_max, noise,
                         prune_all)
  z = keras.Input(shape=(z_dim,), dtype="float32", name="z")
  ws = BroadcastLatent(num_ws(image_size), dtype="float32", name="broadcast_ws")(mapping(z))
  return keras.Model(z, synthesis(ws), name="generator")


def _discriminator(image_size: int, channels: int, channel_base: int, channel_max: int,
                   mbstd_group_size: int, architecture: str) -> keras.Model:
  resnet = architecture == "resnet"
  branch_gain = math.sqrt(0.5) if resnet else 1.0
  images = keras.Input(shape=(image_size, image_size, channels), name="images")
  x = EqualizedConv2D(_channels(image_size, channel_base, channel_max), 1, activation="lrelu",
                      name=f"b{image_size}_fromrgb")(images)
  resolution = image_size
  while resolution > 4:
    p = f"b{resolution}_"
    tmp = _channels(resolution, channel_base, channel_max)
    out = _channels(resolution // 2, channel_base, channel_max)
    skip = None
    if resnet:
      skip = EqualizedConv2D(out, 1, down=True, use_bias=False, output_gain=branch_gain,
                             name=p + "skip")(x)
    x = EqualizedConv2D(tmp, 3, activation="lrelu", name=p + "conv0")(x)
    x = EqualizedConv2D(out, 3, down=True, activation="lrelu", output_gain=branch_gain,
                        name=p + "conv1")(x)
    if resnet:
      x = keras.layers.Add(name=p + "add")([skip, x])
    resolution //= 2
  # The 4x4 epilogue in float32: sqrt(var + 1e-8) underflows in float16.
  width = _channels(4, channel_base, channel_max)
  x = MinibatchStdDev(mbstd_group_size, 1, dtype="float32", name="b4_mbstd")(x)
  x = EqualizedConv2D(width, 3, activation="lrelu", dtype="float32", name="b4_conv")(x)
  x = keras.layers.Flatten(dtype="float32", name="b4_flatten")(x)
  x = EqualizedDense(width, activation="lrelu", dtype="float32", name="b4_fc")(x)
  logits = EqualizedDense(1, dtype="float32", name="b4_out")(x)
  return keras.Model(images, logits, name="discriminator")


def build(*, image_size: int = 32, channels: int = 3, z_dim: int = 512, w_dim: int = 512,
          mapping_layers: Optional[int] = None, mapping_lr_multiplier: float = 0.01,
          channel_base: int = 32768, channel_max: int = 512, mbstd_group_size: int = 4,
          d_architecture: str = "resnet", noise: str = "auto",
          prune_all_weights: bool = False, w_avg_beta: Optional[float] = 0.995) -> GAN:
  """Builds the StyleGAN2 generator and discriminator (see the module docstring).

  Defaults: 32x32 is stylegan2-ada's 'cifar' network, 256x256 Re-GAN's
  (rosinality ``channel_multiplier=2``) network.

  Args:
    image_size: S, a power of two from 8 to 1024 (32 for CIFAR-10, 256 few-shot).
    channels: image channels C.
    z_dim: latent size (512 in the references; the trainer passes its own z_dim,
      so set ``train.z_dim = 512`` in gin).
    w_dim: intermediate latent size (512).
    mapping_layers: mapping-network depth; None: 2 for S <= 32 (ada 'cifar'),
      8 otherwise (the paper, Re-GAN).
    mapping_lr_multiplier: the mapping's learning-rate multiplier (0.01).
    channel_base, channel_max: widths ``min(channel_base // r, channel_max)``.
    mbstd_group_size: minibatch-stddev group (4; ada: 32 'cifar', 8 'paper256').
    d_architecture: 'resnet' (config E) or 'orig' (no residual skips).
    noise: 'auto', 'random', 'const' or 'none' (see the module docstring).
    prune_all_weights: make every trainable G weight prunable, as Re-GAN's
      StyleGAN2 code prunes (default: connections only).
    w_avg_beta: decay of the moving average of w tracked while training
      (:class:`TrackAverageW`, the truncation trick's centre; 0.995 as
      stylegan2-ada). None tracks nothing (the generator then has no
      ``w_avg``, like StyleGAN2 checkpoints written before it existed: resume
      those with ``models.stylegan2.w_avg_beta = None``).

  Returns:
    GAN with generator z [B, z_dim] -> images float32 [B, S, S, C] (in [-1, 1] at
    inference; nested ``mapping`` and ``synthesis`` models, see
    :func:`mapping_and_synthesis`) and discriminator -> logits float32 [B, 1].

  Raises:
    ValueError: an argument is out of range; the message says what is allowed.
  """
  check_builder_args(build, locals(), image_sizes=IMAGE_SIZES,
                     resize_fix="Resize the data (32 for CIFAR-10, 256 for the few-shot sets).",
                     positive=("w_dim",))
  if mapping_layers is None:
    mapping_layers = 2 if image_size <= 32 else 8
  check_positive_int("stylegan2.build", "mapping_layers", mapping_layers,
                     "pass 8 (the paper) or 2 (stylegan2-ada's cifar config), or None.")
  if (isinstance(mapping_lr_multiplier, bool)
      or not isinstance(mapping_lr_multiplier, (int, float)) or not mapping_lr_multiplier > 0):
    raise ValueError(f"stylegan2.build: mapping_lr_multiplier={mapping_lr_multiplier!r} must be "
                     "a number > 0; pass 0.01 (the references).")
  check_positive_int("stylegan2.build", "channel_base", channel_base,
                     "pass 32768 (Re-GAN, ada 'cifar') or 16384 (ada 'paper256').")
  check_positive_int("stylegan2.build", "channel_max", channel_max, "pass 512 (the references).")
  if channel_base // image_size < 1:
    raise ValueError(f"stylegan2.build: channel_base={channel_base} gives 0 channels at "
                     f"{image_size}x{image_size} (channel_base // image_size); pass "
                     f"channel_base >= {image_size}.")
  check_positive_int("stylegan2.build", "mbstd_group_size", mbstd_group_size,
                     "pass 4 (rosinality) or a divisor of the batch size.")
  check_choice("stylegan2.build", "d_architecture", d_architecture, _D_ARCHITECTURES)
  check_choice("stylegan2.build", "noise", noise, _NOISE_MODES)
  if w_avg_beta is not None and (isinstance(w_avg_beta, bool) or not isinstance(w_avg_beta, (int, float))
                                 or not 0.0 <= w_avg_beta < 1.0):
    raise ValueError(f"stylegan2.build: w_avg_beta={w_avg_beta!r} must be a number in [0, 1) or None; "
                     "pass 0.995 (stylegan2-ada).")
  generator = _generator(image_size, channels, z_dim, w_dim, mapping_layers,
                         float(mapping_lr_multiplier), channel_base, channel_max, noise,
                         bool(prune_all_weights), None if w_avg_beta is None else float(w_avg_beta))
  discriminator = _discriminator(image_size, channels, channel_base, channel_max,
                                 mbstd_group_size, d_architecture)
  return GAN(generator=generator, discriminator=discriminator, z_dim=z_dim)


# ----------------------------------------------- pieces for a trainer (pure)


def mapping_and_synthesis(generator: keras.Model) -> Tuple[keras.Model, keras.Model]:
  """The generator's nested ``mapping`` (z -> w) and ``synthesis`` (ws -> images).

  Works on the built generator and on its clones (the pruned generator of
  ``prune_generator``, the EMA model), whose nested models share their variables.
  """
  try:
    return generator.get_layer("mapping"), generator.get_layer("synthesis")
  except ValueError:
    raise ValueError(f"generator {getattr(generator, 'name', generator)!r} has no nested "
                     "'mapping' and 'synthesis' models; pass a generator built by "
                     "regan_tf.models.stylegan2.build (or a clone of one).") from None


def tracked_w_avg(generator: keras.Model) -> Optional[tf.Variable]:
  """The generator's running average of w (:class:`TrackAverageW`), or None if it tracks none.

  Works on the built generator and its pruned, stripped and EMA clones (a
  pruning wrapper's inner layer is looked through).
  """
  mapping, _ = mapping_and_synthesis(generator)
  for layer in mapping.layers:
    layer = getattr(layer, "layer", layer)  # inside a pruning wrapper
    if isinstance(layer, TrackAverageW):
      return layer.w_avg
  return None


def broadcast_w(w: tf.Tensor, num_latents: int) -> tf.Tensor:
  """w [B, w_dim] -> ws [B, num_ws, w_dim], the same latent for every layer.

  What the generator's ``broadcast_ws`` layer does (in a pruned clone that layer
  sits in an empty pruning wrapper under another name; use this instead).
  """
  return tf.tile(w[:, tf.newaxis, :], [1, num_latents, 1])


def mix_styles(ws_a: tf.Tensor, ws_b: tf.Tensor, crossover: Union[int, tf.Tensor]) -> tf.Tensor:
  """Style mixing: latents ``< crossover`` from ``ws_a``, the rest from ``ws_b``.

  Args:
    ws_a, ws_b: [B, num_ws, w_dim].
    crossover: int scalar or [B] (per example); ``num_ws`` means no mixing. The
      references draw it uniformly from [1, num_ws) with probability 0.9
      (rosinality / Re-GAN ``--mixing 0.9``; ada 'cifar' disables mixing).

  Returns:
    [B, num_ws, w_dim].
  """
  layer = tf.range(tf.shape(ws_a)[1])
  crossover = tf.reshape(tf.cast(crossover, tf.int32), [-1, 1])  # [1 or B, 1]
  return tf.where((layer[tf.newaxis, :] < crossover)[:, :, tf.newaxis], ws_a, ws_b)


def mixed_latents(mapping: keras.Model, z: tf.Tensor, *, num_latents: int, probability: float,
                  seed: tf.Tensor, training: bool = True) -> tf.Tensor:
  """Per-layer latents for one training batch, with style mixing.

  With probability ``probability`` (one draw per batch, as rosinality / Re-GAN),
  a second latent ``z2 ~ N(0, I)`` is mapped too and the layers from a crossover
  drawn uniformly in [1, num_latents) on take its w; otherwise every layer takes
  ``mapping(z)``. All draws are stateless from ``seed`` (int32/int64 [2]), so a
  training step stays a function of (weights, seed) and resumes exactly.

  Args:
    mapping: z [B, z_dim] -> w [B, w_dim] (from :func:`mapping_and_synthesis`).
    z: [B, z_dim].
    num_latents: the synthesis network's number of ws.
    probability: in [0, 1]; 0 never mixes (and maps one z only).
    seed: the stateless seed of z2, the coin and the crossover.
    training: passed to the mapping network.

  Returns:
    ws [B, num_latents, w_dim].
  """
  ws = broadcast_w(mapping(z, training=training), num_latents)
  if not probability or num_latents < 2:
    return ws
  seeds = [tf.random.experimental.stateless_fold_in(seed, i) for i in range(3)]
  z2 = tf.random.stateless_normal(tf.shape(z), seed=seeds[0], dtype=z.dtype)
  ws2 = broadcast_w(mapping(z2, training=training), num_latents)
  coin = tf.random.stateless_uniform([], seed=seeds[1])
  crossover = tf.random.stateless_uniform([], seed=seeds[2], minval=1, maxval=num_latents, dtype=tf.int32)
  crossover = tf.where(coin < probability, crossover, num_latents)
  return mix_styles(ws, ws2, crossover)


def truncate(ws: tf.Tensor, w_avg: tf.Tensor, psi: float,
             cutoff: Optional[int] = None) -> tf.Tensor:
  """The truncation trick: ``w_avg + psi * (ws - w_avg)`` for latents ``< cutoff``.

  Args:
    ws: [B, num_ws, w_dim]; w_avg: [w_dim] (:func:`tracked_w_avg`, or :func:`average_w`); psi: 1 = none.
    cutoff: truncate only the first ``cutoff`` latents (None: all).
  """
  w_avg = tf.cast(w_avg, ws.dtype)
  truncated = w_avg + tf.cast(psi, ws.dtype) * (ws - w_avg)
  if cutoff is None:
    return truncated
  return mix_styles(truncated, ws, cutoff)


def average_w(mapping: keras.Model, *, z_dim: int, num_samples: int = 4096,
              seed: Tuple[int, int] = (0, 0), batch_size: int = 512) -> tf.Tensor:
  """The mean of w over ``num_samples`` stateless N(0, 1) draws of z: float32 [w_dim].

  rosinality's ``mean_latent`` (4096 samples); ada tracks a running mean instead.
  """
  _check_int("average_w", "num_samples", num_samples, 1)
  _check_int("average_w", "batch_size", batch_size, 1)
  total, done, chunk = None, 0, 0
  while done < num_samples:
    n = min(batch_size, num_samples - done)
    z = tf.random.stateless_normal([n, z_dim], seed=[seed[0], seed[1] + chunk])
    part = tf.reduce_sum(tf.cast(mapping(z, training=False), tf.float32), axis=0)
    total = part if total is None else total + part
    done += n
    chunk += 1
  return total / float(num_samples)
