"""Gather the sweeps into one reproduction report: the report's numbers beside ours, and whether its
conclusions hold.

    python -m common.report --sweeps runs/sweeps/smoke --out report

Every folder under --sweeps that holds a sweep.json (written by common.sweep) becomes a section, in
the order of the labs and then by name: its title and settings; a table of every number the lab
report states for that sweep (the lab's report_numbers.csv, rows whose `sweep` is the folder's
name) beside ours at the same point (mean ± std over seeds, with n), under the setting each came
from; one line per claim of the report (the lab's report_claims.csv) saying whether it holds in our
results, by the rule the line states; then the sweep's tables and figures, linked relative to the
report. A "Deviations" section lists where our code differs from the report's on purpose (the
lab READMEs' "Deviations from the report").
"""
import csv
import json
import math
import os
import re
from pathlib import Path

import pandas as pd

from common.cli import ArgumentParser, UsageError, folder, run
from common.runs import make_folder, write_atomic
from common.sweep import tables

LABS_ROOT = Path(__file__).resolve().parents[1]
RULES = {"less": "<", "greater": ">", "at_least": "≥", "decreasing": "falls along", "increasing": "rises along",
         "lowest": "is the lowest of", "highest": "is the highest of"}
COMPARE = {"less": lambda a, b: a < b, "greater": lambda a, b: a > b, "at_least": lambda a, b: a >= b}


def read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def same(cell, wanted: str) -> bool:
    """A results.csv cell equals a selector value: as numbers when both are, else as lower-case text."""
    try:
        return math.isclose(float(cell), float(wanted))
    except (TypeError, ValueError):
        return str(cell).lower() == wanted.lower()


def select(results: pd.DataFrame, point: str) -> pd.DataFrame:
    """Finished rows matching every key=value of `point`; none when a key is not a column."""
    rows = results[results["status"].isin(tables.FINISHED)]
    for item in point.split():
        key, _, value = item.partition("=")
        if key not in rows:
            return rows.iloc[0:0]
        rows = rows[[same(cell, value) for cell in rows[key]]] if len(rows) else rows
    return rows


def values(rows: pd.DataFrame, metric: str) -> pd.Series:
    return pd.to_numeric(rows[metric], errors="coerce").dropna() if metric in rows else pd.Series(dtype=float)


def mean_std(series: pd.Series) -> str:
    """The sweep tables' mean ± std, with the number of runs behind it."""
    return "—" if series.empty else f"{tables.mean_std(series)} (n={len(series)})"


def comparison(name: str, results: pd.DataFrame, numbers: list[dict], setting: str) -> list[str]:
    """The report's numbers for this sweep beside ours at the same point."""
    rows = [r for r in numbers if r["sweep"] == name and r["metric"]]
    shown = [(r, values(select(results, r["point"]), r["metric"])) for r in rows]
    shown = [(r, ours) for r, ours in shown if not ours.empty]
    if not rows:
        return []
    lines = [f"**The report against ours.** Our setting: {setting or 'as the sweep command above'}.", "",
             "| report section | point | number | report (its setting) | ours |", "|---|---|---|---|---|"]
    for r, ours in shown:
        report = r["stated"] + ("" if r["legible"] == "yes" else " (illegible)")
        if r["value"] and r["stated"] != r["value"] and re.fullmatch(r"[\d.]+", r["stated"]) \
                and float(r["stated"]) != float(r["value"]):
            report += f" (= {float(r['value']):g} in our count)"
        lines.append(f"| {r['section']} | `{r['point'] or '—'}` | {r['metric']} | {report} ({r['setting']}) | "
                     f"{mean_std(ours)} |")
    missing = len(rows) - len(shown)
    if missing:
        lines.append(f"\n{missing} more number(s) of the report for this sweep have no finished point of ours "
                     f"at this scale.")
    return lines + [""]


def group_means(rows: pd.DataFrame, axis: str, metric: str) -> pd.Series:
    if axis not in rows or metric not in rows:
        return pd.Series(dtype=float)
    rows = rows[rows[axis].notna()]  # points of another grid, without this key
    numeric = pd.to_numeric(rows[axis], errors="coerce")
    key = numeric if numeric.notna().all() else rows[axis].astype(str)
    return pd.to_numeric(rows[metric], errors="coerce").groupby(key).mean().dropna().sort_index()


def verdict(claim: dict, results: pd.DataFrame) -> tuple[bool | None, str]:
    """(holds, the numbers that decide it); holds is None when the points were not run."""
    rule, metric = claim["rule"], claim["metric"]
    if rule in COMPARE:
        a, b = (values(select(results, claim[k]), metric) for k in ("a", "b"))
        if a.empty or b.empty:
            return None, "its points were not run"
        holds = bool(COMPARE[rule](a.mean(), b.mean()))
        return holds, (f"{metric}: `{claim['a']}` {mean_std(a)} against `{claim['b']}` {mean_std(b)}; "
                       f"rule: the first {RULES[rule]} the second")
    means = group_means(select(results, claim["a"]), claim["axis"], metric)
    if len(means) < 2:
        return None, f"fewer than two values of {claim['axis']} were run"
    shown = ", ".join(f"{k}: {v:.4g}" for k, v in means.items())
    if rule in ("decreasing", "increasing"):
        holds = bool(means.iloc[-1] < means.iloc[0] if rule == "decreasing" else means.iloc[-1] > means.iloc[0])
    else:
        target = next((v for k, v in means.items() if same(k, claim["b"])), None)
        if target is None:
            return None, f"{claim['axis']}={claim['b']} was not run"
        holds = bool(target == (means.min() if rule == "lowest" else means.max()))
    rule_text = f"{claim['b']} {RULES[rule]} these" if rule in ("lowest", "highest") else \
        f"{metric} {RULES[rule]} {claim['axis']}, its largest value against its smallest"
    return holds, f"mean {metric} by {claim['axis']} ({claim['a'] or 'all points'}): {shown}; rule: {rule_text}"


