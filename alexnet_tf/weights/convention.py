"""What a set of imported weights needs besides its numbers, and saving a converted model.

`WeightsInfo` says where converted weights come from, the input they expect (an
`alexnet_tf.convention.InputConvention`: channel order, mean, std, crop and resize
sizes) and the model settings they fit (variant, classes, LRN constants). It maps onto
the package's config keys (`WeightsInfo.to_config_overrides`).

`save_converted` writes a converted model as a directory::

    model.keras              the Keras model
    input_convention.json    its `InputConvention` (`InputConvention.save`)
    weights_info.json        source, variant, classes, LRN constants, notes
    classes.json             optional: the class ids and names by output index, in a run's
                             format (`alexnet_tf.run.Run.write_classes`)

and `load_converted` reads it back, as well as the one-file layout earlier versions
wrote (everything in ``input_convention.json``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

from alexnet_tf.convention import FILENAME as CONVENTION_FILENAME
from alexnet_tf.convention import ConventionError, InputConvention
from alexnet_tf.errors import ExistsError

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

    def __post_init__(self):
        from alexnet_tf import architecture

        if not isinstance(self.source, str) or not self.source:
            raise ConventionError(f"source must be a non-empty string, got {self.source!r}.")
        if not isinstance(self.convention, InputConvention):
            raise ConventionError(f"convention must be an InputConvention, got "
                                  f"{type(self.convention).__name__}.")
        if self.variant not in architecture.VARIANTS:
            raise ConventionError(f"variant must be one of {sorted(architecture.VARIANTS)}, "
                                  f"got {self.variant!r}.")
        if (isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int)
                or self.num_classes < 1):
            raise ConventionError(f"num_classes must be a positive integer, got "
                                  f"{self.num_classes!r}.")
        for name in ("lrn_bias", "lrn_alpha"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value < 0):
                raise ConventionError(f"{name} must be None or a finite number >= 0, got "
                                      f"{value!r}.")
        if not isinstance(self.notes, str):
            raise ConventionError(f"notes must be a string, got {self.notes!r}.")

    def check_model(self, model) -> None:
        """Raises ConventionError unless ``model`` takes the convention's crop and has
        ``num_classes`` outputs: info and weights must describe the same network."""
        size, classes = int(model.input_shape[1]), int(model.output_shape[-1])
        if (size, classes) != (self.convention.image_size, self.num_classes):
            raise ConventionError(
                f"The weights' info says {self.convention.image_size} pixels and "
                f"{self.num_classes} classes; the model takes {size} pixels and has "
                f"{classes} outputs.")

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
                   overwrite: bool = False, *, class_names=None,
                   readable_names=None) -> tuple[str, str]:
    """Writes ``model.keras``, ``input_convention.json`` and ``weights_info.json`` into
    ``directory``; returns the model's and the convention's paths. Refuses to replace
    existing files (FileExistsError naming them) unless ``overwrite``.

    ``class_names`` (one id per output, e.g. wnids) and ``readable_names`` (optional,
    as many) are written as ``classes.json``, so that the converted model says which
    class each output is (`alexnet_tf.model_source.ModelSource.class_names`); with
    ``overwrite`` and no class names, an earlier ``classes.json`` is removed. Raises
    ConventionError unless there is one non-empty, distinct id per output.
    """
    from alexnet_tf import run as run_lib

    directory = os.fspath(directory)
    paths = [os.path.join(directory, name)
             for name in (MODEL_FILENAME, CONVENTION_FILENAME, INFO_FILENAME)]
    classes_path = os.path.join(directory, run_lib.CLASSES_FILENAME)
    info.check_model(model)  # never write an info that contradicts its weights
    if class_names is not None:
        class_names = list(class_names)
        readable = list(readable_names) if readable_names is not None else class_names
        if (len(class_names) != info.num_classes or len(readable) != len(class_names)
                or len(set(class_names)) != len(class_names)
                or not all(isinstance(c, str) and c for c in class_names + readable)):
            raise ConventionError(
                f"Class names must be {info.num_classes} distinct non-empty strings (one per "
                f"output of fc8), with as many readable names; got {len(class_names)} ids and "
                f"{len(readable)} names.")
    if not overwrite:
        existing = [p for p in paths + [classes_path] if os.path.exists(p)]
        if existing:
            raise ExistsError(f"{existing} already exist; pass overwrite=True to replace them.")
    os.makedirs(directory, exist_ok=True)
    if os.path.exists(classes_path):  # never leave another model's classes beside these
        os.remove(classes_path)
    model.save(paths[0])
    if class_names is not None:
        run_lib.Run(directory).write_classes(class_names, readable)
    # The JSON files last, each written atomically: a directory with them is complete.
    tmp = paths[2] + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(info.to_dict(), f, indent=2)
        f.write("\n")
    os.replace(tmp, paths[2])
    info.convention.save(directory)
    return paths[0], paths[1]


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ConventionError(f"{path!r} is missing: a converted-weights directory holds "
                              f"{MODEL_FILENAME}, {CONVENTION_FILENAME} and "
                              f"{INFO_FILENAME} (tools/convert_weights.py).") from None
    except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError) as error:
        raise ConventionError(f"{path!r} is not JSON: {error}") from None


def _info(path: str, fields, convention: InputConvention) -> WeightsInfo:
    if not isinstance(fields, dict):
        raise ConventionError(f"{path!r} must hold a JSON object, got {type(fields).__name__}.")
    unknown = sorted(set(fields) - set(_INFO_FIELDS))
    missing = sorted({"source", "variant", "num_classes"} - set(fields))
    if unknown or missing:
        raise ConventionError(f"{path!r}: " + "; ".join(
            part for part in (unknown and f"unknown fields {unknown}",
                              missing and f"missing fields {missing}") if part)
            + f" (fields: {list(_INFO_FIELDS)}).")
    try:
        return WeightsInfo(convention=convention, **fields)
    except ConventionError as error:
        raise ConventionError(f"{path!r}: {error}") from None


def read_info(directory: str | os.PathLike) -> WeightsInfo:
    """The `WeightsInfo` of a converted-weights directory (either layout).

    Raises ConventionError naming the file that is missing, not JSON, or holds a field
    outside what `WeightsInfo` accepts."""
    directory = os.fspath(directory)
    info_path = os.path.join(directory, INFO_FILENAME)
    if os.path.exists(info_path):
        return _info(info_path, _read_json(info_path), InputConvention.load(directory))
    # The layout before weights_info.json: one input_convention.json with every field.
    path = os.path.join(directory, CONVENTION_FILENAME)
    values = _read_json(path)
    if not isinstance(values, dict):
        raise ConventionError(f"{path!r} must hold a JSON object, got {type(values).__name__}.")
    fields = {name: values.pop(name) for name in _INFO_FIELDS if name in values}
    try:
        convention = InputConvention.from_dict(values)
    except ConventionError as error:
        raise ConventionError(f"{path!r}: {error}") from None
    return _info(path, fields, convention)


def load_converted(directory: str | os.PathLike):
    """Reads back what `save_converted` wrote: ``(keras.Model, WeightsInfo)``."""
    import keras

    from alexnet_tf import layers  # noqa: F401  (registers the custom layers)

    info = read_info(directory)
    path = os.path.join(os.fspath(directory), MODEL_FILENAME)
    if not os.path.isfile(path):
        raise ConventionError(f"{path!r} is missing: the converted model itself.")
    try:
        model = keras.saving.load_model(path)
    except (ValueError, OSError) as error:  # Keras says "File not found" for a bad zip
        raise ConventionError(f"{path!r} is not a Keras model file: {error}") from None
    info.check_model(model)
    return model, info
