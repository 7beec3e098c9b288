"""Tests for regan_tf.augment.apa (APA, Jiang et al. 2021)."""


import numpy as np
import pytest

from conftest import run_two_replica_script
from regan_tf.augment.apa import AdaptivePseudoAugment
from regan_tf.compat import tf

SEED = tf.constant([11, 12], tf.int64)


def batch(value: float, n: int = 8, size: int = 4) -> tf.Tensor:
  return tf.fill([n, size, size, 3], value)


# -------------------------------------------------------------- validation


@pytest.mark.parametrize("kwargs, match", [
    (dict(target=0.0), "target=0.0 must be in"),
    (dict(target=1.5), "target=1.5"),
    (dict(initial_p=-0.1), "initial_p"),
    (dict(speed_kimg=0), "speed_kimg=0 must be a number > 0"),
    (dict(interval=0), "interval=0 must be an int >= 1"),
    (dict(interval=2.0), "interval=2.0"),
])
def test_invalid_arguments_are_rejected_at_construction(kwargs, match):
  with pytest.raises(ValueError, match=match):
    AdaptivePseudoAugment(**kwargs)


# ------------------------------------------------------------ p's controller


def observe_many(apa, logits, calls):
  ps = []
  for _ in range(calls):
    apa.observe(logits)
    ps.append(float(apa.p.numpy()))
  return ps


def test_p_rises_to_one_when_d_overfits():
  # 8 logits per D step, 4 steps per update: each update moves p by 32 / 100.
  apa = AdaptivePseudoAugment(target=0.6, speed_kimg=0.1, interval=4)
  ps = observe_many(apa, tf.fill([8, 1], 3.0), 24)
  assert ps[:3] == [0.0] * 3  # unchanged within an interval
  np.testing.assert_allclose(ps[3], 0.32, rtol=1e-6)
  assert all(b >= a for a, b in zip(ps, ps[1:]))
  assert max(ps) == 1.0 and ps[-1] == 1.0
  assert float(apa.last_lambda.numpy()) == 1.0


def test_p_falls_to_zero_when_d_does_not_overfit():
  apa = AdaptivePseudoAugment(target=0.6, initial_p=1.0, speed_kimg=0.1, interval=4)
  ps = observe_many(apa, tf.fill([8, 1], -2.0), 24)
  np.testing.assert_allclose(ps[3], 0.68, rtol=1e-6)
  assert all(b <= a for a, b in zip(ps, ps[1:]))
  assert min(ps) == 0.0 and ps[-1] == 0.0


def test_lambda_is_the_mean_sign_over_the_interval():
  # Signs average to 0.5 < target 0.6 over the interval: p goes down, though one step is all
  # positive.
  apa = AdaptivePseudoAugment(target=0.6, initial_p=0.5, speed_kimg=1.0, interval=2)
  apa.observe(tf.constant([[1.0], [1.0], [1.0], [1.0]]))
  apa.observe(tf.constant([[1.0], [1.0], [-1.0], [-1.0]]))
  np.testing.assert_allclose(float(apa.last_lambda.numpy()), 0.5)
  np.testing.assert_allclose(float(apa.p.numpy()), 0.5 - 8 / 1000.0, rtol=1e-6)
  assert float(apa.count.numpy()) == 0.0 and int(apa.steps.numpy()) == 0


def test_observe_compiles_with_xla():
  apa = AdaptivePseudoAugment(speed_kimg=0.1, interval=2)
  fn = tf.function(apa.observe, jit_compile=True)
  for _ in range(4):
    fn(tf.fill([8, 1], 1.0))
  np.testing.assert_allclose(float(apa.p.numpy()), 2 * 16 / 100.0, rtol=1e-6)


# --------------------------------------------------------------- apply


def test_p_zero_returns_the_reals_and_p_one_the_fakes():
  apa = AdaptivePseudoAugment()
  reals, fakes = batch(1.0), batch(-1.0)
  np.testing.assert_array_equal(apa.apply(reals, fakes, seed=SEED).numpy(), reals.numpy())
  apa.p.assign(1.0)
  np.testing.assert_array_equal(apa.apply(reals, fakes, seed=SEED).numpy(), fakes.numpy())


