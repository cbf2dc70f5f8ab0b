r"""ImageNet image files -> sharded TFRecords, metadata.json and skipped-file reports.

    python tools/build_tfrecords.py --data_dir=DATA_DIR --output_dir=OUT \
        [--splits=train,val] [--train_shards=N] [--val_shards=N] \
        [--resize_shorter_side=256] [--format=jpeg|raw] [--workers=N] [--seed=0] [--jpeg_quality=95] \
        [--val_labels_file=imagenet_2012_validation_synset_labels.txt | \
         --val_labels_file=ILSVRC2012_validation_ground_truth.txt --val_meta_file=meta.mat] \
        [--synsets_file=LOC_synset_mapping.txt] [--overwrite] [--noprogress]

DATA_DIR/train/<wnid>/*.JPEG; DATA_DIR/val/ either in <wnid>/ folders or flat (then a
labels file). OUT may be DATA_DIR itself (with --overwrite: it is not empty; the shards
go beside the split folders, which are all the readers list), but not a folder inside
DATA_DIR/<split>/ or DATA_DIR/train/, where the shards would join the data.

Shards: by default each split gets the fewest shards of at most 128 MiB, by an estimate
made before writing from a sample of 64 of its images converted as they will be stored
(at least 1 shard, never more than the images): a few test images make one shard,
ImageNet's 1,281,167 training images about 374 at shorter side 256. ``--train_shards`` /
``--val_shards`` set the counts instead. The log and the summary line say how many each
split got and why.

The logic, output format and metadata.json keys are documented in
`alexnet_tf.data.convert`; the layout and label files in `alexnet_tf.data.imagenet`.
"""

import os

from absl import app, flags

from alexnet_tf.cli import app as cli_app  # one-line errors; TF's logs quiet (workers too)

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Holds <split>/<wnid>/<image> (or a flat <split>/).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Where shards and metadata.json go; must be "
                                  "empty or new unless --overwrite; not inside a split folder "
                                  "of --data_dir (--data_dir itself is fine).")
_SPLITS = flags.DEFINE_list("splits", ["train", "val"], "Split folders of --data_dir to "
                            "convert: one or more distinct plain folder names (letters, digits, "
                            "'_', '-', '.'; not starting with '.').")
_TRAIN_SHARDS = flags.DEFINE_integer(
    "train_shards", None, "Shards of the train split (default: automatic, the fewest of at "
    "most 128 MiB each by an estimate from a sample of the split).", lower_bound=1)
_VAL_SHARDS = flags.DEFINE_integer(
    "val_shards", None, "Shards of every other split (default: automatic, as "
    "--train_shards).", lower_bound=1)
_RESIZE = flags.DEFINE_integer("resize_shorter_side", 256, "Store every image with this shorter "
                               "side (Sec. 2 of the paper); 0 keeps the original sizes.", lower_bound=0)
_FORMAT = flags.DEFINE_enum(
    "format", "jpeg", ["jpeg", "raw"], "How each image is stored: jpeg (a JPEG file at "
    "--resize_shorter_side), or raw: the decoded uint8 pixels of its central "
    "--resize_shorter_side square (the paper's fixed 256x256 image, Sec. 2), which training "
    "crops with no decoding; 196,608 bytes per image at 256, about 5x a stored JPEG.")
_WORKERS = flags.DEFINE_integer("workers", None, "Worker processes (default: os.cpu_count()).",
                                lower_bound=1)
_VAL_LABELS = flags.DEFINE_string("val_labels_file", None, "Labels of a flat validation folder: "
                                  "one wnid per line or the devkit's ILSVRC2012_validation_ground_truth.txt.")
_VAL_META = flags.DEFINE_string("val_meta_file", None, "The devkit's data/meta.mat (needed with "
                                "integer ILSVRC2012_IDs; needs scipy).")
_SYNSETS = flags.DEFINE_string("synsets_file", None, "wnid -> name lines (LOC_synset_mapping.txt "
                               "or imagenet_metadata.txt) for image/class/text and metadata.json.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the file order shuffled into shards.")
_QUALITY = flags.DEFINE_integer("jpeg_quality", 95, "JPEG quality of re-encoded images.",
                                lower_bound=1, upper_bound=100)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Write into a non-empty --output_dir: the "
                               "converted splits' earlier shards (<split>-NNNNN-of-MMMMM) and "
                               "metadata.json are removed first; no other file is touched.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar on stderr.")
flags.mark_flags_as_required(["data_dir", "output_dir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    # Imports no TensorFlow: the flag checks below run before it loads.
    from alexnet_tf.data import convert

    problem = convert.splits_problem(_SPLITS.value)
    if problem:
        raise app.UsageError(f"--splits={','.join(_SPLITS.value)!r}: {problem}")
    problem = convert.output_dir_problem(_DATA_DIR.value, _OUTPUT_DIR.value, _SPLITS.value)
    if problem:
        raise app.UsageError(problem)
    if _FORMAT.value == "raw" and _RESIZE.value < 1:
        raise app.UsageError(f"--format=raw stores each image's central square of side "
                             f"--resize_shorter_side, which must be >= 1 (256 is the "
                             f"paper's), got {_RESIZE.value}")
    # --train_shards for the split named train, --val_shards for every other; None: automatic.
    shards = {split: _TRAIN_SHARDS.value if split == "train" else _VAL_SHARDS.value
              for split in _SPLITS.value}
    metadata = convert.build_tfrecords(
        _DATA_DIR.value, _OUTPUT_DIR.value, splits=_SPLITS.value, shards=shards,
        resize_shorter_side=_RESIZE.value, workers=_WORKERS.value,
        val_labels_file=_VAL_LABELS.value, val_meta_file=_VAL_META.value,
        synsets_file=_SYNSETS.value, seed=_SEED.value, jpeg_quality=_QUALITY.value,
        overwrite=_OVERWRITE.value, progress=_PROGRESS.value, image_format=_FORMAT.value)
    print(convert.summary_line(metadata, os.path.abspath(_OUTPUT_DIR.value)))
    return 0


if __name__ == "__main__":
    cli_app.run(main, __name__)
