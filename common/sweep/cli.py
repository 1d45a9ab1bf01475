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

Each point runs in its own folder under --out, by calling the lab's `main(argv)`. --backend local
(the default): in this process, or in a pool of --jobs worker processes (each imports torch once).
--backend ray: each point a Ray task (pip install -e .[cluster]), on a Ray started for the sweep or,
with --address, on a running cluster (auto: the one `ray start` runs on this machine); a point gets
--cpus-per-point CPUs (its torch threads) and --gpus-per-point GPUs, fractions allowed (0.25: four
points share a GPU). On a cluster, every node needs this checkout and its venv at the same paths,
and --out a filesystem they all share. A point whose folder already holds a summary.json is not
run again (resume); one interrupted after a last.pt (labs 1-4) continues from it with --resume. A
point that fails or diverges is recorded with its status and the sweep goes on. Outputs:
results.csv (one row per point), summary.md (mean ± std over seeds); with --heatmap one annotated
heatmap and Markdown matrices per value of the other axes, else a spread plot of --metric; with
--lines the metric against a key; with --curves overlays of history.csv columns.
"""
import argparse
import importlib
import math
import sys
import time
from functools import partial
from pathlib import Path

import pandas as pd

from common.cli import ArgumentParser, UsageError, folder, non_negative_float, positive_float, positive_int
from common.runs import abandon_active_runs, write_atomic
from common.sweep.grid import expand_points, parse_grid, point_argv, point_name
from common.sweep.runner import claim_folder, clear_unfinished, read_json, resumable, run_points
from common.sweep.tables import draw_curves, draw_heatmaps, draw_images, draw_lines, draw_spread, summarize

LABS_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds lab*/train.py


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
    parser.add_argument("--out", type=lambda text: Path(folder(text)), help="sweep folder (default runs/sweeps/<lab>)")
    parser.add_argument("--backend", choices=["local", "ray"], default="local",
                        help="local: this process or --jobs workers (default); ray: every point a Ray task")
    parser.add_argument("--jobs", type=positive_int, help="local: worker processes (1: run in this process)")
    parser.add_argument("--address", type=ray_address, help="ray: the cluster to join, e.g. auto or HEAD:6379 "
                        "(default: start a local Ray for the sweep)")
    parser.add_argument("--cpus-per-point", type=positive_float, help="ray: CPUs per point, also its torch "
                        "threads (1)")
    parser.add_argument("--gpus-per-point", type=non_negative_float, help="ray: GPUs per point; 0.25 packs four "
                        "points on a GPU; with 0 a point sees no GPU (0)")
    parser.add_argument("--no-batch", action="store_true",
                        help="run every point on its own, even where the lab trains points together (lab 1)")
    parser.add_argument("--heatmap", metavar="X,Y", help="two grid keys: x axis, y axis")
    parser.add_argument("--metric", default=None, help="summary key for the heatmap and summary table")
    parser.add_argument("--table", nargs="+", default=[], metavar="KEY",
                        help="more summary keys for the summary table (and matrices with --heatmap)")
    parser.add_argument("--log-color", action="store_true", help="logarithmic colour (heatmap) or y scale (spread)")
    parser.add_argument("--curves", nargs="+", default=[], metavar="COLUMN",
                        help="history.csv columns to overlay across points, one figure each")
    parser.add_argument("--curves-by", metavar="KEY", help="one overlay figure per value of this grid key")
    parser.add_argument("--curves-until", metavar="KEY", help="end each overlaid curve at the point's value of "
                        "this summary key, e.g. best_epoch (history.csv keeps the whole curve)")
    parser.add_argument("--lines", metavar="KEY", help="plot --metric against this numeric grid key, "
                        "one line per value of the other keys")
    parser.add_argument("--images", metavar="FILE", help="an image file of every run (e.g. result.png) to show "
                        "side by side in one grid")
    parser.add_argument("--title", help="title of the sweep in the report")
    parser.add_argument("--setting", help="how this sweep's setting differs from the report's, in a few words "
                        "(shown beside the report's numbers in REPORT.md)")
    args = parser.parse_args(argv)
    args.fixed = fixed
    check_backend(args)
    args.grids = [parse_grid(specs) for specs in args.grid]
    if args.seeds:
        args.grids = [{**g, "seed": [str(s) for s in range(args.seeds)]} for g in args.grids]
    if args.heatmap:
        if not args.metric or len(args.heatmap.split(",")) != 2:
            raise UsageError("--heatmap takes two grid keys X,Y and needs --metric")
        args.heatmap = [a.replace("-", "_") for a in args.heatmap.split(",")]
    if args.lines and not args.metric:
        raise UsageError("--lines needs --metric")
    if not (LABS_ROOT / args.lab / "train.py").exists():
        labs = sorted(p.parent.name for p in LABS_ROOT.glob("lab*/train.py"))
        raise UsageError(f"unknown lab {args.lab!r}; labs: {', '.join(labs)}")
    args.out = args.out or Path("runs/sweeps") / args.lab
    return args


def ray_address(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a Ray cluster (auto, or HEAD:6379), got an empty string")
    return text


def check_backend(args) -> None:
    """Refuse the flags of the other backend rather than ignore them; then fill in the defaults."""
    ray_flags = {"--address": args.address, "--cpus-per-point": args.cpus_per_point,
                 "--gpus-per-point": args.gpus_per_point}
    given = [flag for flag, value in ray_flags.items() if value is not None]
    if args.backend == "local" and given:
        raise UsageError(f"{given[0]} needs --backend ray")
    if args.backend == "ray" and args.jobs is not None:
        raise UsageError("--jobs is for --backend local; on Ray, --cpus-per-point and the cluster's CPUs decide "
                         "how many points run at once")
    args.jobs = args.jobs or 1
    args.cpus_per_point = args.cpus_per_point or 1.0
    args.gpus_per_point = args.gpus_per_point or 0.0


def points_runner(args):
    """run(lab, todo, report) of the chosen backend; Ray is imported only when asked for."""
    if args.backend == "local":
        return partial(run_points, jobs=args.jobs)
    from common.sweep import ray_backend
    return ray_backend.points_runner(args.address, args.cpus_per_point, args.gpus_per_point)


def backend_text(args) -> str:
    if args.backend == "local":
        return f"with {args.jobs} job(s)"
    return (f"as Ray tasks of {args.cpus_per_point:g} CPU and {args.gpus_per_point:g} GPU on "
            f"{args.address or 'a local Ray'}")


def main(argv=None) -> pd.DataFrame:
    args = parse_args(argv)
    lab = importlib.import_module(f"{args.lab}.train")
    points = expand_points(args.grids)
    axes = list(dict.fromkeys(k for p in points for k in p))
    missing = [a for a in (args.heatmap or []) + [args.curves_by, args.lines] if a and a not in axes]
    if missing:
        raise UsageError(f"axis {missing[0]!r} is not a grid key; grid keys: {', '.join(axes)}")
    names = [point_name(p) for p in points]
    clash = next((n for n in names if names.count(n) > 1), None)
    if clash:
        raise UsageError(f"two grid points would share the folder {clash} (values that differ only in characters "
                         f"a file name cannot hold); rename one")
    runs = [(p, args.fixed + point_argv(p) + ["--out", str(args.out / point_name(p)), "--quiet"]) for p in points]
    for point, argv in runs:  # every point's flags (and the files they name) are checked before anything runs
        try:
            point_args = lab.parse_args(argv)
            if hasattr(lab, "resolve_inputs"):
                lab.resolve_inputs(point_args)
        except UsageError as error:
            raise UsageError(f"point {point_name(point)}: {error}") from None
    runner = points_runner(args)
    lock = claim_folder(args.out, {"lab": args.lab, "title": args.title, "setting": args.setting,
                                   "fixed": args.fixed, "grids": args.grids, "heatmap": args.heatmap,
                                   "metric": args.metric, "table": args.table})
    try:
        return run_sweep(args, runner, points, axes, runs, lab)
    finally:
        lock.release()


def groups_of(args, lab, todo: list) -> list[list]:
    """The points to run, in groups that the lab trains together (its ensemble module's batch_key; each
    group at most a --jobs'th of the points, so that every worker gets some); the others alone."""
    try:
        ensemble = importlib.import_module(f"{args.lab}.ensemble")
    except ModuleNotFoundError:
        ensemble = None
    if ensemble is None or args.no_batch:
        return [[item] for item in todo]
    groups = {}
    for point, argv in todo:
        key = ensemble.batch_key(lab.parse_args(argv))
        groups.setdefault(point_name(point) if key is None else key, []).append((point, argv))
    size = max(1, math.ceil(len(todo) / (args.jobs if args.backend == "local" else 1)))
    return [group[i:i + size] for group in groups.values() for i in range(0, len(group), size)]


def run_sweep(args, runner, points, axes, runs, lab) -> pd.DataFrame:
    summaries = {}
    todo = []
    for point, argv in runs:
        summary = read_json(args.out / point_name(point) / "summary.json")
        if summary is not None:
            summaries[point_name(point)] = summary
            continue
        folder = args.out / point_name(point)
        if resumable(folder):
            print(f"point {point_name(point)} was interrupted: resuming it from its last.pt", flush=True)
            argv = [*argv, "--resume"]
        elif clear_unfinished(folder):
            print(f"point {point_name(point)} was left unfinished (no readable summary.json): running it again",
                  flush=True)
        todo.append((point, argv))
    print(f"sweep {args.lab}: {len(points)} points, {len(points) - len(todo)} already done, "
          f"{len(todo)} to run {backend_text(args)} -> {args.out}", flush=True)

    started, finished = time.perf_counter(), []

    def report(point, summary, seconds):
        summaries[point_name(point)] = summary
        finished.append(point)
        value = summary.get(args.metric) if args.metric else None
        shown = f" {args.metric}={value:.4g}" if isinstance(value, float) else f" {args.metric}={value}" \
            if args.metric else ""
        error = f" ({summary['error']})" if "error" in summary else ""
        left = (time.perf_counter() - started) / len(finished) * (len(todo) - len(finished))
        print(f"[{len(summaries):>{len(str(len(points)))}}/{len(points)}] {point_name(point)}: "
              f"{summary['status']}{shown}{error} {seconds:.1f}s, ETA {left / 60:.1f} min", flush=True)

    try:
        runner(args.lab, groups_of(args, lab, todo), report)
    except KeyboardInterrupt:  # what finished is written up; cli.run then says "interrupted", exit 130
        print(f"interrupted: {len(finished)} of {len(todo)} points ran; writing their results", flush=True)
        abandon_active_runs()
        write_results(args, points, axes, summaries, partial=True)
        raise
    return write_results(args, points, axes, summaries)


def write_results(args, points, axes, summaries, partial: bool = False) -> pd.DataFrame:
    """results.csv (a row per point; one that did not run is `unfinished`), summary.md and the figures.
    After an interrupt, a figure that cannot be drawn from the points that finished is left out."""
    unfinished = {"status": "unfinished"}
    rows = [{**p, **{k: v for k, v in summaries.get(point_name(p), unfinished).items() if k != "out"},
             "dir": point_name(p)} for p in points]
    results = pd.DataFrame(rows)
    write_atomic(args.out / "results.csv", results.to_csv(index=False))
    metrics = [m for m in [args.metric] + args.table if m]
    write_atomic(args.out / "summary.md", summarize(results, axes, metrics))
    written = [args.out / "results.csv", args.out / "summary.md"]
    try:
        written += draw_figures(args, results, axes)
    except Exception:  # after an interrupt, what the finished points cannot draw is left out
        if not partial:
            raise
    counts = results["status"].value_counts().to_dict()
    print(f"done: {counts}; wrote {', '.join(p.name for p in written)} in {args.out}")
    return results


def draw_figures(args, results, axes) -> list[Path]:
    written = []
    if args.heatmap:
        written += draw_heatmaps(results, args.out, axes, *args.heatmap, args.metric, args.table, args.log_color)
    elif args.metric:
        written.append(draw_spread(results, args.out, axes, args.metric, args.log_color))
    if args.lines:
        written.append(draw_lines(results, args.out, axes, args.lines, args.metric, args.log_color))
    if args.curves:
        written += draw_curves(results, args.out, axes, args.curves, args.curves_by, args.log_color,
                               args.curves_until)
    if args.images:
        written.append(draw_images(results, args.out, axes, args.images, args.metric))
    return written
