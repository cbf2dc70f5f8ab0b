"""A run's work directory: the one owner of its files, its config, classes and checkpoints.

Training writes a work directory and evaluation, export and the analyses read it;
all of them go through `Run`, so every file name lives here and there is one way
to turn a run into a model (`Run.restore_model`)::

    WORKDIR/
      config.json            the resolved config (config.<n>.json: earlier ones)
      classes.json           [{"index": i, "id": wnid, "name": readable}] in index order
      input_convention.json  how pixels become the model's input (`InputConvention`)
      checkpoints/ckpt-N.*   the newest K, every N steps and at each epoch's end
      checkpoints/checkpoint TF's state file: which ckpt-N is the newest (`checkpoint_state`)
      checkpoints/best/      the lowest validation top-1 error so far
      tensorboard/{train,eval}/
      metrics.json           the final validation metrics and a weights checksum
      eval_<split>_<crops>.json   what alexnet-eval wrote
      .lock                  held while a run trains here (`Run.lock`): one at a time

A training checkpoint holds ``model``, ``optimizer``, ``step`` and the loop's
state; readers restore the ``model`` alone, every variable checked.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from typing import Any

from alexnet_tf import config as config_lib
from alexnet_tf import convention as convention_lib
from alexnet_tf.errors import UserError

CONFIG_FILENAME = "config.json"
CLASSES_FILENAME = "classes.json"
METRICS_FILENAME = "metrics.json"
LOCK_FILENAME = ".lock"
CHECKPOINT_DIR = "checkpoints"
BEST_DIR = "best"  # under CHECKPOINT_DIR
TENSORBOARD_DIR = "tensorboard"
CHECKPOINT_CHOICES = ("auto", "best", "latest")
STATE_FILENAME = "checkpoint"  # TF's checkpoint state, in each checkpoint directory


class RunError(UserError, ValueError):
    """A directory that is not a run, or a run that lacks what was asked of it."""


class CheckpointError(RunError):
    """No such checkpoint, or one that does not fit the model."""


class CheckpointStateError(CheckpointError):
    """A directory's ``checkpoint`` state file exists but does not say which checkpoint
    is the newest: TF cannot read it (binary, truncated, empty, a directory), or the
    checkpoint it names has no ``.index`` file (deleted, or an absolute path into a
    directory the run was moved from). ``path`` is the file, ``reason`` why it cannot
    be used, ``missing`` the named checkpoint that is not there ("" when the file
    cannot be read at all)."""

    def __init__(self, message: str, path: str = "", reason: str = "", missing: str = ""):
        super().__init__(message)
        self.path = path
        self.reason = reason
        self.missing = missing


class RunConfigError(RunError, config_lib.ConfigError):
    """A run's config.json that cannot be read back: not JSON, not an object, a key of
    the wrong type or a value the schema refuses. Also a ConfigError, so that callers
    that catch a bad config keep catching it."""


def check_workdir_path(workdir: str) -> None:
    """Refuses (RunError) a training ``workdir`` that exists and is not a directory, and a
    directory that holds files but no run (no ``config.json``): a run writes its
    config.json, classes.json, metrics.json, ... there, and would replace files of the
    same names that are the user's. A directory holding only a lock (a first run killed
    before its config was written) is a new run's."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise RunError(f"--workdir {workdir!r} is a file; expected a directory (a new one, "
                       f"or a run's to resume it).")
    if not os.path.isdir(workdir) or os.path.exists(os.path.join(workdir, CONFIG_FILENAME)):
        return
    entries = sorted(name for name in os.listdir(workdir) if name != LOCK_FILENAME)
    if entries:
        shown = ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5
                                          else "")
        raise RunError(f"--workdir {workdir!r} holds files ({shown}) but no run (no "
                       f"config.json); expected a new or empty directory, or a run's work "
                       f"directory to resume it. Nothing was written.")


