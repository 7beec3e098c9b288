"""train.strategy = 'multi_worker' and 'tpu' (issue 20).

The end-to-end tests start two ``python -m regan_tf.train`` processes on
127.0.0.1 with ``TF_CONFIG`` (one CPU device each), as two machines would run,
on the main job shrunk to seconds through a dense, a sparse and a dense phase.
Collective ops hang when a peer dies, so every process runs in its own
process group under a timeout and the whole group is killed on the way out.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import List

import numpy as np
import pytest

from conftest import MAIN_GIN, REPO, TINY_MAIN_JOB, load_export_in_fresh_process, run_python

TINY = [
    *TINY_MAIN_JOB,
    "regan.warmup = 2",  # dense 0-1, sparse 2-3, dense 4-5
    "regan.g = 2",
    "regan.final_phase = None",
    "train.train_steps = 6",
    "train.evaluation = None",
    "train.checkpoint_every = 2",
    "train.image_every = 3",
    "train.log_every = 1",
]
# One thread each: the two runs compared below are then free of thread-order effects.
ENV = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
TIMEOUT = 240  # seconds a worker may take before the test kills it (a hang must not block CI)


def _free_ports(n: int) -> List[int]:
  socks = [socket.socket() for _ in range(n)]
  try:
    for s in socks:
      s.bind(("127.0.0.1", 0))
    return [s.getsockname()[1] for s in socks]
  finally:
    for s in socks:
      s.close()


def _args(workdir, *bindings):
  return (["-m", "regan_tf.train", f"--gin_file={MAIN_GIN}", f"--workdir={workdir}"]
          + [f"--gin_bindings={b}" for b in (*TINY, *bindings)])


@contextlib.contextmanager
def _workers(workdir, logs_dir, *bindings, run=0):
  """Starts two workers (0 is the chief) of one cluster; yields their Popen objects; kills what is left."""
  ports = _free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  procs = []
  try:
    for index in range(2):
      env = dict(os.environ, **ENV,
                 TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
      log = open(os.path.join(logs_dir, f"worker{index}-run{run}.log"), "w")
      procs.append(subprocess.Popen(
          [sys.executable, *_args(workdir, "train.strategy = 'multi_worker'", *bindings)], cwd=REPO, env=env,
          stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    yield procs
  finally:
    for proc in procs:
      if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _wait_all(procs, timeout=TIMEOUT):
  deadline = time.time() + timeout
  for proc in procs:
    try:
      proc.wait(timeout=max(deadline - time.time(), 1))
    except subprocess.TimeoutExpired:
      pass
  return [proc.poll() for proc in procs]


def _read(path):
  with open(path) as f:
    return f.read()


def _mask_digests(text):
  return re.findall(r"agree on Re-GAN's masks after the (\w+) at step (\d+) .*? \((\d+, \d+)\)", text)


@pytest.mark.slow
def test_two_workers_train_like_one_process_with_two_replicas(tmp_path):
  workdir, single = tmp_path / "run", tmp_path / "single"
  with _workers(workdir, tmp_path) as procs:
    codes = _wait_all(procs)
  logs = [_read(tmp_path / f"worker{i}-run0.log") for i in range(2)]
  assert codes == [0, 0], logs[0][-3000:] + "\n----\n" + logs[1][-3000:]

  # Only the chief wrote into the run directory; the other worker's temporary folder is gone.
  chief_log = _read(workdir / "log.txt")
  assert "with 2 replica(s) over 2 worker(s)" in chief_log
  assert "(chief)" in chief_log
  assert len(glob.glob(str(tmp_path / "**" / "metrics.jsonl"), recursive=True)) == 1
  exports = glob.glob(str(tmp_path / "**" / "saved_model.pb"), recursive=True)
  assert exports == [str(workdir / "export" / "saved_model.pb")]
  assert "worker 1 of 2 workers" in logs[1] and "(chief)" not in logs[1]
  assert not glob.glob("/tmp/regan_tf-worker1-*") or all(
      not os.path.exists(os.path.join(p, ".lock")) or os.path.getmtime(p) < os.path.getmtime(workdir / "log.txt")
      for p in glob.glob("/tmp/regan_tf-worker1-*"))

  # The masks: both workers computed the same digest at every Re-GAN event, and the collective check passed.
  digests = [_mask_digests(text) for text in logs]
  assert digests[0] and digests[0] == digests[1], digests
  assert {kind for kind, _, _ in digests[0]} >= {"mask_update", "regrow"}

  # The same configuration in one process with two replicas (MirroredStrategy over two logical CPUs).
  proc = run_python(_args(single, "train.strategy = 'mirrored'", "train.cpu_devices = 2"), env=ENV,
                    timeout=TIMEOUT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "MirroredStrategy with 2 replica(s) over 1 worker(s)" in _read(single / "log.txt")
  z = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
  two_workers = load_export_in_fresh_process(workdir / "export", z)
  one_process = load_export_in_fresh_process(single / "export", z)
  np.testing.assert_allclose(two_workers.images, one_process.images, atol=1e-4)
