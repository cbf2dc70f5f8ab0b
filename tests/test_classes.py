"""One class order for every split (issue 13): label i is the training split's class i in
every split, in evaluation, in retrieval and on resuming; a split's class unknown to
training is refused by name; a class whose files are all unreadable is refused at
start-up. And TFRecord splits read exactly what their metadata (or a complete
<split>-NNNNN-of-MMMMM set) lists."""

import io
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from alexnet_tf import config as config_lib
from alexnet_tf.data import convert, sources, tfrecords
from conftest import REPO_ROOT
from test_config import load_config_file


def _jpeg(seed=0, size=(12, 10)):
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), np.uint8)).save(
        buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _folders(root, split, per_class):
    """root/split/<class>/<i>.jpg for {class: count}."""
    for name, count in per_class.items():
        folder = os.path.join(root, split, name)
        os.makedirs(folder, exist_ok=True)
        for i in range(count):
            with open(os.path.join(folder, f"{i}.jpg"), "wb") as f:
                f.write(_jpeg(i))


def _image_folder_config(data_dir, train_split="train", eval_split="val"):
    c = config_lib.base_config()
    c.data.source, c.data.data_dir = "image_folder", str(data_dir)
    c.data.train_split, c.data.eval_split = train_split, eval_split
    return c.data


def _labels(split):
    return sorted(int(label) for _, label, _, _ in split.records(training=False))


# --------------------------------------------------------------------- image folders

def test_eval_split_of_another_name_takes_the_training_class_order(tmp_path):
    # data.train_split=training, data.eval_split=validation: 'validation' lacks 'ant'.
    _folders(tmp_path, "training", {"ant": 1, "bee": 1, "cat": 1})
    _folders(tmp_path, "validation", {"bee": 2, "cat": 3})
    data = _image_folder_config(tmp_path, "training", "validation")
    val = sources.load_split(data, "validation")  # the training folders, unasked
    assert val.class_names == ("ant", "bee", "cat")
    assert _labels(val) == [1, 1, 2, 2, 2]  # 'cat' is 2, never 'bee'
    train = sources.load_split(data, "training")
    val = sources.load_split(data, "validation", train.class_names)
    assert val.class_names == train.class_names and _labels(val) == [1, 1, 2, 2, 2]


def test_eval_class_unknown_to_training_is_refused_by_name(tmp_path):
    _folders(tmp_path, "training", {"ant": 1, "bee": 1})
    _folders(tmp_path, "validation", {"bee": 1, "dog": 1})
    data = _image_folder_config(tmp_path, "training", "validation")
    train = sources.load_split(data, "training")
    with pytest.raises(ValueError, match=r"Split 'validation' .*class folder 'dog'"):
        sources.load_split(data, "validation", train.class_names)


def test_class_whose_files_are_all_unreadable_is_refused_by_name(tmp_path):
    _folders(tmp_path, "train", {"ant": 2})
    bad = tmp_path / "train" / "bee"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "notes.JPEG").write_bytes(b"this is not an image\n")
    with pytest.raises(ValueError, match=r"Class 'bee' .*none of them a non-empty JPEG"):
        sources.load_split(_image_folder_config(tmp_path), "train")
    (bad / "good.jpg").write_bytes(_jpeg())  # one readable image is enough
    assert sources.load_split(_image_folder_config(tmp_path), "train").class_names == (
        "ant", "bee")


# ------------------------------------------------------------------------- TFRecords

def _write_shard(path, examples):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for example in examples:
            writer.write(example.SerializeToString())


def _examples(labels, synsets=None, label_offset=1):
    return [tfrecords.make_example(_jpeg(i), label, label_offset=label_offset,
                                   synset=synsets[label] if synsets else "")
            for i, label in enumerate(labels)]


def _metadata(directory, classes, splits, **extra):
    (directory / "metadata.json").write_text(json.dumps({
        "label_offset": 1, "num_classes": len(classes),
        "classes": [{"index": i, "wnid": c, "name": c.upper()} for i, c in enumerate(classes)],
        "splits": splits, **extra}))


def _tfrecord(directory, split, **kwargs):
    return sources.TFRecordSource.from_directory(str(directory), split, label_offset=1,
                                                 shuffle_buffer=8, **kwargs)