def read_saved_config(path: str):
    """A run's config.json (``path``) read back through today's schema
    (`alexnet_tf.config.read_config`: keys added since take their defaults).

    Raises RunConfigError (a RunError and a ConfigError) naming ``path`` and what is
    wrong in it: not JSON (or truncated), not a JSON object, a missing group, an unknown
    key, a key of the wrong type (``"train": {"total_epochs": "ten"}``) or a value the
    schema refuses; the message says how to mend it. An OSError of the file itself
    (permissions) propagates.
    """
    fix = (" Correct it, or put back a copy (config.<n>.json beside it, if any, are the "
           "run's earlier configs).")
    try:
        return config_lib.read_config(path)
    except config_lib.ConfigError as error:
        message = str(error).rstrip()
        if repr(path) not in message:
            message = f"{path!r}: {message}"
        raise RunConfigError(message + ("" if message.endswith(".") else ".") + fix) from None
    except RecursionError:
        raise RunConfigError(f"{path!r} is not a saved config: its JSON nests too "
                             f"deeply.{fix}") from None
    except ValueError as error:  # a check below the schema's own (they raise ConfigError)
        raise RunConfigError(f"{path!r}: {error}.{fix}") from None


def _diff(a: dict, b: dict, prefix: str = ""):
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            yield from _diff(x, y, prefix + key + ".")
        elif x != y:
            yield prefix + key


@dataclasses.dataclass
class RestoredModel:
    """A run's model with the weights of one checkpoint.

    Attributes:
      model: the Keras model (images -> logits), built from ``config``.
      config: the run's config (``model.grouped_conv_implementation`` as asked).
      checkpoint: the checkpoint prefix the weights came from.
      step: the training step saved with it (None when the file has none).
    """

    model: Any
    config: Any
    checkpoint: str
    step: int | None


