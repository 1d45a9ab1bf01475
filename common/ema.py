"""--ema DECAY: an exponential moving average of a model's weights (torch's AveragedModel), updated after
every optimiser step. The average is what a lab evaluates, selects on and saves as best.pt; the raw
weights keep training. Floating-point buffers (BatchNorm's running statistics) are averaged too; integer
ones are copied."""
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def averaged(model: nn.Module, decay: float) -> AveragedModel | None:
    """The average of model with this decay, or None for decay 0 (off)."""
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=_floats_averaged(decay), use_buffers=True)


def _floats_averaged(decay: float):
    """torch's EMA update for floating-point tensors; integer tensors copied. torch's own computes
    p * decay + q * (1 - decay) in float and truncates it into the integer, which turns equal values into
    one less (BERT's position ids 0..511 with decay 0.9), and a count is no average anyway."""
    ema = get_ema_multi_avg_fn(decay)

    @torch.no_grad()
    def update(averages, currents, n_averaged):  # AveragedModel groups the tensors by dtype
        if averages[0].is_floating_point() or averages[0].is_complex():
            ema(averages, currents, n_averaged)
        else:
            for average, current in zip(averages, currents, strict=True):
                average.copy_(current)
    return update


def evaluated(model: nn.Module, ema: AveragedModel | None) -> nn.Module:
    """The network to evaluate, select on and save: the average when there is one."""
    return model if ema is None else ema.module
