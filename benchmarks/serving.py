"""The `serving` benchmark: the exported SavedModel (what TF Serving runs) beside the
in-memory Keras model, same batch, same run, interleaved round by round (issue 16,
"Inference and serving").

    python tools/benchmark.py --benchmark=serving --variant=paper [--infer_batch_size=32]
        [--image_size=227] [--repeats=5] [--warmup=2] [--latency_calls=10]
        [--mixed_precision=bfloat16] [--wait_quiet=30] [--noserving_breakdown]

The variant is built once (float32, `alexnet_tf.create_model`), saved as a ``.keras``
file with an input convention and a class table beside it, and exported by the
package's own `alexnet_tf.export.export` (that file is a model source, so the export is
exactly what ``alexnet-export`` writes: split grouped convolutions, TF's LRN op, the
serving signatures of `alexnet_tf.export.module.SIGNATURE_TABLE`), then loaded with
``tf.saved_model.load``. The same images are given in three forms:

* JPEG bytes of photo-like 500x375 images (ImageNet's most common size, as the `input`
  benchmark's), for ``serving_default`` ("with decode": what REST clients send);
* their pixels as a client that decodes and resizes itself sends them: uint8, shorter
  side resized to the convention's resize_size and its central square, for the
  ``pixels`` signature (its resize is then a no-op: the time is the model's and the
  export's own crop, normalisation, softmax and top-k);
* the evaluation crop of those pixels, normalised by the package's own
  `preprocess.eval_pixels`, for the in-memory model ``model(x, training=False)`` in a
  ``tf.function`` (the Keras contender, as the `model` benchmark's).

Contenders, each timed once per round at ``infer_batch_size`` (images/s) and
``latency_calls`` times at batch 1 (latency, ms), in an order that rotates every round:
``keras`` (the in-memory model), ``export_pixels``, ``export_bytes`` and, unless
``breakdown=False``, ``keras_pixels``: the in-memory model behind the export's own
pixels computation (a `ServingModule` built around it and never saved), which splits
the gap between ``keras`` and ``export_pixels`` into the serving path's preprocessing
and heads (keras -> keras_pixels) and the saved graph (keras_pixels -> export_pixels:
split versus native grouped convolutions, the loaded functions).

Targets (issue 16): the export's images/s at batch 32 >= 90% of the in-memory model's
(`THROUGHPUT_TARGET`), and its batch-1 latency no worse than the in-memory model's.
Before timing, the export's probabilities on the batch are compared with the softmax of
the in-memory model's logits on the same pixels (``agreement``): the benchmark compares
like with like only when they agree.

``mixed_precision`` (bfloat16, float16) applies to the in-memory model only (a Keras
policy, same weights): the export it is compared with is float32, so the comparison is
informative only, and says so. ``export_bfloat16`` adds the export's own bfloat16 option
(``alexnet-export --compute_dtype=bfloat16``) as a contender beside the float32 export,
checked against the in-memory model within the export's stated bfloat16 tolerance
(`alexnet_tf.export.BFLOAT16_PROBABILITY_TOLERANCE`) before timing.

Verdicts come with ``caveats`` (one line each): too few timed rounds for a verdict
(fewer than `MIN_VERDICT_ROUNDS`), a network other than the one the targets are stated
for (the paper network at 227 pixels, width 1, 1000 classes), and the informative-only
comparison above.
"""

from __future__ import annotations

import io
import os
import shutil
import statistics
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf

from benchmarks.machine import (QUIET_OTHER_CORES, LoadMeter, gpu_memory_growth,
                                machine_info, median, sync, wait_until_quiet)

# Issue 16: the export at batch 32 reaches >= 90% of the in-memory model's images/s.
THROUGHPUT_TARGET = 0.9
# Issue 16: the export's batch-1 latency is no worse than the in-memory model's, i.e.
# in-memory latency / export latency >= 1.
LATENCY_TARGET = 1.0
# The agreement the export and the in-memory model must reach on the same pixels
# (float32): absolute, on probabilities and on log-probabilities.
AGREEMENT_TOLERANCE = 1e-5
# Fewer timed rounds than this give figures but no trustworthy verdict (each round is one
# batch call and one median of batch-1 calls; a burst of load moves a lone round by
# several percent, more than the margins of the targets).
MIN_VERDICT_ROUNDS = 3
# The photos sent as JPEG bytes: (width, height), ImageNet's most common size.
JPEG_SIZE = (500, 375)
JPEG_QUALITY = 90

