"""EMO, EMOv2 and their blocks as Ultralytics YOLO layers: ``import emo.ultralytics`` and name them in model YAMLs.

Ultralytics (AGPL-3.0) is an optional extra (``pip install -e ".[yolo]"``); nothing else in ``emo`` imports it.

YAML layers, usable after the import in any YAML that Ultralytics' own ``parse_model`` reads:

- ``iRMB``: ``[c2, exp_ratio=2.0, dim_head=32, window_size=7, kernel_size=3, norm='bn']``, a stack of ``n``
  :class:`emo.models.IRMB` blocks with grid-window attention; it keeps the width when the scaled ``c2`` equals
  its input, and then has both shortcuts.
- ``C2f_iRMB``: ``[c2, shortcut=True, exp_ratio=2.0, dim_head=32, window_size=7, kernel_size=3, norm='bn', e=0.5]``,
  Ultralytics' C2f split/concat layout whose ``n`` bottlenecks are IRMB blocks.
- ``i2RMB`` and ``C2f_i2RMB``: the same arguments, with EMOv2's block: hybrid window attention (strided-grid and
  contiguous windows over one qk/v, the values expanded before the attention) and a layer scale in every block.
- ``EMOBackbone``: ``[variant='emo_1m', pretrained=False, drop_path_rate=0.0]``, the timm EMO or EMOv2 feature
  extractor (``variant='emo2_1m'`` ...) returning ``[P3/8, P4/16, P5/32]``; pick the maps with Ultralytics'
  ``Index`` layer. First layer only.

How the layers get Ultralytics' channel and repeat arithmetic: ``parse_model`` gives input channels, width-scaled
output channels and depth-scaled repeats only to classes in sets it builds inside the function, and looks those up
by equality. ``iRMB`` and ``C2f_iRMB`` (and their EMOv2 subclasses) have a metaclass that makes them compare (and
hash) equal to Ultralytics' ``C2f`` while, and only while, the wrapped ``parse_model`` below runs, so Ultralytics
builds them with ``(c1, scaled c2, scaled n, *yaml args)`` exactly as it builds a C2f, and prints and tags them
(``.i/.f/.type/.np``) itself. The wrapper also hands ``EMOBackbone`` the image channels and checks the ``Index``
rows that read it.
The wrapper replaces ``ultralytics.nn.tasks.parse_model``, which every model build (``YOLO(yaml)``, the trainer's
rebuild, ``DetectionModel``) looks up at call time; Ultralytics' files are not edited. It takes any signature
(the model dict and input channels are found by name, ``d`` and ``ch``, else as the first two parameters), and the
import probes each assumption above once (:func:`_check_assumptions`, a few milliseconds): an Ultralytics release
that breaks one fails ``import emo.ultralytics`` with one line naming its version, instead of building wrong layers.

Trained checkpoints (``best.pt``) pickle the layers by their module path, ``emo.ultralytics``: unpickling imports
this module, so a fresh process loads them with ``YOLO('best.pt')`` even without importing it first (it must have
``emo`` installed; ``ULTRALYTICS_SAFE_LOAD=1``'s allow-list refuses classes outside Ultralytics and torch).
"""

import functools
import inspect
import re
import threading
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

import torch
import torch.nn as nn

try:
    import ultralytics
    from ultralytics.nn import tasks as _tasks
    from ultralytics.nn.modules import C2f, Conv
    from ultralytics.utils.torch_utils import initialize_weights
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'emo.ultralytics needs Ultralytics (AGPL-3.0, an optional extra of emo): pip install -e ".[yolo]"'
    ) from e


from ..models import IRMB
from ..models.variants import get_variant
from ..weights import create_with_weights
from ..weights.errors import first_line

__all__ = ['iRMB', 'C2f_iRMB', 'i2RMB', 'C2f_i2RMB', 'EMOBackbone', 'cfg', 'configs', 'attention_dim_head', 'CFG_DIR']

CFG_DIR = Path(__file__).parent / 'cfg'
SUPPORTED_ULTRALYTICS = '>=8.4,<9'  # the yolo extra of setup.cfg (tests/test_ultralytics.py checks they agree)
SCALES = ('n', 's', 'm', 'l', 'x')
_NORMS = ('bn', 'ln')


class _Parsing(threading.local):
    depth = 0  # > 0 while the wrapped parse_model runs in this thread


_parsing = _Parsing()


