"""Drives Re-GAN's phases from a custom training loop, under tf.distribute.

The trainer owns the loop; the controller owns G's masks (Saxena et al.,
"Re-GAN", CVPR 2023, Alg. 1). Three hooks:

* host side, before every G step, outside ``tf.function``:
  ``before_g_step(step)``. At the first step of a sparse phase it computes, in
  every pruned tensor separately, the mask of the ``sparsity`` smallest |w| and
  zeroes those weights; at the first step of a dense phase it sets every mask to
  ones (the pruned weights regrow from zero); it keeps ``lr_factor`` (G's
  learning-rate multiplier) in step with the schedule. Between phase starts it
  does no TensorFlow work at all.
* in the replica step (traced, XLA-friendly): ``mask_gradients(grads,
  variables)`` before ``apply_gradients`` (a masked weight gets no gradient)
  and ``apply_masks()`` after it (Adam's momentum moves weights even with a zero
  gradient; this restores exact zeros). In dense phases masks are ones and both
  are exact no-ops numerically.

How the learning rate is scaled
-------------------------------
``lr_factor`` is a scalar ``tf.Variable`` (1.0, or ``dense_lr_factor`` in dense
phases). Preferred: build G's optimizer with
``learning_rate=controller.learning_rate(base)``, a ``LearningRateSchedule``
returning ``base * lr_factor``, read by the optimizer at every update, inside
compiled functions and on every replica. Fallback: if the optimizer passed to
``before_g_step`` has a plain (float) learning rate, the controller sets it to
``base * factor`` itself whenever the factor changes, with ``base`` = the
optimizer's rate / the (checkpointed) ``lr_factor`` at the first call, so a
resume mid-dense-phase recovers the base rate. D's optimizer is not involved.

Resume
------
Which masks are in the mask variables is recorded in ``mask_cycle`` (the sparse
phase whose masks they are, 0 for all ones); save it with
``checkpoint_items()``. Masks are wrapper variables saved with the generator.
``before_g_step`` reconciles state rather than reacting to boundaries: masks
must be those of the current sparse phase (or ones outside sparse phases), and
only when they are not does it compute (or clear) them. After a restore at any
step (warm-up, mid-sparse, mid-dense, a boundary) the masks restored from the
checkpoint are kept; new masks are computed only at the first step of a sparse
phase, or (with a warning) when the checkpoint's masks belong to another phase.

Distribution
------------
Mask updates run in one ``tf.function`` in cross-replica context: each mask is
computed once from the weight's primary copy and assigned to every replica's
mask and weight, so all replicas hold identical masks by construction.
``apply_masks`` / ``mask_ema`` called inside ``strategy.run`` use
``merge_call`` + ``strategy.extended.update`` (what Keras optimizers do), so
each replica multiplies its own copy.

Cost
----
A mask update of an SNGAN-sized G (4.3M weights in 11 kernels, or 36 tensors
with biases and BN) takes about 0.1 s on a 2-core CPU (``masks.py``: linear
time, no sort); the first one also traces the update (a few seconds, once per
process). ``apply_masks`` is one multiply per pruned tensor per G step.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from absl import logging

from regan_tf.compat import keras, tf
from regan_tf.pruning import masks as masks_lib
from regan_tf.pruning.schedule import Phase, ReganSchedule
from regan_tf.pruning.wrapper import PrunedTensor, prune_generator, pruned_tensors, strip

__all__ = ["PhaseEvent", "PhaseScaledLearningRate", "ReganController", "build_controller"]


@dataclasses.dataclass(frozen=True)
class PhaseEvent:
  """What ``before_g_step`` did at one step (also logged with absl).

  Attributes:
    step: the G step (0-based).
    kind: 'start' (first call at step 0), 'resume' (first call at a later step,
      masks kept), 'mask_update' (new masks), or 'regrow' (masks set to ones).
    phase: the schedule's phase at ``step``.
    cycle: the sparse-phase number (1-based; 0 in warm-up).
    lr_factor: G's learning-rate multiplier from this step on.
    num_tensors: pruned tensors.
    num_weights: entries in the pruned tensors.
    num_masked: entries whose mask is 0 after the event.
    num_changed: mask entries that differ from the previous sparse mask
      (mask updates only; None for the first mask after a start or resume).
    seconds: wall time of the event's TensorFlow work.
    message: the logged line.
  """
  step: int
  kind: str
  phase: Phase
  cycle: int
  lr_factor: float
  num_tensors: int
  num_weights: int
  num_masked: int
  num_changed: Optional[int]
  seconds: float
  message: str

  def __str__(self) -> str:
    return self.message


class PhaseScaledLearningRate(keras.optimizers.schedules.LearningRateSchedule):
  """``base(step) * lr_factor``: G's learning rate under the Re-GAN schedule.

  ``base`` is a float or another ``LearningRateSchedule``; ``lr_factor`` is the
  controller's variable. Not meant to be serialized (the variable is state of
  the controller); ``get_config`` records the base only.
  """

  def __init__(self, base: Any, lr_factor: tf.Variable):
    super().__init__()
    if not isinstance(base, keras.optimizers.schedules.LearningRateSchedule):
      if isinstance(base, bool) or not isinstance(base, (int, float)) or base <= 0:
        raise ValueError(f"base learning rate {base!r} must be a number > 0 or a "
                         "keras LearningRateSchedule, e.g. 2e-4.")
      base = float(base)
    self.base = base
    self.lr_factor = lr_factor

  def __call__(self, step):
    base = self.base(step) if callable(self.base) else tf.constant(self.base, tf.float32)
    return tf.cast(base, tf.float32) * tf.cast(self.lr_factor, tf.float32)

  def get_config(self) -> Dict[str, Any]:
    base = (keras.optimizers.schedules.serialize(self.base)
            if isinstance(self.base, keras.optimizers.schedules.LearningRateSchedule)
            else self.base)
    return {"base": base}


def _unwrap(variable: tf.Variable) -> tf.Variable:
  """The storage variable behind a mixed-precision ``AutoCastVariable``."""
  if type(variable).__name__ == "AutoCastVariable":
    return variable._variable  # pylint: disable=protected-access
  return variable


def _keys(variable: Any) -> List[Any]:
  keys = [variable.ref()]
  inner = _unwrap(variable)
  if inner is not variable:
    keys.append(inner.ref())
  return keys


def _multiply_assign(variable: tf.Variable, mask: tf.Tensor):
  return variable.assign(variable * tf.cast(mask, variable.dtype))


def _in_cross_replica() -> bool:
  return tf.distribute.in_cross_replica_context()


class ReganController:
  """Re-GAN's phase driver for a pruned generator (see the module docstring).

  Sketch of a trainer's G step (``strategy``: the run's strategy; variables of
  G, D, optimizers and the controller created under ``strategy.scope()``)::

    g_optimizer = keras.optimizers.Adam(controller.learning_rate(2e-4), beta_1=0.5)

    def g_replica_step(z):
      with tf.GradientTape() as tape:
        loss = g_loss(discriminator(generator(z, training=True), training=True))
        loss = loss / strategy.num_replicas_in_sync
      variables = generator.trainable_variables
      grads = controller.mask_gradients(tape.gradient(loss, variables), variables)
      g_optimizer.apply_gradients(zip(grads, variables))
      controller.apply_masks()

    @tf.function
    def g_step(z): strategy.run(g_replica_step, args=(z,))

    checkpoint = tf.train.Checkpoint(generator=generator, g_optimizer=g_optimizer,
                                     **controller.checkpoint_items())
    # ... restore, then:
    for step in range(start_step, total_steps):
      controller.before_g_step(step, g_optimizer)  # events are logged already
      g_step(next_z)

  (``build_controller`` prunes a dense generator and builds the controller in
  one call, converting epochs to steps; ``strip_for_export`` gives the plain
  sparse generator to export.)
  """

  def __init__(self,
               pruned_generator: keras.Model,
               schedule: ReganSchedule,
               *,
               strategy: Optional[tf.distribute.Strategy] = None,
               reset_optimizer_slots: bool = False):
    """Collects the generator's masks and creates the controller's variables.

    Args:
      pruned_generator: output of ``prune_generator`` (built).
      schedule: the ``ReganSchedule``.
      strategy: the strategy the generator's variables were created under;
        default: the current one (``tf.distribute.get_strategy()``).
      reset_optimizer_slots: at every mask update also zero the optimizer's
        slots (Adam's m and v) of the masked entries. The reference code keeps
        them (default False).

    Raises:
      TypeError / ValueError: wrong types, a generator without pruning
        wrappers, or variables created under another strategy.
    """
    if not isinstance(pruned_generator, keras.Model):
      raise TypeError(f"pruned_generator is a {type(pruned_generator).__name__}; pass the "
                      "keras.Model returned by regan_tf.pruning.prune_generator(generator).")
    if not isinstance(schedule, ReganSchedule):
      raise TypeError(f"schedule is a {type(schedule).__name__}; pass a "
                      "regan_tf.pruning.ReganSchedule(warmup=..., g=..., sparsity=...).")
    self.generator = pruned_generator
    self.schedule = schedule
    self.strategy = strategy or tf.distribute.get_strategy()
    self.reset_optimizer_slots = bool(reset_optimizer_slots)
    self.tensors: List[PrunedTensor] = pruned_tensors(pruned_generator)
    if not self.tensors:
      raise ValueError(f"model {pruned_generator.name!r} has no pruning wrappers; pass "
                       "regan_tf.pruning.prune_generator(generator), not the plain generator.")
    for tensor in self.tensors:
      for variable in (_unwrap(tensor.weight), tensor.mask):
        if not self.strategy.extended.variable_created_in_scope(variable):
          raise ValueError(
              f"variable {variable.name!r} of {tensor.name!r} was not created under the "
              f"controller's strategy {type(self.strategy).__name__}; build and prune the "
              "generator inside `with strategy.scope():` and pass strategy=strategy.")
    self._weights = [_unwrap(t.weight) for t in self.tensors]
    self._mask_by_key: Dict[Any, tf.Variable] = {}
    for tensor in self.tensors:
      for key in _keys(tensor.weight):
        self._mask_by_key[key] = tensor.mask
    self._sizes = [int(t.weight.shape.num_elements()) for t in self.tensors]
    self.num_weights = sum(self._sizes)
    # Exact per-tensor pruned counts, known without touching the device.
    self._num_pruned = [masks_lib.num_pruned(n, schedule.sparsity) for n in self._sizes]
    for tensor in self.tensors:
      tensor.wrapper.set_schedule(schedule)

    with self.strategy.scope():
      self.lr_factor = tf.Variable(1.0, trainable=False, dtype=tf.float32,
                                   name="regan_lr_factor")
      # Which sparse phase the masks in the mask variables belong to (0: all ones).
      self.mask_cycle = tf.Variable(0, trainable=False, dtype=tf.int64, name="regan_mask_cycle")
      # The G step at which those masks were computed (-1: none).
      self.mask_step = tf.Variable(-1, trainable=False, dtype=tf.int64, name="regan_mask_step")

    # No Python control flow on tensors in these bodies: autograph only costs time.
    self._update_fn = tf.function(self._update_masks_graph, autograph=False)
    self._regrow_fn = tf.function(self._regrow_graph, autograph=False)
    self._apply_fn = tf.function(self._apply_masks, autograph=False)
    self._zeros_fn = tf.function(self._zero_counts_graph, autograph=False)
    self._mask_zeros_fn = tf.function(self._mask_zero_count_graph, autograph=False)
    self._slot_fns: Dict[int, Any] = {}
    self._previous_masks: Optional[List[tf.Tensor]] = None
    self._current_mask_cycle: Optional[int] = None  # None: read from the variable next call
    self._lr_factor_value: Optional[float] = None
    self._last_step: Optional[int] = None
    # Optimizers with a plain learning rate that the controller scales: id -> base.
    self._optimizer_base_lr: Dict[int, Optional[float]] = {}
    self._optimizer_factor: Dict[int, float] = {}
    # Which replica-step hooks the G step must call; checked at the second G step
    # a process runs (see ``before_g_step``). ``regan_tf.prune_regrow`` asks for
    # both; ``ReganCallback`` for none (it applies the masks after every batch).
    self.required_hooks: Tuple[str, ...] = ()
    # Set when the hooks' Python bodies run (at trace time under tf.function).
    self._hooks_called: Dict[str, bool] = {"mask_gradients": False, "apply_masks": False}
    self._own_variable_keys: Optional[set] = None

  # -------------------------------------------------------------- checkpoints

  def checkpoint_items(self) -> Dict[str, tf.Variable]:
    """Variables to add to the run's ``tf.train.Checkpoint`` (the masks are saved
    with the generator): ``regan_mask_cycle``, ``regan_mask_step`` and
    ``regan_lr_factor``."""
    return {"regan_mask_cycle": self.mask_cycle, "regan_mask_step": self.mask_step,
            "regan_lr_factor": self.lr_factor}

  def resync(self) -> None:
    """Forget cached state so that the next ``before_g_step`` re-reads the
    restored variables; call after restoring a checkpoint into a controller that
    has already run ``before_g_step`` (a fresh controller needs nothing)."""
    self._current_mask_cycle = None
    self._lr_factor_value = None
    self._previous_masks = None
    self._optimizer_base_lr.clear()
    self._optimizer_factor.clear()

  def learning_rate(self, base: Any) -> PhaseScaledLearningRate:
    """G's learning rate for its optimizer: ``base * lr_factor`` (``base``: a
    float or a ``LearningRateSchedule``)."""
    return PhaseScaledLearningRate(base, self.lr_factor)

  # ------------------------------------------------------------ host-side hook

  def before_g_step(self, step: int, optimizer: Any = None) -> List[PhaseEvent]:
    """Brings masks and ``lr_factor`` in line with the schedule for G step ``step``.

    Call once before every G step, outside ``tf.function``. Calling it again for
    the same step does nothing. Outside phase starts (and after the first call)
    it runs no TensorFlow op unless the learning-rate factor changes.

    Args:
      step: the 0-based G step about to run.
      optimizer: G's optimizer (a ``LossScaleOptimizer`` is unwrapped); needed
        with ``reset_optimizer_slots``, and to scale a plain float learning
        rate (see the module docstring).

    Returns:
      The events of this call (usually none), each also logged.

    Raises:
      ValueError: ``reset_optimizer_slots`` without an optimizer.
    """
    step = ReganSchedule._check_step(step)  # pylint: disable=protected-access
    if self.reset_optimizer_slots and optimizer is None:
      raise ValueError("reset_optimizer_slots=True needs G's optimizer: call "
                       "before_g_step(step, g_optimizer).")
    events: List[PhaseEvent] = []
    if step == self._last_step and self._current_mask_cycle is not None:
      return events
    if self._last_step is not None:
      self._check_required_hooks()
    phase = self.schedule.phase_at(step)
    cycle = self.schedule.cycle_at(step)
    wanted = cycle if phase == Phase.SPARSE else 0
    first_call = self._current_mask_cycle is None
    if first_call:
      self._current_mask_cycle = int(self.mask_cycle.numpy())
    factor = self.schedule.lr_factor_at(step)
    if optimizer is not None:
      self._scale_optimizer_lr(optimizer, factor)
    self._set_lr_factor(factor)
    if self._current_mask_cycle != wanted:
      at_start = self.schedule.phase_start(step) == step
      if not at_start:
        logging.warning(
            "Re-GAN: at step %d (%s phase %d) the masks are those of sparse phase %d (0: "
            "none), not of phase %d; %s them now. This happens when a checkpoint lacks "
            "controller.checkpoint_items() or steps were skipped.", step, phase.name.lower(),
            cycle, self._current_mask_cycle, wanted,
            "recomputing" if wanted else "clearing")
      if wanted:
        events.append(self._mask_update(step, phase, cycle, optimizer))
      else:
        events.append(self._regrow(step, phase, cycle))
    elif first_call:
      events.append(self._resume(step, phase, cycle))
    self._last_step = step
    return events

  def _check_required_hooks(self) -> None:
    """Raises if a G step has run without a hook in ``required_hooks``.

    Called at every new step after the first, so a loop that never calls a
    hook fails before its second G update instead of silently training dense.
    The hooks record that their Python body ran (once per trace under
    ``tf.function``); no TensorFlow work is involved.
    """
    missing = [name for name in self.required_hooks if not self._hooks_called[name]]
    if not missing:
      return
    calls = {"mask_gradients": "grads = controller.mask_gradients(grads, variables) before "
                               "optimizer.apply_gradients",
             "apply_masks": "controller.apply_masks() after optimizer.apply_gradients"}
    raise RuntimeError(
        f"Re-GAN: a generator update ran without controller.{missing[0]}()"
        + (f" and controller.{missing[1]}()" if len(missing) > 1 else "")
        + ", so the sparse phases would not stay sparse. In the G training step call "
        + "; and ".join(calls[name] for name in missing)
        + " (controller = regan_tf.controller_of(generator)). With Model.fit use "
        "regan_tf.ReganCallback(generator, g_optimizer=...) instead of the hooks.")

  def _scale_optimizer_lr(self, optimizer: Any, factor: float) -> None:
    """Keeps a plain learning rate at ``base * factor`` (see the module docstring)."""
    key = id(optimizer)
    if key in self._optimizer_base_lr and self._optimizer_base_lr[key] is None:
      return  # driven by a schedule: nothing to do (already checked)
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    schedule = getattr(inner, "_learning_rate", None)
    if schedule is None and hasattr(inner, "_hyper"):  # legacy OptimizerV2
      schedule = inner._hyper.get("learning_rate")  # pylint: disable=protected-access
    if isinstance(schedule, PhaseScaledLearningRate) or isinstance(
        schedule, keras.optimizers.schedules.LearningRateSchedule):
      if not (isinstance(schedule, PhaseScaledLearningRate)
              and schedule.lr_factor is self.lr_factor):
        logging.warning(
            "Re-GAN: G's optimizer uses a learning-rate schedule that does not read this "
            "controller's lr_factor, so dense phases keep the base rate. Build it with "
            "learning_rate=controller.learning_rate(base_or_schedule).")
      self._optimizer_base_lr[key] = None
      return
    if key not in self._optimizer_base_lr:
      # lr_factor holds the factor the optimizer's rate was last scaled with (restored
      # from the checkpoint on resume, 1.0 in a fresh run).
      current = float(tf.convert_to_tensor(inner.learning_rate).numpy())
      self._optimizer_base_lr[key] = current / float(self.lr_factor.numpy())
    if factor != self._optimizer_factor.get(key):
      with self.strategy.scope():
        inner.learning_rate = self._optimizer_base_lr[key] * factor
      self._optimizer_factor[key] = factor

  def _set_lr_factor(self, value: float) -> None:
    if value != self._lr_factor_value:
      with self.strategy.scope():
        self.lr_factor.assign(value)
      self._lr_factor_value = value

  def _event(self, step: int, kind: str, phase: Phase, cycle: int, num_masked: int,
             num_changed: Optional[int], seconds: float, what: str) -> PhaseEvent:
    lr = self.schedule.lr_factor_at(step)
    name = "warm-up" if phase == Phase.WARMUP else f"{phase.name.lower()} phase {cycle}"
    message = f"Re-GAN step {step}: {name}: {what}; G lr x {lr:g}"
    logging.info(message)
    return PhaseEvent(step=step, kind=kind, phase=phase, cycle=cycle, lr_factor=lr,
                      num_tensors=len(self.tensors), num_weights=self.num_weights,
                      num_masked=num_masked, num_changed=num_changed, seconds=seconds,
                      message=message)

  def _mask_update(self, step: int, phase: Phase, cycle: int, optimizer: Any) -> PhaseEvent:
    start = time.perf_counter()
    first = self._previous_masks is None
    if first:  # compare with "nothing masked"; the count is not reported
      self._previous_masks = [tf.ones(t.mask.shape, tf.bool) for t in self.tensors]
    with self.strategy.scope():
      new_masks, changed_t = self._update_fn(tf.constant(step, tf.int64),
                                             tf.constant(cycle, tf.int64), self._previous_masks)
      if self.reset_optimizer_slots:
        self._reset_slots(optimizer)
      changed = int(changed_t.numpy())  # also waits for the update: an honest timing
    seconds = time.perf_counter() - start
    changed = None if first else changed
    self._previous_masks = new_masks
    self._current_mask_cycle = cycle
    masked = sum(self._num_pruned)
    what = (f"masked {100.0 * masked / max(self.num_weights, 1):.1f}% of "
            f"{self.num_weights:,} weights in {len(self.tensors)} tensors in {seconds:.2f} s")
    what += (" (first mask since start or resume)" if changed is None else
             f" ({changed:,} mask entries changed since the previous mask)")
    return self._event(step, "mask_update", phase, cycle, masked, changed, seconds, what)

  def _regrow(self, step: int, phase: Phase, cycle: int) -> PhaseEvent:
    start = time.perf_counter()
    with self.strategy.scope():
      self._regrow_fn(tf.constant(step, tf.int64))
      self.mask_cycle.numpy()
    seconds = time.perf_counter() - start
    self._current_mask_cycle = 0
    regrown = sum(self._num_pruned)
    what = (f"masks set to ones: {regrown:,} of {self.num_weights:,} weights in "
            f"{len(self.tensors)} tensors regrow from zero ({seconds:.2f} s)")
    return self._event(step, "regrow", phase, cycle, 0, None, seconds, what)

  def _resume(self, step: int, phase: Phase, cycle: int) -> PhaseEvent:
    start = time.perf_counter()
    with self.strategy.scope():
      self._apply_fn()  # masks kept; weights re-zeroed in case they were not
      for wrapper in self._wrappers():
        if int(wrapper.pruning_step.numpy()) < 0:
          # Marks the wrappers as driven (strict wrappers check it in training). A
          # restored value is kept, so a resumed run's state equals an uninterrupted one's.
          wrapper.pruning_step.assign(step)
    seconds = time.perf_counter() - start
    # Counted on the restored masks themselves: a resumed run whose sparsity
    # setting changed still reports what its masks hold.
    with self.strategy.scope():
      masked = int(self._mask_zeros_fn().numpy()) if phase == Phase.SPARSE else 0
    if phase == Phase.SPARSE:
      what = f"masks of this phase kept ({masked:,} of {self.num_weights:,} weights masked)"
    else:
      what = f"dense, {self.num_weights:,} prunable weights in {len(self.tensors)} tensors"
    if phase == Phase.WARMUP:
      what += f"; first sparse phase at step {self.schedule.warmup}"
    kind = "start" if step == 0 else "resume"
    return self._event(step, kind, phase, cycle, masked, None, seconds,
                       ("starting: " if kind == "start" else "resuming: ") + what)

  # ------------------------------------------------------ compiled bodies

  def _update_masks_graph(self, step, cycle, previous_masks):
    """New per-tensor magnitude masks; weights *= mask. Cross-replica context:
    each mask is computed once (from the primary copy) and assigned to all
    replicas' masks and weights."""
    new_masks, thresholds = masks_lib.magnitude_masks_and_thresholds(
        [w.read_value() for w in self._weights], self.schedule.sparsity)
    changed = tf.constant(0, tf.int64)
    keeps = []
    for i, tensor in enumerate(self.tensors):
      weight, mask = self._weights[i], new_masks[i]
      keep = mask > 0
      changed += tf.math.count_nonzero(tf.not_equal(keep, previous_masks[i]), dtype=tf.int64)
      tensor.mask.assign(tf.cast(mask, tensor.mask.dtype))
      tensor.threshold.assign(tf.cast(thresholds[i], tensor.threshold.dtype))
      weight.assign(weight * tf.cast(mask, weight.dtype))
      keeps.append(keep)
    for wrapper in self._wrappers():
      wrapper.pruning_step.assign(step)
    self.mask_cycle.assign(cycle)
    self.mask_step.assign(step)
    return keeps, changed

  def _regrow_graph(self, step):
    for tensor in self.tensors:
      tensor.mask.assign(tf.ones_like(tensor.mask))
      tensor.threshold.assign(tf.zeros_like(tensor.threshold))
    for wrapper in self._wrappers():
      wrapper.pruning_step.assign(step)
    self.mask_cycle.assign(0)
    self.mask_step.assign(-1)

  def _wrappers(self) -> List[Any]:
    """The distinct pruning wrappers, in layer order."""
    return list({id(t.wrapper): t.wrapper for t in self.tensors}.values())

  def _mask_zero_count_graph(self):
    return tf.add_n([tf.math.count_nonzero(tf.equal(t.mask, 0), dtype=tf.int64) for t in self.tensors])

  def _zero_counts_graph(self):
    return tf.stack([tf.math.count_nonzero(tf.equal(w, 0), dtype=tf.int64)
                     for w in self._weights])

  def _reset_slots(self, optimizer: Any) -> None:
    fn = self._slot_fns.get(id(optimizer))
    if fn is None:
      pairs = []
      for tensor in self.tensors:
        for slot in _optimizer_slots(optimizer, tensor.weight):
          pairs.append((slot, tensor.mask))
      if not pairs:
        logging.info("Re-GAN: optimizer %s has no slots yet; nothing to reset.",
                     type(optimizer).__name__)
        return  # not built yet (warmup=0): try again next time

      def reset():
        for slot, mask in pairs:
          slot.assign(slot * tf.cast(mask, slot.dtype))

      fn = tf.function(reset, autograph=False)
      self._slot_fns[id(optimizer)] = fn
    fn()

  # ------------------------------------------------------ replica-step hooks

  def mask_gradients(self, grads: Sequence[Optional[tf.Tensor]],
                     variables: Sequence[tf.Variable]) -> List[Optional[tf.Tensor]]:
    """Multiplies the gradient of every pruned weight by its mask.

    Call in the replica step between ``tape.gradient`` and
    ``apply_gradients``; other variables (and None gradients) pass through.
    One elementwise multiply per pruned tensor, also in dense phases (masks are
    ones then), so the traced graph does not depend on the phase.

    Args:
      grads: gradients, aligned with ``variables``.
      variables: the variables the gradients belong to.

    Returns:
      The masked gradients, a list aligned with ``variables``.

    Raises:
      ValueError: misaligned lists, or no variable is a pruned weight while some
        are not the pruned generator's (typically the variables of the original,
        unpruned model: ``build_controller`` and ``prune_regrow`` return a clone).
    """
    self._hooks_called["mask_gradients"] = True
    grads = list(grads)
    variables = list(variables)
    if len(grads) != len(variables):
      raise ValueError(f"got {len(grads)} gradients for {len(variables)} variables; pass "
                       "the gradients and the variables they were taken for, aligned.")
    self._check_variables_match(variables)
    out = []
    for grad, variable in zip(grads, variables):
      mask = self._mask_by_key.get(variable.ref())
      if grad is None or mask is None:
        out.append(grad)
      elif isinstance(grad, tf.IndexedSlices):
        values = grad.values * tf.cast(tf.gather(mask, grad.indices), grad.values.dtype)
        out.append(tf.IndexedSlices(values, grad.indices, grad.dense_shape))
      else:
        out.append(grad * tf.cast(mask, grad.dtype))
    return out

  def _check_variables_match(self, variables: Sequence[tf.Variable]) -> None:
    """Trace-time check of ``mask_gradients``' variables (see its Raises)."""
    if any(key in self._mask_by_key for v in variables for key in _keys(v)):
      return
    if self._own_variable_keys is None:
      self._own_variable_keys = {key for v in self.generator.variables for key in _keys(v)}
    foreign = [v for v in variables if not any(k in self._own_variable_keys for k in _keys(v))]
    if not foreign:
      return  # e.g. a growing ProGAN's early stage: G's own variables, none of them pruned
    raise ValueError(
        f"mask_gradients got {len(variables)} variables, none of which is a pruned weight of "
        f"{self.generator.name!r} (e.g. {foreign[0].name!r} is not even one of its variables), "
        "so nothing would be masked. Pass the variables of the pruned generator (the model "
        "returned by regan_tf.prune_regrow / build_controller(...).generator, which is a clone "
        "of the original), e.g. pruned_generator.trainable_variables.")

  def apply_masks(self) -> None:
    """``w = w * mask`` for every pruned weight (exact zeros after an update).

    Call after ``apply_gradients`` in the replica step (uses ``merge_call``, as
    Keras optimizers do) or in cross-replica context, eagerly or traced.
    """
    self._hooks_called["apply_masks"] = True
    self._apply_masks()

  def _apply_masks(self) -> None:
    _update_each(list(zip(self._weights, [t.mask for t in self.tensors])))

  def mask_ema(self, ema_variables: Sequence[tf.Variable],
               model_variables: Optional[Sequence[tf.Variable]] = None) -> None:
    """Zeroes the masked entries of EMA copies of G's weights.

    Args:
      ema_variables: the EMA variables, aligned with ``model_variables``.
      model_variables: the generator variables they average; default
        ``pruned_generator.trainable_variables``. Pairs whose model variable
        is not pruned are skipped.

    Works in replica and cross-replica context, eagerly or traced.
    """
    ema_variables = list(ema_variables)
    if model_variables is None:
      model_variables = self.generator.trainable_variables
    model_variables = list(model_variables)
    if len(ema_variables) != len(model_variables):
      raise ValueError(f"got {len(ema_variables)} EMA variables for {len(model_variables)} "
                       "model variables; pass them aligned (default model_variables: "
                       "pruned_generator.trainable_variables).")
    pairs = []
    for ema, variable in zip(ema_variables, model_variables):
      mask = self._mask_by_key.get(variable.ref())
      if mask is None:
        continue
      if ema.shape != variable.shape:
        raise ValueError(f"EMA variable {ema.name!r} has shape {ema.shape} but "
                         f"{variable.name!r} has {variable.shape}; align the two lists.")
      pairs.append((_unwrap(ema), mask))
    _update_each(pairs)

  # -------------------------------------------------------------- summaries

  @property
  def phase(self) -> Optional[Phase]:
    """Phase of the last step passed to ``before_g_step`` (None before the first)."""
    return None if self._last_step is None else self.schedule.phase_at(self._last_step)

  def summary_scalars(self) -> Dict[str, float]:
    """Scalars for TensorBoard (reads the weights: call at summary steps only).

    Returns:
      ``{'regan/phase': 0/1/2, 'regan/cycle': ..., 'regan/lr_factor': ...,
      'regan/sparsity/overall': zero fraction over all pruned tensors,
      'regan/sparsity/<layer>/<weight>': zero fraction of each}``; the actual
      zeros of the weights, not the target.
    """
    step = self._last_step
    with self.strategy.scope():
      zeros = self._zeros_fn().numpy()
    scalars = {
        "regan/phase": float(self.schedule.phase_at(step)) if step is not None else 0.0,
        "regan/cycle": float(self.schedule.cycle_at(step)) if step is not None else 0.0,
        "regan/lr_factor": float(self.lr_factor.numpy()),
        "regan/sparsity/overall": float(zeros.sum()) / max(self.num_weights, 1),
    }
    for tensor, size, count in zip(self.tensors, self._sizes, zeros):
      scalars[f"regan/sparsity/{tensor.name}"] = float(count) / max(size, 1)
    return scalars


  # ----------------------------------------------------------------- export

  def strip_for_export(self) -> keras.Model:
    """``wrapper.strip`` of the generator: a plain model, masked weights zero
    (in a sparse phase; in a dense phase masks are ones and nothing is zeroed)."""
    return strip(self.generator)

  def export_sparsity(self, exported: keras.Model, missing_ok: bool = False) -> float:
    """Fraction of exact zeros over the pruned tensors, read from ``exported``
    (the stripped model, found by layer and weight name) — what was exported.
    ``missing_ok``: see :meth:`export_sparsity_per_tensor`."""
    per_tensor = self.export_sparsity_per_tensor(exported, missing_ok=missing_ok)
    zeros = sum(z for z, _ in per_tensor.values())
    total = sum(n for _, n in per_tensor.values())
    return zeros / max(total, 1)

  def export_sparsity_per_tensor(self, exported: keras.Model,
                                 missing_ok: bool = False) -> Dict[str, Tuple[int, int]]:
    """``{pruned tensor name: (exact zeros, size)}`` read from ``exported``.

    ``missing_ok``: skip pruned tensors whose layer ``exported`` does not
    contain (a growing ProGAN exported before its last stage holds only the
    layers up to its stage); otherwise a missing layer is an error.
    """
    counts = {}
    names = None
    for tensor in self.tensors:
      *path, weight_name = tensor.name.split("/")
      if missing_ok:
        names = names if names is not None else {l.name for l in exported.layers}
        if path[0] not in names:
          continue
      layer = exported
      for name in path:
        layer = layer.get_layer(name)
      matches = [w for w in layer.weights if w.name.split("/")[-1].split(":")[0] == weight_name]
      if len(matches) != 1:
        raise ValueError(f"exported model has {len(matches)} weights named {tensor.name!r}; "
                         "pass the model returned by strip_for_export().")
      values = matches[0].numpy()
      counts[tensor.name] = (int((values == 0).sum()), int(values.size))
    return counts


