r"""Benchmarks behind docs/BENCHMARKS.md; prints a table and one JSON line (the last line).

    python tools/benchmark.py --benchmark=model --variant=paper --batch_size=32 [--xla]
        [--image_size=227] [--repeats=5] [--warmup=2] [--mixed_precision=bfloat16|float16]
        [--json=out.json]
    python tools/benchmark.py --benchmark=profile --variant=paper --batch_size=32
    python tools/benchmark.py --benchmark=input [--source=jpeg,stored256,tfrecord,raw256]
        [--num_images=512] [--batch_size=128] [--seconds=0] [--scaling]
        [--pipelines=plain,project,project_on_device,service_on_device --worker_cpus=0]
    python tools/benchmark.py --benchmark=input --raw_stages --cpus=0
    python tools/benchmark.py --benchmark=grouped_conv [--repeats=5]
    python tools/benchmark.py --benchmark=serving --variant=paper [--infer_batch_size=32]
        [--latency_calls=10] [--export_bfloat16] [--mixed_precision=bfloat16]
        [--noserving_breakdown]
    TF_ENABLE_ONEDNN_OPTS=0 python tools/benchmark.py --benchmark=grouped_conv

model: training images/s (the training loop's step: forward, backward, coupled weight
  decay, SGD momentum), inference images/s at --infer_batch_size, batch-1 latency, FLOPs
  per image, the matmul peak of the run's precision (float32, or --mixed_precision's
  bfloat16/float16, with float32's beside it), each the higher of TF's and PyTorch's
  n x n matmul measured in the same run, and the fraction of it the training reaches; the
  same network in PyTorch (nn.Conv2d(groups=2), nn.LocalResponseNorm) when torch is
  installed (pip install -e '.[bench]'), in a worker process, interleaved round by round.
profile: a tf.profiler trace of --profile_steps training steps: top ops, op types, layers.
input: images/s of a plain tf.data paper pipeline and of alexnet_tf's (per image, and with
  augment_on_device), on generated 500x375 JPEGs, the same stored at shorter side 256, and
  TFRecords of those, and raw 256x256 records. --scaling reruns it pinned to 1, 2, 4, ...
  cores (images/s per core); --cpus=0 pins the whole run (like taskset -c 0). The
  pipeline service_on_device: the training stream from one tf.data service worker pinned
  to --worker_cpus, read here. --raw_stages: the raw source's pipeline stage by stage.
serving: the exported SavedModel (what TF Serving runs; exported by alexnet_tf.export)
  beside the in-memory Keras model, same images, interleaved round by round: images/s at
  --infer_batch_size (default 32) and batch-1 latency of the export's pixels signature
  and of model(x), the serving_default signature on JPEG bytes ("with decode"), the
  ratios and issue 16's targets (>= 90% of in-memory images/s at batch 32, batch-1
  latency no worse), with the caveats that keep a verdict from standing.
  --export_bfloat16 adds the export's bfloat16 option (alexnet-export
  --compute_dtype=bfloat16) beside the float32 export, and its target (batch-1 latency
  no worse than the float32 export's). --mixed_precision applies to the in-memory model
  only (the exports compared with it are float32): informative only.
grouped_conv: forward+backward time of the paper's conv2 (27x27x96 -> 256, 5x5, 2 groups,
  batch 32) for each compute path of `GroupedConv2D` and for Keras' Conv2D(groups=2).
On a GPU machine the same commands use the GPU (TF and PyTorch alike).
The measurements are in benchmarks/ beside the package (not installed), one module each.
"""

import json
import os
import shutil
import sys
import tempfile

from absl import app, flags, logging

# The harness (benchmarks/) lives beside the package and is not installed: put the
# repository root first on the path, whatever directory this is run from.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from alexnet_tf.cli import app as cli_app  # noqa: E402

_BENCHMARK = flags.DEFINE_enum("benchmark", "grouped_conv",
                               ["grouped_conv", "model", "profile", "input", "serving"], "What to measure.")
