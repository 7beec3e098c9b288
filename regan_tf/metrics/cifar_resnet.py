"""A small residual CIFAR-10 classifier used as an offline FID feature extractor.

Why it exists: the first offline CIFAR extractor (:mod:`regan_tf.metrics.classifier`,
a 4-conv net at ~52% held-out accuracy) ranked generator checkpoints in the wrong
order (issue 23): its features do not separate the classes well enough for a
Frechet distance on them to see mode collapse. This network is a classifier
architecture in the style of the fast CIFAR-10 training recipes (the "ResNet-9"
of D. Page's DAWNBench entry and its descendants): a conv-BN-ReLU stem, three
stages that double the width and halve the resolution with max pooling, residual
blocks after stages 1 and 3, and a global max pool. Widths are scaled down from
(64, 128, 256, 512) to (16, 32, 64, 128) (414k parameters, 1.5 MB in float32) so
that it trains on two CPU cores in 25-50 minutes (87.1% validation accuracy after
20 epochs; docs/METRICS.md has the record). On this AVX2-only
CPU a training step at (32, 64, 128, 256) took 2.5 s per 256 images in float32,
and bfloat16 compute (``mixed_bfloat16``) was 9x *slower* (22 s), because
without AVX512-BF16 the bfloat16 kernels are emulated. Training runs in float32.

Interface: image float32 [N, 32, 32, 3] in [-1, 1] -> (features [N, 128],
logits [N, 10]). Features are the globally pooled last stage (the input of the
linear classifier), the usual FID choice (Inception FID uses pool3 likewise).

Written by hand: no library ships a CIFAR classifier that can be trained and
loaded offline with Keras 2. The training recipe lives in
:mod:`regan_tf.metrics.cifar_resnet_training`; this module only builds the
network and loads the committed weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from regan_tf.compat import keras, tf
from regan_tf.metrics.extractors import FeatureExtractor

__all__ = [
    "ARCH_VERSION",
    "CifarResNetExtractor",
    "DEFAULT_WEIGHTS_PATH",
    "WIDTHS",
    "build_model",
    "load_cifar_resnet",
    "save_weights",
]

# Bump when the architecture changes: weights files record it and are refused otherwise.
ARCH_VERSION = 1
WIDTHS: Tuple[int, int, int, int] = (16, 32, 64, 128)
INPUT_SIZE = 32
# Page's ResNet-9 scales the logits down; with batch norm in front, the raw
# logits are otherwise too large early in training and the loss plateaus.
LOGIT_SCALE = 0.125

DEFAULT_WEIGHTS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "weights",
                                    "cifar10_resnet.npz")


def _conv_bn(x: tf.Tensor, filters: int, name: str, dtype) -> tf.Tensor:
  """3x3 conv (no bias: BN follows) -> batch norm -> ReLU."""
  x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                          kernel_initializer="he_normal", dtype=dtype, name=f"{name}_conv")(x)
  # Momentum 0.9 rather than Keras' 0.99: short runs need the moving statistics
  # to follow the weights, or evaluation-mode accuracy lags the training accuracy.
  x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, dtype=dtype,
                                      name=f"{name}_bn")(x)
  return keras.layers.ReLU(dtype=dtype, name=f"{name}_relu")(x)


def build_model(*, widths: Sequence[int] = WIDTHS, num_classes: int = 10,
                dtype_policy: str = "float32") -> keras.Model:
  """Builds the classifier: image [N, 32, 32, 3] -> [features [N, widths[3]], logits [N, K]].

  Args:
    widths: channels of the stem and the three stages.
    num_classes: K.
    dtype_policy: Keras dtype policy of the convolutional trunk, "float32" or
      "mixed_bfloat16" (bfloat16 compute, float32 variables: faster only on
      CPUs with native bfloat16). The pooled features and logits are float32.

  Returns:
    A functional ``keras.Model`` named "cifar10_resnet" with two outputs.
  """
  if len(widths) != 4 or any(int(w) < 1 for w in widths):
    raise ValueError(f"widths must be 4 positive channel counts (stem, stage 1-3), got {widths!r}.")
  if dtype_policy not in ("float32", "mixed_bfloat16"):
    raise ValueError(f"dtype_policy must be 'float32' or 'mixed_bfloat16', got {dtype_policy!r}.")
  policy = keras.mixed_precision.Policy(dtype_policy)
  w0, w1, w2, w3 = (int(w) for w in widths)
  x = inputs = keras.Input([INPUT_SIZE, INPUT_SIZE, 3], name="images")
  x = _conv_bn(x, w0, "stem", policy)
  x = _conv_bn(x, w1, "stage1", policy)
  x = keras.layers.MaxPooling2D(2, dtype=policy, name="stage1_pool")(x)
  r = _conv_bn(_conv_bn(x, w1, "res1a", policy), w1, "res1b", policy)
  x = keras.layers.Add(dtype=policy, name="res1_add")([x, r])
  x = _conv_bn(x, w2, "stage2", policy)
  x = keras.layers.MaxPooling2D(2, dtype=policy, name="stage2_pool")(x)
  x = _conv_bn(x, w3, "stage3", policy)
  x = keras.layers.MaxPooling2D(2, dtype=policy, name="stage3_pool")(x)
  r = _conv_bn(_conv_bn(x, w3, "res3a", policy), w3, "res3b", policy)
  x = keras.layers.Add(dtype=policy, name="res3_add")([x, r])
  x = keras.layers.GlobalMaxPooling2D(dtype=policy, name="pool")(x)
  features = keras.layers.Activation("linear", dtype="float32", name="features")(x)
  logits = keras.layers.Dense(num_classes, dtype="float32", name="dense")(features)
  logits = keras.layers.Rescaling(LOGIT_SCALE, dtype="float32", name="logits")(logits)
  return keras.Model(inputs, [features, logits], name="cifar10_resnet")


def weights_digest(path: str) -> str:
  """sha256 hex digest of a file (the weights file's identity in cache keys and docs)."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def save_weights(model: keras.Model, path: str, info: Dict) -> str:
  """Writes the model's float32 weights (in ``model.weights`` order) and ``info`` to an .npz file.

  Returns:
    The sha256 of the written file.
  """
  arrays = {f"w{i}": np.asarray(w, np.float32) for i, w in enumerate(model.get_weights())}
  names = [w.name for w in model.weights]
  meta = dict(info, arch_version=ARCH_VERSION, weight_names=names)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "wb") as f:
    np.savez_compressed(f, info=np.asarray(json.dumps(meta, sort_keys=True)), **arrays)
  os.replace(tmp, path)
  return weights_digest(path)


