"""The best recipe of each lab beside the report and a reference implementation, measured over seeds
(issue 15): `sweeps/best.sh` runs it, `common.report` puts its table at the top of REPORT.md.

    python -m common.best --scale smoke|full [--out runs/sweeps/<scale>] [--rows KEY...] [--variants NAME...]
                          [sweep backend flags]

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
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from common import report
from common.cli import ArgumentParser, UsageError, positive_int, run
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


# Lab 1: the report's final setting (full-batch SGD, relu, one hidden layer of 100, 100000 epochs) against tanh
# networks trained by Adam with a cosine schedule.
LAB1_REPORT = ("--activation", "relu", "--depth", "1", "--width", "100", "--lr", "0.01", "--epochs", "100000")
LAB1_OURS = ("--activation", "tanh", "--optimizer", "adam", "--lr", "0.01", "--epochs", "20000",
             "--lr-schedule", "cosine")
LAB1_SMOKE = ("--epochs", "500")
# Lab 2: the report's network and schedule (the lab's defaults) against a narrower one that fits 10 CPU minutes
# (bf16 buys the epochs), with a one-cycle rate, label smoothing, mirrored training images, mirror-averaged
# predictions, and the epoch of the best validation accuracy.
LAB2_OURS = ("--widths", "16,32,64,128,64,32", "--epochs", "18", "--lr", "0.1", "--lr-schedule", "onecycle",
             "--label-smoothing", "0.1", "--patience", "18", "--precision", "bf16", "--augment", "flip", "--tta",
             "--select-on", "accuracy")
LAB2_SMOKE = ("--epochs", "1", "--limit-train", "2000", "--limit-test", "1000", "--widths", "8,8,8,8,8,8")
# Lab 3: the report's LSTM (the lab's defaults) against a bidirectional one read by max pooling, from GloVe,
# distilled from the BERT row's run of the same seed ({out}: the folder of the sweeps; that row runs first);
# the embedded MiniLM BERT read by the mean of its last layer, as it was trained to be read.
LAB3_SMOKE = ("--epochs", "1", "--limit-train", "500")
LAB3_BERT = ("--model", "bert", "--pool", "mean", "--epochs", "2", "--batch-size", "32", "--max-len", "96")
LAB3_LSTM = ("--model", "lstm", "--glove", "--bidirectional", "--pool", "max", "--hidden-size", "256",
             "--dropout", "0.5", "--teacher", "{out}/best_lab3_bert_ours", "--teacher-weight", "1")
# Lab 4: PyG's examples/gcn.py (Kipf & Welling's settings) and examples/link_pred.py (two GCNConv layers,
# relu, no dropout, 100 epochs), in our flags.
KIPF = ("--layers", "2", "--hidden", "16", "--activation", "relu", "--dropout", "0.5", "--lr", "0.01",
        "--weight-decay", "5e-4", "--epochs", "200")
LINK_PRED = ("--task", "link", "--layers", "2", "--hidden", "64", "--activation", "relu", "--dropout", "0",
             "--lr", "0.01", "--epochs", "100")
# the report's final settings: tanh, self-loops, no pair-norm; drop-edge where it chose it; epochs "until
# converged" (not stated): 500 with our patience
REPORT_NODE = ("--activation", "tanh", "--epochs", "500")
LAB4_SMOKE = ("--epochs", "20")
CORA, CITESEER = ("--dataset", "cora"), ("--dataset", "citeseer")
DROP_EDGE = ("--drop-edge", "0.2")
LAB4_NODE = ("--activation", "tanh", "--hidden", "256", "--dropout", "0.8")  # Cora
# CiteSeer: the report's settings without drop-edge, with the patience to wait out its noisier validation
CITESEER_NODE = (*REPORT_NODE, "--patience", "100")
LAB4_LINK = ("--task", "link", "--activation", "tanh", "--hidden", "256", "--epochs", "500")
PUBLIC_OURS = ("--split", "public", "--hidden", "64", "--dropout", "0.8", "--label-smoothing", "0.1")

ROWS = [
    Row("lab1_sin", "lab1_fnn", "y = sin x (Lab 1)", "test_mse", ("<=", 1e-6), 3,
        {"report": LAB1_REPORT, "ours": (*LAB1_OURS, "--width", "64", "--depth", "2")}, LAB1_SMOKE,
        stated="test MSE of the final model", fmt=".3g"),
    Row("lab1_log2cos", "lab1_fnn", "y = log2 x + cos(πx/2) (Lab 1)", "test_mse", ("<=", 1e-5), 3,
        {"report": (*LAB1_REPORT, "--function", "log2cos"),
         "ours": (*LAB1_OURS, "--function", "log2cos", "--width", "64", "--depth", "3")}, LAB1_SMOKE, fmt=".3g"),
    Row("lab2_fashion", "lab2_cnn", "Fashion-MNIST test top-1 (Lab 2)", "test_top1", (">=", 0.94), 3,
        {"report": (), "ours": LAB2_OURS}, LAB2_SMOKE),
    Row("lab3_bert", "lab3_text", "Rotten Tomatoes, embedded MiniLM BERT (Lab 3)", "test_acc", (">=", 0.86), 3,
        {"report": ("--model", "bert"), "ours": LAB3_BERT}, LAB3_SMOKE),
    Row("lab3_lstm", "lab3_text", "Rotten Tomatoes, rnn/lstm/transformer (Lab 3)", "test_acc", (">=", 0.81), 3,
        {"report": ("--model", "lstm"), "ours": LAB3_LSTM}, LAB3_SMOKE),
    Row("lab4_cora_node", "lab4_gcn", "Cora nodes, random 60/20/20 (Lab 4)", "test_score", (">=", 0.89), 5,
        {"report": (*REPORT_NODE, *CORA), "reference": (*KIPF, *CORA), "ours": (*LAB4_NODE, *CORA)}, LAB4_SMOKE,
        stated="cora-N final test score"),
    Row("lab4_citeseer_node", "lab4_gcn", "CiteSeer nodes, random 60/20/20 (Lab 4)", "test_score", (">=", 0.78), 5,
        {"report": (*REPORT_NODE, *CITESEER, *DROP_EDGE), "reference": (*KIPF, *CITESEER),
         "ours": (*CITESEER_NODE, *CITESEER)}, LAB4_SMOKE, stated="cite-N final test score"),
    Row("lab4_cora_link", "lab4_gcn", "Cora links, ROC-AUC (Lab 4)", "test_score", (">=", 0.93), 5,
        {"report": ("--task", "link", *REPORT_NODE, *CORA, *DROP_EDGE), "reference": (*LINK_PRED, *CORA),
         "ours": (*LAB4_LINK, *CORA)}, LAB4_SMOKE, stated="cora-L final test score"),
    Row("lab4_citeseer_link", "lab4_gcn", "CiteSeer links, ROC-AUC (Lab 4)", "test_score", (">=", 0.93), 5,
        {"report": ("--task", "link", *REPORT_NODE, *CITESEER), "reference": (*LINK_PRED, *CITESEER),
         "ours": (*LAB4_LINK, *CITESEER)}, LAB4_SMOKE, stated="cite-L final test score"),
    Row("lab4_cora_public", "lab4_gcn", "Cora nodes, Planetoid public split (Lab 4; paper 0.815)", "test_score",
        (">=", 0.815), 10, {"reference": (*KIPF, *CORA, "--split", "public"),
                            "ours": (*KIPF, *CORA, *PUBLIC_OURS)}, LAB4_SMOKE),
    Row("lab4_citeseer_public", "lab4_gcn", "CiteSeer nodes, Planetoid public split (Lab 4; paper 0.703)",
        "test_score", (">=", 0.703), 10, {"reference": (*KIPF, *CITESEER, "--split", "public"),
                                          "ours": (*KIPF, *CITESEER, *PUBLIC_OURS)},
        LAB4_SMOKE),
]


def sweep_argv(row: Row, variant: str, scale: str, out: Path, backend: list[str]) -> list[str]:
    seeds = min(row.seeds, 2) if scale == "smoke" else row.seeds
    flags = [*row.variants[variant], *(row.smoke if scale == "smoke" else ())]
    flags = [flag.replace("{out}", str(out)) for flag in flags]
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


def table(out: Path, scale: str, skipped: dict | None = None) -> str:
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
        if row.key in (skipped or {}):
            met = f"not run: {skipped[row.key]}"
        else:
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
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=VARIANTS,
                        help="only these variants of each row (e.g. ours: Lab 2's report settings take hours on a CPU)")
    parser.add_argument("--jobs", type=positive_int, help="as the sweep runner's")
    args, backend = parser.parse_known_args(argv)
    out = args.out or Path("runs/sweeps") / args.scale
    backend = [*backend, *(["--jobs", str(args.jobs)] if args.jobs else [])]
    skipped = {}
    for row in ROWS:
        if args.rows and row.key not in args.rows:
            continue
        try:
            for variant in args.variants:
                if variant in row.variants:
                    sweep.main(sweep_argv(row, variant, args.scale, out, backend))
        except UsageError as error:  # its data missing (e.g. Planetoid's files): the other rows still run
            skipped[row.key] = str(error)
            print(f"skipped {row.key}: {error}", file=sys.stderr)
    path = out / "best.md"
    write_atomic(path, table(out, args.scale, skipped))
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    run(main)
