"""``emo segment export``: the segmenter of an ``emo segment train`` checkpoint as ONNX, checked in ONNX Runtime."""

import argparse
from pathlib import Path
from typing import List, Optional

from ..deploy.export import check_output_file, export_onnx
from .checkpoint import load_segmenter
from .models import SegmentationLogits

__all__ = ['main', 'build_parser']


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='emo segment export', description='Export the segmenter of a checkpoint as ONNX (logits at input size).'
    )
    p.add_argument('--checkpoint', required=True, type=Path, help='best.pth / last.pth of emo segment train')
    p.add_argument('--output', '-o', required=True, type=Path, help='the .onnx file to write')
    p.add_argument('--img-size', type=int, nargs='+', default=None, metavar='N', help='H [W]; default the crop size')
    p.add_argument('--dynamic', action='store_true', help='dynamic batch, height and width')
    p.add_argument('--overwrite', action='store_true', help='replace an existing output file')
    return p


def main(argv: Optional[List[str]] = None) -> int:
    """Write the checkpoint's model (without its auxiliary head) as ONNX, checked against PyTorch within 1e-4."""
    args = build_parser().parse_args(argv)
    if not args.checkpoint.is_file():
        raise FileNotFoundError(f'--checkpoint {args.checkpoint} does not exist')
    if args.img_size is not None and len(args.img_size) > 2:
        raise ValueError(f'--img-size takes H or H W, got {args.img_size}')
    # before the checkpoint is read and the model built
    check_output_file(args.output, args.overwrite, command='emo segment export')
    model, info = load_segmenter(args.checkpoint)
    size = args.img_size or [int(info.get('crop_size', 512))]
    size = tuple(size) if len(size) == 2 else size[0]
    diffs = export_onnx(SegmentationLogits(model), args.output, size, dynamic=args.dynamic, overwrite=args.overwrite)
    print(f'wrote {args.output} ({args.output.stat().st_size / 2**20:.2f} MiB)')
    for shape, diff in diffs.items():
        print(f'  max |exported - PyTorch| at {shape}: {diff:.2e}')
    return 0
