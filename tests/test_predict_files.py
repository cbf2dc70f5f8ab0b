"""alexnet-predict and `client.predict_files` answer each file on its own (issue 15): a
bad file among good ones gets its own error, named by its path, and the good ones still
get their top-5 from one batch; the exit status says whether any failed. Over REST and
gRPC (the TF Serving test double) and in-process (the SavedModel), as a library and as
the command in its own process."""

import os
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.data import decode
from alexnet_tf.serving import client, protocol
from serving_double import serve
from test_export import encode, mixed_images, shared_exported_run, smooth_rgb

NAME = "alexnet-predict"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return shared_exported_run(tmp_path_factory)  # one tiny trained run, exported as version 1


@pytest.fixture(scope="module")
def server(run):
    with serve(str(run.export_dir), "alexnet") as served:
        yield served


@pytest.fixture(autouse=True)
def load_the_export_once(run, monkeypatch):
    """tf.saved_model.load takes 10-20 s: the in-process transport gets the module's
    loaded export (the same SavedModel, loaded by tf.saved_model.load) instead of loading
    it for every call; the command's own process still loads it."""
    real = tf.saved_model.load
    loaded = {os.path.realpath(run.path): run.loaded}
    monkeypatch.setattr(tf.saved_model, "load", lambda path, *args, **kwargs: loaded.get(
        os.path.realpath(path)) or real(path, *args, **kwargs))


def png_header(height, width):
    """A PNG of a signature, an IHDR chunk and an IEND chunk, no pixel data: the one
    decode rule (no pixel limit) and the export's header checks read only these."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data +
                struct.pack(">I", zlib.crc32(kind + data)))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                            0, 0, 0)) + chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def mix(run, tmp_path_factory):
    """Good images and bad ones of every kind, interleaved: (paths, {path: bytes} of the
    good ones, {path: reason} of the bad ones)."""
    folder = tmp_path_factory.mktemp("mix")
    images = mixed_images(run)
    truncated = run.val_jpegs[2][:300]
    text = b"GET / HTTP/1.1\r\n"
    # (name, bytes, None for a good file or the reason the command gives for it)
    files = [("a.jpg", images["jpeg_76x76_a"], None),
             ("not_an_image.jpg", text, f"not a JPEG, PNG, GIF or BMP image ({len(text)} bytes)"),
             ("b.png", images["png_90x120"], None),
             ("truncated.jpg", truncated, decode.bytes_problem(truncated)),
             ("missing.jpg", None, "No such file or directory"),
             ("folder.jpg", "dir", "Is a directory"),
             ("empty.png", b"", "empty (0 bytes)"),
             ("c.jpg", images["grey_jpeg_100x80"], None)]
    paths, good, bad = [], {}, {}
    for name, data, reason in files:
        path = str(folder / name)
        paths.append(path)
        if data == "dir":
            (folder / name).mkdir()
        elif data is not None:
            (folder / name).write_bytes(data)
        if reason is None:
            good[path] = data
        else:
            bad[path] = reason
    assert bad[paths[3]].startswith("truncated JPEG")
    return paths, good, bad


def local(run, images, signature="serving_default"):
    """The reference: the export's signature run in this process."""
    outputs = run.loaded.signatures[signature](image_bytes=tf.constant(images, tf.string))
    return {name: value.numpy() for name, value in outputs.items()}


def transports(run, server):
    return {"rest": {"rest": server.rest_url}, "grpc": {"grpc": server.grpc_target},
            "saved_model": {"saved_model": str(run.export_dir)}}


def sent_batches(server, since):
    """The image batches the double received after log entry ``since``."""
    batches = []
    for entry in server.log[since:]:
        if isinstance(entry, dict):
            batches.append([protocol._from_json(row["image_bytes"])
                            for row in entry["body"]["instances"]])
        else:
            batches.append(tf.make_ndarray(entry.inputs["image_bytes"]).tolist())
    return batches


# ---------------------------------------------------------------------- the library


def record_local_batches(monkeypatch):
    """The batches `client.run_local` (the in-process transport) is called with."""
    batches, real = [], client.run_local

    def run_local(function, images):
        batches.append(list(images))
        return real(function, images)

    monkeypatch.setattr(client, "run_local", run_local)
    return batches


