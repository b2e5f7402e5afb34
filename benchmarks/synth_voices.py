"""Synthetic speech per TTS engine: rendering speed and intelligibility (pocketsphinx WER).

For each engine installed (espeak-ng, flite, festival), renders about --seconds of audio from
sentences of a text file through `vocable data synth` (1 process), then transcribes every clip
with pocketsphinx's bundled US-English model: a lower WER means clearer speech.

    python benchmarks/synth_voices.py [--text FILE] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from vocable.errors import run_script
from vocable.audio import load_audio
from vocable.data.synth import list_voices, synthesize_corpus
from vocable.evaluate import wer

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEXT = ROOT.parent / "shared" / "data" / "text" / "wordnet_gloss_examples.txt"


def cpu_name() -> str:
    try:
        return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        return platform.machine()


def pocketsphinx_transcribe(decoder, path: str) -> str:
    pcm = (np.clip(load_audio(path), -1, 1) * 32767).astype(np.int16).tobytes()
    decoder.start_utt()
    decoder.process_raw(pcm, full_utt=True)
    decoder.end_utt()
    return decoder.hyp().hypstr.lower() if decoder.hyp() else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", default=str(DEFAULT_TEXT), help="sentences, one per line")
    parser.add_argument("--seconds", type=float, default=60.0, help="audio rendered per engine")
    args = parser.parse_args()
    if not Path(args.text).is_file():
        raise SystemExit(f"{args.text}: no such text file (give --text)")
    try:
        from pocketsphinx import Decoder
    except ImportError:
        raise SystemExit("synth_voices.py scores intelligibility with pocketsphinx: pip install pocketsphinx") from None
    decoder = Decoder(loglevel="FATAL")

    engines = sorted({v.engine for v in list_voices()})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for engine in engines:
            voices = [v for v in list_voices() if v.engine == engine]
            out = Path(tmp) / engine
            started = time.perf_counter()
            result = synthesize_corpus([args.text], args.seconds / 3600, str(out), voices, jobs=1, seed=1,
                                       show_progress=False)
            elapsed = time.perf_counter() - started
            manifest = [json.loads(line) for line in open(out / "manifest.jsonl")]
            refs = [r["text"] for r in manifest]
            hyps = [pocketsphinx_transcribe(decoder, str(out / r["audio"])) for r in manifest]
            per_voice = {}
            for r, h in zip(manifest, hyps):
                refs_hyps = per_voice.setdefault(r["voice"], ([], []))
                refs_hyps[0].append(r["text"])
                refs_hyps[1].append(h)
            rows.append((engine, len(voices), len(manifest), result.hours * 3600, elapsed, wer(refs, hyps),
                         {v: wer(*pair) for v, pair in sorted(per_voice.items())}))

    print(f"\nmachine: {cpu_name()}, {os.cpu_count()} cores visible; 1 synthesis process")
    print(f"text: {args.text}; recogniser: pocketsphinx (bundled en-us model, default settings)\n")
    print("| engine | voices | utterances | audio s | audio-s per wall-s | pocketsphinx WER |")
    print("|---|---|---|---|---|---|")
    for engine, voices, utts, seconds, elapsed, total_wer, _ in rows:
        print(f"| {engine} | {voices} | {utts} | {seconds:.0f} | {seconds / elapsed:.0f} | {total_wer:.0%} |")
    print("\nper voice (few utterances each):")
    for engine, *_, per_voice in rows:
        print("  " + ", ".join(f"{v} {w:.0%}" for v, w in per_voice.items()))


if __name__ == "__main__":
    run_script(main)
