"""AlexNet variants as data, and their geometry: no Keras, no TensorFlow.

Variants (`VARIANTS`):

* ``paper``: the two-tower network of Krizhevsky, Sutskever, Hinton (NeurIPS 2012),
  Sec. 3 and Fig. 2, 60,965,224 parameters at 1000 classes and 227x227 input.
* ``one_tower``: Krizhevsky 2014, "One weird trick for parallelizing convolutional
  neural networks", as torchvision's ``alexnet``: 64-192-384-256-256 kernels, no LRN,
  no groups, a 6x6 adaptive average pool; 61,100,840 parameters at 224x224.
* ``modern``: the paper's geometry with what a decade of practice changed; each
  choice and its source is in the ``Variant`` row below and in README.md.

`resolve_layers` is the one walk over a variant's layers (channels after width
scaling, groups, every side length): `alexnet_tf.models.create_model` builds from it,
the weight converters check shapes with it, the tower-parallel forward follows it
and the benchmark's PyTorch peer rebuilds the network from it. The config layer
validates model keys with it before TensorFlow is imported.

Layer names are stable (``conv1`` .. ``conv5``, ``fc6``, ``fc7``, ``fc8``): weight
converters, kernel plots and feature extraction find layers by these names. The
output of layer ``fc7`` is the 4096-d post-ReLU feature vector of Sec. 6.1.
"""

from __future__ import annotations

import dataclasses

FEATURE_LAYER = "fc7"
LOGITS_LAYER = "fc8"
# Sec. 3.2, Fig. 2: the layers whose kernels see only their own tower; the `groups`
# argument of create_model regroups these in any variant.
TOWER_LAYERS = ("conv2", "conv4", "conv5")
INIT_SCHEMES = ("paper", "torch_default", "he")
# How a grouped convolution is computed (`alexnet_tf.layers.GroupedConv2D`).
GROUPED_CONV_IMPLEMENTATIONS = ("auto", "split", "native")


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """One convolutional stage: conv, (norm), ReLU, (LRN), (max-pool)."""

    name: str
    filters: int
    kernel_size: int
    strides: int = 1
    padding: int = 0  # symmetric zero padding in pixels, as in Caffe and PyTorch
    groups: int = 1
    lrn: bool = False
    pool: bool = False


@dataclasses.dataclass(frozen=True)
class Variant:
    """A row of the variant table. Every field names where its value comes from."""

    name: str
    source: str
    convs: tuple[ConvSpec, ...]
    fc_units: tuple[int, ...] = (4096, 4096)  # Sec. 3.5 / Fig. 2
    default_image_size: int = 227
    # "none": conv has a bias; "batchnorm": conv without bias, then BatchNorm.
    normalization: str = "none"
    # "paper": N(0, 0.01) weights, biases 0 or 1 (Sec. 5);
    # "torch_default": PyTorch's default nn.Conv2d/nn.Linear init (torchvision alexnet);
    # "he": He et al. 2015 normal for conv/fc, N(0, 0.01) for the classifier, zero biases.
    init: str = "paper"
    bias_one_layers: frozenset = frozenset()
    # "after_fc": dropout on the outputs of fc6 and fc7 (Sec. 4.2);
    # "before_fc": torchvision's placement, on the inputs of fc6 and fc7.
    dropout_placement: str = "after_fc"
    dropout_rate: float = 0.5  # Sec. 4.2
    adaptive_pool: int | None = None  # torchvision's AdaptiveAvgPool2d((6, 6))
    # Sec. 3.3: k=2, n=5, alpha=1e-4, beta=0.75 (alpha multiplies the plain sum).
    lrn_depth_size: int = 5
    lrn_bias: float = 2.0
    lrn_alpha: float = 1e-4
    lrn_beta: float = 0.75
    pool_size: int = 3  # Sec. 3.4: overlapping pooling, z=3 ...
    pool_strides: int = 2  # ... s=2


