"""The run spec: grouping, every argument check, and failing before any data loads."""

import os

import pytest

from regan_tf import spec as spec_lib
from regan_tf import trainer


def test_from_arguments_groups_flat_names():
  spec = spec_lib.RunSpec.from_arguments(batch_size=32, r1_gamma=10.0, train_steps=7, diffaugment="color,cutout",
                                         seed=3, eval_every=5)
  assert spec.optimization.batch_size == 32
  assert spec.regularization.r1_gamma == 10.0
  assert spec.cadence.train_steps == 7 and spec.cadence.eval_every == 5
  assert spec.data.diffaugment == ("color", "cutout")
  assert spec.runtime.seed == 3
  # Every flat name belongs to exactly one group.
  names = spec_lib.RunSpec.argument_names()
  assert len(names) == len(set(names))


def test_every_train_setting_is_a_spec_setting():
  import inspect  # pylint: disable=g-import-not-at-top
  objects = {"workdir", "dataset", "model", "pruning", "growth", "regan_stage", "apa", "ema", "evaluation",
             "eval_dataset", "config_text", "allow_config_change"}
  settings = set(inspect.signature(trainer.train).parameters) - objects
  assert settings == set(spec_lib.RunSpec.argument_names())


def test_unknown_setting_lists_the_valid_ones():
  with pytest.raises(ValueError, match="no setting 'batchsize'.*batch_size"):
    spec_lib.RunSpec.from_arguments(batchsize=3, train_steps=1)


def test_lazy_regularization_corrections():
  reg = spec_lib.Regularization(r1_gamma=10.0, r1_every=16, pl_weight=2.0, pl_every=4)
  assert reg.d_lazy == pytest.approx(16 / 17) and reg.g_lazy == pytest.approx(4 / 5)
  assert reg.r1_step_weight == pytest.approx(80.0) and reg.pl_step_weight == pytest.approx(8.0)
  assert [reg.r1_at(s) for s in (0, 1, 16)] == [True, False, True]
  assert spec_lib.Regularization().d_lazy == 1.0 and not spec_lib.Regularization().r1_at(0)


def test_deprecated_mixed_precision_means_float16():
  assert spec_lib.Runtime(mixed_precision=True).precision == "mixed_float16"
  assert spec_lib.Runtime().precision == "float32"


def test_epochs_to_steps():
  assert spec_lib.Cadence(train_epochs=2.0).steps(15.625) == 31
  assert spec_lib.Cadence(train_epochs=0.01).steps(1.0) == 1
  assert spec_lib.Cadence(train_steps=9).steps(100.0) == 9


@pytest.mark.parametrize("num_examples, batch, n_critic", [(5000, 64, 5), (1000, 64, 1), (10000, 64, 5),
                                                          (5000, 50, 5), (4999, 7, 3)])
def test_loader_epoch_counting_is_the_reference_loops_g_steps(num_examples, batch, n_critic):
  # SNGAN/main.py:30-31, 81, 101 (Re-GAN at 785135c): a DataLoader without drop_last, a G step after the
  # D step of every batch i with i % n_critic == 0.
  batches = len(range(0, num_examples, batch))  # the last one partial
  g_steps = sum(1 for i in range(batches) if i % n_critic == 0)
  cadence = spec_lib.Cadence(train_epochs=1000, epoch_counting="loader")
  assert cadence.steps_per_epoch(num_examples, batch, n_critic) == g_steps
  assert cadence.steps(cadence.steps_per_epoch(num_examples, batch, n_critic)) == 1000 * g_steps
  images = spec_lib.Cadence(train_epochs=1000)
  assert images.steps_per_epoch(num_examples, batch, n_critic) == num_examples / (batch * n_critic)


def test_sngan_cifar_epoch_is_16_g_steps_under_loader_counting():
  # 10% CIFAR-10 at batch 64, n_critic 5: 79 batches (the last of 8 images), G steps at 0, 5, ..., 75.
  assert spec_lib.Cadence(train_steps=1, epoch_counting="loader").steps_per_epoch(5000, 64, 5) == 16


