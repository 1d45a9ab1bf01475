"""The sweep runner's Ray backend (--backend ray) on a local Ray of 2 CPUs: the same results as the local backend,
resume after a killed driver, failed points, and the flags it refuses."""
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from common.sweep import cli as sweep
from common.sweep import ray_backend

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--grid", "width=4,8", "depth=1,2", "--metric", "test_mse", "--", "--epochs", "20", "--n-points", "60"]
# ~1.5 s a point, one point a task (lab 1 would otherwise train these narrow networks as one ensemble)
SLOW = ["--no-batch", "--grid", "width=4..7", "--metric", "test_mse", "--", "--n-points", "60", "--epochs", "2000"]


@pytest.fixture(scope="module")
def cluster():
    """One local Ray for the module (the runner uses a Ray this process already joined); its address lets a
    driver in another process join it."""
    sigterm = signal.getsignal(signal.SIGTERM)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=ray_backend.OBJECT_STORE_BYTES, logging_level=logging.ERROR)
    signal.signal(signal.SIGTERM, sigterm)  # ray.init makes it a bare sys.exit; pytest's own stays
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def numbers(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv").drop(columns="wall_seconds")


def files(out: Path) -> dict:
    return {f: (f.stat().st_mtime_ns, f.stat().st_size) for f in out.rglob("*") if f.is_file()}


def test_ray_gives_the_numbers_of_the_local_backend(tmp_path, cluster, capsys):
    sweep.main(["lab1_fnn", "--out", str(tmp_path / "local"), *TINY])
    sweep.main(["lab1_fnn", "--out", str(tmp_path / "ray"), "--backend", "ray", *TINY])
    assert "4 to run as Ray tasks of 1 CPU and 0 GPU" in capsys.readouterr().out
    on_ray = numbers(tmp_path / "ray")
    assert len(on_ray) == 4 and set(on_ray["status"]) == {"ok"}
    pd.testing.assert_frame_equal(on_ray, numbers(tmp_path / "local"), check_exact=True)


def test_a_killed_driver_leaves_no_worker_writing_and_a_restart_runs_only_the_rest(tmp_path, cluster):
    out = tmp_path / "sweep"
    argv = ["lab1_fnn", "--out", str(out), "--backend", "ray", "--address", cluster, *SLOW]
    driver = subprocess.Popen([sys.executable, "-m", "common.sweep", *argv], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 180  # Ray's start and the first 2000 epochs, on a machine busy with other work
    while not list(out.glob("*/summary.json")):
        if time.time() > deadline or driver.poll() is not None:
            driver.kill()
            pytest.fail(f"no point finished: {driver.communicate()}")
        time.sleep(0.1)
    driver.send_signal(signal.SIGTERM)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130 and err.strip().splitlines() == ["interrupted"], err
    assert "unfinished" in set(pd.read_csv(out / "results.csv")["status"])
    finished = {f: f.stat().st_mtime_ns for f in out.glob("*/summary.json")}
    before = files(out)
    time.sleep(1)
    assert files(out) == before  # no worker of the killed driver writes on

    results = sweep.main(argv)
    assert len(results) == 4 and results["dir"].is_unique and set(results["status"]) == {"ok"}
    assert {f: f.stat().st_mtime_ns for f in finished} == finished  # nothing that finished ran again


def test_ctrl_c_in_a_driver_on_a_ray_it_does_not_own_cancels_the_running_points(tmp_path, cluster, monkeypatch):
    out = tmp_path / "sweep"
    argv = ["lab1_fnn", "--out", str(out), "--backend", "ray", "--no-batch", "--grid", "width=4..6", *SLOW[3:]]
    outcome = ray_backend.outcome
    calls = []

    def interrupted_after_the_first_point(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return outcome(*args)
    monkeypatch.setattr(ray_backend, "outcome", interrupted_after_the_first_point)
    with pytest.raises(KeyboardInterrupt):
        sweep.main(argv)
    assert list(pd.read_csv(out / "results.csv")["status"]).count("ok") == 1
    before = files(out)
    time.sleep(1)
    assert files(out) == before
    monkeypatch.setattr(ray_backend, "outcome", outcome)
    assert set(sweep.main(argv)["status"]) == {"ok"}  # the cancelled points' folders are free again


def test_a_failing_point_is_recorded_and_the_others_finish(tmp_path, cluster):
    # --n-points 3 passes the flag check, then main refuses it: too few points for the 5:2:3 split
    results = sweep.main(["lab1_fnn", "--out", str(tmp_path), "--backend", "ray", "--grid", "n_points=3,60",
                          "--", "--epochs", "15", "--width", "8"]).set_index("dir")
    assert results.loc["n_points=60", "status"] == "ok" and results.loc["n_points=3", "status"] == "failed"
    assert "too small" in results.loc["n_points=3", "error"]
    assert pd.read_csv(tmp_path / "results.csv").set_index("dir").loc["n_points=3", "status"] == "failed"


@pytest.mark.parametrize("flags, message", [
    (["--address", "auto"], "--address needs --backend ray"),
    (["--gpus-per-point", "0.5"], "--gpus-per-point needs --backend ray"),
    (["--backend", "ray", "--jobs", "2"], "--jobs is for --backend local"),
    (["--backend", "ray", "--cpus-per-point", "0"], "--cpus-per-point: must be a positive number"),
    (["--backend", "ray", "--gpus-per-point", "-1"], "--gpus-per-point: must be a number >= 0"),
    (["--backend", "ray", "--address", " "], "--address: must name a Ray cluster"),
    (["--backend", "slurm"], "invalid choice: 'slurm'"),
])
def test_flags_that_mean_nothing_exit_2_in_one_line(tmp_path, run_cli, flags, message):
    code, err = run_cli(sweep.main, ["lab1_fnn", "--out", str(tmp_path / "s"), *flags, *TINY])
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "s").exists()


def test_no_cluster_at_the_address_is_one_line(tmp_path, run_cli, monkeypatch):
    def no_cluster(**options):
        raise ConnectionError("Could not find any running Ray instance.")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", no_cluster)
    code, err = run_cli(sweep.main, ["lab1_fnn", "--out", str(tmp_path), "--backend", "ray", "--address", "auto",
                                     *TINY])
    assert code == 2 and err == ["error: --address auto: Could not find any running Ray instance."]


def test_without_ray_the_backend_says_how_to_install_it_after_checking_the_grid(tmp_path, run_cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    out = tmp_path / "s"
    code, err = run_cli(sweep.main, ["lab1_fnn", "--out", str(out), "--backend", "ray", *TINY])
    assert code == 2 and err == ["error: --backend ray needs Ray, an optional extra: pip install -e .[cluster]"]
    code, err = run_cli(sweep.main, ["lab1_fnn", "--out", str(out), "--backend", "ray", "--grid", "width=0,5"])
    assert code == 2 and len(err) == 1 and "point width=0: " in err[0]  # the grid is refused first
    assert not out.exists()


def test_sweep_scripts_pass_the_backend_on(tmp_path):
    echo = tmp_path / "python"
    echo.write_text('#!/bin/sh\necho "$@"\n')
    echo.chmod(0o755)

    def script(**env):
        return subprocess.run(["bash", "sweeps/lab1_depth_width.sh"], cwd=ROOT, capture_output=True, text=True,
                              env={"PATH": os.environ["PATH"], "PYTHON": str(echo), "JOBS": "3", **env})
    local = script().stdout
    assert "--jobs 3" in local and "--backend" not in local
    ray_run = script(BACKEND="ray", RAY_ADDRESS="auto", GPUS_PER_POINT="0.25").stdout
    assert "--backend ray --address auto --gpus-per-point 0.25 " in ray_run and "--jobs" not in ray_run
    bad = script(BACKEND="slurm")
    assert bad.returncode == 2 and bad.stderr == "error: BACKEND must be local or ray, got 'slurm'\n"
