"""A test double of TensorFlow Serving's predict APIs over an export directory.

Neither the tensorflow/serving image nor the tensorflow_model_server binary can run where
the tests run, so the client is tested against this: a small server on loopback ports that
answers like TF Serving does, running the SavedModel with ``tf.saved_model.load`` (the
same signatures the real server runs through its C++ loader):

* REST: ``POST /v1/models/NAME[/versions/N]:predict`` with the row (``instances``) or
  columnar (``inputs``) JSON body, ``{"b64": ...}`` for binary strings, answered with
  ``{"predictions": ...}`` or ``{"outputs": ...}`` (objects keyed by output name, or bare
  values for a single output; string outputs as UTF-8 text unless the name ends in
  ``_bytes``), or ``{"error": ...}`` with TF Serving's HTTP status for the error code;
  ``GET /v1/models/NAME`` gives the version status.
* gRPC: PredictionService.Predict (grpcio, with tensorflow-serving-api's servicer).

The product never uses this: docs/SERVING.md points users to the real server.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from alexnet_tf.serving.client import tf_error_message

# tensorflow_serving/util/net_http ... ToHTTPStatusCode: the codes this double can produce.
HTTP_STATUS = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "NOT_FOUND": 404,
               "INTERNAL": 500, "UNIMPLEMENTED": 501}


class ServingFailure(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Models:
    """The versions of one model under a base path, loaded on first use."""

    def __init__(self, base_path: str, name: str):
        self.base_path, self.name = base_path, name
        self._loaded: dict[int, object] = {}
        self._lock = threading.Lock()

    def versions(self) -> list[int]:
        return sorted(int(n) for n in os.listdir(self.base_path) if n.isdigit())

    def get(self, name: str, version: int | None):
        if name != self.name:
            raise ServingFailure("NOT_FOUND", f"Servable not found for request: Latest({name})")
        versions = self.versions()
        if version is None:
            if not versions:
                raise ServingFailure("NOT_FOUND", f"Servable not found for request: "
                                                  f"Latest({name})")
            version = versions[-1]
        elif version not in versions:
            raise ServingFailure("NOT_FOUND", f"Servable not found for request: "
                                              f"Specific({name}, {version})")
        with self._lock:
            if version not in self._loaded:
                self._loaded[version] = tf.saved_model.load(
                    os.path.join(self.base_path, str(version)))
        return version, self._loaded[version]

    def predict(self, name: str, version: int | None, signature_name: str | None,
                inputs: dict) -> tuple[int, dict]:
        """Runs a signature on numpy/list inputs, as TF Serving's Predict does."""
        version, loaded = self.get(name, version)
        signature_name = signature_name or "serving_default"
        if signature_name not in loaded.signatures:
            raise ServingFailure("INVALID_ARGUMENT", f"Serving signature name: "
                                                     f"\"{signature_name}\" not found in "
                                                     f"signature def")
        function = loaded.signatures[signature_name]
        specs = function.structured_input_signature[1]
        if set(inputs) != set(specs):
            raise ServingFailure(
                "INVALID_ARGUMENT", f"input size does not match signature: {len(inputs)}!="
                f"{len(specs)} len({sorted(inputs)}) != len({sorted(specs)})")
        tensors = {}
        for key, spec in specs.items():
            try:
                value = inputs[key]
                if spec.dtype == tf.string:
                    value = np.array(list(value), dtype=object)
                tensors[key] = tf.constant(value, dtype=spec.dtype)
            except (TypeError, ValueError) as error:
                raise ServingFailure("INVALID_ARGUMENT", f"input {key!r}: {error}") from None
            if not spec.shape.is_compatible_with(tensors[key].shape):
                raise ServingFailure("INVALID_ARGUMENT", f"input {key!r} has shape "
                                     f"{tensors[key].shape}, the signature {spec.shape}")
        try:
            outputs = function(**tensors)
        except tf.errors.OpError as error:  # InvalidArgumentError -> "INVALID_ARGUMENT"
            code = type(error).__name__.replace("Error", "")
            code = re.sub(r"(?<!^)(?=[A-Z])", "_", code).upper()
            raise ServingFailure(code, tf_error_message(error.message)) from None
        return version, {k: v.numpy() for k, v in outputs.items()}


# --------------------------------------------------------------------------- REST


def _decode_value(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_decode_value(v) for v in value]
    if isinstance(value, str):
        return value.encode("utf-8")
    return value


def _is_named(value) -> bool:
    return isinstance(value, dict) and set(value) != {"b64"}


def _request_inputs(body, input_names: list[str]) -> tuple[dict, bool]:
    """(input name -> batch, row form?) from a predict request body."""
    if ("instances" in body) == ("inputs" in body):
        raise ServingFailure("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key"
                             if "instances" not in body else
                             "Request body cannot contain both 'inputs' and 'instances'")
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list):
            raise ServingFailure("INVALID_ARGUMENT", "'instances' must be a list")
        if rows and all(_is_named(r) for r in rows):
            keys = set(rows[0])
            if any(set(r) != keys for r in rows):
                raise ServingFailure("INVALID_ARGUMENT", "Expecting all instances to have "
                                                         "the same named inputs")
            return {k: [_decode_value(r[k]) for r in rows] for k in keys}, True
        if any(_is_named(r) for r in rows):
            raise ServingFailure("INVALID_ARGUMENT", "Mixed named and unnamed instances")
        if len(input_names) != 1:
            raise ServingFailure("INVALID_ARGUMENT", "Unnamed instances need a signature "
                                                     "with exactly one input")
        return {input_names[0]: [_decode_value(r) for r in rows]}, True
    columns = body["inputs"]
    if _is_named(columns):
        return {k: _decode_value(v) for k, v in columns.items()}, False
    if len(input_names) != 1:
        raise ServingFailure("INVALID_ARGUMENT", "Unnamed inputs need a signature with "
                                                 "exactly one input")
    return {input_names[0]: _decode_value(columns)}, False


