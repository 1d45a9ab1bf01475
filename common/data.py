"""Data helpers shared by the labs: class-balanced subsets, files of the embedded-data packages, and
datasets kept in memory for the next run of a sweep in the same process. Downloads: common.fetch, whose
command line this module runs (python -m common.data fetch|check)."""
import importlib.util
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import torch

T = TypeVar("T")
_reused: dict[str, tuple[tuple, object]] = {}  # loader's name -> (its arguments and files, what it returned)


def seeded_permutation(n: int, seed: int) -> torch.Tensor:
    """A permutation of range(n) that depends on seed only (the global random state is left alone)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def balanced_subset(labels, size: int, seed: int) -> torch.Tensor:
    """Indices of a seeded subset of `size` items whose class counts differ by at most one
    (a class with fewer items than its share gives all it has)."""
    labels = torch.as_tensor(labels)
    perm = seeded_permutation(len(labels), seed)
    shuffled = labels[perm]
    rank = torch.empty(len(labels), dtype=torch.long)  # position of each item within its class
    for c in shuffled.unique():
        mask = shuffled == c
        rank[mask] = torch.arange(int(mask.sum()))
    return perm[torch.sort(rank, stable=True).indices[:size]]


def package_file(package: str, relative: str) -> Path | None:
    """A data file shipped inside an installed package, found by path without importing the
    package (the embedded-data packages declare dependencies we do not install)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.exists() else None


def reused(loader: Callable[..., T], *args, files: Iterable[Path] = ()) -> T:
    """loader(*args), or what it returned to the previous call in this process if that call had equal args
    and `files` (the files the loader reads, or folders holding them) were the same size and modification
    time: a sweep's points load their dataset once per process, and a changed file is read again. Only each
    loader's last value is kept (full datasets take GBs). The value is shared by every later run: callers
    hand a run a copy of anything it may change."""
    name = f"{loader.__module__}.{loader.__qualname__}"
    key = (args, file_states(files))
    if name in _reused and _reused[name][0] == key:
        return _reused[name][1]
    _reused.pop(name, None)  # the old value goes before the new one is read, not after
    value = loader(*args)
    _reused[name] = (key, value)
    return value


def forget_reused() -> None:
    """Drop every kept value: the next load reads its files (for tests and benchmarks)."""
    _reused.clear()


def file_states(paths: Iterable[Path]) -> tuple:
    """(path, size, modification time) of each file, and of every file under each folder; a missing path
    gives (path, None), so that its appearing changes the states too."""
    states = []
    for path in map(os.path.abspath, paths):
        files = [os.path.join(folder, name) for folder, _, names in os.walk(path) for name in names] \
            if os.path.isdir(path) else [path]
        for file in sorted(files):
            try:
                stat = os.stat(file)
            except OSError:  # missing, or a dangling link
                states.append((file, None))
                continue
            states.append((file, stat.st_size, stat.st_mtime_ns))
    return tuple(states)


if __name__ == "__main__":  # python -m common.data fetch NAME... | check: the downloader's command line (common.fetch)
    from common import cli, fetch
    cli.run(fetch.main)
