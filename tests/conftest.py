"""Shared test helpers: paths, a subprocess runner for the entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Dict, Optional, Sequence

import pytest

import regan_tf  # noqa: F401  (Keras 2 before TensorFlow, as in the library)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")


def run_python(args: Sequence[str], *, env: Optional[Dict[str, str]] = None, timeout: float = 300,
               cwd: str = REPO) -> subprocess.CompletedProcess:
  """Runs ``python ARGS`` in a fresh process; returns the completed process (text output)."""
  full_env = dict(os.environ)
  full_env.update(env or {})
  full_env.setdefault("CUDA_VISIBLE_DEVICES", "")
  return subprocess.run([sys.executable, *args], cwd=cwd, env=full_env, capture_output=True,
                        text=True, timeout=timeout, check=False)


@pytest.fixture
def repo_root() -> str:
  return REPO


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
  """A regan_tf metrics cache shared by the tests of one session (one xdist worker).

  The offline digits classifier trains once into it; later tests load it.
  """
  path = tmp_path_factory.getbasetemp() / "regan_tf_metrics_cache"
  path.mkdir(exist_ok=True)
  return str(path)


@pytest.fixture(autouse=True)
def _seeded():
  """Every test starts from the same Python, NumPy and TensorFlow random state.

  Tests must not pass or fail by the luck of an unseeded draw.
  """
  from regan_tf.compat import keras  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(1234)


CIFAR_TAR = os.path.join(SHARED_DATA, "cifar10-jpeg-train.tar.gz")
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(scope="session")
def cifar_jpeg_subset(tmp_path_factory) -> str:
  """A folder train/<class>/NNNN.jpg with the first 20 CIFAR-10 JPEGs of each class.

  Read from ../shared/data (the real training split); skips where it is absent.
  """
  import tarfile  # pylint: disable=g-import-not-at-top
  if not os.path.exists(CIFAR_TAR):
    pytest.skip(f"CIFAR-10 JPEG tarball not found at {CIFAR_TAR}")
  root = tmp_path_factory.mktemp("cifar_jpeg")
  wanted = {f"train/{c}/{i:04d}.jpg" for c in CIFAR_CLASSES for i in range(20)}
  with tarfile.open(CIFAR_TAR, "r|gz") as tar:
    for member in tar:
      if member.name in wanted:
        target = root / member.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(tar.extractfile(member).read())
  return str(root / "train")


def make_tiny_generator(z_dim: int = 8, seed: int = 0):
  """z [B, z_dim] -> images [B, 8, 8, 3]: Dense "fc", Reshape, Conv2D "conv", BN "bn", Conv2DTranspose "to_rgb".

  The small Functional generator the pruning and EMA tests wrap; seeded, so two
  calls with the same seed give the same weights.
  """
  from regan_tf.compat import keras  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(seed)
  z = keras.Input((z_dim,), name="z")
  x = keras.layers.Dense(4 * 4 * 6, name="fc")(z)
  x = keras.layers.Reshape((4, 4, 6))(x)
  x = keras.layers.Conv2D(5, 3, padding="same", name="conv")(x)
  x = keras.layers.BatchNormalization(name="bn")(x)
  x = keras.layers.ReLU()(x)
  x = keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same", name="to_rgb")(x)
  return keras.Model(z, keras.layers.Activation("tanh")(x), name="tiny_g")
