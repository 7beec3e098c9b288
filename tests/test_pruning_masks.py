"""Tests for regan_tf.pruning.masks: exact counts, the tie rule, ranks, XLA."""

import numpy as np
import pytest

from regan_tf.compat import tf
from regan_tf.pruning import masks


def reference_mask(weights: np.ndarray, sparsity: float) -> np.ndarray:
  """Independent NumPy reference: prune the first k in (|w|, flat index) order."""
  magnitudes = np.abs(weights.astype(np.float32)).ravel()
  k = int(np.floor(sparsity * magnitudes.size + 1e-6))
  order = np.lexsort((np.arange(magnitudes.size), magnitudes))
  mask = np.ones(magnitudes.size, np.float32)
  mask[order[:k]] = 0.0
  return mask.reshape(weights.shape)


def test_100_distinct_values_at_30_percent_keep_exactly_70_largest():
  rng = np.random.default_rng(0)
  magnitudes = rng.permutation(np.arange(1, 101)).astype(np.float32) / 7.0
  weights = magnitudes * rng.choice([-1.0, 1.0], size=100).astype(np.float32)
  mask = masks.magnitude_mask(tf.constant(weights), 0.3).numpy()
  assert mask.dtype == np.float32 and mask.shape == (100,)
  assert set(np.unique(mask)) == {0.0, 1.0}
  assert int(np.count_nonzero(mask)) == 70
  smallest_30 = np.argsort(np.abs(weights))[:30]
  np.testing.assert_array_equal(np.flatnonzero(mask == 0), np.sort(smallest_30))


@pytest.mark.parametrize("fill", [0.0, 0.5, -2.0])
def test_all_equal_values_prune_lowest_flat_indices_first(fill):
  weights = tf.fill([10, 10], fill)
  mask = masks.magnitude_mask(weights, 0.3).numpy().ravel()
  np.testing.assert_array_equal(mask[:30], 0.0)
  np.testing.assert_array_equal(mask[30:], 1.0)


def test_ties_at_the_threshold_keep_the_count_exact():
  # 10 entries of magnitude 1 (signs mixed), 10 of magnitude 2; sparsity 0.35 prunes
  # k = 7: seven of the tied magnitude-1 entries, the ones with the lowest index.
  weights = np.array([1, -1] * 5 + [2, -2] * 5, np.float32)
  weights = weights[np.random.default_rng(1).permutation(20)]
  mask = masks.magnitude_mask(tf.constant(weights), 0.35).numpy()
  ones_at = np.flatnonzero(np.abs(weights) == 1)
  assert int(np.sum(mask == 0)) == 7
  np.testing.assert_array_equal(np.flatnonzero(mask == 0), ones_at[:7])


def test_sparsity_zero_keeps_everything_even_zeros():
  weights = tf.constant([0.0, 1.0, -0.0, 3.0])
  np.testing.assert_array_equal(masks.magnitude_mask(weights, 0.0).numpy(), [1, 1, 1, 1])


def test_rank4_kernel_matches_reference_and_keeps_shape():
  weights = tf.random.stateless_normal([3, 3, 4, 5], seed=(1, 2))
  mask = masks.magnitude_mask(weights, 0.5).numpy()
  assert mask.shape == (3, 3, 4, 5)
  assert int(np.sum(mask == 0)) == 90
  np.testing.assert_array_equal(mask, reference_mask(weights.numpy(), 0.5))


def test_random_tensors_with_ties_match_the_numpy_reference():
  rng = np.random.default_rng(3)
  for trial in range(12):
    shape = tuple(rng.integers(1, 6, size=trial % 4 + 1))
    if trial % 3 == 0:
      weights = rng.integers(-2, 3, size=shape).astype(np.float32)  # many ties, zeros
    else:
      weights = (rng.normal(size=shape) * rng.integers(0, 2, size=shape)).astype(np.float32)
    for sparsity in (0.1, 0.3, 0.75):
      np.testing.assert_array_equal(
          masks.magnitude_mask(tf.constant(weights), sparsity).numpy(),
          reference_mask(weights, sparsity), err_msg=f"shape={shape} sparsity={sparsity}")


