"""Storage package: the `Store` interface and its SQLite backend (I/O).

`open_store(path)` (in `pbx.store.sqlite`) returns a ready store; callers type
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
    Source,
    SourceRepo,
    Store,
    TrackingNumber,
    Trunk,
    TrunkRepo,
    Visit,
    VisitRepo,
)

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
    "Source",
    "SourceRepo",
    "Store",
    "TrackingNumber",
    "Trunk",
    "TrunkRepo",
    "Visit",
    "VisitRepo",
]
