"""Tests of the procedurally generated demo dataset (alexnet_tf.data.demo)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.data import demo

REPO_ROOT = pathlib.Path(__file__).absolute().parent.parent
SMALL = dict(train_per_class=3, val_per_class=2)


def _files(root: pathlib.Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _mtimes(root: pathlib.Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns
            for p in sorted(root.rglob("*")) if p.is_file()}


def _siblings(path: pathlib.Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


@pytest.fixture(scope="module")
def medium_dataset(tmp_path_factory) -> pathlib.Path:
    """20 train and 10 val images per class, shared by the read-only tests."""
    root = tmp_path_factory.mktemp("medium") / "demo"
    return demo.write_demo_dataset(root, seed=0, train_per_class=20, val_per_class=10)


def _load_split(root: pathlib.Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for label, class_name in enumerate(demo.CLASS_NAMES):
        for path in sorted((root / split / class_name).glob("*.jpg")):
            images.append(tf.io.decode_jpeg(tf.io.read_file(str(path)), channels=3).numpy())
            labels.append(label)
    return np.stack(images).astype(np.float64), np.array(labels)


# ---------------------------------------------------------------- classes, images


def test_class_names_are_ten_sorted_unique_names():
    assert len(demo.CLASS_NAMES) == 10
    assert len(set(demo.CLASS_NAMES)) == 10
    # Class indices on disk come from sorted folder names.
    assert list(demo.CLASS_NAMES) == sorted(demo.CLASS_NAMES)


@pytest.mark.parametrize("class_name", demo.CLASS_NAMES + demo.TRANSFER_CLASS_NAMES)
def test_generate_image_is_a_deterministic_function_of_the_rng(class_name):
    a = demo.generate_image(class_name, np.random.default_rng(7))
    b = demo.generate_image(class_name, np.random.default_rng(7))
    c = demo.generate_image(class_name, np.random.default_rng(8))
    assert a.shape == (76, 76, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 5
    small = demo.generate_image(class_name, np.random.default_rng(7), image_size=32)
    assert small.shape == (32, 32, 3) and small.dtype == np.uint8


def test_generated_images_always_have_visible_contrast():
    grey_weights = np.array([0.299, 0.587, 0.114])
    for class_name in demo.CLASS_NAMES + demo.TRANSFER_CLASS_NAMES:
        for i in range(20):
            image = demo.generate_image(class_name, np.random.default_rng([3, i]))
            grey = image.astype(np.float64) @ grey_weights
            # Central crop: the object or texture must be inside it.
            centre = grey[10:66, 10:66]
            lo, hi = np.percentile(centre, [2, 98])
            assert hi - lo > 50, (class_name, i, lo, hi)


# ---------------------------------------------------------------- on-disk dataset


def test_layout_counts_manifest_and_decoding(tmp_path):
    root = demo.write_demo_dataset(tmp_path / "demo", seed=3, train_per_class=4,
                                   val_per_class=2, image_size=40, jpeg_quality=80)
    assert root == tmp_path / "demo"
    assert sorted(p.name for p in root.iterdir()) == ["MANIFEST.json", "train", "val"]
    for split, per_class in (("train", 4), ("val", 2)):
        assert sorted(p.name for p in (root / split).iterdir()) == list(demo.CLASS_NAMES)
        for class_name in demo.CLASS_NAMES:
            files = sorted((root / split / class_name).iterdir())
            assert len(files) == per_class
            for path in files:
                assert path.suffix == ".jpg"
                image = tf.io.decode_jpeg(tf.io.read_file(str(path)))
                assert tuple(image.shape) == (40, 40, 3)
                assert image.dtype == tf.uint8

    manifest = json.loads((root / "MANIFEST.json").read_text())
    assert manifest["format_version"] == demo.FORMAT_VERSION
    assert manifest["params"] == dict(seed=3, train_per_class=4, val_per_class=2,
                                      image_size=40, jpeg_quality=80)
    assert manifest["class_names"] == list(demo.CLASS_NAMES)
    assert manifest["counts"] == {"train": 40, "val": 20}
    # Every image is a different draw.
    jpegs = [p.read_bytes() for p in root.rglob("*.jpg")]
    assert len(jpegs) == 60 and len(set(jpegs)) == 60
    # The temporary directory was renamed into place; nothing is left beside it.
    assert _siblings(root) == []


def test_same_seed_gives_identical_bytes_and_other_seed_other_images(tmp_path):
    a = _files(demo.write_demo_dataset(tmp_path / "a", seed=5, **SMALL))
    b = _files(demo.write_demo_dataset(tmp_path / "b", seed=5, **SMALL))
    c = _files(demo.write_demo_dataset(tmp_path / "c", seed=6, **SMALL))
    assert len(a) == 1 + 10 * 5
    assert a == b
    assert a.keys() == c.keys()
    jpegs = [name for name in a if name.endswith(".jpg")]
    assert all(a[name] != c[name] for name in jpegs)


def test_images_do_not_depend_on_how_many_are_generated(tmp_path):
    few = _files(demo.write_demo_dataset(tmp_path / "few", train_per_class=2,
                                         val_per_class=1))
    many = _files(demo.write_demo_dataset(tmp_path / "many", train_per_class=5,
                                          val_per_class=3))
    jpegs = [name for name in few if name.endswith(".jpg")]
    assert len(jpegs) == 30
    assert all(few[name] == many[name] for name in jpegs)


def test_classes_differ_in_structure_not_in_colour(medium_dataset):
    """Nearest-centroid classifiers: mean colour is at chance, structure is not."""
    train_x, train_y = _load_split(medium_dataset, "train")
    val_x, val_y = _load_split(medium_dataset, "val")

    def nearest_centroid_accuracy(features):
        f_train, f_val = features(train_x), features(val_x)
        mean, std = f_train.mean(0), f_train.std(0) + 1e-9
        f_train, f_val = (f_train - mean) / std, (f_val - mean) / std
        centroids = np.stack([f_train[train_y == k].mean(0) for k in range(10)])
        distances = ((f_val[:, None, :] - centroids[None]) ** 2).sum(-1)
        return float((distances.argmin(1) == val_y).mean())

    def mean_colour(x):
        return x.mean(axis=(1, 2))

    def colour_histogram(x, bins=3):
        # Fraction of pixels in each of 27 RGB cubes: catches a class-specific
        # foreground colour even where the foreground is too small to move the mean.
        q = np.minimum((x * (bins / 256)).astype(int), bins - 1)
        cube = (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]
        return np.stack([np.bincount(c.ravel(), minlength=bins ** 3) for c in cube])

    def amplitude_spectrum(x, k=8):
        # Grey, standardised per image (drops colour, brightness, contrast and
        # polarity), then the low-frequency Fourier amplitudes (drop position).
        grey = x @ np.array([0.299, 0.587, 0.114])
        grey = grey - grey.mean(axis=(1, 2), keepdims=True)
        grey = grey / (grey.std(axis=(1, 2), keepdims=True) + 1e-6)
        amplitude = np.fft.fftshift(np.abs(np.fft.fft2(grey)), axes=(1, 2))
        c = grey.shape[1] // 2
        return np.log1p(amplitude[:, c - k:c + k, c - k:c + k]).reshape(len(x), -1)

    colour_accuracy = nearest_centroid_accuracy(mean_colour)
    histogram_accuracy = nearest_centroid_accuracy(colour_histogram)
    structure_accuracy = nearest_centroid_accuracy(amplitude_spectrum)
    # Chance is 0.1 on these 100 validation images.
    assert colour_accuracy < 0.25, colour_accuracy
    assert histogram_accuracy < 0.25, histogram_accuracy
    assert structure_accuracy > 0.5, structure_accuracy


# ---------------------------------------------------------------- ensure / safety


def test_ensure_is_a_no_op_when_parameters_match(tmp_path):
    root = demo.ensure_demo_dataset(tmp_path / "demo", seed=1, **SMALL)
    # Back-date every file: any rewrite would give it a current mtime.
    for path in root.rglob("*"):
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = _mtimes(root)
    assert demo.ensure_demo_dataset(root, seed=1, **SMALL) == root
    assert _mtimes(root) == before
    assert set(before.values()) == {1_000_000_000}


def test_ensure_regenerates_when_parameters_differ(tmp_path):
    root = tmp_path / "demo"
    old = _files(demo.ensure_demo_dataset(root, seed=1, train_per_class=4,
                                          val_per_class=2))
    new = _files(demo.ensure_demo_dataset(root, seed=2, train_per_class=2,
                                          val_per_class=2))
    assert json.loads(new["MANIFEST.json"])["params"]["seed"] == 2
    # Old files are gone, not mixed in: 2 train images per class now, not 4.
    assert len([n for n in new if n.startswith("train")]) == 20
    assert len([n for n in new if n.startswith("val")]) == 20
    assert all(new[n] != old[n] for n in new if n.endswith(".jpg"))
    assert new == _files(demo.write_demo_dataset(tmp_path / "fresh", seed=2,
                                                 train_per_class=2, val_per_class=2))
    assert _siblings(root) == ["fresh"]


def test_ensure_regenerates_an_incomplete_dataset(tmp_path):
    root = demo.ensure_demo_dataset(tmp_path / "demo", **SMALL)
    missing = root / "val" / "ring" / "ring_00001.jpg"
    expected = missing.read_bytes()
    missing.unlink()
    demo.ensure_demo_dataset(root, **SMALL)
    assert missing.read_bytes() == expected


@pytest.mark.parametrize("function", [demo.write_demo_dataset, demo.ensure_demo_dataset])
def test_refuses_a_directory_it_did_not_write(tmp_path, function):
    root = tmp_path / "photos"
    (root / "train").mkdir(parents=True)
    (root / "train" / "cat.jpg").write_bytes(b"not mine")
    (root / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="photos"):
        function(root, **SMALL)
    assert (root / "train" / "cat.jpg").read_bytes() == b"not mine"
    assert (root / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in root.iterdir()) == ["notes.txt", "train"]
    assert _siblings(root) == []


def test_refuses_a_foreign_manifest_and_a_file(tmp_path):
    root = tmp_path / "other"
    root.mkdir()
    (root / "MANIFEST.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="other"):
        demo.ensure_demo_dataset(root, **SMALL)
    assert (root / "MANIFEST.json").read_text() == '{"format": "something else"}'

    a_file = tmp_path / "a_file"
    a_file.write_text("data")
    with pytest.raises(ValueError, match="a_file"):
        demo.write_demo_dataset(a_file, **SMALL)
    assert a_file.read_text() == "data"


def test_an_empty_directory_is_accepted(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    demo.ensure_demo_dataset(root, **SMALL)
    assert len(list(root.rglob("*.jpg"))) == 50


def test_a_symlinked_root_writes_through_the_link(tmp_path):
    target = tmp_path / "big_disk" / "demo"
    target.mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    assert demo.ensure_demo_dataset(link, **SMALL) == link
    assert link.is_symlink()
    assert len(list(target.rglob("*.jpg"))) == 50
    demo.ensure_demo_dataset(link, seed=9, **SMALL)  # Replaces the target's content.
    assert link.is_symlink()
    assert json.loads((target / "MANIFEST.json").read_text())["params"]["seed"] == 9
    assert sorted(p.name for p in target.parent.iterdir()) == ["demo"]


def test_an_interrupted_write_leaves_no_dataset_and_keeps_the_old_one(tmp_path,
                                                                       monkeypatch):
    real_generate = demo.generate_image
    calls = []

    def failing_generate(*args, **kwargs):
        calls.append(1)
        if len(calls) > 7:
            raise KeyboardInterrupt
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(demo, "generate_image", failing_generate)
    fresh = tmp_path / "fresh"
    with pytest.raises(KeyboardInterrupt):
        demo.write_demo_dataset(fresh, **SMALL)
    assert not fresh.exists()
    assert list(tmp_path.iterdir()) == []

    monkeypatch.setattr(demo, "generate_image", real_generate)
    old = _files(demo.write_demo_dataset(tmp_path / "old", seed=1, **SMALL))
    calls.clear()
    monkeypatch.setattr(demo, "generate_image", failing_generate)
    with pytest.raises(KeyboardInterrupt):
        demo.ensure_demo_dataset(tmp_path / "old", seed=2, **SMALL)
    assert _files(tmp_path / "old") == old
    assert _siblings(tmp_path / "old") == []


def test_a_failed_final_rename_puts_the_old_dataset_back(tmp_path, monkeypatch):
    root = demo.write_demo_dataset(tmp_path / "demo", seed=1, **SMALL)
    old = _files(root)
    real_replace = os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # 1: old dataset aside, 2: new one into place.
            raise OSError("simulated failure")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        demo.write_demo_dataset(root, seed=2, **SMALL)
    assert _files(root) == old
    assert _siblings(root) == []


@pytest.mark.parametrize("kwargs, bad", [
    (dict(train_per_class=0), "0"),
    (dict(val_per_class=-3), "-3"),
    (dict(image_size=31), "31"),
    (dict(jpeg_quality=0), "0"),
    (dict(jpeg_quality=101), "101"),
    (dict(seed=-1), "-1"),
    (dict(train_per_class=2.5), "2.5"),
    (dict(val_per_class=True), "True"),
])
@pytest.mark.parametrize("function", [demo.write_demo_dataset, demo.ensure_demo_dataset])
def test_bad_arguments_raise_value_error_naming_the_value(tmp_path, function, kwargs,
                                                         bad):
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=rf"{name}.*got {bad}\b"):
        function(tmp_path / "demo", **kwargs)
    assert not (tmp_path / "demo").exists()


def test_unknown_class_name_raises_value_error_naming_it():
    with pytest.raises(ValueError, match="'hexagon'.*expected one of"):
        demo.generate_image("hexagon", np.random.default_rng(0))
    with pytest.raises(ValueError, match="image_size.*got 8"):
        demo.generate_image("disk", np.random.default_rng(0), image_size=8)


def test_command_line_writes_the_dataset(tmp_path):
    root = tmp_path / "cli"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run(
        [sys.executable, "-m", "alexnet_tf.data.demo", f"--root={root}", "--seed=4",
         "--train_per_class=2", "--val_per_class=1"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert _files(root) == _files(demo.write_demo_dataset(
        tmp_path / "api", seed=4, train_per_class=2, val_per_class=1))


def test_a_demo_dataset_holding_user_files_is_never_replaced(tmp_path):
    """Other parameters replace a demo dataset (deleting it) only when every file in it
    is one the demo wrote: a user's files put into it are kept, and it is refused."""
    root = demo.write_demo_dataset(tmp_path / "d", seed=0, train_per_class=1, val_per_class=1)
    (root / "notes.txt").write_text("mine")
    (root / "train" / "disk" / "my_photo.png").write_bytes(b"not the demo's")
    before = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    with pytest.raises(ValueError, match=r"also holds files alexnet_tf.data.demo did not "
                                         r"write, e.g. \['notes.txt', 'train/disk/my_photo.png'\]"):
        demo.ensure_demo_dataset(root, seed=0, train_per_class=2, val_per_class=1)
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == before
    # Without the user's files, the same call replaces it.
    (root / "notes.txt").unlink()
    (root / "train" / "disk" / "my_photo.png").unlink()
    demo.ensure_demo_dataset(root, seed=0, train_per_class=2, val_per_class=1)
    assert len(list((root / "train" / "disk").iterdir())) == 2


