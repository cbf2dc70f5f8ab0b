r"""The client of an exported model: TF Serving over REST or gRPC, or the SavedModel in-process.

The ``alexnet-predict`` binary (`alexnet_tf.cli.predict`) is a thin command over it.
`predict_rest` (urllib), `predict_grpc` (tensorflow-serving-api's PredictionService stub
over grpcio) and `predict_local` (``tf.saved_model.load``) send one batch of encoded
images and return the signature's outputs as numpy arrays; a failed request raises
`protocol.ServingError` with the server's message (HTTP 400 or gRPC INVALID_ARGUMENT
naming ``image_bytes[i]`` for a bad image).

`predict_files` answers each image file on its own: it returns a `FileResult` per path,
with the file's outputs or the reason it got none (the path unreadable, the bytes refused
by the one decode rule, or the model refusing that image), and sends the files that pass
as one batch. `describe` makes the text the command prints.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import re
import sys
import urllib.error
import urllib.request
from typing import Callable, Mapping, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from alexnet_tf.data import decode
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
    except (TimeoutError, ConnectionError, http.client.HTTPException) as error:
        # A server that answers too slowly or hangs up: the request's failure, not a bug.
        raise ServingError(f"{url}: no answer ({type(error).__name__}: {error or 'no reply'})"
                           ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ServingError(f"{url}: the answer is not TF Serving's JSON ({error})") from None
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
    """``path`` if it is a SavedModel, else its highest integer version directory that
    holds a ``saved_model.pb`` (as ``alexnet-export`` counts versions: an empty or
    half-copied version directory is passed over). Raises `ServingError` naming what
    the path holds."""
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    if not os.path.exists(path):
        raise ServingError(f"{path!r} does not exist; expected a SavedModel (an export's "
                           f"version directory) or an export directory of versions.")
    names = [n for n in os.listdir(path) if n.isdigit()] if os.path.isdir(path) else []
    versions = [int(n) for n in names
                if os.path.isfile(os.path.join(path, n, "saved_model.pb"))]
    if not versions:
        raise ServingError(f"{path!r} is neither a SavedModel nor a directory of versions"
                           + (f" (its version entries {sorted(names, key=int)} hold no "
                              f"saved_model.pb)" if names else "") + ".")
    return os.path.join(path, str(max(versions)))


def load_saved_model(path: str):
    """(the version directory, the loaded SavedModel) of ``path`` (`saved_model_path`).
    Raises `ServingError` for a path without a SavedModel or a damaged one (a truncated
    variables file, a garbage saved_model.pb), naming the directory."""
    version = saved_model_path(path)
    try:
        return version, tf.saved_model.load(version)
    except (OSError, ValueError, RuntimeError, IndexError, tf.errors.OpError) as error:
        # The user's file, named: not a bug of the package.
        raise ServingError(f"The SavedModel in {version!r} cannot be loaded: "
                           f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
                           ) from None


IMAGE_BYTES_INPUT = "image_bytes"


def _takes_image_bytes(function) -> bool:
    """Whether a signature's only input is a string ``image_bytes``: what this client
    sends."""
    inputs = function.structured_input_signature[1]
    return (set(inputs) == {IMAGE_BYTES_INPUT}
            and inputs[IMAGE_BYTES_INPUT].dtype == tf.string)


def _describe_inputs(function) -> str:
    return ", ".join(f"{name} ({spec.dtype.name} {tuple(spec.shape)})" for name, spec in
                     sorted(function.structured_input_signature[1].items()))


def local_signature(path: str, signature_name: str = DEFAULT_SIGNATURE) -> Callable:
    """The concrete function of signature ``signature_name`` of the SavedModel at ``path``
    (see `saved_model_path`), loaded in this process, for `run_local`: a signature whose
    only input is ``image_bytes`` (string [B]), such as the exports' ``serving_default``
    and ``features``. Raises `ServingError` for a path that holds no SavedModel, a
    signature it does not have, or one that takes other inputs (``pixels``: the error
    names its inputs and the signatures that take image bytes)."""
    _, loaded = load_saved_model(path)
    signatures = loaded.signatures
    if signature_name not in signatures:
        raise ServingError(f"No signature {signature_name!r}; the export has "
                           f"{sorted(signatures)}.")
    function = signatures[signature_name]
    if not _takes_image_bytes(function):
        takers = sorted(name for name, f in signatures.items() if _takes_image_bytes(f))
        raise ServingError(
            f"Signature {signature_name!r} takes {_describe_inputs(function)}, not "
            f"{IMAGE_BYTES_INPUT} (string (None,)): this client sends image files as "
            f"their bytes; the signatures of the export that take image bytes: {takers}.")
    return function


def run_local(function: Callable, images: Sequence[bytes]) -> dict:
    """Runs a `local_signature` on encoded images (its ``image_bytes`` input, string
    [B]); output name -> array [B, ...]. A refused image raises `ServingError` with code
    "INVALID_ARGUMENT" and the graph's message, as TF Serving would."""
    try:
        outputs = function(**{IMAGE_BYTES_INPUT: tf.constant([bytes(i) for i in images],
                                                             tf.string)})
    except tf.errors.InvalidArgumentError as error:
        raise ServingError(tf_error_message(error.message), "INVALID_ARGUMENT") from None
    return {name: value.numpy() for name, value in outputs.items()}


