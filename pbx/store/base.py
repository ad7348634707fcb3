"""Store interface: row dataclasses and the `Store` protocol (pure types, no I/O).

Every backend (SQLite, PostgreSQL) implements `Store` and passes
the same contract suite (tests/unit/test_store_contract.py). Callers depend only on
this module.

Conventions every backend keeps:
- Rows are frozen dataclasses. `add(row)` ignores `row.id` and returns the
  stored row with its id assigned.
- `get(name_or_id)` takes the row's name (a number's E.164 string) or its
  integer id; it returns None when absent. `update`/`remove` raise
  `NotFoundError` when absent.
- `update(name, /, **changes)` takes field names of the row (not `id`); an
  unknown field is an `InputError`; `name=` (or `number=`) in the changes
  renames. It returns the updated row. Values must already have the row's
  types (e.g. `allow` a tuple of CIDR strings, money in integer cents).
- Every mutating method is atomic: on any error nothing changes.
- Errors are `pbx.errors.NotFoundError` / `ConflictError` with one line a
  human understands ("destination 'sales' is used by +14155550101; ...").
- Config rows (trunks, destinations, sources, numbers, blocks, extensions)
  have integer ids; call records and visits carry string ids chosen by the
  shell (uuid4 hex), so pure code can name them before they are stored.
- Call records and visits keep source / number / trunk as plain names, not
  references: history survives later config changes.
- The store does referential checks (unknown source, destination or trunk ->
  NotFoundError; duplicates and in-use removals -> ConflictError), not format
  validation: E.164 normalisation and regex checks belong to the caller.

Removal rules:
- destination used by a number: ConflictError unless `force=True`, which
  also drops it from those numbers' destination and after-hours lists (a
  number can be left with no destinations; the daemon then rejects its calls).
- source that still has numbers: ConflictError (remove the numbers first).
- trunk used by a number: ConflictError unless `force=True`, which sets those
  numbers' trunk to None (default trunk).
- extension used by a destination (`ext:NAME`): ConflictError.
- removing a number also removes its number-specific blocks.
- prompt used by a number (disclosure / whisper / voicemail): ConflictError
  naming `--force` unless `force=True`, which clears those fields (a number
  whose disclosure is gone is no longer recorded: `record` is cleared too,
  so nobody is recorded without the consent prompt the admin chose); a
  source's disclosure likewise (its `record` is cleared too).
  A number naming a prompt that does not exist is a NotFoundError.

`numbers.lookup(e164)` returns the number even when it or its source is
disabled; the daemon decides what a disabled number means.
Outbox: `next_attempt_at=None` means "due at once". `mark_failed(id, None,
error)` gives up (`gave_up=True`): `due()` never returns that item again.
Trunk `allow`: when added empty and `host` is an IP literal, it becomes
`host/32` (`/128` for IPv6); a host name is not resolved here (no DNS in the
store), so the caller resolves it or passes `allow` explicitly.
A database whose schema is newer than this code raises `SchemaVersionError`.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, Protocol, Self

from pbx.errors import ConflictError, PbxError
from pbx.records import CallFact, CallRecord, Disposition

TrunkTransport = Literal["udp", "tcp", "tls"]
DestinationKind = Literal["number", "sip", "extension"]
Strategy = Literal["sequential", "simultaneous", "round-robin"]
OutboxKind = Literal["ga4", "webhook"]
# Digest algorithms an extension is challenged with (`pbx extensions --digest`).
DigestChoice = Literal["both", "md5", "sha-256"]


class SchemaVersionError(PbxError):
    """The database was written by a newer pbx (its schema version is unknown here)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Trunk:
    """A SIP provider account. `allow` empty on add means: the host's /32."""

    name: str
    host: str
    id: int = 0
    port: int = 5060
    transport: TrunkTransport = "udp"
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # a secret: never in a repr
    realm: str | None = None
    register: bool = False
    allow: tuple[str, ...] = ()
    strip_plus: bool = False
    prefix: str = ""
    enabled: bool = True
    # PEM of the private CA(s) a TLS trunk's certificate must chain to; "" = the system's CAs.
    # Stored as contents, not a path: every node of a cluster reads the same store.
    tls_ca: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Destination:
    """Where calls go: `+1...` (kind number), `sip:user@host[:port]` (sip), `ext:NAME`."""

    name: str
    target: str
    kind: DestinationKind
    id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """An advertising channel a number stands for; money in integer cents."""

    name: str
    id: int = 0
    preset: str | None = None
    description: str = ""
    onsite: bool = False
    referrer: str | None = None
    landing: str | None = None
    position: int = 0
    last_touch: bool = False
    tag: str | None = None
    cost_per_call_cents: int | None = None
    monthly_budget_cents: int | None = None
    ga_measurement_id: str | None = None
    ga_api_secret: str | None = field(default=None, repr=False)
    ga_source: str | None = None
    ga_medium: str | None = None
    ga_campaign: str | None = None
    geo: bool = False
    fallback_number: str | None = None
    enabled: bool = True
    # Source-level audio default (issue 13): every number of the source is recorded
    # (after this disclosure unless the number names its own); a number cannot opt out.
    record: bool = False
    disclosure: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackingNumber:
    """A DID: its source, ordered destinations, routing and schedule."""

    number: str
    source: str
    destinations: tuple[str, ...]
    id: int = 0
    strategy: Strategy = "sequential"
    ring_timeout: int = 20
    trunk: str | None = None
    enabled: bool = True
    present_tracking_number: bool = False
    hours: str | None = None
    after_hours: tuple[str, ...] = ()
    region: str | None = None
    location: str | None = None
    area_code: str | None = None
    rr_cursor: int = 0
    # Audio (issue 13); prompts are named, see `StoredPrompt`. Recording is off by default.
    record: bool = False
    disclosure: str | None = None  # played to the caller before bridging; recording after it
    whisper: str | None = None  # played to the answerer only, before bridging
    whisper_text: str | None = None  # a `pbx.audio.text` template spoken per call
    screen: bool = False  # the answerer must press 1 within screen_seconds
    screen_seconds: int = 5
    voicemail: str | None = None  # greeting when every destination failed
    voicemail_seconds: int = 120


