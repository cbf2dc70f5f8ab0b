r"""alexnet-eval: top-1/top-5 error of any model source, or of an ensemble, centre crop or ten crops.

    alexnet-eval --model=runs/paper                          # best checkpoint, else latest
    alexnet-eval --model=runs/paper --checkpoint=latest --ten_crop --split=val
    alexnet-eval --model=weights/caffe --data_dir=/data/imagenet --split=val --class_names=synsets.txt
    alexnet-eval --model=runs/a,runs/b,runs/c --ten_crop --output=ensemble.json   # Sec. 6, Table 2

``--model``: a run's work directory, a checkpoint inside a run, a ``.keras`` file or a
directory written by tools/convert_weights.py (`alexnet_tf.model_source`); several,
separated by commas, form an ensemble whose softmax outputs are averaged (members must
share class names and input convention, and hold different weights; each member's errors
and the ensemble's are printed). ``--workdir=RUN`` is the same as ``--model=RUN``;
``--checkpoint`` chooses among that run's own checkpoints (a path inside it).

The data: a run brings its own config's data (what it trained on); ``--data_dir``,
``--data_source`` or a config file's data section (``--config=FILE``, with
``--config.data.key=value``) name other data, and are needed for sources without a run.
Classes map by name: a folder class the model does not know is refused, naming it and the
model's classes. A source that cannot be read (a damaged checkpoint) prints one line and
exits with status 1 (wrong flags: status 2).
A progress bar on stderr counts the images and their rate (``--noprogress``: none).
Prints the error rates and writes them as JSON (default: RUN/eval_<split>_<crops>.json, a
converted directory's own, or beside a .keras file, replacing an earlier result there; an
ensemble needs --output). An ``--output`` file that exists is refused before anything
runs, unless ``--overwrite``.
"""

from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

from alexnet_tf import config as config_lib  # the schema: imports no TensorFlow
from alexnet_tf.cli import app as cli_app

_MODEL = flags.DEFINE_string(
    "model", None, "Model source: a run, a checkpoint, a .keras file or converted weights; "
    "A,B,C: an ensemble of them.")
_WORKDIR = flags.DEFINE_string("workdir", None, "A run's work directory (same as --model=RUN).")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "auto",
                                  "For a run: 'auto' (best, else latest), 'best', 'latest' or "
                                  "a checkpoint path inside the run.")
_SPLIT = flags.DEFINE_string("split", None, "Split to evaluate; default: the data config's "
                             "eval split (a run's own, else 'val').")
_TEN_CROP = flags.DEFINE_bool("ten_crop", False, "Sec. 4.1's ten patches, softmax averaged.")
_OUTPUT = flags.DEFINE_string("output", None, "JSON file for the result; an existing file "
                              "is refused unless --overwrite.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --output file.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar (images, images/s) on "
                              "stderr.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "The data's directory (image folders "
                                "DIR/<split>/<class>/*, TFRecords or TFDS); replaces a run's.")
_DATA_SOURCE = flags.DEFINE_enum("data_source", None, list(config_lib.DATA_SOURCES),
                                 "How the data is stored; default: a run's (image_folder when "
                                 "--data_dir replaces a run's demo set), else image_folder.")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file whose data section names the data (e.g. a flat ImageNet "
    "validation folder's labels file); --config.data.key=value overrides.", lock_config=True)
_CLASS_NAMES = flags.DEFINE_string(
    "class_names", None, "Class names of the model's outputs, for sources without them "
    "(converted weights): one per line in output order, or a synsets file.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None, "Global batch size; default: a run's "
                                   "eval.global_batch_size, else 128.")


def main(argv) -> int:
    """The ``alexnet-eval`` command; returns the exit status. Wrong arguments raise
    ``app.UsageError`` (status 2); the user's other mistakes (a source, the data, a
    damaged checkpoint) are `alexnet_tf.errors.UserError`s, one line each (status 1)."""
    rest = list(argv[1:])
    if rest or bool(_MODEL.value) == bool(_WORKDIR.value):
        raise app.UsageError(f"give --model=SOURCE (or --workdir=RUN), one of them, and no "
                             f"other arguments (got {rest})")
    if _BATCH_SIZE.value is not None and not (
            1 <= _BATCH_SIZE.value <= config_lib.MAX_GLOBAL_BATCH_SIZE):
        raise app.UsageError(f"--batch_size={_BATCH_SIZE.value} must be in 1.."
                             f"{config_lib.MAX_GLOBAL_BATCH_SIZE}")
    if _SPLIT.value is not None:
        problem = config_lib.split_name_problem(_SPLIT.value)
        if problem:
            raise app.UsageError(f"--split={_SPLIT.value!r}: {problem}")
    config = cli_app.validated_config_flag_value("config")
    # Imported here: the library needs TensorFlow, --help does not.
    from alexnet_tf import evaluate
    from alexnet_tf import run as run_lib

    if _WORKDIR.value:
        run_lib.Run(_WORKDIR.value).config  # --workdir names a run: say so if it is not
    metrics = evaluate.evaluate(
        _MODEL.value or _WORKDIR.value, checkpoint=_CHECKPOINT.value,
        class_names_file=_CLASS_NAMES.value, config=config, data_dir=_DATA_DIR.value,
        data_source=_DATA_SOURCE.value, split=_SPLIT.value, ten_crop=_TEN_CROP.value,
        batch_size=_BATCH_SIZE.value, output=_OUTPUT.value, overwrite=_OVERWRITE.value,
        progress=_PROGRESS.value)
    print(evaluate.format_metrics(metrics))
    return 0


def run() -> None:
    """Console-script entry point (``alexnet-eval``)."""
    cli_app.run(main, __name__, name="alexnet-eval")


if __name__ == "__main__":
    run()
