"""The TFDS source: a tiny image-classification builder defined here, prepared into a temporary
data_dir, read back through `sources.load_split` and `pipeline.make_dataset`: sizes, class
names, undecoded images, labels, seeded and resumable order, sharding, the clear errors, and
fc7 retrieval (Fig. 4) on a run trained from TFDS. And TFDS's real imagenet2012 builder,
prepared from small ILSVRC-2012 tars in the manual-download layout, trained on with
alexnet-train and evaluated (README's TFDS path)."""

import functools
import io
import json
import math
import pathlib
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from alexnet_tf import config as config_lib
from alexnet_tf.data import pipeline, sources
from alexnet_tf.train import loop

NAME = "alexnet_tf_tiny_shapes"  # the snake_case name TFDS gives the builder class below
CLASSES = ("circle", "square", "stripe")
SIZES = {"train": 24, "validation": 9}
SIDE = 80


def _label(split, i):
    return (i + (split == "validation")) % len(CLASSES)


def _jpeg(split, i):
    """A flat-coloured JPEG whose red level names the example and green level the split."""
    pixel = (20 + 8 * i, 60 if split == "train" else 180, 60 * _label(split, i))
    image = np.zeros((SIDE, SIDE + 6, 3), np.uint8) + np.array(pixel, np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _identity(image):
    """The example index of a decoded (centre-cropped, unnormalised) image."""
    return int(round((float(np.mean(image[..., 0])) - 20) / 8))


@functools.lru_cache(maxsize=None)
def _builder_class():
    tfds = pytest.importorskip(
        "tensorflow_datasets",
        reason="tensorflow-datasets is not installed (pip install -e '.[tfds]')")

    class AlexnetTfTinyShapes(tfds.core.GeneratorBasedBuilder):
        """Three classes of flat-coloured JPEGs, in the shape of imagenet2012's features."""

        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                    "label": tfds.features.ClassLabel(names=list(CLASSES))}),
                supervised_keys=("image", "label"))

        def _split_generators(self, dl_manager):
            del dl_manager  # nothing to download
            return {split: self._generate_examples(split) for split in SIZES}

        def _generate_examples(self, split):
            for i in range(SIZES[split]):
                yield f"{split}-{i}", {"image": io.BytesIO(_jpeg(split, i)),
                                       "label": _label(split, i)}

    return tfds, AlexnetTfTinyShapes


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    tfds, builder_class = _builder_class()
    root = tmp_path_factory.mktemp("tfds")
    # Three files per split, so that file shuffling and file sharding have work to do.
    builder_class(data_dir=str(root)).download_and_prepare(
        download_config=tfds.download.DownloadConfig(num_shards=3))
    return root


def _data_config(data_dir, **overrides):
    c = config_lib.base_config()
    c.model.variant, c.model.num_classes, c.model.image_size = "one_tower", 3, 67
    c.data.source, c.data.tfds_name, c.data.data_dir = "tfds", NAME, str(data_dir)
    c.data.eval_split = "validation"
    c.data.augmentation = "none"  # the centre crop: the decoded colour names the example
    c.data.resize_size, c.data.mean_rgb, c.data.shuffle_buffer = 76, (0.0, 0.0, 0.0), 8
    for key, value in overrides.items():
        c.data[key] = value
    return config_lib.validate(c)


def _examples(split, data, **kwargs):
    """(identities, labels) of every example of one epoch, in the pipeline's order."""
    kwargs = {"image_size": 67, "batch_size": 4, "training": False, **kwargs}
    ids, labels = [], []
    for images, batch_labels in pipeline.make_dataset(split, data, **kwargs):
        ids += [_identity(image) for image in images.numpy()]
        labels += batch_labels.numpy().tolist()
    return ids, labels


def test_tfds_split_gives_sizes_classes_and_undecoded_images(tfds_dir):
    config = _data_config(tfds_dir)
    split = sources.load_split(config.data, "train")
    assert isinstance(split, sources.TfdsSource)
    assert len(split) == 24 and split.class_names == CLASSES and split.num_files == 3
    assert (split.image_key, split.label_key) == ("image", "label")
    records = list(split.records(training=False))
    # Images come out as the stored JPEG bytes, for this package's own decoding.
    assert sorted(r[0].numpy() for r in records) == sorted(_jpeg("train", i) for i in range(24))
    names = [r[3].numpy().decode() for r in records]
    assert len(set(names)) == 24 and all(name.startswith(f"{NAME}-train") for name in names)
    assert len(sources.load_split(config.data, "validation")) == 9


