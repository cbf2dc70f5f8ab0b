"""Looking inside a trained network: the analyses of the paper's Sec. 6.1, and training curves.

* `alexnet_tf.analysis.kernels`: the conv1 kernels as an image grid, the two towers
  apart (Fig. 3), and a colour-specificity score per kernel and per tower (the
  paper's observation that one tower's kernels are colour-agnostic and the other's
  colour-specific); `kernels.write_summaries` logs the grid to TensorBoard.
* `alexnet_tf.analysis.retrieval`: fc7 features of a dataset split, cached on disk,
  and the nearest training images of query images by Euclidean distance (Fig. 4).
* `alexnet_tf.analysis.curves`: a run's TensorBoard scalars (loss, top-1/top-5
  error, learning rate) read back and plotted into one PNG (needs matplotlib, the
  ``[plots]`` extra).
* `alexnet_tf.analysis.model_io`: the analyses' model from any model source
  (`alexnet_tf.model_source`: a run, a checkpoint, a ``.keras`` file, converted
  weights), with its input convention and data config.

Binaries: ``tools/show_kernels.py``, ``tools/retrieve.py``, ``tools/plot_curves.py``.
"""
