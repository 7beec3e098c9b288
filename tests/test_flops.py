"""Tests for regan_tf.flops: hand counts, per-layer sums, iteration and run formulas."""

import pytest

from regan_tf import flops
from regan_tf import pruning
from regan_tf.compat import keras
from regan_tf.models import dcgan
from regan_tf.models import layers as gan_layers
from regan_tf.pruning import Phase, ReganSchedule


def _single(layer, shape):
  x = keras.Input(shape)
  return keras.Model(x, layer(x))


def test_conv2d_hand_count():
  # 3x3 conv, 3 -> 5 channels, stride 2 'same' on 8x8: 4x4 outputs. TF counts
  # 2 FLOPs per multiply-add (Conv2D) + 1 per output element (BiasAdd); not the ReLU.
  model = _single(keras.layers.Conv2D(5, 3, strides=2, padding="same", activation="relu"), (8, 8, 3))
  hand = 3 * 3 * 3 * 5 * (4 * 4) * 2 + 5 * 4 * 4
  assert flops.forward_flops(model, (8, 8, 3)) == hand
  assert flops.forward_flops(model, (8, 8, 3), batch_size=4) == hand  # per image
  assert flops.layer_forward_flops(model) == {model.layers[1].name: hand}


def test_dense_hand_count():
  # MatMul 2*in*out + BiasAdd out; tanh is not counted.
  model = _single(keras.layers.Dense(7, activation="tanh"), (10,))
  assert flops.forward_flops(model, (10,), batch_size=2) == 2 * 10 * 7 + 7


def test_conv2d_transpose_counts_per_input_position():
  model = _single(keras.layers.Conv2DTranspose(5, 4, strides=2, padding="same"), (4, 4, 6))
  hand = 4 * 4 * 6 * 5 * (4 * 4) * 2 + 5 * 8 * 8
  assert flops.forward_flops(model, (4, 4, 6)) == hand
  assert sum(flops.layer_forward_flops(model).values()) == hand


def test_spectral_norm_layers_counted_as_their_base_layer():
  conv = _single(gan_layers.SNConv2D(5, 3, padding="same", name="sn"), (8, 8, 3))
  assert flops.layer_forward_flops(conv) == {"sn": 3 * 3 * 3 * 5 * 64 * 2 + 5 * 64}
  # The profiler also counts the power iteration (once per batch): slightly more.
  assert flops.forward_flops(conv, (8, 8, 3)) > 3 * 3 * 3 * 5 * 64 * 2 + 5 * 64
  dense = _single(gan_layers.SNDense(4, name="snd"), (6,))
  assert flops.layer_forward_flops(dense) == {"snd": 2 * 6 * 4 + 4}


@pytest.mark.parametrize("upsampling", ["transpose", "nearest"])
def test_per_layer_sum_matches_profiler_for_dcgan_generator(upsampling):
  generator = dcgan.build(image_size=16, channels=1, z_dim=8, g_base_channels=4,
                          upsampling=upsampling).generator
  per_layer = flops.layer_forward_flops(generator, (8,))
  assert set(per_layer) == {"dense", "block1_conv", "output_conv"}
  total = flops.forward_flops(generator, (8,))
  # The nearest upsampling's index arithmetic adds a handful of FLOPs.
  assert total - 16 <= sum(per_layer.values()) <= total


def test_per_layer_through_pruning_wrappers():
  generator = dcgan.build(image_size=16, channels=1, z_dim=8, g_base_channels=4).generator
  pruned = pruning.prune_generator(generator, exclude=("output",))
  assert flops.layer_forward_flops(pruned) == flops.layer_forward_flops(generator)
  assert flops.pruned_layer_names(pruned) == ("dense", "block1_conv")
  assert flops.forward_flops(pruned, (8,)) == flops.forward_flops(generator, (8,))
  assert set(flops.layer_densities(pruned).values()) == {1.0}


def test_iteration_flops_formula():
  # B * (n_critic * (F_G + 6 F_D) + 3 F_G + 3 F_D) with F_G=10, F_D=2, B=4, n_critic=5.
  out = flops.iteration_flops(10, 2, batch_size=4, n_critic=5)
  assert out["executed"] == 4 * (5 * (10 + 12) + 30 + 6) == out["effective"]
  half = flops.iteration_flops(10, 2, batch_size=4, n_critic=5, g_density=0.5)
  assert half["executed"] == out["executed"]  # dense kernels: nothing runs faster
  assert half["effective"] == 4 * (5 * (5 + 12) + 15 + 6) < half["executed"]