_PAPER_CONVS = (
    # Sec. 3.5 and Fig. 2. The paper's 224 input only fits conv1 as 227 (Caffe's choice).
    ConvSpec("conv1", 96, 11, strides=4, padding=0, lrn=True, pool=True),
    ConvSpec("conv2", 256, 5, padding=2, groups=2, lrn=True, pool=True),
    ConvSpec("conv3", 384, 3, padding=1),  # connected across towers
    ConvSpec("conv4", 384, 3, padding=1, groups=2),
    ConvSpec("conv5", 256, 3, padding=1, groups=2, pool=True),
)

VARIANTS: dict[str, Variant] = {
    "paper": Variant(
        name="paper",
        source="Krizhevsky, Sutskever, Hinton 2012, Sec. 3-5 and Fig. 2",
        convs=_PAPER_CONVS,
        default_image_size=227,
        init="paper",
        # Sec. 5: "biases in the second, fourth, and fifth convolutional layers, as well
        # as in the fully-connected hidden layers, with the constant 1".
        bias_one_layers=frozenset({"conv2", "conv4", "conv5", "fc6", "fc7"}),
    ),
    "one_tower": Variant(
        name="one_tower",
        source="Krizhevsky 2014 (arXiv:1404.5997), as torchvision.models.alexnet",
        convs=(
            ConvSpec("conv1", 64, 11, strides=4, padding=2, pool=True),
            ConvSpec("conv2", 192, 5, padding=2, pool=True),
            ConvSpec("conv3", 384, 3, padding=1),
            ConvSpec("conv4", 256, 3, padding=1),
            ConvSpec("conv5", 256, 3, padding=1, pool=True),
        ),
        default_image_size=224,
        init="torch_default",
        dropout_placement="before_fc",
        adaptive_pool=6,
    ),
    "modern": Variant(
        name="modern",
        source=("paper geometry; BatchNorm (Ioffe & Szegedy 2015) in place of LRN, "
                "He init (He et al. 2015), conv1 padding 2 for 224 input (torchvision)"),
        convs=tuple(
            dataclasses.replace(c, lrn=False, groups=1,
                                padding=2 if c.name == "conv1" else c.padding)
            for c in _PAPER_CONVS),
        default_image_size=224,
        normalization="batchnorm",
        init="he",
    ),
}


