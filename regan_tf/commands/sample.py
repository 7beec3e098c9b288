r"""Samples images from an exported regan_tf generator (a SavedModel), as a PNG grid.

    regan-sample --export_dir=runs/digits --out=runs/digits/samples.png \
        [--seeds=0-63] [--trunc=0.7] [--interpolate=8] [--which=best] [--singles_dir=DIR]

``--export_dir`` is a run folder (the training --workdir: its export/, or with
``--which=best`` its best/export) or an export folder.

Latents: ``--seeds`` (ranges and comma lists, ``0-63`` or ``1,5,9`` or
``0-3,10``) draws one latent per seed, so an image depends only on its own
seed (the same as ``regan_tf.load(...).sample(seeds=...)``). Without
``--seeds``, ``--num`` latents are drawn as one stream from ``--seed`` (as
before ``--seeds`` existed; its first image is ``--seeds=<seed>``'s).

Truncation (``--trunc``, psi; 1 = none): StyleGAN2 truncates in w space around
the average w it tracked while training, ``w' = w_avg + psi (w - w_avg)``;
every other architecture truncates z by scaling it towards 0, ``z' = psi z``.

Interpolation (``--interpolate=N``): one grid row per pair of consecutive seeds,
from the first seed's image to the second's with N images between them
(spherical interpolation of the z latents), so the grid has len(seeds) - 1
rows of N + 2 images.

Loads the SavedModel with TensorFlow; flags are checked before TensorFlow loads.
"""

from __future__ import annotations

import json
import math
import os
import sys

from absl import flags

# regan_tf.images needs only NumPy and Pillow; regan_tf.sampling's checks import no TensorFlow.
from regan_tf import cli
from regan_tf import commands
from regan_tf import images as images_lib
from regan_tf import sampling as sampling_lib

FLAGS = flags.FLAGS
flags.DEFINE_bool("traceback", False, "On an error, print the full traceback.")
commands.define_export_flags(__name__)
flags.DEFINE_string("out", "samples.png", "Path of the PNG grid to write.")
flags.DEFINE_string("seeds", None, "Seeds, one latent (image) each: ranges and comma lists, e.g. 0-63 or 1,5,9 "
                    "or 0-3,10 (ranges include both ends). Overrides --num/--seed.")
flags.DEFINE_integer("num", 64, "Without --seeds: number of images, drawn as one stream from --seed.")
flags.DEFINE_integer("seed", 0, "Without --seeds: the seed of the --num latents.")
flags.DEFINE_float("trunc", 1.0, "Truncation psi (1: none, 0: the average image; 0.7 is common). StyleGAN2 "
                   "truncates w towards the average w tracked in training (w_avg + psi (w - w_avg)); other "
                   "architectures scale z towards 0 (psi z).")
flags.DEFINE_integer("interpolate", 0, "If > 0: images between consecutive seeds (spherical interpolation of z); "
                     "one grid row per pair of seeds, N + 2 images wide. Needs at least two seeds.")
flags.DEFINE_integer("columns", 0, "Images per grid row (0: square-ish; with --interpolate: a row per pair).")
flags.DEFINE_string("singles_dir", None, "If set, also write each image as its own PNG here "
                    "(seed<seed>.png with --seeds, else NNNNN.png).")


def _error(message: str) -> int:
  print(f"error: {message}", file=sys.stderr)
  return cli.EXIT_USER_ERROR


def main(argv):
  del argv
  # Every check before TensorFlow loads.
  try:
    seeds = sampling_lib.parse_seeds(FLAGS.seeds) if FLAGS.seeds is not None else None
  except ValueError as e:
    return _error(f"--seeds: {e}")
  try:
    export_dir = commands.export_from_flags()
  except ValueError as e:
    return _error(str(e))
  if seeds is None and FLAGS.num < 1:
    return _error(f"--num must be >= 1, got {FLAGS.num}.")
  if not math.isfinite(FLAGS.trunc):
    return _error(f"--trunc must be a finite number, got {FLAGS.trunc}; 1 is no truncation.")
  if FLAGS.interpolate < 0:
    return _error(f"--interpolate must be >= 0 (images between two seeds), got {FLAGS.interpolate}.")
  if FLAGS.interpolate and (seeds is None or len(seeds) < 2):
    return _error("--interpolate needs --seeds with at least two seeds (e.g. --seeds=0-3).")
  if FLAGS.columns < 0:
    return _error(f"--columns must be >= 0, got {FLAGS.columns}.")

  cli.quiet_tensorflow()
  from regan_tf.compat import tf  # pylint: disable=g-import-not-at-top
  sampler = sampling_lib.load(export_dir)
  columns = FLAGS.columns or None
  names = None
  if FLAGS.interpolate:
    frames = sampler.interpolate(seeds, steps=FLAGS.interpolate, trunc=FLAGS.trunc)
    images = frames.reshape((-1,) + frames.shape[2:])
    columns = FLAGS.columns or frames.shape[1]
    names = [f"seed{a}-{b}_{k:03d}.png" for a, b in zip(seeds, seeds[1:]) for k in range(frames.shape[1])]
  elif seeds is not None:
    images = sampler.sample(seeds, trunc=FLAGS.trunc)
    names = [f"seed{s}.png" for s in seeds]
  else:
    z = tf.random.stateless_normal([FLAGS.num, sampler.z_dim], seed=[FLAGS.seed, 0]).numpy()
    images = sampler.generate(z, trunc=FLAGS.trunc)
  grid = images_lib.make_grid(images, columns=columns)
  images_lib.write_png(FLAGS.out, grid)
  print(json.dumps({"grid": os.path.abspath(FLAGS.out), "export_dir": os.path.abspath(export_dir),
                    "num": int(images.shape[0]), "shape": list(images.shape), "trunc": FLAGS.trunc,
                    "truncation": sampler.truncation, "min": float(images.min()), "max": float(images.max())}))
  if FLAGS.singles_dir:
    for i, image in enumerate(images_lib.to_uint8(images)):
      name = names[i] if names else f"{i:05d}.png"
      images_lib.write_png(os.path.join(FLAGS.singles_dir, name), image)
  return 0


def run() -> None:
  """Entry point of ``regan-sample`` (and ``python tools/sample.py``)."""
  cli.run_command(main, flag_modules=[__name__])


if __name__ == "__main__":
  run()
