"""Serving: TF Serving's wire formats (REST JSON; PredictRequest and the PredictionLog
warmup file through tensorflow-serving-api), the client against a TF Serving test double
(REST and gRPC on loopback), the alexnet-predict command, bad input over the wire, and the
configuration files and commands of docs/SERVING.md."""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2, prediction_service_pb2_grpc

from alexnet_tf import export
from alexnet_tf.serving import client, protocol
from conftest import REPO_ROOT
from serving_double import serve
from test_export import mixed_images, shared_exported_run

SERVING_MD = REPO_ROOT / "docs" / "SERVING.md"
JPEG_HEAD, PNG_HEAD = b"\xff\xd8\xff\xe0JFIF", b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return shared_exported_run(tmp_path_factory)  # one tiny trained run, exported as version 1


@pytest.fixture(scope="module")
def server(run):
    with serve(str(run.export_dir), "alexnet") as served:
        yield served


@pytest.fixture(scope="module")
def image_files(run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for name, data in list(mixed_images(run).items())[:4]:
        path = folder / f"{name}.img"
        path.write_bytes(data)
        paths.append(path)
    return paths


def local(run, images, signature="serving_default"):
    """The reference: the export's signature run in this process."""
    outputs = run.loaded.signatures[signature](image_bytes=tf.constant(images, tf.string))
    return {name: value.numpy() for name, value in outputs.items()}


# --------------------------------------------------------------- REST wire format


def test_rest_bodies_are_tf_servings_documented_json():
    images = [JPEG_HEAD, PNG_HEAD]
    assert protocol.image_bytes_request(images) == {"instances": [
        {"image_bytes": {"b64": "/9j/4EpGSUY="}}, {"image_bytes": {"b64": "iVBORw0KGgo="}}]}
    assert protocol.image_bytes_request(images, form="columnar",
                                        signature_name="features") == {
        "signature_name": "features",
        "inputs": {"image_bytes": [{"b64": "/9j/4EpGSUY="}, {"b64": "iVBORw0KGgo="}]}}
    pixels = np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3)
    assert protocol.rest_request({"images": pixels}, signature_name="pixels") == {
        "signature_name": "pixels",
        "instances": [{"images": [[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9, 10, 11]]]}]}
    json.dumps(protocol.image_bytes_request(images))  # plain JSON types only
    with pytest.raises(ValueError, match="'row' or 'columnar'"):
        protocol.image_bytes_request(images, form="rows")


def test_predict_urls():
    assert protocol.predict_url("http://h:8501/", "alexnet") == \
        "http://h:8501/v1/models/alexnet:predict"
    assert protocol.predict_url("http://h:8501", "alexnet", version=3) == \
        "http://h:8501/v1/models/alexnet/versions/3:predict"
    assert protocol.predict_url("http://h:8501", "alexnet", label="stable") == \
        "http://h:8501/v1/models/alexnet/labels/stable:predict"


def test_rest_responses_of_both_forms_parse():
    row = {"predictions": [{"classes": [3, 1], "class_names": ["disk", "cross"],
                            "scores": [0.75, 0.25]},
                           {"classes": [1, 3], "class_names": ["cross", "disk"],
                            "scores": [0.5, 0.5]}]}
    parsed = protocol.parse_rest_response(row)
    np.testing.assert_array_equal(parsed["classes"], [[3, 1], [1, 3]])
    assert parsed["class_names"].tolist() == [["disk", "cross"], ["cross", "disk"]]
    columnar = {"outputs": {"classes": [[3, 1], [1, 3]], "scores": [[0.75, 0.25], [0.5, 0.5]]}}
    np.testing.assert_array_equal(protocol.parse_rest_response(columnar)["scores"],
                                  [[0.75, 0.25], [0.5, 0.5]])
    # A single-output signature loses its name in both forms.
    np.testing.assert_array_equal(
        protocol.parse_rest_response({"predictions": [[1.0, 2.0]]},
                                     single_output_name="features")["features"], [[1.0, 2.0]])
    np.testing.assert_array_equal(protocol.parse_rest_response({"outputs": [[1.0]]})["output"],
                                  [[1.0]])
    assert protocol.parse_rest_response({"outputs": {"x_bytes": [{"b64": "AAE="}]}})[
        "x_bytes"].tolist() == [b"\x00\x01"]
    with pytest.raises(protocol.ServingError, match="assertion failed"):
        protocol.parse_rest_response({"error": "assertion failed: [image_bytes[0] is empty]"})


