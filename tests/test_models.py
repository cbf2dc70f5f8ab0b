"""Tests of the AlexNet builders (alexnet_tf.models).

Full-size networks are built only for parameter counts, output shapes and
initialisation statistics (module-scoped, no training); everything else runs at
tiny width and at an image size near the variant's minimum, so the file stays fast.
"""

from __future__ import annotations

import math
import re
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import architecture, models
from alexnet_tf.layers import GroupedConv2D, LocalResponseNormalization

VARIANT_NAMES = ("paper", "one_tower", "modern")
TINY_WIDTH = 0.125
NUM_CLASSES = 10
CONV_NAMES = ("conv1", "conv2", "conv3", "conv4", "conv5")
WEIGHT_LAYERS = CONV_NAMES + ("fc6", "fc7", "fc8")

# Hand-computed from Sec. 3.5 / Fig. 2 of the paper: kh*kw*(C_in/groups)*filters + filters.
PAPER_LAYER_PARAMS = {
    "conv1": 11 * 11 * 3 * 96 + 96,  # 34,944
    "conv2": 5 * 5 * 48 * 256 + 256,  # 307,456: each tower sees its own 48 maps
    "conv3": 3 * 3 * 256 * 384 + 384,  # 885,120: connected across towers
    "conv4": 3 * 3 * 192 * 384 + 384,  # 663,936
    "conv5": 3 * 3 * 192 * 256 + 256,  # 442,624
    "fc6": 6 * 6 * 256 * 4096 + 4096,  # 37,752,832
    "fc7": 4096 * 4096 + 4096,  # 16,781,312
    "fc8": 4096 * 1000 + 1000,  # 4,097,000
}
PAPER_PARAMS = 60_965_224
# torchvision alexnet: 64-192-384-256-256.
ONE_TOWER_LAYER_PARAMS = {
    "conv1": 11 * 11 * 3 * 64 + 64,
    "conv2": 5 * 5 * 64 * 192 + 192,
    "conv3": 3 * 3 * 192 * 384 + 384,
    "conv4": 3 * 3 * 384 * 256 + 256,
    "conv5": 3 * 3 * 256 * 256 + 256,
    "fc6": 6 * 6 * 256 * 4096 + 4096,
    "fc7": 4096 * 4096 + 4096,
    "fc8": 4096 * 1000 + 1000,
}
ONE_TOWER_PARAMS = 61_100_840
# Extra parameters when conv2/conv4/conv5 of the paper see all input channels:
# the kernel's input depth doubles, so its weight count doubles (biases unchanged).
UNGROUPING_EXTRA = 5 * 5 * 48 * 256 + 3 * 3 * 192 * 384 + 3 * 3 * 192 * 256  # 1,413,120
# Fan-in of every weight layer of the paper geometry without groups ("modern").
MODERN_FAN_IN = {
    "conv1": 11 * 11 * 3,
    "conv2": 5 * 5 * 96,
    "conv3": 3 * 3 * 256,
    "conv4": 3 * 3 * 384,
    "conv5": 3 * 3 * 384,
    "fc6": 6 * 6 * 256,
    "fc7": 4096,
}
ONE_TOWER_FAN_IN = {
    "conv1": 11 * 11 * 3,
    "conv2": 5 * 5 * 64,
    "conv3": 3 * 3 * 192,
    "conv4": 3 * 3 * 384,
    "conv5": 3 * 3 * 256,
    "fc6": 6 * 6 * 256,
    "fc7": 4096,
    "fc8": 4096,
}
# Keras' TruncatedNormal (and so HeNormal) cuts at 2 of its *raw* stddev, and
# VarianceScaling divides the raw stddev by the std of a unit normal truncated at
# +-2, so that the resulting std is the target sqrt(scale / fan_in).
TRUNCATED_STD_FACTOR = 0.87962566103423978
Z = 6.0  # standard errors allowed in the statistical checks


def _min_size(variant: str) -> int:
    return architecture.min_image_size(architecture.VARIANTS[variant])


