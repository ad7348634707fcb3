"""`pbx visits list` and `pbx report roi`: website visits and per-source ROI (I/O shell)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from pbx.admin import provisioning as admin
from pbx.commands import verbs
from pbx.commands.common import (
    AdminError,
    as_dict,
    emit,
    format_option,
    money_fields,
    one_line,
    run_store,
)
from pbx.errors import InputError
from pbx.rules.roi import RoiRow
from pbx.store.base import Visit

_VISIT_COLUMNS = ("started_at", "visitor_id", "source", "number", "fallback", "expires_at",
                  "landing_url", "referrer", "ip", "country", "city")  # fmt: skip
_ROI_COLUMNS = ("source", "calls", "answered", "unique_callers", "first_time_callers", "cost",
                "cost_per_call", "cost_per_answered")  # fmt: skip


@click.group()
def visits() -> None:
    """Website visits seen by the swap script (newest first)."""


_LIMIT = click.option(
    "--limit", type=click.IntRange(1, 100_000), default=100, show_default=True, help="At most N."
)


@verbs.list_command(visits, _VISIT_COLUMNS, _LIMIT)
def visits_list(ctx: click.Context, limit: int) -> list[Visit]:
    """List recent visits: source, number held, landing page, referrer, location."""
    return run_store(ctx, lambda s: s.visits.list(limit=limit))


@click.group()
def report() -> None:
    """Reports over call records."""


def _roi_row(row: RoiRow) -> dict[str, Any]:
    """Money as entered (`37.50`) in the table, CSV and JSON alike."""
    return money_fields(as_dict(row))


@report.command("roi")
@click.option("--month", metavar="YYYY-MM", help="UTC month (default: this month).")
@format_option
@click.pass_context
def report_roi(ctx: click.Context, month: str | None, fmt: str) -> None:
    """Per source: calls, answered, unique and first-time callers, cost per call."""
    try:
        when = admin.parse_month(month or dt.datetime.now(dt.UTC).strftime("%Y-%m"))
    except InputError as exc:
        raise AdminError(one_line(str(exc))) from None
    rows = run_store(ctx, lambda s: admin.roi_rows(s, when))
    shaped = [_roi_row(r) for r in rows]
    emit(shaped, fmt, _ROI_COLUMNS, shaped)
