"""Tests for regan_tf.metrics.classifier: the offline digits extractor."""

import os

import numpy as np
import pytest

from regan_tf import data
from regan_tf import metrics


@pytest.fixture(scope="module")
def digits():
  return data.load_digits(image_size=32)


@pytest.fixture(scope="module")
def classifier(digits, cache_dir):
  return metrics.load_or_train_classifier(digits, cache_dir=cache_dir)


def test_classifier_is_named_and_accurate(classifier):
  assert classifier.name == "digits_classifier"
  assert classifier.info["heldout_accuracy"] > 0.9
  assert classifier.num_classes == 10


def test_features_separate_real_digits_from_noise(classifier, digits):
  order = np.random.default_rng(0).permutation(digits.num_examples)
  half = digits.num_examples // 2
  features_a, _ = classifier.extract(digits.images[order[:half]])
  features_b, _ = classifier.extract(digits.images[order[half:]])
  noise = np.random.default_rng(1).uniform(-1, 1, [half, 32, 32, 1]).astype(np.float32)
  features_noise, _ = classifier.extract(noise)
  real_vs_real = metrics.frechet_distance(features_a, features_b)
  real_vs_noise = metrics.frechet_distance(features_a, features_noise)
  assert real_vs_noise > 10 * real_vs_real, (real_vs_real, real_vs_noise)


def test_any_size_and_channels_are_accepted(classifier, digits):
  rgb64 = np.repeat(digits.images[:8], 3, axis=-1)
  rgb64 = np.asarray(np.kron(rgb64, np.ones([1, 2, 2, 1])), np.uint8)  # [8, 64, 64, 3]
  features, logits = classifier.extract(rgb64)
  assert features.shape == (8, 128) and logits.shape == (8, 10)
  same, _ = classifier.extract(digits.images[:8])
  # Nearest-neighbour upsampling then antialiased downsampling is nearly the identity.
  np.testing.assert_allclose(features, same, rtol=0.05, atol=0.05 * np.abs(same).max())


def test_second_call_loads_the_cached_weights(classifier, digits, cache_dir):
  again = metrics.load_or_train_classifier(digits, cache_dir=cache_dir)
  assert again.cache_id == classifier.cache_id
  for a, b in zip(again.model.get_weights(), classifier.model.get_weights()):
    np.testing.assert_array_equal(a, b)
  assert len(os.listdir(os.path.join(cache_dir, "classifiers"))) >= 1


def test_training_is_deterministic(digits, tmp_path):
  small = data.select_subset(digits, fraction=0.2, rule="random", seed=0)
  a = metrics.load_or_train_classifier(small, cache_dir=str(tmp_path / "a"), epochs=1)
  b = metrics.load_or_train_classifier(small, cache_dir=str(tmp_path / "b"), epochs=1)
  assert a.cache_id == b.cache_id
  for wa, wb in zip(a.model.get_weights(), b.model.get_weights()):
    np.testing.assert_array_equal(wa, wb)
  c = metrics.load_or_train_classifier(small, cache_dir=str(tmp_path / "a"), epochs=1, seed=1)
  assert c.cache_id != a.cache_id


def test_unlabelled_data_is_refused(tmp_path):
  unlabelled = data.ImageData(np.zeros([20, 16, 16, 3], np.uint8), None, "image_folder:/x/faces")
  with pytest.raises(ValueError, match="labelled.*inception"):
    metrics.load_or_train_classifier(unlabelled, cache_dir=str(tmp_path))
  with pytest.raises(ValueError, match="extractor must be one of"):
    metrics.build_extractor(unlabelled, "vgg")


def test_names_keep_datasets_apart():
  name = metrics.classifier.classifier_name
  assert name("digits") == "digits_classifier"
  assert name("cifar10[stratified 5000/50000]") == "cifar10_classifier"
  assert name("image_folder:/data/cifar10-jpeg/train") == "cifar10_jpeg_train_classifier"
  assert name("cifar10:test") == "cifar10_classifier"
