"""`pbx trunks ...`: SIP provider accounts (I/O shell over pbx.admin.provisioning)."""

from __future__ import annotations

from typing import Any

import click

from pbx.admin import provisioning as admin
from pbx.commands import verbs
from pbx.commands.common import AdminError, Decorator, as_dict, run_store
from pbx.commands.secrets import password_from, password_options
from pbx.errors import InputError


@click.group()
def trunks() -> None:
    """SIP provider accounts: where calls come from and go out."""


_COLUMNS = ("name", "host", "port", "transport", "username", "register", "allow",
            "strip_plus", "prefix", "enabled")  # fmt: skip


def _options(*, adding: bool) -> list[Decorator]:
    opts: list[Decorator] = [
        click.option("--host", required=adding, help="Provider address HOST[:PORT] (port 5060)."),
        click.option(
            "--transport",
            type=click.Choice(admin.TRANSPORTS),
            help="SIP transport (udp); tls verifies the provider's certificate and name.",
        ),
        click.option(
            "--ca",
            "ca_file",
            metavar="FILE",
            help="PEM CA the provider's TLS certificate must chain to, stored in the "
            "database ('' = the system's CAs).",
        ),
        click.option("--username", help="Digest auth user name ('' clears)."),
        *password_options("Digest auth password ('' clears)."),
        click.option("--realm", help="Only answer challenges from this realm ('' = any)."),
        click.option(
            "--register/--no-register", default=None, help="Keep a REGISTER with the provider."
        ),
        click.option(
            "--allow",
            multiple=True,
            metavar="CIDR",
            help="Address allowed to send calls in; repeat. Default: the host's IP.",
        ),
        click.option(
            "--prefix", metavar="DIGITS", help="Digits put before dialled numbers ('' clears)."
        ),
        click.option(
            "--strip-plus/--keep-plus",
            default=None,
            help="Dial numbers without the leading + (default: keep it).",
        ),
        click.option(
            "--enable/--disable", "enabled", default=None, help="Use or ignore this trunk."
        ),
    ]
    if not adding:
        opts.append(click.option("--rename", metavar="NEW", help="New name."))
    return opts


def _trunk_opts(kw: dict[str, Any], *, adding: bool) -> admin.TrunkOptions:
    """The options as given; the password read from stdin, a file or a prompt (`secrets`)."""
    allow = tuple(kw.pop("allow", ())) or None
    tls_ca = _read_ca(kw.pop("ca_file", None))
    # A prompt only makes sense on add with a user name: update keeps the old one.
    password = password_from(kw, needed=adding and bool(kw.get("username")))
    return admin.TrunkOptions(allow=allow, password=password, tls_ca=tls_ca, **kw)


def _read_ca(path: str | None) -> str | None:
    """The PEM text of `--ca FILE` (checked), "" for `--ca ''`, None when not given."""
    if path is None or path == "":
        return path
    try:
        with open(path, encoding="ascii") as f:
            text = f.read(admin.MAX_CA_BYTES + 1)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not ASCII PEM text"
        raise AdminError(f"--ca {path}: cannot read ({reason})") from None
    try:
        return admin.check_ca(text, f"--ca {path}")
    except InputError as exc:
        raise AdminError(str(exc)) from None


def _trunk_row(trunk: Any) -> dict[str, Any]:
    """Every field, with the CA summarised (its PEM is long): how many certificates."""
    row = as_dict(trunk)
    if row.get("tls_ca"):
        count = row["tls_ca"].count("-----BEGIN CERTIFICATE-----")
        row["tls_ca"] = f"{count} PEM certificate{'s' if count != 1 else ''}"
    return row


@verbs.change_command(trunks, "add", verbs.NAME, *_options(adding=True))
def trunks_add(ctx: click.Context, /, name: str, **kw: Any) -> str:
    """Add a trunk NAME."""
    opts = _trunk_opts(kw, adding=True)  # before the store: a bad option creates nothing
    trunk = run_store(ctx, lambda s: admin.add_trunk(s, name, opts), create=True)
    return f"trunk {trunk.name} added ({trunk.host}:{trunk.port}/{trunk.transport})"


@verbs.change_command(trunks, "update", verbs.NAME, *_options(adding=False))
def trunks_update(ctx: click.Context, /, name: str, **kw: Any) -> str:
    """Change trunk NAME (only the options given)."""
    opts = _trunk_opts(kw, adding=False)
    trunk = run_store(ctx, lambda s: admin.update_trunk(s, name, opts))
    return f"trunk {trunk.name} updated"


_TRUNKS = verbs.Named(trunks, "trunk", lambda s: s.trunks)
_TRUNKS.list_command("List trunks.", _COLUMNS)
_TRUNKS.show_command("Show every field of trunk NAME.", row=_trunk_row)
_TRUNKS.remove_command(
    "Remove trunk NAME.", "Also detach numbers that use it (they use the default trunk)."
)
