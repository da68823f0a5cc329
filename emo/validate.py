"""``python -m emo.validate``: the same as ``emo validate`` (see :mod:`emo.training.validate`)."""

import sys

if __name__ == '__main__':
    from .cli import main

    sys.exit(main(['validate', *sys.argv[1:]]))
