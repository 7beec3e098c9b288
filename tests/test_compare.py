"""Tests for regan_tf.compare and tools/compare.py (dense vs Re-GAN over seeds)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from regan_tf import compare
from regan_tf.compat import tf

from conftest import REPO, run_python, tensorflow_startup_lines

TOOL = os.path.join(REPO, "tools", "compare.py")


def test_parse_arm():
  assert compare.parse_arm("dense: train.pruning = None") == compare.Arm("dense", ("train.pruning = None",))
  assert compare.parse_arm("regan:") == compare.Arm("regan", ())
  assert compare.parse_arm("g100: regan.g = 100; regan.warmup = 50 ;") == compare.Arm(
      "g100", ("regan.g = 100", "regan.warmup = 50"))
  with pytest.raises(ValueError, match="name before ':'"):
    compare.parse_arm("bad name: regan.g = 1")


def test_read_scalars_keeps_the_last_write_of_a_repeated_step(tmp_path):
  # A killed run that resumes from an earlier checkpoint logs some steps again (in a new event file).
  for values in ({10: 5.0, 20: 4.0}, {20: 3.0, 30: 2.0}):
    writer = tf.summary.create_file_writer(str(tmp_path), filename_suffix=f".{len(values)}{min(values)}")
    with writer.as_default():
      for step, value in values.items():
        tf.summary.scalar("eval/fid_x", value, step=step)
        tf.summary.scalar("train/other", -value, step=step)
    writer.close()
    time.sleep(0.01)
  scalars = compare.read_scalars(str(tmp_path), prefix="eval/")
  assert scalars == {"eval/fid_x": {10: 5.0, 20: 3.0, 30: 2.0}}
  assert compare.fid_tag(scalars) == "eval/fid_x"
  with pytest.raises(ValueError, match="train.evaluation"):
    compare.fid_tag({})


def _result(arm, seed, fid):
  return compare.RunResult(arm=arm, seed=seed, fid=fid, wall_seconds=60.0 * (seed + 1),
                           executed_flops=2e12, effective_flops=1.5e12 if arm == "regan" else 2e12)


def test_summarize_final_best_and_curves():
  results = [_result("dense", 0, {100: 30.0, 200: 20.0, 300: 25.0}),
             _result("regan", 0, {100: 31.0, 200: 19.0, 300: 18.0}),
             _result("dense", 1, {100: 34.0, 200: 24.0, 300: 21.0}),
             _result("regan", 1, {100: 29.0, 200: 21.0, 300: 22.0})]
  dense, regan = compare.summarize(results)
  assert dense.arm == "dense" and dense.seeds == [0, 1]
  assert dense.final == [25.0, 21.0] and dense.best == [20.0, 21.0] and dense.best_steps == [200, 300]
  assert dense.steps == [100, 200, 300]
  np.testing.assert_allclose(dense.curve_mean, [32.0, 22.0, 23.0])
  np.testing.assert_allclose(dense.curve_std, np.std([[30, 20, 25], [34, 24, 21]], axis=0, ddof=1))
  assert dense.final_mean_std == pytest.approx((23.0, np.std([25.0, 21.0], ddof=1)))
  assert regan.effective_flops == 1.5e12
  diff = compare.difference([dense, regan], "dense", "regan")
  assert diff["final"] == pytest.approx(20.0 - 23.0)
  assert diff["final_se"] == pytest.approx(np.sqrt(np.var([25, 21], ddof=1) / 2 + np.var([18, 22], ddof=1) / 2))
  # per-seed differences -7 and +1
  assert diff["final_paired_se"] == pytest.approx(np.std([-7.0, 1.0], ddof=1) / np.sqrt(2))
  table = compare.format_table([dense, regan])
  assert "| **dense** | 2 | **23.00 ± 2.83** |" in table
  assert "| regan seed 1 | 1 | 22.00 | 21.00 (200) |" in table


def test_plot_curves_writes_a_png(tmp_path):
  summaries = compare.summarize([_result("dense", s, {1: 3.0 + s, 2: 2.0}) for s in range(2)])
  path = tmp_path / "plot" / "fid.png"
  compare.plot_curves(summaries, str(path), title="t" * 200)
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


_TINY = ["--gin_file=gin/regan_digits.gin", "--gin_bindings=models.dcgan.g_base_channels = 8",
         "--gin_bindings=models.dcgan.d_base_channels = 8", "--gin_bindings=evaluation.num_samples = 100",
         "--gin_bindings=train.checkpoint_every = 5", "--gin_bindings=train.image_every = 1000",
         "--gin_bindings=regan.warmup = 4", "--gin_bindings=regan.g = 4"]


@pytest.mark.slow
def test_compare_tool_runs_both_arms_and_resumes_a_killed_run(tmp_path, cache_dir):
  out = str(tmp_path / "cmp")
  env = {"REGAN_TF_CACHE": cache_dir}
  args = [TOOL, *_TINY, "--gin_bindings=train.train_steps = 300", "--gin_bindings=train.eval_every = 150",
          f"--out={out}", "--seeds=0"]
  # Kill the whole tool (and its training child) with SIGKILL once the first run has a checkpoint.
  full_env = dict(os.environ, CUDA_VISIBLE_DEVICES="", **env)
  proc = subprocess.Popen([sys.executable, *args], cwd=REPO, env=full_env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
  index = os.path.join(out, "dense", "seed0", "checkpoints", "checkpoint")
  deadline = time.time() + 240
  while not os.path.exists(index) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  assert os.path.exists(index), "the first run never checkpointed"
  record = compare.RunRecord.load(out, "dense", 0)
  assert record is not None and not record.done

  result = run_python(args, env=env, timeout=600)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "0 finished, 2 to run" in result.stdout
  assert "dense_seed0 (resuming)" in result.stdout
  with open(os.path.join(out, "logs", "dense_seed0.log")) as f:
    assert "Resumed from" in f.read()
  dense = compare.RunRecord.load(out, "dense", 0)
  assert dense.done and len(dense.attempts) == 2
  assert compare.RunRecord.load(out, "regan", 0).done

  summary = json.loads(open(os.path.join(out, "summary.json")).read())
  by_arm = {a["arm"]: a for a in summary["arms"]}
  assert set(by_arm) == {"dense", "regan"}
  assert by_arm["dense"]["steps"] == [150, 300]
  # warmup 4, g 4: sparse phases at [4, 8), [12, 16), ...; the dense baseline has none.
  assert by_arm["regan"]["sparse_spans"][:2] == [[4, 8], [12, 16]]
  assert by_arm["dense"]["sparse_spans"] == []
  # Re-GAN's effective FLOPs are below what the dense kernels executed; the baseline's are equal.
  assert by_arm["regan"]["effective_flops"] < by_arm["regan"]["executed_flops"]
  assert by_arm["dense"]["effective_flops"] == by_arm["dense"]["executed_flops"]
  with open(os.path.join(out, "regan", "seed0", "export", "regan_tf_export.json")) as f:
    assert json.load(f)["method"] == "regan"
  with open(os.path.join(out, "dense", "seed0", "export", "regan_tf_export.json")) as f:
    assert json.load(f)["method"] == "dense"
  assert os.path.getsize(os.path.join(out, "fid.png")) > 0

  # Finished runs are not retrained; a new seed is; a changed command is refused.
  again = run_python([*args[:-1], "--seeds=0", "--report_only"], env=env)
  assert again.returncode == 0, again.stderr
  assert "regan - dense: final" in again.stdout
  changed = run_python([*args, "--gin_bindings=train.g_lr = 1e-4"], env=env)
  assert changed.returncode == 2 and "made by another command" in changed.stderr
  assert len(compare.RunRecord.load(out, "dense", 0).attempts) == 2


@pytest.mark.parametrize("binding, message", [
    ("regan.sparsty = 0.5", "did you mean regan.sparsity"),   # a typo
    ("train.evaluation = None", "train.evaluation"),          # nothing to compare
])
def test_compare_tool_rejects_a_bad_config_before_training(tmp_path, binding, message):
  out = tmp_path / "cmp"
  result = run_python([TOOL, "--gin_file=gin/regan_digits.gin", f"--gin_bindings={binding}", f"--out={out}"],
                      timeout=120)
  assert result.returncode == 2
  assert message in result.stderr
  assert not out.exists()
  assert tensorflow_startup_lines(result.stderr) == [], result.stderr  # gin's parse loaded TensorFlow, quietly


@pytest.mark.parametrize("flag", ["--workdir=runs/x", "--list_configs", "--allow_config_change"])
def test_compare_tool_refuses_regan_train_flags_it_does_not_use(tmp_path, flag):
  out = tmp_path / "cmp"
  result = run_python([TOOL, "--gin_file=gin/regan_digits.gin", f"--out={out}", flag], timeout=60)
  assert result.returncode == 2, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  name = flag.split("=")[0]
  assert len(errors) == 1 and f"does not use {name}" in errors[0] and "--out" in errors[0], result.stderr
  assert not out.exists()


def test_report_only_without_finished_runs_is_a_user_error(tmp_path):
  # README: bad input exits with 2 and one line naming the fix (1 is for failed training or a bug).
  result = run_python([TOOL, "--gin_file=gin/regan_digits.gin", "--report_only", f"--out={tmp_path / 'none'}"],
                      timeout=120)
  assert result.returncode == 2, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1 and "has not finished" in errors[0] and "without it" in errors[0], result.stderr


def test_sparse_spans_from_phase_changes():
  # warm-up at 0, sparse at 300, dense at 600, sparse at 900, run ends at 1000
  assert compare.sparse_spans({0: 0, 300: 1, 600: 2, 900: 1}, end=1000) == [(300, 600), (900, 1000)]
  assert compare.sparse_spans({}, end=1000) == []
  # periodic logs of the same phase (every 50 steps) do not split a span
  assert compare.sparse_spans({0: 0, 50: 0, 200: 1, 250: 1, 300: 1, 400: 2, 450: 2}, end=500) == [(200, 400)]


def test_one_seed_reports_no_spread_instead_of_zero():
  """With one seed the sample std and the standard errors are undefined, not 0."""
  dense, regan = compare.summarize([_result("dense", 0, {100: 30.0, 200: 25.0}),
                                    _result("regan", 0, {100: 31.0, 200: 22.0})])
  assert np.isnan(dense.final_mean_std[1])
  diff = compare.difference([dense, regan], "dense", "regan")
  assert diff["final"] == pytest.approx(-3.0)
  assert np.isnan(diff["final_se"]) and np.isnan(diff["final_paired_se"])
  assert compare.format_se(diff["final_se"]) == "n/a" and compare.format_se(0.456) == "0.46"
  table = compare.format_table([dense, regan])
  assert "| **dense** | 1 | **25.00 (one seed)** |" in table and "± 0.00" not in table


def test_table_shows_the_largest_class_share_at_best_and_final():
  """A run whose best checkpoint is collapsed must show it beside its FID (issue 23)."""
  dense = _result("dense", 0, {100: 5.0, 200: 4.0, 300: 6.0})
  dense.top_share = {100: 0.3, 200: 0.44, 300: 0.23}
  regan = _result("regan", 0, {100: 5.0, 200: 7.0, 300: 4.5})
  summaries = compare.summarize([dense, regan])
  assert summaries[0].best_top_share == [0.44] and summaries[0].final_top_share == [0.23]
  assert np.isnan(summaries[1].best_top_share[0])
  table = compare.format_table(summaries)
  assert "largest class at best / final |" in table.splitlines()[0]
  assert "| dense seed 0 | 1 | 6.00 | 4.00 (200) | 1.0 min | | | 44% / 23% |" in table
  assert "| regan seed 0 | 1 | 4.50 | 4.50 (300) | 1.0 min | | | n/a / n/a |" in table
  # Without recorded shares the table keeps its old columns.
  assert "largest class" not in compare.format_table(compare.summarize([_result("dense", 0, {1: 2.0})]))
