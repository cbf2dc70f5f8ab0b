"""Serving the exported model with TensorFlow Serving.

* `alexnet_tf.serving.protocol`: TF Serving's wire formats, without a network: the REST
  predict API's JSON bodies (row and columnar, ``{"b64": ...}`` strings), and
  ``PredictRequest``/``PredictionLog`` messages of tensorflow-serving-api with the
  warmup file (a TFRecord file of PredictionLogs).
* `alexnet_tf.serving.client`: the ``alexnet-predict`` absl binary and its library
  functions (REST, gRPC through tensorflow-serving-api's stub, or the SavedModel
  in-process).

The export itself is `alexnet_tf.export`; docs/SERVING.md has the server commands.
"""
