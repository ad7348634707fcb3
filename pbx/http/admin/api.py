"""REST API of the admin listener, under /api/v1 (I/O shell over pbx.admin, pbx.admin.users).

JSON in and out; errors are `{"error": "one line"}` with 400 (bad input),
401 (no or bad credentials), 403 (viewer, CSRF), 404, 409, 416; a refused
request changes nothing. Changes go through the same use cases as the CLI
(`pbx.admin`, `pbx.admin.users`), which write the audit log. `ROUTES` is
the one table of routes: `add_routes` registers it and `openapi` describes
it, so the description cannot miss a route.

Decisions:
- The call record has no `recording` field yet: a call's recording is
  `<recordings_dir>/<call id>.wav`, or the record's `recording` file name
  once records carry one; served as audio/wav with Range support
  (aiohttp's FileResponse answers 206 and 416). A name that would leave
  the recordings directory is refused.
- A call's `tag` is editable once the call has ended (PATCH); the tag
  written on future calls is the source's (PATCH /sources/{name}).
- Live calls come from the running call manager (`live_calls`) when the
  daemon passes one, else from the store's unfinished records. The
  server-sent event stream polls that every `live_poll_seconds` and sends
  the list when it changed, plus a comment line every 15 s to keep
  proxies from closing an idle stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from pbx.admin import provisioning as admin
from pbx.admin import users as admin_users
from pbx.errors import InputError
from pbx.http.admin import views
from pbx.http.admin.app import (
    AdminContext,
    ApiError,
    actor,
    context,
    need_admin,
    principal,
)
from pbx.numbers import normalise
from pbx.records import CallRecord
from pbx.store.base import ApiToken, AuditEntry, User

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KEEPALIVE_SECONDS = 15.0
MAX_STREAM_SECONDS = 3600.0  # the browser's EventSource reconnects on its own


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    admin: bool = False
    query: tuple[str, ...] = ()
    body: tuple[str, ...] = ()
    produces: str = "application/json"


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        value = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError("the body must be JSON") from None
    if not isinstance(value, dict):
        raise InputError("the body must be a JSON object")
    return value


def _only(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InputError(f"unknown field(s): {', '.join(unknown)[:200]}")


def _text(body: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise InputError(f"{key} is required")
        return None
    if not isinstance(value, str):
        raise InputError(f"{key} must be a string")
    return value


def _ok(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


# ---------------------------------------------------------------- calls


async def list_calls(request: web.Request) -> web.Response:
    ctx = context(request)
    where = views.call_filter(request.query, ctx.region)
    rows, cursor = await views.call_page(
        ctx.store, where, views.parse_limit(request.query.get("limit"))
    )
    return _ok({"calls": [views.call_row(r) for r in rows], "next_cursor": cursor})


async def _call(request: web.Request) -> CallRecord:
    call_id = request.match_info["call_id"]
    found = await context(request).store.calls.get(call_id)
    if found is None:
        raise ApiError(404, f"no call {call_id[:64]}")
    return found


def recording_path(ctx: AdminContext, record: CallRecord) -> Path | None:
    """The call's recording file when there is one (see the module docstring)."""
    if ctx.recordings_dir is None:
        return None
    name = getattr(record, "recording", None) or f"{record.id}.wav"
    root = ctx.recordings_dir.resolve()
    path = (root / str(name)).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


async def get_call(request: web.Request) -> web.Response:
    record = await _call(request)
    row = views.call_row(record)
    has = recording_path(context(request), record) is not None
    row["recording_url"] = f"/api/v1/calls/{record.id}/recording" if has else None
    return _ok(row)


async def patch_call(request: web.Request) -> web.Response:
    who = need_admin(request)
    body = await _body(request)
    _only(body, ("tag",))
    if "tag" not in body:
        raise InputError("give the field to change: tag")
    tag = _text(body, "tag")
    call_id = request.match_info["call_id"]
    record = await admin_users.set_call_tag(context(request).store, who, call_id, tag)
    return _ok(views.call_row(record))


async def call_recording(request: web.Request) -> web.StreamResponse:
    record = await _call(request)
    path = recording_path(context(request), record)
    if path is None:
        raise ApiError(404, f"call {record.id} has no recording")
    return web.FileResponse(path, headers={"Content-Type": "audio/wav",
                                           "Cache-Control": "private, no-store"})  # fmt: skip


