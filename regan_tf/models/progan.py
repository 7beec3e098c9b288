"""Progressive GAN (ProGAN): equalized learning rate, PixelNorm, minibatch stddev, fade-in.

Architecture of Karras et al., "Progressive Growing of GANs for Improved Quality,
Stability, and Variation" (ICLR 2018), as its official TensorFlow code builds it
(github.com/tkarras/progressive_growing_of_gans, ``networks.py``: ``G_paper`` /
``D_paper``, ``train.py``: ``process_reals`` / ``TrainingSchedule``). Re-GAN
(Saxena et al., "Re-GAN: Data-Efficient GANs Training via Architectural
Reconfiguration", CVPR 2023; github.com/IntellicentAI-Lab/Re-GAN, ``ProGAN/``)
trains a PyTorch port of it on CIFAR-10 (stages 4, 8, 16, 32 for 2, 2, 2, 8 epochs,
batches 128, 128, 128, 64, each stage fading in over its whole length; see
:class:`regan_tf.progressive.GrowthSchedule`) and prunes the generator in the final (32x32) stage only.

Widths: ``nf(i) = min(fmap_base // 2**i, fmap_max)``; the block at resolution
``2**k`` has ``nf(k - 1)`` channels (defaults 8192 / 512: 512 channels up to 32x32,
then 256, 128, 64 at 64, 128, 256; the reference's values).

Generator (R = image_size, C = channels)::

    z [B, z_dim] -> latent_norm (PixelNorm)
      -> b4_dense (equalized dense to 4x4xnf(1), gain sqrt(2)/4, one bias per channel)
         -> leaky ReLU 0.2 -> PixelNorm
      -> b4_conv 3x3 -> leaky ReLU -> PixelNorm                      features at 4x4
      -> for r = 8 .. R: b{r}_up (nearest x2)
                         -> b{r}_conv0 3x3 -> lrelu -> PixelNorm
                         -> b{r}_conv1 3x3 -> lrelu -> PixelNorm    features at r x r
      -> to_rgb_{R} 1x1 (gain 1) -> output (tanh or linear, float32)

Discriminator::

    images [B, R, R, C] -> from_rgb_{R} 1x1 -> leaky ReLU 0.2
      -> for r = R .. 8: b{r}_conv0 3x3 (nf(k-1)) -> lrelu -> b{r}_conv1 3x3 (nf(k-2)) -> lrelu
                         -> b{r}_pool (2x2 average)
      -> b4_mbstd (minibatch stddev, one extra feature map) -> b4_conv 3x3 -> lrelu
      -> flatten -> b4_dense (nf(0)) -> lrelu -> logits (equalized dense to 1, gain 1, float32)

Equalized learning rate: every weight is drawn from N(0, 1) and multiplied at run
time by ``gain / sqrt(fan_in)`` (He's constant, gain sqrt(2) unless stated), so
Adam's per-weight step sizes are equal across layers. Biases start at zero.
The generator's first dense uses gain sqrt(2)/4, as the reference does ("to match
the original Theano implementation"): with z_dim 512 its scale equals that of a
4x4 transposed conv with fan-in 16 * 512, which is what the Re-GAN port's
``EqualConvTranspose2d`` computes.

Progressive growing
-------------------
:class:`ProGAN` owns the layers of every resolution 4 .. R. ``generator(stage)``
and ``discriminator(stage)`` return Functional models for stage ``s``
(resolution ``4 * 2**s``) made of those *shared* layer objects, so what a stage
learns carries over to the next. For ``s >= 1`` the models contain the fade-in
of the new block, controlled by one non-trainable variable ``ProGAN.alpha``
shared by G and D (a trainer assigns it each step; reading a variable does not
retrace a compiled function)::

    G_s(z) = out((1 - alpha) * up(to_rgb_{s-1}(h_{s-1})) + alpha * to_rgb_s(block_s(h_{s-1})))
    D_s(x) = D_rest((1 - alpha) * from_rgb_{s-1}(pool(x)) + alpha * block_s(from_rgb_s(x)))

With alpha = 1 they compute the stage's plain network (``fade=False`` builds it
without the skip branch). Real images enter stage ``s`` through
:func:`stage_reals`, which also fades them, as the reference's ``process_reals``
does. :class:`regan_tf.progressive.GrowthSchedule` maps a training step to
``(stage, alpha)``.

:func:`build` returns the *final* stage's plain networks and, as
``GAN.progressive``, the :class:`ProGAN` itself. Without a growth schedule the
trainer trains the final stage like any other architecture. With one
(``train.growth = @growth``, :func:`regan_tf.progressive.growth_schedule`) it grows
from 4x4: it trains :meth:`ProGAN.growing_generator` (every stage's outputs in one model, so
Re-GAN's wrappers and the EMA copy cover all stages at once), cuts each step's
stage out of it with :func:`stage_output`, and starts Re-GAN's warm-up at the
final stage by default (as the Re-GAN reference prunes only there); see
``regan_tf.progressive``.

Parameter counts (trainable weights; C = 3, defaults fmap_base 8192, fmap_max 512)
---------------------------------------------------------------------------------
The reference formula, per resolution 2**k (f = nf(k - 1), f' = nf(k - 2)):

* G: b4_dense z_dim * 16 * nf(1) + nf(1); b4_conv 9 * nf(1)**2 + nf(1); per
  r >= 8: 9 * f' * f + f + 9 * f * f + f; to_rgb 3 * f + 3 per resolution.
* D: from_rgb 3 * f + f per resolution; per r >= 8: 9 * f * f + f + 9 * f * f' + f';
  b4_conv 9 * (nf(1) + 1) * nf(1) + nf(1); b4_dense 16 * nf(1) * nf(0) + nf(0);
  logits nf(0) + 1.

=============================  =============  ============  ========================
network (z_dim 512)             final model    all stages    published
=============================  =============  ============  ========================
G 32x32 (CIFAR-10, Re-GAN)      20,715,011     20,719,628    23,079,436 Re-GAN port (*)
D 32x32                         20,720,641     20,726,785    20,726,785 Re-GAN port (*)
G 256x256                       23,036,995     23,044,309
D 256x256                       23,042,625     23,052,353
G 1024x1024 (formula only)      23,071,507     23,079,115    23.1M (paper, Table 2)
D 1024x1024 (formula only)      23,077,137     23,087,249    23.1M (paper, Table 2)
=============================  =============  ============  ========================

"final model" is what :func:`build` returns (only the final to_rgb / from_rgb);
"all stages" adds the to_rgb / from_rgb layers of the lower resolutions, which
:class:`ProGAN` owns for growing and the reference networks also hold. Our
models match the reference formula exactly (``tests/test_models_progan.py``
checks the built models against it at 16, 32 and 256). At 1024x1024 the formula
gives 23.08M (G) and 23.09M (D) with every stage's to_rgb / from_rgb, 23.07M and
23.08M without: both match the paper's 23.1M each. (*) The Re-GAN port
(``ProGAN/model.py`` at commit 785135c, BakingBrains' implementation, run with 512
channels and z 512 by ``ProGAN/main.py``) has the same discriminator
count, 20,726,785 (its final block is a 4x4 valid conv, i.e. our b4_dense); its
generator has one more 3x3 conv at 4x4 (a transposed 4x4 conv, then two 3x3
convs) and hence 2,359,808 more weights: 23,079,436. We follow the paper's
4x4 block (dense, one 3x3 conv). The paper's own CIFAR-10 run used much smaller
networks (fmap_base 4096, fmap_max 128, z 128: G 1,295,747, D 1,297,153 in the
final model); pass those to reproduce it.

Deviations from the references, on purpose
------------------------------------------
* Output activation: ``output_activation='tanh'`` (default) or ``'linear'``.
  The paper's G is linear; the Re-GAN port applies tanh (at every stage but
  4x4), and this library's contract is images in [-1, 1] (the trainer's reals,
  the export signature), so tanh is the default. Pass ``'linear'`` for the paper.
  tanh is applied after the fade-in blend, as in the Re-GAN port.
* The paper's network; the Re-GAN port differs in details we do not copy:
  leaky ReLU 0.1 (paper 0.2), PixelNorm before the activation and also in D,
  no latent normalization, no activation after from_rgb, to_rgb gain sqrt(2)
  and a minibatch stddev over the whole batch (paper: groups of 4).
* Nearest upsampling then a 3x3 conv, and a 3x3 conv then 2x2 average pooling,
  where the reference fuses them into one strided (transposed) conv with a
  4x4 kernel for speed (``fused_scale``); the results are identical up to
  float rounding and the parameter counts are the same.
* NHWC (channels last), the TensorFlow default, instead of the reference's NCHW.

Training differences from the Re-GAN port (the trainer's, listed with file:line in
docs/FIDELITY.md): the port's G step scores the D step's fakes again, the trainer
draws fresh latents; the port's CIFAR loader has no random flips (gin/progan_cifar.gin
sets none); the port prunes every generator parameter, which ``prune_all_weights=True``
reproduces.

Losses: the paper trains WGAN-GP (lambda 10) with a drift term
0.001 * E[D(x)^2] (``regan_tf.losses.drift_penalty``), Adam(1e-3, 0.0, 0.99),
n_critic 1, batch 16 (the v2 presets: 128 up to 16x16, then 64, 32, 16, 8).
"""