class _ParsedAs(type):
    """Metaclass of YAML layers that Ultralytics should treat like the class in their ``parsed_as``.

    Inside the wrapped ``parse_model`` such a class compares equal to ``parsed_as``, so its membership tests
    (``m in base_modules``, ``m in repeat_modules``) succeed; outside it compares equal only to itself. The hash is
    that of ``parsed_as`` throughout, because a hash may not change while a class sits in a set or dict.
    """

    def __eq__(cls, other: object) -> bool:
        return cls is other or (_parsing.depth > 0 and other is cls.parsed_as)

    def __hash__(cls) -> int:
        return hash(cls.parsed_as)


def attention_dim_head(channels: int, dim_head: int) -> int:
    """The head width closest to ``dim_head`` that divides ``channels``: width scaling gives any multiple of 8
    (of 4 inside a C2f), so the number of heads is ``round(channels / dim_head)`` lowered to a divisor."""
    heads = max(1, round(channels / dim_head))
    while channels % heads:
        heads -= 1
    return channels // heads


def _irmb(
    in_chs: int,
    out_chs: int,
    exp_ratio: float,
    dim_head: Optional[int],
    window_size: int,
    kernel_size: int,
    norm: str,
    shortcut: bool = True,
    emo2: bool = False,
) -> IRMB:
    if norm not in _NORMS:
        raise ValueError(f'norm must be one of {_NORMS}, got {norm!r}')
    # EMOv2's i2RMB: hybrid window attention and a layer scale, at the official training init
    v2 = dict(attn_layer='hybrid', layer_scale_init=1e-6) if emo2 else {}
    return IRMB(
        in_chs,
        out_chs,
        exp_ratio=exp_ratio,
        kernel_size=kernel_size,
        norm_layer=norm,
        act_layer=nn.SiLU,  # YOLOv8's activation
        dim_head=attention_dim_head(in_chs, dim_head) if dim_head else None,
        window_size=window_size,
        skip=shortcut,
        **v2,
    )


class iRMB(nn.Sequential, metaclass=_ParsedAs):  # noqa: N801 - the name used in YAMLs and in the paper
    """``n`` iRMBs with grid-window attention: the first maps ``c1 -> c2``, the others keep ``c2``.

    An iRMB has both its shortcuts (around the depthwise conv and around the block) where input and output
    widths agree, so ``[-1, 1, iRMB, [c]]`` after a layer of width ``c`` is a residual attention layer.

    Args:
        c1: input channels (from Ultralytics).
        c2: output channels (the YAML's, scaled by width like a Conv's or C2f's).
        n: number of blocks (the YAML's repeats, scaled by depth).
        exp_ratio: expansion of each block's 1x1 conv.
        dim_head: target attention head width, adjusted to divide the width (:func:`attention_dim_head`);
            0 or None for blocks without attention.
        window_size: side of the strided-grid attention windows.
        kernel_size: depthwise kernel.
        norm: 'bn' (BatchNorm) or 'ln' (LayerNorm over channels) before each block.
    """

    parsed_as = C2f  # Ultralytics: c1 in, c2 scaled by width, repeats scaled by depth and passed as n
    emo2 = False  # EMOv2's block (i2RMB)

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        exp_ratio: float = 2.0,
        dim_head: Optional[int] = 32,
        window_size: int = 7,
        kernel_size: int = 3,
        norm: str = 'bn',
    ):
        super().__init__(
            *(
                _irmb(c1 if i == 0 else c2, c2, exp_ratio, dim_head, window_size, kernel_size, norm, emo2=self.emo2)
                for i in range(n)
            )
        )


class i2RMB(iRMB):  # noqa: N801 - the name used in YAMLs and in the EMOv2 paper
    """``n`` EMOv2 blocks (i2RMB): :class:`iRMB`'s arguments, with hybrid window attention and layer scale.

    The values are expanded by ``exp_ratio`` before the attention and split into as many heads as the queries, so
    ``int(c2 * exp_ratio)`` must divide into them (it does for integer ``exp_ratio``).
    """

    emo2 = True


