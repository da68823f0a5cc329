"""How emo's layers get into Ultralytics' model builder: one wrapper around ``ultralytics.nn.tasks.parse_model``.

``parse_model`` gives input channels, width-scaled output channels and depth-scaled repeats only to classes in sets
it builds inside the function, and looks those up by equality. ``iRMB``, ``C2f_iRMB`` and ``C3k2_iRMB`` (and their
EMOv2 subclasses) have a metaclass that makes them compare (and hash) equal to Ultralytics' ``C2f`` or ``C3k2``
while, and only while, the wrapped ``parse_model`` runs, so Ultralytics builds them with ``(c1, scaled c2, scaled
n, *yaml args)`` exactly as it builds the class they stand for, and prints and tags them (``.i/.f/.type/.np``)
itself.

What Ultralytics decides by identity (``m is C3k2``), the wrapper decides for the stand-ins, on a copy of the model
dict before Ultralytics reads it (:func:`_prepare_rows`):

- at scales m, l and x a C3k2 gets ``c3k=True`` whatever its YAML says; so does a C3k2 stand-in;
- a model with a C3k2 gets YOLO11's Detect head, and one with none (every C3k2 replaced) would get YOLOv8's
  ("legacy") head: with a C3k2 stand-in in the model, the head rows are built through :class:`_CurrentHead`,
  which builds Ultralytics' own head class in its current form. Segment heads, whose arguments Ultralytics also
  adjusts by identity, are left to Ultralytics, with a warning when they would come out legacy.
- EMOBackbone rows get the image channels, and the ``Index`` rows that read them are checked.

The wrapper replaces ``ultralytics.nn.tasks.parse_model``, which every model build (``YOLO(yaml)``, the trainer's
rebuild, ``DetectionModel``) looks up at call time; Ultralytics' files are not edited. It takes any signature (the
model dict and input channels are found by name, ``d`` and ``ch``, else as the first two parameters), and the
import probes each assumption above once (:func:`_check_assumptions`, a few milliseconds): an Ultralytics release
that breaks one fails ``import emo.ultralytics`` with one line naming its version, instead of building wrong layers.
"""

import functools
import inspect
from pathlib import Path
from typing import Any, Tuple

import torch.nn as nn
import ultralytics
from ultralytics.nn import tasks as _tasks
from ultralytics.nn.modules import C2f, C3k2, Detect
from ultralytics.utils import LOGGER
from ultralytics.utils.torch_utils import initialize_weights

from ..weights.errors import first_line
from .layers import (
    C2f_i2RMB,
    C2f_iRMB,
    C3k2_i2RMB,
    C3k2_iRMB,
    EMOBackbone,
    _BackboneBatchNorm2d,
    _parsing,
    i2RMB,
    iRMB,
)

__all__ = ['YAML_LAYERS', 'SUPPORTED_ULTRALYTICS']

SUPPORTED_ULTRALYTICS = '>=8.4,<9'  # the yolo extra of setup.cfg (tests/test_ultralytics.py checks they agree)

YAML_LAYERS = {
    'iRMB': iRMB,
    'C2f_iRMB': C2f_iRMB,
    'C3k2_iRMB': C3k2_iRMB,
    'i2RMB': i2RMB,
    'C2f_i2RMB': C2f_i2RMB,
    'C3k2_i2RMB': C3k2_i2RMB,
    'EMOBackbone': EMOBackbone,
}
_C3K2_SCALES = ('m', 'l', 'x')  # where parse_model forces c3k=True on every C3k2
# the YAML names whose presence makes parse_model build current (non-legacy) heads, as it checks them by identity
_CLEARS_LEGACY = ('C3k2', 'A2C2f', 'C2fCIB')
# heads that read parse_model's legacy flag and whose arguments it adjusts by equality only: these can be built
# through _CurrentHead. The Segment heads (Segment, Segment26, YOLOESegment, YOLOESegment26) are adjusted by identity.
_HEADS = ('Detect', 'YOLOEDetect', 'Pose', 'Pose26', 'OBB', 'OBB26')
_SEGMENT_HEADS = ('Segment', 'Segment26', 'YOLOESegment', 'YOLOESegment26')


class _CurrentHead(type):
    """Metaclass of the stand-ins that build an Ultralytics head (``builds``) in its current form.

    To ``parse_model`` a stand-in is its head class: equal, the same hash and the same name (``repr``), so the head
    gets its arguments and its printed type as usual. Calling it builds Ultralytics' own head object with
    ``legacy`` False, as ``parse_model`` does once it has seen a C3k2, without touching the class's flag.
    """

    def __eq__(cls, other: object) -> bool:
        return cls is other or other is cls.builds

    def __hash__(cls) -> int:
        return hash(cls.builds)

    def __repr__(cls) -> str:
        return repr(cls.builds)

    def __call__(cls, *args: Any, **kwargs: Any) -> nn.Module:
        # the flag set on the object being built, not on the class, which other threads may be building from
        head = cls.builds.__new__(cls.builds)
        object.__setattr__(head, 'legacy', False)
        cls.builds.__init__(head, *args, **kwargs)
        del head.__dict__['legacy']  # read only by __init__; the object is then like any other of its class
        return head


def _current_head_name(head: str) -> str:
    return f'emo_current_{head}'


