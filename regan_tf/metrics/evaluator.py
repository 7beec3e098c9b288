"""Scores a generator: FID, IS and KID of a fixed set of samples against real data.

:class:`Evaluator` holds an extractor, the real images' reference statistics
and a fixed latent stream; :meth:`Evaluator.evaluate` draws ``num_samples``
images from ``sample_fn(z)`` in batches and returns

    {"fid_<name>": ..., "is_<name>": ..., "kid_<name>": ...,
     "class_entropy_<name>": ..., "top_class_share_<name>": ...}

where ``<name>`` is the extractor's name ("inception", "cifar10_resnet",
"digits_classifier", ...), so an offline classifier's numbers are never mistaken
for Inception ones. The last two, for extractors whose logits are the data's own
classes (``extractor.labelled``), say how the samples spread over the classes
(:func:`regan_tf.metrics.scores.class_coverage`): a collapsed checkpoint shows a
large top class share even when FID looks good.
The latents are ``tf.random.stateless_normal`` seeded by ``(seed, batch)``, so
every call (every checkpoint of a run, every run) scores the same z.

Caveats:

* FID is biased upwards at small sample counts; compare runs at the same
  ``num_samples`` (and reference set and extractor). Paper numbers use
  10k-50k samples with Inception; smaller counts are for tracking training.
* FID is only as good as the extractor's features. The first offline CIFAR
  classifier (52% accurate) ranked a near-collapsed checkpoint best (issue 23);
  CIFAR-10 runs use "cifar10_resnet" (:mod:`regan_tf.metrics.cifar_resnet`),
  whose calibration (docs/METRICS.md) is pinned by tests on real images.
* Few-shot FID uses the training images as the reference (as the Re-GAN
  paper's Table 5), so it also rewards memorization.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Optional, Union

from absl import logging
import numpy as np

from regan_tf.compat import tf
from regan_tf.data import ImageData
from regan_tf.metrics import scores
from regan_tf.metrics.cifar_resnet import load_cifar_resnet
from regan_tf.metrics.classifier import load_or_train_classifier
from regan_tf.metrics.extractors import FeatureExtractor
from regan_tf.metrics.inception import load_inception
from regan_tf.metrics.reference import ReferenceStats, reference_stats

__all__ = ["EXTRACTORS", "Evaluator", "build_evaluator", "build_extractor"]

EXTRACTORS = ("auto", "cifar10_resnet", "classifier", "inception")

SampleFn = Callable[[tf.Tensor], tf.Tensor]


def _check_int(name: str, value, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
  return int(value)


class Evaluator:
  """Scores ``sample_fn`` against fixed reference statistics.

  Args:
    extractor: maps images [N, H, W, C] in [-1, 1] to (features, logits).
    reference: the real images' statistics under ``extractor``.
    z_dim: width of the latent vectors passed to ``sample_fn``.
    num_samples: images drawn per evaluation (>= 2).
    batch_size: latents per ``sample_fn`` call.
    seed: seeds the latents; same seed, same z at every call.
    prefix: metric-name stem; None for ``extractor.name``.
    kid_block_size: TF-GAN's KID block size (max_block_size).
  """

  def __init__(self, extractor: FeatureExtractor, reference: ReferenceStats, *, z_dim: int,
               num_samples: int = 5000, batch_size: int = 250, seed: int = 0,
               prefix: Optional[str] = None, kid_block_size: int = 1024):
    if not isinstance(extractor, FeatureExtractor):
      raise ValueError(f"extractor must be a regan_tf.metrics.FeatureExtractor, got "
                       f"{type(extractor).__name__}; build one with build_extractor().")
    if not isinstance(reference, ReferenceStats):
      raise ValueError(f"reference must be a ReferenceStats, got {type(reference).__name__}; "
                       f"compute it with reference_stats(data, extractor).")
    if reference.info.get("extractor", extractor.cache_id) != extractor.cache_id:
      raise ValueError(
          f"reference statistics were computed with extractor {reference.info['extractor']!r} but "
          f"the extractor is {extractor.cache_id!r}; recompute them with reference_stats(data, "
          f"extractor).")
    self.extractor = extractor
    self.reference = reference
    self.z_dim = _check_int("z_dim", z_dim, 1)
    self.num_samples = _check_int("num_samples", num_samples, 2)
    self.batch_size = _check_int("batch_size", batch_size, 1)
    self.seed = _check_int("seed", seed, 0)
    self.kid_block_size = _check_int("kid_block_size", kid_block_size, 2)
    self.prefix = prefix or extractor.name
    if not isinstance(self.prefix, str):
      raise ValueError(f"prefix must be a string or None, got {prefix!r}.")
    # TF-GAN's KID splits both sets into the same number of blocks; fail now,
    # not after sampling, when a block would hold fewer than two rows.
    n_real = reference.num_images
    blocks = -(-max(n_real, self.num_samples) // self.kid_block_size)
    if min(n_real, self.num_samples) // blocks < 2:
      raise ValueError(
          f"num_samples={self.num_samples} with {n_real} reference images and kid_block_size="
          f"{self.kid_block_size} leaves fewer than 2 images per KID block; raise num_samples or "
          f"kid_block_size.")

  @property
  def metric_names(self) -> tuple:
    """The keys :meth:`evaluate` returns; FID first (the trainer ranks checkpoints by it)."""
    names = (f"fid_{self.prefix}", f"is_{self.prefix}", f"kid_{self.prefix}")
    if self.extractor.labelled:
      names += (f"class_entropy_{self.prefix}", f"top_class_share_{self.prefix}")
    return names

  def latents(self, index: int) -> tf.Tensor:
    """z float32 [b, z_dim] of batch ``index`` (b = batch_size, or the remainder)."""
    size = min(self.batch_size, self.num_samples - index * self.batch_size)
    return tf.random.stateless_normal([size, self.z_dim], seed=[self.seed, index])

  def evaluate(self, sample_fn: SampleFn) -> Dict[str, float]:
    """Draws ``num_samples`` images from ``sample_fn`` and scores them.

    Args:
      sample_fn: z float32 [B, z_dim] -> images float [B, H, W, C] in [-1, 1]
        (e.g. ``lambda z: generator(z, training=False)``).

    Returns:
      :attr:`metric_names` -> Python floats.

    Raises:
      FloatingPointError: the generator produced NaN or Inf pixels.
    """
    start = time.monotonic()
    features, logits = [], []
    num_batches = -(-self.num_samples // self.batch_size)
    for index in range(num_batches):
      images = tf.convert_to_tensor(sample_fn(self.latents(index)))
      if not bool(tf.reduce_all(tf.math.is_finite(images))):
        raise FloatingPointError(
            f"sample_fn produced non-finite pixels in evaluation batch {index} (seed "
            f"{self.seed}); the generator has diverged. Resume from an earlier checkpoint.")
      f, l = self.extractor(images)
      features.append(f)
      logits.append(l)
    result = self.score(tf.concat(features, 0), tf.concat(logits, 0))
    # DEBUG: the trainer's evaluation hook logs the scores (with the best so far) in its own line.
    logging.debug("Evaluated %d samples with %s in %.1f s: %s", self.num_samples,
                 self.extractor.name, time.monotonic() - start,
                 ", ".join(f"{k} {v:.4g}" for k, v in result.items()))
    return result

  def score(self, features, logits) -> Dict[str, float]:
    """FID / IS / KID (and class coverage) of precomputed features [N, D] and logits [N, K]."""
    kid, _ = scores.kernel_distance(self.reference.features, features,
                                    max_block_size=self.kid_block_size)
    result = {
        f"fid_{self.prefix}": scores.frechet_distance(self.reference.features, features),
        f"is_{self.prefix}": scores.classifier_score(logits),
        f"kid_{self.prefix}": kid,
    }
    if self.extractor.labelled:
      entropy, top_share = scores.class_coverage(logits)
      result[f"class_entropy_{self.prefix}"] = entropy
      result[f"top_class_share_{self.prefix}"] = top_share
    return result

  def score_images(self, images: np.ndarray) -> Dict[str, float]:
    """Scores given images (uint8 0..255 or float in [-1, 1]) instead of samples."""
    features, logits = self.extractor.extract(images, batch_size=self.batch_size)
    return self.score(features, logits)


def build_extractor(data: ImageData, extractor: str = "auto", *,
                    cache_dir: Optional[str] = None, inception_path: Optional[str] = None,
                    classifier_data: Optional[ImageData] = None, classifier_seed: int = 0,
                    cifar10_resnet_path: Optional[str] = None) -> FeatureExtractor:
  """Picks and builds a feature extractor.

  Args:
    data: the reference images; decides what "auto" picks.
    extractor: "cifar10_resnet" (the committed CIFAR-10 ResNet of
      :mod:`regan_tf.metrics.cifar_resnet`, 87% accurate; for CIFAR-10-like
      32x32 RGB data), "classifier" (the small offline CNN of
      :mod:`regan_tf.metrics.classifier`, trained on the labelled images on
      first use; adequate for digits, too weak for CIFAR-10), "inception"
      (TF-GAN's Inception from ``inception_path`` or TF-Hub), or "auto":
      "cifar10_resnet" for 10-class RGB data whose name mentions CIFAR,
      "classifier" for other labelled images (``classifier_data`` or
      ``data``) with at least two classes, else Inception. "auto" is
      offline-first; ask for "inception" explicitly for numbers comparable
      with papers.
    cache_dir: cache folder; None for ``$REGAN_TF_CACHE`` or ~/.cache/regan_tf.
    inception_path: folder of the downloaded TF-GAN Inception module.
    classifier_data: labelled images to train the classifier on (default
      ``data``). Pass the full training set when ``data`` is a subset, so
      runs on different fractions share one classifier.
    classifier_seed: the classifier's training seed. Keep the default:
      a classifier with another seed gives numbers on another scale.
    cifar10_resnet_path: weights for "cifar10_resnet"; None for the
      committed ones (use another file only to test a retrained network).
  """
  if extractor not in EXTRACTORS:
    raise ValueError(f"extractor must be one of {EXTRACTORS}, got {extractor!r}; "
                     f"'cifar10_resnet' for CIFAR-10-like data, 'classifier' for other labelled "
                     f"data (digits), 'inception' for paper-comparable numbers.")
  labelled = classifier_data if classifier_data is not None else data
  if extractor == "auto":
    classes = np.unique(labelled.labels) if labelled.labels is not None else np.zeros([0])
    if len(classes) == 10 and labelled.channels == 3 and "cifar" in labelled.name.lower():
      extractor = "cifar10_resnet"
    else:
      extractor = "classifier" if len(classes) >= 2 else "inception"
    logging.info("extractor='auto' picked %r for %s.", extractor, labelled.name)
  if extractor == "inception":
    return load_inception(inception_path)
  if extractor == "cifar10_resnet":
    return load_cifar_resnet(cifar10_resnet_path)
  return load_or_train_classifier(labelled, cache_dir=cache_dir, seed=classifier_seed)


def build_evaluator(data: ImageData, *, z_dim: int, extractor: Union[str, FeatureExtractor] = "auto",
                    num_samples: int = 5000, batch_size: int = 250, seed: int = 0,
                    cache_dir: Optional[str] = None, inception_path: Optional[str] = None,
                    classifier_data: Optional[ImageData] = None,
                    max_reference_images: Optional[int] = None,
                    prefix: Optional[str] = None,
                    cifar10_resnet_path: Optional[str] = None) -> Evaluator:
  """Builds an :class:`Evaluator` whose reference is ``data`` (stats cached).

  Args:
    data: the real images to compare against: the full training set for
      CIFAR-10 fractions, the few-shot set itself for 100-shot data.
    z_dim: the generator's latent width.
    extractor: "auto", "cifar10_resnet", "classifier", "inception" (see
      :func:`build_extractor`)
      or a ready :class:`FeatureExtractor`.
    num_samples: generated images per evaluation; compare FIDs only at equal
      counts.
    batch_size: images per generator / extractor call.
    seed: seeds the latents.
    cache_dir: cache folder; None for ``$REGAN_TF_CACHE`` or ~/.cache/regan_tf.
    inception_path: folder of the downloaded TF-GAN Inception module.
    classifier_data: labelled images for the offline classifier (default
      ``data``).
    max_reference_images: cap on the reference images (seeded subset).
    prefix: metric-name stem; None for the extractor's name.
    cifar10_resnet_path: weights for "cifar10_resnet"; None for the committed ones.
  """
  if not isinstance(data, ImageData):
    raise ValueError(f"data must be a regan_tf.data.ImageData, got {type(data).__name__}.")
  if not isinstance(extractor, FeatureExtractor):
    extractor = build_extractor(data, extractor, cache_dir=cache_dir, inception_path=inception_path,
                                classifier_data=classifier_data,
                                cifar10_resnet_path=cifar10_resnet_path)
  # The classifier and the reference shuffle use their fixed default seeds:
  # ``seed`` picks the latents only, so evaluators with different seeds share
  # one classifier and one reference (and their scores are comparable).
  reference = reference_stats(data, extractor, cache_dir=cache_dir, max_images=max_reference_images,
                              batch_size=batch_size)
  return Evaluator(extractor, reference, z_dim=z_dim, num_samples=num_samples,
                   batch_size=batch_size, seed=seed, prefix=prefix)
