"""Calibration of an FID extractor on real labelled images: does FID see what it must?

An FID extractor is only useful if the distance grows with the defects a GAN
has. Issue 23 found an offline CIFAR-10 classifier whose FID did not (it ranked
a near mode-collapsed checkpoint best). This module builds controlled
"generators" out of real images, all of the same size and disjoint from the
reference, and scores them:

* ``classes_<k>`` for k in 10, 5, 2, 1: real images of only the first k classes
  (equal shares). Dropping classes is mode dropping; FID must rise as k falls.
* ``blur_<sigma>``: the 10-class set blurred with a Gaussian of ``sigma``
  pixels; FID must rise with sigma (loss of detail).
* ``collapsed_<m>``: the 10-class set replaced by copies of its first m images
  (m distinct images repeated to the same size); FID must rise as m falls
  (mode collapse).

A sound extractor gives strictly increasing FID along each family, and a
2-class real set must score far worse than the disjoint 10-class real set
(``ratio_2_to_10``). ``docs/METRICS.md`` reports these figures ("sanity card")
for the shipped extractors; ``tests/test_metrics_calibration.py`` pins them on
a cut-down sample, and ``benchmarks/fid_sanity_card.py`` prints them at full size.

Written by hand: no library ships such a check.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np
from scipy import ndimage

from regan_tf.data import ImageData
from regan_tf.metrics import scores
from regan_tf.metrics.extractors import FeatureExtractor

__all__ = ["CLASS_COUNTS", "BLUR_SIGMAS", "COLLAPSED_DISTINCT", "build_sets", "blur",
           "calibrate", "families", "format_card"]

CLASS_COUNTS: Tuple[int, ...] = (10, 5, 2, 1)
BLUR_SIGMAS: Tuple[float, ...] = (0.5, 1.0, 2.0)
COLLAPSED_DISTINCT: Tuple[int, ...] = (30, 3)


def blur(images: np.ndarray, sigma: float) -> np.ndarray:
  """Gaussian blur of uint8 [N, H, W, C] images over H and W (``sigma`` pixels), uint8 out."""
  if sigma <= 0:
    raise ValueError(f"sigma must be > 0 pixels, got {sigma!r}.")
  out = ndimage.gaussian_filter(images.astype(np.float32), sigma=(0, sigma, sigma, 0),
                                mode="reflect")
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def build_sets(data: ImageData, *, reference_per_class: int, set_size: int, seed: int = 0
               ) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
  """Splits labelled images into a reference and the calibration sets.

  Args:
    data: labelled images with at least 10 classes (classes 0-9 are used).
    reference_per_class: reference images per class (classes 0-9).
    set_size: images in every calibration set; must divide evenly among
      10, 5 and 2 classes (a multiple of 10).
    seed: seeds which images go where.

  Returns:
    (reference uint8 [10 * reference_per_class, H, W, C],
     {set name: uint8 [set_size, H, W, C]}), no image shared between the
    reference and a set.

  Raises:
    ValueError: unlabelled data, fewer than 10 classes, a set size that is not
      a multiple of 10, or a class with too few images (the message says how
      many are needed).
  """
  if data.labels is None or len(np.unique(data.labels)) < 10:
    raise ValueError(f"calibration needs labelled data with at least 10 classes; {data.name!r} "
                     f"has {0 if data.labels is None else len(np.unique(data.labels))}.")
  if set_size < 10 or set_size % 10:
    raise ValueError(f"set_size must be a positive multiple of 10, got {set_size!r}.")
  rng = np.random.default_rng(seed)
  per_class: List[np.ndarray] = []
  for c in range(10):
    members = rng.permutation(np.flatnonzero(data.labels == c))
    # Class 0 feeds the 1-class set (set_size images), the others at most set_size // 2.
    needed = reference_per_class + (set_size if c == 0 else set_size // 2 if c == 1 else
                                    set_size // 5 if c < 5 else set_size // 10)
    if len(members) < needed:
      raise ValueError(
          f"class {c} of {data.name!r} has {len(members)} images; calibration with "
          f"reference_per_class={reference_per_class} and set_size={set_size} needs {needed}. "
          f"Lower set_size or reference_per_class.")
    per_class.append(members)
  reference = np.concatenate([m[:reference_per_class] for m in per_class])
  held_out = [m[reference_per_class:] for m in per_class]
  sets: Dict[str, np.ndarray] = {}
  for k in CLASS_COUNTS:
    chosen = np.concatenate([held_out[c][:set_size // k] for c in range(k)])
    sets[f"classes_{k}"] = data.images[rng.permutation(chosen)]
  ten = sets["classes_10"]
  for sigma in BLUR_SIGMAS:
    sets[f"blur_{sigma:g}"] = blur(ten, sigma)
  for m in COLLAPSED_DISTINCT:
    sets[f"collapsed_{m}"] = ten[np.arange(set_size) % m]
  return data.images[rng.permutation(reference)], sets


def families() -> Dict[str, List[str]]:
  """Set names in the order FID must rise strictly, per family (each starts at the 10-class set)."""
  return {
      "classes": [f"classes_{k}" for k in CLASS_COUNTS],
      "blur": ["classes_10"] + [f"blur_{s:g}" for s in BLUR_SIGMAS],
      "collapse": ["classes_10"] + [f"collapsed_{m}" for m in COLLAPSED_DISTINCT],
  }


def calibrate(extractor: FeatureExtractor, data: ImageData, *, reference_per_class: int = 100,
              set_size: int = 300, seed: int = 0, batch_size: int = 250) -> Dict[str, float]:
  """FID of every calibration set against the reference, plus summary figures.

  Returns:
    {set name: FID, "ratio_2_to_10": FID(classes_2) / FID(classes_10),
     "monotone_<family>": 1.0 if FID rises strictly along the family else 0.0,
     "top_class_share_<set>": for labelled extractors, the largest predicted
     class share of each set}.
  """
  reference, sets = build_sets(data, reference_per_class=reference_per_class,
                               set_size=set_size, seed=seed)
  ref_features, _ = extractor.extract(reference, batch_size=batch_size)
  result: Dict[str, float] = {}
  for name, images in sets.items():
    features, logits = extractor.extract(images, batch_size=batch_size)
    result[name] = scores.frechet_distance(ref_features, features)
    if extractor.labelled:
      result[f"top_class_share_{name}"] = scores.class_coverage(logits)[1]
  result["ratio_2_to_10"] = result["classes_2"] / result["classes_10"]
  for family, names in families().items():
    values = [result[n] for n in names]
    result[f"monotone_{family}"] = float(all(b > a for a, b in zip(values, values[1:])))
  return result


def format_card(rows: Sequence[Tuple[str, Dict[str, float]]]) -> str:
  """A markdown table: one row per (extractor label, :func:`calibrate` result)."""
  names = [n for family in families().values() for n in family]
  columns = list(dict.fromkeys(names))
  header = "| extractor | " + " | ".join(columns) + " | FID(2 cl.) / FID(10 cl.) |"
  lines = [header, "|" + "---|" * (len(columns) + 2)]
  for label, result in rows:
    cells = [f"{result[c]:.2f}" for c in columns]
    lines.append(f"| {label} | " + " | ".join(cells) + f" | {result['ratio_2_to_10']:.1f} |")
  return "\n".join(lines)
