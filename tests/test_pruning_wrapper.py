"""Tests for regan_tf.pruning.wrapper: cloning with TFMOT wrappers, strip, reports."""

import numpy as np
import pytest
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from regan_tf.compat import keras, tf
from regan_tf.pruning import masks
from regan_tf.pruning.schedule import ReganSchedule
from regan_tf.pruning.wrapper import (ReganPruneWrapper, prune_generator, pruned_tensors,
                                      sparsity_report, strip)

from conftest import make_tiny_generator


make_generator = make_tiny_generator


def set_some_moving_stats(model: keras.Model) -> None:
  bn = model.get_layer("bn")
  bn.moving_mean.assign(tf.fill(bn.moving_mean.shape, 0.1))
  bn.moving_variance.assign(tf.fill(bn.moving_variance.shape, 2.0))


Z = tf.random.stateless_normal([4, 8], seed=(0, 1))


def test_wrapped_clone_computes_what_the_original_computes():
  generator = make_generator()
  set_some_moving_stats(generator)
  pruned = prune_generator(generator)
  assert pruned.name == generator.name
  np.testing.assert_array_equal(pruned(Z, training=False).numpy(),
                                generator(Z, training=False).numpy())
  np.testing.assert_allclose(pruned(Z, training=True).numpy(),
                             generator(Z, training=True).numpy(), atol=1e-6)
  # The clone owns its variables: changing it leaves the original alone.
  before = generator.get_layer("conv").kernel.numpy()
  pruned_tensors(pruned)[1].weight.assign(tf.zeros_like(before))
  np.testing.assert_array_equal(generator.get_layer("conv").kernel.numpy(), before)


def test_default_prunes_kernels_in_tfmot_mask_variables():
  pruned = prune_generator(make_generator())
  tensors = pruned_tensors(pruned)
  assert [t.name for t in tensors] == ["fc/kernel", "conv/kernel", "to_rgb/kernel"]
  wrappers = pruning_wrapper.collect_prunable_layers(pruned)
  assert len(wrappers) == 3
  assert all(isinstance(w, ReganPruneWrapper) for w in wrappers)
  for tensor in tensors:
    weight, mask, threshold = next(v for v in tensor.wrapper.pruning_vars if v[0] is tensor.weight)
    assert mask is tensor.mask and threshold is tensor.threshold
    assert mask.shape == weight.shape
    np.testing.assert_array_equal(mask.numpy(), 1.0)
  assert not isinstance(pruned.get_layer("bn"), pruning_wrapper.PruneLowMagnitude)


def test_biases_and_norms_option_and_exclude():
  pruned = prune_generator(make_generator(), prune_biases_and_norms=True, exclude=("to_rgb",))
  assert [t.name for t in pruned_tensors(pruned)] == [
      "fc/kernel", "fc/bias", "conv/kernel", "conv/bias", "bn/gamma", "bn/beta"]
  assert isinstance(pruned.get_layer("to_rgb"), keras.layers.Conv2DTranspose)


@pytest.mark.parametrize("exclude", [(".*",), ("(",)])
def test_bad_exclude_patterns_raise(exclude):
  with pytest.raises(ValueError, match="exclude|prune"):
    prune_generator(make_generator(), exclude=exclude)


def test_subclassed_model_is_rejected():

  class Subclassed(keras.Model):

    def __init__(self):
      super().__init__()
      self.dense = keras.layers.Dense(3)

    def call(self, inputs):
      return self.dense(inputs)

  model = Subclassed()
  model(tf.zeros([1, 2]))
  with pytest.raises(ValueError, match="Functional"):
    prune_generator(model)


def test_sequential_generator_and_custom_prunable_layer():

  class Scale(keras.layers.Layer, tfmot.sparsity.keras.PrunableLayer):
    """A custom layer that tells TFMOT which weight to prune."""

    def build(self, input_shape):
      self.scale = self.add_weight("scale", shape=input_shape[-1:], initializer="ones")

    def call(self, inputs):
      return inputs * self.scale

    def get_prunable_weights(self):
      return [self.scale]

  model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, name="d"), Scale(name="s")])
  pruned = prune_generator(model)
  assert [t.name for t in pruned_tensors(pruned)] == ["d/kernel", "s/scale"]
  x = tf.ones([2, 4])
  np.testing.assert_array_equal(pruned(x).numpy(), model(x).numpy())


def test_forward_passes_neither_count_steps_nor_rewrite_weights():
  # TFMOT's own wrapper would assert on an uninitialised pruning_step here, count
  # the step and re-mask the weights; ours leaves every variable alone.
  pruned = prune_generator(make_generator())
  tensor = pruned_tensors(pruned)[1]
  tensor.mask.assign(masks.magnitude_mask(tensor.weight, 0.5))
  weights_before = tensor.weight.numpy()
  for _ in range(2):
    pruned(Z, training=True)
  np.testing.assert_array_equal(tensor.weight.numpy(), weights_before)
  assert int(tensor.wrapper.pruning_step.numpy()) == -1


def test_strip_gives_a_plain_model_with_masked_zeros():
  pruned = prune_generator(make_generator(), prune_biases_and_norms=True)
  for tensor in pruned_tensors(pruned):
    tensor.mask.assign(masks.magnitude_mask(tensor.weight, 0.4))  # weights not zeroed yet
  plain = strip(pruned)
  assert not any(isinstance(layer, pruning_wrapper.PruneLowMagnitude) for layer in plain.layers)
  assert [type(layer) for layer in plain.layers] == [
      type(layer) for layer in make_generator().layers]
  report = sparsity_report(pruned)
  for tensor in pruned_tensors(pruned):
    layer_name, weight_name = tensor.name.split("/")
    exported = getattr(plain.get_layer(layer_name), weight_name).numpy()
    np.testing.assert_array_equal(exported[tensor.mask.numpy() == 0], 0.0)
    assert masks.sparsity_of(exported) == pytest.approx(report[tensor.name])
    assert report[tensor.name] >= masks.num_pruned(int(np.prod(tensor.weight.shape)), 0.4) / \
        np.prod(tensor.weight.shape)
  np.testing.assert_allclose(plain(Z, training=False).numpy(),
                             pruned(Z, training=False).numpy(), atol=1e-6)
  # The export shares no variables with the training model.
  plain_refs = {v.ref() for v in plain.weights}
  assert not plain_refs & {v.ref() for v in pruned.weights}


def test_wrapper_config_round_trip_keeps_weight_names_and_schedule():
  schedule = ReganSchedule(warmup=2, g=3, sparsity=0.3)
  layer = keras.layers.BatchNormalization(name="norm")
  wrapper = ReganPruneWrapper(layer, weight_names=("gamma", "beta"), pruning_schedule=schedule)
  restored = ReganPruneWrapper.from_config(wrapper.get_config())
  assert restored.weight_names == ("gamma", "beta")
  assert restored.pruning_schedule == schedule
  assert restored.layer.name == "norm"
  restored.build((None, 4))
  assert [w.name.split("/")[-1] for w, _, _ in restored.pruning_vars] == ["gamma:0", "beta:0"]


def test_unknown_weight_name_is_reported_at_build():
  wrapper = ReganPruneWrapper(keras.layers.Dense(3, use_bias=False, name="nobias"),
                              weight_names=("kernel", "bias"))
  with pytest.raises(ValueError, match="bias"):
    wrapper.build((None, 2))
