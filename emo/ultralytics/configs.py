"""The shipped model YAMLs (``emo/ultralytics/cfg``): their names at each scale, and the path to give ``YOLO()``."""

import re
from pathlib import Path
from typing import List, Optional

__all__ = ['CFG_DIR', 'SCALES', 'configs', 'cfg', 'shipped_cfg']

CFG_DIR = Path(__file__).parent / 'cfg'
SCALES = ('n', 's', 'm', 'l', 'x')
# a file holds every scale of one Ultralytics generation: yolov8-*.yaml, yolo11-*.yaml, yolo26-*.yaml
_FILE_NAME = re.compile(r'^(yolov8|yolo11|yolo26)-(.+)$')
_MODEL_NAME = re.compile(r'^(yolov8|yolo11|yolo26)([nslmx]?)-(.+)$')


def _stem(name: str) -> str:
    return name[:-5] if name.endswith('.yaml') else name


def configs(scale: str = 'n') -> List[str]:
    """Names of the shipped model YAMLs at a scale ('n', 's', 'm', 'l', 'x'), for :func:`cfg`."""
    if scale not in SCALES:
        raise ValueError(f'scale must be one of {SCALES}, got {scale!r}')
    names = (_FILE_NAME.match(p.stem) for p in CFG_DIR.glob('*.yaml'))
    return sorted(f'{m[1]}{scale}-{m[2]}' for m in names if m)


def shipped_cfg(name: str) -> Optional[str]:
    """:func:`cfg` of ``name`` if it names a shipped YAML (with or without ``.yaml``), else None."""
    match = _MODEL_NAME.match(_stem(name))
    if not match or not (CFG_DIR / f'{match[1]}-{match[3]}.yaml').is_file():
        return None
    return str(CFG_DIR / f'{_stem(name)}.yaml')


def cfg(name: str) -> str:
    """The model YAML path to give ``YOLO()``, e.g. ``cfg('yolo11n-sppf-irmb')``.

    As with Ultralytics' own ``yolo11n.yaml``, the scale letter is part of the name and the file on disk holds all
    scales (``yolo11-sppf-irmb.yaml``): the returned ``.../yolo11n-sppf-irmb.yaml`` need not exist, Ultralytics
    reads the scale from it and loads the file without the letter. A name without a letter gives that file, which
    Ultralytics builds at its first scale (n) with a warning.
    """
    path = shipped_cfg(name)
    if path is None:
        raise ValueError(f'no shipped YAML {name!r}; available: {configs()} (any scale letter of {SCALES})')
    return path
