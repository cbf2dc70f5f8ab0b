"""The one decode rule: encoded image bytes -> uint8 RGB pixels, for every path.

Training and evaluation from image folders and TFRecords (`alexnet_tf.data.preprocess`),
the export's ``serving_default``/``features`` (`alexnet_tf.export.module`, through
`preprocess.eval_image`), the colour statistics (tools/dataset_stats.py) and the
converter (`alexnet_tf.data.convert`) all decode by this rule:

* Formats: JPEG, PNG, GIF and BMP, told by their magic numbers. GIF: the first frame.
* Colour: greyscale is replicated to R, G, B; CMYK JPEGs are converted by the decoder
  (Adobe's inverted storage, as Photoshop and Pillow write them).
* 16-bit samples (PNG) keep their high byte (``v >> 8``), as libpng's 16-to-8 strip
  does in TF's decoder.
* Alpha (RGBA, LA, palette or greyscale PNGs with a tRNS chunk, GIFs with a
  transparent colour) is composited over white, in integers:
  ``t = 255 * (255 - a) + c * a + 128; out = (t + (t >> 8)) >> 8``, which is
  ``round(c * a / 255 + 255 * (1 - a / 255))`` exactly. Transparent regions look as a
  viewer shows them; dropping alpha would expose whatever colour the transparent pixels
  happen to hold (usually black). BMP's fourth byte is ignored (in a 32-bit BI_RGB BMP
  it is "reserved", and Pillow ignores it too).
* EXIF orientation (the first APP1 ``Exif`` segment among the APPn/COM segments that
  open the JPEG, where the Exif and JFIF standards put it; IFD0 tag 0x0112, values 1-8)
  is applied, so that an image is used as viewers show it: 2 mirror, 3 rotate 180, 4 flip, 5
  transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise; a
  missing, unreadable or out-of-range value means 1 (as stored).
* Problems (`problem`, checked before decoding, never by decoding): an empty file, bytes
  that are not JPEG/PNG/GIF/BMP, a JPEG without an end-of-image marker after its scan
  data (an FF D9 inside an EXIF thumbnail does not count), a PNG without IEND, a GIF
  whose blocks end early, and an image (or ANY GIF frame, read from each image
  descriptor) of more than ``max_pixels`` pixels. Each is a reason string naming what
  is wrong; callers add the file's name.

Two implementations of the rule: graph code (`inspect_batch`/`inspect`, `decode_rgb`; no
``py_function``, so it runs inside ``tf.data`` and inside the SavedModel) and, for the
converter's worker processes, which run Pillow without TensorFlow, `pillow_rgb` with
`exif_orientation` and `gif_frames` (Python mirrors of the graph parsers: the same walks,
the same limits) and the same integer compositing in NumPy (`composite_over_white`).
tests/test_decode.py feeds a corpus of odd files through both and through every path:
the Pillow side equals the graph side bit for bit for PNG, GIF and BMP; JPEG sources go
through two builds of libjpeg (TF's, Pillow's), which differ by up to 6 levels (IDCT and
chroma upsampling rounding) and are re-encoded by the converter anyway.

Speed: the checks are vectorised over a batch (`inspect_batch`): the common JPEG
(`plain_jpeg`: SOI, at most a plain JFIF APP0, a table marker, FF D9 at the end) is
settled by a few string ops, and only other files are walked; the pipeline runs them
once per batch of records and passes each image's orientation to `decode_rgb`, so the
per-image graph stays small (in a ``tf.data`` map, every op of the graph, taken or not,
costs time on every call).

Importing this module imports no TensorFlow (the converter forks its workers from a
process without it); the graph functions load it on first use.
"""

from __future__ import annotations

import collections
import importlib
import io

import numpy as np

from alexnet_tf.export.limits import DEFAULT_MAX_PIXELS


class _LazyModule:
    """``tensorflow``, imported when the first graph function runs."""

    def __getattr__(self, name):
        return getattr(importlib.import_module("tensorflow"), name)


tf = _LazyModule()

ORIENTATION_TAG = 0x0112
_MAX_JPEG_SEGMENTS = 1024  # markers walked before the scan; real files have < 40
_MAX_IFD_ENTRIES = 256
# Orientation -> (transpose, then reverse these axes of [H, W, C]): the stored image
# shown as viewers show it; `_PIL_TRANSPOSE` is the same table in Pillow's names.
_ORIENTATIONS = {1: (False, ()), 2: (False, (1,)), 3: (False, (0, 1)), 4: (False, (0,)),
                 5: (True, ()), 6: (True, (1,)), 7: (True, (0, 1)), 8: (True, (0,))}
