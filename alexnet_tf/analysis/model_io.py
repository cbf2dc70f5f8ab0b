"""A trained model for the analyses, from wherever it was saved, with its input convention.

Three places a model can come from (`load_model`):

* a run's work directory: `alexnet_tf.run.Run.restore_model` builds the network from
  its ``config.json`` and fills it from a checkpoint ("latest", "best" or a path).
  Only the model is restored (the optimizer, step and plateau state are not needed),
  and every variable of the model must be in the checkpoint with its shape, else
  `alexnet_tf.run.CheckpointError` (a ValueError) naming the checkpoint;
* a ``.keras`` file;
* a directory of converted weights (``model.keras`` + ``input_convention.json``,
  `alexnet_tf.weights.convention.save_converted`).

The result carries what analyses must know besides the weights: the input
convention (channel order, per-channel std: conv1's kernels act on normalised
pixels), the data config (where the run's data is, how evaluation preprocesses it)
and a fingerprint that changes when the weights change (feature caches key on it).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import keras

from alexnet_tf import config as config_lib
from alexnet_tf import run as run_lib
from alexnet_tf.convention import InputConvention



@dataclasses.dataclass
class LoadedModel:
    """A model and what the analyses need to know about its input.

    Attributes:
      model: the Keras model (images -> logits).
      data_config: ``config.data`` of the run, or one built from a converted model's
        input convention; None for a bare ``.keras`` file.
      convention: the model's input convention (the run's, or the converted
        weights'); None for a bare ``.keras`` file, which does not say.
      fingerprint: identifies the weights (a hash of the checkpoint index or the file).
      description: where the weights came from, for messages.
      class_names: readable class names by index, when known.
    """

    model: keras.Model
    data_config: object | None
    convention: InputConvention | None
    fingerprint: dict
    description: str
    class_names: list[str] | None = None

    @property
    def image_size(self) -> int:
        return int(self.model.input_shape[1])

    @property
    def channel_order(self) -> str:
        """The channel order of the model's input ("RGB" when the convention is unknown)."""
        return self.convention.channel_order if self.convention else "RGB"

    @property
    def std_rgb(self) -> tuple:
        """The convention's per-channel divisor, R, G, B ((1, 1, 1) when unknown)."""
        return self.convention.std_rgb if self.convention else (1.0, 1.0, 1.0)


def file_sha256(path: str, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


def _data_config_from_convention(info):
    """A data config whose evaluation preprocessing is the converted model's convention."""
    data = config_lib.base_config().data
    data.source = "image_folder"  # converted weights come with no data: data_dir says where
    overrides = info.to_config_overrides()
    for key, value in overrides.items():
        section, name = key.split(".", 1)
        if section == "data":
            data[name] = value
    return data


def load_model(workdir: str | None = None, *, checkpoint: str = "latest",
               model_path: str | None = None) -> LoadedModel:
    """The model of a run (``workdir`` + ``checkpoint``), or of ``model_path`` (a
    ``.keras`` file or a converted-weights directory). With both, the weights come
    from ``model_path`` and the data config (for retrieval) from the run."""
    if not workdir and not model_path:
        raise ValueError("Give a run's work directory or a model path (.keras file or a "
                         "directory holding model.keras).")
    run_config = None
    class_names = None
    if workdir:
        run = run_lib.Run(workdir)
        if not run.exists():
            raise FileNotFoundError(f"{workdir!r} is not a run directory: no "
                                    f"{run_lib.CONFIG_FILENAME} in it.")
        run_config = run.config
        class_names = run.class_names()
    if model_path:
        return _load_model_file(model_path, run if workdir else None, class_names)

    restored = run.restore_model(checkpoint)
    model, path = restored.model, restored.checkpoint
    d = run_config.data
    fingerprint = {"kind": "checkpoint", "path": os.path.abspath(path),
                   # A TF checkpoint's .index holds a CRC32C of every tensor: its hash
                   # changes whenever any weight does.
                   "index_sha256": file_sha256(path + ".index"),
                   "model": run_config.model.to_dict()}
    return LoadedModel(model, d, run.convention, fingerprint, path, class_names)


def _load_model_file(model_path: str, run, class_names) -> LoadedModel:
    from alexnet_tf import layers  # noqa: F401  (registers the custom layers for loading)
    from alexnet_tf.weights import convention as convention_lib

    if os.path.isdir(model_path):
        model, info = convention_lib.load_converted(model_path)
        files = [os.path.join(model_path, name) for name in
                 (convention_lib.MODEL_FILENAME, convention_lib.CONVENTION_FILENAME,
                  convention_lib.INFO_FILENAME)]
        files = [f for f in files if os.path.exists(f)]  # weights_info.json: newer layout
        data = run.config.data if run else _data_config_from_convention(info)
        convention = info.convention  # the weights' own, whatever run gives the data
    elif model_path.endswith(".keras") and os.path.isfile(model_path):
        model = keras.saving.load_model(model_path)
        files = [model_path]
        data = run.config.data if run else None
        convention = run.convention if run else None
    else:
        raise FileNotFoundError(f"{model_path!r} is neither a .keras file nor a directory "
                                f"holding model.keras and input_convention.json.")
    fingerprint = {"kind": "keras_file", "path": os.path.abspath(model_path),
                   "sha256": [file_sha256(f) for f in files]}
    return LoadedModel(model, data, convention, fingerprint, model_path, class_names)
