"""A generated YOLO-format data set (rectangles and ellipses on noise) for smoke tests and ``emo yolo compare`` demos.

``python scripts/yolo_shapes.py OUT --train 256 --val 64`` writes ``OUT/images/{train,val}``, ``OUT/labels/...`` and
``OUT/data.yaml``; the same arguments give the same images on any machine (one seeded generator).
"""

from pathlib import Path
from typing import Tuple

import numpy as np

from ..shapes import CLASS_NAMES, draw_shapes

__all__ = ['write_dataset']


def write_dataset(root: Path, num_train: int = 16, num_val: int = 8, sizes: Tuple[int, int] = (64, 96)) -> Path:
    """1-3 rectangles (class 0) and ellipses (class 1) per noise image of ``sizes`` px a side; returns data.yaml.

    ``root`` must not exist yet: a data set is never written over another.
    """
    root = Path(root)
    if root.exists():
        raise FileExistsError(f'{root} exists; give a new folder for the data set')
    low, high = sizes
    if not 32 <= low <= high:
        raise ValueError(f'image sizes must satisfy 32 <= low <= high, got {sizes}')
    rng = np.random.default_rng(0)
    for split, count in (('train', num_train), ('val', num_val)):
        (root / 'images' / split).mkdir(parents=True)
        (root / 'labels' / split).mkdir(parents=True)
        for k in range(count):
            image, _, shapes = draw_shapes(rng, low, high)
            w, h = image.size
            lines = [
                f'{s.cls} {(s.x0 + s.x1) / 2 / w:.6f} {(s.y0 + s.y1) / 2 / h:.6f} {(s.x1 - s.x0) / w:.6f} '
                f'{(s.y1 - s.y0) / h:.6f}'
                for s in shapes
            ]
            image.save(root / 'images' / split / f'{k}.jpg')
            (root / 'labels' / split / f'{k}.txt').write_text('\n'.join(lines) + '\n')
    data = root / 'data.yaml'
    names = ''.join(f'  {i}: {name}\n' for i, name in enumerate(CLASS_NAMES))
    data.write_text(f'path: {root.resolve()}\ntrain: images/train\nval: images/val\nnames:\n{names}')
    return data
