"""Tests for regan_tf.metrics.inception: offline, it fails fast and says what to do."""

import time

import numpy as np
import pytest

from regan_tf import data
from regan_tf import metrics
from regan_tf import netcheck
from regan_tf.metrics import inception


def test_offline_without_module_fails_fast_with_instructions(tmp_path, monkeypatch):
  # An empty TF-Hub cache and a host that can never resolve: offline, wherever this runs.
  monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "hub"))
  monkeypatch.setattr(inception, "DOWNLOAD_HOSTS", (("tfhub.invalid", 443),))
  start = time.monotonic()
  with pytest.raises(ConnectionError) as info:
    metrics.load_inception()
  assert time.monotonic() - start < 10
  message = str(info.value)
  assert "inception_path" in message
  assert metrics.INCEPTION_TFHUB in message and "tf-hub-format=compressed" in message


def test_offline_on_this_machine_fails_fast(tmp_path, monkeypatch):
  """The real probe (tfhub.dev) on a machine without internet; skipped when online."""
  if not netcheck.unreachable_hosts(inception.DOWNLOAD_HOSTS, 2.0):
    pytest.skip("tfhub.dev is reachable; the offline failure cannot be observed here.")
  monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "hub"))
  start = time.monotonic()
  with pytest.raises(ConnectionError, match="inception_path"):
    metrics.build_extractor(data.ImageData(np.zeros([2, 8, 8, 1], np.uint8), None, "x"),
                            "auto")  # unlabelled: auto picks Inception
  assert time.monotonic() - start < 10


def test_bad_inception_path_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="inception_path=.*saved_model.pb"):
    metrics.load_inception(str(tmp_path / "nowhere"))
