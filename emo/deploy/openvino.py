"""OpenVINO IR of a fused EMO or EMOv2 (``emo export openvino``): f32, or int8 by NNCF post-training quantization.

The model goes through this package's ONNX graph (:func:`emo.deploy.export.export_onnx`, dynamic batch, height
and width), is converted with ``openvino.convert_model`` and, unless ``dynamic``, fixed to one input shape,
which lets OpenVINO fold the window arithmetic at compile time (a dynamic emo_1m ran 1.35x slower at batch 1).
Every IR is read back from its files and checked against PyTorch: f32 within 1e-4 at the export size and, on the
same graph (for a fixed-shape IR, before its shape was fixed), at a second batch and size; int8 by the cosine
similarity and top-1 agreement of its logits on images it was not calibrated on (a warning says when there were none
and the check ran on calibration images, or when it ran on one image).

Every IR records what it was exported from, as OpenVINO runtime info under ``emo`` (:data:`RECORD_KEYS`, read back by
:func:`read_record`): the architecture, the weights (a checkpoint's sha256, 'random', or the released tag), the class
count and the image size, so that ``emo validate --openvino`` evaluates an IR only against the checkpoint it was
exported from (:func:`check_ir_source`).

OpenVINO runs f32 IRs in bf16 on CPUs with AVX512-BF16 or AMX unless told otherwise: :func:`compile_ir` asks for
f32 execution (``INFERENCE_PRECISION_HINT``), which is what the f32 checks and timings mean.
"""

import logging
import os
import random
import statistics
import tempfile
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from ..files import fsync_file, scratch_folder
from ..timing import time_interleaved
from ..weights import file_sha256

__all__ = [
    'CALIBRATION_LIMIT',
    'INT8_CHECK_IMAGES',
    'IRClassifier',
    'MIN_INT8_COSINE',
    'RECORD_KEYS',
    'calibration_images',
    'check_calibration_folder',
    'check_ir_outputs',
    'check_ir_source',
    'compile_ir',
    'export_openvino',
    'fixed_shape',
    'infer',
    'ir_paths',
    'logit_agreement',
    'openvino_latency',
    'quantize_int8',
    'read_ir',
    'read_record',
    'require_openvino',
    'weights_source',
]

_logger = logging.getLogger(__name__)

# an int8 IR whose logits point elsewhere than PyTorch's is refused, not written: quantization gone wrong (a
# calibration set of blank images, say) rather than int8 rounding, which kept cosines of 0.997-0.9998 on EMO and
# EMOv2 in this project's measurements (docs/deploy.md)
MIN_INT8_COSINE = 0.95
CALIBRATION_LIMIT = 300  # NNCF's default subset size
INT8_CHECK_IMAGES = 32
CALIBRATION_SEED = 0  # which images of a folder calibrate and which check: a fixed sample, the same every run

# what an IR records of its source, as strings in its runtime info under 'emo' (the <rt_info> of its .xml): arch
# (the variant, e.g. emo_1m), weights ('checkpoint NAME', 'random', 'released emo2_1m.dist_in1k', or 'unknown' for
# export_openvino without a source), checkpoint_sha256 (of the file the weights were read from, where there was one),
# num_classes, img_size (HxW of the export), dynamic ('true'/'false') and the emo version that wrote it
RECORD_SECTION = 'emo'
RECORD_KEYS = ('arch', 'weights', 'checkpoint_sha256', 'num_classes', 'img_size', 'dynamic', 'emo_version')

PathLike = Union[str, os.PathLike]


def require_openvino(int8: bool = False):
    """The ``openvino`` module (and, for ``int8``, a check that NNCF imports), or one clear error naming the extra."""
    try:
        import openvino

        if int8:
            import nncf  # noqa: F401
    except ImportError:
        raise ValueError(
            f'{"int8 quantization needs NNCF" if int8 else "OpenVINO is not installed"}: pip install "emo[openvino]" '
            '(openvino and nncf)'
        ) from None
    return openvino


