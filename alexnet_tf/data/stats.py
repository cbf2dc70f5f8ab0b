"""Per-dataset colour statistics: the mean (Sec. 2) and the RGB PCA for lighting (Sec. 4.1).

`compute_stats` streams once over images that already went through Sec. 2's geometry
(shorter side 256, central 256x256 crop) and returns a `DatasetStats`:

* ``mean_rgb``: per-channel mean, R, G, B on the 0..255 scale (what
  ``config.data.mean_rgb`` holds and `preprocess.normalize` subtracts);
* ``mean_image``: the per-pixel mean over the images, [S, S, 3] float32 on 0..255:
  Sec. 2's "mean activity over the training set";
* ``covariance``, ``eigval``, ``eigvec``: Sec. 4.1's "PCA on the set of RGB pixel
  values", over every pixel of every image.

The PCA quantities, precisely (this is what `preprocess.pca_lighting` expects):
  ``covariance`` is the 3x3 covariance of RGB pixel values scaled to [0, 1]
  (population normalisation, divided by the pixel count). ``eigval`` holds its
  eigenvalues, descending: variances, NOT their square roots. ``eigvec`` holds the
  unit eigenvectors as COLUMNS (``eigvec[:, i]`` belongs to ``eigval[i]``), in R, G,
  B row order. `preprocess.pca_lighting` adds ``eigvec @ (alpha * eigval) * 255`` on
  the 0..255 scale, i.e. ``eigvec @ (alpha * eigval)`` on the [0, 1] scale, exactly
  as fb.resnet.torch does with the widely used ImageNet values; feed it
  ``**stats.pca_lighting_kwargs()``.

Why variances and not square roots. The widely used ImageNet values (eigval 0.2175,
0.0188, 0.0045, first published in fb.resnet.torch without a derivation) are the
covariance eigenvalues of [0, 1] pixels: their sum, 0.2408, is the trace of the
covariance, which implies a per-channel standard deviation over all pixels of
(0.284, 0.276, 0.290), and pytorch/vision#1439 measured (0.2806, 0.2736, 0.2877) on
the ImageNet train set without resizing. Read as square roots, they would imply
0.126, less than even the mean per-image standard deviation (0.229, 0.224, 0.225,
pytorch/vision#1965). The same lineage's COCO values (CornerNet: eigval 0.2141788,
0.01817699, 0.00341571 and std 0.2886, 0.2741, 0.2781 from the same 5000 images,
princeton-vl/CornerNet-Lite#106) satisfy sum(eigval) = sum(std**2) = 0.23577 to seven
digits. Note that the paper's formula adds an eigenvalue (a variance) to a pixel
value, so the size of the shift depends on the pixel scale: these values only
reproduce the common recipe on the [0, 1] scale, which is why they are stored there.

Sign convention. Eigenvectors are defined up to sign; the published ImageNet ones
follow neither "first component negative" nor "largest component negative" (column
2 is (+0.7192, -0.0045, -0.6948)). They lie within 1 degree of the three opponent-
colour axes and point the same way as ``OPPONENT_AXES``: -(1, 1, 1) (darker),
(1, 0, -1) (red minus blue) and (1, -2, 1) (magenta minus green). `compute_stats`
flips each column so that its dot product with the matching opponent axis is
positive (`apply_sign_convention`); this reproduces the published ImageNet signs
exactly (and CornerNet's COCO ones, read in RGB order). If a column is (numerically)
orthogonal to its axis, its largest-magnitude component is made negative.

Streaming. Pixel sums for the means are exact integer sums (int64). The covariance
is merged batch by batch with Chan, Golub and LeVeque's pairwise update (1979): each
chunk's scatter matrix is computed around the chunk's own mean in float64 and merged
with ``delta delta^T n_a n_b / n``. This never forms E[x x^T] - mean mean^T, whose
cancellation would cost digits (pixel second moments are ~0.25 on [0, 1] while the
smallest ImageNet eigenvalue is 0.0045), and the result does not depend on how the
stream is batched beyond float64 rounding.

The file format (`DatasetStats.save`/`load`): ``stats.npz`` holds every field as an
array; ``stats.json`` beside it holds everything but the mean image, for people.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from typing import Any, Iterable, Optional

import numpy as np
from tqdm import tqdm

from alexnet_tf.errors import UserError

FORMAT_VERSION = 1

# Sec. 2 subtracts the mean image; this per-channel ImageNet mean (R, G, B on 0..255) is
# what most reimplementations subtract instead, and this package's default
# (`alexnet_tf.convention.InputConvention`, ``config.data.mean_rgb``).
IMAGENET_MEAN_RGB = (123.68, 116.78, 103.94)

# Sec. 4.1: eigen-decomposition of the ImageNet RGB covariance, widely used values
# (fb.resnet.torch) for pixels scaled to [0, 1] (eigenvectors are the columns).
IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009),
                       (-0.5808, -0.0045, -0.8140),
                       (-0.5836, -0.6948, 0.4203))

# Opponent-colour axes (R, G, B), the reference directions of the sign convention.
OPPONENT_AXES = np.array([[-1.0, 1.0, 1.0],
                          [-1.0, 0.0, -2.0],
                          [-1.0, -1.0, 1.0]])  # columns: luminance, red-blue, magenta-green

EIGVAL_CONVENTION = (
    "eigval: eigenvalues (variances, not square roots), descending, of the 3x3 covariance "
    "of RGB pixel values scaled to [0, 1] over all pixels of all images; eigvec: unit "
    "eigenvectors as columns, rows R, G, B, each signed to point along its opponent axis "
    "-(1,1,1), (1,0,-1), (1,-2,1); preprocess.pca_lighting adds eigvec @ (alpha * eigval) * 255 "
    "on the 0..255 scale")

# Every array in the .npz and its shape; "S" is the image size (the mean image is S x S).
_SHAPES = {
    "mean_rgb": (3,),
    "mean_image": ("S", "S", 3),
    "covariance": (3, 3),
    "eigval": (3,),
    "eigvec": (3, 3),
    "count": (),
    "pixels": (),
    "source": (),
    "mean_image_is_broadcast": (),
    "format_version": (),
}

# Chunk of images whose float64 pixels are held at once (8 x 256 x 256 x 3 x 8 B = 12 MiB).
_CHUNK_IMAGES = 8


class StatsFileError(UserError, ValueError):
    """A statistics file is missing a key or holds an array of the wrong shape."""


def apply_sign_convention(eigvec) -> np.ndarray:
    """Flips eigenvector columns so each points along its opponent axis (see module doc).

    Idempotent; leaves the published ImageNet eigenvectors unchanged.
    """
    eigvec = np.array(eigvec, dtype=np.float64)
    if eigvec.shape != (3, 3):
        raise ValueError(f"eigvec must have shape (3, 3), got {eigvec.shape}.")
    axes = OPPONENT_AXES / np.linalg.norm(OPPONENT_AXES, axis=0)
    for i in range(3):
        column = eigvec[:, i]
        dot = float(column @ axes[:, i])
        if abs(dot) > 1e-9:
            flip = dot < 0
        else:  # orthogonal to its axis: fall back to "largest-magnitude component negative"
            flip = column[np.argmax(np.abs(column))] > 0
        if flip:
            eigvec[:, i] = -column
    return eigvec


def eigen_decomposition(covariance) -> tuple[np.ndarray, np.ndarray]:
    """(eigval descending, eigvec columns with the sign convention) of a 3x3 covariance."""
    covariance = np.asarray(covariance, dtype=np.float64)
    eigval, eigvec = np.linalg.eigh((covariance + covariance.T) / 2)
    order = np.argsort(eigval)[::-1]
    # A rank-deficient covariance (e.g. grey images) can give -1e-19: clip to 0.
    eigval = np.maximum(eigval[order], 0.0)
    return eigval, apply_sign_convention(eigvec[:, order])


@dataclasses.dataclass
class DatasetStats:
    """Colour statistics of a dataset; see the module docstring for each quantity's scale.

    ``count`` is the number of images and ``pixels`` the number of pixels that went into
    the statistics (both 0 for `imagenet_defaults`, whose provenance is ``source``).
    ``mean_image_is_broadcast`` is True when ``mean_image`` is ``mean_rgb`` repeated at
    every pixel rather than a measured per-pixel mean.
    """

    mean_rgb: np.ndarray  # (3,) float64, R, G, B on 0..255
    mean_image: np.ndarray  # (S, S, 3) float32 on 0..255
    covariance: np.ndarray  # (3, 3) float64, pixels on [0, 1]
    eigval: np.ndarray  # (3,) float64, covariance eigenvalues (variances), descending
    eigvec: np.ndarray  # (3, 3) float64, eigenvectors as columns
    count: int
    pixels: int
    source: str
    mean_image_is_broadcast: bool = False

    @property
    def image_size(self) -> int:
        return int(self.mean_image.shape[0])

    def pca_lighting_kwargs(self) -> dict[str, Any]:
        """``eigval``/``eigvec`` as `preprocess.pca_lighting` takes them (plain tuples)."""
        return {"eigval": tuple(float(v) for v in self.eigval),
                "eigvec": tuple(tuple(float(v) for v in row) for row in self.eigvec)}

    def summary(self) -> dict[str, Any]:
        """Everything but the mean image, as JSON-ready values (the .json file)."""
        return {
            "format_version": FORMAT_VERSION,
            "source": self.source,
            "count": int(self.count),
            "pixels": int(self.pixels),
            "image_size": self.image_size,
            "mean_rgb": [float(v) for v in self.mean_rgb],
            "mean_rgb_scale": "0..255",
            "mean_image_is_broadcast": bool(self.mean_image_is_broadcast),
            "covariance": [[float(v) for v in row] for row in self.covariance],
            "eigval": [float(v) for v in self.eigval],
            "eigvec": [[float(v) for v in row] for row in self.eigvec],
            "pca_scale": "pixels in [0, 1]",
            "eigval_convention": EIGVAL_CONVENTION,
            "mean_image": "in the .npz only",
        }

    def save(self, path: str) -> tuple[str, str]:
        """Writes ``path`` (.npz, every field) and the .json beside it; returns both paths.

        Both are written to temporary names and renamed, so a reader never sees half a file.
        """
        path = os.fspath(path)
        if not path.endswith(".npz"):
            raise ValueError(f"Stats path {path!r} must end in .npz (a .json is written beside it).")
        _check_shapes(self._arrays(), path)
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        json_path = path[:-len(".npz")] + ".json"
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:  # a file object: np.savez would append ".npz" to a name
            np.savez(f, **self._arrays())
        os.replace(tmp, path)
        summary = self.summary()
        summary["written"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        with open(json_path + ".tmp", "w") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
        os.replace(json_path + ".tmp", json_path)
        return path, json_path

    def _arrays(self) -> dict[str, np.ndarray]:
        return {
            "mean_rgb": np.asarray(self.mean_rgb, np.float64),
            "mean_image": np.asarray(self.mean_image, np.float32),
            "covariance": np.asarray(self.covariance, np.float64),
            "eigval": np.asarray(self.eigval, np.float64),
            "eigvec": np.asarray(self.eigvec, np.float64),
            "count": np.asarray(self.count, np.int64),
            "pixels": np.asarray(self.pixels, np.int64),
            "source": np.asarray(str(self.source)),
            "mean_image_is_broadcast": np.asarray(bool(self.mean_image_is_broadcast)),
            "format_version": np.asarray(FORMAT_VERSION, np.int64),
        }

    @classmethod
    def load(cls, path: str, *, image_size: Optional[int] = None) -> "DatasetStats":
        """Reads a file written by `save`, checking every key's shape (and the image size).

        Raises `StatsFileError` naming the file, the key and the expected/actual shapes.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No stats file {path!r}; write one with "
                                    f"tools/dataset_stats.py --output={path}.")
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except (ValueError, OSError) as error:
            raise StatsFileError(f"{path!r} is not a readable .npz stats file: {error}") from error
        _check_shapes(arrays, path)
        if image_size is not None and arrays["mean_image"].shape[0] != image_size:
            raise StatsFileError(
                f"{path!r}: key 'mean_image' has shape {arrays['mean_image'].shape}, expected "
                f"({image_size}, {image_size}, 3) for image size {image_size}.")
        for key in ("mean_rgb", "mean_image", "covariance", "eigval", "eigvec"):
            if not np.all(np.isfinite(arrays[key])):
                raise StatsFileError(f"{path!r}: key {key!r} holds NaN or Inf values.")
        return cls(
            mean_rgb=arrays["mean_rgb"].astype(np.float64),
            mean_image=arrays["mean_image"].astype(np.float32),
            covariance=arrays["covariance"].astype(np.float64),
            eigval=arrays["eigval"].astype(np.float64),
            eigvec=arrays["eigvec"].astype(np.float64),
            count=int(arrays["count"]),
            pixels=int(arrays["pixels"]),
            source=str(arrays["source"]),
            mean_image_is_broadcast=bool(arrays["mean_image_is_broadcast"]),
        )


