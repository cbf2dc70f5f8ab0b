"""What users wrote with an earlier version keeps loading: a run directory, an export and
a converted-weights directory made by the package before the round-2 reorganisation
(tests/fixtures/v1, written by tests/fixtures/make_v1_fixtures.py at commit 89699cf)."""

import json
import pathlib
import shutil

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT

V1 = REPO_ROOT / "tests" / "fixtures" / "v1"


@pytest.fixture
def old_run(tmp_path, monkeypatch):
    """A copy of the v1 run (tests write beside it), its demo data in a private cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    workdir = tmp_path / "run"
    shutil.copytree(V1 / "run", workdir)
    return workdir


def test_v1_run_evaluates_to_the_metrics_it_wrote(old_run):
    from alexnet_tf import evaluate

    written = json.loads((old_run / "metrics.json").read_text())
    metrics = evaluate.evaluate_checkpoint(str(old_run), checkpoint="latest")
    # The same weights on the same (deterministic) demo validation images.
    assert metrics["examples"] == written["examples"] == 20
    assert metrics["loss"] == pytest.approx(written["loss"], rel=1e-5)
    assert metrics["top1_error"] == pytest.approx(written["top1_error"])
    assert metrics["top5_error"] == pytest.approx(written["top5_error"])


def test_v1_run_exports_and_the_export_matches_the_v1_export(old_run, tmp_path):
    from alexnet_tf import export

    from alexnet_tf import run as run_lib
    from alexnet_tf.convention import InputConvention

    # A v1 run has no input_convention.json: its config says what it is.
    assert not (old_run / "input_convention.json").exists()
    assert run_lib.Run(old_run).convention == InputConvention(
        mean_rgb=(127.5, 127.5, 127.5), std_rgb=(64.0, 64.0, 64.0), image_size=67,
        resize_size=76)
    path = export.export(str(old_run), str(tmp_path / "exports"))
    new = tf.saved_model.load(path)
    old = tf.saved_model.load(str(V1 / "export" / "1"))
    images = tf.constant(_demo_jpegs(tmp_path))
    for name in ("serving_default", "features"):
        a = new.signatures[name](image_bytes=images)
        b = old.signatures[name](image_bytes=images)
        for key in b:
            if b[key].dtype == tf.string:
                assert a[key].numpy().tolist() == b[key].numpy().tolist(), (name, key)
            else:
                np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), rtol=1e-4,
                                           atol=1e-5, err_msg=f"{name}/{key}")


def test_v1_export_serves_in_process_and_gives_features(tmp_path):
    from alexnet_tf.analysis import retrieval
    from alexnet_tf.serving import client

    images = _demo_jpegs(tmp_path)
    outputs = client.predict_local(str(V1 / "export"), images)
    assert outputs["probabilities"].shape == (len(images), 10)
    np.testing.assert_allclose(outputs["probabilities"].sum(axis=1), 1.0, rtol=1e-5)
    extractor = retrieval.saved_model_extractor(str(V1 / "export" / "1"))
    assert extractor.dim == 256  # fc7 at width 1/16


def test_v1_converted_weights_load_with_their_convention():
    from alexnet_tf.analysis import model_io

    loaded = model_io.load_model(model_path=str(V1 / "converted"))
    assert loaded.channel_order == "BGR"
    assert loaded.convention.mean_rgb == (120.0, 115.0, 100.0)
    from alexnet_tf import weights

    _, info = weights.load_converted(V1 / "converted")  # the one-file layout of v1
    assert (info.source, info.variant, info.num_classes, info.lrn_bias) == (
        "test:tiny", "paper", 10, 1.0)
    assert loaded.model.get_layer("fc7").units == 256
    assert loaded.model.get_layer("norm1").bias == pytest.approx(1.0)


def _demo_jpegs(tmp_path) -> list[bytes]:
    from alexnet_tf.data import demo

    root = demo.write_demo_dataset(tmp_path / "demo", seed=0, train_per_class=1, val_per_class=1)
    return [p.read_bytes() for p in sorted(pathlib.Path(root, "val").glob("*/*.jpg"))[:4]]
