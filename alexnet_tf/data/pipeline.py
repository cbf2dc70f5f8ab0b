"""``tf.data`` pipelines: from a source's split to batches of (image, label).

Order of operations (fixed, so that data order is reproducible and resumable); steps
1-3 are the source's `alexnet_tf.data.sources.DataSource.records`, whatever the source:
  1. order: for training, a permutation of the examples drawn from (seed, epoch) in
     NumPy for file lists (a full shuffle), or of the shard files plus a seeded
     shuffle buffer for TFRecords and TFDS (TFDS shuffles its files with a seed
     from (seed, epoch) itself: ``tfds.ReadConfig(shuffle_seed=...)``); evaluation
     keeps the stored order (interleaved across shard files, deterministically);
  2. shard: one part per input pipeline (`tf.distribute.InputContext`, one per worker):
     by files when there are at least as many as pipelines, else by records;
  3. skip: a resumed run drops the examples it already trained on in this epoch,
     before any image is decoded;
  4. map: read, check, decode, augment (parallel, deterministic order); bad records
     (empty, not an image, truncated, too large: `alexnet_tf.data.decode.problem`;
     label missing or out of range; a file or TFRecord record the source could not
     read, `alexnet_tf.data.sources.UNREADABLE`) are skipped, counted and named with the reason
     ("alexnet_tf: skipping bad record <name> - <reason>" on stderr), or stop the run
     with ``data.on_bad_record="fail"``, naming the record and the reason (TF's error,
     which `alexnet_tf.errors.bad_record_in` reads and the binaries report as one line);
  5. batch (per-replica batch size);
  6. mix (training with ``data.mixup_alpha`` or ``data.cutmix_alpha``): MixUp or
     CutMix of each batch (one of the two per batch, with probability 1/2, when both
     are on; `alexnet_tf.data.augment.mix_batch`); labels become soft, float32
     [B, num_classes];
  7. prefetch.

Each example's augmentation seed is ``(seed, epoch * N + position)``, and each
batch's mixing seed is drawn from (seed, epoch, input pipeline, batch index): the
same seed gives the same batches, whatever the number of parallel calls, and a
resumed run (which skips whole batches) continues with the batches it would have seen.

``data.augment_on_device``: the pipeline stops after the uint8 crop and hands the
per-example random draws (flip, lighting alphas) to `finish_on_device`, which the
train step applies batched on the accelerator; the result equals the per-image path.
"""

from __future__ import annotations

import functools

import tensorflow as tf

from alexnet_tf import errors
from alexnet_tf.convention import InputConvention
from alexnet_tf.data import augment, decode, preprocess, sources, tfrecords


@functools.lru_cache(maxsize=4)
def _load_stats(path: str, image_size: int):
    from alexnet_tf.data import stats  # deferred: only runs with a stats file

    return stats.load(path, image_size=image_size)


def lighting(data_config) -> preprocess.Lighting:
    """Sec. 4.1's PCA lighting: std from the config, eigen-decomposition from
    ``data.stats_file`` or the widely used ImageNet values."""
    d = data_config
    if d.stats_file:
        kwargs = _load_stats(d.stats_file, d.resize_size).pca_lighting_kwargs()
        return preprocess.Lighting(d.pca_lighting_std, **kwargs)
    return preprocess.Lighting(d.pca_lighting_std)


_MIX_STREAM = 0x6D6978  # folded into (seed, epoch) for the batches' mixing seeds


def mixing_enabled(data_config) -> bool:
    """Whether training batches are mixed (MixUp and/or CutMix): labels are then soft."""
    return data_config.augmentation == "modern" and (
        data_config.mixup_alpha > 0 or data_config.cutmix_alpha > 0)


