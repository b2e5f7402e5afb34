"""The DeepSpeech-compatible Stream (vocable.compat) on long audio: the work per intermediateDecode.

    python benchmarks/compat_stream.py [--minutes 1.6 3.2] [--every 1.0] [--model en-default]

A DeepSpeech program feeds a stream 100 ms at a time and asks for the text every EVERY seconds (live
captions). Audio: the three English test fixtures (tests/fixtures/english: two LibriVox sentences and
"go forward ten meters"), each followed by 1 s of silence, repeated to each length. Prints, per length,
the processing time of the whole stream, the slowest request, and the words of the final transcript
against the same audio given to stt() whole. One torch thread.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vocable.errors import run_script  # noqa: E402
from compare_peers import ROOT, describe_machine, machine_info  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "english"
CHUNK = 1600  # samples (100 ms at 16 kHz) per feedAudioContent


def fixture_audio(seconds: float) -> np.ndarray:
    """int16 samples: the fixtures with 1 s pauses, repeated to `seconds`."""
    from vocable.audio import load_audio
    parts = []
    for name in ("austen-0880", "goforward", "austen-0930"):
        parts += [(load_audio(FIXTURES / f"{name}.flac") * 32767).astype(np.int16), np.zeros(16000, np.int16)]
    one = np.concatenate(parts)
    return np.tile(one, int(np.ceil(seconds * 16000 / len(one))))[: int(seconds * 16000)]


def run(model, audio: np.ndarray, every: float) -> tuple[float, float, str]:
    """(seconds of work, slowest request's seconds, final text) for one stream."""
    stream, slowest, step = model.createStream(), 0.0, int(every * 16000)
    started = time.perf_counter()
    for i in range(0, len(audio), CHUNK):
        stream.feedAudioContent(audio[i: i + CHUNK])
        if (i + CHUNK) % step < CHUNK:
            asked = time.perf_counter()
            stream.intermediateDecode()
            slowest = max(slowest, time.perf_counter() - asked)
    text = stream.finishStream()
    return time.perf_counter() - started, slowest, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.6, 3.2], help="stream lengths")
    parser.add_argument("--every", type=float, default=1.0, help="seconds of audio between requests")
    parser.add_argument("--model", default="en-default")
    args = parser.parse_args()
    if args.every <= 0 or any(m <= 0 for m in args.minutes):
        parser.error("--minutes and --every: expected positive numbers")
    import torch
    torch.set_num_threads(1)
    from vocable.compat import Model
    model = Model(args.model)
    print(f"machine: {describe_machine(machine_info())}, torch threads 1")
    print(f"model: {args.model}; audio: tests/fixtures/english with 1 s pauses, repeated; fed 100 ms at a time, "
          f"intermediateDecode every {args.every:g} s")
    print(f"\n{'stream s':>8} {'work s':>7} {'work / audio':>12} {'slowest request s':>18} {'words':>6} {'= stt()':>8}")
    for minutes in args.minutes:
        audio = fixture_audio(minutes * 60)
        work, slowest, text = run(model, audio, args.every)
        same = text == model.stt(audio)
        print(f"{len(audio) / 16000:8.0f} {work:7.1f} {work / (len(audio) / 16000):12.3f} {slowest:18.2f} "
              f"{len(text.split()):6d} {'yes' if same else 'no':>8}", flush=True)


if __name__ == "__main__":
    run_script(main)
