"""The one decode rule (alexnet_tf.data.decode): a corpus of odd files made here goes
through every path that reads images (the converter, the image-folder pipeline, the
statistics tool, the export's `serving_default` and `pixels` preprocessing) and gives the
same pixels: bit-identical where no JPEG re-encoding happens, within a tested bound where
the converter re-encodes (JPEG quality 95). And bad files are named on every path."""

import io
import os
import re
import sys
import types

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from alexnet_tf.convention import InputConvention
from alexnet_tf.data import convert, decode, pipeline, preprocess, sources
from alexnet_tf.export import input_checks
from alexnet_tf.export.module import ServingModule
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "tools"))
import dataset_stats  # noqa: E402  (tools/dataset_stats.py)

HEIGHT, WIDTH = 30, 40  # every corpus image; the shorter side 30 is the resize size,
SIZE = 30               # so every path is a pure central crop (no resampling)
# The converter re-encodes odd files as JPEG quality 95 (Pillow's default 4:2:0 chroma):
# its pixels differ from the rule's by at most REENCODED_MAX levels (of 255), and by
# REENCODED_MEAN on average, on the corpus's smooth images; hard-edged palette images
# (GIF, palette PNG: 16 flat colours) by PALETTE_MAX and PALETTE_MEAN.
REENCODED_MAX, REENCODED_MEAN = 12, 3.0
PALETTE_MAX, PALETTE_MEAN = 64, 6.0
# JPEG sources decoded by Pillow's libjpeg (the converter, before it re-encodes) and by
# TF's: the two builds round the IDCT and upsampling differently.
LIBJPEG_MAX = 6