def _images(batch: int, size: int, seed: int = 0) -> np.ndarray:
    """Standard-normal images: zero-mean, unit-variance like normalised pixels, and
    rich enough to keep ReLUs alive in every layer."""
    return np.random.default_rng(seed).standard_normal((batch, size, size, 3)).astype("float32")


def _tiny(variant: str, **kwargs) -> keras.Model:
    kwargs.setdefault("seed", 0)
    return models.create_model(variant, NUM_CLASSES, _min_size(variant), TINY_WIDTH, **kwargs)


def _randomize(model: keras.Model, seed: int = 1) -> None:
    """Gives every weight (BatchNorm's moving statistics too) a random non-default
    value, so a copy that silently kept the initial weights would be caught."""
    rng = np.random.default_rng(seed)
    values = []
    for w in model.weights:
        v = rng.normal(0.0, 0.05, w.shape)
        if "variance" in w.path or "gamma" in w.path:
            v = 1.0 + np.abs(v)
        values.append(v.astype(w.dtype))
    model.set_weights(values)


def _weights(model: keras.Model) -> dict[str, np.ndarray]:
    return {w.path: np.asarray(w) for w in model.weights}


def _kernel_bias(model, name):
    layer = model.get_layer(name)
    kernel = np.asarray(layer.kernel, dtype=np.float64)
    bias = None if layer.bias is None else np.asarray(layer.bias, dtype=np.float64)
    return kernel, bias


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def paper_full():
    return models.create_model("paper", 1000, 227, seed=0)


@pytest.fixture(scope="module")
def one_tower_full():
    return models.create_model("one_tower", 1000, 224, seed=0)


@pytest.fixture(scope="module")
def modern_full():
    return models.create_model("modern", 1000, 224, seed=0)


@pytest.fixture(scope="module")
def tiny_models():
    return {v: _tiny(v) for v in VARIANT_NAMES}


# ------------------------------------------------------------------- 1. parameter counts


def test_paper_parameter_count_total(paper_full):
    assert sum(PAPER_LAYER_PARAMS.values()) == PAPER_PARAMS  # the table adds up
    assert paper_full.count_params() == PAPER_PARAMS
    assert sum(int(np.prod(w.shape)) for w in paper_full.trainable_weights) == PAPER_PARAMS


def test_paper_per_layer_parameter_counts(paper_full):
    got = {name: paper_full.get_layer(name).count_params() for name in PAPER_LAYER_PARAMS}
    assert got == PAPER_LAYER_PARAMS
    # Every parameter is in one of these layers (LRN, pooling, dropout have none).
    others = {l.name: l.count_params() for l in paper_full.layers
              if l.name not in PAPER_LAYER_PARAMS and l.count_params()}
    assert others == {}


def test_paper_kernel_shapes_show_the_two_towers(paper_full):
    expected = {"conv1": (11, 11, 3, 96), "conv2": (5, 5, 48, 256), "conv3": (3, 3, 256, 384),
                "conv4": (3, 3, 192, 384), "conv5": (3, 3, 192, 256),
                "fc6": (9216, 4096), "fc7": (4096, 4096), "fc8": (4096, 1000)}
    got = {name: tuple(paper_full.get_layer(name).kernel.shape) for name in expected}
    assert got == expected
    for name in architecture.TOWER_LAYERS:
        layer = paper_full.get_layer(name)
        assert isinstance(layer, GroupedConv2D) and layer.groups == 2, name
    for name in ("conv1", "conv3"):
        layer = paper_full.get_layer(name)
        assert not isinstance(layer, GroupedConv2D) and layer.groups == 1, name


def test_one_tower_parameter_counts(one_tower_full):
    assert sum(ONE_TOWER_LAYER_PARAMS.values()) == ONE_TOWER_PARAMS
    assert one_tower_full.count_params() == ONE_TOWER_PARAMS
    got = {name: one_tower_full.get_layer(name).count_params() for name in ONE_TOWER_LAYER_PARAMS}
    assert got == ONE_TOWER_LAYER_PARAMS


# ---------------------------------------------------------------------- 2. output shapes

