"""``python tools/sample.py``: the same as the installed ``regan-sample`` command.

The code lives in :mod:`regan_tf.commands.sample` so that ``pip install`` provides it; this file keeps
the commands written against a checkout working.
"""

from regan_tf.commands.sample import run

if __name__ == "__main__":
  run()
