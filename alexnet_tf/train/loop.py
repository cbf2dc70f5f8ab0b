"""`train_and_evaluate(config, workdir)`: the training loop behind ``alexnet-train``.

One loop for every scale: the strategy (`distribute.create_strategy`) decides the
devices, datasets come from ``distribute_datasets_from_function`` with per-replica
batches, and the loop never asks which strategy it has. Each epoch: train on a
(seed, epoch)-fixed order of the training split, evaluate on the validation split,
update the learning rate, checkpoint (and keep the best by validation error).

The loop only decides *when*: what a step computes is the task's
(`alexnet_tf.task.ClassificationTask`), where files go is the run's
(`alexnet_tf.run.Run`), and what happens at log lines, saves and epoch ends is the
hooks' (`alexnet_tf.train.hooks`).

A run killed at any point (even SIGKILL) restarts from its last checkpoint: model,
optimizer (momentum, loss scale), step, epoch, plateau state, best error, and the
position in the epoch's data. A NaN or Inf loss stops the run before anything is
saved, so the last checkpoint stays good: the step's metrics stay on the device and
are read, and checked, at every log line, epoch end and checkpoint save.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from alexnet_tf import config as config_lib
from alexnet_tf import evaluate, models
from alexnet_tf import run as run_lib
from alexnet_tf import task as task_lib
from alexnet_tf.data import pipeline, sources
from alexnet_tf.train import distribute, hooks, optim

_PRECISION_POLICIES = {"none": "float32", "float16": "mixed_float16",
                       "bfloat16": "mixed_bfloat16"}


def weights_checksum(model) -> float:
    """A float64 sum over all weights: equal on every worker when they agree."""
    return float(sum(np.asarray(w, np.float64).sum() for w in model.get_weights()))


def _steps_per_epoch(t, train_split) -> int:
    if len(train_split) < t.global_batch_size:
        raise ValueError(f"The training split has {len(train_split)} examples, fewer than one "
                         f"batch (train.global_batch_size={t.global_batch_size}).")
    steps = t.steps_per_epoch or len(train_split) // t.global_batch_size
    if steps * t.global_batch_size > len(train_split):
        raise ValueError(
            f"train.steps_per_epoch={t.steps_per_epoch} needs {steps * t.global_batch_size} "
            f"examples per epoch; the training split has {len(train_split)}.")
    return steps


@dataclasses.dataclass
class _Plan:
    """Everything checked before the run writes its first file."""

    run: run_lib.Run
    changed: list
    strategy: tf.distribute.Strategy
    chief: bool
    task: task_lib.ClassificationTask
    train_split: object
    eval_split: object
    steps_per_epoch: int


def _plan(config, workdir: str, allow_config_change: bool) -> _Plan:
    """The checks that need no write: the work directory (a run of another config is
    refused unless ``allow_config_change``), the cluster and strategy, the data, the
    classes and the batch size. Raises ValueError naming what does not fit.

    One class order: the evaluation split is read in the training split's class order
    (a class it adds is refused by name), and a run that already has checkpoints resumes
    only when the training split's classes are its ``classes.json``'s, index by index."""
    run = run_lib.Run(workdir)
    changed = run.config_changes(config)
    if changed and not allow_config_change:
        raise ValueError(
            f"Work directory {workdir!r} holds a run of another config (differing keys: "
            f"{changed[:10]}). Use a new --workdir, the same config to resume this run, or "
            f"--allow_config_change to resume it with the new config.")
    t = config.train
    strategy = distribute.create_strategy()
    task = task_lib.ClassificationTask(config, strategy)  # refuses what the strategy can't run
    train_split = sources.load_split(config.data, config.data.train_split)
    # By their files, as the restore finds them: a lost state file must not skip this.
    if run_lib.checkpoint_candidates(run.checkpoint_dir):
        saved = [c["id"] for c in run.classes()]
        difference = sources.first_class_difference(saved, train_split.class_names)
        if difference:
            i, was, now = difference
            raise ValueError(
                f"Work directory {workdir!r} holds a run trained on other classes: class "
                f"{i} is {was!r} in its {run.classes_path} but {now!r} in the training split "
                f"{config.data.train_split!r} ({len(saved)} vs {len(train_split.class_names)} "
                f"classes); resuming would shift the labels under the checkpoint. Restore "
                f"the class folders' names, or train in a new --workdir.")
    eval_split = sources.load_split(config.data, config.data.eval_split,
                                    class_names=train_split.class_names)
    if len(train_split.class_names) != config.model.num_classes:
        raise ValueError(
            f"config.model.num_classes is {config.model.num_classes} but the training split "
            f"has {len(train_split.class_names)} classes; set --config.model.num_classes="
            f"{len(train_split.class_names)}.")
    replicas = strategy.num_replicas_in_sync
    if t.global_batch_size % replicas:
        raise ValueError(
            f"train.global_batch_size={t.global_batch_size} is not divisible by the "
            f"{replicas} replicas in sync; expected a multiple of {replicas}.")
    return _Plan(run, changed, strategy, distribute.is_chief(strategy), task, train_split,
                 eval_split, _steps_per_epoch(t, train_split))


def train_and_evaluate(config, workdir: str, *, allow_config_change: bool = False) -> dict:
    """Validates ``config`` (`alexnet_tf.config.validate`), then trains and evaluates as
    configured (`train`); returns the final validation metrics."""
    return train(config_lib.validate(config), workdir, allow_config_change=allow_config_change)


def train(config, workdir: str, *, allow_config_change: bool = False) -> dict:
    """Trains and evaluates a validated config; returns the final validation metrics.

    Everything that can be checked is checked before the first write (`_plan`). Then
    the resolved config is written to ``workdir/config.json`` (the previous one kept as
    ``config.<n>.json`` when it changed). Keras' global dtype policy is set for the run
    (``train.mixed_precision``) and put back afterwards, so that a run leaves the
    process as it found it.
    """
    plan = _plan(config, workdir, allow_config_change)
    previous_policy = keras.mixed_precision.global_policy()
    # One run per work directory: the chief holds its lock from the first write to the
    # last (the other workers write only to their own temporary directories).
    lock = plan.run.lock() if plan.chief else contextlib.nullcontext()
    try:
        with lock:
            return _train(config, plan)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _train(config, plan: _Plan) -> dict:
    run, strategy, task, t = plan.run, plan.strategy, plan.task, config.train
    if plan.chief:
        kept = run.write_config(config, keep_previous=bool(plan.changed))
        if plan.changed:
            logging.warning("Resuming with a changed config (%s); the previous one is kept as "
                            "%s.", ", ".join(plan.changed[:10]), kept)
        run.write_classes(plan.train_split.class_names, plan.train_split.readable_names)
        run.write_convention(plan.task.convention)

    # Micikevicius et al. 2018 for float16.
    keras.mixed_precision.set_global_policy(_PRECISION_POLICIES[t.mixed_precision])
    steps_per_epoch = plan.steps_per_epoch
    with strategy.scope():
        model = models.model_from_config(config)
        optimizer = optim.create_optimizer(t, steps_per_epoch, global_batch_size=t.global_batch_size)
        optimizer.build(model.trainable_variables)
        plateau = optim.Plateau(t, global_batch_size=t.global_batch_size)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        best_error = tf.Variable(float("inf"), dtype=tf.float64, trainable=False,
                                 name="best_error")
    checkpoints = hooks.TrainingCheckpoints(
        run, strategy, t.keep_checkpoints, model=model, optimizer=optimizer, plateau=plateau,
        step=step, epoch=epoch_var, best_error=best_error)
    latest = checkpoints.restore_latest()  # every worker resumes from the chief's directory
    if latest:
        logging.info("Resumed from %s at step %d (epoch %d).", latest, int(step.numpy()),
                     int(epoch_var.numpy()))
    # The step count lives in Python during training, so that counting a step touches
    # no device variable; `step` is set from it just before each save.
    current = int(step.numpy())

    lr_keys = {"train.learning_rate", "train.lr_base_batch_size", "train.global_batch_size"}
    if latest and lr_keys & set(plan.changed):
        # An asked-for change of the learning rate wins over the one the run had reached.
        plateau.learning_rate.assign(optim.base_learning_rate(t, t.global_batch_size))
        logging.warning("The learning rate changed in the config: restarting it at %g.",
                        float(plateau.learning_rate.numpy()))
    if t.schedule in ("plateau", "constant"):
        optimizer.learning_rate = plateau.learning_rate.numpy()

    global_batch = t.global_batch_size
    train_step = task.train_step(model, optimizer)
    eval_step = task.eval_step(model)
    bad_records = tf.Variable(0, dtype=tf.int64, trainable=False)  # per epoch, not saved

    def train_dataset_fn(epoch, skip_steps):
        def fn(context):
            batch = context.get_per_replica_batch_size(global_batch)
            skip = skip_steps * batch * context.num_replicas_in_sync // context.num_input_pipelines
            return pipeline.make_dataset(
                plan.train_split, config.data, image_size=config.model.image_size,
                batch_size=batch, training=True, num_classes=config.model.num_classes,
                seed=config.seed, epoch=epoch, skip_examples=skip, input_context=context,
                bad_records=bad_records, **task.pipeline_args())
        return fn

    def run_eval():
        return evaluate.run_evaluation(eval_step, strategy.distribute_datasets_from_function(
            evaluate.eval_dataset_fn(plan.eval_split, config, task, config.eval.ten_crop)))

    logger = hooks.TrainLogger(run, strategy, plan.chief, t.total_epochs)
    kernel_summaries = hooks.KernelSummaries(model, task.convention, logger.writers["train"])
    metrics = {}
    logging.info("Training %s (%s parameters) on %d replica(s): %d epochs of %d steps, "
                 "global batch %d, %s%s.", model.name, f"{model.count_params():,}",
                 strategy.num_replicas_in_sync, t.total_epochs, steps_per_epoch, global_batch,
                 keras.mixed_precision.global_policy().name,
                 ", XLA" if t.jit_compile else "")
    for epoch in range(int(epoch_var.numpy()), t.total_epochs):
        epoch_end = (epoch + 1) * steps_per_epoch
        done_in_epoch = current - epoch * steps_per_epoch
        iterator = iter(strategy.distribute_datasets_from_function(
            train_dataset_fn(epoch, done_in_epoch)))
        window = hooks.MetricWindow(first_step=current, checkpoint_dir=run.checkpoint_dir)
        window_start = epoch_start = time.perf_counter()
        bad_records.assign(0)
        for _ in range(steps_per_epoch - done_in_epoch):
            batch = iterator.get_next_as_optional()
            if not batch.has_value():
                # Bad records were skipped, so the epoch has fewer full batches; the step
                # counter still moves to the epoch's end, which keeps resuming exact.
                logging.warning("Epoch %d ended %d steps early: bad records were skipped.",
                                epoch + 1, epoch_end - current)
                window.read_checked(current)  # the steps it did run
                current = epoch_end
                break
            window.add(train_step(batch.get_value()))
            current += 1
            if current % t.log_every_steps == 0 or current == epoch_end:
                sums = window.read_checked(current)
                # convert_to_tensor: a mirrored variable under tf.distribute
                logger.train_window(epoch, current, sums,
                                    float(tf.convert_to_tensor(optimizer.learning_rate)),
                                    time.perf_counter() - window_start)
                window.reset()
                window_start = time.perf_counter()
            # The epoch's end has its own save below (after evaluation): saving the same
            # step twice would rewrite a listed checkpoint in place.
            if current % t.checkpoint_every_steps == 0 and current != epoch_end:
                # The guard runs before every save, so no NaN/Inf loss reaches a checkpoint.
                window.check_before_save(current)
                checkpoints.save(current)
        skipped = int(bad_records.numpy())
        epoch_var.assign(epoch + 1)
        event = None
        if (epoch + 1) % config.eval.every_epochs == 0 or epoch + 1 == t.total_epochs:
            metrics = run_eval()
            logger.evaluation(epoch, current, metrics, time.perf_counter() - epoch_start,
                              skipped)
            if t.schedule == "plateau":
                event = plateau.update(metrics["top1_error"])
                if event == "dropped":
                    optimizer.learning_rate = plateau.learning_rate.numpy()
                    logging.info("Validation error stopped improving: learning rate now %.5g "
                                 "(drop %d of %d).", float(plateau.learning_rate),
                                 int(plateau.drops), t.plateau_max_drops)
            if metrics["top1_error"] < float(best_error.numpy()):
                best_error.assign(metrics["top1_error"])
                checkpoints.save(current, best=True)
        checkpoints.save(current)
        kernel_summaries.epoch_end(current)
        if event == "stop":
            logging.info("Validation error stopped improving after the last learning-rate "
                         "drop: stopping (Sec. 5).")
            break
    if not metrics:
        metrics = run_eval()
    checksum = weights_checksum(model)
    metrics = dict(metrics, step=current, epoch=int(epoch_var.numpy()),
                   best_top1_error=float(best_error.numpy()), weights_checksum=checksum)
    if plan.chief:
        run.write_metrics(metrics)
    checkpoints.cleanup()
    logging.info("Final validation: top-1 accuracy %.2f%%, top-5 accuracy %.2f%% "
                 "(top-1 error %.4f, top-5 error %.4f); weights checksum %.10g.",
                 100 * (1 - metrics["top1_error"]), 100 * (1 - metrics["top5_error"]),
                 metrics["top1_error"], metrics["top5_error"], checksum)
    return metrics
