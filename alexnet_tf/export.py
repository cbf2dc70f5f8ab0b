r"""alexnet-export: a training run as a SavedModel for TensorFlow Serving.

    alexnet-export --workdir=runs/demo --export_dir=exports/alexnet
    alexnet-export --workdir=runs/paper --export_dir=exports/alexnet --version=7 --checkpoint=latest

`export(workdir, export_dir)` rebuilds the model from the run's ``config.json``, restores
its weights from a checkpoint of ``<workdir>/checkpoints`` and writes

    EXPORT_DIR/<version>/             the SavedModel (TF Serving loads the highest version)
        saved_model.pb, variables/
        assets/classes.json           the run's class index -> id -> name table
        assets/config.json            the run's resolved config
        assets/export.json            checkpoint, signatures, preprocessing, input limits
        assets.extra/tf_serving_warmup_requests   PredictionLog records TF Serving replays
    EXPORT_DIR/<version>.keras        the same model as a .keras file (normalised images ->
                                      logits), for Python users

``<version>`` is the next free integer unless given; an existing version is never
overwritten. Everything is written under a hidden temporary name and renamed into place
when complete, so a server polling EXPORT_DIR never sees a half-written version.

Signatures (B = batch, S = model.image_size, k = top_k, C = classes):

    serving_default  image_bytes: string [B] (JPEG, PNG, GIF or BMP; sizes may differ)
                     -> classes int32 [B, k], class_ids string [B, k], class_names string
                        [B, k], scores float32 [B, k], probabilities float32 [B, C]
    pixels           images: uint8 [B, H, W, 3] (RGB, any H and W) -> the same outputs
    pixels_float     images: float32 [B, H, W, 3] (RGB on the 0..255 scale; rounded to
                     uint8 first, as decoded images are) -> the same outputs
    features         image_bytes: string [B] -> features float32 [B, fc7 units] (Sec. 6.1)

Inside, every image goes through the evaluation preprocessing of the data module
(`preprocess.eval_image`: shorter side to data.resize_size, central crop, normalisation
with the run's `pipeline.normalization(config.data)`), one image at a time with
``tf.map_fn``, so a batch may mix sizes and formats. Decoded pixels take the same resize,
crop and normalisation (`preprocess.eval_pixels`, the same steps after decoding).

Bad input fails the whole request with an InvalidArgument error that names the image
and the problem (TF Serving answers HTTP 400 / gRPC INVALID_ARGUMENT), before anything is
decoded where the header tells: an empty string, bytes that are not a JPEG/PNG/GIF/BMP,
a JPEG without its end-of-image marker or a PNG without IEND (truncated), an image of
more than ``max_pixels`` pixels or a longer side more than ``max_aspect_ratio`` times the
shorter (read from the JPEG header with ``tf.io.extract_jpeg_shape``, or from the
PNG/GIF/BMP header bytes), float pixels outside [0, 255]. Greyscale and CMYK images are
converted to RGB by the decoder and served.

"best" checkpoints: ``<workdir>/checkpoints/best/`` written by a
``tf.train.CheckpointManager`` (so ``tf.train.latest_checkpoint`` finds it) of a
``tf.train.Checkpoint`` that has the model under the key ``model``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from alexnet_tf import config as config_lib
from alexnet_tf import models
from alexnet_tf import run as run_lib
from alexnet_tf.data import pipeline, preprocess
from alexnet_tf.serving import protocol

EXPORT_INFO_FILENAME = "export.json"
SIGNATURES = ("serving_default", "pixels", "pixels_float", "features")

# 40 megapixels: 12-36 MP camera and phone photos pass; 10000x10000 does not. Decoding
# and the resize hold about 16 bytes per pixel (uint8 RGB, then float32),
# so one image in flight needs at most ~640 MB.
DEFAULT_MAX_PIXELS = 40_000_000
# The shorter side is resized to data.resize_size, so a 1x40,000,000 strip would become
# a 256x10^10 float image: refuse images longer than 50 times their width (or height).
DEFAULT_MAX_ASPECT_RATIO = 50


class ExportError(ValueError):
    """The run, the checkpoint or the export directory cannot give an export."""


# ------------------------------------------------------------------ the run


def restore_model(run: run_lib.Run, checkpoint: str = "auto") -> run_lib.RestoredModel:
    """The run's model with the weights of ``checkpoint``, as the export traces it.

    The grouped convolutions (``model.grouped_conv_implementation``) are traced into
    the SavedModel as they resolve now. "auto" is exported as "split", two
    convolutions on the channel halves, which every server runs: the "native" grouped
    convolution needs cuDNN or TF's oneDNN CPU kernels, which a CPU build of TF
    Serving may lack. A run configured with "native" exports native.

    Raises ExportError unless every model variable was restored
    (`alexnet_tf.run.restore_weights`).
    """
    implementation = ("split" if run.config.model.grouped_conv_implementation == "auto"
                      else None)
    try:
        return run.restore_model(checkpoint, grouped_conv_implementation=implementation)
    except run_lib.RunError as error:
        raise ExportError(str(error)) from None


# -------------------------------------------------------------- versions on disk


def existing_versions(export_dir: str) -> list[int]:
    """The integer version directories (TF Serving's servable versions) of export_dir."""
    if not os.path.isdir(export_dir):
        return []
    return sorted(int(name) for name in os.listdir(export_dir)
                  if name.isdigit() and os.path.isdir(os.path.join(export_dir, name)))


def next_version(export_dir: str) -> int:
    """One more than the highest version: TF Serving serves the highest by default."""
    return max(existing_versions(export_dir), default=0) + 1


# ------------------------------------------------------------- input checks (graph)


def _header_bytes(encoded, count: int = 32):
    """The first ``count`` bytes as int64 [count], zero-padded past the end."""
    padded = tf.strings.join([encoded, tf.constant(b"\0" * count)])
    return tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 0, count), tf.uint8), tf.int64)


