"""--ema DECAY: an exponential moving average of a model's weights (torch's AveragedModel), updated after
every optimiser step. The average is what a lab evaluates, selects on and saves as best.pt; the raw
weights keep training. Buffers (BatchNorm's running statistics) are averaged too."""
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


def averaged(model: nn.Module, decay: float) -> AveragedModel | None:
    """The average of model with this decay, or None for decay 0 (off)."""
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def evaluated(model: nn.Module, ema: AveragedModel | None) -> nn.Module:
    """The network to evaluate, select on and save: the average when there is one."""
    return model if ema is None else ema.module
