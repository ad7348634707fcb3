"""Benchmark: CPU cost of the audio building blocks (prints figures, asserts nothing).

Run: `python bench/audio.py [--seconds 1.0]`.

Measures, single-threaded, CPU time (process_time) per operation:
- G.711 encode and decode of one 20 ms frame (160 samples), PCMU and PCMA;
- the recorder's per-call work for one 20 ms stereo frame: decode both legs'
  G.711 payloads and feed both into `StereoRecorder` (what a recorded call
  costs on top of relaying), with a tenth of the packets arriving jittered;
- building one prompt RTP packet (`PromptStream.next_packets`);
- `convert_prompt` of a 10 s 44.1 kHz stereo WAV (soxr resampling).
It also prints the disk bytes per recorded minute (8 kHz stereo 16-bit WAV).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbx.audio import g711, wav
from pbx.audio.prompt import convert_prompt
from pbx.audio.recorder import Side, StereoRecorder
from pbx.rtp.stream import PromptStream

FRAME = 160


def _rate(fn: Callable[[], object], seconds: float, batch: int = 64) -> tuple[float, float]:
    """(operations per CPU second, CPU microseconds per operation)."""
    count = 0
    start = time.process_time()
    while (elapsed := time.process_time() - start) < seconds:
        for _ in range(batch):
            fn()
        count += batch
    return count / elapsed, elapsed / count * 1e6


def _voice(n: int) -> np.ndarray:
    t = np.arange(n) / 8000
    return (np.sin(2 * np.pi * 300 * t) * 6000 + np.sin(2 * np.pi * 1100 * t) * 3000).astype("<i2")


def bench_codec(seconds: float) -> None:
    pcm = _voice(FRAME).tobytes()
    for name, pt in (("PCMU", g711.PT_PCMU), ("PCMA", g711.PT_PCMA)):
        payload = g711.encode(pt, pcm)
        enc, enc_us = _rate(lambda pt=pt: g711.encode(pt, pcm), seconds)
        dec, dec_us = _rate(lambda pt=pt, payload=payload: g711.decode(pt, payload), seconds)
        print(f"{name} encode: {enc:>10,.0f} frames/s  ({enc_us:5.2f} us per 20 ms frame)")
        print(f"{name} decode: {dec:>10,.0f} frames/s  ({dec_us:5.2f} us per 20 ms frame)")


def bench_recorder(seconds: float) -> None:
    caller = g711.encode(g711.PT_PCMU, _voice(FRAME).tobytes())
    answerer = g711.encode(g711.PT_PCMA, _voice(FRAME).tobytes())
    rec = StereoRecorder()
    writer = wav.StereoWavWriter()
    state = {"i": 0}

    def one_frame() -> None:
        i = state["i"]
        state["i"] = i + 1
        jitter = 37 if i % 10 == 3 else 0
        pcm_c = g711.decode_samples(g711.PT_PCMU, caller)
        pcm_a = g711.decode_samples(g711.PT_PCMA, answerer)
        writer.append(
            rec.feed(Side.CALLER, pcm_c, arrival=FRAME * i + jitter, rtp_timestamp=FRAME * i)
        )
        writer.append(
            rec.feed(Side.ANSWERER, pcm_a, arrival=FRAME * i + 5, rtp_timestamp=7777 + FRAME * i)
        )

    frames, us = _rate(one_frame, seconds)
    print(
        f"recorder mix:  {frames:>10,.0f} stereo 20 ms frames/s "
        f"({us:5.2f} us CPU per 20 ms frame = {us / 200:.3f} % of a core per recorded call)"
    )
    print(f"  => about {int(20000 / us):,} recorded calls per core for the mixing alone")


def bench_stream(seconds: float) -> None:
    pcm = _voice(8000 * 60).tobytes()

    def packets() -> None:
        stream = PromptStream(pcm, g711.PT_PCMU, 1, 0, 0, start=0.0)
        for i in range(stream.packet_count):
            stream.next_packets(i * 0.02)

    _, us = _rate(packets, seconds, batch=1)
    per_packet = us / 3000
    print(
        f"prompt stream: {1e6 / per_packet:>10,.0f} packets/s ({per_packet:5.2f} us per packet, "
        "60 s prompt incl. its encoding)"
    )


def bench_convert(seconds: float) -> None:
    t = np.arange(441000) / 44100
    tone = (np.sin(2 * np.pi * 440 * t) * 12000).astype("<i2")
    data = wav.encode_pcm16(np.stack([tone, tone], axis=1).tobytes(), rate=44100, channels=2)
    _, us = _rate(lambda: convert_prompt(data), seconds, batch=1)
    print(f"convert_prompt 10 s 44.1 kHz stereo: {us / 1000:7.1f} ms CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="CPU time per measurement")
    args = parser.parse_args()
    bench_codec(args.seconds)
    bench_recorder(args.seconds)
    bench_stream(args.seconds)
    bench_convert(args.seconds)
    per_minute = 8000 * 2 * 2 * 60
    print(
        f"disk per recorded minute: {per_minute:,} bytes (+44 header)"
        f" = {per_minute / 2**20:.2f} MiB"
    )


if __name__ == "__main__":
    main()
