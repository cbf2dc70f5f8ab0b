r"""conv1 kernels as an image, per tower, and how colour-specific each is (Sec. 6.1, Fig. 3).

The paper (Sec. 6.1, Fig. 3): the 48 conv1 kernels of GPU 1 come out largely
colour-agnostic and the 48 of GPU 2 largely colour-specific, in every run. In the
``paper`` variant conv1 itself is one convolution over all 96 kernels, and the towers
start at conv2, whose two groups read the first and the second half of conv1's maps:
kernels ``[0, K/2)`` feed tower 1 and ``[K/2, K)`` tower 2. In general the number of
towers is the number of groups of conv2 (1 for ``one_tower`` and ``modern``, which
are shown as one block).

**The kernels are shown in RGB pixel space.** The model sees normalised pixels
``x_c = (p_c - mean_c) / std_c``, reversed to BGR for Caffe weights, so a kernel's
response to the RGB pixels ``p`` is that of the kernel ``w_c / std_c`` with its input
channels put back in R, G, B order (the mean only shifts the bias). `conv1_kernels`
returns these effective kernels; scores and pictures are of them.

**Colour specificity** of a kernel ``W`` (``h x w x 3``, RGB): remove its mean over all
entries (a constant grey offset, which only shifts the response), ``W0 = W - mean(W)``;
split ``W0`` into its luminance part, the per-pixel mean over R, G, B repeated on the
three channels, ``L[y, x] = (W0[y, x, R] + W0[y, x, G] + W0[y, x, B]) / 3``, and its
chroma part ``C = W0 - L`` (per pixel, the three channels of ``C`` sum to zero). The
two parts are orthogonal, ``||W0||^2 = 3 ||L||^2 + ||C||^2``, and the score is the
chroma's share of the energy::

    colour_specificity(W) = ||C||^2 / ||W0||^2      in [0, 1]

0: the same pattern on R, G and B (a grey edge or blob detector, colour-agnostic);
1: no luminance at all (e.g. red minus green); a constant kernel scores 0. The equal
weighting (rather than a luma weighting such as 0.299/0.587/0.114) is what makes the
split an orthogonal projection, so the score is a true fraction. Calibration: a
kernel of i.i.d. random weights (an untrained network) has two thirds of its
dimensions in chroma and scores about 2/3 (``2hw / (3hw - 1)`` = 0.67 for 11x11), so
"colour-agnostic" means well below 2/3, and a trained colour-specific tower sits near
or above it. `tower_scores` gives each tower's per-kernel scores, mean and median.

**Display** (`kernel_grid`): each kernel is contrast-normalised on its own, with one
scale for its three channels so that its colours are kept: ``W0 / max|W0|`` mapped to
``[0, 1]`` as ``0.5 + 0.5 x`` (zero weight is mid-grey, the strongest weight is black
or full colour); then upscaled by pixel repetition (``scale``). Towers are drawn as
separate blocks one above the other, ``tower_gap`` pixels apart, each with a label
line above it, as in Fig. 3 (top 48: GPU 1, bottom 48: GPU 2).

    python tools/show_kernels.py --workdir=runs/demo [--checkpoint=best] [--output=kernels.png]

`write_summaries` logs the grid and the towers' mean scores to TensorBoard; the
training loop calls it after every epoch.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

KERNEL_LAYER = "conv1"
TOWER_INPUT_LAYER = "conv2"  # its groups are the towers (Sec. 3.2)
BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (0, 0, 0)
# format_report calls the towers split when their mean scores differ by at least this
# much: a reading aid chosen by eye, not a statistical test.
SPLIT_THRESHOLD = 0.1


# ----------------------------------------------------------------------------- kernels

def conv1_kernels(model, channel_order: str = "RGB", std_rgb=(1.0, 1.0, 1.0)) -> np.ndarray:
    """conv1's kernels as ``[K, h, w, 3]`` float64 in RGB pixel space (see module doc)."""
    layer = model.get_layer(KERNEL_LAYER)
    kernel = np.asarray(layer.kernel.numpy(), np.float64)  # [h, w, 3, K]
    if kernel.ndim != 4 or kernel.shape[2] != 3:
        raise ValueError(f"Layer {KERNEL_LAYER!r} of {model.name!r} has kernel shape "
                         f"{kernel.shape}; expected (h, w, 3, K) on RGB input.")
    if channel_order not in ("RGB", "BGR"):
        raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {channel_order!r}.")
    kernels = np.transpose(kernel, (3, 0, 1, 2))
    if channel_order == "BGR":
        kernels = kernels[..., ::-1]
    return kernels / np.asarray(std_rgb, np.float64)


