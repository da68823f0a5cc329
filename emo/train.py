"""``python -m emo.train`` / ``torchrun -m emo.train``: the same as ``emo train`` (see :mod:`emo.training.train`)."""

import sys

if __name__ == '__main__':
    from .cli import main

    sys.exit(main(['train', *sys.argv[1:]]))
