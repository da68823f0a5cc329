"""``emo segment train``: train a DeepLabv3, FCN or Semantic FPN on EMO / EMOv2 over an ADE20K-layout folder, on one
process or many (``torchrun --nproc_per_node=N -m emo.cli segment train ...``).

Defaults follow the papers' mmsegmentation configs (docs/segmentation.md): AdamW at lr 1.2e-4, weight decay 0.01,
a poly schedule (power 0.9) over every iteration, 512x512 crops of images resized by 0.5..2x with flips, the
auxiliary FCN loss at weight 0.4, every layer trained with live BatchNorm; with AMP on CUDA. Epochs replace the
papers' 80k iterations: a checkpoint is written after each one, so a SIGKILL loses at most the epoch under way.

The run-folder rules are ``emo train``'s (docs/reliability.md): no run is written over unasked, a resume must
continue the same run (model, segmenter, classes, crop size, labels), every epoch is seeded (a resumed run sees the
batches of an uninterrupted one), checkpoints and metrics are replaced atomically, and unreadable samples (corrupt
files, masks of another size) are dropped from their batches and listed, never replaced.
"""

import argparse
import functools
import logging
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.utils import NativeScaler
from tqdm import tqdm

from ..files import pyplot, save_png
from ..models.variants import model_names
from ..training.data import SKIPPED_FILE, SkippedImages
from ..training.distributed import Distributed
from ..training.runs import (
    add_run_arguments,
    check_output,
    check_step_finite,
    epoch_progress,
    finish_run,
    gather_epoch,
    own_run_folder,
    prepare_run_folder,
    restore_best,
    restore_training,
    run_loaders,
    save_checkpoints,
    seed_epoch,
    trainable_everywhere,
    write_csv,
)
from .checkpoint import MODEL_KEYS, build_segmenter, read_run_checkpoint
from .data import SegmentationFolder, eval_transform, train_transform
from .evaluate import evaluate
from .metrics import write_per_class_iou
from .models import AUX_LOSS_WEIGHT, SEGMENTERS, resolve_window_size

__all__ = ['main', 'build_parser', 'RUN_FILES']

_logger = logging.getLogger('emo.segment')
# what a run folder holds; the first three are the run itself, which a new run must not overwrite unasked
RUN_FILES = ('last.pth', 'best.pth', 'metrics.csv', 'metrics.png', 'per_class_iou.csv', SKIPPED_FILE)
# what --resume needs; a resumed run must also have every setting of _run_settings() the run it continues had
RESUME_KEYS = (*MODEL_KEYS, 'epoch', 'optimizer', 'scheduler', 'history', 'best')
METRIC_FIELDS = ['epoch', 'train_loss', 'lr', 'val_mIoU', 'val_aAcc', 'val_mAcc', 'epoch_time_s', 'train_img_per_s']


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='emo segment train',
        description='Train a segmentation model on images/SPLIT/NAME.jpg with masks annotations/SPLIT/NAME.png.',
    )
    p.add_argument('--data', required=True, type=Path, help='folder with images/ and annotations/ (ADE20K layout)')
    p.add_argument('--train-split', default='training', help='default: training (ADE20K)')
    p.add_argument('--val-split', default='validation', help='default: validation (ADE20K)')
    p.add_argument('--num-classes', required=True, type=int, help='classes in the masks (ADE20K 150, VOC 21)')
    p.add_argument('--ignore-index', type=int, default=255, help='mask value left out of loss and metrics')
    p.add_argument(
        '--reduce-zero-label', action='store_true', help='ADE20K: label 0 is ignored, labels 1..C become 0..C-1'
    )
    p.add_argument('--model', default='emo2_1m', choices=model_names(), metavar='MODEL', help='backbone variant')
    p.add_argument('--segmenter', default='deeplabv3', choices=sorted(SEGMENTERS))
    p.add_argument('--no-aux', action='store_true', help='no auxiliary FCN head on stage 3 (DeepLabv3, FCN)')
    p.add_argument('--window-size', type=int, default=None, help="backbone attention window; default the papers'")
    p.add_argument('--pretrained', action='store_true', help='start the backbone from the released ImageNet weights')
    p.add_argument('--weights', default=None, help='start the backbone from this checkpoint file instead')
    p.add_argument('--epochs', type=int, default=20)
    p.add_argument(
        '--batch-size', type=int, default=8, help='per process; at least 2 for deeplabv3 (its image-pool BatchNorm)'
    )
    p.add_argument('--crop-size', type=int, default=512)
    p.add_argument('--lr', type=float, default=1.2e-4)
    p.add_argument('--weight-decay', type=float, default=0.01)
    p.add_argument('--poly-power', type=float, default=0.9)
    add_run_arguments(p)
    return p


