"""The values an export is written with, and the one check of them, without TensorFlow:
the largest image the serving signatures accept by default (``alexnet-export
--max_pixels``, ``--max_aspect_ratio``; ``assets/export.json`` records the values an
export was written with), the default ``--top_k``, the largest version TF Serving can
load, and `check_export_values`.

The checks that apply the image limits are in `alexnet_tf.export.input_checks`; the
numbers and `check_export_values` live in this module, which imports nothing, so that
``alexnet-export --help`` shows them as the flags' defaults and ``alexnet-export`` refuses
a bad flag value before TensorFlow is imported; `alexnet_tf.export.export` and the
serving module run the same check.
"""

import math
import numbers

# 40 megapixels: 12-36 MP camera and phone photos pass; 10000x10000 does not. Decoding
# and the resize hold about 16 bytes per pixel (uint8 RGB, then float32),
# so one image in flight needs at most ~640 MB. The bytes signatures preprocess one image
# at a time; the pixels signatures resize their whole batch at once (a batch has one
# size), so a batch of B images at the limit needs up to B times that: TF Serving's
# batching settings (docs/SERVING.md) bound B.
DEFAULT_MAX_PIXELS = 40_000_000
# The shorter side is resized to data.resize_size, so a 1x40,000,000 strip would become
# a 256x10^10 float image: refuse images longer than 50 times their width (or height).
# For the same reason no value means "no limit": infinity is refused.
DEFAULT_MAX_ASPECT_RATIO = 50
# Classes returned per image, or all of them for a model with fewer.
DEFAULT_TOP_K = 5
# TF Serving's model versions and the graphs' pixel counts are int64.
MAX_INT64 = 2**63 - 1
MAX_VERSION = MAX_INT64


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


# What the exported graph computes in: float32 (the weights as trained), or bfloat16
# (weights stored and multiplied in bfloat16: for CPUs with AVX512-BF16 or AMX and for
# GPUs; see `alexnet_tf.export.export`).
COMPUTE_DTYPES = ("float32", "bfloat16")


def check_export_values(*, version=None, top_k=None, max_pixels=DEFAULT_MAX_PIXELS,
                        max_aspect_ratio=DEFAULT_MAX_ASPECT_RATIO, compute_dtype="float32",
                        prefix: str = "") -> None:
    """Raises ValueError naming the first value an export cannot be written with, its
    value and what is accepted; returns None when all are acceptable.

    Accepted: ``version`` None (the next free one) or an integer from 0 to `MAX_VERSION`
    (2^63 - 1, TF Serving's int64); ``top_k`` None (the default) or an integer >= 1 (at
    most the model's classes: only the model knows, so `alexnet_tf.export.export`
    checks that); ``max_pixels`` an integer from 1 to 2^63 - 1; ``max_aspect_ratio`` a
    finite number >= 1 (a square image has 1; infinity is refused: the limit keeps a
    thin strip from being resized to a huge image); ``compute_dtype`` one of
    `COMPUTE_DTYPES`. ``prefix`` goes before each name in
    the message: "--" for a binary's flags.
    """
    if version is not None and not (_is_integer(version) and 0 <= version <= MAX_VERSION):
        raise ValueError(f"{prefix}version must be an integer from 0 to {MAX_VERSION} (TF "
                         f"Serving's model versions are int64), got {version!r}.")
    if top_k is not None and not (_is_integer(top_k) and top_k >= 1):
        raise ValueError(f"{prefix}top_k must be an integer >= 1 (classes returned per "
                         f"image, at most the model's classes), got {top_k!r}.")
    # Limits that refuse every image would export a model that serves nothing.
    if not (_is_integer(max_pixels) and 1 <= max_pixels <= MAX_INT64):
        raise ValueError(f"{prefix}max_pixels must be an integer >= 1 and <= {MAX_INT64} "
                         f"(the largest image accepted, in pixels), got {max_pixels!r}.")
    if not (isinstance(max_aspect_ratio, numbers.Real) and not isinstance(max_aspect_ratio, bool)
            and math.isfinite(max_aspect_ratio) and max_aspect_ratio >= 1):
        raise ValueError(f"{prefix}max_aspect_ratio must be a finite number >= 1 (the "
                         f"longer side over the shorter, 1 for a square; no infinity: a "
                         f"thin strip would be resized to a huge image), got "
                         f"{max_aspect_ratio!r}.")
    # A string, not anything equal to one: TF and NumPy dtypes compare equal to their
    # names, and would pass to export.json, which cannot hold them.
    if not isinstance(compute_dtype, str) or compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"{prefix}compute_dtype must be one of {', '.join(COMPUTE_DTYPES)}, "
                         f"got {compute_dtype!r}.")
