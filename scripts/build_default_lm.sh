#!/usr/bin/env bash
# Build the bundled English LM, vocable/assets/en-3gram.lm.npz (see docs/decoding.md); name an OUT
# ending in .arpa.gz for the same model as ARPA text (3.7 MB binary loads in 0.08 s, the ARPA in 0.9 s).
#
# Text: the public-domain sentences in ../shared/data/text, the FSDD training transcripts, and the
# prompts of the en_default recipe's speechocean762 TRAINING speakers, each repeated PROMPT_REPEATS
# times (recipes/en_default/data/so762-train.jsonl, written by its prepare.py; run that first).
# Why 4: built with one half of those speakers' prompts, the LM's perplexity on the other half's was
# 158.6 without them, 150.9 at 1 copy, 143.9 at 4, 143.6 at 8, 145.6 at 16 (librivox-clips 560 → 566).
# Excluded: every line containing an evaluation sentence: librivox-clips, alsa-prompts and the
# recipe's held-out speechocean762 speakers (so762-dev). Sentences of 3+ words are dropped wherever
# they occur inside a line; shorter ones ("car", "front left") only as whole lines, so common words
# stay in the LM. Pruning 0,1,1 drops bigrams and trigrams seen once: 4.6 MB of ARPA instead of 23 MB,
# for a perplexity 2 % higher. ORDER and PRUNE build other shapes; none decoded so762-dev better with the
# bundled model (docs/decoding.md: unpruned 3-gram -0.16 points, p = 0.68; 4-grams +0.9 and +1.1).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${DATA:-$ROOT/../shared/data}
RECIPE=${RECIPE:-$ROOT/recipes/en_default/data}
OUT=${1:-$ROOT/vocable/assets/en-3gram.lm.npz}
PROMPT_REPEATS=${PROMPT_REPEATS:-4}
ORDER=${ORDER:-3} PRUNE=${PRUNE:-0,1,1}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python - "$RECIPE" "$tmp" "$PROMPT_REPEATS" <<'PY'
import json, sys
recipe, tmp, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
for name, copies in (("so762-train", repeats), ("so762-dev", 1)):
    texts = [json.loads(line)["text"] for line in open(f"{recipe}/{name}.jsonl", encoding="utf-8")]
    with open(f"{tmp}/{name}.txt", "w", encoding="utf-8") as f:
        f.write("\n".join(texts * copies) + "\n")
PY
python -m vocable.cli lm build "$DATA"/text/*.txt "$DATA"/fsdd/train/text "$tmp/so762-train.txt" \
    --exclude "$DATA"/librivox-clips/text "$DATA"/alsa-prompts/text "$tmp/so762-dev.txt" \
    --order "$ORDER" --prune "$PRUNE" -o "$OUT"
