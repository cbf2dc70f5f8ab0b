"""Config files load and validate; bad keys and values fail with named errors, before any write."""

import importlib.util
import json
import os
import subprocess
import sys

import ml_collections
import pytest

from alexnet_tf import config as config_lib
from conftest import REPO_ROOT

CONFIG_FILES = sorted((REPO_ROOT / "configs").glob("*.py"))
# Each config file with the arguments its docstring documents.
CONFIG_ARGS = {"demo.py": [None, "paper", "modern"], "demo_finetune.py": [None, "scratch"],
               "finetune.py": ["runs/demo"]}


def load_config_file(path, arg=None):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def test_there_are_the_three_recipes():
    assert {p.name for p in CONFIG_FILES} >= {"demo.py", "paper.py", "modern.py"}


@pytest.mark.parametrize(
    "path,arg", [(p, a) for p in CONFIG_FILES for a in CONFIG_ARGS.get(p.name, [None])],
    ids=lambda x: getattr(x, "name", str(x)))
def test_every_config_file_loads_and_validates(path, arg):
    config = load_config_file(path, arg)
    assert isinstance(config, ml_collections.ConfigDict)
    assert config_lib.validate(config) is config
    # Each file opens with the command that runs it (STYLE.md, point 9).
    assert "alexnet-train --config=configs/" in path.read_text().split('"""')[1]


def test_paper_config_is_the_paper_recipe():
    c = load_config_file(REPO_ROOT / "configs" / "paper.py")
    assert (c.model.variant, c.model.image_size, c.model.dropout_rate) == ("paper", 227, 0.5)
    assert (c.train.global_batch_size, c.train.learning_rate, c.train.momentum) == (128, 0.01, 0.9)
    assert (c.train.weight_decay, c.train.weight_decay_mode) == (0.0005, "coupled")
    assert (c.train.schedule, c.train.plateau_factor, c.train.plateau_max_drops) == ("plateau", 0.1, 3)
    assert (c.data.resize_size, c.data.augmentation, c.data.pca_lighting_std) == (256, "paper", 0.1)


def test_base_config_is_locked_against_typos():
    config = config_lib.base_config()
    with pytest.raises(AttributeError, match="widht"):
        config.model.widht = 0.5


def test_unknown_key_is_named_with_a_suggestion():
    config = config_lib.base_config()
    config.unlock()
    config.train.learning_rte = 0.1
    with pytest.raises(config_lib.ConfigError,
                       match=r"'train.learning_rte' \(did you mean 'train.learning_rate'\?\)"):
        config_lib.validate(config)


def test_missing_key_is_named():
    config = config_lib.base_config()
    config.unlock()
    del config.train["momentum"]
    with pytest.raises(config_lib.ConfigError, match="'train.momentum' is missing"):
        config_lib.validate(config)


@pytest.mark.parametrize("key,value,message", [
    ("model.variant", "papr", r"Unknown AlexNet variant 'papr'; expected one of"),
    ("model.image_size", 60, r"image_size=60 is too small .* smallest input .* is 67"),
    ("model.width", 0.3, r"width=0.3 gives conv2 .* divisible by groups=2"),
    ("model.num_classes", 0, r"num_classes must be a positive integer, got 0"),
    ("model.init", "xavier", r"init must be None or one of .* got 'xavier'"),
    ("model.grouped_conv_implementation", "fast", r"'model.grouped_conv_implementation' is 'fast'"),
    ("data.source", "imagenet22k", r"'data.source' is 'imagenet22k'; expected one of"),
    ("data.resize_size", 200, r"'data.resize_size' is 200; expected at least model.image_size"),
    ("data.std_rgb", (1.0, 0.0, 1.0), r"'data.std_rgb' .*expected three numbers > 0"),
    ("data.mean_rgb", (1.0, 2.0), r"'data.mean_rgb' .*expected three numbers"),
    ("train.global_batch_size", 0, r"'train.global_batch_size' is 0; expected a number > 0"),
    ("train.learning_rate", -0.1, r"'train.learning_rate' is -0.1"),
    ("train.momentum", 1.0, r"'train.momentum' is 1.0; expected a number in \[0, 1\)"),
    ("train.schedule", "step", r"'train.schedule' is 'step'"),
    ("train.optimizer", "lamb", r"'train.optimizer' is 'lamb'"),
    ("data.label_smoothing", 1.5, r"'data.label_smoothing' is 1.5"),
    ("data.on_bad_record", "ignore", r"'data.on_bad_record' is 'ignore'"),
    ("data.channel_order", "GBR", r"'data.channel_order' is 'GBR'"),
    ("data.mean", "image", r"'data.mean' is 'image'; expected 'per_channel' unless data.stats_file"),
    ("data.stats_file", "/nonexistent.npz", r"'data.stats_file' is '/nonexistent.npz'"),
    # NaN passes every range check (it compares False); every float must be finite.
    ("train.learning_rate", float("nan"), r"'train.learning_rate' is nan; expected a finite"),
    ("train.learning_rate", float("inf"), r"'train.learning_rate' is inf; expected a finite"),
    ("train.weight_decay", float("nan"), r"'train.weight_decay' is nan; expected a finite"),
    ("train.warmup_epochs", float("nan"), r"'train.warmup_epochs' is nan; expected a finite"),
    ("model.width", float("nan"), r"'model.width' is nan; expected a finite"),
    ("data.mean_rgb", (float("inf"), 0.0, 0.0), r"'data.mean_rgb' .*expected finite numbers"),
    ("data.std_rgb", [1.0, float("nan"), 1.0], r"'data.std_rgb' .*expected finite numbers"),
])
def test_bad_values_are_named(key, value, message):
    config = config_lib.base_config()
    group, name = key.split(".")
    config[group][name] = value
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.validate(config)