PAPER_SHAPES = {
    "conv1": (55, 55, 96), "norm1": (55, 55, 96), "pool1": (27, 27, 96),
    "conv2": (27, 27, 256), "norm2": (27, 27, 256), "pool2": (13, 13, 256),
    "conv3": (13, 13, 384), "conv4": (13, 13, 384), "conv5": (13, 13, 256),
    "pool5": (6, 6, 256), "flatten": (9216,), "fc6": (4096,), "fc7": (4096,), "fc8": (1000,),
}


def test_paper_per_layer_output_shapes_at_227(paper_full):
    got = {name: tuple(paper_full.get_layer(name).output.shape[1:]) for name in PAPER_SHAPES}
    assert got == PAPER_SHAPES
    assert tuple(paper_full.input_shape) == (None, 227, 227, 3)


def test_paper_forward_pass_at_227(paper_full):
    names = ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5", "fc7"]
    probe = keras.Model(paper_full.input,
                        [paper_full.get_layer(n).output for n in names] + [paper_full.output])
    outputs = probe(_images(2, 227), training=False)
    for name, out in zip(names, outputs):
        assert tuple(out.shape) == (2,) + PAPER_SHAPES[name], name
    logits = outputs[-1].numpy()
    assert logits.shape == (2, 1000)
    assert logits.dtype == np.float32
    assert np.all(np.isfinite(logits))
    assert np.std(logits) > 0  # not a constant output
    # The functional model itself gives the same logits.
    np.testing.assert_allclose(paper_full(_images(2, 227), training=False).numpy(), logits,
                               rtol=1e-5, atol=1e-6)


def test_one_tower_shapes_at_224(one_tower_full):
    m = one_tower_full
    assert tuple(m.get_layer("pool5").output.shape[1:]) == (6, 6, 256)
    assert tuple(m.get_layer("avgpool").output.shape[1:]) == (6, 6, 256)
    assert tuple(m.get_layer("conv1").output.shape[1:]) == (55, 55, 64)
    assert tuple(m.get_layer("fc7").output.shape[1:]) == (4096,)
    logits = m(_images(1, 224), training=False).numpy()
    assert logits.shape == (1, 1000) and np.all(np.isfinite(logits))


def test_modern_forward_pass_at_224(modern_full):
    assert tuple(modern_full.get_layer("pool5").output.shape[1:]) == (6, 6, 256)
    logits = modern_full(_images(1, 224), training=False).numpy()
    assert logits.shape == (1, 1000) and np.all(np.isfinite(logits))


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_spatial_sizes_match_the_built_model_at_the_minimum_size(variant, tiny_models):
    model = tiny_models[variant]
    size = _min_size(variant)
    expected = dict(architecture.spatial_sizes(architecture.VARIANTS[variant], size))
    got = {name: model.get_layer(name).output.shape[1] for name in expected}
    assert got == expected
    assert min(expected.values()) == 1 and expected["pool5"] == 1
    # One pixel less and some layer would have no output.
    assert min(s for _, s in architecture.spatial_sizes(architecture.VARIANTS[variant], size - 1)) < 1
    logits = model(_images(2, size), training=False).numpy()
    assert logits.shape == (2, NUM_CLASSES) and np.all(np.isfinite(logits))


def test_min_image_size_of_paper_is_67():
    assert _min_size("paper") == 67


def test_one_tower_adaptive_pool_replicates_a_1x1_map(tiny_models):
    """torchvision's AdaptiveAvgPool2d((6, 6)) of a 1x1 map repeats it 36 times."""
    model = tiny_models["one_tower"]
    probe = keras.Model(model.input, [model.get_layer("pool5").output,
                                      model.get_layer("avgpool").output])
    pool5, avgpool = (t.numpy() for t in probe(_images(2, _min_size("one_tower"))))
    assert pool5.shape[1:3] == (1, 1) and avgpool.shape[1:3] == (6, 6)
    np.testing.assert_array_equal(avgpool, np.broadcast_to(pool5, avgpool.shape))


