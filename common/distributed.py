"""One run over several processes, launched by torchrun: DistributedDataParallel (nccl on CUDA, gloo on
CPU). Without torchrun every function here is the single-process identity, so a plain run is unchanged.

--batch-size stays the global batch: every process takes its own slice of each global batch, and the
gradients DDP averages weigh every example as a single process would. With the same permutation (rank
0 draws it and shares it) a run then follows a single-process run of the same flags, up to float
rounding, where nothing else is random per process (dropout, augmentation) and batch statistics are
shared (no batch norm, or SyncBatchNorm on CUDA).

    global batch (n rows)   [ r0 r0 r0 | r1 r1 r1 | r2 r2 r2 r2 ]   my_rows(n): this process's slice
"""
import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from common.errors import UsageError


def launched() -> bool:
    """Started by torchrun (or another launcher that sets the same environment) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> torch.device:
    """Join the process group; on CUDA, this process's own GPU. The identity without torchrun."""
    if not launched() or dist.is_initialized():
        return _local(device)
    device = _local(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=30))
    return device


def _local(device: torch.device) -> torch.device:
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if device.type == "cuda" else device


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """The process that writes the run folder and shows progress (rank 0)."""
    return rank() == 0


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """The module to train: DDP around model when launched, else model itself. Checkpoints, best.pt and
    evaluation use model (no 'module.' prefix, no collective inside an evaluation pass)."""
    if not dist.is_initialized():
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # one set of batch statistics, as in 1 process
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrapped(trainer: nn.Module) -> nn.Module:
    """The model inside wrap()'s DDP (the model itself in one process)."""
    return trainer.module if isinstance(trainer, nn.parallel.DistributedDataParallel) else trainer


def my_rows(n: int) -> slice:
    """This process's contiguous slice of a global batch of n rows (empty when n < world())."""
    size, me = world(), rank()
    return slice(me * n // size, (me + 1) * n // size)


def check_batches(batch_size: int, examples: int, least: int) -> None:
    """Refuse, in one line, flags that would leave a process with fewer than `least` rows of every training
    batch (the batches would all be skipped); the identity's check in one process."""
    need = least * world()
    if batch_size < need:
        raise UsageError(f"--batch-size {batch_size} gives {world()} processes fewer than {least} example(s) each; "
                         f"use --batch-size {need} or more")
    if examples < need:
        raise UsageError(f"{examples} training examples are too few for {world()} processes ({least} each)")


def gradient_weight(mine: int, n: int) -> float:
    """Factor on this process's mean loss over `mine` of the global batch's n rows: DDP averages the
    processes' gradients, so each must count by its share for the result to be the global batch's mean."""
    return mine * world() / n


def _carrier(tensor: torch.Tensor) -> torch.Tensor:
    """nccl moves only CUDA tensors; gloo only CPU ones."""
    return tensor.cuda() if dist.get_backend() == "nccl" else tensor.cpu()


def main_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """Rank 0's value of tensor, on every process (a shuffle drawn once)."""
    if not dist.is_initialized():
        return tensor
    carried = _carrier(tensor.clone())
    dist.broadcast(carried, src=0)
    return carried.to(tensor.device)


def main_object(value):
    """Rank 0's value of any picklable object, on every process (a decision, a batch plan)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(*values):
    """Sums over the processes of numbers or tensors (tensors come back where they were)."""
    if not dist.is_initialized():
        return values
    summed = []
    for value in values:
        tensor = value if torch.is_tensor(value) else torch.tensor(float(value), dtype=torch.float64)
        carried = _carrier(tensor.detach().clone())
        dist.all_reduce(carried)
        summed.append(carried.to(tensor.device) if torch.is_tensor(value) else type(value)(carried.item()))
    return tuple(summed)


def share_buffers(model: nn.Module) -> None:
    """Give every process rank 0's buffers (batch-norm running statistics) before they are used apart."""
    if dist.is_initialized():
        for buffer in model.buffers():
            buffer.copy_(main_tensor(buffer))


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
