"""What a set of imported weights expects of its input, and saving a converted model.

`InputConvention` records how 0..255 RGB pixels must be turned into the model's
input for weights trained elsewhere (channel order, mean, std, crop and resize
sizes) and the model settings the weights need (variant, classes, LRN constants).
It maps onto the package's config keys (`InputConvention.to_config_overrides`), whose
pipeline computes ``(pixel - mean_rgb) / std_rgb`` on the 0..255 scale and then
reverses the channels when ``channel_order == "BGR"``.

`save_converted` writes a converted model as ``model.keras`` with its convention as
``input_convention.json`` beside it; `load_converted` reads both back.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

MODEL_FILENAME = "model.keras"
CONVENTION_FILENAME = "input_convention.json"


@dataclasses.dataclass(frozen=True)
class InputConvention:
    """The input a converted model expects, and the model settings its weights need.

    Attributes:
      source: where the weights come from, e.g. ``"caffe:bvlc_alexnet"``.
      channel_order: "RGB" or "BGR": the channel order of the model's input after
        normalisation ("BGR" for Caffe).
      mean_rgb, std_rgb: per channel, in R, G, B order, on the 0..255 pixel scale:
        the model's input is ``(pixel - mean_rgb) / std_rgb`` (then channel_order).
      image_size: side of the square crop the model takes.
      resize_size: the side images are resized to before the crop (shorter side in
        this package's pipeline).
      variant: the `alexnet_tf.architecture.VARIANTS` key the weights fit.
      num_classes: width of fc8.
      lrn_bias, lrn_alpha: LRN constants in this package's convention (alpha
        multiplies the plain sum of squares); None when the variant has no LRN.
      notes: what the convention simplifies, in words.
    """

    source: str
    channel_order: str
    mean_rgb: tuple
    std_rgb: tuple
    image_size: int
    resize_size: int
    variant: str
    num_classes: int
    lrn_bias: float | None = None
    lrn_alpha: float | None = None
    notes: str = ""

    def __post_init__(self):
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}.")
        for key in ("mean_rgb", "std_rgb"):
            value = tuple(float(v) for v in getattr(self, key))
            if len(value) != 3:
                raise ValueError(f"{key} must hold three numbers (R, G, B), got {value!r}.")
            object.__setattr__(self, key, value)
        if any(v <= 0 for v in self.std_rgb):
            raise ValueError(f"std_rgb must be > 0, got {self.std_rgb!r}.")

    def normalize(self, images_rgb) -> np.ndarray:
        """Applies the convention to 0..255 RGB images (NumPy, channels last)."""
        x = np.asarray(images_rgb, np.float32)
        x = (x - np.asarray(self.mean_rgb, np.float32)) / np.asarray(self.std_rgb, np.float32)
        return x[..., ::-1] if self.channel_order == "BGR" else x

    def to_config_overrides(self) -> dict[str, Any]:
        """The `alexnet_tf.config.base_config` keys (dotted) that reproduce this model
        and its input, e.g. for ``config.update_from_flattened_dict(...)``.

        Besides the convention itself it pins ``model.width`` (1.0) and
        ``model.groups`` (None: the variant's own), since the weights only fit the
        variant's full-width geometry.
        """
        return {
            "data.channel_order": self.channel_order,
            "data.mean_rgb": tuple(self.mean_rgb),
            "data.std_rgb": tuple(self.std_rgb),
            "data.resize_size": int(self.resize_size),
            "model.image_size": int(self.image_size),
            "model.variant": self.variant,
            "model.num_classes": int(self.num_classes),
            "model.lrn_bias": self.lrn_bias,
            "model.lrn_alpha": self.lrn_alpha,
            "model.width": 1.0,
            "model.groups": None,
        }

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean_rgb"], d["std_rgb"] = list(self.mean_rgb), list(self.std_rgb)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "InputConvention":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"Unknown InputConvention fields {unknown}; known: {sorted(names)}.")
        return cls(**d)


def save_converted(model, convention: InputConvention, directory: str | os.PathLike,
                   overwrite: bool = False) -> tuple[str, str]:
    """Writes ``<directory>/model.keras`` and ``<directory>/input_convention.json``.

    Returns both paths. Refuses to replace existing files unless ``overwrite``.
    """
    directory = os.fspath(directory)
    model_path = os.path.join(directory, MODEL_FILENAME)
    convention_path = os.path.join(directory, CONVENTION_FILENAME)
    if not overwrite:
        existing = [p for p in (model_path, convention_path) if os.path.exists(p)]
        if existing:
            raise FileExistsError(f"{existing} already exist; pass overwrite=True to replace them.")
    os.makedirs(directory, exist_ok=True)
    model.save(model_path)
    # Written to a temporary name first: a directory with a convention file always
    # has a complete one.
    tmp = convention_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(convention.to_dict(), f, indent=2)
        f.write("\n")
    os.replace(tmp, convention_path)
    return model_path, convention_path


def load_converted(directory: str | os.PathLike):
    """Reads back what `save_converted` wrote: ``(keras.Model, InputConvention)``."""
    import keras

    from alexnet_tf import layers  # noqa: F401  (registers the custom layers)

    directory = os.fspath(directory)
    with open(os.path.join(directory, CONVENTION_FILENAME), encoding="utf-8") as f:
        convention = InputConvention.from_dict(json.load(f))
    model = keras.saving.load_model(os.path.join(directory, MODEL_FILENAME))
    return model, convention
