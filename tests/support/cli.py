"""Run the real `photos-sync` entry point in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

PHOTOS_SYNC = str(Path(sys.executable).parent / "photos-sync")


def photos_sync(
    *args: str,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`photos-sync ARGS...` with the test's environment (plus `env`); output captured.

    On a timeout (subprocess.TimeoutExpired) or any other exit, nothing it started is left
    running: the CLI and its descendants (rclone) are killed first.
    """
    from tests.support.procs import kill_tree

    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("COLUMNS", "200")
    with subprocess.Popen(
        [PHOTOS_SYNC, *args],
        env=full_env,
        stdin=subprocess.PIPE if input is not None else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    ) as proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except BaseException:
            kill_tree(proc)
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
