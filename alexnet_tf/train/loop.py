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

Fine-tuning (Sec. 6, `alexnet_tf.train.finetune`): with ``model.init_from`` a fresh run
adopts the source's input convention and architecture into the config it writes, and
starts from the source's weights (``fc8`` new when the classes differ); the check of
every weight shape runs in `_plan`, before anything is written.

A run killed at any point (even SIGKILL) restarts from its last checkpoint: model,
optimizer (momentum, loss scale), step, epoch, plateau state, best error, and the
position in the epoch's data. A NaN or Inf loss stops the run before anything is
saved, so the last checkpoint stays good: the step's metrics stay on the device and
are read, and checked, at every log line, epoch end and checkpoint save.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from alexnet_tf import config as config_lib
from alexnet_tf import evaluate, models
from alexnet_tf import run as run_lib
from alexnet_tf import task as task_lib
from alexnet_tf.data import pipeline, service, sources
from alexnet_tf.train import distribute, finetune, hooks, optim

_PRECISION_POLICIES = {"none": "float32", "float16": "mixed_float16",
                       "bfloat16": "mixed_bfloat16"}


def weights_checksum(model) -> float:
    """A float64 sum over all weights: equal on every worker when they agree."""
    return float(sum(np.asarray(w, np.float64).sum() for w in model.get_weights()))


def _steps_per_epoch(t, train_split) -> int:
    if len(train_split) < t.global_batch_size:
        raise config_lib.ConfigError(
            f"The training split has {len(train_split)} examples, fewer than one "
            f"batch (train.global_batch_size={t.global_batch_size}); set a smaller "
            f"--config.train.global_batch_size.")
    steps = t.steps_per_epoch or len(train_split) // t.global_batch_size
    if steps * t.global_batch_size > len(train_split):
        raise config_lib.ConfigError(
            f"train.steps_per_epoch={t.steps_per_epoch} needs {steps * t.global_batch_size} "
            f"examples per epoch; the training split has {len(train_split)}.")
    return steps


@dataclasses.dataclass
class _Plan:
    """Everything checked before the run writes its first file."""

    config: object  # the resolved config: with a source's adopted values
    run: run_lib.Run
    changed: list
    strategy: tf.distribute.Strategy
    chief: bool
    task: task_lib.ClassificationTask
    train_split: object
    eval_split: object
    steps_per_epoch: int
    seed: finetune.Seed | None = None  # a fresh run's start from model.init_from


def _resolve_source(config, run, resuming: bool, explicit_keys):
    """``model.init_from``: the model source of a fresh run, with its values adopted into
    ``config`` (in place); None for a run that resumes (it adopts what its own
    config.json recorded) or without init_from. Raises FineTuneError (a source that
    cannot be read, a flag that contradicts it) or ConfigError (the adopted config)."""
    from alexnet_tf import model_source

    m = config.model
    if not m.init_from:
        return None
    if resuming and run.exists():
        adopted, kept = finetune.adopt_from_saved_run(
            config, run.config, explicit=explicit_keys, flags_win=m.init_from_flags_win,
            workdir=run.workdir)
        logging.info("model.init_from=%r is ignored: %r has checkpoints, and the run resumes "
                     "from them (init_from only seeds a fresh run).", m.init_from, run.workdir)
        source = None
        origin = "its config.json"
    else:
        try:
            source = model_source.resolve(m.init_from)
            overrides = source.config_overrides()
        except model_source.SourceError as error:
            raise finetune.FineTuneError(f"model.init_from: {error}") from None
        if source.convention is None:
            logging.warning("%s has no input convention: the run keeps the config's "
                            "data.mean_rgb, data.std_rgb, data.channel_order and "
                            "data.resize_size.", source.description)
        adopted, kept = finetune.adopt(config, overrides, explicit=explicit_keys,
                                       flags_win=m.init_from_flags_win,
                                       origin=source.description)
        origin = source.description
    if kept:
        logging.warning("Kept over %s (model.init_from_flags_win): %s.", origin, ", ".join(
            f"{key}={yours!r} (the source has {theirs!r})" for key, yours, theirs in kept))
    if adopted:
        logging.info("Adopted from %s: %s.", origin, ", ".join(
            f"{key} {was!r} -> {now!r}" for key, was, now in adopted))
        try:
            config_lib.validate(config)
        except config_lib.ConfigError as error:
            raise config_lib.ConfigError(
                f"With the values adopted from {origin} "
                f"({', '.join(k for k, _, _ in adopted)}), the config is invalid: {error}"
            ) from None
    return source


