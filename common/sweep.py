"""Run a lab over a grid of flags, resumably, and draw the report's figure of the results.

    python -m common.sweep lab1_fnn --out runs/sweeps/lab1_demo \\
        --grid activation=relu,sigmoid depth=1..15 width=5:75:5 \\
        --heatmap depth,width --metric best_val_mse --log-color --table best_epoch \\
        -- --epochs 500 --lr 0.01

Grid values: `a,b,c` (a list), `1..15` (integers, both ends included), `5:75:5` (start:stop:step,
both ends included); items of a list may be ranges (`1..3,10`). Values that hold commas themselves
are separated by `|` instead and taken as they are (`style_layers='conv_1:1,conv_2:1|conv_3:1'`:
two values). A key `k` becomes the flag `--k`
(underscores as hyphens); the values true/false of a switch become `--k` / `--no-k`. Repeating
--grid runs the union of several grids. Everything after `--` goes to every point unchanged.

Each point runs in its own folder under --out, by calling the lab's `main(argv)` in this process
or in a pool of --jobs worker processes (each imports torch once). A point whose folder already
holds a summary.json is not run again (resume). A point that fails or diverges is recorded with
its status and the sweep goes on. Outputs: results.csv (one row per point), summary.md (mean ±
std over seeds); with --heatmap one annotated heatmap and Markdown matrices per value of the
other axes, else a spread plot of --metric; with --lines the metric against a key; with --curves
overlays of history.csv columns.
"""
import argparse
import importlib
import itertools
import json
import math
import os
import re
import sys
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.image import imread

from common.cli import ArgumentParser, UsageError, positive_int, run
from common.plots import plot_curves, plot_heatmap, plot_image_grid, plot_spread

ROOT = Path(__file__).resolve().parents[1]


def expand_values(text: str) -> list[str]:
    """`1..3,10` -> ['1', '2', '3', '10']; `5:15:5` -> ['5', '10', '15']; `a,b` -> ['a', 'b'];
    `a,b|c` -> ['a,b', 'c'] (values separated by | are taken as they are)."""
    if "|" in text:
        values = text.split("|")
        if not all(values):
            raise UsageError(f"empty value in grid values {text!r}")
        return values
    values = []
    for item in text.split(","):
        if re.fullmatch(r"-?\d+\.\.-?\d+", item):
            start, stop = (int(v) for v in item.split(".."))
            values += [str(v) for v in range(start, stop + 1)]
        elif re.fullmatch(r"[^:]+:[^:]+:[^:]+", item):
            values += _stepped(item)
        elif item:
            values.append(item)
        else:
            raise UsageError(f"empty value in grid values {text!r}")
    return values


def _stepped(item: str) -> list[str]:
    try:
        start, stop, step = (float(v) for v in item.split(":"))
    except ValueError:
        raise UsageError(f"range {item!r} must be start:stop:step numbers") from None
    if step <= 0 or stop < start:
        raise UsageError(f"range {item!r} needs step > 0 and stop >= start")
    count = int(math.floor((stop - start) / step + 1e-9)) + 1
    integral = all(re.fullmatch(r"-?\d+", v) for v in item.split(":"))
    return [str(int(start + i * step)) if integral else f"{start + i * step:.10g}" for i in range(count)]


def parse_grid(specs: list[str]) -> dict[str, list[str]]:
    grid = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z][\w-]*", key):
            raise UsageError(f"grid entry {spec!r} must look like name=values, e.g. width=5:75:5")
        grid[key.replace("-", "_")] = expand_values(values)
    return grid


def expand_points(grids: list[dict[str, list[str]]]) -> list[dict[str, str]]:
    """The union of the grids' cartesian products, in order, without repeats."""
    points, seen = [], set()
    for grid in grids:
        for values in itertools.product(*grid.values()):
            point = dict(zip(grid, values))
            key = tuple(sorted(point.items()))
            if key not in seen:
                seen.add(key)
                points.append(point)
    return points


def point_name(point: dict[str, str]) -> str:
    """Folder name of a point: key=value pairs joined by '_', unsafe characters as '-'."""
    return "_".join(f"{key}={re.sub(r'[^0-9A-Za-z.+-]', '-', value)}" for key, value in point.items())


def point_argv(point: dict[str, str]) -> list[str]:
    argv = []
    for key, value in point.items():
        flag = "--" + key.replace("_", "-")
        if value.lower() in ("true", "false"):
            argv.append(flag if value.lower() == "true" else "--no-" + flag[2:])
        else:
            argv += [flag, value]
    return argv


def run_point(lab: str, argv: list[str]) -> tuple[dict, float]:
    """Run one point in this process: (summary, seconds); a failure gives status 'failed'."""
    started = time.perf_counter()
    try:
        summary = importlib.import_module(f"{lab}.train").main(argv)
    except UsageError as error:
        summary = {"status": "failed", "error": str(error)}
    except Exception as error:  # noqa: BLE001 - one broken point must not end the sweep
        summary = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
    return summary, time.perf_counter() - started