def _contains(encoded, pattern: bytes):
    """Whether ``pattern`` (with no zero byte) occurs anywhere in ``encoded``."""
    data = tf.io.decode_raw(tf.strings.join([encoded, tf.constant(b"\0" * len(pattern))]),
                            tf.uint8)
    windows = tf.size(data) - len(pattern) + 1
    match = tf.ones([windows], tf.bool)
    for i, byte in enumerate(pattern):
        match = tf.logical_and(match, tf.equal(data[i:i + windows], byte))
    return tf.reduce_any(match)


def _formats(encoded):
    """(is_jpeg, is_png, is_gif, is_bmp) by magic number, as `preprocess.is_supported_image`."""
    return (tf.image.is_jpeg(encoded),
            tf.equal(tf.strings.substr(encoded, 0, 4), b"\x89PNG"),
            tf.equal(tf.strings.substr(encoded, 0, 3), b"GIF"),
            tf.equal(tf.strings.substr(encoded, 0, 2), b"BM"))


def header_size(encoded):
    """(height, width) int64 of a JPEG/PNG/GIF/BMP, read from its header, not decoded.

    JPEG: ``tf.io.extract_jpeg_shape`` (the frame header); PNG: IHDR width and height,
    big-endian at bytes 16 and 20; GIF: the logical screen, little-endian 16-bit at 6
    and 8 (what TF's decoder outputs); BMP: little-endian at 18 and 22 (a negative
    height means top-down rows), 16-bit for the old 12-byte core header.
    """
    h = _header_bytes(encoded)

    def be32(i):
        return h[i] * 16777216 + h[i + 1] * 65536 + h[i + 2] * 256 + h[i + 3]

    def le16(i):
        return h[i] + h[i + 1] * 256

    def le32_signed(i):
        value = le16(i) + le16(i + 2) * 65536
        return tf.where(value >= 2 ** 31, value - 2 ** 32, value)

    is_jpeg, is_png, is_gif, _ = _formats(encoded)
    core_bmp = tf.equal(le32_signed(14), 12)
    bmp = (tf.where(core_bmp, le16(20), tf.abs(le32_signed(22))),
           tf.where(core_bmp, le16(18), le32_signed(18)))
    other = tf.stack([
        tf.where(is_png, be32(20), tf.where(is_gif, le16(8), bmp[0])),
        tf.where(is_png, be32(16), tf.where(is_gif, le16(6), bmp[1]))])

    def jpeg():
        return tf.io.extract_jpeg_shape(encoded, output_type=tf.int64)[:2]

    size = tf.cond(is_jpeg, jpeg, lambda: other)
    return size[0], size[1]