def _load_train_split(config, source, run, resuming: bool):
    """The training split in its class order: a run's own (``classes.json``) when a
    fine-tuned run resumes; the source's when a fresh run keeps the source's ``fc8``
    and the source names its classes (the folder's classes map onto them by name);
    else the split's own."""
    d = config.data
    if config.model.init_from and resuming and os.path.exists(run.classes_path):
        return sources.load_split(d, d.train_split,
                                  class_names=[c["id"] for c in run.classes()])
    if source is None or finetune.new_head(config, source):
        return sources.load_split(d, d.train_split)
    if source.class_names is None:
        logging.warning("%s names no classes: the training split's class i (in its own "
                        "order) is taken as the source's output i.", source.description)
        return sources.load_split(d, d.train_split)
    try:
        return sources.load_split(d, d.train_split, class_names=source.class_names)
    except ValueError as error:
        own = sources.load_split(d, d.train_split)
        raise finetune.FineTuneError(
            f"Fine-tuning from {source.description} with its fc8 ({source.num_classes} "
            f"classes, model.num_classes={config.model.num_classes}): the training split's "
            f"classes map by name onto the source's, and one is not among them: {error} To "
            f"train a new fc8 for the split's own {len(own.class_names)} classes, set "
            f"--config.model.num_classes={len(own.class_names)}"
            + (" or --config.model.init_from_new_head=True."
               if len(own.class_names) == source.num_classes else ".")) from None


# Keys whose change the run's checkpoints cannot follow: the optimizer's slots and the
# loss scale are variables of the checkpoint, and init_from records where the weights
# came from (a resumed run's weights come from its own checkpoints, whatever it says).
_FIXED_ON_RESUME = ("model.init_from", "train.optimizer", "train.mixed_precision")


def _check_resumable(run, config, changed, workdir: str) -> None:
    """Refuses, before anything is written, a config change (``--allow_config_change``)
    that the run's checkpoints cannot resume under: another network shape (compared
    layer by layer, `finetune.expected_weight_shapes`) or a `_FIXED_ON_RESUME` key.
    Writing the new config.json first would leave a run that no rerun can resume."""
    fixed = [key for key in _FIXED_ON_RESUME if key in changed]
    if fixed:
        raise run_lib.RunError(
            f"Work directory {workdir!r} has checkpoints, and {', '.join(fixed)} cannot "
            f"change when a run resumes (the checkpoints hold the weights and optimizer "
            f"state of the run as it was). Keep the run's value, or start a new --workdir"
            f" (with --config.model.init_from={workdir} to start from this run).")
    if not any(key.startswith("model.") for key in changed):
        return
    was = finetune.expected_weight_shapes(run.config.model)
    now = finetune.expected_weight_shapes(config.model)
    different = [layer for layer in sorted(set(was) | set(now)) if was.get(layer) != now.get(layer)]
    if different:
        layer = different[0]
        raise run_lib.RunError(
            f"Work directory {workdir!r} has checkpoints of another network: {layer} has "
            f"{was.get(layer)} in them and {now.get(layer)} in the new config (changed: "
            f"{[k for k in changed if k.startswith('model.')]}). --allow_config_change "
            f"resumes a run, it cannot reshape one: start a new --workdir with "
            f"--config.model.init_from={workdir}.")


def _count(number: int, noun: str) -> str:
    """"1 epoch", "90 epochs": the log reads as the user would write it."""
    return f"{number:,} {noun}{'' if number == 1 else 's'}"


