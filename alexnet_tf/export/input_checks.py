"""The serving signatures' checks of their inputs, before anything is decoded.

Bad input fails the whole request with an InvalidArgument error that names the image
and the problem (TF Serving answers HTTP 400 / gRPC INVALID_ARGUMENT), before anything is
decoded where the header tells: whatever the one decode rule refuses
(`alexnet_tf.data.decode.inspect`, with the export's ``max_pixels``: an empty string,
bytes that are not a JPEG/PNG/GIF/BMP, a truncated image, a GIF or BMP variant TF's
decoder reads otherwise than Pillow, an image or a GIF's frames together of more than
``max_pixels`` pixels), named by the rule's reason as training and the converter name
it; an image whose longer side is more than ``max_aspect_ratio`` times the shorter
(the sizes from the headers: `alexnet_tf.data.decode.header_size`); float pixels
outside [0, 255]. Greyscale and CMYK images pass: the decoder converts them to RGB.
Decoding then follows the one decode rule of `alexnet_tf.data.decode` (alpha over
white, EXIF orientation), as training does.

Every function here is graph code (``tf.function``-safe) and runs eagerly too; each check
passes its input through only after ``tf.debugging.Assert`` held, so that nothing after
it (decoding, the resize) runs on input that failed. The default limits are
`alexnet_tf.export.limits`'.
"""

from __future__ import annotations

import tensorflow as tf

from alexnet_tf.data import decode, preprocess
from alexnet_tf.export.limits import DEFAULT_MAX_ASPECT_RATIO, DEFAULT_MAX_PIXELS

__all__ = ["DEFAULT_MAX_ASPECT_RATIO", "DEFAULT_MAX_PIXELS", "check_bytes_shape",
           "check_encoded_image", "check_float_pixels", "check_pixels_shape",
           "check_pixels_size", "check_size", "checked", "header_size", "message"]


# ------------------------------------------------------------- the header bytes


def header_size(encoded):
    """(height, width) int64 of a JPEG/PNG/GIF/BMP, read from its header, not decoded:
    `alexnet_tf.data.decode.header_size` (for a GIF, its canvas: the larger of its
    logical screen and its tallest and widest frames, from every image descriptor)."""
    return decode.header_size(encoded)


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
    """``encoded``, passed through once the one decode rule accepts it (`decode.problem`
    with ``max_pixels``) and its longer side is at most ``max_aspect_ratio`` times the
    shorter; else an InvalidArgument error naming ``what`` (a scalar string, e.g.
    "image_bytes[3]") and the rule's reason, the one training, the statistics tool and
    the converter give for the same file. Checks run in order, each only after the
    previous passed, and none decodes the image."""
    length = tf.strings.length(encoded)
    # One inspection: its GIF and JPEG walks are the costly part of the checks.
    info = decode.inspect(encoded, max_pixels=max_pixels)

    def size_checked():
        # The rule has checked the pixel count; the aspect ratio is the export's own.
        with tf.control_dependencies([check_size(info.height, info.width, what, max_pixels,
                                                 max_aspect_ratio)]):
            return tf.identity(encoded)

    def problem_checked():
        # The rule's other reasons: the size ("no pixels (...)", "HxW (height x width),
        # N pixels: more than ...", "N GIF frames of ...").
        verb = tf.where(tf.strings.regex_full_match(info.problem, "no pixels.*"), " has ",
                        " is ")
        return checked(tf.equal(info.problem, ""), message(what, verb, info.problem),
                       size_checked)

    def truncation_checked():
        # The rule's structural reasons: a truncated JPEG/PNG/GIF/BMP, a GIF or BMP that
        # TF's decoder would read otherwise than Pillow, ...
        return checked(tf.equal(info.truncation, ""), message(
            what, " is a ", info.truncation, ", ", length, " bytes"), problem_checked)

    def format_checked():
        return checked(preprocess.is_supported_image(encoded), message(
            what, " is not a JPEG, PNG, GIF or BMP image (", length, " bytes)"),
            truncation_checked)

    return checked(length > 0, message(what, " is empty (0 bytes)"), format_checked)


def check_pixels_shape(images):
    """``images``, passed through once it is a batch of RGB images, [B, H, W, 3]; else
    an InvalidArgument error naming the input and its shape ("Shape of tensor images
    [76,76,3] is not compatible with expected shape [?,?,?,3]").

    TF Serving does not check a request's shape against the signature's, so one image
    sent without its batch dimension ([H, W, 3]) reaches the graph, whose ops believe
    the signature's static shape: ``tf.rank`` and the channel count are constants
    there, so an Assert on them could not fail. ``tf.ensure_shape`` checks the tensor
    that arrives, at run time, before anything reads its sizes (a [H, W, 3] image whose
    shorter side needs no resize otherwise reached the convolutions, which abort the
    process on a tensor of the wrong rank)."""
    return tf.ensure_shape(images, [None, None, None, 3])


def check_bytes_shape(image_bytes):
    """``image_bytes``, passed through once it is a vector of encoded images, [B]; else
    an InvalidArgument error naming the input and its shape ("Shape of tensor
    image_bytes [] is not compatible with expected shape [?]"), as `check_pixels_shape`
    and for the same reason."""
    return tf.ensure_shape(image_bytes, [None])


def check_pixels_size(images, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                      max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO):
    """``images`` (uint8 [B, H, W, 3]), passed through once its shape is that
    (`check_pixels_shape`) and H x W is within the limits; else an InvalidArgument
    error naming "images"."""
    images = check_pixels_shape(images)
    shape = tf.shape(images, out_type=tf.int64)
    with tf.control_dependencies([check_size(shape[1], shape[2], tf.constant("images"),
                                             max_pixels, max_aspect_ratio)]):
        return tf.identity(images)


def check_float_pixels(images):
    """``images`` (float32 [B, H, W, 3]), passed through once its shape is that
    (`check_pixels_shape`) and every value is finite and in [0, 255]; else an
    InvalidArgument error."""
    images = check_pixels_shape(images)
    ok = tf.logical_and(tf.reduce_all(tf.math.is_finite(images)),
                        tf.logical_and(tf.reduce_all(images >= 0.0),
                                       tf.reduce_all(images <= 255.0)))
    return checked(ok, tf.constant(
        "images must be finite RGB values on the 0..255 scale (float pixels of this "
        "signature are rounded to uint8 first)"), lambda: tf.identity(images))
