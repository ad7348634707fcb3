"""The call controller: one inbound leg, its outbound branches and its record.

Pure except `intake` (reads the store): `model` (values in and out), `legs`
(message builders), `state` (the per-call state), `branches`, `endings`,
`routing`, `in_dialog` and `controller` (the `Call` that dispatches events).
"""
