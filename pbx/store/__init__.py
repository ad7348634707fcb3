"""Storage package: the `Store` interface and the one door to its backends (I/O).

This package's top level is the interface only (pure: row dataclasses, the
`Store` protocol, `parse_store_url`; `dump.neutral_json`); `pbx.store.connect` is the one door
to the backends (`open_store(url)`, `probe_store(url)`, `store_errors()`).
The split keeps the import graph acyclic: each backend imports the
interface, and only `connect` imports the backends.
"""

from __future__ import annotations

from pbx.store.base import (
    Binding,
    Block,
    CallRepo,
    Destination,
    DestinationRepo,
    Extension,
    ExtensionRepo,
    Lease,
    LeaseLostError,
    NodeRepo,
    NumberRepo,
    OutboxItem,
    OutboxRepo,
    PromptRepo,
    RouteInfo,
    SchemaVersionError,
    Source,
    SourceRepo,
    Store,
    StoredPrompt,
    TrackingNumber,
    Trunk,
    TrunkRepo,
    Visit,
    VisitRepo,
)
from pbx.store.probe import StoreCheck
from pbx.store.url import StoreLocation, parse_store_url

__all__ = [
    "Binding",
    "Block",
    "CallRepo",
    "Destination",
    "DestinationRepo",
    "Extension",
    "ExtensionRepo",
    "Lease",
    "LeaseLostError",
    "NodeRepo",
    "NumberRepo",
    "OutboxItem",
    "OutboxRepo",
    "PromptRepo",
    "RouteInfo",
    "SchemaVersionError",
    "Source",
    "SourceRepo",
    "Store",
    "StoreCheck",
    "StoreLocation",
    "StoredPrompt",
    "TrackingNumber",
    "Trunk",
    "TrunkRepo",
    "Visit",
    "VisitRepo",
    "parse_store_url",
]
