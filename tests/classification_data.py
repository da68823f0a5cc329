"""A small generated ImageNet-style folder set: four learnable classes of colour and texture patterns."""

from pathlib import Path
from typing import Dict

import numpy as np
from PIL import Image

CLASSES = ('red_blob', 'green_blob', 'h_stripes', 'v_stripes')


def _image(label: str, rng: np.random.Generator, size: int) -> np.ndarray:
    img = rng.uniform(0.3, 0.6, (size, size, 3))
    if label.endswith('blob'):
        cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
        r = rng.integers(size // 6, size // 3)
        yy, xx = np.mgrid[:size, :size]
        colour = [0.9, 0.1, 0.1] if label == 'red_blob' else [0.1, 0.85, 0.1]
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = colour
    else:
        period = int(rng.integers(4, 9))
        phase = int(rng.integers(0, period))
        line = ((np.arange(size) + phase) // (period // 2)) % 2 == 0
        mask = line[:, None] if label == 'h_stripes' else line[None, :]
        img = np.where(np.broadcast_to(mask, (size, size))[..., None], img * 0.3, img)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_image_folders(
    root: Path, train_per_class: int = 24, val_per_class: int = 8, size: int = 64, seed: int = 0
) -> Dict[str, Path]:
    """Write root/train/CLASS/*.png and root/val/CLASS/*.png; returns the two folders."""
    rng = np.random.default_rng(seed)
    folders = {}
    for split, count in (('train', train_per_class), ('val', val_per_class)):
        for label in CLASSES:
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(_image(label, rng, size)).save(folder / f'{i:03d}.png')
        folders[split] = root / split
    return folders
