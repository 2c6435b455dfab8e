"""The typer application and the one place where DsocrError becomes an ``Error:`` line."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from dsocr import __version__
from dsocr.errors import DsocrError
from dsocr.no_pandas import PANDAS_FREE_COMMANDS, hide_pandas

EXIT_ERROR = 1


def _one_line(message: str) -> str:
    """A message on one printable line: a library's own text (pyarrow's) may hold newlines and
    control bytes, a path may hold anything."""
    text = " ".join(message.split())
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)


#: OSErrors that describe the machine, not a bug: a full or read-only disk, a folder this user
#: cannot write, a path through a file, a symlink loop. They become one ``Error:`` line.
ENVIRONMENT_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EACCES,
        errno.EPERM,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ELOOP,
        errno.ENAMETOOLONG,
        errno.EFBIG,
    }
)


def environment_error_line(exc: OSError) -> str:
    """``Error: <path>: <reason>`` for an OSError of ENVIRONMENT_ERRNOS."""
    where = f"{exc.filename}: " if exc.filename is not None else ""
    return f"Error: {_one_line(where + str(exc.strerror or exc))}"


class _ErrorsAtTheEdge(TyperGroup):
    """Turns any DsocrError raised by a command, a value click cannot convert (a path with a
    NUL byte), an OSError of the environment (ENVIRONMENT_ERRNOS) and a Ctrl-C that no stage
    handled into one line on stderr and exit status 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except DsocrError as exc:
            typer.echo(f"Error: {_one_line(str(exc))}", err=True)
            raise typer.Exit(EXIT_ERROR) from None
        except typer.BadParameter as exc:
            typer.echo(f"Error: {_one_line(exc.format_message())}", err=True)
            raise typer.Exit(EXIT_ERROR) from None
        except OSError as exc:
            if exc.errno not in ENVIRONMENT_ERRNOS:
                raise
            typer.echo(environment_error_line(exc), err=True)
            raise typer.Exit(EXIT_ERROR) from None
        except KeyboardInterrupt:
            typer.echo("Error: interrupted", err=True)
            raise typer.Exit(EXIT_ERROR) from None


app = typer.Typer(
    cls=_ErrorsAtTheEdge,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    help="Profile DeepSeek-OCR inference (capture), then analyze and render from Parquet alone.",
)

RunDirArg = Annotated[
    Path,
    typer.Argument(help="Run directory written by `dsocr capture` or `dsocr import`.", show_default=False),
]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"dsocr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """Profile DeepSeek-OCR inference (capture), then analyze and render from Parquet alone."""
    if ctx.invoked_subcommand in PANDAS_FREE_COMMANDS:
        hide_pandas()


JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
PeakTflopsOption = Annotated[
    float | None,
    typer.Option(
        "--peak-tflops",
        help="Device peak dense TFLOP/s at the run's dtype, for the roofline. Default: the peaks table.",
        show_default=False,
    ),
]
PeakGbpsOption = Annotated[
    float | None,
    typer.Option(
        "--peak-gbps",
        help="Device peak memory bandwidth in GB/s, for the roofline. Default: the peaks table.",
        show_default=False,
    ),
]
