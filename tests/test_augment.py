"""The modern recipe's extras: Keras 3's RandAugment, MixUp and CutMix, made stateless (the
same seed gives the same result, eagerly and inside tf.data), their geometry and label
weights, the soft-label loss and metrics, the config rules, and a short training run."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import config as config_lib
from alexnet_tf import task
from alexnet_tf.data import augment, pipeline, preprocess, sources
from alexnet_tf.train import loop
from conftest import REPO_ROOT
from test_config import load_config_file

SEED = tf.constant([7, 11], tf.int64)


def _smooth_image(size=40, seed=0):
    """A photo-like uint8 image (RandAugment's operations all act visibly on it)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    base = np.stack([np.sin(y / 7.0 + c + seed) * np.cos(x / 9.0 - c) for c in range(3)], -1)
    return np.clip(base * 100 + 128 + rng.integers(-5, 6, base.shape), 0, 255).astype(np.uint8)


def _batch(size=8, side=24, seed=0):
    """Float images with distinct pixels everywhere, and one-hot labels 0..size-1."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (size, side, side, 3)).astype(np.float32)
    labels = np.eye(size, dtype=np.float32)
    return tf.constant(images), tf.constant(labels)


def _mix_fn(name):
    """name -> fn(images, labels, seed) of one batch-level op."""
    mixup, cutmix = augment.make_mixup(1.0), augment.make_cutmix(1.0)
    layers = {"mixup": (mixup, None), "cutmix": (None, cutmix), "mixup+cutmix": (mixup, cutmix)}
    mix, cut = layers[name]
    return lambda images, labels, seed: augment.mix_batch(images, labels, seed,
                                                          mixup=mix, cutmix=cut)


# --- the same seed, the same result: eagerly and inside tf.data ------------------------------

def test_rand_augment_is_seeded_and_equal_eagerly_and_in_tf_data():
    layer = augment.make_rand_augment(num_ops=2, magnitude=0.5)
    images = tf.constant(np.stack([_smooth_image(seed=i) for i in range(4)]))
    seeds = tf.constant([[7, i] for i in range(4)], tf.int64)
    eager = [augment.rand_augment(images[i], seeds[i], layer).numpy() for i in range(4)]
    again = [augment.rand_augment(images[i], seeds[i], layer).numpy() for i in range(4)]
    ds = tf.data.Dataset.from_tensor_slices((images, seeds)).map(
        lambda image, seed: augment.rand_augment(image, seed, layer),
        num_parallel_calls=4, deterministic=True)
    in_data = [x.numpy() for x in ds]
    for e, a, d in zip(eager, again, in_data):
        np.testing.assert_array_equal(e, a)
        np.testing.assert_array_equal(e, d)
    other = augment.rand_augment(images[0], tf.constant([8, 0], tf.int64), layer).numpy()
    assert not np.array_equal(eager[0], other)


@pytest.mark.parametrize("name", ["mixup", "cutmix", "mixup+cutmix"])
def test_batch_mixing_is_seeded_and_equal_eagerly_and_in_tf_data(name):
    fn = _mix_fn(name)
    images, labels = _batch()
    eager = fn(images, labels, SEED)
    again = fn(images, labels, SEED)
    graph = next(iter(tf.data.Dataset.from_tensors((images, labels, SEED)).map(fn)))
    for e, a, g in zip(eager, again, graph):
        np.testing.assert_array_equal(e.numpy(), a.numpy())
        np.testing.assert_array_equal(e.numpy(), g.numpy())
    other = fn(images, labels, tf.constant([7, 12], tf.int64))
    assert not np.array_equal(eager[1].numpy(), other[1].numpy())


def test_keras_layers_refuse_to_draw_from_their_own_state():
    layer = augment.make_mixup(0.2)
    images, labels = _batch()
    with pytest.raises(RuntimeError, match="seeded_call"):
        layer({"images": images, "labels": labels})


# --- what each op does --------------------------------------------------------------------

def _partner(row, i):
    """The other example a soft label row mixes with (i itself when it mixes with itself)."""
    others = np.delete(np.arange(len(row)), i)
    j = others[np.argmax(row[others])]
    return j if row[j] > 0 else i


def test_mixup_is_a_convex_combination_with_matching_label_weights():
    images, labels = _batch()
    x = images.numpy()
    mixed_pairs = 0
    for s in range(6):
        out, soft = (t.numpy() for t in _mix_fn("mixup")(images, labels, tf.constant([1, s])))
        np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-6)
        assert (soft >= 0).all() and ((soft > 0).sum(axis=1) <= 2).all()
        for i in range(len(x)):
            j = _partner(soft[i], i)
            weight = soft[i, i] if j != i else 1.0
            np.testing.assert_allclose(out[i], weight * x[i] + (1 - weight) * x[j],
                                       atol=2e-3, rtol=0)
            mixed_pairs += int(j != i and 0.05 < weight < 0.95)
    assert mixed_pairs > 10  # Beta(1, 1): most weights are well inside (0, 1)


def test_cutmix_pastes_a_rectangle_and_weighs_labels_by_its_area():
    images, labels = _batch(side=24)
    x = images.numpy()
    pasted_examples = 0
    for s in range(6):
        out, soft = (t.numpy() for t in _mix_fn("cutmix")(images, labels, tf.constant([2, s])))
        np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-6)
        for i in range(len(x)):
            j = _partner(soft[i], i)
            from_j = np.all(out[i] == x[j], axis=-1)
            from_i = np.all(out[i] == x[i], axis=-1)
            assert np.all(from_i | from_j)  # every pixel is one of the two images' own
            if j == i:
                np.testing.assert_array_equal(soft[i], labels.numpy()[i])
                continue
            mask = from_j
            rows, cols = np.nonzero(mask)
            if len(rows):
                box = mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
                assert box.all(), "the pasted region is a filled rectangle"
                pasted_examples += 1
            area = mask.mean()
            np.testing.assert_allclose(soft[i, j], area, atol=1e-6)
            np.testing.assert_allclose(soft[i, i], 1 - area, atol=1e-6)
    assert pasted_examples > 10


def test_mixup_and_cutmix_together_use_each_for_about_half_the_batches():
    images, labels = _batch()
    x = images.numpy()
    kinds = []
    for s in range(40):
        out = _mix_fn("mixup+cutmix")(images, labels, tf.constant([3, s]))[0].numpy()
        # CutMix keeps every pixel of one of the images; MixUp blends almost all of them.
        kinds.append(all(np.isin(out[i], x).mean() > 0.99 for i in range(len(x))))
    assert 8 <= sum(kinds) <= 32, kinds


def test_rand_augment_changes_images_and_keeps_shape_dtype_and_range():
    layer = augment.make_rand_augment(num_ops=2, magnitude=0.5)
    image = tf.constant(_smooth_image(40))
    changed = 0
    for s in range(12):
        seed = tf.constant([5, s], tf.int64)
        out = augment.rand_augment(image, seed, layer)
        assert out.dtype == tf.uint8 and out.shape == (40, 40, 3)
        raw = augment.seeded_call(layer, image, preprocess.op_seed(seed, 5)).numpy()
        assert raw.min() >= 0 and raw.max() <= 255  # Keras keeps value_range; nothing clipped
        changed += not np.array_equal(out.numpy(), image.numpy())
    assert changed >= 10


def test_rand_augment_runs_only_the_chosen_ops_and_equals_keras_selection():
    """The switch_case transform gives the same pixels as Keras' where-over-all-ops."""
    layer = augment.make_rand_augment(num_ops=2, magnitude=0.7)
    images = tf.cast(tf.constant(_smooth_image(32))[None], tf.float32)
    layer.build(images.shape)
    chosen = set()
    for s in range(25):
        augment._CALL_SEEDS.seeds = augment.StatelessSeeds(tf.constant([9, s], tf.int64))
        try:
            transformation = layer.get_random_transformation(images, training=True)
        finally:
            augment._CALL_SEEDS.seeds = None
        chosen.update(transformation["layer_idxes"].numpy().tolist())
        ours = layer.transform_images(images, transformation)
        keras_own = keras.layers.RandAugment.transform_images(layer, images, transformation)
        np.testing.assert_array_equal(ours.numpy(), keras_own.numpy())
    assert len(chosen) >= 8  # most of the 11 operations were exercised


# --- soft labels in the loss and the metrics ----------------------------------------------

def test_soft_label_loss_is_the_hand_computed_cross_entropy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4, 5)).astype(np.float32)
    soft = rng.dirichlet(np.ones(5), size=4).astype(np.float32)
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    for smoothing in (0.0, 0.1):
        targets = (1 - smoothing) * soft + smoothing / 5
        expected = -(targets * log_softmax).sum(axis=1)
        got = task.loss_per_example(tf.constant(soft), tf.constant(logits), 5, smoothing)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    # Hard labels are the one-hot special case.
    hard = np.array([0, 3, 1, 4])
    np.testing.assert_allclose(
        task.loss_per_example(tf.constant(hard), tf.constant(logits), 5).numpy(),
        task.loss_per_example(tf.constant(np.eye(5, dtype=np.float32)[hard]),
                              tf.constant(logits), 5).numpy(), rtol=1e-6)


