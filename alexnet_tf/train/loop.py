"""`train_and_evaluate(config, workdir)`: the training loop behind ``alexnet-train``.

One loop for every scale: the strategy (`distribute.create_strategy`) decides the
devices, datasets come from ``distribute_datasets_from_function`` with per-replica
batches, and the loop never asks which strategy it has. Each epoch: train on a
(seed, epoch)-fixed order of the training split, evaluate on the validation split,
update the learning rate, checkpoint (and keep the best by validation error).

A run killed at any point (even SIGKILL) restarts from its last checkpoint: model,
optimizer (momentum, loss scale), step, epoch, plateau state, best error, and the
position in the epoch's data. A NaN or Inf loss stops the run before anything is
saved, so the last checkpoint stays good: the step's metrics stay on the device and
are read, and checked, at every log line, epoch end and checkpoint save.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from alexnet_tf import checkpoints
from alexnet_tf import config as config_lib
from alexnet_tf import evaluate, models
from alexnet_tf.analysis import kernels as kernel_analysis
from alexnet_tf.data import pipeline, sources
from alexnet_tf.train import distribute, optim, towers

CHECKPOINT_DIR = checkpoints.CHECKPOINT_DIR
BEST_DIR = checkpoints.BEST_DIR  # checkpoints/best: the lowest validation top-1 error so far
CLASSES_FILENAME = checkpoints.CLASSES_FILENAME
METRICS_FILENAME = "metrics.json"


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf."""


METRIC_KEYS = ("loss", "top1", "top5", "count")


@tf.function
def _add_sums(window, sums):
    """``window + sums`` per metric, on the device and in float64 (a window of steps
    adds up many float32 sums)."""
    return {k: window[k] + tf.cast(sums[k], tf.float64) for k in METRIC_KEYS}


class MetricWindow:
    """The train step's summed metrics over the steps since the last log line, kept on
    the device: adding a step is one op and no read, so the host does not wait for the
    device every step. The sums are read (`read_checked`) at log intervals, at epoch
    ends and before every checkpoint save, and those reads run the NaN/Inf guard.
    """

    def __init__(self, first_step: int):
        self.checked_through = first_step  # every step up to this one had a finite loss
        self.reset()

    def reset(self) -> None:
        self.sums = {k: tf.zeros([], tf.float64) for k in METRIC_KEYS}

    def add(self, sums) -> None:
        self.sums = _add_sums(self.sums, sums)

    def read_checked(self, step: int, checkpoint_dir: str) -> dict:
        """The sums on the host; raises NonFiniteLossError if a step's loss since the
        last read (after ``checked_through``, up to ``step``) was NaN or Inf."""
        # One stacked read: the host waits for the device once.
        values = dict(zip(METRIC_KEYS, tf.stack([self.sums[k] for k in METRIC_KEYS])
                          .numpy().tolist()))
        if not math.isfinite(values["loss"]):
            first = self.checked_through + 1
            where = (f"at step {step}" if first >= step
                     else f"between step {first} and step {step}")
            raise NonFiniteLossError(
                f"Training loss is {values['loss']} {where}: stopping without saving; the "
                f"last good checkpoint is {tf.train.latest_checkpoint(checkpoint_dir)}.")
        self.checked_through = step
        return values


def build_model(config) -> keras.Model:
    m = config.model
    return models.create_model(m.variant, num_classes=m.num_classes, image_size=m.image_size,
                               width=m.width, dropout_rate=m.dropout_rate, groups=m.groups,
                               init=m.init or None, lrn_bias=m.lrn_bias,
                               lrn_alpha=m.lrn_alpha,
                               grouped_conv_implementation=m.grouped_conv_implementation,
                               seed=config.seed)


def _diff(a, b, prefix=""):
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            yield from _diff(x, y, prefix + key + ".")
        elif x != y:
            yield prefix + key


