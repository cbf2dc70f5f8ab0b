r"""Colour statistics of an image folder: mean (Sec. 2) and RGB PCA for lighting (Sec. 4.1).

    python tools/dataset_stats.py --data_dir=DIR --split=train --output=stats.npz \
        [--max_images=N] [--resize_size=256] [--seed=0] [--batch_size=64] \
        [--on_bad_record=skip|fail]

Reads ``DIR/<split>/<class>/*``
(`alexnet_tf.data.sources.ImageFolderSource.from_directory`), decodes by the one decode
rule (`alexnet_tf.data.decode`: alpha over white, EXIF orientation, as training and
serving do), names and skips bad files (``--on_bad_record=fail`` stops at the first),
scales the shorter side to ``--resize_size`` and takes the central square (Sec. 2,
`alexnet_tf.data.preprocess`), and streams the images through
`alexnet_tf.data.stats.compute_stats`. Writes ``stats.npz`` (all fields, including the
mean image) and ``stats.json`` beside it (everything but the mean image); read it back
with `alexnet_tf.data.stats.load`. The eigenvalues are covariance eigenvalues of [0, 1]
pixels (variances, not square roots), the scale `preprocess.pca_lighting` expects.

``--max_images`` takes a seeded uniform random subset. ImageNet's 1.28M training images
are far more than these statistics need: the image, not the pixel, is the independent
unit (pixels of one photo are correlated), and with N images the standard error of a
channel mean is roughly (spread of per-image means, an estimated ~40 grey levels) /
sqrt(N). ``--max_images=50000`` (4% of ImageNet) should give the per-channel mean to
~0.2 levels, the eigenvalues to ~1% and each mean-image pixel to well under a grey
level, in minutes rather than hours; compare two seeds to see the actual spread.
"""

import os
import sys

from absl import app, flags

from alexnet_tf.cli import app as cli_app
from alexnet_tf.errors import UserError

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Image folder root: DIR/<split>/<class>/<image>.")
_SPLIT = flags.DEFINE_string("split", "train", "The split folder to read (Sec. 2: the training set).")
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the .npz (a .json goes beside "
                              "it); existing files are refused unless --overwrite.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --output file.")
_MAX_IMAGES = flags.DEFINE_integer("max_images", None,
                                   "Use a seeded random subset of this many images (all if unset).")
_RESIZE_SIZE = flags.DEFINE_integer("resize_size", 256,
                                    "Shorter side and central crop size (Sec. 2: 256).")
_SEED = flags.DEFINE_integer("seed", 0, "Seeds the --max_images subset.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Images decoded per tf.data batch.")
_ON_BAD_RECORD = flags.DEFINE_enum(
    "on_bad_record", "skip", ["skip", "fail"],
    "A file that cannot be used (empty, not an image, truncated, too large, unreadable): "
    "skip it, naming it and the reason (and list them at the end), or stop, naming it.")
flags.mark_flags_as_required(["data_dir", "output"])


def image_dataset(paths, resize_size: int, batch_size: int):
    """(uint8 [S, S, 3] image, reason) per path, in order: the file decoded by the one
    decode rule (`alexnet_tf.data.decode`, through `alexnet_tf.data.preprocess`), its
    shorter side scaled to S and the central square taken (Sec. 2); ``reason`` is ""
    for a good image, else why it is bad (a bad image gives a placeholder)."""
    import tensorflow as tf

    from alexnet_tf.data import decode, preprocess

    placeholder = tf.zeros([resize_size, resize_size, 3], tf.uint8)

    def load(path):
        encoded = tf.io.read_file(path)
        reason = decode.problem(encoded)

        def image():
            pixels = preprocess.decode_rgb(encoded)
            pixels = preprocess.central_crop(preprocess.resize_shorter_side(pixels, resize_size),
                                             resize_size)
            pixels.set_shape([resize_size, resize_size, 3])
            return pixels

        return tf.cond(tf.equal(reason, ""), image, lambda: placeholder), reason

    dataset = tf.data.Dataset.from_tensor_slices(list(paths))
    # deterministic (the default): the same files give bit-identical statistics every run.
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(batch_size)


class BadImage(UserError):
    """A file that cannot be used (``--on_bad_record=fail``); the message names it."""


