"""An offline feature extractor: a small CNN trained on the dataset's own labels.

Inception FID needs the TF-Hub Inception module, which machines without
internet cannot download. For labelled data (scikit-learn digits, the CIFAR-10
JPEG folder) this module trains a small classifier once, caches its weights,
and uses its penultimate layer (128 ReLU units) as features and its last layer
as logits. FID / IS / KID computed with it are reported under the extractor's
own name (``fid_digits_classifier``, ...). They rank generators of one dataset
sensibly (real images score far better than noise or an untrained generator)
but are on another scale than Inception FID and must never be compared with, or
reported as, Inception numbers.

Written by hand because no library ships such a classifier for arbitrary data.
Training is deterministic for a given seed on a given machine: the initializers
are seeded, the data order comes from a seeded NumPy generator, there is no
dropout or augmentation. (Op-level determinism is not forced globally; on CPU
the kernels used here give the same weights run to run.)

The weights are cached in ``<cache_dir>/classifiers/<slug>-<hash>.npz`` where
the hash covers the training images and labels, the input size and channels,
the architecture version, seed, epochs and the training-set cap.
"""

from __future__ import annotations

import json
import os
import time
from typing import Optional, Tuple

from absl import logging
import numpy as np

from regan_tf.compat import keras, tf
from regan_tf.data import ImageData
from regan_tf.metrics import cache as cache_lib
from regan_tf.metrics.extractors import FeatureExtractor, prepare_images, uint8_to_float

__all__ = ["ClassifierExtractor", "load_or_train_classifier", "classifier_name"]

# Bump when the architecture or training recipe changes: old caches are not reused.
ARCH_VERSION = 1
FEATURE_DIM = 128
# The classifier sees images at min(data size, this); larger images are
# downscaled, which keeps it cheap on CPU.
MAX_INPUT_SIZE = 32


def classifier_name(data_name: str) -> str:
  """Metric-name stem for a classifier trained on ``data_name``.

  "digits" -> "digits_classifier"; "cifar10[stratified 5000/50000]" ->
  "cifar10_classifier"; "image_folder:/data/cifar10/train" ->
  "cifar10_train_classifier" (the folder's last two path components).
  """
  base = data_name.split("[", 1)[0]
  if base.startswith("image_folder:"):
    parts = [p for p in base[len("image_folder:"):].split(os.sep) if p]
    base = "_".join(parts[-2:]) or "folder"
  base = base.split(":", 1)[0]
  return f"{cache_lib.slug(base, 24)}_classifier"


def _build_model(input_size: int, channels: int, num_classes: int, seed: int) -> keras.Model:
  """Functional CNN: image -> [features [N, 128], logits [N, K]]."""

  def init(i):
    return keras.initializers.GlorotUniform(seed=seed * 100 + i)

  x = inputs = keras.Input([input_size, input_size, channels], name="images")
  for i, (filters, stride) in enumerate([(32, 2), (64, 2), (128, 2), (128, 1)]):
    x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", activation="relu",
                            kernel_initializer=init(i), name=f"conv{i}")(x)
  x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
  features = keras.layers.Dense(FEATURE_DIM, activation="relu", kernel_initializer=init(10),
                                name="features")(x)
  logits = keras.layers.Dense(num_classes, kernel_initializer=init(11), name="logits")(features)
  return keras.Model(inputs, [features, logits], name="offline_classifier")


