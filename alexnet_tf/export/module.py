"""The serving module: the model, its preprocessing and its class table as the
SavedModel's root, with its signatures defined in one table, `SIGNATURE_TABLE`.

Signatures (B = batch, S = model.image_size, k = top_k, C = classes):

    serving_default  image_bytes: string [B] (JPEG, PNG, GIF or BMP; sizes may differ)
                     -> classes int32 [B, k], class_ids string [B, k], class_names string
                        [B, k], scores float32 [B, k], probabilities float32 [B, C]
    pixels           images: uint8 [B, H, W, 3] (RGB, any H and W) -> the same outputs
    pixels_float     images: float32 [B, H, W, 3] (RGB on the 0..255 scale; rounded to
                     uint8 first, as decoded images are) -> the same outputs
    features         image_bytes: string [B] -> features float32 [B, fc7 units] (Sec. 6.1)

Each row of the table (`Signature`) is a signature's name, its input specs, the function
that computes its outputs from the module and the inputs, its output names, a one-line
description and the warmup batches sent to it; `ServingModule` makes one ``tf.function``
of each row, and the export saves them (`ServingModule.signatures`). Adding a signature
is one row and its compute function.

Inside, every image goes through the evaluation preprocessing of the data module
(`preprocess.eval_image`: shorter side to data.resize_size, central crop, normalisation
with the run's `alexnet_tf.convention.InputConvention`), one image at a time with
``tf.map_fn``, so a batch may mix sizes and formats. Decoded pixels take the same resize,
crop and normalisation (`preprocess.eval_pixels`, the same steps after decoding), on the
whole batch at once (a pixels batch has one size). Inputs
are checked first (`alexnet_tf.export.input_checks`). Bytes are decoded by the one decode
rule of `alexnet_tf.data.decode`, as in training, the converter and the statistics:
alpha composited over white, EXIF orientation applied, every GIF frame's size checked.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf import models
from alexnet_tf.errors import UserError
from alexnet_tf.convention import InputConvention
from alexnet_tf.data import preprocess
from alexnet_tf.export import input_checks, limits
from alexnet_tf.export.limits import DEFAULT_MAX_ASPECT_RATIO, DEFAULT_MAX_PIXELS


class ExportError(UserError, ValueError):
    """The run, the checkpoint or the export directory cannot give an export."""


# ------------------------------------------------------------------ the module


class ServingModule(tf.Module):
    """The model, its preprocessing and its class table, as the SavedModel's root.

    Each row of `SIGNATURE_TABLE` becomes a ``tf.function`` attribute named after its
    compute function (``classify_bytes``, ..., ``features``); `signatures` gives their
    concrete functions under the signature names.

    ``top_k`` (an integer >= 1; more than the model's classes gives all of them),
    ``max_pixels`` and ``max_aspect_ratio`` are checked by
    `alexnet_tf.export.limits.check_export_values` (ExportError).
    """

    def __init__(self, model: keras.Model, *, classes: list[dict],
                 convention: InputConvention, top_k: int = 5, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO, assets=()):
        super().__init__(name="alexnet_serving")
        num_classes = int(model.output.shape[-1])
        if len(classes) != num_classes:
            raise ExportError(f"{len(classes)} classes for a model with {num_classes} outputs.")
        try:
            limits.check_export_values(top_k=top_k, max_pixels=max_pixels,
                                       max_aspect_ratio=max_aspect_ratio)
        except ValueError as error:
            raise ExportError(str(error)) from None
        self.model = model
        self.feature_model = models.feature_extractor(model)
        self.assets = [tf.saved_model.Asset(path) for path in assets]
        self._class_ids = np.array([c["id"].encode("utf-8") for c in classes], dtype=object)
        self._class_names = np.array([c["name"].encode("utf-8") for c in classes],
                                     dtype=object)
        if int(model.input_shape[1]) != convention.image_size:
            raise ExportError(f"The input convention crops {convention.image_size} pixels; "
                              f"the model takes {model.input_shape[1]}.")
        self._norm = convention
        self._image_size = convention.image_size
        self._resize_size = convention.resize_size
        self._top_k = min(top_k, num_classes)
        self._max_pixels = int(max_pixels)
        self._max_aspect_ratio = float(max_aspect_ratio)
        for row in SIGNATURE_TABLE:
            # Attributes of the module, so that the SavedModel also keeps them as
            # functions of the loaded object (``loaded.classify_bytes(...)``).
            setattr(self, row.compute.__name__, _signature_function(self, row))

    def signatures(self) -> dict:
        """{signature name: concrete function}, for ``tf.saved_model.save``."""
        return {row.name: getattr(self, row.compute.__name__).get_concrete_function()
                for row in SIGNATURE_TABLE}

    # -- preprocessing, one image at a time

    def _image_spec(self):
        return tf.TensorSpec([self._image_size, self._image_size, 3], tf.float32)

    def preprocess_bytes(self, image_bytes):
        """string [B] -> float32 [B, S, S, 3], through `preprocess.eval_image`."""
        def one(args):
            encoded, index = args
            encoded = input_checks.check_encoded_image(
                encoded, input_checks.message("image_bytes[", index, "]"),
                max_pixels=self._max_pixels, max_aspect_ratio=self._max_aspect_ratio)
            return preprocess.eval_image(encoded, image_size=self._image_size,
                                         resize_size=self._resize_size, norm=self._norm)

        image_bytes = input_checks.check_bytes_shape(image_bytes)
        indices = tf.range(tf.shape(image_bytes, out_type=tf.int64)[0])
        return tf.map_fn(one, (image_bytes, indices), fn_output_signature=self._image_spec())

    def preprocess_pixels(self, images):
        """uint8 [B, H, W, 3] -> float32 [B, S, S, 3], through `preprocess.eval_pixels`
        on the whole batch: its images share one size, so the resize and crop need no
        per-image loop (each image comes out as alone; at batch 1 the loop cost 3% of
        the latency, docs/BENCHMARKS.md)."""
        images = input_checks.check_pixels_size(images, max_pixels=self._max_pixels,
                                                max_aspect_ratio=self._max_aspect_ratio)
        return preprocess.eval_pixels(images, image_size=self._image_size,
                                      resize_size=self._resize_size, norm=self._norm)

    # -- heads

    @staticmethod
    def run(model: keras.Model, images):
        """model(images) as float32; an empty batch gives an empty result without
        running the model (TF's convolutions pass a batch of zero images through
        unchanged)."""
        width = int(model.output.shape[-1])
        return tf.cond(tf.shape(images)[0] > 0,
                       lambda: tf.cast(model(images, training=False), tf.float32),
                       lambda: tf.zeros([0, width], tf.float32))

    def classify(self, images) -> dict:
        """float32 [B, S, S, 3] model inputs -> the `CLASSIFICATION_OUTPUTS`."""
        logits = self.run(self.model, images)
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        scores, classes = tf.math.top_k(probabilities, k=self._top_k)
        return {
            "classes": classes,
            "class_ids": tf.gather(tf.constant(self._class_ids, tf.string), classes),
            "class_names": tf.gather(tf.constant(self._class_names, tf.string), classes),
            "scores": scores,
            "probabilities": probabilities,
        }


def _signature_function(module: ServingModule, row: "Signature"):
    """The ``tf.function`` of one table row: its compute function on ``module``, traced
    with the row's input specs (whose names are the signature's input names), returning
    exactly the row's outputs."""
    def serve(*inputs):
        outputs = row.compute(module, *inputs)
        if sorted(outputs) != sorted(row.outputs):
            raise ValueError(f"Signature {row.name!r}: {row.compute.__name__} returned "
                             f"{sorted(outputs)}; its table row says {list(row.outputs)}.")
        return {name: outputs[name] for name in row.outputs}

    serve.__name__ = row.compute.__name__
    return tf.function(serve, input_signature=list(row.inputs))


