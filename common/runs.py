"""The run folder of CONTRIBUTING.md: config.json, history.csv, summary.json, figures and best.pt."""
import csv
import json
import math
import platform
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


class Run:
    """One run's folder. Create it only after every flag has been validated."""

    def __init__(self, lab: str, args, device: torch.device):
        self.dir = Path(args.out) if args.out else default_out_dir(lab)
        if (self.dir / "summary.json").exists():
            raise UsageError(f"--out {self.dir} already holds a finished run (summary.json); choose another folder")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.quiet = args.quiet
        self.started = time.perf_counter()
        config = {key: _clean(value) for key, value in vars(args).items()}
        config["out"] = str(self.dir)
        config["environment"] = environment(device)
        (self.dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        self._history_file = open(self.dir / "history.csv", "w", newline="")
        self._history = None
        self._flushed = self.started
        self.history: dict[str, list] = {}  # the same rows, as columns in memory (for figures)

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
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if not self.quiet:
            shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary.items()
                             if k not in ("status", "out"))
            print(f"{status}: {shown} -> {self.dir}")
        return summary

