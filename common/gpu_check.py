"""GPU self-check (make gpu-check): every lab a few steps at tiny sizes, its training step watched op by op.

    python -m common.gpu_check                # on CUDA; without CUDA one line, exit 0
    python -m common.gpu_check --device cpu   # the GPU path's settings forced on the CPU (what the tests run)

Each lab's real main() runs in-process into a temporary --out, its module-level train_one_epoch (main looks it
up in its module's globals) wrapped: the first call runs under a Recorder, a TorchDispatchMode that sees every
aten op below autograd and autocast (what the kernels get); the later calls are timed. One line per lab:
  device         every tensor of the step is on the device, but for the EXCEPTIONS (each with its reason)
  bf16 / fp32    matmul/conv outputs are bfloat16 in the labs whose README says they autocast (2, 3), else float32
  channels-last  conv inputs and weights are channels-last where the lab uses it (2, 5)
  loss           the training loss falls from the first epoch (lab 5: step) to the last
  s/step         seconds per step; on CUDA against the same step on the CPU, in the same command
then ddp (2+ CUDA GPUs: torchrun runs lab 2 in 2 processes, exits 0 and writes summary.json) and one line per
failed check (exit 1). --device cpu sets LABS_FORCE_BF16=1 (common.device.autocast); channels-last and data
held as one device tensor are the labs' own on every device, so the CPU then runs the GPU path.
"""
import argparse
import fnmatch
import importlib
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

ROOT = Path(__file__).resolve().parents[1]
LAB2 = ["--limit-train", "64", "--limit-test", "32", "--widths", "8,8,8,8,8,8", "--epochs", "3", "--batch-size", "16"]
LAB3 = ["--limit-train", "64", "--epochs", "4", "--batch-size", "16", "--embed-dim", "32", "--hidden-size", "32",
        "--nhead", "2", "--min-freq", "1"]  # min-freq 1: words to learn from 64 texts, so that the loss falls
RUNS = {  # run -> (module, tiny flags, bf16 autocast as its README says, channels-last as its code does)
    "lab1_fnn": ("lab1_fnn.train", ["--epochs", "5", "--n-points", "60", "--width", "8"], False, False),
    "lab2_cnn": ("lab2_cnn.train", LAB2, True, True),
    "lab3_text/lstm": ("lab3_text.train", [*LAB3, "--model", "lstm", "--lr", "0.01"], True, False),
    "lab3_text/transformer": ("lab3_text.train", [*LAB3, "--model", "transformer", "--lr", "0.003"], True, False),
    "lab4_gcn": ("lab4_gcn.train", ["--epochs", "5", "--hidden", "8"], False, False),
    "lab5_style": ("lab5_style.train", ["--size", "40", "--steps", "5", "--backbone", "vgg16"], False, True),
}
# What a step does on purpose that a check would flag: (run, check, "cpu" or "gpu" (any other device), what,
# why). what: an fnmatch pattern of "op@caller" (device; see caller()) or of "op" (bf16). The device check never
# counts 0-dim CPU tensors: kernels take CPU scalars by value (Adam keeps its step count there). The device ones
# are confirmed off the CPU by tests/test_gpu_check.py on the meta device (lab 4's by reading train.py only).
RECURRENCE_FP32 = "the recurrence runs in float32 on purpose (cuDNN's RNN autocast is float16 only, unscaled)"
EXCEPTIONS = [
    ("lab2_cnn", "device", "gpu", "*@lab2_cnn/data.py:__call__*",
     "Batches shuffles the index tensor on the CPU and copies each batch's indices (B int64s) to the device"),
    ("lab3_text/*", "device", "gpu", "*@lab3_text/data.py:*", "batches are padded on the CPU, then copied"),
    ("lab3_text/lstm", "device", "gpu", "*(torch/nn/utils/rnn.py:pack_padded_sequence)",
     "the lengths stay on the CPU: pack_padded_sequence sorts them there and returns batch_sizes there"),
    ("lab3_text/lstm", "device", "gpu", "select@*(torch/nn/modules/rnn.py:forward)",
     "nn.LSTM reads its batch size off batch_sizes[0], on the CPU"),
    ("lab3_text/transformer", "device", "gpu", "_to_copy@lab3_text/model.py:forward",
     "the lengths are copied to the device for the padding mask"),
    ("lab4_gcn", "device", "gpu", "*@lab4_gcn/train.py:*scores", "outputs are scored on the CPU (sklearn)"),
    ("lab4_gcn", "device", "gpu", "*@lab4_gcn/train.py:train_one_epoch", "targets are gathered on the CPU to score"),
    ("lab3_text/lstm", "bf16", "cpu", "*(torch/nn/modules/rnn.py:forward)", RECURRENCE_FP32),
    ("lab3_text/lstm", "bf16", "gpu", "*(torch/nn/modules/rnn.py:forward)", RECURRENCE_FP32),
    ("lab3_text/transformer", "bf16", "cpu", "bmm@*",
     "PyTorch's CPU attention with dropout (its math path) computes in float32 under autocast"),
]
MATMULS = {"mm", "addmm", "bmm", "baddbmm", "convolution", "convolution_backward"}
FUSED = ("_scaled_dot_product_", "_efficient_attention", "_flash_attention", "_cudnn_rnn", "mkldnn_rnn")
MACHINERY = (__file__, "torch/utils/_python_dispatch.py", "torch/_compile.py", "torch/_dynamo/")  # op -> Recorder