class Run:
    """The work directory of one training run (see the module docstring for its files).

    Creating a `Run` touches nothing on disk; the readers raise `RunError` (or
    `CheckpointError`) naming the directory and what is missing.
    """

    def __init__(self, workdir: str | os.PathLike):
        self.workdir = os.fspath(workdir)
        self._config = None

    def __repr__(self) -> str:
        return f"Run({self.workdir!r})"

    # ------------------------------------------------------------------ paths

    @property
    def config_path(self) -> str:
        return os.path.join(self.workdir, CONFIG_FILENAME)

    @property
    def classes_path(self) -> str:
        return os.path.join(self.workdir, CLASSES_FILENAME)

    @property
    def metrics_path(self) -> str:
        return os.path.join(self.workdir, METRICS_FILENAME)

    @property
    def checkpoint_dir(self) -> str:
        return os.path.join(self.workdir, CHECKPOINT_DIR)

    @property
    def best_dir(self) -> str:
        return os.path.join(self.workdir, CHECKPOINT_DIR, BEST_DIR)

    def tensorboard_dir(self, name: str) -> str:
        """``tensorboard/<name>``: "train" or "eval"."""
        return os.path.join(self.workdir, TENSORBOARD_DIR, name)

    def eval_path(self, split: str, ten_crop: bool) -> str:
        """Where alexnet-eval writes its result by default."""
        return os.path.join(self.workdir, f"eval_{split}_{'tencrop' if ten_crop else 'center'}.json")

    def exists(self) -> bool:
        """True when the directory holds a run (its config.json)."""
        return os.path.exists(self.config_path)

    # ----------------------------------------------------------------- config

    @property
    def config(self):
        """The run's config.json, validated through today's schema (read once).

        Raises RunError when the directory has no config.json, and RunConfigError (a
        RunError and a ConfigError) naming the file and the first wrong key and value
        when it cannot be read back (`read_saved_config`)."""
        if self._config is None:
            if not self.exists():
                raise RunError(f"{self.workdir!r} is not the work directory of a training run: "
                               f"{CONFIG_FILENAME} is missing.")
            self._config = read_saved_config(self.config_path)
        return self._config

    def config_changes(self, config) -> list[str]:
        """The dotted keys in which ``config`` differs from the run's saved one; empty for
        a new run or the same config. A saved config that today's schema cannot read
        counts as one change (named)."""
        if not self.exists():
            return []
        try:
            # Through the schema: keys added since the run started compare at their
            # defaults instead of counting as a change.
            saved = json.loads(read_saved_config(self.config_path).to_json_best_effort())
        except RunConfigError as error:
            saved = {"<unreadable under this version's schema>": str(error)}
        return list(_diff(saved, json.loads(config.to_json_best_effort())))

    def write_config(self, config, *, keep_previous: bool = False) -> str:
        """Writes ``config`` as config.json, atomically. With ``keep_previous``, the one
        it replaces is kept as ``config.<n>.json`` (the lowest free n). Returns the
        kept path, or config.json's."""
        os.makedirs(self.workdir, exist_ok=True)
        kept = None
        if keep_previous and self.exists():
            number = 1
            while os.path.exists(os.path.join(self.workdir, f"config.{number}.json")):
                number += 1
            kept = os.path.join(self.workdir, f"config.{number}.json")
            with open(self.config_path, "rb") as src, open(kept, "wb") as dst:
                dst.write(src.read())
        config_lib.write_config(config, self.config_path)
        self._config = None
        return kept or self.config_path

    # ------------------------------------------------------- input convention

    @property
    def convention_path(self) -> str:
        return os.path.join(self.workdir, convention_lib.FILENAME)

    @property
    def convention(self) -> convention_lib.InputConvention:
        """The run's input convention: its input_convention.json, or, for runs written
        before that file was, the one its config describes.

        Raises RunError when the file cannot be read, or says another thing than the
        config does (then training, evaluation and the export would disagree about
        what the model's input is)."""
        described = None
        try:
            described = convention_lib.InputConvention.from_config(self.config)
        except (OSError, ValueError) as error:
            if not os.path.exists(self.convention_path):
                raise RunError(f"The input convention of {self.workdir!r} cannot be built "
                               f"from its config: {error}") from None
            # The saved file is the record (e.g. the stats file has moved since).
        if not os.path.exists(self.convention_path):
            return described
        try:
            saved = convention_lib.InputConvention.load(self.workdir)
        except (OSError, convention_lib.ConventionError) as error:
            raise RunError(f"{self.convention_path!r} cannot be read: {error}") from None
        if described is not None and saved != described:
            fields = [k for k, v in saved.to_dict().items() if described.to_dict()[k] != v]
            if saved.mean_image is not None and described.mean_image is not None:
                fields.append("mean_image")
            raise RunError(
                f"{self.convention_path!r} disagrees with {CONFIG_FILENAME} in {fields}: "
                f"the file says {saved.to_dict()}, the config describes "
                f"{described.to_dict()}. Restore the file, or remove it to take the config's.")
        return saved

    def write_convention(self, convention: convention_lib.InputConvention) -> str:
        return convention.save(self.workdir)

    # ---------------------------------------------------------------- classes

    def write_classes(self, class_names, readable_names=None) -> str:
        """Writes classes.json: index -> id (e.g. a wnid) -> readable name.

        Raises RunError unless the ids (and readable names, when given) are strings, one
        per class, so that the file always reads back (`classes`)."""
        readable = readable_names or class_names
        if len(readable) != len(class_names) or not all(
                isinstance(n, str) and n for n in (*class_names, *readable)):
            raise RunError(f"Classes need one non-empty string id and name each; got "
                           f"{len(class_names)} ids {list(class_names)[:5]}... and "
                           f"{len(readable)} names {list(readable)[:5]}...")
        classes = [{"index": i, "id": c, "name": n}
                   for i, (c, n) in enumerate(zip(class_names, readable))]
        os.makedirs(self.workdir, exist_ok=True)
        tmp = self.classes_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(classes, f, indent=1)
        os.replace(tmp, self.classes_path)
        return self.classes_path

    def classes(self, num_classes: int | None = None) -> list[dict]:
        """classes.json ([{"index", "id", "name"}] in index order), checked; with
        ``num_classes``, also that it lists exactly that many."""
        path = self.classes_path
        try:
            with open(path) as f:
                classes = json.load(f)
        except FileNotFoundError:
            raise RunError(f"{path!r} is missing: the training loop writes it at the start "
                           f"of a run.") from None
        except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError) as error:
            raise RunError(f"{path!r} is not JSON: {error}") from None
        if not isinstance(classes, list):
            raise RunError(f"{path!r} must hold a JSON list of classes, got "
                           f"{type(classes).__name__}.")
        expected = len(classes) if num_classes is None else num_classes
        if (len(classes) != expected
                or any(not isinstance(c, dict) or c.get("index") != i
                       or not isinstance(c.get("id"), str) or not isinstance(c.get("name"), str)
                       for i, c in enumerate(classes))):
            raise RunError(f"{path!r} must list {expected} classes (config.model.num_classes) "
                           f"as {{\"index\": i, \"id\": str, \"name\": str}} in index order.")
        return classes

    def class_names(self) -> list[str] | None:
        """Readable class names by index (as many as the model's classes), or None when
        the run has no classes.json."""
        if not os.path.exists(self.classes_path):
            return None
        return [c["name"] or c["id"] for c in self.classes(self.config.model.num_classes)]

    # ---------------------------------------------------------------- metrics

    def write_metrics(self, metrics: dict) -> str:
        tmp = self.metrics_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(metrics, f, indent=2)
        os.replace(tmp, self.metrics_path)
        return self.metrics_path

    # ------------------------------------------------------------------ lock

    def lock(self) -> "RunLock":
        """An exclusive lock on the work directory, for ``with``: one training run
        writes here at a time (see `RunLock`)."""
        return RunLock(os.path.join(self.workdir, LOCK_FILENAME))

    # ------------------------------------------------------------ checkpoints

    def checkpoint(self, choice: str = "latest") -> str:
        """The checkpoint prefix that ``choice`` names (see `resolve_checkpoint`)."""
        return resolve_checkpoint(self.workdir, choice)

    def restore_model(self, checkpoint: str = "auto", *,
                      grouped_conv_implementation: str | None = None) -> RestoredModel:
        """The run's model (`alexnet_tf.models.model_from_config` of its config) with the
        weights of ``checkpoint`` ("auto": best, else latest; see `resolve_checkpoint`).

        ``grouped_conv_implementation`` replaces the config's (export traces "split",
        which every server runs). Raises CheckpointError when the checkpoint does not
        hold every variable of the model.
        """
        from alexnet_tf import models

        config = self.config
        if grouped_conv_implementation is not None:
            config = copy.deepcopy(config)
            with config.unlocked():
                config.model.grouped_conv_implementation = grouped_conv_implementation
        path = self.checkpoint(checkpoint)
        model = models.model_from_config(config)
        try:
            restore_weights(model, path)
        except CheckpointError as error:
            m = config.model
            raise CheckpointError(f"{error} (the run's config builds {m.variant}, width "
                                  f"{m.width}, {m.num_classes} classes)") from None
        return RestoredModel(model, config, path, checkpoint_step(path))


