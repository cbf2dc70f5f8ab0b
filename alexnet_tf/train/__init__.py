"""Training: the loop (`alexnet_tf.train.loop.train_and_evaluate`), its hooks, the
optimizers, the distribution strategies and Sec. 3.2's tower placement.

Nothing is imported here, so that ``alexnet-train --help`` parses its flags before
TensorFlow starts.
"""
