"""Compiled (mypyc) protocol modules: used when built and current, pure otherwise."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx import native

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("pbx.a", "pbx.b", "pbx.c")


def test_the_installed_tree_runs_compiled() -> None:
    """The README's install compiles; a build that did not would fail here (not skip)."""
    if os.environ.get("PBX_NATIVE") == "0":
        assert not native.active
        return
    assert native.active, native.reason
    for name in native.MODULES:
        module = importlib.import_module(name)
        assert str(module.__file__).endswith(native.SUFFIX), name


def test_every_listed_module_exists_and_the_list_has_no_edge() -> None:
    for name in native.MODULES:
        assert native.source_path(name).is_file(), name
    # I/O edges stay interpreted (library values that differ from their stubs).
    for edge in ("pbx.daemon", "pbx.sip.transport", "pbx.sip.agent", "pbx.logs"):
        assert edge not in native.MODULES
    assert len(set(native.MODULES)) == len(native.MODULES)


def _classes(tree: ast.Module) -> Iterator[ast.ClassDef]:
    return (node for node in ast.walk(tree) if isinstance(node, ast.ClassDef))


def test_no_interpreted_class_subclasses_a_compiled_one() -> None:
    """mypyc refuses it at run time ("interpreted classes cannot inherit from compiled")."""
    compiled = set(native.MODULES)
    defined = {
        (name, cls.name)
        for name in compiled
        for cls in _classes(ast.parse(native.source_path(name).read_text()))
    }
    offenders = []
    for path in [*(ROOT / "pbx").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]:
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if module in compiled:
            continue
        tree = ast.parse(path.read_text())
        imported = {
            alias.asname or alias.name: (node.module, alias.name)
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module in compiled
            for alias in node.names
        }
        for cls in _classes(tree):
            for base in cls.bases:
                if isinstance(base, ast.Name) and imported.get(base.id) in defined:
                    offenders.append(f"{module}.{cls.name} <- {imported[base.id]}")
    assert offenders == []


def test_verdict_uses_a_complete_current_build() -> None:
    active, reason, warn = native.verdict([1.0, 2.0, 3.0], [5.0, 5.0, 5.0], NAMES)
    assert (active, warn) == (True, False)
    assert reason == "compiled with mypyc (3 modules)"


def test_verdict_no_build_is_pure_without_a_warning() -> None:
    assert native.verdict([1.0, 2.0, 3.0], [None, None, None], NAMES) == (
        False,
        "not compiled (pure Python)",
        False,
    )


def test_verdict_partial_or_stale_build_is_pure_with_a_warning() -> None:
    partial = native.verdict([1.0, 2.0, 3.0], [5.0, None, 5.0], NAMES)
    assert partial == (False, "partial build: pbx.b has no compiled extension", True)
    stale = native.verdict([1.0, 9.0, 3.0], [5.0, 5.0, 5.0], NAMES)
    assert stale == (False, "pbx.b changed after the build", True)


@given(st.lists(st.tuples(st.floats(0, 10), st.none() | st.floats(0, 10)), min_size=1, max_size=8))
def test_verdict_property_build_used_iff_all_built_and_none_newer(
    pairs: list[tuple[float, float | None]],
) -> None:
    sources = [src for src, _ in pairs]
    extensions = [ext for _, ext in pairs]
    names = [f"pbx.m{i}" for i in range(len(pairs))]
    active, _, warn = native.verdict(sources, extensions, names)
    complete = all(ext is not None for ext in extensions)
    current = complete and all(src <= ext for src, ext in pairs if ext is not None)
    assert active == current
    assert warn == (not current and any(ext is not None for ext in extensions))


RAW = (
    b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n"
    b"f: <sip:b@127.0.0.1>;tag=1\r\nTo: <sip:a@127.0.0.1>\r\ni: x\r\n"
    b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)
PURE_CHECK = f"""
import sys, pbx.native as n, pbx.sip.message as m
assert not n.active and not n.degraded, n.reason
assert m.__file__.endswith("message.py"), m.__file__
sys.stdout.buffer.write(m.serialize(m.parse({RAW!r})))
"""


