"""Fine-tuning (Sec. 6): a run seeded by model.init_from, frozen layers, per-layer rates.

Sources are tiny networks in the real formats: a training run of the demo network
(its work directory and a checkpoint path), a bare ``.keras`` file, and converted-weights
directories written by the converter's own writer (`alexnet_tf.weights.save_converted`
with Caffe's and torchvision's `WeightsInfo`, at a 67- and 127-pixel input). Targets are
the demo's transfer set (six classes none of which is among the source's ten), so fc8
starts fresh. Every run is one epoch of a few steps.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import config as config_lib
from alexnet_tf import model_source, models, weights
from alexnet_tf import run as run_lib
from alexnet_tf.convention import InputConvention
from alexnet_tf.data import demo
from alexnet_tf.train import finetune, loop, optim
from conftest import REPO_ROOT
from test_config import load_config_file

CAFFE_MEAN_RGB = (122.67891434, 116.66876762, 104.00698793)


def _config(data_dir, *, demo_set="shapes", **keys):
    """The demo network on a small demo set, 1 epoch of 3 steps; ``keys``: "group.key"."""
    c = load_config_file(REPO_ROOT / "configs" / "demo.py")
    c.data.data_dir = str(data_dir)
    c.data.demo_set = demo_set
    c.data.demo_train_per_class, c.data.demo_val_per_class = (
        (60, 20) if demo_set == "shapes" else (8, 4))
    c.model.num_classes = 10 if demo_set == "shapes" else 6
    c.train.global_batch_size = 16
    c.train.total_epochs = 1
    c.train.steps_per_epoch = 3
    c.train.schedule = "constant"
    c.train.warmup_epochs = 0.0
    c.train.log_every_steps = 1
    c.eval.global_batch_size = 100
    for key, value in keys.items():
        group, name = key.split(".")
        c[group][name] = value
    return c


@pytest.fixture(scope="module")
def transfer_dir(tmp_path_factory):
    """The transfer demo set, 8 train and 4 val images per class (6 classes)."""
    return demo.write_demo_dataset(tmp_path_factory.mktemp("transfer") / "data", seed=0,
                                   train_per_class=8, val_per_class=4, demo_set="transfer")


@pytest.fixture(scope="module")
def source_run(small_demo_dir, tmp_path_factory):
    """A demo run on the ten shapes classes: the source the fine-tuned runs start from."""
    workdir = tmp_path_factory.mktemp("source") / "run"
    loop.train_and_evaluate(_config(small_demo_dir), str(workdir))
    return workdir


def _finetune(transfer_dir, workdir, **keys):
    config = _config(transfer_dir, demo_set="transfer", **keys)
    metrics = loop.train_and_evaluate(config, str(workdir))
    return config, metrics


def _weights(model):
    return {layer.name: [w.numpy() for w in layer.weights] for layer in model.layers
            if layer.weights}


def _model_of(workdir):
    return run_lib.Run(str(workdir)).restore_model("latest").model


# ------------------------------------------------------------------ frozen and trainable


@pytest.mark.slow
def test_frozen_layers_stay_bit_identical_and_fc8_is_new(source_run, transfer_dir, tmp_path):
    source = _weights(model_source.resolve(str(source_run)).load_model())
    workdir = tmp_path / "ft"
    config, metrics = _finetune(transfer_dir, workdir, **{
        "model.init_from": str(source_run), "train.trainable_layers": "fc7,fc8",
        "train.lr_multipliers": "fc8=10"})
    assert metrics["step"] == 3
    tuned = _weights(_model_of(workdir))
    # The paper's coupled SGD decays inside its update (5e-4 here): frozen layers get
    # neither the update nor the decay, so not one bit moves.
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6"):
        for a, b in zip(tuned[name], source[name]):
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert not np.array_equal(tuned["fc7"][0], source["fc7"][0])
    assert tuned["fc8"][0].shape == (source["fc7"][0].shape[1], 6)
    assert source["fc8"][0].shape[1] == 10
    saved = config_lib.read_config(str(workdir / "config.json"))
    assert saved.model.init_from == str(source_run) and saved.model.num_classes == 6
    assert [c["id"] for c in json.load(open(workdir / "classes.json"))] == list(
        demo.TRANSFER_CLASS_NAMES)


@pytest.mark.slow
def test_frozen_batchnorm_keeps_its_statistics_from_a_keras_file(transfer_dir, tmp_path):
    """A bare .keras file of the modern variant (BatchNorm): frozen convs run their
    BatchNorm in inference mode, so its moving statistics stay the source's."""
    source_model = models.create_model("modern", num_classes=10, image_size=63, width=0.25,
                                       seed=3)
    bn = source_model.get_layer("conv2_bn")
    bn.moving_mean.assign(np.linspace(-1, 1, bn.moving_mean.shape[0]))  # not the init
    path = tmp_path / "modern.keras"
    source_model.save(path)
    workdir = tmp_path / "ft"
    _finetune(transfer_dir, workdir, **{
        "model.init_from": str(path), "model.variant": "modern", "model.image_size": 63,
        "model.init": "", "train.trainable_layers": "conv5,fc*"})
    tuned = _weights(_model_of(workdir))
    source = _weights(source_model)
    for name in ("conv1", "conv1_bn", "conv2", "conv2_bn", "conv4_bn"):
        for a, b in zip(tuned[name], source[name]):
            np.testing.assert_array_equal(a, b, err_msg=name)
    # conv5's BatchNorm trains with conv5: its statistics move in training mode.
    assert not np.array_equal(tuned["conv5_bn"][2], source["conv5_bn"][2])


