"""Tests for regan_tf.pruning.controller: a custom GAN-style loop through the phases."""

import json
import textwrap

import numpy as np
import pytest

from regan_tf.compat import keras, tf
from regan_tf.pruning import masks
from regan_tf.pruning.controller import ReganController, build_controller
from regan_tf.pruning.schedule import Phase, ReganSchedule
from regan_tf.pruning.wrapper import prune_generator, pruned_tensors
from conftest import make_tiny_generator, run_two_replica_script

WARMUP, G = 3, 3  # warm-up 0..2, sparse 3..5, dense 6..8, sparse 9..11
BASE_LR = 1e-2


make_generator = make_tiny_generator


def make_discriminator() -> keras.Model:
  keras.utils.set_random_seed(1)
  images = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(4, 3, strides=2, name="d_conv")(images)
  x = keras.layers.Flatten()(x)
  return keras.Model(images, keras.layers.Dense(1, name="d_fc")(x), name="tiny_d")


def z_for(step: int) -> tf.Tensor:
  return tf.random.stateless_normal([4, 8], seed=(step, 7))


class Run:
  """A pruned generator, its controller and Adam(beta_1=0.5) trained against a fixed D."""

  def __init__(self, reset_optimizer_slots: bool = False, plain_lr: bool = False,
               **prune_kwargs):
    self.generator = prune_generator(make_generator(), **prune_kwargs)
    self.discriminator = make_discriminator()
    self.schedule = ReganSchedule(warmup=WARMUP, g=G, sparsity=0.3)
    self.controller = ReganController(self.generator, self.schedule,
                                      reset_optimizer_slots=reset_optimizer_slots)
    learning_rate = BASE_LR if plain_lr else self.controller.learning_rate(BASE_LR)
    self.optimizer = keras.optimizers.Adam(learning_rate, beta_1=0.5)
    self.tensors = pruned_tensors(self.generator)
    self.variables = self.generator.trainable_variables
    self.train_step = tf.function(self._train_step)

  def loss(self, z):
    logits = self.discriminator(self.generator(z, training=True), training=True)
    return tf.reduce_mean(tf.nn.softplus(-logits))

  def gradients(self, z):
    with tf.GradientTape() as tape:
      loss = self.loss(z)
    raw = tape.gradient(loss, self.variables)
    return raw, self.controller.mask_gradients(raw, self.variables)

  def _train_step(self, z):
    _, grads = self.gradients(z)
    self.optimizer.apply_gradients(zip(grads, self.variables))
    self.controller.apply_masks()

  def step(self, step: int):
    events = self.controller.before_g_step(step, self.optimizer)
    self.train_step(z_for(step))
    return events

  def checkpoint(self) -> tf.train.Checkpoint:
    return tf.train.Checkpoint(generator=self.generator, optimizer=self.optimizer,
                               **self.controller.checkpoint_items())

  def state(self):
    return ([t.mask.numpy() for t in self.tensors], [t.weight.numpy() for t in self.tensors])


