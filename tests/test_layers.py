"""Tests of alexnet_tf.layers: LocalResponseNormalization and GroupedConv2D.

Every reference is written here independently of the layer: the paper's LRN formula
as explicit loops in NumPy (float64), and a grouped convolution as ``groups``
independent ``tf.nn.conv2d`` calls on explicit channel slices of the input and kernel.

Tolerances. Float32 results are compared with
``max|actual - expected| <= 1e-5 * max(1, max|expected|)``. The paths sum the same
products in different orders (oneDNN's blocked kernels, Eigen's, XLA's); with fan-ins
of at most 60 products per output and at most 2*13*11 = 286 terms per kernel-gradient
entry, float32 (eps 1.2e-7) reordering gives relative errors of ~1e-6 at most, while a
wrong channel slice, kernel layout, stride or padding gives errors of order 1. So 1e-5
leaves room for reordering and none for a real mistake. (Measured on the 72 path x mode
x geometry cases here, TF 2.21 with oneDNN, AVX-512: worst 6.3e-7, for d/dkernel.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import layers as layers_module
from alexnet_tf.layers import (
    GROUPED_CONV_IMPLEMENTATIONS,
    GroupedConv2D,
    LocalResponseNormalization,
    resolve_grouped_conv_implementation,
)

TOL = 1e-5
PATHS = ("split", "native", "auto")


def assert_close(actual, expected, tol=TOL, what=""):
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    assert np.all(np.isfinite(actual)), what
    err = np.max(np.abs(actual - expected)) if expected.size else 0.0
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    assert err <= tol * scale, f"{what}: max abs error {err:.3g} > {tol} * {scale:.3g}"


# --------------------------------------------------------------------------------------
# LocalResponseNormalization
# --------------------------------------------------------------------------------------

def lrn_paper(a, n=5, k=2.0, alpha=1e-4, beta=0.75):
    """Sec. 3.3, transcribed: b_i = a_i / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1,
    i+n/2)} a_j^2)^beta, with loops over the channels i and the clipped window j."""
    a = np.asarray(a, np.float64)
    num_channels = a.shape[-1]
    b = np.empty_like(a)
    for i in range(num_channels):
        lo = max(0, i - n // 2)
        hi = min(num_channels - 1, i + n // 2)
        squares = np.zeros(a.shape[:-1])
        for j in range(lo, hi + 1):
            squares += a[..., j] ** 2
        b[..., i] = a[..., i] / (k + alpha * squares) ** beta
    return b


def lrn_input(channels, seed, low=10.0, high=100.0, shape=(2, 3, 4)):
    """Values of magnitude low..high with random signs: alpha * sum a_j^2 is then
    comparable to k, so the normalization changes the values a lot."""
    rng = np.random.default_rng(seed)
    mag = rng.uniform(low, high, size=shape + (channels,))
    return (mag * rng.choice([-1.0, 1.0], size=mag.shape)).astype(np.float32)


LRN_CONSTANTS = {
    "paper": dict(),  # the layer's defaults must be the paper's: n=5, k=2, 1e-4, 0.75
    "caffe_style": dict(depth_size=3, bias=1.0, alpha=1e-3 / 3, beta=0.5),
    "wide": dict(depth_size=7, bias=0.5, alpha=3e-5, beta=1.0),
    "self_only": dict(depth_size=1, bias=1.0, alpha=1e-3, beta=0.75),
}
PAPER_DEFAULTS = dict(n=5, k=2.0, alpha=1e-4, beta=0.75)


def _paper_kwargs(layer_kwargs):
    kw = dict(PAPER_DEFAULTS)
    renames = dict(depth_size="n", bias="k", alpha="alpha", beta="beta")
    kw.update({renames[key]: value for key, value in layer_kwargs.items()})
    return kw


@pytest.mark.parametrize("channels", [7, 96])
@pytest.mark.parametrize("constants", list(LRN_CONSTANTS), ids=list(LRN_CONSTANTS))
def test_lrn_matches_paper_formula(constants, channels):
    layer_kwargs = LRN_CONSTANTS[constants]
    x = lrn_input(channels, seed=channels)
    expected = lrn_paper(x, **_paper_kwargs(layer_kwargs))

    layer = LocalResponseNormalization(**layer_kwargs)
    actual = layer(x).numpy()
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=2e-5, atol=0)
    # Inside a graph too.
    np.testing.assert_allclose(tf.function(layer)(tf.constant(x)).numpy(), expected,
                               rtol=2e-5, atol=0)

    # The inputs are in a regime where the normalization matters: the denominator
    # differs from k**beta (its value for small inputs) by far more than the tolerance.
    kw = _paper_kwargs(layer_kwargs)
    unnormalized = x / kw["k"] ** kw["beta"]
    assert np.max(np.abs(actual / unnormalized - 1.0)) > 0.3
    # ...and the window is really clipped/centred: the edge channels differ from what a
    # window wrapped around the channel axis would give (when the window is wider than 1).
    if kw["n"] > 1:
        wrapped = np.concatenate([x[..., -(kw["n"] // 2):], x, x[..., :kw["n"] // 2]], -1)
        wrapped_b = lrn_paper(wrapped, **kw)[..., kw["n"] // 2: kw["n"] // 2 + channels]
        assert np.max(np.abs(wrapped_b[..., 0] - expected[..., 0])) > 1e-2 * np.max(
            np.abs(expected[..., 0]))


def test_lrn_defaults_are_the_papers():
    layer = LocalResponseNormalization()
    assert (layer.depth_size, layer.bias, layer.alpha, layer.beta) == (5, 2.0, 1e-4, 0.75)


@pytest.mark.parametrize("policy", ["mixed_float16", "float16", "mixed_bfloat16"])
def test_lrn_low_precision_computes_in_float32(policy):
    # Values 100..200: sums of five squares reach 2e5, beyond float16's max (65504),
    # so only a float32 computation of the sum gives finite, correct results.
    x = lrn_input(96, seed=3, low=100.0, high=200.0)
    layer = LocalResponseNormalization(dtype=policy)
    y = layer(x)
    compute_dtype = keras.DTypePolicy(policy).compute_dtype
    assert y.dtype == tf.as_dtype(compute_dtype)
    x_rounded = tf.cast(tf.cast(x, compute_dtype), tf.float32).numpy()
    expected = lrn_paper(x_rounded)
    # One rounding of the float32 result to the low-precision output: half an ulp,
    # 2**-11 relative for float16, 2**-8 for bfloat16.
    rtol = 2.0 ** -10 if compute_dtype == "float16" else 2.0 ** -7
    np.testing.assert_allclose(tf.cast(y, tf.float32).numpy(), expected, rtol=rtol, atol=0)
    # The same formula evaluated in float16 overflows: the float32 cast is needed.
    if compute_dtype == "float16":
        naive = tf.nn.local_response_normalization(
            tf.cast(x, tf.float16), depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75)
        assert not np.allclose(tf.cast(naive, tf.float32).numpy(), expected, rtol=1e-2)


@pytest.mark.parametrize("bad", [0, 2, 4, -1, -3, 2.5, "5", None])
def test_lrn_bad_depth_size_raises(bad):
    with pytest.raises(ValueError, match=f"depth_size.*got {bad!r}".replace(".5", r"\.5")):
        LocalResponseNormalization(depth_size=bad)


def test_lrn_config_round_trip():
    layer = LocalResponseNormalization(depth_size=3, bias=1.5, alpha=3e-4, beta=0.6,
                                       name="norm_x")
    config = layer.get_config()
    assert {k: config[k] for k in ("depth_size", "bias", "alpha", "beta")} == dict(
        depth_size=3, bias=1.5, alpha=3e-4, beta=0.6)
    clone = LocalResponseNormalization.from_config(config)
    assert (clone.depth_size, clone.bias, clone.alpha, clone.beta, clone.name) == (
        3, 1.5, 3e-4, 0.6, "norm_x")
    assert clone.get_config() == config
    # Through Keras' registry and JSON, as a .keras file stores it.
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is LocalResponseNormalization
    assert revived.get_config() == config
    x = lrn_input(7, seed=1)
    np.testing.assert_array_equal(revived(x).numpy(), layer(x).numpy())


# --------------------------------------------------------------------------------------
# GroupedConv2D: references and helpers
# --------------------------------------------------------------------------------------

IN_CHANNELS, FILTERS, KERNEL = 8, 12, (3, 5)  # non-square kernel catches kh/kw mix-ups
INPUT_SHAPE = (2, 13, 11, IN_CHANNELS)        # non-square input too


def reference_grouped_conv(x, kernel, bias, groups, strides, padding, activation,
                           dilation=1):
    """``groups`` independent convolutions: input channels [g*C/G, (g+1)*C/G) with
    kernel output columns [g*F/G, (g+1)*F/G), then concatenated, plus bias."""
    cin = x.shape[-1] // groups
    fout = kernel.shape[-1] // groups
    assert kernel.shape[2] == cin
    outputs = []
    for g in range(groups):
        x_g = x[..., g * cin:(g + 1) * cin]
        k_g = kernel[..., g * fout:(g + 1) * fout]
        y_g = tf.nn.conv2d(x_g, k_g, strides=strides, padding=padding.upper(),
                           dilations=dilation)
        outputs.append(y_g + bias[g * fout:(g + 1) * fout])
    return keras.activations.get(activation)(tf.concat(outputs, axis=-1))


def block_diagonal_kernel(kernel, groups):
    """The dense (kh, kw, C, F) kernel equivalent to a grouped one: zero outside the
    diagonal blocks."""
    kernel = np.asarray(kernel)
    kh, kw, cin, filters = kernel.shape
    fout = filters // groups
    dense = np.zeros((kh, kw, cin * groups, filters), kernel.dtype)
    for g in range(groups):
        dense[:, :, g * cin:(g + 1) * cin, g * fout:(g + 1) * fout] = \
            kernel[:, :, :, g * fout:(g + 1) * fout]
    return dense


def random_weights(layer, seed):
    rng = np.random.default_rng(seed)
    kernel = rng.normal(0, 1 / np.sqrt(np.prod(layer.kernel.shape[:3])),
                        layer.kernel.shape).astype(np.float32)
    bias = rng.normal(0, 0.5, layer.bias.shape).astype(np.float32)
    layer.set_weights([kernel, bias])
    return kernel, bias


def forward_backward(fn, x, sources, out_weights):
    """Output and d(sum(y * out_weights))/d(x, *sources)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        for s in sources:
            if isinstance(s, tf.Tensor):  # variables are watched already
                tape.watch(s)
        y = fn(x)
        loss = tf.reduce_sum(y * out_weights)
    return y, tape.gradient(loss, [x] + list(sources))


