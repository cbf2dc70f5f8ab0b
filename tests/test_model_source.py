"""Model sources (`alexnet_tf.model_source`): every kind (a run, a checkpoint, a .keras
file, converted weights) resolves, evaluates and exports to the same numbers; ensembles
average their members' softmax outputs (Sec. 6, Table 2); a 1000-class source scores an
image folder by class name; bad input is named before anything is written.

Runs are written here as training leaves them (config.json, classes.json,
input_convention.json, checkpoints/ and checkpoints/best/ of tiny He-initialised
networks): what a source reads is the files, not how they were made. Full-width networks
only for the two real weight formats, which exist at no other width: Caffe's
bvlc_alexnet .npy (converted by tools/convert_weights.py) and torchvision's .pth (compared
with torch itself, on a photo, through the export's own image_bytes preprocessing).
"""

import ast
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import types
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from alexnet_tf import config as config_lib
from alexnet_tf import evaluate, export, model_source, models, weights
from alexnet_tf import run as run_lib
from alexnet_tf.convention import InputConvention
from alexnet_tf.data import demo, pipeline, preprocess, sources
from alexnet_tf.model_source import SourceError
from conftest import REPO_ROOT

WIDTH, SIZE, RESIZE = 0.0625, 67, 76
CONVENTION = InputConvention(mean_rgb=(127.5,) * 3, std_rgb=(64.0,) * 3, image_size=SIZE,
                             resize_size=RESIZE)


def numpy_softmax(logits):
    logits = np.asarray(logits, np.float64)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def tiny_config(data_dir):
    c = config_lib.base_config()
    c.model.variant, c.model.num_classes, c.model.width, c.model.image_size = (
        "paper", 10, WIDTH, SIZE)
    c.model.init = "he"  # outputs that differ from image to image (the paper's N(0, 0.01) barely do)
    c.data.source, c.data.data_dir, c.data.resize_size = "image_folder", str(data_dir), RESIZE
    c.data.mean_rgb, c.data.std_rgb = CONVENTION.mean_rgb, CONVENTION.std_rgb
    c.eval.global_batch_size = 20
    return config_lib.validate(c)


