"""The PyTorch peer: `create_model`'s network in plain PyTorch, run in its own process.

    python tools/benchmark.py --benchmark=model --variant=paper  # torch installed, --peer

The `model` benchmark times it round by round against the Keras contender: the same
layers as a PyTorch user would write them (`nn.Conv2d(groups=2)` for the towers,
`nn.LocalResponseNorm`, NCHW), SGD with momentum and weight decay on the kernels,
`torch.set_num_threads(all usable cores)`, training and inference images/s and batch-1
latency. The network comes from the package's variant table (`architecture`), so its
parameter count equals the Keras model's; the benchmark checks that at start.

The same process times PyTorch's n x n matmul (`TorchMatmul`, in float32, bfloat16 or
float16), which the `model` benchmark sets beside TF's: the peak of a precision is the
higher of the two. It runs without the network too (``--nopeer``): the matmul is part
of the peak, the network is the peer.

The worker (``python -m benchmarks.torch_peer --torch-worker``, started by `TorchPeer`)
reads one JSON config line, then commands, and answers each with one JSON line.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
import sys
import tempfile
import time

from benchmarks import worker
from benchmarks.machine import usable_cores


def torch_available() -> bool:
    """Whether the PyTorch peer can run (torch is installed); torch is not imported here."""
    return importlib.util.find_spec("torch") is not None


def architecture(variant: str = "paper", num_classes: int = 1000, image_size: int | None = None,
                 width: float = 1.0) -> dict:
    """The network of `create_model(variant, ...)` as plain data, for the PyTorch peer.

    Every size comes from the library's one geometry walk
    (`alexnet_tf.architecture.resolve_layers`): the peer's only look into the library.
    """
    from alexnet_tf.architecture import resolve_layers

    geometry = resolve_layers(variant, num_classes, image_size, width)
    spec = geometry.variant
    convs = [{"name": c.name, "in_channels": c.in_channels, "filters": c.filters,
              "kernel": c.kernel_size, "strides": c.strides, "padding": c.padding,
              "groups": c.groups, "lrn": c.lrn, "pool": c.pool} for c in geometry.convs]
    return {"variant": variant, "image_size": geometry.image_size, "num_classes": num_classes,
            "convs": convs, "batchnorm": spec.normalization == "batchnorm",
            "lrn": {"size": spec.lrn_depth_size, "bias": spec.lrn_bias,
                    "alpha": spec.lrn_alpha, "beta": spec.lrn_beta},
            "pool": [spec.pool_size, spec.pool_strides], "adaptive_pool": spec.adaptive_pool,
            "flat_features": geometry.flat_input[0] * geometry.flat_input[1] * geometry.flat_input[2],
            "fc_units": list(geometry.fc_units),
            "dropout_rate": spec.dropout_rate, "dropout_placement": spec.dropout_placement}


def torch_model_from_architecture(arch: dict):
    """The network in plain PyTorch: `nn.Conv2d(groups=2)` for the towers,
    `nn.LocalResponseNorm`, NCHW, as a PyTorch user would write it."""
    from torch import nn

    layers = []
    lrn = arch["lrn"]
    for c in arch["convs"]:
        layers.append(nn.Conv2d(c["in_channels"], c["filters"], c["kernel"], c["strides"],
                                c["padding"], groups=c["groups"], bias=not arch["batchnorm"]))
        if arch["batchnorm"]:
            layers.append(nn.BatchNorm2d(c["filters"], eps=1e-5, momentum=0.1))
        layers.append(nn.ReLU(inplace=True))
        if c["lrn"]:
            # torch divides alpha by the window size n (as Caffe); the paper's and TF's
            # alpha multiplies the plain sum of squares: alpha_torch = n * alpha_tf.
            layers.append(nn.LocalResponseNorm(lrn["size"], alpha=lrn["alpha"] * lrn["size"],
                                               beta=lrn["beta"], k=lrn["bias"]))
        if c["pool"]:
            layers.append(nn.MaxPool2d(*arch["pool"]))
    if arch["adaptive_pool"]:
        layers.append(nn.AdaptiveAvgPool2d(arch["adaptive_pool"]))
    layers.append(nn.Flatten())
    features = arch["flat_features"]
    for units in arch["fc_units"]:
        if arch["dropout_placement"] == "before_fc":
            layers.append(nn.Dropout(arch["dropout_rate"]))
        layers += [nn.Linear(features, units), nn.ReLU(inplace=True)]
        if arch["dropout_placement"] == "after_fc":
            layers.append(nn.Dropout(arch["dropout_rate"]))
        features = units
    layers.append(nn.Linear(features, arch["num_classes"]))
    return nn.Sequential(*layers)


class TorchMatmul:
    """One n x n `torch.matmul` per call in ``dtype`` ("float32", "bfloat16", "float16")
    on ``device`` (imports torch): PyTorch's side of the matmul peak."""

    def __init__(self, n: int, dtype: str = "float32", device: str = "cpu", seed: int = 0):
        import torch

        self._torch = torch
        self.n = n
        generator = torch.Generator().manual_seed(seed)
        self.a, self.b = (torch.randn(n, n, generator=generator).to(device, getattr(torch, dtype))
                          for _ in range(2))
        self._cuda = torch.device(device).type == "cuda"

    def __call__(self) -> float:
        """Seconds of one product (CUDA synchronised)."""
        with self._torch.inference_mode():
            start = time.perf_counter()
            self._torch.matmul(self.a, self.b)
            if self._cuda:
                self._torch.cuda.synchronize()
            return time.perf_counter() - start

    def gflops(self, seconds: float) -> float:
        """GFLOP/s of one product that took ``seconds`` (2 n^3 FLOPs)."""
        return 2 * self.n ** 3 / seconds / 1e9


