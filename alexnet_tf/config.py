"""The configuration schema: defaults, validation with named errors, and the resolved-config file.

Every config file in configs/ starts from `base_config()` (a locked
``ml_collections.ConfigDict``: assigning a key that the schema does not have fails
at once), overrides what its recipe needs and returns it from ``get_config(arg)``.
Binaries read it with ``config_flags.DEFINE_config_file`` (``--config=FILE[:arg]``
and ``--config.key=value``) and call `validate` before anything touches the work
directory. Library code takes the ConfigDict; it never reads flags.

The defaults are the paper's recipe (Krizhevsky et al. 2012); each carries the
section it comes from. This module and `alexnet_tf.models` import neither TensorFlow
nor Keras, so a config file loads, and is validated, before either starts.

Fine-tuning (Sec. 6) is five keys: ``model.init_from`` names a model source that seeds
the run (its input convention and architecture are adopted, matching layers loaded, a
new ``fc8`` when ``model.num_classes`` differs), ``model.init_from_flags_win`` and
``model.init_from_new_head`` adjust that, ``train.trainable_layers`` ("fc7,fc8",
"conv*": comma-separated layer names with shell wildcards) freezes the rest, and
``train.lr_multipliers`` ("fc8=10") is Caffe's per-layer ``lr_mult``. `validate` checks
the patterns against the variant's layers (`alexnet_tf.train.finetune`); the source
itself is read by the training loop, before it writes anything.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from typing import Any

import ml_collections
from ml_collections import config_dict

from alexnet_tf import architecture
from alexnet_tf.errors import UserError
from alexnet_tf.data import service  # imports no TensorFlow
from alexnet_tf.data.stats import IMAGENET_MEAN_RGB
from alexnet_tf.train import finetune  # imports neither TensorFlow nor Keras

DATA_SOURCES = ("demo", "image_folder", "tfrecord", "tfds")
# data.demo_set: the demo's ten classes, or the transfer demo's six others
# (alexnet_tf.data.demo.SETS).
DEMO_SETS = ("shapes", "transfer")
AUGMENTATIONS = ("paper", "modern", "none")
OPTIMIZERS = ("sgd", "adamw")
WEIGHT_DECAY_MODES = ("coupled", "decoupled")
SCHEDULES = ("constant", "plateau", "cosine")


class ConfigError(UserError, ValueError):
    """A config key is unknown or holds a value outside what it accepts."""


def base_config() -> ml_collections.ConfigDict:
    """The full schema with the paper's values as defaults, locked."""
    c = ml_collections.ConfigDict()
    c.seed = 0  # seeds initialisation, data order and augmentation

    c.model = ml_collections.ConfigDict()
    c.model.variant = "paper"  # a key of alexnet_tf.architecture.VARIANTS
    c.model.num_classes = 1000  # Sec. 3.5: 1000-way softmax
    c.model.image_size = 227  # Sec. 3.5 says 224; 227 is what conv1's arithmetic needs
    c.model.width = 1.0
    c.model.dropout_rate = 0.5  # Sec. 4.2
    c.model.groups = config_dict.placeholder(int)  # None: the variant's own grouping
    c.model.init = ""  # "": the variant's own; else one of architecture.INIT_SCHEMES
    # None: the paper's k=2, alpha=1e-4 (Sec. 3.3); Caffe weights need 1.0 and 2e-5.
    c.model.lrn_bias = config_dict.placeholder(float)
    c.model.lrn_alpha = config_dict.placeholder(float)
    c.model.grouped_conv_implementation = "auto"
    # Fine-tuning (Sec. 6: pre-trained on ImageNet Fall 2011, fine-tuned on ILSVRC-2012;
    # alexnet_tf/train/finetune.py). init_from: a model source (a run's work directory, a
    # checkpoint, a .keras file, a tools/convert_weights.py directory) that seeds a fresh
    # run: its input convention and architecture are adopted, every layer whose shapes
    # match is loaded, fc8 starts fresh when num_classes differs. "": train from scratch.
    c.model.init_from = ""
    # True: a --config.* flag that contradicts the source's convention or architecture
    # wins (without it such a flag stops the run, naming both values).
    c.model.init_from_flags_win = False
    # True: fc8 starts fresh even when num_classes equals the source's, and the training
    # folder's classes are not mapped by name onto the source's.
    c.model.init_from_new_head = False

    c.data = ml_collections.ConfigDict()
    c.data.source = "demo"  # one of DATA_SOURCES
    c.data.data_dir = ""  # "" for "demo": ~/.cache/alexnet_tf/demo; for "tfds": TFDS's default
    # "tfds": a prepared TFDS image-classification builder read from data_dir, e.g.
    # "imagenet2012" (its splits are "train" and "validation").
    c.data.tfds_name = ""
    # image_folder: a flat ImageNet validation folder needs its label file (one wnid
    # per line, or the devkit's ILSVRC2012_validation_ground_truth.txt with meta.mat);
    # a synsets file ("n01440764 tench, Tinca tinca" lines) gives readable class names.
    c.data.val_labels_file = ""
    c.data.val_meta_file = ""
    c.data.synsets_file = ""
    c.data.tfrecord_label_offset = 1  # the Inception/TPU converters store labels 1..1000
    c.data.shuffle_buffer = 10_000  # TFRecords only; file lists are shuffled in full
    c.data.on_bad_record = "skip"  # "skip": log, count and go on; "fail": stop the run
    # "grpc://host:5050": training input from a tf.data service cluster
    # (alexnet-data-service; alexnet_tf.data.service); "": the local pipeline.
    c.data.service_address = ""
    # Seconds without a batch from the service before training says so (repeated);
    # 0: never (alexnet_tf.data.service.StallWatch).
    c.data.service_stall_seconds = 300.0
    # Crop on the CPU, then flip, lighting and normalisation batched in the train step.
    c.data.augment_on_device = False
    # Applied in the loss, configured with the data it softens (Szegedy et al. 2016).
    c.data.label_smoothing = 0.0
    c.data.train_split = "train"
    c.data.eval_split = "val"
    c.data.resize_size = 256  # Sec. 2: shorter side 256, central 256x256 crop
    c.data.augmentation = "paper"  # Sec. 4.1: random crops, flips, PCA lighting
    # data.augmentation="modern" only (Keras 3's layers): RandAugment (Cubuk et al. 2020)
    # per image, num_ops of its 11 operations (0: off), each with a strength drawn up to
    # magnitude (Keras' factor, in [0, 1]); MixUp (Zhang et al. 2018) and CutMix (Yun et
    # al. 2019) per batch with weights ~ Beta(alpha, alpha) (0: off; CutMix's alpha in
    # (0, 1], Keras' bound); both on: one of them per batch, probability 1/2 (timm).
    # Mixing makes the training labels soft; top-1/top-5 count the soft label's argmax.
    c.data.randaugment_num_ops = 0
    c.data.randaugment_magnitude = 0.5
    c.data.mixup_alpha = 0.0
    c.data.cutmix_alpha = 0.0
    c.data.pca_lighting_std = 0.1  # Sec. 4.1: alpha_i ~ N(0, 0.1)
    # Sec. 2 subtracts the mean image; the per-channel ImageNet mean (R, G, B on
    # 0..255) is what most reimplementations use, and what this package uses.
    c.data.mean_rgb = IMAGENET_MEAN_RGB
    c.data.std_rgb = (1.0, 1.0, 1.0)  # the paper scales nothing
    # tools/dataset_stats.py output (.npz): when set, it supplies the mean and the PCA
    # eigen-decomposition, and data.mean_rgb must stay at its default.
    c.data.stats_file = ""
    c.data.mean = "per_channel"  # or "image": Sec. 2's mean image (needs data.stats_file)
    # The channel order the model expects after normalisation: "BGR" for weights
    # imported from Caffe. mean_rgb/std_rgb stay in R, G, B order either way.
    c.data.channel_order = "RGB"
    c.data.demo_train_per_class = 400
    c.data.demo_val_per_class = 100
    c.data.demo_seed = 0
    # "shapes": the demo's ten classes; "transfer": six other classes drawn the same way,
    # for the transfer demo (configs/demo_finetune.py).
    c.data.demo_set = "shapes"

    c.train = ml_collections.ConfigDict()
    c.train.global_batch_size = 128  # Sec. 5
    c.train.total_epochs = 90  # Sec. 5: "roughly 90 cycles"
    c.train.steps_per_epoch = config_dict.placeholder(int)  # None: one pass over the data
    c.train.optimizer = "sgd"
    c.train.learning_rate = 0.01  # Sec. 5
    # 0: learning_rate is for the global batch as given; N: it is for a batch of N and
    # scales linearly with the global batch (Goyal et al. 2017).
    c.train.lr_base_batch_size = 0
    c.train.momentum = 0.9  # Sec. 5
    c.train.nesterov = False
    c.train.weight_decay = 0.0005  # Sec. 5
    c.train.weight_decay_mode = "coupled"  # Sec. 5: the decay sits inside the momentum
    # Not said in the paper; Caffe's bvlc_alexnet does not decay biases (decay_mult 0).
    c.train.decay_biases = False
    c.train.schedule = "plateau"  # Sec. 5: divide by 10 when validation error stops improving
    c.train.plateau_factor = 0.1
    c.train.plateau_patience_epochs = 1
    c.train.plateau_max_drops = 3  # Sec. 5: "reduced three times prior to termination"
    c.train.warmup_epochs = 0.0
    # "float16": mixed precision with dynamic loss scaling (GPUs); "bfloat16": mixed
    # without scaling (TPUs, AVX512-BF16/AMX CPUs); "none": float32 as the paper.
    c.train.mixed_precision = "none"
    c.train.jit_compile = False  # XLA-compile the per-replica train step
    # Sec. 3.2's model parallelism: "DEV_A,DEV_B" puts tower A of the paper network on
    # one device and tower B on the other (train/towers.py); "" keeps one device.
    c.train.tower_devices = ""
    c.train.log_every_steps = 50
    c.train.checkpoint_every_steps = 1000
    c.train.keep_checkpoints = 3
    # Fine-tuning (alexnet_tf/train/finetune.py). trainable_layers: the layers that train,
    # as comma-separated names with shell wildcards over conv1..conv5, fc6, fc7, fc8
    # ("fc7,fc8", "conv[45],fc*"; a conv's BatchNorm belongs to it); the others get no
    # update and no weight decay, their BatchNorm in inference mode. "": all (frozen
    # layers need model.init_from). lr_multipliers: Caffe's lr_mult per layer,
    # "fc8=10,fc7=2": the layer's whole update, decay included, at learning_rate x the
    # multiplier, for every optimizer; unnamed layers 1.
    c.train.trainable_layers = ""
    c.train.lr_multipliers = ""

    c.eval = ml_collections.ConfigDict()
    c.eval.global_batch_size = 128
    c.eval.every_epochs = 1
    c.eval.ten_crop = False  # Sec. 4.1: ten patches, softmax averaged
    c.lock()
    return c


