"""Pick the LM weight, word bonus, blank penalty and beam size for a model on a development set (grid search).

    python tune_lm.py exp/conformer/model.vocable data/so762-dev.jsonl --lm en-3gram -o exp/lm-tuning.json

The acoustic model runs once; each grid point only re-decodes its log-probabilities. Prints the grid as
a table per beam size (WER per weight and bonus) and writes the best point to the JSON file for
scripts/bundle_model.py.

The best point's WER is optimistic: it was chosen on the very set it is measured on. So the script also
prints a cross-validated WER: the speakers are dealt into FOLDS groups, and each group is decoded with
the point that was best on the other groups' speakers (the JSON's "cv_wer").

With --shifts N every point decodes on N shifted frame grids (DecodingOptions.shifts, docs/decoding.md),
as the model will be decoded when its meta says "shifts": N; the grids' log-probabilities are computed once.

It also prints the oracle WER of the best point's (unshifted) beam (the JSON's "oracle_wer"): each utterance scored by
whichever of the search's final hypotheses is closest to its reference, the most that rescoring the beam
(a larger LM, a second pass) could gain. For en-default on so762-dev: 39.8 % top-1, 33.4 % oracle.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

WEIGHTS = (0.2, 0.35, 0.5, 0.7, 1.0, 1.4)  # multiplies ln p_LM
BONUSES = (0.0, 1.0, 2.0, 3.0)  # nats per word
BLANK_PENALTIES = (0.0,)  # nats per blank frame; en-default's grid: --blank-penalties 0 0.5 1 1.5 2
# Beams kept per frame. en-default's weights of 2026-11-26 morning on so762-dev (weight 0.35, bonus 1.0,
# RTF with 2 threads):
# 8: 52.9 % (0.0074), 16: 51.6 % (0.0095), 32: 50.7 % (0.0117), 64: 50.0 % (0.0189). 64 doubles the
# decoding time for 0.7 points, so the grid stops at 32.
BEAMS = (8, 16, 32)
FOLDS = 2  # speaker groups for the cross-validated WER


def pooled_wer(pairs: list[tuple[int, int]]) -> float:
    """WER of (word errors, reference words) pairs taken together."""
    return sum(e for e, _ in pairs) / max(1, sum(n for _, n in pairs))


def speaker_folds(speakers: list[str], folds: int = FOLDS) -> list[int]:
    """Each utterance's fold: speakers sorted by name and dealt round-robin, so a speaker is in one fold."""
    order = {s: i % folds for i, s in enumerate(sorted(set(speakers)))}
    return [order[s] for s in speakers]


def cross_validated_wer(errors: dict[tuple, list[tuple[int, int]]], fold_of: list[int]) -> tuple[float, list]:
    """WER when each fold is decoded with the grid point that is best on the other folds.

    errors: grid point -> per-utterance (word errors, reference words). Returns the pooled WER and the
    point chosen for each fold.
    """
    def pairs(point, folds) -> list[tuple[int, int]]:
        return [e for e, f in zip(errors[point], fold_of) if f in folds]

    all_folds = sorted(set(fold_of))
    chosen = [min(errors, key=lambda p: pooled_wer(pairs(p, [f for f in all_folds if f != fold])))
              for fold in all_folds]
    held_out = [pair for point, fold in zip(chosen, all_folds) for pair in pairs(point, [fold])]
    return pooled_wer(held_out), chosen