def test_p_half_replaces_about_half_per_example_deterministically():
  apa = AdaptivePseudoAugment(initial_p=0.5)
  n = 4000
  reals, fakes = batch(1.0, n=n, size=2), batch(-1.0, n=n, size=2)
  out = apa.apply(reals, fakes, seed=SEED).numpy()
  per_example = out.reshape(n, -1)
  assert np.all((per_example == 1.0).all(1) | (per_example == -1.0).all(1))  # whole images
  fraction = (per_example[:, 0] == -1.0).mean()
  assert 0.46 < fraction < 0.54  # 4000 draws: std 0.008
  np.testing.assert_array_equal(apa.apply(reals, fakes, seed=SEED).numpy(), out)
  other = apa.apply(reals, fakes, seed=tf.constant([11, 13])).numpy()
  assert not np.array_equal(other, out)


def test_no_gradient_flows_into_the_fakes():
  apa = AdaptivePseudoAugment(initial_p=0.5)
  reals, fakes = batch(1.0, n=64), batch(-1.0, n=64)
  with tf.GradientTape(persistent=True) as tape:
    tape.watch([reals, fakes])
    loss = tf.reduce_sum(apa.apply(reals, fakes, seed=SEED))
  assert tape.gradient(loss, fakes) is None
  grad_reals = tape.gradient(loss, reals).numpy()
  assert 0 < grad_reals[:, 0, 0, 0].sum() < 64  # the kept reals only


def test_apply_casts_fakes_and_checks_shapes():
  apa = AdaptivePseudoAugment(initial_p=1.0)
  out = apa.apply(batch(1.0), tf.cast(batch(-1.0), tf.float16), seed=SEED)
  assert out.dtype == tf.float32
  with pytest.raises(ValueError, match="shaped like the reals"):
    apa.apply(batch(1.0, n=8), batch(-1.0, n=4), seed=SEED)


# ------------------------------------------------------------- checkpoint


def test_state_round_trips_through_a_checkpoint(tmp_path):
  apa = AdaptivePseudoAugment(speed_kimg=0.1, interval=4)
  observe_many(apa, tf.fill([8, 1], 1.0), 6)  # one update, then 2 steps into the next interval
  saved = {k: v.numpy() for k, v in apa.checkpoint_items().items()}
  path = tf.train.Checkpoint(**apa.checkpoint_items()).save(str(tmp_path / "ckpt"))
  restored = AdaptivePseudoAugment(speed_kimg=0.1, interval=4)
  tf.train.Checkpoint(**restored.checkpoint_items()).restore(path).assert_consumed()
  for k, v in restored.checkpoint_items().items():
    np.testing.assert_array_equal(v.numpy(), saved[k])
  # The resumed run finishes the same interval.
  observe_many(apa, tf.fill([8, 1], 1.0), 2)
  observe_many(restored, tf.fill([8, 1], 1.0), 2)
  assert float(restored.p.numpy()) == float(apa.p.numpy()) > float(saved["apa_p"])


# --------------------------------------------------------- MirroredStrategy


def test_mirrored_strategy_two_replicas():
  """Replica-step use under MirroredStrategy on 2 logical CPUs (a fresh process)."""
  result = run_two_replica_script("""
      from regan_tf.augment.apa import AdaptivePseudoAugment
      dist = two_replica_strategy()
      with dist.scope():
        apa = AdaptivePseudoAugment(target=0.6, speed_kimg=0.1, interval=2)

      def replica_step(reals, fakes):
        ctx = tf.distribute.get_replica_context()
        replica = tf.cast(ctx.replica_id_in_sync_group, tf.int64)
        out = apa.apply(reals, fakes, seed=tf.stack([tf.constant(7, tf.int64), replica]))
        # Replica 0 sees 4 positive logits, replica 1 three of 4: lambda = (4 + 2) / 8 = 0.75 > 0.6.
        logits = tf.where(replica == 0, tf.ones([4, 1]), tf.constant([[1.0], [1.0], [1.0], [-1.0]]))
        apa.observe(logits)
        return out

      step = tf.function(lambda r, f: dist.run(replica_step, args=(r, f)))
      reals, fakes = tf.ones([4, 2, 2, 3]), -tf.ones([4, 2, 2, 3])
      for _ in range(2):
        step(reals, fakes)
      values = [float(v.numpy()) for v in apa.p.values]
      # 2 steps x 2 replicas x 4 logits = 16 images: p = 16 / 100 on both replicas.
      assert np.allclose(values, [0.16, 0.16]), values
      assert np.allclose([float(v.numpy()) for v in apa.last_lambda.values], 0.75)
      # Host side, outside the scope (cross-replica semantics: no reduction needed).
      apa.observe(tf.ones([8, 1]))
      apa.observe(tf.ones([8, 1]))
      assert np.allclose([float(v.numpy()) for v in apa.p.values], 0.32)
      print("OK")
      """, timeout=120)
  assert result.returncode == 0 and "OK" in result.stdout, result.stderr[-3000:]
