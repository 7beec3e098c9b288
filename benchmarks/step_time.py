r"""Step time of dense vs Re-GAN training, mask-update cost, FLOP/s and memory.

    python benchmarks/step_time.py                      # SNGAN 32x32, batch 64, n_critic 5
    python benchmarks/step_time.py --g_channels=64 --d_channels=64 --repeats=2   # quick
    python benchmarks/step_time.py --xla --precision=mixed_float16              # on a GPU
    python benchmarks/step_time.py --precision=mixed_bfloat16                    # a CPU with AVX512-BF16
    python benchmarks/step_time.py --arch=stylegan2 --batch_size=32 --n_critic=1 \
        --arch_kwargs='{"channel_base": 16384}'           # the other architectures

``--arch`` picks the pair (sngan, autogan, progan, stylegan2, dcgan), each with
the loss it is trained with (hinge; WGAN-GP for ProGAN; non-saturating for
StyleGAN2) and its usual latent size; ``--arch_kwargs`` (JSON) passes widths to
its builder (``--g_channels`` / ``--d_channels`` apply to sngan and autogan).
Lazy regularization steps (StyleGAN2's R1 / path length) are not in the timed
cycle: the cycle is the main iteration every step runs.

Prints figures; it is not a test. Everything runs in one process: the trainer's
compiled iteration (``regan_tf.train_step.TrainStep``: ``n_critic`` D steps
and one G step) on a synthetic in-memory dataset, once for a dense generator
and once for a Re-GAN generator (``regan_tf.pruning.build_controller``) moved
into a sparse phase by ``before_g_step`` at a sparse start step. Dense and
sparse cycles are measured alternately, ``--repeats`` times each, so that a
load change on the machine hits both; medians are reported (for the
overhead, the median of each repeat's sparse/dense pair). See
benchmarks/README.md for what the targets mean.
"""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional

from absl import app
from absl import flags
import numpy as np

from regan_tf import data as data_lib
from regan_tf import flops as flops_lib
from regan_tf import pruning
from regan_tf.compat import keras, tf
from regan_tf import models as models_lib
from regan_tf.train_step import TrainStep, inner_optimizer, make_optimizer

FLAGS = flags.FLAGS
flags.DEFINE_integer("repeats", 5, "Measured cycles per variant (dense, sparse), interleaved.", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Batch size (reference: 64).")
flags.DEFINE_integer("n_critic", 5, "D steps per G step (reference: 5).")
flags.DEFINE_enum("arch", "sngan", ["sngan", "autogan", "progan", "stylegan2", "dcgan"],
                  "Architecture (regan_tf.models).")
flags.DEFINE_string("arch_kwargs", "{}", "JSON keyword arguments for the architecture's builder.")
flags.DEFINE_integer("g_channels", 256, "SNGAN generator width (reference: 256).")
flags.DEFINE_integer("d_channels", 128, "SNGAN discriminator width (reference: 128).")
flags.DEFINE_integer("image_size", 32, "Image side (32, 48 or 64).")
flags.DEFINE_float("sparsity", 0.3, "Re-GAN sparsity of the sparse phase.")
flags.DEFINE_integer("mask_updates", 3, "Mask updates to time (median reported).", lower_bound=1)
flags.DEFINE_integer("matmul_reps", 5, "Repeats of the matmul probe (median reported).", lower_bound=1)
flags.DEFINE_enum("precision", "float32", ["float32", "mixed_bfloat16", "mixed_float16"],
                  "Compute precision, as train.precision (mixed_bfloat16: CPUs with AVX512-BF16/AMX, TPUs, "
                  "A100/H100; mixed_float16: NVIDIA GPUs, with loss scaling).")
flags.DEFINE_bool("mixed_precision", False, "Deprecated: --precision=mixed_float16.")
flags.DEFINE_bool("xla", False, "XLA-compile the replica step (jit_compile=True).")
flags.DEFINE_string("json_out", None, "Also write the figures as JSON here.")

TARGET_SPARSE_RATIO = 1.02
TARGET_MASK_SECONDS = 0.3
TARGET_FLOPS_FRACTION = 0.9
NOISY_SPREAD = 1.3  # dense cycles' max/min above this: flag the run as measured under changing load


# The loss (and WGAN-GP weight) each architecture trains with, and its latent size.
_LOSSES = {"sngan": ("hinge", 0.0), "autogan": ("hinge", 0.0), "dcgan": ("hinge", 0.0),
           "progan": ("wasserstein", 10.0), "stylegan2": ("non_saturating", 0.0)}
_Z_DIM = {"progan": 512, "stylegan2": 512}


def _arch_kwargs() -> Dict[str, Any]:
  kwargs = json.loads(FLAGS.arch_kwargs)
  if FLAGS.arch in ("sngan", "autogan"):
    kwargs = {"g_channels": FLAGS.g_channels, "d_channels": FLAGS.d_channels, **kwargs}
  return kwargs


def _synthetic_data(n: int, size: int, channels: int, seed: int = 0) -> data_lib.ImageData:
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, size=(n, size, size, channels), dtype=np.uint8)
  return data_lib.ImageData(images=images, labels=None, name="synthetic")


