"""ImageNet-style folders (``train/CLASS/*.jpg``, ``val/CLASS/*.jpg``): checks before training, and a dataset whose
unreadable images are dropped from their batches (warned about once each and listed) instead of crashing a run."""

import logging
import os
from pathlib import Path
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import torch
from PIL import Image
from torch.utils.data import DataLoader, default_collate

from ..files import atomic_write_text

__all__ = [
    'IMAGE_EXTENSIONS',
    'images_under',
    'SKIPPED_FILE',
    'check_image_folders',
    'class_folders',
    'Unreadable',
    'ReadableBatch',
    'SkippingImageFolder',
    'collate_readable',
    'readable_loader',
    'SkippedImages',
    'printable',
    'unreadable',
]

_logger = logging.getLogger(__name__)
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff', '.gif', '.ppm')
SKIPPED_FILE = 'skipped_images.txt'


def _skipped_folder(name: str) -> bool:
    # hidden folders (.ipynb_checkpoints, .git) and macOS archive debris hold no classes and no images of a class
    return name.startswith('.') or name == '__MACOSX'


def _class_names(root: Path) -> List[str]:
    """The class folders directly under ``root``, sorted by name."""
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not _skipped_folder(e.name))


def images_under(folder: str) -> List[str]:
    """The image files anywhere below one class folder, sorted: what the checks count and the dataset holds.

    Linked folders are followed, each real folder once, except links up the tree (to a folder that holds this
    class folder): those would loop forever, or bring in the images of the other classes.
    """
    images, seen = [], set()
    class_root = os.path.realpath(folder)
    for dirpath, dirnames, files in os.walk(folder, followlinks=True):
        stat = os.stat(dirpath)
        real = os.path.realpath(dirpath)
        if (stat.st_dev, stat.st_ino) in seen or class_root.startswith(real.rstrip(os.sep) + os.sep):
            dirnames[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not _skipped_folder(d))
        images.extend(os.path.join(dirpath, name) for name in files if name.lower().endswith(IMAGE_EXTENSIONS))
    return sorted(images)


def class_folders(root: Path, role: str) -> Dict[str, int]:
    """Image counts of the class folders under ``root``; a clear error for a missing or empty folder."""
    if not root.is_dir():
        raise FileNotFoundError(f'{role} folder {root} does not exist: expected {root}/CLASS_NAME/IMAGE files')
    counts = {name: len(images_under(str(root / name))) for name in _class_names(root)}
    if not counts:
        raise ValueError(f'{role} folder {root} has no class folders: expected {root}/CLASS_NAME/IMAGE files')
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        raise ValueError(f'{role} class folder(s) {empty} under {root} hold no images ({", ".join(IMAGE_EXTENSIONS)})')
    return counts


def check_image_folders(train_dir: Optional[Path], val_dir: Optional[Path]) -> List[str]:
    """Check the folders before any training starts and return the class names (sorted train folder names)."""
    classes = list(class_folders(train_dir, 'training')) if train_dir is not None else None
    if classes is not None and len(classes) < 2:
        raise ValueError(
            f'{train_dir} has one class folder ({classes[0]!r}); training needs at least two: with one class every '
            'prediction is right and top-1 would read 100% whatever the model learned. Add a folder per class'
        )
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


def printable(text: str) -> str:
    """``text`` with the bytes of a file name that is not UTF-8 written as ``\\xNN`` escapes: Python hands such names
    over as lone surrogates, which no UTF-8 file, log or CSV can hold."""
    return text.encode('utf-8', 'surrogateescape').decode('utf-8', 'backslashreplace')


def unreadable(path: Union[str, os.PathLike], error: Union[Exception, str]) -> 'Unreadable':
    """The :class:`Unreadable` record of ``path``: its absolute path with links resolved where they resolve (a link
    loop stays as named; ``Path.resolve`` raises on it), name and error printable."""
    why = error if isinstance(error, str) else f'{type(error).__name__}: {error}'
    return Unreadable(printable(os.path.realpath(path)), printable(why))


class Unreadable(NamedTuple):
    """A sample whose file could not be read or decoded: it is dropped from its batch, never replaced."""

    path: str
    error: str