def _json_output(name: str, value: np.ndarray):
    if value.dtype == object:
        if name.endswith("_bytes"):
            encode = lambda b: {"b64": base64.b64encode(b).decode("ascii")}  # noqa: E731
        else:
            encode = lambda b: b.decode("utf-8")  # noqa: E731
        return np.vectorize(encode, otypes=[object])(value).tolist() if value.size else \
            value.tolist()
    return value.tolist()


def _response(outputs: dict, row_form: bool) -> dict:
    names = sorted(outputs)
    if row_form:
        sizes = {len(outputs[n]) for n in names}
        if len(sizes) != 1:
            raise ServingFailure("INVALID_ARGUMENT", "Output tensors have different batch "
                                                     "sizes: use the columnar ('inputs') form")
        if len(names) == 1:
            return {"predictions": _json_output(names[0], outputs[names[0]])}
        columns = {n: _json_output(n, outputs[n]) for n in names}
        return {"predictions": [{n: columns[n][i] for n in names}
                                for i in range(sizes.pop())]}
    if len(names) == 1:
        return {"outputs": _json_output(names[0], outputs[names[0]])}
    return {"outputs": {n: _json_output(n, outputs[n]) for n in names}}


_PREDICT = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?:predict$")
_STATUS = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?$")


def _handler(models: Models, log: list):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _send(self, status: int, body: dict):
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            match = _STATUS.match(self.path)
            if not match:
                return self._send(404, {"error": f"Malformed request: GET {self.path}"})
            try:
                version, _ = models.get(match[1], int(match[2]) if match[2] else None)
            except ServingFailure as failure:
                return self._send(HTTP_STATUS.get(failure.code, 500), {"error": failure.message})
            self._send(200, {"model_version_status": [{
                "version": str(version), "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""}}]})

        def do_POST(self):
            match = _PREDICT.match(self.path)
            if not match:
                return self._send(404, {"error": f"Malformed request: POST {self.path}"})
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                try:
                    body = json.loads(raw)
                except ValueError as error:
                    raise ServingFailure("INVALID_ARGUMENT", f"JSON Parse error: {error}") \
                        from None
                log.append({"path": self.path, "body": body})
                name, version = match[1], int(match[2]) if match[2] else None
                _, loaded = models.get(name, version)
                signature = loaded.signatures.get(body.get("signature_name") or
                                                  "serving_default")
                input_names = (sorted(signature.structured_input_signature[1])
                               if signature is not None else [])
                inputs, row_form = _request_inputs(body, input_names)
                _, outputs = models.predict(name, version, body.get("signature_name"), inputs)
                self._send(200, _response(outputs, row_form))
            except ServingFailure as failure:
                self._send(HTTP_STATUS.get(failure.code, 500), {"error": failure.message})
            except Exception as error:  # a bug in the double: answer, do not hang up
                self._send(500, {"error": f"{type(error).__name__}: {error}"})

    return Handler


# --------------------------------------------------------------------------- gRPC


def _grpc_server(models: Models, log: list):
    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            log.append(request)
            spec = request.model_spec
            version = spec.version.value if spec.HasField("version") else None
            inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
            try:
                version, outputs = models.predict(spec.name, version, spec.signature_name,
                                                  inputs)
            except ServingFailure as failure:
                context.abort(getattr(grpc.StatusCode, failure.code), failure.message)
            if request.output_filter:
                outputs = {k: outputs[k] for k in request.output_filter}
            response = predict_pb2.PredictResponse()
            response.model_spec.name = spec.name
            response.model_spec.version.value = version
            response.model_spec.signature_name = spec.signature_name or "serving_default"
            for key, value in outputs.items():
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4),
                         options=[("grpc.max_receive_message_length", -1)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    return server, port


@contextlib.contextmanager
def serve(base_path: str, model_name: str = "alexnet", *, with_grpc: bool = True):
    """Serves the export directory on loopback ports; yields an object with ``rest_url``,
    ``grpc_target`` (None when ``with_grpc`` is False), ``models`` and ``log`` (the
    requests received, REST bodies and gRPC PredictRequests)."""
    models = Models(base_path, model_name)
    log: list = []
    http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(models, log))
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    grpc_server = None
    info = type("Served", (), {})()
    info.rest_url = f"http://127.0.0.1:{http.server_address[1]}"
    info.grpc_target = None
    info.models, info.log = models, log
    try:
        if with_grpc:
            grpc_server, port = _grpc_server(models, log)
            grpc_server.start()
            info.grpc_target = f"127.0.0.1:{port}"
        yield info
    finally:
        http.shutdown()
        http.server_close()
        if grpc_server is not None:
            grpc_server.stop(grace=None)
