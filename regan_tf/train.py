r"""Trains a GAN (dense or Re-GAN) from gin files.

    python -m regan_tf.train --gin_file=gin/regan_digits.gin --workdir=runs/digits
    python -m regan_tf.train --gin_file=gin/sngan_cifar.gin \
        --gin_bindings="train.train_steps = 1000" --workdir=runs/cifar

Rerunning the same command resumes from the latest checkpoint in --workdir
(a resume whose configuration changed is refused without --allow_config_change).
Ctrl-C, SIGTERM and SIGUSR1 stop after the current step with a checkpoint.

Exit statuses (``regan_tf.cli``): 0 done; 1 training failed (non-finite values,
divergence stop) or a bug; 2 a bad configuration, input or environment (one
line naming the fix, reported before anything is written where it can be;
--traceback for the trace); 128 + N stopped by signal N after a checkpoint
(130 Ctrl-C, 143 SIGTERM).
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from typing import List, Sequence

from absl import app
from absl import flags
from absl import logging
import gin

from regan_tf import cli
from regan_tf import configurables

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", [], "Gin file(s) to parse, in order; later files override earlier.")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. 'train.train_steps = 100'.")
flags.DEFINE_string("workdir", None, "Run directory (checkpoints, TensorBoard, samples, export).")
flags.DEFINE_bool("traceback", False, "On a configuration or input error, print the full traceback.")
flags.DEFINE_bool("allow_config_change", False,
                  "Resume a run even though its configuration changed (the change is logged and kept in "
                  "operative_config-<step>.gin); without it such a resume is refused.")


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
  """Names the closest valid configurable or parameter for gin's two typo errors."""
  registered = dict(_registered())
  lines = []
  unknown = re.search(r"No configurable matching '([^']+)'", message)
  if unknown:
    close = difflib.get_close_matches(unknown.group(1), sorted(registered), n=3)
    if close:
      lines.append(f"did you mean {' or '.join(close)}?")
  bad_param = re.search(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'", message)
  if bad_param:
    name, param = bad_param.groups()
    valid = _parameters(registered[name]) if name in registered else []
    close = difflib.get_close_matches(param, valid, n=3)
    if close:
      lines.append(f"did you mean {' or '.join(f'{name}.{c}' for c in close)}?")
    if valid:
      lines.append(f"Parameters of {name}: {', '.join(valid)}")
  lines.append("Configurables: " + ", ".join(sorted(registered)))
  return "\n".join(lines)


def _registered():
  """Yields (name a gin file uses, function) for regan_tf's configurables."""
  # pylint: disable=protected-access
  for _, configurable in gin.config._REGISTRY.items():
    if configurable.module == "gin":
      continue
    short = configurable.module in ("", getattr(configurable.wrapped, "__module__", None))
    yield (configurable.name if short else f"{configurable.module}.{configurable.name}",
           configurable.wrapped)


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

  def train_run() -> int:
    result = configurables.train(workdir=FLAGS.workdir, config_text=gin.operative_config_str,
                                 allow_config_change=FLAGS.allow_config_change)
    logging.info("Done at step %d; export: %s", result.step, result.export_dir)
    return 0

  return cli.run_reporting_errors(train_run, show_traceback=FLAGS.traceback)


def run() -> None:
  app.run(lambda argv: sys.exit(main(argv)))


if __name__ == "__main__":
  run()
