"""Tests for regan_tf.data.sources: digits, image folders, TFDS."""

import logging
import os
import socket
import tarfile
import time

import numpy as np
from PIL import Image
import pytest

from regan_tf import data

from conftest import mock_tfds_with_ids

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CIFAR_TAR = os.path.join(_REPO, "..", "shared", "data", "cifar10-jpeg-train.tar.gz")


# ----------------------------------------------------------------------------
# ImageData
# ----------------------------------------------------------------------------


def test_image_data_properties():
  d = data.ImageData(np.zeros([5, 4, 4, 3], np.uint8), np.arange(5, dtype=np.int64), "x")
  assert (d.num_examples, d.image_size, d.channels) == (5, 4, 3)


@pytest.mark.parametrize("images,labels,match", [
    (np.zeros([2, 4, 4, 3], np.float32), None, "uint8"),
    (np.zeros([2, 4, 6, 3], np.uint8), None, "square"),
    (np.zeros([2, 4, 4, 4], np.uint8), None, "channels"),
    (np.zeros([2, 4, 4, 1], np.uint8), np.zeros([3], np.int64), "labels"),
    (np.zeros([2, 4, 4, 1], np.uint8), np.zeros([2], np.int32), "int64"),
])
def test_image_data_rejects_bad_arrays(images, labels, match):
  with pytest.raises(ValueError, match=match):
    data.ImageData(images, labels, "x")


# ----------------------------------------------------------------------------
# Digits
# ----------------------------------------------------------------------------


def test_digits_default():
  d = data.load_digits()
  assert d.images.shape == (1797, 32, 32, 1)
  assert d.images.dtype == np.uint8
  assert d.labels.dtype == np.int64
  assert sorted(np.unique(d.labels)) == list(range(10))
  assert d.images.min() == 0 and d.images.max() == 255
  assert d.name == "digits"


def test_digits_native_size_is_scaled_exactly():
  from sklearn.datasets import load_digits as sk_load_digits
  d = data.load_digits(image_size=8)
  expected = np.round(sk_load_digits().images * (255.0 / 16.0)).astype(np.uint8)
  np.testing.assert_array_equal(d.images[..., 0], expected)


def test_digits_three_channels_repeat_gray():
  gray = data.load_digits(image_size=16)
  rgb = data.load_digits(image_size=16, channels=3)
  assert rgb.images.shape == (1797, 16, 16, 3)
  np.testing.assert_array_equal(rgb.images, np.repeat(gray.images, 3, axis=-1))


@pytest.mark.parametrize("kwargs,match", [
    ({"channels": 2}, "channels must be 1"),
    ({"image_size": 4}, "image_size must be an integer >= 8"),
    ({"image_size": 16.0}, "image_size"),
])
def test_digits_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    data.load_digits(**kwargs)


# ----------------------------------------------------------------------------
# Image folders
# ----------------------------------------------------------------------------


def _random_image(rng, size, channels=3):
  shape = (size, size) if channels == 1 else (size, size, channels)
  return rng.integers(0, 256, shape, dtype=np.uint8)


def _write_tree(root):
  """Two classes, mixed formats and case, a nested folder and a stray file.

  Returns {relative path: pixels} for the lossless PNGs.
  """
  rng = np.random.default_rng(0)
  pngs = {}
  for rel, size, mode in [("dogs/b.png", 8, "RGB"), ("dogs/a.PNG", 8, "L"),
                          ("cats/nested/z.png", 8, "RGB"), ("cats/c.png", 8, "RGBA"),
                          ("cats/a_sub/y.png", 8, "RGB")]:
    pixels = _random_image(rng, size, {"RGB": 3, "L": 1, "RGBA": 4}[mode])
    os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
    Image.fromarray(pixels, mode).save(os.path.join(root, rel), format="PNG")
    pngs[rel] = pixels
  Image.fromarray(_random_image(rng, 8), "RGB").save(os.path.join(root, "cats", "d.jpg"), "JPEG")
  Image.fromarray(_random_image(rng, 8), "RGB").save(os.path.join(root, "dogs", "e.JPEG"), "JPEG")
  with open(os.path.join(root, "cats", "notes.txt"), "w") as f:
    f.write("not an image")
  os.makedirs(os.path.join(root, "empty_class"))
  return pngs


