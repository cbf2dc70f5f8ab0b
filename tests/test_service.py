"""tf.data service input (issue 17), on loopback: the address checks, a dispatcher and two
workers as subprocesses (`alexnet-data-service`), the training stream through them
(every example once per pass, with its label), training through the service, a worker
killed mid-stream, and the binary's errors."""

import collections
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import config as config_lib
from alexnet_tf import errors
from alexnet_tf.data import pipeline, service, sources, tfrecords
from alexnet_tf.train import loop
from conftest import REPO_ROOT
from test_distribute import _free_ports
from test_pipeline import _write_shards
from test_train import _demo_config

SERVICE = [sys.executable, "-m", "alexnet_tf.cli.data_service"]


class Cluster:
    """A dispatcher and ``workers`` workers, each a subprocess logging to a file."""

    def __init__(self, directory, workers=2, worker_timeout=2.0, journal=None):
        self.directory = directory
        ports = _free_ports(1 + workers)
        self.address = f"grpc://localhost:{ports[0]}"
        self.processes, self.logs = [], []
        self.dispatcher_args = ["dispatcher", f"--port={ports[0]}",
                                f"--worker_timeout={worker_timeout}"]
        if journal:
            self.dispatcher_args.append(f"--work_dir={journal}")
        self._start(self.dispatcher_args, "dispatcher at")
        for port in ports[1:]:
            self._start(["worker", f"--dispatcher=localhost:{ports[0]}", f"--port={port}",
                         "--worker_host=localhost"], "worker at")

    def _start(self, args, ready):
        log = self.directory / f"{args[0]}{len(self.logs)}.log"
        with open(log, "w") as out:
            self.processes.append(subprocess.Popen(SERVICE + args, stdout=out,
                                                   stderr=subprocess.STDOUT, cwd=REPO_ROOT))
        self.logs.append(log)
        deadline = time.monotonic() + 120
        while ready not in log.read_text():
            if self.processes[-1].poll() is not None or time.monotonic() > deadline:
                self.close()
                raise AssertionError(f"{args[0]} did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)

    def restart_dispatcher(self):
        """Kills the dispatcher (-9) and starts it again on its port."""
        self.processes[0].send_signal(signal.SIGKILL)
        self.processes[0].wait()
        self._start(self.dispatcher_args, "dispatcher at")
        self.processes[0] = self.processes.pop()

    def kill_worker(self, i):
        self.processes[1 + i].send_signal(signal.SIGKILL)
        self.processes[1 + i].wait()

    def close(self):
        for process in self.processes:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("service"))
    yield c
    c.close()


def _read(dataset, count, seconds=120):
    """The first ``count`` elements of ``dataset``, read on a thread: a stream that stops
    delivering fails the test instead of hanging it."""
    out, errors = [], []

    def read():
        try:
            for element in dataset.take(count):
                out.append(element)
        except Exception as error:  # reported below, on the test's thread
            errors.append(error)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    thread.join(seconds)
    if errors:
        raise errors[0]
    assert not thread.is_alive(), f"the stream stopped after {len(out)} of {count} elements"
    return out


# --- addresses and the dispatcher check (no cluster) ------------------------------------

@pytest.mark.parametrize("address, problem", [
    ("grpc://localhost:5050", ""), ("host.example:1", ""), ("grpc://[::1]:5050", ""),
    ("http://localhost:5050", "the protocol 'grpc'"), ("localhost", "'grpc://HOST:PORT'"),
    ("grpc://host:0", "a port between 1 and 65535"), ("grpc://host:70000", "a port between"),
    ("grpc://host:50 50", "'grpc://HOST:PORT'"),
])
def test_addresses_are_checked(address, problem):
    if problem:
        assert problem in service.address_problem(address)
        with pytest.raises(service.ServiceError, match="expected"):
            service.split_address(address)
    else:
        assert service.address_problem(address) == ""
        assert service.target(address).startswith("grpc://")


def test_config_refuses_a_bad_address_and_a_tfds_source():
    c = config_lib.base_config()
    c.data.service_address = "localhost"
    with pytest.raises(config_lib.ConfigError, match="'data.service_address' is 'localhost'"):
        config_lib.validate(c)
    c.data.service_address, c.data.source = "grpc://localhost:5050", "tfds"
    c.data.tfds_name = "imagenet2012"
    with pytest.raises(config_lib.ConfigError, match="tools/build_tfrecords.py"):
        config_lib.validate(c)


