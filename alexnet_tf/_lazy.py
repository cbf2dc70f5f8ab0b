"""Names of a package that load their module on first use (PEP 562).

The package and `alexnet_tf.export` name their API without importing TensorFlow, so
that config files and every binary's ``--help`` start without it.
"""

from __future__ import annotations

import importlib
import sys
from typing import Callable


def attach(package: str, names: dict[str, str]) -> tuple[Callable, Callable]:
    """The ``__getattr__`` and ``__dir__`` of ``package`` for ``names`` (name -> the
    module that defines it); a loaded name is kept in the package's namespace."""

    def __getattr__(name: str):
        if name in names:
            value = getattr(importlib.import_module(names[name]), name)
            setattr(sys.modules[package], name, value)  # once: later lookups skip this
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
