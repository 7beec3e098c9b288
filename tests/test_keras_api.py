"""Tests for the Keras-native API (regan_tf.prune_regrow / ReganCallback / strip / controller_of):
a keras.io-style GAN trained with fit, custom loops that forget a hook, the examples, the gin import route."""

from __future__ import annotations

import importlib.util
import os
import textwrap

import numpy as np
import pytest

import regan_tf
from regan_tf.compat import keras, tf
from regan_tf.pruning.schedule import Phase
from regan_tf.pruning.wrapper import pruned_tensors
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper
from conftest import REPO, TINY_MAIN_JOB, make_tiny_generator, run_python, run_two_replica_script

Z_DIM = 8
WARMUP, G, SPARSITY = 2, 2, 0.3  # steps 0-1 warm-up, 2-3 sparse, 4-5 dense, 6-7 sparse
STEPS = 8
G_LR, D_LR = 1e-2, 3e-3


def make_discriminator() -> keras.Model:
  """images [B, 8, 8, 3] -> logits [B, 1]."""
  return keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, strides=2),
                           keras.layers.LeakyReLU(0.2), keras.layers.Flatten(),
                           keras.layers.Dense(1)], name="tiny_d")


class KerasIoGAN(keras.Model):
  """Written like the keras.io DCGAN tutorial: compile() takes both optimizers, train_step
  updates D then G once per batch, and the generator is called without a training flag."""

  def __init__(self, discriminator, generator):
    super().__init__()
    self.discriminator = discriminator
    self.generator = generator

  def compile(self, d_optimizer, g_optimizer, loss_fn, **kwargs):
    super().compile(**kwargs)
    self.d_optimizer, self.g_optimizer, self.loss_fn = d_optimizer, g_optimizer, loss_fn

  def train_step(self, reals):
    batch = tf.shape(reals)[0]
    fakes = self.generator(tf.random.normal((batch, Z_DIM)))
    labels = tf.concat([tf.ones((batch, 1)), tf.zeros((batch, 1))], axis=0)
    with tf.GradientTape() as tape:
      d_loss = self.loss_fn(labels, self.discriminator(tf.concat([fakes, reals], axis=0)))
    grads = tape.gradient(d_loss, self.discriminator.trainable_weights)
    self.d_optimizer.apply_gradients(zip(grads, self.discriminator.trainable_weights))
    with tf.GradientTape() as tape:
      fakes = self.generator(tf.random.normal((batch, Z_DIM)))
      g_loss = self.loss_fn(tf.zeros((batch, 1)), self.discriminator(fakes))
    grads = tape.gradient(g_loss, self.generator.trainable_weights)
    self.g_optimizer.apply_gradients(zip(grads, self.generator.trainable_weights))
    return {"d_loss": d_loss, "g_loss": g_loss}


def reals_dataset(batches: int = STEPS) -> tf.data.Dataset:
  images = tf.random.stateless_uniform([batches * 4, 8, 8, 3], seed=(0, 1), minval=-1, maxval=1)
  return tf.data.Dataset.from_tensor_slices(images).batch(4)


def compiled_gan(generator, **compile_kwargs):
  gan = KerasIoGAN(make_discriminator(), generator)
  g_opt, d_opt = keras.optimizers.Adam(G_LR, beta_1=0.5), keras.optimizers.Adam(D_LR, beta_1=0.5)
  gan.compile(d_optimizer=d_opt, g_optimizer=g_opt,
              loss_fn=keras.losses.BinaryCrossentropy(from_logits=True), **compile_kwargs)
  return gan, g_opt, d_opt


def _values(optimizer) -> list:
  return [v.numpy().copy() for v in optimizer.variables] + [float(optimizer.learning_rate.numpy())]


class Before(keras.callbacks.Callback):
  """Runs before ReganCallback: snapshots D's optimizer (its variables and learning rate)."""

  def __init__(self, d_optimizer):
    super().__init__()
    self.d_optimizer, self.snapshot = d_optimizer, None

  def on_train_batch_begin(self, batch, logs=None):
    self.snapshot = _values(self.d_optimizer)

  def on_train_batch_end(self, batch, logs=None):
    self.snapshot = _values(self.d_optimizer)