def _plan(config, workdir: str, allow_config_change: bool, explicit_keys=()) -> _Plan:
    """The checks that need no write: the model source of ``model.init_from`` (its values
    adopted into a copy of ``config``, its weights read and every shape checked), the
    work directory (a run of another config is refused unless ``allow_config_change``),
    the cluster and strategy, the data, the classes and the batch size. Raises a
    `alexnet_tf.errors.UserError` (a ValueError: `RunError` for the work directory,
    `RunConfigError` for its config.json when it cannot be read back and
    ``allow_config_change`` is not given, `ConfigError` for a config that does not fit
    the data, the data's own errors) naming what does not fit.

    One class order: the evaluation split is read in the training split's class order
    (a class it adds is refused by name), and a run that already has checkpoints resumes
    only when the training split's classes are its ``classes.json``'s, index by index."""
    run_lib.check_workdir_path(workdir)
    run = run_lib.Run(workdir)
    if run.exists() and not allow_config_change:
        try:
            run.config
        except run_lib.RunConfigError as error:
            # Otherwise the refusal below would name only "<unreadable>" as the change.
            raise run_lib.RunConfigError(
                f"{error} Or resume the run with the config given: --allow_config_change "
                f"(the unreadable file is kept as config.<n>.json).") from None
    # By their files, as the restore finds them: a lost state file must not skip this.
    resuming = bool(run_lib.checkpoint_candidates(run.checkpoint_dir))
    config = copy.deepcopy(config)
    source = _resolve_source(config, run, resuming, set(explicit_keys))
    changed = run.config_changes(config)
    if changed and not allow_config_change:
        raise run_lib.RunError(
            f"Work directory {workdir!r} holds a run of another config (differing keys: "
            f"{changed[:10]}). Use a new --workdir, the same config to resume this run, or "
            f"--allow_config_change to resume it with the new config.")
    if resuming and changed:
        _check_resumable(run, config, changed, workdir)
    if resuming and finetune.TRAINABLE_KEY in changed:
        raise finetune.FineTuneError(
            f"Work directory {workdir!r} holds a run with other {finetune.TRAINABLE_KEY}: its "
            f"checkpoints' optimizer state is per trainable variable, so the set cannot "
            f"change on resume. Start a new run with --config.model.init_from={workdir}.")
    t = config.train
    strategy = distribute.create_strategy()
    task = task_lib.ClassificationTask(config, strategy)  # refuses what the strategy can't run
    train_split = _load_train_split(config, source, run, resuming)
    if resuming:
        saved = [c["id"] for c in run.classes()]
        difference = sources.first_class_difference(saved, train_split.class_names)
        if difference:
            i, was, now = difference
            raise run_lib.RunError(
                f"Work directory {workdir!r} holds a run trained on other classes: class "
                f"{i} is {was!r} in its {run.classes_path} but {now!r} in the training split "
                f"{config.data.train_split!r} ({len(saved)} vs {len(train_split.class_names)} "
                f"classes); resuming would shift the labels under the checkpoint. Restore "
                f"the class folders' names, or train in a new --workdir.")
    eval_split = sources.load_split(config.data, config.data.eval_split,
                                    class_names=train_split.class_names)
    if len(train_split.class_names) != config.model.num_classes:
        raise config_lib.ConfigError(
            f"config.model.num_classes is {config.model.num_classes} but the training split "
            f"has {len(train_split.class_names)} classes; set --config.model.num_classes="
            f"{len(train_split.class_names)}.")
    replicas = strategy.num_replicas_in_sync
    if t.global_batch_size % replicas:
        raise config_lib.ConfigError(
            f"train.global_batch_size={t.global_batch_size} is not divisible by the "
            f"{replicas} replicas in sync; expected a multiple of {replicas}.")
    steps_per_epoch = _steps_per_epoch(t, train_split)
    if config.data.service_address:
        # A source that cannot stream, or no dispatcher at the address, fails here, before
        # anything is written (TensorFlow's client would wait for a dispatcher forever).
        train_split.stream_records(seed=config.seed, start=0,
                                   examples_per_pass=steps_per_epoch * t.global_batch_size)
        if not service.check_dispatcher(config.data.service_address):
            logging.warning("No worker is registered with the tf.data service at %s: training "
                            "waits for the first (alexnet-data-service worker "
                            "--dispatcher=...).", config.data.service_address)
    # Last: reading the source's weights is the most expensive check.
    seed = finetune.plan_seed(config, source) if source is not None and not resuming else None
    return _Plan(config, run, changed, strategy, distribute.is_chief(strategy), task,
                 train_split, eval_split, steps_per_epoch, seed)


def train_and_evaluate(config, workdir: str, *, allow_config_change: bool = False,
                       explicit_keys=()) -> dict:
    """Validates ``config`` (`alexnet_tf.config.validate`), then trains and evaluates as
    configured (`train`); returns the final validation metrics."""
    return train(config_lib.validate(config), workdir, allow_config_change=allow_config_change,
                 explicit_keys=explicit_keys)


