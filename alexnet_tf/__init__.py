"""alexnet_tf: AlexNet (Krizhevsky, Sutskever, Hinton, NeurIPS 2012) in TensorFlow 2 / Keras 3.

The package runs on Keras 3 with the TensorFlow backend: its layers call TF ops
(``tf.nn.local_response_normalization``, grouped convolutions) and its input
pipelines are ``tf.data``.

Importing the package imports neither TensorFlow nor Keras: the names below load
their modules on first use (PEP 562), so that config files and every binary's
``--help`` start without them.
"""

import os

# Keras reads its backend once, at first import; choose TensorFlow unless the user
# already chose. `alexnet_tf.layers` refuses another backend when it is imported.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"

_LAZY = {
    "GroupedConv2D": "alexnet_tf.layers",
    "LocalResponseNormalization": "alexnet_tf.layers",
    "VARIANTS": "alexnet_tf.architecture",
    "create_model": "alexnet_tf.models",
    "load_model": "alexnet_tf.models",
    "feature_extractor": "alexnet_tf.models",
}

__all__ = [*_LAZY, "__version__"]

from alexnet_tf._lazy import attach  # noqa: E402  (after the backend choice above)

__getattr__, __dir__ = attach(__name__, _LAZY)
