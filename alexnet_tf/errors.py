"""The errors a user causes and can fix: one base class, and the kinds shared by modules
that have no error class of their own.

Every binary and tool (`alexnet_tf.cli.app.run`) prints a `UserError` as one line,
``<binary>: error: <message>``, and exits with status 1; any other exception is a bug
in the package and keeps its traceback. Each module's own error class (`ConfigError`,
`RunError`, `SourceError`, ...) derives from `UserError` and from the built-in class it
has always derived from (``ValueError`` for most), so that ``except ValueError`` in
callers keeps catching it. Imports nothing, so that every module can use it.
"""


class UserError(Exception):
    """An error the user caused and can fix: a flag, a config value, a path, the data, a
    work directory that is not what was asked for. Its message says what is wrong, with
    the value, and what to do; the binaries print it as one line, without a traceback
    (``--verbose_errors`` or ``ALEXNET_TF_TRACEBACK=1`` show the traceback too)."""


class DataError(UserError, ValueError):
    """Data that cannot be used as given: a layout, a labels file, a class folder
    without an image, TFRecord shards or metadata that disagree, an empty split."""


class NotFoundError(UserError, FileNotFoundError):
    """A file or directory the user named does not exist, or is not the kind the
    command needs (a data directory that is a file)."""



class ExistsError(UserError, FileExistsError):
    """An output path that already holds something the command will not overwrite
    unless told to (the message names the flag that allows it)."""


class MissingDependencyError(UserError, ImportError):
    """An optional dependency that a feature needs is not installed; the message names
    the extra that installs it (``pip install -e '.[plots]'``)."""


BAD_RECORD_PREFIX = "alexnet_tf: bad record "  # data.on_bad_record="fail"'s message


def bad_record_in(error: BaseException) -> str | None:
    """``"<name> - <reason> (label <n>)"`` when ``error`` is TensorFlow's error for a bad
    record met with ``data.on_bad_record="fail"`` (a tf.errors.InvalidArgumentError from
    `alexnet_tf.data.pipeline`'s assertion, locally or from a tf.data service worker),
    else None."""
    import re

    # Greedy to the line's last "(label n)]": a file name may hold that text too.
    match = re.search(r"\[" + re.escape(BAD_RECORD_PREFIX) + r"(.*\(label -?\d+\))\]",
                      str(error))
    return match.group(1) if match else None