def test_the_default_demo_cache_is_one_folder_per_parameter_set(tmp_path, monkeypatch):
    """A run with other demo parameters writes its own set instead of replacing the one
    another run may be reading."""
    from alexnet_tf import config as config_lib
    from alexnet_tf.data import sources

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    data = config_lib.base_config().data
    data.demo_train_per_class, data.demo_val_per_class = 2, 1
    small = sources.load_split(data, "train")
    data.demo_train_per_class = 3
    larger = sources.load_split(data, "train")
    cache = tmp_path / "alexnet_tf" / "demo"
    assert sorted(os.listdir(cache)) == ["seed0-train2-val1", "seed0-train3-val1"]
    assert (len(small), len(larger)) == (20, 30)
    assert all(os.path.exists(p) for p in small.paths)  # the first set is still there


def test_a_training_run_says_once_that_the_demo_set_is_up_to_date(tmp_path, monkeypatch):
    # A run loads its train split, then its eval split, each through
    # ensure_demo_dataset: the dataset was reported twice per run.
    from alexnet_tf import config as config_lib
    from alexnet_tf.data import sources

    lines = []  # absl's info lines of the module, whatever verbosity earlier tests left
    monkeypatch.setattr(demo.logging, "info", lambda message, *args: lines.append(
        message % args if args else message))
    data = config_lib.base_config().data
    data.data_dir = str(tmp_path / "demo")
    data.demo_train_per_class, data.demo_val_per_class = 3, 2

    def training_run():
        lines.clear()
        train = sources.load_split(data, data.train_split)
        sources.load_split(data, data.eval_split, class_names=train.class_names)
        return [line for line in lines if "up to date" in line or "ready at" in line]

    # The first run writes the set: "ready", and nothing about it being up to date.
    first = training_run()
    assert len(first) == 1 and first[0].startswith("Demo dataset ready at "), first
    # A later run (a new process: nothing reported yet) finds it: "up to date", once.
    monkeypatch.setattr(demo, "_REPORTED", set())
    assert training_run() == [f"Demo dataset at {tmp_path / 'demo'} is up to date."]
    # Only the line is once: the check still runs on every call.
    (tmp_path / "demo" / "val" / "ring" / "ring_00001.jpg").unlink()
    assert any(line.startswith("Demo dataset ready at ") for line in training_run())