def _message(*parts):
    """A scalar string tensor: the parts joined, numbers written in decimal."""
    strings = []
    for part in parts:
        if isinstance(part, str):
            strings.append(tf.constant(part))
        elif part.dtype == tf.string:
            strings.append(part)
        else:
            strings.append(tf.strings.as_string(part))
    return tf.strings.join(strings)


def _checked(condition, message, then):
    """``then()``, computed only after ``condition`` held; else InvalidArgument(message)."""
    with tf.control_dependencies([tf.debugging.Assert(condition, [message])]):
        return then()


def _check_size(height, width, what, max_pixels: int, max_aspect_ratio: float):
    """A no-op that runs after Asserts that height x width is within the limits."""
    height, width = tf.cast(height, tf.int64), tf.cast(width, tf.int64)
    longer, shorter = tf.maximum(height, width), tf.minimum(height, width)
    size = (what, " is ", height, "x", width, " (height x width)")
    checks = [
        (shorter >= 1, _message(what, " has no pixels (", height, "x", width,
                                ", height x width)")),
        (height * width <= max_pixels,
         _message(*size, ", ", height * width, " pixels: more than the ", str(max_pixels),
                  " this model accepts")),
        (tf.cast(longer, tf.float64) <= max_aspect_ratio * tf.cast(shorter, tf.float64),
         _message(*size, ": its longer side is more than ", f"{max_aspect_ratio:g}",
                  " times its shorter side")),
    ]
    ops = []
    for condition, message in checks:
        with tf.control_dependencies(ops):
            ops = [tf.debugging.Assert(condition, [message])]
    with tf.control_dependencies(ops):
        return tf.no_op()


def check_encoded_image(encoded, what, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                        max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO):
    """``encoded``, passed through once it is known to be a complete JPEG/PNG/GIF/BMP
    within the size limits; else an InvalidArgument error naming ``what`` (a scalar
    string, e.g. "image_bytes[3]") and the problem. Checks run in order, each only after
    the previous passed, and none decodes the image."""
    length = tf.strings.length(encoded)
    is_jpeg, is_png, _, _ = _formats(encoded)

    def complete():
        return tf.cond(is_jpeg, lambda: _contains(encoded, b"\xff\xd9"),
                       lambda: tf.cond(is_png, lambda: _contains(encoded, b"IEND"),
                                       lambda: tf.constant(True)))

    def size_checked():
        height, width = header_size(encoded)
        with tf.control_dependencies([_check_size(height, width, what, max_pixels,
                                                  max_aspect_ratio)]):
            return tf.identity(encoded)

    def truncation_checked():
        kind = tf.where(is_jpeg, "JPEG (no end-of-image marker FF D9)", "PNG (no IEND chunk)")
        return _checked(complete(), _message(what, " is a truncated ", kind, ", ", length,
                                             " bytes"), size_checked)

    def format_checked():
        return _checked(preprocess.is_supported_image(encoded), _message(
            what, " is not a JPEG, PNG, GIF or BMP image (", length, " bytes)"),
            truncation_checked)

    return _checked(length > 0, _message(what, " is empty (0 bytes)"), format_checked)


# ------------------------------------------------------------------ the module


