"""The GAN training loop: n_critic discriminator steps per generator step.

One readable function, :func:`train`, in banner-commented sections: set-up,
data, models, restore, compiled step, loop, export. Everything it needs comes
in as typed keyword arguments; gin (in ``regan_tf.configurables``) only wires
them, and nothing here reads flags.

Counting: ``step`` counts generator updates. Each step (one "iteration") runs
``n_critic`` discriminator updates, each on a fresh real batch, then one
generator update, all inside one compiled function per replica. Randomness is
stateless, derived from ``(seed, step, replica)``, and the data order is a
function of ``(seed, batch position)``, so a run stopped at any checkpoint and
restarted with the same command continues exactly where it left off, without
storing RNG or shuffle-buffer state.

Re-GAN (``regan_tf.pruning``) plugs in through a controller with three hooks
(see ``PruningController``): the host calls ``before_g_step`` before each
step; inside the compiled step the generator's gradients go through
``mask_gradients`` and ``apply_masks`` runs after the optimizer update.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Protocol, Sequence, Tuple, Union

from absl import logging
import numpy as np

from regan_tf import augment as augment_lib
from regan_tf import data as data_lib
from regan_tf import export as export_lib
from regan_tf import flops as flops_lib
from regan_tf import images as images_lib
from regan_tf import losses as losses_lib
from regan_tf import models as models_lib
from regan_tf import progressive as progressive_lib
from regan_tf.pruning import strip as pruning_strip
from regan_tf.compat import keras, tf

ConfigText = Union[str, Callable[[], str], None]


class PruningController(Protocol):
  """What the trainer needs from a generator-pruning scheme (Re-GAN)."""

  def before_g_step(self, step: int, optimizer: Any) -> Sequence[Any]:
    """Host side, before generator step ``step``: phase changes, masks, lr."""

  def mask_gradients(self, grads: List[tf.Tensor], variables: List[tf.Variable]) -> List[tf.Tensor]:
    """Inside the replica step: zero the gradients of masked entries."""

  def apply_masks(self) -> None:
    """Inside the replica step, after the optimizer: re-zero masked entries."""

  def checkpoint_items(self) -> Dict[str, Any]:
    """Trackables to save with the run's checkpoint."""

  def summary_scalars(self) -> Dict[str, float]:
    """Scalars for TensorBoard (phase, lr factor, sparsity)."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
  """What a finished (or already finished) run returns."""
  step: int
  workdir: str
  export_dir: Optional[str]
  metrics: Dict[str, float]


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


def make_strategy(kind: str = "auto") -> tf.distribute.Strategy:
  """Returns the distribution strategy for ``kind``.

  Args:
    kind: ``auto``: MirroredStrategy over all visible GPUs if there is one,
      else the default (single-device) strategy. ``mirrored``: MirroredStrategy
      over all GPUs, or over all logical CPU devices when there is no GPU.
      ``one_device``: the first GPU, else the CPU. ``default``: no strategy.
  """
  gpus = tf.config.list_logical_devices("GPU")
  if kind == "auto":
    kind = "mirrored" if gpus else "default"
  if kind == "mirrored":
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    if len(devices) == 1:
      return tf.distribute.OneDeviceStrategy(devices[0])
    cross_device_ops = None if gpus else tf.distribute.ReductionToOneDevice()
    return tf.distribute.MirroredStrategy(devices, cross_device_ops=cross_device_ops)
  if kind == "one_device":
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
  if kind == "default":
    return tf.distribute.get_strategy()
  raise ValueError(f"strategy must be one of 'auto', 'mirrored', 'one_device', 'default'; got {kind!r}.")


def _on_gpu(strategy: tf.distribute.Strategy) -> bool:
  try:
    devices = strategy.extended.worker_devices
  except RuntimeError:  # the default strategy has no device list
    devices = ()
  return any("GPU" in d.upper() for d in devices) or (
      not devices and bool(tf.config.list_logical_devices("GPU")))


def resolve_jit_compile(jit_compile: Union[bool, str], strategy: tf.distribute.Strategy) -> bool:
  """Decides whether the step functions are XLA-compiled.

  ``auto`` means on for GPUs and off on CPU (XLA's CPU backend is ~35% slower
  than TensorFlow's oneDNN kernels for these models). XLA with
  MirroredStrategy over several CPU devices fails in TensorFlow ("resource on a
  different device"), so that combination falls back to no XLA with a warning.
  """
  if jit_compile not in (True, False, "auto"):
    raise ValueError(f"jit_compile must be True, False or 'auto'; got {jit_compile!r}.")
  on_gpu = _on_gpu(strategy)
  if jit_compile == "auto":
    return on_gpu
  if jit_compile and strategy.num_replicas_in_sync > 1 and not on_gpu:
    logging.warning(
        "jit_compile=True is not supported by TensorFlow with MirroredStrategy over %d CPU "
        "devices; running the steps without XLA.", strategy.num_replicas_in_sync)
    return False
  return bool(jit_compile)


# ----------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------


def _config_text(config_text: ConfigText) -> str:
  if callable(config_text):
    return config_text()
  return config_text or ""


def _write_text_atomic(path: str, text: str) -> None:
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def _format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _make_optimizer(lr, beta1: float, beta2: float, mixed: bool, name: str):
  opt = keras.optimizers.Adam(learning_rate=lr, beta_1=beta1, beta_2=beta2, name=name)
  if mixed:
    opt = keras.mixed_precision.LossScaleOptimizer(opt)
  return opt


def _validate(*, batch_size: int, n_critic: int, train_steps: int, replicas: int, **positive: float) -> None:
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
  if batch_size % replicas:
    raise ValueError(
        f"batch_size ({batch_size}) must be divisible by the number of replicas ({replicas}); "
        f"use e.g. batch_size={replicas * max(1, round(batch_size / replicas))}.")
  if n_critic < 1:
    raise ValueError(f"n_critic (discriminator steps per generator step) must be >= 1, got {n_critic}.")
  if train_steps < 0:
    raise ValueError(f"train_steps must be >= 0, got {train_steps}.")
  for name, value in positive.items():
    if not value > 0:
      raise ValueError(f"{name} must be > 0, got {value}.")


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
    r1_gamma: float = 0.0,
    r1_every: int = 16,
    pl_weight: float = 0.0,
    pl_every: int = 4,
    pl_batch_shrink: int = 2,
    style_mixing: float = 0.0,
    batch_size: int = 64,
    n_critic: int = 5,
    train_steps: Optional[int] = None,
    train_epochs: Optional[float] = None,
    g_lr: float = 2e-4,
    d_lr: float = 2e-4,
    beta1: float = 0.0,
    beta2: float = 0.9,
    data_fraction: float = 1.0,
    subset_rule: str = "first",
    random_flip: bool = False,
    seed: int = 0,
    strategy: str = "auto",
    cpu_devices: int = 0,
    jit_compile: Union[bool, str] = "auto",
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
    eval_every: int = 0,
    eval_reference: str = "full",
    export_best: bool = False,
    profile_steps: Optional[Sequence[int]] = None,
    config_text: ConfigText = None,
) -> TrainResult:
  """Trains a GAN in ``workdir``, resuming from its latest checkpoint if any.

  Args:
    workdir: run directory: checkpoints/, TensorBoard events, samples/,
      operative_config.gin, export/ (the generator SavedModel).
    dataset: called with no arguments; returns the training images
      (``regan_tf.data.ImageData``). Image size and channels come from it.
    model: called as ``model(image_size=, channels=, z_dim=)``; returns a
      ``regan_tf.models.GAN``.
    z_dim: latent size.
    loss: ``hinge``, ``non_saturating`` or ``wasserstein`` (regan_tf.losses).
    gp_weight: weight of the WGAN-GP gradient penalty (0 disables it).
    drift_weight: weight of ProGAN's drift term ``mean(D(real)^2)`` in the D
      loss (0.001 in ProGAN; 0 disables it).
    r1_gamma, r1_every: lazy R1 (StyleGAN2): every ``r1_every`` iterations an
      extra D step on ``r1_gamma / 2 * r1_every * R1`` over the iteration's last
      real batch. 0 disables it.
    pl_weight, pl_every, pl_batch_shrink: lazy path-length regularization
      (StyleGAN2 generators only): every ``pl_every`` iterations an extra G step
      on ``pl_weight * pl_every * PL`` over ``batch / pl_batch_shrink``
      latents, with Re-GAN's gradient masks and masks applied after it, like
      the main G step. 0 disables it. With lazy regularization the affected
      optimizer's lr is multiplied by c = k / (k + 1) and its betas raised to c
      (StyleGAN2, Appendix B); Re-GAN's dense-phase factor then scales that
      corrected rate, so the ratio between phases is kept.
    style_mixing: probability of style mixing in G's training forward passes
      (StyleGAN2 generators only; 0.9 in the Re-GAN reference, 0 off).
    batch_size: global batch size, split evenly over replicas.
    n_critic: discriminator steps per generator step.
    train_steps: generator steps to train for. Exactly one of ``train_steps``
      and ``train_epochs`` must be set.
    train_epochs: training length in epochs; one epoch is one pass of the
      discriminator over the (subset of the) data, i.e. N / (batch_size *
      n_critic) generator steps, as in the reference's epoch loop.
    g_lr, d_lr, beta1, beta2: Adam settings (the generator's base lr).
    data_fraction, subset_rule: train on this fraction of the dataset, chosen
      by ``first`` / ``random`` / ``stratified`` (regan_tf.data.select_subset).
    random_flip: random horizontal flips of real images.
    seed: seeds the data order, latents and initialization.
    strategy: see :func:`make_strategy`.
    cpu_devices: split the CPU into this many logical devices first (for
      multi-replica runs on a CPU machine); 0 leaves it alone.
    jit_compile: XLA for the step function: True, False or ``auto``.
    mixed_precision: ``mixed_float16`` compute with float32 variables and
      outputs, with loss scaling (for GPUs).
    checkpoint_every, keep_checkpoints: checkpoint cadence and retention.
    log_every: steps between log lines and TensorBoard scalars.
    image_every: steps between sample grids (TensorBoard and samples/).
    num_grid_images: images in the fixed-latent sample grid.
    export: write the generator SavedModel to ``workdir/export`` at the end.
    pruning: called as ``pruning(generator=, strategy=, steps_per_epoch=,
      train_steps=)`` (steps_per_epoch a float);
      returns the controller (and wraps the generator) for Re-GAN; None trains
      the dense baseline. In a growing run it is also passed ``start_step``,
      the first step of ``regan_stage``, from which its warm-up counts.
    growth: progressive growing (ProGAN only): called as
      ``growth(num_examples=, n_critic=, batch_size=)``; returns a
      ``regan_tf.models.progan.GrowthSchedule``. The run then trains stage
      after stage from 4x4 with fade-ins, each stage at its own batch size
      (``batch_size`` is only the default), and samples, evaluates and exports
      the current stage upsampled to the data's size (see
      ``regan_tf.progressive``). None: train the model as built.
    regan_stage: in a growing run, the stage from whose first step Re-GAN's
      warm-up is counted; None: the final stage (as the reference).
    diffaugment: DiffAugment policy applied to every image D sees, real and
      generated, in D and G steps (e.g. ``color,translation,cutout``; ``""``
      off). See ``regan_tf.augment``.
    apa: called as ``apa(strategy=)``; returns an
      ``regan_tf.augment.AdaptivePseudoAugment`` (generated images shown to D
      as real with an adaptive probability p). None: off.
    ema: called as ``ema(generator=, controller=, strategy=)``; returns a
      ``regan_tf.ema.GeneratorEMA``, whose model is then used for sample
      grids, evaluation and export. None: no EMA.
    evaluation: called as ``evaluation(data=, z_dim=)``; returns a
      ``regan_tf.metrics.Evaluator`` (FID / IS / KID). None: no evaluation.
    eval_every: steps between evaluations (0: only at the end). The best
      checkpoint by FID is kept in ``workdir/best/``.
    eval_reference: ``full``: FID against the whole dataset (the CIFAR-10
      fraction experiments); ``train``: against the training subset itself
      (few-shot sets, as the paper's Table 5).
    export_best: export the best-FID checkpoint instead of the last step.
    profile_steps: ``(first, last)``: capture a TensorFlow profiler trace of
      steps first..last (inclusive, 0-based) into the run's TensorBoard
      directory (the Profile tab: op times, memory, FLOPs of the traced ops).
    config_text: the operative configuration (or a callable returning it),
      written to ``operative_config.gin`` and TensorBoard.

  Returns:
    A :class:`TrainResult`.
  """
  # --------------------------------------------------------------- set-up ---
  configure_cpu_devices(cpu_devices)
  dist = make_strategy(strategy)
  replicas = dist.num_replicas_in_sync
  if (train_steps is None) == (train_epochs is None):
    raise ValueError(f"Set exactly one of train_steps and train_epochs (got train_steps={train_steps}, "
                     f"train_epochs={train_epochs}).")
  _validate(batch_size=batch_size, n_critic=n_critic, train_steps=train_steps or 0, replicas=replicas,
            g_lr=g_lr, d_lr=d_lr, checkpoint_every=checkpoint_every, log_every=log_every,
            image_every=image_every, keep_checkpoints=keep_checkpoints)
  g_loss_fn, d_loss_fn = losses_lib.get(loss)
  for name, value in (("drift_weight", drift_weight), ("r1_gamma", r1_gamma), ("pl_weight", pl_weight),
                      ("gp_weight", gp_weight)):
    if not value >= 0:
      raise ValueError(f"{name} must be >= 0 (0 disables it), got {value}.")
  for name, value in (("r1_every", r1_every), ("pl_every", pl_every), ("pl_batch_shrink", pl_batch_shrink)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
  if not 0.0 <= style_mixing <= 1.0:
    raise ValueError(f"style_mixing is a probability in [0, 1], got {style_mixing}.")
  # Lazy regularization (StyleGAN2 App. B): a penalty applied every k steps
  # gets an optimizer whose lr and betas are corrected by c = k / (k + 1).
  d_lazy = r1_every / (r1_every + 1.0) if r1_gamma > 0 else 1.0
  g_lazy = pl_every / (pl_every + 1.0) if pl_weight > 0 else 1.0
  policy = augment_lib.parse_policy(diffaugment)
  use_jit = resolve_jit_compile(jit_compile, dist)
  if mixed_precision and not _on_gpu(dist):
    logging.warning("mixed_precision on CPU is slow (float16 is emulated); it is meant for GPUs.")
  logging.info("Strategy %s with %d replica(s); XLA %s; mixed precision %s.",
               type(dist).__name__, replicas, "on" if use_jit else "off",
               "on" if mixed_precision else "off")

  # ----------------------------------------------------------------- data ---
  if eval_reference not in ("full", "train"):
    raise ValueError(f"eval_reference must be 'full' or 'train', got {eval_reference!r}.")
  if eval_every < 0:
    raise ValueError(f"eval_every must be >= 0 (0: evaluate at the end only), got {eval_every}.")
  if profile_steps is not None:
    if len(profile_steps) != 2 or not 0 <= profile_steps[0] <= profile_steps[1]:
      raise ValueError(f"profile_steps must be (first, last) with 0 <= first <= last, got {profile_steps!r}.")
  if export_best and evaluation is None:
    raise ValueError("export_best=True needs an evaluation (train.evaluation = @evaluation) to rank checkpoints.")
  full_images = dataset()
  images = data_lib.select_subset(full_images, fraction=data_fraction, rule=subset_rule, seed=seed)
  steps_per_epoch = images.num_examples / (batch_size * n_critic)
  if train_epochs is not None:
    if not train_epochs > 0:
      raise ValueError(f"train_epochs must be > 0, got {train_epochs}.")
    train_steps = max(1, int(round(train_epochs * steps_per_epoch)))
  logging.info("Data %s: %d images of %dx%dx%d; one epoch = %.2f generator steps; training for %d steps.",
               images.name, images.num_examples, images.image_size, images.image_size,
               images.channels, steps_per_epoch, train_steps)

  previous_policy = keras.mixed_precision.global_policy()
  if mixed_precision:
    keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    # ------------------------------------------------------------- models ---
    with dist.scope():
      keras.utils.set_random_seed(seed)
      gan = model(image_size=images.image_size, channels=images.channels, z_dim=z_dim)
      generator, discriminator = gan.generator, gan.discriminator
      growing = None
      if growth is not None:
        if gan.progressive is None:
          raise ValueError(f"train.growth grows a progressive GAN, but the model ({generator.name!r}) is "
                           "not one; use train.model = @models.progan, or train.growth = None.")
        growing = progressive_lib.GrowingRun(
            gan.progressive, growth(num_examples=images.num_examples, n_critic=n_critic,
                                    batch_size=batch_size), replicas=replicas)
        generator = growing.growing_generator()
        logging.info("Progressive growing: %s.", growing.describe())
      elif regan_stage is not None:
        raise ValueError(f"regan_stage={regan_stage} needs a growing run (train.growth); without one "
                         "Re-GAN's warm-up counts from step 0. Remove train.regan_stage.")
      controller = None
      if pruning is not None:
        extra = {} if growing is None else {"start_step": growing.regan_start(regan_stage)}
        controller = pruning(generator=generator, strategy=dist, steps_per_epoch=steps_per_epoch,
                             train_steps=train_steps, **extra)
        generator = controller.generator
        first_mask = controller.schedule.warmup
        if first_mask >= train_steps:
          logging.warning("Re-GAN never engages: its first sparse phase would start at step %d, but the "
                          "run has %d steps; this trains the dense baseline. Shorten regan.warmup%s or "
                          "train longer.", first_mask, train_steps,
                          "" if growing is None else " (counted from the Re-GAN stage's first step)")
      # Under Re-GAN the generator's rate is base x the controller's phase factor.
      g_rate = controller.learning_rate(g_lr * g_lazy) if controller is not None else g_lr * g_lazy
      g_opt = _make_optimizer(g_rate, beta1 ** g_lazy, beta2 ** g_lazy, mixed_precision, "g_adam")
      d_opt = _make_optimizer(d_lr * d_lazy, beta1 ** d_lazy, beta2 ** d_lazy, mixed_precision, "d_adam")
      if g_lazy != 1.0 or d_lazy != 1.0:
        logging.info("Lazy regularization: G lr x %.4f and betas ^%.4f (path length every %d); D lr x %.4f "
                     "and betas ^%.4f (R1 every %d).", g_lazy, g_lazy, pl_every, d_lazy, d_lazy, r1_every)
      stylegan_parts = None
      if pl_weight > 0 or style_mixing > 0:
        mapping, synthesis = models_lib.stylegan2.mapping_and_synthesis(generator)
        stylegan_parts = (mapping, synthesis, int(synthesis.input_shape[1]))
      pl_mean = None
      if pl_weight > 0:
        if (batch_size // replicas) // pl_batch_shrink < 1:
          raise ValueError(f"pl_batch_shrink ({pl_batch_shrink}) leaves no latents of the per-replica batch "
                           f"({batch_size // replicas}); lower it or raise batch_size.")
        pl_mean = tf.Variable(0.0, trainable=False, name="pl_mean",
                              aggregation=tf.VariableAggregation.MEAN)
      apa_state = apa(strategy=dist) if apa is not None else None
      # Built after G and D: cloning draws from Keras's global RNG.
      ema_state = ema(generator=generator, controller=controller, strategy=dist) if ema is not None else None
      # Slots exist before a restore, so a checkpoint restores them directly.
      _inner(g_opt).build(generator.trainable_variables)
      _inner(d_opt).build(discriminator.trainable_variables if growing is None
                          else growing.discriminator_variables)
    evaluator = None
    if evaluation is not None:
      evaluator = evaluation(data=full_images if eval_reference == "full" else images, z_dim=z_dim)
      logging.info("Evaluation: %s on %d samples against %s.", ", ".join(evaluator.metric_names),
                   evaluator.num_samples, "the full dataset" if eval_reference == "full" else "the training subset")
    logging.info("Generator %s: %s trainable weights; discriminator %s: %s.", generator.name,
                 f"{_count(generator):,}", discriminator.name, f"{_count(discriminator):,}")
    if growing is not None:
      logging.info("(Growing: the generator holds every stage's layers; the discriminator count is the "
                   "final stage's, %s with every stage's from_rgb.)",
                   f"{_count_variables(growing.discriminator_variables):,}")

    # FLOPs per image from TensorFlow's profiler: what each iteration executes,
    # and (under Re-GAN) what it costs counted on nonzero weights. A growing run
    # counts each (stage, fade) span with its own models and batch.
    schedule = controller.schedule if controller is not None else None

    def segment_flops(g_model: keras.Model, d_model: keras.Model, batch: int) -> Dict[str, Any]:
      size = int(d_model.input_shape[1])
      return dict(f_g=flops_lib.forward_flops(g_model, (z_dim,), batch_size=batch),
                  f_d=flops_lib.forward_flops(d_model, (size, size, images.channels), batch_size=batch),
                  layers=flops_lib.layer_forward_flops(g_model), batch=batch,
                  pruned=flops_lib.pruned_layer_names(g_model) if controller is not None else None)

    if growing is None:
      flop_spans = [(0, None, segment_flops(generator, discriminator, batch_size))]
    else:
      by_key: Dict[Any, Dict[str, Any]] = {}
      flop_spans = []
      # A run of 0 steps still gets its first span, so the logs and flops.json have per-image figures.
      for first, end, key in growing.segments(max(train_steps, 1)):
        if key not in by_key:
          by_key[key] = segment_flops(growing.generator(generator, key), growing.discriminator(key),
                                      growing.batch_size(key))
        flop_spans.append((first, end, by_key[key]))

    def flops_totals(at_step: int) -> Dict[str, float]:
      totals = dict(executed_total=0.0, regan_effective_total=0.0, sparse_steps=0.0)
      for first, end, part in flop_spans:
        upto = at_step if end is None else min(at_step, end)
        if upto <= first:
          continue
        for sign, n in ((1.0, upto), (-1.0, first)):
          if n:
            span = flops_lib.schedule_flops(part["layers"], part["f_d"], part["batch"], n_critic, n,
                                            schedule, f_g=part["f_g"], pruned_layers=part["pruned"])
            for name in totals:
              totals[name] += sign * span[name]
      executed = totals["executed_total"]
      totals["dense_total"] = executed
      totals["savings_percent"] = (100.0 * (1.0 - totals["regan_effective_total"] / executed)
                                   if executed else 0.0)
      totals["train_steps"] = at_step
      return totals

    def flops_so_far(at_step: int) -> Dict[str, float]:
      totals = flops_totals(at_step)
      return {"flops/executed_total": totals["executed_total"],
              "flops/effective_total": totals["regan_effective_total"],
              "flops/savings_percent": totals["savings_percent"]}

    final_flops = flop_spans[-1][2]
    f_g, f_d, g_layer_flops = final_flops["f_g"], final_flops["f_d"], final_flops["layers"]
    if growing is None:
      run_flops = flops_lib.schedule_flops(g_layer_flops, f_d, batch_size, n_critic, train_steps, schedule,
                                           f_g=f_g, pruned_layers=final_flops["pruned"])
    else:
      run_flops = flops_totals(train_steps)
    logging.info("FLOPs per image: G %.4g, D %.4g%s; projected run: %.4g executed, %.4g effective (%.2f%% "
                 "saved on nonzero weights; dense kernels do not run faster on masked weights).",
                 f_g, f_d, "" if growing is None else " (last stage)", run_flops["executed_total"],
                 run_flops["regan_effective_total"], run_flops["savings_percent"])

    # ------------------------------------------------------------ restore ---
    # The run directory appears only once data and models are known to load,
    # so a bad configuration leaves nothing behind.
    os.makedirs(workdir, exist_ok=True)
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    best_fid = tf.Variable(np.inf, dtype=tf.float64, trainable=False, name="best_fid")
    trackables = dict(step=step_var, generator=generator,
                      discriminator=discriminator if growing is None else growing.discriminator_module,
                      g_optimizer=g_opt, d_optimizer=d_opt, best_fid=best_fid)
    for part in (controller, apa_state, ema_state):
      if part is not None:
        trackables.update(part.checkpoint_items())
    if pl_mean is not None:
      trackables["pl_mean"] = pl_mean
    ckpt = tf.train.Checkpoint(**trackables)
    manager = tf.train.CheckpointManager(ckpt, os.path.join(workdir, "checkpoints"),
                                         max_to_keep=keep_checkpoints)
    best_manager = tf.train.CheckpointManager(ckpt, os.path.join(workdir, "best"), max_to_keep=1)
    if manager.latest_checkpoint:
      try:
        ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
      except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise RuntimeError(
            f"The checkpoint {manager.latest_checkpoint} does not match this configuration "
            f"(model, optimizer or pruning changed?): {e}\nResume with the configuration that "
            f"wrote it, or start a new run with another --workdir.") from e
      logging.info("Resumed from %s at step %d.", manager.latest_checkpoint, int(step_var.numpy()))
    start_step = int(step_var.numpy())
    _write_text_atomic(os.path.join(workdir, "flops.json"), json.dumps(dict(
        g_forward_per_image=f_g, d_forward_per_image=f_d, g_layer_forward_per_image=g_layer_flops,
        batch_size=batch_size, n_critic=n_critic, train_steps=train_steps,
        growth=None if growing is None else growing.schedule.get_config(),
        note="Effective FLOPs count pruned layers in proportion to their nonzero weights during sparse "
             "phases, as the Re-GAN paper does; executed FLOPs are what dense kernels run.",
        projected={k: v for k, v in run_flops.items() if isinstance(v, (int, float))}), indent=2))

    writer = tf.summary.create_file_writer(workdir)
    text = _config_text(config_text)
    if text:
      _write_text_atomic(os.path.join(workdir, "operative_config.gin"), text)
      with writer.as_default(step=start_step):
        tf.summary.text("config/operative_gin", "    " + text.replace("\n", "\n    "))

    # ------------------------------------------------------- compiled step ---
    def make_iteration(g_model, d_model, batch: int, real_transform=None) -> _Iteration:
      return _build_iteration(
          dist=dist, generator=g_model, discriminator=d_model, g_opt=g_opt, d_opt=d_opt,
          g_loss_fn=g_loss_fn, d_loss_fn=d_loss_fn, gp_weight=gp_weight, drift_weight=drift_weight,
          r1_weight=r1_gamma / 2.0 * r1_every, pl_weight=pl_weight * pl_every, pl_batch_shrink=pl_batch_shrink,
          pl_mean=pl_mean, style_mixing=style_mixing, stylegan_parts=stylegan_parts, z_dim=z_dim,
          local_batch=batch // replicas, n_critic=n_critic, seed=seed, jit=use_jit,
          controller=controller, policy=policy, apa=apa_state, ema=ema_state, real_transform=real_transform)

    def make_iterator(batch: int, data_seed: int, start_batch: int):
      pipeline = data_lib.make_pipeline(images, global_batch_size=batch, seed=data_seed,
                                        start_batch=start_batch, random_flip=random_flip)
      return iter(dist.experimental_distribute_dataset(pipeline))

    # What samples, evaluates and exports: the EMA generator when there is one.
    sampler_all = ema_state.model if ema_state is not None else generator
    sampler = sampler_all
    current_batch = batch_size
    growth_key = growth_alpha = None
    if growing is None:
      iterator = make_iterator(batch_size, seed, start_step * n_critic)
      iteration = make_iteration(generator, discriminator, batch_size)
    else:
      # Chosen per step in the loop: each (stage, fade) span has its own models,
      # batch and trace; each stage its own data stream (seed, stage), read from
      # the stage's first step, so a resumed run reads the same batches.
      iterator = iteration = None
      iterations: Dict[Any, _Iteration] = {}

      def enter(key, at_step: int) -> None:
        nonlocal iterator, iteration, sampler, current_batch, growth_key
        if growth_key is None or key.stage != growth_key.stage:
          current_batch = growing.batch_size(key)
          stage_start = growing.schedule.stage_start(key.stage)
          iterator = make_iterator(current_batch, seed * 1009 + key.stage,
                                   (at_step - stage_start) * n_critic)
        if key not in iterations:
          iterations[key] = make_iteration(growing.generator(generator, key), growing.discriminator(key),
                                           current_batch, growing.reals(key))
        iteration = iterations[key]
        sampler = growing.generator(sampler_all, key, upsample=True)
        growth_key = key
        logging.info("Step %d: %s, batch %d.", at_step, key.describe(growing.progan), current_batch)

      def select_sampler(after_steps: int) -> None:
        # The stage (and alpha) the model had after ``after_steps`` steps, for
        # an export of a run that is already complete or of its best checkpoint.
        nonlocal sampler, growth_alpha
        key, alpha = growing.key_at(max(after_steps - 1, 0))
        sampler = growing.generator(sampler_all, key, upsample=True)
        growing.alpha.assign(alpha)
        growth_alpha = alpha

    grid_z = tf.random.stateless_normal([num_grid_images, z_dim], seed=[seed, 7919])

    # --------------------------------------------------------------- loop ---
    step = start_step
    metrics: Dict[str, float] = {}
    if step >= train_steps:
      logging.info("Run already complete (step %d of %d).", step, train_steps)
    last_time, last_step, loop_start = time.time(), step, time.time()
    profiling = False
    last_regularization: Dict[str, tf.Tensor] = {}
    try:
      while step < train_steps:
        if growing is not None:
          key, alpha = growing.key_at(step)
          if key != growth_key:
            enter(key, step)
          if alpha != growth_alpha:
            growing.alpha.assign(alpha)
            growth_alpha = alpha
        if controller is not None:
          # The controller logs phase changes itself; TensorBoard gets their numbers.
          for event in controller.before_g_step(step, g_opt):
            _write_event(writer, event)
        if profile_steps is not None and step == profile_steps[0]:
          tf.profiler.experimental.start(workdir)
          profiling = True
          logging.info("Profiling steps %d..%d into %s.", profile_steps[0], profile_steps[1], workdir)
        step_metrics = iteration(iterator, tf.constant(step, tf.int64),
                                 r1=r1_gamma > 0 and step % r1_every == 0,
                                 pl=pl_weight > 0 and step % pl_every == 0)
        # Regularization steps are every k iterations: log their latest values.
        last_regularization.update({k: v for k, v in step_metrics.items() if k in ("r1", "pl_penalty")})
        if profile_steps is not None and step == profile_steps[1]:
          float(step_metrics["g_loss"])  # the traced steps must have finished
          tf.profiler.experimental.stop()
          profiling = False
        if step == start_step and use_jit and iteration.fell_back:
          use_jit = False
        step += 1
        if step % log_every == 0 or step == train_steps:
          metrics = {k: float(v) for k, v in {**step_metrics, **last_regularization}.items()}
          if pl_mean is not None:
            metrics["pl_mean"] = float(pl_mean.numpy())
          bad = [k for k, v in metrics.items() if not np.isfinite(v)]
          if bad:
            raise FloatingPointError(
                f"Non-finite {', '.join(bad)} at step {step} ({metrics}); the last good "
                f"checkpoint is {manager.latest_checkpoint}. Lower the learning rates or check the data.")
          now = time.time()
          rate = (step - last_step) / max(now - last_time, 1e-9)
          last_time, last_step = now, step
          metrics["steps_per_sec"] = rate
          metrics["images_per_sec"] = rate * current_batch * (n_critic + 1)
          if growing is not None:
            metrics["growth/stage"] = float(growth_key.stage)
            metrics["growth/alpha"] = float(growth_alpha)
          metrics["g_lr"] = float(_lr(g_opt))
          metrics["d_lr"] = float(_lr(d_opt))
          metrics.update(flops_so_far(step))
          for part in (controller, apa_state):
            if part is not None:
              metrics.update(part.summary_scalars())
          with writer.as_default(step=step):
            for k, v in metrics.items():
              tf.summary.scalar(_summary_name(k), v)
          logging.info(
              "step %d/%d (%.1f%%) | %.2f it/s | d_loss %.4f g_loss %.4f | D(real) %.3f D(fake) %.3f | ETA %s",
              step, train_steps, 100.0 * step / max(train_steps, 1), rate, metrics["d_loss"],
              metrics["g_loss"], metrics["d_real"], metrics["d_fake"],
              _format_duration((train_steps - step) / max(rate, 1e-9)))
        if step % image_every == 0 or step == train_steps:
          _write_grid(writer, workdir, sampler, grid_z, step)
        if evaluator is not None and ((eval_every and step % eval_every == 0) or step == train_steps):
          metrics.update(_evaluate(evaluator, sampler, writer, step, best_fid, step_var, best_manager))
        if step % checkpoint_every == 0 or step == train_steps:
          step_var.assign(step)
          manager.save(checkpoint_number=step)
    except KeyboardInterrupt:
      step_var.assign(step)
      path = manager.save(checkpoint_number=step)
      logging.warning("Interrupted at step %d; saved %s. Rerun the same command to resume.", step, path)
      raise
    finally:
      if profiling:
        tf.profiler.experimental.stop()
      writer.flush()
    if step > start_step:
      logging.info("Trained steps %d..%d in %s.", start_step, step, _format_duration(time.time() - loop_start))
    if growing is not None:
      last_key, _ = growing.key_at(max(step - 1, 0))
      if last_key.stage < growing.final_stage or last_key.fade:
        logging.warning("The run ended in %s, before the final stage's plain network (step %d); samples "
                        "and the export are that stage's, upsampled to %dx%d. Raise train.train_steps "
                        "past %d to reach it.", last_key.describe(growing.progan), step,
                        images.image_size, images.image_size,
                        growing.schedule.stage_start(growing.final_stage)
                        + growing.schedule.fade_steps[growing.final_stage])

    # ------------------------------------------------------------- export ---
    export_dir = None
    if export and export_best and best_manager.latest_checkpoint:
      ckpt.restore(best_manager.latest_checkpoint).assert_existing_objects_matched()
      logging.info("Exporting the best checkpoint by FID: %s (step %d, FID %.4f).",
                   best_manager.latest_checkpoint, int(step_var.numpy()), float(best_fid.numpy()))
      if controller is not None:
        controller.resync()
      if growing is not None:
        select_sampler(int(step_var.numpy()))
    elif growing is not None and growth_key is None:
      select_sampler(step)  # nothing trained in this call: the checkpoint's stage
    if export:
      export_dir = os.path.join(workdir, "export")
      if controller is not None:
        exported = pruning_strip(sampler)
      else:
        exported = sampler
      metadata = dict(step=int(step_var.numpy()) if export_best else step, z_dim=z_dim, image_size=images.image_size,
                      channels=images.channels, dataset=images.name, loss=loss,
                      method="regan" if controller is not None else "dense",
                      ema=ema_state is not None, diffaugment=",".join(policy), apa=apa_state is not None)
      if growing is not None:
        export_key, export_alpha = growing.key_at(max(metadata["step"] - 1, 0))
        metadata["growth"] = dict(stage=export_key.stage,
                                  resolution=growing.progan.resolution(export_key.stage),
                                  alpha=export_alpha, schedule=growing.schedule.get_config())
      if controller is not None:
        partial = growing is not None  # a lower stage holds only part of the pruned layers
        per_tensor = controller.export_sparsity_per_tensor(exported, missing_ok=partial)
        metadata["sparsity"] = {
            "overall": controller.export_sparsity(exported, missing_ok=partial),
            "per_tensor": {name: zeros / max(size, 1) for name, (zeros, size) in per_tensor.items()},
            "phase_at_export": None if controller.phase is None else int(controller.phase)}
      export_lib.export_generator(exported, export_dir, z_dim=z_dim, metadata=metadata)
      logging.info("Exported the generator to %s.", export_dir)
    return TrainResult(step=step, workdir=workdir, export_dir=export_dir, metrics=metrics)
  finally:
    keras.mixed_precision.set_global_policy(previous_policy)


def _inner(optimizer):
  return getattr(optimizer, "inner_optimizer", optimizer)


def _count(model: keras.Model) -> int:
  return _count_variables(model.trainable_weights)


def _count_variables(variables: Sequence[tf.Variable]) -> int:
  return int(sum(np.prod(v.shape) for v in variables))


def _lr(optimizer) -> float:
  lr = optimizer.learning_rate
  return float(lr.numpy() if hasattr(lr, "numpy") else lr)


def _summary_name(key: str) -> str:
  if key in ("d_loss", "g_loss", "gp"):
    return f"loss/{key}"
  if key in ("d_real", "d_fake"):
    return f"discriminator/{key}"
  if key in ("steps_per_sec", "images_per_sec"):
    return f"speed/{key}"
  if key in ("g_lr", "d_lr"):
    return f"learning_rate/{key}"
  if key in ("r1", "pl_penalty", "pl_mean"):
    return f"regularization/{key}"
  return key


def _evaluate(evaluator, generator, writer, step: int, best_fid: tf.Variable, step_var: tf.Variable,
              best_manager: tf.train.CheckpointManager) -> Dict[str, float]:
  """Scores the generator; keeps the checkpoint with the lowest FID in ``best/``."""
  start = time.time()
  scores = evaluator.evaluate(lambda z: generator(z, training=False))
  fid_name = evaluator.metric_names[0]
  with writer.as_default(step=step):
    for name, value in scores.items():
      tf.summary.scalar(f"eval/{name}", value)
  improved = scores[fid_name] < float(best_fid.numpy())
  logging.info("eval at step %d (%d samples, %.1f s): %s%s", step, evaluator.num_samples,
               time.time() - start, ", ".join(f"{k} {v:.4f}" for k, v in scores.items()),
               " (best so far)" if improved else "")
  if improved:
    best_fid.assign(scores[fid_name])
    step_var.assign(step)
    best_manager.save(checkpoint_number=step)
  return scores


def _write_event(writer, event) -> None:
  """TensorBoard scalars for a Re-GAN phase change (at the step it happened)."""
  with writer.as_default(step=event.step):
    tf.summary.scalar("regan/phase", int(event.phase))
    tf.summary.scalar("regan/masked_weights", event.num_masked)
    tf.summary.scalar("regan/event_seconds", event.seconds)
    if event.num_changed is not None:
      tf.summary.scalar("regan/mask_entries_changed", event.num_changed)


def _write_grid(writer, workdir: str, generator: keras.Model, z: tf.Tensor, step: int) -> None:
  samples = generator(z, training=False).numpy()
  grid = images_lib.make_grid(samples)
  images_lib.write_png(os.path.join(workdir, "samples", f"step_{step:08d}.png"), grid)
  with writer.as_default(step=step):
    tf.summary.image("samples/fixed_z", grid[None], max_outputs=1)


# ----------------------------------------------------------------------------
# The compiled training iteration
# ----------------------------------------------------------------------------


class _Iteration:
  """Runs one training iteration (n_critic D steps + 1 G step) on all replicas.

  The per-replica function is XLA-compiled when ``jit`` is set; the outer
  function (which pulls batches from the distributed iterator, something XLA
  cannot compile) is a plain ``tf.function``. If XLA fails to compile on the
  first call, the iteration says so and falls back to the plain function:
  nothing has run at that point, so no state is half-updated.
  """

  def __init__(self, dist, replica_fn: Callable, n_critic: int, jit: bool):
    self._dist = dist
    self._replica_fn = replica_fn
    self._n_critic = n_critic
    self.fell_back = False
    self._fn = self._make(jit)
    self._traced = set()

  def _make(self, jit: bool):
    inner = tf.function(self._replica_fn, jit_compile=jit)
    dist, n_critic = self._dist, self._n_critic

    @tf.function
    def run(iterator, step, r1, pl):
      # r1 / pl are Python bools: each combination is its own trace, so the
      # lazy regularization steps cost nothing on the iterations without them.
      reals = tuple(next(iterator) for _ in range(n_critic))
      per_replica = dist.run(inner, args=(reals, step, r1, pl))
      return {k: dist.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in per_replica.items()}

    return run

  def __call__(self, iterator, step, r1: bool = False, pl: bool = False):
    variant = (bool(r1), bool(pl))
    if variant in self._traced or self.fell_back:
      return self._fn(iterator, step, *variant)
    self._traced.add(variant)
    try:
      return self._fn(iterator, step, *variant)
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.InternalError) as e:
      if "XLA" not in str(e) and "jit" not in str(e).lower() and "compil" not in str(e).lower():
        raise
      logging.warning("XLA could not compile the training step (%s); continuing without XLA.",
                      str(e).splitlines()[0][:300])
      self.fell_back = True
      self._fn = self._make(False)
      return self._fn(iterator, step, *variant)


def _build_iteration(*, dist, generator, discriminator, g_opt, d_opt, g_loss_fn, d_loss_fn,
                     gp_weight: float, z_dim: int, drift_weight: float = 0.0, r1_weight: float = 0.0,
                     pl_weight: float = 0.0, pl_batch_shrink: int = 2, pl_mean: Optional[tf.Variable] = None,
                     style_mixing: float = 0.0, stylegan_parts: Optional[Tuple[Any, Any, int]] = None, local_batch: int, n_critic: int, seed: int,
                     jit: bool, controller: Optional[PruningController], policy: Tuple[str, ...] = (),
                     apa: Any = None, ema: Any = None,
                     real_transform: Optional[Callable[[tf.Tensor], tf.Tensor]] = None) -> _Iteration:
  """Builds the per-replica training iteration and wraps it for the strategy.

  ``real_transform`` maps each real batch before D sees it (a growing ProGAN
  stage: pool to the stage's resolution and fade).
  """
  replicas = dist.num_replicas_in_sync
  mixed = isinstance(g_opt, keras.mixed_precision.LossScaleOptimizer)

  def stream_seed(step, k):
    replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int64)
    return tf.stack([tf.constant(seed, tf.int64) * 1000003 + replica, step * (n_critic + 1) + k])

  def latents(step, k):
    return tf.random.stateless_normal([local_batch, z_dim], seed=stream_seed(step, k))

  def augment(images, step, k, salt):
    # Salts keep the augmentation draws of reals (1), D-step fakes (2) and
    # G-step fakes (3) apart from each other and from the latents.
    if not policy:
      return images
    seed_ = tf.random.experimental.stateless_fold_in(stream_seed(step, k), salt)
    return augment_lib.diff_augment(images, policy, seed=seed_)

  def scaled(loss, opt):
    # Computed inside the tape. Losses are batch means on this replica and the
    # optimizer sums gradients over replicas, so each replica contributes
    # 1/replicas of its mean; under mixed precision the loss is also scaled.
    loss = loss / replicas
    return opt.get_scaled_loss(loss) if mixed else loss

  def gradients(tape, scaled_loss, variables, opt):
    grads = tape.gradient(scaled_loss, variables)
    return opt.get_unscaled_gradients(grads) if mixed else grads

  def generate(z, step, k):
    if not style_mixing:
      return generator(z, training=True)
    mapping, synthesis, num_ws = stylegan_parts
    ws = models_lib.stylegan2.mixed_latents(
        mapping, z, num_latents=num_ws, probability=style_mixing,
        seed=tf.random.experimental.stateless_fold_in(stream_seed(step, k), 5))
    return synthesis(ws, training=True)

  def d_step(real, z, step, k):
    fake = generate(z, step, k)
    if apa is not None:
      real = apa.apply(real, fake, seed=tf.random.experimental.stateless_fold_in(stream_seed(step, k), 4))
    real_in, fake_in = augment(real, step, k, 1), augment(fake, step, k, 2)
    with tf.GradientTape() as tape:
      real_logits = tf.cast(discriminator(real_in, training=True), tf.float32)
      fake_logits = tf.cast(discriminator(fake_in, training=True), tf.float32)
      loss = d_loss_fn(real_logits, fake_logits)
      if gp_weight:
        loss += gp_weight * losses_lib.gradient_penalty(discriminator, real_in, fake_in)
      if drift_weight:
        loss += drift_weight * losses_lib.drift_penalty(real_logits)
      scaled_loss = scaled(loss, d_opt)
    variables = discriminator.trainable_variables
    d_opt.apply_gradients(zip(gradients(tape, scaled_loss, variables, d_opt), variables))
    if apa is not None:
      apa.observe(real_logits)
    return loss, tf.reduce_mean(real_logits), tf.reduce_mean(fake_logits)

  def r1_step(real, step, k):
    # An extra D step on the penalty alone (lazy R1), on the same augmented view D trained on.
    with tf.GradientTape() as tape:
      penalty = models_lib.stylegan2.r1_penalty(discriminator, real, augment=lambda x: augment(x, step, k, 1))
      scaled_loss = scaled(r1_weight * penalty, d_opt)
    variables = discriminator.trainable_variables
    grads = gradients(tape, scaled_loss, variables, d_opt)
    # Weights R1 does not reach (D's last bias) get no update rather than an error.
    d_opt.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
    return penalty

  def g_update(tape, scaled_loss):
    variables = generator.trainable_variables
    grads = gradients(tape, scaled_loss, variables, g_opt)
    if controller is not None:
      grads = controller.mask_gradients(grads, variables)
    g_opt.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
    if controller is not None:
      controller.apply_masks()

  def pl_step(step):
    # An extra G step on the path-length penalty alone; masked like the main G step.
    mapping, synthesis, num_ws = stylegan_parts
    base = tf.random.experimental.stateless_fold_in(stream_seed(step, n_critic), 7)
    z = tf.random.stateless_normal([max(1, local_batch // pl_batch_shrink), z_dim],
                                   seed=tf.random.experimental.stateless_fold_in(base, 0))
    with tf.GradientTape() as tape:
      ws = models_lib.stylegan2.mixed_latents(mapping, z, num_latents=num_ws, probability=style_mixing,
                                              seed=tf.random.experimental.stateless_fold_in(base, 1))
      penalty, new_mean, _ = models_lib.stylegan2.path_length_penalty(
          synthesis, ws, pl_mean, tf.random.experimental.stateless_fold_in(base, 2))
      scaled_loss = scaled(pl_weight * penalty, g_opt)
    g_update(tape, scaled_loss)
    pl_mean.assign(new_mean)
    return penalty

  def g_step(z, step):
    with tf.GradientTape() as tape:
      fake = augment(generate(z, step, n_critic), step, n_critic, 3)
      fake_logits = tf.cast(discriminator(fake, training=True), tf.float32)
      loss = g_loss_fn(fake_logits)
      scaled_loss = scaled(loss, g_opt)
    g_update(tape, scaled_loss)
    return loss

  def replica_fn(reals, step, r1: bool, pl: bool):
    d_loss = d_real = d_fake = 0.0
    out = {}
    if real_transform is not None:
      reals = tuple(real_transform(real) for real in reals)
    for k, real in enumerate(reals):
      d_loss, d_real, d_fake = d_step(real, latents(step, k), step, k)
    if r1:
      out["r1"] = r1_step(reals[-1], step, n_critic - 1)
    g_loss = g_step(latents(step, n_critic), step)
    if pl:
      out["pl_penalty"] = pl_step(step)
    if ema is not None:
      ema.update(step)  # after the masks: under Re-GAN it also zeroes masked EMA entries
    out.update(d_loss=d_loss, g_loss=g_loss, d_real=d_real, d_fake=d_fake)
    return out

  return _Iteration(dist, replica_fn, n_critic, jit)