class After(keras.callbacks.Callback):
  """Runs after ReganCallback: records what a user sees at each batch."""

  def __init__(self, before, generator, g_optimizer):
    super().__init__()
    self.before, self.tensors, self.g_optimizer = before, pruned_tensors(generator), g_optimizer
    self.d_untouched = []  # per hook call: D optimizer identical before and after ReganCallback
    self.g_lr, self.d_lr, self.masks_at_begin, self.weights_at_begin = [], [], [], []
    self.weights_at_end, self.masks_at_end = [], []

  def _d_same(self):
    now = _values(self.before.d_optimizer)
    return len(now) == len(self.before.snapshot) and all(
        np.array_equal(a, b) for a, b in zip(now, self.before.snapshot))

  def on_train_batch_begin(self, batch, logs=None):
    self.d_untouched.append(self._d_same())
    self.g_lr.append(float(self.g_optimizer.learning_rate.numpy()))
    self.d_lr.append(float(self.before.d_optimizer.learning_rate.numpy()))
    self.masks_at_begin.append([t.mask.numpy() for t in self.tensors])
    self.weights_at_begin.append([t.weight.numpy() for t in self.tensors])

  def on_train_batch_end(self, batch, logs=None):
    self.d_untouched.append(self._d_same())
    self.masks_at_end.append([t.mask.numpy() for t in self.tensors])
    self.weights_at_end.append([t.weight.numpy() for t in self.tensors])


@pytest.fixture(scope="module")
def fit_run():
  keras.utils.set_random_seed(5)
  generator = regan_tf.prune_regrow(make_tiny_generator(Z_DIM), sparsity=SPARSITY, warmup=WARMUP,
                                    g=G)
  gan, g_opt, d_opt = compiled_gan(generator)
  before = Before(d_opt)
  after = After(before, generator, g_opt)
  callback = regan_tf.ReganCallback(generator, g_optimizer=g_opt, verbose=0)
  gan.fit(reals_dataset(), epochs=1, verbose=0, callbacks=[before, callback, after])
  return generator, callback, after


def test_fit_keeps_sparse_phases_sparse_after_every_batch(fit_run):
  generator, callback, after = fit_run
  schedule = regan_tf.controller_of(generator).schedule
  assert callback.step == STEPS
  sparse_steps = [s for s in range(STEPS) if schedule.phase_at(s) == Phase.SPARSE]
  assert sparse_steps == [2, 3, 6, 7]
  for step in sparse_steps:
    for tensor, mask, weight in zip(after.tensors, after.masks_at_end[step],
                                    after.weights_at_end[step]):
      zeros = np.mean(weight == 0)
      assert zeros >= np.floor(SPARSITY * weight.size) / weight.size, (step, tensor.name, zeros)
      assert np.all(weight[mask == 0] == 0), (step, tensor.name)
      assert np.mean(mask == 0) >= 0.29, (step, tensor.name)
  for step in (0, 1, 4, 5):  # warm-up and dense: no masks
    assert all(np.all(m == 1) for m in after.masks_at_end[step]), step


def test_fit_dense_phase_regrows_from_zero_at_a_tenth_of_the_learning_rate(fit_run):
  _, _, after = fit_run
  expected = [G_LR, G_LR, G_LR, G_LR, 0.1 * G_LR, 0.1 * G_LR, G_LR, G_LR]
  np.testing.assert_allclose(after.g_lr, expected, rtol=1e-6)
  # The first dense batch starts with every mask one and the last sparse phase's pruned entries zero...
  last_sparse_masks = after.masks_at_end[3]
  for mask, weight in zip(after.masks_at_begin[4], after.weights_at_begin[4]):
    assert np.all(mask == 1)
  for pruned, weight in zip(last_sparse_masks, after.weights_at_begin[4]):
    assert np.all(weight[pruned == 0] == 0)
  # ... and those entries then train again (regrowth), from zero.
  regrown = sum(int(np.count_nonzero(w[m == 0]))
                for m, w in zip(last_sparse_masks, after.weights_at_end[5]))
  assert regrown > 0


def test_fit_callback_never_touches_the_discriminators_optimizer(fit_run):
  _, _, after = fit_run
  assert len(after.d_untouched) == 2 * STEPS and all(after.d_untouched)
  np.testing.assert_allclose(after.d_lr, [D_LR] * STEPS, rtol=1e-6)


