#!/usr/bin/env bash
# Stage 2: predict one dev clip with the best (else latest) checkpoint
# (dynamic graph).
set -euo pipefail
conf="${1:?usage: local/infer.sh CONF [WAV...]}"
shift
source "$(dirname "$0")/../path.sh"
locate() { python "${MAIN_ROOT}/local/locate.py" --config "${conf}" "$@"; }
ckpt="$(locate checkpoint)"
[[ -n "${ckpt}" ]] || { echo "error: no checkpoint in $(locate checkpoint_dir); run stage 1 first" >&2; exit 1; }
if [[ $# -eq 0 ]]; then set -- "$(locate dev_clips --limit 1)"; fi
python "${MAIN_ROOT}/paddlespeech/cls/exps/panns/predict.py" --config "${conf}" \
  --checkpoint "${ckpt}" --wav "$@"
