r"""FID / IS / KID of an exported regan_tf generator against a dataset.

    regan-eval --export_dir=runs/digits [--which=best] [--num_samples=5000] [--json_out=scores.json]
    regan-eval --export_dir=runs/cifar/export --dataset=image_folder \
        --path=/data/cifar10/train [--extractor=inception --inception_path=DIR]

``--export_dir`` is a run folder (the training --workdir: its export/, or with
``--which=best`` its best/export) or an export folder, as for regan-sample.

Loads the SavedModel with plain TensorFlow (``signatures['serving_default'](z=...)['images']``;
z_dim from the signature), draws --num_samples images with latents seeded by
--seed, and scores them against the dataset (digits by default; the dataset
flags are those of regan-fid-stats; image size and channels default to the
generator's). Reference statistics and the offline classifier come from the
cache (--cache_dir), computed on first use.

Metric names carry the extractor: ``fid_inception`` is Inception FID;
``fid_digits_classifier`` etc. come from the offline classifier and are not
comparable with Inception numbers. FID is biased at small --num_samples:
compare runs at the same count. Prints one JSON object; --json_out also
writes it to a file.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import flags
from absl import logging

from regan_tf.commands import fid_stats  # noqa: F401  (defines the dataset / extractor / cache flags)

from regan_tf import cli  # noqa: E402
from regan_tf import commands  # noqa: E402  (the export flags; imports no TensorFlow)

FLAGS = flags.FLAGS
commands.define_export_flags(__name__)
flags.DEFINE_integer("num_samples", 5000, "Generated images to score.")
flags.DEFINE_integer("batch_size", 250, "Images per generator / extractor call.")
flags.DEFINE_integer("seed", 0, "Seed of the latent vectors.")
flags.DEFINE_string("json_out", None, "If set, also write the scores as JSON to this file.")


def main(argv) -> int:
  del argv
  try:
    export_dir = commands.export_from_flags()
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return cli.EXIT_USER_ERROR
  cli.quiet_tensorflow()
  return _run(export_dir)


def _run(export_dir: str) -> int:
  from regan_tf import export as export_lib  # pylint: disable=g-import-not-at-top  (loads TensorFlow)
  from regan_tf import metrics  # pylint: disable=g-import-not-at-top
  from regan_tf.compat import tf  # pylint: disable=g-import-not-at-top

  start = time.monotonic()
  serve = export_lib.load_export(export_dir).signatures["serving_default"]
  z_spec = serve.structured_input_signature[1].get("z")
  if z_spec is None or z_spec.shape.rank != 2 or z_spec.shape[-1] is None:
    raise ValueError(f"{export_dir!r}: the serving_default signature has no input z [None, z_dim] "
                     f"(inputs {serve.structured_input_signature[1]}); export it with "
                     f"regan_tf.export.export_generator.")
  z_dim = int(z_spec.shape[-1])
  probe = serve(z=tf.zeros([1, z_dim]))["images"]
  image_size, channels = int(probe.shape[1]), int(probe.shape[3])

  full, reference = fid_stats.load_reference_data(FLAGS.image_size or image_size,
                                                  FLAGS.channels or channels)
  if (reference.image_size, reference.channels) != (image_size, channels):
    logging.warning("The generator makes %dx%dx%d images but the reference is %dx%dx%d; the "
                    "extractor resizes both, but scores are only meaningful at matching sizes.",
                    image_size, image_size, channels, reference.image_size,
                    reference.image_size, reference.channels)
  evaluator = metrics.build_evaluator(
      reference, z_dim=z_dim, extractor=FLAGS.extractor, num_samples=FLAGS.num_samples,
      batch_size=FLAGS.batch_size, seed=FLAGS.seed, cache_dir=FLAGS.cache_dir,
      inception_path=FLAGS.inception_path, classifier_data=full,
      max_reference_images=FLAGS.max_reference_images)
  scores = evaluator.evaluate(lambda z: serve(z=z)["images"])
  result = dict(scores, export_dir=os.path.abspath(export_dir), dataset=reference.name,
                extractor=evaluator.extractor.cache_id, num_samples=FLAGS.num_samples,
                num_reference=evaluator.reference.num_images, seed=FLAGS.seed, z_dim=z_dim,
                image_size=image_size, channels=channels,
                seconds=round(time.monotonic() - start, 2))
  text = json.dumps(result, indent=2)
  print(text)
  if FLAGS.json_out:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.json_out)), exist_ok=True)
    with open(FLAGS.json_out, "w") as f:
      f.write(text + "\n")
  return 0


def run() -> None:
  """Entry point of ``regan-eval`` (and ``python tools/eval.py``)."""
  cli.run_command(main, flag_modules=[__name__, "regan_tf.commands.fid_stats"])


if __name__ == "__main__":
  run()
