"""train.strategy = 'multi_worker' and 'tpu' (issue 20): regan_tf.cluster and the trainer's strategy choice.

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

import gin
import numpy as np
import pytest

from conftest import MAIN_GIN, REPO, TINY_MAIN_JOB, run_python, tiny_train_settings
from regan_tf import cluster, train, trainer
from regan_tf.compat import tf
from regan_tf.spec import RunSpec

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
def _workers(workdir, logs_dir, *bindings, run=0, workdirs=None):
  """Starts two workers (0 is the chief) of one cluster; yields their Popen objects; kills what is left.

  Their temporary folders go to ``logs_dir/tmp``; ``workdirs`` gives each its own --workdir.
  """
  ports = _free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  tmp = os.path.join(logs_dir, "tmp")
  os.makedirs(tmp, exist_ok=True)
  procs = []
  try:
    for index in range(2):
      env = dict(os.environ, **ENV, TMPDIR=tmp,
                 TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
      log = open(os.path.join(logs_dir, f"worker{index}-run{run}.log"), "w")
      procs.append(subprocess.Popen(
          [sys.executable, *_args(workdirs[index] if workdirs else workdir, "train.strategy = 'multi_worker'",
                                  *bindings)], cwd=REPO, env=env,
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
  assert os.listdir(tmp_path / "tmp") == []  # worker 1 wrote its checkpoints there, and removed them
  assert sorted(os.listdir(tmp_path)) == ["run", "tmp", "worker0-run0.log", "worker1-run0.log"]

  # The masks: both workers computed the same digest at every Re-GAN event, and the collective check passed.
  digests = [_mask_digests(text) for text in logs]
  assert digests[0] and digests[0] == digests[1], digests
  assert {kind for kind, _, _ in digests[0]} >= {"mask_update", "regrow"}

  # The same configuration in one process with two replicas (MirroredStrategy over two logical CPUs).
  proc = run_python(_args(single, "train.strategy = 'mirrored'", "train.cpu_devices = 2"), env=ENV,
                    timeout=TIMEOUT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "MirroredStrategy with 2 replica(s) over 1 worker(s)" in _read(single / "log.txt")
  z = tf.constant(np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32))
  two_workers, one_process = (tf.saved_model.load(str(d / "export")).signatures["serving_default"](z=z)["images"]
                              for d in (workdir, single))
  np.testing.assert_allclose(two_workers.numpy(), one_process.numpy(), atol=1e-4)


_READ_ROWS = """
import json, sys
from regan_tf.compat import tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()  # before any other op
from regan_tf import cluster, data
pipeline = data.make_pipeline(data.load_digits(image_size=8, channels=1), global_batch_size=8, seed=3,
                              start_batch=5, random_flip=True)
