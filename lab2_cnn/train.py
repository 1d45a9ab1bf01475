"""Lab 2: image classification with a residual CNN (report, Lab 2).

    python lab2_cnn/train.py --dataset fashion-mnist --epochs 10

Data live in memory as uint8 tensors (on the GPU when there is one); batches are normalised and,
with --augment, randomly cropped and flipped on the fly. A validation set is split off the
training images; training stops by the report's rule (best validation loss not improved for
wait+1 epochs); the test top-1/top-5 are those of the best-validation weights.
"""
import argparse
import sys
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `common` when run as a script
from common import cli  # noqa: E402
from common.data import balanced_subset  # noqa: E402
from common.device import seed_everything, select_device  # noqa: E402
from common.early_stopping import EarlyStopping  # noqa: E402
from common.plots import plot_confusion, plot_curves  # noqa: E402
from common.runs import Run  # noqa: E402
from lab2_cnn import data as datasets  # noqa: E402
from lab2_cnn.model import ResidualCNN  # noqa: E402


def widths_list(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) <= 0:
        raise argparse.ArgumentTypeError(f"must be positive integers separated by commas, got {text!r}")
    return widths


def parse_args(argv=None):
    parser = cli.lab_parser("lab2_cnn", __doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["fashion-mnist", "tiny-imagenet", "cifar10", "cifar100"],
                        default="fashion-mnist")
    parser.add_argument("--widths", type=widths_list, default=(64, 128, 256, 512, 256, 128),
                        help="width of each group (64,128,256,512,256,128, the report's)")
    parser.add_argument("--convs-per-group", type=cli.positive_int, default=1,
                        help="3x3 convs before each group's residual block (1)")
    parser.add_argument("--norm", choices=["batch", "none"], default="batch", help="batch norm in every conv (batch)")
    parser.add_argument("--dropout", type=cli.probability, default=0.0, help="channel dropout after every conv (0)")
    parser.add_argument("--no-residual", dest="residual", action="store_false", help="drop the skip connections")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd", help="sgd has momentum 0.9")
    parser.add_argument("--lr", type=cli.positive_float, default=0.05)
    parser.add_argument("--lrd", type=cli.positive_float, default=0.8,
                        help="learning-rate decay: multiply the lr by this after every epoch; 1 = off (0.8)")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--epochs", type=cli.positive_int, default=10)
    parser.add_argument("--wait", type=cli.non_negative_int, default=2,
                        help="stop once the best validation loss has not improved for wait+1 epochs (2)")
    parser.add_argument("--batch-size", type=cli.positive_int, default=128)
    parser.add_argument("--workers", type=cli.positive_int, default=4, help="threads that decode JPEG files (4)")
    parser.add_argument("--val-fraction", type=cli.probability, default=0.1,
                        help="share of the training images held out for validation (0.1)")
    parser.add_argument("--limit-train", type=cli.positive_int, help="class-balanced subset of the training images "
                        "(validation is split off this subset)")
    parser.add_argument("--limit-test", type=cli.positive_int, help="class-balanced subset of the test images")
    parser.add_argument("--augment", action="store_true", help="random crop (padding size/8) and horizontal flip")
    args = parser.parse_args(argv)
    if args.val_fraction == 0:
        raise cli.UsageError("--val-fraction must be above 0: early stopping and best.pt need a validation set")
    return args


def split(images: datasets.ImageSet, args):
    """(train, val, test) index tensors: seeded, class-balanced where limited."""
    pool = torch.arange(len(images.train_y))
    if args.limit_train:
        pool = balanced_subset(images.train_y, args.limit_train, args.seed)
    pool = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(args.seed))]
    n_val = max(1, round(len(pool) * args.val_fraction))
    if n_val >= len(pool):
        raise cli.UsageError(f"{len(pool)} training images leave none for training after --val-fraction")
    test = torch.arange(len(images.test_y))
    if args.limit_test:
        test = balanced_subset(images.test_y, args.limit_test, args.seed)
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


def augment(x: torch.Tensor) -> torch.Tensor:
    """Per image: a random crop of the zero-padded image (padding size/8), then a random horizontal flip."""
    n, _, h, w = x.shape
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

    def __call__(self, indices, batch_size, shuffle=False, augmented=False):
        if shuffle:
            indices = indices[torch.randperm(len(indices))]
        for idx in indices.split(batch_size):
            idx = idx.to(self.x.device)
            x = (self.x[idx].float() / 255 - self.mean) / self.std
            if augmented:
                x = augment(x)
            yield x.contiguous(memory_format=torch.channels_last), self.y[idx]


