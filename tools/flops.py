"""``python tools/flops.py``: the same as the installed ``regan-flops`` command.

The code lives in :mod:`regan_tf.commands.flops` so that ``pip install`` provides it; this file keeps
the commands written against a checkout working.
"""

from regan_tf.commands.flops import run

if __name__ == "__main__":
  run()
