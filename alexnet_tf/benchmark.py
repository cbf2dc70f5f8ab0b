"""Measurements behind tools/benchmark.py and docs/BENCHMARKS.md.

Every figure is the median of several timed repetitions after warm-up, printed with
the machine's CPU flags, because the machines these run on are shared and noisy.
Whatever is compared is measured in the same run and *interleaved*: each round times
every contender once (the matrix-multiply peak, Keras, PyTorch; or the plain and the
project's input pipeline), so a burst of load from another job hits all of them
alike, and the CPU time other processes used during the run is reported beside the
figures (`LoadMeter`).

Benchmarks:

* `grouped_conv`: forward+backward of the paper's conv2 per compute path (issue 2).
* `model`: training images/s (forward, backward, optimizer update: the training
  loop's own `make_train_step`), inference images/s and batch-1 latency of a variant;
  its FLOPs per image (`model_flops`, analytical, cross-checked by TF's profiler); the
  measured FP32 matmul peak and the fraction of it the training step reaches; and the
  same network in PyTorch (`torch_model`, run in a worker process) when torch imports.
* `profile`: a TF profiler trace of the training step summarised per op, per op type
  and per layer: where the time goes.
* `input`: images/s of a plain `tf.data` paper pipeline (the baseline a user would
  write) and of this package's `pipeline.make_dataset`, per source (500x375 JPEGs,
  JPEGs stored at shorter side 256, TFRecords of those), on images it generates.
"""

from __future__ import annotations

import bisect
import contextlib
import importlib.util
import io
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf.layers import GroupedConv2D

# --------------------------------------------------------------------------- machine


def cpu_flags() -> str:
    """The SIMD flags that decide CPU kernel speed (avx2, avx512f, ...), from /proc/cpuinfo."""
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "fma")
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return platform.processor() or "unknown"
    return " ".join(flag for flag in wanted if flag in flags) or "none of " + ",".join(wanted)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name")), platform.processor())
    except OSError:
        return platform.processor() or "unknown"


def usable_cores() -> int:
    """Cores this process may run on (taskset/affinity aware; TF sizes its pools so)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _package_version(name: str) -> str | None:
    try:
        from importlib import metadata
        return metadata.version(name)
    except Exception:  # noqa: BLE001 - not installed, or no metadata
        return None


def torch_available() -> bool:
    """Whether the PyTorch peer can run (torch is installed); torch is not imported here."""
    return importlib.util.find_spec("torch") is not None


def configure_threads(inter_op: int = 0, intra_op: int = 0) -> None:
    """TF's thread pools (0 keeps TF's default: one thread per usable core). Must run
    before TF executes its first op."""
    if inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    if intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)


def _gpu_memory_growth() -> None:
    # TF takes all GPU memory at start by default; the PyTorch peer's process needs some.
    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(RuntimeError, ValueError):  # already initialised
            tf.config.experimental.set_memory_growth(gpu, True)


def machine_info() -> dict:
    """CPU, cores, versions and the thread settings that decide the figures."""
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {
        "cpu_model": _cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "torch": _package_version("torch"),
        "gpus": gpus,
        "tf_inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads()
        or f"default ({usable_cores()})",
        "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads()
        or f"default ({usable_cores()})",
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (oneDNN on, x86)"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
    }


def _proc_stat_jiffies():
    """(busy, steal) jiffies of all CPUs since boot, or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq, steal


def _process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


