"""The analyses of Sec. 6.1 and the training curves: colour specificity and kernel grids,
fc7 retrieval (exact search, cache, bad queries, the SavedModel contract), event files,
and the three tools end to end on a tiny trained run."""

import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from alexnet_tf import create_model
from alexnet_tf.analysis import curves, kernels, model_io, retrieval
from alexnet_tf.data import preprocess
from alexnet_tf.data.sources import ImageFolderSource
from alexnet_tf.errors import UserError
from conftest import REPO_ROOT
from test_config import load_config_file

RNG = np.random.default_rng(0)


# ------------------------------------------------------------------ colour specificity

def _grey(n, h=11, w=11):
    pattern = RNG.normal(size=(n, h, w, 1))
    return np.repeat(pattern, 3, axis=-1)


def _chroma(n, h=11, w=11):
    c = RNG.normal(size=(n, h, w, 3))
    return c - c.mean(axis=-1, keepdims=True)  # channels sum to zero at every pixel


def test_grey_kernels_score_zero_and_pure_chroma_one():
    grey = _grey(5)
    np.testing.assert_allclose(kernels.colour_specificity(grey), 0.0, atol=1e-12)
    np.testing.assert_allclose(kernels.colour_specificity(_chroma(5)), 1.0, rtol=1e-12)
    # Red minus green, constant over the kernel: a colour blob, all chroma.
    red_green = np.zeros((1, 11, 11, 3))
    red_green[..., 0], red_green[..., 1] = 1.0, -1.0
    np.testing.assert_allclose(kernels.colour_specificity(red_green), 1.0)
    # A constant kernel has no pattern at all: colour-agnostic by definition.
    assert kernels.colour_specificity(np.full((1, 11, 11, 3), 0.3))[0] == 0.0


def test_mixed_kernel_scores_its_chroma_energy_share():
    grey, chroma = _grey(1), _chroma(1)
    grey -= grey.mean()
    for a, b in ((1.0, 1.0), (2.0, 0.5), (0.3, 3.0)):
        mixed = a * grey + b * chroma
        expected = np.sum((b * chroma) ** 2) / (np.sum((a * grey) ** 2) + np.sum((b * chroma) ** 2))
        assert 0.0 < expected < 1.0
        np.testing.assert_allclose(kernels.colour_specificity(mixed), [expected], rtol=1e-10)
        # A grey offset shifts only the bias: the score must not move.
        np.testing.assert_allclose(kernels.colour_specificity(mixed + 5.0), [expected], rtol=1e-9)


def test_random_kernels_score_about_two_thirds_as_documented():
    scores = kernels.colour_specificity(RNG.normal(size=(2000, 11, 11, 3)))
    assert abs(scores.mean() - 2 * 121 / (3 * 121 - 1)) < 0.005


def test_towers_split_kernels_0_to_47_and_48_to_95():
    k = np.concatenate([_grey(48), _chroma(48)])
    towers = kernels.tower_scores(k, 2)
    assert [(t.tower, t.kernels) for t in towers] == [(1, range(0, 48)), (2, range(48, 96))]
    np.testing.assert_allclose(towers[0].scores, 0.0, atol=1e-12)
    np.testing.assert_allclose(towers[1].scores, 1.0)
    assert towers[0].mean < 1e-12 and towers[1].median == pytest.approx(1.0)
    one = kernels.tower_scores(k, 1)
    assert len(one) == 1 and one[0].kernels == range(96)
    assert one[0].mean == pytest.approx(0.5)
    with pytest.raises(ValueError, match="do not split into 5 equal towers"):
        kernels.tower_ranges(96, 5)


def test_conv1_kernels_in_rgb_pixel_space_and_tower_count():
    model = create_model("paper", num_classes=10, image_size=67, width=0.125, seed=0)
    raw = model.get_layer("conv1").kernel.numpy()  # [11, 11, 3, 12]
    rgb = kernels.conv1_kernels(model)
    np.testing.assert_allclose(rgb, np.transpose(raw, (3, 0, 1, 2)), rtol=1e-6)
    # Caffe's BGR input: channel 0 of the kernel looks at blue.
    bgr = kernels.conv1_kernels(model, "BGR", std_rgb=(2.0, 4.0, 8.0))
    np.testing.assert_allclose(bgr[..., 0], rgb[..., 2] / 2.0, rtol=1e-6)
    np.testing.assert_allclose(bgr[..., 2], rgb[..., 0] / 8.0, rtol=1e-6)
    assert kernels.num_towers(model) == 2
    assert kernels.num_towers(create_model("one_tower", 10, 63, 0.125)) == 1
    assert kernels.num_towers(create_model("modern", 10, 63, 0.125)) == 1
    assert kernels.num_towers(create_model("modern", 10, 63, 0.125, groups=2)) == 2


# ------------------------------------------------------------------------------- grids

def test_display_normalisation_keeps_colours_and_centres_zero():
    k = _chroma(3) + 0.7
    shown = kernels.normalise_for_display(k)
    assert shown.min() >= 0 and shown.max() <= 1
    for i in range(3):
        assert np.isclose(np.abs(shown[i] - 0.5).max(), 0.5)  # full contrast per kernel
        np.testing.assert_allclose(shown[i].mean(), 0.5, atol=1e-12)
        # One scale for all three channels: the channels' relative strengths stay.
        centred = k[i] - k[i].mean()
        np.testing.assert_allclose(shown[i] - 0.5, 0.5 * centred / np.abs(centred).max())


