"""Training input from a tf.data service cluster: preprocessing on a pool of CPU machines.

The paper ran its augmentation on the CPU while the GPUs trained, and called it
"computationally free" (Sec. 4.1). At today's rates one machine's cores no longer keep
up (docs/BENCHMARKS.md, "Sizing the input"); tf.data service
(``tf.data.experimental.service``) moves the pipeline onto other machines: one
dispatcher, any number of workers (``alexnet-data-service dispatcher|worker``), and the
trainer reads finished batches from them over gRPC.

With ``data.service_address`` set (``grpc://host:5050``), the trainer reads its
training batches from the cluster: each worker runs the training pipeline of
`alexnet_tf.data.pipeline.make_dataset` on an unbounded stream of the split
(`alexnet_tf.data.sources.DataSource.stream_records`) and batches it to the per-replica
batch; evaluation reads the evaluation split locally.

* The stream: pass after pass over the split, each pass in its own order drawn from
  (seed, pass) by ``tf.random.experimental.index_shuffle`` (image folders: the first
  steps-per-epoch x global-batch examples of a permutation of the split, as the local
  pipeline drops its last partial batch; TFRecords: a permutation of the shard files,
  whole shards, then a shuffle buffer on each worker). Example i of the stream is the
  i-th example the run trains on when no worker is lost, so a run at step s is at
  example s x global batch of its stream. Image-folder examples get the augmentation
  draws the local pipeline gives them in the same epoch.
* Processing mode: ``distributed_epoch`` (``ShardingPolicy.DYNAMIC``): the dispatcher
  hands out the stream's units (`sources.STREAM_CHUNK` consecutive examples, or one shard
  file) to whichever worker asks next, so workers may join or leave at any time. Each
  example of the stream is delivered at most once; with no worker lost, exactly once.
  Static sharding was not chosen: it needs a fixed worker list, and each trainer
  reading only from a worker on its own machine.
* A worker that dies loses what it had taken and not yet delivered: the examples in its
  pipeline's buffers (a few batches and the units in flight; a TFRecord worker also the
  rest of its shard files and its shuffle buffer). The stream does not end, so the
  trainer goes on reading from the others; the lost examples are not trained on in
  that pass, and the epochs that follow take their examples a little further along the
  stream. Order follows the workers' speeds, so an epoch's steps hold the examples of
  about one pass: those near a pass boundary may fall in the neighbouring epoch.
  (One job per epoch was tried first: a lost worker's unfinished task keeps the epoch
  from ending, and TensorFlow's client then waits for it without end.)
* Resumption: a resumed run starts a new job at the stream position its step count
  gives (step x global batch), so it trains on the examples the interrupted run had
  not reached; what the interrupted run had fetched but not trained on is not
  repeated. The step count, the schedule and the checkpoint are exact; exactly which
  examples surround the resume point is not (the local pipeline's resumption is exact).
* Several replicas (MirroredStrategy) read one stream of per-replica batches; several
  training workers (MultiWorkerMirroredStrategy) read one job, whose name they agree on
  at start, so the dispatcher shares the stream's examples among them, each at most
  once.
* Bad records are skipped and named on the worker's stderr (the worker's log), not
  counted in the trainer's epoch summary; that includes files a worker cannot read
  (``data.data_dir`` must name the same files on every worker's machine). MixUp and
  CutMix run on the trainer.
* A cluster that delivers nothing (no worker, or workers that cannot read a single
  example) would leave the trainer waiting without a word: `StallWatch` says so every
  ``data.service_stall_seconds``, with the workers the dispatcher knows.

Every training start is a job of its own on the dispatcher, named after the run's work
directory, the step it starts at and a number the training workers agree on at start
(`job_name`): two runs never share a job, and a restarted run does not join its
predecessor's half-read job.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import threading
import time

from alexnet_tf.errors import UserError

PROTOCOL = "grpc"
DEFAULT_PORT = 5050
# Elements leave the workers uncompressed unless set: see docs/BENCHMARKS.md, "One tf.data
# service worker" (snappy costs a worker's CPU and gains little on pixels).
_COMPRESSION = None
PROCESSING_MODE = "distributed_epoch"  # tf.data.experimental.service.ShardingPolicy.DYNAMIC
# The dispatcher's gRPC service (tensorflow/core/data/service/dispatcher.proto); its
# GetVersion and GetWorkers requests are empty messages, so they need no generated code.
_DISPATCHER_SERVICE = "/tensorflow.data.DispatcherService/"

_ADDRESS = re.compile(r"^(?:(?P<protocol>[a-z]+)://)?(?P<host>\[[0-9a-fA-F:]+\]|[^:/\s]+)"
                      r":(?P<port>[0-9]+)$")


class ServiceError(UserError, ConnectionError):
    """A tf.data service address that is malformed, or where no dispatcher answers."""


def address_problem(address: str) -> str:
    """Why ``address`` is not a dispatcher address ("" when it is one): ``host:port`` or
    ``grpc://host:port``, port 1-65535. Imports nothing, so `alexnet_tf.config` can use
    it."""
    if not isinstance(address, str):
        return f"a string such as 'grpc://host:{DEFAULT_PORT}'"
    match = _ADDRESS.match(address)
    if not match:
        return f"'grpc://HOST:PORT' or 'HOST:PORT' (e.g. 'grpc://localhost:{DEFAULT_PORT}')"
    if match["protocol"] not in (None, PROTOCOL):
        return f"the protocol {PROTOCOL!r} (grpc://HOST:PORT); {match['protocol']!r} is not one"
    if not 0 < int(match["port"]) < 65536:
        return "a port between 1 and 65535"
    return ""


def split_address(address: str) -> tuple[str, str]:
    """``(protocol, "host:port")`` of a checked address (ServiceError when malformed)."""
    problem = address_problem(address)
    if problem:
        raise ServiceError(f"tf.data service address {address!r}: expected {problem}.")
    match = _ADDRESS.match(address)
    return PROTOCOL, f"{match['host']}:{match['port']}"


def target(address: str) -> str:
    """``grpc://host:port``, the form ``tf.data.experimental.service`` takes."""
    protocol, host_port = split_address(address)
    return f"{protocol}://{host_port}"