def test_image_folder_classes_order_and_pixels(tmp_path):
  pngs = _write_tree(str(tmp_path))
  d = data.load_image_folder(str(tmp_path), image_size=8)
  assert d.images.shape == (7, 8, 8, 3) and d.images.dtype == np.uint8
  # Sorted class folders (cats=0, dogs=1; empty folder ignored), then sorted paths:
  # cats/a_sub/y.png, cats/c.png, cats/d.jpg, cats/nested/z.png,
  # dogs/a.PNG, dogs/b.png, dogs/e.JPEG.
  np.testing.assert_array_equal(d.labels, [0, 0, 0, 0, 1, 1, 1])
  assert d.labels.dtype == np.int64
  np.testing.assert_array_equal(d.images[0], pngs["cats/a_sub/y.png"])
  np.testing.assert_array_equal(d.images[1], pngs["cats/c.png"][..., :3])  # alpha dropped
  np.testing.assert_array_equal(d.images[3], pngs["cats/nested/z.png"])
  np.testing.assert_array_equal(d.images[4], np.repeat(pngs["dogs/a.PNG"][..., None], 3, -1))
  np.testing.assert_array_equal(d.images[5], pngs["dogs/b.png"])
  assert d.name == "image_folder:" + str(tmp_path)
  again = data.load_image_folder(str(tmp_path), image_size=8)
  np.testing.assert_array_equal(again.images, d.images)


def test_image_folder_grayscale_and_resize(tmp_path):
  _write_tree(str(tmp_path))
  d = data.load_image_folder(str(tmp_path), image_size=4, channels=1)
  assert d.images.shape == (7, 4, 4, 1)


def test_image_folder_short_side_resize_center_crop(tmp_path):
  # 8 rows x 24 columns: columns 0-3 are 0, 4-19 are 100, 20-23 are 200.
  pixels = np.zeros([8, 24, 3], np.uint8)
  pixels[:, 4:20] = 100
  pixels[:, 20:] = 200
  Image.fromarray(pixels).save(tmp_path / "wide.png")
  d = data.load_image_folder(str(tmp_path), image_size=4)
  assert d.labels is None
  assert d.images.shape == (1, 4, 4, 3)
  # Short side 8 -> 4 halves the width to 12; the center 4 columns (source
  # columns 8-15, plus the antialiasing filter's reach) all lie in the middle band.
  np.testing.assert_array_equal(d.images[0], np.full([4, 4, 3], 100, np.uint8))


def test_image_folder_corrupt_file_stops_by_default(tmp_path):
  _write_tree(str(tmp_path))
  bad = tmp_path / "cats" / "x.jpg"
  bad.write_bytes(b"\x00garbage, not a jpeg")
  with pytest.raises(ValueError) as err:
    data.load_image_folder(str(tmp_path), image_size=8)
  message = str(err.value)
  assert str(bad) in message
  assert "on_corrupt='skip'" in message and "Remove" in message


def test_image_folder_corrupt_file_skipped(tmp_path, caplog):
  _write_tree(str(tmp_path))
  bad = tmp_path / "dogs" / "aa.jpg"  # sorts first among dogs
  bad.write_bytes(b"garbage")
  good = open(tmp_path / "cats" / "d.jpg", "rb").read()
  (tmp_path / "dogs" / "ab.jpg").write_bytes(good[:len(good) // 2])  # truncated JPEG
  with caplog.at_level(logging.WARNING):
    d = data.load_image_folder(str(tmp_path), image_size=8, on_corrupt="skip")
  assert d.num_examples == 7
  np.testing.assert_array_equal(d.labels, [0, 0, 0, 0, 1, 1, 1])
  assert "Skipped 2 of 9" in caplog.text and str(bad) in caplog.text


def test_image_folder_missing_and_empty(tmp_path):
  missing = tmp_path / "nope"
  with pytest.raises(FileNotFoundError, match="does not exist") as err:
    data.load_image_folder(str(missing))
  assert str(missing) in str(err.value)
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="holds no image files"):
    data.load_image_folder(str(tmp_path / "empty"))


def test_image_folder_mixed_layout_and_bad_arguments(tmp_path):
  _write_tree(str(tmp_path))
  Image.fromarray(np.zeros([8, 8, 3], np.uint8)).save(tmp_path / "top.png")
  with pytest.raises(ValueError, match="mixes 1 image files"):
    data.load_image_folder(str(tmp_path))
  with pytest.raises(ValueError, match="on_corrupt must be one of"):
    data.load_image_folder(str(tmp_path), on_corrupt="ignore")
  with pytest.raises(ValueError, match="channels must be 1"):
    data.load_image_folder(str(tmp_path), channels=4)


@pytest.mark.skipif(not os.path.exists(_CIFAR_TAR),
                    reason=f"CIFAR-10 JPEG tarball not found at {_CIFAR_TAR}")
def test_image_folder_real_cifar_jpegs(tmp_path):
  classes = ("airplane", "cat", "truck")
  wanted = {f"train/{c}/{i:04d}.jpg" for c in classes for i in range(30)}
  with tarfile.open(_CIFAR_TAR, "r|gz") as tar:  # one streaming pass
    for member in tar:
      if member.name in wanted:
        target = tmp_path / member.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(tar.extractfile(member).read())
  assert len(list(tmp_path.glob("train/*/*.jpg"))) == 90

  d = data.load_image_folder(str(tmp_path / "train"))
  assert d.images.shape == (90, 32, 32, 3)
  np.testing.assert_array_equal(d.labels, np.repeat(np.arange(3), 30))
  # 32x32 files are not resized, and JPEGs decode exactly as PIL decodes them.
  for index, rel in [(0, "airplane/0000.jpg"), (37, "cat/0007.jpg"), (89, "truck/0029.jpg")]:
    reference = np.asarray(Image.open(tmp_path / "train" / rel).convert("RGB"))
    np.testing.assert_array_equal(d.images[index], reference, err_msg=rel)


# ----------------------------------------------------------------------------
# TFDS
# ----------------------------------------------------------------------------


def test_tfds_mock_data_shapes():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=6):
    d = data.load_tfds("cifar10")
    assert d.images.shape == (6, 32, 32, 3) and d.images.dtype == np.uint8
    assert d.labels.shape == (6,) and d.labels.dtype == np.int64
    assert d.labels.min() >= 0 and d.labels.max() < 10
    assert d.name == "cifar10"
    small = data.load_tfds("cifar10", split="test", image_size=16, channels=1, label_key=None)
    assert small.images.shape == (6, 16, 16, 1) and small.labels is None
    assert small.name == "cifar10:test"
    mnist = data.load_tfds("mnist", image_size=32, channels=3)
    assert mnist.images.shape == (6, 32, 32, 3)
    with pytest.raises(ValueError, match="label_key='digit'.*features are"):
      data.load_tfds("cifar10", label_key="digit")


