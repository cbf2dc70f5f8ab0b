"""What the training loop does around the steps: checkpoints, the NaN guard, logs, summaries.

`alexnet_tf.train.loop` decides *when* (every N steps, at log lines, at epoch ends);
each class here owns *what* happens then:

* `TrainingCheckpoints`: the run's training checkpoints (model, optimizer, step,
  epoch, plateau state, best error) under `alexnet_tf.run.Run`'s directories: resume,
  save every N steps and at each epoch's end, keep the best by validation error;
* `MetricWindow`: the train step's summed metrics kept on the device between log
  lines, read (and checked for NaN/Inf, `NonFiniteLossError`) before every save;
* `TrainLogger`: console lines and TensorBoard scalars of training and evaluation;
* `KernelSummaries`: Sec. 6.1/Fig. 3's conv1 kernels per tower, as a TensorBoard image
  at each epoch's end.
"""

from __future__ import annotations

import glob
import math
import os

import tensorflow as tf
from absl import logging

from alexnet_tf import run as run_lib
from alexnet_tf import task as task_lib
from alexnet_tf.train import distribute


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf."""


class NonFiniteWeightsError(FloatingPointError):
    """A weight about to be saved is NaN or Inf."""


def check_finite_weights(model, step: int, last_good: str | None) -> None:
    """Raises NonFiniteWeightsError naming the first non-finite variable of ``model``.

    The loss guard does not see every bad weight (a NaN that no example reaches, an
    input scale that overflows later); a checkpoint must never hold one. One device
    reduction per variable, one host read for all."""
    floats = [v for v in model.variables if tf.as_dtype(v.dtype).is_floating]
    finite = tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in floats]).numpy()
    if not finite.all():
        bad = floats[int((~finite).argmax())]
        raise NonFiniteWeightsError(
            f"Weight {bad.path!r} holds NaN or Inf at step {step}: stopping without saving; "
            f"the last good checkpoint is {last_good}.")


@tf.function
def _add_sums(window, sums):
    """``window + sums`` per metric, on the device and in float64 (a window of steps
    adds up many float32 sums)."""
    return {k: window[k] + tf.cast(sums[k], tf.float64) for k in task_lib.METRIC_KEYS}


DAMAGED_DIR = "damaged"  # under checkpoints/: what a failed restore set aside
SUPERSEDED_DIR = "superseded"  # under best/: bests newer than a fall-back restore


def _remove_temporary_saves(directory: str) -> None:
    """Deletes what a save killed half-way leaves: TF writes ``ckpt-N_temp/`` first."""
    import shutil

    for parent in (directory, os.path.join(directory, run_lib.BEST_DIR)):
        if os.path.isdir(parent):
            for name in os.listdir(parent):
                if name.endswith("_temp") or "_temp_" in name:
                    shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
                    logging.info("Removed %s, left by a save that did not finish.",
                                 os.path.join(parent, name))


def _state_trouble(directory: str) -> str | None:
    """Why ``directory``'s ``checkpoint`` state file cannot be kept as it is, worded to
    follow "Checkpoint state file X", or None when it can (or there is none).

    It cannot when TF cannot read it (`run.checkpoint_state`), when the newest
    checkpoint it names has no file at all (deleted, or an absolute path into the
    directory the run was moved from), or when it lists a checkpoint outside
    ``directory``: a CheckpointManager made on it would resume nothing of its own, and
    its rotation would delete another directory's files. A named checkpoint with some
    of its files is a damaged checkpoint, left to `TrainingCheckpoints.restore_latest`.
    Older entries without files are left alone: TF's own save leaves them when it is
    killed between deleting the oldest checkpoint and recording that."""
    try:
        state = run_lib.checkpoint_state(directory)
    except run_lib.CheckpointStateError as error:
        return f"is damaged ({error.reason})"
    if state is None:
        return None
    try:
        run_lib.latest_checkpoint(directory)
    except run_lib.CheckpointStateError as error:
        # With some of its files there (a data file without its index) it is a damaged
        # checkpoint, not a wrong state: `restore_latest` names it and sets it aside.
        if not glob.glob(glob.escape(error.missing) + ".*"):
            return f"names {error.missing} as the newest checkpoint, but it has no file there"
    here = os.path.realpath(directory)
    elsewhere = [p for p in [*state.all_model_checkpoint_paths, state.model_checkpoint_path]
                 if os.path.realpath(os.path.dirname(p)) != here]
    if elsewhere:
        return (f"lists {elsewhere[0]}, outside its directory (rotating the checkpoints "
                f"here would delete it)")
    return None


def _set_aside_unusable_state(directory: str) -> None:
    """Moves a ``checkpoint`` state file that cannot be kept as it is (`_state_trouble`:
    damaged, naming a newest checkpoint that is not there, or listing another
    directory's) into ``<directory>/damaged/`` and writes the state again from the
    checkpoint files there (newest by number last), with a warning, so that the run
    resumes from its own newest checkpoint instead of stopping.

    A CheckpointManager reads the state when it is made and raises a bare Unicode or
    protobuf error on a damaged one; on one naming a missing checkpoint it would list
    checkpoints that are not there and leave the ones that are out of its rotation.
    The state is only an index of the files beside it, and the old copy is kept, not
    deleted. A directory without a state file, or with a usable one, is left as it is.
    """
    trouble = _state_trouble(directory)
    if trouble is None:
        return
    state_file = os.path.join(directory, run_lib.STATE_FILENAME)
    destination = os.path.join(directory, DAMAGED_DIR)
    os.makedirs(destination, exist_ok=True)
    kept, number = os.path.join(destination, run_lib.STATE_FILENAME), 0
    while os.path.lexists(kept):
        number += 1
        kept = os.path.join(destination, f"{run_lib.STATE_FILENAME}.{number}")
    os.replace(state_file, kept)
    # Listed after the move: the old state's entries must not count, only files.
    prefixes = list(reversed(run_lib.present_checkpoints(directory)))
    if prefixes:
        _write_state(directory, prefixes)
        logging.warning("Checkpoint state file %s %s: kept as %s, and written again from "
                        "the checkpoint files beside it (%s).", state_file, trouble, kept,
                        ", ".join(os.path.basename(p) for p in prefixes))
    else:
        logging.warning("Checkpoint state file %s %s: kept as %s; no checkpoint file is "
                        "beside it, so no new one was written.", state_file, trouble, kept)


def _write_state(directory: str, prefixes: list) -> None:
    """Writes ``directory``'s checkpoint state: ``prefixes`` (checkpoints of
    ``directory``, oldest first), the last the newest.

    Names are written relative to ``directory``, as a CheckpointManager writes them,
    so that the state still names its checkpoints after the run directory is moved or
    copied (TF's readers join a relative name to the directory they read). Each is
    given its .index file's time: a CheckpointManager lists (and rotates, keeping its
    newest K) only checkpoints with a time in the state; without one it would neither
    list nor ever delete them.

    Written as TF writes it (the text form of its CheckpointState proto, into a
    temporary ``checkpoint.tmp*`` file renamed over the old one, so a reader sees the
    old state or the new, never half of one), but not through
    ``tf.compat.v1.train.update_checkpoint_state``: that writes absolute paths and
    prints a deprecation warning to stderr. An OSError (a full disk) propagates, the
    old state file unchanged and the temporary file removed."""
    import uuid

    from google.protobuf import text_format
    from tensorflow.python.training.checkpoint_state_pb2 import CheckpointState

    times = [os.path.getmtime(p + ".index") if os.path.exists(p + ".index") else 0.0
             for p in prefixes]
    names = [os.path.basename(p) for p in prefixes]
    state = CheckpointState(model_checkpoint_path=names[-1], all_model_checkpoint_paths=names,
                            all_model_checkpoint_timestamps=times,
                            last_preserved_timestamp=min(times) - 1)
    path = os.path.join(directory, run_lib.STATE_FILENAME)
    # TF's temporary name: a failed save's cleanup (`_remove_failed_save`) knows it.
    temp = f"{path}.tmp{uuid.uuid4().hex}"
    try:
        with open(temp, "x", encoding="utf-8") as f:
            f.write(text_format.MessageToString(state))
        os.replace(temp, path)
    except BaseException:
        try:
            os.remove(temp)
        except OSError:
            pass
        raise


def _last_good(directory: str) -> str | None:
    """The newest checkpoint of ``directory`` for an error message: never raises."""
    try:
        return run_lib.latest_checkpoint(directory)
    except run_lib.CheckpointStateError as error:
        state_file = os.path.join(directory, run_lib.STATE_FILENAME)
        if error.missing:
            return f"unknown ({state_file} names {error.missing}, which is not there)"
        return f"unknown ({state_file} is damaged)"


def _remove_failed_save(directory: str, step: int, before: set) -> None:
    """Deletes what the failed save of ``ckpt-<step>`` in ``directory`` wrote, and
    nothing else: only entries that were not there before it (``before``), named as
    that save names its files. TF writes ``ckpt-N_temp/`` first, then merges it into
    ``ckpt-N.index`` and ``.data-*`` (``*.tempstate*`` while writing), then the state
    file (``checkpoint.tmp*``, then renamed). A ``ckpt-N`` that reads whole is kept:
    only the state failed, and the resume finds it by its files."""
    import shutil

    try:
        new = [name for name in os.listdir(directory) if name not in before]
    except OSError:
        return
    own = f"ckpt-{step}"
    partial = [n for n in new if n.startswith(own + "_temp")
               or (n.startswith(own + ".") and "tempstate" in n)
               or n.startswith(run_lib.STATE_FILENAME + ".tmp")]
    written = [n for n in new if n.startswith(own + ".") and n not in partial]
    if written and run_lib.checkpoint_damage(os.path.join(directory, own)) is not None:
        partial += written
    for name in partial:
        path = os.path.join(directory, name)
        try:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
        except OSError as error:  # the save's own error is the one to report
            logging.warning("Could not remove %s, left by the failed save: %s", path, error)
        else:
            logging.info("Removed %s, left by the failed save of %s.", path, own)


def _prefix_number(prefix: str) -> int:
    """N of a ``.../ckpt-N`` prefix (-1 when the name has no number)."""
    tail = os.path.basename(prefix).rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def _move_aside(prefix: str, destination: str) -> list[str]:
    """Moves every file of checkpoint ``prefix`` into ``destination`` (made only when
    there is one); returns the files' new paths, none when it has no file."""
    moved = []
    for path in glob.glob(glob.escape(prefix) + ".*"):
        os.makedirs(destination, exist_ok=True)
        moved.append(os.path.join(destination, os.path.basename(path)))
        os.replace(path, moved[-1])
    return moved


