"""The modern recipe's extras: Keras 3's RandAugment, MixUp and CutMix, made stateless.

* RandAugment (Cubuk et al. 2020, "RandAugment: Practical automated data augmentation
  with a reduced search space"): per image, ``num_ops`` operations drawn from Keras' 11,
  each with a strength up to ``magnitude``; on the uint8 crop after the flip and before
  normalisation (`rand_augment`, passed to
  `alexnet_tf.data.preprocess.modern_train_image`).
* MixUp (Zhang et al. 2018, "mixup: Beyond empirical risk minimization"): per batch, each
  image blended with another with weight ~ Beta(alpha, alpha), the one-hot labels blended
  alike.
* CutMix (Yun et al. 2019, "CutMix: Regularization strategy to train strong classifiers
  with localizable features"): per batch, a rectangle of another image pasted in, the
  labels weighted by the pasted pixels' share.
MixUp and CutMix act on normalised float images with one-hot labels (`mix_batch`; one of
the two per batch, with probability 1/2, when both are on), after batching
(`alexnet_tf.data.pipeline`, step 6).

Why stateless: Keras' layers draw from a stateful ``SeedGenerator`` whose variable every
draw advances, so a layer's output would depend on how many calls came before, on which
thread, and in which order ``tf.data``'s parallel map ran them: a run could not be
reproduced or resumed. `seeded_call` instead feeds every draw of one call from a seed
tensor (`StatelessSeeds`): the same seed gives the same result, eagerly and inside
``tf.data``, in any order and on any thread (tests/test_augment.py). The seeds come from
the example's seed (RandAugment: `alexnet_tf.data.preprocess.op_seed` with sub-seed 5) or
the batch's (`alexnet_tf.data.pipeline.batch_mix_seed`).
"""

from __future__ import annotations

import threading

import keras
import tensorflow as tf

from alexnet_tf.data import preprocess

# The sub-seed of an example's seed that RandAugment draws from; preprocess's own ops
# use 1-4 (alexnet_tf.data.preprocess), so the draws stay independent.
_RANDAUGMENT = 5
# Sub-seeds of a batch's seed (`mix_batch`).
_MIX_CHOICE, _MIXUP, _CUTMIX = 1, 2, 3


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
                               f"call it through alexnet_tf.data.augment.seeded_call.")
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
    """RandAugment of one uint8 [H, W, 3] image with this example's seed ([2] integer
    tensor; sub-seed `_RANDAUGMENT` of it is drawn from); uint8 [H, W, 3] out.

    Each image draws its own operations (as in Cubuk et al. 2020; Keras' layer on a
    batch would give every image of the batch the same ones).
    """
    image = tf.ensure_shape(image, [None, None, 3])  # Keras checks the channel count
    augmented = seeded_call(layer, image, preprocess.op_seed(seed, _RANDAUGMENT))
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
        out = seeded_call(layer, {"images": images, "labels": labels},
                          preprocess.op_seed(seed, op))
        return tf.cast(out["images"], tf.float32), tf.cast(out["labels"], tf.float32)

    if mixup is not None and cutmix is not None:
        use_cutmix = tf.random.stateless_uniform([], preprocess.op_seed(seed, _MIX_CHOICE)) < 0.5
        images, labels = tf.cond(use_cutmix, lambda: apply(cutmix, _CUTMIX),
                                 lambda: apply(mixup, _MIXUP))
    elif mixup is not None:
        images, labels = apply(mixup, _MIXUP)
    elif cutmix is not None:
        images, labels = apply(cutmix, _CUTMIX)
    return images, labels
