"""How `--help` reads: Click's conventions on Typer's panels.

Typer 0.29 prints a type column for every parameter (`<str>`, `<int>`, and `<bool>` for
switches that take no value, `--help` included) and writes required arguments as `{paths}` in
the usage line. `aifx` prints what Click and most command-line tools print instead: a value's
kind in capitals (TEXT, INTEGER, FLOAT, PATH; a choice's values as typed), nothing for a switch, and
`PATHS...` in the usage line. Typer has no setting for this, so `use_click_placeholders`
replaces the three methods that build those strings (tests/code/test_cli.py checks every
command's help). Groups use `MARKUP` so that a docstring's paragraphs are reflowed to the
terminal instead of breaking where the source lines break.
"""

from __future__ import annotations

from typing import Any, Final

import typer.core

MARKUP: Final = "markdown"
KINDS = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT"}


def _option_placeholder(self: typer.core.TyperOption, ctx: Any) -> str | None:
    if self.is_flag or self.count:
        return None  # a switch takes no value
    if self.metavar is not None:
        return self.metavar
    kind = self.display_type(ctx).removeprefix("<").removesuffix(">")
    if not self.type_descriptor.is_choice:  # a choice shows its values as they are typed
        # "int range" (its bounds follow in the column), "path", "file", "datetime", ...
        kind = kind.removesuffix(" range")
        if kind.startswith("list[") and kind.endswith("]"):  # a repeatable option: each value
            kind = kind[5:-1]
        kind = KINDS.get(kind, kind).upper()
    return kind if self.nargs == 1 else f"{kind}..."


def _argument_placeholder(self: typer.core.TyperArgument, ctx: Any) -> str | None:
    return None  # the argument's name is its placeholder, in the column before


def _argument_usage(self: typer.core.TyperArgument) -> str:
    name = self.display_name_raw.upper()
    if not self.required:
        name = f"[{name}]"
    return name if self.nargs == 1 else f"{name}..."


def use_click_placeholders() -> None:
    typer.core.TyperOption.display_type_rich = _option_placeholder  # type: ignore[method-assign]
    typer.core.TyperArgument.display_type_rich = _argument_placeholder  # type: ignore[method-assign,assignment]
    typer.core.TyperArgument._usage_display_name = _argument_usage  # type: ignore[method-assign]
