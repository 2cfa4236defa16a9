"""Where the command line speaks: its two consoles, its exit codes, and the one-line error
and warning every command uses."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C

stdout = Console()
stderr = Console(stderr=True)
# Piped (cron mail, logs): a long line stays one line, a path is never broken at column 80.
for _console in (stdout, stderr):
    _console.soft_wrap = not _console.is_terminal


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    """Print one line to stderr and exit with `code`."""
    # escaped: the message may name a file whose name holds "[...]" (rich markup)
    stderr.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def warn(message: str) -> None:
    """One warning line on stderr: something worth fixing that stops nothing."""
    stderr.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)


def print_json_line(document: object) -> None:
    """`document` as one JSON line on stdout (the stable --json form, see render.dumps)."""
    import sys

    from photos_sync.cli.render import dumps

    sys.stdout.write(dumps(document) + "\n")
