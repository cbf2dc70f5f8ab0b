"""The one decode rule (alexnet_tf.data.decode): a corpus of odd files made here goes
through every path that reads images (the converter, the image-folder pipeline, the
statistics tool, the export's `serving_default` and `pixels` preprocessing) and gives the
same pixels: bit-identical where no JPEG re-encoding happens, within a tested bound where
the converter re-encodes (JPEG quality 95). And bad files are named on every path."""

import io
import os
import re
import sys
import time
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
    # The converter gives the rule's reason (it no longer words its own).
    with pytest.raises(convert.SkipImage, match=re.escape(message)):
        convert.normalize_image(bomb)


def _many_frames(frames, side):
    """A GIF of ``frames`` frames of side x side (each small, together large)."""
    images = [Image.fromarray(_smooth(side, side, seed=k)).quantize(8) for k in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=10)
    return buffer.getvalue()


@pytest.mark.parametrize("frames, side", [(42, 10), (3, 40)])
def test_gifs_whose_frames_add_up_to_too_many_pixels_are_refused_on_every_path(frames, side):
    # Each frame is under the limit; the decoder holds them all at once. Small frames
    # against a small limit: the same checks as 42 frames of 1000x1000 against 40
    # million pixels, in milliseconds.
    limit = 4000
    gif = _many_frames(frames, side)
    assert decode.gif_decoded_size(gif) == (frames, side, side)
    assert side * side <= limit < frames * side * side
    message = (f"{frames} GIF frames of {side}x{side} (height x width), "
               f"{frames * side * side} pixels decoded: more than the {limit} allowed")
    assert decode.problem(tf.constant(gif), max_pixels=limit).numpy().decode() == message
    assert decode.bytes_problem(gif, max_pixels=limit) == message
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes\[0\] is " + re.escape(message)):
        input_checks.check_encoded_image(tf.constant(gif), tf.constant("image_bytes[0]"),
                                         max_pixels=limit)
    with pytest.raises(convert.SkipImage, match=re.escape(message)):
        convert.normalize_image(gif, max_pixels=limit)


def test_a_gif_with_frames_under_the_limit_together_is_accepted():
    gif = _many_frames(3, 64)
    assert decode.problem(tf.constant(gif)).numpy().decode() == ""
    assert convert.normalize_image(gif).data[:2] == b"\xff\xd8"


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


# ------------------------------------------------ one answer on every path, attacked


def _refused_on_every_path(data, reason, max_pixels=40_000_000):
    """``data`` is refused with ``reason`` by the graph checks (training, the statistics
    tool, the pipeline's batched call), the Python checks, the converter and the export."""
    assert decode.problem(tf.constant(data), max_pixels=max_pixels).numpy().decode() == reason
    batch = decode.inspect_batch(tf.constant([CORPUS["plain.jpg"], data]), jpeg_sizes=False,
                                 max_pixels=max_pixels)
    assert [p.decode() for p in batch.problem.numpy()] == ["", reason]
    assert decode.bytes_problem(data, max_pixels=max_pixels) == reason
    with pytest.raises(convert.SkipImage, match="^" + re.escape(reason) + "$"):
        convert.normalize_image(data, max_pixels=max_pixels)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"image_bytes\[0\] (is a |is |has )" + re.escape(reason)):
        input_checks.check_encoded_image(tf.constant(data), tf.constant("image_bytes[0]"),
                                         max_pixels=max_pixels)


def _ramp(levels):
    """4x16 indices 0 .. levels - 1, black to white along each row."""
    return np.tile(np.round(np.linspace(0, levels - 1, 16)).astype(np.uint8), (4, 1))


