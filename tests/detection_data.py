"""A small generated detection data set: coloured rectangles and discs on noise, with their boxes."""

from typing import Dict, List, Tuple

import torch

CLASSES = ('rectangle', 'disc')  # labels 1 and 2; 0 is torchvision's background


def make_image(generator: torch.Generator, size: int = 128, max_objects: int = 3) -> Tuple[torch.Tensor, Dict]:
    """A float image in [0, 1] with 1..max_objects non-overlapping objects, and its torchvision target."""
    img = 0.35 + 0.15 * torch.rand(3, size, size, generator=generator)
    boxes: List[List[float]] = []
    labels: List[int] = []
    count = int(torch.randint(1, max_objects + 1, (1,), generator=generator))
    for _ in range(50):  # rejection sampling for non-overlapping placements
        if len(boxes) == count:
            break
        side = int(torch.randint(size // 6, size // 3, (1,), generator=generator))
        x0, y0 = (int(v) for v in torch.randint(0, size - side, (2,), generator=generator))
        box = [x0, y0, x0 + side, y0 + side]
        if any(not (box[2] <= b[0] or b[2] <= box[0] or box[3] <= b[1] or b[3] <= box[1]) for b in boxes):
            continue
        label = int(torch.randint(1, 3, (1,), generator=generator))
        if label == 1:  # a reddish rectangle, full box
            img[:, y0 : y0 + side, x0 : x0 + side] = torch.tensor([0.9, 0.15, 0.1])[:, None, None]
        else:  # a bluish disc inscribed in the box
            yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing='ij')
            r = (side - 1) / 2
            mask = (yy - r) ** 2 + (xx - r) ** 2 <= r**2
            patch = img[:, y0 : y0 + side, x0 : x0 + side]
            patch[:, mask] = torch.tensor([0.1, 0.2, 0.9])[:, None]
        boxes.append([float(v) for v in box])
        labels.append(label)
    target = {'boxes': torch.tensor(boxes, dtype=torch.float32), 'labels': torch.tensor(labels, dtype=torch.int64)}
    return img, target


def make_dataset(count: int, seed: int, size: int = 128) -> List[Tuple[torch.Tensor, Dict]]:
    g = torch.Generator().manual_seed(seed)
    return [make_image(g, size) for _ in range(count)]