def ir_paths(path: PathLike) -> Tuple[Path, Path]:
    """The ``.xml`` and ``.bin`` files of an IR named ``path`` (``NAME.xml``, or ``NAME`` without a suffix)."""
    path = Path(path)
    if path.suffix.lower() == '.xml':
        return path, path.with_suffix('.bin')
    if path.suffix:
        raise ValueError(
            f'an OpenVINO IR is NAME.xml with its NAME.bin, not {path.name}: name the .xml, e.g. -o model.xml'
        )
    xml = path.with_name(path.name + '.xml')
    return xml, xml.with_suffix('.bin')


def fixed_shape(model, shape: Sequence[int]):
    """A copy of an ``openvino.Model`` whose input takes ``shape`` only (the model itself is left as it is)."""
    model = model.clone()
    model.reshape({model.inputs[0]: list(shape)})
    return model


def compile_ir(model, threads: int = 0, precision: str = 'f32', shape: Optional[Sequence[int]] = None):
    """An OpenVINO CPU ``CompiledModel`` of an IR path or ``openvino.Model``, for latency (``LATENCY`` hint).

    ``precision`` is the execution precision of the float parts ('f32'; 'bf16' where the CPU has it), ``threads``
    the inference threads (0: OpenVINO's choice), ``shape`` a fixed input shape to compile for.
    """
    ov = require_openvino()
    if isinstance(model, (str, os.PathLike)):
        model = read_ir(model)
    if shape is not None:
        model = fixed_shape(model, shape)
    config = {'PERFORMANCE_HINT': 'LATENCY', 'INFERENCE_PRECISION_HINT': precision}
    if threads:
        config['INFERENCE_NUM_THREADS'] = threads
    return ov.Core().compile_model(model, 'CPU', config)


def read_ir(path: PathLike):
    """The ``openvino.Model`` of an IR's ``.xml`` (and its ``.bin``), or one clear error when it does not parse."""
    try:
        return require_openvino().Core().read_model(str(path))
    except RuntimeError as e:  # OpenVINO's parser errors run to many lines of its own source locations
        first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise ValueError(f'{path} is not a readable OpenVINO IR ({first.strip()[:200]}); export it again') from e


def weights_source(model: nn.Module, weights: Union[bool, PathLike]) -> Dict[str, str]:
    """What an IR of ``model`` records of its source, ``model`` built with ``weights`` as
    :func:`emo.weights.create_with_weights` builds it (False: random, True: the released ones, else a checkpoint
    path): arch, weights and, where the weights came from a file, its checkpoint_sha256."""
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    arch = cfg.get('architecture') or type(model).__name__
    if weights is False:
        return {'arch': arch, 'weights': 'random'}
    if weights is True:
        source = {'arch': arch, 'weights': f'released {arch}.{cfg.get("tag")}'}
        file = cfg.get('file')  # the cached file the release origin's weights were read from (none from the Hub)
    else:
        file = os.fspath(weights)
        source = {'arch': arch, 'weights': f'checkpoint {Path(file).name}'}
    if file and os.path.isfile(file):
        source['checkpoint_sha256'] = file_sha256(file)
    return source


def read_record(model) -> Optional[Dict[str, str]]:
    """What an IR records of its source (:data:`RECORD_KEYS`), from an ``openvino.Model`` or an IR path; None for
    an IR without a record (exported by an older emo, or by another tool)."""
    if isinstance(model, (str, os.PathLike)):
        model = read_ir(ir_paths(model)[0])
    if not model.has_rt_info([RECORD_SECTION]):
        return None
    return {key: str(value.astype(str)) for key, value in model.get_rt_info()[RECORD_SECTION].items()}


def _describe(record: Mapping[str, str]) -> str:
    """'emo_1m with the weights of checkpoint best.pth (sha256 0123456789ab)', 'emo_1m with random weights'."""
    weights, sha = record.get('weights', 'unknown'), record.get('checkpoint_sha256')
    if weights in ('random', 'unknown'):
        weights = 'random weights' if weights == 'random' else 'weights it does not name'
    else:  # 'checkpoint NAME', 'released emo2_1m.dist_in1k'
        weights = f'the weights of {weights}' if weights.startswith('checkpoint ') else f'the {weights} weights'
    return f'{record.get("arch", "a model it does not name")} with {weights}' + (f' (sha256 {sha[:12]})' if sha else '')