# ------------------------------------------------ compute functions, one per row


def classify_bytes(module: ServingModule, image_bytes):
    """string [B] encoded images -> the classification outputs."""
    return module.classify(module.preprocess_bytes(image_bytes))


def classify_pixels(module: ServingModule, images):
    """uint8 [B, H, W, 3] RGB -> the classification outputs."""
    return module.classify(module.preprocess_pixels(images))


def classify_pixels_float(module: ServingModule, images):
    """float32 [B, H, W, 3] RGB on 0..255 -> the classification outputs; rounded to
    uint8 first, as decoded images are."""
    images = input_checks.check_float_pixels(images)
    return module.classify(module.preprocess_pixels(tf.cast(tf.round(images), tf.uint8)))


def features(module: ServingModule, image_bytes):
    """string [B] encoded images -> {"features": float32 [B, fc7 units]} (Sec. 6.1)."""
    return {"features": module.run(module.feature_model, module.preprocess_bytes(image_bytes))}


# ------------------------------------------------------------------ the table


@dataclasses.dataclass(frozen=True)
class Signature:
    """One serving signature.

    Attributes:
      name: the signature's name in the SavedModel (TF Serving's ``signature_name``).
      inputs: its inputs, as named ``tf.TensorSpec``s (the names are the input names).
      compute: ``compute(module, *inputs) -> {output name: tensor}``; its ``__name__``
        also names the ``tf.function`` on the module.
      outputs: the output names ``compute`` returns, no more and no fewer.
      description: one line, for readers of the table.
      warmup: the batches the export's warmup file sends, each a tuple of keys of
        `alexnet_tf.export.saved_model.warmup_images` (converted to each input's dtype).
    """

    name: str
    inputs: tuple[tf.TensorSpec, ...]
    compute: Callable[..., dict]
    outputs: tuple[str, ...]
    description: str
    warmup: tuple[tuple[str, ...], ...]


