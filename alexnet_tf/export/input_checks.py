"""The serving signatures' checks of their inputs, before anything is decoded.

Bad input fails the whole request with an InvalidArgument error that names the image
and the problem (TF Serving answers HTTP 400 / gRPC INVALID_ARGUMENT), before anything is
decoded where the header tells: an empty string, bytes that are not a JPEG/PNG/GIF/BMP,
a JPEG without its end-of-image marker or a PNG without IEND (truncated), an image of
more than ``max_pixels`` pixels or a longer side more than ``max_aspect_ratio`` times the
shorter (read from the JPEG header with ``tf.io.extract_jpeg_shape``, or from the
PNG/GIF/BMP header bytes), float pixels outside [0, 255]. Greyscale and CMYK images pass:
the decoder converts them to RGB.

Every function here is graph code (``tf.function``-safe) and runs eagerly too; each check
passes its input through only after ``tf.debugging.Assert`` held, so that nothing after
it (decoding, the resize) runs on input that failed. The default limits are
`alexnet_tf.export.limits`'.
"""

from __future__ import annotations

import tensorflow as tf

from alexnet_tf.data import preprocess
from alexnet_tf.export.limits import DEFAULT_MAX_ASPECT_RATIO, DEFAULT_MAX_PIXELS

__all__ = ["DEFAULT_MAX_ASPECT_RATIO", "DEFAULT_MAX_PIXELS", "check_encoded_image",
           "check_float_pixels", "check_pixels_size", "check_size", "checked",
           "header_size", "message"]


# ------------------------------------------------------------- the header bytes


def _header_bytes(encoded, count: int = 32):
    """The first ``count`` bytes as int64 [count], zero-padded past the end."""
    padded = tf.strings.join([encoded, tf.constant(b"\0" * count)])
    return tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 0, count), tf.uint8), tf.int64)


def _contains(encoded, pattern: bytes):
    """Whether ``pattern`` (with no zero byte) occurs anywhere in ``encoded``."""
    data = tf.io.decode_raw(tf.strings.join([encoded, tf.constant(b"\0" * len(pattern))]),
                            tf.uint8)
    windows = tf.size(data) - len(pattern) + 1
    match = tf.ones([windows], tf.bool)
    for i, byte in enumerate(pattern):
        match = tf.logical_and(match, tf.equal(data[i:i + windows], byte))
    return tf.reduce_any(match)


def _formats(encoded):
    """(is_jpeg, is_png, is_gif, is_bmp) by magic number, as `preprocess.is_supported_image`."""
    return (tf.image.is_jpeg(encoded),
            tf.equal(tf.strings.substr(encoded, 0, 4), b"\x89PNG"),
            tf.equal(tf.strings.substr(encoded, 0, 3), b"GIF"),
            tf.equal(tf.strings.substr(encoded, 0, 2), b"BM"))


def header_size(encoded):
    """(height, width) int64 of a JPEG/PNG/GIF/BMP, read from its header, not decoded.

    JPEG: ``tf.io.extract_jpeg_shape`` (the frame header); PNG: IHDR width and height,
    big-endian at bytes 16 and 20; GIF: the logical screen, little-endian 16-bit at 6
    and 8 (what TF's decoder outputs); BMP: little-endian at 18 and 22 (a negative
    height means top-down rows), 16-bit for the old 12-byte core header.
    """
    h = _header_bytes(encoded)

    def be32(i):
        return h[i] * 16777216 + h[i + 1] * 65536 + h[i + 2] * 256 + h[i + 3]

    def le16(i):
        return h[i] + h[i + 1] * 256

    def le32_signed(i):
        value = le16(i) + le16(i + 2) * 65536
        return tf.where(value >= 2 ** 31, value - 2 ** 32, value)

    is_jpeg, is_png, is_gif, _ = _formats(encoded)
    core_bmp = tf.equal(le32_signed(14), 12)
    bmp = (tf.where(core_bmp, le16(20), tf.abs(le32_signed(22))),
           tf.where(core_bmp, le16(18), le32_signed(18)))
    other = tf.stack([
        tf.where(is_png, be32(20), tf.where(is_gif, le16(8), bmp[0])),
        tf.where(is_png, be32(16), tf.where(is_gif, le16(6), bmp[1]))])

    def jpeg():
        return tf.io.extract_jpeg_shape(encoded, output_type=tf.int64)[:2]

    size = tf.cond(is_jpeg, jpeg, lambda: other)
    return size[0], size[1]