def test_config_refuses_a_negative_stall_time():
    c = config_lib.base_config()
    c.data.service_stall_seconds = -1.0
    with pytest.raises(config_lib.ConfigError, match="'data.service_stall_seconds' is -1.0"):
        config_lib.validate(c)


def test_no_dispatcher_fails_fast_naming_the_address():
    port, = _free_ports(1)
    start = time.monotonic()
    with pytest.raises(service.ServiceError) as error:
        service.check_dispatcher(f"grpc://localhost:{port}", timeout=5)
    assert time.monotonic() - start < 5
    message = str(error.value)
    assert f"localhost:{port}" in message and "alexnet-data-service dispatcher" in message
    assert "data.service_address" in message


def test_a_server_that_is_not_a_dispatcher_is_named():
    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(1))
    port = server.add_insecure_port("localhost:0")
    server.start()
    try:
        with pytest.raises(service.ServiceError, match="is not a tf.data service dispatcher"):
            service.check_dispatcher(f"localhost:{port}", timeout=5)
    finally:
        server.stop(0)


def test_training_refuses_an_unreachable_service_before_writing(small_demo_dir, tmp_path):
    config = _demo_config(small_demo_dir)
    port, = _free_ports(1)
    config.data.service_address = f"grpc://localhost:{port}"
    workdir = tmp_path / "run"
    with pytest.raises(service.ServiceError, match=f"localhost:{port}"):
        loop.train_and_evaluate(config, str(workdir))
    assert not workdir.exists() or not any(workdir.iterdir())


# --- the stream (no cluster) ---------------------------------------------------------------

