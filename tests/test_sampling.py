"""regan_tf.load / regan_tf.sampling, the export's truncation, StyleGAN2's average w, and regan-sample's flags."""

from __future__ import annotations

import functools
import json
import os

import numpy as np
import pytest

import regan_tf
from regan_tf import ema as ema_lib
from regan_tf import sampling
from regan_tf import trainer
from regan_tf.compat import tf

from conftest import REPO, load_export_in_fresh_process, run_python, tiny_train_settings
from test_trainer_regularization import STYLEGAN2_RUN

W_AVG = "w_avg"


# ---------------------------------------------------------------- seeds ---


@pytest.mark.parametrize("text, seeds", [
    ("0-3", [0, 1, 2, 3]), ("5", [5]), ("1,5,9", [1, 5, 9]), ("0-2, 10 ,7-8", [0, 1, 2, 10, 7, 8]),
    ("3-3", [3]),
])
def test_parse_seeds_reads_ranges_and_lists(text, seeds):
  assert sampling.parse_seeds(text) == seeds


@pytest.mark.parametrize("text, message", [
    ("", "empty"), ("5-2", "2-5"), ("1,,2", "not a seed"), ("-3", "not a seed"), ("a-b", "not a seed"),
    ("0-2000000", "at most"), ("1.5", "not a seed"),
])
def test_parse_seeds_rejects_bad_text_naming_the_fix(text, message):
  with pytest.raises(ValueError, match=message):
    sampling.parse_seeds(text)


def test_one_latent_per_seed_is_the_first_of_the_old_seed_stream():
  z = sampling.seed_latents([7, 3], 16)
  assert z.shape == (2, 16) and z.dtype == np.float32
  np.testing.assert_array_equal(z[1], sampling.seed_latents([3], 16)[0])  # independent of the other seeds
  old = tf.random.stateless_normal([4, 16], seed=[7, 0]).numpy()  # regan-sample --seed=7 --num=4
  np.testing.assert_array_equal(z[0], old[0])


def test_slerp_keeps_the_ends_and_the_norm_of_orthogonal_unit_vectors():
  a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
  path = sampling.slerp(a, b, np.linspace(0, 1, 5))
  np.testing.assert_allclose(path[0], a, atol=1e-7)
  np.testing.assert_allclose(path[-1], b, atol=1e-7)
  np.testing.assert_allclose(np.linalg.norm(path, axis=1), 1.0, atol=1e-6)


def test_resolve_export_names_the_fix(tmp_path):
  with pytest.raises(ValueError, match="not a directory"):
    sampling.resolve_export(str(tmp_path / "missing"))
  with pytest.raises(ValueError, match="neither an export"):
    sampling.resolve_export(str(tmp_path))
  with pytest.raises(ValueError, match="'export' .* or 'best'"):
    sampling.resolve_export(str(tmp_path), which="last")
  (tmp_path / "checkpoints").mkdir()
  with pytest.raises(ValueError, match="no export yet"):
    sampling.resolve_export(str(tmp_path))
  with pytest.raises(ValueError, match="eval_every"):
    sampling.resolve_export(str(tmp_path), which="best")


# ------------------------------------------------------- a DCGAN run ---


@pytest.fixture(scope="module")
def dcgan_run(tmp_path_factory):
  """A tiny DCGAN run folder with its export (conftest's tiny run, 2 steps)."""
  workdir = tmp_path_factory.mktemp("dcgan") / "run"
  trainer.train(**tiny_train_settings(workdir, train_steps=2, export=True))
  return str(workdir)


def test_load_run_samples_what_the_saved_model_gives_on_the_seeds_latents(dcgan_run):
  g = regan_tf.load(dcgan_run)
  images = g.sample(seeds=range(16))
  assert images.shape == (16, 16, 16, 1) and images.dtype == np.float32
  # A fresh plain-TensorFlow process, on the documented latents of seeds 0..15.
  loaded = load_export_in_fresh_process(os.path.join(dcgan_run, "export"), sampling.seed_latents(range(16), 16))
  np.testing.assert_allclose(images, loaded.images, atol=1e-5)
  # Image i depends on seed i only, and an export folder loads the same way.
  alone = regan_tf.load(os.path.join(dcgan_run, "export")).sample(seeds=[11, 2])
  np.testing.assert_allclose(alone, images[[11, 2]], atol=1e-5)
  assert not np.allclose(images[0], images[1])


