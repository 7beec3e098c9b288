"""The one place that chooses Keras 2 and loads TF-GAN's evaluation code.

Every module of regan_tf imports Keras as ``from regan_tf.compat import keras``
and TensorFlow after this module has run, so that:

* ``TF_USE_LEGACY_KERAS=1`` is set before TensorFlow is first imported. With it,
  ``tf.keras`` resolves to Keras 2 (``tf_keras``) everywhere, which TFMOT and
  TF-Probability (needed by TF-GAN's metrics) require. Without it,
  TF-Probability can fail to import on TF >= 2.16.
* ``tensorflow_gan`` is never imported through its package ``__init__``: that
  file imports ``tf.estimator``, removed from TensorFlow. Its ``python/eval``
  modules are self-contained and work when loaded on their own, which
  :func:`tfgan_eval` does.
"""

from __future__ import annotations

import importlib
import os
import sys
import types

import regan_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS=1 before TensorFlow loads)

import tensorflow as tf  # noqa: E402  (must follow the environment set-up)
import tf_keras as keras  # noqa: E402

__all__ = ["keras", "tf", "tfgan_eval"]

_TFGAN_EVAL = None


def tfgan_eval() -> types.ModuleType:
  """Returns ``tensorflow_gan.python.eval.classifier_metrics``.

  The module is loaded without executing ``tensorflow_gan/__init__.py`` (or
  ``tensorflow_gan/python/__init__.py``): empty package objects pointing at the
  installed directories are put in ``sys.modules`` first, so that only the eval
  modules and their own imports run.

  Raises:
    ImportError: tensorflow-gan is not installed; the message says how to fix it.
  """
  global _TFGAN_EVAL
  if _TFGAN_EVAL is not None:
    return _TFGAN_EVAL
  spec = importlib.util.find_spec("tensorflow_gan") if "tensorflow_gan" not in sys.modules else None
  if "tensorflow_gan" not in sys.modules:
    if spec is None or not spec.submodule_search_locations:
      raise ImportError("tensorflow-gan is not installed: pip install 'tensorflow-gan>=2.1.0' "
                        "(or reinstall regan_tf, which depends on it).")
    root = list(spec.submodule_search_locations)[0]
    for name, path in (("tensorflow_gan", root),
                       ("tensorflow_gan.python", os.path.join(root, "python")),
                       ("tensorflow_gan.python.eval", os.path.join(root, "python", "eval"))):
      package = types.ModuleType(name)
      package.__path__ = [path]  # a namespace-like package: submodules load, __init__ does not run
      sys.modules[name] = package
  _TFGAN_EVAL = importlib.import_module("tensorflow_gan.python.eval.classifier_metrics")
  return _TFGAN_EVAL