def _current_heads() -> dict:
    """YAML name -> stand-in, for the heads this Ultralytics has."""
    stand_ins = {}
    for name in _HEADS:
        head = getattr(_tasks, name, None)
        if isinstance(head, type):
            # an nn.Module subclass, as restricted loading (ULTRALYTICS_SAFE_LOAD) requires of every layer
            stand_ins[_current_head_name(name)] = _CurrentHead(_current_head_name(name), (nn.Module,), {'builds': head})
    return stand_ins


def _scale(d: dict) -> Any:
    """The scale parse_model will use: the dict's ``scale``, else the first of its ``scales``."""
    scales = d.get('scales')
    return d.get('scale') or (next(iter(scales)) if scales else None)


def _prepare_rows(d: dict, ch: int) -> dict:
    """A copy of the model dict with what parse_model decides by identity decided for our layers (module docstring).

    Checked here, before Ultralytics builds anything, with messages that say what to write instead: an EMOBackbone
    is the first layer and reads the image, and each ``Index`` row that picks one of its maps declares that map's
    channels (``Index`` passes its first argument on as the layer's width without checking it).
    """
    d = dict(d)
    rows = [[f, n, m, list(args)] for f, n, m, args in d['backbone'] + d['head']]
    c3k2_stand_ins = [row for row in rows if getattr(YAML_LAYERS.get(row[2]), 'parsed_as', None) is C3k2]
    for row in c3k2_stand_ins:
        if _scale(d) in _C3K2_SCALES:
            row[3][1:2] = [True]  # c3k, also where the YAML omits it
    if c3k2_stand_ins:
        for row in rows:
            if row[2] in _HEADS:
                row[2] = _current_head_name(row[2])
            elif row[2] in _SEGMENT_HEADS and not any(r[2] in _CLEARS_LEGACY for r in rows):
                LOGGER.warning(
                    f"emo.ultralytics: this model has no C3k2 of Ultralytics' own, so it builds the legacy (YOLOv8) "
                    f'{row[2]} head; keep one C3k2 row to get the current one'
                )
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
            if m_j == 'Index' and (f_j == i or (f_j == -1 and j == i + 1)):  # reads the backbone's list
                index = args_j[1] if len(args_j) > 1 else 0
                if not -len(channels) <= index < len(channels):
                    raise ValueError(
                        f'layer {j}: Index {index} of EMOBackbone {variant!r}, which returns {len(channels)} maps '
                        f'(P3/P4/P5: {channels}); use 0, 1 or 2'
                    )
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
    3. A layer equal to C3k2 gets C3k2's arguments, and a head built through :class:`_CurrentHead` is
       Ultralytics' own Detect in its current form (a model without a C3k2 of its own).
    4. Outside the wrapper our layers are not C2f.
    5. ``initialize_weights`` leaves BatchNorm subclasses alone (EMOBackbone's pretrained eps 1e-6).
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
        'head': [
            [-1, 1, 'Conv', [16, 1, 1]],
            [-1, 2, 'C3k2_iRMB', [16, False, 0.5, False, 1, True, 2.0, 0]],
            [[-1], 1, 'Detect', ['nc']],
        ],
    }
    try:
        layers, _ = _tasks.parse_model(probe, ch=3, verbose=False)
        shape = (layers[0].cv1.conv.in_channels, layers[0].cv2.conv.out_channels, len(layers[0].m))
        index_width = layers[2].conv.in_channels
        c3k2_shape = (layers[3].cv1.conv.in_channels, layers[3].cv2.conv.out_channels, len(layers[3].m))
        head = layers[4]
        current_head = type(head) is Detect and type(head.cv3[0][0]) is nn.Sequential  # legacy: a Conv
    except Exception as e:  # noqa: BLE001 - whatever a changed parse_model raises, the user gets one line
        raise _unsupported(
            f'parse_model cannot build C2f_iRMB, Index, C3k2_iRMB and Detect rows ({type(e).__name__}: {first_line(e)})'
        ) from e
    if type(layers[0]) is not C2f_iRMB or shape != (3, 16, 2) or index_width != 24:
        raise _unsupported(
            f"parse_model no longer gives C2f's channel and repeat arithmetic to equal layers, or Index its width: "
            f'(c1, c2, n) = {shape} and width after Index {index_width}, expected (3, 16, 2) and 24'
        )
    if type(layers[3]) is not C3k2_iRMB or c3k2_shape != (8, 8, 1):
        raise _unsupported(
            f"parse_model no longer gives C3k2's channel and repeat arithmetic to equal layers: (c1, c2, n) = "
            f'{c3k2_shape}, expected (8, 8, 1)'
        )
    if not current_head:
        raise _unsupported("a model whose only C3k2 rows are C3k2_iRMB does not get Ultralytics' current Detect")
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
    for name, layer in {**YAML_LAYERS, **_current_heads()}.items():
        setattr(_tasks, name, layer)  # parse_model resolves YAML names from this module's globals
    _set_parse_model(_wrap_parse_model(getattr(_tasks.parse_model, 'emo_original', _tasks.parse_model)))


def _unregister() -> None:
    """Leave Ultralytics as it was before :func:`_register`: its own parse_model, none of our names."""
    for name in list(vars(_tasks)):
        layer = vars(_tasks)[name]
        if YAML_LAYERS.get(name) is layer or isinstance(layer, _CurrentHead):
            delattr(_tasks, name)
    _set_parse_model(getattr(_tasks.parse_model, 'emo_original', _tasks.parse_model))