def test_soft_label_metrics_count_the_argmax():
    logits = tf.constant([[5.0, 1, 0], [0, 5.0, 1], [1, 0, 5.0]])
    soft = tf.constant([[0.7, 0.3, 0], [0.4, 0.0, 0.6], [0.0, 0.2, 0.8]])  # argmax 0, 2, 2
    sums = task.summed_metrics(soft, logits, tf.zeros([3]))
    assert float(sums["top1"]) == 2 and float(sums["count"]) == 3
    assert float(sums["top5"]) == 3


# --- in the pipeline ----------------------------------------------------------------------

def _modern_config(data_dir, **data):
    c = config_lib.base_config()
    c.model.variant, c.model.num_classes, c.model.image_size = "modern", 10, 67
    c.data.source, c.data.data_dir, c.data.resize_size = "image_folder", str(data_dir), 76
    c.data.augmentation = "modern"
    c.data.randaugment_num_ops, c.data.mixup_alpha, c.data.cutmix_alpha = 2, 0.2, 1.0
    for key, value in data.items():
        c.data[key] = value
    return config_lib.validate(c)


def _batches(split, config, take=6, **kwargs):
    kwargs = {"image_size": 67, "batch_size": 8, "training": True, "seed": 3, "epoch": 1,
              **kwargs}
    return [(x.numpy(), y.numpy()) for x, y in
            pipeline.make_dataset(split, config.data, **kwargs).take(take)]