def test_grid_has_expected_size_and_a_gap_between_towers():
    k = RNG.normal(size=(96, 11, 11, 3))
    grid, layout = kernels.kernel_grid(k, 2, scale=4, columns=16, spacing=2, margin=6,
                                       tower_gap=16)
    cell = 44
    assert grid.dtype == np.uint8
    assert grid.shape == (2 * 6 + 2 * (3 * cell + 2 * 2) + 16, 2 * 6 + 16 * cell + 15 * 2, 3)
    (t1, l1, b1, r1), (t2, l2, b2, r2) = layout.blocks
    assert (t1, l1, b1, r1) == (6, 6, 6 + 3 * cell + 4, 6 + 16 * cell + 30)
    assert t2 - b1 == 16 and (l2, r2) == (l1, r1)
    assert np.all(grid[b1:t2] == 255)  # the gap is background, full width
    # Tower 2's first kernel (index 48) sits at the top left of block 2, upscaled 4x.
    expected = np.round(255 * kernels.normalise_for_display(k[48:49])[0]).astype(np.uint8)
    np.testing.assert_array_equal(grid[t2:t2 + cell:4, l2:l2 + cell:4], expected)
    one, one_layout = kernels.kernel_grid(k, 1, columns=16)
    assert len(one_layout.blocks) == 1 and one.shape[0] == 2 * 6 + 6 * cell + 5 * 2


def test_labelled_grid_and_kernel_grid_image():
    model = create_model("paper", num_classes=10, image_size=67, width=0.125, seed=0)
    image = kernels.kernel_grid_image(model)
    plain = kernels.kernel_grid_image(model, labels=False)
    assert image.dtype == np.uint8 and image.ndim == 4 and image.shape[0] == 1
    assert plain.shape == (1, 2 * 6 + 2 * 44 + 16, 2 * 6 + 6 * 44 + 5 * 2, 3)
    assert image.shape[1] > plain.shape[1]  # the label lines
    _, layout = kernels.kernel_grid(kernels.conv1_kernels(model), 2,
                                    labels=kernels.tower_labels(
                                        kernels.tower_scores(kernels.conv1_kernels(model), 2)))
    label_strip = image[0, layout.blocks[0][0] - layout.label_height:layout.blocks[0][0]]
    assert (label_strip < 128).any()  # text was drawn


def test_write_summaries_logs_the_grid_and_tower_scores(tmp_path):
    model = create_model("paper", num_classes=10, image_size=67, width=0.125, seed=0)
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default(step=7):
        scores = kernels.write_summaries(model)
    writer.close()
    series = curves.read_event_files(curves._event_files(str(tmp_path)))
    for s in scores:
        logged = series[f"conv1_colour_specificity/tower{s.tower}"]
        assert logged.steps.tolist() == [7] and logged.values[0] == pytest.approx(s.mean)
    from tensorflow.core.util import event_pb2

    images = [v for record in tf.data.TFRecordDataset(curves._event_files(str(tmp_path)))
              for v in event_pb2.Event.FromString(record.numpy()).summary.value
              if v.tag == "conv1_kernels"]
    png = tf.make_ndarray(images[0].tensor)[2]  # [width, height, encoded PNG]
    decoded = tf.io.decode_png(png).numpy()
    np.testing.assert_array_equal(decoded, kernels.kernel_grid_image(model)[0])


# --------------------------------------------------------------------------- retrieval

def _clusters(n_per, centres, dim, spread, rng):
    c = rng.normal(size=(centres, dim)) * 5
    x = np.concatenate([c[i] + spread * rng.normal(size=(n_per, dim)) for i in range(centres)])
    labels = np.repeat(np.arange(centres), n_per)
    return x.astype(np.float32), labels


def _brute_force(queries, database, k, exclude=None):
    d = np.linalg.norm(queries[:, None, :].astype(np.float64)
                       - database[None].astype(np.float64), axis=-1)
    if exclude is not None:
        for i, e in enumerate(exclude):
            if e >= 0:
                d[i, e] = np.inf
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(d, order, axis=1)


class _CountingRows:
    """A database that records how many rows each read asks for."""

    def __init__(self, array):
        self.array, self.shape, self.largest_read = array, array.shape, 0

    def __getitem__(self, index):
        rows = self.array[index]
        self.largest_read = max(self.largest_read, len(rows))
        return rows


def test_nearest_neighbours_equal_brute_force_in_small_chunks():
    rng = np.random.default_rng(1)
    database, labels = _clusters(60, 8, 32, 0.5, rng)
    queries, query_labels = _clusters(3, 8, 32, 0.5, np.random.default_rng(1))
    queries = queries + 0.1 * rng.normal(size=queries.shape).astype(np.float32)
    expected_i, expected_d = _brute_force(queries, database, 7)
    counting = _CountingRows(database)
    budget = 8 * (32 + len(queries)) * 25  # 25 rows per chunk
    got_i, got_d = retrieval.nearest_neighbours(queries, counting, 7, max_chunk_bytes=budget)
    np.testing.assert_array_equal(got_i, expected_i)
    np.testing.assert_allclose(got_d, expected_d, rtol=1e-10)
    assert counting.largest_read <= 25  # never more than a chunk of the database at once
    # Same clusters, so the neighbours share the query's label.
    assert np.all(labels[got_i] == query_labels[:, None])
    # One chunk (the default budget) gives the same answer.
    np.testing.assert_array_equal(retrieval.nearest_neighbours(queries, database, 7)[0], expected_i)