class MetricWindow:
    """The train step's summed metrics over the steps since the last read, kept on
    the device: adding a step is one op and no read, so the host does not wait for the
    device every step. The sums are read (`read_checked`) at log intervals, at epoch
    ends and before every checkpoint save, and those reads run the NaN/Inf guard.
    """

    def __init__(self, first_step: int, checkpoint_dir: str):
        self.checked_through = first_step  # every step up to this one had a finite loss
        self.checkpoint_dir = checkpoint_dir
        self.reset()

    def reset(self) -> None:
        self.sums = {k: tf.zeros([], tf.float64) for k in task_lib.METRIC_KEYS}

    def add(self, sums) -> None:
        self.sums = _add_sums(self.sums, sums)

    def read_checked(self, step: int) -> dict:
        """The sums on the host; raises NonFiniteLossError if a step's loss since the
        last read (after ``checked_through``, up to ``step``) was NaN or Inf."""
        # One stacked read: the host waits for the device once.
        values = dict(zip(task_lib.METRIC_KEYS,
                          tf.stack([self.sums[k] for k in task_lib.METRIC_KEYS])
                          .numpy().tolist()))
        if not math.isfinite(values["loss"]):
            first = self.checked_through + 1
            where = (f"at step {step}" if first >= step
                     else f"between step {first} and step {step}")
            raise NonFiniteLossError(
                f"Training loss is {values['loss']} {where}: stopping without saving; the "
                f"last good checkpoint is {_last_good(self.checkpoint_dir)}.")
        self.checked_through = step
        return values

    def check_before_save(self, step: int) -> None:
        """Runs the guard unless every step up to ``step`` has been checked already."""
        if self.checked_through < step:
            self.read_checked(step)


