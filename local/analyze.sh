#!/usr/bin/env bash
# Stage 8: a whole archive analysed (analyze.py) with the exported model
# of stage 3 into a Parquet dataset in analysis_dir (default: beside
# export_dir, e.g. exp/demo/analysis; docs/analyze.md). Without --input,
# the config's data_dir (the demo: 240 one-second clips). Running it again
# resumes: finished files are skipped. Extra arguments go to analyze.py:
#   local/analyze.sh conf/demo.yaml --input /archive --workers 2
#   ./run.sh --conf conf/demo.yaml 8 -- --input /archive --embeddings true
set -euo pipefail
conf="${1:?usage: local/analyze.sh CONF [analyze.py flags, e.g. --input DIR...]}"
shift
source "$(dirname "$0")/../path.sh"
locate() { python "${MAIN_ROOT}/local/locate.py" --config "${conf}" "$@"; }
export_dir="$(locate export_dir)"
[[ -f "${export_dir}/model.json" ]] || { echo "error: no export in ${export_dir}; run stage 3 first" >&2; exit 1; }
if [[ " $* " != *" --input "* && " $* " != *" --input="* ]]; then
  set -- --input "$(locate data_dir)" "$@"
fi
python "${MAIN_ROOT}/paddlespeech/cls/exps/panns/analyze.py" --config "${conf}" \
  --model_dir "${export_dir}" "$@"
