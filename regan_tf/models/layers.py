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

All layers are registered as Keras serializables under the package ``regan_tf``
and round-trip through ``get_config`` / ``from_config``.
"""

from __future__ import annotations

from typing import Any

from regan_tf.compat import keras, tf

__all__ = [
    "GlobalSumPooling2D",
    "NearestUpsample2D",
    "SNConv2D",
    "SNDense",
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

  def _sn_config(self) -> dict[str, Any]:
    return {"power_iterations": self.power_iterations}


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

  def build(self, input_shape: Any) -> None:
    super().build(input_shape)
    self._build_u(self.filters)

  def call(self, inputs: tf.Tensor, training: Any = None) -> tf.Tensor:
    outputs = self.convolution_op(inputs, self._normalized_kernel(training))
    if self.use_bias:
      outputs = tf.nn.bias_add(outputs, self.bias)
    if self.activation is not None:
      outputs = self.activation(outputs)
    return outputs

  def get_config(self) -> dict[str, Any]:
    return {**super().get_config(), **self._sn_config()}


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

  def build(self, input_shape: Any) -> None:
    super().build(input_shape)
    self._build_u(self.units)

  def call(self, inputs: tf.Tensor, training: Any = None) -> tf.Tensor:
    kernel = self._normalized_kernel(training)
    if inputs.shape.rank == 2:
      outputs = tf.matmul(inputs, kernel)
    else:
      outputs = tf.tensordot(inputs, kernel, axes=[[-1], [0]])
    if self.use_bias:
      outputs = tf.nn.bias_add(outputs, self.bias)
    if self.activation is not None:
      outputs = self.activation(outputs)
    return outputs

  def get_config(self) -> dict[str, Any]:
    return {**super().get_config(), **self._sn_config()}


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
