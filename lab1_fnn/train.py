"""Lab 1: fit a one-dimensional function with a feed-forward net (report, Lab 1).

    python lab1_fnn/train.py --width 75 --depth 2

Data: N points equispaced on the function's interval, split at random 5:2:3 into disjoint
train / validation / test sets. Model: depth d and width w as the report defines them.
Training records train and validation MSE every epoch; the test MSE is that of the
best-validation weights.
"""
import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from common import cli
from common.data import seeded_permutation
from common.device import allocating, seed_everything, select_device
from common.early_stopping import EarlyStopping
from common.plots import plot_curves, plot_train_val
from common.runs import Run, default_out_dir, write_atomic
from common.schedules import schedule_from_args
from common.sweep.tables import mean_std

# name -> (f, interval start, interval end, whether the end point is included)
FUNCTIONS = {
    "sin": (np.sin, 0.0, 2 * math.pi, False),
    "log2cos": (lambda x: np.log2(x) + np.cos(math.pi * x / 2), 1.0, 16.0, True),
}
ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU}


def parse_split(text: str) -> tuple[float, float, float]:
    parts = text.split(":")
    try:
        ratios = tuple(float(p) for p in parts)
    except ValueError:
        ratios = ()
    if len(ratios) != 3 or not all(0 < r < math.inf for r in ratios):
        raise argparse.ArgumentTypeError(
            f"must be three positive numbers train:val:test such as 5:2:3, got {text!r}")
    return ratios


def parse_args(argv=None):
    parser = cli.lab_parser("lab1_fnn", __doc__.splitlines()[0])
    parser.add_argument("--function", choices=FUNCTIONS, default="sin",
                        help="sin: y = sin(x) on [0, 2pi); log2cos: y = log2(x) + cos(pi x / 2) on [1, 16]")
    parser.add_argument("--n-points", type=cli.positive_int, default=1000, help="number of points N (1000)")
    parser.add_argument("--split", type=parse_split, default=(5.0, 2.0, 3.0),
                        help="train:val:test ratio (5:2:3)")
    parser.add_argument("--data-seed", type=cli.seed, default=0,
                        help="seed of the random split, kept apart from --seed so that seeds vary only the model (0)")
    parser.add_argument("--depth", type=cli.positive_int, default=1,
                        help="d: input layer 1->w, d-1 hidden layers w->w, output layer w->1 (1)")
    parser.add_argument("--width", type=cli.positive_int, default=100, help="w, neurons per layer (100)")
    parser.add_argument("--activation", choices=ACTIVATIONS, default="relu")
    parser.add_argument("--hidden-layers", choices=["trained", "report"], default="trained",
                        help="trained: every hidden layer its own trained layer; report: the report's code, one "
                             "random hidden layer shared by every hidden position and never trained (trained)")
    parser.add_argument("--optimizer", choices=["sgd", "adam", "lbfgs"], default="sgd")
    parser.add_argument("--lr", type=cli.positive_float, default=0.01, help="learning rate (0.01)")
    parser.add_argument("--epochs", type=cli.positive_int, default=500, help="maximum epochs (500)")
    parser.add_argument("--batch-size", type=cli.non_negative_int, default=0,
                        help="minibatch size; 0 = full batch, as in the report (0)")
    cli.add_schedule_flags(parser)
    cli.add_patience(parser, None, "validation MSE")
    cli.add_checkpointing(parser, every=100)
    parser.add_argument("--seeds", type=cli.positive_int, default=1, metavar="K",
                        help="train the seeds --seed .. --seed+K-1 at once, as one batched ensemble, each into "
                             "<out>/seed=S; report the mean ± std over them in <out>/seeds.json (1)")
    args = parser.parse_args(argv)
    if args.seeds > 1 and args.optimizer == "lbfgs":
        raise cli.UsageError("--seeds trains the seeds as one ensemble: not with --optimizer lbfgs")
    if args.seed + args.seeds > 2**63:
        raise cli.UsageError(f"--seed {args.seed} --seeds {args.seeds}: the seeds must stay below 2**63")
    if args.optimizer == "lbfgs" and args.batch_size:
        raise cli.UsageError("--optimizer lbfgs works on the full batch only; drop --batch-size")
    if args.optimizer == "lbfgs" and (args.lr_schedule != "none" or args.warmup):
        raise cli.UsageError("--optimizer lbfgs searches its own step length: not with --lr-schedule or --warmup")
    return args


def split_sizes(n: int, ratios) -> tuple[int, int, int]:
    total = sum(ratios)
    n_train, n_val = int(n * ratios[0] / total), int(n * ratios[1] / total)
    sizes = (n_train, n_val, n - n_train - n_val)
    if min(sizes) == 0:
        raise cli.UsageError(f"--n-points {n} is too small for --split {':'.join(f'{r:g}' for r in ratios)}: "
                             f"a set would be empty")
    return sizes


