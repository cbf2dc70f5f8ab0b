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
                        latency_calls=2, matmul_sizes=(128,), mixed_precision="bfloat16",
                        **TINY)
    assert r["benchmark"] == "model" and r["image_size"] == 67 and r["batch_size"] == 4
    keras_side = r["keras"]
    matmul = r["matmul"]
    for value in (keras_side["train"]["images_per_s"], keras_side["infer"]["images_per_s"],
                  keras_side["latency_ms"], keras_side["train_gflops_per_s"],
                  keras_side["fraction_of_matmul_peak"],
                  keras_side["fraction_of_float32_matmul_peak"], matmul["peak_gflops"],
                  matmul["precisions"]["float32"]["peak_gflops"],
                  r["flops"]["forward_gflops_per_image"], r["flops"]["training_gflops_per_image"]):
        assert _positive(value), value
    # The peak is bfloat16's, float32's beside it, each timed by TF and (with torch) PyTorch.
    assert matmul["precision"] == "bfloat16" and list(matmul["precisions"]) == [
        "bfloat16", "float32"]
    assert matmul["peak_gflops"] == matmul["precisions"]["bfloat16"]["peak_gflops"]
    for entry in matmul["precisions"].values():
        assert ("torch" in entry) == _torch_imports() and "tf" in entry
    assert keras_side["train_step"] == "alexnet_tf.task.ClassificationTask.train_step"
    assert r["machine"]["cpu_flags"] and r["machine"]["tensorflow"] and r["machine"]["cpu_kind"]
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
    assert set(r["sources"]) == {"jpeg", "stored256", "tfrecord", "raw256"}
    for source, rows in r["sources"].items():
        assert set(rows) == {"plain", "project", "project_on_device"}
        for name, row in rows.items():
            assert _positive(row["images_per_s"]), (source, name)
            if name != "plain":
                assert _positive(row["ratio_vs_plain"])
    assert r["images"]["image_size"] == {"jpeg": [500, 375], "stored256": [341, 256],
                                         "raw256": [256, 256]}
    assert r["images"]["mean_kb"]["raw256"] == 192.0  # 256 * 256 * 3 bytes
    target = r["raw_target"]
    assert target["value"] == pytest.approx(
        r["sources"]["raw256"]["project_on_device"]["images_per_s"]
        / r["sources"]["stored256"]["project_on_device"]["images_per_s"])
    assert target["target"] == 4.0 and target["met"] is (target["value"] >= 4.0)
    json.dumps(r, allow_nan=False)


def test_input_benchmark_through_one_service_worker_at_tiny_size(tmp_path):
    # "service_on_device": the project's training stream from one tf.data service worker
    # (a subprocess pinned to the CPUs given), read and finished here.
    from benchmarks import input as benchmark

    r = benchmark.input_pipelines(sources=["raw256"], pipelines=["plain", "service_on_device"],
                                  num_images=8, batch_size=4, repeats=1, warmup=0,
                                  image_size=67, data_dir=str(tmp_path), worker_cpus=[0])
    row = r["sources"]["raw256"]["service_on_device"]
    assert _positive(row["images_per_s"]) and _positive(row["ratio_vs_plain"])
    assert r["service_worker_cpus"] == "0"
    assert "worker at" in (tmp_path / "worker.log").read_text()


def test_raw_stages_at_tiny_size(tmp_path):
    from benchmarks import input as benchmark

    benchmark.write_test_images(str(tmp_path), 8, sources=("raw256",))
    r = benchmark.raw_stages(str(tmp_path), batch_size=4, repeats=1)
    assert list(r["stages"])[0] == "read the shards"
    assert list(r["stages"])[-1] == "make_dataset (the package)"
    assert all(_positive(row["images_per_s"]) for row in r["stages"].values())
    json.dumps(r, allow_nan=False)


def test_the_raw_target_needs_both_sources():
    from benchmarks import input as benchmark

    row = lambda rate: {"project_on_device": {"images_per_s": rate}}  # noqa: E731
    assert benchmark.raw_target({"raw256": row(900.0)}) is None
    t = benchmark.raw_target({"raw256": row(900.0), "stored256": row(200.0)})
    assert t["value"] == 4.5 and t["met"] is True
    assert benchmark.raw_target({"raw256": row(700.0), "stored256": row(200.0)})["met"] is False


