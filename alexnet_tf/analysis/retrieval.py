r"""Nearest neighbours in fc7 feature space (Sec. 6.1, Fig. 4).

The paper: images whose 4096-d fc7 activations are close in Euclidean distance are
similar to the network; the nearest training images of a query share its class in
different poses, although they are far apart in pixels. This module:

1. computes fc7 features of every image of a dataset split in batches, with a
   progress bar, into a cache directory (`split_features`): ``features.npy``
   (float32 ``[N, D]``, written row by row through a memory map, read back memory
   mapped), ``labels.npy``, ``locations.npy`` (where each row's image is, as the
   split's `alexnet_tf.data.sources.DataSource.ordered_records` says: ``(-1, i)`` for
   example ``i`` of an image folder or a TFDS split, ``(shard, offset)`` for a
   TFRecord record), ``names.json`` (file paths, record file names or TFDS ids) and
   ``manifest.json``, written last, holding a fingerprint of the weights, the
   preprocessing and the split (`DataSource.fingerprint`). The next run with the same
   fingerprint reuses the cache; any other fingerprint recomputes it in place. A
   cache whose manifest is this module's but whose files are damaged (truncated,
   unreadable, or disagreeing with the manifest) is recomputed in place too, with a
   warning naming the file: everything in it is derived from the split. A
   ``manifest.json`` that is not one this module wrote (not JSON, truncated, not an
   object, no fingerprint) is refused (RetrievalError naming it): the directory may
   hold someone else's files, and nothing is overwritten;
2. finds each query's ``k`` nearest database rows by Euclidean distance
   (`nearest_neighbours`), streaming the database in chunks of bounded memory (no
   ``N x N`` or ``Q x N`` matrix), exact: the distances of the final candidates are
   recomputed directly from the differences;
3. draws a grid like Fig. 4 (`neighbour_grid`): the query in the first column, its
   neighbours after it, nearest first; a neighbour's frame is green when it shares
   the query's class, red when not, grey when the query's class is unknown;
4. reports the fraction of neighbours that share the query's class
   (`same_class_fraction`), for queries from a labelled split.

Features come from a Keras model (`keras_extractor`: a run's checkpoint, a
``.keras`` file or converted weights; images preprocessed as evaluation does,
`alexnet_tf.data.preprocess.eval_image` with the run's normalisation) or from a
SavedModel's ``features`` signature (`saved_model_extractor`), which takes encoded
images (``image_bytes``: tf.string ``[None]``) and returns ``{"features": float
[None, D]}``, preprocessing inside the SavedModel.

Bad input: a database record that is not an image, or cannot be decoded, is left
out of the features and named in the manifest (``skipped``); a query file that is
not an image is skipped with a message naming it.

    python tools/retrieve.py --workdir=runs/demo --split=train --query_split=val --num_queries=8 --k=5
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image, ImageDraw, ImageFont

from alexnet_tf.data import decode, preprocess, tfrecords
from alexnet_tf.errors import NotFoundError, UserError

FORMAT_VERSION = 1
MANIFEST_FILENAME = "manifest.json"
FEATURES_FILENAME = "features.npy"
LABELS_FILENAME = "labels.npy"
LOCATIONS_FILENAME = "locations.npy"
NAMES_FILENAME = "names.json"
FEATURES_SIGNATURE = "features"  # the SavedModel contract: image_bytes -> {"features"}
SIGNATURE_INPUT = "image_bytes"
SIGNATURE_OUTPUT = "features"

SAME_CLASS_COLOUR = (0, 170, 0)
OTHER_CLASS_COLOUR = (210, 0, 0)
UNKNOWN_CLASS_COLOUR = (150, 150, 150)
BACKGROUND = (255, 255, 255)


class RetrievalError(UserError, ValueError):
    """A retrieval that cannot run as asked: no queries, no data, no features cache,
    ``k`` larger than the database, a model or SavedModel without the features."""


def _placeholder_png() -> bytes:
    # A valid 1x1 PNG stands in for a bad record inside a batch; its row is dropped.
    return tf.io.encode_png(tf.zeros([1, 1, 3], tf.uint8)).numpy()


# -------------------------------------------------------------------------- extractors

@dataclasses.dataclass
class Extractor:
    """Encoded images -> features.

    ``prepare`` maps one encoded image (a tf.string scalar) to the input of
    ``features`` inside ``tf.data``; ``features`` maps a batch of those to a float
    ``[B, D]`` NumPy array. ``fingerprint`` identifies weights and preprocessing."""

    description: str
    dim: int
    prepare: Callable
    features: Callable
    fingerprint: dict


def keras_extractor(model, convention, *, fingerprint: dict,
                    description: str = "") -> Extractor:
    """fc7 features of a Keras AlexNet on images preprocessed as evaluation does
    (centre crop of the shorter-side ``convention.resize_size`` image, normalised by the
    model's input convention, an `alexnet_tf.convention.InputConvention`).

    Raises RetrievalError when ``convention`` is None (a bare ``.keras`` file) or crops
    another size than the model takes."""
    from alexnet_tf import architecture, models

    if convention is None:
        raise RetrievalError(
            "A bare .keras file does not say how its input is normalised: give the run's "
            "work directory (its config.json) or a converted-weights directory with "
            "input_convention.json.")
    size, resize_size = convention.image_size, convention.resize_size
    if int(model.input_shape[1]) != size:
        raise RetrievalError(f"The input convention crops {size} pixels; the model takes "
                         f"{model.input_shape[1]}.")
    feature_model = models.feature_extractor(model)

    def prepare(encoded):
        return preprocess.eval_image(encoded, image_size=size, resize_size=resize_size,
                                     norm=convention)

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
    def run(images):
        return tf.cast(feature_model(images, training=False), tf.float32)

    # The convention as saved, plus its mean image's digest: a cache of features made
    # with another preprocessing is never reused.
    preprocessing = convention.to_dict()
    if convention.mean_image is not None:
        preprocessing["mean_image_sha256"] = hashlib.sha256(
            convention.mean_image.tobytes()).hexdigest()
    fingerprint = dict(fingerprint, preprocess=preprocessing, layer=architecture.FEATURE_LAYER)
    return Extractor(description or model.name, int(feature_model.output_shape[-1]), prepare,
                     lambda batch: run(batch).numpy(), fingerprint)


def saved_model_extractor(directory: str) -> Extractor:
    """Features from the ``features`` signature of a SavedModel: it takes
    ``image_bytes`` (tf.string ``[None]``) and returns ``{"features": [None, D]}``.

    ``directory`` is a SavedModel (a version, ``exports/alexnet/1``) or an export's base
    directory holding versions (``exports/alexnet``: its highest version is used, as by
    TF Serving and ``alexnet-predict --saved_model``; `serving.client.saved_model_path`).
    The version used is in the features' fingerprint: a newer export recomputes them."""
    from alexnet_tf.serving.client import load_saved_model

    version, loaded = load_saved_model(directory)  # a damaged export: one line
    if os.path.normpath(version) != os.path.normpath(directory):
        logging.info("%s holds versions: using the highest, %s.", directory, version)
    directory = version
    signatures = dict(loaded.signatures)
    if FEATURES_SIGNATURE not in signatures:
        raise RetrievalError(f"The SavedModel at {directory!r} has no {FEATURES_SIGNATURE!r} "
                         f"signature; it has {sorted(signatures)}.")
    signature = signatures[FEATURES_SIGNATURE]
    inputs = signature.structured_input_signature[1]
    if SIGNATURE_INPUT not in inputs or inputs[SIGNATURE_INPUT].dtype != tf.string:
        raise RetrievalError(f"Signature {FEATURES_SIGNATURE!r} of {directory!r} takes {inputs}; "
                         f"expected {SIGNATURE_INPUT!r}: tf.string [None].")
    outputs = signature.structured_outputs
    if SIGNATURE_OUTPUT not in outputs:
        raise RetrievalError(f"Signature {FEATURES_SIGNATURE!r} of {directory!r} returns "
                         f"{sorted(outputs)}; expected {SIGNATURE_OUTPUT!r}.")
    dim = outputs[SIGNATURE_OUTPUT].shape[-1]

    def features(batch):
        result = signature(**{SIGNATURE_INPUT: batch})[SIGNATURE_OUTPUT]
        return np.asarray(result.numpy(), np.float32).reshape(len(batch), -1)

    files = [os.path.join(directory, "saved_model.pb"),
             os.path.join(directory, "variables", "variables.index")]
    fingerprint = {"kind": "saved_model", "path": os.path.abspath(directory),
                   "sha256": [_sha256_file(f) for f in files if os.path.exists(f)],
                   "signature": FEATURES_SIGNATURE}
    if dim is None:  # the signature does not say: ask it once
        dim = features(tf.constant([_placeholder_png()])).shape[-1]
    return Extractor(directory, int(dim), tf.identity, features, fingerprint)


def _sha256_file(path: str) -> str:
    from alexnet_tf.model_source import file_sha256

    return file_sha256(path)


# ------------------------------------------------------------------- split features

@dataclasses.dataclass
class FeatureSet:
    """The features of a split and where each row came from."""

    features: np.ndarray  # float32 [N, D], memory-mapped from the cache
    labels: np.ndarray  # int32 [N]
    locations: np.ndarray  # int64 [N, 2]
    names: list[str]
    manifest: dict
    directory: str
    reused: bool  # True when read from a cache made by an earlier call

    def __len__(self) -> int:
        return len(self.labels)


def _fingerprint(extractor: Extractor, split, split_name: str) -> dict:
    return {"format": FORMAT_VERSION, "extractor": extractor.fingerprint,
            "split": split.fingerprint(split_name)}


def _diff_keys(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from _diff_keys(a.get(key), b.get(key), f"{prefix}{key}.")
    elif a != b:
        yield prefix.rstrip(".")


class CacheDamagedError(RetrievalError):
    """A features cache whose manifest is this module's but whose files cannot be read
    or disagree with it; ``path`` names the first bad file."""

    def __init__(self, message: str, path: str):
        super().__init__(message)
        self.path = path


def _read_manifest(directory: str) -> dict | None:
    """``directory``'s manifest.json, or None when there is none. Raises RetrievalError
    naming it when it is not one this module wrote (not JSON, truncated, not an object,
    without a fingerprint of this format)."""
    path = os.path.join(directory, MANIFEST_FILENAME)
    if not os.path.lexists(path):
        return None
    problem = None
    try:
        with open(path, "rb") as f:
            manifest = json.loads(f.read().decode("utf-8"))
    except (ValueError, RecursionError, IsADirectoryError) as error:
        problem = f"not JSON ({type(error).__name__}: {str(error)[:200]})"
    else:
        if not isinstance(manifest, dict):
            problem = f"a JSON {type(manifest).__name__}, not an object"
        elif not isinstance(manifest.get("fingerprint"), dict) or not isinstance(
                manifest["fingerprint"].get("format"), int):
            # Any version's format number marks the cache as this module's: another
            # version's is recomputed as another fingerprint.
            problem = (f"without the fingerprint this module writes (keys: "
                       f"{sorted(manifest)[:8]})")
    if problem:
        raise RetrievalError(
            f"Features manifest {path!r} is {problem}: it is damaged, or {directory!r} "
            f"holds other files than a features cache. Nothing was overwritten; delete "
            f"{directory!r} (a features cache is computed again from the split) or give "
            f"another --features_cache.")
    return manifest


def _read_cache_files(directory: str, manifest: dict) -> FeatureSet:
    """The arrays a complete manifest describes; CacheDamagedError naming the first
    file that is missing, truncated, unreadable or of another shape than it says."""
    manifest_path = os.path.join(directory, MANIFEST_FILENAME)

    def bad(name, why):
        path = os.path.join(directory, name)
        return CacheDamagedError(f"Features cache file {path!r} {why}", path)

    rows, dim = manifest.get("num_rows"), manifest.get("dim")
    if not (isinstance(rows, int) and isinstance(dim, int) and rows >= 0 and dim >= 1):
        raise CacheDamagedError(f"Features manifest {manifest_path!r} holds num_rows="
                                f"{rows!r} and dim={dim!r}; expected integers.", manifest_path)
    arrays = {}
    for name, mmap in ((FEATURES_FILENAME, "r"), (LABELS_FILENAME, None),
                       (LOCATIONS_FILENAME, None)):
        try:
            arrays[name] = np.load(os.path.join(directory, name), mmap_mode=mmap,
                                   allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise bad(name, f"cannot be read ({type(error).__name__}: "
                            f"{str(error)[:200]})") from None
    features, labels, locations = (arrays[n] for n in (FEATURES_FILENAME, LABELS_FILENAME,
                                                       LOCATIONS_FILENAME))
    if features.ndim != 2 or features.shape[0] < rows or features.shape[1] != dim:
        raise bad(FEATURES_FILENAME, f"has shape {features.shape}; the manifest says "
                                     f"{rows} rows of {dim}.")
    if labels.shape != (rows,):
        raise bad(LABELS_FILENAME, f"has shape {labels.shape}; expected ({rows},).")
    if locations.shape != (rows, 2):
        raise bad(LOCATIONS_FILENAME, f"has shape {locations.shape}; expected ({rows}, 2).")
    try:
        with open(os.path.join(directory, NAMES_FILENAME), "rb") as f:
            names = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError, RecursionError) as error:
        raise bad(NAMES_FILENAME, f"cannot be read ({type(error).__name__}: "
                                  f"{str(error)[:200]})") from None
    if not (isinstance(names, list) and len(names) == rows
            and all(isinstance(n, str) for n in names)):
        raise bad(NAMES_FILENAME, f"does not list {rows} names.")
    return FeatureSet(features[:rows], labels, locations, names, manifest, directory, True)


def load_cache(directory: str, fingerprint: dict | None = None) -> FeatureSet | None:
    """The cached features in ``directory``, or None when there are none (no
    manifest.json: a cache is complete once its manifest is written), their fingerprint
    is not ``fingerprint`` (when given), or, with a ``fingerprint``, a file of the cache
    is damaged (logged as a warning naming it: the caller computes the cache again).

    Raises RetrievalError naming manifest.json when it is not one this module wrote
    (`_read_manifest`), and CacheDamagedError (a RetrievalError) naming the damaged
    file when no ``fingerprint`` is given."""
    manifest = _read_manifest(directory)
    if manifest is None:
        return None
    if fingerprint is not None and manifest.get("fingerprint") != fingerprint:
        changed = list(_diff_keys(manifest.get("fingerprint"), fingerprint))
        logging.info("Feature cache %s was made for another model, preprocessing or split "
                     "(differs in %s): recomputing.", directory, changed[:5])
        return None
    try:
        return _read_cache_files(directory, manifest)
    except CacheDamagedError as error:
        if fingerprint is None:
            raise
        logging.warning("%s: the features cache in %s is damaged; computing it again in "
                        "place.", error, directory)
        return None


def split_features(split, extractor: Extractor, cache_dir: str, *, split_name: str = "",
                   batch_size: int = 64, progress: bool = True) -> FeatureSet:
    """The features of every image of ``split`` (a `alexnet_tf.data.sources.DataSource`),
    from ``cache_dir`` when it holds them for the same fingerprint (weights,
    preprocessing, split), else computed in batches and written there. Examples that are
    not images or cannot be decoded are left out and named in the manifest's
    ``skipped``.

    A cache of this module whose files are damaged is computed again in place, with a
    warning naming the file (`load_cache`). Raises RetrievalError naming
    ``cache_dir/manifest.json`` when that file is not a manifest this module wrote
    (truncated, not JSON, other keys): then nothing in ``cache_dir`` is touched."""
    from tqdm import tqdm

    fingerprint = _fingerprint(extractor, split, split_name)
    cached = load_cache(cache_dir, fingerprint)
    if cached is not None:
        logging.info("Reusing the fc7 features in %s (%d rows).", cache_dir, len(cached))
        return cached
    os.makedirs(cache_dir, exist_ok=True)
    manifest_path = os.path.join(cache_dir, MANIFEST_FILENAME)
    if os.path.exists(manifest_path):
        os.remove(manifest_path)  # the cache is invalid from now until it is complete

    placeholder = tf.constant(_placeholder_png())
    raw_shape = split.image_shape  # raw records (tools/build_tfrecords.py --format=raw)

    def load(position, record):
        location, encoded, label, name = record
        if raw_shape is not None:
            ok = tf.equal(tfrecords.raw_problem(encoded, raw_shape), "")
            return (position, location, label, name, ok,
                    extractor.prepare(tfrecords.raw_pixels(encoded, raw_shape)))
        ok = preprocess.is_supported_image(encoded)
        return (position, location, label, name, ok,
                extractor.prepare(tf.where(ok, encoded, placeholder)))

    n = len(split)
    ds = split.ordered_records().enumerate().map(load, num_parallel_calls=tf.data.AUTOTUNE,
                                                 deterministic=True)
    # A record with an image header but undecodable data fails inside the decoder:
    # ignore_errors drops it; its position never arrives, and it is named below.
    ds = ds.ignore_errors().batch(batch_size).prefetch(tf.data.AUTOTUNE)

    features_tmp = os.path.join(cache_dir, FEATURES_FILENAME + ".tmp")
    out = np.lib.format.open_memmap(features_tmp, mode="w+", dtype=np.float32,
                                    shape=(n, extractor.dim))
    labels, locations, names, skipped = [], [], [], []
    arrived = np.zeros(n, bool)
    rows = 0
    with tqdm(total=n, unit="img", desc=f"fc7 features of {split_name or 'split'}",
              disable=not progress) as bar:
        for position, location, label, name, ok, inputs in ds:
            arrived[position.numpy()] = True
            ok = ok.numpy()
            batch_features, taken = _features_of_batch(extractor, inputs)
            good = np.flatnonzero(ok & taken)
            for i in np.flatnonzero(~np.isin(np.arange(len(ok)), good)):
                skipped.append(name[i].numpy().decode("utf-8", "replace"))
            out[rows:rows + len(good)] = batch_features[good]
            rows += len(good)
            labels.append(label.numpy()[good])
            locations.append(location.numpy()[good])
            names.extend(v.decode("utf-8", "replace") for v in name.numpy()[good])
            bar.update(len(ok))
    out.flush()
    del out
    labels = np.concatenate(labels).astype(np.int32) if labels else np.zeros([0], np.int32)
    locations = (np.concatenate(locations).astype(np.int64) if locations
                 else np.zeros([0, 2], np.int64))
    undecodable = n - rows - len(skipped)
    missing = np.flatnonzero(~arrived)  # failed inside the decoder: named from the split
    if len(missing):
        skipped.extend(name.numpy().decode("utf-8", "replace")
                       for _, _, _, name in split.ordered_records(missing))
    for name in skipped:
        logging.warning("Left out of the features, not a readable and decodable image: %s",
                        name)

    np.save(os.path.join(cache_dir, LABELS_FILENAME), labels)
    np.save(os.path.join(cache_dir, LOCATIONS_FILENAME), locations)
    with open(os.path.join(cache_dir, NAMES_FILENAME), "w") as f:
        json.dump(names, f)
    os.replace(features_tmp, os.path.join(cache_dir, FEATURES_FILENAME))
    manifest = {"fingerprint": fingerprint, "num_rows": rows, "dim": extractor.dim,
                "num_examples": n, "skipped": skipped, "undecodable": max(undecodable, 0),
                "model": extractor.description,
                "files": list(split.shard_files) or None,
                # Rows past num_rows in features.npy are unused (examples left out).
                "note": "features.npy rows [0, num_rows) are valid"}
    tmp = manifest_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, manifest_path)  # written last: a cache with a manifest is complete
    logging.info("Wrote %d x %d fc7 features to %s (%d left out).", rows, extractor.dim,
                 cache_dir, n - rows)
    result = load_cache(cache_dir)
    result.reused = False
    return result


def _features_of_batch(extractor: Extractor, inputs) -> tuple[np.ndarray, np.ndarray]:
    """Features of a batch and which rows the extractor took. A SavedModel decodes
    inside its signature, where one undecodable image fails the whole call: then the
    batch is retried image by image and the failing images are not taken."""
    try:
        features = np.asarray(extractor.features(inputs), np.float32)
        return features, np.ones(len(features), bool)
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
        size = int(tf.shape(inputs)[0])
        if size == 1:
            return np.zeros([1, extractor.dim], np.float32), np.zeros([1], bool)
        parts = [_features_of_batch(extractor, inputs[i:i + 1]) for i in range(size)]
        return (np.concatenate([f for f, _ in parts]), np.concatenate([t for _, t in parts]))


# ----------------------------------------------------------------------------- search

def nearest_neighbours(queries, database, k: int, *, exclude=None,
                       max_chunk_bytes: int = 64 << 20) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest database rows of each query by Euclidean distance.

    Args:
      queries: ``[Q, D]``.
      database: ``[N, D]``, any array-like that slices by rows (a memory map works:
        it is read chunk by chunk).
      k: neighbours per query.
      exclude: optional int ``[Q]``: a database row each query must not return (its
        own row when the query comes from the database), -1 for none.
      max_chunk_bytes: bounds the working memory: database rows are read in chunks
        so that a chunk and its ``Q x chunk`` distances stay near this size.

    Returns:
      (indices int64 ``[Q, k]``, distances float64 ``[Q, k]``), nearest first; equal
      distances are ordered by index. Distances are recomputed from the differences.
    """
    queries = np.asarray(queries, np.float64)
    if queries.ndim != 2:
        raise ValueError(f"queries must be [Q, D], got shape {queries.shape}.")
    n, dim = database.shape
    if dim != queries.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} dimensions, the database {dim}.")
    q = len(queries)
    exclude = (np.full(q, -1, np.int64) if exclude is None
               else np.asarray(exclude, np.int64).reshape(q))
    available = n - (1 if np.any(exclude >= 0) else 0)
    if not 1 <= k <= available:
        raise RetrievalError(f"k={k} neighbours asked, but the database has {available} "
                         f"candidate rows per query.")
    chunk = int(max(1, min(n, max_chunk_bytes // (8 * (dim + q)))))
    best_d = np.full((q, 0), np.inf)
    best_i = np.zeros((q, 0), np.int64)
    q_sq = np.sum(queries ** 2, axis=1)
    for start in range(0, n, chunk):
        block = np.asarray(database[start:start + chunk], np.float64)
        index = np.arange(start, start + len(block), dtype=np.int64)
        # ||q - x||^2 = ||q||^2 - 2 q.x + ||x||^2: one matrix product per chunk.
        d2 = q_sq[:, None] - 2.0 * queries @ block.T + np.sum(block ** 2, axis=1)[None, :]
        d2[exclude[:, None] == index[None, :]] = np.inf
        cand_d = np.concatenate([best_d, d2], axis=1)
        cand_i = np.concatenate([best_i, np.broadcast_to(index, d2.shape)], axis=1)
        # Keep a margin beyond k so that rounding in the expansion cannot push a true
        # neighbour out before the exact distances are computed below.
        keep = min(cand_d.shape[1], k + min(k, 8))
        if cand_d.shape[1] > keep:
            part = np.argpartition(cand_d, keep - 1, axis=1)[:, :keep]
            cand_d = np.take_along_axis(cand_d, part, axis=1)
            cand_i = np.take_along_axis(cand_i, part, axis=1)
        best_d, best_i = cand_d, cand_i
    # Exact distances of the candidates, then the final order (distance, then index).
    exact = np.full(best_i.shape, np.inf)
    for row in range(q):
        valid = np.isfinite(best_d[row])  # excluded rows stay at infinity
        vectors = np.asarray(database[best_i[row][valid]], np.float64)
        exact[row, valid] = np.linalg.norm(vectors - queries[row], axis=1)
    order = np.lexsort((best_i, exact), axis=1)[:, :k]
    return (np.take_along_axis(best_i, order, axis=1),
            np.take_along_axis(exact, order, axis=1))


def same_class_fraction(query_labels, neighbour_labels) -> tuple[np.ndarray, float | None]:
    """Per query, the fraction of its neighbours with its label (NaN for an unknown
    label, < 0), and the mean over the labelled queries (None when there are none)."""
    query_labels = np.asarray(query_labels)
    neighbour_labels = np.asarray(neighbour_labels)
    per_query = np.mean(neighbour_labels == query_labels[:, None], axis=1).astype(np.float64)
    per_query[query_labels < 0] = np.nan
    labelled = query_labels >= 0
    overall = float(np.mean(per_query[labelled])) if labelled.any() else None
    return per_query, overall


# ---------------------------------------------------------------------------- queries

@dataclasses.dataclass
class Query:
    name: str
    encoded: bytes
    label: int = -1  # -1: class unknown (a file given by path)
    database_row: int = -1  # its row in the database features, when it is one of them


def _check_image(encoded: bytes) -> str | None:
    """None for bytes this package can decode, else why not."""
    if not bool(preprocess.is_supported_image(tf.constant(encoded))):
        return "not a JPEG, PNG, GIF or BMP image"
    try:
        preprocess.decode_rgb(tf.constant(encoded))
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as error:
        return f"cannot be decoded ({error.message.splitlines()[0][:120]})"
    return None


def expand_query_paths(paths: Sequence[str]) -> list[str]:
    """Files given directly, and every file under each directory given (sorted)."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, names in os.walk(path):
                dirs.sort()
                files.extend(os.path.join(root, n) for n in sorted(names))
        elif os.path.exists(path):
            files.append(path)
        else:
            raise NotFoundError(f"Query {path!r} does not exist.")
    return files


def queries_from_files(paths: Sequence[str]) -> tuple[list[Query], list[str]]:
    """Queries of unknown class from image files (directories are expanded); a file
    that is not an image is skipped, with a message naming it (returned and logged)."""
    queries, skipped = [], []
    for path in expand_query_paths(paths):
        encoded, problem = decode.read_image_file(path)
        problem = problem or _check_image(encoded)
        if problem:
            message = f"Skipping query {path}: {problem}."
            logging.warning("%s", message)
            skipped.append(message)
            continue
        queries.append(Query(path, encoded))
    return queries, skipped


def choose_queries(num_examples: int, num_queries: int, seed: int) -> np.ndarray:
    """A seeded random choice of query positions in a split, sorted."""
    if num_queries < 1:
        raise RetrievalError(f"num_queries must be >= 1, got {num_queries}.")
    count = min(num_queries, num_examples)
    return np.sort(np.random.default_rng(seed).choice(num_examples, count, replace=False))


def queries_from_split(split, num_queries: int, seed: int = 0) -> list[Query]:
    """``num_queries`` labelled queries from a split (a `alexnet_tf.data.sources.DataSource`;
    a seeded random choice of positions in its `ordered_records`), in that order. Examples
    that are not decodable images are passed over."""
    positions = choose_queries(len(split), num_queries, seed)
    queries = []
    for _, encoded, label, name in split.ordered_records(positions):
        encoded = encoded.numpy()
        if _check_image(encoded) is None:
            queries.append(Query(name.numpy().decode("utf-8", "replace"), encoded, int(label)))
    return queries


def query_features(extractor: Extractor, queries: Sequence[Query],
                   batch_size: int = 64) -> np.ndarray:
    """float32 ``[Q, D]`` features of the queries' images."""
    rows = []
    for start in range(0, len(queries), batch_size):
        batch = [extractor.prepare(tf.constant(q.encoded))
                 for q in queries[start:start + batch_size]]
        rows.append(np.asarray(extractor.features(tf.stack(batch)), np.float32))
    return np.concatenate(rows) if rows else np.zeros([0, extractor.dim], np.float32)


# ------------------------------------------------------------------------------- grid

def thumbnail(encoded: bytes, size: int) -> Image.Image:
    """The central square of an image, resized to ``size`` x ``size`` RGB."""
    import io

    image = Image.open(io.BytesIO(encoded))
    image = image.convert("RGB")
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    return image.resize((size, size), Image.Resampling.BILINEAR)


@dataclasses.dataclass(frozen=True)
class NeighbourGridLayout:
    height: int
    width: int
    cell: int  # thumbnail plus its frame
    column_lefts: tuple[int, ...]  # column 0: the query
    row_tops: tuple[int, ...]


def neighbour_grid(query_images: Sequence[Image.Image],
                   neighbour_images: Sequence[Sequence[Image.Image]], *,
                   query_labels=None, neighbour_labels=None, captions=None,
                   thumb: int = 64, frame: int = 3, spacing: int = 4, query_gap: int = 16,
                   margin: int = 8) -> tuple[np.ndarray, NeighbourGridLayout]:
    """Fig. 4's layout as uint8 ``[H, W, 3]``: one row per query, the query first, then
    its neighbours ``query_gap`` pixels to the right, nearest first. Each neighbour's
    frame says whether it shares the query's class (green), not (red), or the query's
    class is unknown (grey). ``captions`` (per row, 1 + k strings) go under the images."""
    q = len(query_images)
    k = max((len(r) for r in neighbour_images), default=0)
    cell = thumb + 2 * frame
    font = ImageFont.load_default() if captions else None
    caption_h = 0
    if captions:
        left, top, right, bottom = font.getbbox("Ag")
        caption_h = bottom - min(top, 0) + 3
    row_h = cell + caption_h
    lefts = [margin] + [margin + cell + query_gap + j * (cell + spacing) for j in range(k)]
    width = (lefts[-1] + cell + margin) if k else (margin + cell + margin)
    tops = [margin + i * (row_h + spacing) for i in range(q)]
    height = (tops[-1] + row_h + margin) if q else 2 * margin
    image = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for i in range(q):
        query_label = -1 if query_labels is None else int(query_labels[i])
        cells = [(query_images[i], None)] + [
            (img, None if neighbour_labels is None else int(neighbour_labels[i][j]))
            for j, img in enumerate(neighbour_images[i])]
        for j, (img, label) in enumerate(cells):
            x, y = lefts[j], tops[i]
            if j > 0:
                colour = (UNKNOWN_CLASS_COLOUR if query_label < 0 or label is None
                          else SAME_CLASS_COLOUR if label == query_label else OTHER_CLASS_COLOUR)
                draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=colour)
            image.paste(img.resize((thumb, thumb)), (x + frame, y + frame))
            if captions:
                text = _fit(captions[i][j], cell, font)
                draw.text((x, y + cell + 1), text, fill=(0, 0, 0), font=font)
    return np.asarray(image), NeighbourGridLayout(height, width, cell, tuple(lefts), tuple(tops))