def check_workdir(config, workdir: str, allow_config_change: bool = False) -> list[str]:
    """Refuses a work directory that holds a run of another config, unless allowed.

    Returns the differing keys (empty for a new run or the same config).
    """
    path = os.path.join(workdir, config_lib.CONFIG_FILENAME)
    if not os.path.exists(path):
        return []
    try:
        # Read through the schema, so keys added to it since the run started compare
        # at their defaults instead of counting as a change.
        saved = json.loads(config_lib.read_config(path).to_json_best_effort())
    except (config_lib.ConfigError, ValueError) as error:
        saved = {"<unreadable under this version's schema>": str(error)}
    diff = list(_diff(saved, json.loads(config.to_json_best_effort())))
    if diff and not allow_config_change:
        raise ValueError(
            f"Work directory {workdir!r} holds a run of another config (differing keys: "
            f"{diff[:10]}). Use a new --workdir, the same config to resume this run, or "
            f"--allow_config_change to resume it with the new config.")
    return diff


def write_classes(split, directory: str) -> str:
    """Writes the class index -> id (e.g. wnid) -> readable name mapping as JSON."""
    readable = split.readable_names or split.class_names
    classes = [{"index": i, "id": c, "name": n}
               for i, (c, n) in enumerate(zip(split.class_names, readable))]
    path = os.path.join(directory, CLASSES_FILENAME)
    with open(path, "w") as f:
        json.dump(classes, f, indent=1)
    return path


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


def _set_precision(t) -> None:
    """Keras' global dtype policy for this run (Micikevicius et al. 2018 for float16)."""
    policy = {"none": "float32", "float16": "mixed_float16",
              "bfloat16": "mixed_bfloat16"}[t.mixed_precision]
    keras.mixed_precision.set_global_policy(policy)


def check_jit_compile(train_config, strategy) -> None:
    """Refuses ``train.jit_compile`` with replicas on several CPU devices of one process.

    Measured, TF 2.21: an XLA-compiled replica step on one of several (logical) CPU
    devices fails reading the variables of another ("Trying to access resource"), with
    Keras' own optimizers too. One CPU device per process (MultiWorkerMirroredStrategy)
    and GPUs are not affected.
    """
    local_devices = _local_devices(strategy)
    if train_config.jit_compile and len(local_devices) > 1 and all(
            tf.DeviceSpec.from_string(d).device_type == "CPU" for d in local_devices):
        raise ValueError(
            f"train.jit_compile=True cannot run data-parallel over the {len(local_devices)} "
            f"CPU devices {list(local_devices)} of one process (TF's XLA cannot reach the "
            f"other devices' variables); set --config.train.jit_compile=False (XLA is slower "
            f"on CPU anyway, docs/BENCHMARKS.md) or use one device per process.")


def _local_devices(strategy) -> tuple:
    """The devices this process's replicas run on (none listed by the default strategy)."""
    try:
        return tuple(strategy.extended.worker_devices)
    except (RuntimeError, NotImplementedError, AttributeError):
        return ()


