"""Caffe's bvlc_alexnet weights in NumPy form -> the ``paper`` variant.

The file. ``bvlc_alexnet.npy``, as circulated with many TensorFlow ports (M. Guerzhoy's
``http://www.cs.toronto.edu/~guerzhoy/tf_alexnet/``, which kratzert's
finetune_alexnet_with_tensorflow and others load), is what ethereon/caffe-tensorflow's
converter writes: ``np.save`` of a pickled dict ``{layer: [weights, biases]}`` for
conv1..conv5, fc6, fc7, fc8 (Python 2 pickle; newer caffe-tensorflow versions, from
May 2016, write ``{layer: {"weights": ..., "biases": ...}}``; both are read). Two array
layouts exist, told apart by their shapes (conv1 (11, 11, 3, 96) or (96, 3, 11, 11),
fc6 (9216, 4096) or (4096, 9216)); every layer must agree on one:

* ``"caffe_tensorflow"``: conv ``(kh, kw, in/groups, out)``, fc ``(in, out)``, and fc6's
  rows already in H, W, C order. caffe-tensorflow's ``DataReshaper`` does this for
  the fc layer with a spatial parent: it reshapes Caffe's ``(out, c*h*w)`` blob to
  ``(out, c, h, w)``, transposes to ``(h, w, c, out)`` and flattens to
  ``(h*w*c, out)`` (in every version, from the first commit's "Kludge Alert" to
  ``kaffe/transformers.py``); the ports that load the file feed fc6 with
  ``tf.reshape`` of the NHWC pool5 map, which is H, W, C. This package's Flatten is
  H, W, C too, so these rows are used as they are.
* ``"caffe_blobs"``: Caffe's own blob layout, as ``net.params[name][0].data`` from
  pycaffe gives it: conv ``(out, in/groups, kh, kw)``, fc ``(out, in)``, fc6's input
  the C, H, W flatten of the 256x6x6 pool5 blob; transposed here, and fc6's columns
  permuted to H, W, C.

fc6's row order cannot be seen in its shape. The assumption above is the one every
caffe-tensorflow file satisfies; ``fc6_input_order="chw"`` overrides it for a file
transposed naively (without caffe-tensorflow's reordering).

Grouped layers (conv2, conv4, conv5): in Caffe, output group g reads input group g and
the blob's second axis indexes channels within the group. That is the layout of
`GroupedConv2D` (kernel ``(kh, kw, in/groups, out)``, output channels split into
contiguous groups), so the kernel maps across directly; tests/test_weights.py checks
it against an independent grouped convolution.

The model is ``create_model("paper", lrn_bias=1.0, lrn_alpha=1e-4 / 5)``: Caffe's LRN
(bvlc_alexnet: local_size 5, alpha 1e-4, beta 0.75, k 1) divides alpha by n, TF's
multiplies the plain sum. Caffe's max-pooling rounds its output size up, this
package's down; at 227x227 both give 55 -> 27 -> 13 -> 6 (every (size - 3) is even),
so the geometry is Caffe's exactly.

Safety: the pickle is read with an unpickler that only builds NumPy arrays and plain
containers, so a weight file cannot run code; anything else is refused by name.
"""

from __future__ import annotations

import codecs
import collections
import os
import pickle
from collections.abc import Mapping

import numpy as np
from numpy.lib import format as npy_format

from alexnet_tf.weights import _common
from alexnet_tf.convention import InputConvention
from alexnet_tf.weights.convention import WeightsInfo

CAFFE_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
LAYOUTS = ("caffe_tensorflow", "caffe_blobs")
LAYOUT_DESCRIPTIONS = {
    "caffe_tensorflow": "caffe-tensorflow layout: conv (kh, kw, in/groups, out), fc (in, out)",
    "caffe_blobs": "Caffe blob layout: conv (out, in/groups, kh, kw), fc (out, in)",
}
FC6_INPUT_ORDERS = ("auto", "hwc", "chw")
# Caffe's LRN constants for bvlc_alexnet (deploy.prototxt: local_size 5, alpha 1e-4,
# beta 0.75; k defaults to 1) in this package's convention: alpha / n, bias k.
CAFFE_LRN_BIAS = 1.0
CAFFE_LRN_ALPHA = 1e-4 / 5
# Per-channel means (B, G, R) of Caffe's ILSVRC 2012 mean image
# (python/caffe/imagenet/ilsvrc_2012_mean.npy averaged over its 256x256 pixels), the
# values Caffe's examples subtract; bvlc_alexnet itself was trained on the mean image.
CAFFE_MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)

_VARIANT = "paper"
_IMAGE_SIZE = 227