def test_layer_order_and_dropout_placement(tiny_models):
    paper, one_tower, modern = (tiny_models[v] for v in VARIANT_NAMES)
    # Sec. 3.3/3.4: conv -> ReLU -> LRN -> max-pool in stages 1 and 2.
    for i in (1, 2):
        assert paper.get_layer(f"norm{i}").input is paper.get_layer(f"conv{i}_relu").output
        assert paper.get_layer(f"pool{i}").input is paper.get_layer(f"norm{i}").output
        lrn = paper.get_layer(f"norm{i}")
        assert (lrn.depth_size, lrn.bias, lrn.alpha, lrn.beta) == (5, 2.0, 1e-4, 0.75)
    assert not any(isinstance(l, LocalResponseNormalization) for l in one_tower.layers)
    # Sec. 4.2: dropout 0.5 on the outputs of fc6 and fc7 ...
    for name in ("fc6", "fc7"):
        drop = paper.get_layer(f"{name}_dropout")
        assert drop.input is paper.get_layer(name).output and drop.rate == 0.5
    assert paper.get_layer("fc8").input is paper.get_layer("fc7_dropout").output
    # ... torchvision: on the inputs of fc6 and fc7, none before fc8.
    for name in ("fc6", "fc7"):
        drop = one_tower.get_layer(f"{name}_dropout_in")
        assert one_tower.get_layer(name).input is drop.output and drop.rate == 0.5
    assert one_tower.get_layer("fc8").input is one_tower.get_layer("fc7").output
    assert [type(l).__name__ for l in modern.layers].count("Dropout") == 2


def test_dropout_rate_argument_reaches_the_layers():
    model = models.create_model("paper", NUM_CLASSES, 67, TINY_WIDTH, dropout_rate=0.2)
    assert [l.rate for l in model.layers if isinstance(l, keras.layers.Dropout)] == [0.2, 0.2]


# --------------------------------------------------------------------- 3. initialisation


def _assert_normal_stats(values: np.ndarray, std: float, what: str, max_sigma=None):
    """Mean 0 and the given std, within Z standard errors of the sample estimates.

    For n iid samples: SE(mean) = std / sqrt(n); SE(sample std) = std / sqrt(2 n) for a
    normal (smaller for a truncated normal, whose kurtosis is below 3)."""
    values = values.ravel()
    n = values.size
    assert abs(values.mean()) < Z * std / math.sqrt(n), (what, values.mean())
    assert abs(values.std() - std) < Z * std / math.sqrt(2 * n), (what, values.std(), std)


def test_paper_init_kernels_are_normal_0_01(paper_full):
    for name in WEIGHT_LAYERS:
        kernel, _ = _kernel_bias(paper_full, name)
        _assert_normal_stats(kernel, 0.01, name)
        # A normal sample of >= 34,848 values reaches beyond 3 sigma (a truncated one does not).
        assert np.abs(kernel).max() > 0.035, name


def test_paper_init_biases_are_exactly_0_or_1(paper_full):
    ones = {"conv2", "conv4", "conv5", "fc6", "fc7"}  # Sec. 5
    for name in WEIGHT_LAYERS:
        _, bias = _kernel_bias(paper_full, name)
        expected = 1.0 if name in ones else 0.0
        np.testing.assert_array_equal(bias, np.full_like(bias, expected), err_msg=name)


def test_paper_init_layers_are_independent(paper_full):
    """Each layer draws its own numbers: no two kernels start with the same values."""
    heads = {name: _kernel_bias(paper_full, name)[0].ravel()[:1000] for name in WEIGHT_LAYERS}
    for a in WEIGHT_LAYERS:
        for b in WEIGHT_LAYERS:
            if a < b:
                corr = np.corrcoef(heads[a], heads[b])[0, 1]
                assert abs(corr) < 0.2, (a, b, corr)


