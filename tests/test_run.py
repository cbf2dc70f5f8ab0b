"""The work directory (`alexnet_tf.run.Run`): every file it reads is checked and named when
wrong, its input convention cannot disagree with its config, and the one way to a model
restores every checkpoint layout. Runs on a copy of the v1 fixture run."""

import json
import shutil

import pytest
import tensorflow as tf

from alexnet_tf import config as config_lib
from alexnet_tf import export
from alexnet_tf import models
from alexnet_tf import run as run_lib
from conftest import REPO_ROOT

V1_RUN = REPO_ROOT / "tests" / "fixtures" / "v1" / "run"


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    workdir = tmp_path / "run"
    shutil.copytree(V1_RUN, workdir)
    return workdir


@pytest.mark.parametrize("text, message", [
    ("", "is not a saved config"),
    ("{not json", "is not a saved config"),
    ("[1, 2]", "must hold a JSON object, got list"),
    ("{}", r"lacks the config groups \['data', 'eval', 'model', 'train'\]"),
    ('{"model": 3, "data": {}, "train": {}, "eval": {}}', "'model' in the saved config must be"),
])
def test_a_bad_config_json_is_named(run_dir, text, message):
    (run_dir / "config.json").write_text(text)
    with pytest.raises(config_lib.ConfigError, match=message) as error:
        run_lib.Run(run_dir).config
    assert "config.json" in str(error.value)


@pytest.mark.parametrize("text, message", [
    ("{", "is not JSON"),
    ("5", "must hold a JSON list of classes, got int"),
    ("null", "must hold a JSON list of classes, got NoneType"),
    ('[{"index": 0, "id": "a", "name": "a"}]', "must list 10 classes"),
])
def test_a_bad_classes_json_is_named(run_dir, text, message):
    (run_dir / "classes.json").write_text(text)
    with pytest.raises(run_lib.RunError, match=message):
        run_lib.Run(run_dir).class_names()


def test_write_classes_refuses_what_it_could_not_read_back(tmp_path):
    run = run_lib.Run(tmp_path)
    with pytest.raises(run_lib.RunError, match="one non-empty string id and name each"):
        run.write_classes(["a", "b", "c"], ["A"])
    with pytest.raises(run_lib.RunError, match="one non-empty string id and name each"):
        run.write_classes(["a", 2])
    assert not (tmp_path / "classes.json").exists()
    run.write_classes(["a", "b"], ["A", "B"])
    assert [c["name"] for c in run.classes(2)] == ["A", "B"]


def test_a_convention_that_disagrees_with_the_config_is_refused(run_dir, tmp_path):
    from alexnet_tf import evaluate

    run = run_lib.Run(run_dir)
    described = run.convention  # a v1 run has no file: the config's
    described.replace(mean_rgb=(0.0, 0.0, 0.0)).save(run_dir)
    with pytest.raises(run_lib.RunError, match=r"disagrees with config.json in \['mean_rgb'\]"):
        run.convention
    # Neither the export nor the evaluation reads the run with another preprocessing.
    with pytest.raises(export.ExportError, match="disagrees with config.json"):
        export.export(str(run_dir), str(tmp_path / "exports"))
    assert not (tmp_path / "exports").exists()
    with pytest.raises(run_lib.RunError, match="disagrees with config.json"):
        evaluate.evaluate_checkpoint(str(run_dir))
    described.save(run_dir)  # the config's own: accepted
    assert run.convention == described
    (run_dir / "input_convention.json").write_text("[]")
    with pytest.raises(run_lib.RunError, match="input_convention.json' cannot be read"):
        run.convention


