"""Learning-rate schedules shared by labs 1-4: --lr-schedule and --warmup (cli.add_schedule_flags).

The rate of every optimiser step is --lr times a factor: a linear warmup over the first --warmup share
of all steps, times the schedule's own factor:

    none         1
    exponential  lrd ** (epochs done)          (Lab 2's --lrd, the report's per-epoch decay)
    linear       falls linearly to 0 at the end of training
    cosine       half a cosine, to 0 at the end of training
    onecycle     torch's OneCycleLR shape: up from lr/25 to lr over the warmup share (0.3 without
                 --warmup), then half a cosine down to lr/25/1e4 at the last step
    plateau      halved whenever the validation metric has not improved for a twentieth of the epochs

The factor is a function of the step alone (plateau: and of the validation metrics seen), so that
networks trained together (Lab 1's ensembles) share one schedule and a resumed run continues it.
"""
import math

import torch

KINDS = ("none", "exponential", "linear", "cosine", "onecycle", "plateau")


class LRSchedule(torch.optim.lr_scheduler.LRScheduler):
    """step() after every optimiser step; epoch_end(metric) after every epoch's validation."""

    def __init__(self, optimizer, kind: str, epochs: int, steps_per_epoch: int, warmup: float = 0.0,
                 lrd: float = 1.0, mode: str = "min"):
        if kind not in KINDS:
            raise ValueError(f"unknown schedule {kind!r}")
        self.kind, self.steps_per_epoch, self.lrd, self.mode = kind, steps_per_epoch, lrd, mode
        self.total = max(1, epochs * steps_per_epoch)
        self.warmup_steps = int(warmup * self.total)
        self.plateau_patience = max(1, epochs // 20)
        self.plateau_scale, self.plateau_best, self.plateau_bad = 1.0, None, 0
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        return [self.rate(base, self.last_epoch) for base in self.base_lrs]

    def rate(self, base: float, step: int) -> float:
        """The rate of a step: base times factor(step). exponential multiplies by lrd once per epoch done, as
        torch's ExponentialLR does: base * lrd ** k differs from that product in the last bit from the 3rd or
        4th epoch on, and Lab 2's default keeps the rates, and so the numbers, of its ExponentialLR."""
        if self.kind == "exponential":
            for _ in range(step // self.steps_per_epoch):
                base *= self.lrd
            return base * self._warm(step)
        return base * self.factor(step)

    def _warm(self, step: int) -> float:
        return min(1.0, step / self.warmup_steps) if self.warmup_steps else 1.0

    def factor(self, step: int) -> float:
        if self.kind == "onecycle":
            return self._one_cycle(step)
        warm = self._warm(step)
        after = max(0, step - self.warmup_steps)
        left = max(1, self.total - self.warmup_steps)
        if self.kind == "linear":  # as transformers' get_linear_schedule_with_warmup
            return warm * max(0.0, (self.total - step) / left) if step >= self.warmup_steps else warm
        if self.kind == "cosine":
            return warm * 0.5 * (1 + math.cos(math.pi * min(1.0, after / left)))
        if self.kind == "plateau":
            return warm * self.plateau_scale
        return warm

    def _one_cycle(self, step: int) -> float:
        rise = max(1, self.warmup_steps or int(0.3 * self.total))
        start, end = 1 / 25, 1 / 25 / 1e4

        def cosine(a, b, t):
            return b + (a - b) * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
        if step <= rise:
            return cosine(start, 1.0, step / rise)
        return cosine(1.0, end, (step - rise) / max(1, self.total - 1 - rise))

    def epoch_end(self, metric: float) -> None:
        """plateau: halve the rate once the metric has not improved for plateau_patience epochs in a row."""
        if self.kind != "plateau":
            return
        better = self.plateau_best is None or (metric < self.plateau_best if self.mode == "min"
                                               else metric > self.plateau_best)
        if better:
            self.plateau_best, self.plateau_bad = metric, 0
            return
        self.plateau_bad += 1
        if self.plateau_bad >= self.plateau_patience:
            self.plateau_scale, self.plateau_bad = self.plateau_scale / 2, 0
            self._apply()

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self._apply()

    def _apply(self) -> None:
        """Set the rate of the current step (after the plateau scale, or a resumed state, changed it)."""
        self._last_lr = [self.rate(base, self.last_epoch) for base in self.base_lrs]
        for group, lr in zip(self.optimizer.param_groups, self._last_lr, strict=True):
            group["lr"] = lr


def schedule_from_args(optimizer, args, steps_per_epoch: int, mode: str = "min") -> LRSchedule:
    """The LRSchedule that a lab's --lr-schedule, --warmup, --epochs (and --lrd, where it has one) ask for."""
    return LRSchedule(optimizer, args.lr_schedule, args.epochs, steps_per_epoch, args.warmup,
                      getattr(args, "lrd", 1.0), mode)
