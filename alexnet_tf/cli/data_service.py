r"""alexnet-data-service: a tf.data service dispatcher or worker, for training input on other machines.

    alexnet-data-service dispatcher --port=5050 --work_dir=/shared/dispatcher
    alexnet-data-service worker --dispatcher=dispatcher-host:5050 --port=5051
    alexnet-train --config=configs/paper.py --workdir=runs/paper \
        --config.data.service_address=grpc://dispatcher-host:5050

(or ``python -m alexnet_tf.cli.data_service ...``). One dispatcher per cluster; any
number of workers, started before or during training (each registers with the
dispatcher and takes work from the next epoch element it asks for). Workers read the
data themselves: ``data.data_dir`` must name the same files on every worker's machine
(shared storage), and each worker needs TensorFlow (the pipeline arrives as a graph; it
runs no Python of this package). The dispatcher's ``--work_dir`` keeps its journal
(registered datasets, jobs), so a restarted dispatcher resumes where it stopped; without
it a restart loses every job and training must be restarted too.

What the trainer gets (``distributed_epoch`` mode on an unbounded stream of the split:
each example of the stream at most once, exactly once when no worker is lost; a lost
worker costs the examples it held, not the run), and how resumption differs from the
local pipeline: `alexnet_tf.data.service` and README, "Input on other machines". Runs
until stopped (Ctrl-C: status 130); a port it cannot listen on, or a dispatcher that
does not answer a new worker, is one line on stderr with status 1 (wrong flags: status
2).
"""

from __future__ import annotations

import errno
import os
import socket

from absl import app, flags

from alexnet_tf.cli import app as cli_app
from alexnet_tf.data import service  # imports no TensorFlow

_PORT = flags.DEFINE_integer("port", None, f"Port to listen on (dispatcher default "
                             f"{service.DEFAULT_PORT}, worker default {service.DEFAULT_PORT + 1}; "
                             "0: any free port, printed at start).")
_WORK_DIR = flags.DEFINE_string("work_dir", None, "Dispatcher: directory for its journal, so "
                                "that a restart keeps its jobs (fault-tolerant mode).")
_DISPATCHER = flags.DEFINE_string("dispatcher", None, "Worker: the dispatcher's HOST:PORT "
                                  "(or grpc://HOST:PORT).")
_WORKER_HOST = flags.DEFINE_string("worker_host", None, "Worker: the host name trainers reach "
                                   "this worker at; default: this machine's name.")
_WORKER_TIMEOUT = flags.DEFINE_float(
    "worker_timeout", 10.0, "Dispatcher: seconds without a worker's heartbeat before it "
    "counts as lost and its unfinished work is given up.", lower_bound=0.1)
_CHECK_TIMEOUT = flags.DEFINE_float("timeout", 10.0, "Worker: seconds to wait for the "
                                    "dispatcher's first answer.", lower_bound=0.1)

_ROLES = ("dispatcher", "worker")
_MAX_SECONDS = 86_400.0  # a day: nan, inf and values TF cannot hold in milliseconds refused


def _port(default: int) -> int:
    port = default if _PORT.value is None else _PORT.value
    if not 0 <= port < 65536:
        raise app.UsageError(f"--port={port}: expected 0 (any free port) to 65535")
    return port


