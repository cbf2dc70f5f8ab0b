"""alexnet_tf.outputs: an output never replaces the user's file unasked, a run's own files
or the command's inputs at all, and is never left half-written."""

import os

import pytest

from alexnet_tf import outputs
from alexnet_tf.errors import ExistsError, UserError


@pytest.fixture
def run(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    (run / "checkpoints" / "ckpt-1.index").write_bytes(b"x")
    (run / "eval_val_center.json").write_text("{}")
    return run


def test_an_existing_file_needs_overwrite(tmp_path):
    mine = tmp_path / "mine.png"
    outputs.check_new_file(str(mine), overwrite=False)  # new: fine
    mine.write_bytes(b"the user's")
    with pytest.raises(ExistsError, match=r"--output='.*mine.png' exists; give --overwrite"):
        outputs.check_new_file(str(mine), overwrite=False)
    outputs.check_new_file(str(mine), overwrite=True)
    with pytest.raises(UserError, match="is a directory; expected a file name"):
        outputs.check_new_file(str(tmp_path), overwrite=True)
    with pytest.raises(UserError, match="is a file, not a directory"):
        outputs.check_new_file(str(mine / "x.json"), overwrite=True)


def test_a_runs_files_and_the_commands_inputs_are_refused_even_with_overwrite(run, tmp_path):
    for path in (run / "config.json", run / "checkpoints" / "ckpt-1.index"):
        with pytest.raises(UserError, match="is a file of the training run in"):
            outputs.check_new_file(str(path), overwrite=True)
    outputs.check_new_file(str(run / "eval_val_center.json"), overwrite=True)  # its results
    outputs.check_new_file(str(run / "notes.json"), overwrite=False)  # a new file in it
    model = tmp_path / "model.keras"
    model.write_bytes(b"weights")
    with pytest.raises(UserError, match="is an input of this command"):
        outputs.check_new_file(str(model), overwrite=True, inputs=[str(model)])
    assert outputs.run_holding(str(run / "checkpoints" / "ckpt-1.index")) == str(run)
    assert outputs.run_holding(str(tmp_path / "model.keras")) is None


def test_a_failed_write_leaves_the_earlier_file_whole(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("earlier")
    with pytest.raises(RuntimeError):
        with outputs.write_atomically(str(path)) as file:
            file.write("half")
            raise RuntimeError("killed half-way")
    assert path.read_text() == "earlier" and os.listdir(tmp_path) == ["result.json"]
    with outputs.write_atomically(str(path)) as file:
        file.write("new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["result.json"]