# ---------------------------------------------------------------- binary protos


def test_predict_request_round_trips_with_its_tensors():
    pixels = np.arange(24, dtype=np.uint8).reshape(2, 2, 2, 3)
    inputs = {"image_bytes": [JPEG_HEAD, PNG_HEAD], "images": pixels}
    for version, label in [(None, None), (0, None), (7, None), (300, None), (None, "canary")]:
        request = protocol.predict_request(inputs, model_name="alexnet",
                                           signature_name="pixels", version=version,
                                           label=label)
        assert isinstance(request, predict_pb2.PredictRequest)
        again = predict_pb2.PredictRequest.FromString(protocol.predict_request_bytes(
            inputs, model_name="alexnet", signature_name="pixels", version=version,
            label=label))
        assert again == request, (version, label)
        spec = again.model_spec
        assert (spec.name, spec.signature_name) == ("alexnet", "pixels")
        assert spec.HasField("version") == (version is not None)  # version 0 is sent too
        assert spec.version.value == (version or 0) and spec.version_label == (label or "")
        strings = again.inputs["image_bytes"]
        assert strings.dtype == types_pb2.DT_STRING
        assert tf.make_ndarray(strings).tolist() == [JPEG_HEAD, PNG_HEAD]
        values = tf.make_ndarray(again.inputs["images"])
        assert values.dtype == np.uint8
        np.testing.assert_array_equal(values, pixels)
    assert tf.make_ndarray(protocol.tensor_proto(["ok", b"\xff"])).tolist() == [b"ok", b"\xff"]
    with pytest.raises(ValueError, match="not both"):
        protocol.predict_request(inputs, version=1, label="stable")


def test_grpc_request_is_a_valid_predict_request():
    request = client.grpc_request([JPEG_HEAD, PNG_HEAD], model_name="alexnet", version=2)
    assert isinstance(request, predict_pb2.PredictRequest) and request.IsInitialized()
    again = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert again == request
    assert again.model_spec.name == "alexnet" and again.model_spec.version.value == 2
    assert again.model_spec.signature_name == "serving_default"
    tensor = again.inputs["image_bytes"]
    assert tensor.dtype == types_pb2.DT_STRING
    assert [d.size for d in tensor.tensor_shape.dim] == [2]
    assert list(tensor.string_val) == [JPEG_HEAD, PNG_HEAD]
    assert client.grpc_request([PNG_HEAD], label="canary").model_spec.version_label == "canary"


def read_warmup_file(path):
    """The PredictionLogs of a warmup file, read as TF Serving does: TFRecords."""
    return [prediction_log_pb2.PredictionLog.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(str(path))]


def test_warmup_file_parses_back_into_the_requests(tmp_path):
    pixels = np.arange(36, dtype=np.uint8).reshape(1, 3, 4, 3)
    requests = [  # messages and serialised requests, as the function accepts both
        protocol.predict_request({"image_bytes": [JPEG_HEAD]}, model_name="alexnet"),
        protocol.predict_request_bytes({"image_bytes": [JPEG_HEAD, PNG_HEAD, b""]},
                                       model_name="alexnet", version=2),
        protocol.predict_request({"images": pixels.astype(np.float32)}, model_name="alexnet",
                                 signature_name="pixels_float"),
    ]
    path = tmp_path / protocol.WARMUP_FILENAME
    assert protocol.write_warmup_file(str(path), iter(requests)) == 3
    logs = read_warmup_file(path)
    assert [log.WhichOneof("log_type") for log in logs] == ["predict_log"] * 3
    got = [log.predict_log.request for log in logs]
    assert got == [requests[0], predict_pb2.PredictRequest.FromString(requests[1]), requests[2]]
    assert [(r.model_spec.name, r.model_spec.signature_name) for r in got] == [
        ("alexnet", "serving_default"), ("alexnet", "serving_default"),
        ("alexnet", "pixels_float")]
    assert got[1].model_spec.version.value == 2
    assert tf.make_ndarray(got[0].inputs["image_bytes"]).tolist() == [JPEG_HEAD]
    assert tf.make_ndarray(got[1].inputs["image_bytes"]).tolist() == [JPEG_HEAD, PNG_HEAD, b""]
    floats = tf.make_ndarray(got[2].inputs["images"])
    assert floats.dtype == np.float32
    np.testing.assert_array_equal(floats, pixels)


