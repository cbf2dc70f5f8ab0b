"""One resolver from a user's model argument to a network with its input convention.

Every command that needs a trained network (``alexnet-train --config.model.init_from``,
``alexnet-eval --model``, ``alexnet-export --model``, the analysis tools) passes the
user's value to `resolve`, which says what it is and returns a `ModelSource`. Four
kinds of source exist:

* ``"run"``: a training run's work directory (``config.json`` + ``checkpoints/``,
  `alexnet_tf.run.Run`); its best checkpoint, else its latest (``checkpoint="auto"``),
  or the one ``checkpoint`` names ("best", "latest", a path).
* ``"checkpoint"``: a checkpoint inside a run: a prefix ``RUN/checkpoints/ckpt-N``
  (or its ``.index`` file), or a directory of checkpoints (``RUN/checkpoints``,
  ``RUN/checkpoints/best``: its newest). The run is the nearest directory above holding a
  ``config.json`` (at most three levels up); its config builds the network.
* ``"keras"``: a ``.keras`` file. The network is read from the file itself; its input
  convention and classes come from what the file sits in, when it sits in something:
  an export (``EXPORT_DIR/<v>.keras`` beside ``EXPORT_DIR/<v>/assets/``), a
  converted-weights directory, a run (at most three levels up), or a directory with an
  ``input_convention.json``. A bare file has no convention (``convention`` None).
* ``"converted"``: a directory written by ``tools/convert_weights.py``
  (`alexnet_tf.weights.save_converted`: ``model.keras``, ``input_convention.json``,
  ``weights_info.json`` and, when the converter was given ``--class_names``,
  ``classes.json``).

A model source knows the network without building it (``model_config``, a complete
``config.model`` section: for files it is read from the ``.keras`` file's layer configs,
so no TensorFlow is imported to resolve one), its input convention, its class ids, and
a fingerprint of its weights. `ModelSource.load_model` builds the network and loads the
weights. Several sources form an ensemble (Sec. 6, Table 2: the paper averages the
predictions of five and seven CNNs): `resolve_all` reads ``"A,B,C"`` and
`check_ensemble` refuses members whose classes or input conventions differ, and a member
whose weights are an earlier member's (it would count twice in the average).

What a source takes from what it sits in must be its own: a run's ``checkpoint`` must lie
inside that run (another run's weights under this run's classes and data would be
scored against the wrong labels), and a ``.keras`` file must have as many outputs as
the run, export or directory it sits in has classes.

Errors: `SourceError` (a ValueError) naming the value and what was expected: a path that
does not exist, a directory or file of no kind, a run without checkpoints, a file that
is not one of this package's networks, weights that cannot be read (a damaged checkpoint
or file, with the reason). A run's own unreadable files raise
`alexnet_tf.run.RunError` or `alexnet_tf.config.ConfigError` (ValueErrors too); nothing
else escapes resolving a source, reading its classes or loading its weights.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import stat
import zipfile
from typing import Any, Sequence

from alexnet_tf import architecture
from alexnet_tf import config as config_lib
from alexnet_tf import run as run_lib
from alexnet_tf.convention import FILENAME as CONVENTION_FILENAME
from alexnet_tf.convention import ConventionError, InputConvention
from alexnet_tf.errors import UserError

KINDS = ("run", "checkpoint", "keras", "converted")
# The largest class names file read: ImageNet-21k's 21,841 synset lines take about 1 MB.
MAX_CLASS_NAMES_BYTES = 16 * 2**20
# How far above a checkpoint or a .keras file the run that owns it is looked for:
# RUN/checkpoints/best/ckpt-N is three levels below RUN.
_RUN_SEARCH_DEPTH = 3
_CONVERTED_MODEL = "model.keras"  # alexnet_tf.weights.convention.MODEL_FILENAME
_CONVERTED_INFO = "weights_info.json"  # alexnet_tf.weights.convention.INFO_FILENAME
_EXPORT_ASSETS = "assets"

# What each kind holds, for the message that refuses a path of no kind.
KIND_DESCRIPTIONS = (
    "a run's work directory (config.json and checkpoints/, written by alexnet-train)",
    "a checkpoint of a run (RUN/checkpoints/ckpt-N, its .index file, or a directory of "
    "ckpt-N.index files inside a run)",
    "a .keras file",
    "a converted-weights directory (model.keras, input_convention.json and "
    "weights_info.json, written by tools/convert_weights.py)",
)


class SourceError(UserError, ValueError):
    """A model argument that names no model source, or sources that cannot go together."""


def file_sha256(path: str, chunk_bytes: int = 1 << 22) -> str:
    """The SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------- the source


