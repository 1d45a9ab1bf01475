"""Image datasets of Lab 2 as in-memory uint8 tensors (N, C, H, W) with integer labels; the
train/validation/test split; normalised, optionally augmented batches drawn from memory.

fashion-mnist: IDX files from <data-root>/fashion-mnist/, else the Debian package
dataset-fashion-mnist, else a download (common.fetch). tiny-imagenet: the tiny-imagenet-200/ folder
layout (the official val set is our test set). cifar10/cifar100: torchvision's folders, downloaded by
common.fetch when missing.
"""
import gzip
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from common import distributed
from common.data import balanced_subset, reused, seeded_permutation
from common.errors import UsageError
from common.fetch import fetch

FASHION_MNIST_DIRS = ("fashion-mnist", "FashionMNIST/raw")  # under --data-root; torchvision uses the second
FASHION_MNIST_SYSTEM = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
CIFAR_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}  # torchvision's, under --data-root


@dataclass
class ImageSet:
    train_x: torch.Tensor  # uint8 (N, C, H, W)
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    skipped: int = 0  # bad image files left out (--skip-bad-images)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (the MNIST format), gzip-compressed or not."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as error:  # truncated or garbage gzip, unreadable file
        raise UsageError(f"{path} cannot be read: {error}") from None
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise UsageError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise UsageError(f"{path} is truncated inside its header")
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    if len(data) - 4 - 4 * ndim != np.prod(shape):
        raise UsageError(f"{path} is truncated: its header promises shape {shape}")
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    return next((p for p in (folder / f"{stem}.gz", folder / stem) if p.exists()), None)


def load_fashion_mnist(root: Path) -> ImageSet:
    stems = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    folders = [root / d for d in FASHION_MNIST_DIRS] + [FASHION_MNIST_SYSTEM]
    for folder in folders:
        paths = [_find_idx(folder, stem) for stem in stems]
        if all(paths):
            break
    else:
        _download_fashion_mnist(root)
        paths = [_find_idx(root / FASHION_MNIST_DIRS[0], stem) for stem in stems]
    train_x, train_y, test_x, test_y = (torch.from_numpy(read_idx(p).copy()) for p in paths)
    for images, labels, images_path, labels_path in ((train_x, train_y, *paths[:2]), (test_x, test_y, *paths[2:])):
        if images.dim() != 3 or labels.dim() != 1:
            raise UsageError(f"{images_path} / {labels_path}: expected (N, 28, 28) images and N labels, got shapes "
                             f"{tuple(images.shape)} and {tuple(labels.shape)}")
        if len(images) == 0:
            raise UsageError(f"{images_path} holds no images")
        if len(images) != len(labels):
            raise UsageError(f"{labels_path} holds {len(labels)} labels for the {len(images)} images of {images_path}")
        if len(labels) and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
            raise UsageError(f"{labels_path}: label {int(labels.max())} is out of range 0..9")
    return ImageSet(train_x.unsqueeze(1), train_y.long(), test_x.unsqueeze(1), test_y.long(), FASHION_MNIST_CLASSES)


def _download_fashion_mnist(root: Path) -> None:
    if not root.is_dir():
        raise UsageError(f"Fashion-MNIST not found in {FASHION_MNIST_SYSTEM}, and --data-root {root} does not exist; "
                         f"install it with `apt-get install dataset-fashion-mnist` or put the four *-ubyte.gz "
                         f"files in an existing {root}/fashion-mnist/")
    try:
        fetch("fashion-mnist", root)
    except UsageError as error:  # offline: the Debian package is the other way to get it
        raise UsageError(f"{error}; or install it with `apt-get install dataset-fashion-mnist` (into "
                         f"{FASHION_MNIST_SYSTEM})") from None


TINY_IMAGENET_SIZE = (64, 64)


