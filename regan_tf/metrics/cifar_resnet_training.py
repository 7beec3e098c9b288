"""Trains the CIFAR-10 ResNet feature extractor (:mod:`regan_tf.metrics.cifar_resnet`).

The recipe follows the fast CIFAR-10 training literature (D. Page, "How to train
your ResNet", 2018; the airbench / hlb-cifar10 line), re-written for Keras 2 on
a CPU:

* data: the CIFAR-10 training JPEGs minus a stratified, seeded validation split
  (500 per class by default); pixels scaled to [-1, 1], the generators' range,
  so that the extractor sees real and generated images alike;
* augmentation, fresh each epoch from a seeded NumPy generator: random 32x32
  crops of the image reflect-padded by 4 pixels, and horizontal flips;
* SGD with Nesterov momentum 0.9, weight decay 5e-4 added to the gradients
  (PyTorch-style coupled decay, on every variable as in Page's recipe), label
  smoothing 0.2, a one-cycle learning rate: linear warm-up from 0 to the peak
  over the first ``warmup_fraction`` of the steps, then linear decay to 0.

Written by hand: the loop is 30 lines and needs per-epoch NumPy augmentation
and logging that ``Model.fit`` would only obscure.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from regan_tf.compat import keras, tf
from regan_tf.data import ImageData, subset_indices
from regan_tf.metrics.cifar_resnet import WIDTHS, build_model
from regan_tf.metrics.extractors import uint8_to_float

__all__ = ["TrainConfig", "augment_epoch", "split_train_validation", "train_classifier"]


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Hyper-parameters of :func:`train_classifier`; validated on construction.

  Attributes:
    epochs: passes over the training images.
    batch_size: images per SGD step.
    peak_lr: learning rate at the end of the warm-up.
    warmup_fraction: share of the steps spent warming up, in (0, 1).
    weight_decay: coefficient added to the gradients (g + wd * w).
    label_smoothing: in [0, 1).
    validation_per_class: images per class held out for validation.
    seed: seeds the split, the initial weights, the order and the augmentation.
    widths: channels of the stem and the three stages.
  """
  epochs: int = 20
  batch_size: int = 256
  peak_lr: float = 0.2
  warmup_fraction: float = 0.2
  weight_decay: float = 5e-4
  label_smoothing: float = 0.2
  validation_per_class: int = 500
  seed: int = 0
  widths: Tuple[int, int, int, int] = WIDTHS

  def __post_init__(self):
    for name, minimum in (("epochs", 1), ("batch_size", 1), ("validation_per_class", 0)):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    if not self.peak_lr > 0:
      raise ValueError(f"peak_lr must be > 0, got {self.peak_lr!r}.")
    if not 0 < self.warmup_fraction < 1:
      raise ValueError(f"warmup_fraction must be in (0, 1), got {self.warmup_fraction!r}.")
    if not self.weight_decay >= 0:
      raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}.")
    if not 0 <= self.label_smoothing < 1:
      raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing!r}.")


def split_train_validation(labels: np.ndarray, per_class: int, seed: int
                           ) -> Tuple[np.ndarray, np.ndarray]:
  """Stratified seeded split: (train indices, validation indices), both sorted.

  The validation split takes ``per_class`` images of each class (via
  :func:`regan_tf.data.subset_indices` with rule "stratified"); 0 gives an
  empty validation split.
  """
  n = len(labels)
  num_classes = len(np.unique(labels))
  if per_class == 0:
    return np.arange(n, dtype=np.int64), np.zeros([0], np.int64)
  validation = subset_indices(n, per_class * num_classes / n, "stratified", labels=labels, seed=seed)
  train = np.setdiff1d(np.arange(n, dtype=np.int64), validation)
  return train, validation


def augment_epoch(images: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
  """Random crops of the reflect-padded images plus random horizontal flips.

  Args:
    images: uint8 [N, H, W, C].
    rng: the epoch's generator (the only source of randomness).
    pad: pixels of reflection padding on each side; crops move by up to ``pad``.

  Returns:
    uint8 [N, H, W, C], a new array.
  """
  n, h, w, _ = images.shape
  padded = np.pad(images, [(0, 0), (pad, pad), (pad, pad), (0, 0)], mode="reflect")
  windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(1, 2))
  dy = rng.integers(0, 2 * pad + 1, n)
  dx = rng.integers(0, 2 * pad + 1, n)
  crops = windows[np.arange(n), dy, dx]  # [N, C, H, W]
  crops = np.ascontiguousarray(np.moveaxis(crops, 1, -1))
  flip = rng.random(n) < 0.5
  crops[flip] = crops[flip, :, ::-1]
  return crops


def _accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray,
              batch_size: int = 500) -> float:
  forward = tf.function(lambda x: model(x, training=False)[1])
  hits = 0
  for start in range(0, len(images), batch_size):
    logits = forward(tf.constant(uint8_to_float(images[start:start + batch_size])))
    hits += int(np.sum(np.argmax(logits.numpy(), 1) == labels[start:start + batch_size]))
  return hits / max(len(images), 1)