def _fit(text: str, width: int, font) -> str:
    while text and font.getbbox(text)[2] > width:
        text = text[:-1]
    return text


# ------------------------------------------------------------------------ the whole run

@dataclasses.dataclass
class RetrievalResult:
    queries: list[Query]
    skipped: list[str]  # messages about query files that are not images
    neighbours: np.ndarray  # int64 [Q, k]: rows of the database features
    distances: np.ndarray  # float64 [Q, k]
    neighbour_labels: np.ndarray  # int [Q, k]
    neighbour_names: list[list[str]]
    same_class: np.ndarray  # [Q], NaN for queries of unknown class
    same_class_overall: float | None
    database: FeatureSet
    output: str | None
    class_names: list[str] | None


def _data_config(loaded_data, data_dir: str | None, data_source: str | None):
    """The data config to read splits with: the model's (a run's ``config.data`` or a
    converted model's convention), with ``data_dir``/``data_source`` when given."""
    import copy

    from alexnet_tf import config as config_lib
    from alexnet_tf.data import sources

    if loaded_data is None:
        if not data_dir:
            raise RetrievalError("No data to search: give the run's work directory (its data) "
                             "or a data directory (data_dir, data_source).")
        data = config_lib.base_config().data
        data.source = data_source or "image_folder"
        data.data_dir = data_dir
        return data
    return sources.point_at(copy.deepcopy(loaded_data), data_dir=data_dir,
                            data_source=data_source)


