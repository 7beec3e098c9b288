"""Signals, NaNs, changed configs, damaged checkpoints, a second process and user errors (issue 18).

Every test drives ``python -m regan_tf.train`` (or a tool) in fresh processes on
the main job shrunk to seconds, as a user or a job scheduler would.
"""

from __future__ import annotations

import glob
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import MAIN_GIN, REPO, TINY_MAIN_JOB, run_python

TINY = [
    *TINY_MAIN_JOB,
    "regan.warmup = 20",
    "regan.g = 15",
    "regan.final_phase = None",
    "train.evaluation = None",
    "train.image_every = 100000",
    "train.log_every = 10",
]
# One thread each: the runs compared below must be bit-exact (see README, determinism).
ENV = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
STEPS = 150


def _args(workdir, *bindings, flags=()):
  return (["-m", "regan_tf.train", f"--gin_file={MAIN_GIN}", f"--workdir={workdir}", *flags]
          + [f"--gin_bindings={b}" for b in (*TINY, *bindings)])


def _train(workdir, *bindings, flags=(), timeout=300):
  return run_python(_args(workdir, *bindings, flags=flags), env=ENV, timeout=timeout)


def _start(workdir, *bindings, log):
  env = dict(os.environ, **ENV)
  return subprocess.Popen([sys.executable, *_args(workdir, *bindings)], cwd=REPO, env=env,
                          stdout=subprocess.DEVNULL, stderr=open(log, "w"))


def _wait_for(pattern, log, proc, timeout=180):
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    with open(log) as f:
      if re.search(pattern, f.read()):
        return True
    time.sleep(0.2)
  return False


def _export_images(export_dir):
  from regan_tf.compat import tf  # pylint: disable=g-import-not-at-top
  model = tf.saved_model.load(str(export_dir))
  z = tf.random.stateless_normal([8, 16], seed=[3, 4])
  return model.signatures["serving_default"](z=z)["images"].numpy()


def _checkpoint_steps(workdir):
  return sorted(int(m.group(1)) for p in glob.glob(str(workdir / "checkpoints" / "ckpt-*.index"))
                if (m := re.search(r"ckpt-(\d+)\.index$", p)))


def _stop_with(signum, workdir, log, after_step, bindings):
  """Starts the run, sends ``signum`` once it logged ``after_step``; returns the checkpoint label."""
  proc = _start(workdir, *bindings, log=log)
  try:
    assert _wait_for(rf"step {after_step}/", log, proc), open(log).read()[-3000:]
    proc.send_signal(signum)
    assert proc.wait(timeout=120) == 128 + signum, open(log).read()[-3000:]
  finally:
    if proc.poll() is None:
      proc.kill()
  text = open(log).read()
  assert "Traceback" not in text, text[-3000:]
  stopped = re.search(r"Stopped after step (\d+) on (SIG\w+); saved (\S+)\.", text)
  assert stopped and stopped.group(2) == signal.Signals(signum).name, text[-3000:]
  label = int(stopped.group(1))
  assert label >= after_step and _checkpoint_steps(workdir)[-1] == label
  return label