def conclusions(name: str, results: pd.DataFrame, claims: list[dict], scale: str) -> list[str]:
    lines = []
    for claim in (c for c in claims if c["sweep"] == name):
        if claim["scale"] == "full" and scale != "full":
            lines.append(f"- Report: {claim['claim']} — **not comparable** at {scale} scale ({claim['note']}).")
            continue
        holds, numbers = verdict(claim, results)
        word = "not run" if holds is None else "holds" if holds else "does not hold"
        lines.append(f"- Report: {claim['claim']} — **ours: {word}** ({numbers}).")
    return (["**Does the report's conclusion hold?**", ""] + lines + [""]) if lines else []


def section(sweep_dir: Path, report_dir: Path) -> str:
    try:
        settings = json.loads((sweep_dir / "sweep.json").read_text())
        if not isinstance(settings, dict) or not {"lab", "grids", "fixed"} <= set(settings):
            raise KeyError("lab, grids, fixed")
    except (OSError, ValueError, KeyError) as error:
        raise UsageError(f"{sweep_dir / 'sweep.json'} is unreadable ({type(error).__name__}); rerun the sweep or "
                         f"remove the folder") from None
    title = settings.get("title") or sweep_dir.name
    grids = " ∪ ".join(" × ".join(f"{k}∈{{{','.join(v)}}}" for k, v in g.items()) for g in settings["grids"])
    lines = [f"## {title}", "",
             f"`{settings['lab']}` over {grids}; fixed flags: `{' '.join(settings['fixed']) or '(none)'}`. "
             f"Raw results: [results.csv]({os.path.relpath(sweep_dir / 'results.csv', report_dir)}).", ""]
    if (sweep_dir / "results.csv").exists():
        try:
            results = pd.read_csv(sweep_dir / "results.csv")
            if "status" not in results:
                raise KeyError("status")
        except (ValueError, KeyError) as error:  # empty or garbage: pandas' errors are ValueErrors
            raise UsageError(f"{sweep_dir / 'results.csv'} is unreadable ({type(error).__name__}); rerun the "
                             f"sweep to rewrite it") from None
        lab = LABS_ROOT / settings["lab"]
        lines += comparison(sweep_dir.name, results, read_rows(lab / "report_numbers.csv"), settings.get("setting"))
        lines += conclusions(sweep_dir.name, results, read_rows(lab / "report_claims.csv"), sweep_dir.parent.name)
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


def best_recipes(sweeps: Path, report_dir: Path) -> list[str]:
    """The table of sweeps/best.sh (common.best's best.md), its links made relative to the report."""
    path = sweeps / "best.md"
    if not path.exists():
        return []
    text = re.sub(r"\]\((?!https?:)([^)]+)\)", lambda m: f"]({os.path.relpath(sweeps / m.group(1), report_dir)})",
                  path.read_text(encoding="utf-8"))
    return ["## Best recipes: the report, a reference and ours", "", text, ""]


def deviations(report_dir: Path) -> list[str]:
    """One line per deviation listed in a lab README, linking to it."""
    lines = ["## Deviations from the report", "",
             "Where our code differs from the report's on purpose; each lab README says why.", ""]
    for readme in sorted(LABS_ROOT.glob("lab*/README.md")):
        text = readme.read_text(encoding="utf-8")
        part = text.partition("## Deviations from the report")[2].split("\n## ")[0]
        leads = [re.sub(r"\*\*|`", "", m.group(1)).rstrip(" .:") for m in
                 re.finditer(r"^- (\*\*.+?\*\*|[^:.]+)", part, flags=re.M)]
        link = os.path.relpath(readme, report_dir)
        lines += [f"- [{readme.parent.name}]({link}#deviations-from-the-report): " + "; ".join(leads) + "."]
    return lines + [""]


def main(argv=None) -> Path:
    parser = ArgumentParser(prog="python -m common.report", description=__doc__.splitlines()[0])
    parser.add_argument("--sweeps", type=Path, default=Path("runs/sweeps/smoke"), help="folder of sweep folders")
    parser.add_argument("--out", type=lambda text: Path(folder(text)), default=Path("report"),
                        help="report folder (REPORT.md)")
    args = parser.parse_args(argv)
    sweeps = sorted(p.parent for p in args.sweeps.glob("*/sweep.json"))
    if not sweeps:
        raise UsageError(f"no sweep results under {args.sweeps}; run the scripts in sweeps/ first")
    body = [f"# Lab report, reproduced from {args.sweeps}", ""] + best_recipes(args.sweeps, args.out)
    body += deviations(args.out)
    body += [section(s, args.out) for s in sweeps if not s.name.startswith("best_")]  # best.md shows those
    make_folder(args.out, "--out")
    path = args.out / "REPORT.md"
    write_atomic(path, "\n".join(body))
    print(f"wrote {path} ({len(sweeps)} sweeps)")
    return path


if __name__ == "__main__":
    run(main)
