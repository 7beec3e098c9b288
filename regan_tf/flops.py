"""FLOPs accounting for dense and Re-GAN training (forward, per iteration, per run).

Re-GAN (Saxena et al., CVPR 2023, Sec. 4) reports training cost as FLOPs on the
*nonzero* weights of the generator: in a sparse phase a masked weight does no
useful multiply-add. This module computes both figures:

* **executed** FLOPs: what the dense kernels actually run. TensorFlow's dense
  Conv2D/MatMul kernels multiply by the zeros too, so masking does not change
  them, and a Re-GAN step takes as long as a dense one.
* **effective** FLOPs: the paper's count, G's prunable layers scaled by their
  density (1 - sparsity) in sparse phases.

Counting conventions
--------------------
* One multiply-add is 2 FLOPs (TensorFlow's convention, and the paper's).
* Forward FLOPs come from TensorFlow's own profiler (the ``flops`` statistics
  its ops register), on a graph with a fixed batch. The profiler counts
  ``Conv2D`` (2 * kh * kw * cin * cout per output position),
  ``Conv2DBackpropInput`` (a transposed conv: 2 * kh * kw * cin * cout per
  *input* position), ``MatMul`` (2 * in * out per row), ``BiasAdd`` (1 per
  output element) and elementwise arithmetic (``Add``/``AddV2``, ``Mul``,
  ``RealDiv``, ``Rsqrt``, ... 1 per element; e.g. residual adds and the
  spectral-norm power iteration). It counts **0** for activations (ReLU, tanh,
  LeakyReLU), inference-mode BatchNormalization (``FusedBatchNormV3``),
  pooling by reshapes/sums it has no statistics for, and data movement
  (tile, reshape). These are a few percent at most of a GAN's convolutions.
* Training: the backward pass costs about 2x the forward (gradients w.r.t. the
  inputs and w.r.t. the weights, each as large as the forward), so training a
  network on an image costs 3x its forward FLOPs. Per GAN iteration with batch
  ``B`` and ``n_critic`` D steps (as ``regan_tf.trainer`` runs it):

      D step (x n_critic): G forward on B, D forward + backward on 2B (real + fake)
                           = B * (F_G + 3 * 2 * F_D)
      G step:              G and D forward + backward on B (the gradient flows
                           through D)
                           = B * (3 * F_G + 3 * F_D)

  Optimizer updates, masks, losses and augmentations are not counted.

Hand-written because TensorFlow has no per-layer or per-training-step FLOPs
API; the forward totals are TensorFlow's own.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple

from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

from regan_tf.compat import keras, tf
from regan_tf.pruning.schedule import ReganSchedule

__all__ = [
    "RunFlops",
    "SpanFlops",
    "effective_g_forward",
    "forward_flops",
    "iteration_flops",
    "layer_densities",
    "layer_forward_flops",
    "pruned_layer_names",
    "schedule_flops",
    "sparse_step_count",
]


def _check_shape(input_shape_without_batch: Sequence[int]) -> Tuple[int, ...]:
  try:
    shape = tuple(int(d) for d in input_shape_without_batch)
  except (TypeError, ValueError):
    raise ValueError(f"input_shape_without_batch={input_shape_without_batch!r} must be a sequence "
                     "of positive ints without the batch dimension, e.g. (128,) for a "
                     "generator's latent or (32, 32, 3) for a discriminator.") from None
  if not shape or any(d < 1 for d in shape):
    raise ValueError(f"input_shape_without_batch={input_shape_without_batch!r} must be a non-empty "
                     "sequence of ints >= 1 without the batch dimension, e.g. (32, 32, 3).")
  return shape


def forward_flops(model: keras.Model, input_shape_without_batch: Sequence[int], *,
                  batch_size: int = 1) -> int:
  """FLOPs of one forward pass (``training=False``) per image, from TF's profiler.

  Traces ``model(x, training=False)`` for ``x`` of shape ``[batch_size,
  *input_shape_without_batch]`` (float32) and sums the ``flops`` statistics of
  the graph's ops with ``tf.compat.v1.profiler`` (see the module docstring for
  which ops count). The batch must be fixed: the profiler counts 0 for ops
  whose shapes are unknown. The total is divided by ``batch_size``, so work
  done once per batch (the spectral-norm power iteration of ``SNConv2D`` /
  ``SNDense``) is amortized over it: pass the training batch for training
  figures; ``batch_size=1`` counts it in full.

  Args:
    model: a built Keras model taking one input tensor.
    input_shape_without_batch: e.g. ``(128,)`` or ``(32, 32, 3)``.
    batch_size: the fixed batch to trace with, >= 1.

  Returns:
    FLOPs per image (rounded to an int; a multiply-add is 2).

  Raises:
    ValueError: a bad shape or batch size.
  """
  shape = _check_shape(input_shape_without_batch)
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f"batch_size={batch_size!r} must be an int >= 1 (the fixed batch the "
                     "profiler traces with), e.g. 1 or the training batch.")
  dtype = model.inputs[0].dtype if getattr(model, "inputs", None) else tf.float32
  fn = tf.function(lambda x: model(x, training=False), autograph=False)
  graph = fn.get_concrete_function(tf.TensorSpec([batch_size, *shape], dtype)).graph
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options["output"] = "none"  # no stdout table
  profile = tf.compat.v1.profiler.profile(graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op",
                                          options=options)
  return int(round(profile.total_float_ops / batch_size))


# ----------------------------------------------------------------------------
# Per layer (analytic, matching what the profiler counts for these layers)
# ----------------------------------------------------------------------------


def _inner_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
  """The layer a pruning wrapper (``ReganPruneWrapper`` / TFMOT's) holds, else itself."""
  while isinstance(layer, keras.layers.Wrapper) and hasattr(layer, "layer"):
    layer = layer.layer
  return layer


def _is_pruning_wrapper(layer: keras.layers.Layer) -> bool:
  return isinstance(layer, pruning_wrapper.PruneLowMagnitude)


def _shape_list(shape: Any) -> Sequence[Tuple[Optional[int], ...]]:
  if isinstance(shape, list) and shape and isinstance(shape[0], (tuple, list, tf.TensorShape)):
    return [tuple(s) for s in shape]
  return [tuple(shape)]


def _node_shapes(model: keras.Model, layer: keras.layers.Layer):
  """(input shape, output shape) of every call of ``layer`` inside ``model``."""
  network_nodes = getattr(model, "_network_nodes", None)
  shapes = []
  for index, node in enumerate(layer.inbound_nodes):
    if network_nodes is not None and f"{layer.name}_ib-{index}" not in network_nodes:
      continue  # a call that belongs to another model
    in_shape = _shape_list(node.input_shapes)[0]
    out_shape = _shape_list(node.output_shapes)[0]
    shapes.append((in_shape, out_shape))
  return shapes


def _prod(values: Iterable[Optional[int]]) -> int:
  out = 1
  for v in values:
    out *= int(v)
  return out


def _layer_flops(layer: keras.layers.Layer, in_shape, out_shape) -> Optional[int]:
  """Per-image FLOPs of one call of a Dense/Conv2D/Conv2DTranspose (kernel + bias).

  A custom layer (StyleGAN2's modulated convolutions, for example) counts
  itself through a ``forward_flops(input_shape, output_shape) -> int`` method
  (shapes with the batch dimension; for several inputs, the first one).
  """
  inner = _inner_layer(layer)
  own = getattr(inner, "forward_flops", None)
  if callable(own):
    return int(own(in_shape, out_shape))
  bias = _prod(out_shape[1:]) if getattr(inner, "use_bias", False) else 0
  # Conv2DTranspose subclasses Conv2D: test it first.
  if isinstance(inner, keras.layers.Conv2DTranspose):
    kh, kw = inner.kernel_size
    cin, cout = int(in_shape[-1]), int(out_shape[-1])
    # Conv2DBackpropInput: 2 * kh * kw * cin * cout per input position.
    return 2 * kh * kw * cin * cout * _prod(in_shape[1:-1]) + bias
  if isinstance(inner, keras.layers.Conv2D):
    kh, kw = inner.kernel_size
    cin = int(in_shape[-1]) // inner.groups
    return 2 * kh * kw * cin * int(out_shape[-1]) * _prod(out_shape[1:-1]) + bias
  if isinstance(inner, keras.layers.Dense):
    rows = _prod(in_shape[1:-1])  # Dense on [B, ..., in] multiplies every row
    return 2 * int(in_shape[-1]) * inner.units * rows + bias
  return None


def layer_forward_flops(model: keras.Model,
                        input_shape: Optional[Sequence[int]] = None) -> Dict[str, int]:
  """Per-image forward FLOPs of each Dense / Conv2D / Conv2DTranspose layer,
  and of custom layers that define ``forward_flops`` (see :func:`_layer_flops`).

  Computed analytically from the shapes the layers were called on, with the
  profiler's conventions (2 FLOPs per multiply-add, plus 1 per output element
  for a bias; a transposed conv counts per *input* position), so for a model
  made of these layers, BatchNormalization, activations and reshapes (e.g. the
  DCGAN generator) the values sum exactly to :func:`forward_flops`. Not
  included: elementwise ops (residual ``Add``s) and the spectral-norm power
  iteration, which :func:`forward_flops` does count.

  Works through pruning wrappers (``ReganPruneWrapper``: the inner ``.layer``
  is counted, under the inner layer's name, the name Re-GAN's pruned tensors
  carry), for subclasses (``SNConv2D``, ``SNDense``) and nested models
  (keys ``'<submodel>/<layer>'``). A layer called twice counts twice.

  Args:
    model: a built Functional or Sequential Keras model.
    input_shape: unused when the model has fixed input shapes (its layers'
      shapes are known); accepted for symmetry with :func:`forward_flops` and
      checked against the model's input when given.

  Returns:
    ``{layer name: FLOPs per image}`` in layer order.

  Raises:
    ValueError: the model is not built, or ``input_shape`` disagrees with it.
  """
  if not isinstance(model, keras.Model) or not model.built:
    raise ValueError(f"model={model!r} must be a built keras.Model (Functional or Sequential, "
                     "e.g. the generator of regan_tf.models.<arch>.build).")
  if input_shape is not None and getattr(model, "inputs", None):
    given = _check_shape(input_shape)
    have = tuple(model.inputs[0].shape[1:])
    if have != given:
      raise ValueError(f"input_shape={tuple(input_shape)} disagrees with the model's input "
                       f"{have}; build the model at the shape you want counted.")
  counts: Dict[str, int] = {}

  def visit(container: keras.Model, prefix: str) -> None:
    for layer in container.layers:
      if isinstance(layer, keras.Model):
        visit(layer, f"{prefix}{layer.name}/")
        continue
      for in_shape, out_shape in _node_shapes(container, layer):
        flops = _layer_flops(layer, in_shape, out_shape)
        if flops is not None:
          name = prefix + _inner_layer(layer).name
          counts[name] = counts.get(name, 0) + flops

  visit(model, "")
  return counts


def pruned_layer_names(model: keras.Model) -> Tuple[str, ...]:
  """Names (inner layer names) of ``model``'s layers whose weights a pruning wrapper masks."""
  names = []

  def visit(container: keras.Model, prefix: str) -> None:
    for layer in container.layers:
      if isinstance(layer, keras.Model):
        visit(layer, f"{prefix}{layer.name}/")
      elif _is_pruning_wrapper(layer) and (not layer.built or layer.pruning_vars):
        # Wrappers with no prunable weight (e.g. around NearestUpsample2D) are skipped.
        names.append(prefix + _inner_layer(layer).name)

  visit(model, "")
  return tuple(names)


def layer_densities(model: keras.Model, weight: str = "kernel") -> Dict[str, float]:
  """Actual density (fraction of nonzeros) of each pruned layer's ``weight``.

  Reads the weights (``regan_tf.pruning.sparsity_report``): call at summary
  steps, not every step. Keys are inner layer names, as in
  :func:`layer_forward_flops`.
  """
  from regan_tf.pruning import sparsity_report  # pylint: disable=g-import-not-at-top
  suffix = "/" + weight
  return {name[:-len(suffix)]: 1.0 - zeros
          for name, zeros in sparsity_report(model).items() if name.endswith(suffix)}


# ----------------------------------------------------------------------------
# Training FLOPs
# ----------------------------------------------------------------------------


def effective_g_forward(layer_flops: Mapping[str, float],
                        layer_density: Mapping[str, float],
                        other_flops: float = 0.0) -> float:
  """Effective (nonzero-weight) forward FLOPs: ``sum_l flops_l * density_l + other``.

  Args:
    layer_flops: ``{layer: FLOPs}`` (:func:`layer_forward_flops`).
    layer_density: ``{layer: 1 - sparsity}``; layers not listed count at
      density 1 (dense). A layer's density scales all of its FLOPs (kernel and
      bias), an approximation when only kernels are pruned (the bias adds are
      < 1% of a conv).
    other_flops: FLOPs outside the listed layers (counted in full).

  Raises:
    ValueError: a density outside [0, 1] or a density for an unknown layer.
  """
  unknown = sorted(set(layer_density) - set(layer_flops))
  if unknown:
    raise ValueError(f"layer_density names layers {unknown} that layer_flops does not have "
                     f"(it has {sorted(layer_flops)}); use the names of layer_forward_flops.")
  total = float(other_flops)
  for name, flops in layer_flops.items():
    density = float(layer_density.get(name, 1.0))
    if not 0.0 <= density <= 1.0:
      raise ValueError(f"layer_density[{name!r}]={density} is outside [0, 1]; pass 1 - sparsity.")
    total += flops * density
  return total


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f"{name}={value!r} must be an int >= {minimum}.")
  return value