def beam_oracle_errors(tokenizer, lm, options, refs: list[str], log_probs: list) -> list[tuple[int, int]]:
    """Per utterance, (word errors, reference words) of the search's final hypothesis closest to the reference."""
    from vocable.decoding import BeamSearchDecoder
    from vocable.evaluate import word_errors

    search = BeamSearchDecoder(tokenizer, lm, options)
    return [min((word_errors(ref, final[3]) for final in search.search(lp)), default=word_errors(ref, ""))
            for ref, lp in zip(refs, log_probs)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("dev", help="development manifest (never a set whose figures you report as unseen)")
    p.add_argument("--lm", default="en-3gram")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--beams", type=int, nargs="+", default=BEAMS)
    p.add_argument("--weights", type=float, nargs="+", default=WEIGHTS)
    p.add_argument("--bonuses", type=float, nargs="+", default=BONUSES)
    p.add_argument("--blank-penalties", type=float, nargs="+", default=BLANK_PENALTIES)
    p.add_argument("--shifts", type=int, default=1, help="frame grids per utterance (default 1)")
    p.add_argument("--adapt", type=float, nargs=2, metavar=("LR", "STEPS"),
                   help="tune for test_time.py's per-utterance adaptation at this rate and step count")
    args = p.parse_args()

    import vocable
    from vocable.audio import load_audio
    from vocable.data.manifest import read_dataset
    from vocable.decoding import DecodingOptions
    from vocable.evaluate import word_errors
    from vocable.lm import resolve_lm
    from vocable.tokenizer import normalize_english
    from vocable.transcribe import FRAME_SECONDS

    from vocable.cli import check_writable_file
    check_writable_file(str(args.output), "-o")  # before the work, so none of it is lost
    args.output.parent.mkdir(parents=True, exist_ok=True)
    # Every grid point's options, and the LM, made (so checked) before the acoustic pass.
    points = [(beam, w, b, pen) for beam in args.beams for w in args.weights for b in args.bonuses
              for pen in args.blank_penalties]
    point_options = {point: DecodingOptions(lm=args.lm, lm_weight=point[1], word_bonus=point[2],
                                            blank_penalty=point[3], beam_size=point[0], shifts=args.shifts)
                     for point in points}
    resolve_lm(args.lm)  # loaded once (cached): no grid point is charged for it
    recognizer = vocable.load(args.model, threads=1)
    if args.adapt:
        from test_time import AdaptingEngine
        recognizer.engine = AdaptingEngine(recognizer, args.adapt[0], int(args.adapt[1]))
    utterances = [u for u in read_dataset(args.dev) if u.text]
    refs = [normalize_english(u.text) for u in utterances]
    grids = [recognizer.log_probs_on_grids([load_audio(u.audio)], args.shifts)[0]
             for u in tqdm(utterances, desc="acoustic model", unit="utt")]
    log_probs = [unshifted for unshifted, *_ in grids]

    def utterance_errors(options: DecodingOptions) -> list[tuple[int, int]]:
        decoder = recognizer.decoder(options)
        return [word_errors(ref, decoder(unshifted, FRAME_SECONDS, 0.0, None, shifted)[0].text)
                for ref, (unshifted, *shifted) in zip(refs, grids)]

    greedy = pooled_wer(utterance_errors(DecodingOptions(lm="none", shifts=args.shifts)))
    errors = {point: utterance_errors(point_options[point]) for point in tqdm(points, desc="grid", unit="point")}
    grid = {point: pooled_wer(e) for point, e in errors.items()}
    (beam, weight, bonus, penalty), best = min(grid.items(), key=lambda item: item[1])
    cv_wer, cv_points = cross_validated_wer(errors, speaker_folds([u.speaker for u in utterances]))
    # one more search of the best point (the grid's decodes keep only the top hypothesis)
    oracle = pooled_wer(beam_oracle_errors(recognizer.tokenizer, resolve_lm(args.lm),
                                           point_options[beam, weight, bonus, penalty], refs, log_probs))

    print(f"{Path(args.dev).name}, {len(refs)} utterances; model {args.model}; {args.shifts} frame grid(s); "
          f"greedy WER {greedy:.2%}")
    for size in args.beams:
        for pen in args.blank_penalties:
            print(f"\nbeam {size}, blank penalty {pen:g}:\n| LM weight \\ word bonus | "
                  + " | ".join(f"{b:g}" for b in args.bonuses) + " |")
            print("|---|" + "---|" * len(args.bonuses))
            for w in args.weights:
                print(f"| {w:g} | " + " | ".join(f"{grid[(size, w, b, pen)]:.2%}" for b in args.bonuses) + " |")
    print(f"best: beam {beam}, LM weight {weight:g}, word bonus {bonus:g}, blank penalty {penalty:g}: "
          f"WER {best:.2%} (tuned on this set)")
    print(f"cross-validated over {FOLDS} speaker folds: WER {cv_wer:.2%} (points chosen: {cv_points})")
    print(f"oracle WER over the best point's final beam: {oracle:.2%} (the most rescoring it could give)")
    args.output.write_text(json.dumps({"lm": args.lm, "lm_weight": weight, "word_bonus": bonus,
                                       "blank_penalty": penalty, "beam_size": beam, "shifts": args.shifts,
                                       "wer": best, "cv_wer": cv_wer, "cv_points": cv_points, "oracle_wer": oracle,
                                       "greedy_wer": greedy, "dev": str(args.dev),
                                       "utterances": len(refs), "grid": [list(k) + [e] for k, e in grid.items()]},
                                      indent=1))


if __name__ == "__main__":
    from vocable.errors import run_script
    run_script(main)
