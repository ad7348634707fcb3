"""What runs inside `pbx serve`: per-call runners, admission control, metrics,
the registrar service and the outbox dispatcher (asyncio; I/O through the
store, the SIP agent and the media engine)."""