def test_dcgan_truncation_scales_z_towards_zero(dcgan_run):
  g = regan_tf.load(dcgan_run)
  assert g.truncation == "z" and g.metadata["truncation"] == "z"
  z = g.latents(range(4))
  np.testing.assert_allclose(g.sample(range(4), trunc=0.5), g.generate(0.5 * z), atol=1e-5)
  average = g.sample(range(4), trunc=0.0)
  np.testing.assert_allclose(average, np.repeat(g.generate(np.zeros((1, 16)))[:1], 4, axis=0), atol=1e-5)
  with pytest.raises(ValueError, match="finite"):
    g.sample(range(2), trunc=float("nan"))


def test_interpolation_rows_run_from_one_seed_to_the_next(dcgan_run):
  g = regan_tf.load(dcgan_run)
  frames = g.interpolate(seeds=[4, 9, 1], steps=3)
  assert frames.shape == (2, 5, 16, 16, 1)
  ends = g.sample(seeds=[4, 9, 1])
  np.testing.assert_allclose(frames[0, 0], ends[0], atol=1e-5)
  np.testing.assert_allclose(frames[0, -1], ends[1], atol=1e-5)
  np.testing.assert_allclose(frames[1, 0], ends[1], atol=1e-5)
  np.testing.assert_allclose(frames[1, -1], ends[2], atol=1e-5)
  with pytest.raises(ValueError, match="two seeds"):
    g.interpolate(seeds=[4])


def _sample_cli(*args, timeout=180):
  return run_python([os.path.join(REPO, "tools", "sample.py"), *args], timeout=timeout)


