"""Tests for regan_tf.metrics.evaluator: what the trainer and tools/eval.py call."""

import numpy as np
import pytest

from regan_tf import data
from regan_tf import metrics
from regan_tf.compat import tf
from regan_tf.models import dcgan


@pytest.fixture(scope="module")
def digits():
  return data.load_digits(image_size=32)


@pytest.fixture(scope="module")
def evaluator(digits, cache_dir):
  return metrics.build_evaluator(digits, z_dim=16, num_samples=300, batch_size=128,
                                 cache_dir=cache_dir)


def test_auto_picks_the_digits_classifier_and_names_metrics(evaluator):
  assert isinstance(evaluator.extractor, metrics.ClassifierExtractor)
  assert evaluator.metric_names == ("fid_digits_classifier", "is_digits_classifier",
                                    "kid_digits_classifier", "class_entropy_digits_classifier",
                                    "top_class_share_digits_classifier")


def test_untrained_generator_scores_far_worse_than_real_images(evaluator, digits):
  generator = dcgan.build(image_size=32, channels=1, z_dim=16).generator
  calls = []

  def sample_fn(z):
    calls.append(int(z.shape[0]))
    return generator(z, training=False)

  fake = evaluator.evaluate(sample_fn)
  assert calls == [128, 128, 44]  # 300 samples in batches of 128
  assert set(fake) == set(evaluator.metric_names)
  assert all(np.isfinite(v) for v in fake.values())
  real = evaluator.score_images(digits.images[np.random.default_rng(0).permutation(1797)[:300]])
  assert fake["fid_digits_classifier"] > 10 * real["fid_digits_classifier"]
  assert real["is_digits_classifier"] > 5 > fake["is_digits_classifier"]
  # Real digits spread over the ten classes; an untrained generator's samples do not.
  assert real["class_entropy_digits_classifier"] > 0.95 > fake["class_entropy_digits_classifier"]
  assert real["top_class_share_digits_classifier"] < 0.2 < fake["top_class_share_digits_classifier"]
  # Same seed, same latents, same numbers.
  assert evaluator.evaluate(sample_fn) == fake


def test_latents_are_fixed_by_seed(evaluator, digits, cache_dir):
  np.testing.assert_array_equal(evaluator.latents(1), evaluator.latents(1))
  other = metrics.Evaluator(evaluator.extractor, evaluator.reference, z_dim=16, num_samples=300,
                            batch_size=128, seed=1)
  assert not np.array_equal(other.latents(0), evaluator.latents(0))


def test_diverged_generator_is_reported(evaluator):
  with pytest.raises(FloatingPointError, match="non-finite"):
    evaluator.evaluate(lambda z: tf.fill([z.shape[0], 32, 32, 1], float("nan")))


def test_construction_errors_are_immediate(evaluator):
  with pytest.raises(ValueError, match="num_samples"):
    metrics.Evaluator(evaluator.extractor, evaluator.reference, z_dim=16, num_samples=1)
  with pytest.raises(ValueError, match="KID block"):
    metrics.Evaluator(evaluator.extractor, evaluator.reference, z_dim=16, num_samples=3,
                      kid_block_size=2)
  with pytest.raises(ValueError, match="z_dim"):
    metrics.Evaluator(evaluator.extractor, evaluator.reference, z_dim=0)