class LoadMeter:
    """How busy the machine was with *other* work while a benchmark ran.

    ``other_cores``: CPU time used by processes other than this one (and the worker
    processes registered with `watch`) divided by the wall time, i.e. how many cores
    other jobs took on average; ``steal_cores``: the same for time the hypervisor gave
    to other machines. Figures measured with other_cores near 0 are the clean ones.
    """

    def __init__(self):
        self._pids = {os.getpid()}
        self._start = self._end = None

    def watch(self, pid: int) -> None:
        self._pids.add(pid)
        if self._start is not None:
            self._start["own"][pid] = _process_cpu_seconds(pid)

    def _sample(self):
        children = os.times()
        return {"time": time.perf_counter(), "jiffies": _proc_stat_jiffies(),
                "own": {pid: _process_cpu_seconds(pid) for pid in self._pids},
                "children": children.children_user + children.children_system,
                "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None}

    def __enter__(self):
        self._start = self._sample()
        return self

    def __exit__(self, *exc):
        self._end = self._sample()

    def result(self) -> dict:
        start, end = self._start, self._end or self._sample()
        wall = max(end["time"] - start["time"], 1e-9)
        out = {"wall_seconds": round(wall, 1),
               "loadavg_1min_start": start["loadavg"] and round(start["loadavg"][0], 2),
               "loadavg_1min_end": end["loadavg"] and round(end["loadavg"][0], 2)}
        if start["jiffies"] and end["jiffies"]:
            hz = os.sysconf("SC_CLK_TCK")
            busy = (end["jiffies"][0] - start["jiffies"][0]) / hz
            steal = (end["jiffies"][1] - start["jiffies"][1]) / hz
            own = sum(end["own"].get(p, 0.0) - start["own"].get(p, 0.0) for p in end["own"])
            own += end["children"] - start["children"]  # finished subprocesses
            out["own_cores"] = round(own / wall, 2)
            out["other_cores"] = round(max(busy - own, 0.0) / wall, 2)
            out["steal_cores"] = round(steal / wall, 2)
        return out


def wait_until_quiet(max_seconds: float, threshold: float = 0.25, window: float = 1.0) -> float:
    """Waits (at most ``max_seconds``) until other processes use at most ``threshold``
    cores over a ``window``-second sample; returns the seconds waited. This process
    is idle meanwhile, so whatever CPU is busy belongs to other jobs. For shared
    machines: a round that starts quiet is more likely to stay quiet."""
    if max_seconds <= 0 or _proc_stat_jiffies() is None:
        return 0.0
    start = time.perf_counter()
    hz = os.sysconf("SC_CLK_TCK")
    while True:
        before = _proc_stat_jiffies()[0]
        time.sleep(window)
        busy = (_proc_stat_jiffies()[0] - before) / hz / window
        waited = time.perf_counter() - start
        if busy <= threshold or waited >= max_seconds:
            return waited


def median_seconds(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _median(values):
    return statistics.median(values) if values else None


# ---------------------------------------------------------------------- grouped conv


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


# ----------------------------------------------------------------------------- FLOPs


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


# ------------------------------------------------------------------------ matmul peak


def _sync(value):
    """Waits for a result (GPU ops are asynchronous) by fetching one element."""
    tensor = value if isinstance(value, tf.Tensor) else tf.nest.flatten(value)[0]
    return tf.reshape(tensor, [-1])[0].numpy()


class _Matmul:
    """One n x n matrix product per call, in `tf.function`."""

    def __init__(self, n: int, dtype=tf.float32):
        self.n = n
        self.a = tf.cast(tf.random.normal([n, n], seed=1), dtype)
        self.b = tf.cast(tf.random.normal([n, n], seed=2), dtype)
        self.fn = tf.function(tf.linalg.matmul)

    def __call__(self) -> float:
        start = time.perf_counter()
        _sync(self.fn(self.a, self.b))
        return time.perf_counter() - start

    def gflops(self, seconds: float) -> float:
        return 2 * self.n ** 3 / seconds / 1e9


# --------------------------------------------------------------------- Keras contender


def _base_config(variant, num_classes, image_size, width, batch_size, xla, mixed_precision):
    from alexnet_tf import config as config_lib

    config = config_lib.base_config()
    config.model.variant = variant
    config.model.num_classes = num_classes
    config.model.image_size = image_size
    config.model.width = width
    config.train.global_batch_size = batch_size
    config.train.jit_compile = bool(xla)
    config.train.mixed_precision = mixed_precision or "none"
    return config


class KerasContender:
    """The package's model and training step, on fixed random inputs.

    The training step is `alexnet_tf.train.loop.make_train_step` (what
    `alexnet-train` runs: forward, loss, backward, and `optim.CoupledSGD`, momentum 0.9
    with the paper's coupled weight decay in one fused update) under the default
    `tf.distribute` strategy; XLA is the loop's own ``train.jit_compile``.
    """

    def __init__(self, variant="paper", batch_size=32, image_size=None, width=1.0,
                 num_classes=1000, xla=False, mixed_precision=None, infer_batch_size=128,
                 seed=0):
        import alexnet_tf
        from alexnet_tf import models
        from alexnet_tf.train import loop, optim

        image_size = image_size or models.get_variant(variant).default_image_size
        self.image_size = image_size
        self.batch_size = batch_size
        self.infer_batch_size = infer_batch_size
        previous_policy = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(
            f"mixed_{mixed_precision}" if mixed_precision else "float32")
        try:
            self.model = alexnet_tf.create_model(variant, num_classes, image_size, width, seed=seed)
            config = _base_config(variant, num_classes, image_size, width, batch_size, xla,
                                  mixed_precision)
            # The loop's own optimizer (CoupledSGD, wrapped for loss scaling under
            # float16) and step, as `alexnet-train` builds them.
            self.optimizer = optim.create_optimizer(config.train, steps_per_epoch=1000,
                                                    global_batch_size=batch_size)
            self.optimizer.build(self.model.trainable_variables)
            self.train_fn = loop.make_train_step(self.model, self.optimizer,
                                                 tf.distribute.get_strategy(), config)
            self.train_step_source = "alexnet_tf.train.loop.make_train_step"
        finally:
            keras.mixed_precision.set_global_policy(previous_policy)
        self.params = int(sum(math.prod(v.shape) for v in self.model.trainable_variables))
        shape = [image_size, image_size, 3]
        self.images = tf.random.normal([batch_size, *shape], seed=seed)
        self.labels = tf.random.uniform([batch_size], 0, num_classes, tf.int32, seed=seed)
        self.infer_images = tf.random.normal([infer_batch_size, *shape], seed=seed + 1)
        self.one_image = self.infer_images[:1]
        self.infer_fn = tf.function(lambda x: self.model(x, training=False), jit_compile=bool(xla))

    def train(self) -> float:
        start = time.perf_counter()
        _sync(self.train_fn((self.images, self.labels)))
        return time.perf_counter() - start

    def infer(self) -> float:
        start = time.perf_counter()
        _sync(self.infer_fn(self.infer_images))
        return time.perf_counter() - start

    def latency(self, calls: int) -> list[float]:
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            _sync(self.infer_fn(self.one_image))
            times.append(time.perf_counter() - start)
        return times


# --------------------------------------------------------------------- PyTorch peer


def architecture(variant: str = "paper", num_classes: int = 1000, image_size: int | None = None,
                 width: float = 1.0) -> dict:
    """The network of `create_model(variant, ...)` as plain data, for the PyTorch peer.

    Channel counts are scaled by ``width`` exactly as `create_model` scales them.
    """
    from alexnet_tf import models

    spec = models.get_variant(variant)
    image_size = image_size or spec.default_image_size
    models.validate_model_args(variant, num_classes, image_size, width)

    def scaled(units):
        return max(1, int(round(units * width)))

    convs, channels = [], 3
    for conv in spec.convs:
        filters = scaled(conv.filters)
        convs.append({"name": conv.name, "in_channels": channels, "filters": filters,
                      "kernel": conv.kernel_size, "strides": conv.strides,
                      "padding": conv.padding, "groups": conv.groups, "lrn": conv.lrn,
                      "pool": conv.pool})
        channels = filters
    side = spec.adaptive_pool or models.spatial_sizes(spec, image_size)[-1][1]
    return {"variant": variant, "image_size": image_size, "num_classes": num_classes,
            "convs": convs, "batchnorm": spec.normalization == "batchnorm",
            "lrn": {"size": spec.lrn_depth_size, "bias": spec.lrn_bias,
                    "alpha": spec.lrn_alpha, "beta": spec.lrn_beta},
            "pool": [spec.pool_size, spec.pool_strides], "adaptive_pool": spec.adaptive_pool,
            "flat_features": channels * side * side,
            "fc_units": [scaled(u) for u in spec.fc_units],
            "dropout_rate": spec.dropout_rate, "dropout_placement": spec.dropout_placement}


def torch_model_from_architecture(arch: dict):
    """The network in plain PyTorch: `nn.Conv2d(groups=2)` for the towers,
    `nn.LocalResponseNorm`, NCHW, as a PyTorch user would write it."""
    from torch import nn

    layers = []
    lrn = arch["lrn"]
    for c in arch["convs"]:
        layers.append(nn.Conv2d(c["in_channels"], c["filters"], c["kernel"], c["strides"],
                                c["padding"], groups=c["groups"], bias=not arch["batchnorm"]))
        if arch["batchnorm"]:
            layers.append(nn.BatchNorm2d(c["filters"], eps=1e-5, momentum=0.1))
        layers.append(nn.ReLU(inplace=True))
        if c["lrn"]:
            # torch divides alpha by the window size n (as Caffe); the paper's and TF's
            # alpha multiplies the plain sum of squares: alpha_torch = n * alpha_tf.
            layers.append(nn.LocalResponseNorm(lrn["size"], alpha=lrn["alpha"] * lrn["size"],
                                               beta=lrn["beta"], k=lrn["bias"]))
        if c["pool"]:
            layers.append(nn.MaxPool2d(*arch["pool"]))
    if arch["adaptive_pool"]:
        layers.append(nn.AdaptiveAvgPool2d(arch["adaptive_pool"]))
    layers.append(nn.Flatten())
    features = arch["flat_features"]
    for units in arch["fc_units"]:
        if arch["dropout_placement"] == "before_fc":
            layers.append(nn.Dropout(arch["dropout_rate"]))
        layers += [nn.Linear(features, units), nn.ReLU(inplace=True)]
        if arch["dropout_placement"] == "after_fc":
            layers.append(nn.Dropout(arch["dropout_rate"]))
        features = units
    layers.append(nn.Linear(features, arch["num_classes"]))
    return nn.Sequential(*layers)


def torch_model(variant: str = "paper", num_classes: int = 1000, image_size: int | None = None,
                width: float = 1.0):
    """`create_model`'s network in PyTorch (imports torch)."""
    return torch_model_from_architecture(architecture(variant, num_classes, image_size, width))


def _torch_worker() -> None:
    """The PyTorch peer's process: reads one JSON config line, then commands
    ("train", "infer", "latency K", "quit") and answers each with one JSON line."""
    import torch

    out = sys.stdout
    sys.stdout = sys.stderr  # only protocol lines on the pipe
    config = json.loads(sys.stdin.readline())
    threads = config.get("threads") or usable_cores()
    torch.set_num_threads(threads)
    torch.manual_seed(config.get("seed", 0))
    use_cuda = config.get("gpu") and torch.cuda.is_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    if use_cuda:
        torch.backends.cudnn.benchmark = True
    arch = config["architecture"]
    model = torch_model_from_architecture(arch).to(device)
    # Decay kernels only, as the package's coupled decay (train.decay_biases=False).
    decayed = [p for p in model.parameters() if p.dim() > 1]
    others = [p for p in model.parameters() if p.dim() <= 1]
    optimizer = torch.optim.SGD([{"params": decayed, "weight_decay": config["weight_decay"]},
                                 {"params": others, "weight_decay": 0.0}],
                                lr=config["learning_rate"], momentum=config["momentum"])
    loss_fn = torch.nn.CrossEntropyLoss()
    size = arch["image_size"]
    images = torch.randn(config["batch_size"], 3, size, size, device=device)
    labels = torch.randint(0, arch["num_classes"], (config["batch_size"],), device=device)
    infer_images = torch.randn(config["infer_batch_size"], 3, size, size, device=device)
    one_image = infer_images[:1].clone()
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(
        config.get("mixed_precision") or "")

    def autocast():
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=dtype)

    def sync():
        if use_cuda:
            torch.cuda.synchronize()

    def train():
        model.train()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        loss.item()
        sync()
        return time.perf_counter() - start

    def infer(x):
        model.eval()
        with torch.inference_mode(), autocast():
            start = time.perf_counter()
            model(x)
            sync()
            return time.perf_counter() - start

    def reply(value):
        out.write(json.dumps(value) + "\n")
        out.flush()

    reply({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads(),
           "device": str(device), "params": sum(p.numel() for p in model.parameters()),
           "mkldnn": bool(torch.backends.mkldnn.is_available())})
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        if command[0] == "train":
            reply({"seconds": train()})
        elif command[0] == "infer":
            reply({"seconds": infer(infer_images)})
        elif command[0] == "latency":
            reply({"seconds": [infer(one_image) for _ in range(int(command[1]))]})
        else:
            reply({"error": f"unknown command {line!r}"})


class TorchPeer:
    """The PyTorch peer in its own process (no shared thread pools with TF), driven
    step by step so that its repetitions interleave with Keras' in time."""

    def __init__(self, arch: dict, batch_size: int, infer_batch_size: int, *,
                 mixed_precision=None, threads: int = 0, gpu: bool = False,
                 learning_rate=0.01, momentum=0.9, weight_decay=5e-4):
        # stderr to a file, not a pipe: a full pipe would block the worker.
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "alexnet_tf.benchmark", "--torch-worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.info = self._send(json.dumps({
            "architecture": arch, "batch_size": batch_size,
            "infer_batch_size": infer_batch_size, "mixed_precision": mixed_precision,
            "threads": threads, "gpu": gpu, "learning_rate": learning_rate,
            "momentum": momentum, "weight_decay": weight_decay}))

    def _send(self, line: str) -> dict:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            self.process.wait()
            self.stderr.seek(0)
            error = self.stderr.read()[-2000:]
            raise RuntimeError(f"PyTorch peer process died: {error.strip()}")
        return json.loads(answer)

    def train(self) -> float:
        return self._send("train")["seconds"]

    def infer(self) -> float:
        return self._send("infer")["seconds"]

    def latency(self, calls: int) -> list[float]:
        return self._send(f"latency {calls}")["seconds"]

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.stderr):
            with contextlib.suppress(OSError):
                stream.close()