_VARIANT = flags.DEFINE_string("variant", "paper", "Model variant (alexnet_tf.VARIANTS).")
_BATCH = flags.DEFINE_integer("batch_size", None,
                              "Training batch (model/profile; default 32) or pipeline batch "
                              "(input; default 128).", lower_bound=1)
_IMAGE = flags.DEFINE_integer("image_size", None, "Input side; default: the variant's (227).")
_WIDTH = flags.DEFINE_float("width", 1.0, "Channel width multiplier.")
_CLASSES = flags.DEFINE_integer("num_classes", 1000, "Classes.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repetitions (the median is reported).",
                                lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup", None,
                               "Warm-up rounds, not timed (default 2 for model/profile, 1 "
                               "for input).", lower_bound=0)
_XLA = flags.DEFINE_bool("xla", False, "jit_compile the train step and inference (XLA).")
_MIXED = flags.DEFINE_enum("mixed_precision", "none", ["none", "bfloat16", "float16"],
                           "Keras mixed-precision policy (and torch.autocast for the peer).")
_INFER_BATCH = flags.DEFINE_integer("infer_batch_size", None,
                                    "Inference batch; default 128 (model), 32 (serving: "
                                    "issue 16's targets are at batch 32).", lower_bound=1)
_LATENCY_CALLS = flags.DEFINE_integer("latency_calls", 10, "Batch-1 calls per round.",
                                      lower_bound=1)
_MATMUL = flags.DEFINE_list("matmul_sizes", ["2048", "4096"],
                            "n of the n x n matmuls (the run's precision, and float32) whose "
                            "best median, TF's or PyTorch's, is the peak.")
_PEER = flags.DEFINE_bool("peer", True, "Run the PyTorch peer when torch is installed.")
_TORCH_MATMUL = flags.DEFINE_bool("torch_matmul", True,
                                  "Time torch.matmul beside TF's for the peak when torch is "
                                  "installed (also with --nopeer).")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 0, "torch.set_num_threads; 0: all "
                                      "usable cores.")
_INTER = flags.DEFINE_integer("inter_op_threads", 0, "TF inter-op threads; 0: TF's default.")
_INTRA = flags.DEFINE_integer("intra_op_threads", 0, "TF intra-op threads; 0: TF's default.")
_PROFILE_STEPS = flags.DEFINE_integer("profile_steps", 3, "Traced training steps (profile).")
_TOP = flags.DEFINE_integer("top", 15, "Rows of the profile's op tables.")
_LOGDIR = flags.DEFINE_string("logdir", None, "Keep the profile trace here (TensorBoard).")
_SOURCE = flags.DEFINE_list("source", ["jpeg", "stored256", "tfrecord", "raw256"],
                            "Input sources.")
_PIPELINES = flags.DEFINE_list("pipelines", ["plain", "project", "project_on_device"],
                               "Input pipelines.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 512, "Generated images (input).",
                                   lower_bound=1)
_SECONDS = flags.DEFINE_float("seconds", 0.0, "Minimum seconds per timed input window.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Keep/reuse the generated input images here.")
_WORKER_CPUS = flags.DEFINE_string(
    "worker_cpus", None, "Input, --pipelines=...,service_on_device: the CPUs of the tf.data "
    "service worker (e.g. 0); default: the first usable one. Leave the reader other cores "
    "(no --cpus), so that the figure is the worker's.")
_RAW_STAGES = flags.DEFINE_bool(
    "raw_stages", False, "Input: instead of the pipelines, the raw256 source's pipeline "
    "built up stage by stage (where a raw record's time goes).")
_SCALING = flags.DEFINE_bool("scaling", False, "Input: rerun pinned to 1, 2, 4, ... cores.")
_CPU_SETS = flags.DEFINE_list("cpu_sets", None,
                              "Input --scaling: CPU sets, each a taskset-style range, e.g. "
                              "0,0-1,0-3; default 1, 2, 4, ... cores.")
