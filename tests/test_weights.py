"""Tests of alexnet_tf.weights: Caffe bvlc_alexnet (.npy) and torchvision alexnet (.pth) import.

Each source network is rebuilt here independently of the converter, and the converted
Keras model must give its logits on the same images:

* Caffe: a float64 NumPy forward pass with Caffe's semantics (NCHW; grouped convolution
  as separate convolutions on channel slices; Caffe's LRN, alpha / n and k = 1, across
  channels; max-pooling with Caffe's rounded-up output size; fc6 on the C, H, W
  flatten), on random weights in Caffe's blob layout, written to disk as
  caffe-tensorflow writes ``bvlc_alexnet.npy``.
* torchvision: the ``alexnet`` architecture written out in plain torch (no torchvision
  import), its random state_dict saved with ``torch.save``; skipped without torch.

Weights are He-scaled and inputs on the 0..255 scale so that activations stay O(100)
through all eight layers: the LRN term (2e-5 * sum of 5 squares) is then of order 1, and
every layer, bias and permutation moves the logits (each test also shows that a wrong
LRN constant, fc6 order or group mapping would be caught).

Tolerance: ``max|keras - reference| <= 1e-4 * max|reference|``. Float32 sums of up to
9216 products reorder differently in TF and NumPy/torch (relative errors ~1e-6 measured);
a wrong layout or constant gives errors of order 1 (relative), checked below.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
from numpy.lib import format as npy_format
from numpy.lib.stride_tricks import sliding_window_view

from alexnet_tf import config as config_module
from alexnet_tf import architecture, models
from alexnet_tf.convention import ConventionError, InputConvention
from alexnet_tf import weights
from alexnet_tf.weights import _common as weights_common

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REL_TOL = 1e-4
# Caffe's per-channel ImageNet mean, B, G, R (python/caffe/imagenet/ilsvrc_2012_mean.npy).
CAFFE_MEAN_BGR = np.array([104.00698793, 116.66876762, 122.67891434])


def assert_logits_close(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape
    scale = np.abs(expected).max()
    error = np.abs(actual - expected).max()
    assert error <= REL_TOL * scale, f"max error {error:.3g} vs logit scale {scale:.3g}"


def assert_logits_differ(actual, expected):
    """A wrong conversion must be far outside the tolerance, or the test proves nothing."""
    scale = np.abs(expected).max()
    assert np.abs(np.asarray(actual) - expected).max() > 100 * REL_TOL * scale


# ------------------------------------------------------------------ Caffe reference (NumPy)

def caffe_conv(x, w, b, stride=1, pad=0, group=1):
    """Caffe's Convolution layer: NCHW input, (out, in/group, kh, kw) weights; output
    group g reads input channels [g * in/group, (g + 1) * in/group)."""
    n, c, h, wd = x.shape
    out, cg, kh, kw = w.shape
    assert c == cg * group and out % group == 0
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride][:, :, :ho, :wo]
    og = out // group
    parts = [np.einsum("nchwij,ocij->nohw", windows[:, g * cg:(g + 1) * cg],
                       w[g * og:(g + 1) * og], optimize=True) for g in range(group)]
    return np.concatenate(parts, axis=1) + b[None, :, None, None]


def caffe_lrn(x, local_size=5, alpha=1e-4, beta=0.75, k=1.0):
    """Caffe's LRN, ACROSS_CHANNELS: x / (k + alpha / n * sum of n squares) ** beta."""
    pad = (local_size - 1) // 2
    squares = np.pad(x ** 2, ((0, 0), (pad, pad), (0, 0), (0, 0)))
    window_sum = sum(squares[:, i:i + x.shape[1]] for i in range(local_size))
    return x / (k + alpha / local_size * window_sum) ** beta


def caffe_pool_size(size, kernel=3, stride=2):
    """Caffe's pooled size: rounded up (pooling_layer.cpp), unlike its convolutions."""
    return int(math.ceil((size - kernel) / stride)) + 1


def caffe_max_pool(x, kernel=3, stride=2):
    n, c, h, w = x.shape
    ho, wo = caffe_pool_size(h, kernel, stride), caffe_pool_size(w, kernel, stride)
    out = np.empty((n, c, ho, wo), x.dtype)
    for i in range(ho):
        for j in range(wo):  # windows clipped at the border, as Caffe does
            out[:, :, i, j] = x[:, :, i * stride:min(i * stride + kernel, h),
                                j * stride:min(j * stride + kernel, w)].max(axis=(2, 3))
    return out


