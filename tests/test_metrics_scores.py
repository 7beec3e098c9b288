"""Tests for regan_tf.metrics.scores: TF-GAN's FID / IS / KID vs NumPy/SciPy."""

import numpy as np
import pytest
from scipy import linalg

from regan_tf import metrics


def _numpy_fid(x: np.ndarray, y: np.ndarray) -> float:
  """The textbook formula, independent of TF-GAN (scipy.linalg.sqrtm)."""
  mu_x, mu_y = x.mean(0), y.mean(0)
  s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
  covmean = linalg.sqrtm(s_x @ s_y)
  covmean = covmean.real
  return float(np.sum((mu_x - mu_y) ** 2) + np.trace(s_x + s_y - 2.0 * covmean))


def _numpy_kid(x: np.ndarray, y: np.ndarray) -> float:
  """Unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, one block."""
  d = x.shape[1]
  k = lambda a, b: (a @ b.T / d + 1.0) ** 3
  kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
  m, n = len(x), len(y)
  return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) /
               (n * (n - 1)) - 2.0 * kxy.mean())


def test_fid_of_a_set_with_itself_is_zero():
  x = np.random.default_rng(0).normal(size=[300, 16]).astype(np.float32)
  assert abs(metrics.frechet_distance(x, x)) < 1e-3


def test_fid_matches_scipy():
  rng = np.random.default_rng(1)
  x = rng.normal(size=[400, 12])
  y = rng.normal(loc=0.5, scale=1.5, size=[350, 12]) @ rng.normal(size=[12, 12])
  expected = _numpy_fid(x, y)
  assert expected > 10  # a non-trivial case
  np.testing.assert_allclose(metrics.frechet_distance(x, y), expected, rtol=1e-5)


def test_fid_is_float32_accurate_for_float32_features():
  rng = np.random.default_rng(2)
  x = rng.normal(size=[200, 8]).astype(np.float32)
  y = (rng.normal(size=[200, 8]) + 1.0).astype(np.float32)
  np.testing.assert_allclose(metrics.frechet_distance(x, y),
                             _numpy_fid(x.astype(np.float64), y.astype(np.float64)), rtol=1e-4)


def test_classifier_score_uniform_is_one_and_confident_balanced_is_k():
  k = 10
  assert metrics.classifier_score(np.zeros([50, k], np.float32)) == pytest.approx(1.0, abs=1e-5)
  one_hot = 40.0 * np.eye(k, dtype=np.float32)[np.arange(100) % k]
  assert metrics.classifier_score(one_hot) == pytest.approx(k, rel=1e-4)
  # Confident but always the same class: no diversity, score 1.
  same = 40.0 * np.eye(k, dtype=np.float32)[np.zeros(100, int)]
  assert metrics.classifier_score(same) == pytest.approx(1.0, abs=1e-4)


def test_class_coverage_balanced_collapsed_and_skewed():
  eye = np.eye(10, dtype=np.float32)
  balanced = np.tile(eye, [3, 1])  # 3 images per class
  assert metrics.class_coverage(balanced) == pytest.approx((1.0, 0.1))
  collapsed = np.tile(eye[4:5], [30, 1])
  assert metrics.class_coverage(collapsed) == pytest.approx((0.0, 1.0))
  # 44% in one class, the rest spread evenly over the other nine (issue 23's checkpoint).
  skewed = np.concatenate([np.tile(eye[9:10], [44, 1]), np.tile(eye[:9], [1, 1]).repeat(7, 0)[:56]])
  shares = np.bincount(skewed.argmax(1), minlength=10) / len(skewed)
  entropy, top = metrics.class_coverage(skewed)
  assert top == pytest.approx(0.44)
  expected = -np.sum(shares[shares > 0] * np.log(shares[shares > 0])) / np.log(10)
  assert entropy == pytest.approx(expected)
  assert 0.0 < entropy < 1.0


def test_kid_matches_numpy_single_block():
  rng = np.random.default_rng(3)
  x = rng.normal(size=[120, 6])
  y = rng.normal(loc=0.3, size=[100, 6])
  kid, std = metrics.kernel_distance(x, y)
  assert np.isfinite(kid) and np.isnan(std)  # one block: no standard error
  np.testing.assert_allclose(kid, _numpy_kid(x, y), rtol=1e-8)


def test_kid_block_average_matches_numpy():
  rng = np.random.default_rng(4)
  x = rng.normal(size=[200, 5])
  y = rng.normal(loc=0.5, size=[200, 5])
  kid, std = metrics.kernel_distance(x, y, max_block_size=100)
  expected = np.mean([_numpy_kid(x[:100], y[:100]), _numpy_kid(x[100:], y[100:])])
  np.testing.assert_allclose(kid, expected, rtol=1e-8)
  assert np.isfinite(std) and std > 0


@pytest.mark.parametrize("call,match", [
    (lambda: metrics.frechet_distance(np.zeros([5, 3]), np.zeros([5, 4])), "feature width"),
    (lambda: metrics.frechet_distance(np.zeros([5]), np.zeros([5, 4])), r"2-D array"),
    (lambda: metrics.frechet_distance(np.zeros([1, 3]), np.zeros([5, 3])), "at least 2"),
    (lambda: metrics.kernel_distance(np.zeros([3, 2]), np.zeros([5000, 2])), "fewer than 2"),
    (lambda: metrics.kernel_distance(np.zeros([3, 2]), np.zeros([3, 2]), max_block_size=1),
     "max_block_size"),
    (lambda: metrics.class_coverage(np.zeros([5, 1])), "at least 2 classes"),
])
def test_bad_inputs_are_named(call, match):
  with pytest.raises(ValueError, match=match):
    call()
