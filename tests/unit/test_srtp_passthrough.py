"""SRTP passthrough: an RTP/SAVP offer crosses the B2BUA with its proto and a=crypto untouched,
and a number that wants audio work (recording, prompts, whisper, screening, voicemail) gets a
call without it and a note in the record (the relay never decrypts)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pbx.call.audio import SRTP_NOTE
from pbx.call.legs import relay_sdp
from pbx.call.model import AudioPlan, PlayPrompt, StartRecording, WatchDigits
from pbx.rtp.sdp import OriginState, is_secure_proto, parse_sdp, rewrite
from tests.calls_support import caller_invite, make_call, of, sdp, target

KEY = "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVzcyAoc2VuZGVyIHNlbmRlcik="
CRYPTO = [
    f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 {KEY}|2^20|1:32",
    f"a=crypto:2 AES_CM_128_HMAC_SHA1_32 {KEY}",
]


def srtp_offer(proto: str = "RTP/SAVP", crypto: list[str] = CRYPTO) -> bytes:
    plain = sdp("192.0.2.10", 16000).decode().replace("RTP/AVP", proto)
    return (plain + "".join(f"{line}\r\n" for line in crypto)).encode()


def test_secure_protos() -> None:
    for proto in ("RTP/SAVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVP", "UDP/TLS/RTP/SAVPF", "rtp/savp"):
        assert is_secure_proto(proto)
    for proto in ("RTP/AVP", "RTP/AVPF", "udp", "SAVP/RTP"):
        assert not is_secure_proto(proto)


def test_relayed_offer_keeps_proto_and_keys() -> None:
    offer = parse_sdp(srtp_offer())
    assert offer.is_srtp
    out = relay_sdp(offer, ("192.0.2.200", 30000), OriginState(7)).decode()
    assert "m=audio 30000 RTP/SAVP 0 101\r\n" in out
    assert [line for line in out.split("\r\n") if line.startswith("a=crypto")] == CRYPTO
    assert "192.0.2.10" not in out  # the addresses are the relay's


_b64 = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=",
               min_size=1, max_size=60)  # fmt: skip
_suite = st.sampled_from(["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32",
                          "AEAD_AES_256_GCM", "F8_128_HMAC_SHA1_80"])  # fmt: skip
_crypto = st.builds(lambda tag, suite, key, tail: f"a=crypto:{tag} {suite} inline:{key}{tail}",
                    st.integers(1, 999), _suite, _b64,
                    st.sampled_from(["", "|2^31", "|2^20|1:32", " UNENCRYPTED_SRTCP"]))  # fmt: skip


@given(st.sampled_from(["RTP/SAVP", "RTP/SAVPF", "UDP/TLS/RTP/SAVP"]),
       st.lists(_crypto, min_size=1, max_size=4), st.integers(1, 32767))  # fmt: skip
def test_property_rewrite_never_touches_proto_or_crypto(
    proto: str, crypto: list[str], half_port: int
) -> None:
    offer = parse_sdp(srtp_offer(proto, crypto))
    out = parse_sdp(rewrite(offer, "192.0.2.200", [2 * half_port], origin=OriginState(1)))
    assert out.media[0].proto == proto
    assert out.is_srtp
    assert [ln for ln in out.lines() if ln.startswith("a=crypto")] == crypto
    again = rewrite(out, "192.0.2.200", [2 * half_port], origin=OriginState(1))
    assert parse_sdp(again).lines() == out.lines()  # idempotent


def _srtp_call(audio: AudioPlan, targets: int = 1):  # type: ignore[no-untyped-def]
    h = make_call([[target(i)] for i in range(targets)], audio=audio,
                  invite=caller_invite(body=srtp_offer()))  # fmt: skip
    h.ringing()
    body = h.branch_invite(0).body.decode()
    assert "RTP/SAVP" in body
    assert CRYPTO[0] in body  # the callee gets the caller's keys, untouched
    return h


def test_srtp_with_recording_and_disclosure_goes_on_unrecorded() -> None:
    h = _srtp_call(AudioPlan(record=True, disclosure=bytes(3200)))
    actions = h.answer(0, 200, after=2, body=srtp_offer().replace(b"192.0.2.10", b"192.0.2.20"))
    assert [r.status for r in h.to_caller(actions)] == [200]
    assert CRYPTO[1] in h.to_caller(actions)[0].body.decode()
    assert not of(actions, PlayPrompt)  # type: ignore[arg-type]
    assert not of(actions, StartRecording)  # type: ignore[arg-type]
    assert SRTP_NOTE in (h.call.record.media_note or "")


def test_srtp_with_whisper_and_screening_is_bridged_at_once() -> None:
    h = _srtp_call(AudioPlan(whisper=bytes(1600), screen=True, screen_seconds=5.0))
    actions = h.answer(0, 200, after=2)
    assert [r.status for r in h.to_caller(actions)] == [200]  # not held for the whisper
    assert not of(actions, PlayPrompt)  # type: ignore[arg-type]
    assert not of(actions, WatchDigits)  # type: ignore[arg-type]
    assert SRTP_NOTE in (h.call.record.media_note or "")


def test_srtp_voicemail_is_not_taken_and_says_so() -> None:
    h = _srtp_call(AudioPlan(voicemail=bytes(3200), voicemail_seconds=30.0))
    actions = h.answer(0, 486, after=1)
    assert [r.status for r in h.to_caller(actions)] == [486]
    assert SRTP_NOTE in (h.call.record.media_note or "")