def test_strip_leaves_a_plain_model_with_the_zeros(fit_run):
  generator, _, after = fit_run
  plain = regan_tf.strip(generator)
  assert isinstance(plain, keras.Model)
  assert not any(isinstance(layer, pruning_wrapper.PruneLowMagnitude) for layer in plain.layers)
  assert pruned_tensors(plain) == []
  for tensor, mask in zip(after.tensors, after.masks_at_end[-1]):  # the run ended sparse
    kernel = plain.get_layer(tensor.name.split("/")[0]).kernel.numpy()
    assert np.all(kernel[mask == 0] == 0)
  z = tf.random.stateless_normal([3, Z_DIM], seed=(1, 2))
  np.testing.assert_allclose(plain(z, training=False).numpy(),
                             generator(z, training=False).numpy(), atol=1e-6)


def test_fit_resumed_mid_dense_phase_continues_the_schedule(tmp_path):
  generator = regan_tf.prune_regrow(make_tiny_generator(Z_DIM), warmup=WARMUP, g=G)
  gan, g_opt, _ = compiled_gan(generator)
  gan.fit(reals_dataset(5), epochs=1, verbose=0,  # steps 0-4; step 4 is dense
          callbacks=[regan_tf.ReganCallback(generator, g_optimizer=g_opt, verbose=0)])
  items = regan_tf.controller_of(generator).checkpoint_items()
  path = tf.train.Checkpoint(generator=generator, g_optimizer=g_opt, **items).write(
      str(tmp_path / "ckpt"))

  resumed = regan_tf.prune_regrow(make_tiny_generator(Z_DIM, seed=9), warmup=WARMUP, g=G)
  gan, g_opt, _ = compiled_gan(resumed)
  items = regan_tf.controller_of(resumed).checkpoint_items()
  tf.train.Checkpoint(generator=resumed, g_optimizer=g_opt, **items).read(path)
  for a, b in zip(generator.weights, resumed.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  lrs, masked = [], []
  record = keras.callbacks.LambdaCallback(on_train_batch_begin=lambda batch, logs: (
      lrs.append(float(g_opt.learning_rate.numpy())),
      masked.append(sum(int(np.sum(t.mask.numpy() == 0)) for t in pruned_tensors(resumed)))))
  gan.fit(reals_dataset(3), epochs=1, verbose=0, callbacks=[  # steps 5 (dense), 6 and 7 (sparse)
      regan_tf.ReganCallback(resumed, g_optimizer=g_opt, initial_step=5, verbose=0), record])
  np.testing.assert_allclose(lrs, [0.1 * G_LR, G_LR, G_LR], rtol=1e-6)
  assert masked[0] == 0 and masked[1] > 0 and masked[2] == masked[1]


def test_fit_without_the_callback_fails_naming_it():
  generator = regan_tf.prune_regrow(make_tiny_generator(Z_DIM), warmup=WARMUP, g=G)
  gan, _, _ = compiled_gan(generator)
  with pytest.raises(tf.errors.InvalidArgumentError, match="ReganCallback"):
    gan.fit(reals_dataset(1), epochs=1, verbose=0)


def test_callback_refuses_what_it_cannot_do():
  generator = regan_tf.prune_regrow(make_tiny_generator(Z_DIM), warmup=WARMUP, g=G)
  gan, g_opt, d_opt = compiled_gan(generator, steps_per_execution=2)
  with pytest.raises(ValueError, match="steps_per_execution=1"):
    gan.fit(reals_dataset(2), epochs=1, verbose=0,
            callbacks=[regan_tf.ReganCallback(generator, g_optimizer=g_opt, verbose=0)])
  decay = keras.optimizers.schedules.ExponentialDecay(1e-3, 100, 0.5)
  with pytest.raises(ValueError, match="learning_rate="):
    regan_tf.ReganCallback(generator, g_optimizer=keras.optimizers.Adam(decay))
  scaled = regan_tf.controller_of(generator).learning_rate(decay)
  regan_tf.ReganCallback(generator, g_optimizer=keras.optimizers.Adam(scaled))  # accepted
  with pytest.raises(ValueError, match="prune_regrow"):
    regan_tf.ReganCallback(make_tiny_generator(Z_DIM), g_optimizer=g_opt)


# ------------------------------------------------------------- custom loops ---


def custom_loop(generator, steps: int, *, hooks=("before_g_step", "mask_gradients", "apply_masks")):
  """A tf.GradientTape G loop against a fixed D, calling only the given hooks.

  Returns the masks and weights of every pruned tensor after each step."""
  controller = regan_tf.controller_of(generator)
  discriminator = make_discriminator()
  optimizer = keras.optimizers.Adam(G_LR, beta_1=0.5)
  variables = generator.trainable_variables

  @tf.function
  def g_step(z):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.nn.softplus(-discriminator(generator(z, training=True))))
    grads = tape.gradient(loss, variables)
    if "mask_gradients" in hooks:
      grads = controller.mask_gradients(grads, variables)
    optimizer.apply_gradients(zip(grads, variables))
    if "apply_masks" in hooks:
      controller.apply_masks()

  after = []
  for step in range(steps):
    if "before_g_step" in hooks:
      controller.before_g_step(step, optimizer)
    g_step(tf.random.stateless_normal([4, Z_DIM], seed=(step, 3)))
    after.append([(t.mask.numpy(), t.weight.numpy()) for t in controller.tensors])
  return after


