"""The trainer's StyleGAN2 / ProGAN terms: lazy R1, path length, style mixing, drift, under Re-GAN."""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

from regan_tf import data
from regan_tf import models
from regan_tf import pruning
from regan_tf import trainer
from regan_tf.compat import tf

from conftest import run_two_replica_script, tiny_train_settings
from test_trainer import _generator_weights, _masks, _summaries

TINY_DATA = functools.partial(data.load_digits, image_size=8, channels=1)
TINY_STYLEGAN2 = functools.partial(models.stylegan2.build, w_dim=8, mapping_layers=2, channel_base=64,
                                   channel_max=8, mbstd_group_size=2)
# conftest's tiny run, changed to a tiny StyleGAN2 on 8x8 digits with a checkpoint every step.
STYLEGAN2_RUN = dict(dataset=TINY_DATA, model=TINY_STYLEGAN2, z_dim=8, batch_size=4, n_critic=1,
                     checkpoint_every=1, keep_checkpoints=10, image_every=100, seed=5,
                     loss="non_saturating", g_lr=2e-3, d_lr=2e-3, beta1=0.0, beta2=0.99)


def _train(workdir, **kwargs):
  return trainer.train(**tiny_train_settings(workdir, **{**STYLEGAN2_RUN, **kwargs}))


def _regan(**kwargs):
  settings = dict(sparsity=0.3, warmup=1, g=2, exclude=("torgb",))
  settings.update(kwargs)
  return functools.partial(pruning.build_controller, **settings)


def _masked_weights_are_zero(workdir, checkpoint):
  """Checks, in a checkpoint, that each wrapped kernel is exactly zero where its mask is 0.

  A wrapper saves ``<prefix>/mask`` next to its layer's ``<prefix>/layer/kernel``.
  Returns the number of masked entries checked.
  """
  reader = tf.train.load_checkpoint(os.path.join(str(workdir), "checkpoints", checkpoint))
  shapes = reader.get_variable_to_shape_map()
  checked = 0
  for mask_name, mask in _masks(workdir, checkpoint).items():
    prefix = mask_name.split("/mask/")[0]
    kernels = [n for n in shapes if n.startswith(prefix + "/layer/") and "kernel" in n
               and "OPTIMIZER_SLOT" not in n and list(shapes[n]) == list(mask.shape)]
    assert len(kernels) == 1, (mask_name, kernels)
    weight = reader.get_tensor(kernels[0])
    assert np.all(weight[mask == 0] == 0), kernels[0]
    assert np.all(weight[mask == 1] != 0), kernels[0]  # and only there: the mask is not vacuous
    checked += int(np.sum(mask == 0))
  return checked


def test_lazy_regularization_steps_run_and_keep_masks(tmp_path):
  # warmup 1, g 2: steps 1-2 sparse, 3-4 dense, 5 sparse. R1 every 2 (steps 0, 2, 4), PL every 2.
  result = _train(tmp_path / "run", train_steps=6, r1_gamma=1.0, r1_every=2, pl_weight=2.0, pl_every=2,
                  style_mixing=0.9, pruning=_regan())
  assert result.step == 6
  tags = _summaries(tmp_path / "run")
  assert tags["regularization/r1"][1] > 0          # step 0's R1, logged at step 1
  assert tags["regularization/pl_mean"][1] > 0     # the running mean moved from 0
  for step in (2, 3, 6):  # in sparse phases, after PL steps (step 2 and 4 ran PL; 5 is sparse again)
    assert _masked_weights_are_zero(tmp_path / "run", f"ckpt-{step}") > 0


def test_masked_entries_stay_zero_through_path_length_steps(tmp_path):
  # warmup 1, g 5: steps 1-3 are sparse, and each of them also runs a path-length G step.
  _train(tmp_path / "run", train_steps=3, pl_weight=2.0, pl_every=1, pruning=_regan(warmup=1, g=5))
  for step in (2, 3):
    assert _masked_weights_are_zero(tmp_path / "run", f"ckpt-{step}") > 0


def test_regularized_resume_equals_uninterrupted(tmp_path):
  run = functools.partial(_train, r1_gamma=1.0, r1_every=2, pl_weight=2.0, pl_every=3, style_mixing=0.9,
                          pruning=_regan())
  run(tmp_path / "straight", train_steps=5)
  run(tmp_path / "resumed", train_steps=3)
  run(tmp_path / "resumed", train_steps=5)
  a, b = _generator_weights(tmp_path / "straight"), _generator_weights(tmp_path / "resumed")
  assert any("w_avg" in name for name in a)  # StyleGAN2's running average of w is checkpointed
  for name in a:
    np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)
  reader_a = tf.train.load_checkpoint(os.path.join(str(tmp_path / "straight"), "checkpoints"))
  reader_b = tf.train.load_checkpoint(os.path.join(str(tmp_path / "resumed"), "checkpoints"))
  pl = "pl_mean/.ATTRIBUTES/VARIABLE_VALUE"
  assert reader_a.get_tensor(pl) == pytest.approx(reader_b.get_tensor(pl))


