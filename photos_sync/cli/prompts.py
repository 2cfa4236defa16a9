"""The questions the command line asks a person at a terminal, and what it says to a script
that cannot answer them (exit 2: add --yes)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer

from photos_sync.cli.console import EXIT_FAILURE, EXIT_USAGE, fail, stderr, stdout

T = TypeVar("T")


def at_terminal() -> bool:
    """Whether a person can answer: stdin is a terminal."""
    return sys.stdin.isatty()


def asks_questions(yes: bool) -> bool:
    """Whether a command given `--yes` (or not) asks its questions."""
    return not yes and at_terminal()


def require_terminal(message: str) -> None:
    """Exit 2 with `message` when nobody can answer a question (stdin is no terminal)."""
    if not at_terminal():
        fail(message, EXIT_USAGE)


def confirm_reset(what: str) -> None:
    """`backup --reset` without --yes: ask, or abort (exit 1)."""
    require_terminal("--reset asks for confirmation: add --yes to run it unattended")
    typer.confirm(f"Clear {what}? The backed-up files are not touched.", abort=True)


def confirm_install() -> None:
    """`daemon --install` without --yes: ask before writing; no is exit 1, nothing written."""
    require_terminal("--install asks before writing: add --yes to install unattended")
    if not typer.confirm("Write these and start the service?", default=True):
        stderr.print("nothing was written", highlight=False)
        raise typer.Exit(EXIT_FAILURE)


def confirm_removal(name: str, key_file: Path | None, delete_key_file: bool) -> bool:
    """`backup --remove NAME` at a terminal: ask to remove (no is exit 1, nothing removed),
    then, unless --delete-key-file already said so, whether to delete the key file too.
    Returns whether the key file goes."""
    question = f"Remove destination {name!r}?"
    if delete_key_file and key_file is not None:
        question = f"Remove destination {name!r} and delete its key file {key_file}?"
    if not typer.confirm(question, default=False):
        stderr.print("nothing was removed", highlight=False)
        raise typer.Exit(EXIT_FAILURE)
    if key_file is not None and not delete_key_file:
        return bool(
            typer.confirm(
                f"Also delete the key file {key_file}? Without it (or a recovery kit printed "
                f"before: `photos-sync recovery-kit {name}`) the backup can never be decrypted",
                default=False,
            )
        )
    return delete_key_file


def ask_api_key() -> str:
    """The Immich API key, typed without echo."""
    return str(typer.prompt("Immich API key", hide_input=True)).strip()


def answer(prompt: Callable[[], T], *, hidden: bool = False) -> T:
    """Run a blocking prompt so that Ctrl-C (or end of input) ends the wizard at once.

    Under asyncio, SIGINT only schedules a cancellation that runs after the prompt returns;
    Python's own handler is put back for the prompt's duration so Ctrl-C interrupts the read.
    """
    from photos_sync.engine.setup import SetupInterrupted

    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return prompt()
    except (typer.Abort, KeyboardInterrupt, EOFError):
        if not hidden:  # a hidden prompt has ended its line already
            stdout.print()
        raise SetupInterrupted from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


class TerminalUI:
    """The wizard's voice at a terminal: numbered steps, [Y/n] questions, hidden input."""

    interactive = True

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def step(self, number: int, text: str) -> None:
        from photos_sync.engine.setup import STEPS

        if not self.quiet:
            stdout.print(f"[bold][{number}/{STEPS}][/bold] {text}", highlight=False, soft_wrap=True)

    def info(self, text: str) -> None:
        if not self.quiet:
            stdout.print(f"      {text}", highlight=False, soft_wrap=True)

    def warn(self, text: str) -> None:
        stdout.print(f"[red]✗[/red] {text}", highlight=False, soft_wrap=True)

    def confirm(self, question: str, default: bool = True) -> bool:
        return bool(answer(lambda: typer.confirm(question, default=default)))

    def ask(self, question: str, *, secret: bool = False, default: str | None = None) -> str:
        return str(
            answer(
                lambda: typer.prompt(
                    question, default=default or "", show_default=bool(default), hide_input=secret
                ),
                hidden=secret,
            )
        )
