"""Magnitude masks: which entries of one weight tensor a sparse phase removes.

Pure tensor math, no Keras. Re-GAN (Saxena et al., "Re-GAN: Data-Efficient GANs
Training via Architectural Reconfiguration", CVPR 2023, Sec. 3) prunes, at the
start of every sparse phase and separately in every prunable tensor of G, the
fraction ``sparsity`` of entries with the smallest magnitude |w|.

Exact counts
------------
For a tensor with ``n`` entries exactly

    k = floor(sparsity * n + 1e-6)

entries are zeroed. The ``1e-6`` (an absolute tolerance, in entries) only absorbs
floating-point error in the product, so that 0.29 * 100 (= 28.999999999999996 in
float64) prunes 29 entries, not 28; a genuine fraction is always rounded down
(0.3 * 3 = 0.9 prunes nothing, 0.5 * 3 = 1.5 prunes 1). ``k`` is computed in
float64; pass the sparsity as a Python float (or a float64 tensor) for exact
counts — a float32 tensor already carries float32 rounding of the sparsity.

Tie rule
--------
Entries are ordered by (|w| ascending, flat row-major index ascending) and the
first ``k`` in that order are pruned. So among entries of equal magnitude the one
with the lower flat index is pruned first: an all-zero (or all-equal) tensor of
100 entries at sparsity 0.3 loses entries 0..29. The count is exact whatever
the ties, unlike a plain threshold test ``|w| <= t`` (more than ``k`` entries when
the ``k``-th smallest value is repeated) or the reference implementation's
``|w| < torch.quantile(|w|, sparsity)`` (Re-GAN's ``*/regan.py`` at commit 785135c).
``torch.quantile`` interpolates linearly at position ``p = sparsity * (n - 1)``,
so with no ties the reference prunes ``floor(p) + 1`` entries (``p`` when it is a
whole number): ``k`` or one *more* (n = 100 or 10: 30 or 3 either way; n = 3: 1
where ``k`` is 0). With ties at the quantile it prunes fewer, none of an
all-zero tensor. ``-0.0`` and ``+0.0`` are equal; a NaN compares larger than
every number, so NaNs are never pruned.

Algorithm
---------
A full sort of every tensor (``tf.sort`` / ``tf.math.top_k``) costs about 0.25 s
for the 4.3M weights of SNGAN's generator on a 2-core CPU. Instead the ``k``-th
smallest magnitude is found exactly by a two-pass radix select on the float's
bit pattern (for non-negative IEEE floats the int32 bit pattern is ordered like
the value): a 65536-bin histogram of the high 16 bits locates the bucket holding
the ``k``-th value, a second histogram of the low 16 bits inside that bucket
locates the value itself. Ties at that threshold are then resolved by a running
count (``tf.cumsum``) in flat-index order. Everything is O(n), uses static
shapes only, and therefore runs under
``tf.function`` and XLA (``jit_compile=True``), also with a tensor ``sparsity``.
The histograms use ``DenseBincount`` with a constant size (3x faster than
``unsorted_segment_sum`` on CPU); the tie ranking runs only when the threshold
value is repeated (``tf.cond``).

Written by hand because no TensorFlow op selects an exact count with a
deterministic tie rule in linear time; TFMOT's mask update sorts the whole
tensor and keeps every entry tied with the threshold.

Float16/bfloat16 weights are compared exactly (through float32); float64
weights are compared at float32 precision (values that collide after rounding
count as ties).
"""

from __future__ import annotations

import math
from typing import List, Sequence, Tuple, Union

from regan_tf.compat import tf

__all__ = [
    "magnitude_mask",
    "magnitude_mask_and_threshold",
    "magnitude_masks_and_thresholds",
    "num_pruned",
    "sparsity_of",
]

# Absolute tolerance, in entries, for floating-point error in sparsity * n.
_COUNT_TOLERANCE = 1e-6
_RADIX_BITS = 16
_RADIX_BINS = 1 << _RADIX_BITS

SparsityLike = Union[float, tf.Tensor]


def num_pruned(n: int, sparsity: float) -> int:
  """Returns how many of ``n`` entries a mask at ``sparsity`` zeroes.

  ``floor(sparsity * n + 1e-6)``; see the module docstring for why.

  Args:
    n: number of entries of the tensor (>= 0).
    sparsity: fraction to prune, in [0, 1).

  Raises:
    ValueError: ``sparsity`` outside [0, 1) or ``n`` negative.
  """
  _check_sparsity(sparsity)
  if n < 0:
    raise ValueError(f"n={n} is negative; pass the number of entries of the tensor (>= 0).")
  return min(n, int(math.floor(float(sparsity) * n + _COUNT_TOLERANCE)))


