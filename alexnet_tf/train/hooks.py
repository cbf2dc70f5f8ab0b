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

import math
import os

import tensorflow as tf
from absl import logging

from alexnet_tf import task as task_lib
from alexnet_tf.train import distribute


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf."""


@tf.function
def _add_sums(window, sums):
    """``window + sums`` per metric, on the device and in float64 (a window of steps
    adds up many float32 sums)."""
    return {k: window[k] + tf.cast(sums[k], tf.float64) for k in task_lib.METRIC_KEYS}


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
                f"last good checkpoint is {tf.train.latest_checkpoint(self.checkpoint_dir)}.")
        self.checked_through = step
        return values

    def check_before_save(self, step: int) -> None:
        """Runs the guard unless every step up to ``step`` has been checked already."""
        if self.checked_through < step:
            self.read_checked(step)


class TrainingCheckpoints:
    """The run's training checkpoints: resume from the newest, save, keep the best.

    ``state`` holds every trackable a checkpoint carries (model, optimizer, plateau,
    step, epoch, best_error). Non-chief workers of a multi-worker run write to a
    temporary directory (`distribute.write_dir`), and all resume from the chief's.
    """

    def __init__(self, run, strategy, keep: int, **state):
        self.run = run
        self.strategy = strategy
        self.state = state
        self.checkpoint = tf.train.Checkpoint(**state)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, distribute.write_dir(run.checkpoint_dir, strategy),
            max_to_keep=keep)
        self.best_manager = tf.train.CheckpointManager(
            self.checkpoint, distribute.write_dir(run.best_dir, strategy), max_to_keep=1)

    def restore_latest(self) -> str | None:
        """Restores the newest checkpoint of the run, if any; returns its path.

        Raises ValueError when it does not match the model and optimizer the config
        builds (a run of another geometry in this directory)."""
        latest = tf.train.latest_checkpoint(self.run.checkpoint_dir)
        if latest:
            try:
                self.checkpoint.restore(latest).assert_existing_objects_matched()
            except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as error:
                raise ValueError(f"Checkpoint {latest!r} does not match the model and optimizer "
                                 f"built from the config: {error}") from None
        return latest

    def save(self, step: int, *, best: bool = False) -> str:
        """Saves everything as ``ckpt-<step>`` (under ``best/`` with ``best``)."""
        self.state["step"].assign(step, read_value=False)
        manager = self.best_manager if best else self.manager
        return manager.save(checkpoint_number=step)

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
                   bad_records: int) -> None:
        logging.info("epoch %d/%d done in %.1f s (%d bad training records skipped): "
                     "validation loss %.4f, top-1 error %.4f, top-5 error %.4f (%d images)",
                     epoch + 1, self.total_epochs, seconds, bad_records, metrics["loss"],
                     metrics["top1_error"], metrics["top5_error"], metrics["examples"])
        with self.writers["eval"].as_default(step=step):
            for key in ("loss", "top1_error", "top5_error"):
                tf.summary.scalar(key, metrics[key])
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
