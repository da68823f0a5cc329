"""Export EMO for deployment: ONNX, OpenVINO IR, TorchScript and ``torch.export`` programs (``emo export``).

The model is fused first (``timm.utils.reparameterize_model``: BatchNorm folded into the convs, attention in
token-major layout), unless asked not to; fused layers export as plain convolutions. Every export is checked
after writing: the file is loaded back with its own runtime (ONNX Runtime, ``torch.jit.load``,
``torch.export.load``) and its outputs compared with the PyTorch model's, at the export size and, for dynamic
exports, at a second batch size and image size. Files are written beside their destination and moved into
place only when complete; an existing file is never replaced unless ``overwrite`` is given.
"""

import argparse
import functools
import os
import statistics
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

import torch
import torch.nn as nn

from ..files import atomic_path
from ..models.variants import get_variant, model_names
from ..timing import time_interleaved
from .openvino import CALIBRATION_LIMIT, INT8_CHECK_IMAGES  # openvino itself is imported only when used

__all__ = [
    'ExportCheckError',
    'FORMATS',
    'check_output_file',
    'export_onnx',
    'export_torchscript',
    'export_program',
    'export_model',
    'onnx_latency',
    'onnx_session',
    'main',
]

FORMATS = {'onnx': '.onnx', 'openvino': '.xml', 'torchscript': '.pt', 'program': '.pt2'}
ONNX_OPSET = 17  # LayerNormalization is an ONNX op from 17 on
TOLERANCE = 1e-4


class ExportCheckError(ValueError):
    """An exported file whose outputs do not follow the PyTorch model's: it is not written."""


def check_output_file(
    path: Path, overwrite: bool, example_name: str = 'model.onnx', command: str = 'emo export'
) -> None:
    """Refuse an output that is a folder (no flag makes a file of it) or an existing file without ``overwrite``;
    ``command`` is the one whose ``--overwrite`` the message names."""
    if path.is_dir():
        raise IsADirectoryError(f'{path} is a folder; the output is a file: name one, e.g. -o {path / example_name}')
    if path.exists() and not overwrite:
        raise FileExistsError(f'{path} exists; pass overwrite=True ({command} --overwrite) to replace it')
    if path.parent.exists() and not path.parent.is_dir():
        raise NotADirectoryError(f'{path.parent} is a file, so {path} cannot be written there; choose another path')


