"""The Re-GAN phase schedule: when G is sparse, when it is dense, and its learning rate.

Re-GAN (Saxena et al., CVPR 2023, Sec. 3 and Alg. 1) trains the generator G
through repeated *prune* and *regrow* phases; the discriminator trains as usual.
Counted in G updates (0-based: step ``s`` is the ``(s+1)``-th G update; the
trainer converts epochs to steps), with ``W = warmup`` and phase length ``g``:

    steps 0 .. W-1               WARMUP  dense, base learning rate
    steps W .. W+g-1             SPARSE  cycle 1: at step W, in every prunable
                                         tensor the fraction ``sparsity`` of
                                         smallest-|w| entries is masked (exactly
                                         zero in every forward pass and after
                                         every update, zero gradient)
    steps W+g .. W+2g-1          DENSE   cycle 1: masks back to ones; pruned
                                         entries regrow from their value, zero;
                                         G's learning rate x ``dense_lr_factor``
    steps W+2g .. W+3g-1         SPARSE  cycle 2: a new mask from the current
                                         magnitudes, ...

so one cycle is ``2g`` steps. Masks are chosen per tensor (not with one global
threshold) at the first step of every sparse phase, a *mask-update step*; the
first step of a dense phase is a *regrow step*.

Ending sparse (``final_phase='sparse'``)
-----------------------------------------
With ``final_phase='sparse'`` and ``total_steps=T`` the last ``g`` steps,
``T-g .. T-1``, are forced to be sparse, so that training ends on (and exports)
a sparse G:

* if step ``T-g`` already lies in a sparse phase, that phase simply continues
  to the end (it keeps its mask; it lasts between ``g`` and ``2g-1`` steps);
* otherwise (``T-g`` lies in a dense phase) that dense phase is cut short and
  a new sparse phase, with a fresh mask, starts at ``T-g``.

Steps ``>= T`` stay in that final sparse phase. ``T >= warmup + g`` is required.
Without ``final_phase``, ``last_phase(T)`` tells which phase step ``T-1`` is in.

TFMOT
-----
``ReganSchedule`` is a ``tfmot`` ``PruningSchedule``: ``schedule(step)`` returns
``(should_prune, sparsity)`` tensors, ``should_prune`` True exactly at
mask-update steps and ``sparsity`` the target in sparse phases, 0 elsewhere, so
TFMOT's wrapper and pruning summaries can read it. TFMOT's own schedules
(``ConstantSparsity``, ``PolynomialDecay``) recompute masks every ``frequency``
steps from TFMOT's per-forward-pass step counter and would overwrite Re-GAN's
masks mid-phase and never regrow; that is why regan_tf's controller, not TFMOT's
wrapper, performs mask updates (see ``wrapper.py`` and ``controller.py``).
"""

from __future__ import annotations

import enum
import math
import operator
from typing import Any, Dict, Optional

from tensorflow_model_optimization.python.core.sparsity.keras import pruning_schedule

from regan_tf.compat import tf

__all__ = ["Phase", "ReganSchedule"]

_FINAL_PHASES = (None, "sparse")


class Phase(enum.IntEnum):
  """Training phase of G. Values are what TensorBoard's ``regan/phase`` shows."""
  WARMUP = 0
  SPARSE = 1
  DENSE = 2


def _as_count(name: str, value: Any, minimum: int, *,
              meaning: str = "an integer number of G steps",
              hint: str = " (convert epochs to steps first)") -> int:
  """Validates an integer argument >= ``minimum`` (bools rejected); errors say ``pass <meaning>``."""
  if isinstance(value, bool):
    raise TypeError(f"{name}={value!r} is a bool; pass {meaning} >= {minimum}.")
  try:
    value = operator.index(value)
  except TypeError:
    raise TypeError(f"{name}={value!r} ({type(value).__name__}) is not an integer; pass "
                    f"{meaning} >= {minimum}{hint}.") from None
  if value < minimum:
    raise ValueError(f"{name}={value} is below the allowed minimum {minimum}; pass {meaning} "
                     f">= {minimum}.")
  return value


