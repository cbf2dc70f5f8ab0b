"""alexnet_tf.data.convert and tools/build_tfrecords.py: ImageNet folders -> TFRecords."""

import glob
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from alexnet_tf.data import convert, tfrecords
from conftest import REPO_ROOT

WNIDS = ("n01440764", "n01443537", "n01484850")
NAMES = {"n01440764": "tench, Tinca tinca", "n01443537": "goldfish, Carassius auratus",
         "n01484850": "great white shark, white shark"}
PER_CLASS = 4
BAD = {"truncated.JPEG", "empty.JPEG", "text.JPEG"}
ODD = {"cmyk.JPEG", "grey.JPEG", "png_as.JPEG", "rgba.png"}
RED = (220, 30, 30)


def _pixels(seed, size=(40, 30)):
    """Smooth random RGB pixels (width, height) = size: compress like photos."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[1] // 5 + 1, size[0] // 5 + 1, 3), np.uint8)
    return np.asarray(Image.fromarray(small).resize(size, Image.Resampling.BICUBIC))


def _jpeg_bytes(image, **kwargs):
    out = io.BytesIO()
    image.save(out, "JPEG", **kwargs)
    return out.getvalue()


def _write_dataset(root):
    """train/<wnid>/ with plain, odd and broken files; a flat val/ with a labels file."""
    plain = {}
    for c, wnid in enumerate(WNIDS):
        folder = os.path.join(root, "train", wnid)
        os.makedirs(folder)
        for i in range(PER_CLASS):
            name = f"{wnid}_{i}.JPEG"
            with open(os.path.join(folder, name), "wb") as f:
                f.write(_jpeg_bytes(Image.fromarray(_pixels(10 * c + i))))
            plain[name] = c
    odd_dir = os.path.join(root, "train", WNIDS[1])
    Image.new("RGB", (40, 30), RED).convert("CMYK").save(os.path.join(odd_dir, "cmyk.JPEG"), "JPEG")
    Image.fromarray(_pixels(91)).convert("L").save(os.path.join(odd_dir, "grey.JPEG"), "JPEG")
    Image.fromarray(_pixels(92)).save(os.path.join(odd_dir, "png_as.JPEG"), "PNG")
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[:, :20] = (*RED, 255)  # left half opaque red, right half transparent (black beneath)
    Image.fromarray(rgba, "RGBA").save(os.path.join(odd_dir, "rgba.png"), "PNG")
    bad_dir = os.path.join(root, "train", WNIDS[2])
    noise = np.random.default_rng(5).integers(0, 256, (30, 40, 3), np.uint8)
    whole = _jpeg_bytes(Image.fromarray(noise), quality=95)
    with open(os.path.join(bad_dir, "truncated.JPEG"), "wb") as f:
        f.write(whole[: len(whole) // 2])
    open(os.path.join(bad_dir, "empty.JPEG"), "wb").close()
    with open(os.path.join(bad_dir, "text.JPEG"), "w") as f:
        f.write("<html>404 Not Found</html>\n")
    # Flat validation: labels in sorted file-name order.
    os.makedirs(os.path.join(root, "val"))
    val_labels = [2, 0, 1, 2, 0]
    for i, label in enumerate(val_labels):
        Image.fromarray(_pixels(200 + i)).save(
            os.path.join(root, "val", f"ILSVRC2012_val_{i + 1:08d}.JPEG"), "JPEG")
    labels_file = os.path.join(root, "val_labels.txt")
    with open(labels_file, "w") as f:
        f.write("".join(WNIDS[label] + "\n" for label in val_labels))
    synsets_file = os.path.join(root, "imagenet_metadata.txt")
    with open(synsets_file, "w") as f:
        f.write("n00004475\torganism, being\n" + "".join(f"{w}\t{n}\n" for w, n in NAMES.items()))
    return {"plain": plain, "labels_file": labels_file, "synsets_file": synsets_file,
            "val_labels": {f"ILSVRC2012_val_{i + 1:08d}.JPEG": l for i, l in enumerate(val_labels)}}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("imagenet"))
    info = _write_dataset(root)
    info["root"] = root
    return info


def _build(dataset, out, **kwargs):
    options = dict(splits=("train", "val"), shards={"train": 3, "val": 2}, resize_shorter_side=0,
                   workers=1, val_labels_file=dataset["labels_file"],
                   synsets_file=dataset["synsets_file"], progress=False)
    options.update(kwargs)
    return convert.build_tfrecords(dataset["root"], str(out), **options)


def _records(out, split):
    """{filename: (encoded, label, full Example)} of every record of a split."""
    metadata = json.load(open(os.path.join(out, "metadata.json")))
    files = sorted(glob.glob(os.path.join(out, metadata["splits"][split]["file_pattern"])))
    records = {}
    for serialized in tf.data.TFRecordDataset(files):
        encoded, label, filename = tfrecords.parse(serialized)
        example = tf.train.Example.FromString(serialized.numpy())
        records[filename.numpy().decode()] = (encoded.numpy(), int(label), example)
    return records


def _feature(example, key):
    feature = example.features.feature[key]
    return feature.int64_list.value[0] if feature.int64_list.value else feature.bytes_list.value[0]


def _shard_bytes(out):
    return {os.path.basename(p): open(p, "rb").read()
            for p in sorted(glob.glob(os.path.join(out, "*-of-*")))}


@pytest.fixture(scope="module")
def built(dataset, tmp_path_factory):
    """One conversion at the original sizes, shared by the read-only checks."""
    out = tmp_path_factory.mktemp("out") / "records"
    metadata = _build(dataset, out)
    return str(out), metadata


# ---------------------------------------------------------------- content


def test_records_labels_synsets_and_text_match_the_source_folders(dataset, built):
    out, metadata = built
    train = _records(out, "train")
    assert set(train) == set(dataset["plain"]) | ODD  # every readable file, nothing else
    for name, (encoded, label, example) in train.items():
        wnid = name.split("_")[0] if name in dataset["plain"] else WNIDS[1]
        assert label == WNIDS.index(wnid), name
        assert _feature(example, "image/class/label") == label + tfrecords.LABEL_OFFSET
        assert _feature(example, "image/class/synset").decode() == wnid
        assert _feature(example, "image/class/text").decode() == NAMES[wnid]
        image = tf.io.decode_jpeg(encoded)
        assert image.shape == (_feature(example, "image/height"), _feature(example, "image/width"), 3)
    val = _records(out, "val")
    assert {name: r[1] for name, r in val.items()} == dataset["val_labels"]
    assert [c["wnid"] for c in metadata["classes"]] == list(WNIDS)
    assert [c["name"] for c in metadata["classes"]] == [NAMES[w] for w in WNIDS]
    assert [c["index"] for c in metadata["classes"]] == [0, 1, 2]


def test_metadata_counts_equal_the_records_and_shard_pattern(dataset, built):
    out, _ = built
    metadata = json.load(open(os.path.join(out, "metadata.json")))
    assert metadata["label_offset"] == tfrecords.LABEL_OFFSET == 1
    assert metadata["resize_shorter_side"] == 0 and metadata["num_classes"] == 3
    assert metadata["converter_version"] == convert.CONVERTER_VERSION
    train, val = metadata["splits"]["train"], metadata["splits"]["val"]
    assert train["num_records"] == len(_records(out, "train")) == 3 * PER_CLASS + len(ODD)
    assert val["num_records"] == len(_records(out, "val")) == 5
    assert (train["num_skipped"], val["num_skipped"]) == (len(BAD), 0)
    assert train["num_converted"] == len(ODD) and train["num_resized"] == 0
    assert sorted(os.listdir(out)) == sorted(
        ["metadata.json", "train-skipped.json", "val-skipped.json", "train-00000-of-00003",
         "train-00001-of-00003", "train-00002-of-00003", "val-00000-of-00002",
         "val-00001-of-00002"])  # no *.tmp left behind
    assert len(glob.glob(os.path.join(out, train["file_pattern"]))) == train["num_shards"] == 3
    assert len(glob.glob(os.path.join(out, val["file_pattern"]))) == val["num_shards"] == 2


def test_plain_rgb_jpegs_keep_their_original_bytes(dataset, built):
    out, _ = built
    train = _records(out, "train")
    for name, label in dataset["plain"].items():
        source = os.path.join(dataset["root"], "train", WNIDS[label], name)
        assert train[name][0] == open(source, "rb").read(), name


def test_cmyk_grey_png_and_rgba_become_rgb_jpegs(dataset, built):
    out, _ = built
    train = _records(out, "train")
    for name in ODD:
        encoded, _, example = train[name]
        assert tf.image.is_jpeg(encoded) and encoded[:2] == b"\xff\xd8", name
        image = tf.io.decode_jpeg(encoded).numpy()  # no `channels`: what is stored
        assert image.shape == (30, 40, 3), name
        assert (_feature(example, "image/height"), _feature(example, "image/width")) == (30, 40)
    cmyk = tf.io.decode_jpeg(train["cmyk.JPEG"][0]).numpy().astype(int)
    assert np.abs(cmyk[10:20, 10:30] - RED).max() < 20  # the colour survived CMYK -> RGB
    grey = tf.io.decode_jpeg(train["grey.JPEG"][0]).numpy().astype(int)
    assert np.abs(grey[..., 0] - grey[..., 1]).max() <= 2  # still grey, as 3 channels
    rgba = tf.io.decode_jpeg(train["rgba.png"][0]).numpy().astype(int)
    assert np.abs(rgba[5:25, 2:16] - RED).max() < 20
    assert rgba[5:25, 24:38].min() > 240  # transparent -> white background, not black


def test_broken_files_are_skipped_and_reported(dataset, built):
    out, _ = built
    report = json.load(open(os.path.join(out, "train-skipped.json")))
    assert report["split"] == "train" and report["num_skipped"] == len(BAD)
    by_name = {os.path.basename(s["path"]): s["reason"] for s in report["skipped"]}
    assert set(by_name) == BAD
    assert all(s["path"].startswith(f"train{os.sep}{WNIDS[2]}") for s in report["skipped"])
    # The decode rule's reasons, as training, statistics and the export give them.
    assert by_name["empty.JPEG"] == "empty (0 bytes)"
    assert "truncated" in by_name["truncated.JPEG"]
    assert by_name["text.JPEG"].startswith("not a JPEG, PNG, GIF or BMP image (")
    assert json.load(open(os.path.join(out, "val-skipped.json")))["skipped"] == []


def test_shards_mix_classes(built):
    out, _ = built
    files = sorted(glob.glob(os.path.join(out, "train-*-of-00003")))
    labels_per_shard = [{int(tfrecords.parse(r)[1]) for r in tf.data.TFRecordDataset([f])} for f in files]
    assert any(len(labels) > 1 for labels in labels_per_shard)
    assert sum(1 for f in files for _ in tf.data.TFRecordDataset([f])) == 3 * PER_CLASS + len(ODD)


def test_normalize_image_unit():
    plain = _jpeg_bytes(Image.fromarray(_pixels(1)))
    kept = convert.normalize_image(plain)
    assert kept.data == plain and (kept.height, kept.width) == (30, 40) and not kept.converted
    for bad in (b"", b"GIF89a broken", plain[:100]):
        with pytest.raises(convert.SkipImage):
            convert.normalize_image(bad)
    assert convert.shorter_side_size(300, 400, 256) == (256, 341)
    assert convert.shorter_side_size(30, 40, 256) == (256, 341)
    assert convert.shorter_side_size(256, 999, 256) == (256, 999)


# ---------------------------------------------------------------- resize


def test_resize_shorter_side_256_down_and_up(tmp_path):
    root = tmp_path / "data"
    big = Image.fromarray(_pixels(7, size=(400, 300)))  # 300x400 (h x w)
    small = Image.fromarray(_pixels(8, size=(30, 40)))  # 40x30: up-sampled, as in the paper
    exact = Image.fromarray(_pixels(9, size=(256, 280)))  # already 256: original bytes kept
    os.makedirs(root / "train" / "n01440764")
    for name, image in (("big.JPEG", big), ("small.JPEG", small), ("exact.JPEG", exact)):
        image.save(root / "train" / "n01440764" / name, "JPEG")
    out = tmp_path / "out"
    metadata = convert.build_tfrecords(str(root), str(out), splits=["train"], shards={"train": 1},
                                       resize_shorter_side=256, workers=1, progress=False)
    records = _records(str(out), "train")
    shapes = {name: tf.io.decode_jpeg(r[0]).shape for name, r in records.items()}
    assert shapes == {"big.JPEG": (256, 341, 3), "small.JPEG": (341, 256, 3), "exact.JPEG": (280, 256, 3)}
    for name, (_, _, example) in records.items():
        assert (_feature(example, "image/height"), _feature(example, "image/width")) == shapes[name][:2]
    assert records["exact.JPEG"][0] == (root / "train" / "n01440764" / "exact.JPEG").read_bytes()
    assert metadata["resize_shorter_side"] == 256 and metadata["splits"]["train"]["num_resized"] == 2
    assert metadata["classes"] == [{"index": 0, "wnid": "n01440764", "name": ""}]


# ---------------------------------------------------------------- determinism and workers


def test_same_seed_same_shards_and_two_workers_same_as_one(dataset, built, tmp_path):
    out, _ = built
    again = _build(dataset, tmp_path / "again")
    assert again == json.load(open(os.path.join(out, "metadata.json")))
    assert _shard_bytes(str(tmp_path / "again")) == _shard_bytes(out)
    assert (tmp_path / "again" / "train-skipped.json").read_bytes() == open(
        os.path.join(out, "train-skipped.json"), "rb").read()
    _build(dataset, tmp_path / "parallel", workers=2)
    assert _shard_bytes(str(tmp_path / "parallel")) == _shard_bytes(out)
    _build(dataset, tmp_path / "seed1", seed=1)
    other = _shard_bytes(str(tmp_path / "seed1"))
    assert other != _shard_bytes(out)  # another order ...
    assert sorted(_records(str(tmp_path / "seed1"), "train")) == sorted(_records(out, "train"))  # ... same set


# ---------------------------------------------------------------- refusals


def test_non_empty_output_dir_is_refused_and_untouched(dataset, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        _build(dataset, out)
    assert os.listdir(out) == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
    _build(dataset, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine" and (out / "metadata.json").exists()


def test_missing_data_dir_and_bad_options_are_refused(dataset, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        convert.build_tfrecords(str(tmp_path / "nowhere"), str(tmp_path / "out"), progress=False)
    with pytest.raises(ValueError, match="jpeg_quality"):
        _build(dataset, tmp_path / "out", jpeg_quality=0)
    with pytest.raises(ValueError, match="n01484850"):  # a synsets file missing a class
        names = tmp_path / "names.txt"
        names.write_text("n01440764 tench\nn01443537 goldfish\n")
        _build(dataset, tmp_path / "out", synsets_file=str(names))
    assert not (tmp_path / "out").exists()  # nothing written before the inputs were valid


# ---------------------------------------------------------------- the tool


def _tool(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "build_tfrecords.py"), *args],
                          capture_output=True, text=True, env=env, timeout=120, cwd=str(REPO_ROOT))


def test_tool_end_to_end_and_refusal(dataset, tmp_path):
    out = tmp_path / "out"
    result = _tool(f"--data_dir={dataset['root']}", f"--output_dir={out}", "--train_shards=2",
                   "--val_shards=1", "--resize_shorter_side=0", "--workers=1",
                   f"--val_labels_file={dataset['labels_file']}", "--noprogress")
    assert result.returncode == 0, result.stderr
    assert "train: 16 records in 2 shards, 3 skipped" in result.stdout
    metadata = json.load(open(out / "metadata.json"))
    assert metadata["splits"]["train"]["num_shards"] == 2
    assert len(_records(str(out), "train")) == metadata["splits"]["train"]["num_records"] == 16
    assert len(_records(str(out), "val")) == metadata["splits"]["val"]["num_records"] == 5

    before = {p: (out / p).read_bytes() for p in os.listdir(out)}
    refused = _tool(f"--data_dir={dataset['root']}", f"--output_dir={out}", "--noprogress")
    assert refused.returncode != 0 and "not empty" in refused.stderr and "--overwrite" in refused.stderr
    assert {p: (out / p).read_bytes() for p in os.listdir(out)} == before
