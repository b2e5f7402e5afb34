#!/usr/bin/env bash
# The bundled English model, end to end. Each stage leaves a marker in exp/stages/ and is skipped
# when its marker exists; training itself resumes from its last checkpoint. Re-run after any stop.
#   [NPROC=2] recipes/en_default/run.sh [SYNTH_HOURS]
set -euo pipefail
cd "$(dirname "$0")"
hours=${1:-5}
stages=exp/stages
mkdir -p "$stages"
stage() { [ -f "$stages/$1" ] && { echo "stage $1: done"; return 1; }; echo "stage $1"; }
mark() { touch "$stages/$1"; }

# 1. Manifests from ../shared/data (speechocean762 split by speaker) and text for synthesis.
if stage prepare; then python prepare.py; mark prepare; fi
# 2. Synthetic speech from every installed free voice (resumable by itself).
if stage synth; then vocable data synth --text data/synth-text.txt --hours "$hours" -o data/synth; mark synth; fi
# 3. Leakage check: no dev/evaluation speaker, sentence or recording in the training data.
if stage check; then
  for train in so762-train fsdd-train synth/manifest; do
    # digit words recur across FSDD and synthetic digit strings: sentences are reported, not refused
    vocable data check "data/$train.jsonl" data/so762-dev.jsonl data/librivox.jsonl data/alsa.jsonl --ignore sentences
  done
  mark check
fi
# 4. Train (resumes from exp/conformer/last.ckpt after a stop).
if stage train; then
  resume=""; [ -f exp/conformer/last.ckpt ] && resume="--resume"
  # Data-parallel processes of one thread each (NPROC, default 2): faster on CPU than one process
  # with NPROC threads, and the same command uses one GPU per process where there are GPUs.
  OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node "${NPROC:-2}" -m vocable.cli train conformer.toml $resume
  mark train
fi
# 5. Evaluate on every held-out set, greedy and with the bundled LM.
if stage evaluate; then
  for set in so762-dev fsdd-test librivox alsa; do
    vocable evaluate "data/$set.jsonl" --model exp/conformer/model.vocable --lm none --json > "exp/$set-greedy.json"
    vocable evaluate "data/$set.jsonl" --model exp/conformer/model.vocable --lm en-3gram --json > "exp/$set-lm.json"
  done
  mark evaluate
fi
echo "model: exp/conformer/model.vocable (bundle with scripts/bundle_model.py)"
