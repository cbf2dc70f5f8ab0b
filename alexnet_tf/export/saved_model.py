"""`export(source, export_dir)`: any model source written as a SavedModel version for
TensorFlow Serving.

`export` resolves the source (`alexnet_tf.model_source.resolve`: a training run's work
directory, a checkpoint inside a run, a ``.keras`` file, or converted weights), builds
its network and loads its weights, and writes

    EXPORT_DIR/<version>/             the SavedModel (TF Serving loads the highest version)
        saved_model.pb, variables/
        assets/classes.json           the class index -> id -> name table (a run's, or the
                                      source's class names: ``class_names_file``)
        assets/config.json            the run's resolved config; for other sources the
                                      base config with the source's network and convention
        assets/export.json            source, checkpoint, signatures, preprocessing, limits
        assets/input_convention.json  the source's input convention
        assets.extra/tf_serving_warmup_requests   PredictionLog records TF Serving replays
    EXPORT_DIR/<version>.keras        the same model as a .keras file (normalised images ->
                                      logits), for Python users; itself a model source

``<version>`` is the next free integer unless given; an existing version is never
overwritten. Everything is written under a hidden temporary name and renamed into place
when complete, so a server polling EXPORT_DIR never sees a half-written version. The
signatures are those of `alexnet_tf.export.module.SIGNATURE_TABLE`.

"best" checkpoints: ``<workdir>/checkpoints/best/`` written by a
``tf.train.CheckpointManager`` (so ``tf.train.latest_checkpoint`` finds it) of a
``tf.train.Checkpoint`` that has the model under the key ``model``.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf
from absl import logging

from alexnet_tf import config as config_lib
from alexnet_tf import convention as convention_lib
from alexnet_tf import model_source as source_lib
from alexnet_tf import models
from alexnet_tf import run as run_lib
from alexnet_tf.export import limits
from alexnet_tf.export import module as module_lib
from alexnet_tf.export.limits import DEFAULT_MAX_ASPECT_RATIO, DEFAULT_MAX_PIXELS
from alexnet_tf.export.module import ExportError
from alexnet_tf.serving import protocol

EXPORT_INFO_FILENAME = "export.json"


# ------------------------------------------------------------------ the run


def restore_model(run: run_lib.Run, checkpoint: str = "auto") -> run_lib.RestoredModel:
    """The run's model with the weights of ``checkpoint``, as the export traces it.

    The grouped convolutions (``model.grouped_conv_implementation``) are traced into
    the SavedModel as they resolve now. "auto" is exported as "split", two
    convolutions on the channel halves, which every server runs: the "native" grouped
    convolution needs cuDNN or TF's oneDNN CPU kernels, which a CPU build of TF
    Serving may lack. A run configured with "native" exports native.

    Raises ExportError unless every model variable was restored
    (`alexnet_tf.run.restore_weights`), and for a checkpoint that cannot be read (named
    with the reason).
    """
    try:
        implementation = _traced_implementation(run.config.model)
        prefix = run.checkpoint(checkpoint)
    except (run_lib.RunError, config_lib.ConfigError) as error:
        raise ExportError(str(error)) from None
    try:
        return run.restore_model(prefix, grouped_conv_implementation=implementation)
    except Exception as error:  # noqa: BLE001  (a truncated file raises IndexError)
        damage = source_lib.checkpoint_damage(prefix)
        if damage is not None:
            raise ExportError(f"Checkpoint {prefix!r} cannot be read: {damage}; expected "
                              f"its .index and .data files whole.") from None
        if isinstance(error, run_lib.RunError):
            raise ExportError(str(error)) from None
        raise ExportError(f"Checkpoint {prefix!r} of run {run.workdir!r} cannot be "
                          f"restored: {type(error).__name__}: {str(error)[:500]}") from None


# -------------------------------------------------------------- versions on disk


def existing_versions(export_dir: str) -> list[int]:
    """The integer version directories (TF Serving's servable versions) of export_dir."""
    if not os.path.isdir(export_dir):
        return []
    return sorted(int(name) for name in os.listdir(export_dir)
                  if name.isascii() and name.isdigit()
                  and os.path.isdir(os.path.join(export_dir, name)))


def next_version(export_dir: str) -> int:
    """One more than the highest version taken: TF Serving serves the highest by
    default. A version is taken by a directory, a file named by the integer, or an
    ``<N>.keras`` file (an export's own, or one left without its directory).

    Raises ExportError when that number would exceed `limits.MAX_VERSION` (TF Serving's
    int64): the user gives ``--version`` then."""
    taken = [0]
    if os.path.isdir(export_dir):
        for name in os.listdir(export_dir):
            stem = name[:-len(".keras")] if name.endswith(".keras") else name
            if stem.isdigit() and stem.isascii():
                taken.append(int(stem))
    version = max(taken) + 1
    if version > limits.MAX_VERSION:
        raise ExportError(f"{export_dir!r} already holds version {max(taken)}, the highest "
                          f"TF Serving can load ({limits.MAX_VERSION}, int64): give a free "
                          f"--version, or another --export_dir.")
    return version


# ---------------------------------------------------------------------- warmup


def warmup_images(resize_size: int) -> dict:
    """Synthetic images of realistic shapes, by the keys the table's ``warmup`` names:
    "jpeg" a 4:3 JPEG and "png" a 3:4 PNG (bytes, one image each), "pixels" the JPEG's
    pixels (uint8 [1, resize_size, resize_size * 4 // 3, 3], a batch of one)."""
    def gradient(height, width):
        y, x = np.mgrid[0:height, 0:width]
        return np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                         (x + y) * 255 // max(height + width - 2, 1)], -1).astype(np.uint8)

    landscape = gradient(resize_size, resize_size * 4 // 3)
    portrait = gradient(resize_size * 4 // 3, resize_size)
    return {
        "jpeg": tf.io.encode_jpeg(landscape, quality=90).numpy(),
        "png": tf.io.encode_png(portrait).numpy(),
        "pixels": landscape[None],
    }


def _warmup_input(spec: tf.TensorSpec, images: list):
    """One input of a warmup request: encoded images as a list of bytes for a string
    input, else the (batched) pixel arrays joined and cast to the input's dtype."""
    if spec.dtype == tf.string:
        return images
    return np.concatenate(images).astype(spec.dtype.as_numpy_dtype)


def warmup_requests(resize_size: int, model_name: str = "alexnet") -> list[bytes]:
    """Serialised PredictRequests: every signature of `module_lib.SIGNATURE_TABLE` with
    each of its ``warmup`` batches, in table order (serving_default at batch 1 and a
    mixed batch of 4), so that the first real requests find every function traced."""
    images = warmup_images(resize_size)
    requests = []
    for row in module_lib.SIGNATURE_TABLE:
        for batch in row.warmup:
            inputs = {spec.name: _warmup_input(spec, [images[key] for key in batch])
                      for spec in row.inputs}
            requests.append(protocol.predict_request_bytes(
                inputs, model_name=model_name, signature_name=row.name))
    return requests


# ---------------------------------------------------------------------- export


def _traced_implementation(model_config) -> str | None:
    """The grouped-convolution implementation the export traces (see `restore_model`)."""
    return "split" if model_config.grouped_conv_implementation == "auto" else None


def _source_config(source: source_lib.ModelSource):
    """What ``assets/config.json`` holds: a run's own config; for other sources the
    base config with the source's network (`ModelSource.model_config`) and input
    convention (`InputConvention.config_overrides`; a mean image travels as
    ``assets/input_convention_mean_image.npy``)."""
    if source.kind in ("run", "checkpoint"):
        return run_lib.Run(source.workdir).config
    config = config_lib.base_config()
    with config.unlocked():
        config.model = copy.deepcopy(source.model_config)
    for key, value in source.convention.config_overrides().items():
        section, name = key.split(".", 1)
        config[section][name] = value
    return config


def export(source, export_dir: str, *, version: int | None = None,
           checkpoint: str = "auto", top_k: int | None = None,
           max_pixels: int = DEFAULT_MAX_PIXELS,
           max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO,
           class_names_file: str | None = None, compute_dtype: str = "float32") -> str:
    """Exports a model source for TF Serving; returns the new ``EXPORT_DIR/<version>``.

    Args:
      source: a model source: a path (`alexnet_tf.model_source.resolve`: a run's work
        directory, a checkpoint inside a run, a ``.keras`` file, a converted-weights
        directory) or a resolved `alexnet_tf.model_source.ModelSource`. It must know its
        input convention and its class names (or take ``class_names_file``'s).
      export_dir: TF Serving's model base path; created if missing. Never a run's work
        directory or a directory inside one (the versions would land among its files).
      version: the integer version to write, from 0 to 2^63 - 1 (TF Serving's versions
        are int64); default: one more than the highest there. An existing version is
        never overwritten (ExportError).
      checkpoint: for a run: "auto" (best if the run has one, else latest), "best",
        "latest", a checkpoint prefix or a directory of checkpoints (see
        `run.resolve_checkpoint`).
      top_k: classes returned per image, an integer from 1 to the model's number of
        classes; default: 5 (`limits.DEFAULT_TOP_K`), or all the classes of a model
        with fewer.
      max_pixels, max_aspect_ratio: the largest image the signatures accept: an integer
        number of pixels >= 1, and a finite ratio of the longer side to the shorter >= 1
        (infinity is refused; see `limits.check_export_values`).
      class_names_file: class names for a source without them (converted weights): one
        per line in output order, or a synsets file (`model_source.read_class_names`).
      compute_dtype: "float32" (default), or "bfloat16": the traced graph stores its
        weights in bfloat16 and computes in it (`compute_copy`), for CPUs with
        AVX512-BF16 or AMX and for GPUs from Ampere on; preprocessing, softmax and every output stay
        float32. At batch 1 it halves the fully connected layers' weight traffic
        (docs/BENCHMARKS.md); probabilities differ from float32's by bfloat16 rounding
        (checked against `BFLOAT16_PROBABILITY_TOLERANCE`, 0.02, and fc7 against
        `BFLOAT16_FEATURE_RELATIVE_TOLERANCE`; measured figures, not bounds: see
        there). ``EXPORT_DIR/<version>.keras``
        keeps the float32 weights either way.

    Raises:
      ExportError: a value above is not accepted (checked first, before the source is
        read), or the source, its checkpoint or the version cannot give an export (an
        ensemble "A,B" cannot: one model per export; a damaged checkpoint is named with
        the reason); nothing is written then, and no directory is left behind.
    """
    try:
        limits.check_export_values(version=version, top_k=top_k, max_pixels=max_pixels,
                                   max_aspect_ratio=max_aspect_ratio,
                                   compute_dtype=compute_dtype)
    except ValueError as error:
        raise ExportError(str(error)) from None
    if not isinstance(source, source_lib.ModelSource):
        spec = os.fspath(source)
        if "," in spec and not os.path.exists(os.path.expanduser(spec)):
            members = [m.strip() for m in spec.split(",")]
            raise ExportError(
                f"Model source {spec!r} names an ensemble of {len(members)} ({members}), "
                f"which cannot be exported: one model per export (TF Serving serves each "
                f"model on its own). Export each member to its own export_dir.")
    _check_export_dir(export_dir)
    try:
        if not isinstance(source, source_lib.ModelSource):
            source = source_lib.resolve(spec, checkpoint=checkpoint)
        if class_names_file:
            source = source.with_class_names(*source_lib.read_class_names(class_names_file))
        convention = source.convention
        if convention is None:
            raise ExportError(
                f"{source.description} says nothing of the input it expects (no input "
                f"convention), and an export must preprocess images as its weights "
                f"expect; put its input_convention.json beside it, or export its run.")
        classes = source.classes()
        config = _source_config(source)
    except (source_lib.SourceError, run_lib.RunError, config_lib.ConfigError) as error:
        raise ExportError(str(error)) from None
    if os.path.exists(export_dir) and not os.path.isdir(export_dir):
        raise ExportError(f"export_dir {export_dir!r} is a file; expected a directory (TF "
                          f"Serving's model base path).")
    num_classes = source.num_classes
    if len(classes) != num_classes:
        raise ExportError(f"{source.description} has {num_classes} outputs but "
                          f"{len(classes)} class names; expected one per output.")
    if top_k is None:
        top_k = min(limits.DEFAULT_TOP_K, num_classes)
    elif top_k > num_classes:
        raise ExportError(f"top_k={top_k} is more than the {num_classes} classes of "
                          f"{source.description}; expected 1 to {num_classes} (or leave "
                          f"it out: {limits.DEFAULT_TOP_K}, or all the classes of a model "
                          f"with fewer).")
    # Built before anything is created, so that a refused export leaves no directory.
    try:
        # Built in float32 whatever Keras' global policy: the export computes in what
        # its compute_dtype (recorded in export.json) says.
        with models.global_policy("float32"):
            model = source.load_model(
                grouped_conv_implementation=_traced_implementation(source.model_config))
        step = _checkpoint_step(source)
    except source_lib.SourceError as error:
        raise ExportError(str(error)) from None
    created = _missing_directories(export_dir)
    try:
        return _write_export(source, model, step, classes, config, export_dir, version,
                             top_k, max_pixels, max_aspect_ratio, compute_dtype)
    except BaseException:
        # A refusal or failure after the directory was made leaves none behind.
        for directory in reversed(created):
            try:
                os.rmdir(directory)  # only when empty: never another version
            except OSError:
                break
        raise


def _checkpoint_step(source: source_lib.ModelSource) -> int | None:
    """The training step saved with a source's checkpoint (None for files). Raises
    SourceError when the checkpoint cannot be read there (its weights may read whole
    while a later tensor of a truncated file does not)."""
    if not source.checkpoint:
        return None
    try:
        return run_lib.checkpoint_step(source.checkpoint)
    except Exception as error:  # noqa: BLE001  (IndexError, DataLossError of a damaged file)
        damage = source_lib.checkpoint_damage(source.checkpoint)
        raise source_lib.SourceError(
            f"Checkpoint {source.checkpoint!r} of {source.description} cannot be read: "
            f"{damage or f'{type(error).__name__}: {str(error)[:300]}'}; expected its "
            f".index and .data files whole.") from None


def _missing_directories(path: str) -> list[str]:
    """Makes ``path`` and returns the directories that did not exist, outermost first."""
    missing, directory = [], os.path.abspath(path)
    while not os.path.exists(directory):
        missing.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    os.makedirs(path, exist_ok=True)
    return missing[::-1]


def _run_directory(directory: str) -> bool:
    """Whether ``directory`` is a run's work directory: its config.json holds this
    package's config (its groups), or it has a checkpoints/ beside it. A config.json of
    another tool does not make one."""
    config_path = os.path.join(directory, run_lib.CONFIG_FILENAME)
    if not os.path.isfile(config_path):
        return False
    if os.path.isdir(os.path.join(directory, run_lib.CHECKPOINT_DIR)):
        return True
    try:
        with open(config_path, encoding="utf-8") as f:
            values = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(values, dict) and all(
        isinstance(values.get(k), dict) for k in ("model", "data", "train", "eval"))


def _check_export_dir(export_dir: str) -> None:
    """Raises ExportError when ``export_dir`` is a run's work directory or inside one:
    versions and .keras files would land among the run's own files (and the run's
    directory would then look like an export to TF Serving)."""
    directory = os.path.realpath(os.path.expanduser(os.fspath(export_dir)))
    while True:
        if _run_directory(directory):
            where = ("is the work directory of a run" if directory == os.path.realpath(
                os.path.expanduser(os.fspath(export_dir))) else f"is inside the work directory "
                f"of run {directory!r}")
            raise ExportError(
                f"export_dir {os.fspath(export_dir)!r} {where} (it holds "
                f"{run_lib.CONFIG_FILENAME}); expected a directory outside any run, e.g. "
                f"exports/<name>.")
        parent = os.path.dirname(directory)
        if parent == directory:
            return
        directory = parent


# How far a bfloat16 export's outputs may be from the float32 model's it was made from,
# on the same images, where this project checks them (tests/test_export.py, the serving
# benchmark): probabilities within 0.02 (absolute), fc7 features within 5% (relative,
# Frobenius norm over a batch). bfloat16 keeps 8 bits of mantissa, so each layer's
# outputs carry ~0.4% relative rounding. Measured, not guaranteed: 1.3e-3 and 0.64% on
# the test suite's small trained run, 0.0154 on the demo's 1,000 validation images, up
# to 0.04 on demo images with strong noise added (far from anything trained on). Where
# two classes are that close, top-1 may swap.
BFLOAT16_PROBABILITY_TOLERANCE = 0.02
BFLOAT16_FEATURE_RELATIVE_TOLERANCE = 0.05


def compute_copy(model, compute_dtype: str = "float32"):
    """The model the export traces: ``model`` itself for "float32"; for "bfloat16" a
    clone whose every layer stores its weights and computes in bfloat16 (Keras dtype
    policy "bfloat16", not "mixed_bfloat16": a mixed policy keeps float32 weights and
    casts them on every call, which at batch 1 costs more than it saves), its weights
    ``model``'s rounded to bfloat16. Its outputs are bfloat16: the serving module casts
    them to float32."""
    if compute_dtype == "float32":
        return model
    import keras

    clone = keras.models.clone_model(
        model, clone_function=lambda layer: layer.__class__.from_config(
            {**layer.get_config(), "dtype": compute_dtype}))
    if [w.path for w in clone.weights] != [w.path for w in model.weights]:
        raise ExportError(f"The {compute_dtype} copy of the model has other weights than "
                          f"the model; expected the same layers.")
    for target, value in zip(clone.weights, model.weights):
        target.assign(tf.cast(value, target.dtype))
    return clone


def _exported_compute_dtype(version_dir: str) -> str | None:
    """The ``compute_dtype`` an export's ``assets/export.json`` records ("float32" for
    exports written before the key existed), or None when it cannot be read (not an
    export of this package)."""
    try:
        with open(os.path.join(version_dir, "assets", EXPORT_INFO_FILENAME)) as f:
            return str(json.load(f).get("compute_dtype", "float32"))
    except (OSError, ValueError, AttributeError):
        return None


def _warn_about_what_is_served(export_dir: str, version: int, compute_dtype: str) -> None:
    """Warns when the new version changes what TF Serving serves unawares: TF Serving's
    default version policy serves the highest version, so a lower one is never served,
    and a higher one in another precision replaces the served one's."""
    versions = existing_versions(export_dir)
    if not versions:
        return
    highest = max(versions)
    if version < highest:
        logging.warning("Version %d is lower than %d: TF Serving's default version policy "
                        "keeps serving the highest.", version, highest)
        return
    served = _exported_compute_dtype(os.path.join(export_dir, str(highest)))
    if served is not None and served != compute_dtype:
        logging.warning(
            "Version %d computes in %s, version %d (served until now) in %s: TF Serving "
            "serves the highest version, so clients get %s answers from now on. To serve "
            "both, export to another base path (a model of its own).", version,
            compute_dtype, highest, served, compute_dtype)


def _write_export(source, model, step, classes, config, export_dir, version, top_k,
                  max_pixels, max_aspect_ratio, compute_dtype="float32") -> str:
    """Writes the version (see `export`) into the existing ``export_dir``."""
    convention = source.convention
    version = next_version(export_dir) if version is None else int(version)
    target = os.path.join(export_dir, str(version))
    keras_target = os.path.join(export_dir, f"{version}.keras")
    for path in (target, keras_target):
        if os.path.exists(path):
            raise ExportError(f"{path!r} exists: versions are never overwritten; choose "
                              f"another --version, or leave it out for the next free one "
                              f"({next_version(export_dir)}).")
    _warn_about_what_is_served(export_dir, version, compute_dtype)

    staging = tempfile.mkdtemp(prefix=f".export-{version}-", dir=export_dir)
    try:
        info = {
            "format": "alexnet_tf.export/1",
            "source": {"kind": source.kind, "path": source.path,
                       "description": source.description,
                       "weights_source": source.weights_source},
            "workdir": source.workdir,
            "checkpoint": os.path.abspath(source.checkpoint) if source.checkpoint else None,
            "step": step,
            "version": version,
            "signatures": list(module_lib.SIGNATURES),
            "top_k": top_k,
            "max_pixels": int(max_pixels),
            "max_aspect_ratio": float(max_aspect_ratio),
            "compute_dtype": compute_dtype,
            "preprocessing": {
                "function": "alexnet_tf.data.preprocess.eval_image",
                "image_size": convention.image_size,
                "resize_size": convention.resize_size,
                "mean_rgb": list(convention.mean_rgb),
                "std_rgb": list(convention.std_rgb),
                "channel_order": convention.channel_order,
                "mean_image": convention.mean_image is not None,
            },
            "keras_file": os.path.basename(keras_target),
            "tensorflow": tf.__version__,
        }
        sources = os.path.join(staging, "assets-src")
        os.makedirs(sources)
        # classes.json in a run's format, through its one writer.
        run_lib.Run(sources).write_classes([c["id"] for c in classes],
                                           [c["name"] for c in classes])
        config_lib.write_config(config, os.path.join(sources, run_lib.CONFIG_FILENAME))
        with open(os.path.join(sources, EXPORT_INFO_FILENAME), "w") as f:
            json.dump(info, f, indent=1)
        # The convention travels with the export (assets/input_convention.json), so a
        # reader of the SavedModel or its .keras file knows the model's input.
        convention.save(sources)
        asset_names = [run_lib.CLASSES_FILENAME, run_lib.CONFIG_FILENAME, EXPORT_INFO_FILENAME,
                       convention_lib.FILENAME]
        if convention.mean_image is not None:
            asset_names.append(convention_lib.MEAN_IMAGE_FILENAME)
        module = module_lib.build_serving_module(
            convention, compute_copy(model, compute_dtype), classes, top_k=top_k,
            max_pixels=max_pixels,
            max_aspect_ratio=max_aspect_ratio,
            assets=[os.path.join(sources, name) for name in asset_names])
        saved = os.path.join(staging, "saved_model")
        tf.saved_model.save(module, saved, signatures=module.signatures())
        extra = os.path.join(saved, "assets.extra")
        os.makedirs(extra)
        count = protocol.write_warmup_file(os.path.join(extra, protocol.WARMUP_FILENAME),
                                           warmup_requests(convention.resize_size))
        keras_tmp = os.path.join(staging, "model.keras")
        model.save(keras_tmp)
        os.rename(saved, target)  # atomic: the server sees a complete version or none
        os.rename(keras_tmp, keras_target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logging.info("Exported %s (step %s) to %s with %d warmup requests, and %s.",
                 source.description, step, target, count, keras_target)
    return target
