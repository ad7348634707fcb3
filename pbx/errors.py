"""Exception types shared across pbx (pure).

`InputError` is bad admin input (CLI flags, config keys, provisioning): the CLI
prints its message as one line on stderr and exits 2, and nothing changes.
Peer (network) input has its own error types in the protocol modules, e.g.
`pbx.sip.message.SipParseError`, which carry the status to answer with.
"""


class PbxError(Exception):
    """Base of every error pbx raises on purpose."""


class InputError(PbxError):
    """Bad admin input: one line for a human, exit code 2, no change made."""


class ConfigError(InputError):
    """A bad configuration key or value; the message names the key."""


class NotFoundError(InputError):
    """A named thing (trunk, source, number...) does not exist."""


class ConflictError(InputError):
    """The change would break an invariant (duplicate name, still in use...)."""
