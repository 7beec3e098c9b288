"""``python tools/compare.py``: the same as the installed ``regan-compare`` command.

The code lives in :mod:`regan_tf.commands.compare` so that ``pip install`` provides it; this file keeps
the commands written against a checkout working.
"""

from regan_tf.commands.compare import run

if __name__ == "__main__":
  run()
