"""TFMOT glue: wrap G's prunable layers so that masks live in TFMOT variables.

Re-GAN masks individual weights of the generator (Saxena et al., CVPR 2023).
The masks are stored where TFMOT stores them, in ``PruneLowMagnitude``'s
``pruning_vars`` of ``(weight, mask, threshold)``, so that
``tfmot.sparsity.keras.strip_pruning``, TFMOT's pruning summaries and any tool
that looks for ``PruneLowMagnitude`` layers keep working, and the masks are
saved with the generator in every checkpoint.

Why a subclass of ``PruneLowMagnitude``
---------------------------------------
TFMOT's wrapper is built for ``model.fit`` with a fixed sparsity schedule:

* it counts its own ``pruning_step`` on every training-mode call (twice per GAN
  iteration: once for the D step's fakes, once for the G step), asserts that the
  ``UpdatePruningStep`` callback initialised it (there is no ``fit`` here), and
  recomputes masks from that counter in ``call()``: its stock schedules would
  overwrite Re-GAN's masks mid-phase and never regrow;
* it re-masks the weights (``weight.assign(weight * mask)``) on every forward
  pass, an extra write per tensor per call, yet it masks neither gradients nor
  optimizer updates (Adam moves a zero-gradient weight through its momentum);
* ``strip_pruning`` does not re-mask.

``ReganPruneWrapper`` keeps TFMOT's variables and build, but its ``call`` only
runs the wrapped layer: no step counting, no mask updates, no forward
re-masking. Masks change only when ``ReganController`` says so, and the
controller restores exact zeros explicitly, after every optimizer step
(``apply_masks``) and at every mask update. Forward re-masking would then be
redundant work on every D and G step.

Which tensors
-------------
By default the kernels of ``Dense``, ``Conv2D`` and ``Conv2DTranspose`` (and
their subclasses), the "connections" of the paper. With
``prune_biases_and_norms=True`` also their biases and ``BatchNormalization``'s
``gamma``/``beta`` (BN is not prunable in TFMOT's registry; the wrapper takes an
explicit list of weight attribute names for any layer), as the reference SNGAN
code does. A custom layer that implements TFMOT's
``PrunableLayer.get_prunable_weights()`` is wrapped with exactly the weights it
returns. Layers whose name matches a regular expression in ``exclude`` (e.g.
``('to_rgb',)``) stay dense.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

from absl import logging
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.sparsity.keras import (
    pruning_schedule as tfmot_schedule)
from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from regan_tf.compat import keras, tf
from regan_tf.pruning import masks as masks_lib
from regan_tf.pruning.schedule import ReganSchedule

__all__ = [
    "PrunedTensor",
    "ReganPruneWrapper",
    "prunable_weight_names",
    "prune_generator",
    "pruned_tensors",
    "sparsity_report",
    "strip",
]


def _placeholder_schedule() -> tfmot_schedule.PruningSchedule:
  # TFMOT's wrapper needs some schedule to build its Pruning object. Ours never
  # consults it for mask updates; ReganController.set_schedule replaces it so
  # that TFMOT summaries report Re-GAN's target.
  return tfmot_schedule.ConstantSparsity(0.0, begin_step=0)


def _deserialize_schedule(config: Dict[str, Any]) -> tfmot_schedule.PruningSchedule:
  if config.get("class_name") == ReganSchedule.__name__:
    return ReganSchedule.from_config(config)
  return keras.utils.deserialize_keras_object(
      config, module_objects=vars(tfmot_schedule),
      custom_objects={"ConstantSparsity": tfmot_schedule.ConstantSparsity,
                      "PolynomialDecay": tfmot_schedule.PolynomialDecay})


@keras.utils.register_keras_serializable(package="regan_tf")
class ReganPruneWrapper(pruning_wrapper.PruneLowMagnitude):
  """A ``PruneLowMagnitude`` whose masks only the Re-GAN controller changes.

  Variables (per pruned weight ``w`` [shape]): ``mask`` [shape], 0/1 in
  ``w``'s dtype (ones at build); ``threshold`` [] (the largest pruned |w| of
  the current mask, 0 when dense); and one ``pruning_step`` [] int64, which the
  controller sets to the G step of the last phase event. ``pruning_vars`` holds
  ``(w, mask, threshold)`` triples, as in TFMOT.
  """

  def __init__(self,
               layer: keras.layers.Layer,
               weight_names: Optional[Sequence[str]] = None,
               pruning_schedule: Optional[tfmot_schedule.PruningSchedule] = None,
               **kwargs):
    """Wraps ``layer``.

    Args:
      layer: the Keras layer to wrap (built or not).
      weight_names: attribute names of the weights to prune, e.g.
        ``('kernel', 'bias')`` or ``('gamma', 'beta')``; any layer type. None:
        the layer's own ``get_prunable_weights()`` (TFMOT's ``PrunableLayer``
        protocol) or, for built-in layers, TFMOT's registry (kernels).
      pruning_schedule: the schedule TFMOT's summaries read; never used to
        update masks here. None: a placeholder until the controller sets its
        ``ReganSchedule``.
      **kwargs: passed to ``keras.layers.Wrapper`` (``dtype`` defaults to the
        wrapped layer's dtype policy, so a float32 layer stays float32 under
        mixed precision).
    """
    if not isinstance(layer, keras.layers.Layer):
      raise ValueError(f"layer={layer!r} is not a Keras layer; pass a layer of "
                       "regan_tf.compat.keras (tf_keras), e.g. keras.layers.Conv2D(...).")
    if isinstance(weight_names, str):
      weight_names = (weight_names,)
    self.weight_names = None if weight_names is None else tuple(weight_names)
    if self.weight_names is not None:
      if not self.weight_names:
        raise ValueError(f"weight_names=() for layer {layer.name!r} prunes nothing; pass the "
                         "attribute names of the weights to prune, e.g. ('kernel',), or do "
                         "not wrap the layer.")
      names = self.weight_names
      # TFMOT's wrapper reads the weights through this method (its registry
      # installs the same kind of function on built-in layers).
      layer.get_prunable_weights = lambda: [getattr(layer, name) for name in names]
    kwargs.setdefault("dtype", layer.dtype_policy)
    # TFMOT's config carries sparsity_m_by_n only as a constructor argument.
    super().__init__(layer, pruning_schedule=pruning_schedule or _placeholder_schedule(),
                     **kwargs)

  def build(self, input_shape):
    if self.weight_names is not None:
      if not self.layer.built:
        self.layer.build(input_shape)
        self.layer.built = True
      for name in self.weight_names:
        value = getattr(self.layer, name, None)
        if not isinstance(value, tf.Variable):
          available = sorted({w.name.split("/")[-1].split(":")[0] for w in self.layer.weights})
          raise ValueError(
              f"weight_names contains {name!r}, but layer {self.layer.name!r} "
              f"({type(self.layer).__name__}) has no weight attribute of that name (got "
              f"{type(value).__name__}); its weights are {available}. Pass names of "
              "existing weights (e.g. a Dense without use_bias has no 'bias').")
    super().build(input_shape)

  # Set by regan_tf.prune_regrow: the wrapper then refuses to run in training
  # (``training`` True or unset) before a controller has set ``pruning_step``
  # (TFMOT's wrapper asserts the same of its UpdatePruningStep callback). A class
  # default, not a constructor argument: clones and configs of the trainer's
  # wrappers stay as they were.
  require_controller = False

  def call(self, inputs, training=None, **kwargs):
    # Only the wrapped layer runs: no pruning_step increment, no schedule-driven
    # mask update, no weight re-masking (see the module docstring).
    if self.require_controller and training is not False:
      # One scalar read per wrapper and call (its cost was below the noise of a
      # loaded 2-core CPU on an SNGAN G step). XLA (jit_compile) drops Assert ops,
      # so there the check does not fire.
      tf.debugging.assert_non_negative(self.pruning_step, message=(
          f"Re-GAN: {self.layer.name!r} of a regan_tf.prune_regrow generator ran in training "
          "before its Re-GAN schedule started, so it would train dense. With Model.fit pass "
          "callbacks=[regan_tf.ReganCallback(generator, g_optimizer=...)]; in a custom loop "
          "call regan_tf.controller_of(generator).before_g_step(step, g_optimizer) at the start "
          "of every training step, before the generator runs. For inference pass "
          "training=False, or use regan_tf.strip(generator)."))
    if training is not None and getattr(self.layer, "_expects_training_arg", False):
      kwargs["training"] = training
    return self.layer(inputs, **kwargs)

  def set_schedule(self, schedule: tfmot_schedule.PruningSchedule) -> None:
    """Sets the schedule TFMOT's summaries (``add_pruning_summaries``) read."""
    self.pruning_schedule = schedule
    if self.pruning_obj is not None:
      self.pruning_obj._pruning_schedule = schedule  # pylint: disable=protected-access

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config["weight_names"] = None if self.weight_names is None else list(self.weight_names)
    return config

  @classmethod
  def from_config(cls, config: Dict[str, Any], custom_objects=None) -> "ReganPruneWrapper":
    config = dict(config)
    schedule = _deserialize_schedule(config.pop("pruning_schedule"))
    layer = keras.layers.deserialize(config.pop("layer"), custom_objects=custom_objects)
    return cls(layer, pruning_schedule=schedule, **config)


