import contextlib
import csv
import gzip
import itertools
import json
import math
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from common.data import balanced_subset, forget_reused
from common.schedules import LRSchedule
from lab2_cnn import data as datasets
from lab2_cnn import train
from lab2_cnn.model import ResidualBlock, ResidualCNN

ROOT = Path(__file__).resolve().parents[1]
TINY_WIDTHS = "6,8,8,8,8,8"


def write_idx(path, array):
    header = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with (gzip.open if path.suffix == ".gz" else open)(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def class_pattern_images(n, seed, size=28):
    """Images whose class is a bright 7x7 patch at one of 10 places, on noise: learnable, not trivial."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    images = rng.integers(0, 90, (n, size, size))
    for i, label in enumerate(labels):
        r, c = divmod(int(label), 5)
        images[i, 3 + 12 * r: 10 + 12 * r, 1 + 5 * c: 8 + 5 * c] += 150
    return images.clip(0, 255), labels


@pytest.fixture
def fashion_root(tmp_path):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for prefix, n, seed in (("train", 600, 0), ("t10k", 200, 1)):
        images, labels = class_pattern_images(n, seed)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return tmp_path


@pytest.fixture
def tiny_imagenet_root(tmp_path):
    base = tmp_path / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819", "n01641577"]
    (base / "val/images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (base / "words.txt").write_text("n01443537\tgoldfish, Carassius auratus\nn01629819\tEuropean fire salamander\n"
                                    "n01641577\tbullfrog, Rana catesbeiana\nn00000000\tunused\n")
    rng = np.random.default_rng(0)
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200)]
    for i, wnid in enumerate(wnids):
        (base / "train" / wnid / "images").mkdir(parents=True)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for j in range(6):
            pixels = np.clip(np.array(colours[i]) + rng.normal(0, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
            mode = "L" if j == 0 else "RGB"  # Tiny-ImageNet has some grayscale JPEGs
            Image.fromarray(pixels).convert(mode).save(base / "train" / wnid / "images" / f"{wnid}_{j}.JPEG")
    lines = []
    for k in range(6):
        pixels = np.clip(np.array(colours[k % 3]) + rng.normal(0, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(base / "val/images" / f"val_{k}.JPEG")
        lines.append(f"val_{k}.JPEG\t{wnids[k % 3]}\t0\t0\t63\t63")
    (base / "val/val_annotations.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


@pytest.mark.parametrize("norm, dropout, residual, convs", list(itertools.product([True, False], [0.0, 0.3],
                                                                                   [True, False], [1, 2])))
def test_output_shapes_for_both_input_sizes(norm, dropout, residual, convs):
    for channels, size, pools in ((1, 28, 4), (3, 64, 6)):
        model = ResidualCNN(channels, 7, size, (4, 6, 8, 8, 6, 4), convs, norm, dropout, residual)
        x = torch.randn(3, channels, size, size)
        assert model(x).shape == (3, 7)
        assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules()) == pools
        assert model.features(x).shape[-2:] == (1, 1)
        convs_found = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
        assert convs_found == 6 * (convs + 2)
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == norm
        assert any(isinstance(m, torch.nn.Dropout2d) for m in model.modules()) == (dropout > 0)


def test_residual_switch_changes_the_function():
    torch.manual_seed(0)
    with_skip = ResidualCNN(1, 10, 28, (4,) * 6, norm=False)
    without = ResidualCNN(1, 10, 28, (4,) * 6, norm=False, residual=False)
    without.load_state_dict(with_skip.state_dict())
    x = torch.randn(2, 1, 28, 28)
    assert not torch.allclose(with_skip(x), without(x))


def test_idx_reader(tmp_path):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        write_idx(tmp_path / name, array)
        assert np.array_equal(datasets.read_idx(tmp_path / name), array)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 2, 3, 4) + b"\x00" * 5)
    with pytest.raises(train.cli.UsageError, match="truncated"):
        datasets.read_idx(tmp_path / "bad")
    (tmp_path / "text").write_text("hello")
    with pytest.raises(train.cli.UsageError, match="not an IDX file"):
        datasets.read_idx(tmp_path / "text")


def test_fashion_mnist_from_data_root(fashion_root):
    images = datasets.load_fashion_mnist(fashion_root)
    assert images.train_x.shape == (600, 1, 28, 28) and images.train_x.dtype == torch.uint8
    assert images.test_y.shape == (200,) and images.classes[0] == "T-shirt/top" and len(images.classes) == 10


def test_tiny_imagenet_layout(tiny_imagenet_root):
    images = datasets.load_tiny_imagenet(tiny_imagenet_root, workers=2)
    assert images.train_x.shape == (18, 3, 64, 64) and images.test_x.shape == (6, 3, 64, 64)
    assert images.train_y.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    assert images.test_y.tolist() == [0, 1, 2, 0, 1, 2]
    assert images.classes == ["goldfish", "European fire salamander", "bullfrog"]
    assert images.train_x[6:12, 1].float().mean() > images.train_x[6:12, 0].float().mean() + 100  # green class


def test_split_and_balanced_limits(fashion_root):
    images = datasets.load_fashion_mnist(fashion_root)
    train_idx, val_idx, test_idx = datasets.split(images, val_fraction=0.2, seed=0, limit_train=200, limit_test=50)
    assert (len(train_idx), len(val_idx), len(test_idx)) == (160, 40, 50)
    assert not set(train_idx.tolist()) & set(val_idx.tolist())
    counts = torch.bincount(images.train_y[torch.cat([train_idx, val_idx])], minlength=10)
    assert counts.tolist() == [20] * 10
    assert torch.bincount(images.test_y[test_idx], minlength=10).tolist() == [5] * 10


def test_augment_crops_and_flips_each_image():
    torch.manual_seed(0)
    x = torch.arange(2 * 16 * 16, dtype=torch.float32).reshape(2, 1, 16, 16) + 1
    out = datasets.augment(x.repeat(16, 1, 1, 1))
    assert out.shape == (32, 1, 16, 16)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i, image in enumerate(out):
        source = padded[i % 2, 0]
        crops = [source[r:r + 16, c:c + 16] for r in range(5) for c in range(5)]
        assert any(torch.equal(image[0], c) or torch.equal(image[0], c.flip(1)) for c in crops)
    assert len({tuple(o.flatten()[:40].tolist()) for o in out[::2]}) > 4  # not one crop for all


def test_flip_augmentation_mirrors_some_images_and_leaves_the_rest_as_they_are():
    torch.manual_seed(0)
    x, y = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8), torch.arange(64) % 10
    mean, std = torch.full((1, 1, 1), 0.5), torch.full((1, 1, 1), 0.25)
    batches = datasets.Batches(x, y, mean, std, "cpu")
    (out, _, _), = batches(torch.arange(64), 64, shuffle=True, augmentation="flip")
    source = (x.float() / 255 - mean) / std
    as_they_are = [any(torch.equal(o, s) for s in source) for o in out]
    mirrored = [any(torch.equal(o, s.flip(2)) for s in source) for o in out]
    assert all(a != m for a, m in zip(as_they_are, mirrored, strict=True))  # every image one or the other: no crop
    assert 16 < sum(mirrored) < 48
    assert train.parse_args(["--augment"]).augment == "crop-flip" and train.parse_args([]).augment is None


def tiny_run(fashion_root, tmp_path, *flags):
    return train.main(["--data-root", str(fashion_root), "--widths", TINY_WIDTHS, "--epochs", "3",
                       "--lr", "0.05", "--lrd", "0.9", "--batch-size", "32", "--patience", "3", "--quiet",
                       "--out", str(tmp_path / "run"), *flags])


def test_tta_validates_and_tests_on_the_mean_probabilities_of_each_image_and_its_mirror(fashion_root, tmp_path):
    """The fixture's class is where a patch is, so a mirror image looks like another class: the test top-1 of
    the mean probabilities, recomputed here from best.pt, is far from the plain one."""
    summary = tiny_run(fashion_root, tmp_path, "--tta")
    images = datasets.load_fashion_mnist(fashion_root)
    model = ResidualCNN(1, 10, 28, (6, 8, 8, 8, 8, 8))
    plain_top1, _ = scores_of_saved_weights(tmp_path / "run", images, model)
    with torch.no_grad():
        x = normalised(tmp_path / "run", images, images.test_x)
        probabilities = (model(x).softmax(1) + model(x.flip(3)).softmax(1)) / 2
        _, val_idx, _ = datasets.split(images, 0.1, 0)
        x_val, y_val = normalised(tmp_path / "run", images, images.train_x[val_idx]), images.train_y[val_idx]
        val_probabilities = (model(x_val).softmax(1) + model(x_val.flip(3)).softmax(1)) / 2
    top1 = (probabilities.argmax(1) == images.test_y).double().mean().item()
    assert summary["test_top1"] == pytest.approx(top1, abs=1e-9) and abs(top1 - plain_top1) > 0.1
    val_loss = torch.nn.functional.nll_loss(val_probabilities.log(), y_val).item()
    assert summary["best_val_loss"] == pytest.approx(val_loss, rel=1e-5)


@pytest.mark.parametrize("select_on, best_epoch, epochs_run", [("loss", 2, 5), ("accuracy", 4, 7)])
def test_select_on_picks_and_early_stops_by_that_validation_metric(fashion_root, tmp_path, monkeypatch, select_on,
                                                                  best_epoch, epochs_run):
    """Validation scripted per epoch: the loss is lowest at epoch 2, the accuracy highest at epoch 4 (tied at
    epoch 5, whose loss is higher); patience 2 stops 3 epochs after the selected best."""
    losses, accuracies = iter([0.9, 0.5, 0.7, 0.6, 0.8, 0.9, 1.0, 1.1]), iter([0.5, 0.6, 0.6, 0.8, 0.8, 0.7, 0.7, 0.7])
    evaluate = train.evaluate

    def scripted(model, batches, indices, *rest):
        metrics = evaluate(model, batches, indices, *rest)
        test_set = len(indices) == 200  # the fixture's 200 test images: left as they are
        return metrics if test_set else {**metrics, "loss": next(losses), "top1": next(accuracies)}
    monkeypatch.setattr(train, "evaluate", scripted)
    summary = tiny_run(fashion_root, tmp_path, "--epochs", "8", "--patience", "2", "--select-on", select_on)
    assert summary["status"] == "early_stopped"
    assert (summary["best_epoch"], summary["epochs_run"]) == (best_epoch, epochs_run)
    assert (summary["best_val_loss"], summary["best_val_acc"]) == ((0.5, 0.6) if select_on == "loss" else (0.6, 0.8))


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("float32", torch.float32),
                                              ("auto", torch.float32)])
def test_precision_sets_the_dtype_of_the_convolutions(fashion_root, tmp_path, monkeypatch, precision, dtype):
    monkeypatch.delenv("LABS_FORCE_BF16", raising=False)
    seen, build = set(), train.build_model

    def recording(*args):
        model = build(*args)
        first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        first_conv.register_forward_hook(lambda module, inputs, output: seen.add(output.dtype))
        return model
    monkeypatch.setattr(train, "build_model", recording)
    tiny_run(fashion_root, tmp_path, "--limit-train", "100", "--epochs", "1", "--precision", precision,
            "--device", "cpu")  # auto is float32 on the CPU only
    assert seen == {dtype}


def normalised(run_dir, images, x):
    """uint8 images x as the run in run_dir fed them to its model: scaled by its training split's statistics."""
    config = json.loads((run_dir / "config.json").read_text())
    train_idx, _, _ = datasets.split(images, config["val_fraction"], config["seed"], config["limit_train"])
    seen = images.train_x[train_idx].double() / 255
    mean, std = seen.mean((0, 2, 3))[:, None, None], seen.std((0, 2, 3), unbiased=False)[:, None, None]
    return ((x.double() / 255 - mean) / std).float()


def scores_of_saved_weights(run_dir, images, model):
    """top-1 and top-5 on the whole test set of the weights in best.pt, computed here from scratch."""
    model.load_state_dict(torch.load(run_dir / "best.pt"))
    with torch.no_grad():
        logits = model.eval()(normalised(run_dir, images, images.test_x))
    best5 = logits.topk(5, dim=1).indices
    return ((best5[:, 0] == images.test_y).double().mean().item(),
            (best5 == images.test_y[:, None]).any(1).double().mean().item())


def test_tiny_run_learns_above_chance_and_tests_the_best_validation_weights(fashion_root, tmp_path):
    summary = train.main(["--data-root", str(fashion_root), "--widths", TINY_WIDTHS, "--epochs", "6",
                          "--lr", "0.05", "--lrd", "0.9", "--batch-size", "32", "--patience", "6", "--quiet",
                          "--out", str(tmp_path / "run")])
    assert summary["status"] == "ok" and summary["test_top1"] > 0.6  # chance: 0.1
    images = datasets.load_fashion_mnist(fashion_root)
    model = ResidualCNN(1, 10, 28, (6, 8, 8, 8, 8, 8))
    top1, top5 = scores_of_saved_weights(tmp_path / "run", images, model)
    assert summary["test_top1"] == pytest.approx(top1, abs=1e-9) and summary["test_top5"] == pytest.approx(top5)
    assert summary["test_top5"] > summary["test_top1"]  # 10 classes: top-5 is a real test here
    history = (tmp_path / "run/history.csv").read_text().splitlines()
    assert history[0] == "epoch,train_loss,train_acc,val_loss,val_acc,lr"
    lrs = [float(line.split(",")[-1]) for line in history[1:]]
    assert lrs[1] == pytest.approx(0.05 * 0.9)
    val_losses = [float(line.split(",")[3]) for line in history[1:]]
    assert summary["best_val_loss"] == pytest.approx(val_losses[summary["best_epoch"] - 1])
    for name in ("loss_curves.png", "accuracy_curves.png", "confusion_matrix.png", "best.pt", "summary.json"):
        assert (tmp_path / "run" / name).exists()
    assert json.loads((tmp_path / "run/config.json").read_text())["widths"] == [6, 8, 8, 8, 8, 8]


def test_tiny_imagenet_run_with_every_option(tiny_imagenet_root, tmp_path):
    summary = train.main(["--dataset", "tiny-imagenet", "--data-root", str(tiny_imagenet_root),
                          "--widths", "4,4,4,4,4,4",
                          "--convs-per-group", "2", "--norm", "none", "--dropout", "0.1", "--no-residual",
                          "--optimizer", "adam", "--lr", "0.01", "--augment", "--epochs", "2", "--patience", "0",
                          "--val-fraction", "0.2", "--quiet", "--out", str(tmp_path / "run")])
    assert summary["status"] in ("ok", "early_stopped") and summary["train_examples"] == 14
    model = ResidualCNN(3, 3, 64, (4,) * 6, convs_per_group=2, norm=False, dropout=0.1, residual=False)
    state = torch.load(tmp_path / "run/best.pt")
    assert set(state) == set(model.state_dict())  # the flags built this net: 2 convs a group, no norm
    model.load_state_dict(state)
    images = datasets.load_tiny_imagenet(tiny_imagenet_root, workers=1)
    config = json.loads((tmp_path / "run/config.json").read_text())
    train_idx, _, _ = datasets.split(images, config["val_fraction"], config["seed"])
    x = images.train_x[train_idx].double() / 255
    mean, std = x.mean((0, 2, 3))[:, None, None], x.std((0, 2, 3), unbiased=False)[:, None, None]
    with torch.no_grad():
        predicted = model.eval()(((images.test_x.double() / 255 - mean) / std).float()).argmax(1)
    assert summary["test_top1"] == pytest.approx((predicted == images.test_y).double().mean().item())


def test_patience_rule_stops_early_and_wait_is_its_alias(fashion_root, tmp_path):
    summary = train.main(["--data-root", str(fashion_root), "--widths", TINY_WIDTHS, "--epochs", "30",
                          "--lr", "0.2", "--lrd", "1", "--patience", "1", "--quiet", "--out", str(tmp_path / "run")])
    assert summary["status"] == "early_stopped" and summary["epochs_run"] == summary["best_epoch"] + 2 < 30
    assert train.parse_args(["--wait", "4"]).patience == 4 == train.parse_args(["--patience", "4"]).patience


def test_balanced_subset_counts_and_seed():
    labels = torch.tensor([0] * 50 + [1] * 40 + [2] * 20)
    subset = balanced_subset(labels, 30, seed=0)
    assert torch.bincount(labels[subset]).tolist() == [10, 10, 10]
    subset = balanced_subset(labels, 71, seed=0)
    assert sorted(torch.bincount(labels[subset]).tolist()) == [20, 25, 26]  # the small class gives all it has
    assert len(set(subset.tolist())) == 71
    assert torch.equal(subset, balanced_subset(labels, 71, seed=0))
    assert not torch.equal(subset, balanced_subset(labels, 71, seed=1))
    assert len(balanced_subset(labels, 500, seed=0)) == 110


@pytest.mark.parametrize("flags, message", [
    (["--dataset", "mnist"], "invalid choice: 'mnist'"),
    (["--widths", "64,abc"], "--widths: must be positive integers separated by commas, got '64,abc'"),
    (["--widths", "64,0"], "--widths: must be positive integers"),
    (["--dropout", "1"], "--dropout: must be a number in [0, 1)"),
    (["--val-fraction", "0"], "--val-fraction must be above 0"),
    (["--weight-decay", "-1"], "--weight-decay: must be a number >= 0, got '-1'"),
    (["--weight-decay", "nan"], "--weight-decay: must be a number >= 0, got 'nan'"),
    (["--lr-schedule", "step"], "invalid choice: 'step'"),
    (["--ema", "1"], "--ema: must be a number in [0, 1)"),
    (["--label-smoothing", "-0.1"], "--label-smoothing: must be a number in [0, 1)"),
    (["--augment", "crop"], "invalid choice: 'crop'"),
    (["--select-on", "top5"], "invalid choice: 'top5'"),
    (["--precision", "fp16"], "invalid choice: 'fp16'"),
])
def test_bad_flags_exit_2(tmp_path, run_cli, flags, message):
    code, err = run_cli(train.main, [*flags, "--out", str(tmp_path / "bad")])
    assert code == 2 and len(err) == 1 and message in err[0]
    assert not (tmp_path / "bad").exists()


def test_missing_data_has_a_clear_message(tmp_path, run_cli, monkeypatch):
    monkeypatch.setattr(datasets, "FASHION_MNIST_SYSTEM", tmp_path / "no-such-dir")
    monkeypatch.setenv("LABS_MIRROR", f"file://{tmp_path}/offline")  # common.fetch never reaches the network
    for dataset, hint in (("fashion-mnist", "apt-get install dataset-fashion-mnist"),
                          ("tiny-imagenet", "does not exist (nothing is downloaded")):
        code, err = run_cli(train.main, ["--dataset", dataset, "--data-root", str(tmp_path / "empty"),
                                         "--out", str(tmp_path / "bad")])
        assert code == 2 and len(err) == 1 and hint in err[0], err
    assert not (tmp_path / "bad").exists()


def test_weight_decay_flag_takes_effect(fashion_root, tmp_path):
    common = ["--data-root", str(fashion_root), "--widths", TINY_WIDTHS, "--epochs", "1", "--quiet"]
    plain = train.main([*common, "--out", str(tmp_path / "a")])
    decayed = train.main([*common, "--weight-decay", "0.5", "--out", str(tmp_path / "b")])
    assert plain["best_val_loss"] != decayed["best_val_loss"]
    assert json.loads((tmp_path / "b/config.json").read_text())["weight_decay"] == 0.5


def test_workers_flag_sets_the_jpeg_decoding_threads(tiny_imagenet_root, tmp_path, monkeypatch):
    pools = []

    class RecordingPool(datasets.ThreadPoolExecutor):
        def __init__(self, max_workers):
            pools.append(max_workers)
            super().__init__(max_workers)
    monkeypatch.setattr(datasets, "ThreadPoolExecutor", RecordingPool)
    train.main(["--dataset", "tiny-imagenet", "--data-root", str(tiny_imagenet_root), "--widths", "4,4,4,4,4,4",
                "--epochs", "1", "--workers", "3", "--quiet", "--out", str(tmp_path / "run")])
    assert pools == [3, 3]  # the training and the test images


def test_convs_per_group_takes_one_count_per_group():
    model = ResidualCNN(1, 10, 28, (4, 6, 8, 8, 6, 4), convs_per_group=(3, 3, 3, 2, 2, 1))
    groups, count = [], 0
    for layer in model.features:  # convs before each residual block, group by group
        if isinstance(layer, torch.nn.Conv2d):
            count += 1
        elif isinstance(layer, ResidualBlock):
            groups.append(count)
            count = 0
    assert groups == [3, 3, 3, 2, 2, 1]
    assert train.parse_args(["--convs-per-group", "3,3,3,2,2,1"]).convs_per_group == (3, 3, 3, 2, 2, 1)
    assert train.parse_args(["--convs-per-group", "2"]).convs_per_group == 2
    with pytest.raises(train.cli.UsageError, match="gives 2 counts for 6 groups"):
        train.parse_args(["--convs-per-group", "2,2"])


def test_norm_and_dropout_switch_separately_in_convs_and_blocks(fashion_root, tmp_path):
    model = ResidualCNN(1, 10, 28, (4,) * 6, norm=True, dropout=0.0, block_norm=False, block_dropout=0.2)
    blocks = [m for m in model.features if isinstance(m, ResidualBlock)]
    convs = torch.nn.Sequential(*[m for m in model.features if not isinstance(m, ResidualBlock)])
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for b in blocks for m in b.modules())
    assert all(any(isinstance(m, torch.nn.Dropout2d) and m.p == 0.2 for m in b.modules()) for b in blocks)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in convs) == 6
    assert not any(isinstance(m, torch.nn.Dropout2d) for m in convs)
    train.main(["--data-root", str(fashion_root), "--widths", TINY_WIDTHS, "--epochs", "1", "--quiet",
                "--norm", "none", "--block-norm", "batch", "--out", str(tmp_path / "run")])
    state = torch.load(tmp_path / "run/best.pt")
    norms = [k for k in state if k.endswith("running_mean")]
    assert norms and all(".body." in k for k in norms)  # batch norm in the blocks only


