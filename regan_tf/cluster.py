"""Training beyond one process: the worker's role, its share of the data, TPUs.

TensorFlow does the distributed work; this module only connects the trainer
to it:

- :func:`role_from_tf_config`: which worker this process is, read from
  ``TF_CONFIG`` (the JSON variable Kubeflow's TFJob, Vertex AI and a user's own
  shell set) *before* the strategy exists, so that only the chief takes the
  run directory's lock and writes its files (a bad ``TF_CONFIG`` is one line).
- :func:`multi_worker_strategy` / :func:`tpu_strategy`: the construction paths
  of ``tf.distribute.MultiWorkerMirroredStrategy`` (collective all-reduce over
  every worker's GPUs, or its CPU when it has none) and
  ``tf.distribute.TPUStrategy`` (through ``TPUClusterResolver``).
- :func:`distribute_pipeline`: each worker reads its own slice of every global
  batch of the deterministic data order (see ``regan_tf.data.pipeline``):
  global replica ``r`` gets rows ``[r * b, (r + 1) * b)`` of batch ``k``, the
  rows a one-process run with the same number of replicas gives it, and no row
  goes to two replicas (TensorFlow's rebatching and element sharding).
- :func:`check_agreement`: a collective check that every worker holds the same
  value (the restored step, a digest of Re-GAN's masks). The masks are a
  function of the weights, which the all-reduced updates keep identical on
  every worker, so they agree by construction; the check makes a broken
  set-up (a run directory that is not shared, a worker started from another
  checkpoint) fail with a message instead of training silently apart.

Hand-written here: only the role (TensorFlow's resolver offers no "is this
the chief" before the strategy exists), the agreement check and a TCP probe (regan_tf.netcheck) of
a ``grpc://`` TPU address (TensorFlow retries one where nothing listens
without end); transport,
all-reduce, data sharding, health checks and TPU set-up are TensorFlow's.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional, Sequence

from absl import logging

from regan_tf import netcheck
from regan_tf.compat import tf

__all__ = ["WorkerRole", "check_agreement", "distribute_pipeline", "mask_digest", "multi_worker_strategy",
           "role_from_tf_config", "tpu_strategy"]


@dataclasses.dataclass(frozen=True)
class WorkerRole:
  """This process's place in a cluster.

  Attributes:
    task_type: ``chief`` or ``worker`` (``worker`` for a one-process run).
    task_id: the index among tasks of that type.
    num_workers: all training tasks (chief and workers).
    is_chief: whether this process writes the run's files: the ``chief`` task,
      or worker 0 when the cluster has no ``chief`` entry (TensorFlow's rule).
  """
  task_type: str = "worker"
  task_id: int = 0
  num_workers: int = 1
  is_chief: bool = True

  def describe(self) -> str:
    return f"{self.task_type} {self.task_id} of {self.num_workers} workers" + (" (chief)" if self.is_chief else "")


SINGLE_PROCESS = WorkerRole()

_TF_CONFIG_HELP = ("set it as in README 'Multiple GPUs and machines', e.g. TF_CONFIG='{\"cluster\": {\"worker\": "
                   "[\"host1:12345\", \"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}'")


def role_from_tf_config(environ: Optional[dict] = None) -> WorkerRole:
  """Reads this process's role from ``TF_CONFIG`` (for ``train.strategy = 'multi_worker'``).

  Args:
    environ: the environment to read (default ``os.environ``).

  Raises:
    ValueError: ``TF_CONFIG`` missing, not JSON, or without this task in its
      cluster; the message shows a valid value.
  """
  environ = os.environ if environ is None else environ
  text = environ.get("TF_CONFIG", "")
  if not text.strip():
    raise ValueError("train.strategy = 'multi_worker' needs the TF_CONFIG environment variable on every worker; "
                     f"{_TF_CONFIG_HELP}. On one machine use train.strategy = 'mirrored'.")
  try:
    config = json.loads(text)
    cluster, task = config["cluster"], config["task"]
    task_type, task_id = str(task["type"]), int(task["index"])
  except (ValueError, KeyError, TypeError) as e:
    raise ValueError(f"TF_CONFIG is not valid ({type(e).__name__}: {e}); {_TF_CONFIG_HELP}.") from None
  trainers = {t: list(cluster.get(t) or []) for t in ("chief", "worker")}
  if task_type not in trainers or not 0 <= task_id < len(trainers[task_type]):
    raise ValueError(f"TF_CONFIG's task {task_type} {task_id} is not in its cluster "
                     f"({ {t: len(a) for t, a in trainers.items()} } chief/worker addresses); {_TF_CONFIG_HELP}.")
  num_workers = len(trainers["chief"]) + len(trainers["worker"])
  is_chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and not trainers["chief"])
  return WorkerRole(task_type=task_type, task_id=task_id, num_workers=num_workers, is_chief=is_chief)


def multi_worker_strategy() -> tf.distribute.Strategy:
  """``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``: all GPUs of every worker, or each worker's CPU.

  Must be created before TensorFlow runs its first op in the process (it
  starts the worker's gRPC server). ``CommunicationOptions`` are left to
  TensorFlow (NCCL between GPUs, ring all-reduce otherwise).
  """
  return tf.distribute.MultiWorkerMirroredStrategy()


def tpu_strategy(tpu: str) -> tf.distribute.Strategy:
  """``TPUStrategy`` on the TPU ``tpu`` (a Cloud TPU name, ``local`` on a TPU VM, or ``grpc://host:port``).

  Connects to the TPU cluster and initializes the TPU system, as TensorFlow's
  TPU guide does; every failure on the way (no TPU, unknown name, unreachable
  address) becomes one ``RuntimeError`` line naming ``train.tpu``.
  """
  if tpu.startswith("grpc://"):
    _check_listening(tpu)  # TensorFlow would retry an address where nothing listens, without end
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    if tpu not in ("local", ""):
      tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  except Exception as e:  # pylint: disable=broad-except  (any failure means: no usable TPU here)
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    raise RuntimeError(f"train.tpu = {tpu!r}: no TPU could be reached ({type(e).__name__}: {first}); "
                       "check the TPU name or grpc:// address, or use train.strategy = 'auto' on a machine "
                       "without a TPU.") from None


def _check_listening(address: str, timeout: float = 10.0) -> None:
  """Raises RuntimeError unless something accepts TCP connections at ``grpc://host:port``."""
  host, _, port = address[len("grpc://"):].rpartition(":")
  if not host or not port.isdigit():
    raise RuntimeError(f"train.tpu = {address!r} is not a grpc://host:port address; give e.g. "
                       "'grpc://10.0.0.2:8470', a TPU name, or 'local' on a TPU VM.")
  if netcheck.unreachable_hosts([(host, int(port))], timeout):
    raise RuntimeError(f"train.tpu = {address!r}: nothing accepts connections there within {timeout:g} s; check "
                       "the TPU's address and that it is running, or use train.strategy = 'auto' on a machine "
                       "without a TPU.")


# ----------------------------------------------------------------------------
# Data: each worker's share of the global batch
# ----------------------------------------------------------------------------


def distribute_pipeline(strategy: tf.distribute.Strategy, dataset: tf.data.Dataset, *, multi_worker: bool):
  """The distributed dataset the training step reads, from the global batches ``dataset`` yields.

  ``experimental_distribute_dataset`` cuts every global batch into
  per-replica batches in global replica order (replica ``r`` gets rows
  ``[r * b, (r + 1) * b)``); with several workers it then shards those by
  element, so each worker keeps only its own replicas' rows: the rows a
  one-process run with as many replicas gives them, none twice. The sharding
  policy is set to ``DATA`` explicitly (the ``AUTO`` default first looks for
  input files to split, which an in-memory pipeline has none of, and warns).
  Every worker builds the whole batch and keeps its slice: the images are in
  memory, and the batch's random flips are the same as in one process.
  """
  if multi_worker:
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)
  return strategy.experimental_distribute_dataset(dataset)


# ----------------------------------------------------------------------------
# Agreement between workers
# ----------------------------------------------------------------------------


def mask_digest(masks: Sequence[tf.Variable]) -> tf.Tensor:
  """int64 [2]: the number of kept (nonzero) mask entries and the sum of their flat positions.

  Two mask sets with the same digest keep the same number of entries at
  positions with the same sum; a change of which entries are kept changes it
  except by coincidence (enough for a consistency check, not a hash).
  """
  count = tf.constant(0, tf.int64)
  positions = tf.constant(0, tf.int64)
  offset = 0
  for mask in masks:
    kept = tf.where(tf.reshape(tf.convert_to_tensor(mask), [-1]) != 0)[:, 0]
    count += tf.size(kept, out_type=tf.int64)
    positions += tf.reduce_sum(kept + offset)
    offset += int(mask.shape.num_elements())
  return tf.stack([count, positions])


def check_agreement(strategy: tf.distribute.Strategy, what: str, value: tf.Tensor) -> None:
  """Raises if the workers of ``strategy`` do not all hold the same ``value`` (a collective: all must call it).

  Args:
    strategy: the run's strategy (a no-op with one replica).
    what: named in the error, e.g. ``'the restored step'``.
    value: this process's value (int64, any shape; every replica of the
      process contributes it).
  """
  if strategy.num_replicas_in_sync == 1:
    return
  value = tf.reshape(tf.cast(value, tf.int64), [1, -1])
  per_replica = strategy.experimental_distribute_values_from_function(lambda _: value)
  gathered = strategy.gather(per_replica, axis=0).numpy()  # [replicas, n] on every worker
  if (gathered != gathered[:1]).any():
    raise RuntimeError(f"The workers disagree on {what}: {gathered.tolist()} (one row per replica). Every "
                       "worker must read the same run directory (a path all machines share, e.g. on NFS) and run "
                       "the same configuration; stop all workers and restart them together.")
  logging.info("All %d replicas agree on %s (%s).", strategy.num_replicas_in_sync, what,
               ", ".join(str(int(v)) for v in gathered[0]))
