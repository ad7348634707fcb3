"""HTTP side of the daemon: the visitor API and swap script (I/O, aiohttp)."""
