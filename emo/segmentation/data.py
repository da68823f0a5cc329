"""Segmentation folders in the ADE20K layout (``images/SPLIT/NAME.jpg`` with ``annotations/SPLIT/NAME.png``), their
masks read as class indices, and the joint image + mask transforms of the papers' mmsegmentation pipeline.

Masks are single-channel PNGs whose pixel values are class indices: palette ('P', as Pascal VOC ships them), 8-bit
('L', ADE20K) or 16-bit. They are read as stored, never converted: ``convert('L')`` would map a palette mask's
indices through its colours. A mask that is not single-channel, whose size differs from its image, or that holds
a value that is no class and not the ignore index, is unreadable like a corrupt file: the sample is dropped from its
batch and listed, never replaced by another one.
"""

import logging
import os
from pathlib import Path
from typing import Callable, List, Optional, Tuple, Union

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..detection import IMAGENET_MEAN, IMAGENET_STD
from ..training.data import IMAGE_EXTENSIONS, Unreadable, printable, unreadable

__all__ = ['SegmentationFolder', 'check_segmentation_folder', 'train_transform', 'eval_transform', 'read_mask']

_logger = logging.getLogger(__name__)
MASK_MODES = ('P', 'L', 'I', 'I;16')  # single-channel modes whose values are the class indices


def _files(folder: Path, extensions: Tuple[str, ...]) -> Tuple[dict, List[str]]:
    """The files of ``folder`` with ``extensions`` by name stem, and the names of the other (not hidden) files.

    Two files of one stem (``x.jpg`` and ``x.png``) would pair one of them with the mask and drop the other unseen:
    a ValueError naming both.
    """
    by_stem, others = {}, []
    for name in sorted(os.listdir(folder)):
        if name.startswith('.') or (folder / name).is_dir():
            continue
        if not name.lower().endswith(extensions):
            others.append(name)
            continue
        stem = Path(name).stem
        if stem in by_stem:
            raise ValueError(
                f'{folder} holds {by_stem[stem].name} and {name}: both would be paired with the mask {stem}.png, '
                'so one of them would be left out; rename or move one'
            )
        by_stem[stem] = folder / name
    return by_stem, others


def _named(names: List[str], limit: int = 3) -> str:
    shown = ', '.join(names[:limit])
    return shown + (f' and {len(names) - limit} more' if len(names) > limit else '')


def check_segmentation_folder(root: Path, split: str) -> List[Tuple[Path, Path]]:
    """The (image, mask) pairs of ``root/images/split`` and ``root/annotations/split``, paired by file name stem;
    one clear error for a missing folder, an empty one, an image without its mask or two images of one stem, and a
    warning naming the files left out (other extensions, masks without an image)."""
    images_dir, masks_dir = Path(root) / 'images' / split, Path(root) / 'annotations' / split
    for folder in (images_dir, masks_dir):
        if not folder.is_dir():
            raise FileNotFoundError(
                f'{folder} does not exist: expected {images_dir}/NAME.jpg with masks {masks_dir}/NAME.png '
                '(the ADE20K layout; choose the split folder names with --train-split / --val-split)'
            )
    (images, other_images), (masks, other_masks) = _files(images_dir, IMAGE_EXTENSIONS), _files(masks_dir, ('.png',))
    if not images:
        raise ValueError(f'{images_dir} holds no images ({", ".join(IMAGE_EXTENSIONS)})')
    unmatched = [path.name for stem, path in images.items() if stem not in masks]
    if unmatched:
        raise ValueError(
            f'{len(unmatched)} image(s) in {images_dir} have no mask NAME.png in {masks_dir} (first: {unmatched[0]}): '
            'add the masks or move those images out'
        )
    lone_masks = [path.name for stem, path in masks.items() if stem not in images]
    for folder, names, what in (
        (images_dir, other_images, f'not images ({", ".join(IMAGE_EXTENSIONS)})'),
        (masks_dir, other_masks, 'not .png masks'),
        (masks_dir, lone_masks, 'masks without an image'),
    ):
        if names:
            _logger.warning('left out %d file(s) of %s, %s: %s', len(names), folder, what, printable(_named(names)))
    return [(path, masks[stem]) for stem, path in images.items()]


