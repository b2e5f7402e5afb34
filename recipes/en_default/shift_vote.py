"""How much the bundled model's transcripts depend on where its 40 ms output frames fall (docs/models.md).

    python shift_vote.py data/so762-dev.jsonl [--model en-default] [--shifts 0 10 20 30]

Each utterance is decoded with SHIFT ms of silence put in front (moving the frame grid by a quarter
output frame per 10 ms), at the model's own decoding on one grid. Prints the WER per shift, the best-of-shifts
oracle, and a vote: the transcript most shifts agree on (ties: the unshifted one).
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
from tqdm import tqdm

import vocable
from vocable import DecodingOptions
from vocable.audio import SAMPLE_RATE, load_audio
from vocable.data import read_manifest
from vocable.errors import run_script
from vocable.evaluate import word_errors

ONE_GRID = DecodingOptions(shifts=1)  # each shifted copy decoded once, not on the model's own grids


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("manifest")
    p.add_argument("--model", default="en-default")
    p.add_argument("--shifts", type=int, nargs="+", default=[0, 10, 20, 30], metavar="MS")
    args = p.parse_args()
    recognizer = vocable.load(args.model)
    utterances = read_manifest(args.manifest)
    errors = np.zeros((len(utterances), len(args.shifts)), int)
    voted = words = 0
    for i, utt in enumerate(tqdm(utterances, desc="utterances")):
        audio = load_audio(utt.audio)
        texts = [recognizer.transcribe(np.concatenate([np.zeros(ms * SAMPLE_RATE // 1000, np.float32), audio]),
                                       options=ONE_GRID).text for ms in args.shifts]
        for j, text in enumerate(texts):
            errors[i, j], n = word_errors(utt.text, text)
        votes = Counter(texts)
        pick = texts[0] if votes[texts[0]] == max(votes.values()) else votes.most_common(1)[0][0]
        voted += word_errors(utt.text, pick)[0]
        words += n
    for j, ms in enumerate(args.shifts):
        print(f"shift {ms:3d} ms   WER {100 * errors[:, j].sum() / words:.1f} %")
    print(f"oracle (best shift per utterance)   WER {100 * errors.min(axis=1).sum() / words:.1f} %")
    print(f"vote ({len(args.shifts)} decodings per utterance)   WER {100 * voted / words:.1f} %")


if __name__ == "__main__":
    run_script(main)
