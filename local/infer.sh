#!/usr/bin/env bash
# Stage 2: predict with the best (else latest) checkpoint (dynamic graph):
# the given files, else a dev clip of each of the first 3 classes, each
# block followed by "truth: <label>".
set -euo pipefail
conf="${1:?usage: local/infer.sh CONF [WAV...]}"
shift
source "$(dirname "$0")/../path.sh"
locate() { python "${MAIN_ROOT}/local/locate.py" --config "${conf}" "$@"; }
ckpt="$(locate checkpoint)"
[[ -n "${ckpt}" ]] || { echo "error: no checkpoint in $(locate checkpoint_dir); run stage 1 first" >&2; exit 1; }
predict() {
  python "${MAIN_ROOT}/paddlespeech/cls/exps/panns/predict.py" --config "${conf}" \
    --checkpoint "${ckpt}" --wav "$@"
}
if [[ $# -gt 0 ]]; then predict "$@"; exit; fi
picks="$(locate dev_picks --limit 3)"
mapfile -t clips < <(cut -f1 <<< "${picks}")
predict "${clips[@]}" | awk -F'\t' -f "${MAIN_ROOT}/local/truth.awk" <(echo "${picks}") -
