"""Sampling from a trained run or its export in Python.

    import regan_tf
    g = regan_tf.load("runs/digits")                 # the run's export/ (or an export folder)
    images = g.sample(seeds=range(16))               # float32 [16, H, W, C] in [-1, 1]
    images = g.sample(seeds=[3, 7], trunc=0.7)       # the truncation trick
    frames = g.interpolate(seeds=[0, 1, 2], steps=8) # [2, 10, H, W, C]: a row per pair of seeds
    best = regan_tf.load("runs/digits", which="best")  # the best-FID checkpoint's export

Seeds and latents
-----------------
One latent per seed, so image i depends only on seed i (not on the other seeds
or on how many are drawn): seed ``s`` maps to
``tf.random.stateless_normal([1, z_dim], seed=[s, 0])``. That is also the first
latent of ``regan-sample --seed=s`` (which draws its ``--num`` latents as one
stream from one seed), so ``--seeds=s`` and ``--seed=s`` start with the same
image.

Truncation
----------
``trunc`` (psi) pulls latents towards the centre of the latent distribution:
1 changes nothing, 0 puts every latent at the centre (one image, whatever the
seeds), values in between trade variety for typical images. StyleGAN2 truncates
in w space, ``w' = w_avg + psi * (w - w_avg)``, around the average w it
tracked while training; every other architecture truncates z by scaling it,
``z' = psi * z`` (z ~ N(0, I) has mean 0, so this is the same formula in z
space; BigGAN's resampling variant is not used). The export does the
arithmetic (its ``truncated`` signature, see :mod:`regan_tf.export`);
:attr:`Sampler.truncation` says which space.

Interpolation
-------------
Between consecutive seeds, spherical linear interpolation (slerp) of their z
latents, the usual path for Gaussian latents (a straight line would pass
through low-norm latents the generator rarely saw); truncation applies to
every frame.

This module needs TensorFlow only to load and run the SavedModel; the checks
of paths and seed lists (:func:`resolve_export`, :func:`parse_seeds`) import
nothing heavy, so a command can report bad input before TensorFlow loads.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Dict, Iterable, List, Optional

import numpy as np

__all__ = ["Sampler", "WHICH", "load", "parse_seeds", "resolve_export", "seed_latents", "slerp"]

WHICH = ("export", "best")
_SAVED_MODEL = "saved_model.pb"
_MAX_SEED = 2**63 - 1


# ------------------------------------------------------------ pure helpers ---


def parse_seeds(text: str) -> List[int]:
  """Seeds from ``"0-63"``, ``"1,5,9"`` or a mix (``"0-3,10,20-22"``), in the order given.

  Ranges include both ends. Raises ValueError (one line naming the fix) on
  anything else: empty parts, negative seeds, a range whose end is below its
  start.
  """
  if not isinstance(text, str) or not text.strip():
    raise ValueError(f"seeds={text!r} is empty; pass seeds like 0-63 or 1,5,9 (ranges include both ends).")
  seeds: List[int] = []
  for part in text.split(","):
    part = part.strip()
    match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
    if not match:
      raise ValueError(f"seeds={text!r}: {part!r} is not a seed or a range; pass non-negative integers and "
                       "ranges like 0-63 or 1,5,9.")
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) is not None else first
    if last < first:
      raise ValueError(f"seeds={text!r}: the range {part!r} ends before it starts; write it as {last}-{first}.")
    if last > _MAX_SEED:
      raise ValueError(f"seeds={text!r}: {last} is above the largest seed {_MAX_SEED}.")
    if last - first >= 1_000_000:
      raise ValueError(f"seeds={text!r}: the range {part!r} has {last - first + 1} seeds; pass at most "
                       "1000000 at once.")
    seeds.extend(range(first, last + 1))
  return seeds


def _check_seeds(seeds: Iterable[int]) -> List[int]:
  if isinstance(seeds, str):
    return parse_seeds(seeds)
  try:
    given = list(seeds)
  except TypeError:
    raise ValueError(f"seeds={seeds!r} must be integers (e.g. range(16)) or a string like '0-63'.") from None
  for s in given:
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= s <= _MAX_SEED:
      raise ValueError(f"seeds contain {s!r}; seeds are integers in [0, {_MAX_SEED}] (e.g. range(16)).")
  if not given:
    raise ValueError("seeds is empty; pass at least one seed, e.g. seeds=range(16).")
  return [int(s) for s in given]


def _check_trunc(trunc: Any) -> float:
  if isinstance(trunc, bool) or not isinstance(trunc, (int, float)) or not math.isfinite(trunc):
    raise ValueError(f"trunc={trunc!r} must be a finite number; 1 is no truncation, 0.7 is common, 0 gives the "
                     "average image.")
  return float(trunc)


def seed_latents(seeds: Iterable[int], z_dim: int) -> np.ndarray:
  """z float32 [len(seeds), z_dim]: row i is seed i's latent (see the module docstring)."""
  from regan_tf.compat import tf  # pylint: disable=g-import-not-at-top
  seeds = _check_seeds(seeds)
  return np.stack([tf.random.stateless_normal([1, z_dim], seed=[s, 0])[0].numpy() for s in seeds])


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
  """Spherical interpolation from ``a`` [D] to ``b`` [D] at fractions ``t`` [T] -> [T, D].

  Falls back to linear interpolation when ``a`` and ``b`` are (nearly)
  parallel, where the spherical formula divides by ~0.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  t = np.asarray(t, np.float64)[:, None]
  cos = np.dot(a, b) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12)
  omega = math.acos(min(1.0, max(-1.0, cos)))
  if math.sin(omega) < 1e-6:
    return ((1 - t) * a + t * b).astype(np.float32)
  return ((np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / math.sin(omega)).astype(np.float32)


def _is_export(path: str) -> bool:
  return os.path.isfile(os.path.join(path, _SAVED_MODEL))


def resolve_export(path: str, which: str = "export") -> str:
  """The export folder ``path`` names: ``path`` itself, or a run folder's export.

  Args:
    path: an export folder (``saved_model.pb`` inside) or a run folder (the
      ``--workdir`` of training).
    which: for a run folder, ``"export"``: ``RUN/export``, what training
      exported at its end (the last generator, or the best one with
      ``train.export_best``); ``"best"``: ``RUN/best/export``, the best-FID
      checkpoint's generator (runs with evaluation).

  Raises:
    ValueError: a one-line message naming the fix (nothing found, a run that
      has not exported yet, ``which`` unknown).
  """
  if which not in WHICH:
    raise ValueError(f"which={which!r} is not one of {WHICH}; pass 'export' (the run's export) or 'best' "
                     "(the best-FID checkpoint's export).")
  if not path or not os.path.isdir(path):
    raise ValueError(f"path={path!r} is not a directory; pass a run folder (the training --workdir) or an "
                     "export folder (RUN/export).")
  if _is_export(path):
    if which == "best":
      raise ValueError(f"path={path!r} is an export folder, so which='best' has nothing to choose; pass the run "
                       "folder with which='best', or drop which.")
    return path
  target = os.path.join(path, "export") if which == "export" else os.path.join(path, "best", "export")
  if _is_export(target):
    return target
  is_run = any(os.path.exists(os.path.join(path, name)) for name in ("checkpoints", "operative_config.gin", "best"))
  if not is_run:
    raise ValueError(f"path={path!r} is neither an export folder (no {_SAVED_MODEL}) nor a run folder (no "
                     "checkpoints/); pass the training --workdir or its export/ folder.")
  if which == "export":
    raise ValueError(f"run folder {path!r} has no export yet (training writes RUN/export when it finishes, with "
                     "train.export = True); rerun the training command: a finished run only exports.")
  if not os.path.isdir(os.path.join(path, "best")):
    raise ValueError(f"run folder {path!r} has no best/ (it is kept only when the run evaluates: set "
                     "train.eval_every); load its export with which='export'.")
  raise ValueError(f"run folder {path!r} has a best checkpoint but no best/export (the run has not finished, "
                   "or finished before best exports existed); rerun the training command to write it.")


# ------------------------------------------------------------------ sampler ---


class Sampler:
  """Images for seeds or latents from an exported generator (see the module docstring).

  Made by :func:`load`. Methods return NumPy float32 images [N, H, W, C] in
  [-1, 1]; they run the export's signatures in batches of ``batch_size``.

  Attributes:
    path: the export folder.
    module: the loaded SavedModel (``signatures``, ``sample``,
      ``sample_truncated``).
    metadata: ``regan_tf_export.json`` (z_dim, image size, step, sparsity, ...).
    z_dim: the latent size.
    truncation: ``"w"`` (StyleGAN2), ``"z"`` (the other architectures), or
      None for an export written before truncation existed.
  """

  def __init__(self, module: Any, path: str, metadata: Dict[str, Any], *, batch_size: int = 64):
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f"batch_size={batch_size!r} must be an integer >= 1.")
    self.module, self.path, self.metadata, self.batch_size = module, path, metadata, batch_size
    self._serve = module.signatures["serving_default"]
    self._truncated = module.signatures.get("truncated")
    self.z_dim = int(self._serve.structured_input_signature[1]["z"].shape[-1])
    self.truncation: Optional[str] = metadata.get("truncation") if self._truncated is not None else None

  def __repr__(self) -> str:
    return (f"Sampler({self.path!r}, z_dim={self.z_dim}, step={self.metadata.get('step')}, "
            f"truncation={self.truncation!r})")

  def latents(self, seeds: Iterable[int]) -> np.ndarray:
    """z float32 [len(seeds), z_dim], one latent per seed."""
    return seed_latents(seeds, self.z_dim)

  def generate(self, z: Any, trunc: float = 1.0) -> np.ndarray:
    """Images for latents ``z`` [N, z_dim]; ``trunc`` < 1 truncates (see the module docstring)."""
    from regan_tf.compat import tf  # pylint: disable=g-import-not-at-top
    trunc = _check_trunc(trunc)
    z = np.asarray(z, np.float32)
    if z.ndim != 2 or z.shape[1] != self.z_dim:
      raise ValueError(f"z has shape {z.shape}; this generator takes [N, {self.z_dim}].")
    if trunc != 1.0 and self._truncated is None:
      raise ValueError(f"the export {self.path!r} predates truncation (no 'truncated' signature); export it "
                       "again by rerunning its training command, or pass trunc=1.")
    out = []
    for start in range(0, len(z), self.batch_size):
      chunk = tf.constant(z[start:start + self.batch_size])
      if trunc == 1.0:
        out.append(self._serve(z=chunk)["images"].numpy())
      else:
        out.append(self._truncated(z=chunk, psi=tf.constant(trunc, tf.float32))["images"].numpy())
    return np.concatenate(out, axis=0)

  def sample(self, seeds: Iterable[int], trunc: float = 1.0) -> np.ndarray:
    """Images [len(seeds), H, W, C] for ``seeds`` (ints, ``range(16)`` or ``"0-63"``); image i is seed i's."""
    return self.generate(self.latents(seeds), trunc=trunc)

  def interpolate(self, seeds: Iterable[int], steps: int = 8, trunc: float = 1.0) -> np.ndarray:
    """Frames [len(seeds) - 1, steps + 2, H, W, C]: row k goes from seed k's image to seed k+1's.

    Each row has both end images and ``steps`` images between them (slerp of
    the z latents, then ``trunc``).
    """
    seeds = _check_seeds(seeds)
    if len(seeds) < 2:
      raise ValueError(f"interpolation needs at least two seeds; got {seeds}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
      raise ValueError(f"steps={steps!r} must be an integer >= 1 (images between two seeds).")
    z = self.latents(seeds)
    t = np.linspace(0.0, 1.0, steps + 2)
    path = np.concatenate([slerp(z[k], z[k + 1], t) for k in range(len(seeds) - 1)], axis=0)
    images = self.generate(path, trunc=trunc)
    return images.reshape((len(seeds) - 1, steps + 2) + images.shape[1:])


def load(path: str, which: str = "export", *, batch_size: int = 64) -> Sampler:
  """A :class:`Sampler` for an export folder or a run folder (see :func:`resolve_export`).

  Args:
    path: a run folder (training's --workdir) or an export folder.
    which: for a run folder, ``"export"`` (``RUN/export``) or ``"best"``
      (``RUN/best/export``, the best-FID checkpoint).
    batch_size: latents per call of the SavedModel.

  Raises:
    ValueError: nothing loadable at ``path``; the message names the fix.
  """
  from regan_tf import export as export_lib  # pylint: disable=g-import-not-at-top
  export_dir = resolve_export(path, which)
  module = export_lib.load_export(export_dir)
  return Sampler(module, export_dir, export_lib.read_metadata(export_dir), batch_size=batch_size)
