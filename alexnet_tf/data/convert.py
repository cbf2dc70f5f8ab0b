"""ImageNet image files -> sharded TFRecords (the logic behind tools/build_tfrecords.py).

    python tools/build_tfrecords.py --data_dir=DATA_DIR --output_dir=OUT \\
        [--val_labels_file=imagenet_2012_validation_synset_labels.txt] \\
        [--synsets_file=LOC_synset_mapping.txt]

Input: ``DATA_DIR/<split>/<wnid>/<image>`` or a flat validation folder with a labels
file (`alexnet_tf.data.imagenet.list_split`). Output, in ``OUT``, which may be
``DATA_DIR`` itself (the readers list only ``DATA_DIR/<split>/``) but not a folder at or
below ``DATA_DIR/<split>/`` or ``DATA_DIR/train/`` (`output_dir_problem`):

* ``<split>-00000-of-01024`` ...: TFRecord shards of `tfrecords.make_example` records
  (labels stored 1-based, ``label + LABEL_OFFSET``, as the Inception/TPU converters do).
  Each split's file list is shuffled with ``seed`` before it is cut into contiguous
  shards, so every shard mixes classes; the shard contents depend only on (file list,
  seed, shard count), never on the number of workers. Shards are written by worker
  processes, one whole shard each, to ``<name>.tmp`` and renamed when complete.
* ``<split>-skipped.json``: ``{"split", "num_skipped", "skipped": [{"path", "reason"}]}``,
  paths relative to DATA_DIR: the files that could not be decoded (always written).
* ``metadata.json``, written last (its presence means the run completed)::

    format               "alexnet_tf.imagenet_tfrecords"
    converter_version    version of this converter (CONVERTER_VERSION)
    label_offset         stored label = 0-based class index + label_offset (1)
    resize_shorter_side  the stored images' shorter side, or 0 = original sizes
    jpeg_quality         quality of re-encoded images
    seed                 the shuffling seed
    num_classes          len(classes)
    classes              [{"index": 0, "wnid": "n01440764", "name": "tench, Tinca tinca"}, ...]
                         in label order (sorted wnids); name "" without --synsets_file
    splits               {"train": {...}, "val": {...}}, each with
        image_format     "jpeg" (image/encoded holds a JPEG file) or "raw" (the decoded
                         uint8 pixels of the image's central square, image/format b"RAW")
        image_shape      raw only: [S, S, 3], S = resize_shorter_side
        num_records      records written (= images listed - num_skipped)
        num_skipped      files skipped (see skipped_report)
        num_converted    images re-encoded because of their format or colour mode
        num_resized      images re-encoded to the shorter side resize_shorter_side
        num_shards       shard count
        shard_choice     "given" (a count passed in) or "automatic" (see below)
        estimated_bytes  automatic only: the split's records as estimated before writing
        target_shard_bytes  automatic only: the size aimed at per shard (128 MiB)
        file_pattern     glob of the shards relative to OUT, e.g. "train-?????-of-01024"
        skipped_report   "train-skipped.json"
        shards           [{"file", "num_records", "num_bytes"}, ...] in shard order: the
                         readers check the files against it (a shard changed since is refused)

Shard counts. A split whose count is not given gets one from its size: the fewest shards
of at most ``TARGET_SHARD_BYTES`` (128 MiB: TensorFlow's input-pipeline guidance asks
for files of 100 MB or more; and a split of a few images gets one shard, not 1024 mostly
empty ones) by an estimate made
before anything is written, ``ceil(images x bytes per record / 128 MiB)``, at least 1 and
never more than the images (`auto_num_shards`). The bytes per record are measured on a
seeded sample of up to ``SIZE_SAMPLE`` (64) of the split's images converted exactly as
they will be stored (`normalize_image`: resized, re-encoded at ``jpeg_quality``), plus
the record's own bytes (`record_bytes`; an image the sample finds undecodable counts 0,
as it will be skipped). ImageNet's 1,281,167 training images come to about 374 shards
at the default shorter side 256 and quality 95 (about 39.2 kB per record: real colour
photos stored so measure 3.56 bits per pixel on average, at 341x256, the stored size of
the common 500x375 photo), its 50,000 validation images to 15, and the training images
kept at their original sizes (about 115 kB each) to about 1,100, close to the 1024 of
the Inception/TPU converters, which store the originals.

Readers (`alexnet_tf.data.sources.TFRecordSource`) read exactly the shards the metadata
names. ``overwrite=True`` first removes, for each split it rewrites, the files named
like its own shards (``<split>-NNNNN-of-MMMMM`` of any M, and their ``.tmp``) and the
old ``metadata.json`` (kept in memory: the entries of splits not rewritten are carried
into the new one when the classes are the same); nothing else is deleted, so a
rewrite never leaves shards of a previous conversion and a killed one leaves no
metadata.

Every split takes the class order of the first split converted (``splits[0]``, normally
train): label ``i`` is the same class in every split, and a class that a later split
adds is refused by name.

Every image is decoded with Pillow before it is stored:
* Files the one decode rule refuses are skipped and reported with its reason, never
  fatal: `alexnet_tf.data.decode.bytes_problem`, the rule's checks in Python, string
  for string those of the image-folder pipeline and the export (zero bytes, formats
  other than JPEG/PNG/GIF/BMP by their magic numbers whatever the file's name,
  truncated files, images too large, the GIF and BMP variants TF decodes otherwise
  than Pillow). Files that pass them but that Pillow cannot decode are skipped too.
* Anything that is not a baseline RGB JPEG is converted to one: CMYK JPEGs (22 in the
  ImageNet training set), greyscale images, a PNG named .JPEG (one in the training set),
  palette/16-bit images, GIFs and BMPs, by the one decode rule of
  `alexnet_tf.data.decode` (`pillow_rgb`, Pillow's implementation of it, tested
  pixel for pixel against the graph code): images with alpha are composited over white
  (transparent regions then look as a viewer shows them; dropping alpha would expose
  whatever colour the transparent pixels happen to hold).
* An RGB JPEG that needs no resize is stored with its original bytes: no generation loss.
* ``resize_shorter_side=S`` (default 256) scales every image so its shorter side is S,
  smaller images up-sampled too: the paper "rescaled the image such that the shorter
  side was of length 256" (Sec. 2) for every image. The aspect ratio is kept (the
  central 256x256 crop is left to the input pipeline, which takes it directly from the
  stored JPEG). The filter is Pillow's BILINEAR, which widens its triangle kernel by the
  down-scaling factor, i.e. it is antialiased (made once, so quality comes first). The
  output size is `preprocess.resize_shorter_side`'s; its on-the-fly kernel is the same
  when an image shrinks by more than 2x and plain bilinear otherwise (its docstring
  says why), so records stored at 256 are a little smoother than an on-the-fly resize
  of a typical 500x375 photo. ``S=0`` keeps the original sizes.
* ``image_format="raw"`` stores, instead of a JPEG, the decoded pixels of the resized
  image's central S x S square (the paper's fixed-resolution image, Sec. 2: "we
  down-sampled the images to a fixed resolution of 256 x 256"), uint8, row-major RGB:
  S * S * 3 bytes, 196,608 at S = 256, about 5x a JPEG stored at shorter side 256 at
  quality 95 (39.2 kB per record above): ImageNet's 1,281,167 training images take
  about 252 GB instead of about 50 GB. No decoding, and no generation loss; the
  central square is all a paper-recipe pipeline ever crops from (its 227 crops lie in
  it), but not all the modern random-resized crop would see of a non-square image.
* EXIF orientation is applied (the rule's: as viewers show the image, as the pipeline
  and the export decode it): a JPEG with orientation 2-8 is re-encoded upright. Metadata
  (EXIF, ICC profiles) is not copied into re-encoded images.
* Images of more than ``max_pixels`` (40 million, the export's default) pixels, GIFs
  by all their frames, are skipped before decoding (the rule's size check).
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import multiprocessing
import os
import random
import re
import signal
import sys
import time
from typing import Mapping, Sequence

import numpy as np
from absl import logging
from PIL import Image
from tqdm import tqdm

from alexnet_tf.cli import tf_logs
from alexnet_tf.data import decode, imagenet
from alexnet_tf.errors import DataError, ExistsError, NotFoundError
from alexnet_tf.export.limits import DEFAULT_MAX_PIXELS

__all__ = [
    "CONVERTER_VERSION",
    "METADATA_NAME",
    "EncodedImage",
    "SIZE_SAMPLE",
    "SkipImage",
    "TARGET_SHARD_BYTES",
    "auto_num_shards",
    "build_tfrecords",
    "estimate_record_bytes",
    "normalize_image",
    "output_dir_problem",
    "record_bytes",
    "shard_name",
    "shorter_side_size",
    "splits_problem",
    "summary_line",
]

CONVERTER_VERSION = "1.0"
METADATA_NAME = "metadata.json"
FORMAT = "alexnet_tf.imagenet_tfrecords"
# A split's shard count when none is given: the fewest shards of at most this many
# bytes of records, by an estimate from a sample of the split (`auto_num_shards`).
TARGET_SHARD_BYTES = 128 * 1024 * 1024
# The default worker count's cap: measured, 300 demo images took 3.2 s in this process
# and 12.9 s over 2 workers, each worker's start (spawn, import TensorFlow) ~5 s.
IMAGES_PER_WORKER = 1000
SIZE_SAMPLE = 64  # images converted to estimate a split's bytes per record


class SkipImage(Exception):
    """A file that cannot be stored as an image; the message is the reason."""


# How each image is stored (``image_format``): "jpeg", an RGB JPEG file; "raw", the
# decoded uint8 pixels of the central square of side resize_shorter_side, row-major
# [S, S, 3] RGB, nothing else (the paper's fixed-resolution 256x256 image, Sec. 2; the
# input pipeline crops it with no decoding).
IMAGE_FORMATS = ("jpeg", "raw")
# image/format of a raw record (`tfrecords.make_example`'s ``image_format``).
RAW_FORMAT_NAME = "RAW"


@dataclasses.dataclass(frozen=True)
class EncodedImage:
    data: bytes  # RGB JPEG bytes, or a raw image's uint8 pixels (image_format="raw")
    height: int
    width: int
    converted: str = ""  # what was converted, e.g. "CMYK -> RGB"; "" if nothing
    resized: bool = False


def raw_image_bytes(side: int) -> int:
    """The bytes of one raw image of ``side`` x ``side`` RGB uint8 pixels."""
    return side * side * 3


def shorter_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(height, width) with the shorter side ``size``: the arithmetic of
    `preprocess.resize_shorter_side` (float32, round half to even), so both agree."""
    if min(height, width) == size:
        return height, width
    scale = np.float32(size) / np.float32(min(height, width))
    new_h = max(size, int(np.round(np.float32(height) * scale)))
    new_w = max(size, int(np.round(np.float32(width) * scale)))
    return new_h, new_w