def caller() -> str:
    """Where the op being dispatched was called: "file:function" of the innermost frame of this repository, then
    in brackets the innermost frame when that is PyTorch's Python; "backward" in the autograd engine."""
    frame = sys._getframe(1)
    while frame and any(part in frame.f_code.co_filename for part in MACHINERY):
        frame = frame.f_back
    if frame is None or "torch/autograd/" in frame.f_code.co_filename:
        return "backward"

    def ours(f):
        return f.f_code.co_filename.startswith(str(ROOT)) and "site-packages" not in f.f_code.co_filename

    def name(f):
        path = f.f_code.co_filename
        return f"{os.path.relpath(path, ROOT) if ours(f) else path.split('site-packages/')[-1]}:{f.f_code.co_name}"
    outer = frame
    while outer and not ours(outer):
        outer = outer.f_back
    return name(frame) if outer is frame else f"{name(outer) if outer else '?'} ({name(frame)})"


class Recorder(TorchDispatchMode):
    """Every aten op that reaches a kernel, forward, backward and optimiser alike (after autocast's casts)."""

    def __init__(self, device: torch.device):
        super().__init__()
        self.device = device
        self.off_device = Counter()  # "op@caller" -> ops with a tensor off the device
        self.matmuls = Counter()  # ("op@caller", dtype of its first floating output) -> forward ops
        self.convs = Counter()  # (input channels-last, weight channels-last) -> forward convolutions

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        op = func.overloadpacket.__name__
        tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
        where = caller()
        if any(t.device.type != self.device.type and not (t.dim() == 0 and t.device.type == "cpu") for t in tensors):
            self.off_device[f"{op}@{where}"] += 1
        if (op in MATMULS or op.startswith(FUSED)) and where != "backward":  # a backward op has its forward's dtype
            outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor) and t.is_floating_point()]
            self.matmuls[f"{op}@{where}", outs[0].dtype if outs else None] += 1
        if op == "convolution":
            self.convs[tuple(t.is_contiguous(memory_format=torch.channels_last) for t in args[:2])] += 1
        return out


def excuse(run: str, check: str, device: torch.device, what: str) -> str | None:
    kind = "cpu" if device.type == "cpu" else "gpu"
    return next((why for r, c, d, pattern, why in EXCEPTIONS
                 if fnmatch.fnmatch(run, r) and (c, d) == (check, kind) and fnmatch.fnmatch(what, pattern)), None)


@contextmanager
def forced_bf16(on: bool):
    """LABS_FORCE_BF16=1 (or unset) inside, as it was outside."""
    before = os.environ.pop("LABS_FORCE_BF16", None)
    os.environ.update({"LABS_FORCE_BF16": "1"} if on else {})
    try:
        yield
    finally:
        os.environ.pop("LABS_FORCE_BF16", None)
        os.environ.update({} if before is None else {"LABS_FORCE_BF16": before})


def observe(run: str, device: torch.device, forced: bool, record: bool = True) -> dict:
    """Run a lab's main() with train_one_epoch wrapped: the first call recorded, the others timed (the first
    pays for warm-up: allocations, cuDNN's algorithm search). Everything patched is put back."""
    module = importlib.import_module(RUNS[run][0])
    step = module.train_one_epoch
    seen = {"recorder": Recorder(device) if record else None, "losses": [], "seconds": 0.0, "steps": 0}
    timing = False
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None  # kernels run asynchronously

    def count(*_):
        seen["steps"] += timing

    def watched(*args, **kwargs):
        nonlocal timing
        first = not seen["losses"]
        sync()
        started, timing = time.perf_counter(), not first
        with seen["recorder"] if first and record else nullcontext():
            result = step(*args, **kwargs)
        sync()
        seen["seconds"] += 0.0 if first else time.perf_counter() - started
        timing = False
        seen["losses"].append(float(next(result[k] for k in ("loss", "mse", "total_loss") if k in result)))
        return result

    hook = register_optimizer_step_post_hook(count)  # steps: batches, not epochs
    module.train_one_epoch = watched
    try:
        with forced_bf16(forced), tempfile.TemporaryDirectory() as tmp:
            module.main([*RUNS[run][1], "--device", device.type, "--quiet", "--out", str(Path(tmp) / "run")])
    finally:
        module.train_one_epoch = step
        hook.remove()
    seen["seconds_per_step"] = seen["seconds"] / seen["steps"] if seen["steps"] else math.nan
    return seen


