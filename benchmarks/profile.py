"""The `profile` benchmark: where the training step's time goes, per op, op type and layer.

    python tools/benchmark.py --benchmark=profile --variant=paper --batch_size=32 [--logdir=DIR]

Traces a few training steps of the Keras contender (`model.KerasContender`: the
training loop's own step) with `tf.profiler.experimental` and reads the trace's
XPlane file (`summarize_trace`): host CPU ops, or on GPU the device kernels' plane,
and the HLO ops of XLA clusters attributed to the TF op that launched them. Each
layer's training GFLOP per image (`flops.model_flops`) stands beside its time.
"""

from __future__ import annotations

import bisect
import os
import re
import shutil
import statistics
import tempfile

import keras
import tensorflow as tf

from benchmarks.flops import model_flops
from benchmarks.machine import LoadMeter, gpu_memory_growth, machine_info, wait_until_quiet
from benchmarks.model import KerasContender

# Op types of the optimizer update (element-wise arithmetic, variable writes): ops
# that no layer's name scope claims count as the update when of these types.
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
    gpu_memory_growth()
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
