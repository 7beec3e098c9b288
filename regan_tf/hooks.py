"""Periodic work around the training loop, as small objects the loop calls.

The loop in ``regan_tf.trainer`` runs one :class:`~regan_tf.train_step.TrainStep`
per generator step and calls, for every hook in order:

- ``before_step(step)`` with the 0-based index of the step about to run;
- ``after_step(step, outputs)`` with the number of steps done (so ``step`` is
  the label of the state the models now hold) and the step's outputs;
- ``end(step)`` once, whether the loop finished, was interrupted or raised.

Each hook decides for itself whether this step is its turn (:func:`itstime`).
The order in which the trainer lists them is meaningful: logging (with the NaN
check) before sample grids, evaluation before the checkpoint (so the
checkpoint holds the best FID it saw).
"""

from __future__ import annotations

import json
import logging as logging_lib
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from regan_tf import images as images_lib
from regan_tf.compat import keras, tf

__all__ = ["CheckpointHook", "DivergenceHook", "EvaluationHook", "FiniteSaver", "Hook", "LogHook", "Metrics",
           "MetricsRecord", "RunLog", "PhaseHook", "ProfileHook",
           "SampleGridHook", "itstime"]

Outputs = Mapping[str, tf.Tensor]


def itstime(step: int, every: int, total: int) -> bool:
  """Whether ``step`` (steps done) is a multiple of ``every`` (>0) or the last step."""
  return (every > 0 and step % every == 0) or step == total


class Metrics(dict):
  """The latest logged scalars and evaluation scores; what ``train`` returns."""


class Hook:
  """Base class: every method is optional."""

  def before_step(self, step: int) -> None:
    """Before step ``step`` (0-based) runs."""

  def after_step(self, step: int, outputs: Outputs) -> None:
    """After a step: ``step`` steps are done; ``outputs`` are the step's scalars."""

  def end(self, step: int) -> None:
    """Once, when the loop stops for any reason, after ``step`` steps."""


class PhaseHook(Hook):
  """Re-GAN's host-side work before each G step: phase changes, masks, the lr factor.

  The controller logs phase changes itself; TensorBoard gets their numbers at
  the step they happened. ``after_event``, if given, is called with each
  event (the multi-worker run checks there that all workers hold the same
  masks).
  """

  def __init__(self, controller: Any, g_optimizer: Any, writer: tf.summary.SummaryWriter,
               after_event: Optional[Callable[[Any], None]] = None):
    self._controller, self._g_optimizer, self._writer = controller, g_optimizer, writer
    self._after_event = after_event

  def before_step(self, step: int) -> None:
    for event in self._controller.before_g_step(step, self._g_optimizer):
      if self._after_event is not None:
        self._after_event(event)
      with self._writer.as_default(step=event.step):
        tf.summary.scalar("regan/phase", int(event.phase))
        tf.summary.scalar("regan/masked_weights", event.num_masked)
        tf.summary.scalar("regan/event_seconds", event.seconds)
        if event.num_changed is not None:
          tf.summary.scalar("regan/mask_entries_changed", event.num_changed)


class ProfileHook(Hook):
  """A TensorFlow profiler trace of steps ``first..last`` (0-based, inclusive) into ``logdir``."""

  def __init__(self, first: int, last: int, logdir: str):
    self._first, self._last, self._logdir = first, last, logdir
    self._running = False

  def before_step(self, step: int) -> None:
    if step == self._first:
      tf.profiler.experimental.start(self._logdir)
      self._running = True
      logging.info("Profiling steps %d..%d into %s.", self._first, self._last, self._logdir)

  def after_step(self, step: int, outputs: Outputs) -> None:
    if self._running and step - 1 == self._last:
      float(outputs["g_loss"])  # the traced steps must have finished
      tf.profiler.experimental.stop()
      self._running = False

  def end(self, step: int) -> None:
    if self._running:
      tf.profiler.experimental.stop()
      self._running = False


_SUMMARY_GROUPS = {"d_loss": "loss", "g_loss": "loss", "gp": "loss", "d_real": "discriminator",
                   "d_fake": "discriminator", "steps_per_sec": "speed", "images_per_sec": "speed",
                   "g_lr": "learning_rate", "d_lr": "learning_rate", "r1": "regularization",
                   "pl_penalty": "regularization", "pl_mean": "regularization"}


def summary_name(key: str) -> str:
  """TensorBoard tag of a logged scalar (losses under ``loss/``, rates under ``speed/``, ...)."""
  group = _SUMMARY_GROUPS.get(key)
  return f"{group}/{key}" if group else key


