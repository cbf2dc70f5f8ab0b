"""The `model` benchmark: the package's model and training step (the Keras contender)
against the matmul peak and the PyTorch peer.

    python tools/benchmark.py --benchmark=model --variant=paper --batch_size=32 [--xla]
        [--image_size=227] [--repeats=5] [--warmup=2] [--mixed_precision=bfloat16|float16]

Measures training images/s (forward, backward, optimizer update: the task's own
train step, `alexnet_tf.task.ClassificationTask.train_step`), inference images/s and batch-1 latency of a variant; its FLOPs
per image (`flops.model_flops`, analytical, cross-checked by TF's profiler); the
matmul peak of the run's precision (float32, or the mixed policy's bfloat16/float16:
the higher of TF's and PyTorch's n x n matmul, float32's beside it) and the fraction
of it the training step reaches; and the same network in PyTorch (`torch_peer`, in a
worker process) when torch imports.
`KerasContender` is also what `profile` traces.
"""

from __future__ import annotations

import math
import statistics
import time

import keras
import tensorflow as tf

from benchmarks.flops import model_flops, profiler_flops
from benchmarks.machine import (QUIET_OTHER_CORES, LoadMeter, Matmul, gpu_memory_growth,
                                machine_info, median, sync, wait_until_quiet)
from benchmarks.torch_peer import TorchPeer, architecture, torch_available

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


def training_optimizer(model: keras.Model, config):
    """The training loop's own optimizer for ``model`` (CoupledSGD, wrapped for loss
    scaling under float16), built as `alexnet-train` builds it.

    The harness's only call of `create_optimizer`: if it moves, re-point the import.
    """
    from alexnet_tf.train.optim import create_optimizer

    optimizer = create_optimizer(config.train, steps_per_epoch=1000,
                                 global_batch_size=config.train.global_batch_size)
    optimizer.build(model.trainable_variables)
    return optimizer


def training_step(model: keras.Model, optimizer, config):
    """(the task's train step for ``model`` as `alexnet-train` builds it, under the
    default `tf.distribute` strategy; the step builder's dotted name).

    The harness's only call into the training code's step: the reported name follows
    the method it calls.
    """
    from alexnet_tf.task import ClassificationTask

    builder = ClassificationTask.train_step
    step = ClassificationTask(config, tf.distribute.get_strategy()).train_step(model, optimizer)
    return step, f"{builder.__module__}.{builder.__qualname__}"


class KerasContender:
    """The package's model and training step, on fixed random inputs.

    The training step is the task's (`training_step`; what
    `alexnet-train` runs: forward, loss, backward, and `optim.CoupledSGD`, momentum 0.9
    with the paper's coupled weight decay in one fused update) under the default
    `tf.distribute` strategy; XLA is the loop's own ``train.jit_compile``.
    """

    def __init__(self, variant="paper", batch_size=32, image_size=None, width=1.0,
                 num_classes=1000, xla=False, mixed_precision=None, infer_batch_size=128,
                 seed=0):
        import alexnet_tf
        from alexnet_tf import models

        self.batch_size = batch_size
        self.infer_batch_size = infer_batch_size
        with models.global_policy(f"mixed_{mixed_precision}" if mixed_precision
                                  else "float32"):
            self.model = alexnet_tf.create_model(variant, num_classes, image_size, width, seed=seed)
            # None took the variant's own size; the model knows which, so the harness
            # needs no look into the variant table of its own.
            image_size = self.image_size = self.model.input_shape[1]
            config = _base_config(variant, num_classes, image_size, width, batch_size, xla,
                                  mixed_precision)
            self.optimizer = training_optimizer(self.model, config)
            self.train_fn, self.train_step_source = training_step(self.model, self.optimizer,
                                                                  config)
        self.params = int(sum(math.prod(v.shape) for v in self.model.trainable_variables))
        shape = [image_size, image_size, 3]
        self.images = tf.random.normal([batch_size, *shape], seed=seed)
        self.labels = tf.random.uniform([batch_size], 0, num_classes, tf.int32, seed=seed)
        self.infer_images = tf.random.normal([infer_batch_size, *shape], seed=seed + 1)
        self.one_image = self.infer_images[:1]
        self.infer_fn = tf.function(lambda x: self.model(x, training=False), jit_compile=bool(xla))

    def train(self) -> float:
        start = time.perf_counter()
        sync(self.train_fn((self.images, self.labels)))
        return time.perf_counter() - start

    def infer(self) -> float:
        start = time.perf_counter()
        sync(self.infer_fn(self.infer_images))
        return time.perf_counter() - start

    def latency(self, calls: int) -> list[float]:
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            sync(self.infer_fn(self.one_image))
            times.append(time.perf_counter() - start)
        return times


