r"""Dense baseline vs Re-GAN on the same data, budget, evaluation and seeds.

    regan-compare --gin_file=gin/regan_digits.gin --out=runs/compare/digits \
        --seeds=0,1,2 [--gin_bindings="train.data_fraction = 0.1"] \
        [--arm="dense: train.pruning = None" --arm="regan:"]

For every seed, then every arm, trains ``python -m regan_tf.train`` with the
gin files, the common ``--gin_bindings``, the arm's bindings and
``train.seed = <seed>``, in ``<out>/<arm>/seed<k>`` (``tensorboard --logdir
<out>`` shows them all). The configuration must evaluate (``train.evaluation``);
both arms use its extractor, sample count and ``eval_every``. When all runs have
finished it prints a table (final and best FID per run, mean +- std over seeds,
wall time, executed and effective training FLOPs) and writes
``<out>/summary.md``, ``<out>/summary.json`` and ``<out>/fid.png`` (mean FID
against steps with a +-1 std band).

Rerunning the same command resumes: finished runs are skipped, an interrupted
one continues from its last checkpoint. ``--report_only`` rebuilds the table and
plot from finished runs (``--report_dir`` puts them elsewhere, e.g. for a subset
of the arms). Arms default to ``dense: train.pruning = None`` and
``regan:`` (the gin file as written, which must configure Re-GAN); any other
``--arm="name: binding; binding"`` makes a sweep (``regan_g100: regan.g = 100``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import List, Sequence

from absl import app
from absl import flags
import gin

# Defines --gin_file / --gin_bindings and registers the configurables (parse_gin checks configs).
from regan_tf import cli
from regan_tf import compare
from regan_tf import train as train_main

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Parent directory of the comparison's runs, records and summary.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (train.seed); the same for every arm.")
flags.DEFINE_multi_string("arm", None, "'name: binding; binding' (repeatable). Default: "
                          "'dense: train.pruning = None' and 'regan:'.")
flags.DEFINE_string("metric", None, "FID tag to compare (eval/fid_...); default: the run's one FID.")
flags.DEFINE_string("title", None, "Plot title; default: the gin file names and bindings.")
flags.DEFINE_bool("report_only", False, "Do not train; summarize the finished runs in --out.")
flags.DEFINE_string("report_dir", None, "Where summary.md/.json and fid.png go; default: --out. (A report of "
                    "a subset of the arms, e.g. without a sweep's extra arms, can go elsewhere.)")


def _train_command(gin_files: Sequence[str], bindings: Sequence[str], workdir: str) -> List[str]:
  return ([sys.executable, "-m", "regan_tf.train"]
          + [f"--gin_file={os.path.abspath(p)}" for p in gin_files]
          + [f"--gin_bindings={b}" for b in bindings] + [f"--workdir={os.path.abspath(workdir)}"])


def _check_config(gin_files: Sequence[str], bindings: Sequence[str], arm: compare.Arm) -> None:
  """Parses one arm's configuration here, so a typo fails before any training."""
  try:
    train_main.parse_gin(gin_files, bindings)
    if gin.query_parameter("train.evaluation") is None:
      raise train_main.ConfigError("train.evaluation is None: a comparison needs FID; set "
                                   "train.evaluation = @evaluation.")
    try:
      pruning = gin.query_parameter("train.pruning")
    except ValueError:
      pruning = None
    if arm.name != "dense" and pruning is None:
      print(f"warning: arm {arm.name!r} trains without Re-GAN (train.pruning = None).", file=sys.stderr)
  except ValueError as e:
    if "train.evaluation" in str(e):
      raise train_main.ConfigError("the configuration does not set train.evaluation; a comparison "
                                   "needs FID (train.evaluation = @evaluation).") from e
    raise
  finally:
    gin.clear_config()


