"""APA: adaptive pseudo augmentation (the generator's images as "real" ones).

Jiang, Dai, Wu and Loy, "Deceive D: Adaptive Pseudo Augmentation for GAN
Training with Limited Data", NeurIPS 2021. In D's step each real image is
replaced, with probability ``p``, by a generated one (detached: no gradient to
G through it), so an overfitting D is told that some fakes are real. ``p``
follows ADA's heuristic (Karras et al., "Training Generative Adversarial
Networks with Limited Data", NeurIPS 2020), as in the official APA code:

* the overfitting indicator ``lambda_r = E[sign(D(x_real))]`` is averaged over
  the real logits of ``interval`` D steps (all replicas; the logits of the
  batch D actually saw, pseudo-augmented);
* then ``p <- clip(p + sign(lambda_r - target) * N / (speed_kimg * 1000), 0, 1)``,
  where ``N`` is the number of real logits in that average, i.e.
  ``global_batch_size * interval``: ``p`` can go from 0 to 1 in
  ``speed_kimg`` thousand real images.

``N`` is counted rather than configured, so the rule needs no batch size and
stays right for any number of replicas.

Distribution
------------
All state (``p`` and the accumulators) lives in ``tf.Variable``s created in the
strategy's scope with ``aggregation=ONLY_FIRST_REPLICA``. ``observe`` is called
inside the replica step: it all-reduces (sums) the sign sum and the count over
replicas with the replica context's ``all_reduce`` (as Keras optimizers do for
gradients), so every replica computes the same new state, and the
``ONLY_FIRST_REPLICA`` assignment writes it to every copy. Called in
cross-replica context (or with no strategy) it needs no reduction. The update
is branch-free (``tf.where``), so it compiles under XLA.

Written by hand: no maintained TensorFlow library implements APA or ADA's
controller.
"""

from __future__ import annotations

import math
from typing import Dict, Optional

from regan_tf.augment import diffaugment
from regan_tf.compat import tf

__all__ = ["AdaptivePseudoAugment"]


def _outside_scope(strategy: tf.distribute.Strategy) -> bool:
  """True on the host outside any strategy scope, for a non-default ``strategy``."""
  return not tf.distribute.has_strategy() and strategy is not tf.distribute.get_strategy()


def _check_number(name: str, value: float, low: float, high: float, *, low_open: bool = False,
                  example: str) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    raise ValueError(f"{name}={value!r} must be a number; e.g. {example}.")
  ok = (value > low if low_open else value >= low) and value <= high
  if not ok:
    bracket = "(" if low_open else "["
    raise ValueError(f"{name}={value!r} must be in {bracket}{low}, {high}]; e.g. {example}.")
  return float(value)