def iteration_flops(f_g: float, f_d: float, batch_size: int, n_critic: int,
                    g_density: float = 1.0, *,
                    f_g_effective: Optional[float] = None) -> Dict[str, float]:
  """FLOPs of one training iteration (n_critic D steps + 1 G step).

  ``B * (n_critic * (F_G + 6 F_D) + 3 F_G + 3 F_D)`` (module docstring).

  Args:
    f_g, f_d: forward FLOPs per image of the dense G and of D.
    batch_size: B, the global batch.
    n_critic: D steps per G step.
    g_density: the fraction of G's FLOPs on nonzero weights, for the effective
      count (``effective G forward = f_g * g_density``).
    f_g_effective: the effective G forward directly (e.g. from
      :func:`effective_g_forward` with per-layer densities); overrides
      ``g_density``.

  Returns:
    ``{'executed': ..., 'effective': ...}``. ``executed`` uses the dense
    ``f_g``: dense kernels do not run faster on masked weights.
    ``effective`` == ``executed`` at density 1.
  """
  _check_positive_int("batch_size", batch_size)
  _check_positive_int("n_critic", n_critic)
  if not 0.0 <= g_density <= 1.0:
    raise ValueError(f"g_density={g_density} is outside [0, 1]; pass 1 - sparsity of G.")
  g_eff = f_g * g_density if f_g_effective is None else float(f_g_effective)

  def total(g: float) -> float:
    return batch_size * (n_critic * (g + 6.0 * f_d) + 3.0 * g + 3.0 * f_d)

  return {"executed": total(f_g), "effective": total(g_eff)}