class ServingModule(tf.Module):
    """The model, its preprocessing and its class table, as the SavedModel's root.

    Each public tf.function is one signature (see the module docstring).
    """

    def __init__(self, model: keras.Model, *, classes: list[dict],
                 norm: preprocess.Normalization, image_size: int, resize_size: int,
                 top_k: int = 5, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO, assets=()):
        super().__init__(name="alexnet_serving")
        num_classes = int(model.output.shape[-1])
        if len(classes) != num_classes:
            raise ExportError(f"{len(classes)} classes for a model with {num_classes} outputs.")
        if top_k < 1:
            raise ExportError(f"top_k must be >= 1, got {top_k}.")
        self.model = model
        self.feature_model = models.feature_extractor(model)
        self.assets = [tf.saved_model.Asset(path) for path in assets]
        self._class_ids = np.array([c["id"].encode("utf-8") for c in classes], dtype=object)
        self._class_names = np.array([c["name"].encode("utf-8") for c in classes],
                                     dtype=object)
        self._norm = norm
        self._image_size = image_size
        self._resize_size = resize_size
        self._top_k = min(top_k, num_classes)
        self._max_pixels = int(max_pixels)
        self._max_aspect_ratio = float(max_aspect_ratio)

    @property
    def top_k(self) -> int:
        return self._top_k

    # -- preprocessing, one image at a time

    def _image_spec(self):
        return tf.TensorSpec([self._image_size, self._image_size, 3], tf.float32)

    def preprocess_bytes(self, image_bytes):
        """string [B] -> float32 [B, S, S, 3], through `preprocess.eval_image`."""
        def one(args):
            encoded, index = args
            encoded = check_encoded_image(
                encoded, _message("image_bytes[", index, "]"),
                max_pixels=self._max_pixels, max_aspect_ratio=self._max_aspect_ratio)
            return preprocess.eval_image(encoded, image_size=self._image_size,
                                         resize_size=self._resize_size, norm=self._norm)

        indices = tf.range(tf.shape(image_bytes, out_type=tf.int64)[0])
        return tf.map_fn(one, (image_bytes, indices), fn_output_signature=self._image_spec())

    def _pixels_image(self, image):
        """uint8 [H, W, 3] -> the model input, by the evaluation preprocessing."""
        return preprocess.eval_pixels(image, image_size=self._image_size,
                                      resize_size=self._resize_size, norm=self._norm)

    def preprocess_pixels(self, images):
        """uint8 [B, H, W, 3] -> float32 [B, S, S, 3]."""
        shape = tf.shape(images, out_type=tf.int64)
        what = tf.constant("images")
        with tf.control_dependencies([_check_size(shape[1], shape[2], what, self._max_pixels,
                                                  self._max_aspect_ratio)]):
            images = tf.identity(images)
        return tf.map_fn(self._pixels_image, images, fn_output_signature=self._image_spec())

    # -- heads

    @staticmethod
    def _run(model: keras.Model, images):
        """model(images); an empty batch gives an empty result without running the model
        (TF's convolutions pass a batch of zero images through unchanged)."""
        width = int(model.output.shape[-1])
        return tf.cond(tf.shape(images)[0] > 0,
                       lambda: tf.cast(model(images, training=False), tf.float32),
                       lambda: tf.zeros([0, width], tf.float32))

    def _classify(self, images):
        logits = self._run(self.model, images)
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        scores, classes = tf.math.top_k(probabilities, k=self._top_k)
        return {
            "classes": classes,
            "class_ids": tf.gather(tf.constant(self._class_ids, tf.string), classes),
            "class_names": tf.gather(tf.constant(self._class_names, tf.string), classes),
            "scores": scores,
            "probabilities": probabilities,
        }

    # -- signatures

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def classify_bytes(self, image_bytes):
        return self._classify(self.preprocess_bytes(image_bytes))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    def classify_pixels(self, images):
        return self._classify(self.preprocess_pixels(images))

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32,
                                                name="images")])
    def classify_pixels_float(self, images):
        ok = tf.logical_and(tf.reduce_all(tf.math.is_finite(images)),
                            tf.logical_and(tf.reduce_all(images >= 0.0),
                                           tf.reduce_all(images <= 255.0)))
        images = _checked(ok, tf.constant(
            "images must be finite RGB values on the 0..255 scale (float pixels of this "
            "signature are rounded to uint8 first)"), lambda: tf.identity(images))
        return self._classify(self.preprocess_pixels(tf.cast(tf.round(images), tf.uint8)))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def features(self, image_bytes):
        return {"features": self._run(self.feature_model, self.preprocess_bytes(image_bytes))}

    def signatures(self) -> dict:
        return {
            "serving_default": self.classify_bytes.get_concrete_function(),
            "pixels": self.classify_pixels.get_concrete_function(),
            "pixels_float": self.classify_pixels_float.get_concrete_function(),
            "features": self.features.get_concrete_function(),
        }


