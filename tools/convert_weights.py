r"""Converts pretrained AlexNet weights to a .keras model plus its input convention.

    python tools/convert_weights.py --source=caffe --input=bvlc_alexnet.npy --output=runs/caffe_alexnet
    python tools/convert_weights.py --source=torchvision --input=alexnet-owt-7be5be79.pth --output=runs/tv_alexnet

Writes OUTPUT/model.keras, OUTPUT/input_convention.json and OUTPUT/weights_info.json
(`alexnet_tf.weights.save_converted`), then prints the config
overrides (``--config.key=value``) that make the data pipeline feed the model what its
weights expect. caffe: Caffe's bvlc_alexnet in the caffe-tensorflow .npy form (see
alexnet_tf/weights/caffe_npy.py); torchvision: torchvision's alexnet state_dict (needs
``pip install torch``).
"""

from absl import app, flags

_SOURCE = flags.DEFINE_enum("source", None, ["caffe", "torchvision"], "Where the weights come from.")
_INPUT = flags.DEFINE_string("input", None, "The weights file (.npy for caffe, .pth for torchvision).")
_OUTPUT = flags.DEFINE_string("output", None, "Directory for the converted model (model.keras, "
                              "input_convention.json, weights_info.json).")
_NUM_CLASSES = flags.DEFINE_integer("num_classes", None, "None: fc8's width in the file.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace existing files in --output.")
flags.mark_flags_as_required(["source", "input", "output"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from alexnet_tf import weights

    if _SOURCE.value == "caffe":
        model, info = weights.load_caffe_npy(_INPUT.value, num_classes=_NUM_CLASSES.value)
    else:
        model, info = weights.load_torchvision(_INPUT.value, num_classes=_NUM_CLASSES.value)
    model_path, convention_path = weights.save_converted(model, info, _OUTPUT.value,
                                                         overwrite=_OVERWRITE.value)
    print(f"Wrote {model_path} ({model.count_params():,} parameters) and {convention_path}.")
    print("Config overrides for these weights:")
    print("  " + " ".join(config_flag_overrides(info)))
    unset = [key for key, value in info.to_config_overrides().items() if value is None]
    if unset:
        print(f"  and leave {', '.join(unset)} unset (None, the default).")


def config_flag_overrides(info) -> list[str]:
    """``--config.key=value`` flags for the weights' non-None config overrides
    (config_flags cannot parse None)."""
    flags_out = []
    for key, value in info.to_config_overrides().items():
        if value is None:
            continue
        if isinstance(value, tuple):
            value = "(" + ",".join(repr(round(float(v), 8)) for v in value) + ")"
        flags_out.append(f"--config.{key}={value}")
    return flags_out


if __name__ == "__main__":
    app.run(main)