def test_freeze_marks_a_conv_and_its_batchnorm():
    model = models.create_model("modern", num_classes=3, image_size=63, width=0.25)
    frozen = finetune.freeze(model, ("conv5", "fc6", "fc7", "fc8"))
    assert frozen == ("conv1", "conv1_bn", "conv2", "conv2_bn", "conv3", "conv3_bn",
                      "conv4", "conv4_bn")
    paths = {v.path for v in model.trainable_variables}
    assert "conv5_bn/gamma" in paths and not any(p.startswith("conv4") for p in paths)


@pytest.mark.parametrize("variant,size,width,groups", [
    ("paper", 67, 0.25, None), ("paper", 67, 0.5, 1), ("one_tower", 63, 0.25, None),
    ("modern", 63, 0.25, None)])
def test_expected_weight_shapes_are_the_built_models(variant, size, width, groups):
    m = config_lib.base_config().model
    m.variant, m.image_size, m.width, m.groups, m.num_classes = variant, size, width, groups, 7
    model = models.create_model(variant, num_classes=7, image_size=size, width=width,
                                groups=groups)
    built = {layer.name: [tuple(w.shape) for w in layer.weights] for layer in model.layers
             if layer.weights}
    assert finetune.expected_weight_shapes(m) == built


# --------------------------------------------------------------- learning-rate multipliers


def _two_layers():
    """fc7 (3 -> 2) and fc8 (2 -> 2) with fixed weights; x and the loss's gradients."""
    fc7 = keras.layers.Dense(2, name="fc7", kernel_initializer=keras.initializers.Constant(
        [[0.5, -1.0], [2.0, 0.25], [-0.75, 1.5]]), bias_initializer="ones")
    fc8 = keras.layers.Dense(2, name="fc8", kernel_initializer=keras.initializers.Constant(
        [[1.0, -0.5], [0.3, 2.0]]), bias_initializer=keras.initializers.Constant([0.1, -0.2]))
    fc7.build((None, 3))
    fc8.build((None, 2))
    return fc7, fc8


def _gradients(fc7, fc8, x):
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(fc8(fc7(x)) ** 2)
    variables = fc7.trainable_variables + fc8.trainable_variables
    return variables, tape.gradient(loss, variables)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "unfused"])
def test_coupled_sgd_with_multipliers_follows_caffe_by_hand(fused):
    """Caffe's SGD (sgd_solver.cpp): diff = g + wd w (Regularize), then
    v <- momentum v - lr lr_mult diff (ComputeUpdateValue); w <- w + v. Biases undecayed."""
    t = config_lib.base_config().train
    fc7, fc8 = _two_layers()
    optimizer = optim.create_optimizer(t, 10, 128, fused=fused, lr_multipliers={"fc8": 10.0})
    assert isinstance(optimizer, optim.CoupledSGD)
    x = np.array([[1.0, -2.0, 0.5]], np.float32)
    values = [v.numpy().astype(np.float64) for v in fc7.trainable_variables
              + fc8.trainable_variables]
    velocity = [np.zeros_like(v) for v in values]
    multiplier = [1.0, 1.0, 10.0, 10.0]
    decay = [0.0005, 0.0, 0.0005, 0.0]
    for _ in range(2):
        variables, grads = _gradients(fc7, fc8, x)
        expected_grads = [g.numpy().astype(np.float64) for g in grads]
        optimizer.apply_gradients(zip(grads, variables))
        for i in range(4):
            lr = 0.01 * multiplier[i]
            velocity[i] = 0.9 * velocity[i] - lr * (expected_grads[i] + decay[i] * values[i])
            values[i] = values[i] + velocity[i]
        for variable, value in zip(variables, values):
            np.testing.assert_allclose(variable.numpy(), value, rtol=1e-5, atol=1e-6)


