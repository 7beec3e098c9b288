"""Custom Keras layers the architectures need and Keras 2 lacks (or gets wrong for us).

* :class:`NearestUpsample2D`: nearest-neighbour upsampling written with tile and
  reshape, so that its gradient compiles under XLA on CPU (``UpSampling2D``'s
  gradient, ``ResizeNearestNeighborGrad``, has no XLA CPU kernel).
* :class:`SNConv2D` and :class:`SNDense`: spectral normalization (Miyato et al.,
  "Spectral Normalization for Generative Adversarial Networks", ICLR 2018) with
  the semantics of PyTorch's ``torch.nn.utils.spectral_norm``, which the Re-GAN
  reference uses. ``tf_keras.layers.SpectralNormalization`` differs (see
  :class:`SNConv2D`), hence these hand-written layers.
* :class:`GlobalSumPooling2D`: the SN-GAN discriminator's global *sum* pooling.
* The Karras et al. family, shared by ProGAN and StyleGAN2 (Keras has no
  equalized learning rate): :class:`EqualizedDense`, :class:`EqualizedConv2D`
  (optionally FIR-downsampling, :func:`fir_blur_2d`), :class:`PixelNorm` and
  :class:`MinibatchStdDev`.

All layers are registered as Keras serializables under the package ``regan_tf``
and round-trip through ``get_config`` / ``from_config``.

Pruning: Re-GAN and TFMOT wrap a layer by TFMOT's ``PrunableLayer`` protocol
when it has ``get_prunable_weights()``. Every layer here that a generator can
contain has it (:class:`PrunableLayerMixin`): the equalized layers return their
kernel (their *connections*), the weightless ones return ``[]``, so that
``tfmot.sparsity.keras.prune_low_magnitude`` can wrap a whole generator.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

from regan_tf.compat import keras, tf
from regan_tf.models import check_choice, check_positive_int

__all__ = [
    "ACTIVATIONS",
    "EqualizedConv2D",
    "EqualizedDense",
    "FIR_TAPS",
    "GlobalSumPooling2D",
    "MinibatchStdDev",
    "NearestUpsample2D",
    "PixelNorm",
    "PrunableLayerMixin",
    "SNConv2D",
    "SNDense",
    "activate",
    "check_odd_kernel_size",
    "fir_blur_2d",
    "spectral_norm",
]

# PyTorch's spectral_norm normalizes u and v by max(||x||, eps) with this eps.
_NORM_EPS = 1e-12


def _l2_normalize(x: tf.Tensor) -> tf.Tensor:
  return x / tf.maximum(tf.norm(x), _NORM_EPS)


def spectral_norm(w: tf.Tensor, u: tf.Tensor,
                  power_iterations: int = 1) -> tuple[tf.Tensor, tf.Tensor]:
  """Estimates the largest singular value of ``w`` by power iteration.

  The estimate is ``sigma = v^T W u`` where ``u`` and ``v`` come from
  ``power_iterations`` steps of power iteration and are treated as constants
  (``tf.stop_gradient``), exactly as ``torch.nn.utils.spectral_norm`` does. The
  gradient of ``sigma`` with respect to ``w`` is therefore ``v u^T``: gradients
  flow through sigma.

  Args:
    w: float32 [K, N], the kernel reshaped so that its last axis is the output
      units (for a conv kernel [kh, kw, in, out]: K = kh*kw*in, N = out).
    u: float32 [1, N], the current estimate of the first right singular vector
      of ``w`` (first left singular vector of PyTorch's [out, K] matrix).
    power_iterations: number of power-iteration steps, >= 1.

  Returns:
    (sigma, u_next): sigma float32 [] and the updated u, float32 [1, N], which
    the caller stores for the next call.
  """
  if power_iterations < 1:
    raise ValueError(f"power_iterations={power_iterations!r}: must be an integer >= 1; "
                     "pass power_iterations=1 (the PyTorch default).")
  w_const = tf.stop_gradient(w)
  u = tf.stop_gradient(u)
  v = None
  for _ in range(power_iterations):
    v = _l2_normalize(tf.matmul(u, w_const, transpose_b=True))  # [1, K]
    u = _l2_normalize(tf.matmul(v, w_const))  # [1, N]
  v = tf.stop_gradient(v)
  u = tf.stop_gradient(u)
  sigma = tf.reduce_sum(tf.matmul(v, w) * u)
  return sigma, u


def _static_bool(training: Any) -> bool | None:
  """Returns ``training`` as a Python bool, or None when it is a symbolic tensor."""
  if training is None:
    return False
  if isinstance(training, (bool, int)):
    return bool(training)
  value = tf.get_static_value(training)
  return None if value is None else bool(value)


class _SpectralNormMixin:
  """Shared state and math of :class:`SNConv2D` and :class:`SNDense`."""

  power_iterations: int
  kernel: tf.Variable
  u: tf.Variable

  def _init_power_iterations(self, power_iterations: int) -> None:
    if (not isinstance(power_iterations, int) or isinstance(power_iterations, bool)
        or power_iterations < 1):
      raise ValueError(f"{type(self).__name__}: power_iterations={power_iterations!r} must be "
                       "an integer >= 1; pass power_iterations=1 (the PyTorch default).")
    self.power_iterations = power_iterations

  def _build_u(self, units: int) -> None:
    # Non-trainable, float32 even under mixed precision. ONLY_FIRST_REPLICA: under a
    # MirroredStrategy the replicas compute the same u (same kernel), so the first
    # replica's value is written to all copies without an all-reduce.
    self.u = self.add_weight(
        name="sn_u",
        shape=(1, units),
        dtype=tf.float32,
        initializer=keras.initializers.RandomNormal(mean=0.0, stddev=1.0),
        trainable=False,
        synchronization=tf.VariableSynchronization.ON_WRITE,
        aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        experimental_autocast=False,
    )

  def _normalized_kernel(self, training: Any) -> tf.Tensor:
    """Returns W / sigma(W) in the compute dtype; updates ``u`` when training."""
    kernel = tf.convert_to_tensor(self.kernel)  # compute dtype (float16 under mixed precision)
    kernel32 = tf.cast(kernel, tf.float32)
    sigma, u_next = spectral_norm(tf.reshape(kernel32, [-1, kernel.shape[-1]]), self.u,
                                  self.power_iterations)
    train = _static_bool(training)
    if train is None:
      tf.cond(tf.cast(training, tf.bool), lambda: self.u.assign(u_next).read_value(),
              lambda: tf.convert_to_tensor(self.u))
    elif train:
      self.u.assign(u_next)
    return tf.cast(kernel32 / sigma, kernel.dtype)

  def build(self, input_shape: Any) -> None:
    super().build(input_shape)
    self._build_u(self.kernel.shape[-1])  # the output units of the Dense or Conv2D

  def _bias_and_activation(self, outputs: tf.Tensor) -> tf.Tensor:
    # The rest of Dense.call / Conv2D.call after the kernel product.
    if self.use_bias:
      outputs = tf.nn.bias_add(outputs, self.bias)
    if self.activation is not None:
      outputs = self.activation(outputs)
    return outputs

  def get_config(self) -> dict[str, Any]:
    return {**super().get_config(), "power_iterations": self.power_iterations}


@keras.saving.register_keras_serializable(package="regan_tf")
class SNConv2D(_SpectralNormMixin, keras.layers.Conv2D):
  """``Conv2D`` whose kernel is divided by its spectral norm in the forward pass.

  Semantics follow ``torch.nn.utils.spectral_norm`` (used by the Re-GAN / SN-GAN
  reference), chosen deliberately over ``tf_keras.layers.SpectralNormalization``:

  * The stored kernel ``W`` is never written; each call uses ``W / sigma(W)``,
    computed in the forward pass.
  * ``sigma = v^T W u`` with ``u``, ``v`` from ``power_iterations`` steps of power
    iteration, held constant (stop_gradient). Gradients flow through sigma, so
    the update to ``W`` is the gradient of the normalized layer. Keras's wrapper
    instead overwrites ``W`` with ``W / sigma`` on every training call and treats
    sigma as a constant, which changes both the optimizer's view of the weights
    and the gradient.
  * ``u`` [1, filters] is a non-trainable float32 variable. It is updated only
    when ``training=True`` (PyTorch updates it in ``train()`` mode); with
    ``training`` False or None the power iteration still runs from the stored
    ``u`` but nothing is written. (PyTorch in ``eval()`` mode reuses its stored
    ``u`` and ``v`` without iterating; we store only ``u``, so ``v`` is recomputed.)

  The kernel [kh, kw, in, out] is viewed as a [kh*kw*in, out] matrix, whose
  singular values equal those of PyTorch's [out, in*kh*kw] view.

  Args:
    *args: forwarded to ``keras.layers.Conv2D`` (filters, kernel_size, ...).
    power_iterations: power-iteration steps per call, >= 1 (PyTorch default 1).
    **kwargs: forwarded to ``keras.layers.Conv2D``. ``groups`` must be 1.

  Input: [B, H, W, C_in]; output: [B, H', W', filters] in the compute dtype.
  """

  def __init__(self, *args: Any, power_iterations: int = 1, **kwargs: Any):
    super().__init__(*args, **kwargs)
    self._init_power_iterations(power_iterations)
    if self.groups != 1:
      raise ValueError(f"SNConv2D: groups={self.groups!r} is not supported; only groups=1 is. "
                       "Use a plain Conv2D for grouped convolutions.")
    if self.data_format != "channels_last":
      raise ValueError(f"SNConv2D: data_format={self.data_format!r} is not supported; only "
                       "'channels_last' is. Pass data_format='channels_last'.")

  def call(self, inputs: tf.Tensor, training: Any = None) -> tf.Tensor:
    return self._bias_and_activation(
        self.convolution_op(inputs, self._normalized_kernel(training)))


@keras.saving.register_keras_serializable(package="regan_tf")
class SNDense(_SpectralNormMixin, keras.layers.Dense):
  """``Dense`` whose kernel [in, units] is divided by its spectral norm.

  Same semantics as :class:`SNConv2D` (PyTorch's ``spectral_norm``): the stored
  kernel is never written, gradients flow through sigma, and ``u`` [1, units]
  is updated only when ``training=True``.

  Args:
    *args: forwarded to ``keras.layers.Dense`` (units, ...).
    power_iterations: power-iteration steps per call, >= 1 (PyTorch default 1).
    **kwargs: forwarded to ``keras.layers.Dense``.

  Input: [..., in]; output: [..., units] in the compute dtype.
  """

  def __init__(self, *args: Any, power_iterations: int = 1, **kwargs: Any):
    super().__init__(*args, **kwargs)
    self._init_power_iterations(power_iterations)

  def call(self, inputs: tf.Tensor, training: Any = None) -> tf.Tensor:
    kernel = self._normalized_kernel(training)
    if inputs.shape.rank == 2:
      outputs = tf.matmul(inputs, kernel)
    else:
      outputs = tf.tensordot(inputs, kernel, axes=[[-1], [0]])
    return self._bias_and_activation(outputs)


@keras.saving.register_keras_serializable(package="regan_tf")
class NearestUpsample2D(keras.layers.Layer):
  """Nearest-neighbour upsampling by an integer factor, XLA-friendly.

  Output equals ``keras.layers.UpSampling2D(size, interpolation='nearest')``
  (channels_last), but is built from tile + reshape, whose gradient is a
  reshape + sum that XLA compiles on CPU; ``UpSampling2D``'s gradient op
  (``ResizeNearestNeighborGrad``) has no XLA CPU kernel, so a generator using it
  cannot be trained inside ``tf.function(jit_compile=True)`` on CPU.

  The layer has no weights; it defines ``get_prunable_weights() -> []`` so that
  TFMOT's ``prune_low_magnitude`` can wrap it when it wraps a whole model.

  Args:
    size: the integer upsampling factor for both height and width, >= 1.

  Input: [B, H, W, C]; output: [B, size*H, size*W, C], same dtype.
  """

  def __init__(self, size: int = 2, **kwargs: Any):
    super().__init__(**kwargs)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
      raise ValueError(f"NearestUpsample2D: size={size!r} must be an integer >= 1 (the same "
                       "factor for height and width); pass size=2 to double the resolution.")
    self.size = size
    self.input_spec = keras.layers.InputSpec(ndim=4)

  def call(self, inputs: tf.Tensor) -> tf.Tensor:
    s = self.size
    shape = tf.shape(inputs)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    x = inputs[:, :, tf.newaxis, :, tf.newaxis, :]  # [B, H, 1, W, 1, C]
    x = tf.tile(x, [1, 1, s, 1, s, 1])  # [B, H, s, W, s, C]
    outputs = tf.reshape(x, tf.stack([batch, height * s, width * s, channels]))
    outputs.set_shape(self.compute_output_shape(inputs.shape))
    return outputs

  def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
    b, h, w, c = tf.TensorShape(input_shape).as_list()
    scale = lambda d: None if d is None else d * self.size  # noqa: E731
    return tf.TensorShape([b, scale(h), scale(w), c])

  def get_prunable_weights(self) -> list[tf.Variable]:
    return []

  def get_config(self) -> dict[str, Any]:
    return {**super().get_config(), "size": self.size}


@keras.saving.register_keras_serializable(package="regan_tf")
class GlobalSumPooling2D(keras.layers.Layer):
  """Sums over the spatial axes: [B, H, W, C] -> [B, C].

  The SN-GAN ResNet discriminator (Miyato et al. 2018; Re-GAN's reference
  ``x.sum(dim=[2, 3])``) pools by summing, not averaging, before its final
  spectrally normalized linear layer; the two differ by a factor H*W in the
  logits, which a spectrally normalized layer cannot absorb.
  """

  def __init__(self, **kwargs: Any):
    super().__init__(**kwargs)
    self.input_spec = keras.layers.InputSpec(ndim=4)

  def call(self, inputs: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(inputs, axis=[1, 2])

  def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
    shape = tf.TensorShape(input_shape).as_list()
    return tf.TensorShape([shape[0], shape[3]])

  def get_config(self) -> dict[str, Any]:
    return super().get_config()


# ----------------------------------------------------------------------------
# The Karras et al. family: equalized learning rate, PixelNorm, minibatch stddev
# (ProGAN, ICLR 2018; StyleGAN2, CVPR 2020). One implementation for both
# architectures, so a fix to one reaches the other.
# ----------------------------------------------------------------------------

ACTIVATIONS = ("linear", "lrelu")
_LRELU_SLOPE = 0.2
_LRELU_GAIN = math.sqrt(2.0)
_KARRAS_EPS = 1e-8  # PixelNorm, minibatch stddev (both references)
FIR_TAPS = (1.0, 3.0, 3.0, 1.0)  # StyleGAN2's resampling filter, per axis


def activate(x: tf.Tensor, activation: str) -> tf.Tensor:
  """'lrelu': leaky ReLU(0.2) * sqrt(2) (StyleGAN2's He gain after the activation); 'linear': x."""
  if activation == "lrelu":
    return tf.nn.leaky_relu(x, alpha=_LRELU_SLOPE) * tf.cast(_LRELU_GAIN, x.dtype)
  return x


def _fir_1d(x: tf.Tensor, axis: int, pad0: int, pad1: int, gain: float) -> tf.Tensor:
  """Correlates axis ``axis`` of x with FIR_TAPS * gain / 8, zero-padded.

  Output length along ``axis``: n + pad0 + pad1 - 3. Four shifted slices
  instead of a convolution: the gradient (and its gradient) compile under XLA
  on CPU.
  """
  taps = [gain * t / sum(FIR_TAPS) for t in FIR_TAPS]
  paddings = [[0, 0]] * x.shape.rank
  paddings[axis] = [pad0, pad1]
  x = tf.pad(x, paddings)
  out = None
  for j, tap in enumerate(taps):
    index = [slice(None)] * x.shape.rank
    end = j - (len(taps) - 1)
    index[axis] = slice(j, end if end else None)
    term = x[tuple(index)] * tf.cast(tap, x.dtype)
    out = term if out is None else out + term
  return out


def fir_blur_2d(x: tf.Tensor, pad0: int, pad1: int, axis_gain: float = 1.0) -> tf.Tensor:
  """StyleGAN2's separable [1, 3, 3, 1] low-pass filter over H and W of [B, H, W, C].

  Each axis is zero-padded by (pad0, pad1) and filtered with the taps
  normalized to sum ``axis_gain`` (2 per axis for the x2 upsampling's gain 4).
  Output: [B, H + pad0 + pad1 - 3, W + pad0 + pad1 - 3, C].
  """
  return _fir_1d(_fir_1d(x, 1, pad0, pad1, axis_gain), 2, pad0, pad1, axis_gain)


class PrunableLayerMixin:
  """TFMOT's ``PrunableLayer`` protocol from two lists of weight attribute names.

  ``_connections``: the weights Re-GAN prunes (kernels). ``_other_trainable``:
  the rest of the trainable weights, prunable only when the layer's
  ``prune_all`` is set (Re-GAN's StyleGAN2 code prunes every parameter). A layer
  without weights returns ``[]``: TFMOT then wraps it in an empty wrapper
  instead of refusing a whole-model ``prune_low_magnitude``.
  """

  _connections: Tuple[str, ...] = ()
  _other_trainable: Tuple[str, ...] = ()
  prune_all: bool = False

  def get_prunable_weights(self) -> List[tf.Variable]:
    names = self._connections + (self._other_trainable if self.prune_all else ())
    return [getattr(self, n) for n in names if getattr(self, n, None) is not None]


def check_odd_kernel_size(owner: str, kernel_size: Any) -> int:
  """``kernel_size`` (an int, or equal ints) as an odd int >= 1; 'same' padding must be centred."""
  if isinstance(kernel_size, (tuple, list)) and len(set(kernel_size)) == 1:
    kernel_size = kernel_size[0]
  if (not isinstance(kernel_size, int) or isinstance(kernel_size, bool) or kernel_size < 1
      or kernel_size % 2 != 1):
    raise ValueError(f"{owner}: kernel_size={kernel_size!r} must be an odd integer ('same' "
                     "padding is centred); ProGAN and StyleGAN2 use 3 and 1.")
  return kernel_size


def _check_gain(owner: str, arg: str, value: Any, fix: str) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
    raise ValueError(f"{owner}: {arg}={value!r} must be a number > 0; {fix}")
  return float(value)


@keras.saving.register_keras_serializable(package="regan_tf")
class PixelNorm(PrunableLayerMixin, keras.layers.Layer):
  """Normalizes the last axis to unit mean square: ``x / sqrt(mean_c(x^2) + 1e-8)``.

  ProGAN's pixelwise feature normalization (every pixel's feature vector, after
  each generator conv) and StyleGAN's normalization of z (ada's
  ``normalize_2nd_moment``). Computed in float32 (squares overflow float16
  quickly), returned in the input dtype. No weights.

  Input: [..., C]; output: same shape.
  """

  def call(self, inputs: tf.Tensor) -> tf.Tensor:
    x = tf.cast(inputs, tf.float32)
    x = x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=-1, keepdims=True) + _KARRAS_EPS)
    return tf.cast(x, inputs.dtype)

  def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
    return tf.TensorShape(input_shape)


@keras.saving.register_keras_serializable(package="regan_tf")
class MinibatchStdDev(PrunableLayerMixin, keras.layers.Layer):
  """Appends the minibatch standard deviation as extra feature maps (Karras et al. 2018, Sec. 3).

  The batch of B splits into M = B / G groups of G = min(group_size, B)
  examples, example ``b`` in group ``b mod M`` (the references' reshape to
  [G, M, ...]), and the channels into ``num_features`` parts. For each group
  and part: the standard deviation over the group's G examples of every
  feature and pixel (``sqrt(var + 1e-8)``, population variance), averaged over
  the pixels and the part's channels to one number, appended as a constant
  feature map to each of the group's examples. B must be divisible by G.
  Computed in float32. No weights.

  Args:
    group_size: G, >= 1 (ProGAN and rosinality's StyleGAN2: 4).
    num_features: appended maps, >= 1; must divide the channels (1 in both
      references' default configurations).

  Input: [B, H, W, C]; output: [B, H, W, C + num_features].
  """

  def __init__(self, group_size: int = 4, num_features: int = 1, **kwargs: Any):
    super().__init__(**kwargs)
    check_positive_int("MinibatchStdDev", "group_size", group_size,
                       "pass group_size=4 (the references).")
    check_positive_int("MinibatchStdDev", "num_features", num_features,
                       "pass num_features=1 (the references).")
    self.group_size = group_size
    self.num_features = num_features
    self.input_spec = keras.layers.InputSpec(ndim=4)

  def build(self, input_shape: Any) -> None:
    channels = tf.TensorShape(input_shape)[-1]
    if channels is not None and channels % self.num_features:
      raise ValueError(f"MinibatchStdDev {self.name!r}: {channels} channels are not divisible "
                       f"by num_features={self.num_features}; pass a divisor of {channels}.")
    super().build(input_shape)

  def call(self, inputs: tf.Tensor) -> tf.Tensor:
    static_batch = inputs.shape[0]
    if static_batch is not None:
      group = min(self.group_size, static_batch)
      if static_batch % group:
        raise ValueError(f"MinibatchStdDev {self.name!r}: batch size {static_batch} is not "
                         f"divisible by the group size min(group_size={self.group_size}, batch) = "
                         f"{group}; use a per-replica batch that is a multiple of {group}.")
    shape = tf.shape(inputs)
    batch, height, width, channels = shape[0], shape[1], shape[2], shape[3]
    group = tf.minimum(self.group_size, batch)
    f = self.num_features
    y = tf.reshape(tf.cast(inputs, tf.float32),
                   tf.stack([group, -1, height, width, f, channels // f]))
    y = y - tf.reduce_mean(y, axis=0, keepdims=True)
    y = tf.sqrt(tf.reduce_mean(tf.square(y), axis=0) + _KARRAS_EPS)  # [M, H, W, F, C/F]
    y = tf.reduce_mean(y, axis=[1, 2, 4])  # [M, F]
    # Example b = g * M + m gets group m's statistics.
    y = tf.tile(y[:, tf.newaxis, tf.newaxis, :], tf.stack([group, height, width, 1]))
    y.set_shape(inputs.shape[:-1].concatenate([f]))
    return tf.concat([inputs, tf.cast(y, inputs.dtype)], axis=-1)

  def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
    b, h, w, c = tf.TensorShape(input_shape).as_list()
    return tf.TensorShape([b, h, w, None if c is None else c + self.num_features])

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "group_size": self.group_size,
            "num_features": self.num_features}


@keras.saving.register_keras_serializable(package="regan_tf")
class EqualizedDense(PrunableLayerMixin, keras.layers.Layer):
  """Dense layer with equalized learning rate (Karras et al., ProGAN, ICLR 2018).

  ``y = act(x @ (W * weight_scale) + b * lr_multiplier)`` with
  ``weight_scale = gain * lr_multiplier / sqrt(in)``. The stored kernel
  ``W`` [in, units] is drawn from N(0, 1 / lr_multiplier^2) and the stored bias
  starts at ``bias_init``; the runtime scaling makes Adam's per-weight step
  sizes equal across layers (the lr multiplier makes them ``lr_multiplier``
  times smaller: StyleGAN's mapping network uses 0.01).
  The kernel variable is read in ``call`` (nothing cached), so a weight that
  Re-GAN or TFMOT masks in place is zero in the next forward pass.

  ``gain`` is the He gain folded into the weights (ProGAN: sqrt(2) before a
  leaky ReLU, 1 for a linear output); StyleGAN2 keeps it at 1 and applies the
  sqrt(2) after the activation instead (``activation='lrelu'``).

  Connections (``get_prunable_weights``): ``kernel``; with ``prune_all`` also
  ``bias``.

  Args:
    units: output width.
    gain: He gain, > 0.
    lr_multiplier: learning-rate multiplier, > 0.
    activation: 'linear' or 'lrelu' (leaky ReLU 0.2, times sqrt(2)).
    use_bias: add a bias.
    bias_init: initial stored bias (StyleGAN2's style affines start at 1).
    reshape: optional output shape without the batch, e.g. ``(4, 4, 512)``;
      its product must equal ``units``. The output is reshaped to it and the
      bias has one entry per *last* axis (per channel), as ProGAN's first
      generator layer. Needs a [B, in] input.
    prune_all: also expose the bias to pruning.
    **kwargs: ``keras.layers.Layer`` arguments (name, dtype).

  Input: [..., in]; output: [..., units], or [B, *reshape].
  """

  _connections = ("kernel",)
  _other_trainable = ("bias",)

  def __init__(self, units: int, *, gain: float = 1.0, lr_multiplier: float = 1.0,
               activation: str = "linear", use_bias: bool = True, bias_init: float = 0.0,
               reshape: Optional[Sequence[int]] = None, prune_all: bool = False, **kwargs: Any):
    super().__init__(**kwargs)
    owner = type(self).__name__
    check_positive_int(owner, "units", units, "pass the output width, e.g. units=512.")
    if reshape is not None:
      reshape = tuple(reshape)
      if not all(isinstance(d, int) and d > 0 for d in reshape) or math.prod(reshape) != units:
        raise ValueError(f"{owner}: reshape={reshape!r} must be positive integers whose "
                         f"product is units={units}; e.g. units=4*4*512 with reshape=(4, 4, 512).")
    self.gain = _check_gain(owner, "gain", gain, "pass sqrt(2) (ProGAN's hidden layers) or 1.0.")
    self.lr_multiplier = _check_gain(owner, "lr_multiplier", lr_multiplier,
                                     "pass 1.0, or 0.01 for StyleGAN's mapping network.")
    check_choice(owner, "activation", activation, ACTIVATIONS)
    self.units = units
    self.activation = activation
    self.use_bias = bool(use_bias)
    self.bias_init = float(bias_init)
    self.reshape = reshape
    self.prune_all = bool(prune_all)
    self.bias = None
    self.weight_scale: Optional[float] = None

  def build(self, input_shape: Any) -> None:
    shape = tf.TensorShape(input_shape)
    if shape.rank is None or shape[-1] is None:
      raise ValueError(f"{type(self).__name__} {self.name!r}: the last input axis must be known, "
                       f"got input shape {input_shape}.")
    if self.reshape and shape.rank != 2:
      raise ValueError(f"{type(self).__name__} {self.name!r}: reshape={self.reshape} needs a "
                       f"[B, in] input, got shape {shape}; flatten first.")
    fan_in = int(shape[-1])
    self.weight_scale = self.gain * self.lr_multiplier / math.sqrt(fan_in)
    self.kernel = self.add_weight(
        "kernel", shape=[fan_in, self.units],
        initializer=keras.initializers.RandomNormal(0.0, 1.0 / self.lr_multiplier))
    if self.use_bias:
      self.bias = self.add_weight("bias", shape=[self.reshape[-1] if self.reshape else self.units],
                                  initializer=keras.initializers.Constant(self.bias_init))
    self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: fan_in})
    super().build(input_shape)

  def _dense(self, x: tf.Tensor) -> tf.Tensor:
    # Read the variable now: pruning masks it in place between calls.
    y = tf.matmul(x, self.kernel * tf.cast(self.weight_scale, x.dtype))
    if self.reshape:
      y = tf.reshape(y, [-1, *self.reshape])
    if self.bias is not None:
      bias = self.bias if self.lr_multiplier == 1.0 else self.bias * self.lr_multiplier
      y = tf.nn.bias_add(y, tf.cast(bias, y.dtype))
    return activate(y, self.activation)

  def call(self, inputs: tf.Tensor) -> tf.Tensor:
    return self._dense(inputs)

  def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
    shape = tf.TensorShape(input_shape)
    if self.reshape:
      return tf.TensorShape([shape[0], *self.reshape])
    return shape[:-1].concatenate([self.units])

  def forward_flops(self, input_shape: Any, output_shape: Any) -> int:
    """Per-image FLOPs of the connections (``regan_tf.flops``): 2 * in * units per row.

    Connections only, as StyleGAN2's modulated layers count: the bias add is
    not pruned, so it stays out of the figure Re-GAN scales by density.
    """
    del output_shape
    rows = math.prod(int(d) for d in input_shape[1:-1])
    return 2 * int(input_shape[-1]) * self.units * rows

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "units": self.units, "gain": self.gain,
            "lr_multiplier": self.lr_multiplier, "activation": self.activation,
            "use_bias": self.use_bias, "bias_init": self.bias_init,
            "reshape": None if self.reshape is None else list(self.reshape),
            "prune_all": self.prune_all}


