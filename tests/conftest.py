"""Shared test helpers: paths, fresh-process runners (entry points, two replicas, exports),
tiny training settings."""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
import sys
import tempfile
import textwrap
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

import pytest

import regan_tf  # noqa: F401  (Keras 2 before TensorFlow, as in the library)

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")

MAIN_GIN = os.path.join(REPO, "gin", "regan_digits.gin")
# The main job (gin/regan_digits.gin) shrunk to seconds: 16x16 digits, narrow models.
TINY_MAIN_JOB = (
    "data.digits.image_size = 16",
    "models.dcgan.g_base_channels = 8",
    "models.dcgan.d_base_channels = 8",
    "train.batch_size = 16",
    "train.z_dim = 16",
)


def run_python(args: Sequence[str], *, env: Optional[Dict[str, str]] = None, timeout: float = 300,
               cwd: str = REPO) -> subprocess.CompletedProcess:
  """Runs ``python ARGS`` in a fresh process; returns the completed process (text output)."""
  full_env = dict(os.environ)
  full_env.update(env or {})
  full_env.setdefault("CUDA_VISIBLE_DEVICES", "")
  return subprocess.run([sys.executable, *args], cwd=cwd, env=full_env, capture_output=True,
                        text=True, timeout=timeout, check=False)


# TensorFlow's C++ start-up notices (oneDNN, CUDA probing), which every command filters.
_TENSORFLOW_STARTUP = ("absl::InitializeLog", "oneDNN custom operations", "cuInit", "cuda drivers")


def tensorflow_startup_lines(stderr: str) -> List[str]:
  """The lines of ``stderr`` that are TensorFlow's start-up notices (none, when a command quiets them)."""
  return [line for line in stderr.splitlines() if any(s in line for s in _TENSORFLOW_STARTUP)]


# ------------------------------------------------------------ two replicas ---

# The trainer's keywords for two replicas on the two logical CPUs of
# run_two_replica_script (its cpu_devices=2 then finds them already made).
TWO_REPLICAS = dict(cpu_devices=2, strategy="mirrored")

_TWO_REPLICA_PRELUDE = f"""
import functools, sys
sys.path.insert(0, {TESTS!r})
import numpy as np
from absl import logging
from regan_tf.compat import keras, tf
from regan_tf import data, ema, models, progressive, pruning, trainer
from conftest import TWO_REPLICAS, tiny_train_settings
# Logical devices can only be made before TensorFlow initializes: hence a fresh process.
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
logging.set_verbosity("info")  # the tests read the strategy's and the trainer's log lines


def two_replica_strategy():
  # ReductionToOneDevice: the default NCCL all-reduce needs GPUs.
  return tf.distribute.MirroredStrategy(
      ["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
"""


def run_two_replica_script(body: str, *, timeout: float = 300) -> subprocess.CompletedProcess:
  """Runs ``body`` in a fresh Python whose TensorFlow has two logical CPU devices.

  The script starts with numpy as np, ``keras``, ``tf``, ``functools``, regan_tf's
  ``data``, ``ema``, ``models``, ``progressive``, ``pruning``, ``trainer``, this
  module's :data:`TWO_REPLICAS` and :func:`tiny_train_settings`, a function
  ``two_replica_strategy()`` (a MirroredStrategy over both devices), and absl
  logging at INFO. ``body`` is dedented. Returns the completed process.
  """
  return run_python(["-c", _TWO_REPLICA_PRELUDE + textwrap.dedent(body)], timeout=timeout)


# ----------------------------------------------------------------- exports ---


@dataclasses.dataclass
class LoadedExport:
  """What a fresh process saw in an exported generator (see :func:`load_export_in_fresh_process`)."""
  images: np.ndarray  # the serving signature's images for the given z
  sampled: np.ndarray  # the export's ``sample(z)``
  variables: Dict[str, np.ndarray]  # ``generator_variables`` by variable name
  imported: List[str]  # which of tf_keras, TFMOT, regan_tf the process imported (should be none)


