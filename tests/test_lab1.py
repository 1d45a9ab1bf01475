import csv
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from lab1_fnn import train

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--n-points", "200", "--width", "16", "--quiet"]


def run(tmp_path, *flags, name="run"):
    return train.main([*TINY, *flags, "--out", str(tmp_path / name)])


def test_split_sizes_disjoint_and_complete():
    data = train.make_data("sin", 1000, (5, 2, 3), seed=0)
    assert [len(data[s][0]) for s in ("train", "val", "test")] == [500, 200, 300]
    xs = [set(data[s][0].squeeze(1).tolist()) for s in ("train", "val", "test")]
    assert not (xs[0] & xs[1]) and not (xs[0] & xs[2]) and not (xs[1] & xs[2])
    all_x = np.sort(np.concatenate([data[s][0].squeeze(1).numpy() for s in ("train", "val", "test")]))
    assert np.allclose(all_x, np.linspace(0, 2 * math.pi, 1000, endpoint=False).astype(np.float32))
    for x, y in data.values():
        assert torch.allclose(y, torch.sin(x), atol=1e-6)
    again = train.make_data("sin", 1000, (5, 2, 3), seed=0)
    other = train.make_data("sin", 1000, (5, 2, 3), seed=1)
    assert torch.equal(data["val"][0], again["val"][0]) and not torch.equal(data["val"][0], other["val"][0])


def test_uneven_split_and_log2cos_interval():
    assert train.split_sizes(7, (5, 2, 3)) == (3, 1, 3)
    assert train.split_sizes(10, (1, 1, 1)) == (3, 3, 4)
    data = train.make_data("log2cos", 16, (1, 1, 2), seed=0)
    x = torch.cat([data[s][0] for s in data]).squeeze(1).sort().values
    assert x[0] == 1 and x[-1] == 16  # [1, 16], both ends
    y = torch.cat([data[s][1] for s in data]).squeeze(1)[torch.cat([data[s][0] for s in data]).squeeze(1).argsort()]
    assert torch.allclose(y, torch.log2(x) + torch.cos(math.pi * x / 2), atol=1e-5)


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_every_layer_is_its_own_trained_layer(depth):
    width = 7
    model = train.FunctionNet(width, depth)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == depth + 1 and len(model.hidden) == depth - 1
    params = list(model.parameters())
    assert sum(p.numel() for p in params) == 2 * width + (depth - 1) * (width * width + width) + width + 1
    assert len({p.data_ptr() for p in params}) == len(params) == 2 * (depth + 1)  # no shared tensors
    before = [p.detach().clone() for p in params]
    optimizer = train.make_optimizer("sgd", model.parameters(), 0.1)
    x = torch.linspace(0, 6, 50).unsqueeze(1)
    train.train_one_epoch(model, optimizer, x, torch.sin(x), batch_size=0)
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))  # every layer trained


def test_tiny_run_beats_predicting_the_training_mean(tmp_path):
    summary = run(tmp_path, "--optimizer", "adam", "--epochs", "300")
    data = train.make_data("sin", 200, (5, 2, 3), seed=0)
    baseline = torch.mean((data["test"][1] - data["train"][1].mean()) ** 2).item()
    assert summary["status"] == "ok"
    assert summary["test_mse"] < 0.2 * baseline
    sgd = run(tmp_path, "--epochs", "300", name="sgd")  # the report's optimizer learns too, slower
    assert sgd["test_mse"] < 0.5 * baseline


