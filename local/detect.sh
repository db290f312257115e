#!/usr/bin/env bash
# Stage 7: sound-event detection (detect.py) with the exported model of
# stage 3, written to detect_dir (default: beside export_dir, e.g.
# exp/demo/detect). Without --wav, on a synthetic 60 s recording of the
# demo classes with known event times (<detect_dir>/synthetic_long.wav;
# the truth beside it in .truth.csv). Extra arguments go to detect.py, e.g.
#   local/detect.sh conf/demo.yaml --wav field.wav --threshold 0.3
#   ./run.sh --conf conf/demo.yaml 7 -- --wav field.wav
set -euo pipefail
conf="${1:?usage: local/detect.sh CONF [detect.py flags, e.g. --wav FILE...]}"
shift
source "$(dirname "$0")/../path.sh"
locate() { python "${MAIN_ROOT}/local/locate.py" --config "${conf}" "$@"; }
export_dir="$(locate export_dir)"
[[ -f "${export_dir}/model.json" ]] || { echo "error: no export in ${export_dir}; run stage 3 first" >&2; exit 1; }
if [[ " $* " != *" --wav "* && " $* " != *" --wav="* ]]; then
  wav="$(locate detect_dir)/synthetic_long.wav"
  python -m paddlespeech.cls.exps.panns.synth --long_recording "${wav}" --long_seconds 60
  set -- --wav "${wav}" "$@"
fi
python "${MAIN_ROOT}/paddlespeech/cls/exps/panns/detect.py" --config "${conf}" \
  --model_dir "${export_dir}" "$@"