def test_nearest_neighbours_exclude_a_querys_own_row():
    rng = np.random.default_rng(2)
    database, _ = _clusters(20, 4, 16, 1.0, rng)
    rows = np.array([0, 17, 55, 79])
    got_i, got_d = retrieval.nearest_neighbours(database[rows], database, 3, exclude=rows,
                                                max_chunk_bytes=2000)
    expected_i, expected_d = _brute_force(database[rows], database, 3, exclude=rows)
    np.testing.assert_array_equal(got_i, expected_i)
    np.testing.assert_allclose(got_d, expected_d, rtol=1e-10)
    assert not np.any(got_i == rows[:, None])
    with pytest.raises(ValueError, match="k=80 neighbours asked"):
        retrieval.nearest_neighbours(database[rows], database, 80, exclude=rows)


def test_same_class_fraction():
    per_query, overall = retrieval.same_class_fraction(
        [0, 1, -1, 2], [[0, 0, 1, 0], [1, 2, 2, 2], [0, 0, 0, 0], [2, 2, 2, 2]])
    np.testing.assert_allclose(per_query[[0, 1, 3]], [0.75, 0.25, 1.0])
    assert np.isnan(per_query[2])  # class unknown
    assert overall == pytest.approx((0.75 + 0.25 + 1.0) / 3)
    assert retrieval.same_class_fraction([-1], [[3, 3]])[1] is None


def _png(colour, size=24, noise=0, rng=RNG) -> bytes:
    pixels = np.clip(np.array(colour)[None, None] + noise * rng.normal(size=(size, size, 3)),
                     0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(colour, size=24) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), colour, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


COLOURS = {"red": (220, 30, 30), "blue": (30, 30, 220)}


def _colour_folder(root, per_class=5, bad=True):
    """root/<split>/<red|blue>/*.png: colours with noise; two bad files in train."""
    rng = np.random.default_rng(3)
    for split in ("train", "val"):
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                (folder / f"{i:02d}.png").write_bytes(_png(colour, noise=20, rng=rng))
    if bad:
        (root / "train" / "red" / "zz_text.jpg").write_text("not an image")
        (root / "train" / "blue" / "zz_truncated.jpg").write_bytes(_jpeg((0, 0, 200))[:200])
    return root


def _split(root, split="train"):
    paths, labels = [], []
    for label, name in enumerate(sorted(COLOURS)):
        for path in sorted((root / split / name).iterdir()):
            paths.append(str(path))
            labels.append(label)
    return ImageFolderSource(np.array(paths), np.array(labels, np.int32),
                             tuple(sorted(COLOURS)))


def _mean_colour_extractor(version=1, calls=None):
    """Features: the image's 2x2 mean colours, counted per call."""

    def prepare(encoded):
        image = tf.cast(preprocess.decode_rgb(encoded), tf.float32) / 255.0
        return tf.reshape(tf.image.resize(image, [2, 2], method="area"), [12])

    def features(batch):
        if calls is not None:
            calls.append(int(tf.shape(batch)[0]))
        return batch.numpy()

    return retrieval.Extractor("mean colour", 12, prepare, features,
                               {"kind": "test", "version": version})


def test_features_leave_out_and_name_a_file_deleted_after_listing(tmp_path):
    root = _colour_folder(tmp_path / "data", bad=False)
    split = _split(root)
    gone = split.paths[3]
    os.remove(gone)
    result = retrieval.split_features(split, _mean_colour_extractor(), str(tmp_path / "cache"),
                                      split_name="train", batch_size=4, progress=False)
    assert len(result) == 9 and result.manifest["skipped"] == [gone]
    assert gone not in result.names


def test_features_are_cached_reused_and_invalidated(tmp_path):
    root = _colour_folder(tmp_path / "data")
    split = _split(root)
    cache = str(tmp_path / "cache")
    calls = []
    first = retrieval.split_features(split, _mean_colour_extractor(1, calls), cache,
                                     split_name="train", batch_size=4, progress=False)
    # 10 images and a placeholder row for the text file; the truncated JPEG fails its
    # decoder inside the pipeline and never reaches the extractor.
    assert not first.reused and sum(calls) == 11
    assert len(first) == 10 and first.features.shape == (10, 12)
    assert sorted(os.path.basename(p) for p in first.manifest["skipped"]) == [
        "zz_text.jpg", "zz_truncated.jpg"]
    assert all("zz_" not in n for n in first.names)
    np.testing.assert_array_equal(first.labels, [0] * 5 + [1] * 5)  # blue, then red
    # Rows line up with their files: a red image's features are red.
    red = first.features[first.labels == 1].reshape(-1, 4, 3).mean(axis=1)
    assert np.all(red[:, 0] > 0.6) and np.all(red[:, 2] < 0.3)
    assert all(first.locations[i, 1] == list(split.paths).index(n)
               for i, n in enumerate(first.names))

    calls.clear()
    again = retrieval.split_features(split, _mean_colour_extractor(1, calls), cache,
                                     split_name="train", progress=False)
    assert again.reused and calls == []
    np.testing.assert_array_equal(np.asarray(again.features), np.asarray(first.features))
    assert again.names == first.names

    other = retrieval.split_features(split, _mean_colour_extractor(2, calls), cache,
                                     split_name="train", progress=False)
    assert not other.reused and sum(calls) == 11  # another model: recomputed
    assert json.load(open(os.path.join(cache, "manifest.json")))["fingerprint"][
        "extractor"]["version"] == 2
    calls.clear()
    (root / "train" / "red" / "05.png").write_bytes(_png(COLOURS["red"]))
    grown = retrieval.split_features(_split(root), _mean_colour_extractor(2, calls), cache,
                                     split_name="train", progress=False)
    assert not grown.reused and len(grown) == 11 and sum(calls) == 12  # another split