def _min_batch(segmenter: str) -> int:
    # DeepLabv3's image-pool branch pools each sample to 1x1 before its BatchNorm: one sample gives one value a
    # channel, and BatchNorm cannot train on that; the other heads' BatchNorms see whole maps
    return 2 if segmenter == 'deeplabv3' else 1


def _check_arguments(args) -> None:
    least = (
        ('--epochs', args.epochs, 1),
        ('--batch-size', args.batch_size, _min_batch(args.segmenter)),
        ('--num-classes', args.num_classes, 2),
    )
    reasons = {
        '--batch-size': f' for {args.segmenter} (its image-pool BatchNorm sees one value a sample)',
        '--num-classes': ' (a mask of one class leaves nothing to tell apart: every pixel would be right)',
    }
    for flag, value, minimum in least:
        if value < minimum:
            why = reasons.get(flag, '') if minimum == 2 else ''
            raise ValueError(f'{flag} must be at least {minimum}{why}, got {value}')
    if args.crop_size < 32:
        raise ValueError(f'--crop-size {args.crop_size} is too small: EMO downsamples by 32 and needs at least 32')
    if 0 <= args.ignore_index < args.num_classes:
        raise ValueError(
            f'--ignore-index {args.ignore_index} is a class of --num-classes {args.num_classes}: give a value '
            'outside 0..num_classes-1 (255 for VOC and ADE20K)'
        )
    if args.lr <= 0 or args.poly_power < 0:
        raise ValueError(f'--lr must be positive and --poly-power at least 0, got {args.lr} and {args.poly_power}')
    if not 0 <= args.ignore_index <= 65535:
        raise ValueError(f'--ignore-index must be a mask value, 0..65535, got {args.ignore_index}')


def _read_resume(path: Path, settings: Dict[str, object]) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f'--resume {path} does not exist')
    state = read_run_checkpoint(path, RESUME_KEYS, f'--resume {path}')
    differences = [
        f'{key} {state.get(key)!r} there, {value!r} here' for key, value in settings.items() if state.get(key) != value
    ]
    if differences:
        raise ValueError(
            f'--resume {path} does not continue this run: {"; ".join(differences)}. Resume with the settings it was '
            'trained with, or start a new run in a new --output'
        )
    return state


def _write_metrics(history: List[dict], output: Path) -> None:
    write_csv(output / 'metrics.csv', METRIC_FIELDS, history)
    plt = pyplot()
    epochs = [h['epoch'] for h in history]
    fig, (ax_loss, ax_iou) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h['train_loss'] for h in history], 'o-')
    ax_loss.set(xlabel='epoch', ylabel='loss', title='training loss')
    ax_iou.plot(epochs, [h['val_mIoU'] for h in history], 'o-', label='mIoU')
    ax_iou.plot(epochs, [h['val_aAcc'] for h in history], 'o-', label='pixel accuracy')
    ax_iou.set(xlabel='epoch', ylabel='%', title='validation', ylim=(0, 100))
    ax_iou.legend()
    fig.tight_layout()
    save_png(fig, output / 'metrics.png', dpi=100)


