r"""Colour statistics of an image folder: mean (Sec. 2) and RGB PCA for lighting (Sec. 4.1).

    python tools/dataset_stats.py --data_dir=DIR --split=train --output=stats.npz \
        [--max_images=N] [--resize_size=256] [--seed=0] [--batch_size=64]

Reads ``DIR/<split>/<class>/*``
(`alexnet_tf.data.sources.ImageFolderSource.from_directory`), decodes,
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Image folder root: DIR/<split>/<class>/<image>.")
_SPLIT = flags.DEFINE_string("split", "train", "The split folder to read (Sec. 2: the training set).")
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the .npz (a .json goes beside it).")
_MAX_IMAGES = flags.DEFINE_integer("max_images", None,
                                   "Use a seeded random subset of this many images (all if unset).")
_RESIZE_SIZE = flags.DEFINE_integer("resize_size", 256,
                                    "Shorter side and central crop size (Sec. 2: 256).")
_SEED = flags.DEFINE_integer("seed", 0, "Seeds the --max_images subset.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Images decoded per tf.data batch.")
flags.mark_flags_as_required(["data_dir", "output"])


def image_dataset(paths, resize_size: int, batch_size: int):
    """uint8 [B, S, S, 3] batches of decoded, resized, centre-cropped images (Sec. 2)."""
    import tensorflow as tf

    from alexnet_tf.data import preprocess

    def load(path):
        image = preprocess.decode_rgb(tf.io.read_file(path))
        image = preprocess.central_crop(preprocess.resize_shorter_side(image, resize_size),
                                        resize_size)
        image.set_shape([resize_size, resize_size, 3])
        return image

    dataset = tf.data.Dataset.from_tensor_slices(list(paths))
    # deterministic (the default): the same files give bit-identical statistics every run.
    dataset = dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    output = _OUTPUT.value
    if not output.endswith(".npz"):
        raise app.UsageError(f"--output={output!r} must end in .npz (a .json is written beside it).")
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

    result = stats.compute_stats(image_dataset(paths, _RESIZE_SIZE.value, _BATCH_SIZE.value),
                                 total=len(paths), image_size=_RESIZE_SIZE.value, source=source)
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
    app.run(main)
