"""Progressive growing of ProGAN in the trainer: the growth schedule, the growing generator, segment
keys, stage switching, fade-in, Re-GAN counted from the final stage, resume, export, 2 replicas,
bad configurations."""

from __future__ import annotations

import functools
import glob
import json
import os

import numpy as np
import pytest

from regan_tf import progressive
from regan_tf import pruning
from regan_tf import trainer
from regan_tf.compat import tf
from regan_tf.models import dcgan, progan
from regan_tf.progressive import GrowthSchedule

from conftest import load_export_in_fresh_process, run_two_replica_script, tiny_train_settings
from test_trainer import _generator_weights, _masks, _summaries

TINY = dict(image_size=16, channels=1, z_dim=8, fmap_base=32, fmap_max=16)
# Stages 4x4 (steps 0-1), 8x8 (2-3, fading at 2), 16x16 (4-, fading at 4); Re-GAN's warm-up of 1 step
# counts from step 4, so step 5 is the first sparse step.
GROWTH = functools.partial(progressive.growth_schedule, stage_steps=(2, 2, 2), fade_steps=1,
                           batch_sizes=(8, 8, 4))
REGAN = functools.partial(pruning.build_controller, sparsity=0.3, warmup=1, g=2, exclude=("to_rgb",))


# ----------------------------------------------------------------------------
# Growth schedule
# ----------------------------------------------------------------------------


def test_growth_schedule_stage_and_alpha_at_boundaries():
  s = GrowthSchedule(stage_steps=(10, 20, 20), fade_steps=(0, 10, 5), batch_sizes=(8, 8, 4))
  expected = {0: (0, 1.0), 9: (0, 1.0), 10: (1, 0.0), 15: (1, 0.5), 19: (1, 0.9), 20: (1, 1.0),
              29: (1, 1.0), 30: (2, 0.0), 34: (2, 0.8), 35: (2, 1.0), 49: (2, 1.0), 50: (2, 1.0),
              10_000: (2, 1.0)}
  for step, (stage, alpha) in expected.items():
    got = s.stage_and_alpha(step)
    assert got[0] == stage and got[1] == pytest.approx(alpha), step
  assert (s.total_steps, s.stage_start(1), s.stage_start(2), s.batch_size(2)) == (50, 10, 30, 4)
  # A stage without fade-in starts at alpha 1.
  assert GrowthSchedule((2, 2), (0, 0), 4).stage_and_alpha(2) == (1, 1.0)


