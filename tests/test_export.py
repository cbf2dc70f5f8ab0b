"""The SavedModel export: a trained demo run exported, reloaded and compared with the Keras
model on the evaluation pipeline; the signatures as saved_model_cli shows them; versions,
checkpoints, the .keras file; and every kind of bad input named, never answered wrongly."""

import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from alexnet_tf import config as config_lib
from alexnet_tf import export, models
from alexnet_tf import run as run_lib
from alexnet_tf.data import demo, preprocess
from alexnet_tf.train import loop
from conftest import REPO_ROOT
from test_config import load_config_file

TOP_K = 5
NUM_CLASSES = 10
FC7_UNITS = 1024  # 4096 at width 0.25


def make_exported_run(root: pathlib.Path):
    """A 1-epoch tiny demo run made by the training loop, exported once (version 1)."""
    data = demo.write_demo_dataset(root / "data", seed=0, train_per_class=10, val_per_class=4)
    config = load_config_file(REPO_ROOT / "configs" / "demo.py")  # paper variant, 67 px, width 0.25
    config.data.data_dir = str(data)
    config.data.demo_train_per_class, config.data.demo_val_per_class = 10, 4
    config.train.global_batch_size = 32
    config.train.total_epochs = 1
    config.train.warmup_epochs = 0.0
    config.eval.global_batch_size = 40
    workdir = root / "run"
    loop.train_and_evaluate(config, str(workdir))
    export_dir = root / "exports"
    path = export.export(str(workdir), str(export_dir))
    info = json.loads((pathlib.Path(path) / "assets" / "export.json").read_text())
    config = config_lib.read_config(str(workdir / "config.json"))
    # The reference: the in-memory Keras model, restored from the same checkpoint.
    model = models.model_from_config(config)
    tf.train.Checkpoint(model=model).restore(info["checkpoint"]).expect_partial()
    return types.SimpleNamespace(
        workdir=workdir, export_dir=export_dir, path=pathlib.Path(path), config=config,
        info=info, model=model, loaded=tf.saved_model.load(path),
        classes=json.loads((workdir / "classes.json").read_text()),
        val_jpegs=[p.read_bytes() for p in sorted((data / "val").glob("*/*.jpg"))[::4][:6]])


_SHARED = {}


def shared_exported_run(tmp_path_factory):
    """One exported run per test process, shared with tests/test_serving.py (tests must
    not change it: those that write exports write them elsewhere)."""
    if "run" not in _SHARED:
        _SHARED["run"] = make_exported_run(tmp_path_factory.mktemp("export"))
    return _SHARED["run"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return shared_exported_run(tmp_path_factory)


# ------------------------------------------------------------------ test images


def smooth_rgb(height, width, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    phases = rng.uniform(0, 6, size=(3, 2))
    return np.stack([127 + 120 * np.sin(5 * x + p[0]) * np.cos(4 * y + p[1]) for p in phases],
                    -1).astype(np.uint8)


def encode(array, fmt, mode=None, **kwargs):
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def mixed_images(run):
    """Encoded images of several formats, modes and sizes (one batch)."""
    return {
        "jpeg_76x76_a": run.val_jpegs[0],  # stored at resize_size: the fused decode-and-crop
        "jpeg_76x76_b": run.val_jpegs[3],
        "png_90x120": encode(smooth_rgb(90, 120, 1), "PNG"),
        "grey_jpeg_100x80": encode(smooth_rgb(100, 80, 2), "JPEG", "L", quality=92),
        "grey_png_70x70": encode(smooth_rgb(70, 70, 3), "PNG", "L"),
        "cmyk_jpeg_76x100": encode(smooth_rgb(76, 100, 4), "JPEG", "CMYK", quality=92),
        "cmyk_jpeg_120x90": encode(smooth_rgb(120, 90, 5), "JPEG", "CMYK", quality=92),
        "rgba_png_64x64": encode(smooth_rgb(64, 64, 6), "PNG", "RGBA"),
        "gif_80x80": encode(smooth_rgb(80, 80, 7), "GIF"),
        "bmp_70x90": encode(smooth_rgb(70, 90, 8), "BMP"),
        "grey16_png_80x90": encode(smooth_rgb(80, 90, 9)[..., 0].astype(np.uint16) * 257, "PNG"),
    }


def reference_inputs(run, images):
    d = run.config.data
    norm = run_lib.Run(run.workdir).convention
    return tf.stack([preprocess.eval_image(tf.constant(b), image_size=run.config.model.image_size,
                                           resize_size=d.resize_size, norm=norm)
                     for b in images])


def reference_probabilities(run, images):
    return tf.nn.softmax(run.model(reference_inputs(run, images), training=False)).numpy()


def invalid_argument(call):
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        call()
    return info.value.message


# ---------------------------------------------------------- outputs equal the model


def test_serving_default_equals_keras_model_on_eval_pipeline(run):
    images = list(mixed_images(run).values())
    out = run.loaded.signatures["serving_default"](image_bytes=tf.constant(images))
    expected = reference_probabilities(run, images)
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5, rtol=0)
    top = np.argsort(-expected, axis=1)[:, :TOP_K]
    np.testing.assert_array_equal(out["classes"].numpy(), top)
    np.testing.assert_allclose(out["scores"].numpy(), np.take_along_axis(expected, top, 1),
                               atol=1e-5, rtol=0)
    ids = np.array([c["id"] for c in run.classes])
    names = np.array([c["name"] for c in run.classes])
    assert (out["class_ids"].numpy().astype(str) == ids[top]).all()
    assert (out["class_names"].numpy().astype(str) == names[top]).all()
    assert out["classes"].dtype == tf.int32 and out["scores"].shape == (len(images), TOP_K)


def test_features_equal_keras_fc7_activations(run):
    images = list(mixed_images(run).values())[:5]
    out = run.loaded.signatures["features"](image_bytes=tf.constant(images))["features"]
    expected = models.feature_extractor(run.model)(reference_inputs(run, images)).numpy()
    assert out.shape == (5, FC7_UNITS) and (expected > 0).any()
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5, rtol=1e-6)


