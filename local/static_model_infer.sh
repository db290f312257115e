#!/usr/bin/env bash
# Stage 4: classify dev clips with the exported model through paddle.inference.
set -euo pipefail
conf="${1:?usage: local/static_model_infer.sh CONF [WAV_OR_DIR...]}"
shift
source "$(dirname "$0")/../path.sh"
if [[ $# -eq 0 ]]; then
  mapfile -t clips < <(python "${MAIN_ROOT}/local/locate.py" --config "${conf}" dev_clips --limit 4)
  set -- "${clips[@]}"
fi
python "${MAIN_ROOT}/paddlespeech/cls/exps/panns/deploy/predict.py" --config "${conf}" \
  --wav "$@"