_CPUS = flags.DEFINE_string("cpus", None, "Pin this whole run to these CPUs (e.g. 0 or 0-3).")
_WAIT_QUIET = flags.DEFINE_float("wait_quiet", 0.0,
                                 "Before each round, wait up to this many seconds for other "
                                 "processes to use <= 0.25 cores (shared machines).")
_SERVING_BREAKDOWN = flags.DEFINE_bool(
    "serving_breakdown", True, "Serving: also time the in-memory model behind the export's "
    "pixels computation (splits the gap into preprocessing/heads and the saved graph).")
_EXPORT_BF16 = flags.DEFINE_bool(
    "export_bfloat16", False, "Serving: also export the same weights with "
    "--compute_dtype=bfloat16 and time its pixels signature beside the float32 export's.")
_JSON = flags.DEFINE_string("json", None, "Also write the JSON result to this file.")


def _fmt(value, spec=".1f"):
    return "-" if value is None else format(value, spec)


def _print_model(r):
    m = r["machine"]
    print(f"model {r['variant']}: batch {r['batch_size']}, {r['image_size']}x{r['image_size']}, "
          f"width {r['width']}, {r['params']:,} parameters, device {r['device']}, "
          f"XLA {'on' if r['xla'] else 'off'}, mixed precision {r['mixed_precision']}")
    print(f"machine: {m['cpu_model']} ({m['cpu_kind']}), {m['usable_cores']} of {m['cores']} "
          f"cores, flags {m['cpu_flags']}; TF {m['tensorflow']}, Keras {m['keras']}, torch "
          f"{m['torch']}; TF threads inter {m['tf_inter_op_threads']}, intra {m['tf_intra_op_threads']}")
    load = r["load"]
    print(f"load: other processes used {load.get('other_cores', '?')} cores on average "
          f"(steal {load.get('steal_cores', '?')}); load average {load['loadavg_1min_start']} "
          f"-> {load['loadavg_1min_end']}; {load['wall_seconds']} s")
    f = r["flops"]
    print(f"FLOPs per image: forward {f['forward_gflops_per_image']:.3f} G "
          f"({f['forward_macs_per_image'] / 1e9:.4f} G multiply-adds; TF profiler "
          f"{_fmt(f['profiler_forward_gflops_per_image'], '.3f')} G with bias/pool), training "
          f"{f['training_gflops_per_image']:.3f} G (3x forward: "
          f"{f['training_gflops_per_image_3x_forward']:.3f} G)")
    print(f"other processes' cores per timed round: {load.get('other_cores_per_round')}")
    status = r["matmul"]["torch_status"]
    _print_figures(r, f"all {r['repeats']} timed rounds", status)
    if r.get("quiet"):
        _print_figures(r["quiet"], f"the {r['quiet_rounds']} quiet rounds (other processes "
                                   f"<= 0.25 cores)", status)
    if "torch" in r and r["torch"].get("error"):
        print(f"PyTorch peer: {r['torch']['error']}")
    elif "torch" not in r:
        print("PyTorch peer: torch is not installed (pip install -e '.[bench]') or --nopeer")


_FRAMEWORK_NAMES = {"tf": "TF", "torch": "PyTorch"}


def _print_matmul(mm, torch_status):
    precision = mm["precision"]
    print("matmul GFLOP/s (median per n; a framework's figure is its best n):")
    for name, entry in mm["precisions"].items():
        parts = []
        for framework in ("tf", "torch"):
            side = entry.get(framework)
            sizes = ", ".join(f"{n}: {_fmt(v['gflops_median'])}"
                              for n, v in side["sizes"].items()) if side else "-"
            parts.append(f"{_FRAMEWORK_NAMES[framework]} {_fmt(side and side['peak_gflops'])} "
                         f"({sizes})")
        source = entry["peak_framework"]
        mark = "  <- the run's precision" if name == precision else ""
        print(f"  {name:9s} {'; '.join(parts)}; peak {_fmt(entry['peak_gflops'])} "
              f"({_FRAMEWORK_NAMES.get(source, '-')}, n={entry['peak_size']}){mark}")
    source = _FRAMEWORK_NAMES.get(mm["peak_framework"], "-")
    print(f"peak ({precision}) {_fmt(mm['peak_gflops'])} GFLOP/s, {source}'s -> compute limit "
          f"{_fmt(mm['compute_limit_train_images_per_s'])} training images/s; PyTorch "
          f"matmul: {torch_status}")


