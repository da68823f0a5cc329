"""``python -m emo.train`` / ``torchrun -m emo.train``: the same as ``emo train`` (see :mod:`emo.training.train`)."""

import sys

from .training.train import RUN_FILES, build_parser, main  # the names emo 0.1.0's emo.train had

__all__ = ['RUN_FILES', 'build_parser', 'main']

if __name__ == '__main__':
    from .cli import main as cli_main

    sys.exit(cli_main(['train', *sys.argv[1:]]))