class PrunedTensor(NamedTuple):
  """One pruned weight tensor of a wrapped model.

  Attributes:
    name: ``'<layer name>/<weight>'``, e.g. ``'conv_1/kernel'`` (nested models
      prefix ``'<model name>/'``).
    wrapper: the ``PruneLowMagnitude`` wrapper that owns the mask.
    weight: the pruned variable [shape] (as the layer holds it).
    mask: its 0/1 mask variable [shape].
    threshold: the wrapper's threshold variable [].
  """
  name: str
  wrapper: pruning_wrapper.PruneLowMagnitude
  weight: tf.Variable
  mask: tf.Variable
  threshold: tf.Variable


def _short_weight_name(weight: tf.Variable) -> str:
  return weight.name.split("/")[-1].split(":")[0]


def pruned_tensors(model: keras.Model) -> List[PrunedTensor]:
  """All ``(weight, mask, threshold)`` triples of ``model``'s pruning wrappers.

  Nested models are searched recursively; the order is the layer order.

  Raises:
    ValueError: a wrapper is not built yet (its variables do not exist).
  """
  found: List[PrunedTensor] = []

  def visit(container: keras.Model, prefix: str) -> None:
    for layer in container.layers:
      if isinstance(layer, pruning_wrapper.PruneLowMagnitude):
        if not layer.built:
          raise ValueError(f"pruning wrapper {layer.name!r} is not built, so it has no masks "
                           "yet; build the model first (call it on a batch, or give its "
                           "Input a shape).")
        for weight, mask, threshold in layer.pruning_vars:
          name = f"{prefix}{layer.layer.name}/{_short_weight_name(weight)}"
          found.append(PrunedTensor(name, layer, weight, mask, threshold))
      elif isinstance(layer, keras.Model):
        visit(layer, f"{prefix}{layer.name}/")

  visit(model, "")
  return found


