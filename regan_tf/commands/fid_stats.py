r"""Precomputes (or checks) the cached FID reference statistics of a dataset.

    regan-fid-stats --dataset=digits
    regan-fid-stats --dataset=image_folder --path=/data/cifar10/train \
        --fraction=0.1 --subset_rule=stratified [--extractor=inception --inception_path=DIR]

Statistics land in the cache folder (--cache_dir, else $REGAN_TF_CACHE, else
~/.cache/regan_tf) under a key of the dataset, split, subset, image size,
channels and extractor; a second run with the same flags reuses them. With the
offline classifier extractor the classifier is trained (once, then cached) on
the whole loaded dataset, before --fraction is applied, so references of
different fractions share one classifier. Prints one JSON line.

regan-eval (regan_tf.commands.eval) imports this module for the same dataset flags.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Optional, Tuple

from absl import app
from absl import flags

from regan_tf import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_bool("traceback", False, "On an error, print the full traceback.")
flags.DEFINE_enum("dataset", "digits", ["digits", "image_folder", "tfds"], "Real images to use.")
flags.DEFINE_string("path", None, "Folder of images for --dataset=image_folder.")
flags.DEFINE_string("tfds_name", "cifar10", "TFDS name for --dataset=tfds.")
flags.DEFINE_string("split", "train", "TFDS split for --dataset=tfds.")
flags.DEFINE_string("data_dir", None, "TFDS data_dir for --dataset=tfds.")
flags.DEFINE_integer("image_size", None, "Side of the real images (default: 32; regan-eval: "
                     "the exported generator's size).")
flags.DEFINE_integer("channels", None, "1 or 3 (default: 1 for digits, 3 otherwise; regan-eval: "
                     "the exported generator's channels).")
flags.DEFINE_float("fraction", 1.0, "Use this fraction of the dataset as the reference.")
flags.DEFINE_enum("subset_rule", "first", ["first", "random", "stratified"],
                  "How --fraction picks images (see regan_tf.data.subset_indices).")
flags.DEFINE_integer("subset_seed", 0, "Seed of the random / stratified subset.")
flags.DEFINE_enum("extractor", "auto", ["auto", "cifar10_resnet", "classifier", "inception"],
                  "Features: 'cifar10_resnet' (the committed CIFAR-10 ResNet), 'classifier' "
                  "(small offline CNN on the dataset's labels; digits), 'inception' (TF-GAN "
                  "Inception), 'auto' (cifar10_resnet for CIFAR-10, classifier for other "
                  "labelled data, else inception).")
flags.DEFINE_string("inception_path", None, "Folder of the downloaded TF-GAN Inception module.")
flags.DEFINE_string("cache_dir", None, "Cache folder (default $REGAN_TF_CACHE or ~/.cache/regan_tf).")
flags.DEFINE_integer("max_reference_images", None, "Cap on reference images (seeded subset).")


def load_reference_data(image_size: Optional[int], channels: Optional[int]) -> Tuple[Any, Any]:
  """(full dataset, reference subset) as selected by the dataset flags."""
  from regan_tf import data  # pylint: disable=g-import-not-at-top  (loads TensorFlow)

  image_size = image_size or 32
  if FLAGS.dataset == "digits":
    full = data.load_digits(image_size=image_size, channels=channels or 1)
  elif FLAGS.dataset == "image_folder":
    if not FLAGS.path:
      raise app.UsageError("--dataset=image_folder needs --path=<folder of images>.")
    full = data.load_image_folder(FLAGS.path, image_size=image_size, channels=channels or 3)
  else:
    full = data.load_tfds(FLAGS.tfds_name, split=FLAGS.split, data_dir=FLAGS.data_dir,
                          image_size=image_size, channels=channels or 3)
  reference = full
  if FLAGS.fraction != 1.0:
    reference = data.select_subset(full, fraction=FLAGS.fraction, rule=FLAGS.subset_rule,
                                   seed=FLAGS.subset_seed)
  return full, reference


def main(argv) -> int:
  del argv
  cli.quiet_tensorflow()
  try:
    return _run()
  except (ValueError, FileNotFoundError, ConnectionError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2


def _run() -> int:
  from regan_tf import metrics  # pylint: disable=g-import-not-at-top

  start = time.monotonic()
  full, reference = load_reference_data(FLAGS.image_size, FLAGS.channels)
  extractor = metrics.build_extractor(reference, FLAGS.extractor, cache_dir=FLAGS.cache_dir,
                                      inception_path=FLAGS.inception_path,
                                      classifier_data=full)
  stats = metrics.reference_stats(reference, extractor, cache_dir=FLAGS.cache_dir,
                                  max_images=FLAGS.max_reference_images)
  print(json.dumps({"dataset": reference.name, "extractor": extractor.cache_id,
                    "num_images": stats.num_images, "feature_dim": int(stats.features.shape[1]),
                    "path": stats.path, "key": stats.key, "from_cache": stats.from_cache,
                    "seconds": round(time.monotonic() - start, 2)}))
  return 0


def run() -> None:
  """Entry point of ``regan-fid-stats`` (and ``python tools/fid_stats.py``)."""
  cli.run_command(main, flag_modules=[__name__])


if __name__ == "__main__":
  run()