def retrieve(*, workdir: str | None = None, checkpoint: str = "auto",
             model_path: str | None = None, saved_model: str | None = None,
             data_dir: str | None = None, data_source: str | None = None,
             split: str = "train", query_paths: Sequence[str] = (),
             query_split: str | None = None, num_queries: int = 8, seed: int = 0, k: int = 5,
             output: str | None = "neighbours.png", features_cache: str | None = None,
             batch_size: int = 64, thumb: int = 64, progress: bool = True) -> RetrievalResult:
    """Fig. 4 on a trained model: features of ``split`` (cached), the ``k`` nearest
    rows of each query, the PNG grid and the same-class fraction.

    The model: a run (``workdir`` + ``checkpoint``), ``model_path`` (.keras or converted
    weights) or ``saved_model`` (its ``features`` signature; a version directory or an
    export's base directory, whose highest version is used). The data: the run's
    config, or ``data_dir``/``data_source``. Queries: image files (``query_paths``,
    class unknown) and/or ``num_queries`` examples of the labelled ``query_split``.
    ``features_cache`` defaults to ``<workdir>/features``; the split's features go to
    ``<features_cache>/<split>``: reused while the fingerprint holds, computed again when
    it changes or a file of the cache is damaged (a warning names it); a manifest.json
    there that this module did not write raises RetrievalError naming it
    (`split_features`).
    """
    from alexnet_tf.analysis import model_io
    from alexnet_tf.data import sources

    if not query_paths and not query_split:
        raise RetrievalError("No queries: give query files or directories, or a query split.")
    if features_cache is None and not workdir:  # before the model loads: a usage mistake
        raise RetrievalError("Give a features cache directory (--features_cache=DIR); only "
                             "a run has a default one (<workdir>/features).")
    # Query files first: a bad one is reported before a long feature computation.
    queries, skipped = queries_from_files(query_paths) if query_paths else ([], [])
    if saved_model:
        extractor = saved_model_extractor(saved_model)
        loaded_data = None
        if workdir:  # the run only supplies its data; the SavedModel preprocesses itself
            from alexnet_tf import run as run_lib

            loaded_data = run_lib.Run(workdir).config.data
    else:
        loaded = model_io.load_model(workdir, checkpoint=checkpoint, model_path=model_path)
        loaded_data = loaded.data_config
        extractor = keras_extractor(loaded.model, loaded.convention,
                                    fingerprint=loaded.fingerprint,
                                    description=loaded.description)
    data = _data_config(loaded_data, data_dir, data_source)
    # With a run, every split is read in the run's class order (its classes.json).
    run_classes = None
    if workdir:
        from alexnet_tf import run as run_lib

        run = run_lib.Run(workdir)
        if os.path.exists(run.classes_path):
            run_classes = [c["id"] for c in run.classes()]
    if features_cache is None:
        features_cache = os.path.join(workdir, "features")
    if query_split and query_split != split:
        queries += queries_from_split(sources.load_split(data, query_split, run_classes),
                                      num_queries, seed)
    if not queries and query_split != split:
        raise RetrievalError(f"None of the queries is an image: {skipped}")
    database_split = sources.load_split(data, split, run_classes)
    class_names = list(database_split.readable_names or database_split.class_names)
    database = split_features(database_split, extractor, os.path.join(features_cache, split),
                              split_name=split, batch_size=batch_size, progress=progress)
    if len(database) == 0:
        raise RetrievalError(f"No image of split {split!r} could be read.")
    if query_split == split:
        # Queries from the database itself: use their cached rows, and never return a
        # query as its own neighbour.
        positions = choose_queries(len(database), num_queries, seed)
        encoded = database_split.read_encoded(database.locations[positions])
        queries += [Query(database.names[r], e, int(database.labels[r]), int(r))
                    for r, e in zip(positions, encoded)]
    exclude = np.array([q.database_row for q in queries], np.int64)
    features = np.zeros([len(queries), extractor.dim], np.float32)
    own = exclude >= 0
    if own.any():
        features[own] = database.features[exclude[own]]
    if (~own).any():
        features[~own] = query_features(extractor, [q for q, o in zip(queries, own) if not o],
                                        batch_size)
    neighbours, distances = nearest_neighbours(features, database.features, k,
                                               exclude=exclude)
    neighbour_labels = database.labels[neighbours]
    query_labels = np.array([q.label for q in queries])
    per_query, overall = same_class_fraction(query_labels, neighbour_labels)
    names = [[database.names[r] for r in row] for row in neighbours]

    if output:
        query_images = [thumbnail(q.encoded, thumb) for q in queries]
        flat = database_split.read_encoded(database.locations[neighbours.reshape(-1)])
        neighbour_images = [[thumbnail(flat[i * k + j], thumb) for j in range(k)]
                            for i in range(len(queries))]

        def caption(label):
            return class_names[label] if 0 <= label < len(class_names) else "?"

        captions = [[caption(q.label)] + [caption(int(l)) for l in labels]
                    for q, labels in zip(queries, neighbour_labels)]
        grid, _ = neighbour_grid(query_images, neighbour_images, query_labels=query_labels,
                                 neighbour_labels=neighbour_labels, captions=captions,
                                 thumb=thumb)
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        Image.fromarray(grid).save(output, format="PNG")
    return RetrievalResult(queries, skipped, neighbours, distances, neighbour_labels, names,
                           per_query, overall, database, output, class_names)