def test_exported_warmup_file_holds_the_warmup_images(run):
    requests = [log.predict_log.request
                for log in read_warmup_file(run.path / "assets.extra" / protocol.WARMUP_FILENAME)]
    assert [(r.model_spec.name, r.model_spec.signature_name) for r in requests] == [
        ("alexnet", "serving_default"), ("alexnet", "serving_default"), ("alexnet", "pixels"),
        ("alexnet", "pixels_float"), ("alexnet", "features")]
    images = export.warmup_images(run.config.data.resize_size)
    jpeg, png = images["jpeg"], images["png"]
    values = [{name: tf.make_ndarray(tensor) for name, tensor in r.inputs.items()}
              for r in requests]
    assert [sorted(v) for v in values] == [["image_bytes"]] * 2 + [["images"]] * 2 + \
        [["image_bytes"]]
    assert values[0]["image_bytes"].tolist() == [jpeg]
    assert values[1]["image_bytes"].tolist() == [jpeg, png, png, jpeg]
    assert values[2]["images"].dtype == np.uint8 and values[3]["images"].dtype == np.float32
    np.testing.assert_array_equal(values[2]["images"], images["pixels"])
    np.testing.assert_array_equal(values[3]["images"], images["pixels"])
    assert values[4]["image_bytes"].tolist() == [png]
    assert tf.io.decode_png(png).shape[:2] == tf.io.decode_jpeg(jpeg).shape[:2][::-1]


def test_warmup_records_parse_and_run_against_the_model(run):
    records = read_warmup_file(run.path / "assets.extra" / protocol.WARMUP_FILENAME)
    names = [r.predict_log.request.model_spec.signature_name for r in records]
    assert names == ["serving_default", "serving_default", "pixels", "pixels_float", "features"]
    for record in records:
        request = record.predict_log.request
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        batch = len(next(iter(inputs.values())))
        outputs = run.loaded.signatures[request.model_spec.signature_name](
            **{k: tf.constant(v) for k, v in inputs.items()})
        for value in outputs.values():
            assert value.shape[0] == batch
            if value.dtype.is_floating:
                assert np.isfinite(value.numpy()).all()
    assert [len(r.predict_log.request.inputs["image_bytes"].string_val) for r in records[:2]] \
        == [1, 4]


def test_warmup_records_replay_through_grpc(run, server):
    path = run.path / "assets.extra" / protocol.WARMUP_FILENAME
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for log in read_warmup_file(path):
            response = stub.Predict(log.predict_log.request, timeout=60)
            assert response.outputs and response.model_spec.version.value == 1


# --------------------------------------------------------- client vs the test double


@pytest.mark.parametrize("form", ["row", "columnar"])
def test_rest_client_against_the_double(run, server, image_files, form):
    images = [p.read_bytes() for p in image_files]  # JPEGs, a PNG, a greyscale JPEG
    outputs = client.predict_rest(server.rest_url, images, form=form)
    expected = local(run, images)
    np.testing.assert_allclose(outputs["probabilities"], expected["probabilities"], atol=1e-6)
    np.testing.assert_array_equal(outputs["classes"], expected["classes"])
    assert outputs["class_names"].tolist() == expected["class_names"].astype(str).tolist()
    body = server.log[-1]["body"]
    assert body == protocol.image_bytes_request(images, form=form)
    assert server.log[-1]["path"] == "/v1/models/alexnet:predict"
    results = client.predictions(outputs)
    assert [r.class_names for r in results] == [tuple(n.decode() for n in row)
                                                for row in expected["class_names"]]


