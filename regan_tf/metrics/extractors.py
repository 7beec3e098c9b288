"""The feature-extractor interface shared by Inception and the offline classifiers.

An extractor maps images float32 [N, H, W, C] in [-1, 1] (any square size,
1 or 3 channels) to ``(features float32 [N, D], logits float32 [N, K])``:
features feed FID and KID, logits feed the classifier (Inception) score. Each
extractor resizes and converts channels to what its network expects, so
generated and real images of any size go through the same preprocessing.

The metric names carry the extractor's ``name`` (``fid_inception``,
``fid_digits_classifier``, ...): numbers from different extractors are on
different scales and are never comparable, in particular an offline classifier's
FID is not an Inception FID.
"""

from __future__ import annotations

import abc
from typing import Tuple, Union

import numpy as np

from regan_tf.compat import tf

__all__ = ["FeatureExtractor", "prepare_images", "uint8_to_float"]


def uint8_to_float(images: np.ndarray) -> np.ndarray:
  """uint8 [..] in 0..255 -> float32 [..] in [-1, 1] (the generators' range)."""
  return images.astype(np.float32) / 127.5 - 1.0


def prepare_images(images: Union[np.ndarray, tf.Tensor], *, size: int, channels: int) -> tf.Tensor:
  """Converts images to ``channels`` and resizes them to ``size`` x ``size``.

  Args:
    images: float [N, H, W, C] in [-1, 1], C in (1, 3), H == W.
    size: output side; bilinear resize (antialiased when shrinking) if H != size.
    channels: 1 (RGB -> luma) or 3 (gray repeated to RGB).

  Returns:
    float32 [N, size, size, channels].
  """
  images = tf.convert_to_tensor(images)
  if images.shape.rank != 4 or images.shape[-1] not in (1, 3):
    raise ValueError(f"images must be float [N, H, W, C] with C = 1 or 3, in [-1, 1]; got shape "
                     f"{images.shape} ({images.dtype.name}).")
  if images.dtype == tf.uint8:
    raise ValueError("images must be float in [-1, 1], got uint8; convert with "
                     "regan_tf.metrics.extractors.uint8_to_float first.")
  images = tf.cast(images, tf.float32)
  have = images.shape[-1]
  if have == 1 and channels == 3:
    images = tf.repeat(images, 3, axis=-1)
  elif have == 3 and channels == 1:
    images = tf.image.rgb_to_grayscale(images)
  if images.shape[1] != size or images.shape[2] != size:
    images = tf.image.resize(images, [size, size], method="bilinear", antialias=True)
  return images


class FeatureExtractor(abc.ABC):
  """images float32 [N, H, W, C] in [-1, 1] -> (features [N, D], logits [N, K]).

  Subclasses set ``name`` (used in metric names), ``cache_id`` (changes
  whenever the network or its weights change; part of the reference-statistics
  cache key), ``input_size`` and ``input_channels`` (what the network sees) and
  implement :meth:`_features_and_logits` on prepared images. ``labelled`` is
  True when the logits are the dataset's own classes (the offline
  classifiers), so the evaluator reports how samples spread over them.
  """

  name: str
  cache_id: str
  input_size: int
  input_channels: int
  labelled: bool = False

  def __call__(self, images: Union[np.ndarray, tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor]:
    """Features float32 [N, D] and logits float32 [N, K] of one batch."""
    prepared = prepare_images(images, size=self.input_size, channels=self.input_channels)
    features, logits = self._features_and_logits(prepared)
    n = tf.shape(prepared)[0]
    return (tf.reshape(tf.cast(features, tf.float32), [n, -1]),
            tf.reshape(tf.cast(logits, tf.float32), [n, -1]))

  @abc.abstractmethod
  def _features_and_logits(self, images: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """images float32 [N, input_size, input_size, input_channels] in [-1, 1]."""

  def extract(self, images: np.ndarray, *, batch_size: int = 250) -> Tuple[np.ndarray, np.ndarray]:
    """Runs the extractor over a host array in batches.

    Args:
      images: uint8 [N, H, W, C] (0..255) or float [N, H, W, C] in [-1, 1].
      batch_size: images per forward pass.

    Returns:
      (features float32 [N, D], logits float32 [N, K]) as NumPy arrays.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    feats, logits = [], []
    for start in range(0, len(images), batch_size):
      batch = images[start:start + batch_size]
      if batch.dtype == np.uint8:
        batch = uint8_to_float(batch)
      f, l = self(batch)
      feats.append(f.numpy())
      logits.append(l.numpy())
    return np.concatenate(feats), np.concatenate(logits)

  def __repr__(self) -> str:
    return f"{type(self).__name__}(name={self.name!r}, cache_id={self.cache_id!r})"