# --------------------------------------------------------------------- model benchmark


def _rates(seconds: list[float], batch: int) -> dict:
    med = _median(seconds)
    return {"images_per_s": batch / med if med else None, "seconds_median": med,
            "seconds": [round(s, 5) for s in seconds]}


def model(variant: str = "paper", batch_size: int = 32, image_size: int | None = None,
          width: float = 1.0, num_classes: int = 1000, repeats: int = 5, warmup: int = 2,
          xla: bool = False, mixed_precision: str | None = None,
          infer_batch_size: int = 128, latency_calls: int = 10,
          matmul_sizes=(2048, 4096), peer: bool = True, torch_threads: int = 0,
          wait_quiet: float = 0.0, seed: int = 0) -> dict:
    """Training/inference images/s, latency, FLOPs and the matmul peak; the PyTorch peer.

    Each of ``warmup + repeats`` rounds times, in turn: one n x n float32 matmul per
    size, one Keras training step, one PyTorch training step, one inference batch of
    each, and ``latency_calls`` batch-1 calls of each (the order of Keras and PyTorch
    alternates between rounds). Warm-up rounds (tracing, XLA compilation, first
    touches) are dropped; figures are medians over the remaining rounds. With
    ``wait_quiet`` > 0 each round first waits up to that many seconds for the machine
    to be quiet (`wait_until_quiet`); rounds during which other processes still used at
    most `QUIET_OTHER_CORES` are also summarised apart (``quiet``). Ratios are
    Keras/PyTorch throughput (> 1: Keras faster), from the medians, and also the median
    of the per-round ratios (``paired``), which is robust to load that drifts.
    """
    if mixed_precision not in (None, "", "none", "bfloat16", "float16"):
        raise ValueError(f"mixed_precision must be bfloat16, float16 or None, got "
                         f"{mixed_precision!r}.")
    mixed_precision = None if mixed_precision in ("", "none") else mixed_precision
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}.")
    _gpu_memory_growth()
    gpu = bool(tf.config.list_logical_devices("GPU"))
    keras_side = KerasContender(variant, batch_size, image_size, width, num_classes, xla,
                                mixed_precision, infer_batch_size, seed)
    flops = model_flops(keras_side.model)
    profiled = profiler_flops(keras_side.model)
    result = {
        "benchmark": "model", "variant": variant, "batch_size": batch_size,
        "image_size": keras_side.image_size, "width": width, "num_classes": num_classes,
        "infer_batch_size": infer_batch_size, "latency_batch_size": 1,
        "xla": bool(xla), "mixed_precision": mixed_precision or "none",
        "repeats": repeats, "warmup": warmup, "device": "GPU" if gpu else "CPU",
        "params": keras_side.params,
        "flops": {
            "forward_macs_per_image": flops["forward_macs"],
            "forward_gflops_per_image": flops["forward_flops"] / 1e9,
            "training_gflops_per_image": flops["training_flops"] / 1e9,
            "training_gflops_per_image_3x_forward": flops["training_flops_3x"] / 1e9,
            "profiler_forward_gflops_per_image": profiled and profiled["total_flops"] / 1e9,
            "profiler_conv_matmul_gflops_per_image":
                profiled and profiled["conv_matmul_flops"] / 1e9,
            "layers": flops["layers"],
        },
        "machine": machine_info(),
    }
    matmuls = [_Matmul(n) for n in matmul_sizes]
    peer_side, peer_error, peer_info = None, None, None
    meter = LoadMeter()
    if peer and torch_available():
        try:
            peer_side = TorchPeer(architecture(variant, num_classes, keras_side.image_size, width),
                                  batch_size, infer_batch_size, mixed_precision=mixed_precision,
                                  threads=torch_threads, gpu=gpu)
            meter.watch(peer_side.process.pid)
            peer_info = peer_side.info
            if peer_side.info.get("params") != keras_side.params:
                peer_error = (f"parameter counts differ: torch {peer_side.info.get('params')}, "
                              f"keras {keras_side.params}")
        except (RuntimeError, OSError, ValueError) as error:
            peer_error = str(error)
            peer_side = None
    rounds = []
    try:
        with meter:
            for round_index in range(warmup + repeats):
                waited = wait_until_quiet(wait_quiet)
                record = {"matmul_gflops": {}, "waited_s": round(waited, 1)}
                round_meter = LoadMeter()
                if peer_side is not None:
                    round_meter.watch(peer_side.process.pid)
                with round_meter:
                    for m in matmuls:
                        record["matmul_gflops"][str(m.n)] = m.gflops(m())
                    names = ["keras", "torch"] if round_index % 2 == 0 else ["torch", "keras"]
                    for what in ("train", "infer", "latency"):
                        for name in names:
                            side = keras_side if name == "keras" else peer_side
                            if side is None:
                                continue
                            try:
                                value = (statistics.median(side.latency(latency_calls))
                                         if what == "latency" else getattr(side, what)())
                            except (RuntimeError, OSError, ValueError) as error:
                                if name == "keras":
                                    raise
                                peer_error = f"the PyTorch peer failed: {error}"
                                peer_side.close()
                                peer_side = None  # the peer died: Keras goes on alone
                                continue
                            record[f"{name}_{what}"] = value
                record["other_cores"] = round_meter.result().get("other_cores")
                if round_index >= warmup:
                    rounds.append(record)
    finally:
        if peer_side is not None:
            peer_side.close()
    result["load"] = meter.result()
    result["load"]["other_cores_per_round"] = [r["other_cores"] for r in rounds]
    train_gflops = flops["training_flops"] / 1e9
    result.update(_model_figures(rounds, batch_size, infer_batch_size, train_gflops))
    result["keras"]["train_step"] = keras_side.train_step_source
    if torch_available() and peer:
        result.setdefault("torch", {})["info"] = peer_info
        if peer_error:
            result["torch"]["error"] = peer_error
    else:
        result.pop("torch", None)
        result.pop("ratios", None)
    quiet = [r for r in rounds if r["other_cores"] is not None
             and r["other_cores"] <= QUIET_OTHER_CORES]
    result["quiet_rounds"] = len(quiet)
    if quiet and len(quiet) < len(rounds):
        result["quiet"] = _model_figures(quiet, batch_size, infer_batch_size, train_gflops)
    result["rounds"] = rounds
    return result