def _walk(schema, config, prefix=""):
    """Yields (path, schema group, key, value); raises on unknown or missing keys."""
    schema_keys, config_keys = set(schema.keys()), set(config.keys())
    for key in sorted(config_keys - schema_keys):
        close = difflib.get_close_matches(key, schema_keys, n=1)
        hint = f" (did you mean {prefix + close[0]!r}?)" if close else ""
        raise ConfigError(
            f"Unknown config key {prefix + key!r}{hint}; known keys in "
            f"{prefix.rstrip('.') or 'the top level'}: {sorted(schema_keys)}.")
    for key in sorted(schema_keys - config_keys):
        raise ConfigError(f"Config key {prefix + key!r} is missing; config files start "
                          f"from alexnet_tf.config.base_config().")
    for key in sorted(schema_keys):
        try:
            s, v = schema[key], config[key]
        except config_dict.RequiredValueError:
            # A config file's required_placeholder that no --config.* flag filled.
            raise ConfigError(f"Config key {prefix + key!r} has no value: the config file "
                              f"leaves it to you (--config.{prefix + key}=...).") from None
        if isinstance(s, ml_collections.ConfigDict):
            if not isinstance(v, (ml_collections.ConfigDict, dict)):
                _fail(prefix + key, v, "a group of keys")
            yield from _walk(s, ml_collections.ConfigDict(v), prefix + key + ".")
        else:
            yield prefix + key, schema, key, v


