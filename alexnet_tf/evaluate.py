"""Evaluation of a run: top-1 and top-5 error with the centre crop or the paper's ten crops.

`evaluate_checkpoint` (the ``alexnet-eval`` binary) restores a run's checkpoint
(`alexnet_tf.run.Run.restore_model`) and runs the task's eval step
(`alexnet_tf.task.ClassificationTask.eval_step`, the one the training loop runs after
every epoch) over a split. Ten-crop testing (Sec. 4.1) averages the softmax outputs
of the four corner patches, the centre patch and their reflections.
"""

from __future__ import annotations

import json

from absl import logging

from alexnet_tf import run as run_lib
from alexnet_tf import task as task_lib
from alexnet_tf.data import pipeline, sources


def run_evaluation(eval_step, distributed_dataset) -> dict:
    """Mean loss and top-1/top-5 error over a whole (distributed) dataset: host floats
    keyed "loss", "top1_error", "top5_error", and "examples" (an int)."""
    totals = dict.fromkeys(task_lib.METRIC_KEYS, 0.0)
    for batch in distributed_dataset:
        for key, value in eval_step(batch).items():
            totals[key] += float(value)
    return task_lib.errors_from_sums(totals)


def eval_dataset_fn(split, config, task, ten_crop: bool, bad_records=None):
    """The ``distribute_datasets_from_function`` argument for evaluating ``split``."""
    def fn(context):
        batch = context.get_per_replica_batch_size(config.eval.global_batch_size)
        return pipeline.make_dataset(
            split, config.data, image_size=config.model.image_size, batch_size=batch,
            training=False, num_classes=config.model.num_classes, ten_crop=ten_crop,
            input_context=context, bad_records=bad_records, **task.pipeline_args())
    return fn


def evaluate_checkpoint(workdir: str, *, checkpoint: str = "latest", split: str | None = None,
                        ten_crop: bool = False, output: str | None = None) -> dict:
    """Top-1/top-5 error of a run's checkpoint on a split; written as JSON.

    The config is the run's own ``config.json``: the model, the input convention and
    the data source are what the run trained with. ``checkpoint``: "latest", "best",
    "auto" or a path (`alexnet_tf.run.resolve_checkpoint`); ``output`` defaults to
    ``WORKDIR/eval_<split>_<center|tencrop>.json``. Returns the metrics written.
    """
    from alexnet_tf.train import distribute

    run = run_lib.Run(workdir)
    config = run.config
    split = split or config.data.eval_split
    path = run.checkpoint(checkpoint)  # before building anything: a missing one is named
    strategy = distribute.create_strategy()
    # The run's class order (classes.json), whatever order the split stores.
    data = sources.load_split(config.data, split, class_names=[
        c["id"] for c in run.classes(config.model.num_classes)])
    with strategy.scope():
        restored = run.restore_model(path)
    # The run's own convention (`Run.convention` refuses one that disagrees with its
    # config): the export serves with the same one.
    task = task_lib.ClassificationTask(config, strategy, convention=run.convention)
    step = task.eval_step(restored.model, ten_crop)
    dataset = strategy.distribute_datasets_from_function(
        eval_dataset_fn(data, config, task, ten_crop))
    metrics = run_evaluation(step, dataset)
    metrics.update(checkpoint=path, split=split, crops="ten" if ten_crop else "center")
    output = output or run.eval_path(split, ten_crop)
    with open(output, "w") as f:
        json.dump(metrics, f, indent=2)
    logging.info("%s on %s (%s crop, %d images): top-1 error %.4f, top-5 error %.4f -> %s",
                 path, split, metrics["crops"], metrics["examples"], metrics["top1_error"],
                 metrics["top5_error"], output)
    return metrics
