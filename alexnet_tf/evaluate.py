"""Evaluation of any model source, or an ensemble of them: top-1 and top-5 error with the
centre crop or the paper's ten crops.

`evaluate` (the ``alexnet-eval`` binary) resolves its model argument
(`alexnet_tf.model_source.resolve_all`: a run, a checkpoint, a ``.keras`` file,
converted weights, or several of them separated by commas), names the data (a run
brings its own ``config.data``; other sources take ``data_dir``/``data_source`` or a
config's data section) and calls `evaluate_sources`. One model runs the task's eval step
(`alexnet_tf.task.ClassificationTask.eval_step`, the one the training loop runs after
every epoch); several run `ensemble_eval_step`, which averages the members' softmax
outputs (Sec. 6, Table 2: "averaging the predictions of five similar CNNs") and scores
every member and the average in one pass. Ten-crop testing (Sec. 4.1) averages the
softmax outputs of the four corner patches, the centre patch and their reflections,
per member, before members are averaged.

Classes map by name: the split's classes (e.g. ImageNet's wnid folders) are looked up in
the source's class ids (`alexnet_tf.data.sources.load_split` with ``class_names``), so a
1000-class model scores any folder whose classes it knows, and a folder class it does
not know is refused by name, as the data's fault (listed beside the model's classes).
"""

from __future__ import annotations

import copy
import json
import os
import sys
from typing import Sequence

from absl import logging

from alexnet_tf import config as config_lib
from alexnet_tf import model_source as source_lib
from alexnet_tf import outputs
from alexnet_tf import run as run_lib
from alexnet_tf import task as task_lib
from alexnet_tf.data import pipeline, sources
from alexnet_tf.errors import UserError


class EvaluationError(UserError, ValueError):
    """Sources and data that cannot be evaluated together (named in the message)."""


def summed_over(eval_step, distributed_dataset, progress=None) -> dict:
    """The sums of ``eval_step``'s outputs (host floats, by key) over a whole
    (distributed) dataset. ``progress``: a tqdm bar (or anything with ``update(n)``),
    advanced by each batch's image count, the ``count`` (or ``"<i>/count"``) output."""
    totals: dict[str, float] = {}
    for batch in distributed_dataset:
        sums = {key: float(value) for key, value in eval_step(batch).items()}
        for key, value in sums.items():
            totals[key] = totals.get(key, 0.0) + value
        if progress is not None:
            progress.update(int(sums["count"] if "count" in sums else sums["0/count"]))
    return totals


def run_evaluation(eval_step, distributed_dataset, progress=None) -> dict:
    """Mean loss and top-1/top-5 error over a whole (distributed) dataset: host floats
    keyed "loss", "top1_error", "top5_error", and "examples" (an int). ``progress``:
    as `summed_over`."""
    totals = dict.fromkeys(task_lib.METRIC_KEYS, 0.0)
    totals.update(summed_over(eval_step, distributed_dataset, progress))
    return task_lib.errors_from_sums(totals)


def progress_bar(total: int, description: str, enabled: bool = True):
    """The bar `evaluate_sources` shows on stderr: images done of ``total``, and
    images/s (tqdm's rate)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="img", file=sys.stderr,
                dynamic_ncols=True, disable=not enabled)


def eval_dataset_fn(split, config, task, ten_crop: bool, bad_records=None):
    """The ``distribute_datasets_from_function`` argument for evaluating ``split``."""
    def fn(context):
        batch = context.get_per_replica_batch_size(config.eval.global_batch_size)
        return pipeline.make_dataset(
            split, config.data, image_size=config.model.image_size, batch_size=batch,
            training=False, num_classes=config.model.num_classes, ten_crop=ten_crop,
            input_context=context, bad_records=bad_records, **task.pipeline_args())
    return fn


# ------------------------------------------------------------------- ensembles


def softmax_outputs(model, images, ten_crop: bool):
    """float32 [B, C] softmax of ``model`` on a batch: [B, S, S, 3] images, or with
    ``ten_crop`` [B, 10, S, S, 3] patches whose ten softmax outputs are averaged
    (Sec. 4.1)."""
    import tensorflow as tf

    if ten_crop:
        crops = tf.reshape(images, [-1] + images.shape[2:].as_list())
        probs = tf.nn.softmax(tf.cast(model(crops, training=False), tf.float32))
        width = probs.shape[-1]
        return tf.reduce_mean(tf.reshape(probs, [-1, 10, width]), axis=1)
    return tf.nn.softmax(tf.cast(model(images, training=False), tf.float32))


def ensemble_probabilities(models: Sequence, images, ten_crop: bool = False):
    """(members, ensemble): each member's softmax outputs (`softmax_outputs`, float32
    [B, C]) and their mean, the ensemble's prediction (Sec. 6, Table 2)."""
    import tensorflow as tf

    members = [softmax_outputs(model, images, ten_crop) for model in models]
    return members, tf.add_n(members) / float(len(members))