# ------------------------------------------------------------------- selection

_PROTOCOL = "get_prunable_weights"


def prunable_weight_names(layer: keras.layers.Layer,
                          prune_biases_and_norms: bool = False
                          ) -> Union[None, str, Tuple[str, ...]]:
  """Which weights of ``layer`` Re-GAN prunes.

  Returns:
    ``'get_prunable_weights'`` if the layer implements TFMOT's protocol (it
    decides); a tuple of weight attribute names (``('kernel',)``, plus
    ``'bias'`` / ``'gamma'``, ``'beta'`` with ``prune_biases_and_norms``); or
    None if nothing of the layer is pruned.
  """
  if isinstance(layer, pruning_wrapper.PruneLowMagnitude):
    raise ValueError(f"layer {layer.name!r} is already a pruning wrapper; pass the unpruned "
                     "generator to prune_generator (or strip() the pruned one first).")
  if hasattr(layer, _PROTOCOL):
    return _PROTOCOL
  if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):  # Conv2DTranspose too
    names = ("kernel",)
    if prune_biases_and_norms and getattr(layer, "use_bias", False):
      names += ("bias",)
    return names
  if prune_biases_and_norms and isinstance(layer, keras.layers.BatchNormalization):
    names = (("gamma",) if layer.scale else ()) + (("beta",) if layer.center else ())
    return names or None
  return None


def _check_graph_model(model: Any, argument: str) -> None:
  if not isinstance(model, keras.Model):
    raise TypeError(f"{argument} is a {type(model).__name__}, not a keras.Model of "
                    "regan_tf.compat.keras (tf_keras); build the generator with that Keras.")
  is_graph_network = getattr(model, "_is_graph_network", False)
  if not (isinstance(model, keras.Sequential) or is_graph_network):
    raise ValueError(f"{argument} {model.name!r} is a subclassed model; only Functional and "
                     "Sequential models can be cloned with wrapped layers. Build the generator "
                     "with the Functional API (see regan_tf/models).")
  if not model.built:
    raise ValueError(f"{argument} {model.name!r} is not built; give its first layer an input "
                     "shape or call it on a batch first.")


def _clone_with_weights(model: keras.Model,
                        make_layer: Callable[[keras.layers.Layer],
                                             Tuple[keras.layers.Layer, keras.layers.Layer]]
                        ) -> keras.Model:
  """``clone_model`` with fresh layers from ``make_layer``, then copies weights.

  ``make_layer(layer) -> (new_layer, source)``: the unbuilt replacement of
  ``layer`` and the layer whose weights it receives once the clone is built
  (``clone_model`` builds layers by calling them, so weights can only be copied
  afterwards). Nested models are cloned recursively.
  """
  copies: List[Tuple[keras.layers.Layer, keras.layers.Layer]] = []

  def clone_function(layer: keras.layers.Layer) -> keras.layers.Layer:
    if isinstance(layer, keras.Model):
      _check_graph_model(layer, "a nested model")
      return keras.models.clone_model(layer, clone_function=clone_function)
    new_layer, source = make_layer(layer)
    copies.append((new_layer, source))
    return new_layer

  clone = keras.models.clone_model(model, clone_function=clone_function)
  for new_layer, source in copies:
    new_layer.set_weights(source.get_weights())  # a wrapper sets its inner layer's weights
  return clone