class TrainingCheckpoints:
    """The run's training checkpoints: resume from the newest, save, keep the best.

    ``state`` holds every trackable a checkpoint carries (model, optimizer, plateau,
    step, epoch, best_error). The model's dropout random states (Keras' seed-generator
    variables, which a checkpoint of the model alone leaves out) are saved beside them
    as ``dropout_seeds``, so that a resumed run draws the dropout masks the
    uninterrupted run would have drawn. Non-chief workers of a multi-worker run write to
    a temporary directory (`distribute.write_dir`), and all resume from the chief's.

    A ``checkpoint`` state file that TF cannot read (binary, truncated), that names a
    newest checkpoint whose files are not there, or that lists another directory's
    checkpoints, is moved into ``damaged/`` beside it and written again from the
    checkpoint files, with a warning (`_set_aside_unusable_state`): the run resumes
    from its own newest files either way.
    """

    def __init__(self, run, strategy, keep: int, **state):
        self.run = run
        self.strategy = strategy
        self.keep = keep
        self.state = state
        self.dropout_seeds = [v for v in state["model"].variables
                              if v.path.endswith("seed_generator_state")]
        self.checkpoint = tf.train.Checkpoint(**state, dropout_seeds=self.dropout_seeds)
        for directory in (run.checkpoint_dir, run.best_dir):
            _set_aside_unusable_state(distribute.write_dir(directory, strategy))
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, distribute.write_dir(run.checkpoint_dir, strategy),
            max_to_keep=keep)
        self.best_manager = tf.train.CheckpointManager(
            self.checkpoint, distribute.write_dir(run.best_dir, strategy), max_to_keep=1)

    def restore_latest(self) -> str | None:
        """Restores the newest checkpoint of the run that reads whole; returns its path,
        or None when the run has no checkpoint files at all.

        A damaged checkpoint (index or data missing, truncated, corrupt, or torn
        between two saves) is skipped with a warning that names it and why, and, by the
        chief, moved into ``checkpoints/damaged/`` so that nothing is lost; the next
        older one is tried. Checkpoints are found by their files, not only through the
        ``checkpoint`` state file, so a lost or garbled state file never restarts a run
        from step 0.

        Raises:
          CheckpointError: checkpoint files exist but none of them reads whole, or the
            newest whole checkpoint does not match the model and optimizer the config
            builds (a run of another geometry in this directory).
        """
        directory = self.run.checkpoint_dir
        chief = distribute.is_chief(self.strategy)
        if chief:
            _remove_temporary_saves(directory)
        candidates = run_lib.checkpoint_candidates(directory)
        damaged_dir = os.path.join(directory, DAMAGED_DIR)
        skipped, kept_any = [], False
        for prefix in candidates:
            damage = run_lib.checkpoint_damage(prefix)
            if damage:
                kept = _move_aside(prefix, damaged_dir) if chief else []
                kept_any = kept_any or bool(kept)
                skipped.append(prefix)
                # Only what happened: a checkpoint the state lists may have no file left
                # (TF's save deletes the oldest before it records that), so none moved.
                logging.warning("Checkpoint %s cannot be read (%s): skipped%s.", prefix, damage,
                                f"; its files are kept in {damaged_dir}" if kept else
                                "; it has no file left to keep" if chief else "")
                continue
            try:
                self._restore(prefix)
            except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as error:
                first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise run_lib.CheckpointError(
                    f"Checkpoint {prefix!r} does not match the model and optimizer built "
                    f"from the config: {first_line[:500]}") from None
            if skipped and chief:
                # The state file must list what is there now, so that the manager's
                # rotation and `latest_checkpoint` readers see the whole checkpoints.
                intact = [p for p in reversed(candidates) if p not in skipped
                          and os.path.exists(p + ".index")]
                _write_state(directory, intact)  # oldest first: ``prefix`` is the last
                self.manager = tf.train.CheckpointManager(
                    self.checkpoint, directory, max_to_keep=self.keep)
            if skipped:
                self._set_aside_later_best(run_lib.checkpoint_step(prefix), chief)
            return prefix
        leftovers = [f for f in os.listdir(directory) if f.startswith("ckpt-")] if (
            os.path.isdir(directory)) else []
        if skipped or leftovers:
            whole_best = [p for p in run_lib.checkpoint_candidates(self.run.best_dir)
                          if not run_lib.checkpoint_damage(p)]
            hint = (f" {whole_best[0]!r} (the best) reads whole: copy its files into "
                    f"{directory!r} to resume from it, or" if whole_best else "")
            kept_where = f", their files kept in {damaged_dir}" if kept_any else ""
            raise run_lib.CheckpointError(
                f"No checkpoint in {directory!r} reads whole ({len(skipped)} damaged"
                f"{kept_where}; other files: {leftovers[:5]}); "
                f"refusing to start this run again from step 0.{hint} Move the directory "
                f"away to start over.")
        return None

    def _set_aside_later_best(self, step: int | None, chief: bool) -> None:
        """Moves best checkpoints saved after ``step`` into ``best/superseded/``.

        After a fall-back to an older checkpoint the run replays the steps after it,
        and its restored ``best_error`` does not know of a best saved in them: that best
        would otherwise block the replayed save of the same step (a listed checkpoint is
        never rewritten) and would be compared with nothing. Kept, not deleted.
        """
        if step is None:
            return
        best_dir = self.run.best_dir
        later = [p for p in run_lib.checkpoint_candidates(best_dir)
                 if (run_lib.checkpoint_step(p) or _prefix_number(p)) > step]
        if not later:
            return
        if chief:
            destination = os.path.join(best_dir, SUPERSEDED_DIR)
            for prefix in later:
                _move_aside(prefix, destination)
                logging.warning("Best checkpoint %s is newer than the restored step %d: "
                                "kept in %s; the replayed steps choose the best again.",
                                prefix, step, destination)
            # The state file still lists the ones just moved: only files there count.
            remaining = [p for p in reversed(run_lib.checkpoint_candidates(best_dir))
                         if os.path.exists(p + ".index")]
            if remaining:
                _write_state(best_dir, remaining)
            else:
                state_file = os.path.join(best_dir, "checkpoint")
                if os.path.exists(state_file):
                    os.remove(state_file)
        self.best_manager = tf.train.CheckpointManager(
            self.checkpoint, distribute.write_dir(best_dir, self.strategy), max_to_keep=1)

    def _restore(self, prefix: str) -> None:
        names = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
        if self.dropout_seeds and not any(n.startswith("dropout_seeds/") for n in names):
            # Written before the dropout states were saved: restore the rest.
            logging.warning("%s holds no dropout random state (an earlier version wrote it): "
                            "the resumed run's dropout masks will differ from an "
                            "uninterrupted run's.", prefix)
            tf.train.Checkpoint(**self.state).restore(prefix).assert_existing_objects_matched()
            return
        self.checkpoint.restore(prefix).assert_existing_objects_matched()

    def save(self, step: int, *, best: bool = False) -> str:
        """Saves everything as ``ckpt-<step>`` (under ``best/`` with ``best``), after
        checking that every weight is finite (`check_finite_weights`).

        A step already listed is never written again: TF would rewrite its files in
        place, and a kill during that write leaves the index of one save beside the data
        of the other (RuntimeError: the loop must not ask).

        A save that fails (a full disk: OSError or TF's error, "No space left on
        device") deletes what it wrote itself, its ``ckpt-<step>_temp/`` and any
        half-written file (`_remove_failed_save`), then raises that error unchanged; the
        checkpoints saved before stay as they were."""
        manager = self.best_manager if best else self.manager
        listed = {os.path.basename(p) for p in manager.checkpoints}
        if f"ckpt-{step}" in listed:
            raise RuntimeError(f"ckpt-{step} is already saved in {manager.directory}; a "
                               f"listed checkpoint is never rewritten in place.")
        check_finite_weights(self.state["model"], step, _last_good(self.run.checkpoint_dir))
        self.state["step"].assign(step, read_value=False)
        os.makedirs(manager.directory, exist_ok=True)
        before = set(os.listdir(manager.directory))
        try:
            return manager.save(checkpoint_number=step)
        except BaseException:
            # Not left for the next resume to sweep: a full disk stays full while a
            # failed save's temporary copy of every weight sits beside the checkpoints.
            try:
                _remove_failed_save(manager.directory, step, before)
            except Exception:  # noqa: BLE001  (the save's own error is the one to report)
                logging.exception("Cleaning up after the failed save of ckpt-%d failed.", step)
            raise

    def cleanup(self) -> None:
        distribute.cleanup_write_dir(self.run.checkpoint_dir, self.strategy)


