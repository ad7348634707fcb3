"""Storage package: the `Store` interface and its SQLite backend (I/O).

`open_store(path)` returns a ready store; callers type
against `Store` and the row dataclasses exported here.
"""

from pbx.store.base import (
    Binding,
    Block,
    CallRepo,
    Destination,
    DestinationRepo,
    Extension,
    ExtensionRepo,
    NumberRepo,
    OutboxItem,
    OutboxRepo,
    RouteInfo,
    SchemaVersionError,
    Source,
    SourceRepo,
    Store,
    TrackingNumber,
    Trunk,
    TrunkRepo,
    Visit,
    VisitRepo,
)
from pbx.store.sqlite import SqliteStore, open_store

__all__ = [
    "Binding",
    "Block",
    "CallRepo",
    "Destination",
    "DestinationRepo",
    "Extension",
    "ExtensionRepo",
    "NumberRepo",
    "OutboxItem",
    "OutboxRepo",
    "RouteInfo",
    "SchemaVersionError",
    "Source",
    "SourceRepo",
    "SqliteStore",
    "Store",
    "TrackingNumber",
    "Trunk",
    "TrunkRepo",
    "Visit",
    "VisitRepo",
    "open_store",
]
