"""``emo segment validate``: mIoU, pixel accuracy, mAcc and per-class IoU of an ``emo segment train`` checkpoint."""

import argparse
import os
from pathlib import Path
from typing import Dict, List, Optional

import torch

from ..training.data import SkippedImages, readable_loader
from ..training.distributed import resolve_device
from .checkpoint import load_segmenter
from .data import SegmentationFolder, eval_transform
from .evaluate import evaluate
from .metrics import write_per_class_iou

__all__ = ['main', 'build_parser', 'PER_CLASS_FILE', 'SKIPPED_FILE']

# not the training run's names: validate writes beside the checkpoint by default, where the run keeps its own
PER_CLASS_FILE = 'validate_per_class_iou.csv'
SKIPPED_FILE = 'validate_skipped_images.txt'


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='emo segment validate', description='Evaluate a checkpoint on images/SPLIT with annotations/SPLIT.'
    )
    p.add_argument('--data', required=True, type=Path, help='folder with images/ and annotations/ (ADE20K layout)')
    p.add_argument('--split', default='validation', help='default: validation (ADE20K)')
    p.add_argument('--checkpoint', required=True, type=Path, help='best.pth / last.pth of emo segment train')
    p.add_argument('--img-size', type=int, default=None, help="shorter image side; default the run's crop size")
    p.add_argument('--workers', type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument('--device', default=None, help='default: cuda if available, else cpu')
    p.add_argument('--output', type=Path, default=None, help="where the CSV goes (default: the checkpoint's folder)")
    return p


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    args = build_parser().parse_args(argv)
    if not args.checkpoint.is_file():
        raise FileNotFoundError(f'--checkpoint {args.checkpoint} does not exist')
    if args.img_size is not None and args.img_size < 32:
        raise ValueError(f'--img-size {args.img_size} is too small: EMO downsamples by 32 and needs at least 32')
    device = torch.device(resolve_device(args.device))
    model, info = load_segmenter(args.checkpoint)
    num_classes, ignore_index = int(info['num_classes']), int(info.get('ignore_index', 255))
    dataset = SegmentationFolder(
        args.data,
        args.split,
        num_classes,
        transform=eval_transform(args.img_size or int(info.get('crop_size', 512))),
        ignore_index=ignore_index,
        reduce_zero_label=bool(info.get('reduce_zero_label', False)),
    )
    loader = readable_loader(dataset, batch_size=1, shuffle=False, num_workers=args.workers)
    skipped = SkippedImages()
    metrics = evaluate(model.to(device), loader, device, num_classes, ignore_index, skipped=skipped, progress=True)
    metrics['skipped'] = len(skipped)
    output = args.output or args.checkpoint.parent
    output.mkdir(parents=True, exist_ok=True)
    write_per_class_iou(output / PER_CLASS_FILE, metrics['per_class_iou'])
    skipped.write(output / SKIPPED_FILE)
    print(
        f'{args.checkpoint}: mIoU {metrics["mIoU"]:.2f}  aAcc {metrics["aAcc"]:.2f}  mAcc {metrics["mAcc"]:.2f}  '
        f'({metrics["images"]} images, {metrics["classes_present"]} of {num_classes} classes present; per-class IoU '
        f'in {output / PER_CLASS_FILE})'
    )
    if skipped:
        print(
            f'skipped {len(skipped)} unreadable sample(s), left out of every number above and listed in '
            f'{output / SKIPPED_FILE}'
        )
    return metrics
