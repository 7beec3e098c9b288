"""Tests for tools/eval.py (and tools/fid_stats.py), run as subprocesses."""

import json
import os

import pytest

from regan_tf import export
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
  assert "is not a SavedModel directory" in result.stderr


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