def test_tfds_order_by_id_restores_the_archive_order_and_the_first_subset_takes_its_head():
  pytest.importorskip("tensorflow_datasets")
  with mock_tfds_with_ids(300, seed=1):
    stored = data.load_tfds("cifar10")
    ordered = data.load_tfds("cifar10", order_by_id=True)
    test_split = data.load_tfds("cifar10", split="test", order_by_id=True)

  def index(images):  # each mock image holds its archive index in its first two pixels
    flat = images.reshape(len(images), -1).astype(np.int64)
    return flat[:, 0] * 256 + flat[:, 1]

  assert not np.array_equal(index(stored.images), np.arange(300))  # the mock stores them scrambled
  np.testing.assert_array_equal(index(ordered.images), np.arange(300))
  np.testing.assert_array_equal(ordered.labels, np.arange(300) % 10)  # labels move with their images
  assert ordered.name == "cifar10:id_order" and test_split.name == "cifar10:test:id_order"
  first = data.select_subset(ordered, fraction=0.1, rule="first")
  np.testing.assert_array_equal(index(first.images), np.arange(30))


def test_id_order_parses_the_trailing_number_and_rejects_bad_ids():
  np.testing.assert_array_equal(data.sources.id_order([b"train_10", b"train_2", "train_0"]), [2, 1, 0])
  with pytest.raises(ValueError, match="'train_x'.*order_by_id=False"):
    data.sources.id_order([b"train_1", b"train_x"])
  with pytest.raises(ValueError, match="repeated"):
    data.sources.id_order([b"train_1", b"test_1"])


def test_tfds_unknown_name():
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(ValueError, match="name='cifar1O'.*list_builders"):
    data.load_tfds("cifar1O")


def test_tfds_not_prepared_fails_fast(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  start = time.monotonic()
  with pytest.raises(FileNotFoundError) as err:
    data.load_tfds("cifar10", data_dir=str(tmp_path), download=False)
  assert time.monotonic() - start < 5
  message = str(err.value)
  assert "download=True" in message and "data_dir" in message and str(tmp_path) in message
  assert "image_folder" in message


def _online(host="www.cs.toronto.edu") -> bool:
  try:
    socket.create_connection((host, 443), timeout=2).close()
    return True
  except OSError:
    return False


def test_tfds_download_offline_fails_fast(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  if _online():
    pytest.skip("this machine can reach the CIFAR-10 host; the test needs to be offline")
  start = time.monotonic()
  with pytest.raises(ConnectionError) as err:
    data.load_tfds("cifar10", data_dir=str(tmp_path), download=True)
  assert time.monotonic() - start < 10
  message = str(err.value)
  assert "www.cs.toronto.edu" in message and "data_dir" in message and "download=True" in message


def test_tfds_bad_arguments():
  with pytest.raises(ValueError, match="channels must be 1"):
    data.load_tfds("cifar10", channels=2)
  with pytest.raises(ValueError, match="download must be True or False"):
    data.load_tfds("cifar10", download="yes")