IMAGE_BYTES = tf.TensorSpec([None], tf.string, name="image_bytes")
IMAGES_UINT8 = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
IMAGES_FLOAT = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")
CLASSIFICATION_OUTPUTS = ("classes", "class_ids", "class_names", "scores", "probabilities")

FEATURES = Signature(
    "features", (IMAGE_BYTES,), features, ("features",),
    "image bytes -> fc7 activations (Sec. 6.1), for retrieval",
    warmup=(("png",),))

SIGNATURE_TABLE: tuple[Signature, ...] = (
    Signature("serving_default", (IMAGE_BYTES,), classify_bytes, CLASSIFICATION_OUTPUTS,
              "image bytes -> top-k classes, ids, names, scores and all probabilities",
              # batch 1, then a mixed batch of 4: the sizes the first requests will have
              warmup=(("jpeg",), ("jpeg", "png", "png", "jpeg"))),
    Signature("pixels", (IMAGES_UINT8,), classify_pixels, CLASSIFICATION_OUTPUTS,
              "uint8 RGB pixels of any size -> the same outputs", warmup=(("pixels",),)),
    Signature("pixels_float", (IMAGES_FLOAT,), classify_pixels_float,
              CLASSIFICATION_OUTPUTS, "float RGB pixels on 0..255 -> the same outputs",
              warmup=(("pixels",),)),
    FEATURES,
)

SIGNATURES = tuple(row.name for row in SIGNATURE_TABLE)

# What `alexnet_tf.analysis.retrieval` reads of an export: image_bytes -> {"features"}.
FEATURES_SIGNATURE = FEATURES.name
FEATURES_INPUT = FEATURES.inputs[0].name
FEATURES_OUTPUT = FEATURES.outputs[0]


def build_serving_module(convention: InputConvention, model: keras.Model, classes: list[dict],
                         *, top_k: int = 5, max_pixels: int = DEFAULT_MAX_PIXELS,
                         max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO,
                         assets=()) -> ServingModule:
    """The serving module of a restored model with its run's input convention
    (`alexnet_tf.run.Run.convention`)."""
    return ServingModule(model, classes=classes, convention=convention, top_k=top_k,
                         max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio,
                         assets=assets)