# Rounds during which other processes used at most this many cores count as quiet.
QUIET_OTHER_CORES = 0.25


def _model_figures(rounds, batch_size, infer_batch_size, train_gflops) -> dict:
    """Medians over ``rounds`` (one dict of timings per round): matmul peak, rates, ratios."""
    sizes = sorted({n for r in rounds for n in r["matmul_gflops"]}, key=int)
    peaks = {n: {"gflops_median": _median([r["matmul_gflops"][n] for r in rounds]),
                 "gflops": [round(r["matmul_gflops"][n], 1) for r in rounds]} for n in sizes}
    peak = max((p["gflops_median"] for p in peaks.values() if p["gflops_median"]), default=None)
    out = {"matmul_fp32": {"sizes": peaks, "peak_gflops": peak,
                           "compute_limit_train_images_per_s":
                               peak / train_gflops if peak else None}}

    def values(key):
        return [r[key] for r in rounds if key in r]

    for name in ("keras", "torch"):
        if not values(f"{name}_train"):
            continue
        side = {"train": _rates(values(f"{name}_train"), batch_size),
                "infer": _rates(values(f"{name}_infer"), infer_batch_size)}
        latency = _median(values(f"{name}_latency"))
        side["latency_ms"] = latency * 1000 if latency else None
        rate = side["train"]["images_per_s"]
        side["train_gflops_per_s"] = rate * train_gflops if rate else None
        side["fraction_of_matmul_peak"] = rate * train_gflops / peak if rate and peak else None
        out[name] = side
    if "keras" in out and "torch" in out:
        k, t = out["keras"], out["torch"]

        def paired(what):
            pairs = [r[f"torch_{what}"] / r[f"keras_{what}"] for r in rounds
                     if f"torch_{what}" in r and f"keras_{what}" in r]
            return _median(pairs)

        out["ratios"] = {
            "train_keras_over_torch": t["train"]["seconds_median"] / k["train"]["seconds_median"],
            "infer_keras_over_torch": t["infer"]["seconds_median"] / k["infer"]["seconds_median"],
            "latency_torch_over_keras": (t["latency_ms"] / k["latency_ms"]
                                         if t["latency_ms"] and k["latency_ms"] else None),
            "train_paired_median": paired("train"),
            "infer_paired_median": paired("infer"),
        }
    return out


