"""TensorFlow's own start-up logs, silenced before TensorFlow is imported.

On every start TensorFlow prints lines a user can do nothing about: the oneDNN and
CUDA-driver notes, the CPU-feature banner, ``failed call to cuInit`` on a machine
without a GPU, and, through Python logging, INFO lines such as ``Sharding callback
duration`` at every checkpoint and ``signature_serialization``'s renames at every
export. `silence` (called by `alexnet_tf.cli.app.run` before a binary's ``main``):

* sets ``TF_CPP_MIN_LOG_LEVEL=3`` unless the user set it: TF's C++ logs below FATAL
  are dropped. Errors that matter reach the user as Python exceptions.
* filters fd 2 while ``import tensorflow`` runs, by the same level: TF logs the oneDNN
  and CUDA-driver notes through absl before it reads ``TF_CPP_MIN_LOG_LEVEL`` (once
  per shared library with its own absl), and no environment variable reaches those
  (tensorflow/tensorflow#100442; absl's C++ log level has no environment variable).
  The filter is a child process, so that a crash inside the import still shows
  everything TF printed before it.
* drops the INFO lines TensorFlow and Keras log from Python: through the
  ``tensorflow`` logger (set to WARNING unless it has a level) and through absl's
  logger, which they share with the package (a filter on their own files).

``--tf_logs`` or ``ALEXNET_TF_TF_LOGS=1`` leaves all of it as TensorFlow does it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import os
import re
import subprocess
import sys

SHOW_VARIABLE = "ALEXNET_TF_TF_LOGS"
LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
QUIET_LEVEL = "3"  # INFO, WARNING and ERROR dropped; FATAL (then an abort) kept

# Runs in the filter process (python -I -S): copies stdin to stdout, line by line, but
# for C++ log lines below the level (argv[1]) and absl's preface to them.
_FILTER = r"""
import re, sys
level = int(sys.argv[1])
record = re.compile(rb"^(?:([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\]]*\] "
                    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: ([IWEF]) [^\]]*\] )")
preface = b"WARNING: All log messages before absl::InitializeLog() is called"
rank = {b"I": 0, b"W": 1, b"E": 2, b"F": 3}
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    match = record.match(line)
    if match and rank[match.group(1) or match.group(2)] < level:
        continue
    if line.startswith(preface) and level > 0:
        continue
    out.write(line)
    out.flush()
"""


def wanted() -> bool:
    """True when ``ALEXNET_TF_TF_LOGS`` asks for TensorFlow's logs."""
    return os.environ.get(SHOW_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")


_silenced = False


def is_silenced() -> bool:
    """Whether `silence` ran in this process (worker processes it starts follow it)."""
    return _silenced


def silence() -> None:
    """Silences TensorFlow's start-up logs (see the module docstring); call it before
    TensorFlow is imported. Each setting the user made is kept."""
    global _silenced
    _silenced = True
    os.environ.setdefault(LEVEL_VARIABLE, QUIET_LEVEL)
    # matplotlib's too ("generated new fontManager" when its cache is rebuilt), which
    # reaches the same handler.
    for name in ("tensorflow", "matplotlib"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
    absl_logger = logging.getLogger("absl")
    if not any(isinstance(f, _LibraryInfo) for f in absl_logger.filters):
        absl_logger.addFilter(_LibraryInfo())
    try:
        level = int(os.environ[LEVEL_VARIABLE])
    except ValueError:
        return  # TF ignores a value it cannot read; so does the filter
    if level > 0 and "tensorflow" not in sys.modules and not any(
            isinstance(finder, _ImportFilter) for finder in sys.meta_path):
        sys.meta_path.insert(0, _ImportFilter(level))


class _LibraryInfo(logging.Filter):
    """Drops records below WARNING that TensorFlow's or Keras' own files log ("Sharding
    callback duration" at every checkpoint, signature renames at every export); the
    package's records pass."""

    _PATH = re.compile(r"[/\\](?:site|dist)-packages[/\\](?:tensorflow|keras)[/\\]")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not self._PATH.search(record.pathname or "")


class _ImportFilter(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` as the path finder does, with a loader that runs the import
    with fd 2 through the filter process."""

    def __init__(self, level: int):
        self.level = level

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        spec.loader = _FilteredLoader(spec.loader, self)
        return spec


class _FilteredLoader(importlib.abc.Loader):
    def __init__(self, loader, finder: _ImportFilter):
        self._loader = loader
        self._finder = finder

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        # The module keeps TF's own loader: resource readers ask it.
        module.__loader__ = module.__spec__.loader = self._loader
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        with _filtered_stderr(self._finder.level):
            self._loader.exec_module(module)


class _filtered_stderr:
    """fd 2 through the filter process for the ``with`` block; nothing changes when
    the process cannot be started."""

    def __init__(self, level: int):
        self.level = level
        self.saved = self.child = None

    def __enter__(self):
        try:
            sys.stderr.flush()
            read_end, write_end = os.pipe()
        except (OSError, ValueError):
            return self
        failed = False
        try:
            self.child = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _FILTER, str(self.level)],
                stdin=read_end, stdout=2, stderr=2)
            self.saved = os.dup(2)
            os.dup2(write_end, 2)
        except (OSError, ValueError, subprocess.SubprocessError):
            failed = True
        finally:
            os.close(read_end)
            os.close(write_end)  # fd 2 holds the pipe now, or nothing does
        if failed:
            self._stop()
        return self

    def __exit__(self, *exc):
        self._stop()
        return False

    def _stop(self):
        if self.saved is not None:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(self.saved, 2)  # closes the pipe's last write end: the filter ends
            os.close(self.saved)
            self.saved = None
        if self.child is not None:
            self.child.wait()  # its last lines are out before anything after the import
            self.child = None
