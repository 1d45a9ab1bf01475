"""Nothing lost, nothing mixed, no traceback: folder locks, interrupts, atomic files, one-line errors."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from common import runs
from common.sweep import cli as sweep
from lab1_fnn import train as lab1

ROOT = Path(__file__).resolve().parents[1]
LAB1 = [sys.executable, str(ROOT / "lab1_fnn/train.py"), "--n-points", "60", "--width", "4", "--quiet"]


def wait_for(path: Path, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def start(argv, **kwargs):
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_second_run_into_a_busy_folder_is_refused_and_an_interrupt_leaves_it_unfinished(tmp_path, signum):
    out = tmp_path / "conc"
    first = start([*LAB1, "--epochs", "1000000", "--out", str(out)])
    wait_for(out / "history.csv")
    time.sleep(0.5)  # some epochs logged
    second = subprocess.run([*LAB1, "--epochs", "5", "--seed", "2", "--out", str(out)], capture_output=True,
                            text=True)
    assert second.returncode == 2 and second.stderr.count("\n") == 1
    assert f"is in use by process {first.pid}" in second.stderr
    first.send_signal(signum)
    _, err = first.communicate(timeout=30)
    stopping, note = err.strip().splitlines()
    epoch = int(stopping.split()[3])  # "stopping after epoch N to save it in last.pt ..."
    assert first.returncode == 130 and note == (f"interrupted: {out} stopped after epoch {epoch} (last.pt); to "
                                                f"continue it, run the same command with --resume --out {out}")
    assert int((out / "history.csv").read_text().splitlines()[-1].split(",")[0]) == epoch
    assert (out / "config.json").exists() and not (out / "summary.json").exists()
    assert json.loads((out / "config.json").read_text())["seed"] == 0  # the second run wrote nothing
    third = subprocess.run([*LAB1, "--epochs", "5", "--out", str(out)], capture_output=True, text=True)
    assert third.returncode == 2 and "holds an unfinished run" in third.stderr and third.stderr.count("\n") == 1


def resume_flags(tmp_path, run_cli, interrupt_in_epoch):
    """An interrupted lab 1 run (last.pt after epoch 4); its flags."""
    flags = ["--n-points", "60", "--width", "4", "--epochs", "10", "--checkpoint-every", "2", "--quiet",
             "--out", str(tmp_path / "cut")]
    with interrupt_in_epoch(lab1, 5):
        assert run_cli(lab1.main, flags)[0] == 130
    return flags


@pytest.mark.parametrize("change, message", [
    (lambda flags, out: [*flags, "--width", "5"], "--width differs from the interrupted run's config.json"),
    (lambda flags, out: [a for a in flags if a not in ("--out", str(out))], "--resume needs --out"),
    (lambda flags, out: [*flags, "--out", str(out.parent / "none")], "holds no run to continue (no config.json)"),
    (lambda flags, out: (out / "last.pt").write_bytes(b"junk") and flags, "last.pt cannot be read"),
    (lambda flags, out: (out / "last.pt").unlink() or flags, "has no last.pt (interrupted before its first"),
    (lambda flags, out: (out / "summary.json").write_text("{}") and flags, "holds a finished run"),
    (lambda flags, out: (out / "history.csv").unlink() or flags, "history.csv cannot be read"),
    (lambda flags, out: (out / "history.csv").write_text("epoch,train_mse,val_mse\n") and flags,
     "does not hold epochs 1..4"),
    (lambda flags, out: (out / "history.csv").write_text("") or flags, "does not hold epochs 1..4"),
    (lambda flags, out: (out / "history.csv").write_text("epoch,train_mse,val_mse\n1,1,1\n2,abc,1\n3,1,1\n4,1,1\n")
     and flags, "holds a value that is not a number"),
    (lambda flags, out: (out / "config.json").write_text("{bad") and flags, "config.json cannot be read"),
    (lambda flags, out: (out / "config.json").write_text("[1, 2]") and flags, "config.json is not a run's config"),
])
def test_resume_refusals_are_one_line_and_change_nothing(tmp_path, run_cli, interrupt_in_epoch, change, message):
    flags = resume_flags(tmp_path, run_cli, interrupt_in_epoch)
    out = tmp_path / "cut"
    argv = change(flags, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}
    code, err = run_cli(lab1.main, [*argv, "--resume"])
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"} == before


def test_resume_may_change_where_and_how_a_run_runs_not_what_it_computes(tmp_path, run_cli, interrupt_in_epoch):
    flags = resume_flags(tmp_path, run_cli, interrupt_in_epoch)
    summary = lab1.main([*flags, "--resume", "--checkpoint-every", "3", "--device", "cpu"])
    assert summary["status"] == "ok" and summary["epochs_run"] == 10
    epochs = [int(line.split(",")[0]) for line in (tmp_path / "cut/history.csv").read_text().splitlines()[1:]]
    assert epochs == list(range(1, 11))


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "file").write_text("x") and d / "file", "is a file, not a folder"),
    (lambda d: (d / "file").write_text("x") and d / "file" / "under", "a part of the path is a file"),
    (lambda d: "", "--out: must name a folder"),
])
def test_bad_out_folders_are_one_line(tmp_path, run_cli, make, message):
    code, err = run_cli(lab1.main, ["--epochs", "2", "--out", str(make(tmp_path))])
    assert code == 2 and len(err) == 1 and message in err[0]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_is_one_line(tmp_path, run_cli):
    tmp_path.chmod(0o555)
    code, err = run_cli(lab1.main, ["--epochs", "2", "--out", str(tmp_path / "run")])
    tmp_path.chmod(0o755)
    assert code == 2 and len(err) == 1


@pytest.mark.parametrize("flag", ["--seed", "--data-seed"])
def test_seeds_out_of_range_are_one_line(tmp_path, run_cli, flag):
    code, err = run_cli(lab1.main, [flag, "99999999999999999999", "--out", str(tmp_path / "r")])
    assert code == 2 and len(err) == 1 and "must be an integer in [0, 2**63)" in err[0]
    assert not (tmp_path / "r").exists()


def test_an_unexpected_error_before_the_first_epoch_is_one_line_and_leaves_no_folder(tmp_path, run_cli,
                                                                                     monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something deep broke\nsecond line")
    monkeypatch.setattr(lab1, "train_one_epoch", broken)
    code, err = run_cli(lab1.main, ["--epochs", "2", "--quiet", "--out", str(tmp_path / "run")])
    assert code == 1 and err == ["error: RuntimeError: something deep broke (LABS_DEBUG=1 shows the traceback)"]
    assert not (tmp_path / "run").exists()
    monkeypatch.setenv("LABS_DEBUG", "1")
    code, err = run_cli(lab1.main, ["--epochs", "2", "--quiet", "--out", str(tmp_path / "run")])
    assert code == 1 and err[0].startswith("Traceback")


def sweep_argv(out, *extra):
    return [sys.executable, "-m", "common.sweep", "lab1_fnn", "--out", str(out), *extra]


def test_ctrl_c_stops_a_two_job_sweep_writes_what_finished_and_leaves_no_worker(tmp_path):
    out = tmp_path / "sweep"
    # Two short points and two long ones, in a worker each: the signal lands after the short ones have finished
    # and while the long ones run, however fast the machine.
    argv = sweep_argv(out, "--jobs", "2", "--grid", "epochs=30,40000", "width=4,5", "--metric",
                      "test_mse", "--curves", "val_mse", "--", "--n-points", "60")
    process = start(argv, cwd=ROOT, start_new_session=True)
    for finished in ("epochs=30_width=4", "epochs=30_width=5"):
        wait_for(out / finished / "summary.json")
    wait_for(out / "epochs=40000_width=4" / "history.csv")
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal signals the whole process group
    started = time.time()
    _, err = process.communicate(timeout=60)
    assert time.time() - started < 15 and process.returncode == 130
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "interrupted"
    results = pd.read_csv(out / "results.csv")
    statuses = list(results.sort_values("epochs")["status"])
    assert len(results) == 4 and statuses == ["ok", "ok", "unfinished", "unfinished"]
    time.sleep(1)
    assert not children_of(process.pid)
    again = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0
    results = pd.read_csv(out / "results.csv")
    assert len(results) == 4 and set(results["status"]) == {"ok"} and results["dir"].is_unique


def children_of(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() in (str(pid), "1") and "spawn_main" in cmdline(status.parent):
            found.append(int(status.parent.name))
    return found


def cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_killing_the_sweep_leaves_no_orphan_worker(tmp_path):
    out = tmp_path / "sweep"
    process = start(sweep_argv(out, "--jobs", "2", "--grid", "width=4..11", "--",
                               "--n-points", "60", "--epochs", "100000"), cwd=ROOT, start_new_session=True)
    wait_for(out / "width=4" / "config.json")
    workers = [p for p in children_of(process.pid)]
    assert workers
    process.kill()
    process.communicate(timeout=30)
    deadline = time.time() + 10
    while any(Path(f"/proc/{w}").exists() and "spawn_main" in cmdline(Path(f"/proc/{w}")) for w in workers):
        assert time.time() < deadline, "a worker outlived the sweep"
        time.sleep(0.1)


def test_a_second_sweep_into_a_busy_folder_is_refused(tmp_path):
    out = tmp_path / "sweep"
    process = start(sweep_argv(out, "--grid", "width=4..5", "--", "--n-points", "60", "--epochs", "100000"),
                    cwd=ROOT)
    wait_for(out / "width=4" / "config.json")
    second = subprocess.run(sweep_argv(out, "--grid", "width=4..5", "--", "--n-points", "60", "--epochs",
                                       "100000"), cwd=ROOT, capture_output=True, text=True)
    process.kill()
    process.communicate()
    assert second.returncode == 2 and f"is in use by process {process.pid}" in second.stderr


def test_resume_reruns_a_point_with_a_truncated_summary_and_an_empty_sweep_json_is_rewritten(tmp_path, capsys):
    argv = ["lab1_fnn", "--out", str(tmp_path), "--grid", "width=4,8", "--", "--n-points", "60", "--epochs", "5"]
    sweep.main(argv)
    (tmp_path / "width=8" / "summary.json").write_text('{"best_val_mse": 0.1, "sta')
    (tmp_path / "sweep.json").write_text("")
    capsys.readouterr()
    results = sweep.main(argv)
    out = capsys.readouterr().out
    assert "sweep.json was unreadable; writing it again" in out
    assert "point width=8 was left unfinished (no readable summary.json): running it again" in out
    assert "1 already done, 1 to run" in out and set(results["status"]) == {"ok"}
    assert json.loads((tmp_path / "sweep.json").read_text())["lab"] == "lab1_fnn"


def test_grid_values_with_a_slash_make_safe_file_names(tmp_path):
    results = sweep.main(["lab1_fnn", "--out", str(tmp_path), "--grid", "data_root=a,b/c", "width=4,8",
                          "--heatmap", "width,data_root", "--metric", "test_mse", "--curves", "val_mse",
                          "--curves-by", "data_root", "--", "--n-points", "60", "--epochs", "5"])
    assert set(results["status"]) == {"ok"}
    assert (tmp_path / "curves_val_mse_data_root=b-c.png").exists()
    assert (tmp_path / "data_root=b-c_width=4" / "summary.json").exists()


def test_memory_that_cannot_be_allocated_names_the_flags(tmp_path, run_cli):
    code, err = run_cli(lab1.main, ["--width", "10000000", "--depth", "2", "--quiet", "--out", str(tmp_path / "r")])
    assert code == 2 and len(err) == 1 and "--width 10000000 --depth 2: not enough memory" in err[0]
    assert not (tmp_path / "r").exists()


def test_a_failed_run_into_an_existing_folder_leaves_it_as_it_was(tmp_path, run_cli, monkeypatch):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("the user's")

    def broken(*args, **kwargs):
        raise RuntimeError("boom")
    monkeypatch.setattr(lab1, "train_one_epoch", broken)
    code, _ = run_cli(lab1.main, ["--epochs", "2", "--quiet", "--out", str(out)])
    assert code == 1 and sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    monkeypatch.undo()
    assert lab1.main(["--epochs", "2", "--n-points", "60", "--quiet", "--out", str(out)])["status"] == "ok"


def test_grid_values_that_map_to_one_folder_are_refused(tmp_path, run_cli):
    code, err = run_cli(sweep.main, ["lab1_fnn", "--out", str(tmp_path), "--grid", "data_root=a/b,a-b",
                                     "--", "--epochs", "2"])
    assert code == 2 and "would share the folder data_root=a-b" in err[0]


def test_a_sweep_never_removes_a_point_folder_another_run_holds(tmp_path):
    out = tmp_path / "sweep"
    sweep.main(["lab1_fnn", "--out", str(out), "--grid", "width=4,8", "--", "--n-points", "60", "--epochs", "2"])
    import shutil
    shutil.rmtree(out / "width=8")
    runner = start([*LAB1, "--epochs", "100000000", "--out", str(out / "width=8")])
    wait_for(out / "width=8" / "config.json")
    again = subprocess.run(sweep_argv(out, "--grid", "width=4,8", "--", "--n-points", "60", "--epochs", "2"),
                           cwd=ROOT, capture_output=True, text=True)
    runner.kill()
    runner.communicate()
    assert again.returncode == 2 and f"is in use by process {runner.pid}" in again.stderr
    assert (out / "width=8" / "config.json").exists() and not (out / "width=8" / "summary.json").exists()


def test_report_refuses_unreadable_inputs_in_one_line_and_writes_nothing(tmp_path, run_cli):
    from common import report
    sweep.main(["lab1_fnn", "--out", str(tmp_path / "sweeps" / "sw"), "--grid", "width=4", "--",
                "--n-points", "60", "--epochs", "2"])
    (tmp_path / "sweeps" / "sw" / "results.csv").write_text("")
    code, err = run_cli(report.main, ["--sweeps", str(tmp_path / "sweeps"), "--out", str(tmp_path / "rep")])
    assert code == 2 and len(err) == 1 and "results.csv is unreadable" in err[0] and not (tmp_path / "rep").exists()
    (tmp_path / "sweeps" / "sw" / "sweep.json").write_text("[]")
    code, err = run_cli(report.main, ["--sweeps", str(tmp_path / "sweeps"), "--out", str(tmp_path / "rep")])
    assert code == 2 and "sweep.json is unreadable" in err[0]
    code, err = run_cli(report.main, ["--sweeps", str(tmp_path / "sweeps"), "--out", ""])
    assert code == 2 and "--out: must name a folder" in err[0]


def test_a_single_process_lab_under_torchrun_is_one_line(tmp_path, run_cli, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # what torchrun sets in each of its processes
    monkeypatch.setenv("RANK", "0")
    code, err = run_cli(lab1.main, ["--epochs", "2", "--n-points", "60", "--out", str(tmp_path / "r")])
    assert code == 2 and len(err) == 1 and "run it with python, not torchrun" in err[0]
    assert not (tmp_path / "r").exists()


def test_interrupts_are_deferred_during_epochs_only(tmp_path, monkeypatch):
    """While an epoch runs, Ctrl-C is the run's (it finishes the epoch and saves it); once the epochs are
    done (testing the best weights, figures), and after the run, Ctrl-C is Python's again: it stops at once."""
    seen = {}
    original_step, original_plot = lab1.train_one_epoch, lab1.plot_fit
    monkeypatch.setattr(lab1, "train_one_epoch",
                        lambda *a: seen.setdefault("epoch", signal.getsignal(signal.SIGINT)) and original_step(*a))
    monkeypatch.setattr(lab1, "plot_fit",
                        lambda *a: seen.setdefault("after", signal.getsignal(signal.SIGINT)) and original_plot(*a))
    lab1.main(["--n-points", "60", "--width", "4", "--epochs", "3", "--quiet", "--out", str(tmp_path / "r")])
    assert getattr(seen["epoch"], "__name__", "") == "_on_interrupt"
    assert seen["after"] is signal.default_int_handler is signal.getsignal(signal.SIGINT)