class ConvolutionSpy:
    """Counts calls to tf.nn.convolution (which the layer's paths use and the test
    references do not): `groups` per call for "split", 1 for "native"."""

    def __init__(self, monkeypatch):
        self.calls = 0
        original = tf.nn.convolution

        def spy(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(tf.nn, "convolution", spy)


def cpu_auto_path(dtype="float32", xla=False):
    """The design "auto" follows on CPU: oneDNN's grouped kernel for float32 when XLA is
    not compiling the step; otherwise the split."""
    native = layers_module.onednn_enabled() and dtype == "float32" and not xla
    return "native" if native else "split"


def expected_calls(path, groups, xla=False):
    resolved = resolve_grouped_conv_implementation(path)  # no tensor: GPU visible?
    if path == "auto" and not tf.config.list_logical_devices("GPU"):
        assert resolved == cpu_auto_path()
        resolved = cpu_auto_path(xla=xla)
    return groups if resolved == "split" else 1


@pytest.fixture
def onednn_off(monkeypatch):
    """CPU "auto" then means "split", which tells it apart from a GPU's "native"."""
    monkeypatch.setattr(layers_module, "onednn_enabled", lambda: False)


GEOMETRIES = [
    dict(strides=s, padding=p, groups=g)
    for s in (1, 4) for p in ("same", "valid") for g in (2, 4)
]
GEOMETRY_IDS = [f"s{d['strides']}-{d['padding']}-g{d['groups']}" for d in GEOMETRIES]


# Without oneDNN (TF leaves it off on some CPU kinds: `layers.onednn_enabled`), TF's CPU
# kernels run no grouped convolution and no gradient of a dilated one.
NO_ONEDNN = not layers_module.onednn_enabled()
NO_ONEDNN_REASON = ("TF's oneDNN kernels are off in this process (TF's default on this CPU "
                    "kind, or TF_ENABLE_ONEDNN_OPTS=0): no CPU kernel for this convolution")


def _check_against_reference(path, mode, strides, padding, groups, monkeypatch,
                             activation="tanh", dilation=1):
    if NO_ONEDNN and ((path == "native" and mode != "jit") or dilation > 1):
        pytest.skip(NO_ONEDNN_REASON)
    # tanh: a smooth activation, so gradients are compared without ReLU's kink at 0
    # (where a 1e-7 difference in a pre-activation could flip a gradient entry).
    layer = GroupedConv2D(FILTERS, KERNEL, groups=groups, implementation=path,
                          strides=strides, padding=padding, dilation_rate=dilation,
                          activation=activation)
    layer.build(INPUT_SHAPE)
    kernel, bias = random_weights(layer, seed=groups * 10 + strides)
    rng = np.random.default_rng(7)
    x = tf.constant(rng.normal(size=INPUT_SHAPE).astype(np.float32))
    out_shape = layer.compute_output_shape(INPUT_SHAPE)
    out_weights = tf.constant(rng.normal(size=out_shape).astype(np.float32))

    k_ref, b_ref = tf.constant(kernel), tf.constant(bias)
    y_ref, grads_ref = forward_backward(
        lambda t: reference_grouped_conv(t, k_ref, b_ref, groups, strides, padding,
                                         activation, dilation),
        x, [k_ref, b_ref], out_weights)

    spy = ConvolutionSpy(monkeypatch)

    def step(x_in):
        return forward_backward(layer, x_in, [layer.kernel, layer.bias], out_weights)

    if mode == "function":
        step = tf.function(step)
    elif mode == "jit":
        step = tf.function(step, jit_compile=True)
    y, grads = step(x)

    assert spy.calls == expected_calls(path, groups, xla=mode == "jit"), \
        "the layer took the wrong path"
    assert tuple(y.shape) == tuple(out_shape) == tuple(y_ref.shape)
    assert_close(y, y_ref, what="output")
    for name, g, g_ref in zip(("d/dx", "d/dkernel", "d/dbias"), grads, grads_ref):
        assert g is not None, name
        assert_close(g, g_ref, what=name)
    # The check is not vacuous: outputs and gradients are far from zero.
    assert np.max(np.abs(y_ref)) > 0.1 and np.max(np.abs(grads_ref[1])) > 0.1


# --------------------------------------------------------------------------------------
# GroupedConv2D: equivalence with the reference, every path
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("geometry", GEOMETRIES, ids=GEOMETRY_IDS)
@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("path", PATHS)
def test_grouped_conv_matches_independent_convolutions(path, mode, geometry, monkeypatch):
    _check_against_reference(path, mode, monkeypatch=monkeypatch, **geometry)


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=GEOMETRY_IDS)
def test_grouped_conv_split_under_xla(geometry, monkeypatch):
    _check_against_reference("split", "jit", monkeypatch=monkeypatch, **geometry)


