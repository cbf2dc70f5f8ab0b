"""The paper's own model parallelism (Sec. 3.2): tower A on one device, tower B on another.

`two_tower_forward(model, images, devices)` runs a ``paper`` model with half of the
kernels of every layer on each device, using the model's own weights, and talks
across devices only where the paper's GPUs did:

* conv1, conv2, conv4, conv5 and the pools stay on their tower (conv2/4/5 are the
  grouped layers, so each tower reads only its own maps);
* conv3, fc6 and fc7 read both towers' outputs ("the GPUs communicate only in
  certain layers", Fig. 2): each device computes its half of their outputs from the
  concatenation; fc8 runs on the first device from both halves of fc7.

One exchange goes beyond the paper: this package's LRN, like Caffe's bvlc_alexnet,
normalises across all 96 (256) maps, so the two maps on each side of the tower
boundary (n/2 = 2) are copied across for LRN. With that, the outputs equal the
single-device model's (tests/test_towers.py).

Variables stay where Keras created them; each device reads its halves. With
``training=True`` dropout is applied to each tower's half with its own random mask,
which is dropout all the same but not the single-device model's draws.
"""

from __future__ import annotations

import tensorflow as tf

from alexnet_tf import architecture
from alexnet_tf.layers import GroupedConv2D, LocalResponseNormalization


def _conv(layer, x, kernel, bias):
    y = tf.nn.convolution(x, kernel, strides=list(layer.strides), padding=layer.padding.upper())
    return tf.nn.relu(tf.nn.bias_add(y, bias))


def _half(tensor, part: int):
    size = tensor.shape[-1] // 2
    return tensor[..., part * size:(part + 1) * size]


def _lrn(layer: LocalResponseNormalization, towers, devices):
    """LRN across the channels of both towers, with the boundary maps exchanged."""
    halo = layer.depth_size // 2
    out = []
    for part, device in enumerate(devices):
        with tf.device(device):
            x = towers[part]
            if part == 0:
                padded = tf.concat([x, towers[1][..., :halo]], -1)
                y = layer(padded)[..., :x.shape[-1]]
            else:
                padded = tf.concat([towers[0][..., -halo:], x], -1)
                y = layer(padded)[..., halo:]
            out.append(y)
    return out


def check_towerable(model) -> None:
    """Raises ValueError unless ``model`` is a two-tower ``paper`` model."""
    conv2 = model.get_layer("conv2")
    if not isinstance(conv2, GroupedConv2D) or conv2.groups != 2:
        raise ValueError(f"Model {model.name!r} has no two towers (conv2 is not a GroupedConv2D "
                         f"with groups=2); tower placement needs the 'paper' variant.")
    for name in ("conv1_pad", "avgpool", "conv1_bn"):
        if name in [layer.name for layer in model.layers]:
            raise ValueError(f"Model {model.name!r} has layer {name!r}: tower placement "
                             f"supports the 'paper' variant's layer sequence only.")


def two_tower_forward(model, images, devices=("/CPU:0", "/CPU:1"), training: bool = False):
    """The logits of a ``paper`` model with tower A on ``devices[0]`` and B on ``devices[1]``.

    Follows the variant table (`alexnet_tf.architecture.VARIANTS["paper"]`): a stage
    whose kernels are grouped (conv2, conv4, conv5) runs on each tower's own maps; conv1
    sees the whole image; the other stages (conv3) and the hidden fully connected
    layers read both towers, each device computing half of the outputs (Sec. 3.2).

    Args:
      model: a `create_model("paper", ...)` model (any width, image size, classes).
      images: float [B, S, S, 3], normalised.
      devices: the two devices, e.g. ("/GPU:0", "/GPU:1").
      training: applies the fc layers' dropout (Sec. 4.2).
    Returns:
      float logits [B, num_classes], on ``devices[0]``.
    Raises:
      ValueError: the model has no two towers, or ``devices`` is not two devices.
    """
    check_towerable(model)
    if len(devices) != 2:
        raise ValueError(f"devices must name two devices (one per tower), got {devices!r}.")
    variant = architecture.get_variant("paper")
    get = model.get_layer

    towers = None
    for spec in variant.convs:
        layer = get(spec.name)
        outputs = []
        for part, device in enumerate(devices):
            with tf.device(device):
                if towers is None:  # conv1: each tower's kernels see the whole image
                    x = images
                elif spec.groups > 1:  # grouped: each tower reads only its own maps
                    x = towers[part]
                else:  # connected across towers: both halves in, half of the outputs out
                    x = tf.concat(towers, -1)
                outputs.append(_conv(layer, x, _half(layer.kernel, part),
                                     _half(layer.bias, part)))
        towers = outputs
        if spec.lrn:
            towers = _lrn(get(f"norm{spec.name[-1]}"), towers, devices)
        if spec.pool:
            pool = get(f"pool{spec.name[-1]}")
            for part, device in enumerate(devices):
                with tf.device(device):
                    towers[part] = pool(towers[part])

    # The hidden fully connected layers read both towers; each device computes half
    # of the units, with the dropout that follows them (Sec. 4.2).
    both = towers
    for i in range(len(variant.fc_units)):
        layer = get(f"fc{6 + i}")
        dropout = get(f"fc{6 + i}_dropout").rate
        halves = []
        for part, device in enumerate(devices):
            with tf.device(device):
                x = tf.concat(both, -1)
                x = tf.reshape(x, [-1, x.shape[1] * x.shape[2] * x.shape[3]]) if x.shape.rank == 4 else x
                y = tf.nn.relu(tf.matmul(x, _half(layer.kernel, part)) + _half(layer.bias, part))
                if training and dropout:
                    y = tf.nn.dropout(y, rate=dropout)
                halves.append(y)
        both = halves
    fc8 = get(architecture.LOGITS_LAYER)
    with tf.device(devices[0]):
        x = tf.concat(both, -1)
        return tf.matmul(tf.cast(x, fc8.kernel.dtype), fc8.kernel) + fc8.bias
