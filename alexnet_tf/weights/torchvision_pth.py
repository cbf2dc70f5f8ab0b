"""torchvision's ``alexnet`` weights (a ``.pth`` state_dict) -> the ``one_tower`` variant.

torchvision.models.alexnet (Krizhevsky 2014, "One weird trick"):
``features`` = Conv2d(3, 64, 11, stride 4, pad 2) [0], ReLU, MaxPool(3, 2),
Conv2d(64, 192, 5, pad 2) [3], ReLU, MaxPool, Conv2d(192, 384, 3, pad 1) [6], ReLU,
Conv2d(384, 256, 3, pad 1) [8], ReLU, Conv2d(256, 256, 3, pad 1) [10], ReLU, MaxPool;
``avgpool`` = AdaptiveAvgPool2d((6, 6)); ``classifier`` = Dropout, Linear(9216, 4096)
[1], ReLU, Dropout, Linear(4096, 4096) [4], ReLU, Linear(4096, num_classes) [6].
The state_dict keys are ``features.{0,3,6,8,10}.{weight,bias}`` and
``classifier.{1,4,6}.{weight,bias}``; conv weights are ``(out, in, kh, kw)``, Linear
``(out, in)``, and classifier.1 reads ``torch.flatten`` of the (256, 6, 6) map, a
C, H, W flatten: its columns are permuted to this package's H, W, C flatten.

Reading a ``.pth`` file needs PyTorch (``pip install torch``; imported only here,
only when a file is given); a state_dict already in memory (tensors or NumPy arrays)
needs nothing. Files are read with ``torch.load(weights_only=True)``, which cannot
run code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from alexnet_tf.weights import _common
from alexnet_tf.convention import InputConvention
from alexnet_tf.errors import MissingDependencyError
from alexnet_tf.weights.convention import WeightsInfo

# Our layer -> torchvision's module prefix.
TORCHVISION_KEYS = {
    "conv1": "features.0", "conv2": "features.3", "conv3": "features.6",
    "conv4": "features.8", "conv5": "features.10",
    "fc6": "classifier.1", "fc7": "classifier.4", "fc8": "classifier.6",
}
# torchvision's ImageNet normalisation (pixels / 255, then these), on the 0..255 scale.
TORCHVISION_MEAN = (0.485, 0.456, 0.406)
TORCHVISION_STD = (0.229, 0.224, 0.225)

_VARIANT = "one_tower"
_IMAGE_SIZE = 224


def torchvision_weights_info(num_classes: int = 1000) -> WeightsInfo:
    """torchvision's alexnet: the ``one_tower`` variant; input RGB, ``(x / 255 - mean) /
    std``, i.e. mean ``255 * (0.485, 0.456, 0.406)`` and std ``255 * (0.229, 0.224,
    0.225)`` on the 0..255 scale; shorter side resized to 256, 224x224 centre crop."""
    return WeightsInfo(
        source="torchvision:alexnet",
        convention=InputConvention(channel_order="RGB",
                                   mean_rgb=tuple(255.0 * m for m in TORCHVISION_MEAN),
                                   std_rgb=tuple(255.0 * s for s in TORCHVISION_STD),
                                   image_size=_IMAGE_SIZE, resize_size=256),
        variant=_VARIANT, num_classes=num_classes,
        notes="torchvision resizes with antialiasing (PIL bilinear); TF's resize may differ slightly.")


def _import_torch():
    try:
        import torch
    except ImportError as error:
        raise MissingDependencyError(
            "Reading a torchvision .pth file needs PyTorch, which is not installed: "
            "pip install -e '.[torch]' or pip install torch (CPU wheels: pip install "
            "torch --index-url "
            "https://download.pytorch.org/whl/cpu). A state_dict already in memory, as "
            "NumPy arrays, needs no torch.") from error
    return torch


def read_torchvision_state_dict(path: str | os.PathLike) -> dict:
    """The state_dict in a ``.pth`` file (weights only: no code runs)."""
    torch = _import_torch()
    path = os.fspath(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types; name the file
        raise _common.WeightsError(f"{path} could not be read as a PyTorch state_dict: {error}") from error
    if not isinstance(obj, Mapping):
        raise _common.WeightsError(f"{path} holds a {type(obj).__name__}; expected a state_dict "
                         f"(torch.save(model.state_dict(), path)).")
    return dict(obj)


def convert_torchvision_weights(state_dict: Mapping, num_classes: int | None = None):
    """Checks and converts a torchvision alexnet state_dict to the ``one_tower`` layout.

    Returns ``(converted, num_classes)``; raises ValueError naming every missing key,
    unknown key and wrong shape (expected vs found).
    """
    if not isinstance(state_dict, Mapping):
        raise _common.WeightsError(f"Expected a state_dict (a mapping), got {type(state_dict).__name__}.")
    state = {str(k): v for k, v in state_dict.items()}
    if any(k in state for k in ("conv1", "fc6", "fc8")):
        raise _common.WeightsError(
            f"These look like Caffe bvlc_alexnet weights (keys {sorted(state)[:3]}...), not a "
            f"torchvision state_dict; read them with load_caffe_npy.")
    if num_classes is None:
        fc8_bias = state.get("classifier.6.bias")
        num_classes = int(np.shape(fc8_bias)[0]) if fc8_bias is not None and \
            len(np.shape(fc8_bias)) == 1 else 1000
    shapes = _common.keras_layer_shapes(_VARIANT, num_classes, _IMAGE_SIZE)

    problems, arrays = [], {}
    for s in shapes:
        prefix = TORCHVISION_KEYS[s.name]
        for suffix, want in (("weight", _common.torch_layout(s)), ("bias", s.bias)):
            key = f"{prefix}.{suffix}"
            if key not in state:
                problems.append(f"{key} ({s.name}): missing; expected shape {_common.fmt(want)}")
                continue
            value = _common.as_array(state[key], key)
            if tuple(value.shape) != want:
                problems.append(f"{key} ({s.name}): expected shape {_common.fmt(want)}, found "
                                f"{_common.fmt(value.shape)}")
            arrays[key] = value
    known = {f"{p}.{x}" for p in TORCHVISION_KEYS.values() for x in ("weight", "bias")}
    unknown = sorted(set(state) - known)
    if unknown:
        hint = ""
        if all(k.startswith("module.") for k in state):
            hint = " (a DataParallel state_dict: strip the 'module.' prefix)"
        problems.append(f"unknown keys {unknown[:12]}{' ...' if len(unknown) > 12 else ''}"
                        f"{hint}; torchvision alexnet has exactly {sorted(known)}")
    _common.raise_problems(
        f"torchvision alexnet weights do not fit the 'one_tower' model ({num_classes} classes; "
        f"PyTorch layout: conv (out, in, kh, kw), Linear (out, in)):", problems,
        hint="The state_dict must be torchvision.models.alexnet's (64-192-384-256-256 kernels).")

    converted = {}
    for s in shapes:
        prefix = TORCHVISION_KEYS[s.name]
        w = arrays[f"{prefix}.weight"].astype(np.float32)
        b = arrays[f"{prefix}.bias"].astype(np.float32)
        if s.kind == "conv":
            w = _common.conv_from_torch_layout(w)
        else:
            w = _common.dense_from_torch_layout(w, s.flat_input)
        converted[s.name] = (w, b)
    return converted, num_classes


def load_torchvision(path_or_state_dict, num_classes: int | None = None):
    """torchvision's alexnet as ``(keras.Model, WeightsInfo)``.

    Args:
      path_or_state_dict: a ``.pth`` file holding ``model.state_dict()`` (needs
        torch), or the state_dict itself (torch tensors or NumPy arrays).
      num_classes: None takes classifier.6's width; a number must match it.

    The model is ``create_model("one_tower", num_classes, 224)``; in eval mode
    (``training=False``) its logits equal torchvision's on the same images.
    """
    from alexnet_tf import models

    if isinstance(path_or_state_dict, Mapping):
        state_dict = path_or_state_dict
    else:
        state_dict = read_torchvision_state_dict(path_or_state_dict)
    converted, num_classes = convert_torchvision_weights(state_dict, num_classes)
    model = models.create_model(_VARIANT, num_classes=num_classes, image_size=_IMAGE_SIZE)
    _common.assign(model, converted)
    return model, torchvision_weights_info(num_classes)
