"""Fine-tuning (Sec. 6): a run that starts from another network's weights.

The paper pre-trains on the Fall 2011 release of ImageNet (~15M images, ~22K classes)
and fine-tunes on ILSVRC-2012 (Sec. 6). Here a run starts from any model source
(`alexnet_tf.model_source.resolve`: a run's work directory, a checkpoint, a ``.keras``
file, converted Caffe or torchvision weights) through these config keys:

* ``model.init_from``: the source. A fresh run adopts the source's input convention and
  architecture (`adopt`: the source's values replace the config file's; a
  ``--config.*`` flag that contradicts one stops the run, naming both values, unless
  ``model.init_from_flags_win``), then loads every layer whose weight shapes match
  (`plan_seed`). When ``model.num_classes`` differs from the source's (or
  ``model.init_from_new_head``), ``fc8`` starts from the variant's initialiser; any
  other mismatch stops the run before it writes anything, naming the layer and both
  shapes. A work directory that already has checkpoints resumes from them: the source
  only seeds a fresh run, and a resumed run takes the values it adopted from its own
  ``config.json`` (`adopt_from_saved_run`), so the source may since have moved.
* ``train.trainable_layers``: the layers that train; the others get no update and no
  weight decay (they are not trainable variables, so no optimizer sees them), and a
  frozen conv's BatchNorm runs in inference mode (Keras runs a non-trainable
  BatchNormalization with its moving statistics).
* ``train.lr_multipliers``: Caffe's ``lr_mult`` per layer: the layer's whole update,
  weight decay included, uses ``learning_rate * multiplier`` (`alexnet_tf.train.optim`).

Layer patterns (both keys): comma-separated items matched against the network's layer
names ``conv1`` .. ``conv5``, ``fc6``, ``fc7``, ``fc8`` (`layer_names`) with shell
wildcards (``fnmatch``: ``*`` any run of characters, ``?`` one, ``[...]`` a set), e.g.
``fc7,fc8``, ``fc*``, ``conv[45],fc*``. A conv layer's BatchNorm (``conv3_bn``, the
``modern`` variant) belongs to that conv layer. Every item must match at least one layer.
``train.lr_multipliers`` items are ``PATTERN=NUMBER`` (``fc8=10,fc7=2``; a number > 0);
layers no item names keep 1.

This module imports neither TensorFlow nor Keras at import time: `alexnet_tf.config`
validates the patterns with it before either starts.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
from typing import Any, Collection, Sequence

from alexnet_tf import architecture
from alexnet_tf.errors import UserError

TRAINABLE_KEY = "train.trainable_layers"
MULTIPLIERS_KEY = "train.lr_multipliers"
# The config keys a model source may set (`ModelSource.config_overrides`): the input
# convention, a statistics file's mean, and the architecture. A resumed run takes them
# from its own config.json (`adopt_from_saved_run`).
SOURCE_KEYS = ("data.channel_order", "data.mean_rgb", "data.std_rgb", "data.resize_size",
               "data.stats_file", "data.mean", "model.image_size", "model.variant",
               "model.width", "model.groups", "model.lrn_bias", "model.lrn_alpha")


class FineTuneError(UserError, ValueError):
    """A fine-tuning setting that cannot be carried out, named with what was expected."""


# ------------------------------------------------------------------ layer patterns


def layer_names(variant: str) -> tuple[str, ...]:
    """The weighted layers of ``variant`` in network order: its conv layers, the hidden
    fully connected layers and the classifier (``conv1`` .. ``conv5``, ``fc6``, ``fc7``,
    ``fc8``). Raises ValueError for an unknown variant."""
    spec = architecture.get_variant(variant)
    return (tuple(c.name for c in spec.convs)
            + tuple(f"fc{6 + i}" for i in range(len(spec.fc_units)))
            + (architecture.LOGITS_LAYER,))


def owning_layer(name: str) -> str:
    """The weighted layer a Keras layer or variable path belongs to: ``conv3_bn/gamma``
    -> ``conv3`` (a conv's BatchNorm is part of it), ``fc8/kernel`` -> ``fc8``."""
    layer = name.split("/")[0]
    return layer[:-len("_bn")] if layer.endswith("_bn") else layer


def _items(text: str, key: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise FineTuneError(f"Config key {key!r} is {text!r}: an empty item; expected "
                            f"comma-separated items such as 'fc7,fc8'.")
    return items


def _matching(pattern: str, layers: Sequence[str], key: str, text: str) -> list[str]:
    found = [layer for layer in layers if fnmatch.fnmatchcase(layer, pattern)]
    if not found:
        raise FineTuneError(
            f"Config key {key!r} is {text!r}: {pattern!r} matches none of the network's "
            f"layers {', '.join(layers)} (layer names with shell wildcards * ? [...]).")
    return found


def select_layers(text: str, layers: Sequence[str], key: str = TRAINABLE_KEY) -> tuple[str, ...]:
    """The layers of ``layers`` that the patterns of ``text`` (``"fc7,fc8"``, ``"conv*"``)
    name, in network order; ``""`` names all. Raises FineTuneError for an empty item or
    an item that matches no layer (naming the layers there are)."""
    if not text.strip():
        return tuple(layers)
    chosen = set()
    for pattern in _items(text, key):
        chosen.update(_matching(pattern, layers, key, text))
    return tuple(layer for layer in layers if layer in chosen)


def parse_lr_multipliers(text: str, layers: Sequence[str],
                         key: str = MULTIPLIERS_KEY) -> dict[str, float]:
    """``"fc8=10,fc7=2"`` -> ``{"fc8": 10.0, "fc7": 2.0}`` over ``layers`` (patterns as
    `select_layers`); ``""`` -> ``{}``. Raises FineTuneError for an item that is not
    ``PATTERN=NUMBER``, a number that is not finite and > 0, a pattern that matches no
    layer (naming the layers there are), or two items giving one layer two values."""
    result: dict[str, float] = {}
    if not text.strip():
        return result
    for item in _items(text, key):
        pattern, sep, number = item.partition("=")
        pattern, number = pattern.strip(), number.strip()
        try:
            value = float(number) if sep and pattern else None
        except ValueError:
            value = None
        if value is None:
            raise FineTuneError(f"Config key {key!r} is {text!r}: item {item!r} is not "
                                f"LAYER=NUMBER; expected e.g. 'fc8=10,fc7=2' (Caffe's lr_mult).")
        if not (math.isfinite(value) and value > 0):
            raise FineTuneError(
                f"Config key {key!r} is {text!r}: {pattern} has multiplier {number}; expected "
                f"a finite number > 0 (to keep a layer still, leave it out of "
                f"{TRAINABLE_KEY}).")
        for layer in _matching(pattern, layers, key, text):
            if layer in result and result[layer] != value:
                raise FineTuneError(f"Config key {key!r} is {text!r}: layer {layer} gets two "
                                    f"multipliers ({result[layer]:g} and {value:g}).")
            result[layer] = value
    return result


def check_layer_settings(config) -> None:
    """`alexnet_tf.config.validate`'s checks of the fine-tuning keys: the patterns
    against ``model.variant``'s layers, multipliers only for layers that train, and
    frozen layers only with ``model.init_from`` (without it they would keep their
    random initial weights). Raises FineTuneError."""
    m, t = config.model, config.train
    layers = layer_names(m.variant)
    trainable = select_layers(t.trainable_layers, layers)
    multipliers = parse_lr_multipliers(t.lr_multipliers, layers)
    frozen = [layer for layer in layers if layer not in trainable]
    if frozen and not m.init_from:
        raise FineTuneError(
            f"Config key {TRAINABLE_KEY!r} is {t.trainable_layers!r}, which freezes "
            f"{', '.join(frozen)}, but model.init_from is '': frozen layers would keep "
            f"their random initial weights. Set model.init_from to a model source, or "
            f"{TRAINABLE_KEY}=''.")
    still = [layer for layer in multipliers if layer not in trainable]
    if still:
        raise FineTuneError(
            f"Config key {MULTIPLIERS_KEY!r} is {t.lr_multipliers!r}, but {', '.join(still)} "
            f"do not train ({TRAINABLE_KEY}={t.trainable_layers!r}); a multiplier applies "
            f"to a layer that trains.")
    for key in ("init_from_flags_win", "init_from_new_head"):
        if m[key] and not m.init_from:
            raise FineTuneError(f"Config key 'model.{key}' is True, but model.init_from is "
                                f"''; expected False without a model source.")


# --------------------------------------------------------- adopting the source's values


def _same(a, b) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


def _get(config, key: str):
    group, name = key.split(".")
    return config[group][name]


def adopt(config, values: dict[str, Any], *, explicit: Collection[str], flags_win: bool,
          origin: str) -> tuple[list, list]:
    """Sets ``config``'s keys to a model source's ``values`` (``{"data.channel_order":
    "BGR", ...}``, `ModelSource.config_overrides`) in place. Returns ``(changed, kept)``:
    ``[(key, was, now)]`` for every key set to the source's value, and ``[(key, yours,
    source's)]`` for the user's values kept with ``flags_win``.

    The source's values replace the config file's. A key in ``explicit`` (the
    ``--config.*`` flags the user passed) whose value differs raises FineTuneError
    naming both values and ``origin``, unless ``flags_win``: then the user's value is
    kept (the source's weights then see another input, or another geometry, which
    `plan_seed` refuses when a weight shape changes)."""
    changed, kept, conflicts = [], [], []
    for key, value in values.items():
        current = _get(config, key)
        if _same(current, value):
            continue
        if key in explicit:
            if flags_win:
                kept.append((key, current, value))
            else:
                conflicts.append(f"--config.{key}={current!r} (the source has {value!r})")
            continue
        group, name = key.split(".")
        config[group][name] = tuple(value) if isinstance(value, list) else value
        changed.append((key, current, value))
    if conflicts:
        raise FineTuneError(
            f"model.init_from={config.model.init_from!r} ({origin}) fixes the input "
            f"convention and architecture its weights were trained with, and these flags "
            f"contradict it: {'; '.join(conflicts)}. Leave them out (the source's values are "
            f"adopted), or set --config.model.init_from_flags_win=True to keep yours.")
    return changed, kept


def adopt_from_saved_run(config, saved, *, explicit: Collection[str], flags_win: bool,
                         workdir: str) -> tuple[list, list]:
    """`adopt` for a run that resumes: the values its ``config.json`` (``saved``) holds
    for `SOURCE_KEYS`, i.e. what it adopted from its source when it started."""
    values = {key: _get(saved, key) for key in SOURCE_KEYS}
    return adopt(config, values, explicit=explicit, flags_win=flags_win,
                 origin=f"as adopted by the run in {workdir!r} when it started")


# -------------------------------------------------------------------- seeding a run


def expected_weight_shapes(model_config) -> dict[str, list[tuple[int, ...]]]:
    """``{weighted Keras layer: [weight shapes]}`` of the network ``model_config`` (a
    ``config.model`` section) builds, in `alexnet_tf.models.create_model`'s layout,
    from the geometry walk (`architecture.resolve_layers`) without building it: conv
    ``(k, k, in/groups, out)`` and bias ``(out,)`` (with BatchNorm: no bias, and
    ``conv<i>_bn`` with gamma, beta, moving mean and variance ``(out,)``); dense
    ``(in, out)`` and ``(out,)``."""
    m = model_config
    geometry = architecture.resolve_layers(m.variant, m.num_classes, m.image_size, m.width,
                                           m.groups)
    batchnorm = geometry.variant.normalization == "batchnorm"
    shapes: dict[str, list[tuple[int, ...]]] = {}
    for conv in geometry.convs:
        k = conv.kernel_size
        kernel = (k, k, conv.in_channels // conv.groups, conv.filters)
        shapes[conv.name] = [kernel] if batchnorm else [kernel, (conv.filters,)]
        if batchnorm:
            shapes[f"{conv.name}_bn"] = [(conv.filters,)] * 4
    fan_in = math.prod(geometry.flat_input)
    for i, units in enumerate(geometry.fc_units):
        shapes[f"fc{6 + i}"] = [(fan_in, units), (units,)]
        fan_in = units
    shapes[architecture.LOGITS_LAYER] = [(fan_in, m.num_classes), (m.num_classes,)]
    return shapes


def _fmt(shapes) -> str:
    return ", ".join(str(tuple(s)) for s in shapes) or "no weights"


def plan_transfer(source_shapes: dict, target_shapes: dict, *, new_head: bool,
                  origin: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Which Keras layers load the source's weights and which start fresh:
    ``(loaded, initialised)``, in the target's order.

    Every layer of the target must be in the source with the same weight shapes, except
    ``fc8`` when ``new_head`` (then it is initialised). Raises FineTuneError for any
    other difference (another variant, width, grouping, input size), naming the layer
    and both shapes."""
    head = architecture.LOGITS_LAYER
    problems = []
    for layer, shapes in target_shapes.items():
        if layer == head and new_head:
            continue
        theirs = source_shapes.get(layer)
        if theirs is None:
            problems.append(f"{layer}: the run has {_fmt(shapes)}, the source has no {layer}")
        elif [tuple(s) for s in theirs] != [tuple(s) for s in shapes]:
            problems.append(f"{layer}: the run has {_fmt(shapes)}, the source has "
                            f"{_fmt(theirs)}")
    extra = [layer for layer in source_shapes if layer not in target_shapes]
    problems += [f"{layer}: the source has {_fmt(source_shapes[layer])}, the run has no "
                 f"{layer}" for layer in extra]
    if problems:
        raise FineTuneError(
            f"The weights of {origin} do not fit the network this config builds:\n  "
            + "\n  ".join(problems)
            + "\nOnly fc8 may differ (model.num_classes); another variant, width, grouping "
              "or input size needs another source.")
    loaded = tuple(layer for layer in target_shapes if not (layer == head and new_head))
    initialised = (head,) if new_head else ()
    return loaded, initialised


@dataclasses.dataclass
class Seed:
    """What a fresh run starts from.

    Attributes:
      origin: the source, for logs (`ModelSource.description`).
      weights: ``{Keras layer: [NumPy arrays]}`` for the layers in ``loaded``; emptied
        once loaded (`load_layers`), so that the copy does not outlive its use.
      loaded: the Keras layers that take the source's weights.
      initialised: the layers that start from the variant's initialiser (``("fc8",)``
        for a new head, else ``()``).
      source_classes: the source's number of classes.
    """

    origin: str
    weights: dict
    loaded: tuple[str, ...]
    initialised: tuple[str, ...]
    source_classes: int


def new_head(config, source) -> bool:
    """Whether ``fc8`` starts fresh: ``model.num_classes`` differs from the source's,
    or ``model.init_from_new_head``."""
    return config.model.num_classes != source.num_classes or config.model.init_from_new_head


def plan_seed(config, source) -> Seed:
    """Loads ``source``'s weights (`ModelSource.load_model`) and checks them against the
    network ``config`` builds (`plan_transfer`), and that a new ``fc8`` is among the
    trainable layers (frozen, it would stay random). Writes nothing; raises
    FineTuneError."""
    head = new_head(config, source)
    target = expected_weight_shapes(config.model)
    theirs = expected_weight_shapes(source.model_config)
    plan_transfer(theirs, target, new_head=head, origin=source.description)  # cheap, first
    trainable = select_layers(config.train.trainable_layers, layer_names(config.model.variant))
    if head and architecture.LOGITS_LAYER not in trainable:
        raise FineTuneError(
            f"{TRAINABLE_KEY}={config.train.trainable_layers!r} freezes fc8, which starts "
            f"fresh ({config.model.num_classes} classes; {source.description} has "
            f"{source.num_classes}): it would keep its random initial weights. Add fc8 to "
            f"{TRAINABLE_KEY}.")
    model = source.load_model()
    weights = {layer.name: [w.numpy() for w in layer.weights]
               for layer in model.layers if layer.weights}
    del model
    actual = {name: [w.shape for w in arrays] for name, arrays in weights.items()}
    loaded, initialised = plan_transfer(actual, target, new_head=head,
                                        origin=source.description)
    return Seed(source.description, {k: weights[k] for k in loaded}, loaded, initialised,
                source.num_classes)


def load_layers(model, seed: Seed) -> int:
    """Sets the seed's layers of ``model`` to the source's weights (in the current
    ``tf.distribute`` scope: every replica's copy); returns the number of values
    loaded. Raises FineTuneError when a built layer's shapes differ from the plan's
    (a network that `expected_weight_shapes` describes wrongly)."""
    count = 0
    for name in seed.loaded:
        layer = model.get_layer(name)
        arrays = seed.weights[name]
        built = [tuple(w.shape) for w in layer.weights]
        if built != [tuple(a.shape) for a in arrays]:
            raise FineTuneError(f"Layer {name} was built with weight shapes {built}; the "
                                f"source's are {[tuple(a.shape) for a in arrays]}.")
        layer.set_weights(arrays)
        count += sum(a.size for a in arrays)
    seed.weights = {}
    return count


def freeze(model, trainable: Collection[str]) -> tuple[str, ...]:
    """Makes every weighted Keras layer of ``model`` whose `owning_layer` is not in
    ``trainable`` non-trainable (no gradient, no optimizer slot, no decay; BatchNorm in
    inference mode); returns the frozen layers' names."""
    frozen = []
    for layer in model.layers:
        if layer.weights and owning_layer(layer.name) not in trainable:
            layer.trainable = False
            frozen.append(layer.name)
    return tuple(frozen)
