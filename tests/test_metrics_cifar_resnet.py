"""Tests for regan_tf.metrics.cifar_resnet and its training recipe (cifar_resnet_training)."""

import json
import os

import numpy as np
import pytest

from regan_tf import data
from regan_tf import metrics
from regan_tf.metrics import cifar_resnet
from regan_tf.metrics import cifar_resnet_training as training

TINY = (4, 4, 8, 8)


def test_model_outputs_features_and_logits():
  model = cifar_resnet.build_model(widths=TINY, num_classes=3)
  features, logits = model(np.zeros([2, 32, 32, 3], np.float32), training=False)
  assert features.shape == (2, 8) and logits.shape == (2, 3)
  assert features.dtype.name == logits.dtype.name == "float32"
  full = cifar_resnet.build_model()
  assert full.output_shape == [(None, 128), (None, 10)]
  assert full.count_params() == 414074


def test_bfloat16_trunk_still_returns_float32():
  model = cifar_resnet.build_model(widths=TINY, dtype_policy="mixed_bfloat16")
  features, logits = model(np.zeros([1, 32, 32, 3], np.float32))
  assert features.dtype.name == logits.dtype.name == "float32"


def test_weights_round_trip_exactly(tmp_path):
  model = cifar_resnet.build_model(widths=TINY, num_classes=10)
  images = np.random.default_rng(0).uniform(-1, 1, [5, 32, 32, 3]).astype(np.float32)
  path = str(tmp_path / "w.npz")
  sha = cifar_resnet.save_weights(model, path, dict(widths=list(TINY), num_classes=10,
                                                    class_names=list("abcdefghij")))
  extractor = cifar_resnet.load_cifar_resnet(path)
  assert extractor.sha256 == sha == cifar_resnet.weights_digest(path)
  assert extractor.cache_id == f"cifar10_resnet-v{cifar_resnet.ARCH_VERSION}-{sha[:16]}"
  assert extractor.labelled and extractor.class_names == list("abcdefghij")
  features, logits = extractor.extract(images)
  want_features, want_logits = model(images, training=False)
  np.testing.assert_array_equal(features, want_features.numpy())
  np.testing.assert_array_equal(logits, want_logits.numpy())


def test_load_errors_name_the_fix(tmp_path):
  with pytest.raises(FileNotFoundError, match="train_cifar_classifier.py"):
    cifar_resnet.load_cifar_resnet(str(tmp_path / "missing.npz"))
  path = str(tmp_path / "old.npz")
  np.savez(path, info=json.dumps(dict(arch_version=cifar_resnet.ARCH_VERSION + 1)))
  with pytest.raises(ValueError, match="architecture version"):
    cifar_resnet.load_cifar_resnet(path)


def test_committed_weights_match_their_hash_and_log():
  """The shared extractor: the file CI and every machine load, its hash and its training log."""
  path = cifar_resnet.DEFAULT_WEIGHTS_PATH
  with open(path + ".sha256") as f:
    recorded = f.read().split()[0]
  with open(path + ".log.json") as f:
    log = json.load(f)
  extractor = cifar_resnet.load_cifar_resnet()
  assert extractor.sha256 == recorded == log["sha256"]
  assert extractor.info["validation_accuracy"] >= 0.85
  assert log["validation_accuracy_reloaded"] >= 0.85
  assert log["validation_images"] == 5000 and log["train_images"] == 45000
  assert extractor.class_names[0] == "airplane" and extractor.class_names[9] == "truck"
  assert os.path.getsize(path) < 3 * 2 ** 20


def test_split_is_stratified_disjoint_and_seeded():
  labels = np.repeat(np.arange(4), 30).astype(np.int64)
  train, val = training.split_train_validation(labels, 5, seed=3)
  assert np.bincount(labels[val]).tolist() == [5, 5, 5, 5]
  assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 120
  np.testing.assert_array_equal(val, training.split_train_validation(labels, 5, seed=3)[1])
  assert not np.array_equal(val, training.split_train_validation(labels, 5, seed=4)[1])