def test_sparse_phase_keeps_masked_entries_exactly_zero_and_dense_phase_regrows():
  run = Run()
  for step in range(WARMUP):
    run.step(step)
  before = [t.weight.numpy() for t in run.tensors]
  events = run.controller.before_g_step(WARMUP, run.optimizer)
  assert [e.kind for e in events] == ["mask_update"]
  assert events[0].phase == Phase.SPARSE and events[0].cycle == 1
  assert events[0].num_masked == sum(
      masks.num_pruned(w.size, 0.3) for w in before)
  masked = []
  for tensor, weights in zip(run.tensors, before):
    mask = tensor.mask.numpy()
    # Per tensor, the smallest magnitudes at the phase start are masked.
    np.testing.assert_array_equal(mask, masks.magnitude_mask(weights, 0.3).numpy())
    np.testing.assert_array_equal(tensor.weight.numpy()[mask == 0], 0.0)
    masked.append(mask == 0)
  moved_by_momentum = False
  for step in range(WARMUP, WARMUP + G):
    if step > WARMUP:
      assert run.controller.before_g_step(step, run.optimizer) == []
    raw, grads = run.gradients(z_for(step))
    by_ref = dict(zip([v.ref() for v in run.variables], grads))
    raw_by_ref = dict(zip([v.ref() for v in run.variables], raw))
    for tensor, is_masked in zip(run.tensors, masked):
      np.testing.assert_array_equal(by_ref[tensor.weight.ref()].numpy()[is_masked], 0.0)
      assert np.any(raw_by_ref[tensor.weight.ref()].numpy()[is_masked] != 0)
    run.optimizer.apply_gradients(zip(grads, run.variables))
    # Adam (beta_1 = 0.5) still moves zero-gradient weights through its momentum ...
    moved_by_momentum |= any(
        np.any(t.weight.numpy()[m] != 0) for t, m in zip(run.tensors, masked))
    run.controller.apply_masks()
    # ... and apply_masks makes them exactly zero again after every step.
    for tensor, is_masked in zip(run.tensors, masked):
      np.testing.assert_array_equal(tensor.weight.numpy()[is_masked], 0.0)
  assert moved_by_momentum

  # Dense phase: masks back to ones, regrown entries start at zero, lr x 0.1.
  events = run.controller.before_g_step(WARMUP + G, run.optimizer)
  assert [e.kind for e in events] == ["regrow"]
  assert float(run.controller.lr_factor.numpy()) == pytest.approx(0.1)
  assert float(run.optimizer.learning_rate.numpy()) == pytest.approx(BASE_LR)  # not yet applied
  for tensor, is_masked in zip(run.tensors, masked):
    np.testing.assert_array_equal(tensor.mask.numpy(), 1.0)
    np.testing.assert_array_equal(tensor.weight.numpy()[is_masked], 0.0)
  for step in range(WARMUP + G, WARMUP + 2 * G):
    run.step(step)
  assert float(run.optimizer.learning_rate.numpy()) == pytest.approx(0.1 * BASE_LR)
  for tensor, is_masked in zip(run.tensors, masked):
    regrown = tensor.weight.numpy()[is_masked]
    assert np.mean(regrown != 0) > 0.9, tensor.name


def test_discriminator_is_untouched_by_the_controller():
  run = Run(prune_biases_and_norms=True)
  d_before = [v.numpy() for v in run.discriminator.weights]
  d_vars = run.discriminator.trainable_variables
  d_grads = [tf.ones_like(v) for v in d_vars]
  g_vars = run.generator.trainable_variables
  g_grads = [tf.ones_like(v) for v in g_vars]
  for step in range(WARMUP + G + 1):
    run.step(step)
    # D's gradients pass through untouched when given with G's...
    passed = run.controller.mask_gradients(g_grads + d_grads, g_vars + d_vars)
    assert all(a is b for a, b in zip(passed[len(g_vars):], d_grads))
  # ... and D's variables alone match no pruned tensor: an error, not a silent no-op.
  with pytest.raises(ValueError, match="none of which is a pruned weight"):
    run.controller.mask_gradients(d_grads, d_vars)
  for before, variable in zip(d_before, run.discriminator.weights):
    np.testing.assert_array_equal(variable.numpy(), before)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
  """Trains 8 steps, writing a checkpoint before each step and recording the state
  right after ``before_g_step`` (what a resumed run must reproduce)."""
  directory = tmp_path_factory.mktemp("resume")
  run = Run()
  checkpoint = run.checkpoint()
  after_hook = {}
  for step in range(WARMUP + G + 2):
    checkpoint.write(str(directory / f"before-{step}"))
    run.controller.before_g_step(step, run.optimizer)
    after_hook[step] = run.state() + (float(run.controller.lr_factor.numpy()),)
    run.train_step(z_for(step))
    after_hook[(step, "trained")] = run.state()
  return directory, after_hook


