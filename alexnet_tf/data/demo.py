"""An embedded demo image-classification dataset that needs no download.

The demo dataset lets the project's training code run end to end (JPEG files on
disk, the real file-reading input pipeline, a small AlexNet, evaluation) on any
machine, in minutes and without network access. It is generated procedurally and
deterministically from a seed and written in the same layout real datasets use::

    ROOT/MANIFEST.json
    ROOT/train/<class_name>/<class_name>_00000.jpg ...
    ROOT/val/<class_name>/<class_name>_00000.jpg ...

It has ten classes (`CLASS_NAMES`) that differ in visual *structure* (shapes and
periodic textures), while everything a classifier should not rely on is random per
image: foreground and background colours (always with a clear brightness contrast,
from the same distribution for every class, so colour says nothing about the
class), object size and position, stripe period and phase, rotation, a smooth
illumination ramp and pixel noise. Every class is closed under horizontal flips, so
flip augmentation never turns an image of one class into something that looks like
another. Objects stay mostly inside the central region, because training takes
random crops (about 67x67 of the default 76x76 images).

A second set, ``transfer`` (`TRANSFER_CLASS_NAMES`: six classes none of which is among
the ten, e.g. stars, crescents, square frames, zigzags), comes from the same drawing
code and the same colour, illumination and noise model. With a few images per class it
is the transfer demo (configs/demo_finetune.py): a network trained on the ten classes
is fine-tuned on it, as the paper fine-tunes its Fall 2011 network on ILSVRC-2012
(Sec. 6). `SETS` maps each set's name to its classes; ``demo_set`` picks one.

Every image is drawn from its own random generator, seeded by
``(seed, split, class, index)``, so an image does not depend on how many images are
generated or in which order, and the same seed always gives byte-identical files
(for a given Pillow/libjpeg build).

To (re)generate the dataset by hand, e.g. to look at the images::

    python -m alexnet_tf.data.demo --root=/tmp/alexnet_demo [--seed=0] [--set=transfer]

Programs should call `ensure_demo_dataset`, which only regenerates when the
dataset on disk is missing or was written with different parameters.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import os
import pathlib
import shutil
import tempfile
import time
from typing import Callable

import numpy as np
from absl import logging
from PIL import Image

__all__ = [
    "CLASS_NAMES",
    "SETS",
    "TRANSFER_CLASS_NAMES",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "SPLITS",
    "ensure_demo_dataset",
    "generate_image",
    "write_demo_dataset",
]

# Bump whenever the drawing code or the layout changes, so that `ensure_demo_dataset`
# regenerates datasets written by older code instead of silently reusing them.
FORMAT_VERSION = 1
MANIFEST_NAME = "MANIFEST.json"
SPLITS = ("train", "val")
_FORMAT = "alexnet_tf.data.demo"

# Shapes are rasterised at this many samples per pixel along each axis and
# box-filtered down: anti-aliased edges look like photographs of objects rather than
# staircases, and fine periodic textures do not alias into moire patterns.
_SUPERSAMPLE = 4

# Minimum difference in luma (ITU-R BT.601, 0..255) between the two colours, so the
# structure is always visible in grey scale whatever the hues are.
_MIN_LUMA_CONTRAST = 70.0
_LUMA = np.array([0.299, 0.587, 0.114])

_MIN_IMAGE_SIZE = 32

# The datasets this process has already reported (written, or found up to date), by
# (resolved root, parameters, set): a training run asks for its train and its eval
# split in turn, each through `ensure_demo_dataset`, and the user needs to hear once.
_REPORTED: set[tuple] = set()


# --------------------------------------------------------------------------------
# Drawing. Each class has a function that draws the random parameters of one image
# from `rng` and returns a `_Mask`: a function of pixel-centre coordinates (x, y),
# in output pixels, that says which points belong to the foreground. Sizes are
# fractions of the image size `s`, so the dataset looks the same at any resolution.
# --------------------------------------------------------------------------------

_Mask = Callable[[np.ndarray, np.ndarray], np.ndarray]

# Rasterisation works on horizontal strips whose float32 temporaries stay below
# glibc's default mmap threshold (128 KiB): whole-image temporaries would each be
# a fresh mmap and page-faulted in, which doubles the generation time.
_STRIP_BYTES = 64 * 1024


@functools.lru_cache(maxsize=8)
def _grid(image_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Supersampled pixel-centre coordinates and the box filter that undoes them.

    Returns ``(x, y, box)``: `x` has shape ``(1, n)`` and `y` ``(n, 1)`` for
    ``n = image_size * _SUPERSAMPLE``, so expressions in them broadcast to 2-D only
    where needed; ``box @ mask @ box.T`` averages each pixel's samples. `box` is
    block diagonal, so its top-left corner filters a strip of any height.
    """
    n = image_size * _SUPERSAMPLE
    coords = (np.arange(n, dtype=np.float32) + 0.5) / _SUPERSAMPLE
    box = np.kron(np.eye(image_size, dtype=np.float32),
                  np.full((1, _SUPERSAMPLE), 1.0 / _SUPERSAMPLE, dtype=np.float32))
    x, y = coords[None, :], coords[:, None].copy()
    for a in (x, y, box):
        # Cached and shared between calls: make accidental in-place edits fail.
        a.setflags(write=False)
    return x, y, box