def test_growth_schedule_from_images_and_epochs():
  # The reference: 600k images per phase, batch 128 then 64 (v2 preset at 4x4 / 8x8).
  s = GrowthSchedule.from_images(stage_images=(600_000, 1_200_000), fade_images=600_000,
                                 batch_sizes=(128, 64))
  assert s.stage_steps == (4688, 18750) and s.fade_steps == (0, 9375)
  assert s.stage_and_alpha(4688 + 9375 // 2)[1] == pytest.approx(4687 / 9375)
  # The Re-GAN port on CIFAR-10: epochs (2, 2, 2, 8), batches (128, 128, 128, 64), 50k images.
  r = GrowthSchedule.from_epochs(stage_epochs=(2, 2, 2, 8), fade_epochs=(0, 2, 2, 8),
                                 batch_sizes=(128, 128, 128, 64), num_examples=50_000)
  assert r.stage_steps == (782, 782, 782, 6250)  # ceil(2 * 50000 / 128), 8 * 50000 / 64
  assert r.fade_steps == (0, 782, 782, 6250) and r.batch_sizes == (128, 128, 128, 64)
  assert r.stage_and_alpha(r.total_steps - 1) == (3, pytest.approx(6249 / 6250))
  progan.ProGAN(image_size=32, fmap_base=8, fmap_max=8, z_dim=4).validate_schedule(r)
  with pytest.raises(ValueError, match="4 stages but image_size=16 has 3"):
    progan.build_progressive(image_size=16, z_dim=8, fmap_base=64, fmap_max=16).validate_schedule(r)


def test_growth_schedule_config_round_trip():
  s = GrowthSchedule(stage_steps=[10, 20], fade_steps=[0, 5], batch_sizes=[16, 8])
  config = s.get_config()
  assert config == {"stage_steps": [10, 20], "fade_steps": [0, 5], "batch_sizes": [16, 8],
                    "resolutions": [4, 8]}
  assert GrowthSchedule.from_config(config) == s


@pytest.mark.parametrize("kwargs, match", [
    (dict(stage_steps=(10, 10), fade_steps=(1, 5), batch_sizes=(4, 4)), r"fade_steps\[0\]=1"),
    (dict(stage_steps=(10, 10), fade_steps=(0, 11), batch_sizes=(4, 4)), r"fade_steps\[1\]=11"),
    (dict(stage_steps=(10, 10), fade_steps=(0, 5, 5), batch_sizes=(4, 4)), "fade_steps has 3"),
    (dict(stage_steps=(10, 0), fade_steps=(0, 0), batch_sizes=(4, 4)), "stage_steps"),
    (dict(stage_steps=(), fade_steps=(), batch_sizes=()), "empty"),
    (dict(stage_steps=(10, 10), fade_steps=(0, 5), batch_sizes=(4, 0)), "batch_sizes"),
    (dict(stage_steps="10", fade_steps=(0,), batch_sizes=(4,)), "stage_steps='10'"),
])
def test_growth_schedule_rejects_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    GrowthSchedule(**kwargs)


def test_growth_schedule_lives_in_progressive_only():
  # gin's `growth` is registered from regan_tf.progressive (test_gin_files parses the ProGAN files that use it).
  assert not hasattr(progan, "GrowthSchedule") and not hasattr(progan, "growth_schedule")


def test_growth_schedule_rejects_bad_steps():
  s = GrowthSchedule((1,), (0,), (4,))
  for step in (-1, 1.5, True):
    with pytest.raises(ValueError, match="step="):
      s.stage_and_alpha(step)
  with pytest.raises(ValueError, match="stage=1"):
    s.batch_size(1)


def _schedule(**kwargs):
  settings = dict(num_examples=100, n_critic=1, batch_size=8, stage_steps=(2, 2, 2), fade_steps=1,
                  batch_sizes=(8, 8, 4))
  settings.update(kwargs)
  return progressive.growth_schedule(**settings)


# conftest's tiny run, changed to a growing ProGAN (WGAN-GP, the paper's Adam) under Re-GAN.
GROWING_RUN = dict(model=functools.partial(progan.build, fmap_base=32, fmap_max=16), z_dim=8,
                   n_critic=1, loss="wasserstein", gp_weight=10.0, drift_weight=0.001, train_steps=7,
                   g_lr=1e-3, d_lr=1e-3, beta2=0.99, checkpoint_every=1, keep_checkpoints=10,
                   image_every=100, seed=0, export=True, growth=GROWTH, pruning=REGAN)


def _train(workdir, **kwargs):
  return trainer.train(**tiny_train_settings(workdir, **{**GROWING_RUN, **kwargs}))


# ------------------------------------------------------------ the models ---

def test_growing_generator_outputs_equal_each_stage_model():
  p = progan.build_progressive(**TINY)
  growing = p.growing_generator()
  assert growing is p.growing_generator()  # cached
  assert growing.output_names == ["output_4", "output_8_fade", "output_8", "output_16_fade", "output_16"]
  z = tf.random.stateless_normal([4, 8], seed=[1, 2])
  p.alpha.assign(0.3)
  outputs = dict(zip(growing.output_names, growing(z)))
  for stage in range(3):
    for fade in ([False] if stage == 0 else [True, False]):
      name = p.output_name(stage, fade)
      np.testing.assert_allclose(outputs[name].numpy(), p.generator(stage, fade=fade)(z).numpy(),
                                 rtol=1e-5, atol=1e-6, err_msg=name)
      cut = progan.stage_output(growing, name)
      np.testing.assert_allclose(cut(z).numpy(), outputs[name].numpy(), rtol=1e-6, err_msg=name)
  # Same layers, not copies: the growing model holds exactly the ProGAN's generator weights.
  assert {v.ref() for v in growing.trainable_variables} == {v.ref() for v in p.generator_variables}


def test_fade_output_blends_the_upsampled_previous_stage_by_alpha():
  p = progan.build_progressive(**TINY, output_activation="linear")
  growing = p.growing_generator()
  z = tf.random.stateless_normal([2, 8], seed=[3, 4])
  plain = progan.stage_output(growing, "output_8")
  fade = progan.stage_output(growing, "output_8_fade")
  previous = progan.stage_output(growing, "output_4", upsample_to=8)
  for alpha in (0.0, 0.25, 1.0):
    p.alpha.assign(alpha)
    # With a linear output (the reference's) the blend is exact in image space.
    expected = (1 - alpha) * previous(z).numpy() + alpha * plain(z).numpy()
    np.testing.assert_allclose(fade(z).numpy(), expected, rtol=1e-5, atol=1e-6, err_msg=str(alpha))


def test_stage_output_upsamples_by_nearest_and_rejects_bad_names():
  p = progan.build_progressive(**TINY)
  growing = p.growing_generator()
  z = tf.random.stateless_normal([2, 8], seed=[5, 6])
  small = progan.stage_output(growing, "output_4")(z).numpy()
  big = progan.stage_output(growing, "output_4", upsample_to=16)(z).numpy()
  assert big.shape == (2, 16, 16, 1)
  np.testing.assert_array_equal(big, np.repeat(np.repeat(small, 4, axis=1), 4, axis=2))
  with pytest.raises(ValueError, match="has no output 'output_32'"):
    progan.stage_output(growing, "output_32")
  with pytest.raises(ValueError, match="power-of-two multiple"):
    progan.stage_output(growing, "output_4", upsample_to=12)


# ------------------------------------------------- schedule and segments ---

def test_growth_schedule_helper_in_steps_and_epochs():
  s = _schedule()
  assert s.stage_steps == (2, 2, 2) and s.fade_steps == (0, 1, 1) and s.batch_sizes == (8, 8, 4)
  assert _schedule(batch_sizes=None).batch_sizes == (8, 8, 8)  # the trainer's batch_size
  e = progressive.growth_schedule(num_examples=100, n_critic=1, batch_size=10, stage_epochs=(1, 2),
                             fade_epochs=1)
  assert e.stage_steps == (10, 20) and e.fade_steps == (0, 10)
  with pytest.raises(ValueError, match="exactly one pair"):
    _schedule(stage_epochs=(1, 1, 1))
  with pytest.raises(ValueError, match="exactly one pair"):
    progressive.growth_schedule(num_examples=100, n_critic=1, batch_size=8)
  with pytest.raises(ValueError, match="one length per stage"):
    _schedule(stage_steps=5)


def test_growing_run_keys_segments_and_regan_start():
  p = progan.build_progressive(**TINY)
  run = progressive.GrowingRun(p, _schedule(), replicas=1)
  keys = [run.key_at(step) for step in range(8)]
  assert [(k.stage, k.fade, a) for k, a in keys] == [
      (0, False, 1.0), (0, False, 1.0), (1, True, 0.0), (1, False, 1.0), (2, True, 0.0),
      (2, False, 1.0), (2, False, 1.0), (2, False, 1.0)]
  S = progressive.SegmentKey
  assert run.segments(7) == [(0, 2, S(0, False)), (2, 3, S(1, True)), (3, 4, S(1, False)),
                             (4, 5, S(2, True)), (5, 7, S(2, False))]
  assert run.segments(3) == [(0, 2, S(0, False)), (2, 3, S(1, True))]
  assert run.regan_start(None) == 4 and run.regan_start(1) == 2 and run.regan_start(-1) == 4
  assert run.batch_size(S(2, False)) == 4
  with pytest.raises(ValueError, match="not a stage of this run"):
    run.regan_start(3)
  # The key's models: the cut generator and the stage's discriminator agree on the resolution.
  key = S(1, True)
  g = run.generator(run.growing_generator(), key)
  assert g is run.generator(run.growing_generator(), key)  # cached: one trace per key
  assert g.output_shape == (None, 8, 8, 1) and run.discriminator(key).input_shape == (None, 8, 8, 1)
  assert run.generator(run.growing_generator(), key, upsample=True).output_shape == (None, 16, 16, 1)
  reals = tf.random.stateless_uniform([2, 16, 16, 1], seed=[0, 1], minval=-1, maxval=1)
  p.alpha.assign(0.5)
  np.testing.assert_allclose(run.reals(key)(reals).numpy(), progan.stage_reals(reals, 1, 0.5).numpy())
  np.testing.assert_allclose(run.reals(S(1, False))(reals).numpy(),
                             progan.stage_reals(reals, 1, 1.0).numpy())


@pytest.mark.parametrize("kwargs,replicas,match", [
    (dict(stage_steps=(2, 2), batch_sizes=(8, 8)), 1, "has 3 \\(4x4 .. 16x16\\)"),
    (dict(batch_sizes=(8, 8, 6)), 4, "not divisible by the 4 replicas"),
    (dict(batch_sizes=(8, 8, 6)), 1, "minibatch stddev group"),
])
def test_growing_run_rejects_schedules_that_do_not_fit(kwargs, replicas, match):
  p = progan.build_progressive(**TINY, mbstd_group_size=4)
  with pytest.raises(ValueError, match=match):
    progressive.GrowingRun(p, _schedule(**kwargs), replicas=replicas)


def test_build_controller_counts_the_warmup_from_start_step():
  g = progan.build(**TINY).generator
  controller = pruning.build_controller(g, sparsity=0.3, warmup=3, g=2, start_step=10,
                                        exclude=("to_rgb",))
  assert controller.schedule.warmup == 13
  with pytest.raises(ValueError, match="start_step"):
    pruning.build_controller(progan.build(**TINY).generator, sparsity=0.3, warmup=3, g=2, start_step=-1)


# ------------------------------------------------------- in the trainer ---

@pytest.mark.slow
def test_growing_run_switches_stages_fades_starts_regan_in_the_final_stage_and_resumes(tmp_path):
  straight = _train(tmp_path / "straight")
  assert straight.step == 7
  tags = _summaries(tmp_path / "straight")
  # Logged after step s-1 ran: its stage and alpha.
  assert [tags["growth/stage"][s] for s in range(1, 8)] == [0, 0, 1, 1, 2, 2, 2]
  assert [tags["growth/alpha"][s] for s in range(1, 8)] == [1, 1, 0, 1, 0, 1, 1]
  # Each stage at its own batch: D and G see 4 images a step in the final stage.
  assert set(tags) >= {"speed/images_per_sec", "flops/executed_total"}
  # Re-GAN's warm-up is counted from the final stage's first step (4): no mask before step 5.
  for step in range(1, 6):
    for name, mask in _masks(tmp_path / "straight", f"ckpt-{step}").items():
      assert mask.all(), (step, name)
  for step in (6, 7):
    masks = _masks(tmp_path / "straight", f"ckpt-{step}")
    assert masks and all((m == 0).mean() == pytest.approx(0.3, abs=0.01) for m in masks.values())
  # Masked kernels are zero in the trained generator (all stages' blocks are pruned).
  weights = _generator_weights(tmp_path / "straight")
  masks = _masks(tmp_path / "straight", "ckpt-7")
  for name, mask in masks.items():
    kernel = [v for n, v in weights.items() if n.startswith(name.split("/mask/")[0] + "/")
              and "kernel" in n and "/mask/" not in n and v.shape == mask.shape]
    assert len(kernel) == 1, (name, kernel)
    assert np.all(kernel[0][mask == 0] == 0), name
  # The FLOPs are counted per stage: the final-stage-only count would be larger.
  flops = json.load(open(tmp_path / "straight" / "flops.json"))
  assert flops["growth"]["stage_steps"] == [2, 2, 2]
  assert 0 < flops["projected"]["executed_total"] < 7 * 2 * (flops["g_forward_per_image"] * 3
                                                             + flops["d_forward_per_image"] * 3) * 4 * 2
  # Stop inside the 8x8 fade (after step 2) and in the final stage's warm-up (after 5), resume: the same run.
  for stop in (3, 5):
    _train(tmp_path / f"resumed{stop}", train_steps=stop)
    _train(tmp_path / f"resumed{stop}")
    resumed = _generator_weights(tmp_path / f"resumed{stop}")
    for name in weights:
      np.testing.assert_allclose(resumed[name], weights[name], rtol=1e-5, atol=1e-6, err_msg=f"{stop} {name}")
  # The export is the final stage at 16x16, stripped, and loads in a fresh process.
  meta = json.load(open(tmp_path / "straight" / "export" / "regan_tf_export.json"))
  assert meta["growth"]["stage"] == 2 and meta["growth"]["alpha"] == 1.0 and meta["image_size"] == 16
  loaded = load_export_in_fresh_process(str(tmp_path / "straight" / "export"), np.zeros([3, 8], np.float32))
  assert loaded.images.shape == (3, 16, 16, 1)


@pytest.mark.slow
def test_a_run_that_stops_in_a_lower_stage_samples_and_exports_it_upsampled(tmp_path):
  # With a generator EMA: the averaged copy of the growing generator is cut per stage like the trained one.
  from regan_tf import ema  # pylint: disable=g-import-not-at-top
  result = _train(tmp_path, train_steps=3, pruning=None, image_every=3,
                  ema=functools.partial(ema.GeneratorEMA, decay=0.9))
  assert result.step == 3
  meta = json.load(open(tmp_path / "export" / "regan_tf_export.json"))
  assert meta["growth"]["stage"] == 1 and meta["growth"]["alpha"] == 0.0 and meta["method"] == "dense"
  assert meta["ema"] is True
  grid = glob.glob(str(tmp_path / "samples" / "*3*.png"))
  assert grid, os.listdir(tmp_path / "samples")
  loaded = tf.saved_model.load(str(tmp_path / "export"))
  out = loaded.signatures["serving_default"](z=tf.zeros([2, 8]))["images"]
  assert out.shape == (2, 16, 16, 1)
  # Upsampled from 8x8: every 2x2 block holds one value.
  x = out.numpy()
  np.testing.assert_array_equal(x, np.repeat(np.repeat(x[:, ::2, ::2], 2, axis=1), 2, axis=2))


@pytest.mark.slow
def test_a_zero_step_growing_run_counts_its_first_stage_and_exports_it(tmp_path):
  result = _train(tmp_path, train_steps=0, pruning=None)
  assert result.step == 0
  flops = json.load(open(tmp_path / "flops.json"))
  assert flops["g_forward_per_image"] > 0 and flops["projected"]["executed_total"] == 0
  meta = json.load(open(tmp_path / "export" / "regan_tf_export.json"))
  assert meta["growth"]["stage"] == 0


@pytest.mark.slow
def test_growing_regan_run_on_two_replicas(tmp_path):
  proc = run_two_replica_script(f"""
      r = trainer.train(**tiny_train_settings(
          {str(tmp_path)!r}, **TWO_REPLICAS, n_critic=1, train_steps=4, checkpoint_every=1,
          image_every=100, z_dim=8, seed=1, export=True, loss='wasserstein', gp_weight=10.0,
          drift_weight=0.001, dataset=functools.partial(data.load_digits, image_size=8, channels=1),
          model=functools.partial(models.progan.build, fmap_base=32, fmap_max=8, mbstd_group_size=2),
          growth=functools.partial(progressive.growth_schedule, stage_steps=(2, 2), fade_steps=1,
                                   batch_sizes=(8, 4)),
          pruning=functools.partial(pruning.build_controller, sparsity=0.3, warmup=1, g=2,
                                    exclude=('to_rgb',))))
      print('STEPS', r.step)
      """, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "STEPS 4" in proc.stdout
  assert "MirroredStrategy with 2 replica(s)" in proc.stderr
  assert "stage 1 (8x8, fading in), batch 4" in proc.stderr
  masks = _masks(tmp_path, "ckpt-4")  # step 3 (the first after the 1-step warm-up from step 2) was sparse
  assert masks and all((m == 0).any() for m in masks.values())
  assert os.path.exists(tmp_path / "export" / "saved_model.pb")


@pytest.mark.parametrize("kwargs,match", [
    (dict(model=functools.partial(dcgan.build, g_base_channels=8, d_base_channels=8)), "not one"),
    (dict(growth=None, regan_stage=1), "needs a growing run"),
    (dict(growth=functools.partial(progressive.growth_schedule, stage_steps=(2, 2), fade_steps=1)), "has 3 \\(4x4 .. 16x16\\)"),
    (dict(regan_stage=5), "not a stage of this run"),
])
def test_bad_growth_configurations_fail_before_the_run_directory_exists(tmp_path, kwargs, match):
  workdir = tmp_path / "run"
  with pytest.raises(ValueError, match=match):
    _train(workdir, **kwargs)
  assert not workdir.exists()
