"""The paper's tower-per-device placement gives the single-device model's outputs."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import alexnet_tf
from alexnet_tf.train import towers
from conftest import REPO_ROOT

SCRIPT = textwrap.dedent("""
    import json
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import alexnet_tf
    from alexnet_tf.train import towers

    model = alexnet_tf.create_model("paper", num_classes=10, image_size=67, width=0.25, seed=1)
    # Biases of 1 everywhere and small weights make ReLUs pass: perturb so that every
    # layer's output depends on its inputs.
    for w in model.weights:
        w.assign(w + tf.random.normal(w.shape, stddev=0.05, seed=2))
    images = tf.random.normal([4, 67, 67, 3], seed=3) * 50
    expected = model(images, training=False)
    forward = tf.function(lambda x: towers.two_tower_forward(model, x, ("/cpu:0", "/cpu:1")))
    got = forward(images)
    graph = forward.get_concrete_function(images).graph
    devices = sorted({op.device.split("device:")[-1] for op in graph.get_operations() if op.device})
    conv_devices = sorted(op.device.split("device:")[-1] for op in graph.get_operations()
                          if op.type == "Conv2D")
    print(json.dumps({"max_abs_diff": float(tf.reduce_max(tf.abs(got - expected))),
                      "scale": float(tf.reduce_max(tf.abs(expected))),
                      "devices": devices, "conv_devices": conv_devices}))
""")


@pytest.mark.slow
def test_two_towers_on_two_devices_equal_one_device(tmp_path):
    script = tmp_path / "towers.py"
    script.write_text(SCRIPT)
    result = subprocess.run([sys.executable, str(script)], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["scale"] > 1e-3
    assert out["max_abs_diff"] <= 1e-5 * max(1.0, out["scale"]), out
    assert out["devices"] == ["CPU:0", "CPU:1"]
    # Every conv layer (5) runs half on each device.
    assert out["conv_devices"].count("CPU:0") == 5 and out["conv_devices"].count("CPU:1") == 5


def test_tower_placement_needs_the_two_tower_model():
    with pytest.raises(ValueError, match="has no two towers"):
        towers.check_towerable(alexnet_tf.create_model("modern", 10, 63, 0.125))
    with pytest.raises(ValueError, match="has no two towers"):
        towers.check_towerable(alexnet_tf.create_model("paper", 10, 67, 0.125, groups=1))


@pytest.mark.slow
def test_training_with_tower_placement_learns(small_demo_dir, tmp_path, monkeypatch):
    # Both towers on the one CPU here: the code path of two devices, without a second one.
    from alexnet_tf.train import loop
    from test_train import _demo_config

    lines = []  # the loop's info lines, whatever absl's verbosity earlier tests left
    monkeypatch.setattr(loop.logging, "info", lambda message, *args: lines.append(
        message % args if args else message))
    config = _demo_config(small_demo_dir, total_epochs=3, tower_devices="/CPU:0,/CPU:0")
    metrics = loop.train_and_evaluate(config, str(tmp_path / "run"))
    assert metrics["top1_error"] < 0.85, metrics
    # The run says where the towers run.
    assert any("tower 1 on /CPU:0 and tower 2 on /CPU:0" in line for line in lines), lines[:3]


def test_tower_devices_are_validated():
    from alexnet_tf import config as config_lib

    config = config_lib.base_config()
    config.train.tower_devices = "/GPU:0"
    with pytest.raises(config_lib.ConfigError, match="expected two devices"):
        config_lib.validate(config)
    config.train.tower_devices = "/GPU:0,/GPU:1"
    config.model.variant = "modern"
    config.model.image_size = 224
    with pytest.raises(config_lib.ConfigError, match="unless model.variant='paper'"):
        config_lib.validate(config)


@pytest.mark.parametrize("devices, message", [
    ("/GPU:0,/GPU:1", r"names \['/GPU:0', '/GPU:1'\], which this process does not have"),
    ("/CPU:0,/CPU:7", r"names \['/CPU:7'\], which this process does not have"),
    ("/XPU:7,banana", "which is not a device name"),
])
def test_tower_devices_must_exist_when_the_task_is_built(devices, message):
    # Soft placement would run both towers on whatever exists, silently.
    from alexnet_tf import config as config_lib
    from alexnet_tf import task

    config = config_lib.base_config()
    config.train.tower_devices = devices
    with pytest.raises(config_lib.ConfigError, match=message):  # a user's error: one line
        task.ClassificationTask(config)