def make_train_step(model, optimizer, strategy, config):
    """A tf.function: one distributed batch -> one optimizer step; returns summed metrics.

    The loss is summed per replica and divided by the global batch, so that the
    all-reduced gradient equals the single-device gradient of the same global batch.
    """
    t = config.train
    num_classes = config.model.num_classes
    global_batch = t.global_batch_size
    norm = pipeline.normalization(config.data)
    light = pipeline.lighting(config.data)
    loss_scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
    tower_devices = tuple(d.strip() for d in t.tower_devices.split(",") if d.strip())
    if tower_devices:
        towers.check_towerable(model)
        if strategy.num_replicas_in_sync != 1:
            raise ValueError(f"train.tower_devices={t.tower_devices!r} places one model on two "
                             f"devices; it cannot be combined with "
                             f"{strategy.num_replicas_in_sync} data-parallel replicas.")
    check_jit_compile(t, strategy)

    def forward(images):
        if tower_devices:
            return towers.two_tower_forward(model, images, tower_devices, training=True)
        return model(images, training=True)

    def replica_train_step(inputs, labels):
        images = pipeline.finish_on_device(inputs, norm, light)  # no-op unless augment_on_device
        with tf.GradientTape() as tape:
            logits = forward(images)
            per_example = evaluate.loss_per_example(labels, logits, num_classes,
                                                    config.data.label_smoothing)
            loss = tf.reduce_sum(per_example) / global_batch
            scaled = optimizer.scale_loss(loss) if loss_scaled else loss
        variables = model.trainable_variables
        gradients = tape.gradient(scaled, variables)
        # The paper's coupled weight decay is the optimizer's (optim.CoupledSGD); under
        # loss scaling it sees the unscaled gradients.
        optimizer.apply_gradients(zip(gradients, variables))
        return evaluate.summed_metrics(labels, logits, per_example)

    replica_fn = (tf.function(replica_train_step, jit_compile=True) if t.jit_compile
                  else replica_train_step)

    @tf.function
    def train_step(batch):
        sums = strategy.run(replica_fn, args=batch)
        return {k: strategy.reduce("SUM", v, axis=None) for k, v in sums.items()}

    return train_step


def weights_checksum(model) -> float:
    """A float64 sum over all weights: equal on every worker when they agree."""
    return float(sum(np.asarray(w, np.float64).sum() for w in model.get_weights()))


