"""The run folder of CONTRIBUTING.md: config.json, history.csv, summary.json, figures and best.pt."""
import csv
import fcntl
import io
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from common import checkpoint, distributed
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
        "processes": distributed.world(),  # > 1: one DDP run over this many processes (torchrun)
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

# Flags that may differ when a run is resumed: where and how it runs, not what it computes.
RESUME_MAY_CHANGE = {"out", "resume", "quiet", "checkpoint_every", "device", "data_root", "workers", "environment"}


def abandon_active_runs() -> list[str]:
    """Close every unfinished run of this process after an error or interrupt: a new run that logged no
    epoch leaves no folder behind (if it created it); one that did stays, unfinished (no summary.json),
    with last.pt at its last completed epoch where the lab checkpoints. Returns one note per folder left."""
    notes = []
    while ACTIVE:
        note = ACTIVE.pop().abandon()
        if note:
            notes.append(note)
    return notes


def _read(path: Path, parse):
    """parse(text of path); a missing or damaged file of a run to resume is a usage error, in one line."""
    try:
        return parse(path.read_text())
    except (OSError, ValueError, csv.Error) as error:
        raise UsageError(f"--resume: {path} cannot be read ({type(error).__name__}); the run cannot be "
                         f"resumed") from None


def _config_value(value):
    return json.loads(json.dumps(_clean(value)))  # as config.json holds it: tuples as lists, inf as null


