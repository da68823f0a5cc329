"""The ``emo`` command: zoo, predict, convert, push, export, bench, train, validate, segment and yolo."""

import argparse
import os
import sys
from typing import List, Optional

import torch

from ..files import Terminated, sigterm_raises
from ..models.variants import VARIANTS, model_names
from ..weights import CheckpointError, HubUploadError, WeightsUnavailableError

__all__ = ['main', 'build_parser']


def _cmd_zoo(args: argparse.Namespace) -> int:
    from .zoo import format_table, zoo_rows

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = zoo_rows(runs=args.runs, warmup=args.warmup, show_progress=not args.no_progress)
    print(format_table(rows))
    print(
        f'\nlatency: fused model (timm.utils.reparameterize_model), batch 1, at the input size shown, fp32, eager '
        f'PyTorch {torch.__version__}, {torch.get_num_threads()} CPU threads, median of {args.runs} runs after '
        f'{args.warmup} warm-up; accuracy: official ImageNet-1k of the plain weights (.in1k) and of the distilled ones '
        "(.dist_in1k; '-': none released)"
    )
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .predict import load_classifier, predict_images

    missing = [path for path in args.images if not os.path.isfile(path)]
    if missing:  # before the weights: a download must not come first and fail in its own words
        raise FileNotFoundError(f'no image file {", ".join(map(repr, missing))}; give the paths of image files')
    if args.task == 'segment':
        return _predict_segment(args)
    model = load_classifier(args.model, args.weights)
    results = predict_images(model, args.images, top_k=args.top_k)
    for path, preds in zip(args.images, results):
        print(path)
        for label, prob in preds:
            print(f'  {prob:7.2%}  {label}')
    return 0


def _predict_segment(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..segmentation.checkpoint import load_segmenter
    from ..segmentation.predict import overlay_path, predict_masks, write_overlay
    from .predict import open_rgb

    if not args.weights:
        raise ValueError('--task segment needs --weights: the best.pth or last.pth of an emo segment train run')
    outputs = [overlay_path(Path(p)) for p in args.images]
    twice = sorted({str(p) for p in outputs if outputs.count(p) > 1})
    if twice:  # a.jpg and a.png: the second overlay would replace the first
        raise ValueError(f'images with the same name would write the same overlay {", ".join(twice)}: rename one')
    existing = [str(p) for p in outputs if p.exists()]
    if existing and not args.overwrite:  # before any work: a user's file is never replaced unasked
        raise FileExistsError(f'{", ".join(existing)} exist(s); pass --overwrite to replace, or move them')
    model, info = load_segmenter(args.weights)
    num_classes = int(info['num_classes'])
    for path, out in zip(args.images, outputs):
        image = open_rgb(path)
        (mask,) = predict_masks(model, [image], int(info.get('crop_size', 512)))
        write_overlay(image, mask, num_classes, out)
        present = ', '.join(f'{c}: {(mask == c).mean():.1%}' for c in range(num_classes) if (mask == c).any())
        print(f'{path} -> {out}  (class: share of pixels  {present})')
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from ..weights import convert_official

    folder = convert_official(
        args.src, args.out_dir, variant=args.model, repo_id=args.repo_id, overwrite=args.overwrite
    )
    for path in sorted(folder.iterdir()):
        print(f'{path}  ({path.stat().st_size:,} bytes)')
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from ..weights import push_folder

    print(push_folder(args.folder, args.repo_id, token=args.token, private=args.private))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='emo', description='EMO (ICCV 2023) and EMOv2 (TPAMI 2025) backbones for timm.'
    )
    sub = parser.add_subparsers(dest='command', required=True)
    # listed for --help; their own modules parse their arguments (python -m emo.train, torchrun -m emo.train)
    sub.add_parser('train', help='fine-tune on train/ and val/ class folders (emo train --help)', add_help=False)
    sub.add_parser('validate', help='evaluate a checkpoint on class folders (emo validate --help)', add_help=False)
    sub.add_parser(
        'export',
        help='ONNX / OpenVINO / TorchScript / torch.export file of a fused EMO (emo export --help)',
        add_help=False,
    )
    sub.add_parser(
        'bench', help='EMO and EMOv2 vs the official arithmetic and timm peers (emo bench --help)', add_help=False
    )
    sub.add_parser(
        'segment',
        help='DeepLabv3 / FCN / Semantic FPN on EMO: emo segment train | validate | export (emo segment train --help)',
        add_help=False,
    )
    sub.add_parser(
        'yolo',
        help="Ultralytics' yolo command with emo's layers (emo yolo train model=yolo11n-sppf-irmb ...), and "
        'emo yolo compare --help; needs the yolo extra',
        add_help=False,
    )

    zoo = sub.add_parser('zoo', help='table of EMO and EMOv2 variants with latency measured on this machine')
    zoo.add_argument('--runs', type=int, default=30, help='timed forward passes per variant (default 30)')
    zoo.add_argument('--warmup', type=int, default=5, help='untimed passes first (default 5)')
    zoo.add_argument('--threads', type=int, default=0, help='CPU threads (default: torch default)')
    zoo.add_argument('--no-progress', action='store_true', help='no progress bar')
    zoo.set_defaults(func=_cmd_zoo)

    predict = sub.add_parser('predict', help='ImageNet top-k labels for images')
    predict.add_argument('images', nargs='+', metavar='IMAGE')
    predict.add_argument(
        '--model',
        default=None,
        choices=model_names(),
        metavar='MODEL',
        help='a variant (its default weights) or a pretrained tag, e.g. emo2_5m.dist_in1k (default: the model an emo '
        'train checkpoint given as --weights records, else emo_2m)',
    )
    predict.add_argument(
        '--weights',
        default=None,
        metavar='FILE',
        help='checkpoint file (official net.pth / EMOv2_*.pth, or converted); default: the released weights',
    )
    predict.add_argument('--top-k', type=int, default=5)
    predict.add_argument(
        '--task',
        choices=('classify', 'segment'),
        default='classify',
        help='classify: ImageNet top-k; segment: a colour overlay NAME_segment.png next to each image, from the '
        'emo segment train checkpoint given as --weights (which names its model: --model and --top-k do not apply)',
    )
    predict.add_argument('--overwrite', action='store_true', help='segment: replace existing overlay files')
    predict.set_defaults(func=_cmd_predict)

    convert = sub.add_parser('convert', help='turn an official checkpoint into a Hugging Face Hub folder')
    convert.add_argument('src', help='checkpoint file: an official net.pth / EMOv2_*.pth, or any layout emo loads')
    convert.add_argument('out_dir', help='folder to write model.safetensors, config.json and README.md into')
    convert.add_argument(
        '--model', choices=sorted(VARIANTS), default=None, help='variant (default: the one the checkpoint is)'
    )
    convert.add_argument('--repo-id', default=None, help='hub repo id to show in the model card (ORG/NAME)')
    convert.add_argument('--overwrite', action='store_true', help='replace the files of a non-empty OUT_DIR')
    convert.set_defaults(func=_cmd_convert)

    push = sub.add_parser('push', help='upload a converted folder to the Hugging Face Hub')
    push.add_argument('folder')
    push.add_argument('repo_id', help='ORG/NAME, e.g. myorg/emo_2m.in1k')
    push.add_argument('--token', default=None, help='Hub token (default: huggingface_hub login / HF_TOKEN)')
    push.add_argument('--private', action='store_true')
    push.set_defaults(func=_cmd_push)
    return parser