def _rasterise(mask: _Mask, image_size: int) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of `mask`, shape (image_size, image_size)."""
    x, y, box = _grid(image_size)
    n = x.shape[1]
    rows = max(1, _STRIP_BYTES // (4 * n * _SUPERSAMPLE))  # Output rows per strip.
    alpha = np.empty((image_size, image_size), dtype=np.float32)
    for top in range(0, image_size, rows):
        bottom = min(top + rows, image_size)
        k = bottom - top
        inside = mask(x, y[top * _SUPERSAMPLE:bottom * _SUPERSAMPLE])
        # The sums of 0/1 samples times 1/_SUPERSAMPLE are exact in float32.
        alpha[top:bottom] = box[:k, :k * _SUPERSAMPLE] @ inside.astype(np.float32) @ box.T
    return alpha


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    # A Python float, not np.float64: NumPy 2 would promote the float32 coordinate
    # arrays to float64 when combined with a NumPy scalar, doubling drawing time.
    return float(rng.uniform(low, high))


def _rotate(dx, dy, angle: float):
    c, si = math.cos(angle), math.sin(angle)
    return dx * c + dy * si, dy * c - dx * si


def _centre(rng: np.random.Generator, s: int) -> tuple[float, float]:
    # +-8% of the size keeps objects inside the region that every random crop
    # (67 of 76 pixels, i.e. up to 12% cut off on one side) still shows.
    return s * (0.5 + _uniform(rng, -0.08, 0.08)), s * (0.5 + _uniform(rng, -0.08, 0.08))


def _texture_region(rng: np.random.Generator, s: int) -> Callable:
    """The rectangle a texture is confined to, as a mask of (x, y)."""
    # The texture covers the image up to a random margin on each side, so its extent
    # varies but it always fills the centre that every crop shows.
    left, top, right, bottom = (float(m) * s for m in rng.uniform(0.0, 0.18, size=4))
    return lambda x, y: ((x >= left) & (x < s - right)) & ((y >= top) & (y < s - bottom))


def _frac(t: np.ndarray) -> np.ndarray:
    # Much faster than np.mod(t, 1.0) for float arrays.
    return t - np.floor(t)


def _disk(rng: np.random.Generator, s: int) -> _Mask:
    cx, cy = _centre(rng, s)
    r2 = (s * _uniform(rng, 0.16, 0.30)) ** 2
    return lambda x, y: (x - cx) ** 2 + (y - cy) ** 2 <= r2


def _ring(rng: np.random.Generator, s: int) -> _Mask:
    cx, cy = _centre(rng, s)
    outer = s * _uniform(rng, 0.20, 0.32)
    # A hole of at least 45% of the radius keeps rings unmistakable from disks even
    # after downscaling by the network's first strided layers.
    inner = outer * _uniform(rng, 0.45, 0.70)

    def mask(x, y):
        d2 = (x - cx) ** 2 + (y - cy) ** 2
        return (d2 <= outer * outer) & (d2 >= inner * inner)
    return mask


def _square(rng: np.random.Generator, s: int) -> _Mask:
    cx, cy = _centre(rng, s)
    # Any rotation is still a square (90-degree symmetry covers the full range).
    angle = _uniform(rng, 0.0, math.pi / 2)
    half = s * _uniform(rng, 0.14, 0.26)

    def mask(x, y):
        u, v = _rotate(x - cx, y - cy, angle)
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    return mask


def _triangle(rng: np.random.Generator, s: int) -> _Mask:
    cx, cy = _centre(rng, s)
    # Equilateral, any orientation (120-degree symmetry covers the full range).
    angle = _uniform(rng, 0.0, 2 * math.pi / 3)
    inradius = s * _uniform(rng, 0.20, 0.34) / 2  # Half the circumradius.
    normals = [(math.cos(a), math.sin(a))
               for a in (angle + math.pi / 2 + 2 * math.pi * k / 3 for k in range(3))]

    def mask(x, y):
        dx, dy = x - cx, y - cy
        inside = [dx * nx + dy * ny <= inradius for nx, ny in normals]
        return inside[0] & inside[1] & inside[2]
    return mask


def _cross(rng: np.random.Generator, s: int) -> _Mask:
    cx, cy = _centre(rng, s)
    # Kept near upright: rotated by 45 degrees a plus sign reads as an "x".
    angle = math.radians(_uniform(rng, -15.0, 15.0))
    arm = s * _uniform(rng, 0.18, 0.32)
    half_width = arm * _uniform(rng, 0.20, 0.35)

    def mask(x, y):
        u, v = _rotate(x - cx, y - cy, angle)
        au, av = np.abs(u), np.abs(v)
        return ((au <= arm) & (av <= half_width)) | ((au <= half_width) & (av <= arm))
    return mask


def _stripes(rng: np.random.Generator, s: int, angle_deg: float) -> _Mask:
    # `angle_deg` is the direction of the stripes' normal: 0 gives vertical stripes.
    region = _texture_region(rng, s)
    angle = math.radians(angle_deg)
    period = s * _uniform(rng, 0.10, 0.22)
    duty = _uniform(rng, 0.35, 0.65)
    phase = _uniform(rng, 0.0, 1.0)
    cu, su = math.cos(angle) / period, math.sin(angle) / period
    return lambda x, y: (_frac(x * cu + y * su + phase) < duty) & region(x, y)


def _horizontal_stripes(rng: np.random.Generator, s: int) -> _Mask:
    return _stripes(rng, s, 90.0 + _uniform(rng, -12.0, 12.0))


def _vertical_stripes(rng: np.random.Generator, s: int) -> _Mask:
    return _stripes(rng, s, _uniform(rng, -12.0, 12.0))


def _diagonal_stripes(rng: np.random.Generator, s: int) -> _Mask:
    # Both diagonals: a horizontal flip maps one onto the other, so the class has to
    # contain both to be closed under flip augmentation.
    direction = 45.0 if rng.random() < 0.5 else 135.0
    return _stripes(rng, s, direction + _uniform(rng, -10.0, 10.0))


def _checkerboard(rng: np.random.Generator, s: int) -> _Mask:
    region = _texture_region(rng, s)
    angle = math.radians(_uniform(rng, -12.0, 12.0))
    cell = s * _uniform(rng, 0.07, 0.14)
    pu, pv = (float(p) for p in rng.uniform(0.0, 1.0, size=2))
    scale = 0.5 / cell  # In units of two cells, one period.

    def mask(x, y):
        u, v = _rotate(x, y, angle)
        # A cell's colour is whether it lies in the same half-period along both axes.
        return ((_frac(u * scale + pu) < 0.5) == (_frac(v * scale + pv) < 0.5)) & region(x, y)
    return mask


def _dot_grid(rng: np.random.Generator, s: int) -> _Mask:
    region = _texture_region(rng, s)
    angle = math.radians(_uniform(rng, -12.0, 12.0))
    spacing = s * _uniform(rng, 0.12, 0.22)
    # Dots cover well under half of each cell, so the grid cannot be mistaken for a
    # checkerboard of round-ish cells. In units of the spacing:
    radius = _uniform(rng, 0.22, 0.34)
    pu, pv = (float(p) for p in rng.uniform(0.0, 1.0, size=2))

    def mask(x, y):
        u, v = _rotate(x, y, angle)
        du = _frac(u * (1.0 / spacing) + pu) - 0.5
        dv = _frac(v * (1.0 / spacing) + pv) - 0.5
        return (du * du + dv * dv <= radius * radius) & region(x, y)
    return mask


_DRAWERS: dict[str, Callable[[np.random.Generator, int], _Mask]] = {
    "checkerboard": _checkerboard,
    "cross": _cross,
    "diagonal_stripes": _diagonal_stripes,
    "disk": _disk,
    "dot_grid": _dot_grid,
    "horizontal_stripes": _horizontal_stripes,
    "ring": _ring,
    "square": _square,
    "triangle": _triangle,
    "vertical_stripes": _vertical_stripes,
}

# Sorted, because readers of the on-disk layout number classes by sorted folder name.
CLASS_NAMES: tuple[str, ...] = tuple(sorted(_DRAWERS))


# The transfer set's classes: structures the ten classes do not have, each closed under
# horizontal flips as they are.


def _crescent(rng: np.random.Generator, s: int) -> _Mask:
    cx, cy = _centre(rng, s)
    radius = s * _uniform(rng, 0.20, 0.30)
    # A second disk, shifted in any direction, bites out most of the first one: the
    # mirror image of a crescent is a crescent pointing the other way.
    angle = _uniform(rng, 0.0, 2 * math.pi)
    shift = radius * _uniform(rng, 0.35, 0.55)
    bx, by = cx + shift * math.cos(angle), cy + shift * math.sin(angle)
    r2, b2 = radius ** 2, (radius * _uniform(rng, 0.80, 0.95)) ** 2
    return lambda x, y: ((x - cx) ** 2 + (y - cy) ** 2 <= r2) & ((x - bx) ** 2 + (y - by) ** 2 > b2)


def _line_grid(rng: np.random.Generator, s: int) -> _Mask:
    region = _texture_region(rng, s)
    angle = math.radians(_uniform(rng, -12.0, 12.0))
    spacing = s * _uniform(rng, 0.14, 0.24)
    # Thin lines in both directions: unlike the checkerboard, most of each cell is
    # background; unlike the dot grid, the foreground is connected.
    width = _uniform(rng, 0.16, 0.26)
    pu, pv = (float(p) for p in rng.uniform(0.0, 1.0, size=2))

    def mask(x, y):
        u, v = _rotate(x, y, angle)
        return (((_frac(u * (1.0 / spacing) + pu) < width)
                 | (_frac(v * (1.0 / spacing) + pv) < width)) & region(x, y))
    return mask


def _square_frame(rng: np.random.Generator, s: int) -> _Mask:
    cx, cy = _centre(rng, s)
    angle = _uniform(rng, 0.0, math.pi / 2)
    outer = s * _uniform(rng, 0.18, 0.28)
    # The hole leaves a frame as wide as a ring's band, so the class is "a square
    # outline", not "a square".
    inner = outer * _uniform(rng, 0.50, 0.70)

    def mask(x, y):
        u, v = _rotate(x - cx, y - cy, angle)
        au, av = np.abs(u), np.abs(v)
        return (au <= outer) & (av <= outer) & ((au > inner) | (av > inner))
    return mask


def _star(rng: np.random.Generator, s: int) -> _Mask:
    cx, cy = _centre(rng, s)
    # Five points in any orientation (72-degree symmetry covers the full range; a star
    # is its own mirror image).
    angle = _uniform(rng, 0.0, 2 * math.pi / 5)
    outer = s * _uniform(rng, 0.24, 0.34)
    inner = outer * _uniform(rng, 0.40, 0.50)
    half = math.pi / 5  # half the angle between two points
    # The edge from a point (outer, 0) to the next inner corner (inner, half), in the
    # polar frame of one point's sector: inside is the origin's side of it.
    ex, ey = inner * math.cos(half) - outer, inner * math.sin(half)

    def mask(x, y):
        dx, dy = x - cx, y - cy
        phi = np.arctan2(dy, dx) - angle
        local = np.abs(_frac(phi * (1.0 / (2 * half)) + 0.5) * (2 * half) - half)
        d = np.sqrt(dx * dx + dy * dy)
        px, py = d * np.cos(local), d * np.sin(local)
        return ex * py - ey * (px - outer) >= 0
    return mask


def _diagonal_cross(rng: np.random.Generator, s: int) -> _Mask:
    # The cross class turned by 45 degrees: an "x", never read as the upright "+"
    # (the cross class stays within 15 degrees of upright, this one within 15 of 45).
    cx, cy = _centre(rng, s)
    angle = math.radians(45.0 + _uniform(rng, -15.0, 15.0))
    arm = s * _uniform(rng, 0.18, 0.32)
    half_width = arm * _uniform(rng, 0.20, 0.35)

    def mask(x, y):
        u, v = _rotate(x - cx, y - cy, angle)
        au, av = np.abs(u), np.abs(v)
        return ((au <= arm) & (av <= half_width)) | ((au <= half_width) & (av <= arm))
    return mask


def _zigzag(rng: np.random.Generator, s: int) -> _Mask:
    # Horizontal bands bent into a zigzag: a triangle wave along x shifts their phase.
    # A mirror image is the same zigzag with another phase.
    region = _texture_region(rng, s)
    period = s * _uniform(rng, 0.14, 0.24)
    wavelength = s * _uniform(rng, 0.20, 0.35)
    amplitude = _uniform(rng, 0.6, 1.0)  # in periods: clearly bent, never flat stripes
    duty = _uniform(rng, 0.40, 0.60)
    pu, pv = (float(p) for p in rng.uniform(0.0, 1.0, size=2))

    def mask(x, y):
        triangle = np.abs(2.0 * _frac(x * (1.0 / wavelength) + pu) - 1.0)
        return (_frac(y * (1.0 / period) + amplitude * triangle + pv) < duty) & region(x, y)
    return mask


_TRANSFER_DRAWERS: dict[str, Callable[[np.random.Generator, int], _Mask]] = {
    "crescent": _crescent,
    "diagonal_cross": _diagonal_cross,
    "line_grid": _line_grid,
    "square_frame": _square_frame,
    "star": _star,
    "zigzag": _zigzag,
}
TRANSFER_CLASS_NAMES: tuple[str, ...] = tuple(sorted(_TRANSFER_DRAWERS))
# demo set name -> its classes (alexnet_tf.config.DEMO_SETS names the same sets).
SETS: dict[str, tuple[str, ...]] = {"shapes": CLASS_NAMES, "transfer": TRANSFER_CLASS_NAMES}
_ALL_DRAWERS = {**_DRAWERS, **_TRANSFER_DRAWERS}
# The index of a set in the seed of its images: the shapes set's seeds are the ones
# earlier versions used, so its files stay byte-identical.
_SET_SEED = {"shapes": (), "transfer": (1,)}


def _two_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    # Both colours come from the same distribution and the contrast condition is
    # symmetric, so which one is the foreground carries no information either.
    while True:
        a, b = rng.uniform(0.0, 255.0, size=(2, 3)).astype(np.float32)
        if abs(float(_LUMA @ a) - float(_LUMA @ b)) >= _MIN_LUMA_CONTRAST:
            return a, b


def generate_image(class_name: str, rng: np.random.Generator,
                   image_size: int = 76) -> np.ndarray:
    """Draws one random image of the demo class `class_name`.

    Args:
      class_name: one of `CLASS_NAMES` or `TRANSFER_CLASS_NAMES`.
      rng: the source of all randomness; the result is a deterministic function of
        its state (and of `class_name` and `image_size`).
      image_size: height and width in pixels, at least 32.

    Returns:
      A ``(image_size, image_size, 3)`` uint8 RGB array.

    Raises:
      ValueError: for an unknown class name or a bad image size.
    """
    if class_name not in _ALL_DRAWERS:
        raise ValueError(
            f"Unknown demo class name {class_name!r}; expected one of {list(CLASS_NAMES)} "
            f"(set 'shapes') or {list(TRANSFER_CLASS_NAMES)} (set 'transfer').")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (e.g. np.random.default_rng(0)), "
            f"got {type(rng).__name__}.")
    s = _check_int("image_size", image_size, minimum=_MIN_IMAGE_SIZE)

    foreground, background = _two_colours(rng)
    alpha = _rasterise(_ALL_DRAWERS[class_name](rng, s), s)[..., None]
    image = background + (foreground - background) * alpha

    # A smooth illumination ramp in a random direction (up to +-20 grey levels at the
    # edges) so that flat colour regions are not perfectly flat.
    strength = _uniform(rng, 0.0, 40.0)
    direction = _uniform(rng, 0.0, 2 * math.pi)
    coords = (np.arange(s, dtype=np.float32) + 0.5) / s - 0.5
    ramp = (coords[None, :] * (strength * math.cos(direction))
            + coords[:, None] * (strength * math.sin(direction)))
    image += ramp[..., None]

    noise = rng.standard_normal(size=image.shape, dtype=np.float32)
    image += noise * _uniform(rng, 2.0, 8.0)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------
# Writing the dataset.
# --------------------------------------------------------------------------------


def _check_int(name: str, value, *, minimum: int, maximum: int | None = None) -> int:
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok:
        value = int(value)
        ok = value >= minimum and (maximum is None or value <= maximum)
    if not ok:
        expected = (f"an integer in [{minimum}, {maximum}]" if maximum is not None
                    else f"an integer >= {minimum}")
        raise ValueError(f"{name} must be {expected}, got {value!r}.")
    return value


def _params(seed, train_per_class, val_per_class, image_size, jpeg_quality) -> dict:
    return {
        "seed": _check_int("seed", seed, minimum=0),
        "train_per_class": _check_int("train_per_class", train_per_class, minimum=1),
        "val_per_class": _check_int("val_per_class", val_per_class, minimum=1),
        "image_size": _check_int("image_size", image_size, minimum=_MIN_IMAGE_SIZE),
        "jpeg_quality": _check_int("jpeg_quality", jpeg_quality, minimum=1, maximum=100),
    }


def _check_set(demo_set) -> tuple[str, ...]:
    """The classes of the demo set ``demo_set``, or ValueError naming the sets."""
    if demo_set not in SETS:
        raise ValueError(f"demo_set must be one of {list(SETS)}, got {demo_set!r}.")
    return SETS[demo_set]


def _file_name(class_name: str, index: int) -> str:
    return f"{class_name}_{index:05d}.jpg"


def _read_manifest(root: pathlib.Path) -> dict | None:
    """The manifest of a demo dataset at `root`, or None if `root` is not one."""
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
        return None
    return manifest


def _is_complete(root: pathlib.Path, params: dict, demo_set: str = "shapes") -> bool:
    """Whether `root` holds the demo set `demo_set` written with exactly `params`."""
    manifest = _read_manifest(root)
    class_names = SETS[demo_set]
    if (manifest is None or manifest.get("format_version") != FORMAT_VERSION
            or manifest.get("params") != params
            # Manifests written before the transfer set existed hold the shapes set.
            or manifest.get("set", "shapes") != demo_set
            or manifest.get("class_names") != list(class_names)):
        return False
    # Cheap (a directory listing per class) and catches files deleted by hand.
    for split in SPLITS:
        expected = params[f"{split}_per_class"]
        for class_name in class_names:
            try:
                found = sum(1 for e in os.scandir(root / split / class_name)
                            if e.name.endswith(".jpg"))
            except OSError:
                return False
            if found != expected:
                return False
    return True


def _check_replaceable(root: pathlib.Path) -> None:
    """Raises unless writing to `root` can only replace an older demo dataset."""
    if not root.exists():
        return
    if not root.is_dir():
        raise ValueError(
            f"Cannot write the demo dataset to {str(root)!r}: it exists and is not a "
            f"directory. Choose another root.")
    manifest = _read_manifest(root)
    if manifest is None and any(root.iterdir()):
        raise ValueError(
            f"Cannot write the demo dataset to {str(root)!r}: the directory is not "
            f"empty and has no demo {MANIFEST_NAME}, so it was not written by "
            f"alexnet_tf.data.demo. Its files were left untouched; choose an empty "
            f"or new directory.")
    if manifest is not None:
        # Replacing a demo dataset deletes it: only if every file there is one this
        # module wrote (a user's files put into it are never deleted).
        foreign = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                         if not p.is_dir() and not _written_here(p.relative_to(root)))
        if foreign:
            raise ValueError(
                f"Cannot replace the demo dataset at {str(root)!r} (it has other "
                f"parameters): it also holds files alexnet_tf.data.demo did not write, "
                f"e.g. {foreign[:5]}. Its files were left untouched; move them out, or "
                f"choose another directory.")


def _written_here(relative: pathlib.Path) -> bool:
    """Whether a path inside a demo dataset is one `write_demo_dataset` writes."""
    parts = relative.parts
    if parts == (MANIFEST_NAME,):
        return True
    return (len(parts) == 3 and parts[0] in SPLITS and parts[1] in _ALL_DRAWERS
            and parts[2].startswith(f"{parts[1]}_") and parts[2].endswith(".jpg"))


def _write_split(directory: pathlib.Path, split_index: int, per_class: int,
                 params: dict, demo_set: str) -> None:
    class_names = SETS[demo_set]
    for class_index, class_name in enumerate(class_names):
        class_dir = directory / class_name
        class_dir.mkdir(parents=True)
        for image_index in range(per_class):
            # One generator per image, keyed by its identity: images do not depend
            # on generation order or on how many images are requested.
            rng = np.random.default_rng(
                [params["seed"], split_index, class_index, image_index, *_SET_SEED[demo_set]])
            pixels = generate_image(class_name, rng, params["image_size"])
            Image.fromarray(pixels).save(
                class_dir / _file_name(class_name, image_index),
                format="JPEG", quality=params["jpeg_quality"])
        logging.log_every_n_seconds(
            logging.INFO, "Demo dataset: %s split, %d of %d classes done", 10.0,
            directory.name, class_index + 1, len(class_names))


def write_demo_dataset(root, *, seed: int = 0, train_per_class: int = 400,
                       val_per_class: int = 100, image_size: int = 76,
                       jpeg_quality: int = 90, demo_set: str = "shapes") -> pathlib.Path:
    """Generates the demo dataset and writes it to `root`, replacing an older one.

    The files are generated in a temporary sibling directory of `root` that is
    renamed into place only when complete, so an interrupted run never leaves a
    partial dataset at `root` (at worst a hidden ``.<name>.partial-*`` or
    ``.<name>.old-*`` sibling, safe to delete). If `root` is a symlink, the
    directory it points to is written.

    Args:
      root: directory to write; it must not exist, be empty, or hold a demo dataset
        written by this function (which is replaced). Parents are created.
      seed: non-negative integer; the same seed gives byte-identical files.
      train_per_class: number of training images per class (>= 1).
      val_per_class: number of validation images per class (>= 1).
      image_size: height and width of the images in pixels (>= 32).
      jpeg_quality: JPEG quality, 1..100.
      demo_set: "shapes" (the ten `CLASS_NAMES`) or "transfer" (`TRANSFER_CLASS_NAMES`).

    Returns:
      `root` as a `pathlib.Path`.

    Raises:
      ValueError: for a bad argument, or if `root` exists and is not an empty
        directory or a demo dataset (nothing is deleted in that case).
    """
    params = _params(seed, train_per_class, val_per_class, image_size, jpeg_quality)
    class_names = _check_set(demo_set)
    given = pathlib.Path(root).expanduser()
    # Absolute and without symlinks: the temporary sibling must be a sibling of the
    # real directory (also for "." or a link to a larger disk), so that the final
    # rename stays within one file system and replaces the target, not the link.
    root = given.resolve()
    _check_replaceable(root)
    root.parent.mkdir(parents=True, exist_ok=True)

    logging.info("Writing the demo dataset (set %r, %d classes, %s) to %s", demo_set,
                 len(class_names), ", ".join(f"{k}={v}" for k, v in params.items()), root)
    start = time.perf_counter()
    partial = pathlib.Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-",
                                            dir=root.parent))
    try:
        counts = {}
        for split_index, split in enumerate(SPLITS):
            split_start = time.perf_counter()
            per_class = params[f"{split}_per_class"]
            _write_split(partial / split, split_index, per_class, params, demo_set)
            counts[split] = per_class * len(class_names)
            logging.info("Demo dataset: wrote %d %s images (%d per class) in %.1f s",
                         counts[split], split, per_class,
                         time.perf_counter() - split_start)
        manifest = {
            "format": _FORMAT,
            "format_version": FORMAT_VERSION,
            "description": "Procedurally generated demo dataset of alexnet_tf; "
                           "regenerate with: python -m alexnet_tf.data.demo "
                           "--root=DIR --seed=N",
            "params": params,
            "set": demo_set,
            "class_names": list(class_names),
            "counts": counts,
        }
        # Written last: a directory with a manifest is always complete.
        (partial / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        _move_into_place(partial, root, params, demo_set)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    logging.info("Demo dataset ready at %s (%.1f s)", root, time.perf_counter() - start)
    _REPORTED.add(_report_key(root, params, demo_set))
    return given


def _report_key(root: pathlib.Path, params: dict, demo_set: str) -> tuple:
    return str(root.expanduser().resolve()), tuple(sorted(params.items())), demo_set


def _move_into_place(partial: pathlib.Path, root: pathlib.Path, params: dict,
                     demo_set: str) -> None:
    # Checked again right before touching `root`: it may have changed during the
    # generation (e.g. a user copied files into it).
    _check_replaceable(root)
    old = None
    if root.exists():
        if _read_manifest(root) is None:
            root.rmdir()  # Empty (checked above); rmdir refuses otherwise.
        else:
            # Move the old dataset aside first: `rename` cannot replace a non-empty
            # directory, and deleting it first would lose it if we are interrupted.
            old = pathlib.Path(tempfile.mkdtemp(prefix=f".{root.name}.old-",
                                                dir=root.parent))
            os.replace(root, old / root.name)
    try:
        os.replace(partial, root)
    except OSError:
        if _is_complete(root, params, demo_set):
            # Another process (e.g. a second training worker) finished the same
            # dataset first: use theirs.
            shutil.rmtree(partial, ignore_errors=True)
        else:
            if old is not None and not root.exists():
                os.replace(old / root.name, root)  # Put the previous dataset back.
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def ensure_demo_dataset(root, *, seed: int = 0, train_per_class: int = 400,
                        val_per_class: int = 100, image_size: int = 76,
                        jpeg_quality: int = 90, demo_set: str = "shapes") -> pathlib.Path:
    """Makes sure `root` holds the demo dataset with these parameters.

    Returns at once if `root/MANIFEST.json` records exactly these parameters (and
    the current format version) and every class folder holds the expected number
    of files; otherwise (re)generates the dataset with `write_demo_dataset`,
    replacing an older demo dataset at `root`. The check runs on every call; its "up
    to date" line is logged once per process and dataset (a training run calls this
    for its train and its eval split), later calls log it at debug level.

    Args:
      root: see `write_demo_dataset`.
      seed, train_per_class, val_per_class, image_size, jpeg_quality, demo_set: see
        `write_demo_dataset`.

    Returns:
      `root` as a `pathlib.Path`.

    Raises:
      ValueError: for a bad argument, or if `root` exists and is neither empty nor a
        demo dataset (its files are left untouched).
    """
    params = _params(seed, train_per_class, val_per_class, image_size, jpeg_quality)
    _check_set(demo_set)
    root = pathlib.Path(root).expanduser()
    if _is_complete(root, params, demo_set):
        key = _report_key(root, params, demo_set)
        (logging.debug if key in _REPORTED else logging.info)(
            "Demo dataset at %s is up to date.", root)
        _REPORTED.add(key)
        return root
    if _read_manifest(root) is not None:
        logging.info("Demo dataset at %s has other parameters or is incomplete; "
                     "regenerating it.", root)
    return write_demo_dataset(root, **params, demo_set=demo_set)


# --------------------------------------------------------------------------------
# Command line: python -m alexnet_tf.data.demo --root=DIR [--seed=N]
# --------------------------------------------------------------------------------


def _define_flags() -> None:
    # Defined only when run as a program: flags defined at import time would clash
    # with (and pollute --help of) the training programs that import this module.
    from absl import flags
    flags.DEFINE_string("root", None, "Directory to write the demo dataset to.")
    flags.DEFINE_integer("seed", 0, "Random seed; the same seed gives identical files.")
    flags.DEFINE_integer("train_per_class", 400, "Training images per class.")
    flags.DEFINE_integer("val_per_class", 100, "Validation images per class.")
    flags.DEFINE_integer("image_size", 76, "Image height and width in pixels.")
    flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality, 1..100.")
    flags.DEFINE_enum("set", "shapes", list(SETS),
                      "Which classes: the ten 'shapes', or the six 'transfer' classes.")
    flags.mark_flag_as_required("root")


def _main(argv) -> None:
    from absl import app, flags
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    f = flags.FLAGS
    root = write_demo_dataset(f.root, seed=f.seed, train_per_class=f.train_per_class,
                              val_per_class=f.val_per_class, image_size=f.image_size,
                              jpeg_quality=f.jpeg_quality, demo_set=f.set)
    print(root)


if __name__ == "__main__":
    from alexnet_tf.cli import app as _cli_app
    _define_flags()
    _cli_app.run(_main, __name__)