@dataclasses.dataclass
class ModelSource:
    """A network that can be built and filled, and what using it needs to know.

    Attributes:
      kind: one of `KINDS`: "run", "checkpoint", "keras" or "converted".
      path: the absolute path the source names: the run's directory ("run"), the
        checkpoint prefix ("checkpoint"), the ``.keras`` file, or the converted-weights
        directory.
      description: where the weights come from, for messages, e.g. "run runs/demo
        (best checkpoint ckpt-40)".
      model_config: a complete ``config.model`` section (ml_collections ConfigDict of
        `alexnet_tf.config.base_config`) that builds this same network: variant,
        num_classes, width, groups, init, lrn_bias, lrn_alpha, image_size,
        dropout_rate, grouped_conv_implementation.
      convention: the input the weights expect (`InputConvention`), or None for a
        ``.keras`` file that sits in nothing that says it.
      class_names: class ids by output index (a run's ``classes.json`` ids, e.g.
        wnids; a converted model's ids from the converter's ``--class_names``), or None
        when the source does not say.
      num_classes: the number of outputs (fc8's width).
      fingerprint: JSON-able; changes whenever the weights do (feature caches key on it).
      readable_names: readable class names by index, or None (then the ids serve).
      checkpoint: the checkpoint prefix for "run" and "checkpoint"; None otherwise.
      workdir: the run directory the source belongs to (a run, a checkpoint's run, or
        the run a ``.keras`` file sits in), or None.
      weights_source: converted weights' origin (e.g. "caffe:bvlc_alexnet"), or None.
    """

    kind: str
    path: str
    description: str
    model_config: Any
    convention: InputConvention | None
    class_names: tuple[str, ...] | None
    num_classes: int
    fingerprint: dict
    readable_names: tuple[str, ...] | None = None
    checkpoint: str | None = None
    workdir: str | None = None
    weights_source: str | None = None
    # The weights file first, then what else the source read (fingerprinted).
    _files: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    _data_config: Any = dataclasses.field(default=None, repr=False)

    # ------------------------------------------------------------- what it needs

    @property
    def data_config(self):
        """The ``config.data`` of the run the source belongs to (where its data is, how
        it was read), or None for sources without a run."""
        return copy.deepcopy(self._data_config) if self._data_config is not None else None

    def classes(self) -> list[dict]:
        """``[{"index": i, "id": id, "name": readable}]`` in output order (the export's
        class table). Raises SourceError when the source has no class names."""
        if self.class_names is None:
            raise SourceError(
                f"{self.description} has no class names; give a class names file "
                f"(--class_names=FILE: one name per line in output order, or ImageNet's "
                f"synsets file, lines like 'n01440764 tench, Tinca tinca').")
        names = self.readable_names or self.class_names
        return [{"index": i, "id": c, "name": n or c}
                for i, (c, n) in enumerate(zip(self.class_names, names))]

    def with_class_names(self, class_ids: Sequence[str],
                         readable_names: Sequence[str] | None = None) -> "ModelSource":
        """A copy with the given class ids (e.g. from a ``--class_names`` file). Raises
        SourceError unless there is one per output, or when the source already has
        other ones (a run's classes are part of what it learnt)."""
        class_ids = tuple(class_ids)
        if len(class_ids) != self.num_classes:
            raise SourceError(f"{len(class_ids)} class names given for {self.description}, "
                              f"which has {self.num_classes} outputs; expected one name per "
                              f"output.")
        if self.class_names is not None and self.class_names != class_ids:
            i = next(i for i, (a, b) in enumerate(zip(self.class_names, class_ids)) if a != b)
            raise SourceError(
                f"{self.description} has its own class names, which differ from the ones "
                f"given at index {i} ({self.class_names[i]!r} vs {class_ids[i]!r}); leave "
                f"--class_names out for this source.")
        names = tuple(readable_names) if readable_names is not None else None
        return dataclasses.replace(self, class_names=class_ids, readable_names=names)

    def config_overrides(self) -> dict[str, Any]:
        """``"section.key" -> value`` that a run started from this source must adopt.

        The input convention (`InputConvention.config_overrides`: data.channel_order,
        data.mean_rgb, data.std_rgb, data.resize_size, model.image_size; for a run whose
        mean comes from a statistics file, data.stats_file and data.mean instead of a
        number) and the architecture (model.variant, model.width, model.groups,
        model.lrn_bias, model.lrn_alpha). A source without a convention (a bare
        ``.keras`` file) gives the architecture and model.image_size only: check
        ``convention is None`` to know.

        Raises SourceError for a convention with a mean image that no statistics file
        of a run supplies (a config can only name one through data.stats_file).
        """
        m = self.model_config
        overrides: dict[str, Any] = {}
        if self.convention is not None:
            overrides.update(self.convention.config_overrides())
            data = self._data_config
            if data is not None and data.stats_file:
                # The mean is the statistics file's (the config keeps mean_rgb at its
                # default then, `config.validate`); so is a mean image.
                overrides.update({"data.stats_file": data.stats_file, "data.mean": data.mean,
                                  "data.mean_rgb": tuple(data.mean_rgb)})
            elif self.convention.mean_image is not None:
                raise SourceError(
                    f"{self.description} subtracts a mean image (Sec. 2), which a config "
                    f"names only through data.stats_file; start from its run instead.")
        overrides.update({"model.image_size": int(m.image_size),
                          "model.variant": m.variant,
                          "model.width": float(m.width),
                          "model.groups": m.groups,
                          "model.lrn_bias": m.lrn_bias,
                          "model.lrn_alpha": m.lrn_alpha})
        return overrides

    # ------------------------------------------------------------------ the model

    def load_model(self, *, grouped_conv_implementation: str | None = None):
        """Builds the network (in the current ``tf.distribute`` scope) and loads the
        weights; returns the Keras model (images -> logits).

        ``grouped_conv_implementation`` replaces the source's (the export traces
        "split"). Raises SourceError when the weights do not fill the network (a
        checkpoint without every variable, a file whose weights another network holds)
        or cannot be read (a truncated or corrupt checkpoint or file: the file and the
        reason named, `alexnet_tf.run.checkpoint_damage`); nothing else.
        """
        from alexnet_tf import models

        config = config_lib.base_config()
        with config.unlocked():
            config.model = copy.deepcopy(self.model_config)
            if grouped_conv_implementation is not None:
                config.model.grouped_conv_implementation = grouped_conv_implementation
        if self.checkpoint is not None:
            model = models.model_from_config(config)
            try:
                run_lib.restore_weights(model, self.checkpoint)
            except Exception as error:  # noqa: BLE001  (a truncated file raises IndexError)
                # A damaged file fails the restore in many ways (IndexError, DataLossError,
                # a "does not hold every variable"); the reader says which.
                damage = checkpoint_damage(self.checkpoint)
                if damage is not None:
                    raise SourceError(
                        f"Checkpoint {self.checkpoint!r} of {self.description} cannot be "
                        f"read: {damage}. Expected a checkpoint whose .index and .data files "
                        f"are whole (another of the run's checkpoints, or a whole copy of "
                        f"this one).") from None
                if not isinstance(error, run_lib.CheckpointError):
                    raise SourceError(
                        f"Checkpoint {self.checkpoint!r} of {self.description} cannot be "
                        f"restored: {type(error).__name__}: {str(error)[:500]}") from None
                m = self.model_config
                raise SourceError(f"{error} (the run's config builds {m.variant}, width "
                                  f"{m.width}, {m.num_classes} classes)") from None
            return model
        from alexnet_tf import layers  # noqa: F401  (registers the custom layers)

        model = models.model_from_config(config)
        weights_file = self._files[0]
        try:
            model.load_weights(weights_file)
        except (ValueError, KeyError) as error:
            raise SourceError(f"The weights of {weights_file!r} do not fill the network its "
                              f"layers describe: {str(error)[:500]}") from None
        except Exception as error:  # noqa: BLE001  (zip, zlib and h5py errors of a damaged file)
            raise SourceError(f"The weights of {weights_file!r} cannot be read "
                              f"({type(error).__name__}: {str(error)[:300]}); expected the "
                              f"whole file as Keras saved it.") from None
        return model

    @property
    def weights_digest(self) -> str:
        """A SHA-256 that two sources share exactly when they hold the same weights file
        (a checkpoint's ``.index``, which holds a CRC32C of every tensor; a ``.keras``
        file's bytes), wherever it is and however it was named."""
        if self.checkpoint is not None:
            return self.fingerprint["index_sha256"]
        return self.fingerprint["sha256"][0]