PROMPT_FIELDS = ("disclosure", "whisper", "voicemail")  # number fields naming a prompt


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredPrompt:
    """An audio prompt as stored: 8 kHz mono 16-bit LE PCM (`pbx.audio.prompt`)."""

    name: str
    pcm: bytes
    id: int = 0
    seconds: float = 0.0
    origin: str = ""  # "file NAME.wav" or "text"
    text: str | None = None  # the text it was rendered from
    created_at: str = ""


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """Everything the daemon needs for one INVITE to a tracking number."""

    number: TrackingNumber
    source: Source
    destinations: tuple[Destination, ...]
    after_hours: tuple[Destination, ...]
    trunk: Trunk | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Visit:
    """One website visitor session holding a number while active."""

    id: str
    visitor_id: str
    started_at: str
    last_seen_at: str
    expires_at: str
    source: str | None = None
    number: str | None = None
    landing_url: str | None = None
    referrer: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    gclid: str | None = None
    ga_client_id: str | None = None
    ip: str | None = None
    country: str | None = None
    city: str | None = None
    lat: float | None = None
    lon: float | None = None
    fallback: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxItem:
    """An integration delivery (GA4 event, webhook) queued with the call row."""

    kind: OutboxKind
    payload: str
    target_url: str
    id: int = 0
    attempts: int = 0
    next_attempt_at: str | None = None
    delivered_at: str | None = None
    last_error: str | None = None
    created_at: str | None = None
    gave_up: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    """A blocked caller: exact number or prefix; global when `number` is None."""

    pattern: str
    number: str | None = None
    id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Extension:
    """A local SIP account; only digest HA1 hashes are kept, never the password."""

    name: str
    ha1_md5: str = field(repr=False)  # HA1 answers any challenge of the realm: a secret
    ha1_sha256: str = field(repr=False)
    realm: str
    id: int = 0
    max_contacts: int = 1
    digest: DigestChoice = "both"  # challenges: SHA-256 then MD5, or only one


@dataclass(frozen=True, slots=True, kw_only=True)
class Binding:
    """A registered contact of an extension (RFC 3261 §10)."""

    extension: str
    contact: str
    expires_at: str
    call_id: str | None = None
    cseq: int | None = None
    received: str | None = None


# --- repositories -----------------------------------------------------------


class TrunkRepo(Protocol):
    async def add(self, trunk: Trunk) -> Trunk: ...
    async def get(self, name_or_id: str | int) -> Trunk | None: ...
    async def list(self) -> list[Trunk]: ...
    async def update(self, name: str, /, **changes: object) -> Trunk: ...
    async def remove(self, name: str, *, force: bool = False) -> None: ...


