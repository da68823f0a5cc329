"""``emo yolo``: Ultralytics' ``yolo`` command with emo's layers registered, and ``emo yolo compare``.

``emo yolo train model=yolo11n-sppf-irmb data=data.yaml epochs=100`` takes exactly the arguments of ``yolo train``
(and ``val``, ``predict``, ``export``, ...), runs Ultralytics' own command-line entry point, and only adds what the
plain ``yolo`` command cannot do: the layers are registered before any model is built, and ``model=`` may name a
shipped YAML (``emo.ultralytics.configs()``) without its path.
"""

import argparse
import sys
from pathlib import Path
from typing import List

__all__ = ['main']

_COMPARE_HELP = 'train, validate, export and time YOLO models side by side (emo yolo compare --help)'


def _run_yolo(argv: List[str]) -> int:
    from ultralytics import cfg as ultralytics_cfg

    from ..weights.errors import first_line
    from .configs import shipped_cfg

    args = []
    for arg in argv:
        key, sep, value = arg.partition('=')
        shipped = shipped_cfg(value) if key == 'model' and sep and not Path(value).exists() else None
        args.append(f'model={shipped}' if shipped else arg)
    # Ultralytics' entry point reads sys.argv (the list object its modules share as ARGV); "yolo" first, as its
    # console script has it, for the checks that look at the program name
    sys.argv[:] = ['yolo', *args]
    try:
        ultralytics_cfg.entrypoint()
    except SyntaxError as e:  # Ultralytics' answer to an argument it does not know, with the ones it does
        raise ValueError(first_line(e)) from None
    except RuntimeError as e:
        if isinstance(e.__cause__, OSError):  # a file it could not find or read (data=, model=), said in one line
            raise ValueError(first_line(e)) from None
        raise
    return 0


def _compare_parser() -> argparse.ArgumentParser:
    from .compare import TrainSettings

    d = TrainSettings(data='', epochs=0, imgsz=0)
    p = argparse.ArgumentParser(prog='emo yolo compare', description=_COMPARE_HELP)
    p.add_argument('--data', required=True, help='YOLO data set YAML (train and val splits)')
    p.add_argument(
        '--models', required=True, help='comma-separated: shipped names, Ultralytics models (yolo11n) or YAML files'
    )
    p.add_argument('--epochs', type=int, required=True)
    p.add_argument('--imgsz', type=int, required=True, help='square training, validation and export size')
    p.add_argument('--batch', type=int, default=d.batch)
    p.add_argument('--seed', type=int, default=d.seed)
    p.add_argument('--optimizer', default=d.optimizer, help=f'Ultralytics optimizer name (default {d.optimizer})')
    p.add_argument('--lr0', type=float, default=d.lr0)
    p.add_argument('--device', default=d.device, help='training and validation device (latency is always CPU)')
    p.add_argument('--workers', type=int, default=d.workers)
    p.add_argument('--out-dir', default='yolo-compare', help='runs and results (one run at a time); reruns finish it')
    p.add_argument('--threads', type=int, default=0, help='ONNX Runtime threads for the latency (0: all cores)')
    p.add_argument('--runs', type=int, default=50, help='timed ONNX Runtime calls per model')
    p.add_argument('--warmup', type=int, default=5, help='untimed ONNX Runtime calls per model first (0 or more)')
    return p


def _run_compare(argv: List[str]) -> int:
    from .compare import RESULT_FILES, TrainSettings, compare

    args = _compare_parser().parse_args(argv)
    settings = TrainSettings(
        data=args.data, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, seed=args.seed,
        optimizer=args.optimizer, lr0=args.lr0, device=args.device, workers=args.workers,
    )  # fmt: skip
    models = [m.strip() for m in args.models.split(',') if m.strip()]
    out_dir = Path(args.out_dir)
    compare(models, settings, out_dir, threads=args.threads, runs=args.runs, warmup=args.warmup)
    print((out_dir / 'compare.md').read_text())
    for name in RESULT_FILES:
        print(out_dir / name)
    return 0


def main(argv: List[str]) -> int:
    """``emo yolo ARGS``: ``compare`` is emo's; everything else goes to Ultralytics' ``yolo`` command."""
    if argv and argv[0] == 'compare':
        return _run_compare(argv[1:])
    return _run_yolo(argv)
