"""Image preprocessing as small pure functions, shared by training, evaluation and export.

Images stay uint8 until `normalize`, the last step, so that crops and flips move a
quarter of the bytes. Random ops are stateless: they take a ``seed`` tensor of shape
[2] and give the same result eagerly and inside ``tf.data`` (tests/test_data.py).
A per-example seed is split into one seed per op with `op_seed`, so adding an op
never changes what the others draw.

The recipe (Krizhevsky et al. 2012):
  Sec. 2:   shorter side to 256, central 256x256 crop, subtract the mean, raw RGB.
  Sec. 4.1: random 227x227 crop (the paper says 224) and horizontal flip; PCA
            lighting with alpha ~ N(0, 0.1) drawn once per image per use; at test
            time the centre crop, or ten crops (four corners and the centre, and their
            reflections) whose softmax outputs are averaged.

The modern recipe's optional extras are Keras 3's own layers, made stateless here:
  RandAugment (Cubuk et al. 2020) per image, on the uint8 crop after the flip and
  before normalisation; MixUp (Zhang et al. 2018) and CutMix (Yun et al. 2019) per
  batch, on normalised images with one-hot labels (`mix_batch`). Keras' layers draw
  from a stateful ``SeedGenerator``; `seeded_call` instead feeds every draw of one call
  from a seed tensor (`StatelessSeeds`), so they too give the same result for the
  same seed, eagerly and inside ``tf.data``, in any order and on any thread.

Speed: when a JPEG is already stored with shorter side ``resize_size`` (as
tools/build_tfrecords.py can store it), the crop is decoded directly with
``tf.io.decode_and_crop_jpeg``: only the crop's blocks are decoded. Its pixels equal
decode-then-crop's except on the crop's outermost rows and columns of images with
subsampled chroma, where they may differ by a few levels (tests/test_data.py).
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

# Sec. 4.1: eigen-decomposition of the ImageNet RGB covariance, widely used values for
# pixels scaled to [0, 1] (eigenvectors are the columns).
IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                       (-0.5808, -0.0045, -0.8140),
                       (-0.5836, -0.6948, 0.4203))

# Sub-seed indices: fixed per op so that each op's randomness is independent of the others.
_CROP, _FLIP, _LIGHTING, _CROP_LEFT, _RANDAUGMENT = 1, 2, 3, 4, 5
# Sub-seeds of a batch's seed (`mix_batch`).
_MIX_CHOICE, _MIXUP, _CUTMIX = 1, 2, 3


@dataclasses.dataclass(frozen=True)
class Normalization:
    """How float model inputs are made from 0..255 RGB pixels: the input convention.

    ``(pixel - mean) / std`` per channel, then reversed to BGR if ``channel_order``
    says so (weights trained in Caffe). ``mean_image`` (optional, resize_size x
    resize_size x 3) replaces the per-channel mean by the paper's mean image (Sec. 2),
    cropped at the same window as the image.
    """

    mean_rgb: tuple = (123.68, 116.78, 103.94)
    std_rgb: tuple = (1.0, 1.0, 1.0)
    channel_order: str = "RGB"
    mean_image: np.ndarray | None = None

    def __post_init__(self):
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}.")


@dataclasses.dataclass(frozen=True)
class Lighting:
    """Sec. 4.1's PCA lighting: alpha ~ N(0, std) along the RGB covariance's eigenvectors
    (columns of ``eigvec``), scaled by its eigenvalues (variances of [0, 1] pixels)."""

    std: float = 0.1
    eigval: tuple = IMAGENET_PCA_EIGVAL
    eigvec: tuple = IMAGENET_PCA_EIGVEC


def op_seed(seed, op: int):
    """The seed of one random op, derived from an example's seed ([2] int tensor)."""
    return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), op)


def is_supported_image(encoded):
    """True for non-empty JPEG, PNG, GIF or BMP bytes (by their magic numbers)."""
    head = tf.strings.substr(encoded, 0, 4)
    return tf.logical_and(
        tf.strings.length(encoded) > 0,
        tf.reduce_any(tf.stack([
            tf.image.is_jpeg(encoded),
            tf.equal(head, b"\x89PNG"),
            tf.equal(tf.strings.substr(encoded, 0, 3), b"GIF"),
            tf.equal(tf.strings.substr(encoded, 0, 2), b"BM"),
        ])))


