"""The package's binaries. Every binary lives here, as a thin absl ``app.run`` over
library functions: module-level ``flags.DEFINE_*``, a ``main(argv)`` that checks its
arguments, imports the library and calls it, and a docstring that opens with the commands
that run it. `alexnet_tf.cli.app.run` starts each one (and every tool in tools/), so
that its --help lists its own flags and exits with status 0, a mistake of the user's is
one line (``<binary>: error: ...``; status 2 for usage, 1 for the rest) and a bug keeps
its traceback, and TensorFlow's start-up logs are silenced (`alexnet_tf.cli.tf_logs`);
--help imports neither TensorFlow nor Keras (binaries import the library inside
``main``).

* `alexnet_tf.cli.train`: ``alexnet-train``
* `alexnet_tf.cli.eval`: ``alexnet-eval``
* `alexnet_tf.cli.export`: ``alexnet-export``
* `alexnet_tf.cli.predict`: ``alexnet-predict``
"""
