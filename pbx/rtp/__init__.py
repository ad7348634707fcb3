"""Media: SDP rewrite and port allocation (pure), RTP relay (asyncio); rtpengine's ng
protocol (bencode.py, ng.py: pure) and its client (rtpengine.py: asyncio)."""