# Contenders, in the order of the first round; "keras_pixels" only with the breakdown.
CONTENDERS = ("keras", "export_pixels", "export_bytes", "keras_pixels", "export_pixels_bf16")
# What each contender is, for the printout and the JSON.
CONTENDER_DESCRIPTIONS = {
    "keras": "in-memory Keras model, model(x, training=False) in a tf.function, on the "
             "normalised crop",
    "export_pixels": "the export's {pixels} signature on uint8 pixels (shorter side "
                     "resize_size, central square)",
    "export_bytes": "the export's {bytes} signature on JPEG bytes ({jpeg}): with decode",
    "keras_pixels": "the in-memory model behind the export's pixels computation "
                    "(preprocessing, softmax, top-k; not saved)",
    "export_pixels_bf16": "a second export of the same weights with "
                          "compute_dtype='bfloat16' (alexnet-export --compute_dtype), its "
                          "{pixels} signature on the same uint8 pixels",
}
_BF16_NOTE = ("the in-memory model runs the mixed {0} policy and the export compared with it "
              "is float32 (the export's own bfloat16: --export_bfloat16), so the comparison "
              "is informative only")


def signature_names() -> dict:
    """{"pixels": the export signature on decoded uint8 pixels, "bytes": the one on
    encoded image bytes (TF Serving's default)}, read from the export's own table so
    that a renamed row is followed."""
    from alexnet_tf.export import module as module_lib

    def first(dtype):
        return next(row.name for row in module_lib.SIGNATURE_TABLE
                    if row.inputs[0].dtype == dtype
                    and set(module_lib.CLASSIFICATION_OUTPUTS) <= set(row.outputs))

    return {"pixels": first(tf.uint8), "bytes": first(tf.string)}


# ------------------------------------------------------------------ the export


def _convention(image_size: int):
    """The input convention of the benchmark's model: the base config's (ImageNet mean,
    std 1, RGB, resize 256), with resize_size raised to image_size for larger inputs."""
    from alexnet_tf import config as config_lib
    from alexnet_tf.convention import InputConvention

    config = config_lib.base_config()
    config.model.image_size = image_size
    config.data.resize_size = max(int(config.data.resize_size), image_size)
    return InputConvention.from_config(config)


def export_model(model: keras.Model, convention, directory: str,
                 compute_dtype: str = "float32") -> str:
    """Exports ``model`` (float32) by `alexnet_tf.export.export` into ``directory``;
    returns the version directory (``directory/export/1``).

    The lightest model source `export` takes for an in-memory model: the model saved as
    a ``.keras`` file with ``input_convention.json`` and ``classes.json`` beside it
    (`model_source`'s "directory" context; not named ``model.keras``, which would read
    as a converted-weights directory). Class ids are ``class_0000``, ...
    """
    from alexnet_tf import run as run_lib
    from alexnet_tf.export import export

    source_dir = os.path.join(directory, "source")
    os.makedirs(source_dir)
    keras_path = os.path.join(source_dir, "alexnet.keras")
    model.save(keras_path)
    convention.save(source_dir)
    num_classes = int(model.output.shape[-1])
    run_lib.Run(source_dir).write_classes([f"class_{i:04d}" for i in range(num_classes)])
    return export(keras_path, os.path.join(directory, "export"), compute_dtype=compute_dtype)


# ------------------------------------------------------------------ the images


