"""Admin app (dashboard + REST API) over a real SQLite store file, with aiohttp's test client:
authentication, sessions, CSRF, throttling, roles, bearer tokens, audit.

The tests marked `BOTH_BACKENDS` (CSRF on every change, tokens, users, bad bodies
changing nothing) also run on PostgreSQL (the throwaway cluster of tests/pg.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pbx.admin import users as admin_users
from pbx.http.admin.auth import Throttle
from pbx.http.admin.factory import make_admin_app
from pbx.store.base import Store
from pbx.store.connect import open_store
from tests.admin_support import (
    ADMIN_PASSWORD,
    CLI,
    VIEWER_PASSWORD,
    call,
    csrf_of,
    seed,
)

Client = TestClient[web.Request, web.Application]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


BOTH_BACKENDS = pytest.mark.parametrize("store", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A seeded store: SQLite unless a test asks for postgres (tests/pg.py cluster)."""
    backend = getattr(request, "param", "sqlite")
    where = request.getfixturevalue("pg_url") if backend == "postgres" else tmp_path / "pbx.sqlite3"
    opened = await open_store(where)
    await seed(opened)
    for i in range(6):
        await opened.calls.insert(call(i, "2026-12-01"))
    yield opened
    await opened.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def _client(app: web.Application) -> Client:
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def client(store: Store, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Client]:
    app = make_admin_app(
        store,
        live_calls=None,
        secure_cookies=False,
        recordings_dir=tmp_path / "rec",
        throttle=Throttle(clock=clock),
    )
    c = await _client(app)
    yield c
    await c.close()


async def login(client: Client, name: str, password: str) -> str:
    """Log in through the form; returns the session's CSRF token."""
    page = await client.get("/login")
    token = csrf_of(await page.text())
    answer = await client.post(
        "/login",
        data={"name": name, "password": password, "csrf_token": token},
        allow_redirects=False,
    )
    assert answer.status == 303, await answer.text()
    home = await client.get("/")
    assert home.status == 200
    return csrf_of(await home.text())


async def test_only_login_and_static_are_public(client: Client) -> None:
    page = await client.get("/", allow_redirects=False)
    assert page.status == 303
    assert page.headers["Location"] == "/login?next=/"
    assert "Set-Cookie" not in page.headers  # only the login page hands out sessions
    for path in ("/api/v1/calls", "/api/v1/sources", "/api/v1/openapi.json"):
        answer = await client.get(path)
        assert answer.status == 401
        assert (await answer.json())["error"]
    for path in ("/calls", "/users", "/live"):
        assert (await client.get(path, allow_redirects=False)).status == 303
    assert (await client.get("/login")).status == 200
    css = await client.get("/static/app.css")
    assert css.status == 200
    assert (await client.get("/static/vendor/chart.umd.min.js")).status == 200


async def test_session_cookie_flags_and_rotation(client: Client, store: Store) -> None:
    first = await client.get("/login")
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Secure" not in cookie
    before = first.cookies["pbx_session"].value
    answer = await client.post(
        "/login",
        data={"name": "ann", "password": ADMIN_PASSWORD, "csrf_token": csrf_of(await first.text())},
        allow_redirects=False,
    )
    assert answer.status == 303
    after = answer.cookies["pbx_session"].value
    assert after != before  # a new session id at login: no fixation
    assert (await client.get("/api/v1/me")).status == 200
    assert (await (await client.get("/api/v1/me")).json())["name"] == "ann"


async def test_secure_cookie_behind_tls(store: Store, tmp_path: Path) -> None:
    app = make_admin_app(store, live_calls=None, secure_cookies=True, recordings_dir=None)
    c = await _client(app)
    try:
        assert "Secure" in (await c.get("/login")).headers["Set-Cookie"]
    finally:
        await c.close()


async def test_login_without_csrf_or_wrong_password(client: Client) -> None:
    await client.get("/login")
    refused = await client.post("/login", data={"name": "ann", "password": ADMIN_PASSWORD})
    assert refused.status == 403
    page = await client.get("/login")
    wrong = await client.post(
        "/login",
        data={"name": "ann", "password": "nope nope", "csrf_token": csrf_of(await page.text())},
    )
    assert wrong.status == 401
    assert "Wrong user name or password" in await wrong.text()
    assert (await client.get("/api/v1/me")).status == 401