class RunLock:
    """``flock`` on ``WORKDIR/.lock``, held while a run trains there.

    Two trainings in one work directory would write different weights under the same
    checkpoint names; the second refuses at once, naming the holder's pid and host
    (written into the file). The kernel drops the lock when its process ends, even by
    SIGKILL, so a killed run never leaves the directory locked. With several workers
    the chief holds it.
    """

    def __init__(self, path: str):
        self.path = path
        self._fd = None

    def __enter__(self) -> "RunLock":
        import fcntl
        import socket

        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise RunError(f"{os.path.dirname(self.path)!r} is in use by another training "
                           f"run ({holder}): one run per work directory. Wait for it to "
                           f"finish, stop it, or use another --workdir.") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None


def resolve_checkpoint(workdir: str | None, checkpoint: str = "latest") -> str:
    """The checkpoint prefix that ``checkpoint`` names for the run in ``workdir``.

    ``"latest"``: the newest of ``<workdir>/checkpoints``; ``"best"``: the newest of
    ``<workdir>/checkpoints/best``; ``"auto"``: best if there is one, else latest;
    anything else: a checkpoint prefix (``.../ckpt-108``) or a directory whose newest
    checkpoint is taken. Raises CheckpointError naming what is missing, and
    CheckpointStateError (a CheckpointError) when a ``checkpoint`` state file it needs is
    damaged or names a checkpoint whose files are not there (`latest_checkpoint`;
    "auto" does not pass over such a best state to the latest: the message names the
    checkpoints there, to give one explicitly).
    """
    import tensorflow as tf

    if not isinstance(checkpoint, str) or not checkpoint:
        raise CheckpointError(f"checkpoint must be one of {list(CHECKPOINT_CHOICES)} or a "
                              f"path, got {checkpoint!r}.")
    if checkpoint.endswith(".index") and tf.io.gfile.exists(checkpoint):
        checkpoint = checkpoint[:-len(".index")]  # the prefix is what TF reads
    if checkpoint in CHECKPOINT_CHOICES:
        if not workdir:
            raise CheckpointError(f"checkpoint={checkpoint!r} needs the run's work directory.")
        directory = os.path.join(workdir, CHECKPOINT_DIR)
        best_dir = os.path.join(directory, BEST_DIR)
        # "latest" never reads the best's state: a damaged one must not stop it.
        best = (latest_checkpoint(best_dir) if checkpoint != "latest" and os.path.isdir(best_dir)
                else None)
        if checkpoint == "best" or (checkpoint == "auto" and best):
            if not best:
                raise CheckpointError(
                    f"No best checkpoint in {best_dir!r} (the run has not evaluated yet); use "
                    f"'latest' or a checkpoint path.")
            return best
        latest = latest_checkpoint(directory) if os.path.isdir(directory) else None
        if not latest:
            raise CheckpointError(_no_state_message(
                directory, f"is {workdir!r} the work directory of a run that has saved one?"))
        return latest
    if os.path.isdir(checkpoint):
        found = latest_checkpoint(checkpoint)
        if not found:
            raise CheckpointError(_no_state_message(checkpoint, ""))
        return found
    if tf.io.gfile.exists(checkpoint + ".index"):
        return checkpoint
    raise CheckpointError(
        f"Checkpoint {checkpoint!r} is neither one of {list(CHECKPOINT_CHOICES)}, a checkpoint "
        f"prefix (a path P with P.index beside it, e.g. RUN/checkpoints/ckpt-1000), nor a "
        f"directory of checkpoints.")