def test_pbx_native_0_runs_the_sources_and_parses_the_same() -> None:
    from pbx.sip.message import parse, serialize

    env = {**os.environ, "PBX_NATIVE": "0"}
    pure = subprocess.run(
        [sys.executable, "-c", PURE_CHECK], cwd=ROOT, env=env, capture_output=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert pure.returncode == 0, pure.stderr
    assert pure.stderr == b""
    assert pure.stdout == serialize(parse(RAW))  # compiled here, where built
    assert b"From: <sip:b@127.0.0.1>;tag=1\r\n" in pure.stdout


PURE_SUITES = [
    "tests/unit/test_sip_message.py tests/unit/test_sip_headers.py tests/unit/test_sip_uri.py",
    "tests/unit/test_sip_transaction_machines.py tests/unit/test_sip_dialog.py",
    "tests/unit/test_rtp_sdp.py tests/unit/test_rtp_bencode.py tests/unit/test_rtp_ng.py",
    "tests/unit/test_calls_setup.py tests/unit/test_calls_routing.py tests/unit/test_records.py",
]


@pytest.mark.parametrize("suite", PURE_SUITES)
def test_parsers_pass_their_tests_in_pure_python_too(suite: str) -> None:
    """CI runs compiled; the pure fallback keeps the parsers' own tests green as well."""
    env = {**os.environ, "PBX_NATIVE": "0"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *suite.split()],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-2000:]
    assert " passed" in run.stdout