class TrainLogger:
    """Console lines and TensorBoard scalars (``tensorboard/train`` and ``/eval``)."""

    def __init__(self, run, strategy, chief: bool, total_epochs: int):
        self.total_epochs = total_epochs

        def directory(name):
            if chief:
                return run.tensorboard_dir(name)
            # Non-chief workers must write somewhere; their copy is thrown away.
            return os.path.join(distribute.write_dir(run.checkpoint_dir, strategy),
                                "tensorboard", name)

        self.writers = {name: tf.summary.create_file_writer(directory(name))
                        for name in ("train", "eval")}

    def train_window(self, epoch: int, step: int, sums: dict, learning_rate: float,
                     seconds: float) -> dict:
        """Logs one window of training steps; returns the values logged."""
        values = {"loss": sums["loss"] / sums["count"],
                  "top1_error": 1 - sums["top1"] / sums["count"],
                  "top5_error": 1 - sums["top5"] / sums["count"],
                  "learning_rate": learning_rate,
                  "images_per_second": sums["count"] / max(seconds, 1e-9)}
        logging.info("epoch %d/%d step %d: loss %.4f, top-1 error %.3f, top-5 error "
                     "%.3f, lr %.5g, %.1f images/s", epoch + 1, self.total_epochs, step,
                     *values.values())
        with self.writers["train"].as_default(step=step):
            for key, value in values.items():
                tf.summary.scalar(key, value)
        return values

    def evaluation(self, epoch: int, step: int, metrics: dict, seconds: float,
                   bad_records: int | None) -> None:
        """The epoch's summary line and evaluation scalars; ``bad_records`` None: not
        counted here (tf.data service input: the workers' logs name them)."""
        skipped = ("bad training records: in the tf.data service workers' logs"
                   if bad_records is None else f"{bad_records} bad training records skipped")
        logging.info("epoch %d/%d done in %.1f s (%s): validation loss %.4f, top-1 error "
                     "%.4f, top-5 error %.4f (%d images)", epoch + 1, self.total_epochs,
                     seconds, skipped, metrics["loss"], metrics["top1_error"],
                     metrics["top5_error"], metrics["examples"])
        with self.writers["eval"].as_default(step=step):
            for key in ("loss", "top1_error", "top5_error"):
                tf.summary.scalar(key, metrics[key])
            if bad_records is not None:
                tf.summary.scalar("bad_training_records", bad_records)


class KernelSummaries:
    """Sec. 6.1, Fig. 3: the conv1 kernels of each tower and their colour specificity,
    written to ``tensorboard/train`` at each epoch's end."""

    def __init__(self, model, convention, writer):
        self.model = model
        self.convention = convention
        self.writer = writer

    def epoch_end(self, step: int) -> None:
        from alexnet_tf.analysis import kernels  # deferred: PIL drawing, epoch ends only

        with self.writer.as_default(step=step):
            kernels.write_summaries(self.model, self.convention)