@pytest.mark.parametrize("path", ["native", "auto"])
@pytest.mark.parametrize("geometry", [GEOMETRIES[0], GEOMETRIES[-1]],
                         ids=[GEOMETRY_IDS[0], GEOMETRY_IDS[-1]])
def test_grouped_conv_other_paths_under_xla(path, geometry, monkeypatch):
    _check_against_reference(path, "jit", monkeypatch=monkeypatch, **geometry)


@pytest.mark.parametrize("path", PATHS)
def test_grouped_conv_dilation_and_relu(path, monkeypatch):
    _check_against_reference(path, "function", strides=1, padding="same", groups=2,
                             dilation=2, activation="relu", monkeypatch=monkeypatch)


@pytest.mark.parametrize("groups", [2, 4])
def test_reference_agrees_with_dense_and_keras_grouped_conv(groups):
    """Ties the test's reference (and so the layer) to two independent definitions of
    grouping: one dense convolution with a block-diagonal kernel, and Keras' own
    Conv2D(groups=...) given the same kernel."""
    layer = GroupedConv2D(FILTERS, KERNEL, groups=groups, implementation="split",
                          padding="same")
    layer.build(INPUT_SHAPE)
    kernel, bias = random_weights(layer, seed=groups)
    x = tf.constant(np.random.default_rng(0).normal(size=INPUT_SHAPE).astype(np.float32))

    ref = reference_grouped_conv(x, kernel, bias, groups, 1, "same", None)
    dense = tf.nn.conv2d(x, block_diagonal_kernel(kernel, groups), 1, "SAME") + bias
    keras_conv = keras.layers.Conv2D(FILTERS, KERNEL, groups=groups, padding="same")
    keras_conv.build(INPUT_SHAPE)
    keras_conv.set_weights([kernel, bias])

    assert_close(dense, ref, what="block-diagonal dense conv")
    assert_close(keras_conv(x), ref, what="keras Conv2D(groups)")
    assert_close(layer(x), ref, what="GroupedConv2D")
    # Group g's outputs depend on group g's inputs only.
    x_other = x.numpy().copy()
    x_other[..., IN_CHANNELS // groups:] += 1.0   # perturb every group but the first
    y, y_other = layer(x).numpy(), layer(x_other).numpy()
    np.testing.assert_array_equal(y[..., :FILTERS // groups], y_other[..., :FILTERS // groups])
    assert np.max(np.abs(y[..., FILTERS // groups:] - y_other[..., FILTERS // groups:])) > 0.1


@pytest.mark.skipif(NO_ONEDNN, reason=NO_ONEDNN_REASON)
def test_auto_follows_a_visible_gpu_inside_tf_function(monkeypatch, onednn_off):
    """In a traced function the input has no device; "auto" then asks for GPUs. With one
    (faked) visible, the layer builds one grouped convolution (and it still runs here,
    on the CPU, giving the reference's output); an eager CPU tensor still selects split."""
    original = tf.config.list_logical_devices

    def fake_list(device_type=None):
        if device_type == "GPU":
            return [tf.config.LogicalDevice("/device:GPU:0", "GPU")]
        return original(device_type)

    layer = GroupedConv2D(FILTERS, KERNEL, groups=2, implementation="auto", padding="same")
    layer.build(INPUT_SHAPE)
    kernel, bias = random_weights(layer, seed=5)
    x = tf.constant(np.random.default_rng(1).normal(size=INPUT_SHAPE).astype(np.float32))
    ref = reference_grouped_conv(x, kernel, bias, 2, 1, "same", None)

    monkeypatch.setattr(tf.config, "list_logical_devices", fake_list)
    spy = ConvolutionSpy(monkeypatch)
    y = tf.function(layer)(x)
    assert spy.calls == 1  # native
    assert_close(y, ref)

    spy.calls = 0
    assert "CPU" in x.device
    assert_close(layer(x), ref)
    assert spy.calls == 2  # the eager tensor's own device (CPU) wins: split


@pytest.mark.parametrize("device, expected_calls_", [("/GPU:0", 1), ("/CPU:0", 2)])
def test_auto_follows_device_scope_inside_tf_function(device, expected_calls_, monkeypatch,
                                                     onednn_off):
    """Ops built under tf.device (as tf.distribute replicas are) carry their device,
    and "auto" follows it. Only traced: no GPU exists here."""
    layer = GroupedConv2D(FILTERS, KERNEL, groups=2, implementation="auto")
    layer.build(INPUT_SHAPE)
    spy = ConvolutionSpy(monkeypatch)

    @tf.function
    def fn(x):
        with tf.device(device):
            return layer(tf.identity(x))

    graph = fn.get_concrete_function(tf.TensorSpec(INPUT_SHAPE)).graph
    assert spy.calls == expected_calls_
    convs = [op for op in graph.get_operations() if op.type == "Conv2D"]
    assert len(convs) == expected_calls_
    assert all(device.strip("/").split(":")[0] in op.device for op in convs)


# --------------------------------------------------------------------------------------
# Kernel layout and weights across implementations
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("groups", [2, 4])
@pytest.mark.parametrize("path", PATHS)
def test_kernel_shape_is_grouped_layout(path, groups):
    layer = GroupedConv2D(FILTERS, KERNEL, groups=groups, implementation=path)
    y = layer(tf.zeros(INPUT_SHAPE))
    assert tuple(layer.kernel.shape) == (*KERNEL, IN_CHANNELS // groups, FILTERS)
    assert tuple(layer.bias.shape) == (FILTERS,)
    assert y.shape[-1] == FILTERS
    # Same through the functional API (symbolic build).
    inputs = keras.Input(INPUT_SHAPE[1:])
    functional = GroupedConv2D(FILTERS, KERNEL, groups=groups, implementation=path)
    keras.Model(inputs, functional(inputs))
    assert tuple(functional.kernel.shape) == (*KERNEL, IN_CHANNELS // groups, FILTERS)


def _one_layer_model(path, name="g"):
    inputs = keras.Input(INPUT_SHAPE[1:])
    outputs = GroupedConv2D(FILTERS, KERNEL, groups=2, implementation=path,
                            padding="same", activation="relu", name=name)(inputs)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("source", ["split", "native"])
def test_weights_transfer_between_implementations(source, tmp_path):
    x = np.random.default_rng(2).normal(size=INPUT_SHAPE).astype(np.float32)
    src = _one_layer_model(source)
    kernel, bias = random_weights(src.get_layer("g"), seed=11)
    expected = reference_grouped_conv(tf.constant(x), kernel, bias, 2, 1, "same", "relu")
    path = tmp_path / f"{source}.weights.h5"
    src.save_weights(path)
    for target in PATHS:
        dst = _one_layer_model(target)
        dst.load_weights(path)
        np.testing.assert_array_equal(dst.get_layer("g").kernel.numpy(), kernel)
        np.testing.assert_array_equal(dst.get_layer("g").bias.numpy(), bias)
        assert_close(dst(x), expected, what=f"{source} -> {target}")
        assert_close(dst(x), src(x), what=f"{source} -> {target} vs source")


# --------------------------------------------------------------------------------------
# resolve_grouped_conv_implementation
# --------------------------------------------------------------------------------------

class _FakeTensor:
    def __init__(self, device):
        self.device = device


GPU_DEVICE = "/job:localhost/replica:0/task:0/device:GPU:0"
CPU_DEVICE = "/job:localhost/replica:0/task:0/device:CPU:0"


@pytest.mark.parametrize("name", ["split", "native"])
@pytest.mark.parametrize("tensor", [None, _FakeTensor(GPU_DEVICE), _FakeTensor(CPU_DEVICE)],
                         ids=["none", "gpu", "cpu"])
def test_resolve_explicit_names_pass_through(name, tensor):
    assert resolve_grouped_conv_implementation(name, tensor) == name


@pytest.mark.parametrize("onednn, expected", [(True, "native"), (False, "split")])
def test_resolve_auto_eager_cpu_tensor(onednn, expected, monkeypatch):
    monkeypatch.setattr(layers_module, "onednn_enabled", lambda: onednn)
    with tf.device("/CPU:0"):
        t = tf.zeros([1, 2, 2, 2])
    assert "CPU" in t.device
    assert resolve_grouped_conv_implementation("auto", t) == expected


@pytest.mark.parametrize("device", [
    GPU_DEVICE, "/device:GPU:1", "/gpu:0", "/job:worker/task:1/device:TPU:0"])
def test_resolve_auto_accelerator_device_strings(device, monkeypatch):
    # The tensor's device decides even when list_logical_devices says otherwise.
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda *a, **k: [])
    assert resolve_grouped_conv_implementation("auto", _FakeTensor(device)) == "native"


def test_resolve_auto_cpu_device_string_beats_visible_gpu(monkeypatch, onednn_off):
    monkeypatch.setattr(tf.config, "list_logical_devices",
                        lambda *a, **k: [tf.config.LogicalDevice("/device:GPU:0", "GPU")])
    assert resolve_grouped_conv_implementation("auto", _FakeTensor(CPU_DEVICE)) == "split"


def test_resolve_auto_graph_tensor_under_device_scope(onednn_off):
    graph = tf.Graph()
    with graph.as_default():
        with tf.device("/GPU:0"):
            on_gpu = tf.zeros([1, 4, 4, 4])
        with tf.device("/CPU:0"):
            on_cpu = tf.zeros([1, 4, 4, 4])
    assert "GPU" in on_gpu.device and "CPU" in on_cpu.device
    assert resolve_grouped_conv_implementation("auto", on_gpu) == "native"
    assert resolve_grouped_conv_implementation("auto", on_cpu) == "split"


@pytest.mark.parametrize("visible, expected", [(1, "native"), (0, "split")])
@pytest.mark.parametrize("tensor", [None, _FakeTensor(""), _FakeTensor(None),
                                    _FakeTensor("/job:worker/task:0"), object()],
                         ids=["none", "empty", "None", "no-type", "no-attr"])
def test_resolve_auto_without_device_asks_for_gpus(visible, expected, tensor, monkeypatch,
                                                   onednn_off):
    asked = []

    def fake_list(device_type=None):
        asked.append(device_type)
        return [tf.config.LogicalDevice("/device:GPU:0", "GPU")] * visible

    monkeypatch.setattr(tf.config, "list_logical_devices", fake_list)
    assert resolve_grouped_conv_implementation("auto", tensor) == expected
    assert asked == ["GPU"]


def test_resolve_auto_real_machine_has_no_gpu():
    assert tf.config.list_logical_devices("GPU") == []
    assert resolve_grouped_conv_implementation("auto") == cpu_auto_path()
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "").lower() in ("1", "true"):
        assert layers_module.onednn_enabled()  # asked for; TF's default varies by CPU


class _FakeCpuTensor:
    def __init__(self, dtype):
        self.device, self.dtype = CPU_DEVICE, tf.as_dtype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "no-onednn"])
def test_resolve_auto_on_cpu_follows_onednn_and_dtype(onednn, dtype, monkeypatch):
    monkeypatch.setattr(layers_module, "onednn_enabled", lambda: onednn)
    expected = "native" if onednn and dtype == "float32" else "split"
    assert resolve_grouped_conv_implementation("auto", _FakeCpuTensor(dtype)) == expected
    assert resolve_grouped_conv_implementation("auto", _FakeTensor(CPU_DEVICE), dtype) == expected
    # Without a tensor dtype: Keras' global policy's compute dtype.
    policy = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy[dtype])
    try:
        assert resolve_grouped_conv_implementation("auto", _FakeTensor(CPU_DEVICE)) == expected
    finally:
        keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "no-onednn"])
def test_resolve_auto_on_cpu_under_xla_is_split(onednn, monkeypatch):
    """XLA compiles its own convolutions (no oneDNN); its grouped one is the slow path."""
    monkeypatch.setattr(layers_module, "onednn_enabled", lambda: onednn)
    seen = {}

    def probe(name):
        def fn(x):
            seen[name] = resolve_grouped_conv_implementation("auto", x)
            return x
        return fn

    x = tf.zeros([1, 2, 2, 2])
    tf.function(probe("function"))(x)
    tf.function(probe("jit"), jit_compile=True)(x)
    inner = tf.function(probe("nested"))
    tf.function(lambda x: inner(x), jit_compile=True)(x)
    assert seen == {"function": "native" if onednn else "split", "jit": "split",
                    "nested": "split"}


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_auto_under_mixed_precision_trains_like_split(policy, monkeypatch):
    """Under mixed precision "auto" takes the split path on CPU; its outputs and gradients
    agree with an explicit split at the dtype's precision."""
    expected_path = cpu_auto_path(policy.split("_")[1])
    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=INPUT_SHAPE).astype(np.float32))
    results = {}
    for path in ("split", "auto"):
        layer = GroupedConv2D(FILTERS, KERNEL, groups=2, implementation=path, padding="same",
                              activation="tanh", dtype=policy)
        layer.build(INPUT_SHAPE)
        random_weights(layer, seed=4)
        spy = ConvolutionSpy(monkeypatch)
        with tf.GradientTape() as tape:
            y = layer(x)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) ** 2)
        grads = tape.gradient(loss, layer.trainable_variables)
        monkeypatch.undo()
        assert spy.calls == (1 if path == "auto" and expected_path == "native" else 2)
        results[path] = [y] + grads
    for name, a, b in zip(("y", "d/dkernel", "d/dbias"), results["auto"], results["split"]):
        assert a is not None and np.all(np.isfinite(np.asarray(a, np.float32))), name
        # bfloat16 keeps 8 bits of mantissa (float16 11): relative 2^-8 per rounding.
        assert_close(np.asarray(a, np.float32), np.asarray(b, np.float32), tol=0.05, what=name)


