"""``emo ARGS`` run by ``emo.cli.main`` inside the test process, for commands refused before any work: a new
interpreter would add its start (~4 s of importing torch and timm) to each, and the refusal path is the same."""

import io
import subprocess
from contextlib import redirect_stderr, redirect_stdout

from emo.cli import main


def emo_in_process(*args) -> subprocess.CompletedProcess:
    """What ``python -m emo.cli ARGS`` would give: exit code, stdout and stderr."""
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's usage errors
            code = e.code
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