def normalize_image(data: bytes, *, resize_shorter_side: int = 0,
                    jpeg_quality: int = 95, max_pixels: int = DEFAULT_MAX_PIXELS,
                    image_format: str = "jpeg") -> EncodedImage:
    """The bytes to store for one image file: an RGB JPEG (see the module docstring),
    or with ``image_format="raw"`` the uint8 pixels of its central
    ``resize_shorter_side`` square (after the same resize; the square's offsets are
    `preprocess.central_crop`'s), ``resize_shorter_side`` ** 2 * 3 bytes.

    The pixels follow the one decode rule (`alexnet_tf.data.decode.pillow_rgb`, Pillow's
    side of it: alpha over white, 16-bit to its high byte, EXIF orientation applied), so
    that a converted record decodes to what the image-folder pipeline and the export
    decode from the original file, up to the JPEG re-encoding. Raises `SkipImage` with
    the rule's reason (`decode.bytes_problem`) when the rule refuses ``data``, and with
    Pillow's error when Pillow cannot decode it.
    """
    # The rule's checks first, in Python: what every other path refuses is refused here
    # with the same reason (formats by magic number, truncation, sizes, the layouts TF
    # and Pillow decode differently), before Pillow, which would read more formats.
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}.")
    if image_format == "raw" and resize_shorter_side < 1:
        raise ValueError(f"image_format='raw' stores the central square of side "
                         f"resize_shorter_side, which must be >= 1, got {resize_shorter_side}.")
    reason = decode.bytes_problem(data, max_pixels=max_pixels)
    if reason:
        raise SkipImage(reason)
    try:
        with Image.open(io.BytesIO(data)) as image:
            source_format = image.format or "unknown"
            image.load()  # decodes every pixel: raises on truncated or corrupt data
            mode = image.mode
            orientation = decode.exif_orientation(data) if source_format == "JPEG" else 1
            changes = []
            if source_format != "JPEG" and image_format == "jpeg":
                changes.append(f"{source_format} -> JPEG")
            if mode != "RGB":
                changes.append(f"{mode} -> RGB")
            if orientation != 1:
                changes.append(f"EXIF orientation {orientation} applied")
            if changes or source_format != "JPEG":
                image = decode.pillow_rgb(image, data)
            resized = False
            if resize_shorter_side:
                new_h, new_w = shorter_side_size(image.height, image.width, resize_shorter_side)
                if (new_h, new_w) != (image.height, image.width):
                    image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
                    resized = True
            if image_format == "raw":
                side = resize_shorter_side
                top, left = (image.height - side) // 2, (image.width - side) // 2
                pixels = np.asarray(image, np.uint8)[top:top + side, left:left + side]
                return EncodedImage(np.ascontiguousarray(pixels).tobytes(), side, side,
                                    converted=", ".join(changes), resized=resized)
            if not changes and not resized:
                return EncodedImage(data, image.height, image.width)
            out = io.BytesIO()
            image.save(out, "JPEG", quality=jpeg_quality)
            return EncodedImage(out.getvalue(), image.height, image.width,
                                converted=", ".join(changes), resized=resized)
    except Image.UnidentifiedImageError as e:
        raise SkipImage(f"cannot identify an image format (the file starts with {data[:16]!r})") from e
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ... for bad files
        reason = str(e) or repr(e)
        raise SkipImage(f"cannot decode as an image: {type(e).__name__}: {reason}") from e