def _check_sparsity(sparsity: float) -> None:
  if not 0.0 <= float(sparsity) < 1.0:
    raise ValueError(
        f"sparsity={sparsity!r} is outside [0, 1). It is the fraction of entries of each "
        "tensor to zero; pass e.g. 0.3 for 30% (1.0 would remove every weight).")


def _num_pruned_tensor(n: tf.Tensor, sparsity: tf.Tensor) -> tf.Tensor:
  """``num_pruned`` for a tensor sparsity, as int32 clipped to [0, n]."""
  k = tf.floor(tf.cast(sparsity, tf.float64) * tf.cast(n, tf.float64) + _COUNT_TOLERANCE)
  return tf.clip_by_value(tf.cast(k, tf.int32), 0, n)


def _magnitude_bits(weights: tf.Tensor) -> tf.Tensor:
  """|weights| flattened as int32 bit patterns, ordered like the magnitudes.

  Returns:
    int32 [n]. For non-negative float32 ``a`` and ``b``: a < b iff bits(a) < bits(b).
  """
  if not weights.dtype.is_floating:
    raise TypeError(
        f"weights has dtype {weights.dtype.name}; magnitude masks need a floating-point "
        "tensor (float16, bfloat16, float32 or float64). Cast the tensor first.")
  magnitudes = tf.abs(tf.reshape(weights, [-1]))
  if magnitudes.dtype != tf.float32:
    magnitudes = tf.cast(magnitudes, tf.float32)
  return tf.bitcast(magnitudes, tf.int32)


def _histogram(values: tf.Tensor, num_bins: int) -> tf.Tensor:
  """Counts of ``values`` (int32 [n], each in [0, num_bins)) per bin: int32 [num_bins].

  ``DenseBincount`` with a constant size: about 3x faster than
  ``unsorted_segment_sum`` on CPU, and compiles under XLA (``tf.math.bincount``
  does not: it derives the size from the data).
  """
  return tf.raw_ops.DenseBincount(input=values, size=tf.constant(num_bins, tf.int32),
                                  weights=tf.constant([], tf.int32), binary_output=False)