def test_tfrecord_eval_split_is_remapped_onto_the_training_classes(tmp_path):
    # The val records were converted with their own order (bee=0, cat=1).
    _write_shard(tmp_path / "val-00000-of-00001", _examples([0, 1, 1], ["bee", "cat"]))
    _metadata(tmp_path, ["bee", "cat"], {"val": {"num_records": 3, "num_shards": 1}})
    val = _tfrecord(tmp_path, "val", class_names=("ant", "bee", "cat"))
    assert val.class_names == ("ant", "bee", "cat") and val.readable_names == ("ant", "BEE", "CAT")
    assert _labels(val) == [1, 2, 2]
    assert sorted(int(l) for _, _, l, _ in val.ordered_records()) == [1, 2, 2]
    with pytest.raises(ValueError, match=r"TFRecord split 'val' .* class 'cat'"):
        _tfrecord(tmp_path, "val", class_names=("ant", "bee"))


def test_tfrecord_eval_split_without_metadata_is_remapped_by_synset(tmp_path):
    _write_shard(tmp_path / "val-00000-of-00001", _examples([0, 1], ["cat", "bee"]))
    val = _tfrecord(tmp_path, "val", class_names=("ant", "bee", "cat"))
    assert _labels(val) == [1, 2]


def test_no_metadata_labels_stored_from_one_with_offset_zero_invent_no_class(tmp_path):
    # Records stored 1..3 (the Inception/TPU convention) read with offset 0.
    _write_shard(tmp_path / "train-00000-of-00001",
                 _examples([0, 1, 2], ["a", "b", "c"], label_offset=1))
    with pytest.raises(ValueError, match=r"none stored as 0 .*tfrecord_label_offset=1"):
        sources.TFRecordSource.from_directory(str(tmp_path), "train", label_offset=0,
                                              shuffle_buffer=8)
    assert _tfrecord(tmp_path, "train").class_names == ("a", "b", "c")


def test_partial_shard_set_without_metadata_is_refused_by_name(tmp_path):
    # A conversion killed midway: 3 of 4 shards, no metadata.json.
    for i in (0, 1, 3):
        _write_shard(tmp_path / f"train-{i:05d}-of-00004", _examples([0], ["a"]))
    with pytest.raises(FileNotFoundError, match=r"1 of its 4 shards are missing .*"
                                                r"train-00002-of-00004"):
        _tfrecord(tmp_path, "train")


def test_shards_of_two_conversions_without_metadata_are_refused(tmp_path):
    _write_shard(tmp_path / "train-00000-of-00001", _examples([0], ["a"]))
    _write_shard(tmp_path / "train-00000-of-00002", _examples([0], ["a"]))
    _write_shard(tmp_path / "train-00001-of-00002", _examples([0], ["a"]))
    with pytest.raises(ValueError, match=r"from 2 conversions"):
        _tfrecord(tmp_path, "train")


def test_only_the_files_metadata_names_are_read(tmp_path):
    _write_shard(tmp_path / "val-00000-of-00002", _examples([0, 1], ["a", "b"]))
    _write_shard(tmp_path / "val-00001-of-00002", _examples([1], ["a", "b"]))
    shutil.copy(tmp_path / "val-00000-of-00002", tmp_path / "val-00000-of-00002.bak")
    _write_shard(tmp_path / "val-small-00000-of-00001", _examples([0], ["a", "b"]))
    _metadata(tmp_path, ["a", "b"], {"val": {"num_records": 3, "num_shards": 2,
                                             "file_pattern": "val-?????-of-00002"}})
    val = _tfrecord(tmp_path, "val")
    assert [os.path.basename(f) for f in val.files] == ["val-00000-of-00002",
                                                        "val-00001-of-00002"]
    assert len(val) == 3 and len(_labels(val)) == 3
    os.remove(tmp_path / "val-00001-of-00002")
    with pytest.raises(FileNotFoundError, match=r"val-00001-of-00002"):
        _tfrecord(tmp_path, "val")


def test_stale_shards_beside_metadata_are_refused_by_name(tmp_path):
    _write_shard(tmp_path / "val-00000-of-00001", _examples([0], ["a"]))
    _write_shard(tmp_path / "val-00001-of-00002", _examples([0], ["a"]))
    _metadata(tmp_path, ["a"], {"val": {"num_records": 1, "num_shards": 1}})
    with pytest.raises(ValueError, match=r"does not list .*val-00001-of-00002"):
        _tfrecord(tmp_path, "val")


def test_a_shard_numbered_beyond_the_listed_set_is_refused_by_name(tmp_path):
    # Same -of-M as the listed set, index out of range: was read past in silence.
    _write_shard(tmp_path / "val-00000-of-00002", _examples([0], ["a"]))
    _write_shard(tmp_path / "val-00001-of-00002", _examples([0], ["a"]))
    _write_shard(tmp_path / "val-00002-of-00002", _examples([0], ["a"]))
    _metadata(tmp_path, ["a"], {"val": {"num_records": 2, "num_shards": 2}})
    with pytest.raises(ValueError, match=r"does not list \(1, first: 'val-00002-of-00002'"):
        _tfrecord(tmp_path, "val")