def make_run(root: pathlib.Path, data_dir, seed: int, *, class_ids=None, best=True):
    """A work directory as training leaves it: the latest checkpoint (step 5) and, unless
    ``best`` is False, a best checkpoint (step 6) with other weights."""
    config = tiny_config(data_dir)
    run = run_lib.Run(root)
    run.write_config(config)
    run.write_classes(list(class_ids or sorted(os.listdir(pathlib.Path(data_dir) / "train"))))
    run.write_convention(InputConvention.from_config(config))
    for offset, directory in enumerate((run.checkpoint_dir, run.best_dir)):
        if offset and not best:
            break
        config.seed = seed * 10 + offset
        model = models.model_from_config(config)
        fc8 = model.get_layer("fc8")  # N(0, 0.01) gives near-uniform softmax outputs
        fc8.kernel.assign(fc8.kernel * 30.0)
        checkpoint = tf.train.Checkpoint(model=model, step=tf.Variable(5 + offset, dtype=tf.int64))
        tf.train.CheckpointManager(checkpoint, directory, max_to_keep=1).save()
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The demo classes, 4 validation images each (40), in the real folder format."""
    return demo.write_demo_dataset(tmp_path_factory.mktemp("data") / "demo", seed=0,
                                   train_per_class=1, val_per_class=4)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("runs")
    return types.SimpleNamespace(a=make_run(root / "a", data, 1), b=make_run(root / "b", data, 2))


@pytest.fixture(scope="module")
def run_export(tmp_path_factory, runs):
    """Run a exported once (its best checkpoint): EXPORT_DIR/1 and EXPORT_DIR/1.keras.
    Exports are few here: each traces the serving signatures (~20 s on 2 cores)."""
    return pathlib.Path(export.export(str(runs.a), str(tmp_path_factory.mktemp("export") / "e")))


def assert_same_weights(a, b):
    assert len(a.weights) == len(b.weights)
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_array_equal(x.numpy(), y.numpy(), x.path)


def keras_file_of(run_dir, path):
    """The latest checkpoint of ``run_dir`` saved as a .keras file at ``path``."""
    run_lib.Run(run_dir).restore_model("latest").model.save(path)
    return path


def val_jpegs(data, count=4):
    return [p.read_bytes() for p in sorted(pathlib.Path(data, "val").glob("*/*.jpg"))[::7][:count]]


# ---------------------------------------------------------------------- resolving


def test_a_run_resolves_to_its_best_checkpoint_else_the_latest(runs, data, tmp_path):
    run = run_lib.Run(runs.a)
    source = model_source.resolve(str(runs.a))
    assert (source.kind, source.path, source.workdir) == ("run", str(runs.a), str(runs.a))
    assert source.checkpoint == run.checkpoint("best")
    assert source.description.startswith("run ") and source.description.endswith(
        f"{runs.a.parent.name}/a (best checkpoint ckpt-1)")
    assert source.model_config.to_dict() == run.config.model.to_dict()
    assert source.class_names == tuple(c["id"] for c in run.classes()) == tuple(
        sorted(os.listdir(data / "train")))
    assert source.convention == run.convention == CONVENTION and source.num_classes == 10
    assert source.data_config.to_dict() == run.config.data.to_dict()
    assert_same_weights(source.load_model(), run.restore_model("best").model)
    latest = model_source.resolve(str(runs.a), checkpoint="latest")
    assert latest.checkpoint == run.checkpoint("latest") and "latest checkpoint" in latest.description
    assert latest.fingerprint != source.fingerprint  # other weights, another fingerprint
    # Without a best checkpoint, the latest.
    only_latest = make_run(tmp_path / "young", data, 3, best=False)
    assert model_source.resolve(str(only_latest)).checkpoint == run_lib.Run(
        only_latest).checkpoint("latest")
    # What a run started from the source adopts: its convention and architecture, which
    # build the same input pipeline and network.
    overrides = source.config_overrides()
    assert overrides == {
        "data.channel_order": "RGB", "data.mean_rgb": (127.5,) * 3, "data.std_rgb": (64.0,) * 3,
        "data.resize_size": RESIZE, "model.image_size": SIZE, "model.variant": "paper",
        "model.width": WIDTH, "model.groups": None, "model.lrn_bias": None,
        "model.lrn_alpha": None}
    config = config_lib.base_config()
    config.update_from_flattened_dict(overrides)
    config.model.num_classes = 10
    assert InputConvention.from_config(config_lib.validate(config)) == source.convention


@pytest.mark.parametrize("where", ["prefix", "index file", "directory", "best directory"])
def test_a_checkpoint_resolves_with_its_run(runs, where):
    run = run_lib.Run(runs.a)
    latest, best = run.checkpoint("latest"), run.checkpoint("best")
    spec, expected = {"prefix": (latest, latest), "index file": (latest + ".index", latest),
                      "directory": (run.checkpoint_dir, latest),
                      "best directory": (run.best_dir, best)}[where]
    source = model_source.resolve(spec)
    assert (source.kind, source.checkpoint, source.workdir) == ("checkpoint", expected, str(runs.a))
    assert source.description.startswith("checkpoint ") and (
        f"{os.path.relpath(expected, runs.a)} of run " in source.description)
    assert source.model_config.to_dict() == run.config.model.to_dict()
    assert source.convention == CONVENTION and source.class_names == model_source.resolve(
        str(runs.a)).class_names
    if where == "prefix":
        assert_same_weights(source.load_model(), run.restore_model("latest").model)


@pytest.mark.parametrize("variant, kwargs", [
    ("paper", dict(width=WIDTH, image_size=67)),
    ("paper", dict(width=0.125, image_size=70, groups=1, lrn_bias=1.0, lrn_alpha=2e-5)),
    ("one_tower", dict(width=0.125, image_size=63)),
    ("modern", dict(width=0.25, image_size=64, dropout_rate=0.3)),
])
def test_a_keras_file_says_which_network_it_holds(tmp_path, variant, kwargs):
    model = models.create_model(variant, num_classes=7, seed=0, init="he", **kwargs)
    path = tmp_path / "model.keras"
    model.save(path)
    source = model_source.resolve(str(path))
    assert (source.kind, source.path, source.num_classes) == ("keras", str(path), 7)
    # A bare file says nothing of its input or classes.
    assert source.convention is None and source.class_names is None and source.workdir is None
    m = source.model_config
    assert (m.variant, m.num_classes, m.image_size, m.width, m.groups) == (
        variant, 7, kwargs["image_size"], kwargs["width"], kwargs.get("groups"))
    assert m.dropout_rate == kwargs.get("dropout_rate", 0.5)
    if variant == "paper":
        assert (m.lrn_bias, m.lrn_alpha) == (kwargs.get("lrn_bias", 2.0),
                                             kwargs.get("lrn_alpha", 1e-4))
    else:
        assert m.lrn_bias is None and m.lrn_alpha is None
    assert set(source.config_overrides()) == {"model.image_size", "model.variant", "model.width",
                                              "model.groups", "model.lrn_bias", "model.lrn_alpha"}
    x = np.random.default_rng(0).normal(size=(2, m.image_size, m.image_size, 3)).astype(np.float32)
    np.testing.assert_allclose(source.load_model()(x, training=False).numpy(),
                               model(x, training=False).numpy(), rtol=1e-5, atol=1e-5)


def test_a_keras_file_takes_the_convention_of_what_it_sits_in(runs, tmp_path):
    restored = run_lib.Run(runs.a).restore_model("best").model
    in_run = runs.a / "saved" / "model.keras"  # a run's directory: the run's convention and classes
    in_run.parent.mkdir()
    restored.save(in_run)
    source = model_source.resolve(str(in_run))
    assert source.kind == "keras" and source.workdir == str(runs.a)
    assert source.convention == CONVENTION and source.class_names == model_source.resolve(
        str(runs.a)).class_names
    assert source.description.startswith(".keras file ") and source.description.endswith(
        "a/saved/model.keras (convention of its run)")
    shutil.rmtree(in_run.parent)
    # An export's EXPORT_DIR/<v>.keras: the version's assets (the layout `export` writes;
    # a real export's .keras is resolved in test_every_kind_of_source_evaluates_and_exports_alike).
    exported = tmp_path / "exports" / "3"
    (exported / "assets").mkdir(parents=True)
    restored.save(str(exported) + ".keras")
    CONVENTION.save(exported / "assets")
    run_lib.Run(exported / "assets").write_classes(
        list(model_source.resolve(str(runs.a)).class_names))
    source = model_source.resolve(str(exported) + ".keras")
    assert "(convention of its export)" in source.description and source.convention == CONVENTION
    assert source.class_names == model_source.resolve(str(runs.a)).class_names
    # Any directory with an input_convention.json.
    (tmp_path / "plain").mkdir()
    restored.save(tmp_path / "plain" / "net.keras")
    CONVENTION.replace(channel_order="BGR").save(tmp_path / "plain")
    source = model_source.resolve(str(tmp_path / "plain" / "net.keras"))
    assert source.convention.channel_order == "BGR" and source.class_names is None


def test_converted_weights_resolve_with_their_class_names(runs, tmp_path):
    model = run_lib.Run(runs.a).restore_model("best").model
    info = weights.WeightsInfo(source="test:tiny", convention=CONVENTION.replace(
        channel_order="BGR"), variant="paper", num_classes=10, lrn_bias=1.0, lrn_alpha=2e-5)
    ids = [f"n{i:08d}" for i in range(10)]
    names = [f"class {i}" for i in range(10)]
    weights.save_converted(model, info, tmp_path / "converted", class_names=ids,
                           readable_names=names)
    source = model_source.resolve(str(tmp_path / "converted"))
    assert (source.kind, source.weights_source) == ("converted", "test:tiny")
    assert source.class_names == tuple(ids) and source.readable_names == tuple(names)
    assert source.classes()[3] == {"index": 3, "id": "n00000003", "name": "class 3"}
    assert source.convention == info.convention
    # The network is the file's (width 1/16), though converted weights usually are full width.
    assert (source.model_config.width, source.model_config.variant) == (WIDTH, "paper")
    assert_same_weights(source.load_model(), model)
    # Class names a file gives are refused when they contradict the source's own.
    with pytest.raises(SourceError, match=r"differ from the ones given at index 0 "
                                          r"\('n00000000' vs 'x'\)"):
        source.with_class_names(["x"] + ids[1:])
    with pytest.raises(SourceError, match="9 class names given .* which has 10 outputs"):
        source.with_class_names(ids[1:])
    # Rewritten without class names: none are left behind.
    weights.save_converted(model, info, tmp_path / "converted", overwrite=True)
    assert model_source.resolve(str(tmp_path / "converted")).class_names is None


def test_class_names_files_one_per_line_or_synsets(tmp_path):
    plain = tmp_path / "names.txt"
    plain.write_text("great white shark\n\ntench\n")
    assert model_source.read_class_names(str(plain)) == (("great white shark", "tench"),) * 2
    synsets = tmp_path / "synsets.txt"
    synsets.write_text("n01440764 tench, Tinca tinca\nn01443537 goldfish\n")
    assert model_source.read_class_names(str(synsets)) == (
        ("n01440764", "n01443537"), ("tench, Tinca tinca", "goldfish"))
    twice = tmp_path / "twice.txt"
    twice.write_text("a\nb\na\n")
    with pytest.raises(SourceError, match="names 'a' twice"):
        model_source.read_class_names(str(twice))
    with pytest.raises(SourceError, match="cannot be read"):
        model_source.read_class_names(str(tmp_path / "missing.txt"))


# ------------------------------------------------------------ evaluation and export


@pytest.mark.slow
def test_every_kind_of_source_evaluates_and_exports_alike(runs, run_export, data, tmp_path):
    """The best checkpoint of run a as each kind of source: the same errors, the same
    served probabilities, the same class table and convention in every export. Exports
    are slow (~20 s each on 2 cores): the run's (the fixture) and the .keras file's are
    compared here (a checkpoint exports through the same code as its run, after `resolve`);
    the converted kind exports in the Caffe and torchvision tests below."""
    run = run_lib.Run(runs.a)
    restored = run.restore_model("best").model
    ids = model_source.resolve(str(runs.a)).class_names
    converted = tmp_path / "converted"
    weights.save_converted(restored, weights.WeightsInfo(
        source="test:run a", convention=CONVENTION, variant="paper", num_classes=10),
        converted, class_names=ids)
    specs = {"run": str(runs.a), "checkpoint": run.checkpoint("best"),
             "keras": str(run_export) + ".keras", "converted": str(converted)}
    jpegs = tf.constant(val_jpegs(data))
    reference = tf.saved_model.load(str(run_export)).signatures["serving_default"](
        image_bytes=jpegs)
    results = {}
    for kind, spec in specs.items():
        assert model_source.resolve(spec).kind == kind
        output = tmp_path / f"eval_{kind}.json"
        # A run brings its data; the others are told where it is.
        results[kind] = evaluate.evaluate(
            spec, output=str(output),
            data_dir=str(data) if kind in ("keras", "converted") else None)
        assert json.loads(output.read_text())["top1_error"] == results[kind]["top1_error"]
        if kind != "keras":
            continue
        path = pathlib.Path(export.export(spec, str(tmp_path / f"exports_{kind}")))
        served = tf.saved_model.load(str(path)).signatures["serving_default"](image_bytes=jpegs)
        np.testing.assert_allclose(served["probabilities"].numpy(),
                                   reference["probabilities"].numpy(), rtol=1e-5, atol=1e-6)
        assert served["class_ids"].numpy().tolist() == reference["class_ids"].numpy().tolist()
        for asset in ("classes.json", "input_convention.json"):
            assert (json.loads((path / "assets" / asset).read_text())
                    == json.loads((run_export / "assets" / asset).read_text())), (kind, asset)
        info = json.loads((path / "assets" / "export.json").read_text())
        assert info["source"]["kind"] == kind
    first = results["run"]
    assert first["examples"] == 40 and first["checkpoint"] == run.checkpoint("best")
    for kind, metrics in results.items():
        assert (metrics["examples"], metrics["top1_error"], metrics["top5_error"]) == (
            first["examples"], first["top1_error"], first["top5_error"]), kind
        assert metrics["loss"] == pytest.approx(first["loss"], rel=1e-5), kind
    # --workdir's library call is the run source.
    assert evaluate.evaluate_checkpoint(str(runs.a), checkpoint="best",
                                        output=str(tmp_path / "w.json"))["loss"] == first["loss"]


def test_ensemble_probabilities_are_the_mean_of_the_members(runs):
    members = [model_source.resolve(str(r)).load_model() for r in (runs.a, runs.b)]
    rng = np.random.default_rng(0)
    images = rng.normal(size=(3, SIZE, SIZE, 3)).astype(np.float32)
    expected = [numpy_softmax(m.predict(images, verbose=0)) for m in members]
    assert np.abs(expected[0] - expected[1]).max() > 0.05  # two different networks
    got_members, got = evaluate.ensemble_probabilities(members, tf.constant(images))
    np.testing.assert_allclose(got.numpy(), np.mean(expected, axis=0), rtol=1e-5, atol=1e-7)
    for g, e in zip(got_members, expected):
        np.testing.assert_allclose(g.numpy(), e, rtol=1e-5, atol=1e-7)
    # Ten crops: each member averages its ten softmax outputs (Sec. 4.1), then the members.
    crops = rng.normal(size=(2, 10, SIZE, SIZE, 3)).astype(np.float32)
    per_member = [numpy_softmax(m.predict(crops.reshape(20, SIZE, SIZE, 3), verbose=0))
                  .reshape(2, 10, 10).mean(axis=1) for m in members]
    _, got = evaluate.ensemble_probabilities(members, tf.constant(crops), ten_crop=True)
    np.testing.assert_allclose(got.numpy(), np.mean(per_member, axis=0), rtol=1e-5, atol=1e-7)


def test_ensemble_evaluation_scores_each_member_and_the_average(runs, data, tmp_path):
    output = tmp_path / "ensemble.json"
    metrics = evaluate.evaluate(f"{runs.a},{runs.b}", output=str(output))
    # The same images through the evaluation pipeline, the average taken in NumPy.
    sources_ = [model_source.resolve(str(r)) for r in (runs.a, runs.b)]
    config = tiny_config(data)
    split = sources.load_split(config.data, "val", class_names=sources_[0].class_names)
    dataset = pipeline.make_dataset(split, config.data, image_size=SIZE, batch_size=40,
                                    training=False, num_classes=10, norm=CONVENTION)
    (images, labels), = list(dataset)
    probs = [numpy_softmax(s.load_model().predict(images, verbose=0)) for s in sources_]
    average, labels = np.mean(probs, axis=0), labels.numpy()
    top5 = np.argsort(-average, axis=1)[:, :5]
    assert metrics["examples"] == 40 and metrics["ensemble"] is True
    assert metrics["top1_error"] == pytest.approx(np.mean(average.argmax(1) != labels))
    assert metrics["top5_error"] == pytest.approx(np.mean([l not in t for l, t in zip(labels, top5)]))
    assert metrics["loss"] == pytest.approx(-np.mean(np.log(average[np.arange(40), labels])),
                                            rel=1e-4)
    # Each member's line is its own evaluation.
    for member, run_dir, p in zip(metrics["members"], (runs.a, runs.b), probs):
        alone = evaluate.evaluate(str(run_dir), output=str(tmp_path / "alone.json"))
        assert (member["top1_error"], member["top5_error"]) == (alone["top1_error"],
                                                                alone["top5_error"])
        assert member["top1_error"] == pytest.approx(np.mean(p.argmax(1) != labels))
        assert member["model"] == alone["model"]
    written = json.loads(output.read_text())
    assert written["top1_error"] == metrics["top1_error"] and len(written["members"]) == 2
    text = evaluate.format_metrics(metrics)
    assert "member 1 run" in text and "member 2 run" in text and "ensemble of 2:" in text


def test_ensemble_members_must_share_classes_and_convention(runs, data, tmp_path):
    ids = model_source.resolve(str(runs.a)).class_names
    shuffled = make_run(tmp_path / "shuffled", data, 4, class_ids=list(reversed(ids)))
    output = tmp_path / "ensemble.json"
    with pytest.raises(SourceError, match=(
            rf"Ensemble member 2 \(run .*shuffled \(best checkpoint ckpt-1\)\) has other "
            rf"class names than member 1 \(run .*\): class '{ids[-1]}' at index 0, member 1 "
            rf"has '{ids[0]}'")):
        evaluate.evaluate(f"{runs.a},{shuffled}", output=str(output))
    converted = tmp_path / "bgr"
    weights.save_converted(run_lib.Run(runs.b).restore_model().model, weights.WeightsInfo(
        source="test", convention=CONVENTION.replace(channel_order="BGR"), variant="paper",
        num_classes=10), converted, class_names=ids)
    with pytest.raises(SourceError, match=r"Ensemble member 2 \(converted weights .*\) has "
                                          r"another input convention than member 1 .*: "
                                          r"channel_order \('BGR' vs 'RGB'\)"):
        evaluate.evaluate(f"{runs.a},{converted}", output=str(output))
    with pytest.raises(evaluate.EvaluationError, match="give --output=FILE.json"):
        evaluate.evaluate(f"{runs.a},{runs.b}")
    assert not output.exists()


def test_a_1000_class_source_scores_a_folder_by_class_name(tmp_path, data):
    """fc8 always predicts output 417; the folder's classes are the wnids of outputs 3
    and 417. By name, the n00000417 images are right (top-1 error 1/2); by the folder's
    own order (labels 0 and 1) every image would be wrong."""
    synsets = tmp_path / "synsets.txt"
    synsets.write_text("".join(f"n{i:08d} thing {i}\n" for i in range(1000)))
    folder = tmp_path / "folder"
    for wnid, demo_class in (("n00000003", "ring"), ("n00000417", "disk")):
        shutil.copytree(data / "val" / demo_class, folder / "val" / wnid)
    model = models.create_model("paper", num_classes=1000, image_size=SIZE, width=WIDTH, seed=0)
    kernel, bias = model.get_layer("fc8").get_weights()
    bias[417] = 50.0
    model.get_layer("fc8").set_weights([np.zeros_like(kernel), bias])
    converted = tmp_path / "converted"
    weights.save_converted(model, weights.WeightsInfo(
        source="test:1000", convention=CONVENTION, variant="paper", num_classes=1000), converted)
    output = tmp_path / "eval.json"
    with pytest.raises(SourceError, match="has no class names, so the data's classes cannot "
                                          "be matched to its outputs; give --class_names"):
        evaluate.evaluate(str(converted), data_dir=str(folder), output=str(output))
    metrics = evaluate.evaluate(str(converted), class_names_file=str(synsets),
                                data_dir=str(folder), split="val", output=str(output))
    assert metrics["examples"] == 8 and metrics["top1_error"] == 0.5
    # A folder class the source does not know is refused by name, before anything is written.
    output.unlink()
    shutil.copytree(data / "val" / "ring", folder / "val" / "n12345678")
    with pytest.raises(evaluate.EvaluationError, match="class folder 'n12345678', not among "
                                                       "the 1000"):
        evaluate.evaluate(str(converted), class_names_file=str(synsets), data_dir=str(folder),
                          split="val", output=str(output))
    assert not output.exists()


# --------------------------------------------------------------------- bad input


def test_bad_sources_are_named_before_anything_is_written(runs, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("hello")
    fresh = tmp_path / "fresh"  # a run that has saved no checkpoint yet
    fresh.mkdir()
    shutil.copy(runs.a / "config.json", fresh / "config.json")
    loose = tf.train.Checkpoint(v=tf.Variable(1.0)).write(str(tmp_path / "loose" / "ckpt"))
    (tmp_path / "junk.keras").write_bytes(b"junk")
    import keras

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="fc8")])
    other.save(tmp_path / "other.keras")
    kinds = re.escape("a run's work directory (config.json and checkpoints/, written by "
                      "alexnet-train); or a checkpoint of a run")
    cases = {
        str(tmp_path / "nowhere"): "does not exist .*; expected " + kinds,
        str(tmp_path / "empty"): "is a directory of none of the kinds; expected " + kinds
                                 + r".*or a .keras file; or a converted-weights directory "
                                   r"\(model.keras, input_convention.json and weights_info.json",
        str(tmp_path / "empty" / "notes.txt"): "is a file of none of the kinds",
        str(fresh): r"is a run without the checkpoint asked for \(checkpoint='auto'\): No "
                    r"checkpoint in",
        loose: "is a checkpoint outside any run: no config.json in the 3 directories above it",
        str(tmp_path / "junk.keras"): "is not a Keras 3 .keras file",
        str(tmp_path / "other.keras"): "is not one of this package's AlexNets: it lacks layers "
                                       r"\['conv1', 'conv2'",
    }
    for spec, message in cases.items():
        with pytest.raises(SourceError, match=message):
            model_source.resolve(spec)
        output = tmp_path / "out.json"
        with pytest.raises(SourceError, match=message):
            evaluate.evaluate(f"{runs.a},{spec}", output=str(output))
        with pytest.raises(export.ExportError, match=message):
            export.export(spec, str(tmp_path / "exports"))
        assert not output.exists() and not (tmp_path / "exports").exists()
    with pytest.raises(SourceError, match="checkpoint='best' chooses among a run's checkpoints; "
                                          "model source .* is a .keras file"):
        model_source.resolve(str(tmp_path / "other.keras"), checkpoint="best")
    # A bare .keras file: no convention, so neither evaluation nor export can preprocess.
    run_lib.Run(runs.a).restore_model().model.save(tmp_path / "bare.keras")
    with pytest.raises(SourceError, match="says nothing of the input it expects"):
        evaluate.evaluate(str(tmp_path / "bare.keras"), data_dir=str(tmp_path))
    with pytest.raises(export.ExportError, match="says nothing of the input it expects"):
        export.export(str(tmp_path / "bare.keras"), str(tmp_path / "exports"))
    assert not (tmp_path / "exports").exists()


def test_a_run_refuses_a_checkpoint_of_another_run(runs, tmp_path):
    """Another run's weights under this run's classes and data would be scored against
    the wrong labels: a checkpoint path must lie inside the run, both named."""
    other = run_lib.Run(runs.b).checkpoint("latest")
    message = (rf"Checkpoint '{re.escape(other)}' is not inside run '{re.escape(str(runs.a))}'"
               rf".*a checkpoint of run '{re.escape(str(runs.b))}'")
    with pytest.raises(SourceError, match=message):
        model_source.resolve(str(runs.a), checkpoint=other)
    output = tmp_path / "eval.json"
    with pytest.raises(SourceError, match=message):
        evaluate.evaluate(str(runs.a), checkpoint=other, output=str(output))
    with pytest.raises(export.ExportError, match=message):
        export.export(str(runs.a), str(tmp_path / "exports"), checkpoint=other)
    assert not output.exists() and not (tmp_path / "exports").exists()
    # The run's own checkpoints by path (the prefix, its directory) are its own.
    own = run_lib.Run(runs.a).checkpoint("latest")
    for path in (own, run_lib.Run(runs.a).best_dir):
        assert model_source.resolve(str(runs.a), checkpoint=path).kind == "run"


def test_a_keras_file_with_other_classes_than_where_it_sits_is_refused(runs, tmp_path):
    """A 6-class .keras file in a 10-class run (or beside a 10-class classes.json) would
    take that run's 10 class names and convention; refused, both counts named, and the
    export refused before any directory exists."""
    six = models.create_model("paper", num_classes=6, image_size=SIZE, width=WIDTH, seed=0)
    run_copy = tmp_path / "run"
    shutil.copytree(runs.a, run_copy)
    six.save(run_copy / "six.keras")
    message = (r"has 6 outputs \(fc8's units in its layer configs\), but the run it sits in, "
               rf"'{re.escape(str(run_copy))}', has 10 classes \(model.num_classes of "
               rf"'{re.escape(str(run_copy / 'config.json'))}'\)")
    with pytest.raises(SourceError, match=message):
        model_source.resolve(str(run_copy / "six.keras"))
    with pytest.raises(SourceError, match=message):  # not 40 images dropped as out of range
        evaluate.evaluate(str(run_copy / "six.keras"), output=str(tmp_path / "eval.json"))
    assert not (tmp_path / "eval.json").exists()
    exports = tmp_path / "exports" / "six"
    with pytest.raises(export.ExportError, match=message):
        export.export(str(run_copy / "six.keras"), str(exports))
    assert not (tmp_path / "exports").exists()
    # A directory's classes.json (an export's assets are read the same way).
    plain = tmp_path / "plain"
    plain.mkdir()
    six.save(plain / "six.keras")
    CONVENTION.save(plain)
    run_lib.Run(plain).write_classes([f"c{i}" for i in range(10)])
    with pytest.raises(SourceError, match=r"has 6 outputs, but its directory's "
                                          r"'.*classes.json' lists 10 classes"):
        model_source.resolve(str(plain / "six.keras"))


def test_an_export_refused_after_its_directory_was_made_leaves_none(runs, tmp_path,
                                                                   monkeypatch):
    """Whatever refuses once the export directory exists, the directories it made go."""
    from alexnet_tf.export import saved_model

    def refuse(*args, **kwargs):
        raise export.ExportError("refused while building the serving module")

    monkeypatch.setattr(saved_model.module_lib, "build_serving_module", refuse)
    # A config.json of another tool above export_dir does not make a run of it.
    (tmp_path / "config.json").write_text('{"name": "some other tool"}')
    with pytest.raises(export.ExportError, match="refused while building"):
        export.export(str(runs.a), str(tmp_path / "new" / "exports"))
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()  # a directory that existed stays
    with pytest.raises(export.ExportError, match="refused while building"):
        export.export(str(runs.a), str(tmp_path / "kept" / "e"))
    assert os.listdir(tmp_path / "kept") == []


def test_export_dir_in_a_run_is_refused(runs, tmp_path):
    for export_dir, where in (
            (runs.a, "is the work directory of a run"),
            (runs.a / "exports" / "x", f"is inside the work directory of run "
                                       f"'{runs.a}'"),
            (runs.a / "checkpoints", f"is inside the work directory of run '{runs.a}'")):
        with pytest.raises(export.ExportError, match=re.escape(
                f"export_dir '{export_dir}' {where} (it holds config.json)")):
            export.export(str(runs.a), str(export_dir))
    assert not (runs.a / "exports").exists() and not list(runs.a.glob("*.keras"))
    assert not [p for p in (runs.a / "checkpoints").iterdir() if p.name.startswith(".export")]


@pytest.fixture
def damaged_run(runs, tmp_path):
    """Run a with its best checkpoint's .data file cut to a third."""
    damaged = tmp_path / "damaged"
    shutil.copytree(runs.a, damaged)
    data_file, = (damaged / "checkpoints" / "best").glob("ckpt-*.data-*")
    data_file.write_bytes(data_file.read_bytes()[:data_file.stat().st_size // 3])
    return damaged


def test_a_damaged_checkpoint_is_a_named_source_error(damaged_run, tmp_path):
    source = model_source.resolve(str(damaged_run))  # resolving reads no tensor
    best = run_lib.Run(damaged_run).checkpoint("best")
    message = rf"Checkpoint '{re.escape(best)}' of run .* cannot be read: IndexError: Read less"
    with pytest.raises(SourceError, match=message):
        source.load_model()
    with pytest.raises(SourceError, match=message):
        evaluate.evaluate(str(damaged_run), output=str(tmp_path / "eval.json"))
    with pytest.raises(export.ExportError, match=message):
        export.export(str(damaged_run), str(tmp_path / "exports"))
    assert not (tmp_path / "exports").exists() and not (tmp_path / "eval.json").exists()
    with pytest.raises(export.ExportError, match=rf"Checkpoint '{re.escape(best)}' cannot be "
                                                 rf"read: IndexError"):
        export.restore_model(run_lib.Run(damaged_run), "best")
    # A damaged .keras file: its weights cannot be read, named.
    keras_file = tmp_path / "model.keras"
    model_source.resolve(str(keras_file_of(damaged_run, keras_file)))
    with zipfile.ZipFile(keras_file) as archive:
        entries = {i.filename: archive.read(i) for i in archive.infolist()}
    weights_name = next(n for n in entries if n.endswith(".h5"))
    entries[weights_name] = entries[weights_name][:len(entries[weights_name]) // 2]
    with zipfile.ZipFile(keras_file, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    with pytest.raises(SourceError, match=rf"weights of '{re.escape(str(keras_file))}' "):
        model_source.resolve(str(keras_file)).load_model()


def test_the_binaries_name_a_damaged_checkpoint_in_one_line(damaged_run, tmp_path):
    for module, args in (("alexnet_tf.cli.eval", [f"--output={tmp_path / 'x.json'}"]),
                         ("alexnet_tf.cli.export", [f"--export_dir={tmp_path / 'exports'}"])):
        result = _binary(module, f"--model={damaged_run}", *args)
        errors = [l for l in result.stderr.splitlines() if l.startswith("alexnet-")]
        assert result.returncode == 1 and len(errors) == 1, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        assert "cannot be read: IndexError: Read less bytes than requested" in errors[0]
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "exports").exists()


def test_an_existing_output_is_replaced_only_when_asked(runs, tmp_path):
    output = tmp_path / "mine.json"
    output.write_text("the user's own file")
    from alexnet_tf import errors

    with pytest.raises(errors.ExistsError, match="exists; give --overwrite"):
        evaluate.evaluate(runs.a, output=str(output), overwrite=False)
    with pytest.raises(errors.UserError, match="is a directory; expected a file name"):
        evaluate.evaluate(runs.a, output=str(tmp_path), overwrite=True)
    assert output.read_text() == "the user's own file"
    metrics = evaluate.evaluate(runs.a, output=str(output), overwrite=True)
    assert json.loads(output.read_text())["top1_error"] == metrics["top1_error"]
    assert [p.name for p in tmp_path.iterdir()] == ["mine.json"]  # no temporary left


def test_an_ensemble_member_twice_is_refused(runs, tmp_path):
    best = run_lib.Run(runs.a).checkpoint("best")
    output = tmp_path / "ensemble.json"
    for spec, second in ((f"{runs.a},{runs.a}", r"run .*a \(best checkpoint ckpt-1\)"),
                         (f"{runs.a},{best}", r"checkpoint .*best/ckpt-1 of run .*"),
                         (f"{runs.b},{runs.a},{best}", r"checkpoint .*best/ckpt-1 of run .*")):
        which = "member 3" if spec.startswith(str(runs.b)) else "member 2"
        first = "member 2" if which == "member 3" else "member 1"
        with pytest.raises(SourceError, match=(
                rf"Ensemble {which} \({second}\) holds the same weights as {first} "
                rf"\(run .*a \(best checkpoint ckpt-1\)\)")):
            evaluate.evaluate(spec, output=str(output))
    assert not output.exists()
    # Two runs are two members.
    model_source.check_ensemble(model_source.resolve_all(f"{runs.a},{runs.b}"))
    with pytest.raises(export.ExportError, match=re.escape(
            f"Model source '{runs.a},{runs.b}' names an ensemble of 2") + ".*cannot be "
            "exported: one model per export"):
        export.export(f"{runs.a},{runs.b}", str(tmp_path / "exports"))
    assert not (tmp_path / "exports").exists()


def test_a_class_names_file_with_a_byte_order_mark(runs, tmp_path):
    ids = model_source.resolve(str(runs.a)).class_names
    names = tmp_path / "names.txt"
    names.write_text("\n".join(ids) + "\n", encoding="utf-8-sig")  # as Notepad saves
    assert names.read_bytes().startswith(b"\xef\xbb\xbf")
    assert model_source.read_class_names(str(names)) == (ids, ids)
    assert model_source.resolve(str(runs.a)).with_class_names(ids).class_names == ids
    synsets = tmp_path / "synsets.txt"
    synsets.write_text("n01440764 tench, Tinca tinca\nn01443537\tgoldfish\n",
                       encoding="utf-8-sig")
    assert model_source.read_class_names(str(synsets)) == (
        ("n01440764", "n01443537"), ("tench, Tinca tinca", "goldfish"))
    # Names that differ invisibly show their difference.
    with pytest.raises(SourceError, match=re.escape(f"({ids[0]!r} vs '\\ufeff{ids[0]}')")):
        model_source.resolve(str(runs.a)).with_class_names(("\ufeff" + ids[0],) + ids[1:])


def test_a_folder_class_the_model_lacks_is_the_datas_fault(runs, data, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(data, folder)
    shutil.copytree(data / "val" / "ring", folder / "val" / "zebra")
    output = tmp_path / "eval.json"
    with pytest.raises(evaluate.EvaluationError) as refused:
        evaluate.evaluate(str(runs.a), data_dir=str(folder), output=str(output))
    message = str(refused.value)
    assert re.match(rf"Split 'val' of the data \('{re.escape(str(folder / 'val'))}'\) has class "
                    rf"folder 'zebra', not among the 10 classes of the model, run .*a \(best "
                    rf"checkpoint ckpt-1\) \('checkerboard', 'cross', 'diagonal_stripes', "
                    rf"'disk', 'dot_grid', \.\.\.\): the data holds a class the model has no "
                    rf"output for\.", message), message
    assert "training" not in message and "--" not in message  # no setting to change
    # Class names that name classes otherwise than the folder: said so.
    other = tmp_path / "other.txt"
    other.write_text("".join(f"thing {i}\n" for i in range(10)))
    (tmp_path / "net").mkdir()
    CONVENTION.save(tmp_path / "net")
    with pytest.raises(evaluate.EvaluationError, match=(
            r"None of the data's 10 classes is among them: the data and the model name "
            r"classes differently \(the data: 'checkerboard', 'cross', 'diagonal_stripes'\)")):
        evaluate.evaluate(str(keras_file_of(runs.a, tmp_path / "net" / "a.keras")),
                          class_names_file=str(other), data_dir=str(data),
                          output=str(output))
    assert not output.exists()


def _binary(module, *args):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


@pytest.mark.slow
def test_eval_binary_prints_members_and_the_ensemble_or_one_line(runs, tmp_path):
    output = tmp_path / "ensemble.json"
    result = _binary("alexnet_tf.cli.eval", f"--model={runs.a},{runs.b}", f"--output={output}",
                     "--ten_crop")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("member 1 run ") and lines[1].startswith("member 2 run ")
    assert lines[2].startswith("ensemble of 2: top-1 error ") and "(40 images, ten crop)" in lines[2]
    assert json.loads(output.read_text())["crops"] == "ten"
    # The progress bar: every image counted, and their rate.
    bar = result.stderr.replace("\r", "\n").splitlines()
    assert any("ten-crop val" in l and "40/40" in l and "img/s" in l for l in bar), bar[-5:]
    # The same --output again: refused before anything runs, the result kept.
    kept = output.read_text()
    again = _binary("alexnet_tf.cli.eval", f"--model={runs.a},{runs.b}", f"--output={output}")
    errors = [l for l in again.stderr.splitlines() if l.startswith("alexnet-eval: ")]
    assert again.returncode == 1 and len(errors) == 1, again.stderr[-2000:]
    assert f"--output='{output}' exists; give --overwrite" in errors[0]
    assert output.read_text() == kept
    result = _binary("alexnet_tf.cli.eval", f"--model={runs.a},{tmp_path / 'nowhere'}",
                     f"--output={tmp_path / 'x.json'}")
    errors = [l for l in result.stderr.splitlines() if l.startswith("alexnet-eval: ")]
    assert result.returncode == 1 and len(errors) == 1, result.stderr[-2000:]
    assert "does not exist" in errors[0] and not (tmp_path / "x.json").exists()


# ----------------------------------------------------- the real formats, full width


CAFFE_MEAN_RGB = (122.67891434, 116.66876762, 104.00698793)


@pytest.mark.slow
def test_caffe_weights_convert_to_a_source_that_evaluates_and_exports(tmp_path, data):
    """tools/convert_weights.py on a bvlc_alexnet.npy in caffe-tensorflow's layout, with
    a synsets file: its printed commands run in bash as printed (the output directory has
    a space), and the directory evaluates on a wnid folder and exports with Caffe's input
    convention and the synsets' names."""
    from test_weights import caffe_tensorflow_layout, random_blobs

    npy = tmp_path / "bvlc_alexnet.npy"
    np.save(npy, caffe_tensorflow_layout(random_blobs(seed=1)), allow_pickle=True)
    synsets = tmp_path / "synsets.txt"
    synsets.write_text("".join(f"n{i:08d} thing {i}, stuff\n" for i in range(1000)))
    output = tmp_path / "caffe weights"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "convert_weights.py"), "--source=caffe",
         f"--input={npy}", f"--output={output}", f"--class_names={synsets}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    commands = [l.strip() for l in result.stdout.splitlines()
                if l.strip().startswith(("alexnet-", "--config."))]
    # The shortest path first: fine-tune from the directory, then evaluate it.
    assert [c.split()[0] for c in commands] == [
        "alexnet-train", "alexnet-eval", "alexnet-export", "--config.data.channel_order=BGR"]
    script = "\n".join([
        'show() { "$PYTHON" -c "import json, sys; print(json.dumps(sys.argv[1:]))" "$@"; }',
        "alexnet-train() { show \"$@\"; }", "alexnet-eval() { show \"$@\"; }",
        "alexnet-export() { show \"$@\"; }", *commands[:3], "show " + commands[3]])
    ran = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                         env=dict(os.environ, PYTHON=sys.executable), timeout=60)
    assert ran.returncode == 0, ran.stderr
    train, evaluate_args, export_args, overrides = [json.loads(l) for l in ran.stdout.splitlines()]
    assert f"--config.model.init_from={output}" in train
    assert f"--model={output}" in evaluate_args and f"--model={output}" in export_args
    # Its own export base: two converted models never become versions of one.
    assert "--export_dir=exports/caffe weights" in export_args
    flags = dict(arg.split("=", 1) for arg in overrides)
    assert ast.literal_eval(flags["--config.data.mean_rgb"]) == pytest.approx(CAFFE_MEAN_RGB)
    assert (flags["--config.model.lrn_bias"], flags["--config.model.lrn_alpha"]) == ("1.0", "2e-05")
    assert "--config.model.num_classes" not in flags  # fc8 is replaced for other classes

    source = model_source.resolve(str(output))
    assert (source.kind, source.num_classes, source.weights_source) == (
        "converted", 1000, "caffe:bvlc_alexnet")
    assert source.class_names[417] == "n00000417" and source.readable_names[3] == "thing 3, stuff"
    overrides = source.config_overrides()
    assert overrides["data.mean_rgb"] == pytest.approx(CAFFE_MEAN_RGB)
    assert {k: overrides[k] for k in ("data.channel_order", "model.variant", "model.width",
                                      "model.lrn_bias", "model.lrn_alpha", "model.image_size",
                                      "data.resize_size")} == {
        "data.channel_order": "BGR", "model.variant": "paper", "model.width": 1.0,
        "model.lrn_bias": 1.0, "model.lrn_alpha": 2e-5, "model.image_size": 227,
        "data.resize_size": 256}
    folder = tmp_path / "folder"
    for wnid, demo_class in (("n00000003", "ring"), ("n00000417", "disk")):
        shutil.copytree(data / "val" / demo_class, folder / "val" / wnid)
    metrics = evaluate.evaluate(str(output), data_dir=str(folder), split="val")
    assert metrics["examples"] == 8 and (output / "eval_val_center.json").exists()
    path = pathlib.Path(export.export(str(output), str(tmp_path / "exports")))
    assert InputConvention.load(path / "assets") == source.convention
    classes = json.loads((path / "assets" / "classes.json").read_text())
    assert classes[417] == {"index": 417, "id": "n00000417", "name": "thing 417, stuff"}
    jpeg = next((folder / "val" / "n00000417").glob("*.jpg")).read_bytes()
    served = tf.saved_model.load(str(path)).signatures["serving_default"](
        image_bytes=tf.constant([jpeg]))
    top = int(served["classes"].numpy()[0, 0])
    assert served["class_ids"].numpy()[0, 0].decode() == f"n{top:08d}"
    assert served["class_names"].numpy()[0, 0].decode() == f"thing {top}, stuff"


def photo(width=500, height=375, seed=0) -> bytes:
    """A photo-like PNG (ImageNet's most common size, 500x375): smooth shading, shapes
    with sharp edges, and sensor-like noise, so that resizing filters matter."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.stack([120 + 80 * np.sin(x / 60.0), 100 + 60 * np.cos(y / 45.0),
                      90 + 50 * np.sin((x + y) / 80.0)], axis=-1)
    for _ in range(12):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(15, 70)
        image[(y - cy) ** 2 + (x - cx) ** 2 < r ** 2] = rng.uniform(0, 255, 3)
    image += rng.normal(0, 6, image.shape)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def torchvision_preprocessing(png: bytes) -> np.ndarray:
    """torchvision's ImageNet evaluation transform, written out: Resize(256) (the shorter
    side to 256, the longer ``int(256 * long / short)``, PIL bilinear, which antialiases
    when shrinking), CenterCrop(224) (offsets ``int(round((size - 224) / 2))``),
    ToTensor (/255), Normalize(ImageNet mean, std). -> float32 [1, 3, 224, 224]."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    w, h = image.size
    short, long = min(w, h), max(w, h)
    new_short, new_long = 256, int(256 * long / short)
    size = (new_short, new_long) if w <= h else (new_long, new_short)
    resized = np.asarray(image.resize(size, Image.BILINEAR), np.float64)
    top = int(round((resized.shape[0] - 224) / 2.0))
    left = int(round((resized.shape[1] - 224) / 2.0))
    crop = resized[top:top + 224, left:left + 224] / 255.0
    x = (crop - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    return x.transpose(2, 0, 1)[None].astype(np.float32)


# Tolerances, measured on `photo()` with this test's network (TF 2.21, Pillow 11, torch
# 2.13, CPU). The network: torch and the export agree to 6e-6 in probability on the same
# input (float32 sums in another order). The preprocessing: geometry and normalisation are
# torchvision's (with TF's antialiased bilinear resize the inputs agree to 1 pixel level,
# the rounding to uint8); the filter is not. The export shrinks 375 -> 256 (1.46x) with
# plain bilinear interpolation (`preprocess.resize_shorter_side` antialiases only beyond
# 2x), PIL's bilinear always widens its kernel by the scale: inputs then differ by 1.56
# pixel levels on average and up to 70 at the photo's sharp colour edges, and the
# probabilities by up to 0.025.
NETWORK_PROB_TOLERANCE = 2e-5
SAME_FILTER_LEVELS = 1.0 + 1e-3
RESIZE_FILTER_MEAN_LEVELS = 2.0
RESIZE_FILTER_PROB_TOLERANCE = 0.04


@pytest.mark.slow
def test_torchvision_export_gives_torchs_probabilities_on_a_photo(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed: pip install torch")
    from test_weights import torchvision_alexnet

    torch.manual_seed(0)
    net = torchvision_alexnet(torch)
    with torch.no_grad():  # He-scaled weights keep activations O(1) through the network
        for module in net.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                torch.nn.init.normal_(module.bias, std=0.1)
    net.eval()
    pth = tmp_path / "alexnet.pth"
    torch.save(net.state_dict(), pth)
    model, info = weights.load_torchvision(pth)
    converted = tmp_path / "torchvision"
    weights.save_converted(model, info, converted, class_names=[f"c{i}" for i in range(1000)])
    del model
    path = export.export(str(converted), str(tmp_path / "exports"))
    png = photo()
    outputs = tf.saved_model.load(path).signatures["serving_default"](
        image_bytes=tf.constant([png]))
    served = outputs["probabilities"].numpy()[0]
    # The export carries the source's class names and input convention.
    assert outputs["class_ids"].numpy()[0, 0].decode() == f"c{np.argmax(served)}"
    assert InputConvention.load(pathlib.Path(path) / "assets") == info.convention

    def torch_probabilities(x):
        with torch.no_grad():
            return torch.softmax(net(torch.from_numpy(x)).double(), dim=-1).numpy()[0]

    reference = torch_probabilities(torchvision_preprocessing(png))
    assert reference.max() > 0.05  # a prediction, not a uniform 1/1000
    # 1. The network: torch on the export's own preprocessed image gives the export's
    # probabilities.
    ours = preprocess.eval_image(tf.constant(png), image_size=224, resize_size=256,
                                 norm=info.convention).numpy()
    np.testing.assert_allclose(torch_probabilities(ours.transpose(2, 0, 1)[None]), served,
                               atol=NETWORK_PROB_TOLERANCE)
    # 2. The preprocessing: torchvision's own, within the resize filter's tolerance.
    theirs = torchvision_preprocessing(png)[0].transpose(1, 2, 0)
    std = np.asarray(info.convention.std_rgb)
    decoded = tf.io.decode_png(png, channels=3)
    # torchvision's geometry for 500x375: 341x256, crop at (16, 58).
    pil_filter = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(
        decoded, [256, 341], antialias=True)), 0, 255), tf.uint8)[16:240, 58:282]
    same_filter = preprocess.normalize(pil_filter, info.convention, (16, 58)).numpy()
    assert (np.abs(same_filter - theirs) * std).max() <= SAME_FILTER_LEVELS
    assert (np.abs(ours - theirs) * std).mean() <= RESIZE_FILTER_MEAN_LEVELS
    assert np.argmax(served) == np.argmax(reference)
    np.testing.assert_allclose(served, reference, atol=RESIZE_FILTER_PROB_TOLERANCE)