@pytest.mark.parametrize("transport", ["rest", "grpc", "saved_model"])
def test_each_file_gets_its_answer_or_its_error(run, server, mix, transport, monkeypatch):
    paths, good, bad = mix
    before = len(server.log)
    local_batches = record_local_batches(monkeypatch)
    results = client.predict_files(paths, **transports(run, server)[transport])
    assert [r.path for r in results] == paths
    assert {r.path: r.error for r in results if not r.ok} == bad
    assert [r.path for r in results if r.ok] == list(good)
    expected = local(run, list(good.values()))
    for row, result in enumerate(r for r in results if r.ok):
        np.testing.assert_allclose(result.outputs["probabilities"],
                                   expected["probabilities"][row], atol=1e-6)
        assert result.prediction == client.predictions(expected)[row]
    for result in results:
        assert (result.outputs is None) == (result.error is not None)
    # The good files went as one batch; the bad ones never reached the model.
    batches = local_batches if transport == "saved_model" else sent_batches(server, before)
    assert batches == [list(good.values())]
    # The text: the good files' top-5, exactly as for a batch of only them.
    assert client.describe(results) == client.format_predictions(
        list(good), client.predictions(expected))


@pytest.mark.parametrize("transport", ["rest", "grpc", "saved_model"])
def test_an_image_the_model_refuses_is_named_by_its_path(run, server, tmp_path, transport,
                                                         monkeypatch):
    # The export's own limits (aspect ratio, pixels) are not checked locally: the model
    # refuses "image_bytes[i]", and the client names the file and answers the rest.
    files = {"good.jpg": run.val_jpegs[0], "strip.png": encode(smooth_rgb(2, 120), "PNG"),
             "good.png": encode(smooth_rgb(90, 120, 1), "PNG"),
             "huge.png": png_header(10000, 10000), "good2.jpg": run.val_jpegs[1]}
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    before = len(server.log)
    local_batches = record_local_batches(monkeypatch)
    results = client.predict_files(paths, **transports(run, server)[transport])
    errors = {r.path: r.error for r in results if not r.ok}
    assert set(errors) == {paths[1], paths[3]}
    assert errors[paths[1]] == ("2x120 (height x width): its longer side is more than 50 "
                                "times its shorter side")
    assert re.fullmatch(r"10000x10000 \(height x width\), 100000000 pixels: more than the "
                        r"40000000 \w+( \w+)*", errors[paths[3]]), errors[paths[3]]
    assert not any("image_bytes" in e for e in errors.values())
    good = [files[n] for n in ("good.jpg", "good.png", "good2.jpg")]
    np.testing.assert_allclose(np.stack([r.outputs["probabilities"] for r in results if r.ok]),
                               local(run, good)["probabilities"], atol=1e-6)
    # Each refusal takes its image out, and the rest are sent again.
    batches = local_batches if transport == "saved_model" else sent_batches(server, before)
    assert [len(b) for b in batches] == [5, 4, 3] and batches[-1] == good


def test_a_refusal_naming_no_image_is_attributed_by_sending_each_alone(
        run, mix, monkeypatch):
    # A model whose decoder fails without naming the image (not this package's
    # exports, which name it): each image is sent alone to find the one that fails.
    paths, good, _ = mix
    (victim, victim_bytes), *_ = [(p, d) for p, d in good.items() if p.endswith("b.png")]
    real = client.run_local
    calls = []

    def run_local(function, images):
        calls.append(len(images))
        if victim_bytes in images:
            raise protocol.ServingError("Invalid PNG data, size 4022", "INVALID_ARGUMENT")
        return real(function, images)

    monkeypatch.setattr(client, "run_local", run_local)
    results = client.predict_files(paths, saved_model=str(run.export_dir))
    assert {r.path: r.error for r in results if r.path in good} == {
        p: ("Invalid PNG data, size 4022" if p == victim else None) for p in good}
    assert calls == [len(good)] + [1] * len(good)
    others = [d for p, d in good.items() if p != victim]
    np.testing.assert_allclose(
        np.stack([r.outputs["probabilities"] for r in results if r.ok]),
        local(run, others)["probabilities"], atol=1e-6)


