"""The classification task: loss, metrics, the train step and the eval step.

TF Model Garden's Task seam: what is computed per batch lives here, and the
training loop (`alexnet_tf.train.loop`), evaluation (`alexnet_tf.evaluate`) and the
benchmark harness only decide when to call it. `ClassificationTask` is built once per
run from the config and the `tf.distribute` strategy; everything that can refuse the
combination (XLA over several CPU devices, the tower placement with data-parallel
replicas) refuses when it is built, before a run writes anything.

The loss is Sec. 5's multinomial logistic regression (softmax cross-entropy),
optionally with label smoothing (Szegedy et al. 2016) and soft MixUp/CutMix labels;
the metrics are Sec. 6's top-1 and top-5 error, summed so that replicas and batches
of any size add up exactly. Ten-crop evaluation (Sec. 4.1) averages the softmax of the
ten patches.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from alexnet_tf.config import ConfigError
from alexnet_tf.convention import InputConvention
from alexnet_tf.data import pipeline
from alexnet_tf.train import towers

METRIC_KEYS = ("loss", "top1", "top5", "count")


def _is_soft(labels) -> bool:
    """Soft labels are [B, num_classes] floats (MixUp/CutMix); hard labels are [B] ints."""
    return labels.shape.rank == 2


def loss_per_example(labels, logits, num_classes: int, label_smoothing: float = 0.0):
    """Cross-entropy of (smoothed) targets and float32 logits, per example: float32 [B].

    ``labels``: int class indices [B], or soft labels [B, num_classes] (rows summing
    to 1, from MixUp/CutMix), used as the targets as they are. Label smoothing
    applies to either: ``(1 - s) * target + s / num_classes``.
    """
    labels = tf.convert_to_tensor(labels)
    targets = (tf.cast(labels, tf.float32) if _is_soft(labels)
               else tf.one_hot(labels, num_classes))
    return keras.losses.categorical_crossentropy(
        targets, tf.cast(logits, tf.float32), from_logits=True, label_smoothing=label_smoothing)


def summed_metrics(labels, logits, per_example_loss) -> dict:
    """Sums (not means) of loss and correct top-1/top-5, and the example count
    (float32 scalars keyed by `METRIC_KEYS`), so that replicas and batches of any
    size add up exactly.

    With soft labels [B, num_classes], top-1/top-5 are measured against each soft
    label's largest component (the image that covers more of a MixUp/CutMix example).
    """
    labels = tf.convert_to_tensor(labels)
    if _is_soft(labels):
        labels = tf.argmax(labels, axis=-1, output_type=tf.int32)
    labels = tf.cast(labels, tf.int32)
    logits = tf.cast(logits, tf.float32)
    top1 = tf.cast(tf.math.in_top_k(labels, logits, 1), tf.float32)
    top5 = tf.cast(tf.math.in_top_k(labels, logits, min(5, logits.shape[-1])), tf.float32)
    return {"loss": tf.reduce_sum(per_example_loss), "top1": tf.reduce_sum(top1),
            "top5": tf.reduce_sum(top5), "count": tf.cast(tf.size(labels), tf.float32)}


def errors_from_sums(sums: dict) -> dict:
    """Mean loss and top-1/top-5 error from summed metrics (host floats)."""
    n = max(float(sums["count"]), 1.0)
    return {"loss": float(sums["loss"]) / n, "top1_error": 1 - float(sums["top1"]) / n,
            "top5_error": 1 - float(sums["top5"]) / n, "examples": int(sums["count"])}


def _local_devices(strategy) -> tuple:
    """The devices this process's replicas run on (none listed by the default strategy)."""
    try:
        return tuple(strategy.extended.worker_devices)
    except (RuntimeError, NotImplementedError, AttributeError):
        return ()


def check_strategy(train_config, strategy) -> None:
    """Raises `alexnet_tf.config.ConfigError` for a train config that ``strategy`` cannot run.

    * ``train.jit_compile`` with replicas on several CPU devices of one process.
      Measured, TF 2.21: an XLA-compiled replica step on one of several (logical) CPU
      devices fails reading the variables of another ("Trying to access resource"),
      with Keras' own optimizers too. One CPU device per process
      (MultiWorkerMirroredStrategy) and GPUs are not affected.
    * ``train.tower_devices`` (one model over two devices, Sec. 3.2) with more than
      one data-parallel replica, or naming anything but two devices that exist here
      (soft placement would otherwise move a tower to another device, and say
      nothing). The same device twice is allowed: the two-device code path on one.
    """
    local_devices = _local_devices(strategy)
    if train_config.jit_compile and len(local_devices) > 1 and all(
            tf.DeviceSpec.from_string(d).device_type == "CPU" for d in local_devices):
        raise ConfigError(
            f"train.jit_compile=True cannot run data-parallel over the {len(local_devices)} "
            f"CPU devices {list(local_devices)} of one process (TF's XLA cannot reach the "
            f"other devices' variables); set --config.train.jit_compile=False (XLA is slower "
            f"on CPU anyway, docs/BENCHMARKS.md) or use one device per process.")
    if train_config.tower_devices:
        check_tower_devices(train_config.tower_devices)
        if strategy.num_replicas_in_sync != 1:
            raise ConfigError(f"train.tower_devices={train_config.tower_devices!r} places one "
                             f"model on two devices; it cannot be combined with "
                             f"{strategy.num_replicas_in_sync} data-parallel replicas.")


