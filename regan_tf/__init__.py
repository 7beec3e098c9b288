"""regan_tf: Re-GAN (CVPR 2023) in TensorFlow with Keras 2 and TFMOT.

Importing the package (any submodule) selects Keras 2 for ``tf.keras`` before
TensorFlow can load: TFMOT and TF-Probability need it. The package itself
imports no TensorFlow, so light modules (``regan_tf.images``) stay light;
``regan_tf.compat`` is where TensorFlow and Keras 2 are actually imported.
"""
import os as _os
import sys as _sys

if "tensorflow" in _sys.modules and _os.environ.get("TF_USE_LEGACY_KERAS") != "1":
  # Too late for tf.keras to become Keras 2 in this process; tf_keras itself
  # (which regan_tf uses) still works, but TF-Probability may not import.
  import warnings as _warnings
  _warnings.warn(
      "regan_tf was imported after TensorFlow without TF_USE_LEGACY_KERAS=1; "
      "import regan_tf first (or export TF_USE_LEGACY_KERAS=1) so that tf.keras "
      "is Keras 2.", RuntimeWarning, stacklevel=2)
_os.environ["TF_USE_LEGACY_KERAS"] = "1"
# Whether the user chose TensorFlow's C++ log level (the CLI quiets it further unless so).
TF_LOG_LEVEL_FROM_USER = "TF_CPP_MIN_LOG_LEVEL" in _os.environ
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
# TensorFlow enables its oneDNN CPU kernels only on some x86 CPUs; on this
# project's AMD EPYC machines they were off by default, and turning them on made
# the SNGAN training cycle ~30% faster (26 s -> 18-20 s) and a 1024x1024 matmul
# 110 -> 143 GFLOP/s. Set TF_ENABLE_ONEDNN_OPTS=0 to opt out.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"

# The Keras-facing API (regan_tf.pruning.keras_api), imported on first use so
# that `import regan_tf` stays free of TensorFlow (PEP 562).
_KERAS_API = ("prune_regrow", "ReganCallback", "strip", "controller_of")
__all__ = list(_KERAS_API) + ["load"]


def __getattr__(name):
  if name in _KERAS_API:
    from regan_tf.pruning import keras_api  # pylint: disable=g-import-not-at-top
    return getattr(keras_api, name)
  raise AttributeError(f"module 'regan_tf' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_KERAS_API))


def load(path, which="export", **kwargs):
  """A sampler for a run folder or an export folder: ``regan_tf.load(run_dir).sample(seeds=range(16))``.

  See :func:`regan_tf.sampling.load` (imported on call: the package itself loads no TensorFlow).
  """
  from regan_tf import sampling  # pylint: disable=g-import-not-at-top
  return sampling.load(path, which=which, **kwargs)
