"""How every binary and tool of the package starts: absl's ``app.run``, with one-line
errors, a --help that lists the binary's own flags, and TensorFlow's start-up logs
silenced.

Errors. A mistake of the user's prints one line on stderr, ``<binary>: error:
<message>``, with nothing before it: a flag absl cannot parse, a flag value the binary
refuses (absl's ``app.UsageError``, raised by ``main``) and a bad ``--config`` exit
with status 2; an `alexnet_tf.errors.UserError` raised anywhere below ``main`` (a path,
the data, a run, a model source), an ``OSError`` of the machine (disk full,
read-only or not permitted) and one of a path (missing, not a directory, a directory,
a link loop; the error names the file) exit with status 1, and so does TensorFlow's
out-of-memory error (one line naming the batch-size flags). A flag marked required
that is missing is named as such (status 2). Anything else is a bug in the package
and keeps its traceback. ``--verbose_errors`` or ``ALEXNET_TF_TRACEBACK=1`` print the
traceback of a user's error too.

Help. absl's --help prints ``__main__``'s docstring and the key flags of the module
named by ``sys.argv[0]``, and exits with status 1. A console script's ``__main__`` is
pip's wrapper, which defines no flags, so ``alexnet-train --help`` would list none ("Try
--helpfull"). `run` registers the binary module's flags (and this module's) as key
flags of the wrapper and lends it the module's docstring when it has none, so that
``alexnet-train --help``, ``python -m alexnet_tf.cli.train --help`` and ``python -m
alexnet_tf.train --help`` print the same thing; every help flag exits with status 0.

Logs. Before ``main`` runs (and so before TensorFlow is imported: binaries import it
inside ``main``), `alexnet_tf.cli.tf_logs.silence` silences TensorFlow's start-up logs,
unless ``--tf_logs`` or ``ALEXNET_TF_TF_LOGS=1`` asks for them.

Ctrl-C prints ``<binary>: interrupted`` and exits with status 130, without a traceback.
"""

from __future__ import annotations

import errno
import os
import re
import sys
import traceback
from typing import Callable, Sequence

from absl import app, flags

from alexnet_tf import errors
from alexnet_tf.cli import tf_logs

USAGE_STATUS = 2
ERROR_STATUS = 1
INTERRUPTED_STATUS = 130  # the shell's 128 + SIGINT
TRACEBACK_VARIABLE = "ALEXNET_TF_TRACEBACK"

_VERBOSE_ERRORS = flags.DEFINE_bool(
    "verbose_errors", False, f"Print the traceback of an error the user caused too (or "
    f"set {TRACEBACK_VARIABLE}=1).")
_TF_LOGS = flags.DEFINE_bool(
    "tf_logs", False, f"Show TensorFlow's start-up and C++ logs, silenced by default (or "
    f"set {tf_logs.SHOW_VARIABLE}=1).")
_COMMON_FLAGS = ("verbose_errors", "tf_logs")

_HELP_FLAGS = ("help", "helpshort", "helpfull", "helpxml", "?")

# OSErrors of the machine, not of the package: the message names the path.
_MACHINE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
# OSErrors of a path that names nothing usable (missing, a file where a directory is
# needed, or the reverse, a link loop). Every path a binary opens comes from its flags or
# from files the user made, so one with its file name is the user's: one line naming
# it. (A package bug of this kind would show the same line; --verbose_errors gives its
# traceback.)
_PATH_ERRNOS = {errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ELOOP}
# The same, as TensorFlow's file system reports them (its errors carry strerror's text).
_MACHINE_MESSAGES = ("No space left on device", "Disk quota exceeded",
                     "Read-only file system", "Permission denied")


def run(main: Callable, module_name: str, *, name: str | None = None,
        argv: Sequence[str] | None = None) -> None:
    """``app.run(main)`` for the binary defined in module ``module_name``.

    Args:
      main: the binary's ``main(argv)``; it returns the exit status (None: 0) and raises
        ``app.UsageError`` for a flag value it refuses.
      module_name: the module that defines the binary's flags (its ``__name__``).
      name: the binary's name in error lines; default: the script's file name.
      argv: the command line; default ``sys.argv``.
    """
    argv = list(sys.argv if argv is None else argv)
    name = name or os.path.basename(argv[0])
    module = sys.modules[module_name]
    main_module = sys.modules["__main__"]
    if main_module is not module:
        for flag in flags.FLAGS.get_key_flags_for_module(module_name):
            flags.FLAGS.register_key_flag_for_module(argv[0], flag)
        if not main_module.__doc__:  # a script of its own (tools/) keeps its own text
            main_module.__doc__ = module.__doc__
    for flag in _COMMON_FLAGS:
        flags.FLAGS.register_key_flag_for_module(argv[0], flags.FLAGS[flag])
    app.run(_guarded(main, name), argv=argv, flags_parser=lambda args: _parse(args, name))


