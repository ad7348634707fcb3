"""WAV parsing (PCM 8/16/24/32, float, extensible; bad files refused) and the streamed writer."""

from __future__ import annotations

import io
import struct
import wave

import numpy as np
import pytest

from pbx.audio import wav
from pbx.errors import InputError
from tests.audio_support import (
    chunk,
    extensible_fmt_chunk,
    fmt_chunk,
    int24,
    pcm_wav,
    riff,
)


def _wave_module_file(rate: int, channels: int, width: int, frames: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames)
    return out.getvalue()


def test_16_bit_mono_from_the_wave_module() -> None:
    data = _wave_module_file(16000, 1, 2, struct.pack("<4h", 0, 16384, -32768, 32767))
    info = wav.read_info(data)
    assert (info.rate, info.channels, info.bits, info.frames) == (16000, 1, 16, 4)
    audio = wav.parse(data)
    assert audio.samples.dtype == np.float32
    assert audio.samples.shape == (4, 1)
    assert audio.samples[:, 0].tolist() == [0.0, 0.5, -1.0, 32767 / 32768]
    assert audio.seconds == pytest.approx(4 / 16000)


def test_8_bit_is_unsigned() -> None:
    audio = wav.parse(pcm_wav(1, 1, 8000, 8, bytes([128, 0, 255, 192])))
    assert audio.samples[:, 0].tolist() == [0.0, -1.0, 127 / 128, 0.5]


def test_24_bit_sign_extends() -> None:
    values = [0, 1, -1, 0x7FFFFF, -0x800000, 0x400000]
    audio = wav.parse(pcm_wav(1, 1, 48000, 24, int24(values)))
    assert audio.samples[:, 0].tolist() == pytest.approx([v / 0x800000 for v in values])


def test_32_bit_integer_stereo_keeps_channel_order() -> None:
    frames = struct.pack("<4i", 2**30, -(2**30), 0, -(2**31))
    audio = wav.parse(pcm_wav(1, 2, 44100, 32, frames))
    assert audio.samples.tolist() == [[0.5, -0.5], [0.0, -1.0]]


def test_float_32_and_64_clip_and_clean_nan() -> None:
    f32 = np.array([0.25, -2.0, np.nan, np.inf], dtype="<f4").tobytes()
    assert wav.parse(pcm_wav(3, 1, 8000, 32, f32)).samples[:, 0].tolist() == [0.25, -1.0, 0, 1]
    f64 = np.array([0.5, 1.5], dtype="<f8").tobytes()
    assert wav.parse(pcm_wav(3, 1, 8000, 64, f64)).samples[:, 0].tolist() == [0.5, 1.0]


def test_extensible_pcm_24_bit_stereo() -> None:
    data = riff(extensible_fmt_chunk(1, 2, 96000, 24), chunk(b"data", int24([1, -1, 2, -2])))
    info = wav.read_info(data)
    assert (info.rate, info.channels, info.encoding, info.container) == (
        96000,
        2,
        wav.Encoding.PCM,
        3,
    )
    step = 1 / 0x800000  # exact in float32
    assert wav.parse(data).samples.tolist() == [[step, -step], [2 * step, -2 * step]]


def test_extensible_float() -> None:
    body = np.array([0.125], dtype="<f4").tobytes()
    data = riff(extensible_fmt_chunk(3, 1, 8000, 32), chunk(b"data", body))
    assert wav.parse(data).samples.tolist() == [[0.125]]


def test_unknown_chunks_and_odd_sizes_are_skipped() -> None:
    data = riff(
        chunk(b"LIST", b"INFOabc"),  # 7 bytes + pad byte
        fmt_chunk(1, 1, 8000, 16),
        chunk(b"fact", b"\x01\x00\x00\x00"),
        chunk(b"data", struct.pack("<2h", 100, -100)),
    )
    assert wav.parse(data).samples[:, 0].tolist() == [100 / 32768, -100 / 32768]


def test_12_bit_in_16_bit_containers() -> None:
    data = riff(fmt_chunk(1, 1, 8000, 12, container=2), chunk(b"data", struct.pack("<h", -16)))
    assert wav.read_info(data).bits == 12
    assert wav.parse(data).samples[0, 0] == -16 / 32768


@pytest.mark.parametrize("size", [0xFFFFFFFF, 0x7FFFF000])
def test_streaming_placeholder_size_runs_to_end_of_file(size: int) -> None:
    body = struct.pack("<3h", 1, 2, 3) + b"\x07"  # a trailing half frame is dropped
    data = riff(fmt_chunk(1, 1, 22050, 16), b"data" + struct.pack("<I", size) + body)
    assert wav.read_info(data).frames == 3


def test_trailing_partial_frame_is_dropped() -> None:
    data = pcm_wav(1, 2, 8000, 16, b"\x01\x00\x02\x00\x03\x00")
    assert wav.read_info(data).frames == 1