# -------------------------------------------------------------------- the checks


def message(*parts):
    """A scalar string tensor: the parts joined, numbers written in decimal."""
    strings = []
    for part in parts:
        if isinstance(part, str):
            strings.append(tf.constant(part))
        elif part.dtype == tf.string:
            strings.append(part)
        else:
            strings.append(tf.strings.as_string(part))
    return tf.strings.join(strings)


def checked(condition, text, then):
    """``then()``, computed only after ``condition`` held; else InvalidArgument(text)."""
    with tf.control_dependencies([tf.debugging.Assert(condition, [text])]):
        return then()


def check_size(height, width, what, max_pixels: int, max_aspect_ratio: float):
    """A no-op that runs after Asserts that height x width is within the limits:
    at least one pixel, at most ``max_pixels``, the longer side at most
    ``max_aspect_ratio`` times the shorter. ``what`` (a scalar string) names the image
    in the error."""
    height, width = tf.cast(height, tf.int64), tf.cast(width, tf.int64)
    longer, shorter = tf.maximum(height, width), tf.minimum(height, width)
    size = (what, " is ", height, "x", width, " (height x width)")
    checks = [
        (shorter >= 1, message(what, " has no pixels (", height, "x", width,
                               ", height x width)")),
        (height * width <= max_pixels,
         message(*size, ", ", height * width, " pixels: more than the ", str(max_pixels),
                 " this model accepts")),
        (tf.cast(longer, tf.float64) <= max_aspect_ratio * tf.cast(shorter, tf.float64),
         message(*size, ": its longer side is more than ", f"{max_aspect_ratio:g}",
                 " times its shorter side")),
    ]
    ops = []
    for condition, text in checks:
        # Chained: each Assert only after the previous, so the first failure is reported.
        with tf.control_dependencies(ops):
            ops = [tf.debugging.Assert(condition, [text])]
    with tf.control_dependencies(ops):
        return tf.no_op()


def check_encoded_image(encoded, what, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                        max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO):
    """``encoded``, passed through once it is known to be a complete JPEG/PNG/GIF/BMP
    within the size limits; else an InvalidArgument error naming ``what`` (a scalar
    string, e.g. "image_bytes[3]") and the problem. Checks run in order, each only after
    the previous passed, and none decodes the image."""
    length = tf.strings.length(encoded)
    is_jpeg, is_png, _, _ = _formats(encoded)

    def complete():
        return tf.cond(is_jpeg, lambda: _contains(encoded, b"\xff\xd9"),
                       lambda: tf.cond(is_png, lambda: _contains(encoded, b"IEND"),
                                       lambda: tf.constant(True)))

    def size_checked():
        height, width = header_size(encoded)
        with tf.control_dependencies([check_size(height, width, what, max_pixels,
                                                 max_aspect_ratio)]):
            return tf.identity(encoded)

    def truncation_checked():
        kind = tf.where(is_jpeg, "JPEG (no end-of-image marker FF D9)", "PNG (no IEND chunk)")
        return checked(complete(), message(what, " is a truncated ", kind, ", ", length,
                                           " bytes"), size_checked)

    def format_checked():
        return checked(preprocess.is_supported_image(encoded), message(
            what, " is not a JPEG, PNG, GIF or BMP image (", length, " bytes)"),
            truncation_checked)

    return checked(length > 0, message(what, " is empty (0 bytes)"), format_checked)


def check_pixels_size(images, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                      max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO):
    """``images`` (uint8 [B, H, W, 3]), passed through once H x W is within the limits;
    else an InvalidArgument error naming "images"."""
    shape = tf.shape(images, out_type=tf.int64)
    with tf.control_dependencies([check_size(shape[1], shape[2], tf.constant("images"),
                                             max_pixels, max_aspect_ratio)]):
        return tf.identity(images)


def check_float_pixels(images):
    """``images`` (float32 [B, H, W, 3]), passed through once every value is finite and
    in [0, 255]; else an InvalidArgument error."""
    ok = tf.logical_and(tf.reduce_all(tf.math.is_finite(images)),
                        tf.logical_and(tf.reduce_all(images >= 0.0),
                                       tf.reduce_all(images <= 255.0)))
    return checked(ok, tf.constant(
        "images must be finite RGB values on the 0..255 scale (float pixels of this "
        "signature are rounded to uint8 first)"), lambda: tf.identity(images))