def _conv_output_size(size: int, kernel: int, strides: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // strides + 1


@dataclasses.dataclass(frozen=True)
class ConvLayer:
    """One convolutional stage of a built model, every size resolved.

    ``in_channels``/``filters`` are after width scaling; ``groups`` after the
    ``groups`` argument; ``output_size`` is the conv output's side and ``pooled_size``
    the side after the stage's max-pool (``output_size`` when it has none).
    """

    name: str
    in_channels: int
    filters: int
    kernel_size: int
    strides: int
    padding: int
    groups: int
    lrn: bool
    pool: bool
    input_size: int
    output_size: int
    pooled_size: int


@dataclasses.dataclass(frozen=True)
class Geometry:
    """A variant at one input size, width and grouping, as plain numbers: what
    `create_model` builds, the weight converters expect, the tower-parallel forward
    walks and the benchmark's PyTorch peer rebuilds.

    ``flat_input`` is the ``(h, w, c)`` map fc6 flattens (in H, W, C order);
    ``fc_units`` are the hidden fully connected widths after width scaling.
    """

    variant: "Variant"
    image_size: int
    num_classes: int
    convs: tuple[ConvLayer, ...]
    flat_input: tuple[int, int, int]
    fc_units: tuple[int, ...]


def _walk_sizes(variant: "Variant", image_size: int):
    """(conv spec, input side, conv output side, pooled side) per stage, in order."""
    size = image_size
    for spec in variant.convs:
        out = _conv_output_size(size, spec.kernel_size, spec.strides, spec.padding)
        pooled = (_conv_output_size(out, variant.pool_size, variant.pool_strides, 0)
                  if spec.pool else out)
        yield spec, size, out, pooled
        size = pooled


def spatial_sizes(variant: "Variant", image_size: int) -> list[tuple[str, int]]:
    """Side length of every conv and pool output for a square input, in order."""
    sizes = []
    for spec, _, out, pooled in _walk_sizes(variant, image_size):
        sizes.append((spec.name, out))
        if spec.pool:
            sizes.append((f"pool{spec.name[-1]}", pooled))
    return sizes


def min_image_size(variant: "Variant") -> int:
    """The smallest square input the variant's geometry accepts (67 for ``paper``)."""
    size = 1
    while min(s for _, s in spatial_sizes(variant, size)) < 1:
        size += 1
    return size


def resolve_layers(variant: str, num_classes: int = 1000, image_size: int | None = None,
                   width: float = 1.0, groups: int | None = None) -> Geometry:
    """The one walk over a variant's layers: every channel count, group and side.

    Raises ValueError, naming the value and what was expected, when the arguments
    cannot be built (unknown variant, an input too small for the geometry, a width
    that leaves a grouped layer's channels indivisible).
    """
    spec = get_variant(variant)
    image_size = spec.default_image_size if image_size is None else image_size
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}.")
    if not (isinstance(width, (int, float)) and not isinstance(width, bool) and width > 0):
        raise ValueError(f"width must be a positive number, got {width!r}.")
    if groups is not None and (not isinstance(groups, int) or groups < 1):
        raise ValueError(f"groups must be None or a positive integer, got {groups!r}.")
    smallest = min_image_size(spec)
    if image_size < smallest:
        first_bad = next(n for n, s in spatial_sizes(spec, image_size) if s < 1)
        raise ValueError(
            f"image_size={image_size} is too small for variant {variant!r}: {first_bad} would "
            f"have no output; the smallest input its geometry accepts is {smallest}.")
    convs, channels = [], 3
    for conv, size_in, out, pooled in _walk_sizes(spec, image_size):
        filters = _scaled(conv.filters, width)
        conv_groups = _groups_of(spec, conv, groups)
        if conv_groups > 1 and (filters % conv_groups or channels % conv_groups):
            raise ValueError(
                f"width={width} gives {conv.name} {channels} input and {filters} output "
                f"channels; both must be divisible by groups={conv_groups}. Choose a width "
                f"that keeps every grouped layer's channels divisible.")
        convs.append(ConvLayer(conv.name, channels, filters, conv.kernel_size, conv.strides,
                               conv.padding, conv_groups, conv.lrn, conv.pool, size_in, out,
                               pooled))
        channels = filters
    side = spec.adaptive_pool or convs[-1].pooled_size
    return Geometry(spec, image_size, num_classes, tuple(convs), (side, side, channels),
                    tuple(_scaled(u, width) for u in spec.fc_units))


def get_variant(variant: str) -> Variant:
    if variant not in VARIANTS:
        raise ValueError(
            f"Unknown AlexNet variant {variant!r}; expected one of {sorted(VARIANTS)}.")
    return VARIANTS[variant]


def _scaled(units: int, width: float) -> int:
    return max(1, int(round(units * width)))


def validate_model_args(variant: str, num_classes: int, image_size: int | None,
                        width: float, dropout_rate: float | None = None,
                        groups: int | None = None, init: str | None = None,
                        grouped_conv_implementation: str = "auto") -> Geometry:
    """Raises ValueError, naming the value and what was expected, for arguments that
    `create_model` cannot build; checks the geometry without building anything and
    returns it."""
    if dropout_rate is not None and not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1), got {dropout_rate!r}.")
    if init is not None and init not in INIT_SCHEMES:
        raise ValueError(f"init must be None or one of {INIT_SCHEMES}, got {init!r}.")
    if grouped_conv_implementation not in GROUPED_CONV_IMPLEMENTATIONS:
        raise ValueError(f"grouped_conv_implementation must be one of "
                         f"{GROUPED_CONV_IMPLEMENTATIONS}, got {grouped_conv_implementation!r}.")
    return resolve_layers(variant, num_classes, image_size, width, groups)


def _groups_of(spec: Variant, conv: ConvSpec, groups: int | None) -> int:
    if groups is not None and conv.name in TOWER_LAYERS:
        return groups
    return conv.groups