def make_data(function: str, n_points: int, ratios, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Equispaced points of the function, split at random into disjoint train/val/test sets."""
    f, start, end, closed = FUNCTIONS[function]
    x = np.linspace(start, end, n_points, endpoint=closed)
    y = f(x)
    order = seeded_permutation(n_points, seed)
    n_train, n_val, _ = split_sizes(n_points, ratios)
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    def column(values):
        return torch.tensor(values, dtype=torch.float32).unsqueeze(1)
    return {name: (column(x[idx]), column(y[idx])) for name, idx in parts.items()}


class FunctionNet(nn.Module):
    """Depth d, width w: input 1->w, d-1 hidden w->w, output w->1, the activation after all but the output.

    hidden_layers "trained": each hidden layer is its own registered, trained layer. "report": the
    report's `[nn.Linear(w, w)] * (depth - 1)`, one layer object repeated in a plain list, so one
    weight matrix shared by every hidden position and, not registered, never trained: it keeps its
    random initialisation. Kept here as buffers (not parameters) so that it moves with .to(device)
    and is saved in best.pt, yet no optimiser sees it.
    """

    def __init__(self, width: int, depth: int, activation: str = "relu", hidden_layers: str = "trained"):
        super().__init__()
        self.input = nn.Linear(1, width)
        self.hidden = nn.ModuleList()
        self.frozen_hidden_uses = 0
        if hidden_layers == "trained":
            self.hidden.extend(nn.Linear(width, width) for _ in range(depth - 1))
        else:  # the report built the shared layer after the input layer, even at depth 1 (where it is unused)
            shared = nn.Linear(width, width)
            if depth > 1:
                self.register_buffer("frozen_weight", shared.weight.detach().clone())
                self.register_buffer("frozen_bias", shared.bias.detach().clone())
                self.frozen_hidden_uses = depth - 1
        self.output = nn.Linear(width, 1)
        self.activation = ACTIVATIONS[activation]()

    def forward(self, x):
        x = self.activation(self.input(x))
        for layer in self.hidden:
            x = self.activation(layer(x))
        for _ in range(self.frozen_hidden_uses):
            x = self.activation(nn.functional.linear(x, self.frozen_weight, self.frozen_bias))
        return self.output(x)


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.LBFGS(params, lr=lr, line_search_fn="strong_wolfe")  # up to 20 iterations an epoch


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimiser steps in an epoch of n training points: 1 for the full batch (and L-BFGS)."""
    return 1 if not batch_size or batch_size >= n else math.ceil(n / batch_size)


def train_one_epoch(model, optimizer, x, y, batch_size: int, scheduler=None) -> dict:
    """One pass over the training set: the mean training MSE seen during the pass and lr, the rate of its
    last step. The scheduler (if any) steps after every optimiser step."""
    loss_fn = nn.functional.mse_loss
    lr = optimizer.param_groups[0]["lr"]  # the rate of this epoch's (last) step
    if isinstance(optimizer, torch.optim.LBFGS):
        def closure():
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            return loss
        mse = optimizer.step(closure).item()
        if scheduler is not None:
            scheduler.step()
        return {"mse": mse, "lr": lr}
    n = len(x)
    batches = [slice(None)] if steps_per_epoch(n, batch_size) == 1 else \
        torch.randperm(n, device=x.device).split(batch_size)
    total = 0.0
    for idx in batches:
        xb, yb = x[idx], y[idx]
        loss = loss_fn(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.item() * len(xb)
    return {"mse": total / n, "lr": lr}


@torch.no_grad()
def evaluate(model, x, y) -> dict:
    return {"mse": nn.functional.mse_loss(model(x), y).item()}


def plot_fit(path, model, args, data, device):
    f, start, end, closed = FUNCTIONS[args.function]
    x = np.linspace(start, end, 1000, endpoint=closed)
    with torch.no_grad():
        prediction = model(torch.tensor(x, dtype=torch.float32, device=device).unsqueeze(1)).cpu().squeeze(1)
    x_test, y_test = data["test"]
    curves = {"truth": (x, f(x)), "best-validation model": (x, prediction.numpy()),
              "test points": (x_test.squeeze(1).numpy(), y_test.squeeze(1).numpy())}
    plot_curves(path, curves, xlabel="x", ylabel="y", markers=("test points",),
                title=f"{args.function}: depth {args.depth}, width {args.width}, {args.activation}")


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.seeds > 1:
        return train_seeds(args, list(sys.argv[1:] if argv is None else argv))
    device = select_device(args.device)
    seed_everything(args.seed)
    data = make_data(args.function, args.n_points, args.split, args.data_seed)
    (x_train, y_train), (x_val, y_val) = (tuple(t.to(device) for t in data[name]) for name in ("train", "val"))
    with allocating(f"--width {args.width} --depth {args.depth}"):
        model = FunctionNet(args.width, args.depth, args.activation, args.hidden_layers).to(device)
    optimizer = make_optimizer(args.optimizer, model.parameters(), args.lr)
    scheduler = schedule_from_args(optimizer, args, steps_per_epoch(len(x_train), args.batch_size), mode="min")
    run = Run("lab1_fnn", args, device)

    stopper = EarlyStopping(args.patience)
    state = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "stopper": stopper}
    first_epoch, status = run.resume(**state), "ok"
    postfix_every = max(1, args.epochs // 200)
    progress = tqdm(range(first_epoch, args.epochs + 1), desc="lab1", disable=args.quiet, leave=False)
    for epoch in progress:
        train_metrics = train_one_epoch(model, optimizer, x_train, y_train, args.batch_size, scheduler)
        val_metrics = evaluate(model, x_val, y_val)
        scheduler.epoch_end(val_metrics["mse"])
        run.log(epoch=epoch, train_mse=train_metrics["mse"], val_mse=val_metrics["mse"], lr=train_metrics["lr"])
        status = stopper.update(model, epoch, val_metrics["mse"], losses=(train_metrics["mse"],))
        if status != "ok":
            break
        run.checkpoint(epoch, **state)
        if epoch % postfix_every == 0:
            progress.set_postfix(train=f"{train_metrics['mse']:.2e}", val=f"{val_metrics['mse']:.2e}", refresh=False)
    progress.close()
    run.epochs_done()

    final_train_mse = evaluate(model, x_train, y_train)["mse"]
    return finish(run, args, model, stopper, status, final_train_mse, data, device)


def train_seeds(args, argv: list[str]) -> dict:
    """--seeds K: the K runs as one ensemble (lab1_fnn.ensemble; one after another where batch_key says they
    train alone: --lr-schedule plateau), then the mean ± std over the seeds. With --resume, finished seeds are
    read, interrupted ones continue alone from their last.pt, the rest train."""
    from lab1_fnn.ensemble import batch_key, train_together  # it builds on this module
    out = Path(args.out) if args.out else default_out_dir("lab1_fnn")
    seeds = range(args.seed, args.seed + args.seeds)
    fresh = [flag for flag in argv if flag != "--resume"]
    runs = {seed: [*fresh, "--seeds", "1", "--seed", str(seed), "--out", str(out / f"seed={seed}")] for seed in seeds}
    summaries = {}
    for seed in seeds if args.resume else ():
        if (out / f"seed={seed}" / "summary.json").exists():
            summaries[seed] = json.loads((out / f"seed={seed}" / "summary.json").read_text())
        elif (out / f"seed={seed}" / "last.pt").exists():
            summaries[seed] = main([*runs[seed], "--resume"])
    rest = [seed for seed in seeds if seed not in summaries]
    if len(rest) > 1 and batch_key(parse_args(runs[rest[0]])) is not None:
        summaries.update(zip(rest, train_together([runs[seed] for seed in rest]), strict=True))
    else:
        summaries.update((seed, main(runs[seed])) for seed in rest)
    table = pd.DataFrame([summaries[seed] for seed in seeds])
    report = {"seeds": list(seeds), "statuses": list(table["status"])}
    for key in ("best_val_mse", "test_mse", "final_train_mse", "best_epoch"):
        values = pd.to_numeric(table[key], errors="coerce").dropna()
        report[key] = {"mean": values.mean() if len(values) else None,
                       "std": values.std(ddof=1) if len(values) > 1 else None, "n": len(values)}
    write_atomic(out / "seeds.json", json.dumps(report, indent=2) + "\n")
    if not args.quiet:
        print(f"{args.seeds} seeds: " + " ".join(f"{key}={mean_std(pd.to_numeric(table[key], errors='coerce'))}"
                                                 for key in ("best_val_mse", "test_mse", "best_epoch")) + f" -> {out}")
    return report


def finish(run, args, model, stopper, status: str, final_train_mse: float, data, device) -> dict:
    """The end of a run, one at a time or in an ensemble: best.pt, the test MSE of the best-validation
    weights, figures, summary.json."""
    have_best = stopper.restore_best(model, run.path("best.pt"))
    plot_train_val(run.path("loss_curves.png"), run.history, "mse", "MSE", log=True,
                   title=f"depth {args.depth}, width {args.width}, {args.activation}, lr {args.lr:g}")
    plot_fit(run.path("fit.png"), model, args, data, device)
    x_test, y_test = (t.to(device) for t in data["test"])
    return run.finish(
        status,
        best_val_mse=stopper.best if have_best else None,
        best_epoch=stopper.best_epoch,
        test_mse=evaluate(model, x_test, y_test)["mse"] if have_best else None,
        final_train_mse=final_train_mse,
        epochs_run=len(run.history["epoch"]),
    )


if __name__ == "__main__":
    cli.run(main)
