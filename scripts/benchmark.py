#!/usr/bin/env python
"""Same as ``emo bench``: EMO against the official arithmetic and timm peers, eager and ONNX Runtime.

Example: ``python scripts/benchmark.py --out-dir docs/benchmarks`` (``--help`` lists the options).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emo.cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main(['bench', *sys.argv[1:]]))