def verdicts(run: str, device: torch.device, recorder: Recorder, losses: list, bf16: bool,
             channels_last: bool) -> list[tuple[bool, str]]:
    """(passed, text) of each check, from what the recorder saw and the epochs' losses."""
    def excused(check, counts):  # "N excused: why; why" for the ops that EXCEPTIONS excuse
        whys = {what: excuse(run, check, device, what) for what in counts}
        n = sum(count for what, count in counts.items() if whys[what])
        return n, f"{n} excused" + (": " + "; ".join(sorted(set(filter(None, whys.values())))) if n else "")

    found = []
    _, why = excused("device", recorder.off_device)
    wrong = {what: n for what, n in recorder.off_device.items() if not excuse(run, "device", device, what)}
    found.append((not wrong, f"device ok ({why})" if not wrong else f"device: ops with tensors off {device.type}: "
                  + ", ".join(f"{w} x{n}" for w, n in wrong.items())))
    want, label = (torch.bfloat16, "bf16") if bf16 else (torch.float32, "fp32")
    total = sum(recorder.matmuls.values())
    odd = Counter()  # "op@caller" -> outputs not of the wanted dtype
    for (op, dtype), count in recorder.matmuls.items():
        if dtype != want:
            odd[op] += count
    n_excused, why = excused("bf16", odd)
    wrong = Counter()  # "op dtype" -> ops not excused
    for (what, dtype), n in recorder.matmuls.items():
        if dtype != want and not excuse(run, "bf16", device, what):
            wrong[f"{what.split('@')[0]} {str(dtype).removeprefix('torch.')}"] += n
    found.append((total > 0 and not wrong, f"{label}: no matmul or conv seen" if not total else
                  f"{label} ok ({total - n_excused}/{total} matmul/conv outputs, {why})" if not wrong else
                  f"{label}: {sum(wrong.values())}/{total} matmul/conv outputs are not {label}: "
                  + ", ".join(f"{w} x{n}" for w, n in wrong.items())))
    if channels_last:
        convs, good = sum(recorder.convs.values()), recorder.convs[True, True]
        found.append((0 < good == convs, f"channels-last {'ok' if 0 < good == convs else 'lost:'} "
                      f"({good}/{convs} convs)"))
    falls = len(losses) > 1 and all(map(math.isfinite, losses)) and losses[-1] < losses[0]
    found.append((falls, f"loss {'falls' if falls else 'does not fall:'} " + " -> ".join(f"{v:.4g}" for v in losses)))
    return found


def check_run(run: str, device: torch.device) -> tuple[str, list[str]]:
    """One line for the run, and one line per failed check."""
    try:
        seen = observe(run, device, forced=device.type == "cpu")
        base = observe(run, torch.device("cpu"), forced=False, record=False) if device.type != "cpu" else None
    except (Exception, SystemExit) as error:  # a lab that does not run is one failed check, not a traceback
        return f"{run:22} did not run", [f"{run} run: {type(error).__name__}: {(str(error) or ' ').splitlines()[0]}"]
    results = verdicts(run, device, seen["recorder"], seen["losses"], *RUNS[run][2:])
    speed = f"{seen['seconds_per_step']:.4f} s/step on {device.type}"
    if base:
        speed += f", {base['seconds_per_step']:.4f} on cpu (x{base['seconds_per_step'] / seen['seconds_per_step']:.1f})"
    line = f"{run:22} " + " | ".join(text for _, text in results) + f" | {speed}"
    return line, [f"{run} {text}" for passed, text in results if not passed]


def check_ddp(device: torch.device) -> tuple[str, list[str]]:
    """torchrun, 2 processes of lab 2 on 2 GPUs: exit 0 and summary.json."""
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if gpus < 2:
        return f"{'ddp':22} skipped: {gpus} CUDA GPU(s), needs 2", []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                               str(ROOT / "lab2_cnn" / "train.py"), *LAB2, "--device", "cuda", "--quiet",
                               "--out", str(out)], capture_output=True, text=True, timeout=600)
        wrote = (out / "summary.json").is_file()
    ok = done.returncode == 0 and wrote
    last = (done.stderr.strip().splitlines() or [""])[-1]
    text = "ok" if ok else f"exit {done.returncode}, summary.json {'written' if wrote else 'missing'}: {last}"
    return f"{'ddp':22} torchrun 2 x lab2_cnn: {text}", [] if ok else [f"ddp torchrun 2 x lab2_cnn: {text}"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                        help="cuda, or cpu: the same checks with the GPU path's settings forced on the CPU (cuda)")
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS), help="the runs to check (all)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here, nothing checked (--device cpu runs the checks on the CPU with the GPU "
              "path's settings forced)")
        return 0
    device, failures = torch.device(args.device), []
    for check in [*(lambda run=run: check_run(run, device) for run in args.runs), lambda: check_ddp(device)]:
        line, failed = check()
        print(line, flush=True)
        failures += failed
    for failure in failures:
        print(f"FAILED {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