def test_augment_epoch_crops_and_flips_the_padded_image():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, [64, 8, 8, 3]).astype(np.uint8)
  out = training.augment_epoch(images, np.random.default_rng(1), pad=2)
  assert out.shape == images.shape and out.dtype == np.uint8
  padded = np.pad(images, [(0, 0), (2, 2), (2, 2), (0, 0)], mode="reflect")
  flips = 0
  for i in range(len(images)):
    windows = [padded[i, y:y + 8, x:x + 8] for y in range(5) for x in range(5)]
    plain = any(np.array_equal(out[i], w) for w in windows)
    flipped = any(np.array_equal(out[i], w[:, ::-1]) for w in windows)
    assert plain or flipped, f"image {i} is not a (flipped) crop of its padded source"
    flips += int(flipped and not plain)
  assert 16 < flips < 48
  np.testing.assert_array_equal(out, training.augment_epoch(images, np.random.default_rng(1), pad=2))


@pytest.mark.parametrize("kwargs,match", [
    (dict(epochs=0), "epochs"),
    (dict(warmup_fraction=1.0), "warmup_fraction"),
    (dict(label_smoothing=1.0), "label_smoothing"),
    (dict(peak_lr=0.0), "peak_lr"),
])
def test_config_errors_are_immediate(kwargs, match):
  with pytest.raises(ValueError, match=match):
    training.TrainConfig(**kwargs)


def test_training_learns_a_separable_task():
  """Two classes told apart by brightness: a few epochs must get the held-out split right."""
  rng = np.random.default_rng(0)
  labels = np.repeat([0, 1], 96).astype(np.int64)
  base = np.where(labels[:, None, None, None] == 1, 170, 70)
  images = np.clip(base + rng.normal(0, 30, [192, 32, 32, 3]), 0, 255).astype(np.uint8)
  config = training.TrainConfig(epochs=3, batch_size=32, validation_per_class=16, widths=TINY)
  lines = []
  model, info = training.train_classifier(data.ImageData(images, labels, "toy"), config,
                                          log=lines.append)
  assert len(lines) == 3 and info["train_images"] == 160 and info["validation_images"] == 32
  assert info["validation_accuracy"] >= 0.9
  assert info["history"][-1]["lr_end"] == 0.0  # the one-cycle schedule ends at zero


def test_training_rejects_unlabelled_or_wrong_size_data():
  images = np.zeros([40, 32, 32, 3], np.uint8)
  with pytest.raises(ValueError, match="no labels"):
    training.train_classifier(data.ImageData(images, None, "x"), training.TrainConfig())
  small = data.ImageData(np.zeros([40, 16, 16, 3], np.uint8), np.zeros([40], np.int64), "x")
  with pytest.raises(ValueError, match="image_size=32"):
    training.train_classifier(small, training.TrainConfig())


def test_evaluator_wiring_picks_and_names_the_resnet(tmp_path):
  rng = np.random.default_rng(0)
  cifar_like = data.ImageData(rng.integers(0, 256, [40, 32, 32, 3]).astype(np.uint8),
                              np.arange(40, dtype=np.int64) % 10, "image_folder:/d/cifar10/train")
  assert isinstance(metrics.build_extractor(cifar_like, "auto"), metrics.CifarResNetExtractor)
  with pytest.raises(ValueError, match="cifar10_resnet"):
    metrics.build_extractor(cifar_like, "resnet")
  evaluator = metrics.build_evaluator(cifar_like, z_dim=4, extractor="cifar10_resnet",
                                      num_samples=20, batch_size=10, cache_dir=str(tmp_path))
  assert evaluator.metric_names == (
      "fid_cifar10_resnet", "is_cifar10_resnet", "kid_cifar10_resnet",
      "class_entropy_cifar10_resnet", "top_class_share_cifar10_resnet")
  one_image = np.repeat(cifar_like.images[:1], 20, axis=0)
  scores = evaluator.score_images(one_image)
  assert scores["top_class_share_cifar10_resnet"] == 1.0
  assert scores["class_entropy_cifar10_resnet"] == 0.0


@pytest.mark.parametrize("gin_name", ["cifar_jpeg.gin", "cifar_jpeg_dense.gin", "cifar_jpeg_diffaug.gin",
                                      "cifar_jpeg_apa.gin"])
def test_cifar_jpeg_gin_files_measure_with_the_resnet(gin_name):
  import gin  # pylint: disable=g-import-not-at-top
  from regan_tf import train  # pylint: disable=g-import-not-at-top
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  gin.clear_config()
  try:
    train.parse_gin([os.path.join(repo, "gin", gin_name)], [])
    assert gin.query_parameter("evaluation.extractor") == "cifar10_resnet"
  finally:
    gin.clear_config()
