"""What every ``emo ... train`` run does the same way (``emo train``, ``emo segment train``): own its folder while it
runs, refuse to write over another run, seed each epoch, sample and load, stop when the training diverges, gather
an epoch across processes, write checkpoints and CSVs atomically (and put them back in agreement after a kill),
and say at the end what the processes agreed on and what was skipped."""

import argparse
import csv
import functools
import io
import logging
import math
import os
import random
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from ..files import atomic_write, atomic_write_text, folder_lock, remove_stale_temporaries
from ..weights import CheckpointError, read_checkpoint
from .data import SKIPPED_FILE, SkippedImages, readable_loader
from .distributed import Distributed

__all__ = [
    'add_run_arguments',
    'own_run_folder',
    'check_output',
    'seed_epoch',
    'prepare_run_folder',
    'run_loaders',
    'restore_training',
    'epoch_progress',
    'gather_epoch',
    'trainable_everywhere',
    'save_checkpoints',
    'restore_best',
    'TrainingDiverged',
    'check_step_finite',
    'write_csv',
    'finish_run',
]


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The options every trainer takes for its run folder and its processes."""
    p.add_argument('--output', required=True, type=Path, help='run folder: checkpoints, metrics.csv, metrics.png')
    p.add_argument('--resume', default=None, type=Path, help='a last.pth to continue from')
    p.add_argument(
        '--exist-ok',
        action='store_true',
        help='write into an --output that holds another run, replacing its checkpoints and metrics',
    )
    p.add_argument('--sync-bn', action='store_true', help='SyncBatchNorm across processes (CUDA only)')
    p.add_argument('--no-amp', action='store_true', help='no mixed precision on CUDA')
    p.add_argument('--workers', type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--device', default=None, help='default: cuda if available, else cpu')
    p.add_argument('--no-progress', action='store_true')


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    # every epoch starts from its own seed (all RNGs, before any draw): a resumed run repeats the uninterrupted
    # one's data order and augmentations without storing RNG states
    s = seed + 1009 * epoch + 100003 * rank
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


@contextmanager
def own_run_folder(env: Distributed, output: Path, command: str, check: Callable[[], None]) -> Iterator[None]:
    """Process 0 holds ``output``'s lock (:func:`emo.files.folder_lock`) for the block, taken before anything is
    written there, then runs ``check`` (:func:`check_output`) under it; a second run on the same folder is refused
    in one line naming the holder, and a refused run (any error before the block) leaves no folder it made.
    Every process must enter it: the others wait for process 0's word."""
    with ExitStack() as stack:

        def take() -> None:
            stack.enter_context(folder_lock(output, command))
            check()

        env.run_where(env.main, take)
        yield


def check_output(
    output: Path, resume: Optional[Path], exist_ok: bool, resume_epoch: Optional[int], run_files: Sequence[str]
) -> None:
    """Refuse to write over another run: only a resume of the run in ``output`` itself, or ``--exist-ok``, may.

    Resuming an earlier checkpoint of the run (``best.pth``) would replace a later ``last.pth`` and cut
    ``metrics.csv`` back, so that too needs ``--exist-ok``.
    """
    if output.exists() and not output.is_dir():
        raise FileExistsError(f'--output {output} is a file, not a folder: choose a folder for the run')
    earlier = [name for name in run_files if (output / name).exists()]
    if not earlier or exist_ok:
        return
    if resume is not None and resume.resolve().parent == output.resolve():
        last = output / 'last.pth'
        if resume.resolve() == last.resolve() or not last.is_file():
            return
        try:
            last_epoch = int(read_checkpoint(last)['epoch'])
        except (CheckpointError, KeyError, TypeError, ValueError):
            return  # an unreadable last.pth holds nothing that resuming could lose
        if last_epoch <= resume_epoch:
            return
        raise FileExistsError(
            f'--resume {resume} is epoch {resume_epoch + 1} of the run in {output}, whose last.pth is at epoch '
            f'{last_epoch + 1}: resuming it would replace last.pth and cut metrics.csv back. Resume from {last}, '
            'or pass --exist-ok to go back to that epoch'
        )
    raise FileExistsError(
        f'--output {output} already holds a run ({", ".join(earlier)}): continue it with '
        f'--resume {output / "last.pth"}, choose a new --output, or pass --exist-ok to replace its files'
    )


