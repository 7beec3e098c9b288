"""The paper's CIFAR config as a user with internet runs it, on TFDS mock data (no network).

``gin/sngan_cifar.gin`` with its own data settings (TFDS, download on by default) and its
evaluation (FID against the CIFAR-10 test split, best checkpoint kept), shrunk to seconds; the
Inception extractor is swapped for the offline classifier, the one binding a machine without
the TF-Hub module needs. ``gin/tinyimagenet_sngan64.gin`` (our settings) builds SNGAN at 64x64 and
trains from a folder in Tiny-ImageNet's layout.
"""

import json
import os

import gin
import pytest

from conftest import REPO, mock_tfds_with_ids
from regan_tf import train as train_main


@pytest.fixture
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


@pytest.mark.slow
def test_sngan_cifar_trains_evaluates_on_the_test_split_and_keeps_the_best(tmp_path, cache_dir, clean_gin):
  pytest.importorskip("tensorflow_datasets")
  bindings = [
      "models.sngan.g_channels = 8", "models.sngan.d_channels = 8",
      "train.batch_size = 8", "train.n_critic = 1", "train.train_epochs = None", "train.train_steps = 4",
      "regan.warmup_epochs = None", "regan.g_epochs = None", "regan.warmup = 1", "regan.g = 1",
      "train.eval_every = 2", "train.log_every = 1", "train.image_every = 100", "train.checkpoint_every = 100",
      "evaluation.extractor = 'classifier'", "evaluation.num_samples = 32",
      f"evaluation.cache_dir = '{cache_dir}'",
  ]
  train_main.parse_gin([os.path.join(REPO, "gin", "sngan_cifar.gin")], bindings)
  from regan_tf import configurables  # pylint: disable=g-import-not-at-top
  assert gin.query_parameter("data.tfds.download") is True  # the default route: download when missing
  assert gin.query_parameter("data.tfds.order_by_id") is True  # the reference's (torchvision's) order
  with mock_tfds_with_ids(80):
    result = configurables.train(workdir=str(tmp_path / "run"), config_text=gin.operative_config_str)
  assert result.step == 4
  rows = [json.loads(line) for line in open(tmp_path / "run" / "metrics.jsonl")]
  evals = [r for r in rows if r["kind"] == "eval"]
  assert [r["step"] for r in evals] == [2, 4]
  log = open(tmp_path / "run" / "log.txt").read()
  assert "against cifar10:test:id_order (80 images)" in log
  assert "cifar10:id_order[first 8/80]" in log  # the first 10% of the archive order
  fid = next(k for k in evals[0] if k.startswith("fid_"))
  best = min(evals, key=lambda r: r[fid])
  assert os.path.basename(open(tmp_path / "run" / "best" / "checkpoint").read().split('"')[1]) == \
      f"ckpt-{best['step']}"
  meta = json.load(open(tmp_path / "run" / "export" / "regan_tf_export.json"))
  assert meta["best_fid_step"] == best["step"]


TINYIMAGENET = os.path.join(REPO, "gin", "tinyimagenet_sngan64.gin")


def test_tinyimagenet_file_says_its_settings_are_ours_and_builds_sngan_at_64(clean_gin):
  header = open(TINYIMAGENET).read().split("\n\n")[0]
  assert "OURS, not the reference's" in header
  train_main.parse_gin([TINYIMAGENET], [])
  assert gin.query_parameter("data.image_folder.image_size") == 64
  assert gin.query_parameter("train.subset_rule") == "stratified"  # Tiny-ImageNet's train/ is sorted by class
  build = gin.query_parameter("train.model").scoped_configurable_fn
  gan = build(image_size=64, channels=3, z_dim=gin.query_parameter("train.z_dim"))
  assert gan.generator.output_shape == (None, 64, 64, 3)
  assert gan.discriminator.input_shape == (None, 64, 64, 3)
  gin.clear_config()
  train_main.parse_gin([TINYIMAGENET.replace(".gin", "_dense.gin")], [])
  assert gin.query_parameter("train.pruning") is None


@pytest.mark.slow
def test_tinyimagenet_file_trains_from_a_tiny_image_folder(tmp_path, clean_gin):
  # Tiny-ImageNet's layout (train/<wnid>/images/*.JPEG) at 64x64, 3 classes of 10 images, shrunk to seconds.
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  for wnid in ("n01443537", "n01629819", "n01641577"):
    folder = tmp_path / "train" / wnid / "images"
    folder.mkdir(parents=True)
    for i in range(10):
      Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / f"{wnid}_{i}.JPEG")
  bindings = [f"data.image_folder.path = '{tmp_path / 'train'}'", "train.data_fraction = 0.5",
              "models.sngan.g_channels = 8", "models.sngan.d_channels = 8", "train.batch_size = 4",
              "train.n_critic = 1", "train.train_epochs = 1", "regan.warmup_epochs = 0.25",
              "regan.g_epochs = 0.25", "train.evaluation = None", "train.log_every = 1",
              "train.image_every = 100", "train.checkpoint_every = 100", "train.export = False"]
  train_main.parse_gin([TINYIMAGENET], bindings)
  from regan_tf import configurables  # pylint: disable=g-import-not-at-top
  result = configurables.train(workdir=str(tmp_path / "run"), config_text=gin.operative_config_str)
  # 15 images (5 a class) at batch 4: 4 batches an epoch under the reference's loader counting.
  assert result.step == 4
  log = open(tmp_path / "run" / "log.txt").read()
  assert "15 images of 64x64x3" in log and "one epoch = 4.00 generator steps" in log
