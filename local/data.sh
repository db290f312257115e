#!/usr/bin/env bash
# Stage 0: make the dataset of config $1 available (download ESC-50, or
# generate the synthetic demo set).
set -euo pipefail
conf="${1:?usage: local/data.sh CONF}"
source "$(dirname "$0")/../path.sh"
python "${MAIN_ROOT}/local/prepare_data.py" --config "${conf}"