def test_adamw_with_multipliers_follows_the_formula_by_hand():
    """AdamW (Loshchilov & Hutter 2019, Keras' order): w <- w - lr m wd w, then the Adam
    step with lr m: m_t, v_t, w <- w - lr m alpha_t m_t / (sqrt(v_t) + eps)."""
    t = config_lib.base_config().train
    t.optimizer, t.weight_decay_mode, t.weight_decay, t.learning_rate = (
        "adamw", "decoupled", 0.01, 0.001)
    fc7, fc8 = _two_layers()
    optimizer = optim.create_optimizer(t, 10, 128, lr_multipliers={"fc7": 3.0})
    assert isinstance(optimizer, optim.LayerRateAdamW)
    x = np.array([[1.0, -2.0, 0.5]], np.float32)
    values = [v.numpy().astype(np.float64) for v in fc7.trainable_variables
              + fc8.trainable_variables]
    m1 = [np.zeros_like(v) for v in values]
    m2 = [np.zeros_like(v) for v in values]
    multiplier = [3.0, 3.0, 1.0, 1.0]
    decayed = [True, False, True, False]  # biases excluded (train.decay_biases=False)
    b1, b2, eps = 0.9, 0.999, 1e-7
    for step in range(1, 3):
        variables, grads = _gradients(fc7, fc8, x)
        g = [grad.numpy().astype(np.float64) for grad in grads]
        optimizer.apply_gradients(zip(grads, variables))
        for i in range(4):
            lr = 0.001 * multiplier[i]
            if decayed[i]:
                values[i] = values[i] - lr * 0.01 * values[i]
            m1[i] = b1 * m1[i] + (1 - b1) * g[i]
            m2[i] = b2 * m2[i] + (1 - b2) * g[i] ** 2
            alpha = lr * np.sqrt(1 - b2 ** step) / (1 - b1 ** step)
            values[i] = values[i] - alpha * m1[i] / (np.sqrt(m2[i]) + eps)
        for variable, value in zip(variables, values):
            np.testing.assert_allclose(variable.numpy(), value, rtol=1e-5, atol=1e-7)


def test_momentum_sgd_with_decoupled_decay_scales_the_decay_too():
    t = config_lib.base_config().train
    t.weight_decay_mode, t.weight_decay, t.momentum = "decoupled", 0.1, 0.9
    fc7, fc8 = _two_layers()
    optimizer = optim.create_optimizer(t, 10, 128, lr_multipliers={"fc8": 2.0})
    assert isinstance(optimizer, optim.LayerRateSGD)
    x = np.array([[1.0, -2.0, 0.5]], np.float32)
    w = fc8.kernel.numpy().astype(np.float64)
    variables, grads = _gradients(fc7, fc8, x)
    g = grads[2].numpy().astype(np.float64)
    optimizer.apply_gradients(zip(grads, variables))
    lr = 0.01 * 2.0
    expected = (w - lr * 0.1 * w) - lr * g  # Keras: decay first, then v = -lr g, w += v
    np.testing.assert_allclose(fc8.kernel.numpy(), expected, rtol=1e-5, atol=1e-7)


def test_no_multipliers_keeps_keras_own_optimizers():
    t = config_lib.base_config().train
    t.weight_decay_mode = "decoupled"
    assert type(optim.create_optimizer(t, 10, 128)) is keras.optimizers.SGD
    with pytest.raises(ValueError, match="numbers > 0"):
        optim.CoupledSGD(lr_multipliers={"fc8": 0.0})


# ----------------------------------------------------------------------- the source kinds