# (`orient` computes the same table: transpose for 5-8, rows for 3, 4, 7, 8, columns
# for 2, 3, 6, 7; tests/test_decode.py checks it against Pillow's exif_transpose.)


# ============================================================ the rule in NumPy/Pillow


def composite_over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] over white with uint8 alpha [H, W]: the rule's integers."""
    c = rgb.astype(np.int32)
    a = alpha.astype(np.int32)[..., None]
    t = 255 * (255 - a) + c * a + 128
    return ((t + (t >> 8)) >> 8).astype(np.uint8)


def _u16(data: bytes, i: int, little: bool) -> int:
    return int.from_bytes(data[i:i + 2], "little" if little else "big") if i + 2 <= len(data) else 0


def _u32(data: bytes, i: int, little: bool) -> int:
    return int.from_bytes(data[i:i + 4], "little" if little else "big") if i + 4 <= len(data) else 0


def _is_app(marker: int) -> bool:
    return 0xE0 <= marker <= 0xEF or marker == 0xFE


def _jpeg_segments(data: bytes):
    """(start of the APP1 Exif segment among the leading APPn/COM segments or -1, SOS
    start or -1, (height, width) or None): the walk of `_jpeg_walk`, in Python."""
    pos, app1, sos, size, leading = 2, -1, -1, None, True
    n = len(data)
    for _ in range(_MAX_JPEG_SEGMENTS):
        if pos >= n or data[pos] != 0xFF:
            break
        marker = data[pos + 1] if pos + 1 < n else 0
        if marker == 0xFF:
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker == 0xDA:
            sos = pos
            break
        if marker == 0xD9 or marker == 0x00:
            break
        length = _u16(data, pos + 2, False)
        if length < 2:
            break
        leading = leading and _is_app(marker)
        if leading and marker == 0xE1 and app1 < 0 and data[pos + 4:pos + 10] == b"Exif\0\0":
            app1 = pos
        if (0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)) and size is None:
            size = (_u16(data, pos + 5, False), _u16(data, pos + 7, False))
        pos += 2 + length
    return app1, sos, size


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1-8) of JPEG bytes; 1 when absent or unreadable. The same
    parse as the graph code's (`jpeg_orientation`): the first APP1 ``Exif`` segment among
    the APPn/COM segments that open the file (before the first table or frame segment,
    where the Exif and JFIF standards put it), IFD0, tag 0x0112 of type SHORT."""
    if data[:2] != b"\xff\xd8":
        return 1
    app1, _, _ = _jpeg_segments(data)
    if app1 < 0:
        return 1
    end = min(len(data), app1 + 2 + _u16(data, app1 + 2, False))
    tiff = app1 + 10
    little = data[tiff:tiff + 1] == b"I"
    ifd = tiff + _u32(data, tiff + 4, little)
    count = min(_u16(data, ifd, little), _MAX_IFD_ENTRIES)
    for k in range(count):
        entry = ifd + 2 + 12 * k
        if entry + 12 > end:
            break
        if _u16(data, entry, little) == ORIENTATION_TAG:
            if _u16(data, entry + 2, little) != 3:  # SHORT
                return 1
            value = _u16(data, entry + 8, little)
            return value if 1 <= value <= 8 else 1
    return 1


GifInfo = collections.namedtuple("GifInfo", "frames complete transparent_index gce table")


def gif_frames(data: bytes) -> GifInfo:
    """Every frame's (height, width) from its image descriptor (0x2C), whether the block
    structure is complete, and for the first frame: its transparent colour index (-1:
    none), the offset of its graphic control extension's packed byte and of its colour
    table (-1: none). The same walk as the graph code's."""
    n = len(data)
    flags = data[10] if n > 10 else 0
    table = 13 if flags & 0x80 else -1
    pos = 13 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0)
    frames, complete, gce, first_gce, first_table = [], False, -1, -1, -1
    while pos < n:
        block = data[pos]
        if block == 0x3B:
            complete = True
            break
        if block == 0x21:
            if pos + 1 < n and data[pos + 1] == 0xF9 and not frames:
                gce = pos + 3
            pos += 2
        elif block == 0x2C:
            frames.append((_u16(data, pos + 7, True), _u16(data, pos + 5, True)))
            local = data[pos + 9] if pos + 9 < n else 0
            if len(frames) == 1:
                first_gce = gce
                first_table = pos + 10 if local & 0x80 else table
            pos += 10 + (3 * (2 << (local & 7)) if local & 0x80 else 0) + 1
        else:
            break
        while pos < n and data[pos] != 0:  # sub-blocks: a length byte, then the bytes
            pos += data[pos] + 1
        if pos >= n:
            break
        pos += 1  # the block terminator
    transparent = -1
    if first_gce >= 0 and first_gce + 3 < n and data[first_gce] & 1:
        transparent = data[first_gce + 3]
    return GifInfo(tuple(frames), complete or (pos == n and bool(frames)), transparent,
                   first_gce, first_table)


