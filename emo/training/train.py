"""Fine-tune an EMO on ImageNet-style folders, on one process or many (``torchrun --nproc_per_node=N -m emo.train``).

Built from timm's training pieces: ``create_transform``, ``Mixup``, ``create_optimizer_v2`` (layer decay
through the model's ``group_matcher``), ``create_scheduler_v2``, ``ModelEmaV3``, ``NativeScaler`` and
``accuracy``. Three pieces are this project's own, on purpose:

* the sampler is a ``DistributedSampler`` in every run, one process included, so that a run on N processes sees
  the same global batches as one process, and a resumed run the same batches as an uninterrupted one;
* checkpoints are written to a temporary file and renamed over ``last.pth`` / ``best.pth`` (timm's
  ``CheckpointSaver`` deletes the old file before renaming, so a kill at that moment leaves none), and they hold
  everything a resume needs: model, EMA, optimizer, scheduler, AMP scaler and epoch (random number generators are
  seeded from the seed, the epoch and the rank at the start of every epoch, so they need no saving);
* the folder indexing (:class:`emo.training.data.SkippingImageFolder`): every image the folder checks count, with its
  class folder's label, and unreadable ones dropped from their batches.

What a run will not do (docs/reliability.md): write into a folder that holds another run unless told to
(``--resume`` from it, or ``--exist-ok``), resume from a checkpoint of another model, class list or image size,
train on a single class, or count an unreadable image (it is dropped from its batch and listed).

Defaults follow the official ImageNet recipe (AdamW, lr 6e-3 at batch 2048 scaled linearly to the global batch,
weight decay 0.05, cosine schedule with 20/300 of the epochs as warm-up, EMA 0.9998, label smoothing 0.1,
RandAugment, no mixup/cutmix, gradient clipping 5), with AMP on CUDA.
"""

import argparse
import functools
import logging
import math
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from timm.data import Mixup, create_transform, resolve_data_config
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.models import get_pretrained_cfg
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, NativeScaler
from tqdm import tqdm

from ..files import pyplot, save_png
from ..models.variants import get_variant, model_names
from ..weights import CheckpointError, create_with_weights, read_checkpoint
from .data import SKIPPED_FILE, SkippedImages, SkippingImageFolder, check_image_folders
from .distributed import Distributed
from .evaluate import evaluate
from .runs import (
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

__all__ = ['main', 'build_parser', 'RUN_FILES']

_logger = logging.getLogger('emo.train')
# what a run folder holds; the first three are the run itself, which a new run must not overwrite unasked
RUN_FILES = ('last.pth', 'best.pth', 'metrics.csv', 'metrics.png', SKIPPED_FILE)
# what --resume needs from a checkpoint: emo train writes all of them
RESUME_KEYS = ('arch', 'epoch', 'class_names', 'img_size', 'state_dict', 'optimizer', 'scheduler', 'history', 'best')
METRIC_FIELDS = ['epoch', 'train_loss', 'lr', 'val_loss', 'val_top1', 'val_top5', 'epoch_time_s', 'train_img_per_s']


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='emo train', description='Fine-tune an EMO on train/ and val/ class folders.')
    p.add_argument('--data', required=True, type=Path, help='folder with train/CLASS/*.jpg and val/CLASS/*.jpg')
    p.add_argument('--train-split', default='train')
    p.add_argument('--val-split', default='val')
    p.add_argument(
        '--model',
        default='emo_2m',
        choices=model_names(),
        metavar='MODEL',
        help='a variant, or a tag whose weights --pretrained starts from (emo2_1m.dist_in1k); default emo_2m',
    )
    p.add_argument('--pretrained', action='store_true', help='start from the released ImageNet weights')
    p.add_argument('--weights', default=None, help='start from this checkpoint file instead (implies --pretrained)')
    p.add_argument('--epochs', type=int, default=30)
    p.add_argument('--batch-size', type=int, default=128, help='per process')
    p.add_argument('--img-size', type=int, default=None, help='train/eval size (default: the model cfg, 224)')
    p.add_argument('--lr', type=float, default=None, help='default: 6e-3 * global batch / 2048 (official recipe)')
    p.add_argument('--weight-decay', type=float, default=0.05)
    p.add_argument('--layer-decay', type=float, default=None, help='layer-wise lr decay, e.g. 0.8')
    p.add_argument('--warmup-epochs', type=float, default=None, help='default: epochs * 20 / 300')
    p.add_argument('--min-lr', type=float, default=1e-6)
    p.add_argument('--smoothing', type=float, default=0.1)
    p.add_argument('--mixup', type=float, default=0.0)
    p.add_argument('--cutmix', type=float, default=0.0)
    p.add_argument('--aa', default='rand-m9-mstd0.5-inc1', help="RandAugment policy, 'none' for none")
    p.add_argument('--no-aug', action='store_true', help='train on eval-style crops (no random augmentation)')
    p.add_argument('--drop-path', type=float, default=None, help="default: the variant's official rate")
    p.add_argument('--clip-grad', type=float, default=5.0)
    p.add_argument('--ema-decay', type=float, default=0.9998, help='0 disables the EMA')
    p.add_argument('--freeze-bn', action='store_true', help='keep BatchNorm statistics fixed (small batches)')
    add_run_arguments(p)
    return p