def format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class LogHook(Hook):
  """Every ``every`` steps: checks the losses are finite, logs a line and writes scalars.

  Args:
    every, total: cadence and the run's last step.
    writer: TensorBoard writer.
    metrics: where the logged scalars go (replaced on each log step).
    extra_scalars: called with the step; returns more scalars (rates, FLOPs,
      learning rates, Re-GAN and APA state, growth stage).
    images_per_step: called with no arguments; images one step processes
      (batch x (n_critic + 1); a growing run's batch changes).
    last_checkpoint: called with no arguments; the newest checkpoint path,
      named when the NaN check stops the run.
    record: called as ``record('log', step, scalars)`` on each log step
      (:class:`MetricsRecord`), or None.
  """

  _REGULARIZATION = ("r1", "pl_penalty")

  def __init__(self, every: int, total: int, writer: tf.summary.SummaryWriter, metrics: Metrics, *,
               extra_scalars: Callable[[int], Dict[str, float]], images_per_step: Callable[[], int],
               last_checkpoint: Callable[[], Optional[str]],
               record: Optional[Callable[[str, int, Mapping[str, float]], None]] = None):
    self._every, self._total, self._writer, self._metrics = every, total, writer, metrics
    self._record = record
    self._extra, self._images_per_step, self._last_checkpoint = extra_scalars, images_per_step, last_checkpoint
    self._last_regularization: Dict[str, tf.Tensor] = {}
    self._last_time: Optional[float] = None
    self._last_step = 0

  def before_step(self, step: int) -> None:
    if self._last_time is None:
      self._last_time, self._last_step = time.time(), step

  def after_step(self, step: int, outputs: Outputs) -> None:
    # Regularization steps run every k iterations: log their latest values.
    self._last_regularization.update({k: v for k, v in outputs.items() if k in self._REGULARIZATION})
    if not itstime(step, self._every, self._total):
      return
    metrics = {k: float(v) for k, v in {**outputs, **self._last_regularization}.items()}
    bad = [k for k, v in metrics.items() if not np.isfinite(v)]
    if bad:
      raise FloatingPointError(
          f"Non-finite {', '.join(bad)} at step {step} ({metrics}); they were finite at step "
          f"{self._last_step}, so they went bad in steps {self._last_step + 1}..{step}. The newest "
          f"checkpoint, {self._last_checkpoint()}, is finite (no checkpoint holds a non-finite value). "
          "Lower the learning rates or check the data.")
    now = time.time()
    rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_time, self._last_step = now, step
    metrics["steps_per_sec"] = rate
    metrics["images_per_sec"] = rate * self._images_per_step()
    metrics.update(self._extra(step))
    with self._writer.as_default(step=step):
      for k, v in metrics.items():
        tf.summary.scalar(summary_name(k), v)
    self._metrics.clear()
    self._metrics.update(metrics)
    if self._record is not None:
      self._record("log", step, metrics)
    logging.info(
        "step %d/%d (%.1f%%) | %.2f it/s | d_loss %.4f g_loss %.4f | D(real) %.3f D(fake) %.3f | ETA %s",
        step, self._total, 100.0 * step / max(self._total, 1), rate, metrics["d_loss"], metrics["g_loss"],
        metrics["d_real"], metrics["d_fake"], format_duration((self._total - step) / max(rate, 1e-9)))


def write_grid(writer: tf.summary.SummaryWriter, workdir: str, generator: keras.Model, z: tf.Tensor,
               step: int) -> None:
  """Writes the fixed-latent sample grid to ``samples/step_N.png`` and TensorBoard."""
  samples = generator(z, training=False).numpy()
  grid = images_lib.make_grid(samples)
  images_lib.write_png(os.path.join(workdir, "samples", f"step_{step:08d}.png"), grid)
  with writer.as_default(step=step):
    tf.summary.image("samples/fixed_z", grid[None], max_outputs=1)


class SampleGridHook(Hook):
  """Every ``every`` steps: a sample grid from the fixed latents ``z``.

  ``sampler`` is called with no arguments and returns the model that samples
  now (the EMA generator when there is one; a growing run's current stage).
  """

  def __init__(self, every: int, total: int, writer: tf.summary.SummaryWriter, workdir: str,
               sampler: Callable[[], keras.Model], z: tf.Tensor):
    self._every, self._total, self._writer, self._workdir = every, total, writer, workdir
    self._sampler, self._z = sampler, z

  def after_step(self, step: int, outputs: Outputs) -> None:
    if itstime(step, self._every, self._total):
      write_grid(self._writer, self._workdir, self._sampler(), self._z, step)


