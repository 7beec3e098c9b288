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


@pytest.fixture(autouse=True)
def _seeded():
  """Every test starts from the same Python, NumPy and TensorFlow random state.

  Tests must not pass or fail by the luck of an unseeded draw.
  """
  from regan_tf.compat import keras  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(1234)