def test_threshold_separates_pruned_from_kept():
  weights = tf.random.stateless_normal([200], seed=(4, 5))
  mask, threshold = masks.magnitude_mask_and_threshold(weights, 0.3)
  magnitudes = np.abs(weights.numpy())
  assert magnitudes[mask.numpy() == 0].max() == threshold.numpy()
  assert magnitudes[mask.numpy() == 1].min() >= threshold.numpy()
  _, no_threshold = masks.magnitude_mask_and_threshold(weights, 0.0)
  assert no_threshold.numpy() == 0.0


def test_masks_of_several_tensors_use_per_tensor_thresholds():
  small = tf.random.stateless_normal([50], seed=(6, 7)) * 1e-3
  large = tf.random.stateless_normal([150], seed=(8, 9))
  (mask_small, mask_large), _ = masks.magnitude_masks_and_thresholds([small, large], 0.3)
  # A global threshold would remove all of `small`; per tensor each loses 30%.
  assert int(np.sum(mask_small.numpy() == 0)) == 15
  assert int(np.sum(mask_large.numpy() == 0)) == 45
  np.testing.assert_array_equal(mask_large.numpy(), reference_mask(large.numpy(), 0.3))


def test_xla_compiled_with_tensor_sparsity_matches_eager():
  compiled = tf.function(masks.magnitude_mask, jit_compile=True)
  weights = tf.constant(np.random.default_rng(5).integers(-3, 4, size=(2, 3, 4, 5)), tf.float32)
  result = compiled(weights, tf.constant(0.3, tf.float64)).numpy()
  np.testing.assert_array_equal(result, reference_mask(weights.numpy(), 0.3))
  assert int(np.sum(result == 0)) == 36


def test_rounding_is_floor_with_float_error_absorbed():
  assert masks.num_pruned(100, 0.3) == 30
  assert masks.num_pruned(100, 0.29) == 29  # 0.29 * 100 == 28.999999999999996
  assert masks.num_pruned(3, 0.3) == 0  # a genuine 0.9 rounds down
  assert masks.num_pruned(3, 0.5) == 1
  assert masks.num_pruned(10, 0.35) == 3
  assert int(np.sum(masks.magnitude_mask(tf.range(1.0, 101.0), 0.29).numpy() == 0)) == 29


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5])
def test_sparsity_outside_unit_interval_is_rejected(sparsity):
  with pytest.raises(ValueError, match="sparsity"):
    masks.magnitude_mask(tf.ones([4]), sparsity)


def test_dtype_is_preserved_and_integers_rejected():
  half = tf.constant([0.1, -2.0, 0.3, 4.0], tf.float16)
  mask = masks.magnitude_mask(half, 0.5)
  assert mask.dtype == tf.float16
  np.testing.assert_array_equal(mask.numpy(), [0, 1, 0, 1])
  with pytest.raises(TypeError, match="floating"):
    masks.magnitude_mask(tf.constant([1, 2, 3]), 0.3)


def test_sparsity_of_counts_exact_zeros():
  assert masks.sparsity_of(tf.constant([0.0, 1.0, -0.0, 2.0])) == 0.5
  assert masks.sparsity_of(tf.zeros([0])) == 0.0


def test_the_reference_quantile_rule_prunes_k_or_one_more_and_fewer_with_ties():
  # Re-GAN's regan.py (785135c): mask = |w| < torch.quantile(|w|, s), whose default interpolation is
  # NumPy's 'linear'. The module docstring's claim, checked against that rule emulated in NumPy.
  rng = np.random.default_rng(0)
  for n in range(1, 121):
    w = rng.standard_normal(n).astype(np.float32)  # no ties
    reference = int(np.sum(np.abs(w) < np.quantile(np.abs(w), 0.3)))
    ours = int(np.sum(masks.magnitude_mask(tf.constant(w), 0.3).numpy() == 0))
    p = 0.3 * (n - 1)
    assert ours == masks.num_pruned(n, 0.3)
    assert reference - ours in (0, 1), n
    if not np.isclose(p, round(p)):
      assert reference == int(np.floor(p)) + 1, n
  zeros = np.zeros(100, np.float32)
  assert np.sum(np.abs(zeros) < np.quantile(np.abs(zeros), 0.3)) == 0  # ties: the reference prunes none
  assert int(np.sum(masks.magnitude_mask(tf.constant(zeros), 0.3).numpy() == 0)) == 30
