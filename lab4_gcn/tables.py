"""The report's regularizer tables from a lab4_regularizers sweep: best validation score per
(self-loop, pair-norm, drop-edge) combination (rows, T/F) and dataset-task pair (columns), one
table per activation, the best of each column in bold and the second best in italics.

    python -m lab4_gcn.tables runs/sweeps/smoke/lab4_regularizers
"""
from pathlib import Path

import pandas as pd

from common.cli import ArgumentParser, UsageError, run
from common.runs import write_atomic
from common.sweep.tables import FINISHED

COLUMNS = [(d, t) for t in ("node", "link") for d in ("cora", "citeseer", "ppi")]
SHORT = {"cora": "cora", "citeseer": "cite", "ppi": "ppi", "node": "N", "link": "L"}


def combination(row) -> str:
    return "".join("T" if flag else "F" for flag in (row["self_loop"], row["pair_norm"], float(row["drop_edge"]) > 0))


def regularizer_table(results: pd.DataFrame) -> pd.DataFrame:
    """Rows FFF..TTT, columns cora-N ... ppi-L (those present), mean best_val_score over seeds."""
    columns = [f"{SHORT[d]}-{SHORT[t]}" for d, t in zip(results["dataset"], results["task"], strict=True)]
    results = results.assign(combo=results.apply(combination, axis=1), column=columns)
    table = results.pivot_table(index="combo", columns="column", values="best_val_score", aggfunc="mean")
    order = [f"{SHORT[d]}-{SHORT[t]}" for d, t in COLUMNS]
    return table.reindex(columns=[c for c in order if c in table.columns]).sort_index()


def to_markdown(table: pd.DataFrame) -> str:
    lines = ["| params | " + " | ".join(table.columns) + " |", "|---" * (len(table.columns) + 1) + "|"]
    ranks = table.rank(ascending=False, method="min")
    for combo, row in table.iterrows():
        cells = []
        for column, value in row.items():
            text = "—" if pd.isna(value) else f"{value:.4f}"
            rank = ranks.loc[combo, column]
            cells.append(f"**{text}**" if rank == 1 else f"*{text}*" if rank == 2 else text)
        lines.append(f"| {combo} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> list[Path]:
    parser = ArgumentParser(prog="python -m lab4_gcn.tables", description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="folder of a lab4_regularizers sweep (holds results.csv)")
    args = parser.parse_args(argv)
    path = args.sweep / "results.csv"
    if not path.exists():
        raise UsageError(f"{path} does not exist; run sweeps/lab4_regularizers.sh first")
    results = pd.read_csv(path)
    results = results[results["status"].isin(FINISHED)]  # as in the heatmaps: no number of a broken run
    written = []
    for activation, group in results.groupby("activation"):
        table = regularizer_table(group)
        stem = args.sweep / f"table_regularizers_{activation}"
        write_atomic(stem.with_suffix(".csv"), table.to_csv(float_format="%.4f"))
        heading = f"**activation {activation}**: best validation score; T/F = self-loop, pair-norm, drop-edge; " \
                  f"bold = best, italics = second best of each column\n\n"
        write_atomic(stem.with_suffix(".md"), heading + to_markdown(table))
        written += [stem.with_suffix(".csv"), stem.with_suffix(".md")]
    print("wrote " + ", ".join(str(p) for p in written))
    return written


if __name__ == "__main__":
    run(main)
