"""``--help`` as a person reads it: arguments as ``RUN_DIR``, flags without a type, choices listed.

Typer's help shows every parameter's Python type: ``--json <bool>`` and ``--help <bool>`` for flags that take no
value, and required arguments as ``{run_dir}`` on the usage line. :class:`Command` (every ``disco`` subcommand)
and :func:`tidy` (also used by the command group, disco/boundary.py) give

- arguments an upper-case name (``RUN_DIR``, the click convention; also in "Missing argument 'RUN_DIR'"), shown
  bare when required and in brackets when optional on the usage line;
- flags (``--json``, ``--refresh``, ``--help``, ...) no type, since they take no value.

Options with a value keep their type (``--k <int range>``); options with a fixed set of values are declared as a
``Literal`` so that help lists the choices (``--backend <auto|lucene|sparse>``).
"""

from __future__ import annotations

from typer.core import TyperArgument, TyperCommand, TyperOption


def tidy(params: list) -> list:
    """``params`` with the display names above (set once, in place)."""
    for p in params:
        if isinstance(p, TyperArgument) and p.metavar is None:
            p.metavar = p.name.upper()
        elif isinstance(p, TyperOption) and (p.is_flag or p.count) and p.metavar is None:
            p.metavar = ""  # the type column stays empty for a flag
    return params


def usage_pieces(command, ctx) -> list[str]:
    """``[OPTIONS] RUN_DIR OUT_DIR`` / ``[OPTIONS] [PRESET]``: the usage line of a command."""
    pieces = [command.options_metavar] if command.options_metavar else []
    for p in command.get_params(ctx):
        if isinstance(p, TyperArgument):
            name = p.metavar + ("..." if p.nargs != 1 else "")
            pieces.append(name if p.required else f"[{name}]")
    return pieces


class Command(TyperCommand):
    """A ``disco`` subcommand with the help above."""

    def get_params(self, ctx):
        return tidy(super().get_params(ctx))

    def collect_usage_pieces(self, ctx) -> list[str]:
        return usage_pieces(self, ctx)