_LOAD_EXPORT = """
import sys
import numpy as np
import tensorflow as tf
m = tf.saved_model.load(sys.argv[1])
z = tf.constant(np.load(sys.argv[2]))
images = m.signatures["serving_default"](z=z)["images"].numpy()
sampled = m.sample(z).numpy()
variables = {v.name: v.numpy() for v in m.generator_variables}
imported = [n for n in ("tf_keras", "tensorflow_model_optimization", "regan_tf") if n in sys.modules]
np.savez(sys.argv[3], images=images, sampled=sampled, imported=np.array(imported, dtype=str),
         names=np.array(list(variables), dtype=str), **{f"v{i}": v for i, v in enumerate(variables.values())})
"""


def load_export_in_fresh_process(export_dir: str, z: Any, *, timeout: float = 180) -> LoadedExport:
  """Loads the SavedModel at ``export_dir`` in a fresh, plain-TensorFlow process and runs it on ``z``.

  The process runs with ``TF_USE_LEGACY_KERAS=0`` and imports only NumPy and
  TensorFlow, as a user of the export would: the export must not need tf_keras,
  TFMOT or regan_tf. Fails the test (with the process's stderr) if loading fails.
  """
  with tempfile.TemporaryDirectory() as tmp:
    z_path, out_path = os.path.join(tmp, "z.npy"), os.path.join(tmp, "out.npz")
    np.save(z_path, np.asarray(z, np.float32))
    proc = run_python(["-c", _LOAD_EXPORT, str(export_dir), z_path, out_path], timeout=timeout,
                      env={"TF_USE_LEGACY_KERAS": "0"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out_path) as out:
      names = list(out["names"])
      return LoadedExport(images=out["images"], sampled=out["sampled"],
                          variables={n: out[f"v{i}"] for i, n in enumerate(names)},
                          imported=list(out["imported"]))


# -------------------------------------------------------- tiny training run ---


def tiny_train_settings(workdir: Any, **overrides: Any) -> Dict[str, Any]:
  """Flat keywords for ``trainer.train``: a tiny DCGAN on 16x16 digits, 4 steps, no export.

  Every trainer test module builds its runs from this (overriding the model,
  data, loss, ...), so a new trainer keyword needs a default in one place.
  ``overrides`` replace or add keywords.
  """
  from regan_tf import data, models  # pylint: disable=g-import-not-at-top
  settings = dict(workdir=str(workdir),
                  dataset=functools.partial(data.load_digits, image_size=16, channels=1),
                  model=functools.partial(models.dcgan.build, g_base_channels=16, d_base_channels=16),
                  z_dim=16, batch_size=8, n_critic=2, train_steps=4, checkpoint_every=2, log_every=1,
                  image_every=2, seed=3, num_grid_images=4, export=False)
  settings.update(overrides)
  return settings


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


def mock_tfds_with_ids(num_examples: int, *, seed: int = 0):
  """``tfds.testing.mock_data`` whose examples carry TFDS-style ids in a scrambled stored order.

  Example ``j`` of a split is stored at a seeded random position, with id
  ``"<split>_<j>"``, label ``j % 10`` and an image whose first two pixels hold
  ``j // 256`` and ``j % 256`` (so a test can read the index back from the
  image). Features come from the builder (image, label, id).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  def as_dataset(self, split, *args, **kwargs):
    del args, kwargs
    prefix = str(split).split("[")[0]
    stored = np.random.default_rng(seed).permutation(num_examples)
    shape = self.info.features["image"].shape

    def examples():
      for j in stored:
        image = np.zeros(shape, np.uint8)
        image.reshape(-1)[:2] = (j // 256, j % 256)
        yield {"image": image, "label": np.int64(j % 10), "id": f"{prefix}_{j}"}

    signature = {"image": tf.TensorSpec(shape, tf.uint8), "label": tf.TensorSpec([], tf.int64),
                 "id": tf.TensorSpec([], tf.string)}
    return tf.data.Dataset.from_generator(examples, output_signature=signature)

  return tfds.testing.mock_data(num_examples=num_examples, as_dataset_fn=as_dataset)