def caffe_alexnet_forward(blobs, x_nchw, lrn_k=1.0, lrn_alpha=1e-4):
    """bvlc_alexnet's deploy.prototxt, layer by layer, in float64."""
    p = {name: (w.astype(np.float64), b.astype(np.float64)) for name, (w, b) in blobs.items()}
    relu = lambda t: np.maximum(t, 0.0)  # noqa: E731
    lrn = lambda t: caffe_lrn(t, 5, lrn_alpha, 0.75, lrn_k)  # noqa: E731
    x = caffe_max_pool(lrn(relu(caffe_conv(x_nchw, *p["conv1"], stride=4))))
    x = caffe_max_pool(lrn(relu(caffe_conv(x, *p["conv2"], pad=2, group=2))))
    x = relu(caffe_conv(x, *p["conv3"], pad=1))
    x = relu(caffe_conv(x, *p["conv4"], pad=1, group=2))
    x = caffe_max_pool(relu(caffe_conv(x, *p["conv5"], pad=1, group=2)))
    x = x.reshape(x.shape[0], -1)  # Caffe's InnerProduct flattens the blob as C, H, W
    x = relu(x @ p["fc6"][0].T + p["fc6"][1])
    x = relu(x @ p["fc7"][0].T + p["fc7"][1])
    return x @ p["fc8"][0].T + p["fc8"][1]


CAFFE_BLOB_SHAPES = {  # Caffe's blobs for bvlc_alexnet: (out, in/group, kh, kw), (out, in)
    "conv1": (96, 3, 11, 11), "conv2": (256, 48, 5, 5), "conv3": (384, 256, 3, 3),
    "conv4": (384, 192, 3, 3), "conv5": (256, 192, 3, 3),
    "fc6": (4096, 9216), "fc7": (4096, 4096), "fc8": (1000, 4096),
}


def random_blobs(seed, shapes=CAFFE_BLOB_SHAPES):
    rng = np.random.default_rng(seed)
    blobs = {}
    for name, shape in shapes.items():
        fan_in = math.prod(shape[1:])
        w = rng.standard_normal(shape, dtype=np.float32) * np.float32(math.sqrt(2.0 / fan_in))
        b = rng.standard_normal(shape[0], dtype=np.float32)
        blobs[name] = (w, b)
    return blobs


def caffe_tensorflow_layout(blobs):
    """What ethereon/caffe-tensorflow's DataReshaper writes: conv (c_o, c_i, h, w) ->
    (h, w, c_i, c_o); fc (c_o, c_i) -> (c_i, c_o), except the fc with a spatial parent
    (fc6), reshaped to (c_o, 256, 6, 6), transposed like a conv and flattened."""
    out = {}
    for name, (w, b) in blobs.items():
        if w.ndim == 4:
            w = w.transpose(2, 3, 1, 0)
        elif name == "fc6":
            w = w.reshape(w.shape[0], 256, 6, 6).transpose(2, 3, 1, 0).reshape(9216, w.shape[0])
        else:
            w = w.T
        out[name] = [np.ascontiguousarray(w), b]
    return out


@pytest.fixture(scope="module")
def caffe_case(tmp_path_factory):
    """Random bvlc_alexnet blobs, two 0..255 RGB images, Caffe's own preprocessing of
    them, the reference logits, and the blobs written as caffe-tensorflow's .npy."""
    blobs = random_blobs(seed=1)
    rgb = np.random.default_rng(2).uniform(0, 255, (2, 227, 227, 3))
    # Caffe's preprocessing, written out: RGB -> BGR, subtract the mean, NCHW.
    x_nchw = (rgb[..., ::-1] - CAFFE_MEAN_BGR).transpose(0, 3, 1, 2)
    path = tmp_path_factory.mktemp("caffe") / "bvlc_alexnet.npy"
    np.save(path, caffe_tensorflow_layout(blobs), allow_pickle=True)
    return dict(blobs=blobs, rgb=rgb, x_nchw=x_nchw, path=path,
                reference=caffe_alexnet_forward(blobs, x_nchw))