def check_ir_source(record: Optional[Mapping[str, str]], ir: PathLike, checkpoint: PathLike, arch: str) -> None:
    """Refuse, in one line, an IR that was not exported from ``checkpoint`` built as ``arch``: another
    architecture, weights of another file (sha256) or none (random, released weights without a file, unknown), or
    no record at all (:func:`read_record`). An IR is validated only against what it was exported from."""
    arch = arch.split('.')[0]  # emo2_1m.dist_in1k is emo2_1m
    fix = f'export the IR from this checkpoint with emo export openvino --model {arch} --weights {checkpoint}'
    if record is None:
        raise ValueError(
            f'{ir} does not record what it was exported from (an IR of an older emo, or not of emo export), so it '
            f'cannot be matched with {checkpoint}: re-export it ({fix})'
        )
    sha = file_sha256(checkpoint)
    if record.get('arch', '').split('.')[0] != arch or record.get('checkpoint_sha256') != sha:
        raise ValueError(
            f'{ir} was exported from {_describe(record)}, not from {arch} with checkpoint {checkpoint} '
            f'(sha256 {sha[:12]}): {fix}'
        )


def infer(compiled, images: torch.Tensor) -> torch.Tensor:
    """Logits of a compiled IR for ``images``: in one call, or image by image where the IR takes batch 1 only."""
    request = compiled.create_infer_request()
    batch = compiled.inputs[0].get_partial_shape()[0]
    chunks = images.split(1) if batch.is_static and batch.get_length() == 1 else (images,)
    return torch.cat([torch.from_numpy(request.infer([x.cpu().numpy()])[0].copy()) for x in chunks])


def logit_agreement(expected: torch.Tensor, got: torch.Tensor) -> Dict[str, float]:
    """How well ``got`` logits follow ``expected`` ones: largest difference, mean cosine similarity, top-1 match."""
    expected, got = expected.flatten(1).double(), got.flatten(1).double()
    return {
        'max_abs_diff': (got - expected).abs().max().item(),
        'cosine': torch.nn.functional.cosine_similarity(got, expected, dim=1).mean().item(),
        'top1_agreement': (got.argmax(1) == expected.argmax(1)).double().mean().item(),
    }


def check_calibration_folder(folder: PathLike) -> Path:
    """``folder`` as a Path, or one clear error when it is no folder."""
    folder = Path(folder)
    if not folder.is_dir():
        what = 'is a file' if folder.exists() else 'does not exist'
        raise NotADirectoryError(f'calibration folder {folder} {what}; give a folder of images (any depth)')
    return folder


def calibration_images(
    folder: PathLike, model: nn.Module, img_size: Tuple[int, int], limit: int = CALIBRATION_LIMIT
) -> Tuple[List[np.ndarray], List[str]]:
    """Up to ``limit`` images from anywhere under ``folder``, a fixed random sample (every class folder of a
    training set has its share), preprocessed as timm evaluates ``model`` at ``img_size``: (1, 3, H, W) arrays.
    Unreadable files are skipped and counted; returns (arrays, skipped paths)."""
    from timm.data import create_transform, resolve_data_config

    from ..cli.predict import open_rgb
    from ..training.data import IMAGE_EXTENSIONS, images_under

    folder = check_calibration_folder(folder)
    paths = images_under(str(folder))
    if not paths:
        raise ValueError(f'{folder} holds no images ({", ".join(IMAGE_EXTENSIONS)}) to calibrate int8 with')
    random.Random(CALIBRATION_SEED).shuffle(paths)
    config = resolve_data_config(model=model)
    config['input_size'] = (3, *img_size)
    transform = create_transform(**config, is_training=False)
    arrays, skipped = [], []
    for path in paths:
        if len(arrays) == limit:
            break
        try:
            arrays.append(transform(open_rgb(path)).unsqueeze(0).numpy())
        except (ValueError, OSError):  # undecodable, or gone (a broken link)
            skipped.append(path)
    if not arrays:
        raise ValueError(f'none of the {len(paths)} image files under {folder} could be read')
    return arrays, skipped


