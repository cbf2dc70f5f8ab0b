r"""Training curves from a run's TensorBoard logs (loss, top-1/top-5 error, learning rate) as a PNG.

The training loop writes ``<workdir>/tensorboard/train`` (loss, top1_error,
learning_rate, images_per_second every ``train.log_every_steps`` steps) and
``<workdir>/tensorboard/eval`` (loss, top1_error, top5_error after every evaluation)
with ``tf.summary.scalar``, which in TF 2 stores each value as a tensor. `read_scalars`
reads every event file of each writer directory (TFRecords of ``Event`` protos; no
TensorBoard server) and returns, per writer and tag, the steps and values in step
order; a step logged twice (a run resumed from an earlier checkpoint logs some steps
again) keeps the value written last. `plot_curves` draws four panels (loss, top-1
error, top-5 error, learning rate; train and eval together) into one PNG with
matplotlib (the ``[plots]`` extra), through its object API: no pyplot, no global
backend change.

    python tools/plot_curves.py --workdir=runs/demo --output=curves.png
"""

from __future__ import annotations

import dataclasses
import glob
import os

import numpy as np

from alexnet_tf.errors import DataError, MissingDependencyError, NotFoundError

TENSORBOARD_DIR = "tensorboard"
WRITERS = ("train", "eval")
# (panel title, tag, y-axis label, log scale)
PANELS = (("loss", "loss", "cross-entropy", False),
          ("top-1 error", "top1_error", "error", False),
          ("top-5 error", "top5_error", "error", False),
          ("learning rate", "learning_rate", "learning rate", True))
COLOURS = {"train": "tab:blue", "eval": "tab:orange"}


@dataclasses.dataclass(frozen=True)
class Series:
    steps: np.ndarray  # int64, increasing
    values: np.ndarray  # float64

    def __len__(self) -> int:
        return len(self.steps)


def _scalar_of(value) -> float | None:
    """The number in a summary value: a TF 2 scalar tensor or a TF 1 simple_value."""
    import tensorflow as tf

    if value.HasField("tensor"):
        array = tf.make_ndarray(value.tensor)
        if array.size != 1 or array.dtype.kind not in "fiub":
            return None  # an image or text summary, not a scalar
        return float(array.reshape(()))
    if value.HasField("simple_value"):
        return float(value.simple_value)
    return None


def read_event_files(paths) -> dict[str, Series]:
    """tag -> Series from the given event files, read in order (later files and later
    events win on equal steps)."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    points: dict[str, dict[int, float]] = {}
    for path in paths:
        # What tf.compat.v1.train.summary_iterator does, without its deprecation warning.
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            if not event.HasField("summary"):
                continue
            for value in event.summary.value:
                number = _scalar_of(value)
                if number is not None:
                    points.setdefault(value.tag, {})[int(event.step)] = number
    series = {}
    for tag, by_step in points.items():
        steps = np.array(sorted(by_step), np.int64)
        series[tag] = Series(steps, np.array([by_step[s] for s in steps], np.float64))
    return series


def _event_files(directory: str) -> list[str]:
    files = glob.glob(os.path.join(directory, "events.out.tfevents.*"))
    # Event file names hold their creation time after the prefix: sort by it, so that a
    # resumed run's newer file is read after the older one.
    def created(path):
        parts = os.path.basename(path).split(".")
        try:
            return int(parts[3]), path
        except (IndexError, ValueError):
            return 0, path
    return sorted(files, key=created)


def read_scalars(workdir: str) -> dict[str, dict[str, Series]]:
    """writer ("train", "eval") -> tag -> Series, from ``<workdir>/tensorboard``."""
    root = os.path.join(workdir, TENSORBOARD_DIR)
    if not os.path.isdir(root):
        raise NotFoundError(f"{workdir!r} has no {TENSORBOARD_DIR}/ directory of "
                            f"TensorBoard logs; expected a run's work directory.")
    result = {}
    for writer in sorted(os.listdir(root)):
        directory = os.path.join(root, writer)
        if os.path.isdir(directory):
            result[writer] = read_event_files(_event_files(directory))
    if not any(result.values()):
        raise DataError(f"No scalar summaries under {root!r}.")
    return result


PLOTS_EXTRA = "pip install -e '.[plots]'"


def _figure_class():
    """matplotlib's Figure and Agg canvas, or `MissingDependencyError` naming the extra
    (the binaries print it as one line, exit status 1)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        missing = (isinstance(error, ModuleNotFoundError)
                   and (error.name or "").split(".")[0] == "matplotlib")
        why = "is not installed" if missing else f"cannot be imported ({error})"
        raise MissingDependencyError(
            f"Plotting training curves needs matplotlib, which {why}: {PLOTS_EXTRA} "
            f"(or pip install matplotlib).") from error
    return Figure, FigureCanvasAgg


def require_matplotlib() -> None:
    """Raises `MissingDependencyError` (naming ``pip install -e '.[plots]'``) when
    matplotlib cannot be imported: checked before a run's logs are read."""
    _figure_class()


def plot_curves(scalars: dict[str, dict[str, Series]], output: str | None = None, *,
                title: str = ""):
    """Four panels (loss, top-1 error, top-5 error, learning rate) of the train and
    eval series against the step; saved as PNG to ``output`` when given. Returns the
    matplotlib Figure (each panel's lines are labelled "train" / "eval")."""
    Figure, FigureCanvasAgg = _figure_class()
    figure = Figure(figsize=(11, 7.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2, 2).reshape(-1)
    for ax, (panel, tag, ylabel, log) in zip(axes, PANELS):
        drawn = False
        for writer in WRITERS:
            series = scalars.get(writer, {}).get(tag)
            if series is None or not len(series):
                continue
            marker = "o" if writer == "eval" or len(series) < 30 else None
            ax.plot(series.steps, series.values, label=writer, color=COLOURS[writer],
                    marker=marker, markersize=3)
            drawn = True
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if drawn:
            ax.legend()
            values = [v for w in WRITERS if tag in scalars.get(w, {})
                      for v in scalars[w][tag].values]
            if log and min(values) > 0:  # a schedule that decays to 0 stays linear
                ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes,
                    color="grey")
    if title:
        figure.suptitle(title)
    if output:
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        figure.savefig(output, format="png")
    return figure


def plot_run(workdir: str, output: str = "curves.png"):
    """`read_scalars` then `plot_curves`, titled with the run's directory; returns
    (scalars, figure). Without matplotlib, fails before reading anything."""
    require_matplotlib()
    scalars = read_scalars(workdir)
    figure = plot_curves(scalars, output, title=os.path.abspath(workdir))
    return scalars, figure


def summary_lines(scalars: dict[str, dict[str, Series]]) -> list[str]:
    """One line per series: points, step range and last value."""
    lines = []
    for writer in sorted(scalars):
        for tag in sorted(scalars[writer]):
            s = scalars[writer][tag]
            lines.append(f"{writer}/{tag}: {len(s)} points, steps {s.steps[0]}-{s.steps[-1]}, "
                         f"last {s.values[-1]:.5g}")
    return lines