def prepare_run_folder(output: Path, run_files: Sequence[str], fresh: bool, logger: logging.Logger) -> None:
    """Make ``output``, remove the temporaries a killed run left (a SIGKILL runs no cleanup: the next run does) and,
    for a run that is not a resume, an earlier run's skipped list (it is not this run's)."""
    output.mkdir(parents=True, exist_ok=True)
    for tmp in remove_stale_temporaries(output, run_files):
        logger.info('removed %s, left by a run that was killed while writing', tmp)
    if fresh:
        (output / SKIPPED_FILE).unlink(missing_ok=True)


def run_loaders(
    env: Distributed, train_set, val_set, batch_size: int, val_batch_size: int, seed: int, workers: int
) -> Tuple[DistributedSampler, DataLoader, DataLoader]:
    """The sampler and loaders of a run: a ``DistributedSampler`` in every run, one process included, so that N
    processes see the global batches of one and a resumed run those of an uninterrupted one; full batches only."""
    if not env.same_everywhere(len(train_set)):
        raise ValueError(
            f'the processes found different numbers of training images (this one {len(train_set)}): every node '
            'must see the same data'
        )
    global_batch = batch_size * env.world_size
    if len(train_set) < global_batch:
        raise ValueError(
            f'{len(train_set)} training images are fewer than one global batch ({global_batch}): lower --batch-size'
        )
    sampler = DistributedSampler(
        train_set, num_replicas=env.world_size, rank=env.rank, shuffle=True, seed=seed, drop_last=True
    )
    loader_kw = dict(num_workers=workers, pin_memory=env.device.type == 'cuda', persistent_workers=False)
    train_loader = readable_loader(train_set, batch_size=batch_size, sampler=sampler, drop_last=True, **loader_kw)
    val_loader = readable_loader(val_set, batch_size=val_batch_size, shuffle=False, **loader_kw)
    return sampler, train_loader, val_loader


def restore_training(state: dict, model: nn.Module, optimizer, scheduler, scaler) -> None:
    """Load a resumed checkpoint's model, optimizer, scheduler and AMP scaler states."""
    model.load_state_dict(state['state_dict'])
    optimizer.load_state_dict(state['optimizer'])
    scheduler.load_state_dict(state['scheduler'])
    if scaler is not None and state.get('scaler'):
        scaler.load_state_dict(state['scaler'])


def epoch_progress(loader: DataLoader, epoch: int, epochs: int, enabled: bool) -> tqdm:
    return tqdm(loader, desc=f'epoch {epoch + 1}/{epochs}', disable=not enabled, leave=True, dynamic_ncols=True)


def trainable_everywhere(
    env: Distributed,
    images: Optional[torch.Tensor],
    min_batch: int,
    step: int,
    epoch: int,
    logger: logging.Logger,
    what: str = 'image(s)',
) -> bool:
    """Whether every process's batch has at least ``min_batch`` readable samples (BatchNorm trains on two or more);
    a process whose batch has fewer says so. A step is taken by all processes together (the gradient exchange needs
    each): when one cannot, all skip it, and the caller advances the schedule as an uninterrupted run would."""
    usable = images is not None and len(images) >= min_batch
    if not usable:
        logger.warning(
            'process %d: batch %d of epoch %d has fewer than %d readable %s; not trained on',
            env.rank,
            step,
            epoch + 1,
            min_batch,
            what,
        )
    return env.all_true(usable)


def gather_epoch(env: Distributed, loss_sum: torch.Tensor, seen: int, skipped: SkippedImages) -> Tuple[float, int]:
    """The epoch's mean training loss and sample count over all processes; every process's skipped files merged."""
    seen_all = torch.tensor([seen], device=env.device)
    if env.world_size > 1:
        dist.all_reduce(loss_sum)
        dist.all_reduce(seen_all)
        met: List[Optional[List[str]]] = [None] * env.world_size
        dist.all_gather_object(met, sorted(skipped.errors))
        for paths in met:
            skipped.update(paths)
    count = int(seen_all.item())
    return (loss_sum.item() / count if count else math.nan), count


def save_checkpoints(output: Path, state: dict, is_best: bool) -> None:
    """``last.pth``, and ``best.pth`` when ``is_best``, each written atomically.

    A kill between the two leaves a ``last.pth`` that records this epoch as the best beside an older (or no)
    ``best.pth``: the resume puts it back (:func:`restore_best`). The metrics files come after both.
    """
    atomic_write(output / 'last.pth', functools.partial(torch.save, state))
    if is_best:
        atomic_write(output / 'best.pth', functools.partial(torch.save, state))


