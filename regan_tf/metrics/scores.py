"""FID, IS and KID from features and logits, on TF-GAN's eval math.

These are thin, validating wrappers around
``tensorflow_gan.python.eval.classifier_metrics`` (loaded through
:func:`regan_tf.compat.tfgan_eval`, which skips TF-GAN's broken package
``__init__``). No formula is re-implemented here; the tests check TF-GAN's
numbers against independent NumPy/SciPy computations.

Caveats that matter when reading the numbers:

* **FID is biased, and the bias depends on the sample count.** The Frechet
  distance between two finite samples of the *same* distribution is > 0 and
  shrinks roughly like 1/N. Compare runs only at the same number of generated
  images (and the same reference set and extractor).
* **IS** (the classifier score) exp(E_x KL(p(y|x) || p(y))) lies in [1, K] for
  K classes: 1 when every image gets the same prediction, K when predictions
  are confident and classes balanced. It ignores the real data.
* **KID** is an *unbiased* estimate of the squared MMD with the polynomial
  kernel k(x, y) = (x.y / d + 1)^3; it can be slightly negative when the sets
  match. TF-GAN's block estimator assumes both sets are in random order (a
  class-sorted set biases it); :mod:`regan_tf.metrics.reference` stores the
  real features shuffled for that reason.
* **FID can miss mode collapse** when the extractor's features do not separate
  the classes (issue 23: a weak CIFAR classifier ranked a checkpoint with 44%
  of its samples in one class as the best). :func:`class_coverage` reports
  how the samples spread over a labelled extractor's classes, next to FID.
"""

from __future__ import annotations

from typing import Tuple, Union

import numpy as np

from regan_tf.compat import tf, tfgan_eval

__all__ = ["class_coverage", "classifier_score", "frechet_distance", "kernel_distance"]

ArrayLike = Union[np.ndarray, tf.Tensor]


def _as_2d(x: ArrayLike, name: str, *, min_rows: int) -> tf.Tensor:
  x = tf.convert_to_tensor(x)
  if x.shape.rank != 2:
    raise ValueError(f"{name} must be a 2-D array [N, D], got shape {x.shape}; flatten the "
                     f"features first (e.g. reshape to [N, -1]).")
  if x.shape[0] is not None and x.shape[0] < min_rows:
    raise ValueError(f"{name} needs at least {min_rows} rows, got {x.shape[0]} (shape "
                     f"{x.shape}); score more images.")
  if not x.dtype.is_floating:
    x = tf.cast(x, tf.float32)
  return x


def frechet_distance(real_features: ArrayLike, fake_features: ArrayLike) -> float:
  """Frechet distance between Gaussians fitted to two feature sets (FID).

  ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2)), computed in float64
  by TF-GAN's ``frechet_classifier_distance_from_activations`` (unbiased
  covariances, matrix square root by eigendecomposition).

  Args:
    real_features: [N_r, D] features of real images (N_r >= 2).
    fake_features: [N_g, D] features of generated images (N_g >= 2).

  Returns:
    The distance (>= 0 up to round-off). Biased upwards at small N: compare
    values only at equal sample counts.
  """
  real = _as_2d(real_features, "real_features", min_rows=2)
  fake = _as_2d(fake_features, "fake_features", min_rows=2)
  if real.shape[1] != fake.shape[1]:
    raise ValueError(f"real_features [N, {real.shape[1]}] and fake_features [N, {fake.shape[1]}] "
                     f"must have the same feature width; use one extractor for both.")
  fake = tf.cast(fake, real.dtype)
  return float(tfgan_eval().frechet_classifier_distance_from_activations(real, fake))


def classifier_score(logits: ArrayLike) -> float:
  """Classifier score (the Inception Score when the classifier is Inception).

  exp(E_x KL(p(y|x) || p(y))) with p(y|x) = softmax(logits), computed by
  TF-GAN's ``classifier_score_from_logits`` in float64.

  Args:
    logits: [N, K] unnormalized class scores, N >= 1.

  Returns:
    The score, in [1, K].
  """
  logits = _as_2d(logits, "logits", min_rows=1)
  return float(tfgan_eval().classifier_score_from_logits(logits))


def kernel_distance(real_features: ArrayLike, fake_features: ArrayLike, *,
                    max_block_size: int = 1024) -> Tuple[float, float]:
  """Kernel distance (KID): unbiased MMD^2 with a cubic polynomial kernel.

  Computed by TF-GAN's ``kernel_classifier_distance_and_std_from_activations``
  (float64): the sets are split into ceil(max(N_r, N_g) / max_block_size)
  blocks, the unbiased MMD^2 is computed per block and averaged. Both sets must
  be in random order.

  Args:
    real_features: [N_r, D], N_r >= 2 per block.
    fake_features: [N_g, D], N_g >= 2 per block.
    max_block_size: largest block; larger is less variance, quadratic cost.

  Returns:
    (kid, standard error); the standard error is NaN with a single block.
  """
  if not isinstance(max_block_size, int) or max_block_size < 2:
    raise ValueError(f"max_block_size must be an integer >= 2, got {max_block_size!r}.")
  real = tf.cast(_as_2d(real_features, "real_features", min_rows=2), tf.float64)
  fake = tf.cast(_as_2d(fake_features, "fake_features", min_rows=2), tf.float64)
  if real.shape[1] != fake.shape[1]:
    raise ValueError(f"real_features [N, {real.shape[1]}] and fake_features [N, {fake.shape[1]}] "
                     f"must have the same feature width; use one extractor for both.")
  blocks = -(-max(real.shape[0], fake.shape[0]) // max_block_size)
  if min(real.shape[0], fake.shape[0]) // blocks < 2:
    raise ValueError(
        f"kernel_distance splits the sets into {blocks} block(s) of at most max_block_size="
        f"{max_block_size}; with {real.shape[0]} real and {fake.shape[0]} generated rows a block "
        f"would hold fewer than 2 rows. Use sets of similar size or a larger max_block_size.")
  kid, std = tfgan_eval().kernel_classifier_distance_and_std_from_activations(
      real, fake, max_block_size=max_block_size)
  return float(kid), float(std)


def class_coverage(logits: ArrayLike) -> Tuple[float, float]:
  """How evenly the images spread over the classifier's classes (a mode-coverage figure).

  Each image counts for its arg-max class. With h the histogram of predicted
  classes as frequencies over K classes:

  * normalized entropy H(h) / log K, in [0, 1]: 1 when every class gets the
    same share, 0 when all images fall in one class;
  * largest class share max(h), in [1/K, 1]: 0.1 for a balanced 10-class set,
    0.44 for the collapsed checkpoint of issue 23.

  Written by hand (a histogram): TF-GAN has no such metric.

  Args:
    logits: [N, K] class scores, N >= 1, K >= 2.

  Returns:
    (normalized entropy, largest class share) as Python floats.
  """
  logits = _as_2d(logits, "logits", min_rows=1)
  num_classes = int(logits.shape[1])
  if num_classes < 2:
    raise ValueError(f"logits must have at least 2 classes (columns), got shape {logits.shape}; "
                     f"class coverage needs a classifier's logits.")
  predicted = np.argmax(np.asarray(logits), axis=1)
  shares = np.bincount(predicted, minlength=num_classes) / len(predicted)
  nonzero = shares[shares > 0]
  entropy = float(-np.sum(nonzero * np.log(nonzero)) / np.log(num_classes))
  return max(0.0, entropy), float(shares.max())