def main(argv: Optional[List[str]] = None) -> Dict[str, float]:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    _check_arguments(args)
    settings = dict(
        arch=args.model,
        segmenter=args.segmenter,
        num_classes=args.num_classes,
        crop_size=args.crop_size,
        ignore_index=args.ignore_index,
        reduce_zero_label=args.reduce_zero_label,
        aux_loss=not args.no_aux and args.segmenter != 'semantic_fpn',
        window_size=resolve_window_size(args.model, args.window_size),
        # what the schedule and the batches of a resumed run depend on (the world size is checked in _train)
        batch_size=args.batch_size,
        lr=args.lr,
        poly_power=args.poly_power,
        seed=args.seed,
    )
    data = dict(num_classes=args.num_classes, ignore_index=args.ignore_index, reduce_zero_label=args.reduce_zero_label)
    # before anything is built: a wrong folder fails fast and clearly
    train_set = SegmentationFolder(
        args.data, args.train_split, transform=train_transform(args.crop_size, args.ignore_index), **data
    )
    val_set = SegmentationFolder(args.data, args.val_split, transform=eval_transform(args.crop_size), **data)
    resume_state = None
    if args.resume:
        resume_state = _read_resume(args.resume, settings)
    resume_epoch = resume_state['epoch'] if resume_state else None
    env = Distributed(args.device)
    try:
        check = functools.partial(check_output, args.output, args.resume, args.exist_ok, resume_epoch, RUN_FILES[:3])
        with own_run_folder(env, args.output, 'emo segment train', check):
            return _train(args, env, settings, train_set, val_set, resume_state)
    finally:
        env.close()


