"""Sweep overhead: a fresh `python train.py` per point against the sweep runner's in-process call
and its worker pool, on the same points, side by side in one command. Prints wall times and ratios.

    python bench/sweep_overhead.py [--points 8] [--epochs 500]
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common.sweep import cli as sweep

ROOT = Path(__file__).resolve().parents[1]


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=500)
    args = parser.parse_args()
    widths = [str(5 * (i + 1)) for i in range(args.points)]
    fixed = ["--epochs", str(args.epochs), "--depth", "2", "--quiet"]
    with tempfile.TemporaryDirectory() as tmp:
        def subprocesses():
            for w in widths:
                subprocess.run([sys.executable, str(ROOT / "lab1_fnn/train.py"), *fixed, "--width", w,
                                "--out", f"{tmp}/sub/{w}"], check=True)

        def in_process(jobs):
            return lambda: sweep.main(["lab1_fnn", "--out", f"{tmp}/jobs{jobs}", "--jobs", str(jobs),
                                       "--grid", f"width={','.join(widths)}", "--", *fixed])

        times = {"subprocess per point": timed(subprocesses),
                 "in-process, --jobs 1": timed(in_process(1)),
                 "worker pool, --jobs 2": timed(in_process(2))}
    baseline = times["subprocess per point"]
    print(f"\n{args.points} lab1 points x {args.epochs} epochs")
    for name, seconds in times.items():
        print(f"{name:24s} {seconds:7.2f} s   speed-up x{baseline / seconds:.2f}")


if __name__ == "__main__":
    main()
