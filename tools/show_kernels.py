r"""conv1 kernels as a PNG grid, towers apart, with colour-specificity scores (Sec. 6.1, Fig. 3).

    python tools/show_kernels.py --workdir=runs/demo [--checkpoint=auto|latest|best|PATH] [--output=kernels.png]
    python tools/show_kernels.py --model=weights/caffe --output=caffe_kernels.png

``--workdir`` builds the network from the run's config.json and restores the model
from a checkpoint (``auto``: the best, else the latest, as ``alexnet-eval``; ``latest``
or ``best`` of RUN/checkpoints, a checkpoint directory,
or a path such as RUN/checkpoints/ckpt-1200). ``--model`` reads any model source
(`alexnet_tf.model_source`): a ``.keras`` file, a directory of converted weights, a run or
a checkpoint. Prints each
tower's mean and median colour specificity (the chroma share of a kernel's energy; 0
grey, 1 pure colour; definition in alexnet_tf/analysis/kernels.py) so that the paper's
claim, one tower colour-agnostic and the other colour-specific, can be checked.
"""

from absl import app, flags

from alexnet_tf.cli import app as cli_app

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's work directory.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", "auto", "'auto' (best, else latest, as alexnet-eval and alexnet-export), "
    "'latest', 'best', a checkpoint directory or a checkpoint path.")
_MODEL = flags.DEFINE_string(
    "model", None, "A model source (a .keras file, a converted-weights directory, a run or "
    "a checkpoint), instead of --workdir's checkpoint.")
_OUTPUT = flags.DEFINE_string("output", "kernels.png", "Where to write the PNG grid; an "
                              "existing file is refused unless --overwrite.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --output file.")
_SCALE = flags.DEFINE_integer("scale", 4, "Upscaling factor of each kernel (pixel repetition).")
_COLUMNS = flags.DEFINE_integer("columns", 16, "Kernels per row within a tower (Fig. 3: 16).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not _WORKDIR.value and not _MODEL.value:
        raise app.UsageError("Give --workdir=RUN (with --checkpoint) or --model=FILE.keras|DIR.")
    if _SCALE.value < 1 or _COLUMNS.value < 1:
        raise app.UsageError("--scale and --columns must be >= 1.")
    from alexnet_tf import outputs

    outputs.check_new_file(_OUTPUT.value, _OVERWRITE.value,
                           inputs=[p for p in (_MODEL.value,) if p])
    from alexnet_tf.analysis import kernels

    report = kernels.show_kernels(_WORKDIR.value, checkpoint=_CHECKPOINT.value,
                                  model_path=_MODEL.value, output=_OUTPUT.value,
                                  scale=_SCALE.value, columns=_COLUMNS.value)
    print(kernels.format_report(report))


if __name__ == "__main__":
    cli_app.run(main, __name__)