def _train(
    args, env: Distributed, settings: dict, train_set, val_set, resume_state: Optional[dict]
) -> Dict[str, float]:
    output: Path = args.output

    if args.sync_bn and env.device.type != 'cuda':
        raise ValueError('--sync-bn needs CUDA devices (SyncBatchNorm has no CPU implementation); leave it out')
    settings = dict(settings, world_size=env.world_size)
    if resume_state is not None and resume_state.get('world_size') != env.world_size:
        raise ValueError(
            f'--resume {args.resume} ran on {resume_state.get("world_size")} process(es), this run on '
            f'{env.world_size}: the global batch and the data order would differ; resume with as many processes'
        )
    env.run_where(env.main, lambda: prepare_run_folder(output, RUN_FILES, resume_state is None, _logger))
    torch.manual_seed(args.seed)
    model = env.main_first(
        lambda: build_segmenter(
            args.segmenter,
            args.model,
            args.num_classes,
            settings['window_size'],
            settings['aux_loss'],
            pretrained_backbone=args.weights or args.pretrained,
        )
    )
    # validation: whole images of their own sizes, one at a time, as the papers validate
    sampler, train_loader, val_loader = run_loaders(
        env, train_set, val_set, args.batch_size, 1, args.seed, args.workers
    )

    model.to(env.device)
    if args.sync_bn and env.world_size > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]  # norms, biases, layer scales
    optimizer = torch.optim.AdamW(
        [{'params': decay, 'weight_decay': args.weight_decay}, {'params': no_decay, 'weight_decay': 0.0}],
        lr=args.lr,
        betas=(0.9, 0.999),
    )
    total_steps = args.epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(0.0, 1 - step / total_steps) ** args.poly_power
    )
    use_amp = env.device.type == 'cuda' and not args.no_amp
    scaler = NativeScaler() if use_amp else None
    autocast = (lambda: torch.autocast('cuda', dtype=torch.float16)) if use_amp else nullcontext
    ddp_model = model
    if env.world_size > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == 'cuda' else None
        )
    skipped = SkippedImages()

    start_epoch, history, best = 0, [], {'val_mIoU': -1.0, 'epoch': -1}
    if resume_state is not None:
        restore_training(resume_state, model, optimizer, scheduler, scaler)
        start_epoch = resume_state['epoch'] + 1
        history, best = list(resume_state['history']), dict(resume_state['best'])
        # a kill between the checkpoint writes and the metrics leaves them out of step: put them back first
        state = resume_state
        env.run_where(
            env.main, lambda: (restore_best(output, args.resume, state, _logger), _write_metrics(history, output))
        )
        resume_state = state = None
        if env.main:
            _logger.info('resumed from %s: epoch %d of %d done', args.resume, start_epoch, args.epochs)
            if start_epoch >= args.epochs:
                _logger.warning('nothing left to train: raise --epochs above %d to train longer', start_epoch)

    def loss_of(outputs: Dict[str, torch.Tensor], masks: torch.Tensor) -> torch.Tensor:
        # the mean over labelled pixels; 0, not NaN, for a batch whose every pixel is ignored (a NaN step would
        # write NaN into every weight)
        labelled = (masks != args.ignore_index).sum().clamp(min=1)

        def cross_entropy(logits: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits.float(), masks, ignore_index=args.ignore_index, reduction='sum') / labelled

        loss = cross_entropy(outputs['out'])
        if 'aux' in outputs:
            loss = loss + AUX_LOSS_WEIGHT * cross_entropy(outputs['aux'])
        return loss

    def finish_epoch(epoch: int, train_loss: float, epoch_time: float, seen_all: int) -> dict:
        """Evaluate, write the checkpoints and metrics, print the epoch's line: process 0's work."""
        nonlocal best
        metrics = evaluate(
            model, val_loader, env.device, args.num_classes, args.ignore_index, autocast=autocast, skipped=skipped
        )
        row = dict(
            epoch=epoch + 1,
            train_loss=round(train_loss, 6),
            lr=optimizer.param_groups[0]['lr'],
            val_mIoU=round(metrics['mIoU'], 4),
            val_aAcc=round(metrics['aAcc'], 4),
            val_mAcc=round(metrics['mAcc'], 4),
            epoch_time_s=round(epoch_time, 2),
            train_img_per_s=round(seen_all / epoch_time, 1),
        )
        history.append(row)
        is_best = row['val_mIoU'] > best['val_mIoU']
        if is_best:
            best = {'val_mIoU': row['val_mIoU'], 'epoch': epoch + 1}
        state = {
            **settings,
            'epoch': epoch,
            'args': {k: str(v) for k, v in vars(args).items()},
            'state_dict': model.state_dict(),
            'optimizer': optimizer.state_dict(),
            'scheduler': scheduler.state_dict(),
            'scaler': scaler.state_dict() if scaler is not None else {},
            'history': history,
            'best': best,
            'metrics': row,
        }
        save_checkpoints(output, state, is_best)
        _write_metrics(history, output)
        write_per_class_iou(output / 'per_class_iou.csv', metrics['per_class_iou'])
        skipped.write(output / SKIPPED_FILE)
        tqdm.write(
            f'epoch {epoch + 1}: train loss {train_loss:.4f}, val mIoU {row["val_mIoU"]:.2f}, aAcc '
            f'{row["val_aAcc"]:.2f}, mAcc {row["val_mAcc"]:.2f} ({metrics["images"]} images)'
            f'{" (best)" if is_best else ""}',
            file=sys.stderr,
        )
        return row

    result, min_batch, small_batches = {}, _min_batch(args.segmenter), 0
    for epoch in range(start_epoch, args.epochs):
        seed_epoch(args.seed, epoch, env.rank)
        sampler.set_epoch(epoch)
        ddp_model.train()
        start, seen, loss_sum = time.perf_counter(), 0, torch.zeros((), device=env.device)
        progress = epoch_progress(train_loader, epoch, args.epochs, enabled=env.main and not args.no_progress)
        for step, batch in enumerate(progress):
            skipped.add(batch.skipped)
            images, masks = batch.images, batch.targets
            if not trainable_everywhere(env, images, min_batch, step, epoch, _logger, what='sample(s)'):
                scheduler.step()
                small_batches += 1
                continue
            images, masks = images.to(env.device, non_blocking=True), masks.to(env.device, non_blocking=True)
            with autocast():
                loss = loss_of(ddp_model(images), masks)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler(loss, optimizer)
            else:
                loss.backward()
                optimizer.step()
            check_step_finite(env, loss, model, scaler is not None, epoch, step, args.lr)
            scheduler.step()
            loss_sum += loss.detach() * images.shape[0]
            seen += images.shape[0]
            if env.main and step % 5 == 0:
                progress.set_postfix(loss=f'{loss.item():.3f}', lr=f'{optimizer.param_groups[0]["lr"]:.2e}')
        train_loss, seen_all = gather_epoch(env, loss_sum, seen, skipped)
        if seen_all == 0:
            raise ValueError(f'no training sample could be read in epoch {epoch + 1}: nothing was trained')
        epoch_time = time.perf_counter() - start
        row = env.run_where(env.main, functools.partial(finish_epoch, epoch, train_loss, epoch_time, seen_all))
        result = row or result

    finish_run(env, model, skipped, output, _logger, small_batches, min_batch)
    if env.main:
        _logger.info('best mIoU %.2f at epoch %d; checkpoints in %s', best['val_mIoU'], best['epoch'], output)
    return result
