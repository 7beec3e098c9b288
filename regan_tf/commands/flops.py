r"""Training FLOPs of a gin configuration, dense baseline vs Re-GAN, without training.

    regan-flops --gin_file=gin/sngan_cifar.gin [--gin_bindings=...] \
        [--image_size=32] [--channels=3] [--num_examples=50000] [--json_out=flops.json]

Parses the gin files like ``regan_tf.train``, builds the configured models at
``--image_size`` x ``--channels`` (no data is loaded), converts epochs to
steps with ``--num_examples`` and ``train.data_fraction`` exactly as the
trainer and ``regan_tf.pruning.build_controller`` do, and prints forward and
per-iteration GFLOPs and projected run totals (``regan_tf.flops`` explains the
conventions). Image size, channels and N default to the dataset's own
bindings when the gin file sets them (``data.digits.image_size = 32``), and to
the sklearn digits (1,797 images) or CIFAR-10 (50,000) otherwise.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, Optional

from absl import app
from absl import flags

# regan_tf.train defines --gin_file and --gin_bindings (and registers the configurables);
# this tool reuses them, and its parse_gin, so a gin file reads the same here as in training.
from regan_tf import cli
from regan_tf import train as train_main

FLAGS = flags.FLAGS
flags.DEFINE_integer("image_size", None, "Image side; default: the dataset binding, else 32.")
flags.DEFINE_integer("channels", None, "Image channels; default: the dataset binding, else 3.")
flags.DEFINE_integer("num_examples", None,
                     "Dataset size N before train.data_fraction (for epochs -> steps); default "
                     "1797 for data.digits, else 50000 (CIFAR-10's training split).")
flags.DEFINE_string("json_out", None, "Also write the figures as JSON to this path.")

NOTE = ("Re-GAN's savings are counted on nonzero weights; dense kernels do not run faster on "
        "masked weights.")
_DIGITS_SIZE = 1797

_TRAIN_DEFAULTS = dict(z_dim=128, batch_size=64, n_critic=5, data_fraction=1.0,
                       train_steps=None, train_epochs=None, epoch_counting="images")
_REGAN_DEFAULTS = dict(sparsity=None, warmup=None, g=None, warmup_epochs=None, g_epochs=None,
                       dense_lr_factor=0.1, final_phase=None, prune_biases_and_norms=False,
                       exclude=())


def _query(name: str, default: Any) -> Any:
  import gin  # pylint: disable=g-import-not-at-top
  try:
    return gin.query_parameter(name)
  except ValueError:  # not bound: the function's default
    return default


def _selector(reference: Any) -> Optional[str]:
  return None if reference is None else getattr(reference, "selector", None)


def compute(image_size: Optional[int], channels: Optional[int],
            num_examples: Optional[int]) -> Dict[str, Any]:
  """Figures of the parsed gin configuration (gin must be parsed already)."""
  # pylint: disable=g-import-not-at-top
  from regan_tf import flops as flops_lib
  from regan_tf.data.subset import subset_size
  from regan_tf.pruning import ReganSchedule, prune_generator
  from regan_tf.pruning.controller import epochs_to_steps
  from regan_tf import spec as spec_lib
  train = {k: _query(f"train.{k}", v) for k, v in _TRAIN_DEFAULTS.items()}
  model_ref = _query("train.model", None)
  dataset = _selector(_query("train.dataset", None))
  if image_size is None:
    image_size = _query(f"{dataset}.image_size", None) if dataset else None
    image_size = 32 if image_size is None else image_size
  if channels is None:
    channels = _query(f"{dataset}.channels", None) if dataset else None
    if channels is None:
      channels = 1 if dataset == "data.digits" else 3
  if num_examples is None:
    num_examples = _DIGITS_SIZE if dataset == "data.digits" else 50000
  if num_examples < 1:
    raise ValueError(f"--num_examples={num_examples} must be >= 1 (the dataset size N).")
  n = subset_size(num_examples, train["data_fraction"])
  batch, n_critic = train["batch_size"], train["n_critic"]
  steps_per_epoch = spec_lib.steps_per_epoch(n, batch, n_critic, train["epoch_counting"])  # as the trainer
  if (train["train_steps"] is None) == (train["train_epochs"] is None):
    raise ValueError("the gin configuration must set exactly one of train.train_steps and "
                     f"train.train_epochs (got {train['train_steps']}, {train['train_epochs']}).")
  train_steps = (train["train_steps"] if train["train_steps"] is not None
                 else max(1, int(round(train["train_epochs"] * steps_per_epoch))))

  if model_ref is None:
    from regan_tf.models import dcgan  # the trainer's default model
    build = dcgan.build
  else:
    build = model_ref.scoped_configurable_fn
  gan = build(image_size=image_size, channels=channels, z_dim=train["z_dim"])
  generator, discriminator = gan.generator, gan.discriminator

  schedule = None
  pruned = None
  pruning_ref = _query("train.pruning", None)
  if pruning_ref is not None:
    if _selector(pruning_ref) != "regan":
      raise ValueError(f"train.pruning = @{_selector(pruning_ref)} is not @regan; this tool knows "
                       "Re-GAN's schedule only.")
    regan = {k: _query(f"regan.{k}", v) for k, v in _REGAN_DEFAULTS.items()}
    lengths = {}
    for name, minimum in (("warmup", 0), ("g", 1)):
      if regan[name] is not None:
        lengths[name] = regan[name]
      else:
        lengths[name] = epochs_to_steps(f"{name}_epochs", regan[f"{name}_epochs"],
                                         steps_per_epoch, minimum)
    schedule = ReganSchedule(warmup=lengths["warmup"], g=lengths["g"], sparsity=regan["sparsity"],
                             dense_lr_factor=regan["dense_lr_factor"],
                             final_phase=regan["final_phase"], total_steps=train_steps)
    generator = prune_generator(generator, prune_biases_and_norms=regan["prune_biases_and_norms"],
                                exclude=regan["exclude"])
    pruned = flops_lib.pruned_layer_names(generator)

  z_dim = train["z_dim"]
  f_g = flops_lib.forward_flops(generator, (z_dim,), batch_size=batch)
  f_d = flops_lib.forward_flops(discriminator, (image_size, image_size, channels), batch_size=batch)
  g_layers = flops_lib.layer_forward_flops(generator)
  run = flops_lib.schedule_flops(g_layers, f_d, batch, n_critic, train_steps, schedule, f_g=f_g,
                                 pruned_layers=pruned)
  return {
      "model": getattr(model_ref, "selector", "models.dcgan"),
      "image_size": image_size, "channels": channels, "z_dim": z_dim,
      "num_examples": num_examples, "train_examples": n, "batch_size": batch, "n_critic": n_critic,
      "steps_per_epoch": steps_per_epoch, "train_steps": train_steps,
      "schedule": None if schedule is None else schedule.get_config()["config"],
      "pruned_layers": list(pruned) if pruned is not None else [],
      "g_layer_flops": g_layers,
      **run,
      "note": NOTE,
  }


def _g(x: float) -> str:
  return f"{x / 1e9:,.4f}"


def format_table(r: Dict[str, Any]) -> str:
  """The printed report."""
  sched = r["schedule"]
  lines = [
      f"model {r['model']} at {r['image_size']}x{r['image_size']}x{r['channels']}, z_dim "
      f"{r['z_dim']}; batch {r['batch_size']}, n_critic {r['n_critic']}; "
      f"{r['train_examples']:,} training images (N={r['num_examples']:,}); "
      f"{r['steps_per_epoch']:.2f} G steps/epoch; {r['train_steps']:,} G steps",
      ("Re-GAN: dense (no schedule)" if sched is None else
       f"Re-GAN: warmup {sched['warmup']}, g {sched['g']}, sparsity {sched['sparsity']}, "
       f"final_phase {sched['final_phase']}; {r['sparse_steps']:,} of {r['train_steps']:,} "
       f"steps sparse; {len(r['pruned_layers'])} pruned layers"),
      "",
      f"{'quantity':<46}{'GFLOPs':>18}",
      f"{'G forward / image (dense)':<46}{_g(r['g_forward']):>18}",
      f"{'G forward / image (effective, sparse phase)':<46}{_g(r['g_forward_sparse']):>18}",
      f"{'D forward / image':<46}{_g(r['d_forward']):>18}",
      f"{'iteration, executed (dense or sparse)':<46}{_g(r['iteration_executed']):>18}",
      f"{'iteration, effective, dense phase':<46}{_g(r['iteration_executed']):>18}",
      f"{'iteration, effective, sparse phase':<46}{_g(r['iteration_effective_sparse']):>18}",
      f"{'run total, dense baseline (= executed)':<46}{_g(r['dense_total']):>18}"
      f"  ({r['dense_total'] / 1e15:,.2f} PFLOPs)",
      f"{'run total, Re-GAN effective':<46}{_g(r['regan_effective_total']):>18}"
      f"  ({r['regan_effective_total'] / 1e15:,.2f} PFLOPs)",
      f"{'savings (effective vs dense baseline)':<46}{r['savings_percent']:>17.2f}%",
      "",
      f"note: {r['note']}",
  ]
  return "\n".join(lines)


def main(argv) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  unused = train_main.training_only_flags_given()
  if unused:
    print(f"error: regan-flops does not use {', '.join(unused)} (regan-train's; nothing is trained or "
          "written but --json_out): drop them.", file=sys.stderr)
    return cli.EXIT_USER_ERROR
  if not FLAGS.gin_file:
    print("error: --gin_file is required, e.g. --gin_file=gin/sngan_cifar.gin.", file=sys.stderr)
    return 2
  for name in ("image_size", "channels"):
    value = getattr(FLAGS, name)
    if value is not None and value < 1:
      print(f"error: --{name}={value} must be >= 1.", file=sys.stderr)
      return 2
  if not FLAGS.verbose:
    cli.quiet_tensorflow()
  try:
    train_main.parse_gin(FLAGS.gin_file, FLAGS.gin_bindings)
  except train_main.ConfigError as e:
    print(f"error: invalid gin configuration: {e}", file=sys.stderr)
    return 2
  try:
    result = compute(FLAGS.image_size, FLAGS.channels, FLAGS.num_examples)
  except (ValueError, TypeError) as e:  # the configuration's values (a run length, a schedule): the user's to fix
    print(f"error: {e}", file=sys.stderr)
    return cli.EXIT_USER_ERROR
  print(format_table(result))
  if FLAGS.json_out:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.json_out)), exist_ok=True)
    with open(FLAGS.json_out, "w") as f:
      json.dump(result, f, indent=2)
    print(f"wrote {FLAGS.json_out}")
  return 0


def run() -> None:
  """Entry point of ``regan-flops`` (and ``python tools/flops.py``)."""
  cli.run_command(main, flag_modules=[__name__, "regan_tf.train"])


if __name__ == "__main__":
  run()