class _Variant:
  """One trainable set-up (models, optimizers, compiled iteration, input stream)."""

  def __init__(self, *, dist, data, z_dim: int, batch: int, n_critic: int, seed: int,
               jit: bool, mixed: bool, controller_fn: Optional[Callable[..., Any]] = None):
    with dist.scope():
      keras.utils.set_random_seed(seed)
      gan = models_lib.build(FLAGS.arch, image_size=FLAGS.image_size, channels=3, z_dim=z_dim,
                             **_arch_kwargs())
      self.dense_generator = gan.generator
      generator, self.discriminator = gan.generator, gan.discriminator
      self.controller = None
      if controller_fn is not None:
        self.controller = controller_fn(generator, dist)
        generator = self.controller.generator
      self.generator = generator
      g_rate = self.controller.learning_rate(2e-4) if self.controller is not None else 2e-4
      self.g_opt = make_optimizer(g_rate, 0.0, 0.9, loss_scale=mixed, name="g_adam")
      self.d_opt = make_optimizer(2e-4, 0.0, 0.9, loss_scale=mixed, name="d_adam")
      inner_optimizer(self.g_opt).build(generator.trainable_variables)
      inner_optimizer(self.d_opt).build(self.discriminator.trainable_variables)
    loss, gp_weight = _LOSSES[FLAGS.arch]
    self.iteration = TrainStep(
        strategy=dist, generator=generator, discriminator=self.discriminator, g_optimizer=self.g_opt,
        d_optimizer=self.d_opt, losses=loss, gp_weight=gp_weight, z_dim=z_dim,
        local_batch=batch // dist.num_replicas_in_sync, n_critic=n_critic, seed=seed, jit=jit,
        controller=self.controller)
    pipeline = data_lib.make_pipeline(data, global_batch_size=batch, seed=seed)
    self.iterator = iter(dist.experimental_distribute_dataset(pipeline))
    self.step = 0

  def cycle(self) -> float:
    """Runs one iteration; returns its wall time (synchronized on the losses)."""
    start = time.perf_counter()
    out = self.iteration(self.iterator, tf.constant(self.step, tf.int64))
    float(out["g_loss"])  # waits for the device
    self.step += 1
    return time.perf_counter() - start


def _matmul_probe(reps: int) -> float:
  """Median GFLOP/s of a float32 1024x1024 matmul (10 chained per timing)."""
  a = tf.random.normal([1024, 1024])
  b = tf.random.normal([1024, 1024]) / 32.0

  @tf.function(autograph=False)
  def chain(x):
    for _ in range(10):
      x = tf.matmul(x, b)
    return tf.reduce_sum(x)

  float(chain(a))
  rates = []
  for _ in range(reps):
    start = time.perf_counter()
    float(chain(a))
    rates.append(10 * 2 * 1024**3 / (time.perf_counter() - start) / 1e9)
  return statistics.median(rates)