def serving_images(batch_size: int, convention, seed: int = 0) -> dict:
    """The same ``batch_size`` photo-like images in the three forms the contenders take:
    ``jpeg`` (list of bytes, `JPEG_SIZE`, quality `JPEG_QUALITY`), ``pixels`` (uint8
    [B, resize_size, resize_size, 3]: decoded, shorter side resized, central square, by
    the package's own `preprocess` steps) and ``crops`` (float32 [B, image_size,
    image_size, 3]: `preprocess.eval_pixels` of those pixels, the model's input)."""
    from PIL import Image

    from alexnet_tf.data import preprocess
    from benchmarks.input import _photo_like  # the input benchmark's photos

    rng = np.random.default_rng(seed)
    width, height = JPEG_SIZE
    jpegs, pixels = [], []
    for _ in range(batch_size):
        buffer = io.BytesIO()
        Image.fromarray(_photo_like(rng, height, width)).save(buffer, "JPEG",
                                                              quality=JPEG_QUALITY)
        jpegs.append(buffer.getvalue())
        decoded = tf.io.decode_jpeg(jpegs[-1], channels=3)
        square = preprocess.central_crop(
            preprocess.resize_shorter_side(decoded, convention.resize_size),
            convention.resize_size)
        pixels.append(square.numpy())
    pixels = tf.constant(np.stack(pixels))
    crops = tf.stack([preprocess.eval_pixels(image, image_size=convention.image_size,
                                             resize_size=convention.resize_size,
                                             norm=convention) for image in pixels])
    return {"jpeg": jpegs, "pixels": pixels, "crops": crops,
            "jpeg_mean_kb": round(statistics.mean(len(j) for j in jpegs) / 1024, 1)}


# ------------------------------------------------------------------ contenders


class Contender:
    """One way of running the model: ``fn(batch input)``, with its batch and its
    batch-1 input; `infer` and `latency` time it (seconds, the result fetched)."""

    def __init__(self, fn, batch, one):
        self.fn, self.batch, self.one = fn, batch, one

    def infer(self) -> float:
        """Seconds of one call on the batch."""
        start = time.perf_counter()
        sync(self.fn(self.batch))
        return time.perf_counter() - start

    def latency(self, calls: int) -> list[float]:
        """Seconds of each of ``calls`` batch-1 calls."""
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            sync(self.fn(self.one))
            times.append(time.perf_counter() - start)
        return times


def compare_outputs(export_probabilities, keras_logits, tolerance: float = AGREEMENT_TOLERANCE,
                    log_tolerance: float | None = AGREEMENT_TOLERANCE) -> dict:
    """How far the export's probabilities ([B, C]) are from the softmax of the in-memory
    model's logits ([B, C]) on the same images: max absolute difference of the
    probabilities and of their logs, whether every top-1 class is the same, and whether
    the probabilities are within ``tolerance`` and (unless ``log_tolerance`` is None)
    the log-probabilities within ``log_tolerance``. Float32 against float32: both
    `AGREEMENT_TOLERANCE`; a bfloat16 export: the export's stated probability
    tolerance, no log bound (bfloat16 rounding moves the log of a tiny probability by
    far more than the probability)."""
    probabilities = np.asarray(export_probabilities, np.float64)
    logits = tf.cast(keras_logits, tf.float32)
    expected = tf.nn.softmax(logits, axis=-1).numpy().astype(np.float64)
    expected_log = tf.nn.log_softmax(logits, axis=-1).numpy().astype(np.float64)
    # Logs only where both sides' float32 probabilities are above zero: a probability
    # that underflowed to 0 on both sides (peaked logits) agrees, and its log would be
    # -inf on one side only; a 0 against a positive one is caught by prob_diff.
    both = (probabilities > 0) & (expected > 0)
    log_diff = (float(np.max(np.abs(np.log(probabilities[both]) - expected_log[both])))
                if both.any() else None)
    prob_diff = float(np.max(np.abs(probabilities - expected)))
    return {"max_abs_probability_diff": prob_diff,
            "max_abs_log_probability_diff": log_diff,
            "same_top1": bool(np.array_equal(probabilities.argmax(-1), expected.argmax(-1))),
            "tolerance": tolerance, "log_tolerance": log_tolerance,
            "within_tolerance": bool(prob_diff <= tolerance and (
                log_tolerance is None or log_diff is None or log_diff <= log_tolerance))}


# ------------------------------------------------------------------ the benchmark


