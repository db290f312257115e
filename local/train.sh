#!/usr/bin/env bash
# Stage 1: train. Several GPUs in CUDA_VISIBLE_DEVICES, or NPROC > 1 CPU
# processes, run data parallel through paddle.distributed.launch. An existing
# checkpoint in checkpoint_dir is resumed.
set -euo pipefail
conf="${1:?usage: local/train.sh CONF [NPROC] [extra train.py flags]}"
nproc="${2:-1}"
shift $(( $# > 1 ? 2 : 1 ))
source "$(dirname "$0")/../path.sh"
train="${MAIN_ROOT}/paddlespeech/cls/exps/panns/train.py"
args=(--config "${conf}" "$@")
if [[ -n "$(python "${MAIN_ROOT}/local/locate.py" --config "${conf}" checkpoint)" ]]; then
  echo "found a checkpoint in $(python "${MAIN_ROOT}/local/locate.py" --config "${conf}" checkpoint_dir): resuming (delete it to start over)"
  args+=(--resume)
fi
gpus="${CUDA_VISIBLE_DEVICES:-}"
if [[ "${gpus}" == *,* ]]; then
  python -m paddle.distributed.launch --devices "${gpus}" "${train}" "${args[@]}"
elif [[ "${nproc}" -gt 1 ]]; then
  python -m paddle.distributed.launch --nproc_per_node "${nproc}" \
    --log_dir "$(python "${MAIN_ROOT}/local/locate.py" --config "${conf}" checkpoint_dir)/log" \
    "${train}" "${args[@]}" --device cpu
else
  python "${train}" "${args[@]}"
fi
