"""Media: SDP rewrite and port allocation (pure), RTP relay (asyncio)."""
