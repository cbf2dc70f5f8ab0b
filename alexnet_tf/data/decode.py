"""The one decode rule: encoded image bytes -> uint8 RGB pixels, for every path.

Training and evaluation from image folders and TFRecords (`alexnet_tf.data.preprocess`),
the export's ``serving_default``/``features`` (`alexnet_tf.export.module`, through
`preprocess.eval_image`), the colour statistics (tools/dataset_stats.py) and the
converter (`alexnet_tf.data.convert`) all decode by this rule, and refuse the same files
with the same reason:

* Formats: JPEG, PNG, GIF and BMP, told by their magic numbers (whatever the file's
  name). GIF: the first frame. BMP: 24 or 32 bits per pixel, uncompressed (or with the
  standard blue, green, red bit fields), behind a 40- to 124-byte header: what TF's
  decoder reads as Pillow does (it gives an 8-bit BMP's palette indices as grey).
* Colour: greyscale is replicated to R, G, B; CMYK JPEGs are converted by the decoder
  (Adobe's inverted storage, as Photoshop and Pillow write them); 1-, 2- and 4-bit PNGs
  are scaled to 0..255 (TF's decoder gives them no opaque alpha without a tRNS chunk:
  `_png_rgb` reads the IHDR's bit depth and colour type to undo that).
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
* Problems (`problem`, checked before decoding, never by decoding), the first found of:
  an empty file; bytes that are not JPEG/PNG/GIF/BMP; a JPEG whose marker walk takes
  more than `_MAX_JPEG_SEGMENTS` steps (fill bytes or segments) before its frame header,
  or before its scan data when it does not end with FF D9, without an end-of-image
  marker after its scan data (an FF D9 inside an EXIF thumbnail does not count), or
  without a frame header; a PNG without IEND or whose header gives a width or height
  above 2^31 - 1 (the PNG specification's limit: a damaged header); a GIF without an
  image or whose blocks
  end early; a BMP that is not of the kind above; then the size: no pixels (a JPEG frame
  header of height 0 too), more than ``max_pixels`` (a GIF counts every frame at its
  canvas, the larger of its screen and its tallest and widest frames, since TF's
  decoder can hold all frames at once); then a GIF whose first frame does not fill its
  screen at (0, 0) or is smaller than a later frame (TF's canvas is the tallest by the
  widest frame, Pillow's the screen: their pixels would differ), a BMP whose length is
  not the one its header declares (TF's decoder needs it exact), and a JPEG of more
  than 65500 pixels a side (libjpeg's limit). Each is a reason string naming what is
  wrong and the values; callers add the file's name.
* Not detectable before decoding, so refused only by the decoder, which names no
  reason (training then names the record by its stream position, the export answers
  with TF's error): corrupt entropy-coded data in a complete JPEG (an undefined Huffman
  table, bad codes), corrupt compressed data or CRCs in a complete PNG, bad LZW codes in
  a complete GIF.

Two implementations of the rule: graph code (`inspect_batch`/`inspect`, `decode_rgb`; no
``py_function``, so it runs inside ``tf.data`` and inside the SavedModel) and, for the
converter's worker processes, which run Pillow without TensorFlow, `bytes_problem` (the
checks, string for string) and `pillow_rgb` with `exif_orientation` and `gif_frames`
(Python mirrors of the graph parsers: the same walks, the same limits) and the same
integer compositing in NumPy (`composite_over_white`). tests/test_decode.py feeds a
corpus of odd and bad files through both and through every path: the Pillow side
equals the graph side bit for bit for PNG, GIF and BMP; JPEG sources go through two
builds of libjpeg (TF's, Pillow's), which differ by up to 6 levels (IDCT and chroma
upsampling rounding) and are re-encoded by the converter anyway.

Speed: the checks are vectorised over a batch (`inspect_batch`): the common JPEG
(`plain_jpeg`: SOI, at most a plain JFIF APP0, a table marker, its frame header within a
few segments, FF D9 at the end) is settled, size included, by a few vector ops, and
only other files are walked; the pipeline runs them once per batch of records and
passes each image's orientation to `decode_rgb`, so the per-image graph stays small (in
a ``tf.data`` map, every op of the graph, taken or not, costs time on every call). The
GIF walk's cost grows with the file's bytes, not its blocks (`_gif_walk`).

Importing this module imports no TensorFlow (the converter forks its workers from a
process without it); the graph functions load it on first use.
"""

from __future__ import annotations

import collections
import functools
import importlib
import io
import os
import stat

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


# Reads past the end of the data give zeros, as the graph code's `_read` does, so that
# both sides see the same values in a file cut anywhere.
def _bytes(data: bytes, i: int, count: int) -> bytes:
    if i < 0 or i > len(data):
        return bytes(count)
    return data[i:i + count].ljust(count, b"\0")


def _byte(data: bytes, i: int) -> int:
    return data[i] if 0 <= i < len(data) else 0


def _u16(data: bytes, i: int, little: bool) -> int:
    return int.from_bytes(_bytes(data, i, 2), "little" if little else "big")


def _u32(data: bytes, i: int, little: bool) -> int:
    return int.from_bytes(_bytes(data, i, 4), "little" if little else "big")


def _s32(data: bytes, i: int, little: bool) -> int:
    return int.from_bytes(_bytes(data, i, 4), "little" if little else "big", signed=True)


def _is_app(marker: int) -> bool:
    return 0xE0 <= marker <= 0xEF or marker == 0xFE


def _is_sof(marker: int) -> bool:
    return 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)