def _error_line(line: str) -> None:
    # one write with its newline (print makes two): the processes of a torchrun job share one stderr, and
    # their lines must not run into each other
    sys.stderr.write(line + '\n')
    sys.stderr.flush()


# commands with a module of their own
_DELEGATED = {
    'train': 'emo.training.train',
    'validate': 'emo.training.validate',
    'export': 'emo.deploy.export',
    'bench': 'emo.benchmark.cli',
    'segment': 'emo.segmentation.cli',
    'yolo': 'emo.ultralytics.cli',
}


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in _DELEGATED:
        import importlib

        command, run = argv[0], lambda: importlib.import_module(_DELEGATED[argv[0]]).main(argv[1:])
    else:
        args = build_parser().parse_args(argv)
        if getattr(args, 'runs', 1) < 1 or getattr(args, 'top_k', 1) < 1:
            print('emo: error: --runs and --top-k must be at least 1', file=sys.stderr)
            return 2
        command, run = args.command, lambda: args.func(args)
    try:
        with sigterm_raises():  # SIGTERM unwinds like Ctrl-C: every temporary file and folder is removed
            run()
    except (CheckpointError, WeightsUnavailableError, HubUploadError, OSError, ValueError) as e:
        _error_line(f'emo {command}: error: {e}')
        return 1
    except ImportError as e:
        if command != 'yolo':
            raise
        _error_line(f'emo {command}: error: {e}')  # the yolo extra missing, or a release it cannot work with
        return 1
    except Terminated:
        _error_line(f'emo {command}: stopped by SIGTERM; files it had finished are intact')
        return Terminated.exit_code
    except KeyboardInterrupt:
        _error_line(f'emo {command}: interrupted; files it had finished are intact')
        return 130
    return 0