def build_serving_module(config, model: keras.Model, classes: list[dict], *, top_k: int = 5,
                         max_pixels: int = DEFAULT_MAX_PIXELS,
                         max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO,
                         assets=()) -> ServingModule:
    """The serving module of a run's config and restored model."""
    return ServingModule(model, classes=classes, norm=pipeline.normalization(config.data),
                         image_size=config.model.image_size,
                         resize_size=config.data.resize_size, top_k=top_k,
                         max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio,
                         assets=assets)


# ---------------------------------------------------------------------- warmup


def _warmup_images(resize_size: int) -> dict:
    """Synthetic images of realistic shapes: a 4:3 JPEG, a 3:4 PNG (and their pixels)."""
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


def warmup_requests(resize_size: int, model_name: str = "alexnet") -> list[bytes]:
    """Serialised PredictRequests: every signature once, serving_default at batch 1 and
    a mixed batch of 4, so that the first real requests find every function traced."""
    images = _warmup_images(resize_size)
    mixed = [images["jpeg"], images["png"], images["png"], images["jpeg"]]
    requests = [
        ("serving_default", {"image_bytes": [images["jpeg"]]}),
        ("serving_default", {"image_bytes": mixed}),
        ("pixels", {"images": images["pixels"]}),
        ("pixels_float", {"images": images["pixels"].astype(np.float32)}),
        ("features", {"image_bytes": [images["png"]]}),
    ]
    return [protocol.predict_request_bytes(inputs, model_name=model_name, signature_name=name)
            for name, inputs in requests]


# ---------------------------------------------------------------------- export


