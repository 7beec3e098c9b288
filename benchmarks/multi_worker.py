r"""Multi-worker overhead: 2 workers on 127.0.0.1 vs 1 process with 2 replicas, images/s.

    nice -n 5 python benchmarks/multi_worker.py                  # the main job's networks, dense, 100 steps
    python benchmarks/multi_worker.py --steps=40 --repeats=1     # quick

Both set-ups run ``python -m regan_tf.train`` on gin/regan_digits.gin (32x32
digits, DCGAN 16 channels, global batch 64, one D step per G step) without
Re-GAN, evaluation, sample grids or export, so the figure is the training loop:

- one process, ``train.strategy = 'mirrored'`` over ``train.cpu_devices = 2``
  logical CPUs (MirroredStrategy, all-reduce inside the process);
- two processes with ``TF_CONFIG`` on free localhost ports,
  ``train.strategy = 'multi_worker'`` (MultiWorkerMirroredStrategy, one CPU
  replica each, gRPC collectives between them).

Each process gets ``--threads`` intra-op threads per replica (the one-process
run gets twice as many), so both use the same cores. The rate is the median of
the chief's ``images_per_sec`` in metrics.jsonl, leaving out the first log
step (tracing). The set-ups alternate ``--repeats`` times, so a load change
hits both. Prints figures; not a test.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from typing import List

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 100, "Generator steps per run.", lower_bound=20)
flags.DEFINE_integer("log_every", 10, "Steps per images/s reading.", lower_bound=1)
flags.DEFINE_integer("repeats", 2, "Runs of each set-up, alternated.", lower_bound=1)
flags.DEFINE_integer("threads", 1, "Intra-op threads per replica.", lower_bound=1)
flags.DEFINE_integer("timeout", 900, "Seconds before a run is killed.", lower_bound=60)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIN = os.path.join(REPO, "gin", "regan_digits.gin")


def _bindings(strategy: str) -> List[str]:
  return [f"train.strategy = '{strategy}'", "train.pruning = None", "train.evaluation = None",
          f"train.train_steps = {FLAGS.steps}", f"train.log_every = {FLAGS.log_every}",
          "train.image_every = 1000000", "train.checkpoint_every = 1000000", "train.export = False"]


def _command(workdir: str, bindings: List[str]) -> List[str]:
  return [sys.executable, "-m", "regan_tf.train", f"--gin_file={GIN}", f"--workdir={workdir}",
          *[f"--gin_bindings={b}" for b in bindings]]


def _env(threads: int, **extra: str) -> dict:
  return dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_NUM_INTRAOP_THREADS=str(threads),
              TF_NUM_INTEROP_THREADS="1", **extra)


def _rate(workdir: str) -> float:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f if '"kind": "log"' in line]
  return statistics.median(r["images_per_sec"] for r in rows[1:])


def _free_ports(n: int) -> List[int]:
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def one_process(workdir: str) -> float:
  subprocess.run(_command(workdir, _bindings("mirrored") + ["train.cpu_devices = 2"]), cwd=REPO,
                 env=_env(2 * FLAGS.threads), check=True, timeout=FLAGS.timeout, capture_output=True)
  return _rate(workdir)


def two_workers(workdir: str) -> float:
  cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
  procs = []
  try:
    for index in range(2):
      config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
      procs.append(subprocess.Popen(_command(workdir, _bindings("multi_worker")), cwd=REPO,
                                    env=_env(FLAGS.threads, TF_CONFIG=config), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL))
    for proc in procs:
      if proc.wait(timeout=FLAGS.timeout) != 0:
        raise RuntimeError(f"worker exited with {proc.returncode}; rerun its command to see why")
  finally:
    for proc in procs:
      if proc.poll() is None:
        proc.kill()
  return _rate(workdir)


def main(argv) -> int:
  del argv
  print(f"load before: {os.getloadavg()}")
  single, multi = [], []
  with tempfile.TemporaryDirectory() as tmp:
    for i in range(FLAGS.repeats):
      single.append(one_process(os.path.join(tmp, f"single{i}")))
      multi.append(two_workers(os.path.join(tmp, f"multi{i}")))
      print(f"repeat {i}: 1 process x 2 replicas {single[-1]:.1f} images/s; 2 workers {multi[-1]:.1f} images/s")
  s, m = statistics.median(single), statistics.median(multi)
  print(f"1 process, 2 replicas (MirroredStrategy)     {s:8.1f} images/s  (median of {len(single)})")
  print(f"2 workers on localhost (MultiWorkerMirrored)  {m:8.1f} images/s  (median of {len(multi)})")
  print(f"2 workers / 1 process                          {m / s:8.3f}")
  print(f"load after: {os.getloadavg()}")
  return 0


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)))