class EvaluationHook(Hook):
  """Every ``every`` steps (0: the last only): FID etc.; keeps the best-FID checkpoint.

  Args:
    evaluator: a ``regan_tf.metrics.Evaluator``.
    every, total: cadence and the run's last step.
    sampler: called with no arguments; the model to evaluate now.
    writer: TensorBoard writer.
    metrics: the scores are added to it.
    best_fid: the checkpointed best FID so far.
    best_manager: the ``best/`` checkpoint manager (keeps one).
    saver: writes the best checkpoint (only of a finite state).
    record: called as ``record('eval', step, scores)``, or None.
  """

  def __init__(self, evaluator: Any, every: int, total: int, sampler: Callable[[], keras.Model],
               writer: tf.summary.SummaryWriter, metrics: Metrics, *, best_fid: tf.Variable,
               best_manager: tf.train.CheckpointManager, saver: FiniteSaver,
               record: Optional[Callable[[str, int, Mapping[str, float]], None]] = None):
    self._evaluator, self._every, self._total, self._sampler = evaluator, every, total, sampler
    self._writer, self._metrics = writer, metrics
    self._best_fid, self._best_manager, self._saver = best_fid, best_manager, saver
    self._record = record

  def after_step(self, step: int, outputs: Outputs) -> None:
    if itstime(step, self._every, self._total):
      self._metrics.update(self.evaluate(step))

  def evaluate(self, step: int) -> Dict[str, float]:
    """Scores the current sampler; saves ``best/`` when FID improved."""
    start = time.time()
    generator = self._sampler()
    scores = self._evaluator.evaluate(lambda z: generator(z, training=False))
    fid_name = self._evaluator.metric_names[0]
    with self._writer.as_default(step=step):
      for name, value in scores.items():
        tf.summary.scalar(f"eval/{name}", value)
    improved = scores[fid_name] < float(self._best_fid.numpy())
    logging.info("eval at step %d (%d samples, %.1f s): %s%s", step, self._evaluator.num_samples,
                 time.time() - start, ", ".join(f"{k} {v:.4f}" for k, v in scores.items()),
                 " (best so far)" if improved else "")
    if improved:
      self._best_fid.assign(scores[fid_name])
      self._saver.save(self._best_manager, step)
    if self._record is not None:
      self._record("eval", step, {**scores, "best_" + fid_name: float(self._best_fid.numpy())})
    return scores


class FiniteSaver:
  """Writes checkpoints, but never one that holds a non-finite value.

  Before each save ``all_finite()`` checks the state (G, D and the EMA's
  weights); on NaN or Inf it raises instead, naming the steps between which
  the values went bad and the newest checkpoint, which is finite like every
  checkpoint written through this saver.

  Args:
    step_var: the checkpointed step label, assigned before each save.
    all_finite: returns whether every checked variable is finite.
    start_step: the step the state was last known finite (the run's start).
  """

  def __init__(self, step_var: tf.Variable, all_finite: Callable[[], bool], start_step: int = 0):
    self._step_var, self._all_finite = step_var, all_finite
    self.last_finite_step = start_step

  def check(self, step: int, newest: Optional[str]) -> None:
    """Raises FloatingPointError if the state after ``step`` steps is not finite."""
    if not self._all_finite():
      raise FloatingPointError(
          f"Non-finite weights after step {step}; they were finite after step {self.last_finite_step}, so "
          f"they went bad in steps {self.last_finite_step + 1}..{step}. Nothing was saved; the newest "
          f"checkpoint ({newest}) is finite. Lower the learning rates or check the data, then rerun "
          "(it resumes from that checkpoint).")
    self.last_finite_step = step

  def save(self, manager: tf.train.CheckpointManager, step: int) -> str:
    """Checks the state, then saves it to ``manager`` labelled ``step``; returns the path."""
    self.check(step, manager.latest_checkpoint)
    self._step_var.assign(step)
    return manager.save(checkpoint_number=step)


class CheckpointHook(Hook):
  """Every ``every`` steps and at the last: a checkpoint labelled with the steps done."""

  def __init__(self, every: int, total: int, manager: tf.train.CheckpointManager, saver: FiniteSaver):
    self._every, self._total, self._manager, self._saver = every, total, manager, saver

  def after_step(self, step: int, outputs: Outputs) -> None:
    if itstime(step, self._every, self._total):
      self.save(step)

  def save(self, step: int) -> str:
    """Saves now (if the state is finite), labelled ``step``; returns the path."""
    return self._saver.save(self._manager, step)


