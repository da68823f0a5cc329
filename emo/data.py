"""ImageNet-style folders (``train/CLASS/*.jpg``, ``val/CLASS/*.jpg``): checks before training, and a dataset that
skips unreadable images with one warning each instead of crashing a run."""

import logging
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from PIL import Image
from timm.data import create_dataset

__all__ = ['IMAGE_EXTENSIONS', 'check_image_folders', 'class_folders', 'SkippingImageFolder', 'skipped_images']

_logger = logging.getLogger(__name__)
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff', '.gif', '.ppm')
SKIPPED_FILE = 'skipped_images.txt'


def class_folders(root: Path, role: str) -> Dict[str, int]:
    """Image counts of the class folders under ``root``; a clear error for a missing or empty folder."""
    if not root.is_dir():
        raise FileNotFoundError(f'{role} folder {root} does not exist: expected {root}/CLASS_NAME/IMAGE files')
    counts = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_dir():
            counts[entry.name] = sum(
                1 for _, _, files in os.walk(entry.path) for f in files if f.lower().endswith(IMAGE_EXTENSIONS)
            )
    if not counts:
        raise ValueError(f'{role} folder {root} has no class folders: expected {root}/CLASS_NAME/IMAGE files')
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        raise ValueError(f'{role} class folder(s) {empty} under {root} hold no images ({", ".join(IMAGE_EXTENSIONS)})')
    return counts


def check_image_folders(train_dir: Optional[Path], val_dir: Optional[Path]) -> List[str]:
    """Check the folders before any training starts and return the class names (sorted train folder names)."""
    classes = list(class_folders(train_dir, 'training')) if train_dir is not None else None
    if val_dir is not None:
        val_classes = class_folders(val_dir, 'validation')
        if classes is not None:
            missing = sorted(set(val_classes) - set(classes))
            if missing:
                raise ValueError(
                    f'validation class(es) {missing} have no training folder in {train_dir}: the model could never '
                    'predict them; add training images or remove those folders'
                )
        else:
            classes = list(val_classes)
    return classes


class SkippingImageFolder(torch.utils.data.Dataset):
    """The samples of a class-folder tree (indexed by timm's ``create_dataset``), decoded to RGB and transformed.

    An image that cannot be read or decoded is replaced by the next readable one, once warned about by name and
    appended to ``record_dir/skipped_images.txt`` (shared by data-loader workers and processes), so that a run can
    report the count at its end.
    """

    def __init__(
        self,
        root: Path,
        transform: Optional[Callable] = None,
        class_map: Optional[Dict[str, int]] = None,
        record_dir: Optional[Path] = None,
    ):
        self.root = Path(root)
        self.samples: List[Tuple[str, int]] = create_dataset(
            '', root=str(root), class_map=class_map or ''
        ).reader.samples
        self.transform = transform
        self.record = Path(record_dir) / SKIPPED_FILE if record_dir else None

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> List[int]:
        return [target for _, target in self.samples]

    def _skip(self, index: int, error: Exception) -> None:
        name = str(Path(self.samples[index][0]).resolve())
        if self.record is not None:
            seen = self.record.is_file() and name in self.record.read_text().splitlines()
            if seen:
                return
            with open(self.record, 'a') as f:  # one short append: whole lines even with concurrent writers
                f.write(name + '\n')
        _logger.warning('skipping unreadable image %s (%s)', name, error)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        for attempt in range(len(self)):
            i = (index + attempt) % len(self)
            path, target = self.samples[i]
            try:
                with Image.open(path) as img:
                    img = img.convert('RGB')  # decodes fully: truncated files fail here, not later
            except Exception as e:  # noqa: BLE001 - any decoder error means: skip this file
                self._skip(i, e)
                continue
            return (self.transform(img) if self.transform else img), target
        raise RuntimeError(f'no readable image in {self.root}')


def skipped_images(record_dir: Path) -> Sequence[str]:
    record = Path(record_dir) / SKIPPED_FILE
    return sorted(set(record.read_text().splitlines())) if record.is_file() else []
