"""The package as pip installs it from a built wheel, used from a folder outside the checkout.

One slow test: builds the wheel, installs it into a new virtual environment and runs the installed
commands from an empty folder, as a user does after ``pip install regan_tf-*.whl``. Reinstalling
TensorFlow and the other dependencies would download about a gigabyte, so the new environment borrows
the test environment's dependencies (a path line in a ``.pth`` file: the dependencies only; the
checkout's own editable install is not visible there) and gets regan_tf itself only from the wheel.
"""

import glob
import json
import os
import subprocess
import sys
import sysconfig
import time

import pytest

from conftest import REPO, TINY_MAIN_JOB
from regan_tf import netcheck


def _run(args, cwd, env, timeout=600):
  return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.slow
def test_wheel_installs_commands_that_work_from_an_empty_folder(tmp_path):
  dist = tmp_path / "dist"
  build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                REPO], cwd=str(tmp_path), env=dict(os.environ))
  assert build.returncode == 0, build.stderr[-3000:]
  (wheel,) = glob.glob(str(dist / "regan_tf-*.whl"))

  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
  venv_python = str(venv / "bin" / "python")
  new_site = _run([venv_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                  cwd=str(tmp_path), env={}).stdout.strip()
  with open(os.path.join(new_site, "borrowed_dependencies.pth"), "w") as f:
    f.write(sysconfig.get_paths()["purelib"] + "\n")
  # Without PYTHONPATH (a checkout on it would make pip see regan_tf as installed already).
  clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
  install = _run([sys.executable, "-m", "pip", "--python", venv_python, "install", "--no-deps", "--ignore-installed",
                  "-q", wheel], cwd=str(tmp_path), env=clean_env)
  assert install.returncode == 0, install.stderr[-3000:]

  home = tmp_path / "empty"
  home.mkdir()
  env = dict(clean_env)
  env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", CUDA_VISIBLE_DEVICES="")
  where = _run([venv_python, "-c", "import regan_tf; print(regan_tf.__file__)"], cwd=str(home), env=env)
  assert where.stdout.strip().startswith(new_site), (where.stdout, where.stderr[-2000:])

  listed = _run(["regan-train", "--list_configs"], cwd=str(home), env=env, timeout=120)
  assert listed.returncode == 0, listed.stderr[-2000:]
  assert "regan_digits.gin" in listed.stdout and "sngan_cifar.gin" in listed.stdout

  # The main job by its packaged name, shrunk to a few steps: the run folder is runs/regan_digits.
  bindings = [*TINY_MAIN_JOB, "train.train_steps = 6", "regan.warmup = 2", "regan.g = 2", "train.log_every = 2",
              "train.evaluation = None", "train.image_every = 6", "train.checkpoint_every = 6"]
  trained = _run(["regan-train", "--gin_file=regan_digits.gin", *[f"--gin_bindings={b}" for b in bindings]],
                 cwd=str(home), env=env)
  assert trained.returncode == 0, trained.stderr[-3000:]
  run_dir = home / "runs" / "regan_digits"
  assert (run_dir / "export" / "saved_model.pb").exists()
  records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
  assert max(r["step"] for r in records) == 6
  assert "New run in" in (run_dir / "log.txt").read_text()

  sampled = _run(["regan-sample", f"--export_dir={run_dir / 'export'}", "--out=grid.png", "--num=16"],
                 cwd=str(home), env=env, timeout=300)
  assert sampled.returncode == 0, sampled.stderr[-2000:]
  assert (home / "grid.png").stat().st_size > 100

  if netcheck.unreachable_hosts([("www.cs.toronto.edu", 443)], 2.0):
    # Offline (as on this project's machines): the paper's command stops at once with the fix.
    start = time.time()
    offline = _run(["regan-train", "--gin_file=sngan_cifar.gin"], cwd=str(home),
                   env={**env, "TFDS_DATA_DIR": str(tmp_path / "tfds")}, timeout=120)
    assert time.time() - start < 30
    assert offline.returncode == 2, offline.stderr[-3000:]
    assert "data.tfds.data_dir" in offline.stderr and "data.image_folder.path" in offline.stderr
    assert not (home / "runs" / "sngan_cifar").exists()