def _shorter_warmup(total_epochs: int) -> str:
    """A warm-up that fits ``total_epochs``: a tenth of it (Goyal et al. 2017 warm up
    5 of 90 epochs), as a flag value."""
    return f"{total_epochs / 10:g}"


def split_name_problem(split: str) -> str:
    """Why ``split`` cannot name a split, or "". A split is a folder under the data
    directory, a TFRecord file prefix or a TFDS split (``validation[:10%]``), so it is
    a non-empty name with no path separator, and not "." or "..": those would reach
    outside the data directory."""
    if not isinstance(split, str) or not split.strip():
        return "expected a split name such as 'train' or 'val', got an empty one"
    if "/" in split or os.sep in split or split in (".", ".."):
        return ("expected a split name such as 'train' or 'val' (a folder of the data "
                "directory, or a TFDS split), not a path")
    return ""


def _fail(path: str, value: Any, expected: str):
    raise ConfigError(f"Config key {path!r} is {value!r}; expected {expected}.")


def _a(noun: str) -> str:
    """"an int", "a float": the message reads as written English."""
    return f"{'an' if noun[:1] in 'aeiou' else 'a'} {noun}"


def _check_types(config):
    for path, schema, key, value in _walk(base_config(), config):
        expected = schema.get_ref(key).get_type()  # placeholders keep their type
        if value is None:
            if schema[key] is None:  # optional: None means "derive it"
                continue
            # A config file's placeholder that no --config.* flag filled (a
            # required_placeholder cannot be used: config_flags reads it while parsing
            # the flag that would fill it, and fails).
            raise ConfigError(f"Config key {path!r} has no value: the config file leaves "
                              f"it to you (--config.{path}=...).")
        if isinstance(value, bool) and expected is not bool:
            _fail(path, value, _a(expected.__name__))
        if expected is float and isinstance(value, int):
            continue
        if expected is tuple and isinstance(value, list):
            value = tuple(value)
        if not isinstance(value, expected):
            _fail(path, value, _a(expected.__name__))
        # NaN and infinity pass every range check below (NaN compares False): refuse them
        # here, for every float of the schema, before anything is written.
        if isinstance(value, float) and not math.isfinite(value):
            _fail(path, value, "a finite number")
        if isinstance(value, tuple) and any(
                isinstance(v, float) and not math.isfinite(v) for v in value):
            _fail(path, value, "finite numbers")