async def _try(client: Client, name: str, password: str) -> int:
    page = await client.get("/login")
    answer = await client.post(
        "/login",
        data={"name": name, "password": password, "csrf_token": csrf_of(await page.text())},
        allow_redirects=False,
    )
    return answer.status


async def test_five_failures_lock_the_user_then_cool_down(
    client: Client,
    clock: FakeClock,
) -> None:
    assert [await _try(client, "ann", "wrong password") for _ in range(5)] == [401] * 5
    assert await _try(client, "ann", ADMIN_PASSWORD) == 429  # locked: even the right password
    page = await client.get("/login")
    locked = await client.post(
        "/login",
        data={"name": "ann", "password": ADMIN_PASSWORD, "csrf_token": csrf_of(await page.text())},
    )
    assert locked.headers["Retry-After"] == "300"
    clock.now += 299
    assert await _try(client, "ann", ADMIN_PASSWORD) == 429
    clock.now += 2
    assert await _try(client, "ann", ADMIN_PASSWORD) == 303


async def test_five_failures_from_one_address_lock_it(client: Client) -> None:
    for name in ("a1", "a2", "a3", "a4", "a5"):
        assert await _try(client, name, "whatever123") == 401
    assert await _try(client, "vic", VIEWER_PASSWORD) == 429


@BOTH_BACKENDS
async def test_csrf_is_needed_for_every_change(client: Client, store: Store) -> None:
    token = await login(client, "ann", ADMIN_PASSWORD)
    before = await store.dump()
    assert (await client.post("/sources/google/tag", data={"tag": "x"})).status == 403
    bad = {"tag": "x", "csrf_token": "not-the-token"}
    assert (await client.post("/sources/google/tag", data=bad)).status == 403
    patch = await client.patch("/api/v1/sources/google", json={"tag": "x"})
    assert patch.status == 403
    assert (await patch.json()) == {"error": "missing or wrong CSRF token"}
    foreign = await client.patch(
        "/api/v1/sources/google",
        json={"tag": "x"},
        headers={"X-CSRF-Token": token, "Origin": "https://evil.example"},
    )
    assert foreign.status == 403
    assert await store.dump() == before
    ok = await client.post(
        "/sources/google/tag", data={"tag": "spring", "csrf_token": token}, allow_redirects=False
    )
    assert ok.status == 303
    assert (await store.sources.get("google")).tag == "spring"  # type: ignore[union-attr]
    api = await client.patch(
        "/api/v1/sources/google", json={"tag": "summer"}, headers={"X-CSRF-Token": token}
    )
    assert api.status == 200
    assert (await api.json())["tag"] == "summer"
    entries = await store.audit.list(limit=2)
    assert [(e.actor, e.action, e.subject) for e in entries] == [
        ("ann", "sources.update", "google"),
        ("ann", "sources.update", "google"),
    ]
    assert '"tag":"summer"' in entries[0].detail


async def test_viewer_reads_but_cannot_change(client: Client, store: Store) -> None:
    token = await login(client, "vic", VIEWER_PASSWORD)
    assert (await client.get("/api/v1/calls")).status == 200
    assert (await client.get("/sources")).status == 200
    before = await store.dump()
    patch = await client.patch(
        "/api/v1/sources/google", json={"tag": "x"}, headers={"X-CSRF-Token": token}
    )
    assert patch.status == 403
    assert "admin" in (await patch.json())["error"]
    form = await client.post("/sources/google/tag", data={"tag": "x", "csrf_token": token})
    assert form.status == 403
    assert (await client.get("/users")).status == 403
    assert (await client.get("/api/v1/users")).status == 403
    assert await store.dump() == before


async def test_logout_ends_the_session(client: Client) -> None:
    token = await login(client, "ann", ADMIN_PASSWORD)
    out = await client.post("/logout", data={"csrf_token": token}, allow_redirects=False)
    assert out.status == 303
    assert (await client.get("/api/v1/me")).status == 401