def config_flag_value(name: str = "config"):
    """The ConfigDict of a ``config_flags.DEFINE_config_file`` flag, loaded with its
    ``--config.key=value`` overrides, or None when the flag is not given. A file that
    does not exist or cannot be loaded is a usage error (``app.UsageError``), named."""
    from ml_collections import config_flags

    flag = flags.FLAGS[name]
    if not flag.present:
        return None
    filename = config_flags.get_config_filename(flag)
    if not os.path.isfile(filename.split(":", 1)[0]):  # config_flags' own split of FILE:arg
        raise app.UsageError(f"--{name}={filename!r}: no such file; expected a config file "
                             f"such as configs/demo.py")
    try:
        # config_flags defers the errors of loading the file and of applying overrides
        # until the value is read; a file that failed gives a value that raises on use.
        value = flag.value
        value.keys()
    except (OSError, AttributeError, KeyError, TypeError, ValueError) as error:
        raise app.UsageError(f"bad --{name}: {_one_line(error)}") from error
    return value


def validated_config_flag_value(name: str = "config"):
    """`config_flag_value`, checked by the schema (`alexnet_tf.config.validate`): a value
    it refuses is a usage error (status 2), like the file's own errors; None when the
    flag is not given."""
    from alexnet_tf import config as config_lib  # the schema: imports no TensorFlow

    config = config_flag_value(name)
    if config is None:
        return None
    try:
        return config_lib.validate(config)
    except config_lib.ConfigError as error:
        raise app.UsageError(f"bad --{name}: {error}") from error


def _parse(argv: list[str], name: str):
    """absl's flag parsing, with one line (status 2) for a flag it cannot parse and
    status 0 for help (``-h`` too, which absl does not know)."""
    if "-h" in argv[1:argv.index("--") if "--" in argv else len(argv)]:
        argv = [arg if arg != "-h" else "--help" for arg in argv]
    try:
        return flags.FLAGS(argv)
    except BrokenPipeError:  # --help | head
        _silence_stdout()
        sys.exit(0)
    except SystemExit as done:
        if done.code == 1 and _asks_for_help(argv):
            sys.exit(0)  # absl's help flags print the help, then exit with status 1
        raise
    except (flags.Error, AttributeError, KeyError) as error:
        if not isinstance(error, flags.Error) and not any(
                re.match(r"--?\w+\.", arg) for arg in argv[1:]):
            _config_file_failed(error, argv, name)
            raise
        hint = ("alexnet-train --config=FILE --print_config lists the config keys"
                if not isinstance(error, flags.Error) else "--help lists the flags")
        _report(name, f"{_flag_message(error)} ({hint})", _wants_traceback(argv))
        sys.exit(USAGE_STATUS)
    except Exception as error:  # noqa: BLE001  (a config file's own error, else re-raised)
        _config_file_failed(error, argv, name)
        raise


def _config_file_failed(error: Exception, argv: Sequence[str], name: str) -> None:
    """Exits with one line (status 2) when ``error`` came from loading a ``--config``
    file given on the command line (config_flags runs the file while flags are parsed:
    a syntax error, an import it lacks, no get_config, a get_config that raises); returns
    otherwise."""
    files = [arg.split("=", 1)[1] for arg in argv[1:] if re.match(r"--?config=", arg)]
    if not files:
        return
    trace = traceback.extract_tb(error.__traceback__)
    path = os.path.abspath(files[0].split(":", 1)[0])
    where = getattr(error, "filename", None)
    in_file = (where and os.path.abspath(where) == path) or any(
        os.path.abspath(frame.filename) == path for frame in trace) or isinstance(
        error, AttributeError) and "get_config" in str(error)
    if not in_file:
        return
    line = getattr(error, "lineno", None) or next(
        (frame.lineno for frame in reversed(trace) if os.path.abspath(frame.filename) == path),
        None)
    hint = (" (--config takes a Python config file such as configs/demo.py, not a run's "
            "config.json)" if path.endswith(".json") else
            "; expected a Python file whose get_config() returns a ConfigDict, e.g. "
            "configs/demo.py")
    _report(name, f"--config={files[0]!r} cannot be loaded: {type(error).__name__}: "
                  f"{_one_line(error)}" + (f" (line {line})" if line and not
                                            isinstance(error, SyntaxError) else "") + hint,
            _wants_traceback(argv))
    sys.exit(USAGE_STATUS)


