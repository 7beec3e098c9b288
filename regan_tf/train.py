r"""Trains a GAN (dense or Re-GAN) from gin files.

    python -m regan_tf.train --gin_file=gin/regan_digits.gin          # into runs/regan_digits
    python -m regan_tf.train --gin_file=regan_digits --workdir=runs/digits   # a packaged config by name
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
import glob
import os
import re
import sys
from typing import Dict, List, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import gin

from regan_tf import cli

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("gin_file", [], "Gin file(s) to parse, in order; later files override earlier. A path, "
                          "or the name of a packaged config (regan_digits or regan_digits.gin; see --list_configs).")
flags.DEFINE_multi_string("gin_bindings", [], "Gin bindings, e.g. 'train.train_steps = 100'.")
flags.DEFINE_string("workdir", None, "Run directory (checkpoints, TensorBoard, samples, export); default "
                    "runs/<name of the last --gin_file> under the current directory.")
flags.DEFINE_bool("verbose", False, "Show TensorFlow's own log lines and warnings, and the gin configuration, "
                  "on the console (by default they are filtered; the configuration is in the run directory).")
flags.DEFINE_bool("list_configs", False, "List the packaged gin configs with their first header line, and exit.")
flags.DEFINE_bool("traceback", False, "On a configuration or input error, print the full traceback.")
flags.DEFINE_bool("allow_config_change", False,
                  "Resume a run even though its configuration changed (the change is logged and kept in "
                  "operative_config-<step>.gin); without it such a resume is refused.")

# Flags of training alone; regan-compare and regan-flops share this module's flags and refuse these.
TRAINING_ONLY_FLAGS = ("workdir", "list_configs", "allow_config_change")


class ConfigError(Exception):
  """A gin file or binding that cannot be applied."""


def training_only_flags_given() -> List[str]:
  """The flags of :data:`TRAINING_ONLY_FLAGS` given on the command line, as ``--name``."""
  return [f"--{name}" for name in TRAINING_ONLY_FLAGS if FLAGS[name].present]


def config_dir() -> str:
  """The folder of the gin configs shipped with regan_tf (``regan_tf.configs`` or the checkout's ``gin/``)."""
  # regan_tf.configs has no __init__.py (it is the checkout's gin/ folder), so importlib.resources sees it as a
  # namespace package; the configs are found as a folder of the regular package regan_tf instead.
  packaged = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
  if os.path.isdir(packaged):
    return packaged
  return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gin")


def list_configs() -> List[Tuple[str, str]]:
  """``(name, first header line)`` of every packaged gin config, sorted."""
  out = []
  for path in sorted(glob.glob(os.path.join(config_dir(), "*.gin"))):
    with open(path) as f:
      first = f.readline().lstrip("#").strip()
    out.append((os.path.basename(path), first))
  return out


def resolve_gin_file(name: str) -> str:
  """A ``--gin_file`` as a path: the path itself if it exists, else the packaged config of that name.

  Raises:
    ConfigError: neither exists; the message names close packaged configs.
  """
  if os.path.exists(name):
    return name
  base = os.path.basename(name)
  for candidate in (base, base + ".gin"):
    path = os.path.join(config_dir(), candidate)
    if os.path.isfile(path):
      return path
  names = [n for n, _ in list_configs()]
  close = difflib.get_close_matches(base if base.endswith(".gin") else base + ".gin", names, n=3)
  hint = f" Did you mean {' or '.join(close)}?" if close else ""
  raise ConfigError(f"--gin_file {name!r} does not exist (looked from {os.getcwd()} and among the packaged "
                    f"configs in {config_dir()}).{hint} --list_configs lists them.")


def default_workdir(gin_files: Sequence[str]) -> str:
  """``runs/<stem of the last gin file>`` under the current directory."""
  stem = os.path.splitext(os.path.basename(gin_files[-1]))[0] if gin_files else "run"
  return os.path.join("runs", stem)


def parse_gin(gin_files: Sequence[str], bindings: Sequence[str]) -> None:
  """Parses gin files and bindings, turning gin's errors into ConfigError.

  Each file's directory is added to gin's search path, so ``include`` lines
  resolve relative to the including file. Registers regan_tf's configurables
  first (this imports TensorFlow).
  """
  from regan_tf import configurables  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  paths = [resolve_gin_file(path) for path in gin_files]
  for path in paths:
    gin.add_config_file_search_path(os.path.dirname(os.path.abspath(path)))
  try:
    gin.parse_config_files_and_bindings(paths, list(bindings), finalize_config=True)
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


def _bound(name: str):
  """The value gin binds to ``name`` (e.g. ``train.precision``), or None when it is unbound."""
  try:
    return gin.query_parameter(name)
  except ValueError:
    return None


def tpu_defaults() -> Dict[str, str]:
  """``precision='mixed_bfloat16'`` when the run is on a TPU and no precision is chosen.

  bfloat16 is the TPU's native precision; ``trainer.train``'s own default
  stays float32 (every other device, and runs already started). A bound
  ``train.precision``, or ``train.mixed_precision = True`` (deprecated: it
  means ``'mixed_float16'``), is a choice and wins over this default.
  """
  if _bound("train.strategy") == "tpu" and _bound("train.precision") is None and not _bound("train.mixed_precision"):
    logging.info("TPU: train.precision defaults to 'mixed_bfloat16' (bind train.precision to change it).")
    return {"precision": "mixed_bfloat16"}
  return {}


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if FLAGS.list_configs:
    for name, first in list_configs():
      print(f"{name:<40} {first}")
    return 0
  # Everything that depends only on the flags is checked before TensorFlow loads.
  if not FLAGS.gin_file:
    print("error: --gin_file is required: a gin file, or a packaged config such as regan_digits "
          "(--list_configs lists them).", file=sys.stderr)
    return 2
  try:
    gin_files = [resolve_gin_file(path) for path in FLAGS.gin_file]
  except ConfigError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  workdir = FLAGS.workdir or default_workdir(FLAGS.gin_file)
  if not FLAGS.verbose:
    cli.quiet_tensorflow()
  try:
    parse_gin(gin_files, FLAGS.gin_bindings)
  except ConfigError as e:
    print(f"error: invalid gin configuration: {e}", file=sys.stderr)
    return 2
  if FLAGS.verbose:
    logging.info("Gin configuration:\n%s", gin.config_str())

  def train_run() -> int:
    from regan_tf import configurables  # pylint: disable=g-import-not-at-top
    result = configurables.train(workdir=workdir, config_text=gin.operative_config_str,
                                 allow_config_change=FLAGS.allow_config_change, **tpu_defaults())
    logging.info("Done at step %d; export: %s", result.step, result.export_dir)
    return 0

  return cli.run_reporting_errors(train_run, show_traceback=FLAGS.traceback)


def run() -> None:
  cli.run_command(main, flag_modules=[__name__], report_errors=False)  # main reports its own


if __name__ == "__main__":
  run()
