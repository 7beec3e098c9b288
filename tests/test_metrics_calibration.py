"""Calibration of the shipped FID extractors on real images (regan_tf.metrics.calibration).

These are the tests that would have caught issue 23: FID must rise strictly as
classes are dropped from a real set, as blur grows and as a real set collapses
to copies of a few images, and a 2-class real set must score far worse than a
disjoint 10-class real set. Cut down to seconds: 100 reference images per class
and sets of 300 (CIFAR-10 JPEGs from ../shared/data), 50 and 120 for digits.
docs/METRICS.md has the full-size figures (benchmarks/fid_sanity_card.py).
"""

import os
import tarfile

import numpy as np
import pytest

from regan_tf import data
from regan_tf import metrics
from regan_tf.metrics import calibration

SHARED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "shared", "data")
CIFAR_TAR = os.path.join(SHARED_DATA, "cifar10-jpeg-train.tar.gz")
PER_CLASS = 400  # enough for 100 reference images and the sets' shares of class 0 (300)


@pytest.fixture(scope="module")
def cifar_sample(tmp_path_factory) -> data.ImageData:
  """The first 400 CIFAR-10 training JPEGs of each class (real images, 4,000 in all)."""
  if not os.path.exists(CIFAR_TAR):
    pytest.skip(f"CIFAR-10 JPEG tarball not found at {CIFAR_TAR}")
  root = tmp_path_factory.mktemp("cifar_calibration")
  with tarfile.open(CIFAR_TAR, "r|gz") as tar:
    for member in tar:
      parts = member.name.split("/")
      if member.isfile() and len(parts) == 3 and int(parts[2].split(".")[0]) < PER_CLASS:
        target = root / member.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(tar.extractfile(member).read())
  sample = data.load_image_folder(str(root / "train"), image_size=32, channels=3)
  assert np.bincount(sample.labels).tolist() == [PER_CLASS] * 10
  return sample


@pytest.fixture(scope="module")
def cifar_card(cifar_sample):
  return calibration.calibrate(metrics.load_cifar_resnet(), cifar_sample,
                               reference_per_class=100, set_size=300)


@pytest.mark.parametrize("family", ["classes", "blur", "collapse"])
def test_cifar10_resnet_fid_rises_strictly(cifar_card, family):
  values = [round(cifar_card[name], 2) for name in calibration.families()[family]]
  assert cifar_card[f"monotone_{family}"] == 1.0, f"{family}: {values}"


def test_cifar10_resnet_two_classes_far_worse_than_ten(cifar_card):
  assert cifar_card["ratio_2_to_10"] > 10.0, cifar_card


def test_cifar10_resnet_sees_the_dropped_classes(cifar_card):
  # Its predictions follow the sets' classes: a 1-class set is mostly one class.
  assert cifar_card["top_class_share_classes_10"] < 0.2
  assert cifar_card["top_class_share_classes_1"] > 0.8


@pytest.fixture(scope="module")
def digits_card(cache_dir):
  digits = data.load_digits(image_size=32)
  extractor = metrics.build_extractor(digits, "classifier", cache_dir=cache_dir)
  return calibration.calibrate(extractor, digits, reference_per_class=50, set_size=120)


@pytest.mark.parametrize("family", ["classes", "blur", "collapse"])
def test_digits_classifier_fid_rises_strictly(digits_card, family):
  values = [round(digits_card[name], 2) for name in calibration.families()[family]]
  assert digits_card[f"monotone_{family}"] == 1.0, f"{family}: {values}"


def test_digits_classifier_two_classes_far_worse_than_ten(digits_card):
  assert digits_card["ratio_2_to_10"] > 10.0, digits_card


def test_sets_are_disjoint_sized_and_validated():
  labels = np.repeat(np.arange(10), 40).astype(np.int64)
  # Each image's first pixel holds its index, so membership is visible after shuffling.
  images = np.zeros([400, 4, 4, 1], np.uint8)
  images[:, 0, 0, 0] = np.arange(400) % 256
  images[:, 0, 1, 0] = np.arange(400) // 256
  toy = data.ImageData(images, labels, "toy")
  reference, sets = calibration.build_sets(toy, reference_per_class=10, set_size=20)
  ids = lambda x: set((x[:, 0, 0, 0].astype(int) + 256 * x[:, 0, 1, 0].astype(int)).tolist())
  assert len(reference) == 100 and all(len(s) == 20 for s in sets.values())
  for name in ("classes_10", "classes_5", "classes_2", "classes_1"):
    assert not ids(reference) & ids(sets[name])
    assert len({labels[i] for i in ids(sets[name])}) == int(name.split("_")[1])
  assert len(ids(sets["collapsed_3"])) == 3
  with pytest.raises(ValueError, match="multiple of 10"):
    calibration.build_sets(toy, reference_per_class=10, set_size=25)
  with pytest.raises(ValueError, match="needs 45"):
    calibration.build_sets(toy, reference_per_class=25, set_size=20)


def test_blur_smooths_and_keeps_dtype():
  images = np.zeros([1, 9, 9, 3], np.uint8)
  images[0, 4, 4] = 255
  out = calibration.blur(images, 1.0)
  assert out.dtype == np.uint8 and out.shape == images.shape
  assert 0 < out[0, 4, 4, 0] < 255 and out[0, 4, 5, 0] > 0
  with pytest.raises(ValueError, match="sigma"):
    calibration.blur(images, 0.0)
