"""A generated YOLO data set for short Ultralytics runs, offline (also used by data/legacy/make_legacy.py)."""

import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def write_dataset(root: Path, num_train: int = 16, num_val: int = 8) -> Path:
    """Rectangles (class 0) and ellipses (class 1) on noise, 64-96 px, in YOLO format; returns data.yaml."""
    rng = np.random.default_rng(0)
    for split, count in (('train', num_train), ('val', num_val)):
        (root / 'images' / split).mkdir(parents=True)
        (root / 'labels' / split).mkdir(parents=True)
        for k in range(count):
            w, h = (int(v) for v in rng.integers(64, 97, size=2))
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
    data.write_text(f'path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: rectangle\n  1: ellipse\n')
    return data


def offline_font(config_dir: Path) -> None:
    """Ultralytics checks for Arial.ttf (downloading it if missing) when it reads a data set: give it a local font."""
    import matplotlib

    font = Path(matplotlib.get_data_path()) / 'fonts' / 'ttf' / 'DejaVuSans.ttf'
    config_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(font, config_dir / 'Arial.ttf')
