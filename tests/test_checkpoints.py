"""Training checkpoints never lose or silently discard work: a listed step is never
rewritten, a damaged checkpoint is skipped (named, its files kept aside) for the newest
one that reads whole, a lost state file hides nothing, and a run with checkpoint files
never restarts from step 0."""

import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import config as config_lib
from alexnet_tf import models
from alexnet_tf import run as run_lib
from alexnet_tf.train import hooks


def _checkpoints(workdir, seed=0):
    config = config_lib.base_config()
    config.seed = seed
    config.model.num_classes, config.model.image_size, config.model.width = 10, 67, 0.0625
    model = models.model_from_config(config)
    step = tf.Variable(0, dtype=tf.int64)
    return model, hooks.TrainingCheckpoints(run_lib.Run(workdir), tf.distribute.get_strategy(),
                                            keep=3, model=model, step=step)


def _saved(workdir):
    """A run dir with ckpt-4 (weights of seed 0) and ckpt-8 (weights of seed 1)."""
    model, checkpoints = _checkpoints(workdir)
    checkpoints.save(4)
    weights_4 = [w.copy() for w in model.get_weights()]
    model.set_weights(models.model_from_config(_seed_config(1)).get_weights())
    checkpoints.save(8)
    return weights_4, [w.copy() for w in model.get_weights()]


def _seed_config(seed):
    config = config_lib.base_config()
    config.seed = seed
    config.model.num_classes, config.model.image_size, config.model.width = 10, 67, 0.0625
    return config


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_a_listed_step_is_never_rewritten(tmp_path):
    _, checkpoints = _checkpoints(tmp_path)
    checkpoints.save(4)
    with pytest.raises(RuntimeError, match="ckpt-4 is already saved .* never rewritten"):
        checkpoints.save(4)


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _zero(path):
    with open(path, "r+b") as f:
        f.write(b"\0" * os.path.getsize(path))