def ensemble_eval_step(models: Sequence, num_classes: int, ten_crop: bool, strategy):
    """A tf.function: one distributed batch -> summed metrics (`task.METRIC_KEYS`) of
    every member and of the ensemble, keyed ``"<i>/<metric>"`` (i = 0.. for the members,
    ``len(models)`` for the ensemble), summed over replicas."""
    import tensorflow as tf

    def replica_step(images, labels):
        members, ensemble = ensemble_probabilities(models, images, ten_crop)
        out = {}
        for i, probs in enumerate([*members, ensemble]):
            # The log of an averaged softmax ranks as it does and gives the
            # cross-entropy of the average (as the task's ten-crop step).
            logits = tf.math.log(probs + 1e-12)
            sums = task_lib.summed_metrics(
                labels, logits, task_lib.loss_per_example(labels, logits, num_classes))
            out.update({f"{i}/{key}": value for key, value in sums.items()})
        return out

    @tf.function
    def step(batch):
        sums = strategy.run(replica_step, args=batch)
        return {k: strategy.reduce("SUM", v, axis=None) for k, v in sums.items()}

    return step


# ------------------------------------------------------------------ the config


def check_evaluable(sources_: Sequence[source_lib.ModelSource]) -> None:
    """Raises SourceError unless every source says which input it expects (its input
    convention) and which class each output is (its class ids: the data's classes are
    matched to outputs by name), and several share both (`model_source.check_ensemble`)."""
    if not sources_:
        raise source_lib.SourceError("Nothing to evaluate: give at least one model source.")
    for source in sources_:
        if source.convention is None:
            raise source_lib.SourceError(
                f"{source.description} says nothing of the input it expects (a .keras file "
                f"outside any run, export or converted-weights directory has no input "
                f"convention); put its input_convention.json beside it, or evaluate the run "
                f"it came from.")
        if source.class_names is None:
            raise source_lib.SourceError(
                f"{source.description} has no class names, so the data's classes cannot be "
                f"matched to its outputs; give --class_names=FILE (one name per line in "
                f"output order, or a synsets file: 'n01440764 tench, Tinca tinca' lines).")
    if len(sources_) > 1:
        source_lib.check_ensemble(sources_)



