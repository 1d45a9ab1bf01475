"""A finished sweep's tables and figures: the summary table, heatmaps and matrices, spread, lines,
curve overlays and image grids (drawn by common.plots)."""
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.image import imread

from common.errors import UsageError
from common.plots import plot_curves, plot_heatmap, plot_image_grid, plot_spread
from common.runs import write_atomic
from common.sweep.grid import safe_value

FINISHED = ("ok", "early_stopped")  # statuses whose numbers go into heatmaps and matrices


def _numeric_order(values):
    try:
        return sorted(values, key=float)
    except ValueError:
        return list(dict.fromkeys(values))


def groups_by(results: pd.DataFrame, keys: list[str]):
    """(tuple of key values, rows) per combination of keys, in order, missing values kept; no keys: one group."""
    if not keys:
        return [((), results)]
    return [(key if isinstance(key, tuple) else (key,), group)
            for key, group in results.groupby(keys, sort=False, dropna=False)]


def summarize(results: pd.DataFrame, axes: list[str], metrics: list[str]) -> str:
    """Markdown table: one row per point without its seed, mean ± std of each metric over seeds."""
    config = [a for a in axes if a != "seed"]
    lines = ["| " + " | ".join(config + ["runs", "status"] + metrics) + " |",
             "|" + "---|" * (len(config) + 2 + len(metrics))]
    for key, group in groups_by(results, config):
        statuses = ", ".join(f"{n} {s}" for s, n in group["status"].value_counts().items())
        cells = [mean_std(pd.to_numeric(group[m], errors="coerce") if m in group else None) for m in metrics]
        labels = ["—" if pd.isna(k) else str(k) for k in key]
        lines.append("| " + " | ".join(labels + [str(len(group)), statuses] + cells) + " |")
    return "\n".join(lines) + "\n"


def mean_std(values) -> str:
    """Mean ± std of the values (the value alone when there is one; — when there are none)."""
    if values is None or values.dropna().empty:
        return "—"
    values = values.dropna()
    if len(values) == 1:
        return f"{values.iloc[0]:.4g}"
    return f"{values.mean():.4g} ± {values.std(ddof=1):.2g}"


def matrix_markdown(matrix: pd.DataFrame, x: str, y: str) -> str:
    header = f"| {y} \\ {x} | " + " | ".join(str(c) for c in matrix.columns) + " |"
    lines = [header, "|" + "---|" * (len(matrix.columns) + 1)]
    for label, row in matrix.iterrows():
        cells = ["—" if not np.isfinite(v) else f"{v:.4g}" for v in row]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def split_axes(results: pd.DataFrame, axes: list[str], within: list[str]) -> list[str]:
    """The grid keys (seed aside) that take several values among points sharing the `within` keys:
    one figure or line per value of these. A key of only some grids (a bert-only flag) is not one."""
    candidates = [a for a in axes if a not in within and a != "seed"]
    varying = results.groupby(within, dropna=False)[candidates].nunique(dropna=False).max()
    return [a for a in candidates if varying[a] > 1]


def draw_heatmaps(results: pd.DataFrame, out: Path, axes: list[str], x: str, y: str,
                  metric: str, tables: list[str], log_color: bool) -> list[Path]:
    """Per value of the other axes (seed excepted): a heatmap of metric, Markdown matrices of metric and tables.

    Values are averaged over seeds; points that failed or diverged count as missing."""
    others = split_axes(results, axes, [x, y])
    written = []
    for key, group in groups_by(results, others):
        tag = "".join(f"_{a}={safe_value(v)}" for a, v in zip(others, key, strict=True))
        title = ", ".join(f"{a}={v}" for a, v in zip(others, key, strict=True)) or None
        for name in [metric] + tables:
            if name not in group:
                raise UsageError(f"no point reported {name!r}; pick a key of the lab's summary.json")
            # a diverged or failed point may report its best before it broke: never a coloured cell
            values = pd.to_numeric(group[name], errors="coerce").where(group["status"].isin(FINISHED))
            matrix = (group.assign(_v=values).pivot_table(index=y, columns=x, values="_v", aggfunc="mean",
                                                          dropna=False)
                      .reindex(index=_numeric_order(group[y].unique()), columns=_numeric_order(group[x].unique())))
            md = out / f"table_{name}{tag}.md"
            write_atomic(md, (f"**{title}** — {name}\n\n" if title else f"{name}\n\n") + matrix_markdown(matrix, x, y))
            written.append(md)
            if name == metric:
                written.append(plot_heatmap(out / f"heatmap_{name}{tag}.png", matrix.to_numpy(dtype=float),
                                            list(matrix.index), list(matrix.columns), xlabel=x, ylabel=y,
                                            title=f"{name}" + (f" ({title})" if title else ""),
                                            log_color=log_color))
    return written