# --------------------------------------------------------------------- model benchmark


def _rates(seconds: list[float], batch: int) -> dict:
    med = median(seconds)
    return {"images_per_s": batch / med if med else None, "seconds_median": med,
            "seconds": [round(s, 5) for s in seconds]}


def matmul_precisions(mixed_precision: str | None) -> list[str]:
    """The matmul precisions a run measures: its own first (the one its peak is of:
    "bfloat16", "float16", or "float32" without mixed precision), then float32 when
    that differs, so that a reader sees both peaks from the same minutes."""
    precision = mixed_precision or "float32"
    return [precision] if precision == "float32" else [precision, "float32"]


def model(variant: str = "paper", batch_size: int = 32, image_size: int | None = None,
          width: float = 1.0, num_classes: int = 1000, repeats: int = 5, warmup: int = 2,
          xla: bool = False, mixed_precision: str | None = None,
          infer_batch_size: int = 128, latency_calls: int = 10,
          matmul_sizes=(2048, 4096), peer: bool = True, torch_threads: int = 0,
          wait_quiet: float = 0.0, seed: int = 0, torch_matmul: bool = True) -> dict:
    """Training/inference images/s, latency, FLOPs and the matmul peak; the PyTorch peer.

    Each of ``warmup + repeats`` rounds times, in turn: one n x n matmul per size and
    precision (`matmul_precisions`) by TF and by PyTorch, one Keras training step, one
    PyTorch training step, one inference batch of each, and ``latency_calls`` batch-1
    calls of each (the order of TF/Keras and PyTorch alternates between rounds).
    Warm-up rounds (tracing, XLA compilation, first touches) are dropped; figures are
    medians over the remaining rounds. The peak (GFLOP/s) is that of the run's precision,
    the higher of TF's and PyTorch's best median over the sizes (`matmul_peaks`); the
    training's fraction of it is reported beside (and of the float32 peak when the run
    is in bfloat16 or float16). PyTorch's matmul runs in the peer's process, also with
    ``peer=False`` (``torch_matmul=False`` leaves it out); without torch the peak is
    TF's, and ``matmul.torch_status`` says why.

    With ``wait_quiet`` > 0 each round first waits up to that many seconds for the
    machine to be quiet (`wait_until_quiet`); rounds during which other processes still
    used at most `QUIET_OTHER_CORES` are also summarised apart (``quiet``). Ratios are
    Keras/PyTorch throughput (> 1: Keras faster), from the medians, and also the median
    of the per-round ratios (``paired``), which is robust to load that drifts.
    """
    if mixed_precision not in (None, "", "none", "bfloat16", "float16"):
        raise ValueError(f"mixed_precision must be bfloat16, float16 or None, got "
                         f"{mixed_precision!r}.")
    mixed_precision = None if mixed_precision in ("", "none") else mixed_precision
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}.")
    gpu_memory_growth()
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
    precisions = matmul_precisions(mixed_precision)
    matmuls = [Matmul(n, precision) for precision in precisions for n in matmul_sizes]
    # One torch process serves both the peer's network and PyTorch's matmul.
    torch_side, peer_error, peer_info = None, None, None
    if not torch_available():
        torch_status = "torch is not installed: the peak is TF's (pip install -e '.[bench]')"
    elif not torch_matmul:
        torch_status = "not measured (--notorch_matmul): the peak is TF's"
    else:
        torch_status = "measured by torch.matmul in the PyTorch worker process"
    meter = LoadMeter()
    if torch_available() and (peer or torch_matmul):
        try:
            torch_side = TorchPeer(
                architecture(variant, num_classes, keras_side.image_size, width) if peer
                else None, batch_size, infer_batch_size, mixed_precision=mixed_precision,
                threads=torch_threads, gpu=gpu)
            meter.watch(torch_side.process.pid)
            if peer:
                peer_info = torch_side.info
                if torch_side.info.get("params") != keras_side.params:
                    peer_error = (f"parameter counts differ: torch "
                                  f"{torch_side.info.get('params')}, keras {keras_side.params}")
        except (RuntimeError, OSError, ValueError) as error:
            peer_error = str(error)
            torch_status = f"the PyTorch process failed to start: {error}; the peak is TF's"
    torch_matmul_errors = {}  # precision -> why torch.matmul gave no figure
    rounds = []
    try:
        with meter:
            for round_index in range(warmup + repeats):
                waited = wait_until_quiet(wait_quiet)
                record = {"matmul_gflops": {p: {"tf": {}, "torch": {}} for p in precisions},
                          "waited_s": round(waited, 1)}
                round_meter = LoadMeter()
                if torch_side is not None:
                    round_meter.watch(torch_side.process.pid)
                names = ["keras", "torch"] if round_index % 2 == 0 else ["torch", "keras"]
                with round_meter:
                    for m in matmuls:
                        precision = m.dtype.name
                        for name in names:
                            if name == "keras":
                                seconds = m()
                            elif (torch_side is None or not torch_matmul
                                  or precision in torch_matmul_errors):
                                continue
                            else:
                                try:
                                    seconds = torch_side.matmul(m.n, precision)
                                except (RuntimeError, OSError, ValueError) as error:
                                    if torch_side.process.poll() is not None:
                                        peer_error = f"the PyTorch process died: {error}"
                                        torch_side.close()
                                        torch_side = None
                                    torch_matmul_errors[precision] = str(error)
                                    continue
                            framework = "tf" if name == "keras" else "torch"
                            record["matmul_gflops"][precision][framework][str(m.n)] = (
                                m.gflops(seconds))
                    for what in ("train", "infer", "latency"):
                        for name in names:
                            side = keras_side if name == "keras" else (
                                torch_side if peer else None)
                            if side is None:
                                continue
                            try:
                                value = (statistics.median(side.latency(latency_calls))
                                         if what == "latency" else getattr(side, what)())
                            except (RuntimeError, OSError, ValueError) as error:
                                if name == "keras":
                                    raise
                                peer_error = f"the PyTorch peer failed: {error}"
                                torch_side.close()
                                torch_side = None  # the peer died: Keras goes on alone
                                continue
                            record[f"{name}_{what}"] = value
                record["other_cores"] = round_meter.result().get("other_cores")
                if round_index >= warmup:
                    rounds.append(record)
    finally:
        if torch_side is not None:
            torch_side.close()
    result["load"] = meter.result()
    result["load"]["other_cores_per_round"] = [r["other_cores"] for r in rounds]
    train_gflops = flops["training_flops"] / 1e9
    precision = precisions[0]
    result.update(_model_figures(rounds, batch_size, infer_batch_size, train_gflops, precision))
    if torch_matmul_errors:
        torch_status += "; no PyTorch figure for " + "; ".join(
            f"{p}: {e}" for p, e in torch_matmul_errors.items())
    result["matmul"]["torch_status"] = torch_status
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
        result["quiet"] = _model_figures(quiet, batch_size, infer_batch_size, train_gflops,
                                         precision)
    result["rounds"] = rounds
    return result


