"""Every gin file in gin/ parses and finalizes against the registered configurables."""

from __future__ import annotations

import glob
import os

import gin
import pytest

from regan_tf import configurables  # noqa: F401  (registers the names gin files use)
from regan_tf import train as train_main

from conftest import REPO

GIN_FILES = sorted(glob.glob(os.path.join(REPO, "gin", "*.gin")))


def test_there_are_gin_files():
  assert os.path.join(REPO, "gin", "regan_digits.gin") in GIN_FILES
  assert os.path.join(REPO, "gin", "sngan_cifar.gin") in GIN_FILES


@pytest.mark.parametrize("path", GIN_FILES, ids=os.path.basename)
def test_gin_file_parses(path):
  gin.clear_config()
  try:
    train_main.parse_gin([path], [])
    assert gin.query_parameter("train.dataset") is not None
  finally:
    gin.clear_config()


@pytest.mark.parametrize("path", GIN_FILES, ids=os.path.basename)
def test_gin_file_opens_with_a_header(path):
  header = open(path).read().split("\n\n")[0]
  assert "python -m regan_tf.train" in header
  assert "Hardware" in header


def test_typo_is_a_config_error():
  gin.clear_config()
  try:
    with pytest.raises(train_main.ConfigError, match="did you mean train.batch_size"):
      train_main.parse_gin([GIN_FILES[0]], ["train.bach_size = 3"])
  finally:
    gin.clear_config()


def _query(name, default=None):
  try:
    return gin.query_parameter(name)
  except ValueError:  # not bound in this file
    return default


@pytest.mark.parametrize("path", GIN_FILES, ids=os.path.basename)
def test_regan_engages_within_the_shipped_budget(path):
  """A Re-GAN file's first sparse phase starts before its run ends (in a growing run, counted from the
  Re-GAN stage's first step), so the file does not silently train the dense baseline."""
  gin.clear_config()
  try:
    train_main.parse_gin([path], [])
    if _query("train.pruning") is None:
      return
    warmup, warmup_epochs = _query("regan.warmup"), _query("regan.warmup_epochs")
    train_steps, train_epochs = _query("train.train_steps"), _query("train.train_epochs")
    if warmup_epochs is not None:
      assert train_epochs is not None, "warm-up in epochs needs the run in epochs to compare"
      assert warmup_epochs < train_epochs
      return
    assert warmup is not None and train_steps is not None
    start = 0
    if _query("train.growth") is not None:
      stage_steps = list(_query("growth.stage_steps"))
      size = _query("data.image_folder.image_size", 32)
      assert 4 * 2 ** (len(stage_steps) - 1) == size, "one growth stage per resolution 4 .. image size"
      regan_stage = _query("train.regan_stage")
      start = sum(stage_steps[:len(stage_steps) - 1 if regan_stage is None else regan_stage])
    assert start + warmup < train_steps, (start, warmup, train_steps)
  finally:
    gin.clear_config()