def test_checkpoints_of_every_layout_restore_and_bad_choices_are_named(run_dir, tmp_path):
    run = run_lib.Run(run_dir)
    restored = run.restore_model("latest")
    # A checkpoint written with Checkpoint.write() (no save_counter) restores too.
    written = tf.train.Checkpoint(model=restored.model).write(str(tmp_path / "w" / "model"))
    again = models.model_from_config(run.config)
    run_lib.restore_weights(again, written)
    for a, b in zip(again.weights, restored.model.weights):
        assert (a.numpy() == b.numpy()).all()
    # The .index file names the same checkpoint as its prefix.
    assert run.checkpoint(restored.checkpoint + ".index") == restored.checkpoint
    for choice in (None, "", 3):
        with pytest.raises(run_lib.CheckpointError, match="checkpoint must be one of"):
            run.checkpoint(choice)


@pytest.mark.parametrize("kwargs, message", [
    ({"max_pixels": -5}, "max_pixels must be an integer >= 1"),
    ({"max_pixels": 0}, "max_pixels must be an integer >= 1"),
    ({"max_aspect_ratio": 0.5}, "max_aspect_ratio must be a finite number >= 1"),
    ({"max_aspect_ratio": float("nan")}, "max_aspect_ratio must be a finite number >= 1"),
])
def test_export_refuses_limits_that_serve_nothing(run_dir, tmp_path, kwargs, message):
    with pytest.raises(export.ExportError, match=message):
        export.export(str(run_dir), str(tmp_path / "exports"), **kwargs)
    assert not (tmp_path / "exports").exists()


def test_export_refuses_an_export_dir_that_is_a_file(run_dir, tmp_path):
    target = tmp_path / "exports"
    target.write_text("not a directory")
    with pytest.raises(export.ExportError, match="is a file; expected a directory"):
        export.export(str(run_dir), str(target))
    assert target.read_text() == "not a directory"


def test_saved_configs_read_back_through_the_schema(run_dir):
    values = json.loads((run_dir / "config.json").read_text())
    del values["data"]["label_smoothing"]  # a key the schema gained later: its default
    (run_dir / "config.json").write_text(json.dumps(values))
    assert run_lib.Run(run_dir).config.data.label_smoothing == 0.0


def test_one_training_run_per_work_directory(tmp_path, small_demo_dir):
    """A second run in a work directory that a run holds refuses at once, naming the
    holder, and writes nothing there."""
    from alexnet_tf.train import loop
    from test_train import _demo_config

    workdir = tmp_path / "run"
    with run_lib.Run(workdir).lock():
        with pytest.raises(run_lib.RunError, match=r"is in use by another training run \(pid "
                                                   r"\d+ on .*\): one run per work directory"):
            loop.train_and_evaluate(_demo_config(small_demo_dir, total_epochs=1,
                                                 warmup_epochs=0.0), str(workdir))
        assert sorted(p.name for p in workdir.iterdir()) == [".lock"]
    # Released: the same directory trains (and the lock is released after).
    with run_lib.Run(workdir).lock():
        pass


def test_the_lock_dies_with_its_process_even_after_sigkill(tmp_path):
    """README: a killed run never leaves its work directory locked."""
    import signal
    import subprocess
    import sys

    workdir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from alexnet_tf import run; "
         f"lock = run.Run({str(workdir)!r}).lock().__enter__(); print('held', flush=True); "
         "time.sleep(300)"], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(run_lib.RunError, match=f"pid {holder.pid} on"):
        with run_lib.Run(workdir).lock():
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    with run_lib.Run(workdir).lock():  # free again
        pass


def _one_line_error(error):
    """What a binary prints for ``error`` (alexnet_tf.cli.app), or None for a bug."""
    from alexnet_tf.cli import app

    assert app.exit_status(error) == 1, (type(error), error)
    return app._one_line(error)


STATE_DAMAGE = {
    "binary": b"\x00\xff\xfe\x01\x80garbage\xff",
    "truncated": b'model_checkpoint_path: "ckpt-5"\nall_model_checkpoint_paths: "ckp',
    "empty": b"",
}