def test_custom_loop_with_the_hooks_trains_exactly_sparse():
  generator = regan_tf.prune_regrow(make_tiny_generator(Z_DIM), sparsity=SPARSITY, warmup=1, g=3)
  for step, tensors in enumerate(custom_loop(generator, 4)):
    for mask, weight in tensors:
      if step >= 1:  # sparse phase 1: steps 1-3
        assert np.mean(mask == 0) >= 0.29 and np.all(weight[mask == 0] == 0)


@pytest.mark.parametrize("missing", ["mask_gradients", "apply_masks"])
def test_custom_loop_that_forgets_a_hook_fails_naming_it(missing):
  generator = regan_tf.prune_regrow(make_tiny_generator(Z_DIM), warmup=1, g=3)
  hooks = tuple(h for h in ("before_g_step", "mask_gradients", "apply_masks") if h != missing)
  with pytest.raises(RuntimeError, match=rf"without controller\.{missing}\(\)"):
    custom_loop(generator, 3, hooks=hooks)


def test_custom_loop_that_forgets_before_g_step_fails_naming_it():
  generator = regan_tf.prune_regrow(make_tiny_generator(Z_DIM), warmup=1, g=3)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"before_g_step\(step, g_optimizer\)"):
    custom_loop(generator, 2, hooks=("mask_gradients", "apply_masks"))
  # Inference (training=False) needs no schedule.
  assert generator(tf.zeros([1, Z_DIM]), training=False).shape == (1, 8, 8, 3)


def test_mask_gradients_of_the_original_models_variables_raises():
  original = make_tiny_generator(Z_DIM)
  controller = regan_tf.controller_of(regan_tf.prune_regrow(original, warmup=1, g=1))
  variables = original.trainable_variables
  with pytest.raises(ValueError, match="none of which is a pruned weight"):
    controller.mask_gradients([tf.ones_like(v) for v in variables], variables)


def test_subclassed_generator_gets_an_error_naming_what_is_supported():

  class Subclassed(keras.Model):

    def __init__(self):
      super().__init__()
      self.fc = keras.layers.Dense(4)

    def call(self, z):
      return self.fc(z)

  model = Subclassed()
  model(tf.zeros([1, Z_DIM]))
  with pytest.raises(ValueError, match="subclassed model; only Functional and Sequential"):
    regan_tf.prune_regrow(model, warmup=1, g=1)
  with pytest.raises(ValueError, match="carries no Re-GAN schedule"):
    regan_tf.controller_of(make_tiny_generator(Z_DIM))


def test_import_regan_tf_stays_light():
  proc = run_python(["-c", "import sys, regan_tf; "
                           "assert {'prune_regrow', 'ReganCallback', 'strip'} <= set(dir(regan_tf)); "
                           "print('tensorflow' in sys.modules)"])
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip() == "False"


# ----------------------------------------------------------------- examples ---