DAMAGE = {
    "data truncated": lambda p: _truncate(p + ".data-00000-of-00001"),
    "data zeroed": lambda p: _zero(p + ".data-00000-of-00001"),
    "data deleted": lambda p: os.remove(p + ".data-00000-of-00001"),
    "index zeroed": lambda p: _zero(p + ".index"),
    "index deleted": lambda p: os.remove(p + ".index"),
    # A kill while rewriting a listed step in place: index of one save, data of another.
    "torn": lambda p: shutil.copy(p.replace("ckpt-8", "ckpt-4") + ".data-00000-of-00001",
                                  p + ".data-00000-of-00001"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_latest_falls_back_to_the_newest_whole_one(tmp_path, damage, caplog):
    weights_4, _ = _saved(tmp_path)
    latest = str(tmp_path / "checkpoints" / "ckpt-8")
    DAMAGE[damage](latest)
    model, checkpoints = _checkpoints(tmp_path, seed=5)
    assert checkpoints.restore_latest() == str(tmp_path / "checkpoints" / "ckpt-4")
    assert _same(model.get_weights(), weights_4)
    damaged = tmp_path / "checkpoints" / "damaged"
    assert sorted(os.listdir(damaged)) and all(n.startswith("ckpt-8.") for n in os.listdir(damaged))
    assert "ckpt-8 cannot be read" in caplog.text and "kept in" in caplog.text
    # The state file now lists what is there, and the run saves on from there.
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-4")
    checkpoints.save(12)


@pytest.mark.parametrize("state", ["garbage", "deleted"])
def test_a_lost_state_file_hides_no_checkpoint(tmp_path, state):
    _, weights_8 = _saved(tmp_path)
    state_file = tmp_path / "checkpoints" / "checkpoint"
    if state == "deleted":
        state_file.unlink()
    else:
        state_file.write_bytes(b"\x00garbage{{{")
    model, checkpoints = _checkpoints(tmp_path, seed=5)
    assert checkpoints.restore_latest() == str(tmp_path / "checkpoints" / "ckpt-8")
    assert _same(model.get_weights(), weights_8)


def test_no_whole_checkpoint_stops_instead_of_starting_over(tmp_path):
    _saved(tmp_path)
    for prefix in ("ckpt-4", "ckpt-8"):
        _zero(str(tmp_path / "checkpoints" / prefix) + ".index")
    _, checkpoints = _checkpoints(tmp_path, seed=5)
    with pytest.raises(run_lib.CheckpointError,
                       match="No checkpoint in .* reads whole .* refusing to start this run "
                             "again from step 0"):
        checkpoints.restore_latest()
    # Nothing the user had is deleted: every file is kept aside.
    assert len(os.listdir(tmp_path / "checkpoints" / "damaged")) == 4


def test_temporary_directories_of_an_unfinished_save_are_removed(tmp_path):
    _saved(tmp_path)
    leftover = tmp_path / "checkpoints" / "ckpt-12_temp" / "part-00000-of-00001.data-00000-of-00001"
    leftover.parent.mkdir()
    leftover.write_bytes(b"half")
    _, checkpoints = _checkpoints(tmp_path, seed=5)
    assert checkpoints.restore_latest().endswith("ckpt-8")
    assert not leftover.parent.exists()


def test_a_fresh_directory_has_nothing_to_restore(tmp_path):
    _, checkpoints = _checkpoints(tmp_path)
    assert checkpoints.restore_latest() is None


@pytest.mark.slow
def test_a_run_whose_checkpoint_interval_divides_the_epoch_saves_each_step_once(
        small_demo_dir, tmp_path):
    """The step save and the epoch-end save fell on the same step and rewrote ckpt-18 in
    place; now the epoch's end is saved once, after its evaluation."""
    from alexnet_tf.train import loop
    from test_train import _demo_config

    workdir = tmp_path / "run"
    config = _demo_config(small_demo_dir, total_epochs=2, checkpoint_every_steps=9,
                          schedule="constant", warmup_epochs=0.0)
    metrics = loop.train_and_evaluate(config, str(workdir))  # 18 steps an epoch
    assert metrics["step"] == 36
    state = tf.train.get_checkpoint_state(str(workdir / "checkpoints"))
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == [
        "ckpt-9", "ckpt-18", "ckpt-27", "ckpt-36"][-3:]


class _Killed(Exception):
    pass


@pytest.mark.slow
def test_a_run_stopped_mid_epoch_and_resumed_ends_as_the_uninterrupted_one(
        small_demo_dir, tmp_path, monkeypatch):
    """Exact resumption with dropout on (0.5, the paper's): the dropout random state is in
    the checkpoint, so the resumed run draws the masks the uninterrupted one drew."""
    from alexnet_tf.train import loop
    from test_train import _demo_config

    def config():
        return _demo_config(small_demo_dir, total_epochs=2, checkpoint_every_steps=5,
                            log_every_steps=100)

    assert config().model.dropout_rate == 0.5
    whole = loop.train_and_evaluate(config(), str(tmp_path / "whole"))
    real_save = hooks.TrainingCheckpoints.save

    def save_then_die(self, step, best=False):
        path = real_save(self, step, best=best)
        if step == 25:  # mid-epoch 2 (18 steps an epoch)
            raise _Killed(path)
        return path

    monkeypatch.setattr(hooks.TrainingCheckpoints, "save", save_then_die)
    with pytest.raises(_Killed):
        loop.train_and_evaluate(config(), str(tmp_path / "resumed"))
    monkeypatch.setattr(hooks.TrainingCheckpoints, "save", real_save)
    resumed = loop.train_and_evaluate(config(), str(tmp_path / "resumed"))
    assert resumed["step"] == whole["step"] == 36
    assert resumed["weights_checksum"] == whole["weights_checksum"]
    assert resumed["top1_error"] == whole["top1_error"]


def test_a_checkpoint_without_dropout_state_still_resumes(tmp_path, caplog):
    """Checkpoints written before the dropout states were saved load, with a warning."""
    model, checkpoints = _checkpoints(tmp_path)
    old_layout = tf.train.Checkpoint(**checkpoints.state)  # no dropout_seeds
    tf.train.CheckpointManager(old_layout, str(tmp_path / "checkpoints"), 3).save(3)
    _, fresh = _checkpoints(tmp_path, seed=5)
    assert fresh.restore_latest().endswith("ckpt-3")
    assert "holds no dropout random state" in caplog.text


def test_a_best_newer_than_the_fall_back_step_is_set_aside_and_the_replay_saves_again(
        tmp_path, caplog):
    # The newest checkpoint was also the best; once it is damaged the run resumes from
    # an older step and replays: its save of the best at the same step used to be
    # refused ("already saved in best") on every rerun, so the run could never finish.
    _, checkpoints = _checkpoints(tmp_path)
    checkpoints.save(4)
    checkpoints.save(8)
    checkpoints.save(8, best=True)
    _truncate(str(tmp_path / "checkpoints" / "ckpt-8") + ".data-00000-of-00001")
    _, checkpoints = _checkpoints(tmp_path, seed=5)
    assert checkpoints.restore_latest().endswith("ckpt-4")
    superseded = tmp_path / "checkpoints" / "best" / "superseded"
    assert sorted(n.split(".")[0] for n in os.listdir(superseded)) == ["ckpt-8", "ckpt-8"]
    assert "Best checkpoint" in caplog.text and "newer than the restored step 4" in caplog.text
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints" / "best")) is None
    checkpoints.save(8)
    assert checkpoints.save(8, best=True).endswith(os.path.join("best", "ckpt-8"))
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints" / "best")).endswith("ckpt-8")


def test_a_best_at_or_before_the_fall_back_step_stays(tmp_path):
    _, checkpoints = _checkpoints(tmp_path)
    checkpoints.save(4)
    checkpoints.save(4, best=True)
    checkpoints.save(8)
    _truncate(str(tmp_path / "checkpoints" / "ckpt-8") + ".data-00000-of-00001")
    _, checkpoints = _checkpoints(tmp_path, seed=5)
    assert checkpoints.restore_latest().endswith("ckpt-4")
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints" / "best")).endswith("ckpt-4")
    assert not (tmp_path / "checkpoints" / "best" / "superseded").exists()


def test_a_data_file_without_index_or_state_file_is_named_and_set_aside(tmp_path, caplog):
    weights_4, _ = _saved(tmp_path)
    (tmp_path / "checkpoints" / "checkpoint").unlink()
    (tmp_path / "checkpoints" / "ckpt-8.index").unlink()
    model, checkpoints = _checkpoints(tmp_path, seed=5)
    assert checkpoints.restore_latest().endswith("ckpt-4")
    assert _same(model.get_weights(), weights_4)
    assert "ckpt-8 cannot be read (its .index file is missing)" in caplog.text
    assert os.listdir(tmp_path / "checkpoints" / "damaged") == ["ckpt-8.data-00000-of-00001"]


def test_with_every_checkpoint_damaged_a_whole_best_is_named(tmp_path):
    _, checkpoints = _checkpoints(tmp_path)
    checkpoints.save(4)
    checkpoints.save(4, best=True)
    _zero(str(tmp_path / "checkpoints" / "ckpt-4") + ".index")
    _, checkpoints = _checkpoints(tmp_path, seed=5)
    best = str(tmp_path / "checkpoints" / "best" / "ckpt-4")
    with pytest.raises(run_lib.CheckpointError, match="refusing to start .* from step 0. "
                       + re.escape(repr(best)) + r" \(the best\) reads whole: copy"):
        checkpoints.restore_latest()


STATE_DAMAGE = {"binary": b"\x00\xff\xfe\x01\x80garbage\xff",
                "truncated": b'model_checkpoint_path: "ckpt-8"\nall_model_checkpoint_paths: "ck'}


@pytest.mark.parametrize("damage", sorted(STATE_DAMAGE))
def test_a_damaged_state_file_is_kept_aside_and_the_run_resumes(tmp_path, damage, caplog):
    """A binary state file made the CheckpointManager raise a bare UnicodeDecodeError when
    a run resumed; the state is an index of the files, so it is written again from them
    and the damaged one is kept in damaged/."""
    _, checkpoints = _checkpoints(tmp_path)
    checkpoints.save(4)
    checkpoints.save(4, best=True)
    model, _ = _checkpoints(tmp_path)
    _, weights_8 = _saved(tmp_path / "second")  # ckpt-8's weights, saved here below
    model.set_weights(weights_8)
    hooks.TrainingCheckpoints(run_lib.Run(tmp_path), tf.distribute.get_strategy(), keep=3,
                              model=model, step=tf.Variable(0, dtype=tf.int64)).save(8)
    directory, best_dir = tmp_path / "checkpoints", tmp_path / "checkpoints" / "best"
    for folder in (directory, best_dir):
        (folder / "checkpoint").write_bytes(STATE_DAMAGE[damage])
    model, checkpoints = _checkpoints(tmp_path, seed=5)
    assert checkpoints.restore_latest() == str(directory / "ckpt-8")
    assert _same(model.get_weights(), weights_8)
    for folder, newest in ((directory, "ckpt-8"), (best_dir, "ckpt-4")):
        assert (folder / "damaged" / "checkpoint").read_bytes() == STATE_DAMAGE[damage]
        assert f"{folder / 'checkpoint'} is damaged" in caplog.text
        assert run_lib.latest_checkpoint(str(folder)) == str(folder / newest)
    assert [os.path.basename(p) for p in checkpoints.manager.checkpoints] == ["ckpt-4", "ckpt-8"]
    checkpoints.save(12)
    assert run_lib.resolve_checkpoint(str(tmp_path), "latest").endswith("ckpt-12")


def _full_disk(monkeypatch, directory, partial_index: bool):
    """The checkpoint write fails with ENOSPC after its temporary directory was written:
    at the merge into ckpt-N, or (``partial_index``) after half the index is written."""
    import errno

    from tensorflow.python.ops import gen_io_ops

    real_merge = gen_io_ops.merge_v2_checkpoints
    seen = []

    def merge(checkpoint_prefixes, destination_prefix, **kwargs):
        seen.extend(n for n in os.listdir(directory) if "_temp" in n)
        prefix = destination_prefix.numpy().decode()
        if partial_index:
            real_merge(checkpoint_prefixes, destination_prefix, **kwargs)
            _truncate(prefix + ".index")
        raise OSError(errno.ENOSPC, "No space left on device", prefix + ".index")

    monkeypatch.setattr(gen_io_ops, "merge_v2_checkpoints", merge)
    return seen


@pytest.mark.parametrize("best", [False, True], ids=["latest", "best"])
@pytest.mark.parametrize("partial_index", [False, True], ids=["temp", "half_index"])
def test_a_save_that_fills_the_disk_removes_its_own_files_and_says_so(
        tmp_path, monkeypatch, best, partial_index):
    from alexnet_tf.cli import app

    model, checkpoints = _checkpoints(tmp_path)
    checkpoints.save(4, best=best)
    weights_4 = [w.copy() for w in model.get_weights()]
    directory = tmp_path / "checkpoints" / ("best" if best else "")
    # Not the failing save's: left alone.
    (directory / "ckpt-99_temp").mkdir()
    (directory / "notes.txt").write_text("mine")
    before = sorted(os.listdir(directory))
    seen = _full_disk(monkeypatch, directory, partial_index)
    model.set_weights(models.model_from_config(_seed_config(1)).get_weights())
    with pytest.raises(OSError) as error:
        checkpoints.save(8, best=best)
    assert sorted(seen) == ["ckpt-8_temp", "ckpt-99_temp"]  # it failed part-way
    assert app.exit_status(error.value) == 1
    assert "No space left on device" in app._one_line(error.value)
    assert sorted(os.listdir(directory)) == before
    assert run_lib.latest_checkpoint(str(directory)) == str(directory / "ckpt-4")
    assert run_lib.checkpoint_damage(str(directory / "ckpt-4")) is None
    restored, _ = _checkpoints(tmp_path, seed=5)
    run_lib.restore_weights(restored, str(directory / "ckpt-4"))
    assert _same(restored.get_weights(), weights_4)
    monkeypatch.undo()  # space again: the same step saves
    assert checkpoints.save(8, best=best) == str(directory / "ckpt-8")


def _state_text(directory):
    return (directory / "checkpoint").read_text()


def test_a_state_file_naming_a_missing_checkpoint_is_kept_aside_and_the_run_resumes(
        tmp_path, caplog):
    """A state file naming ckpt-99, which is not there: the resume said "its files are
    kept in damaged/" of ckpt-99, which had none. The state is kept aside and written
    again from the files, as a damaged one is, and the warning says only that."""
    _, weights_8 = _saved(tmp_path)
    directory = tmp_path / "checkpoints"
    wrong = 'model_checkpoint_path: "ckpt-99"\nall_model_checkpoint_paths: "ckpt-99"\n'
    (directory / "checkpoint").write_text(wrong)
    model, checkpoints = _checkpoints(tmp_path, seed=5)
    assert checkpoints.restore_latest() == str(directory / "ckpt-8")
    assert _same(model.get_weights(), weights_8)
    assert f"{directory / 'checkpoint'} names {directory / 'ckpt-99'} as the newest" in caplog.text
    assert "its files are kept" not in caplog.text and "ckpt-99 cannot be read" not in caplog.text
    assert os.listdir(directory / "damaged") == ["checkpoint"]
    assert (directory / "damaged" / "checkpoint").read_text() == wrong
    assert [os.path.basename(p) for p in checkpoints.manager.checkpoints] == ["ckpt-4", "ckpt-8"]
    assert run_lib.resolve_checkpoint(str(tmp_path), "latest") == str(directory / "ckpt-8")


def test_a_listed_checkpoint_without_files_is_not_said_to_be_kept(tmp_path, caplog):
    # TF's save deletes the oldest checkpoint before it records that: a kill between
    # leaves a listed ckpt-6 without files, which the fall-back passes.
    _saved(tmp_path)
    directory = tmp_path / "checkpoints"
    (directory / "checkpoint").write_text(
        'model_checkpoint_path: "ckpt-8"\nall_model_checkpoint_paths: "ckpt-4"\n'
        'all_model_checkpoint_paths: "ckpt-6"\nall_model_checkpoint_paths: "ckpt-8"\n')
    _truncate(str(directory / "ckpt-8") + ".data-00000-of-00001")
    _, checkpoints = _checkpoints(tmp_path, seed=5)
    assert checkpoints.restore_latest() == str(directory / "ckpt-4")
    assert "ckpt-8 cannot be read" in caplog.text and "its files are kept in" in caplog.text
    assert re.search(r"ckpt-6 cannot be read \(its .index file is missing\): skipped; it has "
                     r"no file left to keep\.", caplog.text)
    assert sorted(os.listdir(directory / "damaged")) == ["ckpt-8.data-00000-of-00001",
                                                         "ckpt-8.index"]
    # The state written again lists only what is there.
    assert [os.path.basename(p) for p in checkpoints.manager.checkpoints] == ["ckpt-4"]


def test_a_rewritten_state_is_relative_and_survives_moving_the_run(tmp_path, capfd, caplog):
    """The rewritten state named absolute paths (tf.compat.v1.train.update_checkpoint_state,
    which also printed a deprecation warning): after the run directory moved it named
    nothing. It is written as a CheckpointManager writes it, relative."""
    workdir = tmp_path / "run"
    _saved(workdir)
    (workdir / "checkpoints" / "checkpoint").write_bytes(b"\x00\xff binary")
    capfd.readouterr()
    _checkpoints(workdir, seed=5)  # rewrites the state from the files
    text = _state_text(workdir / "checkpoints")
    assert re.findall(r'checkpoint_paths?: "([^"]+)"', text) == ["ckpt-8", "ckpt-4", "ckpt-8"]
    assert len(re.findall(r"all_model_checkpoint_timestamps: ", text)) == 2
    assert "deprecat" not in (capfd.readouterr().err + caplog.text).lower()
    assert not [n for n in os.listdir(workdir / "checkpoints") if ".tmp" in n]
    moved = tmp_path / "moved"
    os.rename(workdir, moved)
    directory = moved / "checkpoints"
    assert run_lib.resolve_checkpoint(str(moved), "latest") == str(directory / "ckpt-8")
    _, checkpoints = _checkpoints(moved, seed=5)
    assert checkpoints.manager.checkpoints == [str(directory / "ckpt-4"), str(directory / "ckpt-8")]
    assert checkpoints.restore_latest() == str(directory / "ckpt-8")
    checkpoints.save(12)
    checkpoints.save(16)  # keep=3: the manager rotates ckpt-4 out
    assert not (directory / "ckpt-4.index").exists()
    assert [os.path.basename(p) for p in checkpoints.manager.checkpoints] == [
        "ckpt-8", "ckpt-12", "ckpt-16"]
    assert os.listdir(directory / "damaged") == ["checkpoint"]


def test_a_state_naming_another_directory_is_not_rotated_there(tmp_path, caplog):
    """A copied run whose state names the original's checkpoints by absolute path (as the
    earlier rewrite wrote them): its manager would have rotated, i.e. deleted, the
    original's files. The copy's state is rebuilt from its own files."""
    original = tmp_path / "run"
    _saved(original)
    source = original / "checkpoints"
    (source / "checkpoint").write_text(
        f'model_checkpoint_path: "{source / "ckpt-8"}"\n'
        f'all_model_checkpoint_paths: "{source / "ckpt-4"}"\n'
        f'all_model_checkpoint_paths: "{source / "ckpt-8"}"\n')
    copy = tmp_path / "copy"
    shutil.copytree(original, copy)
    _, checkpoints = _checkpoints(copy, seed=5)
    assert checkpoints.restore_latest() == str(copy / "checkpoints" / "ckpt-8")
    assert "outside its directory" in caplog.text
    checkpoints.save(12)
    checkpoints.save(16)
    assert sorted(n for n in os.listdir(source) if n.endswith(".index")) == [
        "ckpt-4.index", "ckpt-8.index"]
    assert not (copy / "checkpoints" / "ckpt-4.index").exists()