def quantize_int8(model, images: Sequence[np.ndarray]):
    """NNCF post-training static quantization of an ``openvino.Model``, returned as a new ``openvino.Model``:
    int8 weights, symmetric and per output channel, and int8 activations, symmetric and per tensor, their ranges
    calibrated on ``images`` (NNCF's ``PERFORMANCE`` preset, fast bias correction).

    The attention stays in float: OpenVINO's converter fuses each window attention's matmul-softmax-matmul into one
    ``ScaledDotProductAttention`` op, which is left out of quantization, softmax included. Quantizing its query too
    (NNCF's default) gave the same logit cosine, made int8 emo2_1m 9% slower at batch 1 and 3% at batch 32, and
    emo_1m 2-5% faster (interleaved, 2-core Xeon; tests/test_openvino.py checks that no attention input is
    quantized).

    The weights are quantized to 7 bits in every layer (NNCF's overflow fix, ``OverflowFix.ENABLE``; its default
    fixes the first layer only): CPUs without VNNI (AVX2 only: AMD EPYC, older Intel) multiply int8 pairs into
    saturating 16-bit sums, which an 8-bit weight range overflows. Measured on a 2-core AMD EPYC (AVX2, no VNNI),
    emo_1m with the reference weights at 96x96, 12 calibration and 8 held-out pictures: logit cosine to PyTorch
    0.975 with NNCF's default, 0.996 with the fix (re-measure: docs/deploy.md, "int8 on CPUs without VNNI"). An IR
    runs wherever it is deployed, so the fix is always applied.
    """
    require_openvino(int8=True)
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    return nncf.quantize(
        model,
        nncf.Dataset(list(images)),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        subset_size=len(images),
        ignored_scope=nncf.IgnoredScope(types=['ScaledDotProductAttention'], validate=False),
        advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE),
    )


def check_ir_outputs(path: PathLike, overwrite: bool) -> Tuple[Path, Path]:
    """The IR's two files, each refused as :func:`~emo.deploy.export.check_output_file` refuses outputs."""
    from .export import check_output_file

    if Path(path).is_dir():
        check_output_file(Path(path), overwrite, 'model.xml')  # the folder error, before any suffix is added
    xml, bin_ = ir_paths(path)
    for file in (xml, bin_):
        check_output_file(file, overwrite, xml.name)
    return xml, bin_


