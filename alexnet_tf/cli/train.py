r"""alexnet-train: train and evaluate AlexNet from a config file.

    alexnet-train --config=configs/demo.py --workdir=/tmp/alexnet_demo
    alexnet-train --config=configs/paper.py --workdir=runs/paper \
        --config.data.source=image_folder --config.data.data_dir=/data/imagenet

(or ``python -m alexnet_tf.train``). ``--config=FILE[:arg]`` names a config file (its
``get_config(arg)``), ``--config.key=value`` overrides one of its keys, ``--workdir``
receives the resolved config, checkpoints, TensorBoard logs and metrics. The config is
validated before anything is written. To list the config keys, with the values a
command line gives them, add ``--print_config`` (nothing is trained)::

    alexnet-train --config=configs/demo.py --print_config

their defaults and what each means are in alexnet_tf/config.py (``base_config``).

Fine-tuning (Sec. 6) starts from a model source (a run's work directory, a checkpoint,
a .keras file, a tools/convert_weights.py directory)::

    alexnet-train --config=configs/finetune.py --workdir=runs/flowers \
        --config.model.init_from=weights/caffe --config.data.data_dir=/data/flowers \
        --config.model.num_classes=5

The source's input convention and architecture replace the config file's values; a
``--config.*`` flag given here that contradicts them stops the run, naming both values,
unless ``--config.model.init_from_flags_win=True``.
"""

from __future__ import annotations

from absl import app, flags
from ml_collections import config_flags

from alexnet_tf.cli import app as cli_app

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/*.py), optionally with :arg.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for the run's outputs.")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False,
    "Resume a run whose config.json differs from --config (the old one is kept as "
    "config.<n>.json); without it such a work directory is refused.")
_PRINT_CONFIG = flags.DEFINE_bool(
    "print_config", False, "Print the config (every key, with --config.key=value applied "
    "and validated) as JSON and exit, without training; --workdir is not needed.")


def read_config():
    """The validated config of --config and its overrides; a file that cannot be loaded
    or a value the schema refuses is a usage error (status 2)."""
    config = cli_app.validated_config_flag_value("config")
    if config is None:
        raise app.UsageError("give --config=FILE, a config file such as configs/demo.py "
                             "(optionally FILE:arg)")
    return config


def main(argv) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; flags take the form "
                             f"--name=value")
    config = read_config()
    if _PRINT_CONFIG.value:
        print(config.to_json_best_effort(indent=2, sort_keys=True))
        return 0
    if not _WORKDIR.value:
        raise app.UsageError("give --workdir=DIR, the run's directory (new, or a run's to "
                             "resume it)")
    from alexnet_tf import run as run_lib  # imports no TensorFlow

    run_lib.check_workdir_path(_WORKDIR.value)  # before TensorFlow loads; loop checks it too
    from alexnet_tf.train import loop

    # The keys the user set on this command line: with model.init_from, a source's value
    # replaces the config file's, but one of these that contradicts it stops the run.
    explicit = set(config_flags.get_override_values(flags.FLAGS["config"]))
    # Validated above, once: `train` takes a validated config. The user's own mistakes
    # below (the cluster, model.init_from, the data, a busy or damaged work directory)
    # are `alexnet_tf.errors.UserError`s: cli_app.run prints them as one line.
    loop.train(config, _WORKDIR.value, allow_config_change=_ALLOW_CONFIG_CHANGE.value,
               explicit_keys=explicit)
    return 0


def run() -> None:
    """Console-script entry point (``alexnet-train``)."""
    cli_app.run(main, __name__, name="alexnet-train")


if __name__ == "__main__":
    run()
