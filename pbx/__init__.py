"""pbx: a self-hosted SIP call-tracking and call-forwarding engine (B2BUA)."""

from pbx import native

__version__ = "0.1.0"

# Before any compiled module is imported: compiled all together, or pure (native.py).
native.activate()
