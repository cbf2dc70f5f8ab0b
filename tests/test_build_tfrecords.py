"""alexnet_tf.data.convert and tools/build_tfrecords.py: ImageNet folders -> TFRecords."""

import glob
import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from alexnet_tf.data import convert, sources, tfrecords
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
    assert "train: 16 records in 2 shards (as given; ~" in result.stdout
    assert ", 3 skipped" in result.stdout
    metadata = json.load(open(out / "metadata.json"))
    assert metadata["splits"]["train"]["num_shards"] == 2
    assert len(_records(str(out), "train")) == metadata["splits"]["train"]["num_records"] == 16
    assert len(_records(str(out), "val")) == metadata["splits"]["val"]["num_records"] == 5

    before = {p: (out / p).read_bytes() for p in os.listdir(out)}
    refused = _tool(f"--data_dir={dataset['root']}", f"--output_dir={out}", "--noprogress")
    assert refused.returncode != 0 and "not empty" in refused.stderr and "--overwrite" in refused.stderr
    assert {p: (out / p).read_bytes() for p in os.listdir(out)} == before


def _tool_without_tensorflow(tmp_path, *args):
    """The tool with a `tensorflow` that ends the process with status 99 on import: a
    refusal that must come before TensorFlow loads exits otherwise."""
    fake = tmp_path / "no_tf"
    (fake / "tensorflow").mkdir(parents=True, exist_ok=True)
    (fake / "tensorflow" / "__init__.py").write_text("import os\nos._exit(99)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(fake)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    return subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "build_tfrecords.py"),
                           *args], capture_output=True, text=True, env=env, timeout=120,
                          cwd=str(REPO_ROOT))


@pytest.mark.parametrize("value, says", [
    ("", "no split named"),
    ("train,train", "split 'train' is named more than once"),
    ("train,val,train", "split 'train' is named more than once"),
    ("../x", "split name '../x' is not a plain folder name"),
    ("train/n01440764", "split name 'train/n01440764' is not a plain folder name"),
    ("..", "split name '..' is not a plain folder name"),
    ("train,", "split name '' is not a plain folder name"),
])
def test_tool_refuses_bad_splits_before_tensorflow(dataset, tmp_path, value, says):
    # Were: exit 1 from the converter (an empty list, a duplicate) after the flags
    # were accepted; a usage error names the flag and its value before TF loads.
    out = tmp_path / "out"
    result = _tool_without_tensorflow(tmp_path, f"--data_dir={dataset['root']}",
                                      f"--output_dir={out}", f"--splits={value}")
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith(f"build_tfrecords.py: error: --splits={value!r}: {says}")
    assert not out.exists()
    with pytest.raises(ValueError, match=re.escape(says)):
        convert.build_tfrecords(dataset["root"], str(out), progress=False,
                                splits=value.split(",") if value else [])


def test_output_dir_inside_a_split_folder_is_refused_and_data_dir_itself_is_fine(
        dataset, tmp_path):
    # Shards inside DATA_DIR/<split>/ would be listed with the data they came from (a
    # new folder in train/ is a class; in the flat val/ one is a layout error).
    root = dataset["root"]
    for inside in (os.path.join(root, "train", WNIDS[0], "records"), os.path.join(root, "train"),
                   os.path.join(root, "val", "records")):
        result = _tool_without_tensorflow(tmp_path, f"--data_dir={root}",
                                          f"--output_dir={inside}", "--noprogress")
        assert result.returncode == 2, (result.returncode, result.stderr)
        assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
        assert result.stderr.startswith(f"build_tfrecords.py: error: --output_dir {inside!r} "
                                        f"is at or inside ")
        assert f"--data_dir {root!r}" in result.stderr
        with pytest.raises(ValueError, match="is at or inside"):
            _build(dataset, inside)
    assert not os.path.exists(os.path.join(root, "train", WNIDS[0], "records"))
    assert not os.path.exists(os.path.join(root, "val", "records"))
    assert convert.output_dir_problem(root, os.path.join(root, "records"), ["train"]) == ""
    # DATA_DIR itself: the shards and reports are files beside the split folders, and
    # the readers list only DATA_DIR/<split>/. (Not empty: --overwrite.)
    data = tmp_path / "data"
    (data / "train" / WNIDS[0]).mkdir(parents=True)
    for i in range(2):
        Image.fromarray(_pixels(i)).save(data / "train" / WNIDS[0] / f"{i}.JPEG", "JPEG")
    options = dict(splits=["train"], shards={"train": 1}, resize_shorter_side=0, workers=1,
                   progress=False, overwrite=True)
    first = convert.build_tfrecords(str(data), str(data), **options)
    again = convert.build_tfrecords(str(data), str(data), **options)  # the shards beside
    assert again == first and first["splits"]["train"]["num_records"] == 2
    assert sorted(_records(str(data), "train")) == ["0.JPEG", "1.JPEG"]
    assert sorted(os.listdir(data)) == ["metadata.json", "train", "train-00000-of-00001",
                                        "train-skipped.json"]


