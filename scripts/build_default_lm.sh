#!/usr/bin/env bash
# Build the bundled English LM, vocable/assets/en-3gram.lm.npz (see docs/decoding.md); name an OUT
# ending in .arpa.gz for the same model as ARPA text (3.6 MB binary loads in 0.08 s, the ARPA in 0.9 s).
#
# Text: the public-domain sentences in ../shared/data/text plus the FSDD training transcripts.
# Excluded: every line containing an evaluation sentence: librivox-clips, alsa-prompts, and ALL
# speechocean762 prompts (train and held-out speakers alike: the held-out split is the lead's, so no
# speechocean762 prompt is used). Sentences of 3+ words are dropped wherever they occur inside a
# line; shorter ones ("car", "front left") only as whole lines, so common words stay in the LM.
# Pruning 0,1,1 drops bigrams and trigrams seen once: 4.6 MB instead of 23 MB, perplexity on the
# (excluded) speechocean762 prompts 160 instead of 156.
set -euo pipefail
DATA=${DATA:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}
OUT=${1:-$(cd "$(dirname "$0")/.." && pwd)/vocable/assets/en-3gram.lm.npz}
python -m vocable.cli lm build "$DATA"/text/*.txt "$DATA"/fsdd/train/text \
    --exclude "$DATA"/librivox-clips/text "$DATA"/alsa-prompts/text "$DATA"/speechocean762-train/text \
    --order 3 --prune 0,1,1 -o "$OUT"