@pytest.mark.parametrize("step, kind", [
    (WARMUP - 1, "resume"),       # last warm-up step
    (WARMUP, "mask_update"),      # first sparse step: masks computed now
    (WARMUP + 1, "resume"),       # mid sparse: masks come from the checkpoint
    (WARMUP + G - 1, "resume"),   # last sparse step
    (WARMUP + G, "regrow"),       # first dense step
    (WARMUP + G + 1, "resume"),   # mid dense
])
def test_resume_on_each_side_of_a_boundary_continues_the_same_phase(reference_run, step, kind):
  directory, after_hook = reference_run
  run = Run()  # a fresh process's model: new variables, other initial values
  run.optimizer.build(run.variables)  # so that Adam's slots restore at once
  run.checkpoint().read(str(directory / f"before-{step}")).assert_consumed()
  events = run.controller.before_g_step(step, run.optimizer)
  assert [e.kind for e in events] == [kind]
  expected_masks, expected_weights, expected_lr = after_hook[step]
  masks_now, weights_now = run.state()
  for expected, actual in zip(expected_masks, masks_now):
    np.testing.assert_array_equal(actual, expected)
  for expected, actual in zip(expected_weights, weights_now):
    np.testing.assert_array_equal(actual, expected)
  assert float(run.controller.lr_factor.numpy()) == pytest.approx(expected_lr)
  if kind == "resume" and run.schedule.phase_at(step) == Phase.SPARSE:
    assert int(run.controller.mask_step.numpy()) == run.schedule.phase_start(step)
  run.train_step(z_for(step))
  masks_trained, weights_trained = after_hook[(step, "trained")]
  for expected, actual in zip(weights_trained, run.state()[1]):
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)


def test_checkpoint_without_controller_state_recomputes_the_same_masks(tmp_path):
  run = Run()
  for step in range(WARMUP + 2):
    run.step(step)
  # A checkpoint that forgot controller.checkpoint_items(): the masks are there, but
  # the controller cannot tell which phase they belong to and recomputes them.
  tf.train.Checkpoint(generator=run.generator).write(str(tmp_path / "g-only"))
  fresh = Run()
  tf.train.Checkpoint(generator=fresh.generator).read(str(tmp_path / "g-only"))
  events = fresh.controller.before_g_step(WARMUP + 2, fresh.optimizer)
  assert [e.kind for e in events] == ["mask_update"]
  for source, target in zip(run.tensors, fresh.tensors):
    np.testing.assert_array_equal(target.mask.numpy(), source.mask.numpy())


def test_plain_float_learning_rate_is_scaled_and_survives_resume(tmp_path):
  run = Run(plain_lr=True)
  rates = {}
  for step in range(WARMUP + G + 2):
    run.step(step)
    rates[step] = float(run.optimizer.learning_rate.numpy())
  assert rates[WARMUP - 1] == pytest.approx(BASE_LR)
  assert rates[WARMUP] == pytest.approx(BASE_LR)
  assert rates[WARMUP + G] == pytest.approx(0.1 * BASE_LR)
  run.checkpoint().write(str(tmp_path / "mid-dense"))
  # Resumed mid-dense: the restored rate is 0.1 x base; the base is recovered.
  fresh = Run(plain_lr=True)
  fresh.optimizer.build(fresh.variables)
  fresh.checkpoint().read(str(tmp_path / "mid-dense")).assert_consumed()
  fresh.controller.before_g_step(WARMUP + G + 2, fresh.optimizer)
  assert float(fresh.optimizer.learning_rate.numpy()) == pytest.approx(0.1 * BASE_LR)
  fresh.controller.before_g_step(WARMUP + 2 * G, fresh.optimizer)
  assert float(fresh.optimizer.learning_rate.numpy()) == pytest.approx(BASE_LR)