def _image_fn(data_config, norm, light, image_size, training, ten_crop, on_device):
    """encoded bytes, seed, orientation -> the model input(s) of one example (the bytes
    and the EXIF orientation from `alexnet_tf.data.decode.inspect_batch`)."""
    d = data_config
    if not training:
        if ten_crop:
            return lambda e, s, o: preprocess.ten_crop_images(
                e, image_size=image_size, resize_size=d.resize_size, norm=norm, orientation=o)
        return lambda e, s, o: preprocess.eval_image(
            e, image_size=image_size, resize_size=d.resize_size, norm=norm, orientation=o)
    if d.augmentation == "none":
        return lambda e, s, o: preprocess.eval_image(
            e, image_size=image_size, resize_size=d.resize_size, norm=norm, orientation=o)
    if d.augmentation == "modern":
        if on_device:
            return lambda e, s, o: {"image": preprocess.modern_crop(
                e, s, image_size=image_size, orientation=o),
                "flip": preprocess.flip_draw(s), "alpha": tf.zeros([3])}
        rand_augment = None
        if d.randaugment_num_ops > 0:
            layer = augment.make_rand_augment(d.randaugment_num_ops, d.randaugment_magnitude)
            rand_augment = functools.partial(augment.rand_augment, layer=layer)
        return lambda e, s, o: preprocess.modern_train_image(
            e, s, image_size=image_size, norm=norm, rand_augment=rand_augment, orientation=o)
    if d.augmentation == "paper":
        if on_device:
            def fn(e, s, o):
                crop, _ = preprocess.paper_crop(e, s, image_size=image_size,
                                                resize_size=d.resize_size, orientation=o)
                return {"image": crop, "flip": preprocess.flip_draw(s),
                        "alpha": preprocess.lighting_draw(light.std, s)}
            return fn
        return lambda e, s, o: preprocess.paper_train_image(
            e, s, image_size=image_size, resize_size=d.resize_size,
            lighting=light, norm=norm, orientation=o)
    raise ValueError(f"Unknown augmentation {d.augmentation!r}.")


def finish_on_device(inputs, norm: InputConvention,
                     light: preprocess.Lighting = preprocess.Lighting()):
    """The batched tail of the paper pipeline: flip, PCA lighting, normalisation.

    ``inputs`` is a batch from a pipeline built with ``data.augment_on_device``
    ({"image": uint8 [B, S, S, 3], "flip": bool [B], "alpha": float [B, 3]}).
    Equals the per-image `preprocess.paper_train_image` on the same draws
    (`preprocess.finish_paper_image` is the one implementation of both). Compiled
    with XLA, which fuses the reflection, cast, offset and scale into one pass over
    the batch (the speed-up: docs/BENCHMARKS.md).
    """
    if not isinstance(inputs, dict):
        return inputs
    return _finish_compiled(inputs["image"], inputs["flip"], inputs["alpha"], norm, light)


@functools.partial(tf.function, jit_compile=True, reduce_retracing=True)
def _finish_compiled(images, flip, alpha, norm, light):
    # norm and light are frozen dataclasses: hashable, so they key the trace cache.
    return preprocess.finish_paper_image(images, flip, alpha, norm, light)