def test_a_request_that_fails_as_a_whole_is_one_error_not_per_file(run, server, mix):
    paths, good, _ = mix
    with pytest.raises(protocol.ServingError, match="Cannot reach"):
        client.predict_files(paths, rest="http://127.0.0.1:9", timeout=5)
    with pytest.raises(protocol.ServingError) as info:
        client.predict_files(paths, rest=server.rest_url, model_name="resnet")
    assert info.value.code == 404
    with pytest.raises(protocol.ServingError) as info:
        client.predict_files(paths, grpc=server.grpc_target, version=9)
    assert info.value.code == "NOT_FOUND"
    # A signature the server does not have is a 400 that names no image: each image,
    # sent alone, fails too, so it is the request's error.
    with pytest.raises(protocol.ServingError, match='"nope" not found') as info:
        client.predict_files(paths, rest=server.rest_url, signature_name="nope")
    assert info.value.code == 400
    with pytest.raises(protocol.ServingError, match="No signature 'nope'"):
        client.predict_files(paths, saved_model=str(run.export_dir), signature_name="nope")
    with pytest.raises(protocol.ServingError, match="nothing' does not exist; expected a "
                                                    "SavedModel"):
        client.predict_files(paths, saved_model=str(run.export_dir / "nothing"))
    # With no file to send, the model is not asked.
    bad_only = [p for p in paths if p not in good]
    results = client.predict_files(bad_only, rest="http://127.0.0.1:9", timeout=5)
    assert not any(r.ok for r in results) and client.describe(results) == ""


IMAGE_BYTES_SIGNATURES = "['features', 'serving_default']"


@pytest.mark.parametrize("transport", ["rest", "grpc", "saved_model"])
def test_a_signature_that_takes_no_image_bytes_is_the_requests_error(run, server, mix,
                                                                     transport):
    # The client sends files as image_bytes; "pixels" takes decoded images. In-process
    # the error names the signature, its inputs and the ones that take image bytes;
    # a server's refusal names no image, so it is the request's error, not a file's.
    paths, _, _ = mix
    with pytest.raises(protocol.ServingError) as info:
        client.predict_files(paths, signature_name="pixels", **transports(run, server)[transport])
    if transport == "saved_model":
        assert info.value.message == (
            "Signature 'pixels' takes images (uint8 (None, None, None, 3)), not image_bytes "
            "(string (None,)): this client sends image files as their bytes; the signatures "
            f"of the export that take image bytes: {IMAGE_BYTES_SIGNATURES}.")
    else:
        assert info.value.code in (400, "INVALID_ARGUMENT") and "image_bytes" in \
            info.value.message


def test_features_signature_per_file(run, server, mix):
    paths, good, bad = mix
    results = client.predict_files(paths, grpc=server.grpc_target, signature_name="features")
    assert {r.path: r.error for r in results if not r.ok} == bad
    expected = local(run, list(good.values()), "features")["features"]
    np.testing.assert_allclose(np.stack([r.outputs["features"] for r in results if r.ok]),
                               expected, atol=1e-5)
    assert all(r.prediction is None for r in results)
    lines = client.describe(results).splitlines()
    assert [line.split(": features (")[0] for line in lines] == list(good)


def test_refused_image_reads_the_servers_messages():
    refused = client.refused_image
    assert refused(protocol.ServingError(
        "http://h:8501/v1/models/alexnet:predict: assertion failed: [image_bytes[3] is empty "
        "(0 bytes)]\n\t [[{{function_node __inference_serve_1}}{{node Assert}}]]", 400)) == \
        (3, "empty (0 bytes)")
    assert refused(protocol.ServingError(
        "h:8500: assertion failed: [image_bytes[0] is a truncated PNG (no IEND chunk), 90 "
        "bytes]", "INVALID_ARGUMENT")) == (0, "truncated PNG (no IEND chunk), 90 bytes")
    assert refused(protocol.ServingError(
        "assertion failed: [image_bytes[12] has no pixels (0x5, height x width)]",
        "INVALID_ARGUMENT")) == (12, "no pixels (0x5, height x width)")
    assert refused(protocol.ServingError("assertion failed: [image_bytes[1] is empty]",
                                         "NOT_FOUND")) is None
    assert refused(protocol.ServingError("Serving signature name: \"x\" not found", 400)) is None


# ------------------------------------------------------------------------ the command


def _cli(*argv):
    result = subprocess.run([sys.executable, "-m", "alexnet_tf.cli.predict", *map(str, argv)],
                            capture_output=True, text=True, timeout=300)
    return result.returncode, result.stdout, result.stderr