def num_towers(model) -> int:
    """The number of towers conv1's maps feed: the groups of conv2 (1 without groups)."""
    try:
        layer = model.get_layer(TOWER_INPUT_LAYER)
    except ValueError:
        return 1
    return int(getattr(layer, "groups", 1) or 1)


def tower_ranges(num_kernels: int, towers: int) -> list[range]:
    """Kernel indices of each tower: equal consecutive blocks (conv2's groups split its
    input channels in order, so tower t reads conv1 maps [t K/T, (t+1) K/T))."""
    if towers < 1 or num_kernels % towers:
        raise ValueError(f"{num_kernels} kernels do not split into {towers} equal towers.")
    per = num_kernels // towers
    return [range(t * per, (t + 1) * per) for t in range(towers)]


def colour_specificity(kernels) -> np.ndarray:
    """The chroma share of each kernel's energy, ``||C||^2 / ||W - mean(W)||^2``
    (module doc); ``kernels`` is ``[..., h, w, 3]``, the result ``[...]``."""
    w = np.asarray(kernels, np.float64)
    if w.ndim < 3 or w.shape[-1] != 3:
        raise ValueError(f"kernels must have shape [..., h, w, 3], got {w.shape}.")
    w0 = w - w.mean(axis=(-3, -2, -1), keepdims=True)
    chroma = w0 - w0.mean(axis=-1, keepdims=True)
    total = np.sum(w0 ** 2, axis=(-3, -2, -1))
    chroma_energy = np.sum(chroma ** 2, axis=(-3, -2, -1))
    scale = np.sum(w ** 2, axis=(-3, -2, -1))
    # A constant kernel (no energy left after its mean) is colour-agnostic: 0.
    flat = total <= 1e-12 * np.maximum(scale, np.finfo(np.float64).tiny)
    return np.where(flat, 0.0, chroma_energy / np.where(flat, 1.0, total))


@dataclasses.dataclass(frozen=True)
class TowerScores:
    """Colour specificity of one tower's kernels."""

    tower: int  # 1-based, as the paper's GPU 1 / GPU 2
    kernels: range  # indices into conv1's kernels
    scores: np.ndarray  # one per kernel, in index order

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def median(self) -> float:
        return float(np.median(self.scores))


def tower_scores(kernels, towers: int) -> list[TowerScores]:
    """Per-kernel colour specificity, split into ``towers`` consecutive blocks."""
    scores = colour_specificity(kernels)
    return [TowerScores(t + 1, r, scores[r.start:r.stop])
            for t, r in enumerate(tower_ranges(len(scores), towers))]


# -------------------------------------------------------------------------------- grid

def normalise_for_display(kernels) -> np.ndarray:
    """Each kernel on its own: ``0.5 + 0.5 (W - mean) / max|W - mean|`` in [0, 1], one
    scale for the three channels (colours are kept); a constant kernel is mid-grey."""
    w = np.asarray(kernels, np.float64)
    w0 = w - w.mean(axis=(-3, -2, -1), keepdims=True)
    peak = np.max(np.abs(w0), axis=(-3, -2, -1), keepdims=True)
    return 0.5 + 0.5 * w0 / np.where(peak > 0, peak, 1.0)


@dataclasses.dataclass(frozen=True)
class GridLayout:
    """Where things are in a kernel grid: image size and each tower's block of kernels
    as (top, left, bottom, right), bottom/right exclusive; label strips are above."""

    height: int
    width: int
    blocks: tuple[tuple[int, int, int, int], ...]
    cell: int  # side of one upscaled kernel in pixels
    columns: int
    label_height: int


def _font():
    return ImageFont.load_default()


def _text_size(text: str, font) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text)
    return right - left, bottom - min(top, 0)


