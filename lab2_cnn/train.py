"""Lab 2: image classification with a residual CNN (report, Lab 2).

    python lab2_cnn/train.py --dataset fashion-mnist --epochs 10

Data live in memory as uint8 tensors (on the GPU when there is one); batches are normalised and,
with --augment, randomly cropped and flipped (or only flipped) on the fly. A validation set is split
off the training images; training stops by the report's rule (best validation loss, or accuracy
with --select-on accuracy, not improved for patience+1 epochs); the test top-1/top-5 are those of
the best-validation weights.
"""
import argparse
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from common import cli, distributed, schedules
from common.device import allocating, autocast, seed_everything, select_device
from common.early_stopping import EarlyStopping
from common.ema import averaged, evaluated
from common.metrics import Tally
from common.plots import plot_confusion, plot_train_val
from common.runs import Run
from lab2_cnn import data as datasets
from lab2_cnn.model import ResidualCNN


def widths_list(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(w) for w in text.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) <= 0:
        raise argparse.ArgumentTypeError(f"must be positive integers separated by commas, got {text!r}")
    return widths


def conv_counts(text: str) -> int | tuple[int, ...]:
    """'2' (every group) or '3,3,3,2,2,1' (one count per group)."""
    counts = widths_list(text)
    return counts[0] if len(counts) == 1 and "," not in text else counts


def parse_args(argv=None):
    parser = cli.lab_parser("lab2_cnn", __doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["fashion-mnist", "tiny-imagenet", "cifar10", "cifar100"],
                        default="fashion-mnist")
    parser.add_argument("--widths", type=widths_list, default=(64, 128, 256, 512, 256, 128),
                        help="width of each group (64,128,256,512,256,128, the report's)")
    parser.add_argument("--convs-per-group", type=conv_counts, default=1, metavar="N|N1,...,N6",
                        help="3x3 convs before each group's residual block: one count for every group, or one "
                             "per group such as 3,3,3,2,2,1 (1)")
    parser.add_argument("--norm", choices=["batch", "none"], default="batch",
                        help="batch norm in every conv: the convs before the blocks and the residual blocks (batch)")
    parser.add_argument("--dropout", type=cli.probability, default=0.0,
                        help="channel dropout after every conv, in the convs and the blocks (0)")
    parser.add_argument("--block-norm", choices=["batch", "none"],
                        help="batch norm in the residual blocks only, overriding --norm there")
    parser.add_argument("--block-dropout", type=cli.probability,
                        help="channel dropout in the residual blocks only, overriding --dropout there")
    parser.add_argument("--no-residual", dest="residual", action="store_false", help="drop the skip connections")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd", help="sgd has momentum 0.9")
    parser.add_argument("--lr", type=cli.positive_float, default=0.05)
    parser.add_argument("--lrd", type=cli.positive_float, default=0.8,
                        help="learning-rate decay of --lr-schedule exponential: multiply the lr by this after "
                             "every epoch; 1 = off (0.8)")
    cli.add_schedule_flags(parser, default="exponential", warmup=0.0, kinds=schedules.KINDS)
    cli.add_label_smoothing(parser)
    cli.add_ema(parser)
    parser.add_argument("--weight-decay", type=cli.non_negative_float, default=5e-4, help="L2 penalty (5e-4)")
    parser.add_argument("--epochs", type=cli.positive_int, default=10)
    parser.add_argument("--select-on", choices=["loss", "accuracy"], default="loss",
                        help="the validation metric that picks the best epoch and early-stops: loss (the "
                             "report's) or top-1 accuracy, ties going to the lower loss (loss)")
    cli.add_patience(parser, 2, "validation metric (--select-on)", wait_alias=True)
    cli.add_checkpointing(parser, every=1)
    parser.add_argument("--batch-size", type=cli.positive_int, default=128)
    parser.add_argument("--workers", type=cli.positive_int, default=4, help="threads that decode JPEG files (4)")
    parser.add_argument("--skip-bad-images", action="store_true",
                        help="tiny-imagenet: drop image files that cannot be decoded or are not 64x64 (counted in "
                             "summary.json) instead of stopping at the first")
    parser.add_argument("--val-fraction", type=cli.probability, default=0.1,
                        help="share of the training images held out for validation (0.1)")
    parser.add_argument("--limit-train", type=cli.positive_int, help="class-balanced subset of the training images "
                        "(validation is split off this subset)")
    parser.add_argument("--limit-test", type=cli.positive_int, help="class-balanced subset of the test images")
    parser.add_argument("--augment", nargs="?", const="crop-flip", choices=["crop-flip", "flip"],
                        help="training images randomly flipped left-right, and first cropped from the image "
                             "padded by size/8 with crop-flip (--augment alone: crop-flip)")
    parser.add_argument("--tta", action="store_true",
                        help="validate and test on the mean of the class probabilities of each image and its "
                             "mirror image")
    cli.add_precision(parser)
    args = parser.parse_args(argv)
    if args.batch_size < 2:
        raise cli.UsageError("--batch-size must be 2 or more: batch norm cannot train on one image")
    if args.val_fraction == 0:
        raise cli.UsageError("--val-fraction must be above 0: early stopping and best.pt need a validation set")
    if isinstance(args.convs_per_group, tuple) and len(args.convs_per_group) != len(args.widths):
        raise cli.UsageError(f"--convs-per-group gives {len(args.convs_per_group)} counts for "
                             f"{len(args.widths)} groups (--widths); give one count, or one per group")
    return args