# -------------------------------------------------------------------- resolving


def resolve(spec: str, *, checkpoint: str = "auto") -> ModelSource:
    """The model source ``spec`` names (see the module docstring for the kinds).

    Args:
      spec: a path: a run's work directory, a checkpoint prefix or directory inside a
        run, a ``.keras`` file, or a converted-weights directory.
      checkpoint: for a run's work directory: "auto" (best, else latest), "best",
        "latest" or a checkpoint path inside the run (`alexnet_tf.run.resolve_checkpoint`;
        another run's checkpoint is refused, both named). Other kinds accept only
        "auto" (their path says which weights).

    Raises:
      SourceError: naming ``spec`` and what was expected.
      alexnet_tf.run.RunError, alexnet_tf.config.ConfigError: a run's file that cannot
        be read (named by `alexnet_tf.run.Run`); both are ValueErrors.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SourceError(f"A model source must be a path, got {spec!r}; expected "
                          + "; or ".join(KIND_DESCRIPTIONS) + ".")
    path = os.path.abspath(os.path.expanduser(spec))
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, run_lib.CONFIG_FILENAME)):
            return _run_source(spec, path, checkpoint)
        if os.path.isfile(os.path.join(path, _CONVERTED_MODEL)) and (
                os.path.isfile(os.path.join(path, CONVENTION_FILENAME))
                or os.path.isfile(os.path.join(path, _CONVERTED_INFO))):
            _only_auto(spec, checkpoint, "a converted-weights directory")
            return _converted_source(spec, path)
        if _holds_checkpoints(path):
            _only_auto(spec, checkpoint, "a directory of checkpoints")
            return _checkpoint_source(spec, path)
        hint = ""
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            hint = (f" It is a SavedModel; its export wrote the same network as "
                    f"{path.rstrip(os.sep)}.keras, which is a model source.")
        raise SourceError(f"Model source {spec!r} is a directory of none of the kinds; "
                          f"expected " + "; or ".join(KIND_DESCRIPTIONS) + "." + hint)
    if os.path.isfile(path) and path.endswith(".keras"):
        _only_auto(spec, checkpoint, "a .keras file")
        return _keras_source(spec, path)
    if path.endswith(".index") and os.path.isfile(path):
        path = path[:-len(".index")]
    if os.path.isfile(path + ".index"):
        _only_auto(spec, checkpoint, "a checkpoint")
        return _checkpoint_source(spec, path)
    if os.path.exists(path):
        raise SourceError(f"Model source {spec!r} is a file of none of the kinds; expected "
                          + "; or ".join(KIND_DESCRIPTIONS) + ".")
    raise SourceError(f"Model source {spec!r} does not exist (looked for {path!r}); "
                      f"expected " + "; or ".join(KIND_DESCRIPTIONS) + ".")


def resolve_all(specs: str | os.PathLike | Sequence[str | os.PathLike], *,
                checkpoint: str = "auto") -> list[ModelSource]:
    """The sources of ``specs``: a comma-separated string ("A,B,C"; a string that is
    the path of something that exists is taken whole, commas and all), one path object
    (``pathlib.Path``: never split) or a list of paths; one source, or the members of an
    ensemble. Raises SourceError for an empty list and for any member `resolve` refuses
    (naming it)."""
    if isinstance(specs, os.PathLike):
        specs = [specs]
    elif isinstance(specs, str):
        # A path that holds a comma and exists is one source, not an ensemble of its
        # pieces (which would name paths that do not exist).
        specs = [specs] if "," in specs and os.path.exists(specs) else specs.split(",")
    specs = [os.fspath(s).strip() for s in specs]
    if not specs or any(not s for s in specs):
        raise SourceError(f"Expected one model source or several separated by commas "
                          f"(A,B,C), got {','.join(specs)!r}.")
    if len(specs) > 1 and checkpoint != "auto":
        raise SourceError(f"checkpoint={checkpoint!r} names one run's checkpoint; an "
                          f"ensemble's members name their own (give each a checkpoint path).")
    return [resolve(spec, checkpoint=checkpoint) for spec in specs]


def check_ensemble(sources: Sequence[ModelSource]) -> None:
    """Raises SourceError unless every source has the first one's class ids and input
    convention (Sec. 6: the members' softmax outputs are averaged over one input and
    one class order), naming the member and the field that differs; and when a member
    holds the same weights as an earlier one (`ModelSource.weights_digest`: the same
    source twice, or a run and its own checkpoint), which would count it twice in the
    average."""
    if not sources:
        raise SourceError("An ensemble needs at least one model source.")
    first = sources[0]
    seen: dict[str, int] = {}
    for i, source in enumerate(sources):
        earlier = seen.setdefault(source.weights_digest, i)
        if earlier != i:
            raise SourceError(
                f"Ensemble member {i + 1} ({source.description}) holds the same weights as "
                f"member {earlier + 1} ({sources[earlier].description}): their weights "
                f"fingerprint is sha256 {source.weights_digest[:16]}... Averaging a model "
                f"with itself doubles its weight; expected each model once.")
    for i, source in enumerate(sources):
        if source.class_names is None:
            raise SourceError(f"Ensemble member {i + 1} ({source.description}) has no class "
                              f"names: the members' outputs can only be averaged class by "
                              f"class when each says which class each output is.")
        if source.convention is None:
            raise SourceError(f"Ensemble member {i + 1} ({source.description}) has no input "
                              f"convention: the members must preprocess images alike.")
    for i, source in enumerate(sources[1:], start=2):
        if source.class_names != first.class_names:
            ours, theirs = first.class_names, source.class_names
            if len(ours) != len(theirs):
                what = f"{len(theirs)} classes, member 1 has {len(ours)}"
            else:
                j = next(j for j, (a, b) in enumerate(zip(ours, theirs)) if a != b)
                what = f"class {theirs[j]!r} at index {j}, member 1 has {ours[j]!r}"
            raise SourceError(f"Ensemble member {i} ({source.description}) has other class "
                              f"names than member 1 ({first.description}): {what}. Members "
                              f"must share their classes in one order.")
        if source.convention != first.convention:
            a, b = first.convention.to_dict(), source.convention.to_dict()
            fields = [k for k in a if a[k] != b[k]] or ["mean_image"]
            raise SourceError(
                f"Ensemble member {i} ({source.description}) has another input convention "
                f"than member 1 ({first.description}): {', '.join(fields)} "
                f"({', '.join(f'{b.get(k)!r} vs {a.get(k)!r}' for k in fields)}). Members "
                f"must preprocess images alike.")


def read_class_names(path: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(ids, readable names) by output index from a class names file.

    Two layouts: ImageNet's synsets file (every line ``n01440764 tench, Tinca tinca``:
    ids are the wnids, names the rest; `alexnet_tf.data.imagenet.read_synset_names`),
    or one name per line (ids and names are the line). Blank lines and a leading UTF-8
    byte-order mark are skipped. Raises SourceError naming the file when it is missing,
    not a regular file, larger than `MAX_CLASS_NAMES_BYTES`, empty or names a class
    twice.
    """
    import re

    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode) or not stat.S_ISREG(info.st_mode):
            # A FIFO would block the read, a device never end it.
            raise SourceError(f"Class names file {path!r} is not a regular file (a "
                              f"directory, FIFO or device); expected a text file with one "
                              f"class name per line.")
        if info.st_size > MAX_CLASS_NAMES_BYTES:
            raise SourceError(f"Class names file {path!r} has {info.st_size:,} bytes, more "
                              f"than the {MAX_CLASS_NAMES_BYTES:,} a list of class names "
                              f"takes; expected one class name per line.")
        # utf-8-sig: an editor's byte-order mark would otherwise stay in the first name,
        # which then matches no class while printing like it.
        with open(path, encoding="utf-8-sig") as f:
            lines = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise SourceError(f"Class names file {path!r} cannot be read: {error}") from None
    if not lines:
        raise SourceError(f"Class names file {path!r} is empty; expected one class name per "
                          f"line in output order, or lines like 'n01440764 tench, Tinca tinca'.")
    if all(re.match(r"n\d{8}(\s|$)", line) for line in lines):
        # The synsets layout of `alexnet_tf.data.imagenet.read_synset_names` (space or
        # tab separated), from the lines read here.
        parts = [line.split(None, 1) for line in lines]
        ids = tuple(p[0] for p in parts)
        names = tuple(p[1].strip() if len(p) > 1 and p[1].strip() else p[0] for p in parts)
    else:
        ids = names = tuple(lines)
    if len(set(ids)) != len(ids):
        duplicate = next(c for c in ids if ids.count(c) > 1)
        raise SourceError(f"Class names file {path!r} names {duplicate!r} twice; expected "
                          f"one distinct name per class.")
    return ids, names