_SPLIT_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def splits_problem(splits: Sequence[str]) -> str:
    """Why ``splits`` cannot be converted, or "": at least one split, each named once,
    each a plain folder name of the data directory (letters, digits, '_', '-' and '.',
    not starting with '.'), which the readers also match literally in shard names."""
    splits = list(splits)
    if not splits:
        return "no split named; expected split folder names such as train,val"
    for split in splits:
        if not _SPLIT_NAME.fullmatch(split) or split.startswith("."):
            return (f"split name {split!r} is not a plain folder name of the data directory "
                    f"(letters, digits, '_', '-' and '.', not starting with '.'; no path "
                    f"separator or '..')")
    twice = sorted({split for split in splits if splits.count(split) > 1})
    if twice:
        return f"split {twice[0]!r} is named more than once; expected each split once"
    return ""


def output_dir_problem(data_dir: str, output_dir: str, splits: Sequence[str]) -> str:
    """Why ``output_dir`` cannot take the shards of ``data_dir``'s ``splits``, or "".

    Refused: ``output_dir`` at or below a folder the conversion reads,
    ``data_dir/<split>`` for each split and ``data_dir/train`` (whose class folders
    give the class order when the first split is another): there it would show up as a
    class folder of the data on the next listing. Allowed: anywhere else, ``data_dir``
    itself included (the shards and reports are files beside the split folders, and the
    readers list only ``data_dir/<split>/``; a non-empty ``data_dir`` needs ``overwrite``).
    Paths are compared after resolving symbolic links; nothing is read."""
    data = os.path.realpath(data_dir)
    out = os.path.realpath(output_dir)
    for split in dict.fromkeys([*splits, "train"]):
        folder = os.path.join(data, split)
        if os.path.commonpath([out, folder]) == folder:
            return (f"--output_dir {output_dir!r} is at or inside {folder!r}, a split folder of "
                    f"--data_dir {data_dir!r} that the conversion reads: the shards would be "
                    f"listed with its class folders and images; choose a folder outside "
                    f"{os.path.join(data_dir, '<split>')!r} (--data_dir itself is fine)")
    return ""


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}"


