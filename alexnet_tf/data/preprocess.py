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

The modern recipe (`modern_train_image`): Inception-style random-resized crop and flip;
its optional extras, RandAugment per image and MixUp/CutMix per batch, are Keras 3's
layers made stateless in `alexnet_tf.data.augment` (RandAugment comes in as an argument,
so this module needs no Keras). Normalisation follows the model's input convention
(`alexnet_tf.convention.InputConvention`: mean or mean image, std, channel order).

Decoding follows the one decode rule of `alexnet_tf.data.decode` (alpha over white,
EXIF orientation applied, the same in training, evaluation, serving, the converter and
the statistics).

Decoded images: every function here that takes ``encoded`` bytes also takes an image
already decoded, uint8 [H, W, 3] RGB (a record stored raw, `tools/build_tfrecords.py
--format=raw`: the paper's 256x256 square, Sec. 2), told apart by its dtype when the
function is traced; nothing is decoded then, and the same crops, flips and
normalisation follow, so a raw record and the JPEG it was made from give the same
example up to the JPEG's own loss.

Speed: when a JPEG is already stored with shorter side ``resize_size`` (as
tools/build_tfrecords.py can store it) and shown as stored (EXIF orientation 1, told
from its first bytes for the common file), the crop is decoded directly with
``tf.io.decode_and_crop_jpeg``: only the crop's blocks are decoded. Its pixels equal
decode-then-crop's except on the crop's outermost rows and columns of images with
subsampled chroma, where they may differ by a few levels (tests/test_data.py).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import tensorflow as tf

from alexnet_tf.convention import InputConvention
from alexnet_tf.data import decode
from alexnet_tf.data.stats import IMAGENET_PCA_EIGVAL, IMAGENET_PCA_EIGVEC

# Sub-seed indices: fixed per op so that each op's randomness is independent of the others.
# 5 is RandAugment's (alexnet_tf.data.augment); a new op takes the next free index.
_CROP, _FLIP, _LIGHTING, _CROP_LEFT = 1, 2, 3, 4


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
    return decode.is_supported(encoded)


def is_decoded(image) -> bool:
    """Whether ``image`` is decoded pixels (uint8) rather than encoded bytes (tf.string):
    decided when a function is traced, from the dtype."""
    return tf.as_dtype(image.dtype) == tf.uint8


def decode_rgb(encoded, orientation=None):
    """Decodes JPEG, PNG, GIF or BMP bytes to a uint8 [H, W, 3] RGB image by the one
    decode rule (`alexnet_tf.data.decode`): greyscale replicated, alpha composited over
    white, EXIF orientation applied. ``orientation``: from `decode.inspect_batch`, whose
    prepared bytes ``encoded`` then are (the pipeline); None: computed here. Decoded
    pixels (`is_decoded`) are returned as they are."""
    if is_decoded(encoded):
        return encoded
    return decode.decode_rgb(encoded, orientation)


def resize_shorter_side(image, size: int):
    """Scales so the shorter side is ``size`` (Sec. 2); a no-op when it already is.

    Bilinear, rounded back to uint8. The paper does not name its filter. Plain
    bilinear interpolation (OpenCV's INTER_LINEAR, as Caffe's ImageNet tools used; TF
    Model Garden's default) reads every input pixel while the image shrinks by at most
    2x, which covers ImageNet's typical 500x375 photos; shrinking further, it would skip
    pixels and alias, so there the kernel is widened by the scale factor
    (``antialias=True``, Pillow's BILINEAR). Antialiasing every image would more than
    double the cost of preparing a 500x375 JPEG (docs/BENCHMARKS.md).

    ``image``: uint8 [H, W, 3], or a batch [B, H, W, 3] of one size (each image as
    alone: the same kernel per image).
    """
    shape = tf.shape(image)
    height, width = shape[-3], shape[-2]
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
    """The central ``size`` x ``size`` patch (Sec. 2 at 256; the test-time crop at 227)
    of [H, W, C], or of each image of [B, H, W, C]."""
    shape = tf.shape(image)
    top = (shape[-3] - size) // 2
    left = (shape[-2] - size) // 2
    return image[..., top:top + size, left:left + size, :]


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


def normalize(image, norm: InputConvention, mean_window=None):
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


def to_channel_order(image, norm: InputConvention):
    """RGB as it is, or reversed to BGR (weights trained in Caffe)."""
    return tf.reverse(image, [-1]) if norm.channel_order == "BGR" else image


def finish_paper_image(image, flip, alpha, norm: InputConvention,
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


def _upright(encoded, orientation):
    """EXIF orientation 1 (shown as stored): ``orientation`` if given, else read."""
    return tf.equal(decode.jpeg_orientation(encoded) if orientation is None else orientation, 1)


def _stored_at(encoded, size: int, orientation=None):
    """True when ``encoded`` is a JPEG whose shorter side is already ``size`` and that
    is shown as stored (EXIF orientation 1): its crop can be decoded directly."""
    def shorter_side_matches():
        shape = tf.io.extract_jpeg_shape(encoded)
        return tf.equal(tf.minimum(shape[0], shape[1]), size) & _upright(encoded, orientation)
    return tf.cond(tf.image.is_jpeg(encoded), shorter_side_matches, lambda: tf.constant(False))


def _crop_of_centre_square(encoded, size: int, resize_size: int, top, left, orientation=None):
    """The ``size`` crop at (top, left) of the image's central resize_size square,
    after the Sec. 2 resize; decoded directly when the JPEG is stored at resize_size;
    cropped from decoded pixels (`is_decoded`) with no decoding at all."""
    if is_decoded(encoded):
        image = _pixels_crop_of_centre_square(encoded, size, resize_size, top, left)
        image.set_shape([size, size, 3])
        return image

    def fused():
        shape = tf.io.extract_jpeg_shape(encoded)
        window = tf.stack([(shape[0] - resize_size) // 2 + top,
                           (shape[1] - resize_size) // 2 + left, size, size])
        return tf.io.decode_and_crop_jpeg(encoded, window, channels=3)

    def full():
        return _pixels_crop_of_centre_square(decode_rgb(encoded, orientation), size,
                                             resize_size, top, left)

    image = tf.cond(_stored_at(encoded, resize_size, orientation), fused, full)
    image.set_shape([size, size, 3])
    return image


def _pixels_crop_of_centre_square(image, size: int, resize_size: int, top, left):
    """`_crop_of_centre_square` for decoded uint8 pixels: [H, W, 3], or a batch
    [B, H, W, 3] of one size."""
    square = central_crop(resize_shorter_side(image, resize_size), resize_size)
    return square[..., top:top + size, left:left + size, :]


def paper_crop(encoded, seed, *, image_size: int, resize_size: int, orientation=None):
    """Sec. 2 and 4.1: a random ``image_size`` crop of the central ``resize_size``
    square of the resized image; returns (uint8 crop, (top, left) in that square).
    ``orientation`` (every function taking ``encoded`` here): see `decode_rgb`."""
    top, left = crop_offsets(resize_size, resize_size, image_size, seed)
    return _crop_of_centre_square(encoded, image_size, resize_size, top, left,
                                  orientation), (top, left)


def paper_train_image(encoded, seed, *, image_size: int, resize_size: int,
                      lighting: Lighting, norm: InputConvention, orientation=None):
    """Sec. 2 and 4.1 for training: crop, flip, PCA lighting, normalisation."""
    image, window = paper_crop(encoded, seed, image_size=image_size, resize_size=resize_size,
                               orientation=orientation)
    if norm.mean_image is not None:
        # The mean image is subtracted at the crop's own window, before the reflection
        # moves pixels; lighting is a per-image constant shift, so order is free.
        image = normalize(image, norm.replace(std_rgb=(1.0, 1.0, 1.0), channel_order="RGB"),
                          window)
        image = random_flip(image, seed)
        image = pca_lighting(image, lighting.std, seed, lighting.eigval, lighting.eigvec)
        image = image / tf.constant(norm.std_rgb, tf.float32)
        return to_channel_order(image, norm)
    alpha = lighting_draw(lighting.std, seed) if lighting.std else tf.zeros([3])
    return finish_paper_image(image, flip_draw(seed), alpha, norm, lighting)


def modern_crop(encoded, seed, *, image_size: int, area_range=(0.08, 1.0),
                aspect_ratio_range=(3 / 4, 4 / 3), orientation=None):
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
        image = decode_rgb(encoded, orientation)
        begin, size, _ = box(tf.shape(image))
        return tf.slice(image, begin, size)

    if is_decoded(encoded):
        image = full()
    else:
        image = tf.cond(tf.cond(tf.image.is_jpeg(encoded),
                                lambda: _upright(encoded, orientation),
                                lambda: tf.constant(False)), fused, full)
    image = tf.image.resize(image, [image_size, image_size], antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def modern_train_image(encoded, seed, *, image_size: int, norm: InputConvention,
                       rand_augment: Callable | None = None, orientation=None):
    """Random-resized crop, flip, optionally RandAugment, then normalisation (the mean
    image does not apply to resized crops): float32 [image_size, image_size, 3].

    ``rand_augment``: None, or a function (uint8 [S, S, 3] image, the example's [2]
    seed) -> uint8 image of the same shape, applied after the flip; the pipeline passes
    ``functools.partial(augment.rand_augment, layer=augment.make_rand_augment(...))``
    (`alexnet_tf.data.augment`).
    """
    image = random_flip(modern_crop(encoded, seed, image_size=image_size,
                                    orientation=orientation), seed)
    if rand_augment is not None:
        image = rand_augment(image, seed)
    return normalize(image, norm.replace(mean_image=None))


def center_window(image_size: int, resize_size: int):
    offset = (resize_size - image_size) // 2
    return offset, offset


def eval_image(encoded, *, image_size: int, resize_size: int, norm: InputConvention,
               orientation=None):
    """Evaluation and serving: the central ``image_size`` crop of the shorter-side
    ``resize_size`` image (Sec. 4.1's single-crop testing), normalised."""
    top, left = center_window(image_size, resize_size)
    image = _crop_of_centre_square(encoded, image_size, resize_size, top, left, orientation)
    return normalize(image, norm, (top, left))


def eval_pixels(image, *, image_size: int, resize_size: int, norm: InputConvention):
    """`eval_image` for clients that decode themselves: uint8 [H, W, 3] pixels in,
    float32 [image_size, image_size, 3] out; or a batch [B, H, W, 3] of one size in,
    [B, image_size, image_size, 3] out, each image exactly as alone (the serving
    ``pixels`` signatures take whole batches so, with no per-image loop)."""
    top, left = center_window(image_size, resize_size)
    crop = _pixels_crop_of_centre_square(image, image_size, resize_size, top, left)
    crop.set_shape(crop.shape[:-3].concatenate([image_size, image_size, 3]))
    return normalize(crop, norm, (top, left))


def ten_crop_windows(image_size: int, resize_size: int):
    """(top, left) of Sec. 4.1's five test patches in the resize_size square:
    top-left, top-right, bottom-left, bottom-right, centre."""
    far = resize_size - image_size
    centre = far // 2
    return ((0, 0), (0, far), (far, 0), (far, far), (centre, centre))


def ten_crop_images(encoded, *, image_size: int, resize_size: int, norm: InputConvention,
                    orientation=None):
    """Sec. 4.1: the four corner patches and the centre patch, then their horizontal
    reflections: a [10, image_size, image_size, 3] float tensor, normalised."""
    square = central_crop(resize_shorter_side(decode_rgb(encoded, orientation), resize_size),
                          resize_size)
    crops = [normalize(square[t:t + image_size, l:l + image_size, :], norm, (t, l))
             for t, l in ten_crop_windows(image_size, resize_size)]
    crops += [tf.reverse(crop, [1]) for crop in crops]
    images = tf.stack(crops)
    images.set_shape([10, image_size, image_size, 3])
    return images
