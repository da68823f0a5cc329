"""``python -m emo.cli``: the ``emo`` command."""

import sys

from .main import main

sys.exit(main())
