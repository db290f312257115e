#!/usr/bin/env bash
# Stage 1: train.
#   local/train.sh CONF [NPROC] [--nnodes N --master HOST:PORT [--node_rank R]] [train.py flags]
# Several GPUs in CUDA_VISIBLE_DEVICES, or NPROC > 1 CPU processes, run data
# parallel through paddle.distributed.launch. --nnodes N spreads the run over
# N machines: start the same command on each, with --master naming a free port
# on the first one; --node_rank R fixes which machine is which (rank 0 writes
# the checkpoints), else the first launcher to reach the master is rank 0. A
# launcher waits for all N nodes without a time limit.
# Always runs with --resume: train.py continues from the furthest checkpoint in
# checkpoint_dir (a finished epoch, or where Ctrl-C stopped it) and says so, or
# starts from scratch when there is none.
set -euo pipefail
conf="${1:?usage: local/train.sh CONF [NPROC] [--nnodes N --master HOST:PORT [--node_rank R]] [train.py flags]}"
shift
nproc=1
if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then nproc="$1"; shift; fi
nnodes=1
master=""
node_rank=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --nnodes) nnodes="$2"; shift 2 ;;
    --master) master="$2"; shift 2 ;;
    --node_rank) node_rank="$2"; shift 2 ;;
    *) break ;;
  esac
done
if [[ "${nnodes}" -gt 1 && -z "${master}" ]]; then
  echo "error: --nnodes ${nnodes} needs --master HOST:PORT (a free port on the first machine)" >&2
  exit 2
fi
source "$(dirname "$0")/../path.sh"
train="${MAIN_ROOT}/paddlespeech/cls/exps/panns/train.py"
args=(--config "${conf}" --resume "$@")
gpus="${CUDA_VISIBLE_DEVICES:-}"
launch=()
if [[ -n "${gpus}" && ( "${gpus}" == *,* || "${nnodes}" -gt 1 ) ]]; then
  launch=(--devices "${gpus}")
elif [[ "${nproc}" -gt 1 || "${nnodes}" -gt 1 ]]; then
  launch=(--nproc_per_node "${nproc}")
  args+=(--device cpu)
fi
if [[ ${#launch[@]} -eq 0 ]]; then
  exec python "${train}" "${args[@]}"
fi
log_dir="$(python "${MAIN_ROOT}/local/locate.py" --config "${conf}" checkpoint_dir)/log"
if [[ "${nnodes}" -gt 1 ]]; then
  launch+=(--nnodes "${nnodes}" --master "${master}")
  [[ -z "${node_rank}" ]] || launch+=(--rank "${node_rank}")
  log_dir="${log_dir}/node${node_rank:-_$(hostname)}"
fi
python -m paddle.distributed.launch "${launch[@]}" --log_dir "${log_dir}" \
  "${train}" "${args[@]}"