def _fresh_copy(layer: keras.layers.Layer) -> keras.layers.Layer:
  return layer.__class__.from_config(layer.get_config())


def prune_generator(generator: keras.Model,
                    *,
                    prune_biases_and_norms: bool = False,
                    exclude: Union[str, Sequence[str]] = (),
                    schedule: Optional[ReganSchedule] = None) -> keras.Model:
  """Clones ``generator`` with its prunable layers in ``ReganPruneWrapper``.

  The clone owns new variables holding copies of the generator's weights (the
  original model is left untouched), so before any pruning it computes exactly
  what the original computes. All masks start at ones.

  Args:
    generator: a built Functional or Sequential ``keras.Model``.
    prune_biases_and_norms: also prune biases of Dense/Conv layers and
      BatchNormalization's gamma and beta (the reference SNGAN setting).
    exclude: regular expressions (``re.search`` on the layer name) of layers to
      keep dense, e.g. ``('to_rgb',)``; a single string is one pattern.
    schedule: optional schedule for TFMOT's summaries (the controller sets it
      anyway).

  Returns:
    The wrapped clone, with the generator's name.

  Raises:
    ValueError / TypeError: not a built Functional/Sequential model, an invalid
      pattern, or no layer left to prune.
  """
  _check_graph_model(generator, "generator")
  if isinstance(exclude, str):
    exclude = (exclude,)
  patterns = []
  for pattern in exclude:
    try:
      patterns.append(re.compile(pattern))
    except (re.error, TypeError) as e:
      raise ValueError(f"exclude contains {pattern!r}, which is not a valid regular expression "
                       f"({e}); pass layer-name patterns such as ('to_rgb',).") from None
  wrapped: List[str] = []
  pattern_hits = {p.pattern: 0 for p in patterns}

  def make_layer(layer):
    fresh = _fresh_copy(layer)
    names = prunable_weight_names(layer, prune_biases_and_norms)
    if names is None:
      return fresh, layer
    hits = [p.pattern for p in patterns if p.search(layer.name)]
    for hit in hits:
      pattern_hits[hit] += 1
    if hits:
      return fresh, layer
    wrapped.append(layer.name)
    weight_names = None if names == _PROTOCOL else names
    return ReganPruneWrapper(fresh, weight_names=weight_names, pruning_schedule=schedule), layer

  clone = _clone_with_weights(generator, make_layer)
  for pattern, hits in pattern_hits.items():
    if not hits:
      logging.warning("prune_generator: exclude pattern %r matched no prunable layer of %r.",
                      pattern, generator.name)
  if not wrapped:
    raise ValueError(f"no layer of {generator.name!r} is left to prune (exclude={tuple(exclude)}"
                     f"); Re-GAN prunes Dense/Conv2D/Conv2DTranspose kernels (and, with "
                     "prune_biases_and_norms, biases and BatchNormalization). Check the "
                     "exclude patterns.")
  logging.info("prune_generator: wrapped %d layers of %r: %s", len(wrapped), generator.name,
               ", ".join(wrapped))
  return clone


def strip(generator_pruned: keras.Model) -> keras.Model:
  """A plain copy of a pruned generator, with masked weights exactly zero.

  First re-applies every mask to its weight (``w = w * mask``, in place: the
  pruned model is unchanged if it was masked already), then removes the
  wrappers with ``tfmot.sparsity.keras.strip_pruning`` (which reuses the inner
  layer objects and does not re-mask), and finally copies the result into new
  layers, so that the returned model shares no variables with the training
  model. Called in a dense phase, masks are ones and nothing is zeroed.

  Raises:
    ValueError / TypeError: not a built Functional/Sequential model.
  """
  _check_graph_model(generator_pruned, "generator_pruned")
  for tensor in pruned_tensors(generator_pruned):
    tensor.weight.assign(tensor.weight * tf.cast(tensor.mask, tensor.weight.dtype))
  stripped = tfmot.sparsity.keras.strip_pruning(generator_pruned)
  return _clone_with_weights(stripped, lambda layer: (_fresh_copy(layer), layer))


def sparsity_report(model: keras.Model) -> Dict[str, float]:
  """Actual fraction of exact zeros of every pruned weight tensor.

  Returns:
    ``{'<layer>/<weight>': zero fraction}``, e.g. ``{'conv_1/kernel': 0.3}``, in
    layer order (empty for a model without pruning wrappers).
  """
  return {t.name: masks_lib.sparsity_of(t.weight) for t in pruned_tensors(model)}