class DestinationRepo(Protocol):
    async def add(self, destination: Destination) -> Destination: ...
    async def get(self, name_or_id: str | int) -> Destination | None: ...
    async def list(self) -> list[Destination]: ...
    async def update(self, name: str, /, **changes: object) -> Destination: ...
    async def remove(self, name: str, *, force: bool = False) -> None: ...


class SourceRepo(Protocol):
    async def add(self, source: Source) -> Source: ...
    async def get(self, name_or_id: str | int) -> Source | None: ...
    async def list(self) -> list[Source]: ...
    async def update(self, name: str, /, **changes: object) -> Source: ...
    async def remove(self, name: str) -> None: ...


class NumberRepo(Protocol):
    async def add(self, number: TrackingNumber) -> TrackingNumber: ...
    async def get(self, number_or_id: str | int) -> TrackingNumber | None: ...
    async def list(self, *, source: str | None = None) -> list[TrackingNumber]: ...
    async def update(self, number: str, /, **changes: object) -> TrackingNumber: ...
    async def remove(self, number: str) -> None: ...
    async def lookup(self, e164: str) -> RouteInfo | None: ...
    async def advance_cursor(self, number: str) -> int:
        """Return the current round-robin cursor and store cursor+1, atomically."""
        ...


class CallRepo(Protocol):
    async def insert(self, record: CallRecord) -> None: ...
    async def update(self, record: CallRecord, previous: CallRecord | None = None) -> None:
        """Rewrite the row; given the record as last written, only the fields that changed."""
        ...

    async def get(self, call_id: str) -> CallRecord | None: ...
    async def list(
        self,
        *,
        since: str | None = None,
        source: str | None = None,
        number: str | None = None,
        disposition: Disposition | str | None = None,
        limit: int | None = None,
    ) -> builtins.list[CallRecord]:
        """Newest first; `since` compares against `started_at` (ISO strings)."""
        ...

    async def ids_with_prefix(self, prefix: str, limit: int) -> builtins.list[str]:
        """Up to `limit` record ids starting with `prefix` (letters, digits, `-`, `_`), sorted."""
        ...

    async def touch_media(self, call_ids: Sequence[str], at: str) -> None:
        """Note `at` as the last media time of these live records (`pbx.service.checkpoint`)."""
        ...

    async def mark_interrupted(self, ended_at: str) -> int:
        """Mark live records `interrupted` (the crash sweep); an answered one gets the
        talk time from `answered_at` to its last media checkpoint. Returns the count."""
        ...

    async def finish(
        self,
        record: CallRecord,
        outbox: Sequence[OutboxItem] = (),
        previous: CallRecord | None = None,
    ) -> None:
        """Write the final row and queue the outbox items in one transaction.

        With `previous` (the row as last written) a store may rewrite only the
        columns that changed when the row exists; the row is written whole when
        it does not."""
        ...


class VisitRepo(Protocol):
    async def add(self, visit: Visit) -> Visit: ...
    async def get(self, visit_id: str) -> Visit | None: ...
    async def list(self, *, limit: int | None = None) -> list[Visit]: ...
    async def update(self, visit_id: str, /, **changes: object) -> Visit: ...
    async def active(self, number: str, now: str) -> Visit | None:
        """The most recently seen unexpired visit holding `number` at `now`.

        Fallback visits (shown a number when their pool was exhausted) hold
        nothing and are never returned.
        """
        ...

    async def held_until(self, numbers: Sequence[str]) -> dict[str, str]:
        """Number -> latest `expires_at` of a non-fallback visit holding it (pools, LRU)."""
        ...

    async def latest_for_visitor(self, visitor_id: str) -> Visit | None: ...

    async def add_holding(self, visit: Visit, candidates: Sequence[str], now: str) -> Visit | None:
        """Add `visit` holding the first of `candidates` that no non-fallback visit holds
        at `now` (`expires_at > now`), in one atomic step; the stored row has that number.

        None, adding nothing, when every candidate is held (the pool is exhausted
        for this visit). Atomic across every store client of the database: two
        concurrent calls (on one node or on several) never hold one number for
        two visits, and nothing is locked between the caller's reads and this.
        A duplicate `visit.id` is a `ConflictError`.
        """
        ...