class C2f_iRMB(nn.Module, metaclass=_ParsedAs):  # noqa: N801 - the name used in YAMLs
    """C2f with iRMB bottlenecks: a 1x1 conv splits the input in two halves of ``c = c2 * e`` channels, ``n``
    iRMBs (``c -> c``) run one after another on the second half, and a 1x1 conv fuses all ``2 + n`` maps.

    The 1x1 convs are Ultralytics' ``Conv`` (conv, BN, SiLU), so ``model.fuse()`` folds them as in a C2f.

    Args:
        c1, c2, n: input and output channels and bottleneck count, scaled by Ultralytics as for C2f.
        shortcut: iRMB shortcuts. Unlike C2f the default is on, also in the neck: an iRMB without shortcuts loses
            its depthwise residual as well.
        exp_ratio, dim_head, window_size, kernel_size, norm: the iRMBs' settings (see :class:`iRMB`).
        e: hidden width ratio, as in C2f.
    """

    parsed_as = C2f
    emo2 = False  # EMOv2's block (i2RMB) as the bottleneck

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        shortcut: bool = True,
        exp_ratio: float = 2.0,
        dim_head: Optional[int] = 32,
        window_size: int = 7,
        kernel_size: int = 3,
        norm: str = 'bn',
        e: float = 0.5,
    ):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(
            _irmb(self.c, self.c, exp_ratio, dim_head, window_size, kernel_size, norm, shortcut, self.emo2)
            for _ in range(n)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = list(self.cv1(x).chunk(2, 1))
        for block in self.m:
            maps.append(block(maps[-1]))
        return self.cv2(torch.cat(maps, 1))


class C2f_i2RMB(C2f_iRMB):  # noqa: N801 - the name used in YAMLs
    """C2f with EMOv2 (i2RMB) bottlenecks: :class:`C2f_iRMB`'s arguments and layout."""

    emo2 = True


class _BackboneBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm of the EMO backbone. Ultralytics' ``initialize_weights`` resets eps to 1e-3 and momentum to 0.03
    on modules whose type is exactly ``nn.BatchNorm2d``; EMO's weights were trained with eps 1e-6, which this
    subclass keeps so a pretrained backbone computes what it computes in timm."""


class EMOBackbone(nn.Module):
    """A timm EMO feature extractor for YOLO necks: returns ``[P3, P4, P5]`` (strides 8, 16, 32).

    Channels per variant: emo_1m 48/80/168, emo_2m 48/120/200, emo_5m 72/160/288, emo_6m 72/160/320; emo2_1m
    48/80/180, emo2_2m 48/120/200, emo2_5m and emo2_5m_512 72/160/288, emo2_20m 128/320/448. Width and
    depth scaling do not apply: the variant named in the YAML fixes the backbone (pretrained weights fix its shape),
    the neck and head after it scale as usual.

    Args:
        c1: image channels (set by the parse_model wrapper from the model's input channels).
        variant: an EMO or EMOv2 variant, 'emo_1m' ... 'emo_6m', 'emo2_1m' ... 'emo2_20m' (a pretrained tag such as
            'emo_2m.in1k' or 'emo2_1m.dist_in1k' is accepted).
        pretrained: False, True for the released ImageNet weights (downloaded once, verified and cached; see
            docs/weights.md), or the path of a checkpoint file that ``timm.create_model(..., pretrained=True)``
            accepts (an official ``net.pth`` or ``EMOv2_*.pth`` included).
        drop_path_rate: stochastic depth of the backbone blocks.
    """

    def __init__(
        self, c1: int, variant: str = 'emo_1m', pretrained: Union[bool, str, Path] = False, drop_path_rate: float = 0.0
    ):
        super().__init__()
        self.variant = variant
        self.body = create_with_weights(
            variant, pretrained, features_only=True, out_indices=(1, 2, 3), in_chans=c1, drop_path_rate=drop_path_rate
        )
        self.channels: List[int] = self.body.feature_info.channels()
        self.strides: List[int] = self.body.feature_info.reduction()
        for module in self.body.modules():
            if type(module) is nn.BatchNorm2d:
                module.__class__ = _BackboneBatchNorm2d

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.body(x)

    @staticmethod
    def feature_channels(variant: str) -> List[int]:
        """P3/P4/P5 channels of a variant, without building its weights."""
        try:
            return list(get_variant(variant).widths[1:])
        except ValueError as e:
            raise ValueError(f'EMOBackbone: {e}') from None


_YAML_LAYERS = {
    'iRMB': iRMB,
    'C2f_iRMB': C2f_iRMB,
    'i2RMB': i2RMB,
    'C2f_i2RMB': C2f_i2RMB,
    'EMOBackbone': EMOBackbone,
}


def _prepare_rows(d: dict, ch: int) -> dict:
    """A copy of the model dict in which EMOBackbone rows get the image channels as their first argument.

    Checked here, before Ultralytics builds anything, with messages that say what to write instead: the backbone is
    the first layer and reads the image, and each ``Index`` row that picks one of its maps declares that map's
    channels (``Index`` passes its first argument on as the layer's width without checking it).
    """
    d = dict(d)
    rows = [[f, n, m, list(args)] for f, n, m, args in d['backbone'] + d['head']]
    for i, (f, _, m, args) in enumerate(rows):
        if m != 'EMOBackbone':
            continue
        if i != 0 or f != -1:
            raise ValueError(f'EMOBackbone must be layer 0 with from=-1 (it reads the image), found at layer {i}')
        if not hasattr(_tasks, 'Index'):
            raise ImportError(
                'EMOBackbone YAMLs pick P3/P4/P5 with the Index layer: update Ultralytics to a release with it'
            )
        variant = args[0] if args else 'emo_1m'
        channels = EMOBackbone.feature_channels(variant)
        if len(args) > 1 and isinstance(args[1], str):
            args[1] = Path(args[1])  # a checkpoint path: parse_model would try to literal_eval a str
        args.insert(0, ch)
        for j, (f_j, _, m_j, args_j) in enumerate(rows):
            if m_j == 'Index' and f_j == i:
                index = args_j[1] if len(args_j) > 1 else 0
                if args_j[0] != channels[index]:
                    raise ValueError(
                        f'layer {j}: Index {index} of EMOBackbone {variant!r} has {channels[index]} channels, the '
                        f'YAML says {args_j[0]}; write [{channels[index]}, {index}] (P3/P4/P5 channels: {channels})'
                    )
    d['backbone'], d['head'] = rows[: len(d['backbone'])], rows[len(d['backbone']) :]
    return d


def _unsupported(what: str) -> ImportError:
    return ImportError(
        f'emo.ultralytics does not work with Ultralytics {ultralytics.__version__} (emo supports '
        f'ultralytics{SUPPORTED_ULTRALYTICS}; pip install "ultralytics{SUPPORTED_ULTRALYTICS}"): {what}'
    )


def _dict_and_channels(signature: inspect.Signature) -> Tuple[str, str]:
    """The names of parse_model's model-dict and input-channels parameters: ``d`` and ``ch`` (8.4.x), else the
    first two positional ones."""
    if 'd' in signature.parameters and 'ch' in signature.parameters:
        return 'd', 'ch'
    positional = [
        p.name for p in signature.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) < 2:
        raise _unsupported(f'parse_model{signature} takes no (model dict, input channels) arguments')
    return positional[0], positional[1]


def _wrap_parse_model(parse_model: Any) -> Any:
    """``parse_model`` with EMOBackbone rows prepared and our layers parsed as C2f, for any signature of it."""
    signature = inspect.signature(parse_model)
    d_name, ch_name = _dict_and_channels(signature)

    @functools.wraps(parse_model)
    def emo_parse_model(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)  # a call the original would refuse raises its TypeError here
        ch = bound.arguments.get(ch_name, signature.parameters[ch_name].default)
        bound.arguments[d_name] = _prepare_rows(bound.arguments[d_name], ch)
        _parsing.depth += 1
        try:
            return parse_model(*bound.args, **bound.kwargs)
        finally:
            _parsing.depth -= 1

    emo_parse_model.emo_original = parse_model
    return emo_parse_model


def _check_assumptions() -> None:
    """Probe, once at import, what the wrapper relies on; each broken assumption is one ImportError line.

    1. Model builds look ``parse_model`` up in ``ultralytics.nn.tasks`` at call time (so the wrapper is used).
    2. A YAML name resolves from that module's globals, a layer equal to C2f gets C2f's (c1, width-scaled c2,
       depth-scaled n), and ``Index`` takes its declared width as its first argument.
    3. Outside the wrapper our layers are not C2f.
    4. ``initialize_weights`` leaves BatchNorm subclasses alone (EMOBackbone's pretrained eps 1e-6).
    """
    callers = [getattr(_tasks, '_initialize_yolo_model', None)] + [
        getattr(getattr(_tasks, name, None), '__init__', None) for name in ('DetectionModel', 'ClassificationModel')
    ]
    callers = [f for f in callers if 'parse_model' in getattr(getattr(f, '__code__', None), 'co_names', ())]
    if not callers or any(f.__globals__ is not vars(_tasks) for f in callers):
        raise _unsupported('its model builds no longer call ultralytics.nn.tasks.parse_model')
    probe = {
        'nc': 1,
        'depth_multiple': 0.5,
        'width_multiple': 0.5,
        'backbone': [[-1, 4, 'C2f_iRMB', [32, True, 2.0, 0]], [-1, 1, 'Index', [24, 0]]],  # no attention: tiny
        'head': [[-1, 1, 'Conv', [16, 1, 1]]],
    }
    try:
        layers, _ = _tasks.parse_model(probe, ch=3, verbose=False)
        shape = (layers[0].cv1.conv.in_channels, layers[0].cv2.conv.out_channels, len(layers[0].m))
        index_width = layers[2].conv.in_channels
    except Exception as e:  # noqa: BLE001 - whatever a changed parse_model raises, the user gets one line
        raise _unsupported(
            f'parse_model cannot build a C2f_iRMB and an Index ({type(e).__name__}: {first_line(e)})'
        ) from e
    if type(layers[0]) is not C2f_iRMB or shape != (3, 16, 2) or index_width != 24:
        raise _unsupported(
            f"parse_model no longer gives C2f's channel and repeat arithmetic to equal layers, or Index its width: "
            f'(c1, c2, n) = {shape} and width after Index {index_width}, expected (3, 16, 2) and 24'
        )
    if C2f_iRMB == C2f:
        raise _unsupported('C2f_iRMB compares equal to C2f outside parse_model')
    bn = _BackboneBatchNorm2d(1, eps=1e-6)
    initialize_weights(nn.Sequential(bn))
    if bn.eps != 1e-6:
        raise _unsupported('initialize_weights resets BatchNorm subclasses, which breaks a pretrained EMOBackbone')


def _set_parse_model(parse_model: Any) -> None:
    import ultralytics.nn as ultralytics_nn

    _tasks.parse_model = parse_model
    if hasattr(ultralytics_nn, 'parse_model'):
        ultralytics_nn.parse_model = parse_model  # the package re-exports it


def _register() -> None:
    """Make the YAML names resolvable by parse_model and install the wrapper once (also on a module reload)."""
    for name, layer in _YAML_LAYERS.items():
        setattr(_tasks, name, layer)  # parse_model resolves YAML names from this module's globals
    _set_parse_model(_wrap_parse_model(getattr(_tasks.parse_model, 'emo_original', _tasks.parse_model)))


def _unregister() -> None:
    """Leave Ultralytics as it was before :func:`_register`: its own parse_model, none of our names."""
    for name in _YAML_LAYERS:
        if getattr(_tasks, name, None) is _YAML_LAYERS[name]:
            delattr(_tasks, name)
    _set_parse_model(getattr(_tasks.parse_model, 'emo_original', _tasks.parse_model))


_register()
try:
    _check_assumptions()
except ImportError:
    _unregister()  # an Ultralytics we do not fit keeps working for everything else
    raise


def _base_name(name: str) -> str:
    stem = name[:-5] if name.endswith('.yaml') else name
    return re.sub(r'^yolov8[nslmx]?-', 'yolov8-', stem)


def configs(scale: str = 'n') -> List[str]:
    """Names of the shipped model YAMLs at a scale ('n', 's', 'm', 'l', 'x'), for :func:`cfg`."""
    if scale not in SCALES:
        raise ValueError(f'scale must be one of {SCALES}, got {scale!r}')
    return sorted(p.stem.replace('yolov8-', f'yolov8{scale}-', 1) for p in CFG_DIR.glob('yolov8-*.yaml'))


def cfg(name: str) -> str:
    """The model YAML path to give ``YOLO()``, e.g. ``cfg('yolov8n-emo')``.

    As with Ultralytics' own ``yolov8n.yaml``, the scale letter is part of the name and the file on disk holds all
    scales (``yolov8-emo.yaml``): the returned ``.../yolov8n-emo.yaml`` need not exist, Ultralytics reads the
    scale from it and loads the file without the letter. A name without a letter gives that file (scale n).
    """
    base = _base_name(name)
    if not (CFG_DIR / f'{base}.yaml').is_file():
        raise ValueError(f'no shipped YAML {name!r}; available: {configs()} (any scale letter of {SCALES})')
    stem = name[:-5] if name.endswith('.yaml') else name
    return str(CFG_DIR / f'{stem}.yaml')