# ------------------------------------------------ evaluation's inputs and outputs


def _no_model_built(monkeypatch):
    def refuse(self):
        raise AssertionError("a model was built before the output was checked")
    monkeypatch.setattr(model_source.ModelSource, "load_model", refuse)


@pytest.mark.parametrize("how", ["full disk", "directory name"])
def test_an_eval_output_that_cannot_be_written_fails_before_a_model_is_built(
        runs, tmp_path, monkeypatch, how):
    from alexnet_tf import outputs

    _no_model_built(monkeypatch)
    output = str(tmp_path / "result.json")
    if how == "full disk":
        def full(fd):
            raise OSError(28, os.strerror(28))
        monkeypatch.setattr(outputs.os, "fsync", full)
        message = "cannot be written: No space left on device"
    else:
        output = str(tmp_path / "results") + os.sep
        message = "names a directory; expected a file name"
    with pytest.raises(outputs.UserError, match=re.escape(message)):
        evaluate.evaluate(str(runs.a), output=output)
    assert os.listdir(tmp_path) == []  # the probe left nothing behind


def test_the_default_eval_output_is_checked_before_a_model_is_built(runs, monkeypatch):
    from alexnet_tf import outputs

    _no_model_built(monkeypatch)
    monkeypatch.setattr(outputs.os, "fsync", lambda fd: (_ for _ in ()).throw(
        OSError(30, os.strerror(30))))
    with pytest.raises(outputs.UserError, match=r"eval_val_center\.json' cannot be written: "
                                                r"Read-only file system.*or another --output"):
        evaluate.evaluate(str(runs.a))


