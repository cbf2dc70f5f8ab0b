"""The ImageNet TFRecord schema: one `tf.train.Example` per image.

The widely used schema of the Inception/TPU converters (``build_imagenet_data.py``,
``imagenet_to_gcs.py``) and of TF Model Garden's readers:

=========================  ======  ===============================================
key                        type    value
=========================  ======  ===============================================
image/encoded              bytes   the JPEG file's bytes, or with image/format b"RAW" the
                                   decoded image: height x width x 3 uint8, row-major RGB
image/format               bytes   b"JPEG" (b"RAW": tools/build_tfrecords.py --format=raw)
image/filename             bytes   the source file name, e.g. b"n01440764_10026.JPEG"
image/height, image/width  int64   pixels of the stored image
image/colorspace           bytes   b"RGB"
image/channels             int64   3
image/class/label          int64   the class index, 1..1000 in those converters
image/class/synset         bytes   the WordNet id, e.g. b"n01440764"
image/class/text           bytes   a human-readable name, e.g. b"tench, Tinca tinca"
=========================  ======  ===============================================

Label convention: those converters reserve 0 for "background" and write labels
1..1000 (the sorted wnids, from 1). This package trains on 0-based labels and
reads ``label - label_offset``; ``label_offset=1`` (the default,
``config.data.tfrecord_label_offset``) matches them, and `tools/build_tfrecords.py`
writes the same convention so its files are readable by other tools.
"""

from __future__ import annotations

import tensorflow as tf

LABEL_OFFSET = 1  # labels on disk are 1..N, as in the Inception/TPU converters


def _bytes(value: bytes):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64(value: int):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def make_example(encoded: bytes, label: int, *, synset: str = "", text: str = "",
                 height: int = 0, width: int = 0, filename: str = "",
                 image_format: str = "JPEG", label_offset: int = LABEL_OFFSET) -> tf.train.Example:
    """One record; ``label`` is 0-based and is stored as ``label + label_offset``."""
    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": _bytes(encoded),
        "image/format": _bytes(image_format.encode()),
        "image/filename": _bytes(filename.encode()),
        "image/height": _int64(height),
        "image/width": _int64(width),
        "image/colorspace": _bytes(b"RGB"),
        "image/channels": _int64(3),
        "image/class/label": _int64(label + label_offset),
        "image/class/synset": _bytes(synset.encode()),
        "image/class/text": _bytes(text.encode()),
    }))


# A missing label parses as this large negative number; `parse` clamps it to -1 after
# the offset, and the pipeline counts the record as bad instead of training on a
# made-up class.
_MISSING_LABEL = -(1 << 30)

FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64, default_value=_MISSING_LABEL),
    "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
}


def parse(serialized, label_offset: int = LABEL_OFFSET):
    """(encoded bytes, 0-based int32 label, filename) of one serialized record.

    Only the keys training needs are parsed. A record without an image parses to
    empty bytes and one without a label to a negative label; neither raises here.
    """
    features = tf.io.parse_single_example(serialized, FEATURES)
    label = features["image/class/label"] - label_offset
    label = tf.cast(tf.maximum(label, -1), tf.int32)
    return features["image/encoded"], label, features["image/filename"]


# ------------------------------------------------------------------ raw records


def raw_problem(encoded, shape):
    """Why the bytes of a raw record (image/format b"RAW") are not an image of
    ``shape`` ((height, width, 3) uint8): a string tensor shaped as ``encoded`` (one
    record or a batch), "" where they are. The only check a raw record needs: its
    length."""
    expected = int(shape[0]) * int(shape[1]) * int(shape[2])
    length = tf.strings.length(encoded, unit="BYTE")
    return tf.where(
        tf.equal(length, expected), tf.constant(""),
        tf.strings.join([
            "a raw image of ", tf.strings.as_string(length), " bytes; expected ",
            str(expected), f" ({shape[0]}x{shape[1]}x{shape[2]} uint8, the split's "
            f"image_shape in metadata.json)"]))


def raw_pixels(encoded, shape):
    """The uint8 ``shape`` image a raw record holds (no decoding: its bytes reshaped).
    Bytes of another length (a bad record: `raw_problem` names it) give black pixels of
    that shape, so that a pipeline can carry the record until it drops it."""
    shape = [int(s) for s in shape]
    size = shape[0] * shape[1] * shape[2]
    whole = tf.equal(tf.strings.length(encoded, unit="BYTE"), size)
    return tf.reshape(tf.io.decode_raw(tf.where(whole, encoded, tf.constant(bytes(size))),
                                       tf.uint8), shape)
