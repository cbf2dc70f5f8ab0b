"""How the benchmarks start their worker processes; it measures nothing itself.

    python tools/benchmark.py --benchmark=model            # the PyTorch peer's process
    python tools/benchmark.py --benchmark=input --scaling  # one pinned process per CPU set

Two benchmarks run part of their work in a fresh interpreter: the PyTorch peer
(`torch_peer.TorchPeer`, so that torch and TF never share thread pools) and the input
benchmark per CPU set (`input.input_scaling`, so that TF sizes tf.data's pools from
the pinned affinity). Each worker is ``python -m benchmarks.<module> --<kind>-worker``,
and the module's ``__main__`` block answers on stdout in JSON lines.
"""

from __future__ import annotations

import os
import sys

# `benchmarks` is not installed: a worker finds it (and this checkout's `alexnet_tf`)
# only with the repository root on its path, whatever the caller's directory is.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def argv(module: str, *args: str) -> list[str]:
    """The command line of ``python -m module args...`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def pinned_argv(cpus: list[int], module: str, *args: str) -> list[str]:
    """`argv` in a process pinned to ``cpus`` (as ``taskset -c``).

    The affinity is set first and the interpreter then replaces itself (execv), so
    TF, which reads the affinity when it starts, sees only those cores.
    """
    return [sys.executable, "-c",
            "import os, sys; os.sched_setaffinity(0, {%s}); "
            "os.execv(sys.executable, [sys.executable, '-m', %r] + sys.argv[1:])"
            % (",".join(str(c) for c in cpus), module), *args]


def env() -> dict:
    """The worker's environment: the repository root importable, TF's C++ logs off (the
    worker's stderr is kept for the error message if it dies)."""
    path = os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": path}