def train(config, workdir: str, *, allow_config_change: bool = False,
          explicit_keys=()) -> dict:
    """Trains and evaluates a validated config; returns the final validation metrics.

    Everything that can be checked is checked before the first write (`_plan`). Then
    the resolved config (with what ``model.init_from`` adopted) is written to
    ``workdir/config.json`` (the previous one kept as ``config.<n>.json`` when it
    changed). Keras' global dtype policy is set for the run (``train.mixed_precision``)
    and put back afterwards, so that a run leaves the process as it found it.

    ``explicit_keys``: the dotted keys the user set by hand (``alexnet-train``: its
    ``--config.*`` flags); with ``model.init_from``, one that contradicts the source's
    input convention or architecture stops the run (`finetune.adopt`), where a value
    of the config file is replaced by the source's.
    """
    plan = _plan(config, workdir, allow_config_change, explicit_keys)
    config = plan.config
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
    layers = finetune.layer_names(config.model.variant)
    trainable = finetune.select_layers(t.trainable_layers, layers)
    with strategy.scope():
        model = models.model_from_config(config)
        if plan.seed is not None:
            seed = plan.seed
            count = finetune.load_layers(model, seed)
            logging.info("Initialised from %s: loaded %s (%s values)%s.", seed.origin,
                         ", ".join(seed.loaded), f"{count:,}",
                         f"; {', '.join(seed.initialised)} starts from the variant's "
                         f"initialiser ({config.model.num_classes} classes, the source has "
                         f"{seed.source_classes})" if seed.initialised else "")
        frozen = finetune.freeze(model, trainable)
        if frozen:
            logging.info("Frozen (no update, no weight decay, BatchNorm in inference mode): "
                         "%s; training %s.", ", ".join(frozen), ", ".join(trainable))
        multipliers = finetune.parse_lr_multipliers(t.lr_multipliers, layers)
        if multipliers:
            logging.info("Learning-rate multipliers (Caffe's lr_mult): %s.", ", ".join(
                f"{layer} x{value:g}" for layer, value in multipliers.items()))
        optimizer = optim.create_optimizer(t, steps_per_epoch,
                                           global_batch_size=t.global_batch_size,
                                           lr_multipliers=multipliers)
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
        # Counted as the epoch log lines count (1-based "epoch E/N"): epochs done.
        logging.info("Resumed from %s at step %d (%d of %d epochs done).", latest,
                     int(step.numpy()), int(epoch_var.numpy()), t.total_epochs)
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

    def service_dataset_fn(start_step, job):
        """The training batches from the tf.data service: one stream for the rest of
        the run, from example start_step x global batch (alexnet_tf.data.service)."""
        def fn(context):
            batch = context.get_per_replica_batch_size(global_batch)
            records = plan.train_split.stream_records(
                seed=config.seed, start=start_step * global_batch,
                examples_per_pass=steps_per_epoch * global_batch)
            ds = pipeline.make_dataset(
                plan.train_split, config.data, image_size=config.model.image_size,
                batch_size=batch, training=True, num_classes=config.model.num_classes,
                seed=config.seed, records=records, **task.pipeline_args())
            ds = service.distribute(ds, config.data.service_address, job)
            if pipeline.mixing_enabled(config.data):
                ds = pipeline.mix_batches(ds, config.data, config.model.num_classes,
                                          config.seed, 0, start_step, context.input_pipeline_id)
            return ds
        return fn

    def run_eval():
        return evaluate.run_evaluation(eval_step, strategy.distribute_datasets_from_function(
            evaluate.eval_dataset_fn(plan.eval_split, config, task, config.eval.ten_crop)))

    logger = hooks.TrainLogger(run, strategy, plan.chief, t.total_epochs)
    kernel_summaries = hooks.KernelSummaries(model, task.convention, logger.writers["train"])
    metrics = {}
    logging.info("Training %s (%s parameters) on %s: %s of %s, global batch %d, %s%s%s.",
                 model.name, f"{model.count_params():,}",
                 _count(strategy.num_replicas_in_sync, "replica"),
                 _count(t.total_epochs, "epoch"), _count(steps_per_epoch, "step"), global_batch,
                 keras.mixed_precision.global_policy().name,
                 ", XLA" if t.jit_compile else "",
                 # Sec. 3.2's placement, said aloud: the user asked for these devices.
                 f", tower 1 on {task.tower_devices[0]} and tower 2 on "
                 f"{task.tower_devices[1]}" if task.tower_devices else "")
    served = None
    if config.data.service_address and current < t.total_epochs * steps_per_epoch:
        job = service.job_name(run.workdir, current, distribute.agreed_number(strategy))
        served = iter(strategy.distribute_datasets_from_function(service_dataset_fn(current, job)))
        logging.info("Training input from the tf.data service at %s (job %s), from example "
                     "%d of the run's stream.", config.data.service_address, job,
                     current * global_batch)
    # Off without a service: the local pipeline cannot wait on other machines.
    watch = service.StallWatch(config.data.service_address,
                               config.data.service_stall_seconds if served else 0,
                               logging.warning)
    with watch:
        for epoch in range(int(epoch_var.numpy()), t.total_epochs):
            epoch_end = (epoch + 1) * steps_per_epoch
            done_in_epoch = current - epoch * steps_per_epoch
            iterator = served or iter(strategy.distribute_datasets_from_function(
                train_dataset_fn(epoch, done_in_epoch)))
            window = hooks.MetricWindow(first_step=current, checkpoint_dir=run.checkpoint_dir)
            window_start = epoch_start = time.perf_counter()
            bad_records.assign(0)
            for _ in range(steps_per_epoch - done_in_epoch):
                with watch.waiting(current):
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
            skipped = None if served else int(bad_records.numpy())
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
