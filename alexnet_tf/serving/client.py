r"""The client of an exported model: TF Serving over REST or gRPC, or the SavedModel in-process.

The ``alexnet-predict`` binary (`alexnet_tf.cli.predict`) is a thin command over it.
The functions return the signature's outputs as numpy arrays:
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
import urllib.error
import urllib.request
from typing import Mapping, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from alexnet_tf.serving import protocol
from alexnet_tf.serving.protocol import DEFAULT_SIGNATURE, ServingError


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