@contextmanager
def _atomic_path(path: Path, overwrite: bool) -> Iterator[Path]:
    """The checked ``path``'s :func:`~emo.files.atomic_path`: it becomes ``path`` when the block succeeds."""
    path = Path(path)
    check_output_file(path, overwrite, path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        yield tmp


def _example(batch: int, img_size: Tuple[int, int]) -> torch.Tensor:
    return torch.randn(batch, 3, *img_size, generator=torch.Generator().manual_seed(0))


def _check_sizes(img_size: Tuple[int, int], dynamic: bool) -> List[Tuple[int, int, int]]:
    sizes = [(1, *img_size)]
    if dynamic:
        sizes.append((2, img_size[0] + 32, max(32, img_size[1] - 32)))
    return sizes


def _compare(model: nn.Module, run, sizes) -> Dict[str, float]:
    diffs = {}
    for batch, h, w in sizes:
        x = _example(batch, (h, w))
        with torch.inference_mode():
            expected = model(x)
        got = torch.as_tensor(run(x))
        diffs[f'{batch}x3x{h}x{w}'] = (got - expected).abs().max().item()
    worst = max(diffs.values())
    if not worst <= TOLERANCE:
        raise ExportCheckError(f'the exported model differs from PyTorch by {worst:.3g} (> {TOLERANCE}): {diffs}')
    return diffs


def export_onnx(
    model: nn.Module,
    path,
    img_size=224,
    dynamic: bool = False,
    opset: int = ONNX_OPSET,
    overwrite: bool = False,
    check: bool = True,
) -> Dict[str, float]:
    """Write ``model`` (eval mode) as ONNX; input ``images`` (N, 3, H, W), output ``logits``.

    ``dynamic`` makes batch, height and width dynamic axes (of the input, and of 4-D logits: segmentation). With
    ``check`` the file is run in ONNX Runtime and compared with PyTorch; returns the largest absolute difference
    per checked input shape.
    """
    img_size = _pair(img_size)
    model = model.eval()
    with _atomic_path(Path(path), overwrite) as tmp:
        axes = None
        if dynamic:
            with torch.no_grad():
                spatial = model(_example(1, img_size)).ndim == 4  # dense logits (segmentation) follow the input
            logits_axes = {0: 'batch', **({2: 'height', 3: 'width'} if spatial else {})}
            axes = {'images': {0: 'batch', 2: 'height', 3: 'width'}, 'logits': logits_axes}
        with torch.no_grad(), warnings.catch_warnings():
            # the TorchScript-based exporter, on purpose: it keeps the window padding arithmetic symbolic in H and W
            warnings.filterwarnings('ignore', category=DeprecationWarning)
            torch.onnx.export(
                model,
                (_example(1, img_size),),
                str(tmp),
                input_names=['images'],
                output_names=['logits'],
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,
            )
        if not check:
            return {}
        session = onnx_session(tmp)
        return _compare(model, lambda x: session.run(None, {'images': x.numpy()})[0], _check_sizes(img_size, dynamic))


def export_torchscript(model: nn.Module, path, img_size=224, overwrite: bool = False, check: bool = True):
    """Script ``model`` with TorchScript (shapes stay free) and save it; checked with ``torch.jit.load``."""
    img_size = _pair(img_size)
    scripted = torch.jit.script(model.eval())
    with _atomic_path(Path(path), overwrite) as tmp:
        torch.jit.save(scripted, str(tmp))
        if not check:
            return {}
        loaded = torch.jit.load(str(tmp))
        return _compare(model, loaded, _check_sizes(img_size, True))


def export_program(
    model: nn.Module, path, img_size=224, dynamic: bool = False, overwrite: bool = False, check: bool = True
):
    """Save a ``torch.export`` program (``.pt2``). ``dynamic`` makes the batch size dynamic (from 1 to 1024);
    height and width stay those of the export (the window partition's padding arithmetic does not yet export
    symbolically)."""
    img_size = _pair(img_size)
    model = model.eval()
    dynamic_shapes = {'x': {0: torch.export.Dim('batch', min=1, max=1024)}} if dynamic else None
    # an example batch of 2: torch.export would specialise a batch of 1 to the constant 1
    program = torch.export.export(model, (_example(2 if dynamic else 1, img_size),), dynamic_shapes=dynamic_shapes)
    with _atomic_path(Path(path), overwrite) as tmp:
        torch.export.save(program, str(tmp))
        if not check:
            return {}
        loaded = torch.export.load(str(tmp)).module()
        sizes = [(1, *img_size)] + ([(3, *img_size)] if dynamic else [])
        return _compare(model, loaded, sizes)


def onnx_session(path, threads: int = 0, spinning: bool = True, shape: Optional[Tuple[int, int, int, int]] = None):
    """An ONNX Runtime CPU session with all graph optimisations; ``threads`` intra-op threads (0: all cores).

    ``spinning=False`` stops idle threads from spinning, for sessions that take turns on the same cores. ``shape``
    fixes the dynamic axes of an ``export_onnx(dynamic=True)`` file to one input shape, which lets ONNX Runtime fold
    the shape arithmetic (emo_1m and emo2_1m: 4-13% faster at batch 1).
    """
    ort = _onnxruntime()
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spinning:
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    if shape is not None:
        for axis, size in zip(('batch', None, 'height', 'width'), shape):
            if axis is not None:
                options.add_free_dimension_override_by_name(axis, size)
    return ort.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])


def onnx_latency(path, img_size=224, batch: int = 1, threads: int = 0, runs: int = 50, warmup: int = 5) -> float:
    """Median milliseconds of one ONNX Runtime call (CPU, all graph optimisations)."""
    session = onnx_session(path, threads)
    x = _example(batch, _pair(img_size)).numpy()
    times = time_interleaved({'onnx': functools.partial(session.run, None, {'images': x})}, runs, warmup)['onnx']
    return statistics.median(times)