def test_files_and_keys(tmp_path):
    summary = run(tmp_path, "--epochs", "40", "--depth", "2")
    out = tmp_path / "run"
    assert {"best_val_mse", "best_epoch", "test_mse", "final_train_mse", "epochs_run",
            "wall_seconds", "status"} <= set(summary)
    assert json.loads((out / "summary.json").read_text()) == summary
    config = json.loads((out / "config.json").read_text())
    assert config["depth"] == 2 and config["activation"] == "relu" and "environment" in config
    with open(out / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "train_mse", "val_mse", "lr"] and len(rows) == 40 == summary["epochs_run"]
    assert {r["lr"] for r in rows} == {"0.01"}  # --lr-schedule none: the rate of every step is --lr
    val = [float(r["val_mse"]) for r in rows]
    assert summary["best_epoch"] == int(np.argmin(val)) + 1
    assert summary["best_val_mse"] == pytest.approx(min(val))
    for png in ("loss_curves.png", "fit.png"):
        assert (out / png).stat().st_size > 5000


def test_test_mse_is_that_of_the_best_validation_weights(tmp_path):
    summary = run(tmp_path, "--epochs", "60", "--optimizer", "adam", "--lr", "0.05")
    model = train.FunctionNet(16, 1)
    model.load_state_dict(torch.load(tmp_path / "run/best.pt"))
    data = train.make_data("sin", 200, (5, 2, 3), seed=0)
    assert train.evaluate(model, *data["val"])["mse"] == pytest.approx(summary["best_val_mse"])
    assert train.evaluate(model, *data["test"])["mse"] == pytest.approx(summary["test_mse"])


def test_patience_stops_by_the_reports_rule(tmp_path):
    summary = run(tmp_path, "--epochs", "500", "--optimizer", "adam", "--lr", "0.5", "--patience", "3")
    assert summary["status"] == "early_stopped"
    assert summary["epochs_run"] == summary["best_epoch"] + 4 < 500


def test_nan_loss_stops_as_diverged_and_keeps_files(tmp_path):
    summary = run(tmp_path, "--epochs", "200", "--lr", "1e6", "--depth", "3")
    assert summary["status"] == "diverged" and summary["epochs_run"] < 200
    for name in ("config.json", "history.csv", "summary.json", "loss_curves.png"):
        assert (tmp_path / "run" / name).exists()


@pytest.mark.parametrize("flags", [["--optimizer", "lbfgs", "--lr", "0.5"],
                                   ["--batch-size", "32", "--activation", "tanh"],
                                   ["--activation", "gelu", "--optimizer", "adam"],
                                   ["--activation", "sigmoid", "--function", "log2cos"]])
def test_optimizers_batches_activations_functions(tmp_path, flags):
    summary = run(tmp_path, "--epochs", "15", *flags)
    assert summary["status"] == "ok" and math.isfinite(summary["test_mse"])
    history = (tmp_path / "run/history.csv").read_text().splitlines()
    first, last = (float(line.split(",")[1]) for line in (history[1], history[-1]))
    assert last < first  # training loss went down


def test_same_seed_same_result(tmp_path):
    a = run(tmp_path, "--epochs", "20", name="a")
    b = run(tmp_path, "--epochs", "20", name="b")
    c = run(tmp_path, "--epochs", "20", "--seed", "1", name="c")
    assert a["test_mse"] == b["test_mse"] != c["test_mse"]


@pytest.mark.parametrize("flags, message", [
    (["--width", "0"], "--width: must be a positive integer, got '0'"),
    (["--depth", "-1"], "--depth: must be a positive integer, got '-1'"),
    (["--activation", "swish"], "invalid choice: 'swish'"),
    (["--split", "5:2"], "--split: must be three positive numbers"),
    (["--split", "5:0:3"], "--split: must be three positive numbers"),
    (["--optimizer", "lbfgs", "--batch-size", "8"], "full batch only"),
    (["--n-points", "3"], "too small for --split 5:2:3"),
    (["--lr", "-1"], "--lr: must be a positive number"),
    (["--lr-schedule", "exponential"], "invalid choice: 'exponential'"),
    (["--warmup", "1"], "--warmup: must be a number in [0, 1), got '1'"),
    (["--optimizer", "lbfgs", "--lr-schedule", "cosine"], "not with --lr-schedule or --warmup"),
    (["--optimizer", "lbfgs", "--warmup", "0.1"], "not with --lr-schedule or --warmup"),
])
def test_bad_flags_exit_2_with_one_line(tmp_path, run_cli, flags, message):
    code, err = run_cli(train.main, [*flags, "--out", str(tmp_path / "bad"), "--quiet"])
    assert code == 2 and len(err) == 1 and message in err[0] and err[0].startswith("error: ")
    assert not (tmp_path / "bad").exists()  # nothing written