def test_tool_prints_its_summary_once(dataset, tmp_path):
    # The summary was printed on stdout and logged on stderr: twice in a terminal.
    result = _tool(f"--data_dir={dataset['root']}", f"--output_dir={tmp_path / 'out'}",
                   "--splits=train", "--train_shards=1", "--resize_shorter_side=0",
                   "--workers=1", "--noprogress")
    assert result.returncode == 0, result.stderr
    summary = "train: 16 records in 1 shard (as given; ~"
    assert (result.stdout + result.stderr).count(summary) == 1, (result.stdout, result.stderr)
    assert result.stdout.count(summary) == 1
    assert f"Wrote {tmp_path / 'out' / 'metadata.json'} in " in result.stderr


def test_worker_processes_are_as_quiet_as_the_tool(dataset, tmp_path):
    # Spawned workers import TensorFlow themselves: its start-up notes (oneDNN, CUDA
    # drivers, absl's preface) must not reach the user from them either.
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",
                                                            "ALEXNET_TF_TF_LOGS")}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "build_tfrecords.py"),
         f"--data_dir={dataset['root']}", f"--output_dir={tmp_path / 'out'}",
         "--train_shards=2", "--val_shards=1", "--resize_shorter_side=0", "--workers=2",
         f"--val_labels_file={dataset['labels_file']}", "--noprogress"],
        capture_output=True, text=True, env=env, timeout=300, cwd=str(REPO_ROOT))
    assert result.returncode == 0, result.stderr
    assert "with 2 worker(s)" in result.stderr
    noise = [line for line in result.stderr.splitlines()
             if "absl::InitializeLog" in line or "oneDNN" in line or "cuda" in line.lower()]
    assert not noise, noise


def test_default_workers_are_capped_by_the_split_size(dataset, tmp_path, monkeypatch):
    # A worker's start costs seconds: a few images are converted in this process.
    lines = []  # the converter's info lines, whatever absl's verbosity earlier tests left
    monkeypatch.setattr(convert.logging, "info", lambda message, *args: lines.append(
        message % args if args else message))
    _build(dataset, tmp_path / "out", shards={"train": 2, "val": 1}, workers=None)
    assert any("into 3 shards with 1 worker(s)" in line for line in lines), lines


# ---------------------------------------------------------------- shard counts


def test_the_automatic_shard_rule_on_numbers():
    target = convert.TARGET_SHARD_BYTES
    assert target == 128 * 1024 * 1024
    # ImageNet's training set at shorter side 256, quality 95: ~39,168 bytes per record
    # (real colour photos stored so average 3.56 bits per pixel; 341x256 is the stored
    # size of the common 500x375 photo; plus the record's 332 bytes of keys and framing).
    assert convert.auto_num_shards(1_281_167, 39_168) == 374
    assert convert.auto_num_shards(50_000, 39_168) == 15  # its validation set
    # The originals (resize_shorter_side=0), ~115 kB each: the Inception converters' ~1024.
    assert convert.auto_num_shards(1_281_167, 115_440) == 1102
    # The case: 75 small images make one shard, not 1024 + 128 files.
    assert convert.auto_num_shards(75, 30_000) == 1
    assert convert.auto_num_shards(100, target / 10) == 10  # exactly 10 targets: 10 shards
    assert convert.auto_num_shards(100, target / 10 + 1) == 11  # never over the target
    assert convert.auto_num_shards(10, 10 * target) == 10  # never more shards than images
    assert convert.auto_num_shards(5, 0) == 1  # every image unreadable: still one shard
    assert convert.auto_num_shards(0, 1000) == 1


