"""``python -m emo.validate``: the same as ``emo validate`` (see :mod:`emo.training.validate`)."""

import sys

from .training.validate import build_parser, main  # the names emo 0.1.0's emo.validate had

__all__ = ['build_parser', 'main']

if __name__ == '__main__':
    from .cli import main as cli_main

    sys.exit(cli_main(['validate', *sys.argv[1:]]))
