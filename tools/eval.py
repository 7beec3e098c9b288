"""``python tools/eval.py``: the same as the installed ``regan-eval`` command.

The code lives in :mod:`regan_tf.commands.eval` so that ``pip install`` provides it; this file keeps
the commands written against a checkout working.
"""

from regan_tf.commands.eval import run

if __name__ == "__main__":
  run()
