"""Pick the LM weight, word bonus and beam size for a model on a development set (grid search).

    python tune_lm.py exp/conformer/model.vocable data/so762-dev.jsonl --lm en-3gram -o exp/lm-tuning.json

The acoustic model runs once; each grid point only re-decodes its log-probabilities. Prints the grid as
a table per beam size (WER per weight and bonus) and writes the best point to the JSON file for
scripts/bundle_model.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

WEIGHTS = (0.2, 0.35, 0.5, 0.7, 1.0, 1.4)  # multiplies ln p_LM
BONUSES = (0.0, 1.0, 2.0, 3.0)  # nats per word
# Beams kept per frame. en-default on so762-dev (weight 0.35, bonus 1.0, RTF with 2 threads):
# 8: 52.9 % (0.0074), 16: 51.6 % (0.0095), 32: 50.7 % (0.0117), 64: 50.0 % (0.0189). 64 doubles the
# decoding time for 0.7 points, so the grid stops at 32.
BEAMS = (8, 16, 32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("dev", help="development manifest (never a set whose figures you report as unseen)")
    p.add_argument("--lm", default="en-3gram")
    p.add_argument("-o", "--output", type=Path, required=True)
    args = p.parse_args()

    import vocable
    from vocable.audio import load_audio
    from vocable.data.manifest import read_dataset
    from vocable.decoding import DecodingOptions
    from vocable.evaluate import wer
    from vocable.lm import resolve_lm
    from vocable.tokenizer import normalize_english

    recognizer = vocable.load(args.model, threads=1)
    utterances = [u for u in read_dataset(args.dev) if u.text]
    refs = [normalize_english(u.text) for u in utterances]
    log_probs = [recognizer.log_probs(load_audio(u.audio))
                 for u in tqdm(utterances, desc="acoustic model", unit="utt")]
    resolve_lm(args.lm)  # load once (cached), so the first grid point is not charged for it

    def score(options: DecodingOptions) -> float:
        return wer(refs, [recognizer.decode(lp, options=options).text for lp in log_probs])

    greedy = score(DecodingOptions(lm="none"))
    grid = {}
    points = [(beam, w, b) for beam in BEAMS for w in WEIGHTS for b in BONUSES]
    for beam, weight, bonus in tqdm(points, desc="grid", unit="point"):
        grid[(beam, weight, bonus)] = score(DecodingOptions(lm=args.lm, lm_weight=weight, word_bonus=bonus,
                                                            beam_size=beam))
    (beam, weight, bonus), best = min(grid.items(), key=lambda item: item[1])

    print(f"{Path(args.dev).name}, {len(refs)} utterances; model {args.model}; greedy WER {greedy:.2%}")
    for size in BEAMS:
        print(f"\nbeam {size}:\n| LM weight \\ word bonus | " + " | ".join(f"{b:g}" for b in BONUSES) + " |")
        print("|---|" + "---|" * len(BONUSES))
        for w in WEIGHTS:
            print(f"| {w:g} | " + " | ".join(f"{grid[(size, w, b)]:.2%}" for b in BONUSES) + " |")
    print(f"best: beam {beam}, LM weight {weight:g}, word bonus {bonus:g}: WER {best:.2%}")
    args.output.write_text(json.dumps({"lm": args.lm, "lm_weight": weight, "word_bonus": bonus, "beam_size": beam,
                                       "wer": best, "greedy_wer": greedy, "dev": str(args.dev),
                                       "utterances": len(refs), "grid": [list(k) + [e] for k, e in grid.items()]},
                                      indent=1))


if __name__ == "__main__":
    sys.exit(main())
