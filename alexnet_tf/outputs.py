"""Files the package writes where the user says: never one of theirs replaced unasked,
never one left half-written.

`check_new_file` refuses an output path that exists unless the user asked to replace it
(``--overwrite``), before any work starts; `write_atomically` writes through a temporary
file in the same directory and a rename, so a kill or a full disk leaves the earlier file
whole. Used by ``alexnet-eval --output`` and the PNG and statistics tools. Imports no
TensorFlow: the commands check their outputs before loading it.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Sequence

from alexnet_tf.errors import ExistsError, UserError


def run_holding(path: str) -> str | None:
    """The work directory of the training run whose files include ``path`` (an ancestor
    directory holding ``config.json`` and ``checkpoints/``), or None."""
    directory = os.path.dirname(os.path.abspath(path))
    while True:
        if (os.path.isfile(os.path.join(directory, "config.json"))
                and os.path.isdir(os.path.join(directory, "checkpoints"))):
            return directory
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def check_new_file(path: str, overwrite: bool, flag: str = "--output",
                   inputs: Sequence[str] = ()) -> None:
    """Raises `ExistsError` when ``path`` exists (a file, a link) and not ``overwrite``,
    and `UserError` when it is a directory or its parent is a file; ``flag`` names the
    option in the message. Even with ``overwrite``, an existing file of a training run
    (its config, checkpoints, classes: anything in a run but the evaluation results
    ``eval_*.json`` at its top) and any of ``inputs`` (the command's own inputs, e.g. the
    model it evaluates) are refused: replacing them would break what the command
    reads."""
    if os.path.isdir(path):
        raise UserError(f"{flag}={path!r} is a directory; expected a file name (one "
                        f"inside it, for example).")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)  # the nearest ancestor that exists
    if not os.path.isdir(parent):
        raise UserError(f"{flag}={path!r}: {parent!r} is a file, not a directory.")
    if os.path.lexists(path):
        target = os.path.realpath(path)
        if any(os.path.realpath(i) == target for i in inputs):
            raise UserError(f"{flag}={path!r} is an input of this command; expected "
                            f"another file name.")
        run = run_holding(path)
        own_result = (run == os.path.dirname(os.path.abspath(path))
                      and os.path.basename(path).startswith("eval_")
                      and path.endswith(".json"))
        if run and not own_result:
            raise UserError(f"{flag}={path!r} is a file of the training run in {run!r}; "
                            f"expected a file outside it (or a new name).")
    if os.path.lexists(path) and not overwrite:
        raise ExistsError(f"{flag}={path!r} exists; give --overwrite to replace it, or "
                          f"another file name.")


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