# --------------------------------------------------------------------------- profile

_OPTIMIZER_TYPES = {"Mul", "AddV2", "Add", "Sub", "AssignAddVariableOp", "AssignSubVariableOp",
                    "AssignVariableOp", "ReadVariableOp", "Cast", "ResourceApplyKerasMomentum",
                    "ResourceApplyMomentum", "_MklMul", "_MklAdd", "_MklAddV2", "_MklSub"}
# Name scopes of the optimizers' ops (Keras names them after the optimizer's class).
_OPTIMIZER_SCOPES = {"sgd", "coupled_sgd", "adamw", "loss_scale_optimizer"}
_LAYER_SUFFIXES = ("_relu", "_pad", "_bn")


def _layer_groups(model: keras.Model) -> dict:
    """Layer name -> the group it is reported under: a conv with its padding, BatchNorm
    and ReLU ("conv1"), LRN, pooling, dropout and fc layers on their own."""
    groups = {}
    for layer in model.layers:
        name = layer.name
        base = name
        for suffix in _LAYER_SUFFIXES:
            if name.endswith(suffix):
                base = name[: -len(suffix)]
        if "_dropout" in name:
            base = "dropout"
        groups[name] = base
    return groups


def _op_layer(op_name: str, groups: dict):
    for part in op_name.split("/"):
        part = re.sub(r"_\d+$", "", part)
        if part in groups:
            return groups[part]
    return None


