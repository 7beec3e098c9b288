"""The trainer end to end on tiny settings: resume, determinism, export, devices."""

from __future__ import annotations

import functools
import glob
import json
import os

import numpy as np
import pytest

from regan_tf import pruning
from regan_tf import trainer
from regan_tf.compat import tf

from conftest import load_export_in_fresh_process, run_two_replica_script, tiny_train_settings


def _train(workdir, **kwargs):
  # conftest's tiny run as it is: a 16x16 DCGAN, 4 steps, n_critic 2.
  return trainer.train(**tiny_train_settings(workdir, **kwargs))


def _summaries(workdir):
  """TensorBoard values of a run: {tag: {step: value}} (numeric scalars as floats, others raw)."""
  values = {}
  for path in glob.glob(os.path.join(str(workdir), "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        array = tf.make_ndarray(value.tensor) if value.HasField("tensor") else value.simple_value
        numeric = np.ndim(array) == 0 and np.issubdtype(np.asarray(array).dtype, np.number)
        values.setdefault(value.tag, {})[event.step] = float(array) if numeric else array
  return values


def _generator_weights(workdir):
  """The generator variables of the latest checkpoint in ``workdir``, by name."""
  reader = tf.train.load_checkpoint(os.path.join(str(workdir), "checkpoints"))
  names = [n for n in reader.get_variable_to_shape_map() if n.startswith("generator/")
           and "OPTIMIZER_SLOT" not in n and n.endswith(".ATTRIBUTES/VARIABLE_VALUE")]
  assert names
  return {n: reader.get_tensor(n) for n in names}


def test_resumed_run_equals_uninterrupted_run(tmp_path):
  straight = _train(tmp_path / "straight", train_steps=4)
  assert straight.step == 4

  first = _train(tmp_path / "resumed", train_steps=2)
  assert first.step == 2
  second = _train(tmp_path / "resumed", train_steps=4)
  assert second.step == 4

  a, b = _generator_weights(tmp_path / "straight"), _generator_weights(tmp_path / "resumed")
  assert a.keys() == b.keys()
  for name in a:
    np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)
  # And training did something: the weights moved from the step-2 checkpoint.
  reader = tf.train.load_checkpoint(os.path.join(str(tmp_path / "resumed"), "checkpoints", "ckpt-2"))
  moved = [not np.allclose(reader.get_tensor(n), a[n]) for n in a]
  assert any(moved)


def test_completed_run_is_not_retrained(tmp_path):
  _train(tmp_path, train_steps=2)
  before = _generator_weights(tmp_path)
  result = _train(tmp_path, train_steps=2)
  assert result.step == 2
  after = _generator_weights(tmp_path)
  for name in before:
    np.testing.assert_array_equal(before[name], after[name])


def test_workdir_contents(tmp_path):
  _train(tmp_path, train_steps=2, export=True, config_text="train.train_steps = 2\n")
  assert open(tmp_path / "operative_config.gin").read() == "train.train_steps = 2\n"
  assert glob.glob(str(tmp_path / "events.out.tfevents.*"))
  assert sorted(os.listdir(tmp_path / "samples")) == ["step_00000002.png"]
  assert os.path.exists(tmp_path / "export" / "saved_model.pb")
  assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p or ".old-" in p]
  tags = set(_summaries(tmp_path))
  assert {"loss/d_loss", "loss/g_loss", "discriminator/d_real", "learning_rate/g_lr",
          "speed/steps_per_sec", "samples/fixed_z"} <= tags


def test_rejects_batch_not_divisible_by_replicas(tmp_path):
  proc = run_two_replica_script(f"""
      try:
        trainer.train(workdir={str(tmp_path / 'w')!r}, **TWO_REPLICAS, batch_size=7, train_steps=2,
                      dataset=functools.partial(data.load_digits, image_size=16),
                      model=functools.partial(models.dcgan.build, g_base_channels=8, d_base_channels=8))
      except ValueError as e:
        print('ERR', e)
      """, timeout=120)
  assert "ERR batch_size (7) must be divisible by the number of replicas (2)" in proc.stdout, proc.stderr
  assert not os.path.exists(tmp_path / "w")


