"""The command-line programs pip installs (``regan-sample``, ``regan-eval``, ``regan-compare``, ``regan-flops``,
``regan-fid-stats``; ``regan-train`` is :mod:`regan_tf.train`). Each module defines its absl flags and a ``run()``
entry point; ``tools/*.py`` in a checkout are thin wrappers around them."""

from absl import flags

from regan_tf import sampling as _sampling


def define_export_flags(module_name: str) -> None:
  """Defines ``--export_dir`` and ``--which``, the export a command reads (regan-sample, regan-eval).

  ``module_name`` (the command's ``__name__``) owns the flags, so its ``--help`` lists them.
  """
  flags.DEFINE_string("export_dir", None, "A run folder (the training --workdir; its export/ is used, or best/export "
                      "with --which=best) or an export folder (workdir/export).", module_name=module_name)
  flags.DEFINE_enum("which", "export", list(_sampling.WHICH),
                    "For a run folder: 'export' (what training exported) or 'best' (the best-FID checkpoint's "
                    "export, best/export).", module_name=module_name)


def export_from_flags() -> str:
  """The export folder ``--export_dir`` and ``--which`` name (:func:`regan_tf.sampling.resolve_export`).

  Raises:
    ValueError: one line naming both flags and the fix; no TensorFlow is loaded.
  """
  export_dir, which = flags.FLAGS.export_dir, flags.FLAGS.which
  try:
    return _sampling.resolve_export(export_dir or "", which)
  except ValueError as e:
    raise ValueError(f"--export_dir={export_dir!r}, --which={which}: {e}") from e