class OutboxRepo(Protocol):
    async def add(self, item: OutboxItem) -> OutboxItem: ...
    async def get(self, item_id: int) -> OutboxItem | None: ...
    async def due(self, now: str, limit: int = 100) -> list[OutboxItem]: ...
    async def backlog(self) -> int:
        """How many items are neither delivered nor given up (due now or later)."""
        ...

    async def mark_delivered(self, item_id: int, delivered_at: str) -> None: ...
    async def mark_failed(self, item_id: int, next_attempt_at: str | None, error: str) -> None:
        """Count one failed attempt; `next_attempt_at=None` gives up."""
        ...


class BlockRepo(Protocol):
    async def add(self, block: Block) -> Block: ...
    async def list(self, *, number: str | None = None) -> list[Block]: ...
    async def remove(self, pattern: str, number: str | None = None) -> None: ...
    async def matching(self, caller: str, number: str) -> builtins.list[Block]:
        """Blocks whose pattern is a prefix of `caller`, global or for `number`."""
        ...


class ExtensionRepo(Protocol):
    async def add(self, extension: Extension) -> Extension: ...
    async def get(self, name_or_id: str | int) -> Extension | None: ...
    async def list(self) -> list[Extension]: ...
    async def update(self, name: str, /, **changes: object) -> Extension: ...
    async def remove(self, name: str) -> None: ...
    async def bindings(self, name: str, now: str | None = None) -> builtins.list[Binding]:
        """Contacts of `name`, only those unexpired at `now` when given."""
        ...

    async def set_binding(self, binding: Binding) -> None: ...
    async def remove_binding(self, name: str, contact: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Lease:
    """A node's hold on its name in the store (see `NodeRepo`)."""

    name: str
    expires_at: str
    interrupted: int = 0  # calls of a dead incarnation of this name, marked on acquire


class LeaseLostError(ConflictError):
    """This node's lease was swept (it expired): stop taking calls, acquire again."""


class NodeRepo(Protocol):
    """The nodes sharing one store and their leases.

    `acquire_node(name, lease_s)` takes `name` for this store (refusing a
    live duplicate with `ConflictError`) and marks the unfinished calls of a
    dead incarnation of that name `interrupted` (the crash sweep). `renew`
    extends the lease (`LeaseLostError` once it was swept); `sweep_expired`
    marks the unfinished calls of every node whose lease ran out, exactly
    once, and returns {node: calls marked}; `release` gives the name up.
    A single-file store (SQLite) has one node: its lease never runs out and
    acquiring is the start-up crash sweep.
    """

    async def acquire_node(self, name: str, lease_s: float, now: str | None = None) -> Lease: ...
    async def renew(self, name: str, lease_s: float, now: str | None = None) -> str: ...
    async def release(self, name: str) -> None: ...
    async def sweep_expired(self, now: str | None = None) -> dict[str, int]: ...
    async def live(self, now: str | None = None) -> dict[str, str]: ...


class PromptRepo(Protocol):
    async def add(self, prompt: StoredPrompt) -> StoredPrompt: ...
    async def get(self, name_or_id: str | int) -> StoredPrompt | None: ...
    async def list(self) -> list[StoredPrompt]: ...
    async def users(self, name: str) -> builtins.list[str]:
        """The numbers whose disclosure, whisper or voicemail is this prompt."""
        ...

    async def remove(self, name: str, *, force: bool = False) -> None:
        """ConflictError naming --force while a number uses it; force clears those fields."""
        ...


class Store(Protocol):
    """The whole storage interface; use as `async with await open_store(p) as store`."""

    @property
    def trunks(self) -> TrunkRepo: ...
    @property
    def destinations(self) -> DestinationRepo: ...
    @property
    def sources(self) -> SourceRepo: ...
    @property
    def numbers(self) -> NumberRepo: ...
    @property
    def calls(self) -> CallRepo: ...
    @property
    def visits(self) -> VisitRepo: ...
    @property
    def outbox(self) -> OutboxRepo: ...
    @property
    def blocks(self) -> BlockRepo: ...
    @property
    def extensions(self) -> ExtensionRepo: ...
    @property
    def nodes(self) -> NodeRepo: ...
    @property
    def users(self) -> UserRepo: ...
    @property
    def tokens(self) -> TokenRepo: ...
    @property
    def audit(self) -> AuditRepo: ...
    @property
    def call_log(self) -> CallLogRepo: ...
    @property
    def prompts(self) -> PromptRepo: ...

    def pinned_config(self) -> AbstractContextManager[None]:
        """Inside, provisioning reads share one freshness check: one INVITE, one configuration."""
        ...

    async def close(self) -> None: ...
    async def schema_version(self) -> int: ...
    async def dump(self) -> str:
        """Every row of every table as `pbx.store.dump.neutral_json` text (before/after checks)."""
        ...

    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


# --- dashboard: users, tokens, audit, call log (issue 14) ----------------------
#
# Users and tokens follow the named-row conventions above (`get(name)`;
# update/remove raise NotFoundError). A token row keeps only the SHA-256 hex
# of the token; `tokens.get(name)` and `tokens.find(sha256)` return revoked
# tokens too (the caller checks `revoked_at`), `get` preferring the active one.
# Secrets (password hash, token hash) are left out of the rows' reprs.
# `audit.list` is newest first. `call_log.page` is keyset paging: rows
# strictly older than `CallFilter.before` = (started_at, id), newest first.

Role = Literal["admin", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "viewer")


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    """A dashboard login; `password_hash` is an argon2 encoded hash, never the password."""

    name: str
    role: Role
    password_hash: str = field(repr=False)
    created_at: str
    id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiToken:
    """An API bearer token, kept as the SHA-256 hex of the token only."""

    name: str
    role: Role
    token_sha256: str = field(repr=False)
    created_at: str
    last_used_at: str | None = None
    revoked_at: str | None = None
    id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One change: who (`actor`), when (`at`), what (`action` on `subject`, `detail` JSON)."""

    at: str
    actor: str
    action: str
    subject: str = ""
    detail: str = "{}"
    id: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class CallFilter:
    """The call log's filters; None = any. `until` is exclusive, `since` inclusive.

    `caller_prefix` matches the start of the caller's number as stored (E.164).
    """

    since: str | None = None
    until: str | None = None
    source: str | None = None
    number: str | None = None
    disposition: str | None = None
    caller_prefix: str | None = None
    before: tuple[str, str] | None = None


class UserRepo(Protocol):
    async def add(self, user: User) -> User: ...
    async def get(self, name: str) -> User | None: ...
    async def list(self) -> builtins.list[User]: ...
    async def update(self, name: str, /, **changes: object) -> User: ...
    async def remove(self, name: str) -> None: ...


class TokenRepo(Protocol):
    async def add(self, token: ApiToken) -> ApiToken: ...
    async def get(self, name: str) -> ApiToken | None: ...
    async def find(self, token_sha256: str) -> ApiToken | None: ...
    async def list(self) -> builtins.list[ApiToken]: ...
    async def revoke(self, name: str, at: str) -> ApiToken:
        """Mark the active token `name` revoked at `at`; NotFoundError when none is active."""
        ...

    async def touch(self, token_id: int, at: str) -> None:
        """Record a use of the token (last_used_at)."""
        ...


class AuditRepo(Protocol):
    async def add(self, entry: AuditEntry) -> AuditEntry: ...
    async def list(
        self, *, limit: int = 100, before_id: int | None = None
    ) -> builtins.list[AuditEntry]: ...


class CallLogRepo(Protocol):
    """The dashboard's reads over call records, each one index range (see migration 3)."""

    async def page(self, where: CallFilter, limit: int) -> builtins.list[CallRecord]:
        """At most `limit` records matching `where`, newest first (started_at, id)."""
        ...

    async def totals(self, since: str, until: str) -> tuple[int, int]:
        """(calls, answered calls) started in [since, until)."""
        ...

    async def signature(self, since: str, until: str) -> tuple[int, int, str | None]:
        """(calls, answered calls, latest started_at) in [since, until): a cache key."""
        ...

    async def per_source_per_day(
        self, first_day: str, last_day: str
    ) -> builtins.list[tuple[str, str | None, int, int]]:
        """(UTC day YYYY-MM-DD, source or None, calls, answered) for the days from
        `first_day` to `last_day` (YYYY-MM-DD, both included), by day then source;
        days and sources without calls are left out."""
        ...

    async def facts(self, since: str, until: str) -> builtins.list[CallFact]:
        """Every call started in [since, until), as the ROI report reads it (caller None
        when it is not a number: anonymous callers count as calls, not callers)."""
        ...

    async def prior_callers(self, before: str, callers: Sequence[str]) -> set[str]:
        """Which of `callers` had called before `before`."""
        ...

    async def live(self) -> builtins.list[CallRecord]:
        """Calls still ringing or answered and not ended, newest first."""
        ...