from __future__ import annotations

import itertools
import math
import types
import weakref
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from regan_tf.compat import keras, tf
from regan_tf.models import GAN, check_builder_args
from regan_tf.models import layers as gan_layers
# The equalized layers, PixelNorm and minibatch stddev are shared with StyleGAN2.
from regan_tf.models.layers import EqualizedConv2D, EqualizedDense, MinibatchStdDev, PixelNorm

__all__ = [
    "FadeIn",
    "ProGAN",
    "build",
    "build_progressive",
    "shared_alpha",
    "stage_output",
    "stage_reals",
]

_SQRT2 = math.sqrt(2.0)
IMAGE_SIZES = tuple(2**k for k in range(3, 11))  # 8 .. 1024
_OUTPUT_ACTIVATIONS = ("tanh", "linear")
_LRELU_SLOPE = 0.2
_PACKAGE = "regan_tf.progan"


# ----------------------------------------------------------------------------
# Fade-in
# ----------------------------------------------------------------------------


# Fade-in variables by key, so that a clone of a fading model (keras.models.clone_model,
# as in regan_tf.pruning.prune_generator and regan_tf.ema) keeps reading the same alpha.
_SHARED_ALPHAS: "weakref.WeakValueDictionary[str, tf.Variable]" = weakref.WeakValueDictionary()
_ALPHA_IDS = itertools.count()


