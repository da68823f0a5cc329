"""EMO, EMOv2 and their blocks as Ultralytics YOLO layers: ``import emo.ultralytics`` and name them in model YAMLs.

Ultralytics (AGPL-3.0) is an optional extra (``pip install -e ".[yolo]"``); nothing else in ``emo`` imports it.

YAML layers, usable after the import in any YAML that Ultralytics' own ``parse_model`` reads:

- ``iRMB``: ``[c2, exp_ratio=2.0, dim_head=32, window_size=7, kernel_size=3, norm='bn']``, a stack of ``n``
  :class:`emo.models.IRMB` blocks with grid-window attention; it keeps the width when the scaled ``c2`` equals
  its input, and then has both shortcuts.
- ``C2f_iRMB``: ``[c2, shortcut=True, exp_ratio=2.0, dim_head=32, window_size=7, kernel_size=3, norm='bn', e=0.5]``,
  Ultralytics' C2f split/concat layout whose ``n`` bottlenecks are IRMB blocks.
- ``C3k2_iRMB``: ``[c2, c3k=False, e=0.5, attn=False, g=1, shortcut=True, exp_ratio=2.0, dim_head=32,
  window_size=7, kernel_size=3, norm='bn']``, a drop-in for YOLO11's C3k2 (C3k2's arguments in C3k2's order).
- ``i2RMB``, ``C2f_i2RMB`` and ``C3k2_i2RMB``: the same arguments, with EMOv2's block: hybrid window attention
  (strided-grid and contiguous windows over one qk/v, the values expanded before the attention) and a layer
  scale in every block.
- ``EMOBackbone``: ``[variant='emo_1m', pretrained=False, drop_path_rate=0.0]``, the timm EMO or EMOv2 feature
  extractor (``variant='emo2_1m'`` ...) returning ``[P3/8, P4/16, P5/32]``; pick the maps with Ultralytics'
  ``Index`` layer. First layer only.

The layers are in :mod:`emo.ultralytics.layers`, the shipped YAMLs and their names in
:mod:`emo.ultralytics.configs`, how Ultralytics' model builder gets to use them in :mod:`emo.ultralytics.parsing`
(imported here: importing this package registers them), and the ``emo yolo`` command in
:mod:`emo.ultralytics.cli`.

Trained checkpoints (``best.pt``) pickle the layers by the module path ``emo.ultralytics`` (set below, so that
moving code between the files here never breaks a saved model): unpickling imports this package, so a fresh
process loads them with ``YOLO('best.pt')`` even without importing it first (it must have ``emo`` installed;
``ULTRALYTICS_SAFE_LOAD=1``'s allow-list refuses classes outside Ultralytics and torch).
"""

try:
    import ultralytics  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'emo.ultralytics needs Ultralytics (AGPL-3.0, an optional extra of emo): pip install -e ".[yolo]"'
    ) from e

from . import parsing
from .configs import CFG_DIR, SCALES, cfg, configs
from .layers import (
    C2f_i2RMB,
    C2f_iRMB,
    C3k2_i2RMB,
    C3k2_iRMB,
    C3k_iRMB,
    EMOBackbone,
    _BackboneBatchNorm2d,
    attention_dim_head,
    i2RMB,
    iRMB,
)
from .parsing import SUPPORTED_ULTRALYTICS

__all__ = [
    'iRMB', 'C2f_iRMB', 'C3k2_iRMB', 'i2RMB', 'C2f_i2RMB', 'C3k2_i2RMB', 'C3k_iRMB', 'EMOBackbone', 'cfg', 'configs',
    'attention_dim_head', 'CFG_DIR', 'SCALES', 'SUPPORTED_ULTRALYTICS',
]  # fmt: skip

# the checkpoint name of every class a trained model may hold (emo 0.1 checkpoints name these too)
for _layer in (iRMB, C2f_iRMB, C3k2_iRMB, i2RMB, C2f_i2RMB, C3k2_i2RMB, C3k_iRMB, EMOBackbone, _BackboneBatchNorm2d):
    _layer.__module__ = __name__
del _layer

parsing._register()
try:
    parsing._check_assumptions()
except ImportError:
    parsing._unregister()  # an Ultralytics we do not fit keeps working for everything else
    raise
