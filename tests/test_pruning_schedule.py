"""Tests for regan_tf.pruning.schedule: phase boundaries, validation, TFMOT contract."""

import pytest
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_schedule

from regan_tf.compat import tf
from regan_tf.pruning.schedule import Phase, ReganSchedule

W, S, D = Phase.WARMUP, Phase.SPARSE, Phase.DENSE


def test_boundaries_warmup_sparse_dense_repeat_with_period_2g():
  schedule = ReganSchedule(warmup=3, g=2, sparsity=0.3)
  phases = [schedule.phase_at(s) for s in range(13)]
  assert phases == [W, W, W, S, S, D, D, S, S, D, D, S, S]
  assert [schedule.cycle_at(s) for s in range(11)] == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
  # Last warm-up step is dense at the base rate; no event.
  assert schedule.phase_at(2) == W and schedule.lr_factor_at(2) == 1.0
  assert not schedule.is_mask_update_step(2) and not schedule.is_regrow_step(2)
  # First sparse step is the mask update; the next one is not.
  assert schedule.is_mask_update_step(3) and not schedule.is_mask_update_step(4)
  assert schedule.lr_factor_at(3) == 1.0
  # First dense step regrows and has the dense learning-rate factor.
  assert schedule.is_regrow_step(5) and not schedule.is_regrow_step(6)
  assert schedule.lr_factor_at(5) == pytest.approx(0.1)
  assert [s for s in range(40) if schedule.is_mask_update_step(s)] == list(range(3, 40, 4))
  assert [s for s in range(40) if schedule.is_regrow_step(s)] == list(range(5, 40, 4))
  for s in range(3, 40):
    assert schedule.phase_at(s + schedule.cycle_length) == schedule.phase_at(s)
    assert schedule.cycle_at(s + 4) == schedule.cycle_at(s) + 1


def test_no_warmup_masks_at_step_zero():
  schedule = ReganSchedule(warmup=0, g=1, sparsity=0.5, dense_lr_factor=0.25)
  assert [schedule.phase_at(s) for s in range(4)] == [S, D, S, D]
  assert schedule.is_mask_update_step(0) and schedule.is_regrow_step(1)
  assert schedule.lr_factor_at(1) == 0.25


@pytest.mark.parametrize("kwargs, argument", [
    (dict(warmup=0, g=1, sparsity=1.0), "sparsity"),
    (dict(warmup=0, g=1, sparsity=-0.1), "sparsity"),
    (dict(warmup=0, g=0, sparsity=0.3), "g"),
    (dict(warmup=-1, g=1, sparsity=0.3), "warmup"),
    (dict(warmup=0, g=1, sparsity=0.3, dense_lr_factor=0.0), "dense_lr_factor"),
    (dict(warmup=0, g=1, sparsity=0.3, final_phase="dense"), "final_phase"),
    (dict(warmup=0, g=1, sparsity=0.3, final_phase="sparse"), "total_steps"),
    (dict(warmup=10, g=5, sparsity=0.3, final_phase="sparse", total_steps=12), "total_steps"),
])
def test_invalid_arguments_raise_value_error_naming_them(kwargs, argument):
  with pytest.raises(ValueError, match=argument):
    ReganSchedule(**kwargs)


@pytest.mark.parametrize("kwargs, argument", [
    (dict(warmup=0, g=2.5, sparsity=0.3), "g"),
    (dict(warmup=True, g=1, sparsity=0.3), "warmup"),
    (dict(warmup=0, g=1, sparsity="0.3"), "sparsity"),
])
def test_non_integer_steps_raise_type_error(kwargs, argument):
  with pytest.raises(TypeError, match=argument):
    ReganSchedule(**kwargs)


def test_negative_step_is_rejected():
  with pytest.raises(ValueError, match="step"):
    ReganSchedule(warmup=0, g=1, sparsity=0.3).phase_at(-1)


@pytest.mark.parametrize("kwargs", [
    dict(warmup=5, g=3, sparsity=0.3),
    dict(warmup=0, g=7, sparsity=0.5, dense_lr_factor=0.2, final_phase="sparse", total_steps=50),
])
def test_config_round_trip(kwargs):
  schedule = ReganSchedule(**kwargs)
  config = schedule.get_config()
  assert config["class_name"] == "ReganSchedule"
  for restored in (ReganSchedule.from_config(config), ReganSchedule.from_config(config["config"])):
    assert restored == schedule
    assert [restored.phase_at(s) for s in range(60)] == [schedule.phase_at(s) for s in range(60)]


def test_final_phase_sparse_cuts_a_dense_phase_short():
  # warmup 2, g 4: sparse 2..5, dense 6..9, sparse 10..13, dense 14..17. T=17: the
  # last 4 steps (13..16) must be sparse; 13 is inside sparse phase 2, which continues.
  continuing = ReganSchedule(warmup=2, g=4, sparsity=0.3, final_phase="sparse", total_steps=17)
  assert [continuing.phase_at(s) for s in range(10, 20)] == [S] * 10
  assert [s for s in range(20) if continuing.is_mask_update_step(s)] == [2, 10]
  assert continuing.cycle_at(16) == 2 and continuing.last_phase() == S
  # T=20: the last 4 steps are 16..19; 16 lies in dense phase 2 (14..17), which is
  # cut short: a fresh sparse phase 3 with a new mask starts at 16.
  cut = ReganSchedule(warmup=2, g=4, sparsity=0.3, final_phase="sparse", total_steps=20)
  assert [cut.phase_at(s) for s in range(13, 20)] == [S, D, D, S, S, S, S]
  assert cut.is_mask_update_step(16) and cut.cycle_at(16) == 3
  assert cut.phase_at(25) == S and not cut.is_regrow_step(20)
  # Without the option steps 16 and 17 are dense, and a run of 17 steps ends dense.
  plain = ReganSchedule(warmup=2, g=4, sparsity=0.3)
  assert [plain.phase_at(s) for s in range(13, 20)] == [S, D, D, D, D, S, S]
  assert plain.last_phase(17) == D and plain.last_phase(14) == S


def test_tensorflow_versions_agree_with_python_inside_tf_function():
  for schedule in (ReganSchedule(warmup=3, g=2, sparsity=0.3, dense_lr_factor=0.1),
                   ReganSchedule(warmup=2, g=4, sparsity=0.3, final_phase="sparse",
                                 total_steps=20)):

    @tf.function
    def evaluate(step, schedule=schedule):
      return (schedule.phase_at_tf(step), schedule.cycle_at_tf(step),
              schedule.is_mask_update_step_tf(step), schedule.is_regrow_step_tf(step),
              schedule.lr_factor_at_tf(step))

    for s in range(30):
      phase, cycle, update, regrow, lr = [t.numpy() for t in evaluate(tf.constant(s, tf.int64))]
      assert phase == schedule.phase_at(s)
      assert cycle == schedule.cycle_at(s)
      assert update == schedule.is_mask_update_step(s)
      assert regrow == schedule.is_regrow_step(s)
      assert lr == pytest.approx(schedule.lr_factor_at(s))


def test_tfmot_contract_prunes_exactly_at_sparse_phase_starts():
  schedule = ReganSchedule(warmup=3, g=2, sparsity=0.3)
  assert isinstance(schedule, pruning_schedule.PruningSchedule)
  for s in range(15):
    should_prune, sparsity = schedule(tf.constant(s, tf.int64))
    assert should_prune.dtype == tf.bool and sparsity.dtype == tf.float32
    assert bool(should_prune) == (s in (3, 7, 11))
    expected = 0.3 if schedule.phase_at(s) == S else 0.0
    assert float(sparsity) == pytest.approx(expected)