def _jpeg_segments(data: bytes, need_sos: bool = True):
    """(start of the APP1 Exif segment among the leading APPn/COM segments or -1, SOS
    start or -1, (height, width) or None, whether the walk stopped at its cap of
    `_MAX_JPEG_SEGMENTS` steps): the walk of `_jpeg_walk`, in Python. Without
    ``need_sos`` it stops once the frame header and the orientation are known."""
    pos, app1, sos, size, leading = 2, -1, -1, None, True
    n = len(data)
    for _ in range(_MAX_JPEG_SEGMENTS):
        if pos >= n or data[pos] != 0xFF:
            return app1, sos, size, False
        marker = _byte(data, pos + 1)
        if marker == 0xFF:  # a fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if marker == 0xDA:
            return app1, pos, size, False
        length = _u16(data, pos + 2, False)
        if marker == 0xD9 or marker == 0x00 or length < 2:
            return app1, sos, size, False
        leading = leading and _is_app(marker)
        if leading and marker == 0xE1 and app1 < 0 and _bytes(data, pos + 4, 6) == b"Exif\0\0":
            app1 = pos
        if _is_sof(marker) and size is None:
            size = (_u16(data, pos + 5, False), _u16(data, pos + 7, False))
        pos += 2 + length
        if size is not None and (not leading or app1 >= 0) and not need_sos:
            return app1, sos, size, False
    return app1, sos, size, True


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1-8) of JPEG bytes; 1 when absent or unreadable. The same
    parse as the graph code's (`jpeg_orientation`): the first APP1 ``Exif`` segment among
    the APPn/COM segments that open the file (before the first table or frame segment,
    where the Exif and JFIF standards put it), IFD0, tag 0x0112 of type SHORT."""
    if data[:2] != b"\xff\xd8":
        return 1
    app1 = _jpeg_segments(data)[0]
    if app1 < 0:
        return 1
    end = app1 + 2 + _u16(data, app1 + 2, False)
    tiff = app1 + 10
    little = _byte(data, tiff) == 0x49  # "II"
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


GifInfo = collections.namedtuple(
    "GifInfo", "frames complete transparent_index gce table first_position")


def gif_frames(data: bytes) -> GifInfo:
    """Every frame's (height, width) from its image descriptor (0x2C), whether the block
    structure is complete (the trailer 0x3B, or the end of the data where a block would
    start, after at least one frame), and for the first frame: its transparent colour
    index (-1: none), the offset of its graphic control extension's packed byte and of
    its colour table (-1: none), its (top, left). The walk of `_gif_walk`."""
    n = len(data)
    flags = _byte(data, 10)
    table = 13 if flags & 0x80 else -1
    pos = 13 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0)  # the first block
    frames, complete, gce, first_gce, first_table, first_position = [], False, -1, -1, -1, (0, 0)
    while True:
        if pos >= n:
            complete = pos == n and bool(frames)
            break
        block = data[pos]
        if block == 0x3B:
            complete = True
            break
        if block == 0x21:
            if _byte(data, pos + 1) == 0xF9 and not frames:
                gce = pos + 3
            sub = pos + 2
        elif block == 0x2C:
            frames.append((_u16(data, pos + 7, True), _u16(data, pos + 5, True)))
            local = _byte(data, pos + 9)
            if len(frames) == 1:
                first_gce = gce
                first_table = pos + 10 if local & 0x80 else table
                first_position = (_u16(data, pos + 3, True), _u16(data, pos + 1, True))
            sub = pos + 10 + (3 * (2 << (local & 7)) if local & 0x80 else 0) + 1
        else:
            break
        while sub < n and data[sub] != 0:  # sub-blocks: a length byte, then the bytes
            sub += data[sub] + 1
        if sub >= n:
            break
        pos = sub + 1  # after the block terminator
    transparent = -1
    if first_gce >= 0 and _byte(data, first_gce) & 1:
        transparent = _byte(data, first_gce + 3)
    return GifInfo(tuple(frames), complete, transparent, first_gce, first_table,
                   first_position)


def _gif_canvas(data: bytes, frames) -> tuple[int, int]:
    """The larger of the logical screen and the frames, height and width each: TF's
    decoder allocates the tallest by the widest frame, Pillow the screen (grown to the
    first frame)."""
    return (max([_u16(data, 8, True)] + [h for h, _ in frames]),
            max([_u16(data, 6, True)] + [w for _, w in frames]))


def gif_decoded_size(data: bytes) -> tuple[int, int, int]:
    """(frames, canvas height, canvas width) of a GIF: every frame is counted at the
    canvas (`_gif_canvas`), as TF's decoder can hold them all at once; `inspect_batch`
    counts the same."""
    info = gif_frames(data)
    return (len(info.frames), *_gif_canvas(data, info.frames))


def _size_problem(height: int, width: int, max_pixels: int) -> str:
    """`size_problem_of` in Python."""
    size = f"{height}x{width} (height x width)"
    if height < 1 or width < 1:
        return f"no pixels ({size})"
    if height * width > max_pixels:
        return f"{size}, {height * width} pixels: more than the {max_pixels} allowed"
    return ""


def _jpeg_checks(data: bytes):
    """(reason before the size check, height, width) of JPEG bytes."""
    ends = data[-2:] == b"\xff\xd9"
    _, sos, size, capped = _jpeg_segments(data, need_sos=not ends)
    height, width = size or (-1, -1)
    if capped:
        where = "frame header" if height < 0 else "scan data"
        return f"JPEG with more than {_MAX_JPEG_SEGMENTS} segments before its {where}", -1, -1
    if not (ends or (sos >= 0 and b"\xff\xd9" in data[sos:])):
        if sos < 0:
            return "truncated JPEG (its headers end before any scan data)", height, width
        return "truncated JPEG (no end-of-image marker FF D9 after its scan data)", height, width
    if height < 0:
        return _NO_FRAME_HEADER, height, width
    return "", height, width


_NO_FRAME_HEADER = "JPEG without a frame header (an SOF marker segment before its scan data)"
# PNG's IHDR holds width and height as unsigned 32-bit big-endian integers, but the PNG
# specification allows at most 2^31 - 1: a larger value is a damaged header, not a size.
_PNG_MAX_SIDE = 2 ** 31 - 1
_MAX_JPEG_SIDE = 65500  # libjpeg's JPEG_MAX_DIMENSION, in TF's build and in Pillow's
_BMP_HEADERS = (40, 52, 56, 64, 108, 124)  # BITMAPINFOHEADER and its successors
_SAVE_AS_PNG = ": not supported; save it as PNG"


def _bmp_checks(data: bytes):
    """(reason before the size check, height, width, reason after it) of BMP bytes.
    TF's decoder reads a 40-byte (or longer) header's fields, 24 or 32 bits per pixel,
    BGR(X) rows from the pixel data offset, and needs the file to end exactly after the
    last row; it ignores the compression field and the colour palette."""
    header, bits, compression = _u32(data, 14, True), _u16(data, 28, True), _u32(data, 30, True)
    width, height = _s32(data, 18, True), _s32(data, 22, True)
    height = -height if -(1 << 31) < height < 0 else height  # negative: rows top-down
    pre = ""
    if header not in _BMP_HEADERS:
        pre = (f"BMP with a {header}-byte header: not supported (a Windows BMP header of 40 "
               "to 124 bytes expected); save it as PNG")
    elif bits in (1, 2, 4, 8):
        pre = f"BMP with a colour palette ({bits} bits per pixel){_SAVE_AS_PNG}"
    elif bits not in (24, 32):
        pre = f"BMP of {bits} bits per pixel: not supported (24 or 32 expected); save it as PNG"
    elif compression not in (0, 3):
        pre = (f"BMP with compression type {compression}: not supported (uncompressed "
               "expected); save it as PNG")
    elif compression == 3:  # BI_BITFIELDS: Pillow applies the masks, TF reads B, G, R(, X)
        masks = (_u32(data, 54, True), _u32(data, 58, True), _u32(data, 62, True))
        alpha = _u32(data, 66, True) if header >= 56 else 0
        if not ((masks == (0xFF0000, 0xFF00, 0xFF) and (bits == 24 or alpha in (0, 0xFF000000)))
                or (bits == 32 and masks == (0, 0, 0) and alpha == 0)):
            pre = "BMP with colour masks other than 8-bit blue, green, red" + _SAVE_AS_PNG
    offset = _u32(data, 10, True)  # bfOffBits: unsigned (DWORD), unlike width and height
    row = (bits // 8 * width + 3) // 4 * 4
    expected = offset + row * height
    post = ""
    if len(data) < expected:
        post = (f"truncated BMP ({len(data)} bytes; its header declares {expected}: pixel "
                f"data at byte {offset}, then {height} rows of {row} bytes)")
    elif len(data) > expected:
        post = (f"BMP of {len(data)} bytes, {len(data) - expected} more than its header "
                f"declares (pixel data at byte {offset}, then {height} rows of {row} bytes)"
                f"{_SAVE_AS_PNG}")
    return pre, height, width, post


def _gif_checks(data: bytes, max_pixels: int):
    """(reason before the size check, canvas height, canvas width, the reason for all
    frames' pixels together or "", reason after the size check) of GIF bytes."""
    info = gif_frames(data)
    pre = ("GIF without an image" if not info.frames else
           "" if info.complete else "truncated GIF (its blocks end early)")
    height, width = _gif_canvas(data, info.frames)
    total = len(info.frames) * height * width
    frames = ""
    if len(info.frames) > 1 and total > max_pixels:
        frames = (f"{len(info.frames)} GIF frames of {height}x{width} (height x width), "
                  f"{total} pixels decoded: more than the {max_pixels} allowed")
    post = ""
    if info.frames:
        (first_h, first_w), (top, left) = info.frames[0], info.first_position
        screen_h, screen_w = _u16(data, 8, True), _u16(data, 6, True)
        tallest, widest = max(h for h, _ in info.frames), max(w for _, w in info.frames)
        if top or left or first_h < screen_h or first_w < screen_w:
            post = (f"GIF whose first frame ({first_h}x{first_w} at row {top}, column {left}) "
                    f"does not fill its {screen_h}x{screen_w} screen (height x width)")
        elif tallest > first_h or widest > first_w:
            post = (f"GIF whose frames reach {tallest}x{widest}, beyond its first frame of "
                    f"{first_h}x{first_w} (height x width)")
    return pre, height, width, frames, post


# The largest image file read: a 40-megapixel 32-bit BMP (the export's default pixel
# limit, uncompressed) is 160 MB; nothing an image model takes is larger.
MAX_FILE_BYTES = 256 * 1024 * 1024


def read_image_file(path: str, max_bytes: int = MAX_FILE_BYTES) -> tuple[bytes | None, str]:
    """(the bytes of image file ``path``, "") or (None, why they cannot be read): the
    path does not exist, is a directory, not permitted, not a regular file (a FIFO
    would block the read, a device never end it), or larger than ``max_bytes``. The
    bytes are not checked: `bytes_problem` does that."""
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            return None, "Is a directory"
        if not stat.S_ISREG(info.st_mode):
            return None, "not a regular file (a FIFO, socket or device); expected an image file"
        if info.st_size > max_bytes:
            return None, (f"{info.st_size:,} bytes, more than the {max_bytes:,} any image this "
                          f"package reads can take")
        with open(path, "rb") as file:
            return file.read(max_bytes + 1), ""
    except OSError as error:  # missing, not permitted, a link loop: the file's failure
        return None, error.strerror or str(error)


def bytes_problem(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> str:
    """`problem` in Python, without TensorFlow (the converter's workers): the same
    checks in the same order, the same reason, string for string; "" when the rule
    can decode ``data``."""
    if not data:
        return "empty (0 bytes)"
    frames = post = ""
    if data[:3] == b"\xff\xd8\xff":
        pre, height, width = _jpeg_checks(data)
        if max(height, width) > _MAX_JPEG_SIDE:
            post = (f"JPEG of {height}x{width} (height x width): more than the "
                    f"{_MAX_JPEG_SIDE} pixels a side libjpeg decodes")
    elif data[:4] == b"\x89PNG":
        width, height = _u32(data, 16, False), _u32(data, 20, False)
        pre = (_png_header_problem("width", width) or _png_header_problem("height", height)
               or ("" if b"IEND" in data else "truncated PNG (no IEND chunk)"))
    elif data[:3] == b"GIF":
        pre, height, width, frames, post = _gif_checks(data, max_pixels)
    elif data[:2] == b"BM":
        pre, height, width, post = _bmp_checks(data)
    else:
        return f"not a JPEG, PNG, GIF or BMP image ({len(data)} bytes)"
    return pre or _size_problem(height, width, max_pixels) or frames or post


def _png_header_problem(name: str, value: int) -> str:
    """The reason a PNG header's width or height ``value`` is refused, or ""."""
    if value <= _PNG_MAX_SIDE:
        return ""
    return (f"damaged PNG (its header gives a {name} of {value}: more than the "
            f"{_PNG_MAX_SIDE} the PNG specification allows)")


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


def pillow_decode(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """uint8 [H, W, 3] of ``data`` by the rule, with Pillow (no TensorFlow). Raises
    ValueError with `bytes_problem`'s reason for what the rule refuses."""
    from PIL import Image

    reason = bytes_problem(data, max_pixels=max_pixels)
    if reason:
        raise ValueError(reason)
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
    segments, start of the first scan, frame height, frame width), -1 where not found,
    and whether the walk stopped at its cap of `_MAX_JPEG_SEGMENTS` steps. A row stops at
    its first scan, or sooner once its frame size and orientation are known and
    ``need_sos`` is False for it."""
    minus = -tf.ones_like(tf.strings.length(encoded))
    length = tf.strings.length(encoded)

    def step(i, pos, app1, sos, height, width, leading, capped, done):
        head = _read(encoded, pos, 10)
        marker, seg_length = head[:, 1], _be16(head, 2)
        live = ~done
        capped = capped | (live & (i >= _MAX_JPEG_SEGMENTS))
        stop = (pos >= length) | (head[:, 0] != 0xFF) | (i >= _MAX_JPEG_SEGMENTS)
        fill = marker == 0xFF
        standalone = (marker == 0x01) | ((marker >= 0xD0) & (marker <= 0xD7))
        is_sos = marker == 0xDA
        end = (marker == 0xD9) | (marker == 0x00) | (seg_length < 2)
        segment = live & ~(stop | fill | standalone | is_sos | end)
        app = ((marker >= 0xE0) & (marker <= 0xEF)) | (marker == 0xFE)
        leading = leading & ~(segment & ~app)
        exif = tf.reduce_all(tf.equal(head[:, 4:10], [[0x45, 0x78, 0x69, 0x66, 0, 0]]), axis=1)
        app1 = tf.where(segment & leading & (marker == 0xE1) & (app1 < 0) & exif, pos, app1)
        sof = segment & _sof(marker) & (height < 0)
        height = tf.where(sof, _be16(head, 5), height)
        width = tf.where(sof, _be16(head, 7), width)
        sos = tf.where(live & ~stop & is_sos, pos, sos)
        advance = tf.where(fill, 1, tf.where(standalone, 2, 2 + seg_length))
        finished = stop | is_sos | (end & ~fill & ~standalone)
        settled = (height >= 0) & (~leading | (app1 >= 0)) & ~need_sos
        return (i + 1, tf.where(live, pos + advance, pos), app1, sos, height, width, leading,
                capped, done | finished | settled)

    state = (tf.constant(0), tf.fill(tf.shape(length), 2), minus, minus, minus, minus,
             tf.ones_like(active), tf.zeros_like(active), ~active)
    out = tf.while_loop(lambda *st: ~tf.reduce_all(st[-1]), step, state)
    return out[2:6] + (out[7],)


def _sof(marker):
    """Whether JPEG markers (int32) are frame headers: SOF0-SOF15 but DHT, JPG, DAC."""
    return (marker >= 0xC0) & (marker <= 0xCF) & (marker != 0xC4) & (marker != 0xC8) & (
        marker != 0xCC)


def _exif_orientation(encoded, app1):
    """[B] orientation (1-8) in the APP1 Exif segment starting at ``app1`` (-1: none):
    IFD0's tag 0x0112 of type SHORT, read as `exif_orientation` reads it."""
    has = app1 >= 0
    segment_end = app1 + 2 + _be16(_read(encoded, app1 + 2, 2), 0)
    tiff = app1 + 10
    header = _read(encoded, tiff, 8)
    little = tf.equal(header[:, 0], 0x49)
    # The IFD offset is unsigned 32-bit: in int32 one of 2^31 or more would wrap to a
    # negative offset and could point before the TIFF header, where the Python side
    # (and the Exif standard) reads past the end of the file: no orientation. Clamped
    # to the end, it reads zeros there as the Python side does.
    wide = tf.cast(header, tf.int64)
    offset = tf.where(little, _be16(wide, 4, little) + _be16(wide, 6, little) * 65536,
                      _be16(wide, 4) * 65536 + _be16(wide, 6))
    ifd = tf.cast(tf.minimum(tf.cast(tiff, tf.int64) + offset,
                             tf.cast(tf.strings.length(encoded), tf.int64)), tf.int32)
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


# The GIF walk goes through a window of the file per loop iteration: every byte of the
# window is a possible sub-block length byte, whose successor (the next sub-block, or
# past a terminator and the next block's header, the block's first sub-block) is known
# without the walk; pointer jumping (`_GIF_LEVELS` doublings of the successor table)
# then finds every position the walk visits in the window at once. A window's cost does
# not depend on how the file cuts its data into blocks, so one loop iteration covers
# `_GIF_WINDOW` bytes of any GIF, however hostile (a walk of one sub-block per
# iteration took a minute per 300,000 of them). Before its window, an iteration skips
# the run of full (255-byte) sub-blocks it stands on, up to `_GIF_RUN` of them, read at
# a stride of 256 bytes: encoders write image data so, and this takes most of the
# bytes of a large GIF at the cost of a copy.
_GIF_LEVELS = 12
_GIF_WINDOW = 1 << _GIF_LEVELS
_GIF_RUN = 256


_GIF_DEFAULTS = (0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1)  # `_gif_walk`'s fields of a non-GIF


def _gif_walk(encoded):
    """The blocks of the [B] GIFs (the walk of `gif_frames`): int32 [B, 11] of the frame
    count, the tallest and the widest frame's height and width, the first frame's top,
    left, height and width, complete (1) or not (0), the first frame's transparent colour
    index or -1, its GCE packed-byte offset, its colour table offset or -1."""
    window, length = _GIF_WINDOW, tf.strings.length(encoded)
    rows = tf.shape(encoded)[0]
    flags = _read(encoded, 10, 1)[:, 0]
    has_table = tf.bitwise.bitwise_and(flags, 0x80) > 0
    table_size = 3 * tf.bitwise.left_shift(2, tf.bitwise.bitwise_and(flags, 7))
    zero, minus = tf.zeros_like(length), -tf.ones_like(length)
    table0 = tf.where(has_table, 13 + zero, minus)
    index = tf.range(window)[None]
    row_offsets = tf.range(rows)[:, None] * window
    ends = length[:, None]

    def step(base, first_window, frames, tallest, widest, top, left, first_h, first_w, gce,
             first_gce, first_table, complete, done):
        # The run of full sub-blocks from base (none in the first window, which starts
        # one byte before the first block, read as a block terminator).
        strided = tf.io.decode_raw(tf.strings.substr(encoded, tf.minimum(base, length),
                                                     tf.fill(tf.shape(base), 256 * _GIF_RUN)),
                                   tf.uint8, fixed_length=256 * _GIF_RUN)
        full = tf.equal(tf.reshape(strided, [rows, _GIF_RUN, 256])[:, :, 0], 255)
        run = tf.reduce_sum(tf.math.cumprod(tf.cast(full, tf.int32), axis=1), axis=1)
        base = base + 256 * tf.where(first_window | done, 0, run)
        # Node i: position base + i read as a sub-block length byte.
        w = _read(encoded, base, window + 11)
        w = tf.where(first_window[:, None] & tf.equal(tf.range(window + 11), 0)[None], 0, w)

        def column(k):  # byte base + i + k for every node i
            return w[:, k:window + k]

        d, block, label, packed = column(0), column(1), column(2), column(10)
        pos = base[:, None] + index
        inside = pos < ends
        terminator = inside & tf.equal(d, 0)
        at_block = terminator & (pos + 1 < ends)
        extension = at_block & tf.equal(block, 0x21)
        image = at_block & tf.equal(block, 0x2C)
        local = tf.where(tf.bitwise.bitwise_and(packed, 0x80) > 0,
                         3 * tf.bitwise.left_shift(2, tf.bitwise.bitwise_and(packed, 7)), 0)
        target = tf.where(tf.equal(d, 0), tf.where(extension, pos + 3, pos + 12 + local),
                          pos + d + 1)
        moves = inside & (tf.not_equal(d, 0) | extension | image)
        # Nodes that end the walk or leave the window point to themselves.
        jump = tf.where(moves & (target - base[:, None] < window), target - base[:, None],
                        index + 0 * target)
        # Flat indices (row * window + node): TF's segment sum and flat gather are several
        # times faster than its segment max and batched gather.
        jump = tf.reshape(jump + row_offsets, [-1])
        reached = tf.cast(tf.equal(tf.reshape(index + row_offsets, [-1]) % window, 0), tf.int32)
        for _ in range(_GIF_LEVELS):  # reached: the nodes 0 .. 2^k - 1 steps from node 0
            reached = tf.minimum(reached + tf.math.unsorted_segment_sum(reached, jump,
                                                                        rows * window), 1)
            jump = tf.gather(jump, jump)
        reached = tf.reshape(reached, [rows, window]) > 0
        last = tf.reshape(jump, [rows, window])[:, :1] - row_offsets

        def at(values, i):
            return tf.gather(values, i, batch_dims=1)[:, 0]

        leaves = at(moves, last)
        found = reached & image
        count = tf.reduce_sum(tf.cast(found, tf.int32), axis=1)
        # An image descriptor at node i + 1: left, top, width, height (little-endian).
        lefts, tops = column(2) + 256 * column(3), column(4) + 256 * column(5)
        widths, heights = column(6) + 256 * column(7), column(8) + 256 * column(9)
        has_frame = count > 0
        f = tf.argmax(tf.cast(found, tf.int32), axis=1, output_type=tf.int32)[:, None]
        # The graphic control extensions the walk meets before the first frame.
        before = reached & extension & tf.equal(label, 0xF9) & (
            (index < f) | ~has_frame[:, None])
        g = tf.reduce_max(tf.where(before, index, -1), axis=1)
        live = ~done
        ahead = live & tf.equal(frames, 0)
        gce = tf.where(ahead & (g >= 0), base + g + 4, gce)
        new = ahead & has_frame
        frames = frames + tf.where(live, count, 0)
        finished = live & ~leaves
        ended = finished & (at(at_block, last) & tf.equal(at(block, last), 0x3B) |
                            at(terminator, last) & ~at(at_block, last) & (frames > 0))
        table = tf.where(tf.bitwise.bitwise_and(at(packed, f), 0x80) > 0, base + f[:, 0] + 11,
                         table0)
        return (tf.where(live & leaves, at(target, last), base), first_window & ~live, frames,
                tf.maximum(tallest, tf.reduce_max(tf.where(found, heights, 0), axis=1)),
                tf.maximum(widest, tf.reduce_max(tf.where(found, widths, 0), axis=1)),
                tf.where(new, at(tops, f), top), tf.where(new, at(lefts, f), left),
                tf.where(new, at(heights, f), first_h), tf.where(new, at(widths, f), first_w),
                gce, tf.where(new, gce, first_gce), tf.where(new, table, first_table),
                complete | ended, done | finished)

    start = 13 + tf.where(has_table, table_size, 0)
    state = (start - 1, tf.ones_like(has_table), zero, zero, zero, zero, zero, zero, zero,
             minus, minus, minus, tf.zeros_like(has_table), tf.zeros_like(has_table))
    out = tf.while_loop(lambda *st: ~tf.reduce_all(st[-1]), step, state)
    frames, tallest, widest, top, left, first_h, first_w, _, first_gce, first_table, complete = (
        out[2:12] + (out[12],))
    packed = _read(encoded, first_gce, 4)
    transparent = tf.where((first_gce >= 0) & (tf.bitwise.bitwise_and(packed[:, 0], 1) > 0),
                           packed[:, 3], -1)
    # One [R, 11] tensor: one scatter in `_on_rows` rather than eleven.
    return (tf.stack([frames, tallest, widest, top, left, first_h, first_w,
                      tf.cast(complete, tf.int32), transparent, first_gce, first_table], 1),)


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
# A plain JPEG's frame header is among its first `_PLAIN_SEGMENTS` marker segments and
# `_PLAIN_BYTES` bytes (libjpeg writes DQT, DQT, SOF0 after JFIF's APP0; others put a
# DHT or DRI first); another is walked by `_jpeg_walk`.
_PLAIN_SEGMENTS = 4
_PLAIN_BYTES = 640
# Per marker byte: 1 a frame header (SOFn), 2 another segment with a length, 0 none
# (fill byte, RSTn, SOI, EOI, SOS, TEM, 0x00).
_MARKER_KINDS = [1 if _is_sof(m) else 0 if m in (0x00, 0x01, 0xFF) or 0xD0 <= m <= 0xDA
                 else 2 for m in range(256)]


def _plain_jpeg(encoded, is_jpeg=None):
    """[B] (plain, height, width): `plain_jpeg`, and the frame size of the plain ones."""
    # In a tf.data map every op costs time on every call, constants and slices too: the
    # bytes are read once, and a step is a few ops on whole columns.
    length = tf.strings.length(encoded)
    rows = tf.shape(length)[0]
    head = tf.reshape(_read(encoded, 0, _PLAIN_BYTES + 9), [-1])  # zeros past the end
    start = tf.range(rows) * (_PLAIN_BYTES + 9)
    b = tf.unstack(tf.gather(head, start[:, None] + tf.range(22)), axis=1)
    jfif = tf.reduce_all(tf.equal(tf.stack(b[:6], 1), list(_JFIF_APP0)), axis=1)
    pos = tf.where(jfif, 20, 2)
    table = tf.where(jfif, b[21], b[3])  # the marker after SOI, or after JFIF's APP0
    tail = tf.strings.substr(encoded, tf.maximum(length - 2, 0), tf.fill(tf.shape(length), 2))
    plain = (formats(encoded)[0] if is_jpeg is None else is_jpeg) & tf.equal(
        tf.where(jfif, b[20], b[2]), 0xFF) & tf.reduce_any(tf.equal(
            table[:, None], [m[1] for m in _TABLE_MARKERS]), axis=1) & tf.equal(tail, b"\xff\xd9")
    kinds = tf.constant(_MARKER_KINDS)
    found, height, width = tf.zeros_like(plain), -tf.ones_like(length), -tf.ones_like(length)
    for _ in range(_PLAIN_SEGMENTS):
        at = tf.minimum(pos, _PLAIN_BYTES)
        ff, marker, l0, l1, _, h0, h1, w0, w1 = tf.unstack(
            tf.gather(head, (start + at)[:, None] + tf.range(9)), axis=1)
        seg_length = l0 * 256 + l1
        kind = tf.gather(kinds, marker) * tf.cast(
            tf.equal(ff, 0xFF) & (seg_length >= 2) & (pos < _PLAIN_BYTES), tf.int32)
        sof = ~found & tf.equal(kind, 1)
        height = tf.where(sof, h0 * 256 + h1, height)
        width = tf.where(sof, w0 * 256 + w1, width)
        plain &= found | (kind > 0)
        found |= sof
        pos = tf.where(found, pos, pos + 2 + seg_length)
    return plain & found, height, width


def plain_jpeg(encoded):
    """[B] bool: the common JPEG, told from a few bytes: SOI, at most a 16-byte JFIF
    APP0, then a table or frame marker (so no EXIF by the rule: orientation 1), its
    frame header within `_PLAIN_SEGMENTS` marker segments, and FF D9 as its last two
    bytes (complete)."""
    return _plain_jpeg(encoded)[0]


def _on_rows(mask, fn, encoded, defaults):
    """``fn`` applied to the rows of ``encoded`` where ``mask`` holds (often none: then
    its loops run no iteration), its [R] (or [R, N]) results scattered into [B] (or
    [B, N]) tensors of ``defaults`` (scalars, or rows of N)."""
    # Only the chosen rows enter the loops: string tensors that cross into a loop or a
    # branch are copied, and the common rows are most of the bytes.
    size = tf.shape(encoded)
    rows = tf.cast(tf.where(mask), tf.int32)
    results = fn(tf.gather_nd(encoded, rows))
    return tuple(tf.tensor_scatter_nd_update(
        tf.fill(size, tf.cast(default, r.dtype)) if r.shape.rank == 1 else
        tf.tile(tf.constant([default], r.dtype), [size[0], 1]), rows, r)
        for default, r in zip(defaults, results))


def _text(value):
    return tf.strings.as_string(value)


def _reason(code, parts, numbers):
    """[B] strings: for each row, "" where ``code`` is 0, else the message ``parts[code]``
    (a list of k + 1 strings) with the row's k ``numbers`` between them."""
    table = tf.constant([p + [""] * (len(numbers) + 1 - len(p)) for p in [[""]] + parts])
    pieces = tf.gather(table, code)  # [B, k + 1]
    texts = [pieces[:, 0]]
    for k, number in enumerate(numbers):
        used = tf.constant([len(p) > k + 1 for p in [[""]] + parts])
        texts += [tf.where(tf.gather(used, code), _text(number), ""), pieces[:, k + 1]]
    return tf.strings.join(texts)


# The BMP header fields the rule reads, little-endian 32-bit at these offsets: pixel data
# offset, header size, width, height, compression, colour masks (red, green, blue, alpha).
_BMP_FIELDS = (10, 14, 18, 22, 30, 54, 58, 62, 66)


def _bmp_batch_checks(encoded, length):
    """[B] (reason before the size check, height, width, reason after it) of BMP
    headers: `_bmp_checks` in graph code."""
    b = tf.cast(_read(encoded, 0, 70), tf.int64)
    fields = tf.reduce_sum(tf.gather(b, [[i, i + 1, i + 2, i + 3] for i in _BMP_FIELDS], axis=1)
                           * [1, 256, 65536, 16777216], axis=2)  # [B, 9] unsigned
    signed = tf.where(fields >= 2 ** 31, fields - 2 ** 32, fields)
    # Width and height are signed (LONG; a negative height means rows top-down), the
    # pixel data offset is not (DWORD).
    offset, width, height = fields[:, 0], signed[:, 2], signed[:, 3]
    header, compression, masks = fields[:, 1], fields[:, 4], fields[:, 5:8]
    alpha = tf.where(header >= 56, fields[:, 8], 0)
    bits = b[:, 28] + 256 * b[:, 29]
    height = tf.where((height < 0) & (height > -2 ** 31), -height, height)
    bgr = tf.reduce_all(tf.equal(masks, [0xFF0000, 0xFF00, 0xFF]), axis=1)
    masks_ok = (bgr & (tf.equal(bits, 24) | tf.equal(alpha, 0) | tf.equal(alpha, 0xFF000000))) | (
        tf.equal(bits, 32) & tf.reduce_all(tf.equal(masks, 0), axis=1) & tf.equal(alpha, 0))
    known = tf.reduce_any(tf.equal(header[:, None], _BMP_HEADERS), axis=1)
    palette = tf.reduce_any(tf.equal(bits[:, None], [1, 2, 4, 8]), axis=1)
    true_colour = tf.equal(bits, 24) | tf.equal(bits, 32)
    plain = tf.equal(compression, 0) | tf.equal(compression, 3)
    code = tf.where(~known, 1, tf.where(palette, 2, tf.where(~true_colour, 3, tf.where(
        ~plain, 4, tf.where(tf.equal(compression, 3) & ~masks_ok, 5, 0)))))
    pre = _reason(code, [
        ["BMP with a ", "-byte header: not supported (a Windows BMP header of 40 to 124 "
         "bytes expected); save it as PNG"],
        ["BMP with a colour palette (", " bits per pixel)" + _SAVE_AS_PNG],
        ["BMP of ", " bits per pixel: not supported (24 or 32 expected); save it as PNG"],
        ["BMP with compression type ", ": not supported (uncompressed expected); save it "
         "as PNG"],
        ["BMP with colour masks other than 8-bit blue, green, red" + _SAVE_AS_PNG]],
        [tf.gather(tf.stack([header, header, bits, bits, compression, header], 1), code,
                   batch_dims=1)])
    size = tf.cast(length, tf.int64)
    row = tf.math.floordiv(bits // 8 * width + 3, 4) * 4
    expected = offset + row * height
    layout = ["pixel data at byte ", ", then ", " rows of ", " bytes)"]
    code = tf.where(size < expected, 1, tf.where(size > expected, 2, 0))
    post = _reason(code, [
        ["truncated BMP (", " bytes; its header declares ", ": " + layout[0]] + layout[1:],
        ["BMP of ", " bytes, ", " more than its header declares (" + layout[0]] + layout[1:-1]
        + [layout[-1] + _SAVE_AS_PNG]],
        [size, tf.where(size < expected, expected, size - expected), offset, height, row])
    return pre, tf.cast(height, tf.int32), tf.cast(width, tf.int32), post


def inspect_batch(encoded, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                  jpeg_sizes: bool = True) -> Inspection:
    """The rule's checks of a [B] vector of encoded images, from headers and block
    structure only: nothing is decoded, nothing raises (a pipeline names a bad file and
    skips it). Fields, each [B]:

      prepared     the bytes to give `decode_rgb` with ``orientation``: a GIF whose first
                   frame has a transparent colour gets it made opaque white (its
                   all-or-nothing transparency over white; TF's GIF decoder would make
                   those pixels black); anything else unchanged
      problem      "" when the rule can decode the image, else the reason, the first of:
                   empty; not JPEG/PNG/GIF/BMP; ``truncation`` when it is found before
                   the size check; no pixels or more than ``max_pixels`` (for a GIF, every
                   frame counted at its canvas: see the module docstring); ``truncation``
                   found after it (a GIF's frame layout, a BMP's length)
      truncation   the structural part of ``problem`` (its reason when that is one of
                   these, else ""): a JPEG with more than `_MAX_JPEG_SEGMENTS` segments
                   before its frame header (or scan data), without FF D9 after its scan
                   data (an FF D9 inside an EXIF thumbnail, before the scan, does not count:
                   entropy-coded data never holds FF D9), without a frame header or of
                   more than 65500 pixels a side (libjpeg's limit); a PNG
                   without IEND or whose header gives a width or height above 2^31 - 1
                   (damaged); a GIF without an image, whose blocks end early, or whose
                   first frame does not fill its screen or is smaller than a later frame;
                   a BMP that TF's decoder cannot read as Pillow does (not a 40- to
                   124-byte header, a colour palette or other than 24/32 bits per pixel,
                   compression other than none or standard bit fields) or whose length is
                   not the one its header declares
      orientation  a JPEG's EXIF orientation (1-8), 1 otherwise
      height, width  from the headers: the JPEG frame header, PNG's IHDR, BMP's header,
                   a GIF's canvas (the larger of its logical screen and its tallest and
                   widest frames); -1 if unknown

    ``jpeg_sizes`` is not used: every JPEG's size is read here (the common ones,
    `plain_jpeg`, with a few vector ops).
    """
    del jpeg_sizes
    if tf.executing_eagerly():  # the loops run op by op in eager mode: compile them
        return Inspection(*_compiled_inspect(max_pixels)(tf.reshape(encoded, [-1])))
    encoded = tf.convert_to_tensor(encoded, tf.string)
    length = tf.strings.length(encoded)
    is_jpeg, is_png, is_gif, is_bmp = formats(encoded)
    supported = (length > 0) & (is_jpeg | is_png | is_gif | is_bmp)
    minus = -tf.ones_like(length)

    # JPEG: the marker walk, EXIF, completeness; only on the rows that need it.
    plain, plain_h, plain_w = _plain_jpeg(encoded, is_jpeg)

    def jpeg_rows(rows):
        rows_ends = tf.equal(tf.strings.substr(rows, tf.maximum(tf.strings.length(rows) - 2, 0),
                                               tf.fill(tf.shape(rows), 2)), b"\xff\xd9")
        app1, sos, height, width, capped = _jpeg_walk(rows, tf.ones_like(rows_ends), ~rows_ends)
        after_scan = tf.strings.substr(rows, tf.where(~rows_ends & (sos >= 0), sos,
                                                      tf.strings.length(rows)),
                                       tf.strings.length(rows))
        complete = rows_ends | ((sos >= 0) & _contains(after_scan, b"\xff\xd9"))
        reason = tf.where(
            capped, tf.where(height < 0, f"JPEG with more than {_MAX_JPEG_SEGMENTS} segments "
                             "before its frame header", f"JPEG with more than "
                             f"{_MAX_JPEG_SEGMENTS} segments before its scan data"),
            tf.where(complete, tf.where(height < 0, _NO_FRAME_HEADER, ""), tf.where(
                sos < 0, "truncated JPEG (its headers end before any scan data)",
                "truncated JPEG (no end-of-image marker FF D9 after its scan data)")))
        return reason, _exif_orientation(rows, app1), height, width

    jpeg_pre, orientation, jpeg_h, jpeg_w = _on_rows(
        is_jpeg & ~plain, jpeg_rows, encoded, ("", 1, -1, -1))
    jpeg_h, jpeg_w = tf.where(plain, plain_h, jpeg_h), tf.where(plain, plain_w, jpeg_w)

    # PNG: IHDR (unsigned 32-bit: read in int64, as int32 would wrap), IEND.
    png_only = tf.strings.substr(encoded, 0 * length, tf.where(is_png, length, 0))
    png_header = tf.cast(_read(encoded, 16, 8), tf.int64)
    png_w = _be16(png_header, 0) * 65536 + _be16(png_header, 2)
    png_h = _be16(png_header, 4) * 65536 + _be16(png_header, 6)

    def png_damaged(name, value):
        return tf.strings.join([f"damaged PNG (its header gives a {name} of ", _text(value),
                                f": more than the {_PNG_MAX_SIDE} the PNG specification "
                                "allows)"])

    png_pre = tf.where(png_w > _PNG_MAX_SIDE, png_damaged("width", png_w), tf.where(
        png_h > _PNG_MAX_SIDE, png_damaged("height", png_h), tf.where(
            _contains(png_only, b"IEND"), "", "truncated PNG (no IEND chunk)")))
    png_damaged_header = (png_w > _PNG_MAX_SIDE) | (png_h > _PNG_MAX_SIDE)
    png_w = tf.where(png_damaged_header, minus, tf.cast(png_w, tf.int32))
    png_h = tf.where(png_damaged_header, minus, tf.cast(png_h, tf.int32))

    # GIF: every block; the first frame's layout and transparency.
    (frames, tallest, widest, top, left, first_h, first_w, complete, transparent, gce,
     table) = tf.unstack(_on_rows(is_gif, _gif_walk, encoded, (_GIF_DEFAULTS,))[0], axis=1)
    complete = complete > 0
    screen = _read(encoded, 6, 4)
    screen_w, screen_h = _le16(screen, 0), _le16(screen, 2)
    gif_h, gif_w = tf.maximum(screen_h, tallest), tf.maximum(screen_w, widest)
    gif_pre = tf.where(tf.equal(frames, 0), "GIF without an image",
                       tf.where(complete, "", "truncated GIF (its blocks end early)"))
    gif_post = tf.where(
        (top > 0) | (left > 0) | (first_h < screen_h) | (first_w < screen_w),
        tf.strings.join(["GIF whose first frame (", _text(first_h), "x", _text(first_w),
                         " at row ", _text(top), ", column ", _text(left),
                         ") does not fill its ", _text(screen_h), "x", _text(screen_w),
                         " screen (height x width)"]),
        tf.where((tallest > first_h) | (widest > first_w), tf.strings.join([
            "GIF whose frames reach ", _text(tallest), "x", _text(widest), ", beyond its "
            "first frame of ", _text(first_h), "x", _text(first_w), " (height x width)"]), ""))

    # BMP: the header, and the length it implies.
    bmp_pre, bmp_h, bmp_w, bmp_post = _bmp_batch_checks(encoded, length)

    def by_format(jpeg, png, gif, bmp_, other):
        return tf.where(is_jpeg, jpeg, tf.where(is_png, png, tf.where(is_gif, gif, tf.where(
            is_bmp, bmp_, other))))

    height = by_format(jpeg_h, png_h, gif_h, bmp_h, minus)
    width = by_format(jpeg_w, png_w, gif_w, bmp_w, minus)
    pre = by_format(jpeg_pre, png_pre, gif_pre, bmp_pre, "")
    jpeg_post = tf.where(tf.maximum(jpeg_h, jpeg_w) > _MAX_JPEG_SIDE, tf.strings.join([
        "JPEG of ", _text(jpeg_h), "x", _text(jpeg_w), " (height x width): more than the "
        f"{_MAX_JPEG_SIDE} pixels a side libjpeg decodes"]), "")
    post = by_format(jpeg_post, "", gif_post, bmp_post, "")
    size_problem = size_problem_of(height, width, max_pixels)
    # TF's GIF decoder can hold every frame at once ([frames, height, width, 3]): a GIF's
    # pixels are its frame count times its canvas, however small each frame is.
    gif_total = tf.cast(frames, tf.int64) * _area(gif_h, gif_w)
    gif_problem = tf.where(
        is_gif & (frames > 1) & (gif_total > max_pixels) & tf.equal(size_problem, ""),
        tf.strings.join([_text(frames), " GIF frames of ", _text(gif_h), "x", _text(gif_w),
                         " (height x width), ", _text(gif_total),
                         f" pixels decoded: more than the {max_pixels} allowed"]), "")
    size_problem = tf.where(tf.equal(gif_problem, ""), size_problem, gif_problem)
    structure = tf.where(supported & tf.not_equal(pre, ""), pre,
                         tf.where(supported & tf.equal(size_problem, ""), post, ""))
    problem = tf.where(
        tf.equal(length, 0), "empty (0 bytes)",
        tf.where(~supported, tf.strings.join([
            "not a JPEG, PNG, GIF or BMP image (", _text(length), " bytes)"]),
            tf.where(tf.not_equal(structure, ""), structure, size_problem)))
    edit = is_gif & (transparent >= 0)
    rows = tf.cast(tf.where(edit), tf.int32)
    pick = lambda t: tf.gather_nd(t, rows)  # noqa: E731
    prepared = tf.tensor_scatter_nd_update(encoded, rows, _gif_white_transparency(
        pick(encoded), pick(transparent), pick(gce), pick(table), pick(edit)))
    return Inspection(prepared, problem, structure, orientation, height, width)


@functools.lru_cache(maxsize=None)
def _compiled_inspect(max_pixels: int):
    """`inspect_batch` as a tf.function, for eager callers."""
    return tf.function(lambda encoded: tuple(inspect_batch(encoded, max_pixels=max_pixels)),
                       input_signature=[tf.TensorSpec([None], tf.string)])


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
    """(height, width) int64 from the headers (`inspect_batch`; for a GIF, its canvas:
    the larger of its logical screen and its tallest and widest frames)."""
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


def _png_rgb(encoded):
    """PNG bytes -> uint8 [H, W, 3] by the rule (alpha over white)."""
    depth, colour = tf.unstack(_read(tf.reshape(encoded, [1]), 24, 2)[0])  # IHDR

    def palette():
        # Asked for 4 channels, TF's decoder gives a palette PNG without tRNS the alpha
        # 2^depth - 1 at 1, 2 and 4 bits; asked for its own, 3 channels, or 4 (with the
        # tRNS alphas) when it has a tRNS chunk.
        image = tf.io.decode_png(encoded, channels=0)
        return tf.cond(tf.equal(tf.shape(image)[2], 4), lambda: _composite(image),
                       lambda: image[..., :3])

    def other():
        rgba = tf.io.decode_png(encoded, channels=4)

        def opaque():
            # 1-, 2- and 4-bit greyscale: the alpha TF fills in without a tRNS chunk is
            # 2^depth - 1; with one it is 0 or 255.
            alpha = rgba[..., 3:]
            filler = tf.cast(tf.bitwise.left_shift(1, depth) - 1, tf.uint8)
            return tf.concat([rgba[..., :3], tf.where(tf.equal(alpha, filler),
                                                      tf.constant(255, tf.uint8), alpha)], -1)

        return _composite(tf.cond(depth < 8, opaque, lambda: rgba))

    return tf.cond(tf.equal(colour, 3), palette, other)


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
        return tf.cond(is_png, lambda: _png_rgb(encoded),
                       lambda: tf.io.decode_image(encoded, channels=3, expand_animations=False))

    image = tf.cond(tf.image.is_jpeg(encoded), jpeg, other)
    image.set_shape([None, None, 3])
    return image