def data_config_for(sources_: Sequence[source_lib.ModelSource], *, config=None,
                    data_dir: str | None = None, data_source: str | None = None):
    """The ``config.data`` an evaluation of ``sources_`` reads.

    ``config``'s data section (a config file's) when given; else the data config of the
    run the first source belongs to (as ``--workdir`` always did); else the base
    config's with source "image_folder". ``data_dir`` and ``data_source`` replace what
    either says; a ``data_dir`` alone turns a run's "demo" source into "image_folder"
    (the demo set has its own directory). Unless the data config is a run's own, the
    sources' input convention then sets the normalisation and resize keys (the
    convention is what the weights expect, whatever a data config says).

    Raises EvaluationError when a source without a run is given no data.
    """
    first = sources_[0]
    if config is not None:
        data = copy.deepcopy(config.data)
    elif first.data_config is not None:
        data = first.data_config
    else:
        if not data_dir and data_source != "demo":
            raise EvaluationError(
                f"{first.description} brings no data (only a run does): give --data_dir=DIR "
                f"(image folders DIR/<split>/<class>/*), --data_source=demo, or a config "
                f"whose data section names it (--config=FILE).")
        data = config_lib.base_config().data
        data.source = "image_folder"
    sources.point_at(data, data_dir=data_dir, data_source=data_source)
    convention = first.convention
    if first.data_config is None or config is not None:
        # The convention is the whole normalisation: it is handed to the pipeline, so
        # the statistics file of some other dataset plays no part.
        replaced = []
        for key, value in convention.config_overrides().items():
            section, name = key.split(".", 1)
            if section == "data":
                if config is not None and _differs(config.data[name], value):
                    replaced.append(f"{key}={config.data[name]!r} -> {value!r}")
                data[name] = value
        if replaced:
            # The user's config said otherwise: not silently.
            logging.warning("The input convention of %s replaces the config's %s: the "
                            "weights expect their own preprocessing.", first.description,
                            ", ".join(replaced))
        data.stats_file, data.mean = "", "per_channel"
    return data


def _differs(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) != len(b) or any(_differs(x, y) for x, y in zip(a, b))
    return a != b


def _stored_classes(data_config, split: str):
    """(what a class is called there, where, the split's own class ids in its order),
    or None when they cannot be told (then the data source's own error stands)."""
    from alexnet_tf.data import imagenet

    d = data_config
    try:
        if d.source in ("image_folder", "demo"):
            root = d.data_dir or (sources.default_demo_dir(d) if d.source == "demo" else "")
            folder = os.path.join(root, split)
            if not root or not os.path.isdir(folder):
                return None
            try:  # the folder's own classes, not the training folder's order
                return "class folder", folder, imagenet.read_class_folders(root, split)
            except ValueError:  # a flat validation folder: its labels file names them
                if not d.val_labels_file:
                    return None
                wnids = imagenet.read_val_labels(d.val_labels_file, d.val_meta_file or None)
                return "label", d.val_labels_file, tuple(dict.fromkeys(wnids))
        return ("class", d.data_dir or d.tfds_name,
                tuple(sources.load_split(d, split).class_names))
    except (ValueError, OSError):
        return None


def _check_classes_known(source: source_lib.ModelSource, data_config, split: str) -> None:
    """Raises EvaluationError when the split has a class the model has no output for,
    saying that the data is what adds it (the model's classes are what it learnt)."""
    stored = _stored_classes(data_config, split)
    if stored is None or source.class_names is None:
        return
    what, where, ids = stored
    known = set(source.class_names)
    unknown = [c for c in ids if c not in known]
    if not unknown:
        return
    theirs = source.class_names
    listed = ", ".join(repr(c) for c in theirs[:5]) + (", ..." if len(theirs) > 5 else "")
    more = (f" (and {len(unknown) - 1} more: {', '.join(repr(c) for c in unknown[1:5])}"
            f"{', ...' if len(unknown) > 5 else ''})" if len(unknown) > 1 else "")
    apart = ""
    if len(unknown) == len(ids):
        apart = (f" None of the data's {len(ids)} classes is among them: the data and the "
                 f"model name classes differently (the data: "
                 f"{', '.join(repr(c) for c in ids[:3])}).")
    raise EvaluationError(
        f"Split {split!r} of the data ({where!r}) has {what} {unknown[0]!r}{more}, not among "
        f"the {len(theirs)} classes of the model, {source.description} ({listed}): the data "
        f"holds a class the model has no output for.{apart} Expected data whose classes are "
        f"all among the model's (a split may lack some of them, never add its own).")


def _evaluation_config(sources_, data_config, batch_size: int | None):
    config = config_lib.base_config()
    with config.unlocked():
        config.model = copy.deepcopy(sources_[0].model_config)
    config.data = data_config
    if batch_size is not None:
        config.eval.global_batch_size = batch_size
    elif sources_[0].workdir and sources_[0].kind in ("run", "checkpoint"):
        config.eval.global_batch_size = run_lib.Run(sources_[0].workdir).config.eval.global_batch_size
    try:
        return config_lib.validate(config)
    except config_lib.ConfigError as error:
        raise EvaluationError(f"The evaluation's config is invalid: {error}") from None


