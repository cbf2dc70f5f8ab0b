"""What a set of imported weights needs besides its numbers, and saving a converted model.

`WeightsInfo` says where converted weights come from, the input they expect (an
`alexnet_tf.convention.InputConvention`: channel order, mean, std, crop and resize
sizes) and the model settings they fit (variant, classes, LRN constants). It maps onto
the package's config keys (`WeightsInfo.to_config_overrides`).

`save_converted` writes a converted model as a directory::

    model.keras              the Keras model
    input_convention.json    its `InputConvention` (`InputConvention.save`)
    weights_info.json        source, variant, classes, LRN constants, notes

and `load_converted` reads it back, as well as the one-file layout earlier versions
wrote (everything in ``input_convention.json``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from alexnet_tf.convention import FILENAME as CONVENTION_FILENAME
from alexnet_tf.convention import InputConvention

MODEL_FILENAME = "model.keras"
INFO_FILENAME = "weights_info.json"
_INFO_FIELDS = ("source", "variant", "num_classes", "lrn_bias", "lrn_alpha", "notes")


@dataclasses.dataclass(frozen=True)
class WeightsInfo:
    """Converted weights: their origin, their input convention and the model they fit.

    Attributes:
      source: where the weights come from, e.g. ``"caffe:bvlc_alexnet"``.
      convention: the input the weights expect.
      variant: the `alexnet_tf.architecture.VARIANTS` key the weights fit.
      num_classes: width of fc8.
      lrn_bias, lrn_alpha: LRN constants in this package's convention (alpha
        multiplies the plain sum of squares); None when the variant has no LRN.
      notes: what the convention simplifies, in words.
    """

    source: str
    convention: InputConvention
    variant: str
    num_classes: int
    lrn_bias: float | None = None
    lrn_alpha: float | None = None
    notes: str = ""

    def to_config_overrides(self) -> dict[str, Any]:
        """The `alexnet_tf.config.base_config` keys (dotted) that reproduce this model
        and its input, e.g. for ``config.update_from_flattened_dict(...)``.

        Besides the convention it pins ``model.width`` (1.0) and ``model.groups``
        (None: the variant's own), since the weights only fit the variant's full-width
        geometry.
        """
        return {**self.convention.config_overrides(),
                "model.variant": self.variant,
                "model.num_classes": int(self.num_classes),
                "model.lrn_bias": self.lrn_bias,
                "model.lrn_alpha": self.lrn_alpha,
                "model.width": 1.0,
                "model.groups": None}

    def to_dict(self) -> dict[str, Any]:
        """The fields of ``weights_info.json`` (the convention is saved on its own)."""
        return {name: getattr(self, name) for name in _INFO_FIELDS}


def save_converted(model, info: WeightsInfo, directory: str | os.PathLike,
                   overwrite: bool = False) -> tuple[str, str]:
    """Writes ``model.keras``, ``input_convention.json`` and ``weights_info.json`` into
    ``directory``; returns the model's and the convention's paths. Refuses to replace
    existing files (FileExistsError naming them) unless ``overwrite``."""
    directory = os.fspath(directory)
    paths = [os.path.join(directory, name)
             for name in (MODEL_FILENAME, CONVENTION_FILENAME, INFO_FILENAME)]
    if not overwrite:
        existing = [p for p in paths if os.path.exists(p)]
        if existing:
            raise FileExistsError(f"{existing} already exist; pass overwrite=True to replace them.")
    os.makedirs(directory, exist_ok=True)
    model.save(paths[0])
    # The JSON files last, each written atomically: a directory with them is complete.
    tmp = paths[2] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(info.to_dict(), f, indent=2)
        f.write("\n")
    os.replace(tmp, paths[2])
    info.convention.save(directory)
    return paths[0], paths[1]


def read_info(directory: str | os.PathLike) -> WeightsInfo:
    """The `WeightsInfo` of a converted-weights directory (either layout)."""
    directory = os.fspath(directory)
    info_path = os.path.join(directory, INFO_FILENAME)
    if os.path.exists(info_path):
        with open(info_path, encoding="utf-8") as f:
            fields = json.load(f)
        return WeightsInfo(convention=InputConvention.load(directory), **fields)
    # The layout before weights_info.json: one input_convention.json with every field.
    with open(os.path.join(directory, CONVENTION_FILENAME), encoding="utf-8") as f:
        values = json.load(f)
    fields = {name: values.pop(name) for name in _INFO_FIELDS if name in values}
    return WeightsInfo(convention=InputConvention.from_dict(values), **fields)


def load_converted(directory: str | os.PathLike):
    """Reads back what `save_converted` wrote: ``(keras.Model, WeightsInfo)``."""
    import keras

    from alexnet_tf import layers  # noqa: F401  (registers the custom layers)

    info = read_info(directory)
    model = keras.saving.load_model(os.path.join(os.fspath(directory), MODEL_FILENAME))
    return model, info