def test_cli_prints_parseable_json(tmp_path):
    out = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "benchmark.py"), "--benchmark=model",
         "--batch_size=2", "--width=0.125", "--image_size=67", "--repeats=1", "--warmup=0",
         "--infer_batch_size=2", "--latency_calls=1", "--matmul_sizes=64", "--nopeer",
         "--notorch_matmul", f"--json={out}"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "model" and "keras train" not in done.stdout
    assert "keras" in done.stdout and result == json.loads(out.read_text())
    assert "torch" not in result
    # Without PyTorch's matmul the float32 peak is TF's, and the report says so.
    matmul = result["matmul"]
    assert matmul["precision"] == "float32" and matmul["peak_framework"] == "tf"
    assert list(matmul["precisions"]) == ["float32"]
    assert "the peak is TF's" in matmul["torch_status"] and "the peak is TF's" in done.stdout
    assert "of FP32 peak" in done.stdout


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


# ------------------------------------------------------- the matmul peak, on fixed inputs

# /proc/cpuinfo "flags" lines of the two CPU kinds the figures come from (abridged).
SAPPHIRE_RAPIDS = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8481C\n"
                   "flags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512_vnni avx512_bf16 "
                   "avx512_fp16 amx_bf16 amx_tile amx_int8 avx_vnni\n")
EPYC = ("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 fma avx2 avx512f "
        "avx512dq avx512_bf16 avx512_vnni avx512_bitalg\n")


def test_cpu_flags_name_amx_where_present():
    from benchmarks import machine

    flags = machine.parse_cpu_flags(SAPPHIRE_RAPIDS)
    assert flags == ("avx2 avx512f avx512_bf16 avx512_fp16 avx512_vnni amx_bf16 amx_tile "
                     "amx_int8 fma")
    assert "no AMX" not in flags and machine.cpu_kind(flags) == "AMX"


def test_cpu_flags_say_no_amx_where_absent():
    from benchmarks import machine

    flags = machine.parse_cpu_flags(EPYC)
    assert flags == "avx2 avx512f avx512_bf16 avx512_vnni fma; no AMX"
    assert machine.cpu_kind(flags) == "AVX512-BF16"
    assert machine.parse_cpu_flags("flags\t: sse2 avx avx2 fma\n") == "avx2 fma; no AMX"
    assert machine.cpu_kind("avx2 fma; no AMX") == "AVX2"
    assert machine.parse_cpu_flags("processor\t: 0\n").startswith("none of avx2,")


def _round(bf16_tf, bf16_torch, fp32_tf, fp32_torch, **timings):
    """One round's record as `model` writes it: GFLOP/s per precision, framework and n."""
    return {"matmul_gflops": {"bfloat16": {"tf": bf16_tf, "torch": bf16_torch},
                              "float32": {"tf": fp32_tf, "torch": fp32_torch}},
            "other_cores": 0.0, **timings}


# Three rounds shaped like issue 16's AMX figures: bfloat16 PyTorch > TF > float32.
ROUNDS = [
    _round({"2048": 900.0, "4096": 1010.0}, {"2048": 1300.0, "4096": 1500.0},
           {"2048": 290.0, "4096": 300.0}, {"2048": 280.0, "4096": 310.0},
           keras_train=0.5, keras_infer=0.5, keras_latency=0.03),
    _round({"2048": 950.0, "4096": 1020.0}, {"2048": 1350.0, "4096": 1600.0},
           {"2048": 300.0, "4096": 340.0}, {"2048": 290.0, "4096": 320.0},
           keras_train=0.4, keras_infer=0.5, keras_latency=0.03),
    _round({"2048": 920.0, "4096": 1000.0}, {"2048": 1400.0, "4096": 1550.0},
           {"2048": 295.0, "4096": 330.0}, {"2048": 300.0, "4096": 315.0},
           keras_train=0.6, keras_infer=0.5, keras_latency=0.03),
]


