r"""alexnet-export: any model source as a SavedModel for TensorFlow Serving.

    alexnet-export --model=runs/demo --export_dir=exports/alexnet
    alexnet-export --model=runs/paper --export_dir=exports/alexnet --version=7 --checkpoint=latest
    alexnet-export --model=weights/caffe --export_dir=exports/caffe --class_names=synsets.txt

(or ``python -m alexnet_tf.cli.export ...``). ``--model``: a run's work directory, a
checkpoint inside a run, a ``.keras`` file or a directory written by
tools/convert_weights.py (`alexnet_tf.model_source`); ``--workdir=RUN`` is the same as
``--model=RUN``; one model per export (an ensemble A,B is refused: export each member).
The export carries the source's input convention and class names
(``--class_names`` for converted weights without them: one per line, or a synsets file).
Writes EXPORT_DIR/<version>/, the next free version unless --version is given (an
existing one is never overwritten), and EXPORT_DIR/<version>.keras; TF Serving loads the
highest version. EXPORT_DIR is never a run's work directory or inside one. The library
function is `alexnet_tf.export.export`; docs/SERVING.md has the server commands. A
source, checkpoint (another run's, a damaged one) or version that cannot give an export
prints one line and exits with status 1 (wrong flags: status 2), and leaves no directory
behind.
"""

from __future__ import annotations

from absl import app, flags

from alexnet_tf.cli import app as cli_app
from alexnet_tf.export import limits  # the defaults and their check, without TensorFlow

_MODEL = flags.DEFINE_string("model", None, "Model source: a run, a checkpoint, a .keras file "
                             "or converted weights (one model: an ensemble is not exported).")
_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's work directory (same as "
                               "--model=RUN).")
_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "TF Serving's model base path: the "
                                  "export is written to EXPORT_DIR/<version>/ (outside any "
                                  "run's work directory).")
_VERSION = flags.DEFINE_integer("version", None, "Version to write: an integer from 0 to "
                                f"{limits.MAX_VERSION} (TF Serving's versions are int64); "
                                "default: the next free one.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "auto", "For a run: auto (best if the run has "
                                  "one, else latest), best, latest, a checkpoint prefix, or "
                                  "a directory of checkpoints, inside the run.")
_CLASS_NAMES = flags.DEFINE_string(
    "class_names", None, "Class names of the model's outputs, for sources without them "
    "(converted weights): one per line in output order, or a synsets file.")
_TOP_K = flags.DEFINE_integer(
    "top_k", None, f"Classes returned per image: an integer from 1 to the model's number "
    f"of classes; default: {limits.DEFAULT_TOP_K}, or all the classes of a model with fewer.")
_MAX_PIXELS = flags.DEFINE_integer("max_pixels", limits.DEFAULT_MAX_PIXELS,
                                   "Largest image accepted, in pixels: an integer >= 1.")
_MAX_ASPECT_RATIO = flags.DEFINE_float(
    "max_aspect_ratio", limits.DEFAULT_MAX_ASPECT_RATIO,
    "Largest accepted ratio of an image's longer side to its shorter side: a finite "
    "number >= 1 (a square image has 1). There is no 'no limit' (inf is refused): the "
    "shorter side is resized to the model's size, so a thin strip would become a huge "
    "image.")

_COMPUTE_DTYPE = flags.DEFINE_enum(
    "compute_dtype", "float32", list(limits.COMPUTE_DTYPES),
    "What the exported graph computes in: float32, or bfloat16 (weights stored in "
    "bfloat16) for CPUs with AVX512-BF16 or AMX and for GPUs from Ampere on; outputs stay float32.")


def main(argv) -> int:
    """The ``alexnet-export`` command, for ``app.run``; returns the exit status. Missing
    flags, extra arguments and a flag value no export takes (`limits.check_export_values`:
    --version, --top_k, --max_pixels, --max_aspect_ratio) raise ``app.UsageError``
    (status 2) before TensorFlow is imported; a source, checkpoint or version that
    cannot give an export (a --top_k above the model's classes, a version that exists)
    is an `alexnet_tf.errors.UserError` (one line, status 1)."""
    rest = list(argv[1:])
    if rest or bool(_MODEL.value) == bool(_WORKDIR.value) or not _EXPORT_DIR.value:
        raise app.UsageError("give --model=SOURCE (or --workdir=RUN) and --export_dir, and "
                             f"no other arguments (got {rest})")
    try:
        limits.check_export_values(version=_VERSION.value, top_k=_TOP_K.value,
                                   max_pixels=_MAX_PIXELS.value,
                                   max_aspect_ratio=_MAX_ASPECT_RATIO.value,
                                   compute_dtype=_COMPUTE_DTYPE.value, prefix="--")
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    # Imported here: the library needs TensorFlow, --help does not.
    from alexnet_tf import export as export_lib
    from alexnet_tf import run as run_lib

    if _WORKDIR.value:
        run_lib.Run(_WORKDIR.value).config  # --workdir names a run: say so if it is not
    path = export_lib.export(_MODEL.value or _WORKDIR.value, _EXPORT_DIR.value,
                             version=_VERSION.value, checkpoint=_CHECKPOINT.value,
                             top_k=_TOP_K.value, max_pixels=_MAX_PIXELS.value,
                             max_aspect_ratio=_MAX_ASPECT_RATIO.value,
                             class_names_file=_CLASS_NAMES.value,
                             compute_dtype=_COMPUTE_DTYPE.value)
    print(f"Exported {path}, computing in {_COMPUTE_DTYPE.value} (and {path}.keras, "
          f"float32 weights).")
    return 0


def run() -> None:
    """Console-script entry point (``alexnet-export``)."""
    cli_app.run(main, __name__, name="alexnet-export")


if __name__ == "__main__":
    run()