def _converted(tmp_path, kind):
    """A converted-weights directory as tools/convert_weights.py writes it (1000 classes),
    of a tiny network; the convention is the converter's at the network's input size."""
    if kind == "caffe":
        info = weights.caffe_weights_info(num_classes=1000)
        info = dataclasses.replace(info, convention=info.convention.replace(
            image_size=67, resize_size=76))
        model = models.create_model("paper", num_classes=1000, image_size=67, width=0.25,
                                    lrn_bias=info.lrn_bias, lrn_alpha=info.lrn_alpha, seed=1)
    else:
        info = weights.torchvision_weights_info(num_classes=1000)
        # 127: the smallest input whose pool5 (3x3) Keras' AdaptiveAveragePooling2D
        # takes inside a tf.function (at 63, pool5 is 1x1 and the traced step fails).
        info = dataclasses.replace(info, convention=info.convention.replace(
            image_size=127, resize_size=128))
        model = models.create_model("one_tower", num_classes=1000, image_size=127,
                                    width=0.25, seed=2)
    directory = tmp_path / kind
    weights.save_converted(model, info, directory)
    return directory, model, info


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["run", "checkpoint", "keras", "caffe", "torchvision"])
def test_every_source_kind_seeds_a_run(kind, source_run, transfer_dir, tmp_path):
    if kind == "run":
        spec, source = str(source_run), model_source.resolve(str(source_run)).load_model()
    elif kind == "checkpoint":
        spec = run_lib.Run(str(source_run)).checkpoint("latest")
        source = model_source.resolve(spec).load_model()
    elif kind == "keras":
        source = _model_of(source_run)
        spec = str(tmp_path / "bare.keras")
        source.save(spec)
    else:
        directory, source, info = _converted(tmp_path, kind)
        spec = str(directory)
    workdir = tmp_path / "ft"
    # The config file's (configs/demo.py's) convention differs from the converted ones:
    # the source's is adopted.
    _, metrics = _finetune(transfer_dir, workdir, **{
        "model.init_from": spec, "train.trainable_layers": "conv[45],fc*"})
    assert metrics["step"] == 3
    tuned = _weights(_model_of(workdir))
    for a, b in zip(tuned["conv1"], _weights(source)["conv1"]):
        np.testing.assert_array_equal(a, b)  # loaded, then frozen
    assert tuned["fc8"][0].shape[1] == 6
    saved = config_lib.read_config(str(workdir / "config.json"))
    convention = InputConvention.load(str(workdir))
    assert convention == InputConvention.from_config(saved)
    if kind in ("caffe", "torchvision"):
        assert convention == info.convention
    if kind == "caffe":
        # Caffe's input and LRN constants, without one flag from the user.
        assert saved.data.channel_order == "BGR"
        np.testing.assert_allclose(saved.data.mean_rgb, CAFFE_MEAN_RGB, atol=1e-6)
        assert (saved.model.lrn_bias, saved.model.lrn_alpha) == (1.0, pytest.approx(2e-5))
        assert (saved.model.variant, saved.model.width) == ("paper", 0.25)
    if kind == "torchvision":
        assert (saved.model.variant, saved.model.image_size) == ("one_tower", 127)
        np.testing.assert_allclose(saved.data.std_rgb, (58.395, 57.12, 57.375), atol=1e-3)


# ------------------------------------------------------------ precedence, resume, classes


def test_explicit_flags_that_contradict_the_source_stop_the_run(source_run, transfer_dir,
                                                                 tmp_path):
    config = _config(transfer_dir, demo_set="transfer", **{
        "model.init_from": str(source_run), "data.mean_rgb": (1.0, 2.0, 3.0),
        "data.channel_order": "BGR"})
    workdir = tmp_path / "ft"
    with pytest.raises(finetune.FineTuneError,
                       match=r"--config.data.channel_order='BGR' \(the source has 'RGB'\).*"
                             r"init_from_flags_win=True"):
        loop.train_and_evaluate(config, str(workdir),
                                explicit_keys={"data.channel_order", "model.width"})
    assert not workdir.exists()
    # The same values from the config file give way to the source's.
    plan = loop._plan(config, str(workdir), False, explicit_keys=())
    assert plan.config.data.channel_order == "RGB"
    assert tuple(plan.config.data.mean_rgb) == (127.5, 127.5, 127.5)
    # With the switch, the user's value wins.
    config.model.init_from_flags_win = True
    plan = loop._plan(config, str(workdir), False, explicit_keys={"data.channel_order"})
    assert plan.config.data.channel_order == "BGR"
    assert tuple(plan.config.data.mean_rgb) == (127.5, 127.5, 127.5)  # not explicit
    assert not workdir.exists()