def load(path: str, *, image_size: Optional[int] = None) -> DatasetStats:
    """`DatasetStats.load`: reads and validates a stats .npz (for ``config.data.stats_file``)."""
    return DatasetStats.load(path, image_size=image_size)


def _check_shapes(arrays: dict, path: str) -> None:
    missing = [key for key in _SHAPES if key not in arrays]
    if missing:
        raise StatsFileError(f"{path!r}: missing key(s) {missing}; a stats file written by "
                             f"DatasetStats.save holds {sorted(_SHAPES)}.")
    for key, expected in _SHAPES.items():
        shape = tuple(np.shape(arrays[key]))
        if "S" in expected:
            ok = len(shape) == 3 and shape[0] == shape[1] and shape[2] == 3 and shape[0] > 0
            wanted = "(S, S, 3) for an image size S"
        else:
            ok = shape == expected
            wanted = str(expected)
        if not ok:
            raise StatsFileError(f"{path!r}: key {key!r} has shape {shape}, expected {wanted}.")


def imagenet_defaults(image_size: int = 256) -> DatasetStats:
    """The widely used ImageNet values (mean 123.68/116.78/103.94; fb.resnet.torch's PCA).

    No mean image was ever published with them: ``mean_image`` is ``mean_rgb`` broadcast
    to ``image_size`` x ``image_size`` and ``mean_image_is_broadcast`` is True.
    """
    eigval = np.array(IMAGENET_PCA_EIGVAL, np.float64)
    eigvec = np.array(IMAGENET_PCA_EIGVEC, np.float64)
    mean_rgb = np.array(IMAGENET_MEAN_RGB, np.float64)
    return DatasetStats(
        mean_rgb=mean_rgb,
        mean_image=np.broadcast_to(mean_rgb.astype(np.float32), (image_size, image_size, 3)).copy(),
        # Rebuilt from the 4-digit published values, so only as exact as they are.
        covariance=eigvec @ np.diag(eigval) @ eigvec.T,
        eigval=eigval,
        eigvec=eigvec,
        count=0,
        pixels=0,
        source=("ImageNet, widely used values: mean_rgb of most reimplementations; PCA from "
                "fb.resnet.torch (datasets/imagenet.lua); mean_image broadcast from mean_rgb"),
        mean_image_is_broadcast=True,
    )


