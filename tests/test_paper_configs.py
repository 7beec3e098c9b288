"""The paper's CIFAR config as a user with internet runs it, on TFDS mock data (no network).

``gin/sngan_cifar.gin`` with its own data settings (TFDS, download on by default) and its
evaluation (FID against the CIFAR-10 test split, best checkpoint kept), shrunk to seconds; the
Inception extractor is swapped for the offline classifier, the one binding a machine without
the TF-Hub module needs.
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