def train_and_evaluate(config, workdir: str, *, allow_config_change: bool = False) -> dict:
    """Trains and evaluates as configured; returns the final validation metrics.

    Keras' global dtype policy is set for the run (``train.mixed_precision``) and put
    back afterwards, so that a run leaves the process as it found it.
    """
    previous_policy = keras.mixed_precision.global_policy()
    try:
        return _train_and_evaluate(config, workdir, allow_config_change)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _train_and_evaluate(config, workdir: str, allow_config_change: bool) -> dict:
    """Trains and evaluates as configured; returns the final validation metrics.

    Everything that can be checked is checked before the first write: the config, the
    work directory (a run of another config is refused unless ``allow_config_change``),
    the data, the cluster and the batch size. Then the resolved config is written to
    ``workdir/config.json`` (the previous one kept as ``config.<n>.json`` when it changed).
    """
    config = config_lib.validate(config)
    changed = check_workdir(config, workdir, allow_config_change)
    t = config.train
    strategy = distribute.create_strategy()
    check_jit_compile(t, strategy)  # before the first write
    chief = distribute.is_chief(strategy)
    train_split = sources.load_split(config.data, config.data.train_split)
    eval_split = sources.load_split(config.data, config.data.eval_split)
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
    steps_per_epoch = _steps_per_epoch(t, train_split)

    if chief:
        os.makedirs(workdir, exist_ok=True)
        if changed:
            number = 1
            while os.path.exists(os.path.join(workdir, f"config.{number}.json")):
                number += 1
            shutil.copy(os.path.join(workdir, config_lib.CONFIG_FILENAME),
                        os.path.join(workdir, f"config.{number}.json"))
            logging.warning("Resuming with a changed config (%s); the previous one is kept as "
                            "config.%d.json.", ", ".join(changed[:10]), number)
        config_lib.write_config(config, workdir)
        write_classes(train_split, workdir)

    _set_precision(t)
    with strategy.scope():
        model = build_model(config)
        optimizer = optim.create_optimizer(t, steps_per_epoch, global_batch_size=t.global_batch_size)
        optimizer.build(model.trainable_variables)
        plateau = optim.Plateau(t, global_batch_size=t.global_batch_size)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        best_error = tf.Variable(float("inf"), dtype=tf.float64, trainable=False,
                                 name="best_error")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, plateau=plateau,
                                     step=step, epoch=epoch_var, best_error=best_error)
    checkpoint_dir = os.path.join(workdir, CHECKPOINT_DIR)
    manager = tf.train.CheckpointManager(
        checkpoint, distribute.write_dir(checkpoint_dir, strategy), max_to_keep=t.keep_checkpoints)
    best_manager = tf.train.CheckpointManager(
        checkpoint, distribute.write_dir(os.path.join(checkpoint_dir, BEST_DIR), strategy),
        max_to_keep=1)
    # Every worker resumes from the chief's directory (a shared file system).
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if latest:
        try:
            checkpoint.restore(latest).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as error:
            raise ValueError(f"Checkpoint {latest!r} does not match the model and optimizer "
                             f"built from the config: {error}") from None
        logging.info("Resumed from %s at step %d (epoch %d).", latest, int(step.numpy()),
                     int(epoch_var.numpy()))
    # The step count lives in Python during training, so that counting a step touches
    # no device variable; `step` is set from it just before each save.
    current = int(step.numpy())

    def save(checkpoint_manager, number):
        step.assign(number, read_value=False)
        checkpoint_manager.save(checkpoint_number=number)

    lr_keys = {"train.learning_rate", "train.lr_base_batch_size", "train.global_batch_size"}
    if latest and lr_keys & set(changed):
        # An asked-for change of the learning rate wins over the one the run had reached.
        plateau.learning_rate.assign(optim.base_learning_rate(t, t.global_batch_size))
        logging.warning("The learning rate changed in the config: restarting it at %g.",
                        float(plateau.learning_rate.numpy()))
    if t.schedule in ("plateau", "constant"):
        optimizer.learning_rate = plateau.learning_rate.numpy()

    num_classes = config.model.num_classes
    global_batch = t.global_batch_size
    train_step = make_train_step(model, optimizer, strategy, config)
    eval_step = evaluate.make_eval_step(model, strategy, num_classes, config.eval.ten_crop)
    bad_records = tf.Variable(0, dtype=tf.int64, trainable=False)  # per epoch, not saved

    def train_dataset_fn(epoch, skip_steps):
        def fn(context):
            batch = context.get_per_replica_batch_size(global_batch)
            skip = skip_steps * batch * context.num_replicas_in_sync // context.num_input_pipelines
            return pipeline.make_dataset(
                train_split, config.data, image_size=config.model.image_size, batch_size=batch,
                training=True, num_classes=num_classes, seed=config.seed, epoch=epoch,
                skip_examples=skip, input_context=context, bad_records=bad_records)
        return fn

    def run_eval():
        return evaluate.run_evaluation(eval_step, strategy.distribute_datasets_from_function(
            evaluate.eval_dataset_fn(eval_split, config, config.eval.ten_crop)))

    writers = {name: tf.summary.create_file_writer(
        os.path.join(workdir, "tensorboard", name) if chief else
        os.path.join(distribute.write_dir(checkpoint_dir, strategy), "tensorboard", name))
        for name in ("train", "eval")}
    metrics = {}
    logging.info("Training %s (%s parameters) on %d replica(s): %d epochs of %d steps, "
                 "global batch %d, %s%s.", model.name, f"{model.count_params():,}",
                 replicas, t.total_epochs, steps_per_epoch, global_batch,
                 keras.mixed_precision.global_policy().name,
                 ", XLA" if t.jit_compile else "")
    for epoch in range(int(epoch_var.numpy()), t.total_epochs):
        epoch_end = (epoch + 1) * steps_per_epoch
        done_in_epoch = current - epoch * steps_per_epoch
        iterator = iter(strategy.distribute_datasets_from_function(
            train_dataset_fn(epoch, done_in_epoch)))
        window = MetricWindow(first_step=current)
        window_start = epoch_start = time.perf_counter()
        bad_records.assign(0)
        for _ in range(steps_per_epoch - done_in_epoch):
            batch = iterator.get_next_as_optional()
            if not batch.has_value():
                # Bad records were skipped, so the epoch has fewer full batches; the step
                # counter still moves to the epoch's end, which keeps resuming exact.
                logging.warning("Epoch %d ended %d steps early: bad records were skipped.",
                                epoch + 1, epoch_end - current)
                window.read_checked(current, checkpoint_dir)  # the steps it did run
                current = epoch_end
                break
            window.add(train_step(batch.get_value()))
            current += 1
            if current % t.log_every_steps == 0 or current == epoch_end:
                sums = window.read_checked(current, checkpoint_dir)
                elapsed = time.perf_counter() - window_start
                values = {"loss": sums["loss"] / sums["count"],
                          "top1_error": 1 - sums["top1"] / sums["count"],
                          "top5_error": 1 - sums["top5"] / sums["count"],
                          # convert_to_tensor: a mirrored variable under tf.distribute
                          "learning_rate": float(tf.convert_to_tensor(optimizer.learning_rate)),
                          "images_per_second": sums["count"] / max(elapsed, 1e-9)}
                logging.info("epoch %d/%d step %d: loss %.4f, top-1 error %.3f, top-5 error "
                             "%.3f, lr %.5g, %.1f images/s", epoch + 1, t.total_epochs, current,
                             *values.values())
                with writers["train"].as_default(step=current):
                    for key, value in values.items():
                        tf.summary.scalar(key, value)
                window.reset()
                window_start = time.perf_counter()
            if current % t.checkpoint_every_steps == 0:
                # The guard runs before every save, so no NaN/Inf loss reaches a checkpoint.
                if window.checked_through < current:
                    window.read_checked(current, checkpoint_dir)
                save(manager, current)
        skipped = int(bad_records.numpy())
        epoch_var.assign(epoch + 1)
        event = None
        if (epoch + 1) % config.eval.every_epochs == 0 or epoch + 1 == t.total_epochs:
            metrics = run_eval()
            logging.info("epoch %d/%d done in %.1f s (%d bad training records skipped): "
                         "validation loss %.4f, top-1 error %.4f, top-5 error %.4f (%d images)",
                         epoch + 1, t.total_epochs, time.perf_counter() - epoch_start,
                         skipped, metrics["loss"], metrics["top1_error"],
                         metrics["top5_error"], metrics["examples"])
            with writers["eval"].as_default(step=current):
                for key in ("loss", "top1_error", "top5_error"):
                    tf.summary.scalar(key, metrics[key])
                tf.summary.scalar("bad_training_records", skipped)
            if t.schedule == "plateau":
                event = plateau.update(metrics["top1_error"])
                if event == "dropped":
                    optimizer.learning_rate = plateau.learning_rate.numpy()
                    logging.info("Validation error stopped improving: learning rate now %.5g "
                                 "(drop %d of %d).", float(plateau.learning_rate),
                                 int(plateau.drops), t.plateau_max_drops)
            if metrics["top1_error"] < float(best_error.numpy()):
                best_error.assign(metrics["top1_error"])
                save(best_manager, current)
        save(manager, current)
        with writers["train"].as_default(step=current):
            # Sec. 6.1, Fig. 3: the conv1 kernels of each tower and their colour specificity.
            kernel_analysis.write_summaries(model, config.data)
        if event == "stop":
            logging.info("Validation error stopped improving after the last learning-rate "
                         "drop: stopping (Sec. 5).")
            break
    if not metrics:
        metrics = run_eval()
    checksum = weights_checksum(model)
    metrics = dict(metrics, step=current, epoch=int(epoch_var.numpy()),
                   best_top1_error=float(best_error.numpy()), weights_checksum=checksum)
    if chief:
        with open(os.path.join(workdir, METRICS_FILENAME), "w") as f:
            json.dump(metrics, f, indent=2)
    distribute.cleanup_write_dir(checkpoint_dir, strategy)
    logging.info("Final validation: top-1 accuracy %.2f%%, top-5 accuracy %.2f%% "
                 "(top-1 error %.4f, top-5 error %.4f); weights checksum %.10g.",
                 100 * (1 - metrics["top1_error"]), 100 * (1 - metrics["top5_error"]),
                 metrics["top1_error"], metrics["top5_error"], checksum)
    return metrics