def test_tfrecord_split_rows_point_back_at_their_records(tmp_path):
    from alexnet_tf.data import tfrecords
    from alexnet_tf.data.sources import TFRecordSource

    rng = np.random.default_rng(4)
    originals = {}
    files = []
    for shard in range(2):
        path = str(tmp_path / f"train-{shard:05d}-of-00002")
        with tf.io.TFRecordWriter(path) as writer:
            for i in range(5):
                label = (shard + i) % 2
                name = f"s{shard}_{i}.png"
                encoded = (b"garbage" if (shard, i) == (1, 2)
                           else _png(COLOURS[sorted(COLOURS)[label]], noise=20, rng=rng))
                originals[name] = (encoded, label)
                writer.write(tfrecords.make_example(encoded, label, filename=name)
                             .SerializeToString())
        files.append(path)
    split = TFRecordSource(tuple(files), 10, tuple(sorted(COLOURS)))
    result = retrieval.split_features(split, _mean_colour_extractor(), str(tmp_path / "cache"),
                                      batch_size=3, progress=False)
    assert len(result) == 9 and result.manifest["skipped"] == ["s1_2.png"]
    for row, name in enumerate(result.names):
        shard, offset = result.locations[row]
        assert name == f"s{shard}_{offset}.png"
        assert result.labels[row] == originals[name][1]
    fetched = split.read_encoded(result.locations)
    assert fetched == [originals[n][0] for n in result.names]
    stream = [f"s{s}_{i}.png" for s in range(2) for i in range(5)]  # the records' order
    for seed in range(4):
        queries = retrieval.queries_from_split(split, 4, seed=seed)
        chosen = [stream[p] for p in retrieval.choose_queries(10, 4, seed)]
        assert [q.name for q in queries] == [n for n in chosen if n != "s1_2.png"]
        assert all(q.encoded == originals[q.name][0] and q.label == originals[q.name][1]
                   for q in queries)


def test_query_that_is_not_an_image_is_skipped_with_a_message(tmp_path, caplog):
    good = tmp_path / "q" / "good.png"
    good.parent.mkdir()
    good.write_bytes(_png(COLOURS["red"]))
    (tmp_path / "q" / "notes.txt").write_text("a shopping list")
    (tmp_path / "q" / "broken.jpg").write_bytes(_jpeg((1, 2, 3))[:150])
    queries, skipped = retrieval.queries_from_files([str(tmp_path / "q")])
    assert [q.name for q in queries] == [str(good)]
    assert len(skipped) == 2
    assert any(str(tmp_path / "q" / "notes.txt") in m and "not a JPEG, PNG" in m for m in skipped)
    assert any(str(tmp_path / "q" / "broken.jpg") in m and "cannot be decoded" in m
               for m in skipped)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        retrieval.queries_from_files([str(tmp_path / "missing.jpg")])