def _no_state_message(directory: str, question: str) -> str:
    """A directory without a ``checkpoint`` state file: the checkpoint files it still
    holds are named (the state file may be lost), else ``question``."""
    found = present_checkpoints(directory) if os.path.isdir(directory) else []
    if not found:
        return (f"No checkpoint in {directory!r} (no 'checkpoint' state file naming one)"
                + (f": {question}" if question else "."))
    return (f"No 'checkpoint' state file in {directory!r} says which checkpoint is the "
            f"newest, but it holds {', '.join(os.path.basename(p) for p in found[:5])}"
            f"{', ...' if len(found) > 5 else ''} (newest first): give one explicitly "
            f"(--checkpoint={found[0]}), or write {STATE_FILENAME!r} there as the one line "
            f"model_checkpoint_path: \"{os.path.basename(found[0])}\".")


def checkpoint_state(directory: str):
    """TF's checkpoint state of ``directory`` (its ``checkpoint`` text file: the newest
    checkpoint and the ones kept, as absolute prefixes), or None when there is no such
    file.

    Raises CheckpointStateError naming the file when it exists but TF cannot read it
    (binary bytes, truncated, empty, a directory): TF itself would raise a protobuf or
    Unicode error for some of these and silently answer "no checkpoint" for others. The
    file is left as it is. An OSError of the machine (permissions) propagates. Whether
    the checkpoints it names are there is not checked (`latest_checkpoint` does).
    """
    try:
        return _read_state(directory)
    except _DamagedState as damaged:
        path, error = damaged.args
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise CheckpointStateError(_state_damage_message(directory, path, error), path,
                                   f"{type(error).__name__}: {reason}") from None


