"""pbx: a self-hosted SIP call-tracking and call-forwarding engine (B2BUA)."""

__version__ = "0.1.0"