@pytest.fixture(scope="module")
def caffe_model(caffe_case):
    return weights.load_caffe_npy(caffe_case["path"])


def test_caffe_pooling_rounds_up_but_equals_floor_at_227():
    # Caffe rounds pooled sizes up, Keras down; the converted model is pinned to 227,
    # where every pooled map has (size - 3) even and both agree.
    ours = dict(architecture.spatial_sizes(architecture.get_variant("paper"), 227))
    assert [ours["conv1"], ours["pool1"], ours["pool2"], ours["pool5"]] == [55, 27, 13, 6]
    for conv, pool in (("conv1", "pool1"), ("conv2", "pool2"), ("conv5", "pool5")):
        assert caffe_pool_size(ours[conv]) == ours[pool]
    # Elsewhere they differ (231 -> conv1 56 -> Caffe 28, floor 27): why 227 is pinned.
    assert caffe_pool_size(56) == 28 and (56 - 3) // 2 + 1 == 27


def test_caffe_npy_logits_match_caffe_reference(caffe_case, caffe_model):
    model, info = caffe_model
    x = info.convention.normalize(caffe_case["rgb"])
    np.testing.assert_allclose(x, caffe_case["x_nchw"].transpose(0, 2, 3, 1), atol=1e-4)
    logits = model(x, training=False).numpy()
    assert_logits_close(logits, caffe_case["reference"])
    # The test would see the paper's LRN constants (k=2, alpha 1e-4 on the plain sum).
    paper_lrn = caffe_alexnet_forward(caffe_case["blobs"], caffe_case["x_nchw"], lrn_k=2.0,
                                      lrn_alpha=5e-4)
    assert_logits_differ(logits, paper_lrn)
    layer = model.get_layer("norm1")
    assert (layer.bias, layer.alpha, layer.depth_size, layer.beta) == (1.0, 2e-5, 5, 0.75)


def test_caffe_convention(caffe_model):
    _, info = caffe_model
    assert info.source == "caffe:bvlc_alexnet"
    convention = info.convention
    assert (convention.channel_order, convention.image_size, convention.resize_size) == ("BGR", 227, 256)
    np.testing.assert_allclose(convention.mean_rgb, CAFFE_MEAN_BGR[::-1])
    assert convention.std_rgb == (1.0, 1.0, 1.0)
    rgb = np.random.default_rng(0).uniform(0, 255, (4, 5, 3))
    np.testing.assert_allclose(convention.normalize(rgb), rgb[..., ::-1] - CAFFE_MEAN_BGR, atol=1e-4)


def test_caffe_grouped_kernel_maps_to_grouped_conv2d(caffe_case, caffe_model):
    # Caffe: output group g reads input group g. Checked on conv2 alone against Caffe's
    # convolution, and against the same kernel with its groups swapped.
    model, _ = caffe_model
    w, b = caffe_case["blobs"]["conv2"]
    x = np.random.default_rng(3).standard_normal((1, 96, 27, 27))
    expected = caffe_conv(x, w.astype(np.float64), b.astype(np.float64), pad=2, group=2)
    conv2 = model.get_layer("conv2")
    actual = conv2(x.transpose(0, 2, 3, 1).astype(np.float32)).numpy().transpose(0, 3, 1, 2)
    assert_logits_close(actual, expected)
    swapped = np.concatenate([w[128:], w[:128]]).astype(np.float64)
    wrong = caffe_conv(x, swapped, np.concatenate([b[128:], b[:128]]).astype(np.float64),
                       pad=2, group=2)
    assert_logits_differ(actual, wrong)


def test_caffe_blob_layout_detected_and_matches_reference(caffe_case):
    # pycaffe's net.params dumped as is: (out, in/group, kh, kw) and (out, in), fc6 on
    # the C, H, W flatten.
    blob_dict = {name: [w, b] for name, (w, b) in caffe_case["blobs"].items()}
    converted, info = weights.convert_caffe_weights(blob_dict)
    assert info == {"layout": "caffe_blobs", "fc6_input_order": "chw", "num_classes": 1000}
    model, _ = weights.load_caffe_npy(blob_dict)
    x = caffe_case["x_nchw"].transpose(0, 2, 3, 1).astype(np.float32)
    assert_logits_close(model(x, training=False).numpy(), caffe_case["reference"])