@pytest.mark.parametrize("damage, message", [
    (lambda folder: (folder / "train-images-idx3-ubyte.gz").write_bytes(
        (folder / "train-images-idx3-ubyte.gz").read_bytes()[:300]), "cannot be read"),
    (lambda folder: (folder / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all"), "cannot be read"),
    (lambda folder: write_idx(folder / "train-labels-idx1-ubyte.gz", np.full(600, 12)), "label 12 is out of range"),
    (lambda folder: write_idx(folder / "train-labels-idx1-ubyte.gz", np.zeros(100)), "holds 100 labels for the 600"),
])
def test_corrupt_fashion_mnist_is_one_line_naming_the_file(fashion_root, tmp_path, run_cli, damage, message):
    damage(fashion_root / "fashion-mnist")
    code, err = run_cli(train.main, ["--data-root", str(fashion_root), "--out", str(tmp_path / "run")])
    assert code == 2 and len(err) == 1 and message in err[0] and "fashion-mnist/t" in err[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("damage, message", [
    (lambda path: path.write_text("not a jpeg"), "cannot be decoded"),
    (lambda path: path.write_bytes(path.read_bytes()[:200]), "cannot be decoded"),
    (lambda path: Image.new("RGB", (32, 32)).save(path, "JPEG"), "is 32x32, not 64x64"),
    (lambda path: path.unlink(), "cannot be decoded"),  # listed in val_annotations.txt, missing
])
def test_bad_tiny_imagenet_images_stop_or_are_skipped_and_counted(tiny_imagenet_root, tmp_path, run_cli, damage,
                                                                   message):
    bad = tiny_imagenet_root / "tiny-imagenet-200/val/images/val_2.JPEG"
    damage(bad)
    flags = ["--dataset", "tiny-imagenet", "--data-root", str(tiny_imagenet_root), "--widths", "4,4,4,4,4,4",
             "--epochs", "1", "--quiet"]
    code, err = run_cli(train.main, [*flags, "--out", str(tmp_path / "a")])
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {bad} {message}")
    summary = train.main([*flags, "--skip-bad-images", "--out", str(tmp_path / "b")])
    assert summary["skipped_images"] == 1 and summary["status"] == "ok"


def test_too_few_training_images_and_a_final_batch_of_one(fashion_root, tmp_path, run_cli):
    code, err = run_cli(train.main, ["--data-root", str(fashion_root), "--widths", TINY_WIDTHS, "--limit-train", "2",
                                     "--out", str(tmp_path / "a")])
    assert code == 2 and len(err) == 1 and "leave fewer than 2 for training" in err[0]
    assert not (tmp_path / "a").exists()
    # 11 images: 1 for validation, 10 for training in batches of 3, 3, 3 and 1; the lone image is left out
    summary = train.main(["--data-root", str(fashion_root), "--widths", TINY_WIDTHS, "--limit-train", "11",
                          "--batch-size", "3", "--epochs", "1", "--quiet", "--out", str(tmp_path / "b")])
    assert summary["status"] == "ok" and summary["train_examples"] == 10


def test_an_interrupted_run_resumes_to_the_uninterrupted_history_and_summary(fashion_root, interrupted_and_resumed):
    interrupted_and_resumed(train, ["--data-root", str(fashion_root), "--widths", TINY_WIDTHS, "--epochs", "5",
                                    "--patience", "5", "--limit-train", "200", "--augment", "--dropout", "0.1"])


def test_a_resumed_run_with_a_per_step_schedule_and_ema_equals_the_uninterrupted_one(fashion_root,
                                                                                       interrupted_and_resumed):
    interrupted_and_resumed(train, ["--data-root", str(fashion_root), "--widths", TINY_WIDTHS, "--epochs", "5",
                                    "--patience", "5", "--limit-train", "200", "--lr-schedule", "cosine",
                                    "--warmup", "0.2", "--ema", "0.9", "--label-smoothing", "0.1"])


def test_the_default_exponential_schedule_keeps_torchs_exponentiallr_rates_to_the_bit():
    """--lr-schedule exponential (a per-step LRSchedule) replaced ExponentialLR: its runs keep their numbers."""
    for lr, lrd in ((0.05, 0.8), (0.05, 0.9), (0.003, 0.6)):
        theirs = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
        exponential = torch.optim.lr_scheduler.ExponentialLR(theirs, lrd)
        ours = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
        schedule = LRSchedule(ours, "exponential", epochs=30, steps_per_epoch=3, lrd=lrd)
        for _ in range(30):
            for _ in range(3):
                assert ours.param_groups[0]["lr"] == theirs.param_groups[0]["lr"]  # exactly, not approx
                ours.step()
                schedule.step()
            theirs.step()
            exponential.step()


def test_steps_per_epoch_counts_the_batches_an_epoch_trains_on(monkeypatch):
    from common import distributed
    x, y = torch.zeros(40, 1, 4, 4, dtype=torch.uint8), torch.zeros(40, dtype=torch.long)
    batches = datasets.Batches(x, y, torch.zeros(1, 1, 1), torch.ones(1, 1, 1), "cpu")
    for world in (1, 2):  # under torchrun: global batches, every process the same count (rank 0's here)
        monkeypatch.setattr(distributed, "world", lambda world=world: world)
        monkeypatch.setattr(distributed, "rank", lambda: 0)
        for count, batch_size in itertools.product((10, 11, 12, 13, 40), (3, 4, 5, 10)):
            trained = sum(1 for _ in batches(torch.arange(count), batch_size, shuffle=True))
            assert datasets.Batches.steps(count, batch_size) == trained, (world, count, batch_size)


def history_of(run_dir) -> dict:
    with open(run_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    return {column: [float(row[column]) for row in rows] for column in rows[0]}


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "plateau"])
def test_lr_schedule_sets_the_rate_of_every_step(fashion_root, tmp_path, schedule):
    """history's lr is the rate of each epoch's last step: 180 training images in batches of 32, 6 steps an
    epoch, 24 in all."""
    lr, steps = 0.05, 6
    warmup = "0.25" if schedule == "cosine" else "0"  # cosine: 6 warmup steps, the first epoch
    summary = train.main(["--data-root", str(fashion_root), "--widths", TINY_WIDTHS, "--limit-train", "200",
                          "--batch-size", "32", "--epochs", "4", "--patience", "4", "--lr", str(lr),
                          "--lr-schedule", schedule, "--warmup", warmup, "--quiet", "--out", str(tmp_path / "run")])
    assert summary["epochs_run"] == 4
    history = history_of(tmp_path / "run")
    lrs, last_steps = history["lr"], [steps * epoch - 1 for epoch in range(1, 5)]
    if schedule == "cosine":
        expected = [lr * 5 / 6] + [lr * 0.5 * (1 + math.cos(math.pi * (s - 6) / 18)) for s in last_steps[1:]]
        assert lrs == pytest.approx(expected) and lrs[-1] < lr / 100  # ends near 0
    elif schedule == "onecycle":
        assert lrs[0] < lrs[1] <= lr and lrs[1] > lrs[2] > lrs[3]  # rises over 30% of the steps, then falls
        assert lrs[-1] < lr / 25 / 100  # far below where it started
    else:  # halved after every epoch whose validation loss is not a new best (patience: 4 epochs // 20, so 1)
        val = history["val_loss"]
        assert lrs[:2] == [lr, lr] and lrs[-1] < lr  # the first epoch is a new best; this seed stalls later
        for epoch in range(2, 4):  # the rate of epoch + 1 after epoch's validation
            stalled = val[epoch - 1] >= min(val[:epoch - 1])
            assert lrs[epoch] == lrs[epoch - 1] / (2 if stalled else 1)


def test_label_smoothing_trains_on_the_smoothed_cross_entropy_of_a_known_batch():
    torch.manual_seed(0)
    x, y = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8), torch.tensor([0, 1, 2, 3, 4, 5, 6, 9])
    mean, std = torch.full((1, 1, 1), 0.5), torch.full((1, 1, 1), 0.25)
    batches = datasets.Batches(x, y, mean, std, "cpu")
    model = ResidualCNN(1, 10, 28, (4,) * 6)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    e = 0.2
    metrics = train.train_one_epoch(model, optimizer, batches, torch.arange(8), 8, None, contextlib.nullcontext(),
                                    SimpleNamespace(update=lambda n: None), label_smoothing=e)
    model.load_state_dict(start)  # the weights the batch's loss was computed with
    with torch.no_grad():
        log_p = model.train()((x.float() / 255 - mean) / std).log_softmax(1)  # batch norm: batch statistics
    rows = torch.arange(8)
    smoothed = -((1 - e) * log_p[rows, y] + e / 10 * log_p.sum(1)).mean().item()  # targets (1-e) one-hot + e/10
    assert metrics["loss"] == pytest.approx(smoothed, rel=1e-5)
    assert abs(smoothed - (-log_p[rows, y].mean().item())) > 1e-3  # the smoothing shows at this tolerance


def test_ema_weights_are_the_ones_selected_saved_and_tested(fashion_root, tmp_path, monkeypatch):
    """--ema: best.pt holds the average of the weights after every step up to the best epoch (recomputed
    here from the raw weights), not the raw weights; the validation loss (plain, under --label-smoothing) and
    the test scores are those of best.pt."""
    raw, build = [], train.build_optimizer

    def recording(args, model):  # the raw weights (and batch-norm statistics) after every optimiser step
        optimizer = build(args, model)
        optimizer.register_step_post_hook(lambda *_: raw.append({k: v.clone() for k, v in model.state_dict().items()
                                                                 if v.is_floating_point()}))
        return optimizer
    monkeypatch.setattr(train, "build_optimizer", recording)
    decay = 0.9
    summary = train.main(["--data-root", str(fashion_root), "--widths", TINY_WIDTHS, "--limit-train", "200",
                          "--batch-size", "32", "--epochs", "2", "--patience", "2", "--ema", str(decay),
                          "--label-smoothing", "0.1", "--quiet", "--out", str(tmp_path / "run")])
    steps = len(raw) // 2
    average = raw[0]
    for weights in raw[1:summary["best_epoch"] * steps]:
        average = {k: decay * average[k] + (1 - decay) * v for k, v in weights.items()}
    best = torch.load(tmp_path / "run/best.pt")
    assert all(torch.allclose(best[k], average[k], atol=1e-6) for k in average)
    assert not all(torch.allclose(best[k], v, atol=1e-3) for k, v in raw[summary["best_epoch"] * steps - 1].items())
    images = datasets.load_fashion_mnist(fashion_root)
    model = ResidualCNN(1, 10, 28, (6, 8, 8, 8, 8, 8))
    top1, top5 = scores_of_saved_weights(tmp_path / "run", images, model)
    assert summary["test_top1"] == pytest.approx(top1, abs=1e-9) and summary["test_top5"] == pytest.approx(top5)
    _, val_idx, _ = datasets.split(images, 0.1, 0, 200)
    with torch.no_grad():
        logits = model.eval()(normalised(tmp_path / "run", images, images.train_x[val_idx]))
    val_loss = torch.nn.functional.cross_entropy(logits, images.train_y[val_idx]).item()
    assert summary["best_val_loss"] == pytest.approx(val_loss, rel=1e-5)


def test_two_torchrun_processes_train_as_one_on_the_same_global_batches(fashion_root, tmp_path, torchrun):
    """No batch norm or dropout: the DDP run's numbers equal one process's up to float rounding."""
    flags = ["--data-root", str(fashion_root), "--widths", TINY_WIDTHS, "--norm", "none", "--epochs", "3",
             "--optimizer", "adam", "--lr", "1e-2", "--batch-size", "32", "--limit-train", "300", "--quiet"]
    one = train.main([*flags, "--out", str(tmp_path / "one")])
    two = torchrun(train.__file__, [*flags, "--out", str(tmp_path / "runs/two")])
    assert two.returncode == 0, two.stderr
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["two"]  # rank 0 alone wrote, one folder
    summary = json.loads((tmp_path / "runs/two/summary.json").read_text())
    assert json.loads((tmp_path / "runs/two/config.json").read_text())["environment"]["processes"] == 2
    assert one["test_top1"] > 0.5 and summary["test_top1"] == pytest.approx(one["test_top1"], abs=1e-9)
    for key in ("best_val_loss", "test_top5", "best_val_acc"):
        assert summary[key] == pytest.approx(one[key], rel=1e-4)
    assert summary["best_epoch"] == one["best_epoch"] and summary["train_examples"] == one["train_examples"]


def test_ddp_flags_that_leave_a_process_without_rows_are_one_line(fashion_root, tmp_path, run_cli, monkeypatch):
    from common import distributed
    monkeypatch.setattr(distributed, "world", lambda: 2)  # as under torchrun with 2 processes
    code, err = run_cli(train.main, ["--data-root", str(fashion_root), "--widths", TINY_WIDTHS, "--batch-size", "3",
                                     "--out", str(tmp_path / "r")])
    assert code == 2 and len(err) == 1 and "--batch-size 3 gives 2 processes fewer than 2 example(s) each" in err[0]
    assert not (tmp_path / "r").exists()


def test_a_ddp_process_without_evaluation_rows_still_scores(monkeypatch):
    """With fewer held-out images than processes, a process evaluates nothing and adds zeros."""
    from common import distributed
    monkeypatch.setattr(distributed, "world", lambda: 2)
    monkeypatch.setattr(distributed, "rank", lambda: 0)  # rank 0's slice of a batch of 1 is empty
    x, y = torch.zeros(1, 1, 28, 28, dtype=torch.uint8), torch.tensor([3])
    batches = datasets.Batches(x, y, torch.zeros(1, 1, 1), torch.ones(1, 1, 1), "cpu")
    model = ResidualCNN(1, 10, 28, (4,) * 6, 1)
    metrics = train.evaluate(model, batches, torch.tensor([0]), 8, contextlib.nullcontext())
    assert metrics["top1"] == 0 and metrics["confusion"].sum() == 0 and metrics["confusion"].shape == (10, 10)


def test_a_sweep_reads_the_images_once_and_its_points_end_as_when_run_alone(fashion_root, reused_and_fresh):
    flags = ["--data-root", str(fashion_root), "--widths", TINY_WIDTHS, "--epochs", "2", "--limit-train", "200"]
    reused_and_fresh(train, [flags, [*flags, "--seed", "1", "--augment"], [*flags, "--limit-train", "300"]],
                     (datasets, "load_fashion_mnist"))


def test_runs_leave_the_images_they_share_as_read_and_a_changed_file_is_read_again(fashion_root, tmp_path):
    train.main(["--data-root", str(fashion_root), "--widths", TINY_WIDTHS, "--epochs", "1", "--augment", "--quiet",
                "--out", str(tmp_path / "run")])  # normalises, augments and batches the images it shares
    own = datasets.load("fashion-mnist", fashion_root)
    own.train_x = own.train_x[:1]  # a run's own ImageSet
    own.classes.append("eleventh")
    kept = datasets.load("fashion-mnist", fashion_root)
    forget_reused()
    fresh = datasets.load("fashion-mnist", fashion_root)
    assert all(torch.equal(getattr(kept, key), getattr(fresh, key))
               for key in ("train_x", "train_y", "test_x", "test_y"))
    assert kept.classes == datasets.FASHION_MNIST_CLASSES
    images, labels = class_pattern_images(100, seed=2)
    write_idx(fashion_root / "fashion-mnist/train-images-idx3-ubyte.gz", images)
    write_idx(fashion_root / "fashion-mnist/train-labels-idx1-ubyte.gz", labels)
    assert len(datasets.load("fashion-mnist", fashion_root).train_y) == 100


def test_the_quick_step_benchmark_runs_and_prints_its_ratio(fashion_root, bench):
    *rates, ratio = bench("lab2_step.py", "--quick", "--", "--data-root", str(fashion_root))[-3:]
    assert [line.split()[0] for line in rates] == ["epoch", "floor"]
    assert ratio.startswith("epoch/floor ")
    assert 0 < float(ratio.split()[1]) < math.inf
