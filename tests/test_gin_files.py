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