def _folder_split(directory, count=70, classes=7):
    """``count`` tiny files; file i holds its number and has label i % classes."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"{i}.bin"
        path.write_bytes(str(i).encode())
        paths.append(str(path))
    return sources.ImageFolderSource(np.array(paths), np.arange(count, dtype=np.int32) % classes,
                                     tuple(f"c{i}" for i in range(classes)))


def _tfrecord_split(directory, count=40, classes=4, shards=4):
    examples = [tfrecords.make_example(b"x" * (i + 1), i % classes, filename=f"img{i}")
                for i in range(count)]
    _write_shards(directory, examples, shards=shards)
    files = tuple(str(directory / f"train-{s:05d}-of-{shards:05d}") for s in range(shards))
    return sources.TFRecordSource(files, count, tuple(f"c{i}" for i in range(classes)),
                                  shuffle_buffer=8)


def _folder_elements(elements, split):
    """(pass, file index) per element, its content and label checked against the file."""
    n, out = len(split), []
    for encoded, label, key, name in elements:
        pass_index, index = divmod(int(key), n)
        assert encoded.numpy() == str(index).encode() and name.numpy().decode() == split.paths[index]
        assert int(label) == split.labels[index]
        out.append((pass_index, index))
    return out


def test_a_folder_stream_is_pass_after_pass_of_a_fresh_permutation(tmp_path):
    split = _folder_split(tmp_path)
    per_pass = 64  # e.g. 4 steps of 16: the last 6 of each permutation are left out
    got = _folder_elements(split.stream_records(seed=5, start=0, examples_per_pass=per_pass)
                           .take(3 * per_pass), split)
    passes = [[index for p, index in got[k * per_pass:(k + 1) * per_pass]] for k in range(3)]
    for k, indices in enumerate(passes):
        assert [p for p, _ in got[k * per_pass:(k + 1) * per_pass]] == [k] * per_pass
        assert len(set(indices)) == per_pass  # each example at most once per pass
    assert passes[0] != passes[1] and set(passes[0]) != set(passes[1])  # fresh permutations
    # A run resumed at step s of 16 starts at example 16 s of the same stream.
    resumed = _folder_elements(split.stream_records(seed=5, start=80, examples_per_pass=per_pass)
                               .take(20), split)
    assert resumed == got[80:100]
    # Another seed, another order.
    other = _folder_elements(split.stream_records(seed=6, start=0, examples_per_pass=per_pass)
                             .take(per_pass), split)
    assert [i for _, i in other] != passes[0]


def test_a_folder_stream_gives_each_example_the_local_pipelines_augmentation_seed(tmp_path):
    # key = pass * N + index: the seed (seed, epoch * N + position) of the local pipeline.
    split = _folder_split(tmp_path)
    for encoded, label, key, name in split.stream_records(seed=1, start=130,
                                                          examples_per_pass=64).take(5):
        index = int(encoded.numpy())
        assert int(key) == 2 * len(split) + index  # example 130 is in pass 2


def test_a_tfrecord_stream_is_whole_shards_each_record_once_per_pass(tmp_path):
    split = _tfrecord_split(tmp_path / "records")
    # 100 elements: passes 0 and 1 whole, pass 2 begun (a shuffle buffer of 8 and four
    # shards read at once mix the passes near their boundaries).
    elements = list(split.stream_records(seed=2, start=0, examples_per_pass=40).take(100))
    by_pass = collections.defaultdict(list)
    for encoded, label, key, name in elements:
        key = int(key)
        pass_index, shard, offset = key >> 40, (key >> 24) & 0xFFFF, key & 0xFFFFFF
        i = int(name.numpy().decode()[3:])
        assert len(encoded.numpy()) == i + 1 and int(label) == i % 4
        assert (shard, offset) == (i % 4, i // 4)  # _write_shards: example i in shard i % 4
        by_pass[pass_index].append(i)
    assert sorted(by_pass) == [0, 1, 2]
    assert sorted(by_pass[0]) == sorted(by_pass[1]) == list(range(40))
    assert len(set(by_pass[2])) == len(by_pass[2]) == 20
    with pytest.raises(ValueError, match="examples_per_pass=41"):
        split.stream_records(seed=2, start=0, examples_per_pass=41)


def test_a_tfds_source_refuses_to_stream():
    tfds_split = object.__new__(sources.SOURCES["tfds"])  # the refusal reads no attribute
    with pytest.raises(sources.DataError, match="tools/build_tfrecords.py"):
        tfds_split.stream_records(seed=0, start=0, examples_per_pass=1)


# --- through a dispatcher and two workers ---------------------------------------------------

def test_each_example_comes_once_per_pass_with_its_label(cluster, tmp_path):
    split = _folder_split(tmp_path)
    per_pass = 64
    stream = split.stream_records(seed=3, start=0, examples_per_pass=per_pass).batch(8)
    served = service.distribute(stream, cluster.address, f"test-once-{os.getpid()}")
    batches = _read(served, 10 * per_pass // 8)
    got = _folder_elements([tuple(t[j] for t in batch) for batch in batches for j in range(8)],
                           split)
    assert max(collections.Counter(got).values()) == 1  # never twice
    # With no worker lost, each pass's examples all come, once each; the workers' order
    # mixes passes (a worker slowed by a busy machine delivers its part of a pass later),
    # so ten passes are read and the first two checked whole.
    local = _folder_elements(split.stream_records(seed=3, start=0, examples_per_pass=per_pass)
                             .take(2 * per_pass), split)
    assert set(local) <= set(got)
    assert {p for p, _ in got} >= set(range(8))


def test_a_killed_worker_costs_what_it_held_not_the_stream(tmp_path):
    # A cluster of its own: one of its workers is killed mid-pass.
    cluster = Cluster(tmp_path, workers=2)
    try:
        split = _folder_split(tmp_path / "split", count=400, classes=7)
        per_pass, batch = 384, 8
        stream = split.stream_records(seed=4, start=0, examples_per_pass=per_pass).batch(batch)
        iterator = iter(service.distribute(stream, cluster.address, "test-killed"))
        before = [next(iterator) for _ in range(10)]
        cluster.kill_worker(0)
        # Three passes' worth more: without the stream's end to wait for, a dead worker's
        # unfinished work does not hold the reader (one job per epoch would hang here).
        after = _read(tf.data.Dataset.from_generator(
            lambda: iterator, output_signature=iterator.element_spec), 3 * per_pass // batch)
    finally:
        cluster.close()
    got = _folder_elements([tuple(t[j] for t in b) for b in before + after
                            for j in range(batch)], split)
    assert max(collections.Counter(got).values()) == 1  # never twice, a dead worker or not
    # What is lost: the units the killed worker had taken and not delivered, from the
    # passes it was reading; the stream goes on past them. Bounded by the worker's
    # buffers (its prefetched batches and units in flight): 16 to 40 in three runs here.
    expected = set(_folder_elements(split.stream_records(
        seed=4, start=0, examples_per_pass=per_pass).take(2 * per_pass), split))
    lost = expected - set(got)
    assert len(lost) <= 8 * sources.STREAM_CHUNK, len(lost)
    assert {p for p, _ in got} >= {0, 1, 2}


def _service_config(small_demo_dir, cluster, **train):
    config = _demo_config(small_demo_dir, **dict(dict(steps_per_epoch=4, total_epochs=2,
                                                      warmup_epochs=0), **train))
    config.data.service_address = cluster.address
    return config


def test_workers_name_the_bad_records_they_skip(cluster, tmp_path):
    # The trainer never sees a bad record in service mode: the worker that meets it names
    # it in its own log. Files deleted after listing (or missing on a worker's machine)
    # and a file that is no image, each named with its reason.
    from PIL import Image

    for i in range(16):
        path = tmp_path / "train" / f"c{i % 2}" / f"img{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((40, 40, 3), 10 * i, np.uint8)).save(path)
    (tmp_path / "train" / "c0" / "img00.png").write_bytes(b"not an image")
    split = sources.ImageFolderSource.from_directory(str(tmp_path), "train")
    lost = [p for p in split.paths if p.endswith(("img03.png", "img08.png"))]
    for path in lost:
        os.remove(path)
    d = config_lib.base_config().data
    d.resize_size = 40
    stream = split.stream_records(seed=0, start=0, examples_per_pass=16)
    batches = pipeline.make_dataset(split, d, image_size=32, batch_size=2, training=True,
                                    records=stream)
    served = service.distribute(batches, cluster.address, f"test-bad-{os.getpid()}")
    assert len(_read(served, 26)) == 26  # 52 examples: the 13 good ones of four passes
    logs = "".join(log.read_text() for log in cluster.logs[1:])
    for path in lost:
        assert f'skipping bad record "{path}" - "could not be read' in logs
    named = {line.split('"')[1] for line in logs.splitlines() if "could not be read" in line}
    assert named == set(lost)  # a worker's units are not consecutive: no false alarms
    assert f'skipping bad record "{tmp_path / "train" / "c0" / "img00.png"}" - "not ' in logs
    # data.on_bad_record="fail": the worker's refusal reaches the trainer, naming the file.
    d.on_bad_record = "fail"
    strict = service.distribute(pipeline.make_dataset(
        split, d, image_size=32, batch_size=2, training=True, records=stream),
        cluster.address, f"test-fail-{os.getpid()}")
    with pytest.raises(tf.errors.InvalidArgumentError) as caught:
        _read(strict, 26)
    assert errors.bad_record_in(caught.value).split(" - ")[0] in lost + [
        str(tmp_path / "train" / "c0" / "img00.png")]


def test_a_wait_for_batches_is_reported_while_it_lasts(cluster):
    # TF's client waits without end for a cluster that delivers nothing; the trainer says
    # so every data.service_stall_seconds, with the workers the dispatcher lists. Timed
    # with wide margins: the test machine may be busy.
    said = []

    def until(condition, seconds=30.0):
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline, said
            time.sleep(0.05)
        return time.monotonic()

    with service.StallWatch(cluster.address, 0.5, said.append) as watch:
        time.sleep(1.5)  # outside `waiting` (evaluation, checkpoints): not counted
        assert said == []
        with watch.waiting(6):
            until(lambda: len(said) >= 4)  # again and again while the wait lasts
        # A stall right after a long one (the next step's wait) is warned about on its
        # own schedule (it was warned only once it had lasted as long as the one before).
        with watch.waiting(9):
            started = time.monotonic()
            warned = until(lambda: any("(waiting for step 10)" in line for line in said))
        assert warned - started < 1.5, said
        time.sleep(1.0)  # a warning the thread was already writing
        count = len(said)
        time.sleep(1.5)
        assert len(said) == count  # the batch came: quiet
    assert said[0].startswith(f"No training batch from the tf.data service at "
                              f"{cluster.address} for ")
    assert "(waiting for step 7); the dispatcher lists 2 worker(s): localhost:" in said[0]
    port, = _free_ports(1)
    gone = f"grpc://localhost:{port}"
    with service.StallWatch(gone, 0.3, said.append) as watch, watch.waiting(0):
        until(lambda: f"No tf.data service dispatcher answers at {gone!r}" in said[-1])
    before = len(said)
    with service.StallWatch(gone, 0, said.append) as watch, watch.waiting(0):
        time.sleep(0.5)  # 0: off
    assert len(said) == before


@pytest.mark.slow
def test_training_reads_its_batches_through_the_service_and_resumes(small_demo_dir, cluster,
                                                                    tmp_path, monkeypatch):
    said = []
    monkeypatch.setattr(loop.logging, "info", lambda message, *args: said.append(
        message % args if args else message))
    workdir = str(tmp_path / "run")
    metrics = loop.train_and_evaluate(_service_config(small_demo_dir, cluster), workdir)
    assert metrics["step"] == 8 and metrics["epoch"] == 2
    started = [line for line in said if line.startswith("Training input from the tf.data")]
    assert len(started) == 1 and cluster.address in started[0], said
    assert "from example 0 of the run's stream" in started[0]
    # Resumed with one more epoch: a new job, from the example its step count gives.
    said.clear()
    metrics = loop.train_and_evaluate(_service_config(small_demo_dir, cluster, total_epochs=3),
                                      workdir, allow_config_change=True)
    assert metrics["step"] == 12
    started = [line for line in said if line.startswith("Training input from the tf.data")]
    assert len(started) == 1 and "-step8-" in started[0], said
    assert "from example 256 of the run's stream" in started[0]  # 8 steps of 32


# --- the binary ---------------------------------------------------------------------------

def _service_command(*args, timeout=120):
    return subprocess.run(SERVICE + list(args), capture_output=True, text=True, cwd=REPO_ROOT,
                          timeout=timeout)


@pytest.mark.parametrize("args, says", [
    ((), "give the role, 'dispatcher' or 'worker'"),
    (("trainer",), "give the role"),
    (("dispatcher", "--dispatcher=localhost:5050"), "--dispatcher: not a flag of the dispatcher"),
    (("worker", "--dispatcher=localhost:5050", "--work_dir=/tmp/x"),
     "--work_dir: not a flag of the worker"),
    (("worker",), "a worker needs --dispatcher=HOST:PORT"),
    (("dispatcher", "--port=70000"), "--port=70000: expected 0 (any free port) to 65535"),
    (("dispatcher", "--worker_timeout=nan"), "--worker_timeout=nan: expected seconds from 0.1"),
    (("worker", "--dispatcher=localhost:5050", "--timeout=inf"), "--timeout=inf: expected"),
])
def test_the_binary_refuses_wrong_flags_in_one_line(args, says):
    result = _service_command(*args)
    assert result.returncode == 2, result.stderr[-2000:]
    assert says in result.stderr


def test_a_port_in_use_and_a_silent_dispatcher_are_one_line_each():
    holder = socket.socket()
    holder.bind(("0.0.0.0", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        result = _service_command("dispatcher", f"--port={port}")
        worker = _service_command("worker", f"--dispatcher=localhost:{port}", "--timeout=2")
    finally:
        holder.close()
    assert result.returncode == 1
    assert f"Port {port} is in use by another program" in result.stderr
    assert "Traceback" not in result.stderr
    assert worker.returncode == 1 and "Traceback" not in worker.stderr
    assert f"No tf.data service dispatcher answers at 'localhost:{port}'" in worker.stderr
    assert "--dispatcher" in worker.stderr.splitlines()[-1]


@pytest.mark.slow
def test_two_training_workers_share_one_job_and_go_on_when_a_worker_is_killed(small_demo_dir,
                                                                              tmp_path):
    # MultiWorkerMirroredStrategy: both trainers agree on the job's name (a collective at
    # start), so the dispatcher shares the stream between them. One of the two service
    # workers is killed at the first step's log line: training goes on, both trainers
    # finish with the same weights.
    import json
    import re

    cluster = Cluster(tmp_path, workers=2)
    trainers = [f"localhost:{p}" for p in _free_ports(2)]
    command = [sys.executable, "-m", "alexnet_tf.train", "--config=configs/demo.py",
               f"--workdir={tmp_path / 'run'}", f"--config.data.data_dir={small_demo_dir}",
               "--config.data.demo_train_per_class=60", "--config.data.demo_val_per_class=20",
               "--config.train.global_batch_size=16", "--config.train.total_epochs=3",
               "--config.train.steps_per_epoch=4", "--config.train.warmup_epochs=0",
               "--config.train.log_every_steps=1", "--config.eval.global_batch_size=100",
               f"--config.data.service_address={cluster.address}"]
    logs = [tmp_path / f"trainer{i}.log" for i in range(2)]
    processes = []
    try:
        for index in range(2):
            tf_config = {"cluster": {"worker": trainers},
                         "task": {"type": "worker", "index": index}}
            env = dict(os.environ, TF_CONFIG=json.dumps(tf_config))
            with open(logs[index], "w") as out:
                processes.append(subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=out,
                                                  stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 300
        while "epoch 1/3 step 1:" not in logs[0].read_text():
            assert all(p.poll() is None for p in processes), logs[0].read_text()[-3000:]
            assert time.monotonic() < deadline, logs[0].read_text()[-3000:]
            time.sleep(0.05)
        cluster.kill_worker(0)
        for process in processes:
            process.wait(timeout=420)
    finally:
        for process in processes:
            process.kill()
        cluster.close()
    outputs = [log.read_text() for log in logs]
    for process, out in zip(processes, outputs):
        assert process.returncode == 0, out[-3000:]
        assert out.index("epoch 1/3 step 1:") < out.index("epoch 3/3 done")
    jobs = [re.search(r"tf.data service at \S+ \(job (\S+)\)", out) for out in outputs]
    assert all(jobs) and jobs[0].group(1) == jobs[1].group(1), [out[-1500:] for out in outputs]
    checksums = [re.search(r"weights checksum (\S+)\.$", out, re.M).group(1) for out in outputs]
    assert checksums[0] == checksums[1]


def test_a_dispatcher_restarted_from_its_journal_keeps_the_job(tmp_path):
    # --work_dir: the journal of registered datasets and jobs (fault-tolerant mode). The
    # reader and the workers reconnect to the restarted dispatcher; the job goes on.
    cluster = Cluster(tmp_path, workers=2, journal=tmp_path / "journal")
    try:
        split = _folder_split(tmp_path / "split", count=400, classes=7)
        stream = split.stream_records(seed=6, start=0, examples_per_pass=384).batch(8)
        iterator = iter(service.distribute(stream, cluster.address, "test-journal"))
        before = [next(iterator) for _ in range(5)]
        cluster.restart_dispatcher()
        assert any((tmp_path / "journal").iterdir())
        after = _read(tf.data.Dataset.from_generator(
            lambda: iterator, output_signature=iterator.element_spec), 60)
    finally:
        cluster.close()
    got = _folder_elements([tuple(t[j] for t in b) for b in before + after for j in range(8)],
                           split)
    assert len(got) == 520 and max(collections.Counter(got).values()) == 1


def test_a_second_dispatcher_on_a_dispatchers_port_is_refused(cluster):
    # gRPC listens with SO_REUSEPORT: without the check, a second dispatcher would start
    # and share the port, and workers and trainers would split between the two.
    port = cluster.address.rsplit(":", 1)[1]
    result = _service_command("dispatcher", f"--port={port}")
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"Port {port} is in use by another program" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_journal_file_and_an_unresolvable_worker_host_are_one_line_each(cluster, tmp_path):
    journal = tmp_path / "journal"
    journal.write_text("not a directory")
    result = _service_command("dispatcher", "--port=0", f"--work_dir={journal}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"--work_dir {str(journal)!r} is a file; expected a directory" in result.stderr
    dispatcher = cluster.address.split("://")[1]
    result = _service_command("worker", f"--dispatcher={dispatcher}", "--port=0",
                              "--worker_host=no-such-host.invalid")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "--worker_host='no-such-host.invalid' does not resolve" in result.stderr


@pytest.mark.slow
def test_training_reports_a_stalled_service_and_goes_on_when_a_worker_comes(
        small_demo_dir, tmp_path, monkeypatch):
    # The trainer waits for batches no worker produces: it says so, with the step and the
    # dispatcher's (empty) worker list, and trains on once a worker registers.
    lonely = Cluster(tmp_path, workers=0)
    said = []
    monkeypatch.setattr(loop.logging, "warning", lambda message, *args: said.append(
        message % args if args else message))
    outcome = []
    try:
        config = _service_config(small_demo_dir, lonely, total_epochs=1)
        config.data.service_stall_seconds = 1.0
        thread = threading.Thread(target=lambda: outcome.append(
            loop.train_and_evaluate(config, str(tmp_path / "run"))), daemon=True)
        thread.start()
        deadline = time.monotonic() + 180
        while not any(line.startswith("No training batch") for line in said):
            assert thread.is_alive() and time.monotonic() < deadline, said
            time.sleep(0.2)
        stalled = next(line for line in said if line.startswith("No training batch"))
        assert "(waiting for step 1); the dispatcher lists 0 worker(s)." in stalled
        # Said once at start already (README: "With no worker registered yet, training
        # says so and waits for the first").
        assert any(line.startswith("No worker is registered with the tf.data service at "
                                   + lonely.address) for line in said), said
        port, = _free_ports(1)
        lonely._start(["worker", f"--dispatcher={lonely.address[len('grpc://'):]}",
                       f"--port={port}", "--worker_host=localhost"], "worker at")
        thread.join(300)
        assert not thread.is_alive() and outcome[0]["step"] == 4
    finally:
        lonely.close()