def test_modern_pipeline_with_all_extras_is_reproducible_and_resumable(small_demo_dir):
    config = _modern_config(small_demo_dir)
    split = sources.load_split(config.data, "train")
    first, second = _batches(split, config), _batches(split, config)
    assert len(first) == 6
    for (x1, y1), (x2, y2) in zip(first, second):
        assert y1.shape == (8, 10) and y1.dtype == np.float32
        np.testing.assert_allclose(y1.sum(axis=1), 1.0, atol=1e-6)
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    other = _batches(split, config, seed=4)
    assert not np.array_equal(first[0][0], other[0][0])
    # A resumed run skips whole batches and continues with the same ones.
    resumed = _batches(split, config, skip_examples=16)
    for (x1, y1), (x2, y2) in zip(first[2:], resumed):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    # Evaluation is untouched: integer labels, no augmentation.
    _, labels = _batches(split, config, training=False)[0]
    assert labels.dtype == np.int32 and labels.shape == (8,)


@pytest.mark.parametrize("key,value,message", [
    ("randaugment_num_ops", 2, r"'data.randaugment_num_ops' is 2; expected its default \(0\) "
                               r"unless data.augmentation='modern'"),
    ("mixup_alpha", 0.2, r"'data.mixup_alpha' is 0.2; expected its default"),
    ("cutmix_alpha", 1.0, r"'data.cutmix_alpha' is 1.0; expected its default"),
    ("randaugment_magnitude", 0.9, r"'data.randaugment_magnitude' is 0.9; expected its default"),
])
def test_modern_extras_are_refused_with_another_augmentation(key, value, message):
    config = config_lib.base_config()  # augmentation "paper"
    config.data[key] = value
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.validate(config)


@pytest.mark.parametrize("key,value,message", [
    ("randaugment_num_ops", -1, r"'data.randaugment_num_ops' is -1; expected a number >= 0"),
    ("randaugment_magnitude", 1.5, r"'data.randaugment_magnitude' is 1.5; expected a number in"),
    ("mixup_alpha", -0.1, r"'data.mixup_alpha' is -0.1; expected a number >= 0"),
    ("cutmix_alpha", 2.0, r"'data.cutmix_alpha' is 2.0; expected a number in \[0, 1\]"),
    ("augment_on_device", True, r"'data.augment_on_device' is True; expected False with "
                                r"RandAugment, MixUp or CutMix"),
])
def test_modern_extras_values_are_checked(key, value, message):
    config = load_config_file(REPO_ROOT / "configs" / "modern.py")
    config.data.mixup_alpha = 0.2
    config.data[key] = value
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.validate(config)


@pytest.mark.slow
def test_short_modern_run_with_randaugment_mixup_and_cutmix(small_demo_dir, tmp_path):
    config = load_config_file(REPO_ROOT / "configs" / "demo.py", "modern")
    config.data.data_dir = str(small_demo_dir)
    config.data.demo_train_per_class, config.data.demo_val_per_class = 60, 20
    config.data.augmentation = "modern"
    config.data.randaugment_num_ops, config.data.mixup_alpha = 2, 0.2
    config.data.cutmix_alpha, config.data.label_smoothing = 1.0, 0.1
    config.train.global_batch_size, config.train.total_epochs = 32, 2
    config.train.steps_per_epoch, config.train.warmup_epochs = 6, 0.0
    config.train.log_every_steps = 3
    config.eval.global_batch_size = 100
    metrics = loop.train_and_evaluate(config, str(tmp_path / "run"))
    assert metrics["step"] == 12 and metrics["examples"] == 200
    assert math.isfinite(metrics["loss"]) and 0 <= metrics["top1_error"] <= 1
