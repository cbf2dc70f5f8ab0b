r"""alexnet-predict: classify image files with an exported model, and print the top-5.

    alexnet-predict --rest=http://localhost:8501 cat.jpg dog.png        # TF Serving, REST
    alexnet-predict --grpc=localhost:8500 cat.jpg                       # TF Serving, gRPC
    alexnet-predict --saved_model=exports/alexnet cat.jpg               # in-process, no server

(or ``python -m alexnet_tf.serving.client ...``, ``python tools/serving_client.py ...``).
The image files are sent as they are (JPEG, PNG, GIF or BMP; any size): the export
decodes, resizes, crops and normalises them. ``--model_name``, ``--version`` or
``--label``, ``--signature``, ``--form`` and ``--timeout`` choose what is asked; --help
lists them with their defaults.

The library functions behind it return the signature's outputs as numpy arrays:
`predict_rest` (urllib), `predict_grpc` (tensorflow-serving-api's PredictionService stub
over grpcio) and `predict_local` (``tf.saved_model.load``); `predict_files` reads image
files and calls one of them, `describe` makes the text the command prints. A failed
request raises `protocol.ServingError` with the server's message (HTTP 400 or gRPC
INVALID_ARGUMENT for a bad image), which the command prints as one line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Mapping, Sequence

import grpc
import numpy as np
import tensorflow as tf
from absl import app, flags
from tensorflow_serving.apis import prediction_service_pb2_grpc

from alexnet_tf.serving import protocol
from alexnet_tf.serving.protocol import DEFAULT_SIGNATURE, ServingError

_REST = flags.DEFINE_string("rest", None, "TF Serving's REST address, e.g. "
                            "http://localhost:8501.")
_GRPC = flags.DEFINE_string("grpc", None, "TF Serving's gRPC address, e.g. localhost:8500.")
_SAVED_MODEL = flags.DEFINE_string("saved_model", None, "Run this export in-process "
                                   "instead: a version directory, or the export directory "
                                   "(its highest version).")
_MODEL_NAME = flags.DEFINE_string("model_name", "alexnet", "The model's name on the server "
                                  "(MODEL_NAME).")
_VERSION = flags.DEFINE_integer("version", None, "A model version (default: the server's "
                                "latest).")
_LABEL = flags.DEFINE_string("label", None, "A version label from the server's "
                             "models.config.")
_SIGNATURE = flags.DEFINE_string("signature", DEFAULT_SIGNATURE, "The signature to call.")
_FORM = flags.DEFINE_enum("form", "row", ["row", "columnar"], "REST request body form.")
_TIMEOUT = flags.DEFINE_float("timeout", 30.0, "Seconds to wait for the server.")


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The top-k of one image, best first."""

    classes: tuple[int, ...]
    class_ids: tuple[str, ...]
    class_names: tuple[str, ...]
    scores: tuple[float, ...]


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def predictions(outputs: Mapping[str, np.ndarray]) -> list[Prediction]:
    """One `Prediction` per image from a classification signature's outputs."""
    missing = {"classes", "class_ids", "class_names", "scores"} - set(outputs)
    if missing:
        raise ServingError(f"The response has no {sorted(missing)} outputs (outputs: "
                           f"{sorted(outputs)}); is the signature a classification one?")
    return [Prediction(tuple(int(c) for c in classes), tuple(_text(i) for i in ids),
                       tuple(_text(n) for n in names), tuple(float(s) for s in scores))
            for classes, ids, names, scores in zip(
                outputs["classes"], outputs["class_ids"], outputs["class_names"],
                outputs["scores"])]


def format_predictions(labels: Sequence[str], results: Sequence[Prediction]) -> str:
    """The text the CLI prints: each image's label, then its ranked classes."""
    lines = []
    for label, result in zip(labels, results):
        lines.append(label)
        for rank, (index, class_id, name, score) in enumerate(zip(
                result.classes, result.class_ids, result.class_names, result.scores), 1):
            what = name if name == class_id else f"{name} ({class_id})"
            lines.append(f"  {rank}. {score:7.4f}  {what}  [class {index}]")
    return "\n".join(lines)