def predict_local(path: str, images: Sequence[bytes], *,
                  signature_name: str = DEFAULT_SIGNATURE) -> dict:
    """Runs the SavedModel's signature in this process; output name -> array."""
    return run_local(local_signature(path, signature_name), images)


# ------------------------------------------------------------------ files -> text


@dataclasses.dataclass(frozen=True)
class FileResult:
    """The answer for one image file of `predict_files`: ``outputs`` or ``error``.

    Attributes:
      path: the path as given (as a str).
      outputs: output name -> this image's value (the batch axis removed: ``classes``
        int [k], ``scores`` float [k], ..., or ``features`` float [D]); None when the
        file failed.
      error: why the file got no answer, without the path: the file cannot be read
        ("No such file or directory", "Is a directory", "Permission denied"), the one
        decode rule refuses its bytes ("not a JPEG, PNG, GIF or BMP image (12 bytes)",
        "truncated JPEG (...)"), or the model refused it (e.g. "100x6000 (height x
        width): its longer side is more than 50 times its shorter side"); None when it
        was answered.
    """

    path: str
    outputs: Mapping[str, np.ndarray] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the file was answered."""
        return self.error is None

    @property
    def prediction(self) -> Prediction | None:
        """The top-k of a classification signature's answer; None for a failed file or
        another signature's outputs (``features``)."""
        if self.outputs is None or "classes" not in self.outputs:
            return None
        (prediction,) = predictions({name: np.asarray(value)[None]
                                     for name, value in self.outputs.items()})
        return prediction


# The export refuses one image per request, naming it in its graph checks
# (`alexnet_tf.export.input_checks`): "assertion failed: [image_bytes[3] is empty (0
# bytes)]", with TF Serving's node lines after it. The verb goes: the reason is then the
# one decode rule's ("empty (0 bytes)", "no pixels (...)", "truncated JPEG (...), N bytes").
_REFUSED_IMAGE = re.compile(r"(\[?)image_bytes\[(\d+)\] (?:is an? (?=truncated)|is |has )?"
                            r"([^\n]*)")
# The codes of a refused input: TF Serving answers InvalidArgument with HTTP 400.
_REFUSED_CODES = (400, "INVALID_ARGUMENT")
# The pixel limits are the model's own (``alexnet-export --max_pixels``, unknown to a
# client of a server): the local check leaves them to the model, whose refusal names the
# image and is attributed to its file like the rule's other reasons.
_NO_PIXEL_LIMIT = sys.maxsize