def test_caffe_fc6_order_override(caffe_case):
    # A file transposed naively (fc6 = blob.T, rows C, H, W) needs fc6_input_order="chw";
    # read with the default assumption (H, W, C) it gives wrong logits.
    naive = caffe_tensorflow_layout(caffe_case["blobs"])
    naive["fc6"] = [np.ascontiguousarray(caffe_case["blobs"]["fc6"][0].T), caffe_case["blobs"]["fc6"][1]]
    x = caffe_case["x_nchw"].transpose(0, 2, 3, 1).astype(np.float32)
    right, _ = weights.load_caffe_npy(naive, fc6_input_order="chw")
    assert_logits_close(right(x, training=False).numpy(), caffe_case["reference"])
    wrong, _ = weights.load_caffe_npy(naive)
    assert_logits_differ(wrong(x, training=False).numpy(), caffe_case["reference"])


def test_caffe_dict_entries_and_numpy1_pickles_read_alike(caffe_case, tmp_path):
    # Newer caffe-tensorflow writes {layer: {"weights", "biases"}}: converted alike.
    tf_layout = caffe_tensorflow_layout(caffe_case["blobs"])
    as_lists, _ = weights.convert_caffe_weights(tf_layout)
    as_dicts, _ = weights.convert_caffe_weights(
        {k: {"weights": w, "biases": b} for k, (w, b) in tf_layout.items()})
    for name in weights.CAFFE_LAYERS:
        for a, b in zip(as_lists[name], as_dicts[name]):
            np.testing.assert_array_equal(a, b)
    # A file pickled by NumPy 1 names numpy.core.multiarray (protocol 2, as NumPy 1 on
    # Python 2 wrote bvlc_alexnet.npy); rewrite this one's names so.
    holder = np.empty((), dtype=object)
    small = {"conv1": [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(2, np.float32)]}
    holder[()] = small
    data = pickle.dumps(holder, protocol=2).replace(b"numpy._core.", b"numpy.core.")
    assert b"numpy.core.multiarray" in data
    path = tmp_path / "old.npy"
    with open(path, "wb") as f:
        npy_format.write_array_header_1_0(f, {"descr": "|O", "fortran_order": False, "shape": ()})
        f.write(data)
    read = weights.read_caffe_npy(path)
    assert list(read) == ["conv1"]
    for a, b in zip(read["conv1"], small["conv1"]):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ Caffe: bad input

def caffe_tensorflow_shapes():
    return {name: (s[2], s[3], s[1], s[0]) if len(s) == 4 else (s[1], s[0])
            for name, s in CAFFE_BLOB_SHAPES.items()}


def fake_caffe(shapes=None):
    """Right-shaped caffe-tensorflow entries without real data (errors come first)."""
    shapes = shapes or caffe_tensorflow_shapes()
    return {name: [np.empty(s, np.float32), np.empty(s[-1], np.float32)]
            for name, s in shapes.items()}


def test_caffe_missing_layer_in_file(tmp_path):
    path = tmp_path / "partial.npy"
    np.save(path, {"conv1": [np.zeros((11, 11, 3, 96), np.float32), np.zeros(96, np.float32)]},
            allow_pickle=True)
    with pytest.raises(ValueError) as error:
        weights.load_caffe_npy(path)
    message = str(error.value)
    assert "fc7: missing; expected weights (4096, 4096) and biases (4096,)" in message
    assert "conv2: missing; expected weights (5, 5, 48, 256)" in message
    assert "conv1:" not in message and "conv1 weights" not in message  # conv1 is fine


def test_caffe_wrong_shape_ungrouped_variant():
    # An AlexNet without groups (conv2 reading all 96 channels) is not bvlc_alexnet.
    bad = fake_caffe()
    bad["conv2"][0] = np.empty((5, 5, 96, 256), np.float32)
    with pytest.raises(ValueError, match=r"conv2 weights: expected shape \(5, 5, 48, 256\), "
                                         r"found \(5, 5, 96, 256\)"):
        weights.convert_caffe_weights(bad)