@keras.saving.register_keras_serializable(package="regan_tf")
class EqualizedConv2D(PrunableLayerMixin, keras.layers.Layer):
  """Convolution with equalized learning rate, optionally FIR-downsampling.

  ``y = act(conv(x, W * weight_scale) + b) * output_gain`` with
  ``weight_scale = gain / sqrt(k * k * in)``; the stored kernel
  [k, k, in, filters] ~ N(0, 1), the bias starts at zero. Stride 1 and 'same'
  padding; with ``down=True`` StyleGAN2's downsampling instead:
  :func:`fir_blur_2d` (padding ((p+1)//2, p//2), p = 2 + (k - 1)) then a
  stride-2 'valid' convolution (rosinality's ``ConvLayer(downsample=True)``).
  As :class:`EqualizedDense`, the kernel is read in ``call``.

  ``gain`` is ProGAN's He gain in the weights (sqrt(2) for hidden layers, 1 for
  to_rgb); ``output_gain`` is StyleGAN2's multiplier after the activation
  (sqrt(1/2) on both branches of a residual block).

  Connections (``get_prunable_weights``): ``kernel``; with ``prune_all`` also
  ``bias``.

  Args:
    filters: output channels.
    kernel_size: odd int (ProGAN 3 and 1; StyleGAN2's D 3 and 1).
    gain: He gain, > 0.
    down: downsample x2.
    use_bias: add a bias.
    activation: 'linear' or 'lrelu' (leaky ReLU 0.2, times sqrt(2)).
    output_gain: multiplier of the output, > 0.
    prune_all: also expose the bias to pruning (Re-GAN's ProGAN code prunes
      every generator parameter).
    **kwargs: ``keras.layers.Layer`` arguments (name, dtype).

  Input: [B, H, W, in]; output: [B, H', W', filters], H' = H/2 with ``down``.
  """

  _connections = ("kernel",)
  _other_trainable = ("bias",)

  def __init__(self, filters: int, kernel_size: int, *, gain: float = 1.0, down: bool = False,
               use_bias: bool = True, activation: str = "linear", output_gain: float = 1.0,
               prune_all: bool = False, **kwargs: Any):
    super().__init__(**kwargs)
    owner = type(self).__name__
    check_positive_int(owner, "filters", filters, "pass the output channels.")
    kernel_size = check_odd_kernel_size(owner, kernel_size)
    self.gain = _check_gain(owner, "gain", gain, "pass sqrt(2) (ProGAN's hidden layers) or 1.0.")
    self.output_gain = _check_gain(owner, "output_gain", output_gain,
                                   "pass 1.0, or sqrt(0.5) for a residual branch.")
    check_choice(owner, "activation", activation, ACTIVATIONS)
    self.filters = filters
    self.kernel_size = kernel_size
    self.down = bool(down)
    self.use_bias = bool(use_bias)
    self.activation = activation
    self.prune_all = bool(prune_all)
    self.bias = None
    self.weight_scale: Optional[float] = None

  def build(self, input_shape: Any) -> None:
    shape = tf.TensorShape(input_shape)
    if shape.rank != 4 or shape[-1] is None:
      raise ValueError(f"{type(self).__name__} {self.name!r}: expects [B, H, W, C] with known C, "
                       f"got input shape {input_shape}.")
    if self.down and any(d is not None and d % 2 for d in shape[1:3]):
      raise ValueError(f"{self.name}: down=True needs even height and width; got {shape}.")
    k, fan_in = self.kernel_size, int(shape[-1])
    self.weight_scale = self.gain / math.sqrt(k * k * fan_in)
    self.kernel = self.add_weight("kernel", shape=(k, k, fan_in, self.filters),
                                  initializer=keras.initializers.RandomNormal(0.0, 1.0))
    if self.use_bias:
      self.bias = self.add_weight("bias", shape=(self.filters,), initializer="zeros")
    self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: fan_in})
    super().build(input_shape)

  def call(self, inputs: tf.Tensor) -> tf.Tensor:
    # Read the variable now: pruning masks it in place between calls.
    weight = self.kernel * tf.cast(self.weight_scale, inputs.dtype)
    if self.down:
      p = len(FIR_TAPS) - 2 + (self.kernel_size - 1)
      y = tf.nn.conv2d(fir_blur_2d(inputs, (p + 1) // 2, p // 2), weight, strides=2,
                       padding="VALID")
    else:
      y = tf.nn.conv2d(inputs, weight, strides=1, padding="SAME")
    if self.bias is not None:
      y = tf.nn.bias_add(y, tf.cast(self.bias, y.dtype))
    y = activate(y, self.activation)
    if self.output_gain != 1.0:
      y = y * tf.cast(self.output_gain, y.dtype)
    return y

  def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
    b, h, w, _ = tf.TensorShape(input_shape).as_list()
    half = lambda d: None if d is None else d // 2  # noqa: E731
    return tf.TensorShape([b, half(h), half(w), self.filters] if self.down
                          else [b, h, w, self.filters])

  def forward_flops(self, input_shape: Any, output_shape: Any) -> int:
    """Per-image FLOPs of the connections: 2 * k * k * in * filters per output position.

    As :meth:`EqualizedDense.forward_flops`: no bias add, and the FIR filter of
    ``down`` is not a connection either.
    """
    positions = int(output_shape[1]) * int(output_shape[2])
    return 2 * self.kernel_size**2 * int(input_shape[-1]) * self.filters * positions

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
            "gain": self.gain, "down": self.down, "use_bias": self.use_bias,
            "activation": self.activation, "output_gain": self.output_gain,
            "prune_all": self.prune_all}
