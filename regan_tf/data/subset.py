"""Fixed training subsets: the "10% of CIFAR-10" of data-efficient GAN papers.

Re-GAN (Saxena et al., CVPR 2023) trains on the first 10% / 20% of CIFAR-10 in
dataset order (its reference code slices the training set). That rule only
makes sense when the dataset order is already mixed; a folder read in sorted
order (class by class) needs a random or stratified subset instead, so the rule
is an explicit argument that runs should log and record.

The selection is plain NumPy on indices (:func:`subset_indices`), so it can be
tested and reproduced without images.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

from absl import logging
import numpy as np

from regan_tf.data.sources import ImageData

__all__ = ["SUBSET_RULES", "select_subset", "subset_indices", "subset_size"]

SUBSET_RULES = ("first", "random", "stratified")


def check_fraction(fraction) -> float:
  """Returns ``fraction`` as a float; ValueError unless it is in (0, 1]."""
  if (not isinstance(fraction, numbers.Real) or isinstance(fraction, bool)
      or not math.isfinite(fraction) or not 0 < fraction <= 1):
    raise ValueError(
        f"fraction must be in (0, 1], got {fraction!r}; use e.g. 0.1 for 10% of the data "
        f"or 1.0 for all of it.")
  return float(fraction)


def check_rule(rule) -> str:
  """Returns ``rule``; ValueError (listing the rules) unless it is one of SUBSET_RULES."""
  if rule not in SUBSET_RULES:
    raise ValueError(
        f"rule must be one of {SUBSET_RULES}, got {rule!r}: 'first' takes the first N in dataset "
        f"order (the Re-GAN reference), 'random' a seeded random N, 'stratified' the same number "
        f"per class.")
  return rule


def subset_size(num_examples: int, fraction: float) -> int:
  """N = round(fraction * num_examples), halves rounded up, at least 1."""
  fraction = check_fraction(fraction)
  # 0.1 * 50000 is 5000.000000000001 in floating point; the rounding absorbs it.
  return max(1, min(num_examples, int(math.floor(fraction * num_examples + 0.5))))


def subset_indices(num_examples: int, fraction: float, rule: str = "first",
                   labels: Optional[np.ndarray] = None, seed: int = 0) -> np.ndarray:
  """Chooses which examples form a subset.

  N = :func:`subset_size` (num_examples, fraction). Rules:

  * "first": indices 0 .. N-1.
  * "random": N distinct indices drawn with ``np.random.default_rng(seed)``.
  * "stratified": the same number per class, N // K for each of the K classes
    present in ``labels`` (in sorted label order) plus one more for each of the
    first N % K classes; inside a class the examples are drawn at random with
    ``seed``. Raises if a class has too few examples.

  fraction == 1 returns every index whatever the rule. The result is always
  sorted, i.e. the subset keeps the dataset's order.

  Args:
    num_examples: size of the dataset.
    fraction: in (0, 1].
    rule: one of SUBSET_RULES.
    labels: int [num_examples] class labels; required for "stratified".
    seed: for "random" and "stratified".

  Returns:
    int64 [N] sorted, distinct indices into the dataset.

  Raises:
    ValueError: bad fraction, rule, labels or num_examples.
  """
  if (not isinstance(num_examples, numbers.Integral) or isinstance(num_examples, bool)
      or num_examples < 1):
    raise ValueError(f"num_examples must be an integer >= 1, got {num_examples!r}.")
  fraction = check_fraction(fraction)
  rule = check_rule(rule)
  if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
    raise ValueError(f"seed must be an integer >= 0, got {seed!r}.")
  if labels is not None:
    labels = np.asarray(labels)
    if labels.shape != (num_examples,) or not np.issubdtype(labels.dtype, np.integer):
      raise ValueError(
          f"labels must be an integer array of shape [{num_examples}] (one per example), got "
          f"dtype {labels.dtype} and shape {labels.shape}.")
  if rule == "stratified" and labels is None:
    raise ValueError(
        "rule='stratified' needs class labels, but labels is None (an unlabeled source such as "
        "a folder without class subfolders); use rule='random' or 'first', or arrange the images "
        "in one subfolder per class.")

  n = subset_size(num_examples, fraction)
  if fraction == 1.0:
    return np.arange(num_examples, dtype=np.int64)
  if rule == "first":
    return np.arange(n, dtype=np.int64)
  rng = np.random.default_rng(seed)
  if rule == "random":
    return np.sort(rng.choice(num_examples, size=n, replace=False)).astype(np.int64)

  classes, counts = np.unique(labels, return_counts=True)
  k = len(classes)
  quota = np.full(k, n // k, np.int64)
  quota[:n % k] += 1
  short = np.flatnonzero(quota > counts)
  if short.size:
    c = short[0]
    raise ValueError(
        f"rule='stratified' with fraction={fraction:g} needs {quota[c]} examples of class "
        f"{classes[c]} (N={n} over {k} classes), but it has only {counts[c]}; use a smaller "
        f"fraction or rule='random'.")
  chosen = [rng.choice(np.flatnonzero(labels == cls), size=q, replace=False)
            for cls, q in zip(classes, quota)]
  return np.sort(np.concatenate(chosen)).astype(np.int64)


def select_subset(data: ImageData, *, fraction: float = 1.0, rule: str = "first",
                  seed: int = 0) -> ImageData:
  """Returns the subset of ``data`` chosen by :func:`subset_indices`.

  Args:
    data: the full dataset.
    fraction: in (0, 1]; 0.1 keeps round(0.1 * N) examples.
    rule: "first", "random" or "stratified" (see subset_indices).
    seed: for "random" and "stratified".

  Returns:
    ImageData with the chosen examples in their original order, named
    "<name>[<rule> <kept>/<total>]" (unchanged when everything is kept), so
    that logs and caches keyed on the name tell subsets apart.
  """
  if not isinstance(data, ImageData):
    raise ValueError(f"data must be an ImageData (from a regan_tf.data loader), got "
                     f"{type(data).__name__}.")
  total = data.num_examples
  indices = subset_indices(total, fraction, rule, data.labels, seed)
  logging.info("Subset: kept %d of %d examples of %s (fraction=%g, rule=%s, seed=%d).",
               len(indices), total, data.name, fraction, rule, seed)
  if len(indices) == total:
    return data
  return ImageData(images=data.images[indices],
                   labels=None if data.labels is None else data.labels[indices],
                   name=f"{data.name}[{rule} {len(indices)}/{total}]")