ONEDNN_SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import tensorflow as tf
    if sys.argv[1] == "set_after_import":
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"  # too late: TF decided when it loaded
    import keras
    from alexnet_tf import layers

    x = np.random.default_rng(0).normal(size=(4, 9, 7, 8)).astype("float32")
    y = np.random.default_rng(1).normal(size=(4, 9, 7, 6)).astype("float32")
    result = {"onednn": layers.onednn_enabled(),
              "auto": layers.resolve_grouped_conv_implementation("auto", tf.constant(x))}
    model = keras.Sequential([keras.Input((9, 7, 8)),
                              layers.GroupedConv2D(6, 3, groups=2, padding="same")])
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse")
    history = model.fit(x, y, epochs=3, batch_size=4, verbose=0).history["loss"]
    result["auto_trains"] = bool(np.isfinite(history).all() and history[-1] < history[0])
    native = layers.GroupedConv2D(6, 3, groups=2, padding="same", implementation="native")
    native.build(x.shape)
    try:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(native(x))
        tape.gradient(loss, native.trainable_variables)
        result["native_gradient"] = "ok"
    except tf.errors.InvalidArgumentError as error:
        result["native_gradient"] = error.message.splitlines()[0]
    print(json.dumps(result))
""")


@pytest.mark.parametrize("case", ["off", "set_after_import"])
def test_auto_without_onednn_takes_split_and_trains(case, tmp_path):
    """A process started with TF_ENABLE_ONEDNN_OPTS=0 has no grouped-gradient kernel on
    CPU: "auto" resolves to "split" there and trains. The variable counts only when TF
    loads: set afterwards it changes neither the kernels nor `onednn_enabled`."""
    script = tmp_path / "onednn.py"
    script.write_text(ONEDNN_SCRIPT)
    # On at load ("1": TF's default is off on some CPU kinds), then "0" too late; or off.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow",
               TF_ENABLE_ONEDNN_OPTS="0" if case == "off" else "1")
    proc = subprocess.run([sys.executable, str(script), case], capture_output=True, text=True,
                          timeout=300, env=env, cwd=layers_module.__file__.rsplit("/", 2)[0])
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["auto_trains"], result
    if case == "off":
        assert result["onednn"] is False and result["auto"] == "split", result
        assert "grouped convolutions are not supported" in result["native_gradient"], result
    else:
        assert result["onednn"] is True and result["auto"] == "native", result
        assert result["native_gradient"] == "ok", result


@pytest.mark.parametrize("name", ["cudnn", "Split", "", None])
def test_resolve_unknown_name_raises(name):
    with pytest.raises(ValueError, match=f"Unknown grouped convolution implementation {name!r}"):
        resolve_grouped_conv_implementation(name)


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, os
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

    import keras
    from alexnet_tf.layers import GroupedConv2D, resolve_grouped_conv_implementation

    # Constructing a layer must not initialise the runtime (the configuration above
    # would then be refused), so build one before listing devices.
    GroupedConv2D(4, 3, groups=2)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices)

    def make():
        return GroupedConv2D(8, (3, 5), groups=2, implementation="auto", padding="same",
                             activation="tanh")

    with strategy.scope():
        layer = make()
        layer.build((None, 9, 7, 6))
    rng = np.random.default_rng(0)
    weights = [rng.normal(0, 0.3, w.shape).astype("float32") for w in layer.get_weights()]
    layer.set_weights(weights)
    x = rng.normal(size=(4, 9, 7, 6)).astype("float32")
    out_w = rng.normal(size=(4, 9, 7, 8)).astype("float32")

    single = make()
    single.build((None, 9, 7, 6))
    single.set_weights(weights)
    with tf.GradientTape() as tape:
        y_single = single(x)
        loss = tf.reduce_sum(y_single * out_w)
    g_single = tape.gradient(loss, single.trainable_variables)

    seen = []
    dataset = tf.data.Dataset.from_tensor_slices((x, out_w)).batch(4)
    dist = strategy.experimental_distribute_dataset(dataset)

    @tf.function
    def step(batch):
        def replica_fn(xb, wb):
            xb = tf.identity(xb)
            seen.append((xb.device, resolve_grouped_conv_implementation("auto", xb)))
            with tf.GradientTape() as tape:
                y = layer(xb)
                loss = tf.reduce_sum(y * wb)
            return y, tape.gradient(loss, layer.trainable_variables)
        y, grads = strategy.run(replica_fn, args=batch)
        return y, [strategy.reduce("SUM", g, axis=None) for g in grads]

    batch = next(iter(dist))
    y, grads = step(batch)
    local = strategy.experimental_local_results(y)
    graph = step.get_concrete_function(batch).graph
    convs = [op.device for op in graph.get_operations() if op.type == "Conv2D"]
    print(json.dumps(dict(
        conv_devices=convs,
        devices=devices,
        replicas=strategy.num_replicas_in_sync,
        seen=seen,
        local_rows=[int(t.shape[0]) for t in local],
        max_err=float(np.max(np.abs(tf.concat(local, 0).numpy() - y_single.numpy()))),
        max_out=float(np.max(np.abs(y_single.numpy()))),
        grad_err=[float(np.max(np.abs(a.numpy() - b.numpy()))) for a, b in zip(grads, g_single)],
        grad_max=[float(np.max(np.abs(b.numpy()))) for b in g_single],
    )))
""")


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    """Two logical CPUs must be configured before TF initialises its devices, so this
    runs in a fresh interpreter. Each replica's input is placed on its own CPU and
    resolves "auto" as one CPU does ("native" with oneDNN); outputs and all-reduced
    gradients equal a single-device run over the whole batch."""
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])

    assert len(result["devices"]) == 2 and result["replicas"] == 2
    assert len(result["seen"]) == 2
    seen_devices = sorted(device for device, _ in result["seen"])
    assert seen_devices[0].endswith("CPU:0") and seen_devices[1].endswith("CPU:1")
    path = cpu_auto_path()  # the child process has this one's oneDNN setting
    assert [p for _, p in result["seen"]] == [path, path]
    assert result["local_rows"] == [2, 2]
    # The traced step really runs that path on each replica: one or two Conv2D ops each.
    per_replica = 2 if path == "split" else 1
    assert sorted(d[-5:] for d in result["conv_devices"]) == (
        ["CPU:0"] * per_replica + ["CPU:1"] * per_replica)
    assert result["max_err"] <= TOL * max(1.0, result["max_out"])
    for err, scale in zip(result["grad_err"], result["grad_max"]):
        assert err <= TOL * max(1.0, scale)


