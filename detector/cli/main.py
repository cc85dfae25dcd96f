"""The ``whaled`` command line: the app, its commands registered in the order ``--help`` lists
them (each parsed in its own module of :mod:`detector.cli`), and the checks every command gets."""

from __future__ import annotations

import functools
import inspect
import math
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any, get_args

import typer

from detector.cli import detect as detect_command
from detector.cli import evaluate as evaluate_command
from detector.cli import listen as listen_command
from detector.cli import model as model_commands
from detector.cli import review as review_command
from detector.cli import train as train_command
from detector.core.errors import fail

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Streaming detector of North Atlantic right whale upcalls.")
HELP_MIN_COLUMNS = 120  # narrower, rich cuts option names and help with an ellipsis


def _print_version(value: bool) -> None:
    if value:
        from detector.core.version import VERSION

        typer.echo(f"whaled {VERSION}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the version and exit.")] = False) -> None:
    """Streaming detector of North Atlantic right whale upcalls."""


app.command("listen")(listen_command.listen)
app.command("detect")(detect_command.detect)
app.command("events")(detect_command.events)
app.command("presence")(detect_command.presence)
app.command("devices")(listen_command.devices)
app.command("review")(review_command.review)
app.command("train")(train_command.train)
app.command("evaluate")(evaluate_command.evaluate)
app.command("inspect")(model_commands.inspect)


def flag_of(function: Callable[..., Any], name: str) -> str:
    """The flag that sets ``name`` of a command: its declared --name, else typer's."""
    annotation = inspect.signature(function).parameters[name].annotation
    for info in get_args(annotation)[1:]:
        declared = [d for d in getattr(info, "param_decls", ()) or () if d.startswith("--")]
        if declared:
            return max(declared, key=len)
    return "--" + name.replace("_", "-")


def finite_numbers(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` refusing inf and nan (which Python's float() reads) in any number flag:
    one error line and exit 2, before it does anything (config.py does the same for TOML)."""
    @functools.wraps(command)
    def checked(**flags: Any) -> Any:
        for name, value in flags.items():
            for number in value if isinstance(value, list | tuple) else [value]:
                if isinstance(number, float) and not math.isfinite(number):
                    fail(f"{flag_of(command, name)}: {number} is not a finite number")
        return command(**flags)
    return checked


for _info in app.registered_commands:  # every command, these and the ones above
    if _info.callback is not None:
        _info.callback = finite_numbers(_info.callback)


def help_width() -> int:
    """Columns for rich's help: the terminal's, but never so few that it cuts text."""
    try:
        columns = os.get_terminal_size(sys.stdout.fileno()).columns
    except (OSError, ValueError):
        columns = 0
    return max(columns, HELP_MIN_COLUMNS)


def main() -> None:
    # typer's rich_utils (0.1 s of imports) reads TERMINAL_WIDTH when help or a usage error
    # first needs it; set here, a command that prints neither never imports it
    if not os.environ.get("TERMINAL_WIDTH"):  # typer's own setting wins
        os.environ["TERMINAL_WIDTH"] = str(help_width())
    app()


if __name__ == "__main__":
    main()