def export_openvino(
    model: nn.Module,
    path: PathLike,
    img_size: Union[int, Tuple[int, int]] = 224,
    dynamic: bool = False,
    calibration: Optional[Sequence[np.ndarray]] = None,
    check_images: Optional[Sequence[np.ndarray]] = None,
    overwrite: bool = False,
    check: bool = True,
    source: Optional[Mapping[str, str]] = None,
) -> Dict[str, Dict[str, float]]:
    """Write ``model`` (eval mode, fused or not) as an OpenVINO IR: ``path`` (``.xml``) and its ``.bin``.

    Input ``images`` (N, 3, H, W), output ``logits``. ``dynamic`` leaves batch, height and width free, else the IR
    takes batch 1 at ``img_size``. With ``calibration`` (arrays of :func:`calibration_images`) the IR is int8
    (:func:`quantize_int8`), checked on ``check_images`` (else on the first calibration images, with a warning that
    the check is optimistic; one on a single image warns too). Both files are written in a scratch folder beside
    ``path`` and moved into place when the IR has been read back and checked (its record of its source included);
    an existing file is replaced only with ``overwrite``. ``source`` (:func:`weights_source`: arch, weights,
    checkpoint_sha256) is recorded in the IR with its class count and size (:data:`RECORD_KEYS`); without it the
    weights are recorded as 'unknown', and ``emo validate --openvino`` refuses the IR. Returns the check per input:
    :func:`logit_agreement` of the IR against PyTorch.
    """
    from .export import _pair, export_onnx

    ov = require_openvino(int8=calibration is not None)
    height, width = _pair(img_size)
    model = model.eval()
    xml, bin_ = check_ir_outputs(path, overwrite)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / 'model.onnx'
        export_onnx(model, onnx_path, (height, width), dynamic=True, check=False)
        dynamic_graph = ov.convert_model(str(onnx_path))
    converted = dynamic_graph if dynamic else fixed_shape(dynamic_graph, [1, 3, height, width])
    if calibration is not None:
        converted = quantize_int8(converted, calibration)
    record = _record(model, converted, source, (height, width), dynamic)
    for key, value in record.items():
        converted.set_rt_info(value, [RECORD_SECTION, key])
    xml.parent.mkdir(parents=True, exist_ok=True)
    with scratch_folder(xml.parent, f'.{xml.stem}.') as scratch:
        ov.save_model(converted, str(scratch / 'model.xml'), compress_to_fp16=False)
        checks = _check(
            model, scratch / 'model.xml', dynamic_graph, (height, width), dynamic, calibration, check_images, record
        )
        _move_pair(scratch, xml, bin_, overwrite)
    if calibration is not None:
        _warn_on_weak_int8_check(xml, calibration, check_images)
    return checks


def _record(model: nn.Module, converted, source: Optional[Mapping[str, str]], size, dynamic: bool) -> Dict[str, str]:
    from .. import __version__

    cfg = getattr(model, 'pretrained_cfg', None) or {}
    record = {'arch': cfg.get('architecture') or type(model).__name__, 'weights': 'unknown'}
    record.update({k: str(v) for k, v in (source or {}).items()})
    unknown = sorted(set(record) - set(RECORD_KEYS))
    if unknown:
        raise ValueError(f'source= names the {", ".join(RECORD_KEYS[:3])} of an IR, not {unknown}')
    width = converted.outputs[0].get_partial_shape()[-1]
    record['num_classes'] = str(width.get_length()) if width.is_static else 'dynamic'
    record['img_size'] = f'{size[0]}x{size[1]}'
    record['dynamic'] = 'true' if dynamic else 'false'
    record['emo_version'] = __version__
    return record


def _warn_on_weak_int8_check(xml: Path, calibration, check_images) -> None:
    """A warning where the int8 check says little: on the calibration images themselves (their ranges were fitted
    to them: optimistic), or on one image."""
    how = f'check it with emo validate --openvino {xml} --data VAL --checkpoint CKPT on a validation set'
    if check_images is None or len(check_images) == 0:
        _logger.warning(
            'warning: the int8 check ran on the calibration image(s) themselves (%d; none were left over to hold '
            'out), so its cosine and top-1 agreement are optimistic: %s, or calibrate on fewer images than the '
            'folder holds (--calibration-images) to keep some for the check',
            min(len(calibration), INT8_CHECK_IMAGES),
            how,
        )
    elif len(check_images) == 1:
        _logger.warning('warning: the int8 check ran on 1 held-out image only, too few to judge the IR by: %s', how)


