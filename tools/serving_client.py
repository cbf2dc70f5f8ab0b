r"""Classifies image files with an exported AlexNet through TF Serving, or in-process.

    python tools/serving_client.py --rest=http://localhost:8501 cat.jpg dog.png
    python tools/serving_client.py --grpc=localhost:8500 cat.jpg
    python tools/serving_client.py --saved_model=exports/alexnet cat.jpg

Prints the top-5 classes of each image with their names and scores; a file that cannot
be read, decoded or classified gets its own error line on stderr (the others are still
answered) and the exit status 1. The same command is installed as ``alexnet-predict``;
its flags are in alexnet_tf/cli/predict.py, the client in alexnet_tf/serving/client.py,
and docs/SERVING.md shows how to start the server.
"""

import os
import sys

from alexnet_tf.cli import predict

if __name__ == "__main__":
    predict.run(name=os.path.basename(sys.argv[0]))