def test_build_controller_converts_epochs_and_exports_sparse_weights():
  controller = build_controller(make_generator(), sparsity=0.5, warmup_epochs=0.5, g_epochs=1,
                                steps_per_epoch=4.0, train_steps=20, exclude=("to_rgb",))
  assert (controller.schedule.warmup, controller.schedule.g) == (2, 4)
  assert [t.name for t in controller.tensors] == ["fc/kernel", "conv/kernel"]
  controller.before_g_step(2)
  exported = controller.strip_for_export()
  assert controller.export_sparsity(exported) == pytest.approx(0.5, abs=0.01)
  np.testing.assert_array_equal(
      exported.get_layer("conv").kernel.numpy()[controller.tensors[1].mask.numpy() == 0], 0.0)
  with pytest.raises(ValueError, match="warmup"):
    build_controller(make_generator(), sparsity=0.5, warmup=1, warmup_epochs=1.0, g=1)


def test_before_g_step_is_idempotent_and_quiet_between_boundaries():
  run = Run()
  assert [e.kind for e in run.controller.before_g_step(0)] == ["start"]
  assert run.controller.before_g_step(0) == []
  assert run.controller.before_g_step(1) == []
  assert [e.kind for e in run.controller.before_g_step(WARMUP)] == ["mask_update"]
  assert run.controller.before_g_step(WARMUP) == []
  assert int(run.controller.mask_cycle.numpy()) == 1


def test_reset_optimizer_slots_zeroes_adam_moments_of_masked_entries():
  for reset in (False, True):
    run = Run(reset_optimizer_slots=reset)
    for step in range(WARMUP + 1):
      run.step(step)
    tensor = run.tensors[1]
    masked = tensor.mask.numpy() == 0
    # pylint: disable=protected-access
    index = run.optimizer._index_dict[run.optimizer._var_key(tensor.weight)]
    # Slots after the first sparse step: masked gradients were zero, so with the
    # reset m and v of masked entries stay exactly zero.
    m = run.optimizer._momentums[index].numpy()
    v = run.optimizer._velocities[index].numpy()
    # pylint: enable=protected-access
    assert np.all(m[masked] == 0) == reset
    assert np.all(v[masked] == 0) == reset


def test_mask_ema_zeroes_masked_entries_of_ema_copies():
  run = Run(prune_biases_and_norms=False)
  for step in range(WARMUP + 1):
    run.step(step)
  ema = [tf.Variable(v + 1.0) for v in run.variables]
  run.controller.mask_ema(ema)
  by_ref = dict(zip([v.ref() for v in run.variables], ema))
  for tensor in run.tensors:
    averaged = by_ref[tensor.weight.ref()].numpy()
    mask = tensor.mask.numpy()
    np.testing.assert_array_equal(averaged[mask == 0], 0.0)
    np.testing.assert_array_equal(averaged[mask == 1], tensor.weight.numpy()[mask == 1] + 1.0)
  bias = run.generator.get_layer("regan_prune_wrapper_fc").layer.bias
  np.testing.assert_array_equal(by_ref[bias.ref()].numpy(), bias.numpy() + 1.0)


def test_summary_scalars_report_phase_lr_and_actual_sparsity():
  run = Run()
  for step in range(WARMUP + 1):
    run.step(step)
  scalars = run.controller.summary_scalars()
  assert scalars["regan/phase"] == float(Phase.SPARSE)
  assert scalars["regan/lr_factor"] == 1.0
  assert scalars["regan/sparsity/conv/kernel"] == pytest.approx(0.3)
  assert scalars["regan/sparsity/overall"] == pytest.approx(
      sum(masks.num_pruned(t.weight.shape.num_elements(), 0.3) for t in run.tensors)
      / sum(t.weight.shape.num_elements() for t in run.tensors))
  # TFMOT's own summaries can read the wrappers (schedule and step set by the controller).
  wrapper = run.tensors[0].wrapper
  assert int(wrapper.pruning_step.numpy()) == WARMUP
  assert float(wrapper.pruning_schedule(wrapper.pruning_step)[1]) == pytest.approx(0.3)


