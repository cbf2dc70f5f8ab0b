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
from typing import Iterator

from alexnet_tf.errors import ExistsError, UserError


def check_new_file(path: str, overwrite: bool, flag: str = "--output") -> None:
    """Raises `ExistsError` when ``path`` exists (a file, a link) and not ``overwrite``,
    and `UserError` when it is a directory or its parent is a file; ``flag`` names the
    option in the message."""
    if os.path.isdir(path):
        raise UserError(f"{flag}={path!r} is a directory; expected a file name (one "
                        f"inside it, for example).")
    parent = os.path.dirname(os.path.abspath(path))
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent) if os.path.dirname(parent) != parent else ""
    if parent and not os.path.isdir(parent):
        raise UserError(f"{flag}={path!r}: {parent!r} is a file, not a directory.")
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
