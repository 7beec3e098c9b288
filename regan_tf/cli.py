"""One error path for every command: a user-caused failure is one line and an exit status.

Exit statuses (``regan_tf.train`` and the tools):

- 0: done.
- 1: training failed (non-finite values, a divergence stop), or a bug: the
  traceback is printed.
- 2: a bad flag or argument, configuration, input or environment (a typo, a missing file, an
  unreachable dataset, a run directory in use, a full or read-only disk): one
  line naming the fix; ``--traceback`` prints the trace too.
- 128 + N: stopped by signal N after saving a checkpoint (130 for Ctrl-C,
  143 for SIGTERM, 138 for SIGUSR1); rerun to resume.

Library modules raise ordinary exceptions; only entry points use this module.
"""

from __future__ import annotations

import os
import sys
import traceback as traceback_lib
from typing import Callable, Sequence

from regan_tf import safety

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USER_ERROR", "quiet_tensorflow", "run_command", "run_reporting_errors",
           "user_errors"]

EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR = 0, 1, 2


def user_errors() -> tuple:
  """The exception types a user causes and can fix: bad values, files, the network, the disk.

  TensorFlow reports file and disk problems as its own OpErrors. Imported here,
  not at module level, so that an entry point can report flag errors without
  loading TensorFlow.
  """
  from regan_tf.compat import tf  # pylint: disable=g-import-not-at-top
  return (ValueError, OSError, RuntimeError, safety.WorkdirLocked, tf.errors.NotFoundError,
          tf.errors.PermissionDeniedError, tf.errors.DataLossError, tf.errors.ResourceExhaustedError,
          tf.errors.FailedPreconditionError)


def quiet_tensorflow() -> None:
  """Loads TensorFlow with its known-benign console noise filtered.

  TensorFlow's C++ libraries print notices while they load (oneDNN, CUDA
  probing on a GPU-less machine), before any log-level setting applies, so
  the process's stderr is pointed at /dev/null for the import alone; a failing
  import still raises its Python exception afterwards. Later C++ lines below
  FATAL, TensorFlow's Python-side INFO lines (checkpoint sharding timings,
  SavedModel notices) and deprecation warnings of its internals are filtered
  too. Every command calls it before TensorFlow loads (``regan-train``,
  ``regan-flops`` and ``regan-compare`` unless ``--verbose``).
  """
  import logging as python_logging  # pylint: disable=g-import-not-at-top
  import warnings  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  import regan_tf  # pylint: disable=g-import-not-at-top
  if not regan_tf.TF_LOG_LEVEL_FROM_USER:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
  warnings.filterwarnings("ignore", category=DeprecationWarning)
  warnings.filterwarnings("ignore", category=FutureWarning)
  sys.stderr.flush()
  saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  try:
    from regan_tf.compat import tf  # pylint: disable=g-import-not-at-top
  finally:
    os.dup2(saved, 2)
    os.close(saved)
    os.close(devnull)
  tf.get_logger().setLevel(python_logging.ERROR)
  from regan_tf import hooks  # pylint: disable=g-import-not-at-top
  logging.get_absl_handler().addFilter(hooks.drop_library_info)  # TF logs some INFO lines through absl


def _report(error: BaseException, show_traceback: bool) -> None:
  if show_traceback:
    traceback_lib.print_exception(type(error), error, error.__traceback__)
  message = str(error) or type(error).__name__
  print(f"error: {message}", file=sys.stderr)
  if not show_traceback:
    print("(rerun with --traceback for the full trace)", file=sys.stderr)


def run_reporting_errors(main: Callable[[], int], *, show_traceback: bool = False) -> int:
  """Runs ``main()`` and turns its failures into the exit statuses above."""
  try:
    return main()
  except Exception as e:  # pylint: disable=broad-except
    if isinstance(e, safety.TrainingInterrupted):
      return e.exit_status  # the trainer said what it saved, in one line
    if isinstance(e, FloatingPointError):
      _report(e, show_traceback)
      return EXIT_FAILED
    if isinstance(e, user_errors()):
      _report(e, show_traceback)
      return EXIT_USER_ERROR
    raise
  except KeyboardInterrupt:
    print("error: interrupted; nothing saved since the last checkpoint.", file=sys.stderr)
    return 130


def run_command(main: Callable[[Sequence[str]], int], *, flag_modules: Sequence[str],
                report_errors: bool = True) -> None:
  """Parses the flags, runs ``main(argv)`` and exits with its status (absl's ``app.run`` plus the help text).

  With ``report_errors``, ``main``'s failures become the exit statuses above (its module's ``--traceback``
  flag shows the trace); a ``main`` that reports its own errors passes False.

  A flag absl cannot parse (unknown, or a bad value) and a ``UsageError`` from ``main`` (stray arguments)
  exit with 2 and one line, like every other user error (absl alone prints the help text and exits with 1).

  absl's ``--help`` prints the ``__main__`` module's docstring and key flags. Run as a console script or
  through ``tools/<name>.py``, ``__main__`` is that small wrapper, so the command's own module (the first
  of ``flag_modules``) lends it its docstring, and the flags defined in ``flag_modules`` become key flags.
  """
  from absl import app  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  main_module = sys.modules.get("__main__")
  if main_module is not None and main_module.__name__ != flag_modules[0]:
    main_module.__doc__ = sys.modules[flag_modules[0]].__doc__
    for name in flag_modules:
      for flag in flags.FLAGS.get_flags_for_module(name):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)

  def parse_flags(argv: Sequence[str]) -> Sequence[str]:
    # absl's own parser prints "FATAL Flags parsing error" and exits with 1; a flag error is the user's (2).
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:
      print(f"error: {' '.join(str(e).split())} (--help lists the flags)", file=sys.stderr)
      sys.exit(EXIT_USER_ERROR)

  def checked_main(argv: Sequence[str]) -> int:
    # absl answers a UsageError (stray arguments, a missing flag) with the whole help text and exit 1.
    # Caught here, before run_reporting_errors, whose error types would load TensorFlow.
    try:
      return main(argv)
    except app.UsageError as e:
      print(f"error: {e} (--help lists the flags)", file=sys.stderr)
      return EXIT_USER_ERROR

  def reporting_main(argv: Sequence[str]) -> int:
    return run_reporting_errors(lambda: checked_main(argv), show_traceback=flags.FLAGS.traceback)

  app.run(lambda argv: sys.exit((reporting_main if report_errors else checked_main)(argv)),
          flags_parser=parse_flags)
