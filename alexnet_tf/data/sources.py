"""Where examples come from: one split of a dataset, as a `DataSource`.

Sources (``config.data.source``), one `DataSource` subclass each, registered in `SOURCES`:
* ``image_folder`` (`ImageFolderSource`): ``DATA_DIR/<split>/<class>/<image>``, class
  indices in sorted folder-name order (ImageNet's sorted wnids). A validation split may
  also be flat (``DATA_DIR/val/*.JPEG``) with ImageNet's label file
  (``data.val_labels_file``).
* ``tfrecord`` (`TFRecordSource`): ``DATA_DIR/<split>-*`` shards in the ImageNet schema
  (`alexnet_tf.data.tfrecords`), with the ``metadata.json`` that
  tools/build_tfrecords.py writes (split sizes and class names) when present.
* ``tfds`` (`TfdsSource`): a prepared TensorFlow Datasets image-classification builder,
  ``data.tfds_name`` (e.g. "imagenet2012") in ``data.data_dir`` (TFDS's data_dir;
  "" for TFDS's default), read with its images undecoded so that this package's
  own (fused) preprocessing decodes them; split sizes and class names come from the
  builder's info. Needs the optional ``tensorflow-datasets`` package.
* ``demo`` (`DemoSource`): the embedded procedurally generated set
  (`alexnet_tf.data.demo`), written as an image folder and read as one.

`load_split` builds the configured source from ``config.data`` and a split name. Its
users (`alexnet_tf.data.pipeline.make_dataset`, `alexnet_tf.analysis.retrieval`, the
training loop and evaluation) use only the `DataSource` interface, so a new source is one
subclass here, its entry in `SOURCES` and its name in `alexnet_tf.config.DATA_SOURCES`.

One class order for every split: label ``i`` means the TRAINING split's class ``i``
everywhere. ``load_split(data_config, split, class_names)`` (the training loop passes the
training split's names for the evaluation split; evaluation, retrieval and export use the
run's ``classes.json``) makes the source map its own classes onto ``class_names``: image
folders by folder name, TFRecords and TFDS by their stored class ids (remapping the stored
labels when the orders differ). A class of the split that ``class_names`` lacks is refused
by name; a training class the split lacks is fine (it has no examples). Without
``class_names``, a split other than ``data.train_split`` takes the training split's order
where the source can see it cheaply (image folders: the training split's class folders).

A TFRecord split reads exactly the shard files its ``metadata.json`` names
(``<split>-NNNNN-of-MMMMM`` for its ``num_shards``; record counts checked), or, without
metadata, a complete ``<split>-NNNNN-of-MMMMM`` set (all M present, no other M); any
other file is never read, a missing or extra shard is refused by name, and split names
are matched literally.

An image-folder split is read into memory as two arrays (paths and integer labels):
`DataSource.records` shuffles and shards these lists itself, which makes the data order
a pure function of (seed, epoch) and lets a resumed run skip to its position without
decoding anything. Record streams (TFRecords, TFDS) are ordered by their files and a
seeded shuffle buffer instead.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import os
import re
from typing import Any, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from alexnet_tf import config as config_lib
from alexnet_tf.data import tfrecords
from alexnet_tf.errors import DataError, MissingDependencyError, NotFoundError

TFRECORD_METADATA = "metadata.json"

_TFDS_FILE_ORDER = 2  # the `_shuffle_seed` stream of TFDS's file shuffle


def train_order(num_examples: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of a split's examples (or shard files) used for training epoch
    ``epoch``: int64 [num_examples], a pure function of (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(num_examples)


def _shuffle_seed(seed: int, epoch: int, stream: int = 1) -> int:
    """A shuffle seed drawn from (seed, epoch); ``stream`` separates independent uses."""
    return int(np.random.default_rng([seed, epoch, stream]).integers(1 << 62))


class DataSource(abc.ABC):
    """One split of a dataset: its examples, their integer labels, the class names.

    Attributes:
      class_names: one str per class index (label ``i`` is ``class_names[i]``), e.g.
        ImageNet's wnids.
      readable_names: human-readable class names in the same order, or None.
      image_shape: None when examples are encoded images; (height, width, 3) when they
        are raw records, that many uint8 pixels each (`alexnet_tf.data.tfrecords.
        raw_pixels`; tools/build_tfrecords.py --format=raw).

    Examples are encoded images (JPEG, PNG, GIF or BMP bytes), decoded later by
    `alexnet_tf.data.preprocess`, or raw pixels (``image_shape``). A source never decodes.
    """

    class_names: tuple[str, ...]
    readable_names: tuple[str, ...] | None
    image_shape: tuple[int, int, int] | None = None

    @classmethod
    @abc.abstractmethod
    def from_config(cls, data_config, split: str,
                    class_names: Sequence[str] | None = None) -> DataSource:
        """The split ``split`` (e.g. "train") of the source ``data_config`` describes.

        ``class_names``: the training split's class ids in label order. When given, the
        source's ``class_names`` are exactly these and its labels index them (its own
        classes mapped by id); a class of the split not among them is refused by name.

        Raises:
          ValueError, FileNotFoundError: naming the config key or path that is wrong.
        """

    @abc.abstractmethod
    def __len__(self) -> int:
        """The number of examples of the split (bad records included)."""

    @abc.abstractmethod
    def records(self, *, training: bool, seed: int = 0, epoch: int = 0, skip: int = 0,
                input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
        """One epoch of this pipeline's examples, before any decoding.

        Args:
          training: order by (seed, epoch); else the stored order.
          seed, epoch: the run's seed and the 0-based epoch.
          skip: examples of this pipeline's epoch already consumed (a resumed run).
          input_context: from ``distribute_datasets_from_function``; None: one pipeline.

        Elements ``(encoded, label, position, name)``: tf.string scalar, int32 scalar
        (0-based; -1 or out of range for a bad record, which the pipeline skips), int64
        scalar, tf.string scalar (a file path or record id, for messages). The order of
        operations (alexnet_tf.data.pipeline, steps 1-3):
          1. order: with ``training``, a pure function of (seed, epoch): a permutation of
             the examples (`train_order`), or of the shard files plus a shuffle buffer
             seeded by `_shuffle_seed`; without, the stored order, deterministic;
          2. shard: with ``input_context`` of several pipelines, this pipeline's part,
             disjoint from the others' and together covering the split: by files when
             there are at least as many as pipelines, else by records;
          3. skip: the first ``skip`` examples of this pipeline's epoch are dropped
             before anything is read or decoded (a resumed run).
        ``position`` is the example's index in the split (file lists) or in this
        pipeline's epoch stream (record streams), counting the skipped examples: a
        resumed run gives each example the position, and so the augmentation seed
        ``(seed, epoch * len(self) + position)``, it had in the uninterrupted epoch.
        """

    def stream_records(self, *, seed: int, start: int,
                       examples_per_pass: int) -> tf.data.Dataset:
        """An unbounded stream of training examples for a tf.data service cluster
        (``data.service_address``; `alexnet_tf.data.service`), before any decoding.

        The stream is a sequence of passes over the split, each in its own order drawn
        from (seed, pass) with ``tf.random.experimental.index_shuffle``, a permutation
        computed per index (no list to hold or ship). Its source is a ``Dataset.range``
        of split units (`STREAM_CHUNK` examples, or one shard file), which the
        dispatcher hands to whichever worker asks next (``distributed_epoch`` mode).

        Args:
          seed: the run's seed.
          start: the first example of the stream, counted over passes of
            ``examples_per_pass`` examples (a run resumed at step s starts at
            s x global batch).
          examples_per_pass: examples of each pass the trainer consumes (steps per
            epoch x global batch); the rest of a pass's permutation is left out, as the
            local pipeline drops its last partial batch.

        Elements ``(encoded, label, key, name)`` as `records` gives them, ``key`` (int64)
        in place of ``position``: unique per stream element, the second half of the
        example's augmentation seed ``(seed, key)``.

        Raises:
          DataError: this source cannot be split into stream units (TFDS).
        """
        raise DataError(
            f"{type(self).__name__} cannot be read through a tf.data service "
            f"(data.service_address): only image folders (image_folder, demo) and "
            f"TFRecords (tools/build_tfrecords.py) can; convert the split with "
            f"tools/build_tfrecords.py, or train without data.service_address.")

    @abc.abstractmethod
    def fingerprint(self, split_name: str) -> dict:
        """A JSON-serialisable dict that changes when the split's content listing does
        (files, labels, shards, sizes): retrieval's feature cache is reused only while
        it is the same. ``split_name`` is the name the split was loaded by."""

    def ordered_records(self, positions=None) -> tf.data.Dataset:
        """Every example (or those at ``positions``) in one fixed order, undecoded.

        Elements ``(location, encoded, label, name)``: int64 [2], tf.string scalar,
        int32 scalar, tf.string scalar. ``location`` says where the example is stored,
        for `read_encoded`: ``(-1, i)`` for the i-th example of the fixed order, or
        ``(shard, offset)`` for a record of shard file ``shard_files[shard]``.

        Args:
          positions: optional int sequence of indices into the fixed order (each in
            [0, len(self))); only those examples are given, in the fixed order (sorted,
            without repeats).

        Raises:
          ValueError: a position outside [0, len(self)).

        The default: `records` without training, located ``(-1, position)``.
        """
        ds = self.records(training=False).map(
            lambda encoded, label, position, name: (
                tf.stack([tf.constant(-1, tf.int64), position]), encoded, label, name))
        return ds if positions is None else _at_positions(ds, positions, len(self))

    def read_encoded(self, locations) -> list[bytes]:
        """The encoded images at ``locations`` (int64 [K, 2], as `ordered_records` gives
        them), in the same order; K byte strings.

        Raises:
          KeyError: a location the split does not hold.

        The default streams `ordered_records` once, up to the last location asked for.
        """
        locations = np.asarray(locations, np.int64).reshape(-1, 2)
        wanted = np.unique(locations, axis=0)
        if not len(wanted):
            return []
        table = tf.constant(wanted)
        ds = self.ordered_records().filter(
            lambda location, *rest: tf.reduce_any(tf.reduce_all(tf.equal(table, location), 1)))
        found = {tuple(location.numpy().tolist()): encoded.numpy()
                 for location, encoded, _, _ in ds.take(len(wanted))}
        return [_found(found, tuple(l), self) for l in locations.tolist()]

    @property
    def shard_files(self) -> tuple[str, ...]:
        """The files that a location ``(shard, offset)`` counts its shards in; empty when
        locations are ``(-1, i)``. Retrieval writes them into its cache's manifest."""
        return ()