_PIL_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM",
                  5: "TRANSPOSE", 6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}


def _has_alpha(image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def pillow_rgb(image, data: bytes):
    """The rule applied to an opened and loaded Pillow ``image`` of ``data``: an RGB
    Pillow image (see the module docstring). Raises ValueError for what `problem`
    refuses and Pillow would not notice."""
    from PIL import Image

    if image.format == "GIF":
        gif = gif_frames(data)
        if not gif.complete:
            raise ValueError("truncated GIF (its blocks end early)")
    if image.format == "BMP":
        image = image.convert("RGB") if image.mode in ("RGBA", "RGBX") else image
    if image.mode.startswith("I;16"):
        # 16-bit greyscale: the high byte, as libpng's strip (Pillow's convert would clip).
        pixels = np.asarray(image, np.uint16) >> 8
        image = Image.fromarray(pixels.astype(np.uint8), "L")
    elif image.mode in ("I", "F"):
        pixels = np.asarray(image, np.float64)
        if pixels.max(initial=0) > 255:
            pixels = pixels / 257.0
        image = Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8), "L")
    if _has_alpha(image):
        rgba = np.asarray(image.convert("RGBA"))
        image = Image.fromarray(composite_over_white(rgba[..., :3], rgba[..., 3]), "RGB")
    elif image.mode != "RGB":
        image = image.convert("RGB")  # CMYK (Adobe-inverted ones are un-inverted), L, 1, P
    if data[:2] == b"\xff\xd8":
        orientation = exif_orientation(data)
        if orientation != 1:
            image = image.transpose(getattr(Image.Transpose, _PIL_TRANSPOSE[orientation]))
    return image