def test_caffe_mixed_layouts_and_num_classes_are_refused():
    mixed = fake_caffe()
    mixed["fc6"][0] = np.empty((4096, 9216), np.float32)  # blob layout among TF-layout layers
    with pytest.raises(ValueError, match=r"fc6 weights: expected shape \(9216, 4096\), "
                                         r"found \(4096, 9216\)"):
        weights.convert_caffe_weights(mixed)
    with pytest.raises(ValueError, match=r"fc8 weights: expected shape \(4096, 10\), found "
                                         r"\(4096, 1000\)[\s\S]*fc8 biases: expected shape "
                                         r"\(10,\), found \(1000,\)"):
        weights.convert_caffe_weights(fake_caffe(), num_classes=10)
    # num_classes=None takes fc8's width from the file.
    _, info = weights.convert_caffe_weights(fake_caffe({**caffe_tensorflow_shapes(),
                                                        "fc8": (4096, 10)}))
    assert info["num_classes"] == 10


def test_caffe_unknown_entries_and_other_sources_are_named():
    extra = fake_caffe()
    extra["conv6"] = extra["conv5"]
    extra["data_mean"] = extra["fc8"]
    with pytest.raises(ValueError, match=r"unknown entries \['conv6', 'data_mean'\]"):
        weights.convert_caffe_weights(extra)
    torch_keys = {"features.0.weight": np.empty((64, 3, 11, 11), np.float32)}
    with pytest.raises(ValueError, match="load_torchvision"):
        weights.load_caffe_npy(torch_keys)


class _RunsCodeWhenUnpickled:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.makedirs, (self.target,))


def test_caffe_npy_reader_runs_no_code(tmp_path):
    target = str(tmp_path / "created_by_unpickling")
    path = tmp_path / "evil.npy"
    np.save(path, {"conv1": [_RunsCodeWhenUnpickled(target), None]}, allow_pickle=True)
    with pytest.raises(ValueError, match=r"os\.makedirs"):
        weights.read_caffe_npy(path)
    assert not os.path.exists(target)
    (tmp_path / "x.pth").write_bytes(b"PK\x03\x04 not an npy")
    with pytest.raises(ValueError, match="not a NumPy .npy file"):
        weights.read_caffe_npy(tmp_path / "x.pth")
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(ValueError, match="plain float64 array of shape"):
        weights.read_caffe_npy(tmp_path / "plain.npy")


# ------------------------------------------------------------------ torchvision

