"""The `input` benchmark: images/s of a plain tf.data paper pipeline and of this
package's, per source, on photo-like images it generates.

    python tools/benchmark.py --benchmark=input [--source=jpeg,stored256,tfrecord,raw256]
        [--num_images=512] [--batch_size=128] [--seconds=0] [--scaling] [--cpus=0]

`plain_pipeline` is the baseline a user would write; `project_pipeline` is this
package's `pipeline.make_dataset` with ``augmentation="paper"``, per image
("project") and with the tail on the batch (`pipeline.finish_on_device`,
"project_on_device"). Sources (`write_test_images`): 500x375 JPEGs (ImageNet's most
common size, quality 90, about as large and as slow to decode as its photos), the
same stored at shorter side 256, TFRecords of those, and TFRecords of raw 256x256
squares (``tools/build_tfrecords.py --format=raw``: no decoding). "service_on_device"
(not in the default set) is the project's training stream produced by one tf.data
service worker (`alexnet-data-service`, a subprocess pinned to ``worker_cpus``) and read
here, the tail applied here: the per-core rate of a service worker, the reader's cost
on the other cores. `raw_stages` builds the raw source's pipeline up stage by stage
(``--raw_stages``). `input_scaling` reruns the
benchmark in processes pinned to 1, 2, 4, ... cores (``--scaling``); each is
``python -m benchmarks.input --input-worker JSON``, which prints its result as one
JSON line.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

from benchmarks import worker
from benchmarks.machine import (QUIET_OTHER_CORES, LoadMeter, default_cpu_sets, machine_info,
                                median, parse_cpus, usable_cores, wait_until_quiet)

INPUT_SOURCES = ("jpeg", "stored256", "tfrecord", "raw256")
INPUT_PIPELINES = ("plain", "project", "project_on_device", "service_on_device")
DEFAULT_PIPELINES = INPUT_PIPELINES[:3]  # service_on_device starts a cluster: asked for by name
# Issue 17: raw 256x256 records reach >= 4x the images/s of the package's pipeline from
# JPEGs stored at 256, both with the tail on the device, in the same run.
RAW_TARGET = 4.0


# -------------------------------------------------------------------------- images


def _photo_like(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A uint8 RGB image with a photo's mix of smooth regions, edges, texture and
    sensor noise, so that its JPEG is about as large (and as slow to decode) as a
    typical ImageNet photo of that size (about 105 KB at 500x375, quality 90)."""
    from PIL import Image, ImageDraw

    base = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    image = Image.fromarray(base).resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 10))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(20, width // 2)), y0 + int(rng.integers(20, height // 2))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=color)
    pixels = np.asarray(image, np.float32)
    # Texture: noise at a third of the resolution, smoothed by a bilinear upsampling.
    texture = rng.normal(128, 40, (height // 3 + 1, width // 3 + 1, 3)).clip(0, 255)
    texture = Image.fromarray(texture.astype(np.uint8)).resize((width, height),
                                                                Image.Resampling.BILINEAR)
    pixels += (np.asarray(texture, np.float32) - 128) * 1.1 + rng.normal(0, 13, pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def write_test_images(root: str, num_images: int = 512, num_classes: int = 4,
                      size=(500, 375), seed: int = 0, sources=INPUT_SOURCES) -> dict:
    """Writes the input benchmark's data under ``root`` (reused when already there):

    * ``jpeg/train/<class>/*.JPEG``: ``num_images`` photo-like JPEGs of ``size``
      (width, height; 500x375 is ImageNet's most common size), quality 90;
    * ``stored256/train/...``: the same images stored at shorter side 256 (what
      tools/build_tfrecords.py stores), by `convert.normalize_image`;
    * ``tfrecord/``: those stored images as TFRecord shards, by `convert.build_tfrecords`;
    * ``raw256/``: the central 256x256 squares as raw TFRecords
      (`convert.build_tfrecords` with ``image_format="raw"``).
    Returns {source: directory} and the mean file sizes.
    """
    from PIL import Image

    from alexnet_tf.data import convert

    marker = os.path.join(root, "benchmark_images.json")
    wanted = {"num_images": num_images, "num_classes": num_classes, "size": list(size),
              "seed": seed}
    if os.path.exists(marker):
        with open(marker) as f:
            info = json.load(f)
        if info.get("wanted") == wanted and all(os.path.isdir(info["dirs"][s]) for s in sources
                                                if s in info["dirs"]):
            missing = [s for s in sources if s not in info["dirs"]]
            if not missing:
                return info
    rng = np.random.default_rng(seed)
    dirs = {name: os.path.join(root, name) for name in INPUT_SOURCES}
    for d in dirs.values():
        shutil.rmtree(d, ignore_errors=True)
    sizes = {"jpeg": [], "stored256": []}
    width, height = size
    for i in range(num_images):
        cls = f"class_{i % num_classes:02d}"
        buffer = io.BytesIO()
        Image.fromarray(_photo_like(rng, height, width)).save(buffer, "JPEG", quality=90)
        data = buffer.getvalue()
        stored = convert.normalize_image(data, resize_shorter_side=256).data
        for source, payload in (("jpeg", data), ("stored256", stored)):
            folder = os.path.join(dirs[source], "train", cls)
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"img_{i:06d}.JPEG"), "wb") as f:
                f.write(payload)
            sizes[source].append(len(payload))
    for source, image_format in (("tfrecord", "jpeg"), ("raw256", "raw")):
        if source in sources:
            convert.build_tfrecords(dirs["jpeg"], dirs[source], splits=("train",),
                                    shards={"train": max(1, min(8, num_images // 16))},
                                    resize_shorter_side=256, workers=1, progress=False,
                                    image_format=image_format)
    sizes["raw256"] = [convert.raw_image_bytes(256)] * num_images
    info = {"wanted": wanted, "dirs": {s: dirs[s] for s in sources},
            "mean_kb": {s: round(statistics.mean(v) / 1024, 1) for s, v in sizes.items()},
            "image_size": {"jpeg": list(size),
                           "stored256": list(convert.shorter_side_size(height, width, 256)[::-1]),
                           "raw256": [256, 256]}}
    with open(marker, "w") as f:
        json.dump(info, f)
    return info


# ----------------------------------------------------------------------- pipelines


def plain_pipeline(source: str, data_dir: str, *, image_size: int = 227, batch_size: int = 128,
                   seed: int = 0) -> tf.data.Dataset:
    """The baseline: the paper's training pipeline written the straightforward way.

    Shuffle the file list (or read TFRecords in parallel), decode, resize the shorter
    side to 256 (float32 from there on), central 256 crop, random 227 crop, random
    flip, PCA lighting, per-channel mean subtraction; batch; AUTOTUNE and prefetch.
    Decoding is the package's one decode rule (`decode.decode_rgb`: alpha over white,
    EXIF orientation applied), so both sides decode the same pixels; raw records
    (``raw256``) are reshaped, not decoded.
    """
    from alexnet_tf.data import decode, stats

    eigval = tf.constant(stats.IMAGENET_PCA_EIGVAL)
    eigvec = tf.constant(stats.IMAGENET_PCA_EIGVEC)
    mean = tf.constant(stats.IMAGENET_MEAN_RGB)

    def augment(encoded, label):
        if source == "raw256":
            image = tf.reshape(tf.io.decode_raw(encoded, tf.uint8), [256, 256, 3])
        else:
            image = decode.decode_rgb(encoded)
            shape = tf.shape(image)
            scale = 256.0 / tf.cast(tf.minimum(shape[0], shape[1]), tf.float32)
            new_size = tf.cast(tf.round(tf.cast(shape[:2], tf.float32) * scale), tf.int32)
            image = tf.image.resize(image, tf.maximum(new_size, 256))
            image = tf.image.resize_with_crop_or_pad(image, 256, 256)
        image = tf.cast(tf.image.random_crop(image, [image_size, image_size, 3]), tf.float32)
        image = tf.image.random_flip_left_right(image)
        alpha = tf.random.normal([3], stddev=0.1)
        image = image + tf.linalg.matvec(eigvec, alpha * eigval) * 255.0
        return image - mean, label

    if source in ("tfrecord", "raw256"):
        files = sorted(f for f in tf.io.gfile.glob(os.path.join(data_dir, "train-*-of-*"))
                       if not f.endswith((".json", ".tmp")))
        spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
                "image/class/label": tf.io.FixedLenFeature([], tf.int64)}

        def parse(record):
            features = tf.io.parse_single_example(record, spec)
            return features["image/encoded"], tf.cast(features["image/class/label"] - 1, tf.int32)

        ds = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=seed)
        ds = ds.interleave(tf.data.TFRecordDataset, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.shuffle(1024, seed=seed).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    else:
        classes = sorted(os.listdir(os.path.join(data_dir, "train")))
        paths, labels = [], []
        for label, cls in enumerate(classes):
            for name in sorted(os.listdir(os.path.join(data_dir, "train", cls))):
                paths.append(os.path.join(data_dir, "train", cls, name))
                labels.append(label)
        ds = tf.data.Dataset.from_tensor_slices((paths, labels)).shuffle(len(paths), seed=seed)
        ds = ds.map(lambda p, y: (tf.io.read_file(p), y), num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def project_pipeline(source: str, data_dir: str, *, image_size: int = 227,
                     batch_size: int = 128, on_device: bool = False, seed: int = 0):
    """This package's paper pipeline (`pipeline.make_dataset`, ``augmentation="paper"``)
    over a source; with ``on_device`` the pipeline stops at the uint8 crop and returns
    the batched tail (`pipeline.finish_on_device`) as a tf.function to apply per batch."""
    from alexnet_tf import config as config_lib
    from alexnet_tf.convention import InputConvention
    from alexnet_tf.data import pipeline, sources

    d = config_lib.base_config().data
    d.source = "tfrecord" if source in ("tfrecord", "raw256") else "image_folder"
    d.data_dir = data_dir
    d.augmentation = "paper"
    d.augment_on_device = bool(on_device)
    split = sources.load_split(d, "train")
    ds = pipeline.make_dataset(split, d, image_size=image_size, batch_size=batch_size,
                               training=True, seed=seed)
    finish = None
    if on_device:
        norm = InputConvention.from_data_config(d, image_size)
        light = pipeline.lighting(d)
        finish = tf.function(lambda inputs: pipeline.finish_on_device(inputs, norm, light))
    return ds, finish


class ServiceCluster:
    """A tf.data service dispatcher and one worker (subprocesses; the worker pinned to
    ``worker_cpus``) for the "service_on_device" pipeline."""

    def __init__(self, worker_cpus, directory):
        from alexnet_tf.data import service

        with socket.socket() as a, socket.socket() as b:
            a.bind(("localhost", 0))
            b.bind(("localhost", 0))
            ports = [a.getsockname()[1], b.getsockname()[1]]
        self.address = f"grpc://localhost:{ports[0]}"
        command = [sys.executable, "-m", "alexnet_tf.cli.data_service"]
        self.processes = []
        cpus = set(worker_cpus)
        for role, args, pin in (
                ("dispatcher", [f"--port={ports[0]}"], None),
                ("worker", [f"--dispatcher=localhost:{ports[0]}", f"--port={ports[1]}",
                            "--worker_host=localhost"], cpus)):
            log = open(os.path.join(directory, f"{role}.log"), "w")
            self.processes.append(subprocess.Popen(
                command + [role] + args, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=(lambda: os.sched_setaffinity(0, pin)) if pin else None))
            log.close()
            deadline = time.monotonic() + 120
            while f"{role} at" not in open(log.name).read():
                if self.processes[-1].poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"The {role} did not start: {open(log.name).read()}")
                time.sleep(0.1)
        service.check_dispatcher(self.address)
        self.jobs = 0

    def pipeline(self, source: str, data_dir: str, *, image_size: int, batch_size: int,
                 seed: int):
        """The project's paper training stream (tail on the device) through the worker,
        a new job per call; returns (dataset, tail) as `project_pipeline` does."""
        from alexnet_tf import config as config_lib
        from alexnet_tf.convention import InputConvention
        from alexnet_tf.data import pipeline, service, sources

        d = config_lib.base_config().data
        d.source = "tfrecord" if source in ("tfrecord", "raw256") else "image_folder"
        d.data_dir, d.augmentation, d.augment_on_device = data_dir, "paper", True
        split = sources.load_split(d, "train")
        records = split.stream_records(
            seed=seed, start=0, examples_per_pass=len(split) // batch_size * batch_size)
        ds = pipeline.make_dataset(split, d, image_size=image_size, batch_size=batch_size,
                                   training=True, seed=seed, records=records)
        self.jobs += 1
        ds = service.distribute(ds, self.address, f"benchmark-{os.getpid()}-{self.jobs}")
        norm, light = InputConvention.from_data_config(d, image_size), pipeline.lighting(d)
        return ds, tf.function(lambda inputs: pipeline.finish_on_device(inputs, norm, light))

    def close(self):
        for process in self.processes:
            process.kill()
            process.wait()


# ---------------------------------------------------------------------- benchmarks


def _time_pipeline(make, batch_size: int, batches: int, seconds: float,
                   warm_batches: int = 2) -> float:
    """images/s of one window: a fresh pipeline (repeated), ``warm_batches`` dropped,
    then at least ``batches`` batches and ``seconds`` seconds timed."""
    ds, finish = make()
    iterator = iter(ds.repeat())
    for _ in range(warm_batches):
        batch = next(iterator)
        if finish is not None:
            finish(batch[0])
    count, start = 0, time.perf_counter()
    while count < batches or time.perf_counter() - start < seconds:
        images, _ = next(iterator)
        if finish is not None:
            images = finish(images)
        count += 1
    elapsed = time.perf_counter() - start
    del iterator
    return count * batch_size / elapsed


def input_pipelines(sources=INPUT_SOURCES, pipelines=DEFAULT_PIPELINES,
                    num_images: int = 512,
                    batch_size: int = 128, image_size: int = 227, repeats: int = 5,
                    warmup: int = 1, seconds: float = 0.0, data_dir: str | None = None,
                    wait_quiet: float = 0.0, seed: int = 0, worker_cpus=None) -> dict:
    """images/s of the plain baseline and of the project's pipeline per source.

    ``worker_cpus``: the CPUs of the "service_on_device" pipeline's worker; default: the
    first this process may use.

    Each of ``warmup + repeats`` rounds times one window of every pipeline in turn
    (fresh pipeline, 2 batches dropped, then one epoch's worth of batches and at least
    ``seconds``); warm-up rounds are dropped and the median is reported, with the
    ratio to the plain pipeline of the same source.
    """
    unknown = [s for s in sources if s not in INPUT_SOURCES]
    unknown += [p for p in pipelines if p not in INPUT_PIPELINES]
    if unknown:
        raise ValueError(f"Unknown input sources/pipelines {unknown}; expected sources from "
                         f"{INPUT_SOURCES} and pipelines from {INPUT_PIPELINES}.")
    if num_images < batch_size:
        raise ValueError(f"num_images ({num_images}) must be at least one batch ({batch_size}).")
    keep_dir = data_dir is not None
    data_dir = data_dir or tempfile.mkdtemp(prefix="alexnet_tf_input_bench_")
    cluster = None
    try:
        start = time.perf_counter()
        info = write_test_images(data_dir, num_images, seed=seed, sources=tuple(sources))
        generate_seconds = time.perf_counter() - start
        batches = max(1, num_images // batch_size)
        if "service_on_device" in pipelines:
            worker_cpus = list(worker_cpus or sorted(os.sched_getaffinity(0))[:1])
            cluster = ServiceCluster(worker_cpus, data_dir)
        makers = {}
        for source in sources:
            directory = info["dirs"][source]
            for name in pipelines:
                if name == "service_on_device":
                    makers[(source, name)] = (lambda s=source, d=directory: cluster.pipeline(
                        s, d, image_size=image_size, batch_size=batch_size, seed=seed))
                elif name == "plain":
                    makers[(source, name)] = (lambda s=source, d=directory: (
                        plain_pipeline(s, d, image_size=image_size, batch_size=batch_size,
                                       seed=seed), None))
                else:
                    makers[(source, name)] = (lambda s=source, d=directory, o=(
                        name == "project_on_device"): project_pipeline(
                        s, d, image_size=image_size, batch_size=batch_size, on_device=o,
                        seed=seed))
        rounds = {source: [] for source in sources}
        meter = LoadMeter()
        with meter:
            for source in sources:
                keys = [k for k in makers if k[0] == source]
                for round_index in range(warmup + repeats):
                    waited = wait_until_quiet(wait_quiet)
                    round_meter = LoadMeter()
                    with round_meter:
                        order = keys if round_index % 2 == 0 else keys[::-1]
                        record = {key[1]: _time_pipeline(makers[key], batch_size, batches,
                                                         seconds) for key in order}
                    record["other_cores"] = round_meter.result().get("other_cores")
                    record["waited_s"] = round(waited, 1)
                    if round_index >= warmup:
                        rounds[source].append(record)
        results = {source: _input_figures(rounds[source], pipelines) for source in sources}
        quiet = {}
        for source in sources:
            calm = [r for r in rounds[source] if r["other_cores"] is not None
                    and r["other_cores"] <= QUIET_OTHER_CORES]
            if calm and len(calm) < len(rounds[source]):
                quiet[source] = _input_figures(calm, pipelines)
        return {"benchmark": "input", "num_images": num_images, "batch_size": batch_size,
                "service_worker_cpus": (",".join(map(str, worker_cpus)) if cluster
                                        else None),
                "raw_target": raw_target(results),
                "image_size": image_size, "repeats": repeats, "warmup": warmup,
                "seconds": seconds, "images": {k: info[k] for k in ("mean_kb", "image_size")},
                "generate_seconds": round(generate_seconds, 1),
                "data_dir": data_dir if keep_dir else None,
                "sources": results, "quiet": quiet,
                "other_cores_per_round": {k: [r["other_cores"] for r in v]
                                          for k, v in rounds.items()},
                "usable_cores": usable_cores(),
                "machine": machine_info(), "load": meter.result()}
    finally:
        if cluster is not None:
            cluster.close()
        if not keep_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


def raw_target(results: dict) -> dict | None:
    """Issue 17's target from per-source figures (`_input_figures` rows): images/s of
    raw256 over stored256, both ``project_on_device``; None when either was not run."""
    try:
        raw = results["raw256"]["project_on_device"]["images_per_s"]
        stored = results["stored256"]["project_on_device"]["images_per_s"]
    except KeyError:
        return None
    ratio = raw / stored if raw and stored else None
    return {"what": "raw256 / stored256 images/s, package pipeline with the tail on the device",
            "value": ratio, "target": RAW_TARGET,
            "met": None if ratio is None else bool(ratio >= RAW_TARGET)}


def _input_figures(rounds, pipelines) -> dict:
    row = {}
    for name in pipelines:
        values = [r[name] for r in rounds]
        row[name] = {"images_per_s": median(values), "samples": [round(v, 1) for v in values]}
    base = row.get("plain", {}).get("images_per_s")
    for name in pipelines:
        if name != "plain" and base:
            row[name]["ratio_vs_plain"] = row[name]["images_per_s"] / base
            paired = [r[name] / r["plain"] for r in rounds]
            row[name]["ratio_vs_plain_paired_median"] = median(paired)
    return row


def input_scaling(cpu_sets=None, rounds: int = 2, **kwargs) -> dict:
    """`input_pipelines` once per CPU set, each in a process pinned to those cores
    (as ``taskset -c``), alternating the order over ``rounds``; images/s per core.

    TF sizes tf.data's thread pool from the process's CPU affinity, so a pinned
    process sees only its cores. Linear scaling keeps images/s per core constant.
    """
    cpu_sets = cpu_sets or default_cpu_sets()
    data_dir = kwargs.pop("data_dir", None)
    keep_dir = data_dir is not None
    data_dir = data_dir or tempfile.mkdtemp(prefix="alexnet_tf_input_bench_")
    try:
        write_test_images(data_dir, kwargs.get("num_images", 512),
                          sources=tuple(kwargs.get("sources", INPUT_SOURCES)))
        runs = {s: [] for s in cpu_sets}
        meter = LoadMeter()
        with meter:
            for r in range(rounds):
                for cpus in (cpu_sets if r % 2 == 0 else cpu_sets[::-1]):
                    args = dict(kwargs, data_dir=data_dir)
                    args["sources"] = list(args.get("sources", INPUT_SOURCES))
                    args["pipelines"] = list(args.get("pipelines", DEFAULT_PIPELINES))
                    command = worker.pinned_argv(parse_cpus(cpus), "benchmarks.input",
                                                 "--input-worker", json.dumps(args))
                    done = subprocess.run(command, capture_output=True, text=True,
                                          env=worker.env(), cwd=worker.REPO_ROOT)
                    if done.returncode:
                        raise RuntimeError(f"input worker on CPUs {cpus} failed: "
                                           f"{done.stderr[-2000:]}")
                    runs[cpus].append(json.loads(done.stdout.strip().splitlines()[-1]))
        table = {}
        for cpus, results in runs.items():
            cores = len(parse_cpus(cpus))
            row = {}
            for source in results[0]["sources"]:
                for name in results[0]["sources"][source]:
                    values = [r["sources"][source][name]["images_per_s"] for r in results]
                    rate = median(values)
                    row[f"{source}/{name}"] = {"images_per_s": rate,
                                               "images_per_s_per_core": rate / cores,
                                               "runs": [round(v, 1) for v in values]}
            table[cpus] = {"cores": cores, "pipelines": row,
                           "usable_cores_seen": results[0]["usable_cores"]}
        first = table[cpu_sets[0]]
        for cpus, row in table.items():
            for key, value in row["pipelines"].items():
                one = first["pipelines"][key]["images_per_s_per_core"]
                value["scaling_efficiency_vs_first"] = value["images_per_s_per_core"] / one
        return {"benchmark": "input_scaling", "cpu_sets": cpu_sets, "rounds": rounds,
                "settings": kwargs, "table": table, "machine": machine_info(),
                "load": meter.result()}
    finally:
        if not keep_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--input-worker"]:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.WARNING)
        print(json.dumps(input_pipelines(**json.loads(sys.argv[2]))))
    else:
        sys.exit("usage: python -m benchmarks.input --input-worker JSON "
                 "(internal; use tools/benchmark.py)")


def raw_stages(data_dir: str, batch_size: int = 128, repeats: int = 3,
               seconds: float = 0.0) -> dict:
    """Where a raw record's time goes: images/s of the raw256 source's pipeline built up
    stage by stage (``data_dir``/raw256 from `write_test_images`), each a median over
    ``repeats`` interleaved windows; no tail."""
    from alexnet_tf import config as config_lib
    from alexnet_tf.data import pipeline, preprocess, sources, tfrecords

    d = config_lib.base_config().data
    d.source, d.data_dir, d.augment_on_device = "tfrecord", os.path.join(data_dir, "raw256"), True
    split = sources.load_split(d, "train")
    files, shape = list(split.files), tuple(split.image_shape)
    seed = tf.constant([1, 2], tf.int64)

    def crop(encoded, label):
        image, _ = preprocess.paper_crop(tfrecords.raw_pixels(encoded, shape), seed,
                                         image_size=227, resize_size=shape[0], orientation=1)
        return {"image": image, "flip": preprocess.flip_draw(seed),
                "alpha": preprocess.lighting_draw(0.1, seed)}, label

    def shards():
        return tf.data.TFRecordDataset(files, buffer_size=8 << 20)

    parse = lambda record: tfrecords.parse(record)[:2]  # noqa: E731
    auto = tf.data.AUTOTUNE
    stages = {
        "read the shards": lambda: shards().map(lambda record: (record, 0)).batch(batch_size),
        "+ parse": lambda: shards().map(parse, num_parallel_calls=auto).batch(batch_size),
        "+ parse, crop, draws": lambda: shards().map(parse, num_parallel_calls=auto).map(
            crop, num_parallel_calls=auto).batch(batch_size),
        "+ shuffle buffer before them": lambda: shards().shuffle(
            split.shuffle_buffer, seed=1).map(parse, num_parallel_calls=auto).map(
            crop, num_parallel_calls=auto).batch(batch_size),
        "DataSource.records, crop, draws": lambda: split.records(training=True).map(
            lambda e, label, p, n: crop(e, label), num_parallel_calls=auto).batch(batch_size),
        "make_dataset (the package)": lambda: pipeline.make_dataset(
            split, d, image_size=227, batch_size=batch_size, training=True),
    }
    batches = max(1, len(split) // batch_size)
    samples = {name: [] for name in stages}
    for round_index in range(repeats):
        order = list(stages) if round_index % 2 == 0 else list(stages)[::-1]
        for name in order:
            samples[name].append(_time_pipeline(lambda n=name: (stages[n](), None),
                                                batch_size, batches, seconds))
    return {"benchmark": "raw_stages", "batch_size": batch_size, "repeats": repeats,
            "stages": {name: {"images_per_s": median(v), "samples": [round(x, 1) for x in v]}
                       for name, v in samples.items()},
            "machine": machine_info(), "usable_cores": usable_cores()}