def test_record_bytes_is_the_size_written_to_a_shard(tmp_path):
    cases = [(0, 1, 1, 1, "", "", ""), (127, 255, 256, 128, "n01440764", "tench, Tinca tinca",
                                        "n01440764_10026.JPEG"),
             (39_000, 256, 341, 1000, "n15075141", "toilet tissue, toilet paper, bathroom tissue",
              "ILSVRC2012_val_00050000.JPEG"), (2 ** 21 + 3, 70_000, 9, 7, "x", "é" * 40, "f")]
    path = str(tmp_path / "records")
    with tf.io.TFRecordWriter(path) as writer:
        for size, height, width, label, synset, text, filename in cases:
            example = tfrecords.make_example(b"\xff" * size, label - 1, synset=synset, text=text,
                                             height=height, width=width, filename=filename)
            writer.write(example.SerializeToString(deterministic=True))
            expected = convert.record_bytes(size, height=height, width=width, label=label,
                                            synset=synset, text=text, filename=filename)
            assert len(example.SerializeToString(deterministic=True)) + 16 == expected
    assert os.path.getsize(path) == sum(
        convert.record_bytes(c[0], height=c[1], width=c[2], label=c[3], synset=c[4],
                             text=c[5], filename=c[6]) for c in cases)


def test_a_small_split_gets_one_shard_and_the_estimate_is_what_is_written(dataset, tmp_path):
    out = tmp_path / "auto"
    metadata = _build(dataset, out, shards=None)
    for split in ("train", "val"):
        entry = metadata["splits"][split]
        assert entry["num_shards"] == 1 and entry["shard_choice"] == "automatic"
        assert entry["target_shard_bytes"] == convert.TARGET_SHARD_BYTES
        # The sample (64 images) covers these splits: the estimate is exact, the broken
        # files counted 0 bytes as they are skipped.
        assert entry["estimated_bytes"] == sum(s["num_bytes"] for s in entry["shards"])
    assert sorted(p for p in os.listdir(out) if "-of-" in p) == [
        "train-00000-of-00001", "val-00000-of-00001"]
    line = convert.summary_line(metadata)
    assert line.startswith("train: 16 records in 1 shard (automatic: at most 128 MiB each; ~")
    assert "val: 5 records in 1 shard (automatic" in line


def test_a_split_over_the_target_gets_several_shards(dataset, tmp_path, caplog):
    per_record, sampled = convert.estimate_record_bytes(
        [(os.path.join(dataset["root"], "train", WNIDS[label], name), label)
         for name, label in dataset["plain"].items()])
    assert sampled == len(dataset["plain"]) and per_record > 500
    target = int(4.5 * per_record)  # about 4 of this split's 19 files per shard
    with caplog.at_level("INFO", logger="absl"):  # whatever verbosity earlier tests left
        metadata = _build(dataset, tmp_path / "several", shards={}, target_shard_bytes=target)
    train = metadata["splits"]["train"]
    assert train["shard_choice"] == "automatic" and 3 < train["num_shards"] < 19
    assert train["num_shards"] == convert.auto_num_shards(19, train["estimated_bytes"] / 19, target)
    written = [s["num_bytes"] for s in train["shards"]]
    assert sum(written) == train["estimated_bytes"] and sum(written) / len(written) <= target
    assert len(_records(str(tmp_path / "several"), "train")) == 16  # every readable image
    assert metadata["splits"]["val"]["num_shards"] == 2  # 5 records over 4.5 of them
    logged = [r.getMessage() for r in caplog.records if "automatic:" in r.getMessage()]
    assert any(m.startswith(f"train: {train['num_shards']} shard(s), automatic: 19 images x ~")
               and "measured on 19 of them" in m for m in logged), logged


def test_the_estimate_samples_a_large_split_and_measures_images_as_stored(tmp_path):
    folder = tmp_path / "train" / "n01440764"
    os.makedirs(folder)
    items = []
    for i in range(30):
        path = folder / f"{i}.JPEG"
        Image.fromarray(_pixels(i, size=(400, 300))).save(path, "JPEG", quality=75)
        items.append((str(path), 0))
    full, n = convert.estimate_record_bytes(items, resize_shorter_side=256, sample_size=30)
    sampled, m = convert.estimate_record_bytes(items, resize_shorter_side=256, sample_size=8)
    assert (n, m) == (30, 8)
    assert sampled == convert.estimate_record_bytes(items, resize_shorter_side=256,
                                                    sample_size=8)[0]  # seeded
    assert abs(sampled - full) < 0.25 * full
    stored = convert.normalize_image(open(items[0][0], "rb").read(), resize_shorter_side=256)
    assert (stored.height, stored.width) == (256, 341)  # measured after the resize ...
    kept, _ = convert.estimate_record_bytes(items, resize_shorter_side=0, sample_size=30)
    # Kept as they are (plain RGB JPEGs): the files' own bytes plus each record's fields.
    assert kept == pytest.approx(np.mean([convert.record_bytes(
        os.path.getsize(p), height=300, width=400, label=1, filename=os.path.basename(p))
        for p, _ in items]))
    # At 256: each image resized and re-encoded at quality 95, as it will be stored.
    def stored_record(path):
        image = convert.normalize_image(open(path, "rb").read(), resize_shorter_side=256)
        return convert.record_bytes(len(image.data), height=image.height, width=image.width,
                                    label=1, filename=os.path.basename(path))
    assert full == pytest.approx(np.mean([stored_record(p) for p, _ in items]))
    assert abs(full - kept) > 0.2 * kept  # (here larger: the files are quality 75)


