r"""Trains a GAN (dense or Re-GAN) from gin files.

    python -m regan_tf.train --gin_file=gin/regan_digits.gin --workdir=runs/digits
    python -m regan_tf.train --gin_file=gin/sngan_cifar.gin \
        --gin_bindings="train.train_steps = 1000" --workdir=runs/cifar

Rerunning the same command resumes from the latest checkpoint in --workdir.
A configuration error (unknown name, misspelled parameter, bad value) is
reported before anything is written, with exit status 2.
"""

from __future__ import annotations

import difflib
import os
import sys
import traceback
from typing import List, Sequence

from absl import app
from absl import flags
from absl import logging
import gin

from regan_tf import configurables

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", [], "Gin file(s) to parse, in order; later files override earlier.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. 'train.train_steps = 100'.")
flags.DEFINE_string("workdir", None, "Run directory (checkpoints, TensorBoard, samples, export).")
flags.DEFINE_bool("traceback", False, "On a configuration or input error, print the full traceback.")


class ConfigError(Exception):
  """A gin file or binding that cannot be applied."""


def parse_gin(gin_files: Sequence[str], bindings: Sequence[str]) -> None:
  """Parses gin files and bindings, turning gin's errors into ConfigError.

  Each file's directory is added to gin's search path, so ``include`` lines
  resolve relative to the including file.
  """
  for path in gin_files:
    if not os.path.exists(path):
      raise ConfigError(f"--gin_file {path!r} does not exist (looked from {os.getcwd()}).")
    gin.add_config_file_search_path(os.path.dirname(os.path.abspath(path)))
  try:
    gin.parse_config_files_and_bindings(list(gin_files), list(bindings), finalize_config=True)
  except (ValueError, KeyError, TypeError, SyntaxError, OSError, ImportError) as e:
    raise ConfigError(f"{e}\n{_suggestion(str(e))}") from e


def _suggestion(message: str) -> str:
  """Names close matches for a misspelled configurable or parameter."""
  known = sorted({name for name, _ in _registered()})
  words = [w.strip("'\".,:") for w in message.replace("'", " ' ").split()]
  hints: List[str] = []
  for word in words:
    if "." in word or word.isidentifier():
      close = difflib.get_close_matches(word, known, n=3)
      if close and word not in known:
        hints.append(f"did you mean {', '.join(close)} (instead of {word!r})?")
  params = {p for _, f in _registered() for p in _parameters(f)}
  for word in words:
    if word.isidentifier() and word not in params:
      close = difflib.get_close_matches(word, sorted(params), n=3, cutoff=0.8)
      if close:
        hints.append(f"did you mean parameter {', '.join(close)} (instead of {word!r})?")
  listing = "Configurables: " + ", ".join(known)
  return "\n".join(hints[:3] + [listing])


def _registered():
  # pylint: disable=protected-access
  for selector, configurable in gin.config._REGISTRY.items():
    yield selector, configurable.wrapped


def _parameters(fn) -> List[str]:
  import inspect  # pylint: disable=g-import-not-at-top
  try:
    return list(inspect.signature(fn).parameters)
  except (TypeError, ValueError):
    return []


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.workdir:
    print("error: --workdir is required (the run directory; rerun with the same one to resume).",
          file=sys.stderr)
    return 2
  try:
    parse_gin(FLAGS.gin_file, FLAGS.gin_bindings)
  except ConfigError as e:
    print(f"error: invalid gin configuration: {e}", file=sys.stderr)
    return 2
  logging.info("Gin configuration:\n%s", gin.config_str())
  try:
    result = configurables.train(workdir=FLAGS.workdir, config_text=gin.operative_config_str)
  except (ValueError, FileNotFoundError, NotADirectoryError, RuntimeError, FloatingPointError) as e:
    if FLAGS.traceback:
      traceback.print_exc()
    print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
    if not FLAGS.traceback:
      print("(rerun with --traceback for the full trace)", file=sys.stderr)
    return 1
  logging.info("Done at step %d; export: %s", result.step, result.export_dir)
  return 0


def run() -> None:
  app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
  run()