def _positive(config, path: str, allow_zero=False):
    value = config
    for part in path.split("."):
        value = value[part]
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        _fail(path, value, "a number >= 0" if allow_zero else "a number > 0")


# The largest global batch accepted: 2^20 images, 16x the largest ImageNet batches
# published (64k, with LARS); a larger value is a typo, and TF fails on it only after
# the run's files are written (int32 shapes overflow past 2^31).
MAX_GLOBAL_BATCH_SIZE = 2 ** 20


def _choice(config, path: str, choices):
    value = config
    for part in path.split("."):
        value = value[part]
    if value not in choices:
        _fail(path, value, f"one of {list(choices)}")


_MODERN_EXTRAS = ("randaugment_num_ops", "randaugment_magnitude", "mixup_alpha", "cutmix_alpha")


def _check_modern_extras(config):
    """RandAugment / MixUp / CutMix keys: ranges, and only with the modern augmentation."""
    d = config.data
    defaults = base_config().data
    for key in _MODERN_EXTRAS:
        if d.augmentation != "modern" and d[key] != defaults[key]:
            _fail(f"data.{key}", d[key], f"its default ({defaults[key]!r}) unless "
                  f"data.augmentation='modern' (it is {d.augmentation!r})")
    _positive(config, "data.randaugment_num_ops", allow_zero=True)
    if not 0 <= d.randaugment_magnitude <= 1:
        _fail("data.randaugment_magnitude", d.randaugment_magnitude,
              "a number in [0, 1] (Keras RandAugment's factor)")
    _positive(config, "data.mixup_alpha", allow_zero=True)
    if not 0 <= d.cutmix_alpha <= 1:
        _fail("data.cutmix_alpha", d.cutmix_alpha,
              "a number in [0, 1] (0: off; Keras' CutMix accepts alpha up to 1)")
    if d.augment_on_device and (d.randaugment_num_ops > 0 or d.mixup_alpha > 0
                                or d.cutmix_alpha > 0):
        _fail("data.augment_on_device", True, "False with RandAugment, MixUp or CutMix "
              "(they run in the input pipeline, before and after batching)")


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks keys, types and values; raises ConfigError naming the first bad one.

    Returns the config, so ``config = validate(get_config())`` reads naturally.
    """
    _check_types(config)
    m, d, t = config.model, config.data, config.train
    try:
        architecture.validate_model_args(variant=m.variant, num_classes=m.num_classes,
                                         image_size=m.image_size, width=m.width,
                                         dropout_rate=m.dropout_rate, groups=m.groups,
                                         init=m.init or None)
    except ValueError as error:
        raise ConfigError(f"Config group 'model' is invalid: {error}") from error
    _choice(config, "model.grouped_conv_implementation", architecture.GROUPED_CONV_IMPLEMENTATIONS)
    _positive(config, "model.lrn_bias", allow_zero=True)
    _positive(config, "model.lrn_alpha", allow_zero=True)

    _choice(config, "data.source", DATA_SOURCES)
    if d.source == "tfds" and not d.tfds_name:
        _fail("data.tfds_name", d.tfds_name,
              "the name of a prepared TFDS builder (e.g. 'imagenet2012') with data.source='tfds'")
    if d.tfds_name and d.source != "tfds":
        _fail("data.tfds_name", d.tfds_name, f"'' unless data.source='tfds' (it is {d.source!r})")
    for key in ("train_split", "eval_split"):
        problem = split_name_problem(d[key])
        if problem:
            _fail(f"data.{key}", d[key], problem[len("expected "):])
    _choice(config, "data.augmentation", AUGMENTATIONS)
    _check_modern_extras(config)
    _choice(config, "data.channel_order", ("RGB", "BGR"))
    _choice(config, "data.on_bad_record", ("skip", "fail"))
    _choice(config, "data.mean", ("per_channel", "image"))
    if d.mean == "image" and not d.stats_file:
        _fail("data.mean", d.mean, "'per_channel' unless data.stats_file gives a mean image")
    if d.mean == "image" and d.augment_on_device:
        _fail("data.augment_on_device", True,
              "False with data.mean='image' (the mean image is subtracted per crop window)")
    if d.stats_file:
        if tuple(d.mean_rgb) != tuple(base_config().data.mean_rgb):
            _fail("data.mean_rgb", d.mean_rgb, "its default when data.stats_file supplies the "
                  "mean (two means must not compete)")
        if not os.path.exists(d.stats_file):
            _fail("data.stats_file", d.stats_file, "an existing .npz from tools/dataset_stats.py")
    _positive(config, "data.shuffle_buffer")
    _positive(config, "data.service_stall_seconds", allow_zero=True)
    if d.service_address:
        problem = service.address_problem(d.service_address)
        if problem:
            _fail("data.service_address", d.service_address, problem)
        if d.source == "tfds":
            _fail("data.service_address", d.service_address,
                  "'' with data.source='tfds' (a service stream needs image folders or "
                  "TFRecords: convert the split with tools/build_tfrecords.py)")
    if d.augment_on_device and d.augmentation == "none":
        _fail("data.augment_on_device", True, "False with data.augmentation='none'")
    if d.resize_size < m.image_size:
        _fail("data.resize_size", d.resize_size,
              f"at least model.image_size ({m.image_size}): crops are taken from the resized image")
    _positive(config, "data.pca_lighting_std", allow_zero=True)
    for key in ("mean_rgb", "std_rgb"):
        value = d[key]
        if len(value) != 3 or not all(isinstance(x, (int, float)) for x in value):
            _fail(f"data.{key}", value, "three numbers (R, G, B)")
    if any(x <= 0 for x in d.std_rgb):
        _fail("data.std_rgb", d.std_rgb, "three numbers > 0")
    for key in ("demo_train_per_class", "demo_val_per_class"):
        _positive(config, f"data.{key}")
    _choice(config, "data.demo_set", DEMO_SETS)

    for key in ("global_batch_size", "total_epochs", "steps_per_epoch", "learning_rate",
                "log_every_steps", "checkpoint_every_steps", "keep_checkpoints",
                "plateau_patience_epochs", "plateau_max_drops"):
        _positive(config, f"train.{key}")
    for key in ("momentum", "weight_decay", "warmup_epochs"):
        _positive(config, f"train.{key}", allow_zero=True)
    _choice(config, "train.optimizer", OPTIMIZERS)
    _choice(config, "train.weight_decay_mode", WEIGHT_DECAY_MODES)
    _choice(config, "train.schedule", SCHEDULES)
    _choice(config, "train.mixed_precision", ("none", "float16", "bfloat16"))
    _positive(config, "train.lr_base_batch_size", allow_zero=True)
    if t.tower_devices:
        devices = [x for x in t.tower_devices.split(",") if x.strip()]
        if len(devices) != 2:
            _fail("train.tower_devices", t.tower_devices, "two devices, e.g. '/GPU:0,/GPU:1'")
        if m.variant != "paper" or m.groups not in (None, 2):
            _fail("train.tower_devices", t.tower_devices,
                  "'' unless model.variant='paper' with its two towers")
    if t.optimizer == "adamw" and t.weight_decay_mode == "coupled":
        _fail("train.weight_decay_mode", t.weight_decay_mode,
              "'decoupled' with train.optimizer='adamw' (AdamW's decay is decoupled by definition)")
    if not 0 <= t.momentum < 1:
        _fail("train.momentum", t.momentum, "a number in [0, 1)")
    if not 0 < t.plateau_factor < 1:
        _fail("train.plateau_factor", t.plateau_factor, "a number in (0, 1)")
    if not 0 <= d.label_smoothing < 1:
        _fail("data.label_smoothing", d.label_smoothing, "a number in [0, 1)")
    if t.warmup_epochs >= t.total_epochs:
        # The usual way here: a short run (--config.train.total_epochs=1) of a config
        # whose warm-up was set for its full length; name the one flag to add.
        _fail("train.warmup_epochs", t.warmup_epochs,
              f"fewer than train.total_epochs ({t.total_epochs}); for a run this short add "
              f"--config.train.warmup_epochs={_shorter_warmup(t.total_epochs)} (or 0 for "
              f"no warm-up)")
    _positive(config, "eval.global_batch_size")
    for key in ("train.global_batch_size", "eval.global_batch_size"):
        section, name = key.split(".")
        if config[section][name] > MAX_GLOBAL_BATCH_SIZE:
            _fail(key, config[section][name], f"at most {MAX_GLOBAL_BATCH_SIZE:,} images")
    _positive(config, "eval.every_epochs")
    try:
        finetune.check_layer_settings(config)
    except finetune.FineTuneError as error:
        raise ConfigError(str(error)) from None
    return config


def write_config(config: ml_collections.ConfigDict, path: str) -> str:
    """Writes the resolved config as JSON to ``path`` (a run's is
    `alexnet_tf.run.Run.config_path`); returns the path."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)  # never leave a half-written config behind
    return path


