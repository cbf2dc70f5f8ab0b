"""The measurements behind tools/benchmark.py and docs/BENCHMARKS.md (not installed).

    python tools/benchmark.py --benchmark=model|profile|input|serving|grouped_conv [flags]

A plain package beside `alexnet_tf`, as TF Model Garden keeps `official/benchmark/`
beside its library: it imports the library, the library never imports it, and
setup.py leaves it out. tools/benchmark.py puts the repository root on sys.path.

Every figure is the median of several timed repetitions after warm-up, printed with
the machine's CPU flags, because the machines these run on are shared and noisy.
Whatever is compared is measured in the same run and *interleaved*: each round times
every contender once (the matrix-multiply peak, Keras, PyTorch; the plain and the
project's input pipeline; or the export and the in-memory model), so a burst of load
from another job hits all of them alike, and the CPU time other processes used during
the run is reported beside the figures (`machine.LoadMeter`).

Modules, by what they measure:

* `machine`: the machine itself: CPU flags (AVX-512 and AMX named, or "no AMX"), cores,
  versions, the load of other processes (`LoadMeter`), TF's matmul in a precision
  (`Matmul`: float32, bfloat16, float16).
* `flops`: FLOPs per image of a model, analytical and by TF's profiler.
* `model`: the `model` benchmark: training images/s (forward, backward, optimizer
  update: the training loop's own `make_train_step`), inference images/s and batch-1
  latency of a variant, its FLOPs, the matmul peak of the run's precision (the higher of
  TF's and PyTorch's) and the fraction of it the training step reaches, and the PyTorch
  peer when torch imports (`pip install -e '.[bench]'`).
* `torch_peer`: the same network in PyTorch (`torch_model`) and PyTorch's matmul
  (`TorchMatmul`), run in a worker process.
* `profile`: a TF profiler trace of the training step summarised per op, per op type
  and per layer: where the time goes.
* `input`: images/s of a plain `tf.data` paper pipeline (the baseline a user would
  write) and of this package's `pipeline.make_dataset`, per source (500x375 JPEGs,
  JPEGs stored at shorter side 256, TFRecords of those), on images it generates.
* `serving`: the exported SavedModel (what TF Serving runs, exported by
  `alexnet_tf.export`) beside the in-memory model on the same images: images/s at batch
  32 and batch-1 latency of the ``pixels`` signature and of ``model(x)``, the
  ``serving_default`` signature on JPEG bytes ("with decode"), their ratios and issue
  16's targets; the export's outputs checked against the model's first.
* `grouped_conv`: forward+backward of the paper's conv2 per compute path (issue 2).
* `worker`: how the modules above start their worker processes.
"""

import os

# `alexnet_tf` chooses the TensorFlow backend when it is imported first; these modules
# import keras before it, so they make the same choice (Keras reads it once).
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
