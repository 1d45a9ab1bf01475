import contextlib
import os
import signal

import pandas as pd
import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)  # tiny models: one thread is faster and deterministic


@pytest.fixture
def run_cli(capsys):
    """Call an entry point the way its __main__ does; return (exit code, stderr lines)."""
    from common import cli

    def call(main, argv):
        handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            cli.run(lambda: main(argv))
            code = 0
        except SystemExit as exit_:
            code = exit_.code
        finally:  # cli.run ignores signals after an interrupt: right for a process that exits, not for pytest
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        return code, err
    return call


@pytest.fixture
def torchrun():
    """Run a script as torchrun does on one machine: 2 processes, gloo on the CPU."""
    import subprocess
    import sys

    def call(script, argv):
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   str(script), *argv]
        return subprocess.run(command, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    return call


@pytest.fixture
def interrupt_in_epoch(monkeypatch):
    """with interrupt_in_epoch(module, n): Ctrl-C inside the n-th call of module.train_one_epoch (in this
    process: no signal, so the run does not defer it)."""
    @contextlib.contextmanager
    def interrupt(module, n):
        original, calls = module.train_one_epoch, []

        def train_one_epoch(*args, **kwargs):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return original(*args, **kwargs)
        with monkeypatch.context() as patch:
            patch.setattr(module, "train_one_epoch", train_one_epoch)
            yield
    return interrupt


@pytest.fixture
def interrupted_and_resumed(tmp_path, run_cli, interrupt_in_epoch):
    """Check that a lab run interrupted (Ctrl-C inside its 3rd epoch, last.pt after the 2nd) and resumed
    ends with the history and summary of the same run uninterrupted."""
    def check(module, flags):
        flags = [*flags, "--quiet", "--checkpoint-every", "1"]
        whole = module.main([*flags, "--out", str(tmp_path / "whole")])
        with interrupt_in_epoch(module, 3):
            code, err = run_cli(module.main, [*flags, "--out", str(tmp_path / "cut")])
        assert code == 130 and err == [f"interrupted: {tmp_path / 'cut'} stopped after epoch 2 (last.pt); to "
                                       f"continue it, run the same command with --resume --out {tmp_path / 'cut'}"]
        torch.manual_seed(123)  # the resumed run must not depend on the state this process is in
        resumed = module.main([*flags, "--out", str(tmp_path / "cut"), "--resume"])
        whole_history, cut_history = (pd.read_csv(tmp_path / name / "history.csv") for name in ("whole", "cut"))
        pd.testing.assert_frame_equal(whole_history.drop(columns="seconds", errors="ignore"),
                                      cut_history.drop(columns="seconds", errors="ignore"), check_exact=True)
        varies = ("wall_seconds", "out", "seconds_per_epoch")  # times
        assert {k: v for k, v in whole.items() if k not in varies} == \
            {k: v for k, v in resumed.items() if k not in varies}
        assert whole["epochs_run"] > 3
    return check