def _call(host_port: str, method: str, timeout: float) -> bytes:
    import grpc  # core dependency (tensorflow-serving-api's); imported when used

    channel = grpc.insecure_channel(host_port)
    try:
        call = channel.unary_unary(_DISPATCHER_SERVICE + method,
                                   request_serializer=lambda message: message,
                                   response_deserializer=lambda message: message)
        return call(b"", timeout=timeout)
    finally:
        channel.close()


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at


def _length_delimited(data: bytes, field: int) -> list[bytes]:
    """The values of one length-delimited field of a serialized protobuf message (the
    other fields skipped by wire type)."""
    values, at = [], 0
    while at < len(data):
        key, at = _varint(data, at)
        wire = key & 7
        if wire == 0:
            _, at = _varint(data, at)
        elif wire == 1:
            at += 8
        elif wire == 5:
            at += 4
        elif wire == 2:
            size, at = _varint(data, at)
            if key >> 3 == field:
                values.append(data[at:at + size])
            at += size
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
    return values


def check_dispatcher(address: str, timeout: float = 10.0,
                     setting: str = "data.service_address") -> list[str]:
    """Asks the dispatcher at ``address`` for its workers, within ``timeout`` seconds.

    TensorFlow's client retries an unreachable dispatcher forever (it logs "Will retry"
    every few seconds), so a wrong address would hang training; this check fails first.

    Returns:
      The addresses of the workers registered with it (may be empty: the workers may
      start later; training then waits for the first).
    Raises:
      ServiceError: a malformed address, nothing listening, a host that does not
        resolve, no answer in time, or a server that is not a tf.data dispatcher (e.g.
        a worker's port), naming the address, the reason and ``setting`` (the flag or
        config key that gave the address).
    """
    import grpc

    _, host_port = split_address(address)
    start = ("start one with `alexnet-data-service dispatcher --port=PORT` on that host, "
             f"or correct {setting}")
    try:
        _call(host_port, "GetVersion", timeout)
        reply = _call(host_port, "GetWorkers", timeout)
    except grpc.RpcError as error:
        code = error.code()
        if code == grpc.StatusCode.UNIMPLEMENTED:
            raise ServiceError(
                f"{address!r} answers, but is not a tf.data service dispatcher (it does not "
                f"implement the dispatcher's requests; a worker's port?): {start}.") from None
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            reason = f"no answer within {timeout:g} s"
        else:
            reason = (error.details() or code.name).split("; last error: ")[-1]
        raise ServiceError(f"No tf.data service dispatcher answers at {address!r} "
                           f"({reason}): {start}.") from None
    return [_length_delimited(info, 1)[0].decode() for info in _length_delimited(reply, 1)]


