"""Preprocessing functions, the image-folder source and the tf.data pipeline."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from alexnet_tf import config as config_lib
from alexnet_tf.convention import InputConvention
from alexnet_tf.data import pipeline, preprocess, sources, stats

SEED = tf.constant([7, 11], tf.int64)
NORM = InputConvention(mean_rgb=(1.0, 2.0, 3.0), std_rgb=(4.0, 5.0, 6.0))


def _jpeg(array, mode="RGB", fmt="JPEG"):
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, format=fmt, quality=95)
    return buffer.getvalue()


def _image(height, width, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _in_dataset(fn, *args):
    """Runs fn inside tf.data.Dataset.map, the way the pipeline does."""
    ds = tf.data.Dataset.from_tensors(tuple(args)).map(fn)
    return next(iter(ds))


# Each random op: eager == inside tf.data, same seed same result, another seed differs.
RANDOM_OPS = {
    "random_crop": lambda image, seed: preprocess.random_crop(image, 5, seed),
    "random_flip": lambda image, seed: preprocess.random_flip(image, seed),
    "pca_lighting": lambda image, seed: preprocess.pca_lighting(tf.cast(image, tf.float32), 0.1, seed),
}


@pytest.mark.parametrize("name", sorted(RANDOM_OPS))
def test_random_ops_are_seeded_and_equal_eagerly_and_in_tf_data(name):
    fn = RANDOM_OPS[name]
    image = tf.constant(_image(9, 9))
    eager = fn(image, SEED).numpy()
    np.testing.assert_array_equal(eager, _in_dataset(fn, image, SEED).numpy())
    np.testing.assert_array_equal(eager, fn(image, SEED).numpy())
    others = [fn(image, tf.constant([7, s], tf.int64)).numpy() for s in range(12, 20)]
    assert any(not np.array_equal(eager, o) for o in others), "the seed has no effect"


def test_pipeline_preprocessing_is_equal_eagerly_and_in_tf_data():
    encoded = tf.constant(_jpeg(_image(90, 120)))
    kwargs = dict(image_size=67, resize_size=76, lighting=preprocess.Lighting(0.1), norm=NORM)
    eager = preprocess.paper_train_image(encoded, SEED, **kwargs)
    inside = _in_dataset(lambda e, s: preprocess.paper_train_image(e, s, **kwargs), encoded, SEED)
    np.testing.assert_allclose(eager.numpy(), inside.numpy(), rtol=0, atol=1e-5)
    assert eager.shape == (67, 67, 3) and eager.dtype == tf.float32


def test_flip_is_a_reflection_or_identity_and_both_happen():
    image = tf.constant(_image(4, 6))
    outcomes = set()
    for s in range(20):
        out = preprocess.random_flip(image, tf.constant([0, s], tf.int64)).numpy()
        if np.array_equal(out, image.numpy()):
            outcomes.add("same")
        else:
            np.testing.assert_array_equal(out, image.numpy()[:, ::-1])
            outcomes.add("flipped")
    assert outcomes == {"same", "flipped"}


def test_random_crop_is_a_patch_of_the_image():
    image = _image(20, 30)
    out = preprocess.random_crop(tf.constant(image), 8, SEED).numpy()
    matches = [(y, x) for y in range(13) for x in range(23)
               if np.array_equal(image[y:y + 8, x:x + 8], out)]
    assert len(matches) == 1


def test_pca_lighting_adds_the_papers_shift_per_image():
    # Sec. 4.1: every pixel gets + P (alpha * lambda), alpha ~ N(0, 0.1) once per image.
    image = tf.fill([3, 4, 3], 100.0)
    out = preprocess.pca_lighting(image, 0.1, SEED).numpy()
    alpha = preprocess.lighting_draw(0.1, SEED).numpy()
    assert alpha.shape == (3,) and np.all(alpha != 0)
    p = np.array(stats.IMAGENET_PCA_EIGVEC)
    expected_shift = p @ (alpha * np.array(stats.IMAGENET_PCA_EIGVAL)) * 255
    np.testing.assert_allclose(out - 100.0, np.broadcast_to(expected_shift, out.shape), atol=1e-4)
    assert np.abs(expected_shift).max() > 0.1  # it does something
    np.testing.assert_array_equal(preprocess.pca_lighting(image, 0.0, SEED), image)


def test_resize_shorter_side_and_central_crop():
    image = tf.constant(_image(100, 150))
    resized = preprocess.resize_shorter_side(image, 50)
    assert resized.shape == (50, 75, 3) and resized.dtype == tf.uint8
    same = preprocess.resize_shorter_side(image, 100)
    np.testing.assert_array_equal(same, image)  # no-op when already stored so
    crop = preprocess.central_crop(image, 60).numpy()
    np.testing.assert_array_equal(crop, image.numpy()[20:80, 45:105])


def test_eval_image_is_the_centre_of_the_resized_image_normalised():
    image = _image(64, 96)
    png = tf.constant(_jpeg(image, fmt="PNG"))  # lossless, so pixels compare exactly
    norm = InputConvention(mean_rgb=(10, 20, 30), std_rgb=(2, 4, 5))
    out = preprocess.eval_image(png, image_size=40, resize_size=64, norm=norm).numpy()
    expected = (image[12:52, 28:68].astype(np.float32) - [10, 20, 30]) / [2, 4, 5]
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_decode_rgb_expands_greyscale_and_reads_png():
    grey = preprocess.decode_rgb(tf.constant(_jpeg(_image(8, 8), mode="L", fmt="PNG"))).numpy()
    assert grey.shape == (8, 8, 3)
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])


def test_modern_crop_has_the_model_size_and_is_seeded():
    encoded = tf.constant(_jpeg(_image(80, 120)))
    kwargs = dict(image_size=32, norm=InputConvention((0, 0, 0), (1, 1, 1)))
    a = preprocess.modern_train_image(encoded, SEED, **kwargs).numpy()
    b = _in_dataset(lambda e, s: preprocess.modern_train_image(e, s, **kwargs), encoded, SEED)
    assert a.shape == (32, 32, 3)
    np.testing.assert_allclose(a, b.numpy(), atol=1e-4)


# --- sources and pipeline -------------------------------------------------------------

def _data_config(demo_dir):
    c = config_lib.base_config()
    c.data.source = "image_folder"
    c.data.data_dir = str(demo_dir)
    c.data.resize_size = 76
    return c.data


def test_image_folder_reads_sorted_classes(small_demo_dir):
    split = sources.ImageFolderSource.from_directory(str(small_demo_dir), "train")
    assert len(split) == 600 and split.class_names == tuple(sorted(split.class_names))
    assert np.bincount(split.labels).tolist() == [60] * 10
    assert all(f"/{split.class_names[l]}/" in p for p, l in zip(split.paths, split.labels))


def test_image_folder_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="No split directory"):
        sources.ImageFolderSource.from_directory(str(tmp_path), "train")
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match="cat' holds no images"):
        sources.ImageFolderSource.from_directory(str(tmp_path), "train")


def test_every_configurable_source_is_registered():
    # config.py names the sources without importing TensorFlow; sources.py maps each name
    # to its class, which everything else reaches through the DataSource interface.
    assert set(config_lib.DATA_SOURCES) == set(sources.SOURCES)
    assert all(issubclass(c, sources.DataSource) for c in sources.SOURCES.values())


def test_ordered_records_and_read_encoded_agree(small_demo_dir):
    split = sources.load_split(_data_config(small_demo_dir), "train")
    assert type(split) is sources.ImageFolderSource
    chosen = [tuple(t.numpy() for t in element) for element in split.ordered_records([5, 2, 5])]
    assert [location.tolist() for location, *_ in chosen] == [[-1, 2], [-1, 5]]  # sorted, once
    assert [name.decode() for *_, name in chosen] == [str(split.paths[2]), str(split.paths[5])]
    assert [label for _, _, label, _ in chosen] == [split.labels[2], split.labels[5]]
    locations = np.stack([location for location, *_ in chosen])
    assert split.read_encoded(locations[::-1]) == [encoded for _, encoded, _, _ in chosen][::-1]
    with pytest.raises(ValueError, match=r"outside \[0, 600\)"):
        split.ordered_records([600])
    with pytest.raises(KeyError, match="holds no example at location"):
        split.read_encoded([[0, 1]])


def _batches(ds):
    return [(x.numpy(), y.numpy()) for x, y in ds]


def test_training_pipeline_is_reproducible_and_resumable(small_demo_dir):
    split = sources.ImageFolderSource.from_directory(str(small_demo_dir), "train")
    data = _data_config(small_demo_dir)
    kwargs = dict(image_size=67, batch_size=50, training=True, seed=3)
    first = _batches(pipeline.make_dataset(split, data, epoch=0, **kwargs))
    again = _batches(pipeline.make_dataset(split, data, epoch=0, **kwargs))
    assert len(first) == 12 and first[0][0].shape == (50, 67, 67, 3)
    for (x1, y1), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    other_epoch = _batches(pipeline.make_dataset(split, data, epoch=1, **kwargs))
    assert not np.array_equal(first[0][1], other_epoch[0][1])
    # A run resumed after 4 batches sees exactly the rest of the epoch.
    resumed = _batches(pipeline.make_dataset(split, data, epoch=0, skip_examples=200, **kwargs))
    assert len(resumed) == 8
    for (x1, y1), (x2, y2) in zip(first[4:], resumed):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_pipeline_shards_are_disjoint_and_cover_the_epoch(small_demo_dir):
    split = sources.ImageFolderSource.from_directory(str(small_demo_dir), "val")
    data = _data_config(small_demo_dir)
    seen = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=2)
        ds = pipeline.make_dataset(split, data, image_size=67, batch_size=30, training=False,
                                   input_context=context)
        seen.append(np.concatenate([y for _, y in _batches(ds)]))
    assert len(seen[0]) == len(seen[1]) == 100
    full = np.concatenate([y for _, y in _batches(pipeline.make_dataset(
        split, data, image_size=67, batch_size=30, training=False))])
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.sort(full))
    np.testing.assert_array_equal(full[0::2], seen[0])


def test_eval_pipeline_keeps_every_example_in_order(small_demo_dir):
    split = sources.ImageFolderSource.from_directory(str(small_demo_dir), "val")
    ds = pipeline.make_dataset(split, _data_config(small_demo_dir), image_size=67, batch_size=64,
                               training=False)
    labels = np.concatenate([y for _, y in _batches(ds)])
    np.testing.assert_array_equal(labels, split.labels)


def _expected_resize(image, size, antialias):
    h, w = image.shape[:2]
    scale = np.float32(size) / np.float32(min(h, w))
    shape = [max(size, int(np.round(np.float32(h) * scale))),
             max(size, int(np.round(np.float32(w) * scale)))]
    out = tf.image.resize(image, shape, antialias=antialias)
    return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8).numpy()


@pytest.mark.parametrize("height,width,size,antialias", [
    (120, 90, 60, False),   # shrinks 1.5x: plain bilinear reads every pixel
    (100, 150, 50, False),  # exactly 2x: still plain
    (200, 130, 60, True),   # shrinks 2.17x: widened (antialiased) kernel
    (40, 60, 64, False),    # enlarges: plain bilinear
])
def test_resize_shorter_side_antialiases_only_beyond_2x(height, width, size, antialias):
    image = _image(height, width, seed=height)
    out = preprocess.resize_shorter_side(tf.constant(image), size).numpy()
    np.testing.assert_array_equal(out, _expected_resize(image, size, antialias))
    if size < min(height, width):
        # Shrinking, the other kernel gives other pixels: the check above tells them apart.
        assert not np.array_equal(out, _expected_resize(image, size, not antialias))
    np.testing.assert_array_equal(
        _in_dataset(lambda x: preprocess.resize_shorter_side(x, size), image), out)


@pytest.mark.parametrize("height,width", [
    (64, 64),    # stored at resize_size: no resize
    (90, 120),   # plain bilinear
    (150, 300),  # shrinks beyond 2x: the antialiased kernel
    (40, 50),    # enlarges
])
def test_eval_pixels_of_a_batch_equals_each_image_alone(height, width):
    # The export's pixels signatures preprocess a whole batch in one call.
    images = np.stack([_image(height, width, seed=s) for s in range(3)])
    mean_image = np.random.default_rng(1).uniform(0, 255, (64, 64, 3)).astype(np.float32)
    for norm in (InputConvention(mean_rgb=(10, 20, 30), std_rgb=(2, 4, 5)),
                 InputConvention(mean_rgb=(0, 0, 0), std_rgb=(1, 1, 1), channel_order="BGR",
                                 mean_image=mean_image, resize_size=64, image_size=40)):
        kwargs = dict(image_size=40, resize_size=64, norm=norm)
        batched = preprocess.eval_pixels(tf.constant(images), **kwargs)
        assert batched.shape == (3, 40, 40, 3)
        alone = np.stack([preprocess.eval_pixels(tf.constant(i), **kwargs) for i in images])
        np.testing.assert_array_equal(batched.numpy(), alone)
    traced = tf.function(lambda x: preprocess.eval_pixels(x, **kwargs))(tf.constant(images))
    np.testing.assert_array_equal(traced.numpy(), alone)


def test_flip_image_single_and_batched_agree_with_numpy():
    images = np.random.default_rng(5).integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    flips = np.array([True, False, True, False])
    batched = preprocess.flip_image(tf.constant(images), tf.constant(flips)).numpy()
    for image, flip, out in zip(images, flips, batched):
        expected = image[:, ::-1] if flip else image
        np.testing.assert_array_equal(out, expected)
        np.testing.assert_array_equal(
            preprocess.flip_image(tf.constant(image), tf.constant(flip)), expected)


@pytest.mark.parametrize("channel_order", ["RGB", "BGR"])
def test_finish_paper_image_is_flip_lighting_and_normalisation(channel_order):
    image = _image(8, 9, seed=3)
    norm = InputConvention(mean_rgb=(1.0, 2.0, 3.0), std_rgb=(4.0, 5.0, 6.0),
                                    channel_order=channel_order)
    light = preprocess.Lighting(0.1)
    alpha = np.array([0.3, -1.2, 0.7], np.float32)
    out = preprocess.finish_paper_image(tf.constant(image), tf.constant(True),
                                        tf.constant(alpha), norm, light).numpy()
    shift = np.array(stats.IMAGENET_PCA_EIGVEC) @ (
        alpha * np.array(stats.IMAGENET_PCA_EIGVAL)) * 255
    expected = (image[:, ::-1].astype(np.float64) + shift - [1, 2, 3]) / [4, 5, 6]
    expected = expected[..., ::-1] if channel_order == "BGR" else expected
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-5)