def _print_figures(r, title, torch_status):
    print(f"-- medians over {title}:")
    mm = r["matmul"]
    _print_matmul(mm, torch_status)
    precision = mm["precision"]
    fp32 = precision != "float32"
    short = {"float32": "FP32", "bfloat16": "BF16", "float16": "FP16"}
    header = f"of {short[precision]} peak"
    print(f"{'':8s} {'train img/s':>12s} {'infer img/s':>12s} {'latency ms':>11s} "
          f"{'train GFLOP/s':>14s} {header:>12s}" + (f" {'of FP32 peak':>12s}" if fp32 else ""))
    for name in ("keras", "torch"):
        side = r.get(name)
        if not side or not side.get("train"):
            continue
        fraction = side["fraction_of_matmul_peak"]
        line = (f"{name:8s} {_fmt(side['train']['images_per_s']):>12s} "
                f"{_fmt(side['infer']['images_per_s']):>12s} "
                f"{_fmt(side['latency_ms'], '.2f'):>11s} {_fmt(side['train_gflops_per_s']):>14s} "
                f"{_fmt(fraction and fraction * 100):>11s}%")
        if fp32:
            other = side.get("fraction_of_float32_matmul_peak")
            line += f" {_fmt(other and other * 100):>11s}%"
        print(line)
    ratios = r.get("ratios") or {}
    if ratios:
        print(f"Keras/PyTorch: training {_fmt(ratios['train_keras_over_torch'], '.2f')}x "
              f"(paired {_fmt(ratios['train_paired_median'], '.2f')}x), inference "
              f"{_fmt(ratios['infer_keras_over_torch'], '.2f')}x (paired "
              f"{_fmt(ratios['infer_paired_median'], '.2f')}x), latency PyTorch/Keras "
              f"{_fmt(ratios['latency_torch_over_keras'], '.2f')}x")


def _print_profile(r):
    print(f"profile {r['variant']}: batch {r['batch_size']}, {r['image_size']}x{r['image_size']}, "
          f"XLA {'on' if r['xla'] else 'off'}; step {r['step_seconds'] * 1000:.0f} ms traced "
          f"({r['train_images_per_s_traced']:.1f} img/s; untraced "
          f"{r['train_images_per_s_untraced']:.1f}); summed op time "
          f"{r['op_ms_per_step']:.0f} ms/step; other processes "
          f"{r['load'].get('other_cores', '?')} cores")
    print("(op times are summed over TF's inter-op threads; shares are of that sum)")
    print(f"{'op type':40s} {'ms/step':>9s} {'share':>7s}")
    for row in r["by_type"]:
        print(f"{row['type']:40s} {row['ms']:9.1f} {row['share'] * 100:6.1f}%")
    print(f"\n{'op':76s} {'type':34s} {'ms/step':>8s} {'share':>7s}")
    for row in r["top_ops"]:
        print(f"{row['op'][-76:]:76s} {row['type'][:34]:34s} {row['ms']:8.1f} "
              f"{row['share'] * 100:6.1f}%")
    print(f"\n{'layer':34s} {'fwd/update ms':>13s} {'backward ms':>12s} {'share':>7s} "
          f"{'GFLOP/img':>10s} {'~GFLOP/s':>9s}")
    for row in r["by_layer"]:
        print(f"{row['layer']:34s} {row['forward_ms']:13.1f} {row['backward_ms']:12.1f} "
              f"{row['share'] * 100:6.1f}% {_fmt(row.get('training_gflop_per_image'), '.3f'):>10s} "
              f"{_fmt(row.get('achieved_gflops_per_s')):>9s}")