def decode_rgb(encoded):
    """Decodes JPEG, PNG, GIF or BMP bytes to a uint8 [H, W, 3] RGB image.

    Greyscale images are expanded to three channels; an image with alpha drops it.
    """
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def resize_shorter_side(image, size: int):
    """Scales so the shorter side is ``size`` (Sec. 2); a no-op when it already is.

    Bilinear, rounded back to uint8. The paper does not name its filter. Plain
    bilinear interpolation (OpenCV's INTER_LINEAR, as Caffe's ImageNet tools used; TF
    Model Garden's default) reads every input pixel while the image shrinks by at most
    2x, which covers ImageNet's typical 500x375 photos; shrinking further, it would skip
    pixels and alias, so there the kernel is widened by the scale factor
    (``antialias=True``, Pillow's BILINEAR). Antialiasing every image would cost 2.4 ms
    of the 4.2 ms it takes to prepare a 500x375 JPEG (docs/BENCHMARKS.md).
    """
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    shorter = tf.minimum(height, width)

    def resize():
        scale = tf.cast(size, tf.float32) / tf.cast(shorter, tf.float32)
        new_h = tf.maximum(size, tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32))
        new_w = tf.maximum(size, tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32))
        new_size = tf.stack([new_h, new_w])
        resized = tf.cond(
            scale < 0.5,
            lambda: tf.image.resize(image, new_size, antialias=True),
            lambda: tf.image.resize(image, new_size, antialias=False))
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

    return tf.cond(tf.equal(shorter, size), lambda: image, resize)


def central_crop(image, size: int):
    """The central ``size`` x ``size`` patch (Sec. 2 at 256; the test-time crop at 227)."""
    shape = tf.shape(image)
    top = (shape[0] - size) // 2
    left = (shape[1] - size) // 2
    return image[top:top + size, left:left + size, :]


def crop_offsets(height, width, size: int, seed):
    """(top, left) of a uniformly placed ``size`` x ``size`` patch (Sec. 4.1)."""
    top = tf.random.stateless_uniform([], op_seed(seed, _CROP), 0, height - size + 1, tf.int32)
    left = tf.random.stateless_uniform([], op_seed(seed, _CROP_LEFT), 0, width - size + 1,
                                       tf.int32)
    return top, left


def random_crop(image, size: int, seed):
    """A uniformly placed ``size`` x ``size`` patch (Sec. 4.1)."""
    shape = tf.shape(image)
    top, left = crop_offsets(shape[0], shape[1], size, seed)
    return image[top:top + size, left:left + size, :]


def flip_draw(seed):
    """Whether an example is reflected (probability 1/2, Sec. 4.1)."""
    return tf.random.stateless_uniform([], op_seed(seed, _FLIP)) < 0.5


def flip_image(image, flip):
    """Reflects [H, W, C] (``flip`` a bool scalar) or [B, H, W, C] images (``flip`` a
    bool [B]) horizontally. ``tf.reverse``: a strided ``[:, ::-1]`` slice costs 8x more
    on CPU."""
    if image.shape.rank == 4:
        return tf.where(flip[:, None, None, None], tf.reverse(image, [2]), image)
    return tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)


def random_flip(image, seed):
    """A horizontal reflection with probability 1/2 (Sec. 4.1)."""
    return flip_image(image, flip_draw(seed))


def lighting_draw(std: float, seed):
    """The three alpha_i ~ N(0, std) of one image's PCA lighting (Sec. 4.1)."""
    return tf.random.stateless_normal([3], seed=op_seed(seed, _LIGHTING), stddev=std)


def lighting_shift(alpha, eigval=IMAGENET_PCA_EIGVAL, eigvec=IMAGENET_PCA_EIGVEC):
    """``P @ (alpha * lambda)`` on the 0..255 scale; works on [3] or batched [B, 3] alphas."""
    scaled = alpha * tf.constant(eigval, tf.float32)
    return tf.linalg.matvec(tf.constant(eigvec, tf.float32), scaled) * 255.0