def serving(variant: str = "paper", image_size: int | None = None, width: float = 1.0,
            num_classes: int = 1000, repeats: int = 5, warmup: int = 2,
            mixed_precision: str | None = None, infer_batch_size: int = 32,
            latency_calls: int = 10, breakdown: bool = True, wait_quiet: float = 0.0,
            seed: int = 0, export_bfloat16: bool = False) -> dict:
    """Images/s at ``infer_batch_size`` and batch-1 latency (ms) of the export and of the
    in-memory model, their ratios and issue 16's target verdicts (module docstring).

    Each of ``warmup + repeats`` rounds times every contender once on the batch, then
    ``latency_calls`` batch-1 calls of each, in an order that rotates by one every
    round, so a burst of load from another job hits all of them alike. Warm-up rounds
    are dropped; figures are medians over the rest (latency: the median of the
    per-round medians). With ``wait_quiet`` > 0 each round first waits up to that many
    seconds for the machine to be quiet; rounds during which other processes used at
    most `QUIET_OTHER_CORES` are also summarised apart (``quiet``). ``export_bfloat16``
    adds a second export of the same weights computing in bfloat16
    (``alexnet-export --compute_dtype=bfloat16``) and its target: batch-1 latency no
    worse than the float32 export's.
    """
    if mixed_precision not in (None, "", "none", "bfloat16", "float16"):
        raise ValueError(f"mixed_precision must be bfloat16, float16 or None, got "
                         f"{mixed_precision!r}.")
    mixed_precision = None if mixed_precision in ("", "none") else mixed_precision
    if repeats < 1 or warmup < 0 or infer_batch_size < 1 or latency_calls < 1:
        raise ValueError(f"repeats, infer_batch_size and latency_calls must be >= 1 and "
                         f"warmup >= 0, got {repeats}, {infer_batch_size}, {latency_calls}, "
                         f"{warmup}.")
    import alexnet_tf
    from alexnet_tf import layers
    from alexnet_tf import models
    from alexnet_tf.export import module as module_lib

    gpu_memory_growth()
    gpu = bool(tf.config.list_logical_devices("GPU"))
    names = signature_names()
    # The exported network is built float32 whatever the run's policy (the bfloat16
    # export is made from it by the export's own option); the in-memory one below
    # takes its weights.
    with models.global_policy("float32"):
        exported_model = alexnet_tf.create_model(variant, num_classes, image_size, width,
                                                 seed=seed)
    model = exported_model
    if mixed_precision:
        with models.global_policy(f"mixed_{mixed_precision}"):
            model = alexnet_tf.create_model(variant, num_classes, image_size, width,
                                            seed=seed)
        model.set_weights(exported_model.get_weights())
    image_size = int(model.input_shape[1])
    convention = _convention(image_size)
    images = serving_images(infer_batch_size, convention, seed)

    workdir = tempfile.mkdtemp(prefix="alexnet-serving-bench-")
    try:
        start = time.perf_counter()
        version_dir = export_model(exported_model, convention, workdir)
        export_seconds = time.perf_counter() - start
        start = time.perf_counter()
        loaded = tf.saved_model.load(version_dir)
        load_seconds = time.perf_counter() - start
        loaded_bf16, bf16_export_seconds = None, None
        if export_bfloat16:
            start = time.perf_counter()
            bf16_dir = export_model(exported_model, convention, os.path.join(workdir, "bf16"),
                                    "bfloat16")
            bf16_export_seconds = time.perf_counter() - start
            loaded_bf16 = tf.saved_model.load(bf16_dir)
    finally:
        # The loaded object holds its variables and functions in memory: the files can go.
        shutil.rmtree(workdir, ignore_errors=True)
    pixels_fn = loaded.signatures[names["pixels"]]
    bytes_fn = loaded.signatures[names["bytes"]]
    pixels_input = module_lib.IMAGES_UINT8.name  # the signatures' input names
    bytes_input = module_lib.IMAGE_BYTES.name
    jpeg = tf.constant(images["jpeg"])
    keras_fn = tf.function(lambda x: model(x, training=False))
    contenders = {
        "keras": Contender(keras_fn, images["crops"], images["crops"][:1]),
        "export_pixels": Contender(lambda x: pixels_fn(**{pixels_input: x}),
                                   images["pixels"], images["pixels"][:1]),
        "export_bytes": Contender(lambda x: bytes_fn(**{bytes_input: x}), jpeg, jpeg[:1]),
    }
    if loaded_bf16 is not None:
        bf16_fn = loaded_bf16.signatures[names["pixels"]]
        contenders["export_pixels_bf16"] = Contender(lambda x: bf16_fn(**{pixels_input: x}),
                                                     images["pixels"], images["pixels"][:1])
    if breakdown:
        # The export's pixels computation around the in-memory model: same preprocessing
        # and heads, the in-memory graph (grouped convolutions as "auto" resolves them).
        classes = [{"index": i, "id": f"class_{i:04d}", "name": f"class_{i:04d}"}
                   for i in range(num_classes)]
        unsaved = module_lib.build_serving_module(convention, model, classes)
        contenders["keras_pixels"] = Contender(unsaved.classify_pixels, images["pixels"],
                                               images["pixels"][:1])

    # Like with like: the export's outputs on the pixels against the in-memory model's
    # on their crops (also the first, untimed call of each).
    agreement = compare_outputs(pixels_fn(**{pixels_input: images["pixels"]})["probabilities"],
                                keras_fn(images["crops"]))
    if loaded_bf16 is not None:
        from alexnet_tf.export import BFLOAT16_PROBABILITY_TOLERANCE
        # Against the float32 network (its tolerance is stated against float32), also
        # when the in-memory contender runs a mixed policy.
        agreement_bf16 = compare_outputs(
            bf16_fn(**{pixels_input: images["pixels"]})["probabilities"],
            exported_model(images["crops"], training=False),
            tolerance=BFLOAT16_PROBABILITY_TOLERANCE, log_tolerance=None)
    compute_dtype = model.dtype_policy.compute_dtype
    result = {
        "benchmark": "serving", "variant": variant, "image_size": image_size,
        "resize_size": convention.resize_size, "width": width, "num_classes": num_classes,
        "infer_batch_size": infer_batch_size, "latency_batch_size": 1,
        "latency_calls": latency_calls, "repeats": repeats, "warmup": warmup,
        "mixed_precision": mixed_precision or "none", "keras_compute_dtype": compute_dtype,
        "export_compute_dtype": "float32", "export_bfloat16": loaded_bf16 is not None,
        "device": "GPU" if gpu else "CPU",
        "params": int(model.count_params()),
        "export": {
            "signatures": names,
            "grouped_conv": {
                # What the export traces ("auto" -> "split", `export.restore_model`), and
                # what "auto" resolves to for the in-memory model here.
                "export": "split",
                "keras": layers.resolve_grouped_conv_implementation("auto",
                                                                    dtype=compute_dtype),
            },
            "export_seconds": round(export_seconds, 2), "load_seconds": round(load_seconds, 2),
            "bfloat16_export_seconds": (round(bf16_export_seconds, 2)
                                        if bf16_export_seconds is not None else None),
            "jpeg_size": list(JPEG_SIZE), "jpeg_quality": JPEG_QUALITY,
            "jpeg_mean_kb": images["jpeg_mean_kb"],
            "pixels_shape": list(images["pixels"].shape[1:]),
        },
        "contenders": {name: CONTENDER_DESCRIPTIONS[name].format(
            pixels=names["pixels"], bytes=names["bytes"],
            jpeg=f"{JPEG_SIZE[0]}x{JPEG_SIZE[1]}") for name in contenders},
        "agreement": agreement,
        "machine": machine_info(),
    }
    if loaded_bf16 is not None:
        result["agreement_bfloat16_export"] = agreement_bf16
    if mixed_precision:
        result["note"] = _BF16_NOTE.format(mixed_precision)

    order = [name for name in CONTENDERS if name in contenders]
    meter = LoadMeter()
    rounds = []
    with meter:
        for round_index in range(warmup + repeats):
            waited = wait_until_quiet(wait_quiet)
            shift = round_index % len(order)
            turn = order[shift:] + order[:shift]
            record = {"order": turn, "waited_s": round(waited, 1)}
            round_meter = LoadMeter()
            with round_meter:
                for name in turn:
                    record[f"{name}_infer"] = contenders[name].infer()
                for name in turn:
                    record[f"{name}_latency"] = statistics.median(
                        contenders[name].latency(latency_calls))
            record["other_cores"] = round_meter.result().get("other_cores")
            if round_index >= warmup:
                rounds.append(record)
    result["load"] = meter.result()
    result["load"]["other_cores_per_round"] = [r["other_cores"] for r in rounds]
    informative = bool(mixed_precision)
    result.update(serving_figures(rounds, infer_batch_size, informative))
    quiet = [r for r in rounds if r["other_cores"] is not None
             and r["other_cores"] <= QUIET_OTHER_CORES]
    result["quiet_rounds"] = len(quiet)
    if quiet and len(quiet) < len(rounds):
        result["quiet"] = serving_figures(quiet, infer_batch_size, informative)
    result["rounds"] = [{k: round(v, 6) if isinstance(v, float) else v for k, v in r.items()}
                        for r in rounds]
    result["caveats"] = verdict_caveats(len(rounds), variant, image_size, width, num_classes,
                                        informative, warmup=warmup,
                                        quiet_rounds=len(quiet) if any(
                                            r["other_cores"] is not None for r in rounds)
                                        else None)
    return result


