"""Distribution: TF_CONFIG validation, one MirroredStrategy step on two logical CPUs equals
one step on one device, and a two-worker MultiWorkerMirroredStrategy run on loopback."""

import json
import os
import re
import socket
import subprocess
import sys
import textwrap

import pytest

from alexnet_tf.train import distribute
from conftest import REPO_ROOT

GOOD = {"cluster": {"worker": ["localhost:1111", "localhost:2222"]},
        "task": {"type": "worker", "index": 1}}


def test_tf_config_unset_means_single_process():
    assert distribute.parse_tf_config("") is None


def test_valid_tf_config_parses():
    assert distribute.parse_tf_config(json.dumps(GOOD)) == GOOD


@pytest.mark.parametrize("text,message", [
    ("{not json", "TF_CONFIG is not valid JSON"),
    (json.dumps({"task": {"type": "worker", "index": 0}}), "TF_CONFIG has no 'cluster' object"),
    (json.dumps({"cluster": {"worker": "localhost:1"}, "task": {"type": "worker", "index": 0}}),
     r"cluster\['worker'\] is 'localhost:1'; expected a non-empty list of 'host:port'"),
    (json.dumps({"cluster": {"worker": ["localhost"]}, "task": {"type": "worker", "index": 0}}),
     "expected a non-empty list of 'host:port' strings"),
    (json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}),
     r"task index is 2; expected 0..1"),
    (json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}),
     "TF_CONFIG task is"),
    (json.dumps({"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}),
     "parameter-server training is not supported"),
])
def test_malformed_tf_config_is_named(text, message):
    with pytest.raises(distribute.ClusterConfigError, match=message):
        distribute.parse_tf_config(text)


def test_binary_reports_a_malformed_tf_config_before_writing(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_CONFIG="{broken")
    result = subprocess.run([sys.executable, "-m", "alexnet_tf.train", "--config=configs/demo.py",
                             f"--workdir={tmp_path / 'run'}"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "TF_CONFIG is not valid JSON" in result.stderr
    assert not (tmp_path / "run").exists()


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from alexnet_tf import config as config_lib
    from alexnet_tf import models, task
    from alexnet_tf.train import optim

    config = config_lib.base_config()
    config.model.num_classes = 10
    config.model.image_size = 67
    config.model.width = 0.125
    config.model.dropout_rate = 0.0  # dropout masks differ per replica; the rest must not
    config.data.mean_rgb = (0.0, 0.0, 0.0)
    config.train.global_batch_size = 8
    rng = np.random.default_rng(0)
    images = rng.normal(size=(8, 67, 67, 3)).astype(np.float32)
    labels = rng.integers(0, 10, 8).astype(np.int32)

    def one_step(strategy):
        with strategy.scope():
            model = models.model_from_config(config)
            optimizer = optim.create_optimizer(config.train, 10, 8)
            optimizer.build(model.trainable_variables)
        step = task.ClassificationTask(config, strategy).train_step(model, optimizer)
        dataset = tf.data.Dataset.from_tensors((images, labels))
        for batch in strategy.experimental_distribute_dataset(dataset):
            sums = step(batch)
        return model.get_weights(), {k: float(v) for k, v in sums.items()}

    single, single_sums = one_step(tf.distribute.get_strategy())
    mirrored_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored_strategy.num_replicas_in_sync == 2
    mirrored, mirrored_sums = one_step(mirrored_strategy)
    diffs = [float(np.abs(a - b).max() / (np.abs(a).max() + 1e-12)) for a, b in zip(single, mirrored)]
    config.train.jit_compile = True  # XLA over several CPU devices of one process: refused
    try:
        one_step(mirrored_strategy)
        refused = None
    except ValueError as error:
        refused = str(error)
    print(json.dumps({"max_relative_diff": max(diffs), "single": single_sums,
                      "mirrored": mirrored_sums, "xla_refused": refused}))
""")


@pytest.mark.slow
def test_mirrored_step_on_two_cpus_equals_one_device_step(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, str(script)], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["max_relative_diff"] < 1e-5, out
    for key in ("loss", "top1", "count"):
        assert out["single"][key] == pytest.approx(out["mirrored"][key], rel=1e-5)
    assert out["single"]["count"] == 8
    assert "cannot run data-parallel over the 2 CPU devices" in (out["xla_refused"] or ""), out


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_finish_and_agree_on_the_weights(small_demo_dir, tmp_path):
    workers = [f"localhost:{p}" for p in _free_ports(2)]
    workdir = tmp_path / "run"
    command = [sys.executable, "-m", "alexnet_tf.train", "--config=configs/demo.py",
               f"--workdir={workdir}", f"--config.data.data_dir={small_demo_dir}",
               "--config.data.demo_train_per_class=60", "--config.data.demo_val_per_class=20",
               "--config.train.global_batch_size=16", "--config.train.total_epochs=1",
               "--config.train.steps_per_epoch=4", "--config.train.schedule=constant",
               "--config.train.warmup_epochs=0", "--config.train.checkpoint_every_steps=2",
               "--config.model.dropout_rate=0.0"]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_CONFIG=json.dumps(tf_config))
        processes.append(subprocess.Popen(command, cwd=REPO_ROOT, env=env, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outputs = []
    for process in processes:
        out, _ = process.communicate(timeout=420)
        outputs.append(out)
        assert process.returncode == 0, out[-3000:]
    checksums = [re.search(r"weights checksum (\S+)\.$", out, re.M) for out in outputs]
    assert all(checksums), outputs[0][-2000:]
    assert checksums[0].group(1) == checksums[1].group(1)
    assert all(re.search(r"Strategy (MultiWorkerMirrored|CollectiveAllReduce)Strategy with 2 "
                         r"replica\(s\)", out) for out in outputs)
    # Only the chief wrote the run's files; the other worker's scratch saves are gone.
    assert (workdir / "metrics.json").exists() and (workdir / "config.json").exists()
    assert tf_latest(workdir / "checkpoints").endswith("ckpt-4")
    assert not [p for p in (workdir / "checkpoints").iterdir() if p.name.startswith(".worker")]


def tf_latest(directory):
    import tensorflow as tf

    return tf.train.latest_checkpoint(str(directory))
