"""Reference statistics: the real images' features, computed once and cached.

For every (dataset, extractor) pair the real images are run through the
extractor once; the result is stored in
``<cache_dir>/reference/<dataset slug>-<extractor>-<key>.npz`` and reused.
The key is a hash of everything that changes the numbers: the dataset name
(which already encodes the split, e.g. "cifar10:test", and the subset rule and
fraction, e.g. "cifar10[stratified 5000/50000]"), a fingerprint of the image
bytes, image size and channels, the extractor's ``cache_id`` (name, version,
weights) and the image cap. Any change gives a new file.

What is stored: the real ``features`` float32 [N, D] (in a seeded random
order), their ``mean`` float64 [D] and ``cov`` float64 [D, D] (unbiased).
TF-GAN has no public FID-from-moments function, and KID needs the features
themselves, so FID and KID are computed from the stored features with TF-GAN's
``*_from_activations`` functions; mean and covariance are kept for inspection
and for tools that take moments. Features are small for the offline classifier
(128 dims); for Inception (2048 dims, 8 KB per image) cap large sets with
``max_images``.

The shuffle matters: TF-GAN's KID estimator splits both sets into blocks in
order, and a class-sorted folder (the CIFAR-10 JPEGs) would give each block
one class.

Few-shot data (100-shot folders) is its own reference: FID is measured against
the training images, as in the Re-GAN paper's Table 5, so it rewards memorizing
them; read it together with samples.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Dict, Optional

from absl import logging
import numpy as np

from regan_tf.data import ImageData
from regan_tf.metrics import cache as cache_lib
from regan_tf.metrics.extractors import FeatureExtractor

__all__ = ["ReferenceStats", "reference_key", "reference_stats"]

FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class ReferenceStats:
  """Features of the real images and their moments.

  Attributes:
    features: float32 [N, D], shuffled.
    mean: float64 [D].
    cov: float64 [D, D], unbiased (divided by N - 1).
    key: the cache key (hash of the settings in ``info``).
    info: dataset name, sizes, extractor cache_id, time of computation.
    path: the npz file, or None if not cached.
    from_cache: True when loaded from ``path`` rather than computed now.
  """
  features: np.ndarray
  mean: np.ndarray
  cov: np.ndarray
  key: str
  info: Dict[str, Any]
  path: Optional[str] = None
  from_cache: bool = False

  @property
  def num_images(self) -> int:
    return int(self.features.shape[0])


def _settings(data: ImageData, extractor: FeatureExtractor, max_images: Optional[int],
              seed: int) -> Dict[str, Any]:
  return dict(format=FORMAT_VERSION, dataset=data.name,
              content=cache_lib.array_fingerprint(data.images), num_examples=data.num_examples,
              image_size=data.image_size, channels=data.channels, extractor=extractor.cache_id,
              max_images=max_images, seed=seed)


def reference_key(data: ImageData, extractor: FeatureExtractor, *,
                  max_images: Optional[int] = None, seed: int = 0) -> str:
  """The cache key of ``data``'s statistics under ``extractor``."""
  return cache_lib.settings_hash(_settings(data, extractor, max_images, seed))


def reference_stats(data: ImageData, extractor: FeatureExtractor, *,
                    cache_dir: Optional[str] = None, max_images: Optional[int] = None,
                    batch_size: int = 250, seed: int = 0, use_cache: bool = True) -> ReferenceStats:
  """Loads the cached statistics of ``data``, or computes and caches them.

  Args:
    data: the real images (all of them are used, up to ``max_images``).
    extractor: the feature extractor.
    cache_dir: cache folder; None for ``$REGAN_TF_CACHE`` or ~/.cache/regan_tf.
    max_images: use a seeded random subset of at most this many images
      (None: all).
    batch_size: images per extractor call.
    seed: seeds the subset and the shuffle.
    use_cache: False computes without reading or writing the cache.

  Returns:
    :class:`ReferenceStats`.
  """
  if not isinstance(data, ImageData):
    raise ValueError(f"data must be a regan_tf.data.ImageData, got {type(data).__name__}.")
  if not isinstance(extractor, FeatureExtractor):
    raise ValueError(f"extractor must be a regan_tf.metrics.FeatureExtractor, got "
                     f"{type(extractor).__name__}.")
  if max_images is not None and (not isinstance(max_images, int) or max_images < 2):
    raise ValueError(f"max_images must be None (all images) or an integer >= 2, got "
                     f"{max_images!r}.")
  if data.num_examples < 2:
    raise ValueError(f"reference statistics need at least 2 images; {data.name!r} has "
                     f"{data.num_examples}.")
  settings = _settings(data, extractor, max_images, seed)
  key = cache_lib.settings_hash(settings)
  path = None
  if use_cache:
    folder = os.path.join(cache_lib.resolve_cache_dir(cache_dir), "reference")
    path = os.path.join(folder, f"{cache_lib.slug(data.name)}-{extractor.name}-{key}.npz")
    if os.path.exists(path):
      with np.load(path) as stored:
        stats = ReferenceStats(features=stored["features"], mean=stored["mean"],
                               cov=stored["cov"], key=key, info=json.loads(str(stored["info"])),
                               path=path, from_cache=True)
      logging.info("Loaded reference statistics of %s (%d images, %s) from %s.", data.name,
                   stats.num_images, extractor.name, path)
      return stats

  start = time.monotonic()
  order = np.random.default_rng(seed).permutation(data.num_examples)
  if max_images is not None:
    order = order[:max_images]
  features, _ = extractor.extract(data.images[order], batch_size=batch_size)
  as64 = features.astype(np.float64)
  mean = as64.mean(axis=0)
  cov = np.cov(as64, rowvar=False).reshape(as64.shape[1], as64.shape[1])
  info = dict(settings, num_images=int(len(order)), feature_dim=int(features.shape[1]),
              seconds=round(time.monotonic() - start, 2))
  stats = ReferenceStats(features=features, mean=mean, cov=cov, key=key, info=info, path=path)
  if path is not None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = cache_lib.atomic_path(path)
    with open(tmp, "wb") as f:
      np.savez(f, features=features, mean=mean, cov=cov, info=json.dumps(info))
    os.replace(tmp, path)
  logging.info("Computed reference statistics of %s (%d images, %s) in %.1f s%s.", data.name,
               len(order), extractor.name, info["seconds"], f"; cached at {path}" if path else "")
  return stats