def test_a_model_path_holding_a_comma_is_one_source(runs, tmp_path):
    path = tmp_path / "lr0.01,wd5e-4"
    shutil.copytree(runs.a, path)
    members = model_source.resolve_all(str(path))
    assert [m.workdir for m in members] == [str(path)]
    with pytest.raises(SourceError, match="does not exist"):  # a list that does not exist
        model_source.resolve_all(f"{path}x,{runs.b}")


def test_a_class_names_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "names"
    os.mkfifo(fifo)
    with pytest.raises(SourceError, match="is not a regular file"):
        model_source.read_class_names(str(fifo))  # reading it would wait forever


def test_a_split_name_that_is_a_path_is_refused(data):
    config = config_lib.base_config()
    config.data.source, config.data.data_dir = "image_folder", str(data)
    for split in ("../val", "val/x", "..", ""):
        with pytest.raises(ValueError, match="expected a split name such as 'train'"):
            sources.load_split(config.data, split)
    config.data.eval_split = "../val"
    with pytest.raises(config_lib.ConfigError, match="'data.eval_split' is '../val'"):
        config_lib.validate(config)


def test_a_config_value_the_convention_replaces_is_named(runs, monkeypatch):
    warnings = []
    monkeypatch.setattr(evaluate.logging, "warning",
                        lambda message, *args: warnings.append(message % args))
    members = model_source.resolve_all(str(runs.a))
    config = config_lib.base_config()
    config.data.resize_size = members[0].convention.resize_size + 11
    data = evaluate.data_config_for(members, config=config)
    assert data.resize_size == members[0].convention.resize_size
    assert len(warnings) == 1 and (
        f"data.resize_size={members[0].convention.resize_size + 11!r} -> "
        f"{members[0].convention.resize_size!r}") in warnings[0], warnings
    warnings.clear()
    evaluate.data_config_for(members)
    assert warnings == []  # a run's own data config: nothing replaced
