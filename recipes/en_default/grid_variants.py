"""Variants of decoding each utterance on several views of it (docs/decoding.md, shifted frame grids).

    python grid_variants.py data/so762-dev.jsonl [--model en-default]

Views: the audio with 0, 10, 20 or 30 ms of silence in front (the model's 40 ms frame grid moved by a
quarter frame each) and the audio played 0.9, 0.95, 1.05 or 1.1 times as fast. Each view is searched
once at the model's own decoding. A combination of views keeps, of each view's K best transcripts, the
one with the highest text score (LM, word bonus) + CTC log-likelihood averaged over the views: with
K = 1 and shifted views only, what DecodingOptions.shifts does. Also printed: "adaptive" (views 0 and
20 ms, and 10 and 30 ms too only when the first two disagree) and the oracle (the best view per
utterance). Session 23, en-default on so762-dev: see docs/decoding.md.

With --second MODEL, a second model's views join them ("B0", "B20": its 0 and 20 ms grids, searched at its
own decoding and scored with its own blank penalty): two models as two more grids.
"""

from __future__ import annotations

import argparse

import numpy as np
import soxr
from tqdm import tqdm

import vocable
from vocable.audio import SAMPLE_RATE, load_audio
from vocable.data import read_manifest
from vocable.decoding import DecodingOptions, ctc_log_likelihood, penalise_blank
from vocable.errors import run_script
from vocable.evaluate import word_errors

SHIFTS_MS = (0, 10, 20, 30)
SPEEDS = (0.9, 0.95, 1.05, 1.1)
ONE_GRID = DecodingOptions(shifts=1)  # each view searched once; the combinations below do the rest
COMBINATIONS = [  # (views, K best transcripts of each view)
    (("0",), 1), (("0", "20"), 1), (("0", "20"), 2), (("0", "20"), 4), (("0", "20"), 8),
    (("0", "10", "20", "30"), 1), (("0", "10", "20", "30"), 2), (("0", "10", "20", "30"), 4),
    (("0", "10", "20", "30"), 8), (("0", "x0.95", "x1.05"), 1), (("0", "20", "x1.05"), 1),
    (("0", "x0.9", "x0.95", "x1.05", "x1.1"), 1), (("0", "10", "20", "30", "x0.95", "x1.05"), 1)]


def views(audio: np.ndarray) -> dict[str, np.ndarray]:
    """Each view's name ("20": 20 ms of silence in front; "x1.05": played 1.05 times as fast) → its audio."""
    shifted = {str(ms): np.concatenate([np.zeros(ms * SAMPLE_RATE // 1000, np.float32), audio]) for ms in SHIFTS_MS}
    faster = {f"x{f}": soxr.resample(audio, SAMPLE_RATE, round(SAMPLE_RATE / f)).astype(np.float32) for f in SPEEDS}
    return {**shifted, **faster}


SECOND_COMBINATIONS = [(("0", "B0"), 1), (("0", "B0"), 2), (("0", "20", "B0", "B20"), 1), (("B0", "B20"), 1)]


def pick(candidates: dict[str, list], fits, names, k: int) -> str:
    """Of the named views' k best (text score, text) each, the text with the best text score + mean CTC fit."""
    text_score = {}
    for name in names:
        for score, text in candidates[name][:k]:
            text_score.setdefault(text, score)
    return max(text_score, key=lambda t: text_score[t] + sum(fits(t, n) for n in names) / len(names), default="")


def searching(name: str):
    """(Recognizer, its one-grid Decoder, the blank penalty its search adds) for a model that decodes with a beam."""
    recognizer = vocable.load(name, threads=1)
    decoder = recognizer.decoder(ONE_GRID)
    if decoder.search is None:
        raise SystemExit(f"{name}: decodes greedily; these variants need its beam search")
    return recognizer, decoder, decoder.options.blank_penalty if decoder.lm is not None else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("manifest")
    p.add_argument("--model", default="en-default")
    p.add_argument("--second", help="a second model whose 0 and 20 ms grids are views B0 and B20")
    args = p.parse_args()
    models = [searching(args.model)] + ([searching(args.second)] if args.second else [])
    combinations = COMBINATIONS + (SECOND_COMBINATIONS if args.second else [])
    labels = [" + ".join(names) + f", K {k}" for names, k in combinations] + ["adaptive", "oracle (best view)"]
    errors, words, disagree = dict.fromkeys(labels, 0), 0, 0
    utterances = read_manifest(args.manifest)
    for utt in tqdm(utterances, desc="utterances"):
        audio_views = views(load_audio(utt.audio))
        second_views = {f"B{ms}": audio_views[ms] for ms in ("0", "20")}
        candidates, scored, fit_cache, tokenizer = {}, {}, {}, {}
        for named, (model, decoder, penalty) in zip((audio_views, second_views), models):
            for name, lp in zip(named, model.log_probs_batch(list(named.values()))):
                candidates[name] = [(total - acoustic, text) for total, acoustic, _, text in decoder.search.search(lp)[:8]]
                scored[name], tokenizer[name] = penalise_blank(lp, penalty), model.tokenizer

        def fits(text: str, name: str) -> float:
            if (text, name) not in fit_cache:
                fit_cache[text, name] = ctc_log_likelihood(scored[name], tokenizer[name].encode(text))
            return fit_cache[text, name]

        texts = {label: pick(candidates, fits, names, k) for label, (names, k) in zip(labels, combinations)}
        first_two = [candidates[name][0][1] if candidates[name] else "" for name in ("0", "20")]
        disagree += first_two[0] != first_two[1]
        texts["adaptive"] = texts["0 + 20, K 1" if first_two[0] == first_two[1] else "0 + 10 + 20 + 30, K 1"]
        for label, text in texts.items():
            errors[label] += word_errors(utt.text, text)[0]
        errors["oracle (best view)"] += min(word_errors(utt.text, c[0][1] if c else "")[0] for c in candidates.values())
        words += word_errors(utt.text, "")[1]
    print(f"{args.manifest}: {len(utterances)} utterances, {words} words; model {args.model}; the views 0 and 20 ms "
          f"disagree on {disagree}")
    for label in labels:
        print(f"| {label} | {100 * errors[label] / words:.1f} % |")


if __name__ == "__main__":
    run_script(main)