def test_peak_is_the_runs_precision_and_the_higher_framework():
    from benchmarks import model as benchmark

    assert benchmark.matmul_precisions(None) == ["float32"]
    assert benchmark.matmul_precisions("bfloat16") == ["bfloat16", "float32"]
    assert benchmark.matmul_precisions("float16") == ["float16", "float32"]
    peaks = benchmark.matmul_peaks(ROUNDS, "bfloat16")
    bf16, fp32 = peaks["precisions"]["bfloat16"], peaks["precisions"]["float32"]
    # Medians per n over the rounds; a framework's figure is its best n.
    assert bf16["tf"]["sizes"]["4096"]["gflops_median"] == 1010.0
    assert bf16["tf"]["sizes"]["4096"]["gflops"] == [1010.0, 1020.0, 1000.0]
    assert (bf16["tf"]["peak_gflops"], bf16["tf"]["peak_size"]) == (1010.0, 4096)
    assert (bf16["torch"]["peak_gflops"], bf16["torch"]["peak_size"]) == (1550.0, 4096)
    # The peak of a precision is the higher framework's; the run's is its precision's.
    assert (bf16["peak_gflops"], bf16["peak_framework"]) == (1550.0, "torch")
    assert (fp32["peak_gflops"], fp32["peak_framework"]) == (330.0, "tf")
    assert (peaks["precision"], peaks["peak_gflops"], peaks["peak_framework"],
            peaks["peak_size"]) == ("bfloat16", 1550.0, "torch", 4096)
    fp32_run = benchmark.matmul_peaks(ROUNDS, "float32")
    assert (fp32_run["peak_gflops"], fp32_run["peak_framework"]) == (330.0, "tf")


def test_peak_is_tfs_without_torch():
    from benchmarks import model as benchmark

    rounds = [_round({"4096": v}, {}, {"4096": v / 3}, {}) for v in (400.0, 420.0, 410.0)]
    peaks = benchmark.matmul_peaks(rounds, "bfloat16")
    assert (peaks["peak_gflops"], peaks["peak_framework"]) == (410.0, "tf")
    assert all("torch" not in entry for entry in peaks["precisions"].values())


def test_fraction_of_peak_divides_by_the_runs_precisions_peak():
    from benchmarks import model as benchmark

    train_gflops = 4.0  # per image
    r = benchmark._model_figures(ROUNDS, 32, 128, train_gflops, "bfloat16")
    keras_side = r["keras"]
    assert keras_side["train"]["images_per_s"] == 32 / 0.5
    achieved = 32 / 0.5 * train_gflops  # 256 GFLOP/s
    assert keras_side["train_gflops_per_s"] == achieved
    assert keras_side["fraction_of_matmul_peak"] == achieved / 1550.0
    assert keras_side["fraction_of_float32_matmul_peak"] == achieved / 330.0
    assert r["matmul"]["compute_limit_train_images_per_s"] == 1550.0 / train_gflops
    fp32 = benchmark._model_figures(ROUNDS, 32, 128, train_gflops, "float32")["keras"]
    assert fp32["fraction_of_matmul_peak"] == achieved / 330.0
    assert "fraction_of_float32_matmul_peak" not in fp32


def test_matmul_figures_keep_their_json_keys():
    from benchmarks import model as benchmark

    r = benchmark._model_figures(ROUNDS, 32, 128, 4.0, "bfloat16")
    assert set(r) == {"matmul", "keras"}
    assert set(r["matmul"]) == {"precision", "peak_gflops", "peak_framework", "peak_size",
                                "precisions", "compute_limit_train_images_per_s"}
    for entry in r["matmul"]["precisions"].values():
        assert set(entry) == {"tf", "torch", "peak_gflops", "peak_framework", "peak_size"}
        for framework in ("tf", "torch"):
            assert set(entry[framework]) == {"sizes", "peak_gflops", "peak_size"}
            assert set(entry[framework]["sizes"]) == {"2048", "4096"}
    assert {"fraction_of_matmul_peak", "fraction_of_float32_matmul_peak",
            "train_gflops_per_s"} <= set(r["keras"])
    json.dumps(r, allow_nan=False)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_torch_matmul_times_the_precision_asked(dtype):
    if not _torch_imports():
        pytest.skip("torch is not installed")
    from benchmarks import torch_peer

    m = torch_peer.TorchMatmul(64, dtype)
    assert str(m.a.dtype) == f"torch.{dtype}" and tuple(m.b.shape) == (64, 64)
    assert _positive(m.gflops(m()))