_FRAMEWORKS = ("tf", "torch")


def matmul_peaks(rounds: list[dict], precision: str) -> dict:
    """The matmul peak of ``precision`` from per-round figures.

    ``rounds``: dicts whose ``matmul_gflops[precision][framework][str(n)]`` is the GFLOP/s
    of one n x n matmul in that round (framework "tf" or "torch"; a framework or size
    may be absent). Per precision and framework: the median GFLOP/s per size over the
    rounds, and its best size (``peak_gflops``, ``peak_size``); per precision: the
    higher framework (``peak_framework``; TF on a tie). The result's own
    ``peak_gflops``/``peak_framework``/``peak_size`` are ``precision``'s, the one the
    run's fraction of peak divides by; ``precisions`` holds every precision measured.
    """
    table = {}
    names = list(dict.fromkeys(p for r in rounds for p in r["matmul_gflops"]))
    for name in names:
        entry = {}
        for framework in _FRAMEWORKS:
            per_size = [r["matmul_gflops"].get(name, {}).get(framework, {}) for r in rounds]
            sizes = sorted({n for figures in per_size for n in figures}, key=int)
            if not sizes:
                continue
            by_size = {n: {"gflops_median": median([f[n] for f in per_size if n in f]),
                           "gflops": [round(f[n], 1) for f in per_size if n in f]}
                       for n in sizes}
            best = max(sizes, key=lambda n: by_size[n]["gflops_median"])
            entry[framework] = {"sizes": by_size, "peak_gflops": by_size[best]["gflops_median"],
                                "peak_size": int(best)}
        frameworks = [f for f in _FRAMEWORKS if f in entry]
        best = max(frameworks, key=lambda f: entry[f]["peak_gflops"], default=None)
        entry.update(peak_gflops=best and entry[best]["peak_gflops"], peak_framework=best,
                     peak_size=best and entry[best]["peak_size"])
        table[name] = entry
    own = table.get(precision, {})
    return {"precision": precision, "peak_gflops": own.get("peak_gflops"),
            "peak_framework": own.get("peak_framework"), "peak_size": own.get("peak_size"),
            "precisions": table}