# ---------------------------------------------------------------- provisioning


async def list_numbers(request: web.Request) -> web.Response:
    ctx = context(request)
    return _ok({"numbers": await views.numbers_view(ctx.store, ctx.wall())})


async def get_number(request: web.Request) -> web.Response:
    ctx = context(request)
    e164 = normalise(request.match_info["number"], ctx.region)
    rows = [n for n in await views.numbers_view(ctx.store, ctx.wall()) if n["number"] == e164]
    if not rows:
        raise ApiError(404, f"no tracking number {e164}")
    return _ok(rows[0])


async def list_sources(request: web.Request) -> web.Response:
    sources = await context(request).store.sources.list()
    return _ok({"sources": [views.source_row(s) for s in sources]})


async def get_source(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    found = await context(request).store.sources.get(name)
    if found is None:
        raise ApiError(404, f"no source named '{name[:64]}'")
    return _ok(views.source_row(found))


_SOURCE_FIELDS = ("tag", "description", "enabled", "position", "cost_per_call", "monthly_budget")


def source_options(body: dict[str, Any]) -> admin.SourceOptions:
    """A PATCH body as `pbx sources update` options (same validation after)."""
    _only(body, _SOURCE_FIELDS)
    if not body:
        raise InputError(f"give a field to change: {', '.join(_SOURCE_FIELDS)}")
    enabled, position = body.get("enabled"), body.get("position")
    if enabled is not None and not isinstance(enabled, bool):
        raise InputError("enabled must be true or false")
    if position is not None and (not isinstance(position, int) or isinstance(position, bool)):
        raise InputError("position must be an integer")
    tag = _text(body, "tag")
    return admin.SourceOptions(
        tag="" if "tag" in body and tag is None else tag,
        description=_text(body, "description"),
        enabled=enabled,
        position=position,
        cost_per_call=_text(body, "cost_per_call"),
        monthly_budget=_text(body, "monthly_budget"),
    )


async def patch_source(request: web.Request) -> web.Response:
    who = need_admin(request)
    opts = source_options(await _body(request))
    name = request.match_info["name"]
    source = await admin_users.update_source(context(request).store, who, name, opts)
    return _ok(views.source_row(source))


async def list_destinations(request: web.Request) -> web.Response:
    rows = await context(request).store.destinations.list()
    return _ok({"destinations": [{"name": d.name, "target": d.target, "kind": d.kind,
                                  "id": d.id} for d in rows]})  # fmt: skip


async def list_trunks(request: web.Request) -> web.Response:
    rows = await context(request).store.trunks.list()
    return _ok({"trunks": [views.trunk_row(t) for t in rows]})


# ---------------------------------------------------------------- reports, live


async def overview(request: web.Request) -> web.Response:
    ctx = context(request)
    return _ok(await views.overview(ctx.store, ctx.wall()))


async def report_roi(request: web.Request) -> web.Response:
    ctx = context(request)
    month = views.parse_month(request.query.get("month"), ctx.wall())
    rows = await views.roi(ctx.store, month, ctx.roi_cache)
    return _ok(
        {"month": f"{month[0]:04d}-{month[1]:02d}", "rows": [views.roi_row(r) for r in rows]}
    )


async def report_calls_per_source(request: web.Request) -> web.Response:
    """Default: the overview's 30 days; `since`/`until` (dates, both included) pick others."""
    ctx = context(request)
    query = request.query
    if not query.get("since") and not query.get("until"):
        chart = (await views.overview(ctx.store, ctx.wall()))["chart"]
        return _ok({"days": chart["days"], "series": chart["series"]})
    first = views.parse_day(query["since"], "since") if query.get("since") else "0000-00-00"
    last = views.parse_day(query["until"], "until") if query.get("until") else "9999-12-31"
    return _ok({"rows": await views.calls_per_source(ctx.store, first, last)})


async def live_list(ctx: AdminContext) -> list[dict[str, Any]]:
    if ctx.live_calls is not None:
        return [views.live_row(c) for c in ctx.live_calls()]
    return await views.live(ctx.store)


async def live(request: web.Request) -> web.Response:
    return _ok({"calls": await live_list(context(request))})


async def live_stream(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})  # fmt: skip
    await response.prepare(request)
    last, quiet, loop = None, 0.0, asyncio.get_running_loop()
    deadline = loop.time() + MAX_STREAM_SECONDS
    try:
        while loop.time() < deadline:
            text = json.dumps({"calls": await live_list(ctx)}, separators=(",", ":"))
            if text != last:
                await response.write(f"event: live\ndata: {text}\n\n".encode())
                last, quiet = text, 0.0
            elif quiet >= KEEPALIVE_SECONDS:
                await response.write(b": keepalive\n\n")
                quiet = 0.0
            await asyncio.sleep(ctx.live_poll_seconds)  # a poll interval, not a race fix
            quiet += ctx.live_poll_seconds
    except (ConnectionResetError, ConnectionError):
        pass  # the browser went away
    return response


