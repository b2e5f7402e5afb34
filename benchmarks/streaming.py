"""Streaming latency, speed and accuracy: time to first partial, end-of-speech-to-final latency, RTF per
chunk size, WER of the finals.

    python benchmarks/streaming.py [--model fsdd-digits] [--model fsdd-digits-streaming] [--chunks 80,160,320]
    python benchmarks/streaming.py --model en-default --manifest recipes/en_default/data/so762-dev.jsonl \
        --limit 100 --chunks 160 [--shifts 1] [--vad silero --vad webrtc] [--snr 10]

Data: by default FSDD's test takes (takes 0-4 of every digit and speaker, ../shared/data/fsdd/test; --limit
of them drawn with a fixed seed across digits and speakers), joined GROUP at a time into streams with GAP
seconds of silence between digits, so each digit is one utterance whose start and end in the stream are
known (FSDD clips are trimmed to the word). With --manifest, --limit of its utterances (seeded draw), each
its own stream with GAP/2 s of silence before and GAP s after.

Audio is fed chunk by chunk as fast as the CPU allows; each event's emission time is taken on a
simulated real-time clock: the audio time at the end of the chunk that produced it, plus the wall time
spent processing that chunk (as a live stream would see it). Latencies are measured from the clip's
start (first partial) and end (final). The final cannot come before `endpoint_silence` of
non-speech has passed: that wait is part of the figure and is printed with it. WER: each utterance's
finals joined against its transcript; "offline" rows transcribe each clip alone (no VAD), as a file.
--snr adds white noise to the whole stream (gaps too) at that many dB below the speech's mean power, as a
fan or a busy room would; --vad compares voice-activity detectors (each a row).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from vocable.errors import run_script  # noqa: E402

from vocable.audio import SAMPLE_RATE, load_audio  # noqa: E402
from vocable.data.manifest import read_dataset, read_kaldi_dir  # noqa: E402
from vocable.decoding import DecodingOptions  # noqa: E402
from vocable.evaluate import word_errors  # noqa: E402
from vocable.stream import VAD_KINDS, Streamer, StreamOptions, default_options  # noqa: E402
from vocable.tokenizer import normalize_english  # noqa: E402
from vocable.transcribe import load  # noqa: E402

FSDD_TEST = ROOT.parent / "shared" / "data" / "fsdd" / "test"
GROUP = 5  # digits per stream
from compare_peers import describe_machine, machine_info  # noqa: E402

GAP = 1.0  # seconds of silence between digits


def machine() -> str:
    return describe_machine(machine_info())


def chunk_sizes(text: str) -> list[int]:
    """"80,160,320" → [80, 160, 320] (argparse turns the ValueError into a one-line usage error)."""
    sizes = [int(c) for c in text.split(",")]
    if any(size <= 0 for size in sizes):
        raise ValueError(text)
    return sizes


def build_streams(limit: int, manifest: str | None = None, snr: float | None = None):
    """[(audio, [(text, start s, end s), ...])] from `limit` of FSDD's test takes (GROUP per stream) or of
    the manifest's utterances (one per stream), drawn (seeded) across the set: the first `limit` by id
    of FSDD were the digits zero to four only."""
    utterances = sorted((u for u in (read_dataset(manifest) if manifest else read_kaldi_dir(FSDD_TEST)) if u.text),
                        key=lambda u: u.id)
    utterances = random.Random(0).sample(utterances, min(limit, len(utterances)))
    group = 1 if manifest else GROUP
    silence = np.zeros(int(GAP * SAMPLE_RATE), np.float32)
    streams = []
    for i in range(0, len(utterances), group):
        parts, truth, t = [silence[: len(silence) // 2]], [], GAP / 2
        for u in utterances[i: i + group]:
            clip = load_audio(u.audio)
            truth.append((normalize_english(u.text), t, t + len(clip) / SAMPLE_RATE))
            parts += [clip, silence]
            t += len(clip) / SAMPLE_RATE + GAP
        audio = np.concatenate(parts)
        if snr is not None:
            speech = np.concatenate(parts[1::2])
            noise = np.random.default_rng(i).standard_normal(len(audio)).astype(np.float32)
            audio = audio + noise * np.sqrt(np.mean(speech ** 2) / 10 ** (snr / 10))
        streams.append((audio, truth))
    return streams


def run(recognizer, streams, chunk_ms: int, options: StreamOptions, decoding: DecodingOptions) -> dict:
    step = chunk_ms * SAMPLE_RATE // 1000
    busy, audio_seconds, first_partial, final_latency, errors, words, peak_state = 0.0, 0.0, [], [], 0, 0, 0
    for audio, truth in streams:
        streamer = Streamer(recognizer, options=options, decoding=decoding)
        events = []  # (emission time on the live clock, event)
        for i in range(0, len(audio), step):
            started = time.perf_counter()
            new = streamer.accept(audio[i: i + step])
            spent = time.perf_counter() - started
            busy += spent
            events += [(min(i + step, len(audio)) / SAMPLE_RATE + spent, e) for e in new]
            peak_state = max(peak_state, streamer.state_bytes())
        started = time.perf_counter()
        tail = streamer.flush()
        busy += time.perf_counter() - started
        events += [(len(audio) / SAMPLE_RATE, e) for e in tail]
        audio_seconds += len(audio) / SAMPLE_RATE
        for text, start, end in truth:
            # The utterance an event belongs to: the truth span nearest to the event's start time.
            mine = [(t, e) for t, e in events if _nearest(e.start, truth) == (text, start, end)]
            partials = [t for t, e in mine if e.type == "partial"]
            final = [(t, e) for t, e in mine if e.type == "final"]
            if partials:
                first_partial.append(partials[0] - start)
            if final:
                final_latency.append(final[0][0] - end)
            wrong, n = word_errors(text, " ".join(e.text for _, e in final))
            errors, words = errors + wrong, words + n
    return {"chunk_ms": chunk_ms, "rtf": busy / audio_seconds, "audio_s": audio_seconds,
            "first_partial": np.array(first_partial), "final": np.array(final_latency),
            "wer": errors / max(1, words), "words": words, "peak_state_kb": peak_state / 1024}


def offline_wer(recognizer, streams, decoding: DecodingOptions) -> float:
    """WER of transcribing each clip on its own: what the model does without streaming."""
    errors = words = 0
    for audio, truth in streams:
        for text, start, end in truth:
            clip = audio[round(start * SAMPLE_RATE): round(end * SAMPLE_RATE)]
            wrong, n = word_errors(text, recognizer.transcribe(clip, options=decoding).text)
            errors, words = errors + wrong, words + n
    return errors / max(1, words)


def _nearest(time_s: float, truth) -> tuple:
    return min(truth, key=lambda span: 0.0 if span[1] - 0.5 <= time_s <= span[2] else
               min(abs(time_s - span[1]), abs(time_s - span[2])))


def percentiles(values: np.ndarray) -> str:
    if len(values) == 0:
        return "n/a"
    p50, p90 = np.percentile(values, [50, 90]) * 1000
    return f"{p50:5.0f} / {p90:5.0f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="model name or file (repeatable; default: fsdd-digits "
                                                         "and fsdd-digits-streaming when bundled)")
    parser.add_argument("--chunks", type=chunk_sizes, default="80,160,320", help="chunk sizes in ms")
    parser.add_argument("--limit", type=int, default=150, help="clips to use (default: %(default)s)")
    parser.add_argument("--manifest", help="utterances to stream, one per stream (default: FSDD test digits)")
    parser.add_argument("--shifts", type=int, help="frame grids for each final and offline clip "
                                                   "(default: the model's)")
    parser.add_argument("--endpoint", type=float, default=StreamOptions().endpoint_silence)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--vad", action="append", choices=VAD_KINDS,
                        help="voice-activity detector (repeatable, a row each; default: the model's stream setting)")
    parser.add_argument("--snr", type=float, help="white noise this many dB below the speech (default: none)")
    args = parser.parse_args()
    if args.limit < (1 if args.manifest else GROUP):
        parser.error(f"--limit: at least {GROUP} FSDD clips (one stream)")
    import torch
    torch.set_num_threads(args.threads)
    if not args.manifest and not FSDD_TEST.is_dir():
        sys.exit(f"{FSDD_TEST} is not available: this benchmark needs FSDD's test takes (or --manifest)")
    decoding = DecodingOptions(shifts=args.shifts)
    from vocable.bundled import bundled_models
    models = args.model or [m for m in ("fsdd-digits", "fsdd-digits-streaming") if m in bundled_models()]
    streams = build_streams(args.limit, args.manifest, args.snr)
    print(f"machine: {machine()}, torch threads {args.threads}")
    if args.manifest:
        print(f"data: {args.manifest} ({len(streams)} utterances, one per stream, {GAP / 2:g} s of silence "
              f"before and {GAP:g} s after)", end="")
    else:
        print(f"data: FSDD test takes 0-4 ({sum(len(t) for _, t in streams)} digits in {len(streams)} streams of "
              f"{GROUP}, {GAP:g} s gaps)", end="")
    print(f"; {'clean' if args.snr is None else f'white noise at {args.snr:g} dB SNR'}; endpoint silence "
          f"{args.endpoint:g} s; frame grids: {args.shifts or 'the model’s'}")
    header = (f"{'model':<30} {'engine, VAD':<18} {'chunk':>5} {'RTF':>7} {'first partial ms':>17} "
              f"{'end->final ms':>14} {'WER':>9} {'state KB':>8}")
    sub = f"{'':<30} {'':<18} {'ms':>5} {'':>7} {'p50 / p90':>17} {'p50 / p90':>14}"
    print("\n" + header + "\n" + sub + "\n" + "-" * len(header))
    for name in models:
        recognizer = load(name)
        print(f"{Path(recognizer.loaded.path).name:<30} {'offline':<18} {'-':>5} {'':>7} {'':>17} {'':>14} "
              f"{offline_wer(recognizer, streams, decoding):9.1%}   (each clip alone, no VAD)", flush=True)
        for vad in args.vad or [None]:
            options = default_options(recognizer, endpoint_silence=args.endpoint,  # with the model's own settings
                                      **({"vad": vad} if vad else {}))
            engine = Streamer(recognizer, options=options).engine_kind
            for chunk_ms in args.chunks:
                r = run(recognizer, streams, chunk_ms, options, decoding)
                print(f"{Path(recognizer.loaded.path).name:<30} {engine + ', ' + options.vad:<18} {chunk_ms:>5} "
                      f"{r['rtf']:7.4f} {percentiles(r['first_partial']):>17} {percentiles(r['final']):>14} "
                      f"{r['wer']:9.1%} {r['peak_state_kb']:8.0f}", flush=True)
    print(f"\nend->final includes the {args.endpoint:g} s of silence the endpointer waits for; "
          f"first partial is measured from the clip's first sample.")


if __name__ == "__main__":
    run_script(main)