def test_pixel_signatures_equal_the_bytes_path(run):
    # Decoded pixels take eval_image's resize, crop and normalisation: PNG-encoding the same
    # pixels (lossless) and sending the bytes must give the same answer.
    pixels = np.stack([smooth_rgb(90, 130, s) for s in range(3)])
    pngs = [encode(p, "PNG") for p in pixels]
    expected = reference_probabilities(run, pngs)
    uint8 = run.loaded.signatures["pixels"](images=tf.constant(pixels))
    np.testing.assert_allclose(uint8["probabilities"].numpy(), expected, atol=1e-5, rtol=0)
    # Floats on the 0..255 scale are rounded to uint8 first, as decoded images are.
    floats = pixels.astype(np.float32) + np.float32(0.3)
    as_float = run.loaded.signatures["pixels_float"](images=tf.constant(floats))
    np.testing.assert_allclose(as_float["probabilities"].numpy(), expected, atol=1e-5, rtol=0)
    assert (as_float["class_names"].numpy() == uint8["class_names"].numpy()).all()


def test_pixels_of_any_size_are_resized_and_cropped(run):
    for shape in [(1, 76, 76, 3), (2, 40, 300, 3), (1, 500, 90, 3)]:
        pixels = np.stack([smooth_rgb(*shape[1:3], seed=i) for i in range(shape[0])])
        out = run.loaded.signatures["pixels"](images=tf.constant(pixels))
        expected = reference_probabilities(run, [encode(p, "PNG") for p in pixels])
        np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5, rtol=0)


def test_batch_mixing_sizes_equals_one_image_at_a_time(run):
    images = list(mixed_images(run).values())
    together = run.loaded.signatures["serving_default"](image_bytes=tf.constant(images))
    for i, image in enumerate(images):
        alone = run.loaded.signatures["serving_default"](image_bytes=tf.constant([image]))
        np.testing.assert_allclose(alone["probabilities"].numpy()[0],
                                   together["probabilities"].numpy()[i], atol=1e-6, rtol=0)


def test_empty_batch_gives_empty_outputs(run):
    out = run.loaded.signatures["serving_default"](image_bytes=tf.constant([], tf.string))
    assert out["classes"].shape == (0, TOP_K) and out["probabilities"].shape == (0, NUM_CLASSES)
    features = run.loaded.signatures["features"](image_bytes=tf.constant([], tf.string))
    assert features["features"].shape == (0, FC7_UNITS)
    # Pixels are preprocessed as a whole batch: an empty one (of a size that needs a
    # resize) gives empty outputs too.
    pixels = run.loaded.signatures["pixels"](images=tf.zeros([0, 90, 120, 3], tf.uint8))
    assert pixels["classes"].shape == (0, TOP_K)
    assert pixels["probabilities"].shape == (0, NUM_CLASSES)


def test_greyscale_and_cmyk_are_converted_to_rgb(run):
    # CMYK JPEGs (Adobe's inverted storage, as Pillow and Photoshop write them) decode to
    # the same RGB as Pillow's conversion, within JPEG rounding; greyscale is replicated.
    for name in ("cmyk_jpeg_76x100", "cmyk_jpeg_120x90", "grey_jpeg_100x80"):
        data = mixed_images(run)[name]
        ours = preprocess.decode_rgb(tf.constant(data)).numpy().astype(int)
        pillow = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
        assert ours.shape == pillow.shape and np.abs(ours - pillow).max() <= 3, name


# ---------------------------------------------------------- the SavedModel on disk


