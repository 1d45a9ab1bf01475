"""Device selection, seeding and mixed precision."""
import os
import random
from contextlib import contextmanager, nullcontext

import numpy as np
import torch

from common.errors import UsageError


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


def autocast(device: torch.device, precision: str = "auto"):
    """The --precision context: bf16 autocast (no loss scaling needed) for "bf16", and for "auto" on CUDA
    (tensor cores); full float32 for "float32", and for "auto" elsewhere. LABS_FORCE_BF16=1 turns "auto" to
    bf16 on the CPU too, so that the GPU path runs where no GPU is (python -m common.gpu_check --device cpu)."""
    forced = device.type == "cpu" and os.environ.get("LABS_FORCE_BF16") == "1"
    if precision == "bf16" or (precision == "auto" and (device.type == "cuda" or forced)):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


@contextmanager
def allocating(flags: str):
    """Turn a failure to allocate memory inside into a usage error naming the flags that asked for it."""
    try:
        yield
    except (MemoryError, RuntimeError) as error:
        text = str(error).lower()
        if not isinstance(error, MemoryError) and "alloc" not in text and "out of memory" not in text:
            raise
        raise UsageError(f"{flags}: not enough memory for what they ask ({type(error).__name__}); "
                         f"choose smaller values") from None