def _init_worker(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


def run_points(lab: str, todo: list[tuple[dict, list[str]]], jobs: int, report) -> None:
    """Run (point, argv) pairs; call report(point, summary, seconds) as each one ends."""
    if jobs == 1:
        for point, argv in todo:
            report(point, *run_point(lab, argv))
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_init_worker,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(run_point, lab, argv): point for point, argv in todo}
        for future in as_completed(futures):
            report(futures[future], *future.result())


def check_settings(out: Path, settings: dict) -> None:
    """Resume only a sweep of the same lab and fixed flags; refuse to mix two different sweeps."""
    path = out / "sweep.json"
    if path.exists():
        old = json.loads(path.read_text())
        if (old["lab"], old["fixed"]) != (settings["lab"], settings["fixed"]):
            raise UsageError(f"--out {out} holds a sweep of {old['lab']} with fixed flags {old['fixed']}; "
                             f"choose another folder to run with {settings['fixed']}")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2) + "\n")


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
        cells = [_mean_std(pd.to_numeric(group.get(m), errors="coerce")) for m in metrics]
        labels = ["—" if pd.isna(k) else str(k) for k in key]
        lines.append("| " + " | ".join(labels + [str(len(group)), statuses] + cells) + " |")
    return "\n".join(lines) + "\n"


def _mean_std(values) -> str:
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
        tag = "".join(f"_{a}={v}" for a, v in zip(others, key))
        title = ", ".join(f"{a}={v}" for a, v in zip(others, key)) or None
        for name in [metric] + tables:
            values = pd.to_numeric(group.get(name), errors="coerce") if name in group else None
            if values is None:
                raise UsageError(f"no point reported {name!r}; pick a key of the lab's summary.json")
            matrix = (group.assign(_v=values).pivot_table(index=y, columns=x, values="_v", aggfunc="mean",
                                                          dropna=False)
                      .reindex(index=_numeric_order(group[y].unique()), columns=_numeric_order(group[x].unique())))
            md = out / f"table_{name}{tag}.md"
            md.write_text((f"**{title}** — {name}\n\n" if title else f"{name}\n\n") + matrix_markdown(matrix, x, y))
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
                log: bool) -> list[Path]:
    """Overlay a history.csv column of every point, one figure per column (and per value of `by`)."""
    groups = results.groupby(by, sort=False) if by else [(None, results)]
    labelled = [a for a in axes if a != by]
    written = []
    for value, group in groups:
        histories = {}
        for _, row in group.iterrows():
            path = out / row["dir"] / "history.csv"
            if path.exists():
                label = " ".join(f"{a}={row[a]}" for a in labelled if pd.notna(row[a])) or row["dir"]
                histories[label] = pd.read_csv(path)
        for column in columns:
            curves = {label: (h["epoch"].to_numpy(), h[column].to_numpy())
                      for label, h in histories.items() if column in h}
            if not curves:
                raise UsageError(f"no history.csv has a column {column!r}")
            tag = f"_{by}={value}" if by else ""
            written.append(plot_curves(out / f"curves_{column}{tag}.png", curves, ylabel=column, log=log,
                                       title=f"{column}" + (f" ({by}={value})" if by else "")))
    return written


def draw_lines(results: pd.DataFrame, out: Path, axes: list[str], x: str, metric: str, log: bool) -> Path:
    """The metric against a numeric grid key, one line per value of the other keys (seeds averaged)."""
    others = split_axes(results, axes, [x])
    curves = {}
    for key, group in groups_by(results, others):
        means = pd.to_numeric(group[metric], errors="coerce").groupby(pd.to_numeric(group[x])).mean().sort_index()
        curves[" ".join(f"{a}={v}" for a, v in zip(others, key) if pd.notna(v)) or metric] = (means.index.to_numpy(),
                                                                                means.to_numpy())
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