def job_name(workdir: str, step: int, nonce: int) -> str:
    """The name of the job a training start reads: the run (its work directory), the
    step it starts at and ``nonce`` (drawn at start and agreed by the training workers),
    so that every start gets a fresh job."""
    run = hashlib.sha256(os.path.abspath(workdir).encode()).hexdigest()[:12]
    return f"alexnet_tf-{run}-step{step}-{nonce:08x}"


def distribute(dataset, address: str, job: str):
    """``dataset`` (a worker-side pipeline of per-replica batches) processed by the
    tf.data service at ``address`` in ``distributed_epoch`` mode and read as job
    ``job``."""
    import tensorflow as tf

    served = dataset.apply(tf.data.experimental.service.distribute(
        processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
        service=target(address), job_name=job, compression=_COMPRESSION))
    return served.prefetch(tf.data.AUTOTUNE)


def default_worker_host() -> str:
    """This machine's name as other machines reach it (what a worker tells the
    dispatcher to hand to trainers); "localhost" when the name does not resolve."""
    name = socket.gethostname()
    try:
        socket.getaddrinfo(name, None)
    except OSError:
        return "localhost"
    return name


class StallWatch:
    """Warns while the trainer waits for a batch from the tf.data service.

    TensorFlow's client waits for the next element without end; when every worker is
    gone, or no worker can read a single example (``data.data_dir`` missing on their
    machines: each record is skipped and named in the worker's log, and nothing comes),
    training would stop without a word. While the trainer is inside `waiting`, a daemon
    thread checks every ``seconds`` (wall-clock seconds) how long it has waited; past
    ``seconds``, it calls ``warn`` with one line naming the address, the step, the time
    waited and the workers the dispatcher lists (`check_dispatcher`), and again every
    ``seconds`` while the wait goes on. Time outside `waiting` (evaluation, checkpoints)
    does not count. Use as a context manager around the training loop; ``seconds`` 0
    turns it off.
    """

    def __init__(self, address: str, seconds: float, warn):
        self.address, self.seconds, self._warn = address, seconds, warn
        self._since, self._step, self._waits = None, 0, 0
        self._stop = threading.Event()
        self._thread = None

    @contextlib.contextmanager
    def waiting(self, step: int):
        """Around the fetch of the batch for training step ``step + 1``."""
        self._step, self._since = step, time.monotonic()
        self._waits += 1  # a new wait: its own warnings, however soon it follows the last
        try:
            yield
        finally:
            self._since = None

    def _watch(self):
        interval = min(self.seconds, 1.0)  # how often the thread looks
        warned_at, wait = None, None
        while not self._stop.wait(interval):
            since = self._since
            if since is None:
                continue
            if wait != self._waits:
                warned_at, wait = None, self._waits
            waited = time.monotonic() - since
            if waited < self.seconds or (warned_at is not None
                                         and waited - warned_at < self.seconds):
                continue
            warned_at = waited
            try:
                workers = check_dispatcher(self.address, timeout=min(10.0, self.seconds))
                known = (f"the dispatcher lists {len(workers)} worker(s)"
                         + (f": {', '.join(workers)}" if workers else ""))
            except ServiceError as error:
                known = str(error)
            if self._since is not since:
                continue  # the batch came while the dispatcher was asked: no stall
            self._warn(
                f"No training batch from the tf.data service at {self.address} for "
                f"{waited:.0f} s (waiting for step {self._step + 1}); {known}. Are workers "
                f"running, and can they read data.data_dir on their machines? Their logs "
                f"name each record they skip.")

    def __enter__(self):
        if self.seconds > 0:
            self._thread = threading.Thread(target=self._watch, daemon=True,
                                            name="tf.data service stall watch")
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
