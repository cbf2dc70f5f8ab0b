"""Reading the ImageNet (ILSVRC-2012) directory layout and its label files.

Pure Python (scipy only for ``meta.mat``, imported when needed): no TensorFlow, so the
converter's workers and tests can list a dataset cheaply.

Where ImageNet users get the files
----------------------------------
* From image-net.org (after registering; https://image-net.org/download-images):
  ``ILSVRC2012_img_train.tar`` (one inner ``<wnid>.tar`` per class: extract each into
  ``DATA_DIR/train/<wnid>/``), ``ILSVRC2012_img_val.tar`` (50,000 files
  ``ILSVRC2012_val_00000001.JPEG`` ... in one flat folder: extract into
  ``DATA_DIR/val/``) and the development kit ``ILSVRC2012_devkit_t12.tar.gz``, whose
  ``data/ILSVRC2012_validation_ground_truth.txt`` holds one ILSVRC2012_ID (1..1000) per
  validation image and whose ``data/meta.mat`` maps those IDs to wnids.
* The TF-slim / Cloud TPU one-wnid-per-line validation labels,
  ``imagenet_2012_validation_synset_labels.txt`` (tensorflow/models,
  ``research/slim/datasets/``): the same ground truth already mapped to wnids, needing
  no ``meta.mat``.
* Human-readable class names: ``imagenet_metadata.txt`` (tensorflow/models,
  ``research/slim/datasets/`` or ``research/inception/inception/data/``; all 21,842
  WordNet synsets) or Kaggle's ``LOC_synset_mapping.txt`` (the 1000 classes; from the
  "ImageNet Object Localization Challenge", whose ``ILSVRC/Data/CLS-LOC/train`` is
  already in the ``<wnid>/`` layout).

Layouts `list_split` reads
--------------------------
* Class folders: ``ROOT/<split>/<wnid>/<image>``; class indices are the sorted folder
  names (for ImageNet: the sorted wnids, as every converter and model zoo uses).
* Flat validation: ``ROOT/<split>/<image>`` with a labels file giving the classes of the
  images in sorted file-name order (``ILSVRC2012_val_00000001.JPEG`` first).

Label ``i`` must mean the same class in every split, even if a split lacks some
classes: callers pass the training split's order as ``class_names`` (the data sources
do: `alexnet_tf.data.sources.load_split`); without it, a split other than ``train``
takes its class order from ``ROOT/train`` when that exists.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Sequence

from alexnet_tf.errors import DataError, MissingDependencyError, NotFoundError

__all__ = [
    "IMAGE_EXTENSIONS",
    "list_split",
    "read_class_folders",
    "read_meta_mat",
    "read_synset_names",
    "read_val_labels",
]

# Image files by extension, compared case-insensitively (ImageNet uses ".JPEG").
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

_LOG = logging.getLogger(__name__)
_INTEGER = re.compile(r"^\d+$")


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _scan(folder: str) -> tuple[list[str], list[str]]:
    """(sorted sub-folder names, sorted image file names) of ``folder``.

    Hidden entries are skipped; so is an entry whose type cannot be read (a symlink
    loop, a link to a file without permission) or a dangling link, with a warning
    naming it and why. A folder that cannot be listed (no permission) is a ValueError
    naming it: for a class folder, skipping would drop a class.
    """
    dirs, images = [], []
    try:
        entries = os.scandir(folder)
    except OSError as e:
        raise DataError(f"Folder {folder!r} cannot be listed ({e.strerror or e}); fix its "
                         f"permissions or move it out of the data directory.") from None
    with entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                # Both follow symlinks: a loop or an unreadable target raises here
                # (ELOOP, EACCES); such an entry is named and skipped, never fatal.
                if entry.is_dir():
                    dirs.append(entry.name)
                elif entry.is_file() and _is_image(entry.name):
                    images.append(entry.name)
                elif entry.is_symlink():
                    # A dangling link: as an image file or as a class folder, it would
                    # otherwise vanish without a word (a class lost).
                    _LOG.warning("alexnet_tf: skipping unreadable entry %s - a symbolic link "
                                 "to nothing (%s)", os.path.join(folder, entry.name),
                                 os.readlink(entry.path))
            except OSError as e:
                _LOG.warning("alexnet_tf: skipping unreadable entry %s - %s",
                             os.path.join(folder, entry.name), e.strerror or e)
    return sorted(dirs), sorted(images)


def read_class_folders(root: str, split: str = "train") -> tuple[str, ...]:
    """The sorted class-folder names of ``root/split`` (for ImageNet, the 1000 wnids)."""
    folder = os.path.join(root, split)
    if not os.path.isdir(folder):
        raise NotFoundError(
            f"No directory {folder!r}: expected {root}/{split}/<wnid>/<image> class folders.")
    dirs, _ = _scan(folder)
    if not dirs:
        raise DataError(f"{folder!r} holds no class folders; expected {folder}/<wnid>/<image>.")
    return tuple(dirs)


def _read_lines(path: str) -> list[str]:
    """The non-blank lines of a text file, stripped."""
    if not os.path.isfile(path):
        raise NotFoundError(f"No file {path!r}.")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def read_meta_mat(path: str) -> dict[int, str]:
    """ILSVRC2012_ID -> wnid from the devkit's ``data/meta.mat``.

    ``meta.mat`` holds a struct array ``synsets`` (1860 entries: the 1000 leaf classes,
    IDs 1..1000, and their WordNet ancestors) with fields ``ILSVRC2012_ID``, ``WNID``,
    ``words``, ``gloss``, ... The IDs are *not* in sorted-wnid order. Needs scipy.
    """
    try:
        import scipy.io  # deferred: only the official ground-truth format needs it
    except ImportError as e:
        raise MissingDependencyError(
            f"Reading {path!r} (the ImageNet devkit's meta.mat) needs scipy: "
            "`pip install -e '.[imagenet]'` (or `pip install scipy`), or pass the "
            "one-wnid-per-line imagenet_2012_validation_synset_labels.txt instead.") from e
    if not os.path.isfile(path):
        raise NotFoundError(f"No file {path!r}; expected the devkit's data/meta.mat.")
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=True)
    except Exception as e:  # scipy raises several types for a file that is not a .mat
        raise DataError(f"Cannot read {path!r} as a MATLAB file (the devkit's meta.mat): {e}") from e
    synsets = mat.get("synsets")
    names = getattr(getattr(synsets, "dtype", None), "names", None) or ()
    if synsets is None or "ILSVRC2012_ID" not in names or "WNID" not in names:
        raise DataError(
            f"{path!r} has no struct array 'synsets' with fields ILSVRC2012_ID and WNID; "
            "expected the ImageNet devkit's data/meta.mat.")
    ids = synsets["ILSVRC2012_ID"].ravel()
    wnids = synsets["WNID"].ravel()
    mapping = {}
    for raw_id, raw_wnid in zip(ids, wnids):
        # Depending on how the file was written, fields are scalars or 1-element arrays.
        ilsvrc_id = int(getattr(raw_id, "item", lambda: raw_id)())
        wnid = getattr(raw_wnid, "item", lambda: raw_wnid)()
        mapping[ilsvrc_id] = str(wnid).strip()
    return mapping


def read_val_labels(path: str, meta_file: str | None = None) -> list[str]:
    """The wnid of each validation image, in sorted file-name order.

    The format is detected from the content:
    (a) one wnid (any non-integer token) per line: the TF-slim/TPU
        ``imagenet_2012_validation_synset_labels.txt``; or
    (b) one integer ILSVRC2012_ID per line: the devkit's
        ``ILSVRC2012_validation_ground_truth.txt``, mapped to wnids with ``meta_file``
        (the devkit's ``meta.mat``). The IDs are not indices into the sorted wnids.
    Blank lines are ignored.
    """
    lines = _read_lines(path)
    if not lines:
        raise DataError(f"Validation labels file {path!r} is empty.")
    integer = [bool(_INTEGER.match(line)) for line in lines]
    if all(integer):
        if meta_file is None:
            raise DataError(
                f"{path!r} holds integer ILSVRC2012_IDs (the devkit's "
                "ILSVRC2012_validation_ground_truth.txt); mapping them to wnids needs the "
                "devkit's data/meta.mat: pass val_meta_file (--val_meta_file).")
        id_to_wnid = read_meta_mat(meta_file)
        wnids = []
        for number, line in enumerate(lines, 1):
            if int(line) not in id_to_wnid:
                raise DataError(
                    f"{path!r}, label {number}: ILSVRC2012_ID {line} is not in {meta_file!r}.")
            wnids.append(id_to_wnid[int(line)])
        return wnids
    if any(integer):
        first = integer.index(True) if not integer[0] else integer.index(False)
        raise DataError(
            f"{path!r} mixes integer IDs and names (label {first + 1}: {lines[first]!r}); expected "
            "one wnid per line or one integer ILSVRC2012_ID per line.")
    bad = [line for line in lines if len(line.split()) != 1]
    if bad:
        raise DataError(
            f"{path!r}: line {bad[0]!r} has more than one field; expected one wnid per line "
            "(e.g. n01751748) or one integer ILSVRC2012_ID per line.")
    return lines


def list_split(root: str, split: str, *, val_labels_file: str | None = None,
               val_meta_file: str | None = None,
               class_names: Sequence[str] | None = None,
               ) -> tuple[list[str], list[int], tuple[str, ...]]:
    """(paths, 0-based labels, wnids in index order) of ``root/split``.

    Class folders ``root/split/<wnid>/<image>``: files sorted within each class. Flat
    ``root/split/<image>`` (the ImageNet validation archive): needs ``val_labels_file``
    (see `read_val_labels`) and, for integer IDs, ``val_meta_file``.

    The class order is ``class_names`` if given; else, for a split other than
    ``train``, the sorted class folders of ``root/train`` when it exists; else the
    split's own sorted class folders. A flat split needs one of the first two. A class
    (folder or label) not in that order is an error. Images are files with an
    `IMAGE_EXTENSIONS` extension (any case); other files are ignored.
    """
    folder = os.path.join(root, split)
    if not os.path.isdir(root):
        raise NotFoundError(f"No data directory {root!r}; expected {root}/<split>/...")
    if not os.path.isdir(folder):
        raise NotFoundError(
            f"No split directory {folder!r}: expected {folder}/<wnid>/<image> class folders "
            f"or, for validation, {folder}/<image> with a labels file.")
    dirs, loose = _scan(folder)
    if dirs and loose:
        raise DataError(
            f"{folder!r} holds both class folders ({dirs[0]!r}, ...) and loose images "
            f"({loose[0]!r}, ...); expected one layout: {folder}/<wnid>/<image> or {folder}/<image>.")

    if class_names is not None:
        order = tuple(class_names)
    elif split != "train" and os.path.isdir(os.path.join(root, "train")):
        order = read_class_folders(root, "train")
    else:
        order = None
    if order is not None and len(set(order)) != len(order):
        raise DataError(f"class_names has duplicates: {order}")

    if dirs:
        if val_labels_file is not None and split != "train":
            _LOG.info("%s has class folders; the labels file %s is not used.", folder, val_labels_file)
        order = order if order is not None else tuple(dirs)
        index = {name: i for i, name in enumerate(order)}
        unknown = [d for d in dirs if d not in index]
        if unknown:
            raise DataError(
                f"Split {split!r} ({folder!r}) has class folder {unknown[0]!r}"
                f"{f' (and {len(unknown) - 1} more: {unknown[1:5]})' if len(unknown) > 1 else ''}"
                f", not among the {len(order)} training classes ({', '.join(order[:5])}"
                f"{', ...' if len(order) > 5 else ''}); an evaluation split may lack training "
                f"classes, never add its own.")
        paths, labels = [], []
        for name in dirs:
            class_dir = os.path.join(folder, name)
            sub_dirs, files = _scan(class_dir)
            if not files:
                raise DataError(
                    f"Class folder {class_dir!r} holds no images (expected files ending in "
                    f"{', '.join(IMAGE_EXTENSIONS)}, any case).")
            paths.extend(os.path.join(class_dir, f) for f in files)
            labels.extend([index[name]] * len(files))
        return paths, labels, order

    if not loose:
        raise DataError(
            f"{folder!r} holds no images and no class folders; expected {folder}/<wnid>/<image> "
            f"or {folder}/<image> (extensions {', '.join(IMAGE_EXTENSIONS)}, any case).")
    if val_labels_file is None:
        raise DataError(
            f"{folder!r} holds {len(loose)} images without class folders (the flat ImageNet "
            "validation layout); its labels need val_labels_file (--val_labels_file): "
            "imagenet_2012_validation_synset_labels.txt, or the devkit's "
            "ILSVRC2012_validation_ground_truth.txt with its meta.mat (--val_meta_file).")
    if order is None:
        raise DataError(
            f"{folder!r} is a flat split: its class order is that of the training split, but "
            f"{os.path.join(root, 'train')!r} does not exist and no class_names were given.")
    wnids = read_val_labels(val_labels_file, val_meta_file)
    if len(wnids) != len(loose):
        raise DataError(
            f"{val_labels_file!r} has {len(wnids)} labels but {folder!r} holds {len(loose)} "
            "images; expected one label per image, in sorted file-name order.")
    index = {name: i for i, name in enumerate(order)}
    labels = []
    for file_name, wnid in zip(loose, wnids):
        if wnid not in index:
            raise DataError(
                f"{val_labels_file!r} gives {file_name!r} the class {wnid!r}, which is not among "
                f"the {len(order)} training classes ({os.path.join(root, 'train')!r} or class_names).")
        labels.append(index[wnid])
    return [os.path.join(folder, f) for f in loose], labels, order


def read_synset_names(path: str) -> dict[str, str]:
    """wnid -> human-readable name from lines like ``n01440764 tench, Tinca tinca``.

    Reads Kaggle's ``LOC_synset_mapping.txt`` (space-separated) and the Inception/slim
    ``imagenet_metadata.txt`` (tab-separated). A line with only a wnid maps it to "".
    """
    names: dict[str, str] = {}
    for line in _read_lines(path):
        parts = line.split(None, 1)
        names[parts[0]] = parts[1].strip() if len(parts) > 1 else ""
    if not names:
        raise DataError(f"Synsets file {path!r} is empty; expected lines like 'n01440764 tench, Tinca tinca'.")
    return names