def build_model(args, images: datasets.ImageSet, device) -> ResidualCNN:
    """The flags' network for these images, on the device, channels-last."""
    channels, size = images.train_x.shape[1], images.train_x.shape[2]
    block_norm = args.norm if args.block_norm is None else args.block_norm
    with allocating(f"--widths {','.join(map(str, args.widths))}"):
        model = ResidualCNN(channels, len(images.classes), size, args.widths, args.convs_per_group,
                            norm=args.norm == "batch", dropout=args.dropout, residual=args.residual,
                            block_norm=block_norm == "batch", block_dropout=args.block_dropout).to(device)
    return model.to(memory_format=torch.channels_last)  # faster convolutions on CUDA and on CPU (oneDNN)


def build_optimizer(args, model) -> torch.optim.Optimizer:
    if args.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), args.lr, momentum=0.9, weight_decay=args.weight_decay)
    return torch.optim.Adam(model.parameters(), args.lr, weight_decay=args.weight_decay)


def train_one_epoch(model, optimizer, batches, indices, batch_size: int, augmentation: str | None, precision,
                    progress, scheduler=None, ema=None, label_smoothing: float = 0.0) -> dict:
    """One shuffled pass over the training images: mean (smoothed) loss, top-1 accuracy and lr, the rate of
    the last step. After every optimiser step the scheduler steps and the average (ema) takes in the weights."""
    model.train()
    tally = Tally()
    for x, y, n in batches(indices, batch_size, shuffle=True, augmentation=augmentation):
        with precision:
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        (loss * distributed.gradient_weight(len(y), n)).backward()
        lr = optimizer.param_groups[0]["lr"]  # the rate of this step
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update_parameters(distributed.unwrapped(model))  # the average copies the plain model
        tally.add(loss, logits, y)
        progress.update(len(y))
    return {**tally.mean(), "lr": lr}