# ------------------------------------------------------------------------ kinds


def _only_auto(spec: str, checkpoint: str, what: str) -> None:
    if checkpoint != "auto":
        raise SourceError(f"checkpoint={checkpoint!r} chooses among a run's checkpoints; "
                          f"model source {spec!r} is {what}, whose path says which weights.")


def _holds_checkpoints(directory: str) -> bool:
    import glob

    return (os.path.isfile(os.path.join(directory, "checkpoint"))
            or bool(glob.glob(os.path.join(directory, "ckpt-*.index"))))


def _enclosing_run(path: str) -> run_lib.Run | None:
    """The run whose work directory holds ``path`` (at most `_RUN_SEARCH_DEPTH` up)."""
    directory = os.path.dirname(path)
    for _ in range(_RUN_SEARCH_DEPTH):
        if os.path.isfile(os.path.join(directory, run_lib.CONFIG_FILENAME)):
            return run_lib.Run(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return None


def _run_parts(run: run_lib.Run):
    """(config, convention, class ids, readable names) of a run. Its own errors
    (`alexnet_tf.run.RunError`, `alexnet_tf.config.ConfigError`) name the file; a file
    that cannot be opened at all (permissions) is a SourceError naming it."""
    try:
        config = run.config
        convention = run.convention
        ids = names = None
        if os.path.exists(run.classes_path):
            classes = run.classes(config.model.num_classes)
            ids = tuple(c["id"] for c in classes)
            names = tuple(c["name"] or c["id"] for c in classes)
    except OSError as error:
        raise SourceError(f"A file of run {run.workdir!r} cannot be read: "
                          f"{error.filename or run.workdir!r} ({error.strerror or error}); "
                          f"expected its config.json, classes.json and input_convention.json "
                          f"readable.") from None
    return config, convention, ids, names


def _checkpoint_fingerprint(prefix: str, model_config) -> dict:
    return {"kind": "checkpoint", "path": os.path.abspath(prefix),
            # A TF checkpoint's .index holds a CRC32C of every tensor: its hash changes
            # whenever any weight does.
            "index_sha256": _sha256(prefix + ".index"),
            "model": model_config.to_dict()}


def _sha256(path: str) -> str:
    """`file_sha256`, with a file that cannot be read named as a SourceError."""
    try:
        return file_sha256(path)
    except OSError as error:
        raise SourceError(f"{path!r} cannot be read ({error.strerror or error}); expected "
                          f"a readable file of the model source.") from None


def checkpoint_damage(prefix: str) -> str | None:
    """Why the checkpoint ``prefix`` cannot be read, or None when it reads whole
    (`alexnet_tf.run.checkpoint_damage`); never raises: a reader that fails in a way
    it does not expect gives that failure as the reason."""
    try:
        return run_lib.checkpoint_damage(prefix)
    except Exception as error:  # noqa: BLE001  (the reader's own failure is the reason)
        return f"{type(error).__name__}: {str(error)[:200]}"


def _check_inside_run(spec: str, run_dir: str, checkpoint: str, prefix: str) -> None:
    """Raises SourceError unless the checkpoint ``prefix`` lies in ``run_dir``: the run
    supplies the config, classes, convention and data, which describe its own weights
    only (another run's weights would be scored under this run's class order)."""
    real_run, real_prefix = os.path.realpath(run_dir), os.path.realpath(prefix)
    if os.path.commonpath([real_run, real_prefix]) == real_run:
        return
    owner = _enclosing_run(real_prefix)
    of = (f"a checkpoint of run {owner.workdir!r}" if owner is not None
          else "a checkpoint outside any run")
    hint = f"; to evaluate or export it, give --model={owner.workdir}" if owner else ""
    raise SourceError(
        f"Checkpoint {checkpoint!r} is not inside run {spec!r} ({run_dir!r}): it resolves to "
        f"{prefix!r}, {of}. A run's config, classes and data describe its own checkpoints "
        f"only; expected a checkpoint under {os.path.join(run_dir, run_lib.CHECKPOINT_DIR)!r}"
        f"{hint}.")


def _short(path: str) -> str:
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else path


def _run_source(spec: str, path: str, checkpoint: str) -> ModelSource:
    run = run_lib.Run(path)
    config, convention, ids, names = _run_parts(run)
    try:
        prefix = run.checkpoint(checkpoint)
    except run_lib.CheckpointError as error:
        raise SourceError(f"Model source {spec!r} is a run without the checkpoint asked for "
                          f"(checkpoint={checkpoint!r}): {error}") from None
    if checkpoint not in run_lib.CHECKPOINT_CHOICES:
        _check_inside_run(spec, path, checkpoint, prefix)
        which = "given"
    else:
        which = "best" if os.path.dirname(prefix) == os.path.abspath(run.best_dir) else "latest"
    model_config = copy.deepcopy(config.model)
    return ModelSource(
        kind="run", path=path,
        description=f"run {_short(path)} ({which} checkpoint {os.path.basename(prefix)})",
        model_config=model_config, convention=convention, class_names=ids,
        num_classes=int(model_config.num_classes),
        fingerprint=_checkpoint_fingerprint(prefix, model_config), readable_names=names,
        checkpoint=prefix, workdir=path, _data_config=copy.deepcopy(config.data))


def _checkpoint_source(spec: str, path: str) -> ModelSource:
    run = _enclosing_run(path if not os.path.isdir(path) else os.path.join(path, "x"))
    if run is None:
        raise SourceError(
            f"Model source {spec!r} is a checkpoint outside any run: no {run_lib.CONFIG_FILENAME} "
            f"in the {_RUN_SEARCH_DEPTH} directories above it. A checkpoint holds weights "
            f"only; its run's config says which network they fill (expected "
            f"RUN/checkpoints/ckpt-N with RUN/config.json).")
    config, convention, ids, names = _run_parts(run)
    try:
        prefix = run_lib.resolve_checkpoint(run.workdir, path)
    except run_lib.CheckpointError as error:
        raise SourceError(f"Model source {spec!r}: {error}") from None
    model_config = copy.deepcopy(config.model)
    return ModelSource(
        kind="checkpoint", path=prefix,
        description=f"checkpoint {_short(prefix)} of run {_short(run.workdir)}",
        model_config=model_config, convention=convention, class_names=ids,
        num_classes=int(model_config.num_classes),
        fingerprint=_checkpoint_fingerprint(prefix, model_config), readable_names=names,
        checkpoint=prefix, workdir=os.path.abspath(run.workdir),
        _data_config=copy.deepcopy(config.data))


def _read_classes(directory: str, num_classes: int, spec: str, holder_name: str):
    """(ids, names) from ``directory/classes.json`` (the run's format), or (None, None).
    Raises SourceError unless it lists ``num_classes`` classes (one per output of the
    source's network), naming both counts; ``holder_name`` says what ``directory`` is."""
    holder = run_lib.Run(directory)  # the one reader of classes.json
    if not os.path.exists(holder.classes_path):
        return None, None
    try:
        classes = holder.classes()
    except (run_lib.RunError, OSError) as error:
        raise SourceError(f"Model source {spec!r}: {error}") from None
    if len(classes) != num_classes:
        raise SourceError(
            f"Model source {spec!r} has {num_classes} outputs, but its {holder_name}'s "
            f"{holder.classes_path!r} lists {len(classes)} classes; expected one class per "
            f"output (the classes of another network).")
    return tuple(c["id"] for c in classes), tuple(c["name"] or c["id"] for c in classes)


def _converted_source(spec: str, path: str) -> ModelSource:
    from alexnet_tf.weights import convention as weights_convention

    try:
        info = weights_convention.read_info(path)
    except (ConventionError, OSError) as error:
        raise SourceError(f"Model source {spec!r} is not a complete converted-weights "
                          f"directory: {error}") from None
    model_file = os.path.join(path, _CONVERTED_MODEL)
    model_config = model_config_from_keras_file(model_file)
    m = model_config
    if (m.variant, m.num_classes, m.image_size) != (
            info.variant, info.num_classes, info.convention.image_size):
        raise SourceError(
            f"Model source {spec!r}: weights_info.json and input_convention.json say "
            f"{info.variant}, {info.num_classes} classes, {info.convention.image_size} "
            f"pixels; {model_file!r} holds {m.variant}, {m.num_classes} classes, "
            f"{m.image_size} pixels.")
    ids, names = _read_classes(path, info.num_classes, spec, "converted-weights directory")
    files = [os.path.join(path, name) for name in
             (_CONVERTED_MODEL, CONVENTION_FILENAME, _CONVERTED_INFO)]
    files = [f for f in files if os.path.exists(f)]  # weights_info.json: newer layout
    return ModelSource(
        kind="converted", path=path,
        description=f"converted weights {_short(path)} ({info.source})",
        model_config=model_config, convention=info.convention, class_names=ids,
        num_classes=int(info.num_classes),
        fingerprint={"kind": "keras_file", "path": path,
                     "sha256": [_sha256(f) for f in files]},
        readable_names=names, weights_source=info.source, _files=tuple(files))


def _context_classes(spec: str, num_classes: int, where: str, directory: str,
                     context_classes: int, said_by: str) -> None:
    """Raises SourceError when what a .keras file sits in has another number of classes
    than the file has outputs: then its classes and convention are another network's."""
    if context_classes != num_classes:
        raise SourceError(
            f"Model source {spec!r} has {num_classes} outputs (fc8's units in its layer "
            f"configs), but the {where} it sits in, {directory!r}, has {context_classes} "
            f"classes ({said_by}): its class names and input convention describe another "
            f"network. Expected a .keras file of that {where}'s network; to use this one, "
            f"move it out of {directory!r}.")


def _keras_context(spec: str, path: str, num_classes: int):
    """What a .keras file sits in: (convention, ids, names, run, where, extra files).
    Raises SourceError when it has another number of classes than the file."""
    directory = os.path.dirname(path)
    stem = os.path.basename(path)[:-len(".keras")]
    assets = os.path.join(directory, stem, _EXPORT_ASSETS)
    try:
        if os.path.isfile(os.path.join(assets, CONVENTION_FILENAME)):  # EXPORT_DIR/<v>.keras
            ids, names = _read_classes(assets, num_classes, spec, "export")
            return (InputConvention.load(assets), ids, names, None, "export",
                    [os.path.join(assets, CONVENTION_FILENAME)])
        if os.path.isfile(os.path.join(assets, run_lib.CONFIG_FILENAME)):
            # Exports written before input_convention.json was: their config says it.
            config_path = os.path.join(assets, run_lib.CONFIG_FILENAME)
            config = config_lib.read_config(config_path)
            _context_classes(spec, num_classes, "export", os.path.dirname(assets),
                             int(config.model.num_classes),
                             f"model.num_classes of {config_path!r}")
            ids, names = _read_classes(assets, num_classes, spec, "export")
            return (InputConvention.from_config(config), ids, names, None, "export",
                    [config_path])
        if (os.path.basename(path) == _CONVERTED_MODEL
                and os.path.isfile(os.path.join(directory, CONVENTION_FILENAME))):
            from alexnet_tf.weights import convention as weights_convention

            info = weights_convention.read_info(directory)
            _context_classes(spec, num_classes, "converted-weights directory", directory,
                             int(info.num_classes), f"num_classes of {_CONVERTED_INFO}")
            ids, names = _read_classes(directory, num_classes, spec,
                                       "converted-weights directory")
            return (info.convention, ids, names, None, "converted weights",
                    [os.path.join(directory, CONVENTION_FILENAME)])
        run = _enclosing_run(path)
        if run is not None:
            config, convention, ids, names = _run_parts(run)
            _context_classes(spec, num_classes, "run", run.workdir,
                             int(config.model.num_classes),
                             f"model.num_classes of {run.config_path!r}")
            return convention, ids, names, run, "run", [run.config_path]
        if os.path.isfile(os.path.join(directory, CONVENTION_FILENAME)):
            ids, names = _read_classes(directory, num_classes, spec, "directory")
            return (InputConvention.load(directory), ids, names, None, "directory",
                    [os.path.join(directory, CONVENTION_FILENAME)])
    except (ConventionError, config_lib.ConfigError, OSError) as error:
        raise SourceError(f"Model source {spec!r}: {error}") from None
    return None, None, None, None, None, []


def _keras_source(spec: str, path: str) -> ModelSource:
    model_config = model_config_from_keras_file(path)
    num_classes = int(model_config.num_classes)
    convention, ids, names, run, where, extra = _keras_context(spec, path, num_classes)
    if convention is not None and convention.image_size != model_config.image_size:
        raise SourceError(f"Model source {spec!r} takes {model_config.image_size} pixels; the "
                          f"input convention of its {where} crops {convention.image_size}.")
    description = f".keras file {_short(path)}"
    if where:
        description += f" (convention of its {where})"
    files = [path, *extra]
    return ModelSource(
        kind="keras", path=path, description=description, model_config=model_config,
        convention=convention, class_names=ids, num_classes=num_classes,
        fingerprint={"kind": "keras_file", "path": path,
                     "sha256": [_sha256(f) for f in files]},
        readable_names=names, workdir=os.path.abspath(run.workdir) if run else None,
        _files=tuple(files), _data_config=copy.deepcopy(run.config.data) if run else None)


# ------------------------------------------------------- the network of a .keras file


def _keras_layers(path: str) -> dict[str, dict]:
    """{layer name: {"class_name", "config"}} of a Keras 3 ``.keras`` file (read from
    its ``config.json``; nothing is built)."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
        layers = config["config"]["layers"]
        return {layer["config"]["name"]: layer for layer in layers}
    except (zipfile.BadZipFile, KeyError, TypeError, json.JSONDecodeError, OSError) as error:
        raise SourceError(f"{path!r} is not a Keras 3 .keras file of a functional model "
                          f"({type(error).__name__}: {error}).") from None


def model_config_from_keras_file(path: str):
    """The ``config.model`` section that builds the network of a ``.keras`` file
    written by this package (`alexnet_tf.models.create_model`, any variant, width,
    grouping and input size), read from the file's layer configs without building it.

    The variant and width are the ones whose `alexnet_tf.architecture.resolve_layers`
    geometry gives every layer's channel count and grouping in the file; LRN constants,
    dropout rate and grouped-convolution implementation are the layers' own; ``init``
    is "" (it says nothing about loaded weights). Raises SourceError when no variant
    fits, naming what the file holds.
    """
    layers = _keras_layers(path)
    names = [f"conv{i}" for i in range(1, 6)]
    missing = [n for n in (*names, "fc6", "fc7", "fc8") if n not in layers]
    inputs = [l for l in layers.values() if l.get("class_name") == "InputLayer"]
    if missing or len(inputs) != 1:
        raise SourceError(f"{path!r} is not one of this package's AlexNets: it lacks layers "
                          f"{missing or ['a single input']} (expected conv1..conv5, fc6..fc8).")
    try:
        shape = inputs[0]["config"].get("batch_shape") or inputs[0]["config"]["batch_input_shape"]
        image_size = int(shape[1])
        convs = [(int(layers[n]["config"]["filters"]), int(layers[n]["config"].get("groups", 1)))
                 for n in names]
        fc_units = (int(layers["fc6"]["config"]["units"]), int(layers["fc7"]["config"]["units"]))
        num_classes = int(layers["fc8"]["config"]["units"])
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise SourceError(f"{path!r}: its layer configs do not read as this package's "
                          f"AlexNet ({type(error).__name__}: {error}).") from None
    batchnorm = any(l.get("class_name") == "BatchNormalization" for l in layers.values())
    pooled = "avgpool" in layers
    found = []
    for name, variant in architecture.VARIANTS.items():
        if (variant.normalization == "batchnorm") != batchnorm or bool(variant.adaptive_pool) != pooled:
            continue
        tower = next(g for (_, g), c in zip(convs, variant.convs) if c.name == "conv2")
        own_tower = next(c.groups for c in variant.convs if c.name == "conv2")
        groups = None if tower == own_tower else tower
        bases = [c.filters for c in variant.convs] + list(variant.fc_units)
        actual = [f for f, _ in convs] + list(fc_units)
        for width in dict.fromkeys(a / b for a, b in zip(actual, bases)):
            try:
                geometry = architecture.resolve_layers(name, num_classes, image_size, width,
                                                       groups)
            except ValueError:
                continue
            if ([(c.filters, c.groups) for c in geometry.convs] == convs
                    and tuple(geometry.fc_units) == fc_units):
                found.append((name, width, groups))
                break
    if not found:
        raise SourceError(
            f"{path!r} holds no variant of {sorted(architecture.VARIANTS)} at any width: conv "
            f"filters/groups {convs}, fc units {fc_units}, {num_classes} classes, "
            f"{image_size} pixels{', BatchNorm' if batchnorm else ''}.")
    if len(found) > 1:  # two rows of the table that build the same layers
        raise SourceError(f"{path!r} fits several variants {[f[0] for f in found]}.")
    variant_name, width, groups = found[0]
    variant = architecture.VARIANTS[variant_name]
    lrn = layers.get("norm1", {}).get("config", {})
    dropout = [l["config"]["rate"] for l in layers.values() if l.get("class_name") == "Dropout"]
    grouped = [l["config"].get("implementation", "auto") for l in layers.values()
               if l.get("class_name") == "GroupedConv2D"]
    model = config_lib.base_config().model
    model.variant = variant_name
    model.num_classes = num_classes
    model.image_size = image_size
    model.width = float(width)
    model.groups = groups
    model.init = ""
    model.dropout_rate = float(dropout[0]) if dropout else float(variant.dropout_rate)
    model.lrn_bias = float(lrn["bias"]) if "bias" in lrn else None
    model.lrn_alpha = float(lrn["alpha"]) if "alpha" in lrn else None
    model.grouped_conv_implementation = grouped[0] if grouped else "auto"
    return model