class CifarResNetExtractor(FeatureExtractor):
  """Pooled last-stage features [N, 128] and logits [N, 10] of the CIFAR-10 ResNet.

  Attributes:
    name: "cifar10_resnet" (metrics are ``fid_cifar10_resnet``, ...).
    cache_id: changes whenever the weights file changes (its sha256 prefix).
    info: what the weights were trained on and their validation accuracy.
    class_names: label order of the logits.
  """

  labelled = True

  def __init__(self, model: keras.Model, *, sha256: str, info: Dict):
    self.model = model
    self.name = "cifar10_resnet"
    self.cache_id = f"{self.name}-v{ARCH_VERSION}-{sha256[:16]}"
    self.sha256 = sha256
    self.input_size = INPUT_SIZE
    self.input_channels = 3
    self.num_classes = int(model.output_shape[1][-1])
    self.info = dict(info)
    self.class_names = list(info.get("class_names", []))
    self._forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

  def _features_and_logits(self, images: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    features, logits = self._forward(images)
    return features, logits


def load_cifar_resnet(path: Optional[str] = None) -> CifarResNetExtractor:
  """Loads the committed CIFAR-10 ResNet weights (or ``path``) as an extractor.

  Args:
    path: an .npz written by :func:`save_weights`; None for the weights
      committed with the package (``regan_tf/metrics/weights/cifar10_resnet.npz``).

  Raises:
    FileNotFoundError: the file is missing (the message says how to retrain it).
    ValueError: the file was written for another architecture version.
  """
  path = os.path.abspath(path or DEFAULT_WEIGHTS_PATH)
  if not os.path.isfile(path):
    raise FileNotFoundError(
        f"CIFAR-10 ResNet weights not found at {path!r}. They are committed with the package; "
        f"restore them with `git checkout -- regan_tf/metrics/weights/`, or retrain with "
        f"`python tools/train_cifar_classifier.py --data_dir=<unpacked CIFAR-10 train folder> "
        f"--out=<path>` and pass that path.")
  with np.load(path) as stored:
    info = json.loads(str(stored["info"]))
    if info.get("arch_version") != ARCH_VERSION:
      raise ValueError(
          f"{path!r} holds weights for architecture version {info.get('arch_version')!r}, but this "
          f"code builds version {ARCH_VERSION}; retrain with tools/train_cifar_classifier.py or "
          f"check out the matching regan_tf version.")
    count = len([k for k in stored.files if k.startswith("w")])
    weights = [stored[f"w{i}"].astype(np.float32) for i in range(count)]
  model = build_model(widths=info.get("widths", WIDTHS), num_classes=int(info.get("num_classes", 10)))
  if len(weights) != len(model.weights):
    raise ValueError(f"{path!r} holds {len(weights)} weight arrays, the model has "
                     f"{len(model.weights)}; the file is corrupt or from another architecture.")
  model.set_weights(weights)
  return CifarResNetExtractor(model, sha256=weights_digest(path), info=info)