def _print_input(r):
    m = r["machine"]
    print(f"input pipelines: {r['num_images']} generated images (mean "
          f"{r['images']['mean_kb']['jpeg']} KB at {r['images']['image_size']['jpeg']}, "
          f"{r['images']['mean_kb']['stored256']} KB stored at "
          f"{r['images']['image_size']['stored256']}, raw {r['images']['mean_kb']['raw256']} "
          f"KB at {r['images']['image_size']['raw256']}), batch {r['batch_size']}, crop "
          f"{r['image_size']}; {r['usable_cores']} usable cores ({m['cpu_flags']}); other "
          f"processes {r['load'].get('other_cores', '?')} cores")
    print(f"other processes' cores per timed round: {r['other_cores_per_round']}")
    _print_input_rows(r["sources"], "all timed rounds")
    if r.get("quiet"):
        _print_input_rows(r["quiet"], "quiet rounds only (other processes <= 0.25 cores)")
    t = r.get("raw_target")
    if t:
        verdict = {True: "met", False: "NOT met", None: "-"}[t["met"]]
        print(f"target {t['what']} >= {t['target']:g}: {_fmt(t['value'], '.2f')}x: {verdict}")


def _print_input_rows(sources, title):
    print(f"-- medians over {title}:")
    print(f"{'source':10s} {'pipeline':18s} {'images/s':>9s} {'vs plain':>9s} {'paired':>7s}  "
          f"samples")
    for source, rows in sources.items():
        for name, row in rows.items():
            ratio = row.get("ratio_vs_plain")
            paired = row.get("ratio_vs_plain_paired_median")
            print(f"{source:10s} {name:18s} {_fmt(row['images_per_s']):>9s} "
                  f"{_fmt(ratio, '.2f') + 'x' if ratio else '':>9s} "
                  f"{_fmt(paired, '.2f') + 'x' if paired else '':>7s}  {row['samples']}")


def _print_scaling(r):
    print(f"input scaling over CPU sets {r['cpu_sets']} ({r['rounds']} rounds, medians); "
          f"other processes {r['load'].get('other_cores', '?')} cores")
    print(f"{'cpus':8s} {'pipeline':30s} {'images/s':>9s} {'per core':>9s} {'efficiency':>11s}")
    for cpus, row in r["table"].items():
        for key, value in row["pipelines"].items():
            print(f"{cpus:8s} {key:30s} {_fmt(value['images_per_s']):>9s} "
                  f"{_fmt(value['images_per_s_per_core']):>9s} "
                  f"{_fmt(value['scaling_efficiency_vs_first'] * 100)}%")


def _print_grouped_conv(result):
    print(f"grouped conv fwd+bwd, input {result['shape']}, {result['kernel']}x{result['kernel']}, "
          f"{result['filters']} filters, {result['groups']} groups; TF {result['tensorflow']}; "
          f"CPU flags: {result['cpu_flags']}")
    seconds = result["seconds"]
    base = seconds.get("split")
    for name, value in seconds.items():
        if isinstance(value, float):
            ratio = f"{value / base:5.2f}x split" if isinstance(base, float) else ""
            print(f"  {name:22s} {value * 1000:9.1f} ms  {ratio}")
        else:
            print(f"  {name:22s} {value}")


_SERVING_ROWS = (("keras", "in-memory model(x)"), ("export_pixels", "export {pixels}"),
                 ("keras_pixels", "in-memory + export path"),
                 ("export_bytes", "export {bytes} (with decode)"),
                 ("export_pixels_bf16", "export {pixels}, bfloat16 export"))