@pytest.mark.slow
def test_two_cpu_replicas_train_and_fall_back_from_xla(tmp_path):
  proc = run_two_replica_script(f"""
      r = trainer.train(**tiny_train_settings(
          {str(tmp_path)!r}, **TWO_REPLICAS, train_steps=3, jit_compile=True, checkpoint_every=3,
          export=True,
          pruning=functools.partial(pruning.build_controller, sparsity=0.5, warmup=1, g=2),
          dataset=functools.partial(data.load_digits, image_size=16),
          model=functools.partial(models.dcgan.build, g_base_channels=8, d_base_channels=8)))
      print('STEP', r.step, 'D_LOSS', r.metrics['d_loss'])
      """, timeout=240)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "STEP 3" in proc.stdout
  assert "MirroredStrategy with 2 replica(s)" in proc.stderr
  assert "running the steps without XLA" in proc.stderr
  assert "sparse phase 1: masked 50.0%" in proc.stderr
  meta = json.load(open(tmp_path / "export" / "regan_tf_export.json"))
  assert meta["sparsity"]["overall"] == pytest.approx(0.5, abs=0.01)


def test_make_strategy_rejects_unknown_kind():
  with pytest.raises(ValueError, match="strategy must be one of"):
    trainer.make_strategy("parameter_server")


def test_resolve_jit_compile_auto_is_off_on_cpu():
  assert trainer.resolve_jit_compile("auto", tf.distribute.get_strategy()) is False
  assert trainer.resolve_jit_compile(True, tf.distribute.get_strategy()) is True
  with pytest.raises(ValueError, match="jit_compile"):
    trainer.resolve_jit_compile("yes", tf.distribute.get_strategy())


# ----------------------------------------------------------------------------
# Re-GAN through the trainer
# ----------------------------------------------------------------------------


def _regan(**kwargs):
  settings = dict(sparsity=0.5, warmup=1, g=2)
  settings.update(kwargs)
  return functools.partial(pruning.build_controller, **settings)


def _masks(workdir, checkpoint=None):
  path = os.path.join(str(workdir), "checkpoints", checkpoint) if checkpoint else os.path.join(
      str(workdir), "checkpoints")
  reader = tf.train.load_checkpoint(path)
  names = [n for n in reader.get_variable_to_shape_map() if n.startswith("generator/")
           and "/mask/" in n and "OPTIMIZER_SLOT" not in n]
  assert names
  return {n: reader.get_tensor(n) for n in names}


@pytest.mark.parametrize("stop", [1, 2, 3, 4])
def test_regan_resume_across_phase_boundaries_equals_uninterrupted(tmp_path, stop):
  # warmup=1, g=2: step 0 warm-up, 1-2 sparse, 3-4 dense, 5 sparse. Stopping after `stop` steps lands at a
  # boundary (1, 3), inside a phase (2, 4); the resumed run must continue the same phase with the same masks.
  run = functools.partial(_train, checkpoint_every=1, keep_checkpoints=10, pruning=_regan())
  straight = run(tmp_path / "straight", train_steps=6)
  run(tmp_path / "resumed", train_steps=stop)
  run(tmp_path / "resumed", train_steps=6)
  assert straight.step == 6
  a, b = _generator_weights(tmp_path / "straight"), _generator_weights(tmp_path / "resumed")
  for name in a:
    np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)
  for step in range(1, 7):
    ma, mb = _masks(tmp_path / "straight", f"ckpt-{step}"), _masks(tmp_path / "resumed", f"ckpt-{step}")
    for name in ma:
      np.testing.assert_array_equal(ma[name], mb[name], err_msg=f"{name} at step {step}")


def test_regan_phases_in_checkpoints_and_tensorboard(tmp_path):
  _train(tmp_path, train_steps=6, checkpoint_every=1, keep_checkpoints=10, pruning=_regan(),
         g_lr=1e-3)
  expected_sparse = {1: False, 2: True, 3: True, 4: False, 5: False, 6: True}  # after step s-1 ran
  for step, sparse in expected_sparse.items():
    masks = _masks(tmp_path, f"ckpt-{step}")
    for name, mask in masks.items():
      zeros = int((mask == 0).sum())
      assert zeros == (mask.size // 2 if sparse else 0), (step, name, zeros)
  tags = _summaries(tmp_path)
  assert {"regan/phase", "regan/lr_factor", "regan/sparsity/overall", "regan/masked_weights"} <= set(tags)
  assert float(tags["regan/phase"][1]) == 1 and float(tags["regan/phase"][3]) == 2
  assert float(tags["learning_rate/g_lr"][4]) == pytest.approx(1e-4)  # step 3 ran dense at 0.1x
  assert float(tags["learning_rate/g_lr"][2]) == pytest.approx(1e-3)


def test_regan_discriminator_matches_dense_run_until_first_mask(tmp_path):
  # Only G is reconfigured: in warm-up a Re-GAN run is the dense run, D included.
  _train(tmp_path / "dense", train_steps=1, checkpoint_every=1)
  _train(tmp_path / "regan", train_steps=1, checkpoint_every=1, pruning=_regan(warmup=1))
  def d_weights(workdir):
    reader = tf.train.load_checkpoint(os.path.join(str(workdir), "checkpoints"))
    return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
            if n.startswith("discriminator/") and "OPTIMIZER_SLOT" not in n}
  a, b = d_weights(tmp_path / "dense"), d_weights(tmp_path / "regan")
  assert a.keys() == b.keys() and a
  for name in a:
    np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.mark.slow