@pytest.mark.parametrize("kwargs, match", [
    (dict(train_steps=1, epoch_counting="batches"), "epoch_counting must be one of"),
    (dict(train_steps=1, adam_epsilon=0), "adam_epsilon"),
    (dict(train_steps=1, r1_on_augmented="yes"), "r1_on_augmented must be True or False"),
    (dict(train_steps=1, train_epochs=1.0), "exactly one of train_steps and train_epochs"),
    (dict(), "exactly one of train_steps and train_epochs"),
    (dict(train_steps=-1), "train_steps must be an integer >= 0"),
    (dict(train_steps=1, batch_size=0), "batch_size must be an integer >= 1"),
    (dict(train_steps=1, n_critic=0), "n_critic"),
    (dict(train_steps=1, g_lr=0.0), "g_lr must be > 0"),
    (dict(train_steps=1, beta2=1.0), r"beta2 \(Adam\) must be in \[0, 1\)"),
    (dict(train_steps=1, loss="hing"), "valid names: hinge"),
    (dict(train_steps=1, gp_weight=-1.0), "gp_weight must be >= 0"),
    (dict(train_steps=1, pl_every=0), "pl_every must be an integer >= 1"),
    (dict(train_steps=1, style_mixing=1.5), r"style_mixing is a probability in \[0, 1\]"),
    (dict(train_steps=1, log_every=0), "log_every must be > 0"),
    (dict(train_steps=1, eval_every=-1), "eval_every must be an integer >= 0"),
    (dict(train_steps=1, profile_steps=(3, 1)), "profile_steps must be"),
    (dict(train_steps=1, data_fraction=0.0), r"fraction must be in \(0, 1\]"),
    (dict(train_steps=1, subset_rule="firsts"), "rule must be one of"),
    (dict(train_steps=1, diffaugment="colour"), "unknown transform 'colour'"),
    (dict(train_steps=1, eval_reference="test"), "eval_reference must be 'full' or 'train'"),
    (dict(train_steps=1, strategy="parameter_server"), "strategy must be one of 'auto'"),
    (dict(train_steps=1, jit_compile="yes"), "jit_compile must be True, False or 'auto'"),
    (dict(train_steps=1, seed=-2), "seed must be an integer >= 0"),
    (dict(train_steps=1, precision="bfloat16"), "precision must be one of 'float32', 'mixed_bfloat16'"),
    (dict(train_steps=1, precision="mixed_bfloat16", mixed_precision=True), "contradicts"),
    (dict(train_steps=1, regan_stage=1), "regan_stage=1 needs a growing run"),
    (dict(train_steps=1, export_best=True), "export_best=True needs an evaluation"),
])
def test_bad_settings_name_the_fix(kwargs, match):
  with pytest.raises(ValueError, match=match):
    spec_lib.RunSpec.from_arguments(**kwargs)


def test_replica_checks():
  spec = spec_lib.RunSpec.from_arguments(train_steps=1, batch_size=6, pl_weight=2.0, pl_batch_shrink=4)
  spec.check_replicas(1)
  with pytest.raises(ValueError, match=r"batch_size \(6\) must be divisible by the number of replicas \(4\)"):
    spec.check_replicas(4)
  with pytest.raises(ValueError, match=r"pl_batch_shrink \(4\) leaves no latents of the per-replica batch \(3\)"):
    spec.check_replicas(2)


def _dataset_never_loaded():
  raise AssertionError("the dataset was loaded before a bad argument was reported")


@pytest.mark.parametrize("kwargs, match", [
    (dict(regan_stage=2), "needs a growing run"),
    (dict(pl_weight=2.0, pl_batch_shrink=64, batch_size=8), "pl_batch_shrink"),
    (dict(export_best=True), "export_best=True needs an evaluation"),
    (dict(subset_rule="stratfied"), "rule must be one of"),
])
def test_train_rejects_bad_arguments_before_loading_data(tmp_path, kwargs, match):
  # A bad argument that depends only on arguments is reported before the
  # dataset is loaded and before the run directory exists.
  workdir = str(tmp_path / "run")
  with pytest.raises(ValueError, match=match):
    trainer.train(workdir=workdir, dataset=_dataset_never_loaded, train_steps=1, **kwargs)
  assert not os.path.exists(workdir)