def _found(found: dict, location: tuple, source: DataSource) -> bytes:
    if location not in found:
        raise KeyError(f"{type(source).__name__} of {len(source)} examples holds no example at "
                       f"location {location}; expected a location its ordered_records gives.")
    return found[location]


def _check_positions(positions, num_examples: int) -> np.ndarray:
    """Sorted unique int64 positions, each checked to be in [0, num_examples)."""
    positions = np.unique(np.asarray(positions, np.int64).reshape(-1))
    outside = positions[(positions < 0) | (positions >= num_examples)].tolist()
    if outside:
        raise ValueError(f"Positions {outside} are outside [0, {num_examples}) of a split of "
                         f"{num_examples} examples.")
    return positions


def _at_positions(ds: tf.data.Dataset, positions, num_examples: int) -> tf.data.Dataset:
    """The elements of ``ds`` at ``positions``; the stream stops after the last one."""
    positions = _check_positions(positions, num_examples)
    wanted = tf.constant(positions)
    return (ds.enumerate()
            .filter(lambda position, element: tf.reduce_any(tf.equal(wanted, position)))
            .take(len(positions))
            .map(lambda position, element: element))


def _shard_shuffle_skip(ds, buffer_size, shard_records, context, training, seed, epoch, skip):
    """The record-stream steps shared by TFRecords and TFDS: split records between
    pipelines when files are too few, shuffle in a buffer seeded by (seed, epoch), skip
    what a resumed run consumed; yields (position, record)."""
    if shard_records:
        ds = ds.shard(context.num_input_pipelines, context.input_pipeline_id)
    if training:
        ds = ds.shuffle(buffer_size, seed=_shuffle_seed(seed, epoch),
                        reshuffle_each_iteration=False)
    return ds.skip(skip).enumerate(start=skip)


# The encoded bytes of an example that could not be read: an image file that is missing,
# not readable or fails with an I/O error, or a record of a TFRecord shard that is cut
# short, corrupt (CRC) or cannot be opened. The pipeline skips and names it with
# `UNREADABLE_REASON` (`alexnet_tf.data.pipeline`) like any other bad record; no image
# starts with a NUL byte.
UNREADABLE = b"\x00alexnet_tf: could not be read\x00"
UNREADABLE_REASON = ("could not be read (missing, no permission, an I/O error, or a corrupt "
                     "or truncated TFRecord shard; --tf_logs shows the error from TensorFlow)")


def _read_files(indices, describe, *, first: int = 0, end: int | None = None):
    """``(encoded, label, position, name)`` for each of the consecutive int64 stream
    indices ``indices`` (from ``first``), the file ``describe(i)`` names read with
    ``tf.io.read_file``; a file that cannot be read gives `UNREADABLE` in place of its
    bytes, so that the pipeline names it (a read error would otherwise end the element
    unnamed). ``describe``: int64 scalar index -> (int32 label, int64 position, path),
    cheap (no reading); ``end`` (bounded streams): the index after the last, so that a
    file lost at the very end is named too.

    Errors are rare, so the common path only pays a scan over indices: reads run in
    parallel and fail as they do (dropped by ``ignore_errors``); the scan sees the gap
    in the indices and puts a marked element in each lost place, in order.
    """
    def read(i):
        label, position, path = describe(i)
        return i, tf.io.read_file(path), label, position, path

    ds = indices.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors(log_warning=True)  # TF's error: shown with --tf_logs
    if end is not None:
        # A last element (index ``end``, read from no file) closes the final gap.
        end = tf.cast(end, tf.int64)
        ds = ds.concatenate(tf.data.Dataset.from_tensors(
            (end, tf.constant(b""), tf.constant(0, tf.int32), tf.constant(0, tf.int64),
             tf.constant(b""))))
    lost_spec = (tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int64),
                 tf.TensorSpec([], tf.string))

    def lost(missing):
        return tf.map_fn(describe, missing, fn_output_signature=lost_spec)

    def none(missing):
        return (tf.zeros([0], tf.int32), tf.zeros([0], tf.int64), tf.zeros([0], tf.string))

    def fill(last, element):
        i, encoded, label, position, name = element
        missing = tf.range(last + 1, i)
        lost_labels, lost_positions, lost_names = tf.cond(
            i > last + 1, lambda: lost(missing), lambda: none(missing))
        keep = 1 if end is None else tf.cast(i < end, tf.int32)  # the closing one: no
        lost_encoded = tf.fill(tf.shape(missing), UNREADABLE)
        return i, tuple(
            tf.concat([lost_part, tf.expand_dims(value, 0)[:keep]], 0)
            for lost_part, value in ((lost_encoded, encoded), (lost_labels, label),
                                     (lost_positions, position), (lost_names, name)))

    return ds.scan(tf.cast(first, tf.int64) - 1, fill).unbatch()


def _read_listed(paths, labels, positions) -> tf.data.Dataset:
    """`_read_files` over files listed in Python: ``(encoded, label, position, path)``
    for ``paths[k]``, ``labels[k]``, ``positions[k]`` (NumPy arrays), in list order."""
    n = len(paths)
    paths = tf.constant(np.asarray(paths, str).reshape([n]))
    labels = tf.constant(np.asarray(labels, np.int32).reshape([n]))
    positions = tf.constant(np.asarray(positions, np.int64).reshape([n]))
    if n == 0:
        return tf.data.Dataset.from_tensor_slices((paths, labels, positions, paths))

    def describe(i):  # i < n, but for _read_files's closing index
        i = tf.minimum(i, n - 1)
        return tf.gather(labels, i), tf.gather(positions, i), tf.gather(paths, i)

    return _read_files(tf.data.Dataset.range(n), describe, end=n)


