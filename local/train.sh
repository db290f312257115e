#!/usr/bin/env bash
# Stage 1: train. Several GPUs in CUDA_VISIBLE_DEVICES, or NPROC > 1 CPU
# processes, run data parallel through paddle.distributed.launch. Always run
# with --resume: train.py continues from the furthest checkpoint in
# checkpoint_dir (a finished epoch, or where Ctrl-C stopped it) and says so,
# or starts from scratch when there is none.
set -euo pipefail
conf="${1:?usage: local/train.sh CONF [NPROC] [extra train.py flags]}"
nproc="${2:-1}"
shift $(( $# > 1 ? 2 : 1 ))
source "$(dirname "$0")/../path.sh"
train="${MAIN_ROOT}/paddlespeech/cls/exps/panns/train.py"
args=(--config "${conf}" --resume "$@")
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