def test_tfds_labels_follow_their_images_through_the_pipeline(tfds_dir):
    config = _data_config(tfds_dir)
    for split_name in ("train", "validation"):
        split = sources.load_split(config.data, split_name)
        ids, labels = _examples(split, config.data)
        assert sorted(ids) == list(range(SIZES[split_name]))
        assert labels == [_label(split_name, i) for i in ids]


def test_tfds_labels_follow_the_training_class_order_given(tfds_dir):
    # The training classes in another order (e.g. a run's classes.json): the ClassLabel
    # ids are remapped by name; a class the training split lacks is refused by name.
    config = _data_config(tfds_dir)
    order = ("stripe", "circle", "square")
    split = sources.load_split(config.data, "validation", order)
    assert split.class_names == order
    ids, labels = _examples(split, config.data)
    assert labels == [order.index(CLASSES[_label("validation", i)]) for i in ids]
    with pytest.raises(ValueError, match=r"TFDS dataset .* split 'validation' has class "
                                         r"'stripe'"):
        sources.load_split(config.data, "validation", ("circle", "square"))


def test_tfds_training_order_is_seeded_and_resumable(tfds_dir):
    config = _data_config(tfds_dir)
    split = sources.load_split(config.data, "train")
    first, labels = _examples(split, config.data, training=True, seed=1, epoch=2)
    again, _ = _examples(split, config.data, training=True, seed=1, epoch=2)
    assert first == again and sorted(first) == list(range(24))
    assert labels == [_label("train", i) for i in first]
    other_seed, _ = _examples(split, config.data, training=True, seed=2, epoch=2)
    other_epoch, _ = _examples(split, config.data, training=True, seed=1, epoch=3)
    assert other_seed != first and other_epoch != first
    # A run resumed after two batches sees exactly the rest of the epoch.
    resumed, _ = _examples(split, config.data, training=True, seed=1, epoch=2, skip_examples=8)
    assert resumed == first[8:]


@pytest.mark.parametrize("pipelines", [2, 4], ids=["by_file", "by_record"])
def test_tfds_shards_are_disjoint_and_cover_the_split(tfds_dir, pipelines):
    # Two pipelines share the three files; four are more than the files: records are split.
    config = _data_config(tfds_dir)
    split = sources.load_split(config.data, "train")
    parts = []
    for pipeline_id in range(pipelines):
        context = tf.distribute.InputContext(num_input_pipelines=pipelines,
                                             input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=pipelines)
        ids, _ = _examples(split, config.data, batch_size=1, training=True, seed=5,
                           input_context=context)
        parts.append(ids)
    assert all(parts)
    assert sorted(sum(parts, [])) == list(range(24))


def test_unprepared_or_unknown_tfds_names_are_clear_errors(tfds_dir, tmp_path):
    _builder_class()  # registers the builder (or skips without tensorflow-datasets)
    config = _data_config(tmp_path)  # an empty data_dir
    with pytest.raises(FileNotFoundError) as error:
        sources.load_split(config.data, "train")
    message = str(error.value)
    assert f"{NAME!r}" in message and "is not prepared" in message and str(tmp_path) in message
    # TFDS's Python API first: the [tfds] extra runs it (`tfds build` needs apache-beam).
    assert (f"tfds.builder({NAME!r}, data_dir={str(tmp_path)!r}).download_and_prepare()"
            in message)
    assert f"tfds build {NAME} --data_dir={tmp_path}`, which also needs" in message
    imagenet = _data_config(tmp_path, tfds_name="imagenet2012")
    with pytest.raises(FileNotFoundError, match=r"(?s)'imagenet2012' .*is not prepared.*"
                                                r"--manual_dir=MANUAL_DIR"):
        sources.load_split(imagenet.data, "train")
    unknown = _data_config(tfds_dir, tfds_name="no_such_dataset_xyz")
    with pytest.raises(FileNotFoundError, match=r"TFDS knows no dataset 'no_such_dataset_xyz'"):
        sources.load_split(unknown.data, "train")