def _saved_model_cli(path):
    cli = shutil.which("saved_model_cli", path=os.path.dirname(sys.executable))
    command = [cli] if cli else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    result = subprocess.run(command + ["show", "--dir", str(path), "--all"], capture_output=True,
                            text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def _parse_signatures(text):
    """{signature: {"inputs"/"outputs": {name: (dtype, shape)}, "method": ...}}."""
    signatures = {}
    for block in re.split(r"\n(?=signature_def\[)", text):
        match = re.match(r"signature_def\['([^']+)'\]:", block)
        if not match:
            continue
        entry = {"inputs": {}, "outputs": {}}
        for kind, name, dtype, shape in re.findall(
                r"(inputs|outputs)\['([^']+)'\] tensor_info:\s+dtype: (\w+)\s+shape: ([^\n]+)",
                block):
            entry[kind][name] = (dtype, shape.strip())
        method = re.search(r"Method name is: ([^\n]*)", block)
        entry["method"] = method[1].strip() if method else None
        signatures[match[1]] = entry
    return signatures


def test_saved_model_cli_lists_the_signatures(run):
    signatures = _parse_signatures(_saved_model_cli(run.path))
    k, c = f"(-1, {TOP_K})", f"(-1, {NUM_CLASSES})"
    classification = {"classes": ("DT_INT32", k), "class_ids": ("DT_STRING", k),
                      "class_names": ("DT_STRING", k), "scores": ("DT_FLOAT", k),
                      "probabilities": ("DT_FLOAT", c)}
    expected = {
        "serving_default": ({"image_bytes": ("DT_STRING", "(-1)")}, classification),
        "pixels": ({"images": ("DT_UINT8", "(-1, -1, -1, 3)")}, classification),
        "pixels_float": ({"images": ("DT_FLOAT", "(-1, -1, -1, 3)")}, classification),
        "features": ({"image_bytes": ("DT_STRING", "(-1)")},
                     {"features": ("DT_FLOAT", f"(-1, {FC7_UNITS})")}),
    }
    for name, (inputs, outputs) in expected.items():
        assert signatures[name]["inputs"] == inputs, name
        assert signatures[name]["outputs"] == outputs, name
        assert signatures[name]["method"] == "tensorflow/serving/predict", name
    assert set(signatures) - {"__saved_model_init_op"} == set(expected)


def test_signature_table_is_what_the_export_holds(run):
    # One row per signature: its inputs and outputs are the SavedModel's, and the names
    # analysis.retrieval reads (the features contract) come from the table.
    assert export.SIGNATURES == tuple(row.name for row in export.SIGNATURE_TABLE)
    assert set(run.loaded.signatures) == set(export.SIGNATURES)
    for row in export.SIGNATURE_TABLE:
        signature = run.loaded.signatures[row.name]
        assert sorted(signature.structured_outputs) == sorted(row.outputs), row.name
        assert sorted(signature.structured_input_signature[1]) == \
            sorted(spec.name for spec in row.inputs), row.name
    assert (export.FEATURES_SIGNATURE, export.FEATURES_INPUT, export.FEATURES_OUTPUT) == \
        ("features", "image_bytes", "features")


def test_export_layout_assets_and_keras_file(run):
    assert sorted(os.listdir(run.export_dir)) == ["1", "1.keras"]  # no temporary leftovers
    assets = run.path / "assets"
    assert json.loads((assets / "classes.json").read_text()) == run.classes
    assert config_lib.read_config(str(assets / "config.json")).to_dict() == run.config.to_dict()
    info = run.info
    assert info["version"] == 1 and info["signatures"] == list(export.SIGNATURES)
    assert info["checkpoint"] == tf.train.latest_checkpoint(
        str(run.workdir / "checkpoints" / "best"))
    assert info["preprocessing"]["mean_rgb"] == [127.5, 127.5, 127.5]  # the demo config's
    assert info["preprocessing"]["std_rgb"] == [64.0, 64.0, 64.0]
    assert (run.path / "assets.extra" / "tf_serving_warmup_requests").stat().st_size > 0
    # The input convention travels with the export: the run's, as the run saved it.
    from alexnet_tf.convention import InputConvention

    exported = InputConvention.load(assets)
    assert exported == InputConvention.load(run.workdir) == run_lib.Run(run.workdir).convention
    assert (exported.mean_rgb, exported.image_size, exported.resize_size) == (
        (127.5, 127.5, 127.5), 67, 76)
    # The .keras file beside the export is the same network (normalised image -> logits).
    keras_model = __import__("keras").models.load_model(run.export_dir / "1.keras")
    inputs = reference_inputs(run, run.val_jpegs[:3])
    np.testing.assert_allclose(keras_model(inputs).numpy(), run.model(inputs).numpy(),
                               atol=1e-5, rtol=0)


def _model_values(checkpoint_path):
    """{object path under "model": value} of every variable the checkpoint holds for the
    model, found through its object graph (a variable is stored once, under whichever
    path reached it first: in the training checkpoints, under the optimizer's list)."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    reader = tf.train.load_checkpoint(checkpoint_path)
    graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(
        reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    (model_id,) = [c.node_id for c in graph.nodes[0].children if c.local_name == "model"]
    values, queue, seen = {}, [(model_id, "model")], set()
    while queue:
        node_id, path = queue.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        node = graph.nodes[node_id]
        for attribute in node.attributes:
            if attribute.name == "VARIABLE_VALUE":
                values[path] = reader.get_tensor(attribute.checkpoint_key)
        queue.extend((c.node_id, f"{path}/{c.local_name}") for c in node.children)
    return values


def test_every_model_variable_is_restored_from_the_checkpoint(run, tmp_path):
    restored = export.restore_model(run_lib.Run(run.workdir), run.info["checkpoint"]).model
    ours = _model_values(tf.train.Checkpoint(model=restored).write(str(tmp_path / "restored")))
    training = _model_values(run.info["checkpoint"])
    # Keras' dropout seed-generator states are the only variables checkpoints leave out.
    weights = [v for v in restored.variables if "seed_generator" not in v.path]
    assert len(weights) == 16 and len(ours) == len(weights) and set(ours) == set(training)
    for path, value in ours.items():  # every weight holds the training checkpoint's value
        np.testing.assert_array_equal(value, training[path], path)
    fresh = models.model_from_config(run.config)  # and training moved them away from the init
    assert any(not np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(fresh.variables, restored.variables))


def test_restore_refuses_checkpoints_without_this_model(run, tmp_path):
    no_model = tf.train.Checkpoint(step=tf.Variable(3, dtype=tf.int64)).write(str(tmp_path / "a"))
    with pytest.raises(export.ExportError, match="does not hold every variable"):
        export.restore_model(run_lib.Run(run.workdir), no_model)
    other = run.config.copy_and_resolve_references()
    other.model.width = 0.5
    wider = tf.train.Checkpoint(model=models.model_from_config(other)).write(str(tmp_path / "b"))
    with pytest.raises(export.ExportError, match="does not hold every variable"):
        export.restore_model(run_lib.Run(run.workdir), wider)


def test_checkpoint_choices(run, tmp_path):
    from alexnet_tf.run import CheckpointError
    from alexnet_tf.run import resolve_checkpoint as resolve

    checkpoints = run.workdir / "checkpoints"
    latest = tf.train.latest_checkpoint(str(checkpoints))
    best = tf.train.latest_checkpoint(str(checkpoints / "best"))
    assert resolve(str(run.workdir), "latest") == latest
    assert resolve(str(run.workdir), "best") == best
    assert resolve(str(run.workdir), "auto") == best
    assert resolve(str(run.workdir), latest) == latest
    assert resolve(str(run.workdir), str(checkpoints)) == latest
    with pytest.raises(CheckpointError, match="neither one of"):
        resolve(str(run.workdir), str(checkpoints / "ckpt-999"))
    # A run without a best checkpoint: "auto" falls back to latest, "best" is refused.
    other = tmp_path / "run"
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)),
                                         str(other / "checkpoints"), max_to_keep=1)
    path = manager.save()
    assert resolve(str(other), "auto") == path
    with pytest.raises(CheckpointError, match="No best checkpoint"):
        resolve(str(other), "best")
    with pytest.raises(CheckpointError, match="No checkpoint in"):
        resolve(str(tmp_path / "empty"), "latest")


def _export_binary(*args, python_options=()):
    """``python -m alexnet_tf.cli.export ARGS`` in a subprocess: the binary's absl flags
    must never meet those of alexnet_tf.serving.client (which defines --version too) in
    one process."""
    return subprocess.run([sys.executable, *python_options, "-m", "alexnet_tf.cli.export",
                           *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


def _error_lines(result):
    """The binary's one-line errors: ``alexnet-export: error: <message>`` on stderr."""
    return [line for line in result.stderr.splitlines()
            if line.startswith("alexnet-export: error: ")]


def test_binary_writes_the_next_version_and_never_overwrites(run, tmp_path):
    export_dir = tmp_path / "exports"
    shutil.copytree(run.export_dir, export_dir)  # holds version 1
    args = [f"--workdir={run.workdir}", f"--export_dir={export_dir}", "--checkpoint=latest"]
    result = _export_binary(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Exported {export_dir / '2'}, computing in float32 (and " in result.stdout
    assert export.existing_versions(str(export_dir)) == [1, 2]
    assert (export_dir / "2.keras").exists()
    second = tf.saved_model.load(str(export_dir / "2"))
    image = tf.constant(run.val_jpegs[:2])
    np.testing.assert_allclose(second.signatures["serving_default"](image_bytes=image)
                               ["probabilities"].numpy(),
                               reference_probabilities(run, run.val_jpegs[:2]), atol=1e-5)
    before = sorted(os.listdir(export_dir))
    result = _export_binary(*args, "--version=2")
    assert result.returncode == 1
    assert "exists: versions are never overwritten" in result.stderr
    assert len(_error_lines(result)) == 1, result.stderr[-2000:]
    assert sorted(os.listdir(export_dir)) == before == ["1", "1.keras", "2", "2.keras"]
    result = _export_binary("--workdir=/nonexistent", "--export_dir=x")
    assert result.returncode == 1
    assert "is not the work directory of a training run" in result.stderr
    assert len(_error_lines(result)) == 1, result.stderr[-2000:]
    result = _export_binary("--workdir=a")
    assert result.returncode == 2  # a missing flag: usage
    assert "give --model=SOURCE (or --workdir=RUN) and --export_dir" in result.stderr
    assert len(_error_lines(result)) == 1, result.stderr[-2000:]


# A flag value no export takes: (flag, what the one line says is expected).
BAD_FLAG_VALUES = [
    ("--version=-1", "--version must be an integer from 0 to 9223372036854775807"),
    ("--version=9223372036854775808", "--version must be an integer from 0 to "
                                      "9223372036854775807 (TF Serving's model versions are "
                                      "int64)"),
    ("--top_k=0", "--top_k must be an integer >= 1"),
    ("--top_k=-3", "--top_k must be an integer >= 1"),
    ("--max_pixels=0", "--max_pixels must be an integer >= 1"),
    ("--max_pixels=-5", "--max_pixels must be an integer >= 1"),
    ("--max_aspect_ratio=nan", "--max_aspect_ratio must be a finite number >= 1"),
    ("--max_aspect_ratio=inf", "--max_aspect_ratio must be a finite number >= 1"),
    ("--max_aspect_ratio=0.5", "--max_aspect_ratio must be a finite number >= 1"),
]


@pytest.mark.parametrize("flag, expected", BAD_FLAG_VALUES,
                         ids=[flag for flag, _ in BAD_FLAG_VALUES])
def test_binary_refuses_a_bad_flag_value_before_tensorflow(tmp_path, flag, expected):
    # The model source need not exist: the values are checked first, without TensorFlow.
    result = _export_binary("--model=no_such_model", f"--export_dir={tmp_path / 'exports'}",
                            flag, python_options=["-X", "importtime"])
    lines = _error_lines(result)
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    value = flag.split("=", 1)[1]
    assert expected in lines[0] and lines[0].endswith(f", got {value}."), lines[0]
    imported = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)", result.stderr, re.M)
    assert "alexnet_tf.export.limits" in imported  # the -X importtime listing was read
    assert not [m for m in imported if m.split(".")[0] in ("tensorflow", "keras")]
    assert not (tmp_path / "exports").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"version": -1}, r"version must be an integer from 0 to 9223372036854775807 .*got -1"),
    ({"version": 2**63}, r"version must be an integer .*got 9223372036854775808"),
    ({"version": True}, r"version must be an integer .*got True"),
    ({"top_k": 0}, r"top_k must be an integer >= 1 .*got 0"),
    ({"max_pixels": 2**63}, r"max_pixels must be an integer >= 1 and <= 9223372036854775807"),
    ({"max_aspect_ratio": float("inf")}, r"max_aspect_ratio must be a finite number >= 1 "
                                         r".*got inf"),
    ({"compute_dtype": "float16"}, r"compute_dtype must be one of float32, bfloat16, got "
                                   r"'float16'"),
    # A dtype object equals its name but is not one (export.json could not hold it).
    ({"compute_dtype": tf.bfloat16}, r"compute_dtype must be one of float32, bfloat16, got "
                                     r"tf.bfloat16"),
    ({"compute_dtype": np.dtype("float32")}, r"compute_dtype must be one of float32, "
                                             r"bfloat16, got dtype\('float32'\)"),
    # Known only from the model: more classes than it has.
    ({"top_k": NUM_CLASSES + 1}, rf"top_k={NUM_CLASSES + 1} is more than the {NUM_CLASSES} "
                                 rf"classes of .*; expected 1 to {NUM_CLASSES}"),
])
def test_export_refuses_values_it_cannot_write(run, tmp_path, kwargs, message):
    with pytest.raises(export.ExportError, match=message):
        export.export(str(run.workdir), str(tmp_path / "exports"), **kwargs)
    assert not (tmp_path / "exports").exists()


