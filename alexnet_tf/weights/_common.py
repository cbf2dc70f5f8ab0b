"""Shared pieces of the weight converters: expected shapes, layout helpers, assignment."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from alexnet_tf import architecture
from alexnet_tf.errors import UserError


@dataclasses.dataclass(frozen=True)
class LayerShape:
    """One weighted layer of a variant, in this package's (Keras) layout.

    kernel: conv ``(kh, kw, in/groups, out)``, dense ``(in, out)``.
    flat_input: for the first dense layer after the convolutions, the ``(h, w, c)``
      map it flattens (this package flattens in H, W, C order).
    """

    name: str
    kind: str  # "conv" or "dense"
    kernel: tuple
    bias: tuple
    groups: int = 1
    flat_input: tuple | None = None


def keras_layer_shapes(variant: str, num_classes: int,
                       image_size: int | None = None) -> list[LayerShape]:
    """The weight shapes `create_model(variant, num_classes, image_size)` has, at
    width 1, from the variant's geometry (`architecture.resolve_layers`) without
    building the model."""
    geometry = architecture.resolve_layers(variant, num_classes, image_size)
    shapes = []
    for conv in geometry.convs:
        k = conv.kernel_size
        shapes.append(LayerShape(conv.name, "conv",
                                 (k, k, conv.in_channels // conv.groups, conv.filters),
                                 (conv.filters,), groups=conv.groups))
    flat = geometry.flat_input
    fan_in = math.prod(flat)
    for i, units in enumerate(geometry.fc_units):
        shapes.append(LayerShape(f"fc{6 + i}", "dense", (fan_in, units), (units,),
                                 flat_input=flat if i == 0 else None))
        fan_in = units
    shapes.append(LayerShape(architecture.LOGITS_LAYER, "dense", (fan_in, num_classes), (num_classes,)))
    return shapes


def torch_layout(shape: LayerShape) -> tuple:
    """The weight shape in Caffe's blob / PyTorch layout: conv ``(out, in/groups, kh,
    kw)``, dense ``(out, in)``."""
    if shape.kind == "conv":
        kh, kw, cin, cout = shape.kernel
        return (cout, cin, kh, kw)
    cin, cout = shape.kernel
    return (cout, cin)


def conv_from_torch_layout(w: np.ndarray) -> np.ndarray:
    """(out, in/groups, kh, kw) -> (kh, kw, in/groups, out). Group g of the outputs
    keeps reading input group g, so grouped kernels need nothing more."""
    return np.transpose(w, (2, 3, 1, 0))


def dense_from_torch_layout(w: np.ndarray, flat_input: tuple | None) -> np.ndarray:
    """(out, in) -> (in, out); when the input is a flattened (c, h, w) map (Caffe's and
    PyTorch's NCHW flatten), its rows are reordered to this package's (h, w, c)."""
    w = np.transpose(w)
    if flat_input is not None:
        w = chw_rows_to_hwc(w, flat_input)
    return w


def chw_rows_to_hwc(w: np.ndarray, flat_input: tuple) -> np.ndarray:
    """Rows of an (in, out) matrix indexed by a C,H,W flatten -> an H,W,C flatten."""
    h, wd, c = flat_input
    out = w.shape[1]
    return w.reshape(c, h, wd, out).transpose(1, 2, 0, 3).reshape(h * wd * c, out)


def fmt(shape) -> str:
    return str(tuple(int(s) for s in shape))


def assign(model, converted: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Sets each layer's (kernel, bias); every shape has been checked before, so a
    mismatch here means the variant table and this module disagree."""
    for name, (kernel, bias) in converted.items():
        layer = model.get_layer(name)
        want = [tuple(v.shape) for v in layer.weights]
        got = [tuple(kernel.shape), tuple(bias.shape)]
        if want != got:
            raise RuntimeError(
                f"Internal error: layer {name!r} of the built model has weight shapes {want}, "
                f"the converter produced {got}.")
        layer.set_weights([np.ascontiguousarray(kernel, np.float32),
                           np.ascontiguousarray(bias, np.float32)])



class WeightsError(UserError, ValueError):
    """A weights file, or the weights in it, that cannot become the network: another
    format, a missing or misshapen layer; the message names the file and the layer."""


def as_array(value, what: str) -> np.ndarray:
    """A weight as a NumPy array (PyTorch tensors included), or WeightsError naming it."""
    if hasattr(value, "detach"):  # a torch.Tensor; no torch import needed
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        raise WeightsError(f"{what}: expected an array, found {type(value).__name__}.")
    if value.dtype.kind not in "fiu":
        raise WeightsError(f"{what}: expected a numeric array, found dtype {value.dtype}.")
    return value


def raise_problems(header: str, problems: list[str], hint: str = "") -> None:
    if problems:
        message = header + "\n  " + "\n  ".join(problems)
        if hint:
            message += "\n" + hint
        raise WeightsError(message)