def _error_lines(err):
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith(f"{NAME}: error: ")]


@pytest.mark.parametrize("transport", ["grpc", "saved_model"])
def test_command_answers_the_good_files_and_names_the_bad(run, server, mix, transport):
    paths, good, bad = mix
    flag = {"grpc": f"--grpc={server.grpc_target}",
            "saved_model": f"--saved_model={run.export_dir}"}[transport]
    status, out, err = _cli(flag, *paths)
    assert status == 1, err
    assert out.strip() == client.format_predictions(
        list(good), client.predictions(local(run, list(good.values()))))
    # One line per bad file, in the order of the files, the path then the reason.
    assert _error_lines(err) == [f"{NAME}: error: {p}: {bad[p]}" for p in paths if p in bad]
    assert "image_bytes" not in err
    # All good: status 0 (test_serving.py's test_cli_prints_top5_... for every transport).


@pytest.mark.parametrize("transport, signature, expected", [
    ("saved_model", "pixels", "Signature 'pixels' takes images (uint8 (None, None, None, 3)), "
                              "not image_bytes"),
    ("saved_model", "nope", "No signature 'nope'; the export has ['features', 'pixels', "
                            "'pixels_float', 'serving_default']."),
    ("rest", "nope", 'Serving signature name: "nope" not found in signature def'),
    ("grpc", "pixels", "input size does not match signature"),
], ids=["saved_model-pixels", "saved_model-nope", "rest-nope", "grpc-pixels"])
def test_command_with_a_signature_it_cannot_use_is_one_line(run, server, mix, transport,
                                                            signature, expected):
    paths, good, _ = mix
    flag = {"rest": f"--rest={server.rest_url}", "grpc": f"--grpc={server.grpc_target}",
            "saved_model": f"--saved_model={run.export_dir}"}[transport]
    status, out, err = _cli(flag, f"--signature={signature}", *good)
    lines = _error_lines(err)
    assert status == 1 and out == "" and len(lines) == 1, err
    assert expected in lines[0], lines[0]
    if transport == "saved_model" and signature != "nope":
        assert lines[0].endswith(f"the signatures of the export that take image bytes: "
                                 f"{IMAGE_BYTES_SIGNATURES}."), lines[0]


def test_command_with_an_unreachable_server_is_one_line(mix):
    paths, _, _ = mix
    status, out, err = _cli("--rest=http://127.0.0.1:9", "--timeout=5", *paths)
    lines = _error_lines(err)
    assert status == 1 and out == "" and len(lines) == 1, err
    assert "Cannot reach http://127.0.0.1:9" in lines[0]


def test_a_server_that_hangs_up_or_answers_garbage_is_one_request_error():
    # Not a bug of the package: ServingError, which the command prints as one line.
    import http.server
    import socket
    import threading

    class Garbage(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"\xff not json")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Garbage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    closing = socket.socket()
    closing.bind(("127.0.0.1", 0))
    closing.listen(1)

    def hang_up():  # reads the request, then closes without a reply
        connection, _ = closing.accept()
        connection.settimeout(10)
        received = b""
        while b"\r\n\r\n" not in received or not received.endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
        connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        with pytest.raises(protocol.ServingError, match="is not TF Serving's JSON"):
            client.predict_rest(f"http://127.0.0.1:{server.server_port}", [b"x"], timeout=10)
        with pytest.raises(protocol.ServingError, match="no answer"):
            client.predict_rest(f"http://127.0.0.1:{closing.getsockname()[1]}", [b"x"],
                                timeout=10)
    finally:
        server.shutdown()
        closing.close()


def test_a_damaged_export_is_named_not_a_traceback(tmp_path):
    # The highest version directory empty: passed over, as alexnet-export counts
    # versions; a garbage saved_model.pb: one ServingError naming the directory.
    export = tmp_path / "export"
    (export / "7").mkdir(parents=True)
    with pytest.raises(protocol.ServingError, match=r"its version entries \['7'\] hold no "
                                                    r"saved_model.pb"):
        client.saved_model_path(str(export))
    (export / "3").mkdir()
    (export / "3" / "saved_model.pb").write_bytes(b"not a protocol buffer")
    assert client.saved_model_path(str(export)) == str(export / "3")
    with pytest.raises(protocol.ServingError, match=r"The SavedModel in .*3' cannot be loaded"):
        client.local_signature(str(export))