def restore_best(output: Path, resume: Path, state: dict, logger: logging.Logger) -> None:
    """Before a resume trains on: when the resumed checkpoint records its own epoch as the best, ``best.pth`` must
    be that checkpoint; a run killed between writing ``last.pth`` and ``best.pth`` left it missing or older, so it is
    written again from the resumed file."""
    if int(state['best']['epoch']) != int(state['epoch']) + 1:
        return  # the best is an earlier epoch, whose best.pth was written before that epoch's last.pth
    best = output / 'best.pth'
    try:
        have = int(read_checkpoint(best)['epoch']) if best.is_file() else None
    except (CheckpointError, KeyError, TypeError, ValueError):
        have = None
    if have == int(state['epoch']):
        return
    data = resume.read_bytes()
    atomic_write(best, lambda f: f.write(data))
    logger.warning(
        '%s was %s, while %s records epoch %d as the best (a kill between the two writes): written again from it',
        best,
        'missing' if have is None else f'of epoch {have + 1}',
        resume,
        int(state['epoch']) + 1,
    )


def _norm(tensors: List[torch.Tensor]) -> torch.Tensor:
    total_norm = getattr(torch.nn.utils, 'get_total_norm', None)  # torch >= 2.6
    if total_norm is not None:
        return total_norm(tensors, foreach=True)
    return torch.stack([t.float().norm() for t in tensors]).norm()


class TrainingDiverged(ValueError):
    """The loss or the weights became NaN or inf: the run stops, its last good checkpoints untouched."""


def check_step_finite(
    env: Distributed, loss: torch.Tensor, model: nn.Module, amp: bool, epoch: int, step: int, lr: float
) -> None:
    """Stop the run when this step made the weights non-finite, or (without AMP) its loss is; every process asks
    together (one tiny all-reduce), so all of them stop at the same step.

    With AMP an inf loss is not checked: the gradient scaler skips such a step and lowers its scale, which is how
    mixed precision works; only weights that did become non-finite stop it.
    """
    params = [p.detach() for p in model.parameters()]
    # one norm over all weights (foreach kernels): NaN or inf in any weight makes it non-finite; 5x faster than a
    # sum per tensor on emo_1m (1.1 vs 5.3 ms a step on a 2-core EPYC), which is 5% of a small CPU step
    finite = _norm(params).isfinite()
    if not amp:
        finite = finite & loss.detach().isfinite()
    if env.all_true(bool(finite)):
        return
    raise TrainingDiverged(
        f'training diverged at epoch {epoch + 1}, step {step + 1}: the loss is {loss.item():.4g} and the weights are '
        f'{"finite" if bool(finite) else "no longer all finite"} (on process {env.rank}); stopped before writing '
        f'epoch {epoch + 1}, so '
        + (
            f'last.pth and best.pth are those of epoch {epoch} and earlier, untouched'
            if epoch
            else 'no checkpoint was written'
        )
        + f'. Lower --lr (this run: {lr:.3g})'
    )


def write_csv(path: Path, fieldnames: Sequence[str], rows: List[dict]) -> None:
    text = io.StringIO(newline='')
    writer = csv.DictWriter(text, fieldnames=fieldnames)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())


def finish_run(
    env: Distributed,
    model: nn.Module,
    skipped: SkippedImages,
    output: Path,
    logger: logging.Logger,
    small_batches: int = 0,
    min_batch: int = 1,
):
    """The closing lines every process takes part in: under torchrun, whether the replicas ended identical (DDP
    keeps them in step; this checks it), how many steps were skipped for too few readable samples (all processes
    skip a step together, so process 0's count is the run's), and how many unreadable images (or masks) were left
    out."""
    if env.world_size > 1:
        agree = env.replicas_identical(model)
        if env.main:
            logger.info('parameters %s on all %d processes', 'identical' if agree else 'DIFFER', env.world_size)
    if env.main and small_batches:
        logger.warning(
            'skipped %d training step(s) whose batch had fewer than %d readable sample(s) (BatchNorm needs %d)',
            small_batches,
            min_batch,
            min_batch,
        )
    if env.main and skipped:
        logger.warning(
            'skipped %d unreadable image(s), left out of training and of every number, listed in %s',
            len(skipped),
            output / SKIPPED_FILE,
        )
