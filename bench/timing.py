"""Timing shared by the benchmarks (a script's folder is on its import path: `from timing import ...`)."""
import time

import torch


def seconds(fn, device) -> float:
    """Wall time of fn() with the device's queued work included."""
    synchronize = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    synchronize()
    started = time.perf_counter()
    fn()
    synchronize()
    return time.perf_counter() - started


def best_seconds(ways: dict, rounds: int, device) -> dict:
    """The shortest of `rounds` timings of each way; the ways take turns to go first (the machines are noisy)."""
    times, names = {name: [] for name in ways}, list(ways)
    for round_ in range(rounds):
        turn = round_ % len(names)
        for name in names[turn:] + names[:turn]:
            times[name].append(seconds(ways[name], device))
    return {name: min(values) for name, values in times.items()}
