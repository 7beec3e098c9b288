"""One compiled training iteration: n_critic D steps, one G step, lazy regularizers.

:class:`TrainStep` is the unit the trainer's loop calls once per generator
step, and what tests and ``benchmarks/step_time.py`` build directly. Each
sub-step is a method (:meth:`TrainStep.d_step`, :meth:`~TrainStep.r1_step`,
:meth:`~TrainStep.g_step`, :meth:`~TrainStep.pl_step`), traced together into
one per-replica function, XLA-compiled when asked.

Randomness is stateless: every draw (latents, DiffAugment, APA, style mixing,
WGAN-GP interpolation, path-length noise) is seeded from ``(seed, step, replica)`` through
:meth:`TrainStep.stream_seed`, so the iteration is a pure function of the
weights, the step number and the real batches, and a resumed run repeats an
uninterrupted one exactly.

Re-GAN plugs in through the controller (``regan_tf.pruning``): G's gradients
pass ``controller.mask_gradients`` and ``controller.apply_masks`` re-zeroes the
masked entries after every G update, the main one and the path-length one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional, Protocol, Sequence, Tuple, Union

from absl import logging

from regan_tf import augment as augment_lib
from regan_tf import losses as losses_lib
from regan_tf.compat import keras, tf
from regan_tf.models import stylegan2 as stylegan2_lib

__all__ = ["PruningController", "StyleGANParts", "TrainStep", "inner_optimizer", "make_optimizer"]

LossPair = Tuple[losses_lib.GeneratorLoss, losses_lib.DiscriminatorLoss]


class PruningController(Protocol):
  """What the trainer needs from a generator-pruning scheme (Re-GAN)."""

  def before_g_step(self, step: int, optimizer: Any) -> Sequence[Any]:
    """Host side, before generator step ``step``: phase changes, masks, lr."""

  def mask_gradients(self, grads: Sequence[tf.Tensor], variables: Sequence[tf.Variable]) -> Sequence[tf.Tensor]:
    """Inside the replica step: zero the gradients of masked entries."""

  def apply_masks(self) -> None:
    """Inside the replica step, after the optimizer: re-zero masked entries."""

  def checkpoint_items(self) -> Dict[str, Any]:
    """Trackables to save with the run's checkpoint."""

  def summary_scalars(self) -> Dict[str, float]:
    """Scalars for TensorBoard (phase, lr factor, sparsity)."""


@dataclasses.dataclass(frozen=True)
class StyleGANParts:
  """A StyleGAN2 generator's nested networks, for style mixing and path length.

  Attributes:
    mapping: z [B, z_dim] -> w [B, w_dim].
    synthesis: ws [B, num_ws, w_dim] -> images.
    num_ws: the synthesis network's number of per-layer latents.
  """
  mapping: keras.Model
  synthesis: keras.Model
  num_ws: int

  @classmethod
  def of(cls, generator: keras.Model) -> "StyleGANParts":
    """The parts of a StyleGAN2 generator (or of its pruned or EMA clone)."""
    mapping, synthesis = stylegan2_lib.mapping_and_synthesis(generator)
    return cls(mapping, synthesis, int(synthesis.input_shape[1]))


def make_optimizer(learning_rate: Any, beta1: float, beta2: float, *, loss_scale: bool,
                   name: str, epsilon: float = 1e-7) -> keras.optimizers.Optimizer:
  """Adam, wrapped in dynamic loss scaling for float16 compute when ``loss_scale``.

  ``epsilon``: Keras' default 1e-7; PyTorch's (the Re-GAN reference's) is 1e-8.
  """
  opt = keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta1, beta_2=beta2, epsilon=epsilon,
                              name=name)
  if loss_scale:
    opt = keras.mixed_precision.LossScaleOptimizer(opt)
  return opt


def inner_optimizer(optimizer: keras.optimizers.Optimizer) -> keras.optimizers.Optimizer:
  """The optimizer under a LossScaleOptimizer (or the optimizer itself).

  Build its slots with ``inner_optimizer(opt).build(variables)`` before a
  checkpoint restore, so the restore fills them directly.
  """
  return getattr(optimizer, "inner_optimizer", optimizer)


