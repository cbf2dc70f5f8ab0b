# ``python -m alexnet_tf.train``: the same binary as ``alexnet-train`` (no docstring here,
# so that --help prints alexnet_tf/cli/train.py's).
from alexnet_tf.cli.train import run

if __name__ == "__main__":
    run()
