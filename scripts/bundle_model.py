"""Copy a trained model into the package as a bundled model, in fp16, with its default decoding.

    python scripts/bundle_model.py recipes/en_default/exp/conformer/model.vocable --name en-default \
        --lm en-3gram --lm-weight 0.6 --word-bonus 1.5 --blank-penalty 1.0

The LM weight, word bonus, blank penalty, beam size and shifts are the values tuned on a development set
(recipes/en_default/tune_lm.py); they apply whenever the model is decoded with its own LM
(vocable/decoding.py: with_model_defaults). --min-phrase-confidence is the phrase-grammar threshold
calibrated for the model (benchmarks/phrase_grammar.py).
Refuses a file over MAX_MB: every committed weight file stays in git history for good.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MAX_MB = 40.0  # the bundled default model's size limit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", help="trained .vocable file")
    p.add_argument("--name", required=True, help="bundled name: vocable/assets/NAME.vocable")
    p.add_argument("--lm", help="bundled LM name (or 'none') the model decodes with by default")
    p.add_argument("--lm-weight", type=float)
    p.add_argument("--word-bonus", type=float)
    p.add_argument("--blank-penalty", type=float)
    p.add_argument("--beam-size", type=int, help="beam size tuned with that LM (applies with the model's own LM)")
    p.add_argument("--shifts", type=int, help="frame grids each utterance is decoded on (meta \"shifts\"; "
                   "recipes/en_default/shift_vote.py measures it)")
    p.add_argument("--min-phrase-confidence", type=float,
                   help="phrase-grammar threshold calibrated for the model (benchmarks/phrase_grammar.py)")
    p.add_argument("--stream", action="append", default=[], metavar="KEY=VALUE",
                   help="a StreamOptions default for the model's live streams (meta \"stream\"), e.g. speech_margin=0")
    p.add_argument("--note", default="", help="one line for the model's meta (data, training)")
    p.add_argument("--assets", type=Path, help="folder to write to (default: the package's bundled models)")
    args = p.parse_args()

    from vocable.errors import VocableError
    from vocable.stream import StreamOptions
    stream_fields = [f.name for f in fields(StreamOptions)]
    from vocable.bundled import ASSETS_DIR, MODEL_SUFFIX
    from vocable.modelfile import load_model_file, save_model
    try:
        loaded = load_model_file(args.model)
    except VocableError as e:
        sys.exit(f"bundle_model: {e}")
    meta = {**loaded.meta, "name": args.name}
    for key, value in (("lm", args.lm), ("lm_weight", args.lm_weight), ("word_bonus", args.word_bonus),
                       ("blank_penalty", args.blank_penalty), ("beam_size", args.beam_size), ("shifts", args.shifts),
                       ("min_phrase_confidence", args.min_phrase_confidence), ("note", args.note)):
        if value not in (None, ""):
            meta[key] = value
    for item in args.stream:
        key, sep, value = item.partition("=")
        if not sep or key not in stream_fields:
            sys.exit(f"bundle_model: --stream {item!r}: expected KEY=VALUE, KEY one of {', '.join(stream_fields)}")
        meta["stream"] = {**(meta.get("stream") or {}), key: _number_or_text(value)}
    if meta.get("lm") == "none":
        meta.pop("lm")
    from vocable.checks import FieldError, check_model_meta
    from vocable.lm import resolve_lm
    try:  # the decoding it will ship with must work: checked as loading (the meta) and decoding (the LM) will
        check_model_meta(meta)
        resolve_lm(meta.get("lm"))
    except (FieldError, VocableError) as e:
        sys.exit(f"bundle_model: {e}")
    out = (args.assets or ASSETS_DIR) / (args.name + MODEL_SUFFIX)
    save_model(out, loaded.model, loaded.model_config, loaded.features, loaded.tokenizer, meta, half=True)
    size_mb = out.stat().st_size / 1e6
    if size_mb > MAX_MB:
        out.unlink()
        sys.exit(f"bundle_model: {out.name} would be {size_mb:.1f} MB, over the {MAX_MB:.0f} MB limit")
    print(f"wrote {out} ({size_mb:.1f} MB, fp16); default decoding: lm={meta.get('lm', 'none')} "
          f"lm_weight={meta.get('lm_weight', '-')} word_bonus={meta.get('word_bonus', '-')} "
          f"blank_penalty={meta.get('blank_penalty', '-')} beam_size={meta.get('beam_size', '-')} "
          f"shifts={meta.get('shifts', 1)} "
          f"min_phrase_confidence={meta.get('min_phrase_confidence', '-')}")


def _number_or_text(value: str):
    """'3' → 3, '0.5' → 0.5, anything else (also 'nan' and 'inf', which no setting takes) stays text."""
    try:
        return int(value)
    except ValueError:
        try:
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) else value


if __name__ == "__main__":
    main()