def summarize_trace(logdir: str, model: keras.Model, steps: int, step_seconds: float,
                    top: int = 15) -> dict:
    """Per-op, per-op-type and per-layer time of the traced training steps, from the
    profiler's XPlane file (host CPU ops; on GPU, the device kernels' plane)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = sorted(
        os.path.join(root, f) for root, _, files in os.walk(logdir) for f in files
        if f.endswith(".xplane.pb"))
    if not paths:
        return {"error": f"no .xplane.pb under {logdir}"}
    space = xplane_pb2.XSpace()
    with open(paths[-1], "rb") as f:
        space.ParseFromString(f.read())
    groups = _layer_groups(model)
    ops, types = {}, {}
    op_pattern = re.compile(r"^([^:\s]+):([A-Za-z0-9_\-]+)$")
    device_planes = [p for p in space.planes if p.name.startswith("/device:GPU")]
    for plane in device_planes or [p for p in space.planes if p.name.startswith("/host:CPU")]:
        stat_names = {k: v.name for k, v in plane.stat_metadata.items()}

        def stat(event, wanted):
            return next((st.str_value or stat_names.get(st.ref_value, "") for st in event.stats
                         if stat_names.get(st.metadata_id) == wanted), None)

        def event_name(event):
            return plane.event_metadata[event.metadata_id].name

        # XLA clusters: the TF op that launched one (ExecutorState::ProcessAsync::Start,
        # its "name" stat, e.g. .../norm1/PartitionedCall or coupled_sgd/StatefulPartitionedCall)
        # spans the cluster's run; its HLO ops (events with a "program_id" stat) run on
        # the launching thread and on TF's thread pool, within that span.
        launches = sorted((e.offset_ps, e.offset_ps + e.duration_ps, stat(e, "name") or "")
                          for line in plane.lines for e in line.events
                          if event_name(e).startswith("ExecutorState::ProcessAsync::Start"))
        starts = [start for start, _, _ in launches]

        def launcher(offset):
            """The latest-started launch whose span holds ``offset`` ("" if none)."""
            index = bisect.bisect_right(starts, offset) - 1
            for start, end, op in reversed(launches[max(0, index - 63):index + 1]):
                if start <= offset < end:
                    return op
            return ""

        cluster_runs, with_hlo = {}, set()
        for line in plane.lines:
            for event in line.events:
                name = event_name(event)
                if device_planes:  # GPU kernels name their TF op in the "tf_op" stat
                    name = stat(event, "tf_op") or name
                elif name.endswith("Executable::ExecuteAsyncOnStream"):
                    scope = launcher(event.offset_ps)
                    cluster_runs[scope] = cluster_runs.get(scope, 0) + event.duration_ps
                    continue
                elif stat(event, "program_id") is not None:  # an HLO op of an XLA cluster
                    scope = launcher(event.offset_ps)
                    with_hlo.add(scope)
                    kind = re.sub(r"[.]\d+$", "", name)
                    name = f"{scope + '/' if scope else ''}xla/{name}:XLA_{kind}"
                match = op_pattern.match(name)
                if not match:
                    continue
                ops.setdefault(name, [match.group(1), match.group(2), 0.0])[2] += event.duration_ps
        # A cluster whose HLO ops were seen is counted op by op; otherwise as whole runs.
        for scope, ps in cluster_runs.items():
            if scope not in with_hlo:
                name = f"{scope + '/' if scope else ''}xla_cluster:XLA"
                ops.setdefault(name, [name.split(":")[0], "XLA", 0.0])[2] += ps
    total_ps = sum(v[2] for v in ops.values()) or 1
    per_step = 1e-9 / steps  # ps -> ms per step
    layers = {}
    for name, op_type, ps in ops.values():
        types[op_type] = types.get(op_type, 0.0) + ps
        layer = _op_layer(name, groups)
        backward = name.startswith("gradient_tape/") or "/gradient_tape/" in name
        if layer is None:
            optimizer_op = (op_type in _OPTIMIZER_TYPES
                            or name.split("/", 1)[0] in _OPTIMIZER_SCOPES)
            layer = ("optimizer update + weight decay" if optimizer_op
                     else "XLA-compiled clusters" if op_type.startswith("XLA")
                     else "loss, metrics, other")
        row = layers.setdefault(layer, {"forward_ms": 0.0, "backward_ms": 0.0})
        row["backward_ms" if backward else "forward_ms"] += ps * per_step
    flops = {r["layer"]: r["training_flops"] for r in model_flops(model)["layers"]}
    layer_rows = []
    for layer, row in sorted(layers.items(), key=lambda kv: -(kv[1]["forward_ms"]
                                                               + kv[1]["backward_ms"])):
        total = row["forward_ms"] + row["backward_ms"]
        share = total / (total_ps * per_step)
        entry = {"layer": layer, "forward_ms": round(row["forward_ms"], 2),
                 "backward_ms": round(row["backward_ms"], 2), "total_ms": round(total, 2),
                 "share": round(share, 4)}
        if layer in flops:
            entry["training_gflop_per_image"] = flops[layer] / 1e9
        layer_rows.append(entry)
    return {
        "trace": paths[-1], "steps": steps, "step_seconds": step_seconds,
        "op_ms_per_step": total_ps * per_step,
        "note": ("op times are summed over TF's inter-op threads; ops that run at the same "
                 "time each count fully, so the sum exceeds the step's wall time; shares "
                 "are of the summed op time"),
        "by_type": [{"type": t, "ms": round(ps * per_step, 2), "share": round(ps / total_ps, 4)}
                    for t, ps in sorted(types.items(), key=lambda kv: -kv[1])[:top]],
        "top_ops": [{"op": name, "type": op_type, "ms": round(ps * per_step, 2),
                     "share": round(ps / total_ps, 4)}
                    for name, op_type, ps in sorted(ops.values(), key=lambda v: -v[2])[:top]],
        "by_layer": layer_rows,
    }


def profile(variant: str = "paper", batch_size: int = 32, image_size: int | None = None,
            width: float = 1.0, num_classes: int = 1000, steps: int = 3, warmup: int = 2,
            xla: bool = False, mixed_precision: str | None = None, logdir: str | None = None,
            top: int = 15, wait_quiet: float = 0.0, seed: int = 0) -> dict:
    """Traces ``steps`` training steps with tf.profiler.experimental and summarises
    where the time goes (`summarize_trace`); per-layer achieved GFLOP/s assume the
    layer's share of op time is its share of the step's wall time."""
    mixed_precision = None if mixed_precision in ("", "none") else mixed_precision
    _gpu_memory_growth()
    side = KerasContender(variant, batch_size, image_size, width, num_classes, xla,
                          mixed_precision, infer_batch_size=1, seed=seed)
    for _ in range(warmup):
        side.train()
    keep = logdir is not None
    logdir = logdir or tempfile.mkdtemp(prefix="alexnet_tf_profile_")
    waited = wait_until_quiet(wait_quiet)
    meter = LoadMeter()
    with meter:
        tf.profiler.experimental.start(logdir)
        try:
            times = [side.train() for _ in range(steps)]
        finally:
            tf.profiler.experimental.stop()
        untraced = [side.train() for _ in range(steps)]
    step_seconds = statistics.median(times)
    summary = summarize_trace(logdir, side.model, steps, step_seconds, top)
    for row in summary.get("by_layer", []):
        if "training_gflop_per_image" in row and row["share"] > 0:
            seconds = row["share"] * step_seconds
            row["achieved_gflops_per_s"] = round(
                row["training_gflop_per_image"] * batch_size / seconds, 1)
    summary.update({
        "benchmark": "profile", "variant": variant, "batch_size": batch_size,
        "image_size": side.image_size, "width": width, "xla": bool(xla),
        "mixed_precision": mixed_precision or "none",
        "train_images_per_s_traced": batch_size / step_seconds,
        "train_images_per_s_untraced": batch_size / statistics.median(untraced),
        "training_gflops_per_image": model_flops(side.model)["training_flops"] / 1e9,
        "train_step": side.train_step_source, "machine": machine_info(),
        "load": dict(meter.result(), waited_s=round(waited, 1))})
    if not keep:
        shutil.rmtree(logdir, ignore_errors=True)
        summary["trace"] = None
    return summary


# --------------------------------------------------------------------- input benchmark

INPUT_SOURCES = ("jpeg", "stored256", "tfrecord")
INPUT_PIPELINES = ("plain", "project", "project_on_device")


def _photo_like(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A uint8 RGB image with a photo's mix of smooth regions, edges, texture and
    sensor noise, so that its JPEG is about as large (and as slow to decode) as a
    typical ImageNet photo of that size (about 105 KB at 500x375, quality 90)."""
    from PIL import Image, ImageDraw

    base = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    image = Image.fromarray(base).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 10))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(20, width // 2)), y0 + int(rng.integers(20, height // 2))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=color)
    pixels = np.asarray(image, np.float32)
    # Texture: noise at a third of the resolution, smoothed by a bilinear upsampling.
    texture = rng.normal(128, 40, (height // 3 + 1, width // 3 + 1, 3)).clip(0, 255)
    texture = Image.fromarray(texture.astype(np.uint8)).resize((width, height),
                                                                Image.Resampling.BILINEAR)
    pixels += (np.asarray(texture, np.float32) - 128) * 1.1 + rng.normal(0, 13, pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def write_test_images(root: str, num_images: int = 512, num_classes: int = 4,
                      size=(500, 375), seed: int = 0, sources=INPUT_SOURCES) -> dict:
    """Writes the input benchmark's data under ``root`` (reused when already there):

    * ``jpeg/train/<class>/*.JPEG``: ``num_images`` photo-like JPEGs of ``size``
      (width, height; 500x375 is ImageNet's most common size), quality 90;
    * ``stored256/train/...``: the same images stored at shorter side 256 (what
      tools/build_tfrecords.py stores), by `convert.normalize_image`;
    * ``tfrecord/``: those stored images as TFRecord shards, by `convert.build_tfrecords`.
    Returns {source: directory} and the mean file sizes.
    """
    from PIL import Image

    from alexnet_tf.data import convert

    marker = os.path.join(root, "benchmark_images.json")
    wanted = {"num_images": num_images, "num_classes": num_classes, "size": list(size),
              "seed": seed}
    if os.path.exists(marker):
        with open(marker) as f:
            info = json.load(f)
        if info.get("wanted") == wanted and all(os.path.isdir(info["dirs"][s]) for s in sources
                                                if s in info["dirs"]):
            missing = [s for s in sources if s not in info["dirs"]]
            if not missing:
                return info
    rng = np.random.default_rng(seed)
    dirs = {"jpeg": os.path.join(root, "jpeg"), "stored256": os.path.join(root, "stored256"),
            "tfrecord": os.path.join(root, "tfrecord")}
    for d in dirs.values():
        shutil.rmtree(d, ignore_errors=True)
    sizes = {"jpeg": [], "stored256": []}
    width, height = size
    for i in range(num_images):
        cls = f"class_{i % num_classes:02d}"
        buffer = io.BytesIO()
        Image.fromarray(_photo_like(rng, height, width)).save(buffer, "JPEG", quality=90)
        data = buffer.getvalue()
        stored = convert.normalize_image(data, resize_shorter_side=256).data
        for source, payload in (("jpeg", data), ("stored256", stored)):
            folder = os.path.join(dirs[source], "train", cls)
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"img_{i:06d}.JPEG"), "wb") as f:
                f.write(payload)
            sizes[source].append(len(payload))
    if "tfrecord" in sources:
        convert.build_tfrecords(dirs["jpeg"], dirs["tfrecord"], splits=("train",),
                                shards={"train": max(1, min(8, num_images // 16))},
                                resize_shorter_side=256, workers=1, progress=False)
    info = {"wanted": wanted, "dirs": {s: dirs[s] for s in sources},
            "mean_kb": {s: round(statistics.mean(v) / 1024, 1) for s, v in sizes.items()},
            "image_size": {"jpeg": list(size),
                           "stored256": list(convert.shorter_side_size(height, width, 256)[::-1])}}
    with open(marker, "w") as f:
        json.dump(info, f)
    return info


def plain_pipeline(source: str, data_dir: str, *, image_size: int = 227, batch_size: int = 128,
                   seed: int = 0) -> tf.data.Dataset:
    """The baseline: the paper's training pipeline written the straightforward way.

    Shuffle the file list (or read TFRecords in parallel), decode, resize the shorter
    side to 256 (float32 from there on), central 256 crop, random 227 crop, random
    flip, PCA lighting, per-channel mean subtraction; batch; AUTOTUNE and prefetch.
    """
    from alexnet_tf.data import preprocess

    eigval = tf.constant(preprocess.IMAGENET_PCA_EIGVAL)
    eigvec = tf.constant(preprocess.IMAGENET_PCA_EIGVEC)
    mean = tf.constant([123.68, 116.78, 103.94])

    def augment(encoded, label):
        image = tf.io.decode_jpeg(encoded, channels=3)
        shape = tf.shape(image)
        scale = 256.0 / tf.cast(tf.minimum(shape[0], shape[1]), tf.float32)
        new_size = tf.cast(tf.round(tf.cast(shape[:2], tf.float32) * scale), tf.int32)
        image = tf.image.resize(image, tf.maximum(new_size, 256))
        image = tf.image.resize_with_crop_or_pad(image, 256, 256)
        image = tf.image.random_crop(image, [image_size, image_size, 3])
        image = tf.image.random_flip_left_right(image)
        alpha = tf.random.normal([3], stddev=0.1)
        image = image + tf.linalg.matvec(eigvec, alpha * eigval) * 255.0
        return image - mean, label

    if source == "tfrecord":
        files = sorted(f for f in tf.io.gfile.glob(os.path.join(data_dir, "train-*-of-*"))
                       if not f.endswith((".json", ".tmp")))
        spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
                "image/class/label": tf.io.FixedLenFeature([], tf.int64)}

        def parse(record):
            features = tf.io.parse_single_example(record, spec)
            return features["image/encoded"], tf.cast(features["image/class/label"] - 1, tf.int32)

        ds = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=seed)
        ds = ds.interleave(tf.data.TFRecordDataset, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.shuffle(1024, seed=seed).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        classes = sorted(os.listdir(os.path.join(data_dir, "train")))
        paths, labels = [], []
        for label, cls in enumerate(classes):
            for name in sorted(os.listdir(os.path.join(data_dir, "train", cls))):
                paths.append(os.path.join(data_dir, "train", cls, name))
                labels.append(label)
        ds = tf.data.Dataset.from_tensor_slices((paths, labels)).shuffle(len(paths), seed=seed)
        ds = ds.map(lambda p, y: (tf.io.read_file(p), y), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def project_pipeline(source: str, data_dir: str, *, image_size: int = 227,
                     batch_size: int = 128, on_device: bool = False, seed: int = 0):
    """This package's paper pipeline (`pipeline.make_dataset`, ``augmentation="paper"``)
    over a source; with ``on_device`` the pipeline stops at the uint8 crop and returns
    the batched tail (`pipeline.finish_on_device`) as a tf.function to apply per batch."""
    from alexnet_tf import config as config_lib
    from alexnet_tf.data import pipeline, sources

    d = config_lib.base_config().data
    d.source = "tfrecord" if source == "tfrecord" else "image_folder"
    d.data_dir = data_dir
    d.augmentation = "paper"
    d.augment_on_device = bool(on_device)
    split = sources.load_split(d, "train")
    ds = pipeline.make_dataset(split, d, image_size=image_size, batch_size=batch_size,
                               training=True, seed=seed)
    finish = None
    if on_device:
        norm, light = pipeline.normalization(d), pipeline.lighting(d)
        finish = tf.function(lambda inputs: pipeline.finish_on_device(inputs, norm, light))
    return ds, finish


def _time_pipeline(make, batch_size: int, batches: int, seconds: float,
                   warm_batches: int = 2) -> float:
    """images/s of one window: a fresh pipeline (repeated), ``warm_batches`` dropped,
    then at least ``batches`` batches and ``seconds`` seconds timed."""
    ds, finish = make()
    iterator = iter(ds.repeat())
    for _ in range(warm_batches):
        batch = next(iterator)
        if finish is not None:
            finish(batch[0])
    count, start = 0, time.perf_counter()
    while count < batches or time.perf_counter() - start < seconds:
        images, _ = next(iterator)
        if finish is not None:
            images = finish(images)
        count += 1
    elapsed = time.perf_counter() - start
    del iterator
    return count * batch_size / elapsed


def input_pipelines(sources=INPUT_SOURCES, pipelines=INPUT_PIPELINES, num_images: int = 512,
                    batch_size: int = 128, image_size: int = 227, repeats: int = 5,
                    warmup: int = 1, seconds: float = 0.0, data_dir: str | None = None,
                    wait_quiet: float = 0.0, seed: int = 0) -> dict:
    """images/s of the plain baseline and of the project's pipeline per source.

    Each of ``warmup + repeats`` rounds times one window of every pipeline in turn
    (fresh pipeline, 2 batches dropped, then one epoch's worth of batches and at least
    ``seconds``); warm-up rounds are dropped and the median is reported, with the
    ratio to the plain pipeline of the same source.
    """
    unknown = [s for s in sources if s not in INPUT_SOURCES]
    unknown += [p for p in pipelines if p not in INPUT_PIPELINES]
    if unknown:
        raise ValueError(f"Unknown input sources/pipelines {unknown}; expected sources from "
                         f"{INPUT_SOURCES} and pipelines from {INPUT_PIPELINES}.")
    if num_images < batch_size:
        raise ValueError(f"num_images ({num_images}) must be at least one batch ({batch_size}).")
    keep_dir = data_dir is not None
    data_dir = data_dir or tempfile.mkdtemp(prefix="alexnet_tf_input_bench_")
    try:
        start = time.perf_counter()
        info = write_test_images(data_dir, num_images, seed=seed, sources=tuple(sources))
        generate_seconds = time.perf_counter() - start
        batches = max(1, num_images // batch_size)
        makers = {}
        for source in sources:
            directory = info["dirs"][source]
            for name in pipelines:
                if name == "plain":
                    makers[(source, name)] = (lambda s=source, d=directory: (
                        plain_pipeline(s, d, image_size=image_size, batch_size=batch_size,
                                       seed=seed), None))
                else:
                    makers[(source, name)] = (lambda s=source, d=directory, o=(
                        name == "project_on_device"): project_pipeline(
                        s, d, image_size=image_size, batch_size=batch_size, on_device=o,
                        seed=seed))
        rounds = {source: [] for source in sources}
        meter = LoadMeter()
        with meter:
            for source in sources:
                keys = [k for k in makers if k[0] == source]
                for round_index in range(warmup + repeats):
                    waited = wait_until_quiet(wait_quiet)
                    round_meter = LoadMeter()
                    with round_meter:
                        order = keys if round_index % 2 == 0 else keys[::-1]
                        record = {key[1]: _time_pipeline(makers[key], batch_size, batches,
                                                         seconds) for key in order}
                    record["other_cores"] = round_meter.result().get("other_cores")
                    record["waited_s"] = round(waited, 1)
                    if round_index >= warmup:
                        rounds[source].append(record)
        results = {source: _input_figures(rounds[source], pipelines) for source in sources}
        quiet = {}
        for source in sources:
            calm = [r for r in rounds[source] if r["other_cores"] is not None
                    and r["other_cores"] <= QUIET_OTHER_CORES]
            if calm and len(calm) < len(rounds[source]):
                quiet[source] = _input_figures(calm, pipelines)
        return {"benchmark": "input", "num_images": num_images, "batch_size": batch_size,
                "image_size": image_size, "repeats": repeats, "warmup": warmup,
                "seconds": seconds, "images": {k: info[k] for k in ("mean_kb", "image_size")},
                "generate_seconds": round(generate_seconds, 1),
                "data_dir": data_dir if keep_dir else None,
                "sources": results, "quiet": quiet,
                "other_cores_per_round": {k: [r["other_cores"] for r in v]
                                          for k, v in rounds.items()},
                "usable_cores": usable_cores(),
                "machine": machine_info(), "load": meter.result()}
    finally:
        if not keep_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


def _input_figures(rounds, pipelines) -> dict:
    row = {}
    for name in pipelines:
        values = [r[name] for r in rounds]
        row[name] = {"images_per_s": _median(values), "samples": [round(v, 1) for v in values]}
    base = row.get("plain", {}).get("images_per_s")
    for name in pipelines:
        if name != "plain" and base:
            row[name]["ratio_vs_plain"] = row[name]["images_per_s"] / base
            paired = [r[name] / r["plain"] for r in rounds]
            row[name]["ratio_vs_plain_paired_median"] = _median(paired)
    return row


def _parse_cpus(text: str) -> list[int]:
    cpus = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            cpus += list(range(int(lo), int(hi) + 1))
        elif part:
            cpus.append(int(part))
    return cpus


def default_cpu_sets() -> list[str]:
    """1, 2, 4, ... cores up to all usable ones, as taskset-style lists ("0", "0-1", ...)."""
    cpus = sorted(os.sched_getaffinity(0))
    sets, n = [], 1
    while n < len(cpus):
        sets.append(cpus[:n])
        n *= 2
    sets.append(cpus)
    return [",".join(str(c) for c in s) for s in sets]


def input_scaling(cpu_sets=None, rounds: int = 2, **kwargs) -> dict:
    """`input_pipelines` once per CPU set, each in a process pinned to those cores
    (as ``taskset -c``), alternating the order over ``rounds``; images/s per core.

    TF sizes tf.data's thread pool from the process's CPU affinity, so a pinned
    process sees only its cores. Linear scaling keeps images/s per core constant.
    """
    cpu_sets = cpu_sets or default_cpu_sets()
    data_dir = kwargs.pop("data_dir", None)
    keep_dir = data_dir is not None
    data_dir = data_dir or tempfile.mkdtemp(prefix="alexnet_tf_input_bench_")
    try:
        write_test_images(data_dir, kwargs.get("num_images", 512),
                          sources=tuple(kwargs.get("sources", INPUT_SOURCES)))
        runs = {s: [] for s in cpu_sets}
        meter = LoadMeter()
        with meter:
            for r in range(rounds):
                for cpus in (cpu_sets if r % 2 == 0 else cpu_sets[::-1]):
                    args = dict(kwargs, data_dir=data_dir)
                    args["sources"] = list(args.get("sources", INPUT_SOURCES))
                    args["pipelines"] = list(args.get("pipelines", INPUT_PIPELINES))
                    command = [sys.executable, "-c",
                               "import os, sys; os.sched_setaffinity(0, {%s}); "
                               "os.execv(sys.executable, [sys.executable, '-m', "
                               "'alexnet_tf.benchmark', '--input-worker', sys.argv[1]])"
                               % ",".join(str(c) for c in _parse_cpus(cpus)),
                               json.dumps(args)]
                    done = subprocess.run(command, capture_output=True, text=True,
                                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                                          cwd=os.path.dirname(os.path.dirname(
                                              os.path.abspath(__file__))))
                    if done.returncode:
                        raise RuntimeError(f"input worker on CPUs {cpus} failed: "
                                           f"{done.stderr[-2000:]}")
                    runs[cpus].append(json.loads(done.stdout.strip().splitlines()[-1]))
        table = {}
        for cpus, results in runs.items():
            cores = len(_parse_cpus(cpus))
            row = {}
            for source in results[0]["sources"]:
                for name in results[0]["sources"][source]:
                    values = [r["sources"][source][name]["images_per_s"] for r in results]
                    rate = _median(values)
                    row[f"{source}/{name}"] = {"images_per_s": rate,
                                               "images_per_s_per_core": rate / cores,
                                               "runs": [round(v, 1) for v in values]}
            table[cpus] = {"cores": cores, "pipelines": row,
                           "usable_cores_seen": results[0]["usable_cores"]}
        first = table[cpu_sets[0]]
        for cpus, row in table.items():
            for key, value in row["pipelines"].items():
                one = first["pipelines"][key]["images_per_s_per_core"]
                value["scaling_efficiency_vs_first"] = value["images_per_s_per_core"] / one
        return {"benchmark": "input_scaling", "cpu_sets": cpu_sets, "rounds": rounds,
                "settings": kwargs, "table": table, "machine": machine_info(),
                "load": meter.result()}
    finally:
        if not keep_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--torch-worker"]:
        _torch_worker()
    elif sys.argv[1:2] == ["--input-worker"]:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.WARNING)
        print(json.dumps(input_pipelines(**json.loads(sys.argv[2]))))
    else:
        sys.exit("usage: python -m alexnet_tf.benchmark --torch-worker | --input-worker JSON "
                 "(internal; use tools/benchmark.py)")