# ------------------------------------------ the serving benchmark (issue 16), fixed inputs


def _serving_round(keras, export, export_bytes, keras_pixels, latency):
    """One round's record as `serving` writes it: seconds per batch of each contender,
    and (keras, export_pixels) median batch-1 seconds."""
    return {"keras_infer": keras, "export_pixels_infer": export,
            "export_bytes_infer": export_bytes, "keras_pixels_infer": keras_pixels,
            "keras_latency": latency[0], "export_pixels_latency": latency[1],
            "export_bytes_latency": 0.02, "keras_pixels_latency": 0.0105, "other_cores": 0.0}


SERVING_ROUNDS = [
    _serving_round(0.10, 0.11, 0.30, 0.105, (0.010, 0.009)),
    _serving_round(0.12, 0.12, 0.32, 0.110, (0.011, 0.012)),
    _serving_round(0.11, 0.13, 0.40, 0.115, (0.012, 0.011)),
]


def test_serving_ratios_and_targets_from_medians():
    from benchmarks import serving as benchmark

    r = benchmark.serving_figures(SERVING_ROUNDS, 32)
    keras_side, export_side = r["figures"]["keras"], r["figures"]["export_pixels"]
    assert keras_side["infer"]["seconds_median"] == 0.11
    assert keras_side["infer"]["images_per_s"] == pytest.approx(32 / 0.11)
    assert export_side["infer"]["images_per_s"] == pytest.approx(32 / 0.12)
    assert keras_side["latency_ms"] == pytest.approx(11.0)
    q = r["ratios"]
    # export/in-memory images/s from the medians; the paired median of per-round ratios.
    assert q["throughput_export_over_keras"] == pytest.approx(0.11 / 0.12)
    assert q["throughput_export_over_keras_paired"] == pytest.approx(0.10 / 0.11)
    # in-memory/export latency: equal medians (11 ms each) meet "no worse".
    assert q["latency_keras_over_export"] == pytest.approx(1.0)
    assert q["latency_keras_over_export_paired"] == pytest.approx(0.012 / 0.011)
    assert q["throughput_export_bytes_over_keras"] == pytest.approx(0.11 / 0.32)
    assert q["throughput_keras_pixels_over_keras"] == pytest.approx(0.11 / 0.11)
    assert q["throughput_export_over_keras_pixels"] == pytest.approx(0.11 / 0.12)
    # The batch-1 latency split the same way: in-memory 11 ms, behind the serving path
    # 10.5 ms (every round's), exported 11 ms.
    assert q["latency_keras_over_keras_pixels"] == pytest.approx(11.0 / 10.5)
    assert q["latency_keras_pixels_over_export"] == pytest.approx(10.5 / 11.0)
    t = r["targets"]
    assert t["throughput"]["met"] is True and t["throughput"]["target"] == 0.9
    assert t["throughput"]["at_target_batch"] and t["latency"]["met"] is True
    assert t["informative_only"] is False


def test_serving_targets_not_met_missing_and_informative():
    from benchmarks import serving as benchmark

    slow = [_serving_round(0.10, 0.12, 0.3, 0.1, (0.010, 0.0101)) for _ in range(3)]
    t = benchmark.serving_figures(slow, 8, informative=True)["targets"]
    # 0.10/0.12 = 0.83 < 0.9; 10 ms against 10.1 ms is worse, however slightly.
    assert t["throughput"]["met"] is False and t["latency"]["met"] is False
    assert t["throughput"]["value"] == pytest.approx(0.10 / 0.12)
    assert not t["throughput"]["at_target_batch"] and t["throughput"]["batch_size"] == 8
    assert t["informative_only"] is True
    # Without the export's figures there is no verdict (None), not a False one.
    keras_only = [{"keras_infer": 0.1, "keras_latency": 0.01}]
    r = benchmark.serving_figures(keras_only, 32)
    assert set(r["figures"]) == {"keras"}
    assert r["targets"]["throughput"]["met"] is None and r["targets"]["latency"]["met"] is None
    assert "throughput_keras_pixels_over_keras" not in r["ratios"]