def _smooth(height=HEIGHT, width=WIDTH, seed=0):
    """A photo-like RGB image with distinct corners (so rotations are told apart)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([60 + 150 * x / width, 40 + 170 * y / height,
                     200 - 100 * (x + y) / (width + height)], -1)
    return np.clip(base + rng.normal(0, 2, base.shape), 0, 255).astype(np.uint8)


def _encode(image, fmt, **kwargs):
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def _exif_jpeg(orientation, pixels=None, **extra):
    exif = Image.Exif()
    exif[decode.ORIENTATION_TAG] = orientation
    for tag, value in extra.items():
        exif[int(tag.lstrip("t"))] = value
    return _encode(Image.fromarray(_smooth() if pixels is None else pixels), "JPEG",
                   quality=95, exif=exif.tobytes())


def corpus():
    """{name: bytes}: the odd files ImageNet and phone users meet, all 30x40 as stored."""
    rgb = _smooth()
    alpha = np.tile(np.linspace(0, 255, WIDTH).astype(np.uint8), (HEIGHT, 1))
    alpha[:, :8] = 0  # fully transparent on the left
    rgba = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    palette = Image.fromarray(rgb).quantize(16)
    transparent = int(np.asarray(palette)[0, 0])
    files = {
        "plain.jpg": _encode(Image.fromarray(rgb), "JPEG", quality=95),
        "rgba.png": _encode(rgba, "PNG"),
        "la.png": _encode(rgba.convert("LA"), "PNG"),
        "palette_trns.png": _encode(palette, "PNG", transparency=transparent),
        "grey_trns.png": _encode(Image.fromarray(rgb).convert("L"), "PNG", transparency=100),
        "grey16.png": _encode(Image.fromarray((rgb[..., 0].astype(np.uint16) * 257 + 77)), "PNG"),
        "cmyk.jpg": _encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95),
        "grey.jpg": _encode(Image.fromarray(rgb).convert("L"), "JPEG", quality=95),
        "grey.png": _encode(Image.fromarray(rgb).convert("L"), "PNG"),
        "palette.gif": _encode(palette, "GIF"),
        "transparent.gif": _encode(palette, "GIF", transparency=transparent),
        "rgb.bmp": _encode(Image.fromarray(rgb), "BMP"),
        "rgba32.bmp": _encode(rgba, "BMP"),
    }
    for k in range(1, 9):
        files[f"exif{k}.jpg"] = _exif_jpeg(k)
    return files


CORPUS = corpus()


def _as_viewers_show(name, data):
    """What the rule must give, from Pillow's own EXIF transpose and alpha compositing
    (independent of alexnet_tf.data.decode's code)."""
    from PIL import ImageOps

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if image.mode == "I;16":
            image = Image.fromarray((np.asarray(image) >> 8).astype(np.uint8))
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or ("transparency" in image.info
                                                 and image.format != "BMP"):
            white = Image.new("RGBA", image.size, (255, 255, 255, 255))
            return np.asarray(Image.alpha_composite(white, image.convert("RGBA")).convert("RGB"))
        return np.asarray(image.convert("RGB"))


def _decoded(data):
    return decode.decode_rgb(tf.constant(data)).numpy()


# --------------------------------------------------------------- the rule itself


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_graph_rule_is_what_viewers_show(name):
    data = CORPUS[name]
    ours = _decoded(data).astype(int)
    expected = _as_viewers_show(name, data).astype(int)
    assert ours.shape == expected.shape, name
    # Pillow's alpha_composite rounds as the rule does, to within 1 level; JPEGs are
    # decoded by two libjpeg builds.
    bound = LIBJPEG_MAX if name.endswith(".jpg") else 1
    assert np.abs(ours - expected).max() <= bound, name


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_graph_rule_and_pillow_rule_agree(name):
    # The converter's side of the rule (Pillow, no TF) against the graph code: bit for
    # bit where both use the same decoder's pixels (PNG, GIF, BMP).
    data = CORPUS[name]
    ours, pillow = _decoded(data).astype(int), decode.pillow_decode(data).astype(int)
    assert ours.shape == pillow.shape
    assert np.abs(ours - pillow).max() <= (LIBJPEG_MAX if name.endswith(".jpg") else 0), name


def test_transparent_pixels_are_white_not_black():
    # The skew being fixed: the folder pipeline and serving made these [0, 0, 0], the
    # converter [255, 255, 255].
    for name in ("rgba.png", "la.png", "rgba32.bmp", "transparent.gif", "palette_trns.png"):
        pixels = _decoded(CORPUS[name])
        if name == "rgba32.bmp":  # BMP's fourth byte is not alpha: the colour as stored
            np.testing.assert_array_equal(pixels, decode.pillow_decode(CORPUS[name]))
            continue
        if name in ("rgba.png", "la.png"):
            assert (pixels[:, :8] == 255).all(), name
        else:
            assert (pixels == 255).all(axis=-1).any(), name
    composite = decode.composite_over_white(np.array([[[200, 0, 0]]], np.uint8),
                                            np.array([[128]], np.uint8))
    np.testing.assert_array_equal(composite, [[[227, 127, 127]]])  # round(200*128/255 + 127*1)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_parsed_and_applied(orientation):
    data = CORPUS[f"exif{orientation}.jpg"]
    assert decode.exif_orientation(data) == orientation
    assert int(decode.jpeg_orientation(tf.constant(data))) == orientation
    pixels = _decoded(data)
    assert pixels.shape[:2] == ((HEIGHT, WIDTH) if orientation <= 4 else (WIDTH, HEIGHT))
    # The stored image's top-left corner (dark red, light green) lands where a viewer
    # shows it: Pillow's exif_transpose is the reference.
    reference = _as_viewers_show("", data).astype(int)
    assert np.abs(pixels.astype(int) - reference).max() <= LIBJPEG_MAX


def test_both_byte_orders_and_odd_segments():
    # Pillow writes a Motorola-order (MM) TIFF header; rewritten here in Intel order (II),
    # with a COM segment and an ICC-like APP2 before APP1: the walk finds the
    # orientation in both implementations.
    data = bytearray(_exif_jpeg(6))
    start = data.index(b"Exif\0\0") + 6
    tiff = bytes(data[start:])
    assert tiff[:2] == b"MM"
    count = int.from_bytes(tiff[8:10], "big")
    ifd = b"II*\0" + (8).to_bytes(4, "little") + count.to_bytes(2, "little")
    for k in range(count):
        e = tiff[10 + 12 * k:22 + 12 * k]
        tag, kind = int.from_bytes(e[:2], "big"), int.from_bytes(e[2:4], "big")
        value = int.from_bytes(e[8:10], "big") if kind == 3 else 0
        ifd += tag.to_bytes(2, "little") + kind.to_bytes(2, "little") + e[4:8][::-1] + \
            value.to_bytes(2, "little") + b"\0\0"
    data[start:start + len(ifd)] = ifd
    comment = b"\xff\xfe\x00\x06hey!"
    app2 = b"\xff\xe2\x00\x08ICC\0\0\0"
    data = bytes(data[:2]) + comment + app2 + bytes(data[2:])
    assert decode.exif_orientation(data) == 6
    assert int(decode.jpeg_orientation(tf.constant(data))) == 6
    assert _decoded(data).shape == (WIDTH, HEIGHT, 3)


# ------------------------------------------------------ every path, the same pixels


def _folder(root, files):
    for name, data in files.items():
        path = root / "train" / "a" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


@pytest.fixture(scope="module")
def corpus_paths(tmp_path_factory):
    """The corpus through every path: {path name: {file name: uint8 [30, 30, 3]}}."""
    root = _folder(tmp_path_factory.mktemp("corpus"), CORPUS)
    norm = InputConvention((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), image_size=SIZE,
                           resize_size=SIZE)
    names = sorted(CORPUS)
    out = {"rule": {n: preprocess.central_crop(decode.decode_rgb(tf.constant(CORPUS[n])),
                                               SIZE).numpy() for n in names}}

    # The image-folder pipeline's evaluation path.
    split = sources.ImageFolderSource.from_directory(str(root), "train")
    from alexnet_tf import config as config_lib
    data_config = config_lib.base_config().data
    data_config.resize_size = SIZE
    ds = pipeline.make_dataset(split, data_config, image_size=SIZE, batch_size=4,
                               training=False, norm=norm)
    images = np.concatenate([x.numpy() for x, _ in ds])
    out["pipeline"] = {os.path.basename(p): np.round(i).astype(np.uint8)
                       for p, i in zip(split.paths, images)}

    # The statistics tool's loader.
    paths = [str(root / "train" / "a" / n) for n in names]
    batches = list(dataset_stats.good_batches(paths, SIZE, 4))
    out["stats"] = dict(zip(names, np.concatenate(batches)))

    # The export's serving_default and pixels preprocessing (the module's own methods,
    # without a model).
    module = types.SimpleNamespace(_max_pixels=10 ** 6, _max_aspect_ratio=50.0,
                                   _image_size=SIZE, _resize_size=SIZE, _norm=norm)
    module._image_spec = lambda: tf.TensorSpec([SIZE, SIZE, 3], tf.float32)
    module._pixels_image = lambda image: ServingModule._pixels_image(module, image)
    served = ServingModule.preprocess_bytes(module, tf.constant([CORPUS[n] for n in names]))
    out["serving_default"] = dict(zip(names, np.round(served.numpy()).astype(np.uint8)))
    out["pixels"] = {n: np.round(ServingModule.preprocess_pixels(
        module, tf.constant(decode.pillow_decode(CORPUS[n])[None])).numpy()[0]).astype(np.uint8)
        for n in names}

    # The converter (no resize: the shorter side is already 30).
    records = tmp_path_factory.mktemp("records")
    convert.build_tfrecords(str(root), str(records), splits=["train"], shards={"train": 1},
                            resize_shorter_side=0, workers=1, progress=False)
    converted = {}
    for path in sorted(records.glob("train-?????-of-?????")):
        for record in tf.data.TFRecordDataset(str(path)):
            example = tf.train.Example.FromString(record.numpy())
            name = example.features.feature["image/filename"].bytes_list.value[0].decode()
            encoded = example.features.feature["image/encoded"].bytes_list.value[0]
            converted[name] = (encoded, preprocess.central_crop(
                decode.decode_rgb(tf.constant(encoded)), SIZE).numpy())
    out["converter"] = {n: v[1] for n, v in converted.items()}
    out["converter_bytes"] = {n: v[0] for n, v in converted.items()}
    return out


@pytest.mark.parametrize("path", ["pipeline", "stats", "serving_default"])
def test_every_tf_path_gives_the_rules_pixels_bit_for_bit(corpus_paths, path):
    assert sorted(corpus_paths[path]) == sorted(CORPUS)
    for name, expected in corpus_paths["rule"].items():
        np.testing.assert_array_equal(corpus_paths[path][name], expected, err_msg=name)


def test_pixels_signature_of_pillow_decoded_images_matches(corpus_paths):
    # A client that decodes with Pillow by the rule (decode.pillow_decode) and sends
    # pixels gets the bytes path's input: bit for bit except JPEG sources (two libjpegs).
    for name, expected in corpus_paths["rule"].items():
        diff = np.abs(corpus_paths["pixels"][name].astype(int) - expected)
        assert diff.max() <= (LIBJPEG_MAX if name.endswith(".jpg") else 0), name


def test_converter_stores_the_rules_pixels(corpus_paths):
    assert sorted(corpus_paths["converter"]) == sorted(CORPUS)
    original = corpus_paths["converter_bytes"]["plain.jpg"]
    assert original == CORPUS["plain.jpg"]  # not re-encoded: the very same bytes
    for name, expected in corpus_paths["rule"].items():
        diff = np.abs(corpus_paths["converter"][name].astype(int) - expected)
        if CORPUS[name] == corpus_paths["converter_bytes"][name]:
            assert diff.max() == 0, name
        else:  # re-encoded as JPEG quality 95
            palette = name.endswith(".gif") or name.startswith("palette")
            bound, mean = (PALETTE_MAX, PALETTE_MEAN) if palette else (REENCODED_MAX,
                                                                        REENCODED_MEAN)
            print("re-encoded", name, diff.max(), round(diff.mean(), 2))
            assert diff.max() <= bound and diff.mean() <= mean, (name, diff.max(), diff.mean())
    # Upright: orientation 6 is stored rotated (40x30), without its EXIF tag.
    rotated = corpus_paths["converter_bytes"]["exif6.jpg"]
    assert tuple(tf.io.extract_jpeg_shape(rotated).numpy()[:2]) == (WIDTH, HEIGHT)
    assert decode.exif_orientation(rotated) == 1


# ------------------------------------------------------------- sizes and truncation


def _gif_with_frame(height, width, screen=(10, 10)):
    """A valid 10x10 GIF whose one image descriptor is rewritten to height x width."""
    data = bytearray(_encode(Image.fromarray(_smooth(*screen)).quantize(8), "GIF"))
    start = data.index(b"\x2c", 13 + 3 * 8)  # after the header and the global colour table
    data[start + 5:start + 9] = width.to_bytes(2, "little") + height.to_bytes(2, "little")
    return bytes(data)


@pytest.mark.parametrize("side", [16000, 65535])
def test_gif_frames_larger_than_the_screen_are_refused_before_decoding(side):
    bomb = _gif_with_frame(side, side)
    assert decode.gif_frames(bomb).frames == ((side, side),)
    assert [int(v) for v in decode.header_size(tf.constant(bomb))] == [side, side]
    message = f"{side}x{side} (height x width), {side * side} pixels: more than the 40000000"
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes\[2\] is " + re.escape(message)):
        input_checks.check_encoded_image(tf.constant(bomb), tf.constant("image_bytes[2]"))
    assert message in decode.problem(tf.constant(bomb)).numpy().decode()
    with pytest.raises(convert.SkipImage, match="GIF frame of"):
        convert.normalize_image(bomb)


def _truncated_with_thumbnail():
    """A JPEG whose EXIF carries a thumbnail (an FF D9 inside APP1), cut in its scan."""
    thumbnail = _encode(Image.fromarray(_smooth(8, 8)), "JPEG")
    whole = _exif_jpeg(1, pixels=_smooth(60, 80, seed=3), t37500=thumbnail)  # MakerNote
    assert whole.count(b"\xff\xd9") == 2
    return whole[:len(whole) * 2 // 3]


def test_truncated_jpeg_with_a_thumbnail_is_named_by_the_export():
    data = _truncated_with_thumbnail()
    assert b"\xff\xd9" in data  # the thumbnail's end-of-image marker
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes\[1\] is a truncated JPEG \(no end-of-image marker"):
        input_checks.check_encoded_image(tf.constant(data), tf.constant("image_bytes[1]"))
    assert decode.problem(tf.constant(data)).numpy().decode().startswith("truncated JPEG")


def test_complete_jpeg_with_data_after_it_is_accepted():
    data = CORPUS["exif6.jpg"] + b"\0" * 100 + b"trailer"  # e.g. a phone's appended data
    assert decode.problem(tf.constant(data)).numpy() == b""
    assert _decoded(data).shape == (WIDTH, HEIGHT, 3)


# ------------------------------------------------------------ bad records, named


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory):
    good = CORPUS["plain.jpg"]
    files = {"good1.jpg": good, "thumb_truncated.jpg": _truncated_with_thumbnail(),
             "cut.jpg": good[:len(good) // 2], "good2.jpg": good,
             "bomb.gif": _gif_with_frame(16000, 16000)}
    return _folder(tmp_path_factory.mktemp("bad"), files)


def test_training_names_truncated_jpegs_and_gif_bombs(bad_folder, capfd):
    from alexnet_tf import config as config_lib

    split = sources.ImageFolderSource.from_directory(str(bad_folder), "train")
    data_config = config_lib.base_config().data
    data_config.resize_size = SIZE
    counter = tf.Variable(0, dtype=tf.int64)
    ds = pipeline.make_dataset(split, data_config, image_size=SIZE, batch_size=8,
                               training=False, bad_records=counter)
    assert sum(int(x.shape[0]) for x, _ in ds) == 2
    assert int(counter.numpy()) == 3
    err = capfd.readouterr().err
    for name, reason in (("thumb_truncated.jpg", "truncated JPEG"), ("cut.jpg", "truncated"),
                         ("bomb.gif", "pixels: more than")):
        line = [l for l in err.splitlines() if "skipping bad record" in l and name in l]
        assert line and reason in line[0], (name, err[-2000:])


def test_training_fail_mode_names_the_truncated_jpeg(bad_folder):
    from alexnet_tf import config as config_lib

    split = sources.ImageFolderSource.from_directory(str(bad_folder), "train")
    keep = np.array(["good" in p or "thumb" in p for p in split.paths])
    only = sources.ImageFolderSource(split.paths[keep], split.labels[keep], split.class_names)
    data_config = config_lib.base_config().data
    data_config.resize_size = SIZE
    data_config.on_bad_record = "fail"
    ds = pipeline.make_dataset(only, data_config, image_size=SIZE, batch_size=8, training=False)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"thumb_truncated\.jpg.*truncated JPEG"):
        [x for x, _ in ds]


def test_stats_loader_names_and_skips_bad_files(bad_folder, tmp_path, capfd):
    paths = sorted(str(p) for p in (bad_folder / "train" / "a").iterdir())
    loop = tmp_path / "loop.jpg"
    os.symlink(loop, loop)  # a symlink loop: "Too many levels of symbolic links"
    skipped = []
    batches = list(dataset_stats.good_batches(paths + [str(loop)], SIZE, 8, skipped=skipped))
    assert sum(len(b) for b in batches) == 2
    reasons = {os.path.basename(p): r for p, r in skipped}
    assert set(reasons) == {"thumb_truncated.jpg", "cut.jpg", "bomb.gif", "loop.jpg"}
    assert "truncated" in reasons["cut.jpg"] and "more than" in reasons["bomb.gif"]
    assert "symbolic links" in reasons["loop.jpg"]
    err = capfd.readouterr().err
    assert all(f"skipping bad image {p}" in err for p, _ in skipped)
    with pytest.raises(dataset_stats.BadImage, match=r"bad image \S*bomb.gif: 16000x16000"):
        list(dataset_stats.good_batches(paths, SIZE, 8, on_bad_record="fail"))


def test_converter_names_the_thumbnail_truncated_jpeg():
    with pytest.raises(convert.SkipImage, match="truncated|cannot decode"):
        convert.normalize_image(_truncated_with_thumbnail())
