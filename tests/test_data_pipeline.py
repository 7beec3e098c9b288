"""Tests for regan_tf.data.pipeline.make_pipeline."""

import itertools

import numpy as np
import pytest

from regan_tf import data
from regan_tf.compat import tf


def _indexed_data(n: int) -> data.ImageData:
  """Image i is 2x2 with left column i and right column 255 - i (n <= 128).

  Its index and whether it was flipped can be read back from any batch.
  """
  assert n <= 128
  images = np.zeros([n, 2, 2, 1], np.uint8)
  images[:, :, 0, 0] = np.arange(n)[:, None]
  images[:, :, 1, 0] = 255 - np.arange(n)[:, None]
  return data.ImageData(images, None, "indexed")


def _decode(batch):
  """float32 [B, 2, 2, 1] -> (indices int [B], flipped bool [B])."""
  pixels = np.round((batch.numpy() + 1.0) * 127.5).astype(int)
  left, right = pixels[:, 0, 0, 0], pixels[:, 0, 1, 0]
  return np.minimum(left, right), left > right


def _take(dataset, count):
  return [_decode(b) for b in itertools.islice(dataset, count)]


def test_shape_dtype_range():
  images = np.zeros([5, 4, 4, 3], np.uint8)
  images[0] = 255
  d = data.ImageData(images, None, "x")
  ds = data.make_pipeline(d, global_batch_size=5)
  assert ds.element_spec.shape.as_list() == [5, 4, 4, 3]
  assert ds.element_spec.dtype == tf.float32
  batch = next(iter(ds)).numpy()
  assert batch.min() == -1.0 and batch.max() == 1.0
  assert sorted(np.unique(batch)) == [-1.0, 1.0]


def test_every_example_once_per_epoch_and_epochs_differ():
  n, b = 12, 4
  batches = _take(data.make_pipeline(_indexed_data(n), global_batch_size=b, seed=7), 9)
  stream = np.concatenate([i for i, _ in batches])
  epochs = stream.reshape(3, n)
  for epoch in epochs:
    np.testing.assert_array_equal(np.sort(epoch), np.arange(n))
  assert not np.array_equal(epochs[0], epochs[1])
  assert not any(f.any() for _, f in batches)  # no flips unless asked


def test_epoch_order_is_the_documented_stateless_shuffle():
  n, seed = 10, 3
  stream = np.concatenate([i for i, _ in _take(
      data.make_pipeline(_indexed_data(n), global_batch_size=5, seed=seed), 6)])
  for epoch in range(3):
    expected = tf.random.experimental.stateless_shuffle(
        tf.range(n, dtype=tf.int64), seed=tf.constant([seed, epoch], tf.int64)).numpy()
    np.testing.assert_array_equal(stream[epoch * n:(epoch + 1) * n], expected)


def test_deterministic_and_seed_dependent():
  d = _indexed_data(50)
  a = _take(data.make_pipeline(d, global_batch_size=8, seed=1, random_flip=True), 10)
  b = _take(data.make_pipeline(d, global_batch_size=8, seed=1, random_flip=True), 10)
  c = _take(data.make_pipeline(d, global_batch_size=8, seed=2, random_flip=True), 10)
  for (ia, fa), (ib, fb) in zip(a, b):
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_array_equal(fa, fb)
  assert not all(np.array_equal(ia, ic) for (ia, _), (ic, _) in zip(a, c))


@pytest.mark.parametrize("random_flip", [False, True])
def test_start_batch_equals_skipping_batches(random_flip):
  # 4 does not divide 10, so batches straddle epochs.
  d = _indexed_data(10)
  reference = _take(data.make_pipeline(d, global_batch_size=4, seed=5,
                                       random_flip=random_flip), 35)
  for start in (1, 2, 3, 7, 25, 30):
    resumed = _take(data.make_pipeline(d, global_batch_size=4, seed=5, start_batch=start,
                                       random_flip=random_flip), 5)
    for k, (indices, flipped) in enumerate(resumed):
      np.testing.assert_array_equal(indices, reference[start + k][0], err_msg=f"start={start}")
      np.testing.assert_array_equal(flipped, reference[start + k][1], err_msg=f"start={start}")


def test_start_batch_far_ahead_is_cheap():
  # 10**9 batches of 64 over 10 examples: computed, not iterated.
  ds = data.make_pipeline(_indexed_data(10), global_batch_size=64, start_batch=10**9)
  indices, _ = _decode(next(iter(ds)))
  assert len(indices) == 64


def test_random_flip_mirrors_about_half():
  d = _indexed_data(64)
  batches = list(itertools.islice(
      data.make_pipeline(d, global_batch_size=64, seed=0, random_flip=True), 4))
  patterns = []
  for batch in batches:
    indices, flipped = _decode(batch)
    expected = d.images[indices].astype(np.float32) / 127.5 - 1.0
    expected[flipped] = expected[flipped][:, :, ::-1]
    np.testing.assert_allclose(batch.numpy(), expected, atol=1e-6)
    patterns.append(flipped)
  assert 80 < np.sum(patterns) < 176  # 256 fair coins
  assert len({p.tobytes() for p in patterns}) == 4  # fresh coins for every batch


def test_batch_larger_than_dataset():
  indices, _ = _decode(next(iter(data.make_pipeline(_indexed_data(3), global_batch_size=8))))
  np.testing.assert_array_equal(np.bincount(indices[:6], minlength=3), [2, 2, 2])


@pytest.mark.parametrize("kwargs,match", [
    ({"global_batch_size": 0}, "global_batch_size must be an integer >= 1"),
    ({"global_batch_size": 8.0}, "global_batch_size"),
    ({"global_batch_size": 8, "seed": -1}, "seed must be an integer >= 0"),
    ({"global_batch_size": 8, "start_batch": -3}, "start_batch must be an integer >= 0"),
    ({"global_batch_size": 8, "random_flip": "yes"}, "random_flip must be True or False"),
])
def test_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    data.make_pipeline(_indexed_data(4), **kwargs)


def test_rejects_non_image_data():
  with pytest.raises(ValueError, match="data must be an ImageData"):
    data.make_pipeline(np.zeros([4, 2, 2, 1], np.uint8), global_batch_size=2)