def test_regan_export_ending_sparse_has_zeros_in_fresh_process(tmp_path):
  _train(tmp_path, train_steps=5, pruning=_regan(sparsity=0.3, warmup=1, g=2, final_phase="sparse"),
         export=True)
  meta = json.load(open(tmp_path / "export" / "regan_tf_export.json"))
  assert meta["method"] == "regan" and meta["sparsity"]["phase_at_export"] == 1
  loaded = load_export_in_fresh_process(str(tmp_path / "export"), np.zeros([2, 16], np.float32))
  kernels = {name: a for name, a in loaded.variables.items() if name.endswith("kernel:0")}
  assert len(kernels) == len(meta["sparsity"]["per_tensor"]) >= 3
  for name, a in kernels.items():
    assert int((a == 0).sum()) == int(np.floor(0.3 * a.size + 1e-6)), (name, int((a == 0).sum()), a.size)


@pytest.mark.parametrize("precision", [dict(mixed_precision=True), dict(precision="mixed_float16"),
                                       dict(precision="mixed_bfloat16")])
def test_mixed_precision_keeps_float32_outputs_and_restores_policy(tmp_path, precision):
  from regan_tf.compat import keras
  result = _train(tmp_path, train_steps=3, export=True, image_every=1, pruning=_regan(sparsity=0.3, warmup=1, g=5),
                  **precision)
  assert result.step == 3 and np.isfinite(result.metrics["d_loss"])
  assert keras.mixed_precision.global_policy().name == "float32"
  meta = json.load(open(tmp_path / "export" / "regan_tf_export.json"))
  assert meta["sparsity"]["phase_at_export"] == 1  # masks hold under the mixed policy too
  assert all(abs(fraction - 0.3) < 0.01 for fraction in meta["sparsity"]["per_tensor"].values())
  sampler = tf.saved_model.load(str(tmp_path / "export"))
  images = sampler.sample(tf.zeros([2, 16]))
  assert images.dtype == tf.float32


def test_impossible_sparsity_fails_before_writing(tmp_path):
  with pytest.raises(ValueError, match="sparsity"):
    _train(tmp_path / "run", pruning=_regan(sparsity=1.0))
  assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------
# Evaluation during training
# ----------------------------------------------------------------------------


def test_an_unloadable_evaluation_split_names_its_own_fixes_before_writing(tmp_path, cache_dir):
  # The configs' CIFAR-10 test split, not prepared and not downloadable (download=False: offline at once).
  pytest.importorskip("tensorflow_datasets")
  from regan_tf import data, metrics
  eval_dataset = functools.partial(data.load_tfds, "cifar10", split="test", data_dir=str(tmp_path / "tfds"),
                                   download=False)
  evaluation = functools.partial(metrics.build_evaluator, extractor="classifier", num_samples=64,
                                 batch_size=32, cache_dir=cache_dir)
  with pytest.raises(FileNotFoundError) as err:
    _train(tmp_path / "run", eval_every=2, evaluation=evaluation, eval_dataset=eval_dataset)
  message = str(err.value)
  assert message.startswith("the evaluation split (train.eval_dataset")
  assert "'cifar10' is not prepared" in message and str(tmp_path / "tfds") in message
  assert "train.eval_dataset = None" in message and "data.tfds.data_dir" in message
  assert "data.image_folder" not in message  # the training data's advice does not apply
  assert not (tmp_path / "run").exists()