def pillow_decode(data: bytes) -> np.ndarray:
    """uint8 [H, W, 3] of ``data`` by the rule, with Pillow (no TensorFlow)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return np.asarray(pillow_rgb(image, data))


# ================================================================== the rule in graph code
#
# Inspection (`inspect_batch`) is vectorised over a batch of encoded images and has no
# tf.cond: in a tf.data map, every nested function of a graph (each branch of a cond,
# each body of a loop) costs time on every call whether it runs or not, so the checks
# are straight-line vector code plus two loops whose bodies are small (over JPEG marker
# segments, over GIF blocks), run once per batch. Decoding (`decode_rgb`) then takes a
# few ops per image.


def formats(encoded):
    """(is_jpeg, is_png, is_gif, is_bmp) by magic number; scalar or vector ``encoded``."""
    def starts(magic: bytes):
        length = tf.strings.length(encoded)
        head = tf.strings.substr(encoded, tf.zeros_like(length), tf.fill(tf.shape(length),
                                                                          len(magic)))
        return tf.equal(head, magic)

    return starts(b"\xff\xd8\xff"), starts(b"\x89PNG"), starts(b"GIF"), starts(b"BM")


def is_supported(encoded):
    """True for non-empty JPEG, PNG, GIF or BMP bytes (by their magic numbers)."""
    jpeg, png, gif, bmp = formats(encoded)
    return (tf.strings.length(encoded) > 0) & (jpeg | png | gif | bmp)


def _read(encoded, pos, count: int):
    """int32 [B, count]: bytes pos .. pos + count - 1 of each of the [B] strings, 0
    outside the string."""
    length = tf.strings.length(encoded)
    pos = tf.broadcast_to(pos, tf.shape(length))
    inside = (pos >= 0) & (pos <= length)
    piece = tf.strings.substr(encoded, tf.clip_by_value(pos, 0, length),
                              tf.fill(tf.shape(pos), count))
    data = tf.cast(tf.io.decode_raw(piece, tf.uint8, fixed_length=count), tf.int32)
    return data * tf.cast(inside, tf.int32)[:, None]


def _be16(b, i, little=None):
    """16-bit values at column i of int32 [B, N] bytes, big-endian unless ``little``
    ([B] bool) says so per row."""
    big = b[:, i] * 256 + b[:, i + 1]
    return big if little is None else tf.where(little, b[:, i] + b[:, i + 1] * 256, big)


def _le16(b, i):
    """Little-endian 16-bit values at column i of int32 [B, N] bytes."""
    return b[:, i] + b[:, i + 1] * 256


def _area(height, width):
    """height * width as int64 (a GIF frame may be 65535 x 65535)."""
    return tf.cast(height, tf.int64) * tf.cast(width, tf.int64)


def _contains(encoded, pattern: bytes):
    """[B] bool: whether ``pattern`` occurs in each string (one split, no loop)."""
    return tf.strings.split(encoded, sep=pattern).row_lengths() > 1


def _jpeg_walk(encoded, active, need_sos):
    """The marker segments of the [B] JPEGs that are ``active``, from SOI on (the walk
    of `_jpeg_segments`): (start of the APP1 Exif segment among the leading APPn/COM
    segments, start of the first scan, frame height, frame width), -1 where not found.
    A row stops at its first scan, or sooner once its frame size and orientation are
    known and ``need_sos`` is False for it."""
    minus = -tf.ones_like(tf.strings.length(encoded))
    length = tf.strings.length(encoded)

    def step(i, pos, app1, sos, height, width, leading, done):
        head = _read(encoded, pos, 10)
        marker, seg_length = head[:, 1], _be16(head, 2)
        stop = (pos >= length) | (head[:, 0] != 0xFF) | (i >= _MAX_JPEG_SEGMENTS)
        fill = marker == 0xFF
        standalone = (marker == 0x01) | ((marker >= 0xD0) & (marker <= 0xD7))
        is_sos = marker == 0xDA
        end = (marker == 0xD9) | (marker == 0x00) | (seg_length < 2)
        live = ~done
        segment = live & ~(stop | fill | standalone | is_sos | end)
        app = ((marker >= 0xE0) & (marker <= 0xEF)) | (marker == 0xFE)
        leading = leading & ~(segment & ~app)
        exif = tf.reduce_all(tf.equal(head[:, 4:10], [[0x45, 0x78, 0x69, 0x66, 0, 0]]), axis=1)
        app1 = tf.where(segment & leading & (marker == 0xE1) & (app1 < 0) & exif, pos, app1)
        sof = segment & (marker >= 0xC0) & (marker <= 0xCF) & (marker != 0xC4) & (
            marker != 0xC8) & (marker != 0xCC) & (height < 0)
        height = tf.where(sof, _be16(head, 5), height)
        width = tf.where(sof, _be16(head, 7), width)
        sos = tf.where(live & ~stop & is_sos, pos, sos)
        advance = tf.where(fill, 1, tf.where(standalone, 2, 2 + seg_length))
        finished = stop | is_sos | (end & ~fill & ~standalone)
        settled = (height >= 0) & (~leading | (app1 >= 0)) & ~need_sos
        return (i + 1, tf.where(live, pos + advance, pos), app1, sos, height, width, leading,
                done | finished | settled)

    state = (tf.constant(0), tf.fill(tf.shape(length), 2), minus, minus, minus, minus,
             tf.ones_like(active), ~active)
    out = tf.while_loop(lambda *st: ~tf.reduce_all(st[-1]), step, state)
    return out[2:6]


def _exif_orientation(encoded, app1):
    """[B] orientation (1-8) in the APP1 Exif segment starting at ``app1`` (-1: none):
    IFD0's tag 0x0112 of type SHORT, read as `exif_orientation` reads it."""
    has = app1 >= 0
    segment_end = app1 + 2 + _be16(_read(encoded, app1 + 2, 2), 0)
    tiff = app1 + 10
    header = _read(encoded, tiff, 8)
    little = tf.equal(header[:, 0], 0x49)
    offset = tf.where(little, _be16(header, 4, little) + _be16(header, 6, little) * 65536,
                      _be16(header, 4) * 65536 + _be16(header, 6))
    ifd = tiff + offset
    count = tf.minimum(_be16(_read(encoded, ifd, 2), 0, little), _MAX_IFD_ENTRIES)
    entries = tf.reshape(_read(encoded, ifd + 2, 12 * _MAX_IFD_ENTRIES),
                         [-1, _MAX_IFD_ENTRIES, 12])
    k = tf.range(_MAX_IFD_ENTRIES)[None]
    inside = (k < count[:, None]) & (ifd[:, None] + 2 + 12 * k + 12 <= segment_end[:, None])
    # Past the first entry outside the segment nothing is read (the Python loop breaks).
    inside = tf.cast(tf.math.cumprod(tf.cast(inside, tf.int32), axis=1), tf.bool)

    def field(i):
        big = entries[..., i] * 256 + entries[..., i + 1]
        return tf.where(little[:, None], entries[..., i] + entries[..., i + 1] * 256, big)

    match = inside & tf.equal(field(0), ORIENTATION_TAG)
    first = tf.argmax(tf.cast(match, tf.int32), axis=1, output_type=tf.int32)
    kind = tf.gather(field(2), first, batch_dims=1)
    value = tf.gather(field(8), first, batch_dims=1)
    good = has & tf.reduce_any(match, axis=1) & tf.equal(kind, 3) & (value >= 1) & (value <= 8)
    return tf.where(good, value, 1)


