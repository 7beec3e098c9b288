r"""Prints the FID extractors' calibration figures ("sanity card", docs/METRICS.md).

    python benchmarks/fid_sanity_card.py --cifar_dir=/tmp/cifar10/train [--old_classifier]

For each extractor: the FID of real-image sets against a real reference, all
disjoint (regan_tf.metrics.calibration): 10 / 5 / 2 / 1 classes, the 10-class
set blurred (sigma 0.5 / 1 / 2 px), collapsed to copies of 30 / 3 images; and
FID(2 classes) / FID(10 classes). A sound extractor rises strictly along each
family. CIFAR-10 uses 1,000 reference images per class and sets of 2,000;
digits (1,797 images) 50 per class and sets of 120, as in the tests.
--old_classifier also trains and measures the first offline CIFAR classifier
(fid_cifar10_train_classifier, ~2 min), to show what it missed.
Runtime: ~3 min on 2 shared CPU cores (+2 min with --old_classifier).
"""

from __future__ import annotations

import json
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("cifar_dir", None, "The unpacked CIFAR-10 train/ folder; None skips CIFAR-10.")
flags.DEFINE_bool("old_classifier", False, "Also measure the first offline CIFAR classifier.")
flags.DEFINE_integer("reference_per_class", 1000, "CIFAR-10 reference images per class.")
flags.DEFINE_integer("set_size", 2000, "CIFAR-10 images per calibration set.")
flags.DEFINE_string("cache_dir", None, "Metrics cache (the old classifier's weights).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from regan_tf import data, metrics  # pylint: disable=g-import-not-at-top
  from regan_tf.metrics import calibration  # pylint: disable=g-import-not-at-top

  rows = []
  if FLAGS.cifar_dir:
    cifar = data.load_image_folder(FLAGS.cifar_dir, image_size=32, channels=3)
    extractors = [("cifar10_resnet", metrics.load_cifar_resnet())]
    if FLAGS.old_classifier:
      extractors.append(("cifar10_train_classifier (old)",
                         metrics.build_extractor(cifar, "classifier", cache_dir=FLAGS.cache_dir)))
    for label, extractor in extractors:
      start = time.monotonic()
      result = calibration.calibrate(extractor, cifar, reference_per_class=FLAGS.reference_per_class,
                                     set_size=FLAGS.set_size)
      rows.append((f"{label}, CIFAR-10 ({FLAGS.reference_per_class}/class ref., sets of "
                   f"{FLAGS.set_size})", result))
      print(json.dumps(dict(extractor=label, seconds=round(time.monotonic() - start, 1),
                            **{k: round(v, 4) for k, v in result.items()})), flush=True)
  digits = data.load_digits(image_size=32)
  extractor = metrics.build_extractor(digits, "classifier", cache_dir=FLAGS.cache_dir)
  result = calibration.calibrate(extractor, digits, reference_per_class=50, set_size=120)
  rows.append(("digits_classifier, digits (50/class ref., sets of 120)", result))
  print(json.dumps(dict(extractor="digits_classifier", **{k: round(v, 4) for k, v in result.items()})))
  print(calibration.format_card(rows))


if __name__ == "__main__":
  app.run(main)
