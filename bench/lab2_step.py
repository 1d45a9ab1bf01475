"""Lab 2: images/s of a training epoch (train.py's train_one_epoch over its Batches of Fashion-MNIST held in
memory: shuffle, normalise, optional augmentation, loss and accuracy tally) against the floor: forward + loss +
backward + optimiser step of the same model on one normalised batch already in memory, repeated with the
epoch's batch sizes. The two alternate in one process; the best of each is kept. Prints epoch/floor (goal:
at least 0.9, the data path costing at most 10%).

    python bench/lab2_step.py            # 2000 images (1800 after validation), widths 16,32,64,128,64,32, 10 rounds
    python bench/lab2_step.py --quick    # 100 images, widths 4, 2 rounds (the tests run it)
    python bench/lab2_step.py -- --augment --batch-size 256    # any train.py flag after --

Otherwise train.py's defaults (batch 128, SGD, no augmentation); its default widths 64..512 take about
30 images/s on 2 CPU cores, too slow for a benchmark of a minute. Short epochs and many rounds, because on
a shared machine an epoch that another process slows down is common: the best of many short ones is one
that ran alone. Where other jobs share the cores, run it with OMP_NUM_THREADS=1: torch's threads wait on
each other there, and an epoch runs 5 to 18 times slower at random.
"""
import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from timing import best_seconds
from tqdm import tqdm

from common.device import autocast, seed_everything, select_device
from lab2_cnn import data as datasets
from lab2_cnn import train

DEFAULT = ["--widths", "16,32,64,128,64,32", "--limit-train", "2000"]
QUICK = ["--widths", "4,4,4,4,4,4", "--limit-train", "100", "--batch-size", "32"]


def floor_steps(model, optimizer, x, y, sizes, precision) -> None:
    """train_one_epoch's step without its data: the first `size` rows of one batch already in memory."""
    model.train()
    for size in sizes:
        with precision:
            loss = F.cross_entropy(model(x[:size]), y[:size])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def training_images(args, device):
    """The images, train.py's training batches of them, and the training indices."""
    images = datasets.load(args.dataset, Path(args.data_root), args.workers, args.skip_bad_images)
    train_idx, _, _ = datasets.split(images, args.val_fraction, args.seed, args.limit_train, args.limit_test)
    mean, std = datasets.channel_stats(images.train_x, train_idx)
    return images, datasets.Batches(images.train_x, images.train_y, mean, std, device), train_idx


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small subset and tiny widths")
    parser.add_argument("--rounds", type=int, help="alternate the two this many times; keep the best (10, quick 2)")
    parser.add_argument("train_flags", nargs="*", help="lab2_cnn/train.py flags (after --)")
    bench = parser.parse_args(argv)
    bench.rounds = bench.rounds or (2 if bench.quick else 10)
    args = train.parse_args([*(QUICK if bench.quick else DEFAULT), *bench.train_flags])
    device = select_device(args.device)
    seed_everything(args.seed)
    images, batches, train_idx = training_images(args, device)
    model = train.build_model(args, images, device)
    optimizer = train.build_optimizer(args, model)
    precision = autocast(device, args.precision)
    x, y, _ = next(batches(train_idx, args.batch_size))
    sizes = [len(idx) for idx in train_idx.split(args.batch_size) if len(idx) >= 2]  # the epoch's batches

    def epoch():
        with tqdm(disable=True) as progress:  # train.py --quiet
            train.train_one_epoch(model, optimizer, batches, train_idx, args.batch_size, args.augment, precision,
                                  progress)

    floor_steps(model, optimizer, x, y, sorted(set(sizes)), precision)  # warm-up: every shape once
    ways = {"epoch": epoch, "floor": lambda: floor_steps(model, optimizer, x, y, sizes, precision)}
    rate = {name: sum(sizes) / time_ for name, time_ in best_seconds(ways, bench.rounds, device).items()}
    print(f"lab2 epoch against floor: {args.dataset}, {sum(sizes)} training images, widths "
          f"{','.join(map(str, args.widths))}, batch {args.batch_size}, {args.optimizer}, augment "
          f"{args.augment or 'off'}, {device.type} {x.dtype} channels-last "
          f"{'bf16 autocast' if isinstance(precision, torch.autocast) else 'no autocast'}, "
          f"{torch.get_num_threads()} CPU thread(s), best of {bench.rounds} rounds")
    print(f"epoch  {rate['epoch']:8.0f} images/s  (train_one_epoch over Batches)")
    print(f"floor  {rate['floor']:8.0f} images/s  (forward + loss + backward + step on one batch in memory)")
    print(f"epoch/floor {rate['epoch'] / rate['floor']:.3f}  (goal: at least 0.9)")


if __name__ == "__main__":
    main()
