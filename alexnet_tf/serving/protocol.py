"""TF Serving's wire formats, built and parsed without a network or a server.

REST (the predict API of https://www.tensorflow.org/tfx/serving/api_rest):

* ``POST /v1/models/NAME[/versions/N | /labels/L]:predict`` (`predict_url`);
* request bodies (`rest_request`) in the row form ``{"instances": [{"image_bytes":
  {"b64": "..."}}, ...]}`` or the columnar form ``{"inputs": {"image_bytes": [{"b64":
  "..."}, ...]}}``, with an optional ``"signature_name"``; binary strings travel as
  ``{"b64": base64}`` objects;
* response bodies (`parse_rest_response`): ``{"predictions": [...]}`` for row requests (a
  list of objects keyed by output name, or of bare values when the signature has a single
  output), ``{"outputs": {...}}`` for columnar ones (an object keyed by output name, or
  the bare value for a single output), and ``{"error": "..."}`` on failure.

Binary, with tensorflow-serving-api's generated classes (``tensorflow_serving.apis``):

* `predict_request`: a ``PredictRequest`` (model name, version or version label,
  signature, input tensors made by ``tf.make_tensor_proto``); `predict_request_bytes`
  serialises one;
* `prediction_log`: a ``PredictionLog`` whose ``predict_log`` holds a request, and
  `write_warmup_file`: a TFRecord file of them, TF Serving's warmup format
  (``assets.extra/tf_serving_warmup_requests`` of a SavedModel version).
"""

from __future__ import annotations

import base64
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from alexnet_tf.errors import UserError

DEFAULT_SIGNATURE = "serving_default"
WARMUP_FILENAME = "tf_serving_warmup_requests"  # in <version>/assets.extra/


class ServingError(UserError, RuntimeError):
    """A prediction request failed; ``code`` is the HTTP status or gRPC status name."""

    def __init__(self, message: str, code: Any = None):
        super().__init__(f"{message} (status {code})" if code is not None else message)
        self.message = message
        self.code = code


# ---------------------------------------------------------------------------- REST


def predict_url(base_url: str, model_name: str, *, version: int | None = None,
                label: str | None = None) -> str:
    """``BASE/v1/models/NAME[/versions/N | /labels/L]:predict``."""
    if version is not None and label is not None:
        raise ValueError("Give a model version or a version label, not both.")
    url = f"{base_url.rstrip('/')}/v1/models/{model_name}"
    if version is not None:
        url += f"/versions/{int(version)}"
    elif label is not None:
        url += f"/labels/{label}"
    return url + ":predict"


def _json_value(value) -> Any:
    """A tensor value as TF Serving's JSON: nested lists, bytes as {"b64": ...}."""
    if isinstance(value, (bytes, np.bytes_)):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in ("S", "O"):
            return [_json_value(v) for v in value]
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def rest_request(inputs: Mapping[str, Sequence], *, form: str = "row",
                 signature_name: str | None = None) -> dict:
    """The JSON body of a predict request.

    Args:
      inputs: input name -> batch of values (a list of bytes for string inputs, or an
        array whose first axis is the batch).
      form: "row" (``instances``: one object per example) or "columnar" (``inputs``:
        one batch per input name).
      signature_name: None for the server's ``serving_default``.
    """
    if not inputs:
        raise ValueError("A predict request needs at least one input.")
    body: dict[str, Any] = {}
    if signature_name is not None:
        body["signature_name"] = signature_name
    if form == "columnar":
        body["inputs"] = {name: _json_value(list(batch) if not isinstance(batch, np.ndarray)
                                            else batch)
                          for name, batch in inputs.items()}
    elif form == "row":
        sizes = {name: len(batch) for name, batch in inputs.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"Row-form requests need equal batch sizes, got {sizes}.")
        (size,) = set(sizes.values())
        body["instances"] = [{name: _json_value(batch[i]) for name, batch in inputs.items()}
                             for i in range(size)]
    else:
        raise ValueError(f"form must be 'row' or 'columnar', got {form!r}.")
    return body


def image_bytes_request(images: Sequence[bytes], *, form: str = "row",
                        signature_name: str | None = None) -> dict:
    """The body that sends encoded images to the ``image_bytes`` input."""
    return rest_request({"image_bytes": [bytes(i) for i in images]}, form=form,
                        signature_name=signature_name)


