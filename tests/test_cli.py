"""Every binary and tool starts the same way (`alexnet_tf.cli.app.run`): --help lists the
binary's own flags with their defaults and one example command, exits with status 0 and
imports neither TensorFlow nor Keras; a mistake of the user's is one line,
``<binary>: error: <message>``, with status 2 for usage (flags, --config) and 1 for the
rest, and no traceback; a bug keeps its traceback; TensorFlow's start-up logs are
silenced unless asked for."""

import errno
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

# module -> flags its --help must list
BINARIES = {
    "alexnet_tf.cli.train": ["--config", "--workdir", "--[no]allow_config_change",
                             "--[no]print_config"],
    "alexnet_tf.cli.eval": ["--model", "--workdir", "--checkpoint", "--split", "--[no]ten_crop",
                            "--output", "--data_dir", "--data_source", "--config",
                            "--class_names", "--batch_size", "--[no]overwrite",
                            "--[no]progress"],
    "alexnet_tf.train": ["--config", "--workdir"],  # python -m alexnet_tf.train
    "alexnet_tf.cli.export": ["--model", "--workdir", "--export_dir", "--version", "--checkpoint",
                              "--class_names", "--top_k", "--max_pixels", "--max_aspect_ratio",
                              "--compute_dtype"],
    "alexnet_tf.cli.predict": ["--rest", "--grpc", "--saved_model", "--model_name",
                               "--signature", "--form", "--timeout"],
}
COMMON_FLAGS = ["--[no]verbose_errors", "--[no]tf_logs"]
# The binary's name in its error lines, by module.
NAMES = {"alexnet_tf.cli.train": "alexnet-train", "alexnet_tf.cli.eval": "alexnet-eval",
         "alexnet_tf.cli.export": "alexnet-export", "alexnet_tf.cli.predict": "alexnet-predict"}
TOOLS = ["build_tfrecords", "convert_weights", "dataset_stats", "plot_curves", "retrieve",
         "show_kernels", "benchmark", "serving_client"]

# A C++ log record of TensorFlow's (absl's or TSL's format), or absl's preface to them.
TF_LOG_LINE = re.compile(r"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+\.cc:\d+\]|"
                         r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] \S+\.cc:\d+\]|"
                         r"WARNING: All log messages before absl::InitializeLog)")

_PROBE = """
import runpy, sys
sys.argv = {argv!r}
code = 0
try:
    runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
except SystemExit as done:
    code = done.code
print("IMPORTED:", sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
print("EXIT:", code)
"""


def _probe(module, *args):
    """``python -m module ARGS`` in a fresh process that then reports whether TensorFlow
    or Keras was imported, and the exit status."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=module, argv=[module, *args])],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    return result.stdout + result.stderr


def _env(**changes):
    """The test's environment without TF_CPP_MIN_LOG_LEVEL (conftest sets it), so that
    the binaries' own defaults are what runs; ``changes`` added."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "ALEXNET_TF_TF_LOGS", "ALEXNET_TF_TRACEBACK")}
    env.update(changes)
    return env


