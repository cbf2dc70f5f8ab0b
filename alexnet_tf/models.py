"""The Keras builder: a variant of `alexnet_tf.architecture` as a functional Keras model.

`create_model` builds any row of `alexnet_tf.architecture.VARIANTS` from its resolved
geometry (`alexnet_tf.architecture.resolve_layers`); `model_from_config` builds what a
run's config describes; `feature_extractor` maps images to the fc7 vector (Sec. 6.1).
The model maps float images (already normalised by the data pipeline) to logits.
Keras is imported when a model is built, so that importing this module stays light.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import TYPE_CHECKING

from alexnet_tf.architecture import FEATURE_LAYER, LOGITS_LAYER, Variant, get_variant, validate_model_args

if TYPE_CHECKING:
    import keras


def _initializers(variant: Variant, layer: str, fan_in: int, is_classifier: bool, seed):
    """(kernel, bias) initializers of one layer, per the variant's init scheme."""
    import keras

    if variant.init == "paper":
        # Sec. 5: weights from N(0, 0.01) in every layer; biases 1 or 0.
        kernel = keras.initializers.RandomNormal(0.0, 0.01, seed=seed)
        bias = keras.initializers.Constant(1.0 if layer in variant.bias_one_layers else 0.0)
    elif variant.init == "torch_default":
        # torch.nn.Conv2d/Linear.reset_parameters: kaiming_uniform(a=sqrt(5)) is
        # U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and so is the bias.
        bound = 1.0 / math.sqrt(fan_in)
        kernel = keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform", seed=seed)
        # The bias needs a seed of its own: seed + 1 would be the next layer's kernel
        # seed, and Keras draws the same numbers from the same seed.
        bias = keras.initializers.RandomUniform(-bound, bound,
                                                seed=None if seed is None else seed + 500)
    elif variant.init == "he":
        if is_classifier:
            # Goyal et al. 2017 (arXiv:1706.02677) Sec. 5.1: last fc layer from N(0, 0.01).
            kernel = keras.initializers.RandomNormal(0.0, 0.01, seed=seed)
        else:
            kernel = keras.initializers.HeNormal(seed=seed)
        bias = keras.initializers.Zeros()
    else:  # a new Variant row with an unknown scheme is a programming error
        raise ValueError(f"Variant {variant.name!r} has unknown init scheme {variant.init!r}.")
    return kernel, bias