# --------------------------------------------------------------------------------------
# Serialization
# --------------------------------------------------------------------------------------

def _full_conv_kwargs():
    return dict(
        filters=12, kernel_size=(3, 5), strides=(2, 1), padding="same",
        dilation_rate=(1, 1), groups=4, implementation="native", activation="relu",
        use_bias=True, kernel_initializer=keras.initializers.HeNormal(seed=3),
        bias_initializer=keras.initializers.Constant(1.0),
        kernel_regularizer=keras.regularizers.L2(1e-4),
        bias_regularizer=keras.regularizers.L1(1e-5),
        activity_regularizer=keras.regularizers.L2(1e-6),
        kernel_constraint=keras.constraints.MaxNorm(2.0),
        bias_constraint=keras.constraints.NonNeg(), name="conv4", trainable=False)


def test_grouped_conv_config_round_trip():
    layer = GroupedConv2D(**_full_conv_kwargs())
    config = layer.get_config()
    assert config["groups"] == 4 and config["implementation"] == "native"
    assert config["kernel_size"] == (3, 5) and config["strides"] == (2, 1)
    assert config["padding"] == "same" and config["data_format"] == "channels_last"
    assert config["activation"] == "relu" and config["trainable"] is False

    clone = GroupedConv2D.from_config(config)
    assert clone.get_config() == config
    assert (clone.groups, clone.implementation, clone.filters, clone.kernel_size,
            clone.strides, clone.padding, clone.name, clone.trainable) == (
        4, "native", 12, (3, 5), (2, 1), "same", "conv4", False)
    assert isinstance(clone.kernel_initializer, keras.initializers.HeNormal)
    assert clone.kernel_initializer.seed == 3
    assert isinstance(clone.kernel_constraint, keras.constraints.MaxNorm)
    assert float(clone.kernel_regularizer.l2) == pytest.approx(1e-4)
    assert float(clone.bias_regularizer.l1) == pytest.approx(1e-5)
    assert float(clone.activity_regularizer.l2) == pytest.approx(1e-6)

    # Through the registry (registered name) and JSON.
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(layer)))
    assert serialized["registered_name"] == "alexnet_tf>GroupedConv2D"
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is GroupedConv2D and revived.get_config() == config

    # Every implementation name round-trips.
    for name in GROUPED_CONV_IMPLEMENTATIONS:
        cfg = GroupedConv2D(8, 3, groups=2, implementation=name).get_config()
        assert GroupedConv2D.from_config(cfg).implementation == name


