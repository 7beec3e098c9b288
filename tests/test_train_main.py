"""The command line: bad input fails fast and writes nothing; kill -9 resumes; the export samples anywhere."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import MAIN_GIN, REPO, TINY_MAIN_JOB, load_export_in_fresh_process, run_python

# The main job shrunk to seconds, with Re-GAN phases that fit a few steps.
TINY = [*TINY_MAIN_JOB, "regan.warmup = 4", "regan.g = 3"]


def _args(workdir, *bindings, gin_file=MAIN_GIN):
  args = ["-m", "regan_tf.train", f"--gin_file={gin_file}", f"--workdir={workdir}"]
  return args + [f"--gin_bindings={b}" for b in (*TINY, *bindings)]


@pytest.mark.parametrize("binding, expected", [
    ("train.bach_size = 8", "bach_size"),
    ("trian.batch_size = 8", "trian"),
    ("models.dcgan.g_base_channel = 8", "g_base_channel"),
])
def test_gin_typo_fails_fast_and_writes_nothing(tmp_path, binding, expected):
  workdir = tmp_path / "run"
  start = time.time()
  proc = run_python(_args(workdir, binding), timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "invalid gin configuration" in proc.stderr
  assert expected in proc.stderr
  assert "did you mean" in proc.stderr
  assert not workdir.exists()
  assert time.time() - start < 60


def test_bad_value_is_named(tmp_path):
  proc = run_python(_args(tmp_path / "run", "train.loss = 'hing'"), timeout=120)
  assert proc.returncode == 2  # a bad value: the documented status (regan_tf.cli)
  assert "hing" in proc.stderr and "hinge" in proc.stderr
  assert not (tmp_path / "run").exists()


def test_missing_image_folder_fails_fast_and_writes_nothing(tmp_path):
  missing = tmp_path / "no_such_folder"
  proc = run_python(_args(tmp_path / "run", "train.dataset = @data.image_folder",
                          f"data.image_folder.path = '{missing}'"), timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert str(missing) in proc.stderr
  assert not (tmp_path / "run").exists()


def test_missing_gin_file(tmp_path):
  proc = run_python(_args(tmp_path / "run", gin_file=str(tmp_path / "nope.gin")), timeout=120)
  assert proc.returncode == 2
  assert "nope.gin" in proc.stderr and "does not exist" in proc.stderr


def _latest_checkpoint_step(workdir) -> int:
  state = os.path.join(workdir, "checkpoints", "checkpoint")
  if not os.path.exists(state):
    return 0
  match = re.search(r'^model_checkpoint_path: "ckpt-(\d+)"', open(state).read(), re.M)
  return int(match.group(1)) if match else 0


@pytest.mark.slow
def test_kill_9_then_resume_then_export_samples_in_fresh_process(tmp_path):
  workdir = tmp_path / "run"
  bindings = ["train.train_steps = 100000", "train.checkpoint_every = 5", "train.log_every = 5",
              "train.image_every = 1000"]
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
  proc = subprocess.Popen([sys.executable, *_args(workdir, *bindings)], cwd=REPO, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 180
    while _latest_checkpoint_step(workdir) < 10 and time.time() < deadline and proc.poll() is None:
      time.sleep(0.5)
    assert _latest_checkpoint_step(workdir) >= 10, "no checkpoint appeared"
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  killed_at = _latest_checkpoint_step(workdir)

  # The same command (but a finite length) continues from the checkpoint, not from 0.
  final = killed_at + 5
  done = run_python(_args(workdir, *bindings[1:], f"train.train_steps = {final}"), timeout=240)
  assert done.returncode == 0, done.stderr[-3000:]
  match = re.search(r"Resumed from \S+ at step (\d+)", done.stderr)
  assert match and int(match.group(1)) >= killed_at, done.stderr[-3000:]
  assert _latest_checkpoint_step(workdir) == final

  export = workdir / "export"
  meta = json.load(open(export / "regan_tf_export.json"))
  assert meta["step"] == final and meta["z_dim"] == 16 and meta["image_size"] == 16

  # A fresh process that never imports tf_keras or TFMOT samples from the export.
  loaded = load_export_in_fresh_process(str(export), np.random.default_rng(0).normal(size=(5, 16)))
  assert loaded.images.shape == (5, 16, 16, 1), loaded.images.shape
  assert loaded.images.min() >= -1 and loaded.images.max() <= 1
  assert loaded.sampled.shape == (5, 16, 16, 1)
  assert loaded.imported == []

  grid = tmp_path / "grid.png"
  sample = run_python([os.path.join(REPO, "tools", "sample.py"), f"--export_dir={export}",
                       f"--out={grid}", "--num=9", f"--singles_dir={tmp_path / 'singles'}"], timeout=120)
  assert sample.returncode == 0, sample.stderr[-3000:]
  from PIL import Image
  assert Image.open(grid).size == (3 * 18 + 2, 3 * 18 + 2)
  assert len(os.listdir(tmp_path / "singles")) == 9


@pytest.mark.slow
def test_sngan_cifar_gin_trains_regan_on_cifar_jpegs(tmp_path, cifar_jpeg_subset):
  """The paper's SNGAN config, pointed at real CIFAR-10 JPEGs as its header documents, shrunk to seconds."""
  workdir = tmp_path / "run"
  bindings = [
      "train.dataset = @data.image_folder",
      f"data.image_folder.path = '{cifar_jpeg_subset}'",
      "train.subset_rule = 'stratified'",
      "train.data_fraction = 0.5",          # 100 of 200 images, 10 per class
      "models.sngan.g_channels = 16",
      "models.sngan.d_channels = 16",
      "train.batch_size = 10",
      "train.n_critic = 2",                 # one epoch = 100 / (10 * 2) = 5 G steps
      "train.train_epochs = 1",
      "regan.warmup_epochs = 0.2",          # 1 step
      "regan.g_epochs = 0.4",               # 2 steps: 0 warm-up, 1-2 sparse, 3-4 dense
      "train.log_every = 1",
      "train.evaluation = None",            # Inception FID needs the TF-Hub module (tests/test_paper_configs.py)
  ]
  proc = run_python(["-m", "regan_tf.train", f"--gin_file={os.path.join(REPO, 'gin', 'sngan_cifar.gin')}",
                     f"--workdir={workdir}", *[f"--gin_bindings={b}" for b in bindings]], timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "kept 100 of 200 examples" in proc.stderr and "rule=stratified" in proc.stderr
  assert "training for 5 steps" in proc.stderr
  # 29.9%, not 30.0%: each of the 36 tensors masks floor(0.3 n), and 3-entry biases mask none.
  assert "Re-GAN step 1: sparse phase 1: masked 29.9% of 48,419 weights in 36 tensors" in proc.stderr
  assert "Re-GAN step 3: dense phase 1" in proc.stderr
  meta = json.load(open(workdir / "export" / "regan_tf_export.json"))
  assert meta["image_size"] == 32 and meta["channels"] == 3 and meta["step"] == 5
  # The reference SNGAN prunes every parameter: biases and batch-norm scales/offsets are pruned tensors too.
  names = meta["sparsity"]["per_tensor"]
  assert any(n.endswith("/bias") for n in names) and any(n.endswith("/gamma") for n in names)


@pytest.mark.slow
@pytest.mark.parametrize("gin_name, expect", [
    ("cifar_jpeg_diffaug.gin", '"diffaugment": "color,translation,cutout"'),
    ("cifar_jpeg_apa.gin", '"apa": true'),
    ("fewshot_sngan64.gin", '"ema": true'),
])
def test_augmentation_setups_train_on_cifar_jpegs(tmp_path, cifar_jpeg_subset, gin_name, expect):
  """Each augmentation set-up's gin file trains a few steps on real CIFAR-10 JPEGs and exports."""
  workdir = tmp_path / "run"
  bindings = [
      f"data.image_folder.path = '{cifar_jpeg_subset}'",
      "train.data_fraction = 0.5", "train.subset_rule = 'stratified'",
      "models.sngan.g_channels = 8", "models.sngan.d_channels = 8",
      "train.batch_size = 8", "train.n_critic = 1", "train.train_steps = 3",
      "train.train_epochs = None", "regan.warmup = 1", "regan.g = 1",
      "regan.warmup_epochs = None", "regan.g_epochs = None",
      "train.evaluation = None", "train.eval_every = 0", "train.log_every = 1",
  ]
  proc = run_python(["-m", "regan_tf.train", f"--gin_file={os.path.join(REPO, 'gin', gin_name)}",
                     f"--workdir={workdir}", *[f"--gin_bindings={b}" for b in bindings]], timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  meta_text = open(workdir / "export" / "regan_tf_export.json").read()
  assert expect in meta_text
  meta = json.loads(meta_text)
  size = 64 if "fewshot" in gin_name else 32
  assert meta["image_size"] == size and meta["step"] == 3
  assert "Re-GAN step 1: sparse phase 1" in proc.stderr
