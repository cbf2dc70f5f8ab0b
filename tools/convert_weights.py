r"""Converts pretrained AlexNet weights to a model source: .keras model plus its input convention.

    python tools/convert_weights.py --source=caffe --input=bvlc_alexnet.npy --output=weights/caffe --class_names=synsets.txt
    python tools/convert_weights.py --source=torchvision --input=alexnet-owt-7be5be79.pth --output=weights/torchvision

Writes OUTPUT/model.keras, OUTPUT/input_convention.json, OUTPUT/weights_info.json
(`alexnet_tf.weights.save_converted`) and, with ``--class_names``, OUTPUT/classes.json:
a converted-weights directory, which every command takes as a model source
(`alexnet_tf.model_source`). fc8 is kept as the file has it (1000 ImageNet classes);
training with ``--config.model.init_from=OUTPUT`` replaces it for other classes. Then
prints the commands that use it, ready to paste into a shell: fine-tuning, evaluation,
export, and the config overrides the weights imply (which ``init_from`` adopts by itself).

caffe: Caffe's bvlc_alexnet in the caffe-tensorflow .npy form (see
alexnet_tf/weights/caffe_npy.py); torchvision: torchvision's alexnet state_dict (needs
``pip install torch``). ``--class_names``: one class name per line in output order, or
ImageNet's synsets file (lines like ``n01440764 tench, Tinca tinca``, in the order of the
1000 outputs, e.g. Caffe's ``synset_words.txt``): evaluation on ImageNet folders maps
folders to outputs by these ids.
"""

import os
import shlex

from absl import app, flags

from alexnet_tf.cli import app as cli_app

_SOURCE = flags.DEFINE_enum("source", None, ["caffe", "torchvision"], "Where the weights come from.")
_INPUT = flags.DEFINE_string("input", None, "The weights file (.npy for caffe, .pth for torchvision).")
_OUTPUT = flags.DEFINE_string("output", None, "Directory for the converted model (model.keras, "
                              "input_convention.json, weights_info.json, classes.json).")
_CLASS_NAMES = flags.DEFINE_string(
    "class_names", None, "Class names of fc8's outputs: one per line in output order, or a "
    "synsets file ('n01440764 tench, Tinca tinca' lines). Stored as OUTPUT/classes.json.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace existing files in --output.")
flags.mark_flags_as_required(["source", "input", "output"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from alexnet_tf import errors

    if not os.path.isfile(_INPUT.value):  # before TensorFlow loads
        raise errors.NotFoundError(f"--input={_INPUT.value!r} does not exist; expected the "
                                   f"weights file (.npy for caffe, .pth for torchvision).")
    from alexnet_tf import model_source, weights

    ids = names = None
    if _CLASS_NAMES.value:  # read first: a bad file stops before the long conversion
        ids, names = model_source.read_class_names(_CLASS_NAMES.value)
    if _SOURCE.value == "caffe":
        model, info = weights.load_caffe_npy(_INPUT.value)
    else:
        model, info = weights.load_torchvision(_INPUT.value)
    if ids is not None and len(ids) != info.num_classes:
        raise errors.UserError(f"--class_names={_CLASS_NAMES.value!r} names {len(ids)} "
                               f"classes; fc8 of {_INPUT.value!r} has {info.num_classes} "
                               f"outputs.")
    model_path, convention_path = weights.save_converted(
        model, info, _OUTPUT.value, overwrite=_OVERWRITE.value, class_names=ids,
        readable_names=names)
    print(f"Wrote {model_path} ({model.count_params():,} parameters, {info.num_classes} "
          f"classes{', named' if ids else ''}) and {convention_path}.")
    print(next_steps(_OUTPUT.value, info, has_class_names=ids is not None))


def next_steps(output: str, info, *, has_class_names: bool) -> str:
    """The commands that use the converted directory ``output``, each pasteable into
    bash as it is (every value quoted by `shlex.quote`); the words in capitals are
    the user's (their own data)."""
    source = shlex.quote(output)
    class_names = "" if has_class_names else " --class_names=SYNSETS_FILE"
    lines = [
        "Fine-tune on your images (DATA_DIR/train/<class>/*.jpg, DATA_DIR/val/<class>/*.jpg); "
        "init_from adopts the weights' input convention and architecture:",
        f"  alexnet-train --config=configs/finetune.py --config.model.init_from={source} "
        f"--config.data.source=image_folder --config.data.data_dir=DATA_DIR --workdir=runs/finetune",
        "Evaluate on ImageNet's validation folders (DATA_DIR/val/<wnid>/*.JPEG)"
        + (":" if has_class_names else ", naming the outputs' classes:"),
        f"  alexnet-eval --model={source} --data_dir=DATA_DIR --split=val{class_names}",
        "Export for TF Serving:",
        # One export base per model: two converted models under one base would become
        # versions 1 and 2 of one served model.
        f"  alexnet-export --model={source} --export_dir="
        f"{shlex.quote('exports/' + (os.path.basename(os.path.normpath(output)) or 'alexnet'))}"
        f"{class_names}",
        "The config overrides these weights imply (init_from sets them; for a config of "
        "your own without it):",
        "  " + " ".join(config_flag_overrides(info)),
    ]
    unset = [key for key, value in info.to_config_overrides().items()
             if value is None and key != "model.num_classes"]
    if unset:
        lines.append(f"  and leave {', '.join(unset)} unset (None, the default).")
    return "\n".join(lines)


def config_flag_overrides(info) -> list[str]:
    """``--config.key=value`` flags for the weights' non-None config overrides, each
    quoted for bash (`shlex.quote`): a tuple is written ``(a,b,c)``, which config_flags
    parses and bash would otherwise read as a subshell. ``model.num_classes`` is left
    out: fc8 is replaced for other classes (``init_from``), and a user's data sets it.
    (config_flags cannot parse None, so None values are left out too.)"""
    flags_out = []
    for key, value in info.to_config_overrides().items():
        if value is None or key == "model.num_classes":
            continue
        if isinstance(value, tuple):
            value = "(" + ",".join(repr(round(float(v), 8)) for v in value) + ")"
        flags_out.append(shlex.quote(f"--config.{key}={value}"))
    return flags_out


if __name__ == "__main__":
    cli_app.run(main, __name__)