def test_metadata_record_count_and_class_count_are_checked(tmp_path):
    _write_shard(tmp_path / "val-00000-of-00001", _examples([0] * 20, ["a"]))
    _metadata(tmp_path, ["a"], {"val": {"num_records": 1000, "num_shards": 1}})
    with pytest.raises(ValueError, match=r"num_records=1000, but its 1 shard\(s\) hold 20"):
        _tfrecord(tmp_path, "val")
    _metadata(tmp_path, ["a"], {"val": {"num_records": 20, "num_shards": 1}}, num_classes=5)
    with pytest.raises(ValueError, match=r"num_classes=5 but lists 1 classes"):
        _tfrecord(tmp_path, "val")
    _metadata(tmp_path, ["a"], {"val": {"num_records": 20, "num_shards": 1}})
    assert len(_tfrecord(tmp_path, "val")) == 20


def test_split_names_are_matched_literally(tmp_path):
    _write_shard(tmp_path / "train-00000-of-00001", _examples([0], ["a"]))
    _write_shard(tmp_path / "val-00000-of-00001", _examples([0], ["a"]))
    for pattern in ("*", "tr*", "va?", "[tv]*"):
        with pytest.raises(ValueError, match=r"must be a plain name .*matched literally"):
            _tfrecord(tmp_path, pattern)
    assert len(_tfrecord(tmp_path, "val")) == 1


# --------------------------------------------------------------------- the converter

def test_overwrite_with_fewer_shards_leaves_no_stale_shards(tmp_path):
    _folders(tmp_path / "data", "train", {"a": 3, "b": 3})
    _folders(tmp_path / "data", "val", {"a": 2, "b": 2})
    out = tmp_path / "out"
    kwargs = dict(splits=("train", "val"), resize_shorter_side=0, workers=1, progress=False)
    convert.build_tfrecords(str(tmp_path / "data"), str(out), shards={"train": 2, "val": 2},
                            **kwargs)
    (out / "notes.txt").write_text("mine")  # never deleted
    (out / "val-00000-of-00002.bak").write_bytes(b"a backup")  # not a shard name: kept
    convert.build_tfrecords(str(tmp_path / "data"), str(out), shards={"train": 1, "val": 1},
                            overwrite=True, **kwargs)
    assert sorted(os.listdir(out)) == [
        "metadata.json", "notes.txt", "train-00000-of-00001", "train-skipped.json",
        "val-00000-of-00001", "val-00000-of-00002.bak", "val-skipped.json"]
    val = _tfrecord(out, "val")
    assert len(val) == 4 and len(_labels(val)) == 4


def test_overwrite_of_one_split_keeps_the_others_metadata(tmp_path):
    _folders(tmp_path / "data", "train", {"a": 3, "b": 3})
    _folders(tmp_path / "data", "val", {"a": 2, "b": 2})
    out = tmp_path / "out"
    kwargs = dict(resize_shorter_side=0, workers=1, progress=False)
    convert.build_tfrecords(str(tmp_path / "data"), str(out), splits=("train", "val"),
                            shards={"train": 2, "val": 2}, **kwargs)
    convert.build_tfrecords(str(tmp_path / "data"), str(out), splits=("val",),
                            shards={"val": 1}, overwrite=True, **kwargs)
    assert len(_tfrecord(out, "train")) == 6 and len(_tfrecord(out, "val")) == 4


def test_converted_splits_share_the_first_splits_class_order(tmp_path):
    _folders(tmp_path / "data", "training", {"ant": 2, "bee": 2, "cat": 2})
    _folders(tmp_path / "data", "validation", {"bee": 1, "cat": 2})
    out = tmp_path / "out"
    convert.build_tfrecords(str(tmp_path / "data"), str(out), splits=("training", "validation"),
                            shards={"training": 1, "validation": 1}, resize_shorter_side=0,
                            workers=1, progress=False)
    assert _labels(_tfrecord(out, "validation")) == [1, 2, 2]


# ---------------------------------------------------------------- runs: loop, eval, retrieval

