r"""Nearest training images in fc7 feature space, as a PNG grid like Fig. 4 (Sec. 6.1).

    python tools/retrieve.py --workdir=runs/demo --split=train --query_split=val --num_queries=8 --k=5 --output=neighbours.png
    python tools/retrieve.py --workdir=runs/demo --query=my_photos/,cat.jpg --k=5
    python tools/retrieve.py --saved_model=exports/alexnet --data_dir=/data/imagenet --split=train \
        --query_split=val --features_cache=/data/features

The model: a run (``--workdir`` and ``--checkpoint``: auto, the best else the latest; latest, best or a path), any model
source (``--model``: a ``.keras`` file, converted-weights directory, run or checkpoint;
`alexnet_tf.model_source`), or a SavedModel whose
``features`` signature takes encoded images (``--saved_model``: a version directory such as
``exports/alexnet/1``, or the export's base directory ``exports/alexnet``, whose highest
version is used, as ``alexnet-predict --saved_model`` and TF Serving do). The data: the run's
config (any source: image folder, TFRecords, TFDS, demo), or ``--data_dir``
(``DIR/<split>/<class>/*``, or TFRecords with ``--data_source=tfrecord``, or a TFDS
data_dir with ``--data_source=tfds`` and a run whose config names the builder). The
split's fc7 features are computed once into ``--features_cache`` (default
``<workdir>/features``) and reused while the weights, preprocessing and split stay the
same. A cache whose files are damaged (truncated, unreadable, not what its manifest
says) is computed again in place, with a warning naming the file: it holds nothing but
what the split gives again. A ``manifest.json`` there that this tool did not write (not
JSON, truncated, other keys) stops the tool with one line naming it, and nothing in the
directory is overwritten: delete the directory, or give another ``--features_cache``.

Queries: image files or directories (``--query``, class unknown: neighbours only), and/or
``--num_queries`` examples of a labelled split (``--query_split``), for which the
fraction of neighbours sharing the query's class is printed. A query file that is not an
image is skipped with a message naming it.
"""

from absl import app, flags

from alexnet_tf import config as config_lib  # imports no TensorFlow
from alexnet_tf.cli import app as cli_app

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's work directory.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", "auto", "'auto' (best, else latest, as alexnet-eval and alexnet-export), "
    "'latest', 'best', a checkpoint directory or a checkpoint path.")
_MODEL = flags.DEFINE_string("model", None, "A model source: a .keras file, a "
                             "converted-weights directory, a run or a checkpoint.")
_SAVED_MODEL = flags.DEFINE_string(
    "saved_model", None, "A SavedModel with a 'features' signature on image bytes: a "
    "version directory (exports/alexnet/1) or an export's base directory (exports/alexnet: "
    "its highest version, as alexnet-predict --saved_model).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Dataset root (default: the run's).")
_DATA_SOURCE = flags.DEFINE_enum("data_source", None, list(config_lib.DATA_SOURCES),
                                 "How --data_dir is stored (default: the run's source, "
                                 "image_folder when that is demo or there is no run).")
_SPLIT = flags.DEFINE_string("split", "train", "The split to search (Fig. 4: the training set).")
_QUERY = flags.DEFINE_list("query", [], "Query image files or directories, comma-separated.")
_QUERY_SPLIT = flags.DEFINE_string("query_split", None,
                                   "Take --num_queries labelled queries from this split.")
_NUM_QUERIES = flags.DEFINE_integer("num_queries", 8, "Queries drawn from --query_split.")
_SEED = flags.DEFINE_integer("seed", 0, "Seeds the choice of queries from --query_split.")
_K = flags.DEFINE_integer("k", 5, "Neighbours per query.")
_OUTPUT = flags.DEFINE_string("output", "neighbours.png", "Where to write the PNG grid; an "
                              "existing file is refused unless --overwrite.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --output file.")
_FEATURES_CACHE = flags.DEFINE_string(
    "features_cache", None, "Directory for the split's features (default <workdir>/features).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Images per feature batch.")
_THUMB = flags.DEFINE_integer("thumb", 64, "Thumbnail side in pixels.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if sum(bool(v) for v in (_MODEL.value, _SAVED_MODEL.value)) > 1:
        raise app.UsageError("Give at most one of --model and --saved_model.")
    if not (_WORKDIR.value or _MODEL.value or _SAVED_MODEL.value):
        raise app.UsageError("Give --workdir=RUN, --model=PATH or --saved_model=DIR.")
    if not _QUERY.value and not _QUERY_SPLIT.value:
        raise app.UsageError("Give --query=FILES_OR_DIRS and/or --query_split=SPLIT.")
    if _SAVED_MODEL.value and not _WORKDIR.value:
        # An export has neither a run's data config nor its features directory: say
        # everything it needs at once.
        missing = [flag for flag, value in (("--data_dir=DIR", _DATA_DIR.value),
                                            ("--features_cache=DIR", _FEATURES_CACHE.value))
                   if not value]
        if missing:
            raise app.UsageError(f"--saved_model without --workdir=RUN also needs "
                                 f"{' and '.join(missing)} (the split to search, and where "
                                 f"its features are kept).")
    for name, flag in (("k", _K), ("num_queries", _NUM_QUERIES), ("batch_size", _BATCH_SIZE),
                       ("thumb", _THUMB)):
        if flag.value < 1:
            raise app.UsageError(f"--{name}={flag.value} must be >= 1.")
    from alexnet_tf import outputs

    outputs.check_new_file(_OUTPUT.value, _OVERWRITE.value,
                           inputs=[p for p in (_MODEL.value, _SAVED_MODEL.value) if p])
    from alexnet_tf.analysis import retrieval

    result = retrieval.retrieve(
        workdir=_WORKDIR.value, checkpoint=_CHECKPOINT.value, model_path=_MODEL.value,
        saved_model=_SAVED_MODEL.value, data_dir=_DATA_DIR.value, data_source=_DATA_SOURCE.value,
        split=_SPLIT.value, query_paths=_QUERY.value, query_split=_QUERY_SPLIT.value,
        num_queries=_NUM_QUERIES.value, seed=_SEED.value, k=_K.value, output=_OUTPUT.value,
        features_cache=_FEATURES_CACHE.value, batch_size=_BATCH_SIZE.value, thumb=_THUMB.value)
    print(retrieval.format_result(result))


if __name__ == "__main__":
    cli_app.run(main, __name__)
