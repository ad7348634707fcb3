"""A throwaway PostgreSQL 15 cluster for tests and benchmarks (real server, no mock).

`Cluster.start()` runs `initdb` into a fresh temporary directory (owned by
the `postgres` OS user and run as that user through `runuser` when we are
root: PostgreSQL refuses to run as root), then `pg_ctl start` with a private
unix socket directory inside it and a free TCP port on 127.0.0.1 only
(socket: trust; TCP: scram-sha-256 with a random password).
`stop()` is `pg_ctl stop -m fast` and removes the directory.

Tests share one database holding the schema, emptied before each test
(`empty_tables`: one TRUNCATE ... RESTART IDENTITY, ~15 ms; a fresh
`CREATE DATABASE` per test costs 0.1-0.3 s on this box), so no test sees
another's rows. Tests of migrations take a database of their own
(`fresh_db`, from a template holding the schema, or empty). Durability
is off for tests (fsync, full page writes, synchronous_commit): the
cluster is thrown away; the benchmark can start one with the defaults.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

PG_BIN = Path(os.environ.get("PBX_PG_BIN", "/usr/lib/postgresql/15/bin"))
TEMPLATE = "pbx_template"
START_TIMEOUT_S = 60
_FAST = ("fsync=off", "full_page_writes=off", "synchronous_commit=off")
_EMPTY = """
DO $$ BEGIN EXECUTE (
    SELECT 'TRUNCATE ' || string_agg(quote_ident(table_name), ', ') || ' RESTART IDENTITY'
    FROM information_schema.tables WHERE table_schema = current_schema()
    AND table_type = 'BASE TABLE' AND table_name NOT IN ('schema_version', 'config_version'));
END $$;
UPDATE config_version SET version = 0;
"""


def available() -> bool:
    return all((PG_BIN / tool).is_file() for tool in ("initdb", "pg_ctl", "psql"))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_owner() -> list[str]:
    """Run server tools as `postgres` when we are root (initdb/postgres refuse root)."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _run(args: Sequence[str], timeout: float = START_TIMEOUT_S) -> str:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{Path(args[0]).name} failed: {done.stderr.strip() or done.stdout}")
    return done.stdout


class Cluster:
    """One running throwaway server; `url(db)` names a database on it."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sock"
        self.port = port
        self.password = secrets.token_hex(8)  # TCP needs it (scram); the socket is trust
        self._names = itertools.count(1)
        self._options = ""

    @classmethod
    def start(cls, *, durable: bool = False) -> Cluster:
        root = Path(tempfile.mkdtemp(prefix="pbx-pg-"))
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(root, owner.pw_uid, owner.pw_gid)
        cluster = cls(root, _free_port())
        try:
            cluster._init_and_start(durable)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return cluster

    def _init_and_start(self, durable: bool) -> None:
        owner = _as_owner()
        _run([*owner, "mkdir", "-m", "700", str(self.sockets)])
        _run(
            [*owner, str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
             "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
             "--locale=C.UTF-8", "--no-sync"]
        )  # fmt: skip
        settings = [
            "listen_addresses=127.0.0.1",
            f"port={self.port}",
            f"unix_socket_directories={self.sockets}",
            "max_connections=60",
            *([] if durable else _FAST),
        ]
        self._options = " ".join(f"-c {s}" for s in settings)
        self.resume()
        self.psql(f"ALTER ROLE postgres PASSWORD '{self.password}'")

    def resume(self) -> None:
        """(Re)start the server on its data directory and port; returns once it accepts."""
        log = self.root / "server.log"
        _run(
            [*_as_owner(), str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(log),
             "-w", "-t", str(START_TIMEOUT_S), "-o", self._options, "start"]
        )  # fmt: skip

    def pause(self) -> None:
        """Stop the server (fast: connections are cut), keeping its data for `resume`."""
        _run([*_as_owner(), str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast",
              "-w", "stop"])  # fmt: skip

    def url(self, db: str = "postgres", *, tcp: bool = False, password: str | None = None) -> str:
        """A libpq-style URL: unix socket by default, TCP on 127.0.0.1 when asked.

        TCP authenticates with a password (scram-sha-256): from the URL when
        `password` is given, else from PGPASSWORD or a .pgpass file.
        """
        if tcp:
            secret = "" if password is None else f":{quote(password, safe='')}"
            return f"postgresql://postgres{secret}@127.0.0.1:{self.port}/{db}"
        return f"postgresql://postgres@/{db}?host={quote(str(self.sockets))}&port={self.port}"

    def psql(self, sql: str, db: str = "postgres") -> str:
        return _run(
            [str(PG_BIN / "psql"), "-h", str(self.sockets), "-p", str(self.port), "-U",
             "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-qAtX", "-c", sql]
        )  # fmt: skip

    def create_template(self) -> None:
        """Database `TEMPLATE` with the schema applied by the real `open_postgres`."""
        self.psql(f"CREATE DATABASE {TEMPLATE}")
        run_async(_migrate(self.url(TEMPLATE)))

    def fresh_db(self, *, empty: bool = False) -> str:
        """A new database: with the schema (from the template) or `empty`."""
        name = f"t{os.getpid()}_{next(self._names)}"
        template = "template0" if empty else TEMPLATE
        self.psql(f"CREATE DATABASE {name} TEMPLATE {template}")
        return name

    def empty_tables(self, db: str) -> None:
        """Every row of every pbx table gone, ids restarted, config_version back to 0."""
        self.psql(_EMPTY, db=db)

    def drop_db(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():  # not already paused
                self.pause()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


async def _migrate(url: str) -> None:
    from pbx.store.postgres.store import open_postgres

    store = await open_postgres(url)
    await store.close()


def run_async(coro: object) -> None:
    """Run a coroutine to completion even when called from inside a running loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, coro).result()  # type: ignore[arg-type]