def test_wrong_type_is_named():
    config = config_lib.base_config()
    config.unlock()
    config.model = dict(config.model, image_size="227")
    with pytest.raises(config_lib.ConfigError, match=r"'model.image_size' is '227'; expected an int"):
        config_lib.validate(config)


def test_written_config_reads_back_equal(tmp_path):
    config = load_config_file(REPO_ROOT / "configs" / "modern.py")
    path = config_lib.write_config(config, str(tmp_path / "config.json"))
    assert json.load(open(path))["model"]["variant"] == "modern"
    again = config_lib.read_config(path)
    assert again.to_dict() == config.to_dict()


def _train(*args, cwd=REPO_ROOT, timeout=120):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "alexnet_tf.train", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args,message", [
    (["--config=configs/nope.py"], "nope.py"),
    (["--config=configs/demo.py", "--config.model.widht=0.5"], "widht"),
    (["--config=configs/demo.py", "--config.model.image_size=60"],
     "image_size=60 is too small"),
    (["--config=configs/paper.py"], "config.data.data_dir is empty"),
    (["--config=configs/paper.py", "--config.data.data_dir=/nonexistent"],
     "config.data.data_dir '/nonexistent' is not a directory"),
    (["--config=configs/demo.py", "--config.model.width=0.3"], "width=0.3 gives conv2"),
])
def test_binary_stops_before_writing_anything(tmp_path, args, message):
    workdir = tmp_path / "run"
    result = _train(*args, f"--workdir={workdir}")
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-2000:]
    assert not workdir.exists(), "nothing may be written before the config is valid"


def test_fine_tuning_recipes():
    """configs/finetune.py leaves the source to the user and stops without it;
    configs/demo_finetune.py fine-tunes the demo run, and :scratch is the same network on
    the same images from random weights."""
    recipe = load_config_file(REPO_ROOT / "configs" / "finetune.py")
    with pytest.raises(config_lib.ConfigError, match=r"'model.init_from' has no value.*"
                                                     r"--config.model.init_from="):
        config_lib.validate(recipe)
    recipe.model.init_from = "weights/caffe"
    config_lib.validate(recipe)
    assert (recipe.train.learning_rate, recipe.train.lr_multipliers) == (0.001, "fc8=10")
    assert load_config_file(REPO_ROOT / "configs" / "finetune.py", "w").model.init_from == "w"
    tuned = load_config_file(REPO_ROOT / "configs" / "demo_finetune.py")
    scratch = load_config_file(REPO_ROOT / "configs" / "demo_finetune.py", "scratch")
    assert tuned.model.init_from == "runs/demo" and scratch.model.init_from == ""
    assert tuned.data.to_dict() == scratch.data.to_dict()  # the same images
    assert (tuned.data.demo_set, tuned.model.num_classes) == ("transfer", 6)
    for key in ("global_batch_size", "total_epochs", "steps_per_epoch"):
        assert tuned.train[key] == scratch.train[key], key  # the same steps
    with pytest.raises(ValueError, match="'finetune' .* or 'scratch'"):
        load_config_file(REPO_ROOT / "configs" / "demo_finetune.py", "other")


def test_demo_sets_are_the_demo_modules():
    from alexnet_tf.data import demo

    assert config_lib.DEMO_SETS == tuple(demo.SETS)
    config = config_lib.base_config()
    config.data.demo_set = "animals"
    with pytest.raises(config_lib.ConfigError, match=r"'data.demo_set' is 'animals'; expected "
                                                     r"one of \['shapes', 'transfer'\]"):
        config_lib.validate(config)


def test_fine_tuning_keys_are_checked_against_the_variants_layers():
    config = config_lib.base_config()
    config.model.init_from = "runs/demo"
    config.train.trainable_layers = "conv*,fc8"
    config.train.lr_multipliers = "fc8=10,conv1=0.1"
    config_lib.validate(config)
    config.train.lr_multipliers = "fc8=10,fc9=2"
    with pytest.raises(config_lib.ConfigError, match="'fc9' matches none of the network's "
                                                     "layers conv1, conv2, conv3, conv4, "
                                                     "conv5, fc6, fc7, fc8"):
        config_lib.validate(config)
    config.train.lr_multipliers = ""
    config.train.trainable_layers = ""
    config.model.init_from = ""
    config.model.init_from_new_head = True
    with pytest.raises(config_lib.ConfigError, match="init_from_new_head' is True, but "
                                                     "model.init_from is ''"):
        config_lib.validate(config)