def good_batches(paths, resize_size: int, batch_size: int, *, on_bad_record: str = "skip",
                 skipped: list | None = None):
    """uint8 [B, S, S, 3] batches of the good images of ``paths``. Every bad file (empty,
    not an image, truncated, too large, unreadable, undecodable) is named on stderr with
    its reason and appended to ``skipped`` as (path, reason), or, with
    ``on_bad_record="fail"``, raises `BadImage` naming it."""
    import numpy as np
    import tensorflow as tf

    skipped = [] if skipped is None else skipped
    iterator = iter(image_dataset(paths, resize_size, batch_size))
    batch = []
    for path in paths:
        path = str(path)
        try:
            image, reason = next(iterator)
            reason = reason.numpy().decode("utf-8", "replace")
        except tf.errors.OpError as error:  # unreadable, or undecodable past the checks
            reason = f"{type(error).__name__}: {error.message.splitlines()[0]}"
        if reason:
            if on_bad_record == "fail":
                raise BadImage(f"bad image {path}: {reason} (--on_bad_record=fail; skip "
                               f"it with --on_bad_record=skip)")
            print(f"alexnet_tf: skipping bad image {path} - {reason}", file=sys.stderr)
            skipped.append((path, reason))
            continue
        batch.append(image.numpy())
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    output = _OUTPUT.value
    if not output.endswith(".npz"):
        raise app.UsageError(f"--output={output!r} must end in .npz (a .json is written beside it).")
    from alexnet_tf import outputs

    outputs.check_new_file(output, _OVERWRITE.value)
    outputs.check_new_file(output[:-len(".npz")] + ".json", _OVERWRITE.value,
                           flag="the .json beside --output")
    for name, flag in (("resize_size", _RESIZE_SIZE), ("batch_size", _BATCH_SIZE)):
        if flag.value <= 0:
            raise app.UsageError(f"--{name}={flag.value} must be > 0.")
    if _MAX_IMAGES.value is not None and _MAX_IMAGES.value <= 0:
        raise app.UsageError(f"--max_images={_MAX_IMAGES.value} must be > 0 (leave it unset for all).")

    from alexnet_tf.data import sources, stats

    split = sources.ImageFolderSource.from_directory(_DATA_DIR.value, _SPLIT.value)
    chosen = stats.select_subset(len(split), _MAX_IMAGES.value, _SEED.value)
    paths = split.paths[chosen]
    subset = (f"{len(paths)} of {len(split)} images (random subset, seed {_SEED.value})"
              if len(paths) < len(split) else f"all {len(paths)} images")
    source = (f"image_folder {os.path.join(_DATA_DIR.value, _SPLIT.value)}: {subset}; shorter "
              f"side {_RESIZE_SIZE.value}, central {_RESIZE_SIZE.value}x{_RESIZE_SIZE.value} crop")
    print(f"Reading {source}")

    skipped = []
    result = stats.compute_stats(
        good_batches(paths, _RESIZE_SIZE.value, _BATCH_SIZE.value,
                     on_bad_record=_ON_BAD_RECORD.value, skipped=skipped),
        total=len(paths), image_size=_RESIZE_SIZE.value,
        source=source)
    if skipped:
        result.source = f"{source}; {len(skipped)} bad file(s) skipped"
        print(f"skipped {len(skipped)} bad file(s):")
        for path, reason in skipped:
            print(f"  {path}: {reason}")
    npz_path, json_path = result.save(output)

    r, g, b = result.mean_rgb
    print(f"images {result.count}, pixels {result.pixels}")
    print(f"mean_rgb (R, G, B on 0..255): {r:.2f}, {g:.2f}, {b:.2f}")
    print("eigval (covariance eigenvalues of [0, 1] pixels, descending): "
          + ", ".join(f"{v:.4f}" for v in result.eigval))
    print("eigvec (columns, rows R, G, B):")
    for row in result.eigvec:
        print("  [" + ", ".join(f"{v:+.4f}" for v in row) + "]")
    print(f"wrote {os.path.abspath(npz_path)} and {os.path.abspath(json_path)}")


if __name__ == "__main__":
    cli_app.run(main, __name__)
