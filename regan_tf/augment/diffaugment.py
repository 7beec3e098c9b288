"""DiffAugment: differentiable augmentation of both real and generated images.

Zhao, Liu, Lin, Zhu and Han, "Differentiable Augmentation for Data-Efficient
GAN Training", NeurIPS 2020. The discriminator only ever sees augmented images,
real and fake alike (in D's step and in G's step), and every augmentation is
differentiable in the image, so G's gradient flows back through it.

The policy is a comma-separated list of transform groups, applied in order
(the paper's CIFAR setting is ``'color,translation,cutout'``):

* ``color``: random brightness (add ``U(-0.5, 0.5)``), saturation (scale each
  pixel's deviation from its channel mean by ``U(0, 2)``; the identity on one
  channel), contrast (scale the deviation from the image mean by
  ``U(0.5, 1.5)``), in that order, one draw per image each.
* ``translation``: shift by an integer in ``[-s, s]`` along height and width
  independently, ``s = round(size / 8)``; vacated pixels are 0 (mid-gray in
  [-1, 1]).
* ``cutout``: zero a square of ``round(size / 2)`` pixels whose centre is
  uniform over the image; the square is clipped at the border, so it can
  cover less than ``(size / 2)^2`` pixels.

These are the semantics of the authors' reference (``DiffAugment_tf.py``).
As there, ``color`` can push values outside ``[-1, 1]``; D sees them as they
are (nothing is clipped).

Differences from the reference, all for tf.distribute and XLA: randomness is
stateless, drawn from an explicit ``seed`` (a ``[2]`` integer tensor), so the
same ``(images, policy, seed)`` always gives the same result, with or without
XLA (see ``canonical_seed``), and a resumed run repeats the augmentations it
would have drawn; translation is a batched gather with a validity mask (instead
of pad + ``gather_nd``), and cutout a multiplication by a mask built from
coordinate comparisons (instead of ``scatter_nd``). No shape depends on the
data, so the functions compile under ``tf.function(jit_compile=True)``.

Written by hand: no maintained TensorFlow library provides DiffAugment.
"""

from __future__ import annotations

from typing import Callable, Dict, Sequence, Tuple, Union

from regan_tf.compat import tf

__all__ = ["POLICIES", "diff_augment", "parse_policy"]

# Translation shift and cutout size, as fractions of the image size (reference values).
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5

Policy = Union[str, Sequence[str]]


def _rounded(size: int, ratio: float) -> int:
  # The reference's int(size * ratio + 0.5).
  return int(size * ratio + 0.5)


# Why the two helpers below: TensorFlow's stateless random ops give different
# numbers with and without XLA on the same device (TF 2.21, CPU) when (a) the
# dtype is float, or (b) a seed component is outside [0, 2^32) (XLA keeps only
# its low 32 bits). Integer draws from 32-bit seeds agree, so floats are made
# from integer draws and seeds are folded to 32 bits: a step compiled with XLA
# and its fallback without it augment identically.
_LOW32 = 0xFFFFFFFF


def canonical_seed(seed: tf.Tensor) -> tf.Tensor:
  """Folds a [2] int32/int64 seed to int64 components in [0, 2^32) (``low ^ high``)."""
  seed = tf.cast(seed, tf.int64)
  low = tf.bitwise.bitwise_and(seed, _LOW32)
  high = tf.bitwise.bitwise_and(tf.bitwise.right_shift(seed, 32), _LOW32)
  return tf.bitwise.bitwise_xor(low, high)


def uniform01(shape, seed: tf.Tensor) -> tf.Tensor:
  """Stateless ``U[0, 1)`` float32 on a 2^-24 grid, the same with and without XLA."""
  bits = tf.random.stateless_uniform(shape, seed=canonical_seed(seed), minval=0,
                                     maxval=1 << 24, dtype=tf.int32)
  return tf.cast(bits, tf.float32) * (1.0 / (1 << 24))


def _batch(images: tf.Tensor):
  """B: a Python int when static, else a scalar tensor (H, W, C must be static)."""
  return images.shape[0] if images.shape[0] is not None else tf.shape(images)[0]


def _uniform(seed: tf.Tensor, batch, low: float, high: float, dtype: tf.DType) -> tf.Tensor:
  """``U(low, high)`` per image: [B, 1, 1, 1] in ``dtype``."""
  return tf.cast(low + (high - low) * uniform01([batch, 1, 1, 1], seed), dtype)