def _model_figures(rounds, batch_size, infer_batch_size, train_gflops,
                   precision="float32") -> dict:
    """Medians over ``rounds`` (one dict of timings per round): the matmul peak of
    ``precision`` (`matmul_peaks`), rates and GFLOP/s, the fraction of the peak, ratios."""
    matmul = matmul_peaks(rounds, precision)
    peak = matmul["peak_gflops"]
    fp32_peak = matmul["precisions"].get("float32", {}).get("peak_gflops")
    matmul["compute_limit_train_images_per_s"] = peak / train_gflops if peak else None
    out = {"matmul": matmul}

    def values(key):
        return [r[key] for r in rounds if key in r]

    for name in ("keras", "torch"):
        if not values(f"{name}_train"):
            continue
        side = {"train": _rates(values(f"{name}_train"), batch_size),
                "infer": _rates(values(f"{name}_infer"), infer_batch_size)}
        latency = median(values(f"{name}_latency"))
        side["latency_ms"] = latency * 1000 if latency else None
        rate = side["train"]["images_per_s"]
        side["train_gflops_per_s"] = rate * train_gflops if rate else None
        # Of the run's own precision's peak; float32's beside it for a bf16/fp16 run.
        side["fraction_of_matmul_peak"] = rate * train_gflops / peak if rate and peak else None
        if precision != "float32":
            side["fraction_of_float32_matmul_peak"] = (rate * train_gflops / fp32_peak
                                                       if rate and fp32_peak else None)
        out[name] = side
    if "keras" in out and "torch" in out:
        k, t = out["keras"], out["torch"]

        def paired(what):
            pairs = [r[f"torch_{what}"] / r[f"keras_{what}"] for r in rounds
                     if f"torch_{what}" in r and f"keras_{what}" in r]
            return median(pairs)

        out["ratios"] = {
            "train_keras_over_torch": t["train"]["seconds_median"] / k["train"]["seconds_median"],
            "infer_keras_over_torch": t["infer"]["seconds_median"] / k["infer"]["seconds_median"],
            "latency_torch_over_keras": (t["latency_ms"] / k["latency_ms"]
                                         if t["latency_ms"] and k["latency_ms"] else None),
            "train_paired_median": paired("train"),
            "infer_paired_median": paired("infer"),
        }
    return out