def _decode_one(path: Path) -> torch.Tensor | str:
    """One 64x64 image as uint8 (3, H, W) (grayscale files become RGB), or why it cannot be used."""
    try:
        with Image.open(path) as image:
            if image.size != TINY_IMAGENET_SIZE:
                return f"is {image.size[0]}x{image.size[1]}, not 64x64"
            return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
    except (OSError, UnidentifiedImageError, SyntaxError) as error:  # missing, not an image, truncated
        return f"cannot be decoded ({type(error).__name__})"


def _decode(items: list[tuple[Path, int]], workers: int, skip_bad: bool) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The images of (path, label) pairs as one uint8 (N, 3, 64, 64) tensor, their labels, and how many bad
    files were skipped; without skip_bad the first bad file is an error naming it."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        images = list(pool.map(_decode_one, [path for path, _ in items]))
    good, bad = [], []
    for image, (path, label) in zip(images, items, strict=True):
        if isinstance(image, str):
            bad.append(f"{path} {image}")
        else:
            good.append((image, label))
    if bad and not skip_bad:
        raise UsageError(f"{bad[0]} ({len(bad)} bad image(s) in all; --skip-bad-images drops them)")
    if not good:
        raise UsageError(f"none of the {len(items)} images could be used")
    return torch.stack([image for image, _ in good]), torch.tensor([label for _, label in good]), len(bad)


def load_tiny_imagenet(root: Path, workers: int, skip_bad: bool = False) -> ImageSet:
    """tiny-imagenet-200/: wnids.txt, words.txt, train/<wnid>/images/*.JPEG, val/images + val_annotations.txt."""
    base = root / "tiny-imagenet-200"
    if not base.exists():
        fetch("tiny-imagenet", root)
    try:
        wnids = (base / "wnids.txt").read_text().split()
        index = {w: i for i, w in enumerate(wnids)}
        train = [(p, index[w]) for w in wnids for p in sorted((base / "train" / w / "images").glob("*.JPEG"))]
        rows = [line.split("\t") for line in (base / "val/val_annotations.txt").read_text().splitlines() if line]
        test = [(base / "val/images" / r[0], index[r[1]]) for r in rows]
        words = base / "words.txt"
        lines = words.read_text().splitlines() if words.exists() else []
    except (OSError, KeyError, IndexError, ValueError) as error:  # ValueError: a file that is not text
        raise UsageError(f"{base} does not have the tiny-imagenet-200 layout: "
                         f"{type(error).__name__}: {str(error).splitlines()[0]}") from None
    names = dict(line.split("\t", 1) for line in lines if "\t" in line)
    if not train or not test:
        raise UsageError(f"{base} holds no training or validation images")
    train_x, train_y, train_skipped = _decode(train, workers, skip_bad)
    test_x, test_y, test_skipped = _decode(test, workers, skip_bad)
    return ImageSet(train_x, train_y, test_x, test_y, [names.get(w, w).split(",")[0] for w in wnids],
                    skipped=train_skipped + test_skipped)


def load_cifar(name: str, root: Path) -> ImageSet:
    from torchvision.datasets import CIFAR10, CIFAR100
    dataset = CIFAR10 if name == "cifar10" else CIFAR100
    folder = root / CIFAR_FOLDERS[name]
    if not folder.exists():
        fetch(name, root)
    try:
        train, test = (dataset(str(root), train=t) for t in (True, False))
    except Exception as error:  # torchvision checks every file's MD5: missing, truncated or garbage files
        raise UsageError(f"{folder}: corrupt {name} files ({type(error).__name__}); delete the folder, and the next "
                         f"run downloads it afresh") from None
    def as_nchw(images):
        return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    return ImageSet(as_nchw(train.data), torch.tensor(train.targets), as_nchw(test.data), torch.tensor(test.targets),
                    list(train.classes))


