"""The data issue's contracts: TFRecord source, bad records, ten-crop geometry, fused decoding,
lighting statistics, and the on-device tail of the paper pipeline."""

import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from alexnet_tf import config as config_lib
from alexnet_tf import errors
from alexnet_tf.convention import InputConvention
from alexnet_tf.data import pipeline, preprocess, sources, stats, tfrecords

SEED = tf.constant([3, 5], tf.int64)


def _encode(array, fmt="JPEG", mode="RGB", **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _smooth_image(height, width, seed=0):
    """A photo-like image (smooth gradients plus mild noise), so JPEG is near-lossless."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([np.sin(y / 7.0 + c) * np.cos(x / 9.0 - c) for c in range(3)], -1)
    return np.clip(base * 100 + 128 + rng.integers(-5, 6, base.shape), 0, 255).astype(np.uint8)


def _data_config(**overrides):
    c = config_lib.base_config()
    c.data.resize_size = 76
    c.data.mean_rgb = (0.0, 0.0, 0.0)
    for key, value in overrides.items():
        c.data[key] = value
    return c.data


# --- geometry ---------------------------------------------------------------------------

def test_ten_crop_takes_the_papers_ten_patches():
    # Sec. 4.1: four corners and the centre of the 256 square, and their reflections.
    image = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    png = tf.constant(_encode(image, "PNG"))
    crops = preprocess.ten_crop_images(png, image_size=40, resize_size=64,
                                       norm=InputConvention((0, 0, 0), (1, 1, 1))).numpy()
    square = image[:, 8:72]  # central 64x64 of the 64x80 image (no resize needed)
    boxes = [(0, 0), (0, 24), (24, 0), (24, 24), (12, 12)]
    assert preprocess.ten_crop_windows(40, 64) == tuple(boxes)
    for i, (top, left) in enumerate(boxes):
        np.testing.assert_array_equal(crops[i], square[top:top + 40, left:left + 40])
        np.testing.assert_array_equal(crops[5 + i], square[top:top + 40, left:left + 40][:, ::-1])


def test_bgr_channel_order_reverses_after_normalising():
    png = tf.constant(_encode(_smooth_image(40, 40), "PNG"))
    rgb = preprocess.eval_image(png, image_size=32, resize_size=40,
                                norm=InputConvention((10, 20, 30), (1, 2, 3))).numpy()
    bgr = preprocess.eval_image(png, image_size=32, resize_size=40, norm=InputConvention(
        (10, 20, 30), (1, 2, 3), channel_order="BGR")).numpy()
    np.testing.assert_array_equal(rgb[..., ::-1], bgr)


@pytest.mark.parametrize("subsampling", [0, 2], ids=["4:4:4", "4:2:0"])
def test_fused_decode_and_crop_equals_decode_then_crop(subsampling):
    # Stored with shorter side 76 (= resize_size): the fused path decodes only the crop.
    encoded = _encode(_smooth_image(76, 101), quality=92, subsampling=subsampling)
    full = tf.io.decode_jpeg(encoded).numpy().astype(int)
    square = full[:, 12:88]  # the central 76x76
    for s in range(5):
        seed = tf.constant([1, s], tf.int64)
        crop, (top, left) = preprocess.paper_crop(tf.constant(encoded), seed, image_size=67,
                                                  resize_size=76)
        reference = square[int(top):int(top) + 67, int(left):int(left) + 67]
        diff = np.abs(crop.numpy().astype(int) - reference)
        # Identical inside; on the crop's border, chroma upsampling may differ slightly.
        assert diff[1:-1, 1:-1].max() == 0
        assert diff.max() <= (0 if subsampling == 0 else 8)


def test_eval_crop_is_the_centre_on_both_the_fused_and_the_decoding_path():
    # A PNG takes the decode-resize-crop path, a JPEG stored at 76 the fused one;
    # both give exactly the central 67x67 of what the file decodes to.
    image = _smooth_image(76, 90)
    norm = InputConvention((0, 0, 0), (1, 1, 1))
    via_png = preprocess.eval_image(tf.constant(_encode(image, "PNG")), image_size=67,
                                    resize_size=76, norm=norm).numpy()
    np.testing.assert_array_equal(via_png, image[4:71, 11:78])
    jpeg = _encode(image, quality=95, subsampling=0)
    via_jpeg = preprocess.eval_image(tf.constant(jpeg), image_size=67, resize_size=76,
                                     norm=norm).numpy()
    np.testing.assert_array_equal(via_jpeg, tf.io.decode_jpeg(jpeg).numpy()[4:71, 11:78])


def test_pca_lighting_statistics_follow_the_eigenvectors():
    # Sec. 4.1: shift = P (alpha * lambda) * 255 with alpha ~ N(0, 0.1): mean ~0, and the
    # variance along eigenvector i is (255 * 0.1 * lambda_i)^2, with no cross terms.
    n = 4000
    alphas = tf.stack([preprocess.lighting_draw(0.1, tf.constant([9, i], tf.int64))
                       for i in range(n)])
    shifts = preprocess.lighting_shift(alphas).numpy()
    p = np.array(stats.IMAGENET_PCA_EIGVEC)
    lam = np.array(stats.IMAGENET_PCA_EIGVAL)
    along = shifts @ p  # coordinates in the eigenbasis
    expected_std = 255 * 0.1 * lam
    np.testing.assert_allclose(along.mean(0), 0, atol=4 * expected_std.max() / np.sqrt(n))
    np.testing.assert_allclose(along.std(0), expected_std, rtol=0.06)
    corr = np.corrcoef(along.T)
    assert np.abs(corr[np.triu_indices(3, 1)]).max() < 0.06


# --- bad records ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory):
    """Class folders holding good images and the odd files ImageNet users meet."""
    root = tmp_path_factory.mktemp("odd")
    good = _smooth_image(80, 100)
    files = {
        "a/good1.JPEG": _encode(good),
        "a/good2.JPEG": _encode(good[::-1]),
        "a/rgba.png": _encode(np.dstack([good, np.full(good.shape[:2], 128, np.uint8)]),
                              "PNG", mode="RGBA"),
        "a/tiny.JPEG": _encode(good[:1, :1]),
        "a/grey.JPEG": _encode(good, mode="L"),
        "b/good3.JPEG": _encode(good[:, ::-1]),
        "b/truncated.JPEG": _encode(good)[:700],
        "b/empty.JPEG": b"",
        "b/text.JPEG": b"this is not an image\n",
    }
    for name, data in files.items():
        path = root / "train" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _labels_of(ds):
    return np.concatenate([y.numpy() for _, y in ds]) if ds is not None else None


def test_bad_records_are_skipped_counted_and_named(odd_folder, capfd):
    split = sources.ImageFolderSource.from_directory(str(odd_folder), "train")
    assert len(split) == 9
    counter = tf.Variable(0, dtype=tf.int64)
    ds = pipeline.make_dataset(split, _data_config(), image_size=67, batch_size=2,
                               training=False, bad_records=counter)
    batches = [(x.numpy(), y.numpy()) for x, y in ds]
    images = np.concatenate([x for x, _ in batches])
    # good1, good2, rgba, tiny, grey (class a), good3 (class b) survive.
    assert images.shape == (6, 67, 67, 3) and np.isfinite(images).all()
    assert np.concatenate([y for _, y in batches]).tolist() == [0, 0, 0, 0, 0, 1]
    assert int(counter.numpy()) == 3  # truncated, empty, text
    err = capfd.readouterr().err
    assert "empty.JPEG" in err and "text.JPEG" in err  # named in the log


def test_bad_records_fail_fast_names_the_file(odd_folder):
    split = sources.ImageFolderSource.from_directory(str(odd_folder), "train")
    keep = np.array(["empty" in p or "good" in p for p in split.paths])
    only = sources.ImageFolderSource(split.paths[keep], split.labels[keep], split.class_names)
    ds = pipeline.make_dataset(only, _data_config(on_bad_record="fail"), image_size=67,
                               batch_size=8, training=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty.JPEG") as caught:
        _labels_of(ds)
    # The binaries report it as one line, naming the file and the reason (was TF's
    # traceback).
    from alexnet_tf.cli import app

    empty = next(p for p in split.paths if "empty" in p)
    assert errors.bad_record_in(caught.value) == f"{empty} - empty (0 bytes) (label 1)"
    assert app.exit_status(caught.value) == 1
    # A name holding the text the message ends with is kept whole.
    odd = ValueError("assertion failed: [alexnet_tf: bad record a (label 7)] b.jpg - empty "
                     "(label 1)]\n\t [[{{node Assert}}]]")
    assert errors.bad_record_in(odd) == "a (label 7)] b.jpg - empty (label 1)"
    assert app.error_message(caught.value) == (
        f"bad record {empty} - empty (0 bytes) (label 1), and data.on_bad_record is 'fail' "
        f"('skip' skips, counts and names each bad record instead).")


# --- TFRecords --------------------------------------------------------------------------

def _write_shards(directory, examples, shards=3, prefix="train"):
    directory.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        with tf.io.TFRecordWriter(str(directory / f"{prefix}-{s:05d}-of-{shards:05d}")) as w:
            for example in examples[s::shards]:
                w.write(example.SerializeToString())


@pytest.fixture(scope="module")
def record_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("records")
    examples = [tfrecords.make_example(_encode(_smooth_image(76, 90, seed=i)), i % 4,
                                       synset=f"n0000000{i % 4}", filename=f"img{i}.JPEG")
                for i in range(24)]
    _write_shards(root, examples)
    return root


def test_tfrecord_source_counts_records_and_maps_labels(record_dir):
    split = sources.TFRecordSource.from_directory(str(record_dir), "train",
                                                  label_offset=1, shuffle_buffer=64)
    assert len(split) == 24 and len(split.files) == 3
    assert split.class_names == ("n00000000", "n00000001", "n00000002", "n00000003")
    ds = pipeline.make_dataset(split, _data_config(), image_size=67, batch_size=5, training=False)
    labels = _labels_of(ds)
    assert sorted(labels.tolist()) == sorted([i % 4 for i in range(24)])


def test_tfrecord_metadata_gives_sizes_and_names(record_dir, tmp_path):
    for f in record_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "metadata.json").write_text(json.dumps({
        "label_offset": 1, "splits": {"train": {"num_records": 24}},
        "classes": [{"wnid": f"n0000000{i}", "name": f"thing {i}"} for i in range(4)]}))
    split = sources.TFRecordSource.from_directory(str(tmp_path), "train",
                                                  label_offset=1, shuffle_buffer=8)
    assert split.readable_names == ("thing 0", "thing 1", "thing 2", "thing 3")
    with pytest.raises(ValueError, match="offset 1, but config.data.tfrecord_label_offset is 0"):
        sources.TFRecordSource.from_directory(str(tmp_path), "train",
                                              label_offset=0, shuffle_buffer=8)


def test_tfrecord_training_order_is_seeded_and_resumable(record_dir):
    split = sources.TFRecordSource.from_directory(str(record_dir), "train",
                                                  label_offset=1, shuffle_buffer=64)
    data = _data_config()
    kwargs = dict(image_size=67, batch_size=4, training=True, seed=1)
    first = [(x.numpy(), y.numpy()) for x, y in pipeline.make_dataset(split, data, **kwargs)]
    again = [(x.numpy(), y.numpy()) for x, y in pipeline.make_dataset(split, data, **kwargs)]
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    resumed = [(x.numpy(), y.numpy()) for x, y in
               pipeline.make_dataset(split, data, skip_examples=8, **kwargs)]
    for (x1, y1), (x2, y2) in zip(first[2:], resumed, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    other = [y.numpy() for _, y in pipeline.make_dataset(split, data, epoch=1, **kwargs)]
    assert any(not np.array_equal(a[1], b) for a, b in zip(first, other))


def test_tfrecord_bad_labels_and_images_are_skipped(tmp_path):
    good = _encode(_smooth_image(76, 80))
    examples = [tfrecords.make_example(good, 0), tfrecords.make_example(good, 1),
                tfrecords.make_example(good, 7),  # out of range for 2 classes
                tfrecords.make_example(b"", 1),  # no image
                tf.train.Example(features=tf.train.Features(feature={  # no label
                    "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[good]))}))]
    _write_shards(tmp_path, examples, shards=1)
    split = sources.TFRecordSource((str(tmp_path / "train-00000-of-00001"),), 5, ("x", "y"))
    counter = tf.Variable(0, dtype=tf.int64)
    ds = pipeline.make_dataset(split, _data_config(), image_size=67, batch_size=8,
                               training=False, bad_records=counter)
    assert _labels_of(ds).tolist() == [0, 1]
    assert int(counter.numpy()) == 3


def test_missing_tfrecords_name_the_pattern(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"No TFRecord files match .*train-\*"):
        sources.TFRecordSource.from_directory(str(tmp_path), "train",
                                              label_offset=1, shuffle_buffer=8)


# --- on-device tail ---------------------------------------------------------------------

def test_augment_on_device_equals_the_per_image_path(small_demo_dir):
    split = sources.ImageFolderSource.from_directory(str(small_demo_dir), "train")
    kwargs = dict(image_size=67, batch_size=16, training=True, seed=4)
    data = _data_config(mean_rgb=(120.0, 110.0, 100.0), std_rgb=(60.0, 61.0, 62.0))
    per_image = next(iter(pipeline.make_dataset(split, data, **kwargs)))
    data_device = _data_config(mean_rgb=(120.0, 110.0, 100.0), std_rgb=(60.0, 61.0, 62.0),
                               augment_on_device=True)
    raw, labels = next(iter(pipeline.make_dataset(split, data_device, **kwargs)))
    assert raw["image"].dtype == tf.uint8  # the pipeline hands over uint8 crops
    finished = pipeline.finish_on_device(raw, InputConvention.from_data_config(data_device, 67))
    np.testing.assert_array_equal(labels, per_image[1])
    np.testing.assert_allclose(finished.numpy(), per_image[0].numpy(), atol=1e-4)
    assert bool(tf.reduce_any(raw["flip"])) and not bool(tf.reduce_all(raw["flip"]))


# --- dataset statistics in the pipeline ---------------------------------------------------

def test_stats_file_supplies_mean_image_and_pca(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 76, 76, 3), dtype=np.uint8)
    computed = stats.compute_stats(list(images), image_size=76, progress=False)
    path = str(tmp_path / "stats.npz")
    computed.save(path)
    data = _data_config(stats_file=path, mean="image")
    norm = InputConvention.from_data_config(data, 67)
    np.testing.assert_allclose(norm.mean_image, images.mean(0), atol=1e-3)
    light = pipeline.lighting(data)
    np.testing.assert_allclose(light.eigval, computed.eigval)
    # Evaluation subtracts the mean image's central window, pixel by pixel.
    png = _encode(images[0], "PNG")
    out = preprocess.eval_image(tf.constant(png), image_size=67, resize_size=76, norm=norm)
    np.testing.assert_allclose(out.numpy(), images[0, 4:71, 4:71] - norm.mean_image[4:71, 4:71],
                               atol=1e-3)
    # Training subtracts the window of the random crop (before the reflection).
    crop, (top, left) = preprocess.paper_crop(tf.constant(png), SEED, image_size=67,
                                              resize_size=76)
    image = preprocess.paper_train_image(tf.constant(png), SEED, image_size=67, resize_size=76,
                                         lighting=preprocess.Lighting(0.0), norm=norm).numpy()
    expected = crop.numpy() - norm.mean_image[int(top):int(top) + 67, int(left):int(left) + 67]
    if bool(preprocess.flip_draw(SEED)):
        expected = expected[:, ::-1]
    np.testing.assert_allclose(image, expected, atol=1e-3)


# --- raw records (tools/build_tfrecords.py --format=raw; issue 17) -----------------------

RAW_SIDE = 76


@pytest.mark.parametrize("name", ["paper_train_image", "paper_train_image_mean_image",
                                  "modern_train_image", "eval_image", "ten_crop_images"])
@pytest.mark.parametrize("shape", [(RAW_SIDE, RAW_SIDE), (80, 100)], ids=["square", "resized"])
def test_every_image_function_takes_decoded_pixels_as_their_png(name, shape):
    pixels = _smooth_image(*shape, seed=7)
    png = tf.constant(_encode(pixels, fmt="PNG"))  # lossless: decodes to exactly `pixels`
    norm = InputConvention(mean_rgb=(120.0, 110.0, 100.0), std_rgb=(60.0, 61.0, 62.0),
                           image_size=67, resize_size=RAW_SIDE)
    light = preprocess.Lighting(std=0.1)
    if name == "paper_train_image_mean_image":
        mean = np.random.default_rng(2).uniform(0, 255, (RAW_SIDE, RAW_SIDE, 3)).astype(np.float32)
        fn = lambda image: preprocess.paper_train_image(  # noqa: E731
            image, SEED, image_size=67, resize_size=RAW_SIDE, lighting=light,
            norm=norm.replace(mean_image=mean))
    elif name == "paper_train_image":
        fn = lambda image: preprocess.paper_train_image(  # noqa: E731
            image, SEED, image_size=67, resize_size=RAW_SIDE, lighting=light, norm=norm)
    elif name == "modern_train_image":
        fn = lambda image: preprocess.modern_train_image(  # noqa: E731
            image, SEED, image_size=67, norm=norm)
    else:
        fn = lambda image: getattr(preprocess, name)(  # noqa: E731
            image, image_size=67, resize_size=RAW_SIDE, norm=norm)
    np.testing.assert_array_equal(fn(tf.constant(pixels)).numpy(), fn(png).numpy())
    # Traced with unknown sizes too (graph rewrites may round differently from eager
    # execution, so graph is compared with graph).
    traced = tf.function(fn, input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    traced_png = tf.function(fn, input_signature=[tf.TensorSpec([], tf.string)])
    np.testing.assert_array_equal(traced(tf.constant(pixels)).numpy(), traced_png(png).numpy())


def _raw_and_png_sources(directory, count=12, classes=3):
    """The same squares as raw records and as PNG records, in the same shard layout."""
    images = [_smooth_image(RAW_SIDE, RAW_SIDE, seed=i) for i in range(count)]
    for kind, to_bytes, fmt in (("raw", lambda a: a.tobytes(), "RAW"),
                                ("png", lambda a: _encode(a, fmt="PNG"), "PNG")):
        _write_shards(directory / kind, [
            tfrecords.make_example(to_bytes(a), i % classes, filename=f"img{i}",
                                   height=RAW_SIDE, width=RAW_SIDE, image_format=fmt)
            for i, a in enumerate(images)], shards=2)
    names = tuple(f"c{i}" for i in range(classes))

    def source(kind, **kwargs):
        files = tuple(str(directory / kind / f"train-{s:05d}-of-00002") for s in range(2))
        return sources.TFRecordSource(files, count, names, shuffle_buffer=4, **kwargs)

    return source("raw", image_shape=(RAW_SIDE, RAW_SIDE, 3)), source("png")


@pytest.mark.parametrize("overrides, kwargs", [
    (dict(), dict(training=True, seed=4, epoch=1)),
    (dict(augment_on_device=True), dict(training=True, seed=4, epoch=1)),
    (dict(augmentation="modern"), dict(training=True, seed=4, epoch=1)),
    (dict(), dict(training=False)),
    (dict(), dict(training=False, ten_crop=True)),
], ids=["paper", "paper_on_device", "modern", "eval", "ten_crop"])
def test_raw_records_train_and_evaluate_as_their_png_records(tmp_path, overrides, kwargs):
    raw, png = _raw_and_png_sources(tmp_path)
    data = _data_config(mean_rgb=(120.0, 110.0, 100.0), **overrides)
    batches = [list(pipeline.make_dataset(split, data, image_size=67, batch_size=5, **kwargs))
               for split in (raw, png)]
    assert len(batches[0]) == len(batches[1]) >= 2
    for (x_raw, y_raw), (x_png, y_png) in zip(*batches):
        np.testing.assert_array_equal(y_raw, y_png)
        for a, b in zip(tf.nest.flatten(x_raw), tf.nest.flatten(x_png)):
            np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_raw_records_of_the_wrong_length_are_skipped_counted_and_named(tmp_path, capfd):
    good = _smooth_image(RAW_SIDE, RAW_SIDE).tobytes()
    _write_shards(tmp_path, [tfrecords.make_example(good, 0, filename="good0"),
                             tfrecords.make_example(good[:-3], 1, filename="short"),
                             tfrecords.make_example(_encode(_smooth_image(RAW_SIDE, RAW_SIDE)), 1,
                                                    filename="a_jpeg"),
                             tfrecords.make_example(good, 1, filename="good1")], shards=1)
    split = sources.TFRecordSource((str(tmp_path / "train-00000-of-00001"),), 4, ("x", "y"),
                                   image_shape=(RAW_SIDE, RAW_SIDE, 3))
    counter = tf.Variable(0, dtype=tf.int64)
    ds = pipeline.make_dataset(split, _data_config(), image_size=67, batch_size=8,
                               training=False, bad_records=counter)
    assert _labels_of(ds).tolist() == [0, 1]
    assert int(counter.numpy()) == 2
    err = capfd.readouterr().err
    assert f'"short" - "a raw image of {RAW_SIDE * RAW_SIDE * 3 - 3} bytes; expected ' \
           f'{RAW_SIDE * RAW_SIDE * 3} ({RAW_SIDE}x{RAW_SIDE}x3 uint8' in err
    assert '"a_jpeg" - "a raw image of' in err
    strict = pipeline.make_dataset(split, _data_config(on_bad_record="fail"), image_size=67,
                                   batch_size=8, training=False)
    with pytest.raises(tf.errors.InvalidArgumentError, match="short"):
        _labels_of(strict)


# --- what a source cannot read ----------------------------------------------------------

def _labels_within(ds, seconds=120):
    """The labels of ``ds``, read on a thread: a pipeline that spins on a read error
    fails the test instead of hanging it."""
    import threading

    out = []
    thread = threading.Thread(target=lambda: out.append(_labels_of(ds)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the pipeline did not finish"
    return out[0]


@pytest.mark.parametrize("training", [True, False])
def test_image_files_that_cannot_be_read_are_skipped_counted_and_named(tmp_path, capfd,
                                                                     training):
    # A file deleted after the split was listed (or missing on a data-service worker's
    # machine) failed inside TF's reader, and the pipeline logged only a position.
    for i in range(6):
        path = tmp_path / "train" / f"c{i % 2}" / f"img{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_encode(_smooth_image(40, 40, seed=i), "PNG"))
    split = sources.ImageFolderSource.from_directory(str(tmp_path), "train")
    lost = [split.paths[1], split.paths[-1]]  # one of them is last in the stored order
    for path in lost:
        (tmp_path / path).unlink()
    counter = tf.Variable(0, dtype=tf.int64)
    ds = pipeline.make_dataset(split, _data_config(), image_size=32, batch_size=1,
                               training=training, bad_records=counter, seed=4)
    labels = _labels_within(ds)
    kept = [label for path, label in zip(split.paths, split.labels) if path not in lost]
    assert sorted(labels.tolist()) == sorted(kept) and int(counter.numpy()) == 2
    err = capfd.readouterr().err
    for path in lost:
        assert f'skipping bad record "{path}" - "could not be read' in err


def test_tfrecord_shards_cut_short_or_missing_name_each_record_lost(tmp_path, capfd):
    examples = [tfrecords.make_example(_encode(_smooth_image(40, 40, seed=i), "PNG"), i % 2,
                                       synset=f"n0{i % 2}", filename=f"img{i}.png")
                for i in range(12)]
    _write_shards(tmp_path, examples, shards=3)  # shard s holds examples s, s+3, s+6, s+9
    split = sources.TFRecordSource.from_directory(str(tmp_path), "train", label_offset=1,
                                                  shuffle_buffer=4)
    assert split.shard_sizes == (4, 4, 4)
    corrupt, missing = tmp_path / "train-00001-of-00003", tmp_path / "train-00002-of-00003"
    data = bytearray(corrupt.read_bytes())
    third_record = 2 * len(data) // 4
    data[third_record + 100] ^= 0xFF  # a CRC mismatch in its third record: the reader stops
    corrupt.write_bytes(bytes(data))
    missing.unlink()
    for training in (True, False):
        counter = tf.Variable(0, dtype=tf.int64)
        ds = pipeline.make_dataset(split, _data_config(), image_size=32, batch_size=1,
                                   training=training, bad_records=counter)
        labels = _labels_within(ds)
        # Shard 0 whole and shard 1's first two records (examples 1 and 4) remain.
        assert sorted(labels.tolist()) == sorted([i % 2 for i in (0, 3, 6, 9, 1, 4)])
        assert int(counter.numpy()) == 6
        err = capfd.readouterr().err
        for name in [f"{corrupt} record {k}" for k in (2, 3)] + [
                f"{missing} record {k}" for k in range(4)]:
            assert f'skipping bad record "{name}" - "could not be read' in err


def test_a_shard_that_cannot_be_opened_and_a_backslash_in_the_path(tmp_path, capfd,
                                                                  monkeypatch):
    # TF's reader retries a failed open for ever (ignore_errors then spins): a shard this
    # process cannot open has its records named instead. A backslash in the directory
    # made every record look lost (glob escaping).
    root = tmp_path / "data\\set [1]"
    examples = [tfrecords.make_example(_encode(_smooth_image(40, 40, seed=i), "PNG"), i % 2,
                                       synset=f"n0{i % 2}", filename=f"img{i}.png")
                for i in range(6)]
    _write_shards(root, examples, shards=2)
    split = sources.TFRecordSource.from_directory(str(root), "train", label_offset=1,
                                                  shuffle_buffer=4)
    intact = pipeline.make_dataset(split, _data_config(), image_size=32, batch_size=1,
                                   training=True)
    assert sorted(_labels_within(intact).tolist()) == sorted(i % 2 for i in range(6))
    locked = split.files[1]
    real_access = sources.os.access
    monkeypatch.setattr(sources.os, "access",  # as root, chmod 000 does not stop a read
                        lambda path, mode: path != locked and real_access(path, mode))
    counter = tf.Variable(0, dtype=tf.int64)
    ds = pipeline.make_dataset(split, _data_config(), image_size=32, batch_size=1,
                               training=True, bad_records=counter)
    assert sorted(_labels_within(ds).tolist()) == sorted(i % 2 for i in (0, 2, 4))
    assert int(counter.numpy()) == 3
    err = capfd.readouterr().err
    assert all(f"{locked} record {k}".replace("\\", "\\\\") in err for k in range(3)), err
