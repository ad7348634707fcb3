"""`pbx prompts`, `pbx numbers --record/--disclosure/...`, `pbx calls recording`,
`pbx recordings purge` on a real SQLite file (issue 13)."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pbx.audio import wav
from pbx.records import CallRecord
from pbx.service.recordings import repair_all

from .cli_helpers import dump, ok, pbx, run_on_store, seed

NUM = "+14155550150"


def _wav(path: Path, seconds: float = 0.5, rate: int = 44100, channels: int = 2) -> Path:
    frames = int(seconds * rate)
    samples = (np.sin(np.arange(frames) / rate * 2 * np.pi * 440) * 12000).astype("<i2")
    pcm = np.repeat(samples[:, None], channels, axis=1).tobytes()
    path.write_bytes(wav.encode_pcm16(pcm, rate=rate, channels=channels))
    return path


def test_prompt_add_list_show_remove(tmp_path: Path) -> None:
    db = tmp_path / "pbx.db"
    out = ok(db, "prompts", "add", "consent", "--file", str(_wav(tmp_path / "c.wav")))
    assert out.strip() == "prompt consent added (0.5 s)"
    listing = ok(db, "prompts", "list")
    assert "consent" in listing
    assert "file c.wav" in listing
    exported = tmp_path / "out.wav"
    ok(db, "prompts", "show", "consent", "-o", str(exported))
    back = wav.parse(exported.read_bytes())
    assert (back.rate, back.channels) == (8000, 1)
    assert abs(back.frames - 4000) <= 2
    assert ok(db, "prompts", "remove", "consent").strip() == "prompt consent removed"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a wav at all", "not a WAV file"),
        (wav.header(0, rate=8000, channels=1), "empty WAV"),
        (None, "the limit is 60 s"),
    ],
)
def test_bad_prompt_file_is_one_line_exit_2_nothing_stored(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    db = tmp_path / "pbx.db"
    run_on_store(db, lambda s: s.prompts.list())  # a store to work on (list never creates one)
    path = tmp_path / "bad.wav"
    if content is None:
        _wav(path, seconds=61, rate=8000, channels=1)
    else:
        path.write_bytes(content)
    before = dump(db)
    result = pbx(db, "prompts", "add", "bad", "--file", str(path))
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert dump(db) == before


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_prompt_from_text(tmp_path: Path) -> None:
    db = tmp_path / "pbx.db"
    ok(db, "prompts", "add", "hello", "--text", "This call may be recorded.")
    assert "text" in ok(db, "prompts", "show", "hello")


def test_number_audio_options_and_prompt_in_use(tmp_path: Path) -> None:
    db = tmp_path / "pbx.db"
    seed(db)
    ok(db, "prompts", "add", "consent", "--file", str(_wav(tmp_path / "c.wav")))
    ok(db, "numbers", "update", NUM, "--record", "--disclosure", "consent", "--screen",
       "--screen-seconds", "8", "--whisper-text", "Call from {source}",
       "--voicemail", "consent", "--voicemail-seconds", "60")  # fmt: skip
    shown = ok(db, "numbers", "show", NUM, "--format", "json")
    for text in ('"record": true', '"disclosure": "consent"', '"screen_seconds": 8',
                 '"voicemail_seconds": 60', '"whisper_text": "Call from {source}"'):  # fmt: skip
        assert text in shown
    before = dump(db)
    result = pbx(db, "prompts", "remove", "consent")
    assert result.exit_code == 2
    assert "--force" in result.stderr
    assert dump(db) == before
    ok(db, "prompts", "remove", "consent", "--force")
    assert '"record": false' in ok(db, "numbers", "show", NUM, "--format", "json")
    ok(db, "numbers", "update", NUM, "--no-record")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--disclosure", "nope"), "no prompt named 'nope'"),
        (("--whisper-text", "Call from {visitor.ip}"), "is not one of"),
        (("--screen-seconds", "0"), "--screen-seconds must be 1-60"),
        (("--voicemail-seconds", "99999"), "--voicemail-seconds must be 1-3600"),
    ],
)
def test_bad_number_audio_options_change_nothing(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    db = tmp_path / "pbx.db"
    seed(db)
    before = dump(db)
    result = pbx(db, "numbers", "update", NUM, *args)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr
    assert dump(db) == before


def _recorded_call(db: Path, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    data = wav.header(0) + bytes(32000 + 3)  # a crash: zero-size header, a partial frame
    (folder / "c1.wav").write_bytes(data)
    record = CallRecord(id="c1", inbound_call_id="x@h", started_at="2026-01-01T00:00:00.000000Z",
                        caller="+14155550199", tracking_number=NUM, recording="c1.wav",
                        recording_seconds=1.0, recording_bytes=len(data))  # fmt: skip

    async def add(store) -> None:  # type: ignore[no-untyped-def]
        await store.calls.insert(replace(record))

    run_on_store(db, add)
    return "c1"


def test_calls_recording_writes_the_file_and_repair_fixes_a_crash(tmp_path: Path) -> None:
    db = tmp_path / "pbx.db"
    folder = tmp_path / "rec"
    run_on_store(db, lambda s: s.prompts.list())  # a store to work on (list never creates one)
    call_id = _recorded_call(db, folder)
    assert repair_all(folder).repaired == 1
    data = (folder / "c1.wav").read_bytes()
    assert not wav.needs_repair(data[:44], len(data))
    assert len(data) == 44 + 32000
    out = tmp_path / "out.wav"
    env = {"PBX_RECORDING_DIR": str(folder)}
    result = pbx(db, "calls", "recording", call_id, "-o", str(out), env=env)
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes() == data
    missing = pbx(db, "calls", "recording", "nope", env=env)
    assert missing.exit_code == 2
    assert "no call record nope" in missing.stderr


def test_recordings_purge_removes_only_old_files(tmp_path: Path) -> None:
    db = tmp_path / "pbx.db"
    folder = tmp_path / "rec"
    folder.mkdir()
    old, new = folder / "old.wav", folder / "new.wav"
    for path in (old, new):
        path.write_bytes(wav.header(0))
    past = time.time() - 10 * 86400
    os.utime(old, (past, past))
    env = {"PBX_RECORDING_DIR": str(folder)}
    result = pbx(db, "recordings", "purge", "--older-than", "5", env=env)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("1 recordings removed")
    assert not old.exists()
    assert new.exists()
    bad = pbx(db, "recordings", "purge", "--older-than", "-1", env=env)
    assert bad.exit_code == 2


def test_db_migrate_copies_prompts_and_audio_settings(tmp_path: Path, pg_url: str) -> None:
    from .test_cli_db import _pg_dump

    db = tmp_path / "pbx.sqlite3"
    seed(db)
    ok(db, "prompts", "add", "consent", "--file", str(_wav(tmp_path / "c.wav")))
    ok(db, "numbers", "update", NUM, "--record", "--disclosure", "consent", "--screen")
    ok(db, "db", "migrate", "--to", pg_url)
    assert _pg_dump(pg_url) == dump(db)  # the PCM blob byte for byte, the settings too


def test_source_record_default_and_its_prompt(tmp_path: Path) -> None:
    db = tmp_path / "pbx.db"
    seed(db)
    bad = pbx(db, "sources", "update", "Radio", "--record", "--disclosure", "nope")
    assert bad.exit_code == 2
    assert "no prompt named 'nope'" in bad.stderr
    ok(db, "prompts", "add", "consent", "--file", str(_wav(tmp_path / "c.wav")))
    ok(db, "sources", "update", "Radio", "--record", "--disclosure", "consent")
    shown = ok(db, "sources", "show", "Radio", "--format", "json")
    assert '"record": true' in shown
    assert '"disclosure": "consent"' in shown
    refused = pbx(db, "prompts", "remove", "consent")
    assert refused.exit_code == 2
    assert "source Radio" in refused.stderr
    ok(db, "prompts", "remove", "consent", "--force")
    assert '"record": false' in ok(db, "sources", "show", "Radio", "--format", "json")
