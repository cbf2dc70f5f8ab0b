"""Pretrained AlexNet weights from Caffe and torchvision, converted to this package's models.

* `load_caffe_npy`: Caffe's bvlc_alexnet in its circulated ``.npy`` form -> the
  ``paper`` variant with Caffe's LRN constants; input BGR, mean-subtracted, 227x227.
* `load_torchvision`: torchvision's ``alexnet`` state_dict (``.pth``) -> the
  ``one_tower`` variant; input RGB, ImageNet mean/std, 224x224. Files need torch
  (``pip install torch``), imported only then.

Both return ``(keras.Model, WeightsInfo)`` (the input convention and model settings the
weights need); `save_converted` writes a converted-weights directory, `load_converted`
reads it.
Layouts, and the evidence for them, are in the modules' docstrings.
"""

from alexnet_tf.weights.caffe_npy import (
    CAFFE_LAYERS,
    caffe_weights_info,
    convert_caffe_weights,
    load_caffe_npy,
    read_caffe_npy,
)
from alexnet_tf.weights.convention import WeightsInfo, load_converted, save_converted
from alexnet_tf.weights.torchvision_pth import (
    TORCHVISION_KEYS,
    convert_torchvision_weights,
    load_torchvision,
    read_torchvision_state_dict,
    torchvision_weights_info,
)

__all__ = [
    "CAFFE_LAYERS",
    "TORCHVISION_KEYS",
    "WeightsInfo",
    "caffe_weights_info",
    "convert_caffe_weights",
    "convert_torchvision_weights",
    "load_caffe_npy",
    "load_converted",
    "load_torchvision",
    "read_caffe_npy",
    "read_torchvision_state_dict",
    "save_converted",
    "torchvision_weights_info",
]