def test_model_with_both_layers_round_trips_through_keras_file(tmp_path):
    inputs = keras.Input((15, 13, 8))
    x = GroupedConv2D(12, (3, 5), groups=2, implementation="split", padding="same",
                      activation="relu", name="conv2")(inputs)
    x = LocalResponseNormalization(depth_size=3, bias=1.0, alpha=1e-3, beta=0.6,
                                   name="norm2")(x)
    x = GroupedConv2D(8, 3, strides=2, groups=4, implementation="native",
                      activation="relu", name="conv4")(x)
    x = LocalResponseNormalization(name="norm4")(x)
    outputs = GroupedConv2D(4, 1, groups=2, implementation="auto", name="conv5")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(4)
    for layer in model.layers:
        if isinstance(layer, GroupedConv2D):
            random_weights(layer, seed=len(layer.name))
    # Magnitudes where LRN matters.
    x_in = (30 * rng.normal(size=(2, 15, 13, 8))).astype(np.float32)

    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)

    np.testing.assert_array_equal(loaded(x_in).numpy(), model(x_in).numpy())
    assert np.max(np.abs(model(x_in).numpy())) > 0.1
    for name, groups, implementation in [("conv2", 2, "split"), ("conv4", 4, "native"),
                                         ("conv5", 2, "auto")]:
        layer = loaded.get_layer(name)
        assert type(layer) is GroupedConv2D
        assert (layer.groups, layer.implementation) == (groups, implementation)
        np.testing.assert_array_equal(layer.kernel.numpy(), model.get_layer(name).kernel.numpy())
    norm2, norm4 = loaded.get_layer("norm2"), loaded.get_layer("norm4")
    assert type(norm2) is LocalResponseNormalization
    assert (norm2.depth_size, norm2.bias, norm2.alpha, norm2.beta) == (3, 1.0, 1e-3, 0.6)
    assert (norm4.depth_size, norm4.bias, norm4.alpha, norm4.beta) == (5, 2.0, 1e-4, 0.75)


