#!/usr/bin/env bash
# One run on a lent GPU machine (the `device` tool): three models trained side by side on one GPU for
# the same wall-clock budget, from data packed by pack.py into ../../devpack (the machine has no
# ../shared). Results land in $OUT (at most 8 files of 16 MiB: big models come back in parts).
#   recipes/en_default/device_run.sh [MINUTES]
set -uo pipefail
cd "$(dirname "$0")"
minutes=${1:-7.5}
pack=${PACK:-../../devpack}
train="[\"$pack/so762-train.jsonl\", \"$pack/fsdd-train.jsonl\", \"$pack/synth.jsonl\"]"
dev="[\"$pack/so762-dev.jsonl\"]"
common=(--no-progress --set "data.train=$train" --set "data.dev=$dev" --set "optim.max_minutes=$minutes")
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
# A: conformer-gpu.toml as written (d256 x 12). B: d192 x 8 from scratch. C: the bundled d144 x 6
# model trained further at a lower rate.
python3 -m vocable.cli train conformer-gpu.toml "${common[@]}" > "$OUT/a.log" 2>&1 &
python3 -m vocable.cli train conformer-gpu.toml "${common[@]}" --set model.d_model=192 --set model.n_layers=8 \
  --set model.dropout=0.1 --set run.out_dir='"exp/gpu-b"' > "$OUT/b.log" 2>&1 &
python3 -m vocable.cli train conformer-gpu.toml "${common[@]}" --set model.d_model=144 --set model.n_layers=6 \
  --set model.dropout=0.1 --set run.init_from='"../../vocable/assets/en-default.vocable"' --set optim.lr=3e-4 \
  --set optim.warmup_steps=100 --set augment.after_epochs=0 --set spec_augment.after_epochs=0 \
  --set run.out_dir='"exp/gpu-c"' > "$OUT/c.log" 2>&1 &
while sleep 30; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; [ "$(jobs -r | wc -l)" = 0 ] && break; done
wait
for run in conformer-gpu gpu-b gpu-c; do cp "exp/$run/metrics.csv" "$OUT/$run-metrics.csv" 2>/dev/null; done
(cd "$OUT" && tar czf logs.tgz ./*.log ./*-metrics.csv && rm -f ./*.log ./*-metrics.csv)
split -b 15M exp/conformer-gpu/model.vocable "$OUT/a.vocable.part-"
cp exp/gpu-b/model.vocable "$OUT/b.vocable"
cp exp/gpu-c/model.vocable "$OUT/c.vocable"
ls -la "$OUT"
