"""common.best (sweeps/best.sh): every recipe and reference of ROWS runs end to end on a tiny subset, and the
table puts the report's number, the variants measured and the target side by side."""
import importlib
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from common import best
from common import report as reports

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
# what makes each lab's run tiny; the recipes' own flags come first, so these win
TINY = {"lab1_fnn": ["--epochs", "3", "--n-points", "60"],
        "lab2_cnn": ["--epochs", "1", "--limit-train", "200", "--limit-test", "100", "--widths", "4,4,4,4,4,4"],
        "lab3_text": ["--epochs", "1", "--limit-train", "64", "--max-len", "16"],
        "lab4_gcn": ["--epochs", "2"]}


def needs_shared(row: best.Row, variant: str) -> bool:
    return "public" in row.variants[variant] or "citeseer" in row.variants[variant]


@pytest.mark.parametrize("row, variant", [(row, variant) for row in best.ROWS for variant in row.variants],
                         ids=lambda value: value.key if isinstance(value, best.Row) else value)
def test_every_recipe_runs_end_to_end_on_a_tiny_subset(tmp_path, row, variant):
    out = tmp_path / "sweeps"
    argv = best.sweep_argv(row, variant, "smoke", out, [])
    flags = argv[argv.index("--") + 1:] + TINY[row.lab]  # the point's flags, {out} filled in
    assert "{out}" not in " ".join(flags)
    if "--teacher" in flags:  # the BERT row's run of the same split; here a tiny LSTM stands in for it
        teacher = importlib.import_module(f"{row.lab}.train")
        teacher.main(["--model", "lstm", *TINY[row.lab], "--quiet", "--out", str(out / "best_lab3_bert_ours/seed=0")])
    if needs_shared(row, variant):
        if not (SHARED / "Planetoid").exists():
            pytest.skip("../shared/data/Planetoid is absent")
        flags += ["--data-root", str(SHARED)]
    train = importlib.import_module(f"{row.lab}.train")
    if "bert" in row.variants[variant]:
        # evaluating the full validation and test sets with MiniLM takes a minute even after 64 texts;
        # tests/test_lab3.py::test_bert_run trains these flags end to end
        args = train.parse_args([*flags, "--quiet", "--out", str(tmp_path / "run")])
        train.resolve_inputs(args)
        return
    summary = train.main([*flags, "--quiet", "--out", str(tmp_path / "run")])
    assert summary["status"] in ("ok", "early_stopped") and summary[row.metric] is not None


def test_every_row_names_a_stated_number_the_report_has_and_an_ours():
    for row in best.ROWS:
        assert "ours" in row.variants and set(row.variants) <= set(best.VARIANTS)
        assert row.stated is None or isinstance(best.stated_number(row), float)


def test_the_table_puts_the_report_the_variants_and_the_target_side_by_side(tmp_path, monkeypatch):
    flags = ("--epochs", "30", "--n-points", "60", "--width", "8")
    row = best.Row("tiny", "lab1_fnn", "sin, tiny", "test_mse", ("<=", 10.0), 3,
                   {"report": flags, "ours": (*flags, "--optimizer", "adam")}, smoke=("--epochs", "20"),
                   stated="test MSE of the final model", fmt=".3g")
    missing = replace(row, key="missing", task="needs files", variants={"ours": (*flags, "--split", "1:1")})
    monkeypatch.setattr(best, "ROWS", [row, missing])
    path = best.main(["--scale", "smoke", "--out", str(tmp_path / "sweeps"), "--jobs", "1"])
    line = next(line for line in path.read_text().splitlines() if line.startswith("| sin, tiny"))
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[:3] == ["sin, tiny", "test_mse", "0.00104"]  # the report's stated final test MSE
    assert cells[3].startswith("[") and "(n=2)" in cells[3] and "best_tiny_report/results.csv" in cells[3]
    assert cells[4] == "—" and "(n=2)" in cells[5] and cells[6:] == ["<= 10", "yes"]
    assert (tmp_path / "sweeps/best_tiny_ours/results.csv").exists()
    skipped = next(line for line in path.read_text().splitlines() if line.startswith("| needs files"))
    assert "not run: " in skipped and "--split" in skipped
    report = reports.main(["--sweeps", str(tmp_path / "sweeps"), "--out", str(tmp_path / "report")]).read_text()
    assert "## Best recipes" in report and "../sweeps/best_tiny_report/results.csv" in report
    assert "## Best recipes: sin, tiny" not in report  # its sweeps are in the table, not sections of their own


def test_variants_runs_only_those_and_the_table_keeps_what_ran_before(tmp_path, monkeypatch):
    flags = ("--epochs", "20", "--n-points", "60", "--width", "8")
    row = best.Row("tiny", "lab1_fnn", "sin, tiny", "test_mse", ("<=", 10.0), 2,
                   {"report": flags, "ours": (*flags, "--optimizer", "adam")})
    monkeypatch.setattr(best, "ROWS", [row])
    out = tmp_path / "sweeps"
    best.main(["--scale", "smoke", "--out", str(out), "--jobs", "1", "--variants", "ours"])
    assert (out / "best_tiny_ours/results.csv").exists() and not (out / "best_tiny_report").exists()
    path = best.main(["--scale", "smoke", "--out", str(out), "--jobs", "1", "--variants", "report"])
    cells = [cell.strip() for cell in path.read_text().splitlines()[-1].strip("|").split("|")]
    assert "best_tiny_report/results.csv" in cells[3] and "best_tiny_ours/results.csv" in cells[5]


def test_best_sh_refuses_a_bad_scale():
    bad = subprocess.run(["bash", str(ROOT / "sweeps/best.sh")], env={"SCALE": "huge", "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "SCALE must be smoke or full" in bad.stderr