@pytest.mark.slow
def test_a_seeded_run_resumes_from_its_checkpoints_without_its_source(
        source_run, transfer_dir, tmp_path, caplog):
    copy = tmp_path / "source_copy"
    shutil.copytree(source_run, copy)
    workdir = tmp_path / "ft"
    keys = {"model.init_from": str(copy), "train.trainable_layers": "fc*"}
    _, first = _finetune(transfer_dir, workdir, **keys)
    shutil.rmtree(copy)  # the source is gone; the run's config.json recorded what it gave
    keys["train.total_epochs"] = 2
    with caplog.at_level("INFO", logger="absl"):  # absl's own level, whatever ran before
        config = _config(transfer_dir, demo_set="transfer", **keys)
        again = loop.train_and_evaluate(config, str(workdir), allow_config_change=True)
    assert again["step"] == 6 and first["step"] == 3
    assert "is ignored" in caplog.text and "resumes from them" in caplog.text


def _folder_of(small_demo_dir, root, classes):
    for split in ("train", "val"):
        for name in classes:
            source = small_demo_dir / split / name
            if not source.exists():  # a class the source does not know
                source = small_demo_dir / split / "disk"
            shutil.copytree(source, root / split / name)
    return root


def test_same_classes_map_by_name_onto_the_sources_order(source_run, small_demo_dir,
                                                         tmp_path):
    data = _folder_of(small_demo_dir, tmp_path / "data", ["ring", "disk", "triangle"])
    config = _config(data, **{"model.init_from": str(source_run),
                              "data.source": "image_folder"})
    config.train.global_batch_size = 8
    plan = loop._plan(config, str(tmp_path / "ft"), False)
    order = list(demo.CLASS_NAMES)
    assert plan.train_split.class_names == tuple(order) and plan.seed.initialised == ()
    labels = {os.path.basename(os.path.dirname(p)): int(l)
              for p, l in zip(plan.train_split.paths, plan.train_split.labels)}
    assert labels == {name: order.index(name) for name in ("ring", "disk", "triangle")}
    # A folder class the source does not know is refused by name, before any write.
    other = _folder_of(small_demo_dir, tmp_path / "other", ["ring", "teapot", "disk"])
    config.data.data_dir = str(other)
    with pytest.raises(finetune.FineTuneError, match=r"'teapot'.*num_classes=3"):
        loop._plan(config, str(tmp_path / "ft"), False)
    assert not (tmp_path / "ft").exists()


# ---------------------------------------------------------------------- refused settings


def test_bad_fine_tuning_settings_stop_before_any_write(source_run, transfer_dir, tmp_path):
    workdir = tmp_path / "ft"
    cases = [
        ({"model.init_from": str(tmp_path / "nowhere")},
         finetune.FineTuneError, r"model.init_from: Model source .*nowhere.* does not exist"),
        ({"model.init_from": str(source_run), "train.trainable_layers": "fc7"},
         finetune.FineTuneError, r"freezes fc8, which starts fresh \(6 classes.*has 10\)"),
        ({"model.init_from": str(source_run), "train.trainable_layers": "fc9,fc8"},
         config_lib.ConfigError, r"'fc9' matches none of the network's layers conv1, conv2, "
                                 r"conv3, conv4, conv5, fc6, fc7, fc8"),
        ({"model.init_from": str(source_run), "train.lr_multipliers": "fc8=10,pool5=2"},
         config_lib.ConfigError, r"'pool5' matches none of the network's layers conv1,"),
        ({"model.init_from": str(source_run), "train.lr_multipliers": "fc8=ten"},
         config_lib.ConfigError, r"item 'fc8=ten' is not LAYER=NUMBER"),
        ({"model.init_from": str(source_run), "train.trainable_layers": "fc8",
          "train.lr_multipliers": "fc7=2"},
         config_lib.ConfigError, r"fc7 do not train"),
        ({"train.trainable_layers": "fc8"},
         config_lib.ConfigError, r"freezes conv1, .*, fc7, but model.init_from is ''"),
        # Another width than the source's (the user's flag wins): fc6.. do not fit.
        ({"model.init_from": str(source_run), "model.width": 0.5,
          "model.init_from_flags_win": True},
         finetune.FineTuneError, r"conv1: the run has \(11, 11, 3, 48\), \(48,\), the source "
                                 r"has \(11, 11, 3, 24\), \(24,\)"),
        # Another variant (the user's flag wins): one_tower's layers are not the paper's.
        ({"model.init_from": str(source_run), "model.variant": "one_tower",
          "model.image_size": 63, "model.init_from_flags_win": True},
         finetune.FineTuneError, r"conv2: the run has \(5, 5, 16, 48\), \(48,\), the source "
                                 r"has \(5, 5, 12, 64\), \(64,\)"),
    ]
    for keys, error, message in cases:
        config = _config(transfer_dir, demo_set="transfer", **keys)
        with pytest.raises(error, match=message):
            loop.train_and_evaluate(config, str(workdir),
                                    explicit_keys={"model.width", "model.variant",
                                                   "model.image_size"})
        assert not workdir.exists(), keys