class Run:
    """One run's folder. Create it only after every flag has been validated. The folder is locked for the
    run's life; one that holds a finished run (summary.json) is refused, and so is an unfinished one
    (config.json without summary.json: an interrupted run) unless args.resume asks to continue it.

    Labs that checkpoint (args.checkpoint_every) call resume() before their first epoch and checkpoint()
    after each one: last.pt then holds the model, optimiser, scheduler, early-stopping and RNG states of
    a completed epoch, written every checkpoint_every epochs. Ctrl-C or SIGTERM while an epoch runs that
    last.pt would lack lets that epoch finish, saves it, then stops; a second one stops at once.

    In a DDP run (torchrun) only rank 0 writes: on the other processes (writes False) the run keeps its
    history in memory, path() is None, and resume() reads rank 0's last.pt."""

    def __init__(self, lab: str, args, device: torch.device, defer_interrupts: bool = True):
        if distributed.launched() and distributed.world() == 1:  # every process would run the whole run
            raise UsageError(f"{lab} runs in one process: run it with python, not torchrun (labs 2 and 3 use "
                             f"torchrun's processes)")
        self.writes = distributed.is_main()
        self.dir = Path(args.out) if args.out else default_out_dir(lab) if self.writes else None
        self.resumed = getattr(args, "resume", False)
        self.checkpoint_every = getattr(args, "checkpoint_every", None)
        if self.resumed and not args.out:
            raise UsageError("--resume needs --out: the folder of the run to continue")
        if self.resumed and not (self.dir / "config.json").is_file():
            raise UsageError(f"--resume: --out {self.dir} holds no run to continue (no config.json)")
        self.quiet = args.quiet or not self.writes
        self.started = time.perf_counter()
        self.seconds_before = 0.0  # of the run's earlier lives, when resumed
        self._history = self._history_file = None
        self._flushed = self.started
        self._saved_epoch = self._last_epoch = None  # the epoch last.pt holds; the last one completed
        self._interrupted = self._saving = False
        self._handlers = {}  # signal -> the handler to put back
        self.history: dict[str, list] = {}  # the same rows, as columns in memory (for figures)
        if not self.writes:
            if self.resumed:
                self._load_last()
            return
        self.created = make_folder(self.dir, "--out")
        self.lock = FolderLock(self.dir, "--out")
        try:
            if self.resumed:
                self._reopen(args)
            else:
                self._check_empty()
        except BaseException:
            self.lock.release()
            raise
        if not self.resumed:
            try:
                self._create(args, device)
            except BaseException:
                self.remove_files()
                self.lock.release()
                raise
        ACTIVE.append(self)
        if self.checkpoint_every and defer_interrupts:
            self._defer_interrupts()

    def _defer_interrupts(self) -> None:
        """Take over Ctrl-C and SIGTERM where they would raise KeyboardInterrupt (not where a sweep's worker
        ignores them, nor outside the main thread, where Python allows no handler). Not under torchrun
        either: its agent follows a Ctrl-C with SIGTERM, and processes cannot stop at different epochs."""
        if threading.current_thread() is not threading.main_thread() or distributed.world() > 1:
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(signum)
            if handler is signal.default_int_handler or getattr(handler, "raises_keyboard_interrupt", False):
                self._handlers[signum] = signal.signal(signum, self._on_interrupt)

    def _on_interrupt(self, signum, frame) -> None:
        if self._interrupted or self._last_epoch == self._saved_epoch:  # asked twice, or nothing to lose
            raise KeyboardInterrupt
        self._interrupted = True
        below_progress_bar = "" if self.quiet else "\n"
        stop_after = self._last_epoch if self._saving else self._last_epoch + 1  # a save under way: its epoch
        print(f"{below_progress_bar}stopping after epoch {stop_after} to save it in last.pt (interrupt "
              f"again to stop at once, from epoch {self._saved_epoch or 0})", file=sys.stderr, flush=True)

    def epochs_done(self) -> None:
        """Call after the epoch loop: from here an interrupt stops at once (last.pt already holds what the
        remaining work, the best weights' test and figures, would need to be redone from)."""
        self._restore_handlers()

    def _restore_handlers(self) -> None:
        for signum, handler in self._handlers.items():
            if signal.getsignal(signum) == self._on_interrupt:  # not if the caller has since set its own
                signal.signal(signum, handler)
        self._handlers = {}

    def _create(self, args, device) -> None:
        config = {key: _clean(value) for key, value in vars(args).items()}
        config["out"] = str(self.dir)
        config["environment"] = environment(device)
        write_atomic(self.dir / "config.json", json.dumps(config, indent=2) + "\n")
        self._history_file = open(self.dir / "history.csv", "w", newline="")

    def _reopen(self, args) -> None:
        """Continue an interrupted run: same flags, last.pt's epoch, history.csv cut back to that epoch."""
        if (self.dir / "summary.json").exists():
            raise UsageError(f"--resume: --out {self.dir} holds a finished run (summary.json); nothing to continue")
        if not (self.dir / "last.pt").is_file():
            raise UsageError(f"--resume: --out {self.dir} has no last.pt (interrupted before its first checkpoint); "
                             f"delete it to start over")
        recorded = _read(self.dir / "config.json", json.loads)
        if not isinstance(recorded, dict):
            raise UsageError(f"--resume: {self.dir / 'config.json'} is not a run's config; the run cannot be resumed")
        changed = sorted(f"--{key.replace('_', '-')}" for key, value in vars(args).items()
                         if key not in RESUME_MAY_CHANGE and recorded.get(key) != _config_value(value))
        if changed:
            raise UsageError(f"--resume: {', '.join(changed)} {'differs' if len(changed) == 1 else 'differ'} from "
                             f"the interrupted run's config.json in "
                             f"{self.dir}; resume with the same flags")
        header, rows = self._load_last()
        text = io.StringIO()
        csv.writer(text).writerows([header, *rows])
        write_atomic(self.dir / "history.csv", text.getvalue())
        self._history_file = open(self.dir / "history.csv", "a", newline="")
        self._history = csv.DictWriter(self._history_file, fieldnames=header)

    def _load_last(self) -> tuple[list, list]:
        """last.pt, and history.csv's header and rows up to its epoch (also kept in self.history)."""
        try:
            self.saved = checkpoint.load(self.dir / "last.pt")
        except Exception as error:  # a truncated or foreign file: one line, not a traceback
            raise UsageError(f"--resume: {self.dir / 'last.pt'} cannot be read ({type(error).__name__})") from None
        self.seconds_before = self.saved["seconds"]
        self._saved_epoch = self.saved["epoch"]
        header, *rows = _read(self.dir / "history.csv", lambda text: list(csv.reader(io.StringIO(text)))) or [[]]
        rows = rows[:self._saved_epoch]
        if [row[0] for row in rows] != [str(epoch) for epoch in range(1, self._saved_epoch + 1)] or \
                any(len(row) != len(header) for row in rows):
            raise UsageError(f"--resume: {self.dir / 'history.csv'} does not hold epochs 1..{self._saved_epoch}, "
                             f"which last.pt continues; the run cannot be resumed")
        try:
            for column, values in zip(header, zip(*rows, strict=True), strict=True):
                self.history[column] = [int(v) if column == header[0] else float(v or "nan") for v in values]
        except ValueError:
            raise UsageError(f"--resume: {self.dir / 'history.csv'} holds a value that is not a number; the run "
                             f"cannot be resumed") from None
        return header, rows

    def resume(self, **objects) -> int:
        """The first epoch to train: 1 for a new run; for a resumed one, the epoch after last.pt's, with the
        objects (anything with load_state_dict) and every random stream as they were after it."""
        if not self.resumed:
            return 1
        for name, target in objects.items():
            target.load_state_dict(self.saved[name])
        checkpoint.set_rng_state(self.saved["rng"])
        self._last_epoch = self._saved_epoch
        if not self.quiet:
            print(f"resuming {self.dir} after epoch {self._saved_epoch}", flush=True)
        return self._saved_epoch + 1

    def checkpoint(self, epoch: int, **objects) -> None:
        """After a completed epoch: save the state of objects (anything with state_dict) and every random
        stream to last.pt every checkpoint_every epochs, or now when an interrupt waits for it (then stop).
        An object named rng stands for the random streams (a run that draws from its own generator)."""
        self._last_epoch = epoch
        if not self.writes:
            return
        if epoch % self.checkpoint_every == 0 or self._interrupted:
            self._saving = True
            try:
                self._history_file.flush()  # the rows up to last.pt's epoch must be on disk before it is
                checkpoint.save(self.dir / "last.pt", {
                    "epoch": epoch, "seconds": self.seconds(), "rng": checkpoint.rng_state(),
                    **{name: target.state_dict() for name, target in objects.items()}})  # rng: its own, if given
                self._saved_epoch = epoch
            finally:
                self._saving = False
        if self._interrupted:
            raise KeyboardInterrupt

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def abandon(self) -> str | None:
        """After an error or interrupt: close, unlock, and say what is left in the folder."""
        self._restore_handlers()
        try:
            self._history_file.close()
        except OSError:  # a full disk fails the flush again; the folder is abandoned all the same
            pass
        self.lock.release()
        if self._saved_epoch:
            return (f"{self.dir} stopped after epoch {self._saved_epoch} (last.pt); to continue it, run the same "
                    f"command with --resume --out {self.dir}")
        if not self.history:
            self.remove_files()
            return None
        return f"{self.dir} left unfinished (no summary.json)"

    def remove_files(self) -> None:
        """Undo this run in its folder: the whole folder if the run created it, else the files it wrote."""
        if self.created:
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        for name in ("config.json", "history.csv", "last.pt", ".lock"):
            (self.dir / name).unlink(missing_ok=True)

    def _check_empty(self) -> None:
        if (self.dir / "summary.json").exists():
            raise UsageError(f"--out {self.dir} already holds a finished run (summary.json); choose another folder")
        if not (self.dir / "config.json").exists():
            return
        if (self.dir / "last.pt").exists():
            raise UsageError(f"--out {self.dir} holds an unfinished run (interrupted; last.pt): add --resume to "
                             f"continue it, or choose another folder")
        when = " before its first checkpoint" if self.checkpoint_every else ""
        raise UsageError(f"--out {self.dir} holds an unfinished run (config.json without summary.json: it was "
                         f"interrupted{when}); choose another folder, or delete it to start over")

    def path(self, name: str) -> Path | None:
        return self.dir / name if self.writes else None

    def log(self, show: bool = False, **row) -> None:
        """Append one row to history.csv: its first key is the counter (epoch, or step in lab 5), then the
        lab's metrics (same keys every row). With show (and not --quiet) also print it as one line."""
        row = {k: v.item() if isinstance(v, (torch.Tensor, np.generic)) else v for k, v in row.items()}
        for key, value in row.items():
            self.history.setdefault(key, []).append(value)
        if not self.writes:
            return
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
        summary = {key: _clean(value) for key, value in summary.items()}
        summary["status"] = status
        summary["wall_seconds"] = round(self.seconds(), 3)
        summary["out"] = str(self.dir)
        if not self.writes:
            return summary
        self._history_file.close()
        write_atomic(self.dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        (self.dir / "last.pt").unlink(missing_ok=True)  # only for resuming; best.pt holds the weights that count
        ACTIVE.remove(self)
        self._restore_handlers()
        self.lock.release()
        if not self.quiet:
            shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()
                             if k not in ("status", "out"))
            print(f"{status}: {shown} -> {self.dir}")
        return summary