def test_finished_run_is_never_overwritten(tmp_path, run_cli):
    run(tmp_path, "--epochs", "5")
    before = (tmp_path / "run/summary.json").read_text()
    code, err = run_cli(train.main, [*TINY, "--epochs", "7", "--out", str(tmp_path / "run")])
    assert code == 2 and len(err) == 1 and "already holds a finished run" in err[0]
    assert (tmp_path / "run/summary.json").read_text() == before


def test_script_runs_as_written_and_bad_input_has_no_traceback(tmp_path):
    ok = subprocess.run([sys.executable, "lab1_fnn/train.py", "--width", "75", "--depth", "2", "--epochs", "30",
                         "--out", str(tmp_path / "ok")], cwd=ROOT, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "lab1" in ok.stderr  # the progress bar
    assert json.loads((tmp_path / "ok/summary.json").read_text())["epochs_run"] == 30
    bad = subprocess.run([sys.executable, "lab1_fnn/train.py", "--width", "0"], cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_fit_figure_draws_the_test_points_as_markers(tmp_path, monkeypatch):
    from common import plots
    drawn = {}
    save = plots._save

    def capture(fig, path):
        drawn[path.name] = {line.get_label(): (line.get_linestyle(), line.get_marker()) for line in fig.axes[0].lines}
        return save(fig, path)
    monkeypatch.setattr(plots, "_save", capture)
    run(tmp_path, "--epochs", "5")
    lines = drawn["fit.png"]
    assert lines["test points"] == ("None", ".")  # unsorted x: a line through them would be a thicket
    assert lines["truth"][0] == "-" and lines["best-validation model"][0] == "-"


def test_report_hidden_layers_are_one_shared_untrained_matrix(tmp_path):
    model = train.FunctionNet(6, 4, hidden_layers="report")
    assert [tuple(p.shape) for p in model.parameters()] == [(6, 1), (6,), (1, 6), (1,)]  # input, output only
    square = [t for t in list(model.parameters()) + list(model.buffers()) if t.shape == (6, 6)]
    assert len(square) == 1 and model.frozen_hidden_uses == 3  # one matrix, at the 3 hidden positions
    x = torch.linspace(0, 6, 40).unsqueeze(1)
    expected = model.activation(model.input(x))
    for _ in range(3):
        expected = model.activation(expected @ model.frozen_weight.T + model.frozen_bias)
    assert torch.allclose(model(x), model.output(expected))

    summary = run(tmp_path, "--depth", "4", "--width", "6", "--hidden-layers", "report", "--epochs", "30",
                  "--optimizer", "adam")
    assert summary["status"] == "ok"
    torch.manual_seed(0)  # the run's seed: the net it started from
    start = train.FunctionNet(6, 4, hidden_layers="report")
    state = torch.load(tmp_path / "run/best.pt")
    assert torch.equal(state["frozen_weight"], start.frozen_weight)  # never updated
    assert torch.equal(state["frozen_bias"], start.frozen_bias)
    assert not torch.equal(state["input.weight"], start.input.weight)  # while the registered layers trained
    assert train.parse_args([]).hidden_layers == "trained"


def same_run(first: Path, second: Path) -> None:
    """Two run folders hold the same history and summary (but for time and place)."""
    assert (first / "history.csv").read_text() == (second / "history.csv").read_text()
    a, b = (json.loads((folder / "summary.json").read_text()) for folder in (first, second))
    assert {k: v for k, v in a.items() if k not in ("wall_seconds", "out")} == \
        {k: v for k, v in b.items() if k not in ("wall_seconds", "out")}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
def test_a_killed_run_resumes_to_the_uninterrupted_history_and_summary(tmp_path, signum):
    """SIGINT: the epoch under way finishes and is saved. SIGKILL: nothing is saved; the history written
    after last.pt's epoch is cut back on resume, so no epoch appears twice."""
    flags = [*TINY, "--epochs", "1000", "--batch-size", "32", "--optimizer", "adam", "--lr", "3e-3",
             "--patience", "400", "--checkpoint-every", "100"]
    train.main([*flags, "--out", str(tmp_path / "whole")])
    command = [sys.executable, str(ROOT / "lab1_fnn/train.py"), *flags, "--out", str(tmp_path / "cut")]
    killed = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "cut/last.pt").exists():  # a checkpoint, then epochs beyond it
        assert time.time() < deadline and killed.poll() is None
        time.sleep(0.02)
    time.sleep(0.1)
    killed.send_signal(signum)
    _, err = killed.communicate(timeout=60)
    assert not (tmp_path / "cut/summary.json").exists()
    if signum == signal.SIGINT:
        assert killed.returncode == 130 and err.count("\n") == 2  # "stopping after epoch N", then the note
        assert f"to continue it, run the same command with --resume --out {tmp_path / 'cut'}" in err
    refused = subprocess.run(command, capture_output=True, text=True)
    assert refused.returncode == 2 and "add --resume" in refused.stderr and refused.stderr.count("\n") == 1
    subprocess.run([*command, "--resume"], check=True)
    same_run(tmp_path / "whole", tmp_path / "cut")
    assert not (tmp_path / "cut/last.pt").exists()  # a finished run keeps best.pt only


@pytest.mark.parametrize("depths", [(3, 3, 3), (4, 2, 1, 1)])
@pytest.mark.parametrize("hidden_layers", ["trained", "report"])
def test_an_ensemble_member_computes_its_own_network_exactly_outputs_and_gradients(depths, hidden_layers):
    """Widths 3, 7, 12 (and 5) padded to 12 (sigmoid: the padding's activations are 0.5 before the mask); equal
    depths, or deeper networks beside shallower ones, which take the output layer where they end."""
    from lab1_fnn.ensemble import Ensemble, mse_per_network
    torch.manual_seed(0)
    nets = [train.FunctionNet(width, depth, "sigmoid", hidden_layers) for width, depth in
            zip((3, 7, 12, 5), depths, strict=False)]
    ensemble = Ensemble(nets)
    x, y = torch.linspace(0, 6, 50)[:, None], torch.sin(torch.linspace(0, 6, 50))[:, None]
    out = ensemble(x)
    mse_per_network(out, y).sum().backward()
    gradients = {param: param.grad for param in ensemble.parameters()}
    for e, net in enumerate(nets):
        assert torch.allclose(out[e], net(x), atol=1e-6)
        nn.functional.mse_loss(net(x), y).backward()
        assert set(ensemble.member_state(e)) == set(net.state_dict())
        for name, param in net.state_dict().items():
            assert torch.equal(ensemble.member_state(e)[name], param)  # the same starting weights
        member_gradients = ensemble.member_state(e, like=gradients)
        assert set(member_gradients) == {name for name, _ in net.named_parameters()}
        for name, param in net.named_parameters():
            assert torch.allclose(member_gradients[name], param.grad, atol=1e-6), name
        w = net.input.out_features
        padding = [ensemble.w_in.grad[e, :, w:], ensemble.w_out.grad[e, w:]]
        for weight, bias in zip(ensemble.w_hidden, ensemble.b_hidden, strict=True):
            if e < len(weight):
                padding += [weight.grad[e, w:], weight.grad[e, :, w:], bias.grad[e, :, w:]]
        assert all(not g.abs().max() if g.numel() else True for g in padding)  # the padding never changes


def test_an_ensemble_takes_its_networks_deepest_first():
    from lab1_fnn.ensemble import Ensemble
    with pytest.raises(ValueError, match="decreasing depth"):
        Ensemble([train.FunctionNet(4, 1), train.FunctionNet(4, 2)])


@pytest.mark.parametrize("flags", [["--optimizer", "sgd"], ["--hidden-layers", "report"],
                                   ["--optimizer", "adam", "--lr", "3e-3", "--batch-size", "40"],
                                   ["--optimizer", "adam", "--lr", "3e-3", "--batch-size", "40",
                                    "--lr-schedule", "cosine", "--warmup", "0.1"]])
def test_a_sweep_trains_its_grid_as_ensembles_with_the_numbers_of_one_run_at_a_time(tmp_path, flags, capsys):
    from common.sweep import cli as sweep
    grid = ["lab1_fnn", "--grid", "activation=relu,sigmoid", "depth=1,3", "width=6,20", "--",
            "--n-points", "200", "--epochs", "200", "--patience", "30", *flags]
    batched = sweep.main([*grid[:1], "--out", str(tmp_path / "batched"), *grid[1:]])
    alone = sweep.main([*grid[:1], "--out", str(tmp_path / "alone"), "--no-batch", *grid[1:]])
    assert list(batched["status"]) == list(alone["status"]) and len(batched) == 8
    for key in ("best_val_mse", "test_mse", "final_train_mse"):
        assert np.allclose(batched[key], alone[key], rtol=1e-4, atol=0), key
    assert list(batched["best_epoch"]) == list(alone["best_epoch"])
    assert set(batched["status"]) <= {"ok", "early_stopped"} and "early_stopped" in set(alone["status"])
    for point in (tmp_path / "batched").glob("activation=*"):
        assert {p.name for p in point.iterdir()} >= {"config.json", "history.csv", "summary.json", "best.pt",
                                                    "loss_curves.png", "fit.png"}
        config = json.loads((point / "config.json").read_text())
        assert config["ensemble"] == 4  # both depths and both widths of an activation at a time
        histories = [pd.read_csv(tmp_path / way / point.name / "history.csv") for way in ("batched", "alone")]
        assert histories[0]["lr"].tolist() == histories[1]["lr"].tolist()  # the schedule's rates, to the bit
        model = train.FunctionNet(config["width"], config["depth"], config["activation"], config["hidden_layers"])
        model.load_state_dict(torch.load(point / "best.pt", weights_only=True))
        x, y = train.make_data("sin", 200, (5, 2, 3), 0)["test"]
        summary = json.loads((point / "summary.json").read_text())
        with torch.no_grad():
            assert nn.functional.mse_loss(model(x), y).item() == pytest.approx(summary["test_mse"], rel=1e-6)


def test_seeds_trains_k_seeds_at_once_and_reports_their_mean_and_std(tmp_path):
    flags = [*TINY, "--epochs", "100", "--depth", "2"]
    report = train.main([*flags, "--seeds", "3", "--seed", "5", "--out", str(tmp_path / "k")])
    alone = [train.main([*flags, "--seed", str(s), "--out", str(tmp_path / f"s{s}")]) for s in (5, 6, 7)]
    assert report["seeds"] == [5, 6, 7] and report["statuses"] == ["ok"] * 3
    values = np.array([s["best_val_mse"] for s in alone])
    assert report["best_val_mse"]["mean"] == pytest.approx(values.mean(), rel=1e-4)
    assert report["best_val_mse"]["std"] == pytest.approx(values.std(ddof=1), rel=1e-3)
    assert json.loads((tmp_path / "k/seeds.json").read_text()) == json.loads(json.dumps(report))
    for s in (5, 6, 7):
        assert json.loads((tmp_path / f"k/seed={s}/config.json").read_text())["seed"] == s


def test_the_quick_sweep_benchmark_runs_and_prints_its_ratios(bench):
    lines = bench("lab1_sweep.py", "--quick")
    ratios, floor = lines[-2:]
    assert ratios.startswith("a/c ") and " b/c " in ratios
    assert float(ratios.split()[-1]) < 1e-4  # the ensembles' numbers are one-at-a-time's
    # depths 1-2 x widths 5, 20, 100 epochs: the depth-2 networks' hidden layer, forward and backward on 500
    # training points (3 matmuls), forward on 200 validation points
    assert floor.startswith(f"floor under (c): {(5**2 + 20**2) * 2 * (3 * 500 + 200) * 100:.3e} FLOP")
    c = float(next(line for line in lines if line.startswith("(c)")).split()[-2])
    assert 0 < float(floor.split(" = ")[1].split(" s")[0]) < c  # nothing trains faster than its matmuls


@pytest.mark.parametrize("optimizer", [["--optimizer", "sgd"], ["--optimizer", "adam", "--lr", "3e-3", "--batch-size",
                                                                 "40"],
                                       ["--batch-size", "40", "--lr-schedule", "onecycle", "--warmup", "0.2"]])
def test_a_point_interrupted_in_an_ensemble_resumes_alone_with_the_same_numbers(tmp_path, run_cli, optimizer, capsys,
                                                                                interrupt_in_epoch):
    """The ensemble writes each run's last.pt in train.py's format: model, optimiser moments, data order."""
    from common.sweep import cli as sweep
    from lab1_fnn import ensemble
    grid = ["--grid", "width=6,20", "--", *TINY[:2], "--epochs", "60", "--checkpoint-every", "20", *optimizer]
    with interrupt_in_epoch(ensemble, 45):
        assert run_cli(sweep.main, ["lab1_fnn", "--out", str(tmp_path / "cut"), *grid])[0] == 130
    assert all((tmp_path / f"cut/width={w}/last.pt").exists() for w in (6, 20))
    capsys.readouterr()
    resumed = sweep.main(["lab1_fnn", "--out", str(tmp_path / "cut"), *grid])
    assert capsys.readouterr().out.count("was interrupted: resuming it from its last.pt") == 2
    alone = sweep.main(["lab1_fnn", "--out", str(tmp_path / "alone"), "--no-batch", *grid])
    for key in ("best_val_mse", "test_mse", "final_train_mse"):
        assert np.allclose(resumed[key], alone[key], rtol=1e-4, atol=0), key
    epochs = pd.read_csv(tmp_path / "cut/width=20/history.csv")["epoch"]
    assert list(epochs) == list(range(1, 61))
    rates = [pd.read_csv(tmp_path / way / "width=20/history.csv")["lr"].tolist() for way in ("cut", "alone")]
    assert rates[0] == rates[1]  # the schedule continued from last.pt's step


def test_seeds_interrupted_resume_with_seeds_and_resume(tmp_path, run_cli, interrupt_in_epoch):
    from lab1_fnn import ensemble
    flags = [*TINY, "--epochs", "60", "--checkpoint-every", "20", "--seeds", "2", "--out", str(tmp_path / "k")]
    with interrupt_in_epoch(ensemble, 45):
        code, err = run_cli(train.main, flags)
    assert code == 130 and err[0].count("stopped after epoch 40 (last.pt)") == 2
    code, err = run_cli(train.main, flags)
    assert code == 2 and "add --resume" in err[0]
    report = train.main([*flags, "--resume"])
    whole = train.main([*flags[:-1], str(tmp_path / "whole")])
    assert report["best_val_mse"]["mean"] == pytest.approx(whole["best_val_mse"]["mean"], rel=1e-4)
    assert report["statuses"] == ["ok", "ok"]


def rates(tmp_path, name, *flags) -> list[float]:
    """The lr column of a tiny run's history.csv."""
    run(tmp_path, *flags, name=name)
    return pd.read_csv(tmp_path / name / "history.csv")["lr"].tolist()


def test_the_lr_column_follows_the_schedule(tmp_path):
    """lr: the rate of each epoch's last step. --batch-size 32 of 100 training points: 4 steps an epoch."""
    cosine = rates(tmp_path, "cosine", "--epochs", "10", "--batch-size", "32", "--lr-schedule", "cosine")
    assert cosine == pytest.approx([0.005 * (1 + math.cos(math.pi * (4 * k - 1) / 40)) for k in range(1, 11)])
    assert cosine[-1] < 0.01 * 0.01  # near 0 at the end: below 1% of --lr
    warm = rates(tmp_path, "warm", "--epochs", "10", "--lr-schedule", "linear", "--warmup", "0.3")
    assert warm == pytest.approx([0.01 * f for f in [0, 1 / 3, 2 / 3, 1, 6 / 7, 5 / 7, 4 / 7, 3 / 7, 2 / 7, 1 / 7]])
    history = pd.read_csv(tmp_path / "warm/history.csv")  # full batch: train_mse is the loss before the step
    assert history["train_mse"][0] == history["train_mse"][1] != history["train_mse"][2]  # a rate of 0 did nothing
    one = rates(tmp_path, "onecycle", "--epochs", "20", "--lr-schedule", "onecycle")
    peak = int(np.argmax(one))
    assert peak == 6 and one[peak] == pytest.approx(0.01)  # rises over 0.3 of the steps, then falls
    assert (np.diff(one[:peak + 1]) > 0).all() and (np.diff(one[peak:]) < 0).all()
    assert one[0] == pytest.approx(0.01 / 25) and one[-1] == pytest.approx(0.01 / 25 / 1e4)
    plateau = rates(tmp_path, "plateau", "--epochs", "40", "--optimizer", "adam", "--lr", "0.05", "--lr-schedule",
                    "plateau")
    assert plateau[0] == 0.05 and plateau[-1] < 0.05 and (np.diff(plateau) <= 0).all()
    assert {round(math.log2(0.05 / r), 9) % 1 for r in plateau} == {0}  # halved, never otherwise changed


@pytest.mark.parametrize("flags", [["--batch-size", "32", "--optimizer", "adam", "--lr", "3e-3", "--lr-schedule",
                                    "cosine", "--warmup", "0.2"],
                                   ["--batch-size", "20", "--optimizer", "adam", "--lr", "0.02", "--lr-schedule",
                                    "plateau"]])  # halved after epoch 2: last.pt holds the scale and the best
def test_a_resumed_run_continues_its_schedule(interrupted_and_resumed, flags):
    interrupted_and_resumed(train, [*TINY, "--epochs", "8", *flags])


def test_plateau_trains_alone_and_seeds_with_it_one_after_another(tmp_path):
    """A plateau follows each network's own validation MSE: not in an ensemble, whose networks share one rate."""
    from lab1_fnn.ensemble import batch_key
    key = {kind: batch_key(train.parse_args(["--lr-schedule", kind])) for kind in ("none", "cosine", "plateau")}
    assert key["plateau"] is None and key["cosine"] is not None and key["cosine"] != key["none"]
    flags = [*TINY, "--epochs", "30", "--optimizer", "adam", "--lr", "0.05", "--lr-schedule", "plateau"]
    report = train.main([*flags, "--seeds", "2", "--out", str(tmp_path / "k")])
    assert report["statuses"] == ["ok", "ok"]
    for s in (0, 1):
        train.main([*flags, "--seed", str(s), "--out", str(tmp_path / f"s{s}")])
        same_run(tmp_path / f"k/seed={s}", tmp_path / f"s{s}")
        assert "ensemble" not in json.loads((tmp_path / f"k/seed={s}/config.json").read_text())