def _gif_walk(encoded, active):
    """The blocks of the [B] GIFs that are ``active`` (the walk of `gif_frames`): (the
    largest frame's height and width, by area; the frame count; complete; the first
    frame's transparent colour index or -1, its GCE packed-byte offset, its colour
    table offset or -1)."""
    length = tf.strings.length(encoded)
    head = _read(encoded, 10, 1)[:, 0]
    has_table = tf.bitwise.bitwise_and(head, 0x80) > 0
    table_size = 3 * tf.bitwise.left_shift(2, tf.bitwise.bitwise_and(head, 7))
    zero, minus = tf.zeros_like(length), -tf.ones_like(length)
    table0 = tf.where(has_table, 13 + zero, minus)

    # One iteration reads a block introducer or one sub-block (``in_blocks``).
    def step(pos, in_blocks, best_h, best_w, frames, complete, gce, first_gce, first_table,
             done):
        r = _read(encoded, pos, 10)
        b = r[:, 0]
        at_end = pos >= length
        live = ~done
        sub_pos = pos + tf.where(b == 0, 1, b + 1)
        trailer, extension, image = b == 0x3B, b == 0x21, b == 0x2C
        has_local = tf.bitwise.bitwise_and(r[:, 9], 0x80) > 0
        local_size = 3 * tf.bitwise.left_shift(2, tf.bitwise.bitwise_and(r[:, 9], 7))
        height, width = _le16(r, 7), _le16(r, 5)
        new_frame = live & ~in_blocks & ~at_end & image
        bigger = new_frame & (_area(height, width) > _area(best_h, best_w))
        first = new_frame & tf.equal(frames, 0)
        block_pos = tf.where(extension, pos + 2, pos + 10 + tf.where(has_local, local_size, 0) + 1)
        gce = tf.where(live & ~in_blocks & extension & tf.equal(r[:, 1], 0xF9) &
                       tf.equal(frames, 0), pos + 3, gce)
        finished = at_end | (~in_blocks & ~(extension | image))
        return (tf.where(live, tf.where(in_blocks, sub_pos, block_pos), pos),
                tf.where(live, tf.where(in_blocks, b != 0, extension | image), in_blocks),
                tf.where(bigger, height, best_h), tf.where(bigger, width, best_w),
                frames + tf.cast(new_frame, tf.int32),
                complete | (live & ((~in_blocks & ~at_end & trailer) |
                                    (at_end & ~in_blocks & (frames > 0) & tf.equal(pos, length)))),
                gce, tf.where(first, gce, first_gce),
                tf.where(first, tf.where(has_local, pos + 10, table0), first_table),
                done | (live & finished))

    state = (13 + tf.where(has_table, table_size, 0), tf.zeros_like(active), zero, zero, zero,
             tf.zeros_like(active), minus, minus, minus, ~active)
    out = tf.while_loop(lambda *st: ~tf.reduce_all(st[-1]), step, state)
    _, _, best_h, best_w, frames, complete, _, first_gce, first_table, _ = out
    packed = _read(encoded, first_gce, 4)
    transparent = tf.where((first_gce >= 0) & (tf.bitwise.bitwise_and(packed[:, 0], 1) > 0),
                           packed[:, 3], -1)
    return best_h, best_w, frames, complete, transparent, first_gce, first_table