def shared_alpha(key: str) -> tf.Variable:
  """The process-wide fade-in variable named ``key`` (created at 1.0 if absent).

  A non-trainable float32 scalar. Under a ``tf.distribute`` strategy it is
  created in the current scope, written only from the host (cross-replica
  context), with ``ONLY_FIRST_REPLICA`` aggregation. Held weakly: it lives as
  long as a layer (or the :class:`ProGAN`) holds it.
  """
  variable = _SHARED_ALPHAS.get(key)
  if variable is None:
    with tf.init_scope():
      variable = tf.Variable(1.0, trainable=False, dtype=tf.float32, name="fade_alpha",
                             synchronization=tf.VariableSynchronization.ON_WRITE,
                             aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    _SHARED_ALPHAS[key] = variable
  return variable


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FadeIn(keras.layers.Layer):
  """``(1 - alpha) * a + alpha * b`` with alpha a shared, non-trainable variable.

  alpha is clipped to [0, 1] (as the reference's ``lerp_clip``); at alpha = 1
  the output is exactly ``b``, at 0 exactly ``a``. The variable is
  :func:`shared_alpha` ``(alpha_key)``: every FadeIn with the same key (the
  generator's and the discriminator's of one :class:`ProGAN`, and their
  clones in this process) reads the same variable, so one ``assign`` moves
  them all, without retracing a compiled step. The config stores the key; a
  model rebuilt in another process gets a fresh variable (value 1.0) unless a
  checkpoint restores it (it is one of the layer's non-trainable weights).

  Args:
    alpha_key: the key of the shared variable.

  Input: ``[a, b]``, two tensors of the same shape; output: that shape.
  """

  def __init__(self, alpha_key: str, **kwargs: Any):
    super().__init__(**kwargs)
    if not isinstance(alpha_key, str) or not alpha_key:
      raise ValueError(f"FadeIn: alpha_key={alpha_key!r} must be a non-empty string naming the "
                       "shared alpha variable (ProGAN passes its own).")
    self.alpha_key = alpha_key
    self.alpha = shared_alpha(alpha_key)  # tracked: a non-trainable weight of the layer

  def call(self, inputs: Sequence[tf.Tensor]) -> tf.Tensor:
    a, b = inputs
    alpha = tf.cast(tf.clip_by_value(self.alpha, 0.0, 1.0), a.dtype)
    return (1.0 - alpha) * a + alpha * b

  def compute_output_shape(self, input_shape: Any) -> tf.TensorShape:
    return tf.TensorShape(input_shape[0])

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "alpha_key": self.alpha_key}