def read_config(path: str) -> ml_collections.ConfigDict:
    """Reads a config written by `write_config` back into a validated ConfigDict.

    Keys the schema gained since the file was written take their defaults; a file that
    is not JSON, not an object, or lacks a whole group of keys (``model``, ``data``,
    ``train``, ``eval``) raises ConfigError naming the path.
    """
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError) as error:
        raise ConfigError(f"{path!r} is not a saved config (JSON): {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path!r} must hold a JSON object, got {type(values).__name__}.")
    schema = base_config()
    groups = [k for k in schema if isinstance(schema[k], ml_collections.ConfigDict)]
    missing = [k for k in groups if k not in values]
    if missing:
        raise ConfigError(f"{path!r} lacks the config groups {missing}: it was not written "
                          f"by alexnet-train.")
    config = schema
    config.unlock()
    try:
        _merge(config, values, "")
    except ConfigError as error:
        raise ConfigError(f"{path!r}: {error}") from None
    config.lock()
    return validate(config)


def _merge(config, values: dict, prefix: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.')!r} in the saved config must be a group of keys, "
                          f"got {values!r}.")
    for key, value in values.items():
        if key not in config:
            raise ConfigError(f"{prefix + key!r} in the saved config is not a known key.")
        if isinstance(config[key], ml_collections.ConfigDict):
            _merge(config[key], value, prefix + key + ".")
        elif isinstance(config[key], tuple):
            if not isinstance(value, (list, tuple)):
                raise ConfigError(f"{prefix + key!r} in the saved config must be a list, "
                                  f"got {value!r}.")
            config[key] = tuple(value)
        else:
            try:
                config[key] = value
            except (TypeError, ValueError):
                # ml_collections refuses another type than the schema's without naming
                # the dotted key: name it, so that the message says what to correct.
                expected = config.get_ref(key).get_type()
                raise ConfigError(f"{prefix + key!r} is {value!r}; expected "
                                  f"{_a(getattr(expected, '__name__', str(expected)))}.") \
                    from None
