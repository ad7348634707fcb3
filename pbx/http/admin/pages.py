"""Dashboard pages of the admin listener, server-rendered with jinja2 (I/O shell).

Each page reads through `views` (the same functions as the REST API) and
renders one template; each form posts to a page route that calls the same
use case as the API and the CLI, then redirects back (post/redirect/get).
Forms carry the session's CSRF token as a hidden field; the guard checks it.
"""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from pbx.admin import provisioning as admin
from pbx.admin import users as admin_users
from pbx.errors import InputError
from pbx.http.admin import views
from pbx.http.admin.api import live_list, recording_path
from pbx.http.admin.app import (
    PRINCIPAL,
    SESSION,
    ApiError,
    context,
    need_admin,
    session_of,
)
from pbx.records import Disposition, to_dict

_NEXT = re.compile(r"^/(?!/)[A-Za-z0-9/_.?=&%+-]*$")
DONE = {
    "tag": "Tag saved.",
    "user": "User added.",
    "removed": "User removed.",
    "revoked": "Token revoked.",
}


def render(request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
    ctx = context(request)
    who = request.get(PRINCIPAL)
    done = DONE.get(request.query.get("done", ""))
    text = ctx.templates.get_template(template).render(
        who=who.actor if who else None,
        csrf=session_of(request).csrf if SESSION in request else "",
        done=done,
        **values,
    )
    return web.Response(text=text, status=status, content_type="text/html")


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


async def _form(request: web.Request) -> dict[str, str]:
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str)}


# ---------------------------------------------------------------- login


async def login_page(request: web.Request) -> web.Response:
    if PRINCIPAL in request:
        return redirect("/")
    return render(request, "login.html", nav="", error=None, name="",
                  next=_safe_next(request.query.get("next")))  # fmt: skip


def _safe_next(target: str | None) -> str:
    return target if target and _NEXT.match(target) else "/"


async def login(request: web.Request) -> web.Response:
    ctx = context(request)
    form = await _form(request)
    name, password = form.get("name", "").strip()[:64], form.get("password", "")
    keys = (f"user:{name.lower()}", f"ip:{request.remote}")
    target = _safe_next(form.get("next"))
    wait = ctx.throttle.locked_for(*keys)
    if wait > 0:
        seconds = math.ceil(wait)
        locked = render(request, "login.html", 429, nav="", name=name, next=target,
                        error=f"Too many failed logins: try again in {seconds} s.")  # fmt: skip
        locked.headers["Retry-After"] = str(seconds)
        return locked
    user = await admin_users.verify_password(ctx.store, name, password) if name else None
    if user is None:
        ctx.throttle.fail(*keys)
        return render(request, "login.html", 401, nav="", name=name, next=target,
                      error="Wrong user name or password.")  # fmt: skip
    ctx.throttle.clear(keys[0])
    session = ctx.sessions.login(session_of(request), admin_users.Actor(user.name, user.role))
    response = redirect(target)
    ctx.set_cookie(response, session)
    return response


async def logout(request: web.Request) -> web.Response:
    ctx = context(request)
    ctx.sessions.end(session_of(request))
    response = redirect("/login")
    response.del_cookie("pbx_session", path="/")
    return response


# ---------------------------------------------------------------- pages


async def overview_page(request: web.Request) -> web.Response:
    ctx = context(request)
    data = await views.overview(ctx.store, ctx.wall())
    return render(request, "overview.html", nav="overview", data=data)


async def calls_page(request: web.Request) -> web.Response:
    ctx = context(request)
    query = dict(request.query)
    keep = {k: v for k, v in query.items() if k in views.FILTER_KEYS and v}
    sources = [s.name for s in await ctx.store.sources.list()]
    page: dict[str, Any] = {"nav": "calls", "query": keep, "sources": sources,
                            "dispositions": [d.value for d in Disposition],
                            "calls": [], "older": None, "newest": None, "error": None}  # fmt: skip
    try:
        where = views.call_filter(query, ctx.region)
        limit = views.parse_limit(query.get("limit"))
    except InputError as exc:
        return render(request, "calls.html", 400, **(page | {"error": str(exc)}))
    rows, cursor = await views.call_page(ctx.store, where, limit)
    page["calls"] = [to_dict(r) for r in rows]
    page["older"] = "/calls?" + urlencode(keep | {"cursor": cursor}) if cursor else None
    page["newest"] = "/calls?" + urlencode(keep) if query.get("cursor") else None
    return render(request, "calls.html", **page)


