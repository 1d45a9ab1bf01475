"""The run folder of CONTRIBUTING.md: config.json, history.csv, summary.json, figures and best.pt."""
import csv
import fcntl
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from common.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]


def default_out_dir(lab: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path("runs") / lab / stamp
    suffix = 1
    while out.exists():
        out = Path("runs") / lab / f"{stamp}-{suffix}"
        suffix += 1
    return out


def environment(device: torch.device) -> dict:
    """Library versions, device and commit, recorded with every run."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
        "commit": commit,
    }


def _clean(value):
    """JSON-safe: NaN/inf become null, tensors and numpy scalars become Python numbers."""
    if isinstance(value, (torch.Tensor, np.generic)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_atomic(path: Path, text: str) -> None:
    """Write a file whole or not at all: a temporary file beside it, then a rename (atomic on POSIX)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def make_folder(folder: Path, flag: str) -> bool:
    """Create folder (and its parents); True when it did not exist. A path that is a file, lies under a
    file, or cannot be written is a usage error."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{flag} {folder} is a file, not a folder")
    existed = folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"{flag} {folder}: a part of the path is a file, not a folder") from None
    except OSError as error:
        raise UsageError(f"{flag} {folder}: cannot create it ({error.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {folder}: not writable")
    return not existed


class FolderLock:
    """An exclusive OS lock on <folder>/.lock, held while this process uses the folder. The OS releases it
    when the process ends, however it ends, so a stale lock of a dead process never blocks."""

    def __init__(self, folder: Path, what: str):
        self.file = open(folder / ".lock", "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise UsageError(f"{what} {folder} is in use by process {holder}; wait for it or choose another "
                             f"folder") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(str(os.getpid()))
        self.file.flush()

    def release(self) -> None:
        if not self.file.closed:
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()


ACTIVE: list["Run"] = []  # runs of this process that have not finished: cli.run abandons them on an error


def abandon_active_runs() -> list[Path]:
    """Close every unfinished run of this process after an error or interrupt: a run that logged no epoch
    leaves no folder behind (if it created it); one that did stays, unfinished (no summary.json). Returns
    the folders left unfinished."""
    unfinished = []
    while ACTIVE:
        run = ACTIVE.pop()
        try:
            run._history_file.close()
        except OSError:  # a full disk fails the flush again; the folder is abandoned all the same
            pass
        if run.history:
            unfinished.append(run.dir)
        else:
            run.remove_files()
        run.lock.release()
    return unfinished


class Run:
    """One run's folder. Create it only after every flag has been validated. The folder is locked for the
    run's life; one that holds a finished run (summary.json) or an unfinished one (config.json without
    summary.json: an interrupted run) is refused."""

    def __init__(self, lab: str, args, device: torch.device):
        self.dir = Path(args.out) if args.out else default_out_dir(lab)
        self.created = make_folder(self.dir, "--out")
        self.lock = FolderLock(self.dir, "--out")
        try:
            self._check_empty()
        except UsageError:
            self.lock.release()
            raise
        self.quiet = args.quiet
        self.started = time.perf_counter()
        self._history = None
        self._flushed = self.started
        self.history: dict[str, list] = {}  # the same rows, as columns in memory (for figures)
        try:
            config = {key: _clean(value) for key, value in vars(args).items()}
            config["out"] = str(self.dir)
            config["environment"] = environment(device)
            write_atomic(self.dir / "config.json", json.dumps(config, indent=2) + "\n")
            self._history_file = open(self.dir / "history.csv", "w", newline="")
        except BaseException:
            self.remove_files()
            self.lock.release()
            raise
        ACTIVE.append(self)

    def remove_files(self) -> None:
        """Undo this run in its folder: the whole folder if the run created it, else the files it wrote."""
        if self.created:
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        for name in ("config.json", "history.csv", ".lock"):
            (self.dir / name).unlink(missing_ok=True)

    def _check_empty(self) -> None:
        if (self.dir / "summary.json").exists():
            raise UsageError(f"--out {self.dir} already holds a finished run (summary.json); choose another folder")
        if (self.dir / "config.json").exists():
            raise UsageError(f"--out {self.dir} holds an unfinished run (config.json without summary.json: it was "
                             f"interrupted); choose another folder, or delete it to start over")

    def path(self, name: str) -> Path:
        return self.dir / name

    def log(self, show: bool = False, **row) -> None:
        """Append one row to history.csv: its first key is the counter (epoch, or step in lab 5), then the
        lab's metrics (same keys every row). With show (and not --quiet) also print it as one line."""
        row = {k: v.item() if isinstance(v, (torch.Tensor, np.generic)) else v for k, v in row.items()}
        for key, value in row.items():
            self.history.setdefault(key, []).append(value)
        if show and not self.quiet:
            (counter, count), *metrics = row.items()
            print(f"{counter} {count}: " + " ".join(f"{k} {v:.4g}" for k, v in metrics), flush=True)
        if self._history is None:
            self._history = csv.DictWriter(self._history_file, fieldnames=list(row))
            self._history.writeheader()
        self._history.writerow({key: _clean(value) for key, value in row.items()})
        now = time.perf_counter()
        if now - self._flushed > 1.0:  # a crash loses at most a second of history
            self._history_file.flush()
            self._flushed = now

    def finish(self, status: str, **summary) -> dict:
        """Close history.csv, write summary.json, print it on one line unless quiet; return it."""
        self._history_file.close()
        summary = {key: _clean(value) for key, value in summary.items()}
        summary["status"] = status
        summary["wall_seconds"] = round(time.perf_counter() - self.started, 3)
        summary["out"] = str(self.dir)
        write_atomic(self.dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        ACTIVE.remove(self)
        self.lock.release()
        if not self.quiet:
            shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()
                             if k not in ("status", "out"))
            print(f"{status}: {shown} -> {self.dir}")
        return summary