def test_rest_client_versions_signatures_and_errors(run, server):
    images = run.val_jpegs[:2]
    features = client.predict_rest(server.rest_url, images, version=1, signature_name="features")
    np.testing.assert_allclose(features["output"], local(run, images, "features")["features"],
                               atol=1e-5)
    assert server.log[-1]["path"] == "/v1/models/alexnet/versions/1:predict"
    with pytest.raises(protocol.ServingError) as info:
        client.predict_rest(server.rest_url, images, version=9)
    assert info.value.code == 404 and "Specific(alexnet, 9)" in info.value.message
    with pytest.raises(protocol.ServingError) as info:
        client.predict_rest(server.rest_url, images, model_name="resnet")
    assert info.value.code == 404
    with pytest.raises(protocol.ServingError, match="Cannot reach"):
        client.predict_rest("http://127.0.0.1:9", images, timeout=5)


def test_grpc_client_against_the_double(run, server):
    images = run.val_jpegs[:3]
    outputs = client.predict_grpc(server.grpc_target, images)
    expected = local(run, images)
    for name in ("probabilities", "scores"):
        np.testing.assert_allclose(outputs[name], expected[name], atol=1e-6)
    for name in ("classes", "class_ids", "class_names"):
        np.testing.assert_array_equal(outputs[name], expected[name])
    features = client.predict_grpc(server.grpc_target, images[:1], version=1,
                                   signature_name="features")
    np.testing.assert_allclose(features["features"], local(run, images[:1], "features")
                               ["features"], atol=1e-5)
    with pytest.raises(protocol.ServingError) as info:
        client.predict_grpc(server.grpc_target, images, version=9)
    assert info.value.code == "NOT_FOUND"


BAD = {"empty": (b"", r"image_bytes\[1\] is empty"),
       "text": (b"GET / HTTP/1.1", r"image_bytes\[1\] is not a JPEG, PNG, GIF or BMP"),
       "truncated": (None, r"image_bytes\[1\] is a truncated JPEG")}


def _bad(run, name):
    data, pattern = BAD[name]
    return (run.val_jpegs[2][:300] if data is None else data), pattern


@pytest.mark.parametrize("name", list(BAD))
def test_bad_image_over_rest_is_a_400_naming_it(run, server, name):
    data, pattern = _bad(run, name)
    good = run.val_jpegs[:2]
    for form in ("row", "columnar"):
        with pytest.raises(protocol.ServingError) as info:
            client.predict_rest(server.rest_url, [good[0], data, good[1]], form=form)
        assert info.value.code == 400 and re.search(pattern, info.value.message)
    # The server goes on answering, and answers the good images right.
    np.testing.assert_allclose(client.predict_rest(server.rest_url, good)["probabilities"],
                               local(run, good)["probabilities"], atol=1e-6)


@pytest.mark.parametrize("name", list(BAD))
def test_bad_image_over_grpc_is_invalid_argument_naming_it(run, server, name):
    data, pattern = _bad(run, name)
    good = run.val_jpegs[:2]
    with pytest.raises(protocol.ServingError) as info:
        client.predict_grpc(server.grpc_target, [good[0], data, good[1]])
    assert info.value.code == "INVALID_ARGUMENT" and re.search(pattern, info.value.message)
    np.testing.assert_allclose(client.predict_grpc(server.grpc_target, good)["probabilities"],
                               local(run, good)["probabilities"], atol=1e-6)


def test_local_client_runs_the_export_and_reports_bad_input(run):
    images = run.val_jpegs[:2]
    outputs = client.predict_local(str(run.export_dir), images)  # the highest version
    np.testing.assert_array_equal(outputs["probabilities"], local(run, images)["probabilities"])
    with pytest.raises(protocol.ServingError) as info:
        client.predict_local(str(run.path), [run.val_jpegs[0], b""])
    assert info.value.code == "INVALID_ARGUMENT"
    assert info.value.message == "assertion failed: [image_bytes[1] is empty (0 bytes)]"


