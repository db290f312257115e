#!/usr/bin/env bash
# ESC-50 sound classification with PANNs.
#   ./run.sh                      stages 0-4 with conf/panns.yaml
#   ./run.sh N                    stage N only (e.g. CUDA_VISIBLE_DEVICES=0 ./run.sh 1)
#   ./run.sh --conf conf/demo.yaml [--stage A] [--stop_stage B] [--nproc N]
#   ./run.sh 1 --nnodes 2 --master HOST:PORT [--node_rank R]   (on each machine)
# Stages: 0 data, 1 train, 2 predict, 3 export, 4 deploy (paddle.inference).
# Only when asked: 5 5-fold cross-validation with a report, 6 serve the
# export over HTTP until stopped (local/serve.sh, docs/serving.md),
# 7 sound-event detection on a long recording (local/detect.sh), 8 a
# whole archive into a Parquet dataset (local/analyze.sh, docs/analyze.md).
# Extra flags after -- go to stage 5's local/cross_validate.py (e.g.
# -- --folds 1,3), stage 6's serve.py (-- --port 8091), stage 7's
# detect.py (-- --wav field.wav --threshold 0.3) and stage 8's analyze.py
# (-- --input /archive --workers 2).
set -euo pipefail
cd "$(dirname "$0")"

stage=0
stop_stage=4
conf=conf/panns.yaml
nproc=1
nodes=()

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --stage) stage="$2"; shift 2 ;;
    --stop_stage) stop_stage="$2"; shift 2 ;;
    --conf) conf="$2"; shift 2 ;;
    --nproc) nproc="$2"; shift 2 ;;
    --nnodes|--master|--node_rank) nodes+=("$1" "$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    [0-9]*) stage="$1"; stop_stage="$1"; shift ;;
    *) echo "error: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
[[ -f "${conf}" ]] || { echo "error: config ${conf} not found" >&2; exit 2; }

source path.sh

if [[ ${stage} -le 0 && ${stop_stage} -ge 0 ]]; then
  local/data.sh "${conf}"
fi
if [[ ${stage} -le 1 && ${stop_stage} -ge 1 ]]; then
  local/train.sh "${conf}" "${nproc}" ${nodes[@]+"${nodes[@]}"}
fi
if [[ ${stage} -le 2 && ${stop_stage} -ge 2 ]]; then
  local/infer.sh "${conf}"
fi
if [[ ${stage} -le 3 && ${stop_stage} -ge 3 ]]; then
  local/export.sh "${conf}"
fi
if [[ ${stage} -le 4 && ${stop_stage} -ge 4 ]]; then
  local/static_model_infer.sh "${conf}"
fi
if [[ ${stage} -le 5 && ${stop_stage} -ge 5 ]]; then
  python local/cross_validate.py --config "${conf}" "$@"
fi
if [[ ${stage} -le 6 && ${stop_stage} -ge 6 ]]; then
  local/serve.sh "${conf}" "$@"
fi
if [[ ${stage} -le 7 && ${stop_stage} -ge 7 ]]; then
  local/detect.sh "${conf}" "$@"
fi
if [[ ${stage} -le 8 && ${stop_stage} -ge 8 ]]; then
  local/analyze.sh "${conf}" "$@"
fi