@pytest.mark.parametrize("damage", sorted(STATE_DAMAGE))
def test_a_damaged_checkpoint_state_file_is_named_and_left_as_it_is(run_dir, tmp_path, damage):
    """TF raised a bare UnicodeDecodeError for a binary state file and answered "no
    checkpoint" for a truncated one; every reader now names the file and what to do."""
    from alexnet_tf import evaluate, model_source

    state = run_dir / "checkpoints" / "checkpoint"
    state.write_bytes(STATE_DAMAGE[damage])
    for choice in ("latest", str(run_dir / "checkpoints")):
        with pytest.raises(run_lib.CheckpointStateError) as error:
            run_lib.resolve_checkpoint(str(run_dir), choice)
        line = _one_line_error(error.value)
        assert f"Checkpoint state file {str(state)!r} is damaged" in line
        assert f"--checkpoint={run_dir / 'checkpoints' / 'ckpt-5'}" in line
    # The best's state is whole: "auto" and "best" do not need the damaged file.
    assert run_lib.resolve_checkpoint(str(run_dir), "auto").endswith("best/ckpt-5")
    # Damaged too: "auto" names it rather than passing over the best to the latest.
    best_state = run_dir / "checkpoints" / "best" / "checkpoint"
    best_state.write_bytes(STATE_DAMAGE[damage])
    for reader in (lambda: run_lib.Run(run_dir).restore_model("auto"),
                   lambda: model_source.resolve(str(run_dir)),
                   lambda: evaluate.evaluate_checkpoint(str(run_dir), checkpoint="auto"),
                   lambda: export.export(str(run_dir), str(tmp_path / "exports"))):
        with pytest.raises(run_lib.UserError) as error:
            reader()
        assert f"{str(best_state)!r} is damaged" in _one_line_error(error.value)
    assert not (tmp_path / "exports").exists()
    assert state.read_bytes() == best_state.read_bytes() == STATE_DAMAGE[damage]
    # With the best's state whole again, "latest" still names its own.
    best_state.write_text('model_checkpoint_path: "ckpt-5"\n')
    with pytest.raises(run_lib.CheckpointStateError, match="checkpoints/checkpoint' is"):
        run_lib.resolve_checkpoint(str(run_dir), "latest")
    best_state.write_bytes(STATE_DAMAGE[damage])
    # What the message says to do works.
    restored = run_lib.Run(run_dir).restore_model(str(run_dir / "checkpoints" / "ckpt-5"))
    assert restored.step == 5
    state.write_text('model_checkpoint_path: "ckpt-5"\n')
    # "latest" never reads the best's state, still damaged here.
    assert run_lib.resolve_checkpoint(str(run_dir), "latest").endswith("checkpoints/ckpt-5")


def _edit(values, dotted, value):
    *groups, key = dotted.split(".")
    for group in groups:
        values = values[group]
    values[key] = value