def _third_party_imports(name: str) -> set[str]:
    tree = ast.parse(native.source_path(name).read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return {top for top in found if top != "pbx" and top not in sys.stdlib_module_names}


def test_the_build_environment_holds_every_library_the_compiled_modules_import() -> None:
    """mypy type-checks the listed modules inside pip's isolated build environment:
    a library missing there fails the install on a fresh machine (one where it is not
    already installed globally), as phonenumbers once did."""
    import tomllib

    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    provided = {req.split(">")[0].split("=")[0].split("<")[0].strip().lower() for req in requires}
    needed = set().union(*(_third_party_imports(name) for name in native.MODULES))
    assert needed, "the scan found no third-party import at all"
    assert needed <= provided, sorted(needed - provided)


# Classes whose __init__ (or __eq__/__hash__) is written out so that mypyc compiles it.
WRITTEN = (
    ("pbx.sip.uri", "SipUri", "__init__"),
    ("pbx.sip.headers", "Via", "__init__"),
    ("pbx.sip.transaction", "_Transaction", "__init__"),
    ("pbx.sip.transaction", "TransactionKey", "__hash__"),
    ("pbx.sip.peer", "Peer", "__hash__"),
    ("pbx.sip.transaction", "RequestReceived", "__init__"),
    ("pbx.sip.transaction", "ResponseReceived", "__init__"),
    ("pbx.sip.transaction", "Outgoing", "__init__"),
    ("pbx.call.model", "SetMediaRemote", "__init__"),
    ("pbx.rtp.sdp", "Endpoint", "__init__"),
    ("pbx.records", "CallRecord", "__init__"),
)


def test_written_dunders_run_compiled() -> None:
    """A dataclass-generated method is a Python function even in a compiled module."""
    for module_name, class_name, method in WRITTEN:
        cls = getattr(importlib.import_module(module_name), class_name)
        code = getattr(getattr(cls, method), "__code__", None)
        if native.active:
            assert code is None, f"{class_name}.{method} is interpreted"
        else:
            assert code is not None, (class_name, method)
            assert code.co_filename != "<string>", (class_name, method)


def test_call_record_init_is_its_fields_in_order_with_their_defaults() -> None:
    """CallRecord's 44-parameter __init__ is written by hand: it must stay in step
    with the fields (a new field without a parameter, a default that drifted,
    a parameter stored under another field's name)."""
    import dataclasses

    from pbx.records import Attempt, CallRecord, Disposition

    fields = dataclasses.fields(CallRecord)
    not_str = {"sip_status": 600, "cost_cents": 601, "hangup_by": "callee"}  # optional, not str

    def sample(i: int, f: dataclasses.Field[object]) -> object:
        """A value of the field's type, distinct per field (compiled code checks types)."""
        if f.name in not_str:
            return not_str[f.name]
        default = f.default
        if isinstance(default, Disposition):
            return Disposition.ANSWERED
        if isinstance(default, tuple):
            return (Attempt(f"target-{i}"),)
        if isinstance(default, int | float):
            return type(default)(1000 + i)
        return f"value-{i}"  # required or `str | None`

    values = {f.name: sample(i, f) for i, f in enumerate(fields)}
    record = CallRecord(**values)  # type: ignore[arg-type]
    assert {f.name: getattr(record, f.name) for f in fields} == values
    required = {f.name for f in fields if f.default is dataclasses.MISSING}
    assert required == {"id", "inbound_call_id", "started_at", "caller", "tracking_number"}
    bare = CallRecord(**{name: values[name] for name in required})  # type: ignore[arg-type]
    for f in fields:
        if f.name not in required:
            assert getattr(bare, f.name) == f.default, f.name
    with pytest.raises(TypeError):
        CallRecord(**values, extra=1)  # type: ignore[arg-type, call-arg]
    with pytest.raises(TypeError):
        CallRecord("a", "b", "c", "d", "e")  # type: ignore[misc]  # keyword-only, as before
    with pytest.raises(dataclasses.FrozenInstanceError):
        bare.caller = "x"  # type: ignore[misc]


def test_written_inits_keep_the_dataclass_defaults() -> None:
    from pbx.sip.headers import Via
    from pbx.sip.uri import SipUri

    uri = SipUri("sip")
    assert (uri.user, uri.password, uri.host, uri.port, uri.params, uri.headers) == (
        None, None, "", None, {}, {},
    )  # fmt: skip
    assert SipUri("sip").params is not uri.params  # a fresh dict each, as default_factory
    from dataclasses import FrozenInstanceError

    from pbx.rtp.sdp import Endpoint

    endpoint = Endpoint("192.0.2.1", 4000, "192.0.2.1", 4001)
    with pytest.raises(FrozenInstanceError):
        endpoint.port = 1  # type: ignore[misc]  # frozen still holds with a written __init__
    assert endpoint == Endpoint("192.0.2.1", 4000, "192.0.2.1", 4001)
    via = Via("UDP", "192.0.2.1")
    assert (via.port, via.params) == (None, {})
    assert Via("UDP", "h", 5060, {"branch": "z9hG4bKa"}).branch == "z9hG4bKa"


_text = st.text(alphabet="abz9.", max_size=3)


@given(st.tuples(_text, _text, _text, st.booleans()), st.tuples(_text, _text, _text, st.booleans()))
def test_transaction_keys_compare_and_hash_as_their_fields(
    a: tuple[str, str, str, bool], b: tuple[str, str, str, bool]
) -> None:
    from pbx.sip.transaction import TransactionKey

    ka, kb = TransactionKey(*a), TransactionKey(*b)
    assert (ka == kb) == (a == b)
    if a == b:
        assert hash(ka) == hash(kb)
    assert ka != a  # not equal to a plain tuple


@given(st.sampled_from(["udp", "tcp", "tls"]), _text, st.integers(1, 65535), _text, _text)
def test_peers_compare_on_their_address_only(
    transport: str, host: str, port: int, name: str, ca: str
) -> None:
    from pbx.sip.peer import Peer

    plain = Peer(transport, host, port)  # type: ignore[arg-type]
    named = Peer(transport, host, port, server_name=name, ca=ca)  # type: ignore[arg-type]
    assert plain == named
    assert hash(plain) == hash(named)
    assert plain != Peer(transport, host, port + 1 if port < 65535 else 1)  # type: ignore[arg-type]
    assert {plain: 1}[named] == 1