batches = iter(cluster.distribute_pipeline(strategy, pipeline, multi_worker=True))
rows = [strategy.experimental_local_results(next(batches))[0].numpy().tolist() for _ in range(3)]
json.dump(rows, open(sys.argv[1], "w"))
"""


@pytest.mark.slow
def test_each_worker_reads_its_replicas_rows_of_every_global_batch(tmp_path):
  ports = _free_ports(2)
  cluster_spec = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  procs = [subprocess.Popen([sys.executable, "-c", _READ_ROWS, str(tmp_path / f"rows{i}.json")], cwd=REPO,
                            env=dict(os.environ, **ENV, **_tf_config(cluster_spec, "worker", i)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
           for i in range(2)]
  try:
    codes = _wait_all(procs, timeout=120)
    assert codes == [0, 0], [p.stderr.read().decode()[-2000:] for p in procs if p.poll() != 0]
  finally:
    for proc in procs:
      if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
  from regan_tf import data  # pylint: disable=g-import-not-at-top
  expected = list(data.make_pipeline(data.load_digits(image_size=8, channels=1), global_batch_size=8, seed=3,
                                     start_batch=5, random_flip=True).take(3).as_numpy_iterator())
  got = [np.array(json.load(open(tmp_path / f"rows{i}.json"))) for i in range(2)]
  for k in range(3):
    # Worker w (one replica each) gets rows [4w, 4w + 4) of global batch k: together the whole batch, once.
    np.testing.assert_array_equal(np.concatenate([got[0][k], got[1][k]]), expected[k])


@pytest.mark.slow
def test_a_killed_worker_then_a_rerun_of_all_workers_resumes_from_the_last_checkpoint(tmp_path):
  workdir = tmp_path / "run"
  steps = ("train.train_steps = 60", "regan.g = 20", "train.checkpoint_every = 4", "train.log_every = 10")
  with _workers(workdir, tmp_path, *steps) as procs:
    deadline = time.time() + TIMEOUT
    while not glob.glob(str(workdir / "checkpoints" / "ckpt-8.index")):
      assert time.time() < deadline and all(p.poll() is None for p in procs), _read(tmp_path / "worker0-run0.log")
      time.sleep(0.1)
    os.killpg(procs[1].pid, signal.SIGKILL)  # a machine lost; the chief's collectives now wait for it
    procs[1].wait()
    time.sleep(1.0)  # (TensorFlow's health check would abort the chief in about a minute; _workers kills it)
  done = max(int(re.search(r"ckpt-(\d+)\.index$", p).group(1))
             for p in glob.glob(str(workdir / "checkpoints" / "ckpt-*.index")))
  assert 8 <= done < 60

  with _workers(workdir, tmp_path, *steps, run=1) as procs:
    codes = _wait_all(procs)
  logs = [_read(tmp_path / f"worker{i}-run1.log") for i in range(2)]
  assert codes == [0, 0], logs[0][-3000:] + "\n----\n" + logs[1][-3000:]
  chief_log = _read(workdir / "log.txt")
  assert f"Resuming the run in {workdir} at step {done} of 60." in chief_log
  assert f"agree on the restored step ({done})" in logs[1]
  assert "step 60/60" in chief_log
  assert (workdir / "export" / "saved_model.pb").exists()

  # A worker that does not see the run directory (here: its own, empty one) is refused on both sides.
  with _workers(workdir, tmp_path, *steps, run=2, workdirs=[workdir, tmp_path / "elsewhere"]) as procs:
    codes = _wait_all(procs)
  logs = [_read(tmp_path / f"worker{i}-run2.log") for i in range(2)]
  assert codes == [2, 2], logs[0][-3000:] + "\n----\n" + logs[1][-3000:]
  for text in logs:
    assert "The workers disagree on the restored step: [[60], [0]]" in text
  assert not (tmp_path / "elsewhere").exists()


# ----------------------------------------------------------------------------
# Fast: roles, data shares, strategy choice, TPU errors
# ----------------------------------------------------------------------------


def _tf_config(cluster_spec, task_type, index):
  return {"TF_CONFIG": json.dumps({"cluster": cluster_spec, "task": {"type": task_type, "index": index}})}


def test_role_from_tf_config_names_the_chief_as_tensorflow_does():
  workers = {"worker": ["a:1", "b:1"]}
  assert cluster.role_from_tf_config(_tf_config(workers, "worker", 0)) == cluster.WorkerRole("worker", 0, 2, True)
  assert cluster.role_from_tf_config(_tf_config(workers, "worker", 1)).is_chief is False
  with_chief = {"chief": ["c:1"], "worker": ["a:1", "b:1"]}
  assert cluster.role_from_tf_config(_tf_config(with_chief, "chief", 0)) == cluster.WorkerRole("chief", 0, 3, True)
  assert cluster.role_from_tf_config(_tf_config(with_chief, "worker", 0)).is_chief is False


@pytest.mark.parametrize("environ, message", [
    ({}, "needs the TF_CONFIG environment variable.*use train.strategy = 'mirrored'"),
    ({"TF_CONFIG": "{cluster: 1}"}, "TF_CONFIG is not valid"),
    ({"TF_CONFIG": json.dumps({"cluster": {"worker": ["a:1"]}})}, "TF_CONFIG is not valid"),
    (_tf_config({"worker": ["a:1"]}, "worker", 1), "task worker 1 is not in its cluster"),
])
def test_role_from_tf_config_rejects_a_missing_or_bad_tf_config_in_one_line(environ, message):
  with pytest.raises(ValueError, match=message) as error:
    cluster.role_from_tf_config(environ)
  assert "\n" not in str(error.value)


def test_mask_digest_tells_which_entries_are_kept():
  a = [tf.Variable([[1.0, 0.0], [1.0, 1.0]]), tf.Variable([0.0, 1.0, 1.0])]
  same = [tf.Variable([[1.0, 0.0], [1.0, 1.0]]), tf.Variable([0.0, 1.0, 1.0])]
  moved = [tf.Variable([[0.0, 1.0], [1.0, 1.0]]), tf.Variable([0.0, 1.0, 1.0])]
  # Kept positions (flat over both tensors): 0, 2, 3, 5, 6.
  np.testing.assert_array_equal(cluster.mask_digest(a).numpy(), [5, 16])
  np.testing.assert_array_equal(cluster.mask_digest(same).numpy(), cluster.mask_digest(a).numpy())
  assert cluster.mask_digest(moved).numpy().tolist() != cluster.mask_digest(a).numpy().tolist()


@pytest.mark.parametrize("kind, gpus, cpus, expected", [
    ("auto", [], ["/cpu:0"], trainer.StrategyChoice("default")),
    ("auto", ["/gpu:0", "/gpu:1"], ["/cpu:0"], trainer.StrategyChoice("mirrored", ("/gpu:0", "/gpu:1"), "nccl")),
    ("auto", ["/gpu:0"], ["/cpu:0"], trainer.StrategyChoice("one_device", ("/gpu:0",))),
    ("mirrored", [], ["/cpu:0", "/cpu:1"], trainer.StrategyChoice("mirrored", ("/cpu:0", "/cpu:1"), "reduce_to_one")),
    ("one_device", [], ["/cpu:0"], trainer.StrategyChoice("one_device", ("/cpu:0",))),
    ("multi_worker", ["/gpu:0"], ["/cpu:0"], trainer.StrategyChoice("multi_worker")),
    ("tpu", [], ["/cpu:0"], None),
])
def test_choose_strategy_with_faked_device_lists(kind, gpus, cpus, expected):
  if expected is None:
    assert trainer.choose_strategy(kind, gpus=gpus, cpus=cpus, tpu="local") == trainer.StrategyChoice(
        "tpu", tpu="local")
    with pytest.raises(ValueError, match="train.tpu"):
      trainer.choose_strategy(kind, gpus=gpus, cpus=cpus)
  else:
    assert trainer.choose_strategy(kind, gpus=gpus, cpus=cpus) == expected


def test_decide_jit_always_compiles_on_tpu_and_follows_auto_elsewhere():
  assert trainer.decide_jit(False, platform="tpu", replicas=8) is True
  assert trainer.decide_jit("auto", platform="tpu", replicas=8) is True
  assert trainer.decide_jit("auto", platform="gpu", replicas=2) is True
  assert trainer.decide_jit("auto", platform="cpu", replicas=1) is False
  assert trainer.decide_jit(True, platform="cpu", replicas=2) is False  # TensorFlow cannot; warned
  assert trainer.decide_jit(True, platform="gpu", replicas=2) is True


def test_tpu_settings_are_checked_with_the_spec():
  with pytest.raises(ValueError, match="strategy='tpu' needs train.tpu"):
    RunSpec.from_arguments(train_steps=1, strategy="tpu")
  with pytest.raises(ValueError, match="only used with train.strategy = 'tpu'"):
    RunSpec.from_arguments(train_steps=1, strategy="mirrored", tpu="local")


def test_tpu_strategy_without_a_tpu_is_one_line_before_the_run_directory_exists(tmp_path):
  port = _free_ports(1)[0]
  workdir = tmp_path / "run"
  with pytest.raises(RuntimeError, match=f"train.tpu = 'grpc://127.0.0.1:{port}': nothing accepts") as error:
    trainer.train(**tiny_train_settings(workdir, strategy="tpu", tpu=f"grpc://127.0.0.1:{port}"))
  assert "\n" not in str(error.value)
  assert not workdir.exists()


def test_a_tpu_run_defaults_to_bfloat16_unless_precision_is_bound():
  from regan_tf import configurables  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  try:
    gin.clear_config()
    gin.parse_config(["train.strategy = 'tpu'", "train.tpu = 'local'"])
    assert train.tpu_defaults() == {"precision": "mixed_bfloat16"}
    gin.parse_config(["train.precision = 'float32'"])
    assert train.tpu_defaults() == {}
    gin.clear_config()
    gin.parse_config(["train.strategy = 'mirrored'"])
    assert train.tpu_defaults() == {}
  finally:
    gin.clear_config()


def test_a_tpu_run_with_mixed_precision_keeps_that_choice():
  # train.mixed_precision = True (deprecated: mixed_float16) with the bfloat16 default was a contradiction the
  # run refused; the explicit choice wins, and False leaves the default.
  from regan_tf import configurables  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  from regan_tf import spec as spec_lib  # pylint: disable=g-import-not-at-top
  try:
    gin.clear_config()
    gin.parse_config(["train.strategy = 'tpu'", "train.tpu = 'local'", "train.mixed_precision = True"])
    defaults = train.tpu_defaults()
    assert defaults == {}
    runtime = spec_lib.Runtime(strategy="tpu", tpu="local", mixed_precision=True, **defaults)
    assert runtime.precision == "mixed_float16"
    gin.parse_config(["train.mixed_precision = False"])
    assert train.tpu_defaults() == {"precision": "mixed_bfloat16"}
  finally:
    gin.clear_config()
