"""The classes and functions a ``torch.save`` file names, read from its pickle opcodes without importing anything
(used by test_legacy.py and data/legacy/make_legacy.py)."""

import pickletools
import zipfile
from pathlib import Path


def pickle_globals(path: Path) -> list:
    """Every (module, name) a torch.save zip's data.pkl names via GLOBAL / STACK_GLOBAL, without importing."""
    with zipfile.ZipFile(path) as z:
        (pkl,) = [n for n in z.namelist() if n.endswith('/data.pkl') or n == 'data.pkl']
        data = z.read(pkl)
    found, memo, strings = set(), {}, []
    for op, arg, _ in pickletools.genops(data):
        if op.name == 'GLOBAL':
            module, name = arg.split(' ', 1)
            found.add(f'{module}.{name}')
        elif op.name in ('SHORT_BINUNICODE', 'BINUNICODE', 'BINUNICODE8', 'UNICODE'):
            strings.append(arg)
        elif op.name in ('BINPUT', 'LONG_BINPUT', 'PUT'):
            memo[arg] = strings[-1] if strings else None
        elif op.name == 'MEMOIZE':
            memo[len(memo)] = strings[-1] if strings else None
        elif op.name in ('BINGET', 'LONG_BINGET', 'GET'):
            strings.append(memo.get(arg))
        elif op.name == 'STACK_GLOBAL':
            found.add(f'{strings[-2]}.{strings[-1]}')
    return sorted(found)