def caffe_weights_info(num_classes: int = 1000) -> WeightsInfo:
    """Caffe bvlc_alexnet: the ``paper`` variant with Caffe's LRN constants; input BGR,
    0..255, ImageNet mean subtracted, 227x227 crops of 256x256 images."""
    b, g, r = CAFFE_MEAN_BGR
    return WeightsInfo(
        source="caffe:bvlc_alexnet",
        convention=InputConvention(channel_order="BGR", mean_rgb=(r, g, b),
                                   std_rgb=(1.0, 1.0, 1.0), image_size=_IMAGE_SIZE,
                                   resize_size=256),
        variant=_VARIANT, num_classes=num_classes, lrn_bias=CAFFE_LRN_BIAS,
        lrn_alpha=CAFFE_LRN_ALPHA,
        notes=("Caffe trained on images warped to 256x256 (aspect ratio not kept) minus the "
               "256x256 mean image; this convention uses the mean image's per-channel means "
               "and this package's shorter-side resize, the usual approximation."))


# ---------------------------------------------------------------------------- reading

def _numpy_globals() -> dict[tuple[str, str], object]:
    try:  # NumPy >= 2
        from numpy._core import multiarray, numeric
    except ImportError:  # NumPy 1.x
        from numpy.core import multiarray, numeric
    allowed = {}
    for package in ("numpy.core", "numpy._core"):  # files written by NumPy 1 or 2
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        if hasattr(numeric, "_frombuffer"):  # pickle protocol 5
            allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    # Pickle protocol 2 written by Python 3 stores bytes as _codecs.encode(str, "latin1").
    allowed[("_codecs", "encode")] = codecs.encode
    return allowed


class _WeightsUnpickler(pickle.Unpickler):
    """Builds arrays, dicts, lists and strings only; refuses every other global."""

    _allowed = None

    def find_class(self, module, name):
        if _WeightsUnpickler._allowed is None:
            _WeightsUnpickler._allowed = _numpy_globals()
        try:
            return _WeightsUnpickler._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"the file refers to the Python object {module}.{name}; a weights file holds "
                f"only NumPy arrays in dicts and lists, so it is not loaded") from None


