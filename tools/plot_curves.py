r"""A run's training curves (loss, top-1/top-5 error, learning rate; train and eval) as one PNG.

    python tools/plot_curves.py --workdir=runs/demo --output=curves.png

Reads the TensorBoard event files in ``<workdir>/tensorboard/{train,eval}`` (no
TensorBoard server needed) and plots each scalar against the training step. Needs
matplotlib: ``pip install -e '.[plots]'``; without it the tool says so in one line
(``plot_curves.py: error: ... pip install -e '.[plots]' ...``) and exits with status 1
before reading the logs.
"""

from absl import app, flags

from alexnet_tf.cli import app as cli_app

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's work directory.")
_OUTPUT = flags.DEFINE_string("output", "curves.png", "Where to write the PNG; an existing "
                              "file is refused unless --overwrite.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing --output file.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from alexnet_tf import outputs
    from alexnet_tf.analysis import curves

    outputs.check_new_file(_OUTPUT.value, _OVERWRITE.value)

    curves.require_matplotlib()  # one line naming the extra, before the logs are read
    scalars, _ = curves.plot_run(_WORKDIR.value, _OUTPUT.value)
    print("\n".join(curves.summary_lines(scalars)))
    print(f"Wrote {_OUTPUT.value}.")


if __name__ == "__main__":
    cli_app.run(main, __name__)
