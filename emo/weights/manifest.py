"""The weight manifest (weights/manifest.json): the released checkpoints of both families (EMO, EMOv2), where each
family comes from, and the official figures of each variant.

One file, packaged with the code as ``emo/weights/manifest.json`` (a link to ``weights/manifest.json`` in a checkout,
a copy in wheels), read by everything that needs a URL, a blob id, an accuracy or a parameter count.
"""

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

__all__ = [
    'HUB_WEIGHTS_FILE',
    'MANIFEST',
    'Family',
    'ReleasedWeights',
    'families',
    'hub_org',
    'official_figures',
    'origin_url',
    'default_weights',
    'weights_of',
    'released_entry',
    'released_weights',
]

MANIFEST = Path(__file__).with_name('manifest.json')
HUB_WEIGHTS_FILE = 'model.safetensors'  # the weights file of a Hub folder (emo convert, emo push, timm's loaders)


@dataclass(frozen=True)
class Family:
    """A model family: its paper and the repository (pinned to a commit) its weights are released in."""

    name: str  # 'emo', 'emo2': the variant names' prefix
    title: str  # 'EMO', 'EMOv2'
    paper: str
    arxiv: str
    venue: str
    repository: str
    commit: str


@dataclass(frozen=True)
class ReleasedWeights:
    """One manifest entry: a released checkpoint of one variant."""

    name: str  # 'emo_2m.in1k': the timm model name with its pretrained tag
    variant: str
    path: str  # inside the origin repository
    url: str
    git_blob_sha1: str
    dataset: str
    top1: float
    top5: Optional[float]  # None where the release gives none (EMOv2)
    hf_hub_id: Optional[str]  # once published
    distilled: Optional[str] = None  # how, for weights trained with knowledge distillation

    @property
    def tag(self) -> str:
        return self.name.split('.', 1)[1]


@functools.cache
def _read_manifest(path: Path) -> dict:
    return json.loads(path.read_text())


def manifest() -> dict:
    """The parsed manifest (read once per path)."""
    return _read_manifest(MANIFEST)


def families() -> Dict[str, Family]:
    """The model families by name (``'emo'``, ``'emo2'``)."""
    return {name: Family(name=name, **entry) for name, entry in manifest()['families'].items()}


def released_weights(family: Optional[str] = None) -> Dict[str, ReleasedWeights]:
    """The manifest's entries by name (``'emo_2m.in1k'``), of one family if ``family`` names one."""
    variants = manifest()['variants']
    return {
        name: ReleasedWeights(name=name, **entry)
        for name, entry in manifest()['weights'].items()
        if family is None or variants[entry['variant']]['family'] == family
    }


def official_figures() -> Dict[str, dict]:
    """Per variant, its family and the figures the paper and the official code give: params, GFLOPs (at
    ``img_size``, 224 unless given), training drop-path rate."""
    return manifest()['variants']


def weights_of(variant: str) -> List[ReleasedWeights]:
    """The released weights of ``variant``, in the manifest's order (the first is its default tag)."""
    return [e for e in released_weights().values() if e.variant == variant]


def default_weights(variant: str) -> Optional[ReleasedWeights]:
    """The weights ``pretrained=True`` loads for a bare variant name (its first tag), None if it has none."""
    return next(iter(weights_of(variant)), None)


def released_entry(name: str) -> ReleasedWeights:
    """The entry of ``'emo_2m.in1k'``, or of a bare variant name's default (first) tag."""
    entries = released_weights()
    default = default_weights(name) if name in official_figures() else None
    name = default.name if default else name
    if name not in entries:
        raise KeyError(f'no released weights named {name!r}; known: {sorted(entries)}')
    return entries[name]


def origin_url(name: str) -> str:
    """Download URL of released weights, honouring ``EMO_ORIGIN_URL`` (read at each call)."""
    entry = released_entry(name)
    base = os.environ.get('EMO_ORIGIN_URL')
    return f'{base.rstrip("/")}/{entry.path}' if base else entry.url


def hub_org() -> Optional[str]:
    """The Hugging Face Hub organisation that ``pretrained=True`` loads from, if ``EMO_HUB_ORG`` names one."""
    return os.environ.get('EMO_HUB_ORG') or None
