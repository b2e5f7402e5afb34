#!/usr/bin/env bash
# FSDD digit recogniser: prepare manifests, train, evaluate on the test takes and on an unseen speaker.
#   recipes/fsdd/run.sh [conformer|conformer-bpe|cnn-rnn|cnn-rnn-streaming] [HOLDOUT_SPEAKER]
# cnn-rnn-streaming also writes exp/cnn-rnn-streaming/fsdd-digits-streaming.vocable, which carries the
# stream settings it needs (docs/server.md).
# Stages skip themselves when their output exists, so a re-run continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")"
arch=${1:-conformer}
holdout=${2:-}
if [ "$arch" = -h ] || [ "$arch" = --help ] || [ ! -f "$arch.toml" ]; then  # before prepare.py writes data/
  [ "$arch" = -h ] || [ "$arch" = --help ] || echo "run.sh: error: no config $arch.toml" >&2
  echo "usage: recipes/fsdd/run.sh [$(ls ./*.toml | xargs -n1 basename | sed 's/\.toml$//' | paste -sd '|')] [HOLDOUT_SPEAKER]" >&2
  exit 2
fi
data=data${holdout:+-without-$holdout}
out=exp/$arch${holdout:+-without-$holdout}
[ -f "$data/train.jsonl" ] || python prepare.py --out "$data" ${holdout:+--holdout "$holdout"}
if [ ! -f "$out/model.vocable" ]; then
  resume=""; [ -f "$out/last.ckpt" ] && resume="--resume"
  vocable train "$arch.toml" $resume --set run.out_dir="\"$out\"" \
    --set data.train="[\"$data/train.jsonl\"]" --set data.dev="[\"$data/dev.jsonl\"]"
fi
if [ "$arch" = cnn-rnn-streaming ] && [ ! -f "$out/fsdd-digits-streaming.vocable" ]; then
  # It emits at a word's first frames (see its config), so its streams must start at the speech, as
  # webrtcvad finds it (Silero, auto's detector, starts utterances 0.3 s earlier: its onsets lag).
  python ../../scripts/bundle_model.py "$out/model.vocable" --name fsdd-digits-streaming \
    --stream speech_margin=0 --stream vad=webrtc --assets "$out"
fi
vocable evaluate "$data/dev.jsonl" --model "$out/model.vocable" --output "$out/dev-results.jsonl"
if [ -n "$holdout" ]; then
  vocable evaluate "$data/heldout.jsonl" --model "$out/model.vocable" --output "$out/heldout-results.jsonl"
fi
