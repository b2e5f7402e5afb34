#!/usr/bin/env bash
# The measurement in docs/adapting.md: en-default on 42 sentences of a made-up domain ("open the
# kellermann valve on the zorbex unit"), before and after each of the four levers.
#   recipes/adapt_demo/run.sh       (needs espeak-ng and flite; 6-10 minutes on 2 CPU cores)
# Eight synthetic voices read the sentences: four to train on, one as dev, three held out to score.
# The held-out voices also read sentences no voice trained on (new-domain.txt, new-general.txt).
# Stages skip themselves when their output exists.
set -euo pipefail
cd "$(dirname "$0")"

speak() {  # ROLE SPEAKER ENGINE VOICE SENTENCES: one wav + txt per line, speaking rate varied
  local dir=data/$1/$2 n=0 line f
  mkdir -p "$dir"
  while IFS= read -r line; do
    n=$((n + 1)); f=$dir/$(printf '%s_%03d' "$2" $n)
    [ -f "$f.wav" ] && continue
    if [ "$3" = espeak ]; then espeak-ng -v "$4" -s $((140 + n * 37 % 60)) -w "$f.wav" "$line"
    else stretch=$((85 + n * 7 % 30))  # percent: 0.85 to 1.14
      flite -voice "$4" --setf duration_stretch="$((stretch / 100)).$(printf %02d $((stretch % 100)))" \
        -t "$line" -o "$f.wav"; fi
    printf '%s\n' "$line" > "$f.txt"
  done < "$5"
}
held_out() {  # SPEAKER ENGINE VOICE
  speak test "$@" domain.txt; speak new-domain "$@" new-domain.txt; speak new-general "$@" new-general.txt
}
if [ ! -f data/test.jsonl ]; then
  speak train erin flite slt domain.txt;   speak train frank espeak en-029+m1 domain.txt
  speak train gina flite rms domain.txt;   speak train hank espeak en-gb-scotland+m4 domain.txt
  speak dev dave flite awb domain.txt
  held_out alice espeak en-us+f2; held_out bob espeak en-us+m3; held_out carol espeak en-gb+f4
  for set in train dev new-domain new-general test; do
    vocable data import folder "data/$set" -o "data/$set.jsonl" --no-progress
  done
  vocable data check data/train.jsonl data/test.jsonl >/dev/null || echo "note: train and test share sentences (by design)"
fi
[ -f data/domain.arpa ] || vocable lm build -o data/domain.arpa domain.txt
if [ ! -f exp/adapt/model.vocable ]; then
  resume=""; [ -f exp/adapt/last.ckpt ] && resume="--resume"
  vocable train adapt.toml $resume
fi

wer() {  # MANIFEST MODEL [decoding options]: the WER line of vocable evaluate
  vocable evaluate "data/$1.jsonl" --model "$2" "${@:3}" | awk '/^WER/ {print $2}'
}
adapted=exp/adapt/model.vocable
printf '%-44s %-10s %-12s %s\n' decoding domain.txt new-domain new-general
printf '%-44s %-10s %-12s %s\n' "en-default with its LM" "$(wer test en-default)" \
  "$(wer new-domain en-default)" "$(wer new-general en-default)"
printf '%-44s %s\n' "+ --hotwords zorbex,kellermann,sump" "$(wer test en-default --hotwords zorbex,kellermann,sump)"
printf '%-44s %s\n' "+ --hotwords at boost 5" "$(wer test en-default --hotwords zorbex:5,kellermann:5,sump:5)"
prompt=$(cat domain.txt)  # the words of it that en-3gram lacks become hotwords: kellermann, zorbex, sump
printf '%-44s %-10s %-12s %s\n' "+ --prompt \"\$(cat domain.txt)\"" "$(wer test en-default --prompt "$prompt")" \
  "$(wer new-domain en-default --prompt "$prompt")" "$(wer new-general en-default --prompt "$prompt")"
printf '%-44s %s\n' "with the domain LM instead" "$(wer test en-default --lm data/domain.arpa)"
printf '%-44s %s\n' "with domain.txt as --phrases" "$(wer test en-default --phrases domain.txt)"
printf '%-44s %-10s %-12s %s\n' "trained on, its LM" "$(wer test $adapted)" \
  "$(wer new-domain $adapted)" "$(wer new-general $adapted)"
printf '%-44s %-10s %-12s %s\n' "trained on, greedy" "$(wer test $adapted --lm none)" \
  "$(wer new-domain $adapted --lm none)" "$(wer new-general $adapted --lm none)"