def verdict_caveats(rounds: int, variant: str, image_size: int, width: float,
                    num_classes: int, informative: bool = False, *, warmup: int = 1,
                    quiet_rounds: int | None = None) -> list[str]:
    """Why the target verdicts of a run may not stand, one sentence each (empty when
    they do): fewer timed rounds than `MIN_VERDICT_ROUNDS`; no warm-up round (the first
    timed calls then include tracing and the first run of every op); timed rounds in
    which other processes used more than `QUIET_OTHER_CORES` (``quiet_rounds`` of
    ``rounds`` were quiet; None: not measured); a network other than the paper network
    at 227 pixels, width 1, 1000 classes (what issue 16's targets are stated for); an
    in-memory model in another precision than the float32 export."""
    caveats = []
    if rounds < MIN_VERDICT_ROUNDS:
        caveats.append(f"{rounds} timed round{'s' if rounds != 1 else ''}: too few for a "
                       f"verdict (at least {MIN_VERDICT_ROUNDS}; --repeats=5 is the "
                       f"documented run)")
    if warmup < 1:
        caveats.append("no warm-up round (--warmup=0): the first timed calls include "
                       "tracing and the first run of every op, which can make any contender "
                       "look slow or a difference negative")
    if quiet_rounds is not None and quiet_rounds < rounds:
        caveats.append(f"other processes used more than {QUIET_OTHER_CORES:g} cores in "
                       f"{rounds - quiet_rounds} of the {rounds} timed rounds: the machine "
                       f"was not quiet (--wait_quiet=30 waits for it)")
    network = (variant, int(image_size), float(width), int(num_classes))
    if network != ("paper", 227, 1.0, 1000):
        caveats.append(f"the targets are stated for the paper network at 227 pixels, width "
                       f"1, 1000 classes; this run timed {variant} at {image_size} pixels, "
                       f"width {width:g}, {num_classes} classes")
    if informative:
        caveats.append("informative only: the in-memory model ran another precision than "
                       "the float32 export")
    return caveats


