"""The Typer application and the error policy every command shares.

Exit codes: 0 success, 2 bad input or usage (one line on stderr, no traceback), 1 internal error (a short
message and the path of a log holding the traceback), 130 interrupted.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import typer

try:  # Typer >= 0.20 vendors its own Click; commands raise that Click's exceptions
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older Typer uses Click itself
    from click import exceptions as click_errors
from rich.console import Console

from retouch import __version__
from retouch.errors import InputError

app = typer.Typer(
    name="retouch",
    help="Find where archival photographs were doctored: compare two scans, or analyse one.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

console = Console(stderr=True, highlight=False)
stdout = Console(highlight=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        print(f"retouch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    """Find where archival photographs were doctored: compare two scans, or analyse one."""


class UsageFailure(Exception):
    """A command-level usage problem found after parsing (bad option combination, bad value)."""


def fail_usage(message: str) -> None:
    raise UsageFailure(message)


def log_dir() -> Path:
    base = os.environ.get("RETOUCH_LOG_DIR") or os.path.join(tempfile.gettempdir(), "retouch-logs")
    return Path(base)


def _write_crash_log() -> Path | None:
    try:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        path = folder / f"crash-{stamp}-{os.getpid()}.log"
        path.write_text(f"retouch {__version__}\nargv: {sys.argv}\n\n{traceback.format_exc()}", encoding="utf-8")
        return path
    except OSError:
        return None


def _error_line(message: str) -> None:
    console.print(f"retouch: error: {message}", markup=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns (and exits with) the documented exit code."""
    import retouch.cli  # noqa: F401  (registers every command module)

    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else argv
    try:
        with warnings.catch_warnings():
            # numerical warnings on degenerate images (flat, tiny) are handled by the analyses themselves;
            # printed, they would break the promise of one clear line on stderr
            warnings.simplefilter("ignore", RuntimeWarning)
            command.main(args=args, prog_name="retouch", standalone_mode=False)
        code = 0
    except typer.Exit as done:
        code = int(getattr(done, "exit_code", 0) or 0)
    except click_errors.NoArgsIsHelpError as shown:
        print(shown.ctx.get_help())
        code = 0
    except click_errors.UsageError as error:
        hint = ""
        if error.ctx is not None:
            hint = f" (see '{error.ctx.command_path} --help')"
        _error_line(f"{error.format_message()}{hint}")
        code = 2
    except (InputError, UsageFailure) as error:
        _error_line(str(error))
        code = 2
    except (typer.Abort, KeyboardInterrupt):
        _error_line("interrupted")
        code = 130
    except click_errors.ClickException as error:
        _error_line(error.format_message())
        code = error.exit_code
    except BrokenPipeError:
        code = 1
    except Exception as error:  # noqa: BLE001 - the one place internal errors become exit 1
        log = _write_crash_log()
        where = f"; details in {log}" if log else ""
        _error_line(f"internal error: {type(error).__name__}: {str(error)[:200]}{where}")
        code = 1
    return code


def run() -> None:
    sys.exit(main())