def sparse_step_count(schedule: Optional[ReganSchedule], train_steps: int) -> int:
  """Number of steps in ``[0, train_steps)`` that ``schedule`` puts in a sparse phase.

  Closed form (O(1) for any length), equal to counting
  ``schedule.phase_at(s) == Phase.SPARSE``; 0 without a schedule.
  """
  _check_positive_int("train_steps", train_steps, 0)
  if schedule is None:
    return 0

  def regular(t: int) -> int:
    t = max(0, t - schedule.warmup)
    full, rem = divmod(t, 2 * schedule.g)
    return full * schedule.g + min(rem, schedule.g)

  final = schedule._final_start  # pylint: disable=protected-access
  if final is None or train_steps <= final:
    return regular(train_steps)
  return regular(final) + (train_steps - final)


def schedule_flops(f_g_layers: Mapping[str, float], f_d: float, batch_size: int, n_critic: int,
                   train_steps: int, schedule: Optional[ReganSchedule], *,
                   f_g: Optional[float] = None,
                   pruned_layers: Optional[Iterable[str]] = None) -> Dict[str, Any]:
  """Projected training FLOPs of a run: dense baseline vs Re-GAN (effective).

  In a sparse phase every pruned layer has density ``1 - schedule.sparsity``
  (masks are exact per tensor); warm-up and dense phases are dense. Also
  valid mid-run for the cumulative count up to a step (``train_steps=step``).

  Args:
    f_g_layers: G's per-layer forward FLOPs (:func:`layer_forward_flops`).
    f_d: D's forward FLOPs per image.
    batch_size, n_critic: as trained.
    train_steps: G steps of the run (or so far).
    schedule: the Re-GAN schedule; None for a dense run (savings 0).
    f_g: G's total forward FLOPs (:func:`forward_flops`); the part not in
      ``f_g_layers`` (residual adds, ...) is counted dense. Default: the sum.
    pruned_layers: the layers Re-GAN prunes (:func:`pruned_layer_names`);
      default: all of ``f_g_layers``.

  Returns:
    A dict: ``train_steps``, ``sparse_steps``, ``g_forward``,
    ``g_forward_sparse`` (effective), ``d_forward``, ``iteration_executed``,
    ``iteration_effective_sparse``, ``executed_total`` (same for dense and
    Re-GAN: dense kernels do not run faster on masked weights),
    ``dense_total`` (the dense baseline), ``regan_effective_total``,
    ``savings_percent`` (effective vs dense baseline).
  """
  _check_positive_int("train_steps", train_steps, 0)
  layers_sum = float(sum(f_g_layers.values()))
  g_total = layers_sum if f_g is None else float(f_g)
  if g_total + 1e-6 < layers_sum:
    raise ValueError(f"f_g={f_g} is smaller than the sum of f_g_layers ({layers_sum}); pass the "
                     "forward_flops of the same generator at the same input size.")
  pruned = set(f_g_layers) if pruned_layers is None else set(pruned_layers)
  sparsity = schedule.sparsity if schedule is not None else 0.0
  densities = {name: 1.0 - sparsity for name in f_g_layers if name in pruned}
  g_sparse = effective_g_forward(f_g_layers, densities, other_flops=g_total - layers_sum)
  dense_it = iteration_flops(g_total, f_d, batch_size, n_critic)
  sparse_it = iteration_flops(g_total, f_d, batch_size, n_critic, f_g_effective=g_sparse)
  sparse_steps = sparse_step_count(schedule, train_steps)
  dense_total = dense_it["executed"] * train_steps
  effective_total = (sparse_it["effective"] * sparse_steps
                     + dense_it["effective"] * (train_steps - sparse_steps))
  return {
      "train_steps": train_steps,
      "sparse_steps": sparse_steps,
      "g_forward": g_total,
      "g_forward_sparse": g_sparse,
      "d_forward": float(f_d),
      "iteration_executed": dense_it["executed"],
      "iteration_effective_sparse": sparse_it["effective"],
      "executed_total": dense_total,
      "dense_total": dense_total,
      "regan_effective_total": effective_total,
      "savings_percent": 100.0 * (1.0 - effective_total / dense_total) if dense_total else 0.0,
  }


