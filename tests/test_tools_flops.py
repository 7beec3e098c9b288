"""Tests for tools/flops.py, run as a subprocess."""

import json
import os

import pytest

from conftest import REPO, run_python, tensorflow_startup_lines


def test_flops_tool_on_digits_config(tmp_path):
  json_out = str(tmp_path / "out" / "flops.json")
  result = run_python([os.path.join(REPO, "tools", "flops.py"),
                       f"--gin_file={os.path.join(REPO, 'gin', 'regan_digits.gin')}",
                       f"--json_out={json_out}"], timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "savings" in result.stdout
  assert "dense kernels do not run faster on masked weights" in result.stdout
  with open(json_out) as f:
    figures = json.load(f)
  # gin/regan_digits.gin: 3000 steps, warm-up 300, g 300, ending sparse: 1500 sparse steps.
  assert figures["train_steps"] == 3000 and figures["sparse_steps"] == 1500
  assert (figures["image_size"], figures["channels"]) == (32, 1)
  assert 0 < figures["savings_percent"] < 30
  assert figures["regan_effective_total"] < figures["dense_total"] == figures["executed_total"]


def test_flops_tool_reports_bad_gin():
  result = run_python([os.path.join(REPO, "tools", "flops.py"), "--gin_file=does_not_exist.gin"],
                      timeout=120)
  assert result.returncode == 2
  assert "does_not_exist.gin" in result.stderr


def test_flops_tool_reports_a_bad_setting_with_exit_status_2():
  # README: a bad configuration exits with 2 and one line (1 is for failed training or a bug).
  result = run_python([os.path.join(REPO, "tools", "flops.py"), "--gin_file=regan_digits",
                       "--gin_bindings=train.train_steps = None"], timeout=120)
  assert result.returncode == 2, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and "train.train_steps" in errors[0] and "Traceback" not in result.stderr
  assert tensorflow_startup_lines(result.stderr) == [], result.stderr  # TensorFlow loaded, quietly


@pytest.mark.parametrize("flag", ["--workdir=runs/x", "--list_configs", "--allow_config_change"])
def test_flops_tool_refuses_regan_train_flags_it_does_not_use(flag):
  result = run_python([os.path.join(REPO, "tools", "flops.py"), "--gin_file=regan_digits", flag], timeout=60)
  assert result.returncode == 2, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and f"does not use {flag.split('=')[0]}" in errors[0], result.stderr
  assert "savings" not in result.stdout


def test_flops_tool_counts_epochs_as_the_file_says(tmp_path):
  # gin/sngan_cifar.gin counts epochs as the reference's loader: 16 G steps for 5,000 images at batch 64.
  json_out = str(tmp_path / "flops.json")
  result = run_python([os.path.join(REPO, "tools", "flops.py"),
                       f"--gin_file={os.path.join(REPO, 'gin', 'sngan_cifar.gin')}", "--num_examples=50000",
                       f"--json_out={json_out}"], timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(json_out) as f:
    figures = json.load(f)
  assert figures["steps_per_epoch"] == 16 and figures["train_steps"] == 16000