def _select_bucket(histogram: tf.Tensor, rank: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """The bucket holding the ``rank``-th smallest entry (1-based).

  Args:
    histogram: int32 [B], entries per bucket, buckets in value order.
    rank: int32 scalar in [1, sum(histogram)] (0 selects bucket 0).

  Returns:
    (bucket, count_below): int32 scalars; the bucket index and how many entries
    lie in lower buckets.
  """
  cumulative = tf.cumsum(histogram)
  bucket = tf.minimum(tf.reduce_sum(tf.cast(cumulative < rank, tf.int32)),
                      histogram.shape[0] - 1)
  return bucket, tf.gather(cumulative, bucket) - tf.gather(histogram, bucket)


def _prune_flags(bits: tf.Tensor, k: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """Flags the first ``k`` entries in (magnitude, flat index) order.

  Args:
    bits: int32 [n] from ``_magnitude_bits``.
    k: int32 scalar in [0, n].

  Returns:
    (pruned, threshold_bits): bool [n] with exactly ``k`` True entries, and the
    int32 bit pattern of the ``k``-th smallest magnitude (0 when k == 0).
  """
  high = tf.bitwise.right_shift(bits, _RADIX_BITS)
  # Pass 1: which high-16-bit bucket holds the k-th smallest magnitude.
  bucket, below_bucket = _select_bucket(_histogram(high, _RADIX_BINS), k)
  # Pass 2: its low 16 bits, among the entries of that bucket (the others go to
  # an overflow bin that is dropped).
  low = tf.where(tf.equal(high, bucket), tf.bitwise.bitwise_and(bits, _RADIX_BINS - 1),
                 _RADIX_BINS)
  low_value, _ = _select_bucket(_histogram(low, _RADIX_BINS + 1)[:_RADIX_BINS],
                                k - below_bucket)
  threshold_bits = tf.where(k > 0, tf.bitwise.left_shift(bucket, _RADIX_BITS) + low_value, 0)
  # Everything strictly below the threshold goes. Of the entries equal to it,
  # the lowest flat indices go until exactly k are pruned; the running count
  # that ranks them is only needed when the threshold value is repeated.
  below = bits < threshold_bits
  tied = tf.equal(bits, threshold_bits)
  still_needed = k - tf.reduce_sum(tf.cast(below, tf.int32))
  num_tied = tf.reduce_sum(tf.cast(tied, tf.int32))

  def first_tied():
    return tf.logical_and(tied, tf.cumsum(tf.cast(tied, tf.int32)) <= still_needed)

  # num_tied >= still_needed always (the k-th smallest is itself tied).
  pruned = tf.logical_or(below, tf.cond(num_tied > still_needed, first_tied, lambda: tied))
  return pruned, threshold_bits


# Traced once and shared by all tensors (``reduce_retracing`` relaxes the size to
# unknown after the first few): tracing the selection once instead of once per
# tensor cuts the controller's first mask update (trace + graph optimization)
# several-fold for a generator with dozens of pruned tensors. Inlined under XLA.
_prune_flags_compiled = tf.function(_prune_flags, autograph=False, reduce_retracing=True)


def magnitude_masks_and_thresholds(
    weights: Sequence[tf.Tensor],
    sparsity: SparsityLike) -> Tuple[List[tf.Tensor], List[tf.Tensor]]:
  """``magnitude_mask_and_threshold`` of several tensors, in one graph.

  Each tensor gets its own threshold (per-tensor pruning, as in Re-GAN). Meant
  to be traced once for all of G's tensors (``ReganController`` does).

  Args:
    weights: floating tensors of any shapes (``tf.Variable`` s work).
    sparsity: fraction to prune in every tensor, in [0, 1): a Python float
      (validated, per-tensor ``k`` exact in Python) or a scalar tensor.

  Returns:
    (masks, thresholds): lists aligned with ``weights``; see
    ``magnitude_mask_and_threshold``.

  Raises:
    ValueError: a Python ``sparsity`` outside [0, 1), or no tensors.
    TypeError: non-floating weights.
  """
  weights = [tf.convert_to_tensor(w) for w in weights]
  if not weights:
    raise ValueError("weights is empty; pass at least one tensor to mask.")
  static = isinstance(sparsity, (int, float))
  if static:
    _check_sparsity(sparsity)
  bits = [_magnitude_bits(w) for w in weights]
  sizes = [b.shape[0] for b in bits]
  if static and all(n is not None for n in sizes):
    ks = tf.constant([num_pruned(n, sparsity) for n in sizes], tf.int32)
  else:
    ks = tf.stack([_num_pruned_tensor(tf.size(b), sparsity) for b in bits])
  results = [_prune_flags_compiled(b, ks[i]) for i, b in enumerate(bits)]
  masks, thresholds = [], []
  for w, (pruned, threshold_bits) in zip(weights, results):
    masks.append(tf.reshape(tf.cast(tf.logical_not(pruned), w.dtype), tf.shape(w)))
    thresholds.append(tf.cast(tf.bitcast(threshold_bits, tf.float32), w.dtype))
  return masks, thresholds


def magnitude_mask_and_threshold(
    weights: tf.Tensor, sparsity: SparsityLike) -> Tuple[tf.Tensor, tf.Tensor]:
  """Mask zeroing the ``k`` smallest-|w| entries, and the largest pruned |w|.

  Args:
    weights: floating tensor of any rank [d0, ..., dr] (a ``tf.Variable`` works).
    sparsity: fraction to prune, in [0, 1): a Python float (validated, ``k``
      computed exactly in Python) or a scalar tensor (``k`` clipped to [0, n]).

  Returns:
    (mask, threshold): ``mask`` has the shape and dtype of ``weights``, 0 at the
    ``k = floor(sparsity * n + 1e-6)`` pruned entries and 1 elsewhere (ties by
    flat index, see the module docstring); ``threshold`` is a scalar of the
    weights' dtype, the largest pruned magnitude (every kept |w| is >= it), 0
    when nothing is pruned.

  Raises:
    ValueError: a Python ``sparsity`` outside [0, 1).
    TypeError: non-floating ``weights``.
  """
  masks, thresholds = magnitude_masks_and_thresholds([weights], sparsity)
  return masks[0], thresholds[0]


def magnitude_mask(weights: tf.Tensor, sparsity: SparsityLike) -> tf.Tensor:
  """0/1 mask of ``weights``' shape and dtype that zeroes the smallest |w|.

  Exactly ``k = floor(sparsity * n + 1e-6)`` entries of the ``n`` are 0: those
  first in (|w| ascending, flat index ascending) order. Works eagerly, inside
  ``tf.function`` and under XLA, for any rank.

  >>> magnitude_mask(tf.constant([0.3, -0.1, 0.2, 0.0]), 0.5)
  <tf.Tensor: ... numpy=array([1., 0., 1., 0.], dtype=float32)>

  Args:
    weights: floating tensor [d0, ..., dr].
    sparsity: fraction to prune, in [0, 1) (Python float or scalar tensor).

  Returns:
    Tensor [d0, ..., dr] of ``weights.dtype`` holding 0s and 1s.
  """
  return magnitude_mask_and_threshold(weights, sparsity)[0]


def sparsity_of(tensor: tf.Tensor) -> float:
  """Fraction of exact zeros in ``tensor`` (0.0 for an empty tensor), eagerly."""
  tensor = tf.convert_to_tensor(tensor)
  if tensor.shape.num_elements() == 0:
    return 0.0
  return float(tf.math.zero_fraction(tensor).numpy())
