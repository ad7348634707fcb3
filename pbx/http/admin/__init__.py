"""The admin listener's app: dashboard pages and the REST API under /api/v1 (I/O, aiohttp).

`factory.make_admin_app(store, live_calls=..., secure_cookies=..., recordings_dir=...)`
returns the aiohttp application; the daemon serves it on its own listener
(`pbx serve --admin HOST:PORT`), never on the public visitor listener.

Modules: `app` (context, the guard middleware: authentication, CSRF, errors,
security headers), `auth` (sessions, throttling), `views` (what both pages
and API show), `api` (REST routes and their OpenAPI description), `pages`
(jinja2 pages and their forms), `templates/`, `static/` (CSS, JS, vendored
Chart.js).

Decisions:
- Server-rendered pages (jinja2), not a single-page front end: the pages
  are tables and forms over data the server already holds, so HTML from
  the server is the least code, needs no build step or JS framework to
  vendor, works with JavaScript off except for the chart and the live
  table, keeps one place (the server) that decides what a role may see,
  and makes every page a plain URL that can be bookmarked and filtered.
  JavaScript (static/app.js, no inline scripts: the CSP forbids them) only
  draws the chart (Chart.js, vendored at a pinned version with its license,
  static/vendor/README.md) and keeps the live table current from
  server-sent events (one-way updates are all it needs; SSE reconnects on
  its own and passes through proxies as plain HTTP, unlike a WebSocket).
- Only `/login` and `/static/...` answer without authentication; other pages
  redirect to /login, other API routes answer 401.
- Viewers read; every change needs the admin role (403 otherwise). Changes
  go through `pbx.admin` / `pbx.admin.users`, the CLI's use cases, which
  write the audit log.
- Sessions, CSRF and throttling: see `pbx.http.admin.auth` (sessions live in
  memory: a restart logs everyone out).
- Give the app its own store (a second `open_store` of the daemon's file):
  SQLite in WAL lets its reads run beside the daemon's writes, whereas on
  the daemon's own store every dashboard query would hold the connection's
  lock that call records wait for (a cold month's ROI report reads ~80,000
  rows). Its writes (users, tags) then commit like the CLI's; the daemon's
  provisioning cache sees them through `config_version`.
"""