# ---------------------------------------------------------------------- REST


def predict_rest(base_url: str, images: Sequence[bytes], *, model_name: str = "alexnet",
                 version: int | None = None, label: str | None = None,
                 signature_name: str | None = None, form: str = "row",
                 timeout: float = 30.0) -> dict:
    """POSTs the images to TF Serving's REST predict API; returns output name -> array.

    ``base_url`` is the server, e.g. ``http://localhost:8501``. A single-output signature
    (``features``) comes back under ``"output"``.
    """
    url = protocol.predict_url(base_url, model_name, version=version, label=label)
    body = protocol.image_bytes_request(images, form=form, signature_name=signature_name)
    request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"),
                                     headers={"Content-Type": "application/json"},
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as error:
        text = error.read().decode("utf-8", "replace")
        try:
            message = json.loads(text)["error"]
        except (ValueError, KeyError, TypeError):
            message = text or error.reason
        raise ServingError(f"{url}: {message}", error.code) from None
    except urllib.error.URLError as error:
        raise ServingError(f"Cannot reach {url}: {error.reason}") from None
    return protocol.parse_rest_response(answer)


# ---------------------------------------------------------------------- gRPC


def grpc_request(images: Sequence[bytes], *, model_name: str = "alexnet",
                 version: int | None = None, label: str | None = None,
                 signature_name: str = DEFAULT_SIGNATURE, input_name: str = "image_bytes"):
    """A ``tensorflow.serving.PredictRequest`` carrying the images as a string [B] tensor."""
    return protocol.predict_request({input_name: [bytes(i) for i in images]},
                                    model_name=model_name, signature_name=signature_name,
                                    version=version, label=label)


def predict_grpc(target: str, images: Sequence[bytes], *, model_name: str = "alexnet",
                 version: int | None = None, label: str | None = None,
                 signature_name: str = DEFAULT_SIGNATURE, timeout: float = 30.0) -> dict:
    """Calls PredictionService.Predict at ``target`` (``host:8500``); output name -> array."""
    request = grpc_request(images, model_name=model_name, version=version, label=label,
                           signature_name=signature_name)
    # Encoded photos easily pass gRPC's default 4 MB message limit.
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(target, options=options) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            response = stub.Predict(request, timeout=timeout)
        except grpc.RpcError as error:
            raise ServingError(f"{target}: {error.details()}", error.code().name) from None
    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


# ------------------------------------------------------------------ in-process


def tf_error_message(message: str) -> str:
    """The line of a TensorFlow error that says what is wrong (an Assert's message, or the
    kernel's), without Python's "Graph execution error" and node-location lines."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("assertion failed:"):
            return line
    skip = ("Graph execution error", "Detected at node", "<stack traces", "[[{{node")
    useful = [line for line in lines if not line.startswith(skip)]
    return useful[0] if useful else message


def saved_model_path(path: str) -> str:
    """``path`` if it is a SavedModel, else its highest integer version (as TF Serving)."""
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    versions = [int(n) for n in os.listdir(path) if n.isdigit()] if os.path.isdir(path) else []
    if not versions:
        raise ServingError(f"{path!r} is neither a SavedModel nor a directory of versions.")
    return os.path.join(path, str(max(versions)))


def predict_local(path: str, images: Sequence[bytes], *,
                  signature_name: str = DEFAULT_SIGNATURE) -> dict:
    """Runs the SavedModel's signature in this process; output name -> array."""
    loaded = tf.saved_model.load(saved_model_path(path))
    if signature_name not in loaded.signatures:
        raise ServingError(f"No signature {signature_name!r}; the export has "
                           f"{sorted(loaded.signatures)}.")
    function = loaded.signatures[signature_name]
    try:
        outputs = function(image_bytes=tf.constant([bytes(i) for i in images], tf.string))
    except tf.errors.InvalidArgumentError as error:
        raise ServingError(tf_error_message(error.message), "INVALID_ARGUMENT") from None
    return {name: value.numpy() for name, value in outputs.items()}