def _write_metrics(history: List[dict], output: Path) -> None:
    write_csv(output / 'metrics.csv', METRIC_FIELDS, history)
    _plot_metrics(history, output / 'metrics.png')


def _plot_metrics(history: List[dict], path: Path) -> None:
    plt = pyplot()

    epochs = [h['epoch'] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h['train_loss'] for h in history], 'o-', label='train')
    ax_loss.plot(epochs, [h['val_loss'] for h in history], 'o-', label='validation')
    ax_loss.set(xlabel='epoch', ylabel='loss', title='loss')
    ax_loss.legend()
    ax_acc.plot(epochs, [h['val_top1'] for h in history], 'o-', label='top-1')
    ax_acc.plot(epochs, [h['val_top5'] for h in history], 'o-', label='top-5')
    ax_acc.set(xlabel='epoch', ylabel='accuracy (%)', title='validation accuracy', ylim=(0, 100))
    ax_acc.legend()
    fig.tight_layout()
    save_png(fig, path, dpi=100)


def _freeze_bn(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def main(argv: Optional[List[str]] = None) -> Dict[str, float]:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    for flag, value, least in (('--epochs', args.epochs, 1), ('--batch-size', args.batch_size, 1)):
        if value < least:
            raise ValueError(f'{flag} must be at least {least}, got {value}')
    if args.batch_size < 2 and not args.freeze_bn:
        raise ValueError(
            '--batch-size 1 cannot train BatchNorm (it needs two samples a channel): use at least 2, or pass '
            '--freeze-bn to keep its statistics fixed'
        )
    if args.img_size is not None and args.img_size < 32:
        raise ValueError(f'--img-size {args.img_size} is too small: EMO downsamples by 32 and needs at least 32')
    train_dir, val_dir = args.data / args.train_split, args.data / args.val_split
    class_names = check_image_folders(train_dir, val_dir)  # before anything is built: fail fast and clearly
    img_size = args.img_size or get_pretrained_cfg(args.model).input_size[-1]
    resume_state = _read_resume(args.resume, args.model, class_names, img_size) if args.resume else None
    resume_epoch = resume_state['epoch'] if resume_state else None
    env = Distributed(args.device)
    try:
        check = functools.partial(check_output, args.output, args.resume, args.exist_ok, resume_epoch, RUN_FILES[:3])
        with own_run_folder(env, args.output, 'emo train', check):
            return _train(args, env, train_dir, val_dir, class_names, resume_state)
    finally:
        env.close()


def _read_resume(path: Path, model: str, class_names: List[str], img_size: int) -> dict:
    """The checkpoint of ``--resume``, if it continues this run: same model, classes in the same order, image size."""
    if not path.is_file():
        raise FileNotFoundError(f'--resume {path} does not exist')
    state = read_checkpoint(path)
    missing = [key for key in RESUME_KEYS if key not in state]
    if missing:
        raise CheckpointError(
            f'--resume {path} is not a checkpoint of emo train (it has no {", ".join(missing)}): to start from its '
            f'weights, pass --weights {path} instead'
        )
    differences = []
    if state['arch'] != model:
        differences.append(f'it trained {state["arch"]}, this run --model {model}')
    saved = [str(c) for c in state['class_names']]
    if len(saved) != len(class_names):
        differences.append(f'it has {len(saved)} classes, the data {len(class_names)}')
    elif saved != class_names:
        same_set = sorted(saved) == sorted(class_names)
        first = next(i for i, (a, b) in enumerate(zip(saved, class_names)) if a != b)
        differences.append(
            f'its classes are {"the same but in another order" if same_set else "other ones"} '
            f'(class {first} is {saved[first]!r} there, {class_names[first]!r} in the data)'
        )
    if int(state['img_size']) != img_size:
        differences.append(f'it trained at --img-size {state["img_size"]}, this run at {img_size}')
    if differences:
        raise ValueError(
            f'--resume {path} does not continue this run: {"; ".join(differences)}. Resume with the model, data '
            'and image size it was trained with, or start a new run in a new --output'
        )
    return state


def _train(
    args, env: Distributed, train_dir: Path, val_dir: Path, class_names: List[str], resume_state: Optional[dict]
) -> Dict[str, float]:
    output: Path = args.output

    # an earlier run's skipped list is not this run's (a resume's is rewritten each epoch)
    env.run_where(env.main, lambda: prepare_run_folder(output, RUN_FILES, resume_state is None, _logger))
    torch.manual_seed(args.seed)

    drop_path = get_variant(args.model).drop_path_rate if args.drop_path is None else args.drop_path
    model = env.main_first(
        lambda: create_with_weights(
            args.model, args.weights or args.pretrained, num_classes=len(class_names), drop_path_rate=drop_path
        )
    )
    data_cfg = resolve_data_config(model=model)
    if args.img_size:
        data_cfg['input_size'] = (3, args.img_size, args.img_size)
    aa = None if args.no_aug or args.aa == 'none' else args.aa
    train_tf = create_transform(**data_cfg, is_training=not args.no_aug, auto_augment=aa)
    eval_tf = create_transform(**data_cfg, is_training=False)
    class_map = {c: i for i, c in enumerate(class_names)}  # one numbering for both splits and the checkpoint
    train_set = SkippingImageFolder(train_dir, train_tf, class_map=class_map)
    val_set = SkippingImageFolder(val_dir, eval_tf, class_map=class_map)
    skipped = SkippedImages()
    sampler, train_loader, val_loader = run_loaders(
        env, train_set, val_set, args.batch_size, args.batch_size, args.seed, args.workers
    )
    global_batch = args.batch_size * env.world_size

    model.to(env.device)
    if args.sync_bn and env.world_size > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    lr = args.lr if args.lr is not None else 6e-3 * global_batch / 2048
    optimizer = create_optimizer_v2(model, 'adamw', lr=lr, weight_decay=args.weight_decay, layer_decay=args.layer_decay)
    warmup = args.warmup_epochs if args.warmup_epochs is not None else args.epochs * 20 / 300
    scheduler, _ = create_scheduler_v2(
        optimizer,
        'cosine',
        num_epochs=args.epochs,
        warmup_epochs=math.ceil(warmup),
        warmup_lr=min(1e-6, lr),
        min_lr=min(args.min_lr, lr),
        step_on_epochs=False,
        updates_per_epoch=len(train_loader),
    )
    ema = ModelEmaV3(model, decay=args.ema_decay, use_warmup=True) if args.ema_decay > 0 else None
    use_amp = env.device.type == 'cuda' and not args.no_amp
    scaler = NativeScaler() if use_amp else None
    autocast = (lambda: torch.autocast('cuda', dtype=torch.float16)) if use_amp else nullcontext
    mixup = None
    if args.mixup > 0 or args.cutmix > 0:
        mixup = Mixup(
            mixup_alpha=args.mixup,
            cutmix_alpha=args.cutmix,
            label_smoothing=args.smoothing,
            num_classes=len(class_names),
        )
    train_loss_fn = SoftTargetCrossEntropy() if mixup else LabelSmoothingCrossEntropy(args.smoothing)
    ddp_model = model
    if env.world_size > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[env.device.index] if env.device.type == 'cuda' else None
        )

    start_epoch, history, best = 0, [], {'val_top1': -1.0, 'epoch': -1}
    if resume_state is not None:
        state = resume_state
        restore_training(state, model, optimizer, scheduler, scaler)
        if ema is not None and 'state_dict_ema' in state:
            ema.module.load_state_dict(state['state_dict_ema'])
        start_epoch, history, best = state['epoch'] + 1, list(state['history']), dict(state['best'])
        # a kill between the checkpoint writes and the metrics leaves them out of step: put them back first
        env.run_where(
            env.main, lambda: (restore_best(output, args.resume, state, _logger), _write_metrics(history, output))
        )
        del state, resume_state
        if env.main:
            _logger.info('resumed from %s: epoch %d of %d done', args.resume, start_epoch, args.epochs)
            if start_epoch >= args.epochs:
                _logger.warning('nothing left to train: raise --epochs above %d to train longer', start_epoch)

    def finish_epoch(epoch: int, train_loss: float, epoch_time: float, seen_all: int) -> dict:
        """Evaluate, write the checkpoints and metrics, print the epoch's line: process 0's work."""
        nonlocal best
        eval_model = ema.module if ema is not None else model
        metrics = evaluate(eval_model, val_loader, env.device, len(class_names), autocast=autocast, skipped=skipped)
        row = dict(
            epoch=epoch + 1,
            train_loss=round(train_loss, 6),
            lr=optimizer.param_groups[0]['lr'],
            val_loss=round(metrics['loss'], 6),
            val_top1=round(metrics['top1'], 4),
            val_top5=round(metrics['top5'], 4),
            epoch_time_s=round(epoch_time, 2),
            train_img_per_s=round(seen_all / epoch_time, 1),
        )
        history.append(row)
        is_best = row['val_top1'] > best['val_top1']
        if is_best:
            best = {'val_top1': row['val_top1'], 'epoch': epoch + 1}
        state = {
            'arch': args.model,
            'epoch': epoch,
            'class_names': class_names,
            'img_size': data_cfg['input_size'][-1],
            'args': {k: str(v) for k, v in vars(args).items()},
            'state_dict': model.state_dict(),
            'optimizer': optimizer.state_dict(),
            'scheduler': scheduler.state_dict(),
            'scaler': scaler.state_dict() if scaler is not None else {},
            'history': history,
            'best': best,
            'metrics': row,
        }
        if ema is not None:
            state['state_dict_ema'] = ema.module.state_dict()
        save_checkpoints(output, state, is_best)
        _write_metrics(history, output)
        skipped.write(output / SKIPPED_FILE)
        tqdm.write(
            f'epoch {epoch + 1}: train loss {train_loss:.4f}, val loss {row["val_loss"]:.4f}, '
            f'top-1 {row["val_top1"]:.2f}, top-5 {row["val_top5"]:.2f}'
            f'{" (best)" if is_best else ""}',
            file=sys.stderr,
        )
        return row

    num_updates = start_epoch * len(train_loader)
    result = {}
    # BatchNorm in training mode needs two samples a channel; with --freeze-bn it only reads its statistics
    min_batch, small_batches = (1 if args.freeze_bn else 2), 0
    for epoch in range(start_epoch, args.epochs):
        seed_epoch(args.seed, epoch, env.rank)
        sampler.set_epoch(epoch)
        ddp_model.train()
        if args.freeze_bn:
            _freeze_bn(ddp_model)
        start, seen, loss_sum = time.perf_counter(), 0, torch.zeros((), device=env.device)
        progress = epoch_progress(train_loader, epoch, args.epochs, enabled=env.main and not args.no_progress)
        for step, batch in enumerate(progress):
            skipped.add(batch.skipped)
            images, targets = batch.images, batch.targets
            if images is not None and mixup is not None and len(images) % 2:  # timm's Mixup pairs the images
                images, targets = (images[:-1], targets[:-1]) if len(images) > 1 else (None, None)
            if not trainable_everywhere(env, images, min_batch, step, epoch, _logger):
                num_updates += 1
                scheduler.step_update(num_updates)
                small_batches += 1
                continue
            images, targets = images.to(env.device, non_blocking=True), targets.to(env.device, non_blocking=True)
            if mixup is not None:
                images, targets = mixup(images, targets)
            with autocast():
                loss = train_loss_fn(ddp_model(images), targets)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler(loss, optimizer, clip_grad=args.clip_grad, parameters=model.parameters())
            else:
                loss.backward()
                if args.clip_grad:
                    nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad)
                optimizer.step()
            check_step_finite(env, loss, model, scaler is not None, epoch, step, lr)
            num_updates += 1
            scheduler.step_update(num_updates)
            if ema is not None:
                ema.update(model, step=num_updates)
            loss_sum += loss.detach() * images.shape[0]
            seen += images.shape[0]
            if env.main and step % 5 == 0:
                rate = seen * env.world_size / (time.perf_counter() - start)  # shown while running: an estimate
                progress.set_postfix(
                    loss=f'{loss.item():.3f}', lr=f'{optimizer.param_groups[0]["lr"]:.2e}', img_s=f'{rate:.0f}'
                )
        train_loss, seen_all = gather_epoch(env, loss_sum, seen, skipped)
        if seen_all == 0:
            raise ValueError(f'no image of {train_dir} could be read in epoch {epoch + 1}: nothing was trained')
        epoch_time = time.perf_counter() - start

        # process 0 evaluates and writes; the others wait for its word
        row = env.run_where(env.main, functools.partial(finish_epoch, epoch, train_loss, epoch_time, seen_all))
        result = row or result

    finish_run(env, model, skipped, output, _logger, small_batches, min_batch)
    if env.main:
        _logger.info('best top-1 %.2f at epoch %d; checkpoints in %s', best['val_top1'], best['epoch'], output)
    return result