def pca_lighting(image, std: float, seed, eigval: Sequence[float] = IMAGENET_PCA_EIGVAL,
                 eigvec: Sequence[Sequence[float]] = IMAGENET_PCA_EIGVEC):
    """Adds ``P @ (alpha * lambda)`` to every pixel, alpha ~ N(0, std) per image (Sec. 4.1).

    ``image`` is float on the 0..255 scale; ``eigval``/``eigvec`` are for pixels in
    [0, 1] (the widely used ImageNet values), so the shift is scaled by 255.
    """
    if std == 0:
        return image
    shift = lighting_shift(lighting_draw(std, seed), eigval, eigvec)
    return image + tf.cast(shift, image.dtype)


def normalize(image, norm: Normalization, mean_window=None):
    """float32 ``(image - mean) / std`` per channel (Sec. 2 subtracts the mean).

    With ``norm.mean_image``, ``mean_window`` = (top, left) of the image within the
    mean image; the window's mean pixels are subtracted instead of the channel mean.
    """
    image = tf.cast(image, tf.float32)
    if norm.mean_image is not None:
        size = tf.shape(image)[-2]
        top, left = mean_window
        mean = tf.constant(norm.mean_image, tf.float32)[top:top + size, left:left + size]
    else:
        mean = tf.constant(norm.mean_rgb, tf.float32)
    image = (image - mean) / tf.constant(norm.std_rgb, tf.float32)
    return to_channel_order(image, norm)


def to_channel_order(image, norm: Normalization):
    """RGB as it is, or reversed to BGR (weights trained in Caffe)."""
    return tf.reverse(image, [-1]) if norm.channel_order == "BGR" else image


def finish_paper_image(image, flip, alpha, norm: Normalization,
                       light: "Lighting"):
    """Sec. 4.1's tail after the crop: flip, PCA lighting, mean subtraction, scaling.

    One image (uint8 [H, W, 3], bool ``flip``, float [3] ``alpha``) or a batch
    ([B, H, W, 3], [B], [B, 3]). The lighting shift and the mean are one per-channel
    offset, so the float image is made in one pass (``cast + offset``), then scaled
    only when some std is not 1. Per-channel mean only (the mean image is subtracted
    at the crop's window, `paper_train_image`).
    """
    image = flip_image(image, flip)
    offset = -tf.constant(norm.mean_rgb, tf.float32)
    if light.std:
        offset = lighting_shift(alpha, light.eigval, light.eigvec) + offset
    if image.shape.rank == 4 and offset.shape.rank == 2:
        offset = offset[:, None, None, :]
    image = tf.cast(image, tf.float32) + offset
    if any(s != 1 for s in norm.std_rgb):
        image = image * tf.constant([1.0 / s for s in norm.std_rgb], tf.float32)
    return to_channel_order(image, norm)


def _stored_at(encoded, size: int):
    """True when ``encoded`` is a JPEG whose shorter side is already ``size``."""
    def shorter_side_matches():
        shape = tf.io.extract_jpeg_shape(encoded)
        return tf.equal(tf.minimum(shape[0], shape[1]), size)
    return tf.cond(tf.image.is_jpeg(encoded), shorter_side_matches, lambda: tf.constant(False))