def test_given_counts_win_over_the_automatic_rule(dataset, tmp_path):
    metadata = _build(dataset, tmp_path / "mixed", shards={"train": 3, "val": None})
    train, val = metadata["splits"]["train"], metadata["splits"]["val"]
    assert (train["num_shards"], train["shard_choice"]) == (3, "given")
    assert "estimated_bytes" not in train and "target_shard_bytes" not in train
    assert (val["num_shards"], val["shard_choice"]) == (1, "automatic")
    with pytest.raises(ValueError, match="shard count of 'train'"):
        _build(dataset, tmp_path / "zero", shards={"train": 0})


def test_tool_default_is_automatic_and_flags_win(dataset, tmp_path):
    common = [f"--data_dir={dataset['root']}", "--resize_shorter_side=0", "--workers=1",
              f"--val_labels_file={dataset['labels_file']}", "--noprogress"]
    auto = _tool(*common, f"--output_dir={tmp_path / 'auto'}")
    assert auto.returncode == 0, auto.stderr
    assert "train: 16 records in 1 shard (automatic: at most 128 MiB each; ~" in auto.stdout
    assert "val: 5 records in 1 shard (automatic" in auto.stdout
    assert "train: 1 shard(s), automatic: 19 images x ~" in auto.stderr  # the log says why
    assert sorted(p for p in os.listdir(tmp_path / "auto") if "-of-" in p) == [
        "train-00000-of-00001", "val-00000-of-00001"]
    given = _tool(*common, f"--output_dir={tmp_path / 'given'}", "--val_shards=3")
    assert given.returncode == 0, given.stderr
    assert "val: 5 records in 3 shards (as given; ~" in given.stdout
    assert "train: 16 records in 1 shard (automatic" in given.stdout


def test_a_split_left_empty_by_skipped_files_is_refused_when_read(tmp_path):
    # Every validation image undecodable: the conversion says so, and training or
    # evaluation on that split stops instead of scoring nothing with exit status 0.
    from alexnet_tf import config as config_lib
    from alexnet_tf.errors import DataError

    root = tmp_path / "data"
    (root / "train" / "n01").mkdir(parents=True)
    (root / "val" / "n01").mkdir(parents=True)
    Image.new("RGB", (40, 30), (200, 10, 10)).save(root / "train" / "n01" / "a.JPEG")
    (root / "val" / "n01" / "empty.JPEG").write_bytes(b"")
    metadata = convert.build_tfrecords(str(root), str(tmp_path / "out"), workers=1,
                                       resize_shorter_side=0, progress=False)
    assert metadata["splits"]["val"]["num_records"] == 0
    data = config_lib.base_config().data
    data.source, data.data_dir = "tfrecord", str(tmp_path / "out")
    assert len(sources.load_split(data, "train")) == 1
    with pytest.raises(DataError, match=r"Split 'val' of the tfrecord data in .* holds no "
                                        r"examples"):
        sources.load_split(data, "val")


# ---------------------------------------------------------------- raw records (issue 17)


