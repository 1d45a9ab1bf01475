"""Figures shared by the labs: loss curves, annotated heatmaps, image grids (PNG, no display)."""
import textwrap
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.colors import LogNorm

matplotlib.use("Agg")  # before pyplot is imported: no display needed
import matplotlib.pyplot as plt  # noqa: E402 - must follow matplotlib.use

# Drawn at the resolution they are saved at, figures lay out their text once: a sixth faster to write,
# which counts when a sweep writes two figures for each of hundreds of small runs.
matplotlib.rcParams["figure.dpi"] = 120


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi="figure")
    plt.close(fig)
    return path


def plot_curves(path: Path, curves: dict, xlabel: str = "epoch", ylabel: str = "loss",
                log: bool = False, title: str | None = None, markers: tuple[str, ...] = ()) -> Path:
    """One line per entry of curves: name -> y values, or name -> (x values, y values).
    The curves named in markers are drawn as unconnected points (samples, not a function of x)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, values in curves.items():
        x, y = values if isinstance(values, tuple) else (np.arange(1, len(values) + 1), values)
        if name in markers:
            ax.plot(x, y, ".", label=name, markersize=3, alpha=0.7)
        else:
            ax.plot(x, y, label=name, linewidth=1.2)
    if log and any(np.nanmax(np.asarray(v[1] if isinstance(v, tuple) else v, dtype=float), initial=0) > 0
                   for v in curves.values()):  # all-zero curves (a loss term not used) cannot be log-scaled
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return _save(fig, path)


def plot_train_val(path: Path, history: dict, metric: str, ylabel: str, title: str | None = None,
                   log: bool = False) -> Path:
    """The train_<metric> and val_<metric> columns of a run's history against the epoch."""
    return plot_curves(path, {"train": history[f"train_{metric}"], "validation": history[f"val_{metric}"]},
                       ylabel=ylabel, log=log, title=title)


def plot_heatmap(path: Path, values, row_labels, col_labels, xlabel: str, ylabel: str,
                 title: str | None = None, log_color: bool = False) -> Path:
    """Annotated heatmap of values[row, col]; NaN cells (failed or diverged runs) stay blank."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    norm = None
    if log_color and finite.size and finite.min() > 0:
        norm = LogNorm(vmin=finite.min(), vmax=finite.max())
    cell = 0.55
    fig, ax = plt.subplots(figsize=(max(4.0, 1.8 + cell * len(col_labels)), max(3.0, 1.2 + cell * len(row_labels))))
    image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", norm=norm, origin="lower", aspect="auto")
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(len(col_labels)), labels=[str(c) for c in col_labels])
    ax.set_yticks(range(len(row_labels)), labels=[str(r) for r in row_labels])
    # a small grid makes a narrow figure: wrap the title to its width (about 9 characters an inch)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title and textwrap.fill(title, int(fig.get_figwidth() * 9)))
    if finite.size:
        middle = np.exp(np.log(finite).mean()) if norm else finite.mean()
        for (r, c), v in np.ndenumerate(values):
            if np.isfinite(v):
                ax.text(c, r, f"{v:.2g}", ha="center", va="center", fontsize=6,
                        color="black" if v > middle else "white")
    return _save(fig, path)


def plot_image_grid(path: Path, images, titles=None, ncols: int = 4) -> Path:
    """Images (H x W or H x W x C arrays in [0, 1]) in a grid with optional titles."""
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.6 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, image in enumerate(images):
        ax = axes.flat[i]
        ax.imshow(image, cmap="gray" if np.ndim(image) == 2 else None)
        if titles:
            ax.set_title(titles[i], fontsize=8)
    return _save(fig, path)


def plot_spread(path: Path, groups: dict, ylabel: str, log: bool = False, title: str | None = None) -> Path:
    """One column per group: a dot per run (e.g. per seed) and a bar at the mean."""
    fig, ax = plt.subplots(figsize=(max(4.0, 1.2 + 1.1 * len(groups)), 4.2))
    for i, values in enumerate(groups.values()):
        values = np.asarray(values, dtype=float)
        values = values[np.isfinite(values)]
        ax.scatter(np.full(len(values), i) + np.linspace(-0.15, 0.15, len(values)), values, s=18, alpha=0.8)
        if len(values):
            ax.hlines(values.mean(), i - 0.3, i + 0.3, color="black", linewidth=1.5)
    ax.set_xticks(range(len(groups)), labels=list(groups), rotation=30, ha="right", fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.set(ylabel=ylabel, title=title)
    ax.grid(alpha=0.3, axis="y", which="both")
    return _save(fig, path)


def plot_confusion(path: Path, counts, class_names, title: str | None = None) -> Path:
    """Confusion matrix, rows = true class, columns = predicted, shaded by row share.
    Class names and counts are written in when there are at most 20 classes."""
    counts = np.asarray(counts)
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    k = len(class_names)
    side = min(12.0, 3.0 + 0.5 * k)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the true class")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    if k <= 20:
        ax.set_xticks(range(k), labels=class_names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(k), labels=class_names, fontsize=7)
        for (r, c), n in np.ndenumerate(counts):
            if n:
                ax.text(c, r, str(n), ha="center", va="center", fontsize=6,
                        color="white" if share[r, c] > 0.5 else "black")
    return _save(fig, path)
