#!/usr/bin/env bash
# The bundled English model, end to end: prepare → synth → check → lm → train → tune (decoding weights) →
# bundle → evaluate → peers. Each stage leaves a marker in exp/stages/ and is skipped when its marker exists;
# training itself resumes from its last checkpoint. Re-run after any stop.
#   [NPROC=2] [MODEL=exp/conformer/model.vocable] recipes/en_default/run.sh [SYNTH_HOURS]
# MODEL picks the trained model that the tune and bundle stages take. The bundled en-default is
# exp/c8-accent/model.vocable (docs/models.md): stage 4's model trained further on a lent H200 by
# device_run.sh (lease 1, run C), then on the CPU from those weights by
#   OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node 2 -m vocable.cli train conformer-cpu-ft.toml
# (exp/cpu-ft), then given word pieces on the CPU by the same command with --set run.init_from=... (the
# cpu-ft model) --set run.new_head=true --set tokenizer.kind='"bpe"' --set tokenizer.vocab_size=128
# --set optim.lr=4e-4 --set optim.warmup_steps=200 --set optim.max_minutes=60 (exp/bpe128-ft), then
# trained further on a third H200 lease (device_run.sh, run c3wp: exp/lease3/c3wp.vocable), then 90 more
# CPU minutes by the same command with --set run.init_from=... (c3wp) --set tokenizer.kind='"bpe"'
# --set tokenizer.vocab_size=128 --set optim.lr=1.5e-4 --set optim.max_minutes=90 (exp/c4wp-cpu), then
# 80 more CPU minutes from that model with the accented speech of stage 2b added: --set run.init_from=...
# (c4wp-cpu) --set tokenizer.kind='"bpe"' --set tokenizer.vocab_size=128 --set optim.lr=1.5e-4
# --set optim.max_minutes=80 --set run.seed=5 --set 'data.train=[...]' (conformer-cpu-ft.toml's list
# + "data/synth-accent/manifest.jsonl") (exp/c8-accent).
# A later continuation starts from the weights then bundled ([run] init_from). Tried and not bundled
# (docs/models.md): exp/c9-accent2, 80 more CPU minutes from c8-accent with 5 h more accented speech
# (vocable data synth ... -o data/synth-accent2 --voices espeak-ng --accent 1.0 --seed 2) added; exp/c10-real,
# 45 CPU minutes from the bundled weights with data/so762-train.jsonl listed six times instead of three;
# exp/c11-warp, 70 CPU minutes from the bundled weights on c8's data with --set spec_augment.freq_warp=0.1;
# exp/c12-spell, 55 CPU minutes from the bundled weights with 3 h of accented flite and festival speech
# (vocable data synth ... -o data/synth-accent-text --voices 'flite:*' 'festival:*' --accent 1.0 --seed 3) added.
# exp/c13-deep: grow.py's 12-block copy of the bundled model, 105 CPU minutes on c8's data
# (--set run.init_from='"exp/deep12.vocable"' --set model.n_layers=12 --set optim.lr=2e-4 --set run.seed=13).
# exp/c15-deep2: c13's model, 100 more CPU minutes (--set run.init_from='"exp/c13-deep/model.vocable"'
# --set model.n_layers=12 --set optim.lr=1.5e-4 --set run.seed=15).
# exp/c16-selfcond: grow.py --self-condition 3 on the bundled model (exp/sc3.vocable), 90 CPU minutes on c8's
# data (--set run.init_from='"exp/sc3.vocable"' --set model.self_condition=3 --set optim.lr=2e-4 --set run.seed=16).
set -euo pipefail
cd "$(dirname "$0")"
hours=${1:-5}
if ! [[ "$hours" =~ ^[0-9]+([.][0-9]+)?$ ]]; then  # --help, or a typo: before any stage writes
  echo "usage: [NPROC=2] [MODEL=exp/conformer/model.vocable] recipes/en_default/run.sh [SYNTH_HOURS]" >&2
  exit 2
fi
model=${MODEL:-exp/conformer/model.vocable}
stages=exp/stages
mkdir -p "$stages"
stage() { [ -f "$stages/$1" ] && { echo "stage $1: done"; return 1; }; echo "stage $1"; }
mark() { touch "$stages/$1"; }