def _from_json(value) -> Any:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def _array(values) -> np.ndarray:
    values = _from_json(values)
    try:
        return np.asarray(values)
    except ValueError:  # ragged: keep the rows
        return np.asarray(values, dtype=object)


def parse_rest_response(body: Mapping, *, single_output_name: str = "output") -> dict:
    """Output name -> batch-major numpy array, from either response form.

    A signature with a single output comes back without its name in both forms; it is
    returned under ``single_output_name``. ``{"error": ...}`` raises `ServingError`.
    """
    if "error" in body:
        raise ServingError(str(body["error"]))
    if "predictions" in body:
        rows = body["predictions"]
        if not isinstance(rows, list):
            raise ServingError(f"'predictions' is not a list: {type(rows).__name__}")
        if rows and all(isinstance(r, dict) and "b64" not in r for r in rows):
            names = list(rows[0])
            return {name: _array([r[name] for r in rows]) for name in names}
        return {single_output_name: _array(rows)}
    if "outputs" in body:
        outputs = body["outputs"]
        if isinstance(outputs, dict) and "b64" not in outputs:
            return {name: _array(value) for name, value in outputs.items()}
        return {single_output_name: _array(outputs)}
    raise ServingError(f"Not a predict response: no 'predictions', 'outputs' or 'error' "
                       f"key in {sorted(body)}.")


# ---------------------------------------------------------- binary (tensorflow-serving-api)


def tensor_proto(value):
    """A ``tensorflow.TensorProto`` of ``value``: a list or tuple of bytes or str (encoded
    images; str as UTF-8) is a string ``[N]`` tensor, anything else (a numpy array, nested
    numbers) is what ``tf.make_tensor_proto`` makes of it."""
    if isinstance(value, (list, tuple)) and all(isinstance(v, (bytes, str)) for v in value):
        return tf.make_tensor_proto(np.array(list(value), dtype=object), dtype=tf.string,
                                    shape=[len(value)])
    return tf.make_tensor_proto(value)


def predict_request(inputs: Mapping[str, Any], *, model_name: str = "",
                    signature_name: str = DEFAULT_SIGNATURE, version: int | None = None,
                    label: str | None = None):
    """A ``tensorflow.serving.PredictRequest`` (tensorflow_serving.apis.predict_pb2).

    Args:
      inputs: input name -> value (see `tensor_proto`), e.g. ``{"image_bytes": [jpeg]}``.
      model_name: the model's name on the server (MODEL_NAME).
      signature_name: the signature to run.
      version, label: a model version, or a version label; neither for the latest.
    """
    if version is not None and label is not None:
        raise ValueError("Give a model version or a version label, not both.")
    if not inputs:
        raise ValueError("A predict request needs at least one input.")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if version is not None:
        request.model_spec.version.value = int(version)  # set, even to 0
    elif label is not None:
        request.model_spec.version_label = label
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tensor_proto(value))
    return request


def predict_request_bytes(inputs: Mapping[str, Any], *, model_name: str = "",
                          signature_name: str = DEFAULT_SIGNATURE,
                          version: int | None = None, label: str | None = None) -> bytes:
    """`predict_request`, serialised (deterministically: map entries in key order)."""
    return predict_request(inputs, model_name=model_name, signature_name=signature_name,
                           version=version, label=label).SerializeToString(deterministic=True)


def prediction_log(request):
    """A ``tensorflow.serving.PredictionLog`` whose ``predict_log.request`` is ``request``
    (a ``PredictRequest``, or one serialised): one record of TF Serving's warmup file."""
    if isinstance(request, (bytes, bytearray, memoryview)):
        request = predict_pb2.PredictRequest.FromString(bytes(request))
    return prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request))


def write_warmup_file(path: str, requests: Iterable) -> int:
    """Writes PredictRequests (messages or serialised) to ``path`` as a TFRecord file of
    serialised PredictionLogs, the format TF Serving replays from a version's
    ``assets.extra/tf_serving_warmup_requests`` before it serves the version (it reads
    at most 1000 records). Returns the number of records."""
    count = 0
    with tf.io.TFRecordWriter(path) as writer:
        for request in requests:
            writer.write(prediction_log(request).SerializeToString(deterministic=True))
            count += 1
    return count