def test_raw_records_hold_the_central_square_of_the_stored_image(dataset, tmp_path):
    # The same conversion stored as JPEG at shorter side 32 and as raw 32x32 squares:
    # each raw record is the central square of what the JPEG path resized, before any
    # JPEG loss (its pixels equal Pillow's resize of the decoded source, exactly).
    options = dict(splits=("train",), shards={"train": 1}, resize_shorter_side=32)
    metadata = _build(dataset, tmp_path / "raw", image_format="raw", **options)
    entry = metadata["splits"]["train"]
    assert entry["image_format"] == "raw" and entry["image_shape"] == [32, 32, 3]
    records = _records(str(tmp_path / "raw"), "train")
    assert len(records) == entry["num_records"] == 16
    for name, (encoded, label, example) in records.items():
        assert len(encoded) == convert.raw_image_bytes(32) == 32 * 32 * 3
        assert _feature(example, "image/format") == b"RAW"
        assert (_feature(example, "image/height"), _feature(example, "image/width")) == (32, 32)
    for name, label in dataset["plain"].items():
        source = Image.open(os.path.join(dataset["root"], "train", WNIDS[label], name))
        height, width = convert.shorter_side_size(source.height, source.width, 32)
        resized = np.asarray(source.convert("RGB").resize((width, height),
                                                         Image.Resampling.BILINEAR))
        top, left = (height - 32) // 2, (width - 32) // 2
        np.testing.assert_array_equal(
            np.frombuffer(records[name][0], np.uint8).reshape(32, 32, 3),
            resized[top:top + 32, left:left + 32], err_msg=name)
        assert records[name][1] == label
    # The odd files follow the one decode rule as for JPEG storage (alpha over white).
    rgba = np.frombuffer(records["rgba.png"][0], np.uint8).reshape(32, 32, 3)
    assert tuple(rgba[16, 2]) == RED and tuple(rgba[16, -3]) == (255, 255, 255)
    # Nothing converted "to JPEG" is claimed for raw storage; the mode changes are counted.
    assert entry["num_converted"] == 3  # CMYK, greyscale, RGBA -> RGB
    # The source reads the shape from metadata.json and shows a record as a PNG.
    split = sources.TFRecordSource.from_directory(str(tmp_path / "raw"), "train",
                                                 label_offset=1, shuffle_buffer=16)
    assert split.image_shape == (32, 32, 3)
    png = split.read_encoded([[0, 0]])[0]
    assert png.startswith(b"\x89PNG")
    first = next(iter(tf.data.TFRecordDataset(split.files[0])))
    np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), np.frombuffer(
        tfrecords.parse(first)[0].numpy(), np.uint8).reshape(32, 32, 3))


def test_raw_records_are_estimated_exactly(dataset):
    # Every raw record of a side has the same image bytes: the estimate is the size written.
    items = [(os.path.join(dataset["root"], "train", WNIDS[label], name), label)
             for name, label in sorted(dataset["plain"].items())]
    per_record, sampled = convert.estimate_record_bytes(
        items, wnids=WNIDS, resize_shorter_side=24, image_format="raw")
    assert sampled == len(items)
    expected = np.mean([convert.record_bytes(
        convert.raw_image_bytes(24), height=24, width=24, label=label + 1, synset=WNIDS[label],
        filename=os.path.basename(path), image_format="RAW") for path, label in items])
    assert per_record == pytest.approx(expected)
    plan = convert._plan_shards("train", items, None, wnids=WNIDS, names=("", "", ""),
                                resize_shorter_side=24, jpeg_quality=95, seed=0,
                                target_shard_bytes=convert.TARGET_SHARD_BYTES,
                                image_format="raw")
    assert "stored as they will be: raw 24x24 pixels)" in plan["reason"]


def test_raw_format_needs_a_square_side_and_known_formats_only(dataset, tmp_path):
    with pytest.raises(convert.DataError, match=r"image_format 'raw' stores each image's "
                                                r"central square of side resize_shorter_side, "
                                                r"which must be >= 1"):
        _build(dataset, tmp_path / "a", image_format="raw", resize_shorter_side=0)
    with pytest.raises(convert.DataError, match=r"image_format must be one of jpeg, raw, got 'png'"):
        _build(dataset, tmp_path / "b", image_format="png")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    result = _tool_without_tensorflow(tmp_path, f"--data_dir={dataset['root']}",
                                      f"--output_dir={tmp_path / 'c'}", "--format=raw",
                                      "--resize_shorter_side=0")
    assert result.returncode == 2, result.stderr
    assert "--format=raw stores each image's central square of side --resize_shorter_side" \
        in result.stderr


@pytest.mark.parametrize("entry, says", [
    ({"image_format": "raw"}, "image_format='raw' and image_shape=None"),
    ({"image_format": "raw", "image_shape": [32, 32, 4]}, "image_shape=[32, 32, 4]"),
    ({"image_format": "raw", "image_shape": [32, 0, 3]}, "image_shape=[32, 0, 3]"),
    ({"image_format": "webp"}, "image_format='webp'"),
])
def test_a_raw_split_with_a_wrong_shape_in_metadata_is_refused(dataset, tmp_path, entry, says):
    out = tmp_path / "raw"
    _build(dataset, out, splits=("train",), shards={"train": 1}, image_format="raw",
           resize_shorter_side=16)
    path = out / "metadata.json"
    metadata = json.loads(path.read_text())
    metadata["splits"]["train"].pop("image_shape")
    metadata["splits"]["train"].update(entry)
    path.write_text(json.dumps(metadata))
    with pytest.raises(sources.DataError, match=re.escape(says)):
        sources.TFRecordSource.from_directory(str(out), "train", label_offset=1,
                                              shuffle_buffer=16)
