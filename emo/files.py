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
* :func:`folder_lock`: one run a folder: an exclusive ``flock`` on a lock file in it, which the OS releases when
  the process dies, however it dies, so a killed run never leaves a stale lock.
"""

import fcntl
import io
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
    'FolderInUse',
    'LOCK_FILE',
    'folder_lock',
    'WriteFailed',
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


class WriteFailed(OSError):
    """A result file could not be written (a full disk, a file-size limit, a read-only folder); the file that was
    there is unchanged. An OSError, so the ``emo`` command prints it as one line."""


def atomic_write(path: Union[str, Path], write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, flush it to disk, then rename it over ``path``.

    The bytes are made in memory first (these files are checkpoints, tables and plots, megabytes at most), so that
    a write the disk refuses is reported with the size it needed, as one :class:`WriteFailed`, never as the
    traceback of a serializer that failed half-way.
    """
    path = Path(path)
    buffer = io.BytesIO()
    write(buffer)
    data = buffer.getbuffer()
    try:
        with atomic_path(path) as tmp, open(tmp, 'wb') as f:
            f.write(data)
    except OSError as e:
        try:
            free = f'{shutil.disk_usage(path.parent).free / 2**20:.1f} MiB free there'
        except OSError:
            free = 'free space unknown'
        raise WriteFailed(
            f'could not write {path} ({e.strerror or e}): it needs {len(data) / 2**20:.2f} MiB, {free}; '
            f'{"the " + path.name + " that was there is unchanged" if path.exists() else "nothing was written"}. '
            'Free space (or raise the file-size limit) and run again'
        ) from None


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


class FolderInUse(OSError):
    """Another live process holds the folder's lock (an OSError, so the ``emo`` command prints it as one line)."""


# the lock file a run holds in its folder; hidden, and removed when the run ends
LOCK_FILE = '.emo-run.lock'


@contextmanager
def folder_lock(folder: Union[str, Path], command: str, option: str = '--output') -> Iterator[Path]:
    """Own ``folder`` for the block: an exclusive ``flock`` on ``folder/.emo-run.lock`` (the folder is made if
    needed). A second process that asks while it is held gets :class:`FolderInUse` naming the holder (its process
    id and command); the OS releases the lock when the holder dies, so a SIGKILL leaves no stale lock.

    The lock is taken before anything is written into the folder, so it doubles as the check that the folder is
    writable. A folder this call made and that holds nothing else when the block fails is removed again: a
    refused run leaves nothing behind.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f'{option} {folder} is a file, not a folder: choose a folder')
    made = not folder.exists()
    lock, fd = folder / LOCK_FILE, None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = _locked(lock)
        if fd is not None:
            os.ftruncate(fd, 0)
            os.write(fd, f'process {os.getpid()}: {command}\n'.encode())
    except OSError as e:  # read-only, a full disk, a file-size limit: the run could not write its results either
        _release(fd, lock, folder if made else None)
        raise WriteFailed(
            f'{option} {folder} is not writable ({e.strerror or e}): nothing was written; free space or choose a '
            'folder you can write to'
        ) from None
    if fd is None:
        try:
            holder = lock.read_text(errors='replace').strip() or 'a process that has not named itself yet'
        except OSError:
            holder = 'another process'
        raise FolderInUse(
            f'{option} {folder} is in use by another run ({holder}): wait for it to end, or choose another {option}'
        )
    ok = False
    try:
        yield lock
        ok = True
    finally:
        _release(fd, lock, folder if made and not ok else None)


def _release(fd: Union[int, None], lock: Path, made_folder: Union[Path, None]) -> None:
    """Give up a lock :func:`folder_lock` took (``fd`` None: none was taken) and remove ``made_folder`` if it is
    empty: what a run wrote stays."""
    if fd is not None:
        # unlink before unlocking: a process that opens the name after this gets a new file (and _locked checks
        # that the file it locked is still the one named)
        lock.unlink(missing_ok=True)
        os.close(fd)
    if made_folder is not None:
        try:
            made_folder.rmdir()
        except OSError:
            pass


def _locked(lock: Path) -> Union[int, None]:
    """An open, flocked descriptor of ``lock``, or None when another process holds it."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the file between our open and our lock: take the new one