def _save_features_model(directory, size=2):
    """A SavedModel with the export contract: features(image_bytes) -> {"features"}."""

    class Module(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
        def features(self, image_bytes):
            def one(encoded):
                image = tf.cast(preprocess.decode_rgb(encoded), tf.float32) / 255.0
                return tf.reshape(tf.image.resize(image, [size, size], method="area"), [-1])
            return {"features": tf.map_fn(one, image_bytes,
                                          fn_output_signature=tf.TensorSpec([size * size * 3]))}

    module = Module()
    tf.saved_model.save(module, str(directory), signatures={"features": module.features})
    return str(directory)


def test_saved_model_features_signature_end_to_end(tmp_path):
    root = _colour_folder(tmp_path / "data")
    saved = _save_features_model(tmp_path / "saved")
    extractor = retrieval.saved_model_extractor(saved)
    assert extractor.dim == 12
    # Same numbers as the in-process mean-colour extractor on the same files.
    split = _split(root)
    via_saved = retrieval.split_features(split, extractor, str(tmp_path / "c1"),
                                         batch_size=4, progress=False)
    direct = retrieval.split_features(split, _mean_colour_extractor(), str(tmp_path / "c2"),
                                      batch_size=4, progress=False)
    assert via_saved.names == direct.names  # the truncated JPEG failed inside the signature
    np.testing.assert_allclose(via_saved.features, direct.features, atol=1e-6)

    output = tmp_path / "neighbours.png"
    (tmp_path / "readme.txt").write_text("not an image")
    result = retrieval.retrieve(saved_model=saved, data_dir=str(root), split="train",
                                query_paths=[str(tmp_path / "readme.txt")], query_split="val",
                                num_queries=4, k=3, output=str(output),
                                features_cache=str(tmp_path / "cache"), thumb=16,
                                progress=False)
    assert len(result.queries) == 4 and result.skipped and "readme.txt" in result.skipped[0]
    assert result.same_class_overall == 1.0  # red finds red, blue finds blue
    assert Image.open(output).size[0] > 4 * 16

    with pytest.raises(ValueError, match="None of the queries is an image"):
        retrieval.retrieve(saved_model=saved, data_dir=str(root),
                           query_paths=[str(tmp_path / "readme.txt")],
                           features_cache=str(tmp_path / "unused"), progress=False)
    assert not (tmp_path / "unused").exists()  # refused before any feature was computed

    no_signature = tmp_path / "plain"
    tf.saved_model.save(tf.Module(), str(no_signature))
    with pytest.raises(ValueError, match="no 'features' signature"):
        retrieval.saved_model_extractor(str(no_signature))


def _tool(script, *args, block=None):
    """tools/<script> as a command; ``block``: a module made unimportable first, as if it
    were not installed (``sys.modules[name] = None``)."""
    wrapper = ("import runpy, sys\n"
               f"for name in {list(block or [])!r}: sys.modules[name] = None\n"
               "sys.argv = sys.argv[1:]\n"
               "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-c", wrapper, str(REPO_ROOT / "tools" / script),
                           *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_retrieve_takes_an_export_base_directory_as_alexnet_predict_does(tmp_path):
    root = _colour_folder(tmp_path / "data")
    base = tmp_path / "exports" / "alexnet"
    _save_features_model(base / "1", size=2)
    _save_features_model(base / "2", size=3)  # the newest version: 3x3 mean colours
    (base / "2.keras").write_bytes(b"")  # what alexnet-export writes beside: not a version
    newest = retrieval.saved_model_extractor(str(base))
    assert newest.dim == 27 and newest.fingerprint["path"] == str(base / "2")
    assert retrieval.saved_model_extractor(str(base / "1")).dim == 12  # a version, as before
    from alexnet_tf.serving.client import saved_model_path
    assert saved_model_path(str(base)) == str(base / "2")  # the one rule, shared
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="neither a SavedModel nor a directory of versions"):
        retrieval.saved_model_extractor(str(tmp_path / "empty"))

    common = [f"--data_dir={root}", "--query_split=val", "--num_queries=2", "--k=2",
              f"--features_cache={tmp_path / 'cache'}", "--thumb=16"]
    result = _tool("retrieve.py", f"--saved_model={base}", *common,
                   f"--output={tmp_path / 'n.png'}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Neighbours sharing the query's class: 100.0%" in result.stdout
    manifest = json.loads((tmp_path / "cache" / "train" / "manifest.json").read_text())
    assert manifest["fingerprint"]["extractor"]["path"] == str(base / "2")
    assert Image.open(tmp_path / "n.png").format == "PNG"
    refused = _tool("retrieve.py", f"--saved_model={tmp_path / 'empty'}", *common)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"retrieve.py: error: {str(tmp_path / 'empty')!r} is neither a SavedModel nor a "
        "directory of versions."]


def test_neighbour_grid_layout_and_frames():
    tiles = [Image.new("RGB", (10, 10), c) for c in ((0, 0, 0), (50, 50, 50), (90, 90, 90))]
    grid, layout = retrieval.neighbour_grid(
        [tiles[0], tiles[0]], [[tiles[1], tiles[2]], [tiles[2], tiles[1]]],
        query_labels=[1, -1], neighbour_labels=[[1, 0], [1, 0]], thumb=10, frame=3,
        spacing=4, query_gap=16, margin=8)
    assert layout.column_lefts == (8, 8 + 16 + 16, 8 + 16 + 16 + 16 + 4)
    assert grid.shape == (8 + 16 + 4 + 16 + 8, layout.column_lefts[-1] + 16 + 8, 3)
    top = layout.row_tops[0]
    assert tuple(grid[top, layout.column_lefts[1]]) == retrieval.SAME_CLASS_COLOUR
    assert tuple(grid[top, layout.column_lefts[2]]) == retrieval.OTHER_CLASS_COLOUR
    assert tuple(grid[layout.row_tops[1], layout.column_lefts[1]]) == retrieval.UNKNOWN_CLASS_COLOUR
    assert tuple(grid[top + 3, 8 + 3]) == (0, 0, 0)  # the query's own pixels
    assert np.all(grid[:, 8 + 16:8 + 32] == 255)  # the gap after the query column


# ------------------------------------------------------------------------------ curves

def test_read_scalars_keeps_the_last_value_of_a_repeated_step(tmp_path):
    for values, name in (({10: 1.0, 20: 0.5, 30: 0.25}, "train"), ({20: 0.4, 40: 0.1}, "train")):
        writer = tf.summary.create_file_writer(str(tmp_path / "tensorboard" / name))
        with writer.as_default():
            for step, value in values.items():
                tf.summary.scalar("loss", value, step=step)
        writer.close()  # a second writer: a resumed run's new event file
    series = curves.read_scalars(str(tmp_path))["train"]["loss"]
    assert series.steps.tolist() == [10, 20, 30, 40]
    np.testing.assert_allclose(series.values, [1.0, 0.4, 0.25, 0.1])


def test_plotting_without_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    series = curves.Series(np.array([1, 2]), np.array([0.5, 0.25]))
    with pytest.raises(ImportError, match=r"pip install -e '\.\[plots\]'"):
        curves.plot_curves({"train": {"loss": series}})


def test_plot_curves_without_matplotlib_says_which_extra_in_one_line(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path / "run" / "tensorboard" / "train"))
    with writer.as_default():
        tf.summary.scalar("loss", 1.0, step=1)
    writer.close()
    for workdir in (tmp_path / "run", tmp_path / "no_run"):  # checked before the logs
        result = _tool("plot_curves.py", f"--workdir={workdir}",
                       f"--output={tmp_path / 'c.png'}", block=["matplotlib"])
        assert result.returncode == 1, result.stderr[-2000:]
        assert result.stderr.strip().splitlines() == [
            "plot_curves.py: error: Plotting training curves needs matplotlib, which is not "
            "installed: pip install -e '.[plots]' (or pip install matplotlib)."]
        assert result.stdout == "" and not (tmp_path / "c.png").exists()


