"""Exports a generator as a self-contained SavedModel for sampling.

The SavedModel holds the generator's variables and one traced function; it
does not hold the Keras model object, so ``tf.saved_model.load`` in a process
that never imports tf_keras or TFMOT can sample from it:

    sampler = tf.saved_model.load(path)
    images = sampler.signatures["serving_default"](z=tf.random.normal([16, z_dim]))["images"]
    # or: images = sampler.sample(z)   -> float32 [N, H, W, C] in [-1, 1]

A second signature, ``truncated``, takes ``z`` and a scalar ``psi`` and applies
the truncation trick (psi = 1: none, 0: every latent at the centre):

    images = sampler.signatures["truncated"](z=z, psi=tf.constant(0.7))["images"]
    # or: images = sampler.sample_truncated(z, 0.7)

For StyleGAN2 (a generator with nested ``mapping`` / ``synthesis`` models) it
truncates in w space, ``w' = w_avg + psi * (w - w_avg)`` on every layer's
latent, around the average w the generator tracked while training (exported as
the variable ``w_avg``; a generator built without tracking gets the mean of w
over 4096 sampled z instead). Other architectures truncate z by scaling it
towards its mean 0, ``z' = psi * z`` (the same formula with the mean of z). The
metadata's ``truncation`` says which (``"w"`` or ``"z"``).

``regan_tf_export.json`` beside ``saved_model.pb`` records z_dim, image size,
channels, the training step and, for Re-GAN, the sparsity of each pruned
tensor. The write is atomic: the SavedModel is written to a temporary
directory beside the target and renamed into place, so an interrupted export
leaves either the previous export or none, never half a directory.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any, Dict, Optional

from regan_tf.compat import keras, tf
from regan_tf.models import stylegan2 as stylegan2_lib

METADATA_FILE = "regan_tf_export.json"


def truncation_space(generator: keras.Model) -> str:
  """``"w"`` for a StyleGAN2 generator (nested mapping and synthesis), else ``"z"``."""
  try:
    stylegan2_lib.mapping_and_synthesis(generator)
  except ValueError:
    return "z"
  return "w"


class _Sampler(tf.Module):
  """z -> images, holding only the generator's variables and traced call."""

  def __init__(self, generator: keras.Model, z_dim: int):
    super().__init__(name="regan_tf_generator")
    # A plain list of variables (not the Keras model) keeps Keras objects out
    # of the SavedModel's object graph.
    self.generator_variables = list(generator.variables)
    self.z_dim = tf.constant(z_dim, tf.int32)

    @tf.function(input_signature=[tf.TensorSpec([None, z_dim], tf.float32, name="z")])
    def sample(z):
      return tf.cast(generator(z, training=False), tf.float32)

    self.sample = sample
    self.truncation = truncation_space(generator)
    if self.truncation == "w":
      mapping, synthesis = stylegan2_lib.mapping_and_synthesis(generator)
      num_ws = int(synthesis.input_shape[1])
      w_avg = stylegan2_lib.tracked_w_avg(generator)
      if w_avg is None:  # built with w_avg_beta=None: rosinality's sampled mean instead
        w_avg = tf.Variable(stylegan2_lib.average_w(mapping, z_dim=z_dim), trainable=False, name="w_avg")
      self.w_avg = w_avg

      def truncated(z, psi):
        w = tf.cast(mapping(z, training=False), tf.float32)
        ws = stylegan2_lib.broadcast_w(stylegan2_lib.truncate(w, w_avg, psi), num_ws)
        return tf.cast(synthesis(ws, training=False), tf.float32)
    else:
      def truncated(z, psi):
        return tf.cast(generator(psi * z, training=False), tf.float32)

    truncated_signature = [tf.TensorSpec([None, z_dim], tf.float32, name="z"),
                           tf.TensorSpec([], tf.float32, name="psi")]
    self.sample_truncated = tf.function(truncated, input_signature=truncated_signature)

    @tf.function(input_signature=[tf.TensorSpec([None, z_dim], tf.float32, name="z")])
    def serve(z):
      return {"images": sample(z)}

    self.serve = serve

    @tf.function(input_signature=truncated_signature)
    def serve_truncated(z, psi):
      return {"images": self.sample_truncated(z, psi)}

    self.serve_truncated = serve_truncated


def export_generator(generator: keras.Model, export_dir: str, *, z_dim: int,
                     metadata: Optional[Dict[str, Any]] = None) -> str:
  """Writes ``generator`` as a SavedModel at ``export_dir`` (atomically).

  Args:
    generator: maps z float32 [B, z_dim] to images [B, H, W, C] in [-1, 1].
      Pruning wrappers must already be stripped (masks applied).
    export_dir: target directory; an existing export there is replaced.
    z_dim: latent size (the serving signature's input width).
    metadata: JSON-serializable facts to store beside the model.

  Returns:
    ``export_dir``.
  """
  export_dir = os.path.abspath(export_dir)
  parent = os.path.dirname(export_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = f"{export_dir}.tmp-{os.getpid()}"
  old = f"{export_dir}.old-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  try:
    sampler = _Sampler(generator, z_dim)
    tf.saved_model.save(sampler, tmp, signatures={"serving_default": sampler.serve,
                                                  "truncated": sampler.serve_truncated})
    meta = dict(metadata or {})
    meta.setdefault("z_dim", z_dim)
    images = "float32 [-1, 1]"
    meta["signature"] = {"inputs": {"z": [None, z_dim]}, "outputs": {"images": images}}
    meta["signatures"] = {
        "serving_default": meta["signature"],
        "truncated": {"inputs": {"z": [None, z_dim], "psi": []}, "outputs": {"images": images}}}
    meta["truncation"] = sampler.truncation
    with open(os.path.join(tmp, METADATA_FILE), "w") as f:
      json.dump(meta, f, indent=2, sort_keys=True)
    if os.path.exists(export_dir):
      os.replace(export_dir, old)
    os.replace(tmp, export_dir)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
  return export_dir


def read_metadata(export_dir: str) -> Dict[str, Any]:
  """Returns the metadata stored with an export (empty if there is none)."""
  path = os.path.join(export_dir, METADATA_FILE)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)


def load_export(export_dir: str) -> Any:
  """Loads an export written by :func:`export_generator`; the result has ``sample(z)`` and ``signatures``.

  Raises:
    ValueError: ``export_dir`` holds no loadable SavedModel (missing, partly
      written or corrupt); the message names the fix.
  """
  if not os.path.exists(os.path.join(export_dir, "saved_model.pb")):
    raise ValueError(f"export_dir={export_dir!r} is not a SavedModel directory (no saved_model.pb); pass a "
                     "run's export folder (RUN/export) or RUN/best's export.")
  try:
    return tf.saved_model.load(export_dir)
  except (tf.errors.OpError, OSError, ValueError) as e:
    raise ValueError(f"export_dir={export_dir!r} does not load ({type(e).__name__}: "
                     f"{str(e).splitlines()[0][:200]}); it is damaged: export it again by rerunning the "
                     "training command (a finished run only exports), or pass another folder.") from e
  except Exception as e:  # protobuf's DecodeError is not an OSError or ValueError
    if type(e).__name__ != "DecodeError":
      raise
    raise ValueError(f"export_dir={export_dir!r} does not load (its saved_model.pb is corrupt); export it "
                     "again by rerunning the training command, or pass another folder.") from e