def refused_image(error: ServingError) -> tuple[int, str] | None:
    """(i, reason) when ``error`` is the model refusing ``image_bytes[i]`` of the batch
    (HTTP 400 or INVALID_ARGUMENT; the reason without "image_bytes[i] is"), else None
    (the request failed as a whole: no server, no such model or signature, ...)."""
    if error.code not in _REFUSED_CODES:
        return None
    match = _REFUSED_IMAGE.search(error.message)
    if not match:
        return None
    reason = match.group(3).strip()
    if match.group(1) and reason.endswith("]"):  # Assert's "[message]"
        reason = reason[:-1]
    return int(match.group(2)), reason


def _read(path: str) -> tuple[bytes | None, str]:
    """(the file's bytes, "") or (None, why it cannot be read or decoded)."""
    data, problem = decode.read_image_file(path)  # a FIFO or /dev/zero must not hang
    if problem:
        return None, problem
    # The one decode rule in Python: the same reason the export's checks would give,
    # without a round trip, and without the bad bytes costing the batch.
    problem = decode.bytes_problem(data, max_pixels=_NO_PIXEL_LIMIT)
    return (None, problem) if problem else (data, "")


def _answer_batch(send: Callable[[Sequence[bytes]], dict], images: dict[int, bytes]
                  ) -> tuple[dict[int, dict], dict[int, str]]:
    """Sends ``images`` (position -> bytes) through ``send`` as one batch; returns
    (position -> that image's outputs, position -> the reason the model refused it).

    A refusal that names ``image_bytes[i]`` fails image i: it is taken out and the rest
    re-sent, until the model answers them all (the export names one image per refusal).
    A refusal (400 / INVALID_ARGUMENT) that names no image is attributed by sending each
    image alone; when every image fails alone too, the error was the request's, and is
    raised. Any other `ServingError` (no server, no such model or signature) is raised:
    it is no file's failure.
    """
    pending = dict(images)
    refused: dict[int, str] = {}
    while pending:
        positions = list(pending)
        try:
            outputs = send([pending[p] for p in positions])
        except ServingError as error:
            image = refused_image(error)
            if image is not None and image[0] < len(positions):
                refused[positions[image[0]]] = image[1]
                del pending[positions[image[0]]]
                continue
            if error.code not in _REFUSED_CODES or len(positions) == 1:
                raise
            return _answer_alone(send, pending, error, refused)
        return _rows(outputs, positions), refused
    return {}, refused


def _answer_alone(send, pending: dict[int, bytes], batch_error: ServingError,
                  refused: dict[int, str]) -> tuple[dict[int, dict], dict[int, str]]:
    """`_answer_batch` after a refusal that named no image: each image sent alone."""
    answered: dict[int, dict] = {}
    alone: dict[int, str] = {}
    named = False
    for position, data in pending.items():
        try:
            answered.update(_rows(send([data]), [position]))
        except ServingError as error:
            if error.code not in _REFUSED_CODES:
                raise
            image = refused_image(error)
            named = named or image is not None
            alone[position] = image[1] if image else error.message
    if not answered and not named:
        raise batch_error  # no image passes alone: the request itself is refused
    return answered, {**refused, **alone}


def _rows(outputs: Mapping[str, np.ndarray], positions: Sequence[int]) -> dict[int, dict]:
    """Position -> {output name -> row}: a batch's outputs split per image."""
    for name, value in outputs.items():
        if len(value) != len(positions):
            raise ServingError(f"The response's {name!r} holds {len(value)} rows for "
                               f"{len(positions)} images.")
    return {position: {name: np.asarray(value)[row] for name, value in outputs.items()}
            for row, position in enumerate(positions)}