def test_serving_figures_keep_their_json_keys():
    from benchmarks import serving as benchmark

    r = benchmark.serving_figures(SERVING_ROUNDS, 32)
    assert set(r) == {"figures", "ratios", "targets"}
    assert set(r["figures"]) == {"keras", "export_pixels", "export_bytes", "keras_pixels"}
    for side in r["figures"].values():
        assert set(side) == {"infer", "latency_ms"}
        assert set(side["infer"]) == {"images_per_s", "seconds_median", "seconds"}
    assert set(r["ratios"]) == {
        "throughput_export_over_keras", "throughput_export_over_keras_paired",
        "latency_keras_over_export", "latency_keras_over_export_paired",
        "throughput_export_bytes_over_keras", "latency_keras_over_export_bytes",
        "throughput_keras_pixels_over_keras", "throughput_export_over_keras_pixels",
        "latency_keras_over_keras_pixels", "latency_keras_pixels_over_export"}
    assert set(r["targets"]) == {"throughput", "latency", "informative_only"}
    assert set(r["targets"]["latency"]) == {"what", "value", "paired", "target", "met"}
    assert set(r["targets"]["throughput"]) == {"what", "value", "paired", "target", "met",
                                               "batch_size", "at_target_batch"}
    json.dumps(r, allow_nan=False)


def test_serving_agreement_catches_other_outputs():
    import numpy as np

    from benchmarks import serving as benchmark

    logits = np.array([[0.5, -1.0, 2.0], [0.0, 0.1, -0.2]], np.float32)
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    same = benchmark.compare_outputs(probabilities, logits)
    assert same["within_tolerance"] and same["same_top1"]
    assert same["max_abs_probability_diff"] < 1e-6
    # The model fed other inputs (e.g. unnormalised pixels): far off, another top-1.
    other = benchmark.compare_outputs(probabilities, logits[:, ::-1])
    assert not other["within_tolerance"] and not other["same_top1"]
    # A bfloat16 export is held to the export's stated probability tolerance, with no
    # bound on log-probabilities: 0.005 off is within 0.02, not within 1e-5.
    from alexnet_tf.export import BFLOAT16_PROBABILITY_TOLERANCE
    rounded = probabilities + np.float32(0.005) * np.array([[1, -1, 0], [-1, 0, 1]])
    bf16 = benchmark.compare_outputs(rounded, logits, tolerance=BFLOAT16_PROBABILITY_TOLERANCE,
                                     log_tolerance=None)
    assert bf16["within_tolerance"] and bf16["tolerance"] == 0.02
    assert bf16["log_tolerance"] is None
    assert not benchmark.compare_outputs(rounded, logits)["within_tolerance"]
    import tensorflow as tf

    # Peaked logits: probabilities that underflow to 0 on both sides agree (no -inf log
    # on one side), and the result is plain JSON.
    peaked = np.array([[0.0, -200.0, 300.0]], np.float32)
    exported = tf.nn.softmax(peaked).numpy()
    assert exported[0, 0] == 0.0
    agreed = benchmark.compare_outputs(exported, peaked)
    assert agreed["within_tolerance"] and agreed["max_abs_log_probability_diff"] == 0.0
    json.dumps(agreed, allow_nan=False)
    # A probability that is 0 on one side only is caught by the probabilities.
    assert not benchmark.compare_outputs([[0.0, 1.0]], [[0.0, 0.0]])["within_tolerance"]
    far = probabilities + np.float32(0.03) * np.array([[1, -1, 0], [-1, 0, 1]])
    assert not benchmark.compare_outputs(far, logits, tolerance=BFLOAT16_PROBABILITY_TOLERANCE,
                                         log_tolerance=None)["within_tolerance"]


