"""A trained model for the analyses (Sec. 6.1), through `alexnet_tf.model_source`.

`load_model` is the analyses' one question: the network and what reading its
input needs. The model comes from any model source (`alexnet_tf.model_source.resolve`:
a run, a checkpoint, a ``.keras`` file, converted weights); the tools' ``--workdir`` and
``--model`` flags keep their meaning: with both, the weights come from ``--model`` and
the run supplies the data (retrieval) and, for a ``.keras`` file that says nothing of its
input, the run's input convention and classes (the user says the file is the run's).

The result carries the input convention (channel order, per-channel std: conv1's
kernels act on normalised pixels), the data config (where the data is, how evaluation
preprocesses it) and a fingerprint that changes when the weights change (feature caches
key on it).
"""

from __future__ import annotations

import dataclasses

from alexnet_tf import config as config_lib
from alexnet_tf import model_source
from alexnet_tf import run as run_lib
from alexnet_tf.convention import InputConvention
from alexnet_tf.errors import NotFoundError
from alexnet_tf.model_source import file_sha256  # noqa: F401  (retrieval's cache keys)


@dataclasses.dataclass
class LoadedModel:
    """A model and what the analyses need to know about its input.

    Attributes:
      model: the Keras model (images -> logits).
      data_config: ``config.data`` of the run, or one built from the source's input
        convention (source "image_folder": ``data_dir`` says where); None when the
        convention is unknown.
      convention: the model's input convention; None for a bare ``.keras`` file.
      fingerprint: identifies the weights (`alexnet_tf.model_source.ModelSource.fingerprint`).
      description: where the weights came from, for messages.
      class_names: readable class names by index, when known.
    """

    model: object
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


def _data_config_from_convention(convention: InputConvention):
    """A data config whose evaluation preprocessing is ``convention``."""
    data = config_lib.base_config().data
    data.source = "image_folder"  # a source without a run comes with no data: data_dir says where
    for key, value in convention.config_overrides().items():
        section, name = key.split(".", 1)
        if section == "data":
            data[name] = value
    return data


def load_model(workdir: str | None = None, *, checkpoint: str = "auto",
               model_path: str | None = None) -> LoadedModel:
    """The model of a run (``workdir`` + ``checkpoint``), or of ``model_path`` (any
    model source). With both, the weights come from ``model_path`` and the data config
    from the run.

    Raises:
      ValueError: neither given; `alexnet_tf.model_source.SourceError` (a ValueError)
        for a source that is none of the kinds or cannot be loaded.
      FileNotFoundError: ``workdir`` is not a run.
    """
    if not workdir and not model_path:
        raise ValueError("Give a run's work directory or a model source (a run, a "
                         "checkpoint, a .keras file or a converted-weights directory).")
    run = None
    if workdir:
        run = run_lib.Run(workdir)
        if not run.exists():
            raise NotFoundError(f"{workdir!r} is not a run directory: no "
                                f"{run_lib.CONFIG_FILENAME} in it.")
    if model_path:
        source = model_source.resolve(model_path)
    else:
        source = model_source.resolve(workdir, checkpoint=checkpoint)
    convention, names = source.convention, source.readable_names
    if run is not None and source.kind == "keras" and convention is None:
        convention = run.convention
        names = names or run.class_names()
    data = source.data_config
    if run is not None:
        data = run.config.data
    elif data is None and convention is not None:
        data = _data_config_from_convention(convention)
    return LoadedModel(source.load_model(), data, convention, source.fingerprint,
                       source.description, list(names) if names else None)
