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
from typing import Any, Callable, Dict, List, Optional, Tuple

from absl import logging

from regan_tf.compat import keras, tf
from regan_tf.models import progan as progan_lib

__all__ = ["FixedCursor", "GrowingRun", "GrowthCursor", "SegmentKey", "Span"]


@dataclasses.dataclass(frozen=True)
class SegmentKey:
  """What a step trains: ``stage`` (0 = 4x4) and whether its fade-in is running."""
  stage: int
  fade: bool

  def describe(self, progan: progan_lib.ProGAN) -> str:
    r = progan.resolution(self.stage)
    return f"stage {self.stage} ({r}x{r}{', fading in' if self.fade else ''})"


class GrowingRun:
  """Per-step models, batches and reals of a growing ProGAN run.

  Args:
    progan: the :class:`regan_tf.models.progan.ProGAN` (``GAN.progressive``).
    schedule: the run's :class:`regan_tf.models.progan.GrowthSchedule`.
    replicas: replicas in sync (every stage's batch must split evenly).

  Raises:
    ValueError: the schedule does not fit the ProGAN (number of stages) or a
      stage's batch does not split over the replicas or into minibatch-stddev
      groups; the message names the fix.
  """

  def __init__(self, progan: progan_lib.ProGAN, schedule: progan_lib.GrowthSchedule, *,
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