def test_a_directory_of_no_kind_is_named(transfer_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    config = _config(transfer_dir, demo_set="transfer",
                     **{"model.init_from": str(tmp_path / "empty")})
    with pytest.raises(finetune.FineTuneError, match="is a directory of none of the kinds"):
        loop.train_and_evaluate(config, str(tmp_path / "ft"))
    assert not (tmp_path / "ft").exists()


def test_layer_patterns():
    layers = finetune.layer_names("paper")
    assert layers == ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
    assert finetune.select_layers("fc8, conv[45]", layers) == ("conv4", "conv5", "fc8")
    assert finetune.select_layers("", layers) == layers
    assert finetune.parse_lr_multipliers("fc*=2,conv1=0.5", layers) == {
        "fc6": 2.0, "fc7": 2.0, "fc8": 2.0, "conv1": 0.5}
    for text, message in [("fc8=10,fc*=2", "gets two multipliers"), ("fc8=0", "> 0"),
                          ("fc8=inf", "> 0"), ("fc8,,fc7", "an empty item")]:
        with pytest.raises(finetune.FineTuneError, match=message):
            if "=" in text:
                finetune.parse_lr_multipliers(text, layers)
            else:
                finetune.select_layers(text, layers)
    assert finetune.owning_layer("conv3_bn/moving_mean") == "conv3"


def test_cli_names_a_contradicting_flag_and_writes_nothing(source_run, tmp_path):
    workdir = tmp_path / "ft"
    result = subprocess.run(
        [sys.executable, "-m", "alexnet_tf.cli.train", "--config=configs/demo_finetune.py",
         f"--workdir={workdir}", f"--config.model.init_from={source_run}",
         "--config.data.std_rgb=(1.0,1.0,1.0)", f"--config.data.data_dir={tmp_path / 'd'}"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode != 0
    assert ("--config.data.std_rgb=(1.0, 1.0, 1.0) (the source has (64.0, 64.0, 64.0))"
            in result.stderr), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not workdir.exists() and not (tmp_path / "d").exists()


@pytest.mark.parametrize("given", [True, False])
def test_the_readme_fine_tune_command_parses_and_names_its_source(tmp_path, given):
    # configs/finetune.py leaves init_from to the user; filling it with the flag the
    # README and the converter print used to fail inside config_flags (a traceback).
    workdir = tmp_path / "ft"
    flags = [f"--config.model.init_from={tmp_path / 'nowhere'}"] if given else []
    result = subprocess.run(
        [sys.executable, "-m", "alexnet_tf.cli.train", "--config=configs/finetune.py",
         f"--workdir={workdir}", *flags],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    expected = (f"Model source '{tmp_path / 'nowhere'}' does not exist" if given else
                "Config key 'model.init_from' has no value: the config file leaves it to you")
    assert expected in result.stderr, result.stderr[-2000:]
    assert not workdir.exists()


@pytest.mark.slow
def test_a_resume_that_the_checkpoints_cannot_follow_is_refused_before_any_write(
        source_run, transfer_dir, tmp_path):
    # --allow_config_change with another width used to rewrite config.json, then fail to
    # restore: every later rerun adopted the new width back and failed again.
    workdir = tmp_path / "ft"
    keys = {"model.init_from": str(source_run), "train.trainable_layers": "fc*"}
    first, _ = _finetune(transfer_dir, workdir, **keys)
    config_json = (workdir / "config.json").read_text()
    width = dict(keys, **{"model.width": first.model.width * 2,
                          "model.init_from_flags_win": True})
    with pytest.raises(ValueError, match=r"has checkpoints of another network: conv1 has "
                       r".* cannot reshape one"):
        loop.train_and_evaluate(_config(transfer_dir, demo_set="transfer", **width),
                                str(workdir), allow_config_change=True,
                                explicit_keys={"model.width"})
    other_source = dict(keys, **{"model.init_from": str(workdir)})
    with pytest.raises(ValueError, match=r"model.init_from cannot change when a run resumes"):
        loop.train_and_evaluate(_config(transfer_dir, demo_set="transfer", **other_source),
                                str(workdir), allow_config_change=True)
    assert (workdir / "config.json").read_text() == config_json
    assert not list(workdir.glob("config.*.json"))