def torch_model(variant: str = "paper", num_classes: int = 1000, image_size: int | None = None,
                width: float = 1.0):
    """`create_model`'s network in PyTorch (imports torch)."""
    return torch_model_from_architecture(architecture(variant, num_classes, image_size, width))


def _torch_worker() -> None:
    """The PyTorch peer's process: reads one JSON config line, then commands ("train",
    "infer", "latency K", "matmul N DTYPE", "quit") and answers each with one JSON line.
    With ``"architecture": null`` in the config it builds no network and answers only
    "matmul"."""
    import torch

    out = sys.stdout
    sys.stdout = sys.stderr  # only protocol lines on the pipe
    config = json.loads(sys.stdin.readline())
    threads = config.get("threads") or usable_cores()
    torch.set_num_threads(threads)
    torch.manual_seed(config.get("seed", 0))
    use_cuda = config.get("gpu") and torch.cuda.is_available()
    device = torch.device("cuda" if use_cuda else "cpu")
    if use_cuda:
        torch.backends.cudnn.benchmark = True
    arch = config.get("architecture")
    model = _TorchNetwork(config, device, use_cuda) if arch else None
    matmuls = {}  # (n, dtype) -> TorchMatmul, inputs made once

    def reply(value):
        out.write(json.dumps(value) + "\n")
        out.flush()

    reply({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads(),
           "device": str(device), "params": model.params if model else None,
           "mkldnn": bool(torch.backends.mkldnn.is_available())})
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        if command[0] == "matmul":
            key = (int(command[1]), command[2])
            try:
                if key not in matmuls:
                    matmuls[key] = TorchMatmul(*key, device=str(device))
                reply({"seconds": matmuls[key]()})
            except (RuntimeError, AttributeError, TypeError) as error:
                # A dtype this torch or device lacks: TF's figure stands alone.
                reply({"error": f"torch.matmul {key}: {error}"})
        elif model is None or command[0] not in ("train", "infer", "latency"):
            reply({"error": f"unknown command {line!r}"})
        elif command[0] == "train":
            reply({"seconds": model.train()})
        elif command[0] == "infer":
            reply({"seconds": model.infer(model.infer_images)})
        else:
            reply({"seconds": [model.infer(model.one_image) for _ in range(int(command[1]))]})


