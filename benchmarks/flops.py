"""FLOPs per image of a model: analytical from its layer shapes, and TF's own count.

    python tools/benchmark.py --benchmark=model --variant=paper   # the "FLOPs per image" line

The `model` benchmark turns training images/s into GFLOP/s (and a fraction of the
matmul peak) with `model_flops`; `profile` gives each layer's training GFLOP per
image beside its time. `profiler_flops` is the cross-check by TF's profiler.
"""

from __future__ import annotations

import re

import keras
import tensorflow as tf


def layer_flops(model: keras.Model) -> list[dict]:
    """Multiply-adds per image of every convolution and dense layer, from its shapes.

    A convolution does ``H_out * W_out * filters * kh * kw * (C_in / groups)``
    multiply-adds, a dense layer ``inputs * units``. ``input_grad`` is False for the
    first such layer: its input is the image, whose gradient training never computes.
    """
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin_per_group, filters = layer.kernel.shape
            _, height, width, _ = layer.output.shape
            macs = height * width * filters * kh * kw * cin_per_group
            kind = "conv"
        elif isinstance(layer, keras.layers.Dense):
            inputs, units = layer.kernel.shape
            macs = inputs * units
            kind = "dense"
        else:
            continue
        rows.append({"layer": layer.name, "kind": kind, "macs": int(macs),
                     "input_grad": bool(rows)})
    return rows


def model_flops(model: keras.Model) -> dict:
    """FLOPs per image (1 multiply-add = 2 FLOPs) of inference and of one training step.

    Training = forward + the weight gradient (as many multiply-adds as the forward of
    each layer) + the input gradient (the same again, except for the first layer).
    For the paper's network at 227x227 that is 0.7244 G multiply-adds forward,
    1.449 GFLOP forward and 4.135 GFLOP per trained image (3x forward would be 4.346;
    conv1's input gradient is the difference). Bias, ReLU, LRN, pooling and the
    optimizer update are not counted (under 0.5% together).
    """
    rows = layer_flops(model)
    forward = sum(r["macs"] for r in rows)
    backward = sum(r["macs"] * (2 if r["input_grad"] else 1) for r in rows)
    return {"forward_macs": forward, "forward_flops": 2 * forward,
            "training_flops": 2 * (forward + backward), "training_flops_3x": 6 * forward,
            "layers": [dict(r, training_flops=2 * r["macs"] * (3 if r["input_grad"] else 2))
                       for r in rows]}


def profiler_flops(model: keras.Model) -> dict | None:
    """TF's own count of the forward FLOPs of one image (tf.compat.v1 profiler on the
    traced graph), as a cross-check of `model_flops`; None if the profiler fails."""
    try:
        from tensorflow.python.profiler import model_analyzer, option_builder
    except ImportError:
        return None
    size = model.input_shape[1:]
    fn = tf.function(lambda x: model(x, training=False))
    try:
        graph = fn.get_concrete_function(tf.TensorSpec([1, *size], tf.float32)).graph
        options = option_builder.ProfileOptionBuilder(
            option_builder.ProfileOptionBuilder.float_operation()).with_empty_output().build()
        logger = tf.get_logger()
        level = logger.level
        logger.setLevel("ERROR")  # the v1 API logs a deprecation notice
        try:
            result = model_analyzer.profile(graph, options=options)
        finally:
            logger.setLevel(level)
    except Exception:  # noqa: BLE001 - a cross-check only
        return None
    conv_matmul = 0

    def walk(node):
        nonlocal conv_matmul
        for child in node.children:
            last = child.name.rsplit("/", 1)[-1]
            if re.match(r"(convolution|Conv2D|MatMul)", last):
                conv_matmul += child.total_float_ops
            else:
                walk(child)

    walk(result)
    return {"total_flops": int(result.total_float_ops), "conv_matmul_flops": int(conv_matmul)}