def test_regan_sample_seeds_trunc_and_interpolate_from_a_run_folder(dcgan_run, tmp_path):
  from PIL import Image
  singles, grid = tmp_path / "singles", tmp_path / "lerp.png"
  proc = _sample_cli(f"--export_dir={dcgan_run}", f"--out={grid}", "--seeds=3,0-1", "--trunc=0.7",
                     "--interpolate=4", f"--singles_dir={singles}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  assert report["num"] == 12 and report["truncation"] == "z" and report["trunc"] == 0.7
  # 2 pairs of seeds -> 2 rows of 4 + 2 images of 16 px with 2 px padding.
  assert Image.open(grid).size == (6 * 18 + 2, 2 * 18 + 2)
  assert len(os.listdir(singles)) == 12
  # Each row starts at its first seed's image and ends at the next seed's (truncated like them).
  expected = regan_tf.load(dcgan_run).sample(seeds=[3, 0, 1], trunc=0.7)
  for name, image in [("seed3-0_000.png", expected[0]), ("seed3-0_005.png", expected[1]),
                      ("seed0-1_005.png", expected[2])]:
    written = np.asarray(Image.open(singles / name)).astype(int)
    want = np.round((np.clip(image[..., 0], -1, 1) + 1) * 127.5)
    assert np.abs(written - want).max() <= 1, name


_CLI_IN_PROCESS = """
import sys
sys.argv = ["regan-sample"] + sys.argv[1:]
from regan_tf.commands import sample
try:
  sample.run()
except SystemExit as e:
  print("exit", e.code, "tensorflow" in sys.modules)
"""


@pytest.mark.parametrize("flags, message", [
    (["--seeds=5-2"], "2-5"),
    (["--seeds=x"], "not a seed"),
    (["--seeds=3", "--interpolate=4"], "at least two seeds"),
    (["--interpolate=-1", "--seeds=0-1"], "--interpolate"),
    (["--which=best"], "eval_every"),
])
def test_regan_sample_bad_flags_fail_in_one_line_before_tensorflow_loads(dcgan_run, tmp_path, flags, message):
  proc = run_python(["-c", _CLI_IN_PROCESS, f"--export_dir={dcgan_run}", f"--out={tmp_path / 'x.png'}", *flags],
                    timeout=60)
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr
  assert proc.stdout.strip().splitlines()[-1] == "exit 2 False", proc.stdout


# ---------------------------------------------------------- StyleGAN2 ---


def _stylegan2(workdir, **kwargs):
  settings = {**STYLEGAN2_RUN, "style_mixing": 0.5,
              "ema": functools.partial(ema_lib.GeneratorEMA, decay=0.5), **kwargs}
  return trainer.train(**tiny_train_settings(workdir, **settings))


def _checkpoint_w_avg(workdir):
  """{checkpoint key: w_avg} of the generator and its EMA in the latest checkpoint."""
  reader = tf.train.load_checkpoint(os.path.join(str(workdir), "checkpoints"))
  keys = [n for n in reader.get_variable_to_shape_map() if "w_avg" in n and "OPTIMIZER_SLOT" not in n]
  return {n.split("/")[0]: reader.get_tensor(n) for n in keys}


@pytest.mark.slow
def test_stylegan2_tracks_w_avg_and_exports_it_for_truncation(tmp_path):
  # (Resuming restores it exactly: test_trainer_regularization's resume test compares every generator
  # variable of the checkpoints, w_avg included.)
  straight = tmp_path / "run"
  _stylegan2(straight, train_steps=3, export=True)
  a = _checkpoint_w_avg(straight)
  assert set(a) == {"generator", "generator_ema"}
  assert np.abs(a["generator"]).max() > 1e-4  # tracked: moved from its zero start
  # The EMA generator copies w_avg (as stylegan2-ada copies buffers into G_ema).
  np.testing.assert_array_equal(a["generator_ema"], a["generator"])

  export = straight / "export"
  meta = json.load(open(export / "regan_tf_export.json"))
  assert meta["truncation"] == "w" and set(meta["signatures"]) == {"serving_default", "truncated"}
  z = sampling.seed_latents(range(6), 8)
  loaded = load_export_in_fresh_process(str(export), z)
  exported = [v for name, v in loaded.variables.items() if W_AVG in name]
  assert len(exported) == 1
  np.testing.assert_allclose(exported[0], a["generator_ema"], rtol=1e-6)

  g = regan_tf.load(str(straight))
  np.testing.assert_allclose(g.sample(range(6)), loaded.images, atol=1e-5)
  varied = g.sample(range(6), trunc=1.0)
  collapsed = g.sample(range(6), trunc=0.0)
  assert np.abs(varied - varied[:1]).max() > 1e-3
  np.testing.assert_allclose(collapsed, np.repeat(collapsed[:1], 6, axis=0), atol=1e-6)
  assert not np.allclose(collapsed[0], g.generate(np.zeros((1, 8)))[0], atol=1e-4)  # w_avg, not z = 0
  half = g.sample(range(6), trunc=0.5)
  assert np.abs(half - collapsed).mean() < np.abs(varied - collapsed).mean()


def test_stylegan2_without_tracking_truncates_around_a_sampled_mean(tmp_path):
  from regan_tf import export as export_lib
  from regan_tf.models import stylegan2
  gan = stylegan2.build(image_size=8, channels=1, z_dim=8, w_dim=8, mapping_layers=2, channel_base=64,
                        channel_max=8, mbstd_group_size=2, w_avg_beta=None)
  assert stylegan2.tracked_w_avg(gan.generator) is None
  export_lib.export_generator(gan.generator, str(tmp_path / "export"), z_dim=8)
  g = regan_tf.load(str(tmp_path / "export"))
  mapping, _ = stylegan2.mapping_and_synthesis(gan.generator)
  np.testing.assert_allclose(g.module.w_avg.numpy(), stylegan2.average_w(mapping, z_dim=8).numpy(), rtol=1e-5)
  collapsed = g.sample(range(3), trunc=0.0)
  np.testing.assert_allclose(collapsed, np.repeat(collapsed[:1], 3, axis=0), atol=1e-6)


def test_w_avg_beta_is_checked():
  from regan_tf.models import stylegan2
  with pytest.raises(ValueError, match="w_avg_beta=1.0"):
    stylegan2.build(image_size=8, w_avg_beta=1.0)


# ------------------------------------------------------------ best/export ---


@pytest.mark.slow
def test_a_run_with_evaluation_exports_its_best_checkpoint_too(tmp_path, cache_dir):
  from regan_tf import metrics
  evaluation = functools.partial(metrics.build_evaluator, extractor="classifier", num_samples=64,
                                 batch_size=32, cache_dir=cache_dir)
  trainer.train(**tiny_train_settings(tmp_path, train_steps=4, eval_every=2, evaluation=evaluation,
                                      export=True))
  best_step = int(tf.train.latest_checkpoint(str(tmp_path / "best")).rsplit("-", 1)[-1])
  last, best = regan_tf.load(str(tmp_path)), regan_tf.load(str(tmp_path), which="best")
  assert last.metadata["step"] == 4
  assert best.metadata["step"] == best_step == best.metadata["best_fid_step"]
  assert best.path == str(tmp_path / "best" / "export")
  if best_step != 4:  # different weights, different images
    assert not np.allclose(last.sample(range(4)), best.sample(range(4)), atol=1e-4)


def test_regan_sample_help_lists_the_flags_and_how_truncation_works():
  proc = _sample_cli("--help", timeout=60)  # (absl's --help exits with status 1)
  for text in ("--seeds", "--trunc", "--interpolate", "--which", "w_avg + psi (w - w_avg)", "psi z"):
    assert text in proc.stdout, text
