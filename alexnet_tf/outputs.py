"""Files the package writes where the user says: never one of theirs replaced unasked,
never one left half-written.

`check_new_file` refuses an output path that exists unless the user asked to replace it
(``--overwrite``), and `check_writable` one that cannot be written (a directory's name,
a read-only or full disk), before any work starts; `write_atomically` writes through a temporary
file in the same directory and a rename, so a kill or a full disk leaves the earlier file
whole. Used by ``alexnet-eval --output`` and the PNG and statistics tools. Imports no
TensorFlow: the commands check their outputs before loading it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from typing import Iterator, Sequence

from alexnet_tf.errors import ExistsError, UserError


def _nearest_ancestor(path: str, holds) -> str | None:
    """The nearest directory above ``path`` for which ``holds(directory)``, or None."""
    directory = os.path.dirname(os.path.abspath(path))
    while not holds(directory):
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent
    return directory


def run_holding(path: str) -> str | None:
    """The work directory of the training run whose files include ``path`` (an ancestor
    directory holding ``config.json`` and ``checkpoints/``), or None."""
    return _nearest_ancestor(path, lambda d: os.path.isfile(os.path.join(d, "config.json"))
                             and os.path.isdir(os.path.join(d, "checkpoints")))


# Files that are a model by themselves: Keras files, TF checkpoints, weights to convert.
_MODEL_FILE_ENDINGS = (".keras", ".h5", ".pb", ".pth", ".pt", ".index", ".caffemodel")
# Marker files of a directory that is a model: a SavedModel (an export's version) and
# converted weights (tools/convert_weights.py).
_MODEL_MARKERS = ("saved_model.pb", "weights_info.json")


def model_holding(path: str) -> str | None:
    """The model ``path`` belongs to, or None: ``path`` itself when it is a model file
    (a ``.keras`` file, a checkpoint's ``.index`` or ``.data-*``, ...), else the nearest
    ancestor directory that is a SavedModel or converted weights."""
    name = os.path.basename(path)
    if name.endswith(_MODEL_FILE_ENDINGS) or ".data-" in name:
        return path
    return _nearest_ancestor(path, lambda d: any(os.path.isfile(os.path.join(d, m))
                                                 for m in _MODEL_MARKERS))


def check_new_file(path: str, overwrite: bool, flag: str = "--output",
                   inputs: Sequence[str] = ()) -> None:
    """Raises `ExistsError` when ``path`` exists (a file, a link) and not ``overwrite``,
    and `UserError` when it is a directory or its parent is a file; ``flag`` names the
    option in the message. Even with ``overwrite``, an existing file of a training run
    (its config, checkpoints, classes: anything in a run but the evaluation results
    ``eval_*.json`` at its top), a model's (`model_holding`: a ``.keras`` file, a file
    of an export's SavedModel or of converted weights, its ``eval_*.json`` excepted), any of ``inputs`` (the command's
    own inputs, e.g. the model it evaluates), a symbolic link (the link, not its target,
    would be replaced) and anything but a regular file (a FIFO or a device would be
    replaced by a file) are refused."""
    if os.path.isdir(path):
        raise UserError(f"{flag}={path!r} is a directory; expected a file name (one "
                        f"inside it, for example).")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)  # the nearest ancestor that exists
    if not os.path.isdir(parent):
        raise UserError(f"{flag}={path!r}: {parent!r} is a file, not a directory.")
    if os.path.islink(path):
        # Replacing the file would replace the link, not what it points to.
        raise UserError(f"{flag}={path!r} is a symbolic link (to "
                        f"{os.path.realpath(path)!r}); expected a file name, e.g. the "
                        f"link's target.")
    if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode):
        raise UserError(f"{flag}={path!r} is not a regular file (a FIFO, socket or "
                        f"device); expected a file name.")
    if os.path.lexists(path):
        target = os.path.realpath(path)
        if any(os.path.realpath(i) == target for i in inputs):
            raise UserError(f"{flag}={path!r} is an input of this command; expected "
                            f"another file name.")
        def own_result(directory):  # an evaluation's result at its top: replaceable
            return (directory == os.path.dirname(os.path.abspath(path))
                    and os.path.basename(path).startswith("eval_")
                    and path.endswith(".json"))

        run = run_holding(path)
        if run and not own_result(run):
            raise UserError(f"{flag}={path!r} is a file of the training run in {run!r}; "
                            f"expected a file outside it (or a new name).")
        model = model_holding(path)
        if model and not own_result(model):
            raise UserError(f"{flag}={path!r} is a file of the model {model!r}; expected "
                            f"a file outside it (or a new name).")
    if os.path.lexists(path) and not overwrite:
        raise ExistsError(f"{flag}={path!r} exists; give --overwrite to replace it, or "
                          f"another file name.")
    check_writable(path, flag)


# Enough to need a block of the disk: a full disk refuses it, an empty file would not.
_PROBE_BYTES = 4096


def check_writable(path: str, flag: str = "--output") -> None:
    """Raises `UserError` when a file cannot be written at ``path``, before the work that
    would produce it: ``path`` ends in a path separator (a directory's name, not a
    file's), or a probe file of 4 KiB written, synced and removed in the nearest
    directory that exists fails (read-only, not permitted, disk full). Makes no
    directory and leaves nothing behind."""
    if path.endswith(("/", os.sep)) or os.path.basename(path) in ("", ".", ".."):
        raise UserError(f"{flag}={path!r} names a directory; expected a file name (e.g. "
                        f"{os.path.join(path, 'result.json')!r}).")
    directory = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(directory) and os.path.dirname(directory) != directory:
        directory = os.path.dirname(directory)
    probe = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.probe")
    try:
        with open(probe, "wb") as file:
            file.write(b"\0" * _PROBE_BYTES)
            file.flush()
            os.fsync(file.fileno())
    except OSError as error:
        raise UserError(f"{flag}={path!r} cannot be written: {error.strerror or error} (in "
                        f"{directory!r}); expected a writable directory with free space, or "
                        f"another {flag}.") \
            from None
    finally:
        if os.path.lexists(probe):
            os.remove(probe)


@contextlib.contextmanager
def write_atomically(path: str, mode: str = "w") -> Iterator:
    """A file object for writing ``path``: a temporary file beside it, renamed over
    ``path`` when the block ends without an error (and removed when it does not). The
    directory is made if needed."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(temporary, mode) as file:
            yield file
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