def test_serving_module_runs_the_same_check(run):
    convention = run_lib.Run(run.workdir).convention
    for kwargs, message in [({"top_k": 0}, "top_k must be an integer >= 1"),
                            ({"max_aspect_ratio": float("nan")},
                             "max_aspect_ratio must be a finite number >= 1")]:
        with pytest.raises(export.ExportError, match=message):
            export.build_serving_module(convention, run.model, run.classes, **kwargs)


def test_binary_refuses_a_top_k_above_the_models_classes(run, tmp_path):
    result = _export_binary(f"--workdir={run.workdir}", f"--export_dir={tmp_path / 'exports'}",
                            f"--top_k={NUM_CLASSES + 1}")
    lines = _error_lines(result)
    assert result.returncode == 1 and len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert f"top_k={NUM_CLASSES + 1} is more than the {NUM_CLASSES} classes of" in lines[0]
    assert not (tmp_path / "exports").exists()


def _console_script():
    return shutil.which("alexnet-export", path=os.path.dirname(sys.executable))


@pytest.mark.parametrize("how", ["python -m", "console script"])
def test_binary_help_lists_its_flags_without_importing_tensorflow(how):
    if how == "python -m":
        result = _export_binary("--help", python_options=["-X", "importtime"])
    else:
        if not _console_script():
            pytest.skip("alexnet-export is not installed (pip install -e .)")
        result = subprocess.run([sys.executable, "-X", "importtime", _console_script(),
                                 "--help"], capture_output=True, text=True, timeout=120)
    assert result.stdout.startswith("alexnet-export:"), result.stdout[:500]  # its docstring
    for flag in ("--workdir", "--export_dir", "--version", "--checkpoint", "--top_k",
                 "--max_pixels", "--max_aspect_ratio"):
        assert f"  {flag}:" in result.stdout, (flag, result.stdout)
    assert "(default: '40000000')" in result.stdout  # limits.DEFAULT_MAX_PIXELS
    imported = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+(\S+)", result.stderr, re.M)
    assert "alexnet_tf.export.limits" in imported  # the -X importtime listing was read
    assert not [m for m in imported if m.split(".")[0] in ("tensorflow", "keras")]


