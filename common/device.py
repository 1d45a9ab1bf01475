"""Device selection and seeding."""
import random

import numpy as np
import torch

from common.cli import UsageError


def select_device(name: str = "auto") -> torch.device:
    """auto: CUDA when available, then Apple MPS, else CPU; an explicit choice must be available."""
    cuda = torch.cuda.is_available()
    mps = torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if cuda else "mps" if mps else "cpu"
    elif (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise UsageError(f"--device {name} was asked for but is not available here; use --device auto or cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