def kernel_grid(kernels, towers: int = 1, *, scale: int = 4, columns: int = 16,
                spacing: int = 2, margin: int = 6, tower_gap: int = 16,
                labels: list[str] | None = None) -> tuple[np.ndarray, GridLayout]:
    """Draws ``[K, h, w, 3]`` kernels as a uint8 ``[H, W, 3]`` grid, one block per tower.

    Each tower's kernels fill ``min(columns, K / towers)`` columns row by row, every
    kernel contrast-normalised (`normalise_for_display`) and upscaled ``scale`` times,
    ``spacing`` pixels apart; blocks are stacked top to bottom ``tower_gap`` pixels
    apart, inside a ``margin``. With ``labels`` (one string per tower) each block gets
    a line of text above it. Without labels the size is exactly
    ``W = 2 margin + c cell + (c - 1) spacing`` and
    ``H = 2 margin + T (r cell + (r - 1) spacing) + (T - 1) tower_gap``, where
    ``cell = h scale``, ``c`` the columns and ``r`` the rows of a block.
    """
    kernels = np.asarray(kernels)
    if kernels.ndim != 4 or kernels.shape[-1] != 3:
        raise ValueError(f"kernels must have shape [K, h, w, 3], got {kernels.shape}.")
    if scale < 1 or columns < 1:
        raise ValueError(f"scale and columns must be >= 1, got {scale} and {columns}.")
    ranges = tower_ranges(len(kernels), towers)
    if labels is not None and len(labels) != towers:
        raise ValueError(f"{len(labels)} labels for {towers} towers.")
    per_tower = len(ranges[0])
    columns = min(columns, per_tower)
    rows = -(-per_tower // columns)
    kh, kw = kernels.shape[1:3]
    cell_h, cell_w = kh * scale, kw * scale
    block_h = rows * cell_h + (rows - 1) * spacing
    block_w = columns * cell_w + (columns - 1) * spacing
    font = _font() if labels else None
    label_h = 0
    text_w = 0
    if labels:
        sizes = [_text_size(text, font) for text in labels]
        label_h = max(h for _, h in sizes) + 4
        text_w = max(w for w, _ in sizes)
    width = 2 * margin + max(block_w, text_w)
    height = 2 * margin + towers * (label_h + block_h) + (towers - 1) * tower_gap
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = BACKGROUND
    pixels = np.round(255 * normalise_for_display(kernels)).astype(np.uint8)
    pixels = np.repeat(np.repeat(pixels, scale, axis=1), scale, axis=2)
    blocks = []
    top = margin
    for r in ranges:
        top += label_h
        blocks.append((top, margin, top + block_h, margin + block_w))
        for j, k in enumerate(r):
            y = top + (j // columns) * (cell_h + spacing)
            x = margin + (j % columns) * (cell_w + spacing)
            canvas[y:y + cell_h, x:x + cell_w] = pixels[k]
        top += block_h + tower_gap
    if labels:
        image = Image.fromarray(canvas)
        draw = ImageDraw.Draw(image)
        for (block_top, left, _, _), text in zip(blocks, labels):
            draw.text((left, block_top - label_h + 1), text, fill=TEXT_COLOUR, font=font)
        canvas = np.asarray(image)
    return canvas, GridLayout(height, width, tuple(blocks), cell_h, columns, label_h)


def tower_labels(scores: list[TowerScores]) -> list[str]:
    """One line per tower: its kernel range and mean/median colour specificity."""
    if len(scores) == 1:
        s = scores[0]
        return [f"conv1, {len(s.kernels)} kernels: colour specificity "
                f"mean {s.mean:.2f}, median {s.median:.2f}"]
    return [f"tower {s.tower} (kernels {s.kernels.start}-{s.kernels.stop - 1}): colour "
            f"specificity mean {s.mean:.2f}, median {s.median:.2f}" for s in scores]


def kernel_grid_image(model, *, channel_order: str = "RGB", std_rgb=(1.0, 1.0, 1.0),
                      labels: bool = True, **grid_kwargs) -> np.ndarray:
    """The conv1 grid of ``model`` as uint8 ``[1, H, W, 3]``, ready for
    ``tf.summary.image``; towers apart, labelled with their scores."""
    kernels = conv1_kernels(model, channel_order, std_rgb)
    towers = num_towers(model)
    text = tower_labels(tower_scores(kernels, towers)) if labels else None
    grid, _ = kernel_grid(kernels, towers, labels=text, **grid_kwargs)
    return grid[None]


def write_summaries(model, convention=None, step=None) -> list[TowerScores]:
    """Logs the conv1 grid (image ``conv1_kernels``) and each tower's mean colour
    specificity (scalars ``conv1_colour_specificity/tower<t>``) to the default
    ``tf.summary`` writer. Call inside ``with writer.as_default(step=...)``, or pass
    ``step``. ``convention`` (the model's `alexnet_tf.convention.InputConvention`) gives
    the channel order and std; None: RGB, unit std."""
    import tensorflow as tf

    if convention is None:
        kernels = conv1_kernels(model)
    else:
        kernels = conv1_kernels(model, convention.channel_order, convention.std_rgb)
    towers = num_towers(model)
    scores = tower_scores(kernels, towers)
    grid, _ = kernel_grid(kernels, towers, labels=tower_labels(scores))
    tf.summary.image("conv1_kernels", grid[None], step=step)
    for s in scores:
        tf.summary.scalar(f"conv1_colour_specificity/tower{s.tower}", s.mean, step=step)
    return scores


# ------------------------------------------------------------------------------ report

@dataclasses.dataclass(frozen=True)
class KernelReport:
    """What `show_kernels` found: the effective kernels, the towers' scores, the PNG."""

    kernels: np.ndarray
    towers: list[TowerScores]
    output: str | None
    layout: GridLayout
    source: str


def format_report(report: KernelReport) -> str:
    """Readable lines: each tower's mean/median and per-kernel scores, and which tower
    is the colour-specific one (the paper's claim to check)."""
    lines = [f"conv1 kernels of {report.source}: {len(report.kernels)} kernels of "
             f"{report.kernels.shape[1]}x{report.kernels.shape[2]}x3, "
             f"{len(report.towers)} tower(s)."]
    lines.append("Colour specificity = chroma share of each kernel's energy (0: grey, "
                 "1: pure colour; i.i.d. random kernels score ~0.67).")
    for s in report.towers:
        name = f"tower {s.tower}" if len(report.towers) > 1 else "all kernels"
        lines.append(f"  {name} (kernels {s.kernels.start}-{s.kernels.stop - 1}): mean "
                     f"{s.mean:.3f}, median {s.median:.3f}, min {s.scores.min():.3f}, "
                     f"max {s.scores.max():.3f}")
        for i in range(0, len(s.scores), 16):
            lines.append("    " + " ".join(f"{v:.2f}" for v in s.scores[i:i + 16]))
    if len(report.towers) == 2:
        low, high = sorted(report.towers, key=lambda s: s.mean)
        gap = high.mean - low.mean
        verdict = (f"tower {high.tower} is the colour-specific one, tower {low.tower} the "
                   f"colour-agnostic one" if gap >= SPLIT_THRESHOLD else
                   f"no clear split (below {SPLIT_THRESHOLD})")
        lines.append(f"Tower {high.tower} minus tower {low.tower}: mean {gap:+.3f}, median "
                     f"{high.median - low.median:+.3f}: {verdict}. The paper (Sec. 6.1): one "
                     f"tower largely colour-agnostic, the other largely colour-specific.")
    if report.output:
        lines.append(f"Wrote {report.output} ({report.layout.width}x{report.layout.height}).")
    return "\n".join(lines)


def show_kernels(workdir: str | None = None, *, checkpoint: str = "auto",
                 model_path: str | None = None, output: str | None = "kernels.png",
                 scale: int = 4, columns: int = 16) -> KernelReport:
    """Loads a model (`model_io.load_model`), scores its conv1 kernels per tower and
    writes the grid to ``output`` (PNG; None: no file)."""
    from alexnet_tf.analysis import model_io

    loaded = model_io.load_model(workdir, checkpoint=checkpoint, model_path=model_path)
    kernels = conv1_kernels(loaded.model, loaded.channel_order, loaded.std_rgb)
    towers = num_towers(loaded.model)
    scores = tower_scores(kernels, towers)
    grid, layout = kernel_grid(kernels, towers, scale=scale, columns=columns,
                               labels=tower_labels(scores))
    if output:
        directory = os.path.dirname(os.path.abspath(output))
        os.makedirs(directory, exist_ok=True)
        Image.fromarray(grid).save(output, format="PNG")
    return KernelReport(kernels, scores, output, layout, loaded.description)