def test_serving_verdicts_name_their_caveats():
    from benchmarks import serving as benchmark

    assert benchmark.verdict_caveats(5, "paper", 227, 1.0, 1000) == []
    one, small = benchmark.verdict_caveats(1, "paper", 67, 0.125, 10)
    assert one.startswith("1 timed round: too few for a verdict (at least 3")
    assert "this run timed paper at 67 pixels, width 0.125, 10 classes" in small
    informative = benchmark.verdict_caveats(3, "paper", 227, 1.0, 1000, informative=True)
    assert informative == ["informative only: the in-memory model ran another precision "
                           "than the float32 export"]
    # No warm-up round, and rounds during which the machine was busy.
    cold, busy = benchmark.verdict_caveats(5, "paper", 227, 1.0, 1000, warmup=0,
                                           quiet_rounds=3)
    assert cold.startswith("no warm-up round (--warmup=0): the first timed calls include "
                           "tracing")
    assert busy == ("other processes used more than 0.25 cores in 2 of the 5 timed rounds: "
                    "the machine was not quiet (--wait_quiet=30 waits for it)")
    assert benchmark.verdict_caveats(5, "paper", 227, 1.0, 1000, quiet_rounds=5) == []
    assert benchmark.verdict_caveats(5, "paper", 227, 1.0, 1000, quiet_rounds=None) == []