def test_a_split_the_builder_lacks_is_named(tfds_dir):
    config = _data_config(tfds_dir)
    with pytest.raises(ValueError, match=r"has splits \['train', 'validation'\], not 'val'"):
        sources.load_split(config.data, "val")


def test_missing_tensorflow_datasets_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # import now fails
    with pytest.raises(ImportError, match=r"pip install -e '.\[tfds\]'"):
        sources.import_tfds()


@pytest.mark.parametrize("source,name,message", [
    ("tfds", "", r"'data.tfds_name' is ''; expected the name of a prepared TFDS builder"),
    ("image_folder", "imagenet2012", r"'data.tfds_name' is 'imagenet2012'; expected '' unless "
                                     r"data.source='tfds'"),
])
def test_tfds_config_keys_are_checked(source, name, message):
    config = config_lib.base_config()
    config.data.source, config.data.tfds_name = source, name
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.validate(config)


def _decoded_identity(encoded):
    return _identity(tf.io.decode_jpeg(encoded).numpy())


def test_retrieval_searches_a_tfds_split(tfds_dir, tmp_path):
    """tools/retrieve.py on a run trained from TFDS: the split's features are computed,
    cached and searched, queries come from the split itself or from another split, and
    the grid reads the neighbours' images back from TFDS."""
    from alexnet_tf import run as run_lib
    from alexnet_tf.analysis import retrieval
    from test_analysis import _save_features_model  # features: an image's 2x2 mean colours

    config = _data_config(tfds_dir)
    workdir = tmp_path / "run"
    run_lib.Run(str(workdir)).write_config(config)
    common = dict(saved_model=_save_features_model(tmp_path / "saved"), workdir=str(workdir),
                  split="train", thumb=16, progress=False)
    split = sources.load_split(config.data, "train")

    # Red steps 8 levels per example, blue 60 per class: the nearest examples of the same
    # class (3 apart, 24 levels) are nearer than the next examples (8 red + 60 blue).
    own = retrieval.retrieve(query_split="train", num_queries=6, k=2,
                             output=str(tmp_path / "own.png"), **common)
    database = own.database
    assert len(database) == 24 and not database.reused and database.manifest["skipped"] == []
    assert database.directory == str(workdir / "features" / "train")
    assert {k: v for k, v in database.manifest["fingerprint"]["split"].items()
            if k != "data_dir"} == {"kind": "tfds", "split": "train", "num_examples": 24,
                                    "builder": NAME, "version": "1.0.0", "tfds_split": "train"}
    assert sorted(database.labels.tolist()) == sorted(_label("train", i) for i in range(24))
    assert sorted(split.read_encoded(database.locations)) == sorted(
        _jpeg("train", i) for i in range(24))
    assert len(own.queries) == 6 and own.same_class_overall == 1.0
    neighbours = split.read_encoded(database.locations[own.neighbours.reshape(-1)])
    for i, query in enumerate(own.queries):
        assert query.database_row not in own.neighbours[i]  # never its own neighbour
        me = _decoded_identity(query.encoded)
        assert query.label == _label("train", me)
        found = [_decoded_identity(neighbours[2 * i + j]) for j in range(2)]
        assert all(n != me and (n - me) % 3 == 0 for n in found), (me, found)
    assert Image.open(tmp_path / "own.png").size[0] > 3 * 16

    # Validation example i shares the class of train examples i + 1 and i - 2, 8 and 16 red
    # levels away (the next ones, 32 levels away, lose to them whatever the JPEG noise).
    other = retrieval.retrieve(query_split="validation", num_queries=5, k=1,
                               output=str(tmp_path / "other.png"), **common)
    assert other.database.reused and len(other.queries) == 5
    assert other.same_class_overall == 1.0
    neighbours = split.read_encoded(other.database.locations[other.neighbours[:, 0]])
    for query, neighbour in zip(other.queries, neighbours):
        me = _decoded_identity(query.encoded)
        assert query.label == _label("validation", me) and query.name.startswith(
            f"{NAME}-validation")
        assert _decoded_identity(neighbour) in (me + 1, me - 2)
    assert "Neighbours sharing the query's class: 100.0%" in retrieval.format_result(other)


