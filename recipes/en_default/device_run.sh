#!/usr/bin/env bash
# One run on a lent GPU machine (the `device` tool): three models trained side by side on one GPU for
# the same wall-clock budget, from data packed by pack.py (the machine has no ../shared; the tool
# carries at most 64 MiB, so pack.py's Opus files travel zipped: 9,698 files, 46 MB, 6.5 h).
# Results land in $OUT (at most 8 files of 16 MiB each: big models come back in parts).
#   recipes/en_default/device_run.sh [MINUTES]
# MINUTES is each model's training budget. Setup (decoding the audio three times over, CUDA start)
# took ~2 min on the H200, so 6 minutes of training fit a 10-minute command with the final save.
# Measured on the first run (2026-11-26, 7.5 min each, 600-s batches; docs/models.md): A and B, new
# models at lr 1e-3, spent most of their ~1,300 steps on CTC's all-blank plateau; C, the bundled model
# trained further, improved (it is the bundled en-default now). So A and B now take 150-s batches:
# four times the steps for the same audio, since leaving the plateau takes steps, not audio.
set -uo pipefail
cd "$(dirname "$0")"
minutes=${1:-6}
pack=${PACK:-../../devpack}
train="[\"$pack/so762-train.jsonl\", \"$pack/fsdd-train.jsonl\", \"$pack/synth.jsonl\"]"
dev="[\"$pack/so762-dev.jsonl\"]"
common=(--no-progress --set "data.train=$train" --set "data.dev=$dev" --set "optim.max_minutes=$minutes")
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
# A: conformer-gpu.toml (d256 x 12). B: d192 x 8. C: the bundled model trained further at a lower
# rate, with the 600-s batches of the run that trained it.
python3 -m vocable.cli train conformer-gpu.toml "${common[@]}" > "$OUT/a.log" 2>&1 &
python3 -m vocable.cli train conformer-gpu.toml "${common[@]}" \
  --set model.d_model=192 --set model.n_layers=8 --set model.dropout=0.1 --set run.out_dir='"exp/gpu-b"' \
  > "$OUT/b.log" 2>&1 &
python3 -m vocable.cli train conformer-gpu.toml "${common[@]}" --set model.d_model=144 --set model.n_layers=6 \
  --set model.dropout=0.1 --set data.max_batch_seconds=600 --set run.init_from='"../../vocable/assets/en-default.vocable"' --set optim.lr=3e-4 \
  --set optim.warmup_steps=100 --set augment.after_epochs=0 --set spec_augment.after_epochs=0 \
  --set run.out_dir='"exp/gpu-c"' > "$OUT/c.log" 2>&1 &
while sleep 30; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; [ "$(jobs -r | wc -l)" = 0 ] && break; done
wait
for run in conformer-gpu gpu-b gpu-c; do cp "exp/$run/metrics.csv" "$OUT/$run-metrics.csv" 2>/dev/null; done
(cd "$OUT" && tar czf logs.tgz ./*.log ./*-metrics.csv && rm -f ./*.log ./*-metrics.csv)
# The final (averaged, fp16) model of each run; average.py makes one from epoch files if a run was cut.
split -b 15M exp/conformer-gpu/model.vocable "$OUT/a.vocable.part-"
cp exp/gpu-b/model.vocable "$OUT/b.vocable"
cp exp/gpu-c/model.vocable "$OUT/c.vocable"
ls -la "$OUT"
