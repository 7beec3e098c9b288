"""One training iteration per architecture x loss through the public TrainStep (as compare_gan's tests).

Each case builds a tiny GAN, wraps G for Re-GAN in a sparse phase from step 0,
runs one iteration (n_critic D steps + 1 G step) and checks what a user relies
on: finite losses, D and G both updated, and every masked G entry exactly zero.
"""

import numpy as np
import pytest

from regan_tf import data as data_lib
from regan_tf import models as models_lib
from regan_tf import pruning
from regan_tf.compat import keras, tf
from regan_tf.train_step import StyleGANParts, TrainStep, inner_optimizer, make_optimizer

# Tiny widths of each architecture, at an image size it supports.
_TINY = {
    "dcgan": dict(image_size=16, z_dim=8, g_base_channels=4, d_base_channels=4),
    "sngan": dict(image_size=32, z_dim=8, g_channels=8, d_channels=8),
    "autogan": dict(image_size=32, z_dim=8, g_channels=8, d_channels=8),
    "progan": dict(image_size=16, z_dim=8, fmap_base=64, fmap_max=16),
    "stylegan2": dict(image_size=16, z_dim=16, w_dim=16, channel_base=128, channel_max=16),
}
_LOSSES = {"hinge": 0.0, "non_saturating": 0.0, "wasserstein": 10.0}  # name -> WGAN-GP weight
_BATCH, _N_CRITIC = 4, 2


def _setup(arch: str, loss: str, model_kwargs=None, **step_kwargs):
  kwargs = dict(_TINY[arch], **(model_kwargs or {}))
  size, z_dim = kwargs.pop("image_size"), kwargs.pop("z_dim")
  strategy = tf.distribute.get_strategy()
  keras.utils.set_random_seed(0)
  gan = models_lib.build(arch, image_size=size, channels=3, z_dim=z_dim, **kwargs)
  controller = pruning.build_controller(gan.generator, sparsity=0.3, warmup=0, g=10, strategy=strategy)
  generator = controller.generator
  g_opt = make_optimizer(controller.learning_rate(1e-3), 0.0, 0.9, loss_scale=False, name="g_adam")
  d_opt = make_optimizer(1e-3, 0.0, 0.9, loss_scale=False, name="d_adam")
  inner_optimizer(g_opt).build(generator.trainable_variables)
  inner_optimizer(d_opt).build(gan.discriminator.trainable_variables)
  step = TrainStep(strategy=strategy, generator=generator, discriminator=gan.discriminator, g_optimizer=g_opt,
                   d_optimizer=d_opt, losses=loss, gp_weight=_LOSSES[loss], z_dim=z_dim, local_batch=_BATCH,
                   n_critic=_N_CRITIC, seed=0, controller=controller, **step_kwargs)
  rng = np.random.default_rng(0)
  images = data_lib.ImageData(images=rng.integers(0, 256, (32, size, size, 3), dtype=np.uint8), labels=None,
                              name="noise")
  iterator = iter(strategy.experimental_distribute_dataset(
      data_lib.make_pipeline(images, global_batch_size=_BATCH, seed=0)))
  controller.before_g_step(0, g_opt)  # warmup 0: the first sparse phase starts now
  return step, iterator, controller, gan.discriminator


def _snapshot(variables):
  return [v.numpy().copy() for v in variables]


def _changed(before, variables) -> bool:
  return any(not np.array_equal(b, v.numpy()) for b, v in zip(before, variables))


@pytest.mark.parametrize("loss", sorted(_LOSSES))
@pytest.mark.parametrize("arch", sorted(_TINY))
def test_one_iteration_trains_both_and_keeps_masks(arch, loss):
  step, iterator, controller, discriminator = _setup(arch, loss)
  g_vars = controller.generator.trainable_variables
  g_before, d_before = _snapshot(g_vars), _snapshot(discriminator.trainable_variables)
  out = step(iterator, 0)
  assert set(out) == {"d_loss", "g_loss", "d_real", "d_fake"}
  assert all(np.isfinite(float(v)) for v in out.values()), out
  assert _changed(d_before, discriminator.trainable_variables)
  assert _changed(g_before, g_vars)
  for tensor in controller.tensors:
    mask = tensor.mask.numpy()
    assert 0.0 < mask.mean() < 1.0, tensor.name  # a real mask, neither empty nor full
    np.testing.assert_array_equal(tensor.weight.numpy()[mask == 0], 0.0, err_msg=tensor.name)