def export_model(
    fmt: str,
    model_name: str,
    output=None,
    weights=True,
    img_size=224,
    dynamic: bool = False,
    fuse: bool = True,
    overwrite: bool = False,
    calibrate: Optional[Union[str, os.PathLike]] = None,
    calibration_images: int = CALIBRATION_LIMIT,
    log: Callable[[str], None] = print,
) -> Tuple[Path, Dict]:
    """Build ``model_name`` with ``weights`` (True: the released ones, False: random, or a checkpoint path),
    fuse it, export it as ``fmt`` ('onnx', 'openvino', 'torchscript' or 'program') and check the file.

    ``calibrate`` (a folder of images, OpenVINO only) makes the IR int8, calibrated on up to ``calibration_images``
    of them; ``log`` hears how many were used and skipped."""
    from timm.utils import reparameterize_model

    from ..weights import create_with_weights

    if fmt not in FORMATS:
        raise ValueError(f'unknown export format {fmt!r}; choose one of {sorted(FORMATS)}')
    if calibrate is not None and fmt != 'openvino':
        raise ValueError('int8 calibration (--int8 --calibrate DIR) is for the openvino format')
    default = f'{model_name}{"_int8" if calibrate is not None else ""}{FORMATS[fmt]}'
    path = Path(output) if output else Path(default)
    # before minutes of export, not after
    if fmt == 'openvino':
        from .openvino import check_calibration_folder, check_ir_outputs, require_openvino

        require_openvino(int8=calibrate is not None)
        path = check_ir_outputs(path, overwrite)[0]
        if calibrate is not None:
            check_calibration_folder(calibrate)
    else:
        check_output_file(path, overwrite, default)
    model = create_with_weights(model_name, weights).eval()
    if fmt == 'openvino':
        from .openvino import weights_source

        source = weights_source(model, weights)  # recorded in the IR: emo validate --openvino matches it
    if fuse:
        model = reparameterize_model(model)
    if fmt == 'openvino':
        from .openvino import calibration_images as read_calibration
        from .openvino import export_openvino

        images = held_out = None
        if calibrate is not None:
            # images beyond the calibration set check the int8 IR on what it was not calibrated on
            found, skipped = read_calibration(calibrate, model, _pair(img_size), calibration_images + INT8_CHECK_IMAGES)
            images, held_out = found[:calibration_images], found[calibration_images:]
            more = ' ...' if len(skipped) > 3 else ''
            note = f'; skipped {len(skipped)} unreadable: {", ".join(skipped[:3])}{more}' if skipped else ''
            log(f'calibrating int8 on {len(images)} image(s) from {calibrate}{note}')
        diffs = export_openvino(
            model,
            path,
            img_size,
            dynamic=dynamic,
            calibration=images,
            check_images=held_out,
            overwrite=overwrite,
            source=source,
        )
    elif fmt == 'onnx':
        diffs = export_onnx(model, path, img_size, dynamic=dynamic, overwrite=overwrite)
    elif fmt == 'torchscript':
        diffs = export_torchscript(model, path, img_size, overwrite=overwrite)
    else:
        diffs = export_program(model, path, img_size, dynamic=dynamic, overwrite=overwrite)
    return path, diffs


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ValueError(
            'checking an ONNX export needs ONNX Runtime: pip install "emo[export]" (onnx and onnxruntime)'
        ) from None
    return onnxruntime


def _pair(size) -> Tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 32 or w < 32:
        raise ValueError(f'image size {h}x{w} is too small: EMO needs at least 32x32')
    return int(h), int(w)