def parse_args(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    fixed = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = ArgumentParser(prog="python -m common.sweep", description=__doc__.splitlines()[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 2)[2])
    parser.add_argument("lab", help="lab package, e.g. lab1_fnn")
    parser.add_argument("--grid", nargs="+", action="append", required=True, metavar="KEY=VALUES",
                        help="one grid; repeat for a union of grids")
    parser.add_argument("--seeds", type=positive_int, help="add the axis seed=0..N-1")
    parser.add_argument("--out", type=Path, help="sweep folder (default runs/sweeps/<lab>)")
    parser.add_argument("--jobs", type=positive_int, default=1, help="worker processes (1: run in this process)")
    parser.add_argument("--heatmap", metavar="X,Y", help="two grid keys: x axis, y axis")
    parser.add_argument("--metric", default=None, help="summary key for the heatmap and summary table")
    parser.add_argument("--table", nargs="+", default=[], metavar="KEY",
                        help="more summary keys for the summary table (and matrices with --heatmap)")
    parser.add_argument("--log-color", action="store_true", help="logarithmic colour (heatmap) or y scale (spread)")
    parser.add_argument("--curves", nargs="+", default=[], metavar="COLUMN",
                        help="history.csv columns to overlay across points, one figure each")
    parser.add_argument("--curves-by", metavar="KEY", help="one overlay figure per value of this grid key")
    parser.add_argument("--lines", metavar="KEY", help="plot --metric against this numeric grid key, "
                        "one line per value of the other keys")
    parser.add_argument("--images", metavar="FILE", help="an image file of every run (e.g. result.png) to show "
                        "side by side in one grid")
    parser.add_argument("--title", help="title of the sweep in the report")
    args = parser.parse_args(argv)
    args.fixed = fixed
    args.grids = [parse_grid(specs) for specs in args.grid]
    if args.seeds:
        args.grids = [{**g, "seed": [str(s) for s in range(args.seeds)]} for g in args.grids]
    if args.heatmap:
        if not args.metric or len(args.heatmap.split(",")) != 2:
            raise UsageError("--heatmap takes two grid keys X,Y and needs --metric")
        args.heatmap = [a.replace("-", "_") for a in args.heatmap.split(",")]
    if args.lines and not args.metric:
        raise UsageError("--lines needs --metric")
    if not (ROOT / args.lab / "train.py").exists():
        labs = sorted(p.parent.name for p in ROOT.glob("lab*/train.py"))
        raise UsageError(f"unknown lab {args.lab!r}; labs: {', '.join(labs)}")
    args.out = args.out or Path("runs/sweeps") / args.lab
    return args


def main(argv=None) -> pd.DataFrame:
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT))
    lab = importlib.import_module(f"{args.lab}.train")
    points = expand_points(args.grids)
    axes = list(dict.fromkeys(k for p in points for k in p))
    missing = [a for a in (args.heatmap or []) + [args.curves_by, args.lines] if a and a not in axes]
    if missing:
        raise UsageError(f"axis {missing[0]!r} is not a grid key; grid keys: {', '.join(axes)}")
    runs = [(p, args.fixed + point_argv(p) + ["--out", str(args.out / point_name(p)), "--quiet"]) for p in points]
    for point, argv in runs:  # every point's flags are checked before anything runs
        try:
            lab.parse_args(argv)
        except UsageError as error:
            raise UsageError(f"point {point_name(point)}: {error}") from None
    check_settings(args.out, {"lab": args.lab, "title": args.title, "fixed": args.fixed, "grids": args.grids,
                              "heatmap": args.heatmap, "metric": args.metric, "table": args.table})

    summaries = {}
    todo = []
    for point, argv in runs:
        done = args.out / point_name(point) / "summary.json"
        if done.exists():
            summaries[point_name(point)] = json.loads(done.read_text())
        else:
            todo.append((point, argv))
    print(f"sweep {args.lab}: {len(points)} points, {len(points) - len(todo)} already done, "
          f"{len(todo)} to run with {args.jobs} job(s) -> {args.out}", flush=True)

    def report(point, summary, seconds):
        summaries[point_name(point)] = summary
        shown = f" {args.metric}={summary.get(args.metric)}" if args.metric else ""
        error = f" ({summary['error']})" if "error" in summary else ""
        print(f"[{len(summaries):>{len(str(len(points)))}}/{len(points)}] {point_name(point)}: "
              f"{summary['status']}{shown}{error} {seconds:.1f}s", flush=True)

    run_points(args.lab, todo, args.jobs, report)

    rows = [{**p, **{k: v for k, v in summaries[point_name(p)].items() if k != "out"},
             "dir": point_name(p)} for p in points]
    results = pd.DataFrame(rows)
    results.to_csv(args.out / "results.csv", index=False)
    metrics = [m for m in [args.metric] + args.table if m]
    (args.out / "summary.md").write_text(summarize(results, axes, metrics))
    written = [args.out / "results.csv", args.out / "summary.md"]
    if args.heatmap:
        written += draw_heatmaps(results, args.out, axes, *args.heatmap, args.metric, args.table, args.log_color)
    elif args.metric:
        written.append(draw_spread(results, args.out, axes, args.metric, args.log_color))
    if args.lines:
        written.append(draw_lines(results, args.out, axes, args.lines, args.metric, args.log_color))
    if args.curves:
        written += draw_curves(results, args.out, axes, args.curves, args.curves_by, args.log_color)
    if args.images:
        written.append(draw_images(results, args.out, axes, args.images, args.metric))
    counts = results["status"].value_counts().to_dict()
    print(f"done: {counts}; wrote {', '.join(p.name for p in written)} in {args.out}")
    return results


if __name__ == "__main__":
    run(main)
