"""The two layers AlexNet needs that Keras 3 does not ship as such.

* `LocalResponseNormalization`: the paper's Sec. 3.3 brightness normalization.
* `GroupedConv2D`: the two-tower convolutions of Sec. 3.2 (conv2, conv4, conv5),
  with one kernel layout and a compute path chosen per device (on CPU, also by
  oneDNN and the compute dtype).

Both are registered Keras serializables (package ``alexnet_tf``), so a model that
uses them round-trips through ``get_config`` and ``.keras`` files.
"""

from __future__ import annotations

import functools

import keras
import tensorflow as tf

from alexnet_tf.architecture import GROUPED_CONV_IMPLEMENTATIONS

_PACKAGE = "alexnet_tf"

if keras.backend.backend() != "tensorflow":
    # Every model goes through these layers: refuse another backend here, clearly,
    # rather than fail later inside a TF op.
    raise ImportError(
        f"alexnet_tf needs the Keras 'tensorflow' backend, but KERAS_BACKEND is "
        f"{keras.backend.backend()!r}. Unset KERAS_BACKEND or set it to 'tensorflow'.")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalization across channels (paper Sec. 3.3).

    ``b[x, y, i] = a[x, y, i] / (k + alpha * sum_j a[x, y, j]**2) ** beta``, the sum
    running over ``j`` from ``max(0, i - n//2)`` to ``min(N - 1, i + n//2)``.
    The defaults are the paper's: ``k=2, n=5, alpha=1e-4, beta=0.75``.

    ``alpha`` multiplies the plain sum of squares, as in the paper and in
    ``tf.nn.local_response_normalization``. Caffe divides its ``alpha`` by ``n``;
    weights imported from Caffe must pass ``alpha=alpha_caffe / n`` and ``k=1``.

    Training (``training=True``) runs `fused_local_response_normalization`, faster
    forward+backward on CPU (docs/BENCHMARKS.md); inference runs TF's own op, so that exported
    SavedModels hold no XLA-compiled function (TF Serving runs those only
    experimentally on CPU and not in its GPU builds). Both give the same values
    (tests/test_layers.py).
    """

    def __init__(self, depth_size: int = 5, bias: float = 2.0, alpha: float = 1e-4,
                 beta: float = 0.75, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(depth_size, int) or depth_size < 1 or depth_size % 2 == 0:
            raise ValueError(
                f"LocalResponseNormalization depth_size must be an odd positive integer "
                f"(the paper's n=5), got {depth_size!r}.")
        self.depth_size = depth_size
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def call(self, inputs, training=None):
        # LRN has no float16 kernel on every device; compute in float32 and cast
        # back so the layer also works under a mixed-precision policy.
        x = tf.cast(inputs, tf.float32)
        radius = self.depth_size // 2
        if training is True:
            y = fused_local_response_normalization(x, radius, self.bias, self.alpha, self.beta)
        else:
            y = tf.nn.local_response_normalization(
                x, depth_radius=radius, bias=self.bias, alpha=self.alpha, beta=self.beta)
        return tf.cast(y, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(depth_size=self.depth_size, bias=self.bias, alpha=self.alpha,
                      beta=self.beta)
        return config


def _window_sum(x, radius: int):
    """``s_i = sum_{j=i-radius}^{i+radius} x_j`` over the last axis, zero outside:
    ``2 * radius + 1`` shifted slices of a padded copy, which XLA fuses into one pass."""
    channels = x.shape[-1]
    padded = tf.pad(x, [[0, 0]] * (x.shape.rank - 1) + [[radius, radius]])
    return tf.add_n([padded[..., i:i + channels] for i in range(2 * radius + 1)])


def _lrn_power(t, beta: float):
    """``t ** -beta``; the paper's 0.75 as rsqrt(t) * sqrt(rsqrt(t)), no exp/log."""
    if beta == 0.75:
        r = tf.math.rsqrt(t)
        return r * tf.sqrt(r)
    return tf.pow(t, -beta)


@functools.lru_cache(maxsize=None)
def _compiled_lrn(radius: int, bias: float, alpha: float, beta: float):
    @tf.custom_gradient
    def lrn(x):
        t = bias + alpha * _window_sum(tf.square(x), radius)
        p = _lrn_power(t, beta)

        def grad(dy):
            # d/dx_j of sum_i dy_i x_i t_i^-beta, the window being symmetric:
            # dy_j t_j^-beta - 2 alpha beta x_j sum_{i near j} dy_i x_i t_i^(-beta-1).
            return dy * p - (2.0 * alpha * beta) * x * _window_sum(dy * x * p / t, radius)

        return x * p, grad

    return tf.function(lrn, jit_compile=True, autograph=False)


def fused_local_response_normalization(x, depth_radius: int, bias: float, alpha: float,
                                       beta: float):
    """``tf.nn.local_response_normalization`` (Sec. 3.3) for training: float32 NHWC in,
    the same values out, compiled by XLA with its gradient written out.

    TF's CPU kernel (lrn_op.cc) sums the window as a product with a dense channels x
    channels band matrix and, for beta other than 0.5 or 1 (the paper's is 0.75), takes
    exp(-beta log t); its gradient loops over each element's window with a pow per
    element. This version is a few fused element-wise passes and 5 shifted adds each
    way, formula and gradient in one XLA function (its speed-up: docs/BENCHMARKS.md).
    """
    return _compiled_lrn(int(depth_radius), float(bias), float(alpha), float(beta))(x)


def _check_implementation(implementation) -> None:
    if implementation not in GROUPED_CONV_IMPLEMENTATIONS:
        raise ValueError(
            f"Unknown grouped convolution implementation {implementation!r}; expected "
            f"one of {GROUPED_CONV_IMPLEMENTATIONS}.")


def onednn_enabled() -> bool:
    """Whether TF's oneDNN CPU kernels are on in this process.

    TF decides once, when it loads: by default on x86 Linux it is on for some CPU kinds
    and off for others (measured, TF 2.21: on for an AMD EPYC with AVX-512 and
    AVX512-VNNI, off for an AMD EPYC with only AVX2); ``TF_ENABLE_ONEDNN_OPTS=1`` turns it
    on and ``=0`` (or ``false``) off, whatever the CPU. Without it, TF's CPU kernels have
    no grouped convolution (so "auto" takes "split") and no gradient of a dilated one.
    ``IsMklEnabled`` reports that decision; the variable itself is not read here,
    because (measured, TF 2.21) changing it after ``import tensorflow`` changes neither
    the kernels nor this answer.
    """
    from tensorflow.python.util import _pywrap_util_port  # TF has no public query

    return bool(_pywrap_util_port.IsMklEnabled())


def _in_xla_context() -> bool:
    """Whether ops built now are XLA-compiled (inside ``jit_compile=True`` or nested in it)."""
    from tensorflow.python.ops import control_flow_util  # TF has no public query

    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


# The compute dtypes for which "auto" takes oneDNN's CPU grouped convolution. float16
# has no gradient kernel even with oneDNN on (measured, TF 2.21: "Gradients for grouped
# convolutions are not supported on CPU"). bfloat16 has one on this project's AVX-512 BF16
# machines, but oneDNN runs bfloat16 only on CPUs with AVX-512, and on others TF falls
# back to kernels without it; the split path costs bfloat16 nothing measurable
# (docs/BENCHMARKS.md), so only float32, which oneDNN runs on every x86 CPU, goes native.
_ONEDNN_GROUPED_DTYPES = ("float32",)


def resolve_grouped_conv_implementation(implementation: str, tensor=None, dtype=None) -> str:
    """Returns the compute path ("split" or "native") a grouped convolution uses.

    "auto" picks per device: the device the tensor is placed on when that is known
    (an eager tensor, or an op built under ``tf.device``, as ``tf.distribute``
    replicas are), otherwise whether a GPU is visible, since TF places ops there by
    default. GPUs and TPUs run one grouped convolution (cuDNN and XLA implement
    ``feature_group_count`` natively).

    On CPU "auto" is "native" when TF's oneDNN kernels are on (`onednn_enabled`) and
    the compute dtype (``dtype``, else the tensor's, else Keras' global policy's) is
    float32: oneDNN's grouped kernel trains faster than two convolutions
    and fuses with the bias and ReLU (docs/BENCHMARKS.md). Otherwise it is "split", one
    convolution per group on split halves: without oneDNN, or under float16 (and
    bfloat16 on CPUs without AVX-512), TF's CPU kernels refuse the gradient of a grouped
    convolution ("Gradients for grouped convolutions are not supported on CPU"); bfloat16
    takes the split everywhere (`_ONEDNN_GROUPED_DTYPES` says why). Inside an XLA-compiled function it is
    "split" too: XLA compiles its own convolutions without oneDNN, and its CPU grouped
    convolution (what Keras' ``Conv2D(groups=2)`` uses on CPU) is several times slower
    forward+backward than the split (docs/BENCHMARKS.md).
    """
    _check_implementation(implementation)
    if implementation != "auto":
        return implementation
    device_type = None
    device = getattr(tensor, "device", "") if tensor is not None else ""
    if device:
        device_type = tf.DeviceSpec.from_string(device).device_type
    if device_type is None:
        device_type = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    if device_type.upper() != "CPU":
        return "native"
    if dtype is None:
        dtype = getattr(tensor, "dtype", None)
    if dtype is None:
        dtype = keras.mixed_precision.global_policy().compute_dtype
    native_on_cpu = (onednn_enabled() and tf.as_dtype(dtype).name in _ONEDNN_GROUPED_DTYPES
                     and not _in_xla_context())
    return "native" if native_on_cpu else "split"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GroupedConv2D(keras.layers.Conv2D):
    """A 2-D convolution whose channels fall into ``groups`` independent groups.

    Paper Sec. 3.2 and Fig. 2: conv2, conv4 and conv5 of AlexNet see only the
    feature maps of their own GPU ("tower"); with two groups, output channels
    ``[0, filters/2)`` are computed from input channels ``[0, C/2)`` and the rest
    from the rest.

    The kernel has one layout whatever the compute path: ``(kh, kw, C/groups,
    filters)``, Keras' and TF's grouped layout, so checkpoints and imported weights
    do not depend on the device. ``implementation`` chooses how it is computed:

    * ``"split"``: one convolution per group on the split input halves, then a concat.
      Works with every CPU build of TF and every dtype, and faster than Keras'
      ``Conv2D(groups=2)`` on CPU (docs/BENCHMARKS.md).
    * ``"native"``: one grouped ``tf.nn.convolution``: cuDNN on GPU; on CPU oneDNN's
      grouped kernel (`onednn_enabled`), fused with the bias and ReLU. Without
      oneDNN, or under float16, TF has no CPU gradient kernel for it.
    * ``"auto"`` (default): picked per device by `resolve_grouped_conv_implementation`.

    All paths give the same outputs and gradients (tests/test_layers.py).
    Only ``channels_last`` is supported.
    """

    def __init__(self, filters, kernel_size, groups: int = 2, implementation: str = "auto",
                 **kwargs):
        # Validate the name only: resolving "auto" here would list the devices, which
        # initialises TF's runtime and forbids any later set_logical_device_configuration.
        _check_implementation(implementation)
        super().__init__(filters, kernel_size, groups=groups, **kwargs)
        # Checked after Keras has standardised it: data_format=None means the global
        # keras.config.image_data_format(), and Keras accepts any letter case.
        if self.data_format != "channels_last":
            raise ValueError(
                f"GroupedConv2D supports data_format='channels_last' only, got "
                f"{kwargs.get('data_format')!r} (resolved to {self.data_format!r}).")
        self.implementation = implementation

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or channels % self.groups:
            raise ValueError(
                f"Layer {self.name!r}: input channels ({channels}) must be divisible by "
                f"groups ({self.groups}).")
        super().build(input_shape)

    def convolution_op(self, inputs, kernel):
        if self.groups == 1:
            return super().convolution_op(inputs, kernel)
        path = resolve_grouped_conv_implementation(self.implementation, inputs)
        if path == "native":
            return tf.nn.convolution(inputs, kernel, strides=list(self.strides),
                                     padding=self.padding.upper(),
                                     dilations=list(self.dilation_rate))
        input_groups = tf.split(inputs, self.groups, axis=-1)
        kernel_groups = tf.split(kernel, self.groups, axis=-1)
        outputs = [
            tf.nn.convolution(x, k, strides=list(self.strides), padding=self.padding.upper(),
                              dilations=list(self.dilation_rate))
            for x, k in zip(input_groups, kernel_groups)
        ]
        return tf.concat(outputs, axis=-1)

    def get_config(self):
        config = super().get_config()
        config["implementation"] = self.implementation
        return config
