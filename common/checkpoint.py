"""last.pt: everything a run needs to continue where it stopped, so that a resumed run's history and
summary equal an uninterrupted run's (on CPU; cuDNN kernels need not be deterministic)."""
import os
import random
from pathlib import Path

import numpy as np
import torch


def rng_state() -> dict:
    """Every random stream the labs draw from: torch (CPU and CUDA), numpy's global one, Python's."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": [torch.from_numpy(keys.copy()), position, has_gauss, gauss],
             "python": random.getstate()}
    if torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy(), position, has_gauss, gauss))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, state: dict) -> None:
    """Whole or not at all: a crash or a second Ctrl-C while saving leaves the previous last.pt."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def load(path: Path) -> dict:
    # weights_only: a checkpoint is data, never code, even when someone else's folder is resumed
    return torch.load(path, map_location="cpu", weights_only=True)