def test_ctrl_c_during_a_save_of_last_pt_says_the_epoch_it_stops_after(tmp_path, run_cli, monkeypatch):
    """The run stops once the save under way is done: the line says that epoch, not the next one."""
    save = runs.checkpoint.save

    def interrupted_save(path, state):
        if state["epoch"] == 20:
            os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler here, inside the save
        save(path, state)
    monkeypatch.setattr(runs.checkpoint, "save", interrupted_save)
    out = tmp_path / "r"
    code, err = run_cli(lab1.main, ["--n-points", "60", "--width", "4", "--epochs", "50", "--checkpoint-every", "10",
                                    "--quiet", "--out", str(out)])
    assert code == 130 and err[0].startswith("stopping after epoch 20 to save it in last.pt")
    assert f"{out} stopped after epoch 20 (last.pt)" in err[1]
    assert len((out / "history.csv").read_text().splitlines()) == 1 + 20


def test_a_rerun_sweep_resumes_an_interrupted_point_from_its_last_pt(tmp_path, run_cli, interrupt_in_epoch, capsys):
    argv = ["lab1_fnn", "--out", str(tmp_path / "sweep"), "--no-batch", "--grid", "width=4,8", "--",
            "--n-points", "60", "--epochs", "30", "--checkpoint-every", "10"]
    with interrupt_in_epoch(lab1, 55):  # width=4 runs its 30 epochs, width=8 stops in its epoch 25
        assert run_cli(sweep.main, argv)[0] == 130
    point = tmp_path / "sweep/width=8"
    assert (point / "last.pt").exists() and len((point / "history.csv").read_text().splitlines()) == 1 + 24
    capsys.readouterr()
    results = sweep.main(argv)
    assert "point width=8 was interrupted: resuming it from its last.pt" in capsys.readouterr().out
    assert list(results["status"]) == ["ok", "ok"]
    whole = lab1.main(["--n-points", "60", "--epochs", "30", "--width", "8", "--quiet", "--out", str(tmp_path / "w")])
    assert (point / "history.csv").read_text() == (tmp_path / "w/history.csv").read_text()
    assert json.loads((point / "summary.json").read_text())["test_mse"] == whole["test_mse"]
