"""Store contract for issue 13: prompts, per-number audio settings, recording fields and the
voicemail disposition, on SQLite and PostgreSQL (the backends of test_store_contract)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pbx.errors import ConflictError, NotFoundError
from pbx.records import Disposition
from pbx.store import Store, StoredPrompt

from .test_store_contract import NUM, call, seed, store, unchanged

__all__ = ["store"]  # the parametrised backend fixture

PCM = bytes(range(256)) * 4  # 512 samples, every byte value


def _prompt(name: str = "consent") -> StoredPrompt:
    return StoredPrompt(name=name, pcm=PCM, seconds=0.064, origin="file consent.wav")


async def test_prompt_round_trip_keeps_pcm_exactly(store: Store) -> None:
    added = await store.prompts.add(_prompt())
    assert added.id > 0
    got = await store.prompts.get("consent")
    assert got is not None
    assert got.pcm == PCM
    assert got == added
    assert [p.name for p in await store.prompts.list()] == ["consent"]
    assert await store.prompts.get("nope") is None


async def test_duplicate_prompt_changes_nothing(store: Store) -> None:
    await store.prompts.add(_prompt())
    message = await unchanged(store, ConflictError, store.prompts.add(_prompt()))
    assert "already exists" in message


async def test_number_audio_settings_round_trip(store: Store) -> None:
    await seed(store)
    await store.prompts.add(_prompt())
    await store.prompts.add(_prompt("whisper"))
    number = await store.numbers.update(
        NUM, record=True, disclosure="consent", whisper="whisper", screen=True, screen_seconds=7,
        voicemail="consent", voicemail_seconds=30, whisper_text="Call from {source}",
    )  # fmt: skip
    assert (number.record, number.disclosure, number.screen, number.screen_seconds) == (
        True, "consent", True, 7,
    )  # fmt: skip
    route = await store.numbers.lookup(NUM)
    assert route is not None
    assert route.number == number
    assert await store.prompts.users("consent") == [NUM]


async def test_number_naming_an_unknown_prompt_is_refused(store: Store) -> None:
    await seed(store)
    message = await unchanged(store, NotFoundError, store.numbers.update(NUM, disclosure="x"))
    assert "no prompt named 'x'" in message


async def test_prompt_in_use_is_kept_unless_forced(store: Store) -> None:
    await seed(store)
    await store.prompts.add(_prompt())
    await store.numbers.update(NUM, record=True, disclosure="consent", voicemail="consent")
    message = await unchanged(store, ConflictError, store.prompts.remove("consent"))
    assert "--force" in message
    assert NUM in message
    await store.prompts.remove("consent", force=True)
    assert await store.prompts.get("consent") is None
    number = await store.numbers.get(NUM)
    assert number is not None
    # Without its consent prompt the number is no longer recorded.
    assert (number.disclosure, number.voicemail, number.record) == (None, None, False)


async def test_remove_unknown_prompt(store: Store) -> None:
    message = await unchanged(store, NotFoundError, store.prompts.remove("nope"))
    assert "no prompt named 'nope'" in message


async def test_recording_fields_and_voicemail_disposition(store: Store) -> None:
    await seed(store)
    record = call("c1")
    await store.calls.insert(record)
    final = replace(
        record, disposition=Disposition.VOICEMAIL, ended_at=record.started_at,
        recording="c1.wav", recording_seconds=12.5, recording_bytes=400044,
        media_note="recording failed: disk full",
    )  # fmt: skip
    await store.calls.finish(final)
    assert await store.calls.get("c1") == final
    assert [c.id for c in await store.calls.list(disposition="voicemail")] == ["c1"]


@pytest.mark.parametrize("field", ["screen_seconds", "voicemail_seconds"])
async def test_non_positive_seconds_are_refused(store: Store, field: str) -> None:
    await seed(store)
    await unchanged(store, Exception, store.numbers.update(NUM, **{field: 0}))


async def test_source_disclosure_blocks_removal_unless_forced(store: Store) -> None:
    await seed(store)
    await store.prompts.add(_prompt())
    await store.sources.update("google", record=True, disclosure="consent")
    message = await unchanged(store, ConflictError, store.prompts.remove("consent"))
    assert "source google" in message
    await store.prompts.remove("consent", force=True)
    source = await store.sources.get("google")
    assert source is not None
    assert (source.record, source.disclosure) == (False, None)
