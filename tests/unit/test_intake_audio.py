"""Intake of a number's audio settings (issue 13) on a real SQLite store: prompts loaded,
the voicemail beep made, `--whisper-text` spoken per call by espeak-ng (when installed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pbx.call.model import AudioPlan, CallSetup
from pbx.store import StoredPrompt
from pbx.store.sqlite.store import SqliteStore
from tests.calls_support import TRACKING

from .test_intake import run, store

__all__ = ["store"]  # the fixture


async def _setup(store: SqliteStore, **changes: object) -> CallSetup:
    await store.prompts.add(StoredPrompt(name="consent", pcm=b"\x01\x00" * 800, seconds=0.1))
    await store.numbers.update(TRACKING, **changes)
    setup = await run(store)
    assert isinstance(setup, CallSetup)
    return setup


async def test_no_audio_settings_no_plan(store: SqliteStore) -> None:
    setup = await run(store)
    assert isinstance(setup, CallSetup)
    assert setup.audio == AudioPlan()


async def test_prompts_and_beep_are_loaded(store: SqliteStore) -> None:
    setup = await _setup(store, record=True, disclosure="consent", voicemail="consent",
                         voicemail_seconds=45, screen=True, screen_seconds=7)  # fmt: skip
    plan = setup.audio
    assert plan.record
    assert plan.disclosure == b"\x01\x00" * 800
    assert plan.voicemail == plan.disclosure
    assert plan.voicemail_seconds == 45.0
    assert (plan.screen, plan.screen_seconds) == (True, 7.0)
    assert plan.beep is not None
    assert len(plan.beep) == 2 * 3200  # 0.4 s at 8 kHz


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
async def test_whisper_text_is_spoken_per_call(store: SqliteStore) -> None:
    setup = await _setup(store, whisper_text="Call from {source} on {number}")
    whisper = setup.audio.whisper
    assert whisper is not None
    assert len(whisper) > 16000  # more than half a second of speech


async def test_whisper_text_without_espeak_means_no_whisper(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # espeak-ng cannot be found
    setup = await _setup(store, whisper_text="Call from {source}")
    assert setup.audio.whisper is None  # the call goes on without it


async def test_source_level_record_and_disclosure(store: SqliteStore) -> None:
    await store.prompts.add(StoredPrompt(name="consent", pcm=b"\x02\x00" * 800, seconds=0.1))
    await store.sources.update("google", record=True, disclosure="consent")
    setup = await run(store)
    assert isinstance(setup, CallSetup)
    assert setup.audio.record
    assert setup.audio.disclosure == b"\x02\x00" * 800
    await store.prompts.add(StoredPrompt(name="own", pcm=b"\x03\x00" * 800, seconds=0.1))
    await store.numbers.update(TRACKING, disclosure="own")  # the number's own prompt wins
    setup = await run(store)
    assert isinstance(setup, CallSetup)
    assert setup.audio.disclosure == b"\x03\x00" * 800