def _flag_message(error: Exception) -> str:
    if isinstance(error, flags.Error):
        # absl's text for flags marked required ("flag --x=None: Flag --x must have a
        # value other than None.", once per flag) says it twice and in absl's terms.
        missing = re.findall(r"Flag (--\w+) must have a value other than None", str(error))
        if missing:
            return f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required"
        return _one_line(error)
    # config_flags raises AttributeError or KeyError from inside parsing for a
    # --config.key=value naming no key; the text holds its suggestion.
    message = _one_line(error).strip("'\"")
    match = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', message)
    if match:
        message = f"{match.group(2)!r} is not a key; did you mean {match.group(1)!r}?"
    return f"unknown config key in a --config.* override: {message}"


def _asks_for_help(argv: Sequence[str]) -> bool:
    for arg in argv[1:]:
        if arg == "--":
            return False
        if arg.startswith("-") and arg.lstrip("-").split("=")[0] in _HELP_FLAGS:
            return True
    return False


def _guarded(main: Callable, name: str) -> Callable:
    """``main`` for absl's ``app.run``: TensorFlow's logs silenced first, and a user's
    error as one line and an exit status instead of a traceback."""

    def guarded(argv):
        if not (_TF_LOGS.value or tf_logs.wanted()):
            tf_logs.silence()
        try:
            return main(argv)
        except BrokenPipeError:  # the reader of stdout left (``| head``)
            _silence_stdout()
            return ERROR_STATUS
        except KeyboardInterrupt:  # Ctrl-C: the user's wish, not a bug
            if _wants_traceback():
                traceback.print_exc()
            print(f"{name}: interrupted", file=sys.stderr, flush=True)
            return INTERRUPTED_STATUS
        except Exception as error:  # noqa: BLE001  (sorted below; bugs are re-raised)
            status = exit_status(error)
            if status is None:
                raise
            _report(name, error_message(error), _wants_traceback())
            return status

    return guarded


def _silence_stdout() -> None:
    # Nothing to report; and Python must not fail again flushing stdout at exit.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def exit_status(error: BaseException) -> int | None:
    """The exit status of a user's error (2 for usage, 1 for the rest), or None for a
    bug."""
    if isinstance(error, (app.UsageError, flags.Error)):
        return USAGE_STATUS
    if isinstance(error, errors.UserError):
        return ERROR_STATUS
    if isinstance(error, OSError) and error.errno in _MACHINE_ERRNOS:
        return ERROR_STATUS
    if isinstance(error, OSError) and error.errno in _PATH_ERRNOS and error.filename:
        return ERROR_STATUS
    if _from_tensorflow(error) and errors.bad_record_in(error):
        return ERROR_STATUS
    if _from_tensorflow(error) and (
            type(error).__name__ == "ResourceExhaustedError"
            or any(text in str(error) for text in _MACHINE_MESSAGES)):
        return ERROR_STATUS
    return None


def error_message(error: BaseException) -> str:
    """The one line a user's error is reported with (after ``<binary>: error:``)."""
    if _from_tensorflow(error) and type(error).__name__ == "ResourceExhaustedError":
        # TensorFlow's text is a page of allocator state; its first line names the
        # tensor. What the user can change is the batch.
        first = next((line.strip() for line in str(error).splitlines() if line.strip()),
                     "")
        return (f"out of memory: {first[:300]} (TensorFlow's ResourceExhaustedError). "
                f"Lower the batch size: --batch_size=N for alexnet-eval, "
                f"--config.train.global_batch_size=N (and "
                f"--config.eval.global_batch_size=N) for alexnet-train.")
    record = _from_tensorflow(error) and errors.bad_record_in(error)
    if record:
        return (f"bad record {record}, and data.on_bad_record is 'fail' ('skip' skips, "
                f"counts and names each bad record instead).")
    return _one_line(error)


def _from_tensorflow(error: BaseException) -> bool:
    return type(error).__module__.startswith("tensorflow")


def _one_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return " ".join(lines) or type(error).__name__


def _wants_traceback(argv: Sequence[str] = ()) -> bool:
    if os.environ.get(TRACEBACK_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    if flags.FLAGS.is_parsed():
        return bool(flags.FLAGS["verbose_errors"].value)
    return any(arg in ("--verbose_errors", "-verbose_errors") for arg in argv)


def _report(name: str, message: str, with_traceback: bool) -> None:
    if with_traceback:
        traceback.print_exc()
    sys.stdout.flush()
    print(f"{name}: error: {message}", file=sys.stderr, flush=True)