def create_model(variant: str = "paper", num_classes: int = 1000, image_size: int | None = None,
                 width: float = 1.0, *, dropout_rate: float | None = None,
                 groups: int | None = None, init: str | None = None,
                 lrn_bias: float | None = None, lrn_alpha: float | None = None,
                 grouped_conv_implementation: str = "auto", seed: int | None = None,
                 name: str | None = None) -> "keras.Model":
    """Builds an AlexNet variant as a functional Keras model mapping images to logits.

    Args:
      variant: a key of `VARIANTS`: "paper", "one_tower" or "modern".
      num_classes: width of the classifier fc8 (the paper's 1000, Sec. 3.5).
      image_size: side of the square input; None takes the variant's own (227 for
        "paper", as Caffe; 224 for the others). Small sizes (67 for "paper") make
        fast tests; sizes below the geometry's minimum raise ValueError.
      width: multiplies every layer's channel count and the fc widths.
      dropout_rate: None keeps the variant's (0.5, Sec. 4.2).
      groups: None keeps the variant's grouping of conv2/conv4/conv5 (2 for "paper",
        Sec. 3.2; none for "modern"); 1 removes it, 2 asks for it.
      init: None keeps the variant's initialisation scheme; "paper", "torch_default"
        or "he" (see `Variant.init`) replaces it, weights and biases together.
      lrn_bias, lrn_alpha: None keeps the paper's k=2 and alpha=1e-4 (Sec. 3.3).
        Caffe's bvlc_alexnet uses k=1 and an alpha divided by n, i.e. 1e-4 / 5 here;
        weights imported from it need those.
      grouped_conv_implementation: "auto", "split" or "native" (see `GroupedConv2D`).
      seed: makes initialisation and dropout deterministic.
      name: the model's name; default ``alexnet_<variant>``.
    """
    import keras

    from alexnet_tf.layers import GroupedConv2D, LocalResponseNormalization

    spec = get_variant(variant)
    dropout_rate = spec.dropout_rate if dropout_rate is None else dropout_rate
    geometry = validate_model_args(variant, num_classes, image_size, width, dropout_rate,
                                   groups, init, grouped_conv_implementation)
    if init is not None:
        spec = dataclasses.replace(spec, init=init)
    if lrn_bias is not None:
        spec = dataclasses.replace(spec, lrn_bias=float(lrn_bias))
    if lrn_alpha is not None:
        spec = dataclasses.replace(spec, lrn_alpha=float(lrn_alpha))

    def seed_for(i):
        return None if seed is None else seed * 1000 + i

    inputs = keras.Input(shape=(geometry.image_size, geometry.image_size, 3), name="image")
    x = inputs
    for index, conv in enumerate(geometry.convs):
        kernel_init, bias_init = _initializers(
            spec, conv.name, conv.kernel_size ** 2 * conv.in_channels // conv.groups,
            is_classifier=False, seed=seed_for(index))
        use_bias = spec.normalization != "batchnorm"
        padding = "valid"
        if conv.padding:
            if conv.strides == 1 and conv.padding == conv.kernel_size // 2:
                padding = "same"  # identical to symmetric padding k//2 at stride 1
            else:
                x = keras.layers.ZeroPadding2D(conv.padding, name=f"{conv.name}_pad")(x)
        common = dict(kernel_size=conv.kernel_size, strides=conv.strides, padding=padding,
                      use_bias=use_bias, kernel_initializer=kernel_init,
                      bias_initializer=bias_init, name=conv.name)
        if conv.groups > 1:
            x = GroupedConv2D(conv.filters, groups=conv.groups,
                              implementation=grouped_conv_implementation, **common)(x)
        else:
            x = keras.layers.Conv2D(conv.filters, **common)(x)
        if spec.normalization == "batchnorm":
            # PyTorch's BatchNorm constants (momentum 0.1 there = 0.9 here, eps 1e-5),
            # which torchvision's and timm's ImageNet recipes were tuned with.
            x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5,
                                                name=f"{conv.name}_bn")(x)
        x = keras.layers.ReLU(name=f"{conv.name}_relu")(x)
        if conv.lrn:
            # Sec. 3.3: LRN after the ReLU of conv1 and conv2.
            x = LocalResponseNormalization(
                spec.lrn_depth_size, spec.lrn_bias, spec.lrn_alpha, spec.lrn_beta,
                name=f"norm{conv.name[-1]}")(x)
        if conv.pool:
            x = keras.layers.MaxPooling2D(spec.pool_size, spec.pool_strides,
                                          name=f"pool{conv.name[-1]}")(x)

    if spec.adaptive_pool:
        x = keras.layers.AdaptiveAveragePooling2D(spec.adaptive_pool, name="avgpool")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    fan_in = math.prod(geometry.flat_input)
    for i, units in enumerate(geometry.fc_units):
        layer = f"fc{6 + i}"
        if spec.dropout_placement == "before_fc":
            x = keras.layers.Dropout(dropout_rate, seed=seed_for(20 + i),
                                     name=f"{layer}_dropout_in")(x)
        kernel_init, bias_init = _initializers(spec, layer, fan_in, False, seed_for(10 + i))
        x = keras.layers.Dense(units, activation="relu", kernel_initializer=kernel_init,
                               bias_initializer=bias_init, name=layer)(x)
        if spec.dropout_placement == "after_fc":
            x = keras.layers.Dropout(dropout_rate, seed=seed_for(20 + i),
                                     name=f"{layer}_dropout")(x)
        fan_in = units
    kernel_init, bias_init = _initializers(spec, LOGITS_LAYER, fan_in, True, seed_for(30))
    # float32 logits keep the softmax and the loss stable under mixed precision.
    logits = keras.layers.Dense(num_classes, kernel_initializer=kernel_init,
                                bias_initializer=bias_init, dtype="float32",
                                name=LOGITS_LAYER)(x)
    return keras.Model(inputs, logits, name=name or f"alexnet_{variant}")


def model_from_config(config, *, name: str | None = None) -> "keras.Model":
    """The model ``config.model`` (a `alexnet_tf.config` ConfigDict) describes, seeded by
    ``config.seed``: what training builds, and what evaluation, export and the
    analyses fill from a checkpoint."""
    m = config.model
    return create_model(m.variant, num_classes=m.num_classes, image_size=m.image_size,
                        width=m.width, dropout_rate=m.dropout_rate, groups=m.groups,
                        init=m.init or None, lrn_bias=m.lrn_bias, lrn_alpha=m.lrn_alpha,
                        grouped_conv_implementation=m.grouped_conv_implementation,
                        seed=config.seed, name=name)


@contextlib.contextmanager
def global_policy(name: str):
    """Keras' global dtype policy set to ``name`` ("float32", "mixed_bfloat16", ...)
    inside the block, the caller's put back after: layers take the global policy when
    they are built, so a model built inside computes in ``name`` whatever the process
    had set (a notebook that trained in bfloat16, say)."""
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def load_model(path: str, **kwargs) -> "keras.Model":
    """``keras.models.load_model(path, **kwargs)`` of a ``.keras`` file holding this
    package's layers (a training run's export, ``EXPORT_DIR/<version>.keras``, converted
    weights' ``model.keras``).

    Keras finds a custom layer class only once its module has run its
    ``register_keras_serializable`` decorator, and ``import alexnet_tf`` loads no module
    (its names load on first use): this imports `alexnet_tf.layers` first. Plain
    ``keras.models.load_model`` works the same after ``import alexnet_tf.layers``.

    Raises what ``keras.models.load_model`` raises (e.g. ValueError for a path that is
    not a ``.keras`` file).
    """
    import keras

    from alexnet_tf import layers  # noqa: F401  (registers LocalResponseNormalization, GroupedConv2D)

    return keras.models.load_model(path, **kwargs)


def feature_extractor(model: "keras.Model") -> "keras.Model":
    """A model from the same input to the 4096-d fc7 activations (Sec. 6.1)."""
    import keras

    return keras.Model(model.input, model.get_layer(FEATURE_LAYER).output,
                       name=f"{model.name}_fc7")
