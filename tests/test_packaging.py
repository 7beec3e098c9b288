"""The package as users install and call it: packaged configs, the default workdir, fast flag errors."""

import configparser
import os
import time

import pytest

from conftest import REPO, run_python
from regan_tf import train as train_main


def test_setup_cfg_lists_every_package():
  config = configparser.ConfigParser()
  config.read(os.path.join(REPO, "setup.cfg"))
  listed = set(config["options"]["packages"].split())
  on_disk = {"regan_tf"} | {
      "regan_tf." + os.path.relpath(root, os.path.join(REPO, "regan_tf")).replace(os.sep, ".")
      for root, _, files in os.walk(os.path.join(REPO, "regan_tf")) if "__init__.py" in files
      and root != os.path.join(REPO, "regan_tf")}
  assert listed == on_disk | {"regan_tf.configs"}


def test_packaged_configs_resolve_by_name():
  names = [name for name, _ in train_main.list_configs()]
  assert "regan_digits.gin" in names and "sngan_cifar.gin" in names
  path = train_main.resolve_gin_file("regan_digits")
  assert os.path.samefile(path, os.path.join(REPO, "gin", "regan_digits.gin"))
  assert train_main.resolve_gin_file("sngan_cifar.gin").endswith("sngan_cifar.gin")
  assert train_main.default_workdir(["gin/a.gin", "x/sngan_cifar.gin"]) == os.path.join("runs", "sngan_cifar")


def test_flag_errors_come_before_tensorflow_loads(tmp_path):
  code = ("import atexit, sys\n"
          "atexit.register(lambda: print('TF_LOADED' if 'tensorflow' in sys.modules else 'TF_NOT_LOADED'))\n"
          "sys.argv = ['regan-train', '--gin_file=regan_digitz']\n"
          "from regan_tf import train\n"
          "train.run()\n")
  start = time.time()
  proc = run_python(["-c", code], cwd=str(tmp_path), timeout=60)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "Did you mean regan_digits.gin" in proc.stderr and "TF_NOT_LOADED" in proc.stdout
  assert time.time() - start < 30  # generous for a loaded machine; TensorFlow alone takes ~10 s here


def test_list_configs_prints_names_and_headers(tmp_path):
  proc = run_python(["-m", "regan_tf.train", "--list_configs"], cwd=str(tmp_path), timeout=60)
  assert proc.returncode == 0, proc.stderr[-2000:]
  line = next(l for l in proc.stdout.splitlines() if l.startswith("regan_digits.gin"))
  assert "main job" in line


@pytest.mark.parametrize("command, flag", [
    ("regan_tf.train", "--gin_file"), ("regan_tf.commands.sample", "--seeds"), ("regan_tf.commands.eval", "--num_samples"),
    ("regan_tf.commands.eval", "--extractor"), ("regan_tf.commands.compare", "--seeds"),
    ("regan_tf.commands.flops", "--gin_file"), ("regan_tf.commands.fid_stats", "--dataset")])
def test_help_lists_the_commands_flags_through_a_console_script_wrapper(tmp_path, command, flag):
  # A console script's __main__ is a small wrapper that calls run(); absl's --help shows __main__'s key flags.
  wrapper = tmp_path / "regan-command"
  wrapper.write_text(f"from {command} import run\nrun()\n")
  proc = run_python([str(wrapper), "--help"], cwd=str(tmp_path), timeout=120)
  assert proc.returncode == 1, proc.stderr[-2000:]  # absl's --help exits with 1
  assert f"  {flag}:" in proc.stdout or f"  --[no]{flag[2:]}:" in proc.stdout, proc.stdout[-2000:]


@pytest.mark.parametrize("command, args", [
    ("regan_tf.train", ["--gin_file=regan_digits", "--no_such_flag"]),         # unknown flag
    ("regan_tf.train", ["--gin_file=regan_digits", "stray"]),                  # stray argument (UsageError)
    ("regan_tf.commands.sample", ["--which=latest"]),                          # bad enum value
    ("regan_tf.commands.sample", ["--num=many"]),                              # bad integer
    ("regan_tf.commands.compare", ["--out=x", "--gin_file=regan_digits", "stray"])])
def test_argument_errors_exit_2_with_one_line(tmp_path, command, args):
  # README: "errors in arguments exit with status 2 and a one-line message" (absl alone: help text, exit 1).
  proc = run_python(["-m", command, *args], cwd=str(tmp_path), timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and "--help" in errors[0], proc.stderr[-2000:]
  assert "FATAL" not in proc.stderr and "flags:" not in proc.stderr, proc.stderr[-2000:]  # no help dump
  if command != "regan_tf.commands.compare":  # compare's import loads TensorFlow, which logs its own lines
    assert proc.stderr.strip() == errors[0], proc.stderr[-2000:]
  assert not (tmp_path / "runs").exists()


def test_train_cifar_classifier_without_data_dir_is_one_line_with_exit_2(tmp_path):
  proc = run_python([os.path.join(REPO, "tools", "train_cifar_classifier.py")], cwd=str(tmp_path), timeout=120)
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert proc.stderr.strip().startswith("error: --data_dir is required") and len(proc.stderr.strip().splitlines()) == 1
