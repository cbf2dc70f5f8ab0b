r"""alexnet-eval: top-1/top-5 error of a run's checkpoint, centre crop or ten crops.

    alexnet-eval --workdir=runs/paper                       # latest checkpoint, centre crop
    alexnet-eval --workdir=runs/paper --checkpoint=best --ten_crop --split=val

Uses the run's own config.json (model, input convention, data source). Prints the
error rates and writes them as JSON (default: WORKDIR/eval_<split>_<crops>.json).
"""

from __future__ import annotations

from absl import app, flags

from alexnet_tf.cli import app as cli_app

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's work directory.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", "latest",
                                  "'latest', 'best' or a checkpoint path.")
_SPLIT = flags.DEFINE_string("split", None, "Split to evaluate; default: the run's eval split.")
_TEN_CROP = flags.DEFINE_bool("ten_crop", False, "Sec. 4.1's ten patches, softmax averaged.")
_OUTPUT = flags.DEFINE_string("output", None, "JSON file for the result.")
flags.mark_flags_as_required(["workdir"])


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from alexnet_tf import evaluate

    metrics = evaluate.evaluate_checkpoint(_WORKDIR.value, checkpoint=_CHECKPOINT.value,
                                           split=_SPLIT.value, ten_crop=_TEN_CROP.value,
                                           output=_OUTPUT.value)
    print(f"top-1 error {metrics['top1_error']:.4f}  top-5 error {metrics['top5_error']:.4f}  "
          f"({metrics['examples']} images, {metrics['crops']} crop, {metrics['checkpoint']})")


def run() -> None:
    """Console-script entry point (``alexnet-eval``)."""
    cli_app.run(main, __name__)


if __name__ == "__main__":
    run()
