"""What keeps a run safe from the world around it: signals, a second process, changed configs.

- :class:`StopSignals`: SIGINT, SIGTERM and SIGUSR1 (what Ctrl-C, SLURM,
  Kubernetes and cloud preemption send) become a request to stop at the next
  step boundary; the loop then saves a checkpoint labelled with the step whose
  state it holds and raises :class:`TrainingInterrupted`. A second SIGINT
  aborts at once, without saving.
- :class:`WorkdirLock`: one live process per run directory (an advisory
  ``flock`` the kernel releases when the holder dies, so a lock left by a killed
  process is taken over).
- :func:`config_diff`: the bindings a resumed run's operative gin config
  changes relative to the one the run was started (or last resumed) with.
- :func:`remove_stale_temporaries`: export and file temporaries a killed
  process left behind.

Hand-written: TensorFlow has no preemption handling for custom loops outside
``tf.distribute`` clusters, and Python's ``signal`` and ``fcntl`` are the tools.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import glob
import os
import re
import shutil
import signal
import threading
from typing import Dict, List, Optional, Sequence, Tuple

from absl import logging

__all__ = ["ConfigChange", "ConfigurationChanged", "StopSignals", "TrainingInterrupted", "WorkdirLocked",
           "WorkdirLock", "config_diff", "parse_bindings", "remove_stale_temporaries"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class TrainingInterrupted(Exception):
  """The run stopped on a signal, after saving a checkpoint of the state at ``step``.

  Attributes:
    signum: the signal.
    step: the steps done, which label the saved checkpoint.
    path: the checkpoint written (None if nothing was saved).
    exit_status: ``128 + signum`` (130 for SIGINT, 143 for SIGTERM), as a shell reports it.
  """

  def __init__(self, signum: int, step: int, path: Optional[str]):
    self.signum, self.step, self.path = signum, step, path
    self.exit_status = 128 + int(signum)
    super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; saved {path}. "
                     "Rerun the same command to resume.")


class StopSignals:
  """A context in which stop signals request a stop instead of killing the process.

  Handlers are installed only in the main thread (Python allows no other); in
  any other thread the context does nothing and :attr:`requested` stays None.
  """

  def __init__(self, signals: Sequence[int] = STOP_SIGNALS):
    self._signals = tuple(signals)
    self._previous: Dict[int, object] = {}
    self.requested: Optional[int] = None

  def _handle(self, signum: int, frame) -> None:  # pylint: disable=unused-argument
    if self.requested is not None and signum == signal.SIGINT:
      raise KeyboardInterrupt  # a second Ctrl-C: the user wants out now
    if self.requested is None:
      self.requested = signum
      logging.warning("Got %s: stopping after the current step and saving a checkpoint (Ctrl-C again to "
                      "abort without saving).", signal.Signals(signum).name)

  def __enter__(self) -> "StopSignals":
    if threading.current_thread() is threading.main_thread():
      for signum in self._signals:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    self._previous.clear()


class WorkdirLocked(RuntimeError):
  """Another live process holds the run directory."""


class WorkdirLock:
  """An exclusive advisory lock on ``workdir/.lock``, holding this process's PID.

  ``acquire`` fails at once (:class:`WorkdirLocked`, naming the holder's PID)
  when another live process holds it. The kernel drops a ``flock`` when its
  holder exits or is killed, so a lock file left by a dead process is simply
  taken over.
  """

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, ".lock")
    self._fd: Optional[int] = None

  def acquire(self) -> None:
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
      os.close(fd)
      if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        raise WorkdirLocked(f"the run directory {os.path.dirname(self.path)} is in use by process {holder} "
                            f"(lock {self.path}); wait for it to finish, stop it, or use another --workdir.") from None
      raise
    previous = os.read(fd, 64).decode(errors="replace").strip()
    if previous and previous != str(os.getpid()):
      logging.info("Took over the lock of process %s, which is no longer running.", previous)
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, str(os.getpid()).encode())
    self._fd = fd

  @property
  def held(self) -> bool:
    """Whether this object holds the lock now."""
    return self._fd is not None

  def release(self) -> None:
    if self._fd is not None:
      fcntl.flock(self._fd, fcntl.LOCK_UN)
      os.close(self._fd)
      self._fd = None

  def __enter__(self) -> "WorkdirLock":
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def remove_stale_temporaries(workdir: str) -> List[str]:
  """Removes ``export.tmp-*`` folders and ``*.tmp-<pid>`` files a killed writer left (also in ``best/``).

  Call with the :class:`WorkdirLock` held: no live process of this run is
  writing them then. Returns the removed paths.
  """
  removed = []
  paths = glob.glob(os.path.join(workdir, "*.tmp-*")) + glob.glob(os.path.join(workdir, "best", "*.tmp-*"))
  for path in paths:
    if not re.search(r"\.tmp-\d+$", path):
      continue
    if os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    else:
      with contextlib.suppress(OSError):
        os.remove(path)
    removed.append(path)
  if removed:
    logging.info("Removed %d temporary file(s) a stopped process left: %s", len(removed),
                 ", ".join(os.path.basename(p) for p in removed))
  return removed


# ----------------------------------------------------------------------------
# Operative configuration on resume
# ----------------------------------------------------------------------------

_BINDING = re.compile(r"^([A-Za-z_][\w./]*(?:\.[A-Za-z_]\w*)?)\s*=\s*(.*)$")

# Settings a resumed run may change freely (the change is still logged): when
# and what the run writes, and its length (training longer or shorter is the
# commonest reason to rerun a finished run; the steps already done stay as they were).
CADENCE_BINDINGS = frozenset(
    f"train.{name}" for name in ("log_every", "image_every", "checkpoint_every", "keep_checkpoints",
                                 "num_grid_images", "eval_every", "export", "export_best", "profile_steps",
                                 "divergence_guard", "train_steps", "train_epochs",
                                 # Where the steps run, not what they compute:
                                 "tpu"))


def parse_bindings(text: str) -> Dict[str, str]:
  """``{'train.batch_size': '64', ...}`` from a gin operative config (values as text).

  Comments and blank lines are dropped; a value spanning several lines (a
  list or dict) is joined, with white space folded, so formatting alone never
  counts as a change.
  """
  bindings: Dict[str, str] = {}
  current: Optional[str] = None
  for raw in text.splitlines():
    # Only whole-line comments: a '#' inside a value (a path, a string) is kept.
    line = "" if raw.lstrip().startswith("#") else raw.rstrip()
    if not line.strip():
      continue
    match = _BINDING.match(line) if not line[0].isspace() else None
    if match:
      current = match.group(1)
      bindings[current] = match.group(2).strip()
    elif current is not None:
      bindings[current] += " " + line.strip()
  return {name: " ".join(value.split()) for name, value in bindings.items()}


@dataclasses.dataclass(frozen=True)
class ConfigChange:
  """One binding that differs: ``old`` or ``new`` is None when it is absent on that side."""
  name: str
  old: Optional[str]
  new: Optional[str]

  def __str__(self) -> str:
    return f"{self.name}: {self.old if self.old is not None else '(unset)'} -> " \
           f"{self.new if self.new is not None else '(unset)'}"


def config_diff(old_text: str, new_text: str) -> Tuple[List[ConfigChange], List[ConfigChange]]:
  """The bindings that changed between two operative configs: ``(cadence_only, others)``.

  ``cadence_only`` holds changes in :data:`CADENCE_BINDINGS` (safe on resume);
  ``others`` everything else (the trained state would differ from the run's).
  """
  old, new = parse_bindings(old_text), parse_bindings(new_text)
  changes = [ConfigChange(name, old.get(name), new.get(name)) for name in sorted(set(old) | set(new))
             if old.get(name) != new.get(name)]
  cadence = [c for c in changes if c.name in CADENCE_BINDINGS]
  return cadence, [c for c in changes if c.name not in CADENCE_BINDINGS]


class ConfigurationChanged(ValueError):
  """A resumed run's configuration differs from the run's in a way that changes training."""