def _check_stage_images(images: tf.Tensor, resolution: int, where: str) -> int:
  size = images.shape[1]
  if images.shape.rank != 4 or size is None or images.shape[2] != size:
    raise ValueError(f"{where}: images must be [B, S, S, C] with a known square size S, got "
                     f"shape {images.shape}.")
  factor = size // resolution
  if size % resolution or factor & (factor - 1):
    raise ValueError(f"{where}: image size {size} is not a power-of-two multiple of the stage "
                     f"resolution {resolution}; pass images at the final resolution (or any "
                     f"power-of-two multiple of {resolution}).")
  return factor


def stage_reals(images: tf.Tensor, stage: int, alpha: Union[float, tf.Tensor]) -> tf.Tensor:
  """Real images as the networks of ``stage`` see them (ProGAN's ``process_reals``).

  ``x`` = ``images`` average-pooled to the stage resolution ``r = 4 * 2**stage``
  (a box filter, as the reference's dataset levels of detail). For a stage
  >= 1 the reals are faded like the networks::

      (1 - alpha) * up2(pool2(x)) + alpha * x

  (nearest upsampling), so during a fade-in D compares fakes and reals with
  the same mix of detail; at alpha = 1 this is exactly ``x``. Stage 0 has no
  fade and ignores ``alpha``. Pure: no variables, usable in a compiled step.

  Args:
    images: [B, S, S, C] with S = r * 2**k, k >= 0 (the training data at its
      final resolution).
    stage: stage index s >= 0.
    alpha: fade-in weight in [0, 1] (a float, tensor or ``ProGAN.alpha``).

  Returns:
    [B, r, r, C] in the images' float dtype.
  """
  if not isinstance(stage, int) or isinstance(stage, bool) or stage < 0:
    raise ValueError(f"stage_reals: stage={stage!r} must be an integer >= 0 (stage s is "
                     "resolution 4 * 2**s).")
  images = tf.convert_to_tensor(images)
  if not images.dtype.is_floating:
    raise ValueError(f"stage_reals: images have dtype {images.dtype.name}; pass floats in "
                     "[-1, 1] (the data pipeline's output).")
  resolution = 4 * 2**stage
  factor = _check_stage_images(images, resolution, "stage_reals")
  x = images
  if factor > 1:
    x = tf.nn.avg_pool2d(x, factor, factor, "VALID")
  if stage == 0:
    return x
  low = tf.nn.avg_pool2d(x, 2, 2, "VALID")
  low = tf.repeat(tf.repeat(low, 2, axis=1), 2, axis=2)  # nearest x2; no gradient is needed
  alpha = tf.cast(tf.clip_by_value(tf.cast(alpha, tf.float32), 0.0, 1.0), x.dtype)
  return (1.0 - alpha) * low + alpha * x


# ----------------------------------------------------------------------------
# The progressive networks
# ----------------------------------------------------------------------------


