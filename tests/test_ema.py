"""Tests for regan_tf.ema (GeneratorEMA)."""


import numpy as np
import pytest

from conftest import run_two_replica_script
from regan_tf.compat import keras, tf
from regan_tf.ema import GeneratorEMA
from regan_tf.pruning import build_controller, pruned_tensors
from regan_tf.pruning.schedule import Phase
from conftest import make_tiny_generator

Z = tf.random.stateless_normal([4, 8], seed=(0, 1))


make_generator = make_tiny_generator


def perturb(model: keras.Model, step: int, trainable_only: bool = False) -> None:
  """Stands in for an optimizer step (and, unless trainable_only, BN statistics moving)."""
  variables = model.trainable_variables if trainable_only else model.variables
  for i, variable in enumerate(variables):
    noise = tf.random.stateless_normal(variable.shape, seed=(step, i))
    variable.assign(variable + 0.1 * tf.cast(noise, variable.dtype))


def numpy_ema(history, decay, start_step, trainable_mask):
  """The EMA recurrence over weight snapshots history[step] (lists of arrays)."""
  shadow = [w.copy() for w in history[0]]
  for step, weights in enumerate(history):
    for i, w in enumerate(weights):
      if step < start_step or not trainable_mask[i]:
        shadow[i] = w.copy()
      else:
        shadow[i] = decay * shadow[i] + (1 - decay) * w
  return shadow


# -------------------------------------------------------------- validation


@pytest.mark.parametrize("kwargs, match", [
    (dict(decay=1.0), r"decay=1.0 must be a number in \[0, 1\)"),
    (dict(decay=-0.1), "decay=-0.1"),
    (dict(start_step=-1), "start_step=-1 must be an int >= 0"),
    (dict(start_step=1.5), "start_step=1.5"),
])
def test_invalid_arguments_are_rejected_at_construction(kwargs, match):
  with pytest.raises(ValueError, match=match):
    GeneratorEMA(make_generator(), **kwargs)


def test_rejects_a_non_model():
  with pytest.raises(TypeError, match="keras.Model"):
    GeneratorEMA(lambda z: z)


# ------------------------------------------------------------- averaging


def test_matches_the_numpy_recurrence_and_copies_before_start_step():
  generator = make_generator()
  decay, start_step = 0.9, 2
  ema = GeneratorEMA(generator, decay=decay, start_step=start_step)
  assert len(ema.variables) == len(generator.variables)
  trainable = {v.ref() for v in generator.trainable_variables}
  trainable_mask = [v.ref() in trainable for v in generator.variables]
  history = []
  update = tf.function(ema.update)
  for step in range(6):
    perturb(generator, step)
    history.append([v.numpy() for v in generator.variables])
    update(tf.constant(step, tf.int64))
    if step < start_step:  # exact copies before start_step
      for shadow, weight in zip(ema.variables, generator.variables):
        np.testing.assert_array_equal(shadow.numpy(), weight.numpy())
  expected = numpy_ema(history, decay, start_step, trainable_mask)
  for i, shadow in enumerate(ema.variables):
    np.testing.assert_allclose(shadow.numpy(), expected[i], atol=1e-6)
    if not trainable_mask[i]:  # BN moving statistics: the current values, not an average
      np.testing.assert_array_equal(shadow.numpy(), history[-1][i])
  assert not all(trainable_mask)


def test_model_outputs_equal_a_model_loaded_with_the_averaged_weights():
  generator = make_generator()
  ema = GeneratorEMA(generator, decay=0.5)
  for step in range(3):
    perturb(generator, step)
    ema.update(step)
  reference = keras.models.clone_model(generator)
  reference.set_weights([v.numpy() for v in ema.variables])
  np.testing.assert_allclose(ema.model(Z, training=False).numpy(),
                             reference(Z, training=False).numpy(), atol=1e-6)
  assert not np.allclose(ema.model(Z).numpy(), generator(Z).numpy())
  assert ema.model.name == "tiny_g_ema"


def test_update_compiles_with_xla():
  generator = make_generator()
  ema = GeneratorEMA(generator, decay=0.5)
  before = [v.numpy() for v in ema.trainable_variables]
  perturb(generator, 0)
  tf.function(ema.update, jit_compile=True)(tf.constant(0, tf.int64))
  for shadow, old, weight in zip(ema.trainable_variables, before, generator.trainable_variables):
    np.testing.assert_allclose(shadow.numpy(), 0.5 * old + 0.5 * weight.numpy(), atol=1e-6)


