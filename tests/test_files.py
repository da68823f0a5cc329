"""emo.files: the atomic write survives a stop mid-write, SIGTERM unwinds, a killed run's temporaries are swept."""

import os
import subprocess
import sys

import pytest

from emo.files import FolderInUse, Terminated, atomic_write, folder_lock, remove_stale_temporaries, temporary_name


def test_a_stop_mid_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / 'last.pth'
    target.write_bytes(b'the previous checkpoint')

    def stopped_halfway(f):
        f.write(b'half of the new one')
        raise Terminated('stopped by signal 15')

    with pytest.raises(Terminated):
        atomic_write(target, stopped_halfway)
    assert target.read_bytes() == b'the previous checkpoint'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['last.pth']
    atomic_write(target, lambda f: f.write(b'the new one'))
    assert target.read_bytes() == b'the new one' and sorted(p.name for p in tmp_path.iterdir()) == ['last.pth']


SIGTERM_IN_BLOCK = """
import os, signal, time
from emo.files import Terminated, sigterm_raises
try:
    with sigterm_raises():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler runs at once and ends the sleep with Terminated
except Terminated as e:
    print('raised:', e)
# restored: outside the block SIGTERM kills again
print('restored:', signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
"""


def test_sigterm_raises_inside_the_block_only():
    # in a fresh interpreter: after OpenVINO and NNCF have run in the test process (test_benchmark), a SIGTERM sent
    # to that process crashed it (SIGSEGV inside the native libraries); a training process never loads them
    result = subprocess.run([sys.executable, '-c', SIGTERM_IN_BLOCK], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['raised: stopped by signal 15', 'restored: True']


def test_stale_temporaries_of_the_named_files_are_removed(tmp_path):
    (tmp_path / '.last.pth.tmp-4242').write_bytes(b'half')
    (tmp_path / '.metrics.csv.tmp-17').write_bytes(b'half')
    (tmp_path / '.notes.txt.tmp-1').write_bytes(b'not ours')
    (tmp_path / 'last.pth').write_bytes(b'whole')
    removed = remove_stale_temporaries(tmp_path, ['last.pth', 'metrics.csv'])
    assert sorted(p.name for p in removed) == ['.last.pth.tmp-4242', '.metrics.csv.tmp-17']
    assert sorted(p.name for p in tmp_path.iterdir()) == ['.notes.txt.tmp-1', 'last.pth']
    assert temporary_name(tmp_path / 'last.pth').name == f'.last.pth.tmp-{os.getpid()}'


HOLD_THE_LOCK = """
import sys, time
from emo.files import folder_lock
with folder_lock(sys.argv[1], 'a test holder'):
    print('locked', flush=True)
    time.sleep(60)
"""


def test_a_folder_has_one_run_at_a_time_and_a_killed_holder_leaves_no_lock(tmp_path):
    run = tmp_path / 'run'
    holder = subprocess.Popen(
        [sys.executable, '-c', HOLD_THE_LOCK, str(run)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == 'locked', holder.stderr.read()
        with pytest.raises(
            FolderInUse, match=rf'--output {run} is in use by another run \(process {holder.pid}: a test'
        ):
            with folder_lock(run, 'second'):
                pass
        holder.kill()  # SIGKILL: no cleanup runs; the OS drops the flock with the process
        holder.wait(timeout=30)
    finally:
        holder.kill()
    with folder_lock(run, 'after the kill') as lock:
        assert lock.read_text() == f'process {os.getpid()}: after the kill\n'
    assert list(run.iterdir()) == []  # the lock file goes with the run; the folder stays (it held a run)


def test_a_refused_run_leaves_no_folder_it_made(tmp_path):
    with pytest.raises(ValueError, match='refused'):
        with folder_lock(tmp_path / 'new' / 'run', 'refused'):
            raise ValueError('refused')
    assert (tmp_path / 'new').is_dir() and not (tmp_path / 'new' / 'run').exists()
    (tmp_path / 'kept').mkdir()
    with pytest.raises(ValueError):
        with folder_lock(tmp_path / 'kept', 'refused'):
            raise ValueError('refused')
    assert (tmp_path / 'kept').is_dir()  # a folder that was there before stays, and no lock file is left in it
    assert list((tmp_path / 'kept').iterdir()) == []


FULL_DISK = """
import resource, sys
from pathlib import Path
from emo.files import WriteFailed, atomic_write, folder_lock
folder = Path(sys.argv[1])
(folder / 'last.pth').write_bytes(b'the previous checkpoint')
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # a full disk, as the kernel reports a file-size limit
try:
    atomic_write(folder / 'last.pth', lambda f: f.write(b'x' * 100_000))
except WriteFailed as e:
    print(e)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
try:
    with folder_lock(folder / 'run', 'a run'):
        print('ran')
except WriteFailed as e:
    print(e)
"""


def test_a_full_disk_is_one_line_and_the_old_file_stays(tmp_path):
    result = subprocess.run(
        [sys.executable, '-c', FULL_DISK, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and 'Traceback' not in result.stderr, result.stderr
    write, lock = result.stdout.splitlines()
    assert write.startswith(f'could not write {tmp_path / "last.pth"} (File too large): it needs 0.10 MiB'), write
    assert 'the last.pth that was there is unchanged' in write
    assert (tmp_path / 'last.pth').read_bytes() == b'the previous checkpoint'
    assert lock.startswith(f'--output {tmp_path / "run"} is not writable (File too large): nothing was written'), lock
    assert sorted(p.name for p in tmp_path.iterdir()) == ['last.pth']  # no temporary, no half-made run folder
