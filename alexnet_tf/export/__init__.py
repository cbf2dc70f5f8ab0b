"""Any model source as a SavedModel for TensorFlow Serving (the ``alexnet-export`` binary
is `alexnet_tf.cli.export`; docs/SERVING.md has the server commands).

* `alexnet_tf.export.saved_model`: `export(source, export_dir)` writes
  ``EXPORT_DIR/<version>/`` (the SavedModel, its assets and TF Serving's warmup file) and
  ``<version>.keras`` for a run, a checkpoint, a ``.keras`` file or converted weights
  (`alexnet_tf.model_source`), in float32 or bfloat16 (`compute_copy`; what bfloat16
  promises: `BFLOAT16_PROBABILITY_TOLERANCE`, `BFLOAT16_FEATURE_RELATIVE_TOLERANCE`); versions on
  disk (`existing_versions`, `next_version`); a run's model as the export traces it
  (`restore_model`); `warmup_requests`.
* `alexnet_tf.export.module`: `ServingModule` and its signatures in one table
  (`SIGNATURE_TABLE` of `Signature` rows; `SIGNATURES`, the names): ``serving_default``
  (image bytes -> top-k classes, ids, names, scores, probabilities), ``pixels``,
  ``pixels_float``, ``features`` (fc7, Sec. 6.1).
* `alexnet_tf.export.input_checks`: the checks of every input before it is decoded
  (format, truncation, size read from the header: `header_size`, `check_encoded_image`).
* `alexnet_tf.export.limits`: the default input limits, `DEFAULT_MAX_PIXELS` and
  `DEFAULT_MAX_ASPECT_RATIO`, `DEFAULT_TOP_K`, `MAX_VERSION`, `COMPUTE_DTYPES`, and
  `check_export_values`, the one check of an export's version, top_k, limits and dtype
  (without TensorFlow: ``alexnet-export`` runs it before TensorFlow loads).

The names below are this package's API. Importing it imports no TensorFlow: each name
loads its module on first use (PEP 562), as ``alexnet_tf`` does, so that
``alexnet-export --help`` starts without it.
"""

from alexnet_tf._lazy import attach
from alexnet_tf.export.limits import DEFAULT_MAX_ASPECT_RATIO, DEFAULT_MAX_PIXELS

_LAZY = {
    **dict.fromkeys(
        ["EXPORT_INFO_FILENAME", "export", "compute_copy", "BFLOAT16_PROBABILITY_TOLERANCE",
         "BFLOAT16_FEATURE_RELATIVE_TOLERANCE", "existing_versions",
         "next_version", "restore_model", "warmup_images", "warmup_requests"],
        "alexnet_tf.export.saved_model"),
    **dict.fromkeys(
        ["ExportError", "ServingModule", "Signature", "SIGNATURE_TABLE", "SIGNATURES",
         "FEATURES_SIGNATURE", "FEATURES_INPUT", "FEATURES_OUTPUT", "build_serving_module"],
        "alexnet_tf.export.module"),
    **dict.fromkeys(["check_encoded_image", "header_size"],
                    "alexnet_tf.export.input_checks"),
}

__all__ = [*_LAZY, "DEFAULT_MAX_ASPECT_RATIO", "DEFAULT_MAX_PIXELS"]
__getattr__, __dir__ = attach(__name__, _LAZY)