class DivergenceHook(Hook):
  """On log steps: warns about (or stops) a run that is diverging without NaNs yet.

  Two signs, each a common end of a GAN run gone wrong:

  - D's loss pinned at (nearly) zero for ``window`` log steps in a row: D
    separates real from fake outright and G gets no useful gradient (hinge
    and non-saturating losses only; a Wasserstein critic's loss has no floor).
  - G's weight norm more than ``growth`` times what it was at the first check.

  Args:
    mode: ``warn`` (a warning the first time each sign shows) or ``stop``
      (raise FloatingPointError).
    every, total: the log cadence and the run's last step.
    g_norm: returns G's global weight norm.
    d_floor: whether D's loss has a floor at 0 (not for ``wasserstein``).
    window, growth: the two thresholds.
  """

  def __init__(self, mode: str, every: int, total: int, g_norm: Callable[[], float], *, d_floor: bool,
               window: int = 5, growth: float = 1e3):
    if mode not in ("warn", "stop"):
      raise ValueError(f"DivergenceHook mode must be 'warn' or 'stop', got {mode!r}.")
    self._mode, self._every, self._total, self._g_norm = mode, every, total, g_norm
    self._d_floor, self._window, self._growth = d_floor, window, growth
    self._pinned = 0
    self._first: Optional[Tuple[int, float]] = None
    self._warned = set()

  def after_step(self, step: int, outputs: Outputs) -> None:
    if not itstime(step, self._every, self._total):
      return
    signs = {}
    d_loss = float(outputs["d_loss"])
    self._pinned = self._pinned + 1 if self._d_floor and abs(d_loss) < 1e-4 else 0
    if self._pinned >= self._window:
      signs["d_loss"] = (f"D's loss has been below 1e-4 at the last {self._pinned} log steps (now {d_loss:.3g}): "
                         "D wins outright and G gets no useful gradient")
    norm = self._g_norm()
    if self._first is None:
      self._first = (step, norm)
    elif norm > self._growth * max(self._first[1], 1e-12):
      signs["g_norm"] = (f"G's weight norm is {norm:.3g}, {norm / max(self._first[1], 1e-12):.3g}x its value "
                         f"at step {self._first[0]}")
    if not signs:
      return
    message = (f"The run looks divergent at step {step}: {'; '.join(signs.values())}. Lower the learning "
               "rates (train.g_lr, train.d_lr) or check the data")
    if self._mode == "stop":
      raise FloatingPointError(message + "; stopped (train.divergence_guard = 'stop').")
    if set(signs) - self._warned:
      logging.warning("%s (train.divergence_guard = 'stop' stops such a run).", message)
      self._warned |= set(signs)


def run_hooks(hooks: Sequence[Hook], method: str, *args: Any) -> None:
  """Calls ``method`` on every hook, in order."""
  for hook in hooks:
    getattr(hook, method)(*args)


class MetricsRecord:
  """``metrics.jsonl`` in the run directory: one JSON object per log step and per evaluation.

  Each line has ``kind`` (``log`` or ``eval``), ``step``, ``time`` (Unix
  seconds) and the scalars of that moment (losses, learning rates, Re-GAN's
  phase and sparsity, images/s, FLOPs; or the evaluation's scores). Lines are
  appended and flushed, so the file survives any stop and grows across resumes.
  """

  def __init__(self, path: str):
    self.path = path

  def __call__(self, kind: str, step: int, values: Mapping[str, float]) -> None:
    row = {"kind": kind, "step": int(step), "time": round(time.time(), 3)}
    row.update({k: (float(v) if np.isfinite(v) else str(v)) for k, v in values.items()})
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")


_LIBRARY_PATHS = (f"{os.sep}tensorflow{os.sep}", f"{os.sep}tf_keras{os.sep}", f"{os.sep}tensorflow_datasets{os.sep}")


def drop_library_info(record: logging_lib.LogRecord) -> bool:
  """A logging filter: False (drop) for INFO and DEBUG lines logged from inside TensorFlow's packages.

  TensorFlow logs routine notices (checkpoint sharding timings, SavedModel
  input names, fingerprints) through absl; warnings and errors still pass.
  """
  return record.levelno >= logging_lib.WARNING or not any(p in record.pathname for p in _LIBRARY_PATHS)


class RunLog(logging_lib.Handler):
  """Copies the run's log lines to ``log.txt`` in the run directory, appended across resumes.

  Attach it when the run starts; lines logged before the run directory exists
  are held and written when :meth:`open` is called with the path.
  """

  def __init__(self):
    super().__init__(level=logging_lib.INFO)
    self.addFilter(drop_library_info)
    self.setFormatter(logging_lib.Formatter("%(asctime)s %(levelname)s %(message)s"))
    self._pending: List[str] = []
    self._file = None

  def emit(self, record: logging_lib.LogRecord) -> None:
    line = self.format(record)
    if self._file is None:
      self._pending.append(line)
    else:
      self._file.write(line + "\n")
      self._file.flush()

  def open(self, path: str) -> None:
    """Starts writing to ``path`` (appending), beginning with the held lines."""
    self._file = open(path, "a")
    for line in self._pending:
      self._file.write(line + "\n")
    self._pending.clear()
    self._file.flush()

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._file = None
    super().close()
