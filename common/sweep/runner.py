"""Running a sweep's points, in this process or in a pool of worker processes, and resuming a sweep."""
import importlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

from common.errors import UsageError


def run_point(lab: str, argv: list[str]) -> tuple[dict, float]:
    """Run one point in this process: (summary, seconds); a failure gives status 'failed'."""
    started = time.perf_counter()
    try:
        summary = importlib.import_module(f"{lab}.train").main(argv)
    except UsageError as error:
        summary = {"status": "failed", "error": str(error)}
    except Exception as error:  # one broken point must not end the sweep
        summary = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
    return summary, time.perf_counter() - started


def _init_worker(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


def run_points(lab: str, todo: list[tuple[dict, list[str]]], jobs: int, report) -> None:
    """Run (point, argv) pairs; call report(point, summary, seconds) as each one ends."""
    if jobs == 1:
        for point, argv in todo:
            report(point, *run_point(lab, argv))
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_init_worker,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(run_point, lab, argv): point for point, argv in todo}
        for future in as_completed(futures):
            report(futures[future], *future.result())


def check_settings(out: Path, settings: dict) -> None:
    """Resume only a sweep of the same lab and fixed flags; refuse to mix two different sweeps."""
    path = out / "sweep.json"
    if path.exists():
        old = json.loads(path.read_text())
        if (old["lab"], old["fixed"]) != (settings["lab"], settings["fixed"]):
            raise UsageError(f"--out {out} holds a sweep of {old['lab']} with fixed flags {old['fixed']}; "
                             f"choose another folder to run with {settings['fixed']}")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2) + "\n")
