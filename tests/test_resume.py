"""A run killed with SIGKILL in the middle continues from its last checkpoint when the same
command is started again, and finishes."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT


@pytest.mark.slow
def test_sigkill_then_rerun_continues_and_finishes(small_demo_dir, tmp_path):
    workdir = tmp_path / "run"
    command = [sys.executable, "-m", "alexnet_tf.train", "--config=configs/demo.py",
               f"--workdir={workdir}", f"--config.data.data_dir={small_demo_dir}",
               "--config.data.demo_train_per_class=60", "--config.data.demo_val_per_class=20",
               "--config.train.global_batch_size=32", "--config.train.total_epochs=3",
               "--config.train.checkpoint_every_steps=4", "--config.train.log_every_steps=2"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    first = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    checkpoints = workdir / "checkpoints"
    deadline = time.time() + 240
    # Kill once the manager has recorded a mid-epoch checkpoint past the first epoch (18
    # steps) in its state file (a checkpoint's files appear before they are recorded).
    state = checkpoints / "checkpoint"
    recorded = 0
    while time.time() < deadline and first.poll() is None:
        match = state.exists() and re.search(r'^model_checkpoint_path: "ckpt-(\d+)"',
                                             state.read_text(), re.M)
        recorded = int(match.group(1)) if match else 0
        if recorded >= 20:
            break
        time.sleep(0.2)
    assert first.poll() is None, "the first run ended before it could be killed"
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL
    assert not (workdir / "metrics.json").exists()

    second = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    resumed = re.search(r"Resumed from .*ckpt-(\d+) at step (\d+) \((\d+) of 3 epochs done\)",
                        second.stderr)
    assert resumed, second.stderr[-3000:]
    step = int(resumed.group(2))
    # The last recorded checkpoint, or one recorded between the poll and the kill.
    assert step >= recorded >= 20 and int(resumed.group(3)) == 1
    # It continues at the next step rather than starting again from step 1.
    logged = [int(s) for s in re.findall(r"step (\d+): loss", second.stderr)]
    assert logged and min(logged) > step and max(logged) == 3 * 18
    assert (workdir / "metrics.json").exists()
