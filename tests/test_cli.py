"""Every binary starts the same way (`alexnet_tf.cli.app.run`): --help lists the binary's
own flags with their defaults and one example command, and does so before TensorFlow or
Keras is imported."""

import subprocess
import sys

import pytest

from conftest import REPO_ROOT

# module -> flags its --help must list
BINARIES = {
    "alexnet_tf.cli.train": ["--config", "--workdir", "--[no]allow_config_change"],
    "alexnet_tf.cli.eval": ["--model", "--workdir", "--checkpoint", "--split", "--[no]ten_crop",
                            "--output", "--data_dir", "--data_source", "--config",
                            "--class_names", "--batch_size"],
    "alexnet_tf.train": ["--config", "--workdir"],  # python -m alexnet_tf.train
    "alexnet_tf.cli.export": ["--model", "--workdir", "--export_dir", "--version", "--checkpoint",
                              "--class_names", "--top_k", "--max_pixels", "--max_aspect_ratio"],
    "alexnet_tf.cli.predict": ["--rest", "--grpc", "--saved_model", "--model_name",
                               "--signature", "--form", "--timeout"],
}

_PROBE = """
import runpy, sys
sys.argv = [{module!r} , "--help"]
try:
    runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
except SystemExit:
    pass
print("IMPORTED:", sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
"""


@pytest.mark.parametrize("module", sorted(BINARIES))
def test_help_lists_own_flags_without_importing_tensorflow(module):
    result = subprocess.run([sys.executable, "-c", _PROBE.format(module=module)],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    out = result.stdout + result.stderr
    for flag in BINARIES[module]:
        assert f"  {flag}" in out, (flag, out)
    assert "(default: " in out
    first_line = out.strip().splitlines()[0]
    assert first_line.startswith("alexnet-"), first_line  # the binary's own docstring
    assert "IMPORTED: []" in out, out[-500:]


@pytest.mark.parametrize("override, message", [
    ("--config.train.learning_rate=nan", "'train.learning_rate' is nan; expected a finite number"),
    ("--config.data.mean_rgb=(1e999,0.,0.)", "'data.mean_rgb' is (inf, 0.0, 0.0); expected finite"),
])
def test_a_non_finite_config_is_refused_before_anything_is_written(tmp_path, override, message):
    workdir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "alexnet_tf.cli.train", "--config=configs/demo.py",
         f"--workdir={workdir}", override],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert message in result.stderr, result.stderr[-800:]
    assert not workdir.exists()


def test_a_work_directory_in_use_is_one_line_not_a_traceback(tmp_path, small_demo_dir):
    from alexnet_tf import run as run_lib

    workdir = tmp_path / "run"
    with run_lib.Run(workdir).lock():
        result = subprocess.run(
            [sys.executable, "-m", "alexnet_tf.cli.train", "--config=configs/demo.py",
             f"--workdir={workdir}", f"--config.data.data_dir={small_demo_dir}",
             "--config.data.demo_train_per_class=60", "--config.data.demo_val_per_class=20"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "is in use by another training run" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
