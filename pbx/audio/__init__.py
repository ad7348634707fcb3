"""Call audio (pure): G.711 codecs, WAV parse/write, prompt conversion, the stereo recorder.

Everything here is pure (bytes and numpy arrays in, values out; no clocks, no
files) except `tts.py`, the one named I/O edge, which runs `espeak-ng`.
"""
