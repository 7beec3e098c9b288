"""GAN losses in generator/discriminator pairs, and the penalties the GANs here add.

Every pair has one signature, ``<name>_generator_loss(fake_logits)`` and
``<name>_discriminator_loss(real_logits, fake_logits)``; each returns a float32
scalar, the mean over the examples it is given (logits are cast to float32
first, so the losses are safe under mixed precision). Under a distribution
strategy the caller divides by the number of replicas. :func:`get` maps a name to
its pair.

TF-GAN (``tensorflow_gan/python/losses/losses_impl.py``) has these losses, but its
package ``__init__`` imports ``tf.estimator`` (removed from TensorFlow) and the
losses module pulls in more of the package than ``regan_tf.compat.tfgan_eval``
can load on its own, so these few lines are written by hand, following the same
naming and the same formulas.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

from regan_tf.compat import keras, tf

__all__ = [
    "drift_penalty",
    "get",
    "gradient_penalty",
    "hinge_discriminator_loss",
    "hinge_generator_loss",
    "names",
    "non_saturating_discriminator_loss",
    "path_length_penalty",
    "r1_penalty",
    "non_saturating_generator_loss",
    "wasserstein_discriminator_loss",
    "wasserstein_generator_loss",
]

GeneratorLoss = Callable[[tf.Tensor], tf.Tensor]
DiscriminatorLoss = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def _f32(logits: tf.Tensor) -> tf.Tensor:
  return tf.cast(logits, tf.float32)


def hinge_generator_loss(fake_logits: tf.Tensor) -> tf.Tensor:
  """Hinge-GAN generator loss, ``-mean(D(G(z)))`` (Lim & Ye 2017; Miyato et al. 2018).

  Args:
    fake_logits: [B, 1] or [B], discriminator logits of generated images.

  Returns:
    float32 [].
  """
  return -tf.reduce_mean(_f32(fake_logits))


def hinge_discriminator_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tf.Tensor:
  """Hinge discriminator loss, ``mean(relu(1 - D(x))) + mean(relu(1 + D(G(z))))``.

  Args:
    real_logits: [B, 1] or [B], logits of real images.
    fake_logits: [B', 1] or [B'], logits of generated images.

  Returns:
    float32 [].
  """
  return (tf.reduce_mean(tf.nn.relu(1.0 - _f32(real_logits)))
          + tf.reduce_mean(tf.nn.relu(1.0 + _f32(fake_logits))))


def non_saturating_generator_loss(fake_logits: tf.Tensor) -> tf.Tensor:
  """Non-saturating generator loss (Goodfellow et al. 2014), ``mean(softplus(-D(G(z))))``.

  Equals ``-mean(log sigmoid(D(G(z))))``, written with softplus for stability.

  Args:
    fake_logits: [B, 1] or [B].

  Returns:
    float32 [].
  """
  return tf.reduce_mean(tf.nn.softplus(-_f32(fake_logits)))


def non_saturating_discriminator_loss(real_logits: tf.Tensor,
                                      fake_logits: tf.Tensor) -> tf.Tensor:
  """Logistic discriminator loss, ``mean(softplus(-D(x))) + mean(softplus(D(G(z))))``.

  Equals the binary cross-entropy with labels 1 (real) and 0 (fake).

  Args:
    real_logits: [B, 1] or [B].
    fake_logits: [B', 1] or [B'].

  Returns:
    float32 [].
  """
  return (tf.reduce_mean(tf.nn.softplus(-_f32(real_logits)))
          + tf.reduce_mean(tf.nn.softplus(_f32(fake_logits))))


def wasserstein_generator_loss(fake_logits: tf.Tensor) -> tf.Tensor:
  """Wasserstein generator loss (Arjovsky et al. 2017), ``-mean(D(G(z)))``.

  Args:
    fake_logits: [B, 1] or [B].

  Returns:
    float32 [].
  """
  return -tf.reduce_mean(_f32(fake_logits))


def wasserstein_discriminator_loss(real_logits: tf.Tensor,
                                   fake_logits: tf.Tensor) -> tf.Tensor:
  """Wasserstein critic loss, ``mean(D(G(z))) - mean(D(x))``.

  Needs a Lipschitz constraint: :func:`gradient_penalty` or spectral norm.

  Args:
    real_logits: [B, 1] or [B].
    fake_logits: [B', 1] or [B'].

  Returns:
    float32 [].
  """
  return tf.reduce_mean(_f32(fake_logits)) - tf.reduce_mean(_f32(real_logits))


def gradient_penalty(discriminator: keras.Model, real: tf.Tensor, fake: tf.Tensor, *,
                     seed: Any, training: bool = True) -> tf.Tensor:
  """WGAN-GP gradient penalty (Gulrajani et al. 2017), unweighted.

  For each example, ``x_hat = real + eps * (fake - real)`` with ``eps ~ U[0, 1)``
  drawn per example from the stateless ``seed`` (so a training step that derives
  the seed from ``(seed, step, replica)`` draws the same epsilons when a run is
  resumed, as the trainer's other draws do); the penalty is ``mean((||grad_x_hat D(x_hat)||_2 - 1)^2)``.
  The norm is ``sqrt(sum(grad^2) + 1e-10)`` (as TF-GAN), which keeps its gradient
  finite where the input gradient is zero. The caller multiplies by its weight
  (typically 10) and needs second-order gradients through ``discriminator``.

  Args:
    discriminator: maps images [B, H, W, C] to logits [B, 1].
    real: [B, H, W, C] real images.
    fake: [B, H, W, C] generated images (same shape as ``real``).
    seed: int32/int64 [2], the stateless seed of the epsilons.
    training: passed to ``discriminator``.

  Returns:
    float32 [].
  """
  real = tf.cast(real, tf.float32)
  fake = tf.cast(fake, tf.float32)
  eps_shape = tf.concat([tf.shape(real)[:1], tf.ones([tf.rank(real) - 1], tf.int32)], axis=0)
  eps = tf.random.stateless_uniform(eps_shape, seed=seed, dtype=tf.float32)
  x_hat = real + eps * (fake - real)
  with tf.GradientTape() as tape:
    tape.watch(x_hat)
    # Each logit depends only on its own example, so d(sum)/dx_hat holds every
    # example's input gradient.
    total = tf.reduce_sum(_f32(discriminator(x_hat, training=training)))
  grads = tf.cast(tape.gradient(total, x_hat), tf.float32)
  axes = tf.range(1, tf.rank(grads))
  norms = tf.sqrt(tf.reduce_sum(tf.square(grads), axis=axes) + 1e-10)
  return tf.reduce_mean(tf.square(norms - 1.0))


def drift_penalty(real_logits: tf.Tensor) -> tf.Tensor:
  """ProGAN's epsilon-drift term (Karras et al. 2018), ``mean(D(x)^2)``, unweighted.

  Keeps critic outputs near zero; ProGAN adds it with weight 0.001.

  Args:
    real_logits: [B, 1] or [B].

  Returns:
    float32 [].
  """
  return tf.reduce_mean(tf.square(_f32(real_logits)))


def r1_penalty(discriminator: keras.Model, reals: tf.Tensor, *, training: bool = True,
               augment: Optional[Callable[[tf.Tensor], tf.Tensor]] = None) -> tf.Tensor:
  """R1 (Mescheder et al., ICML 2018): ``mean_b ||d D(x_b) / d x_b||^2`` on reals, unweighted.

  The caller multiplies by ``gamma / 2`` (and, lazily every k D steps, by k; the
  references: gamma 10 in Re-GAN/rosinality, 0.01 ada 'cifar', k = 16) and needs
  second-order gradients through ``discriminator``.

  Args:
    discriminator: images [B, H, W, C] -> logits [B, 1].
    reals: [B, H, W, C] real images.
    training: passed to the discriminator.
    augment: optional differentiable augmentation applied to the reals before D
      (the gradient is still taken with respect to the un-augmented reals).

  Returns:
    float32 [].
  """
  reals = tf.cast(reals, tf.float32)
  with tf.GradientTape() as tape:
    tape.watch(reals)
    seen = augment(reals) if augment is not None else reals
    # Each logit depends only on its own example: d(sum)/dx holds every example's gradient.
    total = tf.reduce_sum(tf.cast(discriminator(seen, training=training), tf.float32))
  grads = tf.cast(tape.gradient(total, reals), tf.float32)
  return tf.reduce_mean(tf.reduce_sum(tf.square(grads), axis=[1, 2, 3]))


def path_length_penalty(synthesis: keras.Model, ws: tf.Tensor, pl_mean: tf.Tensor,
                        seed: Any, *, decay: float = 0.01,
                        training: bool = True) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """Path-length regularization (StyleGAN2 Sec. 3.2), unweighted.

  ``y ~ N(0, I) / sqrt(H W)``; ``L_b = sqrt(mean_i ||d <G(ws), y> / d ws_b[i]||^2)``
  (mean over the ``num_ws`` latents, as ada and rosinality);
  ``a' = a + decay * (mean_b L_b - a)``; penalty ``mean_b (L_b - a')^2``, with a'
  differentiable in the penalty as in the references. The caller multiplies by
  the weight (2 in Re-GAN/rosinality; ada's pl_weight 2, 0 for 'cifar') and, lazily
  every k = 4 G steps, by k; it stores the returned mean.

  Args:
    synthesis: ws -> images (``regan_tf.models.stylegan2.mapping_and_synthesis``).
    ws: [B, num_ws, w_dim] latents (the references use half the batch).
    pl_mean: float32 [], the running mean a (0 at the start).
    seed: int32 [2], the stateless seed of y.
    decay: the running mean's rate (0.01).
    training: passed to the synthesis network.

  Returns:
    (penalty float32 [], new pl_mean float32 [] (no gradient), lengths float32 [B]).
  """
  ws = tf.cast(ws, tf.float32)
  with tf.GradientTape() as tape:
    tape.watch(ws)
    images = tf.cast(synthesis(ws, training=training), tf.float32)
    shape = tf.shape(images)
    y = tf.random.stateless_normal(shape, seed) * tf.math.rsqrt(
        tf.cast(shape[1] * shape[2], tf.float32))
    total = tf.reduce_sum(images * y)
  grads = tape.gradient(total, ws)
  lengths = tf.sqrt(tf.reduce_mean(tf.reduce_sum(tf.square(grads), axis=2), axis=1))
  pl_mean = tf.cast(pl_mean, tf.float32)
  new_mean = pl_mean + decay * (tf.reduce_mean(lengths) - pl_mean)
  penalty = tf.reduce_mean(tf.square(lengths - new_mean))
  return penalty, tf.stop_gradient(new_mean), lengths


_PAIRS: dict[str, tuple[GeneratorLoss, DiscriminatorLoss]] = {
    "hinge": (hinge_generator_loss, hinge_discriminator_loss),
    "non_saturating": (non_saturating_generator_loss, non_saturating_discriminator_loss),
    "wasserstein": (wasserstein_generator_loss, wasserstein_discriminator_loss),
}


def names() -> tuple[str, ...]:
  """The loss names :func:`get` accepts, sorted."""
  return tuple(sorted(_PAIRS))


def get(name: str) -> tuple[GeneratorLoss, DiscriminatorLoss]:
  """Returns ``(generator_loss_fn, discriminator_loss_fn)`` for ``name``.

  Args:
    name: 'hinge', 'non_saturating' or 'wasserstein'.

  Raises:
    ValueError: unknown ``name``; the message lists the valid names.
  """
  if not isinstance(name, str) or name not in _PAIRS:
    raise ValueError(f"losses.get: name={name!r} is not a known loss; valid names: "
                     f"{', '.join(names())}. Pass one of them (e.g. name='hinge').")
  return _PAIRS[name]
