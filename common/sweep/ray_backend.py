"""Running a sweep's points as Ray tasks (--backend ray): on a Ray started here, or on a running cluster.

Ray is imported by this module's functions only, and this module only with --backend ray, so local sweeps
never pay for it."""
import logging
import os
import signal
from functools import partial

import torch

from common.errors import UsageError
from common.sweep.runner import report_group, run_group

# Points return a summary dict and write everything else into their folders: a small object store keeps a
# local Ray light on a laptop (Ray's default takes 30% of the memory).
OBJECT_STORE_BYTES = 100 * 1024**2
CANCEL_SECONDS = 30  # how long an interrupted driver waits for Ray to kill the points still running


def import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--backend ray needs Ray, an optional extra: pip install -e .[cluster]") from None
    return ray


def points_runner(address: str | None, cpus: float, gpus: float):
    """run_points(lab, todo, report) for Ray. Fails here, before the sweep folder is claimed, when Ray is
    missing or refuses the resources."""
    ray = import_ray()
    try:
        task = ray.remote(point_task).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
    except ValueError as error:
        raise UsageError(f"--cpus-per-point {cpus:g} --gpus-per-point {gpus:g}: {error}") from None
    # A point sees only the GPUs Ray gave it: Ray 2.60 leaves CUDA_VISIBLE_DEVICES alone for a task that asked
    # for none, and `--device auto` would then crowd unaccounted points onto GPU 0.
    hidden = {} if gpus else {"CUDA_VISIBLE_DEVICES": ""}
    env = {**{k: v for k, v in os.environ.items() if k.startswith("LABS_")}, **hidden}
    submit = partial(task.remote, threads=max(1, int(cpus)), cwd=os.getcwd(), env=env)
    return partial(run_points, ray, address, submit)


def point_task(lab: str, argvs: list[list[str]], threads: int, cwd: str, env: dict) -> list[tuple[dict, float]]:
    """A group of points (one, or an ensemble) in a Ray worker, as the local backend runs it. The driver's
    folder and LABS_* settings make a relative --out or --data-root name the same files on every node (a
    shared filesystem, the same paths)."""
    os.chdir(cwd)
    os.environ.update(env)
    torch.set_num_threads(threads)
    return run_group(lab, argvs)


def run_points(ray, address, submit, lab, todo, report) -> None:
    """Submit every point, report each as it ends. On Ctrl-C (or any error) every point still running is
    killed before the exception goes on: no worker writes into its folder after the driver has written
    results.csv, and a restart finds the folders free."""
    if not todo:
        return
    owned = not ray.is_initialized()  # a Ray this process already joined (tests, a notebook) is left running
    if owned:
        connect(ray, address)
    refs = {}
    try:
        refs = {submit(lab, [argv for _, argv in group]): group for group in todo}
        pending = list(refs)
        while pending:
            [ref], pending = ray.wait(pending, num_returns=1)
            group = refs[ref]
            report_group(group, outcome(ray, ref, len(group)), report)
    except BaseException:
        if not owned:
            cancel(ray, list(refs))
        raise
    finally:
        # Ending our job kills its workers on every node. ray.cancel would too, but it can race a point that is
        # just completing, and Ray 2.60 then aborts the driver ("Tried to complete task that was not pending").
        if owned:
            ray.shutdown()


def outcome(ray, ref, points: int) -> list[tuple[dict, float]]:
    """A group's (summary, seconds) of each point. A worker that died (killed for memory, its node lost) fails its
    group only, as a point that raised does; its time is unknown."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as error:
        cause = getattr(error, "cause", None) or error  # a task that raised: its own exception, not Ray's wrapper
        first = next(iter(str(cause).strip().splitlines()), "")
        return [({"status": "failed", "error": f"{type(cause).__name__}: {first}"}, 0.0)] * points


def cancel(ray, refs) -> None:
    """Kill the points still queued or running in a Ray we do not own, and wait until their workers are gone.
    Points already done are left out: cancelling one whose completion Ray is still recording is the race that
    aborts the driver, and this narrows it to the microseconds before Ray marks a point done."""
    _, running = ray.wait(refs, num_returns=len(refs), timeout=0)
    for ref in running:
        ray.cancel(ref, force=True)
    ray.wait(running, num_returns=len(running), timeout=CANCEL_SECONDS)


def connect(ray, address: str | None) -> None:
    """Join the cluster at address, or start a quiet local Ray."""
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    sigterm = signal.getsignal(signal.SIGTERM)
    try:
        if address:
            ray.init(address=address, **quiet)
        else:  # "local": a new Ray even where RAY_ADDRESS names a cluster; only --address joins one
            ray.init(address="local", include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES, **quiet)
    except ConnectionError as error:
        where = f"--address {address}" if address else "a local Ray"
        raise UsageError(f"{where}: {error}") from None
    finally:  # ray.init makes SIGTERM a bare sys.exit; cli.run's handler stops the sweep as Ctrl-C does
        signal.signal(signal.SIGTERM, sigterm)
