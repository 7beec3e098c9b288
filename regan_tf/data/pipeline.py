"""The training input pipeline: infinite, deterministic, resumable.

The images live in memory (:class:`~regan_tf.data.sources.ImageData`), so the
pipeline only has to decide *which* indices form each batch. That decision is a
pure function of the seed and the position in the stream:

* Epoch ``e`` visits the N examples in the order
  ``tf.random.experimental.stateless_shuffle(range(N), seed=[seed, e])``.
* The epochs are concatenated into one infinite index stream, cut into batches
  of ``global_batch_size`` (a batch may span two epochs; nothing is dropped
  but the never-ending tail).
* Batch ``k`` is stream positions ``[k * B, (k + 1) * B)``. Resuming at batch
  ``k`` starts the stream there (whole epochs are skipped arithmetically, the
  rest of one epoch by ``Dataset.skip`` on indices), so a restored run sees
  exactly the batches it would have seen had it not stopped, without
  checkpointing iterator or shuffle-buffer state.
* The optional horizontal flip of batch ``k`` is drawn from a Philox key
  derived from ``(seed, k)``, so it resumes the same way.

Written by hand because tf.data's shuffle is stateful (its order after a
restart depends on a saved iterator), which is what this avoids.
"""

from __future__ import annotations

import numbers

from absl import logging
import numpy as np

from regan_tf.compat import tf
from regan_tf.data.sources import ImageData

__all__ = ["make_pipeline"]

# Second word of the Philox key of the flip stream; epoch keys are [seed, e]
# with e >= 0, so this key is never one of them.
_FLIP_STREAM = -1


def _check_int(value, name: str, minimum: int, hint: str) -> int:
  if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}; {hint}")
  return int(value)


def make_pipeline(data: ImageData, *, global_batch_size: int, seed: int = 0,
                  start_batch: int = 0, random_flip: bool = False) -> tf.data.Dataset:
  """Builds the infinite stream of training batches.

  Args:
    data: the images (uint8 [N, H, W, C]).
    global_batch_size: B, images per batch over all replicas. May exceed N
      (a batch then holds some examples twice).
    seed: selects the shuffle of every epoch and the flips.
    start_batch: number of batches already consumed (e.g. the restored
      training step times batches per step); the stream starts at batch
      ``start_batch``.
    random_flip: flip each image left-right with probability 1/2
      (deterministic given seed and position).

  Returns:
    A tf.data.Dataset of float32 [B, H, W, C] in [-1, 1] (x / 127.5 - 1),
    without end.

  Raises:
    ValueError: bad arguments.
  """
  if not isinstance(data, ImageData):
    raise ValueError(f"data must be an ImageData (from a regan_tf.data loader), got "
                     f"{type(data).__name__}.")
  batch_size = _check_int(global_batch_size, "global_batch_size", 1,
                          "use e.g. 64 (the total over all replicas).")
  seed = _check_int(seed, "seed", 0, "use e.g. 0.")
  if seed >= 2**63:
    raise ValueError(f"seed must be < 2**63, got {seed}.")
  start_batch = _check_int(start_batch, "start_batch", 0,
                           "pass the number of batches already consumed, 0 for a new run.")
  if not isinstance(random_flip, (bool, np.bool_)):
    raise ValueError(f"random_flip must be True or False, got {random_flip!r}.")

  n = data.num_examples
  start_position = start_batch * batch_size
  start_epoch, offset = divmod(start_position, n)
  if batch_size > n:
    logging.warning("global_batch_size=%d exceeds the %d examples of %s: batches repeat "
                    "examples.", batch_size, n, data.name)

  seed_t = tf.constant(seed, tf.int64)

  def _epoch_indices(epoch):
    order = tf.random.experimental.stateless_shuffle(
        tf.range(n, dtype=tf.int64), seed=tf.stack([seed_t, epoch]))
    return tf.data.Dataset.from_tensor_slices(order)

  indices = tf.data.Dataset.counter(start=start_epoch, dtype=tf.int64)
  indices = indices.flat_map(_epoch_indices).skip(offset)
  batches = tf.data.Dataset.zip(
      (indices.batch(batch_size, drop_remainder=True),
       tf.data.Dataset.counter(start=start_batch, dtype=tf.int64)))

  images = tf.constant(data.images)  # uint8 [N, H, W, C]; small enough to hold in the graph

  def _gather(batch_indices, batch_number):
    x = tf.cast(tf.gather(images, batch_indices), tf.float32) / 127.5 - 1.0
    if random_flip:
      key = tf.random.experimental.stateless_fold_in(
          tf.stack([seed_t, tf.constant(_FLIP_STREAM, tf.int64)]), batch_number)
      flip = tf.random.stateless_uniform([batch_size], seed=key) < 0.5
      x = tf.where(flip[:, None, None, None], tf.reverse(x, axis=[2]), x)
    return x

  dataset = batches.map(_gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return dataset.prefetch(tf.data.AUTOTUNE)