def export(workdir: str, export_dir: str, *, version: int | None = None,
           checkpoint: str = "auto", top_k: int = 5, max_pixels: int = DEFAULT_MAX_PIXELS,
           max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO) -> str:
    """Exports a training run for TF Serving; returns the new ``EXPORT_DIR/<version>``.

    Args:
      workdir: the run's work directory (config.json, classes.json, checkpoints/).
      export_dir: TF Serving's model base path; created if missing.
      version: the integer version to write; default: one more than the highest there.
        An existing version is never overwritten (ExportError).
      checkpoint: "auto" (best if the run has one, else latest), "best", "latest", a
        checkpoint prefix or a directory of checkpoints (see `run.resolve_checkpoint`).
      top_k: classes returned per image (at most the number of classes).
      max_pixels, max_aspect_ratio: the largest image the signatures accept.
    """
    run = run_lib.Run(workdir)
    try:
        config = run.config
        classes = run.classes(config.model.num_classes)
        checkpoint_path = run.checkpoint(checkpoint)
    except run_lib.RunError as error:
        raise ExportError(str(error)) from None
    if version is not None and (isinstance(version, bool) or int(version) != version
                                or version < 0):
        raise ExportError(f"version must be an integer >= 0, got {version!r}.")
    os.makedirs(export_dir, exist_ok=True)
    version = next_version(export_dir) if version is None else int(version)
    target = os.path.join(export_dir, str(version))
    keras_target = os.path.join(export_dir, f"{version}.keras")
    for path in (target, keras_target):
        if os.path.exists(path):
            raise ExportError(f"{path!r} exists: versions are never overwritten; choose "
                              f"another --version or leave it out for the next free one.")
    if existing_versions(export_dir) and version < max(existing_versions(export_dir)):
        logging.warning("Version %d is lower than %d: TF Serving's default version policy "
                        "keeps serving the highest.", version, max(existing_versions(export_dir)))

    restored = restore_model(run, checkpoint_path)
    model, step = restored.model, restored.step
    staging = tempfile.mkdtemp(prefix=f".export-{version}-", dir=export_dir)
    try:
        norm = pipeline.normalization(config.data)
        info = {
            "format": "alexnet_tf.export/1",
            "workdir": os.path.abspath(workdir),
            "checkpoint": os.path.abspath(checkpoint_path),
            "step": step,
            "version": version,
            "signatures": list(SIGNATURES),
            "top_k": min(top_k, config.model.num_classes),
            "max_pixels": int(max_pixels),
            "max_aspect_ratio": float(max_aspect_ratio),
            "preprocessing": {
                "function": "alexnet_tf.data.preprocess.eval_image",
                "image_size": config.model.image_size,
                "resize_size": config.data.resize_size,
                "mean_rgb": list(norm.mean_rgb),
                "std_rgb": list(norm.std_rgb),
                "channel_order": norm.channel_order,
                "mean_image": norm.mean_image is not None,
            },
            "keras_file": os.path.basename(keras_target),
            "tensorflow": tf.__version__,
        }
        sources = os.path.join(staging, "assets-src")
        os.makedirs(sources)
        shutil.copyfile(run.classes_path, os.path.join(sources, run_lib.CLASSES_FILENAME))
        shutil.copyfile(run.config_path, os.path.join(sources, run_lib.CONFIG_FILENAME))
        with open(os.path.join(sources, EXPORT_INFO_FILENAME), "w") as f:
            json.dump(info, f, indent=1)
        module = build_serving_module(
            config, model, classes, top_k=top_k, max_pixels=max_pixels,
            max_aspect_ratio=max_aspect_ratio,
            assets=[os.path.join(sources, name) for name in
                    (run_lib.CLASSES_FILENAME, run_lib.CONFIG_FILENAME, EXPORT_INFO_FILENAME)])
        saved = os.path.join(staging, "saved_model")
        tf.saved_model.save(module, saved, signatures=module.signatures())
        extra = os.path.join(saved, "assets.extra")
        os.makedirs(extra)
        count = protocol.write_warmup_file(os.path.join(extra, protocol.WARMUP_FILENAME),
                                           warmup_requests(config.data.resize_size))
        keras_tmp = os.path.join(staging, "model.keras")
        model.save(keras_tmp)
        os.rename(saved, target)  # atomic: the server sees a complete version or none
        os.rename(keras_tmp, keras_target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logging.info("Exported %s (step %s) to %s with %d warmup requests, and %s.",
                 checkpoint_path, step, target, count, keras_target)
    return target


# ---------------------------------------------------------------------- binary


def _define_flags(flag_values):
    from absl import flags

    def define(kind, name, default, text):
        getattr(flags, f"DEFINE_{kind}")(name, default, text, flag_values=flag_values)

    define("string", "workdir", None, "The training run's work directory.")
    define("string", "export_dir", None, "TF Serving's model base path: the export is "
           "written to EXPORT_DIR/<version>/.")
    define("integer", "version", None, "Version to write (default: the next free one).")
    define("string", "checkpoint", "auto", "auto (best if the run has one, else latest), "
           "best, latest, a checkpoint prefix, or a directory of checkpoints.")
    define("integer", "top_k", 5, "Classes returned per image.")
    define("integer", "max_pixels", DEFAULT_MAX_PIXELS, "Largest image accepted, in pixels.")
    define("float", "max_aspect_ratio", DEFAULT_MAX_ASPECT_RATIO,
           "Largest accepted ratio of an image's longer side to its shorter side.")
    define("bool", "help", False, "Show this help.")


def main(argv=None) -> int:
    """The ``alexnet-export`` command; returns the exit status (0, or 1 on an error)."""
    import sys

    from absl import flags

    argv = list(sys.argv if argv is None else argv)
    f = flags.FlagValues()
    _define_flags(f)
    try:
        rest = f(argv)[1:]
    except flags.Error as error:
        print(f"alexnet-export: {error}", file=sys.stderr)
        return 1
    if f.help:
        print(__doc__.strip() + "\n\nflags:\n" + f.get_help())
        return 0
    if rest or not f.workdir or not f.export_dir:
        print("alexnet-export: give --workdir and --export_dir, and no other arguments "
              f"(got {rest}); --help for more.", file=sys.stderr)
        return 1
    try:
        path = export(f.workdir, f.export_dir, version=f.version, checkpoint=f.checkpoint,
                      top_k=f.top_k, max_pixels=f.max_pixels,
                      max_aspect_ratio=f.max_aspect_ratio)
    except (ExportError, config_lib.ConfigError) as error:
        print(f"alexnet-export: {error}", file=sys.stderr)
        return 1
    print(f"Exported {path} (and {path}.keras).")
    return 0


def run() -> None:
    """Console-script entry point (``alexnet-export``)."""
    import sys

    sys.exit(main())


if __name__ == "__main__":
    run()