# --------------------------------------------------------------------------------------
# Bad arguments and inputs
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("channels, groups", [(6, 4), (9, 2), (10, 4)])
def test_channels_not_divisible_by_groups(channels, groups):
    layer = GroupedConv2D(8, 3, groups=groups, name="conv_bad")
    with pytest.raises(ValueError,
                       match=rf"'conv_bad'.*\({channels}\).*groups \({groups}\)"):
        layer(tf.zeros((1, 5, 5, channels)))
    inputs = keras.Input((5, 5, channels))
    with pytest.raises(ValueError, match=rf"'conv_x'.*\({channels}\).*\({groups}\)"):
        GroupedConv2D(8, 3, groups=groups, name="conv_x")(inputs)


def test_unknown_channels_raise():
    inputs = keras.Input((5, 5, None))
    with pytest.raises(ValueError, match=r"'conv_n'.*\(None\)"):
        GroupedConv2D(8, 3, groups=2, name="conv_n")(inputs)


def test_filters_not_divisible_by_groups():
    with pytest.raises(ValueError, match="groups"):
        GroupedConv2D(10, 3, groups=4)


@pytest.mark.parametrize("data_format", ["channels_first", "CHANNELS_FIRST"])
def test_channels_first_raises(data_format):
    with pytest.raises(ValueError, match="channels_last"):
        GroupedConv2D(8, 3, groups=2, data_format=data_format)


