"""The command line's boundary: every failure becomes one short paragraph on stderr and a non-zero exit code.

- The project's own errors (:class:`core.errors.DiscoError`) already say what, where and what to do: shown as is.
- Other exceptions a user can cause (a full disk, no permission, out of memory, a Java error inside Lucene, a bad
  value deep in a config) are turned into such a paragraph here, with the stage they happened in when known (a
  note that :func:`stages.base.run_stage` adds).
- Anything else is named as an unexpected error, with the hint to rerun with ``--debug``.

Prefect logs a failed task's and flow's exception with its traceback: :func:`quiet_console_tracebacks` keeps the
log lines on the terminal but drops their tracebacks there (the Prefect API, hence the UI, keeps them in full).
``disco --debug ...`` (or ``DISCO_DEBUG=1``) shows every traceback, Prefect's and the CLI's.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import traceback

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from core.errors import DiscoError
from disco.help import tidy

DEBUG_ENV = "DISCO_DEBUG"
_HINT = "Rerun with `disco --debug ...` for the full traceback."


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


class _NoTraceback(logging.Formatter):
    """Wraps a console formatter: the record's message without its traceback (restored for other handlers)."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info = record.exc_text = record.stack_info = None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def quiet_console_tracebacks() -> None:
    """Strip tracebacks from Prefect's console log handlers (not from its API handler), unless debugging."""
    if debug_enabled():
        return
    import prefect.main  # noqa: F401  (configures Prefect's logging: `import prefect` alone is lazy)
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    for lg in loggers:
        for h in lg.handlers:
            if isinstance(h, (PrefectConsoleHandler, logging.StreamHandler)) and \
                    not isinstance(h.formatter, _NoTraceback) and type(h).__name__ != "LogCaptureHandler":
                h.setFormatter(_NoTraceback(h.formatter))


# the commands that run stages: an interrupted one resumes from its finished stages
STAGE_COMMANDS = ("run", "evaluate", "rewrite-eval", "deploy")
RESUMES = " Finished stages are kept; the same command resumes from them."


def describe(e: BaseException, stages: bool = True) -> tuple[str, int]:
    """(the paragraph shown for ``e``, the exit code); ``stages``: the command runs pipeline stages."""
    where = "".join(f"\n  {n}" for n in getattr(e, "__notes__", []))
    if isinstance(e, DiscoError):
        return f"{e}{where}", 2
    if isinstance(e, KeyboardInterrupt):
        return f"interrupted (SIGINT).{RESUMES if stages else ''}", 130
    signum = getattr(e, "signum", getattr(e, "signal", None))  # disco.shutdown.Terminated, Prefect's own
    if type(e).__name__ in ("Terminated", "TerminationSignal") and isinstance(signum, int):
        name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else f"signal {signum}"
        return f"terminated ({name}).{RESUMES if stages else ''}", 128 + signum
    name = type(e).__name__
    if isinstance(e, MemoryError) or name == "OutOfMemoryError":
        return (f"out of memory{where}\n  Lower the batch sizes (e.g. --set encoder.batch_size=8 --set "
                "distill.batch_size=4 --set rewrite.batch_size=4) or use a machine with more memory; finished "
                "stages are kept."), 3
    if isinstance(e, OSError):
        return _os_error(e, where), 4
    if name == "JavaException" or type(e).__module__.startswith("jnius"):
        msg = str(e).strip().splitlines()[0] if str(e).strip() else name
        return (f"Java error inside Lucene (Pyserini): {msg}{where}\n  The index may be damaged or from another "
                "version: rebuild it with `disco run ... --stage index --refresh`."), 5
    if name == "ValidationError":  # pydantic: a config or record with a wrong value
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']}" for err in e.errors())
        return f"invalid value: {problems}{where}", 2
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"unexpected error: {name}: {text}{where}\n  {_HINT}", 1


_BY_TEXT = {"No space left on device": errno.ENOSPC, "File too large": errno.EFBIG, "Disk quota exceeded":
            errno.EDQUOT, "Permission denied": errno.EACCES}  # OSErrors raised without an errno (pyarrow's)


def _os_error(e: OSError, where: str) -> str:
    if e.errno is None:
        found = next((n for text, n in _BY_TEXT.items() if text in str(e)), None)
        if found is not None:
            e = OSError(found, os.strerror(found), getattr(e, "filename", None))
    path = f" {e.filename}" if e.filename else ""
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        what = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded",
                errno.EFBIG: "file too large for this process's file-size limit (ulimit -f)"}[e.errno]
        return (f"{what} while writing{path}{where}\n  Free space (`disco gc RUN_DIR` removes unused stage "
                "folders) and rerun: finished stages are kept, nothing half-written is.")
    if e.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied:{path}{where}\n  Choose a folder you can write (--out) or fix its permissions."
    if e.errno == errno.EROFS:
        return f"read-only file system:{path}{where}\n  Choose a writable output folder with --out."
    if e.errno == errno.ENOENT:
        return f"no such file or folder:{path}{where}\n  Check the path."
    return f"{e.strerror or e}:{path}{where}\n  {_HINT}"


def without_tracebacks(text: str, max_lines: int = 12) -> str:
    """``text`` without the stack frames of Python or Java tracebacks quoted in it (a worker's log tail), at most
    ``max_lines`` lines: the lines that say what went wrong stay."""
    out, in_trace = [], False
    for line in text.splitlines():
        if line.startswith("Traceback (most recent call last)"):
            in_trace = True
            continue
        if (in_trace and (line.startswith(" ") or not line.strip())) or line.lstrip().startswith("at ") \
                and "(" in line:
            continue
        in_trace = False
        out.append(line)
    if len(out) > max_lines:
        out = out[:2] + ["  ..."] + out[-(max_lines - 3):]
    return "\n".join(out)


def report(e: BaseException, stages: bool = True) -> int:
    """Print ``e`` as a short paragraph (with the traceback when debugging) and return the exit code."""
    message, code = describe(e, stages)
    if debug_enabled():
        traceback.print_exception(e, file=sys.stderr)
    else:
        message = without_tracebacks(message)
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return code


class Boundary(TyperGroup):
    """The ``disco`` command group: turns any exception of a command into :func:`report`'s paragraph (and shows
    its own options as disco/help.py does)."""

    def get_params(self, ctx):
        return tidy(super().get_params(ctx))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException, SystemExit):  # --help, usage errors, our own exits
            raise
        except BaseException as e:  # noqa: BLE001 (the boundary: everything becomes a message and an exit code)
            raise typer.Exit(report(e, ctx.invoked_subcommand in STAGE_COMMANDS)) from None