def _print_serving(r):
    m, e = r["machine"], r["export"]
    print(f"serving {r['variant']}: {r['image_size']}x{r['image_size']} (resize "
          f"{r['resize_size']}), width {r['width']}, {r['num_classes']} classes, "
          f"{r['params']:,} parameters, device {r['device']}; batch {r['infer_batch_size']} "
          f"and 1 ({r['latency_calls']} calls per round); in-memory "
          f"{r['keras_compute_dtype']} (mixed precision {r['mixed_precision']}), export "
          f"{r['export_compute_dtype']}"
          + (" and a bfloat16 export (--export_bfloat16)" if r.get("export_bfloat16") else ""))
    print(f"machine: {m['cpu_model']} ({m['cpu_kind']}), {m['usable_cores']} of {m['cores']} "
          f"cores, flags {m['cpu_flags']}; TF {m['tensorflow']}, Keras {m['keras']}; TF "
          f"threads inter {m['tf_inter_op_threads']}, intra {m['tf_intra_op_threads']}")
    print(f"export: signatures {e['signatures']['pixels']} (uint8 pixels "
          f"{e['pixels_shape']}) and {e['signatures']['bytes']} (JPEG {e['jpeg_size'][0]}x"
          f"{e['jpeg_size'][1]}, {e['jpeg_mean_kb']} KB); grouped conv export "
          f"{e['grouped_conv']['export']}, in-memory {e['grouped_conv']['keras']}; exported "
          f"in {e['export_seconds']} s, loaded in {e['load_seconds']} s"
          + (f"; the bfloat16 export in {e['bfloat16_export_seconds']} s"
             if e.get("bfloat16_export_seconds") is not None else ""))
    a = r["agreement"]
    print(f"agreement on the batch's {r['infer_batch_size']} images (untrained weights: "
          f"a check of the computation, not of accuracy): max |probability diff| "
          f"{a['max_abs_probability_diff']:.2e}, max |log-probability diff| "
          f"{_fmt(a['max_abs_log_probability_diff'], '.2e')} (where both are above 0), "
          f"same top-1 {a['same_top1']} "
          f"({'within' if a['within_tolerance'] else 'NOT within'} {a['tolerance']:g})"
          + ("" if a["within_tolerance"] or r.get("note") else
             ": the export and the in-memory model do not compute the same function, so "
             "the figures compare unlike things"))
    if r.get("agreement_bfloat16_export"):
        b = r["agreement_bfloat16_export"]
        print(f"bfloat16 export against the in-memory model: max |probability diff| "
              f"{b['max_abs_probability_diff']:.2e}, same top-1 {b['same_top1']} "
              f"({'within' if b['within_tolerance'] else 'NOT within'} the export's stated "
              f"{b['tolerance']:g})")
    if r.get("note"):
        print(f"note: {r['note']}")
    load = r["load"]
    print(f"load: other processes used {load.get('other_cores', '?')} cores on average "
          f"(steal {load.get('steal_cores', '?')}); load average {load['loadavg_1min_start']} "
          f"-> {load['loadavg_1min_end']}; {load['wall_seconds']} s; per timed round "
          f"{load.get('other_cores_per_round')}")
    _print_serving_figures(r, f"all {r['repeats']} timed rounds")
    if r.get("quiet"):
        _print_serving_figures(r["quiet"], f"the {r['quiet_rounds']} quiet rounds (other "
                                           f"processes <= 0.25 cores)", r)
    for caveat in r.get("caveats", ()):
        print(f"caveat on the verdicts: {caveat}")


