r"""Samples images from an exported regan_tf generator (a SavedModel).

    regan-sample --export_dir=runs/digits/export --out=runs/digits/samples.png \
        [--num=64] [--seed=0] [--singles_dir=DIR]

Loads the SavedModel with plain TensorFlow: Keras 2 and TFMOT are not needed.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app
from absl import flags

# regan_tf.images needs only NumPy and Pillow; importing it does not load Keras.
from regan_tf import cli
from regan_tf import images as images_lib

FLAGS = flags.FLAGS
flags.DEFINE_bool("traceback", False, "On an error, print the full traceback.")
flags.DEFINE_string("export_dir", None, "Directory of the exported SavedModel (workdir/export).")
flags.DEFINE_string("out", "samples.png", "Path of the PNG grid to write.")
flags.DEFINE_integer("num", 64, "Number of images.")
flags.DEFINE_integer("seed", 0, "Seed of the latent vectors.")
flags.DEFINE_integer("columns", 0, "Images per grid row (0: square-ish).")
flags.DEFINE_string("singles_dir", None, "If set, also write each image as its own PNG here.")


def main(argv):
  del argv
  if not FLAGS.export_dir or not os.path.exists(os.path.join(FLAGS.export_dir, "saved_model.pb")):
    print(f"error: --export_dir={FLAGS.export_dir!r} is not a SavedModel directory (expected "
          "saved_model.pb inside; training writes it to <workdir>/export).", file=sys.stderr)
    return 2
  if FLAGS.num < 1:
    print(f"error: --num must be >= 1, got {FLAGS.num}.", file=sys.stderr)
    return 2
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from regan_tf import export as export_lib  # pylint: disable=g-import-not-at-top
  sampler = export_lib.load_export(FLAGS.export_dir)
  serve = sampler.signatures["serving_default"]
  z_dim = int(serve.structured_input_signature[1]["z"].shape[-1])
  z = tf.random.stateless_normal([FLAGS.num, z_dim], seed=[FLAGS.seed, 0])
  images = serve(z=z)["images"].numpy()
  grid = images_lib.make_grid(images, columns=FLAGS.columns or None)
  images_lib.write_png(FLAGS.out, grid)
  print(json.dumps({"grid": os.path.abspath(FLAGS.out), "num": FLAGS.num, "shape": list(images.shape),
                    "min": float(images.min()), "max": float(images.max())}))
  if FLAGS.singles_dir:
    for i, image in enumerate(images_lib.to_uint8(images)):
      images_lib.write_png(os.path.join(FLAGS.singles_dir, f"{i:05d}.png"), image)
  return 0


def run() -> None:
  """Entry point of ``regan-sample`` (and ``python tools/sample.py``)."""
  app.run(lambda argv: sys.exit(cli.run_reporting_errors(lambda: main(argv), show_traceback=FLAGS.traceback)))


if __name__ == "__main__":
  run()
