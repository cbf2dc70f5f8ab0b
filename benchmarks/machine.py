"""The machine the figures come from: what it is, how busy other jobs kept it, how fast
it multiplies matrices.

    python tools/benchmark.py --benchmark=model     # prints all three beside its figures

Every benchmark prints `machine_info` (CPU model and SIMD flags, cores, versions, TF's
thread settings) and the `LoadMeter` result: the CPU time other processes used while
it ran, because the machines these run on are shared and noisy. The CPU flags name
the AVX-512 and AMX extensions (or "no AMX"), which decide how fast bfloat16 runs.
`Matmul` times one n x n `tf.linalg.matmul` in a precision (float32, bfloat16,
float16); the `model` benchmark interleaves it, and PyTorch's (`torch_peer.TorchMatmul`),
with the training step, so the peak and the fraction of it the step reaches come from
the same minutes. Also here: the helpers every benchmark shares (CPU sets, medians,
waiting for a result).
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import statistics
import time

import keras
import tensorflow as tf

# --------------------------------------------------------------------------- machine


# The flags that decide CPU kernel speed, in the order printed. The AVX-512 extensions and
# AMX tiles say which precisions oneDNN runs natively: avx512_bf16 gives bfloat16 dot
# products on AVX-512, amx_bf16/amx_tile (Sapphire Rapids and later) bfloat16 matmuls on
# tiles, several times faster; without them bfloat16 is computed through float32.
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16",
             "amx_tile", "amx_int8", "amx_fp16", "fma")
AMX_FLAGS = tuple(flag for flag in CPU_FLAGS if flag.startswith("amx_"))


def parse_cpu_flags(cpuinfo: str) -> str:
    """The `CPU_FLAGS` present in a /proc/cpuinfo text, space-separated, then "; no AMX"
    when it names no AMX flag ("avx2 avx512f avx512_bf16 avx512_vnni fma; no AMX");
    "none of ..." when it names none of them."""
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines()
                  if line.startswith("flags")), [])
    present = [flag for flag in CPU_FLAGS if flag in flags]
    if not present:
        return "none of " + ",".join(CPU_FLAGS)
    if not any(flag in flags for flag in AMX_FLAGS):
        return " ".join(present) + "; no AMX"
    return " ".join(present)


def cpu_kind(flags: str) -> str:
    """The CPU kind a `parse_cpu_flags` string names, by the fastest bfloat16 matmul it
    has: "AMX", "AVX512-BF16", "AVX-512", "AVX2" or "other"."""
    names = set(re.findall(r"\w+", flags))
    for flag, kind in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16"),
                       ("avx512f", "AVX-512"), ("avx2", "AVX2")):
        if flag in names:
            return kind
    return "other"


def cpu_flags() -> str:
    """`parse_cpu_flags` of this machine's /proc/cpuinfo (off Linux: the processor name)."""
    try:
        with open("/proc/cpuinfo") as f:
            return parse_cpu_flags(f.read())
    except OSError:
        return platform.processor() or "unknown"


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


def configure_threads(inter_op: int = 0, intra_op: int = 0) -> None:
    """TF's thread pools (0 keeps TF's default: one thread per usable core). Must run
    before TF executes its first op."""
    if inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    if intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)


def gpu_memory_growth() -> None:
    # TF takes all GPU memory at start by default; the PyTorch peer's process needs some.
    for gpu in tf.config.list_physical_devices("GPU"):
        with contextlib.suppress(RuntimeError, ValueError):  # already initialised
            tf.config.experimental.set_memory_growth(gpu, True)


def machine_info() -> dict:
    """CPU, cores, versions and the thread settings that decide the figures."""
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    flags = cpu_flags()
    return {
        "cpu_model": _cpu_model(),
        "cpu_flags": flags,
        "cpu_kind": cpu_kind(flags),
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


# ------------------------------------------------------------------------------ load

# Rounds during which other processes used at most this many cores count as quiet.
QUIET_OTHER_CORES = 0.25


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


# ------------------------------------------------------------------------- timing


def sync(value):
    """Waits for a result (GPU ops are asynchronous) by fetching one element."""
    tensor = value if isinstance(value, tf.Tensor) else tf.nest.flatten(value)[0]
    return tf.reshape(tensor, [-1])[0].numpy()


def median(values):
    """The median, or None when there is nothing to take it of."""
    return statistics.median(values) if values else None


# ------------------------------------------------------------------------ matmul peak


class Matmul:
    """One n x n matrix product per call, in `tf.function`, in ``dtype`` (a TF dtype or
    its name: "float32", "bfloat16", "float16")."""

    def __init__(self, n: int, dtype="float32"):
        self.n = n
        self.dtype = tf.as_dtype(dtype)
        self.a = tf.cast(tf.random.normal([n, n], seed=1), self.dtype)
        self.b = tf.cast(tf.random.normal([n, n], seed=2), self.dtype)
        self.fn = tf.function(tf.linalg.matmul)

    def __call__(self) -> float:
        """Seconds of one product (the result fetched)."""
        start = time.perf_counter()
        sync(self.fn(self.a, self.b))
        return time.perf_counter() - start

    def gflops(self, seconds: float) -> float:
        """GFLOP/s of one product that took ``seconds`` (2 n^3 FLOPs)."""
        return 2 * self.n ** 3 / seconds / 1e9


# ------------------------------------------------------------------------- CPU sets


def parse_cpus(text: str) -> list[int]:
    """A taskset-style CPU list ("0", "0-3", "0,2-3") -> the CPU numbers."""
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
