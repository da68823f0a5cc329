"""The ``emo`` command: ``emo zoo`` (variants, measured now) and ``emo predict IMAGE...``."""

import argparse
import sys
from typing import List, Optional

import torch

from .checkpoint import CheckpointError
from .model import WeightsUnavailableError
from .variants import VARIANTS

__all__ = ['main', 'build_parser']


def _cmd_zoo(args: argparse.Namespace) -> int:
    from .zoo import format_table, zoo_rows

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = zoo_rows(runs=args.runs, warmup=args.warmup, show_progress=not args.no_progress)
    print(format_table(rows))
    print(
        f'\nlatency: batch 1, 3x224x224, fp32, eager PyTorch {torch.__version__}, {torch.get_num_threads()} '
        f'CPU threads, median of {args.runs} runs after {args.warmup} warm-up; accuracy: official ImageNet-1k'
    )
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .predict import load_classifier, predict_images

    model = load_classifier(args.model, args.weights)
    results = predict_images(model, args.images, top_k=args.top_k)
    for path, preds in zip(args.images, results):
        print(path)
        for label, prob in preds:
            print(f'  {prob:7.2%}  {label}')
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='emo', description='EMO backbones (ICCV 2023) for timm.')
    sub = parser.add_subparsers(dest='command', required=True)

    zoo = sub.add_parser('zoo', help='table of EMO variants with latency measured on this machine')
    zoo.add_argument('--runs', type=int, default=30, help='timed forward passes per variant (default 30)')
    zoo.add_argument('--warmup', type=int, default=5, help='untimed passes first (default 5)')
    zoo.add_argument('--threads', type=int, default=0, help='CPU threads (default: torch default)')
    zoo.add_argument('--no-progress', action='store_true', help='no progress bar')
    zoo.set_defaults(func=_cmd_zoo)

    predict = sub.add_parser('predict', help='ImageNet top-k labels for images')
    predict.add_argument('images', nargs='+', metavar='IMAGE')
    predict.add_argument('--model', default='emo_2m', choices=sorted(VARIANTS))
    predict.add_argument(
        '--weights',
        default=None,
        metavar='FILE',
        help='checkpoint file (official net.pth or converted); default: the released weights',
    )
    predict.add_argument('--top-k', type=int, default=5)
    predict.set_defaults(func=_cmd_predict)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, 'runs', 1) < 1 or getattr(args, 'top_k', 1) < 1:
        print('emo: error: --runs and --top-k must be at least 1', file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (CheckpointError, WeightsUnavailableError, FileNotFoundError, ValueError) as e:
        print(f'emo {args.command}: error: {e}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