def default_output(source: source_lib.ModelSource, split: str, ten_crop: bool) -> str:
    """Where one source's result goes: a run's (or a checkpoint's run's)
    ``eval_<split>_<crops>.json``; a converted directory's own; beside a ``.keras``
    file, ``<name>_eval_<split>_<crops>.json``."""
    crops = "tencrop" if ten_crop else "center"
    if source.kind in ("run", "checkpoint"):
        return run_lib.Run(source.workdir).eval_path(split, ten_crop)
    if source.kind == "converted":
        return os.path.join(source.path, f"eval_{split}_{crops}.json")
    return f"{source.path[:-len('.keras')]}_eval_{split}_{crops}.json"


# ------------------------------------------------------------------ evaluation


def evaluate_sources(sources_: Sequence[source_lib.ModelSource], data_config, *,
                     split: str | None = None, ten_crop: bool = False,
                     batch_size: int | None = None, output: str | None = None,
                     overwrite: bool = True, progress: bool = False) -> dict:
    """Top-1/top-5 error of one source, or of every member and the ensemble of
    several, on a split; written as JSON to ``output``.

    Args:
      sources_: resolved sources (`alexnet_tf.model_source.resolve_all`); several must
        share class ids and input convention (`model_source.check_ensemble`).
      data_config: ``config.data`` naming the data (`data_config_for`).
      split: default ``data_config.eval_split``.
      ten_crop: Sec. 4.1's ten patches, softmax averaged.
      batch_size: the global evaluation batch; default a run's ``eval.global_batch_size``
        (else the base config's, 128).
      output: the JSON file; default `default_output` for one source; an ensemble needs
        one. Written through a temporary file: an earlier result is replaced whole.
      overwrite: False refuses an ``output`` that exists (`check_output`).
      progress: show a progress bar on stderr (images done, images/s).

    Returns the metrics written: "loss", "top1_error", "top5_error", "examples",
    "split", "crops", "model" (the description), "checkpoint" (for a run's checkpoint,
    else None); for an ensemble those of the average, plus "members" (each member's
    metrics and description) and "ensemble": true.

    Raises:
      SourceError: members that differ, a source without class names or convention.
      EvaluationError: data or classes that do not fit the sources (named).
    """
    from alexnet_tf.train import distribute

    check_evaluable(sources_)
    first = sources_[0]
    split = split or data_config.eval_split
    if output is None and len(sources_) > 1:
        raise EvaluationError(f"An ensemble of {len(sources_)} models has no directory of "
                              f"its own for its result: give --output=FILE.json.")
    check_output(output, overwrite, inputs=[s.path for s in sources_])  # probes it too
    if output is None:
        output = default_output(first, split, ten_crop)
        outputs.check_writable(output)  # a full disk fails now, not after the evaluation
    config = _evaluation_config(sources_, data_config, batch_size)
    try:
        # The source's class order, whatever order the split stores.
        data = sources.load_split(config.data, split, class_names=first.class_names)
    except (ValueError, OSError) as error:
        _check_classes_known(first, config.data, split)
        raise EvaluationError(f"{first.description} cannot evaluate {config.data.source} "
                              f"data {config.data.data_dir or '(its default directory)'!r}: "
                              f"{error}") from None
    strategy = distribute.create_strategy()
    with strategy.scope():
        models = [source.load_model() for source in sources_]
    # The source's own convention: the export serves with the same one.
    task = task_lib.ClassificationTask(config, strategy, convention=first.convention)
    dataset = strategy.distribute_datasets_from_function(
        eval_dataset_fn(data, config, task, ten_crop))
    crops = "ten" if ten_crop else "center"

    def described(metrics, source):
        return dict(metrics, model=source.description, source=source.path,
                    checkpoint=source.checkpoint, split=split, crops=crops)

    with progress_bar(len(data), f"{crops}-crop {split}",
                      progress) as bar:
        if len(models) == 1:
            metrics = described(run_evaluation(task.eval_step(models[0], ten_crop), dataset,
                                               bar), first)
        else:
            step = ensemble_eval_step(models, config.model.num_classes, ten_crop, strategy)
            totals = summed_over(step, dataset, bar)
    if len(models) > 1:
        per_model = [task_lib.errors_from_sums(
            {k: totals[f"{i}/{k}"] for k in task_lib.METRIC_KEYS})
            for i in range(len(models) + 1)]
        members = [described(m, s) for m, s in zip(per_model, sources_)]
        metrics = dict(per_model[-1], model=f"ensemble of {len(models)}",
                       source=[s.path for s in sources_], checkpoint=None, split=split,
                       crops=crops, ensemble=True, members=members)
    with outputs.write_atomically(output) as file:  # an earlier result stays whole
        json.dump(metrics, file, indent=2)
    metrics["output"] = output
    return metrics


