"""The admin aiohttp application: context, guard middleware, errors (I/O shell).

`make_admin_app` builds the app; `guard` runs before every handler: it finds
who the request acts as (bearer token, else session cookie), sends the
unauthenticated to /login (pages) or answers 401 (API), checks CSRF on
changes made with a cookie, turns `InputError` subclasses into 4xx
answers (`{"error": "one line"}` under /api, an error page elsewhere), and
adds the security headers. Handlers only check roles (`need_admin`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
import structlog
from aiohttp import web

from pbx.admin.users import Actor, PermissionDenied, verify_token
from pbx.errors import ConflictError, InputError, NotFoundError
from pbx.http.admin.auth import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    UNSAFE_METHODS,
    Principal,
    Session,
    Sessions,
    Throttle,
    csrf_ok,
)
from pbx.store.base import Store

log = structlog.get_logger("pbx.http.admin")

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
MAX_BODY = 64 * 1024  # forms and JSON patches are small
LiveCalls = Callable[[], list[dict[str, Any]]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CSP = ("default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")  # fmt: skip


class ApiError(Exception):
    """An HTTP error with one line of text (for cases that are not InputError)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class AdminContext:
    """What the handlers share; one per app."""

    store: Store
    live_calls: LiveCalls | None
    secure_cookies: bool
    recordings_dir: Path | None
    region: str = "US"
    wall: Callable[[], float] = time.time
    sessions: Sessions = field(default_factory=Sessions)
    throttle: Throttle = field(default_factory=Throttle)
    live_poll_seconds: float = 1.0
    roi_cache: dict[Any, Any] = field(default_factory=dict)  # views.roi's cache
    templates: jinja2.Environment = field(
        default_factory=lambda: jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
    )

    def set_cookie(self, response: web.StreamResponse, session: Session) -> None:
        response.set_cookie(COOKIE, session.sid, httponly=True, samesite="Strict", path="/",
                            secure=self.secure_cookies)  # fmt: skip


CTX = web.AppKey("pbx_admin", AdminContext)
PRINCIPAL = web.RequestKey("pbx_principal", Principal)
SESSION = web.RequestKey("pbx_session", Session)


def context(request: web.Request) -> AdminContext:
    return request.app[CTX]


def principal(request: web.Request) -> Principal:
    """The authenticated principal (the guard let only those through)."""
    if PRINCIPAL not in request:
        raise ApiError(401, "log in or send Authorization: Bearer TOKEN")
    return request[PRINCIPAL]


def actor(request: web.Request) -> Actor:
    return principal(request).actor


def need_admin(request: web.Request) -> Actor:
    who = actor(request)
    if not who.is_admin:
        raise PermissionDenied("this needs the admin role (you are a viewer)")
    return who


def session_of(request: web.Request) -> Session:
    """This browser's session (the guard made one if it had none)."""
    return request[SESSION]


def is_api(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def is_public(path: str) -> bool:
    return path == "/login" or path.startswith("/static/")


async def _bearer(ctx: AdminContext, header: str) -> Principal:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "Authorization must be 'Bearer TOKEN'")
    row = await verify_token(ctx.store, token.strip(), ctx.wall)
    if row is None:
        raise ApiError(401, "unknown or revoked token")
    return Principal(Actor(f"token:{row.name}", row.role), "token")


async def _presented_csrf(request: web.Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header is not None:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        value = (await request.post()).get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.host


async def _check_csrf(request: web.Request, session: Session) -> None:
    if not _same_origin(request):
        raise ApiError(403, "cross-origin change refused")
    if not csrf_ok(session, await _presented_csrf(request)):
        raise ApiError(403, "missing or wrong CSRF token")


def _status(exc: Exception) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, PermissionDenied):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    return 400


def error_response(request: web.Request, exc: Exception) -> web.Response:
    status, message = _status(exc), " ".join(str(exc).split()) or "bad request"
    if is_api(request.path):
        return web.json_response({"error": message}, status=status)
    page = context(request).templates.get_template("error.html")
    who = request.get(PRINCIPAL)
    text = page.render(status=status, message=message, who=who and who.actor, nav="", done=None,
                       csrf=request[SESSION].csrf if request.get(SESSION) else "")  # fmt: skip
    return web.Response(text=text, status=status, content_type="text/html")


async def _authenticate(request: web.Request, ctx: AdminContext) -> bool:
    """Set PRINCIPAL/SESSION on the request; True when a new session cookie is due."""
    header = request.headers.get("Authorization")
    if header is not None:
        request[PRINCIPAL] = await _bearer(ctx, header)
        return False
    session = ctx.sessions.get(request.cookies.get(COOKIE))
    fresh = session is None and request.path == "/login"
    if fresh:
        session = ctx.sessions.new()  # the login form's CSRF token needs one
    if session is None:
        return False
    request[SESSION] = session
    if session.actor is not None:
        request[PRINCIPAL] = Principal(session.actor, "session")
    return fresh


def _login_redirect(request: web.Request) -> web.Response:
    target = quote(request.path_qs, safe="/?=&")
    return web.Response(status=303, headers={"Location": f"/login?next={target}"})


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_public(request.path) and request.get(PRINCIPAL) is None:
        if is_api(request.path):
            raise ApiError(401, "log in or send Authorization: Bearer TOKEN")
        return _login_redirect(request)
    session = request.get(SESSION)
    if request.method in UNSAFE_METHODS and session is not None:
        await _check_csrf(request, session)
    return await handler(request)


def _headers(response: web.StreamResponse, path: str) -> None:
    if response.prepared:
        return
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if not path.startswith("/static/"):
        response.headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = context(request)
    fresh = False
    try:
        fresh = await _authenticate(request, ctx)
        response = await _guarded(request, handler)
    except (InputError, ApiError) as exc:
        response = error_response(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(request, ApiError(exc.status, exc.reason))
    if fresh and SESSION in request and not response.prepared and COOKIE not in response.cookies:
        ctx.set_cookie(response, request[SESSION])
    _headers(response, request.path)
    return response
