"""alexnet_tf: AlexNet (Krizhevsky et al. 2012) in TensorFlow 2 / Keras 3."""

from setuptools import find_packages, setup

setup(
    name="alexnet_tf",
    version="0.1.0",
    description="AlexNet as the paper describes it, and modernized, in TensorFlow 2 / Keras 3.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["alexnet_tf", "alexnet_tf.*"]),
    install_requires=[
        "tensorflow>=2.16,<3",
        "keras>=3.0,<4",
        "numpy>=1.26",
        "absl-py>=2.0",
        "ml-collections>=0.1.1",
        "pillow>=10.0",
        "tensorboard>=2.16",  # tf.summary needs it; TF 2.21 no longer installs it
        "tqdm>=4.60",  # progress bars of the data tools
        # TF Serving's protos (PredictRequest, PredictionLog: the export's warmup file) and
        # gRPC stub; it needs only tensorflow and grpcio.
        "tensorflow-serving-api>=2.16,<3",
    ],
    extras_require={
        # Each extra installs what its README path needs: tests/test_extras.py runs each
        # path where only what the extra installs (and what that declares) is importable.
        # ImageNet's devkit meta.mat (flat validation labels as ILSVRC2012 IDs).
        "imagenet": ["scipy>=1.10"],
        # Reading torchvision .pth weights (torch.load(weights_only=True)).
        "torch": ["torch>=1.13"],
        # Empty: tensorflow-serving-api and grpcio are core now; kept so that
        # `pip install -e .[serving]` goes on working.
        "serving": [],
        # Preparing TFDS builders (README: imagenet2012 from the ILSVRC-2012 tars) and reading
        # them (data.source="tfds"). tensorflow-datasets 4.9.10 imports importlib_resources
        # in every download_and_prepare of a builder it ships, but declares it only for
        # Python < 3.9 (tensorflow/datasets#11212; issue 15). Its `tfds` command would also
        # need apache-beam and mlcroissant (tensorflow/datasets#5463); they are left out:
        # apache-beam caps pillow < 13 and protobuf < 7, so README prepares in Python.
        "tfds": ["tensorflow-datasets>=4.9", "importlib_resources>=5.0"],
        # Training-curve plots (tools/plot_curves.py).
        "plots": ["matplotlib>=3.7"],
        # The benchmark environment (tools/benchmark.py --benchmark=model): torch runs the
        # PyTorch peer and PyTorch's side of each matmul peak. README installs the CPU
        # wheel (--extra-index-url https://download.pytorch.org/whl/cpu) and pins nothing
        # tighter, so that each machine takes the newest wheel it has.
        "bench": ["torch>=2.1"],
        # Every test's needs: the extras above but torch and bench (CI installs torch's CPU
        # wheel itself where it can; the torch tests skip without it), pytest and xdist (-n 2).
        "test": ["pytest>=8", "pytest-xdist>=3.5", "scipy>=1.10", "matplotlib>=3.7",
                 "tensorflow-datasets>=4.9", "importlib_resources>=5.0"],
    },
    entry_points={
        "console_scripts": [
            "alexnet-train=alexnet_tf.cli.train:run",
            "alexnet-eval=alexnet_tf.cli.eval:run",
            "alexnet-export=alexnet_tf.cli.export:run",
            "alexnet-predict=alexnet_tf.cli.predict:run",
            "alexnet-data-service=alexnet_tf.cli.data_service:run",
        ],
    },
)
