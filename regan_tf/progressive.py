"""Progressive growing in the trainer: which models, batch and reals each step uses.

A growing ProGAN run (``train.growth``) trains stage ``s`` (resolution
``4 * 2**s``) for ``GrowthSchedule.stage_steps[s]`` steps, fading the new
block in over the first ``fade_steps[s]`` of them. :class:`GrowingRun` is the
trainer's bookkeeping for that: for a step it names the *segment key*
``(stage, fade)``, whose models, batch size and real-image transform the
compiled iteration is built from (one trace per key; alpha is a variable the
host assigns, so a fade-in does not retrace).

The generator is one Functional model with every stage's outputs
(``ProGAN.growing_generator``), so Re-GAN's pruning wrappers and the EMA clone
wrap or average it whole and every stage's model shares those layers; the
per-key models are cut out of it with ``progan.stage_output``. The
discriminator's stage models share ``ProGAN.discriminator_layers``, which
:attr:`GrowingRun.discriminator_module` tracks for the checkpoint.

Re-GAN: by default the warm-up is counted from the first step of the final
stage (the Re-GAN ProGAN reference prunes in the final stage only);
``regan_stage`` picks an earlier stage. The masks cover every prunable
generator tensor, including blocks of stages not reached yet, which a sparse
phase then holds at their masked initial values until they are used.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from absl import logging

from regan_tf.compat import keras, tf
from regan_tf.models import check_positive_int
from regan_tf.models import progan as progan_lib

__all__ = ["FixedCursor", "GrowingRun", "GrowthCursor", "GrowthSchedule", "SegmentKey", "Span", "growth_schedule"]


@dataclasses.dataclass(frozen=True)
class SegmentKey:
  """What a step trains: ``stage`` (0 = 4x4) and whether its fade-in is running."""
  stage: int
  fade: bool

  def describe(self, progan: progan_lib.ProGAN) -> str:
    r = progan.resolution(self.stage)
    return f"stage {self.stage} ({r}x{r}{', fading in' if self.fade else ''})"


# ----------------------------------------------------------------------------
# Growth schedule: when a run changes stage, and how far a fade-in has gone
# ----------------------------------------------------------------------------


def _int_tuple(where: str, arg: str, value: Any, num_stages: Optional[int], fix: str,
               minimum: int) -> Tuple[int, ...]:
  if isinstance(value, int) and not isinstance(value, bool) and num_stages is not None:
    value = (value,) * num_stages
  if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
    raise ValueError(f"{where}: {arg}={value!r} must be a sequence of integers, one per stage; "
                     f"{fix}")
  out = tuple(value)
  for v in out:
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
      raise ValueError(f"{where}: {arg}={value!r} must hold integers >= {minimum}, one per stage; "
                       f"{fix}")
  return out


def _per_stage_fade(fade: Any, num_stages: int, number: Union[type, Tuple[type, ...]]) -> Any:
  """One fade length (of type ``number``) -> ``(0, f, f, ...)``, as stage 0 never fades; else unchanged."""
  if isinstance(fade, number) and not isinstance(fade, bool):
    return (0,) + (fade,) * (num_stages - 1)
  return fade


@dataclasses.dataclass(frozen=True)
class GrowthSchedule:
  """When a progressive run changes stage and how far each fade-in has gone.

  Counted in the trainer's steps (one step = ``n_critic`` D steps + one G
  step). Stage ``s`` lasts ``stage_steps[s]`` steps; a stage ``s >= 1`` starts
  with a fade-in of ``fade_steps[s]`` steps during which alpha rises linearly
  from 0 (the previous resolution's network) to 1 (the new one), then trains
  the plain network. Stage 0 (4x4) has nothing to fade from. After the last
  stage's length the run stays in the last stage at alpha 1, so the final
  stage's length may be that of the whole remaining run.

  The reference (``TrainingSchedule``, counted in real images shown to D): a
  stage of ``lod_training_kimg`` stable images, then each new resolution fades
  in over ``lod_transition_kimg`` and trains ``lod_training_kimg`` more (600k
  each by default, 800k for CelebA-HQ / LSUN); minibatch 128 up to 16x16, then
  64, 32, 16, 8 (the v2 single-GPU preset). Use :meth:`from_images`. The Re-GAN
  port trains CIFAR-10 for epochs ``(2, 2, 2, 8)`` at 4, 8, 16, 32 with batches
  ``(128, 128, 128, 64)`` and fades over each whole stage (its alpha starts at
  1/epochs, as it counts epochs from 1, and reaches 1 at the start of the
  last epoch); :meth:`from_epochs` with ``fade_epochs=(0, 2, 2, 8)`` is the
  nearest linear schedule.

  Attributes:
    stage_steps: steps of each stage, fade-in included, >= 1 each.
    fade_steps: fade-in steps at the start of each stage; ``fade_steps[0]``
      must be 0 and ``fade_steps[s] <= stage_steps[s]``.
    batch_sizes: global batch size of each stage (the reference shrinks it at
      high resolution).
  """
  stage_steps: Tuple[int, ...]
  fade_steps: Tuple[int, ...]
  batch_sizes: Tuple[int, ...]

  def __post_init__(self):
    where = "GrowthSchedule"
    stage_steps = _int_tuple(where, "stage_steps", self.stage_steps, None,
                             "e.g. stage_steps=(1000, 2000, 2000, 4000) for 4x4 .. 32x32.", 1)
    n = len(stage_steps)
    if n < 1:
      raise ValueError(f"{where}: stage_steps is empty; give one length per stage (4x4, 8x8, ...).")
    fade_steps = _int_tuple(where, "fade_steps", self.fade_steps, None,
                            "pass 0 for stage 0 and the fade-in length of each later stage.", 0)
    batch_sizes = _int_tuple(where, "batch_sizes", self.batch_sizes, n,
                             "e.g. batch_sizes=(128, 128, 128, 64), or one int for all stages.", 1)
    for arg, values in (("fade_steps", fade_steps), ("batch_sizes", batch_sizes)):
      if len(values) != n:
        raise ValueError(f"{where}: {arg} has {len(values)} entries but stage_steps has {n}; "
                         "give one per stage.")
    if fade_steps[0] != 0:
      raise ValueError(f"{where}: fade_steps[0]={fade_steps[0]} must be 0: stage 0 (4x4) has no "
                       "lower resolution to fade from.")
    for s, (fade, length) in enumerate(zip(fade_steps, stage_steps)):
      if fade > length:
        raise ValueError(f"{where}: fade_steps[{s}]={fade} exceeds stage_steps[{s}]={length}; a "
                         "fade-in happens within its stage. Lengthen the stage or shorten the fade.")
    object.__setattr__(self, "stage_steps", stage_steps)
    object.__setattr__(self, "fade_steps", fade_steps)
    object.__setattr__(self, "batch_sizes", batch_sizes)

  @classmethod
  def from_images(cls, *, stage_images: Sequence[int], fade_images: Union[int, Sequence[int]],
                  batch_sizes: Union[int, Sequence[int]], n_critic: int = 1) -> "GrowthSchedule":
    """A schedule from numbers of real images shown to D, as the reference counts.

    A step of stage ``s`` shows D ``batch_sizes[s] * n_critic`` reals; lengths
    are rounded up to whole steps.

    Args:
      stage_images: images per stage, fade-in included.
      fade_images: fade-in images per stage (stage 0: 0), or one number for
        every stage >= 1.
      batch_sizes: global batch per stage, or one for all.
      n_critic: D steps per trainer step.
    """
    where = "GrowthSchedule.from_images"
    check_positive_int(where, "n_critic", n_critic, "pass the trainer's n_critic (ProGAN: 1).")
    stage_images = _int_tuple(where, "stage_images", stage_images, None,
                              "e.g. (600_000, 1_200_000, 1_200_000, 1_200_000).", 1)
    n = len(stage_images)
    fade_images = _per_stage_fade(fade_images, n, int)
    fade_images = _int_tuple(where, "fade_images", fade_images, n, "e.g. 600_000.", 0)
    batch_sizes = _int_tuple(where, "batch_sizes", batch_sizes, n, "e.g. (128, 128, 128, 64).", 1)
    if len(batch_sizes) != n:
      raise ValueError(f"{where}: batch_sizes has {len(batch_sizes)} entries but stage_images has "
                       f"{n}; give one per stage.")

    def steps(images: int, batch: int) -> int:
      return -(-images // (batch * n_critic))

    return cls(stage_steps=tuple(steps(i, b) for i, b in zip(stage_images, batch_sizes)),
               fade_steps=tuple(steps(i, b) for i, b in zip(fade_images, batch_sizes)),
               batch_sizes=batch_sizes)

  @classmethod
  def from_epochs(cls, *, stage_epochs: Sequence[float],
                  fade_epochs: Union[float, Sequence[float]],
                  batch_sizes: Union[int, Sequence[int]], num_examples: int,
                  n_critic: int = 1) -> "GrowthSchedule":
    """A schedule in epochs of ``num_examples`` images (the Re-GAN port's unit).

    One epoch shows D every example once, i.e. ``num_examples`` images.
    """
    where = "GrowthSchedule.from_epochs"
    check_positive_int(where, "num_examples", num_examples, "pass the training set's size.")
    if isinstance(stage_epochs, (str, bytes)) or not isinstance(stage_epochs, Sequence):
      raise ValueError(f"{where}: stage_epochs={stage_epochs!r} must be a sequence of epochs, one "
                       "per stage; e.g. stage_epochs=(2, 2, 2, 8).")
    n = len(stage_epochs)
    fade_epochs = _per_stage_fade(fade_epochs, n, (int, float))
    for arg, values in (("stage_epochs", stage_epochs), ("fade_epochs", fade_epochs)):
      if any(isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 for v in values):
        raise ValueError(f"{where}: {arg}={values!r} must hold non-negative numbers of epochs, "
                         "one per stage; e.g. stage_epochs=(2, 2, 2, 8).")
    return cls.from_images(stage_images=[int(math.ceil(e * num_examples)) for e in stage_epochs],
                           fade_images=[int(math.ceil(e * num_examples)) for e in fade_epochs],
                           batch_sizes=batch_sizes, n_critic=n_critic)

  @property
  def num_stages(self) -> int:
    return len(self.stage_steps)

  @property
  def total_steps(self) -> int:
    """Sum of the stage lengths (the run may go on in the last stage)."""
    return sum(self.stage_steps)

  def stage_start(self, stage: int) -> int:
    """The first step of ``stage``."""
    if not isinstance(stage, int) or isinstance(stage, bool) or not 0 <= stage < self.num_stages:
      raise ValueError(f"stage={stage!r} must be in 0 .. {self.num_stages - 1}.")
    return sum(self.stage_steps[:stage])

  def stage_and_alpha(self, step: int) -> Tuple[int, float]:
    """``(stage, alpha)`` for trainer step ``step`` (0-based), a pure function of it.

    Within a stage's fade-in, alpha = (step - stage_start) / fade_steps, so
    its first step trains at alpha 0 and the step after the fade at alpha 1.
    """
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
      raise ValueError(f"GrowthSchedule.stage_and_alpha: step={step!r} must be an integer >= 0.")
    start = 0
    for stage, length in enumerate(self.stage_steps):
      if step < start + length or stage == self.num_stages - 1:
        into, fade = step - start, self.fade_steps[stage]
        return stage, (1.0 if into >= fade else into / fade)
      start += length
    raise AssertionError("unreachable")

  def batch_size(self, stage: int) -> int:
    """Global batch size of ``stage``."""
    self.stage_start(stage)  # validates
    return self.batch_sizes[stage]

  def get_config(self) -> Dict[str, Any]:
    """The schedule as plain lists (for logs and ``from_config``), with resolutions."""
    return {"stage_steps": list(self.stage_steps), "fade_steps": list(self.fade_steps),
            "batch_sizes": list(self.batch_sizes),
            "resolutions": [4 * 2**s for s in range(self.num_stages)]}

  @classmethod
  def from_config(cls, config: Dict[str, Any]) -> "GrowthSchedule":
    config = {k: v for k, v in config.items() if k != "resolutions"}
    return cls(**config)


def growth_schedule(*, num_examples: int, n_critic: int, batch_size: int,
                    stage_steps: Optional[Sequence[int]] = None,
                    fade_steps: Union[int, Sequence[int], None] = None,
                    stage_epochs: Optional[Sequence[float]] = None,
                    fade_epochs: Union[float, Sequence[float], None] = None,
                    batch_sizes: Union[int, Sequence[int], None] = None) -> GrowthSchedule:
  """The :class:`GrowthSchedule` of a run, in trainer steps or in epochs (gin's ``growth``).

  The trainer passes ``num_examples`` (training images), ``n_critic`` and its
  ``batch_size``; a configuration gives the lengths, either ``stage_steps``
  and ``fade_steps`` or ``stage_epochs`` and ``fade_epochs``. A single fade
  number applies to every stage after the first (stage 0 never fades).

  Args:
    num_examples, n_critic, batch_size: from the trainer.
    stage_steps, fade_steps: per-stage lengths in trainer steps.
    stage_epochs, fade_epochs: per-stage lengths in epochs of ``num_examples``
      images shown to D (the Re-GAN ProGAN port's unit).
    batch_sizes: the global batch of each stage (one int: all stages); None:
      ``batch_size`` for every stage.

  Raises:
    ValueError: both or neither of the two unit pairs, or bad lengths.
  """
  where = "growth"
  by_steps = stage_steps is not None or fade_steps is not None
  by_epochs = stage_epochs is not None or fade_epochs is not None
  if by_steps == by_epochs:
    raise ValueError(f"{where}: give stage_steps and fade_steps, or stage_epochs and fade_epochs "
                     "(exactly one pair); e.g. growth.stage_steps = (2000, 4000, 4000, 10000) and "
                     "growth.fade_steps = 2000.")
  lengths = stage_steps if by_steps else stage_epochs
  if lengths is None or isinstance(lengths, (str, bytes)) or not isinstance(lengths, Sequence):
    unit = "steps" if by_steps else "epochs"
    raise ValueError(f"{where}: stage_{unit}={lengths!r} must be a sequence with one length per "
                     f"stage (4x4, 8x8, ...); set growth.stage_{unit}.")
  n = len(lengths)
  if batch_sizes is None:
    batch_sizes = batch_size
  if by_epochs:
    return GrowthSchedule.from_epochs(stage_epochs=stage_epochs,
                                      fade_epochs=0 if fade_epochs is None else fade_epochs,
                                      batch_sizes=batch_sizes, num_examples=num_examples,
                                      n_critic=n_critic)
  fade_steps = _per_stage_fade(0 if fade_steps is None else fade_steps, n, int)
  return GrowthSchedule(stage_steps=tuple(stage_steps), fade_steps=fade_steps,
                        batch_sizes=batch_sizes)


class GrowingRun:
  """Per-step models, batches and reals of a growing ProGAN run.

  Args:
    progan: the :class:`regan_tf.models.progan.ProGAN` (``GAN.progressive``).
    schedule: the run's :class:`GrowthSchedule`.
    replicas: replicas in sync (every stage's batch must split evenly).

  Raises:
    ValueError: the schedule does not fit the ProGAN (number of stages) or a
      stage's batch does not split over the replicas or into minibatch-stddev
      groups; the message names the fix.
  """

  def __init__(self, progan: progan_lib.ProGAN, schedule: GrowthSchedule, *,
               replicas: int):
    progan.validate_schedule(schedule)
    for s, batch in enumerate(schedule.batch_sizes):
      if batch % replicas:
        raise ValueError(f"growth: stage {s}'s batch size {batch} is not divisible by the {replicas} "
                         f"replicas; use a multiple of {replicas} (growth.batch_sizes).")
      local, group = batch // replicas, progan.mbstd_group_size
      if group and local % min(group, local):
        raise ValueError(f"growth: stage {s}'s per-replica batch {local} is not a multiple of the "
                         f"minibatch stddev group min({group}, {local}); change growth.batch_sizes "
                         "or models.progan.mbstd_group_size.")
    self.progan = progan
    self.schedule = schedule
    self.replicas = replicas
    self.alpha = progan.alpha
    self.final_stage = progan.num_stages - 1
    self.discriminator_module = tf.Module(name="discriminator")
    self.discriminator_module.layers = dict(progan.discriminator_layers)
    self._cut: Dict[Tuple[int, str, Optional[int]], keras.Model] = {}

  # ---------------------------------------------------------------- steps ---

  def key_at(self, step: int) -> Tuple[SegmentKey, float]:
    """``(SegmentKey, alpha)`` of trainer step ``step`` (0-based)."""
    stage, alpha = self.schedule.stage_and_alpha(step)
    return SegmentKey(stage, stage > 0 and alpha < 1.0), alpha

  def segments(self, train_steps: int) -> List[Tuple[int, int, SegmentKey]]:
    """The run's ``(first step, end step, key)`` spans up to ``train_steps``, in order."""
    spans: List[Tuple[int, int, SegmentKey]] = []
    for stage in range(self.schedule.num_stages):
      start = self.schedule.stage_start(stage)
      last = stage == self.schedule.num_stages - 1
      end = train_steps if last else start + self.schedule.stage_steps[stage]
      fade_end = start + self.schedule.fade_steps[stage]
      for a, b, fade in ((start, fade_end, True), (fade_end, end, False)):
        a, b = min(a, train_steps), min(b, train_steps)
        if b > a:
          spans.append((a, b, SegmentKey(stage, fade)))
    return spans

  def regan_start(self, regan_stage: Optional[int]) -> int:
    """The first step of the stage Re-GAN's warm-up is counted from (None: the final stage)."""
    stage = self.final_stage if regan_stage is None else regan_stage
    if (isinstance(stage, bool) or not isinstance(stage, int)
        or not -self.schedule.num_stages <= stage < self.schedule.num_stages):
      raise ValueError(f"regan_stage={regan_stage!r} is not a stage of this run (0 .. "
                       f"{self.final_stage}, or negative from the end); None starts Re-GAN in the "
                       "final stage.")
    return self.schedule.stage_start(stage % self.schedule.num_stages)

  def batch_size(self, key: SegmentKey) -> int:
    """Global batch of the key's stage."""
    return self.schedule.batch_size(key.stage)

  # --------------------------------------------------------------- models ---

  def growing_generator(self) -> keras.Model:
    """The all-stages generator to train (prune and average this one)."""
    return self.progan.growing_generator()

  def generator(self, growing: keras.Model, key: SegmentKey,
                upsample: bool = False) -> keras.Model:
    """The key's generator cut out of ``growing`` (the trained model or a clone of it).

    With ``upsample`` its images are nearest-upsampled to the final
    resolution (for sample grids, evaluation and export of a lower stage).
    """
    name = self.progan.output_name(key.stage, key.fade)
    size = self.progan.image_size if upsample else None
    cache_key = (id(growing), name, size)
    if cache_key not in self._cut:
      self._cut[cache_key] = progan_lib.stage_output(growing, name, upsample_to=size)
    return self._cut[cache_key]

  def discriminator(self, key: SegmentKey) -> keras.Model:
    """The key's discriminator (over the shared layers)."""
    return self.progan.discriminator(key.stage, fade=key.fade)

  @property
  def discriminator_variables(self) -> List[tf.Variable]:
    """D's trainable variables over all stages (build D's optimizer on these)."""
    return self.progan.discriminator_variables

  def reals(self, key: SegmentKey) -> Callable[[tf.Tensor], tf.Tensor]:
    """Real batches at the final resolution -> as the key's networks see them.

    In a fade-in the reals are faded by the shared alpha variable too
    (``progan.stage_reals``); after it they are only pooled.
    """
    alpha: Any = self.alpha if key.fade else 1.0
    return lambda images: progan_lib.stage_reals(images, key.stage, alpha)

  def describe(self) -> str:
    """One line per stage for the log."""
    lines = []
    for s in range(self.schedule.num_stages):
      r = self.progan.resolution(s)
      lines.append(f"{r}x{r}: steps {self.schedule.stage_start(s)}.."
                   f"{self.schedule.stage_start(s) + self.schedule.stage_steps[s] - 1}"
                   f"{' (and on)' if s == self.final_stage else ''}, fade {self.schedule.fade_steps[s]}, "
                   f"batch {self.schedule.batch_sizes[s]}")
    return "; ".join(lines)


# ----------------------------------------------------------------------------
# The loop's cursor: which step function, data stream and sampler a step uses
# ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Span:
  """What the training loop uses for a step.

  Attributes:
    train_step: the compiled iteration (``regan_tf.train_step.TrainStep``).
    iterator: the distributed iterator of real batches it reads.
    sampler: the model that draws sample grids, evaluates and exports now.
    batch_size: the global batch.
  """
  train_step: Any
  iterator: Any
  sampler: keras.Model
  batch_size: int


class FixedCursor:
  """The cursor of a run that does not grow: one span for every step."""

  def __init__(self, span: Span):
    self.span = span

  def at(self, step: int) -> Span:
    """The span of step ``step`` (always the same)."""
    return self.span

  @property
  def sampler(self) -> keras.Model:
    """The model that samples, evaluates and exports."""
    return self.span.sampler

  @property
  def batch_size(self) -> int:
    """The global batch."""
    return self.span.batch_size

  def select_sampler(self, steps_done: int) -> keras.Model:
    """The sampler of a model that has trained ``steps_done`` steps (always the same)."""
    return self.span.sampler

  def scalars(self) -> Dict[str, float]:
    """Scalars to log (none)."""
    return {}


class GrowthCursor:
  """The cursor of a growing run: per step, the active (stage, fade) span.

  Each (stage, fade) key gets its own step function (one trace each, built
  once); each stage its own data stream, seeded ``(seed, stage)`` and read from
  the stage's first step, so a resumed run reads the same batches. alpha is a
  variable assigned here, so a fade-in does not retrace.

  Args:
    growing: the run's :class:`GrowingRun`.
    generator: the all-stages generator being trained (pruned when Re-GAN).
    sampler_all: the all-stages model that samples (its EMA clone, or
      ``generator``); stage samplers are cut from it, upsampled.
    make_step: ``make_step(generator, discriminator, batch, real_transform)``
      -> the compiled step of one key.
    make_iterator: ``make_iterator(batch, data_seed, start_batch)`` -> a
      distributed iterator.
    seed, n_critic: the run's seed and D steps per G step.
  """

  def __init__(self, growing: GrowingRun, *, generator: keras.Model, sampler_all: keras.Model,
               make_step: Callable[..., Any], make_iterator: Callable[[int, int, int], Any],
               seed: int, n_critic: int):
    self._growing, self._generator, self._sampler_all = growing, generator, sampler_all
    self._make_step, self._make_iterator = make_step, make_iterator
    self._seed, self._n_critic = seed, n_critic
    self._steps: Dict[SegmentKey, Any] = {}
    self._span: Optional[Span] = None
    self.key: Optional[SegmentKey] = None
    self.alpha: Optional[float] = None
    self._sampler: Optional[keras.Model] = None

  def at(self, step: int) -> Span:
    """The span of step ``step`` (0-based), entering a new one when the key changes."""
    key, alpha = self._growing.key_at(step)
    if key != self.key:
      self._enter(key, step)
    if alpha != self.alpha:
      self._growing.alpha.assign(alpha)
      self.alpha = alpha
    return self._span

  def _enter(self, key: SegmentKey, at_step: int) -> None:
    growing = self._growing
    batch = growing.batch_size(key)
    if self.key is None or key.stage != self.key.stage:
      stage_start = growing.schedule.stage_start(key.stage)
      iterator = self._make_iterator(batch, self._seed * 1009 + key.stage,
                                     (at_step - stage_start) * self._n_critic)
    else:
      iterator = self._span.iterator
    if key not in self._steps:
      self._steps[key] = self._make_step(growing.generator(self._generator, key), growing.discriminator(key),
                                         batch, growing.reals(key))
    self._sampler = growing.generator(self._sampler_all, key, upsample=True)
    self._span = Span(self._steps[key], iterator, self._sampler, batch)
    self.key = key
    logging.info("Step %d: %s, batch %d.", at_step, key.describe(growing.progan), batch)

  @property
  def batch_size(self) -> int:
    """The current span's global batch."""
    return self._span.batch_size

  @property
  def sampler(self) -> Optional[keras.Model]:
    """The current sampler (None before the first step or :meth:`select_sampler`)."""
    return self._sampler

  def select_sampler(self, steps_done: int) -> keras.Model:
    """Points the sampler (and alpha) at the stage the model had after ``steps_done`` steps.

    For exporting a run that is already complete, or its best checkpoint.
    """
    key, alpha = self._growing.key_at(max(steps_done - 1, 0))
    self._sampler = self._growing.generator(self._sampler_all, key, upsample=True)
    self._growing.alpha.assign(alpha)
    self.alpha = alpha
    return self._sampler

  def scalars(self) -> Dict[str, float]:
    """``growth/stage`` and ``growth/alpha`` for the log."""
    return {"growth/stage": float(self.key.stage), "growth/alpha": float(self.alpha)}