@BOTH_BACKENDS
async def test_bearer_tokens_roles_and_revocation(client: Client, store: Store) -> None:
    _, viewer = await admin_users.add_token(store, CLI, "reader", "viewer")
    _, writer = await admin_users.add_token(store, CLI, "writer", "admin")
    read = await client.get("/api/v1/calls", headers={"Authorization": f"Bearer {viewer}"})
    assert read.status == 200
    assert (await store.tokens.get("reader")).last_used_at is not None  # type: ignore[union-attr]
    denied = await client.patch(
        "/api/v1/sources/google", json={"tag": "t"}, headers={"Authorization": f"Bearer {viewer}"}
    )
    assert denied.status == 403
    done = await client.patch(
        "/api/v1/sources/google", json={"tag": "t"}, headers={"Authorization": f"Bearer {writer}"}
    )
    assert done.status == 200  # no CSRF token needed: a bearer token is not ambient
    assert (await store.audit.list(limit=1))[0].actor == "token:writer"
    await admin_users.revoke_token(store, CLI, "writer")
    gone = await client.get("/api/v1/calls", headers={"Authorization": f"Bearer {writer}"})
    assert gone.status == 401
    for header in ("Bearer", "Basic abc", f"Bearer {viewer}x", "Bearer pbx_nope"):
        assert (await client.get("/api/v1/calls", headers={"Authorization": header})).status == 401


async def test_trunk_secrets_never_leave(client: Client, store: Store) -> None:
    _, token = await admin_users.add_token(store, CLI, "ops", "admin")
    answer = await client.get("/api/v1/trunks", headers={"Authorization": f"Bearer {token}"})
    text = await answer.text()
    assert answer.status == 200
    assert "s3cret-trunk" not in text
    assert (await answer.json())["trunks"][0]["password_set"] is True


@BOTH_BACKENDS
async def test_users_and_tokens_through_the_api(client: Client, store: Store) -> None:
    token = await login(client, "ann", ADMIN_PASSWORD)
    h = {"X-CSRF-Token": token}
    made = await client.post(
        "/api/v1/users",
        json={"name": "zoe", "role": "viewer", "password": "zoe's password"},
        headers=h,
    )
    assert made.status == 201
    short = await client.post(
        "/api/v1/users", json={"name": "yan", "role": "viewer", "password": "short"}, headers=h
    )
    assert short.status == 400
    assert (await short.json())["error"].startswith("password must be")
    added = await client.post("/api/v1/tokens", json={"name": "ci", "role": "viewer"}, headers=h)
    secret = (await added.json())["token"]
    assert (
        await client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    ).status == 200
    listed = await (await client.get("/api/v1/tokens")).text()
    assert secret not in listed
    assert (await client.delete("/api/v1/tokens/ci", headers=h)).status == 200
    assert (await client.delete("/api/v1/users/zoe", headers=h)).status == 200
    actions = [e.action for e in await store.audit.list(limit=4)]
    assert actions == ["users.remove", "tokens.revoke", "tokens.add", "users.add"]
    audit = await client.get("/api/v1/audit?limit=2")
    assert [r["action"] for r in (await audit.json())["audit"]] == ["users.remove", "tokens.revoke"]
    huge = await client.get("/api/v1/audit?before_id=" + "9" * 40)  # no 500 from an overflow
    assert huge.status == 400
    assert (await huge.json())["error"] == "before_id must be an audit row id"


@BOTH_BACKENDS
async def test_bad_json_bodies_change_nothing(client: Client, store: Store) -> None:
    token = await login(client, "ann", ADMIN_PASSWORD)
    h = {"X-CSRF-Token": token}
    before = await store.dump()
    cases = [
        ("/api/v1/sources/google", b"not json", 400),
        ("/api/v1/sources/google", b"[1]", 400),
        ("/api/v1/sources/google", b'{"colour": "red"}', 400),
        ("/api/v1/sources/google", b'{"enabled": "yes"}', 400),
        ("/api/v1/sources/google", b'{"cost_per_call": "12.555"}', 400),
        ("/api/v1/sources/nope", b'{"tag": "x"}', 404),
        ("/api/v1/calls/call0001", b'{"tag": 5}', 400),
        ("/api/v1/calls/nope", b'{"tag": "x"}', 404),
    ]
    for path, body, status in cases:
        answer = await client.patch(
            path, data=body, headers=h | {"Content-Type": "application/json"}
        )
        assert answer.status == status, (path, body, await answer.text())
        error = (await answer.json())["error"]
        assert error
        assert "\n" not in error
    assert await store.dump() == before