# ------------------------------------------------------------------ figures


def _ratio(numerator, denominator):
    return numerator / denominator if numerator and denominator else None


def serving_figures(rounds: list[dict], batch_size: int, informative: bool = False) -> dict:
    """Medians, ratios and target verdicts from per-round timings.

    ``rounds``: dicts with ``<contender>_infer`` (seconds of one call on
    ``batch_size`` images) and ``<contender>_latency`` (median seconds of a batch-1
    call in that round), for contenders of `CONTENDERS` (any may be absent).
    Returns ``{contender: {"infer": {"images_per_s", "seconds_median", "seconds"},
    "latency_ms"}}`` under ``figures``; ``ratios`` (> 1 means the export is faster or
    no slower): ``throughput_export_over_keras`` (export images/s over in-memory, from
    the medians) and its per-round median ``..._paired``, ``latency_keras_over_export``
    (in-memory ms over export ms) and ``..._paired``, the same two for ``export_bytes``
    ("with decode", no target), and with the breakdown
    ``throughput_keras_pixels_over_keras`` (the serving path's preprocessing and heads)
    and ``throughput_export_over_keras_pixels`` (the saved graph), and the same split of
    the latency (``latency_keras_over_keras_pixels``,
    ``latency_keras_pixels_over_export``); and ``targets``
    (`target_verdicts`).
    """
    figures = {}
    for name in CONTENDERS:
        infer = [r[f"{name}_infer"] for r in rounds if f"{name}_infer" in r]
        if not infer:
            continue
        seconds = median(infer)
        latency = median([r[f"{name}_latency"] for r in rounds if f"{name}_latency" in r])
        figures[name] = {"infer": {"images_per_s": batch_size / seconds if seconds else None,
                                   "seconds_median": seconds,
                                   "seconds": [round(s, 5) for s in infer]},
                         "latency_ms": latency * 1000 if latency else None}

    def seconds(name, what):
        side = figures.get(name)
        if side is None:
            return None
        return side["infer"]["seconds_median"] if what == "infer" else side["latency_ms"]

    def paired(slow, fast, what):
        """Median over rounds of slow/fast seconds (both timed in the same round)."""
        return median([r[f"{slow}_{what}"] / r[f"{fast}_{what}"] for r in rounds
                       if r.get(f"{slow}_{what}") and r.get(f"{fast}_{what}")])

    ratios = {
        # images/s ratio = inverse ratio of seconds per batch
        "throughput_export_over_keras": _ratio(seconds("keras", "infer"),
                                               seconds("export_pixels", "infer")),
        "throughput_export_over_keras_paired": paired("keras", "export_pixels", "infer"),
        "latency_keras_over_export": _ratio(seconds("keras", "latency"),
                                            seconds("export_pixels", "latency")),
        "latency_keras_over_export_paired": paired("keras", "export_pixels", "latency"),
        "throughput_export_bytes_over_keras": _ratio(seconds("keras", "infer"),
                                                     seconds("export_bytes", "infer")),
        "latency_keras_over_export_bytes": _ratio(seconds("keras", "latency"),
                                                  seconds("export_bytes", "latency")),
    }
    if "export_pixels_bf16" in figures:
        ratios["latency_export_over_export_bf16"] = _ratio(
            seconds("export_pixels", "latency"), seconds("export_pixels_bf16", "latency"))
        ratios["latency_export_over_export_bf16_paired"] = paired(
            "export_pixels", "export_pixels_bf16", "latency")
        ratios["throughput_export_bf16_over_export"] = _ratio(
            seconds("export_pixels", "infer"), seconds("export_pixels_bf16", "infer"))
    if "keras_pixels" in figures:
        ratios["throughput_keras_pixels_over_keras"] = _ratio(
            seconds("keras", "infer"), seconds("keras_pixels", "infer"))
        ratios["throughput_export_over_keras_pixels"] = _ratio(
            seconds("keras_pixels", "infer"), seconds("export_pixels", "infer"))
        # The same split of the batch-1 latency (in-memory ms over the next step's ms).
        ratios["latency_keras_over_keras_pixels"] = _ratio(
            seconds("keras", "latency"), seconds("keras_pixels", "latency"))
        ratios["latency_keras_pixels_over_export"] = _ratio(
            seconds("keras_pixels", "latency"), seconds("export_pixels", "latency"))
    return {"figures": figures, "ratios": ratios,
            "targets": target_verdicts(ratios, batch_size, informative)}


