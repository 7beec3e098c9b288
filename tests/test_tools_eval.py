"""Tests for tools/eval.py (and tools/fid_stats.py), run as subprocesses."""

import json
import os

import numpy as np
import pytest

from regan_tf import export
from regan_tf.compat import keras
from regan_tf.models import dcgan

from conftest import REPO, run_python, tensorflow_startup_lines


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
  generator = dcgan.build(image_size=32, channels=1, z_dim=16).generator
  path = str(tmp_path_factory.mktemp("gen") / "export")
  export.export_generator(generator, path, z_dim=16)
  return path


def test_eval_prints_and_writes_scores(export_dir, cache_dir, tmp_path):
  json_out = str(tmp_path / "out" / "scores.json")
  result = run_python([os.path.join(REPO, "tools", "eval.py"), f"--export_dir={export_dir}",
                       "--num_samples=200", "--batch_size=100", f"--cache_dir={cache_dir}",
                       f"--json_out={json_out}"], timeout=240)
  assert result.returncode == 0, result.stderr[-3000:]
  printed = json.loads(result.stdout[result.stdout.index("{"):])
  with open(json_out) as f:
    written = json.load(f)
  assert written == printed
  for key in ("fid_digits_classifier", "is_digits_classifier", "kid_digits_classifier"):
    assert isinstance(printed[key], float)
  assert printed["fid_digits_classifier"] > 0
  assert printed["z_dim"] == 16 and printed["num_samples"] == 200
  assert printed["dataset"] == "digits" and printed["num_reference"] == 1797


def test_eval_missing_export_is_a_clear_error(tmp_path):
  result = run_python([os.path.join(REPO, "tools", "eval.py"),
                       f"--export_dir={tmp_path / 'nothing'}"], timeout=60)
  assert result.returncode == 2
  assert "is not a directory; pass a run folder" in result.stderr


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """A run folder as training leaves it: checkpoints/, export/ and best/export (two different generators)."""
  run = tmp_path_factory.mktemp("eval_run") / "run"
  (run / "checkpoints").mkdir(parents=True)
  for seed, path in ((0, run / "export"), (1, run / "best" / "export")):
    keras.utils.set_random_seed(seed)
    export.export_generator(dcgan.build(image_size=32, channels=3, z_dim=8).generator, str(path), z_dim=8)
  return run


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
  """Sixteen random 32x32 RGB images, the reference of a cheap evaluation (committed CIFAR-10 ResNet)."""
  from PIL import Image
  folder = tmp_path_factory.mktemp("images")
  pixels = np.random.default_rng(0).integers(0, 256, size=(16, 32, 32, 3), dtype=np.uint8)
  for i, image in enumerate(pixels):
    Image.fromarray(image).save(folder / f"{i:02d}.png")
  return str(folder)


@pytest.mark.parametrize("which, expected", [([], "export"), (["--which=best"], "best/export")])
def test_eval_takes_a_run_folder_like_regan_sample(run_dir, jpeg_folder, cache_dir, tmp_path, which, expected):
  result = run_python([os.path.join(REPO, "tools", "eval.py"), f"--export_dir={run_dir}", *which,
                       "--dataset=image_folder", f"--path={jpeg_folder}", "--extractor=cifar10_resnet",
                       "--num_samples=16", "--batch_size=16", f"--cache_dir={cache_dir}"], timeout=180)
  assert result.returncode == 0, result.stderr[-3000:]
  printed = json.loads(result.stdout[result.stdout.index("{"):])
  assert printed["export_dir"] == str(run_dir / expected)
  assert isinstance(printed["fid_cifar10_resnet"], float) and printed["num_reference"] == 16


def test_eval_run_folder_without_best_names_the_fix(tmp_path):
  run = tmp_path / "run"
  (run / "checkpoints").mkdir(parents=True)
  result = run_python([os.path.join(REPO, "tools", "eval.py"), f"--export_dir={run}", "--which=best"], timeout=60)
  assert result.returncode == 2
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and "no best/" in errors[0] and "eval_every" in errors[0], result.stderr


@pytest.mark.parametrize("tool", ["eval.py", "fid_stats.py"])
def test_a_bad_image_folder_is_one_line_without_tensorflow_startup_noise(tool, export_dir, tmp_path):
  missing = tmp_path / "no_images"
  export = [f"--export_dir={export_dir}"] if tool == "eval.py" else []
  result = run_python([os.path.join(REPO, "tools", tool), *export, "--dataset=image_folder", f"--path={missing}"],
                      timeout=120)
  assert result.returncode == 2, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and str(missing) in errors[0], result.stderr
  assert tensorflow_startup_lines(result.stderr) == [], result.stderr


def test_fid_stats_writes_the_cached_stats(cache_dir):
  args = [os.path.join(REPO, "tools", "fid_stats.py"), "--dataset=digits", "--fraction=0.5",
          "--subset_rule=random", f"--cache_dir={cache_dir}"]
  result = run_python(args, timeout=240)
  assert result.returncode == 0, result.stderr[-3000:]
  printed = json.loads(result.stdout)
  assert printed["dataset"] == "digits[random 899/1797]" and printed["num_images"] == 899
  assert printed["extractor"].startswith("digits_classifier-")
  assert os.path.exists(printed["path"]) and printed["path"].startswith(cache_dir)
