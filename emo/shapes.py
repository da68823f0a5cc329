"""Generated pictures of rectangles and ellipses on noise, the one drawing behind the smoke-test and demo data sets
(``emo.ultralytics.shapes``: YOLO boxes; ``emo.segmentation.shapes``: PNG masks)."""

import argparse
import sys
from pathlib import Path
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

__all__ = ['CLASS_NAMES', 'Shape', 'draw_shapes', 'script_main']

CLASS_NAMES = ('rectangle', 'ellipse')


class Shape(NamedTuple):
    """One drawn shape: its class (an index into :data:`CLASS_NAMES`) and its box in pixels, corners included."""

    cls: int
    x0: int
    y0: int
    x1: int
    y1: int


def draw_shapes(
    rng: np.random.Generator, low: int, high: int, class_colours: Optional[Sequence[Tuple[int, int, int]]] = None
) -> Tuple[Image.Image, Image.Image, List[Shape]]:
    """An RGB noise picture ``low..high`` px a side with 1-3 filled shapes, drawn in order.

    Each shape has a random colour, or with ``class_colours`` its class's colour, shifted by up to 1/8 of the
    random one. Returns the picture, its class mask (mode 'P', 0 background, 1 + the class of the shape drawn last
    at each pixel) and the shapes. The draws from ``rng`` are the same whatever the caller keeps.
    """
    w, h = (int(v) for v in rng.integers(low, high + 1, size=2))
    image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    mask = Image.new('P', (w, h), 0)
    draw, draw_mask, shapes = ImageDraw.Draw(image), ImageDraw.Draw(mask), []
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(0, 2))
        bw, bh = int(rng.integers(12, w // 2)), int(rng.integers(12, h // 2))
        x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if class_colours is not None:
            colour = tuple(min(255, base + c // 8) for base, c in zip(class_colours[cls], colour))
        box = [x0, y0, x0 + bw, y0 + bh]
        (draw.rectangle if cls == 0 else draw.ellipse)(box, fill=colour)
        (draw_mask.rectangle if cls == 0 else draw_mask.ellipse)(box, fill=cls + 1)
        shapes.append(Shape(cls, *box))
    return image, mask, shapes


def script_main(write_dataset: Callable[..., Path], prog: str, train: int, val: int, sizes: Tuple[int, int]) -> None:
    """The command line of a ``scripts/*_shapes.py``: ``OUT [--train N] [--val N] [--min-size PX] [--max-size PX]``,
    passed to ``write_dataset(out, train, val, (min_size, max_size))``; an error is one line."""
    parser = argparse.ArgumentParser(
        prog=prog, description=f'Write the generated data set of {write_dataset.__module__}.'
    )
    parser.add_argument('out', type=Path, help='new folder for the data set')
    parser.add_argument('--train', type=int, default=train, help='training images')
    parser.add_argument('--val', type=int, default=val, help='validation images')
    parser.add_argument('--min-size', type=int, default=sizes[0], help='smallest image side (px)')
    parser.add_argument('--max-size', type=int, default=sizes[1], help='largest image side (px)')
    args = parser.parse_args()
    try:
        print(write_dataset(args.out, args.train, args.val, (args.min_size, args.max_size)))
    except (OSError, ValueError) as e:
        sys.exit(f'{prog}: error: {e}')
