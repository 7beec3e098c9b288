"""Image grids and PNG files from generator outputs (NumPy and Pillow only).

Kept free of TensorFlow and Keras so that tools which only sample an exported
SavedModel do not load Keras 2 or TFMOT.
"""

from __future__ import annotations

import math
import os

import numpy as np


def to_uint8(images: np.ndarray) -> np.ndarray:
  """Maps images in [-1, 1] to uint8 [0, 255]; values outside are clipped.

  Args:
    images: float array [..., H, W, C] in [-1, 1].

  Returns:
    uint8 array of the same shape.
  """
  images = np.asarray(images, dtype=np.float32)
  return np.clip(np.rint((images + 1.0) * 127.5), 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, *, columns: int | None = None, padding: int = 2) -> np.ndarray:
  """Tiles a batch of images into one picture.

  Args:
    images: float [N, H, W, C] in [-1, 1] (C = 1 or 3) or uint8 [N, H, W, C].
    columns: images per row; default ceil(sqrt(N)).
    padding: pixels of black between tiles.

  Returns:
    uint8 [rows * (H + padding) + padding, columns * (W + padding) + padding, C].
  """
  images = np.asarray(images)
  if images.ndim != 4:
    raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}")
  if images.dtype != np.uint8:
    images = to_uint8(images)
  n, h, w, c = images.shape
  columns = columns or int(math.ceil(math.sqrt(n)))
  rows = int(math.ceil(n / columns))
  grid = np.zeros((rows * (h + padding) + padding, columns * (w + padding) + padding, c), np.uint8)
  for i in range(n):
    r, col = divmod(i, columns)
    y, x = padding + r * (h + padding), padding + col * (w + padding)
    grid[y:y + h, x:x + w] = images[i]
  return grid


def write_png(path: str, image: np.ndarray) -> None:
  """Writes a uint8 [H, W, C] (C = 1 or 3) image as PNG, atomically."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}.png"
  Image.fromarray(image).save(tmp)
  os.replace(tmp, path)
