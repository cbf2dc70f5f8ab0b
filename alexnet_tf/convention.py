"""The input convention: how 0..255 RGB pixels become a model's input, in one object.

A model's weights only mean something with the preprocessing they were trained with.
`InputConvention` is that preprocessing as data: the mean subtracted (per channel, or
Sec. 2's mean image), the std divided by, the channel order, the crop size and the
size images are resized to first. It is built once (`InputConvention.from_config` for
a run, the weight converters for imported weights), and everything that normalises
takes it: the input pipeline and its on-device tail, the export's signatures, the
retrieval features and the kernel pictures. It is saved with every run
(``WORKDIR/input_convention.json``), every export (its ``assets/``) and every converted
model, so a model is never read with another convention than its own.

The model's input is ``(pixel - mean) / std`` per channel on the 0..255 scale (R, G,
B order), then the channels reversed when ``channel_order == "BGR"`` (weights trained
in Caffe). This module imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from typing import Any

import numpy as np

from alexnet_tf.data import stats
from alexnet_tf.errors import UserError
from alexnet_tf.data.stats import IMAGENET_MEAN_RGB

FILENAME = "input_convention.json"
MEAN_IMAGE_FILENAME = "input_convention_mean_image.npy"
FORMAT = "alexnet_tf.input_convention/1"

CHANNEL_ORDERS = ("RGB", "BGR")


class ConventionError(UserError, ValueError):
    """An input convention with a value outside what it accepts, or a file that is not one."""


# The largest side the package handles; larger "sizes" are typing errors, not images.
MAX_SIZE = 1 << 15


def _triple(name: str, value) -> tuple[float, float, float]:
    """Three finite numbers (R, G, B) from a list or tuple, else ConventionError."""
    numbers = isinstance(value, (list, tuple, np.ndarray)) and len(value) == 3 and all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
        for v in value)
    if not numbers or not all(math.isfinite(float(v)) for v in value):
        raise ConventionError(f"{name} must hold three finite numbers (R, G, B), got {value!r}.")
    return tuple(float(v) for v in value)


@dataclasses.dataclass(frozen=True, eq=False)
class InputConvention:
    """How 0..255 RGB pixels become the model's float input.

    Attributes:
      mean_rgb: per-channel mean, R, G, B on the 0..255 scale.
      std_rgb: per-channel divisor, R, G, B, each > 0 (1, 1, 1 in the paper).
      channel_order: "RGB", or "BGR" for weights trained in Caffe: the order of the
        model's input channels after normalisation.
      image_size: side of the square crop the model takes (227 in the paper).
      resize_size: the shorter side images are resized to before cropping (256,
        Sec. 2).
      mean_image: optional float32 [resize_size, resize_size, 3], R, G, B on 0..255:
        Sec. 2's mean image, subtracted at the crop's window instead of ``mean_rgb``.

    Equal conventions hash equal (the mean image by its bytes), so a convention can
    key a ``tf.function``'s traces.
    Raises:
      ConventionError: a value outside the above.
    """

    mean_rgb: tuple = IMAGENET_MEAN_RGB
    std_rgb: tuple = (1.0, 1.0, 1.0)
    channel_order: str = "RGB"
    image_size: int = 227
    resize_size: int = 256
    mean_image: np.ndarray | None = None

    def __post_init__(self):
        object.__setattr__(self, "mean_rgb", _triple("mean_rgb", self.mean_rgb))
        object.__setattr__(self, "std_rgb", _triple("std_rgb", self.std_rgb))
        if any(s <= 0 for s in self.std_rgb):
            raise ConventionError(f"std_rgb must be > 0, got {self.std_rgb!r}.")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ConventionError(f"channel_order must be one of {CHANNEL_ORDERS}, got "
                                  f"{self.channel_order!r}.")
        for name in ("image_size", "resize_size"):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                    or not 1 <= value <= MAX_SIZE):
                raise ConventionError(f"{name} must be an integer in [1, {MAX_SIZE}], got "
                                      f"{value!r}.")
            object.__setattr__(self, name, int(value))
        if self.resize_size < self.image_size:
            raise ConventionError(f"resize_size ({self.resize_size}) must be at least "
                                  f"image_size ({self.image_size}): crops come from the "
                                  f"resized image.")
        if self.mean_image is not None:
            given = np.asarray(self.mean_image)
            expected = (self.resize_size, self.resize_size, 3)
            if given.dtype.kind not in "iuf":
                raise ConventionError(f"mean_image must hold real numbers, got dtype "
                                      f"{given.dtype}.")
            if given.shape != expected:
                raise ConventionError(f"mean_image must have shape {expected} (resize_size "
                                      f"x resize_size x RGB), got {given.shape}.")
            # A private, read-only copy: the caller's array cannot change the convention
            # (or its hash) afterwards.
            with np.errstate(over="ignore", invalid="ignore"):  # refused just below
                mean_image = np.array(given, np.float32)
            if not np.isfinite(mean_image).all():
                raise ConventionError("mean_image must be finite (float32); it holds NaN, "
                                      "infinity, or values beyond float32's range.")
            mean_image.setflags(write=False)
            object.__setattr__(self, "mean_image", mean_image)

    # ------------------------------------------------------------- identity

    def _key(self) -> tuple:
        digest = (None if self.mean_image is None
                  else hashlib.sha256(self.mean_image.tobytes()).hexdigest())
        return (self.mean_rgb, self.std_rgb, self.channel_order, self.image_size,
                self.resize_size, digest)

    def __eq__(self, other) -> bool:
        if not isinstance(other, InputConvention):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def replace(self, **changes) -> "InputConvention":
        """A copy with ``changes`` applied (checked like a new one)."""
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------- from a run

    @classmethod
    def from_config(cls, config) -> "InputConvention":
        """The convention a run's config describes: ``data.mean_rgb``, ``data.std_rgb``,
        ``data.channel_order``, ``data.resize_size``, ``model.image_size``; with
        ``data.stats_file`` (tools/dataset_stats.py) its mean, and with
        ``data.mean="image"`` its mean image (Sec. 2)."""
        return cls.from_data_config(config.data, config.model.image_size)

    @classmethod
    def from_data_config(cls, data_config, image_size: int) -> "InputConvention":
        """`from_config` from ``config.data`` and the model's input side."""
        d = data_config
        mean_rgb, mean_image = tuple(d.mean_rgb), None
        if d.stats_file:
            dataset_stats = stats.load(d.stats_file, image_size=d.resize_size)
            mean_rgb = tuple(float(v) for v in dataset_stats.mean_rgb)
            if d.mean == "image":
                mean_image = dataset_stats.mean_image
        return cls(mean_rgb=mean_rgb, std_rgb=tuple(d.std_rgb), channel_order=d.channel_order,
                   image_size=image_size, resize_size=d.resize_size, mean_image=mean_image)

    def config_overrides(self) -> dict[str, Any]:
        """The `alexnet_tf.config.base_config` keys (dotted) that reproduce this convention
        (all but a mean image, which needs ``data.stats_file``)."""
        return {"data.channel_order": self.channel_order,
                "data.mean_rgb": self.mean_rgb,
                "data.std_rgb": self.std_rgb,
                "data.resize_size": self.resize_size,
                "model.image_size": self.image_size}

    # ------------------------------------------------------------ pixels

    def normalize(self, images_rgb, mean_window: tuple[int, int] | None = None) -> np.ndarray:
        """0..255 RGB images (NumPy, channels last, crops of ``image_size``) -> the model's
        input, float32. With a mean image, ``mean_window`` = (top, left) of the crop
        within the ``resize_size`` image (default: the centre)."""
        x = np.asarray(images_rgb, np.float32)
        if self.mean_image is not None:
            size = x.shape[-2]
            top, left = mean_window or ((self.resize_size - size) // 2,) * 2
            mean = self.mean_image[top:top + size, left:left + size]
        else:
            mean = np.asarray(self.mean_rgb, np.float32)
        x = (x - mean) / np.asarray(self.std_rgb, np.float32)
        return x[..., ::-1] if self.channel_order == "BGR" else x

    # ------------------------------------------------------------- files

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields; the mean image is saved beside (``has_mean_image``)."""
        return {"format": FORMAT, "mean_rgb": list(self.mean_rgb), "std_rgb": list(self.std_rgb),
                "channel_order": self.channel_order, "image_size": self.image_size,
                "resize_size": self.resize_size, "has_mean_image": self.mean_image is not None}

    @classmethod
    def from_dict(cls, values: dict[str, Any], mean_image=None) -> "InputConvention":
        """Reads `to_dict`'s fields. Every field is required (no silent defaults);
        unknown fields and another format are refused, naming them."""
        if not isinstance(values, dict):
            raise ConventionError(f"An input convention is a JSON object, got "
                                  f"{type(values).__name__}.")
        values = dict(values)
        fmt = values.pop("format", FORMAT)  # absent in converted weights' legacy layout
        if fmt != FORMAT:
            raise ConventionError(f"Input convention format {fmt!r} is not {FORMAT!r}, the "
                                  f"one this version reads.")
        has_mean_image = values.pop("has_mean_image", False)
        if not isinstance(has_mean_image, bool):
            raise ConventionError(f"has_mean_image must be true or false, got "
                                  f"{has_mean_image!r}.")
        names = {f.name for f in dataclasses.fields(cls)} - {"mean_image"}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConventionError(f"Unknown input-convention fields {unknown}; known: "
                                  f"{sorted(names)}.")
        missing = sorted(names - set(values))
        if missing:
            raise ConventionError(f"The input convention lacks {missing}.")
        if has_mean_image and mean_image is None:
            raise ConventionError("The input convention names a mean image, but none was "
                                  "given (it is saved as " + MEAN_IMAGE_FILENAME + ").")
        return cls(**values, mean_image=mean_image)

    def save(self, directory: str | os.PathLike) -> str:
        """Writes ``<directory>/input_convention.json`` (and the mean image beside it, as
        ``input_convention_mean_image.npy``), atomically; returns the JSON's path."""
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        if self.mean_image is not None:
            np.save(os.path.join(directory, MEAN_IMAGE_FILENAME), self.mean_image)
        path = os.path.join(directory, FILENAME)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)  # a directory with the file always has a complete one
        return path

    @classmethod
    def load(cls, directory: str | os.PathLike) -> "InputConvention":
        """Reads what `save` wrote in ``directory``. Raises FileNotFoundError naming the
        file when there is none, ConventionError when it is not a convention."""
        directory = os.fspath(directory)
        path = os.path.join(directory, FILENAME)
        try:
            with open(path, encoding="utf-8") as f:
                # NaN and Infinity are not JSON numbers; Python's reader would take them.
                values = json.load(f, parse_constant=_refuse_constant)
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as error:
            raise ConventionError(f"{path!r} is not an input convention: {error}") from None
        mean_image = None
        if isinstance(values, dict) and values.get("has_mean_image") is True:
            image_path = os.path.join(directory, MEAN_IMAGE_FILENAME)
            try:
                mean_image = np.load(image_path, allow_pickle=False)
            except FileNotFoundError:
                raise ConventionError(f"{path!r} names a mean image, but {image_path!r} is "
                                      f"missing.") from None
            except ValueError as error:
                raise ConventionError(f"{image_path!r} is not a mean image: {error}") from None
        try:
            return cls.from_dict(values, mean_image)
        except ConventionError as error:
            raise ConventionError(f"{path!r}: {error}") from None


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number this file may hold")