# --------------------------------------------------------------- a tiny trained run, e2e

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from alexnet_tf.data import demo
    from alexnet_tf.train import loop

    base = tmp_path_factory.mktemp("analysis")
    root = demo.write_demo_dataset(base / "data", train_per_class=20, val_per_class=5)
    config = load_config_file(REPO_ROOT / "configs" / "demo.py")
    config.data.data_dir = str(root)
    config.data.demo_train_per_class, config.data.demo_val_per_class = 20, 5
    config.model.width = 0.125
    config.model.image_size = 67
    config.train.global_batch_size = 32
    config.train.total_epochs = 2
    config.train.log_every_steps = 2
    config.eval.global_batch_size = 50
    workdir = base / "run"
    metrics = loop.train_and_evaluate(config, str(workdir))
    return config, workdir, metrics


@pytest.mark.slow
def test_show_kernels_on_a_trained_run(tiny_run, tmp_path):
    config, workdir, _ = tiny_run
    report = kernels.show_kernels(str(workdir), output=str(tmp_path / "k.png"))
    assert [t.kernels for t in report.towers] == [range(0, 6), range(6, 12)]
    image = Image.open(tmp_path / "k.png")
    assert image.size == (report.layout.width, report.layout.height)
    # The restored weights are the trained ones, not a fresh initialisation.
    from alexnet_tf import models

    fresh = kernels.conv1_kernels(models.model_from_config(config))
    assert not np.allclose(report.kernels, fresh)
    loaded = model_io.load_model(str(workdir))
    assert loaded.std_rgb == (64.0, 64.0, 64.0)  # the demo config's input convention
    # A run's default checkpoint is alexnet-eval's and alexnet-export's: best, else latest.
    from alexnet_tf import model_source

    assert report.source == loaded.description == model_source.resolve(str(workdir)).description
    assert "best checkpoint" in report.source, report.source
    np.testing.assert_allclose(kernels.conv1_kernels(loaded.model, std_rgb=loaded.std_rgb),
                               report.kernels)
    # A .keras file of the same model gives the same kernels and scores.
    loaded.model.save(tmp_path / "m.keras")
    from_file = kernels.show_kernels(str(workdir), model_path=str(tmp_path / "m.keras"),
                                     output=None)
    np.testing.assert_allclose(from_file.kernels, report.kernels)
    # Alone, a .keras file does not know the run's std (64): kernels on normalised input,
    # the same pictures and scores (both are invariant to one scale for all channels).
    bare_file = kernels.show_kernels(model_path=str(tmp_path / "m.keras"), output=None)
    np.testing.assert_allclose(bare_file.kernels, report.kernels * 64.0, rtol=1e-6)
    np.testing.assert_allclose(bare_file.towers[1].scores, report.towers[1].scores)
    # Converted weights carry their convention: Caffe-style BGR input, per-channel std.
    from alexnet_tf import weights
    from alexnet_tf.convention import InputConvention

    caffe_like = weights.WeightsInfo(
        source="test", variant="paper", num_classes=10,
        convention=InputConvention(channel_order="BGR", mean_rgb=(0, 0, 0),
                                   std_rgb=(1.0, 2.0, 4.0), image_size=67, resize_size=76))
    weights.save_converted(loaded.model, caffe_like, tmp_path / "converted")
    converted = kernels.show_kernels(model_path=str(tmp_path / "converted"), output=None)
    raw = kernels.conv1_kernels(loaded.model)
    np.testing.assert_allclose(converted.kernels, raw[..., ::-1] / [1.0, 2.0, 4.0], rtol=1e-6)
    text = kernels.format_report(report)
    assert "tower 1 (kernels 0-5)" in text and "tower 2 (kernels 6-11)" in text
    # A checkpoint without the model's variables is refused, naming it (in a copy of
    # the run: a checkpoint outside the run is refused before it is read).
    run_copy = tmp_path / "run_copy"
    shutil.copytree(workdir, run_copy)
    bare = tf.train.Checkpoint(step=tf.Variable(1)).save(
        str(run_copy / "checkpoints" / "bare" / "ckpt"))
    with pytest.raises(ValueError, match="does not hold every variable"):
        model_io.load_model(str(run_copy), checkpoint=bare)
    outside = tf.train.Checkpoint(step=tf.Variable(1)).save(str(tmp_path / "bare" / "ckpt"))
    with pytest.raises(ValueError, match="is not inside run"):
        model_io.load_model(str(workdir), checkpoint=outside)