# ---------------------------------------------------------------- users, tokens, audit


def user_row(user: User) -> dict[str, Any]:
    return {"name": user.name, "role": user.role, "created_at": user.created_at}


def token_row(token: ApiToken) -> dict[str, Any]:
    return {"name": token.name, "role": token.role, "created_at": token.created_at,
            "last_used_at": token.last_used_at, "revoked_at": token.revoked_at}  # fmt: skip


def audit_row(entry: AuditEntry) -> dict[str, Any]:
    return {"id": entry.id, "at": entry.at, "actor": entry.actor, "action": entry.action,
            "subject": entry.subject, "detail": json.loads(entry.detail)}  # fmt: skip


async def me(request: web.Request) -> web.Response:
    who = principal(request)
    return _ok({"name": who.actor.name, "role": who.actor.role, "via": who.via})


async def list_users(request: web.Request) -> web.Response:
    need_admin(request)
    return _ok({"users": [user_row(u) for u in await context(request).store.users.list()]})


async def add_user(request: web.Request) -> web.Response:
    who = need_admin(request)
    body = await _body(request)
    _only(body, ("name", "role", "password"))
    name = _text(body, "name", required=True) or ""
    role = _text(body, "role", required=True) or ""
    password = _text(body, "password", required=True) or ""
    user = await admin_users.add_user(context(request).store, who, name, role, password)
    return _ok(user_row(user), 201)


async def remove_user(request: web.Request) -> web.Response:
    who = need_admin(request)
    ctx, name = context(request), request.match_info["name"]
    await admin_users.remove_user(ctx.store, who, name)
    ctx.sessions.end_user(name)
    return _ok({"removed": name})


async def set_password(request: web.Request) -> web.Response:
    who = actor(request)
    body = await _body(request)
    _only(body, ("password",))
    ctx, name = context(request), request.match_info["name"]
    await admin_users.set_password(
        ctx.store, who, name, _text(body, "password", required=True) or ""
    )
    ctx.sessions.end_user(name)
    return _ok({"changed": name})


async def list_tokens(request: web.Request) -> web.Response:
    need_admin(request)
    return _ok({"tokens": [token_row(t) for t in await context(request).store.tokens.list()]})


async def add_token(request: web.Request) -> web.Response:
    who = need_admin(request)
    body = await _body(request)
    _only(body, ("name", "role"))
    name = _text(body, "name", required=True) or ""
    role = _text(body, "role", required=True) or ""
    row, token = await admin_users.add_token(context(request).store, who, name, role)
    return _ok(token_row(row) | {"token": token}, 201)


async def revoke_token(request: web.Request) -> web.Response:
    who = need_admin(request)
    row = await admin_users.revoke_token(context(request).store, who, request.match_info["name"])
    return _ok(token_row(row))


async def list_audit(request: web.Request) -> web.Response:
    need_admin(request)
    limit = views.parse_limit(request.query.get("limit"))
    before = request.query.get("before_id")
    if before is not None and not (before.isascii() and before.isdigit() and len(before) <= 18):
        raise InputError("before_id must be an audit row id")
    rows = await context(request).store.audit.list(
        limit=limit, before_id=int(before) if before else None
    )
    return _ok({"audit": [audit_row(r) for r in rows]})


async def openapi(request: web.Request) -> web.Response:
    return _ok(openapi_document())


