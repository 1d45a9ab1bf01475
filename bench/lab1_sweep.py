"""Lab 1's depth x width grid four ways, side by side in one command: (a) one `python lab1_fnn/train.py`
process per point (a shell loop), (b) the sweep runner one run at a time in-process (--no-batch), (c) the
sweep runner training points together as ensembles (lab1_fnn/ensemble.py), in-process, and (d) the same
in a worker process per core, as the sweep scripts run it (JOBS defaults to the number of cores). Prints
the times, a/c, b/c and a/d, and the largest relative difference in best validation MSE between (b) and (c).

    python bench/lab1_sweep.py            # the report's relu grid: depths 1-15, widths 5-75, 500 epochs
    python bench/lab1_sweep.py --quick    # depths 1-2, widths 5 and 20, 100 epochs (the tests run it)
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from common.sweep import cli as sweep
from common.sweep.grid import expand_points, parse_grid, point_argv, point_name

ROOT = Path(__file__).resolve().parents[1]


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small sub-grid")
    args = parser.parse_args(argv)
    grid = ["activation=relu", "depth=1..2", "width=5,20"] if args.quick else \
        ["activation=relu", "depth=1..15", "width=5:75:5"]
    fixed = ["--epochs", "100" if args.quick else "500", "--lr", "0.01", "--quiet"]
    points = expand_points([parse_grid(grid)])
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


if __name__ == "__main__":
    main()