def read_mask(path: Union[str, Path]) -> np.ndarray:
    """A mask's class indices as stored (H, W), int64; ValueError for a mask that is not single-channel."""
    with Image.open(path) as mask:
        if mask.mode not in MASK_MODES:
            raise ValueError(
                f'mask mode {mask.mode!r} is not single-channel: masks hold one class index per pixel '
                f'({"/".join(MASK_MODES)} PNGs), not colours'
            )
        return np.asarray(mask, dtype=np.int64)


class SegmentationFolder(torch.utils.data.Dataset):
    """Images and masks of one split; ``transform(image, mask)`` takes torchvision ``tv_tensors``.

    ``reduce_zero_label`` (ADE20K): label 0 is "other" and ignored, labels 1..C become 0..C-1. A sample whose image
    or mask cannot be read, or whose mask is not of its image's size or holds a label outside ``0..num_classes-1``
    and other than ``ignore_index``, comes back as :class:`~emo.training.data.Unreadable`.
    """

    def __init__(
        self,
        root: Path,
        split: str,
        num_classes: int,
        transform: Optional[Callable] = None,
        ignore_index: int = 255,
        reduce_zero_label: bool = False,
    ):
        self.samples = check_segmentation_folder(root, split)
        self.num_classes, self.ignore_index, self.reduce_zero_label = num_classes, ignore_index, reduce_zero_label
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def _labels(self, mask_path: Path) -> np.ndarray:
        stored = read_mask(mask_path)
        labels = stored
        if self.reduce_zero_label:
            # 0 is ignored and k becomes k-1; a stored ignore value (255) stays ignored unless it is a class after
            # the shift (stored 150 with --ignore-index 150 is class 149)
            labels = np.where(stored == 0, self.ignore_index, stored - 1)
            labels[(stored == self.ignore_index) & (stored - 1 >= self.num_classes)] = self.ignore_index
        bad = (labels >= self.num_classes) & (labels != self.ignore_index)
        if bad.any():
            value = int(stored[bad][0])
            raise ValueError(
                f'mask value {value} is no class of 0..{self.num_classes - 1}'
                f'{" (after --reduce-zero-label)" if self.reduce_zero_label else ""} and not the ignore index '
                f'{self.ignore_index}: check --num-classes'
            )
        return labels

    def __getitem__(self, index: int) -> Union[Tuple[torch.Tensor, torch.Tensor], Unreadable]:
        image_path, mask_path = self.samples[index]
        try:
            with Image.open(image_path) as img:
                image = img.convert('RGB')  # decodes fully: a truncated file fails here
        except Exception as e:  # noqa: BLE001 - any decoder error means: skip this sample
            return unreadable(image_path, e)
        try:
            labels = self._labels(mask_path)
        except Exception as e:  # noqa: BLE001
            return unreadable(mask_path, e)
        if labels.shape != (image.height, image.width):
            return unreadable(
                mask_path, f'mask is {labels.shape[1]}x{labels.shape[0]}, its image {image.width}x{image.height}'
            )
        sample = tv_tensors.Image(v2.functional.pil_to_tensor(image)), tv_tensors.Mask(torch.from_numpy(labels))
        return self.transform(*sample) if self.transform else sample


def _to_model_input() -> List[v2.Transform]:
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, 'others': None}, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]


def train_transform(crop_size: int, ignore_index: int = 255) -> v2.Compose:
    """mmsegmentation's training pipeline, photometric distortion aside: the shorter side resized to a random
    0.5x..2x of ``crop_size``, a random ``crop_size`` square (padded with the ignore index), a random flip."""
    return v2.Compose(
        [
            v2.RandomResize(crop_size // 2, crop_size * 2),
            v2.RandomCrop(crop_size, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: ignore_index}),
            v2.RandomHorizontalFlip(),
            *_to_model_input(),
        ]
    )


class _ImageOnly(v2.Transform):
    """Resize the image's shorter side to ``size``; the mask stays at its size, where the metrics are computed."""

    def __init__(self, size: int):
        super().__init__()
        self.resize = v2.Resize(size)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.resize(image), mask


def eval_transform(size: int) -> v2.Compose:
    """The papers' whole-image inference: the shorter side resized to ``size``; metrics at the mask's own size."""
    return v2.Compose([_ImageOnly(size), *_to_model_input()])