def read_caffe_npy(path: str | os.PathLike) -> dict:
    """The dict a ``bvlc_alexnet.npy`` file holds, read without running its pickle's code."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        try:
            version = npy_format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = npy_format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = npy_format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except ValueError as error:
            raise _common.WeightsError(
                f"{path} is not a NumPy .npy file of Caffe weights ({error}). A torchvision "
                f".pth file is read by load_torchvision.") from None
        if not dtype.hasobject:
            raise _common.WeightsError(
                f"{path} holds a plain {dtype} array of shape {shape}; expected a pickled dict "
                f"{{layer: [weights, biases]}} as written by caffe-tensorflow.")
        try:
            obj = _WeightsUnpickler(f, encoding="latin1").load()
        except pickle.UnpicklingError as error:
            raise _common.WeightsError(f"{path}: {error}.") from None
    if isinstance(obj, np.ndarray) and obj.shape == ():
        obj = obj.item()
    if not isinstance(obj, Mapping):
        raise _common.WeightsError(f"{path} holds a {type(obj).__name__}; expected a dict "
                         f"{{layer: [weights, biases]}} as written by caffe-tensorflow.")
    return dict(obj)


# ---------------------------------------------------------------------------- converting

def _key(k) -> str:
    return k.decode("latin1") if isinstance(k, bytes) else str(k)


def _entry(name: str, value) -> tuple[np.ndarray, np.ndarray]:
    """(weights, biases) of one layer entry: [w, b], (w, b) or {"weights", "biases"}."""
    if isinstance(value, Mapping):
        value = {_key(k): v for k, v in value.items()}
        if set(value) != {"weights", "biases"}:
            raise _common.WeightsError(f"Caffe layer {name!r}: expected {{'weights', 'biases'}}, found keys "
                             f"{sorted(value)}.")
        pair = (value["weights"], value["biases"])
    elif isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray)
                                             and value.dtype == object and value.ndim == 1):
        if len(value) != 2:
            raise _common.WeightsError(f"Caffe layer {name!r}: expected [weights, biases], found "
                             f"{len(value)} arrays.")
        pair = tuple(value)
    else:
        raise _common.WeightsError(f"Caffe layer {name!r}: expected [weights, biases], found "
                         f"{type(value).__name__}.")
    return (_common.as_array(pair[0], f"Caffe layer {name!r} weights"),
            _common.as_array(pair[1], f"Caffe layer {name!r} biases"))


def _source_shape(shape: _common.LayerShape, layout: str) -> tuple:
    return shape.kernel if layout == "caffe_tensorflow" else _common.torch_layout(shape)


def convert_caffe_weights(weights: Mapping, num_classes: int | None = None,
                          layout: str = "auto", fc6_input_order: str = "auto"):
    """Checks and converts a bvlc_alexnet weights dict to the ``paper`` model's layout.

    Returns ``(converted, info)``: ``converted`` maps layer name -> (kernel, bias) in
    this package's layout; ``info`` has the ``layout``, ``fc6_input_order`` and
    ``num_classes`` used. Raises ValueError naming every missing layer, unknown entry
    and wrong shape (expected vs found).
    """
    if layout not in ("auto",) + LAYOUTS:
        raise ValueError(f"layout must be 'auto' or one of {LAYOUTS}, got {layout!r}.")
    if fc6_input_order not in FC6_INPUT_ORDERS:
        raise ValueError(f"fc6_input_order must be one of {FC6_INPUT_ORDERS}, "
                         f"got {fc6_input_order!r}.")
    if not isinstance(weights, Mapping):
        raise _common.WeightsError(f"Expected a dict {{layer: [weights, biases]}}, got {type(weights).__name__}.")
    weights = {_key(k): v for k, v in weights.items()}
    if any(k.startswith(("features.", "classifier.")) for k in weights):
        raise _common.WeightsError(
            f"These are torchvision alexnet weights (keys {sorted(weights)[:3]}...), not Caffe's "
            f"bvlc_alexnet; read them with load_torchvision.")
    entries = {name: _entry(name, weights[name]) for name in CAFFE_LAYERS if name in weights}

    if num_classes is None:
        fc8 = entries.get("fc8")
        num_classes = int(fc8[1].shape[0]) if fc8 is not None and fc8[1].ndim == 1 else 1000
    shapes = _common.keras_layer_shapes(_VARIANT, num_classes, _IMAGE_SIZE)

    if layout == "auto":
        mismatches = {l: sum(tuple(entries[s.name][0].shape) != _source_shape(s, l)
                             for s in shapes if s.name in entries) for l in LAYOUTS}
        layout = min(LAYOUTS, key=lambda l: mismatches[l])  # ties: caffe_tensorflow

    problems = []
    for s in shapes:
        want_w, want_b = _source_shape(s, layout), s.bias
        if s.name not in entries:
            problems.append(f"{s.name}: missing; expected weights {_common.fmt(want_w)} and "
                            f"biases {_common.fmt(want_b)}")
            continue
        w, b = entries[s.name]
        if tuple(w.shape) != want_w:
            problems.append(f"{s.name} weights: expected shape {_common.fmt(want_w)}, found "
                            f"{_common.fmt(w.shape)}")
        if tuple(b.shape) != want_b:
            problems.append(f"{s.name} biases: expected shape {_common.fmt(want_b)}, found "
                            f"{_common.fmt(b.shape)}")
    unknown = sorted(set(weights) - set(CAFFE_LAYERS))
    if unknown:
        problems.append(f"unknown entries {unknown}; bvlc_alexnet has exactly {list(CAFFE_LAYERS)}")
    _common.raise_problems(
        f"Caffe bvlc_alexnet weights do not fit the 'paper' model ({num_classes} classes; "
        f"{LAYOUT_DESCRIPTIONS[layout]}):", problems,
        hint="The file must hold Caffe's bvlc_alexnet geometry (96-256-384-384-256 kernels, "
             "conv2/conv4/conv5 in 2 groups, 227x227 input); for a different number of "
             "classes, num_classes must match fc8 or be None.")

    if fc6_input_order == "auto":
        fc6_input_order = "hwc" if layout == "caffe_tensorflow" else "chw"
    converted = {}
    for s in shapes:
        w, b = entries[s.name]
        w = w.astype(np.float32)
        if layout == "caffe_blobs":
            w = (_common.conv_from_torch_layout(w) if s.kind == "conv" else np.transpose(w))
        if s.flat_input is not None and fc6_input_order == "chw":
            w = _common.chw_rows_to_hwc(w, s.flat_input)
        converted[s.name] = (w, b.astype(np.float32))
    info = {"layout": layout, "fc6_input_order": fc6_input_order, "num_classes": num_classes}
    return converted, info


def load_caffe_npy(path, num_classes: int | None = None, *, layout: str = "auto",
                   fc6_input_order: str = "auto", grouped_conv_implementation: str = "auto"):
    """Caffe's bvlc_alexnet from its ``.npy`` form, as ``(keras.Model, WeightsInfo)``.

    Args:
      path: a ``bvlc_alexnet.npy`` file (or the dict it holds).
      num_classes: None takes fc8's width from the file; a number must match it.
      layout: "auto" (from the shapes), "caffe_tensorflow" or "caffe_blobs".
      fc6_input_order: "auto" ("hwc" for caffe_tensorflow, "chw" for caffe_blobs), or
        the order fc6's input rows are in, to override the assumption.
      grouped_conv_implementation: passed to `create_model`.

    The model is ``create_model("paper", num_classes, 227, lrn_bias=1.0,
    lrn_alpha=2e-5)`` and expects inputs made by the returned convention (BGR, mean
    subtracted on the 0..255 scale).
    """
    from alexnet_tf import models

    weights = path if isinstance(path, Mapping) else read_caffe_npy(path)
    converted, info = convert_caffe_weights(weights, num_classes, layout, fc6_input_order)
    model = models.create_model(
        _VARIANT, num_classes=info["num_classes"], image_size=_IMAGE_SIZE,
        lrn_bias=CAFFE_LRN_BIAS, lrn_alpha=CAFFE_LRN_ALPHA,
        grouped_conv_implementation=grouped_conv_implementation)
    _common.assign(model, converted)
    return model, caffe_weights_info(info["num_classes"])
