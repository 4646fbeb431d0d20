"""The Typer application and the error policy every command shares.

Exit codes: 0 success, 2 bad input or usage (one line on stderr, no traceback), 1 internal error (a short
message and the path of a log holding the traceback), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import datetime as _dt
import os
import signal
import sys
import tempfile
import threading
import traceback
import warnings
from pathlib import Path
from types import FrameType
from typing import Any

import typer

try:  # Typer >= 0.20 vendors its own Click; commands raise that Click's exceptions
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - older Typer uses Click itself
    from click import exceptions as click_errors
from rich.console import Console

from retouch import __version__
from retouch.errors import InputError
from retouch.text import readable_text

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


def non_empty_path(value: str) -> Path:
    """Parser for every path argument and option: an empty value would silently become '.' (the current folder,
    written into or read as a folder), so it is refused, naming the option."""
    if not value.strip():
        raise typer.BadParameter("the path is empty; give a file or folder name")
    return Path(value)


def max_pixels_name(max_pixels: int | None) -> str:
    """The setting a pixel-limit refusal names: ``--max-pixels`` when the command was given it (raising
    RETOUCH_MAX_PIXELS would change nothing then), else the variable the loader reads."""
    from retouch.io import MAX_PIXELS_VARIABLE

    return "--max-pixels" if max_pixels is not None else MAX_PIXELS_VARIABLE


def log_dir() -> Path:
    base = os.environ.get("RETOUCH_LOG_DIR") or os.path.join(tempfile.gettempdir(), "retouch-logs")
    return Path(base)


def _write_crash_log() -> Path | None:
    try:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        path = folder / f"crash-{stamp}-{os.getpid()}.log"
        path.write_text(f"retouch {__version__}\nargv: {sys.argv}\n\n{traceback.format_exc()}", encoding="utf-8",
                        errors="backslashreplace")  # a message may quote a file name that is not UTF-8
        return path
    except OSError:
        return None


def _error_line(message: str) -> None:
    # a file name that is not UTF-8 is shown by its bytes ('\\xe9'), as in the reports, not as a surrogate code
    console.print(f"retouch: error: {readable_text(message)}", markup=False, soft_wrap=True)


class _InterruptWatch:
    """Notes whether Ctrl-C (SIGINT) or SIGTERM arrived while a command ran, then raises KeyboardInterrupt.

    The exception alone cannot tell: Typer (standalone_mode=False) turns KeyboardInterrupt into a returned exit
    code, and in a batch the interrupt can surface as another error from the worker pool being torn down. SIGTERM
    (kill, a closed session, a job scheduler) is unwound the same way: by default it ends the process where it
    stands, leaving the maps written so far without their report.json, and a temp file.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.fired: int | None = None  # the signal that arrived
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.fired = signum
        signal.default_int_handler(signum, frame)

    def __enter__(self) -> _InterruptWatch:
        if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
            self._previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns (and exits with) the documented exit code."""
    interrupt = _InterruptWatch()
    with interrupt:
        code, message = _run_command(sys.argv[1:] if argv is None else argv, interrupt)
    if interrupt.fired == signal.SIGTERM:
        code, message = 128 + signal.SIGTERM, "terminated"
    elif interrupt.fired:
        code, message = 130, "interrupted"
    if code in (130, 128 + signal.SIGTERM):
        _forget_the_caught_interrupt()
    if message:
        _error_line(message)
    return code


def _forget_the_caught_interrupt() -> None:
    # CPython (3.11 here) records a KeyboardInterrupt that left an eval() of a string as unhandled even when it
    # was caught later (Typer evaluates our string annotations while it builds the commands), and under
    # ``python -m retouch`` then ends the process by SIGINT (-2) instead of with our exit code 130; the start of
    # any such evaluation clears that record
    eval("None")  # noqa: S307 - a constant expression


def _run_command(args: list[str], interrupt: _InterruptWatch) -> tuple[int, str | None]:
    """Run one command line; returns the exit code and the error line to print (None: nothing to say)."""
    try:
        import retouch.cli  # noqa: F401  (registers every command module)

        command = typer.main.get_command(app)
        with warnings.catch_warnings():
            # warnings from numerical libraries on degenerate images (flat, tiny) are handled by the analyses
            # themselves; printed, they would break the promise of one clear line on stderr, and a user of the
            # command line cannot act on them
            warnings.simplefilter("ignore")
            returned = command.main(args=args, prog_name="retouch", standalone_mode=False)
        # Typer returns (rather than raises) the code of a typer.Exit, and 130 for a KeyboardInterrupt
        if isinstance(returned, int) and not isinstance(returned, bool):
            return (130, "interrupted") if returned == 130 else (returned, None)
        return 0, None
    except typer.Exit as done:
        return int(getattr(done, "exit_code", 0) or 0), None
    except click_errors.NoArgsIsHelpError as shown:
        print(shown.ctx.get_help())
        return 0, None
    except click_errors.UsageError as error:
        hint = ""
        if error.ctx is not None:
            hint = f" (see '{error.ctx.command_path} --help')"
        return 2, f"{error.format_message()}{hint}"
    except InputError as error:
        return 2, str(error)
    except (typer.Abort, KeyboardInterrupt):
        return 130, "interrupted"
    except click_errors.ClickException as error:
        return error.exit_code, error.format_message()
    except BrokenPipeError:
        return 1, None
    except Exception as error:  # noqa: BLE001 - the one place internal errors become exit 1
        if interrupt.fired:  # an error caused by the interrupt itself (e.g. a worker pool torn down) is no defect
            return 130, "interrupted"
        log = _write_crash_log()
        where = f"; details in {log}" if log else ""
        return 1, f"internal error: {type(error).__name__}: {str(error)[:200]}{where}"


def run() -> None:
    sys.exit(main())