def test_he_normal_in_keras_is_rescaled_to_the_target_std():
    """Keras' HeNormal is a truncated normal whose raw stddev is divided by 0.8796, so
    its std is sqrt(2 / fan_in), not 0.88 of it; values stop at 2 raw stddevs."""
    fan_in = 3 * 3 * 64
    w = np.asarray(keras.initializers.HeNormal(seed=3)((3, 3, 64, 512)), dtype=np.float64)
    target = math.sqrt(2.0 / fan_in)
    _assert_normal_stats(w, target, "HeNormal")
    assert np.abs(w).max() <= 2 * target / TRUNCATED_STD_FACTOR * (1 + 1e-6)
    assert np.abs(w).max() > 2 * target  # beyond 2 target-sigmas: the rescaled truncation


def test_modern_init_he_normal_and_zero_biases(modern_full):
    for name, fan_in in MODERN_FAN_IN.items():
        kernel, bias = _kernel_bias(modern_full, name)
        target = math.sqrt(2.0 / fan_in)
        assert math.prod(kernel.shape[:-1]) == fan_in, name
        _assert_normal_stats(kernel, target, name)
        limit = 2 * target / TRUNCATED_STD_FACTOR
        assert np.abs(kernel).max() <= limit * (1 + 1e-6), name
        if name.startswith("conv"):
            assert bias is None, f"{name} has a bias before BatchNorm"
        else:
            np.testing.assert_array_equal(bias, 0.0, err_msg=name)
    kernel, bias = _kernel_bias(modern_full, "fc8")  # Goyal et al. 2017: N(0, 0.01)
    _assert_normal_stats(kernel, 0.01, "fc8")
    np.testing.assert_array_equal(bias, 0.0)


def test_modern_has_batchnorm_after_every_conv_and_no_lrn(modern_full):
    for name in CONV_NAMES:
        bn = modern_full.get_layer(f"{name}_bn")
        assert isinstance(bn, keras.layers.BatchNormalization)
        assert bn.input is modern_full.get_layer(name).output, name
        assert modern_full.get_layer(f"{name}_relu").input is bn.output, name
        assert (bn.momentum, bn.epsilon) == (0.9, 1e-5)
        np.testing.assert_array_equal(np.asarray(bn.gamma), 1.0)
        np.testing.assert_array_equal(np.asarray(bn.beta), 0.0)
        assert not isinstance(modern_full.get_layer(name), GroupedConv2D)
    assert sum(isinstance(l, keras.layers.BatchNormalization) for l in modern_full.layers) == 5
    assert not any(isinstance(l, LocalResponseNormalization) for l in modern_full.layers)