def _example(name):
  spec = importlib.util.spec_from_file_location(f"example_{name}",
                                                os.path.join(REPO, "examples", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.mark.parametrize("name", ["keras_fit_dcgan", "custom_loop"])
def test_example_trains_a_few_steps_and_ends_sparse(name, tmp_path):
  args = ["--steps=4", "--warmup=1", "--g=1", "--batch_size=8", "--latent_dim=8"]
  if name == "keras_fit_dcgan":
    args.append(f"--out={tmp_path}")
  zeros = _example(name).main(args)
  assert len(zeros) == 4 and all(0.29 <= z < 0.31 for z in zeros.values()), zeros
  if name == "keras_fit_dcgan":
    assert (tmp_path / "samples.png").exists()
    loaded = keras.models.load_model(tmp_path / "generator.keras")
    assert not any(isinstance(l, pruning_wrapper.PruneLowMagnitude) for l in loaded.layers)


# ---------------------------------------------------------- gin import route ---

MY_GAN = '''
"""A user's architecture for the regan_tf CLI."""
import gin

from regan_tf import models
from regan_tf.compat import keras


@gin.configurable
def build(*, image_size, channels, z_dim, width=8):
  z = keras.Input((z_dim,))
  x = keras.layers.Reshape((4, 4, width))(keras.layers.Dense(4 * 4 * width)(z))
  while x.shape[1] < image_size:
    x = keras.layers.Conv2DTranspose(width, 4, strides=2, padding="same", activation="relu")(x)
  generator = keras.Model(z, keras.layers.Conv2D(channels, 3, padding="same", activation="tanh")(x),
                          name="my_generator")
  images = keras.Input((image_size, image_size, channels))
  y = keras.layers.Flatten()(keras.layers.Conv2D(width, 4, strides=2, padding="same")(images))
  discriminator = keras.Model(images, keras.layers.Dense(1)(y), name="my_discriminator")
  return models.GAN(generator, discriminator, z_dim)
'''


@pytest.mark.slow
def test_gin_import_route_trains_your_own_architecture_with_the_cli(tmp_path):
  (tmp_path / "my_gan.py").write_text(textwrap.dedent(MY_GAN))
  (tmp_path / "my_gan.gin").write_text("import my_gan\ntrain.model = @my_gan.build\n"
                                       "my_gan.build.width = 6\n")
  bindings = [*TINY_MAIN_JOB, "train.train_steps = 3", "regan.warmup = 1", "regan.g = 1",
              "train.evaluation = None", "train.export = False"]
  proc = run_python(["-m", "regan_tf.train", "--gin_file=regan_digits", "--gin_file=my_gan.gin",
                     f"--workdir={tmp_path / 'run'}", *[f"--gin_bindings={b}" for b in bindings]],
                    cwd=str(tmp_path), env={"PYTHONPATH": REPO}, timeout=240)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "wrapped 4 layers of 'my_generator'" in proc.stderr
  assert "sparse phase 1" in proc.stderr


@pytest.mark.slow
def test_fit_with_the_callback_under_two_replicas_keeps_every_copy_sparse():
  proc = run_two_replica_script("""
      sys.path.insert(0, %r)
      import regan_tf
      from regan_tf.pruning.wrapper import pruned_tensors
      from test_keras_api import After, Before, compiled_gan, make_tiny_generator, reals_dataset
      strategy = two_replica_strategy()
      with strategy.scope():
        g = regan_tf.prune_regrow(make_tiny_generator(8), warmup=2, g=2, strategy=strategy)
        gan, g_opt, d_opt = compiled_gan(g)
        # Losses under a strategy are reduced by hand (Keras refuses the default reduction).
        gan.loss_fn = lambda y, p: tf.reduce_mean(
            keras.losses.binary_crossentropy(y, p, from_logits=True)) / 2
      before = Before(d_opt)
      after = After(before, g, g_opt)
      gan.fit(reals_dataset(7), epochs=1, verbose=0,
              callbacks=[before, regan_tf.ReganCallback(g, g_optimizer=g_opt, verbose=0), after])
      for t in pruned_tensors(g):  # step 6 (the last) is sparse
        copies = [v.numpy() for v in t.weight.values]
        assert len(copies) == 2 and np.array_equal(copies[0], copies[1]), t.name
        assert np.all(copies[0][t.mask.numpy() == 0] == 0) and np.mean(t.mask.numpy() == 0) > 0.29
      print("G_LR", after.g_lr, "D_UNTOUCHED", all(after.d_untouched))
  """ % (os.path.dirname(os.path.abspath(__file__)),))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "D_UNTOUCHED True" in proc.stdout
  lrs = [float(x) for x in proc.stdout.split("G_LR [")[1].split("]")[0].split(",")]
  np.testing.assert_allclose(lrs, [G_LR] * 4 + [0.1 * G_LR] * 2 + [G_LR], rtol=1e-6)