def _run(record: compare.RunRecord, out: str) -> None:
  log_path = os.path.join(out, "logs", compare.run_name(record.arm, record.seed) + ".log")
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  attempt = {"start": time.time()}
  record.attempts.append(attempt)
  record.save(out)
  env = dict(os.environ)
  with open(log_path, "a") as log:
    log.write(f"\n=== attempt {len(record.attempts)}: {' '.join(record.command)}\n")
    log.flush()
    try:
      rc = subprocess.call(record.command, stdout=log, stderr=subprocess.STDOUT, env=env)
    finally:
      attempt["end"] = time.time()
      record.save(out)
  if rc != 0:
    with open(log_path) as f:
      tail = "".join(f.readlines()[-15:])
    raise RuntimeError(f"{compare.run_name(record.arm, record.seed)} failed (exit {rc}); log {log_path}:\n"
                       f"{tail}\nFix the cause and rerun the same command to resume.")
  record.done = True
  record.save(out)


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  unused = train_main.training_only_flags_given()
  if unused:
    print(f"error: regan-compare does not use {', '.join(unused)} (regan-train's); each run goes to "
          "<out>/<arm>/seed<k> under --out: drop them.", file=sys.stderr)
    return cli.EXIT_USER_ERROR
  if not FLAGS.out:
    print("error: --out is required (the comparison's parent directory; rerun with the same one to "
          "resume).", file=sys.stderr)
    return 2
  if not FLAGS.gin_file:
    print("error: --gin_file is required (the base configuration, e.g. gin/regan_digits.gin).",
          file=sys.stderr)
    return 2
  try:
    seeds = [int(s) for s in FLAGS.seeds]
    arms = [compare.parse_arm(a) for a in FLAGS.arm] if FLAGS.arm else list(compare.DEFAULT_ARMS)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if len({a.name for a in arms}) != len(arms) or len(set(seeds)) != len(seeds):
    print("error: arm names and seeds must be unique.", file=sys.stderr)
    return 2
  out = FLAGS.out
  if not FLAGS.verbose:
    cli.quiet_tensorflow()

  if not FLAGS.report_only:
    try:
      for arm in arms:
        _check_config(FLAGS.gin_file, list(FLAGS.gin_bindings) + list(arm.bindings), arm)
    except train_main.ConfigError as e:
      print(f"error: invalid gin configuration: {e}", file=sys.stderr)
      return 2
    plan = []
    for seed in seeds:
      for arm in arms:
        bindings = list(FLAGS.gin_bindings) + list(arm.bindings) + [f"train.seed = {seed}"]
        command = _train_command(FLAGS.gin_file, bindings, compare.run_workdir(out, arm.name, seed))
        record = compare.RunRecord.load(out, arm.name, seed)
        if record is not None and record.command[1:] != command[1:]:
          print(f"error: {compare.RunRecord.path(out, arm.name, seed)} was made by another command:\n"
                f"  {' '.join(record.command[1:])}\nnow:\n  {' '.join(command[1:])}\n"
                f"Use the same flags to resume, or another --out.", file=sys.stderr)
          return 2
        plan.append(record or compare.RunRecord(arm=arm.name, seed=seed, command=command))
    todo = [r for r in plan if not r.done]
    print(f"{len(plan)} runs ({len(arms)} arms x {len(seeds)} seeds) in {out}: "
          f"{len(plan) - len(todo)} finished, {len(todo)} to run.", flush=True)
    for i, record in enumerate(todo):
      name = compare.run_name(record.arm, record.seed)
      resumed = " (resuming)" if record.attempts else ""
      print(f"[{i + 1}/{len(todo)}] {name}{resumed} ...", flush=True)
      try:
        _run(record, out)
      except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
      print(f"[{i + 1}/{len(todo)}] {name} done in {record.wall_seconds / 60:.1f} min.", flush=True)

  try:
    results = [compare.load_result(out, arm.name, seed, FLAGS.metric) for seed in seeds for arm in arms]
  except (ValueError, OSError) as e:
    if FLAGS.report_only:  # runs missing or unfinished in --out: the user's input, and training them is the fix
      print(f"error: {e} --report_only summarizes finished runs; rerun without it to train (or resume) them, "
            f"or check --out, --seeds and --arm.", file=sys.stderr)
      return cli.EXIT_USER_ERROR
    print(f"error: {e}", file=sys.stderr)
    return 1
  summaries = compare.summarize(results)
  metric = compare.fid_tag(compare.read_scalars(compare.run_workdir(out, arms[0].name, seeds[0]),
                                                prefix="eval/"), FLAGS.metric)[len("eval/"):]
  title = FLAGS.title or " ".join([*(os.path.basename(p) for p in FLAGS.gin_file), *FLAGS.gin_bindings])
  table = compare.format_table(summaries, metric)
  lines = [f"# {title}", "", table, ""]
  baseline = arms[0].name
  diffs = {}
  for s in summaries[1:]:
    d = compare.difference(summaries, baseline, s.arm)
    diffs[s.arm] = d
    se = {k: compare.format_se(v) for k, v in d.items() if k.endswith("_se")}
    lines.append(f"{s.arm} - {baseline}: final {d['final']:+.2f} (standard error {se['final_se']}; "
                 f"{se['final_paired_se']} paired by seed), best {d['best']:+.2f} ({se['best_se']}; "
                 f"{se['best_paired_se']} paired).")
  text = "\n".join(lines) + "\n"
  print(text)
  report = FLAGS.report_dir or out
  os.makedirs(report, exist_ok=True)
  with open(os.path.join(report, "summary.md"), "w") as f:
    f.write(text)
  with open(os.path.join(report, "summary.json"), "w") as f:
    json.dump(dict(title=title, metric=metric, gin_files=list(FLAGS.gin_file),
                   gin_bindings=list(FLAGS.gin_bindings), differences_vs=baseline, differences=diffs,
                   arms=[dict(vars(s), bindings=list(a.bindings)) for s, a in zip(summaries, arms)]),
              f, indent=2)
  compare.plot_curves(summaries, os.path.join(report, "fid.png"), title=title, metric=metric)
  print(f"Wrote {os.path.join(report, 'summary.md')}, summary.json and fid.png.")
  return 0


def run() -> None:
  """Entry point of ``regan-compare`` (and ``python tools/compare.py``)."""
  cli.run_command(main, flag_modules=[__name__, "regan_tf.train"])


if __name__ == "__main__":
  run()