class AdaptivePseudoAugment:
  """APA's probability ``p``, its controller, and the pseudo augmentation.

  Construct under the run's ``strategy.scope()`` (or pass ``strategy``). In the
  replica step, per D step ``k`` (sketch)::

    reals_for_d = apa.apply(reals, fakes, seed=apa_seed(step, k))  # fakes: detached inside
    with tf.GradientTape() as tape:
      real_logits = discriminator(reals_for_d, training=True)
      ...
    apa.observe(real_logits)   # after the D step: all-reduce + p update

  Save ``checkpoint_items()`` with the run's checkpoint.
  """

  def __init__(self,
               target: float = 0.6,
               *,
               initial_p: float = 0.0,
               speed_kimg: float = 500.0,
               interval: int = 4,
               strategy: Optional[tf.distribute.Strategy] = None):
    """Creates the state variables.

    Args:
      target: the value of ``E[sign(D(real))]`` above which D is deemed to
        overfit (APA/ADA: 0.6), in (0, 1].
      initial_p: ``p`` at the start, in [0, 1].
      speed_kimg: thousands of real images for ``p`` to move by 1 (ADA's
        ``ada_kimg``, 500; StyleGAN2-ADA uses 100 when it starts from a
        pretrained network, to react faster). > 0.
      interval: D steps between ``p`` updates (ADA's ``ada_interval``, 4). >= 1.
      strategy: the run's strategy; default the current one.

    Raises:
      ValueError: an argument outside its range (the message says which).
    """
    self.target = _check_number("target", target, 0.0, 1.0, low_open=True, example="target=0.6")
    initial_p = _check_number("initial_p", initial_p, 0.0, 1.0, example="initial_p=0.0")
    if isinstance(speed_kimg, bool) or not isinstance(speed_kimg, (int, float)) or not (
        math.isfinite(speed_kimg) and speed_kimg > 0):
      raise ValueError(f"speed_kimg={speed_kimg!r} must be a number > 0 (thousands of real images "
                       "for p to go from 0 to 1); e.g. speed_kimg=500.")
    self.speed_kimg = float(speed_kimg)
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
      raise ValueError(f"interval={interval!r} must be an int >= 1 (D steps between updates of p); "
                       "e.g. interval=4.")
    self.interval = interval
    self.strategy = strategy or tf.distribute.get_strategy()
    kwargs = dict(trainable=False, synchronization=tf.VariableSynchronization.ON_WRITE,
                  aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    with self.strategy.scope():
      self.p = tf.Variable(initial_p, dtype=tf.float32, name="apa_p", **kwargs)
      # Sum of sign(D(real)) and number of real logits since the last update (all replicas).
      self.sign_sum = tf.Variable(0.0, dtype=tf.float32, name="apa_sign_sum", **kwargs)
      self.count = tf.Variable(0.0, dtype=tf.float32, name="apa_count", **kwargs)
      # D steps observed since the last update.
      self.steps = tf.Variable(0, dtype=tf.int64, name="apa_steps", **kwargs)
      # lambda_r of the last update (for summaries).
      self.last_lambda = tf.Variable(0.0, dtype=tf.float32, name="apa_lambda_r", **kwargs)

  def __repr__(self) -> str:
    return (f"AdaptivePseudoAugment(target={self.target}, speed_kimg={self.speed_kimg}, "
            f"interval={self.interval})")

  # ------------------------------------------------------------ checkpoints

  def checkpoint_items(self) -> Dict[str, tf.Variable]:
    """Variables for the run's ``tf.train.Checkpoint``: ``p`` and the accumulators
    (a resume mid-interval continues the same average)."""
    return {"apa_p": self.p, "apa_sign_sum": self.sign_sum, "apa_count": self.count,
            "apa_steps": self.steps, "apa_lambda_r": self.last_lambda}

  def summary_scalars(self) -> Dict[str, float]:
    """``{'apa/p': ..., 'apa/lambda_r': ...}`` (host side)."""
    return {"apa/p": float(self.p.numpy()), "apa/lambda_r": float(self.last_lambda.numpy())}

  # ----------------------------------------------------- replica-step hooks

  def apply(self, real_images: tf.Tensor, fake_images: tf.Tensor, *, seed: tf.Tensor) -> tf.Tensor:
    """Replaces each real image by the fake at the same index with probability ``p``.

    Args:
      real_images: [B, H, W, C].
      fake_images: [B, H, W, C] generated images (cast to the reals' dtype); no
        gradient flows into them.
      seed: [2] int32/int64; one Bernoulli draw per example from it.

    Returns:
      [B, H, W, C], the reals' dtype: the images to show D as "real".

    Raises:
      ValueError: shapes differ.
    """
    real_images = tf.convert_to_tensor(real_images)
    fake_images = tf.stop_gradient(tf.cast(fake_images, real_images.dtype))
    if not real_images.shape.is_compatible_with(fake_images.shape):
      raise ValueError(f"APA needs fakes shaped like the reals, got reals {real_images.shape} and "
                       f"fakes {fake_images.shape}; generate one fake per real image.")
    batch = real_images.shape[0] if real_images.shape[0] is not None else tf.shape(real_images)[0]
    u = diffaugment.uniform01([batch], seed)  # the same draws with and without XLA
    pseudo = u < tf.convert_to_tensor(self.p)
    pseudo = tf.reshape(pseudo, [-1] + [1] * (real_images.shape.rank - 1))
    return tf.where(pseudo, fake_images, real_images)

  def observe(self, real_logits: tf.Tensor) -> None:
    """Accumulates ``sign(D(real))`` of one D step; every ``interval``-th call updates ``p``.

    Call once per D step, with the logits of the (pseudo-augmented) reals D
    was trained on, in the replica step (the sums are all-reduced) or in
    cross-replica context (outside any strategy scope it enters the
    strategy's). No gradient flows through it.

    Args:
      real_logits: [B, 1] (or any shape), any float dtype.
    """
    if _outside_scope(self.strategy):  # e.g. eagerly on the host: act in the strategy's scope
      with self.strategy.scope():
        return self.observe(real_logits)
    logits = tf.stop_gradient(tf.cast(real_logits, tf.float32))
    totals = tf.stack([tf.reduce_sum(tf.sign(logits)), tf.cast(tf.size(logits), tf.float32)])
    if not tf.distribute.in_cross_replica_context():
      totals = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, totals)
    sign_sum = self.sign_sum + totals[0]
    count = self.count + totals[1]
    steps = self.steps + 1
    due = steps >= self.interval
    lambda_r = sign_sum / tf.maximum(count, 1.0)
    adjust = tf.sign(lambda_r - self.target) * count / (self.speed_kimg * 1000.0)
    self.p.assign(tf.where(due, tf.clip_by_value(self.p + adjust, 0.0, 1.0), self.p))
    self.last_lambda.assign(tf.where(due, lambda_r, self.last_lambda))
    self.sign_sum.assign(tf.where(due, 0.0, sign_sum))
    self.count.assign(tf.where(due, 0.0, count))
    self.steps.assign(tf.where(due, tf.zeros_like(steps), steps))