def select_subset(num_images: int, max_images: Optional[int], seed: int) -> np.ndarray:
    """Sorted indices of a seeded uniform random subset of ``max_images`` of ``num_images``.

    All indices when ``max_images`` is None, 0 or at least ``num_images``.
    """
    if not max_images or max_images >= num_images:
        return np.arange(num_images)
    if max_images < 0:
        raise ValueError(f"max_images must be >= 0, got {max_images}.")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_images, size=max_images, replace=False))


class _Accumulator:
    """Exact pixel sums and a Chan-merged covariance, fed [N, S, S, 3] uint8 chunks."""

    def __init__(self, image_size: int):
        self.image_size = image_size
        self.count = 0
        self.pixel_sum = np.zeros((image_size, image_size, 3), np.int64)  # exact
        self.n = 0  # pixels in the covariance so far
        self.mean = np.zeros(3)  # running mean on [0, 1]
        self.scatter = np.zeros((3, 3))  # sum of (x - mean)(x - mean)^T on [0, 1]

    def add(self, batch: np.ndarray) -> None:
        for start in range(0, len(batch), _CHUNK_IMAGES):
            self._add_chunk(batch[start:start + _CHUNK_IMAGES])

    def _add_chunk(self, chunk: np.ndarray) -> None:
        self.count += len(chunk)
        self.pixel_sum += chunk.sum(axis=0, dtype=np.int64)
        x = chunk.reshape(-1, 3).astype(np.float64) / 255.0
        n_b = len(x)
        mean_b = x.mean(axis=0)
        x -= mean_b
        scatter_b = x.T @ x
        n = self.n + n_b
        delta = mean_b - self.mean
        self.scatter += scatter_b + np.outer(delta, delta) * (self.n * n_b / n)
        self.mean += delta * (n_b / n)
        self.n = n

    def result(self, source: str) -> DatasetStats:
        if self.count == 0:
            raise ValueError("compute_stats got no images.")
        pixels = self.count * self.image_size * self.image_size
        mean_image = self.pixel_sum / self.count
        mean_rgb = self.pixel_sum.sum(axis=(0, 1)) / pixels
        covariance = self.scatter / self.n
        eigval, eigvec = eigen_decomposition(covariance)
        return DatasetStats(mean_rgb=mean_rgb, mean_image=mean_image.astype(np.float32),
                            covariance=covariance, eigval=eigval, eigvec=eigvec,
                            count=self.count, pixels=pixels, source=source)


