"""Tests for regan_tf.data.subset."""

import numpy as np
import pytest

from regan_tf import data
from regan_tf.data import subset

_CIFAR_LABELS = np.repeat(np.arange(10), 5000)  # class by class, like the sorted JPEG folder


@pytest.mark.parametrize("rule", data.SUBSET_RULES)
@pytest.mark.parametrize("fraction,expected", [(0.1, 5000), (0.2, 10000), (1.0, 50000)])
def test_exact_counts(rule, fraction, expected):
  indices = data.subset_indices(50000, fraction, rule, _CIFAR_LABELS, seed=3)
  assert indices.dtype == np.int64
  assert len(indices) == expected
  assert len(np.unique(indices)) == expected
  assert np.all(np.diff(indices) > 0)  # sorted: dataset order is kept
  assert indices.min() >= 0 and indices.max() < 50000


def test_size_rounds_and_keeps_at_least_one():
  assert subset.subset_size(10, 0.25) == 3  # 2.5 rounds up
  assert subset.subset_size(10, 0.24) == 2
  assert subset.subset_size(100, 0.001) == 1
  assert subset.subset_size(50000, 0.1) == 5000


def test_first_is_a_prefix():
  np.testing.assert_array_equal(data.subset_indices(50000, 0.1, "first"), np.arange(5000))


def test_stratified_equal_per_class():
  indices = data.subset_indices(50000, 0.1, "stratified", _CIFAR_LABELS, seed=0)
  np.testing.assert_array_equal(np.bincount(_CIFAR_LABELS[indices]), np.full(10, 500))
  # Remainder spread over the first classes: 23 over 10 classes -> 3,3,3,2,...
  labels = np.tile(np.arange(10), 10)
  small = data.subset_indices(100, 0.23, "stratified", labels, seed=0)
  np.testing.assert_array_equal(np.bincount(labels[small]), [3, 3, 3, 2, 2, 2, 2, 2, 2, 2])


def test_stratified_not_enough_examples_in_a_class():
  labels = np.array([0] * 90 + [1] * 10)
  with pytest.raises(ValueError, match="only 10"):
    data.subset_indices(100, 0.5, "stratified", labels)


@pytest.mark.parametrize("rule", ["random", "stratified"])
def test_seeded_rules_reproducible_and_seed_dependent(rule):
  a = data.subset_indices(50000, 0.1, rule, _CIFAR_LABELS, seed=1)
  b = data.subset_indices(50000, 0.1, rule, _CIFAR_LABELS, seed=1)
  c = data.subset_indices(50000, 0.1, rule, _CIFAR_LABELS, seed=2)
  np.testing.assert_array_equal(a, b)
  assert len(np.intersect1d(a, c)) < 1000  # independent 10% draws overlap by ~500


def test_random_covers_all_classes():
  indices = data.subset_indices(50000, 0.1, "random", _CIFAR_LABELS, seed=0)
  counts = np.bincount(_CIFAR_LABELS[indices], minlength=10)
  assert counts.min() > 400 and counts.max() < 600


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5, float("nan"), "0.1", True])
def test_bad_fraction(fraction):
  with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
    data.subset_indices(100, fraction, "first")


def test_bad_rule_lists_valid_rules():
  with pytest.raises(ValueError, match="'first', 'random', 'stratified'"):
    data.subset_indices(100, 0.1, "balanced")


def test_stratified_needs_labels():
  with pytest.raises(ValueError, match="labels is None"):
    data.subset_indices(100, 0.1, "stratified", None)


def test_bad_labels_shape():
  with pytest.raises(ValueError, match=r"shape \[100\]"):
    data.subset_indices(100, 0.1, "stratified", np.zeros(99, np.int64))


def test_select_subset_slices_images_and_labels():
  images = np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1) * np.ones([1, 2, 2, 1], np.uint8)
  labels = np.arange(20, dtype=np.int64) % 4
  full = data.ImageData(images, labels, "toy")
  part = data.select_subset(full, fraction=0.4, rule="stratified", seed=5)
  assert part.num_examples == 8
  np.testing.assert_array_equal(np.bincount(part.labels), [2, 2, 2, 2])
  # Each image still carries its own label (pixel value i, label i % 4).
  np.testing.assert_array_equal(part.images[:, 0, 0, 0] % 4, part.labels)
  assert part.name == "toy[stratified 8/20]"
  assert data.select_subset(full) is full  # fraction 1.0 keeps everything

  unlabeled = data.ImageData(images, None, "toy")
  first = data.select_subset(unlabeled, fraction=0.25)
  np.testing.assert_array_equal(first.images[:, 0, 0, 0], np.arange(5))
  assert first.labels is None