@pytest.mark.slow
def test_short_training_run_reads_tfds(tfds_dir, tmp_path):
    config = _data_config(tfds_dir, augmentation="modern", mean_rgb=(127.5, 127.5, 127.5),
                          std_rgb=(64.0, 64.0, 64.0))
    config.model.variant, config.model.width = "modern", 0.25
    config.train.global_batch_size, config.train.total_epochs = 8, 1
    config.train.schedule, config.train.log_every_steps = "constant", 1
    config.eval.global_batch_size = 9
    metrics = loop.train_and_evaluate(config, str(tmp_path / "run"))
    assert metrics["step"] == 3 and metrics["examples"] == 9 and math.isfinite(metrics["loss"])
    assert (tmp_path / "run" / "classes.json").read_text().count('"id": "square"') == 1


# ------------------------------------------------------ TFDS's real imagenet2012 builder

# TFDS's imagenet2012 builder (tensorflow_datasets/datasets/imagenet2012/) reads
# MANUAL_DIR/ILSVRC2012_img_train.tar (one inner <wnid>.tar of <wnid>_<n>.JPEG files per
# class; the label is the inner tar's name) and MANUAL_DIR/ILSVRC2012_img_val.tar (flat
# ILSVRC2012_val_<8 digits>.JPEG files). The validation labels come from its own
# validation_labels.txt (50,000 wnids): it zips them with the val tar's sorted file names,
# so a tar of the first N validation images gets exactly their real labels, and needs
# neither all 50,000 images nor all 1000 classes. The ClassLabel always has the 1000 wnids
# of its labels.txt, whichever classes the tars hold. ILSVRC2012_img_test.tar is optional.
IMAGENET_TRAIN_WNIDS = ("n01751748", "n09193705", "n02105855")  # val images 1..3's classes
IMAGENET_TRAIN_PER_CLASS = 4
IMAGENET_VAL_IMAGES = 6
IMAGENET_SIDE = 80


def _imagenet_label_files():
    """TFDS's own imagenet2012 label files: (the 1000 class wnids, the 50,000 val wnids)."""
    tfds, _ = _builder_class()
    root = pathlib.Path(tfds.__file__).parent / "datasets" / "imagenet2012"
    return ((root / "labels.txt").read_text().split(),
            (root / "validation_labels.txt").read_text().split())