# --------------------------------------------------------------------- bad input


def _big(fmt):
    return encode(np.zeros((10000, 10000), np.uint8), fmt,
                  **({"quality": 10} if fmt == "JPEG" else {"compress_level": 1}))


def _png_header_claiming(height, width):
    """A small valid PNG whose IHDR claims another size (CRC left stale): only a check of
    the header, before decoding, can answer with the claimed size."""
    data = bytearray(encode(smooth_rgb(8, 8), "PNG"))
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    return bytes(data)


BAD_BYTES = {
    "not an image": (b"this is plain text, not an image",
                     r"image_bytes\[1\] is not a JPEG, PNG, GIF or BMP image \(32 bytes\)"),
    "empty string": (b"", r"image_bytes\[1\] is empty \(0 bytes\)"),
    "truncated JPEG": (None, r"image_bytes\[1\] is a truncated JPEG \(no end-of-image marker"),
    "truncated PNG": (None, r"image_bytes\[1\] is a truncated PNG \(no IEND chunk\)"),
    "10000x10000 JPEG": (None, r"image_bytes\[1\] is 10000x10000 \(height x width\), "
                               r"100000000 pixels: more than the 40000000 allowed"),
    "10000x10000 PNG": (None, r"image_bytes\[1\] is 10000x10000 .* more than the 40000000"),
    "PNG header claiming 20000x3000": (None, r"image_bytes\[1\] is 20000x3000 \(height x "
                                             r"width\), 60000000 pixels"),
    "strip 2x400": (None, r"image_bytes\[1\] is 2x400 \(height x width\): its longer side is "
                          r"more than 50 times its shorter side"),
}