def test_effective_g_forward_per_layer():
  assert flops.effective_g_forward({"a": 100, "b": 50}, {"a": 0.7}, other_flops=3) == 70 + 50 + 3
  assert flops.effective_g_forward({"a": 100}, {}) == 100
  with pytest.raises(ValueError, match="layer_density"):
    flops.effective_g_forward({"a": 100}, {"c": 0.5})
  with pytest.raises(ValueError, match="outside"):
    flops.effective_g_forward({"a": 100}, {"a": 1.5})


@pytest.mark.parametrize("kwargs,steps", [
    (dict(warmup=2, g=3), 11), (dict(warmup=0, g=1), 7), (dict(warmup=5, g=2), 3),
    (dict(warmup=2, g=3, final_phase="sparse", total_steps=13), 13),
    (dict(warmup=2, g=3, final_phase="sparse", total_steps=16), 16)])
def test_sparse_step_count_matches_phase_at(kwargs, steps):
  schedule = ReganSchedule(sparsity=0.3, **kwargs)
  expected = sum(schedule.phase_at(s) == Phase.SPARSE for s in range(steps))
  assert flops.sparse_step_count(schedule, steps) == expected


def test_schedule_flops_small_schedule():
  # warmup 2, g 3, 11 steps: sparse steps 2-4 and 8-10, i.e. 3 + 3.
  schedule = ReganSchedule(warmup=2, g=3, sparsity=0.5)
  out = flops.schedule_flops({"a": 100, "b": 100}, 10, batch_size=2, n_critic=1, train_steps=11,
                             schedule=schedule, pruned_layers=["a"])
  assert out["sparse_steps"] == 6
  assert out["g_forward"] == 200 and out["g_forward_sparse"] == 150
  dense_it = 2 * (200 + 60 + 600 + 30)
  sparse_it = 2 * (150 + 60 + 450 + 30)
  assert out["dense_total"] == out["executed_total"] == 11 * dense_it
  assert out["regan_effective_total"] == 6 * sparse_it + 5 * dense_it
  assert out["savings_percent"] == pytest.approx(100 * (1 - (6 * sparse_it + 5 * dense_it) /
                                                        (11 * dense_it)))
  dense = flops.schedule_flops({"a": 100}, 10, 2, 1, 11, None)
  assert dense["savings_percent"] == 0.0 and dense["sparse_steps"] == 0


def test_schedule_flops_is_fast_for_long_runs():
  schedule = ReganSchedule(warmup=20000, g=10000, sparsity=0.3)
  out = flops.schedule_flops({"a": 1e9}, 1e8, 64, 5, 100000, schedule)
  assert out["sparse_steps"] == 40000


def test_custom_layers_count_their_own_flops():
  # StyleGAN2's modulated convs, to_rgb and equalized dense layers define forward_flops; the pruned
  # generator reports the same per-layer figures under the names Re-GAN's masks carry.
  from regan_tf.models import stylegan2  # pylint: disable=g-import-not-at-top
  gan = stylegan2.build(image_size=16, channels=3, z_dim=8, w_dim=8, channel_base=64, channel_max=8,
                        mapping_layers=2)
  per_layer = flops.layer_forward_flops(gan.generator)
  assert per_layer["mapping/mapping_dense0"] == 2 * 8 * 8
  assert per_layer["synthesis/b4_conv"] == 2 * 9 * 8 * 8 * 4 * 4         # stride 1: per output position
  assert per_layer["synthesis/b8_conv0"] == 2 * 9 * 8 * 8 * 4 * 4         # upsampling: per input position
  assert per_layer["synthesis/b16_torgb"] == 2 * 4 * 3 * 16 * 16      # 64 // 16 = 4 channels at 16x16
  assert sum(per_layer.values()) < flops.forward_flops(gan.generator, (8,), batch_size=2)
  pruned = pruning.prune_generator(gan.generator, exclude=("torgb",))
  assert flops.layer_forward_flops(pruned) == per_layer
  names = flops.pruned_layer_names(pruned)
  assert "synthesis/b8_conv0" in names and "synthesis/b16_torgb" not in names