@pytest.mark.slow
def test_retrieve_on_a_trained_run(tiny_run, tmp_path):
    _, workdir, _ = tiny_run
    (tmp_path / "notes.txt").write_text("not an image")
    cache = str(tmp_path / "features")
    kwargs = dict(workdir=str(workdir), split="train", query_split="val", num_queries=4, k=3,
                  features_cache=cache, thumb=24, progress=False)
    result = retrieval.retrieve(query_paths=[str(tmp_path / "notes.txt")],
                                output=str(tmp_path / "n.png"), **kwargs)
    assert len(result.database) == 200 and not result.database.reused
    assert len(result.skipped) == 1 and "notes.txt" in result.skipped[0]
    # Exact neighbours: the brute-force answer over the cached features.
    loaded = model_io.load_model(str(workdir))
    extractor = retrieval.keras_extractor(loaded.model, loaded.convention, fingerprint={})
    query_features = retrieval.query_features(extractor, result.queries)
    expected, _ = _brute_force(query_features, np.asarray(result.database.features), 3)
    np.testing.assert_array_equal(result.neighbours, expected)
    labels = np.array([q.label for q in result.queries])
    assert np.all(labels >= 0)
    np.testing.assert_allclose(result.same_class,
                               (result.database.labels[expected] == labels[:, None]).mean(1))
    assert result.same_class_overall == pytest.approx(result.same_class.mean())
    assert Image.open(tmp_path / "n.png").size[1] >= 4 * 24
    again = retrieval.retrieve(output=None, **kwargs)
    assert again.database.reused
    np.testing.assert_array_equal(again.neighbours, result.neighbours)
    # Queries from the searched split itself never find themselves.
    own = retrieval.retrieve(**dict(kwargs, query_split="train"), output=None)
    rows = np.array([q.database_row for q in own.queries])
    assert np.all(rows >= 0) and not np.any(own.neighbours == rows[:, None])


@pytest.mark.slow
def test_curves_of_a_trained_run_are_the_logged_values(tiny_run, tmp_path):
    pytest.importorskip("matplotlib", reason="the [plots] extra (matplotlib) is not installed")
    _, workdir, metrics = tiny_run
    scalars, figure = curves.plot_run(str(workdir), str(tmp_path / "c.png"))
    assert Image.open(tmp_path / "c.png").size == (1100, 750)
    steps_per_epoch = 200 // 32
    evaluation = scalars["eval"]
    assert evaluation["top1_error"].steps.tolist() == [steps_per_epoch, 2 * steps_per_epoch]
    for tag in ("loss", "top1_error", "top5_error"):
        assert evaluation[tag].values[-1] == pytest.approx(metrics[tag], rel=1e-6)
    train = scalars["train"]
    assert train["loss"].steps.tolist() == list(range(2, 2 * steps_per_epoch + 1, 2))
    panels = {ax.get_title(): ax for ax in figure.axes}
    for title, tag in (("loss", "loss"), ("top-1 error", "top1_error"),
                       ("top-5 error", "top5_error"), ("learning rate", "learning_rate")):
        lines = {line.get_label(): line for line in panels[title].get_lines()}
        for writer in ("train", "eval"):
            if tag in scalars[writer]:
                series = scalars[writer][tag]
                np.testing.assert_array_equal(lines[writer].get_xdata(), series.steps)
                np.testing.assert_array_equal(lines[writer].get_ydata(), series.values)
            else:
                assert writer not in lines