def _port_taken(port: int) -> bool:
    """Whether another program listens on ``port``. gRPC opens its ports with SO_REUSEPORT,
    so a second dispatcher on a gRPC server's port would start and silently share the
    port (workers and trainers then split between the two); a plain bind, without that
    option, is refused there."""
    if port == 0:
        return False
    for family, address in ((socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")):
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                # SO_REUSEADDR: a restarted dispatcher's own old connections (TIME_WAIT)
                # must not count; a listener still does.
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((address, port))
            return False
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            # No IPv6 on this machine: try IPv4.
    return False


def _start(server_class, config, role: str, port: int):
    """``server_class(config)``, its port checked first (`_port_taken`), and after:
    TensorFlow says only "Could not start gRPC server" for a port it cannot listen on."""
    if _port_taken(port):
        raise service.ServiceError(
            f"Port {port} is in use by another program: the {role} could not listen on it "
            f"alone. Choose another --port, or stop what holds it "
            f"(`ss -ltnp 'sport = :{port}'` names it).")
    try:
        return server_class(config)
    except RuntimeError as error:
        if "Could not start" not in str(error):
            raise
        raise service.ServiceError(
            f"The {role} could not listen on port {port} (in use by another program, or "
            f"not allowed): choose another --port, or stop what holds it "
            f"(`ss -ltnp 'sport = :{port}'` names it).") from None


def main(argv) -> int:
    """The ``alexnet-data-service`` command: starts the role given as the one argument
    and serves until stopped. Raises ``app.UsageError`` (status 2) for a missing or
    unknown role, flags of the other role, or a bad port; a dispatcher that does not
    answer a new worker is a `alexnet_tf.data.service.ServiceError` (status 1)."""
    rest = list(argv[1:])
    if len(rest) != 1 or rest[0] not in _ROLES:
        raise app.UsageError(f"give the role, 'dispatcher' or 'worker', as the one argument "
                             f"(got {rest})")
    role = rest[0]
    foreign = {"dispatcher": (_DISPATCHER, _WORKER_HOST, _CHECK_TIMEOUT),
               "worker": (_WORK_DIR, _WORKER_TIMEOUT)}[role]
    given = [f"--{flag.name}" for flag in foreign if flags.FLAGS[flag.name].present]
    if given:
        raise app.UsageError(f"{', '.join(given)}: not a flag of the {role}")
    if role == "worker" and not _DISPATCHER.value:
        raise app.UsageError("a worker needs --dispatcher=HOST:PORT")
    for flag in (_WORKER_TIMEOUT, _CHECK_TIMEOUT):
        if flags.FLAGS[flag.name].present and not 0.1 <= flag.value <= _MAX_SECONDS:
            raise app.UsageError(f"--{flag.name}={flag.value}: expected seconds from 0.1 to "
                                 f"{_MAX_SECONDS:g}")
    import tensorflow as tf  # imported here: --help and usage errors need none

    data_service = tf.data.experimental.service
    if role == "dispatcher":
        port = _port(service.DEFAULT_PORT)
        work_dir = _WORK_DIR.value
        if work_dir:
            if os.path.exists(work_dir) and not os.path.isdir(work_dir):
                raise service.ServiceError(f"--work_dir {work_dir!r} is a file; expected a "
                                           f"directory for the dispatcher's journal.")
            os.makedirs(work_dir, exist_ok=True)
        server = _start(data_service.DispatchServer, data_service.DispatcherConfig(
            port=port, protocol=service.PROTOCOL, work_dir=work_dir,
            fault_tolerant_mode=bool(work_dir),
            worker_timeout_ms=int(_WORKER_TIMEOUT.value * 1000)), role, port)
        print(f"alexnet-data-service: dispatcher at {server.target}"
              + (f", journal in {work_dir}" if work_dir else
                 " (no --work_dir: a restart loses its jobs)"), flush=True)
    else:
        port = _port(service.DEFAULT_PORT + 1)
        workers = service.check_dispatcher(_DISPATCHER.value, timeout=_CHECK_TIMEOUT.value,
                                             setting="--dispatcher")
        _, dispatcher = service.split_address(_DISPATCHER.value)
        host = _WORKER_HOST.value or service.default_worker_host()
        try:
            socket.getaddrinfo(host, None)
        except OSError as error:
            raise service.ServiceError(
                f"--worker_host={host!r} does not resolve here ({error.strerror or error}); "
                f"trainers could not reach this worker. Give a name or address they can "
                f"reach.") from None
        server = _start(data_service.WorkerServer, data_service.WorkerConfig(
            dispatcher_address=dispatcher, worker_address=f"{host}:%port%", port=port,
            protocol=service.PROTOCOL), role, port)
        # WorkerServer has no public address; `_address` is its "host:port" (port 0 resolved).
        print(f"alexnet-data-service: worker at {host}:{server._address.rsplit(':', 1)[-1]}, "
              f"registered with {dispatcher} (which listed {len(workers)} worker(s) before, "
              f"lost ones included)",
              flush=True)
    server.join()
    return 0


def run() -> None:
    """Console-script entry point (``alexnet-data-service``)."""
    cli_app.run(main, __name__, name="alexnet-data-service")


if __name__ == "__main__":
    run()