def epochs_to_steps(name: str, epochs: float, steps_per_epoch: Optional[float],
                    minimum: int) -> int:
  """``epochs`` as G steps (rounded half up, at least ``minimum``); ``name`` is for errors."""
  if steps_per_epoch is None or not steps_per_epoch > 0:
    raise ValueError(f"{name}={epochs} is in epochs, which needs steps_per_epoch > 0 (got "
                     f"{steps_per_epoch}); pass steps_per_epoch, or give the length in G steps.")
  if isinstance(epochs, bool) or not isinstance(epochs, (int, float)) or epochs < 0:
    raise ValueError(f"{name}={epochs!r} must be a number of epochs >= 0.")
  return max(minimum, int(math.floor(epochs * steps_per_epoch + 0.5)))


def build_controller(generator: keras.Model,
                     *,
                     sparsity: float,
                     warmup: Optional[int] = None,
                     g: Optional[int] = None,
                     warmup_epochs: Optional[float] = None,
                     g_epochs: Optional[float] = None,
                     dense_lr_factor: float = 0.1,
                     final_phase: Optional[str] = None,
                     prune_biases_and_norms: bool = False,
                     exclude: Union[str, Sequence[str]] = (),
                     reset_optimizer_slots: bool = False,
                     strategy: Optional[tf.distribute.Strategy] = None,
                     steps_per_epoch: Optional[float] = None,
                     train_steps: Optional[int] = None,
                     start_step: int = 0) -> ReganController:
  """Prunes ``generator`` and returns its ``ReganController`` (one call for a trainer).

  Lengths are given either in G steps (``warmup``, ``g``) or in epochs
  (``warmup_epochs``, ``g_epochs``, converted with ``steps_per_epoch`` and
  rounded to the nearest step, half up; ``g`` at least 1).

  Args:
    generator: the dense Functional/Sequential generator (built).
    sparsity, dense_lr_factor, final_phase: see ``ReganSchedule``.
    warmup, g: in G steps; or warmup_epochs, g_epochs: in epochs (exactly one
      of each pair).
    prune_biases_and_norms, exclude: see ``prune_generator``.
    reset_optimizer_slots: see ``ReganController``.
    strategy: the run's strategy (variables are created in its scope).
    steps_per_epoch: G steps per epoch (a float), for the ``*_epochs`` lengths.
    train_steps: the run's G steps; the schedule's ``total_steps``.
    start_step: the G step from which the warm-up is counted (a growing
      ProGAN run passes the first step of the stage Re-GAN starts in); the
      schedule's warm-up is ``start_step + warmup``.

  Raises:
    ValueError: both or neither of a pair, or invalid values.
  """
  lengths = {}
  for name, in_steps, in_epochs, minimum in (("warmup", warmup, warmup_epochs, 0),
                                             ("g", g, g_epochs, 1)):
    if (in_steps is None) == (in_epochs is None):
      raise ValueError(f"give exactly one of {name} (G steps) and {name}_epochs (epochs); got "
                       f"{name}={in_steps}, {name}_epochs={in_epochs}.")
    lengths[name] = (in_steps if in_epochs is None else
                     epochs_to_steps(f"{name}_epochs", in_epochs, steps_per_epoch, minimum))
  if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 0:
    raise ValueError(f"start_step={start_step!r} must be an integer >= 0 (the G step the warm-up "
                     "is counted from).")
  schedule = ReganSchedule(warmup=start_step + lengths["warmup"], g=lengths["g"], sparsity=sparsity,
                           dense_lr_factor=dense_lr_factor, final_phase=final_phase,
                           total_steps=train_steps)
  strategy = strategy or tf.distribute.get_strategy()
  with strategy.scope():
    pruned = prune_generator(generator, prune_biases_and_norms=prune_biases_and_norms,
                             exclude=exclude, schedule=schedule)
    controller = ReganController(pruned, schedule, strategy=strategy,
                                 reset_optimizer_slots=reset_optimizer_slots)
  logging.info("Re-GAN: %r", schedule)
  return controller