def _batches(images) -> Iterable[np.ndarray]:
    """Yields uint8 arrays of shape [N, H, W, 3] from images, batches, tensors or a Dataset."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        yield images
        return
    if isinstance(images, np.ndarray) and images.ndim == 3 and images.shape[-1] == 3:
        raise ValueError(f"compute_stats takes an iterable of images or a [N, H, W, 3] array; "
                         f"got one array of shape {images.shape}: wrap a single image in a list.")
    try:
        import tensorflow as tf  # deferred: only a tf.data input needs it here

        if isinstance(images, tf.data.Dataset):
            images = images.as_numpy_iterator()
    except ImportError:  # pragma: no cover - TensorFlow is a dependency of the package
        pass
    for element in images:
        array = element.numpy() if hasattr(element, "numpy") else np.asarray(element)
        if array.ndim == 3:
            array = array[None]
        yield array


def compute_stats(images, *, total: Optional[int] = None, image_size: int = 256,
                  source: str = "", progress: bool = True) -> DatasetStats:
    """Mean, mean image and RGB PCA of uint8 images already resized and cropped (Sec. 2).

    ``images``: an iterable of uint8 [S, S, 3] images or [B, S, S, 3] batches (numpy or
    tf tensors, mixed sizes of batch allowed), a [N, S, S, 3] array, or a
    ``tf.data.Dataset`` yielding either; S is ``image_size``. ``total`` (images) sizes
    the tqdm bar. ``source`` describes the data in the result. See the module docstring
    for the scale and convention of every quantity.
    """
    if total is None and isinstance(images, np.ndarray) and images.ndim == 4:
        total = len(images)
    accumulator = _Accumulator(image_size)
    expected = (image_size, image_size, 3)
    with tqdm(total=total, unit="img", desc="colour stats", disable=not progress) as bar:
        for batch in _batches(images):
            if batch.ndim != 4 or batch.shape[1:] != expected:
                raise ValueError(f"compute_stats expects uint8 images of shape {expected} "
                                 f"(resized and centre-cropped, Sec. 2), got shape "
                                 f"{batch.shape[1:] if batch.ndim == 4 else batch.shape}.")
            if batch.dtype != np.uint8:
                raise ValueError(f"compute_stats expects uint8 images on 0..255, got dtype "
                                 f"{batch.dtype}.")
            accumulator.add(batch)
            bar.update(len(batch))
    return accumulator.result(source or f"{accumulator.count} images of {image_size}x{image_size}")