def test_evaluation_logs_fid_keeps_best_and_can_export_it(tmp_path, cache_dir):
  from regan_tf import metrics
  evaluation = functools.partial(metrics.build_evaluator, extractor="classifier", num_samples=64,
                                 batch_size=32, cache_dir=cache_dir)
  result = _train(tmp_path, train_steps=4, eval_every=2, evaluation=evaluation, export=True,
                  export_best=True)
  assert np.isfinite(result.metrics["fid_digits_classifier"])
  scalars = {tag: v for tag, v in _summaries(tmp_path).items() if tag.startswith("eval/")}
  fids = scalars["eval/fid_digits_classifier"]
  assert sorted(fids) == [2, 4] and {"eval/is_digits_classifier", "eval/kid_digits_classifier"} <= set(scalars)
  best_step = min(fids, key=fids.get)
  best = tf.train.latest_checkpoint(str(tmp_path / "best"))
  assert best.endswith(f"ckpt-{best_step}")
  meta = json.load(open(tmp_path / "export" / "regan_tf_export.json"))
  assert meta["step"] == best_step


def test_export_best_needs_evaluation(tmp_path):
  with pytest.raises(ValueError, match="export_best"):
    _train(tmp_path / "run", export_best=True)
  assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------
# DiffAugment, APA and generator EMA through the trainer
# ----------------------------------------------------------------------------


def test_augmentations_and_ema_train_resume_and_export(tmp_path):
  from regan_tf import augment, ema
  settings = dict(diffaugment="color,translation,cutout",
                  apa=functools.partial(augment.AdaptivePseudoAugment, target=0.6, interval=1,
                                        speed_kimg=0.01),
                  ema=functools.partial(ema.GeneratorEMA, decay=0.9),
                  pruning=_regan(), checkpoint_every=1, keep_checkpoints=10)
  # warmup=1, g=2: step 0 warm-up, steps 1-2 sparse; the run ends (and exports) in the sparse phase.
  straight = _train(tmp_path / "straight", train_steps=3, export=True, **settings)
  assert 0.0 <= straight.metrics["apa/p"] <= 1.0
  _train(tmp_path / "resumed", train_steps=2, **settings)
  _train(tmp_path / "resumed", train_steps=3, **settings)
  a, b = _generator_weights(tmp_path / "straight"), _generator_weights(tmp_path / "resumed")
  for name in a:
    np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)
  reader = tf.train.load_checkpoint(str(tmp_path / "straight" / "checkpoints"))
  names = reader.get_variable_to_shape_map()
  assert any(n.startswith("generator_ema/") for n in names) and "apa_p/.ATTRIBUTES/VARIABLE_VALUE" in names
  meta = json.load(open(tmp_path / "straight" / "export" / "regan_tf_export.json"))
  assert meta["ema"] and meta["apa"] and meta["diffaugment"] == "color,translation,cutout"
  # The export is the EMA generator, stripped, with the Re-GAN zeros of the last sparse phase.
  assert meta["sparsity"]["overall"] == pytest.approx(0.5, abs=0.01)


def test_unknown_diffaugment_policy_fails_before_writing(tmp_path):
  with pytest.raises(ValueError, match="colour"):
    _train(tmp_path / "run", diffaugment="colour")
  assert not (tmp_path / "run").exists()


def test_profiler_trace_is_written_for_the_chosen_steps(tmp_path):
  _train(tmp_path, train_steps=3, profile_steps=(1, 2))
  traces = glob.glob(str(tmp_path / "plugins" / "profile" / "*" / "*.xplane.pb"))
  assert len(traces) == 1 and os.path.getsize(traces[0]) > 0


def test_bad_profile_steps(tmp_path):
  with pytest.raises(ValueError, match="profile_steps"):
    _train(tmp_path / "run", profile_steps=(3, 1))


def test_flops_are_logged_and_written(tmp_path):
  _train(tmp_path, train_steps=4, pruning=_regan())
  report = json.load(open(tmp_path / "flops.json"))
  assert report["g_forward_per_image"] > 0 and report["d_forward_per_image"] > 0
  assert report["projected"]["regan_effective_total"] < report["projected"]["executed_total"]
  values = _summaries(tmp_path)
  executed, effective = values["flops/executed_total"], values["flops/effective_total"]
  # Cumulative and exact: 4 equal iterations executed; steps 1-2 were sparse, so effective is lower.
  assert executed[4] == pytest.approx(4 * executed[1])
  assert effective[1] == pytest.approx(executed[1]) and effective[4] < executed[4]
