"""The largest image the serving signatures accept by default (``alexnet-export
--max_pixels``, ``--max_aspect_ratio``; ``assets/export.json`` records the values an
export was written with).

The checks that apply them are in `alexnet_tf.export.input_checks`; the numbers live in
this module, which imports nothing, so that ``alexnet-export --help`` shows them as the
flags' defaults without importing TensorFlow.
"""

# 40 megapixels: 12-36 MP camera and phone photos pass; 10000x10000 does not. Decoding
# and the resize hold about 16 bytes per pixel (uint8 RGB, then float32),
# so one image in flight needs at most ~640 MB.
DEFAULT_MAX_PIXELS = 40_000_000
# The shorter side is resized to data.resize_size, so a 1x40,000,000 strip would become
# a 256x10^10 float image: refuse images longer than 50 times their width (or height).
DEFAULT_MAX_ASPECT_RATIO = 50