def _memory() -> Dict[str, float]:
  out = {"peak_host_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}
  if tf.config.list_logical_devices("GPU"):
    out["peak_device_mib"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
  return out


def _met(ok: bool) -> str:
  return "met" if ok else "NOT met"


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  for name in ("repeats", "batch_size", "n_critic", "g_channels", "d_channels", "mask_updates",
               "matmul_reps"):
    if getattr(FLAGS, name) < 1:
      print(f"error: --{name}={getattr(FLAGS, name)} must be >= 1.", file=sys.stderr)
      return 2
  try:
    if not isinstance(json.loads(FLAGS.arch_kwargs), dict):
      raise ValueError("not a JSON object")
  except ValueError as e:
    print(f"error: --arch_kwargs={FLAGS.arch_kwargs!r} must be a JSON object such as "
          f"'{{\"channel_base\": 512}}' ({e}).", file=sys.stderr)
    return 2
  batch, n_critic, z_dim, seed = FLAGS.batch_size, FLAGS.n_critic, _Z_DIM.get(FLAGS.arch, 128), 0
  precision = "mixed_float16" if FLAGS.mixed_precision else FLAGS.precision
  if precision != "float32":
    keras.mixed_precision.set_global_policy(precision)
  dist = tf.distribute.get_strategy()
  data = _synthetic_data(max(1024, batch * n_critic), FLAGS.image_size, 3)
  on_gpu = bool(tf.config.list_logical_devices("GPU"))
  print(f"device: {'GPU' if on_gpu else 'CPU'}; {FLAGS.arch} {FLAGS.image_size}x{FLAGS.image_size} "
        f"{_arch_kwargs()}; batch {batch}, n_critic "
        f"{n_critic}; XLA {'on' if FLAGS.xla else 'off'}; precision {precision}; repeats {FLAGS.repeats}",
        flush=True)

  common = dict(dist=dist, data=data, z_dim=z_dim, batch=batch, n_critic=n_critic, seed=seed,
                jit=FLAGS.xla, mixed=precision == "mixed_float16")
  dense = _Variant(**common)
  # warmup=1, g=1: every odd step starts a sparse phase (a mask update), every even
  # step >= 2 regrows; the schedule only drives before_g_step here.
  sparse = _Variant(**common, controller_fn=lambda g, s: pruning.build_controller(
      g, sparsity=FLAGS.sparsity, warmup=1, g=1, strategy=s))
  controller = sparse.controller
  controller.before_g_step(0, sparse.g_opt)  # start (dense warm-up)

  # ---------------------------------------------------------- mask updates ---
  # The first update also traces the update function (once per process): timed apart.
  start = time.perf_counter()
  controller.before_g_step(1, sparse.g_opt)
  first_mask_seconds = time.perf_counter() - start
  mask_times: List[float] = []
  for k in range(FLAGS.mask_updates):
    controller.before_g_step(2 + 2 * k, sparse.g_opt)  # regrow
    start = time.perf_counter()
    controller.before_g_step(3 + 2 * k, sparse.g_opt)  # mask update: sparse from here
    mask_times.append(time.perf_counter() - start)
  assert controller.phase == pruning.Phase.SPARSE
  density = flops_lib.layer_densities(sparse.generator)

  # ---------------------------------------------------------------- cycles ---
  print("compiling and warming up (2 cycles each)...", flush=True)
  compile_seconds = {"dense": sum(dense.cycle() for _ in range(2)),
                     "sparse": sum(sparse.cycle() for _ in range(2))}
  times: Dict[str, List[float]] = {"dense": [], "sparse": []}
  for r in range(FLAGS.repeats):
    order = (("dense", dense), ("sparse", sparse)) if r % 2 == 0 else (("sparse", sparse),
                                                                      ("dense", dense))
    for name, variant in order:
      times[name].append(variant.cycle())
    print(f"  repeat {r + 1}/{FLAGS.repeats}: dense {times['dense'][-1]:.3f} s, sparse "
          f"{times['sparse'][-1]:.3f} s", flush=True)
  masked = sum(1 for v in density.values() if v < 1.0)
  assert masked, "the sparse generator has no masked layer"
  zero_fraction = pruning.sparsity_report(sparse.generator)

  # ----------------------------------------------------------------- FLOPs ---
  f_g = flops_lib.forward_flops(dense.dense_generator, (z_dim,), batch_size=batch)
  f_d = flops_lib.forward_flops(dense.discriminator, (FLAGS.image_size, FLAGS.image_size, 3),
                                batch_size=batch)
  g_layers = flops_lib.layer_forward_flops(dense.dense_generator)
  g_eff = flops_lib.effective_g_forward(g_layers, density,
                                        other_flops=f_g - sum(g_layers.values()))
  per_cycle = flops_lib.iteration_flops(f_g, f_d, batch, n_critic, f_g_effective=g_eff)
  matmul = _matmul_probe(FLAGS.matmul_reps)

  dense_t, sparse_t = statistics.median(times["dense"]), statistics.median(times["sparse"])
  # Each repeat's sparse cycle ran right beside its dense one, so their ratio sees (nearly) the same load:
  # its median is the overhead figure; the ratio of the two medians is kept beside it.
  pair_ratios = [s / d for d, s in zip(times["dense"], times["sparse"])]
  ratio = statistics.median(pair_ratios)
  ratio_quartiles = (statistics.quantiles(pair_ratios, n=4, method="inclusive")
                     if len(pair_ratios) > 1 else [ratio, ratio, ratio])
  # How much the same dense cycle varied: a loaded (or shared) machine shows up here.
  dense_spread = max(times["dense"]) / min(times["dense"])
  mask_t = statistics.median(mask_times)
  achieved = per_cycle["executed"] / dense_t / 1e9
  images = batch * (n_critic + 1)
  result = {
      "device": "GPU" if on_gpu else "CPU",
      "config": {k: getattr(FLAGS, k) for k in ("arch", "arch_kwargs", "batch_size", "n_critic", "g_channels",
                                                "d_channels", "image_size", "sparsity",
                                                "repeats", "xla", "precision")},
      "dense_cycle_s": dense_t, "sparse_cycle_s": sparse_t, "sparse_over_dense": ratio,
      "sparse_over_dense_quartiles": [ratio_quartiles[0], ratio_quartiles[2]],
      "sparse_over_dense_of_medians": sparse_t / dense_t, "dense_cycle_max_over_min": dense_spread,
      "dense_cycles_s": times["dense"], "sparse_cycles_s": times["sparse"],
      "compile_and_warmup_s": compile_seconds,
      "mask_update_s": mask_t, "mask_updates_s": mask_times, "first_mask_update_s": first_mask_seconds,
      "g_zero_fraction_overall": float(np.mean(list(zero_fraction.values()))),
      "executed_gflops_per_cycle": per_cycle["executed"] / 1e9,
      "effective_sparse_gflops_per_cycle": per_cycle["effective"] / 1e9,
      "achieved_gflops_per_s_dense": achieved,
      "achieved_gflops_per_s_sparse": per_cycle["executed"] / sparse_t / 1e9,
      "matmul_probe_gflops_per_s": matmul,
      "images_per_s_dense": images / dense_t, "images_per_s_sparse": images / sparse_t,
      **_memory(),
  }
  result["targets"] = {
      "sparse_over_dense<=1.02": ratio <= TARGET_SPARSE_RATIO,
      "mask_update<=0.3s": mask_t <= TARGET_MASK_SECONDS,
      "gflops_within_10pct_of_matmul": achieved >= TARGET_FLOPS_FRACTION * matmul,
  }

  print()
  print(f"{f'dense cycle (median of {FLAGS.repeats})':<38}{dense_t:8.3f} s   "
        f"{images / dense_t:8.1f} images/s")
  print(f"Re-GAN sparse cycle (median)          {sparse_t:8.3f} s   "
        f"{images / sparse_t:8.1f} images/s")
  print(f"sparse / dense (median of pairs)      {ratio:8.3f}     target <= {TARGET_SPARSE_RATIO}: "
        f"{_met(ratio <= TARGET_SPARSE_RATIO)} (quartiles {ratio_quartiles[0]:.3f}-{ratio_quartiles[2]:.3f}; "
        f"ratio of medians {sparse_t / dense_t:.3f})")
  print(f"{f'mask update (median of {FLAGS.mask_updates})':<38}{mask_t:8.3f} s   target <= "
        f"{TARGET_MASK_SECONDS} s: {_met(mask_t <= TARGET_MASK_SECONDS)} (first, with tracing: "
        f"{first_mask_seconds:.2f} s)")
  print(f"executed / effective(sparse) GFLOPs per cycle  {per_cycle['executed'] / 1e9:,.1f} / "
        f"{per_cycle['effective'] / 1e9:,.1f}")
  print(f"achieved GFLOP/s (dense)              {achieved:8.1f}     matmul probe "
        f"{matmul:.1f} GFLOP/s ({100 * achieved / matmul:.0f}%); target >= "
        f"{100 * TARGET_FLOPS_FRACTION:.0f}%: {_met(achieved >= TARGET_FLOPS_FRACTION * matmul)}")
  memory = _memory()
  print(f"peak host RSS                         {memory['peak_host_rss_mib']:8.0f} MiB")
  if "peak_device_mib" in memory:
    print(f"peak device memory                    {memory['peak_device_mib']:8.0f} MiB")
  print("note: Re-GAN's savings are counted on nonzero weights; dense kernels do not run faster "
        "on masked weights.")
  if dense_spread > NOISY_SPREAD:
    print(f"note: the dense cycle took from {min(times['dense']):.3f} to {max(times['dense']):.3f} s "
          f"({dense_spread:.1f}x): the machine's load changed during the run, so the targets' verdicts are "
          "unreliable; use more --repeats or a quiet machine.")
  if FLAGS.json_out:
    with open(FLAGS.json_out, "w") as f:
      json.dump(result, f, indent=2)
  return 0


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)))
