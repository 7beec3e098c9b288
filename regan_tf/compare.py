"""Dense baseline vs Re-GAN over several seeds: run bookkeeping, results and plots.

``regan-compare`` (regan_tf.commands.compare, or ``python tools/compare.py``) is the command line. This module holds the parts that do
not launch processes, so they can be tested on their own:

* ``Arm``: a named set of gin bindings applied on top of a base configuration
  (``dense: train.pruning = None``; ``regan:`` with no extra bindings).
* ``RunRecord``: what the tool knows about one (arm, seed) run: the exact
  command, its attempts (a resumed run has several) and whether it finished.
  It lives in ``<out>/records/<arm>_seed<k>.json`` and is written atomically.
* ``read_scalars``: a run's TensorBoard scalars. Where a killed run was resumed
  and a step was logged twice, the later write wins.
* ``summarize`` / ``format_table`` / ``plot_curves``: per-seed final and best
  FID, mean and sample standard deviation over seeds, wall time and FLOPs.

Every arm is scored with the same rule: "final" is the FID at the last
evaluation (the last step), "best" is the lowest FID over the evaluations of a
run; neither arm gets a checkpoint choice the other does not.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os
import re
import textwrap
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

_ARM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclasses.dataclass(frozen=True)
class Arm:
  """One method in a comparison: a name and the gin bindings that make it."""
  name: str
  bindings: Tuple[str, ...] = ()


def parse_arm(spec: str) -> Arm:
  """Parses ``"name: binding; binding"`` (bindings optional) into an ``Arm``.

  >>> parse_arm("dense: train.pruning = None")
  Arm(name='dense', bindings=('train.pruning = None',))
  """
  name, _, rest = spec.partition(":")
  name = name.strip()
  if not _ARM_NAME.match(name):
    raise ValueError(f"Arm {spec!r}: the name before ':' must be letters, digits, '_', '.' or '-' "
                     f"(it names run directories), e.g. 'dense: train.pruning = None'.")
  bindings = tuple(b.strip() for b in rest.split(";") if b.strip())
  return Arm(name, bindings)


DEFAULT_ARMS = (Arm("dense", ("train.pruning = None",)), Arm("regan", ()))


def run_name(arm: str, seed: int) -> str:
  return f"{arm}_seed{seed}"


def run_workdir(out: str, arm: str, seed: int) -> str:
  """Where the run of ``arm`` with ``seed`` trains: ``<out>/<arm>/seed<k>``."""
  return os.path.join(out, arm, f"seed{seed}")


@dataclasses.dataclass
class RunRecord:
  """The tool's record of one run (JSON in ``<out>/records``)."""
  arm: str
  seed: int
  command: List[str]
  attempts: List[Dict[str, float]] = dataclasses.field(default_factory=list)
  done: bool = False

  @property
  def wall_seconds(self) -> float:
    """Wall time over all attempts, process start-up and evaluation included."""
    return float(sum(a["end"] - a["start"] for a in self.attempts if "end" in a))

  @staticmethod
  def path(out: str, arm: str, seed: int) -> str:
    return os.path.join(out, "records", run_name(arm, seed) + ".json")

  def save(self, out: str) -> None:
    path = self.path(out, self.arm, self.seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      json.dump(dataclasses.asdict(self), f, indent=2)
    os.replace(tmp, path)

  @classmethod
  def load(cls, out: str, arm: str, seed: int) -> Optional["RunRecord"]:
    path = cls.path(out, arm, seed)
    if not os.path.exists(path):
      return None
    with open(path) as f:
      return cls(**json.load(f))


def read_scalars(workdir: str, prefix: str = "") -> Dict[str, Dict[int, float]]:
  """TensorBoard scalars under ``workdir`` (its own event files, not subfolders).

  Returns ``{tag: {step: value}}`` for tags starting with ``prefix``. Files are
  read in the order written, so after a resume a repeated step keeps its last
  value.
  """
  from regan_tf.compat import tf  # pylint: disable=g-import-not-at-top
  out: Dict[str, Dict[int, float]] = {}
  events = []
  for path in glob.glob(os.path.join(workdir, "events.out.tfevents.*")):
    for raw in tf.data.TFRecordDataset(path):
      event = tf.compat.v1.Event.FromString(raw.numpy())
      for value in event.summary.value:
        if value.tag.startswith(prefix):
          if value.HasField("tensor"):
            number = float(tf.make_ndarray(value.tensor))
          else:
            number = float(value.simple_value)
          events.append((event.wall_time, value.tag, int(event.step), number))
  for _, tag, step, number in sorted(events, key=lambda e: e[0]):
    out.setdefault(tag, {})[step] = number
  return out


def fid_tag(scalars: Mapping[str, Mapping[int, float]], metric: Optional[str] = None) -> str:
  """The FID tag to compare: ``eval/<metric>``, or the one ``eval/fid_*`` tag present."""
  if metric:
    tag = metric if metric.startswith("eval/") else f"eval/{metric}"
    if tag not in scalars:
      raise ValueError(f"No {tag!r} in the run's TensorBoard events (have: {sorted(scalars)}).")
    return tag
  tags = sorted(t for t in scalars if t.startswith("eval/fid_"))
  if len(tags) != 1:
    raise ValueError(f"Expected one eval/fid_* tag, found {tags}: the configuration must enable "
                     f"train.evaluation (or pass --metric).")
  return tags[0]


@dataclasses.dataclass
class RunResult:
  """One finished run's numbers."""
  arm: str
  seed: int
  fid: Dict[int, float]          # evaluation step -> FID
  wall_seconds: float
  executed_flops: float
  effective_flops: float
  phases: Dict[int, int] = dataclasses.field(default_factory=dict)  # step -> Re-GAN phase (1 = sparse)
  # step -> largest predicted class share (labelled extractors only): a collapsed
  # checkpoint can have a good FID under a weak extractor (issue 23).
  top_share: Dict[int, float] = dataclasses.field(default_factory=dict)

  @property
  def final_fid(self) -> float:
    return self.fid[max(self.fid)]

  @property
  def best_fid(self) -> float:
    return min(self.fid.values())

  @property
  def best_step(self) -> int:
    return min(self.fid, key=lambda s: (self.fid[s], s))


def load_result(out: str, arm: str, seed: int, metric: Optional[str] = None) -> RunResult:
  """Reads a finished run's FID history, wall time and FLOPs."""
  workdir = run_workdir(out, arm, seed)
  record = RunRecord.load(out, arm, seed)
  if record is None or not record.done:
    raise ValueError(f"Run {run_name(arm, seed)} in {workdir} has not finished.")
  scalars = read_scalars(workdir, prefix="eval/")
  tag = fid_tag(scalars, metric)
  phases = read_scalars(workdir, prefix="regan/phase").get("regan/phase", {})
  top_share = scalars.get("eval/top_class_share_" + tag[len("eval/fid_"):], {}) \
      if tag.startswith("eval/fid_") else {}
  with open(os.path.join(workdir, "flops.json")) as f:
    projected = json.load(f)["projected"]
  return RunResult(arm=arm, seed=seed, fid=dict(sorted(scalars[tag].items())),
                   wall_seconds=record.wall_seconds, executed_flops=float(projected["executed_total"]),
                   effective_flops=float(projected["regan_effective_total"]),
                   phases={step: int(p) for step, p in sorted(phases.items())},
                   top_share=dict(sorted(top_share.items())))


def _mean_std(values: Sequence[float]) -> Tuple[float, float]:
  """Mean and sample standard deviation (ddof=1; NaN for one value, where it is undefined)."""
  arr = np.asarray(values, dtype=np.float64)
  return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else math.nan


@dataclasses.dataclass
class ArmSummary:
  """An arm over its seeds."""
  arm: str
  seeds: List[int]
  final: List[float]
  best: List[float]
  best_steps: List[int]
  steps: List[int]                  # evaluation steps common to every seed
  curve_mean: List[float]
  curve_std: List[float]
  wall_seconds: List[float]
  executed_flops: float
  effective_flops: float
  sparse_spans: List[Tuple[int, int]] = dataclasses.field(default_factory=list)
  # Largest predicted class share at each run's best and final step (NaN: not recorded).
  best_top_share: List[float] = dataclasses.field(default_factory=list)
  final_top_share: List[float] = dataclasses.field(default_factory=list)

  @property
  def final_mean_std(self) -> Tuple[float, float]:
    return _mean_std(self.final)

  @property
  def best_mean_std(self) -> Tuple[float, float]:
    return _mean_std(self.best)


def summarize(results: Sequence[RunResult]) -> List[ArmSummary]:
  """Groups runs by arm (in first-seen order) and aggregates over seeds."""
  arms: Dict[str, List[RunResult]] = {}
  for r in results:
    arms.setdefault(r.arm, []).append(r)
  summaries = []
  for arm, runs in arms.items():
    runs = sorted(runs, key=lambda r: r.seed)
    steps = sorted(set.intersection(*(set(r.fid) for r in runs)))
    curves = np.array([[r.fid[s] for s in steps] for r in runs], dtype=np.float64)
    std = curves.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros(len(steps))
    summaries.append(ArmSummary(
        arm=arm, seeds=[r.seed for r in runs], final=[r.final_fid for r in runs],
        best=[r.best_fid for r in runs], best_steps=[r.best_step for r in runs], steps=steps,
        curve_mean=curves.mean(axis=0).tolist(), curve_std=std.tolist(),
        wall_seconds=[r.wall_seconds for r in runs],
        executed_flops=float(np.mean([r.executed_flops for r in runs])),
        effective_flops=float(np.mean([r.effective_flops for r in runs])),
        sparse_spans=sparse_spans(runs[0].phases, end=max(runs[0].fid)),
        best_top_share=[r.top_share.get(r.best_step, math.nan) for r in runs],
        final_top_share=[r.top_share.get(max(r.fid), math.nan) for r in runs]))
  return summaries


_SPARSE = 1  # regan_tf.pruning.Phase.SPARSE, as TensorBoard's regan/phase records it


def sparse_spans(phases: Mapping[int, int], end: int) -> List[Tuple[int, int]]:
  """[start, stop) step ranges of sparse phases from ``{step: phase}`` records.

  The records are phase changes and periodic logs of the current phase; runs of
  sparse records merge into one span, which ends at the next non-sparse record
  (or ``end``).
  """
  records = sorted(phases.items())
  spans: List[Tuple[int, int]] = []
  start = None
  for step, phase in records:
    if phase == _SPARSE and start is None:
      start = step
    elif phase != _SPARSE and start is not None:
      spans.append((start, step))
      start = None
  if start is not None:
    spans.append((start, end))
  return spans


def _pm(mean_std: Tuple[float, float]) -> str:
  if not math.isfinite(mean_std[1]):
    return f"{mean_std[0]:.2f} (one seed)"
  return f"{mean_std[0]:.2f} ± {mean_std[1]:.2f}"


def format_se(se: float) -> str:
  """A standard error for the report; "n/a" where one seed leaves it undefined."""
  return f"{se:.2f}" if math.isfinite(se) else "n/a"


def _percent(share: float) -> str:
  return f"{100 * share:.0f}%" if math.isfinite(share) else "n/a"


def format_table(summaries: Sequence[ArmSummary], metric: str = "FID") -> str:
  """A Markdown table: one row per arm, then one row per run.

  When the runs recorded the largest predicted class share (labelled
  extractors), a last column gives it at the best and at the final step.
  """
  shares = any(math.isfinite(v) for s in summaries for v in s.best_top_share + s.final_top_share)
  extra_head, extra_rule = (" largest class at best / final |", "---|") if shares else ("", "")
  lines = [f"| arm | seeds | final {metric} | best {metric} (step) | wall time / run | "
           f"executed TFLOP | effective TFLOP |{extra_head}",
           "|---|---|---|---|---|---|---|" + extra_rule]
  for s in summaries:
    lines.append(
        f"| **{s.arm}** | {len(s.seeds)} | **{_pm(s.final_mean_std)}** | **{_pm(s.best_mean_std)}** | "
        f"{np.mean(s.wall_seconds) / 60:.1f} min | {s.executed_flops / 1e12:.3g} | "
        f"{s.effective_flops / 1e12:.3g} |" + (" |" if shares else ""))
  for s in summaries:
    best_shares = s.best_top_share or [math.nan] * len(s.seeds)
    final_shares = s.final_top_share or [math.nan] * len(s.seeds)
    for seed, final, best, step, wall, b_share, f_share in zip(
        s.seeds, s.final, s.best, s.best_steps, s.wall_seconds, best_shares, final_shares):
      extra = f" {_percent(b_share)} / {_percent(f_share)} |" if shares else ""
      lines.append(f"| {s.arm} seed {seed} | 1 | {final:.2f} | {best:.2f} ({step}) | {wall / 60:.1f} min | "
                   f"| |{extra}")
  return "\n".join(lines)


def difference(summaries: Sequence[ArmSummary], baseline: str, other: str) -> Dict[str, float]:
  """``other - baseline`` in mean final and best FID, with two standard errors.

  ``<key>_se``: the unpaired standard error of the difference of means,
  sqrt(s_a^2/n_a + s_b^2/n_b). ``<key>_paired_se``: the standard error of the
  mean per-seed difference (std(ddof=1)/sqrt(n)), over the seeds both arms ran;
  arms trained with the same seed share data order and initialization, so this
  one removes the spread they have in common. A gap well inside the standard
  error is not evidence either way.
  """
  by_name = {s.arm: s for s in summaries}
  a, b = by_name[baseline], by_name[other]
  out: Dict[str, float] = {}
  for key in ("final", "best"):
    va, vb = getattr(a, key), getattr(b, key)
    (ma, sa), (mb, sb) = _mean_std(va), _mean_std(vb)
    out[key] = mb - ma
    out[f"{key}_se"] = math.sqrt(sa ** 2 / len(va) + sb ** 2 / len(vb))
    pa, pb = dict(zip(a.seeds, va)), dict(zip(b.seeds, vb))
    paired = [pb[seed] - pa[seed] for seed in a.seeds if seed in pb]
    out[f"{key}_paired_se"] = _mean_std(paired)[1] / math.sqrt(len(paired)) if paired else math.nan
  return out


def plot_curves(summaries: Sequence[ArmSummary], path: str, title: str = "", metric: str = "FID") -> None:
  """Writes a PNG: mean FID against steps per arm, with a +-1 std band over seeds."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
  shaded = [s for s in summaries if s.sparse_spans]
  if len(shaded) == 1:  # one Re-GAN schedule: show where its sparse phases were
    for i, (start, stop) in enumerate(shaded[0].sparse_spans):
      ax.axvspan(start, stop, color="0.5", alpha=0.12, linewidth=0,
                 label=f"{shaded[0].arm}: sparse phases" if i == 0 else None)
  for s in summaries:
    steps = np.asarray(s.steps)
    mean, std = np.asarray(s.curve_mean), np.asarray(s.curve_std)
    line, = ax.plot(steps, mean, marker="o", markersize=3, label=f"{s.arm} (n={len(s.seeds)})")
    ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
  values = [v for s in summaries for v in s.curve_mean if v > 0]
  if values and max(values) / min(values) > 5:  # early FIDs would flatten the part that matters
    ax.set_yscale("log")
  ax.set_xlabel("generator step")
  ax.set_ylabel(f"{metric} (lower is better)")
  if title:
    ax.set_title(textwrap.fill(title, 90), fontsize=8)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp.png"
  fig.savefig(tmp)
  plt.close(fig)
  os.replace(tmp, path)
