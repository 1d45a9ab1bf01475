"""common.schedules: the learning rate of every step, for each --lr-schedule, with and without warmup."""
import math

import pytest
import torch

from common.schedules import LRSchedule


def rates(kind, epochs=4, steps_per_epoch=5, warmup=0.0, lrd=1.0, metrics=None, lr=0.1):
    """The rate used by every optimiser step of a run."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    schedule = LRSchedule(optimizer, kind, epochs, steps_per_epoch, warmup, lrd)
    seen = []
    for epoch in range(epochs):
        for _ in range(steps_per_epoch):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
        schedule.epoch_end(metrics[epoch] if metrics else 0.0)
    return seen


def test_none_is_constant_and_exponential_decays_once_an_epoch():
    assert rates("none") == [0.1] * 20
    assert rates("exponential", lrd=0.5) == pytest.approx([0.1] * 5 + [0.05] * 5 + [0.025] * 5 + [0.0125] * 5)


def test_linear_is_transformers_warmup_then_decay():
    from transformers import get_linear_schedule_with_warmup
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    theirs = get_linear_schedule_with_warmup(optimizer, 2, 20)
    expected = []
    for _ in range(20):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        theirs.step()
    assert rates("linear", warmup=0.1) == pytest.approx(expected)


def test_cosine_falls_from_lr_to_zero_after_its_warmup():
    seen = rates("cosine", warmup=0.25)
    assert seen[:5] == pytest.approx([0.0, 0.02, 0.04, 0.06, 0.08])
    assert seen[5] == pytest.approx(0.1)
    assert seen[5 + 7] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 7 / 15)))
    assert all(a > b for a, b in zip(seen[5:], seen[6:], strict=False)) and seen[-1] < 0.002


def test_onecycle_rises_to_lr_then_falls_far_below_its_start():
    seen = rates("onecycle")
    peak = seen.index(max(seen))
    assert seen[0] == pytest.approx(0.1 / 25) and max(seen) == pytest.approx(0.1) and peak == 6
    assert seen[-1] < seen[0] / 100


def test_plateau_halves_the_rate_when_the_metric_stalls():
    # 40 epochs: patience 2 epochs; the metric improves for 3 epochs, then stalls
    seen = rates("plateau", epochs=40, steps_per_epoch=1, metrics=[3, 2, 1] + [1] * 37)
    assert seen[:5] == [0.1] * 5 and seen[5] == pytest.approx(0.05) and seen[7] == pytest.approx(0.025)


def test_a_resumed_schedule_continues_where_it_stopped():
    full = rates("plateau", epochs=40, steps_per_epoch=1, metrics=[3, 2, 1] + [1] * 37)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    first = LRSchedule(optimizer, "plateau", 40, 1)
    for metric in (3, 2, 1, 1, 1, 1):
        optimizer.step()
        first.step()
        first.epoch_end(metric)
    state = first.state_dict()
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    optimizer.load_state_dict(first.optimizer.state_dict())
    second = LRSchedule(optimizer, "plateau", 40, 1)
    second.load_state_dict(state)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(full[6])
    optimizer.step()
    second.step()
    second.epoch_end(1)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(full[7])