class TrainStep:
  """One training iteration (``n_critic`` D steps + 1 G step) on all replicas.

  Call it as ``step_fn(iterator, step, r1=False, pl=False)``: it pulls
  ``n_critic`` batches from the distributed ``iterator``, trains, and returns
  the replica-mean scalars ``d_loss``, ``g_loss``, ``d_real``, ``d_fake`` (and
  ``r1`` / ``pl_penalty`` on iterations that run them).

  The per-replica function is XLA-compiled when ``jit`` is set; the outer
  function (which pulls batches from the distributed iterator, something XLA
  cannot compile) is a plain ``tf.function``. If XLA fails to compile on the
  first call, :attr:`fell_back` becomes True and the step continues without
  XLA: nothing has run at that point, so no state is half-updated.

  Args:
    strategy: the ``tf.distribute.Strategy`` the models live in.
    generator, discriminator: the models to train (a growing ProGAN's stage).
    g_optimizer, d_optimizer: from :func:`make_optimizer` (loss-scaled under
      float16 compute).
    losses: ``(generator_loss, discriminator_loss)``, or a name for
      ``regan_tf.losses.get``.
    z_dim: latent size.
    local_batch: per-replica batch.
    n_critic: D steps per G step.
    seed: the run's seed (all draws derive from it).
    jit: XLA-compile the per-replica function.
    gp_weight, drift_weight: WGAN-GP and ProGAN drift weights in D's loss.
    r1_weight: weight of R1 in the lazy R1 step (gamma / 2 * k).
    pl_weight: weight of the path length in its lazy G step (weight * k).
    pl_batch_shrink: the path-length batch is ``local_batch / pl_batch_shrink``.
    pl_mean: the path length's running mean (needed when ``pl_weight``).
    style_mixing: style-mixing probability in G's training passes.
    stylegan: the generator's :class:`StyleGANParts` (needed for style mixing
      and path length).
    controller: Re-GAN's controller, or None for dense training.
    diffaugment: DiffAugment transform names applied to every image D sees.
    apa: an ``AdaptivePseudoAugment``, or None.
    ema: a ``GeneratorEMA`` updated after every iteration, or None.
    real_transform: maps each real batch before D sees it (a growing
      ProGAN stage: pool to the stage's resolution and fade).
    r1_on_augmented: R1 on the DiffAugment view of the reals D trained on
      instead of the un-augmented reals (the Re-GAN reference's choice).
  """

  def __init__(self, *, strategy: tf.distribute.Strategy, generator: keras.Model,
               discriminator: keras.Model, g_optimizer: Any, d_optimizer: Any,
               losses: Union[str, LossPair], z_dim: int, local_batch: int, n_critic: int, seed: int,
               jit: bool = False, gp_weight: float = 0.0, drift_weight: float = 0.0,
               r1_weight: float = 0.0, pl_weight: float = 0.0, pl_batch_shrink: int = 2,
               pl_mean: Optional[tf.Variable] = None, style_mixing: float = 0.0,
               stylegan: Optional[StyleGANParts] = None, controller: Optional[PruningController] = None,
               diffaugment: Sequence[str] = (), apa: Any = None, ema: Any = None,
               real_transform: Optional[Callable[[tf.Tensor], tf.Tensor]] = None,
               r1_on_augmented: bool = False):
    if (pl_weight or style_mixing) and stylegan is None:
      raise ValueError("pl_weight and style_mixing need the generator's StyleGANParts (stylegan=).")
    if pl_weight and pl_mean is None:
      raise ValueError("pl_weight needs the path length's running mean variable (pl_mean=).")
    self.strategy = strategy
    self.generator, self.discriminator = generator, discriminator
    self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
    self.g_loss_fn, self.d_loss_fn = losses_lib.get(losses) if isinstance(losses, str) else losses
    self.z_dim, self.local_batch, self.n_critic, self.seed = z_dim, local_batch, n_critic, seed
    self.gp_weight, self.drift_weight, self.r1_weight = gp_weight, drift_weight, r1_weight
    self.pl_weight, self.pl_batch_shrink, self.pl_mean = pl_weight, pl_batch_shrink, pl_mean
    self.style_mixing, self.stylegan = style_mixing, stylegan
    self.controller, self.diffaugment = controller, tuple(diffaugment)
    self.apa, self.ema, self.real_transform = apa, ema, real_transform
    self.r1_on_augmented = r1_on_augmented
    self._replicas = strategy.num_replicas_in_sync
    self._loss_scaled = isinstance(g_optimizer, keras.mixed_precision.LossScaleOptimizer)
    self.fell_back = False
    self._traced = set()
    self._fn = self._compile(jit)

  # ------------------------------------------------------------ randomness ---

  def stream_seed(self, step: tf.Tensor, k: int) -> tf.Tensor:
    """The stateless seed of sub-step ``k`` of iteration ``step`` on this replica."""
    replica = tf.cast(tf.distribute.get_replica_context().replica_id_in_sync_group, tf.int64)
    return tf.stack([tf.constant(self.seed, tf.int64) * 1000003 + replica,
                     step * (self.n_critic + 1) + k])

  def _fold(self, step: tf.Tensor, k: int, salt: int) -> tf.Tensor:
    return tf.random.experimental.stateless_fold_in(self.stream_seed(step, k), salt)

  def latents(self, step: tf.Tensor, k: int) -> tf.Tensor:
    """z [local_batch, z_dim] of sub-step ``k`` (D steps 0..n_critic-1, G step n_critic)."""
    return tf.random.stateless_normal([self.local_batch, self.z_dim], seed=self.stream_seed(step, k))

  def _augment(self, images: tf.Tensor, step: tf.Tensor, k: int, salt: int) -> tf.Tensor:
    # Salts keep the augmentation draws of reals (1), D-step fakes (2) and
    # G-step fakes (3) apart from each other and from the latents (APA uses 4,
    # style mixing 5, the WGAN-GP epsilon 6, the path-length step 7).
    if not self.diffaugment:
      return images
    return augment_lib.diff_augment(images, self.diffaugment, seed=self._fold(step, k, salt))

  # ------------------------------------------------------------- gradients ---

  def _scaled(self, loss: tf.Tensor, opt: Any) -> tf.Tensor:
    # Computed inside the tape. Losses are batch means on this replica and the
    # optimizer sums gradients over replicas, so each replica contributes
    # 1/replicas of its mean; under float16 the loss is also loss-scaled.
    loss = loss / self._replicas
    return opt.get_scaled_loss(loss) if self._loss_scaled else loss

  def _gradients(self, tape: tf.GradientTape, scaled_loss: tf.Tensor, variables, opt: Any):
    grads = tape.gradient(scaled_loss, variables)
    return opt.get_unscaled_gradients(grads) if self._loss_scaled else grads

  def _g_update(self, tape: tf.GradientTape, scaled_loss: tf.Tensor) -> None:
    variables = self.generator.trainable_variables
    grads = self._gradients(tape, scaled_loss, variables, self.g_optimizer)
    if self.controller is not None:
      grads = self.controller.mask_gradients(grads, variables)
    self.g_optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
    if self.controller is not None:
      self.controller.apply_masks()

  # ------------------------------------------------------------- sub-steps ---

  def generate(self, z: tf.Tensor, step: tf.Tensor, k: int) -> tf.Tensor:
    """G's training forward pass (with style mixing when configured)."""
    if not self.style_mixing:
      return self.generator(z, training=True)
    parts = self.stylegan
    ws = stylegan2_lib.mixed_latents(parts.mapping, z, num_latents=parts.num_ws,
                                     probability=self.style_mixing, seed=self._fold(step, k, 5))
    return parts.synthesis(ws, training=True)

  def d_step(self, real: tf.Tensor, step: tf.Tensor, k: int) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """D update ``k`` of the iteration; returns (loss, mean D(real), mean D(fake))."""
    fake = self.generate(self.latents(step, k), step, k)
    if self.apa is not None:
      real = self.apa.apply(real, fake, seed=self._fold(step, k, 4))
    real_in, fake_in = self._augment(real, step, k, 1), self._augment(fake, step, k, 2)
    with tf.GradientTape() as tape:
      real_logits = tf.cast(self.discriminator(real_in, training=True), tf.float32)
      fake_logits = tf.cast(self.discriminator(fake_in, training=True), tf.float32)
      loss = self.d_loss_fn(real_logits, fake_logits)
      if self.gp_weight:
        loss += self.gp_weight * losses_lib.gradient_penalty(self.discriminator, real_in, fake_in,
                                                             seed=self._fold(step, k, 6))
      if self.drift_weight:
        loss += self.drift_weight * losses_lib.drift_penalty(real_logits)
      scaled_loss = self._scaled(loss, self.d_optimizer)
    variables = self.discriminator.trainable_variables
    self.d_optimizer.apply_gradients(
        zip(self._gradients(tape, scaled_loss, variables, self.d_optimizer), variables))
    if self.apa is not None:
      self.apa.observe(real_logits)
    return loss, tf.reduce_mean(real_logits), tf.reduce_mean(fake_logits)

  def r1_step(self, real: tf.Tensor, step: tf.Tensor, k: int) -> tf.Tensor:
    """An extra D step on the lazy R1 penalty alone; returns the unweighted penalty."""
    # On the un-augmented reals (the reference), or on the augmented view D trained on in D step k.
    augment = (lambda x: self._augment(x, step, k, 1)) if self.r1_on_augmented else None
    with tf.GradientTape() as tape:
      penalty = losses_lib.r1_penalty(self.discriminator, real, augment=augment)
      scaled_loss = self._scaled(self.r1_weight * penalty, self.d_optimizer)
    variables = self.discriminator.trainable_variables
    grads = self._gradients(tape, scaled_loss, variables, self.d_optimizer)
    # Weights R1 does not reach (D's last bias) get no update rather than an error.
    self.d_optimizer.apply_gradients([(g, v) for g, v in zip(grads, variables) if g is not None])
    return penalty

  def g_step(self, step: tf.Tensor) -> tf.Tensor:
    """The G update (masked under Re-GAN); returns G's loss."""
    z = self.latents(step, self.n_critic)
    with tf.GradientTape() as tape:
      fake = self._augment(self.generate(z, step, self.n_critic), step, self.n_critic, 3)
      fake_logits = tf.cast(self.discriminator(fake, training=True), tf.float32)
      loss = self.g_loss_fn(fake_logits)
      scaled_loss = self._scaled(loss, self.g_optimizer)
    self._g_update(tape, scaled_loss)
    return loss

  def pl_step(self, step: tf.Tensor) -> tf.Tensor:
    """An extra G step on the path-length penalty alone, masked like the main G step."""
    parts = self.stylegan
    base = self._fold(step, self.n_critic, 7)
    z = tf.random.stateless_normal([max(1, self.local_batch // self.pl_batch_shrink), self.z_dim],
                                   seed=tf.random.experimental.stateless_fold_in(base, 0))
    with tf.GradientTape() as tape:
      ws = stylegan2_lib.mixed_latents(parts.mapping, z, num_latents=parts.num_ws,
                                       probability=self.style_mixing,
                                       seed=tf.random.experimental.stateless_fold_in(base, 1))
      penalty, new_mean, _ = losses_lib.path_length_penalty(
          parts.synthesis, ws, self.pl_mean, tf.random.experimental.stateless_fold_in(base, 2))
      scaled_loss = self._scaled(self.pl_weight * penalty, self.g_optimizer)
    self._g_update(tape, scaled_loss)
    self.pl_mean.assign(new_mean)
    return penalty

  def replica_step(self, reals: Tuple[tf.Tensor, ...], step: tf.Tensor, r1: bool,
                   pl: bool) -> Dict[str, tf.Tensor]:
    """The whole iteration on one replica (``reals``: n_critic real batches)."""
    d_loss = d_real = d_fake = 0.0
    out = {}
    if self.real_transform is not None:
      reals = tuple(self.real_transform(real) for real in reals)
    for k, real in enumerate(reals):
      d_loss, d_real, d_fake = self.d_step(real, step, k)
    if r1:
      out["r1"] = self.r1_step(reals[-1], step, self.n_critic - 1)
    g_loss = self.g_step(step)
    if pl:
      out["pl_penalty"] = self.pl_step(step)
    if self.ema is not None:
      self.ema.update(step)  # after the masks: under Re-GAN it also zeroes masked EMA entries
    out.update(d_loss=d_loss, g_loss=g_loss, d_real=d_real, d_fake=d_fake)
    return out

  # --------------------------------------------------------------- running ---

  def _compile(self, jit: bool):
    inner = tf.function(self.replica_step, jit_compile=jit)
    strategy, n_critic = self.strategy, self.n_critic

    @tf.function
    def run(iterator, step, r1, pl):
      # r1 / pl are Python bools: each combination is its own trace, so the
      # lazy regularization steps cost nothing on the iterations without them.
      reals = tuple(next(iterator) for _ in range(n_critic))
      per_replica = strategy.run(inner, args=(reals, step, r1, pl))
      return {k: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, axis=None) for k, v in per_replica.items()}

    return run

  def __call__(self, iterator, step: Union[int, tf.Tensor], r1: bool = False,
               pl: bool = False) -> Dict[str, tf.Tensor]:
    step = tf.constant(step, tf.int64) if isinstance(step, int) else step
    variant = (bool(r1), bool(pl))
    if variant in self._traced or self.fell_back:
      return self._fn(iterator, step, *variant)
    self._traced.add(variant)
    try:
      return self._fn(iterator, step, *variant)
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.InternalError) as e:
      text = str(e)
      if "XLA" not in text and "jit" not in text.lower() and "compil" not in text.lower():
        raise
      logging.warning("XLA could not compile the training step (%s); continuing without XLA.",
                      text.splitlines()[0][:300])
      self.fell_back = True
      self._fn = self._compile(False)
      return self._fn(iterator, step, *variant)