def _printed_by_the_tool(printer: str, result: dict, tmp_path) -> str:
    """What tools/benchmark.py's ``printer`` prints for ``result``, in a process of its
    own: the tool defines absl flags at import, which would clash with other tools'
    flags of the same name imported into this test process."""
    path = tmp_path / "result.json"
    path.write_text(json.dumps(result))
    code = ("import importlib.util, json, sys\n"
            "spec = importlib.util.spec_from_file_location('benchmark_tool', sys.argv[1])\n"
            "tool = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(tool)\n"
            "getattr(tool, sys.argv[2])(json.load(open(sys.argv[3])))\n")
    done = subprocess.run([sys.executable, "-c", code, str(REPO_ROOT / "tools" / "benchmark.py"),
                           printer, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_serving_printout_names_both_exports_the_tolerance_and_the_caveats(tmp_path):
    from benchmarks import serving as benchmark

    rounds = [dict(r, export_pixels_bf16_infer=0.08, export_pixels_bf16_latency=0.008)
              for r in SERVING_ROUNDS[:1]]
    agreement = benchmark.compare_outputs([[0.5, 0.5]], [[0.0, 0.0]])
    result = {
        "variant": "paper", "image_size": 67, "resize_size": 76, "width": 0.125,
        "num_classes": 10, "params": 1000, "device": "CPU", "infer_batch_size": 32,
        "latency_calls": 2, "keras_compute_dtype": "float32", "mixed_precision": "none",
        "export_compute_dtype": "float32", "export_bfloat16": True, "repeats": 1,
        "machine": {"cpu_model": "CPU", "cpu_kind": "AVX2", "usable_cores": 2, "cores": 2,
                    "cpu_flags": "avx2", "tensorflow": "2", "keras": "3",
                    "tf_inter_op_threads": "2", "tf_intra_op_threads": "2"},
        "export": {"signatures": {"pixels": "pixels", "bytes": "serving_default"},
                   "pixels_shape": [76, 76, 3], "jpeg_size": [500, 375], "jpeg_mean_kb": 1,
                   "grouped_conv": {"export": "split", "keras": "native"},
                   "export_seconds": 1, "load_seconds": 1, "bfloat16_export_seconds": 2.5},
        "agreement": agreement,
        "agreement_bfloat16_export": benchmark.compare_outputs(
            [[0.51, 0.49]], [[0.0, 0.0]], tolerance=0.02, log_tolerance=None),
        "load": {"loadavg_1min_start": 0, "loadavg_1min_end": 0, "wall_seconds": 1},
        "caveats": benchmark.verdict_caveats(1, "paper", 67, 0.125, 10),
        **benchmark.serving_figures(rounds, 32),
    }
    out = _printed_by_the_tool("_print_serving", result, tmp_path)
    assert "export float32 and a bfloat16 export (--export_bfloat16)" in out
    assert "the bfloat16 export in 2.5 s" in out
    assert "agreement on the batch's 32 images (untrained weights: a check of the " \
           "computation, not of accuracy)" in out
    assert "same top-1 True (within the export's stated 0.02)" in out
    assert "bfloat16 export against the float32 export (> 1: bfloat16 faster)" in out
    assert "breakdown of batch-1 latency: in-memory 10.00 ms, + serving path +0.50 ms, + " \
           "saved graph -1.50 ms = export 9.00 ms" in out
    assert "(see the caveats below)" in out
    assert "caveat on the verdicts: 1 timed round: too few for a verdict" in out
    assert "caveat on the verdicts: the targets are stated for the paper network" in out


def test_serving_benchmark_at_tiny_size():
    from benchmarks import serving as benchmark

    # 10 classes: probabilities near 0.1, so the 1e-5 agreement is a sharp check.
    r = benchmark.serving("paper", num_classes=10, infer_batch_size=2, repeats=1, warmup=0,
                          latency_calls=2, **TINY)
    assert r["benchmark"] == "serving" and r["image_size"] == 67 and r["infer_batch_size"] == 2
    assert r["export"]["signatures"] == {"pixels": "pixels", "bytes": "serving_default"}
    assert r["export"]["grouped_conv"]["export"] == "split"
    assert r["export"]["pixels_shape"] == [r["resize_size"], r["resize_size"], 3]
    # Like with like: the export's probabilities on the pixels are the in-memory model's
    # softmax on their crops, within 1e-5.
    a = r["agreement"]
    assert a["within_tolerance"] and a["same_top1"], a
    assert a["max_abs_probability_diff"] <= 1e-5 and a["max_abs_log_probability_diff"] <= 1e-5
    assert set(r["figures"]) == {"keras", "export_pixels", "export_bytes", "keras_pixels"}
    for side in r["figures"].values():
        assert _positive(side["infer"]["images_per_s"]) and _positive(side["latency_ms"])
    for key in ("throughput_export_over_keras", "latency_keras_over_export",
                "throughput_export_bytes_over_keras"):
        assert _positive(r["ratios"][key])
    assert r["targets"]["throughput"]["met"] in (True, False)
    assert r["machine"]["cpu_flags"] and r["export_compute_dtype"] == "float32"
    assert r["export_bfloat16"] is False
    assert "note" not in r
    # One round without warm-up of a tiny network: the verdicts say they do not stand.
    assert [c.split(":")[0] for c in r["caveats"] if "cores in" not in c] == [
        "1 timed round", "no warm-up round (--warmup=0)",
        "the targets are stated for the paper network at 227 pixels, width 1, "
        "1000 classes; this run timed paper at 67 pixels, width 0.125, 10 classes"]
    json.dumps(r, allow_nan=False)


def test_the_bfloat16_export_is_timed_against_the_float32_export():
    from benchmarks import serving as benchmark

    rounds = [dict(r, export_pixels_bf16_infer=0.08, export_pixels_bf16_latency=latency)
              for r, latency in zip(SERVING_ROUNDS, (0.006, 0.008, 0.014))]
    r = benchmark.serving_figures(rounds, 32)
    q, t = r["ratios"], r["targets"]
    float32_latency = r["figures"]["export_pixels"]["latency_ms"] / 1000
    assert q["latency_export_over_export_bf16"] == pytest.approx(float32_latency / 0.008)
    assert q["throughput_export_bf16_over_export"] == pytest.approx(0.12 / 0.08)
    assert t["bfloat16_latency"]["met"] is (float32_latency / 0.008 >= 1)
    assert "bfloat16_latency" not in benchmark.serving_figures(SERVING_ROUNDS, 32)["targets"]


@pytest.mark.parametrize("args, says", [
    (["--benchmark=serving", "--variant=bogus"], "Unknown AlexNet variant 'bogus'"),
    (["--benchmark=serving", "--image_size=30"], "image_size=30 is too small for variant 'paper'"),
    (["--benchmark=serving", "--infer_batch_size=0"], "flag --infer_batch_size=0: 0 is not a "
                                                      "positive integer"),
    (["--benchmark=model", "--repeats=0"], "flag --repeats=0: 0 is not a positive integer"),
    (["--benchmark=serving", "--json=/proc/no_such_dir/x.json"], "--json='/proc/no_such_dir/x."
                                                                 "json' cannot be written"),
])
def test_the_tool_refuses_bad_flags_in_one_line_before_running(args, says):
    done = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "benchmark.py"), *args],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert done.returncode in (1, 2), done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("benchmark.py: error:")]
    assert len(lines) == 1 and says in lines[0], done.stderr[-2000:]
    assert "Traceback" not in done.stderr