def _wnid_jpeg(wnid, i):
    """A small JPEG whose colour names its class (the wnid's digits) and index."""
    number = int(wnid[1:])
    pixel = (number % 251, (number // 251) % 251, 10 + 20 * i)
    image = np.zeros((IMAGENET_SIDE, IMAGENET_SIDE + 12, 3), np.uint8) + np.array(
        pixel, np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _add_to_tar(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def write_imagenet_manual_dir(manual_dir, *, wnids=IMAGENET_TRAIN_WNIDS,
                              per_class=IMAGENET_TRAIN_PER_CLASS,
                              val_images=IMAGENET_VAL_IMAGES):
    """ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar as image-net.org ships them, in
    small: ``per_class`` images of each of ``wnids`` and the first ``val_images``
    validation images (each coloured by its real class). Returns the val images' wnids."""
    _, val_labels = _imagenet_label_files()
    manual_dir = pathlib.Path(manual_dir)
    manual_dir.mkdir(parents=True, exist_ok=True)
    with tarfile.open(manual_dir / "ILSVRC2012_img_train.tar", "w") as train:
        for wnid in wnids:
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as images:
                for i in range(per_class):
                    _add_to_tar(images, f"{wnid}_{10026 + 17 * i}.JPEG", _wnid_jpeg(wnid, i))
            _add_to_tar(train, f"{wnid}.tar", inner.getvalue())
    with tarfile.open(manual_dir / "ILSVRC2012_img_val.tar", "w") as val:
        # Not in name order, as the real tar is not: TFDS sorts the names itself.
        for k in reversed(range(1, val_images + 1)):
            _add_to_tar(val, f"ILSVRC2012_val_{k:08d}.JPEG", _wnid_jpeg(val_labels[k - 1], k))
    return val_labels[:val_images]


def _command(name, module):
    """An installed console script (as README runs it), else ``python -m module``."""
    script = pathlib.Path(sys.executable).parent / name
    return [str(script)] if script.exists() else [sys.executable, "-m", module]


@pytest.mark.slow
def test_real_imagenet2012_builder_prepares_manual_tars_then_trains_and_evaluates(tmp_path):
    """TFDS's own imagenet2012 builder (not a stand-in) prepares manual-download tars in
    ILSVRC-2012's layout; `alexnet-train --config.data.source=tfds` trains on the result and
    alexnet-eval's function evaluates the run on its validation split. Without
    importlib_resources (which tensorflow-datasets imports but does not declare),
    download_and_prepare stops with ModuleNotFoundError (issue 15)."""
    tfds, _ = _builder_class()
    class_wnids, val_labels = _imagenet_label_files()
    assert len(class_wnids) == 1000 and len(val_labels) == 50_000
    manual_dir, data_dir = tmp_path / "manual", tmp_path / "tfds"
    val_wnids = write_imagenet_manual_dir(manual_dir)

    builder = tfds.builder("imagenet2012", data_dir=str(data_dir))
    assert type(builder).__module__.startswith("tensorflow_datasets.datasets.imagenet2012")
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
    except ModuleNotFoundError as error:
        pytest.fail(f"TFDS's imagenet2012 build imports {error.name!r}, which the [tfds] "
                    f"extra (setup.py) must install: {error}")
    splits = builder.info.splits
    assert sorted(splits.keys()) == ["train", "validation"]  # no test tar: no test split
    assert splits["train"].num_examples == len(IMAGENET_TRAIN_WNIDS) * IMAGENET_TRAIN_PER_CLASS
    assert splits["validation"].num_examples == IMAGENET_VAL_IMAGES
    names = builder.info.features["label"].names
    assert names == class_wnids
    stored = {}
    for split in ("train", "validation"):
        for example in builder.as_dataset(split=split).as_numpy_iterator():
            stored[example["file_name"].decode()] = names[example["label"]]
    # Train labels: the inner tars' names; validation labels: TFDS's own file, by name order.
    assert stored == {
        **{f"{w}_{10026 + 17 * i}.JPEG": w for w in IMAGENET_TRAIN_WNIDS
           for i in range(IMAGENET_TRAIN_PER_CLASS)},
        **{f"ILSVRC2012_val_{k:08d}.JPEG": val_wnids[k - 1]
           for k in range(1, IMAGENET_VAL_IMAGES + 1)}}

    workdir = tmp_path / "run"
    train = subprocess.run(
        _command("alexnet-train", "alexnet_tf.cli.train") + [
            "--config=configs/demo.py", f"--workdir={workdir}", "--config.data.source=tfds",
            "--config.data.tfds_name=imagenet2012", f"--config.data.data_dir={data_dir}",
            "--config.data.eval_split=validation", "--config.model.num_classes=1000",
            "--config.model.width=0.0625", "--config.train.global_batch_size=4",
            "--config.train.total_epochs=1", "--config.train.warmup_epochs=0",
            "--config.train.log_every_steps=1",
            "--config.eval.global_batch_size=6"],
        cwd=pathlib.Path(__file__).absolute().parent.parent, capture_output=True, text=True,
        timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    assert [c["id"] for c in json.loads((workdir / "classes.json").read_text())] == names
    trained = json.loads((workdir / "metrics.json").read_text())
    assert trained["step"] == 3 and trained["examples"] == IMAGENET_VAL_IMAGES, trained

    # alexnet-eval's own function, in this process (one TensorFlow start less): the run's
    # best checkpoint on the run's eval split, read back from TFDS.
    from alexnet_tf import evaluate

    result = evaluate.evaluate(str(workdir))
    written = json.loads((workdir / "eval_validation_center.json").read_text())
    assert written["split"] == "validation" and written["examples"] == IMAGENET_VAL_IMAGES
    for key in ("loss", "top1_error", "top5_error"):  # the training run's final evaluation
        assert result[key] == written[key], (key, result, written)
        assert written[key] == pytest.approx(trained[key], rel=1e-5, abs=1e-6), (key, written)
