"""Re-GAN for your own Keras GAN, shaped like TFMOT's pruning API.

TFMOT prunes with ``prune_low_magnitude(model)``, the ``UpdatePruningStep``
callback and ``strip_pruning(model)``. Re-GAN (Saxena et al., CVPR 2023) on a
GAN trained with ``Model.fit`` (a ``keras.Model`` subclass with its own
``train_step``, as in the keras.io DCGAN tutorial) takes the same three lines::

    generator = regan_tf.prune_regrow(generator, sparsity=0.3, warmup=1000, g=500)
    gan.fit(dataset, callbacks=[regan_tf.ReganCallback(generator, g_optimizer=g_opt)])
    plain = regan_tf.strip(generator)

``prune_regrow`` wraps the generator's layers (a clone, as TFMOT does) and
attaches its ``ReganController``; ``controller_of(generator)`` returns it for a
custom ``tf.GradientTape`` loop, which calls the controller's three hooks itself
(``before_g_step``, ``mask_gradients``, ``apply_masks``).

Safe by construction: a generator from ``prune_regrow`` refuses to run in
training before its schedule has started (no callback, no ``before_g_step``),
and its controller raises at the second G update if the loop never called
``mask_gradients`` or ``apply_masks``. Neither check costs a weight-sized op:
the first is one scalar assertion per wrapper (dropped by XLA: under
``jit_compile=True`` it does not fire), the second a Python flag set when the
hook is traced.

What the callback does, per training batch (one generator update):

* ``on_train_batch_begin``: ``before_g_step(step, g_optimizer)``: at the first
  step of a sparse phase new magnitude masks (masked weights zeroed), at the
  first step of a dense phase masks back to ones (regrowth from zero), and G's
  learning rate set to ``base x dense_lr_factor`` in dense phases, ``base``
  otherwise. The discriminator's optimizer is never seen.
* ``on_train_batch_end``: ``w = w * mask``, so masked weights are exactly zero
  after every batch and in every forward pass of the next one.

The user's ``train_step`` does not mask G's gradients, so unlike the trainer
(and a custom loop with ``mask_gradients``) Adam's moments of masked entries
keep following their gradients during a sparse phase; the weights themselves
stay exactly zero. ``steps_per_execution`` must be 1 (the callback has to run
between batches).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

from regan_tf.compat import keras, tf
from regan_tf.pruning import wrapper as wrapper_lib
from regan_tf.pruning.controller import PhaseScaledLearningRate, ReganController, build_controller

__all__ = ["ReganCallback", "controller_of", "prune_regrow", "strip"]

_CONTROLLER_ATTRIBUTE = "_regan_controller"

strip = wrapper_lib.strip


def prune_regrow(generator: keras.Model,
                 *,
                 sparsity: float = 0.3,
                 warmup: int,
                 g: int,
                 dense_lr_factor: float = 0.1,
                 final_phase: Optional[str] = None,
                 total_steps: Optional[int] = None,
                 prune_biases_and_norms: bool = False,
                 exclude: Union[str, Sequence[str]] = (),
                 reset_optimizer_slots: bool = False,
                 strategy: Optional[tf.distribute.Strategy] = None) -> keras.Model:
  """The generator with its layers wrapped for Re-GAN, carrying its schedule.

  A clone of ``generator`` (its weights copied) whose Dense / Conv2D /
  Conv2DTranspose layers (and custom layers implementing TFMOT's
  ``get_prunable_weights``) are pruning wrappers. Train the returned model, not
  the original. Lengths count generator updates (0-based step ``s`` is the
  ``s+1``-th): steps ``0..warmup-1`` dense, then alternately ``g`` sparse and
  ``g`` dense steps.

  Args:
    generator: a built Functional or Sequential ``tf_keras`` model.
    sparsity: fraction of each pruned tensor masked in sparse phases, [0, 1).
    warmup: dense warm-up, in generator updates (>= 0).
    g: length of every sparse and every dense phase, in generator updates (>= 1).
    dense_lr_factor: G's learning-rate factor in dense phases (0.1 in the paper).
    final_phase: 'sparse' forces the last ``g`` of ``total_steps`` to be sparse.
    total_steps: the run's generator updates (needed with ``final_phase``).
    prune_biases_and_norms: also prune biases and BatchNormalization gamma/beta.
    exclude: regular expressions of layer names to keep dense, e.g. 'to_rgb'.
    reset_optimizer_slots: zero Adam's moments of masked entries at mask updates.
    strategy: the distribution strategy the generator was built under.

  Returns:
    The wrapped generator; ``controller_of(it)`` is its ``ReganController``.

  Raises:
    ValueError / TypeError: a subclassed or unbuilt model, a model of another
      Keras, or a schedule argument out of range (the message names the fix).
  """
  controller = build_controller(generator, sparsity=sparsity, warmup=warmup, g=g,
                                dense_lr_factor=dense_lr_factor, final_phase=final_phase,
                                train_steps=total_steps,
                                prune_biases_and_norms=prune_biases_and_norms, exclude=exclude,
                                reset_optimizer_slots=reset_optimizer_slots, strategy=strategy)
  controller.required_hooks = ("mask_gradients", "apply_masks")
  for tensor in controller.tensors:
    tensor.wrapper.require_controller = True
  pruned = controller.generator
  # Not tracked by Keras (a plain attribute): the controller is no layer or weight.
  object.__setattr__(pruned, _CONTROLLER_ATTRIBUTE, controller)
  return pruned


def controller_of(generator: keras.Model) -> ReganController:
  """The ``ReganController`` of a generator returned by ``prune_regrow``.

  Raises:
    ValueError: ``generator`` did not come from ``prune_regrow`` (e.g. the
      original model, which ``prune_regrow`` cloned, or a stripped one).
  """
  controller = getattr(generator, _CONTROLLER_ATTRIBUTE, None)
  if not isinstance(controller, ReganController):
    name = getattr(generator, "name", type(generator).__name__)
    raise ValueError(f"model {name!r} carries no Re-GAN schedule; pass the model returned by "
                     "regan_tf.prune_regrow(generator, warmup=..., g=...) (it is a clone: the "
                     "original generator is not pruned).")
  return controller


class ReganCallback(keras.callbacks.Callback):
  """Drives Re-GAN from ``Model.fit``: one training batch = one generator update.

  Use with a GAN whose ``train_step`` updates the generator once per batch
  (the keras.io DCGAN pattern); no change to the ``train_step`` is needed. See
  the module docstring for what happens at each batch.
  """

  def __init__(self, generator: keras.Model, g_optimizer: Any, *, initial_step: int = 0,
               verbose: int = 1):
    """Binds the callback to the generator's schedule and G's optimizer.

    Args:
      generator: the model returned by ``prune_regrow`` (the one ``train_step``
        trains).
      g_optimizer: the generator's optimizer; its learning rate is scaled in
        dense phases. A float learning rate is scaled directly; a schedule must
        be built as ``controller_of(generator).learning_rate(schedule)``. Never
        pass the discriminator's optimizer.
      initial_step: generator updates already done (when resuming a run from a
        checkpoint of the models and optimizers); later ``fit`` calls continue
        counting from where the previous one stopped.
      verbose: 1 prints each phase change, 0 is silent (they are also logged
        with absl).

    Raises:
      ValueError: a generator without a schedule, a missing optimizer, or a
        learning-rate schedule the callback cannot scale.
    """
    super().__init__()
    self.controller = controller_of(generator)
    if g_optimizer is None or not hasattr(g_optimizer, "apply_gradients"):
      raise ValueError(f"g_optimizer={g_optimizer!r} is not an optimizer; pass the generator's "
                       "optimizer (the one whose learning rate Re-GAN lowers in dense phases).")
    inner = getattr(g_optimizer, "inner_optimizer", g_optimizer)
    rate = getattr(inner, "_learning_rate", None)
    if (isinstance(rate, keras.optimizers.schedules.LearningRateSchedule)
        and not (isinstance(rate, PhaseScaledLearningRate)
                 and rate.lr_factor is self.controller.lr_factor)):
      raise ValueError(
          f"g_optimizer's learning rate is a {type(rate).__name__}, which Re-GAN cannot scale in "
          "dense phases; build the optimizer with a float learning rate, or with learning_rate="
          "regan_tf.controller_of(generator).learning_rate(your_schedule).")
    if isinstance(initial_step, bool) or not isinstance(initial_step, int) or initial_step < 0:
      raise ValueError(f"initial_step={initial_step!r} must be an integer >= 0 (generator "
                       "updates already done).")
    self.generator = generator
    self.g_optimizer = g_optimizer
    self.step = initial_step
    self.verbose = verbose
    # The callback applies the masks itself: the train_step calls no hook.
    self.controller.required_hooks = ()

  def on_train_begin(self, logs=None):
    steps = getattr(self.model, "_steps_per_execution", None)
    if steps is not None and int(steps.numpy()) != 1:
      raise ValueError(f"ReganCallback needs steps_per_execution=1 in compile() (got "
                       f"{int(steps.numpy())}): it applies the masks between batches.")

  def on_train_batch_begin(self, batch, logs=None):
    for event in self.controller.before_g_step(self.step, self.g_optimizer):
      if self.verbose:
        print(event.message, flush=True)

  def on_train_batch_end(self, batch, logs=None):
    with self.controller.strategy.scope():
      self.controller._apply_fn()  # pylint: disable=protected-access
    self.step += 1
