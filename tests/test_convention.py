"""The input convention (`alexnet_tf.convention.InputConvention`): built from a config,
saved and read back with every run, checked on construction, the same arithmetic as the
pipeline."""

import json

import numpy as np
import pytest

from alexnet_tf import config as config_lib
from alexnet_tf.convention import ConventionError, InputConvention
from alexnet_tf.data.stats import IMAGENET_MEAN_RGB


def _config(**data):
    config = config_lib.base_config()
    config.model.image_size = 67
    for key, value in data.items():
        setattr(config.data, key, value)
    config.data.resize_size = data.get("resize_size", 76)
    return config


def test_from_config_reads_the_data_keys_and_the_model_size():
    convention = InputConvention.from_config(
        _config(mean_rgb=(1.0, 2.0, 3.0), std_rgb=(4.0, 5.0, 6.0), channel_order="BGR"))
    assert (convention.mean_rgb, convention.std_rgb, convention.channel_order) == (
        (1.0, 2.0, 3.0), (4.0, 5.0, 6.0), "BGR")
    assert (convention.image_size, convention.resize_size) == (67, 76)
    assert convention.mean_image is None
    assert InputConvention.from_config(config_lib.base_config()).mean_rgb == IMAGENET_MEAN_RGB


def test_stats_file_supplies_the_mean_and_the_mean_image(tmp_path):
    from alexnet_tf.data import stats

    rng = np.random.default_rng(0)
    computed = stats.compute_stats(rng.integers(0, 256, (6, 76, 76, 3), dtype=np.uint8),
                                   image_size=76, progress=False)
    path = str(tmp_path / "stats.npz")
    computed.save(path)
    per_channel = InputConvention.from_config(_config(stats_file=path))
    np.testing.assert_allclose(per_channel.mean_rgb, computed.mean_rgb)
    assert per_channel.mean_image is None
    image = InputConvention.from_config(_config(stats_file=path, mean="image"))
    np.testing.assert_array_equal(image.mean_image, computed.mean_image)


def test_save_and_load_round_trip_with_and_without_a_mean_image(tmp_path):
    plain = InputConvention(mean_rgb=(1, 2, 3), std_rgb=(2, 2, 2), channel_order="BGR",
                            image_size=67, resize_size=76)
    plain.save(tmp_path / "a")
    assert InputConvention.load(tmp_path / "a") == plain
    assert json.loads((tmp_path / "a" / "input_convention.json").read_text())["channel_order"] == "BGR"
    mean_image = np.random.default_rng(1).uniform(0, 255, (76, 76, 3)).astype(np.float32)
    with_image = plain.replace(mean_image=mean_image)
    with_image.save(tmp_path / "b")
    loaded = InputConvention.load(tmp_path / "b")
    assert loaded == with_image and loaded != plain
    np.testing.assert_array_equal(loaded.mean_image, mean_image)
    # Equal conventions key the same tf.function trace: they must hash equal.
    assert hash(loaded) == hash(with_image) and len({plain, with_image, loaded}) == 2


@pytest.mark.parametrize("changes, message", [
    ({"channel_order": "RBG"}, "channel_order must be one of"),
    ({"std_rgb": (1.0, 0.0, 1.0)}, r"std_rgb must be > 0"),
    ({"mean_rgb": (1.0, 2.0)}, r"mean_rgb must hold three finite numbers"),
    ({"mean_rgb": (1.0, float("nan"), 2.0)}, r"mean_rgb must hold three finite numbers"),
    ({"std_rgb": (1.0, float("inf"), 2.0)}, r"std_rgb must hold three finite numbers"),
    ({"mean_rgb": "123"}, r"mean_rgb must hold three finite numbers"),
    ({"mean_rgb": {1.0, 2.0, 3.0}}, r"mean_rgb must hold three finite numbers"),
    ({"mean_rgb": (True, 2.0, 3.0)}, r"mean_rgb must hold three finite numbers"),
    ({"image_size": 0}, r"image_size must be an integer in \[1, 32768\]"),
    ({"image_size": 1 << 70, "resize_size": 1 << 70}, r"image_size must be an integer in"),
    ({"mean_image": np.full((76, 76, 3), np.nan)}, "mean_image must be finite"),
    ({"mean_image": np.full((76, 76, 3), 1e40)}, "mean_image must be finite"),
    ({"mean_image": np.full((76, 76, 3), "x")}, "mean_image must hold real numbers"),
    ({"resize_size": 60}, r"resize_size \(60\) must be at least image_size \(67\)"),
    ({"mean_image": np.zeros((67, 67, 3))}, r"mean_image must have shape \(76, 76, 3\)"),
])
def test_bad_values_are_named(changes, message):
    base = dict(image_size=67, resize_size=76)
    with pytest.raises(ConventionError, match=message):
        InputConvention(**{**base, **changes})


def test_unknown_fields_and_missing_mean_image_are_refused(tmp_path):
    with pytest.raises(ConventionError, match=r"Unknown input-convention fields \['colour'\]"):
        InputConvention.from_dict({"colour": "blue"})
    path = tmp_path / "input_convention.json"
    path.write_text(json.dumps(dict(InputConvention().to_dict(), has_mean_image=True)))
    with pytest.raises(ConventionError, match="names a mean image, but .* is missing"):
        InputConvention.load(tmp_path)
    path.write_text("{not json")
    with pytest.raises(ConventionError, match="is not an input convention"):
        InputConvention.load(tmp_path)
    # No silent defaults, no other format, no non-finite JSON constants.
    path.write_text(json.dumps({"format": "alexnet_tf.input_convention/1"}))
    with pytest.raises(ConventionError, match=r"lacks \['channel_order', 'image_size'"):
        InputConvention.load(tmp_path)
    path.write_text(json.dumps(dict(InputConvention().to_dict(), format="x/99")))
    with pytest.raises(ConventionError, match="format 'x/99' is not"):
        InputConvention.load(tmp_path)
    path.write_text(json.dumps(dict(InputConvention().to_dict(), has_mean_image="false")))
    with pytest.raises(ConventionError, match="has_mean_image must be true or false"):
        InputConvention.load(tmp_path)
    path.write_text(json.dumps(InputConvention().to_dict()).replace("123.68", "NaN"))
    with pytest.raises(ConventionError, match="NaN is not a number"):
        InputConvention.load(tmp_path)
    path.write_text("[1, 2]")
    with pytest.raises(ConventionError, match="is a JSON object, got list"):
        InputConvention.load(tmp_path)


def test_the_mean_image_is_a_private_read_only_copy():
    array = np.ones((76, 76, 3), np.float32)
    convention = InputConvention(image_size=67, resize_size=76, mean_image=array)
    before = hash(convention)
    array[0, 0, 0] = 99.0  # the caller's array changes; the convention does not
    assert convention.mean_image[0, 0, 0] == 1.0 and hash(convention) == before
    with pytest.raises(ValueError):
        convention.mean_image[0, 0, 0] = 5.0


def test_normalize_is_the_pipelines_arithmetic():
    import tensorflow as tf

    from alexnet_tf.data import preprocess

    convention = InputConvention(mean_rgb=(120, 110, 100), std_rgb=(60, 50, 40),
                                 channel_order="BGR", image_size=4, resize_size=4)
    pixels = np.random.default_rng(2).integers(0, 256, (4, 4, 3)).astype(np.float32)
    ours = convention.normalize(pixels)
    theirs = preprocess.normalize(tf.constant(pixels), convention)  # channel order included
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-6)
    np.testing.assert_allclose(ours[..., 2], (pixels[..., 0] - 120) / 60, rtol=1e-6)
