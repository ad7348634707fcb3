"""Admin use cases shared by the CLI (and the HTTP API): provisioning, local
extensions, source presets, and `doctor`. I/O only through the store (and,
for doctor, the ports and trunks it checks)."""