def _check(
    model, saved: Path, dynamic_graph, size, dynamic: bool, calibration, check_images, record: Dict[str, str]
) -> Dict[str, Dict]:
    """The saved files, read back (what a user's runtime will load), against PyTorch, and the record of their source;
    raises when they differ."""
    from .export import TOLERANCE, ExportCheckError, _example

    height, width = size
    written = require_openvino().Core().read_model(str(saved))
    if read_record(written) != record:  # the record emo validate --openvino matches checkpoints with
        raise ExportCheckError(f'the IR read back records {read_record(written)} of its source, not {record}')
    checks = {}
    if calibration is not None:  # int8 is judged on images like the ones it will see, not on noise
        held_out = check_images is not None and len(check_images) > 0
        images = torch.from_numpy(np.concatenate(check_images if held_out else calibration[:INT8_CHECK_IMAGES]))
        checks[f'{len(images)} {"held-out" if held_out else "calibration"} images'] = _agreement(model, written, images)
    else:
        checks[f'1x3x{height}x{width}'] = _agreement(model, written, _example(1, (height, width)))
        # a fixed-shape IR takes its own shape only: its second size runs on the same graph before it was fixed
        h, w = height + 32, max(32, width - 32)
        checks[f'2x3x{h}x{w}'] = _agreement(model, written if dynamic else dynamic_graph, _example(2, (h, w)))
    for shape, c in checks.items():
        if calibration is not None and not c['cosine'] >= MIN_INT8_COSINE:
            raise ExportCheckError(
                f"the int8 IR's logits follow PyTorch's with cosine {c['cosine']:.3f} on {shape} "
                f'(< {MIN_INT8_COSINE}): calibrate on images like the ones the model will see'
            )
        if calibration is None and not c['max_abs_diff'] <= TOLERANCE:
            raise ExportCheckError(f'the IR differs from PyTorch by {c["max_abs_diff"]:.3g} at {shape} (> {TOLERANCE})')
    return checks


def _agreement(model: nn.Module, ir, images: torch.Tensor) -> Dict[str, float]:
    with torch.inference_mode():
        expected = model(images)
    return logit_agreement(expected, infer(compile_ir(ir), images))


def _move_pair(scratch: Path, xml: Path, bin_: Path, overwrite: bool) -> None:
    """Move a checked ``model.xml``/``model.bin`` from ``scratch`` into place. A reader sees the old pair, no
    ``.xml``, or the new pair: the old ``.xml`` goes aside first, the new ``.bin`` before the new ``.xml``."""
    for name in ('model.xml', 'model.bin'):
        fsync_file(scratch / name)
    if not overwrite:  # minutes have passed since the first check: a file may have appeared meanwhile
        check_ir_outputs(xml, overwrite)
    if xml.exists():
        os.replace(xml, scratch / 'replaced.xml')  # removed with the scratch folder
    os.replace(scratch / 'model.bin', bin_)
    os.replace(scratch / 'model.xml', xml)


class IRClassifier(nn.Module):
    """An OpenVINO IR as a module: images (N, 3, H, W) in, logits out, computed by OpenVINO on the CPU.

    So that what evaluates a PyTorch model (``emo validate --openvino``) evaluates the IR the same way. An IR of
    batch 1 (the default export) runs a batch image by image. ``input_shape`` is the IR's input shape (``None``
    for a free dimension), ``num_classes`` its output width, ``record`` what it records of its source
    (:func:`read_record`; None for an IR without one).
    """

    def __init__(self, path: PathLike, threads: int = 0):
        super().__init__()
        xml, bin_ = ir_paths(path)
        for file in (xml, bin_):
            if not file.is_file():
                raise FileNotFoundError(f'OpenVINO IR file {file} does not exist (an IR is a .xml with its .bin)')
        ir = read_ir(xml)
        self.record = read_record(ir)
        self.compiled = compile_ir(ir, threads)
        dims = self.compiled.inputs[0].get_partial_shape()
        self.input_shape = tuple(d.get_length() if d.is_static else None for d in dims)
        width = self.compiled.outputs[0].get_partial_shape()[-1]
        self.num_classes = width.get_length() if width.is_static else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return infer(self.compiled, images)


def openvino_latency(
    compiled, img_size: Union[int, Tuple[int, int]] = 224, batch: int = 1, runs: int = 50, warmup: int = 5
) -> float:
    """Median milliseconds of one synchronous inference of a compiled model (:func:`compile_ir`)."""
    from .export import _example, _pair

    request = compiled.create_infer_request()
    x = _example(batch, _pair(img_size)).numpy()
    times = time_interleaved({'openvino': lambda: request.infer([x])}, runs, warmup)['openvino']
    return statistics.median(times)