def _openable(files) -> list[bool]:
    """Whether this process can open each file (checked here, in Python, when a pipeline
    is built: TF has no op that tries an open without failing, and its reader retries a
    failed open for ever)."""
    return [os.path.isfile(f) and os.access(f, os.R_OK) for f in files]


def _read_shard(path, size, openable=True):
    """``(offset, record, lost)`` for each record of the TFRecord file ``path``: its
    records as they are read (``lost`` ""), then, when reading ends before ``size``
    records (a CRC mismatch or a cut-off file ends a TFRecord reader; so does a file
    that cannot be opened), one element per record lost, ``record`` b"" and ``lost``
    naming it ("<path> record <offset>"), so that the pipeline names each as a bad
    record instead of the shard's end passing unseen. ``size`` -1: not checked.

    A file that cannot be opened would fail every read again (TF's reader retries the
    open), and ignore_errors would spin on it: it is left out up front, and so all its
    records named. ``openable`` (bool scalar, `_openable` where the pipeline is built)
    covers a missing or unreadable file there; where the graph runs elsewhere (a tf.data
    service worker), a file missing on that machine is found by ``tf.io.matching_files``
    (its glob characters escaped), but one present without read permission is not.
    """
    present = tf.logical_and(openable, tf.size(tf.io.matching_files(
        tf.strings.regex_replace(path, r"([*?\[\\])", r"\\\1"))) > 0)
    files = tf.boolean_mask(tf.expand_dims(path, 0), tf.expand_dims(present, 0))
    ds = tf.data.TFRecordDataset(files, buffer_size=8 << 20).ignore_errors(log_warning=True)
    ds = ds.map(lambda record: (record, False)).concatenate(
        tf.data.Dataset.from_tensors((tf.constant(b""), True)))

    def count(read, element):
        record, is_end = element

        def ending():
            offsets = tf.range(read, tf.maximum(size, read))
            return (offsets, tf.fill(tf.shape(offsets), b""),
                    tf.strings.join([path, " record ", tf.strings.as_string(offsets)]))

        return read + 1, tf.cond(is_end, ending, lambda: (
            tf.expand_dims(read, 0), tf.expand_dims(record, 0), tf.constant([""])))

    return ds.scan(tf.constant(0, tf.int64), count).unbatch()


STREAM_CHUNK = 32  # image-folder examples per split unit of a service stream
_STREAM_END = 1 << 62  # "unbounded": the stream's range never ends in practice
_STREAM_SEEDS = 0x737472  # folded into the run's seed for the passes' permutations


def stream_pass_seed(seed: int, pass_index):
    """The [2] int64 seed of pass ``pass_index``'s permutation of a service stream."""
    return tf.random.experimental.stateless_fold_in(
        tf.constant([seed, _STREAM_SEEDS], tf.int64), tf.cast(pass_index, tf.int64))


def _stream_per_pass(examples_per_pass: int, num_examples: int) -> int:
    if not 0 < examples_per_pass <= num_examples:
        raise ValueError(f"examples_per_pass={examples_per_pass}: expected 1 to the split's "
                         f"{num_examples} examples")
    return examples_per_pass


def _stream_permuted(index, seed: int, per_pass: int, size: int):
    """Item ``index % per_pass`` of the permutation of [0, size) drawn for pass
    ``index // per_pass``; returns (pass, item) as int64 scalars."""
    pass_index, at = index // per_pass, index % per_pass
    return pass_index, tf.random.experimental.index_shuffle(
        at, stream_pass_seed(seed, pass_index), tf.constant(size - 1, tf.int64))


def _data_dir(data_config) -> str:
    """``config.data.data_dir``, checked to name a directory."""
    d = data_config
    if not d.data_dir:
        raise DataError(f"config.data.data_dir is empty; data.source={d.source!r} needs "
                         f"--config.data.data_dir=DIR.")
    if not os.path.isdir(d.data_dir):
        raise NotFoundError(f"config.data.data_dir {d.data_dir!r} is not a directory.")
    return d.data_dir


def first_class_difference(expected: Sequence[str], actual: Sequence[str]):
    """The first index at which two class orders differ, with both ids there ("(none)"
    past an order's end), or None when they are the same."""
    expected, actual = list(expected), list(actual)
    for i in range(max(len(expected), len(actual))):
        a = expected[i] if i < len(expected) else "(none)"
        b = actual[i] if i < len(actual) else "(none)"
        if a != b:
            return i, a, b
    return None


def map_classes(stored: Sequence[str | None], class_names: Sequence[str] | None, where: str,
                stored_readable: Sequence[str] | None = None):
    """The training order for a split whose records carry class indices into ``stored``.

    Args:
      stored: the split's own class ids by stored index (None: an index no record has).
      class_names: the training split's class ids, or None (the split is the training
        split: its own order, every index named).
      where: the split, for messages ("TFRecord split 'val' in DIR").
      stored_readable: readable names by stored index, or None.

    Returns:
      (class_names, readable_names, label_map): ``label_map[j]`` is the training index
      of stored index j (-1 for an index no record has), or None when the orders agree.

    Raises:
      ValueError: a stored class that ``class_names`` lacks, named with the split.
    """
    if class_names is None:
        readable = tuple(stored_readable) if stored_readable is not None else None
        return tuple(stored), readable, None
    class_names = tuple(class_names)
    index = {c: i for i, c in enumerate(class_names)}
    unknown = [(j, c) for j, c in enumerate(stored) if c is not None and c not in index]
    if unknown:
        j, c = unknown[0]
        raise DataError(
            f"{where} has class {c!r} (stored index {j}) that the training split does not "
            f"have{f' ({len(unknown)} such classes)' if len(unknown) > 1 else ''}; expected "
            f"only the {len(class_names)} training classes ({', '.join(class_names[:5])}"
            f"{', ...' if len(class_names) > 5 else ''}): an evaluation split may lack "
            f"training classes, never add its own.")
    label_map = tuple(-1 if c is None else index[c] for c in stored)
    readable_by_id = {}
    if stored_readable is not None:
        readable_by_id = {c: r for c, r in zip(stored, stored_readable) if c is not None}
    readable = (tuple(readable_by_id.get(c, c) for c in class_names)
                if stored_readable is not None else None)
    if label_map == tuple(range(len(class_names))):
        label_map = None
    return class_names, readable, label_map


def _remap(label, label_map):
    """``label_map[label]``, and -1 (a bad record) for a label outside it."""
    if label_map is None:
        return label
    table = tf.constant(label_map, tf.int32)
    inside = tf.logical_and(label >= 0, label < len(label_map))
    return tf.where(inside, tf.gather(table, tf.clip_by_value(label, 0, len(label_map) - 1)),
                    tf.constant(-1, tf.int32))


# The magic numbers of what `alexnet_tf.data.preprocess.is_supported_image` accepts.
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF", b"BM")


