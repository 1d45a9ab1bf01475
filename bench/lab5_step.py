"""Lab 5: time per optimisation step of our style transfer (one forward, one backward of the summed
losses, channels-last convolutions) against two others, same weights, images, layers and size,
alternated in one process:
- the floor: one bare forward + backward of the same truncated VGG on the same image (no losses, no
  Gram matrices, no optimiser) - what any step costs at least;
- the Gram matrices alone: forward + backward of the style layers' Gram products on their feature maps,
  so that floor + Gram is what any step that computes them costs at least (the bound on ours/floor);
- the report's tutorial-style code (a loss module after each chosen layer, one backward per loss with
  retain_graph, plain NCHW, autograd's Gram matrix); it must give the same loss as ours.

    python bench/lab5_step.py [--sizes 128 256] [--steps 20] [--rounds 3]
"""
import argparse
import copy
import time

import torch
from torch import nn
from torch.nn import functional as F

from lab5_style.data import image_path, load_image
from lab5_style.model import StyleTransferLoss, build_features, gram, weights_file

CONTENT_LAYERS = {"conv_4": 1.0}
STYLE_LAYERS = {"conv_1": 1000.0, "conv_2": 800.0, "conv_3": 600.0, "conv_4": 400.0, "conv_5": 200.0}


class Normalize(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.features = features

    def forward(self, x):
        return self.features.normalize(x)


class ContentLoss(nn.Module):
    def __init__(self, target, weight):
        super().__init__()
        self.target, self.weight = target.detach() * weight, weight

    def forward(self, x):
        self.loss = F.mse_loss(x * self.weight, self.target)
        return x

    def backward(self):
        self.loss.backward(retain_graph=True)
        return self.loss


def tutorial_gram(x):
    a, b, c, d = x.shape
    features = x.reshape(a * b, c * d)
    return torch.mm(features, features.t()).div(a * b * c * d)


class StyleLoss(ContentLoss):
    def forward(self, x):
        output = x.clone()
        self.loss = F.mse_loss(tutorial_gram(x) * self.weight, self.target)
        return output


def tutorial_model(features, content, style):
    """The report's construction: copy layers one by one, insert a loss module after each chosen one,
    compute its target with the model built so far, and cut after the last loss. Plain NCHW layout."""
    model, losses = nn.Sequential(Normalize(features)), []
    for name, layer in copy.deepcopy(features.layers).to(memory_format=torch.contiguous_format).named_children():
        model.add_module(name, layer)
        if name in CONTENT_LAYERS:
            loss = ContentLoss(model(content), CONTENT_LAYERS[name])
            model.add_module(f"content_loss_{name}", loss)
            losses.append(loss)
        if name in STYLE_LAYERS:
            loss = StyleLoss(tutorial_gram(model(style)), STYLE_LAYERS[name])
            model.add_module(f"style_loss_{name}", loss)
            losses.append(loss)
        if len(losses) == len(CONTENT_LAYERS) + len(STYLE_LAYERS):
            return model, losses


def tutorial_step(model, losses, image, optimizer):
    optimizer.zero_grad()
    model(image)
    total = sum(loss.backward().item() for loss in losses)
    optimizer.step()
    return total


def our_step(loss_fn, image, optimizer):
    optimizer.zero_grad()
    content, style = loss_fn(image)
    total = content + style
    total.backward()
    optimizer.step()
    return total.item()


def floor_step(features, image):
    """The truncated VGG alone: forward to the deepest layer the losses use, backward to the image."""
    *_, deepest = features(image, set(CONTENT_LAYERS) | set(STYLE_LAYERS)).values()  # in the layers' order
    torch.autograd.grad(deepest, image, torch.ones_like(deepest))


def gram_step(maps):
    """The style layers' Gram matrices alone, forward and backward, on the feature maps ours uses."""
    for features in maps:
        matrix = gram(features)
        torch.autograd.grad(matrix, features, torch.ones_like(matrix))


def seconds_per_step(step, steps: int) -> float:
    step()  # warm-up
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="alternate the four this many times; keep the best")
    args = parser.parse_args()
    features = build_features("vgg16", weights_file("vgg16", None, quiet=True), "avg")
    print(f"lab5 step: vgg16 avg pool, content {list(CONTENT_LAYERS)}, style {list(STYLE_LAYERS)}, "
          f"Adam, {torch.get_num_threads()} threads")
    for size in args.sizes:
        content = load_image(image_path("builtin:chelsea", "--content"), size)
        style = load_image(image_path("builtin:coffee", "--style"), tuple(content.shape[2:]))
        ours_image, tutorial_image = content.clone().requires_grad_(), content.clone().requires_grad_()
        ours_optimizer, tutorial_optimizer = torch.optim.Adam([ours_image]), torch.optim.Adam([tutorial_image])
        loss_fn = StyleTransferLoss(features, content, style, CONTENT_LAYERS, STYLE_LAYERS)
        model, losses = tutorial_model(features, content, style)
        ours_loss = our_step(loss_fn, ours_image, ours_optimizer)
        tutorial_loss = tutorial_step(model, losses, tutorial_image, tutorial_optimizer)
        assert abs(ours_loss - tutorial_loss) <= 1e-4 * abs(tutorial_loss), (ours_loss, tutorial_loss)
        floor_image = content.clone().requires_grad_()
        maps = [m.detach().requires_grad_() for m in features(content, set(STYLE_LAYERS)).values()]
        steps = {"floor": lambda image=floor_image: floor_step(features, image),
                 "gram": lambda maps=maps: gram_step(maps),
                 "ours": lambda image=ours_image, optimizer=ours_optimizer, loss_fn=loss_fn:
                     our_step(loss_fn, image, optimizer),
                 "tutorial": lambda image=tutorial_image, optimizer=tutorial_optimizer, model=model, losses=losses:
                     tutorial_step(model, losses, image, optimizer)}
        times = {name: [] for name in steps}
        for _ in range(args.rounds):
            for name, step in steps.items():
                times[name].append(seconds_per_step(step, args.steps))
        best = {name: min(seconds) for name, seconds in times.items()}
        print(f"{content.shape[2]}x{content.shape[3]} px: floor {best['floor'] * 1e3:7.1f} ms/step, "
              f"Gram matrices {best['gram'] * 1e3:5.1f}, ours {best['ours'] * 1e3:7.1f}, "
              f"tutorial-style {best['tutorial'] * 1e3:7.1f}; ours/floor {best['ours'] / best['floor']:.2f}, "
              f"(floor + Gram)/floor {(best['floor'] + best['gram']) / best['floor']:.2f}, "
              f"tutorial/ours {best['tutorial'] / best['ours']:.2f} (same first loss {ours_loss:.4g})")


if __name__ == "__main__":
    main()
