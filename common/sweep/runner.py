"""Running a sweep's points, in this process or in a pool of worker processes, and resuming a sweep."""
import ctypes
import importlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from common.errors import UsageError
from common.runs import FolderLock, abandon_active_runs, make_folder, write_atomic


def run_point(lab: str, argv: list[str]) -> tuple[dict, float]:
    """Run one point in this process: (summary, seconds); a failure gives status 'failed'."""
    started = time.perf_counter()
    try:
        summary = importlib.import_module(f"{lab}.train").main(argv)
    except UsageError as error:
        summary = {"status": "failed", "error": str(error)}
    except Exception as error:  # one broken point must not end the sweep
        summary = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
    if summary["status"] == "failed":
        abandon_active_runs()  # its folder: removed if it logged no epoch, else left unfinished
    return summary, time.perf_counter() - started


def run_group(lab: str, argvs: list[list[str]]) -> list[tuple[dict, float]]:
    """Run points in this process: one alone (run_point), several at once as the lab's ensemble
    (<lab>.ensemble.train_together): (summary, seconds) of each; seconds are a share of the group's.
    A failure fails every point of the group."""
    if len(argvs) == 1:
        return [run_point(lab, argvs[0])]
    started = time.perf_counter()
    try:
        summaries = importlib.import_module(f"{lab}.ensemble").train_together(argvs)
    except UsageError as error:
        summaries = [{"status": "failed", "error": str(error)}] * len(argvs)
    except Exception as error:  # one broken group must not end the sweep
        summaries = [{"status": "failed", "error": f"{type(error).__name__}: {error}"}] * len(argvs)
    if summaries[0]["status"] == "failed":
        abandon_active_runs()
    seconds = (time.perf_counter() - started) / len(argvs)
    return [(summary, seconds) for summary in summaries]


def _init_worker(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    try:  # Linux: die with the main process, however it dies, instead of running on as an orphan
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run_points(lab: str, todo: list[list[tuple[dict, list[str]]]], report, jobs: int) -> None:
    """Run groups of (point, argv) pairs (run_group); call report(point, summary, seconds) as each point
    ends. On Ctrl-C no new group starts: in-process, the running one stops at once; with workers, they
    are terminated (their points left unfinished) and KeyboardInterrupt goes on to the caller."""
    if jobs == 1:
        for group in todo:
            report_group(group, run_group(lab, [argv for _, argv in group]), report)
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    # Workers terminated on Ctrl-C leave their queue's semaphores to multiprocessing's resource tracker,
    # which frees them but would print a warning; it takes its warning filters from this list.
    quiet_tracker = "ignore::UserWarning:multiprocessing.resource_tracker"
    if quiet_tracker not in sys.warnoptions:  # once per process, however many sweeps it runs
        sys.warnoptions.append(quiet_tracker)
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                               initargs=(threads,))
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)  # workers start ignoring Ctrl-C, before imports
    try:
        futures = {pool.submit(run_group, lab, [argv for _, argv in group]): group for group in todo}
    finally:
        signal.signal(signal.SIGINT, handler)
    try:
        for future in as_completed(futures):
            report_group(futures[future], future.result(), report)
    except BaseException:  # Ctrl-C, a worker killed by the OS, a broken pipe: stop every point at once
        pool.shutdown(wait=False, cancel_futures=True)
        for worker in multiprocessing.active_children():
            worker.terminate()
        raise
    pool.shutdown()


def report_group(group, outcomes, report) -> None:
    for (point, _), outcome in zip(group, outcomes, strict=True):
        report(point, *outcome)


def read_json(path: Path) -> dict | None:
    """A JSON file (summary.json, sweep.json); None when missing or unreadable (a process killed mid-write)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def resumable(folder: Path) -> bool:
    """An interrupted point that saved a last.pt (labs 1-4): it continues from there with --resume. A folder
    that another process holds (a run still writing there) is refused, as clear_unfinished refuses it."""
    if not ((folder / "last.pt").is_file() and (folder / "config.json").is_file()):
        return False
    FolderLock(folder, "point folder").release()
    return True


def clear_unfinished(folder: Path) -> bool:
    """Remove a point's folder that holds no readable summary (an interrupted point) before it runs again;
    a folder that another process holds (a run still writing there) is refused, never removed."""
    if not folder.exists():
        return False
    lock = FolderLock(folder, "point folder")
    try:
        shutil.rmtree(folder)
    finally:
        lock.release()
    return True


def claim_folder(out: Path, settings: dict) -> FolderLock:
    """Create and lock the sweep folder (one sweep at a time in it) and write sweep.json. Resume only a sweep
    of the same lab and fixed flags; refuse to mix two different sweeps."""
    make_folder(out, "--out")
    lock = FolderLock(out, "sweep --out")
    path = out / "sweep.json"
    old = read_json(path) if path.exists() else None
    if path.exists() and old is None:
        print(f"note: {path} was unreadable; writing it again", flush=True)
    if old and (old["lab"], old["fixed"]) != (settings["lab"], settings["fixed"]):
        lock.release()
        raise UsageError(f"--out {out} holds a sweep of {old['lab']} with fixed flags {old['fixed']}; "
                         f"choose another folder to run with {settings['fixed']}")
    write_atomic(path, json.dumps(settings, indent=2) + "\n")
    return lock