def _print_serving_figures(f, title, run=None):
    names = (run or f)["export"]["signatures"]
    print(f"-- medians over {title}:")
    print(f"{'':38s} {'img/s':>9s} {'latency ms':>11s}")
    for key, label in _SERVING_ROWS:
        side = f["figures"].get(key)
        if side:
            print(f"{label.format(**names):38s} {_fmt(side['infer']['images_per_s']):>9s} "
                  f"{_fmt(side['latency_ms'], '.2f'):>11s}")
    q = f["ratios"]
    print(f"export/in-memory images/s {_fmt(q['throughput_export_over_keras'], '.3f')} (paired "
          f"{_fmt(q['throughput_export_over_keras_paired'], '.3f')}); in-memory/export latency "
          f"{_fmt(q['latency_keras_over_export'], '.3f')} (paired "
          f"{_fmt(q['latency_keras_over_export_paired'], '.3f')}); with decode: images/s "
          f"{_fmt(q['throughput_export_bytes_over_keras'], '.3f')}, latency "
          f"{_fmt(q['latency_keras_over_export_bytes'], '.3f')} of in-memory's")
    if "throughput_keras_pixels_over_keras" in q:
        print(f"breakdown of images/s: serving path (preprocessing, heads) "
              f"{_fmt(q['throughput_keras_pixels_over_keras'], '.3f')}x, saved graph "
              f"{_fmt(q['throughput_export_over_keras_pixels'], '.3f')}x")
        ms = {k: f["figures"][k]["latency_ms"] for k in ("keras", "keras_pixels",
                                                          "export_pixels")}
        if None not in ms.values():
            print(f"breakdown of batch-1 latency: in-memory {ms['keras']:.2f} ms, + serving "
                  f"path {ms['keras_pixels'] - ms['keras']:+.2f} ms, + saved graph "
                  f"{ms['export_pixels'] - ms['keras_pixels']:+.2f} ms = export "
                  f"{ms['export_pixels']:.2f} ms")
    if "latency_export_over_export_bf16" in q:
        print(f"bfloat16 export against the float32 export (> 1: bfloat16 faster): images/s "
              f"{_fmt(q['throughput_export_bf16_over_export'], '.3f')}x, batch-1 latency "
              f"{_fmt(q['latency_export_over_export_bf16'], '.3f')}x (paired "
              f"{_fmt(q['latency_export_over_export_bf16_paired'], '.3f')}x)")
    t = f["targets"]
    for what in ("throughput", "latency", "bfloat16_latency"):
        if what not in t:
            continue
        v = t[what]
        verdict = {True: "met", False: "NOT met", None: "-"}[v["met"]]
        extra = ""
        if what == "throughput" and not v["at_target_batch"]:
            extra = f" (measured at batch {v['batch_size']}, not 32)"
        if t["informative_only"] and what != "bfloat16_latency":
            extra += " (informative only: in-memory model not float32)"
        if (run or f).get("caveats"):
            extra += " (see the caveats below)"
        print(f"target {v['what']}: {_fmt(v['value'], '.3f')} vs {v['target']:g}: "
              f"{verdict}{extra}")


def _check_model_flags():
    """The network flags, before anything runs: one line (status 2) naming the value."""
    from alexnet_tf import architecture  # no TensorFlow

    if _BENCHMARK.value in ("model", "profile", "serving"):
        try:
            architecture.validate_model_args(_VARIANT.value, _CLASSES.value, _IMAGE.value,
                                             _WIDTH.value)
        except (ValueError, KeyError) as error:
            raise app.UsageError(str(error).strip("'\"")) from None