# ---------------------------------------------------------------- the transfer set


def test_the_transfer_set_has_other_classes_than_the_ten():
    assert demo.SETS == {"shapes": demo.CLASS_NAMES, "transfer": demo.TRANSFER_CLASS_NAMES}
    assert len(demo.TRANSFER_CLASS_NAMES) == 6
    assert list(demo.TRANSFER_CLASS_NAMES) == sorted(set(demo.TRANSFER_CLASS_NAMES))
    assert not set(demo.TRANSFER_CLASS_NAMES) & set(demo.CLASS_NAMES)


def test_transfer_set_layout_manifest_and_its_own_seeds(tmp_path):
    root = demo.write_demo_dataset(tmp_path / "t", seed=0, demo_set="transfer", **SMALL)
    for split, per_class in (("train", 3), ("val", 2)):
        assert sorted(p.name for p in (root / split).iterdir()) == list(
            demo.TRANSFER_CLASS_NAMES)
        assert all(len(list((root / split / c).iterdir())) == per_class
                   for c in demo.TRANSFER_CLASS_NAMES)
    manifest = json.loads((root / "MANIFEST.json").read_text())
    assert manifest["set"] == "transfer"
    assert manifest["class_names"] == list(demo.TRANSFER_CLASS_NAMES)
    assert manifest["counts"] == {"train": 18, "val": 12}
    # Keyed by (seed, split, class, index, set): not the colours of the shapes set's
    # image at the same position.
    first = tf.io.decode_jpeg(tf.io.read_file(str(
        root / "train" / "crescent" / "crescent_00000.jpg"))).numpy()
    expected = demo.generate_image("crescent", np.random.default_rng([0, 0, 0, 0, 1]))
    without_set = demo.generate_image("crescent", np.random.default_rng([0, 0, 0, 0]))
    assert np.abs(first.astype(int) - expected.astype(int)).mean() < 8  # JPEG's loss
    assert np.abs(first.astype(int) - without_set.astype(int)).mean() > 20
    # ensure: a no-op for the same set, a rewrite for the other one.
    before = _files(root)
    assert _files(demo.ensure_demo_dataset(root, seed=0, demo_set="transfer", **SMALL)) == before
    shapes = demo.ensure_demo_dataset(root, seed=0, **SMALL)
    assert sorted(p.name for p in (shapes / "train").iterdir()) == list(demo.CLASS_NAMES)
    with pytest.raises(ValueError, match=r"demo_set must be one of \['shapes', 'transfer'\], "
                                         r"got 'animals'"):
        demo.write_demo_dataset(tmp_path / "a", demo_set="animals", **SMALL)
    assert not (tmp_path / "a").exists()


def test_a_manifest_without_a_set_is_the_shapes_set(tmp_path):
    """Demo sets written before the transfer set existed stay valid (no rewrite)."""
    root = demo.write_demo_dataset(tmp_path / "d", seed=0, **SMALL)
    manifest = json.loads((root / "MANIFEST.json").read_text())
    del manifest["set"]
    (root / "MANIFEST.json").write_text(json.dumps(manifest))
    for path in root.rglob("*"):
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = _mtimes(root)
    demo.ensure_demo_dataset(root, seed=0, **SMALL)
    assert _mtimes(root) == before


def test_the_transfer_set_has_its_own_cache_folder(tmp_path, monkeypatch):
    from alexnet_tf import config as config_lib
    from alexnet_tf.data import sources

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    data = config_lib.base_config().data
    data.demo_set, data.demo_train_per_class, data.demo_val_per_class = "transfer", 2, 1
    split = sources.load_split(data, "train")
    assert split.class_names == demo.TRANSFER_CLASS_NAMES and len(split) == 12
    assert os.listdir(tmp_path / "alexnet_tf" / "demo") == ["transfer-seed0-train2-val1"]
