"""``emo segment train | validate | export``: each subcommand runs the ``main`` of its module."""

import importlib
from typing import List, Optional

__all__ = ['main']

_SUBCOMMANDS = {
    'train': 'emo.segmentation.train',
    'validate': 'emo.segmentation.validate',
    'export': 'emo.segmentation.export',
}
USAGE = 'usage: emo segment {train,validate,export} ... (emo segment train --help)'


def main(argv: Optional[List[str]] = None):
    argv = list(argv or [])
    if argv[:1] in (['-h'], ['--help']):
        print(USAGE)
        return 0
    if not argv or argv[0] not in _SUBCOMMANDS:
        raise ValueError(f'{USAGE}; got {" ".join(argv[:1]) or "nothing"}')
    return importlib.import_module(_SUBCOMMANDS[argv[0]]).main(argv[1:])