class _TorchNetwork:
    """The peer's network, optimizer and fixed random inputs, in the worker (imports torch)."""

    def __init__(self, config: dict, device, use_cuda: bool):
        import torch

        self._torch, self._cuda = torch, use_cuda
        arch = config["architecture"]
        self.model = torch_model_from_architecture(arch).to(device)
        self.params = sum(p.numel() for p in self.model.parameters())
        # Decay kernels only, as the package's coupled decay (train.decay_biases=False).
        decayed = [p for p in self.model.parameters() if p.dim() > 1]
        others = [p for p in self.model.parameters() if p.dim() <= 1]
        self.optimizer = torch.optim.SGD(
            [{"params": decayed, "weight_decay": config["weight_decay"]},
             {"params": others, "weight_decay": 0.0}],
            lr=config["learning_rate"], momentum=config["momentum"])
        self.loss_fn = torch.nn.CrossEntropyLoss()
        size = arch["image_size"]
        self.images = torch.randn(config["batch_size"], 3, size, size, device=device)
        self.labels = torch.randint(0, arch["num_classes"], (config["batch_size"],),
                                    device=device)
        self.infer_images = torch.randn(config["infer_batch_size"], 3, size, size,
                                        device=device)
        self.one_image = self.infer_images[:1].clone()
        self.device_type = device.type
        self.dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(
            config.get("mixed_precision") or "")

    def _autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return self._torch.autocast(self.device_type, dtype=self.dtype)

    def _sync(self):
        if self._cuda:
            self._torch.cuda.synchronize()

    def train(self) -> float:
        """Seconds of one training step (forward, loss, backward, SGD update)."""
        self.model.train()
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            loss = self.loss_fn(self.model(self.images), self.labels)
        loss.backward()
        self.optimizer.step()
        loss.item()
        self._sync()
        return time.perf_counter() - start

    def infer(self, x) -> float:
        """Seconds of one forward pass of ``x`` in eval mode."""
        self.model.eval()
        with self._torch.inference_mode(), self._autocast():
            start = time.perf_counter()
            self.model(x)
            self._sync()
            return time.perf_counter() - start


class TorchPeer:
    """The PyTorch peer in its own process (no shared thread pools with TF), driven
    step by step so that its repetitions interleave with Keras' in time. With
    ``arch=None`` the process holds no network and only times matmuls (`matmul`)."""

    def __init__(self, arch: dict | None, batch_size: int = 1, infer_batch_size: int = 1, *,
                 mixed_precision=None, threads: int = 0, gpu: bool = False,
                 learning_rate=0.01, momentum=0.9, weight_decay=5e-4):
        # stderr to a file, not a pipe: a full pipe would block the worker.
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            worker.argv("benchmarks.torch_peer", "--torch-worker"),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
            env=worker.env(), cwd=worker.REPO_ROOT)
        self.info = self._send(json.dumps({
            "architecture": arch, "batch_size": batch_size,
            "infer_batch_size": infer_batch_size, "mixed_precision": mixed_precision,
            "threads": threads, "gpu": gpu, "learning_rate": learning_rate,
            "momentum": momentum, "weight_decay": weight_decay}))

    def _send(self, line: str) -> dict:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            self.process.wait()
            self.stderr.seek(0)
            error = self.stderr.read()[-2000:]
            raise RuntimeError(f"PyTorch peer process died: {error.strip()}")
        return json.loads(answer)

    def train(self) -> float:
        return self._send("train")["seconds"]

    def infer(self) -> float:
        return self._send("infer")["seconds"]

    def latency(self, calls: int) -> list[float]:
        return self._send(f"latency {calls}")["seconds"]

    def matmul(self, n: int, dtype: str) -> float:
        """Seconds of one n x n `torch.matmul` in ``dtype`` (`TorchMatmul`)."""
        answer = self._send(f"matmul {n} {dtype}")
        if "seconds" not in answer:
            raise RuntimeError(answer.get("error", answer))
        return answer["seconds"]

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.stderr):
            with contextlib.suppress(OSError):
                stream.close()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--torch-worker"]:
        _torch_worker()
    else:
        sys.exit("usage: python -m benchmarks.torch_peer --torch-worker "
                 "(internal; use tools/benchmark.py)")