# ------------------------------------------------------------------------ the CLI


def _cli(*argv, program=("-m", "alexnet_tf.cli.predict")):
    """Runs the command in its own process (absl parses the process's flags once):
    ``python -m alexnet_tf.cli.predict ARGV`` by default. Returns (status, stdout,
    stderr)."""
    result = subprocess.run([sys.executable, *map(str, program), *map(str, argv)],
                            capture_output=True, text=True, timeout=300)
    return result.returncode, result.stdout, result.stderr


def _last_line(err):
    """The command's own message: the last line of stderr (TensorFlow logs before it)."""
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def _check_top5(text, paths, classes):
    names = {c["name"] for c in classes}
    for path in paths:
        section = text.split(str(path), 1)[1].split("\n\n")[0].splitlines()[1:6]
        assert [line.split(".")[0].strip() for line in section] == ["1", "2", "3", "4", "5"]
        for line in section:
            assert line.split()[2] in names, line


def test_predict_files_gives_the_same_text_from_every_transport(run, server, image_files):
    paths = [str(p) for p in image_files]
    expected = client.format_predictions(
        paths, client.predictions(local(run, [p.read_bytes() for p in image_files])))
    for transport in ({"rest": server.rest_url}, {"grpc": server.grpc_target},
                      {"saved_model": str(run.export_dir)}):
        results = client.predict_files(paths, **transport)
        assert [(r.path, r.error) for r in results] == [(p, None) for p in paths]
        assert client.describe(results) == expected
    features = client.predict_files(paths[:1], grpc=server.grpc_target,
                                    signature_name="features")
    assert client.describe(features).startswith(f"{paths[0]}: features (")
    assert "\n" not in client.describe(features)  # one line per image
    for wrong in ({}, {"rest": server.rest_url, "saved_model": str(run.export_dir)}):
        with pytest.raises(ValueError, match="exactly one of --rest, --grpc, --saved_model"):
            client.predict_files(paths, **wrong)
    with pytest.raises(ValueError, match="at least one image file"):
        client.predict_files([], rest=server.rest_url)


def test_cli_prints_top5_with_class_names_from_every_transport(run, server, image_files):
    expected = client.format_predictions(
        [str(p) for p in image_files],
        client.predictions(local(run, [p.read_bytes() for p in image_files])))
    for transport in [f"--rest={server.rest_url}", f"--grpc={server.grpc_target}",
                      f"--saved_model={run.export_dir}"]:
        status, out, err = _cli(transport, *image_files)
        assert status == 0, err
        assert out.strip() == expected, transport
    _check_top5(expected, image_files, run.classes)
    status, out, _ = _cli(f"--rest={server.rest_url}", "--form=columnar", "--version=1",
                          image_files[0])
    assert status == 0 and out.strip() == expected.split(f"\n{image_files[1]}")[0]