def _has_image_header(path: str) -> bool:
    """True when ``path`` starts like a JPEG, PNG, GIF or BMP file (4 bytes read)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head.startswith(_IMAGE_MAGIC)


def _check_every_class_has_an_image(root: str, paths, labels, class_names) -> None:
    """Refuses a class whose files all are empty or not JPEG/PNG/GIF/BMP: the pipeline
    would skip every one, and the class would vanish without a word. Cheap: per class,
    the headers of its files are read until one looks like an image (for real data, the
    first); nothing is decoded."""
    seen = set()
    for path, label in zip(paths, labels):
        if label in seen:
            continue
        if _has_image_header(path):
            seen.add(label)
    for label in sorted(set(int(l) for l in labels) - seen):
        files = [str(p) for p, l in zip(paths, labels) if l == label]
        raise DataError(
            f"Class {class_names[label]!r} of {root!r} has {len(files)} file(s), none of them "
            f"a non-empty JPEG, PNG, GIF or BMP (e.g. {files[0]!r}, "
            f"{os.path.getsize(files[0]) if os.path.exists(files[0]) else 'unreadable'} "
            f"bytes): every one would be skipped as a bad record and the class would vanish. "
            f"Expected at least one readable image per class; fix or remove the folder.")


# ---------------------------------------------------------------------- image folders

@dataclasses.dataclass(frozen=True)
class ImageFolderSource(DataSource):
    """One split of image files: paths, integer labels, class names (and readable names).

    Locations are ``(-1, i)``: file ``paths[i]``.
    """

    paths: np.ndarray  # str, shape [N]
    labels: np.ndarray  # int32, shape [N]
    class_names: tuple[str, ...]
    readable_names: tuple[str, ...] | None = None

    @classmethod
    def from_config(cls, data_config, split: str, class_names=None) -> ImageFolderSource:
        d = data_config
        data_dir = _data_dir(d)
        return cls.from_directory(
            data_dir, split, val_labels_file=d.val_labels_file, val_meta_file=d.val_meta_file,
            synsets_file=d.synsets_file,
            class_names=_training_class_folders(data_dir, d.train_split, split, class_names))

    @classmethod
    def from_directory(cls, data_dir: str, split: str, *, val_labels_file: str = "",
                       val_meta_file: str = "", synsets_file: str = "",
                       class_names: Sequence[str] | None = None) -> ImageFolderSource:
        """Lists ``data_dir/split/<class>/*`` (or a flat ImageNet validation folder,
        `alexnet_tf.data.imagenet.list_split`, whose errors it raises), in the class
        order ``class_names`` when given (a folder or label not among them is refused).

        Raises:
          ValueError: also for a class none of whose files is a non-empty JPEG, PNG, GIF
            or BMP (`_check_every_class_has_an_image`).
        """
        from alexnet_tf.data import imagenet

        root = os.path.join(data_dir, split)
        paths, labels, class_names = imagenet.list_split(
            data_dir, split, val_labels_file=val_labels_file or None,
            val_meta_file=val_meta_file or None, class_names=class_names)
        _check_every_class_has_an_image(root, paths, labels, class_names)
        readable = None
        if synsets_file:
            names = imagenet.read_synset_names(synsets_file)
            readable = tuple(names.get(c, c) for c in class_names)
        logging.info("%s: %d images in %d classes", root, len(paths), len(class_names))
        return cls(np.array(paths), np.array(labels, np.int32), tuple(class_names), readable)

    def __len__(self) -> int:
        return len(self.paths)

    def records(self, *, training, seed=0, epoch=0, skip=0, input_context=None):
        """A full permutation of the file list per (seed, epoch), sharded by files;
        ``position`` is the file's index in the split."""
        n = len(self)
        order = train_order(n, seed, epoch) if training else np.arange(n)
        if input_context is not None and input_context.num_input_pipelines > 1:
            order = order[input_context.input_pipeline_id::input_context.num_input_pipelines]
        order = order[skip:]
        return _read_listed(self.paths[order], self.labels[order], order)

    def stream_records(self, *, seed, start, examples_per_pass):
        """Split units of `STREAM_CHUNK` consecutive stream indices; each index i is
        pass ``i // examples_per_pass``'s item ``i % examples_per_pass`` of a permutation
        of the whole split (its first ``examples_per_pass`` items are used), and
        ``key = pass * len(self) + file index``: the augmentation seed the local
        pipeline gives that file in epoch ``pass``."""
        n = len(self)
        per_pass = _stream_per_pass(examples_per_pass, n)
        if start < 0:
            raise ValueError(f"start={start}: expected a non-negative stream index")
        paths = tf.constant(self.paths.astype(str))
        labels = tf.constant(self.labels.astype(np.int32))

        def describe(i):
            pass_index, index = _stream_permuted(i, seed, per_pass, n)
            return tf.gather(labels, index), pass_index * n + index, tf.gather(paths, index)

        def chunk(c):
            # One unit, read on its own: the dispatcher gives a worker units that are not
            # consecutive, and _read_files's gap check must see only one unit's indices.
            first, end = tf.maximum(c * STREAM_CHUNK, start), (c + 1) * STREAM_CHUNK
            return _read_files(tf.data.Dataset.range(first, end), describe, first=first,
                               end=end)

        ds = tf.data.Dataset.range(start // STREAM_CHUNK, _STREAM_END // STREAM_CHUNK)
        return ds.flat_map(chunk)

    def fingerprint(self, split_name: str) -> dict:
        """kind "files": a sha256 of every (absolute path, label) line."""
        digest = hashlib.sha256()
        for path, label in zip(self.paths, self.labels):
            digest.update(f"{os.path.abspath(str(path))}\t{int(label)}\n".encode())
        return {"kind": "files", "split": split_name, "num_examples": len(self),
                "sha256": digest.hexdigest()}

    def ordered_records(self, positions=None):
        """The files in listing order; only the files asked for are read."""
        n = len(self)
        index = np.arange(n) if positions is None else _check_positions(positions, n)
        return _read_listed(self.paths[index], self.labels[index], index).map(
            lambda encoded, label, position, path: (
                tf.stack([tf.constant(-1, tf.int64), position]), encoded, label, path))

    def read_encoded(self, locations) -> list[bytes]:
        result = []
        for shard, index in np.asarray(locations, np.int64).reshape(-1, 2).tolist():
            if shard != -1 or not 0 <= index < len(self):
                raise KeyError(f"An image folder of {len(self)} files holds no example at "
                               f"location {(shard, index)}; expected (-1, i), 0 <= i < "
                               f"{len(self)}.")
            with open(self.paths[index], "rb") as f:
                result.append(f.read())
        return result


def _training_class_folders(data_dir: str, train_split: str, split: str, class_names):
    """``class_names`` when given; else, for a split other than the training split, the
    training split's class folders (a listing, no file read) when it has them."""
    if class_names is not None:
        return tuple(class_names)
    if split != train_split and os.path.isdir(os.path.join(data_dir, train_split)):
        from alexnet_tf.data import imagenet

        return imagenet.read_class_folders(data_dir, train_split)
    return None


def default_demo_dir(data_config=None) -> str:
    """Where the demo set is cached: ``$XDG_CACHE_HOME/alexnet_tf/demo`` (~/.cache/...),
    in a folder per set of demo parameters (``seed0-train400-val100`` for the
    defaults, ``transfer-seed0-train20-val20`` for configs/demo_finetune.py's
    ``data.demo_set="transfer"``), so that runs with other parameters never replace a
    set another run is reading."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    root = os.path.join(cache, "alexnet_tf", "demo")
    if data_config is None:
        return root
    d = data_config
    # The shapes set keeps the folder names it had before the transfer set existed.
    prefix = "" if d.demo_set == "shapes" else f"{d.demo_set}-"
    return os.path.join(root, f"{prefix}seed{d.demo_seed}-train{d.demo_train_per_class}-"
                              f"val{d.demo_val_per_class}")


class DemoSource(ImageFolderSource):
    """The demo set (`alexnet_tf.data.demo`; ``data.demo_set``: the ten "shapes" classes
    or the six "transfer" classes): written (once, atomically) by
    `alexnet_tf.data.demo.ensure_demo_dataset` into ``data.data_dir`` (default
    `default_demo_dir`), then read as an image folder."""

    @classmethod
    def from_config(cls, data_config, split: str, class_names=None) -> DemoSource:
        from alexnet_tf.data import demo  # deferred: only the demo draws images

        d = data_config
        root = demo.ensure_demo_dataset(
            d.data_dir or default_demo_dir(d), seed=d.demo_seed,
            train_per_class=d.demo_train_per_class, val_per_class=d.demo_val_per_class,
            demo_set=d.demo_set)
        return cls.from_directory(
            str(root), split,
            class_names=_training_class_folders(str(root), d.train_split, split, class_names))


# ------------------------------------------------------------------------- TFRecords

_GLOB_CHARACTERS = set("*?[]")


def _check_split_name(split: str, where: str) -> None:
    """A split name is matched literally: no glob characters, no path separators."""
    bad = sorted(set(split) & (_GLOB_CHARACTERS | {"/", os.sep}))
    if not split or bad:
        raise DataError(f"Split name {split!r} ({where}) must be a plain name (e.g. 'train'), "
                         f"matched literally; it holds {bad or 'nothing'}.")


def _shard_sets(data_dir: str, split: str) -> dict[int, dict[int, str]]:
    """The files named exactly ``<split>-NNNNN-of-MMMMM`` in ``data_dir``: {M: {N: path}}."""
    pattern = re.compile(re.escape(split) + r"-(\d{5})-of-(\d{5})")
    sets: dict[int, dict[int, str]] = {}
    for name in os.listdir(data_dir):
        match = pattern.fullmatch(name)
        if match:
            sets.setdefault(int(match.group(2)), {})[int(match.group(1))] = (
                os.path.join(data_dir, name))
    return sets


def _count_records(path: str) -> int:
    """The records of one TFRecord file, by walking its framing (length, CRC, data, CRC);
    nothing is parsed. A file that ends inside a record is refused by name."""
    size = os.path.getsize(path)
    count, position = 0, 0
    with open(path, "rb") as f:
        while position < size:
            header = f.read(8)
            if len(header) < 8:
                break
            position += 16 + int.from_bytes(header, "little")
            f.seek(position)
            count += 1
    if position != size:
        raise DataError(f"TFRecord file {path!r} ends inside a record ({size} bytes, the "
                         f"framing expects {position}): it is truncated; convert the split "
                         f"again (tools/build_tfrecords.py --overwrite).")
    return count


def _metadata_split_files(data_dir: str, split: str, entry: dict, metadata_path: str,
                          sets: dict) -> tuple[str, ...]:
    """The shard files ``metadata.json``'s entry for ``split`` names, each checked to be
    there; other ``<split>-NNNNN-of-MMMMM`` files are refused (stale or foreign shards)."""
    num_shards = entry.get("num_shards")
    if not isinstance(num_shards, int) or num_shards < 1:
        raise DataError(f"{metadata_path} gives split {split!r} num_shards={num_shards!r}; "
                         f"expected a positive integer.")
    names = [f"{split}-{i:05d}-of-{num_shards:05d}" for i in range(num_shards)]
    pattern = entry.get("file_pattern")
    if pattern is not None and pattern != f"{split}-?????-of-{num_shards:05d}":
        raise DataError(f"{metadata_path} gives split {split!r} file_pattern {pattern!r} "
                         f"but num_shards={num_shards}; expected file_pattern "
                         f"{split}-?????-of-{num_shards:05d}.")
    missing = [n for n in names if not os.path.isfile(os.path.join(data_dir, n))]
    if missing:
        raise NotFoundError(
            f"{metadata_path} lists {num_shards} shards of split {split!r}, but "
            f"{len(missing)} are missing from {data_dir!r} (first: {missing[0]!r}); convert "
            f"the split again (tools/build_tfrecords.py --overwrite).")
    # Another -of-M, or this set's numbering beyond its count (train-00002-of-00002).
    extra = sorted(os.path.basename(p) for m, shards in sets.items()
                   for i, p in shards.items() if m != num_shards or i >= num_shards)
    if extra:
        raise DataError(
            f"{data_dir!r} holds shard files of split {split!r} that {metadata_path} does not "
            f"list ({len(extra)}, first: {extra[0]!r}; it lists {num_shards} shards "
            f"{names[0]} ...): shards of another conversion. Remove them or convert the "
            f"split again (tools/build_tfrecords.py --overwrite removes them).")
    return tuple(os.path.join(data_dir, n) for n in names)


def _complete_split_files(data_dir: str, split: str, sets: dict) -> tuple[str, ...]:
    """Without metadata: the one complete ``<split>-NNNNN-of-MMMMM`` set."""
    pattern = os.path.join(data_dir, f"{split}-*")
    if not sets:
        raise NotFoundError(f"No TFRecord files match {pattern!r}; expected shards named "
                                f"<split>-00000-of-NNNNN as tools/build_tfrecords.py writes.")
    if len(sets) > 1:
        counts = sorted(sets)
        raise DataError(
            f"{data_dir!r} holds shards of split {split!r} from {len(sets)} conversions "
            f"(-of-{counts[0]:05d} and -of-{counts[1]:05d}) and no {TFRECORD_METADATA} to "
            f"say which is current; expected one complete <split>-NNNNN-of-MMMMM set.")
    (total, shards), = sets.items()
    missing = [f"{split}-{i:05d}-of-{total:05d}" for i in range(total) if i not in shards]
    extra = sorted(os.path.basename(p) for i, p in shards.items() if i >= total)
    if missing or extra:
        raise NotFoundError(
            f"Split {split!r} in {data_dir!r} is an incomplete shard set: "
            + (f"{len(missing)} of its {total} shards are missing (first: {missing[0]!r})"
               if missing else f"shard {extra[0]!r} is beyond its {total} shards")
            + f", and there is no {TFRECORD_METADATA} (a conversion killed midway?). Convert "
            f"the split again (tools/build_tfrecords.py --overwrite).")
    return tuple(shards[i] for i in range(total))


def _stored_image_shape(entry: dict, split: str, metadata_path: str):
    """A split entry's raw ``image_shape`` as a tuple, None for encoded images (no
    ``image_format`` or "jpeg"); DataError for anything else."""
    image_format = entry.get("image_format", "jpeg")
    if image_format == "jpeg":
        return None
    shape = entry.get("image_shape")
    if (image_format != "raw" or not isinstance(shape, list) or len(shape) != 3
            or shape[2] != 3 or not all(isinstance(n, int) and not isinstance(n, bool)
                                        and n >= 1 for n in shape)):
        raise DataError(
            f"{metadata_path} says split {split!r} has image_format={image_format!r} and "
            f"image_shape={shape!r}; expected \"jpeg\", or \"raw\" with [height, width, 3] "
            f"(positive integers), as tools/build_tfrecords.py writes them.")
    return tuple(shape)


@dataclasses.dataclass(frozen=True)
class TFRecordSource(DataSource):
    """One split stored as TFRecord shards in the ImageNet schema
    (`alexnet_tf.data.tfrecords`). Locations are ``(shard, offset)``: record ``offset``
    of ``files[shard]``. ``label_map`` (stored 0-based index -> index into
    ``class_names``; -1 for none) maps the stored labels onto the training order when
    they differ (`map_classes`)."""

    files: tuple[str, ...]
    num_examples: int
    class_names: tuple[str, ...]
    readable_names: tuple[str, ...] | None = None
    label_offset: int = tfrecords.LABEL_OFFSET
    shuffle_buffer: int = 10_000
    label_map: tuple[int, ...] | None = None
    image_shape: tuple[int, int, int] | None = None
    # Records per file of ``files`` (metadata.json's, or counted at load): a shard that
    # ends early when read (corrupt, truncated, unreadable) has its lost records named.
    shard_sizes: tuple[int, ...] | None = None

    @classmethod
    def from_config(cls, data_config, split: str, class_names=None) -> TFRecordSource:
        d = data_config
        return cls.from_directory(_data_dir(d), split, label_offset=d.tfrecord_label_offset,
                                  shuffle_buffer=d.shuffle_buffer, class_names=class_names)

    @classmethod
    def from_directory(cls, data_dir: str, split: str, *, label_offset: int,
                       shuffle_buffer: int,
                       class_names: Sequence[str] | None = None) -> TFRecordSource:
        """The shards of ``split`` in ``data_dir``, and the split's size and class names.

        With ``metadata.json`` (tools/build_tfrecords.py): exactly the shards it names
        (``<split>-NNNNN-of-MMMMM``, M its ``num_shards``), their record count checked
        against its ``num_records`` (from its per-shard sizes, or by walking the files'
        framing), class names from its ``classes``. Without: the one complete
        ``<split>-NNNNN-of-MMMMM`` set, its records counted once (logged: slow for large
        sets) and class names read from ``image/class/synset``. No other file is read
        (``.bak``, ``.tmp``, another split whose name starts alike).

        Raises:
          FileNotFoundError: no shard, or a shard missing.
          ValueError: a split name with glob characters; shards the metadata does not
            list, or of two conversions; ``metadata.json`` lacks the split, has another
            label offset, a class list of another length than its ``num_classes``, or a
            ``num_records`` the files do not hold; records with labels below
            ``label_offset`` or with a class index no record has (no name for it); a
            class not among ``class_names`` (`map_classes`).
        """
        where = f"TFRecord split {split!r} in {data_dir!r}"
        _check_split_name(split, where)
        sets = _shard_sets(data_dir, split)
        metadata_path = os.path.join(data_dir, TFRECORD_METADATA)
        if os.path.exists(metadata_path):
            with open(metadata_path) as f:
                metadata = json.load(f)
            if split not in metadata.get("splits", {}):
                raise DataError(f"{metadata_path} describes splits "
                                 f"{sorted(metadata.get('splits', {}))}, not {split!r}.")
            entry = metadata["splits"][split]
            if "num_shards" in entry:
                files = _metadata_split_files(data_dir, split, entry, metadata_path, sets)
            else:  # metadata of another writer: only sizes and classes
                files = _complete_split_files(data_dir, split, sets)
            classes = metadata["classes"]
            if "num_classes" in metadata and metadata["num_classes"] != len(classes):
                raise DataError(f"{metadata_path} says num_classes={metadata['num_classes']} "
                                 f"but lists {len(classes)} classes; expected a list of "
                                 f"num_classes entries in label order.")
            misplaced = [(i, c.get("index")) for i, c in enumerate(classes)
                         if c.get("index", i) != i]
            if misplaced:
                raise DataError(f"{metadata_path} lists class {misplaced[0][1]} at position "
                                 f"{misplaced[0][0]}; expected the classes in label order.")
            if metadata.get("label_offset", label_offset) != label_offset:
                raise DataError(
                    f"{metadata_path} says labels are stored with offset "
                    f"{metadata['label_offset']}, but config.data.tfrecord_label_offset is "
                    f"{label_offset}.")
            num_records = int(entry["num_records"])
            shards = entry.get("shards")
            if shards and len(shards) == len(files) and all("num_bytes" in s for s in shards):
                for path, shard in zip(files, shards):
                    if os.path.getsize(path) != shard["num_bytes"]:
                        raise DataError(
                            f"{path!r} holds {os.path.getsize(path)} bytes but {metadata_path} "
                            f"says {shard['num_bytes']}: the shard was changed after the "
                            f"conversion; convert the split again.")
                sizes = [int(s["num_records"]) for s in shards]
            else:
                sizes = [_count_records(f) for f in files]
            found = sum(sizes)
            if found != num_records:
                raise DataError(
                    f"{metadata_path} says split {split!r} has num_records={num_records}, but "
                    f"its {len(files)} shard(s) hold {found} records; expected them to agree "
                    f"(convert the split again).")
            stored = [c["wnid"] for c in classes]
            names, readable, label_map = map_classes(
                stored, class_names, where, [c.get("name") or c["wnid"] for c in classes])
            return cls(files, num_records, names, readable, label_offset, shuffle_buffer,
                       label_map, _stored_image_shape(entry, split, metadata_path),
                       tuple(sizes))
        files = _complete_split_files(data_dir, split, sets)
        logging.info("No %s: counting the records of the %d shard(s) of %s.", metadata_path,
                     len(files), where)
        count, synsets = 0, {}
        spec = {"image/class/label": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
                "image/class/synset": tf.io.FixedLenFeature([], tf.string, default_value="")}
        sizes = []
        for path in files:
            sizes.append(0)
            for batch in tf.data.TFRecordDataset(path).batch(4096).map(
                    lambda r: tf.io.parse_example(r, spec)):
                labels = batch["image/class/label"].numpy()
                sizes[-1] += len(labels)
                for label, synset in zip(labels, batch["image/class/synset"].numpy()):
                    synsets.setdefault(int(label) - label_offset, set()).add(synset.decode())
            count += sizes[-1]
        if not synsets or min(synsets) < 0:
            raise DataError(f"The records of {where} hold labels below label_offset="
                             f"{label_offset}; check config.data.tfrecord_label_offset.")
        mixed = [(i, sorted(s)) for i, s in sorted(synsets.items()) if len(s) > 1]
        if mixed:
            raise DataError(f"The records of {where} give class index {mixed[0][0]} the "
                             f"synsets {mixed[0][1][:3]}; expected one class per label.")
        top = max(synsets)
        gaps = [i for i in range(top + 1) if i not in synsets]
        if gaps and class_names is None:
            hint = (f" Labels stored 1..{top} mean the Inception/TPU convention (0: "
                    f"background): set --config.data.tfrecord_label_offset=1."
                    if gaps[0] == 0 and label_offset == 0 else "")
            raise DataError(
                f"The records of {where} (no {TFRECORD_METADATA}) hold labels up to "
                f"{top + label_offset} but none stored as {gaps[0] + label_offset} (class "
                f"index {gaps[0]} with tfrecord_label_offset={label_offset}), so that class "
                f"has no name and no example.{hint} Or write the class list with "
                f"tools/build_tfrecords.py (metadata.json).")
        stored = []
        for i in range(top + 1):
            synset = next(iter(synsets[i])) if i in synsets else None
            if synset == "":  # records without a synset: the class is known by its index
                if class_names is not None and i >= len(class_names):
                    raise DataError(
                        f"The records of {where} hold class index {i} (no synset), beyond "
                        f"the {len(class_names)} training classes.")
                synset = class_names[i] if class_names is not None else f"class_{i}"
            stored.append(synset)
        names, readable, label_map = map_classes(stored, class_names, where)
        return cls(files, count, names, readable, label_offset, shuffle_buffer, label_map,
                   shard_sizes=tuple(sizes))

    def __len__(self) -> int:
        return self.num_examples

    def records(self, *, training, seed=0, epoch=0, skip=0, input_context=None):
        """Shard files permuted per (seed, epoch), read interleaved, then a shuffle buffer
        of ``shuffle_buffer`` records; ``position`` counts this pipeline's stream."""
        files = np.array(self.files)
        sizes = np.array(self._sizes(), np.int64)
        if training:
            order = train_order(len(files), seed, epoch)
            files, sizes = files[order], sizes[order]
        shard_records = False
        context = input_context
        if context is not None and context.num_input_pipelines > 1:
            if len(files) >= context.num_input_pipelines:
                part = slice(context.input_pipeline_id, None, context.num_input_pipelines)
                files, sizes = files[part], sizes[part]
            else:
                shard_records = True  # fewer files than pipelines: split records instead
        ds = tf.data.Dataset.from_tensor_slices((files, sizes, _openable(files))).interleave(
            lambda f, size, openable: _read_shard(f, size, openable).map(
                lambda offset, record, lost: (record, lost)),
            cycle_length=min(len(files), 16), block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = _shard_shuffle_skip(ds, self.shuffle_buffer, shard_records, context, training,
                                 seed, epoch, skip)

        def parse(position, element):
            encoded, label, name = self._parse(*element)
            return encoded, label, position, name

        return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def stream_records(self, *, seed, start, examples_per_pass):
        """Split units of one shard file: stream index j is pass ``j // S``'s shard
        ``j % S`` of a permutation of the S shards; the shards' records pass a shuffle
        buffer of ``shuffle_buffer`` records on the worker. A pass is whole shards, so it
        holds every record (``examples_per_pass`` only places ``start``: the stream
        begins with the shard of the pass ``start`` falls in, counted by the split's mean
        shard size). ``key`` = pass << 40 | shard << 24 | record offset in its shard."""
        _stream_per_pass(examples_per_pass, len(self))
        if start < 0:
            raise ValueError(f"start={start}: expected a non-negative stream index")
        num_shards = len(self.files)
        if num_shards > 1 << 16:
            raise DataError(f"{num_shards} shard files: a service stream keys records by "
                            f"shard in 16 bits; rebuild with fewer, larger shards.")
        pass_index, within = divmod(start, examples_per_pass)
        first = pass_index * num_shards + within * num_shards // len(self)
        files = tf.constant(list(self.files))
        sizes = tf.constant(self._sizes(), tf.int64)
        # Checked on the trainer; a worker checks only that the file is there.
        openable = tf.constant(_openable(self.files))

        def shard(j):
            pass_index, index = _stream_permuted(j, seed, num_shards, num_shards)
            return _read_shard(tf.gather(files, index), tf.gather(sizes, index),
                               tf.gather(openable, index)).map(
                lambda offset, record, lost: (
                    pass_index * (1 << 40) + index * (1 << 24) + offset, (record, lost)))

        ds = tf.data.Dataset.range(first, _STREAM_END).interleave(
            shard, cycle_length=min(num_shards, 16), block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        ds = ds.shuffle(self.shuffle_buffer, seed=_shuffle_seed(seed, first, _STREAM_SEEDS))

        def parse(key, element):
            encoded, label, name = self._parse(*element)
            return encoded, label, key, name

        return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def _sizes(self) -> list[int]:
        """Records per shard; -1 (not checked) where not known."""
        return list(self.shard_sizes) if self.shard_sizes else [-1] * len(self.files)

    def _parse(self, record, lost=None):
        """(encoded, label in the order of ``class_names``, name) of one record; a
        record `_read_shard` lost (``lost``: its name) gives `UNREADABLE`, label -1."""
        encoded, label, name = tfrecords.parse(record, self.label_offset)
        label = _remap(label, self.label_map)
        if lost is None:
            return encoded, label, name
        was_lost = tf.not_equal(lost, "")
        return (tf.where(was_lost, tf.constant(UNREADABLE), encoded),
                tf.where(was_lost, -1, label), tf.where(was_lost, lost, name))

    def fingerprint(self, split_name: str) -> dict:
        """kind "tfrecord": a sha256 of every (absolute shard path, size in bytes) line
        (and the label map, when the stored order is not the training order)."""
        digest = hashlib.sha256()
        for f in self.files:
            digest.update(f"{os.path.abspath(f)}\t{os.path.getsize(f)}\n".encode())
        if self.label_map is not None:
            digest.update(f"label_map\t{list(self.label_map)}\n".encode())
        return {"kind": "tfrecord", "split": split_name, "num_examples": len(self),
                "sha256": digest.hexdigest()}

    def ordered_records(self, positions=None):
        """The shards interleaved in blocks of 16 records, located ``(shard, offset)``."""
        def shard(shard_id, path, size, openable):
            return _read_shard(path, size, openable).map(
                lambda offset, record, lost: (tf.stack([shard_id, offset]), (record, lost)))

        files = tf.data.Dataset.from_tensor_slices(
            (tf.range(len(self.files), dtype=tf.int64), list(self.files),
             tf.constant(self._sizes(), tf.int64), _openable(self.files)))
        ds = files.interleave(shard, cycle_length=min(len(self.files), 8), block_length=16,
                              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if positions is not None:  # before parsing: records passed over stay unparsed
            ds = _at_positions(ds, positions, len(self))

        def parse(location, element):
            encoded, label, name = self._parse(*element)
            return location, encoded, label, name

        return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def read_encoded(self, locations) -> list[bytes]:
        """Each shard asked for is read once, up to its last offset asked for. A raw
        record (``image_shape``) comes back as a PNG file of its pixels."""
        locations = np.asarray(locations, np.int64).reshape(-1, 2).tolist()
        wanted = {}
        for shard, offset in locations:
            if not 0 <= shard < len(self.files):
                raise KeyError(f"TFRecordSource of {len(self.files)} shard files holds no "
                               f"example at location {(shard, offset)}; expected (shard, "
                               f"offset), 0 <= shard < {len(self.files)}.")
            wanted.setdefault(shard, set()).add(offset)
        found = {}
        for shard, offsets in wanted.items():
            last = max(offsets)
            for offset, record in enumerate(tf.data.TFRecordDataset(self.files[shard])):
                if offset in offsets:
                    found[(shard, offset)] = self._displayable(tfrecords.parse(record)[0])
                if offset >= last:
                    break
        return [_found(found, tuple(l), self) for l in locations]

    def _displayable(self, encoded) -> bytes:
        """An encoded image's bytes as stored; a raw record's pixels as a PNG (lossless),
        so that what `read_encoded` gives is an image file in either case. Raw bytes of
        the wrong length are returned as they are (a bad record, which readers name)."""
        if self.image_shape is None or tfrecords.raw_problem(encoded, self.image_shape) != "":
            return encoded.numpy()
        return tf.io.encode_png(tfrecords.raw_pixels(encoded, self.image_shape)).numpy()

    @property
    def shard_files(self) -> tuple[str, ...]:
        return self.files


# ------------------------------------------------------------------------------ TFDS

def import_tfds():
    """tensorflow_datasets, or an ImportError that says how to install it."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise MissingDependencyError(
            "config.data.source='tfds' needs the tensorflow-datasets package: "
            "pip install -e '.[tfds]' (or pip install tensorflow-datasets). "
            f"Importing it failed: {error}") from error
    return tfds


def _tfds_where(data_dir: str) -> str:
    if data_dir:
        return repr(data_dir)
    return "TFDS's default (~/tensorflow_datasets or $TFDS_DATA_DIR)"


def _how_to_prepare(name: str, data_dir: str, builder=None) -> str:
    """How to prepare TFDS dataset ``name``: TFDS's Python API first, which the
    ``[tfds]`` extra runs; TFDS's ``tfds build`` command also imports apache-beam and
    mlcroissant, which the extra leaves out (apache-beam holds pillow below 13)."""
    where = data_dir or "DATA_DIR"
    manual = bool(getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None))
    config = ("download_config=tfds.download.DownloadConfig(manual_dir='MANUAL_DIR')"
              if manual else "")
    text = (f"This package reads prepared TFDS datasets only; prepare it once with "
            f"python -c \"import tensorflow_datasets as tfds; tfds.builder({name!r}, "
            f"data_dir={where!r}).download_and_prepare({config})\" (or `tfds build {name} "
            f"--data_dir={where}" + (" --manual_dir=MANUAL_DIR" if manual else "") +
            "`, which also needs pip install apache-beam mlcroissant).")
    if manual:
        archives = (" (for imagenet2012: ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar)"
                    if name.startswith("imagenet2012") else "")
        text += (f" {name} needs its files downloaded by hand{archives}: put them in "
                 f"the directory MANUAL_DIR first.")
    return text


def tfds_builder(name: str, data_dir: str):
    """The prepared TFDS builder ``name`` in ``data_dir``; a clear error when TFDS does
    not know the name or the dataset is not prepared there."""
    tfds = import_tfds()
    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
    except tfds.core.DatasetNotFoundError as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise NotFoundError(
            f"TFDS knows no dataset {name!r} (config.data.tfds_name) in data_dir "
            f"{_tfds_where(data_dir)}: neither a registered builder nor prepared there "
            f"({first_line}). {_how_to_prepare(name, data_dir)}") from None
    if not builder.is_prepared():
        raise NotFoundError(
            f"TFDS dataset {name!r} (config.data.tfds_name) is not prepared in data_dir "
            f"{_tfds_where(data_dir)} (no {builder.data_dir}). "
            f"{_how_to_prepare(name, data_dir, builder)}")
    return builder


@dataclasses.dataclass(frozen=True)
class TfdsSource(DataSource):
    """One split of a prepared TFDS builder (an Image feature and a ClassLabel feature).

    Locations are ``(-1, i)``: the i-th example of the split in TFDS's stored order
    (the evaluation order of `records`); `read_encoded` streams the split to them.
    """

    name: str  # the builder name as given, e.g. "imagenet2012" or "imagenet2012:5.1.0"
    data_dir: str  # TFDS's data_dir; "" for its default
    split: str  # a TFDS split, slices included ("train[:10%]")
    num_examples: int
    class_names: tuple[str, ...]
    image_key: str = "image"
    label_key: str = "label"
    num_files: int = 1  # files the split reads (sharding by file needs one per pipeline)
    shuffle_buffer: int = 10_000
    readable_names: tuple[str, ...] | None = None
    label_map: tuple[int, ...] | None = None  # TFDS label -> class index (`map_classes`)
    builder: Any = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def from_config(cls, data_config, split: str, class_names=None) -> TfdsSource:
        d = data_config
        if not d.tfds_name:
            raise DataError("config.data.tfds_name is empty; data.source='tfds' needs a "
                             "prepared TFDS builder, e.g. --config.data.tfds_name=imagenet2012.")
        return cls.from_prepared(d.tfds_name, d.data_dir, split, shuffle_buffer=d.shuffle_buffer,
                                 class_names=class_names)

    @classmethod
    def from_prepared(cls, name: str, data_dir: str, split: str, *, shuffle_buffer: int,
                      class_names: Sequence[str] | None = None) -> TfdsSource:
        """One split of a prepared TFDS image-classification builder: its size, file count
        and class names from the builder's info; images are read undecoded later.

        Raises:
          ImportError: tensorflow-datasets is not installed (`import_tfds`).
          FileNotFoundError: TFDS does not know ``name`` or it is not prepared in
            ``data_dir`` (`tfds_builder`).
          ValueError: the builder has no split ``split``, or no Image and ClassLabel
            features; a ClassLabel name not among ``class_names`` (`map_classes`).
        """
        tfds = import_tfds()
        builder = tfds_builder(name, data_dir)
        info = builder.info
        try:
            split_info = info.splits[split]
        except (KeyError, ValueError) as error:
            raise DataError(
                f"TFDS dataset {name!r} has splits {sorted(info.splits.keys())}, not {split!r} "
                f"({error}); set config.data.train_split / config.data.eval_split (TFDS calls "
                f"ImageNet's validation split 'validation').") from None
        keys = info.supervised_keys
        if (isinstance(keys, (tuple, list)) and len(keys) == 2
                and all(isinstance(k, str) for k in keys)):
            image_key, label_key = keys
        else:
            image_key, label_key = "image", "label"
        features = info.features
        feature_keys = set(features.keys())
        if (image_key not in feature_keys or label_key not in feature_keys
                or not isinstance(features[image_key], tfds.features.Image)
                or not isinstance(features[label_key], tfds.features.ClassLabel)):
            raise DataError(
                f"TFDS dataset {name!r} is not an image-classification dataset this package "
                f"can read: expected an Image feature {image_key!r} and a ClassLabel feature "
                f"{label_key!r} (its supervised_keys, or 'image' and 'label'); it has "
                f"{ {k: type(features[k]).__name__ for k in sorted(feature_keys)} }.")
        class_names, _, label_map = map_classes(
            tuple(features[label_key].names), class_names,
            f"TFDS dataset {name!r} split {split!r}")
        logging.info("TFDS %s (%s) split %s: %d examples in %d file(s), %d classes.", name,
                     builder.data_dir, split, split_info.num_examples,
                     len(split_info.file_instructions), len(class_names))
        return cls(name=name, data_dir=data_dir, split=split,
                   num_examples=int(split_info.num_examples), class_names=class_names,
                   image_key=image_key, label_key=label_key,
                   num_files=max(1, len(split_info.file_instructions)),
                   shuffle_buffer=shuffle_buffer, label_map=label_map, builder=builder)

    def __len__(self) -> int:
        return self.num_examples

    def _builder(self):
        return self.builder or tfds_builder(self.name, self.data_dir)

    def records(self, *, training, seed=0, epoch=0, skip=0, input_context=None):
        """The same order of operations as TFRecords: TFDS shuffles its files with a seed
        from (seed, epoch) and shards them by ``input_context`` (by records when there are
        fewer files than pipelines), then a seeded buffer shuffles examples; the skip of
        a resumed run comes before any decoding. Names are TFDS ids (file and index)."""
        tfds = import_tfds()
        context = input_context
        shard_records, read_context = False, None
        if context is not None and context.num_input_pipelines > 1:
            if self.num_files >= context.num_input_pipelines:
                read_context = context
            else:
                shard_records = True  # fewer files than pipelines: split records instead
        read_config = tfds.ReadConfig(
            shuffle_seed=_shuffle_seed(seed, epoch, _TFDS_FILE_ORDER) if training else None,
            shuffle_reshuffle_each_iteration=False, input_context=read_context,
            interleave_cycle_length=min(self.num_files, 16), interleave_block_length=1,
            add_tfds_id=True, try_autocache=False, skip_prefetch=True,
            enable_ordering_guard=False)  # the order is ours, and deterministic either way
        ds = self._builder().as_dataset(
            split=self.split, shuffle_files=training,
            decoders={self.image_key: tfds.decode.SkipDecoding()}, read_config=read_config)
        ds = _shard_shuffle_skip(ds, self.shuffle_buffer, shard_records, context, training,
                                 seed, epoch, skip)

        def parse(position, example):
            label = _remap(tf.cast(example[self.label_key], tf.int32), self.label_map)
            return example[self.image_key], label, position, example["tfds_id"]

        return ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def fingerprint(self, split_name: str) -> dict:
        """kind "tfds": the builder's name, version and directory, the TFDS split and its
        size (a prepared version's files do not change)."""
        builder = self._builder()
        fingerprint = {"kind": "tfds", "split": split_name, "num_examples": len(self),
                       "builder": self.name, "version": str(builder.version),
                       "data_dir": os.path.abspath(str(builder.data_dir)),
                       "tfds_split": self.split}
        if self.label_map is not None:
            fingerprint["label_map"] = list(self.label_map)
        return fingerprint


# ----------------------------------------------------------------------------- registry

# config.data.source -> its class; alexnet_tf.config.DATA_SOURCES lists the same names
# (the config imports no TensorFlow, so it cannot import this table; a test compares them).
SOURCES: dict[str, type[DataSource]] = {
    "demo": DemoSource,
    "image_folder": ImageFolderSource,
    "tfrecord": TFRecordSource,
    "tfds": TfdsSource,
}


def load_split(data_config, split: str,
               class_names: Sequence[str] | None = None) -> DataSource:
    """The split ``split`` of the source ``config.data.source`` names (`SOURCES`).

    ``class_names``: the training split's class ids in label order (a run's
    ``classes.json`` ids, or the training split's ``class_names``). When given, the
    split's labels index them, whatever order the split stores its classes in; a class
    of the split that they lack is refused by name.

    Raises:
      ValueError: an unknown source; or the source's own errors (`DataSource.from_config`).
      DataError: a split that holds no examples, or a split name that is a path
        (`alexnet_tf.config.split_name_problem`).
    """
    problem = config_lib.split_name_problem(split)
    if problem:
        raise DataError(f"Split {split!r}: {problem}.")
    try:
        source = SOURCES[data_config.source]
    except KeyError:
        raise ValueError(f"Unknown data source {data_config.source!r}; expected one of "
                         f"{sorted(SOURCES)}.") from None
    if class_names is None:
        return _not_empty(source.from_config(data_config, split), data_config, split)
    class_names = tuple(class_names)
    if len(set(class_names)) != len(class_names):
        duplicate = next(c for c in class_names if class_names.count(c) > 1)
        raise DataError(f"The training classes name {duplicate!r} twice; expected distinct "
                         f"class ids.")
    loaded = source.from_config(data_config, split, class_names)
    if tuple(loaded.class_names) != class_names:  # every source's contract
        i, want, got = first_class_difference(class_names, loaded.class_names)
        raise DataError(f"{type(loaded).__name__} of split {split!r} has class {got!r} at "
                         f"index {i}; expected the training class {want!r}.")
    return _not_empty(loaded, data_config, split)


def _not_empty(loaded: DataSource, data_config, split: str) -> DataSource:
    """``loaded``, unless it holds no example: a split of nothing trains nothing and
    scores 100% error on nothing, both with exit status 0 (e.g. TFRecords whose every
    image of the split was skipped as undecodable)."""
    if len(loaded) == 0:
        raise DataError(f"Split {split!r} of the {data_config.source} data in "
                        f"{data_config.data_dir or '(its default directory)'!r} holds no "
                        f"examples; expected at least one (a converter's "
                        f"<split>-skipped.json names the files it could not use).")
    return loaded


def point_at(data_config, *, data_dir: str | None = None, data_source: str | None = None):
    """``data_config`` (changed in place, returned) pointed at ``data_dir`` and
    ``data_source`` given by hand: a source named wins; a directory given by hand holds
    real data, so a "demo" source (which would write the demo set there) becomes
    "image_folder". Evaluation and retrieval of any model source share this rule."""
    if data_source:
        data_config.source = data_source
    elif data_dir and data_config.source == "demo":
        data_config.source = "image_folder"
    if data_dir:
        data_config.data_dir = data_dir
    return data_config