def target_verdicts(ratios: dict, batch_size: int, informative: bool = False) -> dict:
    """Issue 16's two serving targets against ``ratios`` (`serving_figures`):
    ``throughput`` (export images/s >= `THROUGHPUT_TARGET` x in-memory's; the target is
    stated at batch 32, so at another batch the verdict says so) and ``latency``
    (in-memory ms / export ms >= `LATENCY_TARGET`). Each: ``value`` (the ratio from the
    medians), ``paired`` (the median of per-round ratios, shown beside), ``target``,
    ``met`` (True, False, or None without figures). ``informative_only``: the in-memory
    model ran another precision than the float32 export (mixed precision)."""
    def verdict(value, paired, target, what):
        return {"what": what, "value": value, "paired": paired, "target": target,
                "met": None if value is None else bool(value >= target)}

    throughput = verdict(ratios.get("throughput_export_over_keras"),
                         ratios.get("throughput_export_over_keras_paired"), THROUGHPUT_TARGET,
                         f"export images/s >= {THROUGHPUT_TARGET:.0%} of in-memory's at batch 32")
    throughput["batch_size"] = batch_size
    throughput["at_target_batch"] = batch_size == 32
    latency = verdict(ratios.get("latency_keras_over_export"),
                      ratios.get("latency_keras_over_export_paired"), LATENCY_TARGET,
                      "export batch-1 latency <= in-memory's (in-memory ms / export ms >= 1)")
    verdicts = {"throughput": throughput, "latency": latency,
                "informative_only": informative}
    if "latency_export_over_export_bf16" in ratios:
        verdicts["bfloat16_latency"] = verdict(
            ratios["latency_export_over_export_bf16"],
            ratios.get("latency_export_over_export_bf16_paired"), LATENCY_TARGET,
            "bfloat16 export batch-1 latency <= float32 export's (float32 ms / bfloat16 ms "
            ">= 1)")
    return verdicts