def _tiny_config(data_dir, **data):
    c = load_config_file(REPO_ROOT / "configs" / "demo.py")
    c.model.width = 0.0625
    c.data.source, c.data.data_dir = "image_folder", str(data_dir)
    for key, value in data.items():
        c.data[key] = value
    c.train.global_batch_size, c.train.total_epochs = 16, 1
    c.train.warmup_epochs, c.train.log_every_steps = 0.0, 5
    c.eval.global_batch_size = 20
    return c


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from alexnet_tf.data import demo

    return demo.write_demo_dataset(tmp_path_factory.mktemp("tiny") / "data", seed=0,
                                   train_per_class=8, val_per_class=2)


def test_plan_reads_the_eval_split_in_the_training_order(tiny_data, tmp_path):
    from alexnet_tf.train import loop

    data = tmp_path / "data"
    shutil.copytree(tiny_data / "train", data / "training")
    shutil.copytree(tiny_data / "val", data / "validation")
    shutil.rmtree(data / "validation" / "checkerboard")  # the first class
    config = config_lib.validate(_tiny_config(data, train_split="training",
                                              eval_split="validation"))
    plan = loop._plan(config, str(tmp_path / "run"), False)
    assert plan.eval_split.class_names == plan.train_split.class_names
    assert min(plan.eval_split.labels) == 1  # 'checkerboard' (0) has no example
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def tiny_run(tiny_data, tmp_path_factory):
    from alexnet_tf.train import loop

    root = tmp_path_factory.mktemp("tiny_run")
    data = root / "data"
    shutil.copytree(tiny_data, data)
    workdir = root / "run"
    loop.train_and_evaluate(_tiny_config(data), str(workdir))
    return data, workdir


@pytest.mark.slow
def test_resume_after_a_class_folder_was_renamed_is_refused_before_writing(tiny_data, tmp_path):
    from alexnet_tf.train import loop

    data, workdir = tmp_path / "data", tmp_path / "run"
    shutil.copytree(tiny_data, data)
    loop.train_and_evaluate(_tiny_config(data), str(workdir))
    for split in ("train", "val"):
        os.rename(data / split / "checkerboard", data / split / "zz_checkerboard")
    before = {name: (workdir / name).read_bytes() for name in ("classes.json", "config.json")}
    with pytest.raises(ValueError, match=r"class 0 is 'checkerboard' in its .*classes.json "
                                         r"but 'cross' in the training split 'train'"):
        loop.train_and_evaluate(_tiny_config(data), str(workdir))  # the same command
    assert {name: (workdir / name).read_bytes() for name in before} == before


@pytest.mark.slow
def test_evaluation_reads_the_split_in_the_runs_class_order(tiny_run, monkeypatch):
    from alexnet_tf import evaluate

    data, workdir = tiny_run
    part = data / "val_part"  # a split lacking the first class
    if not part.exists():
        shutil.copytree(data / "val", part)
        shutil.rmtree(part / "checkerboard")
    loaded = []
    real = sources.load_split
    monkeypatch.setattr(sources, "load_split",
                        lambda *a, **k: loaded.append(real(*a, **k)) or loaded[-1])
    metrics = evaluate.evaluate_checkpoint(str(workdir), split="val_part",
                                           output=str(workdir.parent / "eval.json"))
    assert metrics["examples"] == 18
    classes = [c["id"] for c in json.loads((workdir / "classes.json").read_text())]
    assert list(loaded[0].class_names) == classes and min(loaded[0].labels) == 1
    # The run's data after a class folder was renamed: its labels would shift.
    renamed, moved = workdir.parent / "renamed_data", workdir.parent / "moved_run"
    if not renamed.exists():
        shutil.copytree(data, renamed)
        for split in ("train", "val"):
            os.rename(renamed / split / "checkerboard", renamed / split / "zz_checkerboard")
        shutil.copytree(workdir, moved)
        saved = json.loads((moved / "config.json").read_text())
        saved["data"]["data_dir"] = str(renamed)
        (moved / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"Split 'val' .*class folder 'zz_checkerboard'"):
        evaluate.evaluate_checkpoint(str(moved), split="val",
                                     output=str(workdir.parent / "eval.json"))


@pytest.mark.slow
def test_retrieval_reads_splits_in_the_runs_class_order(tiny_run, tmp_path):
    from alexnet_tf.analysis import retrieval

    data, workdir = tiny_run
    other = tmp_path / "data"
    shutil.copytree(data / "train", other / "train")
    os.rename(other / "train" / "disk", other / "train" / "hexagon")
    with pytest.raises(ValueError, match=r"Split 'train' .*class folder 'hexagon'"):
        retrieval.retrieve(workdir=str(workdir), data_dir=str(other), split="train",
                           query_split="train", num_queries=2, output=None,
                           features_cache=str(tmp_path / "cache"), progress=False)