class ClassifierExtractor(FeatureExtractor):
  """Penultimate-layer features and logits of a trained offline classifier.

  Attributes:
    name: metric-name stem, e.g. "digits_classifier".
    cache_id: "<name>-v<ARCH_VERSION>-<weights key>"; changes with the weights.
    info: what it was trained on and its held-out accuracy.
  """

  labelled = True

  def __init__(self, model: keras.Model, *, name: str, key: str, info: dict):
    self.model = model
    self.name = name
    self.cache_id = f"{name}-v{ARCH_VERSION}-{key}"
    self.input_size = int(model.input_shape[1])
    self.input_channels = int(model.input_shape[3])
    self.num_classes = int(model.output_shape[1][-1])
    self.info = dict(info)
    self._forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

  def _features_and_logits(self, images: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    features, logits = self._forward(images)
    return features, logits


def _default_epochs(num_train: int) -> int:
  # ~600 optimizer steps for digits (1.6k images), ~1.5k for a 10k CIFAR subset.
  return int(np.clip(round(24000 / max(num_train, 1)), 8, 30))


def load_or_train_classifier(data: ImageData, *, cache_dir: Optional[str] = None, seed: int = 0,
                             epochs: Optional[int] = None, max_train_images: int = 10000,
                             batch_size: int = 64, name: Optional[str] = None) -> ClassifierExtractor:
  """Returns the offline classifier for ``data``, training and caching it if needed.

  A seeded random 10% of the (capped) images is held out to report accuracy;
  the rest trains the network with Adam (lr 1e-3) and softmax cross-entropy.
  Cost on a 2-core CPU: ~15 s for digits, ~1-2 min for 10,000 CIFAR images.

  Args:
    data: labelled training images (labels int64 [N] in 0..K-1, K >= 2).
      Pass the full training set, not a few-shot subset, when runs on
      different subsets must share one classifier (and so be comparable).
    cache_dir: cache folder; None for ``$REGAN_TF_CACHE`` or ~/.cache/regan_tf.
    seed: seeds the initializers, the held-out split and the data order.
    epochs: passes over the training images; None picks ~600-1,500 steps.
    max_train_images: train on a seeded random subset of at most this many.
    batch_size: training batch size.
    name: metric-name stem; None derives it from ``data.name``.

  Returns:
    A :class:`ClassifierExtractor`.

  Raises:
    ValueError: ``data`` has no labels or a single class; bad arguments.
  """
  if not isinstance(data, ImageData):
    raise ValueError(f"data must be a regan_tf.data.ImageData, got {type(data).__name__}.")
  if data.labels is None:
    raise ValueError(
        f"The offline classifier extractor needs labelled images, but dataset {data.name!r} has "
        f"no labels (an image folder without class subfolders?). Use extractor='inception' "
        f"(with inception_path pointing at a downloaded TF-GAN Inception module when offline), "
        f"or pass labelled classifier data (a folder with one subfolder per class).")
  num_classes = int(data.labels.max()) + 1
  if num_classes < 2 or len(np.unique(data.labels)) < 2:
    raise ValueError(f"The offline classifier needs at least 2 classes; dataset {data.name!r} "
                     f"has labels {np.unique(data.labels)[:10].tolist()}. Use extractor='inception'.")
  for arg, value, minimum in (("max_train_images", max_train_images, 10),
                              ("batch_size", batch_size, 1)):
    if not isinstance(value, int) or value < minimum:
      raise ValueError(f"{arg} must be an integer >= {minimum}, got {value!r}.")
  if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
    raise ValueError(f"epochs must be None (automatic) or an integer >= 1, got {epochs!r}.")

  name = name or classifier_name(data.name)
  input_size = min(data.image_size, MAX_INPUT_SIZE)
  channels = data.channels
  num_used = min(data.num_examples, max_train_images)
  epochs = epochs or _default_epochs(num_used - num_used // 10)
  settings = dict(arch=ARCH_VERSION, data=data.name,
                  content=cache_lib.array_fingerprint(data.images, data.labels),
                  input_size=input_size, channels=channels, classes=num_classes, seed=seed,
                  epochs=epochs, max_train_images=max_train_images, batch_size=batch_size)
  key = cache_lib.settings_hash(settings)
  folder = os.path.join(cache_lib.resolve_cache_dir(cache_dir), "classifiers")
  path = os.path.join(folder, f"{cache_lib.slug(name)}-{key}.npz")
  model = _build_model(input_size, channels, num_classes, seed)

  if os.path.exists(path):
    with np.load(path) as stored:
      weights = [stored[f"w{i}"] for i in range(len(model.weights))]
      info = json.loads(str(stored["info"]))
    model.set_weights(weights)
    logging.info("Loaded the offline classifier %s from %s (held-out accuracy %.3f).", name, path,
                 info.get("heldout_accuracy", float("nan")))
    return ClassifierExtractor(model, name=name, key=key, info=info)

  rng = np.random.default_rng(seed)
  order = rng.permutation(data.num_examples)[:num_used]
  num_heldout = num_used // 10
  heldout, train = order[:num_heldout], order[num_heldout:]

  def prepared(indices):
    x = prepare_images(uint8_to_float(data.images[indices]), size=input_size, channels=channels)
    return x, tf.constant(data.labels[indices])

  x_train, y_train = prepared(train)
  optimizer = keras.optimizers.Adam(1e-3)
  loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

  @tf.function
  def train_step(x, y):
    with tf.GradientTape() as tape:
      _, logits = model(x, training=True)
      loss = loss_fn(y, logits)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  start = time.monotonic()
  steps_per_epoch = max(1, len(train) // batch_size)  # drop the ragged last batch: one trace
  loss = float("nan")
  for _ in range(epochs):
    perm = tf.constant(rng.permutation(len(train)))
    for s in range(steps_per_epoch):
      idx = perm[s * batch_size:(s + 1) * batch_size]
      loss = float(train_step(tf.gather(x_train, idx), tf.gather(y_train, idx)))
  seconds = time.monotonic() - start

  extractor = ClassifierExtractor(model, name=name, key=key, info={})
  accuracy = float("nan")
  if num_heldout:
    x_held, y_held = prepared(heldout)
    _, logits = extractor.extract(x_held.numpy())
    accuracy = float(np.mean(np.argmax(logits, axis=1) == y_held.numpy()))
  info = dict(settings, name=name, train_images=int(len(train)), heldout_images=int(num_heldout),
              heldout_accuracy=accuracy, final_loss=loss, train_seconds=round(seconds, 2))
  extractor.info = info
  os.makedirs(folder, exist_ok=True)
  tmp = cache_lib.atomic_path(path)
  with open(tmp, "wb") as f:
    np.savez(f, info=json.dumps(info), **{f"w{i}": w for i, w in enumerate(model.get_weights())})
  os.replace(tmp, path)
  logging.info("Trained the offline classifier %s on %d images of %s in %.1f s (%d epochs, "
               "held-out accuracy %.3f); cached at %s.", name, len(train), data.name, seconds,
               epochs, accuracy, path)
  return extractor
