import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from common import cli
from common.data import forget_reused, reused
from common.device import seed_everything, select_device
from common.early_stopping import EarlyStopping
from common.plots import plot_curves, plot_heatmap, plot_image_grid, plot_spread
from common.runs import Run


def stop_epoch(values, **kwargs):
    stopper = EarlyStopping(**kwargs)
    for epoch, value in enumerate(values, start=1):
        stopper.step(epoch, value)
        if stopper.should_stop:
            return epoch, stopper
    return None, stopper


def test_early_stopping_follows_the_reports_rule():
    # wait = 2: the best (3.0 at epoch 3) is not improved at epochs 4, 5, 6 -> stop at epoch 6 (wait + 1 = 3 epochs)
    epoch, stopper = stop_epoch([5.0, 4.0, 3.0, 3.5, 3.2, 3.1, 1.0], patience=2)
    assert epoch == 6
    assert (stopper.best, stopper.best_epoch) == (3.0, 3)


def test_early_stopping_counter_resets_on_improvement():
    epoch, stopper = stop_epoch([5.0, 6.0, 7.0, 4.0, 5.0, 5.0, 5.0, 5.0], patience=2)
    assert epoch == 7 and stopper.best_epoch == 4


def test_early_stopping_wait_zero_stops_at_first_non_improvement():
    assert stop_epoch([3.0, 2.0, 2.0, 1.0], patience=0)[0] == 3


def test_early_stopping_modes_delta_nan_and_no_patience():
    epoch, stopper = stop_epoch([0.5, 0.7, 0.69, 0.6], patience=1, mode="max")
    assert epoch == 4 and stopper.best == 0.7
    # min_delta: 0.95 is not better than 1.0 by more than 0.1
    epoch, stopper = stop_epoch([1.0, 0.95, 0.92], patience=1, min_delta=0.1)
    assert epoch == 3 and stopper.best_epoch == 1
    epoch, stopper = stop_epoch([1.0, math.nan, math.nan], patience=1)
    assert epoch == 3 and stopper.best == 1.0
    epoch, stopper = stop_epoch([1.0] + [2.0] * 50)
    assert epoch is None and stopper.best_epoch == 1
    with pytest.raises(ValueError):
        EarlyStopping(mode="median")


def test_early_stopping_tiebreak_prefers_the_lower_loss_among_equal_accuracies():
    stopper = EarlyStopping(patience=1, mode="max")
    steps = [(0.5, 0.9), (1.0, 0.6), (1.0, 0.4), (1.0, 0.5), (0.9, 0.3)]
    improved = [stopper.step(epoch, acc, tiebreak=loss) for epoch, (acc, loss) in enumerate(steps, start=1)]
    assert improved == [True, True, True, False, False]
    assert (stopper.best, stopper.best_epoch, stopper.should_stop) == (1.0, 3, True)


def test_device_selection_and_seeding():
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(cli.UsageError, match="--device cuda"):
            select_device("cuda")
    seed_everything(3)
    a = (torch.rand(3), np.random.rand(3))
    seed_everything(3)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("parse, text", [(cli.positive_int, "0"), (cli.positive_int, "x"),
                                         (cli.non_negative_int, "-1"), (cli.positive_float, "nan"),
                                         (cli.positive_float, "-0.1")])
def test_number_types_reject_bad_values(parse, text):
    with pytest.raises(cli.argparse.ArgumentTypeError, match=repr(text)):
        parse(text)


def test_run_folder_files(tmp_path):
    parser = cli.lab_parser("labx", "test")
    args = parser.parse_args(["--out", str(tmp_path / "r"), "--seed", "7"])
    run = Run("labx", args, torch.device("cpu"))
    run.log(epoch=1, train_loss=1.0, val_loss=math.nan)
    run.log(epoch=2, train_loss=torch.tensor(0.5), val_loss=np.float32(0.25))
    summary = run.finish("ok", best_epoch=2, best_val_loss=0.25, missing=math.inf)
    config = json.loads((tmp_path / "r/config.json").read_text())
    assert config["seed"] == 7 and config["out"] == str(tmp_path / "r")
    assert {"python", "torch", "numpy", "device"} <= set(config["environment"])
    assert (tmp_path / "r/history.csv").read_text().splitlines() == [
        "epoch,train_loss,val_loss", "1,1.0,", "2,0.5,0.25"]
    on_disk = json.loads((tmp_path / "r/summary.json").read_text())
    assert on_disk == summary and on_disk["status"] == "ok" and on_disk["missing"] is None
    assert on_disk["wall_seconds"] >= 0
    with pytest.raises(cli.UsageError, match="already holds a finished run"):
        Run("labx", args, torch.device("cpu"))


def test_shared_flags_defaults(monkeypatch):
    monkeypatch.setenv("LABS_DATA_ROOT", "/somewhere")
    args = cli.lab_parser("labx", "test").parse_args([])
    assert (args.seed, args.device, args.out, args.data_root, args.quiet) == (0, "auto", None, "/somewhere", False)
    with pytest.raises(cli.UsageError, match="invalid choice: 'tpu'"):
        cli.lab_parser("labx", "test").parse_args(["--device", "tpu"])


def test_plots_write_real_images(tmp_path):
    heat = np.array([[1e-3, 1e-2], [np.nan, 1e-1]])
    paths = [
        plot_curves(tmp_path / "c.png", {"train": [1, 0.1, 0.01], "val": ([1, 2, 3], [1, 0.2, 0.05])}, log=True),
        plot_heatmap(tmp_path / "h.png", heat, [5, 10], [1, 2], "depth", "width", log_color=True),
        plot_image_grid(tmp_path / "g.png", [np.zeros((8, 8)), np.ones((8, 8, 3)) * 0.5], ["a", "b"], ncols=2),
        plot_spread(tmp_path / "s.png", {"a": [1.0, 2.0], "b": [3.0, math.nan]}, "mse", log=True),
    ]
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) > 100
            assert len(np.unique(np.asarray(image.convert("L")))) > 2  # something was drawn


def test_reused_keeps_each_loaders_last_value_until_its_arguments_or_files_change(tmp_path):
    calls = []

    def read(path, suffix):
        calls.append(suffix)
        return path.read_text() + suffix

    def load(suffix="a"):
        return reused(read, tmp_path / "data.txt", suffix, files=[tmp_path])
    (tmp_path / "data.txt").write_text("1")
    assert load() == load() == "1a" and len(calls) == 1
    assert load("b") == "1b" and load() == "1a" and len(calls) == 3  # one value per loader: the last
    (tmp_path / "new.txt").write_text("")  # a file appears in the folder
    assert load() == "1a" and len(calls) == 4
    (tmp_path / "data.txt").write_text("22")  # another size, whatever the clock's resolution
    assert load() == "22a" and len(calls) == 5
    forget_reused()
    assert load() == "22a" and len(calls) == 6