def check_tower_devices(text: str) -> tuple[str, str]:
    """The two devices of ``train.tower_devices`` ("DEV_A,DEV_B"). Raises
    `alexnet_tf.config.ConfigError` (a ValueError) unless both are among this process's
    logical devices: TF's soft placement would otherwise run a tower elsewhere, silently."""
    names = [d.strip() for d in text.split(",") if d.strip()]
    available = {}
    for device in tf.config.list_logical_devices():
        spec = tf.DeviceSpec.from_string(device.name)
        available[(spec.device_type, spec.device_index)] = device.name
    keys = []
    for name in names:
        try:
            spec = tf.DeviceSpec.from_string(name)
        except ValueError as error:
            raise ConfigError(f"train.tower_devices names {name!r}, which is not a device "
                             f"name ({error}); expected e.g. '/GPU:0,/GPU:1'.") from None
        keys.append((spec.device_type, spec.device_index))
    if len(names) != 2:
        raise ConfigError(f"train.tower_devices={text!r} must name two devices, e.g. "
                         f"'/GPU:0,/GPU:1'.")
    missing = [n for n, k in zip(names, keys) if k not in available]
    if missing:
        raise ConfigError(f"train.tower_devices names {missing}, which this process does not "
                         f"have; its devices are {sorted(available.values())}.")
    return tuple(names)


class ClassificationTask:
    """Loss, metrics and the per-batch steps of one run, built once from its config.

    Args:
      config: a validated `alexnet_tf.config` ConfigDict (``model.num_classes``,
        ``data`` for label smoothing and the on-device input tail, ``train`` for the
        global batch, XLA and the tower placement, ``eval.ten_crop``).
      strategy: the `tf.distribute` strategy the steps run under (default: the
        current one). Raises `alexnet_tf.config.ConfigError` when it cannot run the config (`check_strategy`).
      convention: the model's input convention; default: the one the config describes
        (`InputConvention.from_config`). Evaluation passes the run's saved one.
    """

    def __init__(self, config, strategy: tf.distribute.Strategy | None = None,
                 convention: InputConvention | None = None):
        self.config = config
        self.strategy = strategy or tf.distribute.get_strategy()
        check_strategy(config.train, self.strategy)
        self.num_classes = config.model.num_classes
        self.label_smoothing = config.data.label_smoothing
        self.global_batch_size = config.train.global_batch_size
        # The input convention, built here once: saved with the run, handed to the
        # pipeline (`pipeline_args`) and to the on-device tail (data.augment_on_device).
        self.convention = convention or InputConvention.from_config(config)
        self.lighting = pipeline.lighting(config.data)
        self.tower_devices = tuple(d.strip() for d in config.train.tower_devices.split(",")
                                   if d.strip())

    def pipeline_args(self) -> dict:
        """The keyword arguments of `pipeline.make_dataset` that this task owns."""
        return {"norm": self.convention, "light": self.lighting}

    def loss(self, labels, logits):
        """Per-example cross-entropy: float32 [B]."""
        return loss_per_example(labels, logits, self.num_classes, self.label_smoothing)

    def train_step(self, model, optimizer):
        """A tf.function: one distributed batch -> one optimizer step; returns the summed
        metrics (`METRIC_KEYS`), all-reduced over replicas.

        The loss is summed per replica and divided by the global batch, so that the
        all-reduced gradient equals the single-device gradient of the same global batch.
        """
        strategy, global_batch = self.strategy, self.global_batch_size
        loss_scaled = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        tower_devices = self.tower_devices
        if tower_devices:
            towers.check_towerable(model)
        norm, light = self.convention, self.lighting

        def forward(images):
            if tower_devices:
                return towers.two_tower_forward(model, images, tower_devices, training=True)
            return model(images, training=True)

        def replica_train_step(inputs, labels):
            images = pipeline.finish_on_device(inputs, norm, light)  # no-op unless on device
            with tf.GradientTape() as tape:
                logits = forward(images)
                per_example = self.loss(labels, logits)
                loss = tf.reduce_sum(per_example) / global_batch
                scaled = optimizer.scale_loss(loss) if loss_scaled else loss
            variables = model.trainable_variables
            gradients = tape.gradient(scaled, variables)
            # The paper's coupled weight decay is the optimizer's (optim.CoupledSGD);
            # under loss scaling it sees the unscaled gradients.
            optimizer.apply_gradients(zip(gradients, variables))
            return summed_metrics(labels, logits, per_example)

        replica_fn = (tf.function(replica_train_step, jit_compile=True)
                      if self.config.train.jit_compile else replica_train_step)

        @tf.function
        def step(batch):
            sums = strategy.run(replica_fn, args=batch)
            return {k: strategy.reduce("SUM", v, axis=None) for k, v in sums.items()}

        return step

    def eval_step(self, model, ten_crop: bool | None = None):
        """A tf.function: one distributed batch -> summed metrics over all replicas.

        ``ten_crop`` (default ``eval.ten_crop``): the batch's images are
        [B, 10, S, S, 3] and the ten softmax outputs are averaged (Sec. 4.1).
        """
        strategy, num_classes = self.strategy, self.num_classes
        ten_crop = self.config.eval.ten_crop if ten_crop is None else ten_crop

        def replica_step(images, labels):
            if ten_crop:
                crops = tf.reshape(images, [-1] + images.shape[2:].as_list())
                probs = tf.nn.softmax(tf.cast(model(crops, training=False), tf.float32))
                probs = tf.reduce_mean(tf.reshape(probs, [-1, 10, num_classes]), axis=1)
                logits = tf.math.log(probs + 1e-12)  # log of the averaged softmax: same ranking
            else:
                logits = model(images, training=False)
            # Evaluation loss without label smoothing: the plain cross-entropy.
            return summed_metrics(labels, logits, loss_per_example(labels, logits, num_classes))

        @tf.function
        def step(batch):
            sums = strategy.run(replica_step, args=batch)
            return {k: strategy.reduce("SUM", v, axis=None) for k, v in sums.items()}

        return step