class ReganSchedule(pruning_schedule.PruningSchedule):
  """Re-GAN's warm-up / sparse / dense schedule, in G steps (see module docstring).

  Example: ``ReganSchedule(warmup=1000, g=500, sparsity=0.3)``: dense until step
  999; masks at steps 1000, 2000, 3000, ...; regrowth (and lr x 0.1) at steps
  1500, 2500, ...

  Attributes:
    warmup, g, sparsity, dense_lr_factor, final_phase, total_steps: as passed.
  """

  def __init__(self,
               warmup: int,
               g: int,
               sparsity: float,
               dense_lr_factor: float = 0.1,
               final_phase: Optional[str] = None,
               total_steps: Optional[int] = None):
    """Validates and stores the schedule.

    Args:
      warmup: dense warm-up length in G steps, >= 0.
      g: length of every sparse and every dense phase in G steps, >= 1.
      sparsity: fraction of each prunable tensor masked in sparse phases, in [0, 1).
      dense_lr_factor: G's learning-rate multiplier in dense phases, > 0
        (0.1 in the paper's reference code).
      final_phase: None, or 'sparse' to force the last ``g`` steps to be sparse
        (needs ``total_steps``).
      total_steps: total number of G steps of the run, >= 1; required with
        ``final_phase='sparse'``, otherwise only the default of ``last_phase``.

    Raises:
      ValueError / TypeError: an argument outside the allowed range; the
        message names it and says what is allowed.
    """
    self.warmup = _as_count("warmup", warmup, 0)
    self.g = _as_count("g", g, 1)
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
      raise TypeError(f"sparsity={sparsity!r} is not a number; pass a float in [0, 1), e.g. 0.3.")
    if not 0.0 <= float(sparsity) < 1.0:
      raise ValueError(f"sparsity={sparsity!r} is outside [0, 1); pass the fraction of each "
                       "prunable tensor to mask in sparse phases, e.g. 0.3 (1.0 would remove "
                       "every weight).")
    self.sparsity = float(sparsity)
    if (isinstance(dense_lr_factor, bool) or not isinstance(dense_lr_factor, (int, float))
        or not math.isfinite(dense_lr_factor) or dense_lr_factor <= 0):
      raise ValueError(f"dense_lr_factor={dense_lr_factor!r} must be a finite number > 0; it "
                       "multiplies G's learning rate in dense phases (the paper uses 0.1; "
                       "1.0 keeps the base rate).")
    self.dense_lr_factor = float(dense_lr_factor)
    if final_phase not in _FINAL_PHASES:
      raise ValueError(f"final_phase={final_phase!r} is not one of {_FINAL_PHASES}; pass "
                       "'sparse' to end training in a sparse phase, or None for the plain cycle.")
    self.final_phase = final_phase
    self.total_steps = None if total_steps is None else _as_count("total_steps", total_steps, 1)
    # Python-side description of the forced final sparse phase: first step and cycle.
    self._final_start: Optional[int] = None
    self._final_cycle: Optional[int] = None
    if final_phase == "sparse":
      if self.total_steps is None:
        raise ValueError("final_phase='sparse' needs total_steps (the run's number of G steps) "
                         "to know where the last g steps begin; pass total_steps=... or "
                         "final_phase=None.")
      if self.total_steps < self.warmup + self.g:
        raise ValueError(
            f"final_phase='sparse' with total_steps={self.total_steps} would cut into the "
            f"warm-up: the last g={self.g} steps start at {self.total_steps - self.g}, before "
            f"warm-up ends at step {self.warmup}. Use total_steps >= warmup + g "
            f"({self.warmup + self.g}), a shorter warmup or g, or final_phase=None.")
      tail = self.total_steps - self.g
      if self._regular_phase(tail) == Phase.SPARSE:
        self._final_start = self._regular_start(tail)
        self._final_cycle = self._regular_cycle(tail)
      else:
        self._final_start = tail
        self._final_cycle = self._regular_cycle(tail) + 1

  # ---------------------------------------------------------------- Python API

  @property
  def cycle_length(self) -> int:
    """Steps in one sparse + dense cycle: ``2g``."""
    return 2 * self.g

  def _regular_phase(self, step: int) -> Phase:
    if step < self.warmup:
      return Phase.WARMUP
    return Phase.SPARSE if (step - self.warmup) % (2 * self.g) < self.g else Phase.DENSE

  def _regular_cycle(self, step: int) -> int:
    if step < self.warmup:
      return 0
    return (step - self.warmup) // (2 * self.g) + 1

  def _regular_start(self, step: int) -> int:
    if step < self.warmup:
      return 0
    offset = (step - self.warmup) % (2 * self.g)
    return step - offset + (self.g if offset >= self.g else 0)

  def _in_final(self, step: int) -> bool:
    return self._final_start is not None and step >= self._final_start

  @staticmethod
  def _check_step(step: Any) -> int:
    return _as_count("step", step, 0, meaning="the 0-based G step as a Python int",
                     hint=" (use the *_tf methods for tensors)")

  def phase_at(self, step: int) -> Phase:
    """Phase of G step ``step`` (0-based)."""
    step = self._check_step(step)
    return Phase.SPARSE if self._in_final(step) else self._regular_phase(step)

  def cycle_at(self, step: int) -> int:
    """Sparse-phase number of ``step``, 1-based; a dense phase shares the number of
    the sparse phase before it; 0 in warm-up."""
    step = self._check_step(step)
    return self._final_cycle if self._in_final(step) else self._regular_cycle(step)

  def phase_start(self, step: int) -> int:
    """First step of the phase that ``step`` belongs to (0 for warm-up)."""
    step = self._check_step(step)
    return self._final_start if self._in_final(step) else self._regular_start(step)

  def is_mask_update_step(self, step: int) -> bool:
    """True at the first step of every sparse phase (new masks are computed)."""
    return self.phase_at(step) == Phase.SPARSE and self.phase_start(step) == step

  def is_regrow_step(self, step: int) -> bool:
    """True at the first step of every dense phase (masks reset to ones)."""
    return self.phase_at(step) == Phase.DENSE and self.phase_start(step) == step

  def lr_factor_at(self, step: int) -> float:
    """G's learning-rate multiplier: ``dense_lr_factor`` in dense phases, else 1.0."""
    return self.dense_lr_factor if self.phase_at(step) == Phase.DENSE else 1.0

  def last_phase(self, total_steps: Optional[int] = None) -> Phase:
    """Phase of the last step, ``total_steps - 1``, of a run of ``total_steps`` G steps.

    Args:
      total_steps: defaults to the schedule's ``total_steps``.

    Raises:
      ValueError: neither given, or ``total_steps`` < 1.
    """
    if total_steps is None:
      total_steps = self.total_steps
    if total_steps is None:
      raise ValueError("last_phase() needs total_steps: pass it, or construct the schedule "
                       "with total_steps=....")
    total_steps = _as_count("total_steps", total_steps, 1)
    return self.phase_at(total_steps - 1)

  # ------------------------------------------------------------ TensorFlow API

  def _tf_parts(self, step: tf.Tensor):
    """(phase int32, cycle int64, phase_start int64) of a scalar int step tensor."""
    step = tf.cast(step, tf.int64)
    warmup = tf.constant(self.warmup, tf.int64)
    g = tf.constant(self.g, tf.int64)
    offset = tf.math.floormod(tf.maximum(step - warmup, 0), 2 * g)
    in_warmup = step < warmup
    phase = tf.where(in_warmup, int(Phase.WARMUP),
                     tf.where(offset < g, int(Phase.SPARSE), int(Phase.DENSE)))
    cycle = tf.where(in_warmup, tf.constant(0, tf.int64),
                     tf.math.floordiv(tf.maximum(step - warmup, 0), 2 * g) + 1)
    start = tf.where(in_warmup, tf.constant(0, tf.int64),
                     step - offset + tf.where(offset >= g, g, tf.constant(0, tf.int64)))
    if self._final_start is not None:
      final = step >= self._final_start
      phase = tf.where(final, int(Phase.SPARSE), phase)
      cycle = tf.where(final, tf.constant(self._final_cycle, tf.int64), cycle)
      start = tf.where(final, tf.constant(self._final_start, tf.int64), start)
    return tf.cast(phase, tf.int32), cycle, start, step

  def phase_at_tf(self, step: tf.Tensor) -> tf.Tensor:
    """``phase_at`` for a scalar integer tensor; int32 (0/1/2), tf.function-safe."""
    return self._tf_parts(step)[0]

  def cycle_at_tf(self, step: tf.Tensor) -> tf.Tensor:
    """``cycle_at`` for a scalar integer tensor; int64."""
    return self._tf_parts(step)[1]

  def is_mask_update_step_tf(self, step: tf.Tensor) -> tf.Tensor:
    """``is_mask_update_step`` for a scalar integer tensor; bool."""
    phase, _, start, step = self._tf_parts(step)
    return tf.logical_and(tf.equal(phase, int(Phase.SPARSE)), tf.equal(start, step))

  def is_regrow_step_tf(self, step: tf.Tensor) -> tf.Tensor:
    """``is_regrow_step`` for a scalar integer tensor; bool."""
    phase, _, start, step = self._tf_parts(step)
    return tf.logical_and(tf.equal(phase, int(Phase.DENSE)), tf.equal(start, step))

  def lr_factor_at_tf(self, step: tf.Tensor) -> tf.Tensor:
    """``lr_factor_at`` for a scalar integer tensor; float32."""
    return tf.where(tf.equal(self.phase_at_tf(step), int(Phase.DENSE)),
                    tf.constant(self.dense_lr_factor, tf.float32), tf.constant(1.0, tf.float32))

  def __call__(self, step: tf.Tensor):
    """TFMOT ``PruningSchedule`` contract: ``(should_prune, sparsity)`` tensors.

    ``should_prune`` (bool) is True exactly at mask-update steps; ``sparsity``
    (float32) is the target in sparse phases and 0 in warm-up and dense phases.
    """
    phase, _, start, step = self._tf_parts(step)
    sparse = tf.equal(phase, int(Phase.SPARSE))
    should_prune = tf.logical_and(sparse, tf.equal(start, step))
    sparsity = tf.where(sparse, tf.constant(self.sparsity, tf.float32),
                        tf.constant(0.0, tf.float32))
    return should_prune, sparsity

  # ------------------------------------------------------------ serialization

  def get_config(self) -> Dict[str, Any]:
    """TFMOT-style config: ``{'class_name': 'ReganSchedule', 'config': {...}}``."""
    return {
        "class_name": self.__class__.__name__,
        "config": {
            "warmup": self.warmup,
            "g": self.g,
            "sparsity": self.sparsity,
            "dense_lr_factor": self.dense_lr_factor,
            "final_phase": self.final_phase,
            "total_steps": self.total_steps,
        },
    }

  @classmethod
  def from_config(cls, config: Dict[str, Any]) -> "ReganSchedule":
    """Inverse of ``get_config``; accepts the outer TFMOT dict or its inner ``config``."""
    if "class_name" in config and "config" in config:
      if config["class_name"] != cls.__name__:
        raise ValueError(f"config is for class_name={config['class_name']!r}, not "
                         f"{cls.__name__!r}; deserialize it with that class.")
      config = config["config"]
    return cls(**config)

  def __eq__(self, other: object) -> bool:
    return isinstance(other, ReganSchedule) and self.get_config() == other.get_config()

  def __hash__(self) -> int:
    return hash(tuple(sorted(self.get_config()["config"].items(), key=lambda kv: kv[0])))

  def __repr__(self) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in self.get_config()["config"].items())
    return f"ReganSchedule({args})"
