"""A generated YOLO-format data set (rectangles and ellipses on noise) for smoke tests and ``emo yolo compare`` demos.

``python scripts/yolo_shapes.py OUT --train 256 --val 64`` writes ``OUT/images/{train,val}``, ``OUT/labels/...`` and
``OUT/data.yaml``; the same arguments give the same images on any machine (one seeded generator).
"""

from pathlib import Path
from typing import Tuple

import numpy as np
from PIL import Image, ImageDraw

__all__ = ['write_dataset']

CLASS_NAMES = ('rectangle', 'ellipse')


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
            w, h = (int(v) for v in rng.integers(low, high + 1, size=2))
            image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            draw, lines = ImageDraw.Draw(image), []
            for _ in range(int(rng.integers(1, 4))):
                cls = int(rng.integers(0, 2))
                bw, bh = int(rng.integers(12, w // 2)), int(rng.integers(12, h // 2))
                x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
                colour = tuple(int(c) for c in rng.integers(0, 256, 3))
                (draw.rectangle if cls == 0 else draw.ellipse)([x0, y0, x0 + bw, y0 + bh], fill=colour)
                lines.append(f'{cls} {(x0 + bw / 2) / w:.6f} {(y0 + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}')
            image.save(root / 'images' / split / f'{k}.jpg')
            (root / 'labels' / split / f'{k}.txt').write_text('\n'.join(lines) + '\n')
    data = root / 'data.yaml'
    names = ''.join(f'  {i}: {name}\n' for i, name in enumerate(CLASS_NAMES))
    data.write_text(f'path: {root.resolve()}\ntrain: images/train\nval: images/val\nnames:\n{names}')
    return data
