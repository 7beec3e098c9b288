"""The command-line programs pip installs (``regan-sample``, ``regan-eval``, ``regan-compare``, ``regan-flops``,
``regan-fid-stats``; ``regan-train`` is :mod:`regan_tf.train`). Each module defines its absl flags and a ``run()``
entry point; ``tools/*.py`` in a checkout are thin wrappers around them."""
