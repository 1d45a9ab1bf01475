"""Data helpers shared by the labs: class-balanced subsets and downloads that fail clearly offline."""
import importlib.util
from pathlib import Path

import torch

from common.errors import UsageError


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


def download_and_extract(url: str, root: Path, what: str, expected: Path) -> Path:
    """Download and unpack an archive into root; offline, one clear error saying how to get it."""
    from torchvision.datasets.utils import download_and_extract_archive
    if not root.is_dir():
        raise UsageError(f"{what} not found at {expected}, and --data-root {root} does not exist (nothing is "
                         f"downloaded into a folder that is not there)")
    try:
        download_and_extract_archive(url, download_root=str(root))
    except Exception as error:  # any network or archive failure gets the same advice
        raise UsageError(f"{what} not found at {expected} and the download of {url} failed "
                         f"({type(error).__name__}); download and unpack it into {root}") from None
    if not expected.exists():
        raise UsageError(f"{url} unpacked into {root} but {expected} is still missing")
    return expected


def package_file(package: str, relative: str) -> Path | None:
    """A data file shipped inside an installed package, found by path without importing the
    package (the embedded-data packages declare dependencies we do not install)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    return path if path.exists() else None
