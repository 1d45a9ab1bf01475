"""The best recipe of each lab beside the report and a reference implementation, measured over seeds
(issue 15): `sweeps/best.sh` runs it, `common.report` puts its table at the top of REPORT.md.

    python -m common.best --scale smoke|full [--out runs/sweeps/<scale>] [sweep backend flags]

Every row of ROWS is one task. Each of its variants is a set of flags run as the sweep
best_<row>_<variant> over the row's seeds (resumable like every sweep):
- report: the report's own settings (the lab's defaults where they reproduce it);
- reference: a standard reference implementation's settings (PyG's examples for Lab 4);
- ours: the recipe, a set of flags; no code forks.
Then best.md: the report's stated number (from the lab's report_numbers.csv), each variant's mean ± std
over its seeds, the target and whether ours meets it. SCALE=smoke runs every variant with the row's
smoke flags added (fewer epochs, subsets, two seeds): a check that the recipes run, not their numbers.
"""
import argparse
import operator
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from common import report
from common.cli import ArgumentParser, positive_int, run
from common.runs import write_atomic
from common.sweep import cli as sweep
from common.sweep import tables

VARIANTS = ("report", "reference", "ours")
COMPARE = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True)
class Row:
    key: str  # the sweeps best_<key>_<variant>
    lab: str
    task: str
    metric: str  # summary key
    target: tuple[str, float]  # (">=" | "<=", value) that ours should reach
    seeds: int
    variants: dict  # variant -> flags
    smoke: tuple = ()  # flags added to every variant at SCALE=smoke
    stated: str | None = None  # `description` of the report's number in the lab's report_numbers.csv
    fmt: str = ".4f"

    def sweep_name(self, variant: str) -> str:
        return f"best_{self.key}_{variant}"


KIPF = ("--split", "public", "--layers", "2", "--hidden", "16", "--activation", "relu", "--dropout", "0.5",
        "--lr", "0.01", "--weight-decay", "5e-4", "--epochs", "200")
LAB4_SMOKE = ("--epochs", "20")

ROWS = [
    Row("lab4_cora_public", "lab4_gcn", "Cora node accuracy, Planetoid public split", "test_score", (">=", 0.815), 10,
        {"reference": KIPF, "ours": KIPF}, LAB4_SMOKE),
    Row("lab4_citeseer_public", "lab4_gcn", "CiteSeer node accuracy, Planetoid public split", "test_score",
        (">=", 0.703), 10, {"reference": (*KIPF, "--dataset", "citeseer"), "ours": (*KIPF, "--dataset", "citeseer")},
        LAB4_SMOKE),
]


def sweep_argv(row: Row, variant: str, scale: str, out: Path, backend: list[str]) -> list[str]:
    seeds = min(row.seeds, 2) if scale == "smoke" else row.seeds
    flags = [*row.variants[variant], *(row.smoke if scale == "smoke" else ())]
    return [row.lab, "--out", str(out / row.sweep_name(variant)), *backend, "--grid", f"seed=0..{seeds - 1}",
            "--metric", row.metric, "--title", f"Best recipes: {row.task}, {variant}", "--", *flags]


def stated_number(row: Row) -> float | None:
    if row.stated is None:
        return None
    for number in report.read_rows(report.LABS_ROOT / row.lab / "report_numbers.csv"):
        if number["description"] == row.stated:
            return float(number["value"])
    raise KeyError(f"{row.lab}/report_numbers.csv has no row {row.stated!r}")


def measured(out: Path, row: Row, variant: str) -> pd.Series | None:
    """The metric of every finished seed of a variant's sweep; None when it has not run."""
    path = out / row.sweep_name(variant) / "results.csv"
    if variant not in row.variants or not path.exists():
        return None
    results = pd.read_csv(path)
    return report.values(results[results["status"].isin(tables.FINISHED)], row.metric)


def table(out: Path, scale: str) -> str:
    """best.md: one line per row, the report's stated number, each variant measured, the target."""
    what = "smoke: a check that the recipes run, not their numbers" if scale == "smoke" else "full"
    lines = [f"Measured at SCALE={scale} ({what}); mean ± std over seeds (n). Flags of each variant: "
             "common/best.py, and each lab's README.", "",
             "| task | metric | report (stated) | report's settings | reference | ours | target | met |",
             "|---|---|---|---|---|---|---|---|"]
    for row in ROWS:
        cells = {v: measured(out, row, v) for v in VARIANTS}
        stated = stated_number(row)
        op, goal = row.target
        ours = cells["ours"]
        met = "—" if ours is None or ours.empty else ("yes" if COMPARE[op](ours.mean(), goal) else "no")
        lines.append("| " + " | ".join([
            row.task, row.metric, "—" if stated is None else format(stated, row.fmt),
            *(link(out, row, v, cells[v]) for v in VARIANTS), f"{op} {goal:g}", met]) + " |")
    return "\n".join(lines) + "\n"


def link(out: Path, row: Row, variant: str, values: pd.Series | None) -> str:
    if values is None:
        return "—"
    text = report.mean_std(values)
    return f"[{text}]({os.path.relpath(out / row.sweep_name(variant) / 'results.csv', out)})"


def main(argv=None) -> Path:
    parser = ArgumentParser(prog="python -m common.best", description=__doc__.splitlines()[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["smoke", "full"], default="smoke")
    parser.add_argument("--out", type=Path, help="folder of the sweeps and best.md (default runs/sweeps/<scale>)")
    parser.add_argument("--rows", nargs="+", choices=[row.key for row in ROWS], help="only these rows")
    parser.add_argument("--jobs", type=positive_int, help="as the sweep runner's")
    args, backend = parser.parse_known_args(argv)
    out = args.out or Path("runs/sweeps") / args.scale
    backend = [*backend, *(["--jobs", str(args.jobs)] if args.jobs else [])]
    for row in ROWS:
        if args.rows and row.key not in args.rows:
            continue
        for variant in VARIANTS:
            if variant in row.variants:
                sweep.main(sweep_argv(row, variant, args.scale, out, backend))
    path = out / "best.md"
    write_atomic(path, table(out, args.scale))
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    run(main)
