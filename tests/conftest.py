import contextlib
import functools
import json
import os
import signal

import pandas as pd
import pytest
import torch

from common.data import forget_reused

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)  # tiny models: one thread is faster and deterministic


@pytest.fixture(autouse=True)
def fresh_data():
    """Every test reads its data files itself, whatever earlier tests of the process loaded (common.data.reused)."""
    forget_reused()


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
def bench():
    """Run bench/<name> with these arguments in a process of one thread: its printed lines (it must succeed)."""
    import subprocess
    import sys
    from pathlib import Path

    def call(name, *argv):
        script = Path(__file__).resolve().parents[1] / "bench" / name
        result = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, timeout=600,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()
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


@pytest.fixture
def reused_and_fresh(tmp_path, monkeypatch):
    """Check that a lab's points run one after another in this process, where each of `readers` ((module,
    name) of a function that common.data.reused calls) reads its files for the first point only, end with
    the histories and summaries of the same points run each on data read afresh."""
    def check(module, points: list[list[str]], *readers):
        reads = []

        def counting(read, name):
            @functools.wraps(read)  # its name, under which common.data.reused keeps what it read
            def counted(*args):
                reads.append(name)
                return read(*args)
            return counted
        for owner, name in readers:
            monkeypatch.setattr(owner, name, counting(getattr(owner, name), name))
        for way in ("reused", "fresh"):
            reads.clear()
            forget_reused()
            for i, flags in enumerate(points):
                if way == "fresh":
                    forget_reused()
                module.main([*flags, "--quiet", "--out", str(tmp_path / way / str(i))])
            assert sorted(reads) == sorted([name for _, name in readers] * (len(points) if way == "fresh" else 1))
        varies = ("seconds", "wall_seconds", "out", "seconds_per_epoch", "seconds_per_step")  # times
        for i in range(len(points)):
            reused, fresh = (pd.read_csv(tmp_path / way / str(i) / "history.csv") for way in ("reused", "fresh"))
            pd.testing.assert_frame_equal(reused.drop(columns=list(varies), errors="ignore"),
                                          fresh.drop(columns=list(varies), errors="ignore"), check_exact=True)
            reused, fresh = (json.loads((tmp_path / way / str(i) / "summary.json").read_text())
                             for way in ("reused", "fresh"))
            assert {k: v for k, v in reused.items() if k not in varies} == \
                {k: v for k, v in fresh.items() if k not in varies}
    return check