def test_one_tower_init_is_pytorch_default(one_tower_full):
    """torch.nn.Conv2d/Linear: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    for name, fan_in in ONE_TOWER_FAN_IN.items():
        kernel, bias = _kernel_bias(one_tower_full, name)
        bound = 1.0 / math.sqrt(fan_in)
        for what, values in (("kernel", kernel), ("bias", bias)):
            n = values.size
            assert np.abs(values).max() <= bound * (1 + 1e-6), (name, what)
            # U(-b, b): std b/sqrt(3); SE(sample std) = 0.447 std / sqrt(n),
            # SE(mean) = std / sqrt(n).
            std = bound / math.sqrt(3.0)
            assert abs(values.std() - std) < Z * 0.4472 * std / math.sqrt(n), (name, what)
            assert abs(values.mean()) < Z * std / math.sqrt(n), (name, what)
            # Fills the interval: P(max < b (1 - 20/n)) = (1 - 10/n)^n < e^-10.
            assert values.max() > bound * (1 - 20.0 / n) and values.min() < -bound * (1 - 20.0 / n)


def test_one_tower_seeded_biases_are_independent_of_other_kernels(one_tower_full):
    pairs = [("conv1", "conv2"), ("conv2", "conv3"), ("conv3", "conv4"), ("conv4", "conv5"),
             ("fc6", "fc7")]
    correlated = []
    for a, b in pairs:
        bias = _kernel_bias(one_tower_full, a)[1]
        kernel_head = _kernel_bias(one_tower_full, b)[0].ravel()[:bias.size]
        corr = np.corrcoef(bias, kernel_head)[0, 1]
        # Independent draws: |corr| ~ 1/sqrt(n) <= 0.125 here.
        if abs(corr) > 0.6:
            correlated.append(f"{a}.bias ~ {b}.kernel (corr {corr:.4f})")
    assert not correlated, correlated


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_same_seed_same_weights_different_seed_different_weights(variant):
    a = _weights(_tiny(variant, seed=7))
    b = _weights(_tiny(variant, seed=7))
    c = _weights(_tiny(variant, seed=8))
    assert a.keys() == b.keys() == c.keys()
    for path in a:
        np.testing.assert_array_equal(a[path], b[path], err_msg=path)
    # Every randomly initialised variable changes with the seed.
    random_paths = [p for p in a if p.endswith("kernel")
                    or (variant == "one_tower" and p.endswith("bias"))]
    assert len(random_paths) >= 8
    same = [p for p in random_paths if np.array_equal(a[p], c[p])]
    assert not same, f"unchanged by the seed: {same}"


def test_init_argument_replaces_the_scheme():
    model = models.create_model("paper", NUM_CLASSES, 67, 0.25, init="he", seed=0)
    np.testing.assert_array_equal(np.asarray(model.get_layer("conv2").bias), 0.0)
    kernel, _ = _kernel_bias(model, "conv3")
    target = math.sqrt(2.0 / (3 * 3 * 64))
    assert abs(kernel.std() - target) < 0.05 * target


# ---------------------------------------------------------- 4. serialisation round trips


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_get_config_round_trip(variant):
    model = _tiny(variant)
    _randomize(model)
    clone = keras.Model.from_config(model.get_config())
    assert [l.name for l in clone.layers] == [l.name for l in model.layers]
    assert [type(l) for l in clone.layers] == [type(l) for l in model.layers]
    clone.set_weights(model.get_weights())
    x = _images(2, _min_size(variant))
    np.testing.assert_allclose(clone(x, training=False).numpy(),
                               model(x, training=False).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_keras_file_round_trip(variant, tmp_path):
    model = _tiny(variant)
    _randomize(model)
    path = tmp_path / f"{variant}.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = _images(2, _min_size(variant))
    np.testing.assert_allclose(loaded(x, training=False).numpy(),
                               model(x, training=False).numpy(), rtol=1e-5, atol=1e-6)
    for path_, value in _weights(model).items():
        np.testing.assert_array_equal(_weights(loaded)[path_], value, err_msg=path_)
    assert loaded.name == model.name
    grouped = {l.name for l in loaded.layers if isinstance(l, GroupedConv2D)}
    lrn = {l.name for l in loaded.layers if isinstance(l, LocalResponseNormalization)}
    if variant == "paper":
        assert grouped == set(architecture.TOWER_LAYERS)
        assert all(loaded.get_layer(n).groups == 2 for n in grouped)
        assert lrn == {"norm1", "norm2"}
        assert loaded.get_layer("norm1").get_config()["bias"] == 2.0
    else:
        assert grouped == set() and lrn == set()


def test_a_keras_file_loads_as_the_readme_says_in_a_fresh_process(tmp_path):
    import subprocess
    import sys

    model = _tiny("paper")
    path = tmp_path / "m.keras"
    model.save(path)

    def load(code):
        return subprocess.run([sys.executable, "-c", code.format(path=str(path))],
                              capture_output=True, text=True, timeout=300)

    for code in ("import alexnet_tf; m = alexnet_tf.load_model({path!r}); print(m.name)",
                 "import keras, alexnet_tf.layers; print(keras.models.load_model({path!r}).name)"):
        done = load(code)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split()[-1] == model.name
    # Why the README names the import: `import alexnet_tf` alone registers nothing.
    done = load("import keras, alexnet_tf; keras.models.load_model({path!r})")
    assert done.returncode != 0
    assert re.search(r"Could not locate class '(LocalResponseNormalization|GroupedConv2D)'",
                     done.stderr), done.stderr[-2000:]


def test_keras_file_keeps_grouped_conv_implementation(tmp_path):
    model = _tiny("paper", grouped_conv_implementation="split")
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert {loaded.get_layer(n).implementation for n in architecture.TOWER_LAYERS} == {"split"}


# --------------------------------------------------------------------- 5. training step


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_one_training_step_reaches_every_variable(variant):
    model = models.create_model(variant, NUM_CLASSES, _min_size(variant), TINY_WIDTH, seed=1)
    x = tf.constant(_images(4, _min_size(variant), seed=2))
    y = tf.constant([0, 3, 5, 9])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optimizer = keras.optimizers.SGD(learning_rate=0.01)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    assert np.isfinite(float(loss)) and float(loss) > 0
    missing = [v.path for v, g in zip(model.trainable_variables, grads) if g is None]
    assert not missing, f"no gradient for {missing}"
    bad = [v.path for v, g in zip(model.trainable_variables, grads)
           if not np.all(np.isfinite(g.numpy()))]
    assert not bad, f"non-finite gradient for {bad}"
    zero = [v.path for v, g in zip(model.trainable_variables, grads)
            if not np.any(g.numpy() != 0)]
    assert not zero, f"all-zero gradient for {zero}"
    before = [np.asarray(v).copy() for v in model.trainable_variables]
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    # Plain SGD: w <- w - lr * g. (Some updates round away in float32, e.g. the tiny
    # paper model's conv2 bias of 1.0 with a gradient near 1e-6, so compare the values.)
    for v, b, g in zip(model.trainable_variables, before, grads):
        np.testing.assert_allclose(np.asarray(v), b - 0.01 * g.numpy(), rtol=1e-6, atol=1e-7,
                                   err_msg=v.path)
    if variant == "modern":  # BatchNorm in training mode updates its moving statistics
        bn = model.get_layer("conv1_bn")
        assert not np.allclose(np.asarray(bn.moving_mean), 0.0)


# ------------------------------------------------------------------ 6. feature extractor


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_feature_extractor_gives_fc7_activations(variant, tiny_models):
    model = tiny_models[variant]
    fc7 = model.get_layer("fc7")
    assert isinstance(fc7, keras.layers.Dense)
    width = int(round(TINY_WIDTH * 4096))
    assert fc7.units == width
    extractor = models.feature_extractor(model)
    explicit = keras.Model(model.input, fc7.output)
    x = _images(2, _min_size(variant))
    features = extractor(x, training=False).numpy()
    assert features.shape == (2, width)
    assert np.all(features >= 0)  # post-ReLU
    assert np.any(features > 0)
    np.testing.assert_allclose(features, explicit(x, training=False).numpy(), rtol=1e-6)
    # The extractor shares the model's weights rather than copying them.
    assert extractor.get_layer("fc7") is fc7
    assert extractor.count_params() == model.count_params() - model.get_layer("fc8").count_params()


def test_feature_extractor_call_does_not_warn(tiny_models):
    extractor = models.feature_extractor(tiny_models["paper"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        extractor(_images(1, 67), training=False)


# -------------------------------------------------------------- 7. groups and implementations


def test_paper_without_groups():
    model = models.create_model("paper", 1000, 227, groups=1, seed=0)
    assert model.count_params() == PAPER_PARAMS + UNGROUPING_EXTRA == 62_378_344
    for name in architecture.TOWER_LAYERS:
        layer = model.get_layer(name)
        assert not isinstance(layer, GroupedConv2D) and layer.groups == 1
    assert model.get_layer("conv2").kernel.shape == (5, 5, 96, 256)
    assert model.get_layer("conv2").count_params() == 5 * 5 * 96 * 256 + 256
    np.testing.assert_array_equal(np.asarray(model.get_layer("conv2").bias), 1.0)  # init kept


def test_modern_with_groups():
    model = models.create_model("modern", 1000, 224, groups=2, seed=0)
    modern_params = 62_382_472  # convs without bias, 4 BN numbers per channel
    assert model.count_params() == modern_params - UNGROUPING_EXTRA == 60_969_352
    for name in architecture.TOWER_LAYERS:
        layer = model.get_layer(name)
        assert isinstance(layer, GroupedConv2D) and layer.groups == 2, name
    for name in ("conv1", "conv3"):
        assert model.get_layer(name).groups == 1


def test_modern_param_count(modern_full):
    assert modern_full.count_params() == 62_382_472


def test_split_and_native_grouped_convolutions_agree():
    split = _tiny("paper", grouped_conv_implementation="split")
    native = _tiny("paper", grouped_conv_implementation="native", seed=5)
    auto = _tiny("paper", grouped_conv_implementation="auto", seed=6)
    _randomize(split)
    native.set_weights(split.get_weights())
    auto.set_weights(split.get_weights())
    x = _images(2, 67)
    expected = split(x, training=False).numpy()
    assert np.std(expected) > 0
    np.testing.assert_allclose(native(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(auto(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_grouping_is_block_diagonal():
    """conv2's first-tower outputs depend only on first-tower inputs (Sec. 3.2)."""
    model = _tiny("paper")
    conv2 = model.get_layer("conv2")
    probe = keras.Model(model.input, [conv2.input, conv2.output])
    sub = keras.Sequential([keras.Input(conv2.input.shape[1:]), conv2])
    inp, out = (t.numpy() for t in probe(_images(1, 67)))
    np.testing.assert_allclose(sub(inp).numpy(), out, rtol=1e-5, atol=1e-6)
    half_in, half_out = inp.shape[-1] // 2, out.shape[-1] // 2
    changed = inp.copy()
    changed[..., half_in:] += 10.0  # only the second tower's inputs
    out2 = sub(changed).numpy()
    np.testing.assert_allclose(out2[..., :half_out], out[..., :half_out], rtol=1e-5, atol=1e-6)
    assert not np.allclose(out2[..., half_out:], out[..., half_out:])