def load(name: str, root: Path, workers: int = 4, skip_bad: bool = False) -> ImageSet:
    """The dataset's images, read once per process (common.data.reused): later runs share its tensors,
    which no run modifies (splits, statistics and batches index copies out of them), each with an ImageSet
    of its own."""
    if name == "fashion-mnist":
        folders = [root / d for d in FASHION_MNIST_DIRS] + [FASHION_MNIST_SYSTEM]
        images = reused(load_fashion_mnist, root, files=folders)
    elif name == "tiny-imagenet":
        images = reused(load_tiny_imagenet, root, workers, skip_bad, files=[root / "tiny-imagenet-200"])
    else:
        images = reused(load_cifar, name, root, files=[root / CIFAR_FOLDERS[name]])
    return replace(images, classes=list(images.classes))


def split(images: ImageSet, val_fraction: float, seed: int, limit_train: int | None = None,
          limit_test: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train, val, test) index tensors: seeded, class-balanced where limited; validation is split off
    the (limited) training images."""
    pool = torch.arange(len(images.train_y))
    if limit_train:
        pool = balanced_subset(images.train_y, limit_train, seed)
    pool = pool[seeded_permutation(len(pool), seed)]
    n_val = max(1, round(len(pool) * val_fraction))
    if len(pool) - n_val < 2:
        raise UsageError(f"{len(pool)} training images leave fewer than 2 for training after --val-fraction "
                         f"(batch norm needs 2 per batch); raise --limit-train")
    test = torch.arange(len(images.test_y))
    if limit_test:
        test = balanced_subset(images.test_y, limit_test, seed)
    return pool[n_val:], pool[:n_val], test


def channel_stats(x: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of the images in [0, 1], shaped (C, 1, 1); chunked to bound memory."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for idx in indices.split(4096):
        chunk = x[idx].double() / 255
        total += chunk.sum((0, 2, 3))
        squares += chunk.square().sum((0, 2, 3))
    n = len(indices) * x.shape[2] * x.shape[3]
    mean = total / n
    std = (squares / n - mean.square()).clamp_min(1e-12).sqrt()
    return mean.float()[:, None, None], std.float()[:, None, None]


def augment(x: torch.Tensor, crop: bool = True) -> torch.Tensor:
    """Per image: a random crop of the zero-padded image (padding size/8; unless crop is False), then a random
    horizontal flip."""
    n, _, h, w = x.shape
    if crop:
        pad = max(1, h // 8)
        padded = F.pad(x, (pad, pad, pad, pad))
        dy, dx = (torch.randint(0, 2 * pad + 1, (n,), device=x.device) for _ in range(2))
        rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]
        cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]
        x = padded.permute(0, 2, 3, 1)[torch.arange(n, device=x.device)[:, None, None], rows, cols].permute(0, 3, 1, 2)
    flip = torch.rand(n, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


class Batches:
    """Normalised float batches of uint8 images held in memory (on the training device)."""

    def __init__(self, x, y, mean, std, device):
        self.x, self.y = x.to(device), y.to(device)
        self.mean, self.std = mean.to(device), std.to(device)

    def __call__(self, indices, batch_size, shuffle=False, augmentation=None):
        """(x, y, n): this process's rows of each global batch of n images (all of them in one process),
        augmented by "crop-flip" or "flip" (None: as they are)."""
        if shuffle:  # rank 0's shuffle on every DDP process
            indices = indices[distributed.main_tensor(torch.randperm(len(indices)))]
        smallest = 2 * distributed.world() if shuffle else 1  # batch norm cannot train on one image
        for idx in indices.split(batch_size):
            n = len(idx)
            idx = idx[distributed.my_rows(n)]
            if n < smallest or not len(idx):
                continue
            idx = idx.to(self.x.device)
            x = (self.x[idx].float() / 255 - self.mean) / self.std
            if augmentation:
                x = augment(x, crop=augmentation == "crop-flip")
            yield x.contiguous(memory_format=torch.channels_last), self.y[idx], n

    @staticmethod
    def steps(count: int, batch_size: int) -> int:
        """The optimiser steps of a training epoch over count images: the global batches that __call__
        (shuffle=True) keeps, the same on every DDP process."""
        full, rest = divmod(count, batch_size)
        smallest = 2 * distributed.world()
        return full * (batch_size >= smallest) + (rest >= smallest)