def test_cli_errors(run, server, image_files, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    # A file that cannot be decoded or read: its path and the reason, exit status 1
    # (tests/test_predict_files.py has files of every kind among good ones).
    status, out, err = _cli(f"--rest={server.rest_url}", bad, tmp_path / "missing.jpg")
    assert status == 1 and out == ""
    assert [line for line in err.splitlines() if "error" in line] == [
        f"alexnet-predict: error: {bad}: truncated JPEG (its headers end before any scan "
        f"data)", f"alexnet-predict: error: {tmp_path / 'missing.jpg'}: No such file or "
                  f"directory"]
    # A request that fails as a whole: one line with the server's message and status.
    status, _, err = _cli(f"--grpc={server.grpc_target}", "--version=9", *image_files)
    line = _last_line(err)
    assert status == 1 and line.startswith("alexnet-predict: error: ")
    assert "Specific(alexnet, 9)" in line and "NOT_FOUND" in line
    # Usage errors: one line, status 2, before TensorFlow loads.
    status, _, err = _cli(bad)
    assert status == 2 and err == ("alexnet-predict: error: give exactly one of --rest, "
                                   "--grpc, --saved_model\n")
    status, _, err = _cli("--rest=http://localhost:8501", "--grpc=localhost:8500", bad)
    assert status == 2 and err == ("alexnet-predict: error: give exactly one of --rest, "
                                   "--grpc, --saved_model (got --rest and --grpc)\n")
    status, _, err = _cli(f"--rest={server.rest_url}")
    assert status == 2 and err == "alexnet-predict: error: give at least one image file\n"
    status, _, err = _cli("--rest=x", "--no_such_flag", bad)
    assert status == 2 and err.startswith("alexnet-predict: error: ") and "no_such_flag" in err


def _check_help(out, first_line, command="alexnet-predict"):
    """The docstring opens the help with a command per mode; the binary's flags follow."""
    assert out.startswith(first_line), out[:300]
    for mode in ("--rest=http://localhost:8501", "--grpc=localhost:8500",
                 "--saved_model=exports/alexnet"):
        assert f"\n    {command} {mode} cat.jpg" in out, mode
    flags_part = out.split("\nflags:\n", 1)[1]
    for flag in ("rest", "grpc", "saved_model", "model_name", "version", "label",
                 "signature", "form", "timeout"):
        assert f"  --{flag}:" in flags_part, flag
    for default in ("(default: 'alexnet')", "(default: 'serving_default')",
                    "(default: 'row')", "(default: '30.0')"):
        assert default in flags_part


def test_help_lists_the_flags_with_defaults():
    # --help prints the docstring and the binary's flags, and exits with status 0.
    status, out, _ = _cli("--help")
    assert status == 0
    _check_help(out, "alexnet-predict: classify image files")
    status, out, _ = _cli("--help", program=[REPO_ROOT / "tools" / "serving_client.py"])
    assert status == 0
    _check_help(out, "Classifies image files with an exported AlexNet",
                "python tools/serving_client.py")
    script = os.path.join(sysconfig.get_path("scripts"), "alexnet-predict")
    if not os.path.exists(script):
        pytest.skip(f"no console script {script} (pip install -e . writes it)")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0
    _check_help(result.stdout, "alexnet-predict: classify image files")


def test_tools_script_runs_the_client(run, server, image_files):
    status, out, err = _cli(f"--rest={server.rest_url}", image_files[0],
                            program=[REPO_ROOT / "tools" / "serving_client.py"])
    assert status == 0, err
    _check_top5(out, image_files[:1], run.classes)


def test_tools_script_names_itself_in_its_errors(tmp_path):
    # Its usage errors and each file's error say serving_client.py, not alexnet-predict.
    script = [REPO_ROOT / "tools" / "serving_client.py"]
    status, out, err = _cli(program=script)
    assert status == 2 and out == "" and err == (
        "serving_client.py: error: give exactly one of --rest, --grpc, --saved_model\n")
    missing = tmp_path / "missing.jpg"
    # No file can be read: the server is not asked, so none needs to run.
    status, out, err = _cli("--rest=http://127.0.0.1:9", missing, program=script)
    assert "Traceback" not in err
    assert status == 1 and out == "" and [line for line in err.splitlines()
                                          if ": error: " in line] == [
        f"serving_client.py: error: {missing}: No such file or directory"]


# ------------------------------------------------------------------ docs/SERVING.md


def _doc_block(first_line):
    blocks = re.findall(r"```[a-z]*\n(.*?)```", SERVING_MD.read_text(), flags=re.S)
    found = [b for b in blocks if b.startswith(first_line)]
    assert len(found) == 1, first_line
    return found[0]


def _transcribed_config_protos():
    """BatchingParameters and MonitoringConfig, transcribed field by field from TF Serving's
    session_bundle_config.proto and monitoring_config.proto (tensorflow-serving-api does
    not ship them)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="alexnet_tf_test/serving_configs.proto", package="tensorflow.serving",
        syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
    batching = file.message_type.add(name="BatchingParameters")
    for number, name, kind in [(1, "max_batch_size", "Int64Value"),
                               (2, "batch_timeout_micros", "Int64Value"),
                               (3, "max_enqueued_batches", "Int64Value"),
                               (4, "num_batch_threads", "Int64Value"),
                               (5, "thread_pool_name", "StringValue")]:
        batching.field.add(name=name, number=number, type=field.TYPE_MESSAGE,
                           type_name=f".google.protobuf.{kind}", label=field.LABEL_OPTIONAL)
    batching.field.add(name="allowed_batch_sizes", number=6, type=field.TYPE_INT64,
                       label=field.LABEL_REPEATED)
    batching.field.add(name="pad_variable_length_inputs", number=7, type=field.TYPE_BOOL,
                       label=field.LABEL_OPTIONAL)
    prometheus = file.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=field.TYPE_BOOL,
                         label=field.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=field.TYPE_STRING,
                         label=field.LABEL_OPTIONAL)
    monitoring = file.message_type.add(name="MonitoringConfig")
    monitoring.field.add(name="prometheus_config", number=1, type=field.TYPE_MESSAGE,
                         type_name=".tensorflow.serving.PrometheusConfig",
                         label=field.LABEL_OPTIONAL)
    pool.Add(file)
    return {name: message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
        for name in ("BatchingParameters", "MonitoringConfig")}


def test_doc_config_files_parse_as_tf_serving_configs():
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    models = text_format.Parse(_doc_block("# models.config"),
                               model_server_config_pb2.ModelServerConfig())
    (config,) = models.model_config_list.config
    assert (config.name, config.base_path, config.model_platform) == (
        "alexnet", "/models/alexnet", "tensorflow")
    assert dict(config.version_labels) == {"stable": 1, "canary": 2}
    protos = _transcribed_config_protos()
    batching = text_format.Parse(_doc_block("# batching_parameters.txt"),
                                 protos["BatchingParameters"]())
    sizes = list(batching.allowed_batch_sizes)
    assert sizes == sorted(sizes) and sizes[-1] == batching.max_batch_size.value
    assert not batching.pad_variable_length_inputs
    monitoring = text_format.Parse(_doc_block("# monitoring.config"),
                                   protos["MonitoringConfig"]())
    assert monitoring.prometheus_config.enable
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"
    assert "--monitoring_config_file=/config/monitoring.config" in SERVING_MD.read_text()


def test_doc_docker_command():
    text = SERVING_MD.read_text()
    assert ("docker run -p 8501:8501 -p 8500:8500 --mount type=bind,source=$PWD/exports/alexnet,"
            "target=/models/alexnet -e MODEL_NAME=alexnet -t tensorflow/serving\n") in text
    assert "Not run here" in text


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("base64")),
                    reason="needs curl and base64")
def test_doc_curl_commands_work_against_the_double(run, server, image_files, tmp_path):
    section = SERVING_MD.read_text().split("## REST with curl", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    assert len(commands) == 2
    jpeg = tmp_path / "cat.jpg"
    jpeg.write_bytes(run.val_jpegs[0])
    answers = []
    for command in commands:
        command = command.replace("http://localhost:8501", server.rest_url)
        result = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                                cwd=tmp_path, timeout=60)
        assert result.returncode == 0, result.stderr
        answers.append(json.loads(result.stdout))
    expected = local(run, [run.val_jpegs[0]])
    (prediction,) = answers[0]["predictions"]
    assert prediction["class_names"] == expected["class_names"][0].astype(str).tolist()
    np.testing.assert_allclose(prediction["scores"], expected["scores"][0], atol=1e-6)
    np.testing.assert_allclose(answers[1]["outputs"],
                               local(run, [run.val_jpegs[0]], "features")["features"], atol=1e-5)
    assert base64.b64decode(server.log[-2]["body"]["instances"][0]["image_bytes"]["b64"]) == \
        run.val_jpegs[0]