class SpanFlops:
  """Per-image forward FLOPs of the models one span of a run trains.

  Attributes:
    f_g, f_d: G's and D's forward FLOPs per image.
    layers: G's per-layer forward FLOPs (:func:`layer_forward_flops`).
    batch: the span's global batch.
    pruned: G's pruned layer names (Re-GAN), or None for a dense run.
  """

  def __init__(self, generator: keras.Model, discriminator: keras.Model, *, z_dim: int, batch: int,
               pruned: bool):
    size, channels = int(discriminator.input_shape[1]), int(discriminator.input_shape[-1])
    self.f_g = forward_flops(generator, (z_dim,), batch_size=batch)
    self.f_d = forward_flops(discriminator, (size, size, channels), batch_size=batch)
    self.layers = layer_forward_flops(generator)
    self.batch = batch
    self.pruned = pruned_layer_names(generator) if pruned else None


class RunFlops:
  """A run's training FLOPs, executed and Re-GAN-effective, as a function of the step.

  A plain run has one span; a growing ProGAN run one per (stage, fade) span,
  each with its own models and batch. Totals up to a step add each span's
  share, computed as :func:`schedule_flops` up to the span's end minus up to its
  start (Re-GAN's schedule is a function of the global step).

  Args:
    spans: ``(first step, end step or None for open-ended, SpanFlops)`` in order.
    n_critic: D steps per G step.
    schedule: Re-GAN's schedule, or None for a dense run.
  """

  _TOTALS = ("executed_total", "regan_effective_total", "sparse_steps")

  def __init__(self, spans: Sequence[Tuple[int, Optional[int], SpanFlops]], n_critic: int,
               schedule: Optional[ReganSchedule]):
    if not spans:
      raise ValueError("RunFlops needs at least one span.")
    self.spans, self.n_critic, self.schedule = list(spans), n_critic, schedule

  @property
  def last(self) -> SpanFlops:
    """The final span's figures (the full-size models of a growing run)."""
    return self.spans[-1][2]

  def _schedule_flops(self, part: SpanFlops, steps: int) -> Dict[str, Any]:
    return schedule_flops(part.layers, part.f_d, part.batch, self.n_critic, steps, self.schedule,
                          f_g=part.f_g, pruned_layers=part.pruned)

  def projected(self, train_steps: int) -> Dict[str, Any]:
    """The whole run's figures (for ``flops.json`` and the start-up log line)."""
    if len(self.spans) == 1 and self.spans[0][0] == 0:
      return self._schedule_flops(self.last, train_steps)
    return self.totals(train_steps)

  def totals(self, at_step: int) -> Dict[str, float]:
    """Executed and effective totals over the first ``at_step`` steps."""
    totals = {name: 0.0 for name in self._TOTALS}
    for first, end, part in self.spans:
      upto = at_step if end is None else min(at_step, end)
      if upto <= first:
        continue
      for sign, n in ((1.0, upto), (-1.0, first)):
        if n:
          span = self._schedule_flops(part, n)
          for name in totals:
            totals[name] += sign * span[name]
    executed = totals["executed_total"]
    totals["dense_total"] = executed
    totals["savings_percent"] = (100.0 * (1.0 - totals["regan_effective_total"] / executed)
                                 if executed else 0.0)
    totals["train_steps"] = at_step
    return totals

  def scalars(self, at_step: int) -> Dict[str, float]:
    """The TensorBoard scalars ``flops/*`` after ``at_step`` steps."""
    totals = self.totals(at_step)
    return {"flops/executed_total": totals["executed_total"],
            "flops/effective_total": totals["regan_effective_total"],
            "flops/savings_percent": totals["savings_percent"]}