def test_construction_errors_name_the_fix():
  with pytest.raises(ValueError, match="prune_generator"):
    ReganController(make_generator(), ReganSchedule(warmup=0, g=1, sparsity=0.3))
  with pytest.raises(TypeError, match="ReganSchedule"):
    ReganController(prune_generator(make_generator()), {"g": 1})
  run = Run(reset_optimizer_slots=True)
  with pytest.raises(ValueError, match="optimizer"):
    run.controller.before_g_step(0)


_MIRRORED = textwrap.dedent("""
    import json
    from regan_tf.pruning import ReganController, ReganSchedule, prune_generator
    strategy = two_replica_strategy()
    with strategy.scope():
      z = keras.Input((8,))
      x = keras.layers.Reshape((4, 4, 6))(keras.layers.Dense(96, name="fc")(z))
      x = keras.layers.BatchNormalization(name="bn")(keras.layers.Conv2D(5, 3, name="conv")(x))
      generator = prune_generator(keras.Model(z, keras.layers.Conv2DTranspose(
          3, 3, strides=2, name="to_rgb")(x)))
      controller = ReganController(generator, ReganSchedule(warmup=1, g=2, sparsity=0.3),
                                   strategy=strategy)
      optimizer = keras.optimizers.Adam(controller.learning_rate(1e-2), beta_1=0.5)

    def replica_step(z):
      with tf.GradientTape() as tape:
        # Different data per replica: the gradients differ before the all-reduce.
        loss = tf.reduce_mean(generator(z, training=True) ** 2) / 2.0
      variables = generator.trainable_variables
      grads = controller.mask_gradients(tape.gradient(loss, variables), variables)
      optimizer.apply_gradients(zip(grads, variables))
      controller.apply_masks()

    @tf.function
    def train_step(z):
      strategy.run(replica_step, args=(z,))

    data = tf.data.Dataset.from_tensor_slices(tf.random.normal([64, 8])).batch(8).repeat()
    batches = iter(strategy.experimental_distribute_dataset(data))
    report = []
    for step in range(6):
      events = controller.before_g_step(step)
      train_step(next(batches))
      for t in controller.tensors:
        (m0, m1), (w0, w1) = [[c.numpy() for c in v.values] for v in (t.mask, t.weight)]
        report.append(dict(step=step, events=[e.kind for e in events], name=t.name,
                           replicas=len(t.mask.values), same_mask=bool(np.all(m0 == m1)),
                           zeros=bool(np.all(w0[m0 == 0] == 0) and np.all(w1[m1 == 0] == 0)),
                           same_weights=bool(np.allclose(w0, w1)),
                           masked=float(np.mean(m0 == 0))))
    print("RESULT " + json.dumps(report))
    """)


def test_mirrored_strategy_two_replicas_hold_identical_masks():
  result = run_two_replica_script(_MIRRORED, timeout=240)
  lines = [l for l in result.stdout.splitlines() if l.startswith("RESULT ")]
  assert result.returncode == 0 and lines, result.stderr[-3000:]
  report = json.loads(lines[-1][len("RESULT "):])
  assert {r["replicas"] for r in report} == {2}
  assert all(r["same_mask"] and r["zeros"] and r["same_weights"] for r in report)
  masked = {(r["step"], r["name"]): r["masked"] for r in report}
  for name in ("fc/kernel", "conv/kernel", "to_rgb/kernel"):
    assert masked[(0, name)] == 0.0  # warm-up
    assert masked[(1, name)] == pytest.approx(0.3, abs=0.01)  # sparse phase 1
    assert masked[(3, name)] == 0.0  # dense phase 1
    assert masked[(5, name)] == pytest.approx(0.3, abs=0.01)  # sparse phase 2
