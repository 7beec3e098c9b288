"""The run spec: every training setting, typed, frozen and checked in one place.

``regan_tf.trainer.train`` takes its settings as flat keyword arguments (the
gin names ``train.*``); :meth:`RunSpec.from_arguments` groups them into five
small frozen dataclasses and checks every one of them *before* any data is
loaded or model built, so a bad value fails in seconds with a message that
names the argument, the value, what is allowed and the fix. The only checks
left for later are the ones that need the machine (:meth:`RunSpec.check_replicas`,
right after the distribution strategy exists, still before data), the data
(its size) or the model (StyleGAN2-only options on another generator).

The groups:

- :class:`Optimization`: losses, batch, critic steps, Adam settings.
- :class:`Regularization`: R1 and path length (StyleGAN2), style mixing,
  with the lazy-regularization corrections derived from them.
- :class:`Cadence`: run length and the periodic work (logs, grids,
  evaluation, checkpoints, profiling, export).
- :class:`DataSettings`: subset, flips, DiffAugment, evaluation reference.
- :class:`Runtime`: seed, devices, distribution strategy, XLA, precision.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Dict, Optional, Tuple, Union

from absl import logging

from regan_tf import augment as augment_lib
from regan_tf import data as data_lib
from regan_tf import losses as losses_lib

__all__ = ["Cadence", "DataSettings", "EPOCH_COUNTINGS", "Optimization", "PRECISIONS", "Regularization", "RunSpec",
           "Runtime", "STRATEGIES", "steps_per_epoch"]

STRATEGIES = ("auto", "mirrored", "one_device", "default", "multi_worker", "tpu")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
EPOCH_COUNTINGS = ("images", "loader")


def _is_int(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _int_at_least(name: str, value: Any, low: int, note: str = "") -> int:
  if not _is_int(value) or value < low:
    raise ValueError(f"{name} must be an integer >= {low}{note}, got {value!r}.")
  return int(value)


def _positive(name: str, value: Any) -> float:
  if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
    raise ValueError(f"{name} must be > 0, got {value!r}.")
  return float(value)


def _non_negative(name: str, value: Any) -> float:
  if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
    raise ValueError(f"{name} must be >= 0 (0 disables it), got {value!r}.")
  return float(value)


@dataclasses.dataclass(frozen=True)
class Optimization:
  """How G and D are optimized.

  Attributes:
    loss: ``hinge``, ``non_saturating`` or ``wasserstein`` (regan_tf.losses).
    z_dim: latent size.
    batch_size: global batch, split evenly over replicas.
    n_critic: discriminator steps per generator step.
    g_lr, d_lr, beta1, beta2: Adam settings (G's base rate; Re-GAN scales it).
    adam_epsilon: Adam's epsilon (Keras' default 1e-7; PyTorch's, the Re-GAN
      reference's, 1e-8).
    gp_weight: WGAN-GP gradient-penalty weight (0: off).
    drift_weight: ProGAN's drift term ``mean(D(real)^2)`` weight (0: off).
  """
  loss: str = "hinge"
  z_dim: int = 128
  batch_size: int = 64
  n_critic: int = 5
  g_lr: float = 2e-4
  d_lr: float = 2e-4
  beta1: float = 0.0
  beta2: float = 0.9
  gp_weight: float = 0.0
  drift_weight: float = 0.0
  adam_epsilon: float = 1e-7

  def __post_init__(self):
    losses_lib.get(self.loss)  # lists the valid names
    _int_at_least("z_dim", self.z_dim, 1)
    _int_at_least("batch_size", self.batch_size, 1)
    _int_at_least("n_critic", self.n_critic, 1, " (discriminator steps per generator step)")
    _positive("g_lr", self.g_lr)
    _positive("d_lr", self.d_lr)
    for name in ("beta1", "beta2"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"{name} (Adam) must be in [0, 1), got {value!r}.")
    _non_negative("gp_weight", self.gp_weight)
    _non_negative("drift_weight", self.drift_weight)
    _positive("adam_epsilon", self.adam_epsilon)


@dataclasses.dataclass(frozen=True)
class Regularization:
  """StyleGAN2's lazy regularizers and style mixing.

  Attributes:
    r1_gamma, r1_every: every ``r1_every`` iterations an extra D step on
      ``r1_gamma / 2 * r1_every * R1`` (0: off).
    pl_weight, pl_every, pl_batch_shrink: every ``pl_every`` iterations an
      extra G step on ``pl_weight * pl_every * PL`` over ``batch /
      pl_batch_shrink`` latents (0: off).
    style_mixing: probability of style mixing in G's training passes.
    r1_on_augmented: compute R1 on the DiffAugment view of the reals D trained
      on (as ADA regularizes its augmented reals); default False, R1 on the
      un-augmented reals, as the Re-GAN reference's StyleGAN2 code does under
      ``--diffaug`` (StyleGAN2/train.py:255-264 at 785135c).
  """
  r1_gamma: float = 0.0
  r1_every: int = 16
  pl_weight: float = 0.0
  pl_every: int = 4
  pl_batch_shrink: int = 2
  style_mixing: float = 0.0
  r1_on_augmented: bool = False

  def __post_init__(self):
    _non_negative("r1_gamma", self.r1_gamma)
    if not isinstance(self.r1_on_augmented, bool):
      raise ValueError(f"r1_on_augmented must be True or False, got {self.r1_on_augmented!r}.")
    _non_negative("pl_weight", self.pl_weight)
    for name in ("r1_every", "pl_every", "pl_batch_shrink"):
      _int_at_least(name, getattr(self, name), 1)
    if (isinstance(self.style_mixing, bool) or not isinstance(self.style_mixing, numbers.Real)
        or not 0.0 <= self.style_mixing <= 1.0):
      raise ValueError(f"style_mixing is a probability in [0, 1], got {self.style_mixing!r}.")

  @property
  def d_lazy(self) -> float:
    """c = k / (k + 1) for D's lr and betas under lazy R1 (StyleGAN2 App. B); 1 without it."""
    return self.r1_every / (self.r1_every + 1.0) if self.r1_gamma > 0 else 1.0

  @property
  def g_lazy(self) -> float:
    """c = k / (k + 1) for G's lr and betas under lazy path length; 1 without it."""
    return self.pl_every / (self.pl_every + 1.0) if self.pl_weight > 0 else 1.0

  @property
  def r1_step_weight(self) -> float:
    """The weight of R1 in its lazy D step: gamma / 2 * k."""
    return self.r1_gamma / 2.0 * self.r1_every

  @property
  def pl_step_weight(self) -> float:
    """The weight of the path-length penalty in its lazy G step: weight * k."""
    return self.pl_weight * self.pl_every

  @property
  def needs_stylegan(self) -> bool:
    """Whether G must be a StyleGAN2 generator (nested mapping and synthesis)."""
    return self.pl_weight > 0 or self.style_mixing > 0

  def r1_at(self, step: int) -> bool:
    """Whether iteration ``step`` (0-based) runs the lazy R1 step."""
    return self.r1_gamma > 0 and step % self.r1_every == 0

  def pl_at(self, step: int) -> bool:
    """Whether iteration ``step`` (0-based) runs the lazy path-length step."""
    return self.pl_weight > 0 and step % self.pl_every == 0


@dataclasses.dataclass(frozen=True)
class Cadence:
  """How long the run is, and when its periodic work happens (in G steps).

  Attributes:
    train_steps, train_epochs: exactly one is set; an epoch is one pass of D
      over the data, in generator steps as ``epoch_counting`` says.
    epoch_counting: how many G steps an epoch of N images is (for
      ``train_epochs`` and Re-GAN's ``*_epochs``): 'images' (default),
      N / (batch_size * n_critic), fractional; 'loader', the Re-GAN reference's
      SNGAN loop (SNGAN/main.py:30-31, 81, 101 at 785135c): a DataLoader without
      drop_last gives ceil(N / batch_size) batches an epoch, the last one
      partial, and a G step follows every n_critic-th of them, so an epoch is
      ceil(ceil(N / batch_size) / n_critic) G steps (5,000 images at batch 64,
      n_critic 5: 16, not 15.625).
    log_every, image_every, checkpoint_every: log lines and scalars; sample
      grids; checkpoints (and the last step always).
    keep_checkpoints: checkpoints kept in ``checkpoints/``.
    num_grid_images: images in the fixed-latent sample grid.
    eval_every: steps between evaluations (0: only at the end).
    export, export_best: write the generator SavedModel at the end; of the
      best-FID checkpoint instead of the last step (needs an evaluation).
    profile_steps: ``(first, last)`` steps to trace with the profiler, or None.
    divergence_guard: on log steps, look for a diverging run (D's loss pinned
      at 0, G's weights exploding): ``warn`` (default), ``stop`` or ``off``.
  """
  train_steps: Optional[int] = None
  train_epochs: Optional[float] = None
  log_every: int = 50
  image_every: int = 500
  checkpoint_every: int = 500
  keep_checkpoints: int = 3
  num_grid_images: int = 64
  eval_every: int = 0
  export: bool = True
  export_best: bool = False
  profile_steps: Optional[Tuple[int, int]] = None
  divergence_guard: str = "warn"
  epoch_counting: str = "images"

  def __post_init__(self):
    if (self.train_steps is None) == (self.train_epochs is None):
      raise ValueError(f"Set exactly one of train_steps and train_epochs (got train_steps={self.train_steps}, "
                       f"train_epochs={self.train_epochs}).")
    if self.train_steps is not None:
      _int_at_least("train_steps", self.train_steps, 0)
    else:
      _positive("train_epochs", self.train_epochs)
    for name in ("log_every", "image_every", "checkpoint_every", "keep_checkpoints", "num_grid_images"):
      value = getattr(self, name)
      if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be > 0, got {value!r}.")
    _int_at_least("eval_every", self.eval_every, 0, " (0: evaluate at the end only)")
    if self.profile_steps is not None:
      steps = tuple(self.profile_steps)
      if len(steps) != 2 or not all(_is_int(s) for s in steps) or not 0 <= steps[0] <= steps[1]:
        raise ValueError(f"profile_steps must be (first, last) with 0 <= first <= last, "
                         f"got {self.profile_steps!r}.")
      object.__setattr__(self, "profile_steps", (int(steps[0]), int(steps[1])))
    if self.divergence_guard not in ("off", "warn", "stop"):
      raise ValueError(f"divergence_guard must be 'off', 'warn' or 'stop', got {self.divergence_guard!r}.")
    if self.epoch_counting not in EPOCH_COUNTINGS:
      raise ValueError(f"epoch_counting must be one of {EPOCH_COUNTINGS}, got {self.epoch_counting!r}: "
                       "'images' counts N / (batch_size * n_critic) G steps an epoch, 'loader' the "
                       "reference's ceil(ceil(N / batch_size) / n_critic).")

  def steps_per_epoch(self, num_examples: int, batch_size: int, n_critic: int) -> float:
    """G steps in one epoch of ``num_examples`` images (see ``epoch_counting``)."""
    return steps_per_epoch(num_examples, batch_size, n_critic, self.epoch_counting)

  def steps(self, steps_per_epoch: float) -> int:
    """The run's length in G steps, given the data's epoch length in G steps."""
    if self.train_steps is not None:
      return self.train_steps
    return max(1, int(round(self.train_epochs * steps_per_epoch)))


def steps_per_epoch(num_examples: int, batch_size: int, n_critic: int, counting: str = "images") -> float:
  """G steps in one epoch of ``num_examples`` images, counted as :class:`Cadence`'s ``epoch_counting``.

  'images': N / (batch_size * n_critic); 'loader': ceil(ceil(N / batch_size) / n_critic).
  """
  if counting not in EPOCH_COUNTINGS:
    raise ValueError(f"epoch_counting must be one of {EPOCH_COUNTINGS}, got {counting!r}.")
  if counting == "loader":
    return float(math.ceil(math.ceil(num_examples / batch_size) / n_critic))
  return num_examples / (batch_size * n_critic)


@dataclasses.dataclass(frozen=True)
class DataSettings:
  """Which images train, how D sees them, and what FID compares against.

  Attributes:
    data_fraction, subset_rule: train on this fraction of the dataset, chosen
      by ``first`` / ``random`` / ``stratified`` (regan_tf.data.select_subset).
    random_flip: random horizontal flips of real images.
    diffaugment: DiffAugment transform names applied to every image D sees
      (``()``: off); built from a ``'color,translation,cutout'`` string.
    eval_reference: ``full`` (FID against the whole dataset) or ``train``
      (against the training subset, for few-shot sets).
  """
  data_fraction: float = 1.0
  subset_rule: str = "first"
  random_flip: bool = False
  diffaugment: Tuple[str, ...] = ()
  eval_reference: str = "full"

  def __post_init__(self):
    data_lib.check_fraction(self.data_fraction)
    data_lib.check_rule(self.subset_rule)
    object.__setattr__(self, "diffaugment", augment_lib.parse_policy(self.diffaugment))
    if self.eval_reference not in ("full", "train"):
      raise ValueError(f"eval_reference must be 'full' or 'train', got {self.eval_reference!r}.")


@dataclasses.dataclass(frozen=True)
class Runtime:
  """Where and how the steps run.

  Attributes:
    seed: seeds the data order, latents and initialization.
    strategy: the kind of distribution strategy, one of :data:`STRATEGIES`
      (see ``regan_tf.trainer.make_strategy``).
    cpu_devices: split the CPU into this many logical devices first (0: no).
    jit_compile: XLA for the step function: True, False or ``auto``.
    precision: ``float32``; ``mixed_bfloat16`` (bfloat16 compute, float32
      variables: TPUs, A100/H100 and CPUs with AVX512-BF16 or AMX, no loss
      scaling); ``mixed_float16`` (float16 compute with dynamic loss scaling:
      NVIDIA GPUs). Outputs, losses, masks and exports stay float32.
    mixed_precision: deprecated; True means ``precision='mixed_float16'``.
    tpu: with ``strategy='tpu'``: the TPU's name, ``local`` (a TPU VM) or a
      ``grpc://host:port`` address (for ``TPUClusterResolver``).
  """
  seed: int = 0
  strategy: str = "auto"
  tpu: Optional[str] = None
  cpu_devices: int = 0
  jit_compile: Union[bool, str] = "auto"
  precision: str = "float32"
  mixed_precision: bool = False

  def __post_init__(self):
    _int_at_least("seed", self.seed, 0)
    if self.precision not in PRECISIONS:
      raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}; got {self.precision!r}.")
    if self.mixed_precision:
      if self.precision not in ("float32", "mixed_float16"):
        raise ValueError(f"mixed_precision=True (deprecated: it means precision='mixed_float16') contradicts "
                         f"precision={self.precision!r}; remove train.mixed_precision.")
      logging.warning("train.mixed_precision is deprecated; use train.precision = 'mixed_float16'.")
      object.__setattr__(self, "precision", "mixed_float16")
    if self.strategy not in STRATEGIES:
      raise ValueError(f"strategy must be one of {', '.join(map(repr, STRATEGIES))}; got {self.strategy!r}.")
    if self.strategy == "tpu" and not (isinstance(self.tpu, str) and self.tpu.strip()):
      raise ValueError(f"strategy='tpu' needs train.tpu: the TPU's name, 'local' on a TPU VM, or "
                       f"'grpc://host:port'; got {self.tpu!r}.")
    if self.tpu is not None and self.strategy != "tpu":
      raise ValueError(f"train.tpu = {self.tpu!r} is only used with train.strategy = 'tpu' (got strategy "
                       f"{self.strategy!r}); set the strategy or remove train.tpu.")
    _int_at_least("cpu_devices", self.cpu_devices, 0, " (0 leaves the CPU as one device)")
    if self.jit_compile not in (True, False, "auto"):
      raise ValueError(f"jit_compile must be True, False or 'auto'; got {self.jit_compile!r}.")


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """Everything :func:`regan_tf.trainer.train` needs to know that is not an object.

  Build it with :meth:`from_arguments` (the flat ``train.*`` names); each group
  checks its own values when constructed, and the cross-group checks run here.

  Attributes:
    optimization, regularization, cadence, data, runtime: the groups.
    growing: whether the run grows a ProGAN (``train.growth`` set).
    regan_stage: in a growing run, the stage Re-GAN's warm-up counts from.
    evaluating: whether an evaluation is configured (``train.evaluation``).
  """
  optimization: Optimization
  regularization: Regularization
  cadence: Cadence
  data: DataSettings
  runtime: Runtime
  growing: bool = False
  regan_stage: Optional[int] = None
  evaluating: bool = False

  def __post_init__(self):
    if self.regan_stage is not None and not self.growing:
      raise ValueError(f"regan_stage={self.regan_stage} needs a growing run (train.growth); without one "
                       "Re-GAN's warm-up counts from step 0. Remove train.regan_stage.")
    if self.cadence.export_best and not self.evaluating:
      raise ValueError("export_best=True needs an evaluation (train.evaluation = @evaluation) to rank "
                       "checkpoints.")

  @classmethod
  def from_arguments(cls, *, growing: bool = False, regan_stage: Optional[int] = None,
                     evaluating: bool = False, **arguments: Any) -> "RunSpec":
    """Groups ``train``'s flat keyword arguments and checks them all.

    Args:
      growing, regan_stage, evaluating: see the attributes.
      **arguments: every other field of the five groups, by its flat name.

    Raises:
      ValueError: a bad value or an unknown name; the message names the fix.
    """
    groups: Dict[type, Dict[str, Any]] = {}
    owners = {f.name: group for group in (Optimization, Regularization, Cadence, DataSettings, Runtime)
              for f in dataclasses.fields(group)}
    for name, value in arguments.items():
      if name not in owners:
        raise ValueError(f"RunSpec has no setting {name!r}; settings: {', '.join(sorted(owners))}.")
      groups.setdefault(owners[name], {})[name] = value
    return cls(optimization=Optimization(**groups.get(Optimization, {})),
               regularization=Regularization(**groups.get(Regularization, {})),
               cadence=Cadence(**groups.get(Cadence, {})),
               data=DataSettings(**groups.get(DataSettings, {})),
               runtime=Runtime(**groups.get(Runtime, {})),
               growing=growing, regan_stage=regan_stage, evaluating=evaluating)

  @staticmethod
  def argument_names() -> Tuple[str, ...]:
    """The flat names :meth:`from_arguments` accepts (``train``'s settings)."""
    return tuple(f.name for group in (Optimization, Regularization, Cadence, DataSettings, Runtime)
                 for f in dataclasses.fields(group))

  def check_replicas(self, replicas: int) -> None:
    """The checks that need the number of replicas (run before any data loads).

    Raises:
      ValueError: the batch does not split over ``replicas``, or the
        path-length batch would be empty.
    """
    batch = self.optimization.batch_size
    if batch % replicas:
      raise ValueError(
          f"batch_size ({batch}) must be divisible by the number of replicas ({replicas}); "
          f"use e.g. batch_size={replicas * max(1, round(batch / replicas))}.")
    shrink = self.regularization.pl_batch_shrink
    if self.regularization.pl_weight > 0 and (batch // replicas) // shrink < 1:
      raise ValueError(f"pl_batch_shrink ({shrink}) leaves no latents of the per-replica batch "
                       f"({batch // replicas}); lower it or raise batch_size.")