class _DamagedState(Exception):
    """(path, error) of a state file that cannot be read; `checkpoint_state` words it."""


def _read_state(directory: str):
    import tensorflow as tf
    from google.protobuf import text_format
    from tensorflow.python.training.checkpoint_state_pb2 import CheckpointState

    path = os.path.join(directory, STATE_FILENAME)
    if not os.path.lexists(path):
        return None
    # Parsed here first: TF's reader raises a Unicode error for binary bytes but logs
    # and answers "no checkpoint" for text it cannot parse.
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
        # Merge, as TF's own reader does (a field given twice keeps the last).
        state = text_format.Merge(text, CheckpointState())
        if not state.model_checkpoint_path:
            raise ValueError("it names no model_checkpoint_path")
    except (UnicodeDecodeError, text_format.ParseError, ValueError, IsADirectoryError,
            FileNotFoundError) as error:
        raise _DamagedState(path, error) from None
    return tf.train.get_checkpoint_state(directory)


def _state_damage_message(directory: str, path: str, error: Exception) -> str:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return (f"Checkpoint state file {path!r} is damaged: it is not the text TensorFlow "
            f"writes ({type(error).__name__}: {reason}), so which checkpoint of "
            f"{directory!r} is the newest is unknown; it was left as it is."
            f"{_what_to_do(directory)}")


def present_checkpoints(directory: str) -> list[str]:
    """The checkpoint prefixes of ``directory`` that have an ``.index`` file, newest
    (highest number) first; whether they read whole is not checked."""
    import tensorflow as tf

    return [p for p in checkpoint_candidates(directory) if tf.io.gfile.exists(p + ".index")]


def _what_to_do(directory: str) -> str:
    """The end of a state file error: the checkpoints there and how to use one."""
    found = present_checkpoints(directory)
    if not found:
        return (" No ckpt-N.index file is beside it either: give another checkpoint "
                "with --checkpoint=PATH.")
    newest = found[0]
    more = ", ..." if len(found) > 5 else ""
    return (f" Give a checkpoint explicitly (--checkpoint={newest}; the directory holds "
            f"{', '.join(os.path.basename(p) for p in found[:5])}{more}, newest first), or "
            f"write the file again as the one line model_checkpoint_path: "
            f"\"{os.path.basename(newest)}\" to make it the newest.")


def _missing_newest(state) -> str | None:
    """The newest checkpoint that ``state`` (`checkpoint_state`) names when it has no
    ``.index`` file, else None. Checked here, not by ``tf.train.latest_checkpoint``:
    that logs "Couldn't match files for checkpoint" to stderr and answers None, which
    reads as "no checkpoint" although others may be there."""
    import tensorflow as tf

    prefix = state.model_checkpoint_path
    return None if tf.io.gfile.exists(prefix + ".index") else prefix


def latest_checkpoint(directory: str) -> str | None:
    """The newest checkpoint that ``directory``'s ``checkpoint`` state file names, or
    None when there is no state file.

    Raises CheckpointStateError naming the file when TF cannot read it
    (`checkpoint_state`), or when the checkpoint it names has no ``.index`` file: the
    message names that checkpoint, the ones the directory holds and how to use one.
    Nothing is logged and the file is left as it is."""
    state = checkpoint_state(directory)
    if state is None:
        return None
    missing = _missing_newest(state)
    if missing is None:
        return state.model_checkpoint_path
    path = os.path.join(directory, STATE_FILENAME)
    where = ("" if os.path.realpath(os.path.dirname(missing)) == os.path.realpath(directory)
             else " (a path outside this directory: was the run moved?)")
    raise CheckpointStateError(
        f"Checkpoint state file {path!r} names {missing!r} as the newest checkpoint, but "
        f"it has no .index file{where}.{_what_to_do(directory)}",
        path, f"it names {missing}, whose .index file is missing", missing)