def test_channels_first_global_default_raises():
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format("channels_first")
    try:
        with pytest.raises(ValueError, match="channels_first"):
            GroupedConv2D(8, 3, groups=2)
        assert GroupedConv2D(8, 3, groups=2, data_format="channels_last").data_format == \
            "channels_last"
    finally:
        keras.config.set_image_data_format(previous)


@pytest.mark.parametrize("data_format", ["channels_last", "Channels_Last", None])
def test_channels_last_spellings_accepted(data_format):
    assert GroupedConv2D(8, 3, data_format=data_format).data_format == "channels_last"


@pytest.mark.parametrize("name", ["cudnn", "xla", "SPLIT", None])
def test_unknown_implementation_raises_at_construction(name):
    with pytest.raises(ValueError, match=f"implementation {name!r}"):
        GroupedConv2D(8, 3, groups=2, implementation=name)


def test_construction_does_not_query_devices(monkeypatch):
    """Constructing the layer must not initialise TF's devices (that would forbid a
    later tf.config.set_logical_device_configuration)."""
    def forbidden(*args, **kwargs):
        raise AssertionError("list_logical_devices called at construction")

    monkeypatch.setattr(tf.config, "list_logical_devices", forbidden)
    GroupedConv2D(8, 3, groups=2, implementation="auto")
    assert layers_module.resolve_grouped_conv_implementation("split") == "split"


# The fused LRN used in training
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [7, 96])
@pytest.mark.parametrize("constants", list(LRN_CONSTANTS), ids=list(LRN_CONSTANTS))
def test_fused_lrn_equals_tf_op_in_values_and_gradients(constants, channels):
    from alexnet_tf.layers import fused_local_response_normalization

    kw = _paper_kwargs(LRN_CONSTANTS[constants])
    args = dict(depth_radius=kw["n"] // 2, bias=kw["k"], alpha=kw["alpha"], beta=kw["beta"])
    x = tf.constant(lrn_input(channels, seed=channels + 1))
    upstream = tf.constant(np.random.default_rng(0).normal(size=x.shape).astype(np.float32))

    def value_and_grad(fn):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x, **args)
            loss = tf.reduce_sum(y * upstream)
        return y.numpy(), tape.gradient(loss, x).numpy()

    y_ref, g_ref = value_and_grad(tf.nn.local_response_normalization)
    y, g = value_and_grad(fused_local_response_normalization)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y, lrn_paper(x.numpy(), **kw), rtol=2e-5, atol=0)
    # The gradient mixes neighbouring channels (that is the part the formula can get
    # wrong); it must match TF's own LRN gradient to float32 rounding.
    np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-5 * np.abs(g_ref).max())
    assert np.abs(g - upstream.numpy() / kw["k"] ** kw["beta"]).max() > 1e-3  # not trivial


def test_lrn_layer_trains_through_the_fused_op_and_infers_through_tfs():
    layer = LocalResponseNormalization()
    x = tf.constant(lrn_input(96, seed=4))

    def op_types(training):
        graph = tf.function(lambda t: layer(t, training=training)).get_concrete_function(x).graph
        return {op.type for op in graph.get_operations()}

    assert "LRN" in op_types(False) and "LRN" in op_types(None)
    training_ops = op_types(True)
    assert "LRN" not in training_ops and training_ops & {"StatefulPartitionedCall",
                                                          "PartitionedCall"}
    np.testing.assert_allclose(layer(x, training=True), layer(x, training=False),
                               rtol=1e-5, atol=1e-6)


def test_fused_lrn_inside_an_xla_step_and_under_mixed_precision():
    layer = LocalResponseNormalization(dtype="mixed_bfloat16")
    x = tf.cast(lrn_input(16, seed=5), tf.bfloat16)

    @tf.function(jit_compile=True)
    def step(t):
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = layer(t, training=True)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.range(16, dtype=tf.float32))
        return y, tape.gradient(loss, t)

    y, g = step(x)
    assert y.dtype == tf.bfloat16 and g.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(y, tf.float32),
                               lrn_paper(tf.cast(x, tf.float32).numpy()), rtol=2.0 ** -7)
    g = tf.cast(g, tf.float32).numpy()
    assert np.isfinite(g).all() and np.abs(g).max() > 0