def auto_num_shards(num_images: int, bytes_per_record: float,
                    target_shard_bytes: int = TARGET_SHARD_BYTES) -> int:
    """The default shard count of a split: ``ceil(num_images * bytes_per_record /
    target_shard_bytes)``, at least 1 and at most ``num_images`` (no empty shard)."""
    if target_shard_bytes <= 0:
        raise DataError(f"target_shard_bytes must be > 0, got {target_shard_bytes}.")
    wanted = math.ceil(max(0.0, num_images * float(bytes_per_record)) / target_shard_bytes)
    return max(1, min(int(num_images), wanted))


def _varint_size(value: int) -> int:
    return max(1, (int(value).bit_length() + 6) // 7)


def _field_size(payload: int) -> int:
    """A length-delimited protobuf field (field number < 16) holding ``payload`` bytes."""
    return 1 + _varint_size(payload) + payload


def record_bytes(encoded_size: int, *, height: int, width: int, label: int, synset: str = "",
                 text: str = "", filename: str = "", image_format: str = "JPEG") -> int:
    """The bytes `tfrecords.make_example`'s record takes in a shard: the serialized
    ``tf.train.Example`` (computed by protobuf's wire rules, without TensorFlow) plus the
    TFRecord framing (a length and two CRCs, 16 bytes). ``label`` as stored (1-based)."""
    def bytes_feature(size):  # Feature{bytes_list: BytesList{value: [bytes]}}
        return _field_size(_field_size(size))

    def int64_feature(value):  # Feature{int64_list: Int64List{value: [v]}} (packed)
        return _field_size(_field_size(_varint_size(value)))

    features = {
        "image/encoded": bytes_feature(encoded_size),
        "image/format": bytes_feature(len(image_format.encode())),
        "image/filename": bytes_feature(len(filename.encode())),
        "image/height": int64_feature(height),
        "image/width": int64_feature(width),
        "image/colorspace": bytes_feature(3),
        "image/channels": int64_feature(3),
        "image/class/label": int64_feature(label),
        "image/class/synset": bytes_feature(len(synset.encode())),
        "image/class/text": bytes_feature(len(text.encode())),
    }
    # Features{feature: map<key, Feature>}: one entry {1: key, 2: Feature} per feature.
    entries = sum(_field_size(_field_size(len(key)) + _field_size(size))
                  for key, size in features.items())
    return _field_size(entries) + 16  # Example{features: Features} + TFRecord framing


def estimate_record_bytes(items: Sequence[tuple[str, int]], *, wnids: Sequence[str] = (),
                          names: Sequence[str] = (), resize_shorter_side: int = 0,
                          jpeg_quality: int = 95, sample_size: int = SIZE_SAMPLE,
                          seed: int = 0, label_offset: int = 1,
                          image_format: str = "jpeg") -> tuple[float, int]:
    """(mean bytes per record, images sampled) of a split's ``(path, 0-based label)``
    items: a seeded sample of up to ``sample_size`` images converted exactly as
    `_write_shard` stores them (`normalize_image`) and measured with `record_bytes`. A
    sampled file that cannot be read or decoded counts 0 bytes: it will be skipped."""
    if not items:
        return 0.0, 0
    chosen = sorted(random.Random(seed).sample(range(len(items)), min(sample_size, len(items))))
    total = 0
    for i in chosen:
        path, label = items[i]
        try:
            with open(path, "rb") as f:
                image = normalize_image(f.read(), resize_shorter_side=resize_shorter_side,
                                        jpeg_quality=jpeg_quality, image_format=image_format)
        except (OSError, SkipImage):
            continue
        total += record_bytes(
            len(image.data), height=image.height, width=image.width,
            label=label + label_offset,
            synset=wnids[label] if label < len(wnids) else "",
            text=names[label] if label < len(names) else "", filename=os.path.basename(path),
            image_format=_record_format_name(image_format))
    return total / len(chosen), len(chosen)


def _mib(num_bytes: float) -> str:
    value = num_bytes / (1024 * 1024)
    return f"{value:.0f} MiB" if value >= 10 else f"{value:.2g} MiB"


def _shard_bounds(num_items: int, num_shards: int) -> list[tuple[int, int]]:
    """Contiguous [start, end) ranges whose sizes differ by at most one."""
    return [(i * num_items // num_shards, (i + 1) * num_items // num_shards) for i in range(num_shards)]


@dataclasses.dataclass(frozen=True)
class _ShardTask:
    split: str
    index: int
    path: str  # final shard path
    items: tuple  # ((file path, 0-based label), ...)
    data_dir: str  # skipped files are reported relative to it
    wnids: tuple  # class index -> wnid
    names: tuple  # class index -> human-readable name ("" if unknown)
    resize_shorter_side: int
    jpeg_quality: int
    image_format: str = "jpeg"


def _record_format_name(image_format: str) -> str:
    """image/format of a record stored as ``image_format``: b"JPEG" or b"RAW"."""
    return RAW_FORMAT_NAME if image_format == "raw" else "JPEG"


def _start_worker(quiet: bool) -> None:
    """A worker's first step: TensorFlow's start-up logs silenced as in the parent (a
    spawned process starts without the parent's import filter), and Ctrl-C left to the
    parent, which stops the pool (one message instead of one traceback per worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if quiet:
        tf_logs.silence()


def _write_shard(task: _ShardTask) -> dict:
    """Writes one whole shard (in a worker process); returns its counts and skips."""
    import tensorflow as tf  # deferred: the parent needs no TF until a shard is written

    from alexnet_tf.data import tfrecords

    written, converted, resized, skipped = 0, 0, 0, []
    tmp = task.path + ".tmp"
    try:
        with tf.io.TFRecordWriter(tmp) as writer:
            for file_path, label in task.items:
                rel_path = os.path.relpath(file_path, task.data_dir)
                try:
                    with open(file_path, "rb") as f:
                        data = f.read()
                except OSError as e:
                    skipped.append({"path": rel_path, "reason": f"cannot read: {e}"})
                    continue
                try:
                    image = normalize_image(data, resize_shorter_side=task.resize_shorter_side,
                                            jpeg_quality=task.jpeg_quality,
                                            image_format=task.image_format)
                except SkipImage as e:
                    skipped.append({"path": rel_path, "reason": str(e)})
                    continue
                example = tfrecords.make_example(
                    image.data, label, synset=task.wnids[label], text=task.names[label],
                    height=image.height, width=image.width,
                    filename=os.path.basename(file_path), label_offset=tfrecords.LABEL_OFFSET,
                    image_format=_record_format_name(task.image_format))
                # deterministic=True: the features map serialises in key order, so the
                # same inputs give byte-identical shards in any process.
                writer.write(example.SerializeToString(deterministic=True))
                written += 1
                converted += bool(image.converted)
                resized += image.resized
        os.replace(tmp, task.path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)  # our own partial file; never anything else
        raise
    return {"split": task.split, "index": task.index, "num_images": len(task.items),
            "written": written, "converted": converted, "resized": resized, "skipped": skipped}


def _remove_previous_conversion(output_dir: str, splits: Sequence[str]) -> dict | None:
    """Deletes what an earlier conversion wrote for ``splits``: the files named exactly
    like this converter's shards of those splits (``<split>-NNNNN-of-MMMMM``, any M, and
    their ``.tmp``), and ``metadata.json`` (returned, parsed, for `_carry_over`; None
    when there was none or it is unreadable). Nothing else is touched."""
    previous = None
    metadata_path = os.path.join(output_dir, METADATA_NAME)
    if os.path.exists(metadata_path):
        try:
            with open(metadata_path, encoding="utf-8") as f:
                previous = json.load(f)
        except (OSError, ValueError):
            previous = None
        os.remove(metadata_path)  # until this conversion completes, no metadata: no reader
    patterns = [re.compile(re.escape(split) + r"-\d{5}-of-\d{5}(\.tmp)?") for split in splits]
    removed = sorted(name for name in os.listdir(output_dir)
                     if any(p.fullmatch(name) for p in patterns))
    for name in removed:
        os.remove(os.path.join(output_dir, name))
    if removed:
        logging.info("Removed %d shard file(s) of %s from an earlier conversion in %s (e.g. %s).",
                     len(removed), "+".join(splits), output_dir, removed[0])
    return previous


def _carry_over(previous: dict | None, metadata: dict, output_dir: str) -> None:
    """Keeps the previous metadata's entries of splits this conversion did not rewrite,
    when their shards are still there and the classes and label offset are the same."""
    if not previous or not isinstance(previous.get("splits"), dict):
        return
    same = (previous.get("classes") == metadata["classes"]
            and previous.get("label_offset") == metadata["label_offset"])
    for split, entry in previous["splits"].items():
        if split in metadata["splits"]:
            continue
        if same:
            metadata["splits"][split] = entry
        else:
            logging.warning("%s: the earlier conversion's split %r has other classes than this "
                            "one; it is no longer described by %s (convert it again).",
                            output_dir, split, METADATA_NAME)


def _atomic_write_json(path: str, value) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def _check_output_dir(output_dir: str, overwrite: bool) -> None:
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ExistsError(f"--output_dir {output_dir!r} exists and is not a directory.")
    if os.path.isdir(output_dir) and not overwrite:
        entries = sorted(os.listdir(output_dir))
        if entries:
            raise ExistsError(
                f"--output_dir {output_dir!r} is not empty ({len(entries)} entries, e.g. "
                f"{entries[:3]}); choose an empty or new directory, or pass --overwrite to write "
                "over this converter's files there (the converted splits' earlier shards and "
                "metadata.json are removed; other files are never deleted).")


def build_tfrecords(data_dir: str, output_dir: str, *, splits: Sequence[str] = ("train", "val"),
                    shards: Mapping[str, int | None] | None = None, resize_shorter_side: int = 256,
                    workers: int | None = None, val_labels_file: str | None = None,
                    val_meta_file: str | None = None, synsets_file: str | None = None,
                    seed: int = 0, jpeg_quality: int = 95, overwrite: bool = False,
                    progress: bool = True,
                    target_shard_bytes: int = TARGET_SHARD_BYTES,
                    image_format: str = "jpeg") -> dict:
    """Converts ``data_dir``'s splits to TFRecord shards in ``output_dir``; returns the
    metadata written to ``output_dir/metadata.json`` (keys in the module docstring).

    ``shards`` maps a split to its shard count; a split not in it (or mapped to None)
    gets the fewest shards of at most ``target_shard_bytes`` (128 MiB) by an estimate
    from a sample of its images (`auto_num_shards`, `estimate_record_bytes`; the module
    docstring has the figures). ``workers`` processes write whole shards each; 1 writes
    in this process. The default is one per CPU, but at most one per
    `IMAGES_PER_WORKER` images: a worker's start (a process importing TensorFlow) costs
    seconds, more than a few hundred images take to convert. Workers silence
    TensorFlow's start-up logs when this process did (`alexnet_tf.cli.tf_logs`).
    Everything is listed and checked before anything is written.

    ``image_format``: "jpeg" (default), or "raw": each image stored decoded, the uint8
    pixels of its central ``resize_shorter_side`` square (`normalize_image`), which the
    input pipeline crops with no decoding; ``resize_shorter_side`` must then be >= 1.
    ``splits``: distinct plain folder names of ``data_dir`` (`splits_problem`).
    ``output_dir``: anywhere but at or below a split folder the conversion reads
    (`output_dir_problem`); ``data_dir`` itself is fine (with ``overwrite``, as it is
    not empty).
    """
    given = {split: count for split, count in (shards or {}).items() if count is not None}
    default_workers = workers is None
    workers = workers or os.cpu_count() or 1
    splits = list(splits)
    problem = splits_problem(splits)
    if problem:
        raise DataError(f"splits {splits}: {problem}.")
    for split, count in given.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise DataError(f"The shard count of {split!r} must be an integer >= 1, got {count!r}.")
    if target_shard_bytes <= 0:
        raise DataError(f"target_shard_bytes must be > 0, got {target_shard_bytes}.")
    if resize_shorter_side < 0:
        raise DataError(f"resize_shorter_side must be >= 0 (0 keeps the original size), got {resize_shorter_side}.")
    if image_format not in IMAGE_FORMATS:
        raise DataError(f"image_format must be one of {', '.join(IMAGE_FORMATS)}, got "
                        f"{image_format!r}.")
    if image_format == "raw" and resize_shorter_side < 1:
        raise DataError(f"image_format 'raw' stores each image's central square of side "
                        f"resize_shorter_side, which must be >= 1 (256 is the paper's), got "
                        f"{resize_shorter_side}.")
    if not 1 <= jpeg_quality <= 100:
        raise DataError(f"jpeg_quality must be in 1..100, got {jpeg_quality}.")
    if workers < 1:
        raise DataError(f"workers must be >= 1, got {workers}.")
    if not os.path.isdir(data_dir):
        raise NotFoundError(f"--data_dir {data_dir!r} does not exist or is not a directory.")
    problem = output_dir_problem(data_dir, output_dir, splits)
    if problem:
        raise DataError(problem + ".")
    data_dir = os.path.abspath(data_dir)
    output_dir = os.path.abspath(output_dir)
    _check_output_dir(output_dir, overwrite)

    # List and check every split before writing anything; every split in the class
    # order of the first (its own folders, or DATA_DIR/train's for a flat split).
    listed = {splits[0]: imagenet.list_split(data_dir, splits[0], val_labels_file=val_labels_file,
                                             val_meta_file=val_meta_file)}
    class_order = listed[splits[0]][2]
    for split in splits[1:]:
        listed[split] = imagenet.list_split(data_dir, split, val_labels_file=val_labels_file,
                                            val_meta_file=val_meta_file, class_names=class_order)
    names = {}
    if synsets_file:
        names = imagenet.read_synset_names(synsets_file)
        missing = [w for w in class_order if w not in names]
        if missing:
            raise DataError(
                f"--synsets_file {synsets_file!r} has no name for {len(missing)} of the "
                f"{len(class_order)} classes, e.g. {missing[:5]}; expected a wnid-to-name file "
                "covering them (LOC_synset_mapping.txt or imagenet_metadata.txt).")

    class_text = tuple(names.get(w, "") for w in class_order)
    # Shard counts, before anything is written: given, or from the split's estimated size.
    plans = {}
    for split in splits:
        paths, labels, _ = listed[split]
        plans[split] = _plan_shards(split, list(zip(paths, labels)), given.get(split),
                                    wnids=class_order, names=class_text,
                                    resize_shorter_side=resize_shorter_side,
                                    jpeg_quality=jpeg_quality, seed=seed,
                                    target_shard_bytes=target_shard_bytes,
                                    image_format=image_format)
        logging.info("%s", plans[split]["reason"])
    os.makedirs(output_dir, exist_ok=True)
    previous = _remove_previous_conversion(output_dir, splits)
    tasks = []
    for split in splits:
        paths, labels, _ = listed[split]
        order = list(range(len(paths)))
        random.Random(seed).shuffle(order)  # each shard mixes classes (as the TPU converter)
        num_shards = plans[split]["num_shards"]
        if num_shards > len(paths):
            logging.warning("%s: %d shards for %d images; some shards will be empty.",
                            split, num_shards, len(paths))
        for i, (start, end) in enumerate(_shard_bounds(len(paths), num_shards)):
            items = tuple((paths[j], labels[j]) for j in order[start:end])
            tasks.append(_ShardTask(split, i, os.path.join(output_dir, shard_name(split, i, num_shards)),
                                    items, data_dir, class_order, class_text,
                                    resize_shorter_side, jpeg_quality, image_format))

    total = sum(len(t.items) for t in tasks)
    if default_workers:
        workers = max(1, min(workers, total // IMAGES_PER_WORKER))
    logging.info("Converting %d images of %s into %d shards with %d worker(s) -> %s",
                 total, "+".join(splits), len(tasks), min(workers, len(tasks)), output_dir)
    bar = _progress_bar(total, "+".join(splits), progress)
    results = []
    start_time = time.time()
    try:
        if workers == 1 or len(tasks) == 1:
            for task in tasks:
                results.append(_write_shard(task))
                bar.update(len(task.items))
        else:
            # spawn, not fork: the parent has TensorFlow loaded, whose threads do not survive fork.
            context = multiprocessing.get_context("spawn")
            with context.Pool(min(workers, len(tasks)), initializer=_start_worker,
                              initargs=(tf_logs.is_silenced(),)) as pool:
                for result in pool.imap_unordered(_write_shard, tasks, chunksize=1):
                    results.append(result)
                    bar.update(result["num_images"])
    finally:
        bar.close()

    # Imported here, after the workers: the parent process stays free of TensorFlow
    # while it forks them.
    from alexnet_tf.data import tfrecords

    metadata = {
        "format": FORMAT,
        "converter_version": CONVERTER_VERSION,
        "label_offset": tfrecords.LABEL_OFFSET,
        "resize_shorter_side": resize_shorter_side,
        "jpeg_quality": jpeg_quality,
        "seed": seed,
        "num_classes": len(class_order),
        "classes": [{"index": i, "wnid": w, "name": names.get(w, "")} for i, w in enumerate(class_order)],
        "splits": {},
    }
    for split in splits:
        mine = sorted((r for r in results if r["split"] == split), key=lambda r: r["index"])
        skipped = sorted((s for r in mine for s in r["skipped"]), key=lambda s: s["path"])
        num_shards = plans[split]["num_shards"]
        report = f"{split}-skipped.json"
        _atomic_write_json(os.path.join(output_dir, report),
                           {"split": split, "num_skipped": len(skipped), "skipped": skipped})
        for s in skipped:
            logging.warning("Skipped %s: %s", s["path"], s["reason"])
        metadata["splits"][split] = {
            "image_format": image_format,
            **({"image_shape": [resize_shorter_side, resize_shorter_side, 3]}
               if image_format == "raw" else {}),
            "num_records": sum(r["written"] for r in mine),
            "num_skipped": len(skipped),
            "num_converted": sum(r["converted"] for r in mine),
            "num_resized": sum(r["resized"] for r in mine),
            "num_shards": num_shards,
            **{key: plans[split][key] for key in ("shard_choice", "estimated_bytes",
                                                  "target_shard_bytes") if key in plans[split]},
            "file_pattern": f"{split}-?????-of-{num_shards:05d}",
            "skipped_report": report,
            "shards": [{"file": shard_name(split, r["index"], num_shards),
                        "num_records": r["written"],
                        "num_bytes": os.path.getsize(os.path.join(
                            output_dir, shard_name(split, r["index"], num_shards)))}
                       for r in mine],
        }
    _carry_over(previous, metadata, output_dir)
    _atomic_write_json(os.path.join(output_dir, METADATA_NAME), metadata)
    # The summary itself is the caller's to show (tools/build_tfrecords.py prints it):
    # logged here too, it reached the terminal twice.
    logging.info("Wrote %s in %.1f s.", os.path.join(output_dir, METADATA_NAME),
                 time.time() - start_time)
    return metadata


def _plan_shards(split: str, items: list, given: int | None, *, wnids, names,
                 resize_shorter_side: int, jpeg_quality: int, seed: int,
                 target_shard_bytes: int, image_format: str = "jpeg") -> dict:
    """A split's shard count, how it was chosen, and a sentence saying so."""
    if given is not None:
        return {"num_shards": given, "shard_choice": "given",
                "reason": f"{split}: {given} shard(s) as given for {len(items)} images."}
    per_record, sampled = estimate_record_bytes(
        items, wnids=wnids, names=names, resize_shorter_side=resize_shorter_side,
        jpeg_quality=jpeg_quality, seed=seed, image_format=image_format)
    estimated = round(per_record * len(items))
    num_shards = auto_num_shards(len(items), per_record, target_shard_bytes)
    stored = (f"raw {resize_shorter_side}x{resize_shorter_side} pixels"
              if image_format == "raw" else
              f"shorter side {resize_shorter_side}, quality {jpeg_quality}"
              if resize_shorter_side else f"original sizes, quality {jpeg_quality}")
    return {"num_shards": num_shards, "shard_choice": "automatic",
            "estimated_bytes": estimated, "target_shard_bytes": target_shard_bytes,
            "reason": (f"{split}: {num_shards} shard(s), automatic: {len(items)} images x "
                       f"~{per_record / 1000:.1f} kB per record (measured on {sampled} of "
                       f"them stored as they will be: {stored}) = "
                       f"~{_mib(estimated)}, at most {_mib(target_shard_bytes)} per shard "
                       f"-> ~{_mib(estimated / num_shards)} per shard.")}


def summary_line(metadata: dict, output_dir: str = "") -> str:
    """One line: per split the records, shards (how many, how chosen, the mean size
    written), skipped and converted counts."""
    parts = []
    for split, s in metadata["splits"].items():
        num_shards = s["num_shards"]
        written = sum(shard.get("num_bytes", 0) for shard in s.get("shards", []))
        how = {"automatic": "automatic: at most "
                            f"{_mib(s.get('target_shard_bytes', TARGET_SHARD_BYTES))} each",
               "given": "as given"}.get(s.get("shard_choice"), "")
        sizes = f"~{_mib(written / num_shards)} per shard" if s.get("shards") else ""
        why = "; ".join(part for part in (how, sizes) if part)
        parts.append(f"{split}: {s['num_records']} records in {num_shards} "
                     f"shard{'s' if num_shards != 1 else ''}{f' ({why})' if why else ''}, "
                     f"{s['num_skipped']} skipped, {s['num_converted']} converted, "
                     f"{s['num_resized']} resized")
    where = f" -> {output_dir}" if output_dir else ""
    return "; ".join(parts) + f" ({metadata['num_classes']} classes){where}"


def _progress_bar(total: int, desc: str, enabled: bool):
    return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True,
                disable=not enabled)