GOOD_FMT = fmt_chunk(1, 1, 8000, 16)
TWO_SAMPLES = chunk(b"data", b"\x01\x00\x02\x00")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a WAV"),
        (b"ID3\x03\x00" + b"\0" * 100, "not a WAV"),
        (b"RIFF\x10\x00\x00\x00AVI LIST", "not a WAV"),
        (b"RIFF\x04\x00\x00\x00WAVE", "no fmt chunk"),
        (riff(GOOD_FMT), "no data chunk"),
        (riff(TWO_SAMPLES, GOOD_FMT), "data chunk before the fmt chunk"),
        (riff(GOOD_FMT, b"data" + struct.pack("<I", 400) + b"\0" * 10), "truncated"),
        (riff(b"fmt \x0e\x00\x00\x00" + b"\x01\x00" * 7, TWO_SAMPLES), "truncated"),
        (riff(b"fmt \x10\x00\x00\x00\x01\x00", TWO_SAMPLES), "truncated"),
        (riff(fmt_chunk(2, 1, 8000, 4), TWO_SAMPLES), "code 0x0002"),  # MS ADPCM
        (riff(fmt_chunk(6, 1, 8000, 8), TWO_SAMPLES), "code 0x0006"),  # A-law WAV
        (riff(fmt_chunk(1, 0, 8000, 16, container=2), TWO_SAMPLES), "0 channels"),
        (riff(fmt_chunk(1, 9, 8000, 16), TWO_SAMPLES), "9 channels"),
        (riff(fmt_chunk(1, 1, 0, 16), TWO_SAMPLES), "sample rate 0"),
        (riff(fmt_chunk(1, 1, 8000, 17, container=2), TWO_SAMPLES), "17-bit"),
        (riff(fmt_chunk(1, 1, 8000, 64), TWO_SAMPLES), "64-bit integer"),
        (riff(fmt_chunk(3, 1, 8000, 16), TWO_SAMPLES), "16-bit IEEE float"),
        (
            riff(fmt_chunk(1, 2, 8000, 16, container=2)[:20] + b"\x03\x00\x10\x00", TWO_SAMPLES),
            "block align",
        ),
        (riff(GOOD_FMT, chunk(b"data", b"")), "empty"),
        (riff(GOOD_FMT, chunk(b"data", b"\x01")), "empty"),
        (riff(extensible_fmt_chunk(1, 1, 8000, 16)[:40], TWO_SAMPLES), "EXTENSIBLE"),
        (riff(extensible_fmt_chunk(1, 1, 8000, 16)[:-1] + b"\x00", TWO_SAMPLES), "sub-format"),
    ],
)
def test_bad_files_get_one_line(data: bytes, message: str) -> None:
    with pytest.raises(wav.WavError, match=message) as caught:
        wav.read_info(data)
    assert isinstance(caught.value, InputError)
    assert "\n" not in str(caught.value)


def test_chunk_walk_is_bounded() -> None:
    junk = b"".join(chunk(b"junk", b"") for _ in range(wav.MAX_CHUNKS + 5))
    with pytest.raises(wav.WavError, match="no fmt chunk"):
        wav.read_info(riff(junk, GOOD_FMT, TWO_SAMPLES))


# --- writer -----------------------------------------------------------------------------


def _read_with_wave(data: bytes) -> tuple[int, int, int, bytes]:
    with wave.open(io.BytesIO(data), "rb") as w:
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), w.readframes(1 << 20)


def test_header_is_44_bytes_and_the_wave_module_reads_it() -> None:
    frames = struct.pack("<4h", 1, -1, 2, -2)
    data = wav.header(len(frames)) + frames
    assert len(wav.header(0)) == wav.HEADER_SIZE == 44
    assert _read_with_wave(data) == (8000, 2, 2, frames)
    assert wav.parse(data).samples.shape == (2, 2)


def test_encode_pcm16_mono() -> None:
    data = wav.encode_pcm16(struct.pack("<3h", 5, 6, 7), rate=8000)
    assert _read_with_wave(data) == (8000, 1, 2, struct.pack("<3h", 5, 6, 7))


def test_header_refuses_partial_frames_and_oversize() -> None:
    with pytest.raises(ValueError, match="whole number"):
        wav.header(6)
    with pytest.raises(ValueError, match="4 GiB"):
        wav.header(0xFFFFFFFC)


def test_streamed_writer_and_crash_repair() -> None:
    writer = wav.StereoWavWriter()
    file = bytearray(writer.begin())
    for _ in range(50):
        file += writer.append(b"\x01\x00\xff\xff" * 160)
    assert writer.seconds == pytest.approx(1.0)
    crashed = bytes(file) + b"\x01\x00"  # killed mid-frame, header still says 0 bytes
    assert wav.needs_repair(crashed[:44], len(crashed))
    fix = wav.repair(len(crashed))
    assert fix.size == 44 + 50 * 160 * 4
    repaired = fix.header + crashed[44 : fix.size]
    assert not wav.needs_repair(repaired[:44], len(repaired))
    assert _read_with_wave(repaired)[3] == bytes(file[44:])
    file[:44] = writer.finish()
    assert bytes(file) == repaired
    assert wav.fixed_header_for(len(crashed)) == fix.header


@pytest.mark.parametrize(
    ("size", "data"), [(0, 0), (10, 0), (44, 0), (47, 0), (48, 4), (1003, 956)]
)
def test_repair_rounds_down_to_whole_frames(size: int, data: int) -> None:
    fix = wav.repair(size)
    assert fix.size == 44 + data
    assert struct.unpack_from("<I", fix.header, 40)[0] == data
    assert struct.unpack_from("<I", fix.header, 4)[0] == 36 + data


def test_writer_refuses_partial_frames() -> None:
    with pytest.raises(ValueError, match="whole"):
        wav.StereoWavWriter().append(b"\x00\x00")