@pytest.mark.slow
def test_sigint_then_sigterm_stop_at_step_boundaries_and_the_reruns_equal_an_uninterrupted_run(tmp_path):
  bindings = (f"train.train_steps = {STEPS}", "train.checkpoint_every = 1000")
  reference = tmp_path / "uninterrupted"
  done = _train(reference, *bindings)
  assert done.returncode == 0, done.stderr[-3000:]

  workdir = tmp_path / "run"
  first = _stop_with(signal.SIGINT, workdir, tmp_path / "log1.txt", 30, bindings)   # exit 130
  # The rerun resumes at the saved step; SIGTERM (what schedulers send) stops it again.
  second = _stop_with(signal.SIGTERM, workdir, tmp_path / "log2.txt", (first // 10 + 3) * 10, bindings)  # 143
  assert f"at step {first}" in open(tmp_path / "log2.txt").read()
  assert second < STEPS
  again = _train(workdir, *bindings)
  assert again.returncode == 0, again.stderr[-3000:]
  assert f"at step {second}" in again.stderr
  np.testing.assert_array_equal(_export_images(workdir / "export"), _export_images(reference / "export"))


@pytest.mark.slow
def test_no_checkpoint_holds_a_non_finite_value(tmp_path):
  from regan_tf.compat import tf  # pylint: disable=g-import-not-at-top
  workdir = tmp_path / "run"
  done = _train(workdir, "train.train_steps = 200", "train.g_lr = 1e35", "train.checkpoint_every = 30",
                "train.log_every = 1000")
  assert done.returncode == 1, done.stderr[-3000:]
  assert re.search(r"went bad in steps \d+\.\.\d+", done.stderr), done.stderr[-3000:]
  assert "Traceback" not in done.stderr
  for step in _checkpoint_steps(workdir):
    reader = tf.train.load_checkpoint(str(workdir / "checkpoints" / f"ckpt-{step}"))
    for name, dtype in reader.get_variable_to_dtype_map().items():
      if dtype.is_floating:
        assert np.all(np.isfinite(reader.get_tensor(name))), (step, name)
  # The rerun fails the same way, but never by reading a bad checkpoint.
  again = _train(workdir, "train.train_steps = 200", "train.g_lr = 1e35", "train.checkpoint_every = 30",
                 "train.log_every = 1000")
  assert again.returncode == 1 and "went bad" in again.stderr


@pytest.mark.slow
def test_divergence_guard_stops_a_run_whose_generator_explodes(tmp_path):
  done = _train(tmp_path / "run", "train.train_steps = 300", "train.g_lr = 1e6", "train.log_every = 10",
                "train.divergence_guard = 'stop'")
  assert done.returncode == 1, done.stderr[-3000:]
  assert "looks divergent" in done.stderr and "divergence_guard = 'stop'" in done.stderr


@pytest.mark.slow
def test_resume_with_changed_training_settings_is_refused_unless_allowed(tmp_path):
  workdir = tmp_path / "run"
  first = _train(workdir, "train.train_steps = 30", "train.checkpoint_every = 20")
  assert first.returncode == 0, first.stderr[-3000:]
  changed = _train(workdir, "train.train_steps = 45", "train.checkpoint_every = 20", "regan.sparsity = 0.5")
  assert changed.returncode == 2, changed.stderr[-3000:]
  refusal = [line for line in changed.stderr.splitlines() if line.startswith("error:")]
  assert len(refusal) == 1, changed.stderr[-3000:]
  assert "regan.sparsity: 0.3 -> 0.5" in refusal[0] and "--allow_config_change" in refusal[0]
  assert "train.train_steps" not in refusal[0]  # a run's length may change on resume
  assert _checkpoint_steps(workdir) == [20, 30]  # nothing trained

  allowed = _train(workdir, "train.train_steps = 45", "train.checkpoint_every = 20", "regan.sparsity = 0.5",
                   flags=["--allow_config_change"])
  assert allowed.returncode == 0, allowed.stderr[-3000:]
  kept = sorted(os.path.basename(p) for p in glob.glob(str(workdir / "operative_config-*.gin")))
  assert kept == ["operative_config-00000000.gin", "operative_config-00000030.gin"]
  assert "regan.sparsity = 0.3" in open(workdir / "operative_config-00000000.gin").read()
  # Step 30 is in the first sparse phase (warm-up 20, phases of 15): its masks hold 30%, and the
  # log reports what the restored masks hold, not the new setting.
  masked = re.search(r"masks of this phase kept \(([\d,]+) of ([\d,]+) weights masked\)", allowed.stderr)
  assert masked, allowed.stderr[-3000:]
  fraction = int(masked.group(1).replace(",", "")) / int(masked.group(2).replace(",", ""))
  assert abs(fraction - 0.3) < 0.01


@pytest.mark.slow
def test_a_damaged_latest_checkpoint_falls_back_and_leftover_temporaries_go(tmp_path):
  workdir = tmp_path / "run"
  first = _train(workdir, "train.train_steps = 40", "train.checkpoint_every = 20")
  assert first.returncode == 0, first.stderr[-3000:]
  data = glob.glob(str(workdir / "checkpoints" / "ckpt-40.data-*"))[0]
  with open(data, "r+b") as f:
    f.truncate(os.path.getsize(data) // 2)
  # What a process killed while exporting or writing a file leaves behind.
  (workdir / "export.tmp-999999").mkdir()
  (workdir / "flops.json.tmp-999999").write_text("{")
  again = _train(workdir, "train.train_steps = 40", "train.checkpoint_every = 20")
  assert again.returncode == 0, again.stderr[-3000:]
  assert re.search(r"Skipped the damaged checkpoint \S*ckpt-40", again.stderr), again.stderr[-3000:]
  assert re.search(r"Resumed from \S*ckpt-20 at step 20", again.stderr)
  assert "does not match this configuration" not in again.stderr
  assert not glob.glob(str(workdir / "*.tmp-*"))


@pytest.mark.slow
def test_second_process_on_a_live_run_exits_at_once_and_a_killed_holder_is_taken_over(tmp_path):
  workdir, log = tmp_path / "run", tmp_path / "log.txt"
  proc = _start(workdir, "train.train_steps = 100000", "train.checkpoint_every = 10", log=log)
  try:
    assert _wait_for(r"step 10/", log, proc), open(log).read()[-3000:]
    start = time.time()
    second = _train(workdir, "train.train_steps = 100000", "train.checkpoint_every = 10")
    assert second.returncode == 2, second.stderr[-3000:]
    assert f"in use by process {proc.pid}" in second.stderr
    assert time.time() - start < 60  # before loading data or building models
  finally:
    proc.kill()
    proc.wait()
  resumed = _train(workdir, "train.train_steps = 12", "train.checkpoint_every = 10")
  assert resumed.returncode == 0, resumed.stderr[-3000:]


def test_user_errors_are_one_line_with_exit_status_2(tmp_path):
  a_file = tmp_path / "not_a_dir"
  a_file.write_text("x")
  done = _train(a_file, "train.train_steps = 1")
  assert done.returncode == 2 and "is a file, not a directory" in done.stderr
  assert "Traceback" not in done.stderr

  broken = tmp_path / "export"
  broken.mkdir()
  (broken / "saved_model.pb").write_bytes(b"not a protobuf")
  sample = run_python([os.path.join(REPO, "tools", "sample.py"), f"--export_dir={broken}",
                       f"--out={tmp_path / 'x.png'}"], timeout=120)
  assert sample.returncode == 2, sample.stderr[-3000:]
  errors = [line for line in sample.stderr.splitlines() if line.startswith("error:")]
  assert "Traceback" not in sample.stderr and len(errors) == 1 and "export it again" in errors[0], sample.stderr