def checkpoint_candidates(directory: str) -> list[str]:
    """Every checkpoint prefix in ``directory``, newest (highest number) first: the
    ones the ``checkpoint`` state file lists and every ``ckpt-N`` with an ``.index`` or
    a ``.data-*`` file there, so that a lost or garbled state file (or a lost index)
    hides none of them."""
    import glob
    import re

    found = set()
    try:
        state = _read_state(directory)
    except _DamagedState:  # a garbled state file: the files below still count
        state = None
    if state is not None:
        found.update(os.path.join(directory, os.path.basename(p))
                     for p in state.all_model_checkpoint_paths)
    found.update(p[:-len(".index")] for p in glob.glob(os.path.join(directory, "ckpt-*.index")))
    # A data file whose index is gone is a damaged checkpoint, not nothing: listed, so
    # that the restore names it and sets it aside instead of passing over it in silence.
    found.update(re.sub(r"\.data-\d+-of-\d+$", "", p)
                 for p in glob.glob(os.path.join(directory, "ckpt-*.data-*-of-*")))

    def number(prefix):
        match = re.search(r"-(\d+)$", prefix)
        return int(match.group(1)) if match else -1

    return sorted(found, key=number, reverse=True)


def checkpoint_damage(prefix: str) -> str | None:
    """Why the checkpoint ``prefix`` cannot be read (its index or data files missing,
    truncated or corrupt: every tensor is read and its checksum checked), or None when
    it reads whole. Says nothing about whether it fits a model."""
    import tensorflow as tf

    if not tf.io.gfile.exists(prefix + ".index"):
        return "its .index file is missing"
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (tf.errors.OpError, ValueError, IndexError, OSError) as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        return f"{type(error).__name__}: {first_line[:200]}"
    return None


def _untracked_variables(model) -> list:
    """Model variables that a tf.train.Checkpoint of the model does not save."""
    import tensorflow as tf

    tracked = {id(t) for t in tf.train.TrackableView(model).descendants()}
    return [v for v in model.variables if id(v) not in tracked]


def restore_weights(model, path: str) -> None:
    """Fills ``model`` from the ``model`` of a training checkpoint, or raises CheckpointError.

    Every variable the checkpoint tracks must match by name and shape
    (``assert_existing_objects_matched``), and the only model variables a checkpoint
    does not carry may be Keras' dropout seed-generator states, which inference never
    reads. The optimizer and loop state in the file are left unread.
    """
    import tensorflow as tf

    untracked = [v.path for v in _untracked_variables(model)
                 if not v.path.endswith("seed_generator_state")]
    if untracked:  # a new kind of layer whose state a checkpoint would not carry
        raise CheckpointError(f"Model variables {untracked} are not saved by "
                              f"tf.train.Checkpoint, so no checkpoint can restore them.")
    try:
        # read(), not restore(): it neither needs nor creates the reader's own
        # save_counter, so checkpoints written with Checkpoint.write() load too.
        status = tf.train.Checkpoint(model=model).read(path)
        status.expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as error:
        raise CheckpointError(f"Checkpoint {path!r} does not hold every variable of the model "
                              f"{model.name!r}: {str(error)[:500]}") from None


def checkpoint_step(path: str) -> int | None:
    """The training step saved with the checkpoint (the loop's ``step`` variable)."""
    import tensorflow as tf

    try:
        return int(tf.train.load_checkpoint(path).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
    except (tf.errors.NotFoundError, ValueError, KeyError):
        return None
