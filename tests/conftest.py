import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)  # tiny models: one thread is faster and deterministic


@pytest.fixture
def run_cli(capsys):
    """Call an entry point the way its __main__ does; return (exit code, stderr lines)."""
    from common import cli

    def call(main, argv):
        try:
            cli.run(lambda: main(argv))
            code = 0
        except SystemExit as exit_:
            code = exit_.code
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        return code, err
    return call