_CALL_QUERY = ("since", "until", "source", "number", "disposition", "q", "cursor", "limit")
ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/v1/calls", list_calls, "Call log, newest first (keyset cursor paging)",
          query=_CALL_QUERY),
    Route("GET", "/api/v1/calls/{call_id}", get_call, "One call record"),
    Route("PATCH", "/api/v1/calls/{call_id}", patch_call, "Change a finished call's tag",
          admin=True, body=("tag",)),
    Route("GET", "/api/v1/calls/{call_id}/recording", call_recording,
          "The call's recording (Range requests supported)", produces="audio/wav"),
    Route("GET", "/api/v1/numbers", list_numbers, "Tracking numbers with pool status"),
    Route("GET", "/api/v1/numbers/{number}", get_number, "One tracking number"),
    Route("GET", "/api/v1/sources", list_sources, "Sources"),
    Route("GET", "/api/v1/sources/{name}", get_source, "One source"),
    Route("PATCH", "/api/v1/sources/{name}", patch_source,
          "Change a source (same rules as pbx sources update)", admin=True, body=_SOURCE_FIELDS),
    Route("GET", "/api/v1/destinations", list_destinations, "Destinations"),
    Route("GET", "/api/v1/trunks", list_trunks, "Trunks (secrets are never returned)"),
    Route("GET", "/api/v1/overview", overview, "Answer rates, per-day chart, cost per call"),
    Route("GET", "/api/v1/reports/roi", report_roi, "ROI per source for a UTC month",
          query=("month",)),
    Route("GET", "/api/v1/reports/calls-per-source", report_calls_per_source,
          "Calls per source per UTC day", query=("since", "until")),
    Route("GET", "/api/v1/live", live, "Live calls"),
    Route("GET", "/api/v1/live/stream", live_stream, "Live calls as server-sent events",
          produces="text/event-stream"),
    Route("GET", "/api/v1/me", me, "Who this request acts as"),
    Route("GET", "/api/v1/users", list_users, "Dashboard users", admin=True),
    Route("POST", "/api/v1/users", add_user, "Add a user", admin=True,
          body=("name", "role", "password")),
    Route("DELETE", "/api/v1/users/{name}", remove_user, "Remove a user", admin=True),
    Route("PUT", "/api/v1/users/{name}/password", set_password,
          "Set a password (admins: anyone's; viewers: their own)", body=("password",)),
    Route("GET", "/api/v1/tokens", list_tokens, "API tokens (never the tokens)", admin=True),
    Route("POST", "/api/v1/tokens", add_token, "Add a token (shown once)", admin=True,
          body=("name", "role")),
    Route("DELETE", "/api/v1/tokens/{name}", revoke_token, "Revoke a token", admin=True),
    Route("GET", "/api/v1/audit", list_audit, "Audit log, newest first", admin=True,
          query=("limit", "before_id")),
    Route("GET", "/api/v1/openapi.json", openapi, "This description"),
)  # fmt: skip


def _operation(route: Route) -> dict[str, Any]:
    params = [{"name": p.strip("{}"), "in": "path", "required": True,
               "schema": {"type": "string"}}
              for p in route.path.split("/") if p.startswith("{")]  # fmt: skip
    params += [{"name": q, "in": "query", "required": False, "schema": {"type": "string"}}
               for q in route.query]  # fmt: skip
    op: dict[str, Any] = {
        "summary": route.summary + (" (admin role)" if route.admin else ""),
        "operationId": route.handler.__name__,
        "parameters": params,
        "responses": {
            "200": {"description": "OK", "content": {route.produces: {}}},
            **{code: {"$ref": f"#/components/responses/{name}"}
               for code, name in (("400", "BadInput"), ("401", "Unauthorized"),
                                  ("403", "Forbidden"), ("404", "NotFound"))},
        },
    }  # fmt: skip
    if route.body:
        props: dict[str, Any] = {b: {} for b in route.body}
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "properties": props, "additionalProperties": False}}}}  # fmt: skip
    return op


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    error = {"description": "Error", "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/Error"}}}}  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": "pbx admin API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["error"],
                                  "properties": {"error": {"type": "string"}}}},
            "responses": {n: error for n in ("BadInput", "Unauthorized", "Forbidden", "NotFound")},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "pbx_session"},
            },
        },
        "security": [{"bearer": []}, {"session": []}],
    }  # fmt: skip


def add_routes(app: web.Application) -> None:
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