def train_epoch(model, optimizer, batches, indices, args, autocast, progress):
    model.train()
    device = next(model.parameters()).device
    total_loss, correct = torch.zeros((), device=device), torch.zeros((), dtype=torch.long, device=device)
    for x, y in batches(indices, args.batch_size, shuffle=True, augmented=args.augment):
        with autocast:
            logits = model(x)
            loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.detach().float() * len(y)  # stays on the device: no sync per batch
        correct += (logits.argmax(1) == y).sum()
        progress.update(len(y))
    return total_loss.item() / len(indices), correct.item() / len(indices)


@torch.inference_mode()
def evaluate(model, batches, indices, batch_size, autocast):
    """Mean loss, top-1, top-5 and the predicted class of every image."""
    model.eval()
    total_loss, top1, top5, predictions = 0.0, 0, 0, []
    for x, y in batches(indices, 4 * batch_size):
        with autocast:
            logits = model(x).float()
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        best = logits.topk(min(5, logits.shape[1]), dim=1).indices
        top1 += (best[:, 0] == y).sum().item()
        top5 += (best == y[:, None]).any(1).sum().item()
        predictions.append(best[:, 0].cpu())
    n = len(indices)
    return total_loss / n, top1 / n, top5 / n, torch.cat(predictions)


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = select_device(args.device)
    seed_everything(args.seed)
    images = datasets.load(args.dataset, Path(args.data_root), args.workers)
    train_idx, val_idx, test_idx = split(images, args)
    mean, std = channel_stats(images.train_x, train_idx)
    on_cuda = device.type == "cuda"
    train_batches = Batches(images.train_x, images.train_y, mean, std, device)
    test_batches = Batches(images.test_x, images.test_y, mean, std, device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if on_cuda else nullcontext()

    channels, size = images.train_x.shape[1], images.train_x.shape[2]
    model = ResidualCNN(channels, len(images.classes), size, args.widths, args.convs_per_group,
                        norm=args.norm == "batch", dropout=args.dropout, residual=args.residual).to(device)
    model = model.to(memory_format=torch.channels_last)  # faster convolutions on CUDA and on CPU (oneDNN)
    if args.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), args.lr, momentum=0.9, weight_decay=args.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), args.lr, weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=args.lrd)
    run = Run("lab2_cnn", args, device)

    stopper = EarlyStopping(args.wait)
    for epoch in range(1, args.epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        with tqdm(total=len(train_idx), desc=f"epoch {epoch}", unit="img", disable=args.quiet, leave=False) as bar:
            train_loss, train_acc = train_epoch(model, optimizer, train_batches, train_idx, args, autocast, bar)
        val_loss, val_acc, _, _ = evaluate(model, train_batches, val_idx, args.batch_size, autocast)
        scheduler.step()
        run.log(epoch, show=True, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss, val_acc=val_acc, lr=lr)
        status = stopper.update(model, epoch, val_loss, losses=(train_loss,))
        if status != "ok":
            break

    history = run.history
    plot_curves(run.path("loss_curves.png"), {"train": history["train_loss"], "validation": history["val_loss"]},
                ylabel="cross-entropy", title=f"{args.dataset}: loss")
    plot_curves(run.path("accuracy_curves.png"), {"train": history["train_acc"], "validation": history["val_acc"]},
                ylabel="top-1 accuracy", title=f"{args.dataset}: accuracy")
    summary = {"best_val_loss": None, "best_epoch": None, "test_top1": None, "test_top5": None}
    if stopper.restore_best(model, run.path("best.pt")):
        _, top1, top5, predicted = evaluate(model, test_batches, test_idx, args.batch_size, autocast)
        confusion = torch.zeros(len(images.classes), len(images.classes), dtype=torch.long)
        confusion.index_put_((images.test_y[test_idx], predicted), torch.ones_like(predicted), accumulate=True)
        plot_confusion(run.path("confusion_matrix.png"), confusion.numpy(), images.classes,
                       title=f"{args.dataset} test set, best-validation model (top-1 {top1:.3f})")
        summary = {"best_val_loss": stopper.best, "best_epoch": stopper.best_epoch, "test_top1": top1,
                   "test_top5": top5, "best_val_acc": history["val_acc"][stopper.best_epoch - 1]}
    return run.finish(status, **summary, epochs_run=len(history["epoch"]), train_examples=len(train_idx))


if __name__ == "__main__":
    cli.run(main)