def _gif_white_transparency(encoded, transparent, gce, table, usable):
    """The [B] GIFs with the first frame's transparent colour made opaque white where
    ``usable`` (`prepare`): the flag cleared in its GCE, the palette entry FF FF FF."""
    length = tf.strings.length(encoded)
    entry = table + 3 * transparent
    usable = usable & (transparent >= 0) & (table >= 0) & (gce >= 0) & (entry + 3 <= length)
    packed = tf.gather(tf.constant([bytes([v]) for v in range(256)]),
                       tf.bitwise.bitwise_and(_read(encoded, gce, 1)[:, 0], 0xFE))
    first, second = tf.minimum(gce, entry), tf.maximum(gce, entry)
    first_len = tf.where(gce < entry, 1, 3)
    first_new = tf.where(gce < entry, packed, b"\xff\xff\xff")
    second_new = tf.where(gce < entry, b"\xff\xff\xff", packed)
    second_len = 4 - first_len

    def cut(pos, size):
        pos = tf.clip_by_value(pos, 0, length)
        return tf.strings.substr(encoded, pos, tf.clip_by_value(size, 0, length - pos))

    edited = tf.strings.join([cut(0 * length, first), first_new,
                              cut(first + first_len, second - first - first_len), second_new,
                              cut(second + second_len, length - second - second_len)])
    return tf.where(usable, edited, encoded)


Inspection = collections.namedtuple(
    "Inspection", "prepared problem truncation orientation height width")


# The markers that may follow SOI or a plain 16-byte JFIF APP0 in a file with no EXIF:
# tables (DQT, DHT, DRI) and frames (SOF0-2).
_TABLE_MARKERS = (b"\xff\xdb", b"\xff\xc4", b"\xff\xdd", b"\xff\xc0", b"\xff\xc1",
                  b"\xff\xc2")
_JFIF_APP0 = b"\xff\xd8\xff\xe0\x00\x10"


def plain_jpeg(encoded):
    """[B] bool: the common JPEG, told from a few bytes: SOI, at most a 16-byte JFIF
    APP0, then a table or frame marker (so no EXIF by the rule: orientation 1), and FF
    D9 as its last two bytes (complete)."""
    length = tf.strings.length(encoded)
    two = tf.fill(tf.shape(length), 2)
    tables = tf.constant(_TABLE_MARKERS)

    def follows(pos):
        marker = tf.strings.substr(encoded, tf.minimum(pos, length), two)
        return tf.reduce_any(tf.equal(marker[:, None], tables), axis=1)

    jfif = tf.equal(tf.strings.substr(encoded, 0 * length, two * 3), _JFIF_APP0)
    tail = tf.strings.substr(encoded, tf.maximum(length - 2, 0), two)
    return formats(encoded)[0] & (follows(two) | (jfif & follows(two * 10))) & tf.equal(
        tail, b"\xff\xd9")


def _on_rows(mask, fn, encoded, defaults):
    """``fn`` applied to the rows of ``encoded`` where ``mask`` holds (often none: then
    its loops run no iteration), its [R] results scattered into [B] tensors of
    ``defaults``."""
    # Only the chosen rows enter the loops: string tensors that cross into a loop or a
    # branch are copied, and the common rows are most of the bytes.
    size = tf.shape(encoded)
    rows = tf.cast(tf.where(mask), tf.int32)
    results = fn(tf.gather_nd(encoded, rows))
    return tuple(tf.tensor_scatter_nd_update(tf.fill(size, tf.cast(default, r.dtype)), rows, r)
                 for default, r in zip(defaults, results))


