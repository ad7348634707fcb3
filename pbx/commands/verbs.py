"""The command shapes every `pbx` group shares: list, show, change (I/O shell).

Each is a decorator for a small function that only fetches or changes; the
decorator adds the click command, its parameters and `--format`, and prints:
- `@list_command(group, columns, *params)`: the function returns store rows;
  printed with `emit` (`row` shapes each for table/CSV, `json_row` for JSON);
- `@show_command(group, *params)`: the function returns one row; printed
  with `emit_one` after `row`;
- `@change_command(group, verb, *params)`: add/update/remove; the function
  returns the one confirmation line to print.
For the named aggregates (trunks, destinations, sources, extensions),
`@show_named(group, kind)` and `@remove_named(group, kind, *params)` take an
`async fn(store, name, ...)` and add the rest: the `NAME` argument, opening
the store, `no KIND named 'NAME'` and `KIND NAME removed`.
The help text is the function's docstring, as with plain click commands.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import click

from pbx import admin
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
) -> Callable[[Callable[..., Sequence[Any]]], click.Command]:
    """`pbx GROUP list [params] [--format F]`: print the rows the function returns."""

    def decorate(fetch: Callable[..., Sequence[Any]]) -> click.Command:
        @functools.wraps(fetch)
        def command(*args: Any, **kwargs: Any) -> None:
            fmt = kwargs.pop("fmt")
            rows = fetch(*args, **kwargs)
            json_rows = None if json_row is None else [json_row(r) for r in rows]
            emit([row(r) for r in rows], fmt, columns, json_rows)

        return _register(group, "list", command, (*params, format_option))

    return decorate


def show_command(
    group: click.Group, *params: Decorator, row: Row = as_dict
) -> Callable[[Callable[..., Any]], click.Command]:
    """`pbx GROUP show KEY [--format F]`: print the one row the function returns."""

    def decorate(fetch: Callable[..., Any]) -> click.Command:
        @functools.wraps(fetch)
        def command(*args: Any, **kwargs: Any) -> None:
            fmt = kwargs.pop("fmt")
            emit_one(row(fetch(*args, **kwargs)), fmt)

        return _register(group, "show", command, (*params, format_option))

    return decorate


def change_command(
    group: click.Group, verb: str, *params: Decorator
) -> Callable[[Callable[..., str]], click.Command]:
    """`pbx GROUP VERB KEY [options]`: print the line the function returns."""

    def decorate(change: Callable[..., str]) -> click.Command:
        @functools.wraps(change)
        def command(*args: Any, **kwargs: Any) -> None:
            click.echo(change(*args, **kwargs))

        return _register(group, verb, command, params)

    return decorate


def show_named(
    group: click.Group, kind: str
) -> Callable[[Callable[[Store, str], Awaitable[Any]]], click.Command]:
    """`pbx GROUP show NAME`: the row `await get(store, name)` finds, or `no KIND named 'NAME'`."""

    def decorate(get: Callable[[Store, str], Awaitable[Any]]) -> click.Command:
        @show_command(group, NAME)
        @functools.wraps(get)
        def show(ctx: click.Context, name: str) -> Any:
            missing = f"no {kind} named '{name}'"
            return run_store(ctx, lambda s: admin.require(get(s, name), missing))

        return show

    return decorate


def remove_named(
    group: click.Group, kind: str, *params: Decorator
) -> Callable[[Callable[..., Awaitable[None]]], click.Command]:
    """`pbx GROUP remove NAME [params]`: `await remove(store, name, **params)`, then say so."""

    def decorate(remove: Callable[..., Awaitable[None]]) -> click.Command:
        @change_command(group, "remove", NAME, *params)
        @functools.wraps(remove)
        def command(ctx: click.Context, /, name: str, **kwargs: Any) -> str:
            run_store(ctx, lambda s: remove(s, name, **kwargs))
            return f"{kind} {name} removed"

        return command

    return decorate


def force_option(help_text: str) -> Decorator:
    """`--force`: also undo what depends on the row (what that is: `help_text`)."""
    return click.option("--force", is_flag=True, help=help_text)


def _register(
    group: click.Group, verb: str, fn: Callable[..., None], params: Sequence[Decorator]
) -> click.Command:
    command: click.Command = group.command(verb)(with_params(*params)(click.pass_context(fn)))
    return command