def _crop_of_centre_square(encoded, size: int, resize_size: int, top, left):
    """The ``size`` crop at (top, left) of the image's central resize_size square,
    after the Sec. 2 resize; decoded directly when the JPEG is stored at resize_size."""
    def fused():
        shape = tf.io.extract_jpeg_shape(encoded)
        window = tf.stack([(shape[0] - resize_size) // 2 + top,
                           (shape[1] - resize_size) // 2 + left, size, size])
        return tf.io.decode_and_crop_jpeg(encoded, window, channels=3)

    def full():
        return _pixels_crop_of_centre_square(decode_rgb(encoded), size, resize_size, top, left)

    image = tf.cond(_stored_at(encoded, resize_size), fused, full)
    image.set_shape([size, size, 3])
    return image


def _pixels_crop_of_centre_square(image, size: int, resize_size: int, top, left):
    """`_crop_of_centre_square` for decoded uint8 pixels."""
    square = central_crop(resize_shorter_side(image, resize_size), resize_size)
    return square[top:top + size, left:left + size, :]


def paper_crop(encoded, seed, *, image_size: int, resize_size: int):
    """Sec. 2 and 4.1: a random ``image_size`` crop of the central ``resize_size``
    square of the resized image; returns (uint8 crop, (top, left) in that square)."""
    top, left = crop_offsets(resize_size, resize_size, image_size, seed)
    return _crop_of_centre_square(encoded, image_size, resize_size, top, left), (top, left)


def paper_train_image(encoded, seed, *, image_size: int, resize_size: int,
                      lighting: Lighting, norm: Normalization):
    """Sec. 2 and 4.1 for training: crop, flip, PCA lighting, normalisation."""
    image, window = paper_crop(encoded, seed, image_size=image_size, resize_size=resize_size)
    if norm.mean_image is not None:
        # The mean image is subtracted at the crop's own window, before the reflection
        # moves pixels; lighting is a per-image constant shift, so order is free.
        image = normalize(image, dataclasses.replace(norm, std_rgb=(1.0, 1.0, 1.0),
                                                     channel_order="RGB"), window)
        image = random_flip(image, seed)
        image = pca_lighting(image, lighting.std, seed, lighting.eigval, lighting.eigvec)
        image = image / tf.constant(norm.std_rgb, tf.float32)
        return to_channel_order(image, norm)
    alpha = lighting_draw(lighting.std, seed) if lighting.std else tf.zeros([3])
    return finish_paper_image(image, flip_draw(seed), alpha, norm, lighting)


def modern_crop(encoded, seed, *, image_size: int, area_range=(0.08, 1.0),
                aspect_ratio_range=(3 / 4, 4 / 3)):
    """Inception-style random-resized crop (Szegedy et al. 2015): a box of 8%-100% of
    the area and aspect 3/4-4/3, decoded directly from JPEGs, resized to image_size."""
    def box(shape):
        return tf.image.stateless_sample_distorted_bounding_box(
            shape, bounding_boxes=tf.zeros([1, 0, 4]), seed=op_seed(seed, _CROP),
            min_object_covered=0.0, aspect_ratio_range=aspect_ratio_range,
            area_range=area_range, max_attempts=10, use_image_if_no_bounding_boxes=True)

    def fused():
        begin, size, _ = box(tf.io.extract_jpeg_shape(encoded))
        window = tf.stack([begin[0], begin[1], size[0], size[1]])
        return tf.io.decode_and_crop_jpeg(encoded, window, channels=3)

    def full():
        image = decode_rgb(encoded)
        begin, size, _ = box(tf.shape(image))
        return tf.slice(image, begin, size)

    image = tf.cond(tf.image.is_jpeg(encoded), fused, full)
    image = tf.image.resize(image, [image_size, image_size], antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def modern_train_image(encoded, seed, *, image_size: int, norm: Normalization,
                       rand_augment_layer: "RandAugment | None" = None):
    """Random-resized crop, flip, optionally RandAugment (`rand_augment`), then
    normalisation (the mean image does not apply to resized crops)."""
    image = random_flip(modern_crop(encoded, seed, image_size=image_size), seed)
    if rand_augment_layer is not None:
        image = rand_augment(image, seed, rand_augment_layer)
    return normalize(image, dataclasses.replace(norm, mean_image=None))


def center_window(image_size: int, resize_size: int):
    offset = (resize_size - image_size) // 2
    return offset, offset


def eval_image(encoded, *, image_size: int, resize_size: int, norm: Normalization):
    """Evaluation and serving: the central ``image_size`` crop of the shorter-side
    ``resize_size`` image (Sec. 4.1's single-crop testing), normalised."""
    top, left = center_window(image_size, resize_size)
    image = _crop_of_centre_square(encoded, image_size, resize_size, top, left)
    return normalize(image, norm, (top, left))


def eval_pixels(image, *, image_size: int, resize_size: int, norm: Normalization):
    """`eval_image` for clients that decode themselves: uint8 [H, W, 3] pixels in."""
    top, left = center_window(image_size, resize_size)
    crop = _pixels_crop_of_centre_square(image, image_size, resize_size, top, left)
    crop.set_shape([image_size, image_size, 3])
    return normalize(crop, norm, (top, left))


def ten_crop_windows(image_size: int, resize_size: int):
    """(top, left) of Sec. 4.1's five test patches in the resize_size square:
    top-left, top-right, bottom-left, bottom-right, centre."""
    far = resize_size - image_size
    centre = far // 2
    return ((0, 0), (0, far), (far, 0), (far, far), (centre, centre))


def ten_crop_images(encoded, *, image_size: int, resize_size: int, norm: Normalization):
    """Sec. 4.1: the four corner patches and the centre patch, then their horizontal
    reflections: a [10, image_size, image_size, 3] float tensor, normalised."""
    square = central_crop(resize_shorter_side(decode_rgb(encoded), resize_size), resize_size)
    crops = [normalize(square[t:t + image_size, l:l + image_size, :], norm, (t, l))
             for t, l in ten_crop_windows(image_size, resize_size)]
    crops += [tf.reverse(crop, [1]) for crop in crops]
    images = tf.stack(crops)
    images.set_shape([10, image_size, image_size, 3])
    return images


# --- Keras 3's RandAugment, MixUp and CutMix, seeded per call ------------------------------

class StatelessSeeds(keras.random.SeedGenerator):
    """A `keras.random.SeedGenerator` whose k-th draw is ``fold_in(seed, k)``.

    Keras' random ops take a SeedGenerator and call its ``next()`` once per draw
    (`keras.src.random.seed_generator.draw_seed`); Keras' own generator answers from a
    state variable that every draw advances. This one holds no variable: its draws are
    a pure function of ``seed`` (a [2] integer tensor) and of the order of the draws
    within one call, which is fixed by the layer's code. Make one per call.
    """

    def __init__(self, seed):  # no super().__init__(): it would create the state variable
        self.name = "stateless_seeds"
        self._seed = tf.cast(seed, tf.int64)
        self._draws = 0

    def next(self, ordered=True):
        del ordered
        self._draws += 1
        return tf.random.experimental.stateless_fold_in(self._seed, self._draws)


_CALL_SEEDS = threading.local()


class _SeededPerCall:
    """Mixin for Keras' image preprocessing layers: every random draw comes from the
    seed given to `seeded_call`, never from the layer's stateful SeedGenerator.

    Keras' ``DataLayer`` contract: a layer gets its randomness from
    ``self._get_seed_generator()``; RandAugment hands that generator on to its
    sub-layers. Answering it here makes the whole layer stateless.
    """

    def _get_seed_generator(self, backend=None):
        seeds = getattr(_CALL_SEEDS, "seeds", None)
        if seeds is None:
            raise RuntimeError(f"{type(self).__name__} draws its randomness from a per-call seed: "
                               f"call it through alexnet_tf.data.preprocess.seeded_call.")
        return seeds


def seeded_call(layer, data, seed):
    """``layer(data, training=True)`` with all its random draws taken from ``seed``
    ([2] integer tensor): the same seed gives the same result, eagerly and in tf.data.

    (Inside ``tf.data`` the layer's Python runs once, when the map function is
    traced; the drawn seeds are ops on the traced seed argument.)
    """
    previous = getattr(_CALL_SEEDS, "seeds", None)
    _CALL_SEEDS.seeds = StatelessSeeds(seed)
    try:
        return layer(data, training=True)
    finally:
        _CALL_SEEDS.seeds = previous


class RandAugment(_SeededPerCall, keras.layers.RandAugment):
    """Keras' RandAugment, seeded per call, computing only the chosen operations.

    Keras' own ``transform_images`` runs all 11 operations for each of the
    ``num_ops`` steps and keeps the chosen one with ``where``; this one runs the
    chosen operation only (``tf.switch_case``) and gives the same pixels
    (tests/test_augment.py), about 20 times faster per 224x224 image on a CPU.
    """

    def transform_images(self, images, transformation, training=True):
        if not training:
            return super().transform_images(images, transformation, training)
        images = tf.cast(images, self.compute_dtype)
        shape = images.shape
        for i in range(self.num_ops):
            def branch(name, value, x=images):
                return lambda: tf.cast(getattr(self, name).transform_images(x, value),
                                       self.compute_dtype)
            # The transformation dict is keyed in the order the indices count (Keras').
            images = tf.switch_case(
                tf.cast(transformation["layer_idxes"][i], tf.int32),
                [branch(name, value) for name, value in transformation["transforms"].items()])
            images.set_shape(shape)
        return images


class MixUp(_SeededPerCall, keras.layers.MixUp):
    """Keras' MixUp, seeded per call."""


class CutMix(_SeededPerCall, keras.layers.CutMix):
    """Keras' CutMix, seeded per call, with label weights equal to the pasted pixels' share.

    Keras weighs the labels by the box's real-valued area, while the mask it pastes
    holds whole pixels (up to one row and one column more or less); the weights are
    recomputed from the mask, as timm corrects lambda to the clipped box.
    """

    def get_random_transformation(self, data, training=True, seed=None):
        transformation = super().get_random_transformation(data, training, seed)
        if transformation is not None:
            pasted = tf.cast(transformation["batch_masks"][..., 0], self.compute_dtype)
            transformation["mix_weight"] = 1.0 - tf.reduce_mean(pasted, axis=[1, 2])
        return transformation


def make_rand_augment(num_ops: int, magnitude: float) -> RandAugment:
    """RandAugment on 0..255 pixels: ``num_ops`` operations per image out of Keras' 11,
    each with a strength drawn up to ``magnitude`` (Keras' ``factor``, in [0, 1])."""
    return RandAugment(value_range=(0, 255), num_ops=num_ops, factor=magnitude, seed=0,
                       dtype="float32")


def make_mixup(alpha: float) -> MixUp:
    """MixUp with weights ~ Beta(alpha, alpha), one per example."""
    return MixUp(alpha=alpha, seed=0, dtype="float32")


def make_cutmix(alpha: float) -> CutMix:
    """CutMix with the pasted area's share ~ Beta(alpha, alpha) per example; Keras' CutMix
    draws alpha from its ``factor`` range, here (alpha, alpha), so alpha is in (0, 1]."""
    return CutMix(factor=(alpha, alpha), seed=0, dtype="float32")


def rand_augment(image, seed, layer: RandAugment):
    """RandAugment of one uint8 [H, W, 3] image with this example's seed; uint8 out.

    Each image draws its own operations (as in Cubuk et al. 2020; Keras' layer on a
    batch would give every image of the batch the same ones).
    """
    image = tf.ensure_shape(image, [None, None, 3])  # Keras checks the channel count
    augmented = seeded_call(layer, image, op_seed(seed, _RANDAUGMENT))
    augmented = tf.cast(tf.clip_by_value(tf.round(augmented), 0, 255), tf.uint8)
    augmented.set_shape(image.shape)
    return augmented


def mix_batch(images, labels, seed, *, mixup: MixUp | None = None,
              cutmix: CutMix | None = None):
    """MixUp or CutMix of one batch: float images [B, H, W, C] and one-hot (or already
    soft) float labels [B, num_classes] -> the mixed images and soft labels.

    ``seed`` ([2] integer tensor) is the batch's. With both layers given, each batch
    gets one of them with probability 1/2 (timm's ``switch_prob=0.5``).
    """
    images = tf.cast(images, tf.float32)
    labels = tf.cast(labels, tf.float32)

    def apply(layer, op):
        out = seeded_call(layer, {"images": images, "labels": labels}, op_seed(seed, op))
        return tf.cast(out["images"], tf.float32), tf.cast(out["labels"], tf.float32)

    if mixup is not None and cutmix is not None:
        use_cutmix = tf.random.stateless_uniform([], op_seed(seed, _MIX_CHOICE)) < 0.5
        images, labels = tf.cond(use_cutmix, lambda: apply(cutmix, _CUTMIX),
                                 lambda: apply(mixup, _MIXUP))
    elif mixup is not None:
        images, labels = apply(mixup, _MIXUP)
    elif cutmix is not None:
        images, labels = apply(cutmix, _CUTMIX)
    return images, labels
