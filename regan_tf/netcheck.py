"""A fast "can we reach these hosts?" probe, for failing early when offline.

TFDS downloads retry for minutes and TF-Hub loads hang without internet; the
data and metrics code call :func:`unreachable_hosts` first so that an offline
machine gets a clear error in seconds instead.
"""

from __future__ import annotations

import concurrent.futures
import socket
from typing import List, Sequence, Tuple


def _can_connect(host: str, port: int, timeout: float) -> bool:
  try:
    socket.create_connection((host, port), timeout=timeout).close()
    return True
  except OSError:
    return False


def unreachable_hosts(hosts: Sequence[Tuple[str, int]], timeout: float) -> List[str]:
  """Returns ``"host:port"`` of each host that accepts no TCP connection in ``timeout`` s.

  DNS look-ups ignore socket timeouts, so each probe runs in a thread that is
  abandoned (not joined) when the deadline passes; a stuck look-up finishes in
  the background.
  """
  pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(hosts)))
  futures = {pool.submit(_can_connect, h, p, timeout): (h, p) for h, p in hosts}
  done, _ = concurrent.futures.wait(futures, timeout=timeout + 0.5)
  pool.shutdown(wait=False)
  return [f"{h}:{p}" for f, (h, p) in futures.items() if f not in done or not f.result()]
