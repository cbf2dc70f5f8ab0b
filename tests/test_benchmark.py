"""The benchmark harness at tiny sizes: structure and sanity of its results, not speed."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

# The harness (benchmarks/) sits beside the package and is not installed; the tests
# import it from this checkout whatever directory pytest runs from.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

TINY = dict(width=0.125, image_size=67)
# The paper's network at 227x227 (Sec. 3.5): multiply-adds per layer, from its shapes.
PAPER_MACS = {
    "conv1": 55 * 55 * 96 * 11 * 11 * 3,
    "conv2": 27 * 27 * 256 * 5 * 5 * 48,
    "conv3": 13 * 13 * 384 * 3 * 3 * 256,
    "conv4": 13 * 13 * 384 * 3 * 3 * 192,
    "conv5": 13 * 13 * 256 * 3 * 3 * 192,
    "fc6": 6 * 6 * 256 * 4096,
    "fc7": 4096 * 4096,
    "fc8": 4096 * 1000,
}
PAPER_PARAMS = 60_965_224


def _torch_imports() -> bool:
    return importlib.util.find_spec("torch") is not None


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_paper_flops_match_the_analytical_count():
    import alexnet_tf
    from benchmarks import flops as benchmark

    model = alexnet_tf.create_model("paper")
    flops = benchmark.model_flops(model)
    assert {r["layer"]: r["macs"] for r in flops["layers"]} == PAPER_MACS
    forward_macs = sum(PAPER_MACS.values())
    assert flops["forward_macs"] == forward_macs == 724_406_816
    assert flops["forward_flops"] == 2 * forward_macs
    # "about 0.72 G multiply-adds per image" (PAPER.md), within 5%.
    assert abs(flops["forward_flops"] / (2 * 0.72e9) - 1) < 0.05
    # Training: forward + weight gradients + input gradients except conv1's.
    assert flops["training_flops"] == 6 * forward_macs - 2 * PAPER_MACS["conv1"]
    assert abs(flops["training_flops"] / 4.14e9 - 1) < 0.01
    profiled = benchmark.profiler_flops(model)
    if profiled is not None:  # TF's own count of the convolutions and matmuls agrees
        assert profiled["conv_matmul_flops"] == flops["forward_flops"]


def test_torch_peer_is_the_same_network():
    if not _torch_imports():
        pytest.skip("torch is not installed")
    import alexnet_tf
    from benchmarks import torch_peer as benchmark

    full = benchmark.torch_model("paper")  # built once, never run
    assert sum(p.numel() for p in full.parameters()) == PAPER_PARAMS
    lrn = [m for m in full.modules() if type(m).__name__ == "LocalResponseNorm"]
    # torch divides alpha by n: 5 * 1e-4 here is the paper's alpha=1e-4 (k=2, beta=0.75).
    assert [(m.size, m.alpha, m.beta, m.k) for m in lrn] == [(5, 5e-4, 0.75, 2.0)] * 2
    convs = [m for m in full.modules() if type(m).__name__ == "Conv2d"]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    tiny = benchmark.torch_model("paper", **TINY)
    keras_tiny = alexnet_tf.create_model("paper", **TINY)
    assert sum(p.numel() for p in tiny.parameters()) == keras_tiny.count_params()


def test_model_benchmark_at_tiny_size():
    from benchmarks import model as benchmark

    r = benchmark.model("paper", batch_size=4, repeats=1, warmup=1, infer_batch_size=4,
                        latency_calls=2, matmul_sizes=(128,), **TINY)
    assert r["benchmark"] == "model" and r["image_size"] == 67 and r["batch_size"] == 4
    keras_side = r["keras"]
    for value in (keras_side["train"]["images_per_s"], keras_side["infer"]["images_per_s"],
                  keras_side["latency_ms"], keras_side["train_gflops_per_s"],
                  keras_side["fraction_of_matmul_peak"], r["matmul_fp32"]["peak_gflops"],
                  r["flops"]["forward_gflops_per_image"], r["flops"]["training_gflops_per_image"]):
        assert _positive(value), value
    assert keras_side["train_step"] == "alexnet_tf.task.ClassificationTask.train_step"
    assert r["machine"]["cpu_flags"] and r["machine"]["tensorflow"]
    assert "other_cores" in r["load"] or sys.platform != "linux"
    assert ("torch" in r) == _torch_imports()
    if _torch_imports():
        assert not r["torch"].get("error"), r["torch"].get("error")
        assert r["torch"]["info"]["params"] == r["params"]
        for key in ("train_keras_over_torch", "infer_keras_over_torch", "train_paired_median"):
            assert _positive(r["ratios"][key])
    json.dumps(r, allow_nan=False)


def test_profile_at_tiny_size():
    from benchmarks import profile as benchmark

    r = benchmark.profile("paper", batch_size=4, steps=1, warmup=1, top=5, **TINY)
    assert _positive(r["step_seconds"]) and _positive(r["op_ms_per_step"])
    assert 0 < len(r["top_ops"]) <= 5 and len(r["by_type"]) <= 5
    layers = {row["layer"] for row in r["by_layer"]}
    assert {"conv1", "conv2", "conv5", "fc6", "fc8", "norm1"} <= layers
    assert "optimizer update + weight decay" in layers
    assert abs(sum(row["share"] for row in r["by_layer"]) - 1) < 0.01


def test_input_benchmark_at_tiny_size(tmp_path):
    from benchmarks import input as benchmark

    r = benchmark.input_pipelines(num_images=8, batch_size=4, repeats=1, warmup=0,
                                  image_size=67, data_dir=str(tmp_path))
    assert set(r["sources"]) == {"jpeg", "stored256", "tfrecord"}
    for source, rows in r["sources"].items():
        assert set(rows) == {"plain", "project", "project_on_device"}
        for name, row in rows.items():
            assert _positive(row["images_per_s"]), (source, name)
            if name != "plain":
                assert _positive(row["ratio_vs_plain"])
    assert r["images"]["image_size"] == {"jpeg": [500, 375], "stored256": [341, 256]}
    json.dumps(r, allow_nan=False)


def test_cli_prints_parseable_json(tmp_path):
    out = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "benchmark.py"), "--benchmark=model",
         "--batch_size=2", "--width=0.125", "--image_size=67", "--repeats=1", "--warmup=0",
         "--infer_batch_size=2", "--latency_calls=1", "--matmul_sizes=64", "--nopeer",
         f"--json={out}"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "model" and "keras train" not in done.stdout
    assert "keras" in done.stdout and result == json.loads(out.read_text())
    assert "torch" not in result


def test_cli_runs_from_any_directory(tmp_path):
    # benchmarks/ is not installed: the tool finds it from its own path, and its pinned
    # input worker (python -m benchmarks.input) from the repository root, wherever
    # the tool is started.
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("CPU pinning needs Linux")
    tool = str(REPO_ROOT / "tools" / "benchmark.py")
    done = subprocess.run([sys.executable, tool, "--help"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert "--benchmark" in done.stdout and "--scaling" in done.stdout, done.stderr[-3000:]
    cpu = min(os.sched_getaffinity(0))
    done = subprocess.run(
        [sys.executable, tool, "--benchmark=input", "--scaling", f"--cpu_sets={cpu}",
         "--source=stored256", "--pipelines=plain", "--num_images=4", "--batch_size=4",
         "--image_size=67", "--repeats=1", "--warmup=0", f"--data_dir={tmp_path / 'images'}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "input_scaling"
    assert _positive(result["table"][str(cpu)]["pipelines"]["stored256/plain"]["images_per_s"])
