"""What a run leaves besides checkpoints: metrics.jsonl, log.txt, the best FID in the export's metadata."""

import json

from regan_tf import data as data_lib
from regan_tf import metrics as metrics_lib
from regan_tf import models as models_lib
from regan_tf import trainer
from regan_tf.export import METADATA_FILE


def _tiny_model(**kwargs):
  return models_lib.dcgan.build(g_base_channels=4, d_base_channels=4, **kwargs)


def _digits():
  return data_lib.load_digits(image_size=16, channels=1)


def test_metrics_jsonl_log_txt_and_best_fid(tmp_path, cache_dir):
  def evaluation(data, z_dim):
    return metrics_lib.build_evaluator(data=data, z_dim=z_dim, extractor="classifier", num_samples=64,
                                       cache_dir=cache_dir)

  workdir = tmp_path / "run"
  kwargs = dict(workdir=str(workdir), dataset=_digits, model=_tiny_model, z_dim=8, batch_size=8, n_critic=1,
                log_every=2, image_every=100, checkpoint_every=100, evaluation=evaluation, eval_every=3)
  trainer.train(train_steps=6, **kwargs)
  rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  logs = [r for r in rows if r["kind"] == "log"]
  evals = [r for r in rows if r["kind"] == "eval"]
  assert [r["step"] for r in logs] == [2, 4, 6] and [r["step"] for r in evals] == [3, 6]
  assert all({"d_loss", "g_loss", "g_lr", "images_per_sec", "time"} <= set(r) for r in logs)
  fid_name = next(k for k in evals[0] if k.startswith("fid_"))
  best = min(evals, key=lambda r: r[fid_name])
  meta = json.load(open(workdir / "export" / METADATA_FILE))
  assert meta["best_fid"] == best[fid_name] and meta["best_fid_step"] == best["step"]

  text = open(workdir / "log.txt").read()
  assert "New run in" in text and "step 6/6" in text
  # A resume appends to both files.
  trainer.train(train_steps=8, **kwargs)
  assert "Resuming the run in" in open(workdir / "log.txt").read()
  rows = [json.loads(line) for line in open(workdir / "metrics.jsonl")]
  assert [r["step"] for r in rows if r["kind"] == "log"] == [2, 4, 6, 8]