def inspect_batch(encoded, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                  jpeg_sizes: bool = True) -> Inspection:
    """The rule's checks of a [B] vector of encoded images, from headers and block
    structure only: nothing is decoded, nothing raises (a pipeline names a bad file and
    skips it). Fields, each [B]:

      prepared     the bytes to give `decode_rgb` with ``orientation``: a GIF whose first
                   frame has a transparent colour gets it made opaque white (its
                   all-or-nothing transparency over white; TF's GIF decoder would make
                   those pixels black); anything else unchanged
      problem      "" when the rule can decode the image, else the reason: empty, not
                   JPEG/PNG/GIF/BMP, ``truncation``, no pixels, more than ``max_pixels``
      truncation   the structural part of ``problem``: a JPEG without FF D9 after its scan
                   data (an FF D9 inside an EXIF thumbnail, before the scan, does not
                   count: entropy-coded data never holds FF D9), a PNG without IEND, a GIF
                   whose blocks end early
      orientation  a JPEG's EXIF orientation (1-8), 1 otherwise
      height, width  from the headers: the JPEG frame header, PNG's IHDR, BMP's header,
                   a GIF's logical screen or its largest frame (every image descriptor),
                   whichever has more pixels (the decoder allocates every frame); -1 if
                   unknown

    ``jpeg_sizes=False``: the common JPEGs (`plain_jpeg`: no EXIF, complete) are not
    walked, so their height and width are -1 and their size is not checked here; the
    caller checks it (the pipeline, per image, with ``tf.io.extract_jpeg_shape``).
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    length = tf.strings.length(encoded)
    is_jpeg, is_png, is_gif, is_bmp = formats(encoded)
    is_jpeg &= length > 0
    minus = -tf.ones_like(length)

    # JPEG: the marker walk, EXIF, completeness; only on the rows that need it.
    walked = is_jpeg if jpeg_sizes else is_jpeg & ~plain_jpeg(encoded)

    def jpeg_rows(rows):
        rows_ends = tf.equal(tf.strings.substr(rows, tf.maximum(tf.strings.length(rows) - 2, 0),
                                               tf.fill(tf.shape(rows), 2)), b"\xff\xd9")
        app1, sos, height, width = _jpeg_walk(rows, tf.ones_like(rows_ends), ~rows_ends)
        after_scan = tf.strings.substr(rows, tf.where(~rows_ends & (sos >= 0), sos,
                                                      tf.strings.length(rows)),
                                       tf.strings.length(rows))
        complete = rows_ends | ((sos >= 0) & _contains(after_scan, b"\xff\xd9"))
        truncation = tf.where(
            complete, "", tf.where(sos < 0, "truncated JPEG (its headers end before any scan "
                                   "data)", "truncated JPEG (no end-of-image marker "
                                   "FF D9 after its scan data)"))
        return truncation, _exif_orientation(rows, app1), height, width

    jpeg_truncation, orientation, jpeg_h, jpeg_w = _on_rows(
        walked, jpeg_rows, encoded, ("", 1, -1, -1))

    # PNG: IEND, IHDR.
    png_only = tf.strings.substr(encoded, 0 * length, tf.where(is_png, length, 0))
    png_header = _read(encoded, 16, 8)
    png_w = _be16(png_header, 0) * 65536 + _be16(png_header, 2)
    png_h = _be16(png_header, 4) * 65536 + _be16(png_header, 6)
    png_truncation = tf.where(_contains(png_only, b"IEND"), "", "truncated PNG (no IEND chunk)")

    # GIF: every block; the first frame's transparency.
    frame_h, frame_w, frames, complete, transparent, gce, table = _on_rows(
        is_gif, lambda rows: _gif_walk(rows, tf.ones_like(rows, tf.bool)), encoded,
        (0, 0, 0, False, -1, -1, -1))
    screen = _read(encoded, 6, 4)
    screen_w, screen_h = _le16(screen, 0), _le16(screen, 2)
    larger = _area(frame_h, frame_w) > _area(screen_h, screen_w)
    gif_h, gif_w = tf.where(larger, frame_h, screen_h), tf.where(larger, frame_w, screen_w)
    gif_truncation = tf.where(tf.equal(frames, 0), "GIF without an image",
                              tf.where(complete, "", "truncated GIF (its blocks end early)"))

    # BMP: the header (16-bit sizes in the old 12-byte core header; a negative height
    # means top-down rows).
    bmp = _read(encoded, 14, 12)
    core = tf.equal(_le16(bmp, 0) + _le16(bmp, 2) * 65536, 12)
    bmp_w = tf.where(core, _le16(bmp, 4), _le16(bmp, 4) + _le16(bmp, 6) * 65536)
    # int32 arithmetic wraps a negative (top-down) height to itself.
    bmp_h = tf.abs(tf.where(core, _le16(bmp, 6), _le16(bmp, 8) + _le16(bmp, 10) * 65536))

    def by_format(jpeg, png, gif, bmp_, other):
        return tf.where(is_jpeg, jpeg, tf.where(is_png, png, tf.where(is_gif, gif, tf.where(
            is_bmp, bmp_, other))))

    height = by_format(jpeg_h, png_h, gif_h, bmp_h, minus)
    width = by_format(jpeg_w, png_w, gif_w, bmp_w, minus)
    truncation = by_format(jpeg_truncation, png_truncation, gif_truncation, "", "")
    unknown = is_jpeg & (height < 0) & (not jpeg_sizes)  # checked by the caller
    size_problem = tf.where(unknown, "", size_problem_of(height, width, max_pixels))
    problem = tf.where(
        tf.equal(length, 0), "empty (0 bytes)",
        tf.where(~is_supported(encoded), tf.strings.join([
            "not a JPEG, PNG, GIF or BMP image (", tf.strings.as_string(length), " bytes)"]),
            tf.where(tf.not_equal(truncation, ""), truncation, size_problem)))
    edit = is_gif & (transparent >= 0)
    rows = tf.cast(tf.where(edit), tf.int32)
    pick = lambda t: tf.gather_nd(t, rows)  # noqa: E731
    prepared = tf.tensor_scatter_nd_update(encoded, rows, _gif_white_transparency(
        pick(encoded), pick(transparent), pick(gce), pick(table), pick(edit)))
    return Inspection(prepared, problem, truncation, orientation, height, width)


def size_problem_of(height, width, max_pixels: int = DEFAULT_MAX_PIXELS):
    """"" where height x width is within the rule's limits (at least one pixel, at most
    ``max_pixels``), else the reason; any shape."""
    area = _area(height, width)
    size = tf.strings.join([tf.strings.as_string(height), "x", tf.strings.as_string(width),
                            " (height x width)"])
    return tf.where((height < 1) | (width < 1), tf.strings.join(["no pixels (", size, ")"]),
                    tf.where(area > max_pixels, tf.strings.join([
                        size, ", ", tf.strings.as_string(area),
                        f" pixels: more than the {max_pixels} allowed"]), ""))


def inspect(encoded, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Inspection:
    """`inspect_batch` of one encoded image (scalar fields)."""
    batch = inspect_batch(tf.reshape(encoded, [1]), max_pixels=max_pixels)
    return Inspection(*(field[0] for field in batch))


def problem(encoded, *, max_pixels: int = DEFAULT_MAX_PIXELS):
    """The reason ``encoded`` cannot be decoded by the rule, or "" (`inspect_batch`)."""
    return inspect(encoded, max_pixels=max_pixels).problem


def jpeg_orientation(encoded):
    """The EXIF orientation (int32, 1-8) of JPEG bytes by the rule; 1 when absent."""
    return inspect(encoded).orientation


def truncation(encoded):
    """"" when the image is structurally complete, else the reason (`inspect_batch`)."""
    return inspect(encoded).truncation


def header_size(encoded):
    """(height, width) int64 from the headers (`inspect_batch`; for a GIF, the logical
    screen or its largest frame, whichever has more pixels)."""
    info = inspect(encoded)
    return tf.cast(info.height, tf.int64), tf.cast(info.width, tf.int64)


def orient(image, orientation):
    """Applies an EXIF orientation (1-8) to [H, W, C] pixels, as viewers show them:
    transposed for 5-8, then rows and/or columns reversed (`_ORIENTATIONS`)."""
    def general():
        transposed = tf.cond(orientation >= 5, lambda: tf.transpose(image, [1, 0, 2]),
                             lambda: image)
        flip_rows = tf.reduce_any(tf.equal(orientation, [3, 4, 7, 8]))
        flip_columns = tf.reduce_any(tf.equal(orientation, [2, 3, 6, 7]))
        axes = tf.boolean_mask(tf.constant([0, 1]), tf.stack([flip_rows, flip_columns]))
        return tf.reverse(transposed, axes)

    return tf.cond(tf.equal(orientation, 1), lambda: image, general)


def _composite(rgba):
    """uint8 [H, W, 4] over white -> uint8 [H, W, 3], the rule's integers."""
    rgba = tf.cast(rgba, tf.int32)
    a = rgba[..., 3:]
    t = 255 * (255 - a) + rgba[..., :3] * a + 128
    return tf.cast(tf.bitwise.right_shift(t + tf.bitwise.right_shift(t, 8), 8), tf.uint8)


def decode_rgb(encoded, orientation=None):
    """Decodes JPEG, PNG, GIF or BMP bytes to uint8 [H, W, 3] RGB by the rule (module
    docstring): greyscale replicated, alpha over white, EXIF orientation applied.

    ``orientation``: given by a caller that has `inspect_batch`'s fields (then
    ``encoded`` is its ``prepared`` bytes, as in the pipeline): a few ops per image.
    Without it, `inspect` runs here first."""
    if orientation is None:
        info = inspect(encoded)
        encoded, orientation = info.prepared, info.orientation

    def jpeg():
        return orient(tf.io.decode_jpeg(encoded, channels=3), orientation)

    def other():
        is_png = tf.equal(tf.strings.substr(encoded, 0, 4), b"\x89PNG")
        return tf.cond(is_png, lambda: _composite(tf.io.decode_png(encoded, channels=4)),
                       lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False))

    image = tf.cond(tf.image.is_jpeg(encoded), jpeg, other)
    image.set_shape([None, None, 3])
    return image