def draw_spread(results: pd.DataFrame, out: Path, axes: list[str], metric: str, log: bool) -> Path:
    """The metric of every run, one column per point without its seed: shows seed-to-seed variance."""
    if metric not in results:
        raise UsageError(f"no point reported {metric!r}; pick a key of the lab's summary.json")
    config = [a for a in axes if a != "seed"]
    labels = results[config].apply(lambda row: " ".join(f"{a}={v}" for a, v in row.items() if pd.notna(v)), axis=1)
    groups = {label: pd.to_numeric(results.loc[labels == label, metric], errors="coerce")
              for label in dict.fromkeys(labels)}
    return plot_spread(out / f"spread_{metric}.png", groups, ylabel=metric, log=log)


def draw_curves(results: pd.DataFrame, out: Path, axes: list[str], columns: list[str], by: str | None,
                log: bool, until: str | None = None) -> list[Path]:
    """Overlay a history.csv column of every point, one figure per column (and per value of `by`); the
    seeds of a point are averaged into one curve (epoch by epoch, over the seeds still running). With
    `until` (a summary key such as best_epoch) each curve ends at that point's value of it."""
    if until and until not in results:
        raise UsageError(f"--curves-until {until}: no point reported it; pick a key of the lab's summary.json")
    groups = results.groupby(by, sort=False) if by else [(None, results)]
    labelled = [a for a in axes if a not in (by, "seed")]
    written = []
    for value, group in groups:
        runs = {}
        for _, row in group.iterrows():
            path = out / row["dir"] / "history.csv"
            if path.exists() and row["status"] != "unfinished":  # an interrupted point's history may be empty
                label = " ".join(f"{a}={row[a]}" for a in labelled if pd.notna(row[a])) or row["dir"]
                history = pd.read_csv(path)
                if until and pd.notna(row.get(until)):
                    history = history[history.iloc[:, 0] <= float(row[until])]
                runs.setdefault(label, []).append(history)
        histories = {(f"{label} (mean of {len(h)} seeds)" if len(h) > 1 else label):
                     pd.concat(h).groupby(h[0].columns[0], as_index=False).mean(numeric_only=True)
                     for label, h in runs.items()}
        for column in columns:
            curves = {label: (h.iloc[:, 0].to_numpy(), h[column].to_numpy())  # first column: epoch (or step)
                      for label, h in histories.items() if column in h}
            if not curves:
                raise UsageError(f"no history.csv has a column {column!r}")
            tag = f"_{by}={safe_value(value)}" if by else ""
            xlabel = next(iter(histories.values())).columns[0]
            written.append(plot_curves(out / f"curves_{column}{tag}.png", curves, xlabel=xlabel, ylabel=column,
                                       log=log, title=f"{column}" + (f" ({by}={value})" if by else "")))
    return written


def draw_lines(results: pd.DataFrame, out: Path, axes: list[str], x: str, metric: str, log: bool) -> Path:
    """The metric against a numeric grid key, one line per value of the other keys (seeds averaged)."""
    others = split_axes(results, axes, [x])
    curves = {}
    for key, group in groups_by(results, others):
        means = pd.to_numeric(group[metric], errors="coerce").groupby(pd.to_numeric(group[x])).mean().sort_index()
        label = " ".join(f"{a}={v}" for a, v in zip(others, key, strict=True) if pd.notna(v)) or metric
        curves[label] = (means.index.to_numpy(), means.to_numpy())
    return plot_curves(out / f"lines_{metric}_vs_{x}.png", curves, xlabel=x, ylabel=metric, log=log,
                       title=f"{metric} against {x}")


def draw_images(results: pd.DataFrame, out: Path, axes: list[str], name: str, metric: str | None) -> Path:
    """The image file `name` of every point side by side, titled by the grid values that vary (and the metric)."""
    labelled = [a for a in axes if results[a].nunique(dropna=False) > 1]
    images, titles = [], []
    for _, row in results.iterrows():
        path = out / row["dir"] / name
        if path.exists():
            images.append(imread(path))
            label = " ".join(f"{a}={row[a]}" for a in labelled if pd.notna(row[a]))
            if metric and pd.notna(row.get(metric)):
                label += f" {metric}={float(row[metric]):.4g}"
            titles.append(textwrap.fill(label, 36))
    if not images:
        raise UsageError(f"no point wrote {name!r}")
    return plot_image_grid(out / f"images_{Path(name).stem}.png", images, titles, ncols=min(len(images), 3))
