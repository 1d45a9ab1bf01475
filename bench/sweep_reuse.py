"""Lab 4's regulariser sweep at smoke scale (sweeps/lab4_regularizers.sh, SCALE=smoke) three ways, side by
side in one command: (a) one `python lab4_gcn/train.py` process per point (a shell loop), (b) the sweep
runner's in-process call of each point with the graph read again for every point, (c) the same call
reading it once (common.data.reused). The three ways take turns point by point, so that a change in the
machine's load falls on all of them alike, and every point computes on one thread, as each of the
script's workers does with JOBS=2 on 2 cores. Prints the times, a/c and b/c, and the largest difference
in best_val_score and test_score between (a), (b) and (c), which should be none.

    python bench/sweep_reuse.py            # the smoke sweep: 32 points on the embedded Cora, 100 epochs
    python bench/sweep_reuse.py --quick    # 4 points, 5 epochs (the tests run it)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common.data import forget_reused
from common.sweep.grid import expand_points, parse_grid, point_argv, point_name
from common.sweep.runner import run_point

ROOT = Path(__file__).resolve().parents[1]
SMOKE_GRID = ["dataset=cora", "task=node,link", "self_loop=false,true", "pair_norm=false,true", "drop_edge=0,0.2",
              "activation=prelu,tanh"]
QUICK_GRID = ["dataset=cora", "task=node,link", "activation=prelu,tanh"]
SCORES = ("best_val_score", "test_score")


def in_a_process(argv: list[str]) -> dict:
    out = argv[argv.index("--out") + 1]
    subprocess.run([sys.executable, str(ROOT / "lab4_gcn/train.py"), *argv], check=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads((Path(out) / "summary.json").read_text())


def reading_again(argv: list[str]) -> dict:
    forget_reused()
    return run_point("lab4_gcn", argv)[0]


def reading_once(argv: list[str]) -> dict:
    return run_point("lab4_gcn", argv)[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 points, 5 epochs")
    args = parser.parse_args(argv)
    grid = QUICK_GRID if args.quick else SMOKE_GRID
    fixed = ["--epochs", "5" if args.quick else "100", "--layers", "2", "--quiet"]
    points = expand_points([parse_grid(grid)])
    torch.set_num_threads(1)
    # (c) goes first: its first point reads the graph, its others find the one that (b) read last.
    ways = {"c": reading_once, "b": reading_again, "a": in_a_process}
    seconds, scores = dict.fromkeys(ways, 0.0), {way: [] for way in ways}
    with tempfile.TemporaryDirectory() as tmp:
        # A first point's imports and one-off set-up (PyG, scikit-learn) are paid here, by neither (b) nor (c).
        for task in ("node", "link"):
            reading_again(["--task", task, "--epochs", "1", "--quiet", "--out", f"{tmp}/warm-up/{task}"])
        forget_reused()
        for point in points:
            for way, run in ways.items():
                started = time.perf_counter()
                summary = run([*fixed, *point_argv(point), "--out", f"{tmp}/{way}/{point_name(point)}"])
                seconds[way] += time.perf_counter() - started
                if summary["status"] == "failed":
                    raise SystemExit(f"{point_name(point)}, way ({way}): {summary['error']}")
                scores[way].append([summary[key] for key in SCORES])
    difference = max(abs(x - z) for way in "ab" for row, ref in zip(scores[way], scores["c"], strict=True)
                     for x, z in zip(row, ref, strict=True))
    print(f"\nlab 4, {len(points)} points ({' '.join(grid)}; {' '.join(fixed[:4])})")
    print(f"(a) a process per point              {seconds['a']:7.1f} s")
    print(f"(b) in-process, reading every point  {seconds['b']:7.1f} s")
    print(f"(c) in-process, reading once         {seconds['c']:7.1f} s")
    print(f"a/c {seconds['a'] / seconds['c']:.2f}   b/c {seconds['b'] / seconds['c']:.2f}   "
          f"largest difference in {' and '.join(SCORES)} between (a), (b) and (c): {difference:.2e}")


if __name__ == "__main__":
    main()