def build_parser(prog: str = 'emo export') -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description='Export a fused EMO or EMOv2 as ONNX, OpenVINO IR (f32 or int8), TorchScript or torch.export.',
    )
    p.add_argument(
        'format',
        choices=sorted(FORMATS),
        help='onnx, openvino (IR .xml + .bin), torchscript (.pt) or program (torch.export .pt2)',
    )
    p.add_argument(
        '--model',
        default='emo_2m',
        choices=model_names(),
        metavar='MODEL',
        help='a variant or a pretrained tag, e.g. emo2_1m.dist_in1k (default emo_2m)',
    )
    p.add_argument('--weights', default=None, metavar='FILE', help='checkpoint (default: the released weights)')
    p.add_argument('--random-weights', action='store_true', help='export untrained weights (no download)')
    p.add_argument(
        '--output',
        '-o',
        default=None,
        help='file to write (default: MODEL.onnx / .xml / .pt / .pt2; int8: MODEL_int8.xml)',
    )
    p.add_argument(
        '--img-size',
        type=int,
        nargs='+',
        default=None,
        metavar='N',
        help="H [W] (default: an emo train checkpoint's training size, else the model's: 224 or 512)",
    )
    p.add_argument(
        '--dynamic', action='store_true', help='dynamic batch (and, for ONNX and OpenVINO, height and width)'
    )
    p.add_argument('--no-fuse', action='store_true', help='export the model as trained, BatchNorm unfolded')
    p.add_argument('--overwrite', action='store_true', help='replace an existing output file')
    p.add_argument(
        '--threads', type=int, default=0, help='ONNX Runtime / OpenVINO threads for the latency (default: all)'
    )
    p.add_argument(
        '--int8', action='store_true', help='openvino: int8 post-training quantization (NNCF); needs --calibrate'
    )
    p.add_argument(
        '--calibrate', default=None, metavar='DIR', help='images to calibrate int8 with (any depth below DIR)'
    )
    p.add_argument(
        '--calibration-images',
        type=int,
        default=CALIBRATION_LIMIT,
        metavar='N',
        help=f'use at most N calibration images (default {CALIBRATION_LIMIT})',
    )
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.weights and args.random_weights:
        raise ValueError('--weights and --random-weights exclude each other')
    if args.img_size is None:
        args.img_size = [(args.weights and _trained_size(args.weights)) or get_variant(args.model).img_size]
    if len(args.img_size) > 2:
        raise ValueError(f'--img-size takes H or H W, got {args.img_size}')
    if args.int8 != (args.calibrate is not None):
        raise ValueError('--int8 and --calibrate DIR go together: int8 needs images to calibrate its ranges on')
    if args.int8 and args.format != 'openvino':
        raise ValueError(f'--int8 is for the openvino format, not {args.format}')
    if args.calibration_images < 1 or args.threads < 0:
        raise ValueError('--calibration-images must be at least 1, --threads at least 0 (0: all cores)')
    weights = args.weights or (False if args.random_weights else True)
    size = _pair(args.img_size if len(args.img_size) == 2 else args.img_size[0])
    path, diffs = export_model(
        args.format,
        args.model,
        args.output,
        weights,
        size,
        args.dynamic,
        not args.no_fuse,
        args.overwrite,
        calibrate=args.calibrate,
        calibration_images=args.calibration_images,
    )
    if args.format == 'openvino':
        _report_openvino(path, diffs, size, args.threads, args.dynamic)
        return 0
    print(f'wrote {path} ({path.stat().st_size / 2**20:.2f} MiB)')
    for shape, diff in diffs.items():
        print(f'  max |exported - PyTorch| at {shape}: {diff:.2e}')
    if args.format == 'onnx':
        ms = onnx_latency(path, size, threads=args.threads)
        print(f'  ONNX Runtime latency, batch 1, {size[0]}x{size[1]}: {ms:.2f} ms (median of 50)')
    return 0


def _trained_size(weights: str) -> Optional[int]:
    """The image size an ``emo train`` checkpoint was trained at (None for other files)."""
    from ..weights import read_checkpoint

    state = read_checkpoint(weights)
    size = state.get('img_size') if isinstance(state, dict) else None
    return int(size) if size else None


def _report_openvino(path: Path, checks: Dict, size: Tuple[int, int], threads: int, dynamic: bool) -> None:
    from .openvino import compile_ir, ir_paths, openvino_latency

    xml, bin_ = ir_paths(path)
    print(f'wrote {xml} and {bin_.name} ({(xml.stat().st_size + bin_.stat().st_size) / 2**20:.2f} MiB)')
    for shape, c in checks.items():
        print(
            f'  at {shape}: max |IR - PyTorch| {c["max_abs_diff"]:.2e}, logit cosine {c["cosine"]:.6f}, '
            f'top-1 agreement {c["top1_agreement"]:.0%}'
        )
    compiled = compile_ir(xml, threads, shape=(1, 3, *size) if dynamic else None)
    ms = openvino_latency(compiled, size)
    print(f'  OpenVINO latency, batch 1, {size[0]}x{size[1]}: {ms:.2f} ms (median of 50; float parts run in f32)')