# --------------------------------------------------------------------------- 8. bad input


@pytest.mark.parametrize("kwargs, fragments", [
    (dict(variant="vgg16"), ["'vgg16'", "paper", "one_tower", "modern"]),
    (dict(image_size=60), ["60", "67", "image_size"]),
    (dict(variant="one_tower", image_size=62), ["62", "63"]),
    (dict(width=0.3), ["0.3", "divisible", "groups=2"]),
    (dict(num_classes=0), ["num_classes", "0", "positive"]),
    (dict(num_classes=-3), ["num_classes", "-3", "positive"]),
    (dict(dropout_rate=1.0), ["dropout_rate", "1.0", "[0, 1)"]),
    (dict(dropout_rate=-0.1), ["dropout_rate", "-0.1", "[0, 1)"]),
    (dict(init="xavier"), ["init", "'xavier'", "paper", "torch_default", "he"]),
    (dict(groups=0), ["groups", "0", "positive"]),
    (dict(width=0), ["width", "0", "positive"]),
    (dict(image_size=0), ["image_size", "0", "positive"]),
    (dict(grouped_conv_implementation="fast"), ["'fast'", "split", "native"]),
])
def test_bad_arguments_raise_value_error_naming_value_and_expectation(kwargs, fragments):
    args = dict(variant="paper", num_classes=NUM_CLASSES, image_size=67, width=TINY_WIDTH)
    args.update(kwargs)
    with pytest.raises(ValueError) as info:
        models.create_model(**args)
    message = str(info.value)
    missing = [f for f in fragments if f not in message]
    assert not missing, f"{missing} not in {message!r}"


def test_validate_model_args_matches_create_model():
    # The check without building: same errors, and silence for a good configuration.
    architecture.validate_model_args("paper", 1000, 227, 1.0, 0.5, None, None)
    with pytest.raises(ValueError, match="60"):
        architecture.validate_model_args("paper", 1000, 60, 1.0)
    with pytest.raises(ValueError, match="0.3"):
        architecture.validate_model_args("paper", 1000, 67, 0.3)
    # width 0.3 is fine once the towers are gone.
    architecture.validate_model_args("paper", 1000, 67, 0.3, groups=1)