def _bad_bytes(run, case):
    data, pattern = BAD_BYTES[case]
    if case == "truncated JPEG":
        data = run.val_jpegs[1][:len(run.val_jpegs[1]) // 2]
    elif case == "truncated PNG":
        full = encode(smooth_rgb(60, 60), "PNG")
        data = full[:len(full) - 30]
    elif case.startswith("10000x10000"):
        data = _big(case.split()[1])
    elif case.startswith("PNG header"):
        data = _png_header_claiming(20000, 3000)
    elif case.startswith("strip"):
        data = encode(smooth_rgb(2, 400), "PNG")
    return data, pattern


@pytest.mark.parametrize("case", list(BAD_BYTES))
def test_bad_image_fails_the_request_naming_image_and_problem(run, case):
    data, pattern = _bad_bytes(run, case)
    good = run.val_jpegs[0]
    for name in ("serving_default", "features"):
        message = invalid_argument(lambda: run.loaded.signatures[name](
            image_bytes=tf.constant([good, data, good])))
        assert re.search(pattern, message), message


def test_valid_images_are_answered_after_a_bad_request(run):
    good = run.val_jpegs[:2]
    invalid_argument(lambda: run.loaded.signatures["serving_default"](
        image_bytes=tf.constant([good[0], b"", good[1]])))
    out = run.loaded.signatures["serving_default"](image_bytes=tf.constant(good))
    np.testing.assert_allclose(out["probabilities"].numpy(), reference_probabilities(run, good),
                               atol=1e-5, rtol=0)


def test_bad_pixels_are_refused(run):
    pixels = run.loaded.signatures["pixels"]
    as_float = run.loaded.signatures["pixels_float"]
    assert re.search(r"images is 1x60 \(height x width\): its longer side is more than 50",
                     invalid_argument(lambda: pixels(images=tf.zeros([2, 1, 60, 3], tf.uint8))))
    assert re.search(r"images has no pixels \(0x5",
                     invalid_argument(lambda: pixels(images=tf.zeros([1, 0, 5, 3], tf.uint8))))
    # A batch of RGB images and nothing else, in both signatures: one image without its
    # batch dimension (whose shorter side needs no resize) once aborted the process.
    size = run_lib.Run(run.workdir).convention.resize_size
    for shape in ([size, size, 3], [size + 20, size, 3], [1, 2, size, size, 3], [1, 8, 8, 1],
                  [1, 8, 8, 4], [size], []):
        expected = (r"Shape of tensor images \[" + re.escape(",".join(str(n) for n in shape))
                    + r"\] is not compatible with expected shape \[\?,\?,\?,3\]")
        for signature, dtype in ((pixels, tf.uint8), (as_float, tf.float32)):
            assert re.search(expected, invalid_argument(
                lambda: signature(images=tf.zeros(shape, dtype)))), (shape, dtype)
    # Image bytes: a vector of them, in both signatures that take bytes.
    image = run.val_jpegs[0]
    for value, shape in ((tf.constant(image), "[]"), (tf.constant([[image, image]]), "[1,2]")):
        for name in ("serving_default", "features"):
            assert f"Shape of tensor image_bytes {shape} is not compatible with expected " \
                   f"shape [?]" in invalid_argument(
                       lambda: run.loaded.signatures[name](image_bytes=value)), (name, shape)
    for bad in (np.nan, np.inf, -1.0, 256.0):
        values = np.full([1, 8, 8, 3], 100.0, np.float32)
        values[0, 3, 3, 1] = bad
        message = invalid_argument(lambda: as_float(images=tf.constant(values)))
        assert "images must be finite RGB values on the 0..255 scale" in message


def test_size_limit_is_a_parameter_of_the_export(run):
    # The checks run eagerly too; a 3000x3000 image passes the default and fails 4 MP.
    data = tf.constant(encode(np.zeros((3000, 2000), np.uint8), "JPEG"))
    assert [int(x) for x in export.header_size(data)] == [3000, 2000]
    export.check_encoded_image(data, tf.constant("x"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="more than the 4000000"):
        export.check_encoded_image(data, tf.constant("x"), max_pixels=4_000_000)


def test_export_holds_ops_every_server_runs(run):
    """No XLA-compiled function (the training LRN) and no grouped convolution (the
    training path of "auto" on oneDNN CPUs and GPUs): split convolutions and TF's LRN."""
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((run.path / "saved_model.pb").read_bytes())
    graph = saved.meta_graphs[0].graph_def
    functions = list(graph.library.function)
    assert not [f.signature.name for f in functions
                if f.attr.get("_XlaMustCompile") and f.attr["_XlaMustCompile"].b]
    nodes = list(graph.node) + [n for f in functions for n in f.node_def]
    assert any(n.op == "LRN" for n in nodes)
    convs = {n.name for n in nodes if n.op == "Conv2D"}
    # Two convolutions (one per channel half) for each grouped layer, one for the rest.
    assert run.config.model.grouped_conv_implementation == "auto"
    for layer, count in (("conv1", 1), ("conv2", 2), ("conv3", 1), ("conv4", 2), ("conv5", 2)):
        prefixes = {name.rsplit(f"/{layer}_1/", 1)[0] for name in convs if f"/{layer}_1/" in name}
        assert prefixes, layer
        for prefix in prefixes:
            assert len([n for n in convs if n.startswith(f"{prefix}/{layer}_1/")]) == count, layer


def test_the_next_version_skips_every_name_a_version_takes(tmp_path):
    """A directory, a plain file named by the number and a stray ``<N>.keras`` all take
    their version: leaving --version out never lands on one of them."""
    assert export.next_version(str(tmp_path / "new")) == 1
    (tmp_path / "2").mkdir()
    assert export.next_version(str(tmp_path)) == 3
    (tmp_path / "7.keras").write_bytes(b"a model file without its directory")
    (tmp_path / "5").write_text("a file")
    (tmp_path / "\u00b2").mkdir()  # a superscript two: a digit to str.isdigit, not to int
    assert export.next_version(str(tmp_path)) == 8
    assert export.existing_versions(str(tmp_path)) == [2]


def test_no_next_version_above_int64(tmp_path):
    from alexnet_tf.export import limits

    (tmp_path / str(limits.MAX_VERSION)).mkdir()
    with pytest.raises(export.ExportError, match=r"already holds version 9223372036854775807, "
                                                 r"the highest TF Serving can load"):
        export.next_version(str(tmp_path))


# The bfloat16 export against the float32 model, on `mixed_images`, within the export's
# stated tolerances (`export.BFLOAT16_PROBABILITY_TOLERANCE`, 0.02, and 5% for fc7).
BFLOAT16_PROBABILITY_TOLERANCE = export.BFLOAT16_PROBABILITY_TOLERANCE
BFLOAT16_FEATURE_RELATIVE_TOLERANCE = export.BFLOAT16_FEATURE_RELATIVE_TOLERANCE


def test_a_bfloat16_export_stores_bfloat16_weights_and_serves_within_tolerance(
        run, tmp_path, monkeypatch):
    from alexnet_tf.export import saved_model as saved_model_lib

    warnings = []
    monkeypatch.setattr(saved_model_lib.logging, "warning",
                        lambda message, *args: warnings.append(message % args))
    # Beside the float32 version 1, as a user following the README would write it.
    shutil.copytree(run.export_dir, tmp_path / "bf16")
    path = pathlib.Path(export.export(str(run.workdir), str(tmp_path / "bf16"),
                                      compute_dtype="bfloat16"))
    assert path.name == "2"
    assert warnings == [
        "Version 2 computes in bfloat16, version 1 (served until now) in float32: TF Serving "
        "serves the highest version, so clients get bfloat16 answers from now on. To serve "
        "both, export to another base path (a model of its own)."]
    info = json.loads((path / "assets" / "export.json").read_text())
    assert info["compute_dtype"] == "bfloat16"
    dtypes = tf.train.load_checkpoint(str(path / "variables" / "variables")
                                      ).get_variable_to_dtype_map()
    kernels = {name: dtype for name, dtype in dtypes.items() if "kernel" in name}
    assert kernels and set(kernels.values()) == {tf.bfloat16}, kernels
    loaded = tf.saved_model.load(str(path))
    images = list(mixed_images(run).values())
    out = loaded.signatures["serving_default"](image_bytes=tf.constant(images))
    assert out["probabilities"].dtype == tf.float32
    want = reference_probabilities(run, images)
    difference = float(np.max(np.abs(out["probabilities"].numpy() - want)))
    assert difference < BFLOAT16_PROBABILITY_TOLERANCE, difference
    assert difference > 0  # it does compute in bfloat16
    features = loaded.signatures["features"](image_bytes=tf.constant(images))["features"].numpy()
    reference = models.feature_extractor(run.model)(reference_inputs(run, images)).numpy()
    relative = float(np.linalg.norm(features - reference) / np.linalg.norm(reference))
    assert relative < BFLOAT16_FEATURE_RELATIVE_TOLERANCE, relative
    # The .keras file beside it keeps the weights as trained.
    import keras
    kept = keras.models.load_model(str(path) + ".keras")
    assert {w.dtype for w in kept.weights if w.path.endswith("kernel")} == {"float32"}
    print(f"bfloat16 export: max |probability difference| {difference:.2e}, fc7 relative "
          f"difference {relative:.2e}")


def test_a_new_version_warns_when_it_changes_what_is_served(tmp_path, monkeypatch):
    from alexnet_tf.export import saved_model as saved_model_lib

    warnings = []
    monkeypatch.setattr(saved_model_lib.logging, "warning",
                        lambda message, *args: warnings.append(message % args))

    def version(number, info):
        assets = tmp_path / str(number) / "assets"
        assets.mkdir(parents=True)
        if info is not None:
            (assets / export.EXPORT_INFO_FILENAME).write_text(info)

    warn = saved_model_lib._warn_about_what_is_served
    warn(str(tmp_path), 1, "bfloat16")  # nothing exported yet
    version(3, json.dumps({"compute_dtype": "float32"}))
    warn(str(tmp_path), 4, "float32")  # same precision as the served version
    assert warnings == []
    warn(str(tmp_path), 4, "bfloat16")
    assert warnings.pop().startswith("Version 4 computes in bfloat16, version 3 (served "
                                     "until now) in float32: ")
    warn(str(tmp_path), 2, "float32")
    assert warnings.pop() == ("Version 2 is lower than 3: TF Serving's default version "
                              "policy keeps serving the highest.")
    # An export written before "compute_dtype" existed computed in float32.
    version(5, json.dumps({"version": 5}))
    warn(str(tmp_path), 6, "bfloat16")
    assert "version 5 (served until now) in float32" in warnings.pop()
    # A version that is not this package's export: nothing to compare, no warning.
    version(7, "not json")
    warn(str(tmp_path), 8, "bfloat16")
    version(8, None)
    warn(str(tmp_path), 9, "bfloat16")
    assert warnings == []


def test_a_float32_export_computes_in_float32_under_a_mixed_global_policy(run, tmp_path):
    # A notebook that trained in bfloat16 leaves Keras' global policy mixed: the export
    # still builds its network in float32, as its export.json says, and leaves the
    # caller's policy as it was.
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        path = pathlib.Path(export.export(str(run.workdir), str(tmp_path / "exports")))
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    finally:
        keras.mixed_precision.set_global_policy(previous)
    info = json.loads((path / "assets" / "export.json").read_text())
    assert info["compute_dtype"] == "float32"
    kept = keras.models.load_model(str(path) + ".keras")
    assert {layer.dtype_policy.name for layer in kept.layers} == {"float32"}
    images = list(mixed_images(run).values())
    out = tf.saved_model.load(str(path)).signatures["serving_default"](
        image_bytes=tf.constant(images))
    np.testing.assert_allclose(out["probabilities"].numpy(), reference_probabilities(run, images),
                               atol=1e-5, rtol=0)