# 1. Manifests from ../shared/data (speechocean762 split by speaker) and text for synthesis.
if stage prepare; then python prepare.py; mark prepare; fi
# 2. Synthetic speech from every installed free voice (resumable by itself).
if stage synth; then vocable data synth --text data/synth-text.txt --hours "$hours" -o data/synth; mark synth; fi
# 2b. 3 h of espeak-ng speech with a Mandarin-L1-style accent (docs/data.md), for the last CPU run only.
if stage synth-accent; then
  vocable data synth --text data/synth-text.txt --hours 3 -o data/synth-accent --voices espeak-ng --accent 1.0 --seed 1
  mark synth-accent
fi
# 3. Leakage check: no dev/evaluation speaker, sentence or recording in the training data.
if stage check; then
  for train in so762-train fsdd-train synth/manifest synth-accent/manifest; do
    # digit words recur across FSDD and synthetic digit strings: sentences are reported, not refused
    vocable data check "data/$train.jsonl" data/so762-dev.jsonl data/librivox.jsonl data/alsa.jsonl --ignore sentences
  done
  mark check
fi
# 3b. The bundled 3-gram LM (vocable/assets/en-3gram.lm.npz): public-domain text plus the training
# speakers' prompts, without any evaluation sentence (scripts/build_default_lm.sh).
if stage lm; then ../../scripts/build_default_lm.sh; mark lm; fi
# 4. Train (resumes from exp/conformer/last.ckpt after a stop).
if stage train; then
  resume=""; [ -f exp/conformer/last.ckpt ] && resume="--resume"
  # Data-parallel processes of one thread each (NPROC, default 2): faster on CPU than one process
  # with NPROC threads, and the same command uses one GPU per process where there are GPUs.
  OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node "${NPROC:-2}" -m vocable.cli train conformer.toml $resume
  mark train
fi
# 5. LM weight, word bonus and blank penalty for this model, tuned on the dev speakers at beam 32 (the
# beam en-default has used since session 7; tune_lm.py's default grid also tries 8 and 16).
if stage tune; then
  python tune_lm.py "$model" data/so762-dev.jsonl --beams 32 --weights 0.5 0.7 1.0 1.4 --bonuses -1 0 1 2 3 \
    --blank-penalties 0 0.5 1 1.5 2 -o exp/lm-tuning.json
  mark tune
fi
# 6. Bundle: fp16 into vocable/assets/en-default.vocable with the tuned decoding as its default.
if stage bundle; then
  read -r weight bonus penalty beam < <(python -c "import json; t = json.load(open('exp/lm-tuning.json'))
print(t['lm_weight'], t['word_bonus'], t.get('blank_penalty', 0), t.get('beam_size', 8))")
  python ../../scripts/bundle_model.py "$model" --name en-default --lm en-3gram \
    --lm-weight "$weight" --word-bonus "$bonus" --blank-penalty "$penalty" --beam-size "$beam" --note "recipes/en_default ($(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
  mark bundle
fi
# 7. Evaluate the bundled model on every held-out set, greedy and with its LM; the dev set by gender and age.
if stage evaluate; then
  for set in so762-dev fsdd-test librivox alsa; do
    vocable evaluate "data/$set.jsonl" --model en-default --lm none --json > "exp/$set-greedy.json"
    vocable evaluate "data/$set.jsonl" --model en-default --json > "exp/$set-lm.json"
  done
  vocable evaluate data/so762-dev.jsonl --model en-default --by gender,age --report exp/so762-dev-report
  mark evaluate
fi
# 8. Side by side with pocketsphinx and Moonshine on the same files (benchmarks/compare_peers.py).
if stage peers; then
  python ../../benchmarks/compare_peers.py --model en-default --peer-cores 1 \
    --dataset so762-dev=data/so762-dev.jsonl --dataset librivox-clips=data/librivox.jsonl \
    --dataset alsa-prompts=data/alsa.jsonl --dataset fsdd-test=data/fsdd-test.jsonl \
    --out ../../benchmarks/results/compare_peers-en-default
  mark peers
fi
# The model card's figures (docs/models.md), from the files the stages above wrote.
python model_card.py > exp/model_card.md && echo "figures: exp/model_card.md"