@pytest.mark.parametrize("change, message", [
    (("model", 5), "'model' in the saved config must be a group of keys, got 5"),
    (("train.total_epochs", "ten"), "'train.total_epochs' is 'ten'; expected an int"),
    (("model.width", [1]), r"'model.width' is \[1\]; expected a float"),
    (("eval.ten_crop", 1), "'eval.ten_crop' is 1; expected a bool"),
    (("data.mean_rgb", ["a", 1, 2]), r"'data.mean_rgb' is \('a', 1, 2\); expected three"),
    ("list", "must hold a JSON object, got list"),
    ("truncated", r"is not a saved config \(JSON\)"),
])
def test_a_config_json_of_wrong_types_is_one_line_naming_file_and_key(run_dir, tmp_path,
                                                                     change, message):
    """A value of another type than the schema's raised ml_collections' TypeError (a
    traceback) from Run.config, evaluation, export and a resumed training alike."""
    from alexnet_tf import evaluate, model_source
    from alexnet_tf.train import loop

    path = run_dir / "config.json"
    text = path.read_text()
    if change == "list":
        path.write_text("[1, 2]")
    elif change == "truncated":
        path.write_text(text[:len(text) // 2])
    else:
        values = json.loads(text)
        _edit(values, *change)
        path.write_text(json.dumps(values))
    damaged = path.read_bytes()
    with pytest.raises(run_lib.RunConfigError, match=message) as error:
        run_lib.Run(run_dir).config
    assert isinstance(error.value, config_lib.ConfigError)
    assert repr(str(path)) in _one_line_error(error.value)
    # Counted as a change, not raised, where the saved config is only compared.
    assert "<unreadable under this version's schema>" in run_lib.Run(run_dir).config_changes(
        config_lib.base_config())
    for reader in (lambda: model_source.resolve(str(run_dir)),
                   lambda: evaluate.evaluate_checkpoint(str(run_dir)),
                   lambda: export.export(str(run_dir), str(tmp_path / "exports"))):
        with pytest.raises(run_lib.UserError, match=message) as error:
            reader()
        assert repr(str(path)) in _one_line_error(error.value)
    with pytest.raises(run_lib.RunConfigError, match=message) as error:
        loop.train_and_evaluate(config_lib.base_config(), str(run_dir))
    assert "--allow_config_change" in _one_line_error(error.value)
    assert path.read_bytes() == damaged  # nothing rewritten


@pytest.mark.parametrize("named", ["ckpt-99", "elsewhere"])
def test_a_state_file_naming_a_missing_checkpoint_names_the_ones_there(run_dir, tmp_path,
                                                                      named, capfd, caplog):
    """A state file naming ckpt-99 (or a path into a directory the run was moved from)
    read as "No checkpoint in ...: is it a run?" beside ckpt-5, after TF logged
    "Couldn't match files for checkpoint" to stderr."""
    checkpoints = run_dir / "checkpoints"
    missing = (str(checkpoints / "ckpt-99") if named == "ckpt-99"
               else str(tmp_path / "old" / "run" / "checkpoints" / "ckpt-5"))
    state = checkpoints / "checkpoint"
    written = "ckpt-99" if named == "ckpt-99" else missing  # relative, or absolute
    state.write_text(f'model_checkpoint_path: "{written}"\n')
    capfd.readouterr()
    for choice in ("latest", "auto", str(checkpoints)):
        if choice == "auto":  # the best's state is whole: "auto" does not need this one
            assert run_lib.resolve_checkpoint(str(run_dir), choice).endswith("best/ckpt-5")
            continue
        with pytest.raises(run_lib.CheckpointStateError) as error:
            run_lib.resolve_checkpoint(str(run_dir), choice)
        line = _one_line_error(error.value)
        assert f"Checkpoint state file {str(state)!r} names {missing!r} as the newest" in line
        assert "the directory holds ckpt-5" in line
        assert f"--checkpoint={checkpoints / 'ckpt-5'}" in line
        assert ("was the run moved?" in line) == (named == "elsewhere")
        assert error.value.missing == missing
    assert "Couldn't match" not in capfd.readouterr().err + caplog.text
    assert state.read_text().count("\n") == 1  # left as it was
    # What the message says to do works.
    state.write_text('model_checkpoint_path: "ckpt-5"\n')
    assert run_lib.resolve_checkpoint(str(run_dir), "latest") == str(checkpoints / "ckpt-5")


def test_a_lost_state_file_names_the_checkpoints_there(run_dir, tmp_path):
    (run_dir / "checkpoints" / "checkpoint").unlink()
    with pytest.raises(run_lib.CheckpointError) as error:
        run_lib.resolve_checkpoint(str(run_dir), "latest")
    line = _one_line_error(error.value)
    assert "but it holds ckpt-5" in line
    assert f"--checkpoint={run_dir / 'checkpoints' / 'ckpt-5'}" in line
    with pytest.raises(run_lib.CheckpointError, match=r"No checkpoint in .*: is .* the work"):
        run_lib.resolve_checkpoint(str(tmp_path / "empty"), "latest")
