#!/usr/bin/env bash
# One run on a lent GPU machine (the `device` tool): several models trained side by side on one GPU for
# the same wall-clock budget, from data packed by pack.py (the machine has no ../shared; the tool
# carries at most 64 MiB, so pack.py's Opus files travel zipped: 10,022 files, 45 MB).
# Results land in $OUT (at most 8 files of 16 MiB each).
#   recipes/en_default/device_run.sh [MINUTES]
# (env: PACK, the unzipped pack; EXP, where the runs write, default exp; DEADLINE_S, see below)
# MINUTES is each model's training budget. Setup (decoding the audio once per run, CUDA start) took
# 1-2 min on the H200; a watchdog stops training before the lease's 10-minute command limit, so the
# final averaging always happens (the first lease's run was cut before it; average.py finished it).
# History (docs/models.md): lease 1 trained three models for 7.5 min each with 600-s batches; two new
# models spent most of their ~1,300 steps on CTC's all-blank plateau. Lease 2 trained B2, a new
# Conformer (d192 x 8, 7.1 M) with 150-s batches and clean short utterances first (it left the
# plateau), beside the bundled model trained further (C2: no better; the 3.1 M model is saturated).
# Lease 3 trained B3 (B2 further), B3wp (B2's encoder, word pieces) and C3wp (bundled since); see docs/models.md.
# Lease 4 runs three continuations of the bundled model ($WP, default: the package's en-default.vocable,
# C4wp), differing in peak lr and seed, for a weight average of the three (average.py --models):
#   c5a: lr 1.5e-4 (C4wp's CPU run), c5b: lr 1e-4, seed 2, c5c: lr 2.5e-4, seed 3.
# None moved it, while 70 CPU minutes of 80-s batches then did (docs/models.md). Lease 5 asks whether the
# batch size is why: three continuations of C4wp with the CPU run's 80-s batches (c7a, c7b: lr 1.5e-4,
# seeds 21 and 22) and 40-s batches (c7c: lr 1e-4, seed 23), for a weight average of the three
# (it is not: the average stayed where C4wp was, and a CPU repeat gained nothing either).
# The lease's calls (the tool keeps git-ignored paths such as build/ on a warm machine between calls):
#   carry .whl devpack.zip: python3 -m pip install --no-index --no-deps --target build/site .whl/*.whl &&
#      python3 -m zipfile -e devpack.zip build && PYTHONPATH=$PWD/build/site:$PWD PACK=$PWD/build/devpack
#      DEADLINE_S=510 bash recipes/en_default/device_run.sh 6.5
set -uo pipefail
cd "$(dirname "$0")"
minutes=${1:-6}
pack=${PACK:-../../devpack}
deadline=$((SECONDS + ${DEADLINE_S:-540}))  # training stops here at the latest: 60 s left to average and copy
so=$pack/so762-train.jsonl fsdd=$pack/fsdd-train.jsonl synth=$pack/synth.jsonl
common=(--no-progress --set "data.dev=[\"$pack/so762-dev.jsonl\"]" --set "optim.max_minutes=$minutes"
  --set data.num_workers=5)
exp=${EXP:-exp}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"
train() {  # train OUT_DIR [--set ...]: one run, stopped at the deadline
  local run=$1; shift
  timeout --signal=INT $((deadline - SECONDS)) python3 -m vocable.cli train conformer-gpu.toml "${common[@]}" \
    --set "run.out_dir=\"$exp/$run\"" "$@" > "$OUT/$run.log" 2>&1
}
wp=${WP:-../../vocable/assets/en-default.vocable}
real=(--set "data.train=[\"$so\", \"$so\", \"$so\", \"$fsdd\", \"$fsdd\", \"$synth\"]"
  --set augment.after_epochs=0 --set spec_augment.after_epochs=0)
small_pieces=(--set 'tokenizer.kind="bpe"' --set tokenizer.vocab_size=128 --set model.d_model=144 --set model.n_layers=6
  --set model.dropout=0.1 --set "run.init_from=\"$wp\"" --set optim.warmup_steps=100)
runs=()
start() { runs+=("$1"); train "$@" & }  # one run in the background, remembered for the copying below
start gpu-c7a "${real[@]}" "${small_pieces[@]}" --set data.max_batch_seconds=80 --set optim.lr=1.5e-4 --set run.seed=21
start gpu-c7b "${real[@]}" "${small_pieces[@]}" --set data.max_batch_seconds=80 --set optim.lr=1.5e-4 --set run.seed=22
start gpu-c7c "${real[@]}" "${small_pieces[@]}" --set data.max_batch_seconds=40 --set optim.lr=1e-4 --set run.seed=23
for ((tick = 1; $(jobs -r | wc -l) > 0; tick++)); do  # GPU load every 30 s while the runs train
  sleep 1; ((tick % 30)) || nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
done
wait
failed=0
for run in "${runs[@]}"; do
  cp "$exp/$run/metrics.csv" "$OUT/$run-metrics.csv" 2>/dev/null
  [ -f "$exp/$run/model.vocable" ] || python3 average.py "$exp/$run" "$exp/$run/model.vocable" 2>&1 | tail -1
  cp "$exp/$run/model.vocable" "$OUT/${run#gpu-}.vocable" || { tail -3 "$OUT/$run.log"; failed=1; }
done
shopt -s nullglob
(cd "$OUT" && tar czf logs.tgz ./*.log ./*-metrics.csv && rm -f ./*.log ./*-metrics.csv)
ls -la "$OUT"
exit $failed
