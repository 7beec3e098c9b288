"""``python tools/fid_stats.py``: the same as the installed ``regan-fid-stats`` command.

The code lives in :mod:`regan_tf.commands.fid_stats` so that ``pip install`` provides it; this file keeps
the commands written against a checkout working.
"""

from regan_tf.commands.fid_stats import run

if __name__ == "__main__":
  run()