@pytest.mark.slow
def test_wgan_gp_resume_equals_uninterrupted(tmp_path):
  # conftest's tiny DCGAN as a WGAN-GP critic (n_critic 2): the interpolation epsilon is drawn from the
  # (seed, step, replica) stream, so stopping after step 2 and resuming repeats the straight run.
  run = functools.partial(trainer.train, loss="wasserstein", gp_weight=10.0)
  run(**tiny_train_settings(tmp_path / "straight", train_steps=4))
  run(**tiny_train_settings(tmp_path / "resumed", train_steps=2))
  run(**tiny_train_settings(tmp_path / "resumed", train_steps=4))
  for who in ("generator/", "discriminator/"):
    a = _checkpoint_values(tmp_path / "straight", who)
    b = _checkpoint_values(tmp_path / "resumed", who)
    assert a and a.keys() == b.keys()
    for name in a:
      np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


def _checkpoint_values(workdir, prefix):
  reader = tf.train.load_checkpoint(os.path.join(str(workdir), "checkpoints"))
  return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
          if n.startswith(prefix) and "OPTIMIZER_SLOT" not in n and n.endswith("VARIABLE_VALUE")}


def test_lazy_regularization_corrects_lr_and_regan_keeps_the_ratio(tmp_path):
  # pl_every 4 -> G lr x 0.8; r1_every 4 -> D lr x 0.8. Dense phases (steps 3-4) run G at 0.1x of that.
  _train(tmp_path / "run", train_steps=5, g_lr=1e-3, d_lr=1e-3, r1_gamma=1.0, r1_every=4, pl_weight=2.0,
         pl_every=4, pruning=_regan())
  tags = _summaries(tmp_path / "run")
  assert tags["learning_rate/g_lr"][2] == pytest.approx(0.8e-3)   # step 1 (sparse) logged at 2
  assert tags["learning_rate/g_lr"][4] == pytest.approx(0.8e-4)   # step 3 (dense)
  assert tags["learning_rate/d_lr"][4] == pytest.approx(0.8e-3)


def test_style_mixing_changes_training_but_not_sampling(tmp_path):
  plain = _train(tmp_path / "plain", train_steps=2)
  mixed = _train(tmp_path / "mixed", train_steps=2, style_mixing=1.0)
  assert plain.step == mixed.step == 2
  a, b = _generator_weights(tmp_path / "plain"), _generator_weights(tmp_path / "mixed")
  assert any(not np.allclose(a[n], b[n]) for n in a)


def test_drift_term_changes_the_discriminator_loss(tmp_path):
  progan = functools.partial(models.progan.build, fmap_base=32, fmap_max=8)
  common = dict(model=progan, loss="wasserstein", gp_weight=10.0, train_steps=1, batch_size=4)
  a = _train(tmp_path / "a", **common)
  b = _train(tmp_path / "b", drift_weight=1.0, **common)
  assert b.metrics["d_loss"] > a.metrics["d_loss"]  # same first step, plus mean(D(real)^2) > 0


def test_stylegan_options_need_a_stylegan_generator(tmp_path):
  with pytest.raises(ValueError, match="mapping"):
    _train(tmp_path / "run", model=functools.partial(models.dcgan.build, g_base_channels=4,
                                                     d_base_channels=4), pl_weight=2.0)
  assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize("bad", [dict(r1_every=0), dict(pl_weight=-1.0), dict(style_mixing=1.5),
                                 dict(drift_weight=-0.1)])
def test_bad_regularization_settings_fail_at_once(tmp_path, bad):
  with pytest.raises(ValueError):
    _train(tmp_path / "run", **bad)
  assert not os.path.exists(tmp_path / "run")


@pytest.mark.slow
def test_stylegan2_and_progan_train_under_regan_on_two_replicas(tmp_path):
  # Both runs in one fresh process with two logical CPUs.
  proc = run_two_replica_script(f"""
      common = dict(**TWO_REPLICAS, batch_size=8, n_critic=1, train_steps=2, checkpoint_every=1,
                    image_every=100, z_dim=8, seed=1, export=True,
                    dataset=functools.partial(data.load_digits, image_size=8, channels=1))
      regan = functools.partial(pruning.build_controller, sparsity=0.3, warmup=1, g=2)
      a = trainer.train(**tiny_train_settings(
          {str(tmp_path / 'stylegan2')!r}, loss='non_saturating', r1_gamma=1.0, r1_every=1,
          pl_weight=2.0, pl_every=1, style_mixing=0.9,
          model=functools.partial(models.stylegan2.build, w_dim=8, mapping_layers=2, channel_base=64,
                                  channel_max=8, mbstd_group_size=2),
          pruning=functools.partial(regan, exclude=('torgb',)), **common))
      b = trainer.train(**tiny_train_settings(
          {str(tmp_path / 'progan')!r}, loss='wasserstein', gp_weight=10.0, drift_weight=0.001,
          model=functools.partial(models.progan.build, fmap_base=32, fmap_max=8),
          pruning=functools.partial(regan, exclude=('to_rgb',)), **common))
      print('STEPS', a.step, b.step)
      """, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "STEPS 2 2" in proc.stdout
  assert proc.stderr.count("MirroredStrategy with 2 replica(s)") == 2
  for name in ("stylegan2", "progan"):
    # Step 1 was sparse (after step 0's dense update and, for StyleGAN2, R1 and path-length steps in both).
    assert _masked_weights_are_zero(tmp_path / name, "ckpt-2") > 0, name
    assert os.path.exists(tmp_path / name / "export" / "saved_model.pb"), name
