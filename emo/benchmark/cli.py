"""``emo bench``: the command line of the benchmark (see :mod:`emo.benchmark`)."""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from .report import format_markdown, write_report
from .runner import DEFAULT_PEERS, DEFAULT_VARIANTS, BenchSettings, run_benchmark

__all__ = ['build_parser', 'main']

DESCRIPTION = 'EMO and EMOv2 against the official arithmetic and their timm peers: latency, ratios, memory'


def _int_list(text: str) -> List[int]:
    try:
        values = [int(v) for v in text.split(',') if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected comma-separated integers, got {text!r}') from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f'expected positive integers, got {text!r}')
    return values


def _name_list(text: str) -> List[str]:
    return [v for v in text.split(',') if v]


def build_parser(prog: str = 'emo bench') -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    p.add_argument(
        '--models',
        type=_name_list,
        default=list(DEFAULT_VARIANTS),
        help=f'EMO / EMOv2 variants (default: those with released 224x224 weights, {",".join(DEFAULT_VARIANTS)})',
    )
    p.add_argument(
        '--peers', type=_name_list, default=list(DEFAULT_PEERS), help='timm models to compare with ("" for none)'
    )
    p.add_argument('--batch-sizes', type=_int_list, default=[1, 32], help='default 1,32')
    p.add_argument('--img-size', type=int, default=224)
    p.add_argument('--threads', type=int, default=2, help='torch and ONNX Runtime intra-op threads (default 2)')
    p.add_argument('--rounds', type=int, default=0, help='timed rounds per batch size (default 30 at batch 1, else 8)')
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--no-onnx', action='store_true', help='skip ONNX Runtime')
    p.add_argument('--no-openvino', action='store_true', help='skip OpenVINO (f32 and int8)')
    p.add_argument('--no-int8', action='store_true', help='skip OpenVINO int8 (NNCF quantization of every model)')
    p.add_argument('--no-memory', action='store_true', help='skip the memory report')
    p.add_argument('--memory-batch', type=int, default=8, help='batch of the memory report (default 8)')
    p.add_argument('--pretrained', action='store_true', help='time the released weights (default: random ones)')
    p.add_argument(
        '--official-code',
        default=None,
        metavar='DIR',
        help='also time the official EMO implementation from a clone of github.com/zhangzjn/EMO (needs einops; '
        'EMOv2 variants are timed against the rebuilt official arithmetic only)',
    )
    p.add_argument(
        '--compile',
        action='store_true',
        help='also time torch.compile (inductor, freezing) of the fused EMO variants and the peers; slow to start',
    )
    p.add_argument('--out-dir', default='benchmark-results', help='where benchmark.{json,md,png} go')
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.img_size < 32 or args.threads < 1 or args.warmup < 0 or args.rounds < 0 or args.memory_batch < 1:
        raise ValueError('--img-size must be at least 32, --threads and --memory-batch at least 1, --rounds >= 0')
    if not args.no_onnx:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            raise ValueError('ONNX Runtime is not installed: pip install onnx onnxruntime, or pass --no-onnx') from None
    if not args.no_openvino:
        from ..deploy.openvino import require_openvino

        try:
            require_openvino(int8=not args.no_int8)
        except ValueError as e:
            raise ValueError(f'{e}, or pass --no-openvino (or --no-int8)') from None
    settings = BenchSettings(
        variants=args.models,
        peers=args.peers,
        batch_sizes=args.batch_sizes,
        img_size=args.img_size,
        threads=args.threads,
        rounds={b: args.rounds for b in args.batch_sizes} if args.rounds else {},
        warmup=args.warmup,
        onnx=not args.no_onnx,
        openvino=not args.no_openvino,
        int8=not (args.no_openvino or args.no_int8),
        memory=not args.no_memory,
        memory_batch=args.memory_batch,
        weights='pretrained' if args.pretrained else None,
        official_code=args.official_code,
        compile=args.compile,
    )
    result = run_benchmark(settings)
    paths = write_report(result, Path(args.out_dir))
    print(format_markdown(result))
    for path in paths.values():
        print(f'wrote {path}')
    print(f'command: emo bench {" ".join(argv if argv is not None else sys.argv[1:])}'.rstrip())
    return 0