@torch.no_grad()
def evaluate(model, batches, indices, batch_size: int, precision, mirrored: bool = False) -> dict:
    """Mean loss, top-1, top-5 and the confusion matrix (rows: true class, columns: predicted), over
    every DDP process's share of the images; mirrored (--tta): of the mean of the class probabilities of
    each image and its mirror image."""
    model.eval()
    distributed.share_buffers(model)  # without SyncBatchNorm (CPU), every process scores rank 0's model
    k = model.classifier[-1].out_features
    total_loss, top1, top5, confusion = 0.0, 0, 0, torch.zeros(k, k, dtype=torch.long, device=batches.x.device)
    for x, y, _ in batches(indices, 4 * batch_size):
        with precision:
            log_probs = model(x).float().log_softmax(1)
            if mirrored:  # log of the mean of the two probabilities
                log_probs = torch.logaddexp(log_probs, model(x.flip(3)).float().log_softmax(1)) - math.log(2)
        total_loss += F.nll_loss(log_probs, y, reduction="sum").item()
        best = log_probs.topk(min(5, k), dim=1).indices
        top1 += (best[:, 0] == y).sum().item()
        top5 += (best == y[:, None]).any(1).sum().item()
        confusion += torch.bincount(y * k + best[:, 0], minlength=k * k).view(k, k)
    total_loss, top1, top5, confusion = distributed.all_sum(total_loss, top1, top5, confusion)
    n = len(indices)
    return {"loss": total_loss / n, "top1": top1 / n, "top5": top5 / n, "confusion": confusion.cpu()}


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = distributed.setup(select_device(args.device))
    seed_everything(args.seed)
    images = datasets.load(args.dataset, Path(args.data_root), args.workers, args.skip_bad_images)
    train_idx, val_idx, test_idx = datasets.split(images, args.val_fraction, args.seed, args.limit_train,
                                                  args.limit_test)
    distributed.check_batches(args.batch_size, len(train_idx), least=2)  # batch norm: 2 images per process
    mean, std = datasets.channel_stats(images.train_x, train_idx)
    train_batches = datasets.Batches(images.train_x, images.train_y, mean, std, device)
    test_batches = datasets.Batches(images.test_x, images.test_y, mean, std, device)
    precision = autocast(device, args.precision)

    model = build_model(args, images, device)
    trainer = distributed.wrap(model, device)  # DDP under torchrun; model itself in one process
    optimizer = build_optimizer(args, model)
    steps = datasets.Batches.steps(len(train_idx), args.batch_size)  # per epoch, for the per-step schedule
    scheduler = schedules.schedule_from_args(optimizer, args, steps)  # plateau: on the validation loss
    ema = averaged(model, args.ema)  # None without --ema
    net = evaluated(model, ema)  # what is evaluated, selected on, saved as best.pt and tested
    run = Run("lab2_cnn", args, device)

    stopper = EarlyStopping(args.patience, mode="min" if args.select_on == "loss" else "max")
    state = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "stopper": stopper}
    if ema is not None:
        state["ema"] = ema
    first_epoch, status = run.resume(**state), "ok"
    for epoch in range(first_epoch, args.epochs + 1):
        with tqdm(total=len(train_idx), desc=f"epoch {epoch}", unit="img", disable=args.quiet, leave=False) as bar:
            train_metrics = train_one_epoch(trainer, optimizer, train_batches, train_idx, args.batch_size,
                                            args.augment, precision, bar, scheduler, ema, args.label_smoothing)
        val_metrics = evaluate(net, train_batches, val_idx, args.batch_size, precision, args.tta)
        scheduler.epoch_end(val_metrics["loss"])
        run.log(epoch=epoch, show=True, train_loss=train_metrics["loss"], train_acc=train_metrics["acc"],
                val_loss=val_metrics["loss"], val_acc=val_metrics["top1"], lr=train_metrics["lr"])
        value, tiebreak = ((val_metrics["loss"], None) if args.select_on == "loss"
                           else (val_metrics["top1"], val_metrics["loss"]))
        status = distributed.main_object(stopper.update(net, epoch, value, tiebreak=tiebreak,
                                                        losses=(train_metrics["loss"], val_metrics["loss"])))
        if status != "ok":
            break
        run.checkpoint(epoch, **state)
    run.epochs_done()

    history = run.history
    if run.writes:
        plot_train_val(run.path("loss_curves.png"), history, "loss", "cross-entropy", title=f"{args.dataset}: loss")
        plot_train_val(run.path("accuracy_curves.png"), history, "acc", "top-1 accuracy",
                       title=f"{args.dataset}: accuracy")
    summary = {"best_val_loss": None, "best_val_acc": None, "best_epoch": None, "test_top1": None, "test_top5": None}
    if stopper.restore_best(net, run.path("best.pt")):
        test_metrics = evaluate(net, test_batches, test_idx, args.batch_size, precision, args.tta)
        if run.writes:
            plot_confusion(run.path("confusion_matrix.png"), test_metrics["confusion"].numpy(), images.classes,
                           title=f"{args.dataset} test set, best-validation model (top-1 "
                                 f"{test_metrics['top1']:.3f})")
        best = stopper.best_epoch - 1
        summary = {"best_val_loss": history["val_loss"][best], "best_epoch": stopper.best_epoch,
                   "test_top1": test_metrics["top1"], "test_top5": test_metrics["top5"],
                   "best_val_acc": history["val_acc"][best]}
    return run.finish(status, **summary, epochs_run=len(history["epoch"]), train_examples=len(train_idx),
                      skipped_images=images.skipped)


if __name__ == "__main__":
    cli.run(main)
