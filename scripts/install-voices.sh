#!/bin/sh
# Install the free offline text-to-speech voices `vocable data synth` uses (Debian/Ubuntu, apt).
#   espeak-ng                 GPL-3.0-or-later: 8 English accents x ~80 variants
#   flite                     CMU Flite licence (BSD-like): kal, kal16, awb, rms, slt
#   festival + festvox-*      Festvox/CSTR/CMU licences (BSD-like): kal_diphone, ked_diphone, cmu_us_slt_arctic_hts
# mbrola voices, pico and RHVoice are in contrib/non-free with restrictive licences and are not installed.
# Piper voices are optional: `pip install piper-tts`, then pass a voice file with `--piper VOICE.onnx`.
set -eu
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends \
    espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
vocable data voices 2>/dev/null || python -m vocable.cli data voices