def main(argv):
    del argv
    _check_model_flags()
    if _JSON.value:
        # Before the run, not after minutes of it.
        from alexnet_tf import outputs
        outputs.check_writable(_JSON.value, "--json")
    logging.set_verbosity(logging.WARNING)  # the data modules log every split they list
    if _CPUS.value:
        from benchmarks.machine import parse_cpus  # no TF op has run yet
        os.sched_setaffinity(0, set(parse_cpus(_CPUS.value)))
    from benchmarks import grouped_conv, machine, model, profile, serving
    from benchmarks import input as input_benchmark

    machine.configure_threads(_INTER.value, _INTRA.value)
    mixed = None if _MIXED.value == "none" else _MIXED.value
    if _BENCHMARK.value == "grouped_conv":
        result = grouped_conv.grouped_conv(repeats=_REPEATS.value)
        _print_grouped_conv(result)
    elif _BENCHMARK.value == "model":
        result = model.model(
            _VARIANT.value, _BATCH.value or 32, _IMAGE.value, _WIDTH.value, _CLASSES.value,
            repeats=_REPEATS.value, warmup=2 if _WARMUP.value is None else _WARMUP.value,
            xla=_XLA.value, mixed_precision=mixed, infer_batch_size=_INFER_BATCH.value or 128,
            latency_calls=_LATENCY_CALLS.value, matmul_sizes=[int(n) for n in _MATMUL.value],
            peer=_PEER.value, torch_threads=_TORCH_THREADS.value, wait_quiet=_WAIT_QUIET.value,
            torch_matmul=_TORCH_MATMUL.value)
        _print_model(result)
    elif _BENCHMARK.value == "profile":
        result = profile.profile(
            _VARIANT.value, _BATCH.value or 32, _IMAGE.value, _WIDTH.value, _CLASSES.value,
            steps=_PROFILE_STEPS.value, warmup=2 if _WARMUP.value is None else _WARMUP.value,
            xla=_XLA.value, mixed_precision=mixed, logdir=_LOGDIR.value, top=_TOP.value,
            wait_quiet=_WAIT_QUIET.value)
        _print_profile(result)
    elif _BENCHMARK.value == "serving":
        result = serving.serving(
            _VARIANT.value, _IMAGE.value, _WIDTH.value, _CLASSES.value, repeats=_REPEATS.value,
            warmup=2 if _WARMUP.value is None else _WARMUP.value, mixed_precision=mixed,
            infer_batch_size=_INFER_BATCH.value or 32, latency_calls=_LATENCY_CALLS.value,
            breakdown=_SERVING_BREAKDOWN.value, wait_quiet=_WAIT_QUIET.value,
            export_bfloat16=_EXPORT_BF16.value)
        _print_serving(result)
    else:
        kwargs = dict(sources=_SOURCE.value, pipelines=_PIPELINES.value,
                      num_images=_NUM_IMAGES.value, batch_size=_BATCH.value or 128,
                      image_size=_IMAGE.value or 227, repeats=_REPEATS.value,
                      warmup=1 if _WARMUP.value is None else _WARMUP.value,
                      seconds=_SECONDS.value, data_dir=_DATA_DIR.value,
                      wait_quiet=_WAIT_QUIET.value)
        if _RAW_STAGES.value:
            directory = _DATA_DIR.value or tempfile.mkdtemp(prefix="alexnet_tf_raw_stages_")
            try:
                input_benchmark.write_test_images(directory, _NUM_IMAGES.value,
                                                  sources=("raw256",))
                result = input_benchmark.raw_stages(directory, _BATCH.value or 128,
                                                    _REPEATS.value, _SECONDS.value)
            finally:
                if not _DATA_DIR.value:
                    shutil.rmtree(directory, ignore_errors=True)
            print(f"raw256 stage by stage ({result['usable_cores']} usable cores, "
                  f"{result['machine']['cpu_flags']}), images/s, medians of {_REPEATS.value}:")
            for name, row in result["stages"].items():
                print(f"  {name:34s} {_fmt(row['images_per_s']):>9s}  {row['samples']}")
        elif _SCALING.value:
            result = input_benchmark.input_scaling(_CPU_SETS.value, **kwargs)
            _print_scaling(result)
        else:
            worker_cpus = None
            if _WORKER_CPUS.value:
                from benchmarks.machine import parse_cpus
                worker_cpus = parse_cpus(_WORKER_CPUS.value)
            result = input_benchmark.input_pipelines(worker_cpus=worker_cpus, **kwargs)
            _print_input(result)
    line = json.dumps(result)
    sys.stdout.flush()
    print(line, flush=True)  # first: whatever happens to the file, the result is shown
    if _JSON.value:
        os.makedirs(os.path.dirname(os.path.abspath(_JSON.value)), exist_ok=True)
        with open(_JSON.value, "w") as f:
            f.write(line + "\n")


if __name__ == "__main__":
    cli_app.run(main, __name__)
