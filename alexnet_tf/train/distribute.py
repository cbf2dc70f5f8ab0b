"""The one place that turns devices and TF_CONFIG into a `tf.distribute` strategy.

* ``TF_CONFIG`` naming more than one task: `tf.distribute.MultiWorkerMirroredStrategy`
  (one process per machine; every worker runs the same command). The chief (task
  "chief", or "worker" 0 when there is none) writes checkpoints, summaries and the
  config; the other workers save into a scratch directory that is deleted again,
  because saving is collective.
* Several visible GPUs: `tf.distribute.MirroredStrategy` over all of them.
* Otherwise the default (one-device) strategy, so a CPU run has no all-reduce at all.
"""

from __future__ import annotations

import json
import os
import random

import tensorflow as tf
from absl import logging

from alexnet_tf.errors import UserError


class ClusterConfigError(UserError, ValueError):
    """TF_CONFIG is malformed."""


def parse_tf_config(text: str | None = None) -> dict | None:
    """The validated TF_CONFIG (from the environment by default), or None if unset.

    Raises ClusterConfigError naming what is wrong and what was expected.
    """
    text = os.environ.get("TF_CONFIG", "") if text is None else text
    if not text.strip():
        return None
    expected = ('expected JSON like {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}')
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ClusterConfigError(f"TF_CONFIG is not valid JSON ({error}); {expected}.") from None
    if not isinstance(value, dict) or not isinstance(value.get("cluster"), dict):
        raise ClusterConfigError(f"TF_CONFIG has no 'cluster' object: {text!r}; {expected}.")
    cluster, task = value["cluster"], value.get("task")
    for job, addresses in cluster.items():
        if job not in ("chief", "worker", "evaluator", "ps"):
            raise ClusterConfigError(f"TF_CONFIG cluster job {job!r} is unknown; expected "
                                     f"'chief' and/or 'worker'.")
        if job == "ps":
            raise ClusterConfigError("TF_CONFIG names 'ps' tasks: parameter-server training is "
                                     "not supported; use 'chief'/'worker' tasks.")
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and ":" in a for a in addresses)):
            raise ClusterConfigError(f"TF_CONFIG cluster[{job!r}] is {addresses!r}; expected a "
                                     f"non-empty list of 'host:port' strings.")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise ClusterConfigError(f"TF_CONFIG task is {task!r}; expected "
                                 f"{{'type': one of {sorted(cluster)}, 'index': N}}.")
    index = task.get("index")
    if not isinstance(index, int) or not 0 <= index < len(cluster[task["type"]]):
        raise ClusterConfigError(f"TF_CONFIG task index is {index!r}; expected 0.."
                                 f"{len(cluster[task['type']]) - 1} for job {task['type']!r}.")
    return value


def create_strategy() -> tf.distribute.Strategy:
    """The strategy for this process: multi-worker, multi-GPU or one device."""
    tf_config = parse_tf_config()
    num_tasks = sum(len(a) for j, a in (tf_config or {}).get("cluster", {}).items()
                    if j in ("chief", "worker"))
    if num_tasks > 1:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif len(tf.config.list_logical_devices("GPU")) > 1:
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()
    logging.info("Strategy %s with %d replica(s) in sync.", type(strategy).__name__,
                 strategy.num_replicas_in_sync)
    return strategy


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files (always, outside multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def write_dir(directory: str, strategy: tf.distribute.Strategy) -> str:
    """Where this process saves: ``directory`` on the chief, a per-task scratch
    directory elsewhere (multi-worker saving is collective; see `cleanup_write_dir`)."""
    if is_chief(strategy):
        return directory
    resolver = strategy.cluster_resolver
    return os.path.join(directory, f".worker_{resolver.task_type}_{resolver.task_id}")


def cleanup_write_dir(directory: str, strategy: tf.distribute.Strategy) -> None:
    if not is_chief(strategy):
        tf.io.gfile.rmtree(write_dir(directory, strategy))


def agreed_number(strategy: tf.distribute.Strategy) -> int:
    """A random number in [0, 2**31) that every training worker of ``strategy`` gets
    alike: drawn by each, kept from replica 0 (on the chief) and summed over the
    replicas, which give 0 (a collective under MultiWorkerMirroredStrategy). Names a
    training start's tf.data service job (`alexnet_tf.data.service.job_name`)."""
    drawn = random.SystemRandom().getrandbits(31)

    def replica_fn():
        first = tf.equal(tf.distribute.get_replica_context().replica_id_in_sync_group, 0)
        return tf.where(first, tf.constant(drawn, tf.int64), tf.constant(0, tf.int64))

    return int(strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_fn), axis=None))
