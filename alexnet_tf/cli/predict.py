r"""alexnet-predict: classify image files with an exported model, and print the top-5.

    alexnet-predict --rest=http://localhost:8501 cat.jpg dog.png        # TF Serving, REST
    alexnet-predict --grpc=localhost:8500 cat.jpg                       # TF Serving, gRPC
    alexnet-predict --saved_model=exports/alexnet cat.jpg               # in-process, no server

(or ``python -m alexnet_tf.cli.predict ...``, ``python tools/serving_client.py ...``).
The image files are sent as they are (JPEG, PNG, GIF or BMP, of any size within the
export's limits): the export decodes, resizes, crops and normalises them.
``--model_name``, ``--version`` or ``--label``, ``--signature``, ``--form`` and
``--timeout`` choose what is asked.

Each file gets its answer or its error: the files that can be read and decoded go to the
model as one batch and get their top-5 on stdout; each file that fails (missing, a
directory, not an image, truncated, refused by the model's size limits) gets one line on
stderr, ``alexnet-predict: error: PATH: REASON``, in the order of the files. The exit
status is 0 when every file was answered, 1 when any failed; a server that cannot be
reached or a wrong model, version or signature is one line and status 1; wrong flags exit
2. The library behind it is `alexnet_tf.serving.client`.
"""

from __future__ import annotations

import math
import sys
import urllib.parse
from typing import Sequence

from absl import app, flags

from alexnet_tf.cli import app as cli_app
from alexnet_tf.export import limits  # MAX_VERSION, without TensorFlow

NAME = "alexnet-predict"

_REST = flags.DEFINE_string("rest", None, "TF Serving's REST address, e.g. "
                            "http://localhost:8501.")
_GRPC = flags.DEFINE_string("grpc", None, "TF Serving's gRPC address, e.g. localhost:8500.")
_SAVED_MODEL = flags.DEFINE_string("saved_model", None, "Run this export in-process "
                                   "instead: a version directory, or the export directory "
                                   "(its highest version).")
_MODEL_NAME = flags.DEFINE_string("model_name", "alexnet", "The model's name on the server "
                                  "(MODEL_NAME).")
_VERSION = flags.DEFINE_integer("version", None, "A model version: an integer from 0 to "
                                f"{limits.MAX_VERSION} (TF Serving's versions are int64); "
                                "default: the server's latest.")
_LABEL = flags.DEFINE_string("label", None, "A version label from the server's "
                             "models.config.")
# TF Serving's name for a SavedModel's default signature (DEFAULT_SERVING_SIGNATURE_DEF_KEY).
_SIGNATURE = flags.DEFINE_string("signature", "serving_default", "The signature to call.")
_FORM = flags.DEFINE_enum("form", "row", ["row", "columnar"], "REST request body form.")
_TIMEOUT = flags.DEFINE_float("timeout", 30.0, "Seconds to wait for the server.")


def _check_request_flags() -> None:
    """Usage errors (status 2) for values no server can take; before TensorFlow loads."""
    timeout = _TIMEOUT.value
    if not (math.isfinite(timeout) and timeout > 0):
        raise app.UsageError(f"--timeout={timeout} must be a number of seconds > 0")
    if _VERSION.value is not None and _VERSION.value < 0:
        raise app.UsageError(f"--version={_VERSION.value} must be >= 0")
    if _VERSION.value is not None and _VERSION.value > limits.MAX_VERSION:
        raise app.UsageError(f"--version={_VERSION.value} must be <= {limits.MAX_VERSION} "
                             f"(TF Serving's versions are int64)")
    if flags.FLAGS["form"].present and not _REST.value:
        raise app.UsageError(f"--form={_FORM.value} shapes a REST request body; it has no "
                             f"effect without --rest")
    if not (_MODEL_NAME.value or "").strip() or "/" in _MODEL_NAME.value:
        raise app.UsageError(f"--model_name={_MODEL_NAME.value!r} must be the model's name "
                             f"on the server (MODEL_NAME, e.g. alexnet)")
    if _VERSION.value is not None and _LABEL.value:
        raise app.UsageError("give --version or --label, not both")
    if _SAVED_MODEL.value and (_VERSION.value is not None or _LABEL.value):
        raise app.UsageError("--version and --label choose a server's model version; with "
                             "--saved_model give the version directory (EXPORT/2) instead")
    if _REST.value:
        url = urllib.parse.urlsplit(_REST.value)
        if url.scheme not in ("http", "https") or not url.hostname or " " in _REST.value:
            raise app.UsageError(f"--rest={_REST.value!r} is not a server address; expected "
                                 f"e.g. http://localhost:8501")


# The command's name in its error lines, as `run` was given it: absl calls main(argv).
_name = NAME


def main(argv: Sequence[str]) -> int:
    """``argv``: the program name and the image files. Prints each answered file's top-5
    on stdout and each failed file's error on stderr (``NAME: error: PATH: REASON``, NAME
    as `run` was given it), in the order of the files; returns 0 when every file was
    answered, 1 when any failed. Wrong arguments raise `app.UsageError` (status 2); a
    request that fails as a whole (no server, no such model or signature, a signature
    that takes no image bytes) a `protocol.ServingError` (one line, status 1)."""
    files = list(argv[1:])
    # The client checks these too; here they come before TensorFlow loads.
    given = [f"--{flag.name}" for flag in (_REST, _GRPC, _SAVED_MODEL) if flag.value]
    if len(given) != 1:
        raise app.UsageError("give exactly one of --rest, --grpc, --saved_model" +
                             (f" (got {' and '.join(given)})" if given else ""))
    if not files:
        raise app.UsageError("give at least one image file")
    _check_request_flags()
    from alexnet_tf.serving import client  # TensorFlow loads here

    results = client.predict_files(
        files, rest=_REST.value, grpc=_GRPC.value, saved_model=_SAVED_MODEL.value,
        model_name=_MODEL_NAME.value, version=_VERSION.value, label=_LABEL.value,
        signature_name=_SIGNATURE.value, form=_FORM.value, timeout=_TIMEOUT.value)
    for result in results:
        # File by file, both streams flushed: on a terminal the lines come in file order.
        if result.ok:
            print(client.describe([result]), flush=True)
        else:
            print(f"{_name}: error: {result.path}: {result.error}", file=sys.stderr,
                  flush=True)
    return cli_app.ERROR_STATUS if any(not r.ok for r in results) else 0


def run(name: str = NAME) -> None:
    """Console-script entry point (``alexnet-predict``). ``name``: the command's name in
    its error lines (any non-empty string; tools/serving_client.py gives its own)."""
    global _name
    _name = name
    cli_app.run(main, __name__, name=name)


if __name__ == "__main__":
    run()
