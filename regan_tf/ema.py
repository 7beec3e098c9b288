"""An exponential moving average of the generator's weights, as a Keras model.

Sampling and evaluating a GAN from a running average of G's weights (Karras et
al., "Progressive Growing of GANs", ICLR 2018; Yazici et al., "The Unusual
Effectiveness of Averaging in GAN Training", ICLR 2019) gives better and more
stable samples than the last iterate. After every G step::

  shadow = decay * shadow + (1 - decay) * weight   (step >= start_step)
  shadow = weight                                  (step <  start_step)

for G's trainable weights. Non-trainable weights (BatchNorm moving statistics,
the Re-GAN wrappers' masks and step counters) are copied, not averaged: they
are statistics of the current weights, and averaging them with old ones would
describe a network that never existed.

The shadows *are* the variables of ``ema.model``, a ``keras.models.clone_model``
of the generator (the Re-GAN pruning wrappers are registered serializables, so
a pruned generator clones too; ``regan_tf.pruning.strip`` strips the copy for
export). Its variables mirror ``generator.variables`` one-to-one, in order.

Under Re-GAN, a weight pruned at a sparse phase's start is zero in G from then
on, but its average would only decay towards zero. With a ``controller``, every
``update`` also multiplies the averaged weights by G's masks (the controller's
``mask_ema``), so the EMA model is exactly as sparse as G; in dense phases the
masks are ones and this changes nothing.

Keras' ``ExponentialMovingAverage`` support in optimizers (``use_ema``) swaps
averaged values into the model itself and cannot keep a separate model for
sampling, so this small class is written by hand.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Union

from regan_tf.compat import keras, tf

__all__ = ["GeneratorEMA"]


def _outside_scope(strategy: tf.distribute.Strategy) -> bool:
  """True on the host outside any strategy scope, for a non-default ``strategy``."""
  return not tf.distribute.has_strategy() and strategy is not tf.distribute.get_strategy()


def _storage(variable: Any) -> tf.Variable:
  """The float32 variable behind a mixed-precision ``AutoCastVariable``."""
  if type(variable).__name__ == "AutoCastVariable":
    return variable._variable  # pylint: disable=protected-access
  return variable


def _short_name(variable: tf.Variable) -> str:
  # 'fc/kernel:0' -> 'kernel'. Only the weight's own name is compared: name
  # scopes can differ between a model and its clone, the weight names cannot.
  return variable.name.split(":")[0].split("/")[-1]


class GeneratorEMA:
  """The EMA of a generator's weights and the model that uses them.

  Construct under the run's ``strategy.scope()`` (or pass ``strategy``), from
  the generator that is trained (the pruned one under Re-GAN), before the
  checkpoint is restored. Then, in the replica step after G's optimizer (and
  after ``controller.apply_masks()``)::

    ema.update(step)

  ``ema.model`` maps z [B, z_dim] -> images [B, H, W, C] with the averaged
  weights; save ``checkpoint_items()`` with the run's checkpoint.

  Attributes:
    model: the clone whose variables hold the averages.
    generator: the model being averaged.
    decay, start_step: see ``__init__``.
  """

  def __init__(self,
               generator: keras.Model,
               decay: float = 0.999,
               start_step: int = 0,
               *,
               controller: Any = None,
               strategy: Optional[tf.distribute.Strategy] = None):
    """Clones ``generator`` and copies its weights into the clone.

    Args:
      generator: a built Functional or Sequential ``keras.Model`` (optionally
        with Re-GAN pruning wrappers).
      decay: the averaging factor per G step, in [0, 1) (0 copies the weights).
        0.999 averages over roughly the last 1000 steps.
      start_step: G steps before this one copy the weights instead of
        averaging them (early weights are poor and would linger), >= 0.
      controller: a Re-GAN ``ReganController`` of ``generator``: ``update``
        then also zeroes masked entries (see the module docstring). None for a
        dense generator.
      strategy: the strategy the generator's variables were created under;
        default the current one.

    Raises:
      TypeError / ValueError: invalid arguments; a generator that cannot be
        cloned or whose clone's variables do not line up with its own.
    """
    if not isinstance(generator, keras.Model):
      raise TypeError(f"generator is a {type(generator).__name__}; pass the generator "
                      "keras.Model (the pruned one under Re-GAN: controller.generator).")
    if not generator.built:
      raise ValueError(f"generator {generator.name!r} is not built; build it (call it once or give "
                       "it an Input) before creating its EMA.")
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not (
        math.isfinite(decay) and 0.0 <= decay < 1.0):
      raise ValueError(f"decay={decay!r} must be a number in [0, 1); e.g. decay=0.999 "
                       "(0 keeps an exact copy).")
    if isinstance(start_step, bool) or not isinstance(start_step, int) or start_step < 0:
      raise ValueError(f"start_step={start_step!r} must be an int >= 0 (the first G step that is "
                       "averaged; 0 averages from the start).")
    if controller is not None and not hasattr(controller, "mask_ema"):
      raise TypeError(f"controller is a {type(controller).__name__} without mask_ema; pass the "
                      "regan_tf.pruning.ReganController of this generator, or None.")
    if controller is not None and getattr(controller, "generator", generator) is not generator:
      raise ValueError("controller belongs to another model; pass generator=controller.generator "
                       "(the pruned generator being trained).")
    self.generator = generator
    self.decay = float(decay)
    self.start_step = start_step
    self.controller = controller
    self.strategy = strategy or tf.distribute.get_strategy()
    for variable in generator.variables:
      if not self.strategy.extended.variable_created_in_scope(_storage(variable)):
        raise ValueError(f"generator variable {variable.name!r} was not created under "
                         f"{type(self.strategy).__name__}; build the generator inside "
                         "`with strategy.scope():` and pass strategy=strategy.")

    with self.strategy.scope():
      try:
        self.model = keras.models.clone_model(generator)
      except (ValueError, TypeError, NotImplementedError) as e:
        raise ValueError(f"generator {generator.name!r} could not be cloned for its EMA ({e}); "
                         "its layers must be Keras-serializable (get_config/from_config, "
                         "registered with keras.utils.register_keras_serializable).") from e
      self.model._name = f"{generator.name}_ema"  # pylint: disable=protected-access
    self._pairs = self._align(generator.variables, self.model.variables)
    trainable = {v.ref() for v in generator.trainable_variables}
    self._averaged = [(s, w) for s, w in self._pairs if w.ref() in trainable]
    self._copied = [(s, w) for s, w in self._pairs if w.ref() not in trainable]
    self._trainable_shadows = self._align_trainable()
    self.model.set_weights(generator.get_weights())

  def _align(self, weights: List[tf.Variable], shadows: List[tf.Variable]) -> List[Any]:
    if len(weights) != len(shadows):
      raise ValueError(f"the clone of {self.generator.name!r} has {len(shadows)} variables but the "
                       f"generator has {len(weights)}; the generator's layers must rebuild the "
                       "same weights from their config.")
    pairs = []
    for weight, shadow in zip(weights, shadows):
      if weight.shape != shadow.shape or weight.dtype != shadow.dtype or (
          _short_name(weight) != _short_name(shadow)):
        raise ValueError(f"EMA variable {shadow.name!r} {shadow.shape} {shadow.dtype.name} does "
                         f"not match generator variable {weight.name!r} {weight.shape} "
                         f"{weight.dtype.name}; the clone's variables must mirror the generator's "
                         "in order (check the layers' get_config).")
      pairs.append((shadow, weight))
    return pairs

  def _align_trainable(self) -> List[tf.Variable]:
    by_weight = {w.ref(): s for s, w in self._pairs}
    return [by_weight[w.ref()] for w in self.generator.trainable_variables]

  # ------------------------------------------------------------ accessors

  @property
  def variables(self) -> List[tf.Variable]:
    """The shadows, aligned with ``generator.variables``."""
    return [s for s, _ in self._pairs]

  @property
  def trainable_variables(self) -> List[tf.Variable]:
    """The averaged shadows, aligned with ``generator.trainable_variables``."""
    return list(self._trainable_shadows)

  def checkpoint_items(self) -> Dict[str, keras.Model]:
    """``{'generator_ema': model}`` for the run's ``tf.train.Checkpoint``."""
    return {"generator_ema": self.model}

  def __repr__(self) -> str:
    return (f"GeneratorEMA({self.generator.name!r}, decay={self.decay}, "
            f"start_step={self.start_step}, masked={self.controller is not None})")

  # -------------------------------------------------------------- updates

  def update(self, step: Union[int, tf.Tensor]) -> None:
    """Folds G's current weights into the average (then masks, with a controller).

    Call once per G step, after G's optimizer update (and ``apply_masks``):
    in the replica step (it uses ``merge_call`` and
    ``strategy.extended.update``, as Keras optimizers do, so each replica
    updates its own copy from its own copy of G) or in cross-replica context,
    eagerly or inside ``tf.function`` (XLA too); outside any strategy scope it
    enters the EMA's strategy. The generator's weights are identical on all
    replicas after the step, so the copies stay identical.

    Args:
      step: the G step just taken (int or integer tensor, 0-based); before
        ``start_step`` the weights are copied.
    """
    if _outside_scope(self.strategy):  # e.g. eagerly on the host: act in the strategy's scope
      with self.strategy.scope():
        return self.update(step)
    decay = tf.where(tf.cast(step, tf.int64) >= self.start_step,
                     tf.constant(self.decay, tf.float32), tf.constant(0.0, tf.float32))

    def average(shadow, weight, decay):
      decay = tf.cast(decay, shadow.dtype)
      return shadow.assign(decay * shadow + (1 - decay) * tf.cast(weight, shadow.dtype))

    def copy(shadow, weight):
      return shadow.assign(tf.cast(weight, shadow.dtype))

    def merge(strategy, decay):
      for shadow, weight in self._averaged:
        strategy.extended.update(_storage(shadow), average, args=(_storage(weight), decay),
                                 group=False)
      for shadow, weight in self._copied:
        strategy.extended.update(_storage(shadow), copy, args=(_storage(weight),), group=False)

    if tf.distribute.in_cross_replica_context():
      merge(tf.distribute.get_strategy(), decay)
    else:
      tf.distribute.get_replica_context().merge_call(merge, args=(decay,))
    if self.controller is not None:
      self.mask()

  def mask(self, controller: Any = None) -> None:
    """Zeroes the averaged weights where G's Re-GAN masks are 0.

    ``update`` calls it when the EMA was built with a controller; call it
    yourself otherwise. Same contexts as ``update``.

    Args:
      controller: the generator's ``ReganController``; default the one given
        at construction.
    """
    controller = controller or self.controller
    if controller is None:
      raise ValueError("mask() needs the generator's ReganController: pass it here or as "
                       "GeneratorEMA(..., controller=controller).")
    if _outside_scope(self.strategy):
      with self.strategy.scope():
        return controller.mask_ema(self._trainable_shadows, self.generator.trainable_variables)
    controller.mask_ema(self._trainable_shadows, self.generator.trainable_variables)

  def reset(self) -> None:
    """Copies G's current weights into the EMA (host side, cross-replica context)."""
    with self.strategy.scope():
      for shadow, weight in self._pairs:
        shadow.assign(weight)
