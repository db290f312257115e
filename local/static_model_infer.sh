#!/usr/bin/env bash
# Stage 4: classify with the exported model through paddle.inference: the
# given files or directories, else a dev clip of each of the first 4
# classes, each block followed by "truth: <label>".
set -euo pipefail
conf="${1:?usage: local/static_model_infer.sh CONF [WAV_OR_DIR...]}"
shift
source "$(dirname "$0")/../path.sh"
predict() {
  python "${MAIN_ROOT}/paddlespeech/cls/exps/panns/deploy/predict.py" --config "${conf}" \
    --wav "$@"
}
if [[ $# -gt 0 ]]; then predict "$@"; exit; fi
picks="$(python "${MAIN_ROOT}/local/locate.py" --config "${conf}" dev_picks --limit 4)"
mapfile -t clips < <(cut -f1 <<< "${picks}")
predict "${clips[@]}" | awk -F'\t' -f "${MAIN_ROOT}/local/truth.awk" <(echo "${picks}") -