async def call_page(request: web.Request) -> web.Response:
    ctx = context(request)
    call_id = request.match_info["call_id"]
    record = await ctx.store.calls.get(call_id)
    if record is None:
        raise ApiError(404, f"no call {call_id[:64]}")
    has_recording = recording_path(ctx, record) is not None
    return render(request, "call.html", nav="calls", call=to_dict(record),
                  final=record.is_final, has_recording=has_recording)  # fmt: skip


async def call_tag(request: web.Request) -> web.Response:
    who = need_admin(request)
    form = await _form(request)
    call_id = request.match_info["call_id"]
    await admin_users.set_call_tag(context(request).store, who, call_id, form.get("tag", ""))
    return redirect(f"/calls/{call_id}?done=tag")


async def sources_page(request: web.Request) -> web.Response:
    ctx = context(request)
    sources = [views.source_row(s) for s in await ctx.store.sources.list()]
    for row in sources:
        row["cost"] = (
            f"{views.money(row['cost_per_call_cents'])}/call"
            if row["cost_per_call_cents"] is not None
            else f"{views.money(row['monthly_budget_cents'])}/month"
            if row["monthly_budget_cents"] is not None
            else ""
        )
    return render(request, "sources.html", nav="sources", sources=sources)


async def source_tag(request: web.Request) -> web.Response:
    who = need_admin(request)
    form = await _form(request)
    name = request.match_info["name"]
    opts = admin.SourceOptions(tag=form.get("tag", ""))
    await admin_users.update_source(context(request).store, who, name, opts)
    return redirect("/sources?done=tag")


async def numbers_page(request: web.Request) -> web.Response:
    ctx = context(request)
    numbers = await views.numbers_view(ctx.store, ctx.wall())
    return render(request, "numbers.html", nav="numbers", numbers=numbers)


async def live_page(request: web.Request) -> web.Response:
    calls = await live_list(context(request))
    return render(request, "live.html", nav="live", calls=calls)


async def users_page(request: web.Request, new_token: str | None = None) -> web.Response:
    need_admin(request)
    store = context(request).store
    return render(request, "users.html", nav="users", users=await store.users.list(),
                  tokens=await store.tokens.list(), audit=await store.audit.list(limit=30),
                  new_token=new_token)  # fmt: skip


async def users_add(request: web.Request) -> web.Response:
    who = need_admin(request)
    form = await _form(request)
    await admin_users.add_user(context(request).store, who, form.get("name", ""),
                               form.get("role", ""), form.get("password", ""))  # fmt: skip
    return redirect("/users?done=user")


async def users_remove(request: web.Request) -> web.Response:
    who = need_admin(request)
    ctx, name = context(request), request.match_info["name"]
    await admin_users.remove_user(ctx.store, who, name)
    ctx.sessions.end_user(name)
    return redirect("/users?done=removed")


async def tokens_add(request: web.Request) -> web.Response:
    who = need_admin(request)
    form = await _form(request)
    _, token = await admin_users.add_token(context(request).store, who, form.get("name", ""),
                                           form.get("role", ""))  # fmt: skip
    return await users_page(request, new_token=token)  # shown once, never stored


async def tokens_revoke(request: web.Request) -> web.Response:
    who = need_admin(request)
    await admin_users.revoke_token(context(request).store, who, request.match_info["name"])
    return redirect("/users?done=revoked")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/login", login_page)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/", overview_page)
    r.add_get("/calls", calls_page)
    r.add_get("/calls/{call_id}", call_page)
    r.add_post("/calls/{call_id}/tag", call_tag)
    r.add_get("/sources", sources_page)
    r.add_post("/sources/{name}/tag", source_tag)
    r.add_get("/numbers", numbers_page)
    r.add_get("/live", live_page)
    r.add_get("/users", users_page)
    r.add_post("/users", users_add)
    r.add_post("/users/{name}/remove", users_remove)
    r.add_post("/tokens", tokens_add)
    r.add_post("/tokens/{name}/revoke", tokens_revoke)
