"""Gather the sweeps' tables and figures into one Markdown report.

    python -m common.report --sweeps runs/sweeps/smoke --out report

Every folder under --sweeps that holds a sweep.json (written by common.sweep) becomes a section,
in the order of the labs and then by name: its title, the command's settings, its Markdown
tables (the heatmap matrices, else summary.md) and its figures, linked relative to the report.
"""
import json
import os
from pathlib import Path

from common.cli import ArgumentParser, UsageError, run


def section(sweep_dir: Path, report_dir: Path) -> str:
    settings = json.loads((sweep_dir / "sweep.json").read_text())
    title = settings.get("title") or sweep_dir.name
    grids = " ∪ ".join(" × ".join(f"{k}∈{{{','.join(v)}}}" for k, v in g.items()) for g in settings["grids"])
    lines = [f"## {title}", "",
             f"`{settings['lab']}` over {grids}; fixed flags: `{' '.join(settings['fixed']) or '(none)'}`. "
             f"Raw results: [results.csv]({os.path.relpath(sweep_dir / 'results.csv', report_dir)}).", ""]
    keys = [k for k in [settings.get("metric")] + settings.get("table", []) if k]

    def by_key(path):  # the metric's tables first, then those of --table in their order
        return next((i for i, k in enumerate(keys) if path.stem.startswith(f"table_{k}")), len(keys)), path.name
    tables = sorted(sweep_dir.glob("table_*.md"), key=by_key) or [sweep_dir / "summary.md"]
    for table in tables:
        if table.exists():
            lines += [table.read_text(), ""]
    for figure in sorted(sweep_dir.glob("*.png")):
        lines += [f"![{figure.stem}]({os.path.relpath(figure, report_dir)})", ""]
    return "\n".join(lines)


def main(argv=None) -> Path:
    parser = ArgumentParser(prog="python -m common.report", description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=Path, default=Path("runs/sweeps/smoke"), help="folder of sweep folders")
    parser.add_argument("--out", type=Path, default=Path("report"), help="report folder (REPORT.md)")
    args = parser.parse_args(argv)
    sweeps = sorted(p.parent for p in args.sweeps.glob("*/sweep.json"))
    if not sweeps:
        raise UsageError(f"no sweep results under {args.sweeps}; run the scripts in sweeps/ first")
    args.out.mkdir(parents=True, exist_ok=True)
    body = [f"# Lab report, regenerated from {args.sweeps}", ""] + [section(s, args.out) for s in sweeps]
    path = args.out / "REPORT.md"
    path.write_text("\n".join(body))
    print(f"wrote {path} ({len(sweeps)} sweeps)")
    return path


if __name__ == "__main__":
    run(main)