@pytest.mark.parametrize("transparency", [False, True])
@pytest.mark.parametrize("kind", ["grey", "palette"])
@pytest.mark.parametrize("depth", [1, 2, 4, 8])
def test_low_bit_depth_pngs_are_decoded_as_pillow_decodes_them(depth, kind, transparency):
    # TF's decoder, asked for 4 channels, gives 1-, 2- and 4-bit PNGs without tRNS the
    # alpha 2^depth - 1 (not 255): composited over white, the ramp came out washed out.
    levels = 2 ** depth
    index = _ramp(levels)
    if kind == "grey":
        image = Image.fromarray((index.astype(int) * 255 // (levels - 1)).astype(np.uint8), "L")
    else:
        image = Image.fromarray(index, "P")
        image.putpalette([v for k in range(levels) for v in (255 * k // (levels - 1),) * 3])
    options = {"transparency": 0} if transparency else {}
    data = _encode(image, "PNG", bits=depth, **options)
    assert (data[24], data[25]) == (depth, 0 if kind == "grey" else 3)  # IHDR as intended
    assert (b"tRNS" in data) == transparency
    ours = _decoded(data)
    np.testing.assert_array_equal(ours, decode.pillow_decode(data))
    assert np.abs(ours.astype(int) - _as_viewers_show("", data).astype(int)).max() <= 1
    # Black to white; the transparent black (index 0) over white is white.
    assert ours[0, -1].tolist() == [255, 255, 255]
    assert ours[0, 0].tolist() == ([255, 255, 255] if transparency else [0, 0, 0])


@pytest.mark.parametrize("bits", [1, 4, 8])
def test_palette_bmps_are_refused_on_every_path(bits):
    # TF's decoder gives an 8-bit BMP's palette indices as grey (Pillow the colours) and
    # cannot read 1- and 4-bit ones.
    rgb = _smooth(6, 8)
    image = Image.fromarray(rgb).convert("1") if bits == 1 else Image.fromarray(rgb).quantize(16)
    data = bytearray(_encode(image, "BMP"))
    data[28] = bits  # Pillow writes 16 colours at 8 bits; the refusal reads only the header
    _refused_on_every_path(bytes(data), f"BMP with a colour palette ({bits} bits per pixel): "
                                        "not supported; save it as PNG")


def _lzw(pixels: bytes) -> bytes:
    """GIF image data of 2-bit ``pixels``: its code size byte, codes of 3 bits with a
    clear code before every second pixel (so the table never grows: valid, not
    compressed), 255-byte sub-blocks and the terminator."""
    codes, value, bits = [4], 0, 0  # clear
    for k, pixel in enumerate(pixels):
        codes += ([4] if k and k % 2 == 0 else []) + [pixel]
    out = bytearray()
    for code in codes + [5]:  # end of information
        value, bits = value | code << bits, bits + 3
        while bits >= 8:
            out.append(value & 255)
            value, bits = value >> 8, bits - 8
    out += bytes([value]) if bits else b""
    return bytes([2]) + b"".join(bytes([len(out[i:i + 255])]) + out[i:i + 255]
                                 for i in range(0, len(out), 255)) + b"\0"


def _gif(screen, frames):
    """A GIF with a 4-colour global table: ``frames`` of (top, left, height, width,
    colour index) on a ``screen`` of (height, width)."""
    data = b"GIF89a" + screen[1].to_bytes(2, "little") + screen[0].to_bytes(2, "little")
    data += b"\xf1\0\0" + bytes([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255])
    for top, left, height, width, colour in frames:
        data += b"\x2c" + b"".join(v.to_bytes(2, "little") for v in (left, top, width, height))
        data += b"\0" + _lzw(bytes([colour]) * (height * width))
    return data + b"\x3b"


def test_gifs_that_tf_and_pillow_lay_out_differently_are_refused_on_every_path():
    # TF's decoder makes the canvas the tallest by the widest frame and ignores the
    # screen; Pillow draws the first frame on its screen.
    offset = _gif((40, 40), [(10, 10, 20, 20, 1)])
    assert _decoded(offset).shape == (20, 20, 3)
    with Image.open(io.BytesIO(offset)) as image:
        assert image.size == (40, 40)
    _refused_on_every_path(offset, "GIF whose first frame (20x20 at row 10, column 10) does "
                                   "not fill its 40x40 screen (height x width)")
    growing = _gif((8, 8), [(0, 0, 8, 8, 1), (0, 0, 10, 12, 2)])
    _refused_on_every_path(growing, "GIF whose frames reach 10x12, beyond its first frame of "
                                    "8x8 (height x width)")
    # Two frames of 1x300 and 300x1: each 300 pixels, TF's canvas 300x300 (90000).
    cross = _gif((1, 1), [(0, 0, 1, 300, 1), (0, 0, 300, 1, 2)])
    _refused_on_every_path(cross, "2 GIF frames of 300x300 (height x width), 180000 pixels "
                                  "decoded: more than the 100000 allowed", max_pixels=100_000)
    # Later frames inside the first: both decoders give the first frame.
    fits = _gif((8, 8), [(0, 0, 8, 8, 1), (6, 6, 2, 2, 2)])
    assert decode.problem(tf.constant(fits)).numpy() == b""
    np.testing.assert_array_equal(_decoded(fits), decode.pillow_decode(fits))
    assert (_decoded(fits) == [0, 255, 0]).all()


def _bad_files():
    """{name: bytes} the rule refuses, of every kind."""
    good = CORPUS["plain.jpg"]
    sof = good.index(b"\xff\xc0")
    png = CORPUS["rgba.png"]
    rgb = Image.fromarray(_smooth(6, 8))
    bmp = _encode(rgb, "BMP")
    core = (b"BM" + (26 + 6 * 24).to_bytes(4, "little") + bytes(4) + (26).to_bytes(4, "little")
            + (12).to_bytes(4, "little") + (8).to_bytes(2, "little") + (6).to_bytes(2, "little")
            + (1).to_bytes(2, "little") + (24).to_bytes(2, "little") + bytes(6 * 24))
    gif = CORPUS["palette.gif"]
    return {
        "empty": b"",
        "truncated.png": png[:png.index(b"IEND") - 4],
        "webp.png": _encode(rgb, "WEBP"),
        "tiff.jpg": _encode(rgb, "TIFF"),
        "ppm.jpg": _encode(rgb, "PPM"),
        "cut.jpg": good[:len(good) // 2],
        "headers_only.jpg": good[:sof + 10],
        "no_frame.jpg": good[:sof] + good[good.index(b"\xff\xda"):],
        "fill.jpg": good[:sof] + b"\xff" * 1100 + good[sof:],
        "comments.jpg": good[:sof] + b"\xff\xfe\x00\x02" * 1030 + good[sof:],
        "zero_height.jpg": good[:sof + 5] + b"\0\0" + good[sof + 7:],
        "huge.jpg": good[:sof + 5] + b"\xff\xff\xff\xff" + good[sof + 9:],
        "tall.jpg": good[:sof + 5] + (65501).to_bytes(2, "big") + (600).to_bytes(2, "big")
        + good[sof + 9:],
        "truncated.gif": gif[:len(gif) // 2],
        "no_image.gif": gif[:13 + 3 * 16] + b"\x3b",
        "offset.gif": _gif((40, 40), [(10, 10, 20, 20, 1)]),
        "palette.bmp": _encode(rgb.quantize(16), "BMP"),
        "core.bmp": core,
        "rle.bmp": bmp[:30] + (1).to_bytes(4, "little") + bmp[34:],
        "masks.bmp": bmp[:30] + (3).to_bytes(4, "little") + bmp[34:],
        "truncated.bmp": bmp[:-10],
        "longer.bmp": bmp + b"\0\0",
        "bomb.gif": _gif_with_frame(16000, 16000),
    }


def test_python_checks_give_the_graph_reasons_string_for_string():
    # The converter's workers have no TF: bytes_problem is the rule's checks in Python.
    # Every kind of bad file, the corpus, and mutations of them (cut, bytes changed).
    files = {**CORPUS, **_bad_files()}
    rng = np.random.default_rng(0)
    for k, name in enumerate(sorted(files) * 6):
        data = bytearray(files[name])
        if not data:
            continue
        if k % 2:
            data = data[:rng.integers(1, len(data) + 1)]
        for _ in range(rng.integers(1, 4)):
            i = rng.integers(0, min(len(data), 64 if rng.random() < 0.7 else len(data)))
            data[i] = rng.choice([0, 0xFF, 0x2C, 0x21, 0x3B, 0xD9, 0xDA, 0xC0, rng.integers(256)])
        files[f"{name}~{k}"] = bytes(data)
    names = sorted(files)
    graph = decode.inspect_batch(tf.constant([files[n] for n in names])).problem.numpy()
    kinds = set()
    for name, reason in zip(names, graph):
        assert decode.bytes_problem(files[name]) == reason.decode(), name
        kinds.add(re.sub(r"\d+", "N", reason.decode()).split("(")[0])
    assert len(kinds) >= 18, sorted(kinds)  # every kind of reason, and good files
    for name, data in _bad_files().items():
        reason = decode.bytes_problem(data)
        assert reason, name
        with pytest.raises(convert.SkipImage, match="^" + re.escape(reason) + "$"):
            convert.normalize_image(data)


def test_jpegs_with_more_segments_than_the_walk_takes_are_refused_on_every_path():
    # Fill bytes or segments before the frame header: libjpeg takes any number; the walk
    # stops at _MAX_JPEG_SEGMENTS. The pipeline reads the common JPEG's size without the
    # walk (plain_jpeg): such a file must not pass as one.
    files = _bad_files()
    reason = "JPEG with more than 1024 segments before its frame header"
    for name in ("fill.jpg", "comments.jpg"):
        assert not decode.plain_jpeg(tf.constant([files[name]])).numpy()[0]
        _refused_on_every_path(files[name], reason)
    assert decode.plain_jpeg(tf.constant([CORPUS["plain.jpg"]])).numpy()[0]
    _refused_on_every_path(files["no_frame.jpg"], "JPEG without a frame header (an SOF marker "
                                                  "segment before its scan data)")


def test_headers_the_decoders_reject_are_named_on_every_path():
    # Files that passed the checks and failed inside TF's decoder, named by training
    # only by stream position: what the headers tell is checked now.
    files = _bad_files()
    _refused_on_every_path(files["zero_height.jpg"], "no pixels (0x40 (height x width))")
    _refused_on_every_path(files["huge.jpg"], "65535x65535 (height x width), 4294836225 "
                                              "pixels: more than the 40000000 allowed")
    # 39.3 million pixels, but libjpeg (TF's, Pillow's) decodes at most 65500 a side.
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.decode_jpeg(files["tall.jpg"])
    _refused_on_every_path(files["tall.jpg"], "JPEG of 65501x600 (height x width): more than "
                                              "the 65500 pixels a side libjpeg decodes")
    _refused_on_every_path(files["truncated.bmp"], "truncated BMP (188 bytes; its header "
                           "declares 198: pixel data at byte 54, then 6 rows of 24 bytes)")
    _refused_on_every_path(files["longer.bmp"], "BMP of 200 bytes, 2 more than its header "
                           "declares (pixel data at byte 54, then 6 rows of 24 bytes): not "
                           "supported; save it as PNG")
    _refused_on_every_path(files["core.bmp"], "BMP with a 12-byte header: not supported (a "
                           "Windows BMP header of 40 to 124 bytes expected); save it as PNG")
    _refused_on_every_path(files["rle.bmp"], "BMP with compression type 1: not supported "
                           "(uncompressed expected); save it as PNG")
    _refused_on_every_path(files["masks.bmp"], "BMP with colour masks other than 8-bit blue, "
                           "green, red: not supported; save it as PNG")


def test_training_names_each_new_kind_of_bad_file(tmp_path, capfd):
    from alexnet_tf import config as config_lib

    files = _bad_files()
    chosen = ["fill.jpg", "zero_height.jpg", "huge.jpg", "palette.bmp", "truncated.bmp",
              "offset.gif"]
    root = _folder(tmp_path, {**{n: files[n] for n in chosen}, "good.jpg": CORPUS["plain.jpg"]})
    split = sources.ImageFolderSource.from_directory(str(root), "train")
    data_config = config_lib.base_config().data
    data_config.resize_size = SIZE
    counter = tf.Variable(0, dtype=tf.int64)
    ds = pipeline.make_dataset(split, data_config, image_size=SIZE, batch_size=8,
                               training=False, bad_records=counter)
    assert sum(int(x.shape[0]) for x, _ in ds) == 1
    assert int(counter.numpy()) == len(chosen)
    err = capfd.readouterr().err
    assert "stream position" not in err  # every one named, none only by position
    for name in chosen:
        line = [l for l in err.splitlines() if "skipping bad record" in l and name in l]
        assert line and decode.bytes_problem(files[name]) in line[0], (name, err[-2000:])


def _recut(gif: bytes, sizes) -> bytes:
    """``gif`` with every block's data cut anew into sub-blocks of the cycled ``sizes``
    (the same bytes, other block boundaries), but the graphic control extensions' (their
    one 4-byte sub-block is fixed by the GIF standard)."""
    flags = gif[10]
    pos = 13 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0)
    out = bytearray(gif[:pos])
    while gif[pos] != 0x3B:
        local = gif[pos + 9]
        header = 2 if gif[pos] == 0x21 else 11 + (3 * (2 << (local & 7)) if local & 0x80 else 0)
        out += gif[pos:pos + header]
        if gif[pos:pos + 2] == b"\x21\xf9":
            out += gif[pos + 2:pos + 8]
            pos += 8
            continue
        pos, payload = pos + header, bytearray()
        while gif[pos]:
            payload += gif[pos + 1:pos + 1 + gif[pos]]
            pos += gif[pos] + 1
        i, k = 0, 0
        while i < len(payload):
            piece = payload[i:i + sizes[k % len(sizes)]]
            out += bytes([len(piece)]) + piece
            i, k = i + len(piece), k + 1
        out += b"\0"
        pos += 1
    return bytes(out + gif[pos:])


def test_gif_block_structure_costs_the_walk_little():
    # The walk's cost no longer grows with the number of blocks: 300,000 one-byte
    # sub-blocks (a legal 600 KB GIF) took 15 s per inspection, 60 s per request.
    gif = CORPUS["transparent.gif"]
    first = gif.index(b"\x2c", 13 + 3 * 16)
    hostile = gif[:first] + b"\x21\xfe" + b"\x01x" * 300_000 + b"\0" + gif[first:]
    decode.problem(tf.constant(gif))  # compiles the checks
    start = time.perf_counter()
    assert decode.problem(tf.constant(hostile)).numpy() == b""
    assert time.perf_counter() - start < 10  # 0.1-0.3 s measured
    assert decode.bytes_problem(hostile) == ""
    np.testing.assert_array_equal(_decoded(hostile), _decoded(gif))
    # Blocks cut anew, across the walk's windows and runs of full sub-blocks: the same
    # frames, transparency and pixels on both sides.
    noise = np.random.default_rng(1).integers(0, 256, (3, 90, 120, 3), dtype=np.uint8)
    frames = [Image.fromarray(n).quantize(16) for n in noise]  # ~6 KB of image data each
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], transparency=0,
                   comment=b"c" * 700, duration=10)
    original = buffer.getvalue()
    expected = decode.pillow_decode(original)
    for sizes in ([1], [3, 255, 255, 255, 7], [255] * 20 + [2]):
        recut = _recut(original, sizes)
        assert recut != original
        ours, theirs = decode.gif_frames(recut), decode.gif_frames(original)
        assert (ours.frames, ours.complete, ours.transparent_index) == (
            theirs.frames, theirs.complete, theirs.transparent_index)
        assert len(ours.frames) == 3 and ours.frames[0] == (90, 120) and ours.transparent_index >= 0
        assert decode.problem(tf.constant(recut)).numpy() == b""
        assert decode.bytes_problem(recut) == ""
        np.testing.assert_array_equal(_decoded(recut), expected)
        np.testing.assert_array_equal(decode.pillow_decode(recut), expected)


def test_image_files_are_read_only_when_they_are_regular_and_small(tmp_path):
    # A FIFO would block the read and /dev/zero never end it (a machine-wide OOM before):
    # both are refused from their stat, as is a file over the limit.
    good = tmp_path / "a.png"
    good.write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 100)
    assert decode.read_image_file(str(good)) == (good.read_bytes(), "")
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    cases = {str(fifo): "not a regular file (a FIFO, socket or device)",
             "/dev/zero": "not a regular file (a FIFO, socket or device)",
             str(tmp_path): "Is a directory",
             str(tmp_path / "missing.jpg"): "No such file or directory"}
    for path, reason in cases.items():
        data, problem = decode.read_image_file(path)
        assert data is None and problem.startswith(reason), (path, problem)
    data, problem = decode.read_image_file(str(good), max_bytes=50)
    assert data is None and problem == "108 bytes, more than the 50 any image this package reads can take"
    assert decode.MAX_FILE_BYTES >= 4 * 40_000_000  # a 40-megapixel 32-bit BMP fits


def test_predict_names_a_fifo_and_a_device_without_reading_them(tmp_path):
    from alexnet_tf.serving import client

    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    # No file passes the local check, so no server is asked (port 9 is closed).
    results = client.predict_files([str(fifo), "/dev/zero"], rest="http://127.0.0.1:9",
                                   timeout=5)
    assert [(r.path, r.ok) for r in results] == [(str(fifo), False), ("/dev/zero", False)]
    assert all(r.error.startswith("not a regular file") for r in results)


# ------------------------------------------------ header fields read as their formats define


@pytest.mark.parametrize("field, at", [("width", 16), ("height", 20)])
def test_png_sides_above_2_to_the_31_are_a_damaged_header_on_every_path(field, at):
    # IHDR's width and height are unsigned 32-bit, at most 2^31 - 1 by the PNG
    # specification: 0xFFFFFFFF was read as -1 ("no pixels (...x-1 ...)").
    png = CORPUS["grey.png"]
    for value in (2 ** 31, 2 ** 32 - 1):
        data = png[:at] + value.to_bytes(4, "big") + png[at + 4:]
        _refused_on_every_path(data, f"damaged PNG (its header gives a {field} of {value}: "
                                     f"more than the 2147483647 the PNG specification allows)")
        assert [int(v) for v in decode.header_size(tf.constant(data))] == [-1, -1]
    # The specification's largest side is a size, refused by the pixel limit only.
    data = png[:at] + (2 ** 31 - 1).to_bytes(4, "big") + png[at + 4:]
    sides = {"width": (HEIGHT, 2 ** 31 - 1), "height": (2 ** 31 - 1, WIDTH)}[field]
    assert [int(v) for v in decode.header_size(tf.constant(data))] == list(sides)
    assert decode.bytes_problem(data) == (f"{sides[0]}x{sides[1]} (height x width), "
                                          f"{sides[0] * sides[1]} pixels: more than the "
                                          "40000000 allowed")
    assert decode.problem(tf.constant(data)).numpy().decode() == decode.bytes_problem(data)


def _bmp_with(field_at: int, value: int, signed: bool = False) -> bytes:
    bmp = _encode(Image.fromarray(_smooth(6, 8)), "BMP")  # 54-byte headers, 6 rows of 24 bytes
    return bmp[:field_at] + value.to_bytes(4, "little", signed=signed) + bmp[field_at + 4:]


def test_bmp_header_fields_are_read_with_their_own_signedness():
    # The pixel data offset (bfOffBits) is unsigned: 0xFFFFFFFF is past the end of the
    # file, not "a negative pixel data offset (-1)".
    _refused_on_every_path(_bmp_with(10, 2 ** 32 - 1), (
        "truncated BMP (198 bytes; its header declares 4294967439: pixel data at byte "
        "4294967295, then 6 rows of 24 bytes)"))
    # Width and height are signed (LONG): a width of 0xFFFFFFFF is -1, no pixels ...
    _refused_on_every_path(_bmp_with(18, 2 ** 32 - 1), "no pixels (6x-1 (height x width))")
    # ... and a negative height means rows stored top-down: the same image.
    rgb = _smooth(6, 8)
    bottom_up = _encode(Image.fromarray(rgb), "BMP")
    rows = [bottom_up[54 + 24 * k:54 + 24 * (k + 1)] for k in range(6)]
    top_down = bottom_up[:22] + (-6).to_bytes(4, "little", signed=True) + bottom_up[26:54] + \
        b"".join(reversed(rows))
    assert decode.bytes_problem(top_down) == ""
    assert decode.problem(tf.constant(top_down)).numpy() == b""
    assert [int(v) for v in decode.header_size(tf.constant(top_down))] == [6, 8]
    np.testing.assert_array_equal(_decoded(top_down), rgb)
    np.testing.assert_array_equal(decode.pillow_decode(top_down), rgb)


def test_an_exif_ifd_offset_of_2_to_the_31_or_more_is_past_the_file_on_both_sides():
    # The TIFF header's IFD offset is unsigned 32-bit. The graph side read it in int32:
    # one of 2^31 or more wrapped to a negative offset and found an IFD before the TIFF
    # header (planted here in a COM segment, orientation 8), where the Python side reads
    # past the end of the file (orientation 1): two orientations for one file.
    data = _exif_jpeg(6)
    app1 = data.index(b"\xff\xe1")
    planted = (1).to_bytes(2, "big") + bytes.fromhex("0112 0003 00000001 0008 0000")
    data = data[:app1] + b"\xff\xfe" + (2 + len(planted)).to_bytes(2, "big") + planted + \
        data[app1:]
    tiff = data.index(b"Exif\0\0") + 6
    data = data[:tiff + 4] + (2 ** 32 + app1 + 4 - tiff).to_bytes(4, "big") + data[tiff + 8:]
    assert decode.exif_orientation(data) == 1
    assert int(decode.jpeg_orientation(tf.constant(data))) == 1
    batch = decode.inspect_batch(tf.constant([CORPUS["exif6.jpg"], data]))
    assert batch.orientation.numpy().tolist() == [6, 1]
    assert _decoded(data).shape == (HEIGHT, WIDTH, 3)
