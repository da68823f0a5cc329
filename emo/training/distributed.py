"""The processes of a ``torchrun`` job (or the one process of a plain run), and the questions they answer together.

A failure in one process must stop all of them with its one error line, not leave the others waiting in a
collective: every step that can fail on some processes only goes through :meth:`Distributed.run_where`.
"""

import datetime
import types
from typing import Callable, Optional, TypeVar

import torch
import torch.distributed as dist
from timm.utils import init_distributed_device

__all__ = ['Distributed', 'RunAborted', 'FLAG_TIMEOUT', 'resolve_device']

T = TypeVar('T')


class RunAborted(ChildProcessError):
    """Another process of this torchrun job failed (its own error is printed by it); an OSError, so one line."""


# how long a process waits for the others' answer to a yes/no question: process 0 may evaluate and save for a
# long time (a large validation set on CPU) while the others wait; 30 min (torch's default) was too short for that
FLAG_TIMEOUT = datetime.timedelta(hours=6)


def resolve_device(device: Optional[str]) -> str:
    """``--device``, checked: default cuda if there is one, else cpu; one ValueError for what cannot run here."""
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ValueError(f'--device {device} is no device: use cpu, cuda or cuda:N') from None
    if kind == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'--device {device}: this torch has no CUDA device; use --device cpu')
    return device


class Distributed:
    """This process's place in a ``torchrun`` job (or a single process)."""

    def __init__(self, device: Optional[str]):
        device = resolve_device(device)
        # timm's set-up: torchrun's (or SLURM's) environment, nccl for CUDA and gloo for the CPU, and with CUDA
        # the device of this process's local rank
        env = types.SimpleNamespace(device=device)
        self.device = init_distributed_device(env)
        self.world_size, self.rank = env.world_size, env.rank
        self.flag_group = None
        if env.distributed:
            # yes/no questions to all processes go over the CPU: on NCCL they would wait for the GPU's queue
            self.flag_group = dist.new_group(backend='gloo', timeout=FLAG_TIMEOUT)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def all_true(self, value: bool) -> bool:
        """Whether ``value`` is true on every process; every process must ask (one tiny CPU all-reduce)."""
        if self.world_size == 1:
            return value
        flag = torch.tensor([int(value)])
        dist.all_reduce(flag, op=dist.ReduceOp.MIN, group=self.flag_group)
        return bool(flag.item())

    def raise_if_any_failed(self, error: Optional[Exception]) -> None:
        """Stop every process when one failed, instead of leaving the others waiting in a collective for it."""
        if not self.all_true(error is None):
            raise error or RunAborted('another process of this run failed; its error is printed above')

    def same_everywhere(self, value: int) -> bool:
        """Whether every process has the same ``value`` (e.g. the number of training images each one found)."""
        if self.world_size == 1:
            return True
        bounds = torch.tensor([value, -value])  # one MIN reduction: the minimum, and minus the maximum
        dist.all_reduce(bounds, op=dist.ReduceOp.MIN, group=self.flag_group)
        return int(bounds[0]) == -int(bounds[1])

    def run_where(self, here: bool, work: Callable[[], T]) -> Optional[T]:
        """``work()`` on the processes where ``here`` is true; an error there stops every process, not just those.

        Every process must call it (the others return None): it ends with the question of :meth:`all_true`.
        """
        result, error = None, None
        if here:
            try:
                result = work()
            except Exception as e:  # noqa: BLE001 - re-raised by raise_if_any_failed, after all processes are told
                error = e
        self.raise_if_any_failed(error)
        return result

    def main_first(self, build: Callable[[], T]) -> T:
        """``build()`` on process 0, then on the others: a download happens once, the rest read the cache."""
        first = self.run_where(self.main, build)
        rest = self.run_where(not self.main, build)
        return first if self.main else rest

    def replicas_identical(self, model: torch.nn.Module) -> bool:
        """Whether every process holds the same parameters (DDP keeps them in step; this checks it, bit for bit,
        from one checksum a process). Every process must call it."""
        if self.world_size == 1:
            return True
        checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).sum().reshape(1)
        sums = [torch.zeros_like(checksum) for _ in range(self.world_size)]
        dist.all_gather(sums, checksum)
        return all(torch.equal(s, sums[0]) for s in sums)

    def close(self) -> None:
        if self.world_size > 1:
            dist.destroy_process_group()