def train_classifier(data: ImageData, config: TrainConfig,
                     log: Optional[Callable[[str], None]] = None
                     ) -> Tuple[keras.Model, Dict]:
  """Trains the CIFAR-10 ResNet on ``data`` and measures it on the held-out split.

  Args:
    data: labelled uint8 [N, 32, 32, 3] images (the CIFAR-10 training JPEGs).
    config: the recipe's numbers.
    log: called with one line per epoch (default: print).

  Returns:
    (model, info): the float32 model and a JSON-ready dict with the settings,
    the per-epoch history, ``validation_accuracy`` and ``train_seconds``.

  Raises:
    ValueError: unlabeled data, images not 32x32 RGB, or a validation split
      that leaves no training images.
  """
  log = log or print
  if data.labels is None:
    raise ValueError(f"dataset {data.name!r} has no labels; pass a folder with one subfolder per "
                     f"class (the unpacked CIFAR-10 train/ folder).")
  if data.images.shape[1:] != (32, 32, 3):
    raise ValueError(f"the CIFAR-10 ResNet trains on 32x32 RGB images, got {data.images.shape[1:]}; "
                     f"load the folder with image_size=32, channels=3.")
  num_classes = int(data.labels.max()) + 1
  train_idx, val_idx = split_train_validation(data.labels, config.validation_per_class, config.seed)
  if len(train_idx) < config.batch_size:
    raise ValueError(f"{len(train_idx)} training images after holding out {len(val_idx)} is fewer "
                     f"than batch_size={config.batch_size}; lower validation_per_class or batch_size.")
  x_train, y_train = data.images[train_idx], data.labels[train_idx]
  x_val, y_val = data.images[val_idx], data.labels[val_idx]

  keras.utils.set_random_seed(config.seed)
  rng = np.random.default_rng(config.seed)
  model = build_model(widths=config.widths, num_classes=num_classes)
  steps_per_epoch = len(train_idx) // config.batch_size  # drop the ragged batch: one trace
  total_steps = steps_per_epoch * config.epochs
  warmup_steps = max(1, int(round(config.warmup_fraction * total_steps)))

  def lr_at(step: tf.Tensor) -> tf.Tensor:
    step = tf.cast(step, tf.float32)
    up = step / warmup_steps
    down = (total_steps - step) / max(total_steps - warmup_steps, 1)
    return config.peak_lr * tf.maximum(0.0, tf.minimum(up, down))

  optimizer = keras.optimizers.SGD(learning_rate=0.0, momentum=0.9, nesterov=True)
  loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True,
                                                 label_smoothing=config.label_smoothing)
  step_var = tf.Variable(0, dtype=tf.int64, trainable=False)

  @tf.function
  def train_step(x, y):
    optimizer.learning_rate.assign(lr_at(step_var + 1))
    with tf.GradientTape() as tape:
      _, logits = model(x, training=True)
      loss = loss_fn(tf.one_hot(y, num_classes), logits)
    variables = model.trainable_variables
    grads = tape.gradient(loss, variables)
    grads = [g + config.weight_decay * v for g, v in zip(grads, variables)]
    optimizer.apply_gradients(zip(grads, variables))
    step_var.assign_add(1)
    hits = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.int32))
    return loss, hits

  history: List[Dict] = []
  start = time.monotonic()
  for epoch in range(1, config.epochs + 1):
    epoch_start = time.monotonic()
    augmented = augment_epoch(x_train, rng)
    order = rng.permutation(len(train_idx))
    losses, hits = [], 0
    for s in range(steps_per_epoch):
      idx = order[s * config.batch_size:(s + 1) * config.batch_size]
      loss, h = train_step(tf.constant(uint8_to_float(augmented[idx])), tf.constant(y_train[idx]))
      losses.append(float(loss))
      hits += int(h)
    train_seconds = time.monotonic() - epoch_start
    val_acc = _accuracy(model, x_val, y_val) if len(val_idx) else float("nan")
    row = dict(epoch=epoch, lr_end=round(float(lr_at(step_var)), 5),
               train_loss=round(float(np.mean(losses)), 4),
               train_accuracy=round(hits / (steps_per_epoch * config.batch_size), 4),
               validation_accuracy=round(val_acc, 4), epoch_seconds=round(train_seconds, 1),
               elapsed_seconds=round(time.monotonic() - start, 1))
    history.append(row)
    log(" ".join(f"{k}={v}" for k, v in row.items()))
  seconds = time.monotonic() - start
  info = dict(config=dataclasses.asdict(config), data=data.name, num_classes=num_classes,
              widths=list(config.widths), train_images=int(len(train_idx)),
              validation_images=int(len(val_idx)), steps=int(total_steps), history=history,
              validation_accuracy=history[-1]["validation_accuracy"],
              train_seconds=round(seconds, 1), params=int(model.count_params()))
  return model, info