def test_checkpoint_round_trip(tmp_path):
  generator = make_generator()
  ema = GeneratorEMA(generator, decay=0.5)
  for step in range(2):
    perturb(generator, step)
    ema.update(step)
  path = tf.train.Checkpoint(**ema.checkpoint_items()).save(str(tmp_path / "ckpt"))
  restored = GeneratorEMA(make_generator(seed=5), decay=0.5)
  tf.train.Checkpoint(**restored.checkpoint_items()).restore(path).assert_consumed()
  for a, b in zip(restored.variables, ema.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  np.testing.assert_array_equal(restored.model(Z).numpy(), ema.model(Z).numpy())


def test_mixed_precision_generator():
  previous = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    generator = make_generator()
  finally:
    keras.mixed_precision.set_global_policy(previous)
  ema = GeneratorEMA(generator, decay=0.5)
  perturb(generator, 0)
  tf.function(ema.update)(tf.constant(0, tf.int64))
  assert ema.model(Z).dtype == generator(Z).dtype
  kernel = ema.trainable_variables[0]
  assert kernel.dtype == tf.float32


# ---------------------------------------------------------------- Re-GAN


def test_regan_wrapped_generator_masked_entries_are_zero_in_the_ema():
  controller = build_controller(make_generator(), sparsity=0.5, warmup=2, g=2)
  generator = controller.generator
  ema = GeneratorEMA(generator, decay=0.9, controller=controller)
  # The clone keeps the pruning wrappers.
  assert len(pruned_tensors(ema.model)) == len(controller.tensors)
  update = tf.function(ema.update)
  for step in range(3):
    controller.before_g_step(step)
    perturb(generator, step, trainable_only=True)
    controller.apply_masks()
    update(tf.constant(step, tf.int64))
  assert controller.phase == Phase.SPARSE
  by_ref = {w.ref(): s for s, w in zip(ema.trainable_variables, generator.trainable_variables)}
  total_masked = 0
  for tensor in controller.tensors:
    mask = tensor.mask.numpy()
    shadow = by_ref[tensor.weight.ref()].numpy()
    total_masked += int((mask == 0).sum())
    assert np.all(shadow[mask == 0] == 0)
    assert np.all(shadow[mask == 1] != 0)
  assert total_masked > 0
  # The EMA copy of each mask is G's mask (copied, not averaged).
  for tensor, ema_tensor in zip(controller.tensors, pruned_tensors(ema.model)):
    np.testing.assert_array_equal(ema_tensor.mask.numpy(), tensor.mask.numpy())


def test_mask_without_a_controller_needs_one():
  ema = GeneratorEMA(make_generator())
  with pytest.raises(ValueError, match="ReganController"):
    ema.mask()


# --------------------------------------------------------- MirroredStrategy


def test_mirrored_strategy_two_replicas():
  """``update`` in the replica step under MirroredStrategy on 2 logical CPUs (a fresh process)."""
  result = run_two_replica_script("""
      from regan_tf.ema import GeneratorEMA
      dist = two_replica_strategy()
      with dist.scope():
        z = keras.Input((4,))
        h = keras.layers.BatchNormalization()(keras.layers.Dense(6)(z))
        generator = keras.Model(z, keras.layers.Dense(3)(h))
        ema = GeneratorEMA(generator, decay=0.5, start_step=1)
      start = [v.numpy() for v in generator.trainable_variables]

      @tf.function
      def step(s):
        def replica_fn():
          for v in generator.trainable_variables:
            v.assign_add(tf.ones_like(v))  # the same "update" on every replica
          ema.update(s)
        dist.run(replica_fn)

      step(tf.constant(0, tf.int64))  # before start_step: copy (w0 + 1)
      step(tf.constant(1, tf.int64))  # average: 0.5 (w0 + 1) + 0.5 (w0 + 2)
      for shadow, w0 in zip(ema.trainable_variables, start):
        for component in shadow.values:
          assert np.allclose(component.numpy(), w0 + 1.5), (component.numpy(), w0)
      # Host side, outside the scope: 0.5 (w0 + 1.5) + 0.5 (w0 + 2) on both copies.
      ema.update(2)
      for shadow, w0 in zip(ema.trainable_variables, start):
        for component in shadow.values:
          assert np.allclose(component.numpy(), w0 + 1.75), (component.numpy(), w0)
      print("OK")
      """, timeout=120)
  assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