def torchvision_alexnet(torch, num_classes=1000):
    """torchvision.models.alexnet, written out (torchvision itself is not imported)."""
    nn = torch.nn

    class AlexNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(64, 192, kernel_size=5, padding=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(192, 384, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(384, 256, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(256, 256, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
            )
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
            self.classifier = nn.Sequential(
                nn.Dropout(p=0.5),
                nn.Linear(256 * 6 * 6, 4096),
                nn.ReLU(inplace=True),
                nn.Dropout(p=0.5),
                nn.Linear(4096, 4096),
                nn.ReLU(inplace=True),
                nn.Linear(4096, num_classes),
            )

        def forward(self, x):
            x = self.features(x)
            x = self.avgpool(x)
            x = torch.flatten(x, 1)
            return self.classifier(x)

    return AlexNet()


TORCHVISION_MEAN = np.array([0.485, 0.456, 0.406])
TORCHVISION_STD = np.array([0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def torch_case(tmp_path_factory):
    torch = pytest.importorskip("torch", reason="torch is not installed: pip install torch")
    torch.manual_seed(0)
    net = torchvision_alexnet(torch)
    with torch.no_grad():  # He-scaled weights keep activations O(1) through the network
        for module in net.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                torch.nn.init.normal_(module.bias, std=0.1)
    net.eval()
    path = tmp_path_factory.mktemp("torchvision") / "alexnet.pth"
    torch.save(net.state_dict(), path)
    rgb = np.random.default_rng(4).uniform(0, 255, (2, 224, 224, 3))
    # torchvision's ToTensor + Normalize, written out: /255, (x - mean) / std, NCHW.
    x_nchw = ((rgb / 255.0 - TORCHVISION_MEAN) / TORCHVISION_STD).transpose(0, 3, 1, 2)
    with torch.no_grad():
        reference = net(torch.from_numpy(x_nchw.astype(np.float32))).numpy()
        # Flattening C, H, W features as H, W, C would give other logits (test sensitivity).
        w = net.classifier[1].weight.clone()
        net.classifier[1].weight.copy_(w.reshape(4096, 256, 6, 6).permute(0, 2, 3, 1).reshape(4096, -1))
        wrong_flatten = net(torch.from_numpy(x_nchw.astype(np.float32))).numpy()
        net.classifier[1].weight.copy_(w)
    return dict(torch=torch, net=net, path=path, rgb=rgb, x_nchw=x_nchw, reference=reference,
                wrong_flatten=wrong_flatten)


def test_torchvision_pth_logits_match_torch(torch_case):
    model, info = weights.load_torchvision(torch_case["path"])
    convention = info.convention
    x = convention.normalize(torch_case["rgb"])
    np.testing.assert_allclose(x, torch_case["x_nchw"].transpose(0, 2, 3, 1), atol=1e-5)
    logits = model(x, training=False).numpy()
    assert_logits_close(logits, torch_case["reference"])
    assert_logits_differ(logits, torch_case["wrong_flatten"])
    assert info.source == "torchvision:alexnet"
    assert (convention.channel_order, convention.image_size, convention.resize_size) == ("RGB", 224, 256)
    np.testing.assert_allclose(convention.mean_rgb, 255 * TORCHVISION_MEAN)
    np.testing.assert_allclose(convention.std_rgb, 255 * TORCHVISION_STD)
    # The same state_dict in memory, as tensors, converts to the same weights.
    from_tensors, _ = weights.convert_torchvision_weights(torch_case["net"].state_dict())
    for name in weights.TORCHVISION_KEYS:
        kernel, bias = model.get_layer(name).get_weights()
        np.testing.assert_array_equal(kernel, from_tensors[name][0])
        np.testing.assert_array_equal(bias, from_tensors[name][1])


def test_torchvision_without_torch_names_the_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    with pytest.raises(ImportError, match="pip install torch"):
        weights.load_torchvision(tmp_path / "alexnet.pth")


def fake_torchvision(num_classes=1000):
    shapes = {}
    for s in weights_common.keras_layer_shapes("one_tower", num_classes):
        prefix = weights.TORCHVISION_KEYS[s.name]
        k = s.kernel
        shapes[f"{prefix}.weight"] = (k[3], k[2], k[0], k[1]) if len(k) == 4 else (k[1], k[0])
        shapes[f"{prefix}.bias"] = s.bias
    return {key: np.empty(shape, np.float32) for key, shape in shapes.items()}


def test_torchvision_bad_state_dicts_are_named():
    good = fake_torchvision()
    assert good["classifier.1.weight"].shape == (4096, 9216)
    weights.convert_torchvision_weights(good)  # no error

    bad = dict(good)
    bad["features.0.weight"] = np.empty((96, 3, 11, 11), np.float32)  # Caffe's conv1 width
    del bad["classifier.4.bias"]
    bad["fc.weight"] = np.empty((3, 3), np.float32)
    with pytest.raises(ValueError) as error:
        weights.convert_torchvision_weights(bad)
    message = str(error.value)
    assert "features.0.weight (conv1): expected shape (64, 3, 11, 11), found (96, 3, 11, 11)" in message
    assert "classifier.4.bias (fc7): missing; expected shape (4096,)" in message
    assert "unknown keys ['fc.weight']" in message

    with pytest.raises(ValueError, match=r"classifier.6.weight \(fc8\): expected shape \(10, 4096\), "
                                         r"found \(1000, 4096\)"):
        weights.convert_torchvision_weights(good, num_classes=10)
    with pytest.raises(ValueError, match="load_caffe_npy"):
        weights.load_torchvision(fake_caffe())


# ------------------------------------------------------------------ conventions, saving, tool

@pytest.mark.parametrize("make", [weights.caffe_weights_info, weights.torchvision_weights_info])
def test_convention_config_overrides_validate(make):
    info = make(num_classes=10)
    convention = info.convention
    overrides = info.to_config_overrides()
    assert {"data.channel_order", "data.mean_rgb", "data.std_rgb", "model.image_size",
            "model.variant", "model.lrn_bias", "model.lrn_alpha",
            "model.num_classes"} <= set(overrides)
    config = config_module.base_config()
    config.update_from_flattened_dict(overrides)
    config_module.validate(config)
    assert config.model.variant == info.variant and config.model.num_classes == 10
    assert tuple(config.data.mean_rgb) == convention.mean_rgb
    assert config.data.channel_order == convention.channel_order
    assert InputConvention.from_dict(json.loads(json.dumps(convention.to_dict()))) == convention
    assert InputConvention.from_config(config) == convention


def test_save_converted_round_trip_and_no_overwrite(tmp_path):
    model = models.create_model("paper", num_classes=3, image_size=67, width=0.25)
    caffe = weights.caffe_weights_info(num_classes=3)
    # An info must describe its model: Caffe's 227-pixel crop does not fit a 67-pixel one.
    with pytest.raises(ConventionError, match="says 227 pixels and 3 classes; the model "
                                              "takes 67 pixels and has 3 outputs"):
        weights.save_converted(model, caffe, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    convention = dataclasses.replace(
        caffe, convention=caffe.convention.replace(image_size=67, resize_size=76))
    model_path, convention_path = weights.save_converted(model, convention, tmp_path / "out")
    assert os.path.basename(model_path) == "model.keras"
    with open(convention_path) as f:
        assert json.load(f)["channel_order"] == "BGR"
    with pytest.raises(FileExistsError, match="overwrite=True"):
        weights.save_converted(model, convention, tmp_path / "out")
    # The paper variant's own layers (GroupedConv2D, LRN) come back from the .keras file.
    loaded, loaded_convention = weights.load_converted(tmp_path / "out")
    assert loaded_convention == convention
    x = np.random.default_rng(5).standard_normal((1, 67, 67, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x, training=False).numpy(), model(x, training=False).numpy())


def test_convert_weights_tool_round_trip(torch_case, tmp_path):
    # tools/convert_weights.py writes model.keras + input_convention.json; read back, the
    # model still gives torch's logits.
    output = tmp_path / "converted"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, "tools", "convert_weights.py"),
         "--source=torchvision", f"--input={torch_case['path']}", f"--output={output}"],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--config.model.variant=one_tower" in result.stdout
    model, info = weights.load_converted(output)
    assert info == weights.torchvision_weights_info()
    logits = model(info.convention.normalize(torch_case["rgb"]), training=False).numpy()
    assert_logits_close(logits, torch_case["reference"])


def test_converted_directories_with_bad_or_missing_parts_are_named(tmp_path):
    model = models.create_model("paper", num_classes=3, image_size=67, width=0.25)
    caffe = weights.caffe_weights_info(num_classes=3)
    info = dataclasses.replace(
        caffe, convention=caffe.convention.replace(image_size=67, resize_size=76))
    weights.save_converted(model, info, tmp_path / "ok")

    def broken(name, edit):
        directory = tmp_path / name
        shutil.copytree(tmp_path / "ok", directory)
        edit(directory)
        return directory

    cases = {
        "no_info_model": (lambda d: (d / "model.keras").unlink(), r"model.keras' is missing"),
        "junk_model": (lambda d: (d / "model.keras").write_bytes(b"junk"),
                       "is not a Keras model file"),
        "junk_info": (lambda d: (d / "weights_info.json").write_text("{"), "is not JSON"),
        "list_info": (lambda d: (d / "weights_info.json").write_text("[]"),
                      "must hold a JSON object, got list"),
        "unknown_field": (lambda d: (d / "weights_info.json").write_text(json.dumps(
            dict(info.to_dict(), colour="red"))), r"unknown fields \['colour'\]"),
        "bad_variant": (lambda d: (d / "weights_info.json").write_text(json.dumps(
            dict(info.to_dict(), variant="bogus"))), "variant must be one of"),
        "wrong_classes": (lambda d: (d / "weights_info.json").write_text(json.dumps(
            dict(info.to_dict(), num_classes=5))), "5 classes; the model takes 67 pixels and "
                                                    "has 3 outputs"),
        "no_convention": (lambda d: (d / "input_convention.json").unlink(),
                          "No such file|is missing"),
    }
    for name, (edit, message) in cases.items():
        with pytest.raises((ConventionError, FileNotFoundError), match=message):
            weights.load_converted(broken(name, edit))
