#!/usr/bin/env bash
# Stage 3: export the best (else latest) checkpoint as a static graph into
# export_dir.
set -euo pipefail
conf="${1:?usage: local/export.sh CONF [extra export_model.py flags]}"
shift
source "$(dirname "$0")/../path.sh"
ckpt="$(python "${MAIN_ROOT}/local/locate.py" --config "${conf}" checkpoint)"
[[ -n "${ckpt}" ]] || { echo "error: no checkpoint found; run stage 1 first" >&2; exit 1; }
python "${MAIN_ROOT}/paddlespeech/cls/exps/panns/export_model.py" --config "${conf}" \
  --checkpoint "${ckpt}" "$@"