class ReadableBatch(NamedTuple):
    """What :func:`collate_readable` makes of a batch: the readable samples and the unreadable ones it dropped.

    ``images`` and ``targets`` are None when no sample of the batch was readable.
    """

    images: Optional[torch.Tensor]
    targets: Optional[torch.Tensor]
    skipped: List[Unreadable]


class SkippingImageFolder(torch.utils.data.Dataset):
    """The images of a class-folder tree (``ROOT/CLASS/**/*.jpg``), decoded to RGB and transformed.

    ``class_map`` gives the class folders and their indices (default: all folders, sorted by name, from 0); the
    images of each class folder are found at any depth below it, with the extensions of :data:`IMAGE_EXTENSIONS`.

    An image that cannot be read or decoded comes back as :class:`Unreadable`; :func:`collate_readable` drops it
    from its batch. Substituting another sample would count images that are not there and, in training, repeat
    another one (often of another class) in its place.
    """

    def __init__(self, root: Path, transform: Optional[Callable] = None, class_map: Optional[Dict[str, int]] = None):
        self.root = Path(root)
        if class_map is None:  # the class folders, sorted by name, as check_image_folders() returns them
            class_map = {name: i for i, name in enumerate(_class_names(self.root))}
        # not timm's folder reader: it knows png/jpg/jpeg only, so a class of .webp files would vanish and renumber
        # the classes after it, and it labels an image by its innermost folder, so CLASS/sub/x.jpg would be dropped
        self.samples: List[Tuple[str, int]] = [
            (path, index)
            for name, index in sorted(class_map.items(), key=lambda item: item[1])
            if (self.root / name).is_dir()
            for path in images_under(str(self.root / name))
        ]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def targets(self) -> List[int]:
        return [target for _, target in self.samples]

    def __getitem__(self, index: int) -> Union[Tuple[torch.Tensor, int], Unreadable]:
        path, target = self.samples[index]
        try:
            with Image.open(path) as img:
                img = img.convert('RGB')  # decodes fully: truncated files fail here, not later
        except Exception as e:  # noqa: BLE001 - any decoder error means: skip this file
            return unreadable(path, e)
        return (self.transform(img) if self.transform else img), target


def collate_readable(samples: Sequence[Union[Tuple[torch.Tensor, int], Unreadable]]) -> ReadableBatch:
    """``default_collate`` of the readable samples; the unreadable ones are listed, not filled in."""
    skipped = [s for s in samples if isinstance(s, Unreadable)]
    readable = [s for s in samples if not isinstance(s, Unreadable)]
    if not readable:
        return ReadableBatch(None, None, skipped)
    images, targets = default_collate(readable)
    return ReadableBatch(images, targets, skipped)


def readable_loader(dataset: SkippingImageFolder, **kwargs) -> DataLoader:
    """A DataLoader over ``dataset`` whose batches are :class:`ReadableBatch` (see :func:`collate_readable`)."""
    return DataLoader(dataset, collate_fn=collate_readable, **kwargs)


class SkippedImages:
    """The unreadable images that one command met: each warned about once, then written out at its end.

    The record belongs to the run that writes it: a run starts with an empty one and replaces the file, so the
    list never shows an earlier run's images as its own.
    """

    def __init__(self) -> None:
        self.errors: Dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.errors)

    def add(self, skipped: Iterable[Unreadable]) -> None:
        for item in skipped:  # printable already: every record is made by unreadable()
            if item.path not in self.errors:
                self.errors[item.path] = item.error
                _logger.warning('skipping unreadable image %s (%s)', item.path, item.error)

    def update(self, paths: Iterable[str]) -> None:
        """Merge paths met by other processes (already warned about there)."""
        for path in paths:
            self.errors.setdefault(path, '')

    def write(self, path: Path) -> None:
        """Write the sorted list to ``path``, or remove an earlier run's ``path`` when nothing was skipped."""
        if not self.errors:
            Path(path).unlink(missing_ok=True)
            return
        atomic_write_text(path, ''.join(f'{p}\n' for p in sorted(self.errors)))