def test_stylegan2_lazy_regularizers_run_masked():
  kwargs = _TINY["stylegan2"]
  pl_mean = tf.Variable(0.0, trainable=False)
  step, iterator, controller, _ = _setup("stylegan2", "non_saturating")
  step = TrainStep(strategy=step.strategy, generator=step.generator, discriminator=step.discriminator,
                   g_optimizer=step.g_optimizer, d_optimizer=step.d_optimizer, losses="non_saturating",
                   z_dim=kwargs["z_dim"], local_batch=_BATCH, n_critic=_N_CRITIC, seed=0, r1_weight=5.0,
                   pl_weight=2.0, pl_mean=pl_mean, style_mixing=0.9, stylegan=StyleGANParts.of(step.generator),
                   controller=controller)
  out = step(iterator, 0, r1=True, pl=True)
  assert {"r1", "pl_penalty"} <= set(out)
  assert np.isfinite(float(out["r1"])) and np.isfinite(float(out["pl_penalty"]))
  assert float(pl_mean.numpy()) > 0.0  # the running mean moved
  for tensor in controller.tensors:
    np.testing.assert_array_equal(tensor.weight.numpy()[tensor.mask.numpy() == 0], 0.0, err_msg=tensor.name)


def test_path_length_without_stylegan_parts_is_an_error():
  step, _, controller, _ = _setup("dcgan", "hinge")
  with pytest.raises(ValueError, match="StyleGANParts"):
    TrainStep(strategy=step.strategy, generator=step.generator, discriminator=step.discriminator,
              g_optimizer=step.g_optimizer, d_optimizer=step.d_optimizer, losses="hinge", z_dim=8,
              local_batch=_BATCH, n_critic=1, seed=0, pl_weight=1.0, pl_mean=tf.Variable(0.0),
              controller=controller)


@pytest.mark.parametrize("arch, loss", [("sngan", "hinge"), ("progan", "wasserstein"),
                                        ("stylegan2", "non_saturating")])
def test_one_iteration_under_mixed_bfloat16(arch, loss):
  # bfloat16 compute, float32 variables: losses finite, the masks exact, G's output float32.
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    step, iterator, controller, _ = _setup(arch, loss)
    assert step.generator(tf.zeros([2, step.z_dim])).dtype == tf.float32
    out = step(iterator, 0)
    assert all(np.isfinite(float(v)) for v in out.values()), out
    for tensor in controller.tensors:
      assert tensor.weight.dtype == tf.float32
      np.testing.assert_array_equal(tensor.weight.numpy()[tensor.mask.numpy() == 0], 0.0, err_msg=tensor.name)
  finally:
    keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize("on_augmented", [False, True])
def test_r1_is_on_the_unaugmented_reals_unless_asked(on_augmented):
  # The Re-GAN reference's StyleGAN2 code computes R1 on the un-augmented reals under DiffAugment
  # (StyleGAN2/train.py:255-264 at 785135c); r1_on_augmented=True regularizes D's augmented view.
  from regan_tf import augment as augment_lib  # pylint: disable=g-import-not-at-top
  from regan_tf import losses  # pylint: disable=g-import-not-at-top
  policy = ("color", "translation", "cutout")
  step, iterator, _, discriminator = _setup("dcgan", "non_saturating", r1_weight=1.0, diffaugment=policy,
                                            r1_on_augmented=on_augmented)
  real = tf.cast(next(iterator), tf.float32)
  at = tf.constant(3, tf.int64)
  state = discriminator.get_weights()  # a training-mode call moves spectral norm's power iteration

  def penalty_of(augment):
    value = losses.r1_penalty(discriminator, real, augment=augment).numpy()
    discriminator.set_weights(state)
    return value

  plain = penalty_of(None)
  augmented = penalty_of(lambda x: augment_lib.diff_augment(x, policy, seed=step._fold(at, 1, 1)))  # pylint: disable=protected-access
  assert not np.isclose(plain, augmented)
  penalty = step.r1_step(real, at, 1).numpy()  # computed before its D update
  np.testing.assert_allclose(penalty, augmented if on_augmented else plain, rtol=1e-5)


@pytest.mark.parametrize("arch, loss, also", [("progan", "wasserstein", "to_rgb"), ("stylegan2", "non_saturating", "const")])
def test_the_reference_scope_keeps_masked_biases_and_inputs_at_zero(arch, loss, also):
  # prune_all_weights=True (the paper files): biases, ProGAN's to_rgb, StyleGAN2's constant input are masked too.
  step, iterator, controller, _ = _setup(arch, loss, model_kwargs=dict(prune_all_weights=True))
  names = [t.name for t in controller.tensors]
  assert any(n.endswith("bias") for n in names) and any(also in n for n in names)
  step(iterator, 0)
  for tensor in controller.tensors:
    mask = tensor.mask.numpy()
    if mask.size >= 4:  # floor(0.3 n) > 0
      assert 0.0 < mask.mean() < 1.0, tensor.name
    np.testing.assert_array_equal(tensor.weight.numpy()[mask == 0], 0.0, err_msg=tensor.name)
