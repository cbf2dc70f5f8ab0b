"""Forward+backward time of one grouped convolution per compute path (issue 2).

    python tools/benchmark.py --benchmark=grouped_conv [--repeats=5]
    TF_ENABLE_ONEDNN_OPTS=0 python tools/benchmark.py --benchmark=grouped_conv

The paths are this package's "split" and "native" `GroupedConv2D` and Keras'
`Conv2D(groups=...)`, on the paper's conv2 (27x27x96 -> 256, 5x5, 2 groups, batch 32).
docs/BENCHMARKS.md tells how these figures, with the whole training step's, chose
what `GroupedConv2D(implementation="auto")` runs.
"""

from __future__ import annotations

import statistics
import time

import keras
import tensorflow as tf

from alexnet_tf.layers import GroupedConv2D

from benchmarks.machine import cpu_flags


def median_seconds(fn, repeats: int, warmup: int = 2) -> float:
    """Median wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def grouped_conv(batch=32, size=27, channels=96, filters=256, kernel=5, groups=2,
                 repeats=5) -> dict:
    """Forward+backward seconds of one grouped convolution, per compute path.

    The default shape is the paper's conv2 (Sec. 3.5) at batch 32. Paths: this
    package's "split" and "native" `GroupedConv2D`, and Keras' `Conv2D(groups=...)`.
    """
    x = tf.random.normal([batch, size, size, channels], seed=0)
    layers = {
        "split": GroupedConv2D(filters, kernel, groups=groups, padding="same",
                               implementation="split"),
        "native": GroupedConv2D(filters, kernel, groups=groups, padding="same",
                                implementation="native"),
        "keras_conv2d_groups": keras.layers.Conv2D(filters, kernel, groups=groups,
                                                   padding="same"),
    }
    results = {}
    for name, layer in layers.items():
        layer.build(x.shape)

        @tf.function
        def step(inputs, layer=layer):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                loss = tf.reduce_sum(tf.square(layer(inputs)))
            return tape.gradient(loss, [inputs] + layer.trainable_variables)

        try:
            results[name] = median_seconds(lambda: [g.numpy() for g in step(x)], repeats)
        except tf.errors.OpError as error:  # e.g. TF without oneDNN has no grouped CPU kernel
            lines = [line.strip() for line in error.message.splitlines()
                     if line.strip() and not line.strip().startswith("[[")]
            results[name] = f"fails: {lines[-1][:160]}"
    return {"benchmark": "grouped_conv", "shape": [batch, size, size, channels],
            "kernel": kernel, "filters": filters, "groups": groups, "repeats": repeats,
            "cpu_flags": cpu_flags(), "tensorflow": tf.__version__, "seconds": results}