def _update_each(pairs) -> None:
  """``variable *= mask`` for (variable, mask) pairs, in either distribution context."""

  def update(strategy, pairs):
    for variable, mask in pairs:
      strategy.extended.update(variable, _multiply_assign, args=(mask,), group=False)

  if not pairs:
    return
  if _in_cross_replica():
    update(tf.distribute.get_strategy(), pairs)
  else:
    tf.distribute.get_replica_context().merge_call(update, args=(pairs,))


def _optimizer_slots(optimizer: Any, variable: tf.Variable) -> List[tf.Variable]:
  """The optimizer's per-variable slots of ``variable`` (e.g. Adam's m and v).

  Supports Keras 2's optimizers (``tf_keras.optimizers``: per-slot lists indexed
  through ``_index_dict``) and the legacy ``OptimizerV2`` (``get_slot``).
  Returns [] if the optimizer has not built its slots yet.
  """
  optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer
  if hasattr(optimizer, "get_slot_names"):
    slots = []
    for name in optimizer.get_slot_names():
      try:
        slots.append(optimizer.get_slot(variable, name))
      except (KeyError, ValueError):
        pass
    return slots
  index_dict = getattr(optimizer, "_index_dict", None)
  if not index_dict:
    return []
  key = optimizer._var_key(variable)  # pylint: disable=protected-access
  if key not in index_dict:
    return []
  index = index_dict[key]
  own = {v.ref() for v in (variable, _unwrap(variable))}
  slots = []
  for name, value in vars(optimizer).items():
    if name in ("_variables", "_trainable_variables") or not isinstance(value, (list, tuple)):
      continue
    if len(value) != len(index_dict) or not all(isinstance(x, tf.Variable) for x in value):
      continue
    slot = value[index]
    if slot.ref() not in own and slot.shape == variable.shape:
      slots.append(slot)
  return slots
