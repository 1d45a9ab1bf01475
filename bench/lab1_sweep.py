"""Lab 1's depth x width grid four ways, side by side in one command: (a) one `python lab1_fnn/train.py`
process per point (a shell loop), (b) the sweep runner one run at a time in-process (--no-batch), (c) the
sweep runner training points together as ensembles (lab1_fnn/ensemble.py), in-process, and (d) the same
in a worker process per core, as the sweep scripts run it (JOBS defaults to the number of cores). Prints
the times, a/c, b/c and a/d, and the largest relative difference in best validation MSE between (b) and (c).
It also prints the floor under (c): the grid's matmul FLOPs (hidden layers w x w, forward and backward on the
training set, forward on the validation set, every epoch) over the best rate measured for a batched matmul of
the grid's widest layer on this machine: no way of training the grid in one process can take less time.

    python bench/lab1_sweep.py            # the report's relu grid: depths 1-15, widths 5-75, 500 epochs
    python bench/lab1_sweep.py --quick    # depths 1-2, widths 5 and 20, 100 epochs (the tests run it)
    python bench/lab1_sweep.py --floor    # only the floor under (c), in seconds
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from common.sweep import cli as sweep
from common.sweep.grid import expand_points, parse_grid, point_argv, point_name
from lab1_fnn.train import parse_args, split_sizes

ROOT = Path(__file__).resolve().parents[1]


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def baddbmm_rate(networks: int, rows: int, width: int) -> float:
    """FLOP/s of one layer of `networks` stacked networks of this width on `rows` points (best of 3)."""
    h, weight, bias = torch.randn(networks, rows, width), torch.randn(networks, width, width), \
        torch.randn(networks, 1, width)
    repeats = 6400 // networks
    for _ in range(repeats):  # warm up
        torch.baddbmm(bias, h, weight)
    seconds = min(timed(lambda: [torch.baddbmm(bias, h, weight) for _ in range(repeats)]) for _ in range(3))
    return networks * rows * width * width * 2 * repeats / seconds


def matmul_floor(points: list[dict], epochs: int) -> tuple[float, float, float]:
    """(FLOPs, GFLOP/s, seconds): the grid's hidden-layer matmuls (train.py's default data), and
    the best rate of a batched matmul of its widest layer, 8, 16 or 32 networks at once (more fall out of the
    caches): the best case for an ensemble."""
    defaults = parse_args([])
    n_train, n_val, _ = split_sizes(defaults.n_points, defaults.split)
    per_epoch = sum((int(point["depth"]) - 1) * int(point["width"]) ** 2 * 2 * (3 * n_train + n_val)
                    for point in points)
    width = max(int(point["width"]) for point in points)
    rate = max(baddbmm_rate(networks, n_train, width) for networks in (8, 16, 32))
    return per_epoch * epochs, rate / 1e9, per_epoch * epochs / rate


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small sub-grid")
    parser.add_argument("--floor", action="store_true", help="only the floor under (c): no grid is trained")
    args = parser.parse_args(argv)
    grid = ["activation=relu", "depth=1..2", "width=5,20"] if args.quick else \
        ["activation=relu", "depth=1..15", "width=5:75:5"]
    fixed = ["--epochs", "100" if args.quick else "500", "--lr", "0.01", "--quiet"]
    points = expand_points([parse_grid(grid)])
    flops, rate, floor = matmul_floor(points, int(fixed[1]))
    floor_line = f"floor under (c): {flops:.3e} FLOP of hidden-layer matmuls at {rate:.0f} GFLOP/s = {floor:.3g} s"
    if args.floor:
        print(floor_line)
        return
    with tempfile.TemporaryDirectory() as tmp:
        def processes():
            for point in points:
                subprocess.run([sys.executable, str(ROOT / "lab1_fnn/train.py"), *fixed, *point_argv(point),
                                "--out", f"{tmp}/a/{point_name(point)}"], check=True)

        def runner(name, *flags):
            return lambda: sweep.main(["lab1_fnn", "--out", f"{tmp}/{name}", *flags, "--grid", *grid, "--", *fixed])

        cores = str(os.cpu_count() or 1)
        seconds = {"a": timed(processes), "b": timed(runner("b", "--jobs", "1", "--no-batch")),
                   "c": timed(runner("c", "--jobs", "1")), "d": timed(runner("d", "--jobs", cores))}
        b, c = (pd.read_csv(f"{tmp}/{name}/results.csv").set_index("dir") for name in ("b", "c"))
    difference = ((c["best_val_mse"] - b["best_val_mse"]).abs() / b["best_val_mse"].abs()).max()
    print(f"\nlab 1, {len(points)} points ({' '.join(grid)}; {' '.join(fixed[:4])})")
    print(f"(a) a process per point      {seconds['a']:8.1f} s")
    print(f"(b) in-process, one at a time {seconds['b']:7.1f} s")
    print(f"(c) in-process, as ensembles  {seconds['c']:7.1f} s")
    print(f"(d) ensembles, --jobs {cores:<8s}  {seconds['d']:7.1f} s")
    print(f"a/c {seconds['a'] / seconds['c']:.2f}   b/c {seconds['b'] / seconds['c']:.2f}   "
          f"a/d {seconds['a'] / seconds['d']:.2f}   "
          f"largest relative difference in best_val_mse between (b) and (c): {difference:.2e}")
    print(f"{floor_line}, so b/c <= {seconds['b'] / floor:.1f} and a/c <= {seconds['a'] / floor:.1f} even with "
          f"nothing else to do")


if __name__ == "__main__":
    main()