class ProGAN(tf.Module):
  """All layers of a progressive GAN, and its per-stage generators and discriminators.

  Stage ``s`` (0 .. ``num_stages - 1``) works at resolution ``4 * 2**s``; the
  last stage at ``image_size``. The layers of every resolution are created and
  built in ``__init__`` (in a fixed order, so a seeded run initializes the
  same weights whichever stage is requested first). The models returned by
  :meth:`generator` / :meth:`discriminator` are cached Functional models over
  these shared layers; training one stage's model trains the layers every
  other stage uses.

  Attributes:
    alpha: the fade-in variable (float32 [], non-trainable, starts at 1.0)
      every fading model reads. Assign it on the host before a step.
    generator_layers, discriminator_layers: the weight-holding layers by name.
    num_stages: log2(image_size) - 1.

  A ``tf.Module``: ``tf.train.Checkpoint(progan=p)`` saves the layers of every
  stage and ``alpha`` (not the cached models, which hold the same variables),
  so a growing run can checkpoint one object whatever stage it is in.
  """

  def __init__(self, *, image_size: int, channels: int = 3, z_dim: int = 512,
               fmap_base: int = 8192, fmap_max: int = 512, output_activation: str = "tanh",
               mbstd_group_size: int = 4, prune_all_weights: bool = False, name: str = "progan"):
    """Creates the layers of every stage. Arguments as :func:`build`."""
    where = "progan.build"
    check_builder_args(build, locals(), image_sizes=IMAGE_SIZES,
                       resize_fix="Resize the data to one (32 for CIFAR-10, 64-256 for few-shot folders).",
                       positive=("fmap_base", "fmap_max"))
    if output_activation not in _OUTPUT_ACTIVATIONS:
      raise ValueError(f"{where}: output_activation={output_activation!r} is not one of "
                       f"{_OUTPUT_ACTIVATIONS}; pass 'tanh' (images in [-1, 1], the Re-GAN "
                       "port) or 'linear' (the paper).")
    if (not isinstance(mbstd_group_size, int) or isinstance(mbstd_group_size, bool)
        or mbstd_group_size == 1 or mbstd_group_size < 0):
      raise ValueError(f"{where}: mbstd_group_size={mbstd_group_size!r} must be 0 (no minibatch "
                       "stddev) or an integer >= 2; pass 4 (the reference).")
    super().__init__(name=name)
    self.image_size = image_size
    self.channels = channels
    self.z_dim = z_dim
    self.fmap_base = fmap_base
    self.fmap_max = fmap_max
    self.output_activation = output_activation
    self.mbstd_group_size = mbstd_group_size
    self.prune_all_weights = bool(prune_all_weights)
    self.num_stages = int(math.log2(image_size)) - 1
    self.alpha_key = f"progan_alpha_{next(_ALPHA_IDS)}"
    self.alpha = shared_alpha(self.alpha_key)
    self.generator_layers = self._make_generator_layers()
    self.discriminator_layers = self._make_discriminator_layers()
    # A plain object, so neither checkpoints nor tf.Module's variable walk see the
    # models (their layers are tracked above; which models exist depends on use).
    self._cache = types.SimpleNamespace(models={})

  # ------------------------------------------------------------ structure ---

  def nf(self, i: int) -> int:
    """Feature maps ``min(fmap_base // 2**i, fmap_max)`` (the block at 2**k uses nf(k - 1))."""
    return max(1, min(self.fmap_base // 2**i, self.fmap_max))

  def resolution(self, stage: int) -> int:
    """Image size of ``stage``: 4 * 2**stage."""
    self._check_stage(stage)
    return 4 * 2**stage

  def _check_stage(self, stage: Any) -> None:
    if (not isinstance(stage, int) or isinstance(stage, bool)
        or not 0 <= stage < self.num_stages):
      raise ValueError(f"stage={stage!r} is out of range for image_size={self.image_size}: "
                       f"stages are 0 (4x4) .. {self.num_stages - 1} ({self.image_size}x"
                       f"{self.image_size}).")

  def _width(self, resolution: int) -> int:
    return self.nf(int(math.log2(resolution)) - 1)

  def _resolutions(self) -> List[int]:
    return [4 * 2**s for s in range(self.num_stages)]

  @staticmethod
  def _built_layers(make: Callable[[Callable[..., None]], None]) -> Dict[str, keras.layers.Layer]:
    """The layers ``make(add)`` passes to ``add(layer, input_shape)``, built in that order, by name."""
    made: Dict[str, keras.layers.Layer] = {}

    def add(layer: keras.layers.Layer, input_shape: Tuple[Optional[int], ...]) -> None:
      layer.build(input_shape)  # now, so that a seeded run draws the same weights
      made[layer.name] = layer

    make(add)
    return made

  def _make_generator_layers(self) -> Dict[str, keras.layers.Layer]:
    return self._built_layers(self._generator_layers)

  def _make_discriminator_layers(self) -> Dict[str, keras.layers.Layer]:
    return self._built_layers(self._discriminator_layers)

  def _generator_layers(self, add: Callable[..., None]) -> None:
    f4, every = self._width(4), self.prune_all_weights
    add(EqualizedDense(16 * f4, gain=_SQRT2 / 4, reshape=(4, 4, f4), prune_all=every, name="b4_dense"),
        (None, self.z_dim))
    add(EqualizedConv2D(f4, 3, gain=_SQRT2, prune_all=every, name="b4_conv"), (None, 4, 4, f4))
    for r in self._resolutions()[1:]:
      cin, cout = self._width(r // 2), self._width(r)
      add(EqualizedConv2D(cout, 3, gain=_SQRT2, prune_all=every, name=f"b{r}_conv0"), (None, r, r, cin))
      add(EqualizedConv2D(cout, 3, gain=_SQRT2, prune_all=every, name=f"b{r}_conv1"), (None, r, r, cout))
    for r in self._resolutions():
      add(EqualizedConv2D(self.channels, 1, gain=1.0, prune_all=every, name=f"to_rgb_{r}"),
          (None, r, r, self._width(r)))

  def _discriminator_layers(self, add: Callable[..., None]) -> None:
    for r in self._resolutions():
      add(EqualizedConv2D(self._width(r), 1, gain=_SQRT2, name=f"from_rgb_{r}"),
          (None, r, r, self.channels))
    for r in self._resolutions()[1:]:
      cin, cout = self._width(r), self._width(r // 2)
      add(EqualizedConv2D(cin, 3, gain=_SQRT2, name=f"b{r}_conv0"), (None, r, r, cin))
      add(EqualizedConv2D(cout, 3, gain=_SQRT2, name=f"b{r}_conv1"), (None, r, r, cin))
    f4 = self._width(4)
    extra = 1 if self.mbstd_group_size else 0
    add(EqualizedConv2D(f4, 3, gain=_SQRT2, name="b4_conv"), (None, 4, 4, f4 + extra))
    add(EqualizedDense(self.nf(0), gain=_SQRT2, name="b4_dense"), (None, 16 * f4))
    add(EqualizedDense(1, gain=1.0, dtype="float32", name="logits"), (None, self.nf(0)))

  @property
  def generator_variables(self) -> List[tf.Variable]:
    """Trainable variables of the generator layers of every stage (for an optimizer's build)."""
    return [v for layer in self.generator_layers.values() for v in layer.trainable_variables]

  @property
  def discriminator_variables(self) -> List[tf.Variable]:
    """Trainable variables of the discriminator layers of every stage."""
    return [v for layer in self.discriminator_layers.values() for v in layer.trainable_variables]

  # --------------------------------------------------------------- models ---

  def generator(self, stage: int, fade: bool = True) -> keras.Model:
    """The generator of ``stage``: z float32 [B, z_dim] -> images float32 [B, r, r, C].

    With ``fade`` (and stage >= 1) the output blends the upsampled previous
    resolution's image with the new block's by :attr:`alpha`; without it, the
    stage's plain network. Cached: the same call returns the same model.
    """
    return self._stage_model(self._build_generator, stage, fade)

  def discriminator(self, stage: int, fade: bool = True) -> keras.Model:
    """The discriminator of ``stage``: images [B, r, r, C] -> logits float32 [B, 1].

    With ``fade`` (and stage >= 1) the new block's features are blended with
    the previous resolution's ``from_rgb`` of the 2x2-average-pooled input by
    :attr:`alpha`. B must be a multiple of min(mbstd_group_size, B).
    """
    return self._stage_model(self._build_discriminator, stage, fade)

  def _stage_model(self, build: Callable[[int, bool], keras.Model], stage: int,
                   fade: bool) -> keras.Model:
    # One model per (network, stage, fade), built on first use: every caller of a
    # stage gets the same object (its compiled functions are not traced twice).
    self._check_stage(stage)
    fade = bool(fade) and stage > 0  # stage 0 has nothing to fade from
    key = (build.__name__, stage, fade)
    if key not in self._cache.models:
      self._cache.models[key] = build(stage, fade)
    return self._cache.models[key]

  def _g_conv(self, x: tf.Tensor, name: str) -> tf.Tensor:
    x = self.generator_layers[name](x)
    x = keras.layers.LeakyReLU(_LRELU_SLOPE, name=f"{name}_act")(x)
    return PixelNorm(name=f"{name}_norm")(x)

  def _g_input_and_4x4(self) -> Tuple[tf.Tensor, tf.Tensor]:
    # z and the 4x4 block's features, shared by every stage's generator.
    z = keras.Input(shape=(self.z_dim,), dtype="float32", name="z")
    x = PixelNorm(name="latent_norm")(z)
    x = self._g_conv(x, "b4_dense")
    return z, self._g_conv(x, "b4_conv")

  def _g_block(self, x: tf.Tensor, r: int) -> tf.Tensor:
    # The block that doubles the resolution to r: upsample, two 3x3 convs.
    x = gan_layers.NearestUpsample2D(2, name=f"b{r}_up")(x)
    x = self._g_conv(x, f"b{r}_conv0")
    return self._g_conv(x, f"b{r}_conv1")

  def _build_generator(self, stage: int, fade: bool) -> keras.Model:
    layers = self.generator_layers
    z, x = self._g_input_and_4x4()
    previous = x
    for r in self._resolutions()[1:stage + 1]:
      previous = x
      x = self._g_block(x, r)
    r = 4 * 2**stage
    rgb = layers[f"to_rgb_{r}"](x)
    if fade:
      old = layers[f"to_rgb_{r // 2}"](previous)
      old = gan_layers.NearestUpsample2D(2, name=f"fade_{r}_up")(old)
      rgb = FadeIn(self.alpha_key, name=f"fade_{r}")([old, rgb])
    images = keras.layers.Activation(self.output_activation, dtype="float32", name="output")(rgb)
    suffix = "_fade" if fade else ""
    return keras.Model(z, images, name=f"generator_{r}x{r}{suffix}")

  def growing_generator(self) -> keras.Model:
    """One Functional generator with the outputs of every stage, for a growing run.

    z float32 [B, z_dim] -> a list of images float32 [B, r, r, C], one output
    per :meth:`output_name`: for each stage ``s`` its fade-in output (``s >= 1``)
    and its plain output, in stage order. It computes exactly what
    :meth:`generator` ``(s, fade)`` computes, over the same layers, but as one
    model: ``regan_tf.pruning.prune_generator`` and ``regan_tf.ema`` clone it
    whole, so the wrapped (or averaged) layers stay shared between stages, and
    :func:`stage_output` cuts the model of one stage out of the clone. Cached.
    """
    key = ("growing_generator",)
    if key not in self._cache.models:
      self._cache.models[key] = self._build_growing_generator()
    return self._cache.models[key]

  def output_name(self, stage: int, fade: bool) -> str:
    """The name of stage ``stage``'s output in :meth:`growing_generator` (fade only for s >= 1)."""
    r = self.resolution(stage)
    return f"output_{r}_fade" if fade and stage > 0 else f"output_{r}"

  def _build_growing_generator(self) -> keras.Model:
    layers = self.generator_layers
    z, x = self._g_input_and_4x4()
    rgb = layers["to_rgb_4"](x)
    outputs = [self._output(rgb, self.output_name(0, False))]
    for stage, r in enumerate(self._resolutions()[1:], start=1):
      previous_rgb = rgb
      x = self._g_block(x, r)
      rgb = layers[f"to_rgb_{r}"](x)
      old = gan_layers.NearestUpsample2D(2, name=f"fade_{r}_up")(previous_rgb)
      faded = FadeIn(self.alpha_key, name=f"fade_{r}")([old, rgb])
      outputs.append(self._output(faded, self.output_name(stage, True)))
      outputs.append(self._output(rgb, self.output_name(stage, False)))
    return keras.Model(z, outputs, name=f"generator_growing_{self.image_size}")

  def _output(self, rgb: tf.Tensor, name: str) -> tf.Tensor:
    return keras.layers.Activation(self.output_activation, dtype="float32", name=name)(rgb)

  def _d_conv(self, x: tf.Tensor, name: str, act_name: Optional[str] = None) -> tf.Tensor:
    x = self.discriminator_layers[name](x)
    return keras.layers.LeakyReLU(_LRELU_SLOPE, name=act_name or f"{name}_act")(x)

  def _build_discriminator(self, stage: int, fade: bool) -> keras.Model:
    r = 4 * 2**stage
    images = keras.Input(shape=(r, r, self.channels), name="images")
    x = self._d_conv(images, f"from_rgb_{r}")
    for i, res in enumerate(self._resolutions()[stage:0:-1]):
      x = self._d_conv(x, f"b{res}_conv0")
      x = self._d_conv(x, f"b{res}_conv1")
      x = keras.layers.AveragePooling2D(2, name=f"b{res}_pool")(x)
      if fade and i == 0:
        skip = keras.layers.AveragePooling2D(2, name=f"fade_{r}_pool")(images)
        skip = self._d_conv(skip, f"from_rgb_{r // 2}", act_name=f"fade_{r}_from_rgb_act")
        x = FadeIn(self.alpha_key, name=f"fade_{r}")([skip, x])
    if self.mbstd_group_size:
      x = MinibatchStdDev(self.mbstd_group_size, name="b4_mbstd")(x)
    x = self._d_conv(x, "b4_conv")
    x = keras.layers.Flatten(name="b4_flatten")(x)
    x = self._d_conv(x, "b4_dense")
    logits = self.discriminator_layers["logits"](x)
    suffix = "_fade" if fade else ""
    return keras.Model(images, logits, name=f"discriminator_{r}x{r}{suffix}")

  def validate_schedule(self, schedule: "regan_tf.progressive.GrowthSchedule") -> None:
    """Raises ValueError unless ``schedule`` has one entry per stage of this ProGAN."""
    if schedule.num_stages != self.num_stages:
      raise ValueError(f"the growth schedule has {schedule.num_stages} stages but "
                       f"image_size={self.image_size} has {self.num_stages} (4x4 .. "
                       f"{self.image_size}x{self.image_size}); give stage_steps, fade_steps and "
                       f"batch_sizes {self.num_stages} entries each.")


def build_progressive(*, image_size: int, channels: int = 3, z_dim: int = 512,
                      fmap_base: int = 8192, fmap_max: int = 512, output_activation: str = "tanh",
                      mbstd_group_size: int = 4, prune_all_weights: bool = False) -> ProGAN:
  """The :class:`ProGAN` (all stages) for a trainer that grows the networks.

  Arguments as :func:`build`. Call under the run's ``strategy.scope()``.
  """
  return ProGAN(image_size=image_size, channels=channels, z_dim=z_dim, fmap_base=fmap_base,
                fmap_max=fmap_max, output_activation=output_activation,
                mbstd_group_size=mbstd_group_size, prune_all_weights=prune_all_weights)


def build(*, image_size: int = 32, channels: int = 3, z_dim: int = 512, fmap_base: int = 8192,
          fmap_max: int = 512, output_activation: str = "tanh", mbstd_group_size: int = 4,
          prune_all_weights: bool = False) -> GAN:
  """Builds ProGAN's final-stage generator and discriminator (no growing).

  The networks of the last stage at full resolution, without fade-in branches
  (alpha = 1), so the library's trainer can train them like any architecture
  and Re-GAN can prune the generator (wrap its equalized layers; exclude
  ``('to_rgb',)`` to keep the output layer dense). For progressive growing use
  :func:`build_progressive`. Train with ``loss='wasserstein'``, ``gp_weight=10``,
  Adam(1e-3, 0.0, 0.99), ``n_critic=1`` (the paper; plus its 0.001 drift term).

  Args:
    image_size: R, a power of two from 8 to 1024 (32 for CIFAR-10).
    channels: image channels C.
    z_dim: latent size (reference 512; the trainer passes its own ``z_dim``).
    fmap_base, fmap_max: widths ``min(fmap_base // 2**i, fmap_max)`` (reference
      8192, 512; tiny values make tiny test models).
    output_activation: 'tanh' (default; images in [-1, 1]) or 'linear' (paper).
    mbstd_group_size: minibatch stddev group size (reference 4); 0 disables it.
      The per-replica batch must be a multiple of min(group size, batch).
    prune_all_weights: make every generator weight prunable (kernels and
      biases of every layer, to_rgb included), as Re-GAN's ProGAN code prunes
      (``ProGAN/regan.py`` masks every ``named_parameter``); default: the
      connections (kernels) only.

  Returns:
    GAN with generator z float32 [B, z_dim] -> images float32 [B, R, R, C] and
    discriminator [B, R, R, C] -> logits float32 [B, 1].

  Raises:
    ValueError: an argument is out of range; the message says what is allowed.
  """
  progan = build_progressive(image_size=image_size, channels=channels, z_dim=z_dim,
                             fmap_base=fmap_base, fmap_max=fmap_max,
                             output_activation=output_activation,
                             mbstd_group_size=mbstd_group_size,
                             prune_all_weights=prune_all_weights)
  final = progan.num_stages - 1
  return GAN(generator=progan.generator(final, fade=False),
             discriminator=progan.discriminator(final, fade=False), z_dim=z_dim,
             progressive=progan)


def stage_output(growing: keras.Model, name: str, upsample_to: Optional[int] = None) -> keras.Model:
  """The model of one output of a :meth:`ProGAN.growing_generator` (or of its clone).

  Args:
    growing: the growing generator, or a clone of it (pruned, EMA).
    name: the output, :meth:`ProGAN.output_name` ``(stage, fade)``.
    upsample_to: if given, nearest-upsample the images to this size (to
      sample, evaluate or export a lower stage at the data's resolution).

  Returns:
    A Functional model z -> images over ``growing``'s own layers (it shares
    their variables; nothing is copied).
  """
  names = list(growing.output_names)
  if name not in names:
    raise ValueError(f"stage_output: {growing.name!r} has no output {name!r}; its outputs are "
                     f"{names}. Pass ProGAN.output_name(stage, fade).")
  images = growing.outputs[names.index(name)]
  size = int(images.shape[1])
  if upsample_to is not None and upsample_to != size:
    factor = upsample_to // size
    if upsample_to % size or factor & (factor - 1):
      raise ValueError(f"stage_output: upsample_to={upsample_to} is not a power-of-two multiple "
                       f"of the output size {size}.")
    images = gan_layers.NearestUpsample2D(factor, name=f"{name}_to_{upsample_to}")(images)
  return keras.Model(growing.inputs, images, name=f"{growing.name}_{name}")