def _run(command, *args, env=None):
    """A binary (a module name: ``python -m``) or a tool (``tools/NAME.py``)."""
    program = ([str(REPO_ROOT / "tools" / f"{command}.py")] if command in TOOLS
               else ["-m", command])
    return subprocess.run([sys.executable, *program, *map(str, args)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=_env() if env is None else env)


def _check_one_line(result, name, status):
    """The one-line error: stderr's every line is it, or a log line of the package's."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == status, (result.returncode, result.stderr[-3000:])
    errors = [l for l in result.stderr.splitlines() if l.startswith(f"{name}: error: ")]
    others = [l for l in result.stderr.splitlines()
              if l not in errors and not re.match(r"^[IW]\d{4} .*\.py:\d+\] ", l)]
    assert len(errors) == 1 and not others, result.stderr[-3000:]
    return errors[0]


@pytest.mark.parametrize("module", sorted(BINARIES))
def test_help_lists_own_flags_without_importing_tensorflow(module):
    out = _probe(module, "--help")
    for flag in BINARIES[module] + COMMON_FLAGS:
        assert f"  {flag}" in out, (flag, out)
    assert "(default: " in out
    first_line = out.strip().splitlines()[0]
    assert first_line.startswith("alexnet-"), first_line  # the binary's own docstring
    assert re.search(r"\n    alexnet-\w+ --\w+", out), out  # an example command
    assert "IMPORTED: []" in out, out[-500:]
    assert "EXIT: 0" in out, out[-500:]


def test_dash_h_is_help():
    result = _run("alexnet_tf.cli.eval", "-h")
    assert result.returncode == 0 and result.stdout.startswith("alexnet-eval: "), result


def test_train_help_says_how_to_list_the_config_keys():
    out = _probe("alexnet_tf.cli.train", "--help")
    assert "alexnet-train --config=configs/demo.py --print_config" in out, out


def test_print_config_prints_every_key_without_training_or_tensorflow():
    out = _probe("alexnet_tf.cli.train", "--config=configs/demo.py",
                 "--config.train.total_epochs=3", "--print_config")
    assert "IMPORTED: []" in out and "EXIT: 0" in out, out[-2000:]
    result = _run("alexnet_tf.cli.train", "--config=configs/demo.py",
                  "--config.train.total_epochs=3", "--print_config")
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads(result.stdout)
    assert set(config) >= {"seed", "model", "data", "train", "eval"}
    assert config["train"]["total_epochs"] == 3 and "learning_rate" in config["train"]


@pytest.mark.parametrize("tool", TOOLS)
def test_tool_help_lists_its_flags_and_an_example(tool):
    result = _run(tool, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"\n    python tools/{tool}.py --" in result.stdout, result.stdout[:1000]
    assert "(default: " in result.stdout and "  --[no]verbose_errors" in result.stdout


# (command, arguments, exit status, text of the one line). Usage (2): flags absl cannot
# parse, flags missing or refused, a bad --config; the rest (1): paths, runs, sources.
# None of these imports TensorFlow but the last ones of each binary.
MISTAKES = [
    ("alexnet_tf.cli.train", ["--config=configs/demo.py", "--no_such_flag"], 2,
     "Unknown command line flag 'no_such_flag' (--help lists the flags)"),
    ("alexnet_tf.cli.train", ["--workdir=runs/x"], 2, "give --config=FILE"),
    ("alexnet_tf.cli.train", ["--config=configs/demo.py"], 2, "give --workdir=DIR"),
    ("alexnet_tf.cli.train", ["--config=configs/nope.py", "--workdir=runs/x"], 2,
     "--config='configs/nope.py': no such file"),
    ("alexnet_tf.cli.train", ["--config=configs/demo.py", "--workdir=runs/x",
                              "--config.model.widht=0.5"], 2,
     "'widht' is not a key; did you mean 'width'? (alexnet-train --config=FILE "
     "--print_config lists the config keys)"),
    ("alexnet_tf.cli.train", ["--config=configs/demo.py", "--workdir=runs/x",
                              "--config.model.width=abc"], 2, "could not convert string"),
    ("alexnet_tf.cli.train", ["--config=configs/demo.py", "--workdir=runs/x",
                              "--config.model.image_size=60"], 2,
     "bad --config: Config group 'model' is invalid: image_size=60 is too small"),
    ("alexnet_tf.cli.train", ["--config=configs/demo.py", "--workdir={file}"], 1,
     "is a file; expected a directory"),
    ("alexnet_tf.cli.train", ["--config=configs/paper.py", "--workdir=runs/x",
                              "--config.data.data_dir={missing}"], 1,
     "missing' is not a directory"),
    ("alexnet_tf.cli.train", ["--config=configs/demo.py", "--workdir={tmp}/out",
                              "--config.train.total_epochs=1"], 2,
     "for a run this short add --config.train.warmup_epochs=0.1 (or 0 for no warm-up)"),
    ("alexnet_tf.cli.train", ["--config=configs/demo.py", "--workdir={tmp}/out",
                              "--config.train.tower_devices=/GPU:0,/GPU:1"], 1,
     "train.tower_devices names ['/GPU:0', '/GPU:1'], which this process does not have"),
    ("alexnet_tf.cli.train", ["--config=configs/demo.py", "--workdir={tmp}"], 1,
     "holds files (a_file) but no run (no config.json)"),
    ("alexnet_tf.cli.eval", ["--model=x", "--no_such_flag"], 2, "Unknown command line flag"),
    ("alexnet_tf.cli.eval", [], 2, "give --model=SOURCE (or --workdir=RUN)"),
    ("alexnet_tf.cli.eval", ["--model=x", "--batch_size=0"], 2, "--batch_size=0 must be in 1..1048576"),
    ("alexnet_tf.cli.eval", ["--model=x", "--batch_size=99999999999999999999"], 2,
     "must be in 1..1048576"),
    ("alexnet_tf.cli.train", ["--config=configs/demo.py", "--workdir={tmp}/out",
                              "--config.eval.global_batch_size=99999999999"], 2,
     "Config key 'eval.global_batch_size' is 99999999999; expected at most 1,048,576 images"),
    ("alexnet_tf.cli.eval", ["--model=x", "--config=configs/nope.py"], 2, "no such file"),
    ("alexnet_tf.cli.eval", ["--model=x", "--split=../val"], 2,
     "--split='../val': expected a split name such as 'train' or 'val'"),
    ("alexnet_tf.cli.eval", ["--model=x", "--config=configs/demo.py",
                             "--config.data.resize_size=-1"], 2,
     "bad --config: Config key 'data.resize_size' is -1"),
    ("alexnet_tf.cli.eval", ["--model={missing}"], 1, "does not exist"),
    ("alexnet_tf.cli.eval", ["--workdir={file}"], 1, "is not the work directory of a training run"),
    ("alexnet_tf.cli.export", ["--model=x", "--no_such_flag"], 2, "Unknown command line flag"),
    ("alexnet_tf.cli.export", ["--model=x", "--export_dir={tmp}/exports",
                               "--compute_dtype=float16"], 2,
     "flag --compute_dtype=float16: value should be one of <float32|bfloat16>"),
    ("alexnet_tf.cli.export", ["--model=x"], 2, "give --model=SOURCE (or --workdir=RUN) and "
                                                "--export_dir"),
    ("alexnet_tf.cli.export", ["--model={file}", "--export_dir={tmp}/exports"], 1,
     "is a file of none of the kinds"),
    ("alexnet_tf.cli.predict", ["--rest=x", "--no_such_flag"], 2, "Unknown command line flag"),
    ("alexnet_tf.cli.predict", ["{file}"], 2, "give exactly one of --rest, --grpc, --saved_model"),
    ("alexnet_tf.cli.predict", ["--rest=http://localhost:1"], 2, "give at least one image file"),
    ("alexnet_tf.cli.predict", ["--saved_model={tmp}", "{missing}"], 1, "No such file"),
    ("alexnet_tf.cli.predict", ["--rest=http://localhost:1", "--timeout=0", "{file}"], 2,
     "--timeout=0.0 must be a number of seconds > 0"),
    ("alexnet_tf.cli.predict", ["--grpc=localhost:1", "--timeout=nan", "{file}"], 2,
     "--timeout=nan must be a number of seconds > 0"),
    ("alexnet_tf.cli.predict", ["--grpc=localhost:1", "--version=-1", "{file}"], 2,
     "--version=-1 must be >= 0"),
    ("alexnet_tf.cli.predict", ["--grpc=localhost:1", "--version=1", "--label=x", "{file}"], 2,
     "give --version or --label, not both"),
    ("alexnet_tf.cli.predict", ["--saved_model={tmp}", "--version=1", "{file}"], 2,
     "with --saved_model give the version directory"),
    ("alexnet_tf.cli.predict", ["--grpc=localhost:1", "--form=columnar", "{file}"], 2,
     "--form=columnar shapes a REST request body; it has no effect without --rest"),
    ("alexnet_tf.cli.predict", ["--grpc=localhost:1", "--model_name=", "{file}"], 2,
     "--model_name='' must be the model's name on the server"),
    ("alexnet_tf.cli.predict", ["--rest=notaurl", "{file}"], 2,
     "--rest='notaurl' is not a server address; expected e.g. http://localhost:8501"),
    ("build_tfrecords", ["--data_dir={missing}", "--output_dir={tmp}/out"], 1,
     "does not exist or is not a directory"),
    ("build_tfrecords", ["--output_dir={tmp}/out"], 2,
     "--data_dir is required (--help lists the flags)"),
    ("convert_weights", [], 2, "--source, --input, --output are required (--help lists"),
    ("convert_weights", ["--source=caffe", "--input={missing}", "--output={tmp}/w"], 1,
     "does not exist; expected the weights file"),
    ("retrieve", ["--model={missing}", "--query_split=val"], 1,
     "Give a features cache directory (--features_cache=DIR)"),
    ("retrieve", ["--saved_model=x", "--query_split=val"], 2,
     "--saved_model without --workdir=RUN also needs --data_dir=DIR and --features_cache=DIR"),
    ("retrieve", ["--model=x", "--saved_model=y", "--query_split=val"], 2,
     "Give at most one of --model and --saved_model."),
    ("show_kernels", ["--scale=0", "--model=x"], 2, "--scale and --columns must be >= 1."),
    ("dataset_stats", ["--data_dir=x", "--output=x.json"], 2, "must end in .npz"),
    # An output file that exists is the user's: refused before any work, unless --overwrite.
    ("show_kernels", ["--model=x", "--output={file}"], 1, "exists; give --overwrite"),
    ("plot_curves", ["--workdir=x", "--output={file}"], 1, "exists; give --overwrite"),
    ("retrieve", ["--model=x", "--query_split=val", "--output={file}"], 1,
     "exists; give --overwrite"),
    ("dataset_stats", ["--data_dir=x", "--output={file}/x.npz"], 1, "is a file, not a "
                                                                     "directory"),
]


@pytest.mark.parametrize("command, args, status, text", MISTAKES,
                         ids=[f"{c.split('.')[-1]}-{i}" for i, (c, *_) in enumerate(MISTAKES)])
def test_a_mistake_is_one_line_and_the_exit_status(tmp_path, command, args, status, text):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    args = [a.format(file=a_file, missing=tmp_path / "missing", tmp=tmp_path) for a in args]
    result = _run(command, *args)
    name = NAMES.get(command, f"{command}.py")
    line = _check_one_line(result, name, status)
    assert text in line, line
    assert not (tmp_path / "out").exists() and not (tmp_path / "exports").exists()


@pytest.mark.parametrize("text, message", [
    ("def get_config(:\n", "SyntaxError: invalid syntax"),
    ("import no_such_module_xyz\n", "ModuleNotFoundError: No module named "
                                    "'no_such_module_xyz' (line 1)"),
    ("def x():\n    return 1\n", "has no attribute 'get_config'"),
    ("def get_config(arg=None):\n    raise RuntimeError('boom')\n", "RuntimeError: boom (line 2)"),
])
def test_a_config_file_that_cannot_load_is_one_line(tmp_path, text, message):
    config = tmp_path / "my_config.py"
    config.write_text(text)
    for binary in ("alexnet_tf.cli.train", "alexnet_tf.cli.eval"):
        result = _run(binary, f"--config={config}", f"--workdir={tmp_path / 'run'}")
        line = _check_one_line(result, NAMES[binary], 2)
        assert f"--config='{config}' cannot be loaded: " in line and message in line, line
    assert sorted(os.listdir(tmp_path)) == ["my_config.py"]  # nothing written


def test_training_mistakes_found_with_the_data_are_one_line(tmp_path, small_demo_dir):
    from alexnet_tf import config as config_lib

    demo = ["--config=configs/demo.py", f"--config.data.data_dir={small_demo_dir}",
            "--config.data.demo_train_per_class=60", "--config.data.demo_val_per_class=20"]
    empty = tmp_path / "empty"
    (empty / "train" / "a").mkdir(parents=True)
    (empty / "val" / "a").mkdir(parents=True)
    other = tmp_path / "other"  # a work directory holding a run of another config
    config = config_lib.base_config()
    config.train.learning_rate = 0.5
    other.mkdir()
    config_lib.write_config(config, str(other / "config.json"))
    cases = [
        (demo + ["--config.model.num_classes=7", f"--workdir={tmp_path / 'a'}"],
         "config.model.num_classes is 7 but the training split has 10 classes; set "
         "--config.model.num_classes=10."),
        (["--config=configs/paper.py", f"--config.data.data_dir={empty}",
          f"--workdir={tmp_path / 'b'}"], f"Class folder '{empty / 'train' / 'a'}' holds no "
                                          f"images"),
        (demo + [f"--workdir={other}"], f"Work directory '{other}' holds a run of another "
                                        f"config"),
    ]
    for args, text in cases:
        result = _run("alexnet_tf.cli.train", *args)
        assert text in _check_one_line(result, "alexnet-train", 1)
    assert sorted(os.listdir(tmp_path)) == ["empty", "other"]  # nothing written
    assert os.listdir(other) == ["config.json"]


def test_tensorflow_start_up_logs_are_silenced_unless_asked_for(tmp_path):
    # alexnet-eval imports TensorFlow before it finds that the model does not exist.
    args = ["alexnet_tf.cli.eval", f"--model={tmp_path / 'missing'}"]
    quiet = _run(*args)
    _check_one_line(quiet, "alexnet-eval", 1)
    assert not any(TF_LOG_LINE.match(l) for l in quiet.stderr.splitlines()), quiet.stderr
    for loud in (_run(*args, env=_env(ALEXNET_TF_TF_LOGS="1")), _run(*args, "--tf_logs")):
        assert loud.returncode == 1
        assert any(TF_LOG_LINE.match(l) for l in loud.stderr.splitlines()), loud.stderr
        assert loud.stderr.strip().splitlines()[-1].startswith("alexnet-eval: error: ")


_CHECKPOINT = """
import tempfile
from alexnet_tf.cli import app as cli_app

def main(argv):
    import tensorflow as tf
    tf.train.Checkpoint(v=tf.Variable(1.0)).save(tempfile.mkdtemp() + "/ckpt")
    from absl import logging
    logging.info("the package's own line")

cli_app.run(main, "__main__", name="probe")
"""


@pytest.mark.parametrize("asked", [False, True])
def test_tensorflows_python_info_lines_are_silenced_unless_asked_for(asked):
    env = _env(ALEXNET_TF_TF_LOGS="1") if asked else _env()
    result = subprocess.run([sys.executable, "-c", _CHECKPOINT], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("Sharding callback duration" in result.stderr) == asked, result.stderr
    assert "the package's own line" in result.stderr


_FILTERED = r"""
import os, sys
from alexnet_tf.cli import tf_logs
with tf_logs._filtered_stderr(int(sys.argv[1])):
    for line in (
            b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
            b"I0000 00:00:1796081426.260668   27229 port.cc:153] oneDNN custom operations are on.",
            b"W0000 00:00:1796081426.260668   27229 x.cc:1] a warning",
            b"E0000 00:00:1796081427.709953   27229 cuda_platform.cc:52] failed call to cuInit",
            b"2025-09-17 14:44:05.157831: I external/xla/cudart_stub.cc:32] no cuda drivers",
            b"F0000 00:00:1796081427.709953   27229 x.cc:2] a fatal error",
            b"a line of Python's"):
        os.write(2, line + b"\n")
    if sys.argv[2] == "abort":
        os.abort()
os.write(2, b"after the import\n")
"""


@pytest.mark.parametrize("level, end", [("3", "normal"), ("2", "normal"), ("0", "normal"),
                                        ("3", "abort")])
def test_the_import_filter_drops_tensorflow_log_lines_below_the_level(level, end):
    result = subprocess.run([sys.executable, "-c", _FILTERED, level, end], cwd=REPO_ROOT,
                            capture_output=True, timeout=60)
    lines = result.stderr.decode().splitlines()
    kept = {"3": ["F0000", "a line of Python's"],
            "2": ["E0000", "F0000", "a line of Python's"],
            "0": ["WARNING: All", "I0000", "W0000", "E0000", "2025-09-17", "F0000",
                  "a line of Python's"]}[level]
    if end == "normal":
        kept = kept + ["after the import"]
        assert result.returncode == 0
    else:  # a crash inside the import still shows what was printed before it
        assert result.returncode != 0
    assert [l[:len(k)] for l, k in zip(lines, kept)] == kept and len(lines) == len(kept), lines


_BUG = """
import sys
import {module} as binary

def main(argv):
    raise RuntimeError("a bug in the package")

binary.main = main
sys.argv = [{name!r}, *sys.argv[1:]]
binary.run()
"""


@pytest.mark.parametrize("module", sorted(NAMES))
def test_a_bug_keeps_its_traceback(module):
    result = subprocess.run([sys.executable, "-c", _BUG.format(module=module,
                                                               name=NAMES[module])],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                            env=_env())
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().endswith("RuntimeError: a bug in the package")
    assert f"{NAMES[module]}: error:" not in result.stderr


_MACHINE = """
import errno, os, sys
import alexnet_tf.cli.train as binary

code = getattr(errno, sys.argv[1])

def main(argv):
    raise OSError(code, os.strerror(code), "runs/demo/checkpoints/ckpt-1.index")

binary.main = main
sys.argv = ["alexnet-train"]
binary.run()
"""


@pytest.mark.parametrize("code", ["ENOSPC", "EROFS", "EACCES", "ENOENT", "ENOTDIR", "EISDIR"])
def test_a_full_disk_a_read_only_or_a_missing_path_is_one_line(code):
    result = subprocess.run([sys.executable, "-c", _MACHINE, code], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120, env=_env())
    line = _check_one_line(result, "alexnet-train", 1)
    assert line.endswith(f"{os.strerror(getattr(errno, code))}: "
                         f"'runs/demo/checkpoints/ckpt-1.index'"), line


_OUT_OF_MEMORY = """
import sys
import alexnet_tf.cli.eval as binary

def main(argv):
    import tensorflow as tf
    raise tf.errors.ResourceExhaustedError(
        None, None, "OOM when allocating tensor with shape[4096,9216]\\nallocator state...")

binary.main = main
sys.argv = ["alexnet-eval"]
binary.run()
"""


def test_out_of_memory_is_one_line_naming_the_batch_size():
    result = subprocess.run([sys.executable, "-c", _OUT_OF_MEMORY], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120, env=_env())
    line = _check_one_line(result, "alexnet-eval", 1)
    assert "out of memory: OOM when allocating tensor with shape[4096,9216]" in line, line
    assert "allocator state" not in line and "--batch_size=N" in line, line


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_users_error_shows_its_traceback_when_asked(tmp_path, how):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    args = ["alexnet_tf.cli.train", "--config=configs/demo.py", f"--workdir={a_file}"]
    result = (_run(*args, "--verbose_errors") if how == "flag"
              else _run(*args, env=_env(ALEXNET_TF_TRACEBACK="1")))
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "alexnet_tf.run.RunError" in result.stderr or "RunError:" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("alexnet-train: error: ")


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
    assert result.returncode == 2  # a bad --config value: usage
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
    line = _check_one_line(result, "alexnet-train", 1)
    assert "is in use by another training run" in line


_INTERRUPT = """
import sys
import alexnet_tf.cli.train as binary

def main(argv):
    raise KeyboardInterrupt

binary.main = main
sys.argv = ["alexnet-train"]
binary.run()
"""


def test_ctrl_c_is_one_line_and_status_130():
    result = subprocess.run([sys.executable, "-c", _INTERRUPT], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120, env=_env())
    assert result.returncode == 130, result
    assert result.stderr.strip() == "alexnet-train: interrupted", result.stderr[-2000:]
