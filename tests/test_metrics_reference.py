"""Tests for regan_tf.metrics.reference: reference statistics are cached by key."""

import os

import numpy as np
import pytest

from regan_tf import data
from regan_tf import metrics
from regan_tf.compat import tf
from regan_tf.metrics.extractors import FeatureExtractor


class PixelStatsExtractor(FeatureExtractor):
  """A cheap extractor (4x4 average-pooled pixels) that counts its calls."""

  name = "pixels"
  cache_id = "pixels-test-1"
  input_size = 16
  input_channels = 1

  def __init__(self):
    self.calls = 0

  def _features_and_logits(self, images):
    self.calls += 1
    features = tf.reshape(tf.nn.avg_pool2d(images, 4, 4, "VALID"), [tf.shape(images)[0], -1])
    return features, features[:, :3]


@pytest.fixture(scope="module")
def digits():
  return data.load_digits(image_size=16)


def test_stats_are_computed_once_then_loaded(digits, tmp_path):
  extractor = PixelStatsExtractor()
  first = metrics.reference_stats(digits, extractor, cache_dir=str(tmp_path))
  assert not first.from_cache and extractor.calls > 0
  assert os.path.exists(first.path)
  mtime = os.path.getmtime(first.path)
  calls = extractor.calls

  second = metrics.reference_stats(digits, extractor, cache_dir=str(tmp_path))
  assert second.from_cache and second.path == first.path
  assert extractor.calls == calls  # not recomputed
  assert os.path.getmtime(first.path) == mtime
  np.testing.assert_array_equal(second.features, first.features)
  np.testing.assert_allclose(second.mean, first.features.astype(np.float64).mean(0))
  np.testing.assert_allclose(second.cov, np.cov(first.features.astype(np.float64), rowvar=False))
  assert first.num_images == digits.num_examples


def test_a_new_fraction_or_size_gets_new_stats(digits, tmp_path):
  extractor = PixelStatsExtractor()
  full = metrics.reference_stats(digits, extractor, cache_dir=str(tmp_path))
  subset = data.select_subset(digits, fraction=0.5, rule="random", seed=0)
  half = metrics.reference_stats(subset, extractor, cache_dir=str(tmp_path))
  assert not half.from_cache and half.key != full.key and half.path != full.path
  assert half.num_images == subset.num_examples
  again = metrics.reference_stats(subset, extractor, cache_dir=str(tmp_path))
  assert again.from_cache and again.key == half.key

  bigger = data.load_digits(image_size=24)
  assert metrics.reference_key(bigger, extractor) != metrics.reference_key(digits, extractor)
  capped = metrics.reference_stats(digits, extractor, cache_dir=str(tmp_path), max_images=100)
  assert not capped.from_cache and capped.num_images == 100


def test_same_name_other_content_is_not_reused(digits, tmp_path):
  """A dataset re-saved under the same name (e.g. an edited folder) is recomputed."""
  extractor = PixelStatsExtractor()
  a = metrics.reference_stats(digits, extractor, cache_dir=str(tmp_path))
  edited = data.ImageData(255 - digits.images, digits.labels, digits.name)
  b = metrics.reference_stats(edited, extractor, cache_dir=str(tmp_path))
  assert not b.from_cache and b.key != a.key


def test_cache_dir_from_environment(digits, tmp_path, monkeypatch):
  monkeypatch.setenv(metrics.CACHE_ENV, str(tmp_path / "env_cache"))
  stats = metrics.reference_stats(digits, PixelStatsExtractor())
  assert stats.path.startswith(str(tmp_path / "env_cache"))


def test_bad_arguments(digits):
  with pytest.raises(ValueError, match="max_images"):
    metrics.reference_stats(digits, PixelStatsExtractor(), max_images=1, use_cache=False)
  with pytest.raises(ValueError, match="extractor must be"):
    metrics.reference_stats(digits, lambda x: x, use_cache=False)
