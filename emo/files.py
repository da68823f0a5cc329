"""Writing files so that nothing is ever half-written, and stopping so that nothing temporary is left behind.

* :func:`atomic_write`: the one way this package writes a result file (:func:`atomic_path` for writers that take a
  path instead of a file object). The bytes go to a temporary file beside
  the target (same folder, so the rename cannot cross file systems), are flushed to disk, and are renamed over
  the target last: a reader sees the old file or the new one, never a mix. :func:`atomic_write_text` and
  :func:`save_png` are it for text and for a matplotlib figure (drawn with :func:`pyplot`).
* :func:`scratch_folder`: the same for results of several files (a Hub folder, a download and its digest).
* :func:`sigterm_raises`: inside it, SIGTERM (what ``kill``, ``torchrun`` and schedulers send) raises
  :class:`Terminated`, so ``finally`` blocks run and remove their temporaries, as for Ctrl-C.
* :func:`remove_stale_temporaries`: a SIGKILL runs no ``finally``; the next run removes what the killed one left.
"""

import os
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Callable, Iterator, Union

__all__ = [
    'Terminated',
    'atomic_path',
    'atomic_write',
    'fsync_file',
    'atomic_write_text',
    'save_png',
    'pyplot',
    'temporary_name',
    'remove_stale_temporaries',
    'scratch_folder',
    'sigterm_raises',
]

_TMP_MARK = '.tmp-'


class Terminated(BaseException):
    """SIGTERM arrived inside :func:`sigterm_raises`; like KeyboardInterrupt, ordinary ``except`` won't catch it."""

    exit_code = 128 + signal.SIGTERM


def temporary_name(path: Union[str, Path]) -> Path:
    """``DIR/.NAME.tmp-PID`` for ``DIR/NAME``: hidden, beside its target, and recognisable as a temporary."""
    path = Path(path)
    return path.with_name(f'.{path.name}{_TMP_MARK}{os.getpid()}')


def fsync_file(path: Union[str, Path]) -> None:
    """Flush a written file's bytes to disk, so that a rename that publishes it never publishes a hole."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: Union[str, Path]) -> Iterator[Path]:
    """A temporary path beside ``path`` for writers that take a path (exporters): when the block succeeds the file
    is flushed to disk and renamed over ``path``; whatever happens, no temporary is left."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextmanager
def scratch_folder(parent: Union[str, Path], prefix: str) -> Iterator[Path]:
    """A new hidden folder in ``parent`` (``prefix`` starts its name), removed with what is left in it at the end.

    For results of several files: written here, then moved into place one ``os.replace`` each, so a reader never
    sees a half-written one, and on the same file system as their destination.
    """
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def atomic_write(path: Union[str, Path], write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, flush it to disk, then rename it over ``path``."""
    with atomic_path(path) as tmp, open(tmp, 'wb') as f:
        write(f)


def atomic_write_text(path: Union[str, Path], text: str) -> None:
    """:func:`atomic_write` of ``text`` in UTF-8."""
    atomic_write(path, lambda f: f.write(text.encode()))


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend, which draws into files only and needs no display."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    return plt


def save_png(figure: Any, path: Union[str, Path], dpi: int = 100) -> None:
    """:func:`atomic_write` of a matplotlib figure as PNG; the figure is closed afterwards, written or not."""
    import matplotlib.pyplot as plt

    try:
        atomic_write(path, lambda f: figure.savefig(f, format='png', dpi=dpi))
    finally:
        plt.close(figure)


def remove_stale_temporaries(folder: Union[str, Path], names: Iterator[str]) -> list:
    """Remove the temporaries of ``names`` (``.NAME.tmp-*``) that an earlier, killed process left in ``folder``.

    Call it only where no other live process writes those names (a run's own output folder, at its start).
    """
    folder = Path(folder)
    removed = []
    for name in names:
        for tmp in folder.glob(f'.{name}{_TMP_MARK}*'):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` for the duration of the block (main thread only, else a no-op).

    A handler someone else installed is left alone: only the default action (die at once) is replaced.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) not in (
        signal.SIG_DFL,
        None,
    ):
        yield
        return

    def _raise(signum, frame):
        raise Terminated(f'stopped by signal {signum}')

    signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
