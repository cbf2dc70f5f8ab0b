r"""alexnet-train: train and evaluate AlexNet from a config file.

    alexnet-train --config=configs/demo.py --workdir=/tmp/alexnet_demo
    alexnet-train --config=configs/paper.py --workdir=runs/paper \
        --config.data.source=image_folder --config.data.data_dir=/data/imagenet

(or ``python -m alexnet_tf.train``). ``--config=FILE[:arg]`` names a config file (its
``get_config(arg)``), ``--config.key=value`` overrides one of its keys, ``--workdir``
receives the resolved config, checkpoints, TensorBoard logs and metrics. The config is
validated before anything is written. The keys and their defaults are in
alexnet_tf/config.py (``base_config``).

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

import re
import sys

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
flags.mark_flags_as_required(["config", "workdir"])


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from alexnet_tf import config as config_lib

    try:
        # config_flags defers errors of loading the file and of applying
        # --config.key=value overrides until the value is read: turn each into one
        # message naming the file or key, instead of a traceback.
        config = config_lib.validate(_CONFIG.value)
    except (config_lib.ConfigError, OSError, AttributeError, KeyError, TypeError,
            ValueError) as error:
        raise app.UsageError(f"Bad --config: {error}") from None
    from alexnet_tf import model_source
    from alexnet_tf import run as run_lib
    from alexnet_tf.train import finetune, loop
    from alexnet_tf.train.distribute import ClusterConfigError

    # The keys the user set on this command line: with model.init_from, a source's value
    # replaces the config file's, but one of these that contradicts it stops the run.
    explicit = set(config_flags.get_override_values(flags.FLAGS["config"]))
    try:
        # Validated above, once: `train` takes a validated config.
        loop.train(config, _WORKDIR.value, allow_config_change=_ALLOW_CONFIG_CHANGE.value,
                   explicit_keys=explicit)
    except (ClusterConfigError, finetune.FineTuneError, config_lib.ConfigError,
            model_source.SourceError, run_lib.RunError) as error:
        # The user's own settings (the cluster, model.init_from and what it adopts, a
        # source whose weights or classes cannot be read, a work directory in use or
        # with damaged checkpoints): one message, not a traceback.
        raise app.UsageError(str(error)) from None


def parse_flags(argv):
    """absl's parser, plus a one-line error for a --config.key=value naming no key.

    ml_collections raises that as a KeyError/AttributeError from inside flag
    parsing, which absl would show as a traceback.
    """
    try:
        return app.parse_flags_with_usage(argv)
    except (AttributeError, KeyError) as error:
        message = str(error)
        match = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', message)
        if match:
            message = f"{match.group(2)!r} is not a key; did you mean {match.group(1)!r}?"
        sys.stderr.write(f"FATAL Flags parsing error: unknown config key in a --config.* "
                         f"override: {message}\n")
        sys.exit(1)


def run() -> None:
    """Console-script entry point (``alexnet-train``)."""
    cli_app.run(main, __name__, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