def _seeds(seed: tf.Tensor, count: int) -> tf.Tensor:
  """``count`` independent [2] seeds derived from ``seed``: [count, 2] int64 in [0, 2^32)."""
  return canonical_seed(tf.random.experimental.stateless_split(canonical_seed(seed), num=count))


def rand_brightness(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """``x + U(-0.5, 0.5)`` per image. images: [B, H, W, C]."""
  return images + _uniform(seed, _batch(images), -0.5, 0.5, images.dtype)


def rand_saturation(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """``(x - mean_c(x)) * U(0, 2) + mean_c(x)`` per image (the identity when C == 1)."""
  mean = tf.reduce_mean(images, axis=3, keepdims=True)
  return (images - mean) * _uniform(seed, _batch(images), 0.0, 2.0, images.dtype) + mean


def rand_contrast(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """``(x - mean_hwc(x)) * U(0.5, 1.5) + mean_hwc(x)`` per image."""
  mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
  return (images - mean) * _uniform(seed, _batch(images), 0.5, 1.5, images.dtype) + mean


def rand_color(images: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Brightness, saturation, then contrast, with independent draws."""
  seeds = _seeds(seed, 3)
  images = rand_brightness(images, seeds[0])
  images = rand_saturation(images, seeds[1])
  return rand_contrast(images, seeds[2])


def _shift_axis(images: tf.Tensor, offsets: tf.Tensor, axis: int) -> tf.Tensor:
  """``out[b, i] = images[b, i + offsets[b]]`` along ``axis`` (1 or 2), 0 outside.

  Args:
    images: [B, H, W, C].
    offsets: [B] int32.
    axis: 1 (height) or 2 (width).
  """
  size = images.shape[axis]
  source = tf.range(size, dtype=tf.int32)[None, :] + offsets[:, None]  # [B, size]
  valid = tf.logical_and(source >= 0, source < size)
  gathered = tf.gather(images, tf.clip_by_value(source, 0, size - 1), axis=axis, batch_dims=1)
  mask = tf.cast(valid, images.dtype)
  mask = mask[:, :, None, None] if axis == 1 else mask[:, None, :, None]
  return gathered * mask


def translate(images: tf.Tensor, offset_h: tf.Tensor, offset_w: tf.Tensor) -> tf.Tensor:
  """Shifts each image by explicit integer offsets, filling with 0.

  ``out[b, i, j] = images[b, i + offset_h[b], j + offset_w[b]]`` where that
  index is inside the image, else 0 (the reference's convention: a positive
  offset moves the content up / left).

  Args:
    images: [B, H, W, C].
    offset_h, offset_w: [B] integers.

  Returns:
    [B, H, W, C], ``images``' dtype.
  """
  images = _shift_axis(images, tf.cast(offset_h, tf.int32), axis=1)
  return _shift_axis(images, tf.cast(offset_w, tf.int32), axis=2)


def rand_translation(images: tf.Tensor, seed: tf.Tensor,
                     ratio: float = TRANSLATION_RATIO) -> tf.Tensor:
  """Random integer shifts in ``[-round(ratio * size), round(ratio * size)]``, per axis."""
  batch, height, width = _batch(images), images.shape[1], images.shape[2]
  seeds = _seeds(seed, 2)
  shift_h, shift_w = _rounded(height, ratio), _rounded(width, ratio)
  offset_h = tf.random.stateless_uniform([batch], seed=seeds[0], minval=-shift_h,
                                         maxval=shift_h + 1, dtype=tf.int32)
  offset_w = tf.random.stateless_uniform([batch], seed=seeds[1], minval=-shift_w,
                                         maxval=shift_w + 1, dtype=tf.int32)
  return translate(images, offset_h, offset_w)


def cutout(images: tf.Tensor, center_h: tf.Tensor, center_w: tf.Tensor,
           ratio: float = CUTOUT_RATIO) -> tf.Tensor:
  """Zeroes a square of ``round(ratio * size)`` pixels per image at explicit centres.

  The square covers rows ``[center_h - s // 2, center_h - s // 2 + s)`` (and
  likewise columns), ``s`` the square's side, clipped to the image.

  Args:
    images: [B, H, W, C].
    center_h, center_w: [B] integers.
    ratio: the square's side as a fraction of the image's height / width.

  Returns:
    [B, H, W, C], ``images``' dtype.
  """
  height, width = images.shape[1], images.shape[2]
  size_h, size_w = _rounded(height, ratio), _rounded(width, ratio)
  top = tf.cast(center_h, tf.int32)[:, None] - size_h // 2  # [B, 1]
  left = tf.cast(center_w, tf.int32)[:, None] - size_w // 2
  rows = tf.range(height, dtype=tf.int32)[None, :]  # [1, H]
  cols = tf.range(width, dtype=tf.int32)[None, :]
  in_rows = tf.logical_and(rows >= top, rows < top + size_h)  # [B, H]
  in_cols = tf.logical_and(cols >= left, cols < left + size_w)  # [B, W]
  inside = tf.logical_and(in_rows[:, :, None], in_cols[:, None, :])  # [B, H, W]
  return images * tf.cast(tf.logical_not(inside), images.dtype)[..., None]


def rand_cutout(images: tf.Tensor, seed: tf.Tensor, ratio: float = CUTOUT_RATIO) -> tf.Tensor:
  """Cutout at a random centre, drawn as in the reference: ``[0, size + 1 - s % 2)``."""
  batch, height, width = _batch(images), images.shape[1], images.shape[2]
  seeds = _seeds(seed, 2)
  size_h, size_w = _rounded(height, ratio), _rounded(width, ratio)
  center_h = tf.random.stateless_uniform([batch], seed=seeds[0], minval=0,
                                         maxval=height + (1 - size_h % 2), dtype=tf.int32)
  center_w = tf.random.stateless_uniform([batch], seed=seeds[1], minval=0,
                                         maxval=width + (1 - size_w % 2), dtype=tf.int32)
  return cutout(images, center_h, center_w, ratio)


POLICIES: Dict[str, Callable[[tf.Tensor, tf.Tensor], tf.Tensor]] = {
    "color": rand_color,
    "translation": rand_translation,
    "cutout": rand_cutout,
}


def parse_policy(policy: Policy) -> Tuple[str, ...]:
  """Validates a DiffAugment policy; returns its transform names, in order.

  Args:
    policy: ``'color,translation,cutout'``-style string (spaces ignored; ``''``
      for none), or a sequence of names.

  Returns:
    e.g. ``('color', 'translation', 'cutout')``; ``()`` for ``''``.

  Raises:
    ValueError: an unknown or empty name; the message lists the valid ones.
  """
  if isinstance(policy, str):
    names = [] if not policy.strip() else [name.strip() for name in policy.split(",")]
  elif isinstance(policy, (list, tuple)):
    names = [str(name).strip() for name in policy]
  else:
    raise ValueError(f"diffaugment policy={policy!r} must be a comma-separated string such as "
                     f"'color,translation,cutout' (or '' for none); valid names: "
                     f"{', '.join(POLICIES)}.")
  for name in names:
    if name not in POLICIES:
      raise ValueError(f"diffaugment policy={policy!r} has an unknown transform {name!r}; valid "
                       f"names: {', '.join(POLICIES)} (comma-separated, e.g. "
                       "'color,translation,cutout'; '' for no augmentation).")
  return tuple(names)


def diff_augment(images: tf.Tensor, policy: Policy, *, seed: tf.Tensor) -> tf.Tensor:
  """Applies the DiffAugment ``policy`` to a batch (see the module docstring).

  Apply it to every image D sees: reals and fakes in D's step (independent
  seeds), and fakes in G's step. Differentiable in ``images``.

  Args:
    images: [B, H, W, C] float (any float dtype; float16 under mixed
      precision), usually in [-1, 1]. H, W and C must be static (B may be
      dynamic, though XLA wants it static).
    policy: e.g. ``'color,translation,cutout'``; ``''`` returns ``images``.
    seed: [2] int32/int64, e.g. derived from (run seed, step, replica, D step);
      the same seed gives the same augmentation.

  Returns:
    [B, H, W, C], ``images``' dtype; values may leave [-1, 1] (``color``).

  Raises:
    ValueError: unknown policy names, or images that are not a float
      [B, H, W, C] tensor with static H, W and C.
  """
  names = parse_policy(policy)
  if not names:
    return images
  images = tf.convert_to_tensor(images)
  if images.shape.rank != 4 or not images.shape[1:].is_fully_defined():
    raise ValueError(f"diff_augment needs images [B, H, W, C] with static H, W, C, got shape "
                     f"{images.shape}; resize the images to one fixed size in the input pipeline.")
  if not images.dtype.is_floating:
    raise ValueError(f"diff_augment needs float images (in [-1, 1]), got dtype "
                     f"{images.dtype.name}; convert with tf.cast(images, tf.float32) / 127.5 - 1.")
  seeds = _seeds(seed, len(names))
  for i, name in enumerate(names):
    images = POLICIES[name](images, seeds[i])
  return images