def format_result(result: RetrievalResult) -> str:
    """Readable lines: each query's neighbours and the same-class fraction."""
    how = "cached features reused" if result.database.reused else "features computed"
    lines = [f"{len(result.database)} database images ({how}: {result.database.directory})."]
    for message in result.skipped:
        lines.append(message)
    names = result.class_names or []

    def cls(label):
        return names[label] if 0 <= label < len(names) else "unknown class"

    for i, q in enumerate(result.queries):
        same = ("" if np.isnan(result.same_class[i])
                else f", {result.same_class[i]:.0%} same class")
        lines.append(f"query {i + 1}: {q.name} ({cls(q.label)}){same}")
        for j, row in enumerate(result.neighbours[i]):
            lines.append(f"   {j + 1}. {result.neighbour_names[i][j]} "
                         f"({cls(int(result.neighbour_labels[i][j]))}), distance "
                         f"{result.distances[i][j]:.4g}")
    if result.same_class_overall is not None:
        labelled = int(np.sum(~np.isnan(result.same_class)))
        lines.append(f"Neighbours sharing the query's class: {result.same_class_overall:.1%} "
                     f"(over {labelled} labelled queries x {result.neighbours.shape[1]}).")
    else:
        lines.append("The queries' classes are unknown: no same-class fraction.")
    if result.output:
        lines.append(f"Wrote {result.output}.")
    return "\n".join(lines)
