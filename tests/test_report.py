"""The reproduction report: the report's numbers as data, REPORT.md side by side, the verdict rules."""
import csv
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from common import report
from common.sweep import cli as sweep
from common.sweep import grid

ROOT = Path(__file__).resolve().parents[1]
LABS = ["lab1_fnn", "lab2_cnn", "lab3_text", "lab4_gcn", "lab5_style"]
NUMBER_COLUMNS = ["section", "description", "setting", "stated", "value", "metric", "sweep", "point", "legible", "note"]


@pytest.mark.parametrize("lab", LABS)
def test_report_numbers_parse_and_name_their_section(lab):
    with open(ROOT / lab / "report_numbers.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows and list(rows[0]) == NUMBER_COLUMNS
    sweeps = {p.stem for p in (ROOT / "sweeps").glob("lab*.sh")} | {"lab5_content_layers", "lab5_style_layers"}
    for row in rows:
        assert row["section"].strip() and row["description"].strip(), row
        assert row["stated"].strip() or row["legible"] == "no", row  # an illegible cell may hold nothing
        assert row["legible"] in ("yes", "no"), row
        if row["value"]:
            float(row["value"])
        assert not row["sweep"] or row["sweep"] in sweeps, row["sweep"]
        assert all("=" in item for item in row["point"].split()), row["point"]


@pytest.mark.parametrize("lab", LABS)
def test_report_claims_name_a_known_rule_and_sweep(lab):
    with open(ROOT / lab / "report_claims.csv", newline="", encoding="utf-8") as f:
        claims = list(csv.DictReader(f))
    assert claims
    for claim in claims:
        assert claim["rule"] in report.RULES and claim["scale"] in ("any", "full") and claim["claim"], claim
        assert claim["axis"] or claim["rule"] in report.COMPARE, claim


def results_frame():
    return pd.DataFrame({"pool": ["avg", "avg", "max", "max", "avg"], "init": ["content"] * 4 + ["noise"],
                         "layers": [2, 3, 2, 3, 2], "status": ["ok", "ok", "ok", "diverged", "ok"],
                         "best_loss": [1.0, 2.0, 3.0, 0.1, 9.0]})


@pytest.mark.parametrize("rule, a, b, axis, holds", [
    ("less", "pool=avg init=content", "pool=max init=content", "", True),    # 1.5 < 3.0 (diverged 0.1 left out)
    ("greater", "pool=avg init=content", "pool=max init=content", "", False),
    ("at_least", "pool=max", "pool=avg init=content", "", True),
    ("increasing", "pool=avg init=content", "", "layers", True),           # 1.0 at 2 layers, 2.0 at 3
    ("decreasing", "pool=avg init=content", "", "layers", False),
    ("lowest", "init=content", "avg", "pool", True),
    ("highest", "init=content", "avg", "pool", False),
    ("less", "pool=avg init=gray", "pool=max", "", None),                  # never run
])
def test_verdict_rules(rule, a, b, axis, holds):
    claim = {"rule": rule, "metric": "best_loss", "a": a, "b": b, "axis": axis}
    assert report.verdict(claim, results_frame())[0] is holds


def test_full_scale_claims_are_not_compared_at_smoke_scale():
    claims = [{"sweep": "s", "claim": "PPI improves", "rule": "less", "metric": "best_loss",
               "a": "pool=avg init=content", "b": "pool=max", "axis": "", "scale": "full",
               "note": "PPI is run at full scale only"}]
    lines = report.conclusions("s", results_frame(), claims, "smoke")
    assert "**not comparable** at smoke scale (PPI is run at full scale only)" in lines[2]
    assert "ours: holds" in report.conclusions("s", results_frame(), claims, "full")[2]


def test_report_md_puts_the_reports_numbers_beside_ours(tmp_path):
    out = tmp_path / "sweeps" / "smoke" / "lab1_depth_width"
    sweep.main(["lab1_fnn", "--out", str(out), "--setting", "tiny test grid",
                "--grid", "activation=relu", "hidden_layers=trained,report", "depth=1..2", "width=5",
                "--seeds", "2", "--heatmap", "depth,width", "--metric", "best_val_mse", "--table", "best_epoch",
                "--", "--epochs", "20", "--n-points", "60"])
    text = report.main(["--sweeps", str(tmp_path / "sweeps" / "smoke"), "--out", str(tmp_path / "report")]).read_text()
    assert "## Deviations from the report" in text and "lab1_fnn/README.md#deviations-from-the-report" in text
    assert "**The report against ours.** Our setting: tiny test grid." in text
    results = pd.read_csv(out / "results.csv")
    epochs = results[(results.hidden_layers == "report") & (results.depth == 1)]["best_epoch"]
    row = next(line for line in text.splitlines() if "`activation=relu depth=1 width=5 hidden_layers=report`" in line)
    assert "| best_epoch | 499 (= 500 in our count) (" in row
    assert f"{epochs.mean():.4g} ± {epochs.std():.2g} (n=2)" in row
    assert "more number(s) of the report for this sweep have no finished point" in text
    verdicts = [line for line in text.splitlines()
                if line.startswith(("- Report: deeper nets fit worse", "- Report: the same claim with every"))]
    assert len(verdicts) == 2 and all("ours: holds" in v or "ours: does not hold" in v for v in verdicts)
    assert "- Report: wider nets fit a little better" in text and "fewer than two values of width" in text


def recorded_sweeps(tmp_path, script, scale):
    """Run a sweep script with a PYTHON that records the sweep command; return its parsed arguments."""
    recorder = tmp_path / "python"
    recorder.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$RECORD/$(date +%s%N).args"\n')
    recorder.chmod(0o755)
    env = {"SCALE": scale, "PYTHON": str(recorder), "RECORD": str(tmp_path), "PATH": "/usr/bin:/bin"}
    assert subprocess.run(["bash", f"sweeps/{script}"], cwd=ROOT, env=env).returncode == 0
    commands = [p.read_text().splitlines()[2:] for p in sorted(tmp_path.glob("*.args"))]  # after -m common.sweep
    return [sweep.parse_args(argv) for argv in commands if argv and argv[0].startswith("lab")]


@pytest.mark.parametrize("scale", ["smoke", "full"])
def test_lab4_layers_sweep_gives_each_pair_the_reports_own_settings(tmp_path, scale):
    from lab4_gcn import train
    (args,) = recorded_sweeps(tmp_path, "lab4_layers.sh", scale)
    chosen = {}
    for point in grid.expand_points(args.grids):
        parsed = train.parse_args(args.fixed + grid.point_argv(point))
        chosen.setdefault((parsed.dataset, parsed.task), set()).add(
            (parsed.activation, parsed.self_loop, parsed.pair_norm, parsed.drop_edge > 0))
        assert 2 <= parsed.layers <= 7
    expected = {("cora", "node"): ("tanh", True, False, False), ("cora", "link"): ("tanh", True, False, True),
                ("citeseer", "node"): ("tanh", True, False, True), ("citeseer", "link"): ("tanh", True, False, False),
                ("ppi", "node"): ("tanh", True, False, False), ("ppi", "link"): ("prelu", True, True, True)}
    pairs = [("cora", "node"), ("cora", "link")] if scale == "smoke" else list(expected)
    assert chosen == {pair: {expected[pair]} for pair in pairs}


def test_a_sweep_with_no_finished_point_gives_not_run_not_a_crash():
    results = pd.DataFrame({"pool": ["avg", "max"], "layers": [2, 3], "status": ["unfinished", "failed"]})
    for claim in ({"rule": "less", "metric": "best_loss", "a": "pool=avg", "b": "pool=max", "axis": ""},
                  {"rule": "increasing", "metric": "best_loss", "a": "pool=avg", "b": "", "axis": "layers"},
                  {"rule": "lowest", "metric": "best_loss", "a": "", "b": "avg", "axis": "pool"}):
        assert report.verdict(claim, results)[0] is None
    numbers = [{"sweep": "s", "metric": "best_loss", "point": "pool=avg", "stated": "0.69", "value": "0.69",
                "legible": "yes", "section": "§4", "setting": "x"}]
    assert "1 more number(s)" in "\n".join(report.comparison("s", results, numbers, "tiny"))


def test_a_numeric_axis_missing_in_some_points_is_still_ordered_as_numbers():
    results = pd.DataFrame({"layers": [2, 10, None], "status": ["ok"] * 3, "score": [0.9, 0.5, 0.1]})
    claim = {"rule": "decreasing", "metric": "score", "a": "", "b": "", "axis": "layers"}
    assert report.verdict(claim, results)[0] is True  # 2 -> 10 falls; "10" < "2" as text would say otherwise
