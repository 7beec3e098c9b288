"""The GAN training loop: n_critic discriminator steps per generator step.

:func:`train` takes the flat ``train.*`` settings gin binds, checks them all
(:class:`regan_tf.spec.RunSpec`) before touching data, and hands them to
:func:`run`, which reads top to bottom in banner-commented sections: set-up,
data, models, FLOPs, restore, the loop, export. The pieces it wires are their
own public units:

- ``regan_tf.train_step.TrainStep``: one compiled iteration (D, R1, G and
  path-length sub-steps), the thing the loop calls once per step;
- ``regan_tf.hooks``: the periodic work (Re-GAN phases, profiling, logs with
  the NaN check, sample grids, evaluation with the best checkpoint,
  checkpoints), each a small object the loop calls around every step;
- ``regan_tf.progressive``: the cursor that says which step function, data
  stream and sampler a step uses (one span, or a growing ProGAN's stages).

Counting: ``step`` counts generator updates. Randomness is stateless, derived
from ``(seed, step, replica)``, and the data order is a function of
``(seed, batch position)``, so a run stopped at any checkpoint and restarted
with the same command continues exactly where it left off, without storing RNG
or shuffle-buffer state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import os
import shutil
import signal
import tempfile
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from absl import logging
import numpy as np

from regan_tf import cluster as cluster_lib
from regan_tf import data as data_lib
from regan_tf import export as export_lib
from regan_tf import flops as flops_lib
from regan_tf import hooks as hooks_lib
from regan_tf import models as models_lib
from regan_tf import progressive as progressive_lib
from regan_tf import safety
from regan_tf.compat import keras, tf
from regan_tf.pruning import strip as pruning_strip
from regan_tf.spec import RunSpec
from regan_tf.train_step import PruningController, StyleGANParts, TrainStep, inner_optimizer, make_optimizer

__all__ = ["Components", "PruningController", "StrategyChoice", "TrainResult", "choose_strategy",
           "configure_cpu_devices", "decide_jit", "make_strategy", "resolve_jit_compile", "run", "train"]

ConfigText = Union[str, Callable[[], str], None]


@dataclasses.dataclass(frozen=True)
class TrainResult:
  """What a finished (or already finished) run returns."""
  step: int
  workdir: str
  export_dir: Optional[str]
  metrics: Dict[str, float]


@dataclasses.dataclass(frozen=True)
class Components:
  """The run's pluggable parts: callables gin binds, called once the run needs them.

  Attributes:
    dataset: ``dataset()`` -> ``regan_tf.data.ImageData`` (the training images).
    model: ``model(image_size=, channels=, z_dim=)`` -> ``regan_tf.models.GAN``.
    pruning: ``pruning(generator=, strategy=, steps_per_epoch=, train_steps=)``
      (and ``start_step=`` in a growing run) -> Re-GAN's controller, which
      wraps the generator; None trains the dense baseline.
    growth: ``growth(num_examples=, n_critic=, batch_size=)`` -> a
      ``regan_tf.progressive.GrowthSchedule`` (ProGAN only); None: no growing.
    apa: ``apa(strategy=)`` -> ``regan_tf.augment.AdaptivePseudoAugment``.
    ema: ``ema(generator=, controller=, strategy=)`` -> ``regan_tf.ema.GeneratorEMA``,
      whose model then samples, evaluates and exports.
    evaluation: ``evaluation(data=, z_dim=)`` -> ``regan_tf.metrics.Evaluator``.
    eval_dataset: ``eval_dataset()`` -> the images FID compares against (e.g.
      the CIFAR-10 test split, as the AutoGAN code the Re-GAN reference builds
      on does); None: the training data (``eval_reference`` says which part).
  """
  dataset: Callable[[], data_lib.ImageData] = data_lib.load_digits
  model: Callable[..., models_lib.GAN] = models_lib.dcgan.build
  pruning: Optional[Callable[..., PruningController]] = None
  growth: Optional[Callable[..., Any]] = None
  apa: Optional[Callable[..., Any]] = None
  ema: Optional[Callable[..., Any]] = None
  evaluation: Optional[Callable[..., Any]] = None
  eval_dataset: Optional[Callable[[], data_lib.ImageData]] = None


# ----------------------------------------------------------------------------
# Devices
# ----------------------------------------------------------------------------


def configure_cpu_devices(count: int) -> None:
  """Splits the CPU into ``count`` logical devices (to test multi-replica code).

  Must run before TensorFlow initializes its runtime (before any op runs).
  """
  if count <= 1:
    return
  cpus = tf.config.list_physical_devices("CPU")
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
  except RuntimeError as e:
    existing = len(tf.config.list_logical_devices("CPU"))
    if existing != count:
      raise RuntimeError(
          f"cpu_devices={count} cannot be applied: TensorFlow already initialized "
          f"{existing} CPU device(s) in this process. Set it in a fresh process, before "
          "any TensorFlow op runs.") from e


@dataclasses.dataclass(frozen=True)
class StrategyChoice:
  """What :func:`make_strategy` builds, decided from the devices alone (see :func:`choose_strategy`).

  Attributes:
    kind: ``mirrored``, ``one_device``, ``default``, ``multi_worker`` or ``tpu``.
    devices: the local devices a ``mirrored`` or ``one_device`` strategy uses.
    cross_device_ops: ``nccl`` (TensorFlow's default between GPUs) or
      ``reduce_to_one`` (CPUs, which NCCL cannot serve); ``mirrored`` only.
    tpu: the TPU address (``tpu`` only).
  """
  kind: str
  devices: Tuple[str, ...] = ()
  cross_device_ops: Optional[str] = None
  tpu: Optional[str] = None


def choose_strategy(kind: str, *, gpus: Sequence[str], cpus: Sequence[str],
                    tpu: Optional[str] = None) -> StrategyChoice:
  """Decides the strategy for ``kind`` from the visible device names (pure; see :func:`make_strategy`).

  Raises:
    ValueError: an unknown ``kind``, or ``tpu`` without an address.
  """
  if kind == "multi_worker":
    return StrategyChoice("multi_worker")
  if kind == "tpu":
    if not tpu:
      raise ValueError("strategy 'tpu' needs the TPU's name, 'local' or a grpc:// address (train.tpu).")
    return StrategyChoice("tpu", tpu=tpu)
  if kind == "auto":
    kind = "mirrored" if gpus else "default"
  if kind == "mirrored":
    devices = tuple(gpus or cpus)
    if len(devices) == 1:
      return StrategyChoice("one_device", devices)
    return StrategyChoice("mirrored", devices, "nccl" if gpus else "reduce_to_one")
  if kind == "one_device":
    return StrategyChoice("one_device", (gpus[0] if gpus else "/cpu:0",))
  if kind == "default":
    return StrategyChoice("default")
  raise ValueError(f"strategy must be one of 'auto', 'mirrored', 'one_device', 'default', 'multi_worker', "
                   f"'tpu'; got {kind!r}.")


def make_strategy(kind: str = "auto", *, tpu: Optional[str] = None) -> tf.distribute.Strategy:
  """Returns the distribution strategy for ``kind``.

  Args:
    kind: ``auto``: MirroredStrategy over all visible GPUs if there is one,
      else the default (single-device) strategy. ``mirrored``: MirroredStrategy
      over all GPUs, or over all logical CPU devices when there is no GPU.
      ``one_device``: the first GPU, else the CPU. ``default``: no strategy.
      ``multi_worker``: MultiWorkerMirroredStrategy over the cluster in
      ``TF_CONFIG`` (every worker's GPUs, or its CPU); create it before any
      TensorFlow op runs. ``tpu``: TPUStrategy on ``tpu``.
    tpu: the TPU's name, ``local`` or ``grpc://host:port`` (``kind='tpu'`` only).
  """
  # Listing devices starts TensorFlow's runtime, which MultiWorkerMirroredStrategy must configure first.
  gpus: List[str] = []
  cpus: List[str] = []
  if kind not in ("multi_worker", "tpu"):
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
  choice = choose_strategy(kind, gpus=gpus, cpus=cpus, tpu=tpu)
  if choice.kind == "multi_worker":
    cluster_lib.role_from_tf_config()  # a missing or bad TF_CONFIG is one line, not a gRPC error
    return cluster_lib.multi_worker_strategy()
  if choice.kind == "tpu":
    return cluster_lib.tpu_strategy(choice.tpu)
  if choice.kind == "mirrored":
    cross_device_ops = None if choice.cross_device_ops == "nccl" else tf.distribute.ReductionToOneDevice()
    return tf.distribute.MirroredStrategy(list(choice.devices), cross_device_ops=cross_device_ops)
  if choice.kind == "one_device":
    return tf.distribute.OneDeviceStrategy(choice.devices[0])
  return tf.distribute.get_strategy()


def _on_gpu(strategy: tf.distribute.Strategy) -> bool:
  try:
    devices = strategy.extended.worker_devices
  except RuntimeError:  # the default strategy has no device list
    devices = ()
  return any("GPU" in d.upper() for d in devices) or (
      not devices and bool(tf.config.list_logical_devices("GPU")))


def resolve_jit_compile(jit_compile: Union[bool, str], strategy: tf.distribute.Strategy) -> bool:
  """Decides whether the step functions are XLA-compiled for ``strategy`` (see :func:`decide_jit`)."""
  platform = ("tpu" if isinstance(strategy, tf.distribute.TPUStrategy)
              else "gpu" if _on_gpu(strategy) else "cpu")
  return decide_jit(jit_compile, platform=platform, replicas=strategy.num_replicas_in_sync,
                    strategy_name=type(strategy).__name__)


def decide_jit(jit_compile: Union[bool, str], *, platform: str, replicas: int,
               strategy_name: str = "the strategy") -> bool:
  """Whether the step functions are XLA-compiled (pure: the platform and replica count are given).

  ``auto`` means on for GPUs and off on CPU (XLA's CPU backend is ~35% slower
  than TensorFlow's oneDNN kernels for these models). XLA with MirroredStrategy
  over several CPU devices fails in TensorFlow ("resource on a different
  device"), so several CPU replicas (also over several workers, where it is
  untested) fall back to no XLA with a warning. A TPU always compiles (XLA
  is its only compiler), whatever ``jit_compile`` says.

  Args:
    jit_compile: True, False or ``auto``.
    platform: ``cpu``, ``gpu`` or ``tpu``.
    replicas: replicas in sync.
  """
  if jit_compile not in (True, False, "auto"):
    raise ValueError(f"jit_compile must be True, False or 'auto'; got {jit_compile!r}.")
  if platform not in ("cpu", "gpu", "tpu"):
    raise ValueError(f"platform must be 'cpu', 'gpu' or 'tpu'; got {platform!r}.")
  if platform == "tpu":
    if jit_compile is False:
      logging.warning("jit_compile=False is ignored on a TPU: TPU programs are always XLA-compiled.")
    return True
  on_gpu = platform == "gpu"
  if jit_compile == "auto":
    return on_gpu
  if jit_compile and replicas > 1 and not on_gpu:
    logging.warning("jit_compile=True with %s over %d CPU replicas: TensorFlow cannot compile MirroredStrategy "
                    "over several CPU devices (several CPU workers are treated alike, untested); running the "
                    "steps without XLA.", strategy_name, replicas)
    return False
  return bool(jit_compile)


# ----------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------


def train(
    *,
    workdir: str,
    dataset: Callable[[], data_lib.ImageData] = data_lib.load_digits,
    model: Callable[..., models_lib.GAN] = models_lib.dcgan.build,
    z_dim: int = 128,
    loss: str = "hinge",
    gp_weight: float = 0.0,
    drift_weight: float = 0.0,
    adam_epsilon: float = 1e-7,
    r1_gamma: float = 0.0,
    r1_every: int = 16,
    pl_weight: float = 0.0,
    pl_every: int = 4,
    pl_batch_shrink: int = 2,
    style_mixing: float = 0.0,
    r1_on_augmented: bool = False,
    batch_size: int = 64,
    n_critic: int = 5,
    train_steps: Optional[int] = None,
    train_epochs: Optional[float] = None,
    epoch_counting: str = "images",
    g_lr: float = 2e-4,
    d_lr: float = 2e-4,
    beta1: float = 0.0,
    beta2: float = 0.9,
    data_fraction: float = 1.0,
    subset_rule: str = "first",
    random_flip: bool = False,
    seed: int = 0,
    strategy: str = "auto",
    tpu: Optional[str] = None,
    cpu_devices: int = 0,
    jit_compile: Union[bool, str] = "auto",
    precision: str = "float32",
    mixed_precision: bool = False,
    checkpoint_every: int = 500,
    keep_checkpoints: int = 3,
    log_every: int = 50,
    image_every: int = 500,
    num_grid_images: int = 64,
    export: bool = True,
    pruning: Optional[Callable[..., PruningController]] = None,
    growth: Optional[Callable[..., Any]] = None,
    regan_stage: Optional[int] = None,
    diffaugment: str = "",
    apa: Optional[Callable[..., Any]] = None,
    ema: Optional[Callable[..., Any]] = None,
    evaluation: Optional[Callable[..., Any]] = None,
    eval_dataset: Optional[Callable[[], data_lib.ImageData]] = None,
    eval_every: int = 0,
    eval_reference: str = "full",
    export_best: bool = False,
    profile_steps: Optional[Sequence[int]] = None,
    divergence_guard: str = "warn",
    config_text: ConfigText = None,
    allow_config_change: bool = False,
) -> TrainResult:
  """Trains a GAN in ``workdir``, resuming from its latest checkpoint if any.

  Every setting is checked before any data loads (a bad value fails in
  seconds); the settings are documented on the :mod:`regan_tf.spec` groups
  that hold them (:class:`~regan_tf.spec.Optimization`,
  :class:`~regan_tf.spec.Regularization`, :class:`~regan_tf.spec.Cadence`,
  :class:`~regan_tf.spec.DataSettings`, :class:`~regan_tf.spec.Runtime`) and
  the callables on :class:`Components`.

  Args:
    workdir: run directory: checkpoints/, best/, TensorBoard events, samples/,
      operative_config.gin, flops.json, export/ (the generator SavedModel).
    dataset, model, pruning, growth, apa, ema, evaluation, eval_dataset: see :class:`Components`.
    regan_stage: in a growing run, the stage from whose first step Re-GAN's
      warm-up is counted; None: the final stage (as the reference).
    config_text: the operative configuration (or a callable returning it),
      written to ``operative_config.gin`` (and ``operative_config-<step>.gin``,
      one per start) and TensorBoard. On resume it is compared with the run's:
      a change that affects training is refused (``ConfigurationChanged``)
      unless ``allow_config_change``.
    allow_config_change: resume even though the configuration changed (logged).
    **the rest**: the run spec's settings, by their flat names.

  Returns:
    A :class:`TrainResult`.
  """
  names = set(RunSpec.argument_names())
  spec = RunSpec.from_arguments(growing=growth is not None, regan_stage=regan_stage,
                                evaluating=evaluation is not None,
                                **{k: v for k, v in locals().items() if k in names})
  parts = Components(dataset=dataset, model=model, pruning=pruning, growth=growth, apa=apa, ema=ema,
                     evaluation=evaluation, eval_dataset=eval_dataset)
  return run(spec, parts, workdir=workdir, config_text=config_text, allow_config_change=allow_config_change)


def run(spec: RunSpec, parts: Components, *, workdir: str, config_text: ConfigText = None,
        allow_config_change: bool = False) -> TrainResult:
  """Trains ``parts`` as ``spec`` says, in ``workdir`` (see :func:`train`)."""
  # --------------------------------------------------------------- set-up ---
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise NotADirectoryError(f"--workdir {workdir} is a file, not a directory; pass a directory path "
                             "(it is created if missing).")
  # Several workers: only the chief owns (locks, writes) workdir; the others read its checkpoints
  # and write everything of theirs to a private temporary folder, removed at the end.
  role = (cluster_lib.role_from_tf_config() if spec.runtime.strategy == "multi_worker"
          else cluster_lib.SINGLE_PROCESS)
  own_dir = workdir if role.is_chief else tempfile.mkdtemp(prefix=f"regan_tf-{role.task_type}{role.task_id}-")
  lock = safety.WorkdirLock(own_dir)
  if os.path.isdir(own_dir):
    lock.acquire()  # a second process on a live run stops here, before any work
  run_log = hooks_lib.RunLog()  # log.txt: held until the run directory exists
  absl_logger = logging.get_absl_logger()
  previous_level = absl_logger.level
  if previous_level > logging.converter.STANDARD_INFO or previous_level == 0:
    absl_logger.setLevel(logging.converter.STANDARD_INFO)  # progress lines, also when called from Python
  absl_logger.addHandler(run_log)
  try:
    configure_cpu_devices(spec.runtime.cpu_devices)
    strategy = make_strategy(spec.runtime.strategy, tpu=spec.runtime.tpu)
    spec.check_replicas(strategy.num_replicas_in_sync)
    use_jit = resolve_jit_compile(spec.runtime.jit_compile, strategy)
    precision = spec.runtime.precision
    if precision == "mixed_float16" and not _on_gpu(strategy):
      logging.warning("precision 'mixed_float16' on CPU is slow (float16 is emulated); it is meant for NVIDIA "
                      "GPUs. On a CPU with bfloat16 support use 'mixed_bfloat16'.")
    logging.info("Strategy %s with %d replica(s) over %d worker(s)%s; XLA %s; precision %s.",
                 type(strategy).__name__, strategy.num_replicas_in_sync, role.num_workers,
                 "" if role.num_workers == 1 else f" (this process: {role.describe()})",
                 "on" if use_jit else "off", precision)

    # --------------------------------------------------------------- data ---
    full_images = parts.dataset()
    images = data_lib.select_subset(full_images, fraction=spec.data.data_fraction, rule=spec.data.subset_rule,
                                    seed=spec.runtime.seed)
    opt = spec.optimization
    steps_per_epoch = spec.cadence.steps_per_epoch(images.num_examples, opt.batch_size, opt.n_critic)
    train_steps = spec.cadence.steps(steps_per_epoch)
    logging.info("Data %s: %d images of %dx%dx%d; one epoch = %.2f generator steps; training for %d steps.",
                 images.name, images.num_examples, images.image_size, images.image_size,
                 images.channels, steps_per_epoch, train_steps)
    with _compute_policy(None if precision == "float32" else precision):
      return _train_models(spec, parts, strategy, full_images, images, steps_per_epoch, train_steps,
                           use_jit=use_jit, workdir=workdir, own_dir=own_dir, role=role, lock=lock,
                           run_log=run_log, config_text=config_text, allow_config_change=allow_config_change)
  finally:
    absl_logger.removeHandler(run_log)
    absl_logger.setLevel(previous_level)
    run_log.close()
    lock.release()
    if own_dir != workdir:
      shutil.rmtree(own_dir, ignore_errors=True)


def _load_eval_dataset(eval_dataset: Callable[[], data_lib.ImageData]) -> data_lib.ImageData:
  """``eval_dataset()``, with a missing or unreachable dataset's error naming the evaluation split's fixes.

  The data sources' own advice is about training data (e.g. train from a
  folder of images), which does not help when only the evaluation split (by
  default CIFAR-10's TFDS test split) is out of reach.
  """
  try:
    return eval_dataset()
  except (FileNotFoundError, ConnectionError) as e:
    reason = getattr(e, "reason", str(e))
    raise type(e)(
        f"the evaluation split (train.eval_dataset, the images FID compares against) cannot be loaded: "
        f"{reason} Evaluate against the training set with --gin_bindings=\"train.eval_dataset = None\", or "
        f"point --gin_bindings=\"data.tfds.data_dir = '/path/to/tensorflow_datasets'\" at a prepared TFDS "
        f"folder that holds the split.") from e


def _train_models(spec: RunSpec, parts: Components, strategy: tf.distribute.Strategy,
                  full_images: data_lib.ImageData, images: data_lib.ImageData, steps_per_epoch: float,
                  train_steps: int, *, use_jit: bool, workdir: str, own_dir: str, role: cluster_lib.WorkerRole,
                  lock: safety.WorkdirLock, run_log: hooks_lib.RunLog, config_text: ConfigText,
                  allow_config_change: bool) -> TrainResult:
  """Models, restore, loop and export of :func:`run`, under the compute policy.

  ``own_dir`` is where this process writes: ``workdir`` itself, or a
  non-chief worker's temporary folder (it restores from ``workdir``). A
  non-chief runs every hook the chief runs (sample grids, evaluation, the
  export) into that folder: the models' batch-norm statistics are synchronized
  on read, a collective that every worker must join.
  """
  # ------------------------------------------------------------- models ---
  opt = spec.optimization
  models = _build_models(spec, parts, strategy, images, steps_per_epoch, train_steps)
  evaluator = None
  if parts.evaluation is not None:
    if parts.eval_dataset is not None:
      reference = _load_eval_dataset(parts.eval_dataset)
      against = f"{reference.name} ({reference.num_examples} images)"
    elif spec.data.eval_reference == "full":
      reference, against = full_images, "the full dataset"
    else:
      reference, against = images, "the training subset"
    evaluator = parts.evaluation(data=reference, z_dim=opt.z_dim)
    logging.info("Evaluation: %s on %d samples against %s.", ", ".join(evaluator.metric_names),
                 evaluator.num_samples, against)
  run_flops = _count_flops(spec, models, train_steps)

  # ------------------------------------------------------------ restore ---
  # The run directory appears only once data and models are known to load,
  # so a bad configuration leaves nothing behind.
  os.makedirs(own_dir, exist_ok=True)
  if not lock.held:
    lock.acquire()
  run_log.open(os.path.join(own_dir, "log.txt"))
  if role.is_chief:
    safety.remove_stale_temporaries(workdir)
  state = _restore(own_dir, models, keep=spec.cadence.keep_checkpoints, restore_from=workdir)
  start_step = int(state.step_var.numpy())
  if role.num_workers > 1:
    cluster_lib.check_agreement(strategy, "the restored step", tf.constant(start_step, tf.int64))
  if start_step:
    logging.info("Resuming the run in %s at step %d of %d.", workdir, start_step, train_steps)
  else:
    logging.info("New run in %s (%d steps).", workdir, train_steps)
  text = config_text() if callable(config_text) else (config_text or "")
  _check_config_change(workdir, text, start_step, allow=allow_config_change)
  _write_flops_json(own_dir, spec, models, run_flops, train_steps)
  writer = tf.summary.create_file_writer(own_dir)
  _write_config(own_dir, writer, text, start_step)

  # --------------------------------------------------------------- loop ---
  cursor = _make_cursor(spec, models, strategy, images, use_jit, start_step, multi_worker=role.num_workers > 1)
  metrics = hooks_lib.Metrics()
  saver = hooks_lib.FiniteSaver(state.step_var, _finite_check(models), start_step)
  hooks = _make_hooks(spec, models, state, saver, cursor, run_flops, evaluator, writer, metrics,
                      workdir=own_dir, train_steps=train_steps,
                      check_masks=_mask_check(strategy, models) if role.num_workers > 1 else None)
  if start_step >= train_steps:
    logging.info("Run already complete (step %d of %d).", start_step, train_steps)
  loop_start = time.time()
  try:
    with safety.StopSignals() as signals:
      step = _loop(cursor, hooks, spec, start_step, train_steps, signals, lambda s: saver.save(state.manager, s))
  finally:
    writer.flush()
  if step > start_step:
    logging.info("Trained steps %d..%d in %s.", start_step, step, hooks_lib.format_duration(time.time() - loop_start))
  if models.growing is not None:
    _warn_if_not_grown(models.growing, step, images.image_size)

  # ------------------------------------------------------------- export ---
  export_dir = None
  if spec.cadence.export:
    export_dir = _export(spec, models, state, cursor, images, step, own_dir)
  return TrainResult(step=step, workdir=workdir, export_dir=export_dir if role.is_chief else None,
                     metrics=dict(metrics))


def _loop(cursor, hooks: Sequence[hooks_lib.Hook], spec: RunSpec, start_step: int, train_steps: int,
          signals: safety.StopSignals, save: Callable[[int], str]) -> int:
  """Runs steps ``start_step..train_steps-1`` with the hooks around each; returns the steps done.

  A stop signal is honoured between steps: the state after ``step`` steps is
  saved labelled ``step`` (so the rerun continues exactly) and
  :class:`regan_tf.safety.TrainingInterrupted` is raised.
  """
  step = start_step
  try:
    while step < train_steps:
      if signals.requested is not None:
        path = save(step)
        logging.warning("Stopped after step %d on %s; saved %s. Rerun the same command to resume.", step,
                        signal.Signals(signals.requested).name, path)
        raise safety.TrainingInterrupted(signals.requested, step, path)
      span = cursor.at(step)
      hooks_lib.run_hooks(hooks, "before_step", step)
      outputs = span.train_step(span.iterator, tf.constant(step, tf.int64),
                                r1=spec.regularization.r1_at(step), pl=spec.regularization.pl_at(step))
      step += 1
      hooks_lib.run_hooks(hooks, "after_step", step, outputs)
  finally:
    hooks_lib.run_hooks(hooks, "end", step)
  return step


# ----------------------------------------------------------------------------
# Models, optimizers and the run's state
# ----------------------------------------------------------------------------


@dataclasses.dataclass
class _Models:
  """Everything built under the strategy's scope."""
  generator: keras.Model  # the one trained (wrapped by Re-GAN; all stages when growing)
  discriminator: keras.Model  # the final stage's when growing
  discriminator_trackable: Any  # what the checkpoint holds for D
  g_optimizer: Any
  d_optimizer: Any
  growing: Optional[progressive_lib.GrowingRun]
  controller: Optional[PruningController]
  stylegan: Optional[StyleGANParts]
  pl_mean: Optional[tf.Variable]
  apa: Any
  ema: Any

  @property
  def sampler(self) -> keras.Model:
    """What samples, evaluates and exports: the EMA generator when there is one."""
    return self.ema.model if self.ema is not None else self.generator


@contextlib.contextmanager
def _compute_policy(name: Optional[str]) -> Iterator[None]:
  """Sets Keras's global dtype policy to ``name`` (None: leave it) for the block."""
  previous = keras.mixed_precision.global_policy()
  if name:
    keras.mixed_precision.set_global_policy(name)
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy(previous)


def _build_models(spec: RunSpec, parts: Components, strategy: tf.distribute.Strategy,
                  images: data_lib.ImageData, steps_per_epoch: float, train_steps: int) -> _Models:
  """G and D, Re-GAN's controller, optimizers (slots built), APA and EMA, under the strategy."""
  opt, reg = spec.optimization, spec.regularization
  replicas = strategy.num_replicas_in_sync
  with strategy.scope():
    keras.utils.set_random_seed(spec.runtime.seed)
    gan = parts.model(image_size=images.image_size, channels=images.channels, z_dim=opt.z_dim)
    generator, discriminator = gan.generator, gan.discriminator
    growing = None
    if parts.growth is not None:
      if gan.progressive is None:
        raise ValueError(f"train.growth grows a progressive GAN, but the model ({generator.name!r}) is "
                         "not one; use train.model = @models.progan, or train.growth = None.")
      growing = progressive_lib.GrowingRun(
          gan.progressive, parts.growth(num_examples=images.num_examples, n_critic=opt.n_critic,
                                        batch_size=opt.batch_size), replicas=replicas)
      generator = growing.growing_generator()
      logging.info("Progressive growing: %s.", growing.describe())
    controller = None
    if parts.pruning is not None:
      extra = {} if growing is None else {"start_step": growing.regan_start(spec.regan_stage)}
      controller = parts.pruning(generator=generator, strategy=strategy, steps_per_epoch=steps_per_epoch,
                                 train_steps=train_steps, **extra)
      generator = controller.generator
      first_sparse_step = controller.schedule.warmup
      if first_sparse_step >= train_steps:
        logging.warning("Re-GAN never engages: its first sparse phase would start at step %d, but the "
                        "run has %d steps; this trains the dense baseline. Shorten regan.warmup%s or "
                        "train longer.", first_sparse_step, train_steps,
                        "" if growing is None else " (counted from the Re-GAN stage's first step)")
    g_opt, d_opt = _make_optimizers(spec, controller)
    stylegan = StyleGANParts.of(generator) if reg.needs_stylegan else None
    pl_mean = None
    if reg.pl_weight > 0:
      pl_mean = tf.Variable(0.0, trainable=False, name="pl_mean", aggregation=tf.VariableAggregation.MEAN)
    apa_state = parts.apa(strategy=strategy) if parts.apa is not None else None
    # Built after G and D: cloning draws from Keras's global RNG.
    ema_state = (parts.ema(generator=generator, controller=controller, strategy=strategy)
                 if parts.ema is not None else None)
    d_variables = discriminator.trainable_variables if growing is None else growing.discriminator_variables
    # Slots exist before a restore, so a checkpoint restores them directly.
    inner_optimizer(g_opt).build(generator.trainable_variables)
    inner_optimizer(d_opt).build(d_variables)
  logging.info("Generator %s: %s trainable weights; discriminator %s: %s.", generator.name,
               f"{_count_variables(generator.trainable_weights):,}", discriminator.name,
               f"{_count_variables(discriminator.trainable_weights):,}")
  if growing is not None:
    logging.info("(Growing: the generator holds every stage's layers; the discriminator count is the "
                 "final stage's, %s with every stage's from_rgb.)", f"{_count_variables(d_variables):,}")
  return _Models(generator=generator, discriminator=discriminator,
                 discriminator_trackable=discriminator if growing is None else growing.discriminator_module,
                 g_optimizer=g_opt, d_optimizer=d_opt, growing=growing, controller=controller,
                 stylegan=stylegan, pl_mean=pl_mean, apa=apa_state, ema=ema_state)


def _make_optimizers(spec: RunSpec, controller: Optional[PruningController]) -> Tuple[Any, Any]:
  """G's and D's Adam, with the lazy-regularization corrections (StyleGAN2 App. B).

  A penalty applied every k steps gets an optimizer whose lr and betas are
  corrected by c = k / (k + 1); under Re-GAN G's rate is that base times the
  controller's phase factor, so the ratio between phases is kept.
  """
  opt, reg = spec.optimization, spec.regularization
  g_lazy, d_lazy = reg.g_lazy, reg.d_lazy
  loss_scale = spec.runtime.precision == "mixed_float16"  # bfloat16 has float32's range: no loss scaling
  g_rate = opt.g_lr * g_lazy
  if controller is not None:
    g_rate = controller.learning_rate(g_rate)
  g_opt = make_optimizer(g_rate, opt.beta1 ** g_lazy, opt.beta2 ** g_lazy, loss_scale=loss_scale, name="g_adam",
                         epsilon=opt.adam_epsilon)
  d_opt = make_optimizer(opt.d_lr * d_lazy, opt.beta1 ** d_lazy, opt.beta2 ** d_lazy, loss_scale=loss_scale,
                         name="d_adam", epsilon=opt.adam_epsilon)
  if g_lazy != 1.0 or d_lazy != 1.0:
    logging.info("Lazy regularization: G lr x %.4f and betas ^%.4f (path length every %d); D lr x %.4f "
                 "and betas ^%.4f (R1 every %d).", g_lazy, g_lazy, reg.pl_every, d_lazy, d_lazy, reg.r1_every)
  return g_opt, d_opt


@dataclasses.dataclass
class _RunState:
  """The run's checkpoint, its managers and the variables only the trainer owns."""
  checkpoint: tf.train.Checkpoint
  manager: tf.train.CheckpointManager
  best_manager: tf.train.CheckpointManager
  step_var: tf.Variable  # the step a checkpoint's state belongs to
  best_fid: tf.Variable


def _restore(workdir: str, models: _Models, *, keep: int, restore_from: Optional[str] = None) -> _RunState:
  """Builds the checkpoint and restores the newest loadable one in ``workdir/checkpoints``.

  ``restore_from`` (default ``workdir``) is the run directory whose
  ``checkpoints/`` are read: a non-chief worker writes its own checkpoints to
  a temporary ``workdir`` but restores the chief's.

  A checkpoint that does not load because it is damaged (truncated, corrupt)
  is skipped with a warning naming it, and the one before it is tried. A
  checkpoint whose tensors or objects do not match the models means the
  configuration changed: that stays an error.
  """
  step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
  best_fid = tf.Variable(np.inf, dtype=tf.float64, trainable=False, name="best_fid")
  trackables = dict(step=step_var, generator=models.generator, discriminator=models.discriminator_trackable,
                    g_optimizer=models.g_optimizer, d_optimizer=models.d_optimizer, best_fid=best_fid)
  for part in (models.controller, models.apa, models.ema):
    if part is not None:
      trackables.update(part.checkpoint_items())
  if models.pl_mean is not None:
    trackables["pl_mean"] = models.pl_mean
  ckpt = tf.train.Checkpoint(**trackables)
  manager = tf.train.CheckpointManager(ckpt, os.path.join(workdir, "checkpoints"), max_to_keep=keep)
  best_manager = tf.train.CheckpointManager(ckpt, os.path.join(workdir, "best"), max_to_keep=1)
  source = manager
  if restore_from is not None and os.path.abspath(restore_from) != os.path.abspath(workdir):
    source = tf.train.CheckpointManager(ckpt, os.path.join(restore_from, "checkpoints"), max_to_keep=keep)
  skipped = []
  for path in reversed(source.checkpoints):
    try:
      ckpt.restore(path).assert_existing_objects_matched()
    except (AssertionError, ValueError) as e:
      if isinstance(e, ValueError) and "shape" not in str(e):
        skipped.append((path, e))
        continue
      raise safety.ConfigurationChanged(
          f"The checkpoint {path} does not match this configuration (model, optimizer or pruning "
          f"changed): {str(e).splitlines()[0][:300]} Resume with the configuration that wrote it, or start "
          "a new run with another --workdir.") from e
    except (tf.errors.OpError, IndexError, OSError) as e:  # truncated or corrupt files
      skipped.append((path, e))
      continue
    for bad, error in skipped:
      logging.warning("Skipped the damaged checkpoint %s (%s: %s).", bad, type(error).__name__,
                      str(error).splitlines()[0][:200])
    logging.info("Resumed from %s at step %d.", path, int(step_var.numpy()))
    break
  else:
    if skipped:
      raise RuntimeError(f"No checkpoint in {source.directory} loads: " + "; ".join(
          f"{os.path.basename(p)}: {type(e).__name__}: {str(e).splitlines()[0][:120]}" for p, e in skipped)
          + ". Move the folder away to start over, or restore a backup.")
  return _RunState(ckpt, manager, best_manager, step_var, best_fid)


def _mask_check(strategy: tf.distribute.Strategy, models: _Models) -> Optional[Callable[[Any], None]]:
  """After each Re-GAN event, a collective check that every worker holds the same masks."""
  if models.controller is None:
    return None
  masks = [t.mask for t in models.controller.tensors]

  def check(event) -> None:
    cluster_lib.check_agreement(strategy, f"Re-GAN's masks after the {event.kind} at step {event.step} "
                                "(kept entries, sum of their positions)", cluster_lib.mask_digest(masks))

  return check


def _finite_check(models: _Models) -> Callable[[], bool]:
  """A compiled check that G, D and the EMA hold only finite values (run before each save)."""
  # discriminator_trackable is D itself, or a growing run's module of every stage's D layers.
  variables = list(models.generator.variables) + list(models.discriminator_trackable.variables)
  if models.ema is not None:
    variables += list(models.ema.model.variables)
  variables = [v for v in variables if v.dtype.is_floating]

  @tf.function(autograph=False)
  def all_finite():
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in variables])

  return lambda: bool(all_finite())


# ----------------------------------------------------------------------------
# FLOPs and run files
# ----------------------------------------------------------------------------


def _count_flops(spec: RunSpec, models: _Models, train_steps: int) -> flops_lib.RunFlops:
  """FLOPs per image from TensorFlow's profiler, per span of the run.

  What each iteration executes and (under Re-GAN) what it costs counted on
  nonzero weights; a growing run counts each (stage, fade) span with its own
  models and batch.
  """
  opt, growing, pruned = spec.optimization, models.growing, models.controller is not None

  def span_flops(g_model, d_model, batch):
    return flops_lib.SpanFlops(g_model, d_model, z_dim=opt.z_dim, batch=batch, pruned=pruned)

  if growing is None:
    spans = [(0, None, span_flops(models.generator, models.discriminator, opt.batch_size))]
  else:
    by_key: Dict[Any, flops_lib.SpanFlops] = {}
    spans = []
    # A run of 0 steps still gets its first span, so the logs and flops.json have per-image figures.
    for first, end, key in growing.segments(max(train_steps, 1)):
      if key not in by_key:
        by_key[key] = span_flops(growing.generator(models.generator, key), growing.discriminator(key),
                                 growing.batch_size(key))
      spans.append((first, end, by_key[key]))
  schedule = models.controller.schedule if models.controller is not None else None
  run_flops = flops_lib.RunFlops(spans, opt.n_critic, schedule)
  projected, last = run_flops.projected(train_steps), run_flops.last
  logging.info("FLOPs per image: G %.4g, D %.4g%s; projected run: %.4g executed, %.4g effective (%.2f%% "
               "saved on nonzero weights; dense kernels do not run faster on masked weights).",
               last.f_g, last.f_d, "" if growing is None else " (last stage)", projected["executed_total"],
               projected["regan_effective_total"], projected["savings_percent"])
  return run_flops


def _write_text_atomic(path: str, text: str) -> None:
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def _write_flops_json(workdir: str, spec: RunSpec, models: _Models, run_flops: flops_lib.RunFlops,
                      train_steps: int) -> None:
  last = run_flops.last
  projected = run_flops.projected(train_steps)
  _write_text_atomic(os.path.join(workdir, "flops.json"), json.dumps(dict(
      g_forward_per_image=last.f_g, d_forward_per_image=last.f_d, g_layer_forward_per_image=last.layers,
      batch_size=spec.optimization.batch_size, n_critic=spec.optimization.n_critic, train_steps=train_steps,
      growth=None if models.growing is None else models.growing.schedule.get_config(),
      note="Effective FLOPs count pruned layers in proportion to their nonzero weights during sparse "
           "phases, as the Re-GAN paper does; executed FLOPs are what dense kernels run.",
      projected={k: v for k, v in projected.items() if isinstance(v, (int, float))}), indent=2))


def _previous_config(workdir: str) -> Optional[str]:
  """The operative config the run last started or resumed with (None for a new run)."""
  history = sorted(glob.glob(os.path.join(workdir, "operative_config-*.gin")))
  path = history[-1] if history else os.path.join(workdir, "operative_config.gin")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return f.read()


def _check_config_change(workdir: str, text: str, start_step: int, *, allow: bool) -> None:
  """On resume: refuses a configuration that would change training, unless ``allow``; logs the diff."""
  previous = _previous_config(workdir) if start_step > 0 else None
  if not text or previous is None:
    return
  cadence, others = safety.config_diff(previous, text)
  for change in cadence:
    logging.info("Resuming with a changed setting (it does not change training): %s", change)
  if not others:
    return
  listed = "; ".join(str(c) for c in others)
  if not allow:
    raise safety.ConfigurationChanged(
        f"Resuming at step {start_step} with a configuration that differs from the run's: {listed}. Rerun "
        "with the run's settings, start a new run with another --workdir, or pass --allow_config_change to "
        "continue with the new ones (the change is then logged and kept in operative_config-*.gin).")
  logging.warning("Resuming at step %d with changed settings (--allow_config_change): %s", start_step, listed)


def _write_config(workdir: str, writer: tf.summary.SummaryWriter, text: str, step: int) -> None:
  """``operative_config.gin`` (the latest) and ``operative_config-<step>.gin`` (kept for every start)."""
  if text:
    _write_text_atomic(os.path.join(workdir, "operative_config.gin"), text)
    _write_text_atomic(os.path.join(workdir, f"operative_config-{step:08d}.gin"), text)
    with writer.as_default(step=step):
      tf.summary.text("config/operative_gin", "    " + text.replace("\n", "\n    "))


# ----------------------------------------------------------------------------
# The loop's parts: cursor and hooks
# ----------------------------------------------------------------------------


def _make_cursor(spec: RunSpec, models: _Models, strategy: tf.distribute.Strategy,
                 images: data_lib.ImageData, use_jit: bool, start_step: int, *, multi_worker: bool = False):
  """The cursor handing the loop each step's compiled step, data and sampler.

  With several workers each reads only its replicas' rows of every global
  batch (``regan_tf.cluster.distribute_pipeline``), the rows a one-process
  run with as many replicas would give them.
  """
  opt, reg, seed = spec.optimization, spec.regularization, spec.runtime.seed
  replicas = strategy.num_replicas_in_sync
  built: List[TrainStep] = []

  def make_step(g_model, d_model, batch: int, real_transform=None) -> TrainStep:
    # After XLA failed once in this run, later steps (a growing run's) skip it.
    jit = use_jit and not any(s.fell_back for s in built)
    built.append(TrainStep(
        strategy=strategy, generator=g_model, discriminator=d_model, g_optimizer=models.g_optimizer,
        d_optimizer=models.d_optimizer, losses=opt.loss, z_dim=opt.z_dim, local_batch=batch // replicas,
        n_critic=opt.n_critic, seed=seed, jit=jit, gp_weight=opt.gp_weight, drift_weight=opt.drift_weight,
        r1_weight=reg.r1_step_weight, pl_weight=reg.pl_step_weight, pl_batch_shrink=reg.pl_batch_shrink,
        pl_mean=models.pl_mean, style_mixing=reg.style_mixing, stylegan=models.stylegan,
        controller=models.controller, diffaugment=spec.data.diffaugment, apa=models.apa, ema=models.ema,
        real_transform=real_transform, r1_on_augmented=reg.r1_on_augmented))
    return built[-1]

  def make_iterator(batch: int, data_seed: int, start_batch: int):
    pipeline = data_lib.make_pipeline(images, global_batch_size=batch, seed=data_seed,
                                      start_batch=start_batch, random_flip=spec.data.random_flip)
    return iter(cluster_lib.distribute_pipeline(strategy, pipeline, multi_worker=multi_worker))

  if models.growing is not None:
    return progressive_lib.GrowthCursor(models.growing, generator=models.generator, sampler_all=models.sampler,
                                        make_step=make_step, make_iterator=make_iterator, seed=seed,
                                        n_critic=opt.n_critic)
  return progressive_lib.FixedCursor(progressive_lib.Span(
      train_step=make_step(models.generator, models.discriminator, opt.batch_size),
      iterator=make_iterator(opt.batch_size, seed, start_step * opt.n_critic),
      sampler=models.sampler, batch_size=opt.batch_size))


def _make_hooks(spec: RunSpec, models: _Models, state: _RunState, saver: hooks_lib.FiniteSaver, cursor,
                run_flops: flops_lib.RunFlops, evaluator, writer, metrics: hooks_lib.Metrics, *, workdir: str,
                train_steps: int, check_masks: Optional[Callable[[Any], None]] = None) -> List[hooks_lib.Hook]:
  """The periodic work, in the order it runs around each step (``check_masks``: see PhaseHook)."""
  cadence, opt = spec.cadence, spec.optimization
  record = hooks_lib.MetricsRecord(os.path.join(workdir, "metrics.jsonl"))
  hooks: List[hooks_lib.Hook] = []
  if models.controller is not None:
    hooks.append(hooks_lib.PhaseHook(models.controller, models.g_optimizer, writer, after_event=check_masks))
  if cadence.profile_steps is not None:
    hooks.append(hooks_lib.ProfileHook(*cadence.profile_steps, logdir=workdir))

  def extra_scalars(step: int) -> Dict[str, float]:
    scalars = {}
    if models.pl_mean is not None:
      scalars["pl_mean"] = float(models.pl_mean.numpy())
    scalars.update(cursor.scalars())
    scalars["g_lr"] = _learning_rate(models.g_optimizer)
    scalars["d_lr"] = _learning_rate(models.d_optimizer)
    scalars.update(run_flops.scalars(step))
    for part in (models.controller, models.apa):
      if part is not None:
        scalars.update(part.summary_scalars())
    return scalars

  hooks.append(hooks_lib.LogHook(
      cadence.log_every, train_steps, writer, metrics, extra_scalars=extra_scalars,
      images_per_step=lambda: cursor.batch_size * (opt.n_critic + 1),
      last_checkpoint=lambda: state.manager.latest_checkpoint, record=record))
  if cadence.divergence_guard != "off":
    generator_variables = models.generator.trainable_variables
    hooks.append(hooks_lib.DivergenceHook(
        cadence.divergence_guard, cadence.log_every, train_steps,
        lambda: float(tf.linalg.global_norm(generator_variables)), d_floor=opt.loss != "wasserstein"))
  grid_z = tf.random.stateless_normal([cadence.num_grid_images, opt.z_dim], seed=[spec.runtime.seed, 7919])
  hooks.append(hooks_lib.SampleGridHook(cadence.image_every, train_steps, writer, workdir,
                                        lambda: cursor.sampler, grid_z))
  if evaluator is not None:
    hooks.append(hooks_lib.EvaluationHook(evaluator, cadence.eval_every, train_steps, lambda: cursor.sampler,
                                          writer, metrics, best_fid=state.best_fid,
                                          best_manager=state.best_manager, saver=saver, record=record))
  hooks.append(hooks_lib.CheckpointHook(cadence.checkpoint_every, train_steps, state.manager, saver))
  return hooks


# ----------------------------------------------------------------------------
# End of the run: growth warning and export
# ----------------------------------------------------------------------------


def _warn_if_not_grown(growing: progressive_lib.GrowingRun, step: int, image_size: int) -> None:
  last_key, _ = growing.key_at(max(step - 1, 0))
  if last_key.stage < growing.final_stage or last_key.fade:
    logging.warning("The run ended in %s, before the final stage's plain network (step %d); samples "
                    "and the export are that stage's, upsampled to %dx%d. Raise train.train_steps "
                    "past %d to reach it.", last_key.describe(growing.progan), step, image_size, image_size,
                    growing.schedule.stage_start(growing.final_stage)
                    + growing.schedule.fade_steps[growing.final_stage])


def _export(spec: RunSpec, models: _Models, state: _RunState, cursor, images: data_lib.ImageData,
            step: int, workdir: str) -> str:
  """Writes the sampler (pruning stripped) as a SavedModel in ``workdir/export``; returns the path.

  When the run kept a best-FID checkpoint, that checkpoint's sampler is also
  exported to ``workdir/best/export`` (``regan_tf.load(run, which='best')``);
  with ``export_best`` it is the one in ``export/`` too. Restoring it replaces
  the live weights, so it comes last.
  """
  export_dir = os.path.join(workdir, "export")
  best_checkpoint = state.best_manager.latest_checkpoint
  if not (spec.cadence.export_best and best_checkpoint):
    sampler = cursor.sampler
    if sampler is None:
      sampler = cursor.select_sampler(step)  # a growing run that trained nothing now: the checkpoint's stage
    _write_export(spec, models, state, sampler, images, step, export_dir)
  if best_checkpoint:
    state.checkpoint.restore(best_checkpoint).assert_existing_objects_matched()
    best_step = int(state.step_var.numpy())
    logging.info("Exporting the best checkpoint by FID: %s (step %d, FID %.4f).", best_checkpoint, best_step,
                 float(state.best_fid.numpy()))
    if models.controller is not None:
      models.controller.resync()
    sampler = cursor.select_sampler(best_step)
    _write_export(spec, models, state, sampler, images, best_step, os.path.join(workdir, "best", "export"))
    if spec.cadence.export_best:
      _write_export(spec, models, state, sampler, images, best_step, export_dir)
  return export_dir


def _write_export(spec: RunSpec, models: _Models, state: _RunState, sampler: keras.Model,
                  images: data_lib.ImageData, step: int, export_dir: str) -> None:
  """Strips ``sampler`` (trained ``step`` steps) and exports it with the run's metadata to ``export_dir``."""
  growing, controller = models.growing, models.controller
  exported = pruning_strip(sampler) if controller is not None else sampler
  opt = spec.optimization
  metadata = dict(step=step, z_dim=opt.z_dim,
                  image_size=images.image_size, channels=images.channels, dataset=images.name, loss=opt.loss,
                  method="regan" if controller is not None else "dense", ema=models.ema is not None,
                  diffaugment=",".join(spec.data.diffaugment), apa=models.apa is not None)
  if state.best_manager.latest_checkpoint:
    metadata["best_fid"] = float(state.best_fid.numpy())
    metadata["best_fid_step"] = int(state.best_manager.latest_checkpoint.rsplit("-", 1)[-1])
  if growing is not None:
    export_key, export_alpha = growing.key_at(max(metadata["step"] - 1, 0))
    metadata["growth"] = dict(stage=export_key.stage, resolution=growing.progan.resolution(export_key.stage),
                              alpha=export_alpha, schedule=growing.schedule.get_config())
  if controller is not None:
    partial = growing is not None  # a lower stage holds only part of the pruned layers
    per_tensor = controller.export_sparsity_per_tensor(exported, missing_ok=partial)
    metadata["sparsity"] = {
        "overall": controller.export_sparsity(exported, missing_ok=partial),
        "per_tensor": {name: zeros / max(size, 1) for name, (zeros, size) in per_tensor.items()},
        "phase_at_export": None if controller.phase is None else int(controller.phase)}
  export_lib.export_generator(exported, export_dir, z_dim=opt.z_dim, metadata=metadata)
  logging.info("Exported the generator to %s.", export_dir)


def _count_variables(variables: Sequence[tf.Variable]) -> int:
  return int(sum(np.prod(v.shape) for v in variables))


def _learning_rate(optimizer) -> float:
  lr = optimizer.learning_rate
  return float(lr.numpy() if hasattr(lr, "numpy") else lr)
