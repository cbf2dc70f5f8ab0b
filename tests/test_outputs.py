"""alexnet_tf.outputs: an output never replaces the user's file unasked, a run's own files
or the command's inputs at all, and is never left half-written."""

import os
import stat

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


@pytest.mark.parametrize("kind", ["fifo", "device", "symlink"])
def test_a_node_or_link_is_never_replaced_even_with_overwrite(tmp_path, kind):
    path = tmp_path / "out.json"
    if kind == "fifo":
        os.mkfifo(path)
        message = "is not a regular file"
    elif kind == "device":
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # a copy of /dev/null
        message = "is not a regular file"
    else:
        (tmp_path / "target.json").write_text("{}")
        path.symlink_to(tmp_path / "target.json")
        message = "is a symbolic link"
    with pytest.raises(UserError, match=message):
        outputs.check_new_file(str(path), overwrite=True)
    assert os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode)


def test_a_models_files_are_refused_even_with_overwrite(tmp_path):
    export = tmp_path / "exports" / "1"
    (export / "variables").mkdir(parents=True)
    (export / "saved_model.pb").write_bytes(b"graph")
    (export / "variables" / "variables.index").write_bytes(b"index")
    (tmp_path / "exports" / "1.keras").write_bytes(b"model")
    converted = tmp_path / "weights"
    converted.mkdir()
    (converted / "weights_info.json").write_text("{}")
    (converted / "eval_val_center.json").write_text("{}")
    (converted / "notes.txt").write_text("mine")
    for path in (export / "saved_model.pb", export / "variables" / "variables.index",
                 tmp_path / "exports" / "1.keras", converted / "notes.txt"):
        with pytest.raises(UserError, match="is a file of the model"):
            outputs.check_new_file(str(path), overwrite=True)
    # A converted directory's own evaluation result is replaced, as a run's is.
    outputs.check_new_file(str(converted / "eval_val_center.json"), overwrite=True)
