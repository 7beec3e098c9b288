"""FID / IS / KID for regan_tf generators, on TF-GAN's eval math.

Layout ("compute activations" apart from "compute distance", as in TF-GAN):

* :mod:`~regan_tf.metrics.scores`: FID, IS, KID from features / logits
  (TF-GAN's ``classifier_metrics``).
* :mod:`~regan_tf.metrics.extractors`: the extractor interface, images
  [N, H, W, C] in [-1, 1] -> (features [N, D], logits [N, K]).
* :mod:`~regan_tf.metrics.inception`: TF-GAN's Inception from TF-Hub or a
  local folder (metric names ``*_inception``).
* :mod:`~regan_tf.metrics.cifar_resnet`: a CIFAR-10 ResNet whose weights are
  committed with the package (``*_cifar10_resnet``), the offline extractor for
  CIFAR-10-like data; trained by ``tools/train_cifar_classifier.py``.
* :mod:`~regan_tf.metrics.classifier`: a small offline CNN trained on the
  dataset's labels on first use (``*_<dataset>_classifier``; adequate for
  digits, too weak for CIFAR-10). Neither is comparable with Inception numbers.
* :mod:`~regan_tf.metrics.reference`: real-image statistics, cached on disk.
* :mod:`~regan_tf.metrics.evaluator`: :class:`Evaluator` and
  :func:`build_evaluator`, what the trainer and ``tools/eval.py`` call.

FID is biased at small sample counts: compare runs at the same count.
"""

from regan_tf.metrics.cache import CACHE_ENV
from regan_tf.metrics.cache import default_cache_dir
from regan_tf.metrics.cifar_resnet import CifarResNetExtractor
from regan_tf.metrics.cifar_resnet import load_cifar_resnet
from regan_tf.metrics.classifier import ClassifierExtractor
from regan_tf.metrics.classifier import load_or_train_classifier
from regan_tf.metrics.evaluator import EXTRACTORS
from regan_tf.metrics.evaluator import Evaluator
from regan_tf.metrics.evaluator import build_evaluator
from regan_tf.metrics.evaluator import build_extractor
from regan_tf.metrics.extractors import FeatureExtractor
from regan_tf.metrics.inception import INCEPTION_TFHUB
from regan_tf.metrics.inception import InceptionExtractor
from regan_tf.metrics.inception import load_inception
from regan_tf.metrics.reference import ReferenceStats
from regan_tf.metrics.reference import reference_key
from regan_tf.metrics.reference import reference_stats
from regan_tf.metrics.scores import class_coverage
from regan_tf.metrics.scores import classifier_score
from regan_tf.metrics.scores import frechet_distance
from regan_tf.metrics.scores import kernel_distance

__all__ = [
    "CACHE_ENV",
    "CifarResNetExtractor",
    "ClassifierExtractor",
    "EXTRACTORS",
    "Evaluator",
    "FeatureExtractor",
    "INCEPTION_TFHUB",
    "InceptionExtractor",
    "ReferenceStats",
    "build_evaluator",
    "build_extractor",
    "class_coverage",
    "classifier_score",
    "default_cache_dir",
    "frechet_distance",
    "kernel_distance",
    "load_cifar_resnet",
    "load_inception",
    "load_or_train_classifier",
    "reference_key",
    "reference_stats",
]
