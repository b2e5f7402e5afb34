"""Audio of several sentences with pauses between them: decoded in one pass, or split at the pauses by the VAD.

    python benchmarks/joined_utterances.py                       # so762-dev of the en_default recipe
    python benchmarks/joined_utterances.py --manifest M.jsonl --model M.vocable

Each speaker's utterances are joined 1 to 6 at a time (the count drawn at random), with 0.3-1.5 s of
silence between them, and each joined clip is transcribed twice by the model's own decoding: with the
VAD off (one pass over the clip) and on (split at pauses, each piece decoded alone). The table gives
both WERs by the clip's length. It decides transcribe.LONG_AUDIO_SECONDS, the length above which
`vad=None` (the default) splits audio: the model reads joined sentences far worse in one pass once
they pass a few sentences, while a single sentence reads better whole.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_peers import ROOT, describe_machine, machine_info, write_report  # noqa: E402

DEV_MANIFEST = ROOT / "recipes" / "en_default" / "data" / "so762-dev.jsonl"
MAX_JOINED = 6  # utterances per clip, at most
PAUSE_SECONDS = (0.3, 1.5)  # silence between joined utterances
BINS = [(0, 5), (5, 8), (8, 12), (12, 20), (20, 60)]  # clip lengths, seconds


def joined_clips(manifest: Path, seed: int) -> list[tuple[np.ndarray, str]]:
    """(audio, reference) of each speaker's utterances joined a few at a time, in manifest order."""
    from vocable.audio import SAMPLE_RATE, load_audio
    from vocable.data import read_dataset
    by_speaker = collections.defaultdict(list)
    for u in read_dataset(manifest):
        by_speaker[u.speaker].append(u)
    rng, clips = np.random.default_rng(seed), []
    for utterances in by_speaker.values():
        start = 0
        while start < len(utterances):
            group = utterances[start: start + int(rng.integers(1, MAX_JOINED + 1))]
            start += len(group)
            pieces = []
            for u in group:
                pause = np.zeros(int(rng.uniform(*PAUSE_SECONDS) * SAMPLE_RATE), np.float32)
                pieces += [load_audio(u.audio), pause]
            clips.append((np.concatenate(pieces[:-1]), " ".join(u.text for u in group)))
    return clips


def measure(model: str, clips: list[tuple[np.ndarray, str]]) -> list[dict]:
    import vocable
    from vocable.audio import SAMPLE_RATE
    from vocable.decoding import DecodingOptions
    from vocable.evaluate import word_errors
    recognizer = vocable.load(model, threads=1)
    rows = []
    for audio, ref in tqdm(clips, desc="joined clips", unit="clip"):
        row = {"seconds": len(audio) / SAMPLE_RATE}
        for label, vad in (("one_pass", False), ("vad", True)):
            row[label] = word_errors(ref, recognizer.transcribe(audio, options=DecodingOptions(vad=vad)).text)
        rows.append(row)
    return rows


def markdown(report: dict) -> str:
    lines = ["# Joined utterances: one pass or split by the VAD", "",
             f"Machine: {describe_machine(report['machine'])}; one thread.  ",
             f"Data: {report['data']}; model {report['model']}.", "",
             "| clip length | clips | WER, one pass | WER, split by the VAD |", "|---|---|---|---|"]
    for row in report["bins"]:
        lines.append(f"| {row['from']:g}-{row['to']:g} s | {row['clips']} | {row['one_pass']:.1%} | {row['vad']:.1%} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", type=Path, default=DEV_MANIFEST,
                        help="utterances with speakers (default: the en_default recipe's so762-dev)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "joined_utterances.json")
    args = parser.parse_args()
    if not args.manifest.is_file():
        parser.error(f"--manifest {args.manifest}: no such file (run recipes/en_default/prepare.py, or give one)")
    info = machine_info()
    rows = measure(args.model, joined_clips(args.manifest, args.seed))
    bins = []
    for low, high in BINS:
        chosen = [r for r in rows if low <= r["seconds"] < high]
        if chosen:
            words = sum(r["one_pass"][1] for r in chosen)
            bins.append({"from": low, "to": high, "clips": len(chosen),
                         "one_pass": sum(r["one_pass"][0] for r in chosen) / words,
                         "vad": sum(r["vad"][0] for r in chosen) / words})
    data = (f"{args.manifest.name}: each speaker's utterances joined 1-{MAX_JOINED} at a time with "
            f"{PAUSE_SECONDS[0]}-{PAUSE_SECONDS[1]} s of silence between them (seed {args.seed})")
    write_report(args.output, {"machine": info, "data": data, "model": args.model, "bins": bins, "rows": rows},
                 markdown)


if __name__ == "__main__":
    from vocable.errors import run_script
    run_script(main)