def predict_files(paths: Sequence[str], *, rest: str | None = None, grpc: str | None = None,
                  saved_model: str | None = None, model_name: str = "alexnet",
                  version: int | None = None, label: str | None = None,
                  signature_name: str = DEFAULT_SIGNATURE, form: str = "row",
                  timeout: float = 30.0) -> list[FileResult]:
    """Classifies image files through exactly one of ``rest`` (a REST address), ``grpc``
    (a gRPC address) or ``saved_model`` (an export, in-process): one `FileResult` per
    path, in the order given, each with its outputs or its error.

    Each file is read and checked first by the one decode rule
    (`alexnet_tf.data.decode.bytes_problem`, the rule of the export's own checks, so the
    reasons are the model's); a file that cannot be read or that the rule refuses fails
    there. The others go to the model as one batch; an image the model still refuses
    (its size limits) fails alone and the rest are answered (see `_answer_batch`). The
    model is not contacted when no file passes.

    Raises:
      ValueError: no paths, or not exactly one transport.
      ServingError: the request failed as a whole (a server that cannot be reached, no
        such model, version or signature, an export that is not one): no file's failure.
    """
    given = [name for name, value in (("--rest", rest), ("--grpc", grpc),
                                      ("--saved_model", saved_model)) if value]
    if len(given) != 1:
        raise ValueError("give exactly one of --rest, --grpc, --saved_model" +
                         (f" (got {' and '.join(given)})" if given else ""))
    if not paths:
        raise ValueError("give at least one image file")
    paths = [os.fspath(path) for path in paths]
    images: dict[int, bytes] = {}
    errors: dict[int, str] = {}
    for position, path in enumerate(paths):
        data, problem = _read(path)
        if problem:
            errors[position] = problem
        else:
            images[position] = data
    answered: dict[int, dict] = {}
    if images:
        send = _sender(rest=rest, grpc=grpc, saved_model=saved_model, model_name=model_name,
                       version=version, label=label, signature_name=signature_name,
                       form=form, timeout=timeout)
        answered, refused = _answer_batch(send, images)
        errors.update(refused)
    return [FileResult(path, outputs=answered.get(position), error=errors.get(position))
            for position, path in enumerate(paths)]


def _sender(*, rest, grpc, saved_model, model_name, version, label, signature_name, form,
            timeout) -> Callable[[Sequence[bytes]], dict]:
    """images -> outputs through the one transport given; the SavedModel loaded once."""
    if rest:
        return lambda images: predict_rest(
            rest, images, model_name=model_name, version=version, label=label,
            signature_name=signature_name, form=form, timeout=timeout)
    if grpc:
        return lambda images: predict_grpc(
            grpc, images, model_name=model_name, version=version, label=label,
            signature_name=signature_name, timeout=timeout)
    function = local_signature(saved_model, signature_name)
    return lambda images: run_local(function, images)


def describe(results: Sequence[FileResult] | Sequence[str],
             outputs: Mapping[str, np.ndarray] | None = None) -> str:
    """The text the command prints for the answered files: the top-k of a classification
    signature (`format_predictions`), else the first values of each image's single
    output (e.g. ``features``). Failed results are left out (their ``error`` says why).

    ``describe(results)`` takes `predict_files`' results; ``describe(labels, outputs)``
    a label per image and a batch's outputs (output name -> array [B, ...]), as
    `predict_rest`, `predict_grpc` and `predict_local` return them.
    """
    if outputs is None:
        answered = [r for r in results if r.ok]
        return "\n".join(describe([r.path], {name: np.asarray(value)[None]
                                             for name, value in r.outputs.items()})
                         for r in answered)
    labels = results
    if "classes" in outputs:
        return format_predictions(labels, predictions(outputs))
    (name, values), *_ = outputs.items()
    # One line per image (numpy would wrap the values at 75 characters).
    return "\n".join(f"{label}: {name} {row.shape} "
                     f"{np.array2string(row[:8], max_line_width=sys.maxsize)}..."
                     for label, row in zip(labels, np.asarray(values)))