# ------------------------------------------------------------------ files -> text


def predict_files(paths: Sequence[str], *, rest: str | None = None, grpc: str | None = None,
                  saved_model: str | None = None, model_name: str = "alexnet",
                  version: int | None = None, label: str | None = None,
                  signature_name: str = DEFAULT_SIGNATURE, form: str = "row",
                  timeout: float = 30.0) -> dict:
    """Reads the image files and sends them through exactly one of ``rest`` (a REST
    address), ``grpc`` (a gRPC address) or ``saved_model`` (an export, in-process);
    returns output name -> array. Raises ValueError for no files or not exactly one
    transport, OSError for a file that cannot be read, `ServingError` for a failed
    prediction."""
    given = [name for name, value in (("--rest", rest), ("--grpc", grpc),
                                      ("--saved_model", saved_model)) if value]
    if len(given) != 1:
        raise ValueError("give exactly one of --rest, --grpc, --saved_model" +
                         (f" (got {' and '.join(given)})" if given else ""))
    if not paths:
        raise ValueError("give at least one image file")
    images = []
    for path in paths:
        with open(path, "rb") as file:
            images.append(file.read())
    if rest:
        return predict_rest(rest, images, model_name=model_name, version=version,
                            label=label, signature_name=signature_name, form=form,
                            timeout=timeout)
    if grpc:
        return predict_grpc(grpc, images, model_name=model_name, version=version,
                            label=label, signature_name=signature_name, timeout=timeout)
    return predict_local(saved_model, images, signature_name=signature_name)


def describe(labels: Sequence[str], outputs: Mapping[str, np.ndarray]) -> str:
    """The text the command prints: the top-k of a classification signature
    (`format_predictions`), else the first values of each image's single output (e.g.
    ``features``)."""
    if "classes" in outputs:
        return format_predictions(labels, predictions(outputs))
    (name, values), *_ = outputs.items()
    return "\n".join(f"{label}: {name} {row.shape} {np.array2string(row[:8])}..."
                     for label, row in zip(labels, np.asarray(values)))


# ---------------------------------------------------------------------- binary


def main(argv: Sequence[str]) -> int:
    """The ``alexnet-predict`` command, for ``app.run``: ``argv`` is the program name and
    the image files. Returns 0, or 1 after printing one line for an unreadable file or a
    failed prediction; wrong arguments raise `app.UsageError`."""
    files = list(argv[1:])
    try:
        outputs = predict_files(
            files, rest=_REST.value, grpc=_GRPC.value, saved_model=_SAVED_MODEL.value,
            model_name=_MODEL_NAME.value, version=_VERSION.value, label=_LABEL.value,
            signature_name=_SIGNATURE.value, form=_FORM.value, timeout=_TIMEOUT.value)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    except (OSError, ServingError) as error:
        print(f"alexnet-predict: {error}", file=sys.stderr)
        return 1
    print(describe(files, outputs))
    return 0


def run() -> None:
    """Console-script entry point (``alexnet-predict``): ``app.run(main)``.

    absl's --help prints ``__main__``'s docstring and the flags of the module named
    ``sys.argv[0]``; under a console script (whose ``__main__`` is pip's wrapper) this
    module's docstring and flags stand in for them.
    """
    main_module = sys.modules["__main__"]
    if main_module is not sys.modules.get(__name__):
        for flag in flags.FLAGS.get_key_flags_for_module(__name__):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
        if not main_module.__doc__:
            main_module.__doc__ = __doc__
    app.run(main)


if __name__ == "__main__":
    run()
