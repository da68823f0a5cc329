"""A generated segmentation data set in the ADE20K layout (rectangles and ellipses on noise, palette PNG masks), for
smoke tests and the worked example of docs/segmentation.md.

``python scripts/segment_shapes.py OUT --train 128 --val 32`` writes ``OUT/images/{training,validation}/NAME.jpg``
and ``OUT/annotations/{training,validation}/NAME.png``: class 0 background, 1 rectangle (reddish), 2 ellipse
(bluish). The same arguments give the same files on any machine (one seeded generator, the drawing of
:mod:`emo.shapes`).
"""

from pathlib import Path
from typing import Tuple

import numpy as np

from ..shapes import CLASS_NAMES, draw_shapes
from .predict import palette

__all__ = ['SEGMENT_CLASSES', 'write_dataset']

SEGMENT_CLASSES = ('background', *CLASS_NAMES)
# a colour family per class (red rectangles, blue ellipses), so that a short training run can learn the classes
CLASS_COLOURS = ((200, 30, 20), (20, 50, 200))


def write_dataset(root: Path, num_train: int = 32, num_val: int = 8, sizes: Tuple[int, int] = (64, 96)) -> Path:
    """Write the data set into ``root``, which must not exist yet (a data set is never written over another)."""
    root = Path(root)
    if root.exists():
        raise FileExistsError(f'{root} exists; give a new folder for the data set')
    low, high = sizes
    if not 32 <= low <= high:
        raise ValueError(f'image sizes must satisfy 32 <= low <= high, got {sizes}')
    colours = palette(len(SEGMENT_CLASSES)).flatten().tolist()
    rng = np.random.default_rng(0)
    for split, count in (('training', num_train), ('validation', num_val)):
        (root / 'images' / split).mkdir(parents=True)
        (root / 'annotations' / split).mkdir(parents=True)
        for k in range(count):
            image, mask, _ = draw_shapes(rng, low, high, CLASS_COLOURS)
            mask.putpalette(colours)  # as Pascal VOC ships its masks: indices, shown in the palette's colours
            image.save(root / 'images' / split / f'{k:05d}.jpg', quality=95)
            mask.save(root / 'annotations' / split / f'{k:05d}.png')
    return root
