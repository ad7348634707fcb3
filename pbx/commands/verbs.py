"""The command shapes every `pbx` group shares: list, show, change (I/O shell).

Each is a decorator for a small function that only fetches or changes; the
decorator adds the click command, its parameters and `--format`, and prints:
- `@list_command(group, columns, *params)`: the function returns store rows;
  printed with `emit` (`row` shapes each for table/CSV, `json_row` for JSON);
- `@show_command(group, *params)`: the function returns one row; printed
  with `emit_one` after `row`;
- `@change_command(group, verb, *params)`: add/update/remove; the function
  returns the one confirmation line to print.
The help text is the function's docstring, as with plain click commands
(or `help=`). For the named aggregates (trunks, destinations, sources,
extensions), `Named(group, kind, table)` builds `list`, `show NAME` and
`remove NAME` from the store table alone: those are the same for each.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click

from pbx.admin import provisioning as admin
from pbx.commands.common import (
    Decorator,
    as_dict,
    emit,
    emit_one,
    format_option,
    run_store,
    with_params,
)
from pbx.store.base import Store

Row = Callable[[Any], Mapping[str, Any]]
NAME = click.argument("name")


def list_command(
    group: click.Group,
    columns: Sequence[str],
    *params: Decorator,
    row: Row = as_dict,
    json_row: Row | None = None,
    help: str | None = None,
) -> Callable[[Callable[..., Sequence[Any]]], click.Command]:
    """`pbx GROUP list [params] [--format F]`: print the rows the function returns."""

    def decorate(fetch: Callable[..., Sequence[Any]]) -> click.Command:
        @functools.wraps(fetch)
        def command(*args: Any, **kwargs: Any) -> None:
            fmt = kwargs.pop("fmt")
            rows = fetch(*args, **kwargs)
            json_rows = None if json_row is None else [json_row(r) for r in rows]
            emit([row(r) for r in rows], fmt, columns, json_rows)

        return _register(group, "list", command, (*params, format_option), help)

    return decorate


def show_command(
    group: click.Group, *params: Decorator, row: Row = as_dict, help: str | None = None
) -> Callable[[Callable[..., Any]], click.Command]:
    """`pbx GROUP show KEY [--format F]`: print the one row the function returns."""

    def decorate(fetch: Callable[..., Any]) -> click.Command:
        @functools.wraps(fetch)
        def command(*args: Any, **kwargs: Any) -> None:
            fmt = kwargs.pop("fmt")
            emit_one(row(fetch(*args, **kwargs)), fmt)

        return _register(group, "show", command, (*params, format_option), help)

    return decorate


def change_command(
    group: click.Group, verb: str, *params: Decorator, help: str | None = None
) -> Callable[[Callable[..., str]], click.Command]:
    """`pbx GROUP VERB KEY [options]`: print the line the function returns."""

    def decorate(change: Callable[..., str]) -> click.Command:
        @functools.wraps(change)
        def command(*args: Any, **kwargs: Any) -> None:
            click.echo(change(*args, **kwargs))

        return _register(group, verb, command, params, help)

    return decorate


@dataclass(frozen=True, slots=True)
class Named:
    """A named aggregate (trunks, destinations, ...): one store table, rows found by name.

    Its `list`, `show NAME` and `remove NAME` commands are the same for every
    such table; `kind` is the word in their messages (`no trunk named 'x'`,
    `trunk x removed`) and `table(store)` the store repository.
    """

    group: click.Group
    kind: str
    table: Callable[[Store], Any]

    def list_command(
        self,
        help_text: str,
        columns: Sequence[str],
        row: Row = as_dict,
        json_row: Row | None = None,
    ) -> click.Command:
        """`pbx GROUP list`: every row, in the store's order."""

        def fetch(ctx: click.Context) -> Sequence[Any]:
            return run_store(ctx, lambda s: self.table(s).list())

        return list_command(self.group, columns, row=row, json_row=json_row, help=help_text)(fetch)

    def show_command(self, help_text: str, row: Row = as_dict) -> click.Command:
        """`pbx GROUP show NAME`: every field of one row (shaped by `row`)."""

        def fetch(ctx: click.Context, name: str) -> Any:
            missing = f"no {self.kind} named '{name}'"
            return run_store(ctx, lambda s: admin.require(self.table(s).get(name), missing))

        return show_command(self.group, NAME, row=row, help=help_text)(fetch)

    def remove_command(self, help_text: str, force_help: str | None = None) -> click.Command:
        """`pbx GROUP remove NAME`, with `--force` when `force_help` says what it does."""
        force = [click.option("--force", is_flag=True, help=force_help)] if force_help else []

        def remove(ctx: click.Context, /, name: str, **kwargs: Any) -> str:
            run_store(ctx, lambda s: self.table(s).remove(name, **kwargs))
            return f"{self.kind} {name} removed"

        return change_command(self.group, "remove", NAME, *force, help=help_text)(remove)


def _register(
    group: click.Group,
    verb: str,
    fn: Callable[..., None],
    params: Sequence[Decorator],
    help_text: str | None,
) -> click.Command:
    """Add `fn` to `group` as VERB with `params` (help: `help_text`, else fn's docstring)."""
    add = group.command(verb, help=help_text)
    command: click.Command = add(with_params(*params)(click.pass_context(fn)))
    return command