@pytest.mark.slow
def test_the_three_tools_run_as_commands(tiny_run, tmp_path):
    pytest.importorskip("matplotlib", reason="the [plots] extra (matplotlib) is not installed")
    _, workdir, _ = tiny_run
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    commands = {
        "kernels": ["tools/show_kernels.py", f"--workdir={workdir}",
                    f"--output={tmp_path / 'k.png'}"],
        "retrieve": ["tools/retrieve.py", f"--workdir={workdir}", "--query_split=val",
                     "--num_queries=3", "--k=2", f"--output={tmp_path / 'n.png'}",
                     f"--features_cache={tmp_path / 'features'}"],
        "curves": ["tools/plot_curves.py", f"--workdir={workdir}",
                   f"--output={tmp_path / 'c.png'}"],
    }
    running = {name: subprocess.Popen([sys.executable] + args, cwd=REPO_ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for name, args in commands.items()}
    out = {}
    for name, process in running.items():
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, (name, stderr[-2000:])
        out[name] = stdout
    assert "tower 1 (kernels 0-5): mean" in out["kernels"] and "tower 2" in out["kernels"]
    assert "Neighbours sharing the query's class:" in out["retrieve"]
    assert "eval/top1_error: 2 points" in out["curves"]
    for name in ("k.png", "n.png", "c.png"):
        assert Image.open(tmp_path / name).format == "PNG"


def _cut(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


CACHE_DAMAGE = {
    "features.npy truncated": ("features.npy", _cut),
    "labels.npy truncated": ("labels.npy", _cut),
    "locations.npy deleted": ("locations.npy", lambda p: p.unlink()),
    "names.json truncated": ("names.json", _cut),
    "names.json too short": ("names.json", lambda p: p.write_text('["one"]')),
    "manifest without num_rows": ("manifest.json", lambda p: p.write_text(json.dumps(
        {k: v for k, v in json.loads(p.read_text()).items() if k != "num_rows"}))),
}


def test_a_damaged_features_cache_is_named_and_computed_again(tmp_path, caplog):
    """A truncated cache file raised a bare numpy or JSON error (a traceback); the cache
    is this module's (its manifest says so) and derived from the split: computed again."""
    root = _colour_folder(tmp_path / "data", per_class=3, bad=False)
    split = _split(root)
    cache = tmp_path / "cache"
    first = retrieval.split_features(split, _mean_colour_extractor(), str(cache),
                                     split_name="train", progress=False)
    fingerprint = first.manifest["fingerprint"]
    for damage, (name, harm) in CACHE_DAMAGE.items():
        copy = tmp_path / damage.replace(" ", "_")
        shutil.copytree(cache, copy)
        harm(copy / name)
        caplog.clear()
        assert retrieval.load_cache(str(copy), fingerprint) is None, damage
        assert f"{str(copy / name)!r}" in caplog.text and "computing it again" in caplog.text
        with pytest.raises(retrieval.CacheDamagedError) as error:
            retrieval.load_cache(str(copy))
        assert error.value.path == str(copy / name) and isinstance(error.value, UserError)
    calls = []
    again = retrieval.split_features(split, _mean_colour_extractor(calls=calls),
                                     str(tmp_path / "features.npy_truncated"),
                                     split_name="train", progress=False)
    assert not again.reused and sum(calls) == 6
    np.testing.assert_array_equal(np.asarray(again.features), np.asarray(first.features))
    assert retrieval.load_cache(str(tmp_path / "features.npy_truncated"), fingerprint).reused


@pytest.mark.parametrize("manifest", [b'{"fingerprint": {"format": 1, "extr', b"[1, 2]",
                                      b'{"num_rows": 3, "dim": 12}', b"\xff\x00\xfe"],
                         ids=["truncated", "list", "other keys", "binary"])
def test_a_manifest_not_written_by_retrieval_is_refused_and_nothing_overwritten(
        tmp_path, manifest):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "manifest.json").write_bytes(manifest)
    (cache / "features.npy").write_bytes(b"someone's data")
    calls = []
    root = _colour_folder(tmp_path / "data", per_class=1, bad=False)
    with pytest.raises(retrieval.RetrievalError) as error:
        retrieval.split_features(_split(root), _mean_colour_extractor(calls=calls), str(cache),
                                 split_name="train", progress=False)
    message = str(error.value)
    assert f"Features manifest {str(cache / 'manifest.json')!r} is" in message
    assert f"delete {str(cache)!r}" in message and "\n" not in message
    assert calls == []
    assert sorted(os.listdir(cache)) == ["features.npy", "manifest.json"]
    assert (cache / "manifest.json").read_bytes() == manifest
    assert (cache / "features.npy").read_bytes() == b"someone's data"


def test_a_raw_split_gives_the_features_of_its_images_and_shows_them_as_pngs(tmp_path):
    # tools/build_tfrecords.py --format=raw of a colour folder: retrieval reads the raw
    # pixels (no decoding) and gets the features the same squares give as PNG files.
    from alexnet_tf.data import convert, sources

    root = _colour_folder(tmp_path / "data", bad=False)
    convert.build_tfrecords(str(root), str(tmp_path / "raw"), splits=("train",),
                            shards={"train": 1}, resize_shorter_side=16, workers=1,
                            progress=False, image_format="raw")
    split = sources.TFRecordSource.from_directory(str(tmp_path / "raw"), "train",
                                                  label_offset=1, shuffle_buffer=8)
    assert split.image_shape == (16, 16, 3)
    features = retrieval.split_features(split, _mean_colour_extractor(), str(tmp_path / "c"),
                                        split_name="train", progress=False)
    assert len(features) == len(split) == 2 * 5 and not features.manifest["skipped"]
    # What the split shows of each row (a PNG of its pixels), as an image folder.
    paths = []
    for i, png in enumerate(split.read_encoded(features.locations)):
        assert png.startswith(b"\x89PNG")
        paths.append(str(tmp_path / f"{i:02d}.png"))
        (tmp_path / f"{i:02d}.png").write_bytes(png)
    expected = retrieval.split_features(
        ImageFolderSource(np.array(paths), features.labels, split.class_names),
        _mean_colour_extractor(), str(tmp_path / "c2"), split_name="png", progress=False)
    np.testing.assert_array_equal(features.features, expected.features)
    assert features.labels.tolist() == expected.labels.tolist()
