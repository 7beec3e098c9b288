"""Where metric artifacts live on disk, and how their keys are made.

Trained offline classifiers and reference statistics are cached under one
folder: the ``cache_dir`` argument if given, else ``$REGAN_TF_CACHE``, else
``~/.cache/regan_tf``. Entries are named by a readable slug plus a hash of
every setting that changes their content, so a changed setting makes a new
entry instead of silently reusing a stale one. Writes are atomic (a temporary
file renamed into place), so concurrent or interrupted runs never leave half a
file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any, Mapping, Optional

import numpy as np

__all__ = ["CACHE_ENV", "default_cache_dir", "resolve_cache_dir", "settings_hash",
           "array_fingerprint", "slug", "atomic_path"]

CACHE_ENV = "REGAN_TF_CACHE"


def default_cache_dir() -> str:
  """``$REGAN_TF_CACHE`` if set, else ``~/.cache/regan_tf``."""
  return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "regan_tf")


def resolve_cache_dir(cache_dir: Optional[str]) -> str:
  """Returns the absolute cache folder for ``cache_dir`` (None: the default), created."""
  if cache_dir is not None and (not isinstance(cache_dir, str) or not cache_dir):
    raise ValueError(f"cache_dir must be a folder path or None (for ${CACHE_ENV} or "
                     f"~/.cache/regan_tf), got {cache_dir!r}.")
  path = os.path.abspath(os.path.expanduser(cache_dir or default_cache_dir()))
  os.makedirs(path, exist_ok=True)
  return path


def settings_hash(settings: Mapping[str, Any]) -> str:
  """A short, stable hash of JSON-serializable settings (key order ignored)."""
  text = json.dumps(dict(settings), sort_keys=True, default=str)
  return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def array_fingerprint(*arrays: Optional[np.ndarray]) -> str:
  """sha256 of the arrays' shapes, dtypes and bytes (None hashes as "none")."""
  h = hashlib.sha256()
  for a in arrays:
    if a is None:
      h.update(b"none")
      continue
    a = np.ascontiguousarray(a)
    h.update(f"{a.dtype.str}{a.shape}".encode("utf-8"))
    h.update(a.data)
  return h.hexdigest()[:16]


def slug(text: str, max_len: int = 40) -> str:
  """A file-name-safe short form of ``text`` ("image_folder:/a/b c" -> "image_folder_a_b_c")."""
  s = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()
  return (s[:max_len].rstrip("_")) or "data"


def atomic_path(path: str) -> str:
  """A temporary sibling of ``path`` to write to, then ``os.replace`` onto it."""
  return f"{path}.tmp-{os.getpid()}"