def make_dataset(split, data_config, *, image_size: int, batch_size: int, training: bool,
                 num_classes: int | None = None, seed: int = 0, epoch: int = 0,
                 skip_examples: int = 0, ten_crop: bool = False,
                 input_context: tf.distribute.InputContext | None = None,
                 bad_records: tf.Variable | None = None,
                 norm: InputConvention | None = None,
                 light: preprocess.Lighting | None = None,
                 records: tf.data.Dataset | None = None) -> tf.data.Dataset:
    """One epoch of batches of (model inputs, labels).

    Labels are int32 [B], except for training with MixUp or CutMix
    (`mixing_enabled`): soft labels, float32 [B, num_classes], each row summing to 1.

    Args:
      split: any `alexnet_tf.data.sources.DataSource` (image folder, TFRecords, TFDS,
        ...): its `records` give steps 1-3.
      data_config: ``config.data``.
      image_size: the model's input side (the crop size).
      batch_size: examples per batch of this pipeline (the per-replica batch under
        ``tf.distribute``).
      training: augment, order by (seed, epoch) and drop the last partial batch.
      num_classes: labels outside [0, num_classes) are bad records; default: the
        split's class count.
      seed, epoch: fix the order and the augmentation.
      skip_examples: examples of this pipeline's shard already consumed this epoch.
      ten_crop: evaluation inputs are [B, 10, S, S, 3] (Sec. 4.1's ten patches).
      input_context: from ``distribute_datasets_from_function``; shards by pipeline.
      bad_records: an int64 variable that counts the records skipped as bad.
      norm, light: the input convention and the PCA lighting; default: built from
        ``data_config`` and ``image_size`` (`InputConvention.from_data_config`,
        `lighting`). A run passes its task's
        (`alexnet_tf.task.ClassificationTask.pipeline_args`), so that the pipeline, the
        on-device tail and the saved run use one object.
      records: for a tf.data service worker, a training stream in place of the split's
        epoch (`alexnet_tf.data.sources.DataSource.stream_records`, whose keys are
        whole augmentation seeds): unbounded, so ``epoch``, ``skip_examples`` and
        ``bad_records`` do not apply (bad records are still skipped and named, in the
        worker's log), and MixUp/CutMix are left to the trainer (`mix_batches`).
    """
    d = data_config
    num_classes = num_classes or len(split.class_names)
    on_device = training and d.augment_on_device  # alexnet_tf.config checks what it combines with
    stream = records is not None
    if stream:
        bad_records, epoch, skip_examples = None, 0, 0
    else:
        records = split.records(training=training, seed=seed, epoch=epoch, skip=skip_examples,
                                input_context=input_context)
    norm = InputConvention.from_data_config(d, image_size) if norm is None else norm
    light = lighting(d) if light is None else light
    image_fn = _image_fn(d, norm, light, image_size, training, ten_crop, on_device)
    fail_fast = d.on_bad_record == "fail"
    epoch_offset = epoch * len(split)
    # Raw records (tools/build_tfrecords.py --format=raw) hold decoded pixels: no decode
    # rule to apply, only their length to check, and the image functions take the
    # pixels as they are (`preprocess.is_decoded`).
    raw_shape = getattr(split, "image_shape", None)

    def load(encoded, label, position, name, reason, orientation, height):
        # ``reason``: the decode rule's checks (alexnet_tf.data.decode.inspect_batch):
        # empty, not an image, truncated (a JPEG without FF D9 after its scan data, a
        # PNG without IEND, a GIF whose blocks end early), no pixels or too many (every
        # GIF frame); nothing decoded, nothing raised, so the record is named. The
        # common JPEG's size (not walked there) is read here from its frame header.
        unsized = tf.logical_and(tf.equal(reason, ""), height < 0)
        reason = tf.cond(unsized, lambda: decode.size_problem_of(
            *tf.unstack(tf.io.extract_jpeg_shape(encoded)[:2])), lambda: reason)
        label_ok = tf.logical_and(label >= 0, label < num_classes)
        reason = tf.where(tf.logical_or(label_ok, tf.not_equal(reason, "")), reason,
                          "label outside [0, num_classes)")
        ok = tf.equal(reason, "")
        if fail_fast:
            # One bracketed string that `errors.bad_record_in` finds in TF's error, so that the
            # binaries report it as one line.
            with tf.control_dependencies([tf.debugging.Assert(ok, [tf.strings.join([
                    errors.BAD_RECORD_PREFIX, name, " - ", reason, " (label ",
                    tf.strings.as_string(label), ")"])], summarize=1)]):
                encoded = tf.identity(encoded)
        example_seed = tf.stack([tf.constant(seed, tf.int64), epoch_offset + position])
        if raw_shape is not None:
            # A raw record of the wrong length gives black pixels; dropped below.
            inputs = image_fn(tfrecords.raw_pixels(encoded, raw_shape), example_seed, 1)
        else:
            # A bad record gets a cheap 1x1 PNG to decode instead; it is dropped below.
            safe = tf.where(ok, encoded, tf.constant(_PLACEHOLDER_PNG))
            inputs = image_fn(safe, example_seed, tf.where(ok, orientation, 1))
        if not fail_fast:
            def report():
                if_real = tf.not_equal(label, _END_LABEL)
                effects = [tf.cond(if_real, lambda: tf.print(
                    "alexnet_tf: skipping bad record", name, "-", reason, "label", label),
                    tf.no_op)]
                if bad_records is not None:
                    effects.append(bad_records.assign_add(tf.cast(if_real, tf.int64)))
                with tf.control_dependencies(effects):
                    return tf.constant(False)
            # The print is on the path to `ok`, so it runs whenever a record is bad.
            ok = tf.cond(ok, lambda: tf.constant(True), report)
        return inputs, label, ok

    def inspect(index, encoded, label, position, name):
        """One batch of records: the decode rule's checks, prepared bytes, orientations."""
        # What the source could not read (sources.UNREADABLE) is named as such.
        unreadable = tf.equal(encoded, sources.UNREADABLE)
        if raw_shape is not None:
            # Orientation 1 and a known height: raw pixels are stored upright and sized.
            ones = tf.ones_like(label, tf.int32)
            problem = tf.where(unreadable, sources.UNREADABLE_REASON,
                               tfrecords.raw_problem(encoded, raw_shape))
            return (index, encoded, label, position, name, problem, ones, ones * raw_shape[0])
        info = decode.inspect_batch(encoded, jpeg_sizes=False)
        problem = tf.where(unreadable, sources.UNREADABLE_REASON, info.problem)
        return (index, info.prepared, label, position, name, problem, info.orientation,
                info.height)

    # An end marker after the last record lets the gap count below see a bad record
    # at the very end of the stream too; it is dropped like a bad record, uncounted.
    end = tf.data.Dataset.from_tensors(
        (tf.constant(b""), tf.constant(_END_LABEL, tf.int32), tf.constant(0, tf.int64),
         tf.constant(b"<end>")))
    records = records.concatenate(end) if not (fail_fast or stream) else records
    ds = records.enumerate()
    if not fail_fast:
        # A source marks what it cannot read (sources.UNREADABLE); an error that still
        # escapes one (a source of another kind) drops its element here, so that it
        # cannot take a batch of the inspection below with it; the gap it leaves in the
        # stream index is counted below.
        ds = ds.ignore_errors(log_warning=True)
    # The checks are batched: their graph is large, and a graph's cost is paid per call
    # (`decode.inspect_batch`); the common JPEG is settled with vectorised string ops.
    ds = ds.map(lambda index, record: (index, *record)).batch(_INSPECT_BATCH).map(
        inspect, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
    ds = ds.map(lambda index, *record: (index, load(*record)),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if not fail_fast:
        # What the checks above cannot see (JPEG data that is complete but corrupt)
        # fails inside the decoder: ignore_errors drops that element (TF's error is
        # logged, shown with --tf_logs); the gap it leaves in the stream index is
        # counted as a bad record and named by its position.
        ds = ds.ignore_errors(log_warning=True)

        def count_gaps(last, item):
            index, element = item
            gap = index - last - 1
            effects = [tf.cond(gap > 0, lambda: tf.print(
                "alexnet_tf: skipping", gap, "bad record(s) before stream position", index,
                "of this pipeline (they failed in the decoder past the checks; --tf_logs "
                "shows TensorFlow's error)"), tf.no_op)]
            if bad_records is not None:
                effects.append(bad_records.assign_add(gap))
            with tf.control_dependencies(effects):
                return index, (tf.identity(index), element)

        # A scan, not a map over a variable: its state starts afresh with each iterator,
        # and a tf.data service worker can run it. Sequential: it sees the stream in order.
        ds = ds.scan(tf.constant(-1, tf.int64), count_gaps)
        ds = ds.filter(lambda index, element: element[2])
    ds = ds.map(lambda index, element: element[:2])
    ds = ds.batch(batch_size, drop_remainder=training)
    if training and mixing_enabled(d) and not stream:
        pipeline_id = input_context.input_pipeline_id if input_context is not None else 0
        ds = mix_batches(ds, d, num_classes, seed, epoch, skip_examples // batch_size,
                         pipeline_id)
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_optimization.map_parallelization = True
    # Sharding is done above on the file list; tf.distribute must not shard again.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def batch_mix_seed(seed: int, epoch: int, pipeline_id: int, batch_index):
    """The [2] seed of one training batch's MixUp/CutMix draws."""
    base = tf.random.experimental.stateless_fold_in(
        tf.constant([seed, epoch], tf.int64), _MIX_STREAM)
    base = tf.random.experimental.stateless_fold_in(base, pipeline_id)
    return tf.random.experimental.stateless_fold_in(base, tf.cast(batch_index, tf.int64))


def mix_batches(ds, data_config, num_classes: int, seed: int, epoch: int, first_batch: int,
                pipeline_id: int):
    """MixUp/CutMix (``data.mixup_alpha``, ``data.cutmix_alpha``) of every batch of
    ``ds`` (images, int32 labels [B]), seeded by (seed, epoch, pipeline, batch index),
    the batches counted from ``first_batch``; labels become float32 [B, num_classes].

    Stateless, so the map may run in parallel; ``deterministic`` keeps the order.
    """
    d = data_config
    mixup = augment.make_mixup(d.mixup_alpha) if d.mixup_alpha > 0 else None
    cutmix = augment.make_cutmix(d.cutmix_alpha) if d.cutmix_alpha > 0 else None
    def mix(index, images, labels):
        onehot = tf.one_hot(labels, num_classes, dtype=tf.float32)
        return augment.mix_batch(images, onehot, batch_mix_seed(seed, epoch, pipeline_id, index),
                                 mixup=mixup, cutmix=cutmix)

    return ds.enumerate(start=first_batch).map(
        lambda index, batch: mix(index, *batch),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


_END_LABEL = -2  # marks the end-of-stream element; real records have labels >= -1
_INSPECT_BATCH = 64  # records checked per call of decode.inspect_batch


# A valid 1x1 greyscale PNG (what tf.io.encode_png makes of one zero pixel), written out
# rather than computed so that importing this module runs no TF op: multi-worker
# strategies must be created before the first one.
_PLACEHOLDER_PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08"
                    b"\x00\x00\x00\x00:~\x9bU\x00\x00\x00\nIDAT\x08\x99c`\x00\x00\x00\x02\x00"
                    b"\x01\xf4qd\xa6\x00\x00\x00\x00IEND\xaeB`\x82")