def check_output(output: str | None, overwrite: bool, inputs: Sequence[str] = ()) -> None:
    """Refuses an ``output`` the user named that exists, unless ``overwrite``
    (`alexnet_tf.outputs.check_new_file`): it may be another evaluation's result, or any
    other file. Checked before a model is built. The default outputs (`default_output`)
    are the package's own, and a new evaluation replaces them."""
    if output is not None:
        outputs.check_new_file(output, overwrite, inputs=inputs)


def format_metrics(metrics: dict) -> str:
    """Readable lines: each member's errors (ensembles) and the result's."""
    def line(m, name):
        return (f"{name}: top-1 error {m['top1_error']:.4f}  top-5 error "
                f"{m['top5_error']:.4f}  ({m['examples']} images, {m['crops']} crop)")

    lines = [line(m, f"member {i + 1} {m['model']}")
             for i, m in enumerate(metrics.get("members", []))]
    lines.append(line(metrics, metrics["model"]))
    if "output" in metrics:
        lines.append(f"-> {metrics['output']}")
    return "\n".join(lines)


def evaluate(model: str | Sequence[str], *, checkpoint: str = "auto",
             class_names_file: str | None = None, config=None, data_dir: str | None = None,
             data_source: str | None = None, split: str | None = None, ten_crop: bool = False,
             batch_size: int | None = None, output: str | None = None,
             overwrite: bool = True, progress: bool = False) -> dict:
    """``alexnet-eval``: resolves ``model`` (one source or "A,B,C",
    `model_source.resolve_all`), gives sources without class names those of
    ``class_names_file`` (`model_source.read_class_names`), names the data
    (`data_config_for`) and runs `evaluate_sources`. Everything is checked before a
    model is built. Raises SourceError or EvaluationError naming the problem."""
    members = source_lib.resolve_all(model, checkpoint=checkpoint)
    if class_names_file:
        ids, names = source_lib.read_class_names(class_names_file)
        members = [m.with_class_names(ids, names) for m in members]
    check_evaluable(members)
    data = data_config_for(members, config=config, data_dir=data_dir, data_source=data_source)
    return evaluate_sources(members, data, split=split, ten_crop=ten_crop,
                            batch_size=batch_size, output=output, overwrite=overwrite,
                            progress=progress)


def evaluate_checkpoint(workdir: str, *, checkpoint: str = "latest", split: str | None = None,
                        ten_crop: bool = False, output: str | None = None) -> dict:
    """Top-1/top-5 error of a run's checkpoint on a split; written as JSON.

    The config is the run's own ``config.json``: the model, the input convention and
    the data source are what the run trained with. ``checkpoint``: "latest", "best",
    "auto" or a path (`alexnet_tf.run.resolve_checkpoint`); ``output`` defaults to
    ``WORKDIR/eval_<split>_<center|tencrop>.json``. Returns the metrics written.
    """
    source = source_lib.resolve(workdir, checkpoint=checkpoint)
    return evaluate_sources([source], source.data_config, split=split, ten_crop=ten_crop,
                            output=output)
